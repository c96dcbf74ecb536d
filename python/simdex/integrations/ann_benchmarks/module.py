"""BaseANN-shaped classes, one per simdex index kind, as ann-benchmarks drives them:

    algo = SimdexHNSW(metric, {"M": 16, "ef_construction": 200})   # base_args + arg_groups
    algo.fit(X_train)
    algo.set_query_arguments(64)                                    # one query_args combination
    algo.query(v, count)  or  algo.batch_query(X_test, count); algo.get_batch_results()
    algo.get_memory_usage(), algo.get_additional(), str(algo), algo.done()

metric: ann-benchmarks' name: 'euclidean' (simdex 'l2': squared, the same ranking), 'angular'
(simdex 'cosine'), 'hamming' (bool / 0-1 rows, packed to bits), 'ip' or 'dot' (simdex 'ip').
The constructor's dict holds the index's constructor arguments (simdex names); the query
arguments are, in order, those in ``QUERY_ARGS`` for the kind.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

import simdex as sx

from .. import _kinds

METRICS = {"euclidean": "l2", "angular": "cosine", "hamming": "hamming", "ip": "ip", "dot": "ip"}

# positional arguments of set_query_arguments, per kind
QUERY_ARGS: dict[str, tuple[str, ...]] = {
    "flat": (),
    "hnsw": ("ef",),
    "pq": ("rerank_k",),
    "ivfpq": ("nprobe", "rerank_k"),
    "binary": ("rerank_k",),
    "leanvec": ("ef", "rerank_k"),
}


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


class SimdexANN:
    """The shared wrapper: ``kind`` names the simdex index (see simdex.integrations._kinds)."""

    kind: ClassVar[str] = ""

    def __init__(self, metric: str, params: dict[str, Any] | None = None) -> None:
        if metric not in METRICS:
            raise ValueError(
                f"metric must be one of {', '.join(map(repr, METRICS))} (ann-benchmarks names); "
                f"got {metric!r}"
            )
        if params is not None and not isinstance(params, dict):
            raise TypeError(f"index parameters must be a dict; got {type(params).__name__}")
        self.metric = metric
        self._metric = METRICS[metric]
        self._params = dict(params or {})
        supported = _kinds.get(self.kind).metrics
        if self._metric not in supported:
            raise ValueError(
                f"simdex {self.kind!r} indexes support simdex metrics {supported}; got "
                f"{metric!r} (= {self._metric!r})"
            )
        self._query_args: dict[str, Any] = {}
        self.index: Any = None
        self.res: list[np.ndarray] = []
        self.name = str(self)

    def _rows(self, x: Any) -> np.ndarray:
        a = np.asarray(x)
        if self._metric == "hamming":
            a = np.atleast_2d(a)
            if a.dtype != np.uint8 or a.max(initial=0) > 1:
                a = a.astype(bool)
            return np.packbits(a, axis=1)  # pads the bits to whole bytes with zeros
        return np.ascontiguousarray(a, dtype=np.float32)

    def fit(self, X: Any) -> None:
        """Build the index over X (n, d) (trained on X first when the kind needs it)."""
        rows = self._rows(X)
        self.index = _kinds.build(self.kind, rows, self._metric, self._params)

    def set_query_arguments(self, *args: Any) -> None:
        """The kind's query parameters, positionally, in the order of QUERY_ARGS[kind]."""
        names = QUERY_ARGS[self.kind]
        if len(args) > len(names):
            raise TypeError(
                f"{type(self).__name__}.set_query_arguments takes {len(names)} argument(s) "
                f"{names}; got {len(args)}: {args}"
            )
        self._query_args = dict(zip(names, args, strict=False))
        self.name = str(self)

    def _search(self, queries: np.ndarray, n: int) -> np.ndarray:
        if self.index is None:
            raise RuntimeError("call fit(X) before querying")
        return self.index.search(queries, n, **self._query_args).ids  # type: ignore[no-any-return]

    def query(self, q: Any, n: int) -> np.ndarray:
        """Row numbers of the n nearest training rows of one query (d,), nearest first."""
        ids = self._search(self._rows(q)[0] if self._metric == "hamming" else self._rows(q), n)
        return ids[ids >= 0]

    def batch_query(self, X: Any, n: int) -> None:
        """All queries (q, d) in one threaded call; results from get_batch_results()."""
        ids = self._search(self._rows(X), n)
        self.res = [row[row >= 0] for row in np.atleast_2d(ids)]

    def get_batch_results(self) -> list[np.ndarray]:
        return self.res

    def get_memory_usage(self) -> float:
        """Memory held by the index, in kB (ann-benchmarks' unit)."""
        return 0.0 if self.index is None else float(self.index.nbytes) / 1024

    def get_additional(self) -> dict[str, Any]:
        return {"simd": sx.simd_level(), "index": repr(self.index)}

    def done(self) -> None:
        self.index = None

    def __str__(self) -> str:
        return f"simdex-{self.kind}({_describe({**self._params, **self._query_args})})"


class SimdexFlat(SimdexANN):
    """Exact search (FlatIndex); params e.g. {'storage': 'float16'}."""

    kind = "flat"


class SimdexHNSW(SimdexANN):
    """HNSWIndex; params e.g. {'M': 16, 'ef_construction': 200}; query argument: ef."""

    kind = "hnsw"


class SimdexPQ(SimdexANN):
    """PQIndex with exact re-ranking; params e.g. {'m': 32, 'nbits': 4}; query argument:
    rerank_k."""

    kind = "pq"


class SimdexIVFPQ(SimdexANN):
    """IVFPQIndex with exact re-ranking; params e.g. {'nlist': 1024, 'm': 32}; query
    arguments: nprobe, rerank_k."""

    kind = "ivfpq"


class SimdexBinary(SimdexANN):
    """BinaryIndex (angular / ip only) with exact re-ranking; params e.g. {'bits': 2};
    query argument: rerank_k."""

    kind = "binary"


class SimdexLeanVec(SimdexANN):
    """LeanVecIndex (kind 'id', PCA); params e.g. {'out_dim': 64, 'primary': 'int8'}; query
    arguments: ef, rerank_k."""

    kind = "leanvec"
