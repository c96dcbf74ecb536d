"""HNSWIndex(storage='rabitq'): a graph walked on RaBitQ codes stored beside each node's
links, the candidate buffer re-ranked exactly. Recall against brute force, exact distances,
every index-protocol feature, untrusted files, and every SIMD level."""

import io
import pickle
import threading

import numpy as np
import pytest

import simdex as sx
from conftest import add_interrupted
from simdex import _format, kernels

D = 48


def clustered(n, seed, d=D, clusters=20, local_dim=12):
    centers = np.random.default_rng(100).normal(size=(clusters, d))
    basis = np.random.default_rng(101).normal(size=(local_dim, d)) / np.sqrt(local_dim)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    noise = 0.5 * rng.normal(size=(n, local_dim)) @ basis + 0.05 * rng.normal(size=(n, d))
    return (centers[labels] + noise).astype(np.float32)


X = clustered(2000, 0)
Q = clustered(60, 1)


def reference(q, x, metric):
    q, x = q.astype(np.float64), x.astype(np.float64)
    if metric == "l2":
        return ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return 1.0 - q @ x.T


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def built():
    index = sx.HNSWIndex(D, "l2", storage="rabitq", seed=3)
    index.add(X, threads=2)
    return index


@pytest.mark.parametrize("level", kernels.available_levels())
@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
@pytest.mark.parametrize("bits", [1, 4])
def test_recall_and_exact_distances(level, metric, bits):
    x, q = (unit(X), unit(Q)) if metric == "ip" else (X, Q)
    with kernels.force_simd(level):
        index = sx.HNSWIndex(D, metric, storage="rabitq", bits=bits)
        index.add(x[:1200], threads=2)
        dist, ids = index.search(q, 10, ef=48, rerank_k=100)
    ref = reference(q, x[:1200], metric)
    truth = np.argsort(ref, axis=1)[:, :10]
    assert sx.recall_at_k(ids, truth, 10) >= 0.9
    # re-ranked: every returned distance is the exact one of its id, ascending
    np.testing.assert_allclose(dist, np.take_along_axis(ref, ids, axis=1), rtol=1e-4, atol=1e-4)
    assert (np.diff(dist, axis=1) >= 0).all()


@pytest.mark.parametrize("level", kernels.available_levels())
@pytest.mark.parametrize("dim", [40, 100, 300])
@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_code_walk_alone_finds_neighbours(level, dim, metric):
    """rerank_k = ef: only the nodes the 1-bit walk expands are scored exactly, so recall
    rests on the query preparation (float Hadamard rotation: padded dims 64 / 128 / 320,
    the last with overlapping windows; nibble tables) and the fast-scan estimates (a sign
    left out of the rotation's unwindowed part dropped recall here from 0.98 to 0.83-0.87)."""
    x = clustered(1500, 5, d=dim, local_dim=10)
    q = clustered(40, 6, d=dim, local_dim=10)
    if metric == "ip":
        x, q = unit(x), unit(q)
    with kernels.force_simd(level):
        index = sx.HNSWIndex(dim, metric, storage="rabitq", seed=1)
        index.add(x, threads=2)
        # 1-bit estimates sharpen with the dimension (error ~ 1 / sqrt(D))
        ef, floor = (20, 0.93) if dim == 300 else (40, 0.85)
        dist, ids = index.search(q, 10, ef=ef, rerank_k=ef)
        one_d, one_i = index.search(q[3], 10, ef=ef, rerank_k=ef)  # the lean one-query path
    ref = reference(q, x, metric)
    assert sx.recall_at_k(ids, np.argsort(ref, axis=1)[:, :10], 10) >= floor
    np.testing.assert_allclose(dist, np.take_along_axis(ref, ids, axis=1), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(one_i, ids[3])
    np.testing.assert_allclose(one_d, dist[3])


@pytest.mark.parametrize("level", kernels.available_levels())
@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_upper_levels_descend_on_codes(level, metric):
    """bits=1 graphs descend the upper levels on the nodes' own codes (popcounts against the
    query's level planes): with M=8 the graph of 3000 nodes has several upper levels, and a
    stored vector asked with a window of 4 must still come back first (0.99-1.0 here, as with
    the exact descent): a descent that stopped in the wrong region would leave the level-0
    walk far from it."""
    x = clustered(3000, 7, d=96, local_dim=12)
    if metric == "ip":
        x = unit(x)
    with kernels.force_simd(level):
        index = sx.HNSWIndex(96, metric, M=8, ef_construction=64, storage="rabitq", seed=2)
        index.add(x, threads=2)
        _, ids = index.search(x[::10], 1, ef=4, rerank_k=4)
    assert (ids[:, 0] == np.arange(0, 3000, 10)).mean() >= 0.97


def test_tail_rerank_bound_keeps_recall(built):
    """Candidates outside the window are re-ranked only where estimate - error bound can
    beat the k-th exact distance: a large rerank_k must still reach near-exact recall, and
    never do worse than the window alone."""
    truth = np.argsort(reference(Q, X, "l2"), axis=1)[:, :10]
    alone = sx.recall_at_k(built.search(Q, 10, ef=24, rerank_k=24)[1], truth, 10)
    tail = sx.recall_at_k(built.search(Q, 10, ef=24, rerank_k=400)[1], truth, 10)
    assert tail >= alone
    assert sx.recall_at_k(built.search(Q, 10, ef=96, rerank_k=400)[1], truth, 10) >= 0.98


def test_buffer_larger_than_window_helps(built):
    truth = np.argsort(reference(Q, X, "l2"), axis=1)[:, :10]
    narrow = sx.recall_at_k(built.search(Q, 10, ef=10, rerank_k=10)[1], truth, 10)
    wide = sx.recall_at_k(built.search(Q, 10, ef=10, rerank_k=200)[1], truth, 10)
    assert wide > narrow
    assert wide >= 0.9


def test_one_query_lean_path_matches_batch(built):
    dist, ids = built.search(Q, 5)
    for i in range(5):
        d1, i1 = built.search(Q[i], 5)
        np.testing.assert_array_equal(i1, ids[i])
        np.testing.assert_allclose(d1, dist[i])


def test_filter_remove_range_search():
    index = sx.HNSWIndex(D, "l2", storage="rabitq")
    ids = index.add(X[:800], ids=np.arange(800) * 3)
    allowed = ids[ids % 2 == 0]
    _, found = index.search(Q, 10, filter=allowed, rerank_k=60)
    assert np.isin(found[found >= 0], allowed).all()
    gone = ids[:300]
    index.remove(gone)
    _, found = index.search(Q, 10, rerank_k=60)
    assert not np.isin(found, gone).any()
    lims, dist, rid = index.range_search(Q[:5], 30.0)
    ref = reference(Q[:5], X[:800], "l2")
    for i in range(5):
        got = set(rid[lims[i] : lims[i + 1]].tolist())
        assert got <= {int(v) for v in ids[ref[i] <= 30.0]} - set(gone.tolist())
    # removed slots are reused and the new rows are found by their own vectors
    new = index.add(X[800:1000])
    _, top = index.search(X[800:1000], 1)
    assert (top[:, 0] == new).mean() >= 0.95
    np.testing.assert_array_equal(index.reconstruct(new[:3]), X[800:803])


def test_save_load_and_pickle_give_the_same_answers(built, tmp_path):
    d0, i0 = built.search(Q, 10, rerank_k=50)
    path = tmp_path / "g.sdx"
    built.save(path)
    for other in (sx.load(path), sx.load(path, mmap=True), pickle.loads(pickle.dumps(built))):
        assert other.storage == "rabitq" and other.bits == built.bits
        d1, i1 = other.search(Q, 10, rerank_k=50)
        np.testing.assert_array_equal(i1, i0)
        np.testing.assert_allclose(d1, d0)
    empty = sx.HNSWIndex(D, "cosine", storage="rabitq", bits=2)
    buffer = io.BytesIO()
    empty.save(buffer)
    buffer.seek(0)
    loaded = sx.load(buffer)
    loaded.add(X[:100])
    assert len(loaded) == 100 and loaded.bits == 2


def test_codes_beside_node_blocks_stay_out_of_files(tmp_path):
    # In memory each node's neighbour code block sits before its node block (one stride);
    # saved, the node blocks are the float32 graph's, byte for byte, and a graph restored
    # (copied or from a memory-mapped file) and then grown answers as one never saved.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((700, 64)).astype(np.float32)
    codes = sx.HNSWIndex(64, "l2", M=8, ef_construction=40, storage="rabitq", bits=1)
    plain = sx.HNSWIndex(64, "l2", M=8, ef_construction=40)
    for index in (codes, plain):
        index.add(x[:500], threads=1)
    np.testing.assert_array_equal(codes._core.state()["blocks"], plain._core.state()["blocks"])
    path = tmp_path / "g.sdx"
    codes.save(path)
    again = tmp_path / "again.sdx"
    sx.load(path).save(again)
    assert path.read_bytes() == again.read_bytes()
    q = rng.standard_normal((30, 64)).astype(np.float32)
    codes.add(x[500:], threads=1)
    want = codes.search(q, 10, ef=32)
    for mmap in (False, True):
        other = sx.load(path, mmap=mmap)
        other.add(x[500:], threads=1)
        got = other.search(q, 10, ef=32)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)


def test_crafted_files_raise(built):
    params, arrays = built._state()

    def load(p, a):
        return sx.HNSWIndex._from_state(_format.Fields("hnsw", p, a, "crafted"))

    with pytest.raises(ValueError, match="centre"):
        load(params, {k: v for k, v in arrays.items() if k != "centre"})
    with pytest.raises(ValueError, match="centre"):
        load(params, dict(arrays, centre=np.full(D, np.nan, dtype=np.float32)))
    with pytest.raises(ValueError, match="bits"):
        load(dict(params, bits=9), arrays)
    assert load(params, arrays).search(Q[:3], 5)[1].shape == (3, 5)


def test_threads_concurrent_search_and_add():
    index = sx.HNSWIndex(D, "l2", storage="rabitq")
    index.add(X[:500])
    errors = []

    def searcher():
        try:
            for _ in range(20):
                _, ids = index.search(Q[:8], 5)
                assert (ids >= 0).all()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=searcher) for _ in range(2)]
    for t in workers:
        t.start()
    index.add(X[500:1500], threads=2)
    for t in workers:
        t.join()
    assert not errors
    assert len(index) == 1500


def test_bad_arguments():
    with pytest.raises(ValueError, match="bits"):
        sx.HNSWIndex(D, storage="rabitq", bits=9)
    with pytest.raises(ValueError, match="bits"):
        sx.HNSWIndex(D, storage="float32", bits=2)
    with pytest.raises(ValueError, match="hamming"):
        sx.HNSWIndex(64, "hamming", storage="rabitq")
    with pytest.raises(ValueError, match="rerank_k"):
        sx.HNSWIndex(D).search(Q, 5, rerank_k=20)
    plain = sx.HNSWIndex(D)
    plain.add(X[:50])
    with pytest.raises(ValueError, match="rerank_k"):  # one 1-D query: not the lean path
        plain.search(Q[0], 5, rerank_k=20)
    index = sx.HNSWIndex(D, storage="rabitq")
    index.train(X[:200])
    with pytest.raises(ValueError, match="train"):
        index.train(X[:200])
    with pytest.raises(ValueError, match="buffered"):
        index.search(Q, 5, buffered=True)
    index.add(X[:100])
    for bad in (0, -3, 1 << 21):
        with pytest.raises(ValueError, match="rerank_k"):
            index.search(Q[0], 5, rerank_k=bad)
    assert "storage='rabitq'" in repr(index) and "bits=1" in repr(index)


def test_memory_counts_codes(built):
    plain = sx.HNSWIndex(D, "l2")
    plain.add(X)
    # own code + M0 neighbour codes per node on top of the float graph
    assert built.nbytes > plain.nbytes


# ---- rows in a side file (rerank=path) ----------------------------------------------------
def _pair(tmp_path, metric="l2", n=1500, name="rows.f32"):
    """The same graph twice (same seed, threads=1): rows in RAM, rows in a side file."""
    x = unit(X[:n]) if metric == "ip" else X[:n]
    ram = sx.HNSWIndex(D, metric, M=8, ef_construction=60, storage="rabitq", seed=4)
    side = tmp_path / name
    filed = sx.HNSWIndex(D, metric, M=8, ef_construction=60, storage="rabitq", seed=4, rerank=side)
    ram.add(x, threads=1)
    filed.add(x, threads=1)
    return ram, filed, side


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_side_file_gives_the_same_results_as_ram(tmp_path, metric):
    ram, filed, side = _pair(tmp_path, metric)
    q = unit(Q) if metric == "ip" else Q
    every_third = np.arange(0, 1500, 3)
    for args in ({"ef": 20}, {"ef": 40, "rerank_k": 200}, {"ef": 16, "filter": every_third}):
        a, b = ram.search(q, 10, **args), filed.search(q, 10, **args)
        np.testing.assert_array_equal(b.ids, a.ids)
        np.testing.assert_array_equal(b.distances, a.distances)
    np.testing.assert_array_equal(filed.search(q[2], 10).ids, ram.search(q[2], 10).ids)
    # the file holds the rows as indexed (unit length for cosine), one per slot
    rows = np.fromfile(side, dtype=np.float32).reshape(-1, D)
    np.testing.assert_array_equal(rows, ram.reconstruct(np.arange(1500)))
    np.testing.assert_array_equal(filed.reconstruct([7, 3]), ram.reconstruct([7, 3]))
    # the node blocks hold links and codes only: the rows' bytes are not in RAM
    assert ram.nbytes - filed.nbytes >= 1500 * D * 4
    assert f"rerank={str(side)!r}" in repr(filed)


def test_side_file_save_load_and_pickle(tmp_path):
    ram, filed, side = _pair(tmp_path)
    want = filed.search(Q, 10, rerank_k=50)
    path = tmp_path / "g.sdx"
    filed.save(path)
    with pytest.raises(ValueError, match="side file"):
        sx.load(path)
    for other in (sx.load(path, rerank=side), sx.load(path, mmap=True, rerank=side),
                  pickle.loads(pickle.dumps(filed))):
        got = other.search(Q, 10, rerank_k=50)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)
    # a loaded index keeps adding to its side file
    again = sx.load(path, rerank=side)
    new = again.add(X[1500:1600])
    assert side.stat().st_size == 1600 * D * 4
    _, top = again.search(X[1500:1600], 1)
    assert (top[:, 0] == new).mean() >= 0.95
    # rerank= on an index that keeps its rows in RAM is refused (no silent ignore)
    ram.save(tmp_path / "ram.sdx")
    with pytest.raises(ValueError, match="rerank"):
        sx.load(tmp_path / "ram.sdx", rerank=side)


def test_side_file_wrong_missing_or_resized_raises(tmp_path):
    _, filed, side = _pair(tmp_path, n=600)
    path = tmp_path / "g.sdx"
    filed.save(path)
    good = side.read_bytes()
    with pytest.raises(ValueError, match="bytes"):
        sx.load(path, rerank=tmp_path / "missing.f32")
    side.write_bytes(good[:-4])  # resized
    with pytest.raises(ValueError, match="bytes"):
        sx.load(path, rerank=side)
    side.write_bytes(good + bytes(4 * D))
    with pytest.raises(ValueError, match="bytes"):
        sx.load(path, rerank=side)
    changed = bytearray(good)
    changed[100] ^= 1
    side.write_bytes(bytes(changed))  # same size, other rows
    with pytest.raises(ValueError, match="checksum"):
        sx.load(path, rerank=side)
    side.write_bytes(good)
    assert len(sx.load(path, rerank=side)) == 600


def test_side_file_constructor_rules(tmp_path):
    side = tmp_path / "taken.f32"
    side.write_bytes(b"\1" * 64)
    with pytest.raises(FileExistsError, match="overwrite"):
        sx.HNSWIndex(D, storage="rabitq", rerank=side)
    assert side.read_bytes() == b"\1" * 64  # never emptied without overwrite=True
    with pytest.raises(ValueError, match="M"):  # a bad argument never touches the file
        sx.HNSWIndex(D, storage="rabitq", rerank=side, overwrite=True, M=1)
    assert side.stat().st_size == 64
    with pytest.raises(ValueError, match="storage='rabitq'"):
        sx.HNSWIndex(D, storage="float32", rerank=tmp_path / "x.f32")
    with pytest.raises(ValueError, match="directory"):
        sx.HNSWIndex(D, storage="rabitq", rerank=tmp_path)
    with pytest.raises(TypeError, match="rerank"):
        sx.HNSWIndex(D, storage="rabitq", rerank=3)
    index = sx.HNSWIndex(D, storage="rabitq", rerank=side, overwrite=True)
    assert side.stat().st_size == 0
    index.add(X[:10])
    assert side.stat().st_size == 10 * D * 4
    # "memory" is today's layout: rows in the node blocks
    assert "rerank" not in repr(sx.HNSWIndex(D, storage="rabitq", rerank="memory"))


def test_side_file_remove_reuses_slots_in_place(tmp_path):
    _, filed, side = _pair(tmp_path, n=800)
    filed.remove(np.arange(300))
    filed.compact()
    new = filed.add(X[800:1000])  # reuses freed slots: rows overwritten in the file
    assert side.stat().st_size == 800 * D * 4
    np.testing.assert_array_equal(filed.reconstruct(new[:5]), X[800:805])
    _, top = filed.search(X[800:1000], 1)
    assert (top[:, 0] == new).mean() >= 0.95
    _, found = filed.search(Q, 10)
    assert not np.isin(found, np.arange(300)).any()


def test_read_only_side_file_searches_but_refuses_adds(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes to read-only files")
    _, filed, side = _pair(tmp_path, n=500)
    filed.save(tmp_path / "g.sdx")
    want = filed.search(Q, 5)
    side.chmod(0o444)
    loaded = sx.load(tmp_path / "g.sdx", rerank=side)
    np.testing.assert_array_equal(loaded.search(Q, 5).ids, want.ids)
    with pytest.raises(PermissionError, match="read-only"):
        loaded.add(X[500:510])
    assert len(loaded) == 500  # the refused add changed nothing
    assert 500 not in loaded


def test_side_file_concurrent_search_and_add(tmp_path):
    """Adds grow (and remap) the side file while other threads search."""
    index = sx.HNSWIndex(D, "l2", storage="rabitq", rerank=tmp_path / "v.f32")
    index.add(X[:300])
    errors = []

    def searcher():
        try:
            for _ in range(30):
                _, ids = index.search(Q[:8], 5)
                assert (ids >= 0).all()
                index.search(Q[0], 5)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=searcher) for _ in range(2)]
    for t in workers:
        t.start()
    for start in range(300, 2000, 170):
        index.add(X[start : start + 170], threads=2)
    for t in workers:
        t.join()
    assert not errors
    assert len(index) == 2000


def test_side_file_crafted_headers_raise(tmp_path):
    _, filed, side = _pair(tmp_path, n=400)
    params, arrays = filed._state()
    assert params["rerank"] == "file" and params["rerank_rows"] == 400
    assert "rerank_name" in params and str(tmp_path) not in str(params)  # no path in the file

    def load(p, a=arrays, rerank=str(side)):
        return sx.HNSWIndex._from_state(_format.Fields("hnsw", p, a, "crafted", rerank=rerank))

    assert len(load(params)) == 400
    with pytest.raises(ValueError, match="rerank"):
        load(dict(params, rerank="memory"))
    with pytest.raises(ValueError, match="rerank"):
        load(dict(params, rerank=str(side)))  # a path in the header is never opened
    with pytest.raises(ValueError, match="rerank_crc32"):
        load({k: v for k, v in params.items() if k != "rerank_crc32"})
    with pytest.raises(ValueError, match="rerank_crc32"):
        load(dict(params, rerank_crc32=-1))
    with pytest.raises(ValueError, match="checksum"):
        load(dict(params, rerank_crc32=(params["rerank_crc32"] + 1) % 2**32))
    with pytest.raises(ValueError, match="rerank_rows"):
        load(dict(params, rerank_rows=-5))
    with pytest.raises(ValueError, match="bytes"):  # the file holds 400 rows
        load(dict(params, rerank_rows=399))
    with pytest.raises(ValueError, match="side file"):
        load(params, rerank=None)
    # blocks of the in-RAM layout (rows inside) under a side-file header
    ram_params, ram_arrays = _pair(tmp_path, n=400, name="other.f32")[0]._state()
    with pytest.raises(ValueError, match="blocks"):
        load(params, dict(arrays, blocks=ram_arrays["blocks"]))
    # a float graph does not keep its rows apart
    plain = sx.HNSWIndex(D)
    plain.add(X[:10])
    p2, a2 = plain._state()
    with pytest.raises(ValueError, match="rerank"):
        load(dict(p2, **{k: v for k, v in params.items() if k.startswith("rerank")}), a2)
    # fewer rows than slots: a file shrunk together with its header
    np.fromfile(side, dtype=np.float32)[: 300 * D].tofile(tmp_path / "short.f32")
    short = dict(params, rerank_rows=300,
                 rerank_crc32=int(__import__("zlib").crc32((tmp_path / "short.f32").read_bytes())))
    with pytest.raises(ValueError, match="rerank_rows"):
        load(short, rerank=str(tmp_path / "short.f32"))


def test_side_file_interrupted_add_saves_and_loads(tmp_path, python_sigint):
    """Ctrl-C during add: rows of the nodes not inserted stay in the side file (it may hold
    more rows than the graph has slots); the index saves, loads and adds on consistently."""
    x = clustered(30_000, 7)
    side = tmp_path / "v.f32"
    index = sx.HNSWIndex(D, "l2", M=8, ef_construction=40, storage="rabitq", rerank=side)
    index.train(x[:1000])
    add_interrupted(index, x)
    n = len(index)
    assert 0 < n < x.shape[0], "the add finished before the interrupt; make it longer"
    want = index.search(x[:20], 5)
    index.save(tmp_path / "g.sdx")
    loaded = sx.load(tmp_path / "g.sdx", rerank=side)
    got = loaded.search(x[:20], 5)
    np.testing.assert_array_equal(got.ids, want.ids)
    new = loaded.add(x[:10] + 0.5)
    assert len(loaded) == n + 10 and all(i in loaded for i in new.tolist())
    np.testing.assert_array_equal(loaded.reconstruct(new[:2]), x[:2] + 0.5)


SIDE_OVERWRITE = """
import os, sys, numpy as np, simdex as sx
side = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.standard_normal((1500, 16)).astype(np.float32)
index = sx.HNSWIndex(16, "cosine", M=8, ef_construction=40, storage="rabitq", rerank=side)
index.add(x, threads=1)
size = os.path.getsize(side)
for seed in range(3):  # overwritten in place (same inode): the mapping sees garbage / NaN rows
    noise = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    if seed == 2:
        noise = np.full(size // 4, np.nan, np.float32).view(np.uint8)
    with open(side, "r+b") as fh:
        fh.write(noise.tobytes())
    for k in (1, 10):
        index.search(x[:20], k)
        index.search(x[0], k)
        index.search(x[:5], k, filter=np.arange(0, 1500, 2), rerank_k=200)
    index.add(x[:30])
    index.remove(np.arange(200))
print("searched")
"""


def test_side_file_overwritten_in_place_never_crashes(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", SIDE_OVERWRITE, str(tmp_path / "v.f32")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "searched" in proc.stdout
