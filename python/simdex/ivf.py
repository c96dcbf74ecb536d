"""IVFPQIndex: inverted file (coarse k-means) + product quantization of residuals.

Stages: coarse search picks nprobe lists -> the residual codes of those lists are scored with
ADC tables (8 bits) or fast-scan (4 bits) in C++ -> optional exact re-ranking.

Tables. For l2 the distance to a row of list l with residual code r is
    ||q - c_l - r||^2 = ||q - c_l||^2 + sum_j ( ||r_j||^2 + 2 <c_l,j, r_j> ) - 2 sum_j <q_j, r_j>
so a per-list table T[l, j, c] = ||C_jc||^2 + 2 <c_l,j, C_jc> is precomputed at train time
(nlist x m x ksub floats, as FAISS's precomputed tables) and each query needs only its
-2 <q_j, C_jc> table once plus one add per probed list. For ip / cosine
1 - <q, c_l + r> = (1 - <q, c_l>) - sum_j <q_j, r_j>: one table per query, no list table.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import _checks, _core, _progress, _result
from ._checks import MAX_DIM, FloatMetric
from ._format import Fields
from ._rerank import RerankStore
from ._result import SearchResult
from .kernels import normalize
from .kmeans import coarse_quantizer
from .pq import PQ_METRICS, PQCoreIndex, ProductQuantizer, _check_rerank_k, _m4


class IVFPQIndex(PQCoreIndex):
    """IVF-PQ index.

    dim, m, nbits : as ProductQuantizer (applied to residuals x - coarse centroid)
    nlist         : coarse clusters (inverted lists)
    metric        : 'l2', 'ip', 'cosine'
    rerank        : None, 'memory' or a file path (exact re-scoring of rerank_k candidates)
    overwrite     : allow rerank to name an existing non-empty file (it is emptied)
    Layout (as saved): codes of all lists in one array sorted by list, offsets (nlist + 1,)
    in rows (8 bits) or in 32-row blocks (4 bits, each list padded to whole blocks).
    remove(ids) forgets the ids in O(1) (their rows are masked out of scans); storage is not
    compacted.

    The centroids, codebooks, list tables (after train), inverted lists, ids and re-rank rows
    live in one C++ object (simdex._core.IvfPqCore); train() fits them here and hands them
    over once.
    """

    kind = "ivfpq"

    def __init__(
        self,
        dim: int,
        nlist: int,
        m: int,
        *,
        nbits: int = 8,
        metric: FloatMetric = "l2",
        rerank: Any = None,
        overwrite: bool = False,
    ) -> None:
        self.metric = _checks.check_metric(metric, PQ_METRICS)
        self.nlist = _checks.check_positive_int(nlist, "nlist")
        self.pq = ProductQuantizer(dim, m, nbits=nbits)
        self.dim, self.m, self.nbits = self.pq.dim, self.pq.m, self.pq.nbits
        rerank = RerankStore.check_where(rerank, overwrite)
        self._store = None if rerank is None else RerankStore(self.dim, self.metric, rerank)
        self.centroids: np.ndarray | None = None  # (nlist, dim) float32
        self._list_tables: np.ndarray | None = None  # (nlist, m, ksub) float32, l2 only
        self._make_core()

    def _make_core(self) -> None:
        rows = None if self._store is None else self._store.core
        self._core = _core.IvfPqCore(self.dim, self.nlist, self.m, self.nbits, self.metric, rows)
        self._given: tuple[int, int, int] | None = None  # ids of the parameters the core holds
        self._train_lock = threading.Lock()

    def _sync(self) -> None:
        """Hand the trained parameters to the core when they changed (train(), or assigned
        directly); refused by the core once rows are stored."""
        books = self.pq.codebooks
        if self.centroids is None or books is None:
            return
        key = (id(self.centroids), id(books), id(self._list_tables))
        if key != self._given:
            tables = self._list_tables
            self._core.set_trained(
                np.ascontiguousarray(self.centroids, dtype=np.float32),
                np.ascontiguousarray(books, dtype=np.float32),
                None if tables is None else np.ascontiguousarray(tables, dtype=np.float32),
            )
            self._given = key

    @property
    def is_trained(self) -> bool:
        return self.centroids is not None

    def _check_nprobe(self, nprobe: Any) -> int:
        """Lists scanned per query: None -> min(8, nlist); 1 <= nprobe <= nlist."""
        probes = (
            min(8, self.nlist) if nprobe is None else _checks.check_positive_int(nprobe, "nprobe")
        )
        if probes > self.nlist:
            raise ValueError(f"nprobe must be <= nlist = {self.nlist}; got {probes}")
        return probes

    @property
    def nbytes(self) -> int:
        return int(self._core.nbytes + self.pq.nbytes)

    def _prepare(self, x: Any, name: str) -> tuple[np.ndarray, bool]:
        a, was_1d = _checks.as_float_rows(x, self.dim, name)
        return (normalize(a) if self.metric == "cosine" else a), was_1d

    # ---- training -----------------------------------------------------------------------
    def train(
        self,
        x: Any,
        *,
        seed: int = 0,
        n_iter: int = 10,
        threads: int | None = None,
        progress: bool = False,
    ) -> IVFPQIndex:
        """Coarse k-means (nlist clusters, n_iter iterations, <= 256 points per cluster: the
        FAISS IVF defaults; metric='ip' assigns points by largest inner product, as add()
        assigns rows), then PQ on the residuals (25 iterations per sub-space);
        progress: a bar for each of the two stages."""
        threads = _checks.check_threads(threads)
        with self._train_lock:
            _checks.check_untrained(self, len(self))
            a, _ = self._prepare(x, "x")
            # ip rows join the list of largest <x, c> (IvfPqCore::encode): k-means assigns so too
            centroids, labels = coarse_quantizer(
                a,
                self.nlist,
                n_iter=n_iter,
                seed=seed,
                threads=threads,
                progress=progress,
                index_metric=self.metric,
            )
            self.pq.fit(a - centroids[labels], seed=seed + 1, threads=threads, progress=progress)
            books = self.pq._require_trained()
            if self.metric == "l2":
                c = centroids.reshape(self.nlist, self.m, self.pq.dsub)
                table = 2.0 * np.einsum("lmd,mkd->lmk", c, books)
                table += np.einsum("mkd,mkd->mk", books, books)[None]
                self._list_tables = np.ascontiguousarray(table, dtype=np.float32)
            self.centroids = centroids
            self._sync()
        return self

    # ---- adding -------------------------------------------------------------------------
    def add(
        self, x: Any, ids: Any = None, *, threads: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Assign x (n, dim) to lists, encode residuals, add; returns the ids (n,) int64
        (progress: a bar over the rows assigned and encoded). One call into the core
        (assignment and encoding in C++)."""
        threads = _checks.check_threads(threads)
        _progress.check(progress)
        if not self.is_trained:
            raise ValueError("IVFPQIndex is not trained; call train(x) before add()")
        self._sync()
        a, _ = self._prepare(x, "x")
        new_ids = None if ids is None else _checks.as_ids(ids, a.shape[0])
        lists = codes = None
        if progress:  # assign and encode in chunks for the bar, then add them in one call
            lists = np.empty(a.shape[0], np.int64)
            codes = np.empty((a.shape[0], self.m), np.uint8)
            with _progress.Progress(progress, a.shape[0], "IVF-PQ add") as bar:
                for part in _progress.chunks(a.shape[0], bar):
                    lists[part], codes[part] = self._core.encode(a[part], threads)
        added: np.ndarray = self._core.add(a, lists, codes, new_ids, threads)
        return added

    # ---- search -------------------------------------------------------------------------
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
    ) -> SearchResult:
        """Approximate k nearest neighbours from the nprobe closest lists.

        queries      : (q, dim) or (dim,) floats
        k            : int >= 1
        nprobe       : lists scanned per query, 1 <= nprobe <= nlist (default min(8, nlist))
        filter       : int64 array of allowed ids, or boolean mask indexed by id, or a list
                       with one such filter per query row
        max_distance : float or (q,) floats
        rerank_k     : candidates re-scored exactly (needs rerank=...; default max(100, 4 k))
        returns      : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64)
        """
        k = _checks.check_k(k)
        nprobe = self._check_nprobe(nprobe)
        threads = _checks.check_threads(threads)
        candidates = _check_rerank_k(rerank_k, k, self._store)
        q, was_1d = self._prepare(queries, "queries")
        allowed, offsets, allowed_mask = _checks.as_filter(filter, q.shape[0])
        # One C++ call: coarse probes, residual tables, list scans, exact re-rank, slots to ids.
        dist, ids = self._core.search(
            q, q.shape[0], k, candidates, nprobe, allowed, offsets, allowed_mask, threads
        )
        return _result.finish(dist, ids, was_1d, max_distance)

    # ---- persistence --------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = self._core.state()  # one consistent copy, taken under the core's read lock
        params: dict[str, Any] = {
            "dim": self.dim,
            "nlist": self.nlist,
            "m": self.m,
            "nbits": self.nbits,
            "metric": self.metric,
            "next_id": int(state["next_id"]),
            "trained": self.is_trained,
        }
        shape = (-1, self.m) if self.nbits == 8 else (-1, _m4(self.m) // 2, 32)
        arrays = {
            "codes": state["codes"].reshape(shape),
            "entry_slots": state["entry_slots"],
            "offsets": state["offsets"],
            "ids": state["ids"],
            **self.pq._arrays(),
        }
        if self.centroids is not None:
            arrays["centroids"] = self.centroids
        if self._list_tables is not None:
            arrays["list_tables"] = self._list_tables
        if self._store is not None:
            params.update(self._store.params(state))
            arrays.update(self._store.arrays(state))
        return params, arrays

    @classmethod
    def _from_state(cls, f: Fields) -> IVFPQIndex:
        index = f.build(
            cls,
            f.int("dim", 1, MAX_DIM),
            f.int("nlist", 1, 1 << 20),
            f.int("m", 1, MAX_DIM),
            nbits=f.int("nbits", 4, 8),
            metric=f.choice("metric", PQ_METRICS),
        )
        index.pq._restore(f)
        ids = f.ids("ids")
        slots = ids.shape[0]
        offsets = f.array("offsets", np.int64, (index.nlist + 1,))
        if offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise f.error("offsets", "must start at 0 and never decrease")
        units = int(offsets[-1])
        code_shape = (units, index.m) if index.nbits == 8 else (units, _m4(index.m) // 2, 32)
        codes = f.array("codes", np.uint8, code_shape)
        entry = f.array("entry_slots", np.int64, (units if index.nbits == 8 else units * 32,))
        if entry.size and (entry.min() < -1 or entry.max() >= slots):
            raise f.error(
                "entry_slots",
                f"entries must be slots in [0, {slots}) (or -1 padding); "
                f"got {int(entry.min())}..{int(entry.max())}",
            )
        listed = np.bincount(entry[entry >= 0], minlength=slots)
        if (listed > 1).any() or (listed[ids >= 0] != 1).any():
            raise f.error("entry_slots", "every stored row must be in exactly one list")
        if f.bool("trained"):
            if index.pq.codebooks is None:
                raise f.error("pq_codebooks", "missing in a trained index")
            index.centroids = np.array(
                f.bounded(
                    "centroids",
                    f.array("centroids", np.float32, (index.nlist, index.dim), finite=True),
                    index.dim,
                )
            )
            shape = (index.nlist, index.m, index.pq.ksub)
            tables = (
                f.array("list_tables", np.float32, shape, finite=True)
                if index.metric == "l2"
                else f.optional_array("list_tables", np.float32, shape, finite=True)
            )
            # m terms of a table are summed per code: each must leave room for the others
            if tables is not None and tables.size:
                limit = float(np.finfo(np.float32).max) / (4 * index.m)
                if float(np.abs(tables).max()) > limit:
                    raise f.error("list_tables", f"values above {limit:.3g} overflow the sums")
            index._list_tables = None if tables is None else np.ascontiguousarray(tables)
        elif slots:
            raise f.error("trained", f"false, but the index holds {slots} rows")
        if f.has("rerank"):
            index._store = f.rows_for(RerankStore.restore(f, index.dim, index.metric), slots)
            index._make_core()
        index._sync()
        index._core.restore(
            np.ascontiguousarray(codes).reshape(-1),
            np.ascontiguousarray(entry),
            np.ascontiguousarray(offsets),
            np.ascontiguousarray(ids),
            f.int("next_id", 0, 2**62),
        )
        return index

    def _repr_fields(self) -> str:
        rerank = None if self._store is None else (self._store.path or "memory")
        return f"nlist={self.nlist}, m={self.m}, nbits={self.nbits}, rerank={rerank!r}"
