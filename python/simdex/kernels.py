"""SIMD level control and exact distance computations.

The C++ core detects the CPU once (CPUID + XGETBV) and picks the highest level it
supports; ``SIMDEX_SIMD=scalar|avx2|avx512`` lowers it (a bad or too-high value warns and is
ignored); ``force_simd`` switches levels in-process for tests.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import numpy as np

from . import _checks, _core
from ._result import SearchResult

_warning = _core.env_warning()
if _warning:
    warnings.warn(_warning, RuntimeWarning, stacklevel=2)

_LEVEL_ORDER = ("scalar", "avx2", "avx512")
_START_LEVEL = _core.active_level()  # detected, or lowered by SIMDEX_SIMD


def simd_level() -> str:
    """SIMD level in use: 'scalar', 'avx2', 'avx512' or 'neon'."""
    return _core.active_level()


def cpu_features() -> dict[str, bool]:
    """CPU features as detected (CPUID, with XGETBV for OS-enabled AVX/AVX-512 state)."""
    return dict(_core.cpu_features())


def available_levels() -> list[str]:
    """Every level this CPU can run up to the starting level (SIMDEX_SIMD caps it), lowest
    first: what tests iterate over."""
    top = _START_LEVEL
    if top == "neon":
        return ["scalar", "neon"]
    return list(_LEVEL_ORDER[: _LEVEL_ORDER.index(top) + 1])


@contextlib.contextmanager
def force_simd(level: str) -> Iterator[str]:
    """Run the block with the given SIMD level (process-wide), then restore the previous one.

    Indexes capture kernels at construction; exact functions (knn, distances) use the level
    active at call time. Raises ValueError for a level the CPU does not support.
    """
    if level not in ("scalar", "avx2", "avx512", "neon"):
        raise ValueError(f"level must be one of 'scalar', 'avx2', 'avx512', 'neon'; got {level!r}")
    previous = _core.active_level()
    _core.set_active_level(level)
    try:
        yield level
    finally:
        _core.set_active_level(previous)


def normalize(x: np.ndarray) -> np.ndarray:
    """Unit-length rows (float32 copy); zero rows stay zero (cosine distance 1 to everything)."""
    norms = np.linalg.norm(x.astype(np.float64, copy=False), axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def _prepare_pair(queries: Any, data: Any, metric: str, *, data_1d: bool = False
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
              1-D vectors give a 0-d array.
    """
    metric = _checks.check_metric(metric)
    threads = _checks.check_threads(threads)
    q, d, x_1d, y_1d, dim = _prepare_pair(x, y, metric, data_1d=True)
    out = _core.pairwise(d, d.shape[0], q, q.shape[0], _storage_for(metric), metric, dim,
                         threads=threads)
    return out[0 if x_1d else slice(None), 0 if y_1d else slice(None)]


def knn(queries: Any, data: Any, k: int, metric: str = "l2", *, threads: int | None = None) -> SearchResult:
    """Exact k nearest neighbours of each query in data (threaded, top-k fused in C++).

    queries : (q, d) or (d,) floats; (q, nbytes) uint8 codes for metric='hamming'
    data    : (n, d) floats, or (n, nbytes) uint8 codes
    returns : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64 row numbers,
              padded with (+inf, -1) when k > n)
    """
    metric = _checks.check_metric(metric)
    k = _checks.check_k(k)
    threads = _checks.check_threads(threads)
    q, d, was_1d, _, dim = _prepare_pair(queries, data, metric)
    dist, ids = _core.search(d, d.shape[0], q, q.shape[0], k, _storage_for(metric), metric, dim,
                             threads=threads)
    if was_1d:
        return SearchResult(dist[0], ids[0])
    return SearchResult(dist, ids)
