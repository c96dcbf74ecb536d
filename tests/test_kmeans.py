"""k-means: Lloyd steps against NumPy, empty-cluster repair, seeding, subsampling, bad input."""

import numpy as np
import pytest

import simdex as sx
from simdex.kmeans import objective

LEVELS = sx.kernels.available_levels()


@pytest.fixture(params=LEVELS)
def level(request):
    with sx.kernels.force_simd(request.param):
        yield request.param


def blobs(n, d, k, seed=0, spread=10.0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * spread
    labels = rng.integers(0, k, n)
    return (centers[labels] + rng.standard_normal((n, d))).astype(np.float32), labels


def numpy_assign(x, c):
    d = ((x[:, None, :].astype(np.float64) - c[None].astype(np.float64)) ** 2).sum(-1)
    return d.min(1), d.argmin(1)


def test_one_lloyd_step_matches_numpy(level):
    x, _ = blobs(500, 7, 5, seed=1)
    init = x[:5].copy()
    centroids, labels = sx.kmeans(x, 5, n_iter=1, init=init)
    _, first = numpy_assign(x, init)
    expected = np.stack([x[first == c].astype(np.float64).mean(0) for c in range(5)])
    np.testing.assert_allclose(centroids, expected, rtol=1e-5, atol=1e-5)
    dist, _ = numpy_assign(x, centroids)
    got = ((x.astype(np.float64) - centroids[labels]) ** 2).sum(1)
    np.testing.assert_allclose(got, dist, rtol=1e-4, atol=1e-4)  # labels = nearest centroid


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_recovers_separated_blobs(level, init):
    x, truth = blobs(2000, 16, 8, seed=2)
    centroids, labels = sx.kmeans(x, 8, init=init, seed=3)
    true_obj = sum(((x[truth == c] - x[truth == c].mean(0)) ** 2).sum() for c in range(8))
    obj = objective(x, centroids)
    if init == "k-means++":
        assert obj <= true_obj * 1.01
    else:  # random init may merge blobs; Lloyd must still improve on its starting point
        start, _ = sx.kmeans(x, 8, init=init, seed=3, n_iter=0)
        assert obj < objective(x, start) * 0.9
    assert labels.shape == (2000,) and labels.dtype == np.int64


def test_objective_never_increases():
    x, _ = blobs(3000, 8, 30, seed=4, spread=2.0)
    previous = np.inf
    c = None
    for it in range(1, 6):
        c, _ = sx.kmeans(x, 30, n_iter=it, init="random", seed=5)
        obj = objective(x, c)
        assert obj <= previous * (1 + 1e-6)
        previous = obj


def test_empty_cluster_is_repaired():
    x, _ = blobs(400, 4, 3, seed=6)
    init = np.concatenate([x[:3], np.full((1, 4), 1e4, np.float32)])  # 4th centroid gets no point
    centroids, labels = sx.kmeans(x, 4, n_iter=3, init=init)
    assert np.bincount(labels, minlength=4).min() > 0
    assert np.abs(centroids).max() < 1e3


def test_seed_and_subsampling():
    x, _ = blobs(5000, 8, 10, seed=7)
    a, _ = sx.kmeans(x, 10, seed=1)
    b, _ = sx.kmeans(x, 10, seed=1)
    c, _ = sx.kmeans(x, 10, seed=2, init="random", n_iter=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    sub, labels = sx.kmeans(x, 10, max_samples=500, seed=1)
    assert labels.shape == (5000,)  # labels of every point, not only of the subset
    assert objective(x, sub) <= objective(x, a) * 1.2


def test_bad_input():
    x, _ = blobs(100, 4, 2)
    with pytest.raises(ValueError, match="k must be <="):
        sx.kmeans(x, 101)
    with pytest.raises(ValueError, match="after subsampling"):
        sx.kmeans(x, 20, max_samples=10)
    with pytest.raises(ValueError, match="k must be >= 1"):
        sx.kmeans(x, 0)
    with pytest.raises(ValueError, match="init must be one of"):
        sx.kmeans(x, 2, init="kmeans")
    with pytest.raises(ValueError, match=r"init must have shape \(3, 4\)"):
        sx.kmeans(x, 3, init=x[:2])
    with pytest.raises(TypeError, match="floating-point"):
        sx.kmeans(x.astype(np.int32), 2)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sx.kmeans(bad, 2)
    with pytest.raises(ValueError, match="shape"):
        sx.kmeans(x[0], 2)


@pytest.mark.parametrize("d", [1, 3, 7, 16, 17, 33, 65])
@pytest.mark.parametrize("k", [1, 5, 16, 63, 200])
def test_nearest_centroid_kernel(level, d, k):
    from simdex import _core
    rng = np.random.default_rng(d * 1000 + k)
    x = rng.standard_normal((37, d)).astype(np.float32)
    c = rng.standard_normal((k, d)).astype(np.float32)
    dist, labels = _core.nearest_centroids(x, 37, d, c, k)
    ref_dist, _ = numpy_assign(x, c)
    got = ((x.astype(np.float64) - c[labels].astype(np.float64)) ** 2).sum(1)
    np.testing.assert_allclose(got, ref_dist, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4, atol=1e-4 * d)
    dup = np.concatenate([c, c])  # exact ties: the lowest label wins
    _, tie_labels = _core.nearest_centroids(x, 37, d, dup, 2 * k)
    assert (tie_labels < k).all()


@pytest.mark.parametrize("d", [1, 3, 17, 65])
@pytest.mark.parametrize("k", [1, 5, 63, 200])
def test_largest_inner_product_kernel(level, d, k):
    from simdex import _core
    rng = np.random.default_rng(d * 1000 + k)
    x = rng.standard_normal((37, d)).astype(np.float32)
    c = (rng.standard_normal((k, d)) * rng.uniform(0.1, 3.0, (k, 1))).astype(np.float32)
    dist, labels = _core.nearest_centroids(x, 37, d, c, k, inner_product=True)
    dots = x.astype(np.float64) @ c.T.astype(np.float64)
    np.testing.assert_allclose(dots[np.arange(37), labels], dots.max(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dist, -dots.max(1), rtol=1e-5, atol=1e-5 * d)
    _, tie_labels = _core.nearest_centroids(x, 37, d, np.concatenate([c, c]), 2 * k,
                                            inner_product=True)
    assert (tie_labels < k).all()  # exact ties: the lowest label wins


def numpy_ip_lloyd(x, init, n_iter):
    """float64 reference: labels = argmax <x, c>, centroids the means, an empty cluster takes
    the point of smallest <x, c> to its own centroid (one distinct point each, worst first)."""
    x64 = x.astype(np.float64)
    c = init.astype(np.float64)
    for _ in range(n_iter):
        dots = x64 @ c.T
        labels = dots.argmax(1)
        new = c.copy()
        counts = np.bincount(labels, minlength=c.shape[0])
        for j in np.nonzero(counts)[0]:
            new[j] = x64[labels == j].mean(0)
        empty = np.nonzero(counts == 0)[0]
        worst = np.argsort(dots[np.arange(x.shape[0]), labels])[: empty.size]
        new[empty] = x64[worst]
        c = new.astype(np.float32).astype(np.float64)  # the centroids are float32 between steps
    return c, (x64 @ c.T).argmax(1)


@pytest.mark.parametrize("n_iter", [1, 3])
def test_ip_lloyd_steps_match_numpy(level, n_iter):
    x, _ = blobs(600, 12, 6, seed=8, spread=3.0)
    x += 4.0  # every <x, -x_mean> < 0: the last starting centroid gets no point
    init = np.concatenate([x[:5], -10.0 * x.mean(0, keepdims=True)]).astype(np.float32)
    assert (x.astype(np.float64) @ init[5].astype(np.float64) < 0).all()
    expected, expected_labels = numpy_ip_lloyd(x, init, n_iter)
    centroids, labels = sx.kmeans(x, 6, n_iter=n_iter, init=init, metric="ip")
    np.testing.assert_allclose(centroids, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, expected_labels)
    # the empty cluster was repaired (the reference checks onto which point): no longer -10 mean
    assert (x.astype(np.float64) @ centroids[5].astype(np.float64)).sum() > 0


def test_ip_seed_and_metric():
    x = np.random.default_rng(9).standard_normal((3000, 16)).astype(np.float32)  # no blobs
    a = sx.kmeans(x, 10, seed=4, metric="ip")
    b = sx.kmeans(x, 10, seed=4, metric="ip")
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    dots = x.astype(np.float64) @ a[0].T.astype(np.float64)
    np.testing.assert_array_equal(a[1], dots.argmax(1))  # the labels of the last assignment
    c, _ = sx.kmeans(x, 10, seed=4)  # l2: the default, a different clustering
    assert not np.array_equal(a[0], c)
    with pytest.raises(ValueError, match="metric must be one of 'l2', 'ip'; got 'cosine'"):
        sx.kmeans(x, 2, metric="cosine")
