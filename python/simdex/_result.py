"""SearchResult: what every search returns."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt


class SearchResult(NamedTuple):
    """distances (q, k) float32 ascending (smaller is closer), ids (q, k) int64.

    Rows with fewer than k results are padded with id -1 and distance +inf. For a 1-D query
    both arrays are 1-D of length k. Unpacks like FAISS: ``D, I = index.search(q, 10)``.
    """

    distances: npt.NDArray[np.float32]
    ids: npt.NDArray[np.int64]


def finish(
    distances: np.ndarray, ids: np.ndarray, was_1d: bool, max_distance: object = None
) -> SearchResult:
    """The one place results are finished: drop results farther than max_distance (float or
    (q,) per-query thresholds) to -1 / +inf, squeeze a 1-D query."""
    from . import _checks

    thresholds = _checks.as_max_distance(max_distance, distances.shape[0])
    if thresholds is not None:
        far = distances > thresholds[:, None]
        distances = np.where(far, np.float32(np.inf), distances).astype(np.float32, copy=False)
        ids = np.where(far, -1, ids).astype(np.int64, copy=False)
    if was_1d:
        return SearchResult(distances[0], ids[0])
    return SearchResult(distances, ids)
