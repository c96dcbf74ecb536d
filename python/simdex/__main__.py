"""Command line: simdex (or python -m simdex) info | demo | bench | scripts.

simdex info                                  version, SIMD level, CPU features
simdex demo                                  generated data: recall and QPS vs NumPy
simdex bench --data f.hdf5 --index flat,hnsw,pq,binary,leanvec --peers --plot out.png
simdex scripts [NAME [ARGS...]]              the scripts behind README's performance table
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np


def _info(args: argparse.Namespace) -> int:
    import simdex as sx

    feats = sx.cpu_features()
    present = {name for name, on in feats.items() if on}
    active, detected = sx.simd_level(), sx._core.detected_level()
    print(f"simdex {sx.__version__} (python {platform.python_version()}, numpy {np.__version__})")
    print(f"machine   {platform.machine()}, {sx._core.available_cores()} usable cores")
    lowered = " (lowered by SIMDEX_SIMD)" if active != detected else ""
    print(
        f"tier      {active}{lowered}; detected {detected}; "
        f"runs {', '.join(sx.kernels.tier_chain(detected))}"
    )
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
        x = (
            centers[rng.integers(0, len(centers), count)]
            + 0.8 * rng.standard_normal((count, 32)).astype(np.float32) @ basis
            + 0.1 * rng.standard_normal((count, dim)).astype(np.float32)
        )
        unit: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        return unit

    return draw(n), draw(nq)


def _demo(args: argparse.Namespace) -> int:
    import simdex as sx

    from .integrations import _kinds

    n, nq, dim, k = args.n, args.queries, args.dim, 10
    print(
        f"simdex demo: {n} x {dim} generated unit vectors, {nq} queries, k={k}, "
        f"simd={sx.simd_level()}"
    )
    data, queries = generated_dataset(n, nq, dim, seed=args.seed)

    def numpy_top_k() -> np.ndarray:
        scores = -(queries @ data.T)
        part = np.argpartition(scores, k, axis=1)[:, :k]
        return np.take_along_axis(part, np.argsort(np.take_along_axis(scores, part, 1), 1), 1)

    t_np, truth = _time_search(numpy_top_k, 3)
    print(f"{'method':<34}{'recall@10':>10}{'QPS':>12}{'build s':>9}")
    print(f"{'numpy matmul + argpartition':<34}{1.0:>10.3f}{nq / t_np:>12.0f}{0:>9.2f}")
    m8, m4, half = _kinds.default_m(dim, 8), _kinds.default_m(dim, 4), max(1, dim // 2)
    # (index kind, constructor arguments, [(row label, search arguments), ...]): one build each
    plan: list[tuple[str, dict[str, Any], list[tuple[str, dict[str, Any]]]]] = [
        ("flat", {"storage": s}, [(f"FlatIndex storage={s}", {})])
        for s in ("float32", "float16", "int8")
    ]
    plan += [
        (
            "hnsw",
            {"M": 16, "ef_construction": 100},
            [(f"HNSWIndex M=16 ef={ef}", {"ef": ef}) for ef in (16, 64)],
        ),
        ("pq", {"m": m8, "nbits": 8}, [(f"PQIndex m={m8}x8 + rerank 100", {"rerank_k": 100})]),
        (
            "pq",
            {"m": m4, "nbits": 4},
            [(f"PQIndex m={m4}x4 fast-scan + rerank", {"rerank_k": 100})],
        ),
        ("binary", {"bits": 1}, [("BinaryIndex 1 bit + rerank 100", {"rerank_k": 100})]),
        (
            "leanvec",
            {"out_dim": half, "primary": "int8", "ef_construction": 100},
            [(f"LeanVecIndex ID d={half} int8 ef=64", {"ef": 64})],
        ),
    ]
    for kind, params, searches in plan:
        t0 = time.perf_counter()
        index = _kinds.build(kind, data, "cosine", params)
        build = time.perf_counter() - t0
        for label, search_params in searches:
            seconds, ids = _time_search(partial(_search_ids, index, queries, k, search_params), 3)
            recall = sx.recall_at_k(ids, truth, k)
            print(f"{label:<34}{recall:>10.3f}{nq / seconds:>12.0f}{build:>9.2f}")
    print(
        "all results checked against NumPy brute force (recall = fraction of the true top-10 found)"
    )
    return 0


def _search_ids(
    index: Any, queries: np.ndarray, k: int, params: dict[str, Any], threads: int | None = None
) -> np.ndarray:
    return index.search(queries, k, threads=threads, **params).ids  # type: ignore[no-any-return]


# ---- bench: recall / QPS / build time of index kinds (and peers) on one dataset -------------
PEERS = ("faiss", "hnswlib", "usearch")
_PEER_PACKAGES = {"faiss": "faiss-cpu", "hnswlib": "hnswlib", "usearch": "usearch"}
BenchRow = tuple[str, str, float, float, float]  # (label, parameter, recall, QPS, build seconds)


class _BenchError(Exception):
    """A bench request that cannot run; the message says why (exit status 2)."""


def _parse_value(text: str) -> Any:
    """'16' -> 16, '0.5' -> 0.5, 'true' -> True, 'none' -> None, anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _kind_options(items: list[str], what: str) -> dict[str, dict[str, str]]:
    """['hnsw.M=32', ...] -> {'hnsw': {'M': '32'}}; kinds and syntax checked."""
    from .integrations import _kinds

    out: dict[str, dict[str, str]] = {}
    for item in items:
        kind, dot, rest = item.partition(".")
        key, eq, value = rest.partition("=")
        if not dot or not eq or not key:
            raise _BenchError(
                f"{what} must look like KIND.NAME=VALUE (e.g. hnsw.M=32); got {item!r}"
            )
        if kind not in _kinds.KINDS:
            raise _BenchError(
                f"{what} {item!r}: unknown index kind {kind!r} ({', '.join(_kinds.KINDS)})"
            )
        out.setdefault(kind, {})[key] = value
    return out


def _bench_data(
    args: argparse.Namespace,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str, str]:
    """(data, queries, ground truth ids or None, metric, dataset name): --data's first --n
    rows (all by default) or generated unit vectors."""
    import simdex as sx

    if args.data is None:
        n = 50_000 if args.n is None else args.n
        generated, queries = generated_dataset(n, args.queries, args.dim, seed=args.seed)
        return generated, queries, None, "cosine", f"generated {n} x {args.dim}"
    try:
        ds = sx.io.load_ann_benchmarks(args.data)
    except (OSError, ImportError, ValueError) as e:
        raise _BenchError(f"cannot read --data {args.data}: {e}") from None
    if ds.metric not in ("l2", "ip", "cosine"):
        raise _BenchError(
            f"bench runs float datasets (euclidean, angular, ip); {args.data} has metric "
            f"{ds.metric!r}"
        )
    data: np.ndarray = ds.train
    truth: np.ndarray | None = ds.neighbors[: args.queries]
    if args.n is not None and args.n < len(data):
        data, truth = data[: args.n], None  # the file's neighbours index the full train set
    name = os.path.basename(os.fspath(args.data))
    return (
        np.ascontiguousarray(data),
        np.ascontiguousarray(ds.test[: args.queries]),
        truth,
        ds.metric,
        name,
    )


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise _BenchError(f"{what} must be a comma list of ints; got {text!r}") from None
    if min(values) < 1:
        raise _BenchError(f"{what} values must be >= 1; got {text!r}")
    return values


def _check_sweeps(given: dict[str, dict[str, str]]) -> dict[str, dict[str, list[int]]]:
    """--sweep options, checked against each kind's search parameter, as int lists."""
    from .integrations import _kinds

    out: dict[str, dict[str, list[int]]] = {}
    for kind, values in given.items():
        sweep = _kinds.get(kind).sweep
        if sweep is None:
            raise _BenchError(
                f"--sweep {kind}: the {kind!r} index has no search parameter to sweep"
            )
        for name, text in values.items():
            if name != sweep[0]:
                raise _BenchError(f"--sweep {kind}.{name}: the {kind!r} index sweeps {sweep[0]!r}")
            out.setdefault(kind, {})[name] = _int_list(text, f"--sweep {kind}.{name}")
    return out


def _sweep_values(
    kind: str, index: Any, k: int, args: argparse.Namespace, sweeps: dict[str, dict[str, list[int]]]
) -> list[dict[str, Any]]:
    """The search parameters to try for one index: [{}] for exact kinds."""
    from .integrations import _kinds

    sweep = _kinds.get(kind).sweep
    if sweep is None:
        return [{}]
    name, values = sweep
    chosen = sweeps.get(kind, {}).get(name) or (
        _int_list(args.ef, "--ef") if name == "ef" else list(values)
    )
    if name == "rerank_k":
        chosen = sorted({max(v, k) for v in chosen})
    if name == "nprobe":
        chosen = sorted({min(v, index.nlist) for v in chosen})
    return [{name: v} for v in chosen]


def _time_search(search: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """(best seconds of `repeats` runs, the ids of the last run)."""
    best, ids = math.inf, np.empty(0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        ids = search()
        best = min(best, time.perf_counter() - t0)
    return best, ids


def _bench_simdex(
    kind: str,
    params: dict[str, Any],
    data: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    metric: str,
    args: argparse.Namespace,
    sweeps: dict[str, dict[str, list[int]]],
) -> list[BenchRow]:
    import simdex as sx

    from .integrations import _kinds

    t0 = time.perf_counter()
    index = _kinds.build(kind, data, metric, params, threads=args.threads)
    build = time.perf_counter() - t0
    rows = []
    for search_params in _sweep_values(kind, index, args.k, args, sweeps):
        seconds, ids = _time_search(
            partial(_search_ids, index, queries, args.k, search_params, args.threads), args.repeats
        )
        label = ", ".join(f"{key}={value}" for key, value in search_params.items()) or "exact"
        rows.append(
            (kind, label, sx.recall_at_k(ids, truth, args.k), len(queries) / seconds, build)
        )
    return rows


def _bench_peer(
    peer: str,
    data: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    metric: str,
    args: argparse.Namespace,
) -> list[BenchRow]:
    """A peer library's exact and HNSW indexes with the same M, ef_construction and ef sweep."""
    import simdex as sx

    n, dim = data.shape
    threads = args.threads or os.cpu_count() or 1
    efs = _int_list(args.ef, "--ef")
    if metric == "cosine":  # every peer is given unit vectors and inner products
        data = data / np.linalg.norm(data, axis=1, keepdims=True).clip(1e-30)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-30)
    inner = metric != "l2"
    rows: list[BenchRow] = []

    def sweep(
        label: str, build: float, set_ef: Callable[[int], None], search: Callable[[], np.ndarray]
    ) -> None:
        for ef in efs:
            set_ef(max(ef, args.k))
            seconds, ids = _time_search(search, args.repeats)
            rows.append(
                (
                    label,
                    f"ef={ef}",
                    sx.recall_at_k(ids, truth, args.k),
                    len(queries) / seconds,
                    build,
                )
            )

    if peer == "faiss":
        import faiss  # type: ignore[import-not-found, import-untyped, unused-ignore]

        faiss.omp_set_num_threads(threads)
        kind = faiss.METRIC_INNER_PRODUCT if inner else faiss.METRIC_L2
        flat = faiss.IndexFlatIP(dim) if inner else faiss.IndexFlatL2(dim)
        t0 = time.perf_counter()
        flat.add(data)
        build = time.perf_counter() - t0
        seconds, ids = _time_search(lambda: flat.search(queries, args.k)[1], args.repeats)
        rows.append(
            (
                "faiss-flat",
                "exact",
                sx.recall_at_k(ids, truth, args.k),
                len(queries) / seconds,
                build,
            )
        )
        hnsw = faiss.IndexHNSWFlat(dim, args.M, kind)
        hnsw.hnsw.efConstruction = args.ef_construction
        t0 = time.perf_counter()
        hnsw.add(data)
        sweep(
            "faiss-hnsw",
            time.perf_counter() - t0,
            lambda ef: setattr(hnsw.hnsw, "efSearch", ef),
            lambda: hnsw.search(queries, args.k)[1],
        )
    elif peer == "hnswlib":
        import hnswlib  # type: ignore[import-not-found, import-untyped, unused-ignore]

        graph = hnswlib.Index(space="ip" if inner else "l2", dim=dim)
        graph.init_index(
            max_elements=n, M=args.M, ef_construction=args.ef_construction, random_seed=args.seed
        )
        t0 = time.perf_counter()
        graph.add_items(data, np.arange(n), num_threads=threads)
        sweep(
            "hnswlib",
            time.perf_counter() - t0,
            graph.set_ef,
            lambda: graph.knn_query(queries, args.k, num_threads=threads)[0],
        )
    else:
        from usearch.index import Index  # type: ignore[import-not-found, import-untyped, unused-ignore]

        graph = Index(
            ndim=dim,
            metric="ip" if inner else "l2sq",
            dtype="f32",
            connectivity=args.M,
            expansion_add=args.ef_construction,
        )
        t0 = time.perf_counter()
        graph.add(np.arange(n), data, threads=threads)
        sweep(
            "usearch",
            time.perf_counter() - t0,
            lambda ef: setattr(graph, "expansion_search", ef),
            lambda: graph.search(queries, args.k, threads=threads).keys,
        )
    return rows


def _installed_peers() -> tuple[list[str], list[str]]:
    """(installed peers, messages for the missing ones)."""
    found, missing = [], []
    for peer in PEERS:
        if importlib.util.find_spec(peer) is None:
            missing.append(
                f"peer {peer} is not installed (pip install {_PEER_PACKAGES[peer]}): skipped"
            )
        else:
            found.append(peer)
    return found, missing


def _plot(rows: list[BenchRow], path: str, title: str, k: int, plt: Any) -> None:
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    for label in dict.fromkeys(r[0] for r in rows):
        points = [r for r in rows if r[0] == label]
        line = ax.plot([r[2] for r in points], [r[3] for r in points], marker="o", label=label)[0]
        for _, param, recall, qps, _ in points:
            ax.annotate(
                param,
                (recall, qps),
                textcoords="offset points",
                xytext=(3, 3),
                fontsize=7,
                color=line.get_color(),
            )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"recall@{k}")
    ax.set_ylabel("queries per second")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no label hidden
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bench(args: argparse.Namespace) -> int:
    """Exit status: 0 = every requested index ran, 1 = some failed (reported), 2 = bad request."""
    try:
        return _run_bench(args)
    except _BenchError as e:
        print(f"simdex bench: {e}", file=sys.stderr)
        return 2


def _run_bench(args: argparse.Namespace) -> int:
    import simdex as sx

    from .integrations import _kinds

    for name in ("n", "queries", "k", "repeats", "dim"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise _BenchError(f"--{name} must be >= 1; got {value}")
    kinds = [kind.strip() for kind in args.index.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in _kinds.KINDS]
    if unknown or not kinds:
        raise _BenchError(
            f"unknown index kind {', '.join(map(repr, unknown)) or '(none)'}; "
            f"choose from {','.join(_kinds.KINDS)}"
        )
    params = {
        kind: {key: _parse_value(v) for key, v in given.items()}
        for kind, given in _kind_options(args.param, "--param").items()
    }
    sweeps = _check_sweeps(_kind_options(args.sweep, "--sweep"))
    _int_list(args.ef, "--ef")
    plt: Any = None
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot

            plt = matplotlib.pyplot
        except ImportError:
            raise _BenchError("--plot needs matplotlib: pip install 'simdex[plot]'") from None
        folder = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise _BenchError(
                f"--plot {args.plot}: folder {folder} does not exist or is not writable"
            )
    peers, missing = _installed_peers() if args.peers else ([], [])

    data, queries, truth, metric, source = _bench_data(args)
    if truth is None or truth.shape[1] < args.k:
        truth = sx.knn(queries, data, args.k, metric).ids
    print(
        f"bench: {source}, n={len(data)}, d={data.shape[1]}, metric={metric}, {len(queries)} "
        "queries, "
        f"k={args.k}, simd={sx.simd_level()}, threads={args.threads or 'all'}"
    )
    for message in missing:
        print(message, file=sys.stderr)
    print(f"| index | param | recall@{args.k} | QPS | build s |")
    print("|---|---|---|---|---|", flush=True)
    rows: list[BenchRow] = []

    def report(new: list[BenchRow]) -> None:  # rows appear as each index finishes
        rows.extend(new)
        for label, param, recall, qps, build in new:
            print(f"| {label} | {param} | {recall:.4f} | {qps:.0f} | {build:.2f} |", flush=True)

    failed = []
    graph_defaults = {"M": args.M, "ef_construction": args.ef_construction}
    for kind in kinds:
        if metric not in _kinds.get(kind).metrics:
            print(
                f"{kind}: skipped, it does not support metric {metric!r} "
                f"({', '.join(_kinds.get(kind).metrics)})",
                file=sys.stderr,
            )
            continue
        given = {**(graph_defaults if kind in ("hnsw", "leanvec") else {}), **params.get(kind, {})}
        try:
            report(_bench_simdex(kind, given, data, queries, truth, metric, args, sweeps))
        except (ValueError, TypeError) as e:
            print(f"{kind}: failed: {e}", file=sys.stderr)
            failed.append(kind)
    for peer in peers:
        report(_bench_peer(peer, data, queries, truth, metric, args))
    if args.plot and rows:
        title = (
            f"{source}: n={len(data)}, d={data.shape[1]}, {metric}, k={args.k}, "
            f"simd={sx.simd_level()}, threads={args.threads or 'all'}"
        )
        try:
            _plot(rows, args.plot, title, args.k, plt)
        except (OSError, ValueError) as e:
            print(f"simdex bench: could not write the plot {args.plot}: {e}", file=sys.stderr)
            return 1
        print(f"plot written to {args.plot}")
    return 1 if failed else 0


def _scripts(args: argparse.Namespace) -> int:
    from . import bench

    return bench.main([*([args.name] if args.name else []), *args.script_args])


def main(argv: list[str] | None = None) -> int:
    from . import __version__
    from .integrations._kinds import KINDS

    parser = argparse.ArgumentParser(
        prog="simdex", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"simdex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, SIMD level, CPU features")
    demo = sub.add_parser(
        "demo", help="build indexes on generated data, print recall and QPS vs NumPy"
    )
    demo.add_argument("--n", type=int, default=20000)
    demo.add_argument("--dim", type=int, default=128)
    demo.add_argument("--queries", type=int, default=500)
    demo.add_argument("--seed", type=int, default=0)
    bench = sub.add_parser(
        "bench",
        help="recall / QPS / build time of index kinds (and peers) on an "
        "ann-benchmarks HDF5 file or generated data",
    )
    bench.add_argument("--data", help="ann-benchmarks HDF5 file (default: generated unit vectors)")
    bench.add_argument(
        "--index", default="flat,hnsw", help=f"comma list of index kinds: {','.join(KINDS)}"
    )
    bench.add_argument(
        "--peers",
        action="store_true",
        help="also run FAISS (flat, HNSW), hnswlib and USearch when installed",
    )
    bench.add_argument(
        "--n",
        type=int,
        default=None,
        help="rows to index: the first N of --data (default all) or generated (default 50000)",
    )
    bench.add_argument("--dim", type=int, default=128, help="dimension of generated data")
    bench.add_argument("--queries", type=int, default=1000)
    bench.add_argument("--k", type=int, default=10)
    bench.add_argument("--M", type=int, default=16, help="graph degree (hnsw, leanvec, peers)")
    bench.add_argument("--ef-construction", type=int, default=200, help="(hnsw, leanvec, peers)")
    bench.add_argument("--ef", default="16,32,64,128,256", help="ef sweep (hnsw, leanvec, peers)")
    bench.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KIND.NAME=VALUE",
        help="index constructor argument, e.g. pq.nbits=4, ivfpq.nlist=1024 (repeatable)",
    )
    bench.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KIND.NAME=V1,V2",
        help="search values to sweep, e.g. pq.rerank_k=50,100 (repeatable)",
    )
    bench.add_argument(
        "--threads", type=int, default=None, help="search and build threads (default all)"
    )
    bench.add_argument(
        "--repeats", type=int, default=3, help="searches timed per point (best kept)"
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--plot", help="write a recall-QPS plot (PNG) here (needs matplotlib)")
    scripts = sub.add_parser(
        "scripts",
        help="list or run the benchmark scripts behind README's "
        "performance table (same as python -m simdex.bench)",
    )
    scripts.add_argument("name", nargs="?", help="script to run (e.g. hnsw); none: list them")
    scripts.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    args = parser.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "info": _info,
        "demo": _demo,
        "bench": _bench,
        "scripts": _scripts,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
