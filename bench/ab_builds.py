"""Two builds of simdex in ONE process, timed in alternating rounds (A/B for small changes).

Separate processes running identical code differ by up to ~8% on a shared 2-core VM, so a
1-3% change cannot be told from noise by process pairs. Here both builds are imported side
by side (as packages `simdex_a` and `simdex_b`), load the same index file and take turns; the
median of the per-round ratios moves by about 1% between runs (60 rounds).

The second build must register its pybind11 types apart from the first's (one registry per
ABI id), so configure it with its own ABI tag, e.g.:

    cmake -S . -B /work/build-ab -G Ninja -DCMAKE_BUILD_TYPE=Release \\
        -DCMAKE_CXX_FLAGS='-DPYBIND11_BUILD_ABI=\\"_ab\\"' \\
        -Dpybind11_DIR=$(python -c 'import pybind11;print(pybind11.get_cmake_dir())') \\
        -DPython_EXECUTABLE=$(command -v python)
    bash ci/dev-build.sh /work/build-ab

then (A: a build of the base commit, e.g. from a worktree; B: the change):

    python bench/ab_builds.py BASE/build-dev/pkg /work/build-ab/pkg graph G.sx --ef 20 --rerank-k 40
    python bench/ab_builds.py BASE/build-dev/pkg /work/build-ab/pkg batch I.sx --nprobe 48

`graph`: one query per call (HNSWIndex); `batch`: every query in one call (IVF / flat indexes).
Prints both medians, the median ratio B / A with its quartiles, both recalls, and whether the
two builds returned the same ids.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def import_build(pkg_dir: str, name: str, scratch: Path) -> Any:
    """Copies PKG_DIR/simdex to SCRATCH/NAME (symlinks resolved) and imports it as NAME."""
    target = scratch / name
    shutil.copytree(Path(pkg_dir) / "simdex", target, symlinks=False)
    fmt = target / "_format.py"  # it imports the package by name to register index kinds
    text = fmt.read_text().replace("    import simdex  # noqa", f"    import {name}  # noqa")
    fmt.write_text(text)
    if str(scratch) not in sys.path:
        sys.path.insert(0, str(scratch))
    return importlib.import_module(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="package dir of build A (holds simdex/)")
    ap.add_argument("b", help="package dir of build B (configured with its own PYBIND11_BUILD_ABI)")
    ap.add_argument("mode", choices=["graph", "batch"])
    ap.add_argument("index", help="an index file both builds load")
    ap.add_argument("--data", default="/work/shared/data/minilm-dev-60k.hdf5")
    ap.add_argument("--ef", type=int, default=20)
    ap.add_argument("--nprobe", type=int, default=48)
    ap.add_argument("--rerank-k", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="simdex-ab-"))
    try:
        builds = {
            n: import_build(p, f"simdex_{n}", scratch) for n, p in (("a", args.a), ("b", args.b))
        }
        ds = builds["a"].io.load_ann_benchmarks(args.data)
        q, truth = ds.test, ds.neighbors[:, :10]
        index = {n: m.load(args.index) for n, m in builds.items()}

        def run(ix: Any) -> tuple[float, np.ndarray]:
            t = time.perf_counter()
            if args.mode == "graph":
                out = np.empty((len(q), 10), np.int64)
                for i, v in enumerate(q):
                    out[i] = ix.search(v, 10, ef=args.ef, rerank_k=args.rerank_k).ids
            else:
                out = ix.search(
                    q, 10, nprobe=args.nprobe, rerank_k=args.rerank_k, threads=args.threads
                ).ids
            return time.perf_counter() - t, out

        qps: dict[str, list[float]] = {"a": [], "b": []}
        ids: dict[str, np.ndarray] = {}
        for n in "ab":
            run(index[n])  # warm-up
        for r in range(args.rounds):
            for n in "ab" if r % 2 else "ba":
                dt, ids[n] = run(index[n])
                qps[n].append(len(q) / dt)
        ratio = np.array(qps["b"]) / np.array(qps["a"])

        def recall(found: np.ndarray) -> float:
            hits = [len(set(f) & set(t)) for f, t in zip(found, truth, strict=True)]
            return float(np.mean(hits)) / 10

        print(
            f"{args.mode} {os.path.basename(args.index)}: A {np.median(qps['a']):.0f} QPS, "
            f"B {np.median(qps['b']):.0f} QPS, B/A median {np.median(ratio):.3f} "
            f"(quartiles {np.percentile(ratio, 25):.3f}-{np.percentile(ratio, 75):.3f}, "
            f"{args.rounds} rounds); recall A {recall(ids['a']):.4f} B {recall(ids['b']):.4f}; "
            f"same ids: {np.array_equal(ids['a'], ids['b'])}"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
