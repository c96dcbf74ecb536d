"""simdex.lid: MLE local intrinsic dimensionality against a float64 NumPy reference."""

import numpy as np
import pytest

import simdex as sx
from simdex import kernels


@pytest.fixture(params=kernels.available_levels())
def level(request):
    with kernels.force_simd(request.param):
        yield request.param


def reference_lid(x, k):
    x = x.astype(np.float64)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    r = np.sqrt(np.sort(d2, axis=1)[:, :k])
    return -1.0 / np.mean(np.log(r / r[:, -1:]), axis=1)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_matches_reference(level, k):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 17)).astype(np.float32)
    got = sx.lid(x, k)
    assert got.shape == (300,) and got.dtype == np.float64
    if k == 1:  # one neighbour: r_1 / r_k = 1, the estimate is +inf by definition
        assert np.isinf(got).all()
        return
    np.testing.assert_allclose(got, reference_lid(x, k), rtol=2e-3)


def test_recovers_subspace_dimension():
    rng = np.random.default_rng(2)
    for d in (2, 6):
        basis = np.linalg.qr(rng.normal(size=(40, d)))[0]  # (40, d) orthonormal
        x = (rng.uniform(size=(3000, d)) @ basis.T).astype(np.float32)
        est = float(np.median(sx.lid(x, 20)))
        assert 0.7 * d < est < 1.3 * d, (d, est)


def test_duplicates_and_conventions():
    x = np.zeros((10, 4), dtype=np.float32)
    assert np.array_equal(sx.lid(x, 3), np.zeros(10))  # all neighbours are duplicates
    rng = np.random.default_rng(3)
    y = rng.normal(size=(50, 5)).astype(np.float32)
    y = np.concatenate([y, y[:5]])  # 5 points have a duplicate
    out = sx.lid(y, 6)
    assert np.isfinite(out).all() and (out > 0).all()


def test_bad_input():
    x = np.ones((5, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="more than k=5"):
        sx.lid(x, 5)
    with pytest.raises(ValueError):
        sx.lid(x, 0)
    with pytest.raises(TypeError):
        sx.lid(x, 2.5)
    with pytest.raises(TypeError):
        sx.lid(np.ones((5, 3), dtype=np.int32), 2)
    with pytest.raises(ValueError):
        sx.lid(np.ones(3, dtype=np.float32), 2)
    with pytest.raises(ValueError):
        sx.lid(np.full((5, 3), np.nan, dtype=np.float32), 2)
