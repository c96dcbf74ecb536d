"""FlatIndex: the full index protocol against brute force."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import simdex as sx
from conftest import brute_force, clustered

STORAGE_TOL = {"float32": 1e-4, "float16": 2e-3, "bfloat16": 2e-2, "int8": 3e-2}


@pytest.mark.parametrize("storage", list(STORAGE_TOL))
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_search_matches_brute_force(simd_level, storage, metric):
    x = clustered(500, 33, seed=1)
    q = clustered(9, 33, seed=2)
    index = sx.FlatIndex(33, metric, storage=storage)
    index.add(x)
    D, I = index.search(q, 10)
    assert D.shape == (9, 10) and I.dtype == np.int64 and D.dtype == np.float32
    ref = brute_force(q, x, metric)
    scale = max(1.0, np.abs(ref).max())
    # distances of the returned ids, recomputed exactly, agree with the returned distances
    np.testing.assert_allclose(np.take_along_axis(ref, I, 1), D, atol=STORAGE_TOL[storage] * scale)
    # and the k-th distance is (almost) the true k-th distance
    np.testing.assert_allclose(D[:, -1], np.sort(ref, 1)[:, 9], atol=2 * STORAGE_TOL[storage] * scale)
    assert np.all(np.diff(D, axis=1) >= 0)
    if storage == "float32":
        assert sx.recall_at_k(I, np.argsort(ref, 1), 10) >= 0.99


def test_hamming_index(simd_level):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (400, 16), dtype=np.uint8)
    q = rng.integers(0, 256, (5, 16), dtype=np.uint8)
    index = sx.FlatIndex(128, "hamming")
    index.add(codes)
    D, I = index.search(q, 4)
    ref = np.unpackbits(q[:, None] ^ codes[None], axis=-1).sum(-1)
    np.testing.assert_array_equal(D, np.sort(ref, 1)[:, :4])
    np.testing.assert_array_equal(np.take_along_axis(ref, I, 1), D)


def test_user_ids_filter_and_max_distance():
    x = clustered(200, 8, seed=3)
    ids = np.arange(1000, 1200, dtype=np.int64)[::-1].copy()
    index = sx.FlatIndex(8)
    assert (index.add(x, ids=ids) == ids).all()
    D, I = index.search(x[:3], 5)
    assert (I[:, 0] == ids[:3]).all()
    allowed = ids[::10]
    D, I = index.search(x[:20], 5, filter=allowed)
    assert np.isin(I[I >= 0], allowed).all()
    ref = brute_force(x[:20], x, "l2")[:, ::10]
    np.testing.assert_allclose(D, np.sort(ref, 1)[:, :5], rtol=1e-4, atol=1e-4)
    mask = np.zeros(1200, dtype=bool)
    mask[ids[:7]] = True
    D, I = index.search(x[:4], 10, filter=mask)
    assert np.isin(I[I >= 0], ids[:7]).all() and (I[:, 7:] == -1).all()
    # max_distance: scalar and per query
    D, I = index.search(x[:4], 10, max_distance=np.float32(1.0))
    assert ((D <= 1.0) | (I == -1)).all() and (np.isinf(D) == (I == -1)).all()
    thresholds = np.array([0.0, 1.0, 5.0, 100.0])
    D, I = index.search(x[:4], 10, max_distance=thresholds)
    assert (D <= thresholds[:, None]).sum() == (I >= 0).sum()
    with pytest.raises(ValueError):
        index.search(x[:4], 10, max_distance=np.ones(3))


def test_k_larger_than_n_and_1d_query():
    index = sx.FlatIndex(4, "ip")
    index.add(np.eye(4, dtype=np.float32))
    D, I = index.search(np.array([1, 0, 0, 0], np.float64), 6)
    assert D.shape == (6,) and I.shape == (6,)
    assert I[0] == 0 and (I[4:] == -1).all() and np.isinf(D[4:]).all()
    empty = sx.FlatIndex(4)
    D, I = empty.search(np.ones(4, np.float32), 3)
    assert (I == -1).all()


def test_remove_and_len():
    x = clustered(100, 8, seed=4)
    index = sx.FlatIndex(8)
    index.add(x)
    assert len(index) == 100
    assert index.remove([3, 5, 999]) == 2
    assert len(index) == 98
    D, I = index.search(x, 1)
    assert not np.isin(I, [3, 5]).any()
    index.add(x[:2], ids=[3, 5])
    assert len(index) == 100


@pytest.mark.parametrize("storage", list(STORAGE_TOL))
def test_save_load_mmap_pickle(tmp_path, storage):
    x = clustered(300, 17, seed=5)
    index = sx.FlatIndex(17, "cosine", storage=storage)
    index.add(x, ids=np.arange(300) * 3)
    D, I = index.search(x[:7], 5)
    path = tmp_path / "flat.sdx"
    index.save(path)
    for loaded in (sx.load(path), sx.load(path, mmap=True), pickle.loads(pickle.dumps(index))):
        assert repr(loaded) == repr(index) and len(loaded) == 300
        D2, I2 = loaded.search(x[:7], 5)
        np.testing.assert_array_equal(I, I2)
        np.testing.assert_array_equal(D, D2)
    mapped = sx.load(path, mmap=True)
    mapped.add(x[:2], ids=[10_000, 10_001])  # copy-on-write: the file is untouched
    assert len(mapped) == 302 and len(sx.load(path)) == 300


def test_int8_constant_columns_and_nbytes():
    x = clustered(50, 6, seed=6)
    x[:, 2] = 0.5  # a constant column must not divide by a zero range
    index = sx.FlatIndex(6, storage="int8")
    index.train(x)
    index.add(x)
    D, I = index.search(x[:5], 1)
    assert (I[:, 0] == np.arange(5)).all() and np.isfinite(D).all()
    assert np.allclose(index.reconstruct([0, 1])[:, 2], 0.5)
    assert index.nbytes >= 50 * 6 + 50 * 8
    f32 = sx.FlatIndex(6)
    f32.add(x)
    assert f32.nbytes >= 50 * 6 * 4


def test_repr_is_one_line():
    index = sx.FlatIndex(384, "cosine", storage="float16")
    text = repr(index)
    assert "\n" not in text and "dim=384" in text and "float16" in text and "n=0" in text


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda ix, x: ix.add(x[:, :5]), ValueError),
        (lambda ix, x: ix.add(x.astype(np.int64)), TypeError),
        (lambda ix, x: ix.add(x, ids=np.arange(3)), ValueError),
        (lambda ix, x: ix.add(x, ids=np.zeros(len(x), np.int64)), ValueError),
        (lambda ix, x: ix.add(x, ids=np.arange(len(x)).astype(np.float64)), TypeError),
        (lambda ix, x: ix.add(np.where(x > 0, np.inf, x)), ValueError),
        (lambda ix, x: ix.add(x[:0]), ValueError),
        (lambda ix, x: ix.search(x, 0), ValueError),
        (lambda ix, x: ix.search(x, k=-1), ValueError),
        (lambda ix, x: ix.search(x[None], 1), ValueError),
        (lambda ix, x: ix.search(x, 1, filter=np.ones((2, 2))), ValueError),
        (lambda ix, x: ix.search(x, 1, filter=np.ones(3, np.float32)), TypeError),
        (lambda ix, x: ix.search(x, 1, threads=-2), ValueError),
        (lambda ix, x: ix.search("abc", 1), TypeError),
    ],
)
def test_bad_input(call, exc):
    x = clustered(10, 8, seed=7)
    index = sx.FlatIndex(8)
    index.add(x)
    with pytest.raises(exc):
        call(index, x)
    assert len(index) == 10  # a rejected call changes nothing


def test_bad_constructor():
    with pytest.raises(ValueError):
        sx.FlatIndex(0)
    with pytest.raises(ValueError):
        sx.FlatIndex(8, "cosine", storage="int4")
    with pytest.raises(ValueError):
        sx.FlatIndex(12, "hamming")
    with pytest.raises(TypeError):
        sx.FlatIndex("8")


def test_duplicate_ids_across_adds():
    index = sx.FlatIndex(2)
    index.add(np.ones((2, 2), np.float32), ids=[1, 2])
    with pytest.raises(ValueError, match="already"):
        index.add(np.ones((1, 2), np.float32), ids=[2])


@pytest.mark.parametrize("storage", ["float16", "bfloat16", "int8"])
def test_threaded_encoding_matches_single_thread(storage):
    x = clustered(20_000, 12, seed=8)
    one, two = sx.FlatIndex(12, storage=storage), sx.FlatIndex(12, storage=storage)
    one.train(x), two.train(x)
    one.add(x, threads=1)
    two.add(x, threads=2)
    np.testing.assert_array_equal(one._core.state()["rows"], two._core.state()["rows"])
