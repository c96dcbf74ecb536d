"""simdex.distributed.ShardedIndex on a real Dask cluster started here (loopback TCP).

Most tests share one in-process cluster (processes=False, 2 workers); the worker-loss tests
start their own clusters with real worker processes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import simdex as sx
from conftest import brute_force, clustered
from simdex.distributed import (
    ShardedIndex,
    ShardUnavailableError,
    _filters_per_shard,
    _Shard,
    merge_range,
    merge_topk,
    shard_of,
)

D = 24


def _cluster(processes: bool) -> distributed.LocalCluster:
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=processes,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )


@pytest.fixture(scope="module")
def client():
    with _cluster(False) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def data():
    x = clustered(3000, D, seed=1)
    q = clustered(40, D, seed=2)
    return x, q


def _sharded(client, make, x, **kw):
    index = ShardedIndex(make, client=client, **kw)
    index.add(x)
    return index


# ---- placement and merging (no cluster) ------------------------------------------------------
def test_shard_of_is_fixed_and_balanced():
    # pinned values: saved manifests depend on this placement never changing
    assert shard_of(np.arange(8), 1).tolist() == [0] * 8
    assert shard_of([0, 1, 2, 12345678901234], 7).tolist() == [2, 2, 4, 5]
    for ids in (np.arange(100_000), np.arange(100_000) * 8, np.arange(100_000) * 1024 + 3):
        counts = np.bincount(shard_of(ids, 8), minlength=8)
        assert counts.min() > 0.95 * ids.size / 8, counts


def test_id_filters_are_split_by_owning_shard():
    allowed = np.arange(0, 5000, 3)
    parts = _filters_per_shard(allowed, 3)
    assert sorted(np.concatenate(parts).tolist()) == allowed.tolist()
    for s, part in enumerate(parts):
        assert (shard_of(part, 3) == s).all()
    rows = _filters_per_shard([allowed[:10], allowed[10:20]], 3)
    assert [sorted(np.concatenate([rows[s][r] for s in range(3)]).tolist()) for r in range(2)] == [
        allowed[:10].tolist(),
        allowed[10:20].tolist(),
    ]
    mask = np.ones(10, bool)
    assert _filters_per_shard(mask, 3) is None and _filters_per_shard([mask, allowed], 3) is None
    assert _filters_per_shard(None, 3) is None and _filters_per_shard(allowed, 1) is None


def _reference_merge(dists, ids, k):
    """Sort every (distance, id) pair of each row in Python: valid by (distance, id), then -1."""
    out_d, out_i = [], []
    for row in range(dists[0].shape[0]):
        pairs = [
            (float(d[row, j]), int(i[row, j]))
            for d, i in zip(dists, ids)
            for j in range(d.shape[1])
        ]
        valid = sorted(p for p in pairs if p[1] >= 0)
        valid += [(np.inf, -1)] * (k - len(valid))
        out_d.append([p[0] for p in valid[:k]])
        out_i.append([p[1] for p in valid[:k]])
    return np.array(out_d, np.float32), np.array(out_i, np.int64)


@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_merge_topk_matches_reference(shards, k_shard, k, seed):
    rng = np.random.default_rng(seed)
    q = 3
    dists, ids = [], []
    next_id = 0
    for _ in range(shards):
        found = rng.integers(0, k_shard + 1, q)  # some rows shorter than k_shard: padded
        d = np.sort(
            rng.choice([-1.5, -0.0, 0.0, 0.5, 1.0, 2.0], (q, k_shard)).astype(np.float32), axis=1
        )  # ties, signs
        i = np.arange(next_id, next_id + q * k_shard).reshape(q, k_shard)[
            :, rng.permutation(k_shard)
        ]
        next_id += q * k_shard
        cols = np.arange(k_shard)[None, :]
        d[cols >= found[:, None]] = np.inf
        i = np.where(cols >= found[:, None], -1, i)
        dists.append(d)
        ids.append(i.astype(np.int64))
    got = merge_topk(dists, ids, k)
    want = _reference_merge(dists, ids, k)
    np.testing.assert_array_equal(got.distances, want[0])
    np.testing.assert_array_equal(got.ids, want[1])


def test_merge_range_orders_each_query():
    a = (np.array([0, 2, 2, 3]), np.array([0.5, 0.7, 0.1], np.float32), np.array([4, 6, 8]))
    b = (np.array([0, 1, 1, 3]), np.array([0.5, 0.05, 0.2], np.float32), np.array([1, 9, 3]))
    lims, d, i = merge_range([a, b], 3)
    assert lims.tolist() == [0, 3, 3, 6]
    assert i.tolist() == [1, 4, 6, 9, 8, 3]
    assert d.tolist() == pytest.approx([0.5, 0.5, 0.7, 0.05, 0.1, 0.2])


# ---- exact shards equal one index ------------------------------------------------------------
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_flat_shards_equal_one_flat_index(client, data, metric):
    x, q = data
    one = sx.FlatIndex(D, metric)
    one.add(x)
    sharded = _sharded(client, lambda: sx.FlatIndex(D, metric), x)
    assert len(sharded) == len(x) and sharded.n_shards == 2 and all(sharded.shard_sizes() > 1300)
    for k in (1, 10):
        got, want = sharded.search(q, k), one.search(q, k)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)
    # against float64 NumPy: the k smallest distances
    ref = np.sort(brute_force(q, x, metric), axis=1)[:, :10]
    np.testing.assert_allclose(sharded.search(q, 10).distances, ref, rtol=1e-4, atol=1e-4)
    one_query = sharded.search(q[3], 5)
    assert one_query.ids.shape == (5,) and one_query.ids.tolist() == want.ids[3, :5].tolist()


def test_hamming_shards_and_more_shards_than_workers(client):
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (1000, 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (20, 8), dtype=np.uint8)
    one = sx.FlatIndex(64, "hamming")
    one.add(codes)
    sharded = _sharded(client, lambda: sx.FlatIndex(64, "hamming"), codes, n_shards=5)
    assert sharded.n_shards == 5 and len(set(sharded.workers)) == 2
    got, want = sharded.search(queries, 10), one.search(queries, 10)
    np.testing.assert_array_equal(got.distances, want.distances)  # many ties: ids may differ
    for row in range(20):  # ties in id order, every id at its true distance
        tie = got.distances[row, 1:] == got.distances[row, :-1]
        assert (got.ids[row, 1:][tie] > got.ids[row, :-1][tie]).all()
        true = np.unpackbits(codes[got.ids[row]] ^ queries[row], axis=1).sum(axis=1)
        np.testing.assert_array_equal(true, got.distances[row])


def test_padding_when_k_exceeds_rows(client):
    x = clustered(7, D, seed=4)
    sharded = _sharded(client, lambda: sx.FlatIndex(D), x)
    d, i = sharded.search(x[:2], 10)
    assert (i[:, :7] >= 0).all() and (i[:, 7:] == -1).all() and np.isinf(d[:, 7:]).all()
    assert sorted(i[0, :7].tolist()) == list(range(7))


def test_filter_max_distance_and_range_search_pass_through(client, data):
    x, q = data
    one = sx.FlatIndex(D, "l2")
    one.add(x)
    sharded = _sharded(client, lambda: sx.FlatIndex(D, "l2"), x)
    allowed = np.arange(0, 3000, 7)
    mask = np.zeros(3000, bool)
    mask[::3] = True
    per_row = [np.arange(r, 3000, 11) for r in range(len(q))]
    limits = np.quantile(one.search(q, 10).distances, 0.5, axis=1)
    for kwargs in (
        {"filter": allowed},
        {"filter": allowed.tolist()},
        {"filter": mask},
        {"filter": per_row},
        {"filter": [mask] * len(q)},
        {"filter": np.zeros(0, np.int64)},
        {"max_distance": float(np.median(limits))},
        {"max_distance": limits},
        {"filter": allowed, "max_distance": limits},
    ):
        got, want = sharded.search(q, 10, **kwargs), one.search(q, 10, **kwargs)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)
    for radius in (float(np.median(limits)), limits):
        got, want = sharded.range_search(q, radius), one.range_search(q, radius)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    got, want = (
        sharded.range_search(q, float(np.median(limits)), filter=allowed),
        one.range_search(q, float(np.median(limits)), filter=allowed),
    )
    np.testing.assert_array_equal(got[2], want[2])


def test_hnsw_recall_close_to_one_hnsw(client):
    x = clustered(6000, 32, seed=5)
    q = clustered(200, 32, seed=6)
    truth = np.argsort(brute_force(q, x, "l2"), axis=1)[:, :10]
    params = {"M": 8, "ef_construction": 64, "seed": 0}
    one = sx.HNSWIndex(32, "l2", **params)
    one.add(x, threads=1)
    sharded = ShardedIndex(functools.partial(sx.HNSWIndex, 32, "l2", **params), client=client)
    sharded.add(x, threads=1)
    recall_one = sx.recall_at_k(one.search(q, 10, ef=16).ids, truth, 10)
    recall_sharded = sx.recall_at_k(sharded.search(q, 10, ef=16).ids, truth, 10)
    assert recall_one < 0.999  # the comparison means something
    assert recall_sharded >= recall_one - 0.01, (recall_sharded, recall_one)
    over = sx.recall_at_k(sharded.search(q, 10, ef=16, shard_k=20).ids, truth, 10)
    assert over >= recall_sharded - 1e-9


# ---- shared training ---------------------------------------------------------------------------
def test_int8_ranges_learnt_once_and_shared(client, data):
    x, q = data
    one = sx.FlatIndex(D, "l2", storage="int8")
    one.add(x)  # learns its ranges from this first batch
    sharded = _sharded(client, lambda: sx.FlatIndex(D, "l2", storage="int8"), x)
    ranges = sharded.map_shards(lambda index: (index._lo, index._scale))
    for lo, scale in ranges:
        np.testing.assert_array_equal(lo, one._lo)
        np.testing.assert_array_equal(scale, one._scale)
    got, want = sharded.search(q, 10), one.search(q, 10)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.distances, want.distances)
    # HNSW int8: the untrained template travels to the shards (pickled before its ranges exist)
    graph = _sharded(
        client, lambda: sx.HNSWIndex(D, "cosine", storage="int8", M=8, ef_construction=32), x
    )
    one = sx.HNSWIndex(D, "cosine", storage="int8", M=8, ef_construction=32)
    one.add(x)
    for lo, scale in graph.map_shards(lambda index: (index._lo, index._scale)):
        np.testing.assert_array_equal(lo, one._lo)
        np.testing.assert_array_equal(scale, one._scale)


def test_binary_index_trained_on_the_first_batch_like_one_index(client, data):
    x, q = data
    one = sx.BinaryIndex(D, bits=2)
    one.add(x)  # fits its binarizer on this first batch
    sharded = ShardedIndex(lambda: sx.BinaryIndex(D, bits=2))  # the current client
    sharded.add(x)
    for alphas in sharded.map_shards(lambda index: index.alphas):
        np.testing.assert_array_equal(alphas, one.alphas)
    np.testing.assert_array_equal(sharded.search(q, 10).distances, one.search(q, 10).distances)


def test_pq_trained_once_gives_one_code_space(client, data):
    x, q = data
    make = functools.partial(sx.PQIndex, D, 4, nbits=8)
    with pytest.raises(ValueError, match="not trained"):
        ShardedIndex(make, client=client).add(x)
    one = make().train(x[:1000], seed=3)
    one.add(x)
    sharded = ShardedIndex(make, client=client).train(x[:1000], seed=3)
    sharded.add(x)
    books = sharded.map_shards(lambda index: index.pq.codebooks)
    np.testing.assert_array_equal(books[0], books[1])
    np.testing.assert_array_equal(books[0], one.pq.codebooks)
    got, want = sharded.search(q, 10), one.search(q, 10)
    np.testing.assert_array_equal(got.distances, want.distances)
    # every shard holds its own index (in-process workers once shared the trained template)
    sizes = sharded.shard_sizes()
    assert sum(sizes) == len(sharded) == x.shape[0] and min(sizes) > 0
    assert all(len(set(row)) == len(row) for row in got.ids.tolist())
    with pytest.raises(ValueError, match="before the first add"):
        sharded.train(x[:1000])


# ---- ids, routing, all-or-nothing adds ----------------------------------------------------------
def test_ids_routing_remove_and_reconstruct(client, data):
    x, _ = data
    sharded = ShardedIndex(lambda: sx.FlatIndex(D), client=client)
    user = np.arange(1000) * 10 + 5
    assert sharded.add(x[:1000], ids=user).tolist() == user.tolist()
    assert sharded.add(x[1000:1010]).tolist() == list(range(9996, 10006))  # one past the largest id
    owners = shard_of(user, 2)
    for s, ids in enumerate(sharded.map_shards(lambda index: index.ids)):
        assert set(ids.tolist()) <= set(user[owners == s].tolist()) | set(range(9996, 10006))
    np.testing.assert_array_equal(sharded.reconstruct([15, 5, 9999]), x[[1, 0, 1003]])
    with pytest.raises(KeyError):
        sharded.reconstruct([6])
    none = np.zeros(0, np.int64)
    assert sharded.reconstruct(none).shape == (0, D) and sharded.remove(none) == 0
    gone = user[::2]
    assert sharded.remove(np.concatenate([gone, [7, 8]])) == gone.size
    assert (
        len(sharded) == 1010 - gone.size
        and 5 not in sharded
        and 15 in sharded
        and "15" not in sharded
    )
    found = sharded.search(x[:1000], 5).ids
    assert not np.isin(found, gone).any()
    assert sorted(sharded.ids.tolist()) == sorted(
        set(user[1::2].tolist()) | set(range(9996, 10006))
    )


def test_duplicate_ids_leave_nothing_behind(client, data):
    x, _ = data
    sharded = ShardedIndex(lambda: sx.FlatIndex(D), client=client)
    sharded.add(x[:100])
    before = sorted(sharded.ids.tolist())
    clash = np.arange(500, 600)
    clash[57] = 42  # one id taken: its shard refuses, the other shard's rows are taken back
    with pytest.raises(ValueError, match="already in the index"):
        sharded.add(x[100:200], ids=clash)
    assert sorted(sharded.ids.tolist()) == before
    with pytest.raises(ValueError, match="unique"):
        sharded.add(x[:2], ids=[900, 900])
    with pytest.raises(ValueError, match="NaN"):
        sharded.add(np.full((3, D), np.nan, np.float32))
    assert len(sharded) == 100


def test_dask_array_add_equals_numpy_add(client, data):
    x, q = data
    blocks = da.from_array(x, chunks=(700, D)).persist()
    from_dask = ShardedIndex(lambda: sx.FlatIndex(D, "cosine"), client=client)
    assert from_dask.add(blocks).tolist() == list(range(3000))
    from_numpy = _sharded(client, lambda: sx.FlatIndex(D, "cosine"), x)
    got, want = from_dask.search(q, 10), from_numpy.search(q, 10)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.distances, want.distances)
    ids = np.arange(3000) + 7000
    with_ids = ShardedIndex(lambda: sx.FlatIndex(D, "cosine"), client=client)
    with_ids.add(blocks, ids=ids)
    np.testing.assert_array_equal(with_ids.search(q, 10).ids, want.ids + 7000)
    bad = da.from_array(
        np.where(np.arange(3000)[:, None] == 2500, np.nan, x).astype(np.float32), chunks=(700, D)
    )
    with pytest.raises(ValueError, match="NaN"):
        with_ids.add(bad, ids=ids + 10000)  # one block fails: the other blocks are taken back
    assert len(with_ids) == 3000


# ---- persistence ---------------------------------------------------------------------------------
def test_save_load_round_trip(client, data, tmp_path):
    x, q = data
    sharded = ShardedIndex(
        lambda: sx.HNSWIndex(D, "cosine", M=8, ef_construction=40), client=client, n_shards=3
    )
    sharded.add(x[:2000])
    sharded.remove(np.arange(0, 2000, 5))
    sharded.save(tmp_path)
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 4 and "manifest.json" in files
    for mmap in (False, True):
        loaded = ShardedIndex.load(tmp_path, client=client, mmap=mmap)
        assert loaded.n_shards == 3 and len(loaded) == 1600
        np.testing.assert_array_equal(loaded.shard_sizes(), sharded.shard_sizes())
        got, want = loaded.search(q, 10), sharded.search(q, 10)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)
    assert loaded.add(x[2000:2010]).tolist() == list(range(2000, 2010))  # next_id kept
    sharded.add(x[2000:2100])
    sharded.save(tmp_path)  # a second save replaces the files of the first
    assert (
        len(os.listdir(tmp_path)) == 4 and len(ShardedIndex.load(tmp_path, client=client)) == 1700
    )


def test_manifest_and_shard_files_are_validated(client, data, tmp_path):
    x, _ = data
    sharded = _sharded(client, lambda: sx.FlatIndex(D), x[:500])
    sharded.save(tmp_path)
    path = tmp_path / "manifest.json"
    good = json.loads(path.read_text())

    def load_with(manifest, match):
        path.write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
        with pytest.raises(ValueError, match=match):
            ShardedIndex.load(tmp_path, client=client)

    load_with("{not json", "not JSON")
    load_with([1, 2], "JSON object")
    load_with({**good, "extra": 1}, "fields")
    load_with({**good, "version": 99}, "version")
    load_with({**good, "kind": "nope"}, "unknown index kind")
    load_with({**good, "token": "../../etc/passwd"}, "token")
    load_with({**good, "dim": -1}, "dim")
    load_with({**good, "dim": 7}, "dim=24")
    load_with({**good, "shards": []}, "shards")
    load_with({**good, "shards": [{"rows": "1", "bytes": 2}] * 2}, "shard 0")
    load_with({**good, "shards": [{**good["shards"][0], "rows": 1}, good["shards"][1]]}, "rows")
    load_with({**good, "shards": good["shards"][:1] * 2}, "bytes|rows")
    load_with({**good, "next_id": 3}, "next_id")
    swapped = {**good, "shards": good["shards"][::-1]}
    a, b = (tmp_path / f"shard-{s:05d}-{good['token']}.sdx" for s in (0, 1))
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    load_with(swapped, "belong to other shards")
    a.unlink()
    load_with(swapped, "file missing")
    with pytest.raises(ValueError, match="no ShardedIndex manifest"):
        ShardedIndex.load(tmp_path / "nowhere", client=client)


# ---- bad input -------------------------------------------------------------------------------------
def test_bad_arguments(client, data, tmp_path):
    x, q = data
    with pytest.raises(TypeError, match="callable"):
        ShardedIndex(sx.FlatIndex(D), client=client)
    with pytest.raises(TypeError, match="simdex index"):
        ShardedIndex(lambda: "index", client=client)
    full = sx.FlatIndex(D)
    full.add(x[:3])
    with pytest.raises(ValueError, match="empty"):
        ShardedIndex(lambda: full, client=client)
    with pytest.raises(ValueError, match="rerank"):
        ShardedIndex(lambda: sx.PQIndex(D, 4, rerank=str(tmp_path / "r.bin")), client=client)
    with pytest.raises(TypeError, match="Client"):
        ShardedIndex(lambda: sx.FlatIndex(D), client="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="n_shards"):
        ShardedIndex(lambda: sx.FlatIndex(D), client=client, n_shards=0)
    sharded = _sharded(client, lambda: sx.FlatIndex(D), x[:100])
    with pytest.raises(ValueError, match=r"\(n, 24\)"):
        sharded.search(q[:, :5], 3)
    with pytest.raises(ValueError, match="shard_k"):
        sharded.search(q, 10, shard_k=5)
    with pytest.raises(ValueError, match="max_distance"):
        sharded.search(q, 10, max_distance=np.ones(3))
    with pytest.raises(TypeError, match="unexpected keyword"):
        sharded.search(q, 10, nprobe=4)  # FlatIndex has no nprobe: the shard's error comes back
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(sharded)


def test_searches_while_adding_and_removing(client, data):
    x, q = data
    sharded = _sharded(client, lambda: sx.FlatIndex(D), x[:1000])
    errors = []

    def searcher():
        try:
            for _ in range(15):
                sharded.search(q, 5)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    sharded.add(x[1000:2000])
    assert sharded.remove(np.arange(0, 1000)) == 1000
    for t in threads:
        t.join()
    assert not errors
    assert not np.isin(sharded.search(q, 10).ids, np.arange(1000)).any()


# ---- failures -------------------------------------------------------------------------------------
def test_timeout_raises_without_partial_result(client, data, monkeypatch):
    x, q = data
    sharded = _sharded(client, lambda: sx.FlatIndex(D), x[:200])
    search = _Shard.search

    def slow_on_shard_1(self, *args):
        if self.number == 1:
            time.sleep(1.0)
        return search(self, *args)

    monkeypatch.setattr(_Shard, "search", slow_on_shard_1)  # in-process workers share the class
    with pytest.raises(
        ShardUnavailableError, match="shard 1 .* did not answer within the timeout"
    ) as info:
        sharded.search(q, 5, timeout=0.2)
    assert info.value.shard == 1 and info.value.worker == sharded.workers[1]


def _slow_searches() -> None:
    """Run on a worker process: every FlatIndex search there takes 3 s more."""
    import simdex.flat

    search = simdex.flat.FlatIndex.search

    def slow(self, *args, **kwargs):
        time.sleep(3.0)
        return search(self, *args, **kwargs)

    simdex.flat.FlatIndex.search = slow


def test_worker_lost_mid_search_raises(data):
    x, q = data
    # the scheduler gives up on the dead worker after 5 s, not the default 30 s
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "5s"}),
        _cluster(True) as cluster,
        distributed.Client(cluster) as client,
    ):
        sharded = _sharded(client, lambda: sx.FlatIndex(D), x[:500])
        assert len(sharded) == 500
        victim = sharded.workers[0]
        client.run(_slow_searches, workers=[victim])
        pid = client.run(os.getpid, workers=[victim])[victim]
        outcome = {}

        def search():
            try:
                outcome["result"] = sharded.search(q, 5)
            except Exception as exc:  # noqa: BLE001
                outcome["error"] = exc

        t = threading.Thread(target=search)
        t.start()
        time.sleep(0.8)  # the search is waiting for the slowed shard
        os.kill(pid, signal.SIGKILL)
        t.join(30)
        assert not t.is_alive()
        assert "result" not in outcome
        assert isinstance(outcome["error"], ShardUnavailableError), outcome
        assert outcome["error"].shard == 0 and "no partial result" in str(outcome["error"]).lower()
        for call in (
            lambda: sharded.search(q, 5),
            lambda: len(sharded),
            lambda: sharded.remove(np.arange(10)),
        ):
            with pytest.raises(ShardUnavailableError, match="worker was lost"):
                call()


def test_in_process_workers_do_not_share_the_template(data):
    """With the default in-process transport Dask hands actors the client's own objects:
    every shard must still get its own trained index (they once all shared one)."""
    x, q = data
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        sharded = ShardedIndex(functools.partial(sx.PQIndex, D, 4, rerank="memory"), client=c)
        sharded.train(x[:1000])
        sharded.add(x)
        sizes = sharded.shard_sizes()
        assert sum(sizes) == len(sharded) == x.shape[0] and min(sizes) > 0
        ids = sharded.search(q, 10).ids
        assert all(len(set(row)) == len(row) for row in ids.tolist())
