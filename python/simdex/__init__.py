"""simdex: vector similarity search with a C++ SIMD core.

NumPy in, NumPy out. Every search returns SearchResult(distances, ids): distances ascending
(smaller is closer), ids int64, padded with -1 / +inf.
"""

from __future__ import annotations

from . import _core, io, kernels  # noqa: F401  (_core: the extension loads with the package)
from ._checks import MAX_THREADS
from ._format import load
from ._result import SearchResult
from .binary import BinaryIndex, ResidualBinarizer, binarize
from .flat import FlatIndex
from .hnsw import HNSWIndex
from .io import recall_at_k
from .ivf import IVFPQIndex
from .kernels import cpu_features, distances, knn, simd_level
from .kmeans import kmeans
from .leanvec import LeanVec, LeanVecIndex
from .lid import lid
from .multivector import MultiVectorIndex, MuveraEncoder, chamfer, muvera_diagnostic
from .pq import PQIndex, ProductQuantizer
from .rabitq import IVFRaBitQIndex, RaBitQ, RaBitQIndex

__version__ = "0.1.0"

__all__ = [
    "MAX_THREADS",
    "BinaryIndex",
    "FlatIndex",
    "HNSWIndex",
    "IVFPQIndex",
    "LeanVec",
    "LeanVecIndex",
    "PQIndex",
    "ProductQuantizer",
    "IVFRaBitQIndex",
    "RaBitQ",
    "RaBitQIndex",
    "ResidualBinarizer",
    "SearchResult",
    "binarize",
    "cpu_features",
    "distances",
    "io",
    "kernels",
    "kmeans",
    "knn",
    "lid",
    "load",
    "MultiVectorIndex",
    "MuveraEncoder",
    "chamfer",
    "muvera_diagnostic",
    "recall_at_k",
    "simd_level",
]
