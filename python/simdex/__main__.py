"""Command line: python -m simdex info | demo | bench."""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time

import numpy as np


def _info(args: argparse.Namespace) -> int:
    import simdex as sx

    feats = sx.cpu_features()
    present = {name for name, on in feats.items() if on}
    active, detected = sx.simd_level(), sx._core.detected_level()
    print(f"simdex {sx.__version__} (python {platform.python_version()}, numpy {np.__version__})")
    print(f"machine   {platform.machine()}, {sx._core.available_cores()} usable cores")
    lowered = " (lowered by SIMDEX_SIMD)" if active != detected else ""
    print(f"tier      {active}{lowered}; detected {detected}; "
          f"runs {', '.join(sx.kernels.tier_chain(detected))}")
    # the tiers one step above the detected one, and what this CPU lacks for each
    children = [t for t in sx.kernels.TIERS.values() if t.parent == detected and t.name != detected]
    if children:
        missing = {t.name: [f for f in t.features if f not in present] for t in children}
        best = min(missing, key=lambda name: len(missing[name]))
        print(f"next tier {best} needs {' '.join(missing[best])}")
    else:
        print(f"next tier none ({detected} is the highest tier for this architecture)")
    print("features  " + " ".join(name for name, on in sorted(feats.items()) if on))
    return 0


def generated_dataset(n: int, nq: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors shaped like sentence embeddings: (n, dim) data, (nq, dim) queries.

    Cluster centres plus variation in a 32-dimensional random subspace and a little isotropic
    noise, so the spectrum decays as it does for real embeddings (compressed indexes behave
    as they would on real data, not as on pure noise).
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(8, n // 500), dim)).astype(np.float32)
    basis = rng.standard_normal((32, dim)).astype(np.float32) / np.sqrt(32)

    def draw(count: int) -> np.ndarray:
        x = (centers[rng.integers(0, len(centers), count)]
             + 0.8 * rng.standard_normal((count, 32)).astype(np.float32) @ basis
             + 0.1 * rng.standard_normal((count, dim)).astype(np.float32))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(nq)


def _timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _demo(args: argparse.Namespace) -> int:
    import simdex as sx

    n, nq, dim, k = args.n, args.queries, args.dim, 10
    print(f"simdex demo: {n} x {dim} generated unit vectors, {nq} queries, k={k}, simd={sx.simd_level()}")
    data, queries = generated_dataset(n, nq, dim, seed=args.seed)

    def numpy_top_k() -> np.ndarray:
        scores = -(queries @ data.T)
        part = np.argpartition(scores, k, axis=1)[:, :k]
        return np.take_along_axis(part, np.argsort(np.take_along_axis(scores, part, 1), 1), 1)

    t_np, truth = _timed(numpy_top_k)
    print(f"{'method':<34}{'recall@10':>10}{'QPS':>12}{'build s':>9}")
    print(f"{'numpy matmul + argpartition':<34}{1.0:>10.3f}{nq / t_np:>12.0f}{0:>9.2f}")

    rows = []
    for storage in ("float32", "float16", "int8"):
        index = sx.FlatIndex(dim, "cosine", storage=storage)
        t0 = time.perf_counter()
        index.add(data)
        build = time.perf_counter() - t0
        t, (D, I) = _timed(lambda: index.search(queries, k))
        rows.append((f"FlatIndex storage={storage}", sx.recall_at_k(I, truth, k), nq / t, build))
    if hasattr(sx, "HNSWIndex"):
        index = sx.HNSWIndex(dim, "cosine", M=16, ef_construction=100)
        t0 = time.perf_counter()
        index.add(data)
        build = time.perf_counter() - t0
        for ef in (16, 64):
            t, (D, I) = _timed(lambda: index.search(queries, k, ef=ef))
            rows.append((f"HNSWIndex M=16 ef={ef}", sx.recall_at_k(I, truth, k), nq / t, build))
    m8, m4 = math.gcd(dim, 32), math.gcd(dim, 64)  # sub-spaces must divide dim
    compressed = [
        (f"PQIndex m={m8}x8 + rerank 100", lambda: sx.PQIndex(dim, m8, nbits=8, metric="cosine", rerank="memory"),
         {"rerank_k": 100}),
        (f"PQIndex m={m4}x4 fast-scan + rerank", lambda: sx.PQIndex(dim, m4, nbits=4, metric="cosine", rerank="memory"),
         {"rerank_k": 100}),
        ("BinaryIndex 1 bit + rerank 100", lambda: sx.BinaryIndex(dim, bits=1, rerank="memory"),
         {"rerank_k": 100}),
        (f"LeanVecIndex ID d={max(1, dim // 2)} int8 ef=64",
         lambda: sx.LeanVecIndex(dim, max(1, dim // 2), kind="id", metric="cosine", primary="int8",
                                 ef_construction=100), {"ef": 64}),
    ]
    for name, make, options in compressed:
        index = make()
        t0 = time.perf_counter()
        index.train(data)
        index.add(data)
        build = time.perf_counter() - t0
        t, (D, I) = _timed(lambda: index.search(queries, k, **options))
        rows.append((name, sx.recall_at_k(I, truth, k), nq / t, build))
    for name, recall, qps, build in rows:
        print(f"{name:<34}{recall:>10.3f}{qps:>12.0f}{build:>9.2f}")
    print("all results checked against NumPy brute force (recall = fraction of the true top-10 found)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import simdex as sx

    if args.data:
        ds = sx.io.load_ann_benchmarks(args.data)
        data, queries, metric = ds.train, ds.test[: args.queries], ds.metric
        truth = ds.neighbors[: args.queries]
        source = args.data
    else:
        data, queries = generated_dataset(args.n, args.queries, args.dim, seed=args.seed)
        metric = "cosine"
        truth = None
        source = f"generated {args.n} x {args.dim}"
    k = args.k
    if truth is None or truth.shape[1] < k:
        truth = sx.knn(queries, data, k, metric).ids
    print(f"bench: {source}, metric={metric}, {len(queries)} queries, k={k}, simd={sx.simd_level()}")
    results = []  # (label, param, recall, qps, build)
    kinds = args.index.split(",")
    for kind in kinds:
        if kind == "flat":
            index = sx.FlatIndex(data.shape[1], metric)
            t0 = time.perf_counter(); index.add(data); build = time.perf_counter() - t0
            t, (D, I) = _timed(lambda: index.search(queries, k))
            results.append(("flat", "-", sx.recall_at_k(I, truth, k), len(queries) / t, build))
        elif kind == "hnsw":
            if not hasattr(sx, "HNSWIndex"):
                print("hnsw: not available in this build", file=sys.stderr)
                continue
            index = sx.HNSWIndex(data.shape[1], metric, M=args.M, ef_construction=args.ef_construction)
            t0 = time.perf_counter(); index.add(data); build = time.perf_counter() - t0
            for ef in [int(v) for v in args.ef.split(",")]:
                t, (D, I) = _timed(lambda: index.search(queries, k, ef=ef))
                results.append(("hnsw", f"ef={ef}", sx.recall_at_k(I, truth, k), len(queries) / t, build))
        else:
            print(f"unknown index kind {kind!r} (flat, hnsw)", file=sys.stderr)
            return 2
    print(f"| index | param | recall@{k} | QPS | build s |")
    print("|---|---|---|---|---|")
    for label, param, recall, qps, build in results:
        print(f"| {label} | {param} | {recall:.4f} | {qps:.0f} | {build:.2f} |")
    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("the plot needs matplotlib: pip install 'simdex[plot]'", file=sys.stderr)
            return 0
        fig, ax = plt.subplots(figsize=(6, 4))
        for label in dict.fromkeys(r[0] for r in results):
            pts = [(r[2], r[3]) for r in results if r[0] == label]
            ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xlabel(f"recall@{k}"); ax.set_ylabel("QPS"); ax.set_yscale("log"); ax.grid(True)
        ax.legend(); fig.tight_layout(); fig.savefig(args.plot)
        print(f"plot written to {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simdex", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, SIMD level, CPU features")
    demo = sub.add_parser("demo", help="build indexes on generated data, print recall and QPS vs NumPy")
    demo.add_argument("--n", type=int, default=20000)
    demo.add_argument("--dim", type=int, default=128)
    demo.add_argument("--queries", type=int, default=500)
    demo.add_argument("--seed", type=int, default=0)
    bench = sub.add_parser("bench", help="recall / QPS / build time sweep on an ann-benchmarks HDF5 file")
    bench.add_argument("--data", help="ann-benchmarks HDF5 file (default: generated data)")
    bench.add_argument("--index", default="flat,hnsw", help="comma list: flat,hnsw")
    bench.add_argument("--n", type=int, default=50000)
    bench.add_argument("--dim", type=int, default=128)
    bench.add_argument("--queries", type=int, default=1000)
    bench.add_argument("--k", type=int, default=10)
    bench.add_argument("--M", type=int, default=16)
    bench.add_argument("--ef-construction", type=int, default=200)
    bench.add_argument("--ef", default="16,32,64,128,256")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--plot", help="write a recall-QPS plot (PNG) here")
    args = parser.parse_args(argv)
    return {"info": _info, "demo": _demo, "bench": _bench}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
