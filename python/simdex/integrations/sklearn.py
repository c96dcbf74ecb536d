"""scikit-learn estimators backed by simdex indexes (``pip install 'simdex[sklearn]'``).

- ``NearestNeighbors``: ``kneighbors`` / ``kneighbors_graph`` as
  ``sklearn.neighbors.NearestNeighbors``,
  over any simdex index kind (``index="flat" | "hnsw" | "pq" | "ivfpq" | "binary" | "leanvec"``);
- ``KNeighborsTransformer``: the sparse k-NN graph as ``sklearn.neighbors.KNeighborsTransformer``,
  for ``TSNE(metric="precomputed")``, ``KNeighborsClassifier(metric="precomputed")``, Isomap,
  DBSCAN, ... in a ``Pipeline``;
- ``LeanVecTransformer`` and ``PQTransformer``: ``simdex.LeanVec`` and
  ``simdex.ProductQuantizer`` with the estimator conventions (``fit`` / ``transform`` /
  ``fit_transform``, ``get_params`` / ``set_params``, ``clone``, fitted attributes ending in ``_``).

Metrics use scikit-learn's names: ``"euclidean"`` (default; also ``"l2"``, which in
scikit-learn means Euclidean, not simdex's squared L2), ``"sqeuclidean"``, ``"cosine"``
(1 - cos) and ``"ip"`` (1 - <x, y>, may be negative). The index finds the neighbours; their
distances are then recomputed in float64 from the fitted rows (as scikit-learn returns them).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp  # type: ignore[import-not-found, import-untyped, unused-ignore]
from sklearn.base import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils.validation import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
    check_array,
    check_is_fitted,
    validate_data,
)

import simdex as sx

from . import _kinds

# scikit-learn metric name -> (simdex metric, take the square root of the distances)
METRICS: dict[str, tuple[str, bool]] = {
    "euclidean": ("l2", True),
    "l2": ("l2", True),
    "sqeuclidean": ("l2", False),
    "cosine": ("cosine", False),
    "ip": ("ip", False),
}
_FLOATS = [np.float32, np.float64]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    return int(value)


def _threads(n_jobs: Any) -> int | None:
    """scikit-learn's n_jobs -> simdex threads: None or -1 = every core, else that many."""
    if n_jobs is None or n_jobs == -1:
        return None
    return _positive_int(n_jobs, "n_jobs (None, -1 or a positive int)")


class _Neighbors(BaseEstimator):  # type: ignore[misc]
    """What NearestNeighbors and KNeighborsTransformer share: fit, kneighbors, kneighbors_graph
    (the subclasses hold the parameters)."""

    n_neighbors: int
    metric: str
    index: str
    index_params: dict[str, Any] | None
    search_params: dict[str, Any] | None
    n_jobs: int | None

    def _simdex_metric(self) -> tuple[str, bool]:
        found = METRICS.get(self.metric) if isinstance(self.metric, str) else None
        if found is None:
            raise ValueError(
                f"metric must be one of {', '.join(map(repr, METRICS))}; got {self.metric!r}"
            )
        return found

    def fit(self, X: Any, y: Any = None) -> Any:
        """Index the rows of X (n_samples, n_features); y is ignored."""
        _positive_int(self.n_neighbors, "n_neighbors")
        metric, _ = self._simdex_metric()
        X = validate_data(self, X, dtype=_FLOATS)
        self.index_ = _kinds.build(
            self.index, X, metric, self.index_params, threads=_threads(self.n_jobs)
        )
        self.n_samples_fit_ = X.shape[0]
        self._fit_X = X
        return self

    def kneighbors(
        self, X: Any = None, n_neighbors: int | None = None, return_distance: bool = True
    ) -> Any:
        """The n_neighbors nearest indexed rows of each row of X.

        X       : (n_queries, n_features), or None for the indexed rows themselves (then a row
                  is not its own neighbour, as in scikit-learn)
        returns : (distances (n_queries, n_neighbors) float64 ascending, indices (n_queries,
                  n_neighbors) int64 row numbers of the fitted X), or only indices
        """
        check_is_fitted(self, "index_")
        k = _positive_int(self.n_neighbors if n_neighbors is None else n_neighbors, "n_neighbors")
        itself = X is None
        queries = self._fit_X if itself else validate_data(self, X, dtype=_FLOATS, reset=False)
        usable = self.n_samples_fit_ - 1 if itself else self.n_samples_fit_
        if k > usable:
            raise ValueError(
                f"Expected n_neighbors <= n_samples_fit, but n_neighbors = {k}, "
                f"n_samples_fit = {self.n_samples_fit_}, n_samples = {queries.shape[0]}"
                + (" (the fitted rows are queried without themselves)" if itself else "")
            )
        dist, ind = self.index_.search(
            queries, k + itself, threads=_threads(self.n_jobs), **(self.search_params or {})
        )
        missing = int((ind < 0).any(axis=1).sum())
        if missing:
            raise RuntimeError(
                f"the {self.index!r} index found fewer than {k + itself} neighbours for "
                f"{missing} of {len(ind)} queries; widen the search (search_params, "
                "e.g. a larger 'ef' or 'nprobe') or use index='flat'"
            )
        if itself:
            # drop each row's own index; where it is absent (duplicates ranked first) drop the
            # first column instead, as scikit-learn does
            keep = ind != np.arange(len(ind))[:, None]
            keep[keep.all(axis=1), 0] = False
            dist, ind = dist[keep].reshape(len(ind), k), ind[keep].reshape(len(ind), k)
        if not return_distance:
            return ind
        return self._exact_distances(queries, ind)

    def _pair_distances(self, queries: np.ndarray, rows: np.ndarray, ind: np.ndarray) -> np.ndarray:
        """float64 distance of queries[rows[i]] to the fitted row ind[i], recomputed from the
        fitted rows (independent of the index's storage and of how queries were batched): (p,)."""
        metric, root = self._simdex_metric()
        out = np.empty(len(ind), dtype=np.float64)
        step = max(1, (1 << 22) // max(1, queries.shape[1]))  # ~32 MB of float64 rows per chunk
        for start in range(0, len(ind), step):
            q = queries[rows[start : start + step]].astype(np.float64)
            x = self._fit_X[ind[start : start + step]].astype(np.float64)
            if metric == "l2":
                out[start : start + step] = ((x - q) ** 2).sum(axis=1)
                continue
            dots = np.einsum("pd,pd->p", x, q)
            if metric == "cosine":
                norms = np.linalg.norm(x, axis=1) * np.linalg.norm(q, axis=1)
                # rounding may push |cos| past 1: clip, so that distances stay within [0, 2]
                dots = np.clip(
                    np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0), -1.0, 1.0
                )
            out[start : start + step] = 1.0 - dots
        if root:
            np.sqrt(out, out=out)
        return out

    def _exact_distances(
        self, queries: np.ndarray, ind: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices) (n_queries, k): float64 distances to the found neighbours
        (_pair_distances), each row re-sorted by them."""
        rows = np.repeat(np.arange(len(ind)), ind.shape[1])
        out = self._pair_distances(queries, rows, ind.ravel()).reshape(ind.shape)
        order = np.argsort(out, axis=1, kind="stable")
        return np.take_along_axis(out, order, 1), np.take_along_axis(ind, order, 1)

    def kneighbors_graph(
        self, X: Any = None, n_neighbors: int | None = None, mode: str = "connectivity"
    ) -> sp.csr_matrix:
        """Sparse (n_queries, n_samples_fit) CSR graph: 1.0 ('connectivity') or the distance
        ('distance') at each query's n_neighbors nearest fitted rows."""
        if mode not in ("connectivity", "distance"):
            raise ValueError(f"mode must be 'connectivity' or 'distance'; got {mode!r}")
        if mode == "distance":
            dist, ind = self.kneighbors(X, n_neighbors)
            data = dist.ravel()
        else:
            ind = self.kneighbors(X, n_neighbors, return_distance=False)
            data = np.ones(ind.size)
        n_queries, k = ind.shape
        indptr = np.arange(0, n_queries * k + 1, k)
        return sp.csr_matrix((data, ind.ravel(), indptr), shape=(n_queries, self.n_samples_fit_))


class NearestNeighbors(_Neighbors):
    """Unsupervised nearest neighbours over a simdex index, as sklearn.neighbors.NearestNeighbors.

    n_neighbors   : default k of kneighbors / kneighbors_graph
    radius        : default radius of radius_neighbors / radius_neighbors_graph (in the metric's
                    units: Euclidean for 'euclidean', squared for 'sqeuclidean')
    metric        : 'euclidean' (= 'l2'), 'sqeuclidean', 'cosine' or 'ip' (see the module doc)
    index         : simdex index kind: 'flat' (exact), 'hnsw', 'pq', 'ivfpq', 'binary', 'leanvec'
    index_params  : constructor arguments of that index (e.g. {'M': 32} for hnsw, {'m': 16,
                    'nbits': 4} for pq); compressed kinds re-rank from vectors in RAM by default
    search_params : search arguments (e.g. {'ef': 128} for hnsw, {'nprobe': 16} for ivfpq)
    n_jobs        : threads: None or -1 = every core the process may use

    After fit: index_ (the simdex index, ids = row numbers of X), n_samples_fit_, n_features_in_.
    """

    def __init__(
        self,
        n_neighbors: int = 5,
        *,
        radius: float = 1.0,
        metric: str = "euclidean",
        index: str = "flat",
        index_params: dict[str, Any] | None = None,
        search_params: dict[str, Any] | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.metric = metric
        self.index = index
        self.index_params = index_params
        self.search_params = search_params
        self.n_jobs = n_jobs

    def radius_neighbors(
        self,
        X: Any = None,
        radius: float | None = None,
        return_distance: bool = True,
        sort_results: bool = False,
    ) -> Any:
        """Every fitted row within `radius` of each row of X (index.range_search, then exact
        float64 distances: a pair is kept when that distance is <= radius).

        X       : (n_queries, n_features), or None for the fitted rows (each without itself)
        returns : (distances, indices): object arrays of n_queries float64 / int64 arrays (sorted
                  by distance with sort_results=True), or only the indices
        """
        check_is_fitted(self, "index_")
        r = self.radius if radius is None else radius
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not np.isfinite(r) or r < 0:
            raise ValueError(f"radius must be a finite number >= 0; got {r!r}")
        if sort_results and not return_distance:
            raise ValueError("return_distance must be True if sort_results is True")
        itself = X is None
        queries = self._fit_X if itself else validate_data(self, X, dtype=_FLOATS, reset=False)
        root = self._simdex_metric()[1]
        # simdex compares squared distances for 'euclidean'; a hair of slack, then the exact check
        limit = (r * r if root else r) * (1 + 1e-5) + 1e-6
        lims, _, ind = self.index_.range_search(
            queries, limit, threads=_threads(self.n_jobs), **(self.search_params or {})
        )
        rows = np.repeat(np.arange(len(queries)), np.diff(lims))
        dist = self._pair_distances(queries, rows, ind)
        keep = (dist <= r) & ((ind != rows) if itself else True)
        rows, dist, ind = rows[keep], dist[keep], ind[keep]
        if sort_results:
            order = np.lexsort((dist, rows))
            rows, dist, ind = rows[order], dist[order], ind[order]
        bounds = np.searchsorted(rows, np.arange(len(queries) + 1))
        indices = np.empty(len(queries), dtype=object)
        distances = np.empty(len(queries), dtype=object)
        for i in range(len(queries)):
            indices[i] = ind[bounds[i] : bounds[i + 1]].astype(np.int64)
            distances[i] = dist[bounds[i] : bounds[i + 1]]
        return (distances, indices) if return_distance else indices

    def radius_neighbors_graph(
        self,
        X: Any = None,
        radius: float | None = None,
        mode: str = "connectivity",
        sort_results: bool = False,
    ) -> sp.csr_matrix:
        """Sparse (n_queries, n_samples_fit) CSR graph of radius_neighbors: 1.0 or the distance."""
        if mode not in ("connectivity", "distance"):
            raise ValueError(f"mode must be 'connectivity' or 'distance'; got {mode!r}")
        dist, ind = self.radius_neighbors(X, radius, sort_results=sort_results)
        indptr = np.concatenate([[0], np.cumsum([len(i) for i in ind])])
        flat_ind = np.concatenate([*ind, np.empty(0, np.int64)])
        data = (
            np.concatenate([*dist, np.empty(0)]) if mode == "distance" else np.ones(len(flat_ind))
        )
        return sp.csr_matrix((data, flat_ind, indptr), shape=(len(ind), self.n_samples_fit_))


class KNeighborsTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _Neighbors):  # type: ignore[misc]
    """X -> sparse k-NN graph, as sklearn.neighbors.KNeighborsTransformer (same parameters as
    NearestNeighbors, plus mode).

    mode : 'distance' (default: the graph stores distances, and each row gets n_neighbors + 1
           entries since a fitted row is its own first neighbour) or 'connectivity' (1.0)
    transform(X) gives the (n_queries, n_samples_fit) CSR graph; fit_transform(X) is
    fit(X).transform(X).
    """

    def __init__(
        self,
        *,
        mode: str = "distance",
        n_neighbors: int = 5,
        metric: str = "euclidean",
        index: str = "flat",
        index_params: dict[str, Any] | None = None,
        search_params: dict[str, Any] | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.mode = mode
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.index = index
        self.index_params = index_params
        self.search_params = search_params
        self.n_jobs = n_jobs

    @property
    def _n_features_out(self) -> int:
        return int(self.n_samples_fit_)

    def transform(self, X: Any) -> sp.csr_matrix:
        """(n_queries, n_samples_fit) CSR graph of X's nearest fitted rows."""
        check_is_fitted(self, "index_")
        extra = 1 if self.mode == "distance" else 0
        return self.kneighbors_graph(
            X, _positive_int(self.n_neighbors, "n_neighbors") + extra, mode=self.mode
        )

    def fit_transform(self, X: Any, y: Any = None) -> sp.csr_matrix:
        return self.fit(X).transform(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags


class LeanVecTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """simdex.LeanVec as a scikit-learn transformer: X (n, D) -> X @ data_matrix_ (n, d) float32.

    out_dim : d, the reduced dimension (None = n_features: a rotation, as PCA's default)
    kind, seed, solver, query_blend, max_samples, max_iter, tol : as simdex.LeanVec
    fit(X, y=None, queries=None): kind='ood' needs queries (m, D), a sample of the queries
    (transform_queries projects them with query_matrix_).

    After fit: leanvec_ (the simdex.LeanVec), data_matrix_ and query_matrix_ (D, d) float32,
    n_iter_ (Frank-Wolfe steps; 1 for the closed form), n_features_in_.
    """

    def __init__(
        self,
        out_dim: int | None = None,
        *,
        kind: str = "id",
        seed: int = 0,
        solver: str = "closed_form",
        query_blend: float | None = None,
        max_samples: int = 100_000,
        max_iter: int = 500,
        tol: float = 1e-6,
    ) -> None:
        self.out_dim = out_dim
        self.kind = kind
        self.seed = seed
        self.solver = solver
        self.query_blend = query_blend
        self.max_samples = max_samples
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: Any, y: Any = None, queries: Any = None) -> LeanVecTransformer:
        X = validate_data(self, X, dtype=_FLOATS)
        if X.shape[0] < 2:
            raise ValueError(
                f"LeanVec needs at least 2 samples to estimate a projection; got "
                f"n_samples={X.shape[0]}"
            )
        if queries is not None:
            queries = check_array(queries, dtype=_FLOATS, input_name="queries")
        out_dim = X.shape[1] if self.out_dim is None else self.out_dim
        kind: Any = self.kind  # validated by LeanVec
        solver: Any = self.solver
        self.leanvec_ = sx.LeanVec(
            out_dim,
            kind=kind,
            seed=self.seed,
            solver=solver,
            query_blend=self.query_blend,
            max_samples=self.max_samples,
            max_iter=self.max_iter,
            tol=self.tol,
        ).fit(X, queries)
        self.data_matrix_ = self.leanvec_.data_matrix
        self.query_matrix_ = self.leanvec_.query_matrix
        self.n_iter_ = max(1, len(self.leanvec_.loss_history) - 1)  # Frank-Wolfe steps; 1 solve
        return self

    @property
    def _n_features_out(self) -> int:
        return int(self.leanvec_.out_dim)

    def transform(self, X: Any) -> np.ndarray:
        """Data side: (n, D) -> (n, d) float32."""
        check_is_fitted(self, "leanvec_")
        X = validate_data(self, X, dtype=_FLOATS, reset=False)
        return self.leanvec_.transform(X)

    def transform_queries(self, Q: Any) -> np.ndarray:
        """Query side: (m, D) -> (m, d) float32 (= transform for kind='id')."""
        check_is_fitted(self, "leanvec_")
        Q = validate_data(self, Q, dtype=_FLOATS, reset=False)
        return self.leanvec_.transform_queries(Q)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


class PQTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """simdex.ProductQuantizer as a scikit-learn transformer:
    X (n, D) -> codes (n, code_size) uint8.

    m        : sub-spaces (a divisor of n_features; None = gcd(n_features, 32) for 8 bits,
               gcd(n_features, 64) for 4 bits)
    nbits    : 8 or 4 (two codes per byte)
    opq, n_iter, seed, max_samples : as ProductQuantizer.fit
    inverse_transform(codes) decodes to (n, D) float32 reconstructions.

    After fit: quantizer_ (the simdex.ProductQuantizer), codebooks_ (m, 2**nbits, D / m),
    n_features_in_.
    """

    def __init__(
        self,
        m: int | None = None,
        *,
        nbits: int = 8,
        opq: bool = False,
        n_iter: int = 25,
        seed: int = 0,
        max_samples: int | None = None,
    ) -> None:
        self.m = m
        self.nbits = nbits
        self.opq = opq
        self.n_iter = n_iter
        self.seed = seed
        self.max_samples = max_samples

    def fit(self, X: Any, y: Any = None) -> PQTransformer:
        X = validate_data(self, X, dtype=_FLOATS)
        need = 1 << self.nbits if self.nbits in (4, 8) else 1
        if X.shape[0] < need:
            raise ValueError(
                f"a {self.nbits}-bit product quantizer trains {need} centroids per "
                f"sub-space and needs n_samples >= {need}; got n_samples={X.shape[0]}"
            )
        m = _kinds.default_m(X.shape[1], self.nbits) if self.m is None else self.m
        self.quantizer_ = sx.ProductQuantizer(X.shape[1], m, nbits=self.nbits).fit(
            X, opq=self.opq, n_iter=self.n_iter, seed=self.seed, max_samples=self.max_samples
        )
        self.codebooks_ = self.quantizer_.codebooks
        return self

    @property
    def _n_features_out(self) -> int:
        return int(self.quantizer_.code_size)

    def transform(self, X: Any) -> np.ndarray:
        """(n, D) floats -> (n, code_size) uint8 codes."""
        check_is_fitted(self, "quantizer_")
        X = validate_data(self, X, dtype=_FLOATS, reset=False)
        return self.quantizer_.encode(X)

    def inverse_transform(self, codes: Any) -> np.ndarray:
        """(n, code_size) uint8 codes -> (n, D) float32 reconstructions."""
        check_is_fitted(self, "quantizer_")
        return self.quantizer_.decode(codes)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags


__all__ = ["KNeighborsTransformer", "LeanVecTransformer", "NearestNeighbors", "PQTransformer"]
