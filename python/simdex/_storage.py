"""Row storage encodings shared by the float indexes: float32, float16, bfloat16, int8.

int8 is scalar quantization with trained per-dimension ranges:
    x_j ~ lo_j + scale_j * code_j,  code_j in 0..255,  scale_j = (max_j - min_j) / 255
Constant columns (real embeddings have them) get scale 0 and code 0: no division by zero.
Values outside the trained range are clipped to it.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _core

ROW_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "int8": np.uint8}


def to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest even."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def from_bfloat16(h: np.ndarray) -> np.ndarray:
    return (h.astype(np.uint32) << 16).view(np.float32)


INT8_MIN_SAMPLE = 1000
FLOAT16_MAX = 65504.0
# below this, float32 -> float16 rounds to a finite value (65504 or less)
FLOAT16_LIMIT = 65520.0


def warn_small_int8_sample(n: int, owner: str) -> None:
    """int8 ranges learnt from the first add: warn when that batch is small (later rows
    outside its ranges are clipped)."""
    if n < INT8_MIN_SAMPLE:
        warnings.warn(
            f"{owner}: int8 ranges learnt from a first add of only {n} rows (fewer than "
            f"{INT8_MIN_SAMPLE}); values of later rows outside them are clipped. Call "
            "train(sample) with a representative sample first.",
            UserWarning,
            stacklevel=3,
        )


def train_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension ranges from sample rows x (n, d) -> lo (d,), scale (d,) float32."""
    lo = x.min(axis=0).astype(np.float32)
    hi = x.max(axis=0).astype(np.float32)
    scale = ((hi.astype(np.float64) - lo) / 255.0).astype(np.float32)
    return np.ascontiguousarray(lo), np.ascontiguousarray(scale)


def encode(
    x: np.ndarray,
    storage: str,
    lo: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """float32 rows (n, d) -> stored rows (n, d) of ROW_DTYPES[storage].

    Large inputs are encoded in row chunks on `threads` threads (NumPy releases the GIL);
    None = all usable cores.
    """
    if storage == "float32":
        return x
    if storage == "float16" and x.size and not _core.all_finite(x, FLOAT16_LIMIT):
        raise ValueError(
            f"float16 storage holds values up to {FLOAT16_MAX:g} in magnitude; got "
            f"{float(np.abs(x).max()):.6g}. Use storage='float32' or 'bfloat16', or scale the "
            "vectors"
        )
    workers = threads or _core.available_cores()
    if workers > 1 and x.shape[0] >= 8192:
        out = np.empty(x.shape, dtype=ROW_DTYPES[storage])
        bounds = np.linspace(0, x.shape[0], workers + 1).astype(int)

        def work(i: int) -> None:
            out[bounds[i] : bounds[i + 1]] = _encode(
                x[bounds[i] : bounds[i + 1]], storage, lo, scale
            )

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(workers)))
        return out
    return _encode(x, storage, lo, scale)


def _encode(
    x: np.ndarray, storage: str, lo: np.ndarray | None, scale: np.ndarray | None
) -> np.ndarray:
    if storage == "float32":
        return x
    if storage == "float16":
        return x.astype(np.float16)
    if storage == "bfloat16":
        return to_bfloat16(x)
    if storage == "int8":
        assert lo is not None and scale is not None
        safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
        codes = np.rint((x - lo) / safe)
        codes = np.where(scale > 0, codes, 0.0)
        return np.clip(codes, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown storage {storage!r}")


def decode(
    rows: np.ndarray, storage: str, lo: np.ndarray | None = None, scale: np.ndarray | None = None
) -> np.ndarray:
    """Stored rows -> float32 (n, d)."""
    if storage == "float32":
        return rows
    if storage == "float16":
        return rows.astype(np.float32)
    if storage == "bfloat16":
        return from_bfloat16(rows)
    if storage == "int8":
        assert lo is not None and scale is not None
        out: np.ndarray = (lo + scale * rows.astype(np.float32)).astype(np.float32)
        return out
    raise ValueError(f"unknown storage {storage!r}")
