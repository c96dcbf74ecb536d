"""Input rules that hold on every entry point: thread counts, value ranges, training order."""

from __future__ import annotations

import numpy as np
import pytest

import simdex as sx
from simdex import _checks


def test_threads_are_capped():
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    for bad in (sx.MAX_THREADS + 1, 1000, 2**63, 2**70):
        with pytest.raises(ValueError, match="MAX_THREADS"):
            sx.knn(x, x, 5, threads=bad)
    with pytest.raises(TypeError, match="threads"):
        sx.knn(x, x, 5, threads=2.0)
    # the cap itself works (more threads than tasks is fine)
    result = sx.knn(x, x, 5, threads=sx.MAX_THREADS)
    np.testing.assert_array_equal(result.ids[:, 0], np.arange(50))
    index = sx.FlatIndex(8)
    with pytest.raises(ValueError, match="MAX_THREADS"):
        index.add(x, threads=10**6)


@pytest.mark.parametrize("dim", [1, 16, 384])
def test_overflowing_magnitudes_are_refused(dim):
    limit = _checks.max_magnitude(dim)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, dim)).astype(np.float32)
    big = x.copy()
    big[3, 0] = np.float32(limit * 1.01)
    for call in (lambda: sx.knn(big[:4], x, 3), lambda: sx.knn(x[:4], big, 3),
                 lambda: sx.FlatIndex(dim).add(big), lambda: sx.distances(big, x),
                 lambda: sx.HNSWIndex(dim, "cosine").add(big), lambda: sx.kmeans(big, 2)):
        with pytest.raises(ValueError, match="magnitude"):
            call()


def test_large_values_below_the_limit_are_exact_and_batch_independent():
    """L2 near the largest accepted magnitude: finite, exact for the stored float32 values,
    and the same whatever the batch size."""
    dim = 8
    limit = _checks.max_magnitude(dim)
    rng = np.random.default_rng(2)
    x = (rng.uniform(-1, 1, (200, dim)) * limit * 0.9).astype(np.float32)
    q = x[:16] + (rng.uniform(-1, 1, (16, dim)) * limit * 1e-3).astype(np.float32)
    truth = ((q.astype(np.float64)[:, None, :] - x.astype(np.float64)[None]) ** 2).sum(-1)
    want = np.argsort(truth, axis=1)[:, :5]
    index = sx.FlatIndex(dim)
    index.add(x)
    batch = index.search(q, 5)
    assert np.isfinite(batch.distances).all()
    np.testing.assert_array_equal(batch.ids, want)
    for i in range(4):  # one query at a time takes the other kernel path
        one = index.search(q[i], 5)
        np.testing.assert_array_equal(one.ids, batch.ids[i])
        np.testing.assert_array_equal(one.distances, batch.distances[i])
    np.testing.assert_allclose(batch.distances, np.take_along_axis(truth, want, 1), rtol=1e-4)
    np.testing.assert_array_equal(sx.knn(q, x, 5).distances, batch.distances)


def test_float16_storage_refuses_what_it_cannot_hold():
    x = np.random.default_rng(3).standard_normal((10, 8)).astype(np.float32)
    x[2, 5] = 70000.0
    for index in (sx.FlatIndex(8, storage="float16"), sx.HNSWIndex(8, storage="float16")):
        with pytest.raises(ValueError, match="65504"):
            index.add(x)
        assert len(index) == 0
    ok = x.copy()
    ok[2, 5] = 65504.0
    index = sx.FlatIndex(8, storage="float16")
    index.add(ok)
    assert index.reconstruct([2])[0, 5] == 65504.0


def test_retraining_a_non_empty_index_is_refused():
    x = np.random.default_rng(4).standard_normal((600, 16)).astype(np.float32)
    indexes = [sx.PQIndex(16, 4).train(x), sx.IVFPQIndex(16, 8, 4).train(x, n_iter=2),
               sx.BinaryIndex(16, bits=2).train(x), sx.LeanVecIndex(16, 8, kind="id").train(x)]
    for index in indexes:
        index.add(x[:50])
        with pytest.raises(ValueError, match="already holds 50 vectors"):
            index.train(x)
        index.remove(np.arange(50))  # emptied: training again is allowed
        index.train(x)


def test_a_thread_that_cannot_start_raises():
    """Worker threads are started before work is queued: when the OS refuses one (here the
    address space is capped below 64 thread stacks), the call raises RuntimeError, no crash."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import resource
        import numpy as np
        import simdex as sx
        x = np.random.default_rng(0).standard_normal((20_000, 16)).astype(np.float32)
        sx.knn(x[:10], x, 5, threads=1)
        with open("/proc/self/statm") as fh:
            used = int(fh.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + (96 << 20), resource.RLIM_INFINITY))
        try:
            sx.knn(x, x, 5, threads=200)
        except RuntimeError as exc:
            assert "worker thread" in str(exc), exc
            print("raised")
        else:
            print("ran")  # the OS granted every thread: nothing to check here
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() in ("raised", "ran")
    if done.stdout.strip() == "ran":
        pytest.skip("the OS started 200 threads within the capped address space")
