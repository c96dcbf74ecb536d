"""Writes the back-compatibility fixtures of tests/data: one small index file per index kind
(<kind>-v<format>.sdx) and its expected search results (.npz: queries, k, ids, distances).

    python tests/data/make_fixtures.py [VERSION [NAME ...]]   # default v1, every name

Run it with the release whose files must keep loading (e.g. PYTHONPATH=<that build>), then
commit the new files; test_format.test_files_from_earlier_versions_still_load checks them.
Existing files are never overwritten; NAMEs restrict the run to those kinds (a new format
version of one index kind writes only that kind's files).

tests/data/approximate/ holds files whose searches a later version answers with estimates
rounded differently (e.g. a RaBitQ ip file of format 1 without re-rank rows: its codes are now
scored in the centred form), so the exact comparison does not apply: tests/test_rabitq.py
checks them with tolerances. A file moved there is still never overwritten.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

import simdex as sx

HERE = pathlib.Path(__file__).parent


def data(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((8, d)).astype(np.float32)
    return (centers[rng.integers(0, 8, n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


def main() -> int:
    version = sys.argv[1] if len(sys.argv) > 1 else "v1"
    x, q = data(600, 16, 1), data(5, 16, 2)
    ids = np.arange(600, dtype=np.int64) * 3 + 7
    kinds = {
        "hnsw-float32": lambda: sx.HNSWIndex(16, "l2", M=8, ef_construction=40),
        "hnsw-int8": lambda: sx.HNSWIndex(16, "cosine", M=8, ef_construction=40, storage="int8"),
        "pq8-rerank": lambda: sx.PQIndex(16, 4, metric="l2", rerank="memory"),
        "pq4": lambda: sx.PQIndex(16, 4, nbits=4, metric="ip"),
        "ivfpq8": lambda: sx.IVFPQIndex(16, 8, 4, metric="l2"),
        "ivfpq4": lambda: sx.IVFPQIndex(16, 8, 4, nbits=4, metric="cosine"),
        "leanvec": lambda: sx.LeanVecIndex(16, 8, kind="id", metric="ip", M=8, ef_construction=40),
        "binary": lambda: sx.BinaryIndex(16, bits=2, rerank="memory"),
        "binary-graph": lambda: sx.BinaryIndex(16, graph=True, M=8, ef_construction=40),
        "rabitq": lambda: sx.RaBitQIndex(16, bits=4, metric="l2", rerank="memory"),
        "ivf-rabitq": lambda: sx.IVFRaBitQIndex(16, 8, bits=1, metric="cosine"),
        "hnsw-rabitq": lambda: sx.HNSWIndex(16, "ip", storage="rabitq", bits=2, M=8, ef_construction=40),
        "rabitq-ip": lambda: sx.RaBitQIndex(16, bits=2, metric="ip", rerank="memory"),
        "ivf-rabitq-ip": lambda: sx.IVFRaBitQIndex(16, 8, bits=1, metric="ip"),
    }
    if len(sys.argv) > 2:
        kinds = {name: kinds[name] for name in sys.argv[2:]}
    for name, make in kinds.items():
        path = HERE / f"{name}-{version}.sdx"
        if path.exists() or (HERE / "approximate" / path.name).exists():
            continue
        index = make()
        if hasattr(index, "train") and not isinstance(index, sx.HNSWIndex):
            index.train(x)
        index.add(x, ids, threads=1)
        if hasattr(index, "remove"):
            index.remove(ids[::10])  # removed rows are part of what a file holds
        index.save(path)
        dist, found = sx.load(path).search(q, 5)
        np.savez(path.with_suffix(".npz"), queries=q, k=np.int64(5), ids=found, distances=dist)
        print("wrote", path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
