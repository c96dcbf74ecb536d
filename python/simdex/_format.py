"""The simdex index file: one file per index.

Layout (little-endian):
    0   8 bytes  magic b"\\x93SIMDEX\\n"
    8   u32      format version (FORMAT_VERSION)
    12  u32      header length in bytes
    16  u32      CRC-32 of the header bytes
    20  header   UTF-8 JSON: {"kind", "params",
                             "arrays": [{name, dtype, shape, offset, nbytes, crc32}]}
    ... arrays, each at a 64-byte aligned offset (relative to the start of the file)

Loading validates everything before use: the container here (magic, version, header
checksum, strict JSON, array bounds, dtypes, shapes, array checksums), then each kind's
fields through `Fields` (types, shapes, ranges, finite values, ids unique and non-negative,
every slot, link and list entry in range). A truncated, corrupted or crafted file raises
ValueError naming the field. No path is ever read from a file: a re-rank side file is named
by the caller at load time (`load(path, rerank=...)`) and checked against the size and
checksum recorded here.
"""

from __future__ import annotations

import builtins
import io
import json
import math
import os
import struct
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from ._base import Index

import numpy as np

from ._checks import max_magnitude

MAGIC = b"\x93SIMDEX\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIII")
_ALIGN = 64
_DTYPES = {"float32", "float16", "uint8", "uint16", "int32", "uint32", "int64", "float64"}

T = TypeVar("T")
IndexT = TypeVar("IndexT", bound="Index")
_MAX_ARRAYS = 4096
_MAX_NDIM = 8

_KINDS: dict[str, Callable[[Fields], Index]] = {}


def register_kind(kind: str, restore: Callable[[Fields], Index]) -> None:
    _KINDS[kind] = restore


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _layout(
    kind: str, params: dict[str, Any], arrays: dict[str, np.ndarray]
) -> tuple[bytes, list[np.ndarray]]:
    # the header length depends on the offsets; iterate until stable
    offset_guess = 0
    for _ in range(4):
        offset = _align(_PREFIX.size + offset_guess)
        entries: list[dict[str, Any]] = []
        blobs: list[np.ndarray] = []
        for name, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            if arr.dtype.name not in _DTYPES:
                raise TypeError(f"cannot store array {name!r} of dtype {arr.dtype}")
            arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            entries.append(
                {
                    "name": name,
                    "dtype": arr.dtype.name,
                    "shape": list(arr.shape),
                    "offset": offset,
                    "nbytes": int(arr.nbytes),
                    "crc32": zlib.crc32(arr.data.cast("B")) if arr.nbytes else 0,
                }
            )
            blobs.append(arr)
            offset = _align(offset + arr.nbytes)
        header = json.dumps(
            {"kind": kind, "params": params, "arrays": entries}, sort_keys=True
        ).encode()
        if len(header) == offset_guess:
            break
        offset_guess = len(header)
    return header, blobs


def _write(fh: io.IOBase, kind: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    header, blobs = _layout(kind, params, arrays)
    fh.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header), zlib.crc32(header)))
    fh.write(header)
    pos = _PREFIX.size + len(header)
    entries = json.loads(header)["arrays"]
    for entry, arr in zip(entries, blobs, strict=True):
        fh.write(b"\0" * (entry["offset"] - pos))
        fh.write(arr.data.cast("B") if arr.nbytes else b"")
        pos = entry["offset"] + arr.nbytes


def save(target: Any, kind: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write to a path (atomically: a temporary file renamed over it) or a binary file object."""
    if hasattr(target, "write") and not isinstance(target, (str, bytes, os.PathLike)):
        _write(target, kind, params, arrays)
        return
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(f"save() takes a path or a binary file object; got {type(target).__name__}")
    path = os.fspath(target)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as fh:
            _write(fh, kind, params, arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def dumps(kind: str, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    _write(buf, kind, params, arrays)
    return buf.getvalue()


def _parse(
    buffer: Any, size: int, source: str, *, copy: bool
) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    def corrupt(why: str) -> ValueError:
        return ValueError(f"{source} is not a valid simdex index file: {why}")

    if size < _PREFIX.size:
        raise corrupt(f"only {size} bytes, shorter than the {_PREFIX.size}-byte prefix")
    magic, version, header_len, header_crc = _PREFIX.unpack(bytes(buffer[: _PREFIX.size]))
    if magic != MAGIC:
        raise corrupt(f"bad magic bytes {magic!r}")
    if version < 1 or version > FORMAT_VERSION:
        raise corrupt(
            f"format version {version}; this simdex reads versions 1..{FORMAT_VERSION} (upgrade "
            "simdex)"
        )
    if _PREFIX.size + header_len > size:
        raise corrupt(f"truncated header ({header_len} bytes declared, file has {size})")
    header = bytes(buffer[_PREFIX.size : _PREFIX.size + header_len])
    if zlib.crc32(header) != header_crc:
        raise corrupt("header checksum mismatch")
    try:
        meta = json.loads(header, parse_constant=_no_constant)
        kind, params, entries = meta["kind"], meta["params"], meta["arrays"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise corrupt(f"unreadable header ({exc})") from None
    if not isinstance(kind, str) or not isinstance(params, dict) or not isinstance(entries, list):
        raise corrupt("header must hold a kind (string), params (object) and arrays (list)")
    if len(entries) > _MAX_ARRAYS:
        raise corrupt(f"{len(entries)} arrays (at most {_MAX_ARRAYS})")
    arrays = {}
    for e in entries:
        try:
            name, dtype_name, shape = e["name"], e["dtype"], e["shape"]
            offset, nbytes, crc = e["offset"], e["nbytes"], e["crc32"]
        except (KeyError, TypeError) as exc:
            raise corrupt(f"bad array entry {str(e)[:200]} ({exc!r})") from None
        if (
            not isinstance(name, str)
            or name in arrays
            or not isinstance(dtype_name, str)
            or dtype_name not in _DTYPES
            or not isinstance(shape, list)
            or len(shape) > _MAX_NDIM
            or not all(_is_int(v) and v >= 0 for v in [*shape, offset, nbytes, crc])
        ):
            raise corrupt(
                f"bad array entry {str(e)[:200]} (name, dtype, shape, offset, nbytes, crc32)"
            )
        dtype, shape = np.dtype(dtype_name), tuple(shape)
        if math.prod(shape) * dtype.itemsize != nbytes:
            raise corrupt(f"array {name!r}: shape {shape} does not match {nbytes} bytes")
        if offset < _PREFIX.size + header_len or offset + nbytes > size:
            raise corrupt(f"array {name!r} lies outside the file (truncated?)")
        view = (
            np.frombuffer(
                buffer, dtype=dtype.newbyteorder("<"), count=nbytes // dtype.itemsize, offset=offset
            )
            if nbytes
            else np.zeros(0, dtype)
        )
        if nbytes and zlib.crc32(view.data.cast("B")) != crc:
            raise corrupt(f"checksum mismatch in array {name!r} (corrupted data)")
        view = view.reshape(shape)
        arrays[name] = view.copy() if copy else view
    return kind, params, arrays


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a simdex header")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def loads(data: bytes, rerank: str | os.PathLike[str] | None = None) -> Index:
    """An index from bytes written by dumps (pickling). `rerank`: the side file of an index
    whose re-rank vectors live in a file."""
    kind, params, arrays = _parse(data, len(data), "pickled data", copy=True)
    return _restore(kind, params, arrays, "pickled data", rerank)


@overload
def load(
    source: Any,
    mmap: bool = False,
    rerank: str | os.PathLike[str] | None = None,
    *,
    kind: None = None,
) -> Index: ...


@overload
def load(
    source: Any,
    mmap: bool = False,
    rerank: str | os.PathLike[str] | None = None,
    *,
    kind: type[IndexT],
) -> IndexT: ...


def load(
    source: Any,
    mmap: bool = False,
    rerank: str | os.PathLike[str] | None = None,
    *,
    kind: type[IndexT] | None = None,
) -> Index:
    """An index from a file written by save() (see the module docstring).

    source : a path, or a binary file object (read whole; mmap needs a path)
    mmap   : map the file and use its large arrays in place (read-only until the index is
             changed, then copied). The file must not be truncated while mapped (SIGBUS: the
             user's error); if it is overwritten, searches may give wrong answers but graph
             walks bounds-check their links and never crash.
    rerank : the side file holding the re-rank vectors of an index built with rerank=<path>
             (required for such an index; checked against the size and checksum it recorded)
    kind   : the index class expected (e.g. simdex.HNSWIndex): a file of another kind raises
             TypeError, and type checkers know what is returned
    """
    index = _load(source, mmap, rerank)
    if kind is not None and not isinstance(index, kind):
        raise TypeError(f"expected a {kind.__name__} file; this one holds a {type(index).__name__}")
    return index


def _load(source: Any, mmap: bool, rerank: str | os.PathLike[str] | None) -> Index:
    if not isinstance(mmap, bool):
        raise TypeError(f"mmap must be True or False; got {type(mmap).__name__}")
    if rerank is not None and not isinstance(rerank, (str, os.PathLike)):
        raise TypeError(
            f"rerank must be None or the path of the side file; got {type(rerank).__name__}"
        )
    if hasattr(source, "read") and not isinstance(source, (str, bytes, os.PathLike)):
        if mmap:
            raise ValueError("mmap=True needs a path, not a file object")
        data = source.read()
        if not isinstance(data, bytes):
            raise TypeError(
                "load() needs a binary file object (opened with 'rb'); read gave "
                f"{type(data).__name__}"
            )
        kind, params, arrays = _parse(data, len(data), "file object", copy=True)
        return _restore(kind, params, arrays, "file object", rerank)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load() takes a path or a binary file object; got {type(source).__name__}")
    path = os.fspath(source)
    size = os.path.getsize(path)
    if mmap:
        buffer = np.memmap(path, dtype=np.uint8, mode="r") if size else b""
        kind, params, arrays = _parse(buffer, size, repr(path), copy=False)
    else:
        with open(path, "rb") as fh:
            data = fh.read()
        kind, params, arrays = _parse(data, len(data), repr(path), copy=True)
    return _restore(kind, params, arrays, repr(path), rerank)


def _restore(
    kind: str,
    params: dict[str, Any],
    arrays: dict[str, np.ndarray],
    source: str,
    rerank: str | os.PathLike[str] | None,
) -> Index:
    # importing the package registers every index kind
    import simdex  # noqa: F401

    if kind not in _KINDS:
        raise ValueError(f"{source}: unknown index kind {kind[:100]!r}; known: {sorted(_KINDS)}")
    fields = Fields(
        kind, params, arrays, source, rerank=None if rerank is None else os.fspath(rerank)
    )
    index = _KINDS[kind](fields)
    if fields.rerank is not None and not fields.rerank_used:
        raise ValueError(
            f"{source}: rerank={fields.rerank!r} was given, but this {kind} index keeps no "
            "re-rank side file"
        )
    return index


_MISSING: Any = object()


class Fields:
    """The params and arrays of one loaded index, read through typed, bounded accessors:
    a missing, mistyped or out-of-range field raises ValueError naming it. Every kind's
    _from_state reads its file through one of these and checks what ties fields together."""

    def __init__(
        self,
        kind: str,
        params: dict[str, Any],
        arrays: dict[str, np.ndarray],
        source: str,
        *,
        rerank: str | None = None,
        prefix: str = "",
    ) -> None:
        self.kind, self.params, self.arrays, self.source = kind, params, arrays, source
        self.rerank, self.rerank_used, self.prefix = rerank, False, prefix
        self._root = self

    def error(self, name: str, why: str) -> ValueError:
        return ValueError(
            f"{self.source} is not a valid {self.kind} index file: field "
            f"{self.prefix + name!r}: {why}"
        )

    def has(self, name: str) -> builtins.bool:
        return name in self.params

    def _get(self, name: str, default: Any) -> Any:
        if name in self.params:
            return self.params[name]
        if default is _MISSING:
            raise self.error(name, "missing")
        return default

    def int(
        self, name: str, lo: builtins.int, hi: builtins.int, default: Any = _MISSING
    ) -> builtins.int:
        v = self._get(name, default)
        if not _is_int(v) or not lo <= v <= hi:
            raise self.error(name, f"expected an integer in [{lo}, {hi}], got {str(v)[:60]}")
        return int(v)

    def float(
        self,
        name: str,
        lo: builtins.float = -np.inf,
        hi: builtins.float = np.inf,
        default: Any = _MISSING,
        *,
        allow_none: bool = False,
    ) -> builtins.float | None:
        v = self._get(name, default)
        if v is None and allow_none:
            return None
        if not (_is_int(v) or isinstance(v, float)) or not lo <= v <= hi:
            raise self.error(name, f"expected a finite number in [{lo}, {hi}], got {str(v)[:60]}")
        return float(v)

    def bool(self, name: str, default: Any = _MISSING) -> builtins.bool:
        v = self._get(name, default)
        if not isinstance(v, bool):
            raise self.error(name, f"expected true or false, got {str(v)[:60]}")
        return v

    def choice(self, name: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        v = self._get(name, default)
        if not isinstance(v, str) or v not in choices:
            raise self.error(name, f"expected one of {choices}, got {str(v)[:60]}")
        return v

    def floats(
        self, name: str, max_len: builtins.int, default: Any = _MISSING
    ) -> list[builtins.float]:
        v = self._get(name, default)
        if (
            not isinstance(v, list)
            or len(v) > max_len
            or not all((_is_int(x) or isinstance(x, float)) for x in v)
        ):
            raise self.error(name, f"expected a list of at most {max_len} numbers")
        return [float(x) for x in v]

    def sub(self, name: str, prefix: str) -> Fields:
        """The nested state of an inner index: params[name] and the arrays named prefix + ..."""
        v = self._get(name, _MISSING)
        if not isinstance(v, dict):
            raise self.error(name, "expected an object")
        arrays = {k[len(prefix) :]: a for k, a in self.arrays.items() if k.startswith(prefix)}
        inner = Fields(
            self.kind, v, arrays, self.source, rerank=self.rerank, prefix=self.prefix + prefix
        )
        inner._root = self._root
        return inner

    def build(self, make: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """make(*args, **kwargs) from header values; its argument errors name the header."""
        try:
            return make(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            raise self.error("params", str(exc)) from None

    def ranges(
        self, lo_name: str, scale_name: str, dim: builtins.int
    ) -> tuple[np.ndarray, np.ndarray]:
        """int8 per-dimension ranges: lo (dim,) and scale (dim,) >= 0, finite float32 (copies),
        decoding to values within the magnitude bound of dim-d vectors."""
        lo = np.array(self.array(lo_name, np.float32, (dim,), finite=True))
        scale = np.array(self.array(scale_name, np.float32, (dim,), finite=True))
        if (scale < 0).any():
            raise self.error(scale_name, "int8 scales must be >= 0")
        reach = np.abs(lo.astype(np.float64)) + 255.0 * scale.astype(np.float64)
        if reach.size and reach.max() > max_magnitude(dim):
            raise self.error(
                scale_name,
                f"decoded values reach {reach.max():.3g}, above the "
                f"{max_magnitude(dim):.3g} that {dim}-d float32 distances allow",
            )
        return lo, scale

    def optional_ranges(
        self, lo_name: str, scale_name: str, dim: builtins.int, *, needed: builtins.bool
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """ranges() when the file has them (an int8 index saved before its first add has none);
        ValueError when they are missing but `needed` (stored int8 rows)."""
        if lo_name not in self.arrays and scale_name not in self.arrays:
            if needed:
                raise self.error(lo_name, "int8 rows are stored without their ranges")
            return None
        return self.ranges(lo_name, scale_name, dim)

    def finite_rows(self, name: str, rows: np.ndarray, storage: str) -> None:
        """Stored float rows (float32 / float16, or bfloat16 bits as uint16) hold no NaN / inf
        and no component above the magnitude bound of their dimension (as the API's inputs)."""
        if storage in ("float32", "float16"):
            bad = rows.size and not np.isfinite(rows).all()
            if not bad and rows.size:
                self.bounded(name, rows, rows.shape[-1])
        elif storage == "bfloat16":
            bad = rows.size and ((rows & 0x7F80) == 0x7F80).any()
        else:
            bad = False
        if bad:
            raise self.error(name, "rows hold NaN or infinite values")

    def rows_for(self, store: Any, n: builtins.int) -> Any:
        """A re-rank store restored for n slots (one row per slot)."""
        if len(store) != n:
            raise self.error("rerank_rows", f"{len(store)} re-rank rows for {n} slots")
        return store

    def use_rerank(self, why_needed: str) -> str:
        """The side file the caller named at load time (ValueError `why_needed` without one)."""
        if self.rerank is None:
            raise ValueError(f"{self.source}: {why_needed}")
        self._root.rerank_used = True
        return self.rerank

    def array(
        self,
        name: str,
        dtype: Any,
        shape: tuple[builtins.int | None, ...],
        *,
        finite: builtins.bool = False,
    ) -> np.ndarray:
        """The array `name` with this dtype and shape (None: any length on that axis);
        finite=True refuses NaN and infinities."""
        a = self.optional_array(name, dtype, shape, finite=finite)
        if a is None:
            raise self.error(name, "array missing")
        return a

    def optional_array(
        self,
        name: str,
        dtype: Any,
        shape: tuple[builtins.int | None, ...],
        *,
        finite: builtins.bool = False,
    ) -> np.ndarray | None:
        """As array(), or None when the file has no array of that name."""
        a = self.arrays.get(name)
        if a is None:
            return None
        want = np.dtype(dtype)
        if (
            a.dtype != want
            or a.ndim != len(shape)
            or any(s is not None and s != t for s, t in zip(shape, a.shape, strict=True))
        ):
            expected = tuple("n" if s is None else s for s in shape)
            raise self.error(
                name, f"expected a {want} array of shape {expected}, got {a.dtype} {a.shape}"
            )
        if finite and a.size and not np.isfinite(a).all():
            raise self.error(name, "holds NaN or infinite values")
        return a

    def bounded(self, name: str, a: np.ndarray, dim: builtins.int) -> np.ndarray:
        """a, whose components stay within the magnitude the API accepts for dim-d vectors
        (larger ones would overflow float32 distances)."""
        if a.size:
            biggest = float(np.abs(a).max())
            if biggest > max_magnitude(dim):
                raise self.error(
                    name,
                    f"values up to {biggest:.3g}, above the "
                    f"{max_magnitude(dim):.3g} that {dim}-d float32 distances allow",
                )
        return a

    def ids(self, name: str, n: builtins.int | None = None) -> np.ndarray:
        """User id per slot, int64 (n,): -1 (free or removed) or >= 0, live ids unique."""
        a = self.array(name, np.int64, (n,))
        if a.size and a.min() < -1:
            raise self.error(name, f"ids must be >= 0 (or -1 for a free slot), got {int(a.min())}")
        live = np.sort(a[a >= 0])
        if live.size > 1 and (live[1:] == live[:-1]).any():
            raise self.error(name, f"id {int(live[1:][live[1:] == live[:-1]][0])} appears twice")
        return a
