"""Binary codes, bit-plane kernels and BinaryIndex, against NumPy float64 references."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simdex as sx
from simdex import _core, kernels
from simdex.binary import _bit_order_queries

LEVELS = kernels.available_levels()
TAIL_DIMS = [1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 127, 129, 384, 1000]


@pytest.fixture(params=LEVELS)
def level(request):
    with kernels.force_simd(request.param):
        yield request.param


def clustered(n, d, seed, clusters=20, spread=0.35):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d))
    x = centers[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def low_rank(n, d, seed, rank=12, noise=0.05):
    """Unit vectors near a rank-12 subspace (neighbourhoods like real embeddings have)."""
    basis = np.random.default_rng(99).standard_normal((rank, d))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, rank)) @ basis + noise * np.sqrt(rank) * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def hamming_ref(a, b):
    """(n, m) differing bits of packed codes, via unpackbits."""
    ua, ub = np.unpackbits(a, axis=1).astype(np.int64), np.unpackbits(b, axis=1).astype(np.int64)
    return (ua[:, None, :] != ub[None, :, :]).sum(axis=2)


# ---- codes ------------------------------------------------------------------------------
@pytest.mark.parametrize("d", TAIL_DIMS)
def test_binarize_matches_packbits(d):
    rng = np.random.default_rng(d)
    x = rng.standard_normal((13, d)).astype(np.float32)
    x[0, :] = 0.0
    x[1, :] = -0.0
    codes = sx.binarize(x)
    assert codes.dtype == np.uint8 and codes.shape == (13, (d + 7) // 8)
    np.testing.assert_array_equal(codes, np.packbits(x > 0, axis=1))
    assert not codes[:2].any()  # 0.0 and -0.0 -> bit 0
    center = rng.standard_normal(d).astype(np.float32)
    np.testing.assert_array_equal(sx.binarize(x, center=center), np.packbits(x > center, axis=1))
    np.testing.assert_array_equal(sx.binarize(x, center=0.5), np.packbits(x > 0.5, axis=1))
    np.testing.assert_array_equal(sx.binarize(x[3]), np.packbits(x[3] > 0))
    np.testing.assert_array_equal(sx.binarize(x.astype(np.float64)), codes)


@pytest.mark.parametrize("nbytes", [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 127, 128, 129, 200])
def test_hamming_matches_numpy(level, nbytes):
    rng = np.random.default_rng(nbytes)
    a = rng.integers(0, 256, (9, nbytes), dtype=np.uint8)
    b = rng.integers(0, 256, (70, nbytes), dtype=np.uint8)
    ref = hamming_ref(a, b)
    np.testing.assert_array_equal(sx.distances(a, b, "hamming"), ref)
    # one plane, unit weight: the bit-plane kernel is plain Hamming distance too
    for i in range(a.shape[0]):
        out = _core.binary_planes_xor(a[i], 1, b, b.shape[0], 1, nbytes, np.ones((1, 1), np.float32), 0.0)
        np.testing.assert_array_equal(out, ref[i])
    d, ids = sx.knn(a, b, 5, "hamming")
    np.testing.assert_array_equal(d, np.sort(ref, axis=1)[:, :5])


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("center", [False, True])
def test_residual_rounds_decode_within_bound(bits, center):
    x = clustered(400, 37, seed=bits)
    rb = sx.ResidualBinarizer(bits, center=center).fit(x)
    assert rb.alphas.shape == (bits,) and rb.code_size == bits * 5
    codes = rb.encode(x)
    assert codes.shape == (400, bits * 5) and codes.dtype == np.uint8
    r = x.astype(np.float64) - (rb.center_ if center else 0.0)
    for t in range(1, bits + 1):
        alpha = rb.alphas[t - 1]
        # alpha_t is the least-squares weight of round t: mean |r_t| (float32 rounding)
        np.testing.assert_allclose(alpha, np.abs(r).mean(), rtol=1e-5)
        s = np.where(r > 0, 1.0, -1.0)
        bound = max(alpha, np.abs(r).max() - alpha)  # | |r| - alpha | elementwise
        sq_before = (r ** 2).sum()
        r = r - alpha * s
        decoded = rb.decode(codes, rounds=t).astype(np.float64)
        err = x - decoded
        np.testing.assert_allclose(err, r, atol=1e-5)
        assert np.abs(err).max() <= bound + 1e-5
        # each round removes exactly n * d * alpha^2 of squared error
        np.testing.assert_allclose((r ** 2).sum(), sq_before - r.size * float(alpha) ** 2, rtol=1e-4)
    errors = [np.linalg.norm(x - rb.decode(codes, rounds=t)) for t in range(1, bits + 1)]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    np.testing.assert_array_equal(rb.decode(codes[0]), rb.decode(codes)[0])


def test_one_bit_residual_code_is_binarize():
    x = clustered(100, 50, seed=1)
    np.testing.assert_array_equal(sx.ResidualBinarizer(1).fit(x).encode(x), sx.binarize(x))


@pytest.mark.parametrize("d", TAIL_DIMS)
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_plane_scores_equal_decoded_dot_products(level, d, bits):
    rng = np.random.default_rng(d * 10 + bits)
    x = rng.standard_normal((60, d)).astype(np.float32)
    q = rng.standard_normal((3, d)).astype(np.float32)
    rb = sx.ResidualBinarizer(bits).fit(x)
    codes, qcodes = rb.encode(x), rb.encode(q)
    xhat, qhat = rb.decode(codes).astype(np.float64), rb.decode(qcodes).astype(np.float64)
    pb = (d + 7) // 8
    scale = d * float(rb.alphas.sum()) ** 2
    weights, offset = rb._symmetric_weights()
    for i in range(3):
        out = _core.binary_planes_xor(qcodes[i], bits, codes, 60, bits, pb, weights, offset)
        np.testing.assert_allclose(out, 1.0 - xhat @ qhat[i], rtol=0, atol=1e-5 * max(scale, 1.0))
    w, offsets = rb._asymmetric_weights(q)
    qb = _bit_order_queries(q, pb)
    for i in range(3):
        out = _core.binary_planes_float(qb[i], codes, 60, bits, pb, w, float(offsets[i]))
        tol = 1e-5 * (np.abs(q[i]).sum() * float(rb.alphas.sum()) + 1)
        np.testing.assert_allclose(out, 1.0 - xhat @ q[i].astype(np.float64), rtol=0, atol=tol)


def test_plane_xor_with_different_query_bits(level):
    rng = np.random.default_rng(5)
    pb, bits_q, bits_x = 11, 3, 2
    q = rng.integers(0, 256, bits_q * pb, dtype=np.uint8)
    rows = rng.integers(0, 256, (40, bits_x * pb), dtype=np.uint8)
    w = rng.standard_normal((bits_q, bits_x)).astype(np.float32)
    ref = np.full(40, 0.25)
    for t in range(bits_q):
        for u in range(bits_x):
            ref += w[t, u] * hamming_ref(q[None, t * pb:(t + 1) * pb], rows[:, u * pb:(u + 1) * pb])[0]
    out = _core.binary_planes_xor(q, bits_q, rows, 40, bits_x, pb, w, 0.25)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_kernels_agree_across_levels(d, bits, seed):
    rng = np.random.default_rng(seed)
    pb = (d + 7) // 8
    rows = rng.integers(0, 256, (17, bits * pb), dtype=np.uint8)
    q = rng.integers(0, 256, bits * pb, dtype=np.uint8)
    qf = rng.standard_normal(8 * pb).astype(np.float32)
    w2 = rng.standard_normal((bits, bits)).astype(np.float32)
    w1 = rng.standard_normal(bits).astype(np.float32)
    results = []
    for lvl in LEVELS:
        with kernels.force_simd(lvl):
            results.append((_core.binary_planes_xor(q, bits, rows, 17, bits, pb, w2, 1.5),
                            _core.binary_planes_float(qf, rows, 17, bits, pb, w1, -0.5)))
    for xor_out, float_out in results[1:]:
        np.testing.assert_allclose(xor_out, results[0][0], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(float_out, results[0][1], rtol=1e-4, atol=1e-3 * np.abs(qf).sum())


@pytest.mark.parametrize("d", [7, 33, 129, 384, 1000])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_symmetric_scan_tile_matches_decoded_scores(level, d, bits):
    # the batched scan scores query groups against 4-row tiles: 19 queries (a full group of 16
    # and a partial one), 61 rows (a 1-row tail), d = 1000 beyond the tile's word limit
    rng = np.random.default_rng(d + bits)
    x, q = clustered(61, d, seed=d), clustered(19, d, seed=d + 1)
    index = sx.BinaryIndex(d, bits=bits)
    index.add(x)
    rb = index.binarizer
    ref = 1.0 - rb.decode(rb.encode(q)).astype(np.float64) @ rb.decode(rb.encode(x)).T.astype(np.float64)
    tol = 1e-5 * d * float(rb.alphas.sum()) ** 2
    D, ids = index.search(q, 7, threads=1)
    np.testing.assert_allclose(D, np.sort(ref, axis=1)[:, :7], rtol=0, atol=tol)
    np.testing.assert_allclose(D, np.take_along_axis(ref, ids, axis=1), rtol=0, atol=tol)
    allowed = rng.choice(61, 40, replace=False)  # dense filter: still the tile path
    D, ids = index.search(q, 7, filter=allowed, threads=2)
    assert np.isin(ids, allowed).all()
    np.testing.assert_allclose(D, np.sort(ref[:, allowed], axis=1)[:, :7], rtol=0, atol=tol)


# ---- index ------------------------------------------------------------------------------
def recall(found, truth, k):
    return np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)])


@pytest.fixture(scope="module")
def data():
    x = low_rank(3000, 96, seed=7)
    q = low_rank(60, 96, seed=8)
    _, truth = sx.knn(q, x, 10, "cosine")
    return x, q, truth


@pytest.mark.parametrize("bits,scoring,floor", [(1, "symmetric", 0.93), (2, "symmetric", 0.98),
                                                (1, "asymmetric", 0.97), (4, "asymmetric", 0.99)])
def test_recall_with_rerank(level, data, bits, scoring, floor):
    x, q, truth = data
    index = sx.BinaryIndex(96, bits=bits, scoring=scoring, rerank="memory")
    index.train(x)
    index.add(x)
    d, ids = index.search(q, 10, rerank_k=100)
    assert recall(ids, truth, 10) >= floor
    # re-ranked distances are exact cosine distances of the returned ids
    exact = 1.0 - np.einsum("qd,qkd->qk", q.astype(np.float64), x[ids].astype(np.float64))
    np.testing.assert_allclose(d, exact, atol=1e-5)
    assert np.all(np.diff(d, axis=1) >= 0)


@pytest.mark.parametrize("bits,scoring", [(1, "symmetric"), (2, "symmetric"), (3, "asymmetric")])
def test_code_stage_is_exact_top_k_of_code_scores(level, data, bits, scoring):
    x, q, _ = data
    index = sx.BinaryIndex(96, bits=bits, scoring=scoring)
    index.add(x)
    d, ids = index.search(q, 10)
    rb = index.binarizer
    xhat = rb.decode(rb.encode(x)).astype(np.float64)
    qside = rb.decode(rb.encode(q)).astype(np.float64) if scoring == "symmetric" else q.astype(np.float64)
    ref = 1.0 - qside @ xhat.T
    np.testing.assert_allclose(d, np.take_along_axis(ref, ids, axis=1), atol=1e-4)
    np.testing.assert_allclose(d, np.sort(ref, axis=1)[:, :10], atol=1e-4)
    if bits == 1:
        ham = hamming_ref(rb.encode(q), rb.encode(x))
        alpha = float(rb.alphas[0])
        np.testing.assert_allclose(d, np.sort(1 - alpha ** 2 * (96 - 2 * ham), axis=1)[:, :10], atol=1e-4)


def test_filter_remove_max_distance_and_ids(data):
    x, q, _ = data
    index = sx.BinaryIndex(96, bits=2, rerank="memory")
    ids = np.arange(1000, 1000 + x.shape[0])
    index.add(x, ids)
    allowed = ids[::3]
    d, found = index.search(q, 10, filter=allowed)
    assert np.isin(found[found >= 0], allowed).all()
    mask = np.zeros(ids.max() + 1, dtype=bool)
    mask[ids[:50]] = True
    d, found = index.search(q, 10, filter=mask, rerank_k=50)  # sparse filter
    assert np.isin(found[found >= 0], ids[:50]).all()
    _, before = index.search(q, 10)
    gone = np.unique(before[:, :3])
    assert index.remove(gone) == gone.size and len(index) == x.shape[0] - gone.size
    d, after = index.search(q, 10)
    assert not np.isin(after, gone).any()
    # re-adding reuses the freed slots
    slots_before = index._slot_count
    index.add(x[: gone.size], ids=np.arange(gone.size) + 10 ** 6)
    assert index._slot_count == slots_before and len(index) == x.shape[0]
    d, found = index.search(q, 10, max_distance=0.3)
    assert np.all((d <= 0.3) | (found == -1)) and np.all(np.isinf(d[found == -1]))
    d1, i1 = index.search(q[0], 5)
    assert d1.shape == (5,) and i1.shape == (5,)


def test_more_than_n_pads(data):
    x, q, _ = data
    index = sx.BinaryIndex(96, bits=1)
    index.add(x[:4])
    d, ids = index.search(q[:2], 7)
    assert (ids[:, 4:] == -1).all() and np.isinf(d[:, 4:]).all() and (ids[:, :4] >= 0).all()


@pytest.mark.parametrize("rerank", ["memory", "path"])
@pytest.mark.parametrize("graph", [False, True])
def test_save_load_mmap_pickle(tmp_path, data, rerank, graph):
    x, q, _ = data
    where = str(tmp_path / "vectors.f32") if rerank == "path" else "memory"
    index = sx.BinaryIndex(96, bits=2, scoring="asymmetric", center=True, graph=graph, rerank=where)
    index.add(x[:800])
    index.remove([3, 4])
    d0, i0 = index.search(q, 10, rerank_k=40)
    path = tmp_path / "binary.sdx"
    index.save(path)
    side = where if rerank == "path" else None
    saved_side = open(where, "rb").read() if side else None

    def fresh(make):  # each loaded index below writes to the side file: start from the saved one
        if side:
            open(side, "wb").write(saved_side)
        return make()

    for loaded in (fresh(lambda: sx.load(path, rerank=side)), fresh(lambda: sx.load(path, mmap=True, rerank=side)),
                   fresh(lambda: pickle.loads(pickle.dumps(index)))):
        assert repr(loaded) == repr(index)
        d1, i1 = loaded.search(q, 10, rerank_k=40)
        np.testing.assert_allclose(d1, d0)
        loaded.add(x[800:900])  # a loaded (maybe read-only mapped) index still grows
        assert len(loaded) == 898
    assert index.nbytes > 0


def test_graph_recall(data):
    x, q, truth = data
    index = sx.BinaryIndex(96, bits=1, graph=True, rerank="memory")
    index.add(x)
    _, ids = index.search(q, 10, rerank_k=100, ef=200)
    assert recall(ids, truth, 10) >= 0.9
    multi = sx.BinaryIndex(96, bits=2, graph=True)
    multi.add(x)
    d, ids = multi.search(q, 10, ef=100)
    assert np.all(np.diff(d, axis=1) >= 0) and (ids >= 0).all()


def test_repr_and_nbytes(data):
    x, _, _ = data
    index = sx.BinaryIndex(96, bits=2)
    index.add(x)
    assert repr(index).startswith("BinaryIndex(dim=96, metric='cosine', bits=2")
    assert x.shape[0] * (2 * 12 + 8) <= index.nbytes <= x.shape[0] * (2 * 12 + 100)  # codes + id map


# ---- bad input --------------------------------------------------------------------------
def test_bad_input(data):
    x, q, _ = data
    with pytest.raises(ValueError, match="bits must be between 1 and 4; got 5"):
        sx.ResidualBinarizer(5)
    with pytest.raises(TypeError):
        sx.ResidualBinarizer(1.5)
    with pytest.raises(ValueError, match="not fitted"):
        sx.ResidualBinarizer(2).encode(x)
    with pytest.raises(TypeError, match="floating-point"):
        sx.binarize(np.ones((2, 3), dtype=np.int32))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        sx.binarize(np.ones((2, 3), np.float32), center=np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        sx.binarize(np.array([[1.0, np.nan]], np.float32))
    rb = sx.ResidualBinarizer(2).fit(x)
    with pytest.raises(ValueError, match="24 bytes per row"):
        rb.decode(np.zeros((2, 23), np.uint8))
    with pytest.raises(ValueError, match="metric"):
        sx.BinaryIndex(96, metric="l2")
    with pytest.raises(ValueError, match="scoring"):
        sx.BinaryIndex(96, scoring="fast")
    with pytest.raises(ValueError, match=r"\(n, 96\)"):
        sx.BinaryIndex(96).add(np.ones((3, 95), np.float32))
    index = sx.BinaryIndex(96, rerank="memory")
    index.add(x[:100])
    with pytest.raises(ValueError, match="rerank_k must be >= k=10; got 5"):
        index.search(q, 10, rerank_k=5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(q, 0)
    with pytest.raises(ValueError, match="graph=True"):
        index.search(q, 10, ef=10)
    with pytest.raises(ValueError, match="rerank_k needs"):
        sx.BinaryIndex(96).search(q, 10, rerank_k=20)
    with pytest.raises(TypeError, match="rerank"):
        sx.BinaryIndex(96, rerank=3)
    with pytest.raises(ValueError, match="already in the index"):
        index.add(x[:2], ids=[0, 1])
    with pytest.raises(ValueError, match="bit planes need"):
        _core.binary_planes_xor(np.zeros(0, np.uint8), 0, np.zeros(0, np.uint8), 0, 1, 1,
                                np.zeros(0, np.float32), 0.0)
    with pytest.raises(ValueError, match="rows holds"):
        _core.binary_planes_xor(np.zeros(4, np.uint8), 1, np.zeros(7, np.uint8), 2, 1, 4,
                                np.ones((1, 1), np.float32), 0.0)
