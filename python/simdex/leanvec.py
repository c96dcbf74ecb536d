"""LeanVec: linear dimensionality reduction for inner-product search, and a two-stage index.

From "LeanVec: Search your vectors faster by making them fit" (Tepper et al.). A projection
maps queries with A and data with B (both (D, d) float32) so that

    <q, x>  ~  <A^T q, B^T x>

kind="id" (LeanVec-ID): A = B = the top-d eigenvectors of the data's second-moment matrix
    K_X = X^T X (estimated on a sample). No centring, on purpose: the projection must stay
    linear so that <A^T q, B^T x> approximates <q, x> itself, with no per-query offset term
    such as <q, mean>. The second-moment matrix contains the mean (K_X / n = C + mu mu^T), so
    when the mean matters its direction is among the top eigenvectors. For unit-norm data and
    the inner product this is what the LeanVec paper's ID loss ||X - P P^T X||_F minimises.
    (Measured on the dev set, d=64: centred PCA, ranking by <P^T q, P^T (x - mu)>, gave the same
    recall, 0.514 vs 0.513.)

kind="ood" (LeanVec-OOD): A != B, learnt for queries like the sample given to fit. The loss

    L(A, B) = sum_{q, x} (q^T x - q^T A B^T x)^2
            = tr(K_Q K_X) - 2 tr(K_Q A B^T K_X) + tr(B A^T K_Q A B^T K_X)

depends only on K_Q = Q^T Q and K_X = X^T X (D, D), so fitting costs O(D^3), whatever n.
Two solvers:
  - "closed_form" (default): the minimum of L over rank-d products M = A B^T. With
    W = K_Q^1/2 K_X^1/2 = U S V^T, L = ||W - K_Q^1/2 M K_X^1/2||_F^2 and Eckart-Young gives
    M = K_X^1/2 V_d V_d^T K_X^-1/2 (one eigendecomposition per K and one SVD).
  - "frank_wolfe": block-coordinate Frank-Wolfe over the spectral-norm balls ||A||_2 <= 1,
    ||B||_2 <= 1 (the paper's solver): start from the ID (PCA) matrices, alternate one step on
    A and one on B with step 1/(t+2) (i.e. 1/(t+1) counting the start as step 1, so the start
    is not thrown away at once), capped by the exact line-search step (L is a convex quadratic
    along each block's direction, so the cap makes every step decrease L: the plain harmonic
    step raised L above its PCA start on skewed problems), linear minimisation oracle -U V^T
    from the gradient's SVD, stop when the relative change of L falls below tol or after
    max_iter steps.
On the dev OOD queries both solvers reach the same objective and recall (bench/RESULTS-leanvec.md)
and the closed form fits 15-60x faster, hence the default.
Both solvers are then re-factored so that B has orthonormal columns (M = A B^T is unchanged):
the data side is an orthogonal projection, so data-to-data inner products used to build the
graph stay meaningful.

Few learning queries make K_Q singular and the learnt projection ignores every direction the
sample does not span (recall collapses on new queries). K_Q is therefore blended with K_X:
K_Q' = (1 - w) K_Q / tr(K_Q) + w K_X / tr(K_X), with w = query_blend, by default D / (D + m)
for m learning queries; fewer than max(out_dim, 16) queries is refused.
Dev set (D=384): with 128 learning queries at d=128, recall@10 of the re-ranked top-50 was
0.954 unblended, 0.976 with the default blend (PCA: 0.974); with 4,000 queries the default
w = 0.09 costs almost nothing (0.979 vs 0.980 unblended).
"""

from __future__ import annotations

import os
from typing import Any, Literal, cast

import numpy as np

from . import _checks, _core, _progress, _result, _storage
from ._base import Index, reads, searches, writes
from ._checks import MAX_DIM, FloatMetric, RerankStorage
from ._format import Fields
from ._rerank import RerankStore
from ._result import SearchResult
from .hnsw import HNSWIndex
from .kernels import normalize

KINDS = ("id", "ood")
SOLVERS = ("closed_form", "frank_wolfe")
MIN_QUERIES = 16


def _second_moment(x: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    """K = X^T X / n in float64 on at most max_samples rows of x (n, D): (D, D)."""
    if x.shape[0] > max_samples:
        rows = np.sort(rng.choice(x.shape[0], size=max_samples, replace=False))
        x = x[rows]
    k = np.zeros((x.shape[1], x.shape[1]))
    for begin in range(0, x.shape[0], 8192):  # float64 accumulation without a float64 copy of x
        chunk = x[begin : begin + 8192].astype(np.float64)
        k += chunk.T @ chunk
    moment: np.ndarray = k / x.shape[0]
    return moment


def _sym_power(k: np.ndarray, power: float, floor: float = 1e-10) -> np.ndarray:
    """K^power for a symmetric PSD (D, D) matrix; eigenvalues below floor * max are clamped."""
    values, vectors = np.linalg.eigh(k)
    top = max(float(values[-1]), 1e-300)
    values = np.maximum(values, floor * top)
    out: np.ndarray = (vectors * values**power) @ vectors.T
    return out


def _top_eigenvectors(k: np.ndarray, d: int) -> np.ndarray:
    """Top-d eigenvectors of a symmetric (D, D) matrix, by decreasing eigenvalue: (D, d)."""
    _, vectors = np.linalg.eigh(k)
    return np.ascontiguousarray(vectors[:, ::-1][:, :d])


def _orthonormal_data_side(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same product A B^T, with B replaced by an orthonormal basis of its column space."""
    qb, r = np.linalg.qr(b)
    return a @ r.T, qb


def ood_loss(kq: np.ndarray, kx: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """L(A, B) = tr(K_Q K_X) - 2 tr(K_Q A B^T K_X) + tr(B A^T K_Q A B^T K_X)."""
    kqa, kxb = kq @ a, kx @ b
    return float(np.sum(kq * kx) - 2.0 * np.sum(kqa * kxb) + np.sum((a.T @ kqa) * (b.T @ kxb)))


def _closed_form(kq: np.ndarray, kx: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    kx_half, kx_inv_half = _sym_power(kx, 0.5), _sym_power(kx, -0.5)
    w = _sym_power(kq, 0.5) @ kx_half
    _, _, vt = np.linalg.svd(w)
    v = vt[:d].T  # (D, d) top right singular vectors
    return _orthonormal_data_side(kx_half @ v, kx_inv_half @ v)


def _frank_wolfe(
    kq: np.ndarray, kx: np.ndarray, a: np.ndarray, b: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    def oracle(gradient: np.ndarray) -> np.ndarray:
        u, _, vt = np.linalg.svd(gradient, full_matrices=False)
        best: np.ndarray = -(u @ vt)  # argmin <G, S> over ||S||_2 <= 1
        return best

    def capped_step(
        gradient: np.ndarray, direction: np.ndarray, curvature: float, step: float
    ) -> float:
        # the loss along the direction is L0 + s g + s^2 h (h >= 0): never step past its minimum
        slope = float(np.sum(gradient * direction))
        if slope >= 0.0:
            return 0.0
        return step if curvature <= 0.0 else min(step, -slope / (2.0 * curvature))

    history = [ood_loss(kq, kx, a, b)]
    for t in range(max_iter):
        step = 1.0 / (t + 2)
        btkxb = b.T @ kx @ b
        grad_a = 2.0 * kq @ (a @ btkxb - kx @ b)
        direction = oracle(grad_a) - a
        a = (
            a
            + capped_step(
                grad_a, direction, float(np.sum((direction.T @ kq @ direction) * btkxb)), step
            )
            * direction
        )
        atkqa = a.T @ kq @ a
        grad_b = 2.0 * kx @ (b @ atkqa - kq @ a)
        direction = oracle(grad_b) - b
        b = (
            b
            + capped_step(
                grad_b, direction, float(np.sum(atkqa * (direction.T @ kx @ direction))), step
            )
            * direction
        )
        history.append(ood_loss(kq, kx, a, b))
        if abs(history[-2] - history[-1]) <= tol * max(abs(history[-2]), 1e-300):
            break
    a, b = _orthonormal_data_side(a, b)
    return a, b, history


class LeanVec:
    """Query-aware linear dimensionality reduction (LeanVec-ID / LeanVec-OOD), sklearn-like.

    out_dim      : d, the reduced dimension (1 <= d <= D)
    kind         : 'id' (PCA: one matrix for both sides) or 'ood' (separate query and data
                   matrices fitted on a sample of queries)
    seed         : seed of the row sample used to estimate K_X
    solver       : 'closed_form' (default) or 'frank_wolfe' (kind='ood' only)
    query_blend  : weight w of K_X blended into K_Q (kind='ood'); None = D / (D + m)
    max_samples  : rows of x used to estimate K_X (a seeded sample when x is larger)
    max_iter, tol: Frank-Wolfe steps and stopping tolerance on the relative change of the loss

    After fit: data_matrix (D, d) float32 (B), query_matrix (D, d) float32 (A), dim = D,
    loss_history (Frank-Wolfe: loss after each step, first entry = start; otherwise one entry).
    """

    def __init__(
        self,
        out_dim: int,
        *,
        kind: Literal["id", "ood"] = "id",
        seed: int = 0,
        solver: Literal["closed_form", "frank_wolfe"] = "closed_form",
        query_blend: float | None = None,
        max_samples: int = 100_000,
        max_iter: int = 500,
        tol: float = 1e-6,
    ) -> None:
        self.out_dim = _checks.check_dim(out_dim, "out_dim")
        self.kind = _checks.check_choice(kind, "kind", KINDS)
        self.seed = int(seed)
        self.solver = _checks.check_choice(solver, "solver", SOLVERS)
        if query_blend is not None:
            query_blend = float(query_blend)
            if not 0.0 <= query_blend <= 1.0:
                raise ValueError(f"query_blend must be in [0, 1] or None; got {query_blend}")
        self.query_blend = query_blend
        self.max_samples = _checks.check_positive_int(max_samples, "max_samples", 2)
        self.max_iter = _checks.check_positive_int(max_iter, "max_iter")
        self.tol = float(tol)
        self.dim: int | None = None
        self.data_matrix: np.ndarray | None = None
        self.query_matrix: np.ndarray | None = None
        self.loss_history: list[float] = []

    def __repr__(self) -> str:
        extra = f", solver={self.solver!r}" if self.kind == "ood" else ""
        return (
            f"LeanVec(out_dim={self.out_dim}, kind={self.kind!r}{extra}, dim={self.dim}, "
            f"fitted={self.data_matrix is not None})"
        )

    # ---- fitting -----------------------------------------------------------------------
    def fit(self, x: Any, queries: Any = None) -> LeanVec:
        """Learn the projections.

        x       : (n, D) float data sample (n >= 2)
        queries : (m, D) float query sample, required for kind='ood' (m >= max(out_dim, 16)),
                  refused for kind='id' (PCA uses data only)
        returns : self
        """
        a, _ = _checks.as_float_rows(x, None, "x", allow_1d=False)
        dim = a.shape[1]
        if self.out_dim > dim:
            raise ValueError(
                f"out_dim must be <= the input dimension {dim}; got out_dim={self.out_dim}"
            )
        if a.shape[0] < 2:
            raise ValueError(
                f"x must have at least 2 rows to estimate a projection; got {a.shape[0]}"
            )
        rng = np.random.default_rng(self.seed)
        kx = _second_moment(a, self.max_samples, rng)
        if self.kind == "id":
            if queries is not None:
                raise ValueError(
                    "kind='id' (PCA) learns from the data only; pass kind='ood' to use queries"
                )
            p = _top_eigenvectors(kx, self.out_dim)
            self._set(dim, p, p, [])
            return self
        if queries is None:
            raise ValueError(
                "kind='ood' needs a sample of queries: fit(x, queries) with queries (m, D)"
            )
        q, _ = _checks.as_float_rows(queries, dim, "queries", allow_1d=False)
        need = max(self.out_dim, MIN_QUERIES)
        if q.shape[0] < need:
            raise ValueError(
                f"kind='ood' needs at least max(out_dim, {MIN_QUERIES}) = {need} learning "
                "queries; got "
                f"{q.shape[0]}. With so few queries K_Q is singular and recall collapses: pass "
                "more "
                "queries (several times D works best) or use kind='id'"
            )
        kq, kx = self.query_kernel(q, kx), kx / np.trace(kx)
        if self.solver == "closed_form":
            qa, qb = _closed_form(kq, kx, self.out_dim)
            self._set(dim, qa, qb, [ood_loss(kq, kx, qa, qb)])
        else:
            p = _top_eigenvectors(kx, self.out_dim)
            qa, qb, history = _frank_wolfe(kq, kx, p.copy(), p.copy(), self.max_iter, self.tol)
            self._set(dim, qa, qb, history)
        return self

    def query_kernel(self, q: np.ndarray, kx: np.ndarray) -> np.ndarray:
        """Blended, trace-normalised K_Q' = (1 - w) K_Q / tr K_Q + w K_X / tr K_X:
        (D, D) float64."""
        q64 = q.astype(np.float64)
        kq = q64.T @ q64
        w = (
            self.query_blend
            if self.query_blend is not None
            else q.shape[1] / (q.shape[1] + q.shape[0])
        )
        kernel: np.ndarray = (1.0 - w) * kq / max(np.trace(kq), 1e-300) + w * kx / np.trace(kx)
        return kernel

    def _set(self, dim: int, a: np.ndarray, b: np.ndarray, history: list[float]) -> None:
        self.dim = dim
        self.query_matrix = np.ascontiguousarray(a, dtype=np.float32)
        self.data_matrix = np.ascontiguousarray(b, dtype=np.float32)
        self.loss_history = [float(v) for v in history]
        # (d, D) copies: the rows the GEMM kernels project with
        self._query_rows = np.ascontiguousarray(self.query_matrix.T)
        self._data_rows = np.ascontiguousarray(self.data_matrix.T)

    def _matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """(query_matrix, data_matrix) of a fitted projection."""
        if self.query_matrix is None or self.data_matrix is None:
            raise ValueError("the projection is not fitted; call fit(x) first")
        return self.query_matrix, self.data_matrix

    def _project(self, a: np.ndarray, rows: np.ndarray, threads: int | None) -> np.ndarray:
        """a (n, D) float32 -> (n, d) float32 = a @ matrix, through our GEMM kernels and thread
        pool (not NumPy's BLAS, whose idle threads spin and slow the search that follows);
        raises ValueError when a projected row is too large for float32 distances (the check
        LeanVecIndex's C++ core runs on its adds and queries too)."""
        out: np.ndarray = _core.leanvec_project(
            rows, a, _checks.max_magnitude(rows.shape[0]), threads=threads
        )
        return out

    # ---- projecting --------------------------------------------------------------------
    def _fitted(self) -> None:
        if self.data_matrix is None:
            raise ValueError(
                "this LeanVec is not fitted; call fit(x) (and queries for kind='ood') first"
            )

    def transform(self, x: Any, *, threads: int | None = None) -> np.ndarray:
        """Data side: x (n, D) or (D,) float -> (n, d) or (d,) float32 = x @ data_matrix."""
        self._fitted()
        a, was_1d = _checks.as_float_rows(x, self.dim, "x")
        out = self._project(a, self._data_rows, _checks.check_threads(threads))
        return out[0] if was_1d else out

    def transform_queries(self, q: Any, *, threads: int | None = None) -> np.ndarray:
        """Query side: q (m, D) or (D,) float -> (m, d) or (d,) float32 = q @ query_matrix."""
        self._fitted()
        a, was_1d = _checks.as_float_rows(q, self.dim, "queries")
        out = self._project(a, self._query_rows, _checks.check_threads(threads))
        return out[0] if was_1d else out

    def objective(self, x: Any, queries: Any) -> float:
        """Relative error sum (q.x - A^T q . B^T x)^2 / sum (q.x)^2 on the given samples."""
        self._fitted()
        a, _ = _checks.as_float_rows(x, self.dim, "x", allow_1d=False)
        q, _ = _checks.as_float_rows(queries, self.dim, "queries", allow_1d=False)
        kx = _second_moment(a, self.max_samples, np.random.default_rng(self.seed))
        q64 = q.astype(np.float64)
        kq = q64.T @ q64
        total = float(np.sum(kq * kx))
        qa, qb = self._matrices()
        return ood_loss(kq, kx, qa.astype(np.float64), qb.astype(np.float64)) / max(total, 1e-300)

    # ---- state (used by LeanVecIndex persistence) ----------------------------------------
    def _params(self) -> dict[str, Any]:
        return {
            "out_dim": self.out_dim,
            "kind": self.kind,
            "seed": self.seed,
            "solver": self.solver,
            "query_blend": self.query_blend,
            "max_samples": self.max_samples,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "dim": self.dim,
            "loss_history": self.loss_history,
        }

    @classmethod
    def _restore(cls, f: Fields, matrices: tuple[np.ndarray, np.ndarray] | None) -> LeanVec:
        """From its params (f) and, when trained, its (query, data) matrices."""
        lv = f.build(
            cls,
            f.int("out_dim", 1, MAX_DIM),
            kind=f.choice("kind", KINDS),
            seed=f.int("seed", 0, 2**63 - 1),
            solver=f.choice("solver", SOLVERS),
            query_blend=f.float("query_blend", 0.0, 1.0, allow_none=True),
            max_samples=f.int("max_samples", 2, 2**40),
            max_iter=f.int("max_iter", 1, 2**31),
            tol=f.float("tol", 0.0, 1e300),
        )
        if matrices is not None:
            lv._set(matrices[1].shape[0], *matrices, f.floats("loss_history", 1 << 20, []))
        return lv


# ---- two-stage index ----------------------------------------------------------------------
MAX_PROJECTION_ENTRY = 16.0  # a fitted LeanVec matrix has entries below 1
PRIMARIES = ("float32", "float16", "int8")
SECONDARIES = ("float32", "float16", "int8")


class LeanVecIndex(Index):
    """Two-stage search: an HNSW graph on LeanVec-reduced vectors, then exact re-ranking.

    dim             : D, dimension of the vectors added and searched
    out_dim         : d, dimension of the reduced vectors the graph is built and searched on
    kind            : 'ood' (query-aware projection, needs train(x, queries)) or 'id' (PCA)
    metric          : 'ip' (1 - <q, x>), 'cosine' (vectors normalised at add time, then ip)
                      or 'l2' (kind='id' only: the reduced graph uses l2 between projections)
    M, ef_construction : HNSW parameters of the reduced graph
    primary         : storage of the reduced vectors in the graph: 'float16', 'int8'
                      (per-dimension ranges from the first add: add a representative first
                      batch; with metric 'ip'/'cosine' the graph also rounds queries to int8:
                      HNSWIndex(int8_queries=True)) or 'float32'; int8 was the fastest on the
                      dev set
    secondary       : storage of the full vectors used to re-rank: 'float32', 'float16' or
                      'int8' (per-dimension ranges from train); re-ranking is exact for the
                      stored precision
    rerank_path     : None keeps the full vectors in RAM (and in the saved file); a file path
                      keeps them in a raw memory-mapped file there (the saved index records its
                      size and checksum, never its path: load with simdex.load(path, rerank=...))
    overwrite       : allow rerank_path to name an existing non-empty file (it is emptied)
    solver, query_blend : passed to LeanVec (see there)
    seed            : seeds the projection's sample and the graph

    Search: queries are projected with one matrix multiply per batch, the graph returns
    max(ef, k) candidates (or rerank_k, widening ef when needed), and all of them are re-scored
    with the full vectors.
    """

    kind = "leanvec"

    def __init__(
        self,
        dim: int,
        out_dim: int,
        *,
        kind: Literal["ood", "id"] = "ood",
        metric: FloatMetric = "ip",
        M: int = 16,
        ef_construction: int = 200,
        primary: RerankStorage = "float16",
        secondary: RerankStorage = "float32",
        rerank_path: str | os.PathLike[str] | None = None,
        solver: Literal["closed_form", "frank_wolfe"] = "closed_form",
        query_blend: float | None = None,
        seed: int = 0,
        overwrite: bool = False,
    ) -> None:
        self.dim = _checks.check_dim(dim)
        self.out_dim = _checks.check_dim(out_dim, "out_dim")
        if self.out_dim > self.dim:
            raise ValueError(f"out_dim must be <= dim={self.dim}; got out_dim={self.out_dim}")
        self.metric = _checks.check_metric(metric, ("ip", "cosine", "l2"))
        self.primary = _checks.check_choice(primary, "primary", PRIMARIES)
        self.secondary = _checks.check_choice(secondary, "secondary", SECONDARIES)
        if rerank_path == "memory":
            raise TypeError(
                "rerank_path must be None (vectors in RAM) or a file path; got 'memory'"
            )
        self.rerank_path: str | None = RerankStore.check_where(
            rerank_path, overwrite, "rerank_path"
        )
        self.projection = LeanVec(
            self.out_dim, kind=kind, seed=seed, solver=solver, query_blend=query_blend
        )
        if self.metric == "l2" and self.projection.kind == "ood":
            raise ValueError(
                "metric='l2' needs kind='id': the OOD projection approximates inner "
                "products only; use metric='ip' or 'cosine', or kind='id'"
            )
        self.seed = self.projection.seed
        # int8 primary with an inner-product graph: queries rounded to int8 too (integer dot
        # products; the candidates are re-ranked anyway)
        int8_queries = self.primary == "int8" and self._graph_metric() == "ip"
        self._graph = HNSWIndex(
            self.out_dim,
            self._graph_metric(),
            M=M,
            ef_construction=ef_construction,
            storage=cast(RerankStorage, self.primary),
            seed=self.seed,
            int8_queries=int8_queries,
        )
        self._store: RerankStore | None = None
        self._core: Any = None  # _core.LeanVecCore once trained (holds the parts below)
        self._init_ids(reuse_slots=False)

    def _make_core(self) -> None:
        """The C++ object every add / remove / search goes through: the graph, the id table,
        the re-rank rows and the projections (once trained)."""
        assert self._store is not None
        self._core = _core.LeanVecCore(
            self._graph._core,
            self._idt,
            self._store.core,
            self.projection._query_rows,
            self.projection._data_rows,
            _checks.max_magnitude(self.out_dim),
        )

    # ---- properties ---------------------------------------------------------------------
    def _graph_metric(self) -> Literal["l2", "ip"]:
        return "l2" if self.metric == "l2" else "ip"

    def _full_metric(self) -> str:
        return "l2" if self.metric == "l2" else "ip"  # cosine: rows and queries are normalised

    @property
    def is_trained(self) -> bool:
        return self.projection.data_matrix is not None

    @property
    def ef(self) -> int:
        """Default graph search list size; search re-ranks max(ef, k) candidates by default."""
        return self._graph.ef

    @ef.setter
    def ef(self, value: int) -> None:
        self._graph.ef = value

    @property
    def M(self) -> int:
        return self._graph.M

    @property
    def ef_construction(self) -> int:
        return self._graph.ef_construction

    @property
    def nbytes(self) -> int:
        # the fitted matrices and their row-major copies, and the core's own copies
        matrices = 0 if not self.is_trained else self.projection._matrices()[1].nbytes * 4
        core = 0 if self._core is None else self._core.nbytes
        store = 0 if self._store is None else self._store.nbytes
        return int(self._graph.nbytes + store + matrices + core + self._idt.nbytes)

    def _prepare(self, x: Any, name: str) -> tuple[np.ndarray, bool]:
        a, was_1d = _checks.as_float_rows(x, self.dim, name)
        if self.metric == "cosine":
            a = normalize(a)
        return a, was_1d

    def _new_store(self, lo: np.ndarray | None = None, scale: np.ndarray | None = None) -> Any:
        where = "memory" if self.rerank_path is None else self.rerank_path
        return RerankStore(
            self.dim, self._full_metric(), where, storage=self.secondary, lo=lo, scale=scale
        )

    # ---- building -----------------------------------------------------------------------
    @writes
    def train(self, x: Any, queries: Any = None, *, progress: bool = False) -> LeanVecIndex:
        """Fit the projection (and int8 secondary ranges) on a data sample.

        x        : (n, dim) float sample of the data
        queries  : (m, dim) float sample of queries; required for kind='ood', refused for 'id'
        progress : a bar over the stages (projection, graph ranges, re-rank store)
        """
        _checks.check_untrained(self, len(self))
        a, _ = self._prepare(x, "x")
        q = None
        if queries is not None:
            q, _ = self._prepare(queries, "queries")
        with _progress.Progress(progress, 3, "LeanVec train", "stage") as bar:
            self.projection.fit(a, q)
            bar.update()
            if self.primary == "int8":  # the graph's int8 ranges from the projected sample
                self._graph.train(self.projection._project(a, self.projection._data_rows, None))
            bar.update()
            lo = scale = None
            if self.secondary == "int8":
                lo, scale = _storage.train_int8(a)
            self._store = self._new_store(lo, scale)
            self._make_core()
            bar.update()
        return self

    @writes
    def add(
        self, x: Any, ids: Any = None, *, threads: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Add vectors x (n, dim); returns their ids (n,) int64 (progress: a bar over the
        rows inserted into the graph)."""
        threads = _checks.check_threads(threads)
        _progress.check(progress)
        if not self.is_trained:
            hint = "train(x, queries)" if self.projection.kind == "ood" else "train(x)"
            raise ValueError(f"LeanVecIndex is not trained; call {hint} before add")
        a, _ = self._prepare(x, "x")
        new_ids = None if ids is None else _checks.as_ids(ids, a.shape[0])
        # One C++ call: project, encode, bind ids, store the rows, insert into the graph (all
        # or nothing); with a bar, one call per chunk and the earlier chunks undone on error.
        with _progress.Progress(progress, a.shape[0], "LeanVec add") as bar:
            if not bar.shown:
                added: np.ndarray = self._core.add(a, new_ids, threads)
                return added
            done: list[np.ndarray] = []
            try:
                for part in _progress.chunks(a.shape[0], bar, chunk=max(1000, a.shape[0] // 100)):
                    rows = np.ascontiguousarray(a[part])
                    chunk_ids = None if new_ids is None else np.ascontiguousarray(new_ids[part])
                    done.append(self._core.add(rows, chunk_ids, threads))
            except BaseException:
                for chunk in done:
                    self._core.remove(chunk)
                raise
            return np.concatenate(done) if done else np.zeros(0, dtype=np.int64)

    @writes
    def remove(self, ids: Any) -> int:
        """Remove vectors by id (unknown ids are ignored); returns how many were removed.
        O(1) (a tombstone in the graph); removed ids are never returned again."""
        removed: int = self._core.remove(_checks.as_id_list(ids)) if self._core is not None else 0
        return removed

    # ---- search -------------------------------------------------------------------------
    @searches
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        ef: int | None = None,
        rerank_k: int | None = None,
        filter: Any = None,
        max_distance: Any = None,
        threads: int | None = None,
    ) -> SearchResult:
        """Approximate k nearest neighbours (graph on reduced vectors, exact re-rank).

        queries      : (q, dim) or (dim,) float32 (other float dtypes are converted with one copy)
        k            : int >= 1
        ef           : graph search list size (default: the ef property)
        rerank_k     : candidates re-ranked with the full vectors; None = max(ef, k) (the whole
                       search buffer); must be >= k; ef is widened to rerank_k when smaller
        filter       : int64 array of allowed ids, or boolean mask indexed by id
        max_distance : float or (q,) floats; results farther than it are dropped (-1 / +inf)
        returns      : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64, -1 padded)
        """
        k = _checks.check_k(k)
        ef = self._graph.ef if ef is None else _checks.check_list_size(ef, "ef")
        threads = _checks.check_threads(threads)
        if rerank_k is not None:
            rerank_k = _checks.check_list_size(rerank_k, "rerank_k")
            if rerank_k < k:
                raise ValueError(f"rerank_k must be >= k={k}; got rerank_k={rerank_k}")
        q, was_1d = self._prepare(queries, "queries")
        if len(self) == 0:
            return self._empty_result(q.shape[0], k, was_1d, max_distance)
        allowed = self._allowed_slots(filter)
        if allowed is not None:
            if allowed.size == 0:
                return self._empty_result(q.shape[0], k, was_1d, max_distance)
        buffer = max(ef, k) if rerank_k is None else rerank_k
        # One C++ call: project, walk the graph, re-rank with the full rows, map slots to ids.
        allowed_ids, offsets, allowed_mask = _checks.as_filter(allowed, q.shape[0])
        dist, ids = self._core.search(q, k, ef, buffer, allowed_ids, offsets, allowed_mask, threads)
        return _result.finish(dist, ids, was_1d, max_distance)

    # ---- persistence --------------------------------------------------------------------
    @reads
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        inner = self._graph._state()
        return self._state_params(inner), self._state_arrays(inner)

    def _state_params(self, inner: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        params = {
            "dim": self.dim,
            "out_dim": self.out_dim,
            "metric": self.metric,
            "primary": self.primary,
            "secondary": self.secondary,
            "next_id": self._ids_state()[1],
            "projection": self.projection._params(),
            "graph": inner[0],
            "trained": self.is_trained,
        }
        if self._store is not None:
            params["store"] = self._store.params()
        return params

    def _state_arrays(self, inner: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, np.ndarray]:
        arrays = {"ids": self._ids_state()[0]}
        arrays.update({f"graph_{name}": a for name, a in inner[1].items()})
        if self.is_trained:
            arrays["query_matrix"], arrays["data_matrix"] = self.projection._matrices()
        if self._store is not None:
            arrays.update(self._store.arrays())
        return arrays

    @classmethod
    def _from_state(cls, f: Fields) -> LeanVecIndex:
        index = cls.__new__(cls)
        index.dim = f.int("dim", 1, MAX_DIM)
        index.out_dim = f.int("out_dim", 1, index.dim)
        index.metric = f.choice("metric", ("ip", "cosine", "l2"))
        index.primary = f.choice("primary", PRIMARIES)
        index.secondary = f.choice("secondary", SECONDARIES)
        matrices = None
        if f.bool("trained"):
            shape = (index.dim, index.out_dim)
            matrices = (
                f.array("query_matrix", np.float32, shape, finite=True),
                f.array("data_matrix", np.float32, shape, finite=True),
            )
            for name, matrix in zip(("query_matrix", "data_matrix"), matrices, strict=True):
                # fitted projections have entries below 1 (scale-free: normalised kernels)
                if matrix.size and float(np.abs(matrix).max()) > MAX_PROJECTION_ENTRY:
                    raise f.error(
                        name, f"entries above {MAX_PROJECTION_ENTRY}: not a fitted projection"
                    )
        p = f.sub("projection", "")
        index.projection = LeanVec._restore(p, matrices)
        index.seed = index.projection.seed
        if index.projection.out_dim != index.out_dim or (
            matrices is not None and p.int("dim", 1, MAX_DIM) != index.dim
        ):
            raise f.error("projection", "dimensions do not match the index")
        index._graph = HNSWIndex._from_state(f.sub("graph", "graph_"))
        g = index._graph
        if (g.dim, g.metric, g.storage) != (index.out_dim, index._graph_metric(), index.primary):
            raise f.error(
                "graph", f"a {g.dim}-d {g.metric} {g.storage} graph does not fit this index"
            )
        ids = f.ids("ids")
        live = int((ids >= 0).sum())
        graph_slots = g.ids
        if graph_slots.size != live or (
            graph_slots.size and (graph_slots.max() >= ids.shape[0] or (ids[graph_slots] < 0).any())
        ):
            raise f.error("ids", "the live slots are not the graph's nodes")
        index._init_ids(reuse_slots=False)
        index._restore_ids(ids, f.int("next_id", 0, 2**62, 0), "leanvec")
        index._store = None
        index.rerank_path = None
        if f.has("store"):
            index._store = f.rows_for(
                RerankStore.restore(
                    f.sub("store", ""), index.dim, index._full_metric(), storage=index.secondary
                ),
                ids.shape[0],
            )
            index.rerank_path = index._store.path
        elif live:
            raise f.error("store", f"missing, but the index holds {live} vectors")
        index._core = None
        if index._store is not None:
            if not index.is_trained:
                raise f.error("store", "present, but the projection is not trained")
            index._make_core()
        return index

    def _repr_fields(self) -> str:
        return (
            f"out_dim={self.out_dim}, kind={self.projection.kind!r}, M={self.M}, "
            f"ef_construction={self.ef_construction}, primary={self.primary!r}, "
            f"secondary={self.secondary!r}"
        )
