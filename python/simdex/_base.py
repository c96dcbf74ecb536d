"""What every index shares: ids, filters, thresholds, results, range search, persistence,
pickling, and the reader-writer lock of indexes whose state is still kept in Python.

A subclass sets ``kind``, implements ``_params()`` / ``_arrays()`` / ``_from_state()`` for
persistence. FlatIndex, HNSWIndex, PQIndex and IVFPQIndex (CoreIndex) keep their ids, rows
and lock in one C++ object; the others (LeanVec, Binary) keep their ids in a C++ IdTable
(``self._idt``) and wrap add / remove / train in ``@writes`` and search in ``@searches``
(see docs/architecture.md).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import numpy as np

from . import _checks, _core, _format, _result, _storage, kernels
from ._result import SearchResult

F = TypeVar("F", bound=Callable[..., Any])
_LOCK_GUARD = threading.Lock()


class _ReadWriteLock:
    """Any number of readers or one writer; a waiting writer blocks new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


def _index_lock(index: Any) -> _ReadWriteLock:
    lock: _ReadWriteLock | None = index.__dict__.get("_rwlock")
    if lock is None:
        with _LOCK_GUARD:
            lock = index.__dict__.setdefault("_rwlock", _ReadWriteLock())
    assert lock is not None
    return lock


def _locked(method: F, write: bool) -> F:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        lock = _index_lock(self)
        (lock.acquire_write if write else lock.acquire_read)()
        try:
            return method(self, *args, **kwargs)
        finally:
            (lock.release_write if write else lock.release_read)()

    return wrapper  # type: ignore[return-value]


def reads(method: F) -> F:
    """Run the method under the index's read lock (searches may run together)."""
    return _locked(method, False)


def writes(method: F) -> F:
    """Run the method under the index's write lock (alone)."""
    return _locked(method, True)


def searches(method: F) -> F:
    """A search under the read lock that also takes one filter per query row (a list):
    the rows are searched one by one with their own filter (and max_distance), in one read."""

    @functools.wraps(method)
    def per_row(self: Any, queries: Any, k: Any = 10, **kwargs: Any) -> Any:
        filters = kwargs.get("filter")
        if not _checks.is_filter_list(filters):
            return method(self, queries, k, **kwargs)
        assert filters is not None
        q = np.asarray(queries)
        if q.ndim != 2 or q.shape[0] != len(filters):
            raise ValueError(
                f"a list of filters needs one filter per query row: expected "
                f"{q.shape[0] if q.ndim == 2 else 1} query rows, got {len(filters)} filters"
            )
        limits = _checks.as_max_distance(kwargs.get("max_distance"), q.shape[0])
        parts = [
            method(
                self,
                q[i : i + 1],
                k,
                **{
                    **kwargs,
                    "filter": filters[i],
                    "max_distance": None if limits is None else float(limits[i]),
                },
            )
            for i in range(q.shape[0])
        ]
        return SearchResult(
            np.concatenate([p.distances for p in parts]), np.concatenate([p.ids for p in parts])
        )

    return reads(cast(F, per_row))


class Index:
    kind: ClassVar[str] = ""
    dim: int
    metric: str

    if TYPE_CHECKING:  # what every index implements (declared for type checkers only)

        def add(self, x: Any, ids: Any = None, *, threads: int | None = None) -> np.ndarray: ...

        def remove(self, ids: Any) -> int: ...

        def train(self, x: Any) -> Any: ...

        @property
        def is_trained(self) -> bool: ...

        @property
        def nbytes(self) -> int: ...

        def search(
            self,
            queries: Any,
            k: int = 10,
            *,
            filter: Any = None,
            max_distance: Any = None,
            threads: int | None = None,
        ) -> SearchResult: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _format.register_kind(cls.kind, cls._from_state)

    # ---- ids (indexes laid out in Python: LeanVec, Binary) --------------------------------
    # The id <-> slot map is a C++ IdTable (hash map): every helper costs O(its argument),
    # never O(n). reuse_slots: removed slots are reused by later adds (else they stay dead
    # and scans mask them).
    def _init_ids(self, *, reuse_slots: bool) -> None:
        self._idt = _core.IdTable()
        self._reuse_slots = reuse_slots

    @property
    def _id_owner(self) -> Any:
        """The C++ object that maps ids (IdTable here, the index core for CoreIndex)."""
        return self._idt

    def __len__(self) -> int:
        return len(self._id_owner)

    @property
    def ids(self) -> np.ndarray:
        """The live ids, int64 (n,), in slot order."""
        ids: np.ndarray = self._id_owner.ids()
        return ids

    def __contains__(self, id: object) -> bool:
        return (
            isinstance(id, (int, np.integer))
            and not isinstance(id, bool)
            and int(id) in self._id_owner
        )

    @property
    def _slot_count(self) -> int:
        return int(self._idt.slot_count)

    def _bind_ids(self, ids: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Check user ids for n new rows (or assign sequential ones) and give them slots:
        (ids (n,), slots (n,)). Call it last before storing the rows: nothing is bound when
        the ids clash."""
        new = None if ids is None else _checks.as_ids(ids, n)
        return self._idt.add(new, n, self._reuse_slots)

    def _unbind_ids(self, ids: Any) -> np.ndarray:
        """Forget ids (unknown ones are ignored); returns the slots they held."""
        return self._idt.remove(_checks.as_id_list(ids), self._reuse_slots)

    def _slot_mask(self, filter: Any) -> np.ndarray | None:
        """(slots,) uint8 mask of live slots allowed by one filter (ids array or mask by id),
        or of every live slot; None when every slot is live and there is no filter."""
        allowed, offsets, by_id = _checks.as_filter(filter, 1)
        mask: np.ndarray | None = self._idt.scan_mask(allowed, offsets, by_id)
        return mask

    def _allowed_slots(self, filter: Any) -> np.ndarray | None:
        """Slots of the live ids one filter allows, int64 (for inner graphs keyed by slot)."""
        allowed, offsets, by_id = _checks.as_filter(filter, 1)
        if allowed is None and by_id is None:
            return None
        if by_id is not None:
            allowed = np.flatnonzero(by_id).astype(np.int64)
        assert allowed is not None
        slots: np.ndarray = self._idt.slots_of(allowed)
        return slots

    @reads
    def reconstruct(self, ids: Any) -> np.ndarray:
        """Stored full vectors of the given ids from the re-rank store, float32 (len(ids), dim)
        (unit length for cosine); needs rerank (KeyError names ids not in the index)."""
        a = _checks.as_id_list(ids)
        store = getattr(self, "_store", None)
        if store is None:
            raise ValueError(
                f"{type(self).__name__} keeps only compressed codes; build it with "
                "rerank='memory' (or a file) to reconstruct vectors"
            )
        slots = self._idt.slots_of(a)
        if slots.size != a.size:
            missing = a[~np.isin(a, self._idt.ids_of(slots))]
            raise KeyError(f"ids not in the index: {missing[:5].tolist()}")
        rows: np.ndarray = store.vectors(slots)
        return rows

    def _ids_state(self) -> tuple[np.ndarray, int]:
        """(user id per slot, -1 = free or removed; next sequential id) for saving."""
        ids, next_id = self._idt.state()
        return ids, int(next_id)

    def _restore_ids(self, ids: np.ndarray, next_id: int, what: str) -> None:
        if not isinstance(ids, np.ndarray) or ids.dtype != np.int64 or ids.ndim != 1:
            raise ValueError(f"{what} index file: ids must be a 1-D int64 array")
        self._idt.restore(np.ascontiguousarray(ids), int(next_id), self._reuse_slots)

    @staticmethod
    def _empty_result(nq: int, k: int, was_1d: bool, max_distance: Any = None) -> SearchResult:
        """No result for any query (+inf / -1), finished like any result (max_distance checked)."""
        return _result.finish(
            np.full((nq, k), np.inf, dtype=np.float32),
            np.full((nq, k), -1, dtype=np.int64),
            was_1d,
            max_distance,
        )

    def _range_queries(self, queries: Any) -> tuple[Any, int]:
        """(the queries as search takes them, how many) for range_search."""
        q = np.asarray(queries)
        nq = 1 if q.ndim == 1 else (q.shape[0] if q.ndim == 2 else -1)
        if nq < 1:
            raise ValueError(f"queries must have shape (q, dim) or (dim,); got shape {q.shape}")
        return queries, nq

    def _range_params(self, k: int) -> dict[str, Any]:
        """Search parameters range_search adds for a given k (none by default)."""
        return {}

    def range_search(
        self,
        queries: Any,
        radius: Any,
        *,
        filter: Any = None,
        threads: int | None = None,
        **params: Any,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored vector within `radius` of each query (distance <= radius), as FAISS's
        range_search: (lims (q + 1,) int64, distances (total,) float32, ids (total,) int64);
        query i's results are distances[lims[i]:lims[i + 1]], ascending.

        radius : float, or (q,) floats (one threshold per query: relevance filtering)
        params : passed to search (ef, nprobe, rerank_k, ...)

        Searches with k doubling until every query has a result beyond its radius (or k
        covers the index): exact on exact indexes, as good as the search on approximate ones.
        """
        queries, nq = self._range_queries(queries)
        radii = _checks.as_max_distance(radius, nq)
        if radii is None:
            raise ValueError("radius must be a float or one float per query; got None")
        n = len(self)
        k = min(max(n, 1), 32)
        while True:
            dist, ids = self.search(
                queries,
                k,
                filter=filter,
                max_distance=radii,
                threads=threads,
                **params,
                **self._range_params(k),
            )
            dist, ids = np.atleast_2d(dist), np.atleast_2d(ids)
            if k >= n or not (ids[:, -1] >= 0).any():
                break
            k = min(4 * k, n)
        keep = ids >= 0
        lims = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=lims[1:])
        return lims, dist[keep].astype(np.float32), ids[keep].astype(np.int64)

    # ---- persistence -------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def _from_state(cls, f: _format.Fields) -> Index:
        raise NotImplementedError

    def save(self, path: Any) -> None:
        """Write the index to one file (a path, replaced atomically, or a binary file object);
        load it with simdex.load. Re-rank vectors kept in a side file stay there: the index
        file records their size and checksum, and simdex.load(path, rerank=side_file) reopens
        them."""
        _format.save(path, self.kind, *self._state())

    def __reduce__(self) -> tuple[Any, ...]:
        # A pickle is trusted as code anyway: it carries the side file's path (an index file never
        # does).
        store = getattr(self, "_store", None)
        side_file = None if store is None else store.path
        return (_format.loads, (_format.dumps(self.kind, *self._state()), side_file))

    @reads
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(params, arrays) of one consistent moment (taken under the read lock)."""
        return self._params(), self._arrays()

    def _repr_fields(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._repr_fields()
        return (
            f"{type(self).__name__}(dim={self.dim}, metric={self.metric!r}"
            f"{', ' + extra if extra else ''}, n={len(self)}, simd={kernels.simd_level()!r})"
        )


class CoreIndex(Index):
    """An index whose ids, rows and lock live in one C++ core, ``self._core`` (FlatCore,
    HnswGraph, PqCore, IvfPqCore): every operation is one call into it."""

    storage: str
    _core: Any
    _lo: np.ndarray | None
    _scale: np.ndarray | None

    @property
    def _id_owner(self) -> Any:
        return self._core

    def reconstruct(self, ids: Any) -> np.ndarray:
        """Stored vectors for the given ids, decoded to float32 (codes for hamming):
        (len(ids), dim).

        Raises KeyError naming ids that are not in the index."""
        a = _checks.as_id_list(ids)
        rows: np.ndarray
        found: np.ndarray
        rows, found = self._core.rows(a)
        if not found.all():
            raise KeyError(f"ids not in the index: {a[~found][:5].tolist()}")
        if self.metric == "hamming":
            return rows
        return _storage.decode(
            rows.view(_storage.ROW_DTYPES[self.storage]), self.storage, self._lo, self._scale
        )
