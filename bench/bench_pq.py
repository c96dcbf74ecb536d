"""Product quantization: simdex vs FAISS side by side, same data, same run.

    PYTHONPATH=build-pq/pkg python bench/bench_pq.py [--n 1000000] [--threads 1] [--quick]
    PYTHONPATH=... python bench/bench_pq.py --only fastscan-seeds [--seeds 5]
    PYTHONPATH=... FAISS_SIMD_LEVEL=AVX2 python bench/bench_pq.py --only fastscan-calls --threads 1
    PYTHONPATH=... FAISS_SIMD_LEVEL=AVX2 python bench/bench_pq.py --only fastscan-overhead --threads 1

Scans are compared on the *same codes*: FAISS trains each quantizer, its codebooks (and
coarse centroids) are copied into the simdex index, which encodes the same vectors with its
own C++ nearest-centroid search (the share of identical codes is printed), so recall is equal
up to ties and QPS is compared at equal recall. Training is timed separately (each library
trains on the same sample with the same iteration count). k-means: simdex.kmeans vs
faiss.Kmeans, same data, same iterations; objective = sum of squared distances to the
nearest centroid over all points, computed the same way for both.
Medians of --repeats runs; ratios > 1 mean simdex is faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import faiss
import simdex as sx
from _peers import faiss_level
from simdex.kmeans import objective

ROWS: list[tuple] = []


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def clustered(n, d, seed, centers=1000):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d)).astype(np.float32) * 2.0
    out = np.empty((n, d), np.float32)
    for start in range(0, n, 200_000):
        part = min(200_000, n - start)
        out[start:start + part] = c[rng.integers(0, centers, part)] + rng.standard_normal((part, d), dtype=np.float32)
    return out


def recall(ids, truth, k=10):
    return sx.recall_at_k(ids, truth[:, :k], k)


def faiss_books(pq):
    return faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub).astype(np.float32)


def row(workload, what, ours_t, faiss_t, ours_recall=None, faiss_recall=None, note=""):
    """Times in seconds (smaller better); ratio = faiss / ours."""
    ROWS.append((workload, what, ours_t, faiss_t, faiss_t / ours_t if ours_t else float("nan"),
                 ours_recall, faiss_recall, note))
    r = f"{ours_recall:.3f}/{faiss_recall:.3f}" if ours_recall is not None else ""
    print(f"  {workload:34s} {what:18s} simdex {ours_t:8.3f}s  faiss {faiss_t:8.3f}s  "
          f"x{faiss_t / ours_t:5.2f} {r} {note}", flush=True)


def bench_flat_pq(x, xt, q, truth, m, nbits, threads, repeats, metric, label):
    d = x.shape[1]
    fmetric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    k = 10
    # training: same sample, same iterations (faiss PQ default: 25)
    if nbits == 8:
        findex = faiss.IndexPQ(d, m, 8, fmetric)
    else:
        findex = faiss.IndexPQFastScan(d, m, 4, fmetric)
    t_ftrain, _ = timed(lambda: findex.train(xt), 1)
    ours = sx.ProductQuantizer(d, m, nbits=nbits)
    t_otrain, _ = timed(lambda: ours.fit(xt, threads=threads), 1)  # 256 * ksub samples, as faiss
    row(label, "train", t_otrain, t_ftrain)
    t_fadd, _ = timed(lambda: findex.add(x), 1)
    index = sx.PQIndex(d, m, nbits=nbits, metric=metric)
    index.pq.codebooks = faiss_books(findex.pq)
    t_oadd, _ = timed(lambda: index.add(x, threads=threads), 1)
    row(label, "encode+add", t_oadd, t_fadd)
    sample = np.ascontiguousarray(x[:20000])
    same = float((index.pq.encode(sample) == findex.pq.compute_codes(sample)).all(1).mean())
    t_f, (_, fi) = timed(lambda: findex.search(q, k), repeats)
    t_o, (_, oi) = timed(lambda: index.search(q, k, threads=threads), repeats)
    row(label, f"search k={k}", t_o, t_f, recall(oi, truth), recall(fi, truth),
        f"identical codes {same:.3f}; {x.shape[0] / 1e6:.1f}M codes, {q.shape[0]} q")
    # with exact re-ranking of 100 candidates (faiss IndexRefineFlat, k_factor 10)
    refine = faiss.IndexRefineFlat(findex, faiss.swig_ptr(x))  # base already holds the codes
    refine.k_factor = 10
    rindex = sx.PQIndex(d, m, nbits=nbits, metric=metric, rerank="memory")
    rindex.pq = index.pq
    rindex._codes, rindex._ids, rindex._n, rindex._next_id = index._codes, index._ids, index._n, index._next_id
    rindex._store.append(x)
    t_f, (_, fi) = timed(lambda: refine.search(q, k), repeats)
    t_o, (_, oi) = timed(lambda: rindex.search(q, k, rerank_k=100, threads=threads), repeats)
    row(label, "search+rerank100", t_o, t_f, recall(oi, truth), recall(fi, truth))
    bytes_ours = (index.nbytes - index.pq.nbytes - index._ids.nbytes) / x.shape[0]
    bytes_faiss = faiss.vector_to_array(findex.codes).nbytes / x.shape[0]
    print(f"  {label}: code bytes/vector simdex {bytes_ours:.1f}, faiss {bytes_faiss:.1f}")
    return bytes_ours, bytes_faiss


def bench_ivf(x, xt, q, truth, nlist, m, threads, repeats, label):
    d = x.shape[1]
    k = 10
    coarse = faiss.IndexFlatL2(d)
    findex = faiss.IndexIVFPQ(coarse, d, nlist, m, 8)
    t_ftrain, _ = timed(lambda: findex.train(xt), 1)
    ours = sx.IVFPQIndex(d, nlist, m, rerank="memory")
    t_otrain, _ = timed(lambda: ours.train(xt, threads=threads), 1)
    row(label, "train", t_otrain, t_ftrain)
    t_fadd, _ = timed(lambda: findex.add(x), 1)
    index = sx.IVFPQIndex(d, nlist, m, rerank="memory")
    index.centroids = np.ascontiguousarray(coarse.reconstruct_n(0, nlist), dtype=np.float32)
    index.pq.codebooks = faiss_books(findex.pq)
    books = index.pq.codebooks
    c = index.centroids.reshape(nlist, m, d // m)
    index._list_tables = np.ascontiguousarray(
        2.0 * np.einsum("lmd,mkd->lmk", c, books) + np.einsum("mkd,mkd->mk", books, books)[None], dtype=np.float32)
    t_oadd, _ = timed(lambda: index.add(x, threads=threads), 1)
    row(label, "encode+add", t_oadd, t_fadd)
    refine = faiss.IndexRefineFlat(findex, faiss.swig_ptr(x))
    refine.k_factor = 10
    for nprobe in (8, 32):
        findex.nprobe = nprobe
        t_f, (_, fi) = timed(lambda: findex.search(q, k), repeats)
        t_o, (_, oi) = timed(lambda: index.search(q, k, nprobe=nprobe, rerank_k=k, threads=threads), repeats)
        row(label, f"nprobe={nprobe}", t_o, t_f, recall(oi, truth), recall(fi, truth))
        t_f, (_, fi) = timed(lambda: refine.search(q, k), repeats)
        t_o, (_, oi) = timed(lambda: index.search(q, k, nprobe=nprobe, rerank_k=100, threads=threads), repeats)
        row(label, f"nprobe={nprobe}+rerank100", t_o, t_f, recall(oi, truth), recall(fi, truth))


def bench_kmeans(n, d, k, n_iter, threads, label):
    x = clustered(n, d, seed=5, centers=4 * k)
    fk = faiss.Kmeans(d, k, niter=n_iter, seed=1, max_points_per_centroid=1 << 30)
    t_f, _ = timed(lambda: fk.train(x), 1)
    t_o, (c, _) = timed(lambda: sx.kmeans(x, k, n_iter=n_iter, threads=threads), 1)
    t_r, (cr, _) = timed(lambda: sx.kmeans(x, k, n_iter=n_iter, init="random", threads=threads), 1)
    of, oo, orr = objective(x, fk.centroids), objective(x, c), objective(x, cr)
    row(label, f"k-means++ {n_iter} it", t_o, t_f, note=f"objective simdex/faiss {oo / of:.4f}")
    row(label, f"random {n_iter} it", t_r, t_f, note=f"objective simdex/faiss {orr / of:.4f}")


def bench_fastscan_training(seeds, threads):
    """Where fast-scan recall differences come from: the same codebooks give the same recall
    (the scans agree); each library's own training gives recall that moves with the seed
    (the training sample and k-means start), by more than the gap between the libraries."""
    data = sx.io.load_ann_benchmarks("/work/shared/data/minilm-dev-60k.hdf5")
    x, q, truth = sx.kernels.normalize(data.train), sx.kernels.normalize(data.test), data.neighbors
    d = x.shape[1]
    print("\n| dev 60k x 384 (ip), PQ m x 4 | same codebooks: simdex / faiss | float ADC | "
          f"own training, {seeds} seeds: simdex mean (min..max) | faiss mean (min..max) |")
    print("|---|---|---|---|---|")
    for m in (64, 96):
        ours, theirs, same = [], [], None
        for seed in range(seeds):
            f = faiss.IndexPQFastScan(d, m, 4, faiss.METRIC_INNER_PRODUCT)
            f.pq.cp.seed = 1234 + seed
            f.train(x)
            f.add(x)
            theirs.append(recall(f.search(q, 10)[1], truth))
            own = sx.PQIndex(d, m, nbits=4, metric="ip")
            own.train(x, seed=seed, threads=threads)
            own.add(x, threads=threads)
            ours.append(recall(own.search(q, 10, threads=threads)[1], truth))
            if seed == 0:
                copy = sx.PQIndex(d, m, nbits=4, metric="ip")
                copy.pq.codebooks = faiss_books(f.pq)
                copy.add(x, threads=threads)
                flat_adc = faiss.IndexPQ(d, m, 4, faiss.METRIC_INNER_PRODUCT)
                flat_adc.pq = f.pq
                flat_adc.is_trained = True
                flat_adc.add(x)
                same = (recall(copy.search(q, 10, threads=threads)[1], truth), theirs[0],
                        recall(flat_adc.search(q, 10)[1], truth))
        print(f"| PQ{m}x4 | {same[0]:.4f} / {same[1]:.4f} | {same[2]:.4f} | "
              f"{np.mean(ours):.4f} ({min(ours):.4f}..{max(ours):.4f}) | "
              f"{np.mean(theirs):.4f} ({min(theirs):.4f}..{max(theirs):.4f}) |", flush=True)


def bench_fastscan_calls(rounds):
    """Fast-scan per call, same codebooks, 1 thread, CPU time (time.process_time), the two
    libraries taking turns: 1,000 queries in one call, and 200 calls of one query each."""
    data = sx.io.load_ann_benchmarks("/work/shared/data/minilm-dev-60k.hdf5")
    x, q = sx.kernels.normalize(data.train), sx.kernels.normalize(data.test)
    d = x.shape[1]
    print(f"\n| dev 60k x 384 (ip) | call | simdex ms | faiss ms | faiss / simdex |   (median of {rounds} rounds)")
    print("|---|---|---:|---:|---:|")
    for m in (64, 96):
        f = faiss.IndexPQFastScan(d, m, 4, faiss.METRIC_INNER_PRODUCT)
        f.train(x)
        f.add(x)
        index = sx.PQIndex(d, m, nbits=4, metric="ip")
        index.pq.codebooks = faiss_books(f.pq)
        index.add(x)
        calls = {
            "1,000 queries, one call": (lambda: index.search(q, 10, threads=1), lambda: f.search(q, 10)),
            "200 calls of 1 query": (lambda: [index.search(q[i], 10, threads=1) for i in range(200)],
                                     lambda: [f.search(q[i:i + 1], 10) for i in range(200)]),
        }
        for call, (ours, theirs) in calls.items():
            t_o, t_f = [], []
            for _ in range(rounds):
                for fn, times in ((ours, t_o), (theirs, t_f)):
                    t = time.process_time()
                    fn()
                    times.append(time.process_time() - t)
            o, th = statistics.median(t_o), statistics.median(t_f)
            print(f"| PQ{m}x4 | {call} | {1e3 * o:.1f} | {1e3 * th:.1f} | {th / o:.2f} |", flush=True)


def bench_fastscan_overhead(rounds, n=64, calls=2000):
    """Per-call cost on a tiny index (64 codes, so the scan is negligible): one 1-D query
    per call, PQ 64x4 on 384-d, 1 thread, wall time per call, the two libraries taking turns."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 384)).astype(np.float32)
    q = rng.standard_normal((calls, 384)).astype(np.float32)
    f = faiss.IndexPQFastScan(384, 64, 4, faiss.METRIC_L2)
    f.train(x)
    f.add(x[:n])
    index = sx.PQIndex(384, 64, nbits=4, metric="l2")
    index.pq.codebooks = faiss_books(f.pq)
    index.add(x[:n])
    t_o, t_f = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for i in range(calls):
            index.search(q[i], 10, threads=1)
        t_o.append((time.perf_counter() - t) / calls)
        t = time.perf_counter()
        for i in range(calls):
            f.search(q[i:i + 1], 10)
        t_f.append((time.perf_counter() - t) / calls)
    o, th = statistics.median(t_o), statistics.median(t_f)
    print(f"\n| PQ64x4, {n} codes, 1-D query per call | simdex us | faiss us | faiss / simdex |")
    print("|---|---:|---:|---:|")
    print(f"| per call (median of {rounds} rounds x {calls} calls) | {1e6 * o:.1f} | {1e6 * th:.1f} | {th / o:.2f} |",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="pq,fastscan,ivf,kmeans,dev")
    ap.add_argument("--kmeans-iter", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=5, help="training seeds for --only fastscan-seeds")
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    only = set(args.only.split(","))
    print(f"simdex {sx.simd_level()}, faiss {faiss.__version__} ({faiss_level()}), threads {args.threads}, "
          f"cores {os.cpu_count()}", flush=True)
    if only & {"pq", "fastscan", "ivf"}:
        d = 128
        x = clustered(args.n, d, seed=1)
        xt = np.ascontiguousarray(x[np.random.default_rng(2).choice(args.n, 65536, replace=False)])
        q = clustered(args.queries, d, seed=3)
        truth = sx.knn(q, x, 10).ids
        if "pq" in only:
            bench_flat_pq(x, xt, q, truth, 32, 8, args.threads, args.repeats, "l2",
                          f"PQ32x8 {args.n // 1000}k x {d}")
        if "fastscan" in only:
            bench_flat_pq(x, xt, q, truth, 64, 4, args.threads, args.repeats, "l2",
                          f"PQ64x4 fast-scan {args.n // 1000}k x {d}")
        if "ivf" in only:
            bench_ivf(x, xt, q, truth, 1024, 32, args.threads, args.repeats,
                      f"IVF1024,PQ32x8 {args.n // 1000}k x {d}")
        del x
    if "dev" in only:
        path = "/work/shared/data/minilm-dev-60k.hdf5"
        data = sx.io.load_ann_benchmarks(path)
        x = sx.kernels.normalize(data.train)
        q = sx.kernels.normalize(data.test)
        truth = data.neighbors
        bench_flat_pq(x, x, q, truth, 48, 8, args.threads, args.repeats, "ip", "dev 60k x 384 PQ48x8 (cos)")
        bench_flat_pq(x, x, q, truth, 96, 4, args.threads, args.repeats, "ip", "dev 60k x 384 PQ96x4 (cos)")
    if "fastscan-calls" in only:
        bench_fastscan_calls(args.repeats * 3)
    if "fastscan-overhead" in only:
        bench_fastscan_overhead(args.repeats * 3)
    if "fastscan-seeds" in only:
        bench_fastscan_training(args.seeds, args.threads)
    if "kmeans" in only:
        bench_kmeans(65536, 32, 256, 25, args.threads, "kmeans 65536 x 32, k=256")
        bench_kmeans(100_000, 384, 1024, args.kmeans_iter, args.threads, "kmeans 100000 x 384, k=1024")
    print("\n| workload | step | simdex s | faiss s | faiss/simdex | recall@10 simdex / faiss | note |")
    print("|---|---|---:|---:|---:|---|---|")
    for w, what, o, f, ratio, ro, rf, note in ROWS:
        r = f"{ro:.3f} / {rf:.3f}" if ro is not None else ""
        print(f"| {w} | {what} | {o:.3f} | {f:.3f} | {ratio:.2f} | {r} | {note} |")


if __name__ == "__main__":
    main()
