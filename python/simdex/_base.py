"""What every index shares: ids, filters, thresholds, results, persistence, pickling.

A subclass sets ``kind``, implements ``_params()`` / ``_arrays()`` / ``_from_state()`` for
persistence, and calls the helpers below from ``add`` / ``search`` / ``remove``.
Slots are positions in the index's storage; ``_ids[slot]`` is the user id (-1 = free slot).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np

from . import _checks, _format, kernels
from ._result import SearchResult


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
        """(slots,) uint8 mask of allowed slots from a filter (ids array or mask by id)."""
        allowed = _checks.as_filter(filter)
        if allowed is None:
            return None
        ids = self._ids
        if allowed.dtype == np.bool_:
            ok = (ids >= 0) & (ids < allowed.shape[0])
            mask = np.zeros(ids.shape[0], dtype=np.uint8)
            mask[ok] = allowed[ids[ok]]
            return mask
        return (np.isin(ids, allowed) & (ids >= 0)).astype(np.uint8)

    def _finish(self, distances: np.ndarray, slots: np.ndarray, was_1d: bool,
                max_distance: Any = None) -> SearchResult:
        """Map slots to user ids, apply max_distance, squeeze a 1-D query."""
        ids = np.where(slots >= 0, self._ids[np.maximum(slots, 0)], -1) if self._ids.size else np.full_like(slots, -1)
        thresholds = _checks.as_max_distance(max_distance, distances.shape[0])
        if thresholds is not None:
            far = distances > thresholds[:, None]
            distances = np.where(far, np.float32(np.inf), distances)
            ids = np.where(far, -1, ids)
        ids = ids.astype(np.int64, copy=False)
        distances = distances.astype(np.float32, copy=False)
        if was_1d:
            return SearchResult(distances[0], ids[0])
        return SearchResult(distances, ids)

    @staticmethod
    def _empty_result(nq: int, k: int, was_1d: bool) -> SearchResult:
        d = np.full((nq, k), np.inf, dtype=np.float32)
        i = np.full((nq, k), -1, dtype=np.int64)
        return SearchResult(d[0], i[0]) if was_1d else SearchResult(d, i)

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
        _format.save(path, self.kind, self._params(), self._arrays())

    def __reduce__(self) -> tuple:
        return (_format.loads, (_format.dumps(self.kind, self._params(), self._arrays()),))

    def _repr_fields(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._repr_fields()
        return (f"{type(self).__name__}(dim={self.dim}, metric={self.metric!r}"
                f"{', ' + extra if extra else ''}, n={len(self)}, simd={kernels.simd_level()!r})")
