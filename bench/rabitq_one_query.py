"""One query per call vs one batch: IVFRaBitQIndex on the dev data (what a service does).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=build-dev/pkg python bench/rabitq_one_query.py [INDEX]

INDEX: a saved IVFRaBitQIndex(384, 256, bits=1, metric="cosine", rerank="memory") of the
dev rows (built and saved there when the file does not exist; default /tmp/ivf-rabitq-dev.sx).
Prints microseconds per query: best of 3 passes of 300 one-query calls, then one batch of 300.
"""

from __future__ import annotations

import os
import sys
import time

import h5py
import numpy as np

import simdex as sx

DATA = "/work/shared/data/minilm-dev-60k.hdf5"  # as bench_rabitq.py; SIMDEX_DEV_DATA overrides


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/ivf-rabitq-dev.sx"
    with h5py.File(os.environ.get("SIMDEX_DEV_DATA", DATA), "r") as f:
        q = np.asarray(f["test"], dtype=np.float32)[:300]
        if not os.path.exists(path):
            x = np.asarray(f["train"], dtype=np.float32)
            index = sx.IVFRaBitQIndex(x.shape[1], 256, bits=1, metric="cosine", rerank="memory")
            index.train(x)
            index.add(x)
            index.save(path)
    index = sx.load(path)
    for nprobe, rerank_k in [(1, 10), (48, 30)]:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for i in range(len(q)):
                index.search(q[i], 10, nprobe=nprobe, rerank_k=rerank_k)
            best = min(best, (time.perf_counter() - t) / len(q))
        t = time.perf_counter()
        index.search(q, 10, nprobe=nprobe, rerank_k=rerank_k, threads=1)
        batch = (time.perf_counter() - t) / len(q)
        print(f"nprobe {nprobe} rerank_k {rerank_k}: one per call {best * 1e6:.1f} us, "
              f"batch {batch * 1e6:.1f} us per query")


if __name__ == "__main__":
    main()
