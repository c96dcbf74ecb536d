"""Shared fixtures: every SIMD level the CPU has, seeded data generators."""

from __future__ import annotations

import signal

import numpy as np
import pytest

import simdex as sx
from simdex.kernels import available_levels, force_simd

LEVELS = available_levels()


@pytest.fixture(params=LEVELS)
def simd_level(request):
    """Run the test once per SIMD level this CPU supports."""
    with force_simd(request.param):
        yield request.param


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler for the duration of a test. Libraries run earlier in the
    same process (Dask clusters spawning processes) can leave SIGINT ignored, and then
    _thread.interrupt_main() does nothing and child processes inherit the ignored signal."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def clustered(n: int, d: int, *, clusters: int = 20, spread: float = 0.3, seed: int = 0) -> np.ndarray:
    """Gaussian blobs: (n, d) float32."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    return (centers[labels] + spread * rng.standard_normal((n, d))).astype(np.float32)


def brute_force(queries: np.ndarray, data: np.ndarray, metric: str) -> np.ndarray:
    """float64 reference distances (q, n) in simdex conventions."""
    q = queries.astype(np.float64)
    x = data.astype(np.float64)
    if metric == "l2":
        return ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    return 1.0 - q @ x.T


__all__ = ["LEVELS", "brute_force", "clustered", "sx"]

# Hypothesis: derandomized so every run draws the same examples (no clock-seeded tests).
from hypothesis import settings as _settings  # noqa: E402

_settings.register_profile("simdex", derandomize=True, deadline=None, print_blob=True)
_settings.load_profile("simdex")
