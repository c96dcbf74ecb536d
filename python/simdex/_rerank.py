"""Full-precision vectors for exact re-ranking, kept in RAM or in a memory-mapped file.

Two-stage search (BiDR, SVS): a compressed stage proposes candidates, this store re-scores
them exactly. Row i holds the float32 vector of slot i, as the index sees it (unit length
for cosine). With a path, only the compressed codes live in memory and the vectors stay in
a raw float32 file (n, dim) read through the page cache.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _core


class RerankStore:
    def __init__(self, dim: int, metric: str, where: str | os.PathLike) -> None:
        if metric not in ("l2", "ip", "cosine"):
            raise ValueError(f"re-ranking works on float metrics l2, ip, cosine; got {metric!r}")
        self.dim, self.metric = dim, metric
        self.path: str | None = None if where == "memory" else os.fspath(where)
        self._n = 0
        self._data = np.zeros((0, dim), dtype=np.float32)
        if self.path is not None:
            if os.path.isdir(self.path):
                raise ValueError(f"rerank path {self.path!r} is a directory; pass a file path")
            open(self.path, "wb").close()  # start empty: the index owns this file

    @staticmethod
    def check_where(where: Any) -> Any:
        if where is None or where == "memory" or isinstance(where, (str, os.PathLike)):
            return where
        raise TypeError(f"rerank must be None, 'memory' or a file path; got {type(where).__name__}")

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held in RAM (0 for a memory-mapped file)."""
        return 0 if self.path is not None else int(self._n * self.dim * 4)

    def _map(self) -> None:
        if self._n == 0:
            self._data = np.zeros((0, self.dim), dtype=np.float32)
        else:
            self._data = np.memmap(self.path, dtype=np.float32, mode="r+", shape=(self._n, self.dim))

    def put(self, slots: np.ndarray, x: np.ndarray) -> None:
        """Store float32 rows x (n, dim) at the given slots (new slots may extend the store)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        slots = np.asarray(slots, dtype=np.int64)
        if self.path is None and not self._data.flags.writeable:  # loaded with mmap=True
            self._data = np.array(self._data[: self._n])
        need = int(slots.max()) + 1 if slots.size else self._n
        if need > self._n:
            if self.path is None:
                if need > self._data.shape[0]:
                    grown = np.zeros((max(need, int(self._data.shape[0] * 1.5), 64), self.dim), np.float32)
                    grown[: self._n] = self._data[: self._n]
                    self._data = grown
            else:
                if isinstance(self._data, np.memmap):
                    self._data.flush()
                with open(self.path, "r+b") as fh:
                    fh.truncate(need * self.dim * 4)
            self._n = need
            if self.path is not None:
                self._map()
        self._data[slots] = x

    def append(self, x: np.ndarray) -> None:
        self.put(np.arange(self._n, self._n + x.shape[0]), x)

    def rescore(self, queries: np.ndarray, candidates: np.ndarray, k: int,
                threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances of the candidate slots.

        queries    : (q, dim) float32 (unit length for cosine)
        candidates : (q, c) int64 slots, -1 = none
        returns    : distances (q, k) float32 ascending, slots (q, k) int64 (-1 padded)
        """
        candidates = np.ascontiguousarray(candidates, dtype=np.int64)
        data = self._data[: self._n]
        if self._n == 0:
            data = np.zeros((0, self.dim), np.float32)
        return _core.rerank(np.ascontiguousarray(data) if self.path is None else data, self._n,
                            queries, queries.shape[0], candidates, candidates.shape[1], k,
                            "float32", self.metric, self.dim, threads=threads)

    def vectors(self, slots: np.ndarray) -> np.ndarray:
        return np.asarray(self._data[slots])

    # ---- persistence: vectors inside the index file ("memory") or a reference to the file
    def params(self) -> dict:
        return {"rerank": "memory" if self.path is None else self.path, "rerank_rows": self._n}

    def arrays(self) -> dict[str, np.ndarray]:
        if self.path is not None:
            if isinstance(self._data, np.memmap):
                self._data.flush()
            return {}
        return {"rerank_vectors": self._data[: self._n]}

    @classmethod
    def restore(cls, dim: int, metric: str, params: dict, arrays: dict[str, np.ndarray]) -> "RerankStore":
        store = cls.__new__(cls)
        store.dim, store.metric = dim, metric
        where, n = params["rerank"], int(params["rerank_rows"])
        store._n = n
        if where == "memory":
            store.path = None
            data = arrays["rerank_vectors"]
            if data.shape != (n, dim):
                raise ValueError(f"rerank vectors have shape {data.shape}, expected {(n, dim)}")
            store._data = data
        else:
            store.path = where
            expected = n * dim * 4
            size = os.path.getsize(where) if os.path.exists(where) else -1
            if size != expected:
                raise ValueError(f"rerank file {where!r} has {size} bytes, expected {expected} ({n} x {dim} float32)")
            store._map()
        return store
