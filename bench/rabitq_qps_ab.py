"""Interleaved QPS of one saved RaBitQ index under several builds (the shared box drifts, so
each round runs every build back to back, the order rotating, and ratios to the first build
are taken per round).

    OPENBLAS_NUM_THREADS=1 python bench/rabitq_qps_ab.py <build A>/pkg <build B>/pkg [...] \\
        --index /tmp/rabitq-identity/ivf_cos_b1.sx --nprobe 48 --rerank-k 30 --rounds 8

Each run: load the index, 2 warm-up searches of the 1,000 dev queries (k=10, threads=1), then
5 timed ones; its figure is the median QPS by process_time (CPU, robust to descheduling) and
by perf_counter (wall). Prints every round and the medians, plus the median of per-round
ratios to A. On the shared KVM box the same .so run from two different files differed by up
to ~10% (physical placement of its pages?): give each build as 2-3 package directories holding
fresh copies of its .so, and the same build twice to see that floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> None:
    import h5py
    import numpy as np
    import simdex as sx

    q = np.asarray(h5py.File(args.data, "r")["test"], dtype=np.float32)[: args.nq]
    index = sx.load(args.index)
    kwargs = {"nprobe": args.nprobe} if args.nprobe else {}
    cpu, wall = [], []
    for rep in range(7):
        c, w = time.process_time(), time.perf_counter()
        index.search(q, 10, rerank_k=args.rerank_k, threads=1, **kwargs)
        c, w = time.process_time() - c, time.perf_counter() - w
        if rep >= 2:
            cpu.append(len(q) / c)
            wall.append(len(q) / w)
    print(json.dumps({"cpu": statistics.median(cpu), "wall": statistics.median(wall), "simd": sx.simd_level()}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("builds", nargs="+", help="package directories (PYTHONPATH), the first is A")
    parser.add_argument("--index", required=True)
    parser.add_argument("--data", default="/work/shared/data/minilm-dev-60k.hdf5")
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--nprobe", type=int, default=0, help="0: a flat index (no nprobe)")
    parser.add_argument("--rerank-k", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    options = [a for a in sys.argv[1:] if a not in args.builds and a != "--child"]
    n = len(args.builds)
    results: list[list[dict]] = [[] for _ in range(n)]
    for r in range(args.rounds):
        for i in [(r + k) % n for k in range(n)]:
            env = dict(os.environ, PYTHONPATH=args.builds[i])
            out = subprocess.run([sys.executable, __file__, *options, "--child", "x"], env=env,
                                 capture_output=True, text=True, check=True)
            results[i].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"round {r}: " + "  ".join(f"{chr(65 + i)} {results[i][-1]['cpu']:,.0f}" for i in range(n))
              + " QPS (cpu)", flush=True)
    for measure in ("cpu", "wall"):
        a = [x[measure] for x in results[0]]
        line = f"{measure}: A median {statistics.median(a):,.0f} QPS"
        for i in range(1, n):
            b = [x[measure] for x in results[i]]
            ratios = [y / x for x, y in zip(a, b)]
            line += (f"; {chr(65 + i)} median {statistics.median(b):,.0f} QPS, median {chr(65 + i)}/A "
                     f"{statistics.median(ratios):.3f} (faster in {sum(q > 1 for q in ratios)}/{len(ratios)})")
        print(line + f" (simd {results[0][0]['simd']})")


if __name__ == "__main__":
    main()
