"""HNSW side by side: simdex.HNSWIndex vs hnswlib, FAISS IndexHNSWFlat and USearch.

Same data (ann-benchmarks HDF5, default: the 60k x 384 MiniLM dev set, cosine), same graph
parameters (M=16, ef_construction=200 -- FAISS's default efConstruction is 40, set here), in
the same run. Reports:
  * build time with 2 threads and index memory per vector (RSS growth during the build);
  * recall@10 vs QPS over ef: one query per call on 1 thread, and one batch on 2 threads
    (median of --repeats runs, libraries interleaved per ef so they share the noise);
  * QPS at recall@10 = 0.95 (log-linear interpolation) with ratios against the fastest peer;
  * recall@10 of simdex at fixed ef for insertion_order given / random / lid_desc;
  * recall after removing 10% of the points vs a fresh build on the rest.

    PYTHONPATH=build-dev/pkg python bench/bench_hnsw.py [--data PATH] [--plot bench/hnsw_recall_qps.png]
        [--libs simdex,hnswlib,faiss,usearch] [--build-repeats N] [--skip-extras]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import numpy as np

import simdex as sx

M, EFC, K = 16, 200, 10
EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192]


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---- one adapter per library: build(x, threads), search_one(q, ef), search_batch(Q, ef, threads)

class Simdex:
    name = "simdex"

    def __init__(self, dim, order="given"):
        self.index = sx.HNSWIndex(dim, "cosine", M=M, ef_construction=EFC)
        self.order = order

    def build(self, x, threads):
        self.index.add(x, threads=threads, insertion_order=self.order)

    def one(self, q, ef):
        return self.index.search(q, K, ef=ef).ids

    def batch(self, q, ef, threads):
        return self.index.search(q, K, ef=ef, threads=threads).ids


class Hnswlib:
    name = "hnswlib"

    def __init__(self, dim):
        import hnswlib
        self.index = hnswlib.Index("cosine", dim)
        self.dim = dim

    def build(self, x, threads):
        self.index.init_index(x.shape[0], M=M, ef_construction=EFC, random_seed=0)
        self.index.add_items(x, num_threads=threads)

    def one(self, q, ef):
        self.index.set_ef(ef)
        return self.index.knn_query(q, K, num_threads=1)[0]

    def batch(self, q, ef, threads):
        self.index.set_ef(ef)
        return self.index.knn_query(q, K, num_threads=threads)[0]


class Faiss:
    name = "faiss"

    def __init__(self, dim):
        import faiss
        self.faiss = faiss
        self.index = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EFC  # FAISS default is 40

    def build(self, x, threads):
        self.faiss.omp_set_num_threads(threads)
        self.index.add(sx.kernels.normalize(x))

    def one(self, q, ef):
        self.faiss.omp_set_num_threads(1)
        self.index.hnsw.efSearch = ef
        return self.index.search(sx.kernels.normalize(q.reshape(1, -1)), K)[1][0]

    def batch(self, q, ef, threads):
        self.faiss.omp_set_num_threads(threads)
        self.index.hnsw.efSearch = ef
        return self.index.search(sx.kernels.normalize(q), K)[1]


class USearch:
    name = "usearch"

    def __init__(self, dim):
        from usearch.index import Index
        self.index = Index(ndim=dim, metric="cos", dtype="f32", connectivity=M,
                           expansion_add=EFC, expansion_search=64)

    def build(self, x, threads):
        self.index.add(np.arange(x.shape[0]), x, threads=threads)

    def one(self, q, ef):
        self.index.expansion_search = ef
        return self.index.search(q, K, threads=1).keys

    def batch(self, q, ef, threads):
        self.index.expansion_search = ef
        return self.index.search(q, K, threads=threads).keys


def qps_at(recalls, qps, target=0.95):
    """Log-linear interpolation of QPS at a recall target (None if never reached)."""
    pts = sorted(zip(recalls, qps))
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1 and r1 > r0:
            t = (target - r0) / (r1 - r0)
            return float(np.exp(np.log(q0) + t * (np.log(q1) - np.log(q0))))
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data/minilm-dev-60k.hdf5")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plot", default="bench/hnsw_recall_qps.png")
    ap.add_argument("--skip-extras", action="store_true", help="skip insertion-order and removal runs")
    ap.add_argument("--libs", default="simdex,hnswlib,faiss,usearch",
                    help="comma-separated subset of simdex,hnswlib,faiss,usearch")
    ap.add_argument("--build-repeats", type=int, default=1,
                    help="build each library this many times (interleaved); report the median")
    args = ap.parse_args()

    ds = sx.io.load_ann_benchmarks(args.data)
    x, queries, truth = ds.train, ds.test, ds.neighbors[:, :K]
    n, dim = x.shape
    print(f"data: {args.data}  n={n} d={dim} q={queries.shape[0]} metric={ds.metric}  "
          f"simd={sx.simd_level()}  M={M} ef_construction={EFC}")

    adapters = {"simdex": Simdex, "hnswlib": Hnswlib, "faiss": Faiss, "usearch": USearch}
    wanted = [name.strip() for name in args.libs.split(",") if name.strip()]
    if "simdex" not in wanted or any(name not in adapters for name in wanted):
        raise SystemExit(f"--libs must include simdex and name only {sorted(adapters)}; got {args.libs!r}")
    # Builds interleaved across libraries (repeat r of every library before repeat r + 1),
    # so a change in the machine's load hits all of them alike; the last build is kept.
    build_times = {name: [] for name in wanted}
    memory = {}
    libs = {}
    for r in range(args.build_repeats):
        for name in wanted:
            libs.pop(name, None)
            gc.collect()
            before = rss()
            lib = adapters[name](dim)
            t0 = time.perf_counter()
            lib.build(x, args.threads)
            build_times[name].append(time.perf_counter() - t0)
            gc.collect()
            memory.setdefault(name, (rss() - before) / n)  # first build: nothing freed before it
            libs[name] = lib
            print(f"  built {name} (repeat {r + 1}): {build_times[name][-1]:.1f} s", flush=True)
    build = {name: statistics.median(t) for name, t in build_times.items()}
    libs = [libs[name] for name in wanted]
    memory["simdex (nbytes)"] = libs[0].index.nbytes / n

    one = {lib.name: {} for lib in libs}
    batch = {lib.name: {} for lib in libs}
    for ef in EFS:
        times_one = {lib.name: [] for lib in libs}
        times_batch = {lib.name: [] for lib in libs}
        for _ in range(args.repeats):
            for lib in libs:
                found = np.empty((queries.shape[0], K), dtype=np.int64)
                t0 = time.perf_counter()
                for i in range(queries.shape[0]):
                    found[i] = lib.one(queries[i], ef)
                times_one[lib.name].append(time.perf_counter() - t0)
                rec_one = sx.recall_at_k(found, truth, K)
                t0 = time.perf_counter()
                found_b = lib.batch(queries, ef, args.threads)
                times_batch[lib.name].append(time.perf_counter() - t0)
                rec_b = sx.recall_at_k(np.asarray(found_b, dtype=np.int64), truth, K)
                one[lib.name][ef] = (rec_one, 0.0)
                batch[lib.name][ef] = (rec_b, 0.0)
        for lib in libs:
            nq = queries.shape[0]
            one[lib.name][ef] = (one[lib.name][ef][0], nq / statistics.median(times_one[lib.name]))
            batch[lib.name][ef] = (batch[lib.name][ef][0], nq / statistics.median(times_batch[lib.name]))
        print(f"  ef={ef} done", flush=True)

    names = [lib.name for lib in libs]
    print(f"\n### Build ({args.threads} threads, median of {args.build_repeats}) and memory\n")
    fastest_build = min(build[p] for p in names if p != "simdex")
    print("| library | build s (median) | all builds s | vs fastest peer | RSS growth B/vector |")
    print("|---|---|---|---|---|")
    for p in names:
        runs = ", ".join(f"{t:.1f}" for t in build_times[p])
        print(f"| {p} | {build[p]:.1f} | {runs} | {build[p] / fastest_build:.2f}x | {memory[p]:.0f} |")
    print(f"\nsimdex index.nbytes / n = {memory['simdex (nbytes)']:.0f} B/vector\n")

    for title, table in (("one query per call, 1 thread", one), (f"batch of {queries.shape[0]}, {args.threads} threads", batch)):
        print(f"### recall@10 / QPS, {title}\n")
        print("| ef | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for ef in EFS:
            cells = [f"{table[p][ef][0]:.3f} / {table[p][ef][1]:,.0f}" for p in names]
            print(f"| {ef} | " + " | ".join(cells) + " |")
        at = {p: qps_at([table[p][e][0] for e in EFS], [table[p][e][1] for e in EFS]) for p in names}
        peers = {p: v for p, v in at.items() if p != "simdex" and v}
        best = max(peers, key=peers.get) if peers else None
        print("\nQPS at recall@10 = 0.95: " + ", ".join(
            f"{p} {v:,.0f}" if v else f"{p} n/a" for p, v in at.items()))
        if best and at["simdex"]:
            print(f"simdex / fastest peer ({best}): {at['simdex'] / peers[best]:.2f}x\n")

    if args.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, axes = plt.subplots(1, 2, figsize=(11, 4))
            for ax, (title, table) in zip(axes, (("1 thread, one query per call", one),
                                                 (f"batch, {args.threads} threads", batch))):
                for p in names:
                    ax.plot([table[p][e][0] for e in EFS], [table[p][e][1] for e in EFS], "o-", label=p)
                ax.set_xlabel("recall@10")
                ax.set_ylabel("QPS")
                ax.set_yscale("log")
                ax.set_title(title)
                ax.axvline(0.95, color="grey", lw=0.5)
                ax.legend()
            fig.tight_layout()
            fig.savefig(args.plot, dpi=110)
            print(f"plot: {args.plot}\n")
        except ImportError:
            pass

    if args.skip_extras:
        return
    del libs
    gc.collect()
    print("### Insertion order (simdex, recall@10 at fixed ef, batch search)\n")
    fixed = [10, 16, 32]
    print("| insertion_order | build s | " + " | ".join(f"ef={e}" for e in fixed) + " |")
    print("|---|---|" + "---|" * len(fixed))
    for order in ("given", "random", "lid_desc"):
        lib = Simdex(dim, order)
        t0 = time.perf_counter()
        lib.build(x, args.threads)
        took = time.perf_counter() - t0
        cells = [f"{sx.recall_at_k(lib.batch(queries, e, args.threads), truth, K):.4f}" for e in fixed]
        print(f"| {order} | {took:.1f} | " + " | ".join(cells) + " |", flush=True)
        if order == "given":
            given = lib
    print("\n(lid_desc build time includes sx.lid on all points: exact 21-NN of every point)\n")

    print("### Removal of 10% (simdex): recall@10 on the rest vs a fresh build of the rest\n")
    rng = np.random.default_rng(0)
    removed = rng.choice(n, n // 10, replace=False)
    keep = np.setdiff1d(np.arange(n), removed)
    t0 = time.perf_counter()
    given.index.remove(removed, threads=args.threads)
    took = time.perf_counter() - t0
    truth_keep = keep[sx.knn(queries, x[keep], K, "cosine").ids]
    fresh = sx.HNSWIndex(dim, "cosine", M=M, ef_construction=EFC)
    fresh.add(x[keep], keep, threads=args.threads)
    print(f"remove() took {took:.2f} s\n")
    print("| ef | after remove | fresh build |")
    print("|---|---|---|")
    for e in fixed:
        a = sx.recall_at_k(given.index.search(queries, K, ef=e).ids, truth_keep, K)
        b = sx.recall_at_k(fresh.search(queries, K, ef=e).ids, truth_keep, K)
        print(f"| {e} | {a:.4f} | {b:.4f} |")


if __name__ == "__main__":
    main()
