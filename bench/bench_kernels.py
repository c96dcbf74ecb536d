"""Kernel benchmarks: one-query scan bandwidth, Hamming top-k vs FAISS, pair latency vs SimSIMD,
and every CPU tier this machine runs side by side.

    python bench/bench_kernels.py [--rows 1000000] [--repeat 5] [--skip-hamming]
    python bench/bench_kernels.py --tiers [--repeat 5]     # per-tier table + small calls

--tiers runs each workload once per tier the CPU has, each in its own process started with
SIMDEX_SIMD=<tier> and FAISS's matching SIMD level (faiss-cpu >= 1.13 is one library with
run-time dispatch, set by FAISS_SIMD_LEVEL: scalar NONE, haswell AVX2, skylake AVX512,
icelake AVX512_VPOPCNT; FAISS_OPT_LEVEL is set too for older, per-build wheels), one thread;
the level FAISS reports it ran is printed in the table. It reports
CPU time (time.process_time: what the work costs, not how long a busy shared box made it
wait), median of --repeat runs, as ratios to the tier below and to FAISS in the same process.

Prints markdown tables for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import simdex as sx
from _peers import faiss_level


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


# ---- every tier side by side ------------------------------------------------------------------

DEV = "/work/shared/data/minilm-dev-60k.hdf5"
FAISS_LEVEL = {"scalar": "generic", "haswell": "avx2", "skylake": "avx512", "icelake": "avx512"}
# faiss-cpu with dynamic dispatch (one library): the level is FAISS_SIMD_LEVEL
FAISS_DD_LEVEL = {"scalar": "NONE", "haswell": "AVX2", "skylake": "AVX512", "icelake": "AVX512_VPOPCNT"}



def cpu_time(fn, repeat: int) -> tuple[float, object]:
    """Median CPU seconds of the calling process (one thread everywhere) and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), out


def tier_worker(repeat: int) -> dict:
    """Runs in a process started with SIMDEX_SIMD / FAISS_OPT_LEVEL set; returns
    {workload: (simdex s, faiss s, note)}."""
    import faiss

    faiss.omp_set_num_threads(1)
    out: dict = {"_faiss_level": faiss_level()}
    data = sx.io.load_ann_benchmarks(DEV)
    x = sx.kernels.normalize(data.train)
    q = sx.kernels.normalize(data.test)
    d = x.shape[1]

    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    t_s, (_, ids) = cpu_time(lambda: sx.knn(q[:200], x, 10, "ip", threads=1), repeat)
    t_f, (_, fids) = cpu_time(lambda: flat.search(q[:200], 10), repeat)
    out["exact top-10, 200 q x 60k x 384"] = (t_s, t_f, "")
    t_s, _ = cpu_time(lambda: [sx.knn(q[i], x, 10, "ip", threads=1) for i in range(20)], repeat)
    t_f, _ = cpu_time(lambda: [flat.search(q[i:i + 1], 10) for i in range(20)], repeat)
    out["one-query scan, 20 x (1 q x 60k x 384)"] = (t_s, t_f, "")

    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (200_000, 32), dtype=np.uint8)
    cq = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    hindex = sx.FlatIndex(256, "hamming")
    hindex.add(codes)
    bindex = faiss.IndexBinaryFlat(256)
    bindex.add(codes)
    t_s, _ = cpu_time(lambda: hindex.search(cq, 10, threads=1), repeat)
    t_f, _ = cpu_time(lambda: bindex.search(cq, 10), repeat)
    out["hamming top-10, 300 q x 200k x 256 bit"] = (t_s, t_f, "")

    truth = data.neighbors
    for label, m, nbits, nq in (("PQ48x8 ADC", 48, 8, 200), ("PQ64x4 fast-scan", 64, 4, 1000)):
        f = faiss.IndexPQ(d, m, 8, faiss.METRIC_INNER_PRODUCT) if nbits == 8 else \
            faiss.IndexPQFastScan(d, m, 4, faiss.METRIC_INNER_PRODUCT)
        f.train(x[::4])
        f.add(x)
        index = sx.PQIndex(d, m, nbits=nbits, metric="ip")
        index.pq.codebooks = faiss.vector_to_array(f.pq.centroids).reshape(m, 2 ** nbits, d // m).astype(np.float32)
        index.add(x)
        t_s, (_, ids) = cpu_time(lambda: index.search(q[:nq], 10, threads=1), repeat)
        t_f, (_, fids) = cpu_time(lambda: f.search(q[:nq], 10), repeat)
        note = (f"recall@10 {sx.recall_at_k(ids, truth[:nq], 10):.4f} / "
                f"{sx.recall_at_k(fids, truth[:nq], 10):.4f} (same codebooks)")
        out[f"{label}, {nq} q x 60k"] = (t_s, t_f, note)

    n_h = 10_000
    xs, qs = x[:n_h], q[:300]
    truth_h = sx.knn(qs, xs, 10, "ip").ids
    hnsw = sx.HNSWIndex(d, "ip", M=16, ef_construction=100)
    hnsw.add(xs, threads=1)
    fh = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
    fh.hnsw.efConstruction = 100
    fh.add(xs)

    def at_recall(search, set_ef):
        for ef in (10, 16, 24, 32, 48, 64, 96, 128, 192, 256):
            set_ef(ef)
            _, ids = search()
            if sx.recall_at_k(ids, truth_h, 10) >= 0.95:
                return ef
        return 256

    ef_s = at_recall(lambda: hnsw.search(qs, 10, threads=1), lambda ef: setattr(hnsw, "ef", ef))
    ef_f = at_recall(lambda: fh.search(qs, 10), lambda ef: setattr(fh.hnsw, "efSearch", ef))
    hnsw.ef, fh.hnsw.efSearch = ef_s, ef_f
    t_s, _ = cpu_time(lambda: [hnsw.search(qs[i], 10, threads=1) for i in range(len(qs))], repeat)
    t_f, _ = cpu_time(lambda: [fh.search(qs[i:i + 1], 10) for i in range(len(qs))], repeat)
    out["HNSW recall@10 >= 0.95, 300 single queries, 10k x 384"] = (t_s, t_f, f"ef {ef_s} / {ef_f}")
    return out


def paired_table(repeat: int) -> None:
    """Every tier's simdex in ONE process, the tiers taking turns round by round (force_simd;
    indexes are built per tier, as they capture their kernels): per-process timing noise on a
    shared VM (up to ~1.5x between processes) cancels out of the ratios, which separate
    worker processes cannot promise."""
    from simdex.kernels import force_simd

    tiers = sx.kernels.available_levels()
    data = sx.io.load_ann_benchmarks(DEV)
    x = sx.kernels.normalize(data.train)
    q = sx.kernels.normalize(data.test)
    d = x.shape[1]
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (200_000, 32), dtype=np.uint8)
    cq = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    workloads: dict[str, dict[str, object]] = {}  # workload -> tier -> fn (runs at that tier)

    def at(tier, fn):
        def run():
            with force_simd(tier):
                return fn()
        return run

    workloads["exact top-10, 200 q x 60k x 384"] = {
        t: at(t, lambda: sx.knn(q[:200], x, 10, "ip", threads=1)) for t in tiers}
    workloads["one-query scan, 20 x (1 q x 60k x 384)"] = {
        t: at(t, lambda: [sx.knn(q[i], x, 10, "ip", threads=1) for i in range(20)]) for t in tiers}
    hamming = {}
    for t in tiers:
        with force_simd(t):
            hamming[t] = sx.FlatIndex(256, "hamming")
            hamming[t].add(codes)
    workloads["hamming top-10, 300 q x 200k x 256 bit"] = {
        t: at(t, lambda t=t: hamming[t].search(cq, 10, threads=1)) for t in tiers}
    for label, m, nbits, nq in (("PQ48x8 ADC", 48, 8, 200), ("PQ64x4 fast-scan", 64, 4, 1000)):
        trained = sx.PQIndex(d, m, nbits=nbits, metric="ip")
        trained.train(x[::4])
        pq = {}
        for t in tiers:
            with force_simd(t):
                pq[t] = sx.PQIndex(d, m, nbits=nbits, metric="ip")
                pq[t].pq.codebooks = trained.pq.codebooks
                pq[t].add(x)
        workloads[f"{label}, {nq} q x 60k"] = {
            t: at(t, lambda t=t, nq=nq, pq=pq: pq[t].search(q[:nq], 10, threads=1)) for t in tiers}
    hnsw = {}
    for t in tiers:
        with force_simd(t):
            hnsw[t] = sx.HNSWIndex(d, "ip", M=16, ef_construction=100)
            hnsw[t].add(x[:10_000], threads=1)
            hnsw[t].ef = 24
    workloads["HNSW ef=24, 300 single queries, 10k x 384"] = {
        t: at(t, lambda t=t: [hnsw[t].search(q[i], 10, threads=1) for i in range(300)]) for t in tiers}

    rounds = 4 * repeat
    print(f"\n### Every tier in one process ({', '.join(tiers)}; detected {sx._core.detected_level()}), "
          f"1 thread, CPU time, median of {rounds} interleaved rounds\n")
    print("| workload | " + " | ".join(f"{t} ms" for t in tiers) + " | "
          + " | ".join(f"{b} / {a}" for a, b in zip(tiers, tiers[1:])) + " |")
    print("|---|" + "---:|" * (2 * len(tiers) - 1))
    for name, fns in workloads.items():
        times = interleaved([fns[t] for t in tiers], rounds, 1)
        steps = [f"{below / t:.2f}x" for below, t in zip(times, times[1:])]
        print(f"| {name} | " + " | ".join(f"{1e3 * t:.1f}" for t in times) + " | " + " | ".join(steps) + " |",
              flush=True)


def interleaved(fns: list, rounds: int, calls: int) -> list[float]:
    """Median CPU seconds per call of each fn, the fns taking turns round by round (so a
    burst of load on the shared box hits every library alike)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.process_time()
            for _ in range(calls):
                fn()
            times[i].append((time.process_time() - t0) / calls)
    return [statistics.median(t) for t in times]


def small_calls_worker(repeat: int) -> dict:
    """sx.distances per call: one pair and one query x 10k rows, against simsimd and numkong."""
    import numkong
    import simsimd

    rng = np.random.default_rng(2)
    a = rng.standard_normal(384, dtype=np.float32)
    b = rng.standard_normal(384, dtype=np.float32)
    many = rng.standard_normal((10_000, 384), dtype=np.float32)
    out = {}
    rounds = 8 * repeat
    for metric, ss, nk in (("l2", "sqeuclidean", "sqeuclidean"), ("ip", "dot", "dot"), ("cosine", "cosine", "angular")):
        out[f"{metric} one pair (s per call)"] = interleaved(
            [lambda: sx.distances(a, b, metric), lambda: getattr(simsimd, ss)(a, b),
             lambda: getattr(numkong, nk)(a, b)], rounds, 2000)
        out[f"{metric} 1 x 10k (s per pair)"] = [t / 10_000 for t in interleaved(
            [lambda: sx.distances(a, many, metric, threads=1),
             lambda: simsimd.cdist(a[None], many, ss, threads=1),
             lambda: numkong.cdist(a[None], many, nk)], rounds, 1)]
    return out


def run_worker(kind: str, tier: str, repeat: int) -> dict:
    env = dict(os.environ, SIMDEX_SIMD=tier, FAISS_OPT_LEVEL=FAISS_LEVEL.get(tier, "generic"),
               FAISS_SIMD_LEVEL=FAISS_DD_LEVEL.get(tier, "NONE"))
    r = subprocess.run([sys.executable, __file__, "--worker", kind, "--repeat", str(repeat)],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{kind} worker at {tier} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def tiers_table(repeat: int, parts: str) -> None:
    tiers = sx.kernels.available_levels()
    if "small" in parts.split(","):
        small_table(tiers, repeat)
    if "paired" in parts.split(","):
        paired_table(repeat)
    if "tiers" not in parts.split(","):
        return
    print(f"\n### Every tier this CPU runs ({', '.join(tiers)}; detected {sx._core.detected_level()}), "
          f"1 thread, CPU time, median of {repeat}\n")
    results = {tier: run_worker("tiers", tier, repeat) for tier in tiers}
    print("| workload | tier | simdex ms | vs tier below | FAISS ms (matching build) | FAISS / simdex | note |")
    print("|---|---|---:|---:|---:|---:|---|")
    for workload in results[tiers[0]]:
        if workload.startswith("_"):
            continue
        below = None
        for tier in tiers:
            t_s, t_f, note = results[tier][workload]
            step = f"{below / t_s:.2f}x" if below else ""
            print(f"| {workload} | {tier} | {1e3 * t_s:.1f} | {step} | {1e3 * t_f:.1f} "
                  f"({results[tier]['_faiss_level']}) | {t_f / t_s:.2f} | {note} |")
            below = t_s


def small_table(tiers: list[str], repeat: int) -> None:
    print(f"\n### Small calls: sx.distances vs simsimd {_version('simsimd')} and numkong "
          f"{_version('numkong')}, d = 384, CPU time, median of {8 * repeat} "
          "interleaved rounds\n")
    print("| call | tier | simdex | simsimd | numkong | simdex / simsimd | simdex / numkong |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for tier in tiers:
        small = run_worker("small", tier, repeat)
        for call, (ours, ss, nk) in small.items():
            unit = "ns"
            print(f"| {call.split(' (')[0]} | {tier} | {1e9 * ours:.0f} {unit} | {1e9 * ss:.0f} {unit} | "
                  f"{1e9 * nk:.0f} {unit} | {ours / ss:.2f} | {ours / nk:.2f} |")


def _version(name: str) -> str:
    try:
        return __import__(name).__version__
    except ImportError:
        return "(not installed)"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--hamming-queries", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--skip-scan", action="store_true")
    p.add_argument("--skip-hamming", action="store_true")
    p.add_argument("--skip-pairs", action="store_true")
    p.add_argument("--tiers", action="store_true", help="every tier side by side, and small calls")
    p.add_argument("--parts", default="small,tiers", help="with --tiers: small, tiers, paired (every tier in one process), comma-separated")
    p.add_argument("--worker", choices=("tiers", "small"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        work = tier_worker if args.worker == "tiers" else small_calls_worker
        print(json.dumps(work(args.repeat)))
        return
    if args.tiers:
        tiers_table(args.repeat, args.parts)
        return
    print(f"simdex {sx.__version__}, simd={sx.simd_level()}, cores={sx._core.available_cores()}")
    if not args.skip_scan:
        scan_table(args.rows, args.dim, args.repeat)
    if not args.skip_hamming:
        hamming_table(args.rows, args.hamming_queries, 256, args.repeat)
    if not args.skip_pairs:
        pair_latency_table(args.repeat)


if __name__ == "__main__":
    main()
