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


# ---- the C++ rows (simdex._core.RerankRows) ----------------------------------------------
def _rows(storage: str, where: object = "memory", metric: str = "l2"):
    from simdex import _storage
    from simdex._rerank import RerankStore

    lo = scale = None
    if storage == "int8":
        lo, scale = _storage.train_int8(vectors(500, seed=9))
    path = where if where == "memory" else RerankStore.check_where(where)
    return RerankStore(DIM, metric, path, storage=storage, lo=lo, scale=scale)


@pytest.mark.parametrize("storage", ["float32", "float16", "int8"])
@pytest.mark.parametrize("in_file", [False, True])
def test_rows_encode_as_numpy_and_grow(tmp_path, storage, in_file):
    """Rows encoded in C++ equal the NumPy encodings, bit for bit, through many growths of the
    buffer or the mapped file; put at existing slots overwrites; vectors() decodes."""
    from simdex import _storage

    store = _rows(storage, tmp_path / "rows.bin" if in_file else "memory")
    x = vectors(700, seed=3)
    for start in range(0, 700, 70):  # ten appends: the file is re-mapped as it grows
        store.put(np.arange(start, start + 70), x[start : start + 70])
    store.put(np.array([5, 600]), x[:2] * 0.5)  # overwrite two rows
    want = x.copy()
    want[[5, 600]] = x[:2] * 0.5
    encoded = _storage.encode(want, storage, store.lo, store.scale)
    assert len(store) == 700
    np.testing.assert_array_equal(store.core.copy(), encoded)
    np.testing.assert_array_equal(store.core.view(), encoded)
    np.testing.assert_array_equal(
        store.vectors(np.array([5, 600, 699])),
        _storage.decode(encoded[[5, 600, 699]], storage, store.lo, store.scale),
    )
    if in_file:
        assert (tmp_path / "rows.bin").read_bytes() == encoded.tobytes()
        assert store.nbytes == (0 if storage != "int8" else 2 * DIM * 4)
    with pytest.raises(ValueError, match="no re-rank row"):
        store.vectors(np.array([700]))


def _vm_flags(address: int) -> list[str]:
    """VmFlags of the mapping of this process that holds `address` (Linux /proc)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    raise AssertionError("no mapping holds the rows")


def test_rows_in_ram_grow_past_the_huge_page_size():
    """RAM rows move to 2 MiB-aligned memory advised as huge pages once they pass 4 MiB:
    every row survives each growth (appends, a put far past the end with zero rows in
    between, a restore), and the large buffer is advised (Linux)."""
    store = _rows("float32")
    x = vectors(90_000, seed=7)  # 64-byte rows: 5.8 MB
    for start in range(0, 90_000, 15_000):  # grows through 4 MiB (65,536 rows)
        store.put(np.arange(start, start + 15_000), x[start : start + 15_000])
    store.put(np.array([99_999, 17]), x[:2] * 2.0)
    want = np.zeros((100_000, DIM), np.float32)
    want[:90_000] = x
    want[[99_999, 17]] = x[:2] * 2.0
    np.testing.assert_array_equal(store.core.copy(), want)
    assert store.nbytes == want.nbytes
    restored = _rows("float32")
    restored.core.restore(want)
    np.testing.assert_array_equal(restored.core.view(), want)
    for rows in (store, restored):
        address = rows.core.view().ctypes.data
        assert address % (2 << 20) == 0
        if os.path.exists("/proc/self/smaps") and os.path.exists("/sys/kernel/mm/transparent_hugepage"):
            assert "hg" in _vm_flags(address)


def test_rows_float16_rounding_matches_numpy():
    """float32 -> float16 in C++ rounds to nearest even as NumPy does, subnormals included."""
    rng = np.random.default_rng(1)
    parts = [
        rng.standard_normal(4000) * 10.0 ** rng.integers(-9, 5, 4000),
        np.array([0.0, -0.0, 65504.0, 65519.0, -65519.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 1e-40]),
        (np.arange(1, 2049) * 2.0**-24 + 2.0**-26),  # halfway points between subnormals
    ]
    x = np.concatenate(parts).astype(np.float32)
    x = x[: x.size // DIM * DIM].reshape(-1, DIM)
    store = _rows("float16")
    store.put(np.arange(x.shape[0]), x)
    np.testing.assert_array_equal(
        store.core.copy().view(np.uint16), x.astype(np.float16).view(np.uint16)
    )
    with pytest.raises(ValueError, match="float16 storage holds values up to 65504"):
        store.put(np.array([0]), np.full((1, DIM), 65520.0, np.float32))
    assert len(store) == x.shape[0]


@pytest.mark.parametrize("storage", ["float32", "float16", "int8"])
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_rows_rescore_matches_float64(storage, metric):
    """Re-scoring candidates: the k best by the exact distance to the stored (decoded) rows."""
    store = _rows(storage, metric=metric)
    x = vectors(300, seed=4)
    if metric == "cosine":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    store.put(np.arange(300), x)
    q = vectors(6, seed=5)
    if metric == "cosine":
        q /= np.linalg.norm(q, axis=1, keepdims=True)
    rng = np.random.default_rng(6)  # distinct slots per query, as a scan proposes them
    cand = np.stack([rng.permutation(300)[:40] for _ in range(6)])
    cand[:, -3:] = -1
    dist, slots = store.rescore(q, cand, 5)
    rows = store.vectors(np.arange(300)).astype(np.float64)
    for i in range(6):
        c = np.unique(cand[i][cand[i] >= 0])
        if metric == "l2":
            exact = ((rows[c] - q[i].astype(np.float64)) ** 2).sum(axis=1)
        else:
            exact = 1.0 - rows[c] @ q[i].astype(np.float64)
        order = np.argsort(exact, kind="stable")[:5]
        np.testing.assert_allclose(dist[i], exact[order], rtol=2e-3, atol=2e-3)
        assert set(slots[i]) == set(c[order]) or np.allclose(
            np.sort(exact)[4], np.sort(exact)[5], rtol=1e-4
        )
    with pytest.raises(ValueError, match="no row in the re-rank store"):
        store.rescore(q[:1], np.array([[300]]), 1)


def test_rows_checksum_is_zlib_crc32(tmp_path):
    import zlib

    store = _rows("float32", tmp_path / "v.f32")
    store.put(np.arange(123), vectors(123, seed=7))
    data = (tmp_path / "v.f32").read_bytes()
    assert store.params()["rerank_crc32"] == zlib.crc32(data)
    assert store.params()["rerank_bytes"] == len(data)


_FULL_DISK = """
import os, resource, signal, sys
import numpy as np
import simdex as sx
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
side, kind = sys.argv[1], sys.argv[2]
x = np.random.default_rng(0).standard_normal((700, 16)).astype(np.float32)
if kind == "pq":
    index = sx.PQIndex(16, 4, metric="l2", rerank=side).train(x)
elif kind == "ivf":
    index = sx.IVFPQIndex(16, 8, 4, metric="l2", rerank=side).train(x, n_iter=3)
elif kind == "hnsw-rabitq":
    index = sx.HNSWIndex(16, "l2", M=8, storage="rabitq", rerank=side).train(x)
elif kind == "binary":
    index = sx.BinaryIndex(16, bits=2, metric="ip", rerank=side).train(x)
else:
    index = sx.LeanVecIndex(16, 8, kind="id", metric="l2", rerank_path=side).train(x)
index.add(x[:600])
resource.setrlimit(resource.RLIMIT_FSIZE, (600 * 64 + 100, resource.RLIM_INFINITY))
before = index.search(x[:3], 5)
try:
    index.add(x[600:], ids=np.arange(10_000, 10_100))
except OSError as e:
    print("refused", e.errno)
try:  # sequential ids: the failed add hands its numbers back
    index.add(x[600:])
except OSError as e:
    print("refused", e.errno)
assert os.path.getsize(side) == 600 * 64, os.path.getsize(side)
assert len(index) == 600 and 10_000 not in index and 600 not in index
np.testing.assert_array_equal(index.search(x[:3], 5).ids, before.ids)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
np.testing.assert_array_equal(index.add(x[600:]), np.arange(600, 700))  # numbers not kept
index.add(x[600:], ids=np.arange(10_000, 10_100))
assert len(index) == 800
# nothing of the failed add stays (PQ / IVF-PQ cores write the rows before binding ids;
# binary and the graph reuse the slots), or its slots stay dead (LeanVec: rows 700..799 now)
rows = 1000 if kind == "leanvec" else 800
assert os.path.getsize(side) == rows * 64, os.path.getsize(side)
np.testing.assert_allclose(index.reconstruct([10_050]), x[650:651])
print("ok")
"""


@pytest.mark.parametrize("kind", ["pq", "ivf", "leanvec", "binary", "hnsw-rabitq"])
def test_a_write_past_the_file_size_limit_is_undone(tmp_path, kind):
    """A real failed write (RLIMIT_FSIZE: EFBIG, as a full disk) in the C++ rows: the file
    keeps its size, the index its rows, and the same add succeeds once there is room."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path / "v.f32"), kind],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["refused", "27", "refused", "27", "ok"]
