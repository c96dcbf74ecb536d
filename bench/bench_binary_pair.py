"""BinaryIndex bit-plane scan against the float32 FlatIndex, paired: each repetition times a
FlatIndex batch search and then the binary search back to back, and the ratio of each pair is
kept (the box is shared: only same-moment ratios mean anything). One search thread.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=build-dev/pkg python bench/bench_binary_pair.py \
        [--data ../shared/data/minilm-dev-60k.hdf5] [--bits 2] [--rerank-k 20,100] [--repeats 9]

Prints the FlatIndex QPS (median) and, per rerank_k, the median / min / max of
flat time / binary time (> 1: the binary index is faster) and its recall@10.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import simdex as sx


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(found, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/minilm-dev-60k.hdf5")
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--rerank-k", default="20,100")
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    ds = sx.io.load_ann_benchmarks(args.data)
    x, q, truth = ds.train, ds.test, ds.neighbors
    flat = sx.FlatIndex(x.shape[1], "cosine")
    flat.add(x)
    index = sx.BinaryIndex(x.shape[1], bits=args.bits, rerank="memory")
    index.add(x)
    sizes = [int(v) for v in args.rerank_k.split(",")]

    def seconds(fn):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out

    ratios: dict[int, list[float]] = {rk: [] for rk in sizes}
    recalls: dict[int, float] = {}
    flat_qps = []
    for _ in range(args.repeats):
        for rk in sizes:
            tf, _ = seconds(lambda: flat.search(q, 10, threads=1))
            tb, (_, ids) = seconds(lambda: index.search(q, 10, rerank_k=rk, threads=1))  # noqa: B023
            ratios[rk].append(tf / tb)
            flat_qps.append(q.shape[0] / tf)
            recalls[rk] = recall(ids, truth)
    print(f"{x.shape[0]} x {x.shape[1]}, {q.shape[0]} queries, simd {sx.simd_level()}, "
          f"FlatIndex f32 QPS median {statistics.median(flat_qps):,.0f}")
    for rk in sizes:
        v = ratios[rk]
        print(f"bits={args.bits} rerank_k={rk}: flat time / binary time median {statistics.median(v):.2f}x "
              f"(min {min(v):.2f}x, max {max(v):.2f}x), recall@10 {recalls[rk]:.3f}")


if __name__ == "__main__":
    main()
