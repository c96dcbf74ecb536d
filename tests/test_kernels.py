"""Every kernel x storage dtype x metric at every SIMD level, against float64 NumPy."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import simdex as sx
from conftest import kernel_tier
from simdex import _core, _storage
from simdex.kernels import available_levels, force_simd

TAIL_DIMS = [1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 127, 129, 384, 1000]
U = 2.0 ** -24  # float32 unit roundoff
STORAGES = ["float32", "float16", "bfloat16", "int8"]


def stored_rows(x: np.ndarray, storage: str):
    """Encode rows as the index would; return (rows, lo, scale, exact float64 values)."""
    lo = scale = None
    if storage == "int8":
        lo, scale = _storage.train_int8(x)
    rows = _storage.encode(x, storage, lo, scale)
    if storage == "int8":  # the kernel sees lo + scale * code, computed in float64 here
        exact = lo.astype(np.float64) + scale.astype(np.float64) * rows.astype(np.float64)
    else:
        exact = _storage.decode(rows, storage).astype(np.float64)
    return np.ascontiguousarray(rows), lo, scale, exact


def reference(q: np.ndarray, x: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """float64 distances (q, n) and a bound on the float32 error of each."""
    q = q.astype(np.float64)
    if metric == "l2":
        diff = q[:, None, :] - x[None, :, :]
        terms = (diff ** 2).sum(-1)
        magnitude = terms + (np.abs(q[:, None, :]) * np.abs(x[None, :, :])).sum(-1)
        return terms, magnitude
    return 1.0 - q @ x.T, np.abs(q) @ np.abs(x).T


def dims_and_data(draw, max_rows=9):
    d = draw(st.sampled_from(TAIL_DIMS) | st.integers(1, 1000))
    n = draw(st.integers(1, max_rows))
    nq = draw(st.integers(1, 5))
    elements = st.floats(-4, 4, width=32, allow_subnormal=False)
    x = draw(hnp.arrays(np.float32, (n, d), elements=elements))
    q = draw(hnp.arrays(np.float32, (nq, d), elements=elements))
    return d, x, q


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("metric", ["l2", "ip"])
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_dense_kernels_match_float64(level, storage, metric, data):
    d, x, q = dims_and_data(data.draw)
    rows, lo, scale, exact = stored_rows(x, storage)
    ref, magnitude = reference(q, exact, metric)
    if storage == "int8" and metric == "ip":  # computed as <q, lo> + <q * scale, code>
        parts = np.abs(lo.astype(np.float64)) + np.abs(scale.astype(np.float64) * rows)
        magnitude = np.abs(q.astype(np.float64)) @ parts.T
    tol = 4 * (d + 2) * U * magnitude + 2 * U * np.abs(ref) + 1e-6
    if storage == "int8" and metric == "l2":
        tol = tol + 4 * (d + 2) * U * (np.abs(q) ** 2).sum(1)[:, None]
    with force_simd(level):
        pair = _core.pair_distances(rows, len(rows), q, len(q), storage, metric, d, lo, scale)
        rows_path = _core.pairwise(rows, len(rows), q, len(q), storage, metric, d, lo, scale, threads=1)
    assert np.all(np.abs(pair - ref) <= tol), np.max(np.abs(pair - ref) - tol)
    if storage == "float32" and metric == "l2" and len(q) >= 4:  # GEMM path: |q|^2 + |x|^2 - 2<q, x>
        tol = tol + 8 * (d + 2) * U * ((q.astype(np.float64) ** 2).sum(1)[:, None] + (exact ** 2).sum(1)[None])
    assert np.all(np.abs(rows_path - ref) <= tol), np.max(np.abs(rows_path - ref) - tol)


@pytest.mark.parametrize("level", available_levels())
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_hamming_matches_numpy(level, data):
    nbytes = data.draw(st.integers(1, 300))
    n = data.draw(st.integers(1, 20))
    nq = data.draw(st.integers(1, 9))
    codes = data.draw(hnp.arrays(np.uint8, (n, nbytes)))
    queries = data.draw(hnp.arrays(np.uint8, (nq, nbytes)))
    ref = np.unpackbits(queries[:, None, :] ^ codes[None, :, :], axis=-1).sum(-1)
    with force_simd(level):
        pair = _core.pair_distances(codes, n, queries, nq, "bits", "hamming", nbytes * 8)
        got = sx.distances(queries, codes, "hamming")
        k = min(3, n)
        D, _ = sx.knn(queries, codes, k, "hamming")
    np.testing.assert_array_equal(pair, ref)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(D, np.sort(ref, axis=1)[:, :k])


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_distances_and_knn_match_brute_force(level, metric):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 65)).astype(np.float32)
    q = rng.standard_normal((11, 65)).astype(np.float32)
    from conftest import brute_force

    ref = brute_force(q, x, metric)
    with force_simd(level):
        got = sx.distances(q, x, metric)
        D, I = sx.knn(q, x, 7, metric)
        D1, I1 = sx.knn(q[0], x, 7, metric)
    np.testing.assert_allclose(got, ref, atol=2e-4 * max(1, np.abs(ref).max()))
    np.testing.assert_allclose(D, np.sort(ref, axis=1)[:, :7], atol=2e-4 * max(1, np.abs(ref).max()))
    # returned ids really have the returned distances
    np.testing.assert_allclose(np.take_along_axis(ref, I, 1), D, atol=2e-4 * max(1, np.abs(ref).max()))
    assert D1.shape == (7,) and I1.shape == (7,)
    np.testing.assert_allclose(D1, D[0], rtol=1e-5, atol=1e-5)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
@example(data=None)
def test_select_smallest_puts_the_k_smallest_first(data):
    """select_smallest (the IVF probe choice): the first k keys are the k smallest, each <= every
    key after them, the keys are a permutation of the input; distinct keys, heavy repeats
    (each pass fixes one value's place), sorted and reversed input, every k from 0 to n."""
    if data is None:  # one long run of one value, and sizes around the small-range cut-off
        for n in (0, 1, 16, 17, 18, 300):
            for keys in (np.full(n, 7, np.uint64), np.arange(n, dtype=np.uint64)[::-1].copy()):
                for k in {0, min(1, n), n // 2, max(n - 1, 0), n}:
                    out = _core.select_smallest(keys, k)
                    assert sorted(out.tolist()) == sorted(keys.tolist())
                    assert sorted(out[:k].tolist()) == sorted(keys.tolist())[:k]
        return
    n = data.draw(st.integers(0, 400))
    top = data.draw(st.sampled_from([3, 50, 2**64 - 1]))
    keys = data.draw(hnp.arrays(np.uint64, n, elements=st.integers(0, top)))
    if data.draw(st.booleans()):
        keys = np.sort(keys)[:: data.draw(st.sampled_from([1, -1]))].copy()
    k = data.draw(st.integers(0, n))
    out = _core.select_smallest(keys, k)
    assert sorted(out.tolist()) == sorted(keys.tolist())
    assert sorted(out[:k].tolist()) == sorted(keys.tolist())[:k]
    if 0 < k < n:
        assert out[:k].max() <= out[k:].min()


def test_select_smallest_rejects_bad_input():
    with pytest.raises(ValueError, match="k must be <= len"):
        _core.select_smallest(np.arange(3, dtype=np.uint64), 4)
    with pytest.raises(ValueError, match="1-d"):
        _core.select_smallest(np.zeros((2, 2), np.uint64), 1)


@pytest.mark.parametrize("k", [1, 7, 31, 32, 33, 80])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_knn_keeps_the_k_smallest_with_ties_by_row(k, data):
    # small integer coordinates: exact float32 distances with many ties; the selection keeps
    # the k smallest by (distance, row), both below and above TopK's sorted-array bound (32)
    n = data.draw(st.integers(1, 300))
    d = data.draw(st.integers(1, 6))
    x = data.draw(hnp.arrays(np.float32, (n, d), elements=st.integers(-2, 2).map(float)))
    q = data.draw(hnp.arrays(np.float32, (3, d), elements=st.integers(-2, 2).map(float)))
    ref = ((q[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    for level in available_levels():
        with force_simd(level):
            one = sx.knn(q[0], x, k)
            many = sx.knn(q, x, k, threads=1)
        for i, (dist, ids) in enumerate([(one.distances[None], one.ids[None]), (many.distances, many.ids)]):
            for row in range(dist.shape[0]):
                want = np.lexsort((np.arange(n), ref[row]))[:k]
                m = len(want)
                assert ids[row, :m].tolist() == want.tolist(), (level, i, row)
                assert dist[row, :m].tolist() == ref[row, want].tolist()
                assert (ids[row, m:] == -1).all() and np.isinf(dist[row, m:]).all()


def test_knn_pads_when_k_exceeds_n():
    x = np.eye(3, dtype=np.float32)
    D, I = sx.knn(x, x, 5)
    assert I.shape == (3, 5)
    assert (I[:, 3:] == -1).all() and np.isinf(D[:, 3:]).all()
    assert (I[:, 0] == np.arange(3)).all()


def test_knn_threads_agree():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5000, 32)).astype(np.float32)
    q = rng.standard_normal((3, 32)).astype(np.float32)
    a = sx.knn(q, x, 10, "ip", threads=1)
    b = sx.knn(q, x, 10, "ip", threads=2)
    np.testing.assert_allclose(a.distances, b.distances, rtol=1e-6)


@pytest.mark.parametrize(
    "bad, exc",
    [
        (lambda x: sx.knn(x, x, 0), ValueError),
        (lambda x: sx.knn(x, x, 2.5), TypeError),
        (lambda x: sx.knn(x.astype(np.int32), x, 2), TypeError),
        (lambda x: sx.knn(x[:, :3], x, 2), ValueError),
        (lambda x: sx.knn(x[None], x, 2), ValueError),
        (lambda x: sx.knn(x[:0], x, 2), ValueError),
        (lambda x: sx.knn(np.full_like(x, np.nan), x, 2), ValueError),
        (lambda x: sx.knn(x, x, 2, "manhattan"), ValueError),
        (lambda x: sx.knn(x, x, 2, threads=0), ValueError),
        (lambda x: sx.distances(x, x, "hamming"), TypeError),
    ],
)
def test_bad_input(bad, exc):
    x = np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32)
    with pytest.raises(exc) as info:
        bad(x)
    assert str(info.value)


def test_messages_say_expected_and_received():
    x = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match=r"\(n, 8\).*\(4, 3\)"):
        sx.knn(x[:, :3], x, 2)


def test_simd_level_and_features():
    assert sx.simd_level() in sx.kernels.TIERS
    feats = sx.cpu_features()
    assert isinstance(feats, dict) and all(isinstance(v, bool) for v in feats.values())
    levels = available_levels()
    assert levels[0] == "scalar"
    with force_simd("scalar"):
        assert sx.simd_level() == "scalar"
    assert sx.simd_level() == levels[-1] or os.environ.get("SIMDEX_SIMD")
    with pytest.raises(ValueError):
        with force_simd("sse9"):
            pass


def run_python(code: str, env_level: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SIMDEX_SIMD=env_level)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_env_variable_lowers_and_bad_value_warns():
    r = run_python("import simdex; print(simdex.simd_level())", "scalar")
    assert r.returncode == 0 and r.stdout.strip() == "scalar"
    r = run_python("import simdex; print(simdex.simd_level())", "bogus")
    assert r.returncode == 0 and "SIMDEX_SIMD" in r.stderr
    assert r.stdout.strip() == available_levels()[-1] or os.environ.get("SIMDEX_SIMD")


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("nq, n, d", [(260, 130, 513), (1, 192, 384), (3, 1, 7), (1000, 64, 384)])
def test_inner_products_match_float64(level, nq, n, d):
    """The plain GEMM entry (LeanVec projections): any query count, including 1."""
    rng = np.random.default_rng(nq * n + d)
    rows = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    ref = q.astype(np.float64) @ rows.astype(np.float64).T
    magnitude = np.abs(q).astype(np.float64) @ np.abs(rows).astype(np.float64).T
    with force_simd(level):
        got = _core.inner_products(rows, n, q, nq, d, threads=2)
    assert got.shape == (nq, n) and got.dtype == np.float32
    assert np.all(np.abs(got - ref) <= 4 * (d + 2) * U * magnitude + 1e-6)


@pytest.mark.parametrize("level", available_levels())
@settings(max_examples=15, deadline=None)
@example(nq=1, n=600, d=1100, seed=0)  # two row tiles, three dimension blocks
@example(nq=70, n=512, d=512, seed=1)  # exact multiples of the tiles
@example(nq=1, n=1, d=1, seed=2)
@given(
    nq=st.integers(1, 70),
    n=st.sampled_from([1, 15, 16, 17, 31, 32, 33, 256, 511, 513]) | st.integers(1, 600),
    d=st.sampled_from([1, 7, 8, 16, 384, 511, 512, 513, 1024, 1025]) | st.integers(1, 1100),
    seed=st.integers(0, 2**32 - 1),
)
def test_prepacked_rows_give_the_same_floats(level, nq, n, d, seed):
    """Rows packed once (PackedRows, what IVF centroids keep) give byte-identical inner products
    to packing them per call, in every tier that packs; scalar has nothing to pack."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    with force_simd(level):
        want = _core.inner_products(rows, n, q, nq, d, threads=2)
        got, used = _core.inner_products_prepacked(rows, n, q, nq, d, level, threads=2)
    assert used == (level != "scalar")
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("level", available_levels())
def test_prepacked_rows_of_another_tier_are_not_read(level):
    """Packed forms are tier-specific (panel width, blocks): a table whose GEMM kernels are not
    the packing tier's reads the rows themselves (what an index built before a force_simd switch
    would see); a tier that inherits its GEMM (icelake from skylake) reads them packed."""
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((100, 70)).astype(np.float32)
    q = rng.standard_normal((2, 70)).astype(np.float32)
    with force_simd(level):
        want = _core.inner_products(rows, 100, q, 2, 70)
        for other in available_levels():
            got, used = _core.inner_products_prepacked(rows, 100, q, 2, 70, other)
            same_gemm = kernel_tier("gemm", other) == kernel_tier("gemm", level)
            assert used == (same_gemm and level != "scalar")
            assert got.tobytes() == want.tobytes()
    with pytest.raises(ValueError, match="SIMD tier"):
        _core.inner_products_prepacked(rows, 100, q, 2, 70, "sse9")
    foreign = "haswell" if "neon" in available_levels() else "neon"
    with pytest.raises(ValueError, match="pack_level"):
        _core.inner_products_prepacked(rows, 100, q, 2, 70, foreign)


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("nq, n, d", [(260, 1100, 513), (13, 530, 1000), (4, 1, 1), (17, 33, 17)])
def test_gemm_tiles_across_block_boundaries(level, nq, n, d):
    """Query tiles (252), row tiles (512) and dimension blocks (512) all split here."""
    rng = np.random.default_rng(nq + n + d)
    x = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    ref, magnitude = reference(q, x.astype(np.float64), "ip")
    with force_simd(level):
        got = _core.pairwise(x, n, q, nq, "float32", "ip", d, threads=2)
        D, I = sx.knn(q, x, min(5, n), "ip")
    assert np.all(np.abs(got - ref) <= 4 * (d + 2) * U * magnitude + 2 * U * np.abs(ref) + 1e-6)
    np.testing.assert_allclose(D, np.sort(ref, 1)[:, : min(5, n)], atol=1e-3 * np.sqrt(d))


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("nbytes, k", [(2, 50), (32, 10), (47, 10), (48, 100), (64, 10), (64, 300),
                                       (96, 10), (128, 20), (200, 10)])
def test_hamming_topk_with_ties_ranges_and_mask(level, nbytes, k):
    """Counting top-k under per-query tile limits: many equal distances, code sizes with and
    without an unrolled kernel, row and query tails, ranges merged across threads, masks.
    Ties are broken by the smaller id, so ids equal a stable argsort."""
    rng = np.random.default_rng(nbytes + k)
    n, nq = 5003, 70
    codes = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    queries = rng.integers(0, 256, (nq, nbytes), dtype=np.uint8)
    ref = np.unpackbits(queries[:, None, :] ^ codes[None, :, :], axis=-1).sum(-1)
    mask = (rng.random(n) < 0.5).astype(np.uint8)
    with force_simd(level):
        D, I = _core.search(codes, n, queries, nq, k, "bits", "hamming", nbytes * 8, threads=2)
        Dm, Im = _core.search(codes, n, queries, nq, k, "bits", "hamming", nbytes * 8, mask=mask, threads=2)
        D1, I1 = _core.search(codes, n, queries[:1], 1, k, "bits", "hamming", nbytes * 8, threads=2)
    np.testing.assert_array_equal(D, np.sort(ref, 1)[:, :k])
    np.testing.assert_array_equal(I, np.argsort(ref, 1, kind="stable")[:, :k])
    np.testing.assert_array_equal(I1, I[:1])  # one query: split over row ranges
    allowed = np.where(mask[None, :] > 0, ref, 10**9)
    np.testing.assert_array_equal(Dm, np.sort(allowed, 1)[:, :k])
    np.testing.assert_array_equal(Im, np.argsort(allowed, 1, kind="stable")[:, :k])
    assert mask[Im].all()


# ---- the lean path of sx.distances (one vector against one or many) ------------------------

def general_distances(x, y, metric):
    """sx.distances through its general path (the lean one takes float32 only; the float64
    copies hold the same values, converted back exactly)."""
    x2, y2 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert _core.distances_lean(x2, y2, metric, None) is None
    return sx.distances(x2, y2, metric)


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_lean_distances_match_float64_and_the_general_path(level, metric, data):
    d = data.draw(st.sampled_from(TAIL_DIMS))
    n = data.draw(st.integers(1, 40))
    # components whose square underflows float32 (|v| < ~1e-19) make a vector count as zero
    # for cosine (distance 1): float32 cannot tell it from zero, float64 can
    elements = st.floats(-4, 4, width=32, allow_subnormal=False).filter(lambda v: v == 0 or abs(v) > 1e-18)
    x = data.draw(hnp.arrays(np.float32, (n, d), elements=elements))
    q = data.draw(hnp.arrays(np.float32, (d,), elements=elements))
    from conftest import brute_force

    ref = brute_force(q[None], x, metric)[0]
    scale = (np.abs(q).astype(np.float64) @ np.abs(x).T.astype(np.float64)) + (
        ((q.astype(np.float64) ** 2).sum() + (x.astype(np.float64) ** 2).sum(1)) if metric == "l2" else 0)
    norms = np.linalg.norm(q.astype(np.float64)) * np.linalg.norm(x.astype(np.float64), axis=1)
    if metric == "cosine":  # relative to |q| |x|
        scale = np.where(norms > 0, scale / np.maximum(norms, 1e-300), 0)
    tol = 4 * (d + 2) * U * scale + 1e-6
    with force_simd(level):
        many = sx.distances(q, x, metric)          # (n,)
        flipped = sx.distances(x, q, metric)       # (n,): the single vector may be either side
        pair = sx.distances(q, x[0], metric)       # scalar
        row = sx.distances(q[None], x, metric)     # (1, n)
        general = general_distances(q, x, metric)
    assert many.shape == flipped.shape == (n,) and row.shape == (1, n) and many.dtype == np.float32
    assert isinstance(pair, np.float32)
    assert np.all(np.abs(many - ref) <= tol), np.max(np.abs(many - ref) - tol)
    np.testing.assert_array_equal(many, flipped)
    np.testing.assert_array_equal(row[0], many)
    assert abs(float(pair) - ref[0]) <= tol[0]
    np.testing.assert_allclose(many, general, rtol=1e-5, atol=2e-5 * max(1.0, float(np.abs(ref).max())))


@pytest.mark.parametrize("level", available_levels())
def test_lean_distances_hamming_and_threads(level):
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (3000, 33), dtype=np.uint8)
    q = codes[5]
    ref = np.unpackbits(q[None] ^ codes, axis=1).sum(1)
    big = rng.standard_normal((300_000, 4)).astype(np.float32)  # above the one-thread size
    with force_simd(level):
        np.testing.assert_array_equal(sx.distances(q, codes, "hamming"), ref)
        assert sx.distances(q, codes[9], "hamming") == ref[9]
        one, two = (sx.distances(big[0], big, "l2", threads=t) for t in (1, 2))
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one, ((big - big[0]) ** 2).sum(1), rtol=1e-5, atol=1e-5)
    assert one[0] == 0


def test_lean_distances_reject_what_the_general_path_rejects():
    x = np.random.default_rng(8).standard_normal((50, 16)).astype(np.float32)
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values in 1 row"):
        sx.distances(x[0], bad, "l2")
    with pytest.raises(ValueError, match="NaN or infinite"):
        sx.distances(bad[7], x[0], "ip")
    inf = x.copy()
    inf[3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        sx.distances(x[0], inf, "cosine")
    with pytest.raises(ValueError, match="threads"):
        sx.distances(x[0], x, threads=0)
    with pytest.raises(ValueError, match="metric"):
        sx.distances(x[0], x, "manhattan")
    with pytest.raises(ValueError, match=r"\(n, 16\)"):
        sx.distances(x[0, :5], x)
    with pytest.raises(TypeError):
        sx.distances(x[0].astype(np.int32), x)
    # other float dtypes and lists still work (general path, one conversion)
    np.testing.assert_allclose(sx.distances(x[0].astype(np.float64), x), sx.distances(x[0], x), rtol=1e-6)
    np.testing.assert_allclose(sx.distances(list(map(float, x[0])), x[1]), sx.distances(x[0], x[1]), rtol=1e-6)
    # zero vectors: cosine distance 1, as the general path
    z = np.zeros(16, np.float32)
    assert sx.distances(z, x[0], "cosine") == 1.0
    np.testing.assert_array_equal(sx.distances(z, x, "cosine"), np.ones(50, np.float32))


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine", "hamming"])
def test_lean_knn_one_query_matches_the_general_path(level, metric):
    rng = np.random.default_rng(9)
    if metric == "hamming":
        x = rng.integers(0, 256, (3000, 20), dtype=np.uint8)
        x[100] = x[7]  # ties: equal distances order by row
    else:
        x = rng.standard_normal((70_000, 24)).astype(np.float32)  # threaded above ~1 MB
        x[100] = x[7]
    q = x[7] if metric == "hamming" else x[7] + np.float32(0.01)
    with force_simd(level):
        D, I = sx.knn(q, x, 10, metric)
        D2, I2 = sx.knn(q[None], x, 10, metric)
        Dg, Ig = sx.knn(np.repeat(q[None], 2, 0), x, 10, metric)  # two queries: general path
        Dp, Ip = sx.knn(q, x[:4], 6, metric)
    assert D.shape == I.shape == (10,) and D2.shape == (1, 10) and I.dtype == np.int64
    np.testing.assert_array_equal(I2[0], I)
    np.testing.assert_allclose(D, Dg[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(D, sx.distances(q, x[I], metric), rtol=1e-6, atol=1e-6)
    assert {7, 100} <= set(I[:2].tolist()) or metric in ("ip",)
    assert (np.diff(D) >= 0).all()
    assert (Ip[4:] == -1).all() and np.isinf(Dp[4:]).all() and sorted(Ip[:4].tolist()) == [0, 1, 2, 3]


def test_lean_knn_rejects_non_finite_rows():
    x = np.random.default_rng(10).standard_normal((500, 8)).astype(np.float32)
    x[42, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        sx.knn(x[0], x, 5)
    with pytest.raises(ValueError, match="k must be"):
        sx.knn(x[1], x[:10], 0)


def fastscan1_reference(blocks: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Row sums of (nblocks, m4 / 2, 32) blocks for one (m4 / 4, 128) table, straight from the
    layout in cpp/kernels/pq/pq.hpp: byte t of pair p is row t / 2 (t even) or 16 + t / 2,
    low nibble -> table at (p // 2) * 128 + (p % 2) * 32, high nibble -> 64 bytes further."""
    nblocks, pairs, _ = blocks.shape
    rows = np.array([t // 2 if t % 2 == 0 else 16 + t // 2 for t in range(32)])
    sums = np.zeros((nblocks, 32), np.int64)
    for p in range(pairs):
        low = lut[p // 2, (p % 2) * 32 : (p % 2) * 32 + 16].astype(np.int64)
        high = lut[p // 2, 64 + (p % 2) * 32 : 64 + (p % 2) * 32 + 16].astype(np.int64)
        codes = blocks[:, p, :]
        sums[:, rows] += low[codes & 15] + high[codes >> 4]
    return sums.reshape(-1)


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("m4", [4, 8, 96, 100, 256])
@pytest.mark.parametrize("nblocks", [1, 2, 3])
def test_fastscan_one_query_sums_match_numpy(level, m4, nblocks):
    rng = np.random.default_rng(m4 * 10 + nblocks)
    blocks = rng.integers(0, 256, (nblocks, m4 // 2, 32), dtype=np.uint8)
    for top in (1, 15, 63):  # 63: four entries summed as bytes reach 252
        tables = rng.integers(0, top + 1, (m4 // 4, 4, 16), dtype=np.uint8)
        tables[:, :, 15] = top  # every table reaches the bound
        lut = np.repeat(tables, 2, axis=1).reshape(m4 // 4, 128)  # each table twice (both lanes)
        with force_simd(level):
            got = _core.pq_fastscan1_sums(blocks, nblocks, m4, lut)
        np.testing.assert_array_equal(got, fastscan1_reference(blocks, lut))
    blocks[...] = 0xFF  # every row picks entry 15 of every table: the largest sums
    with force_simd(level):
        got = _core.pq_fastscan1_sums(blocks, nblocks, m4, lut)
    np.testing.assert_array_equal(got, np.full(nblocks * 32, 63 * m4, np.uint16))


def test_fastscan_one_query_rejects_bad_input():
    blocks = np.zeros((1, 4, 32), np.uint8)
    lut = np.zeros((2, 128), np.uint8)
    with pytest.raises(ValueError, match="<= 63"):
        _core.pq_fastscan1_sums(blocks, 1, 8, np.full((2, 128), 64, np.uint8))
    with pytest.raises(ValueError, match="multiple of 4"):
        _core.pq_fastscan1_sums(blocks, 1, 6, lut)
    with pytest.raises(ValueError, match="expected"):
        _core.pq_fastscan1_sums(blocks, 2, 8, lut)


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("m4", [4, 96, 256])
@pytest.mark.parametrize("nq", [1, 3, 4, 5, 6, 9, 15])
def test_fastscan_tables_pointers_match_numpy(level, m4, nq):
    """fastscan_tables_u4: queries' compact tables anywhere (repeated, out of order); every
    block whose rows reach the threshold is emitted with all 32 sums, the others never."""
    rng = np.random.default_rng(m4 * 100 + nq)
    nblocks, ntables = 3, 4
    blocks = rng.integers(0, 256, (nblocks, m4 // 2, 32), dtype=np.uint8)
    tables = rng.integers(0, 64, (ntables, m4 // 4, 4, 16), dtype=np.uint8)
    tables[:, :, :, 15] = 63  # entries reach the bound: four of them sum to 252 in a byte
    luts = np.ascontiguousarray(tables.reshape(ntables, m4 // 4, 64))  # compact: each table once
    wide = np.repeat(tables, 2, axis=2).reshape(ntables, m4 // 4, 128)  # the reference's layout
    order = rng.integers(0, ntables, nq).astype(np.int64)
    want = np.stack([fastscan1_reference(blocks, wide[t]).reshape(nblocks, 32) for t in order])
    blocks_max = np.full_like(blocks, 0xFF)  # every row takes entry 15 everywhere: sums 63 m4
    # thresholds: none pass, about half, every row (sums reach 63 m4 <= 16128)
    choices = [0, int(np.median(want)), 65535]
    thresholds = np.array([choices[q % 3] for q in range(nq)], np.uint16)
    with force_simd(level):
        masks, sums = _core.pq_fastscan_tables(
            blocks, nblocks, m4, luts, ntables, order, thresholds
        )
    passed = want <= thresholds[:, None, None]
    want_masks = (passed.astype(np.uint64) << np.arange(32, dtype=np.uint64)).sum(axis=2)
    np.testing.assert_array_equal(masks, want_masks.astype(np.uint32))
    emitted = want_masks > 0
    np.testing.assert_array_equal(sums[emitted], want[emitted])
    assert not sums[~emitted].any()
    with force_simd(level):
        masks, sums = _core.pq_fastscan_tables(
            blocks_max, nblocks, m4, luts, ntables, order, np.full(nq, 65535, np.uint16)
        )
    assert (masks == 0xFFFFFFFF).all()
    np.testing.assert_array_equal(sums, np.full((nq, nblocks, 32), 63 * m4, np.uint16))


def test_fastscan_tables_rejects_bad_input():
    blocks = np.zeros((1, 4, 32), np.uint8)
    luts = np.zeros((2, 2, 64), np.uint8)
    thresholds = np.zeros(2, np.uint16)
    with pytest.raises(ValueError, match="table index"):
        _core.pq_fastscan_tables(blocks, 1, 8, luts, 2, np.array([0, 2]), thresholds)
    with pytest.raises(ValueError, match="<= 63"):
        _core.pq_fastscan_tables(blocks, 1, 8, np.full_like(luts, 64), 2, np.array([0, 1]), thresholds)
    with pytest.raises(ValueError, match="multiple of 4"):
        _core.pq_fastscan_tables(blocks, 1, 6, luts, 2, np.array([0, 1]), thresholds)
    with pytest.raises(ValueError, match="expected"):
        _core.pq_fastscan_tables(blocks, 2, 8, luts, 2, np.array([0, 1]), thresholds)


# ---- RaBitQ query tables (KernelTable::rabitq_tables, kernels/rabitq) ---------------------

def rabitq_tables_reference(v: np.ndarray) -> tuple[np.ndarray, np.float32, np.float32, np.float32]:
    """kernels/rabitq/reference.inc in NumPy float32, operation for operation (one cast from
    float64, then only float32 adds, products and selections in the same order):
    (lut (ceil(m4 / 4), 64) uint8, scale, bias, smax)."""
    m4 = v.size // 4
    zero, cap, magic = np.float32(0), np.float32(255), np.float32(12582912)
    with np.errstate(invalid="ignore", over="ignore"):
        f = v.astype(np.float32).reshape(m4, 4)
        terms = np.where(f < zero, f, zero)  # std::min(0, f): NaN -> 0
        bias = np.add.accumulate(np.concatenate([[zero], terms.ravel()]).astype(np.float32))[-1]
        ranges = zero + np.abs(f[:, 0])
        for t in range(1, 4):
            ranges = ranges + np.abs(f[:, t])
        finite_ranges = ranges[~np.isnan(ranges)]  # std::max skips NaN
        max_range = max(zero, finite_ranges.max()) if finite_ranges.size else zero
        limit = np.floor(np.float32(65535) / np.float32(m4))
        scale = np.float32(min(np.float32(63), limit) / max_range) if max_range > 0 else np.float32(1)
        value = np.zeros((m4, 16), np.float32)
        for c in range(1, 16):
            value[:, c] = value[:, c & (c - 1)] + f[:, (c & -c).bit_length() - 1]
        low = zero + terms[:, 0]
        for t in range(1, 4):
            low = low + terms[:, t]
        rounded = ((value - low[:, None]) * scale + magic) - magic
        entry = np.where(rounded < cap, rounded, cap).astype(np.uint8)  # std::min(255, x)
    top = entry.max(axis=1)
    stored = top[:, None] - entry
    lut = np.zeros(((m4 + 3) // 4, 64), np.uint8)
    for j in range(m4):
        slot = (0, 2, 1, 3)[j % 4] * 16
        lut[j // 4, slot:slot + 16] = stored[j]
    return lut, scale, bias, np.float32(top.sum(dtype=np.uint32))


RABITQ_SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 3e38, -3e38, 1e-45, -1e-45, 5e-324, 1e300]


@st.composite
def rotated_queries(draw):
    """(4 m4,) float64 queries, m4 in 1..300: Gaussian at magnitudes from underflowing to
    overflowing float32, some zeroed, some all <= 0, with special values sprinkled in."""
    m4 = draw(st.integers(1, 300))
    magnitude = draw(st.sampled_from([1e-300, 1e-42, 1e-20, 1e-3, 0.05, 1.0, 1e3, 1e30, 1e38, 1e300]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    v = rng.standard_normal(4 * m4) * magnitude
    v[rng.random(4 * m4) < draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))] = 0.0
    if draw(st.booleans()):
        v = -np.abs(v)
    for i, special in draw(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(RABITQ_SPECIALS)), max_size=4)):
        v[i % v.size] = special
    return v


def float32_bits(x) -> bytes:
    return np.float32(x).tobytes()


@pytest.mark.parametrize("level", available_levels())
@settings(max_examples=60, deadline=None)
@given(v=rotated_queries())
def test_rabitq_tables_bit_identical_to_scalar_and_numpy(level, v):
    """Every tier gives the scalar tier's bytes, scale, bias and smax, which are those of
    the float32 NumPy re-implementation (any m4, zeros, infinities, NaN)."""
    with force_simd("scalar"):
        want = _core.rabitq_tables(v)
    with force_simd(level):
        got = _core.rabitq_tables(v)
    lut, scale, bias, smax = rabitq_tables_reference(v)
    np.testing.assert_array_equal(want[0], lut)
    assert [float32_bits(x) for x in want[1:]] == [float32_bits(x) for x in (scale, bias, smax)]
    np.testing.assert_array_equal(got[0], want[0])
    assert [float32_bits(x) for x in got[1:]] == [float32_bits(x) for x in want[1:]]


@pytest.mark.parametrize("level", available_levels())
@pytest.mark.parametrize("m4", [1, 5, 16, 96, 257])
def test_rabitq_tables_match_float64_sums(level, m4):
    """The tables are the float64 subset sums of each group of four, shifted to start at 0,
    scaled and rounded: within 0.5 (+ float32 rounding) of (T_j[c] - min_c T_j[c]) * scale,
    entries <= 63, complemented by each group's top; bias = sum of the negative values."""
    rng = np.random.default_rng(m4)
    v = rng.standard_normal(4 * m4) / np.sqrt(4 * m4)
    with force_simd(level):
        lut, scale, bias, smax = _core.rabitq_tables(v)
    groups = v.reshape(m4, 4)
    subsets = np.array([[(c >> t) & 1 for t in range(4)] for c in range(16)], np.float64)
    sums = groups @ subsets.T  # (m4, 16) float64
    exact = (sums - sums.min(axis=1, keepdims=True)) * scale
    slots = np.array([(j // 4) * 64 + (0, 2, 1, 3)[j % 4] * 16 for j in range(m4)])
    stored = lut.reshape(-1)[slots[:, None] + np.arange(16)].astype(np.int64)
    top = stored.max(axis=1)  # entry 0 (the empty subset) or the most negative one is 0
    entries = top[:, None] - stored
    assert np.abs(entries - exact).max() <= 0.5 + 1e-4
    assert entries.max() <= min(63, 65535 // m4)
    assert (entries.min(axis=1) == 0).all()
    assert smax == top.sum()
    assert bias == pytest.approx(np.minimum(v, 0).sum(), rel=1e-5, abs=1e-6)
    assert scale == pytest.approx(min(63, 65535 // m4) / np.abs(groups).sum(axis=1).max(), rel=1e-6)


def test_rabitq_tables_edge_cases_and_bad_input():
    lut, scale, bias, smax = _core.rabitq_tables(np.zeros(12))
    assert not lut.any() and lut.shape == (1, 64)
    assert (scale, bias, smax) == (1.0, 0.0, 0.0)
    with pytest.raises(TypeError, match="float64"):
        _core.rabitq_tables(np.zeros(8, np.float32))
    for shape in [(0,), (6,), (2, 4)]:
        with pytest.raises(ValueError, match=r"\(4 m4,\)"):
            _core.rabitq_tables(np.zeros(shape))
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.rabitq_tables(np.zeros(16)[::2])
