"""ProductQuantizer and PQIndex: ADC and fast-scan kernels at every SIMD level against NumPy,
reconstruction error, OPQ, re-ranking recall, filters, persistence, bad input."""

import pickle

import numpy as np
import pytest

import simdex as sx
from simdex import _core
from conftest import unpack_blocks

LEVELS = sx.kernels.available_levels()

def pack_blocks(codes):
    """(n, m) 4-bit codes -> fast-scan blocks (C++, the one writer of the layout)."""
    return _core.pq_pack_blocks(np.ascontiguousarray(codes), codes.shape[0], codes.shape[1])


@pytest.fixture(params=LEVELS)
def level(request):
    with sx.kernels.force_simd(request.param):
        yield request.param


def clustered(n, d, seed=0, centers=64):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d)) * 2.0
    return (c[rng.integers(0, centers, n)] + rng.standard_normal((n, d))).astype(np.float32)


def adc_reference(luts, codes):
    """(q, m, ksub) tables, (n, m) codes -> (q, n) float64 sums."""
    m = codes.shape[1]
    return np.stack([lut.astype(np.float64)[np.arange(m), codes].sum(1) for lut in luts])


def fastscan_bound(luts):
    """Per-query bound m * 0.5 / s of the uint8 table quantization (see cpp/index/pq.cpp)."""
    lo, hi = luts.min(-1), luts.max(-1)
    ranges = (hi - lo).astype(np.float64)
    m = luts.shape[1]
    s = np.minimum(255.0 / np.maximum(ranges.max(1), 1e-30), (65535 - 0.5 * m) / np.maximum(ranges.sum(1), 1e-30))
    return m * 0.5 / s


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 7, 16, 17, 33])
@pytest.mark.parametrize("n", [1, 9, 37])
def test_adc_kernel_equals_lut_sums(level, m, n):
    rng = np.random.default_rng(m * 100 + n)
    lut = rng.standard_normal((m, 256)).astype(np.float32)
    codes = rng.integers(0, 256, (n, m), dtype=np.uint8)
    got = _core.pq_adc(lut, codes, n, m)
    np.testing.assert_allclose(got, adc_reference(lut[None], codes)[0], rtol=1e-5, atol=1e-5 * m)


def test_block_packing_round_trip():
    rng = np.random.default_rng(1)
    for n, m in [(1, 1), (31, 3), (32, 4), (33, 6), (100, 17)]:
        codes = rng.integers(0, 16, (n, m), dtype=np.uint8)
        blocks = pack_blocks(codes)
        padded = np.zeros(((n + 31) // 32 * 32, (m + 3) // 4 * 4), np.uint8)
        padded[:n, :m] = codes  # every byte of the layout, padding zero
        assert (unpack_blocks(blocks, padded.shape[0], padded.shape[1]) == padded).all()
        assert blocks.shape == ((n + 31) // 32, (m + 3) // 4 * 2, 32)
        np.testing.assert_array_equal(unpack_blocks(blocks, n, m), codes)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 6, 8, 9, 16, 64])
@pytest.mark.parametrize("n", [1, 31, 70])
def test_fastscan_within_quantization_bound(level, m, n):
    rng = np.random.default_rng(m * 7 + n)
    nq = 6  # more than one pass of 4 queries and a remainder
    luts = (rng.standard_normal((nq, m, 16)) * rng.uniform(0.1, 3, (1, m, 1))).astype(np.float32)
    codes = rng.integers(0, 16, (n, m), dtype=np.uint8)
    dist, slots = _core.pq_search_u4(pack_blocks(codes), n, m, luts, nq, n)
    assert (slots >= 0).all() and (np.sort(slots, 1) == np.arange(n)).all()  # every row once
    exact = adc_reference(luts, codes)
    bound = fastscan_bound(luts)
    got = np.take_along_axis(exact, slots, 1)
    assert (np.abs(dist - got) <= bound[:, None] * (1 + 1e-5) + 1e-4).all()
    assert (np.diff(dist, axis=1) >= 0).all()


@pytest.mark.parametrize("m", [4, 12])
def test_fastscan_topk_threshold_keeps_the_best(level, m):
    rng = np.random.default_rng(m)
    n, nq, k = 3000, 9, 10
    luts = rng.standard_normal((nq, m, 16)).astype(np.float32)
    codes = rng.integers(0, 16, (n, m), dtype=np.uint8)
    dist, slots = _core.pq_search_u4(pack_blocks(codes), n, m, luts, nq, k, threads=2)
    exact = adc_reference(luts, codes)
    bound = fastscan_bound(luts)
    kth = np.sort(exact, 1)[:, k - 1]
    # whatever was returned is at least as good as the true k-th up to twice the bound
    assert (np.take_along_axis(exact, slots, 1).max(1) <= kth + 2 * bound + 1e-4).all()


def test_reconstruction_error_falls_with_m_and_nbits():
    x = clustered(4000, 32, seed=2)
    errors = {}
    for nbits in (4, 8):
        for m in (4, 8, 16):
            pq = sx.ProductQuantizer(32, m, nbits=nbits).fit(x, n_iter=10)
            errors[nbits, m] = float(((pq.decode(pq.encode(x)) - x) ** 2).sum(1).mean())
    for nbits in (4, 8):
        assert errors[nbits, 4] > errors[nbits, 8] > errors[nbits, 16]
    for m in (4, 8, 16):
        assert errors[4, m] > errors[8, m]


def test_encode_picks_nearest_centroid_and_decode(level):
    x = clustered(500, 24, seed=3)
    for nbits in (8, 4):
        pq = sx.ProductQuantizer(24, 6, nbits=nbits).fit(x, n_iter=5)
        codes = pq.encode(x)
        assert codes.shape == (500, pq.code_size) and codes.dtype == np.uint8
        recon = pq.decode(codes)
        for j in range(6):
            sub = x[:, j * 4:(j + 1) * 4].astype(np.float64)
            dist = ((sub[:, None] - pq.codebooks[j][None].astype(np.float64)) ** 2).sum(-1)
            got = ((sub - recon[:, j * 4:(j + 1) * 4]) ** 2).sum(1)
            np.testing.assert_allclose(got, dist.min(1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_lookup_table_and_index_distances(level, metric):
    x = clustered(3000, 32, seed=4)
    q = clustered(7, 32, seed=5)
    index = sx.PQIndex(32, 8, metric=metric)
    index.train(x)
    index.add(x)
    luts = index.pq.lookup_table(q, metric)
    assert luts.shape == (7, 8, 256)
    xs = sx.kernels.normalize(x) if metric == "cosine" else x
    qs = sx.kernels.normalize(q) if metric == "cosine" else q
    recon = index.pq.decode(index.pq.encode(xs)).astype(np.float64)
    exact = adc_reference(luts, index.pq._encode_raw(xs))
    if metric == "l2":
        direct = ((qs[:, None].astype(np.float64) - recon[None]) ** 2).sum(-1)
    else:
        direct = 1.0 - qs.astype(np.float64) @ recon.T
    np.testing.assert_allclose(exact, direct, rtol=1e-4, atol=1e-3)  # table sums = distance to x_hat
    dist, ids = index.search(q, 10)
    np.testing.assert_allclose(dist, np.sort(exact, 1)[:, :10], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.take_along_axis(exact, ids, 1), dist, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("nbits", [8, 4])
def test_rerank_recall(level, tmp_path, nbits):
    x = clustered(6000, 48, seed=6)
    q = clustered(40, 48, seed=7)
    truth = sx.knn(q, x, 10)
    m = 12 if nbits == 8 else 24  # the same 12 bytes per vector
    plain = sx.PQIndex(48, m, nbits=nbits)
    plain.train(x)
    plain.add(x)
    raw = sx.recall_at_k(plain.search(q, 10).ids, truth.ids, 10)
    for where in ("memory", tmp_path / "vectors.f32"):
        index = sx.PQIndex(48, m, nbits=nbits, rerank=where)
        index.pq = plain.pq
        index.add(x)
        dist, ids = index.search(q, 10, rerank_k=100)
        recall = sx.recall_at_k(ids, truth.ids, 10)
        assert recall >= 0.9 and recall > raw
        np.testing.assert_allclose(dist, sx.distances(q, x)[np.arange(40)[:, None], ids], rtol=1e-4, atol=1e-3)


def test_opq_lowers_error_on_rotated_anisotropic_data():
    rng = np.random.default_rng(8)
    d = 32
    scales = np.geomspace(10, 0.1, d)                     # variance concentrated in few axes
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = ((rng.standard_normal((4000, d)) * scales) @ rotation).astype(np.float32)
    errors = []
    for opq in (False, True):
        pq = sx.ProductQuantizer(d, 8, nbits=4).fit(x, opq=opq, n_iter=10, opq_iter=6)
        errors.append(float(((pq.decode(pq.encode(x)) - x) ** 2).sum(1).mean()))
        if opq:
            np.testing.assert_allclose(pq.rotation @ pq.rotation.T, np.eye(d), atol=1e-4)
    assert errors[1] < 0.9 * errors[0]


@pytest.mark.parametrize("nbits", [8, 4])
def test_filter_remove_max_distance(nbits):
    x = clustered(2000, 16, seed=9)
    q = clustered(5, 16, seed=10)
    index = sx.PQIndex(16, 4, nbits=nbits)
    index.train(x)
    ids = index.add(x, ids=np.arange(2000) * 3)
    allowed = ids[::7]
    _, got = index.search(q, 10, filter=allowed)
    assert np.isin(got[got >= 0], allowed).all() and (got >= 0).all()
    mask = np.zeros(6000, bool)
    mask[ids[:50]] = True
    _, got = index.search(q, 10, filter=mask)
    assert np.isin(got[got >= 0], ids[:50]).all()
    d0, i0 = index.search(q, 5)
    assert index.remove(i0[:, 0]) == np.unique(i0[:, 0]).size
    assert len(index) == 2000 - np.unique(i0[:, 0]).size
    _, i1 = index.search(q, 5)
    assert not np.isin(i1, i0[:, 0]).any()
    threshold = float(np.median(d0))
    dist, got = index.search(q, 5, max_distance=threshold)
    assert ((dist <= threshold) | (got == -1)).all()


@pytest.mark.parametrize("nbits", [8, 4])
def test_save_load_pickle(tmp_path, nbits):
    x = clustered(1500, 16, seed=11)
    q = clustered(5, 16, seed=12)
    index = sx.PQIndex(16, 4, nbits=nbits, opq=True, rerank="memory")
    index.train(x)
    index.add(x[:1000])
    index.add(x[1000:])
    expected = index.search(q, 10)
    path = tmp_path / "pq.simdex"
    index.save(path)
    for loaded in (sx.load(path), sx.load(path, mmap=True), pickle.loads(pickle.dumps(index))):
        assert repr(loaded) == repr(index) and len(loaded) == 1500
        got = loaded.search(q, 10)
        np.testing.assert_array_equal(got.ids, expected.ids)
        np.testing.assert_allclose(got.distances, expected.distances)
    loaded = sx.load(path, mmap=True)
    loaded.add(x[:10])  # a mapped index still takes new vectors
    assert len(loaded) == 1510
    assert index.nbytes >= 1500 * index.pq.code_size + 1500 * 16 * 4


def test_empty_and_one_d():
    index = sx.PQIndex(8, 2)
    assert len(index) == 0
    x = clustered(300, 8, seed=13)
    index.train(x)
    d, i = index.search(x[0], 3)
    assert d.shape == (3,) and (i == -1).all()
    index.add(x)
    d, i = index.search(x[0], 3)
    assert d.shape == (3,) and i.dtype == np.int64
    d, i = index.search(x[:2], 400)  # k > n pads
    assert (i[:, 300:] == -1).all() and np.isinf(d[:, 300:]).all()


def test_bad_input():
    with pytest.raises(ValueError, match="multiple of m"):
        sx.ProductQuantizer(10, 3)
    with pytest.raises(ValueError, match="nbits must be 8 or 4"):
        sx.ProductQuantizer(8, 2, nbits=6)
    with pytest.raises(ValueError, match="metric"):
        sx.PQIndex(8, 2, metric="hamming")
    with pytest.raises(TypeError, match="rerank"):
        sx.PQIndex(8, 2, rerank=3)
    pq = sx.ProductQuantizer(8, 2)
    with pytest.raises(ValueError, match="not trained"):
        pq.encode(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="at least 2\\*\\*nbits = 256"):
        pq.fit(np.zeros((10, 8), np.float32))
    x = clustered(300, 8, seed=14)
    index = sx.PQIndex(8, 2)
    with pytest.raises(ValueError, match="not trained"):
        index.add(x)
    index.train(x)
    index.add(x)
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        index.search(np.zeros((2, 9), np.float32))
    with pytest.raises(ValueError, match="rerank_k needs"):
        index.search(x[:2], 5, rerank_k=50)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(x[:2], 0)
    with pytest.raises(TypeError, match="uint8"):
        index.pq.decode(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        index.pq.decode(np.zeros((2, 3), np.uint8))
    reranked = sx.PQIndex(8, 2, rerank="memory")
    reranked.pq = index.pq
    reranked.add(x)
    with pytest.raises(ValueError, match="rerank_k must be >= k"):
        reranked.search(x[:2], 10, rerank_k=5)


@pytest.mark.parametrize("nbits", [8, 4])
def test_split_scans_merge_like_one_thread(level, nbits):
    """Few queries on 2 threads: the rows are split between tasks and the top-k lists merged."""
    rng = np.random.default_rng(15)
    m, n, nq, k = 64, 20000, 3, 7
    ksub = 256 if nbits == 8 else 16
    luts = rng.standard_normal((nq, m, ksub)).astype(np.float32)
    codes = rng.integers(0, ksub, (n, m), dtype=np.uint8)
    mask = (rng.random(n) < 0.5).astype(np.uint8)
    if nbits == 8:
        run = lambda t: _core.pq_search_u8(codes, n, m, luts, nq, k, mask, t)  # noqa: E731
    else:
        blocks = pack_blocks(codes)
        run = lambda t: _core.pq_search_u4(blocks, n, m, luts, nq, k, mask, t)  # noqa: E731
    one, two = run(1), run(2)
    np.testing.assert_allclose(one[0], two[0], rtol=1e-6)
    assert mask[two[1]].all()
    if nbits == 8:
        exact = adc_reference(luts, codes)
        exact[:, mask == 0] = np.inf
        np.testing.assert_allclose(two[0], np.sort(exact, 1)[:, :k], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("nbits", [8, 4])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("rerank", [None, "memory"])
def test_one_query_lean_path_equals_the_batch_path(nbits, metric, rerank):
    """A (dim,) float32 query takes the lean path (C++ checks and cosine normalisation): the
    same results as the general path, removed ids masked, bad queries refused the same way."""
    x = clustered(3000, 32, seed=4)
    opq = nbits == 8 and metric == "l2" and rerank is None
    index = sx.PQIndex(32, 8, nbits=nbits, metric=metric, opq=opq, rerank=rerank)
    index.train(x[:1000]).add(x)
    index.remove(np.arange(0, 3000, 3))
    q = clustered(20, 32, seed=5) * 3.0
    for i in range(q.shape[0]):
        lean = index.search(q[i], 7)
        batch = index.search(q[i : i + 1].astype(np.float64), 7, threads=2)  # general path
        np.testing.assert_array_equal(lean.ids, batch.ids[0])
        np.testing.assert_allclose(lean.distances, batch.distances[0], rtol=1e-5, atol=1e-5)
        assert lean.ids.shape == (7,) and not (lean.ids % 3 == 0).any()
    bad = q[0].copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.search(bad, 5)
    bad[3] = 1e30
    with pytest.raises(ValueError, match="magnitude"):
        index.search(bad, 5)
    empty = sx.PQIndex(32, 8, nbits=nbits, metric=metric)
    empty.pq = index.pq
    assert (empty.search(q[0], 3).ids == -1).all()
