"""ShardedIndex on a local Dask cluster vs one index in one process, on the dev data.

Setups, all on the dev data's 'train' (cosine) with its 'test' queries and exact neighbours:
  * one process   : FlatIndex and HNSWIndex(M=16, ef_construction=--efc), built with
                    --threads threads;
  * sharded       : ShardedIndex of the same kinds on a LocalCluster of --workers worker
                    processes (1 thread each, loopback TCP), one shard per worker, each
                    shard built with 1 thread.
Measured (median over --repeats rounds; the setups are interleaved inside each round so
they share the machine's noise):
  * build        : wall time of add(train) (sharded: includes shipping the rows to workers);
  * batch QPS    : 1,000 queries in one search call, k=10 (HNSW at ef=--ef), recall@10;
  * one query    : latency of search(q, 10) with one query, median over --single queries;
  * overhead     : sharded one-query latency minus the slowest shard's own search time
                   (timed inside the shard, on its worker): the scatter / gather / merge cost;
  * what grows with the number of shards S: one-query latency of a sharded FlatIndex over
                   256 rows with S = 1, 2, 4, 8, 16 shards (on the same workers), and the
                   client-side merge_topk cost for S * k candidates (1 and 1,000 queries).

    PYTHONPATH=build-dev/pkg python bench/bench_distributed.py [--n 60000] [--repeats 3]
        [--efc 100] [--ef 64] [--workers 2] [--threads 2] [--single 200] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time

import h5py
import numpy as np

import simdex as sx
from simdex.distributed import ShardedIndex, merge_topk

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "minilm-dev-60k.hdf5")
K = 10


def median(values):
    return statistics.median(values)


def latency(search, queries, n):
    times = []
    for q in queries[:n]:
        t = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - t)
    return median(times)


def shard_self_time(index: ShardedIndex, queries: np.ndarray, n: int, **params) -> float:
    """Median one-query search time measured inside each shard; the slowest shard's."""
    def timed(shard, queries=queries[:n], params=params):
        times = []
        for q in queries:
            t = time.perf_counter()
            shard.search(q, K, **params)
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    return max(index.map_shards(timed))


def compare(client, x, queries, truth, args) -> None:
    """One index in this process vs a ShardedIndex over the workers, setups interleaved."""
    kinds = {
        "flat": (lambda: sx.FlatIndex(x.shape[1], "cosine"), {}),
        "hnsw": (lambda: sx.HNSWIndex(x.shape[1], "cosine", M=16, ef_construction=args.efc), {"ef": args.ef}),
    }
    rows = {}
    for r in range(args.repeats):
        for kind, (make, params) in kinds.items():
            one = make()
            t = time.perf_counter()
            one.add(x, threads=args.threads)
            build_one = time.perf_counter() - t
            sharded = ShardedIndex(make, client=client)
            t = time.perf_counter()
            sharded.add(x, threads=1)
            build_sharded = time.perf_counter() - t
            for name, index, build, extra in (("one process", one, build_one, {"threads": args.threads}),
                                              (f"sharded x{args.workers}", sharded, build_sharded, {})):
                t = time.perf_counter()
                found = index.search(queries, K, **params, **extra).ids
                batch = time.perf_counter() - t
                single = latency(lambda q, index=index, params=params: index.search(q, K, **params), queries,
                                 args.single)
                entry = rows.setdefault((kind, name), {"build": [], "qps": [], "single": [], "recall": [],
                                                       "shard": []})
                entry["build"].append(build)
                entry["qps"].append(len(queries) / batch)
                entry["single"].append(single)
                entry["recall"].append(sx.recall_at_k(found, truth, K))
                if index is sharded:
                    entry["shard"].append(shard_self_time(sharded, queries, args.single, **params))
            del one, sharded
        print(f"# round {r + 1}/{args.repeats} done, load average {os.getloadavg()[0]:.1f}", flush=True)

    print("\n| index | setup | build s | batch QPS (1,000 q) | recall@10 | one query ms "
          "| slowest shard's own ms | scatter/merge overhead ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (kind, name), e in rows.items():
        own = f"{median(e['shard']) * 1e3:.2f}" if e["shard"] else ""
        over = f"{(median(e['single']) - median(e['shard'])) * 1e3:.2f}" if e["shard"] else ""
        print(f"| {kind} | {name} | {median(e['build']):.2f} | {median(e['qps']):,.0f} | {median(e['recall']):.4f} "
              f"| {median(e['single']) * 1e3:.2f} | {own} | {over} |")
    for kind in kinds:
        one, sh = rows[(kind, "one process")], rows[(kind, f"sharded x{args.workers}")]
        print(f"# {kind}: sharded / one process: build time {median(sh['build']) / median(one['build']):.2f}x, "
              f"batch QPS {median(sh['qps']) / median(one['qps']):.2f}x, one-query latency "
              f"{median(sh['single']) / median(one['single']):.2f}x")


def scaling(client, x, queries, args) -> None:
    """One-query latency against the number of shards, on shards too small to cost anything
    (256 rows in all): what the scatter / gather / merge costs per shard. The shard counts
    take turns query by query, so they share the machine's noise."""
    counts = (1, 2, 4, 8, 16)
    indexes = {}
    for s in counts:
        indexes[s] = ShardedIndex(lambda: sx.FlatIndex(x.shape[1], "cosine"), client=client, n_shards=s)
        indexes[s].add(x[:256])
    times = {s: [] for s in counts}
    for _ in range(args.repeats):
        for q in queries[: args.single]:
            for s in counts:
                t = time.perf_counter()
                indexes[s].search(q, K)
                times[s].append(time.perf_counter() - t)
    base = median(times[1])
    print(f"\n| shards S ({args.workers} workers) | one-query latency ms, FlatIndex of 256 rows "
          "| minus S=1, ms | per extra shard, ms |")
    print("|---:|---:|---:|---:|")
    for s in counts:
        extra = median(times[s]) - base
        per = f"{extra / (s - 1) * 1e3:.2f}" if s > 1 else ""
        print(f"| {s} | {median(times[s]) * 1e3:.2f} | {extra * 1e3:.2f} | {per} |")
    print(f"# {len(times[1])} queries per shard count; load average {os.getloadavg()[0]:.1f}")


def merging() -> None:
    """Client-side merge_topk cost for S * k candidates per query."""
    print("\n| S * k candidates merged | merge_topk, 1 query, us | merge_topk, 1,000 queries, ms |")
    print("|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for s in (2, 10, 100):
        cost = {}
        for nq in (1, 1000):
            d = [np.sort(rng.random((nq, K), dtype=np.float32), axis=1) for _ in range(s)]
            i = [rng.integers(0, 1 << 40, (nq, K)) for _ in range(s)]
            reps = 2000 if nq == 1 else 20
            t = time.perf_counter()
            for _ in range(reps):
                merge_topk(d, i, K)
            cost[nq] = (time.perf_counter() - t) / reps
        print(f"| {s * K} | {cost[1] * 1e6:.1f} | {cost[1000] * 1e3:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DATA)
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--efc", type=int, default=100)
    p.add_argument("--ef", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--single", type=int, default=200)
    p.add_argument("--parts", default="compare,scaling,merge",
                   help="comma-separated: compare (one process vs sharded), scaling (latency vs shards), merge")
    p.add_argument("--quick", action="store_true", help="n=10000, 1 repeat, 50 single queries")
    args = p.parse_args()
    if args.quick:
        args.n, args.repeats, args.single = 10000, 1, 50
    parts = set(args.parts.split(","))

    import distributed

    with h5py.File(args.data) as f:
        x = f["train"][: args.n]
        queries = f["test"][:]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, simd={sx.simd_level()}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"# data: {args.n} x {x.shape[1]} train, {len(queries)} test queries, k={K}")
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                  protocol="tcp://", host="127.0.0.1", dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
        if "compare" in parts:
            truth = sx.knn(queries, x, K, "cosine").ids  # exact on the rows used
            compare(client, x, queries, truth, args)
        if "scaling" in parts:
            scaling(client, x, queries, args)
    if "merge" in parts:
        merging()
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
