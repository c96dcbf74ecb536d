"""RaBitQ: 1..8-bit codes with unbiased distance estimates and error bounds (Gao & Long,
SIGMOD 2024; Extended RaBitQ, SIGMOD 2025). The math and the row layout are documented in
cpp/index/rabitq.hpp; this module draws the random rotation (numpy.random.default_rng(seed))
and checks arguments.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _checks, _core
from .kernels import normalize

ROTATIONS = ("hadamard", "dense")
ROUNDS = 4  # Hadamard rounds (cpp Rotation::kRounds)


def padded_dim(dim: int) -> int:
    """The rotated dimension D: dim rounded up to a multiple of 64."""
    return (dim + 63) // 64 * 64


def draw_rotation(dim: int, rotation: str, seed: int) -> np.ndarray:
    """Parameters of a random orthogonal map of R^D (D = padded_dim(dim)):
    hadamard -> (4, D) float32 random signs; dense -> (D, D) float32 Haar-random orthogonal."""
    d = padded_dim(dim)
    rng = np.random.default_rng(seed)
    if rotation == "hadamard":
        return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(ROUNDS, d))
    g = rng.standard_normal((d, d))
    q, r = np.linalg.qr(g)
    q *= np.sign(np.diag(r))  # Haar measure: fix the signs of the QR factorisation
    return np.ascontiguousarray(q, dtype=np.float32)


def confidence(eps0: float) -> float:
    """Probability that |estimate - distance| <= eps0 * error (normal approximation)."""
    return math.erf(eps0 / math.sqrt(2.0))


class RaBitQ:
    """RaBitQ quantizer: centre, normalise, rotate, keep the signs (1 bit) and B - 1 extra
    magnitude bits per dimension (Extended RaBitQ), plus per-vector factors.

    dim        : vector dimension (codes cover D = dim rounded up to a multiple of 64)
    bits       : 1..8 bits per dimension
    rotation   : 'hadamard' (4 rounds of random signs + fast Walsh-Hadamard, D log D) or
                 'dense' (a Haar-random (D, D) matrix, D^2; for small dim)
    seed       : seeds the rotation
    query_bits : bits per dimension of the quantised query (default min(8, bits + 3))

    A code row (row_bytes,) uint8 holds bits * D / 8 bytes of bit planes, then 3 (bits = 1)
    or 5 float32 factors (cpp/index/rabitq.hpp).
    """

    def __init__(
        self,
        dim: int,
        *,
        bits: int = 1,
        rotation: str = "hadamard",
        seed: int = 0,
        query_bits: int | None = None,
    ) -> None:
        self.dim = _checks.check_dim(dim)
        self.bits = _checks.check_positive_int(bits, "bits")
        if self.bits > 8:
            raise ValueError(f"bits must be in 1..8; got {bits}")
        self.rotation = _checks.check_choice(rotation, "rotation", ROTATIONS)
        if rotation == "dense" and padded_dim(self.dim) > 4096:
            raise ValueError(
                f"rotation='dense' stores a (D, D) matrix; D = {padded_dim(self.dim)} is too large "
                "(at most 4096): use rotation='hadamard'"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        self.seed = int(seed)
        qb = min(8, self.bits + 3) if query_bits is None else query_bits
        self.query_bits = _checks.check_positive_int(qb, "query_bits")
        if self.query_bits > 8:
            raise ValueError(f"query_bits must be in 1..8; got {query_bits}")
        self.padded_dim = padded_dim(self.dim)
        self.rotation_params = draw_rotation(self.dim, self.rotation, self.seed)
        self._core = _core.RaBitQCore(
            self.dim, self.bits, self.query_bits, self.rotation, self.rotation_params
        )
        self.centre: np.ndarray | None = None

    @property
    def row_bytes(self) -> int:
        """Bytes per encoded vector (bit planes + factors)."""
        return int(self._core.row_bytes)

    @property
    def is_trained(self) -> bool:
        return self.centre is not None

    def train(self, x: Any) -> RaBitQ:
        """Learn the centre: the mean of x (n, dim)."""
        a, _ = _checks.as_float_rows(x, self.dim, "x")
        self.centre = np.ascontiguousarray(a.mean(axis=0, dtype=np.float64), dtype=np.float32)
        return self

    fit = train

    def _need_centre(self) -> np.ndarray:
        if self.centre is None:
            raise ValueError("RaBitQ is not trained: call train(x) first (it learns the centre)")
        return self.centre

    def encode(self, x: Any, *, threads: int | None = None) -> np.ndarray:
        """x (n, dim) float -> codes (n, row_bytes) uint8."""
        threads = _checks.check_threads(threads)
        a, _ = _checks.as_float_rows(x, self.dim, "x")
        codes: np.ndarray = self._core.encode(a, a.shape[0], self._need_centre(), threads)
        return codes

    def _codes(self, codes: Any) -> np.ndarray:
        c = np.asarray(codes)
        if c.dtype != np.uint8:
            raise TypeError(f"codes must be uint8 rows from encode(); got dtype {c.dtype}")
        if c.ndim != 2 or c.shape[1] != self.row_bytes or c.shape[0] == 0:
            raise ValueError(f"codes must have shape (n, {self.row_bytes}); got {c.shape}")
        return np.ascontiguousarray(c)

    def decode(self, codes: Any) -> np.ndarray:
        """codes (n, row_bytes) -> (n, dim) float32: centre + norm * the rotated-back unit
        code vector (the reconstruction the full-level estimate is built on)."""
        c = self._codes(codes)
        out: np.ndarray = self._core.decode(c, c.shape[0], self._need_centre())
        return out

    def estimate(
        self,
        codes: Any,
        queries: Any,
        metric: str = "l2",
        *,
        eps0: float = 1.9,
        level: str = "full",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Estimated distances of every query to every code, with their error bounds.

        codes   : (n, row_bytes) uint8 from encode()
        queries : (q, dim) float
        metric  : 'l2' (squared), 'ip' (1 - <q, x>), 'cosine' (1 - cos; queries normalised
                  here, so encode unit vectors for it)
        eps0    : the bound is eps0 * (estimator standard deviation); it holds with
                  probability about confidence(eps0) = erf(eps0 / sqrt 2) (0.943 at 1.9)
        level   : 'full' (all bits) or '1bit' (the sign plane only)
        returns : (estimates (q, n) float32, bounds (q, n) float32)
        """
        metric = _checks.check_metric(metric, ("l2", "ip", "cosine"))
        level = _checks.check_choice(level, "level", ("full", "1bit"))
        if not isinstance(eps0, (int, float)) or not math.isfinite(eps0) or eps0 < 0:
            raise ValueError(f"eps0 must be a finite float >= 0; got {eps0!r}")
        c = self._codes(codes)
        q, _ = _checks.as_float_rows(queries, self.dim, "queries")
        if metric == "cosine":
            q = normalize(q)
        dist, err = self._core.estimate(
            c, c.shape[0], q, q.shape[0], self._need_centre(), metric, level
        )
        bounds: np.ndarray = (err * np.float32(eps0)).astype(np.float32)
        return dist, bounds

    def __repr__(self) -> str:
        return (
            f"RaBitQ(dim={self.dim}, bits={self.bits}, rotation={self.rotation!r}, "
            f"seed={self.seed}, query_bits={self.query_bits}, trained={self.is_trained})"
        )
