"""Exact many-query top-k: simdex vs FAISS IndexFlatIP vs NumPy, float32 inner product.

Workload (design target): 1,000 queries x 100,000 rows x 384-d float32, k = 10, rows and
queries normalised, generated with numpy.random.default_rng(0). Times simdex._core.search,
faiss.IndexFlatIP.search and numpy matmul + argpartition for 1 and 2 threads, median of
--repeats runs each (after one warm-up), and prints a markdown table with QPS and ratios.
Also checks that simdex's top-10 ids equal FAISS's on >= 99% of entries.

    python bench/bench_exact.py [--n 100000] [--nq 1000] [--d 384] [--k 10] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import numpy as np


def normalised(rng: np.random.Generator, rows: int, d: int) -> np.ndarray:
    x = rng.standard_normal((rows, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up (page faults, thread start, kernel table)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def numpy_topk(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(nq, k) int64 ids of the k largest inner products, best first."""
    scores = queries @ x.T  # (nq, n) float32
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def set_numpy_threads(threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # then numpy runs with its default thread count
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--nq", type=int, default=1_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-numpy", action="store_true", help="skip the NumPy baseline")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error(f"--repeats must be >= 3 for a median; got {args.repeats}")

    import faiss

    from simdex import _core

    rng = np.random.default_rng(0)
    x = normalised(rng, args.n, args.d)
    queries = normalised(rng, args.nq, args.d)
    n, nq, d, k = args.n, args.nq, args.d, args.k

    faiss_index = faiss.IndexFlatIP(d)
    faiss_index.add(x)

    print(f"# exact top-{k}: {nq:,} queries x {n:,} rows x {d}-d float32, inner product")
    print(f"simdex level {_core.active_level()}, faiss {faiss.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} cpus, median of {args.repeats}")
    print()
    print("| threads | simdex s | simdex QPS | faiss s | faiss QPS | numpy s | numpy QPS "
          "| simdex / faiss | simdex / numpy | top-k ids = faiss |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for threads in args.threads:
        faiss.omp_set_num_threads(threads)
        t_simdex, (dist, ids) = median_seconds(
            lambda: _core.search(x, n, queries, nq, k, "float32", "ip", d, threads=threads),
            args.repeats)
        t_faiss, (_, faiss_ids) = median_seconds(lambda: faiss_index.search(queries, k),
                                                 args.repeats)
        if args.no_numpy:
            t_numpy = float("nan")
        else:
            set_numpy_threads(threads)
            t_numpy, _ = median_seconds(lambda: numpy_topk(x, queries, k), args.repeats)
        agree = float(np.mean(np.asarray(ids) == faiss_ids))
        ok &= agree >= 0.99
        print(f"| {threads} | {t_simdex:.3f} | {nq / t_simdex:,.0f} | {t_faiss:.3f} "
              f"| {nq / t_faiss:,.0f} | {t_numpy:.3f} | {nq / t_numpy:,.0f} "
              f"| {t_faiss / t_simdex:.2f}x | {t_numpy / t_simdex:.2f}x | {agree:.4f} |",
              flush=True)
    if not ok:
        print("FAIL: simdex top-k ids differ from faiss on more than 1% of entries")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
