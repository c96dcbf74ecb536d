"""simdex.multivector: chamfer, MuveraEncoder, MultiVectorIndex, muvera_diagnostic.

Exact scores against float64 NumPy at every SIMD level (tails of the lane blocks, row tiles
and dimensions), encodings against a NumPy float64 re-implementation and identical across
levels and thread counts, the FDE estimate against Chamfer on random sets, index recall
against brute-force Chamfer and the index protocol (ids, filter, remove, persistence,
concurrency).
"""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import simdex as sx
from simdex import _format
from simdex import _core, _storage
from simdex.kernels import available_levels, force_simd
from simdex.multivector import carve_queries

U = 2.0 ** -24
LEVELS = available_levels()


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered_sets(rng, n, dim, lo, hi, centres):
    out = []
    for _ in range(n):
        m = int(rng.integers(lo, hi + 1))
        c = centres[rng.integers(0, centres.shape[0], m)]
        out.append(unit(c + 0.35 * rng.standard_normal((m, dim)).astype(np.float32)))
    return out


def chamfer_ref(queries, docs):
    """float64 Chamfer and a bound on the float32 error of each entry."""
    out = np.zeros((len(queries), len(docs)))
    bound = np.zeros_like(out)
    for i, q in enumerate(queries):
        q64 = q.astype(np.float64)
        for j, p in enumerate(docs):
            p64 = p.astype(np.float64)
            out[i, j] = (q64 @ p64.T).max(axis=1).sum()
            bound[i, j] = (np.abs(q64) @ np.abs(p64).T).max(axis=1).sum()
    return out, bound


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(7)
    dim = 24
    centres = rng.standard_normal((30, dim)).astype(np.float32)
    docs = clustered_sets(rng, 400, dim, 2, 16, centres)
    queries = clustered_sets(rng, 24, dim, 1, 8, centres)
    exact, _ = chamfer_ref(queries, docs)
    return dim, docs, queries, exact


SMALL = dict(k_sim=3, d_proj=8, r_reps=12)


# ---- chamfer ------------------------------------------------------------------------------
@pytest.mark.parametrize("level", LEVELS)
@settings(max_examples=25, deadline=None)
@given(d=st.sampled_from([1, 2, 3, 7, 15, 16, 17, 31, 33, 65, 129]), seed=st.integers(0, 2**31 - 1))
def test_chamfer_matches_float64(level, d, seed):
    rng = np.random.default_rng(seed)
    # query sets across lane-block tails (4 / 8 / 16 lanes), documents across row tiles
    queries = [rng.uniform(-2, 2, (int(m), d)).astype(np.float32) for m in rng.choice([1, 3, 7, 8, 9, 16, 17, 33], 3)]
    docs = [rng.uniform(-2, 2, (int(m), d)).astype(np.float32) for m in rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 25], 5)]
    ref, bound = chamfer_ref(queries, docs)
    with force_simd(level):
        got = sx.chamfer(queries, docs)
        half = [p.astype(np.float16) for p in docs]
        got16 = sx.chamfer(queries, half)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_array_less(np.abs(got - ref), 2 * d * U * bound + 1e-6)
    ref16, bound16 = chamfer_ref(queries, [p.astype(np.float32) for p in half])
    np.testing.assert_array_less(np.abs(got16 - ref16), 2 * d * U * bound16 + 1e-6)


@pytest.mark.parametrize("level", LEVELS)
def test_chamfer_int8_tokens(level):
    rng = np.random.default_rng(3)
    d = 19
    docs = [rng.standard_normal((int(m), d)).astype(np.float32) for m in (1, 5, 9, 14)]
    queries = [rng.standard_normal((int(m), d)).astype(np.float32) for m in (1, 4, 17)]
    tokens = np.concatenate(docs)
    offsets = np.cumsum([0] + [p.shape[0] for p in docs]).astype(np.int64)
    lo, scale = _storage.train_int8(tokens)
    codes = _storage.encode(tokens, "int8", lo, scale)
    decoded = lo.astype(np.float64) + scale.astype(np.float64) * codes
    ref, bound = chamfer_ref(queries, [decoded[offsets[i]:offsets[i + 1]] for i in range(len(docs))])
    qt = np.concatenate(queries)
    qo = np.cumsum([0] + [q.shape[0] for q in queries]).astype(np.int64)
    with force_simd(level):
        got = _core.chamfer(qt, qo, codes, offsets, d, "int8", lo, scale)
    np.testing.assert_array_less(np.abs(got - ref), 4 * d * U * bound + 1e-5)


def test_chamfer_input_forms(corpus):
    dim, docs, queries, exact = corpus
    tokens = np.concatenate(docs[:50])
    offsets = np.cumsum([0] + [p.shape[0] for p in docs[:50]])
    csr = sx.chamfer(queries, (tokens, offsets))
    np.testing.assert_allclose(csr, exact[:, :50], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(csr, sx.chamfer(queries, docs[:50]))
    one = sx.chamfer(queries[0], docs[:50])  # a single query set gives one row
    assert one.shape == (50,)
    np.testing.assert_array_equal(one, csr[0])
    assert sx.chamfer(queries, docs[3]).shape == (len(queries),)
    np.testing.assert_array_equal(sx.chamfer(queries, docs[:50], threads=1), sx.chamfer(queries, docs[:50], threads=2))
    # float64 input is converted once
    np.testing.assert_allclose(sx.chamfer([q.astype(np.float64) for q in queries], docs[:50]), csr, rtol=1e-6)


@pytest.mark.parametrize("bad, error, match", [
    ([], ValueError, "empty"),
    ([np.zeros((0, 4), np.float32)], ValueError, "no tokens"),
    ([np.ones((2, 4), np.float32), np.ones((2, 5), np.float32)], ValueError, "dimension 5"),
    ([np.full((2, 4), np.nan, np.float32)], ValueError, "NaN"),
    ([np.ones((2, 4), np.int32)], TypeError, "floating-point"),
    ([np.ones(4, np.float32)], ValueError, "2-D"),
    ((np.ones((3, 4), np.float32), np.array([0, 2, 1, 3])), ValueError, "ascending"),
    ((np.ones((3, 4), np.float32), np.array([0, 2])), ValueError, "0 to the 3"),
    ((np.ones((3, 4), np.float32), np.array([0, 0, 3])), ValueError, "no tokens"),
    ((np.ones((3, 4), np.float32), np.array([0.0, 3.0])), TypeError, "integers"),
    ("text", TypeError, "list of"),
])
def test_token_sets_bad_input(bad, error, match):
    good = [np.ones((2, 4), np.float32)]
    with pytest.raises(error, match=match):
        sx.chamfer(bad, good)
    with pytest.raises(error, match=match):
        sx.chamfer(good, bad)
    with pytest.raises(error, match=match):
        sx.MuveraEncoder(4).encode_documents(bad)


def test_encoder_dimension_checked():
    with pytest.raises(ValueError, match="dimension"):
        sx.MuveraEncoder(8).encode_queries([np.ones((2, 4), np.float32)])
    with pytest.raises(ValueError, match="k_sim"):
        sx.MuveraEncoder(8, k_sim=17)
    with pytest.raises(ValueError, match="projection"):
        sx.MuveraEncoder(8, projection="gaussian")
    with pytest.raises(TypeError, match="fill_empty"):
        sx.MuveraEncoder(8, fill_empty=1)


# ---- MUVERA encodings ---------------------------------------------------------------------
def fde_ref(enc: sx.MuveraEncoder, sets, documents: bool) -> np.ndarray:
    """The encoding, re-implemented in float64 NumPy from the encoder's random draws."""
    k, p, r = enc.k_sim, enc.d_proj, enc.r_reps
    w = enc._matrix.astype(np.float64).reshape(enc.dim, r, k + p)
    rows = []
    for s in sets:
        y = np.einsum("td,drc->trc", s.astype(np.float64), w)
        codes = ((y[:, :, :k] > 0) * (1 << np.arange(k))).sum(-1)  # (t, r)
        out = np.zeros((r, 1 << k, p))
        for rep in range(r):
            for b in range(1 << k):
                members = codes[:, rep] == b
                if members.any():
                    v = y[members, rep, k:].sum(0)
                    out[rep, b] = v / members.sum() if documents else v
                elif documents and enc.fill_empty:
                    bits = [bin(int(c) ^ b).count("1") for c in codes[:, rep]]
                    out[rep, b] = y[int(np.argmin(bits)), rep, k:]
        raw = out.ravel() / np.sqrt(r)
        if enc.final_dim is not None:
            final = np.zeros(enc.final_dim)
            np.add.at(final, enc._final_index, enc._final_sign * raw)
            raw = final
        rows.append(raw)
    return np.array(rows)


@pytest.mark.parametrize("params", [dict(k_sim=3, d_proj=5, r_reps=4), dict(k_sim=1, d_proj=17, r_reps=3),
                                    dict(k_sim=4, d_proj=8, r_reps=2, projection="ams"),
                                    dict(k_sim=2, d_proj=6, r_reps=3, final_dim=37),
                                    dict(k_sim=3, d_proj=4, r_reps=2, fill_empty=False),
                                    dict(k_sim=4, d_proj=8, r_reps=3, fill_empty=False)])
def test_fde_matches_numpy_reference(params):
    rng = np.random.default_rng(11)
    dim = 13
    sets = [rng.standard_normal((int(m), dim)).astype(np.float32) for m in (1, 2, 3, 5, 8, 21)]
    enc = sx.MuveraEncoder(dim, seed=5, **params)
    for documents, got in ((True, enc.encode_documents(sets)), (False, enc.encode_queries(sets))):
        ref = fde_ref(enc, sets, documents)
        assert got.shape == (len(sets), enc.output_dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_encoder_pickles(corpus):
    # the draws travel; the C++ encoder (a copy of them) is rebuilt on the other side
    dim, docs, queries, _ = corpus
    enc = sx.MuveraEncoder(dim, k_sim=2, d_proj=5, r_reps=3, final_dim=17, seed=4)
    for twin in (pickle.loads(pickle.dumps(enc)), copy.deepcopy(enc)):
        np.testing.assert_array_equal(twin.encode_documents(docs[:20]), enc.encode_documents(docs[:20]))
        np.testing.assert_array_equal(twin.encode_queries(queries), enc.encode_queries(queries))
        assert repr(twin) == repr(enc)


def test_fde_identical_across_levels_and_threads(corpus):
    dim, docs, queries, _ = corpus
    # projection widths through every column tile of every level (16, 8, 4, single columns)
    for params in (dict(k_sim=3, d_proj=16, r_reps=5, fill_empty=False), dict(k_sim=3, d_proj=4, r_reps=7),
                   dict(k_sim=2, d_proj=29, r_reps=3, projection="ams")):
        other = sx.MuveraEncoder(dim, **params)
        ref_d, ref_q = other.encode_documents(docs, threads=1), other.encode_queries(queries, threads=1)
        for level in LEVELS:
            with force_simd(level):
                assert np.array_equal(other.encode_documents(docs, threads=2), ref_d)
                assert np.array_equal(other.encode_queries(queries, threads=2), ref_q)
    enc = sx.MuveraEncoder(dim, k_sim=4, d_proj=8, r_reps=6, final_dim=200)
    base_d, base_q = enc.encode_documents(docs, threads=1), enc.encode_queries(queries, threads=1)
    for level in LEVELS:
        with force_simd(level):
            for threads in (1, 2, 3):
                assert np.array_equal(enc.encode_documents(docs, threads=threads), base_d)
                assert np.array_equal(enc.encode_queries(queries, threads=threads), base_q)
    # the same seed draws the same encoder; another seed another one
    assert np.array_equal(sx.MuveraEncoder(dim, k_sim=4, d_proj=8, r_reps=6, final_dim=200).encode_queries(queries), base_q)
    assert not np.array_equal(sx.MuveraEncoder(dim, k_sim=4, d_proj=8, r_reps=6, final_dim=200, seed=1)
                              .encode_queries(queries), base_q)
    single = enc.encode_documents(docs[0])
    assert single.shape == (enc.output_dim,)
    np.testing.assert_array_equal(single, base_d[0])


def test_fde_approximates_chamfer():
    """MUVERA Theorem 2.1: for unit vectors, Chamfer/|Q| - eps <= <F_q(Q), F_doc(P)>/|Q| <=
    Chamfer/|Q| + eps w.h.p., eps shrinking as k_sim grows; averaging repetitions
    concentrates the estimate. Without an inner projection the upper side holds exactly (each
    q meets an average of points of P, or one point of P)."""
    rng = np.random.default_rng(2024)
    dim = 16
    centres = rng.standard_normal((6, dim)).astype(np.float32)
    docs = clustered_sets(rng, 60, dim, 4, 10, centres)
    queries = clustered_sets(rng, 20, dim, 2, 6, centres)
    exact, _ = chamfer_ref(queries, docs)
    sizes = np.array([q.shape[0] for q in queries])[:, None]

    def error(**params):
        enc = sx.MuveraEncoder(dim, r_reps=50, seed=3, **params)
        approx = enc.encode_queries(queries) @ enc.encode_documents(docs).T
        return approx, (approx - exact) / sizes

    approx, err = error(k_sim=5, d_proj=16, projection="ams")
    assert np.quantile(np.abs(err), 0.95) < 0.4, np.quantile(np.abs(err), 0.95)
    assert np.quantile(err, 0.99) < 0.05  # the upper side holds up to projection noise
    # ranking quality: per query, the FDE estimate orders documents like Chamfer
    corr = [np.corrcoef(approx[i], exact[i])[0, 1] for i in range(len(queries))]
    assert np.median(corr) > 0.92, np.median(corr)
    # eps shrinks with k_sim (finer partitions), the dense projection agrees
    coarse = np.abs(error(k_sim=2, d_proj=16, projection="ams")[1]).mean()
    fine = np.abs(error(k_sim=6, d_proj=16, projection="ams")[1]).mean()
    dense = np.abs(error(k_sim=5, d_proj=32)[1]).mean()
    assert fine * 1.5 < coarse and abs(dense - np.abs(err).mean()) < 0.05
    # one repetition of two buckets is far worse (the test can fail)
    weak = sx.MuveraEncoder(dim, k_sim=1, d_proj=2, r_reps=1, seed=3)
    weak_err = (weak.encode_queries(queries) @ weak.encode_documents(docs).T - exact) / sizes
    assert np.abs(weak_err).mean() > 1.5 * np.abs(err).mean()
    # no inner projection (identity): every term is <q, average or one point of P> <= max_p <q, p>
    none = sx.MuveraEncoder(dim, k_sim=3, d_proj=dim, r_reps=5, projection="ams", seed=3)
    none._matrix.reshape(dim, 5, 3 + dim)[:, :, 3:] = np.eye(dim, dtype=np.float32)[:, None, :]
    none._make_core()  # the C++ encoder holds a copy of the draws
    upper = none.encode_queries(queries) @ none.encode_documents(docs).T
    assert (upper <= exact + 1e-4).all()


# ---- diagnostic ---------------------------------------------------------------------------
def test_muvera_diagnostic(corpus):
    dim, docs, queries, exact = corpus
    enc = sx.MuveraEncoder(dim, **SMALL)
    report = sx.muvera_diagnostic(docs, queries, encoder=enc, k=10, n_candidates=(10, 50, 400))
    values = list(report.recall.values())
    assert values == sorted(values) and values[-1] == 1.0  # N = all documents finds everything
    # the recall is the one computed by hand
    truth = np.argsort(-exact, axis=1, kind="stable")[:, :10]
    order = np.argsort(-(enc.encode_queries(queries) @ enc.encode_documents(docs).T), axis=1, kind="stable")
    by_hand = np.mean([np.isin(truth[i], order[i, :50]).mean() for i in range(len(queries))])
    assert report.recall[50] == pytest.approx(by_hand)
    # the paper's Recall@N: the fraction of queries whose exact nearest document is in the top-N
    for n in (10, 50):
        nearest_found = np.mean([truth[i, 0] in order[i, :n] for i in range(len(queries))])
        assert report.recall_1nn[n] == pytest.approx(nearest_found)
    assert report.recall_1nn[400] == 1.0 and 0.0 < report.recall_1nn[10] < 1.0
    assert "N=50" in str(report) and "1-NN" in str(report) and report.n_documents == len(docs)
    small = sx.muvera_diagnostic(docs, queries, encoder=enc, max_documents=100, max_queries=5)
    assert small.n_documents == 100 and small.n_queries == 5
    with pytest.raises(ValueError, match="encoder.dim"):
        sx.muvera_diagnostic(docs, queries, encoder=sx.MuveraEncoder(dim + 1))


# ---- index --------------------------------------------------------------------------------
def recall(ids, exact, k=10):
    truth = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    return np.mean([len(set(ids[i]) & set(truth[i])) / k for i in range(ids.shape[0])])


# every encoding index with float16 tokens, every token storage with HNSW
INDEXES = [("hnsw", {}, "float16"), ("hnsw", {}, "float32"), ("hnsw", {}, "int8"), ("flat", {}, "int8"),
           ("flat", {}, "float16"), ("pq", {"m": 48, "nbits": 4}, "float16"),
           ("ivfpq", {"nlist": 4, "m": 48, "nbits": 4}, "float16")]


@pytest.mark.parametrize("kind, params, tokens", INDEXES)
def test_index_recall_and_scores(corpus, kind, params, tokens):
    dim, docs, queries, exact = corpus
    index = sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, **SMALL), index=kind, tokens=tokens, **params)
    if kind in ("pq", "ivfpq") or tokens == "int8":
        index.train(docs)
    assert (index.add(docs) == np.arange(len(docs))).all()
    search = {"nprobe": 4} if kind == "ivfpq" else {}
    dist, ids = index.search(queries, 10, candidates=150, **search)
    assert recall(ids, exact) >= 0.85
    # every candidate re-ranked: exact up to the token storage's precision
    dist_all, ids_all = index.search(queries, 10, candidates=len(docs), **search)
    if kind in ("hnsw", "flat"):
        assert recall(ids_all, exact) >= (1.0 if tokens != "int8" else 0.97)
    # the returned distances are -Chamfer of the returned ids, ascending
    stored = index.reconstruct(np.unique(ids_all))
    by_id = dict(zip(np.unique(ids_all).tolist(), stored))
    for i in range(len(queries)):
        expect = -chamfer_ref([queries[i]], [by_id[j] for j in ids_all[i]])[0][0]
        np.testing.assert_allclose(dist_all[i], expect, rtol=1e-4, atol=1e-3)
        assert (np.diff(dist_all[i]) >= 0).all()


def composed_search(index, queries, k, c, **inner_params):
    """The pipeline's stages by hand: encode, the encoding index's own search, exact
    Chamfer of the candidates (float64, from the stored tokens), top-k (-Chamfer, ids)."""
    fde = index.encoder.encode_queries(queries)
    _, cand = index._inner.search(fde, c, **inner_params)  # slots of the multi-vector index
    dist, ids = [], []
    for i, q in enumerate(queries):
        slots = cand[i][cand[i] >= 0]
        found = index._idt.ids_of(slots)
        scores = chamfer_ref([q], index.reconstruct(found))[0][0]
        order = np.argsort(-scores, kind="stable")[:k]
        dist.append(-scores[order])
        ids.append(found[order])
    return np.array(dist), np.array(ids)


@pytest.mark.parametrize("kind, params, search", [
    ("hnsw", {"M": 8}, {}), ("flat", {}, {}), ("pq", {"m": 24, "nbits": 4}, {}),
    ("pq", {"m": 24, "nbits": 8}, {}), ("pq", {"m": 24, "nbits": 4, "rerank": "memory"}, {"rerank_k": 90}),
    ("ivfpq", {"nlist": 4, "m": 24, "nbits": 4}, {"nprobe": 2})])
def test_pipeline_matches_its_stages(corpus, kind, params, search):
    # search is one C++ call (encode, candidates, re-rank, ids) for hnsw / flat / pq: the same
    # candidates and scores as the stages run one by one through the public pieces
    dim, docs, queries, _ = corpus
    index = sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, **SMALL), index=kind, tokens="float32", **params)
    if kind in ("pq", "ivfpq"):
        index.train(docs)
    index.add(docs, ids=np.arange(len(docs)) + 7)
    index.remove([7, 9, 30])
    dist, ids = index.search(queries, 10, candidates=40, **search)
    inner = dict(search, ef=max(index.ef, 40)) if kind == "hnsw" else search  # the default window
    ref_d, ref_ids = composed_search(index, queries, 10, 40, **inner)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-4, atol=1e-4)
    assert np.mean(ids == ref_ids) >= 0.98  # ties may swap
    assert not np.isin(ids, [7, 9, 30]).any()
    # one filter per query (one call for hnsw / flat) = each query with its own filter
    per_query = [np.arange(7 + i % 3, 7 + len(docs), 3) for i in range(len(queries))]
    f_dist, f_ids = index.search(queries, 5, candidates=40, filter=per_query, **search)
    for i in (0, 1, 2, len(queries) - 1):
        one = index.search(queries[i], 5, candidates=40, filter=per_query[i], **search)
        np.testing.assert_array_equal(f_ids[i], one.ids)
        np.testing.assert_allclose(f_dist[i], one.distances, rtol=1e-6)
        assert np.isin(f_ids[i][f_ids[i] >= 0], per_query[i]).all()
    with pytest.raises(TypeError, match="does not take"):
        index.search(queries, 3, nprobes=2)


def test_index_protocol(corpus, tmp_path):
    dim, docs, queries, exact = corpus
    index = sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, **SMALL), index="flat", candidates=400)
    ids = np.arange(len(docs), dtype=np.int64) * 3 + 100
    index.add(docs[:300], ids=ids[:300])
    index.add(docs[300:], ids=ids[300:])
    assert len(index) == len(docs) and int(ids[5]) in index and 5 not in index
    dist, got = index.search(queries, 5)
    # every document re-ranked (candidates=400): exact up to float16 tokens (ties may swap ids)
    np.testing.assert_allclose(dist, -np.sort(exact, axis=1)[:, ::-1][:, :5], rtol=2e-3, atol=2e-3)
    truth = ids[np.argsort(-exact, axis=1, kind="stable")[:, :5]]
    assert np.mean([len(set(got[i]) & set(truth[i])) for i in range(len(queries))]) >= 4.9
    # duplicated and clashing ids
    with pytest.raises(ValueError, match="unique"):
        index.add(docs[:2], ids=[1, 1])
    with pytest.raises(ValueError):
        index.add(docs[:1], ids=[int(ids[0])])
    assert len(index) == len(docs)
    # filter: only allowed ids; a mask by id; one filter per query
    allowed = ids[::7]
    _, f_ids = index.search(queries, 5, filter=allowed)
    assert np.isin(f_ids[f_ids >= 0], allowed).all()
    mask = np.zeros(ids.max() + 1, dtype=bool)
    mask[allowed] = True
    np.testing.assert_array_equal(index.search(queries, 5, filter=mask).ids, f_ids)
    per_query = [ids[i::5] for i in range(len(queries))]
    _, pq_ids = index.search(queries, 3, filter=per_query)
    for i in range(len(queries)):
        assert np.isin(pq_ids[i], per_query[i]).all()
    assert (index.search(queries, 3, filter=np.array([7], dtype=np.int64)).ids == -1).all()
    # max_distance: drop results with Chamfer below the threshold
    limit = float(np.median(dist[:, 0]))
    md_dist, md_ids = index.search(queries, 5, max_distance=limit)
    assert (md_dist[md_ids >= 0] <= limit).all() and (md_ids == -1).any()
    lims, r_dist, r_ids = index.range_search(queries, limit)
    assert lims.shape == (len(queries) + 1,) and (r_dist <= limit).all()
    slot_of = {int(v): s for s, v in enumerate(ids)}
    for i in range(len(queries)):
        found = {slot_of[int(v)] for v in r_ids[lims[i]:lims[i + 1]]}
        assert set(np.flatnonzero(-exact[i] <= limit - 2e-3)) <= found  # float16 tokens: a small band
        assert found <= set(np.flatnonzero(-exact[i] <= limit + 2e-3))
    # remove: never returned again
    gone = got[:, 0]
    assert index.remove(np.concatenate([gone, [10**9]])) == len(np.unique(gone))
    _, after = index.search(queries, 10)
    assert not np.isin(after, gone).any()
    assert len(index) == len(docs) - len(np.unique(gone))
    with pytest.raises(KeyError):
        index.reconstruct([int(gone[0])])
    np.testing.assert_allclose(index.reconstruct([int(ids[1])])[0], docs[1], atol=1e-3)
    # a single query set gives 1-D results
    one = index.search(queries[0], 4)
    assert one.ids.shape == (4,) and one.distances.shape == (4,)
    # persistence: file, mmap, pickle keep results
    before = index.search(queries, 10)
    path = tmp_path / "mv.sdx"
    index.save(path)
    for loaded in (sx.load(path), sx.load(path, mmap=True), pickle.loads(pickle.dumps(index))):
        assert isinstance(loaded, sx.MultiVectorIndex) and len(loaded) == len(index)
        res = loaded.search(queries, 10)
        np.testing.assert_array_equal(res.ids, before.ids)
        np.testing.assert_array_equal(res.distances, before.distances)
    reloaded = sx.load(path)
    new = reloaded.add(docs[:3])
    assert (new == ids.max() + 1 + np.arange(3)).all()  # sequential ids continue after the largest
    assert "MultiVectorIndex(dim=24" in repr(index) and index.nbytes > 0


def test_index_tokens_in_a_file(corpus, tmp_path):
    dim, docs, queries, exact = corpus
    path = tmp_path / "tokens.bin"
    index = sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, **SMALL), tokens="float16",
                                rerank_path=path, M=8, ef_construction=40)
    index.add(docs[:200])
    index.add(docs[200:])
    assert path.stat().st_size == sum(p.shape[0] for p in docs) * dim * 2
    memory = sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, **SMALL), tokens="float16",
                                 M=8, ef_construction=40)
    memory.add(docs)
    a, b = index.search(queries, 10, candidates=len(docs)), memory.search(queries, 10, candidates=len(docs))
    np.testing.assert_array_equal(a.distances, b.distances)
    index.save(tmp_path / "mv.sdx")
    with pytest.raises(ValueError, match="rerank="):  # the index file does not name its side file
        sx.load(tmp_path / "mv.sdx")
    loaded = sx.load(tmp_path / "mv.sdx", rerank=path)
    np.testing.assert_array_equal(loaded.search(queries, 10, candidates=len(docs)).ids, a.ids)
    assert index.nbytes < memory.nbytes


def test_index_defaults():
    # MultiVectorIndex's own encoder leaves empty document buckets empty (MuveraEncoder's
    # signature default fills them) and re-ranks 150 candidates
    index = sx.MultiVectorIndex(16)
    enc = index.encoder
    assert (enc.k_sim, enc.d_proj, enc.r_reps, enc.fill_empty) == (3, 16, 40, False)
    assert index.candidates == 150 and sx.MuveraEncoder(16).fill_empty


def test_index_bad_input(corpus):
    dim, docs, queries, _ = corpus
    with pytest.raises(ValueError, match="index"):
        sx.MultiVectorIndex(dim, index="annoy")
    with pytest.raises(ValueError, match="tokens"):
        sx.MultiVectorIndex(dim, tokens="bfloat16")
    default_pq = sx.MultiVectorIndex(dim, index="pq")  # 4-bit fast-scan, sub-spaces of 8 values
    assert (default_pq._inner.m, default_pq._inner.nbits) == (default_pq.encoder.output_dim // 8, 4)
    assert sx.MultiVectorIndex(dim, index="pq", m=16, nbits=8)._inner.nbits == 8
    with pytest.raises(ValueError, match="divisible by 8"):
        sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, k_sim=1, d_proj=3, r_reps=1), index="pq")
    with pytest.raises(ValueError, match="needs nlist="):
        sx.MultiVectorIndex(dim, index="ivfpq")
    with pytest.raises(ValueError, match="encoder.dim"):
        sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim + 1))
    with pytest.raises(ValueError, match="metric"):
        sx.MultiVectorIndex(dim, metric="l2")
    pq = sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, **SMALL), index="pq", m=8)
    with pytest.raises(ValueError, match="train"):
        pq.add(docs)
    index = sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, **SMALL), index="flat")
    assert (index.search(queries, 3).ids == -1).all()  # empty index: padded
    index.add(docs)
    for bad, error in (([np.ones((2, dim + 1), np.float32)], ValueError), ([np.ones((0, dim), np.float32)], ValueError),
                       ([np.full((2, dim), np.inf, np.float32)], ValueError), ([np.ones((2, dim), np.int64)], TypeError)):
        with pytest.raises(error):
            index.search(bad, 3)
        with pytest.raises(error):
            index.add(bad)
    with pytest.raises(ValueError, match="k"):
        index.search(queries, 0)
    with pytest.raises(ValueError, match="ef applies"):
        index.search(queries, 3, ef=10)
    assert len(index) == len(docs)


def test_ball_carving(corpus):
    dim, docs, queries, exact = corpus
    tokens = np.concatenate(queries)
    offsets = np.cumsum([0] + [q.shape[0] for q in queries]).astype(np.int64)
    same_t, same_o = carve_queries(tokens, offsets, np.inf)  # nothing merges
    np.testing.assert_array_equal(same_o, offsets)
    np.testing.assert_allclose(same_t, tokens)
    carved_t, carved_o = carve_queries(tokens, offsets, 0.5)
    assert carved_o[-1] < offsets[-1]
    np.testing.assert_allclose(carved_t.sum(0), tokens.sum(0), rtol=1e-4, atol=1e-4)  # clusters are sums
    index = sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, **SMALL), index="flat")
    index.add(docs)
    exact_ids = index.search(queries, 10, candidates=len(docs)).ids
    np.testing.assert_array_equal(index.search(queries, 10, candidates=len(docs), carve=np.inf).ids, exact_ids)
    assert recall(index.search(queries, 10, candidates=len(docs), carve=0.8).ids, exact) >= 0.8


def carve_ref(tokens, offsets, tau):
    """Ball carving in float64 NumPy: greedy in token order, clusters summed."""
    out, counts = [], []
    for i in range(len(offsets) - 1):
        q = tokens[offsets[i]:offsets[i + 1]].astype(np.float64)
        free = np.ones(len(q), dtype=bool)
        sums = []
        for c in range(len(q)):
            if free[c]:
                members = free & (q @ q[c] >= tau)
                members[c] = True
                free &= ~members
                sums.append(q[members].sum(axis=0))
        out.extend(sums)
        counts.append(len(sums))
    return np.array(out), np.cumsum([0] + counts)


@pytest.mark.parametrize("tau", [-np.inf, 0.0, 0.3, 0.6, 2.0])
def test_ball_carving_matches_reference(tau):
    rng = np.random.default_rng(5)
    sizes = [1, 2, 5, 9, 17]
    tokens = rng.standard_normal((sum(sizes), 13)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    offsets = np.cumsum([0] + sizes).astype(np.int64)
    got_t, got_o = carve_queries(tokens, offsets, tau)
    ref_t, ref_o = carve_ref(tokens, offsets, tau)
    np.testing.assert_array_equal(got_o, ref_o)
    np.testing.assert_allclose(got_t, ref_t, rtol=1e-5, atol=1e-5)
    if tau == -np.inf:  # one cluster per query: its sum
        assert (np.diff(got_o) == 1).all()


def test_concurrent_add_remove_search(corpus):
    dim, docs, queries, _ = corpus
    index = sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, **SMALL), M=8, ef_construction=32)
    index.add(docs[:100])
    errors = []

    def writer(lo, hi):
        try:
            for i in range(lo, hi, 10):
                added = index.add(docs[i:i + 10], ids=np.arange(i, i + 10) + 10000)
                index.remove(added[:2])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader():
        try:
            for _ in range(15):
                _, ids = index.search(queries[:4], 5)
                assert ids.shape == (4, 5)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(100, 250)), threading.Thread(target=writer, args=(250, 400)),
               threading.Thread(target=reader), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(index) == 100 + 300 - 60
    removed = np.concatenate([np.arange(i, i + 2) + 10000 for i in range(100, 400, 10)])
    assert not np.isin(index.search(queries, 20, candidates=400).ids, removed).any()


def test_crafted_state_is_refused(corpus):
    dim, docs, _, _ = corpus
    index = sx.MultiVectorIndex(dim, encoder=sx.MuveraEncoder(dim, **SMALL), index="flat")
    index.add(docs[:20])
    params, arrays = index._state()

    def refused(change, match):
        a = {name: np.array(v) for name, v in arrays.items()}
        p = pickle.loads(pickle.dumps(params))
        change(p, a)
        with pytest.raises(ValueError, match=match):
            sx.MultiVectorIndex._from_state(_format.Fields("multivector", p, a, "test"))

    def descending(p, a):
        a["token_offsets"][3], a["token_offsets"][4] = a["token_offsets"][4], a["token_offsets"][3] - 1

    refused(descending, "token_offsets")
    refused(lambda p, a: a.update(token_offsets=a["token_offsets"][:-1]), "token")
    refused(lambda p, a: a.update(fde_matrix=a["fde_matrix"][:, :-1]), "fde_matrix")
    refused(lambda p, a: a["fde_matrix"].__setitem__((0, 0), np.nan), "NaN or infinite")
    refused(lambda p, a: p["encoder"].update(dim=dim + 1), "fde_matrix|dimension")
    refused(lambda p, a: p.update(index="annoy"), "index")
