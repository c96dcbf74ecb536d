"""SearchResult: what every search returns."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class SearchResult(NamedTuple):
    """distances (q, k) float32 ascending (smaller is closer), ids (q, k) int64.

    Rows with fewer than k results are padded with id -1 and distance +inf. For a 1-D query
    both arrays are 1-D of length k. Unpacks like FAISS: ``D, I = index.search(q, 10)``.
    """

    distances: np.ndarray
    ids: np.ndarray
