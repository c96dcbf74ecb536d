"""Multi-vector retrieval on the dev set: MUVERA encodings, exact Chamfer, MultiVectorIndex.

    PYTHONPATH=build-dev/pkg python bench/bench_muvera.py [--data PATH] [--queries N]
        [--parts kernel,fde,encode,search] [--repeat R]

Data: ../shared/data/minilm-mv-dev-10k.hdf5 (10,000 documents as sets of 128-d MiniLM token
vectors, float16; 500 queries; exact Chamfer top-100). Parts:

- kernel : exact brute-force Chamfer of queries against all documents: simdex.chamfer (float16
           and float32 tokens), NumPy (one BLAS GEMM per query over all tokens + reduceat
           max per document), NumKong maxsim_packed (documents packed once; one call per pair)
- fde    : FDE recall@N for several (k_sim, d_proj, r_reps), two definitions: the fraction of
           the exact Chamfer top-10 found in the top-N, and the MUVERA paper's Recall@N (the
           fraction of queries whose exact Chamfer 1-NN is in the top-N); next
           to the single-vector heuristic with exact token search (every document token in one
           flat index): the paper's form (candidates = union of the documents of each query
           token's k' nearest tokens) and a stronger ranked form (documents scored by the sum
           over query tokens of their best hit; top N)
- encode : documents encoded per second: simdex MuveraEncoder vs fastembed's Muvera (same
           k_sim, d_proj, r_reps; fastembed on a sample of documents, one call per document)
- search : MultiVectorIndex (HNSW or 4-bit PQ fast-scan over the encodings) recall@10 against
           exact Chamfer (all --queries) vs QPS (the first 100 queries), each timing
           interleaved with one of exact brute force (simdex.chamfer + top-10); one thread
           everywhere (QPS per core), medians of `repeat` pairs

Timings are medians of CPU time (time.process_time: the process's time on the cores, robust
to other jobs on a shared box; with threads=1 it is the time on one core; NumPy's BLAS may use
more threads and is charged for all of them), wall time only where marked. Compare ratios
within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import simdex as sx


def load(path: str, nq: int, suffix: str = ""):
    import h5py

    with h5py.File(path) as f:
        tokens16 = f["doc_tokens"][:]
        offsets = f["doc_offsets"][:].astype(np.int64)
        qt = f["query_tokens" + suffix][:].astype(np.float32)
        qo = f["query_offsets" + suffix][:].astype(np.int64)
        truth = f["neighbors" + suffix][:]
    nq = min(nq, qo.shape[0] - 1)
    qt, qo = qt[: qo[nq]], qo[: nq + 1]
    return tokens16, offsets, qt, qo, truth[:nq]


def median_time(fn, repeat: int, clock=time.process_time) -> tuple[float, object]:
    """Median over `repeat` runs of fn's time on `clock`: CPU time of the process by default
    (robust to other jobs on a shared box; for one-thread runs it is the time on one core),
    or wall time (time.perf_counter) for multi-threaded runs."""
    times, out = [], None
    for _ in range(repeat):
        t = clock()
        out = fn()
        times.append(clock() - t)
    return statistics.median(times), out


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([np.isin(truth[i, :k], found[i]).mean() for i in range(found.shape[0])]))


def sets(tokens: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [tokens[offsets[i]:offsets[i + 1]] for i in range(offsets.shape[0] - 1)]


# ---- exact brute force ------------------------------------------------------------------------
def part_kernel(tokens16, offsets, qt, qo, truth, repeat):
    nq = qo.shape[0] - 1
    tokens32 = tokens16.astype(np.float32)
    flops = 2.0 * sum((qo[i + 1] - qo[i]) for i in range(nq)) * tokens16.shape[0] * tokens16.shape[1]
    rows = []
    t16, s16 = median_time(lambda: sx.chamfer((qt, qo), (tokens16, offsets), threads=1), repeat)
    t32, _ = median_time(lambda: sx.chamfer((qt, qo), (tokens32, offsets), threads=1), repeat)
    top = np.argsort(-s16, axis=1)[:, :10]
    rows.append(("simdex.chamfer float16 tokens", t16))
    rows.append(("simdex.chamfer float32 tokens", t32))

    starts = offsets[:-1]

    def numpy_chamfer():
        out = np.empty((nq, offsets.shape[0] - 1), dtype=np.float32)
        for i in range(nq):
            sim = qt[qo[i]:qo[i + 1]] @ tokens32.T  # (tq, T)
            out[i] = np.maximum.reduceat(sim, starts, axis=1).sum(axis=0)
        return out

    tn, sn = median_time(numpy_chamfer, repeat)
    rows.append(("NumPy GEMM + reduceat (float32)", tn))
    try:
        import numkong as nk

        packed = [nk.maxsim_pack(p) for p in sets(tokens32, offsets)]
        queries = [nk.maxsim_pack(q) for q in sets(qt, qo)]

        def numkong_all():
            return [[nk.maxsim_packed(q, p) for p in packed] for q in queries]

        tk, _ = median_time(numkong_all, repeat)
        rows.append((f"NumKong {nk.__version__} maxsim_packed (float32, per pair)", tk))
    except ImportError:
        print("numkong not installed: skipped")
    print(f"\nExact brute-force Chamfer, {nq} queries x {offsets.shape[0] - 1} documents "
          f"({tokens16.shape[0]} tokens, d={tokens16.shape[1]}), 1 thread, median of {repeat}")
    print(f"top-10 agreement with the file's exact neighbours: {recall_at(top, truth):.4f}; "
          f"max |simdex - NumPy| = {np.abs(s16 - sn).max():.2e}")
    print("| implementation | time (s) | queries/s | GFLOP/s | vs simdex float16 |")
    print("|---|---|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {nq / t:.2f} | {flops / t / 1e9:.1f} | {t / t16:.2f}x time |")


# ---- FDE recall ---------------------------------------------------------------------------------
NS = (10, 50, 100, 200, 300, 500, 1000)
FDE_PARAMS = tuple((k, d, r, {}) for k, d, r in (
    (4, 16, 20), (5, 16, 20), (3, 16, 20), (4, 8, 20), (4, 32, 20), (4, 16, 10), (5, 32, 20), (3, 16, 40),
    (4, 4, 80), (3, 8, 80), (4, 16, 40))) + (
    (3, 16, 40, {"projection": "ams"}), (3, 32, 40, {"final_dim": 5120}), (2, 16, 80, {})) + tuple(
    (k, d, r, {"fill_empty": False}) for k, d, r in ((3, 16, 40), (4, 16, 20), (4, 8, 40), (4, 4, 80), (4, 16, 40)))


def token_hits(tokens16, offsets, qt, per_token=64):
    """Every query token's per_token nearest document tokens (exact inner product over all
    document tokens, float16): (document of each hit (qtokens, per_token), similarity)."""
    doc_of = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))
    flat = sx.FlatIndex(tokens16.shape[1], "ip", storage="float16")
    flat.add(tokens16.astype(np.float32))
    dist, hit = flat.search(qt, per_token)
    return doc_of[hit], 1.0 - dist


def heuristic_ranked(hit_docs, sim, qo):
    """Documents ranked by the hits: a document's score is the sum over query tokens of its
    best hit (0 without one) - the single-vector heuristic with a hit-based score."""
    order = []
    for i in range(qo.shape[0] - 1):
        score: dict[int, float] = {}
        for t in range(qo[i], qo[i + 1]):
            best: dict[int, float] = {}
            for s, d in zip(sim[t], hit_docs[t]):
                best.setdefault(int(d), float(s))
            for d, s in best.items():
                score[d] = score.get(d, 0.0) + s
        ranked = sorted(score, key=lambda d: -score[d])[: max(NS)]
        order.append(np.array(ranked + [-1] * (max(NS) - len(ranked))))
    return np.array(order)


def heuristic_union(hit_docs, qo, truth, per_token):
    """The paper's single-vector heuristic: the candidates are the union of the documents of
    every query token's per_token nearest tokens; (mean candidates, recall of the top-10,
    fraction of queries whose exact 1-NN is a candidate)."""
    sizes, hits, nearest = [], [], []
    for i in range(qo.shape[0] - 1):
        union = np.unique(hit_docs[qo[i]:qo[i + 1], :per_token])
        sizes.append(union.size)
        hits.append(np.isin(truth[i, :10], union).mean())
        nearest.append(truth[i, 0] in union)
    return float(np.mean(sizes)), float(np.mean(hits)), float(np.mean(nearest))


def recall_1nn(order: np.ndarray, truth: np.ndarray, n: int) -> float:
    """The MUVERA paper's Recall@N (section 3.1): the fraction of queries whose exact Chamfer
    nearest document is among the top-N."""
    return float(np.mean([truth[i, 0] in order[i, :n] for i in range(order.shape[0])]))


def part_fde(tokens16, offsets, qt, qo, truth, repeat):
    tokens32 = tokens16.astype(np.float32)
    nq = qo.shape[0] - 1
    rows = []  # (label, dim, order)
    for k_sim, d_proj, r_reps, extra in FDE_PARAMS:
        enc = sx.MuveraEncoder(128, k_sim=k_sim, d_proj=d_proj, r_reps=r_reps, **extra)
        docs = enc.encode_documents((tokens32, offsets))
        scores = enc.encode_queries((qt, qo)) @ docs.T
        options = "".join(f" {key}={value}" for key, value in extra.items())
        rows.append((f"FDE k_sim={k_sim} d_proj={d_proj} r_reps={r_reps}{options}", enc.output_dim,
                     np.argsort(-scores, axis=1)))
    hit_docs, sim = token_hits(tokens16, offsets, qt)
    rows.append(("single-vector heuristic, exact token 64-NN, documents ranked by hit score", 128,
                 heuristic_ranked(hit_docs, sim, qo)))
    for title, metric in (("recall@N of the exact Chamfer top-10 (fraction of the 10 found)", recall_at),
                          ("Recall@N as in the MUVERA paper: fraction of queries whose exact Chamfer "
                           "1-NN is in the top-N", lambda order, t: recall_1nn(order, t, order.shape[1]))):
        print(f"\nFDE {title} ({nq} queries, exact inner products over the encodings)")
        print("| method | dim | " + " | ".join(f"N={n}" for n in NS) + " |")
        print("|---|---|" + "---|" * len(NS))
        for label, dim, order in rows:
            cells = " | ".join(f"{metric(order[:, :n], truth):.3f}" for n in NS)
            print(f"| {label} | {dim} | {cells} |")
    print("\nThe paper's single-vector heuristic (candidates = union of the documents of each query "
          "token's k' nearest tokens, exact token search)")
    print("| k' | mean candidates | recall of the top-10 | 1-NN found (paper's Recall) |")
    print("|---|---|---|---|")
    for per_token in (1, 2, 4, 8, 16, 32, 64):
        size, rec, near = heuristic_union(hit_docs, qo, truth, per_token)
        print(f"| {per_token} | {size:.0f} | {rec:.3f} | {near:.3f} |")


# ---- encoding ---------------------------------------------------------------------------------
def part_encode(tokens16, offsets, qt, qo, truth, repeat, sample=300):
    tokens32 = tokens16.astype(np.float32)
    n = offsets.shape[0] - 1
    enc = sx.MuveraEncoder(128, k_sim=4, d_proj=16, r_reps=20)
    t1, _ = median_time(lambda: enc.encode_documents((tokens32, offsets), threads=1), repeat)
    t_all, _ = median_time(lambda: enc.encode_documents((tokens32, offsets)), repeat, time.perf_counter)
    rows = [("simdex MuveraEncoder, 1 thread", n / t1),
            (f"simdex MuveraEncoder, {len(os.sched_getaffinity(0))} threads (wall time)", n / t_all)]
    default = sx.MuveraEncoder(128, **sx.multivector.DEFAULT_ENCODER)
    t_default, _ = median_time(lambda: default.encode_documents((tokens32, offsets), threads=1), repeat)
    try:
        from fastembed.postprocess.muvera import Muvera

        fe = Muvera(dim=128, k_sim=4, dim_proj=16, r_reps=20, random_seed=0)
        docs = sets(tokens32, offsets)[:sample]
        tf, _ = median_time(lambda: [fe.process_document(d) for d in docs], repeat)
        rows.append((f"fastembed {__import__('fastembed').__version__} Muvera.process_document ({sample} docs)",
                     sample / tf))
    except ImportError:
        print("fastembed not installed: skipped")
    print(f"\nDocument encoding throughput (k_sim=4, d_proj=16, r_reps=20 -> 5120-d), median of {repeat}")
    print("| implementation | documents/s | vs fastembed |")
    print("|---|---|---|")
    base = rows[2][1] if len(rows) == 3 else None
    for name, rate in rows:
        print(f"| {name} | {rate:.0f} | {'' if base is None else f'{rate / base:.1f}x'} |")
    print(f"| simdex MuveraEncoder with MultiVectorIndex's default (3/16/40 fill_empty=False -> 5120-d), 1 thread | "
          f"{n / t_default:.0f} | {'' if base is None else f'{n / t_default / base:.1f}x (other parameters)'} |")


# ---- end to end -------------------------------------------------------------------------------
def part_search(tokens16, offsets, qt, qo, truth, repeat, timed=100, only=None):
    """Recall over every query; QPS on the first `timed` queries, each search timing
    interleaved with a brute-force timing of the same queries (ratios from the same moments
    of a noisy shared box: medians of `repeat` pairs)."""
    nq = qo.shape[0] - 1
    scores = sx.chamfer((qt, qo), (tokens16, offsets))
    brute_top = np.argsort(-scores, axis=1)[:, :10]
    nt = min(timed, nq)
    tq, to = qt[: qo[nt]], qo[: nt + 1]
    print(f"\nEnd to end: recall@10 over {nq} queries (exact brute force: "
          f"{recall_at(brute_top, truth):.3f}); QPS on {nt} queries, 1 thread, median of {repeat}, each "
          "timing interleaved with one of exact brute force (simdex.chamfer + top-10)")
    print("| encoding index | build (s) | candidates | ef | carve tau | recall@10 | QPS | brute-force QPS | "
          "x brute force (median of pairs) | min / max pair |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    default = sx.multivector.DEFAULT_ENCODER
    previous = dict(k_sim=3, d_proj=16, r_reps=40)  # the default of session 5 (fill_empty=True)
    configs = [  # (label, encoder, index parameters, tokens, [(candidates, ef, carve), ...])
        ("hnsw M=16 efC=100 float16", sx.MuveraEncoder(128, **default), dict(index="hnsw", M=16, ef_construction=100),
         "float16", [(150, 150, None), (200, 200, None), (300, 300, None)]),
        ("pq (default: m=640 nbits=4 fast-scan)", sx.MuveraEncoder(128, **default), dict(index="pq"), "float16",
         [(100, None, None), (120, None, None), (150, None, None), (200, None, None), (250, None, None),
          (150, None, 0.9)]),
        ("pq (default: m=640 nbits=4 fast-scan), int8 tokens", sx.MuveraEncoder(128, **default), dict(index="pq"),
         "int8", [(150, None, None)]),
        ("pq (default: m=640 nbits=4 fast-scan), float32 tokens", sx.MuveraEncoder(128, **default),
         dict(index="pq"), "float32", [(150, None, None)]),
        ("pq m=640 nbits=4 (fast-scan), session-5 default encoder", sx.MuveraEncoder(128, **previous),
         dict(index="pq"), "float16", [(150, None, None), (250, None, None)]),
        ("pq m=640 nbits=4 (fast-scan)", sx.MuveraEncoder(128), dict(index="pq", m=640, nbits=4), "float16",
         [(200, None, None), (300, None, None)]),
    ]
    tokens32 = tokens16.astype(np.float32)
    for label, enc, params, tokens, runs in configs:
        fde = f"FDE {enc.k_sim}/{enc.d_proj}/{enc.r_reps}{'' if enc.fill_empty else ' fill_empty=False'}"
        if only and only not in f"{label}, {fde}":
            continue
        index = sx.MultiVectorIndex(128, encoder=enc, tokens=tokens, **params)
        t = time.perf_counter()
        if params["index"] == "pq" or tokens == "int8":
            index.train((tokens32, offsets))
        index.add((tokens32, offsets))
        build = time.perf_counter() - t
        label = f"{label}, {fde} -> {enc.output_dim}-d"
        for candidates, ef, carve in runs:
            res = index.search((qt, qo), 10, candidates=candidates, ef=ef, carve=carve)
            t_search, t_brute = [], []
            for _ in range(repeat):
                t_brute.append(median_time(lambda: sx.chamfer((tq, to), (tokens16, offsets), threads=1), 1)[0])
                t_search.append(median_time(lambda: index.search((tq, to), 10, candidates=candidates, ef=ef,
                                                                 carve=carve, threads=1), 1)[0])
            qps, brute_qps = nt / statistics.median(t_search), nt / statistics.median(t_brute)
            ratios = [b / s_ for b, s_ in zip(t_brute, t_search)]
            print(f"| {label} | {build:.0f} | {candidates} | {ef or '-'} | {carve or '-'} | "
                  f"{recall_at(res.ids, truth):.3f} | {qps:.1f} | {brute_qps:.1f} | {statistics.median(ratios):.1f}x | "
                  f"{min(ratios):.1f}x / {max(ratios):.1f}x |", flush=True)


PARTS = {"kernel": part_kernel, "fde": part_fde, "encode": part_encode, "search": part_search}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/minilm-mv-dev-10k.hdf5")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--parts", default="kernel,fde,encode,search")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ood", action="store_true", help="keyword queries (query_tokens_ood, neighbors_ood)")
    ap.add_argument("--only", default=None, help="search part: only the configurations whose label contains this")
    args = ap.parse_args()
    data = load(args.data, args.queries, "_ood" if args.ood else "")
    print(f"simdex {sx.__version__}, SIMD level {sx.simd_level()}, {'keyword (OOD)' if args.ood else 'in-distribution'} "
          f"queries: {args.queries}")
    for part in args.parts.split(","):
        if part == "search":
            part_search(*data, args.repeat, only=args.only)
        else:
            PARTS[part](*data, args.repeat)


if __name__ == "__main__":
    main()
