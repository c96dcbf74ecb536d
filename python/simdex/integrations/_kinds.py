"""Index kinds by name: the one table the integrations and the command line build indexes from.

``make_index("hnsw", dim, "cosine", n, {"M": 32})`` returns an empty simdex index (untrained
kinds are trained by ``build``). Each kind names the search parameter a recall / speed sweep
varies (``Kind.sweep``) and the values it tries by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import simdex as sx


@dataclass(frozen=True)
class Kind:
    """name: the kind's name; metrics: the metrics it supports; make(dim, metric, n, params):
    an empty index for n rows; sweep: (search parameter, default values) or None (exact)."""

    name: str
    metrics: tuple[str, ...]
    make: Callable[[int, str, int, dict[str, Any]], Any]
    sweep: tuple[str, tuple[int, ...]] | None


def default_m(dim: int, nbits: int) -> int:
    """PQ sub-spaces when none are given: a divisor of dim, dsub >= dim / 32 (8-bit) or
    dim / 64 (4-bit), as the demo and the README use."""
    return math.gcd(dim, 32 if nbits == 8 else 64)


def _flat(dim: int, metric: Any, n: int, params: dict[str, Any]) -> Any:
    return sx.FlatIndex(dim, metric, **params)


def _hnsw(dim: int, metric: Any, n: int, params: dict[str, Any]) -> Any:
    return sx.HNSWIndex(dim, metric, **params)


def _pq(dim: int, metric: Any, n: int, params: dict[str, Any]) -> Any:
    p = {"nbits": 8, "rerank": "memory", **params}
    m = p.pop("m", None) or default_m(dim, p["nbits"])
    return sx.PQIndex(dim, m, metric=metric, **p)


def _ivfpq(dim: int, metric: Any, n: int, params: dict[str, Any]) -> Any:
    p = {"nbits": 8, "rerank": "memory", **params}
    m = p.pop("m", None) or default_m(dim, p["nbits"])
    # FAISS's rule of thumb: about 4 sqrt(n) lists, never more lists than rows
    nlist = p.pop("nlist", None) or max(1, min(n, round(4 * math.sqrt(max(n, 1)))))
    return sx.IVFPQIndex(dim, nlist, m, metric=metric, **p)


def _binary(dim: int, metric: Any, n: int, params: dict[str, Any]) -> Any:
    return sx.BinaryIndex(dim, metric=metric, **{"rerank": "memory", **params})


def _leanvec(dim: int, metric: Any, n: int, params: dict[str, Any]) -> Any:
    p = {"kind": "id", **params}
    out_dim = p.pop("out_dim", None) or max(1, dim // 2)
    return sx.LeanVecIndex(dim, out_dim, metric=metric, **p)


_EF = ("ef", (16, 32, 64, 128, 256))
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("flat", ("l2", "ip", "cosine", "hamming"), _flat, None),
        Kind("hnsw", ("l2", "ip", "cosine", "hamming"), _hnsw, _EF),
        Kind("pq", ("l2", "ip", "cosine"), _pq, ("rerank_k", (10, 20, 50, 100, 200))),
        Kind("ivfpq", ("l2", "ip", "cosine"), _ivfpq, ("nprobe", (1, 2, 4, 8, 16, 32, 64))),
        Kind("binary", ("ip", "cosine"), _binary, ("rerank_k", (10, 20, 50, 100, 200, 500))),
        Kind("leanvec", ("l2", "ip", "cosine"), _leanvec, _EF),
    )
}


def get(name: str) -> Kind:
    """The Kind called name; ValueError listing the kinds otherwise."""
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ValueError(f"index must be one of {', '.join(map(repr, KINDS))}; got {name!r}")
    return kind


def make_index(
    name: str, dim: int, metric: str, n: int, params: dict[str, Any] | None = None
) -> Any:
    """An empty index of kind `name` for about n rows of dimension dim.

    params : constructor arguments of that index class (e.g. M, storage, m, nbits, nlist,
             out_dim); ValueError when the kind does not support the metric
    """
    kind = get(name)
    if metric not in kind.metrics:
        raise ValueError(
            f"index {name!r} supports metric {', '.join(map(repr, kind.metrics))}; got {metric!r}"
        )
    if params is not None and not isinstance(params, dict):
        raise TypeError(f"index parameters must be a dict; got {type(params).__name__}")
    return kind.make(dim, metric, n, dict(params or {}))


def build(
    name: str,
    x: np.ndarray,
    metric: str,
    params: dict[str, Any] | None = None,
    *,
    ids: np.ndarray | None = None,
    threads: int | None = None,
) -> Any:
    """An index of kind `name` holding the rows of x (n, d): trained on x first when the
    kind needs training (PQ, IVF-PQ, binary, LeanVec, int8 storage)."""
    dim = x.shape[1] * 8 if metric == "hamming" else x.shape[1]
    index = make_index(name, dim, metric, x.shape[0], params)
    # HNSW int8 storage learns its ranges from train (else from the first add, with a warning)
    if not getattr(index, "is_trained", True) or (name == "hnsw" and index.storage == "int8"):
        index.train(x)
    index.add(x, ids, threads=threads)
    return index
