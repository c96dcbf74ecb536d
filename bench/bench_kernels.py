"""Issue 2 benchmarks: one-query scan bandwidth, Hamming top-k vs FAISS, pair latency vs SimSIMD.

    python bench/bench_kernels.py [--rows 1000000] [--repeat 5] [--skip-hamming]

Prints markdown tables (medians of --repeat runs) for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import simdex as sx


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def memory_bandwidth(buf: np.ndarray, repeat: int) -> float:
    """Read bandwidth (GB/s) of the machine: best of numpy's streaming reductions."""
    flat = buf.reshape(-1)
    ones = np.ones(flat.shape[0], dtype=np.float32)
    t_sum = median_time(lambda: flat.sum(), repeat)
    t_dot = median_time(lambda: np.dot(flat, ones), repeat)
    return max(flat.nbytes / t_sum, 2 * flat.nbytes / t_dot) / 1e9


def scan_table(rows: int, dim: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    q = rng.standard_normal((1, dim), dtype=np.float32)
    bw = memory_bandwidth(x, repeat)
    print(f"\n### One query x {rows:,} x {dim} scan, top-10 (memory read bandwidth {bw:.1f} GB/s, numpy)\n")
    print("| storage | threads | ms | GB/s | % of bandwidth | faiss IndexFlatIP ms |")
    print("|---|---|---|---|---|---|")
    faiss_ms = {}
    try:
        import faiss
        fi = faiss.IndexFlatIP(dim)
        fi.add(x)
        for t in (1, 2):
            faiss.omp_set_num_threads(t)
            faiss_ms[t] = 1e3 * median_time(lambda: fi.search(q, 10), repeat)
        del fi
    except ImportError:
        pass
    for storage in ("float32", "float16", "bfloat16", "int8"):
        index = sx.FlatIndex(dim, "ip", storage=storage)
        index.add(x)
        nbytes = index._rows[: len(index)].nbytes
        for t in (1, 2):
            ms = 1e3 * median_time(lambda: index.search(q, 10, threads=t), repeat)
            gbs = nbytes / (ms / 1e3) / 1e9
            ref = f"{faiss_ms[t]:.1f}" if storage == "float32" and t in faiss_ms else ""
            print(f"| {storage} | {t} | {ms:.1f} | {gbs:.1f} | {100 * gbs / bw:.0f}% | {ref} |")
        del index


def hamming_table(rows: int, nq: int, nbits: int, repeat: int) -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (rows, nbits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (nq, nbits // 8), dtype=np.uint8)
    print(f"\n### Hamming top-10: {nq:,} queries x {rows:,} x {nbits}-bit codes\n")
    print("| library | threads | s | QPS | simdex / faiss |")
    print("|---|---|---|---|---|")
    index = sx.FlatIndex(nbits, "hamming")
    index.add(codes)
    ours = {t: median_time(lambda: index.search(queries, 10, threads=t), repeat) for t in (1, 2)}
    theirs = {}
    try:
        import faiss
        fi = faiss.IndexBinaryFlat(nbits)
        fi.add(codes)
        for t in (1, 2):
            faiss.omp_set_num_threads(t)
            theirs[t] = median_time(lambda: fi.search(queries, 10), repeat)
        D_f, _ = fi.search(queries[:50], 10)
        D_s, _ = index.search(queries[:50], 10)
        assert np.array_equal(D_f.astype(np.float32), D_s), "hamming distances differ from faiss"
    except ImportError:
        pass
    for t in (1, 2):
        ratio = f"{theirs[t] / ours[t]:.2f}x" if t in theirs else ""
        print(f"| simdex | {t} | {ours[t]:.2f} | {nq / ours[t]:.0f} | {ratio} |")
        if t in theirs:
            print(f"| faiss IndexBinaryFlat | {t} | {theirs[t]:.2f} | {nq / theirs[t]:.0f} | |")


def pair_latency_table(repeat: int) -> None:
    print("\n### Single pair latency (ns per call, median of 20k calls)\n")
    print("| d | simdex sx.distances | simdex batched (ns/pair, 1 x 10k) | simsimd.dot | simsimd batched cdist (ns/pair) |")
    print("|---|---|---|---|---|")
    try:
        import simsimd
    except ImportError:
        simsimd = None
    rng = np.random.default_rng(2)
    for d in (128, 384, 768, 1536):
        a = rng.standard_normal(d, dtype=np.float32)
        b = rng.standard_normal(d, dtype=np.float32)
        many = rng.standard_normal((10_000, d), dtype=np.float32)
        calls = 20_000

        def per_call(fn) -> float:
            return statistics.median(
                [(lambda t0: (fn(), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(calls)]
            ) * 1e9

        ours = per_call(lambda: sx.distances(a, b, "ip"))
        ours_batch = median_time(lambda: sx.distances(a, many, "ip", threads=1), repeat) / 10_000 * 1e9
        if simsimd is not None:
            theirs = per_call(lambda: simsimd.dot(a, b))
            theirs_batch = median_time(lambda: simsimd.cdist(a[None], many, "dot", threads=1), repeat) / 10_000 * 1e9
            print(f"| {d} | {ours:.0f} | {ours_batch:.1f} | {theirs:.0f} | {theirs_batch:.1f} |")
        else:
            print(f"| {d} | {ours:.0f} | {ours_batch:.1f} | | |")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--hamming-queries", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--skip-scan", action="store_true")
    p.add_argument("--skip-hamming", action="store_true")
    p.add_argument("--skip-pairs", action="store_true")
    args = p.parse_args()
    print(f"simdex {sx.__version__}, simd={sx.simd_level()}, cores={sx._core.available_cores()}")
    if not args.skip_scan:
        scan_table(args.rows, args.dim, args.repeat)
    if not args.skip_hamming:
        hamming_table(args.rows, args.hamming_queries, 256, args.repeat)
    if not args.skip_pairs:
        pair_latency_table(args.repeat)


if __name__ == "__main__":
    main()
