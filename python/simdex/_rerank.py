"""The re-rank store: full-dimensional vectors for exact re-scoring, in RAM or in a
memory-mapped file, as float32, float16 or int8 (per-dimension ranges).

Two-stage search (BiDR, SVS, LeanVec): a compressed stage proposes candidates, these rows
re-score them exactly for the stored precision. Row i holds the vector of slot i as the
index sees it (unit length for cosine). The rows live in one C++ object,
simdex._core.RerankRows (cpp/index/rerank.hpp): it encodes float32 rows to the storage,
grows its RAM buffer or its file (mapped by itself), re-scores candidates with the one
Scorer, decodes rows for reconstruct(); the search pipelines take it as their re-rank
stage. This module checks arguments and keeps the persistence (_format.Fields).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _core
from ._format import Fields

DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.uint8}


class RerankStore:
    """Rows of full vectors by slot. `where` is 'memory' or the absolute path of a file that
    check_where has cleared (the file is emptied here: the index owns it). `core` is the C++
    RerankRows that the search pipelines take."""

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
        self._setup(dim, metric, storage, lo, scale)
        self.path: str | None = None if where == "memory" else where
        self.core = _core.RerankRows(storage, metric, dim, self.lo, self.scale, self.path)

    def _setup(
        self,
        dim: int,
        metric: str,
        storage: str,
        lo: np.ndarray | None,
        scale: np.ndarray | None,
    ) -> None:
        self.dim, self.metric, self.storage = dim, metric, storage
        self.dtype = np.dtype(DTYPES[storage])
        self.lo = None if lo is None else np.ascontiguousarray(lo, dtype=np.float32)
        self.scale = None if scale is None else np.ascontiguousarray(scale, dtype=np.float32)

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
        return len(self.core)

    @property
    def nbytes(self) -> int:
        """Bytes held in RAM (the ranges only for a memory-mapped file)."""
        return int(self.core.nbytes)

    def put(self, slots: np.ndarray, x: np.ndarray) -> None:
        """Store rows x (n, dim) float32 at the given slots (new slots may extend the store).
        A failure (full disk, read-only file: OSError; float16 overflow: ValueError) leaves
        the store as before."""
        self.core.put(
            np.ascontiguousarray(slots, dtype=np.int64), np.ascontiguousarray(x, dtype=np.float32)
        )

    def append(self, x: np.ndarray) -> None:
        """Rows x after the last one (stores not indexed by slot: token sets)."""
        self.core.append(np.ascontiguousarray(x, dtype=np.float32))

    def scoring(self) -> tuple[np.ndarray, int, str, np.ndarray | None, np.ndarray | None]:
        """(rows (n, dim) read-only view, n, storage, lo, scale) for C++ calls that take raw
        rows (the token re-rank); valid while the caller holds its index's lock."""
        data = self.core.view()
        return data, data.shape[0], self.storage, self.lo, self.scale

    def rescore(
        self, queries: np.ndarray, candidates: np.ndarray, k: int, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances of the candidate slots.

        queries    : (q, dim) float32 (unit length for cosine)
        candidates : (q, c) int64 slots, -1 = none
        returns    : distances (q, k) float32 ascending, slots (q, k) int64 (-1 padded)
        """
        return self.core.rescore(
            np.ascontiguousarray(queries, dtype=np.float32),
            np.ascontiguousarray(candidates, dtype=np.int64),
            k,
            threads=threads,
        )

    def vectors(self, slots: np.ndarray) -> np.ndarray:
        """Rows of the given slots decoded to float32 (n, dim)."""
        out: np.ndarray = self.core.vectors(np.ascontiguousarray(slots, dtype=np.int64).ravel())
        return out

    # ---- persistence: rows inside the index file ("memory"), or a side file that the index
    # file describes (rows, bytes, CRC-32) but never names: the caller names it at load time.
    def _key(self) -> str:
        return "rerank_vectors" if self.storage == "float32" else "secondary_rows"

    # `state`: what an index core's state() copied of these rows under its lock
    # (rerank_count, rerank_rows or rerank_crc32), so rows and codes are of one moment.
    def params(self, state: dict[str, Any] | None = None) -> dict[str, Any]:
        n = len(self.core) if state is None else int(state["rerank_count"])
        if self.path is None:
            return {"rerank": "memory", "rerank_rows": n}
        crc = self.core.crc32() if state is None else state["rerank_crc32"]
        return {
            "rerank": "file",
            "rerank_rows": n,
            "rerank_bytes": n * self.dim * self.dtype.itemsize,
            "rerank_crc32": int(crc),
            "rerank_name": os.path.basename(self.path),
        }

    def arrays(self, state: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        if self.lo is not None and self.scale is not None:
            arrays["secondary_lo"], arrays["secondary_scale"] = self.lo, self.scale
        if self.path is None:
            arrays[self._key()] = (
                self.core.copy()
                if state is None
                else state["rerank_rows"].view(self.dtype).reshape(-1, self.dim)
            )
        return arrays

    @classmethod
    def restore(cls, f: Fields, dim: int, metric: str, *, storage: str = "float32") -> RerankStore:
        """The store described by a loaded file (see _format.Fields)."""
        store = cls.__new__(cls)
        lo = scale = None
        if storage == "int8":
            lo, scale = f.ranges("secondary_lo", "secondary_scale", dim)
        store._setup(dim, metric, storage, lo, scale)
        where = f.params.get("rerank")
        if not isinstance(where, str):
            raise f.error("rerank", f"expected 'memory' or 'file', got {str(where)[:60]}")
        n = f.int("rerank_rows", 0, 2**40)
        store.core = _core.RerankRows(storage, metric, dim, store.lo, store.scale)
        if where == "memory":
            store.path = None
            rows = f.array(store._key(), store.dtype, (n, dim), finite=storage != "int8")
            if storage != "int8":
                f.bounded(store._key(), rows, dim)
            store.core.restore(np.ascontiguousarray(rows))
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
        store.core.open_file(store.path, n)
        if "rerank_crc32" in f.params:  # files written by simdex 0.1.0 recorded no checksum
            crc = f.int("rerank_crc32", 0, 2**32 - 1)
            if n and int(store.core.crc32()) != crc:
                raise ValueError(
                    f"rerank file {store.path!r} does not match the index (checksum "
                    "mismatch): it was changed, or belongs to another index"
                )
        if n and storage != "int8" and not np.isfinite(store.core.view()).all():
            raise ValueError(f"rerank file {store.path!r} holds NaN or infinite values")
        return store
