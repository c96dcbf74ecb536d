"""Instructions per one-query IVFRaBitQIndex.search call, for callgrind: run with N = 0 and
N = 200 calls and subtract (the index is loaded from a saved file: INDEX, default the 60k
MiniLM dev IVFRaBitQIndex(384, 256, bits=1, metric="cosine", rerank="memory") of session 9).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=build-dev/pkg valgrind --tool=callgrind \\
        <python> bench/cg_rabitq_one.py NPROBE RERANK_K N

(<python>: the real interpreter, not a pyenv shim, or callgrind measures the shim.)
"""

from __future__ import annotations

import os
import sys

import h5py
import numpy as np

import simdex as sx

f = h5py.File(os.environ.get("DATA", "/work/shared/data/minilm-dev-60k.hdf5"), "r")
queries = np.asarray(f["test"], dtype=np.float32)[: int(sys.argv[3])]
index = sx.load(os.environ.get("INDEX", "/work/scratch/ivf.sx"))
nprobe, rerank_k = int(sys.argv[1]), int(sys.argv[2])
for query in queries:
    index.search(query, 10, nprobe=nprobe, rerank_k=rerank_k)
