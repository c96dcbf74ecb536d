"""Binary embeddings: sign codes, multi-bit residual codes (BEBR-style), and BinaryIndex.

Codes
-----
``binarize(x)`` keeps one bit per dimension: 1 where x > center (default 0), so 0.0 and -0.0
map to 0, packed like ``numpy.packbits`` (big-endian bits within a byte; ceil(d / 8) bytes).

``ResidualBinarizer(bits=B)`` approximates x (after an optional per-dimension center c) by B
training-free residual rounds::

    r_0 = x - c;   s_t = sign(r_t) in {-1, +1} (+1 where r_t > 0);   r_{t+1} = r_t - alpha_t s_t
    x  ~ c + sum_t alpha_t s_t

where alpha_t = mean |r_t| over the training set is the least-squares weight of round t
(argmin_a ||r_t - a s_t||^2 = <r_t, s_t> / <s_t, s_t>). Each round removes exactly
n * d * alpha_t^2 of squared error. The bit s_t = +1 of every round is one bit plane; a code
is its B planes one after the other: (B * ceil(d / 8),) uint8. With alpha halving per round
this is a uniform (B+1)-bit scalar code per dimension; with fitted alphas it is not uniform,
but the scores below stay exact for any alphas.

Scoring (C++ kernels at every SIMD level, cpp/kernels/binary/)
---------------------------------------------------------------
* symmetric: the query is encoded the same way; <s_qt, s_xu> = d - 2 popcount(q_t XOR x_u),
  so <q^, x^> is B*B XOR popcounts weighted by alpha_t * alpha_u (for B = 1 this is plain
  Hamming distance, scanned by the existing Hamming kernels).
* asymmetric: the float query against the planes: <q, s_t> = 2 * sum_{j: bit set} q_j - sum q.

BinaryIndex distances follow the index metric ('ip' or 'cosine', both 1 - <q, x>): the code
stage reports 1 - <q^, x^> (symmetric) or 1 - <q, x^> (asymmetric), re-ranking reports exact
1 - <q, x> from the float vectors.
"""

from __future__ import annotations

import numbers
import os
from typing import Any, Literal

import numpy as np

from . import _checks, _core, _progress, _result
from ._base import Index, reads, searches, writes
from ._checks import MAX_DIM
from ._format import Fields
from ._rerank import RerankStore
from ._result import SearchResult
from .kernels import normalize

MAX_BITS = 4
SCORINGS = ("symmetric", "asymmetric")
BINARY_METRICS = ("cosine", "ip")
DEFAULT_RERANK_FACTOR = 10  # rerank_k = 10 * k unless given


def _as_center(center: Any, dim: int) -> np.ndarray | float:
    """None / float / (dim,) floats -> float or (dim,) float32 threshold."""
    if center is None:
        return 0.0
    if isinstance(center, numbers.Real) and not isinstance(center, bool):
        value = float(center)
        if not np.isfinite(value):
            raise ValueError(f"center must be finite; got {value}")
        return value
    c = np.asarray(center)
    if c.dtype.kind not in "fiu":
        raise TypeError(f"center must be a float or an array of floats; got dtype {c.dtype}")
    if c.shape != (dim,):
        raise ValueError(
            f"center must be a float or have shape ({dim},), one per dimension; got {c.shape}"
        )
    c = c.astype(np.float32)
    if not np.isfinite(c).all():
        raise ValueError("center contains NaN or infinite values")
    return c


def binarize(x: Any, *, center: Any = None) -> np.ndarray:
    """Sign bits packed like numpy.packbits.

    x       : (n, d) or (d,) floats
    center  : None (0), a float, or (d,) floats: bit = 1 where x > center (so 0.0 and -0.0 -> 0)
    returns : (n, ceil(d / 8)) uint8, or (ceil(d / 8),) for a 1-D x; padding bits are 0
    """
    a, was_1d = _checks.as_float_rows(x, None, "x")
    c = _as_center(center, a.shape[1])
    codes = np.packbits(a > c, axis=1)
    return codes[0] if was_1d else codes


def _bit_order_queries(q: np.ndarray, plane_bytes: int) -> np.ndarray:
    """(q, d) float32 -> (q, 8 * plane_bytes) float32 with element 8g + i = q[:, 8g + 7 - i]
    (zero-padded): the order in which the kernels read the bits of a packed byte."""
    padded = np.zeros((q.shape[0], plane_bytes * 8), dtype=np.float32)
    padded[:, : q.shape[1]] = q
    return np.ascontiguousarray(
        padded.reshape(q.shape[0], plane_bytes, 8)[:, :, ::-1].reshape(q.shape[0], -1)
    )


class ResidualBinarizer:
    """Multi-bit binary codes from residual sign rounds (BEBR-style, training-free).

    bits   : rounds = bit planes per vector, 1..4
    center : learn a per-dimension mean in fit() and binarize x - mean (default False:
             threshold 0, which suits unit-norm embeddings)

    After fit(): ``alphas`` (bits,) float32 (least-squares weight of each round),
    ``center_`` (dim,) float32 or None, ``dim``, ``plane_bytes`` = ceil(dim / 8),
    ``code_size`` = bits * plane_bytes bytes per vector.
    """

    def __init__(self, bits: int = 1, *, center: bool = False) -> None:
        self.bits = _checks.check_positive_int(bits, "bits")
        if self.bits > MAX_BITS:
            raise ValueError(f"bits must be between 1 and {MAX_BITS}; got {bits}")
        if not isinstance(center, bool):
            raise TypeError(f"center must be True or False; got {type(center).__name__}")
        self.center = center
        self.alphas: np.ndarray | None = None
        self.center_: np.ndarray | None = None
        self.dim: int | None = None

    @property
    def is_fitted(self) -> bool:
        return self.alphas is not None

    @property
    def plane_bytes(self) -> int:
        return (self._fitted()[1] + 7) // 8

    @property
    def code_size(self) -> int:
        return self.bits * self.plane_bytes

    def _fitted(self) -> tuple[np.ndarray, int]:
        """(alphas, dim) of a fitted binarizer."""
        if self.alphas is None or self.dim is None:
            raise ValueError("the binarizer is not fitted; call fit(x) first")
        return self.alphas, self.dim

    def fit(self, x: Any) -> ResidualBinarizer:
        """Learn the round weights (and the center) from sample vectors x (n, d)."""
        a, _ = _checks.as_float_rows(x, None, "x", allow_1d=False)
        self.dim = a.shape[1]
        self.center_ = a.mean(axis=0, dtype=np.float64).astype(np.float32) if self.center else None
        r = a.astype(np.float64) - (self.center_ if self.center_ is not None else 0.0)
        alphas = []
        for _ in range(self.bits):
            alpha = float(np.abs(r).mean())
            if alpha == 0.0:  # all-zero residual (e.g. constant data): keep a harmless weight
                alpha = float(np.finfo(np.float32).tiny)
            alphas.append(alpha)
            r -= alpha * np.where(r > 0, 1.0, -1.0)
        self.alphas = np.asarray(alphas, dtype=np.float32)
        return self

    def encode(self, x: Any) -> np.ndarray:
        """x (n, dim) floats -> codes (n, bits * plane_bytes) uint8 (planes one after the other);
        a 1-D x gives a 1-D code."""
        self._fitted()
        a, was_1d = _checks.as_float_rows(x, self.dim, "x")
        codes = self._encode(a)
        return codes[0] if was_1d else codes

    def _encode(self, a: np.ndarray) -> np.ndarray:
        r = a.astype(np.float32, copy=True)
        if self.center_ is not None:
            r -= self.center_
        planes = []
        for alpha in self._fitted()[0]:
            positive = r > 0
            planes.append(np.packbits(positive, axis=1))
            r -= np.where(positive, alpha, -alpha).astype(np.float32)
        return np.ascontiguousarray(np.concatenate(planes, axis=1))

    def decode(self, codes: Any, *, rounds: int | None = None) -> np.ndarray:
        """codes (n, bits * plane_bytes) uint8 -> (n, dim) float32 = center + sum_t alpha_t s_t
        over the first `rounds` planes (default all)."""
        alphas, dim = self._fitted()
        c, was_1d = _checks.as_codes(codes, self.code_size, "codes")
        rounds = self.bits if rounds is None else _checks.check_positive_int(rounds, "rounds")
        if rounds > self.bits:
            raise ValueError(f"rounds must be <= bits={self.bits}; got {rounds}")
        pb = self.plane_bytes
        out = np.zeros((c.shape[0], dim), dtype=np.float32)
        for t in range(rounds):
            bits = np.unpackbits(c[:, t * pb : (t + 1) * pb], axis=1, count=dim)
            out += alphas[t] * (2.0 * bits.astype(np.float32) - 1.0)
        if self.center_ is not None:
            out += self.center_
        return out[0] if was_1d else out

    # ---- scoring parameters (see cpp/kernels/binary/binary.hpp) --------------------------
    def _symmetric_weights(self) -> tuple[np.ndarray, float]:
        """(W (bits, bits) float32, offset) with
        1 - <s-part(q), s-part(x)> = offset + sum W * popcount."""
        alphas, dim = self._fitted()
        a = alphas.astype(np.float64)
        weights = (2.0 * np.outer(a, a)).astype(np.float32)
        offset = 1.0 - dim * float(a.sum()) ** 2
        return weights, offset

    def _asymmetric_weights(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weights (bits,), offsets (q,)) with 1 - <q, x^> = offset + sum_t w_t * masked_sum_t."""
        a = self._fitted()[0].astype(np.float64)
        offsets = 1.0 + q.sum(axis=1, dtype=np.float64) * a.sum()
        if self.center_ is not None:
            offsets -= q.astype(np.float64) @ self.center_.astype(np.float64)
        return (-2.0 * a).astype(np.float32), offsets.astype(np.float32)

    def __repr__(self) -> str:
        fitted = f", dim={self.dim}" if self.is_fitted else ""
        return f"ResidualBinarizer(bits={self.bits}, center={self.center}{fitted})"


class BinaryIndex(Index):
    """Vectors binarized to 1-4 bits per dimension, scanned with popcounts, optionally re-ranked.

    dim             : float vector dimension
    bits            : bit planes per vector (1 = sign bits; 2-4 = residual rounds)
    metric          : 'cosine' (vectors normalised at add time) or 'ip'; distances are
                      1 - <q, x> (estimated from the codes, exact after re-ranking)
    scoring         : 'symmetric' (query binarized too; XOR popcounts: Hamming for bits=1) or
                      'asymmetric' (float query against the bit planes: slower, more accurate)
    center          : binarize x - mean instead of x (learned by train). Symmetric scores then
                      rank by <q - c, x - c> (the per-row <c, x> term is dropped); asymmetric
                      scores stay exact 1 - <q, x^>. On unit-norm embeddings it buys little.
    graph           : False = exact scan of all codes (threaded, top-k in C++); True = an HNSW
                      graph over the Hamming distance of the codes (all planes concatenated),
                      candidates re-scored with the bit-plane score
    M, ef_construction : graph parameters (graph=True only)
    rerank          : None, 'memory' (float32 vectors in RAM) or a file path (vectors in a
                      memory-mapped file): the code stage proposes rerank_k candidates that are
                      re-scored exactly
    overwrite       : allow rerank to name an existing non-empty file (it is emptied)

    Bytes per vector: bits * ceil(dim / 8) for the codes + 8 for the id (+ 4 * dim re-rank
    vectors in RAM with rerank='memory'; + the graph links with graph=True).
    """

    kind = "binary"

    def __init__(
        self,
        dim: int,
        *,
        bits: int = 1,
        metric: Literal["cosine", "ip"] = "cosine",
        scoring: Literal["symmetric", "asymmetric"] = "symmetric",
        center: bool = False,
        graph: bool = False,
        M: int = 16,
        ef_construction: int = 200,
        rerank: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.dim = _checks.check_dim(dim)
        self.metric = _checks.check_metric(metric, BINARY_METRICS)
        self.scoring = _checks.check_choice(scoring, "scoring", SCORINGS)
        if not isinstance(graph, bool):
            raise TypeError(f"graph must be True or False; got {type(graph).__name__}")
        self.graph = graph
        self.M = _checks.check_positive_int(M, "M", 2)
        self.ef_construction = _checks.check_list_size(ef_construction, "ef_construction")
        self.binarizer = ResidualBinarizer(bits, center=center)
        self.bits = self.binarizer.bits
        self.plane_bytes = (self.dim + 7) // 8
        self.code_size = self.bits * self.plane_bytes
        rerank = RerankStore.check_where(rerank, overwrite)
        self._store: RerankStore | None = (
            None if rerank is None else RerankStore(self.dim, self.metric, rerank)
        )
        self._init_ids(reuse_slots=True)
        self._hnsw: Any = None
        self._ef = 64
        if graph:
            from .hnsw import HNSWIndex

            self._hnsw = HNSWIndex(
                self.code_size * 8, "hamming", M=self.M, ef_construction=self.ef_construction
            )
        self._make_core()

    def _make_core(self) -> None:
        """The C++ object every add / remove / search goes through: the codes by slot, the
        id table, the re-rank rows and the graph over the codes."""
        self._core = _core.BinaryCore(
            self.dim,
            self.bits,
            self._idt,
            None if self._store is None else self._store.core,
            None if self._hnsw is None else self._hnsw._core,
        )

    # ---- properties ---------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return self.binarizer.is_fitted

    @property
    def alphas(self) -> np.ndarray | None:
        return self.binarizer.alphas

    @property
    def ef(self) -> int:
        """Default graph search list size (graph=True); search uses max(ef, candidates)."""
        return self._ef

    @ef.setter
    def ef(self, value: int) -> None:
        self._ef = _checks.check_list_size(value, "ef")

    @property
    def rerank(self) -> str | None:
        if self._store is None:
            return None
        return "memory" if self._store.path is None else self._store.path

    @property
    def nbytes(self) -> int:
        total = self._core.nbytes + self._idt.nbytes
        if self._store is not None:
            total += self._store.nbytes
        if self._hnsw is not None:
            total += self._hnsw.nbytes
        return int(total)

    def _prepare(self, x: Any, name: str) -> tuple[np.ndarray, bool]:
        a, was_1d = _checks.as_float_rows(x, self.dim, name)
        if self.metric == "cosine":
            a = normalize(a)
        return a, was_1d

    # ---- building -----------------------------------------------------------------------
    @writes
    def train(self, x: Any, *, progress: bool = False) -> BinaryIndex:
        """Learn the residual round weights (and the center if center=True) from x (n, dim).
        Without train(), the first add() trains on its vectors (progress: a one-step bar)."""
        _checks.check_untrained(self, len(self))
        a, _ = self._prepare(x, "x")
        with _progress.Progress(progress, 1, "Binary train", "stage") as bar:
            self.binarizer.fit(a)
            bar.update()
        return self

    @writes
    def add(
        self, x: Any, ids: Any = None, *, threads: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Binarize and add vectors x (n, dim); returns their ids (n,) int64.
        Slots of removed vectors are reused first (progress: a bar over the rows encoded, or
        inserted into the graph with graph=True)."""
        threads = _checks.check_threads(threads)
        _progress.check(progress)
        a, _ = self._prepare(x, "x")
        n = a.shape[0]
        if not self.is_trained:
            self.binarizer.fit(a)
        with _progress.Progress(progress and self._hnsw is None, n, "Binary add") as bar:
            codes = np.concatenate(
                [self.binarizer._encode(a[part]) for part in _progress.chunks(n, bar)]
            )
        new_ids = None if ids is None else _checks.as_ids(ids, n)
        # One C++ call: bind ids (freed slots first), store codes and rows, insert into the
        # graph; all or nothing. With a graph bar: one call per chunk, earlier ones undone.
        with _progress.Progress(progress and self._hnsw is not None, n, "Binary graph add") as bar:
            if not bar.shown:
                added: np.ndarray = self._core.add(codes, a, new_ids, threads)
                return added
            done: list[np.ndarray] = []
            try:
                for part in _progress.chunks(n, bar, chunk=max(1000, n // 100)):
                    done.append(
                        self._core.add(
                            np.ascontiguousarray(codes[part]),
                            np.ascontiguousarray(a[part]),
                            None if new_ids is None else np.ascontiguousarray(new_ids[part]),
                            threads,
                        )
                    )
            except BaseException:
                for chunk in done:
                    self._core.remove(chunk)
                raise
            return np.concatenate(done) if done else np.zeros(0, dtype=np.int64)

    @writes
    def remove(self, ids: Any) -> int:
        """Remove vectors by id (unknown ids are ignored); returns how many were removed.
        Removed ids are never returned; their slots are reused by later adds."""
        removed: int = self._core.remove(_checks.as_id_list(ids))
        return removed

    # ---- search -------------------------------------------------------------------------
    @searches
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        rerank_k: int | None = None,
        ef: int | None = None,
        filter: Any = None,
        max_distance: Any = None,
        threads: int | None = None,
    ) -> SearchResult:
        """k nearest neighbours by the code score, re-ranked exactly when the index has rerank.

        queries      : (q, dim) or (dim,) floats (float32 taken without copy)
        k            : int >= 1
        rerank_k     : candidates from the code stage re-scored with the float vectors
                       (default 10 * k; must be >= k; only with rerank=...)
        ef           : graph search list size (graph=True; default the ef property)
        filter       : int64 array of allowed ids, or boolean mask indexed by id
        max_distance : float or (q,) floats; results farther than it are dropped (-1 / +inf)
        threads      : None = all cores
        returns      : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64, -1 padded)
        """
        k = _checks.check_k(k)
        threads = _checks.check_threads(threads)
        if rerank_k is not None:
            rerank_k = _checks.check_list_size(rerank_k, "rerank_k")
            if self._store is None:
                raise ValueError(
                    "rerank_k needs an index built with rerank='memory' or a file path"
                )
            if rerank_k < k:
                raise ValueError(f"rerank_k must be >= k={k}; got {rerank_k}")
        if ef is not None:
            ef = _checks.check_list_size(ef, "ef")
            if self._hnsw is None:
                raise ValueError("ef applies to graph=True indexes only")
        q, was_1d = self._prepare(queries, "queries")
        nq = q.shape[0]
        if self._hnsw is not None:  # removed slots are out of the graph already
            mask = allowed = self._allowed_slots(filter)
        else:
            mask = self._slot_mask(filter)
        if len(self) == 0 or (mask is not None and not mask.any()):
            return self._empty_result(nq, k, was_1d, max_distance)
        candidates = k
        if self._store is not None:
            candidates = rerank_k if rerank_k is not None else DEFAULT_RERANK_FACTOR * k
        # One C++ call: scan the codes or walk the graph, score, re-rank, slots to ids.
        block, bits_q, weights, offsets = self._query_block(q)
        alpha = (
            float(self.binarizer._fitted()[0][0])
            if self.bits == 1 and self.scoring == "symmetric"
            else 0.0
        )
        allowed_ids = filter_offsets = allowed_mask = None
        codes_q = None
        if self._hnsw is not None:
            allowed_ids, filter_offsets, allowed_mask = _checks.as_filter(allowed, nq)
            codes_q = self.binarizer._encode(q) if alpha == 0.0 else block
            ef = max(self._ef if ef is None else ef, candidates)
        dist, ids = self._core.search(
            self.scoring,
            block,
            nq,
            bits_q,
            weights,
            offsets,
            alpha,
            k,
            candidates,
            0 if ef is None else ef,
            None if self._hnsw is not None else mask,
            allowed_ids,
            filter_offsets,
            allowed_mask,
            codes_q,
            q,
            threads,
        )
        return _result.finish(dist, ids, was_1d, max_distance)

    def _query_block(self, q: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
        """(queries, bits_q, weights, offsets) for the bit-plane kernels."""
        nq = q.shape[0]
        if self.scoring == "symmetric":
            weights, offset = self.binarizer._symmetric_weights()
            return (
                self.binarizer._encode(q),
                self.bits,
                weights,
                np.full(nq, offset, dtype=np.float32),
            )
        weights, offsets = self.binarizer._asymmetric_weights(q)
        return _bit_order_queries(q, self.plane_bytes), 0, weights, offsets

    # ---- persistence --------------------------------------------------------------------
    @reads
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        inner = None if self._hnsw is None else self._hnsw._state()
        return self._state_params(inner), self._state_arrays(inner)

    def _state_params(self, inner: tuple[dict[str, Any], dict[str, Any]] | None) -> dict[str, Any]:
        params = {
            "dim": self.dim,
            "bits": self.bits,
            "metric": self.metric,
            "scoring": self.scoring,
            "center": self.binarizer.center,
            "graph": self.graph,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef": self._ef,
            "next_id": self._ids_state()[1],
        }
        if self._store is not None:
            params.update(self._store.params())
        if inner is not None:
            params["hnsw"] = inner[0]
        return params

    def _state_arrays(
        self, inner: tuple[dict[str, Any], dict[str, Any]] | None
    ) -> dict[str, np.ndarray]:
        arrays = {"codes": self._core.codes(), "ids": self._ids_state()[0]}
        if self.alphas is not None:
            arrays["alphas"] = self.alphas
        if self.binarizer.center_ is not None:
            arrays["center"] = self.binarizer.center_
        if self._store is not None:
            arrays.update(self._store.arrays())
        if inner is not None:
            arrays.update({"hnsw." + name: a for name, a in inner[1].items()})
        return arrays

    @classmethod
    def _from_state(cls, f: Fields) -> BinaryIndex:
        # built without a store: a file store is re-opened below, never emptied
        index = f.build(
            cls,
            f.int("dim", 1, MAX_DIM),
            bits=f.int("bits", 1, 64),
            metric=f.choice("metric", BINARY_METRICS),
            scoring=f.choice("scoring", SCORINGS),
            center=f.bool("center"),
            graph=False,
            M=f.int("M", 2, 1024),
            ef_construction=f.int("ef_construction", 1, _checks.MAX_LIST),
        )
        index.graph = f.bool("graph")
        index.ef = f.int("ef", 1, _checks.MAX_LIST)
        ids = f.ids("ids")
        codes = f.array("codes", np.uint8, (ids.shape[0], index.code_size))
        alphas = f.optional_array("alphas", np.float32, (index.bits,), finite=True)
        if alphas is not None:
            f.bounded("alphas", alphas, index.dim)
        if alphas is not None:
            index.binarizer.alphas = np.array(alphas)
            index.binarizer.dim = index.dim
            if index.binarizer.center:
                index.binarizer.center_ = np.array(
                    f.bounded(
                        "center",
                        f.array("center", np.float32, (index.dim,), finite=True),
                        index.dim,
                    )
                )
        elif (ids >= 0).any():
            raise f.error("alphas", "missing, but the index holds vectors")
        index._restore_ids(ids, f.int("next_id", 0, 2**62), "binary")
        if f.has("rerank"):
            index._store = f.rows_for(RerankStore.restore(f, index.dim, index.metric), ids.shape[0])
        if index.graph:
            from .hnsw import HNSWIndex

            index._hnsw = g = HNSWIndex._from_state(f.sub("hnsw", "hnsw."))
            if (g.dim, g.metric) != (index.code_size * 8, "hamming"):
                raise f.error(
                    "hnsw",
                    f"a {g.dim}-d {g.metric} graph does not fit {index.code_size}-byte codes",
                )
            nodes = g.ids
            if nodes.size != int((ids >= 0).sum()) or (
                nodes.size and (nodes.max() >= ids.shape[0] or (ids[nodes] < 0).any())
            ):
                raise f.error("ids", "the live slots are not the graph's nodes")
        index._make_core()
        index._core.restore(np.ascontiguousarray(codes))
        return index

    def _repr_fields(self) -> str:
        fields = f"bits={self.bits}, scoring={self.scoring!r}"
        if self.binarizer.center:
            fields += ", center=True"
        if self.graph:
            fields += f", graph=True, M={self.M}"
        if self._store is not None:
            fields += f", rerank={self.rerank!r}"
        return fields
