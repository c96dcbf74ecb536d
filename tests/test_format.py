"""The index file: versioned, checksummed, validated before use."""

from __future__ import annotations

import io
import json
import pathlib
import zlib

import numpy as np
import pytest

import simdex as sx
from simdex import _format

DATA = pathlib.Path(__file__).parent / "data"


def make_index() -> sx.FlatIndex:
    x = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    index = sx.FlatIndex(8, "l2")
    index.add(x, ids=np.arange(40) + 100)
    return index


def test_truncated_file_raises_value_error(tmp_path):
    path = tmp_path / "ix.sdx"
    make_index().save(path)
    blob = path.read_bytes()
    for cut in (0, 5, 19, 30, len(blob) // 2, len(blob) - 1):
        path.write_bytes(blob[:cut])
        with pytest.raises(ValueError):
            sx.load(path)
        with pytest.raises(ValueError):
            sx.load(path, mmap=True)


def test_corrupted_bytes_raise_value_error(tmp_path):
    path = tmp_path / "ix.sdx"
    make_index().save(path)
    blob = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    for pos in rng.choice(len(blob), 25, replace=False):
        broken = bytearray(blob)
        broken[pos] ^= 0x5A
        path.write_bytes(bytes(broken))
        try:
            loaded = sx.load(path)
        except ValueError:
            continue
        # a flip in alignment padding is harmless: the index must then be intact
        assert len(loaded) == 40


def test_wrong_magic_and_future_version(tmp_path):
    path = tmp_path / "ix.sdx"
    path.write_bytes(b"not an index at all" * 3)
    with pytest.raises(ValueError, match="magic"):
        sx.load(path)
    make_index().save(path)
    blob = bytearray(path.read_bytes())
    blob[8] = 99
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="version"):
        sx.load(path)


def test_files_from_earlier_versions_still_load():
    """tests/data holds files written by released versions; they must keep loading."""
    files = sorted(DATA.glob("*.sdx"))
    assert files, "no stored index files found"
    for path in files:
        index = sx.load(path)
        expected = np.load(path.with_suffix(".npz"))
        D, I = index.search(expected["queries"], int(expected["k"]))
        np.testing.assert_array_equal(I, expected["ids"])
        np.testing.assert_allclose(D, expected["distances"], rtol=1e-5, atol=1e-5)


def test_roundtrip_bytes():
    index = make_index()
    blob = _format.dumps(index.kind, *index._state())
    again = _format.loads(blob)
    assert len(again) == 40


def test_file_objects(tmp_path):
    index = make_index()
    buffer = io.BytesIO()
    index.save(buffer)
    buffer.seek(0)
    again = sx.load(buffer)
    np.testing.assert_array_equal(again.ids, index.ids)
    with open(tmp_path / "ix.sdx", "wb") as fh:
        index.save(fh)
    with open(tmp_path / "ix.sdx", "rb") as fh:
        assert len(sx.load(fh)) == 40
    with pytest.raises(ValueError, match="mmap=True needs a path"):
        sx.load(io.BytesIO(b""), mmap=True)
    with pytest.raises(TypeError, match="path or a binary file object"):
        sx.load(3)
    with pytest.raises(TypeError, match="path or a binary file object"):
        index.save(3)
    with pytest.raises(TypeError, match="binary file object"):
        sx.load(io.StringIO("text"))


def write_header(path: pathlib.Path, header: bytes) -> None:
    path.write_bytes(
        _format._PREFIX.pack(_format.MAGIC, _format.FORMAT_VERSION, len(header), zlib.crc32(header))
        + header
    )


@pytest.mark.parametrize(
    "header",
    [
        b'{"kind": "flat", "params": {"dim": Infinity}, "arrays": []}',
        b'{"kind": "flat", "params": {"dim": NaN}, "arrays": []}',
        b'{"kind": "flat", "params": [], "arrays": []}',
        b'{"kind": 3, "params": {}, "arrays": []}',
        b'{"kind": "flat", "params": {}, "arrays": {}}',
        b'{"kind": "flat", "params": {}, "arrays": [3]}',
        b'{"kind": "flat", "params": {}, "arrays": [{"name": "ids", "dtype": "int64", "shape": [1e300],'
        b' "offset": 64, "nbytes": 8, "crc32": 0}]}',
        b'{"kind": "flat", "params": {}, "arrays": [{"name": "ids", "dtype": "object", "shape": [1],'
        b' "offset": 64, "nbytes": 8, "crc32": 0}]}',
        b'{"kind": "flat", "params": {}, "arrays": [{"name": "ids", "dtype": "int64", "shape": [4611686018427387904, 4],'
        b' "offset": 64, "nbytes": 0, "crc32": 0}]}',
        b"[" * 100000 + b"]" * 100000,
        b'{"kind": "flat", "params": {"dim": 8, "metric": "l2", "storage": "float32"}, "arrays": []}',
        b'{"kind": "nope", "params": {}, "arrays": []}',
    ],
)
def test_malformed_headers_raise_value_error(tmp_path, header):
    path = tmp_path / "bad.sdx"
    write_header(path, header)
    with pytest.raises(ValueError):
        sx.load(path)


def small_index(kind: str) -> sx.FlatIndex:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    q = rng.standard_normal((1, 16)).astype(np.float32)
    if kind == "flat":
        index = sx.FlatIndex(16)
    elif kind == "hnsw":
        index = sx.HNSWIndex(16, M=4)
    elif kind == "pq":
        index = sx.PQIndex(16, 4, opq=True).train(x)
    elif kind == "pq4":
        index = sx.PQIndex(16, 4, nbits=4, rerank="memory").train(x)
    elif kind == "ivf":
        index = sx.IVFPQIndex(16, 8, 4, rerank="memory").train(x, n_iter=2)
    elif kind == "binary":
        index = sx.BinaryIndex(16, bits=2, center=True, graph=True, rerank="memory")
    else:
        index = sx.LeanVecIndex(16, 8, kind="id", secondary="float16").train(x)
    index.add(x)
    index.remove([5])
    index.search(q, 3)
    return index


def _set(name, value):
    return lambda p, a: p.__setitem__(name, value)


def _poke(name, index, value):
    def edit(p, a):
        a[name][index] = value

    return edit


def _drop(name):
    return lambda p, a: a.pop(name)


def _retype(name, dtype):
    return lambda p, a: a.__setitem__(name, a[name].astype(dtype))


# (kind, change to (params, arrays), the field the error must name)
CRAFTED = [
    ("flat", _retype("ids", np.float64), "ids"),
    ("flat", _poke("ids", 1, 0), "appears twice"),
    ("flat", _poke("ids", 0, -7), "ids"),
    ("flat", _poke("rows", (0, 0), np.nan), "rows"),
    ("flat", _poke("rows", (0, 0), 1e30), "rows"),  # finite, but distances would overflow
    ("flat", _set("dim", True), "dim"),
    ("flat", _set("dim", 2**40), "dim"),
    ("flat", _set("metric", "manhattan"), "metric"),
    ("flat", _drop("rows"), "rows"),
    ("hnsw", _set("ef", 2**40), "ef"),
    ("hnsw", _set("ef_construction", 2**40), "ef_construction"),
    ("hnsw", _set("M", 10**9), "M"),
    ("hnsw", _set("entry", 10**6), "entry"),
    ("hnsw", _set("max_level", 99), "max_level"),
    ("hnsw", _poke("levels", 0, 77), "level"),
    ("hnsw", _poke("upper", slice(None), 2**31), "upper"),
    ("hnsw", _poke("blocks", (0, slice(64, 72)), 0xFF), "blocks"),
    ("hnsw", _poke("blocks", (3, slice(0, 4)), 0xFF), "blocks"),
    ("hnsw", _retype("levels", np.int64), "levels"),
    ("pq", _drop("pq_codebooks"), "pq_codebooks"),
    ("pq", _drop("pq_rotation"), "pq_rotation"),
    ("pq", _poke("pq_codebooks", (0, 0, 0), np.inf), "pq_codebooks"),
    ("pq", _set("n", 301), "codes"),
    ("pq", _set("nbits", 5), "nbits"),
    ("pq4", _poke("rerank_vectors", (2, 2), np.nan), "rerank_vectors"),
    ("pq4", _set("rerank_rows", 299), "rerank"),
    ("ivf", _poke("entry_slots", 0, -(2**40)), "entry_slots"),
    ("ivf", _poke("entry_slots", 0, 10**6), "entry_slots"),
    ("ivf", _poke("entry_slots", slice(0, 2), 7), "entry_slots"),
    ("ivf", _poke("centroids", (1, 1), np.nan), "centroids"),
    ("ivf", _poke("list_tables", (0, 0, 0), np.nan), "list_tables"),
    ("ivf", _poke("centroids", (1, 1), 1e30), "centroids"),
    ("ivf", _poke("list_tables", (0, 0, 0), 3e38), "list_tables"),
    ("pq", _poke("pq_codebooks", (0, 0, 0), -1e30), "pq_codebooks"),
    ("pq", _poke("pq_rotation", (0, 0), 3.4e38), "pq_rotation"),
    ("pq4", _poke("rerank_vectors", (2, 2), 1e30), "rerank_vectors"),
    ("ivf", _poke("offsets", 1, -3), "offsets"),
    ("ivf", _set("trained", "yes"), "trained"),
    ("ivf", _set("nlist", 2**40), "nlist"),
    ("binary", _poke("alphas", 0, np.nan), "alphas"),
    ("binary", _poke("alphas", 0, 1e30), "alphas"),
    ("binary", _drop("center"), "center"),
    ("binary", _set("bits", 3), "bits|codes"),
    ("binary", _poke("ids", 7, -1), "ids"),
    ("leanvec", _poke("data_matrix", (0, 0), np.inf), "data_matrix"),
    ("leanvec", _poke("query_matrix", (0, 0), 1e30), "query_matrix"),
    ("leanvec", _poke("secondary_rows", (0, 0), np.inf), "secondary_rows"),
    ("leanvec", _set("out_dim", 17), "out_dim"),
    ("leanvec", lambda p, a: p.pop("store"), "store"),
    ("leanvec", lambda p, a: p["projection"].__setitem__("tol", "tiny"), "tol"),
    ("leanvec", lambda p, a: p["graph"].__setitem__("ef", -1), "graph_ef"),
]


@pytest.mark.parametrize("kind,change,field", CRAFTED)
def test_crafted_files_raise_value_error_naming_the_field(tmp_path, kind, change, field):
    """Files with valid checksums but invalid contents are refused before anything runs."""
    index = small_index(kind)
    params, arrays = index._state()
    params = json.loads(json.dumps(params))
    arrays = {name: np.array(a) for name, a in arrays.items()}
    change(params, arrays)
    path = tmp_path / "crafted.sdx"
    path.write_bytes(_format.dumps(index.kind, params, arrays))
    with pytest.raises(ValueError, match=field):
        sx.load(path)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "pq4", "ivf", "binary", "leanvec"])
def test_mapped_file_overwritten_in_place_never_crashes(tmp_path, kind):
    """load(mmap=True), then the file is overwritten under the index: answers may be wrong,
    but searches, adds and removes raise nothing and never crash (links are bounds-checked)."""
    index = small_index(kind)
    path = tmp_path / "ix.sdx"
    index.save(path)
    mapped = sx.load(path, mmap=True)
    size = path.stat().st_size
    rng = np.random.default_rng(7)
    q = rng.standard_normal((4, 16)).astype(np.float32)
    for fill in (rng.integers(0, 256, size, dtype=np.uint8).tobytes(), b"\xff" * size):
        with open(path, "r+b") as fh:  # in place: the mapping sees the new bytes
            fh.seek(0)
            fh.write(fill)
        result = mapped.search(q, 5)
        assert result.ids.shape == (4, 5)
    mapped.add(q)
    mapped.remove([0, 1])
    assert mapped.search(q, 5).ids.shape == (4, 5)
