"""CPU tiers and exact distance computations.

The C++ core detects the CPU once (CPUID + XGETBV) and runs the deepest *tier* whose features
it has. Tiers are named after what they require, each adding to its parent:

    scalar -> haswell (AVX2, FMA, F16C, BMI, BMI2, POPCNT) -> skylake (+ AVX-512 F/CD/BW/DQ/VL)
           -> icelake (+ AVX-512 VNNI, VPOPCNTDQ)
    scalar -> neon

A tier runs its own kernels and inherits the others from its parent. ``SIMDEX_SIMD=<tier>``
lowers it (a bad or too-high value warns and is ignored); ``force_simd`` switches tiers
in-process for tests. ``avx2`` (= haswell) and ``avx512`` (= the deepest AVX-512 tier the
CPU runs) are accepted as aliases.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from . import _checks, _core
from ._result import SearchResult

_warning = _core.env_warning()
if _warning:
    warnings.warn(_warning, RuntimeWarning, stacklevel=2)


class Tier(NamedTuple):
    """One CPU tier: its name, its parent, every feature it requires (the parent's included),
    and whether this build compiled it (x86 tiers on x86-64, neon on aarch64)."""

    name: str
    parent: str
    features: tuple[str, ...]
    built: bool


TIERS: dict[str, Tier] = {
    name: Tier(name, parent, tuple(features), built)
    for name, parent, features, built in _core.tiers()
}
_START_LEVEL = _core.active_level()  # detected, or lowered by SIMDEX_SIMD


def simd_level() -> str:
    """CPU tier in use: 'scalar', 'haswell', 'skylake', 'icelake' or 'neon'."""
    return _core.active_level()


def cpu_features() -> dict[str, bool]:
    """CPU features as detected (CPUID, with XGETBV for OS-enabled AVX/AVX-512 state; HWCAP on
    aarch64 Linux). Names are those of the compiler flags (-m<name>)."""
    return dict(_core.cpu_features())


def select_tier(features: Any) -> str:
    """The tier a CPU with these features runs (a pure function: any CPU, any architecture).

    features : iterable of feature names, or a dict name -> bool (as cpu_features() returns)
    """
    if isinstance(features, dict):
        features = [name for name, on in features.items() if on]
    return _core.select_tier(set(features))


def tier_chain(tier: str) -> list[str]:
    """The tier and its ancestors, lowest first: every tier a CPU running `tier` can run."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}; got {tier!r}")
    chain = [tier]
    while chain[-1] != "scalar":
        chain.append(TIERS[chain[-1]].parent)
    return chain[::-1]


def available_levels() -> list[str]:
    """Every tier this CPU runs, up to the starting tier (SIMDEX_SIMD caps it), lowest first:
    what tests iterate over."""
    return tier_chain(_START_LEVEL)


@contextlib.contextmanager
def force_simd(level: str) -> Iterator[str]:
    """Run the block at the given tier (process-wide), then restore the previous one.

    level : a tier name, or the alias 'avx2' / 'avx512'
    Indexes capture kernels at construction; exact functions (knn, distances) use the tier
    active at call time. Raises ValueError for an unknown tier or one this CPU cannot run.
    """
    if not isinstance(level, str):
        raise TypeError(f"level must be a str (a tier name); got {type(level).__name__}")
    previous = _core.active_level()
    _core.set_active_level(level)
    try:
        yield _core.active_level()
    finally:
        _core.set_active_level(previous)


def normalize(x: np.ndarray) -> np.ndarray:
    """Unit-length rows (float32 copy); zero rows stay zero (cosine distance 1 to everything)."""
    norms = np.linalg.norm(x.astype(np.float64, copy=False), axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def _prepare_pair(
    queries: Any, data: Any, metric: str, *, data_1d: bool = False
) -> tuple[np.ndarray, np.ndarray, bool, bool, int]:
    if metric == "hamming":
        d, d_was_1d = _checks.as_codes(data, None, "data", allow_1d=data_1d)
        q, was_1d = _checks.as_codes(queries, d.shape[1], "queries")
        return q, d, was_1d, d_was_1d, d.shape[1] * 8
    d, d_was_1d = _checks.as_float_rows(data, None, "data", allow_1d=data_1d)
    q, was_1d = _checks.as_float_rows(queries, d.shape[1], "queries")
    if metric == "cosine":
        q, d = normalize(q), normalize(d)
    return q, d, was_1d, d_was_1d, d.shape[1]


def _storage_for(metric: str) -> str:
    return "bits" if metric == "hamming" else "float32"


def distances(x: Any, y: Any, metric: str = "l2", *, threads: int | None = None) -> np.ndarray:
    """Pairwise distances, like scipy.spatial.distance.cdist.

    x       : (n, d) float vectors, or (n, nbytes) uint8 packed codes for metric='hamming'
    y       : (m, d) likewise
    returns : (n, m) float32; l2 = squared Euclidean, ip = 1 - <x, y>, cosine = 1 - cos,
              hamming = number of differing bits. A 1-D x or y drops that axis, so two
              1-D vectors give a numpy.float32 scalar.
    threads : cap on the threads used (None = all cores); work under ~1 MB runs on the
              calling thread

    One vector against one or many rows (float32, or uint8 for hamming, C-contiguous) takes a
    lean path: no copy, no normalised copy for cosine, a few nanoseconds of checks.
    """
    # Lean path (one vector against one or many, exact dtypes, contiguous): checks that cost
    # nanoseconds, no copies, no thread pool for small work. None means: take the general path.
    out: np.ndarray | None = _core.distances_lean(x, y, metric, threads)  # type: ignore[no-untyped-call]
    if out is not None:
        return out
    metric = _checks.check_metric(metric)
    threads = _checks.check_threads(threads)
    q, d, x_1d, y_1d, dim = _prepare_pair(x, y, metric, data_1d=True)
    out = _core.pairwise(
        d, d.shape[0], q, q.shape[0], _storage_for(metric), metric, dim, threads=threads
    )
    return out[0 if x_1d else slice(None), 0 if y_1d else slice(None)]


def knn(
    queries: Any, data: Any, k: int, metric: str = "l2", *, threads: int | None = None
) -> SearchResult:
    """Exact k nearest neighbours of each query in data (threaded, top-k fused in C++).

    queries : (q, d) or (d,) floats; (q, nbytes) uint8 codes for metric='hamming'
    data    : (n, d) floats, or (n, nbytes) uint8 codes
    returns : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64 row numbers,
              padded with (+inf, -1) when k > n)
    """
    # Lean path for one query (float32 or uint8, contiguous): one pass over the rows, no
    # finiteness pre-pass (a non-finite distance sends the call to the general path).
    lean = _core.knn_lean(queries, data, k, metric, threads)  # type: ignore[no-untyped-call]
    if lean is not None:
        return SearchResult(*lean)
    metric = _checks.check_metric(metric)
    k = _checks.check_k(k)
    threads = _checks.check_threads(threads)
    q, d, was_1d, _, dim = _prepare_pair(queries, data, metric)
    dist, ids = _core.search(
        d, d.shape[0], q, q.shape[0], k, _storage_for(metric), metric, dim, threads=threads
    )
    if was_1d:
        return SearchResult(dist[0], ids[0])
    return SearchResult(dist, ids)
