"""What every index shares: ids, filters, thresholds, results, range search, persistence,
pickling, and the reader-writer lock of indexes whose state is still kept in Python.

A subclass sets ``kind``, implements ``_params()`` / ``_arrays()`` / ``_from_state()`` for
persistence. FlatIndex and HNSWIndex keep their ids, rows and lock in one C++ object; the
others (PQ, IVF-PQ, LeanVec, Binary) keep ``_ids[slot]`` (the user id, -1 = free slot) here
and wrap add / remove / train in ``@writes`` and search in ``@reads`` (see docs/architecture.md).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any, Callable, ClassVar, TypeVar

import numpy as np

from . import _checks, _format, _result, kernels
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
    lock = index.__dict__.get("_rwlock")
    if lock is None:
        with _LOCK_GUARD:
            lock = index.__dict__.setdefault("_rwlock", _ReadWriteLock())
    return lock


def reads(method: F) -> F:
    """Run the method under the index's read lock (searches may run together)."""
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        lock = _index_lock(self)
        lock.acquire_read()
        try:
            return method(self, *args, **kwargs)
        finally:
            lock.release_read()
    return wrapper  # type: ignore[return-value]


def writes(method: F) -> F:
    """Run the method under the index's write lock (alone)."""
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        lock = _index_lock(self)
        lock.acquire_write()
        try:
            return method(self, *args, **kwargs)
        finally:
            lock.release_write()
    return wrapper  # type: ignore[return-value]


class Index:
    kind: ClassVar[str] = ""
    dim: int
    metric: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _format.register_kind(cls.kind, cls._from_state)

    # ---- ids ---------------------------------------------------------------------------
    def _init_ids(self) -> None:
        self._ids = np.zeros(0, dtype=np.int64)  # (slots,) user id per slot, -1 = free
        self._next_id = 0

    def __len__(self) -> int:
        return int(np.count_nonzero(self._ids >= 0))

    @property
    def ids(self) -> np.ndarray:
        """The live ids, int64 (n,), in slot order."""
        ids = self._ids
        return ids[ids >= 0].copy()

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, (int, np.integer)) or isinstance(id, bool):
            return False
        return bool(np.any(self._ids == int(id)))

    def _new_ids(self, ids: Any, n: int) -> np.ndarray:
        """Validate user ids for n new rows (or assign next sequential ids)."""
        if ids is None:
            new = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            clash = np.isin(new, self._ids)
            if clash.any():
                start = max(self._next_id, int(self._ids.max()) + 1)
                new = np.arange(start, start + n, dtype=np.int64)
        else:
            new = _checks.as_ids(ids, n)
            clash = np.isin(new, self._ids)
            if clash.any():
                raise ValueError(
                    f"ids already in the index: {new[clash][:5].tolist()}; remove them first or pass new ids"
                )
        if n:
            self._next_id = max(self._next_id, int(new.max()) + 1)
        return new

    def _slots_of(self, ids: Any) -> np.ndarray:
        """Slots holding the given ids (ids not present are ignored)."""
        a = np.asarray(ids)
        if a.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers; got dtype {a.dtype}")
        a = a.reshape(-1).astype(np.int64, copy=False)
        return np.nonzero(np.isin(self._ids, a) & (self._ids >= 0))[0]

    # ---- search helpers ----------------------------------------------------------------
    def _slot_mask(self, filter: Any) -> np.ndarray | None:
        """(slots,) uint8 mask of allowed slots from one filter (ids array or mask by id)."""
        allowed, offsets, by_id = _checks.as_filter(filter, 1)
        if allowed is None and by_id is None:
            return None
        if offsets is not None and offsets.shape[0] > 2:
            raise ValueError(f"{type(self).__name__} takes one filter for all queries; per-query "
                             "filters (a list) are supported by FlatIndex and HNSWIndex")
        ids = self._ids
        if by_id is not None:
            ok = (ids >= 0) & (ids < by_id.shape[0])
            mask = np.zeros(ids.shape[0], dtype=np.uint8)
            mask[ok] = by_id[ids[ok]]
            return mask
        return (np.isin(ids, allowed) & (ids >= 0)).astype(np.uint8)

    def _finish(self, distances: np.ndarray, slots: np.ndarray, was_1d: bool,
                max_distance: Any = None) -> SearchResult:
        """Map slots to user ids, then _result.finish (max_distance, 1-D squeeze)."""
        ids = np.where(slots >= 0, self._ids[np.maximum(slots, 0)], -1) if self._ids.size else np.full_like(slots, -1)
        return _result.finish(distances.astype(np.float32, copy=False), ids.astype(np.int64, copy=False),
                              was_1d, max_distance)

    @staticmethod
    def _empty_result(nq: int, k: int, was_1d: bool) -> SearchResult:
        d = np.full((nq, k), np.inf, dtype=np.float32)
        i = np.full((nq, k), -1, dtype=np.int64)
        return SearchResult(d[0], i[0]) if was_1d else SearchResult(d, i)

    def range_search(self, queries: Any, radius: Any, *, filter: Any = None,
                     threads: int | None = None, **params: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored vector within `radius` of each query (distance <= radius), as FAISS's
        range_search: (lims (q + 1,) int64, distances (total,) float32, ids (total,) int64);
        query i's results are distances[lims[i]:lims[i + 1]], ascending.

        radius : float, or (q,) floats (one threshold per query: relevance filtering)
        params : passed to search (ef, nprobe, rerank_k, ...)

        Searches with k doubling until every query has a result beyond its radius (or k
        covers the index): exact on exact indexes, as good as the search on approximate ones.
        """
        q = np.asarray(queries)
        was_1d = q.ndim == 1
        nq = 1 if was_1d else (q.shape[0] if q.ndim == 2 else -1)
        if nq < 1:
            raise ValueError(f"queries must have shape (q, dim) or (dim,); got shape {q.shape}")
        radii = _checks.as_max_distance(radius, nq)
        if radii is None:
            raise ValueError("radius must be a float or one float per query; got None")
        n = len(self)
        k = min(max(n, 1), 32)
        while True:
            dist, ids = self.search(queries, k, filter=filter, max_distance=radii, threads=threads, **params)
            dist, ids = np.atleast_2d(dist), np.atleast_2d(ids)
            if k >= n or not (ids[:, -1] >= 0).any():
                break
            k = min(4 * k, n)
        keep = ids >= 0
        lims = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=lims[1:])
        return lims, dist[keep].astype(np.float32), ids[keep].astype(np.int64)

    # ---- persistence -------------------------------------------------------------------
    def _params(self) -> dict:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def _from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> "Index":
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to one file (see simdex._format); load it with simdex.load."""
        _format.save(path, self.kind, *self._state())

    def __reduce__(self) -> tuple:
        return (_format.loads, (_format.dumps(self.kind, *self._state()),))

    @reads
    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(params, arrays) of one consistent moment (taken under the read lock)."""
        return self._params(), self._arrays()

    def _repr_fields(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._repr_fields()
        return (f"{type(self).__name__}(dim={self.dim}, metric={self.metric!r}"
                f"{', ' + extra if extra else ''}, n={len(self)}, simd={kernels.simd_level()!r})")
