"""Shared fixtures: every SIMD level the CPU has, seeded data generators."""

from __future__ import annotations

import _thread
import pathlib
import re
import signal
import threading

import numpy as np
import pytest

import simdex as sx
from simdex.kernels import available_levels, force_simd, tier_chain

ROOT = pathlib.Path(__file__).resolve().parents[1]

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


def add_interrupted(index, x: np.ndarray, *, after: float = 0.05) -> None:
    """index.add(x, threads=1) with a Ctrl-C (KeyboardInterrupt in the main thread) arriving
    `after` seconds in; the interrupt is swallowed (use with the python_sigint fixture)."""
    timer = threading.Timer(after, _thread.interrupt_main)
    timer.start()
    try:
        index.add(x, threads=1)
    except KeyboardInterrupt:
        pass
    finally:
        timer.cancel()


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


# Byte t of a 32-row block pair holds row _BLOCK_ROW[t] (cpp/kernels/pq/pq.hpp): the NumPy
# reference of the fast-scan layout that C++ writes (write_block_row).
_BLOCK_ROW = np.array([t // 2 if t % 2 == 0 else 16 + t // 2 for t in range(32)])


def unpack_blocks(blocks, n, m):
    """Fast-scan blocks (nblocks, m4 / 2, 32) -> the first n rows of (n, m) uint8 codes."""
    nblocks, half, _ = blocks.shape
    grid = np.empty((nblocks, 32, half), np.uint8)
    grid[:, _BLOCK_ROW, :] = blocks.transpose(0, 2, 1)
    rows = grid.reshape(nblocks * 32, half)
    out = np.empty((nblocks * 32, half * 2), np.uint8)
    out[:, 0::2] = rows & 15
    out[:, 1::2] = rows >> 4
    return np.ascontiguousarray(out[:n, :m])


def kernel_files() -> list[tuple[str, str]]:
    """(op, tier) of every entry of CMakeLists.txt's SIMDEX_KERNEL_FILES."""
    text = (ROOT / "CMakeLists.txt").read_text()
    body = re.search(r"set\(SIMDEX_KERNEL_FILES([^)]*)\)", text).group(1)
    return [tuple(entry.split("/")) for entry in body.split()]


def kernel_tier(op: str, tier: str) -> str:
    """The tier whose file of `op` runs at `tier`: the deepest of its chain that has one (a tier
    inherits the kernels it does not override)."""
    files = set(kernel_files())
    return [t for t in tier_chain(tier) if (op, t) in files][-1]
