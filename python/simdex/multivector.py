"""Multi-vector (late-interaction, ColBERT-style) retrieval.

A document or a query is a *set* of token vectors; their similarity is Chamfer / MaxSim:

    Chamfer(Q, P) = sum over q in Q of max over p in P of <q, p>

- ``chamfer``: exact scores between two batches of sets (C++ MaxSim kernel at every SIMD
  level: query tokens in SIMD lanes, document tokens broadcast, the row max fused into the
  GEMM tile, no (tokens x tokens) matrix in memory).
- ``MuveraEncoder``: MUVERA fixed dimensional encodings (Dhulipala et al., NeurIPS 2024): one
  vector per set whose inner product estimates Chamfer, so an ordinary single-vector index can
  propose candidates.
- ``MultiVectorIndex``: encodings in a single-vector index (HNSW, flat, PQ or IVF-PQ), the
  documents' tokens in a token store (CSR rows, float32 / float16 / int8, in RAM or a
  memory-mapped file), and search = encoding search for `candidates` documents, then an exact
  Chamfer re-rank of all of them.
- ``muvera_diagnostic``: recall of the encodings against exact Chamfer on a sample, to check
  parameters before indexing a corpus (the encodings are sensitive to them).

Batches of sets are given as a list of (n_i, dim) arrays, as CSR (tokens (T, dim), offsets
(n + 1,)), or one (n_tokens, dim) array for a single set (see _checks.as_token_sets).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks, _core, _result, _storage, kernels
from ._base import Index, reads, writes
from ._checks import MAX_DIM
from ._format import Fields
from ._rerank import RerankStore
from ._result import SearchResult
from .flat import FlatIndex
from .hnsw import HNSWIndex
from .ivf import IVFPQIndex
from .pq import PQIndex, _check_rerank_k

PROJECTIONS = ("dense", "ams")
TOKEN_STORAGES = ("float32", "float16", "int8")
INNER_KINDS: dict[str, type[Index]] = {
    "hnsw": HNSWIndex,
    "flat": FlatIndex,
    "pq": PQIndex,
    "ivfpq": IVFPQIndex,
}
DEFAULT_CANDIDATES = 150
# The encoder of MultiVectorIndex(encoder=None) and muvera_diagnostic(encoder=None): 3
# hyperplanes, 16-d projections, 40 repetitions (5,120-d, as the paper-style 4/16/20), and
# empty document buckets left empty (fill_empty=False): on the MiniLM dev set it finds 0.955
# of the exact Chamfer top-10 among the first 100 candidates, against 0.861 with
# fill_empty=True and 0.839 for 4/16/20 (bench/RESULTS.md, multi-vector section).
DEFAULT_ENCODER: dict[str, Any] = {"k_sim": 3, "d_proj": 16, "r_reps": 40, "fill_empty": False}


def _default_encoder(dim: int) -> MuveraEncoder:
    return MuveraEncoder(dim, **DEFAULT_ENCODER)


def _threads(threads: Any) -> int | None:
    return _checks.check_threads(threads)


# ---- exact similarity ------------------------------------------------------------------------
def chamfer(queries: Any, documents: Any, *, threads: int | None = None) -> np.ndarray:
    """Exact Chamfer (MaxSim) similarity of every query set with every document set.

    queries   : nq sets of (n_i, d) float tokens (list, CSR tuple, or one (n, d) array)
    documents : nd sets of (m_j, d) float tokens; float16 tokens are scored as stored (no copy)
    returns   : (nq, nd) float32, out[i, j] = sum_{q in Q_i} max_{p in P_j} <q, p>
                (a single set given as an array gives a 1-D row / column)
    Products are summed in float32 per pair (error ~ d * eps * sum |q_j p_j|), the per-token
    maxima in float64.
    """
    threads = _threads(threads)
    dt, do, d_single = _checks.as_token_sets(documents, None, "documents", keep_float16=True)
    qt, qo, q_single = _checks.as_token_sets(queries, dt.shape[1], "queries")
    storage = "float16" if dt.dtype == np.float16 else "float32"
    out = _core.chamfer(qt, qo, dt, do, dt.shape[1], storage, threads=threads)
    if q_single:
        out = out[0]
    if d_single:
        out = out[..., 0]
    return out


# ---- MUVERA encodings ----------------------------------------------------------------------
class MuveraEncoder:
    """MUVERA fixed dimensional encodings (FDE) of token sets.

    dim        : dimension of the token vectors
    k_sim      : SimHash hyperplanes per repetition: 2^k_sim buckets (1..16)
    d_proj     : dimension of the random inner projection of each bucket's vector
    r_reps     : independent repetitions, concatenated
    final_dim  : None, or a final random projection (a count sketch: each coordinate goes to
                 one random output with a random sign) to final_dim values
    projection : 'dense' (a ±1/sqrt(d_proj) Gaussian-sign matrix) or 'ams' (AMS sketch: each
                 input coordinate to one output with a random sign)
    fill_empty : an empty document bucket takes the projected vector of the document token
                 whose SimHash code differs from the bucket in the fewest bits (the first such
                 token)
    seed       : every random draw (hyperplanes, projections) comes from default_rng(seed);
                 queries and documents share them all

    Per repetition, a token's bucket is its SimHash code (bit b = <x, g_b> > 0); queries sum
    their projected tokens per bucket, documents average them. Both sides are scaled by
    1/sqrt(r_reps), so <encode_queries(Q), encode_documents(P)> estimates Chamfer(Q, P) (an
    average over repetitions). Output dimension: r_reps * 2^k_sim * d_proj, or final_dim.
    Encodings run in C++ on the thread pool in baseline code with a fixed order of
    operations: identical at every SIMD level and thread count.
    """

    def __init__(
        self,
        dim: int,
        *,
        k_sim: int = 4,
        d_proj: int = 16,
        r_reps: int = 20,
        final_dim: int | None = None,
        projection: str = "dense",
        fill_empty: bool = True,
        seed: int = 0,
    ) -> None:
        self.dim = _checks.check_dim(dim)
        self.k_sim = _checks.check_positive_int(k_sim, "k_sim")
        if self.k_sim > 16:
            raise ValueError(f"k_sim must be <= 16 (2^k_sim buckets per repetition); got {k_sim}")
        self.d_proj = _checks.check_positive_int(d_proj, "d_proj")
        self.r_reps = _checks.check_positive_int(r_reps, "r_reps")
        self.final_dim = (
            None if final_dim is None else _checks.check_positive_int(final_dim, "final_dim")
        )
        self.projection = _checks.check_choice(projection, "projection", PROJECTIONS)
        if not isinstance(fill_empty, bool):
            raise TypeError(f"fill_empty must be True or False; got {type(fill_empty).__name__}")
        self.fill_empty = fill_empty
        self.seed = _checks.check_positive_int(seed, "seed", 0)
        raw = self.raw_dim
        if raw > 1 << 26:
            raise ValueError(
                f"r_reps * 2^k_sim * d_proj = {raw} values per encoding is too large (max 2^26)"
            )
        self._make_draws()

    @property
    def raw_dim(self) -> int:
        """r_reps * 2^k_sim * d_proj: the dimension before the final projection."""
        return self.r_reps * (1 << self.k_sim) * self.d_proj

    @property
    def output_dim(self) -> int:
        """Dimension of the encodings: final_dim, or r_reps * 2^k_sim * d_proj."""
        return self.final_dim if self.final_dim is not None else self.raw_dim

    def _make_draws(self) -> None:
        """matrix (dim, r_reps * (k_sim + d_proj)) float32: per repetition k_sim hyperplane
        columns then d_proj projection columns; the final count sketch (index, sign)."""
        rng = np.random.default_rng(self.seed)
        d, k, p, r = self.dim, self.k_sim, self.d_proj, self.r_reps
        matrix = np.zeros((d, r, k + p), dtype=np.float32)
        matrix[:, :, :k] = rng.standard_normal((d, r, k), dtype=np.float32)
        if self.projection == "dense":
            signs = rng.integers(0, 2, size=(d, r, p)) * 2 - 1
            matrix[:, :, k:] = signs.astype(np.float32) / np.float32(math.sqrt(p))
        else:  # AMS sketch: coordinate j of repetition r goes to one column with a sign
            column = rng.integers(0, p, size=(d, r))
            sign = (rng.integers(0, 2, size=(d, r)) * 2 - 1).astype(np.float32)
            jj, rr = np.meshgrid(np.arange(d), np.arange(r), indexing="ij")
            matrix[jj, rr, k + column] = sign
        self._matrix = np.ascontiguousarray(matrix.reshape(d, r * (k + p)))
        self._final_index = self._final_sign = None
        if self.final_dim is not None:
            self._final_index = rng.integers(0, self.final_dim, size=self.raw_dim).astype(np.int32)
            self._final_sign = (rng.integers(0, 2, size=self.raw_dim) * 2 - 1).astype(np.float32)
        self._make_core()

    def _make_core(self) -> None:
        """The C++ encoder (a copy of the draws) that encodes and runs in search pipelines."""
        self._core = _core.FdeEncoder(
            self._matrix,
            self.dim,
            self.k_sim,
            self.d_proj,
            self.r_reps,
            self._final_index,
            self._final_sign,
            self.final_dim or 0,
        )

    # pickling / copying: the draws travel, the C++ encoder is rebuilt from them
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_core"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._make_core()

    def _encode(self, sets: Any, documents: bool, threads: int | None) -> np.ndarray:
        threads = _threads(threads)
        tokens, offsets, single = _checks.as_token_sets(
            sets, self.dim, "documents" if documents else "queries"
        )
        out = self._encode_csr(tokens, offsets, documents, threads)
        return out[0] if single else out

    def _encode_csr(
        self, tokens: np.ndarray, offsets: np.ndarray, documents: bool, threads: int | None
    ) -> np.ndarray:
        return self._core.encode(tokens, offsets, documents, self.fill_empty, threads=threads)

    def encode_documents(self, documents: Any, *, threads: int | None = None) -> np.ndarray:
        """Document encodings: (n, output_dim) float32 (a single (m, dim) set gives
        (output_dim,))."""
        return self._encode(documents, True, threads)

    def encode_queries(self, queries: Any, *, threads: int | None = None) -> np.ndarray:
        """Query encodings: (n, output_dim) float32 (a single (m, dim) set gives (output_dim,))."""
        return self._encode(queries, False, threads)

    def __repr__(self) -> str:
        return (
            f"MuveraEncoder(dim={self.dim}, k_sim={self.k_sim}, d_proj={self.d_proj}, "
            f"r_reps={self.r_reps}, "
            f"final_dim={self.final_dim}, projection={self.projection!r}, "
            f"fill_empty={self.fill_empty}, "
            f"seed={self.seed})"
        )

    # ---- state (MultiVectorIndex persistence): the draws are saved, not re-drawn -------------
    def _params(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "k_sim": self.k_sim,
            "d_proj": self.d_proj,
            "r_reps": self.r_reps,
            "final_dim": self.final_dim,
            "projection": self.projection,
            "fill_empty": self.fill_empty,
            "seed": self.seed,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {"fde_matrix": self._matrix}
        if self._final_index is not None and self._final_sign is not None:
            arrays["fde_final_index"], arrays["fde_final_sign"] = (
                self._final_index,
                self._final_sign,
            )
        return arrays

    @classmethod
    def _restore(cls, f: Fields) -> MuveraEncoder:
        """From its params (f: the encoder's header object, the file's arrays)."""
        final_dim = f.params.get("final_dim")
        enc = f.build(
            cls,
            f.int("dim", 1, MAX_DIM),
            k_sim=f.int("k_sim", 1, 16),
            d_proj=f.int("d_proj", 1, MAX_DIM),
            r_reps=f.int("r_reps", 1, 1 << 16),
            final_dim=None if final_dim is None else f.int("final_dim", 1, 1 << 24),
            projection=f.choice("projection", ("dense", "ams")),
            fill_empty=f.bool("fill_empty"),
            seed=f.int("seed", 0, 2**63 - 1),
        )
        enc._matrix = np.ascontiguousarray(
            f.array("fde_matrix", np.float32, enc._matrix.shape, finite=True)
        )
        if enc.final_dim is not None:
            index = f.array("fde_final_index", np.int32, (enc.raw_dim,))
            sign = f.array("fde_final_sign", np.float32, (enc.raw_dim,), finite=True)
            if index.size and (index.min() < 0 or index.max() >= enc.final_dim):
                raise f.error("fde_final_index", f"entries must be in [0, {enc.final_dim})")
            enc._final_index, enc._final_sign = (
                np.ascontiguousarray(index),
                np.ascontiguousarray(sign),
            )
        enc._make_core()
        return enc


# ---- diagnostic ----------------------------------------------------------------------------
@dataclass(frozen=True)
class MuveraDiagnostic:
    """FDE recall against exact Chamfer on a sample.

    recall     : {N: mean fraction of each query's exact Chamfer top-k found among its top-N
                  documents by FDE inner product}
    recall_1nn : {N: fraction of queries whose exact Chamfer nearest document is among their
                  top-N by FDE inner product (the Recall@N of the MUVERA paper's FDE
                  evaluation); a weaker requirement than `recall` for k > 1}
    """

    k: int
    n_documents: int
    n_queries: int
    encoder: str
    recall: dict[int, float]
    recall_1nn: dict[int, float]

    def __str__(self) -> str:
        rows = "  ".join(f"N={n}: {r:.3f}" for n, r in self.recall.items())
        rows_1nn = "  ".join(f"N={n}: {r:.3f}" for n, r in self.recall_1nn.items())
        return (
            f"{self.encoder} ({self.n_queries} queries, {self.n_documents} documents): FDE recall "
            f"of the exact Chamfer top-{self.k} within the top-N: {rows}; fraction of queries "
            f"whose exact Chamfer 1-NN is within the top-N: {rows_1nn}"
        )


def muvera_diagnostic(
    documents: Any,
    queries: Any,
    *,
    encoder: MuveraEncoder | None = None,
    k: int = 10,
    n_candidates: tuple[int, ...] = (10, 50, 100, 150, 200, 300, 500, 1000),
    max_documents: int = 10000,
    max_queries: int = 100,
    seed: int = 0,
    threads: int | None = None,
) -> MuveraDiagnostic:
    """How well do these encoding parameters find the exact Chamfer neighbours?

    documents, queries : token sets (a representative sample of the corpus and of queries)
    encoder            : the MuveraEncoder to test (default: the one MultiVectorIndex uses
                         without an encoder, MuveraEncoder(dim, **DEFAULT_ENCODER))
    k                  : size of the exact top-k that should be found
    n_candidates       : the N (candidates a MultiVectorIndex would re-rank) to report
                         (MultiVectorIndex re-ranks DEFAULT_CANDIDATES = 150 by default)
    max_documents, max_queries : random subsample sizes (seeded) to bound the exact scoring
    returns            : MuveraDiagnostic; recall[N] near 1 at the N you plan to re-rank means
                         the parameters work (if not: try fill_empty=False, which stops
                         short documents from matching every query bucket; raise r_reps /
                         d_proj; lower k_sim when documents have few tokens)
    """
    threads = _threads(threads)
    k = _checks.check_k(k)
    dt, do, _ = _checks.as_token_sets(documents, None, "documents")
    qt, qo, _ = _checks.as_token_sets(queries, dt.shape[1], "queries")
    encoder = _default_encoder(dt.shape[1]) if encoder is None else encoder
    if not isinstance(encoder, MuveraEncoder):
        raise TypeError(f"encoder must be a MuveraEncoder; got {type(encoder).__name__}")
    if encoder.dim != dt.shape[1]:
        raise ValueError(
            f"encoder.dim={encoder.dim} does not match the token dimension {dt.shape[1]}"
        )
    sizes = sorted({_checks.check_positive_int(n, "n_candidates entry") for n in n_candidates})
    if not sizes:
        raise ValueError("n_candidates must hold at least one N")
    rng = np.random.default_rng(seed)
    dt, do = _subsample(dt, do, _checks.check_positive_int(max_documents, "max_documents"), rng)
    qt, qo = _subsample(qt, qo, _checks.check_positive_int(max_queries, "max_queries"), rng)
    nd, nq = do.shape[0] - 1, qo.shape[0] - 1
    exact = _core.chamfer(qt, qo, dt, do, dt.shape[1], "float32", threads=threads)
    kk = min(k, nd)
    truth = np.argsort(-exact, axis=1, kind="stable")[:, :kk]
    approx = (
        encoder._encode_csr(qt, qo, False, threads) @ encoder._encode_csr(dt, do, True, threads).T
    )
    order = np.argsort(-approx, axis=1, kind="stable")
    # rank of every query's exact nearest document in its FDE order
    rank_1nn = np.argmax(order == truth[:, :1], axis=1)
    recall, recall_1nn = {}, {}
    for n in sizes:
        top = order[:, : min(n, nd)]
        hits = sum(np.isin(truth[i], top[i]).sum() for i in range(nq))
        recall[n] = float(hits) / (nq * kk)
        recall_1nn[n] = float(np.mean(rank_1nn < n))
    return MuveraDiagnostic(
        k=kk,
        n_documents=nd,
        n_queries=nq,
        encoder=repr(encoder),
        recall=recall,
        recall_1nn=recall_1nn,
    )


def _subsample(
    tokens: np.ndarray, offsets: np.ndarray, limit: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n = offsets.shape[0] - 1
    if n <= limit:
        return tokens, offsets
    keep = np.sort(rng.choice(n, size=limit, replace=False))
    counts = offsets[keep + 1] - offsets[keep]
    rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in keep])
    new_offsets = np.zeros(limit + 1, dtype=np.int64)
    np.cumsum(counts, out=new_offsets[1:])
    return np.ascontiguousarray(tokens[rows]), new_offsets


# ---- ball carving ----------------------------------------------------------------------------
def carve_queries(
    tokens: np.ndarray, offsets: np.ndarray, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """Ball carving of each query's tokens (MUVERA, section 4): in token order, an unassigned
    token opens a cluster that takes every unassigned token q with <q, centre> >= tau; each
    cluster is replaced by the sum of its tokens. Fewer query tokens make the Chamfer re-rank
    cheaper; the score becomes sum over clusters of max_p <sum of members, p> (<= the exact
    Chamfer score).
    returns (tokens (T', d) float32, offsets (n + 1,) int64)
    """
    tokens = np.ascontiguousarray(tokens, dtype=np.float32)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    carved: tuple[np.ndarray, np.ndarray] = _core.carve_sets(tokens, offsets, tokens.shape[1], tau)
    return carved


# ---- the token store -------------------------------------------------------------------------
class TokenStore:
    """Documents' tokens for the exact re-rank: CSR rows in a RerankStore (float32, float16 or
    int8 rows, in RAM or a memory-mapped file) plus offsets (sets + 1,) int64 in RAM.

    Set s (= the index slot s) is rows[offsets[s]:offsets[s + 1]]. Sets are only appended;
    a removed document's rows stay behind its dead slot (space is not reclaimed).
    """

    def __init__(self, rows: RerankStore) -> None:
        self.rows = rows
        self._offsets = np.zeros(64, dtype=np.int64)
        self._n = 0

    @property
    def storage(self) -> str:
        return self.rows.storage

    @property
    def path(self) -> str | None:
        """The side file of the rows (None: in RAM)."""
        return self.rows.path

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + (self._n + 1) * 8

    @property
    def offsets(self) -> np.ndarray:
        return self._offsets[: self._n + 1]

    def append(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        """Append sets: tokens (T, dim) float32, offsets (m + 1,) from 0."""
        base = self._offsets[self._n]
        self.rows.append(tokens)
        need = self._n + offsets.shape[0]
        if need > self._offsets.shape[0]:
            grown = np.zeros(max(need, self._offsets.shape[0] * 2), dtype=np.int64)
            grown[: self._n + 1] = self._offsets[: self._n + 1]
            self._offsets = grown
        self._offsets[self._n + 1 : need] = base + offsets[1:]
        self._n += offsets.shape[0] - 1

    def scoring(self) -> tuple[Any, np.ndarray]:
        """(the rows' RerankRows, offsets (sets + 1,) int64) for the C++ re-rank; the offsets
        are valid while the caller holds the index's lock."""
        return self.rows.core, np.ascontiguousarray(self.offsets)

    def sets(self, slots: np.ndarray) -> list[np.ndarray]:
        """The float32 tokens of the given slots."""
        return [self.rows.vectors(np.arange(self._offsets[s], self._offsets[s + 1])) for s in slots]

    def params(self) -> dict[str, Any]:
        return self.rows.params()

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {"token_offsets": np.ascontiguousarray(self.offsets)}
        arrays.update(self.rows.arrays())
        return arrays

    @classmethod
    def restore(cls, f: Fields, dim: int, storage: str) -> TokenStore:
        rows = RerankStore.restore(f, dim, "ip", storage=storage)
        offsets = f.array("token_offsets", np.int64, (None,))
        if (
            offsets.size < 1
            or offsets[0] != 0
            or offsets[-1] != len(rows)
            or (np.diff(offsets) < 0).any()
        ):
            raise f.error("token_offsets", f"must ascend from 0 to the {len(rows)} token rows")
        store = cls(rows)
        store._offsets = np.array(offsets, dtype=np.int64)
        store._n = offsets.shape[0] - 1
        return store


# ---- the index -------------------------------------------------------------------------------
class MultiVectorIndex(Index):
    """Multi-vector documents searched by Chamfer similarity: MUVERA encodings in a
    single-vector index propose candidates, an exact Chamfer re-rank orders them.

    dim          : dimension of the token vectors
    encoder      : a MuveraEncoder (default MuveraEncoder(dim, k_sim=3, d_proj=16,
                   r_reps=40, fill_empty=False): 5,120-d encodings, DEFAULT_ENCODER); check
                   it on your data with muvera_diagnostic
    index        : the encoding index: 'hnsw' (default; storage='float16' unless given),
                   'flat' (exact inner products over encodings), 'pq' (4-bit fast-scan
                   over output_dim / 8 sub-spaces unless m / nbits are given; the fastest
                   on the dev set) or 'ivfpq' (nlist needed, m / nbits as for 'pq'); 'pq'
                   and 'ivfpq' need train(documents); metric 'ip'
    tokens       : storage of the documents' tokens for the re-rank: 'float16' (default),
                   'float32' or 'int8' (per-dimension ranges trained on the first add or
                   on train(documents)); the re-rank is exact for the stored precision
    rerank_path  : None keeps the tokens in RAM (and in the saved file); a file path keeps them
                   in a raw memory-mapped file there (the saved index records its size and
                   checksum, not its path: load with simdex.load(path, rerank=...))
    overwrite    : allow rerank_path to name an existing non-empty file (it is emptied)
    candidates   : default number of documents re-ranked per query (150: recall@10 0.970 against
                   exact Chamfer on the MiniLM dev set with the default encoder and index='pq';
                   keyword queries of 2-3 tokens need more; see muvera_diagnostic)
    index_params : passed to the encoding index (M, ef_construction, storage, m, nlist, ...)

    Scores are similarities; search returns distances = -Chamfer(Q, P) so that smaller is
    closer, like every simdex index. Removed documents' tokens stay in the store (their slots
    are not reused).
    """

    kind = "multivector"
    metric = "chamfer"

    def __init__(
        self,
        dim: int,
        *,
        encoder: MuveraEncoder | None = None,
        index: str = "hnsw",
        tokens: str = "float16",
        rerank_path: str | os.PathLike[str] | None = None,
        candidates: int = DEFAULT_CANDIDATES,
        overwrite: bool = False,
        **index_params: Any,
    ) -> None:
        self.dim = _checks.check_dim(dim)
        if encoder is None:
            encoder = _default_encoder(self.dim)
        if not isinstance(encoder, MuveraEncoder):
            raise TypeError(
                f"encoder must be a MuveraEncoder or None; got {type(encoder).__name__}"
            )
        if encoder.dim != self.dim:
            raise ValueError(f"encoder.dim={encoder.dim} does not match dim={self.dim}")
        self.encoder = encoder
        self.index_kind = _checks.check_choice(index, "index", tuple(INNER_KINDS))
        self.tokens = _checks.check_choice(tokens, "tokens", TOKEN_STORAGES)
        if rerank_path == "memory":
            raise TypeError("rerank_path must be None (tokens in RAM) or a file path; got 'memory'")
        self.rerank_path = RerankStore.check_where(rerank_path, overwrite, "rerank_path")
        self.candidates = _checks.check_positive_int(candidates, "candidates")
        self._inner = self._make_inner(index_params)
        self._store: TokenStore | None = None
        if self.tokens != "int8":
            self._store = self._new_store()
        self._init_ids(reuse_slots=False)

    def _make_inner(self, params: dict[str, Any]) -> Index:
        d = self.encoder.output_dim
        params = dict(params)
        if "metric" in params:
            raise ValueError(
                "the encoding index always uses metric='ip' (FDE inner products); drop metric="
            )
        if self.index_kind == "hnsw":
            params.setdefault("storage", "float16")
            return HNSWIndex(d, "ip", **params)
        if self.index_kind == "flat":
            return FlatIndex(d, "ip", **params)
        if self.index_kind in ("pq", "ivfpq"):
            # 4-bit fast-scan over sub-spaces of 8 encoding values (one bucket of 8 of the 16
            # projected values): the measured best speed at equal recall on the dev set
            params.setdefault("nbits", 4)
            if "m" not in params:
                if d % 8:
                    raise ValueError(
                        f"index={self.index_kind!r}: the default m = output_dim / 8 needs an "
                        f"output_dim divisible by 8 (got {d}); pass m= in the index parameters"
                    )
                params["m"] = d // 8
        if self.index_kind == "pq":
            return PQIndex(d, params.pop("m"), metric="ip", **params)
        if "nlist" not in params:
            raise ValueError("index='ivfpq' needs nlist= in the index parameters")
        return IVFPQIndex(d, params.pop("nlist"), params.pop("m"), metric="ip", **params)

    def _new_store(
        self, lo: np.ndarray | None = None, scale: np.ndarray | None = None
    ) -> TokenStore:
        where = "memory" if self.rerank_path is None else self.rerank_path
        return TokenStore(
            RerankStore(self.dim, "ip", where, storage=self.tokens, lo=lo, scale=scale)
        )

    # ---- properties ---------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        inner_trained = getattr(self._inner, "is_trained", True)
        return bool(inner_trained) and self._store is not None

    @property
    def nbytes(self) -> int:
        store = 0 if self._store is None else self._store.nbytes
        return int(self._inner.nbytes + store + self._idt.nbytes + self.encoder._matrix.nbytes)

    @property
    def ef(self) -> int:
        """Default HNSW search list size (index='hnsw')."""
        if not isinstance(self._inner, HNSWIndex):
            raise AttributeError("ef exists for index='hnsw' only")
        return self._inner.ef

    @ef.setter
    def ef(self, value: int) -> None:
        if not isinstance(self._inner, HNSWIndex):
            raise AttributeError("ef exists for index='hnsw' only")
        self._inner.ef = value

    # ---- building -----------------------------------------------------------------------
    @writes
    def train(self, documents: Any, *, threads: int | None = None) -> MultiVectorIndex:
        """Train what needs data: the PQ / IVF-PQ encoding index (on the documents'
        encodings) and int8 token ranges (on their tokens). Other indexes need no training."""
        threads = _threads(threads)
        if self._slot_count:
            raise ValueError("the index already holds documents; train before the first add")
        tokens, offsets, _ = _checks.as_token_sets(documents, self.dim, "documents")
        if hasattr(self._inner, "train"):
            fde = self.encoder._encode_csr(tokens, offsets, True, threads)
            if isinstance(self._inner, (PQIndex, IVFPQIndex)):
                self._inner.train(fde, threads=threads)
            else:
                self._inner.train(fde)
        if self.tokens == "int8":
            self._store = self._new_store(*_storage.train_int8(tokens))
        return self

    @writes
    def add(self, documents: Any, ids: Any = None, *, threads: int | None = None) -> np.ndarray:
        """Add documents (token sets); returns their ids (n,) int64."""
        threads = _threads(threads)
        tokens, offsets, _ = _checks.as_token_sets(documents, self.dim, "documents")
        if isinstance(self._inner, (PQIndex, IVFPQIndex)) and not self._inner.is_trained:
            raise ValueError(f"index={self.index_kind!r} needs train(documents) before add")
        fde = self.encoder._encode_csr(tokens, offsets, True, threads)
        if self._store is None:  # int8 tokens without train(): ranges from this first batch
            _storage.warn_small_int8_sample(tokens.shape[0], "MultiVectorIndex")
            self._store = self._new_store(*_storage.train_int8(tokens))
        n = offsets.shape[0] - 1
        new_ids, slots = self._bind_ids(ids, n)  # appended: slot s is token set s
        self._store.append(tokens, offsets)
        try:
            self._inner.add(fde, ids=slots, threads=threads)
        except BaseException:
            # Interrupted (Ctrl-C) or failed: undo the add; the stored tokens stay behind dead
            # slots, so slots and token sets stay aligned.
            self._inner.remove(slots)
            self._unbind_ids(new_ids)
            raise
        return new_ids

    @writes
    def remove(self, ids: Any) -> int:
        """Remove documents by id (unknown ids are ignored); returns how many were removed."""
        slots = self._unbind_ids(ids)
        if slots.size:
            self._inner.remove(slots)
        return int(slots.size)

    @reads
    def reconstruct(self, ids: Any) -> list[np.ndarray]:  # type: ignore[override]  # ragged sets
        """The stored tokens of the given ids: a list of (n_i, dim) float32 arrays (decoded
        from the token storage). KeyError names ids not in the index."""
        a = _checks.as_id_list(ids)
        slots = self._idt.slots_of(a)
        if slots.size != a.size:
            missing = a[~np.isin(a, self._idt.ids_of(slots))]
            raise KeyError(f"ids not in the index: {missing[:5].tolist()}")
        return self._store.sets(slots) if self._store is not None else []

    # ---- search -------------------------------------------------------------------------
    @reads
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        candidates: int | None = None,
        ef: int | None = None,
        filter: Any = None,
        max_distance: Any = None,
        carve: float | None = None,
        threads: int | None = None,
        **search_params: Any,
    ) -> SearchResult:
        """The k documents of highest Chamfer similarity.

        queries       : token sets (list of (n_i, dim) arrays, CSR tuple, or one (n, dim)
                        array for a single query, which gives 1-D results)
        k             : int >= 1
        candidates    : documents proposed by the encoding index and re-ranked exactly
                        (default: the candidates property, at least k)
        ef            : HNSW search window (default: max(ef property, candidates)); with
                        candidates > ef the candidates are the best of every node the walk
                        scored (HNSWIndex(buffered=True)): faster, lower recall
        filter        : int64 array of allowed ids, boolean mask indexed by id, or a list with
                        one such filter per query
        max_distance  : float or (q,) floats: drop results with -Chamfer above it
        carve         : None, or tau for ball carving of the query tokens before the re-rank
                        (faster re-rank, scores become approximate; see carve_queries)
        search_params : passed to the encoding index (nprobe for 'ivfpq', rerank_k for PQ)
        returns       : SearchResult(distances = -Chamfer (q, k) float32 ascending,
                        ids (q, k) int64, -1 padded)
        """
        k = _checks.check_k(k)
        threads = _threads(threads)
        c = (
            self.candidates
            if candidates is None
            else _checks.check_list_size(candidates, "candidates")
        )
        c = max(c, k)
        if carve is not None:
            carve = float(carve)
            if math.isnan(carve):
                raise ValueError("carve must be a float (tau) or None; got NaN")
        tokens, offsets, single = _checks.as_token_sets(queries, self.dim, "queries")
        nq = offsets.shape[0] - 1
        per_query = _checks.is_filter_list(filter)
        if per_query and len(filter) != nq:
            raise ValueError(
                f"a list of filters needs one filter per query: expected {nq}, got {len(filter)}"
            )
        return self._search(
            tokens, offsets, k, c, ef, filter, max_distance, carve, threads, search_params, single
        )

    def _search(
        self,
        tokens: np.ndarray,
        offsets: np.ndarray,
        k: int,
        c: int,
        ef: int | None,
        filter: Any,
        max_distance: Any,
        carve: float | None,
        threads: int | None,
        search_params: dict[str, Any],
        single: bool = False,
    ) -> SearchResult:
        """One C++ call: encode the queries, candidates from the encoding index (under its
        lock), exact Chamfer re-rank from the token store, slots to ids."""
        nq = offsets.shape[0] - 1
        if len(self) == 0 or self._store is None:
            return self._empty_result(nq, k, single, max_distance)
        inner = self._inner
        params = dict(search_params)
        if ef is not None and not isinstance(inner, HNSWIndex):
            raise ValueError(
                f"ef applies to index='hnsw' only; this index uses {self.index_kind!r}"
            )
        rerank_k = (
            params.pop("rerank_k", None) if isinstance(inner, (PQIndex, IVFPQIndex)) else None
        )
        nprobe = params.pop("nprobe", None) if isinstance(inner, IVFPQIndex) else None
        if params:
            raise TypeError(
                f"search got parameters the {self.index_kind!r} encoding index does not take: "
                f"{sorted(params)}"
            )
        # filters by user id -> filters by slot (the encoding index's ids), O(len(filter))
        if _checks.is_filter_list(filter):
            allowed: Any = [self._allowed_slots(f) for f in filter]
        else:
            allowed = self._allowed_slots(filter)
            if allowed is not None and allowed.size == 0:
                return self._empty_result(nq, k, single, max_distance)
        store = self._store.scoring()
        core = self.encoder._core
        if isinstance(inner, (HNSWIndex, FlatIndex)):
            f_ids, f_offsets, f_mask = _checks.as_filter(allowed, nq)
            if isinstance(inner, HNSWIndex):
                # window ef (default: wide enough for every candidate); a smaller window
                # hands over the best of every node scored on the way (faster, lower recall)
                window = max(inner.ef, c) if ef is None else _checks.check_list_size(ef, "ef")
                dist, ids = inner._core.search_multivector(
                    core, tokens, offsets, store, k, c, window, c > window, carve,
                    f_ids, f_offsets, f_mask, self._idt, threads,
                )  # fmt: skip
            else:
                dist, ids = inner._core.search_multivector(
                    core, tokens, offsets, store, k, c, carve, f_ids, f_offsets, f_mask,
                    self._idt, threads,
                )  # fmt: skip
        else:
            assert isinstance(inner, (PQIndex, IVFPQIndex))
            f_ids, f_offsets, f_mask = _checks.as_filter(allowed, nq)
            scanned = _check_rerank_k(rerank_k, c, inner._store)
            probes = inner._check_nprobe(nprobe) if isinstance(inner, IVFPQIndex) else 0
            dist, ids = inner._core.search_multivector(
                core, tokens, offsets, store, k, c, scanned, probes, carve, f_ids, f_offsets,
                f_mask, self._idt, threads,
            )  # fmt: skip
        return _result.finish(dist, ids, single, max_distance)

    def _range_queries(self, queries: Any) -> tuple[Any, int]:
        tokens, offsets, _ = _checks.as_token_sets(queries, self.dim, "queries")
        return (tokens, offsets), offsets.shape[0] - 1

    def _range_params(self, k: int) -> dict[str, Any]:
        # range_search on a multi-vector index: documents with -Chamfer <= radius among the
        # candidates the encoding index proposes (at least k of them)
        return {"candidates": max(k, self.candidates)}

    # ---- persistence --------------------------------------------------------------------
    @reads
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        inner_params, inner_arrays = self._inner._state()
        ids, next_id = self._ids_state()
        params = {
            "dim": self.dim,
            "index": self.index_kind,
            "tokens": self.tokens,
            "candidates": self.candidates,
            "next_id": next_id,
            "encoder": self.encoder._params(),
            "inner": inner_params,
            "store": None if self._store is None else self._store.params(),
        }
        arrays = {"ids": ids, **self.encoder._arrays()}
        arrays.update({f"inner_{name}": a for name, a in inner_arrays.items()})
        if self._store is not None:
            arrays.update(self._store.arrays())
        return params, arrays

    @classmethod
    def _from_state(cls, f: Fields) -> MultiVectorIndex:
        index = cls.__new__(cls)
        index.dim = f.int("dim", 1, MAX_DIM)
        index.index_kind = f.choice("index", tuple(INNER_KINDS))
        index.tokens = f.choice("tokens", TOKEN_STORAGES)
        index.candidates = f.int("candidates", 1, _checks.MAX_LIST)
        index.encoder = MuveraEncoder._restore(f.sub("encoder", ""))
        if index.encoder.dim != index.dim:
            raise f.error("encoder", "its dimension does not match the index")
        index._inner = INNER_KINDS[index.index_kind]._from_state(f.sub("inner", "inner_"))
        if index._inner.dim != index.encoder.output_dim:
            raise f.error("inner", "the encoding index's dimension does not match the encoder")
        ids = f.ids("ids")
        index._init_ids(reuse_slots=False)
        index._restore_ids(ids, f.int("next_id", 0, 2**62, 0), "multivector")
        index._store = (
            None
            if f.params.get("store") is None
            else TokenStore.restore(f.sub("store", ""), index.dim, index.tokens)
        )
        index.rerank_path = None if index._store is None else index._store.path
        inner_ids = index._inner.ids
        live = np.flatnonzero(ids >= 0)
        if inner_ids.size != live.size or (
            inner_ids.size and (inner_ids.max() >= ids.shape[0] or (ids[inner_ids] < 0).any())
        ):
            raise f.error("ids", "the live slots are not the encoding index's rows")
        if live.size and (index._store is None or len(index._store) != ids.shape[0]):
            raise f.error("store", f"token sets do not match the {ids.shape[0]} slots")
        if (
            live.size
            and index._store is not None
            and (np.diff(index._store.offsets)[live] == 0).any()
        ):
            raise f.error("token_offsets", "a live document has no tokens")
        return index

    def _repr_fields(self) -> str:
        return f"index={self.index_kind!r}, tokens={self.tokens!r}, encoder={self.encoder!r}"

    def __repr__(self) -> str:
        return (
            f"MultiVectorIndex(dim={self.dim}, index={self.index_kind!r}, tokens={self.tokens!r}, "
            f"candidates={self.candidates}, output_dim={self.encoder.output_dim}, n={len(self)}, "
            f"simd={kernels.simd_level()!r})"
        )
