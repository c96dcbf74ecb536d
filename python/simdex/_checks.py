"""Input validation in one place: every public entry point normalises its arguments here.

Shape and value problems raise ValueError, dtype problems TypeError; messages say what was
expected, what was received, and a hint.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal

import numpy as np

from . import _core

METRICS = ("l2", "ip", "cosine", "hamming")
STORAGES = ("float32", "float16", "bfloat16", "int8")
# The names as types (mypy then catches metric="cosin"): Metric for every index,
# FloatMetric where vectors are floats (PQ, IVF-PQ, LeanVec, re-ranking).
Metric = Literal["l2", "ip", "cosine", "hamming"]
FloatMetric = Literal["l2", "ip", "cosine"]
Storage = Literal["float32", "float16", "bfloat16", "int8"]
RerankStorage = Literal["float32", "float16", "int8"]


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_metric(metric: Any, allowed: tuple[str, ...] = METRICS) -> str:
    return check_choice(metric, "metric", allowed)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}; got {type(value).__name__} {value!r}")
    number = int(value)
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {number}")
    return number


MAX_LIST = 1 << 20


MAX_DIM = 1 << 20


def check_dim(dim: Any, name: str = "dim") -> int:
    """A vector dimension, 1..MAX_DIM (2**20)."""
    value = check_positive_int(dim, name)
    if value > MAX_DIM:
        raise ValueError(f"{name} must be <= {MAX_DIM}; got {value}")
    return value


def check_k(k: Any) -> int:
    return check_positive_int(k, "k")


def check_list_size(value: Any, name: str) -> int:
    """ef, ef_construction, rerank_k: candidate list sizes, 1..MAX_LIST."""
    size = check_positive_int(value, name)
    if size > MAX_LIST:
        raise ValueError(f"{name} must be <= {MAX_LIST}; got {size}")
    return size


MAX_THREADS = 256


def check_threads(threads: Any) -> int | None:
    """None (all cores the process may use) or 1..MAX_THREADS."""
    if threads is None:
        return None
    count = check_positive_int(threads, "threads")
    if count > MAX_THREADS:
        raise ValueError(
            f"threads must be <= {MAX_THREADS} (simdex.MAX_THREADS); got {count}. "
            "Hint: threads=None uses every core the process may use"
        )
    return count


def check_untrained(index: Any, n: int) -> None:
    """Training replaces what stored codes were made with: refused once vectors are stored."""
    if n:
        raise ValueError(
            f"{type(index).__name__} already holds {n} vectors encoded with its current "
            "training; train before the first add, or build a new index and add the "
            "vectors again"
        )


def _as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be array-like with a regular shape: {exc}") from None


def as_float_rows(
    x: Any, dim: int | None, name: str = "x", *, allow_1d: bool = True
) -> tuple[np.ndarray, bool]:
    """Validate float vectors.

    x       : (n, dim) or (dim,) array of a float dtype
    returns : ((n, dim) float32 C-contiguous, was_1d). float32 C-contiguous input is returned
              as is (no copy); other float dtypes and non-contiguous arrays are copied once.
    """
    a = _as_array(x, name)
    if a.dtype.kind != "f":
        raise TypeError(
            f"{name} must hold floating-point values (float32 preferred); got dtype {a.dtype}. "
            f"Hint: convert with {name}.astype(numpy.float32)"
        )
    was_1d = a.ndim == 1
    if was_1d and allow_1d:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        expected = f"(n, {dim if dim is not None else 'd'})" + (" or (d,)" if allow_1d else "")
        raise ValueError(f"{name} must have shape {expected}; got ndim={a.ndim}, shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(
            f"{name} is empty (shape {a.shape}); pass at least one vector of dimension >= 1"
        )
    if dim is not None and a.shape[1] != dim:
        raise ValueError(
            f"{name} must have shape (n, {dim}) to match the index dimension; got {a.shape}"
        )
    a = np.ascontiguousarray(a, dtype=np.float32)
    limit = max_magnitude(a.shape[1])
    if not _core.all_finite(a, limit):
        finite = np.isfinite(a).all(axis=1)
        if not finite.all():
            raise ValueError(
                f"{name} contains NaN or infinite values in {int(np.count_nonzero(~finite))} "
                "row(s) "
                "(after conversion to float32); clean or drop those rows first"
            )
        biggest = float(np.abs(a).max())
        raise ValueError(
            f"{name} holds a value of magnitude {biggest:.3g}: squared distances and norms of "
            f"{a.shape[1]}-d float32 vectors overflow for components above {limit:.3g}. "
            "Scale the vectors down (nearest neighbours do not change with the scale)"
        )
    return a, was_1d


def max_magnitude(dim: int) -> float:
    """The largest |component| for which every squared norm, inner product and squared L2
    distance of dim-dimensional float32 vectors stays finite (4 * dim * m^2 <= FLT_MAX)."""
    return float(np.sqrt(np.finfo(np.float32).max / (4.0 * max(dim, 1))))


def as_codes(
    x: Any, nbytes: int | None, name: str = "codes", *, allow_1d: bool = True
) -> tuple[np.ndarray, bool]:
    """Validate packed binary codes (numpy.packbits layout).

    returns : ((n, nbytes) uint8 C-contiguous, was_1d)
    """
    a = _as_array(x, name)
    if a.dtype != np.uint8:
        raise TypeError(
            f"{name} must be uint8 codes packed with numpy.packbits; got dtype {a.dtype}. "
            "Hint: numpy.packbits(bits, axis=1) or simdex.binarize(x)"
        )
    was_1d = a.ndim == 1
    if was_1d and allow_1d:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (n, nbytes); got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if nbytes is not None and a.shape[1] != nbytes:
        raise ValueError(
            f"{name} must have {nbytes} bytes per row ({nbytes * 8} bits) to match the index; "
            f"got shape {a.shape}"
        )
    return np.ascontiguousarray(a), was_1d


def as_ids(ids: Any, n: int, name: str = "ids") -> np.ndarray:
    """User ids for n new vectors: (n,) int64, unique, non-negative."""
    a = _as_array(ids, name)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers (int64); got dtype {a.dtype}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one id per vector; got shape {a.shape}")
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must fit in int64; got a value of {a.max()}")
    a = a.astype(np.int64, copy=False)
    if a.size and a.min() < 0:
        raise ValueError(f"{name} must be >= 0 (-1 marks missing results); got {a.min()}")
    sorted_a = np.sort(a)
    repeated = sorted_a[1:] == sorted_a[:-1]
    if repeated.any():
        raise ValueError(
            f"{name} must be unique; duplicated: {sorted_a[1:][repeated][:3].tolist()}"
        )
    return np.ascontiguousarray(a)


def as_max_distance(max_distance: Any, nq: int) -> np.ndarray | None:
    """None, a float, or (nq,) floats -> (nq,) float32 thresholds."""
    if max_distance is None:
        return None
    a = (
        np.asarray(max_distance, dtype=np.float64)
        if not isinstance(max_distance, np.ndarray)
        else max_distance
    )
    if a.dtype.kind not in "fiu":
        raise TypeError(f"max_distance must be a float or an array of floats; got dtype {a.dtype}")
    if a.ndim == 0:
        a = np.full(nq, float(a))
    if a.shape != (nq,):
        raise ValueError(
            f"max_distance must be a float or have shape ({nq},), one per query; got {a.shape}"
        )
    if np.isnan(a).any():
        raise ValueError("max_distance must not contain NaN")
    return a.astype(np.float32)


def _filter_ids(a: np.ndarray) -> np.ndarray:
    if a.ndim != 1:
        raise ValueError(
            f"filter must be a 1-D array of allowed ids or a boolean mask; got shape {a.shape}"
        )
    if a.dtype == np.bool_:
        return np.flatnonzero(a).astype(np.int64)
    if a.dtype.kind in "iu":
        return np.ascontiguousarray(a, dtype=np.int64)
    raise TypeError(
        "filter must be an int64 array of allowed ids or a boolean mask indexed by id; got dtype "
        f"{a.dtype}"
    )


def is_filter_list(filter: Any) -> bool:
    """A list / tuple of filters, one per query row (not a list of ids)."""
    return isinstance(filter, (list, tuple)) and len(filter) > 0 and not np.isscalar(filter[0])


def as_filter(
    filter: Any, nq: int
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """filter -> (ids, offsets, mask) for the C++ cores, O(len(filter)):

    - None: (None, None, None)
    - a boolean mask indexed by id: (None, None, mask as uint8), no copy when contiguous
    - an int array of allowed ids: a uint8 mask by id when the ids are dense enough (max id
      < 8 * len + 65536), else (ids (m,) int64, offsets [0, m], None)
    - a list / tuple with one such filter per query row: (ids, offsets (nq + 1,), None)
    """
    if filter is None:
        return None, None, None
    if is_filter_list(filter):
        if len(filter) != nq:
            raise ValueError(
                f"a list of filters needs one filter per query row: expected {nq}, got "
                f"{len(filter)}"
            )
        parts = [_filter_ids(_as_array(f, f"filter[{i}]")) for i, f in enumerate(filter)]
        offsets = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum([p.shape[0] for p in parts], out=offsets[1:])
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return np.ascontiguousarray(ids, dtype=np.int64), offsets, None
    a = _as_array(filter, "filter")
    if a.ndim == 1 and a.dtype == np.bool_:
        return None, None, np.ascontiguousarray(a).view(np.uint8)
    ids = _filter_ids(a)
    ids = ids[ids >= 0] if ids.size and ids.min() < 0 else ids
    if ids.size and int(ids.max()) < 8 * ids.size + 65536:
        mask = np.zeros(int(ids.max()) + 1, dtype=np.uint8)
        mask[ids] = 1
        return None, None, mask
    return ids, np.array([0, ids.shape[0]], dtype=np.int64), None


def as_id_list(ids: Any, name: str = "ids") -> np.ndarray:
    """Ids to look up or remove: an int or ints of any shape -> (n,) int64 C-contiguous."""
    a = _as_array(ids, name)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers; got dtype {a.dtype}")
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must fit in int64; got a value of {a.max()}")
    return np.ascontiguousarray(a.reshape(-1), dtype=np.int64)


def as_token_sets(
    sets: Any, dim: int | None, name: str, *, keep_float16: bool = False
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate a batch of token sets (multi-vector documents or queries).

    sets    : a list / tuple of (n_i, dim) float arrays, one per set; CSR as a tuple
              (tokens (T, dim) float, offsets (n + 1,) int, ascending from 0 to T); or a single
              (n_tokens, dim) array for one set
    returns : (tokens (T, dim) float32 C-contiguous (float16 kept as is with keep_float16),
              offsets (n + 1,) int64, single): single is True for one set given as an array.
    Every set needs >= 1 token; dimensions must agree (with `dim` when given); values finite.
    """
    single = isinstance(sets, np.ndarray)
    if single:
        parts = [sets]
    elif isinstance(sets, tuple) and len(sets) == 2 and np.ndim(sets[1]) == 1:
        tokens = _as_array(sets[0], f"{name} tokens")
        offsets = _as_array(sets[1], f"{name} offsets")
        if offsets.dtype.kind not in "iu":
            raise TypeError(f"{name} offsets must be integers (int64); got dtype {offsets.dtype}")
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if tokens.ndim != 2:
            raise ValueError(f"{name} tokens must have shape (T, dim); got shape {tokens.shape}")
        if offsets.shape[0] < 2:
            raise ValueError(
                f"{name} offsets must hold n + 1 >= 2 values (CSR); got {offsets.shape[0]}"
            )
        if offsets[0] != 0 or offsets[-1] != tokens.shape[0]:
            raise ValueError(
                f"{name} offsets must run from 0 to the {tokens.shape[0]} token rows; "
                f"got {offsets[0]} .. {offsets[-1]}"
            )
        steps = np.diff(offsets)
        if (steps < 0).any():
            raise ValueError(
                f"{name} offsets must be ascending; offsets[{int(np.argmax(steps < 0)) + 1}] "
                "is smaller than the one before"
            )
        if (steps == 0).any():
            raise ValueError(
                f"{name}: set {int(np.argmax(steps == 0))} has no tokens; every set needs at "
                "least one"
            )
        return _token_rows(tokens, dim, name, keep_float16), offsets, False
    elif isinstance(sets, (list, tuple)):
        parts = list(sets)
    else:
        raise TypeError(
            f"{name} must be a list of (n_i, dim) arrays, a CSR tuple (tokens, offsets) or one "
            f"(n_tokens, dim) array; got {type(sets).__name__}"
        )
    if not parts:
        raise ValueError(f"{name} is empty; pass at least one set of token vectors")
    arrays: list[np.ndarray] = []
    for i, part in enumerate(parts):
        a = _as_array(part, f"{name}[{i}]")
        if a.ndim != 2:
            raise ValueError(
                f"{name}[{i}] must be a 2-D (n_tokens, dim) array; got shape {a.shape}"
            )
        if a.shape[0] == 0:
            raise ValueError(f"{name}[{i}] has no tokens; every set needs at least one")
        want = dim if dim is not None else arrays[0].shape[1] if arrays else a.shape[1]
        if a.shape[1] != want:
            what = "the dimension" if dim is not None else f"{name}[0]"
            raise ValueError(
                f"{name}[{i}] has dimension {a.shape[1]}, expected {want} (as {what}); "
                "every token vector must have the same dimension"
            )
        if a.dtype.kind != "f":
            raise TypeError(
                f"{name}[{i}] must hold floating-point values (float32 preferred); got dtype "
                f"{a.dtype}"
            )
        arrays.append(a)
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
    half = keep_float16 and all(a.dtype == np.float16 for a in arrays)
    tokens = (
        arrays[0]
        if len(arrays) == 1
        else np.concatenate(arrays, axis=0, dtype=np.float16 if half else np.float32)
    )
    return _token_rows(tokens, dim, name, keep_float16), offsets, single


def _token_rows(tokens: np.ndarray, dim: int | None, name: str, keep_float16: bool) -> np.ndarray:
    if tokens.dtype.kind != "f":
        raise TypeError(
            f"{name} tokens must hold floating-point values (float32 preferred); got dtype "
            f"{tokens.dtype}. Hint: convert with .astype(numpy.float32)"
        )
    if tokens.shape[1] == 0 or (dim is not None and tokens.shape[1] != dim):
        raise ValueError(
            f"{name} tokens must have shape (T, {dim if dim is not None else 'dim >= 1'}); "
            f"got {tokens.shape}"
        )
    if keep_float16 and tokens.dtype == np.float16:
        tokens = np.ascontiguousarray(tokens)
        finite = bool(np.isfinite(tokens).all())
    else:
        tokens = np.ascontiguousarray(tokens, dtype=np.float32)
        finite = _core.all_finite(tokens)
    if not finite:
        bad = int(np.count_nonzero(~np.isfinite(tokens).all(axis=1)))
        raise ValueError(
            f"{name} contains NaN or infinite values in {bad} token row(s); clean or drop them "
            "first"
        )
    return tokens
