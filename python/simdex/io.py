"""Datasets: .fvecs/.ivecs/.bvecs files, ann-benchmarks HDF5 files, recall."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np


class Dataset(NamedTuple):
    """An ann-benchmarks dataset: train (n, d), test (q, d), neighbors (q, K) int64,
    distances (q, K) float32, metric ('l2', 'cosine', 'ip' or 'hamming'), extra (other arrays)."""

    train: np.ndarray
    test: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray
    metric: str
    extra: dict[str, Any]


_ANN_METRICS = {
    "euclidean": "l2",
    "angular": "cosine",
    "hamming": "hamming",
    "jaccard": "jaccard",
    "dot": "ip",
    "ip": "ip",
}


def load_ann_benchmarks(path: str | os.PathLike[str]) -> Dataset:
    """Read an ann-benchmarks HDF5 file (needs h5py: pip install simdex[hdf5]).

    Datasets beyond train/test/neighbors/distances (e.g. test_ood, learn_ood) are in .extra.
    """
    try:
        import h5py  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError("reading HDF5 needs h5py: pip install 'simdex[hdf5]'") from None
    with h5py.File(os.fspath(path), "r") as f:
        missing = [name for name in ("train", "test", "neighbors") if name not in f]
        if missing:
            raise ValueError(f"{path} is not an ann-benchmarks file: missing datasets {missing}")
        distance = f.attrs.get("distance", "euclidean")
        if isinstance(distance, bytes):
            distance = distance.decode()
        metric = _ANN_METRICS.get(str(distance), str(distance))
        train = np.ascontiguousarray(f["train"][:], dtype=np.float32)
        test = np.ascontiguousarray(f["test"][:], dtype=np.float32)
        neighbors = f["neighbors"][:].astype(np.int64)
        dist = (
            f["distances"][:].astype(np.float32)
            if "distances" in f
            else np.zeros(neighbors.shape, np.float32)
        )
        extra = {
            name: f[name][:]
            for name in f
            if name not in ("train", "test", "neighbors", "distances")
        }
    return Dataset(train, test, neighbors, dist, metric, extra)


def _read_vecs(path: str | os.PathLike[str], dtype: Any, count: int | None) -> np.ndarray:
    raw = np.fromfile(os.fspath(path), dtype=np.uint8)
    if raw.size == 0:
        return np.zeros((0, 0), dtype=dtype)
    if raw.size < 4:
        raise ValueError(f"{path}: truncated ({raw.size} bytes)")
    d = int(raw[:4].view(np.int32)[0])
    item = np.dtype(dtype).itemsize
    row = 4 + d * item
    if d <= 0 or raw.size % row:
        raise ValueError(
            f"{path}: size {raw.size} is not a multiple of the row size {row} (dim {d})"
        )
    rows = raw.reshape(-1, row)
    if count is not None:
        rows = rows[:count]
    dims = rows[:, :4].copy().view(np.int32).reshape(-1)
    if (dims != d).any():
        raise ValueError(f"{path}: rows have different dimensions (first {d})")
    out: np.ndarray = np.ascontiguousarray(rows[:, 4:]).view(dtype).reshape(-1, d)
    return out


def read_fvecs(path: str | os.PathLike[str], count: int | None = None) -> np.ndarray:
    """(n, d) float32 from a .fvecs file (each row: int32 d, then d float32)."""
    return _read_vecs(path, np.float32, count)


def read_ivecs(path: str | os.PathLike[str], count: int | None = None) -> np.ndarray:
    """(n, d) int32 from a .ivecs file."""
    return _read_vecs(path, np.int32, count)


def read_bvecs(path: str | os.PathLike[str], count: int | None = None) -> np.ndarray:
    """(n, d) uint8 from a .bvecs file."""
    return _read_vecs(path, np.uint8, count)


def _write_vecs(path: str | os.PathLike[str], x: np.ndarray, dtype: Any) -> None:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array; got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=dtype)
    out = np.empty((a.shape[0], 4 + a.shape[1] * a.itemsize), dtype=np.uint8)
    out[:, :4] = np.full((a.shape[0], 1), a.shape[1], dtype=np.int32).view(np.uint8)
    out[:, 4:] = a.view(np.uint8).reshape(a.shape[0], -1)
    out.tofile(os.fspath(path))


def write_fvecs(path: str | os.PathLike[str], x: np.ndarray) -> None:
    _write_vecs(path, x, np.float32)


def write_ivecs(path: str | os.PathLike[str], x: np.ndarray) -> None:
    _write_vecs(path, x, np.int32)


def recall_at_k(found_ids: Any, true_ids: Any, k: int) -> float:
    """Mean fraction of the true top-k found in the first k returned ids.

    found_ids : (q, >= k) int ids returned by a search (-1 = missing)
    true_ids  : (q, >= k) int ids of the exact neighbours
    """
    found = np.asarray(found_ids)
    truth = np.asarray(true_ids)
    if found.ndim == 1:
        found, truth = found[None], truth[None]
    if found.shape[0] != truth.shape[0]:
        raise ValueError(
            f"found_ids and true_ids must have the same number of rows; got {found.shape} and "
            f"{truth.shape}"
        )
    if found.shape[1] < k or truth.shape[1] < k:
        raise ValueError(f"need at least k={k} columns; got {found.shape} and {truth.shape}")
    f, t = found[:, :k], truth[:, :k]
    hits = sum(np.intersect1d(f[i][f[i] >= 0], t[i]).size for i in range(f.shape[0]))
    return hits / float(t.size)
