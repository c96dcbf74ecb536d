"""LeanVec projections (ID = PCA, OOD = query-aware) and the two-stage LeanVecIndex."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg

import simdex as sx
from simdex.leanvec import ood_loss

LEVELS = sx.kernels.available_levels()


def _spectrum_data(rng: np.random.Generator, n: int, dim: int, weights: np.ndarray) -> np.ndarray:
    """Rows with second moment ~ R diag(weights^2) R^T for a fixed random rotation R."""
    rotation = np.linalg.qr(np.random.default_rng(1234).standard_normal((dim, dim)))[0]
    return ((rng.standard_normal((n, dim)) * weights) @ rotation.T).astype(np.float32)


def _ood_problem(dim: int = 32, n: int = 3000, m: int = 800):
    """Data variance decays slowly over the coordinates; queries live on middle coordinates."""
    rng = np.random.default_rng(7)
    x = _spectrum_data(rng, n, dim, 1.0 / np.sqrt(1.0 + np.arange(dim)))
    q_weights = np.full(dim, 0.05)
    q_weights[dim // 3 : 2 * dim // 3] = 1.0
    q_learn = _spectrum_data(rng, m, dim, q_weights)
    q_test = _spectrum_data(rng, m, dim, q_weights)
    return x, q_learn, q_test


def _clustered(n: int, dim: int, seed: int, clusters: int = 20, rank: int = 16) -> np.ndarray:
    """Clustered rows on a rank-16 subspace (fixed across seeds) plus a little isotropic noise."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(99).standard_normal((dim, rank)))[0].T  # (rank, dim)
    centres = rng.standard_normal((clusters, rank)) * 3
    latent = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, rank))
    return (latent @ basis + 0.05 * rng.standard_normal((n, dim))).astype(np.float32)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / k for a, b in zip(found, truth)]))


# ---- projections ---------------------------------------------------------------------------
@pytest.mark.parametrize("dim,d", [(7, 3), (33, 8), (65, 64), (17, 17)])
def test_id_spans_top_eigenvectors(dim, d):
    rng = np.random.default_rng(dim)
    x = _spectrum_data(rng, 1500, dim, 1.0 / (1.0 + np.arange(dim)) + 0.01 * rng.random(dim))
    lv = sx.LeanVec(d, kind="id").fit(x)
    assert lv.data_matrix.shape == (dim, d) and lv.data_matrix.dtype == np.float32
    np.testing.assert_array_equal(lv.data_matrix, lv.query_matrix)
    x64 = x.astype(np.float64)
    values, vectors = np.linalg.eigh(x64.T @ x64)
    reference = vectors[:, ::-1][:, :d]
    angles = scipy.linalg.subspace_angles(lv.data_matrix.astype(np.float64), reference)
    assert angles.max() < 1e-3, angles.max()
    np.testing.assert_allclose(lv.data_matrix.T @ lv.data_matrix, np.eye(d), atol=1e-5)


def test_transform_matches_float64_reference():
    x, q, _ = _ood_problem()
    lv = sx.LeanVec(6, kind="ood").fit(x, q)
    ref_x = x.astype(np.float64) @ lv.data_matrix.astype(np.float64)
    ref_q = q.astype(np.float64) @ lv.query_matrix.astype(np.float64)
    np.testing.assert_allclose(lv.transform(x), ref_x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lv.transform_queries(q), ref_q, rtol=1e-4, atol=1e-5)
    one = lv.transform(x[3].astype(np.float64))  # 1-D in, 1-D out; float64 converted
    assert one.shape == (6,) and one.dtype == np.float32
    np.testing.assert_allclose(one, ref_x[3], rtol=1e-4, atol=1e-5)
    # the data side is an orthogonal projection
    np.testing.assert_allclose(lv.data_matrix.T @ lv.data_matrix, np.eye(6), atol=1e-5)


def test_ood_objective_decreases_and_beats_id():
    x, q_learn, q_test = _ood_problem()
    d = 6
    id_lv = sx.LeanVec(d, kind="id").fit(x)
    fw = sx.LeanVec(d, kind="ood", solver="frank_wolfe", query_blend=0.0, max_iter=300).fit(
        x, q_learn
    )
    cf = sx.LeanVec(d, kind="ood", solver="closed_form", query_blend=0.0).fit(x, q_learn)
    history = np.array(fw.loss_history)
    assert history.size > 10
    assert history[-1] < 0.7 * history[0], (history[0], history[-1])  # starts at the ID solution
    tail = history[len(history) // 2 :]
    assert np.all(np.diff(tail) <= 1e-9 * tail[0]), "Frank-Wolfe loss went up late in the run"
    # closed form = optimum of the unconstrained rank-d problem: never worse than FW or ID
    learn_id, learn_fw, learn_cf = (m.objective(x, q_learn) for m in (id_lv, fw, cf))
    assert learn_cf <= learn_fw + 1e-6 and learn_cf < 0.5 * learn_id, (learn_id, learn_fw, learn_cf)
    # and it generalises to new queries of the same kind
    test_id, test_cf = id_lv.objective(x, q_test), cf.objective(x, q_test)
    assert test_cf < 0.6 * test_id, (test_id, test_cf)
    # the reported loss agrees with a float64 recomputation of the formula
    kq = q_learn.astype(np.float64).T @ q_learn.astype(np.float64)
    kx = x.astype(np.float64).T @ x.astype(np.float64)
    direct = np.sum(
        (
            q_learn.astype(np.float64) @ x.T.astype(np.float64)
            - (q_learn @ cf.query_matrix).astype(np.float64)
            @ (x @ cf.data_matrix).T.astype(np.float64)
        )
        ** 2
    )
    a, b = cf.query_matrix.astype(np.float64), cf.data_matrix.astype(np.float64)
    np.testing.assert_allclose(ood_loss(kq, kx, a, b), direct, rtol=1e-3)


def test_query_blend_rescues_few_queries():
    # queries with variance in every direction, fewer of them than dimensions: K_Q is singular
    dim = 48
    rng = np.random.default_rng(11)
    x = _spectrum_data(rng, 3000, dim, 1.0 / np.sqrt(1.0 + np.arange(dim)))
    q_weights = np.full(dim, 0.5)
    q_weights[dim // 3 : 2 * dim // 3] = 1.0
    few, q_test = _spectrum_data(rng, 20, dim, q_weights), _spectrum_data(rng, 1000, dim, q_weights)
    plain = sx.LeanVec(16, kind="ood", query_blend=0.0).fit(x, few).objective(x, q_test)
    blended = sx.LeanVec(16, kind="ood").fit(x, few).objective(x, q_test)
    assert blended < 0.95 * plain, (plain, blended)


def test_projection_bad_input():
    x, q, _ = _ood_problem()
    with pytest.raises(ValueError, match="out_dim must be <= the input dimension 32"):
        sx.LeanVec(33).fit(x)
    with pytest.raises(ValueError, match="at least max"):
        sx.LeanVec(20, kind="ood").fit(x, q[:19])
    with pytest.raises(ValueError, match="16"):
        sx.LeanVec(4, kind="ood").fit(x, q[:10])
    with pytest.raises(ValueError, match="needs a sample of queries"):
        sx.LeanVec(4, kind="ood").fit(x)
    with pytest.raises(ValueError, match="data only"):
        sx.LeanVec(4, kind="id").fit(x, q)
    with pytest.raises(ValueError, match=r"\(n, 32\)"):
        sx.LeanVec(4, kind="ood").fit(x, q[:, :31])
    with pytest.raises(TypeError, match="floating-point"):
        sx.LeanVec(4).fit(x.astype(np.int32))
    with pytest.raises(ValueError, match="NaN"):
        bad = x.copy()
        bad[5, 2] = np.nan
        sx.LeanVec(4).fit(bad)
    with pytest.raises(ValueError, match="kind"):
        sx.LeanVec(4, kind="pca")
    with pytest.raises(ValueError, match="solver"):
        sx.LeanVec(4, kind="ood", solver="adam")
    with pytest.raises(ValueError, match="query_blend"):
        sx.LeanVec(4, kind="ood", query_blend=1.5)
    with pytest.raises(ValueError, match=">= 1"):
        sx.LeanVec(0)
    with pytest.raises(ValueError, match="not fitted"):
        sx.LeanVec(4).transform(x)
    lv = sx.LeanVec(4).fit(x)
    with pytest.raises(ValueError, match=r"\(n, 32\)"):
        lv.transform(x[:, :5])
    with pytest.raises(ValueError, match=r"\(n, 32\)"):
        lv.transform_queries(q[:, :5])
    assert "LeanVec(out_dim=4, kind='id'" in repr(lv)


# ---- index ---------------------------------------------------------------------------------
N, DIM, OUT = 2000, 48, 24


@pytest.fixture(scope="module")
def data():
    x = _clustered(N, DIM, seed=3)
    learn = _clustered(300, DIM, seed=4)
    queries = _clustered(60, DIM, seed=5)
    return x, learn, queries


def _check_distances(index, queries, result, x, metric, atol):
    """Returned distances are the exact full-dimensional distances of the returned ids."""
    d, ids = result
    xx, qq = x.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        xx = xx / np.linalg.norm(xx, axis=1, keepdims=True)
        qq = qq / np.linalg.norm(qq, axis=1, keepdims=True)
    valid = ids >= 0
    rows = xx[np.where(valid, ids, 0)]
    if metric == "l2":
        exact = np.sum((qq[:, None, :] - rows) ** 2, axis=2)
    else:
        exact = 1.0 - np.einsum("qd,qkd->qk", qq, rows)
    np.testing.assert_allclose(d[valid], exact[valid], rtol=1e-4, atol=atol)
    assert np.all(np.diff(d, axis=1)[valid[:, 1:]] >= 0)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize(
    "kind,metric,primary,secondary",
    [
        ("ood", "ip", "float16", "float32"),
        ("ood", "cosine", "int8", "float16"),
        ("id", "l2", "float32", "float32"),
        ("id", "ip", "float16", "int8"),
    ],
)
def test_index_recall_against_brute_force(data, level, kind, metric, primary, secondary):
    x, learn, queries = data
    with sx.kernels.force_simd(level):
        index = sx.LeanVecIndex(
            DIM, OUT, kind=kind, metric=metric, primary=primary, secondary=secondary
        )
        index.train(x, learn if kind == "ood" else None)
        ids = index.add(x)
        np.testing.assert_array_equal(ids, np.arange(N))
        reference = x
        if secondary == "int8":  # re-ranking is exact for the stored precision: the decoded rows
            lo, scale = index._store.lo, index._store.scale
            rows = x if metric != "cosine" else sx.kernels.normalize(x)
            reference = lo + scale * np.rint((rows - lo) / np.where(scale > 0, scale, 1)).clip(
                0, 255
            )
            reference = reference.astype(np.float32)
        result = index.search(queries, 10, ef=96)
        truth = sx.knn(queries, reference, 10, metric).ids
        assert _recall(result.ids, truth) >= 0.9
        atol = 5e-3 * float(np.abs(x).max()) ** 2 if secondary == "float16" else 1e-3
        _check_distances(index, queries, result, reference, metric, atol)


def test_rerank_k_and_buffer(data):
    x, learn, queries = data
    index = sx.LeanVecIndex(DIM, 8, kind="ood").train(x, learn)
    index.add(x)
    truth = sx.knn(queries, x, 10, "ip").ids
    small = _recall(index.search(queries, 10, ef=10).ids, truth)
    wide = _recall(index.search(queries, 10, ef=10, rerank_k=200).ids, truth)
    assert wide > small + 0.3 and wide >= 0.8, (small, wide)
    one = index.search(queries[0], 5, rerank_k=50)
    assert one.ids.shape == (5,) and one.distances.dtype == np.float32
    np.testing.assert_array_equal(one.ids, index.search(queries[:1], 5, rerank_k=50).ids[0])


def test_filter_and_max_distance(data):
    x, learn, queries = data
    index = sx.LeanVecIndex(DIM, OUT, kind="ood").train(x, learn)
    user_ids = np.arange(N, dtype=np.int64) * 3 + 1000
    index.add(x, ids=user_ids)
    allowed = user_ids[::4]
    d, ids = index.search(queries, 10, ef=64, filter=allowed)
    assert np.isin(ids[ids >= 0], allowed).all()
    truth = user_ids[::4][sx.knn(queries, x[::4], 10, "ip").ids]
    assert _recall(ids, truth) >= 0.85
    mask = np.zeros(user_ids.max() + 1, dtype=bool)
    mask[allowed] = True
    np.testing.assert_array_equal(index.search(queries, 10, ef=64, filter=mask).ids, ids)
    full = index.search(queries, 10, ef=64)
    limit = full.distances[:, 4]
    cut = index.search(queries, 10, ef=64, max_distance=limit)
    assert np.all((cut.ids == -1) | (cut.distances <= limit[:, None]))
    assert np.all(np.isinf(cut.distances[cut.ids == -1]))


@pytest.mark.parametrize(
    "secondary,on_disk", [("float32", False), ("float32", True), ("float16", True), ("int8", False)]
)
def test_save_load_pickle(data, tmp_path, secondary, on_disk):
    x, learn, queries = data
    kwargs = {"rerank_path": tmp_path / "full.bin"} if on_disk else {}
    index = sx.LeanVecIndex(DIM, OUT, kind="ood", secondary=secondary, **kwargs).train(x, learn)
    index.add(x[:1500])
    index.add(x[1500:], ids=np.arange(5000, 5500))
    expected = index.search(queries, 10, ef=48)
    path = tmp_path / "index.simdex"
    index.save(path)
    side = tmp_path / "full.bin" if on_disk else None
    for loaded in (
        sx.load(path, rerank=side),
        sx.load(path, mmap=True, rerank=side),
        pickle.loads(pickle.dumps(index)),
    ):
        assert type(loaded) is sx.LeanVecIndex and len(loaded) == N
        np.testing.assert_array_equal(loaded.projection.query_matrix, index.projection.query_matrix)
        got = loaded.search(queries, 10, ef=48)
        np.testing.assert_array_equal(got.ids, expected.ids)
        np.testing.assert_allclose(got.distances, expected.distances, rtol=1e-6)
        assert repr(loaded) == repr(index)
    loaded = sx.load(path, rerank=side)
    new = loaded.add(x[:5] * 0.5)
    np.testing.assert_array_equal(new, np.arange(5500, 5505))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError):
        sx.load(path)


def test_index_bad_input(data):
    x, learn, queries = data
    with pytest.raises(ValueError, match="out_dim must be <= dim=48"):
        sx.LeanVecIndex(DIM, 49)
    with pytest.raises(ValueError, match="kind='id'"):
        sx.LeanVecIndex(DIM, 8, kind="ood", metric="l2")
    with pytest.raises(ValueError, match="metric"):
        sx.LeanVecIndex(DIM, 8, metric="hamming")
    with pytest.raises(ValueError, match="primary"):
        sx.LeanVecIndex(DIM, 8, primary="bfloat8")
    with pytest.raises(ValueError, match="secondary"):
        sx.LeanVecIndex(DIM, 8, secondary="int4")
    index = sx.LeanVecIndex(DIM, 8, kind="ood")
    with pytest.raises(ValueError, match=r"not trained; call train\(x, queries\)"):
        index.add(x)
    with pytest.raises(ValueError, match="needs a sample of queries"):
        index.train(x)
    with pytest.raises(ValueError, match="at least max"):
        index.train(x, learn[:10])
    with pytest.raises(ValueError, match=r"\(n, 48\)"):
        index.train(x[:, :40], learn)
    index.train(x, learn)
    assert index.search(queries, 3).ids.tolist() == [[-1] * 3] * len(queries)
    index.add(x)
    with pytest.raises(ValueError, match="train before the first add"):
        index.train(x, learn)
    with pytest.raises(ValueError, match=r"\(n, 48\)"):
        index.search(queries[:, :47], 10)
    with pytest.raises(ValueError, match=r"\(n, 48\)"):
        index.add(x[:, :47])
    with pytest.raises(ValueError, match="rerank_k must be >= k=10; got rerank_k=5"):
        index.search(queries, 10, rerank_k=5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(queries, 0)
    with pytest.raises(TypeError, match="floating-point"):
        index.search(queries.astype(np.int64), 10)
    with pytest.raises(ValueError, match="already in the index"):
        index.add(x[:3], ids=[0, 1, 2])
    text = repr(index)
    assert "\n" not in text and "out_dim=8" in text and "kind='ood'" in text and f"n={N}" in text
    assert index.nbytes > N * DIM * 4


def test_projection_out_of_range_is_refused(data):
    """Matrices that project vectors beyond what float32 distances allow make add raise
    ValueError naming the magnitude (files with such matrices are refused at load)."""
    x, learn, queries = data
    index = sx.LeanVecIndex(DIM, OUT, kind="id").train(x)
    index.add(x[:100])
    index.projection._set(
        DIM, index.projection.query_matrix * 1e30, index.projection.data_matrix * 1e30, []
    )
    index._make_core()  # the core keeps its own copy of the matrices
    with pytest.raises(ValueError, match="magnitude"):
        index.add(x[100:110])
    assert len(index) == 100
    with pytest.raises(ValueError, match="magnitude"):  # queries are projected the same way
        index.search(x[:3], 5)
