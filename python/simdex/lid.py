"""Local intrinsic dimensionality (LID): the maximum-likelihood estimate per point.

For a point with Euclidean distances r_1 <= ... <= r_k to its k nearest other points
(Levina & Bickel 2005; Amsaleg et al. 2015):

    LID = -1 / ( (1/k) * sum_i ln(r_i / r_k) )

Points in dense, low-dimensional neighbourhoods get small values; points whose neighbours are
all about equally far get large ones. HNSWIndex.add(insertion_order="lid_desc") inserts points
in descending LID ("The Impacts of Data, Ordering, and Intrinsic Dimensionality on Recall in
HNSW"). The neighbours come from simdex's own exact search (simdex.knn).

Conventions: zero distances (exact duplicates) carry no scale information and are left out of
the mean; a point whose k neighbours are all duplicates gets 0; a point whose neighbours are
all at exactly the same positive distance gets +inf.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks
from .kernels import knn


def lid(x: Any, k: int = 20, *, threads: int | None = None) -> np.ndarray:
    """MLE local intrinsic dimensionality of every row of x.

    x       : (n, d) float vectors (float32 taken without copy), n > k
    k       : number of neighbours (int >= 1), not counting the point itself
    threads : None = all cores
    returns : (n,) float64, >= 0 (+inf for equidistant neighbourhoods, see module doc)
    """
    a, _ = _checks.as_float_rows(x, None, "x", allow_1d=False)
    k = _checks.check_k(k)
    threads = _checks.check_threads(threads)
    n = a.shape[0]
    if n <= k:
        raise ValueError(
            f"lid needs more than k={k} points (k neighbours besides each point); got n={n}. "
            "Hint: lower k"
        )
    dist, ids = knn(a, a, k + 1, "l2", threads=threads)
    # Drop each point itself (with duplicates it may not be in column 0; if ties pushed it out
    # of the k + 1 found, drop the farthest instead).
    is_self = ids == np.arange(n)[:, None]
    drop = np.where(is_self.any(axis=1), np.argmax(is_self, axis=1), k)
    keep = np.ones(ids.shape, dtype=bool)
    keep[np.arange(n), drop] = False
    r = np.sqrt(np.maximum(dist[keep].reshape(n, k).astype(np.float64), 0.0))
    r_k = r[:, -1:]
    positive = r > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(
            positive, np.log(np.where(positive, r, 1.0) / np.where(r_k > 0, r_k, 1.0)), 0.0
        )
        count = positive.sum(axis=1)
        mean = logs.sum(axis=1) / np.maximum(count, 1)
        out = np.where(mean < 0, -1.0 / mean, np.inf)
    out[r_k[:, 0] == 0] = 0.0
    return out
