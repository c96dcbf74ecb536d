"""FlatIndex: exact search over every stored vector (like FAISS IndexFlat)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, _core, _storage
from ._base import Index
from ._result import SearchResult
from .kernels import normalize


class FlatIndex(Index):
    """Exact k-NN index.

    dim     : vector dimension; for metric='hamming' the number of bits (a multiple of 8),
              and vectors are uint8 codes packed with numpy.packbits (dim / 8 bytes per row)
    metric  : 'l2' (squared), 'ip' (1 - <q, x>), 'cosine' (1 - cos), 'hamming'
    storage : 'float32', 'float16', 'bfloat16' or 'int8' (scalar quantization with
              per-dimension ranges from train() or the first add()); queries stay float32
    """

    kind = "flat"

    def __init__(self, dim: int, metric: str = "l2", *, storage: str = "float32") -> None:
        self.dim = _checks.check_positive_int(dim, "dim")
        self.metric = _checks.check_metric(metric)
        self.storage = _checks.check_choice(storage, "storage", _checks.STORAGES)
        if self.metric == "hamming":
            if storage != "float32":
                raise ValueError("metric='hamming' stores packed bit codes; storage must be left at its default")
            if self.dim % 8:
                raise ValueError(f"for metric='hamming' dim is the number of bits and must be a multiple of 8; got {dim}")
        self._init_ids()
        self._n = 0
        self._rows = np.zeros((0, self._row_width()), dtype=self._row_dtype())
        self._lo: np.ndarray | None = None
        self._scale: np.ndarray | None = None

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
        extra = 0 if self._lo is None else self._lo.nbytes + self._scale.nbytes
        return int(self._rows[: self._n].nbytes + self._ids.nbytes + extra)

    def _prepare(self, x: Any, name: str) -> tuple[np.ndarray, bool]:
        if self.metric == "hamming":
            return _checks.as_codes(x, self.dim // 8, name)
        a, was_1d = _checks.as_float_rows(x, self.dim, name)
        if self.metric == "cosine":
            a = normalize(a)
        return a, was_1d

    # ---- building ---------------------------------------------------------------------
    def train(self, x: Any) -> "FlatIndex":
        """Learn int8 ranges from sample vectors x (n, dim); other storages need no training."""
        a, _ = self._prepare(x, "x")
        if self.storage == "int8":
            self._lo, self._scale = _storage.train_int8(a)
        return self

    def add(self, x: Any, ids: Any = None, *, threads: int | None = None) -> np.ndarray:
        """Add vectors x (n, dim) (or (n, dim/8) uint8 codes for hamming); returns their ids (n,) int64.

        threads: encoding to float16/bfloat16/int8 runs in row chunks on this many threads.
        """
        threads = _checks.check_threads(threads)
        a, _ = self._prepare(x, "x")
        new_ids = self._new_ids(ids, a.shape[0])
        if self.storage == "int8" and self._lo is None:
            self._lo, self._scale = _storage.train_int8(a)
        rows = a if self.metric == "hamming" else _storage.encode(a, self.storage, self._lo, self._scale, threads=threads)
        self._reserve(self._n + rows.shape[0])
        self._rows[self._n: self._n + rows.shape[0]] = rows
        self._ids = np.concatenate([self._ids, new_ids])
        self._n += rows.shape[0]
        return new_ids

    def _reserve(self, n: int) -> None:
        if n <= self._rows.shape[0] and self._rows.flags.writeable:
            return
        capacity = max(n, int(self._rows.shape[0] * 1.5), 64)
        grown = np.empty((capacity, self._row_width()), dtype=self._row_dtype())
        grown[: self._n] = self._rows[: self._n]
        self._rows = grown

    def remove(self, ids: Any) -> int:
        """Remove vectors by id; returns how many were removed (unknown ids are ignored)."""
        slots = self._slots_of(ids)
        if slots.size == 0:
            return 0
        keep = np.ones(self._n, dtype=bool)
        keep[slots] = False
        self._rows = np.ascontiguousarray(self._rows[: self._n][keep])
        self._ids = self._ids[keep]
        self._n = int(keep.sum())
        return int(slots.size)

    # ---- search -----------------------------------------------------------------------
    def search(self, queries: Any, k: int = 10, *, filter: Any = None, max_distance: Any = None,
               threads: int | None = None) -> SearchResult:
        """Exact k nearest neighbours.

        queries      : (q, dim) or (dim,) float32 (other float dtypes are converted with one copy);
                       uint8 codes (q, dim/8) for metric='hamming'
        k            : int >= 1
        filter       : int64 array of allowed ids, or boolean mask indexed by id
        max_distance : float or (q,) floats; results farther than it are dropped (-1 / +inf)
        returns      : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64, -1 padded)
        """
        k = _checks.check_k(k)
        threads = _checks.check_threads(threads)
        q, was_1d = self._prepare(queries, "queries")
        mask = self._slot_mask(filter)
        if self._n == 0:
            return self._finish(*self._empty_result(q.shape[0], k, False), was_1d, max_distance)
        dist, slots = _core.search(self._rows[: self._n], self._n, q, q.shape[0], k,
                                   self._core_storage(), self.metric, self.dim, self._lo,
                                   self._scale, mask, threads)
        return self._finish(dist, slots, was_1d, max_distance)

    def reconstruct(self, ids: Any) -> np.ndarray:
        """Stored vectors for the given ids, decoded to float32 (codes for hamming): (len(ids), dim)."""
        a = np.asarray(ids, dtype=np.int64).reshape(-1)
        order = np.argsort(self._ids)
        pos = np.searchsorted(self._ids, a, sorter=order)
        pos = np.minimum(pos, max(len(order) - 1, 0))
        if self._n == 0 or not np.array_equal(self._ids[order[pos]], a):
            missing = a if self._n == 0 else a[self._ids[order[pos]] != a]
            raise KeyError(f"ids not in the index: {missing[:5].tolist()}")
        rows = self._rows[order[pos]]
        if self.metric == "hamming":
            return rows
        return _storage.decode(rows, self.storage, self._lo, self._scale)

    # ---- persistence --------------------------------------------------------------------
    def _params(self) -> dict:
        return {"dim": self.dim, "metric": self.metric, "storage": self.storage,
                "next_id": self._next_id}

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"rows": self._rows[: self._n], "ids": self._ids}
        if self._lo is not None:
            arrays["lo"], arrays["scale"] = self._lo, self._scale
        return arrays

    @classmethod
    def _from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> "FlatIndex":
        index = cls(params["dim"], params["metric"], storage=params["storage"])
        rows, ids = arrays["rows"], arrays["ids"]
        if rows.ndim != 2 or rows.shape != (ids.shape[0], index._row_width()) or rows.dtype != index._row_dtype():
            raise ValueError(f"flat index file: rows {rows.shape} {rows.dtype} do not match the header")
        index._rows, index._ids, index._n = rows, ids, rows.shape[0]
        index._next_id = int(params.get("next_id", 0))
        if "lo" in arrays:
            index._lo, index._scale = arrays["lo"], arrays["scale"]
        return index

    def _repr_fields(self) -> str:
        return f"storage={self.storage!r}"
