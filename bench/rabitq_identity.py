"""Bit-identity of RaBitQ search results between two builds (or two SIMD tiers of one build).

    python bench/rabitq_identity.py build              # once, with either build: indexes -> $IDX/*.sx
    PYTHONPATH=<build A>/pkg python bench/rabitq_identity.py run A.npz
    PYTHONPATH=<build B>/pkg python bench/rabitq_identity.py run B.npz
    python bench/rabitq_identity.py compare A.npz B.npz  # exit 1 if any array differs

Every configuration (IVFRaBitQIndex cosine / ip / l2, bits 1 and 2, several nprobe / rerank_k,
batched, one query per call and threads=2; RaBitQIndex; HNSWIndex(storage="rabitq")) searches
the 1,000 dev queries (env DATA, default the dev set; IDX, default /tmp/rabitq-identity) from
indexes built once and loaded, so both builds see the same codes; distances and ids are
compared byte for byte. Compare runs at the same tier only: the float32 re-rank and coarse
GEMM kernels may round differently between tiers (kernels.hpp), the RaBitQ estimates do not.
"""
import os, sys, time
import numpy as np
import h5py
import simdex as sx

IDX = os.environ.get("IDX", "/tmp/rabitq-identity")
f = h5py.File(os.environ.get("DATA", "/work/shared/data/minilm-dev-60k.hdf5"), "r")
x = np.asarray(f["train"], dtype=np.float32)
q = np.asarray(f["test"], dtype=np.float32)[:1000]

INDEXES = {  # name -> constructor (built once, saved, then only loaded)
    "ivf_cos_b1": lambda: sx.IVFRaBitQIndex(384, 256, bits=1, metric="cosine", rerank="memory"),
    "ivf_cos_b2": lambda: sx.IVFRaBitQIndex(384, 256, bits=2, metric="cosine", rerank="memory"),
    "ivf_ip_b1": lambda: sx.IVFRaBitQIndex(384, 256, bits=1, metric="ip", rerank="memory"),
    "ivf_ip_b2": lambda: sx.IVFRaBitQIndex(384, 256, bits=2, metric="ip", rerank="memory"),
    "ivf_l2_b1": lambda: sx.IVFRaBitQIndex(384, 256, bits=1, metric="l2", rerank="memory"),
    "flat_cos_b1": lambda: sx.RaBitQIndex(384, bits=1, metric="cosine", rerank="memory"),
    "flat_ip_b2": lambda: sx.RaBitQIndex(384, bits=2, metric="ip", rerank="memory"),
    "hnsw_cos_b1": lambda: sx.HNSWIndex(384, "cosine", storage="rabitq", M=16, ef_construction=200),
}


def build():
    os.makedirs(IDX, exist_ok=True)
    for name, make in INDEXES.items():
        path = f"{IDX}/{name}.sx"
        if os.path.exists(path):
            continue
        t = time.perf_counter()
        index = make()
        if hasattr(index, "train"):
            index.train(x)
        index.add(x)
        index.save(path)
        print(name, f"{time.perf_counter() - t:.1f} s", flush=True)


def run(out):
    results = {}
    for name in INDEXES:
        index = sx.load(f"{IDX}/{name}.sx")
        if name.startswith("ivf"):
            settings = [(1, 10), (8, 30), (48, 30), (48, 100), (256, 10)]
            for nprobe, rk in settings:
                # threads=1: the batched path (nq >= 8); one query per call: the per-query path
                r = index.search(q, 10, nprobe=nprobe, rerank_k=rk, threads=1)
                results[f"{name}/np{nprobe}/rk{rk}/batch"] = (r.distances, r.ids)
                if nprobe in (1, 48) and rk == 30 or nprobe == 1:
                    rs = [index.search(v, 10, nprobe=nprobe, rerank_k=rk, threads=1) for v in q[:200]]
                    results[f"{name}/np{nprobe}/rk{rk}/single"] = (
                        np.stack([s.distances for s in rs]), np.stack([s.ids for s in rs]))
            r = index.search(q, 10, nprobe=16, rerank_k=30, threads=2)
            results[f"{name}/np16/rk30/threads2"] = (r.distances, r.ids)
        elif name.startswith("flat"):
            for rk in (10, 50):
                r = index.search(q[:300], 10, rerank_k=rk, threads=1)
                results[f"{name}/rk{rk}"] = (r.distances, r.ids)
        else:
            for ef in (16, 64):
                rs = [index.search(v, 10, ef=ef) for v in q]
                results[f"{name}/ef{ef}"] = (np.stack([s.distances for s in rs]), np.stack([s.ids for s in rs]))
    flat = {}
    for key, (d, i) in results.items():
        flat[key + "|d"] = np.asarray(d)
        flat[key + "|i"] = np.asarray(i)
    np.savez(out, **flat)
    print(f"{len(results)} configurations -> {out} (simd {sx.simd_level()})")


def compare(a, b):
    A, B = np.load(a), np.load(b)
    assert sorted(A.files) == sorted(B.files), "different configurations"
    bad = 0
    for key in sorted(A.files):
        same = A[key].shape == B[key].shape and A[key].dtype == B[key].dtype and \
            np.array_equal(A[key].view(np.uint8), B[key].view(np.uint8))
        if not same:
            bad += 1
            print("DIFFERS", key)
    print(f"{len(A.files) // 2} configurations, {len(A.files)} arrays compared byte for byte: "
          f"{'ALL IDENTICAL' if bad == 0 else f'{bad} DIFFER'}")
    return bad


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build()
    elif sys.argv[1] == "run":
        run(sys.argv[2])
    else:
        sys.exit(1 if compare(sys.argv[2], sys.argv[3]) else 0)
