"""Dataset files and recall."""

from __future__ import annotations

import numpy as np
import pytest

import simdex as sx


def test_fvecs_ivecs_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 13)).astype(np.float32)
    i = rng.integers(0, 1000, (5, 4)).astype(np.int32)
    sx.io.write_fvecs(tmp_path / "a.fvecs", x)
    sx.io.write_ivecs(tmp_path / "a.ivecs", i)
    np.testing.assert_array_equal(sx.io.read_fvecs(tmp_path / "a.fvecs"), x)
    np.testing.assert_array_equal(sx.io.read_ivecs(tmp_path / "a.ivecs"), i)
    np.testing.assert_array_equal(sx.io.read_fvecs(tmp_path / "a.fvecs", count=3), x[:3])


def test_bvecs_and_truncated_files(tmp_path):
    rows = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw = np.concatenate([np.full((3, 4), 0, np.uint8), rows], axis=1)
    raw[:, :4] = np.array([4], dtype=np.int32).view(np.uint8)
    (tmp_path / "b.bvecs").write_bytes(raw.tobytes())
    np.testing.assert_array_equal(sx.io.read_bvecs(tmp_path / "b.bvecs"), rows)
    (tmp_path / "bad.fvecs").write_bytes(raw.tobytes()[:-3])
    with pytest.raises(ValueError):
        sx.io.read_fvecs(tmp_path / "bad.fvecs")


def test_load_ann_benchmarks(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    train = rng.standard_normal((50, 8)).astype(np.float32)
    test = rng.standard_normal((4, 8)).astype(np.float32)
    truth = sx.knn(test, train, 5, "cosine")
    path = tmp_path / "tiny-angular.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["distance"] = "angular"
        f["train"], f["test"] = train, test
        f["neighbors"], f["distances"] = truth.ids.astype(np.int32), truth.distances
        f["test_ood"] = test[:2]
    ds = sx.io.load_ann_benchmarks(path)
    assert ds.metric == "cosine" and ds.train.shape == (50, 8) and ds.neighbors.dtype == np.int64
    assert "test_ood" in ds.extra
    assert sx.recall_at_k(sx.knn(ds.test, ds.train, 5, ds.metric).ids, ds.neighbors, 5) == 1.0
    with h5py.File(tmp_path / "broken.hdf5", "w") as f:
        f["train"] = train
    with pytest.raises(ValueError, match="missing"):
        sx.io.load_ann_benchmarks(tmp_path / "broken.hdf5")


def test_recall_at_k():
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 9, 1], [-1, -1, 4]])
    assert sx.recall_at_k(found, truth, 3) == pytest.approx(3 / 6)
    assert sx.recall_at_k(truth, truth, 2) == 1.0
    with pytest.raises(ValueError):
        sx.recall_at_k(found, truth, 4)
