"""Binary embeddings on the dev data: simdex BinaryIndex vs faiss / usearch binary indexes.

    PYTHONPATH=build-dev/pkg python bench/bench_binary.py [--data PATH] [--threads 2] [--repeats 3]
                                                          [--skip-random]

Part 1 (dev data, 60k x 384 MiniLM, cosine): recall@10 and QPS of BinaryIndex for 1, 2, 4 bits
per dimension with rerank_k in {20, 50, 100, 200} (exact re-rank from float32 in RAM), bytes per
vector, against our float32 FlatIndex, faiss IndexBinaryFlat / IndexBinaryHNSW and usearch b1
(Hamming) on the same sign codes; the peers' candidates are re-ranked with the same exact step so
the recall columns compare like with like. Part 2: 1,000 queries x 1,000,000 random 256-bit codes
top-10, simdex.knn(..., 'hamming') vs faiss IndexBinaryFlat. Medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import simdex as sx
from simdex._rerank import RerankStore


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def recall(found, truth, k=10):
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data/minilm-dev-60k.hdf5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-random", action="store_true")
    args = ap.parse_args()
    import faiss
    from usearch.index import Index as UIndex

    faiss.omp_set_num_threads(args.threads)
    ds = sx.io.load_ann_benchmarks(args.data)
    x, q, truth = ds.train, ds.test, ds.neighbors
    nq, d = q.shape[0], x.shape[1]
    th, reps = args.threads, args.repeats
    print(f"dev data {x.shape[0]} x {d}, {nq} queries, threads={th}, simd={sx.simd_level()}, median of {reps}\n")

    flat = sx.FlatIndex(d, "cosine")
    flat.add(x)
    t_flat, (_, ids) = timed(lambda: flat.search(q, 10, threads=th), reps)
    flat_qps = nq / t_flat
    rows = [("simdex FlatIndex float32", "-", 4 * d, recall(ids, truth), flat_qps)]

    for bits, scoring in [(1, "symmetric"), (2, "symmetric"), (4, "symmetric"), (1, "asymmetric")]:
        index = sx.BinaryIndex(d, bits=bits, scoring=scoring, rerank="memory")
        index.add(x)
        name = f"simdex BinaryIndex bits={bits} {scoring[:4]}"
        code_bytes = bits * ((d + 7) // 8)
        plain = sx.BinaryIndex(d, bits=bits, scoring=scoring)
        plain.add(x)
        t, (_, ids) = timed(lambda: plain.search(q, 10, threads=th), reps)
        rows.append((name, "none", code_bytes, recall(ids, truth), nq / t))
        for rk in (20, 50, 100, 200):
            t, (_, ids) = timed(lambda: index.search(q, 10, rerank_k=rk, threads=th), reps)
            rows.append((name, str(rk), code_bytes, recall(ids, truth), nq / t))

    # peers on the same sign codes, re-ranked by the same exact step
    codes, qcodes = sx.binarize(x), sx.binarize(q)
    store = RerankStore(d, "cosine", "memory")
    store.append(sx.kernels.normalize(x))
    qn = sx.kernels.normalize(q)

    def with_rerank(candidates_fn, rk):
        def run():
            cand = candidates_fn(rk)
            return store.rescore(qn, np.ascontiguousarray(cand, dtype=np.int64), 10, threads=th)
        return run

    fb = faiss.IndexBinaryFlat(d)
    fb.add(codes)
    for rk in (None, 20, 50, 100, 200):
        if rk is None:
            t, (_, ids) = timed(lambda: fb.search(qcodes, 10), reps)
        else:
            t, (_, ids) = timed(with_rerank(lambda c: fb.search(qcodes, c)[1], rk), reps)
        rows.append(("faiss IndexBinaryFlat", str(rk or "none"), d // 8, recall(ids, truth), nq / t))

    fh = faiss.IndexBinaryHNSW(d, 16)
    fh.hnsw.efConstruction = 200
    t_build_faiss, _ = timed(lambda: fh.add(codes), 1)
    fh.hnsw.efSearch = 256
    for rk in (None, 100, 200):
        if rk is None:
            t, (_, ids) = timed(lambda: fh.search(qcodes, 10), reps)
        else:
            t, (_, ids) = timed(with_rerank(lambda c: fh.search(qcodes, c)[1], rk), reps)
        rows.append(("faiss IndexBinaryHNSW M=16 ef=256", str(rk or "none"), d // 8, recall(ids, truth), nq / t))

    ui = UIndex(ndim=d, metric="hamming", dtype="b1", connectivity=16, expansion_add=200, expansion_search=256)
    t_build_us, _ = timed(lambda: ui.add(np.arange(x.shape[0]), codes, threads=th), 1)
    for rk in (None, 100, 200):
        if rk is None:
            t, res = timed(lambda: ui.search(qcodes, 10, threads=th), reps)
            ids = res.keys
        else:
            t, (_, ids) = timed(with_rerank(lambda c: ui.search(qcodes, c, threads=th).keys.astype(np.int64), rk), reps)
        rows.append(("usearch b1 hamming M=16 ef=256", str(rk or "none"), d // 8, recall(ids, truth), nq / t))

    gi = sx.BinaryIndex(d, bits=1, graph=True, rerank="memory")
    t_build_sx, _ = timed(lambda: gi.add(x, threads=th), 1)
    for rk in (None, 100, 200):
        t, (_, ids) = timed(lambda: gi.search(q, 10, rerank_k=rk, ef=256, threads=th), reps)
        label = str(rk) if rk else "default (10k=100)"
        rows.append(("simdex BinaryIndex bits=1 graph ef=256", label, d // 8, recall(ids, truth), nq / t))

    print("| index | rerank_k | code bytes/vector | recall@10 | QPS | x FlatIndex f32 |")
    print("|---|---|---|---|---|---|")
    for name, rk, nbytes, r, qps in rows:
        print(f"| {name} | {rk} | {nbytes} | {r:.3f} | {qps:,.0f} | {qps / flat_qps:.2f} |")
    print(f"\ngraph build (60k, threads={th}): simdex {t_build_sx:.1f} s, faiss {t_build_faiss:.1f} s, "
          f"usearch {t_build_us:.1f} s")
    best = [(qps, name, rk, r) for name, rk, _, r, qps in rows if name.startswith("simdex Binary") and r >= 0.95]
    if best:
        qps, name, rk, r = max(best)
        print(f"fastest simdex config with recall@10 >= 0.95: {name}, rerank_k={rk}: recall {r:.3f}, "
              f"{qps:,.0f} QPS = {qps / flat_qps:.2f}x FlatIndex float32")

    if args.skip_random:
        return
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (1_000_000, 32), dtype=np.uint8)
    queries = rng.integers(0, 256, (1000, 32), dtype=np.uint8)
    fr = faiss.IndexBinaryFlat(256)
    fr.add(data)
    t_faiss, (fd, _) = timed(lambda: fr.search(queries, 10), reps)
    t_sx, (sd, _) = timed(lambda: sx.knn(queries, data, 10, "hamming", threads=th), reps)
    same = np.array_equal(fd.astype(np.float32), sd)
    print("\n| 1,000 q x 1,000,000 x 256-bit, top-10, threads=%d | seconds | QPS | ratio |" % th)
    print("|---|---|---|---|")
    print(f"| faiss IndexBinaryFlat | {t_faiss:.2f} | {1000 / t_faiss:,.0f} | 1.00 |")
    print(f"| simdex.knn hamming | {t_sx:.2f} | {1000 / t_sx:,.0f} | {t_faiss / t_sx:.2f} |")
    print(f"same distances: {same}")


if __name__ == "__main__":
    main()
