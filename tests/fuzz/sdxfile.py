"""The simdex index file read and written without simdex, for the fuzz targets and the crafted
regression corpus: a file here is taken apart into (version, kind, params, arrays), changed,
and put back together with correct offsets and CRC-32 checksums, so the loader sees a
well-formed file whose *contents* are wrong. Independent of python/simdex/_format.py on
purpose (the code under test must not also write its own test inputs); the layout is the one
documented there:

    0   8 bytes  magic b"\\x93SIMDEX\\n"
    8   u32      format version
    12  u32      header length in bytes
    16  u32      CRC-32 of the header bytes
    20  header   UTF-8 JSON {"kind", "params", "arrays": [{name, dtype, shape, offset, nbytes, crc32}]}
    ... arrays, each at a 64-byte aligned offset

Also here: `exercise(index)`, the contract check run on whatever loads, and
`StructureMutator`, the structure-aware mutation of a file.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import random
import struct
import zlib
from typing import Any

import numpy as np

MAGIC = b"\x93SIMDEX\n"
PREFIX = struct.Struct("<8sIII")
ALIGN = 64


@dataclasses.dataclass
class SdxFile:
    version: int
    kind: Any
    params: Any
    arrays: list[tuple[str, np.ndarray]]  # in file order; names may repeat in crafted files

    def array(self, name: str) -> np.ndarray:
        for key, arr in self.arrays:
            if key == name:
                return arr
        raise KeyError(name)

    def set(self, name: str, arr: np.ndarray) -> None:
        for i, (key, _) in enumerate(self.arrays):
            if key == name:
                self.arrays[i] = (name, arr)
                return
        self.arrays.append((name, arr))

    def drop(self, name: str) -> None:
        self.arrays = [(key, arr) for key, arr in self.arrays if key != name]

    def copy(self) -> SdxFile:
        return SdxFile(self.version, self.kind, json.loads(json.dumps(self.params)),
                       [(k, a.copy()) for k, a in self.arrays])

    def to_bytes(self, *, dtype_override: dict[str, str] | None = None) -> bytes:
        """A well-formed file: offsets, lengths and checksums computed from the contents.
        dtype_override: array name -> dtype written in the header instead of the array's own
        (the bytes stay the same: "int64 ids retyped to float64")."""
        override = dtype_override or {}
        blobs = [(name, np.ascontiguousarray(arr)) for name, arr in self.arrays]
        header = b""
        for _ in range(8):  # the header length moves the offsets: iterate until stable
            offset = _align(PREFIX.size + len(header))
            entries = []
            for name, arr in blobs:
                raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
                entries.append({"name": name, "dtype": override.get(name, arr.dtype.name),
                                "shape": list(arr.shape), "offset": offset, "nbytes": len(raw),
                                "crc32": zlib.crc32(raw) if raw else 0})
                offset = _align(offset + len(raw))
            new = json.dumps({"kind": self.kind, "params": self.params, "arrays": entries},
                             sort_keys=True).encode()
            if len(new) == len(header):
                header = new
                break
            header = new
        return pack(header, [arr.tobytes() for _, arr in blobs], self.version,
                    [e["offset"] for e in json.loads(header)["arrays"]])


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def pack(header: bytes, payloads: list[bytes], version: int = 1,
         offsets: list[int] | None = None) -> bytes:
    """Prefix (with the header's CRC) + header + payloads at the given offsets (or packed
    64-byte aligned after the header). For hand-made headers of any structure."""
    out = bytearray(PREFIX.pack(MAGIC, version, len(header), zlib.crc32(header)) + header)
    pos = _align(len(out))
    for i, raw in enumerate(payloads):
        at = offsets[i] if offsets is not None else pos
        out.extend(b"\0" * (at - len(out)))
        out.extend(raw)
        pos = _align(len(out))
    return bytes(out)


def parse(blob: bytes) -> SdxFile:
    """Take a well-formed file apart (ValueError when it is not one)."""
    if len(blob) < PREFIX.size:
        raise ValueError("too short")
    magic, version, header_len, _ = PREFIX.unpack(blob[: PREFIX.size])
    if magic != MAGIC:
        raise ValueError("bad magic")
    meta = json.loads(blob[PREFIX.size: PREFIX.size + header_len])
    arrays = []
    for e in meta["arrays"]:
        dtype = np.dtype(e["dtype"]).newbyteorder("<")
        raw = blob[e["offset"]: e["offset"] + e["nbytes"]]
        if len(raw) != e["nbytes"] or e["nbytes"] % dtype.itemsize:
            raise ValueError("array outside the file")
        arr = np.frombuffer(raw, dtype=dtype).reshape(e["shape"]).copy()
        arrays.append((e["name"], arr))
    return SdxFile(version, meta["kind"], meta["params"], arrays)


# ---- the contract check on a loaded index ------------------------------------------------

class ContractError(AssertionError):
    """A loaded index broke the public contract (a finding: the loader accepted bad contents)."""


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise ContractError(what)


def queries_for(index: Any, nq: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if index.metric == "hamming":
        return rng.integers(0, 256, (nq, index.dim // 8), dtype=np.uint8)
    return rng.standard_normal((nq, index.dim)).astype(np.float32)


def _search(index: Any, q: np.ndarray, k: int, live: set[int], **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    if "nprobe" in inspect.signature(index.search).parameters:  # the default 8 is refused when nlist < 8
        kw["nprobe"] = min(8, index.nlist)
    dist, ids = index.search(q, k, threads=1, **kw)
    _check(dist.shape == (q.shape[0], k) and ids.shape == dist.shape, f"result shapes {dist.shape} {ids.shape}")
    _check(dist.dtype == np.float32 and ids.dtype == np.int64, f"result dtypes {dist.dtype} {ids.dtype}")
    _check(not np.isnan(dist).any(), f"NaN distance in {dist.tolist()}")
    _check(bool(np.all(dist[:, 1:] >= dist[:, :-1])), f"distances not ascending: {dist.tolist()}")
    pad = ids == -1
    _check(bool(np.all(np.isinf(dist[pad]) & (dist[pad] > 0))), "padding (-1) without +inf distance")
    _check(bool(np.all(np.isfinite(dist[~pad]))), f"real id with non-finite distance: {dist.tolist()} {ids.tolist()}")
    found = set(ids[~pad].tolist())
    _check(found <= live, f"ids not in the index returned: {sorted(found - live)[:5]}")
    for row in ids:
        real = row[row != -1]
        _check(len(set(real.tolist())) == real.size, f"an id returned twice in one row: {row.tolist()}")
    return dist, ids


MAX_EXERCISE_DIM = 4096


def _refused_rows(exc: ValueError) -> bool:
    """The documented refusals of rows that the loaded training cannot store (values a
    float16 store cannot hold, magnitudes that overflow float32 distances)."""
    return "storage holds values" in str(exc) or "magnitude" in str(exc)


def exercise(index: Any) -> None:
    """Use a loaded index as a user would (search, filtered search, remove, add, search) and
    check the contract on every answer; raises ContractError on a broken one, and lets any
    exception of the index through (the caller decides what is allowed)."""
    dim, n = index.dim, len(index)
    _check(isinstance(dim, int) and dim >= 1, f"dim {dim!r}")
    ids = index.ids
    _check(isinstance(ids, np.ndarray) and ids.dtype == np.int64 and ids.shape == (n,),
           f"ids {type(ids).__name__} {getattr(ids, 'dtype', None)} {getattr(ids, 'shape', None)} for len {n}")
    _check(bool(np.all(ids >= 0)), f"negative ids {ids[ids < 0][:5].tolist()}")
    _check(np.unique(ids).size == n, "duplicate ids")
    if dim > MAX_EXERCISE_DIM:
        return
    live = set(ids.tolist())
    q = queries_for(index)
    k = 5
    try:
        _search(index, q, k, live)
    except ValueError as exc:
        if n == 0 and "train" in str(exc):  # an empty, untrained index: the documented refusal
            return
        if _refused_rows(exc):  # e.g. LeanVec matrices that project queries out of range
            return
        raise
    if n:
        allowed = ids[: max(1, n // 2)]
        _, got = _search(index, q, k, live, filter=allowed)
        _check(set(got[got != -1].tolist()) <= set(allowed.tolist()), "filter not respected")
        gone = ids[:2]
        index.remove(gone)
        live -= set(gone.tolist())
        _, got = _search(index, q, k, live)
        _check(not (set(got.ravel().tolist()) & set(gone.tolist())), "removed id returned")
    new = queries_for(index, 4, seed=1)
    fresh = np.setdiff1d(np.arange(n + 4, dtype=np.int64), ids)[:4]  # ids no row holds
    try:
        index.add(new, fresh, threads=1)
    except ValueError as exc:
        if (n == 0 and "train" in str(exc)) or _refused_rows(exc):
            return
        raise
    live |= set(fresh.tolist())
    _check(len(index) == len(live), f"len {len(index)} after add, expected {len(live)}")
    try:
        index.add(new, threads=1)  # sequential ids: must not collide with any live id
    except ValueError as exc:
        if "no sequential id is left" in str(exc):  # the file holds id 2**63 - 1: documented
            return
        raise
    _check(len(index) == len(live) + 4, f"len {len(index)} after add of sequential ids, expected {len(live) + 4}")
    live = set(index.ids.tolist())
    _search(index, q, k, live)


# ---- structure-aware mutation ------------------------------------------------------------

INTERESTING_NUMBERS: list[Any] = [
    0, 1, -1, 2, 3, 7, 255, 256, 65535, 2**31 - 1, 2**31, -2**31, 2**32, 2**40, -2**40,
    2**53, 2**63 - 1, 2**63, 2**64, -2**63, 0.5, -0.0, 1e308, math.nan, math.inf, -math.inf,
]
INTERESTING_OTHER: list[Any] = [True, False, None, "", "x", "l2", "float16", "memory", [], {}, [1], {"a": 1}]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, prefix + (i,))
    return out


def _get(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


def _interesting_for(arr: np.ndarray, n: int) -> list[Any]:
    if arr.dtype.kind == "f":
        return [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e38, -1e38, 3.4e38, 1e-45, 65504.0 * 2, 1e19]
    info = np.iinfo(arr.dtype)
    values = [0, 1, info.max, info.min, n - 1, n, n + 1, 2 * n, -1, -2, -2**40, 2**40, 2**31, 2**32 - 1]
    return [v for v in values if info.min <= v <= info.max]


class StructureMutator:
    """Mutates a parsed file: header fields (values, types, deletions), array entries
    (dtype, shape, presence, names) and array contents (interesting values, copies, byte
    flips); the caller re-serialises with correct checksums. Deterministic per seed."""

    DTYPES = ("float32", "float16", "float64", "int64", "int32", "uint32", "uint16", "uint8")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def mutate(self, f: SdxFile) -> tuple[SdxFile, dict[str, str]]:
        f = f.copy()
        override: dict[str, str] = {}
        for _ in range(self.rng.choice((1, 1, 1, 2, 3))):
            op = self.rng.choices(
                [self.param, self.content, self.content_bytes, self.entry, self.kind],
                weights=[36, 36, 10, 16, 2])[0]
            op(f, override)
        return f, override

    # header ------------------------------------------------------------------------------
    def param(self, f: SdxFile, override: dict) -> None:
        paths = _paths(f.params)
        path = self.rng.choice(paths)
        old = _get(f.params, path)
        choice = self.rng.random()
        if path and choice < 0.1:  # delete the field
            parent = _get(f.params, path[:-1])
            del parent[path[-1]]
            return
        if isinstance(old, bool) or not isinstance(old, (int, float)) or choice < 0.55:
            # a copy: the shared [1] / {"a": 1} must never become part of a file (a later
            # mutation of that file could put the list inside itself: endless recursion)
            new = copy.deepcopy(self.rng.choice(INTERESTING_NUMBERS + INTERESTING_OTHER))
        else:  # numeric tweak
            new = self.rng.choice([old + 1, old - 1, old * 2, -old, old // 2 if isinstance(old, int) else old / 2,
                                   float(old), str(old)])
        if not path:
            f.params = new
        else:
            _get(f.params, path[:-1])[path[-1]] = new

    def kind(self, f: SdxFile, override: dict) -> None:
        f.kind = self.rng.choice(["flat", "hnsw", "pq", "ivfpq", "leanvec", "binary", "", 7, None, ["flat"]])

    # array entries -----------------------------------------------------------------------
    def entry(self, f: SdxFile, override: dict) -> None:
        if not f.arrays:
            return
        i = self.rng.randrange(len(f.arrays))
        name, arr = f.arrays[i]
        op = self.rng.randrange(6)
        if op == 0:  # drop
            del f.arrays[i]
        elif op == 1:  # duplicate, or rename to another array's name
            other = self.rng.choice(f.arrays)[0]
            f.arrays.append((other, arr.copy()))
        elif op == 2:  # retype: same bytes, another dtype in the header (when sizes allow)
            same = [d for d in self.DTYPES if np.dtype(d).itemsize == arr.dtype.itemsize and d != arr.dtype.name]
            if same:
                override[name] = self.rng.choice(same)
        elif op == 3:  # convert the values to another dtype
            f.arrays[i] = (name, arr.astype(self.rng.choice(self.DTYPES)))
        elif op == 4:  # reshape: grow, shrink, transpose, flatten
            flat = arr.reshape(-1)
            what = self.rng.randrange(4)
            if what == 0 and arr.ndim and arr.shape[0]:
                f.arrays[i] = (name, arr[: self.rng.randrange(arr.shape[0])])
            elif what == 1 and arr.ndim:
                f.arrays[i] = (name, np.concatenate([arr, arr[:1]]) if arr.shape[0] else arr)
            elif what == 2 and arr.ndim >= 2:
                f.arrays[i] = (name, np.ascontiguousarray(arr.T))
            else:
                f.arrays[i] = (name, flat.copy())
        else:  # replace with another array's contents
            f.arrays[i] = (name, self.rng.choice(f.arrays)[1].copy())

    # array contents ----------------------------------------------------------------------
    def content(self, f: SdxFile, override: dict) -> None:
        sized = [(i, name, arr) for i, (name, arr) in enumerate(f.arrays) if arr.size]
        if not sized:
            return
        i, name, arr = self.rng.choice(sized)
        arr = arr.copy()
        flat = arr.reshape(-1)
        n = len(f.array("ids")) if any(k == "ids" for k, _ in f.arrays) else flat.size
        count = self.rng.choice((1, 1, 2, 8, max(1, flat.size // 4)))
        where = [self.rng.choice((0, flat.size - 1, self.rng.randrange(flat.size))) for _ in range(count)]
        if self.rng.random() < 0.2:  # copy another element (duplicates: ids, slots, links)
            for w in where:
                flat[w] = flat[self.rng.randrange(flat.size)]
        else:
            value = self.rng.choice(_interesting_for(arr, n))
            flat[where] = np.array(value).astype(arr.dtype, copy=False) if arr.dtype.kind == "f" else value
        f.arrays[i] = (name, arr)

    def content_bytes(self, f: SdxFile, override: dict) -> None:
        sized = [(i, name, arr) for i, (name, arr) in enumerate(f.arrays) if arr.size]
        if not sized:
            return
        i, name, arr = self.rng.choice(sized)
        raw = bytearray(arr.tobytes())
        for _ in range(self.rng.choice((1, 2, 4, 16))):
            raw[self.rng.randrange(len(raw))] = self.rng.randrange(256)
        f.arrays[i] = (name, np.frombuffer(bytes(raw), dtype=arr.dtype).reshape(arr.shape).copy())
