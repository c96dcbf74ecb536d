"""simdex.integrations.sklearn: scikit-learn's own estimator checks, agreement with
sklearn.neighbors on the same data, and the pipelines users build with a k-NN transformer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="needs scikit-learn: pip install 'simdex[sklearn]'")

import simdex as sx
from simdex import sklearn as ssk
from simdex.integrations import sklearn as integration
from sklearn import neighbors as skn
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.manifold import TSNE
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

SMALL_DATA = "scikit-learn's check data has fewer rows than a 4-bit quantizer has centroids (16)"


@pytest.mark.parametrize("estimator, expected_failures", [
    (ssk.NearestNeighbors(), {}),
    (ssk.NearestNeighbors(index="hnsw", metric="cosine", n_jobs=1), {}),
    (ssk.KNeighborsTransformer(), {}),
    (ssk.KNeighborsTransformer(mode="connectivity", index="hnsw", metric="sqeuclidean", n_jobs=1), {}),
    (ssk.LeanVecTransformer(), {}),
    (ssk.LeanVecTransformer(out_dim=1), {}),
    (ssk.PQTransformer(nbits=4), {"check_n_features_in_after_fitting": SMALL_DATA,
                                  "check_estimators_nan_inf": SMALL_DATA,
                                  "check_fit2d_1feature": SMALL_DATA}),
], ids=lambda v: repr(v) if not isinstance(v, dict) else "")
def test_check_estimator(estimator, expected_failures):
    results = check_estimator(estimator, expected_failed_checks=expected_failures, on_fail=None,
                              on_skip=None)
    failed = {r["check_name"]: repr(r["exception"])[:300] for r in results if r["status"] == "failed"}
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 35


def test_the_module_alias_is_the_integration():
    assert ssk.NearestNeighbors is integration.NearestNeighbors


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(600, n_features=12, centers=6, cluster_std=2.0, random_state=0)
    return x, y


@pytest.mark.parametrize("metric, sk_metric", [("euclidean", "euclidean"), ("l2", "euclidean"),
                                               ("sqeuclidean", "sqeuclidean"), ("cosine", "cosine")])
def test_flat_kneighbors_match_sklearn(blobs, metric, sk_metric):
    x, _ = blobs
    q = x[:50] + 0.1
    ours = ssk.NearestNeighbors(n_neighbors=7, metric=metric).fit(x)
    ref = skn.NearestNeighbors(n_neighbors=7, metric=sk_metric, algorithm="brute").fit(x)
    for queries in (q, None):  # None: the fitted rows, each without itself
        d, i = ours.kneighbors(queries)
        rd, ri = ref.kneighbors(queries)
        assert d.dtype == np.float64 and i.dtype == np.int64 and d.shape == rd.shape
        np.testing.assert_allclose(d, rd, rtol=1e-9, atol=1e-9)
        assert (i == ri).mean() > 0.99  # ties may swap
    graph = ours.kneighbors_graph(q, 3, mode="distance").toarray()
    np.testing.assert_allclose(graph, ref.kneighbors_graph(q, 3, mode="distance").toarray(), atol=1e-9)


@pytest.mark.parametrize("metric, radius", [("euclidean", 7.0), ("sqeuclidean", 49.0), ("cosine", 0.06)])
def test_radius_neighbors_match_sklearn(blobs, metric, radius):
    x, _ = blobs
    ours = ssk.NearestNeighbors(radius=radius, metric=metric).fit(x)
    ref = skn.NearestNeighbors(radius=radius, metric=metric, algorithm="brute").fit(x)
    for queries in (x[:40] + 0.05, None):
        d, i = ours.radius_neighbors(queries, sort_results=True)
        rd, ri = ref.radius_neighbors(queries, sort_results=True)
        assert sum(map(len, i)) > 40  # not a trivial radius
        for a, b, da, db in zip(i, ri, d, rd):
            assert set(a.tolist()) == set(b.tolist())
            np.testing.assert_allclose(da, db, rtol=1e-9, atol=1e-9)
            assert (np.diff(da) >= 0).all()
    graph = ours.radius_neighbors_graph(x[:10], mode="distance", sort_results=True)
    # atol: scikit-learn's euclidean self-distance is 3e-7 (dot-product form), ours exactly 0
    np.testing.assert_allclose(graph.toarray(), ref.radius_neighbors_graph(x[:10], mode="distance").toarray(),
                               atol=1e-6)
    hnsw = ssk.NearestNeighbors(radius=radius, metric=metric, index="hnsw").fit(x)
    found = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(hnsw.radius_neighbors(x[:40])[1],
                                                                       ref.radius_neighbors(x[:40])[1]))
    assert found >= 0.95 * sum(map(len, ref.radius_neighbors(x[:40])[1]))
    with pytest.raises(ValueError, match="radius must be"):
        ours.radius_neighbors(x[:2], radius=-1.0)


def test_cosine_distances_of_a_row_to_itself_are_not_negative():
    x = np.random.default_rng(4).standard_normal((300, 384)) * 1e3  # rounding puts cos past 1
    d, _ = ssk.NearestNeighbors(n_neighbors=3, metric="cosine").fit(x).kneighbors(x)
    assert (d >= 0).all() and (d[:, 0] <= 1e-12).all()
    skn.KNeighborsClassifier(2, metric="precomputed").fit(
        ssk.KNeighborsTransformer(n_neighbors=2, metric="cosine").fit_transform(x), np.arange(300) % 2)


def test_itself_dropped_even_among_duplicates():
    x = np.repeat(np.arange(10, dtype=np.float64)[:, None], 2, axis=0)  # every row twice
    d, i = ssk.NearestNeighbors(n_neighbors=1).fit(x).kneighbors()
    assert (d[:, 0] == 0).all() and (i[:, 0] != np.arange(20)).all()


def test_hnsw_and_compressed_kinds_find_the_neighbours(blobs):
    x, _ = blobs
    truth = skn.NearestNeighbors(n_neighbors=10, algorithm="brute").fit(x).kneighbors(x[:100], return_distance=False)
    for index, params, search in [("hnsw", {"M": 8}, {"ef": 64}), ("pq", {"m": 6}, {"rerank_k": 60}),
                                  ("ivfpq", {"nlist": 8, "m": 6}, {"nprobe": 4}), ("leanvec", {}, {"ef": 64})]:
        nn = ssk.NearestNeighbors(10, index=index, index_params=params, search_params=search).fit(x)
        assert type(nn.index_).__name__.lower().startswith(index[:4])
        found = nn.kneighbors(x[:100], return_distance=False)
        assert sx.recall_at_k(found, truth, 10) >= 0.9, index


def test_pipeline_with_precomputed_classifier_matches_sklearn(blobs):
    x, y = blobs
    train, test = slice(0, 500), slice(500, None)
    ours = make_pipeline(ssk.KNeighborsTransformer(n_neighbors=5, mode="distance"),
                         skn.KNeighborsClassifier(5, metric="precomputed"))
    ref = skn.KNeighborsClassifier(5, algorithm="brute")
    predicted = ours.fit(x[train], y[train]).predict(x[test])
    assert (predicted == ref.fit(x[train], y[train]).predict(x[test])).mean() > 0.98
    assert (predicted == y[test]).mean() > 0.8


def test_tsne_on_the_precomputed_graph(blobs):
    x, _ = blobs
    graph = ssk.KNeighborsTransformer(n_neighbors=30, metric="sqeuclidean", index="hnsw").fit_transform(x[:200])
    assert graph.shape == (200, 200) and graph.nnz == 200 * 31
    emb = TSNE(metric="precomputed", init="random", perplexity=8, max_iter=250, random_state=0).fit_transform(graph)
    assert emb.shape == (200, 2) and np.isfinite(emb).all()


def test_transformer_modes(blobs):
    x, _ = blobs
    dist = ssk.KNeighborsTransformer(n_neighbors=4).fit_transform(x)
    conn = ssk.KNeighborsTransformer(n_neighbors=4, mode="connectivity").fit(x).transform(x[:10])
    assert dist.shape == (600, 600) and dist.nnz == 600 * 5 and (dist.diagonal() == 0).all()
    assert conn.nnz == 10 * 4 and set(np.unique(conn.data)) == {1.0}
    assert list(ssk.KNeighborsTransformer().fit(x[:20]).get_feature_names_out()[:2]) == [
        "kneighborstransformer0", "kneighborstransformer1"]


def test_bad_arguments_say_what_was_expected(blobs):
    x, _ = blobs
    with pytest.raises(ValueError, match="metric must be one of"):
        ssk.NearestNeighbors(metric="manhattan").fit(x)
    with pytest.raises(ValueError, match="index must be one of"):
        ssk.NearestNeighbors(index="annoy").fit(x)
    with pytest.raises(ValueError, match="supports metric"):
        ssk.NearestNeighbors(index="binary").fit(x)  # euclidean: binary codes score inner products
    with pytest.raises(TypeError, match="unexpected keyword"):
        ssk.NearestNeighbors(index="hnsw", index_params={"ef_search": 10}).fit(x)
    nn = ssk.NearestNeighbors().fit(x[:5])
    with pytest.raises(ValueError, match="n_neighbors <= n_samples_fit"):
        nn.kneighbors(None, 5)
    with pytest.raises(ValueError, match="n_neighbors must be an int >= 1"):
        nn.kneighbors(x[:2], 0)
    with pytest.raises(ValueError, match="mode must be"):
        nn.kneighbors_graph(x[:2], 2, mode="weights")


def test_leanvec_transformer_is_leanvec(blobs):
    x, _ = blobs
    q = x[::3] * 1.5 + 0.3
    est = ssk.LeanVecTransformer(4, kind="ood")
    z = est.fit_transform(x, queries=q)
    ref = sx.LeanVec(4, kind="ood").fit(x, q)
    np.testing.assert_array_equal(z, ref.transform(x))
    np.testing.assert_array_equal(est.transform_queries(q[:5]), ref.transform_queries(q[:5]))
    assert est.data_matrix_.shape == (12, 4) and est.n_features_in_ == 12
    assert est.get_params()["out_dim"] == 4
    other = clone(est).set_params(kind="id", out_dim=3)
    assert other.fit_transform(x).shape == (600, 3) and not hasattr(est, "n_iter") and other.n_iter_ == 1
    with pytest.raises(ValueError, match="needs a sample of queries"):
        ssk.LeanVecTransformer(4, kind="ood").fit(x)


def test_pq_transformer_is_product_quantizer(blobs):
    x, _ = blobs
    est = ssk.PQTransformer(4, nbits=8, seed=1)
    codes = est.fit_transform(x)
    ref = sx.ProductQuantizer(12, 4).fit(x, seed=1)
    np.testing.assert_array_equal(codes, ref.encode(x))
    assert codes.dtype == np.uint8 and codes.shape == (600, 4)
    err = np.mean((est.inverse_transform(codes) - x) ** 2) / np.mean((x - x.mean(0)) ** 2)
    assert err < 0.2
    assert ssk.PQTransformer().fit(x).quantizer_.m == 4  # default m = gcd(n_features, 32)
