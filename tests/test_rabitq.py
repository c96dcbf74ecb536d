"""RaBitQ quantizer (python/simdex/rabitq.py, cpp/index/rabitq.*): codes and factors against a
NumPy float64 reference, unbiased estimates, error bounds at their stated confidence, and the
same results at every SIMD tier."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import simdex as sx
from simdex import _format
from simdex.kernels import available_levels, force_simd
from simdex.rabitq import ROUNDS, confidence, padded_dim

# ---- NumPy float64 reference of cpp/index/rabitq.hpp -------------------------------------


def _fwht(y: np.ndarray) -> np.ndarray:
    h = y.shape[-1]
    y = y.copy()
    step = 1
    while step < h:
        y = y.reshape(*y.shape[:-1], h // (2 * step), 2, step)
        a, b = y[..., 0, :].copy(), y[..., 1, :].copy()
        y[..., 0, :], y[..., 1, :] = a + b, a - b
        y = y.reshape(*y.shape[:-3], h)
        step *= 2
    return y / np.sqrt(h)


def ref_rotate(x: np.ndarray, q: sx.RaBitQ) -> np.ndarray:
    d = q.padded_dim
    y = np.zeros((x.shape[0], d))
    y[:, : q.dim] = x
    p = q.rotation_params.astype(np.float64)
    if q.rotation == "dense":
        return y @ p.T
    h = 1 << (d.bit_length() - 1)
    for r in range(ROUNDS):
        y *= p[r]
        part = slice(d - h, d) if r % 2 else slice(0, h)
        y[:, part] = _fwht(y[:, part])
    return y


def ref_levels(o: np.ndarray, bits: int) -> np.ndarray:
    """Magnitude levels a (D,) maximising the cosine over the documented two-stage grid."""
    top = (1 << (bits - 1)) - 1
    m = np.abs(o)
    if bits == 1:
        return np.zeros_like(m)

    def cos(t: float) -> float:
        a = np.minimum(np.floor(t * m), top) + 0.5
        return float((a * m).sum() / np.sqrt((a * a).sum()))

    t_top = (top + 1) / m.max()
    grid = [t_top * 0.4 * (2.5 / 0.4) ** (k / 47) for k in range(48)]
    scores = [cos(t) for t in grid]
    k = int(np.argmax(scores))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, 47)]
    fine = [lo + (hi - lo) * i / 16 for i in range(17)]
    best = max([grid[k], *fine], key=cos)
    return np.minimum(np.floor(best * m), top)


def ref_encode(x: np.ndarray, q: sx.RaBitQ) -> tuple[np.ndarray, np.ndarray]:
    """(codes u (n, D) int, factors (n, F) float64)."""
    y = ref_rotate(x.astype(np.float64) - q.centre.astype(np.float64), q)
    d = q.padded_dim
    codes, factors = [], []
    for row in y:
        norm = np.linalg.norm(row)
        o = row / norm
        a = ref_levels(o, q.bits)
        half = (1 << q.bits) - 1
        u = np.where(o > 0, (1 << (q.bits - 1)) + a, (1 << (q.bits - 1)) - 1 - a)
        xbar = u - half / 2
        f = [norm**2]
        for xb in (
            [np.where(o > 0, 0.5, -0.5)] if q.bits == 1 else [np.where(o > 0, 0.5, -0.5), xbar]
        ):
            ip = float(xb @ o)
            c = ip / np.linalg.norm(xb)
            f += [norm / ip, norm * np.sqrt(1 - c * c) / (c * np.sqrt(d - 1))]
        codes.append(u)
        factors.append(f)
    return np.array(codes), np.array(factors)


def unpack(codes: np.ndarray, q: sx.RaBitQ) -> tuple[np.ndarray, np.ndarray]:
    """Our rows -> (u (n, D) int, factors (n, F) float32)."""
    d, b = q.padded_dim, q.bits
    planes = np.unpackbits(codes[:, : b * d // 8].reshape(-1, b, d // 8), axis=2, bitorder="little")
    u = planes[:, 0].astype(np.int64) << (b - 1)
    for j in range(1, b):
        u |= planes[:, j].astype(np.int64) << (j - 1)
    factors = codes[:, b * d // 8 :].copy().view(np.float32)
    return u, factors


# ---- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 7, 64, 65, 200])
@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("rotation", ["hadamard", "dense"])
def test_encode_matches_float64_reference(dim, bits, rotation):
    rng = np.random.default_rng(dim * 10 + bits)
    x = rng.standard_normal((40, dim)).astype(np.float32)
    q = sx.RaBitQ(dim, bits=bits, rotation=rotation, seed=3).train(x)
    assert q.row_bytes == bits * padded_dim(dim) // 8 + 4 * (3 if bits == 1 else 5)
    np.testing.assert_allclose(q._core.rotate(x, 40), ref_rotate(x, q), atol=1e-5)
    u, factors = unpack(q.encode(x), q)
    ref_u, ref_f = ref_encode(x, q)
    same = (u == ref_u).all(axis=1)
    assert same.mean() >= 0.95  # a grid tie decided by the last bit of a float may differ
    np.testing.assert_allclose(factors[same], ref_f[same], rtol=2e-5, atol=1e-6)
    # decode: centre + norm * R^T (xbar / ||xbar||)
    xbar = ref_u - ((1 << bits) - 1) / 2
    unit = xbar / np.linalg.norm(xbar, axis=1, keepdims=True)
    p = q.rotation_params.astype(np.float64)
    if rotation == "dense":
        back = unit @ p
    else:
        d = q.padded_dim
        h = 1 << (d.bit_length() - 1)
        back = unit.copy()
        for r in reversed(range(ROUNDS)):
            part = slice(d - h, d) if r % 2 else slice(0, h)
            back[:, part] = _fwht(back[:, part])
            back *= p[r]
    ref_x = q.centre + np.sqrt(ref_f[:, :1]) * back[:, :dim]
    np.testing.assert_allclose(q.decode(q.encode(x))[same], ref_x[same], atol=1e-4)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_bound_holds_at_stated_confidence(bits, metric):
    rng = np.random.default_rng(bits)
    d = 128
    x = (rng.standard_normal((400, d)) + 0.3).astype(np.float32)
    queries = (rng.standard_normal((12, d)) + 0.3).astype(np.float32)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    q = sx.RaBitQ(d, bits=bits, seed=11).train(x)
    codes = q.encode(x)
    x64, q64 = x.astype(np.float64), queries.astype(np.float64)
    if metric == "l2":
        true = ((q64[:, None, :] - x64[None]) ** 2).sum(-1)
    else:
        true = 1 - q64 @ x64.T
    for eps0 in (1.0, 1.9, 3.0):
        for level in ("full", "1bit"):
            est, bound = q.estimate(codes, queries, metric, eps0=eps0, level=level)
            covered = float((np.abs(est - true) <= bound).mean())
            # 4800 pairs: the binomial spread is ~0.004; the normal approximation is slightly
            # conservative in the tails
            assert covered >= confidence(eps0) - 0.02, (eps0, level, covered)
            assert covered <= confidence(eps0) + 0.04, (eps0, level, covered)
    est1, _ = q.estimate(codes, queries, metric, level="1bit")
    est, _ = q.estimate(codes, queries, metric)
    err1, err = np.abs(est1 - true).mean(), np.abs(est - true).mean()
    if bits > 1:  # the extra bits shrink the error ~2x per bit
        assert err < err1 / (1.5 ** (bits - 1))


@pytest.mark.parametrize("bits", [1, 3])
@pytest.mark.parametrize("rotation", ["hadamard", "dense"])
def test_estimator_unbiased_over_rotations(bits, rotation):
    rng = np.random.default_rng(100 + bits)
    d = 64
    x = rng.standard_normal((6, d)).astype(np.float32)
    queries = rng.standard_normal((3, d)).astype(np.float32)
    true = ((queries[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    runs = []
    for seed in range(300):
        q = sx.RaBitQ(d, bits=bits, rotation=rotation, seed=1000 + seed)
        q.centre = np.zeros(d, np.float32)
        runs.append(q.estimate(q.encode(x), queries)[0])
    est = np.array(runs, dtype=np.float64)  # (seeds, q, n)
    z = (est.mean(0) - true) / (est.std(0) / np.sqrt(len(runs)))
    assert np.abs(z).max() < 4.0, z  # 18 pairs, each ~N(0, 1) if unbiased


@pytest.mark.parametrize("dim", [1, 64, 65, 200, 384, 1000, 1024])
def test_rotation_is_bit_identical_at_every_simd_tier(dim):
    """The float64 Walsh-Hadamard kernel (kernels/fwht) of every tier: the NumPy float64
    reference up to rounding, and the same doubles at every tier (same butterflies, same order)."""
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((20, dim)).astype(np.float32)
    q = sx.RaBitQ(dim, bits=1, seed=5).train(x)
    reference = ref_rotate(x.astype(np.float64), q)
    rotated = []
    for level in available_levels():
        with force_simd(level):
            rotated.append(q._core.rotate(x, 20))
    np.testing.assert_allclose(rotated[0], reference, rtol=0, atol=1e-12 * np.abs(reference).max())
    for other in rotated[1:]:
        np.testing.assert_array_equal(rotated[0], other)


def test_identical_at_every_simd_tier():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 100)).astype(np.float32)
    queries = rng.standard_normal((5, 100)).astype(np.float32)
    results = []
    for level in available_levels():
        with force_simd(level):
            q = sx.RaBitQ(100, bits=4, seed=2).train(x)
            codes = q.encode(x, threads=2)
            results.append((codes, *q.estimate(codes, queries), q.decode(codes)))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_errors():
    with pytest.raises(ValueError, match="bits"):
        sx.RaBitQ(8, bits=9)
    with pytest.raises(ValueError, match="rotation"):
        sx.RaBitQ(8, rotation="givens")
    q = sx.RaBitQ(8, bits=2)
    x = np.ones((3, 8), np.float32)
    with pytest.raises(ValueError, match="not trained"):
        q.encode(x)
    q.train(x)
    with pytest.raises(ValueError, match="shape"):
        q.encode(np.ones((3, 9), np.float32))
    codes = q.encode(x)
    with pytest.raises(TypeError, match="uint8"):
        q.decode(codes.astype(np.int16))
    with pytest.raises(ValueError, match="shape"):
        q.decode(codes[:, :-1])
    with pytest.raises(ValueError, match="eps0"):
        q.estimate(codes, x, eps0=-1.0)
    # the centre itself: norm 0, every estimate exact
    est, bound = q.estimate(codes, x)
    np.testing.assert_allclose(est, 0.0, atol=1e-6)
    assert "bits=2" in repr(q)


# ---- RaBitQIndex / IVFRaBitQIndex ---------------------------------------------------------


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((30, d)).astype(np.float32)
    return (centers[rng.integers(0, 30, n)] + 0.4 * rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def corpus():
    x = _clustered(4000, 96, seed=1)
    q = _clustered(40, 96, seed=2)
    return x, q


def _truth(x, q, metric, k=10):
    return sx.knn(q, x, k, metric).ids


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_flat_index_recall_and_exact_distances(corpus, metric, bits):
    x, q = corpus
    index = sx.RaBitQIndex(96, bits=bits, metric=metric, rerank="memory")
    index.add(x)
    # one global centre for clustered data: 1-bit estimates need a deeper re-rank
    candidates = 400 if bits == 1 else 100
    dist, ids = index.search(q, 10, rerank_k=candidates)
    truth = _truth(x, q, metric)
    assert sx.recall_at_k(ids, truth, 10) >= 0.93
    # re-ranked distances are exact for the returned ids
    rows = x[ids]
    qq = q
    if metric == "cosine":
        rows = rows / np.linalg.norm(rows, axis=2, keepdims=True)
        qq = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        exact = ((rows - qq[:, None, :]) ** 2).sum(-1)
    else:
        exact = 1 - np.einsum("qkd,qd->qk", rows, qq)
    np.testing.assert_allclose(dist, exact, rtol=1e-4, atol=1e-4)
    s = index.stats
    assert s["queries"] == 40 and 0 < s["scanned"] <= 40 * 4000
    assert s["reranked"] + s["pruned"] == s["candidates"] == 40 * candidates


def test_estimates_without_rerank_match_the_quantizer(corpus):
    x, q = corpus
    index = sx.RaBitQIndex(96, bits=4, query_bits=8)
    index.add(x)
    dist, ids = index.search(q[:5], 10)
    quant = index.quantizer
    quant.centre = index.centroids[0]
    codes = quant.encode(x)
    est, bound = quant.estimate(codes, q[:5])
    picked = np.take_along_axis(est, ids, axis=1)
    np.testing.assert_allclose(dist, picked, rtol=1e-4, atol=1e-3)
    # the 4-bit estimate ranks well: recall without re-rank
    _, ids_all = index.search(q, 10)
    assert sx.recall_at_k(ids_all, _truth(x, q, "l2"), 10) >= 0.8


# the largest entry of the indexes' fast-scan tables (build_tables: 6 bits, so the batch
# kernel can sum a group's four lookups as bytes)
TABLE_TOP = 63


def _residual_reference(index, q, x=None):
    """float64 reference of the residual-form estimates of every live row of an index: the
    row's centre c = its list's centroid, v = R(q - c), at both levels
    l2 = ||r||^2 + ||q - c||^2 - 2 scale <xbar, v> (cosine: half of it), or
    ip = 1 - <c, q> - <r, c> - scale <xbar, v> with the exact <r, c> = <x - c, c> from the rows
    x (n, dim) (ids are row numbers; x=None: the <r, c> the index stores). Also the tolerance
    the index's rounding allows: 6-bit tables of R(q - g) for the 1-bit level, query_bits
    planes of R(q - g) for the full level (g = the centroids' mean)."""
    quant = index.quantizer
    B, D = quant.bits, quant.padded_dim
    state = index._core.state()
    rows, lists, slots = state["rows"], state["lists"], state["slots"]
    ids = state["ids"][slots]
    planes = np.unpackbits(rows[:, : B * D // 8].reshape(-1, B, D // 8), axis=2, bitorder="little")
    sign = planes[:, 0].astype(np.float64)
    u = sign * 2 ** (B - 1)
    for j in range(1, B):
        u += planes[:, j].astype(np.float64) * 2 ** (j - 1)
    xbar1, xbar = sign - 0.5, u - (2**B - 1) / 2
    f = np.ascontiguousarray(rows[:, B * D // 8 :]).view(np.float32).astype(np.float64)
    cents = index.centroids.astype(np.float64)
    g = cents.mean(axis=0)
    pad = np.zeros((q.shape[0], D))
    pad[:, : q.shape[1]] = q
    half = 0.5 if index.metric == "cosine" else 1.0
    m = 1.0 if index.metric == "ip" else 2.0  # l2 form: -2 <r, q - c>; ip: -<r, q - c>
    cp = np.zeros((cents.shape[0], D))
    cp[:, : q.shape[1]] = cents
    if index.metric == "ip" and x is None:
        rc = state["dots"].astype(np.float64)
    elif index.metric == "ip":
        rows64 = x[ids].astype(np.float64)
        rc = ((rows64 - cents[lists]) * cents[lists]).sum(1)  # exact <r, c> per row
    ref1, ref, tol1, tol = [], [], [], []
    for qq in pad:
        v = ref_rotate(qq[None, : q.shape[1]] - cents[lists], quant)  # (n, D) R(q - c) per row
        if index.metric == "ip":
            base = 1.0 - cp[lists] @ qq - rc
        else:
            base = f[:, 0] + ((qq[None, :] - cp[lists]) ** 2).sum(1)
        ref1.append(half * (base - m * f[:, 1] * (xbar1 * v).sum(1)))
        level = 1 if B == 1 else 3
        ref.append(half * (base - m * f[:, level] * (xbar * v).sum(1)))
        vg = ref_rotate(qq[None, : q.shape[1]] - g, quant)[0]
        groups = np.abs(vg).reshape(-1, 4).sum(1)
        step = groups.max() / TABLE_TOP  # one table step; every sum rounds D / 4 entries
        tol1.append(half * m * f[:, 1] * (D / 4) * step / 2 + 1e-4)
        delta = (vg.max() - vg.min()) / (2**quant.query_bits - 1)
        tol.append(half * m * f[:, level] * np.abs(xbar).sum(1) * delta / 2 + 1e-4)
    return ids, *(np.array(a) for a in (ref1, ref, tol1, tol))


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
@pytest.mark.parametrize(("nlist", "bits"), [(1, 1), (1, 3), (8, 1), (8, 3)])
def test_residual_form_matches_float64_reference(corpus, metric, nlist, bits, level):
    """Every metric estimates <r, q - c> (the query centred like the row): the scan uses one
    set of tables for R(q - g) and per-row shifts <xbar, R(c - g)>; ip adds the exact <r, c>
    stored per row. The estimates equal the float64 estimator within the tables' / query
    planes' rounding, at every probed list and every SIMD tier."""
    x, q = corpus
    x = x + 1.5  # a common offset: ||q - c|| << ||q||
    q = q[:6] + 1.5
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    x = x[:1500]
    kw = dict(bits=bits, metric=metric, rotation="dense", query_bits=8, eps0=50.0)
    with force_simd(level):
        index = sx.RaBitQIndex(96, **kw) if nlist == 1 else sx.IVFRaBitQIndex(96, nlist, **kw)
        if nlist > 1:
            index.train(x)
        index.add(x)
        n = x.shape[0]
        dist, got = index.search(q, n) if nlist == 1 else index.search(q, n, nprobe=nlist)
    assert (got >= 0).all()
    ids, ref1, ref, tol1, tol = _residual_reference(index, q, x)
    order = np.argsort(ids)
    want, bound = (ref1, tol1) if bits == 1 else (ref, tol)
    for i in range(q.shape[0]):
        pos = order[np.searchsorted(ids[order], got[i])]
        assert (np.abs(dist[i] - want[i, pos]) <= bound[i, pos]).all()
    if metric != "l2":  # the point of centring: smaller errors than <r, q> uncentred
        ref_ids, exact = np.sort(ids), sx.knn(q, x, n, metric)
        truth = np.take_along_axis(exact.distances, np.argsort(exact.ids, axis=1), 1)
        assert np.array_equal(ref_ids, np.arange(n))
        state, quant = index._core.state(), index.quantizer
        rows, lists = state["rows"][order], state["lists"][order]
        D, B = quant.padded_dim, quant.bits
        sign = np.unpackbits(rows[:, : D // 8], axis=1, bitorder="little").astype(np.float64)
        f = np.ascontiguousarray(rows[:, B * D // 8 :]).view(np.float32).astype(np.float64)
        rq = np.pad(q.astype(np.float64), ((0, 0), (0, D - 96))) @ quant.rotation_params.T
        cq = q.astype(np.float64) @ index.centroids.astype(np.float64).T  # (nq, nlist)
        uncentred = 1 - cq[:, lists] - f[:, 1][None, :] * (rq @ (sign - 0.5).T)
        centred = want[:, order] if bits == 1 else ref1[:, order]
        # (ip on offset data: the error scales with ||q - c|| ~ 10 instead of ||q|| ~ 18)
        gain = 0.75 if metric == "ip" else 0.9
        assert np.abs(centred - truth).mean() < gain * np.abs(uncentred - truth).mean()


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize(("metric", "bits"), [("l2", 1), ("cosine", 1), ("ip", 1), ("ip", 3)])
def test_ivf_batches_equal_single_queries(corpus, metric, bits, level):
    """Several queries scan the lists they share in one kernel pass (list by list after their
    nearest lists); the selection does not depend on the order: the same results as one
    query per call, with an id filter and with the re-rank, at every tier (the probes' GEMM
    reads the centroids packed once, whatever the number of queries)."""
    x, q = corpus
    with force_simd(level):
        index = sx.IVFRaBitQIndex(96, 16, bits=bits, metric=metric, rerank="memory").train(x)
        index.add(x)
    allowed = np.arange(0, 4000, 3)
    for kw in ({}, {"rerank_k": 40}, {"filter": allowed}):
        d, i = index.search(q, 10, nprobe=6, **kw)
        assert index.stats["queries"] == 40
        singles = [index.search(q[j : j + 1], 10, nprobe=6, **kw) for j in range(q.shape[0])]
        np.testing.assert_array_equal(i, np.concatenate([r.ids for r in singles]))
        np.testing.assert_array_equal(d, np.concatenate([r.distances for r in singles]))
    assert np.isin(i, allowed).all()


def test_ivf_cosine_cells(corpus):
    """cosine: a row goes to the list of its largest cosine to a centroid, and nprobe = 1
    scans the list of the query's largest cosine (float64 reference)."""
    x, q = corpus
    index = sx.IVFRaBitQIndex(96, 16, bits=1, metric="cosine").train(x)
    index.add(x)
    unit = index.centroids / np.linalg.norm(index.centroids, axis=1, keepdims=True)
    xs = x / np.linalg.norm(x, axis=1, keepdims=True)
    state = index._core.state()
    by_id = np.empty(x.shape[0], dtype=np.int64)
    by_id[state["ids"][state["slots"]]] = state["lists"]
    cos = xs.astype(np.float64) @ unit.T.astype(np.float64)
    top2 = np.sort(cos, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5  # (float32 near-ties may go either way)
    np.testing.assert_array_equal(by_id[clear], cos.argmax(axis=1)[clear])
    qs = q / np.linalg.norm(q, axis=1, keepdims=True)
    best = (qs.astype(np.float64) @ unit.T.astype(np.float64)).argmax(axis=1)
    _, ids = index.search(q, 5, nprobe=1)
    for i in range(q.shape[0]):
        assert (by_id[ids[i][ids[i] >= 0]] == best[i]).all()


@pytest.mark.parametrize("nprobe", [1, 3, 5, 12, 20, 31])
def test_ivf_scans_exactly_the_nprobe_nearest_lists(corpus, nprobe):
    """l2: a search scans the nprobe lists of smallest ||q - c|| (float64 reference), every
    row of them and no other, one query at a time and in a batch (which picks its probes in
    another order: the nearest two first, the others as a set)."""
    x, q = corpus
    x, q = x[:1200], q[:24]
    index = sx.IVFRaBitQIndex(96, 32, bits=1, metric="l2").train(x)
    index.add(x)
    state = index._core.state()
    by_id = np.empty(x.shape[0], dtype=np.int64)
    by_id[state["ids"][state["slots"]]] = state["lists"]
    sizes = np.bincount(by_id, minlength=32)
    c = index.centroids.astype(np.float64)
    d2 = ((q.astype(np.float64)[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    order = np.argsort(d2, axis=1)
    batch = index.search(q, x.shape[0], nprobe=nprobe).ids
    checked = 0
    for i in range(q.shape[0]):
        ranked = d2[i, order[i]]
        if nprobe < 32 and ranked[nprobe] - ranked[nprobe - 1] < 1e-4 * ranked[nprobe]:
            continue  # (a float32 near-tie at the boundary may go either way)
        checked += 1
        want = set(order[i, :nprobe].tolist())
        single = index.search(q[i : i + 1], x.shape[0], nprobe=nprobe).ids[0]
        for got in (batch[i], single):
            got = got[got >= 0]
            assert set(by_id[got].tolist()) <= want
            assert got.size == sizes[sorted(want)].sum()
    assert checked >= q.shape[0] - 2


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_ivf_lists_trained_as_rows_are_assigned(corpus, metric):
    """ip: the lists come from inner-product k-means (a point joins the centroid of largest
    <x, c>), as rows are assigned and probes rank lists; l2 / cosine from l2 k-means (cosine on
    the unit rows). Every ip row sits in the list of its largest <x, c> (float64 reference)."""
    from simdex.kmeans import kmeans

    x, _ = corpus
    index = sx.IVFRaBitQIndex(96, 16, bits=1, metric=metric).train(x, seed=3, threads=1)
    a = sx.kernels.normalize(x) if metric == "cosine" else x
    expected, labels = kmeans(a, 16, n_iter=10, seed=3, max_samples=256 * 16, threads=1,
                              metric="ip" if metric == "ip" else "l2")
    np.testing.assert_array_equal(index.centroids, expected)
    again = sx.IVFRaBitQIndex(96, 16, bits=1, metric=metric).train(x, seed=3, threads=2)
    np.testing.assert_array_equal(again.centroids, index.centroids)  # seeded: the same lists
    if metric != "ip":
        return
    dots = x.astype(np.float64) @ index.centroids.T.astype(np.float64)
    assert (labels == dots.argmax(1)).all()
    index.add(x)
    state = index._core.state()
    by_id = np.empty(x.shape[0], dtype=np.int64)
    by_id[state["ids"][state["slots"]]] = state["lists"]
    top2 = np.sort(dots, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4 * np.abs(top2[:, 1]).max()  # float32 near-ties
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(by_id[clear], dots.argmax(axis=1)[clear])


@pytest.mark.parametrize("nlist", [1, 8])
def test_block_skipping_with_shifts_and_dots(corpus, nlist):
    """IVF rows carry shifts <xbar, R(c - g)>, ip rows their <r, c>: the lists' skipping
    threshold (from the smallest query-independent term) must still keep the exact top k
    (offset data for ip: <r, c> spreads widely)."""
    x, q = corpus
    for metric in ("l2", "cosine", "ip"):
        xs, qs = (x + 1.5, q + 1.5) if metric == "ip" else (x, q)
        kw = dict(bits=1, metric=metric, eps0=3.0)
        index = sx.RaBitQIndex(96, **kw) if nlist == 1 else sx.IVFRaBitQIndex(96, nlist, **kw)
        if nlist > 1:
            index.train(xs)
        index.add(xs)
        probe = {} if nlist == 1 else {"nprobe": nlist}
        d_all, _ = index.search(qs, 4000, **probe)
        d, _ = index.search(qs, 10, **probe)
        assert index.stats["scanned"] < 0.85 * 40 * 4000  # (flat ip, offset: 0.81)
        np.testing.assert_array_equal(d, d_all[:, :10])


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("bits", [1, 3])
def test_block_skipping_keeps_the_top_k(corpus, metric, bits):
    """Blocks are skipped once the selection is full, from bounds on the list's factors; with
    k = n nothing can be skipped, so its first ten are the reference."""
    x, q = corpus
    index = sx.RaBitQIndex(96, bits=bits, metric=metric, eps0=3.0)
    index.add(x)
    d_all, i_all = index.search(q, 4000)
    assert index.stats["scanned"] == 40 * 4000
    d, i = index.search(q, 10)
    if bits == 1 and metric == "ip":  # (l2: the rows' norms spread the bound; B > 1: the error)
        assert index.stats["scanned"] < 0.8 * 40 * 4000
    if bits == 1:  # the 1-bit estimate is the ranking: exactly the same top 10
        np.testing.assert_array_equal(d, d_all[:, :10])
    else:  # rows are refined when their 1-bit lower bound allows: at eps0 = 3 nearly all
        assert (i == i_all[:, :10]).mean() >= 0.97


def test_pruning_keeps_results(corpus):
    x, q = corpus
    index = sx.RaBitQIndex(96, bits=4, rerank="memory")
    index.add(x)
    d_wide, i_wide = index.search(q, 10, rerank_k=200, eps0=50.0)  # bound too wide to prune
    assert index.stats["pruned"] == 0
    d, i = index.search(q, 10, rerank_k=200)
    assert index.stats["pruned"] > 0.5 * index.stats["candidates"]
    assert (i == i_wide).mean() >= 0.99
    np.testing.assert_allclose(d[i == i_wide], d_wide[i == i_wide])


def test_pruning_with_fewer_than_twice_k_candidates(corpus):
    """The re-rank prunes on the k-th exact distance as soon as k rows were re-ranked, also
    when rerank_k < 2k (the selection used to get a limit only from 2k entries on, so a
    re-rank of 20 candidates for k = 10 never pruned)."""
    x, q = corpus
    index = sx.RaBitQIndex(96, bits=4, rerank="memory")
    index.add(x)
    d_wide, i_wide = index.search(q, 10, rerank_k=20, eps0=50.0)
    assert index.stats["pruned"] == 0
    d, i = index.search(q, 10, rerank_k=20)
    assert index.stats["pruned"] > 0
    assert index.stats["reranked"] + index.stats["pruned"] == index.stats["candidates"]
    assert (i == i_wide).mean() >= 0.99
    np.testing.assert_allclose(d[i == i_wide], d_wide[i == i_wide])


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_ivf_index(corpus, metric):
    x, q = corpus
    index = sx.IVFRaBitQIndex(96, 16, bits=2, metric=metric, rerank="memory").train(x)
    index.add(x)
    _, ids = index.search(q, 10, nprobe=16)
    truth = _truth(x, q, metric)
    assert sx.recall_at_k(ids, truth, 10) >= 0.97
    _, few = index.search(q, 10, nprobe=4)
    assert index.stats["scanned"] < 0.6 * 40 * 4000
    assert sx.recall_at_k(few, truth, 10) >= 0.6
    with pytest.raises(ValueError, match="nprobe"):
        index.search(q, 10, nprobe=17)
    with pytest.raises(ValueError, match="not trained"):
        sx.IVFRaBitQIndex(96, 16).add(x)


def test_same_results_at_every_simd_tier(corpus):
    """Codes, fast-scan sums and estimates are integer or baseline-code arithmetic: identical
    at every tier. Re-ranked distances come from the tier's float kernels (summation order):
    the same ids, distances within rounding."""
    x, q = corpus
    runs = []
    for level in available_levels():
        with force_simd(level):
            run = []
            cases = ((1, "l2"), (3, "l2"), (1, "cosine"), (2, "cosine"), (1, "ip"), (3, "ip"))
            for bits, metric in cases:
                index = sx.RaBitQIndex(96, bits=bits, metric=metric)
                index.add(x)
                run.append(index.search(q, 10) + (dict(index.stats),))
            index = sx.RaBitQIndex(96, bits=2, rerank="memory")
            index.add(x)
            run.append(index.search(q, 10, rerank_k=50) + (dict(index.stats),))
            runs.append(run)
    for run in runs[1:]:
        for (d, i, s), (d0, i0, s0) in zip(run[:6], runs[0][:6], strict=True):
            np.testing.assert_array_equal(d, d0)
            np.testing.assert_array_equal(i, i0)
            assert s == s0
        np.testing.assert_array_equal(run[6][1], runs[0][6][1])
        np.testing.assert_allclose(run[6][0], runs[0][6][0], rtol=1e-5)


def test_remove_reuses_slots_and_rerank_rows(corpus):
    x, q = corpus
    index = sx.RaBitQIndex(96, bits=2, rerank="memory")
    index.add(x[:1000])
    assert index.remove(np.arange(0, 1000, 2)) == 500
    assert index.remove([0, 999999]) == 0
    _, ids = index.search(x[:50], 5)
    assert not (np.isin(ids, np.arange(0, 1000, 2))).any()
    new = index.add(x[2000:2100], ids=np.arange(5000, 5100))
    assert index._slot_count == 1000  # freed slots were reused
    dist, ids = index.search(x[2000:2100], 1)
    np.testing.assert_array_equal(ids[:, 0], new)  # each finds itself through its re-rank row
    np.testing.assert_allclose(dist[:, 0], 0.0, atol=1e-3)
    np.testing.assert_allclose(index.reconstruct([5003]), x[2003:2004])


def test_filters(corpus):
    x, q = corpus
    index = sx.RaBitQIndex(96, bits=1, rerank="memory")
    index.add(x)
    allowed = np.arange(0, 4000, 3)
    _, ids = index.search(q, 10, filter=allowed)
    assert np.isin(ids, allowed).all()
    mask = np.zeros(4000, dtype=bool)
    mask[[5, 17]] = True
    _, ids = index.search(q[:2], 4, filter=mask)
    assert set(ids[0, :2].tolist()) == {5, 17} and (ids[:, 2:] == -1).all()


@pytest.mark.parametrize("rerank", [None, "memory", "file"])
def test_save_load_pickle(corpus, tmp_path, rerank):
    import pickle

    x, q = corpus
    where = str(tmp_path / "rows.f32") if rerank == "file" else rerank
    index = sx.IVFRaBitQIndex(96, 8, bits=3, metric="ip", rerank=where, seed=4).train(x)
    index.add(x[:2000], ids=np.arange(2000) * 3)
    index.remove([3, 6])
    want = index.search(q, 10, nprobe=3)
    path = tmp_path / "index.sdx"
    index.save(path)
    loaded = sx.load(path, rerank=where if rerank == "file" else None)
    for other in (loaded, pickle.loads(pickle.dumps(index))):
        got = other.search(q, 10, nprobe=3)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)
        assert len(other) == 1998 and 3 not in other and 9 in other
    assert repr(loaded).startswith("IVFRaBitQIndex(dim=96, metric='ip', nlist=8, bits=3")


# ---- file format 2: the ip rows' <x - c, c>; version-1 files -----------------------------

DATA = pathlib.Path(__file__).parent / "data"


def _as_version_1(index) -> bytes:
    """The file a version-1 simdex wrote for this index: no format_version, no centre_dots."""
    params, arrays = index._state()
    params = {k: v for k, v in params.items() if k != "format_version"}
    arrays = {k: v for k, v in arrays.items() if k != "centre_dots"}
    return _format.dumps(index.kind, params, arrays)


def _exact_dots(index, x):
    """float64 <x - c, c> of every live row in the core's export order (ids = row numbers)."""
    state = index._core.state()
    c = index.centroids.astype(np.float64)[state["lists"]]
    return ((x[state["ids"][state["slots"]]].astype(np.float64) - c) * c).sum(1)


def _uncentred_reference(index, q):
    """float64 version-1 ip estimate of every live row at the stored level (1-bit for B = 1,
    full for B > 1): 1 - <c, q> - scale <xbar, R q>, as (ids, estimates (nq, n)); and the
    estimate's code-side <r, c> = scale <xbar, R c> per row."""
    quant = index.quantizer
    state = index._core.state()
    u, f = unpack(state["rows"], quant)
    xbar = u - ((1 << quant.bits) - 1) / 2
    scale = f[:, 1 if quant.bits == 1 else 3].astype(np.float64)
    cents = index.centroids.astype(np.float64)[state["lists"]]
    code_rc = scale * (xbar * ref_rotate(cents, quant)).sum(1)
    rq = ref_rotate(q.astype(np.float64), quant)
    est = 1 - q.astype(np.float64) @ cents.T - scale[None, :] * (rq @ xbar.T)
    return state["ids"][state["slots"]], est, code_rc


def _rounding(index, v):
    """Largest rounding of an estimate from a rotated query v (nq, D) at the stored level:
    6-bit tables (B = 1) or query_bits planes (B > 1) (as _residual_reference)."""
    quant = index.quantizer
    state = index._core.state()
    u, f = unpack(state["rows"], quant)
    D, B = quant.padded_dim, quant.bits
    if B == 1:
        step = np.abs(v).reshape(v.shape[0], -1, 4).sum(2).max(1) / TABLE_TOP
        return f[None, :, 1] * (D / 4) * step[:, None] / 2 + 1e-4
    xbar = np.abs(u - ((1 << B) - 1) / 2).sum(1)
    delta = (v.max(1) - v.min(1)) / (2**quant.query_bits - 1)
    return f[None, :, 3] * xbar[None, :] * delta[:, None] / 2 + 1e-4


def test_ip_files_carry_the_centre_dots(corpus, tmp_path):
    """Format version 2: an ip index stores <x - c, c> per code row (computed in C++ from the
    float row at add); files of l2 / cosine indexes hold nothing more per vector."""
    import pickle

    x, q = corpus
    flat = sx.RaBitQIndex(96, bits=2, metric="ip")
    ivf = sx.IVFRaBitQIndex(96, 8, bits=1, metric="ip").train(x)
    for index in (flat, ivf):
        index.add(x[:1000])
        index.remove(np.arange(0, 1000, 7))  # rows move inside their lists: dots move along
        params, arrays = index._state()
        assert params["format_version"] == 2
        exact = _exact_dots(index, x)
        np.testing.assert_allclose(arrays["centre_dots"], exact, rtol=1e-5, atol=1e-5)
        want = index.search(q, 10)
        path = tmp_path / f"{index.kind}.sdx"
        index.save(path)
        for other in (sx.load(path), pickle.loads(pickle.dumps(index))):
            np.testing.assert_array_equal(other._core.state()["dots"], arrays["centre_dots"])
            got = other.search(q, 10)
            np.testing.assert_array_equal(got.ids, want.ids)
            np.testing.assert_array_equal(got.distances, want.distances)
        # a batch answers as one query per call
        singles = [index.search(q[j], 10) for j in range(q.shape[0])]
        np.testing.assert_array_equal(want.ids, np.stack([r.ids for r in singles]))
    for metric in ("l2", "cosine"):
        other = sx.IVFRaBitQIndex(96, 8, bits=1, metric=metric).train(x)
        other.add(x[:100])
        params, arrays = other._state()
        assert "centre_dots" not in arrays and "dots" not in other._core.state()
        assert arrays["codes"].shape[1] == other.code_bytes == 96 // 8 + 4 + 12


def test_ip_files_of_version_1_with_rerank_rows(corpus):
    """A version-1 ip file with re-rank rows: <x - c, c> is recomputed from them, so the
    loaded index is the one this version builds (same dots, same results)."""
    x, q = corpus
    flat = sx.RaBitQIndex(96, bits=2, metric="ip", rerank="memory")
    ivf = sx.IVFRaBitQIndex(96, 8, bits=1, metric="ip", rerank="memory").train(x)
    for index in (flat, ivf):
        index.add(x[:1000])
        index.remove(np.arange(0, 1000, 7))
        loaded = _format.loads(_as_version_1(index))
        np.testing.assert_array_equal(loaded._core.state()["dots"], index._core.state()["dots"])
        for kw in ({}, {"rerank_k": 30}):
            want, got = index.search(q, 10, **kw), loaded.search(q, 10, **kw)
            np.testing.assert_array_equal(got.ids, want.ids)
            np.testing.assert_array_equal(got.distances, want.distances)
    # the committed version-1 file (flat, 2 bits): its dots are those of its re-rank rows
    fixture = sx.load(DATA / "rabitq-ip-v1.sdx")
    rows = fixture.reconstruct(fixture.ids)
    state = fixture._core.state()
    by_id = dict(zip(fixture.ids.tolist(), rows, strict=True))
    x64 = np.stack([by_id[i] for i in state["ids"][state["slots"]]]).astype(np.float64)
    c = fixture.centroids.astype(np.float64)[0]
    np.testing.assert_allclose(state["dots"], (x64 - c) @ c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", [1, 3])
def test_ip_files_of_version_1_without_rows(corpus, bits):
    """A version-1 ip file without re-rank rows: each row's <r, c> becomes its code's own
    estimate scale <xbar, R c> (full level), which makes its estimate the version-1 uncentred
    one, 1 - <c, q> - scale <xbar, R q> (float64 reference), up to the query's rounding (now
    of R(q - g), before of R q); rows added after the load get the exact value."""
    x, q = corpus
    q = q[:6]
    kw = dict(bits=bits, metric="ip", rotation="dense", query_bits=8, eps0=50.0)
    index = sx.IVFRaBitQIndex(96, 8, **kw).train(x)
    index.add(x[:1500])
    loaded = _format.loads(_as_version_1(index))
    ids, ref, code_rc = _uncentred_reference(loaded, q)
    np.testing.assert_allclose(loaded._core.state()["dots"], code_rc, rtol=1e-5, atol=1e-4)
    dist, got = loaded.search(q, 1500, nprobe=8)
    g = loaded.centroids.astype(np.float64).mean(0)
    tol = _rounding(loaded, ref_rotate(q.astype(np.float64) - g, loaded.quantizer))
    pos = np.argsort(ids)[got]  # ids are row numbers
    assert (np.abs(dist - np.take_along_axis(ref, pos, 1)) <= np.take_along_axis(tol, pos, 1)).all()
    loaded.add(x[1500:1600], ids=np.arange(1500, 1600))
    state = loaded._core.state()
    new = state["ids"][state["slots"]] >= 1500
    exact = _exact_dots(loaded, x)[new]
    np.testing.assert_allclose(state["dots"][new], exact, rtol=1e-5, atol=1e-5)
    # the committed version-1 file (IVF, 1 bit, hadamard): the same ids per query as the
    # version that wrote it (whose uint8 tables ordered two near ties the other way round: the
    # tables are 6-bit now), each distance within its rounding of the float64 uncentred
    # estimate, then and now
    fixture = sx.load(DATA / "approximate" / "ivf-rabitq-ip-v1.sdx")
    expected = np.load(DATA / "approximate" / "ivf-rabitq-ip-v1.npz")
    fq = expected["queries"]
    dist, got = fixture.search(fq, int(expected["k"]))
    np.testing.assert_array_equal(np.sort(got, 1), np.sort(expected["ids"], 1))
    ids, ref, _ = _uncentred_reference(fixture, fq)
    order = np.argsort(ids)
    pos = order[np.searchsorted(ids[order], got)]
    g = fixture.centroids.astype(np.float64).mean(0)
    for found, rotated in ((dist, fq.astype(np.float64) - g), (expected["distances"], fq)):
        tol = _rounding(fixture, ref_rotate(rotated.astype(np.float64), fixture.quantizer))
        err = np.abs(found - np.take_along_axis(ref, pos, 1))
        assert (err <= np.take_along_axis(tol, pos, 1)).all()


@pytest.mark.parametrize("name", ["ivf-rabitq-v1", "ivf-rabitq-ip-v2"])
def test_files_whose_one_bit_estimates_moved(name):
    """Committed IVF 1-bit files without re-rank rows: the distances they return are the 1-bit
    estimates, and the tables that round them went from uint8 to 6 bits after the files were
    written (so near ties may order the other way round; the exact comparison of test_format
    does not apply). Now and as written: each distance within its rounding of the float64
    estimate; now, with every list probed, no row left out whose estimate beats the k-th by
    more than the rounding; at the default nprobe mostly the rows the writing version found."""
    index = sx.load(DATA / "approximate" / f"{name}.sdx")
    expected = np.load(DATA / "approximate" / f"{name}.npz")
    fq = expected["queries"]
    if index.metric == "cosine":  # the index scores unit queries
        fq = fq / np.linalg.norm(fq, axis=1, keepdims=True)
    ids, ref1, _, tol1, _ = _residual_reference(index, fq)
    order = np.argsort(ids)
    now = index.search(fq, int(expected["k"]), nprobe=index.nlist)  # every row probed
    written = index.search(fq, int(expected["k"]))
    assert np.isin(written.ids, expected["ids"]).mean() >= 0.8
    for dist, got, every in (*now, True), (expected["distances"], expected["ids"], False):
        pos = order[np.searchsorted(ids[order], got)]
        np.testing.assert_array_equal(ids[pos], got)
        err = np.abs(dist - np.take_along_axis(ref1, pos, 1))
        assert (err <= np.take_along_axis(tol1, pos, 1)).all()
        if every:
            # a row left out was computed >= the k-th distance, so within its rounding of it
            missed = np.ones(ref1.shape, bool)
            np.put_along_axis(missed, pos, False, 1)
            assert not ((ref1 + tol1 < dist[:, -1:]) & missed).any()


def test_untrusted_files(corpus, tmp_path):
    from simdex import _format

    x, _ = corpus
    index = sx.RaBitQIndex(96, bits=2)
    index.add(x[:100])
    params, arrays = index._state()

    def load_with(**changes):
        a = dict(arrays)
        a.update(changes)
        return _format.loads(_format.dumps("rabitq", params, a), None)

    load_with()  # unchanged: loads
    codes = arrays["codes"].copy()
    codes[3, -4:] = np.frombuffer(np.float32(np.nan).tobytes(), np.uint8)
    with pytest.raises(ValueError, match="codes"):
        load_with(codes=codes)
    with pytest.raises(ValueError, match="list"):
        load_with(lists=np.full(100, 5, np.int64))
    slots = arrays["slots"].copy()
    slots[1] = slots[0]
    with pytest.raises(ValueError, match="slot"):
        load_with(slots=slots)
    with pytest.raises(ValueError, match="rotation"):
        load_with(rotation_params=arrays["rotation_params"] * 2)
    with pytest.raises(ValueError, match="codes"):
        load_with(codes=codes[:50])


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_untrusted_centre_dots(corpus, kind):
    """The ip rows' centre dots of a file: NaN / inf / a wrong length or dtype / missing in a
    version-2 file raise ValueError naming the field, as does an unknown format version."""
    x, _ = corpus
    index = sx.RaBitQIndex(96, bits=2, metric="ip")
    if kind == "ivf":
        index = sx.IVFRaBitQIndex(96, 4, bits=1, metric="ip").train(x)
    index.add(x[:100])
    params, arrays = index._state()

    def load_with(drop=(), params_change=None, **changes):
        a = {k: v for k, v in arrays.items() if k not in drop}
        a.update(changes)
        p = dict(params, **(params_change or {}))
        return _format.loads(_format.dumps(index.kind, p, a), None)

    assert len(load_with()) == 100
    dots = arrays["centre_dots"]
    for value in (np.nan, np.inf, -np.inf):
        bad = dots.copy()
        bad[7] = value
        with pytest.raises(ValueError, match="'centre_dots'.*NaN or infinite"):
            load_with(centre_dots=bad)
    with pytest.raises(ValueError, match="'centre_dots'.*shape"):
        load_with(centre_dots=dots[:99])
    with pytest.raises(ValueError, match="'centre_dots'.*shape"):
        load_with(centre_dots=np.concatenate([dots, dots[:1]]))
    with pytest.raises(ValueError, match="'centre_dots'.*float32"):
        load_with(centre_dots=dots.astype(np.float64))
    with pytest.raises(ValueError, match="'centre_dots'.*above"):
        load_with(centre_dots=np.full_like(dots, 1e30))
    with pytest.raises(ValueError, match="'centre_dots'.*missing"):
        load_with(drop=("centre_dots",))
    with pytest.raises(ValueError, match="'format_version'.*newer simdex"):
        load_with(params_change={"format_version": 3})
    for bad_version in (0, "2", 2.0, None):
        with pytest.raises(ValueError, match="'format_version'"):
            load_with(params_change={"format_version": bad_version})


def test_index_errors(corpus):
    x, q = corpus
    with pytest.raises(ValueError, match="metric"):
        sx.RaBitQIndex(96, metric="hamming")
    with pytest.raises(ValueError, match="bits"):
        sx.RaBitQIndex(96, bits=0)
    index = sx.RaBitQIndex(96)
    d, i = index.search(q[:2], 3)
    assert (i == -1).all() and np.isinf(d).all()
    index.add(x[:100])
    with pytest.raises(ValueError, match="rerank_k"):
        index.search(q, 5, rerank_k=50)
    with pytest.raises(ValueError, match="eps0"):
        index.search(q, 5, eps0=float("nan"))
    with pytest.raises(ValueError, match="shape"):
        index.search(q[:, :5], 5)
    with pytest.raises(ValueError, match="already holds"):
        index.train(x)
    assert index.code_bytes == 128 // 8 + 12  # 1 bit: D / 8 bytes + 3 factors


_FAILED_ROW_WRITE = """
import os, resource, signal, sys
import numpy as np
import simdex as sx
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
side, kind, metric = sys.argv[1], sys.argv[2], sys.argv[3]
x = np.random.default_rng(0).standard_normal((700, 16)).astype(np.float32)
if kind == "flat":
    index = sx.RaBitQIndex(16, bits=2, metric=metric, rerank=side)
else:
    index = sx.IVFRaBitQIndex(16, 4, bits=2, metric=metric, rerank=side).train(x, n_iter=3)
index.add(x[:600])
index.remove([3, 70, 599])  # free slots: the failed add would reuse them first
q = x[:5] + 0.01

def snapshot():
    r = index.search(q, 7, rerank_k=40)
    kept = index.reconstruct([5, 598]).tolist()
    ids = sorted(index.ids.tolist())
    return len(index), index._slot_count, ids, r.ids.tolist(), r.distances.tolist(), \
        dict(index.stats), index.nbytes, kept

before = snapshot()
resource.setrlimit(resource.RLIMIT_FSIZE, (600 * 64 + 100, resource.RLIM_INFINITY))
try:
    index.add(x[600:])  # sequential ids: the next id is given back too
except OSError as e:
    print("refused", e.errno)
assert os.path.getsize(side) == 600 * 64, os.path.getsize(side)
assert snapshot() == before
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
got = index.add(x[600:])
np.testing.assert_array_equal(got, np.arange(600, 700))  # as if the failed add never ran
assert len(index) == 697 and os.path.getsize(side) == 697 * 64, os.path.getsize(side)
want = x[[650, 5]]
if metric == "cosine":
    want = want / np.linalg.norm(want, axis=1, keepdims=True)
np.testing.assert_allclose(index.reconstruct([650, 5]), want, rtol=1e-6)
r = index.search(x[650:652], 1, rerank_k=40)
assert r.ids[:, 0].tolist() == [650, 651], r.ids
print("ok")
"""


@pytest.mark.parametrize("kind,metric", [("flat", "l2"), ("ivf", "ip"), ("ivf", "cosine")])
def test_a_failed_rerank_row_write_leaves_the_index_as_before(tmp_path, kind, metric):
    """The core writes the re-rank rows of an add first (RaBitQIndexCore::add): a real failed
    write (RLIMIT_FSIZE: EFBIG, as a full disk) leaves size, ids, slots, next id, search
    results and stats as before, and the same add then succeeds with the same ids."""
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _FAILED_ROW_WRITE, str(tmp_path / "v.f32"), kind, metric],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["refused", "27", "ok"]
