"""Live-index operations: simdex.HNSWIndex vs hnswlib and USearch, side by side in one run.

Each library gets an HNSW index over the first --n rows of the dev data's 'train' (cosine,
M=16, ef_construction=200, built with all threads; build time printed, not part of the
microbenchmarks). Then, with libraries interleaved inside each of --repeats rounds so they share
the machine's noise:
  * add one row      : one Python call per new vector, (1, d) array (usearch: add(key, vec));
  * remove one row   : the rows just added, one id per call (hnswlib: mark_deleted);
  * one query        : k=10 at the same ef, unfiltered, and with 50% / 5% of the ids allowed
                       (simdex: filter=int64 ids; hnswlib: filter=lambda i: mask[i]; usearch has
                       no filter argument in its Python search, so it is skipped there), with
                       recall@10 against brute force (numpy) over the allowed rows;
  * batch search     : 1,000 'test' queries in one call with all threads (simdex vs hnswlib);
  * mixed workload   : --threads Python threads on one shared index for --seconds: 90% one-query
                       search, 9% one-row add (fresh ids from one shared itertools.count), 1%
                       one-row remove of a previously added id; total operations/s, the median
                       time of a remove under that load, the number of exceptions (0 to pass),
                       then a check that no removed id is returned by a search.
Per-call figures are the median over the calls of a round, then the median over the rounds.

    PYTHONPATH=build-dev/pkg python bench/bench_live.py [--n 40000] [--repeats 3] [--ef 64]
        [--seconds 5] [--threads 4] [--libs simdex,hnswlib,usearch] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import platform
import random
import shlex
import statistics
import sys
import threading
import time
import traceback

import numpy as np

import simdex as sx

K = 10


# ---- one adapter per library -----------------------------------------------------------------
# build(x, ids); add_one(i) adds pool row i under id i; remove_one(id); one(q) -> ids (k,);
# filtered(q, f) with f from make_filter(allowed_ids, mask); batch(Q) -> ids (nq, k).

class SimdexLib:
    name = "simdex"
    has_filter = True

    def __init__(self, dim, args, capacity):
        self.index = sx.HNSWIndex(dim, "cosine", M=args.M, ef_construction=args.efc)
        self.ef = args.ef

    def build(self, x, ids):
        self.index.add(x, ids, threads=None)

    def add_one(self, row2d, row1d, new_id):
        self.index.add(row2d, [new_id])

    def remove_one(self, old_id):
        return self.index.remove([old_id])

    def one(self, q):
        return self.index.search(q, K, ef=self.ef).ids.reshape(-1)

    def make_filter(self, allowed_ids, mask):
        return allowed_ids

    def filtered(self, q, f):
        return self.index.search(q, K, ef=self.ef, filter=f).ids.reshape(-1)

    def batch(self, queries):
        return self.index.search(queries, K, ef=self.ef, threads=None).ids

    def live(self):
        return len(self.index)


class HnswlibLib:
    name = "hnswlib"
    has_filter = True

    def __init__(self, dim, args, capacity):
        import hnswlib
        self.index = hnswlib.Index("cosine", dim)
        # add_items / knn_query / mark_deleted may run concurrently; resize_index may not, so
        # the capacity covers every add of the run up front.
        self.index.init_index(capacity, M=args.M, ef_construction=args.efc, random_seed=0)
        self.index.set_ef(args.ef)

    def build(self, x, ids):
        self.index.add_items(x, ids, num_threads=-1)

    def add_one(self, row2d, row1d, new_id):
        self.index.add_items(row2d, [new_id])

    def remove_one(self, old_id):
        self.index.mark_deleted(old_id)
        return 1

    def one(self, q):
        return self.index.knn_query(q, K)[0].reshape(-1)

    def make_filter(self, allowed_ids, mask):
        return lambda i: mask[i]

    def filtered(self, q, f):
        return self.index.knn_query(q, K, filter=f)[0].reshape(-1)

    def batch(self, queries):
        return self.index.knn_query(queries, K, num_threads=-1)[0]

    def live(self):
        return None  # hnswlib does not expose its count of deleted labels


class USearchLib:
    name = "usearch"
    has_filter = False  # Index.search(vectors, count, radius, threads, exact, ...): no predicate

    def __init__(self, dim, args, capacity):
        from usearch.index import Index
        self.index = Index(ndim=dim, metric="cos", dtype="f32", connectivity=args.M,
                           expansion_add=args.efc, expansion_search=args.ef)

    def build(self, x, ids):
        self.index.add(ids, x, threads=0)

    def add_one(self, row2d, row1d, new_id):
        self.index.add(new_id, row1d)

    def remove_one(self, old_id):
        return self.index.remove(old_id)

    def one(self, q):
        return np.asarray(self.index.search(q, K).keys).reshape(-1)

    def make_filter(self, allowed_ids, mask):
        return None

    def filtered(self, q, f):
        raise NotImplementedError

    def batch(self, queries):
        return self.index.search(queries, K, threads=0).keys

    def live(self):
        return len(self.index)


ADAPTERS = {"simdex": SimdexLib, "hnswlib": HnswlibLib, "usearch": USearchLib}


# ---- helpers ---------------------------------------------------------------------------------

def load(path):
    import h5py
    with h5py.File(path, "r") as f:
        train = np.ascontiguousarray(f["train"][:], dtype=np.float32)
        test = np.ascontiguousarray(f["test"][:], dtype=np.float32)
    return train, test


def unit(a):
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)


def exact_top(queries, base, ids, k=K, chunk=256):
    """(nq, k) ids of the k most cosine-similar rows of base (row r has id ids[r])."""
    bn, qn = unit(base), unit(queries)
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for s in range(0, queries.shape[0], chunk):
        scores = qn[s:s + chunk] @ bn.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        out[s:s + chunk] = ids[np.take_along_axis(part, order, axis=1)]
    return out


def recall(found, truth):
    found = np.asarray(found, dtype=np.int64).reshape(truth.shape[0], -1)[:, :K]
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def per_call(fn, items):
    """Median seconds of fn(item) over items, each call timed on its own."""
    clock = time.perf_counter
    times = []
    for item in items:
        t0 = clock()
        fn(item)
        times.append(clock() - t0)
    return statistics.median(times)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def version(dist):
    try:
        from importlib.metadata import version as v
        return v(dist)
    except Exception:
        return "?"


def fmt_us(s):
    if s is None:
        return None
    us = s * 1e6
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 100 else f"{us:,.0f}"


# ---- mixed workload --------------------------------------------------------------------------

def mixed_run(lib, args, queries, pool2d, pool1d, id_from, id_limit, removable, seed):
    """--threads workers on lib for --seconds; returns a dict of counts and the removed ids."""
    counter = itertools.count(id_from)
    start_gate = threading.Barrier(args.threads + 1)
    stop_at = [0.0]
    out = [None] * args.threads
    n_pool, n_q = len(pool2d), len(queries)
    base_id = args.n

    def worker(t):
        rnd = random.Random(seed * 1009 + t)
        c = collections.Counter()
        errors, removed, remove_us = [], [], []
        qi = t * 37
        start_gate.wait()
        clock = time.perf_counter
        while clock() < stop_at[0]:
            u = rnd.random()
            try:
                if u < 0.90:
                    lib.one(queries[qi % n_q])
                    qi += 1
                    c["search"] += 1
                elif u < 0.99:
                    new_id = next(counter)
                    if new_id >= id_limit:
                        c["add_over_capacity"] += 1  # not run: hnswlib's capacity is fixed
                        continue
                    r = (new_id - base_id) % n_pool
                    lib.add_one(pool2d[r], pool1d[r], new_id)
                    removable.append(new_id)
                    c["add"] += 1
                else:
                    try:
                        old = removable.pop()
                    except IndexError:
                        c["remove_empty"] += 1
                        continue
                    t_rm = clock()
                    lib.remove_one(old)
                    remove_us.append((clock() - t_rm) * 1e6)
                    removed.append(old)
                    c["remove"] += 1
            except Exception as exc:  # counted and reported; the run goes on
                c["exception"] += 1
                if len(errors) < 3:
                    errors.append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        out[t] = (c, errors, removed, remove_us)

    workers = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(args.threads)]
    for w in workers:
        w.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + args.seconds
    start_gate.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    total = collections.Counter()
    errors, removed, remove_us = [], [], []
    for c, e, r, us in out:
        total.update(c)
        errors += e
        removed += r
        remove_us += us
    ops = total["search"] + total["add"] + total["remove"]
    return {"ops_per_s": ops / elapsed, "counts": total, "errors": errors, "removed": removed,
            "remove_us": statistics.median(remove_us) if remove_us else float("nan"),
            "next_id": next(counter), "elapsed": elapsed}


# ---- main ------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/minilm-dev-60k.hdf5")
    ap.add_argument("--n", type=int, default=None, help="index the first N train rows (40000; quick 5000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200, help="ef_construction")
    ap.add_argument("--ef", type=int, default=64, help="search ef for every library")
    ap.add_argument("--calls", type=int, default=None, help="one-row adds/removes per round (300; quick 100)")
    ap.add_argument("--queries", type=int, default=None, help="single queries per round (200; quick 50)")
    ap.add_argument("--batch", type=int, default=1000, help="queries in the batch search")
    ap.add_argument("--seconds", type=float, default=None, help="mixed workload duration (5; quick 2)")
    ap.add_argument("--threads", type=int, default=4, help="Python threads in the mixed workload")
    ap.add_argument("--max-mixed-adds", type=int, default=50_000,
                    help="adds allowed per mixed run (sizes hnswlib's fixed capacity)")
    ap.add_argument("--libs", default="simdex,hnswlib,usearch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke test: N=5000, fewer calls, 2 s mixed")
    args = ap.parse_args()
    quick = args.quick
    args.n = args.n or (5_000 if quick else 40_000)
    args.calls = args.calls or (100 if quick else 300)
    args.queries = args.queries or (50 if quick else 200)
    args.seconds = args.seconds or (2.0 if quick else 5.0)

    pp = os.environ.get("PYTHONPATH")
    print("command: " + (f"PYTHONPATH={pp} " if pp else "") + "python " + shlex.join(sys.argv))
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    print(f"machine: {cpu_model()}, {cores} cores ({usable} usable), simdex simd_level={sx.simd_level()}, "
          f"Python {platform.python_version()}, numpy {np.__version__}")

    train, test = load(args.data)
    n, dim = args.n, train.shape[1]
    if n >= train.shape[0]:
        raise SystemExit(f"--n must be below the {train.shape[0]} train rows (the rest are the rows to add)")
    base, pool = train[:n], train[n:]
    base_ids = np.arange(n, dtype=np.int64)
    pool2d = [pool[j:j + 1] for j in range(pool.shape[0])]
    pool1d = [pool[j] for j in range(pool.shape[0])]
    queries = test[:args.queries]
    q_rows = [queries[i] for i in range(queries.shape[0])]
    batch_q = test[:args.batch]
    print(f"data: {args.data}  base n={n} d={dim} (first rows of train), {pool.shape[0]} rows to add, "
          f"{len(q_rows)} single queries, batch {batch_q.shape[0]}; cosine, M={args.M}, "
          f"ef_construction={args.efc}, ef={args.ef}, k={K}; {args.repeats} rounds; "
          f"mixed: {args.threads} threads x {args.seconds:g} s")

    micro_ids = args.repeats * args.calls
    mixed_from = n + micro_ids
    capacity = mixed_from + args.repeats * args.max_mixed_adds

    wanted = [s.strip() for s in args.libs.split(",") if s.strip()]
    bad = [s for s in wanted if s not in ADAPTERS]
    if bad or "simdex" not in wanted:
        raise SystemExit(f"--libs must include simdex and name only {sorted(ADAPTERS)}; got {args.libs!r}")
    libs, notes, build = {}, [], {}
    for name in wanted:
        try:
            lib = ADAPTERS[name](dim, args, capacity)
        except ImportError as exc:
            print(f"note: {name} skipped (not installed: {exc})")
            notes.append(f"{name}: not installed, skipped")
            continue
        t0 = time.perf_counter()
        lib.build(base, base_ids)
        build[name] = time.perf_counter() - t0
        print(f"  built {name}: {build[name]:.1f} s ({cores} threads)", flush=True)
        libs[name] = lib
    names = list(libs)

    # ---- filters and exact answers, built once outside every timing
    rng = np.random.default_rng(args.seed)
    filters = {}
    for label, frac in (("50%", 0.5), ("5%", 0.05)):
        allowed = np.sort(rng.choice(n, max(K, int(n * frac)), replace=False)).astype(np.int64)
        mask = np.zeros(capacity, dtype=bool)
        mask[allowed] = True
        truth = exact_top(queries, base[allowed], allowed)
        filters[label] = (allowed, mask, truth, {nm: libs[nm].make_filter(allowed, mask) for nm in names})
    truth_all = exact_top(queries, base, base_ids)
    truth_batch = exact_top(batch_q, base, base_ids)

    res = {nm: collections.defaultdict(list) for nm in names}  # metric -> per-round values
    rec = {nm: {} for nm in names}
    failed = {nm: set() for nm in names}

    def measure(nm, key, fn):
        if key in failed[nm]:
            return None
        try:
            return fn()
        except Exception:
            failed[nm].add(key)
            print(f"\n!! {nm}: {key} raised:\n{traceback.format_exc()}", flush=True)
            return None

    # ---- microbenchmarks, libraries interleaved within each round
    for r in range(args.repeats):
        first = n + r * args.calls
        new_ids = list(range(first, first + args.calls))
        order = list(new_ids)
        random.Random(args.seed + r).shuffle(order)
        for nm in names:
            lib = libs[nm]

            def add_round():
                return per_call(lambda i: lib.add_one(pool2d[i - n], pool1d[i - n], i), new_ids)

            v = measure(nm, "add", add_round)
            if v is not None:
                res[nm]["add"].append(v)
            v = measure(nm, "remove", lambda: per_call(lib.remove_one, order))
            if v is not None:
                res[nm]["remove"].append(v)

            for q in q_rows[:5]:  # warm-up
                lib.one(q)
            v = measure(nm, "query", lambda: per_call(lib.one, q_rows))
            if v is not None:
                res[nm]["query"].append(v)
                rec[nm]["query"] = recall([lib.one(q) for q in q_rows], truth_all)
            for label, (allowed, mask, truth, per_lib) in filters.items():
                if not lib.has_filter:
                    continue
                f = per_lib[nm]
                key = f"filter {label}"
                v = measure(nm, key, lambda: per_call(lambda q: lib.filtered(q, f), q_rows))
                if v is not None:
                    res[nm][key].append(v)
                    rec[nm][key] = recall([lib.filtered(q, f) for q in q_rows], truth)

            if nm in ("simdex", "hnswlib"):
                def batch_round():
                    lib.batch(batch_q[:50])  # warm-up
                    t0 = time.perf_counter()
                    found = lib.batch(batch_q)
                    took = time.perf_counter() - t0
                    rec[nm]["batch"] = recall(found, truth_batch)
                    return batch_q.shape[0] / took

                v = measure(nm, "batch", batch_round)
                if v is not None:
                    res[nm]["batch"].append(v)
        print(f"  round {r + 1}/{args.repeats} done", flush=True)

    # ---- mixed workload (after the microbenchmarks; the index holds the base rows again)
    mixed = {nm: {"ops": [], "remove_us": [], "exceptions": 0, "errors": [], "counts": collections.Counter(),
                  "removed": set(), "live_ok": True, "live_msg": ""} for nm in names}
    next_id = {nm: mixed_from for nm in names}
    removable = {}
    for nm in names:
        seed_ids = list(range(n))
        random.Random(args.seed + 99).shuffle(seed_ids)
        removable[nm] = collections.deque(seed_ids)  # base rows first; new adds pushed on the right
    for r in range(args.repeats):
        for nm in names:
            lib = libs[nm]
            live_before = lib.live()
            limit = next_id[nm] + args.max_mixed_adds
            out = mixed_run(lib, args, q_rows, pool2d, pool1d, next_id[nm], limit, removable[nm],
                            args.seed + 31 * r)
            next_id[nm] = min(out["next_id"], limit)
            m = mixed[nm]
            m["ops"].append(out["ops_per_s"])
            m["remove_us"].append(out["remove_us"])
            m["counts"].update(out["counts"])
            m["exceptions"] += out["counts"]["exception"]
            m["errors"] += out["errors"][: max(0, 3 - len(m["errors"]))]
            m["removed"].update(out["removed"])
            if live_before is not None:
                expect = live_before + out["counts"]["add"] - out["counts"]["remove"]
                got = lib.live()
                if got != expect:
                    m["live_ok"] = False
                    m["live_msg"] = f"len(index) {got} != expected {expect} after mixed round {r + 1}"
            c = out["counts"]
            print(f"  mixed {nm} round {r + 1}: {out['ops_per_s']:,.0f} ops/s over {out['elapsed']:.2f} s "
                  f"(search {c['search']}, add {c['add']}, remove {c['remove']}, "
                  f"exceptions {c['exception']})", flush=True)

    # removed ids must never come back from a search
    for nm in names:
        lib, m = libs[nm], mixed[nm]
        try:
            found = np.asarray(lib.batch(batch_q), dtype=np.int64)
            m["resurrected"] = int(np.isin(found, np.fromiter(m["removed"], dtype=np.int64)).sum())
        except Exception:
            m["resurrected"] = None
            print(f"\n!! {nm}: search after the mixed workload raised:\n{traceback.format_exc()}")
        wrapped = next_id[nm] - n > pool.shape[0]
        if wrapped:
            notes.append(f"{nm}: more adds than spare train rows, so some rows were added again under new ids")

    # ---- table
    def med(nm, key):
        vals = res[nm].get(key) if nm in res else None
        return statistics.median(vals) if vals else None

    cols = ["simdex", "hnswlib", "usearch"]

    def cell(nm, text):
        if nm not in libs:
            return "not installed" if nm in wanted else "not run"
        return text

    rows = []

    def time_row(label, key, skip=None):
        vals = {nm: med(nm, key) for nm in names}
        cells = []
        for nm in cols:
            if skip and nm in skip:
                cells.append(cell(nm, skip[nm]))
            elif nm in libs and key in failed[nm]:
                cells.append("error")
            else:
                cells.append(cell(nm, fmt_us(vals.get(nm)) or "-"))
        s, h = vals.get("simdex"), vals.get("hnswlib")
        ratio = f"{h / s:.2f}" if s and h else "-"
        rows.append((label, cells, ratio))

    def recall_row(label, key, skip=None):
        cells = []
        for nm in cols:
            if skip and nm in skip:
                cells.append(cell(nm, skip[nm]))
            else:
                v = rec.get(nm, {}).get(key)
                cells.append(cell(nm, f"{v:.3f}" if v is not None else "-"))
        rows.append((label, cells, "-"))

    no_filter = {nm: "no filter" for nm in names if not libs[nm].has_filter}
    rows.append((f"build {n:,} rows, s ({cores} threads, timed apart)",
                 [cell(nm, f"{build[nm]:.1f}" if nm in build else "-") for nm in cols],
                 f"{build['hnswlib'] / build['simdex']:.2f}" if "hnswlib" in build else "-"))
    time_row("add one row, µs", "add")
    time_row("remove one row, µs", "remove")
    time_row("one query k=10, no filter, µs", "query")
    recall_row("  recall@10, no filter", "query")
    time_row("one query k=10, 50% filter, µs", "filter 50%", no_filter)
    recall_row("  recall@10, 50% filter (vs brute force on allowed)", "filter 50%", no_filter)
    time_row("one query k=10, 5% filter, µs", "filter 5%", no_filter)
    recall_row("  recall@10, 5% filter (vs brute force on allowed)", "filter 5%", no_filter)
    batch_skip = {nm: "not run" for nm in names if nm not in ("simdex", "hnswlib")}
    qps = {nm: med(nm, "batch") for nm in names}
    rows.append((f"batch search {batch_q.shape[0]} queries, QPS ({cores} threads)",
                 [cell(nm, batch_skip.get(nm) or ("error" if "batch" in failed.get(nm, ()) else
                                                  f"{qps[nm]:,.0f}" if qps.get(nm) else "-")) for nm in cols],
                 f"{qps['simdex'] / qps['hnswlib']:.2f}" if qps.get("simdex") and qps.get("hnswlib") else "-"))
    recall_row("  recall@10, batch", "batch", batch_skip)
    mops = {nm: statistics.median(mixed[nm]["ops"]) for nm in names}
    rows.append((f"mixed 90/9/1 search/add/remove, {args.threads} threads, ops/s",
                 [cell(nm, f"{mops[nm]:,.0f}" if nm in mops else "-") for nm in cols],
                 f"{mops['simdex'] / mops['hnswlib']:.2f}" if "hnswlib" in mops else "-"))
    rm_us = {nm: statistics.median(mixed[nm]["remove_us"]) for nm in names}
    rows.append(("  mixed: one-row remove under that load, median µs",
                 [cell(nm, f"{rm_us[nm]:,.1f}" if nm in rm_us else "-") for nm in cols],
                 f"{rm_us['hnswlib'] / rm_us['simdex']:.2f}" if "hnswlib" in rm_us else "-"))
    rows.append(("  mixed: exceptions (must be 0)",
                 [cell(nm, str(mixed[nm]["exceptions"]) if nm in mixed else "-") for nm in cols], "-"))
    rows.append(("  mixed: removed ids returned by a later search (must be 0)",
                 [cell(nm, str(mixed[nm].get("resurrected")) if nm in mixed else "-") for nm in cols], "-"))

    print(f"\n### Live-index operations (median of {args.repeats} rounds; per-call times are the "
          f"median call of each round)\n")
    print("| operation | simdex | hnswlib | usearch | simdex/hnswlib ratio |")
    print("|---|---|---|---|---|")
    for label, cells, ratio in rows:
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    print("\nRatio: >1 means simdex is faster. For times it is hnswlib time / simdex time; for "
          "QPS and ops/s it is simdex / hnswlib. Times include the Python call. usearch "
          f"{version('usearch')} has no filter argument in Index.search, so its filtered rows are "
          f"skipped. hnswlib {version('hnswlib')} filters through a Python callable (one call per "
          "visited node). Mixed workload: median ops/s over rounds, exceptions summed.")
    for nm in names:
        c = mixed[nm]["counts"]
        extra = ""
        if c["add_over_capacity"] or c["remove_empty"]:
            extra = f", adds over capacity {c['add_over_capacity']}, removes with nothing to remove {c['remove_empty']}"
        print(f"- mixed {nm}: all rounds: search {c['search']}, add {c['add']}, remove {c['remove']}, "
              f"exceptions {c['exception']}{extra}; per-round ops/s "
              + ", ".join(f"{v:,.0f}" for v in mixed[nm]["ops"])
              + ("" if mixed[nm]["live_ok"] else f"; COUNT MISMATCH: {mixed[nm]['live_msg']}"))
    for note in notes:
        print(f"- note: {note}")
    for nm in names:
        for e in mixed[nm]["errors"]:
            print(f"\n!! {nm} exception in the mixed workload:\n{e}")
    bad = sum(mixed[nm]["exceptions"] for nm in names if nm == "simdex")
    bad += 0 if mixed["simdex"]["live_ok"] else 1
    bad += 0 if mixed["simdex"].get("resurrected") == 0 else 1
    bad += len(failed["simdex"])
    print(f"\nsimdex live-index check: {'PASS' if not bad else 'FAIL'}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
