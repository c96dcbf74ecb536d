"""The index file: versioned, checksummed, validated before use."""

from __future__ import annotations

import pathlib

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
