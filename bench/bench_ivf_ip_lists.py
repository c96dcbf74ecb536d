"""How IVF metric="ip" lists are trained: recall@10 of IVFRaBitQIndex (and IVFPQIndex) whose
lists come from l2 k-means (the training before issue 15's ip-lists change, reproduced here by
swapping the indexes' coarse_quantizer) vs inner-product k-means (now: a point joins the
centroid of largest <x, c>, as rows are assigned and probes rank lists), with FAISS's
IndexIVFRaBitQFastScan / IndexIVFPQFastScan (metric inner product) in the same run.

    PYTHONPATH=build-dev/pkg OPENBLAS_NUM_THREADS=1 python bench/bench_ivf_ip_lists.py \
        [--data PATH] [--bits 1 2 4] [--seeds 0] [--pq] [--threads 2]

Dev data (60k x 384 MiniLM, unit length), 1,000 queries, k = 10, nlist = 256, recall only (no
timing). RaBitQ rows: no re-rank at every bit width, plus rerank="memory" rerank_k=30 at 1 bit
(FAISS: IndexRefineFlat k_factor 3, the same 30 candidates).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

import simdex as sx
import simdex.ivf as sx_ivf
import simdex.rabitq as sx_rabitq
from simdex.kmeans import kmeans

NPROBES = (16, 32, 40, 48, 64)


def l2_lists(a: np.ndarray, nlist: int, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """The coarse quantizer as before: l2 k-means whatever the index metric."""
    kw.pop("metric", None)
    return kmeans(a, nlist, max_samples=256 * nlist, **kw)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data/minilm-dev-60k.hdf5")
    ap.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--pq", action="store_true", help="IVFPQIndex m=48 nbits=4 too")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import faiss
    import h5py

    with h5py.File(args.data) as f:
        x = np.ascontiguousarray(f["train"][:], dtype=np.float32)
        q = np.ascontiguousarray(f["test"][:], dtype=np.float32)
        truth = f["neighbors"][:, :10]
    th = args.threads
    faiss.omp_set_num_threads(th)
    ip = faiss.METRIC_INNER_PRODUCT
    print(f"simd={sx.simd_level()}, faiss {faiss.__version__}, threads={th}, nlist=256")
    print(f"{'index':44s} {'lists':9s} " + " ".join(f"np={n:<4d}" for n in NPROBES))

    def show(name: str, lists: str, search: Callable[[int], np.ndarray]) -> None:
        got = [sx.recall_at_k(search(n), truth, 10) for n in NPROBES]
        print(f"{name:44s} {lists:9s} " + " ".join(f"{r:.4f} " for r in got), flush=True)

    trained = sx_rabitq.coarse_quantizer
    for bits in args.bits:
        for seed in args.seeds:
            for lists, quantizer in (("l2 (old)", l2_lists), ("ip (new)", trained)):
                sx_rabitq.coarse_quantizer = quantizer
                for rerank in (None, "memory") if bits == 1 else (None,):
                    index = sx.IVFRaBitQIndex(384, 256, bits=bits, metric="ip", rerank=rerank)
                    index.train(x, seed=seed, threads=th)
                    index.add(x, threads=th)
                    extra = {"rerank_k": 30} if rerank else {}
                    show(
                        f"IVFRaBitQ ip bits={bits} seed={seed}"
                        + (" rerank_k=30" if rerank else ""),
                        lists,
                        lambda n, i=index, e=extra: i.search(q, 10, nprobe=n, threads=th, **e).ids,
                    )
            sx_rabitq.coarse_quantizer = trained
        base = faiss.IndexIVFRaBitQFastScan(faiss.IndexFlat(384, ip), 384, 256, ip, 32, True, bits)
        refine = faiss.IndexRefineFlat(base)
        refine.train(x)
        refine.add(x)

        def plain(n: int, b: Any = base) -> np.ndarray:
            b.nprobe = n
            return b.search(q, 10)[1]

        show(f"faiss IndexIVFRaBitQFastScan bits={bits}", "ip, unit", plain)
        if bits == 1:

            def refined(n: int, b: Any = base, r: Any = refine) -> np.ndarray:
                b.nprobe, r.k_factor = n, 3
                return r.search(q, 10)[1]

            show("faiss IndexIVFRaBitQFastScan bits=1 kf=3", "ip, unit", refined)
    if args.pq:
        trained = sx_ivf.coarse_quantizer
        for lists, quantizer in (("l2 (old)", l2_lists), ("ip (new)", trained)):
            sx_ivf.coarse_quantizer = quantizer
            pq = sx.IVFPQIndex(384, 256, 48, nbits=4, metric="ip").train(x, threads=th)
            pq.add(x, threads=th)
            show(
                "IVFPQ ip m=48 nbits=4",
                lists,
                lambda n, i=pq: i.search(q, 10, nprobe=n, threads=th).ids,
            )
        sx_ivf.coarse_quantizer = trained
        fpq = faiss.IndexIVFPQFastScan(faiss.IndexFlat(384, ip), 384, 256, 48, 4, ip)
        fpq.train(x)
        fpq.add(x)

        def pq_search(n: int, b: Any = fpq) -> np.ndarray:
            b.nprobe = n
            return b.search(q, 10)[1]

        show("faiss IndexIVFPQFastScan m=48 nbits=4", "ip, unit", pq_search)


if __name__ == "__main__":
    main()
