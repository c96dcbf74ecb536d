"""FlatIndex: exact search over every stored vector (like FAISS IndexFlat)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, _core, _progress, _result, _storage
from ._base import CoreIndex
from ._checks import MAX_DIM, Metric, Storage
from ._format import Fields
from ._result import SearchResult
from .kernels import normalize


class FlatIndex(CoreIndex):
    """Exact k-NN index.

    dim     : vector dimension; for metric='hamming' the number of bits (a multiple of 8),
              and vectors are uint8 codes packed with numpy.packbits (dim / 8 bytes per row)
    metric  : 'l2' (squared), 'ip' (1 - <q, x>), 'cosine' (1 - cos), 'hamming'
    storage : 'float32', 'float16', 'bfloat16' or 'int8' (scalar quantization with
              per-dimension ranges from train() or the first add()); queries stay float32
    """

    kind = "flat"

    def __init__(self, dim: int, metric: Metric = "l2", *, storage: Storage = "float32") -> None:
        self.dim = _checks.check_dim(dim)
        self.metric = _checks.check_metric(metric)
        self.storage = _checks.check_choice(storage, "storage", _checks.STORAGES)
        if self.metric == "hamming":
            if storage != "float32":
                raise ValueError(
                    "metric='hamming' stores packed bit codes; storage must be left at its default"
                )
            if self.dim % 8:
                raise ValueError(
                    "for metric='hamming' dim is the number of bits and must be a multiple of 8; "
                    f"got {dim}"
                )
        self._lo: np.ndarray | None = None
        self._scale: np.ndarray | None = None
        self._core = _core.FlatCore(self._core_storage(), self.metric, self.dim)

    # ---- layout -----------------------------------------------------------------------
    def _row_width(self) -> int:
        return self.dim // 8 if self.metric == "hamming" else self.dim

    def _row_dtype(self) -> type:
        return np.uint8 if self.metric == "hamming" else _storage.ROW_DTYPES[self.storage]

    def _core_storage(self) -> str:
        return "bits" if self.metric == "hamming" else self.storage

    @property
    def is_trained(self) -> bool:
        return self.storage != "int8" or self._lo is not None

    @property
    def nbytes(self) -> int:
        extra = (
            0 if self._lo is None or self._scale is None else self._lo.nbytes + self._scale.nbytes
        )
        return int(self._core.nbytes + extra)

    def _prepare(self, x: Any, name: str) -> tuple[np.ndarray, bool]:
        if self.metric == "hamming":
            return _checks.as_codes(x, self.dim // 8, name)
        a, was_1d = _checks.as_float_rows(x, self.dim, name)
        if self.metric == "cosine":
            a = normalize(a)
        return a, was_1d

    # ---- building ---------------------------------------------------------------------
    def train(self, x: Any) -> FlatIndex:
        """Learn int8 ranges from sample vectors x (n, dim) before the first add; other
        storages need no training (a no-op)."""
        a, _ = self._prepare(x, "x")
        if self.storage == "int8":
            if len(self._core):
                raise ValueError(
                    "train() must come before the first add(): the int8 ranges of stored rows are "
                    "fixed"
                )
            self._set_ranges(*_storage.train_int8(a))
        return self

    def _set_ranges(self, lo: np.ndarray, scale: np.ndarray) -> None:
        self._core.set_ranges(lo, scale)
        self._lo, self._scale = lo, scale

    def add(
        self, x: Any, ids: Any = None, *, threads: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Add vectors x (n, dim) (or (n, dim/8) uint8 codes for hamming); returns their ids
        (n,) int64.

        ids      : (n,) unique non-negative ints not in the index, or None (sequential)
        threads  : encoding to float16/bfloat16/int8 runs in row chunks on this many threads.
        progress : a bar over the rows encoded (adding them is one copy)
        """
        threads = _checks.check_threads(threads)
        _progress.check(progress)
        a, _ = self._prepare(x, "x")
        new_ids = None if ids is None else _checks.as_ids(ids, a.shape[0])
        if self.storage == "int8" and self._lo is None:
            _storage.warn_small_int8_sample(a.shape[0], "FlatIndex")
            self._set_ranges(*_storage.train_int8(a))
        if self.metric == "hamming" or self.storage == "float32":
            added: np.ndarray = self._core.add(np.ascontiguousarray(a), new_ids)
            return added
        rows: np.ndarray = np.empty(a.shape, dtype=self._row_dtype())
        with _progress.Progress(progress, a.shape[0], "Flat add") as bar:
            for part in _progress.chunks(a.shape[0], bar):
                rows[part] = _storage.encode(
                    a[part], self.storage, self._lo, self._scale, threads=threads
                )
        added = self._core.add(rows, new_ids)
        return added

    def remove(self, ids: Any) -> int:
        """Remove vectors by id; returns how many were removed (unknown ids are ignored).
        O(1) per id: the last row moves into the freed slot."""
        return int(self._core.remove(_checks.as_id_list(ids)))

    # ---- search -----------------------------------------------------------------------
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        filter: Any = None,
        max_distance: Any = None,
        threads: int | None = None,
    ) -> SearchResult:
        """Exact k nearest neighbours.

        queries      : (q, dim) or (dim,) float32 (other float dtypes are converted with one copy);
                       uint8 codes (q, dim/8) for metric='hamming'
        k            : int >= 1
        filter       : int64 array of allowed ids, or boolean mask indexed by id, or a list
                       with one such filter per query row
        max_distance : float or (q,) floats; results farther than it are dropped (-1 / +inf)
        returns      : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64, -1 padded)
        """
        k = _checks.check_k(k)
        threads = _checks.check_threads(threads)
        q, was_1d = self._prepare(queries, "queries")
        allowed, offsets, allowed_mask = _checks.as_filter(filter, q.shape[0])
        dist, ids = self._core.search(q, q.shape[0], k, allowed, offsets, allowed_mask, threads)
        return _result.finish(dist, ids, was_1d, max_distance)

    # ---- persistence --------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = self._core.state()  # one consistent copy, taken under the core's read lock
        params = {
            "dim": self.dim,
            "metric": self.metric,
            "storage": self.storage,
            "next_id": int(state["next_id"]),
        }
        arrays = {
            "rows": state["rows"].view(self._row_dtype()).reshape(-1, self._row_width()),
            "ids": state["ids"],
        }
        if self._lo is not None:
            arrays["lo"], arrays["scale"] = self._lo, self._scale
        return params, arrays

    @classmethod
    def _from_state(cls, f: Fields) -> FlatIndex:
        index = f.build(
            cls,
            f.int("dim", 1, MAX_DIM),
            f.choice("metric", _checks.METRICS),
            storage=f.choice("storage", _checks.STORAGES),
        )
        ids = f.ids("ids")
        if (ids < 0).any():
            raise f.error("ids", "a flat index stores no free slots (every id must be >= 0)")
        rows = f.array("rows", index._row_dtype(), (ids.shape[0], index._row_width()))
        if index.metric != "hamming":
            f.finite_rows("rows", rows, index.storage)
        if index.storage == "int8" and index.metric != "hamming":
            ranges = f.optional_ranges("lo", "scale", index.dim, needed=ids.shape[0] > 0)
            if ranges is not None:  # an int8 index saved before its first add has none
                index._set_ranges(*ranges)
        index._core.restore(
            np.ascontiguousarray(rows), np.ascontiguousarray(ids), f.int("next_id", 0, 2**62, 0)
        )
        return index

    def _repr_fields(self) -> str:
        return f"storage={self.storage!r}"
