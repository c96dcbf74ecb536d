"""RaBitQ: 1..8-bit codes with unbiased distance estimates and error bounds (Gao & Long,
SIGMOD 2024; Extended RaBitQ, SIGMOD 2025). The math and the row layout are documented in
cpp/index/rabitq.hpp; this module draws the random rotation (numpy.random.default_rng(seed))
and checks arguments.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _checks, _core, _progress, _result
from ._base import Index, reads, searches, writes
from ._format import Fields
from ._rerank import RerankStore
from ._result import SearchResult
from .kernels import normalize
from .kmeans import _assign, coarse_quantizer
from .pq import _check_rerank_k

ROTATIONS = ("hadamard", "dense")
ROUNDS = 4  # Hadamard rounds (cpp Rotation::kRounds)


def padded_dim(dim: int) -> int:
    """The rotated dimension D: dim rounded up to a multiple of 64."""
    return (dim + 63) // 64 * 64


def draw_rotation(dim: int, rotation: str, seed: int) -> np.ndarray:
    """Parameters of a random orthogonal map of R^D (D = padded_dim(dim)):
    hadamard -> (4, D) float32 random signs; dense -> (D, D) float32 Haar-random orthogonal."""
    d = padded_dim(dim)
    rng = np.random.default_rng(seed)
    if rotation == "hadamard":
        return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(ROUNDS, d))
    g = rng.standard_normal((d, d))
    q, r = np.linalg.qr(g)
    q *= np.sign(np.diag(r))  # Haar measure: fix the signs of the QR factorisation
    return np.ascontiguousarray(q, dtype=np.float32)


def confidence(eps0: float) -> float:
    """Probability that |estimate - distance| <= eps0 * error (normal approximation)."""
    return math.erf(eps0 / math.sqrt(2.0))


class RaBitQ:
    """RaBitQ quantizer: centre, normalise, rotate, keep the signs (1 bit) and B - 1 extra
    magnitude bits per dimension (Extended RaBitQ), plus per-vector factors.

    dim        : vector dimension (codes cover D = dim rounded up to a multiple of 64)
    bits       : 1..8 bits per dimension
    rotation   : 'hadamard' (4 rounds of random signs + fast Walsh-Hadamard, D log D) or
                 'dense' (a Haar-random (D, D) matrix, D^2; for small dim)
    seed       : seeds the rotation
    query_bits : bits per dimension of the quantised query (default min(8, bits + 3))

    A code row (row_bytes,) uint8 holds bits * D / 8 bytes of bit planes, then 3 (bits = 1)
    or 5 float32 factors (cpp/index/rabitq.hpp).
    """

    def __init__(
        self,
        dim: int,
        *,
        bits: int = 1,
        rotation: str = "hadamard",
        seed: int = 0,
        query_bits: int | None = None,
    ) -> None:
        self.dim = _checks.check_dim(dim)
        self.bits = _checks.check_positive_int(bits, "bits")
        if self.bits > 8:
            raise ValueError(f"bits must be in 1..8; got {bits}")
        self.rotation = _checks.check_choice(rotation, "rotation", ROTATIONS)
        if rotation == "dense" and padded_dim(self.dim) > 4096:
            raise ValueError(
                f"rotation='dense' stores a (D, D) matrix; D = {padded_dim(self.dim)} is too large "
                "(at most 4096): use rotation='hadamard'"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        self.seed = int(seed)
        qb = min(8, self.bits + 3) if query_bits is None else query_bits
        self.query_bits = _checks.check_positive_int(qb, "query_bits")
        if self.query_bits > 8:
            raise ValueError(f"query_bits must be in 1..8; got {query_bits}")
        self.padded_dim = padded_dim(self.dim)
        self.rotation_params = draw_rotation(self.dim, self.rotation, self.seed)
        self._core = _core.RaBitQCore(
            self.dim, self.bits, self.query_bits, self.rotation, self.rotation_params
        )
        self.centre: np.ndarray | None = None

    @property
    def row_bytes(self) -> int:
        """Bytes per encoded vector (bit planes + factors)."""
        return int(self._core.row_bytes)

    @property
    def is_trained(self) -> bool:
        return self.centre is not None

    def train(self, x: Any) -> RaBitQ:
        """Learn the centre: the mean of x (n, dim)."""
        a, _ = _checks.as_float_rows(x, self.dim, "x")
        self.centre = np.ascontiguousarray(a.mean(axis=0, dtype=np.float64), dtype=np.float32)
        return self

    fit = train

    def _need_centre(self) -> np.ndarray:
        if self.centre is None:
            raise ValueError("RaBitQ is not trained: call train(x) first (it learns the centre)")
        return self.centre

    def encode(self, x: Any, *, threads: int | None = None) -> np.ndarray:
        """x (n, dim) float -> codes (n, row_bytes) uint8."""
        threads = _checks.check_threads(threads)
        a, _ = _checks.as_float_rows(x, self.dim, "x")
        codes: np.ndarray = self._core.encode(a, a.shape[0], self._need_centre(), threads)
        return codes

    def _codes(self, codes: Any) -> np.ndarray:
        c = np.asarray(codes)
        if c.dtype != np.uint8:
            raise TypeError(f"codes must be uint8 rows from encode(); got dtype {c.dtype}")
        if c.ndim != 2 or c.shape[1] != self.row_bytes or c.shape[0] == 0:
            raise ValueError(f"codes must have shape (n, {self.row_bytes}); got {c.shape}")
        return np.ascontiguousarray(c)

    def decode(self, codes: Any) -> np.ndarray:
        """codes (n, row_bytes) -> (n, dim) float32: centre + norm * the rotated-back unit
        code vector (the reconstruction the full-level estimate is built on)."""
        c = self._codes(codes)
        out: np.ndarray = self._core.decode(c, c.shape[0], self._need_centre())
        return out

    def estimate(
        self,
        codes: Any,
        queries: Any,
        metric: str = "l2",
        *,
        eps0: float = 1.9,
        level: str = "full",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Estimated distances of every query to every code, with their error bounds.

        codes   : (n, row_bytes) uint8 from encode()
        queries : (q, dim) float
        metric  : 'l2' (squared), 'ip' (1 - <q, x>), 'cosine' (1 - cos; queries normalised
                  here, so encode unit vectors for it)
        eps0    : the bound is eps0 * (estimator standard deviation); it holds with
                  probability about confidence(eps0) = erf(eps0 / sqrt 2) (0.943 at 1.9)
        level   : 'full' (all bits) or '1bit' (the sign plane only)
        returns : (estimates (q, n) float32, bounds (q, n) float32)
        """
        metric = _checks.check_metric(metric, ("l2", "ip", "cosine"))
        level = _checks.check_choice(level, "level", ("full", "1bit"))
        if not isinstance(eps0, (int, float)) or not math.isfinite(eps0) or eps0 < 0:
            raise ValueError(f"eps0 must be a finite float >= 0; got {eps0!r}")
        c = self._codes(codes)
        q, _ = _checks.as_float_rows(queries, self.dim, "queries")
        if metric == "cosine":
            q = normalize(q)
        dist, err = self._core.estimate(
            c, c.shape[0], q, q.shape[0], self._need_centre(), metric, level
        )
        bounds: np.ndarray = (err * np.float32(eps0)).astype(np.float32)
        return dist, bounds

    def __repr__(self) -> str:
        return (
            f"RaBitQ(dim={self.dim}, bits={self.bits}, rotation={self.rotation!r}, "
            f"seed={self.seed}, query_bits={self.query_bits}, trained={self.is_trained})"
        )


# ---- indexes -----------------------------------------------------------------------------

RABITQ_METRICS = ("l2", "ip", "cosine")
MAX_RABITQ_DIM = 8192  # the index scan keeps one sign plane (D / 8 bytes) on the stack
# The file format of the RaBitQ index kinds (params["format_version"]; absent = 1):
#   1: codes, lists, slots (ip estimated uncentred: 1 - <c, q> - <r, q>)
#   2: + "centre_dots" (n,) float32 <x - c, c> per code row for metric="ip" (the exact part of
#      the centred estimate 1 - <c, q> - <r, c> - <r, q - c>); l2 / cosine files unchanged.
# Loading a version-1 ip file: with re-rank rows, <x - c, c> is recomputed from them (the
# index is then the one this version builds); without, each row keeps its code's own estimate
# of <r, c> (RaBitQIndexCore::restore), which leaves its estimate the version-1 one.
RABITQ_FORMAT = 2


class _RaBitQIndexBase(Index):
    """State in one C++ core (RaBitQIndexCore: codes in fast-scan lists, factors, ids, the
    re-rank rows by slot (the RerankRows of self._store, handed over at construction), its
    lock); self._store keeps the rows' persistence. Python guards the core with this index's
    reader-writer lock as well (search shares it, add / remove / train take it alone)."""

    nlist: int

    def _setup(
        self,
        dim: int,
        nlist: int,
        bits: int,
        metric: str,
        rerank: Any,
        overwrite: bool,
        rotation: str,
        seed: int,
        query_bits: int | None,
        eps0: float,
    ) -> None:
        self.dim = _checks.check_dim(dim)
        if self.dim > MAX_RABITQ_DIM:
            raise ValueError(f"RaBitQ indexes take dim <= {MAX_RABITQ_DIM}; got {dim}")
        self.metric = _checks.check_metric(metric, RABITQ_METRICS)
        self.nlist = nlist
        self.quantizer = RaBitQ(
            self.dim, bits=bits, rotation=rotation, seed=seed, query_bits=query_bits
        )
        self.bits = self.quantizer.bits
        self.eps0 = _check_eps0(eps0)
        where = RerankStore.check_where(rerank, overwrite)
        self._store = None if where is None else RerankStore(self.dim, self.metric, where)
        self.centroids: np.ndarray | None = None
        self.stats: dict[str, int] = {}
        self._make_core()

    def _make_core(self) -> None:
        """A new empty core for the quantizer, owning the re-rank rows of self._store."""
        q = self.quantizer
        rows = None if self._store is None else self._store.core
        self._core = _core.RaBitQIndexCore(
            self.dim,
            q.bits,
            q.query_bits,
            q.rotation,
            q.rotation_params,
            self.metric,
            self.nlist,
            rows,
        )

    # ---- ids: the core's map ---------------------------------------------------------------
    @property
    def _id_owner(self) -> Any:
        return self._core

    @property
    def _slot_count(self) -> int:
        return int(self._core.slot_count)

    @property
    def is_trained(self) -> bool:
        return self.centroids is not None

    @property
    def nbytes(self) -> int:
        return int(self._core.nbytes)  # the re-rank rows' bytes included

    @property
    def code_bytes(self) -> int:
        """Bytes of codes and factors per vector (bits * D / 8 + 12 or 20); metric='ip' also
        keeps 4 per vector beside them (<x - c, c>), IVF indexes 4 or 8 in RAM (shifts)."""
        return int(self._core.row_bytes)

    def _prepare(self, x: Any, name: str) -> tuple[np.ndarray, bool]:
        a, was_1d = _checks.as_float_rows(x, self.dim, name)
        return (normalize(a) if self.metric == "cosine" else a), was_1d

    def _set_centroids(self, centroids: np.ndarray) -> None:
        c = np.ascontiguousarray(centroids, dtype=np.float32)
        self._core.set_centroids(c)
        self.centroids = c
        # the keys rows are assigned by (ip / cosine), once per training, not per add
        norms = np.linalg.norm(c, axis=1, keepdims=True)
        unit = c / np.where(norms > 0, norms, 1.0)
        self._list_keys = np.ascontiguousarray(
            unit if self.metric == "cosine" else c, dtype=np.float32
        )

    def _lists(self, a: np.ndarray, threads: int | None) -> np.ndarray:
        """The list of each row (n,) int64: the nearest centroid by l2 (l2), by cosine (cosine:
        the cells of unit-length data; the search probes lists in the same order) or by inner
        product (ip). The row's code is centred on its list's centroid itself."""
        if self.nlist == 1:
            return np.zeros(a.shape[0], dtype=np.int64)
        assert self.centroids is not None
        if self.metric == "l2":
            return np.ascontiguousarray(_assign(a, self.centroids, threads)[1], dtype=np.int64)
        _, labels = _core.search(
            self._list_keys,
            self.nlist,
            a,
            a.shape[0],
            1,
            "float32",
            "ip",
            self.dim,
            threads=threads,
        )
        return np.ascontiguousarray(labels[:, 0], dtype=np.int64)

    @writes
    def add(
        self, x: Any, ids: Any = None, *, threads: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Encode and add vectors x (n, dim); returns their ids (n,) int64.

        ids      : (n,) unique non-negative ints not in the index, or None (sequential)
        threads  : encoding threads (None: all cores)
        progress : a bar over the rows encoded
        """
        threads = _checks.check_threads(threads)
        _progress.check(progress)
        a, _ = self._prepare(x, "x")
        new_ids = None if ids is None else _checks.as_ids(ids, a.shape[0])
        if not self.is_trained:
            if self.nlist > 1:
                raise ValueError(f"{type(self).__name__} is not trained; call train(x) first")
            self._train(a, seed=0, n_iter=0, threads=threads, progress=False)
        added = []
        with _progress.Progress(progress, a.shape[0], f"{type(self).__name__} add") as bar:
            for part in _progress.chunks(a.shape[0], bar):
                rows = np.ascontiguousarray(a[part])
                part_ids = None if new_ids is None else np.ascontiguousarray(new_ids[part])
                # codes and re-rank rows in one step: a full disk or a read-only file leaves
                # the index as before this chunk (RaBitQIndexCore::add)
                got = self._core.add(
                    rows, rows.shape[0], self._lists(rows, threads), part_ids, threads
                )
                added.append(got)
        out: np.ndarray = np.concatenate(added) if added else np.zeros(0, np.int64)
        return out

    @writes
    def remove(self, ids: Any) -> int:
        """Remove vectors by id; returns how many were removed (unknown ids are ignored).
        O(1) per id: the last row of its list moves into its place; the slot is reused."""
        return int(self._core.remove(_checks.as_id_list(ids)))

    def _train(
        self, a: np.ndarray, *, seed: int, n_iter: int, threads: int | None, progress: bool
    ) -> None:
        if self.nlist == 1:
            self._set_centroids(a.mean(axis=0, dtype=np.float64)[None, :])
            return
        # ip rows go to the list of largest <x, c> (_lists): k-means assigns them so too
        centroids, _ = coarse_quantizer(
            a,
            self.nlist,
            n_iter=n_iter,
            seed=seed,
            threads=threads,
            progress=progress,
            index_metric=self.metric,
        )
        self._set_centroids(centroids)

    def _search(
        self,
        queries: Any,
        k: int,
        nprobe: int,
        filter: Any,
        max_distance: Any,
        threads: int | None,
        rerank_k: int | None,
        eps0: float | None,
    ) -> SearchResult:
        k = _checks.check_k(k)
        threads = _checks.check_threads(threads)
        candidates = _check_rerank_k(rerank_k, k, self._store)
        bound = self.eps0 if eps0 is None else _check_eps0(eps0)
        q, was_1d = self._prepare(queries, "queries")
        allowed, offsets, allowed_mask = _checks.as_filter(filter, q.shape[0])
        # One C++ call: probes, fast-scan with bounds, extra-bit refinement, pruned re-rank, ids.
        dist, ids, stats = self._core.search(
            q,
            q.shape[0],
            k,
            nprobe,
            candidates,
            bound,
            allowed,
            offsets,
            allowed_mask,
            threads,
        )
        self.stats = dict(stats)
        return _result.finish(dist, ids, was_1d, max_distance)

    def reconstruct(self, ids: Any) -> np.ndarray:
        """Vectors of the given ids, float32 (len(ids), dim): the exact re-rank rows when the
        index keeps them, else the decoded codes (approximate). KeyError names missing ids."""
        a = _checks.as_id_list(ids)
        decoded, found = (self._core.decode if self._store is None else self._core.vectors)(a)
        if not found.all():
            raise KeyError(f"ids not in the index: {a[~found][:5].tolist()}")
        out: np.ndarray = decoded
        return out

    # ---- persistence ------------------------------------------------------------------------
    @reads
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = self._core.state()
        q = self.quantizer
        params: dict[str, Any] = {
            "dim": self.dim,
            "nlist": self.nlist,
            "bits": self.bits,
            "metric": self.metric,
            "rotation": q.rotation,
            "seed": q.seed,
            "query_bits": q.query_bits,
            "eps0": self.eps0,
            "next_id": int(state["next_id"]),
            "trained": self.is_trained,
            "format_version": RABITQ_FORMAT,
        }
        arrays = {
            "rotation_params": q.rotation_params,
            "ids": state["ids"],
            "codes": state["rows"],
            "lists": state["lists"],
            "slots": state["slots"],
        }
        if "dots" in state:
            arrays["centre_dots"] = state["dots"]
        if self.centroids is not None:
            arrays["centroids"] = self.centroids
        if self._store is not None:  # the rows as state copied them, with the codes
            params.update(self._store.params(state))
            arrays.update(self._store.arrays(state))
        return params, arrays

    @classmethod
    def _restore(cls, index: _RaBitQIndexBase, f: Fields) -> _RaBitQIndexBase:
        q = index.quantizer
        d = q.padded_dim
        shape = (ROUNDS, d) if q.rotation == "hadamard" else (d, d)
        params = np.array(f.array("rotation_params", np.float32, shape, finite=True))
        if q.rotation == "hadamard":
            if not np.isin(params, (-1.0, 1.0)).all():
                raise f.error("rotation_params", "Hadamard signs must be +1 or -1")
        else:  # orthogonal: lengths kept for a few random directions (O(D^2), not O(D^3))
            probe = np.random.default_rng(0).standard_normal((d, 4))
            lengths = np.linalg.norm(params.astype(np.float64) @ probe, axis=0)
            if not np.allclose(lengths, np.linalg.norm(probe, axis=0), rtol=1e-3):
                raise f.error("rotation_params", "the dense rotation is not orthogonal")
        if not np.array_equal(params, q.rotation_params):  # a file from another numpy stream
            q.rotation_params = params
            q._core = _core.RaBitQCore(q.dim, q.bits, q.query_bits, q.rotation, params)
        ids = f.ids("ids")
        live = int((ids >= 0).sum())
        codes = f.array("codes", np.uint8, (live, index.code_bytes))
        factors = np.ascontiguousarray(codes[:, q.row_bytes - 4 * (3 if q.bits == 1 else 5) :])
        factors = factors.view(np.float32)
        if not np.isfinite(factors).all() or (factors[:, [0, 2]] < 0).any():
            raise f.error("codes", "factors must be finite, norms and errors >= 0")
        f.bounded("codes", factors, index.dim)
        lists = f.array("lists", np.int64, (live,))
        slots = f.array("slots", np.int64, (live,))
        version = f.int("format_version", 1, 2**31, default=1)
        if version > RABITQ_FORMAT:
            raise f.error(
                "format_version",
                f"{version}: written by a newer simdex (this one reads 1..{RABITQ_FORMAT}); "
                "upgrade simdex",
            )
        if f.has("rerank"):
            index._store = f.rows_for(RerankStore.restore(f, index.dim, index.metric), ids.shape[0])
        index._make_core()  # the file's rotation, owning the re-rank rows
        if f.bool("trained"):
            centroids = f.array("centroids", np.float32, (index.nlist, index.dim), finite=True)
            index._set_centroids(np.array(f.bounded("centroids", centroids, index.dim)))
        elif live:
            raise f.error("trained", f"false, but the index holds {live} rows")
        dots = None
        if index.metric == "ip" and version >= 2:
            dots = f.array("centre_dots", np.float32, (live,), finite=True)
            dots = f.bounded("centre_dots", dots, 1)  # keeps every estimate finite
        elif index.metric == "ip" and index._store is not None and live:
            # version 1: the exact <x - c, c> from the rows the codes were made of
            if not ((slots >= 0) & (slots < ids.shape[0])).all():
                raise f.error("slots", f"slots must lie in [0, {ids.shape[0]})")
            if not ((lists >= 0) & (lists < index.nlist)).all():
                raise f.error("lists", f"lists must lie in [0, {index.nlist})")
            rows = np.ascontiguousarray(index._store.vectors(np.ascontiguousarray(slots)))
            dots = index._core.centre_dots(rows, np.ascontiguousarray(lists))
        index._core.restore(
            np.ascontiguousarray(ids),
            f.int("next_id", 0, 2**62),
            np.ascontiguousarray(codes),
            np.ascontiguousarray(lists),
            np.ascontiguousarray(slots),
            None if dots is None else np.ascontiguousarray(dots),
        )
        return index

    @staticmethod
    def _header(f: Fields) -> dict[str, Any]:
        return {
            "bits": f.int("bits", 1, 8),
            "metric": f.choice("metric", RABITQ_METRICS),
            "rotation": f.choice("rotation", ROTATIONS),
            "seed": f.int("seed", 0, 2**63 - 1),
            "query_bits": f.int("query_bits", 1, 8),
            "eps0": f.float("eps0", 0.0, 100.0),
        }

    def _repr_fields(self) -> str:
        rerank = None if self._store is None else (self._store.path or "memory")
        ivf = f"nlist={self.nlist}, " if self.kind == "ivf_rabitq" else ""
        return f"{ivf}bits={self.bits}, rerank={rerank!r}"


def _check_eps0(eps0: Any) -> float:
    if (
        isinstance(eps0, bool)
        or not isinstance(eps0, (int, float, np.floating))
        or not math.isfinite(eps0)
        or not 0 <= eps0 <= 100
    ):
        raise ValueError(f"eps0 must be a float in [0, 100]; got {eps0!r}")
    return float(eps0)


class RaBitQIndex(_RaBitQIndexBase):
    """Flat RaBitQ index: every code scanned (fast-scan over the sign planes, the extra bits
    for rows whose lower bound can still enter the selection), optional exact re-rank.

    dim        : vector dimension (<= 8192)
    bits       : 1..8 bits per dimension (codes: bits * D / 8 bytes + 12 or 20 bytes of
                 factors per vector, D = dim rounded up to 64; 'ip' adds 4: <x - c, c>)
    metric     : 'l2' (squared), 'ip' (1 - <q, x>), 'cosine' (1 - cos); every metric
                 estimates only <x - c, q - c> from the code (c: the centre), the rest exactly
    rerank     : None, 'memory' or a file path: exact rows for re-scoring rerank_k candidates;
                 candidates whose lower bound (estimate - eps0 * error) cannot beat the
                 current k-th exact distance are skipped (counted in `stats['pruned']`)
    overwrite  : allow rerank to name an existing non-empty file (it is emptied)
    rotation, seed, query_bits : as RaBitQ
    eps0       : default width of the bounds in estimator standard deviations (2.5: ~98.8%);
                 it decides which rows are refined (bits > 1) and which candidates the
                 re-rank skips: smaller is faster and misses more true neighbours

    The centre is the mean of the train() sample, or of the first add() when not trained.
    `stats` holds the counters of the last search: scanned, refined, candidates, reranked,
    pruned.
    """

    kind = "rabitq"

    def __init__(
        self,
        dim: int,
        *,
        bits: int = 1,
        metric: str = "l2",
        rerank: Any = None,
        overwrite: bool = False,
        rotation: str = "hadamard",
        seed: int = 0,
        query_bits: int | None = None,
        eps0: float = 2.5,
    ) -> None:
        self._setup(dim, 1, bits, metric, rerank, overwrite, rotation, seed, query_bits, eps0)

    @writes
    def train(self, x: Any) -> RaBitQIndex:
        """The centre: the mean of x (n, dim) (before the first add)."""
        _checks.check_untrained(self, self._slot_count)
        a, _ = self._prepare(x, "x")
        self._train(a, seed=0, n_iter=0, threads=None, progress=False)
        return self

    @searches
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        filter: Any = None,
        max_distance: Any = None,
        threads: int | None = None,
        rerank_k: int | None = None,
        eps0: float | None = None,
    ) -> SearchResult:
        """Approximate k nearest neighbours.

        queries      : (q, dim) or (dim,) floats
        filter       : int64 array of allowed ids, boolean mask indexed by id, or one per row
        max_distance : float or (q,) floats
        rerank_k     : candidates re-scored exactly (needs rerank=...; default max(100, 4 k))
        eps0         : bound width for this search (default: the index's)
        returns      : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64);
                       without re-rank the distances are the B-bit estimates
        """
        return self._search(queries, k, 1, filter, max_distance, threads, rerank_k, eps0)

    @classmethod
    def _from_state(cls, f: Fields) -> RaBitQIndex:
        if f.int("nlist", 1, 1) != 1:
            raise f.error("nlist", "a flat RaBitQ index has one list")
        index = f.build(cls, f.int("dim", 1, MAX_RABITQ_DIM), **cls._header(f))
        cls._restore(index, f)
        return index


class IVFRaBitQIndex(_RaBitQIndexBase):
    """IVF-RaBitQ: k-means lists, each vector encoded against its list's centroid, the
    nprobe closest lists scanned as RaBitQIndex scans its one list.

    nlist : number of lists (k-means clusters); other arguments as RaBitQIndex.
    """

    kind = "ivf_rabitq"

    def __init__(
        self,
        dim: int,
        nlist: int,
        *,
        bits: int = 1,
        metric: str = "l2",
        rerank: Any = None,
        overwrite: bool = False,
        rotation: str = "hadamard",
        seed: int = 0,
        query_bits: int | None = None,
        eps0: float = 2.5,
    ) -> None:
        nlist = _checks.check_positive_int(nlist, "nlist")
        if nlist > 1 << 20:
            raise ValueError(f"nlist must be <= {1 << 20}; got {nlist}")
        self._setup(dim, nlist, bits, metric, rerank, overwrite, rotation, seed, query_bits, eps0)

    @writes
    def train(
        self,
        x: Any,
        *,
        seed: int = 0,
        n_iter: int = 10,
        threads: int | None = None,
        progress: bool = False,
    ) -> IVFRaBitQIndex:
        """k-means on x (n, dim) (n_iter iterations, <= 256 points per list sampled); with
        metric='ip' a point joins the centroid of largest inner product, as rows do in add()."""
        threads = _checks.check_threads(threads)
        _checks.check_untrained(self, self._slot_count)
        a, _ = self._prepare(x, "x")
        self._train(a, seed=seed, n_iter=n_iter, threads=threads, progress=progress)
        return self

    @searches
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        nprobe: int | None = None,
        filter: Any = None,
        max_distance: Any = None,
        threads: int | None = None,
        rerank_k: int | None = None,
        eps0: float | None = None,
    ) -> SearchResult:
        """Approximate k nearest neighbours from the nprobe closest lists (default
        min(8, nlist)); other arguments as RaBitQIndex.search."""
        nprobe = (
            min(8, self.nlist) if nprobe is None else _checks.check_positive_int(nprobe, "nprobe")
        )
        if nprobe > self.nlist:
            raise ValueError(f"nprobe must be <= nlist = {self.nlist}; got {nprobe}")
        return self._search(queries, k, nprobe, filter, max_distance, threads, rerank_k, eps0)

    @classmethod
    def _from_state(cls, f: Fields) -> IVFRaBitQIndex:
        index = f.build(
            cls, f.int("dim", 1, MAX_RABITQ_DIM), f.int("nlist", 1, 1 << 20), **cls._header(f)
        )
        cls._restore(index, f)
        return index
