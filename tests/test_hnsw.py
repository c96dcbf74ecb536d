"""HNSWIndex: recall against brute force, determinism, filters, removal, persistence,
threads, bad input, every SIMD level, storage dtype and metric."""

import pickle
import threading
import time

import numpy as np
import pytest

import simdex as sx
from simdex import _format, kernels

D = 24


@pytest.fixture(params=kernels.available_levels())
def level(request):
    with kernels.force_simd(request.param):
        yield request.param


def clustered(n, d=D, clusters=20, seed=0, spread=0.5, local_dim=12):
    """Gaussian clusters whose spread lies mostly in a local_dim subspace (like real
    embeddings, whose intrinsic dimension is far below d)."""
    centers = np.random.default_rng(100).normal(size=(clusters, d))
    basis = np.random.default_rng(101).normal(size=(local_dim, d)) / np.sqrt(local_dim)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    noise = spread * rng.normal(size=(n, local_dim)) @ basis + 0.05 * rng.normal(size=(n, d))
    return (centers[labels] + noise).astype(np.float32)


X = clustered(3000)
Q = clustered(200, seed=1)


def recall(found, truth, k=10):
    return sx.recall_at_k(found, truth, k)


def exact_distances(q, rows, metric):
    """float64 reference distances of each query to the given rows (q, k, d)."""
    q = q.astype(np.float64)[:, None, :]
    rows = rows.astype(np.float64)
    if metric == "l2":
        return ((q - rows) ** 2).sum(-1)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=-1, keepdims=True)
        rows = rows / np.linalg.norm(rows, axis=-1, keepdims=True)
    return 1.0 - (q * rows).sum(-1)


# ---- recall and distances -----------------------------------------------------------------

def near_unit(x, seed=0):
    """Rows scaled to norms in [0.98, 1.02]: inner-product search on raw clustered data with
    wildly different norms is hard for every HNSW (hnswlib gets the same ~0.7 recall)."""
    scale = np.random.default_rng(seed).uniform(0.98, 1.02, size=(x.shape[0], 1))
    return (x / np.linalg.norm(x, axis=1, keepdims=True) * scale).astype(np.float32)


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_recall_against_brute_force(level, metric):
    x = near_unit(X) if metric == "ip" else X
    index = sx.HNSWIndex(D, metric, M=12, ef_construction=100)
    index.add(x, threads=2)
    dist, ids = index.search(Q, 10, ef=64)
    truth = sx.knn(Q, x, 10, metric).ids
    assert recall(ids, truth) >= 0.95
    # distances are exact for the returned ids and ascending
    want = exact_distances(Q, x[ids], metric)
    np.testing.assert_allclose(dist, want, rtol=1e-4, atol=1e-4)
    assert (np.diff(dist, axis=1) >= 0).all()


@pytest.mark.parametrize("storage", ["float16", "bfloat16", "int8"])
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_storage_dtypes(level, storage, metric):
    x = near_unit(X[:1500]) if metric == "ip" else X[:1500]
    index = sx.HNSWIndex(D, metric, M=12, ef_construction=80, storage=storage)
    index.add(x, threads=2)
    flat = sx.FlatIndex(D, metric, storage=storage)
    flat.add(x)
    dist, ids = index.search(Q, 10, ef=64)
    fdist, fids = flat.search(Q, 10)
    assert recall(ids, fids) >= 0.93
    # reported distances agree with the exact distance to the stored (decoded) rows
    stored = index.reconstruct(ids.reshape(-1)).reshape(ids.shape + (D,))
    np.testing.assert_allclose(dist, exact_distances(Q, stored, "ip" if metric == "cosine" else metric)
                               if metric != "cosine" else exact_cosine_stored(Q, stored),
                               rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("dim", [7, 64, 130, 200])
def test_int8_queries(level, dim):
    """int8 storage with queries rounded to int8: each distance equals the integer formula
    1 - (<q, lo> + s_q * sum_j round(q_j scale_j / s_q) code_j), s_q = max_j |q_j scale_j| / 127,
    exactly (integer dot products at every SIMD level), and recall holds."""
    rng = np.random.default_rng(dim)
    basis = rng.normal(size=(8, dim))
    x = near_unit((rng.normal(size=(1200, 8)) @ basis + 0.1 * rng.normal(size=(1200, dim))).astype(np.float32))
    q = near_unit((rng.normal(size=(50, 8)) @ basis + 0.1 * rng.normal(size=(50, dim))).astype(np.float32), seed=1)
    index = sx.HNSWIndex(dim, "ip", M=12, ef_construction=80, storage="int8", int8_queries=True)
    assert index.int8_queries and "int8_queries=True" in repr(index)
    index.add(x, threads=2)
    dist, ids = index.search(q, 10, ef=80)
    assert recall(ids, sx.knn(q, x, 10, "ip").ids) >= 0.9
    codes = index._core.rows(ids.reshape(-1))[0].reshape(ids.shape + (dim,)).astype(np.int64)
    lo, scale = index._lo.astype(np.float64), index._scale.astype(np.float32)
    scaled = q * scale                                   # float32, as the kernel prepares it
    s_q = np.abs(scaled).max(axis=1) / np.float32(127)
    qi = np.rint(scaled * (np.float32(127) / np.abs(scaled).max(axis=1, keepdims=True))).astype(np.int64)
    want = 1.0 - ((q.astype(np.float64) @ lo)[:, None]
                  + s_q[:, None].astype(np.float64) * (qi[:, None, :] * codes).sum(-1))
    np.testing.assert_allclose(dist, want, rtol=1e-5, atol=1e-5)
    # the same index without int8 queries ranks (almost) the same neighbours
    plain = sx.HNSWIndex(dim, "ip", M=12, ef_construction=80, storage="int8")
    plain.add(x, threads=2)
    assert recall(ids, plain.search(q, 10, ef=80).ids) >= 0.9
    back = pickle.loads(pickle.dumps(index))
    assert back.int8_queries
    np.testing.assert_array_equal(back.search(q, 10, ef=80).ids, ids)


def test_int8_queries_bad_input():
    with pytest.raises(ValueError, match="int8_queries"):
        sx.HNSWIndex(8, "ip", int8_queries=True)               # float32 storage
    with pytest.raises(ValueError, match="int8_queries"):
        sx.HNSWIndex(8, "l2", storage="int8", int8_queries=True)
    with pytest.raises(TypeError, match="int8_queries"):
        sx.HNSWIndex(8, "ip", storage="int8", int8_queries=1)


def exact_cosine_stored(q, stored):
    qn = q.astype(np.float64) / np.linalg.norm(q.astype(np.float64), axis=1, keepdims=True)
    return 1.0 - (qn[:, None, :] * stored.astype(np.float64)).sum(-1)


def test_hamming(level):
    rng = np.random.default_rng(5)
    nbits = 128
    centers = rng.integers(0, 2, size=(16, nbits))
    flips = rng.random((2000, nbits)) < 0.12
    bits = centers[rng.integers(0, 16, 2000)] ^ flips
    codes = np.packbits(bits.astype(np.uint8), axis=1)
    qcodes = np.packbits((centers[rng.integers(0, 16, 100)] ^ (rng.random((100, nbits)) < 0.12)).astype(np.uint8), axis=1)
    index = sx.HNSWIndex(nbits, "hamming", M=12, ef_construction=100)
    index.add(codes, threads=2)
    dist, ids = index.search(qcodes, 10, ef=64)
    true_dist = sx.knn(qcodes, codes, 10, "hamming").distances
    # ties are everywhere in Hamming space: compare distances, not ids
    popcount = np.unpackbits(qcodes[:, None, :] ^ codes[ids], axis=-1).sum(-1)
    np.testing.assert_array_equal(dist, popcount)
    found = (dist <= true_dist[:, -1:]).mean()
    assert found >= 0.95
    assert "hamming" in repr(index)


# ---- build behaviour ------------------------------------------------------------------------

def test_deterministic_with_one_thread():
    a = sx.HNSWIndex(D, "l2", M=8, ef_construction=60, seed=7)
    b = sx.HNSWIndex(D, "l2", M=8, ef_construction=60, seed=7)
    c = sx.HNSWIndex(D, "l2", M=8, ef_construction=60, seed=8)
    for index in (a, b, c):
        index.add(X[:1500], threads=1)
    sa, sb, sc = a._core.state(), b._core.state(), c._core.state()
    for key in ("blocks", "levels", "upper"):
        np.testing.assert_array_equal(sa[key], sb[key])
    assert not np.array_equal(sa["levels"], sc["levels"])
    ra, rb = a.search(Q, 10, ef=20), b.search(Q, 10, ef=20)
    np.testing.assert_array_equal(ra.ids, rb.ids)
    np.testing.assert_array_equal(ra.distances, rb.distances)


@pytest.mark.parametrize("order", ["random", "lid_desc"])
def test_insertion_orders(order):
    a = sx.HNSWIndex(D, "l2", M=12, ef_construction=80, seed=3)
    b = sx.HNSWIndex(D, "l2", M=12, ef_construction=80, seed=3)
    a.add(X, threads=1, insertion_order=order)
    b.add(X, threads=1, insertion_order=order)
    np.testing.assert_array_equal(a._core.state()["blocks"], b._core.state()["blocks"])
    given = sx.HNSWIndex(D, "l2", M=12, ef_construction=80, seed=3)
    given.add(X, threads=1)
    assert not np.array_equal(a._core.state()["blocks"], given._core.state()["blocks"])
    assert recall(a.search(Q, 10, ef=64).ids, sx.knn(Q, X, 10).ids) >= 0.95


def test_incremental_growth_and_user_ids():
    index = sx.HNSWIndex(D, "l2", M=8, ef_construction=60)
    ids = np.arange(3000, dtype=np.int64) * 7 + 100
    for start in range(0, 3000, 700):  # several adds force the storage to grow
        index.add(X[start:start + 700], ids[start:start + 700], threads=2)
    assert len(index) == 3000
    got = index.search(Q, 10, ef=64).ids
    truth = ids[sx.knn(Q, X, 10).ids]
    assert recall(got, truth) >= 0.95
    auto = index.add(X[:3])
    assert auto.min() > ids.max()
    np.testing.assert_allclose(index.reconstruct(ids[[5, 9]]), X[[5, 9]])


def test_progress_bar_path_gives_same_graph():
    a = sx.HNSWIndex(D, "l2", M=8, ef_construction=40)
    b = sx.HNSWIndex(D, "l2", M=8, ef_construction=40)
    a.add(X[:2500], threads=1)
    b.add(X[:2500], threads=1, progress=True)
    np.testing.assert_array_equal(a._core.state()["blocks"], b._core.state()["blocks"])


# ---- search edge cases ------------------------------------------------------------------------

def test_fewer_than_k_and_empty():
    index = sx.HNSWIndex(D, "l2")
    d, i = index.search(Q[:3], 5)
    assert (i == -1).all() and np.isinf(d).all()
    index.add(X[:4])
    d, i = index.search(Q[0], 10)
    assert d.shape == (10,) and i.shape == (10,)
    assert sorted(i[:4].tolist()) == [0, 1, 2, 3]
    assert (i[4:] == -1).all() and np.isinf(d[4:]).all()


def test_max_distance():
    index = sx.HNSWIndex(D, "l2", M=8)
    index.add(X[:1000])
    d, i = index.search(Q[:20], 10, ef=64)
    limit = d[:, 4].copy()
    d2, i2 = index.search(Q[:20], 10, ef=64, max_distance=limit)
    assert ((d2 <= limit[:, None]) | np.isinf(d2)).all()
    np.testing.assert_array_equal(i2[:, :5], i[:, :5])
    assert ((i2 == -1) == np.isinf(d2)).all()


@pytest.mark.parametrize("fraction", [0.01, 0.10, 0.50])
def test_filtered_search(level, fraction):
    rng = np.random.default_rng(11)
    index = sx.HNSWIndex(D, "l2", M=12, ef_construction=80)
    index.add(X, threads=2)
    allowed = np.sort(rng.choice(X.shape[0], int(fraction * X.shape[0]), replace=False))
    truth = allowed[sx.knn(Q, X[allowed], 10).ids]
    for flt in (allowed, np.isin(np.arange(X.shape[0]), allowed)):  # id list and boolean mask
        dist, ids = index.search(Q, 10, ef=64, filter=flt)
        assert np.isin(ids[ids >= 0], allowed).all()
        assert recall(ids, truth) >= 0.95


def test_filter_with_few_allowed_pads():
    index = sx.HNSWIndex(D, "l2")
    index.add(X[:500])
    d, i = index.search(Q[:4], 10, filter=np.array([3, 7, 11]))
    assert set(i[:, :3].reshape(-1).tolist()) == {3, 7, 11}
    assert (i[:, 3:] == -1).all() and np.isinf(d[:, 3:]).all()
    d, i = index.search(Q[:2], 5, filter=np.zeros(500, dtype=bool))
    assert (i == -1).all()


# ---- removal ------------------------------------------------------------------------------------

def test_remove_keeps_recall_and_reuses_slots(level):
    rng = np.random.default_rng(12)
    index = sx.HNSWIndex(D, "l2", M=8, ef_construction=60)
    index.add(X, threads=1)  # deterministic: the recall comparison below is tight
    removed = rng.choice(X.shape[0], X.shape[0] // 10, replace=False)
    assert index.remove(removed) == removed.size
    assert index.remove(removed) == 0  # already gone
    assert len(index) == X.shape[0] - removed.size
    keep = np.setdiff1d(np.arange(X.shape[0]), removed)
    truth = keep[sx.knn(Q, X[keep], 10).ids]
    ef = 24
    dist, ids = index.search(Q, 10, ef=ef)
    assert not np.isin(ids, removed).any()
    fresh = sx.HNSWIndex(D, "l2", M=8, ef_construction=60)
    fresh.add(X[keep], keep, threads=1)
    r_removed, r_fresh = recall(ids, truth), recall(fresh.search(Q, 10, ef=ef).ids, truth)
    assert r_removed >= r_fresh - 0.01, (r_removed, r_fresh)
    # removal tombstones (O(1)); compaction unlinks: no live node links to a removed slot
    index.compact()
    assert index._core.tombstones == 0
    live = index.ids
    removed_slots = set(removed.tolist())  # ids == slots here
    for s in live[:500]:
        assert not removed_slots.intersection(index._core.neighbours(int(s), 0).tolist())
    # slots are reused; removed ids never come back
    slots_before = index._core.slot_count
    new = index.add(X[removed] + 0.01, threads=2)
    assert index._core.slot_count == slots_before
    d, i = index.search(X[removed[:50]] + 0.01, 1, ef=32)
    assert (i[:, 0] == new[:50]).mean() >= 0.95
    assert not np.isin(index.search(Q, 10, ef=64).ids, removed).any()


def test_remove_everything_then_add():
    index = sx.HNSWIndex(D, "cosine", M=8)
    index.add(X[:300])
    assert index.remove(np.arange(300)) == 300
    assert len(index) == 0
    assert (index.search(Q[:2], 3).ids == -1).all()
    index.add(X[300:600])
    assert recall(index.search(Q, 5, ef=64).ids, 300 + sx.knn(Q, X[300:600], 5, "cosine").ids, 5) >= 0.95


# ---- persistence and threads ---------------------------------------------------------------------

@pytest.mark.parametrize("storage", ["float32", "int8"])
def test_save_load_mmap_pickle(tmp_path, storage):
    index = sx.HNSWIndex(D, "cosine", M=8, ef_construction=60, storage=storage, seed=2)
    index.add(X[:2000], threads=2)
    index.remove(np.arange(0, 2000, 13))
    index.ef = 33
    want = index.search(Q, 10)
    path = tmp_path / "index.simdex"
    index.save(path)
    for loaded in (sx.load(path), sx.load(path, mmap=True), pickle.loads(pickle.dumps(index))):
        assert isinstance(loaded, sx.HNSWIndex) and loaded.ef == 33 and len(loaded) == len(index)
        got = loaded.search(Q, 10)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)
        assert repr(loaded) == repr(index)
    # a memory-mapped index copies its storage before the first change; the file is untouched
    mapped = sx.load(path, mmap=True)
    before = path.read_bytes()
    mapped.add(X[2000:2100])
    mapped.remove([5, 6])
    assert path.read_bytes() == before
    assert len(mapped) == len(index) + 100 - 2
    np.testing.assert_array_equal(sx.load(path).search(Q, 10).ids, want.ids)


def test_corrupted_file_raises(tmp_path):
    index = sx.HNSWIndex(D, "l2", M=8)
    index.add(X[:200])
    path = tmp_path / "i.simdex"
    index.save(path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        sx.load(path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ValueError):
        sx.load(path)
    # a state whose links point at missing nodes is refused before use
    params, arrays = index._state()
    arrays = dict(arrays, levels=np.full_like(arrays["levels"], -1))
    with pytest.raises(ValueError):
        sx.HNSWIndex._from_state(_format.Fields("hnsw", params, arrays, "test"))


def test_concurrent_searches_from_python_threads():
    index = sx.HNSWIndex(D, "l2", M=8, ef_construction=60)
    index.add(X, threads=2)
    want = index.search(Q, 10, ef=40, threads=1)
    results, errors = {}, []

    def worker(t):
        try:
            for _ in range(3):
                results[t] = index.search(Q, 10, ef=40, threads=1 + t % 2)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got in results.values():
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)


def test_batched_and_single_agree():
    index = sx.HNSWIndex(D, "ip", M=8, ef_construction=60)
    index.add(X[:1500], threads=2)
    batch = index.search(Q[:30], 10, ef=32, threads=2)
    for j in range(30):
        one = index.search(Q[j], 10, ef=32)
        np.testing.assert_array_equal(one.ids, batch.ids[j])


# ---- properties and bad input ---------------------------------------------------------------------

def test_properties():
    index = sx.HNSWIndex(D, "l2", M=8)
    empty_bytes = index.nbytes
    index.add(X[:500])
    assert len(index) == 500 and index.dim == D and index.metric == "l2"
    assert index.nbytes > empty_bytes + 500 * D * 4
    text = repr(index)
    assert "\n" not in text and text.startswith("HNSWIndex(dim=24, metric='l2', M=8, ef_construction=200, n=500")


def test_bad_input():
    index = sx.HNSWIndex(D, "l2")
    index.add(X[:50])
    with pytest.raises(ValueError, match=r"\(n, 24\)"):
        index.add(np.ones((3, 5), np.float32))
    with pytest.raises(TypeError):
        index.add(np.ones((3, D), np.int32))
    with pytest.raises(ValueError):
        index.add(np.full((2, D), np.nan, np.float32))
    with pytest.raises(ValueError):
        index.add(np.ones((0, D), np.float32))
    with pytest.raises(ValueError, match="already in the index"):
        index.add(X[:2], ids=[0, 1])
    with pytest.raises(ValueError, match="unique"):
        index.add(X[:2], ids=[500, 500])
    with pytest.raises(ValueError, match="insertion_order"):
        index.add(X[:2], insertion_order="sorted")
    with pytest.raises(TypeError):
        index.add(X[:2], progress="yes")
    with pytest.raises(ValueError):
        index.add(X[:2], threads=0)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full(D, np.nan, np.float32))  # lean 1-D path
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((2, D), np.inf, np.float32))
    with pytest.raises(ValueError):
        index.search(Q[0], 0)
    with pytest.raises(TypeError):
        index.search(Q[0], 2.0)
    with pytest.raises(ValueError):
        index.search(Q[:2], 0)
    with pytest.raises(ValueError):
        index.search(Q[:2], 5, ef=0)
    with pytest.raises(ValueError):
        index.search(np.ones((2, 7), np.float32))
    with pytest.raises(TypeError):
        index.search(np.ones((2, D), np.int64))
    with pytest.raises(TypeError):
        index.search(Q[:2], filter=np.array([0.5]))
    with pytest.raises(ValueError):
        index.search(Q[:2], max_distance=np.ones(3))
    with pytest.raises(ValueError):
        index.ef = 0
    with pytest.raises(TypeError):
        index.remove(np.array([1.5]))
    for kwargs in ({"M": 1}, {"ef_construction": 0}, {"storage": "int4"}, {"seed": -1}):
        with pytest.raises(ValueError):
            sx.HNSWIndex(D, **kwargs)
    with pytest.raises(ValueError):
        sx.HNSWIndex(D, "manhattan")
    with pytest.raises(ValueError):
        sx.HNSWIndex(12, "hamming")
    with pytest.raises(ValueError):
        sx.HNSWIndex(64, "hamming", storage="float16")
    with pytest.raises(TypeError):
        sx.HNSWIndex(64, "hamming").add(np.ones((2, 8), np.float32))
    with pytest.raises(ValueError):
        sx.HNSWIndex(64, "hamming").add(np.ones((2, 7), np.uint8))


def test_buffered_search_returns_best_scored_nodes(level):
    """buffered=True: window ef, k results from every scored node; never worse than the window."""
    index = sx.HNSWIndex(D, "l2", M=8, ef_construction=60)
    index.add(X, threads=1)
    truth = sx.knn(Q, X, 30).ids
    window = index.search(Q, 10, ef=10)
    buffered = index.search(Q, 30, ef=10, buffered=True)
    assert buffered.ids.shape == (Q.shape[0], 30)
    assert np.all(np.diff(buffered.distances, axis=1) >= 0)
    # the window's 10 results are among the scored nodes, so the buffer's first 10 are as good
    assert np.all(buffered.distances[:, 9] <= window.distances[:, 9] + 1e-6)
    # distances are exact for the returned ids
    ref = ((Q[:, None, :].astype(np.float64) - X[np.maximum(buffered.ids, 0)]) ** 2).sum(-1)
    ok = buffered.ids >= 0
    np.testing.assert_allclose(buffered.distances[ok], ref[ok], rtol=1e-4, atol=1e-4)
    # more candidates than the window at the same ef: recall@30 at least that of k=30 within ef=10
    assert recall(buffered.ids, truth) >= recall(window.ids, truth[:, :10]) * 0.5
    with pytest.raises(TypeError):
        index.search(Q, 30, ef=10, buffered="yes")


@pytest.mark.parametrize("threads", [1, 2, 4, 8])
def test_threaded_build_reaches_every_node(threads):
    """With ef = n every stored vector finds itself, whatever the build threads (a node's
    link lists are complete before any other node links to it, and never rewritten)."""
    x = np.random.default_rng(threads).random((3000, 16), dtype=np.float32)
    for seed in range(3):
        index = sx.HNSWIndex(16, "l2", M=8, ef_construction=40, seed=seed)
        index.add(x, threads=threads)
        _, ids = index.search(x, 1, ef=x.shape[0])
        unreachable = np.nonzero(ids[:, 0] != np.arange(x.shape[0]))[0]
        assert unreachable.size == 0, (seed, unreachable[:10])


def test_searches_run_while_a_large_batch_is_inserted():
    """Searches during a long multi-threaded insert (they share the graph with the inserting
    threads): never raise, return only ids that were added, sorted, padding only at the end."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12_000, 16)).astype(np.float32)
    index = sx.HNSWIndex(16, "l2", M=8, ef_construction=64)
    index.add(x[:1000], np.arange(1000))
    done = threading.Event()
    errors, results = [], []

    def searcher(seed):
        r = np.random.default_rng(seed)
        try:
            while not done.is_set():
                d, i = index.search(x[r.integers(0, x.shape[0], 4)], 10, ef=32, threads=1)
                results.append((d, i))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    index.add(x[1000:], np.arange(1000, x.shape[0]), threads=2)
    done.set()
    for t in threads:
        t.join()
    assert not errors, errors[:2]
    assert len(results) > 0 and len(index) == x.shape[0]
    for d, i in results:
        assert ((i >= 0) & (i < x.shape[0]) | (i == -1)).all()
        valid = i >= 0
        assert (np.diff(np.where(valid, d, np.float32(3e38)), axis=1) >= 0).all()
        assert (valid[:, :-1] | ~valid[:, 1:]).all()  # -1 only after the last result
    _, found = index.search(x, 1, ef=64)
    assert (found[:, 0] == np.arange(x.shape[0])).mean() > 0.99


def test_remove_runs_beside_a_long_search():
    """A one-row remove does not wait for searches in flight (a service's deletes under query
    load): it returns while a long batch search is still running, and that search's results
    are whole (no -1 holes); searches after it never return the id."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4000, 32)).astype(np.float32)
    index = sx.HNSWIndex(32, "l2", M=8, ef_construction=40)
    index.add(x, threads=2)
    q = np.repeat(x[:50], 400, axis=0)  # 20k queries whose answers include ids 0..49
    started, out = threading.Event(), []

    def long_search():
        started.set()
        out.append(index.search(q, 10, ef=200, threads=1))

    t = threading.Thread(target=long_search)
    t.start()
    started.wait()
    time.sleep(0.05)  # the search holds the index's read lock now
    victims = list(range(50))
    t0 = time.perf_counter()
    for v in victims:
        assert index.remove([v]) == 1
    took = time.perf_counter() - t0
    still_searching = t.is_alive()
    t.join()
    assert still_searching, "the search ended before the removes: make it longer"
    assert took < 0.05, f"50 removes took {took:.3f} s beside a running search"
    d, i = out[0]
    valid = i >= 0
    assert (valid[:, :-1] | ~valid[:, 1:]).all()  # -1 only after the last result
    assert valid[:, :9].all()
    _, after = index.search(x[:50], 10, ef=200)
    assert not np.isin(after, victims).any()
