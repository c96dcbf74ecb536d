"""IVFPQIndex: exhaustive probing equals ADC over the index's own reconstruction, recall with
re-ranking, filters, removal, persistence, bad input, every SIMD level."""

import pickle

import numpy as np
import pytest

import simdex as sx

LEVELS = sx.kernels.available_levels()


@pytest.fixture(params=LEVELS)
def level(request):
    with sx.kernels.force_simd(request.param):
        yield request.param


def clustered(n, d, seed=0, centers=32):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d)) * 2.0
    return (c[rng.integers(0, centers, n)] + rng.standard_normal((n, d))).astype(np.float32)


def reconstruction(index):
    """Every stored row as the index sees it: coarse centroid + decoded residual, by slot."""
    from conftest import unpack_blocks

    state = index._core.state()  # the saved (contiguous) form of the lists
    codes, slots, offsets = state["codes"], state["entry_slots"], state["offsets"]
    units = np.diff(offsets)
    if index.nbits == 8:
        codes = codes.reshape(-1, index.m)
        lists = np.repeat(np.arange(index.nlist), units)
    else:
        blocks = codes.reshape(-1, (index.m + 3) // 4 * 2, 32)
        codes = unpack_blocks(blocks, blocks.shape[0] * 32, index.m)
        lists = np.repeat(np.arange(index.nlist), units * 32)
        keep = slots >= 0
        codes, slots, lists = codes[keep], slots[keep], lists[keep]
    out = np.zeros((index._core.slot_count, index.dim), np.float64)
    out[slots] = index.centroids[lists].astype(np.float64) + index.pq._decode_raw(codes)
    return out


@pytest.fixture(scope="module")
def data():
    return clustered(3000, 32, seed=1), clustered(6, 32, seed=2)


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("nbits", [8, 4])
def test_full_probe_equals_exhaustive_adc(level, data, metric, nbits):
    x, q = data
    index = sx.IVFPQIndex(32, 16, 8, nbits=nbits, metric=metric)
    index.train(x, n_iter=8)
    index.add(x[:1700])
    index.add(x[1700:])
    qs = sx.kernels.normalize(q) if metric == "cosine" else q
    recon = reconstruction(index)
    if metric == "l2":
        exact = ((qs[:, None].astype(np.float64) - recon[None]) ** 2).sum(-1)
    else:
        exact = 1.0 - qs.astype(np.float64) @ recon.T
    dist, ids = index.search(q, 10, nprobe=16)
    got = np.take_along_axis(exact, ids, 1)
    if nbits == 8:
        np.testing.assert_allclose(dist, np.sort(exact, 1)[:, :10], rtol=1e-4, atol=2e-3)
        np.testing.assert_allclose(dist, got, rtol=1e-4, atol=2e-3)
    else:
        # fast-scan: per-list uint8 tables; each entry is off by at most half a step
        # (step = largest table range / 255), m entries per distance
        scale = np.abs(exact).max()
        tol = 8 * 0.5 * (scale / 255.0) * 4 + 1e-3
        assert np.abs(dist - got).max() <= tol
        assert (got.max(1) <= np.sort(exact, 1)[:, 9] + 2 * tol).all()


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_coarse_lists_trained_as_rows_are_assigned(data, metric):
    """ip: coarse lists from inner-product k-means (a point joins the centroid of largest
    <x, c>), as add() assigns rows; l2 / cosine from l2 k-means. Every ip row sits in the list
    of its largest <x, c> (float64 reference)."""
    from simdex.kmeans import kmeans

    x, _ = data
    index = sx.IVFPQIndex(32, 16, 8, nbits=4, metric=metric).train(x, n_iter=6, seed=2)
    a = sx.kernels.normalize(x) if metric == "cosine" else x
    expected, _ = kmeans(a, 16, n_iter=6, seed=2, max_samples=256 * 16,
                         metric="ip" if metric == "ip" else "l2")
    np.testing.assert_array_equal(index.centroids, expected)
    if metric != "ip":
        return
    lists, _ = index._core.encode(x, 1)
    dots = x.astype(np.float64) @ index.centroids.T.astype(np.float64)
    top2 = np.sort(dots, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4 * np.abs(top2[:, 1]).max()  # float32 near-ties
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(lists[clear], dots.argmax(1)[clear])


@pytest.fixture(scope="module")
def trained():
    x = clustered(8000, 32, seed=3, centers=100)
    q = clustered(40, 32, seed=4, centers=100)
    index = sx.IVFPQIndex(32, 32, 16, rerank="memory")
    index.train(x, n_iter=10)
    index.add(x)
    return x, q, index


def test_more_probes_better_recall_and_rerank(level, tmp_path, trained):
    x, q, index = trained
    truth = sx.knn(q, x, 10)
    low = sx.recall_at_k(index.search(q, 10, nprobe=1, rerank_k=10).ids, truth.ids, 10)
    high = sx.recall_at_k(index.search(q, 10, nprobe=8).ids, truth.ids, 10)
    assert high >= 0.9 and high > low
    on_disk = sx.IVFPQIndex(32, 32, 16, rerank=tmp_path / "v.f32")
    on_disk.centroids, on_disk.pq, on_disk._list_tables = index.centroids, index.pq, index._list_tables
    on_disk.add(x)
    dist, ids = on_disk.search(q, 10, nprobe=8)
    assert sx.recall_at_k(ids, truth.ids, 10) >= 0.9
    np.testing.assert_allclose(dist, sx.distances(q, x)[np.arange(40)[:, None], ids], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("nbits", [8, 4])
def test_filter_remove_persistence(tmp_path, data, nbits):
    x, q = data
    index = sx.IVFPQIndex(32, 8, 8, nbits=nbits)
    index.train(x, n_iter=5)
    ids = index.add(x, ids=np.arange(3000) + 10)
    allowed = ids[::5]
    _, got = index.search(q, 10, nprobe=8, filter=allowed)
    assert np.isin(got[got >= 0], allowed).all() and (got >= 0).all()
    _, top = index.search(q, 3, nprobe=8)
    assert index.remove(top[:, 0]) == np.unique(top[:, 0]).size
    _, after = index.search(q, 3, nprobe=8)
    assert not np.isin(after, top[:, 0]).any()
    expected = index.search(q, 10, nprobe=4)
    index.save(tmp_path / "ivf.simdex")
    for loaded in (sx.load(tmp_path / "ivf.simdex"), sx.load(tmp_path / "ivf.simdex", mmap=True),
                   pickle.loads(pickle.dumps(index))):
        got = loaded.search(q, 10, nprobe=4)
        np.testing.assert_array_equal(got.ids, expected.ids)
        np.testing.assert_allclose(got.distances, expected.distances)
        assert repr(loaded) == repr(index)
    loaded.add(x[:5])
    assert len(loaded) == len(index) + 5
    assert index.nbytes > 0


def test_bad_input(data):
    x, q = data
    with pytest.raises(ValueError, match="nlist must be >= 1"):
        sx.IVFPQIndex(32, 0, 8)
    with pytest.raises(ValueError, match="multiple of m"):
        sx.IVFPQIndex(32, 4, 5)
    index = sx.IVFPQIndex(32, 8, 8)
    with pytest.raises(ValueError, match="not trained"):
        index.add(x)
    with pytest.raises(ValueError, match="at least nlist = 8"):
        index.train(x[:5])
    index.train(x, n_iter=3)
    index.add(x)
    with pytest.raises(ValueError, match="nprobe must be <= nlist = 8; got 9"):
        index.search(q, 10, nprobe=9)
    with pytest.raises(ValueError, match=r"\(n, 32\)"):
        index.search(np.zeros((2, 31), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        index.search(np.zeros((2, 32), np.int64))
    with pytest.raises(ValueError, match="rerank_k needs"):
        index.search(q, 10, rerank_k=20)


def test_default_nprobe_fits_small_nlist():
    """The default nprobe is min(8, nlist) (an index with 4 lists searches without arguments);
    an explicit nprobe above nlist is still refused."""
    x = np.random.default_rng(3).standard_normal((400, 16)).astype(np.float32)
    index = sx.IVFPQIndex(16, 4, 4)
    index.train(x, n_iter=2)
    index.add(x)
    assert index.search(x[:3], 5).ids.shape == (3, 5)
    with pytest.raises(ValueError, match="nprobe must be <= nlist = 4"):
        index.search(x[:3], 5, nprobe=5)
