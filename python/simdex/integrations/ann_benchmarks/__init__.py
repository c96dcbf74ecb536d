"""ann-benchmarks wrappers for every simdex index kind (https://github.com/erikbern/ann-benchmarks).

To benchmark simdex there, copy this folder to ``ann_benchmarks/algorithms/simdex/`` of an
ann-benchmarks checkout (it holds ``config.yml``, ``Dockerfile`` and ``module.py``), then
``python install.py --algorithm simdex`` and ``python run.py --algorithm simdex-hnsw ...``.
The classes only need NumPy and simdex, not ann-benchmarks itself.
"""

from .module import (
    SimdexANN,
    SimdexBinary,
    SimdexFlat,
    SimdexHNSW,
    SimdexIVFPQ,
    SimdexLeanVec,
    SimdexPQ,
)

__all__ = [
    "SimdexANN",
    "SimdexBinary",
    "SimdexFlat",
    "SimdexHNSW",
    "SimdexIVFPQ",
    "SimdexLeanVec",
    "SimdexPQ",
]
