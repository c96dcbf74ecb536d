"""Instructions per one-query PQIndex.search call (PQ 64x4, 384-d, 64 codes: the per-call
cost, not the scan), for callgrind: run with N = 0 and N = 400 calls and subtract.

    PYTHONPATH=build-dev/pkg valgrind --tool=callgrind <python> bench/cg_pq_call.py simdex 400
    FAISS_SIMD_LEVEL=AVX2 valgrind --tool=callgrind <python> bench/cg_pq_call.py faiss 400

(<python>: the real interpreter, not a pyenv shim, or callgrind measures the shim.)
"""

from __future__ import annotations

import sys

import numpy as np

which, n_calls = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.standard_normal((1024, 384)).astype(np.float32)
q = rng.standard_normal((max(n_calls, 1), 384)).astype(np.float32)
books = rng.standard_normal((64, 16, 6)).astype(np.float32)
if which == "simdex":
    import simdex as sx

    index = sx.PQIndex(384, 64, nbits=4, metric="l2")
    index.pq.codebooks = books
    index.add(x[:64])
    index.search(q[0], 10, threads=1)  # warm
    for i in range(n_calls):
        index.search(q[i], 10, threads=1)
else:
    import faiss

    faiss.omp_set_num_threads(1)
    f = faiss.IndexPQFastScan(384, 64, 4, faiss.METRIC_L2)
    faiss.copy_array_to_vector(books.ravel(), f.pq.centroids)
    f.is_trained = True
    f.add(x[:64])
    f.search(q[0:1], 10)
    for i in range(n_calls):
        f.search(q[i : i + 1], 10)
