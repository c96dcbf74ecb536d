"""The re-rank store's side file: never named by an index file, never emptied by surprise."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import simdex as sx
from simdex import _format

DIM = 16


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def build(kind: str, where: object, **kwargs: object) -> sx.PQIndex | sx.IVFPQIndex | sx.BinaryIndex | sx.LeanVecIndex:
    x = vectors(600)
    if kind == "pq":
        index = sx.PQIndex(DIM, 4, rerank=where, **kwargs).train(x)
    elif kind == "ivf":
        index = sx.IVFPQIndex(DIM, 8, 4, rerank=where, **kwargs).train(x, n_iter=3)
    elif kind == "binary":
        index = sx.BinaryIndex(DIM, bits=2, rerank=where, **kwargs)
    else:
        index = sx.LeanVecIndex(DIM, 8, kind="id", rerank_path=where, **kwargs).train(x)
    index.add(x)
    return index


KINDS = ["pq", "ivf", "binary", "leanvec"]


@pytest.mark.parametrize("kind", KINDS)
def test_existing_file_is_not_emptied(tmp_path, kind):
    side = tmp_path / "vectors.f32"
    side.write_bytes(b"precious" * 100)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        build(kind, side)
    assert side.read_bytes() == b"precious" * 100
    index = build(kind, side, overwrite=True)
    assert side.stat().st_size == 600 * DIM * 4 and len(index) == 600


@pytest.mark.parametrize("kind", KINDS)
def test_side_file_is_named_at_load_and_checked(tmp_path, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index = build(kind, "vectors.f32")  # relative: resolved to an absolute path at construction
    q = vectors(5, seed=1)
    want = index.search(q, 5)
    index.save("index.sdx")
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)  # loading from another directory works: the caller names the file
    with pytest.raises(ValueError, match=r"rerank="):
        sx.load(tmp_path / "index.sdx")
    loaded = sx.load(tmp_path / "index.sdx", rerank=tmp_path / "vectors.f32")
    np.testing.assert_array_equal(loaded.search(q, 5).ids, want.ids)
    # the side file changed after the save (same size): refused
    side = tmp_path / "vectors.f32"
    raw = bytearray(side.read_bytes())
    raw[100] ^= 0xFF
    side.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        sx.load(tmp_path / "index.sdx", rerank=side)
    side.write_bytes(bytes(raw[:-4]))
    with pytest.raises(ValueError, match="bytes"):
        sx.load(tmp_path / "index.sdx", rerank=side)


def test_header_path_is_never_opened(tmp_path):
    """A crafted file naming another file (as simdex 0.1.0 recorded the path) reads nothing."""
    victim = tmp_path / "victim.bin"
    victim.write_bytes(np.arange(600 * DIM, dtype=np.float32).tobytes())
    before = victim.read_bytes()
    index = build("pq", "memory")
    params, arrays = index._state()
    params = dict(params, rerank=str(victim))
    arrays = {k: v for k, v in arrays.items() if k != "rerank_vectors"}
    path = tmp_path / "crafted.sdx"
    path.write_bytes(_format.dumps("pq", params, arrays))
    with pytest.raises(ValueError, match="rerank="):
        sx.load(path)
    # named by the caller, it is used: it matches in size (the 0.1.0 layout has no checksum)
    loaded = sx.load(path, rerank=victim)
    assert len(loaded) == 600
    assert victim.read_bytes() == before


def test_rerank_for_an_index_without_side_file(tmp_path):
    build("pq", "memory").save(tmp_path / "ix.sdx")
    with pytest.raises(ValueError, match="keeps no re-rank side file"):
        sx.load(tmp_path / "ix.sdx", rerank=tmp_path / "nothing.f32")


def test_nan_side_file_refused(tmp_path):
    side = tmp_path / "v.f32"
    index = build("pq", side)
    params, arrays = index._state()
    side.write_bytes(np.full(600 * DIM, np.nan, dtype=np.float32).tobytes())
    params = {k: v for k, v in params.items() if k != "rerank_crc32"}  # as written by 0.1.0
    path = tmp_path / "ix.sdx"
    path.write_bytes(_format.dumps("pq", params, arrays))
    with pytest.raises(ValueError, match="NaN"):
        sx.load(path, rerank=side)


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_keeps_its_side_file(tmp_path, kind):
    index = build(kind, tmp_path / "v.f32")
    q = vectors(3, seed=2)
    clone = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(clone.search(q, 4).ids, index.search(q, 4).ids)


def test_directory_and_type_errors(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        sx.PQIndex(DIM, 4, rerank=tmp_path)
    with pytest.raises(TypeError, match="rerank"):
        sx.PQIndex(DIM, 4, rerank=3)
    with pytest.raises(TypeError, match="overwrite"):
        sx.PQIndex(DIM, 4, rerank="memory", overwrite="yes")
    with pytest.raises(TypeError, match="rerank"):
        sx.load(os.devnull, rerank=5)


def test_read_only_side_file_searches_but_refuses_adds(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only files")
    side = tmp_path / "v.f32"
    index = build("pq", side)
    index.save(tmp_path / "ix.sdx")
    side.chmod(0o444)
    loaded = sx.load(tmp_path / "ix.sdx", rerank=side)
    assert loaded.search(vectors(2, seed=3), 3).ids.shape == (2, 3)
    with pytest.raises(PermissionError, match="read-only"):
        loaded.add(vectors(2, seed=4))


@pytest.mark.parametrize("kind", KINDS)
def test_failed_side_file_write_leaves_the_index_as_before(tmp_path, kind, monkeypatch):
    """A write to the side file that fails (full disk, read-only file) undoes the add."""
    from simdex._rerank import RerankStore

    index = build(kind, tmp_path / "v.f32")
    q = vectors(4, seed=5)
    before = index.search(q, 5)
    real_put = RerankStore.put

    def full_disk(self, slots, x):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RerankStore, "put", full_disk)
    with pytest.raises(OSError, match="No space"):
        index.add(vectors(10, seed=6), ids=np.arange(10_000, 10_010))
    assert len(index) == 600 and 10_000 not in index
    np.testing.assert_array_equal(index.search(q, 5).ids, before.ids)
    monkeypatch.setattr(RerankStore, "put", real_put)
    new = vectors(10, seed=6)
    index.add(new, ids=np.arange(10_000, 10_010))  # the same ids go in afterwards
    assert len(index) == 610
    want = new[3:4] / np.linalg.norm(new[3:4]) if index.metric == "cosine" else new[3:4]
    np.testing.assert_allclose(index.reconstruct([10_003]), want, rtol=1e-5)
