"""The crafted-file corpus of issue 11: well-checksummed index files whose contents are
invalid, each made from a committed real file of tests/data by one change. Every one must
raise ValueError at load (tests/test_untrusted.py loads each in a subprocess).

    python tests/fuzz/crafted.py OUT_DIR [VICTIM]   # writes OUT_DIR/<case>.sdx

`victim` is the path a crafted header names as its re-rank file: loading must never open
it (no path is ever read from a file).
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Callable

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sdxfile

DATA = HERE.parent / "data"
BASES = {
    "flat": "flat-float32-v1.sdx", "flat8": "flat-int8-v1.sdx", "hnsw": "hnsw-float32-v1.sdx",
    "hnsw8": "hnsw-int8-v1.sdx", "pq8": "pq8-rerank-v1.sdx", "pq4": "pq4-v1.sdx",
    "ivfpq8": "ivfpq8-v1.sdx", "ivfpq4": "ivfpq4-v1.sdx", "leanvec": "leanvec-v1.sdx",
    "binary": "binary-v1.sdx", "binary-graph": "binary-graph-v1.sdx", "rabitq": "rabitq-v1.sdx",
    "ivf-rabitq": "approximate/ivf-rabitq-v1.sdx", "hnsw-rabitq": "hnsw-rabitq-v1.sdx",
    "rabitq-ip": "rabitq-ip-v2.sdx", "ivf-rabitq-ip": "approximate/ivf-rabitq-ip-v2.sdx",
}
IDS = {"flat": "ids", "flat8": "ids", "hnsw": "ids", "hnsw8": "ids", "pq8": "ids", "pq4": "ids",
       "ivfpq8": "ids", "ivfpq4": "ids", "leanvec": "ids", "binary": "ids", "binary-graph": "hnsw.ids",
       "rabitq": "ids", "ivf-rabitq": "ids", "hnsw-rabitq": "ids", "rabitq-ip": "ids",
       "ivf-rabitq-ip": "ids"}


def base(name: str) -> sdxfile.SdxFile:
    return sdxfile.parse((DATA / BASES[name]).read_bytes())


def _set(f: sdxfile.SdxFile, array: str, index: tuple | int, value: float) -> sdxfile.SdxFile:
    arr = f.array(array).copy()
    arr[index] = value
    f.set(array, arr)
    return f


def _live(f: sdxfile.SdxFile, array: str) -> np.ndarray:
    """Slots holding an id (-1 marks a free slot)."""
    return np.flatnonzero(f.array(array) >= 0)


def _dup_id(f: sdxfile.SdxFile, array: str) -> sdxfile.SdxFile:
    """Give a second live slot the id of the first."""
    first, second = _live(f, array)[:2]
    return _set(f, array, int(second), int(f.array(array)[first]))


def _param(f: sdxfile.SdxFile, path: str, value: object) -> sdxfile.SdxFile:
    *parents, last = path.split(".")
    node = f.params
    for key in parents:
        node = node[key]
    node[last] = value
    return f


def _drop(f: sdxfile.SdxFile, array: str) -> sdxfile.SdxFile:
    f.drop(array)
    return f


def _rows_f32(f: sdxfile.SdxFile, slot: int, value: float, array: str = "blocks") -> sdxfile.SdxFile:
    """Put a value in the stored vector of a graph slot (the first bytes of its block)."""
    blocks = f.array(array).copy()
    row = blocks[slot, :4].view(np.float32)
    row[0] = value
    f.set(array, blocks)
    return f


def _resize(f: sdxfile.SdxFile, array: str, change: int) -> sdxfile.SdxFile:
    """Drop the last element (change -1) or repeat it (change 1)."""
    arr = f.array(array)
    f.set(array, arr[:change] if change < 0 else np.concatenate([arr, arr[-change:]]))
    return f


def _link(f: sdxfile.SdxFile, slot: int, value: int, links_offset: int) -> sdxfile.SdxFile:
    """Point the first level-0 link of a slot at `value` (count at links_offset, links after)."""
    blocks = f.array("blocks").copy()
    words = blocks[slot, links_offset: links_offset + 8].view(np.uint32)
    words[0] = max(int(words[0]), 1)
    words[1] = value
    f.set("blocks", blocks)
    return f


def _factor(f: sdxfile.SdxFile, which: int, value: float) -> sdxfile.SdxFile:
    """Set one float32 factor of every stored RaBitQ row: the rows end with their factors
    (5 of them above 1 bit, 3 at 1 bit); which counts from the first of them."""
    codes = f.array("codes").copy()
    count = 3 if f.params["bits"] == 1 else 5
    factors = codes[:, codes.shape[1] - 4 * count:].copy().view(np.float32)
    factors[:, which] = value
    codes[:, codes.shape[1] - 4 * count:] = factors.view(np.uint8)
    f.set("codes", codes)
    return f


def _raw_header(meta: object) -> bytes:
    return sdxfile.pack(json.dumps(meta).encode(), [])


def cases(victim: str) -> dict[str, Callable[[], bytes]]:
    """name -> a function writing the crafted file (bytes)."""
    c: dict[str, Callable[[], bytes]] = {}

    def add(name: str, make: Callable[[], sdxfile.SdxFile], **kw: object) -> None:
        c[name] = lambda: make().to_bytes(**kw)  # type: ignore[arg-type]

    # 1. a path in the header: the loader must never open (read, map or write) it
    for kind, key in (("pq8", None), ("binary", None), ("leanvec", "store"), ("rabitq", None)):
        def rerank_path(kind: str = kind, key: str | None = key) -> sdxfile.SdxFile:
            f = base(kind)
            params = f.params if key is None else f.params[key]
            params["rerank"] = victim
            return _drop(f, "rerank_vectors")
        add(f"{kind}-rerank-path-in-header", rerank_path)

    # an integer "path" is a file descriptor to os.path.getsize / np.memmap
    def rerank_int() -> sdxfile.SdxFile:
        f = base("pq8")
        f.params["rerank"] = 2**40
        return _drop(f, "rerank_vectors")
    add("pq8-rerank-int-in-header", rerank_int)

    # 2. well-checksummed, invalid contents
    add("ivfpq8-entry-slot-minus-2**40", lambda: _set(base("ivfpq8"), "entry_slots", 0, -2**40))
    add("ivfpq4-entry-slot-minus-2**40", lambda: _set(base("ivfpq4"), "entry_slots", 0, -2**40))
    add("ivfpq8-entry-slot-negative", lambda: _set(base("ivfpq8"), "entry_slots", 5, -3))
    add("ivfpq8-offsets-beyond-codes", lambda: _set(base("ivfpq8"), "offsets", -1, 10**6))
    for kind, array in IDS.items():
        add(f"{kind}-ids-retyped-float64", lambda kind=kind: base(kind), dtype_override={array: "float64"})
        add(f"{kind}-duplicate-ids", lambda kind=kind, array=array: _dup_id(base(kind), array))
        add(f"{kind}-negative-id", lambda kind=kind, array=array: _set(
            base(kind), array, _live(base(kind), array)[0], -7))
    add("pq8-missing-codebooks", lambda: _drop(base("pq8"), "pq_codebooks"))
    add("pq4-missing-codebooks", lambda: _drop(base("pq4"), "pq_codebooks"))
    add("ivfpq8-missing-codebooks", lambda: _drop(base("ivfpq8"), "pq_codebooks"))
    add("ivfpq8-missing-tables", lambda: _drop(base("ivfpq8"), "list_tables"))
    add("ivfpq8-missing-centroids", lambda: _drop(base("ivfpq8"), "centroids"))
    add("leanvec-missing-data-matrix", lambda: _drop(base("leanvec"), "data_matrix"))
    add("binary-missing-alphas", lambda: _drop(base("binary"), "alphas"))
    add("hnsw-missing-upper", lambda: _drop(base("hnsw"), "upper"))
    add("flat8-missing-ranges", lambda: _drop(base("flat8"), "lo"))
    for value, label in ((np.nan, "nan"), (np.inf, "inf")):
        add(f"flat-{label}-in-rows", lambda v=value: _set(base("flat"), "rows", (3, 2), v))
        add(f"hnsw-{label}-in-rows", lambda v=value: _rows_f32(base("hnsw"), 4, v))
        add(f"flat8-{label}-in-ranges", lambda v=value: _set(base("flat8"), "scale", 0, v))
        add(f"hnsw8-{label}-in-ranges", lambda v=value: _set(base("hnsw8"), "lo", 0, v))
        add(f"ivfpq8-{label}-in-centroids", lambda v=value: _set(base("ivfpq8"), "centroids", (0, 0), v))
        add(f"ivfpq8-{label}-in-codebooks", lambda v=value: _set(base("ivfpq8"), "pq_codebooks", (0, 0, 0), v))
        add(f"ivfpq8-{label}-in-tables", lambda v=value: _set(base("ivfpq8"), "list_tables", (0, 0, 0), v))
        add(f"pq8-{label}-in-codebooks", lambda v=value: _set(base("pq8"), "pq_codebooks", (0, 0, 0), v))
        add(f"pq8-{label}-in-rerank-rows", lambda v=value: _set(base("pq8"), "rerank_vectors", (0, 0), v))
        add(f"binary-{label}-in-alphas", lambda v=value: _set(base("binary"), "alphas", 0, v))
        add(f"leanvec-{label}-in-matrix", lambda v=value: _set(base("leanvec"), "data_matrix", (0, 0), v))
        add(f"rabitq-{label}-in-factors", lambda v=value: _factor(base("rabitq"), 2, v))
        add(f"ivf-rabitq-{label}-in-centroids", lambda v=value: _set(base("ivf-rabitq"), "centroids", (1, 3), v))
        add(f"rabitq-{label}-in-rerank-rows", lambda v=value: _set(base("rabitq"), "rerank_vectors", (0, 0), v))
        add(f"hnsw-rabitq-{label}-in-rows", lambda v=value: _rows_f32(base("hnsw-rabitq"), 4, v))
        add(f"hnsw-rabitq-{label}-in-centre", lambda v=value: _set(base("hnsw-rabitq"), "centre", 0, v))
        add(f"rabitq-ip-{label}-in-centre-dots",
            lambda v=value: _set(base("rabitq-ip"), "centre_dots", 3, v))
        add(f"ivf-rabitq-ip-{label}-in-centre-dots",
            lambda v=value: _set(base("ivf-rabitq-ip"), "centre_dots", 0, v))
    # RaBitQ codes: rotation, inverted lists and slots out of range
    add("rabitq-hadamard-sign-0.5", lambda: _set(base("rabitq"), "rotation_params", (1, 3), 0.5))
    add("rabitq-negative-norm-factor", lambda: _factor(base("rabitq"), 0, -1.0))
    add("ivf-rabitq-list-beyond-nlist", lambda: _set(base("ivf-rabitq"), "lists", 0, 8))
    add("ivf-rabitq-list-negative", lambda: _set(base("ivf-rabitq"), "lists", 3, -1))
    add("ivf-rabitq-slot-beyond-ids", lambda: _set(base("ivf-rabitq"), "slots", 0, 10**6))
    add("ivf-rabitq-slot-of-a-free-id", lambda: _set(
        base("ivf-rabitq"), "slots", 0, int(np.flatnonzero(base("ivf-rabitq").array("ids") < 0)[0])))
    add("ivf-rabitq-slot-twice", lambda: _set(
        base("ivf-rabitq"), "slots", 1, int(base("ivf-rabitq").array("slots")[0])))
    add("ivf-rabitq-missing-codes", lambda: _drop(base("ivf-rabitq"), "codes"))
    add("ivf-rabitq-missing-centroids", lambda: _drop(base("ivf-rabitq"), "centroids"))
    add("ivf-rabitq-nlist-json-infinity", lambda: _param(base("ivf-rabitq"), "nlist", float("inf")))
    add("rabitq-bits-9", lambda: _param(base("rabitq"), "bits", 9))
    add("rabitq-query-bits-0", lambda: _param(base("rabitq"), "query_bits", 0))
    add("rabitq-rotation-unknown", lambda: _param(base("rabitq"), "rotation", "identity"))
    add("hnsw-rabitq-missing-centre", lambda: _drop(base("hnsw-rabitq"), "centre"))
    # RaBitQ format 2: the ip rows' <x - c, c> (centre_dots), one float32 per code row
    add("rabitq-ip-missing-centre-dots", lambda: _drop(base("rabitq-ip"), "centre_dots"))
    add("ivf-rabitq-ip-missing-centre-dots", lambda: _drop(base("ivf-rabitq-ip"), "centre_dots"))
    add("ivf-rabitq-ip-centre-dots-short",
        lambda: _resize(base("ivf-rabitq-ip"), "centre_dots", -1))
    add("ivf-rabitq-ip-centre-dots-long", lambda: _resize(base("ivf-rabitq-ip"), "centre_dots", 1))
    add("rabitq-ip-centre-dots-huge", lambda: _set(base("rabitq-ip"), "centre_dots", 5, 3e38))
    add("ivf-rabitq-ip-centre-dots-float64", lambda: base("ivf-rabitq-ip"),
        dtype_override={"centre_dots": "float64"})
    add("rabitq-ip-format-version-3", lambda: _param(base("rabitq-ip"), "format_version", 3))
    add("ivf-rabitq-ip-format-version-0",
        lambda: _param(base("ivf-rabitq-ip"), "format_version", 0))
    add("rabitq-ip-format-version-string", lambda: _param(base("rabitq-ip"), "format_version", "2"))
    add("hnsw-rabitq-bits-0", lambda: _param(base("hnsw-rabitq"), "bits", 0))
    # graph structure out of range (float32 d=16: row 64 bytes, links from byte 64)
    add("hnsw-link-out-of-range", lambda: _link(base("hnsw"), 3, 10**6, 64))
    add("hnsw-upper-link-out-of-range", lambda: _set(base("hnsw"), "upper", 1, 0xFFFFFFF0))
    add("hnsw-entry-out-of-range", lambda: _param(base("hnsw"), "entry", 10**6))
    add("hnsw-max-level-2**31", lambda: _param(base("hnsw"), "max_level", 2**31 - 1))
    add("hnsw-level-beyond-upper", lambda: _set(base("hnsw"), "levels", 5, 10**6))
    # header numbers out of bounds, JSON Infinity, wrong kinds of values
    add("hnsw-ef-2**40", lambda: _param(base("hnsw"), "ef", 2**40))
    add("binary-graph-ef-2**40", lambda: _param(base("binary-graph"), "hnsw.ef", 2**40))
    add("leanvec-ef-2**40", lambda: _param(base("leanvec"), "graph.ef", 2**40))
    add("hnsw-ef-json-infinity", lambda: _param(base("hnsw"), "ef", float("inf")))
    add("flat-dim-json-infinity", lambda: _param(base("flat"), "dim", float("inf")))
    add("flat-dim-2**40", lambda: _param(base("flat"), "dim", 2**40))
    add("pq8-n-json-nan", lambda: _param(base("pq8"), "n", float("nan")))
    add("ivfpq8-nlist-json-infinity", lambda: _param(base("ivfpq8"), "nlist", float("inf")))
    add("hnsw-M-string", lambda: _param(base("hnsw"), "M", "16"))
    add("hnsw-kind-flat", lambda: _kind(base("hnsw"), "flat"))
    # malformed structure
    add("flat-params-list", lambda: _whole_params(base("flat"), []))
    add("hnsw-params-null", lambda: _whole_params(base("hnsw"), None))
    add("binary-graph-inner-params-int", lambda: _param(base("binary-graph"), "hnsw", 5))
    add("binary-params-string", lambda: _whole_params(base("binary"), "x"))
    add("leanvec-projection-string", lambda: _param(base("leanvec"), "projection", "x"))
    c["header-arrays-dict"] = lambda: _raw_header({"kind": "flat", "params": {}, "arrays": {}})
    c["header-array-entry-int"] = lambda: _raw_header({"kind": "flat", "params": {}, "arrays": [5]})
    c["header-is-a-list"] = lambda: _raw_header([1, 2])
    c["header-kind-list"] = lambda: _raw_header({"kind": ["flat"], "params": {}, "arrays": []})
    c["header-not-utf8"] = lambda: sdxfile.pack(b'{"kind": "\xff\xfe"}', [])
    # rows in a side file (HNSWIndex(storage='rabitq', rerank=path)): the header describes the
    # file (rows, bytes, CRC-32, name), never where it is; loaded without rerank= they raise,
    # a path or a number in place of 'file' is never opened, float graphs have no side file
    def side_file(kind: str, where: object, **more: object) -> sdxfile.SdxFile:
        f = base(kind)
        f.params.update({"rerank": where, "rerank_rows": 40, "rerank_bytes": 40 * 16 * 4,
                         "rerank_crc32": 0, "rerank_name": "victim.f32", **more})
        return f
    add("hnsw-rabitq-rerank-path-in-header", lambda: side_file("hnsw-rabitq", victim))
    add("hnsw-rabitq-rerank-int-in-header", lambda: side_file("hnsw-rabitq", 2**40))
    add("hnsw-rabitq-rerank-file-not-named", lambda: side_file("hnsw-rabitq", "file"))
    add("hnsw-rabitq-rerank-memory-in-header", lambda: side_file("hnsw-rabitq", "memory"))
    add("hnsw-rabitq-rerank-rows-2**62", lambda: side_file("hnsw-rabitq", "file", rerank_rows=2**62))
    add("hnsw-rabitq-rerank-crc-negative", lambda: side_file("hnsw-rabitq", "file", rerank_crc32=-1))
    add("hnsw-rerank-file-on-float-graph", lambda: side_file("hnsw", "file"))
    return c


def _kind(f: sdxfile.SdxFile, kind: object) -> sdxfile.SdxFile:
    f.kind = kind
    return f


def _whole_params(f: sdxfile.SdxFile, params: object) -> sdxfile.SdxFile:
    f.params = params
    return f


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    victim = sys.argv[2] if len(sys.argv) > 2 else str(out / "victim.f32")
    for name, make in cases(victim).items():
        (out / f"{name}.sdx").write_bytes(make())
    print(len(cases(victim)), "files in", out)
