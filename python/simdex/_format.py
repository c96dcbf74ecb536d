"""The simdex index file: one file per index.

Layout (little-endian):
    0   8 bytes  magic b"\\x93SIMDEX\\n"
    8   u32      format version (FORMAT_VERSION)
    12  u32      header length in bytes
    16  u32      CRC-32 of the header bytes
    20  header   UTF-8 JSON: {"kind", "params", "arrays": [{name, dtype, shape, offset, nbytes, crc32}]}
    ... arrays, each at a 64-byte aligned offset (relative to the start of the file)

Loading validates everything before use (magic, version, header checksum, array bounds,
dtypes, shapes, array checksums): a truncated or corrupted file raises ValueError.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from typing import Any, Callable

import numpy as np

MAGIC = b"\x93SIMDEX\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIII")
_ALIGN = 64
_DTYPES = {"float32", "float16", "uint8", "uint16", "int32", "uint32", "int64", "float64"}

_KINDS: dict[str, Callable[[dict, dict[str, np.ndarray]], Any]] = {}


def register_kind(kind: str, restore: Callable[[dict, dict[str, np.ndarray]], Any]) -> None:
    _KINDS[kind] = restore


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _layout(kind: str, params: dict, arrays: dict[str, np.ndarray]) -> tuple[bytes, list[np.ndarray]]:
    entries, blobs = [], []
    # the header length depends on the offsets; iterate until stable
    offset_guess = 0
    for _ in range(4):
        offset = _align(_PREFIX.size + offset_guess)
        entries, blobs = [], []
        for name, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            if arr.dtype.name not in _DTYPES:
                raise TypeError(f"cannot store array {name!r} of dtype {arr.dtype}")
            arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            entries.append({
                "name": name, "dtype": arr.dtype.name, "shape": list(arr.shape),
                "offset": offset, "nbytes": int(arr.nbytes),
                "crc32": zlib.crc32(memoryview(arr).cast("B")) if arr.nbytes else 0,
            })
            blobs.append(arr)
            offset = _align(offset + arr.nbytes)
        header = json.dumps({"kind": kind, "params": params, "arrays": entries},
                            sort_keys=True).encode()
        if len(header) == offset_guess:
            break
        offset_guess = len(header)
    return header, blobs


def _write(fh: io.IOBase, kind: str, params: dict, arrays: dict[str, np.ndarray]) -> None:
    header, blobs = _layout(kind, params, arrays)
    fh.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header), zlib.crc32(header)))
    fh.write(header)
    pos = _PREFIX.size + len(header)
    entries = json.loads(header)["arrays"]
    for entry, arr in zip(entries, blobs):
        fh.write(b"\0" * (entry["offset"] - pos))
        fh.write(memoryview(arr).cast("B") if arr.nbytes else b"")
        pos = entry["offset"] + arr.nbytes


def save(path: str | os.PathLike, kind: str, params: dict, arrays: dict[str, np.ndarray]) -> None:
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        _write(fh, kind, params, arrays)
    os.replace(tmp, path)


def dumps(kind: str, params: dict, arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    _write(buf, kind, params, arrays)
    return buf.getvalue()


def _parse(buffer: Any, size: int, source: str, *, copy: bool) -> tuple[str, dict, dict[str, np.ndarray]]:
    def corrupt(why: str) -> ValueError:
        return ValueError(f"{source} is not a valid simdex index file: {why}")

    if size < _PREFIX.size:
        raise corrupt(f"only {size} bytes, shorter than the {_PREFIX.size}-byte prefix")
    magic, version, header_len, header_crc = _PREFIX.unpack(bytes(buffer[: _PREFIX.size]))
    if magic != MAGIC:
        raise corrupt(f"bad magic bytes {magic!r}")
    if version < 1 or version > FORMAT_VERSION:
        raise corrupt(f"format version {version}; this simdex reads versions 1..{FORMAT_VERSION} (upgrade simdex)")
    if _PREFIX.size + header_len > size:
        raise corrupt(f"truncated header ({header_len} bytes declared, file has {size})")
    header = bytes(buffer[_PREFIX.size: _PREFIX.size + header_len])
    if zlib.crc32(header) != header_crc:
        raise corrupt("header checksum mismatch")
    try:
        meta = json.loads(header)
        kind, params, entries = meta["kind"], meta["params"], meta["arrays"]
    except (ValueError, KeyError, TypeError) as exc:
        raise corrupt(f"unreadable header ({exc})") from None
    arrays = {}
    for e in entries:
        try:
            name, dtype, shape = e["name"], np.dtype(e["dtype"]), tuple(int(s) for s in e["shape"])
            offset, nbytes, crc = int(e["offset"]), int(e["nbytes"]), int(e["crc32"])
        except (KeyError, TypeError, ValueError) as exc:
            raise corrupt(f"bad array entry {e!r} ({exc})") from None
        if dtype.name not in _DTYPES or any(s < 0 for s in shape):
            raise corrupt(f"array {name!r} has dtype {dtype} / shape {shape}")
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != nbytes:
            raise corrupt(f"array {name!r}: shape {shape} does not match {nbytes} bytes")
        if offset < _PREFIX.size + header_len or offset + nbytes > size:
            raise corrupt(f"array {name!r} lies outside the file (truncated?)")
        view = np.frombuffer(buffer, dtype=dtype.newbyteorder("<"), count=nbytes // dtype.itemsize,
                             offset=offset) if nbytes else np.zeros(0, dtype)
        if nbytes and zlib.crc32(memoryview(view).cast("B")) != crc:
            raise corrupt(f"checksum mismatch in array {name!r} (corrupted data)")
        view = view.reshape(shape)
        arrays[name] = view.copy() if copy else view
    return kind, params, arrays


def loads(data: bytes) -> Any:
    kind, params, arrays = _parse(data, len(data), "pickled data", copy=True)
    return _restore(kind, params, arrays)


def load(path: str | os.PathLike, mmap: bool = False) -> Any:
    path = os.fspath(path)
    size = os.path.getsize(path)
    if mmap:
        buffer = np.memmap(path, dtype=np.uint8, mode="r") if size else b""
        kind, params, arrays = _parse(buffer, size, repr(path), copy=False)
    else:
        with open(path, "rb") as fh:
            data = fh.read()
        kind, params, arrays = _parse(data, len(data), repr(path), copy=True)
    return _restore(kind, params, arrays)


def _restore(kind: str, params: dict, arrays: dict[str, np.ndarray]) -> Any:
    # importing the package registers every index kind
    import simdex  # noqa: F401

    if kind not in _KINDS:
        raise ValueError(f"unknown index kind {kind!r} in file; known: {sorted(_KINDS)}")
    try:
        return _KINDS[kind](params, arrays)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"index file of kind {kind!r} is missing or has bad fields: {exc}") from None
