"""The re-rank store: full-dimensional vectors for exact re-scoring, in RAM or in a
memory-mapped file, as float32, float16 or int8 (per-dimension ranges).

Two-stage search (BiDR, SVS, LeanVec): a compressed stage proposes candidates, this store
re-scores them exactly for the stored precision (simdex._core.rerank, or inside the C++
pipeline of LeanVecIndex). Row i holds the vector of slot i as the index sees it (unit
length for cosine). With a path, only the compressed codes live in memory and the rows stay
in a raw (n, dim) file read through the page cache.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Literal

import numpy as np

from . import _core, _storage
from ._format import Fields

DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.uint8}


class RerankStore:
    """Rows of full vectors by slot. `where` is 'memory' or the absolute path of a file that
    check_where has cleared (the file is emptied here: the index owns it)."""

    def __init__(
        self,
        dim: int,
        metric: str,
        where: str,
        *,
        storage: str = "float32",
        lo: np.ndarray | None = None,
        scale: np.ndarray | None = None,
    ) -> None:
        if metric not in ("l2", "ip", "cosine"):
            raise ValueError(f"re-ranking works on float metrics l2, ip, cosine; got {metric!r}")
        if storage not in DTYPES:
            raise ValueError(f"re-rank storage must be one of {sorted(DTYPES)}; got {storage!r}")
        if (storage == "int8") != (lo is not None and scale is not None):
            raise ValueError("int8 re-rank rows need trained ranges (lo, scale), and only they do")
        self.dim, self.metric, self.storage = dim, metric, storage
        self.dtype = np.dtype(DTYPES[storage])
        self.lo, self.scale = lo, scale
        self.path: str | None = None if where == "memory" else where
        self._n = 0
        self._data: np.ndarray = np.zeros((0, dim), dtype=self.dtype)
        if self.path is not None:
            open(self.path, "wb").close()  # start empty: the index owns this file

    @staticmethod
    def check_where(where: Any, overwrite: bool = False, name: str = "rerank") -> str | None:
        """None, 'memory' or a path -> None, 'memory' or the absolute path. An existing
        non-empty file is refused unless overwrite=True (it may hold another index's rows)."""
        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be True or False; got {type(overwrite).__name__}")
        if where is None or where == "memory":
            return None if where is None else "memory"
        if not isinstance(where, (str, os.PathLike)):
            raise TypeError(
                f"{name} must be None, 'memory' or a file path; got {type(where).__name__}"
            )
        path = os.path.abspath(os.fspath(where))
        if os.path.isdir(path):
            raise ValueError(f"{name} path {path!r} is a directory; pass a file path")
        if not overwrite and os.path.exists(path) and os.path.getsize(path) > 0:
            raise FileExistsError(
                f"{name} file {path!r} exists and is not empty (it may hold another index's "
                "vectors); "
                "pass overwrite=True to replace it, or load the index that owns it with "
                "simdex.load(index_path, rerank=...)"
            )
        return path

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held in RAM (the ranges only for a memory-mapped file)."""
        ranges = 0 if self.lo is None or self.scale is None else self.lo.nbytes + self.scale.nbytes
        return ranges + (0 if self.path is not None else self._n * self.dim * self.dtype.itemsize)

    def _map(self) -> None:
        if self._n == 0:
            self._data = np.zeros((0, self.dim), dtype=self.dtype)
        else:
            assert self.path is not None
            mode: Literal["r+", "r"] = (
                "r+" if os.access(self.path, os.W_OK) else "r"
            )  # read-only: search only
            self._data = np.memmap(
                self.path, dtype=self.dtype.type, mode=mode, shape=(self._n, self.dim)
            )

    def put(self, slots: np.ndarray, x: np.ndarray) -> None:
        """Store rows x (n, dim) float32 at the given slots (new slots may extend the store)."""
        if self.path is not None and not os.access(self.path, os.W_OK):
            raise PermissionError(
                f"rerank file {self.path!r} is read-only: the index can search "
                "but not add; load it with a writable copy to add vectors"
            )
        rows = np.ascontiguousarray(x, dtype=np.float32)
        if self.storage != "float32":
            rows = _storage.encode(rows, self.storage, self.lo, self.scale)
        slots = np.asarray(slots, dtype=np.int64)
        if self.path is None and not self._data.flags.writeable:  # loaded with mmap=True
            self._data = np.array(self._data[: self._n])
        need = int(slots.max()) + 1 if slots.size else self._n
        if need > self._n:
            if self.path is None:
                if need > self._data.shape[0]:
                    grown = np.zeros(
                        (max(need, int(self._data.shape[0] * 1.5), 64), self.dim), self.dtype
                    )
                    grown[: self._n] = self._data[: self._n]
                    self._data = grown
            else:
                if isinstance(self._data, np.memmap):
                    self._data.flush()
                with open(self.path, "r+b") as fh:
                    fh.truncate(need * self.dim * self.dtype.itemsize)
            self._n = need
            if self.path is not None:
                self._map()
        self._data[slots] = rows

    def append(self, x: np.ndarray) -> None:
        """Rows x after the last one (stores not indexed by slot: token sets)."""
        self.put(np.arange(self._n, self._n + x.shape[0]), x)

    def scoring(self) -> tuple[np.ndarray, int, str, np.ndarray | None, np.ndarray | None]:
        """(rows (n, dim) C-contiguous, n, storage, lo, scale) for the C++ re-scoring."""
        data = self._data[: self._n] if self._n else np.zeros((0, self.dim), self.dtype)
        if self.path is None:
            data = np.ascontiguousarray(data)
        return data, self._n, self.storage, self.lo, self.scale

    def rescore(
        self, queries: np.ndarray, candidates: np.ndarray, k: int, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances of the candidate slots.

        queries    : (q, dim) float32 (unit length for cosine)
        candidates : (q, c) int64 slots, -1 = none
        returns    : distances (q, k) float32 ascending, slots (q, k) int64 (-1 padded)
        """
        candidates = np.ascontiguousarray(candidates, dtype=np.int64)
        data, n, storage, lo, scale = self.scoring()
        return _core.rerank(
            data,
            n,
            queries,
            queries.shape[0],
            candidates,
            candidates.shape[1],
            k,
            storage,
            self.metric,
            self.dim,
            lo,
            scale,
            threads=threads,
        )

    def vectors(self, slots: np.ndarray) -> np.ndarray:
        """Rows of the given slots decoded to float32."""
        rows = np.asarray(self._data[slots])
        return (
            rows
            if self.storage == "float32"
            else _storage.decode(rows, self.storage, self.lo, self.scale)
        )

    # ---- persistence: rows inside the index file ("memory"), or a side file that the index
    # file describes (rows, bytes, CRC-32) but never names: the caller names it at load time.
    def _key(self) -> str:
        return "rerank_vectors" if self.storage == "float32" else "secondary_rows"

    def params(self) -> dict[str, Any]:
        if self.path is None:
            return {"rerank": "memory", "rerank_rows": self._n}
        if isinstance(self._data, np.memmap):
            self._data.flush()
        rows = self._data[: self._n]
        return {
            "rerank": "file",
            "rerank_rows": self._n,
            "rerank_bytes": int(rows.nbytes),
            "rerank_crc32": zlib.crc32(np.ascontiguousarray(rows).data.cast("B")) if self._n else 0,
            "rerank_name": os.path.basename(self.path),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        if self.lo is not None and self.scale is not None:
            arrays["secondary_lo"], arrays["secondary_scale"] = self.lo, self.scale
        if self.path is None:
            arrays[self._key()] = self._data[: self._n]
        return arrays

    @classmethod
    def restore(cls, f: Fields, dim: int, metric: str, *, storage: str = "float32") -> RerankStore:
        """The store described by a loaded file (see _format.Fields)."""
        store = cls.__new__(cls)
        store.dim, store.metric, store.storage = dim, metric, storage
        store.dtype = np.dtype(DTYPES[storage])
        store.lo = store.scale = None
        if storage == "int8":
            store.lo, store.scale = f.ranges("secondary_lo", "secondary_scale", dim)
        where = f.params.get("rerank")
        if not isinstance(where, str):
            raise f.error("rerank", f"expected 'memory' or 'file', got {str(where)[:60]}")
        n = store._n = f.int("rerank_rows", 0, 2**40)
        if where == "memory":
            store.path = None
            store._data = f.array(store._key(), store.dtype, (n, dim), finite=storage != "int8")
            if storage != "int8":
                f.bounded(store._key(), store._data, dim)
            return store
        # 'file' (or, in files written by simdex 0.1.0, the path it had: never opened)
        name = f.params.get("rerank_name", where if where != "file" else "")
        path = f.use_rerank(
            f"this index keeps its re-rank vectors in a side file "
            f"({str(name)[-80:]!r} when saved): name it with "
            "simdex.load(path, rerank='...')"
        )
        store.path = os.path.abspath(path)
        expected = n * dim * store.dtype.itemsize
        size = os.path.getsize(store.path) if os.path.isfile(store.path) else -1
        if size != expected:
            raise ValueError(
                f"rerank file {store.path!r} has {size} bytes; the index expects {expected} "
                f"({n} x {dim} {store.dtype})"
            )
        store._map()
        if "rerank_crc32" in f.params:  # files written by simdex 0.1.0 recorded no checksum
            crc = f.int("rerank_crc32", 0, 2**32 - 1)
            if n and zlib.crc32(np.ascontiguousarray(store._data).data.cast("B")) != crc:
                raise ValueError(
                    f"rerank file {store.path!r} does not match the index (checksum "
                    "mismatch): it was changed, or belongs to another index"
                )
        if n and storage != "int8" and not np.isfinite(store._data).all():
            raise ValueError(f"rerank file {store.path!r} holds NaN or infinite values")
        return store
