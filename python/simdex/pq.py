"""Product quantization: ProductQuantizer (PQ / OPQ training, encode, decode, lookup tables)
and PQIndex (flat scan of codes: 8-bit ADC or 4-bit fast-scan, optional exact re-ranking).

Pipeline (ScaNN-style stages): quantized scoring of every code in C++ -> rerank_k
candidates -> exact re-scoring from float32 vectors kept in RAM or a memory-mapped file.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import _checks, _core, _progress, _result
from ._base import CoreIndex
from ._checks import MAX_DIM, FloatMetric
from ._format import Fields
from ._rerank import RerankStore
from ._result import SearchResult
from .kernels import normalize
from .kmeans import _assign, kmeans

NBITS = (8, 4)
PQ_METRICS = ("l2", "ip", "cosine")


# ---- 4-bit code layouts ----------------------------------------------------------------
def _pack_nibbles(codes: np.ndarray) -> np.ndarray:
    """(n, m) codes < 16 -> (n, ceil(m / 2)) uint8, low nibble = even sub-space."""
    n, m = codes.shape
    if m % 2:
        codes = np.concatenate([codes, np.zeros((n, 1), np.uint8)], axis=1)
    return np.ascontiguousarray(codes[:, 0::2] | (codes[:, 1::2] << 4), dtype=np.uint8)


def _unpack_nibbles(packed: np.ndarray, m: int) -> np.ndarray:
    out = np.empty((packed.shape[0], packed.shape[1] * 2), np.uint8)
    out[:, 0::2] = packed & 15
    out[:, 1::2] = packed >> 4
    return np.ascontiguousarray(out[:, :m])


def _m4(m: int) -> int:
    return (m + 3) // 4 * 4


class ProductQuantizer:
    """Product quantizer with optional OPQ rotation.

    dim   : vector dimension, a multiple of m
    m     : sub-spaces; each sub-vector of dim / m values is coded by one of 2**nbits centroids
    nbits : 8 (one byte per sub-space) or 4 (two sub-spaces per byte)
    After fit: codebooks (m, ksub, dsub) float32, rotation (dim, dim) float32 or None
    (x is coded as x @ rotation).
    """

    def __init__(self, dim: int, m: int, *, nbits: int = 8) -> None:
        self.dim = _checks.check_dim(dim)
        self.m = _checks.check_positive_int(m, "m")
        if isinstance(nbits, bool) or nbits not in NBITS:
            raise ValueError(f"nbits must be 8 or 4; got {nbits!r}")
        self.nbits = int(nbits)
        if self.dim % self.m:
            raise ValueError(
                f"dim must be a multiple of m; got dim={dim}, m={m} "
                f"(dim % m = {dim % m}); pad the vectors or pick another m"
            )
        self.ksub = 1 << self.nbits
        self.dsub = self.dim // self.m
        self.codebooks: np.ndarray | None = None
        self.rotation: np.ndarray | None = None
        self._cache: tuple[tuple[int, int], Layouts] | None = None  # (key, _layouts())

    @property
    def code_size(self) -> int:
        """Bytes per encoded vector."""
        return self.m if self.nbits == 8 else (self.m + 1) // 2

    @property
    def is_trained(self) -> bool:
        return self.codebooks is not None

    def __repr__(self) -> str:
        return (
            f"ProductQuantizer(dim={self.dim}, m={self.m}, nbits={self.nbits}, "
            f"trained={self.is_trained}, opq={self.rotation is not None})"
        )

    def _require_trained(self) -> np.ndarray:
        if self.codebooks is None:
            raise ValueError("the quantizer is not trained; call fit(x) first")
        return self.codebooks

    # ---- training -------------------------------------------------------------------------
    def _fit_codebooks(
        self,
        xr: np.ndarray,
        n_iter: int,
        seed: int,
        threads: int | None,
        bar: _progress.Progress,
        init: np.ndarray | None = None,
    ) -> np.ndarray:
        books = np.empty((self.m, self.ksub, self.dsub), np.float32)
        for j in range(self.m):
            sub = np.ascontiguousarray(xr[:, j * self.dsub : (j + 1) * self.dsub])
            start = "k-means++" if init is None else init[j]
            books[j], _ = kmeans(
                sub, self.ksub, n_iter=n_iter, init=start, seed=seed + j, threads=threads
            )
            bar.update()
        return books

    def fit(
        self,
        x: Any,
        *,
        opq: bool = False,
        n_iter: int = 25,
        opq_iter: int = 10,
        seed: int = 0,
        max_samples: int | None = None,
        threads: int | None = None,
        progress: bool = False,
    ) -> ProductQuantizer:
        """Train codebooks (one k-means per sub-space) and, with opq=True, a rotation.

        x           : (n, dim) floats, n >= 2**nbits
        opq         : learn an orthogonal rotation R (OPQ, non-parametric): alternate PQ
                      training on x @ R (4 k-means iterations, warm-started) and the Procrustes
                      solution R = U V^T of svd(x^T decode(encode(x @ R))), opq_iter times
        max_samples : training subset size (default 256 * 2**nbits, as FAISS)
        progress    : show a progress bar over the sub-space k-means runs (needs tqdm)
        """
        a, _ = _checks.as_float_rows(x, self.dim, "x", allow_1d=False)
        n_iter = _checks.check_positive_int(n_iter, "n_iter", minimum=0)
        opq_iter = _checks.check_positive_int(opq_iter, "opq_iter", minimum=0)
        limit = (
            256 * self.ksub
            if max_samples is None
            else _checks.check_positive_int(max_samples, "max_samples")
        )
        rng = np.random.default_rng(seed)
        if a.shape[0] > limit:
            a = a[np.sort(rng.choice(a.shape[0], limit, replace=False))]
        if a.shape[0] < self.ksub:
            raise ValueError(
                f"training needs at least 2**nbits = {self.ksub} vectors; got {a.shape[0]}"
            )
        rounds = 1 + (opq_iter if opq else 0)
        with _progress.Progress(
            progress, rounds * self.m, "PQ fit" + (" (OPQ)" if opq else ""), "sub-space"
        ) as bar:
            if not opq:
                self.rotation = None
                self.codebooks = self._fit_codebooks(a, n_iter, seed, threads, bar)
                return self
            a64 = a.astype(np.float64)
            rotation = np.eye(self.dim)
            books = None
            for it in range(opq_iter):
                xr = np.ascontiguousarray(a64 @ rotation, dtype=np.float32)
                books = self._fit_codebooks(xr, 4, seed + 1000 * it, threads, bar, books)
                self.codebooks, self.rotation = books, None
                recon = self._decode_raw(self._encode_raw(xr, threads)).astype(np.float64)
                u, _, vt = np.linalg.svd(a64.T @ recon)
                rotation = u @ vt
            xr = np.ascontiguousarray(a64 @ rotation, dtype=np.float32)
            self.codebooks = self._fit_codebooks(xr, n_iter, seed, threads, bar, books)
            self.rotation = np.ascontiguousarray(rotation, dtype=np.float32)
        return self

    # ---- coding ---------------------------------------------------------------------------
    def _rotate(self, a: np.ndarray) -> np.ndarray:
        return a if self.rotation is None else np.ascontiguousarray(a @ self.rotation)

    def _encode_raw(self, xr: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Rotated rows (n, dim) float32 -> (n, m) uint8 centroid numbers (C++ nearest centroid,
        one pass per sub-space: no (n, m, ksub) table is ever built)."""
        books = self._require_trained()
        codes = np.empty((xr.shape[0], self.m), np.uint8)
        for j in range(self.m):
            sub = np.ascontiguousarray(xr[:, j * self.dsub : (j + 1) * self.dsub])
            _, labels = _assign(sub, books[j], threads)
            codes[:, j] = labels
        return codes

    def _decode_raw(self, codes: np.ndarray) -> np.ndarray:
        books = self._require_trained()
        out = np.empty((codes.shape[0], self.dim), np.float32)
        for j in range(self.m):
            out[:, j * self.dsub : (j + 1) * self.dsub] = books[j][codes[:, j]]
        return out

    def encode(self, x: Any, *, threads: int | None = None) -> np.ndarray:
        """x (n, dim) floats -> codes (n, code_size) uint8 (4 bits: low nibble = even sub-space)."""
        self._require_trained()
        threads = _checks.check_threads(threads)
        a, _ = _checks.as_float_rows(x, self.dim, "x", allow_1d=False)
        codes = self._encode_raw(self._rotate(a), threads)
        return codes if self.nbits == 8 else _pack_nibbles(codes)

    def _unpack(self, codes: Any) -> np.ndarray:
        a = np.asarray(codes)
        if a.dtype != np.uint8:
            raise TypeError(f"codes must be uint8 as returned by encode(); got dtype {a.dtype}")
        if a.ndim != 2 or a.shape[1] != self.code_size:
            raise ValueError(f"codes must have shape (n, {self.code_size}); got {a.shape}")
        return a if self.nbits == 8 else _unpack_nibbles(a, self.m)

    def decode(self, codes: Any) -> np.ndarray:
        """codes (n, code_size) uint8 -> reconstructed vectors (n, dim) float32."""
        self._require_trained()
        out = self._decode_raw(self._unpack(codes))
        return out if self.rotation is None else np.ascontiguousarray(out @ self.rotation.T)

    def lookup_table(self, queries: Any, metric: FloatMetric = "l2") -> np.ndarray:
        """Per-query distance tables: (q, m, 2**nbits) float32 such that the ADC distance of a
        code c is sum_j table[q, j, c_j].

        l2          : table[q, j, c] = ||q_j - centroid_{j,c}||^2
        ip / cosine : table[q, j, c] = -<q_j, centroid_{j,c}>, plus 1 on sub-space 0, so the
                      sum is 1 - <q, x_hat> (cosine normalises the queries first)
        """
        self._require_trained()
        checked = _checks.check_metric(metric, PQ_METRICS)
        q, _ = _checks.as_float_rows(queries, self.dim, "queries")
        if checked == "cosine":
            q = normalize(q)
        return self._tables(self._rotate(q), checked)

    def _layouts(self) -> Layouts:
        """(codebooks (m, ksub, dsub), their (m, dsub, ksub) transpose, norms (m, ksub), the
        rotation transposed or None), all float32 C-contiguous, rebuilt when training changed
        them."""
        books = self._require_trained()
        key = (id(books), id(self.rotation))
        if self._cache is None or self._cache[0] != key:
            rotation_t = (
                None
                if self.rotation is None
                else np.ascontiguousarray(self.rotation.T, dtype=np.float32)
            )
            self._cache = (
                key,
                (
                    np.ascontiguousarray(books, dtype=np.float32),
                    np.ascontiguousarray(books.transpose(0, 2, 1), dtype=np.float32),
                    np.ascontiguousarray(np.einsum("mkd,mkd->mk", books, books), dtype=np.float32),
                    rotation_t,
                ),
            )
        return self._cache[1]

    def _tables(self, qr: np.ndarray, metric: str) -> np.ndarray:
        """Rotated queries (q, dim) -> (q, m, ksub) tables (C++)."""
        books, books_t, norms, _ = self._layouts()
        return _core.pq_tables(
            books,
            books_t,
            norms,
            self.m,
            self.ksub,
            np.ascontiguousarray(qr, dtype=np.float32),
            qr.shape[0],
            metric == "l2",
        )

    # ---- persistence helpers --------------------------------------------------------------
    def _arrays(self, prefix: str = "pq_") -> dict[str, np.ndarray]:
        arrays = {}
        if self.codebooks is not None:
            arrays[prefix + "codebooks"] = self.codebooks
        if self.rotation is not None:
            arrays[prefix + "rotation"] = self.rotation
        return arrays

    def _restore(self, f: Fields, prefix: str = "pq_") -> None:
        books = f.optional_array(
            prefix + "codebooks", np.float32, (self.m, self.ksub, self.dsub), finite=True
        )
        if books is not None:
            self.codebooks = np.ascontiguousarray(f.bounded(prefix + "codebooks", books, self.dim))
        rotation = f.optional_array(
            prefix + "rotation", np.float32, (self.dim, self.dim), finite=True
        )
        if rotation is not None:
            if books is None:
                raise f.error(prefix + "codebooks", "missing, but the file has an OPQ rotation")
            if rotation.size and float(np.abs(rotation).max()) > 1.001:  # orthogonal: |r_ij| <= 1
                raise f.error(prefix + "rotation", "entries above 1: not an orthogonal rotation")
            self.rotation = np.ascontiguousarray(rotation)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self._arrays().values()))


Layouts = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]


def _check_rerank_k(rerank_k: Any, k: int, store: RerankStore | None) -> int:
    if store is None:
        if rerank_k is not None:
            raise ValueError("rerank_k needs an index built with rerank='memory' or a file path")
        return k
    if rerank_k is None:
        return max(100, 4 * k)
    size = _checks.check_list_size(rerank_k, "rerank_k")
    if size < k:
        raise ValueError(f"rerank_k must be >= k; got rerank_k={size}, k={k}")
    return size


class PQCoreIndex(CoreIndex):
    """What PQIndex and IVFPQIndex share: removes and reconstruct through their C++ core."""

    _store: RerankStore | None

    def remove(self, ids: Any) -> int:
        """Remove vectors by id; returns how many were removed (unknown ids are ignored).
        O(1) per id: the rows stay, masked out of every scan."""
        return int(self._core.remove(_checks.as_id_list(ids)))

    def reconstruct(self, ids: Any) -> np.ndarray:
        """Stored full vectors of the given ids from the re-rank rows, float32 (len(ids), dim)
        (unit length for cosine); needs rerank (KeyError names ids not in the index)."""
        a = _checks.as_id_list(ids)
        if self._store is None:
            raise ValueError(
                f"{type(self).__name__} keeps only compressed codes; build it with "
                "rerank='memory' (or a file) to reconstruct vectors"
            )
        rows, found = self._core.vectors(a)
        if not found.all():
            raise KeyError(f"ids not in the index: {a[~found][:5].tolist()}")
        out: np.ndarray = rows
        return out


class PQIndex(PQCoreIndex):
    """Flat product-quantization index: every code is scored per query.

    dim, m, nbits : as ProductQuantizer; nbits=4 stores codes in the fast-scan layout
                    (blocks of 32 rows, uint8 tables held in registers, byte shuffles)
    metric        : 'l2' (squared), 'ip' (1 - <q, x>), 'cosine' (1 - cos; normalised at add)
    opq           : learn an OPQ rotation in train()
    rerank        : None, 'memory' (float32 vectors in RAM) or a file path (memory-mapped
                    float32 file) for exact re-scoring of rerank_k candidates
    overwrite     : allow rerank to name an existing non-empty file (it is emptied)
    remove(ids) forgets the ids (their rows are never returned); storage is not compacted.

    The codebooks (after train), codes, ids and re-rank rows live in one C++ object
    (simdex._core.PqCore); ``pq`` is the quantizer that train() fits and hands over.
    """

    kind = "pq"

    def __init__(
        self,
        dim: int,
        m: int,
        *,
        nbits: int = 8,
        metric: FloatMetric = "l2",
        opq: bool = False,
        rerank: Any = None,
        overwrite: bool = False,
    ) -> None:
        self.metric = _checks.check_metric(metric, PQ_METRICS)
        self.pq = ProductQuantizer(dim, m, nbits=nbits)
        self.dim, self.m, self.nbits, self.opq = self.pq.dim, self.pq.m, self.pq.nbits, bool(opq)
        rerank = RerankStore.check_where(rerank, overwrite)
        self._store = None if rerank is None else RerankStore(self.dim, self.metric, rerank)
        self._make_core()

    def _make_core(self) -> None:
        rows = None if self._store is None else self._store.core
        self._core = _core.PqCore(self.dim, self.m, self.nbits, self.metric, rows)
        self._given: tuple[int, int] | None = None  # ids of the parameters the core holds
        self._train_lock = threading.Lock()

    def _sync(self) -> None:
        """Hand the quantizer's parameters to the core when they changed (train(), or
        codebooks assigned to ``pq`` directly); refused by the core once rows are stored."""
        books = self.pq.codebooks
        if books is None:
            return
        key = (id(books), id(self.pq.rotation))
        if key != self._given:
            rotation = self.pq.rotation
            self._core.set_trained(
                np.ascontiguousarray(books, dtype=np.float32),
                None if rotation is None else np.ascontiguousarray(rotation, dtype=np.float32),
            )
            self._given = key

    @property
    def is_trained(self) -> bool:
        return self.pq.is_trained

    @property
    def nbytes(self) -> int:
        return int(self._core.nbytes + self.pq.nbytes)

    def _prepare(self, x: Any, name: str) -> tuple[np.ndarray, bool]:
        a, was_1d = _checks.as_float_rows(x, self.dim, name)
        return (normalize(a) if self.metric == "cosine" else a), was_1d

    def train(
        self, x: Any, *, seed: int = 0, threads: int | None = None, progress: bool = False
    ) -> PQIndex:
        """Train the quantizer (and the OPQ rotation if opq=True) on x (n, dim), n >= 2**nbits
        (progress: a bar over the sub-space k-means runs)."""
        threads = _checks.check_threads(threads)
        with self._train_lock:
            _checks.check_untrained(self, len(self))
            a, _ = self._prepare(x, "x")
            self.pq.fit(a, opq=self.opq, seed=seed, threads=threads, progress=progress)
            self._sync()
        return self

    def add(
        self, x: Any, ids: Any = None, *, threads: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Encode and add vectors x (n, dim); returns their ids (n,) int64 (progress: a bar
        over the rows encoded). One call into the core (encoding included, in C++)."""
        threads = _checks.check_threads(threads)
        _progress.check(progress)
        if not self.is_trained:
            raise ValueError("PQIndex is not trained; call train(x) before add()")
        self._sync()
        a, _ = self._prepare(x, "x")
        new_ids = None if ids is None else _checks.as_ids(ids, a.shape[0])
        codes = None
        if progress:  # encode in chunks for the bar, then add them in one call
            codes = np.empty((a.shape[0], self.m), np.uint8)
            with _progress.Progress(progress, a.shape[0], "PQ add") as bar:
                for part in _progress.chunks(a.shape[0], bar):
                    codes[part] = self._core.encode(a[part], threads)
        added: np.ndarray = self._core.add(a, codes, new_ids, threads)
        return added

    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        filter: Any = None,
        max_distance: Any = None,
        threads: int | None = None,
        rerank_k: int | None = None,
    ) -> SearchResult:
        """Approximate k nearest neighbours.

        queries      : (q, dim) or (dim,) floats (float32 taken without copy)
        k            : int >= 1
        filter       : int64 array of allowed ids, or boolean mask indexed by id, or a list
                       with one such filter per query row
        max_distance : float or (q,) floats; farther results are dropped (-1 / +inf)
        rerank_k     : candidates re-scored exactly (needs rerank=...; default max(100, 4 k))
        returns      : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64, -1
                       padded); distances are ADC estimates, or exact after re-ranking

        One (dim,) float32 query without filter, max_distance or rerank_k (threads None or 1)
        takes a lean path: C++ checks it (finite, normalised for cosine) and scans on the
        calling thread (threads=None: on every core once the codes pass 8 MB).
        """
        if (
            filter is None
            and max_distance is None
            and rerank_k is None
            and (threads is None or threads.__class__ is int and threads == 1)
            and k.__class__ is int
            and k > 0
            and queries.__class__ is np.ndarray
            and queries.ndim == 1
            and queries.dtype == np.float32
            and queries.shape[0] == self.dim
            and queries.flags.c_contiguous
        ):
            candidates = k if self._store is None else max(100, 4 * k)
            return SearchResult(*self._core.search1(queries, k, candidates, threads))
        k = _checks.check_k(k)
        threads = _checks.check_threads(threads)
        candidates = _check_rerank_k(rerank_k, k, self._store)
        q, was_1d = self._prepare(queries, "queries")
        allowed, offsets, allowed_mask = _checks.as_filter(filter, q.shape[0])
        # One C++ call: rotate, tables, scan, exact re-rank, slots to ids.
        dist, ids = self._core.search(
            q, q.shape[0], k, candidates, allowed, offsets, allowed_mask, threads
        )
        return _result.finish(dist, ids, was_1d, max_distance)

    # ---- persistence --------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = self._core.state()  # one consistent copy, taken under the core's read lock
        n = int(state["slots"])
        params: dict[str, Any] = {
            "dim": self.dim,
            "m": self.m,
            "nbits": self.nbits,
            "metric": self.metric,
            "opq": self.opq,
            "n": n,
            "next_id": int(state["next_id"]),
        }
        shape = (n, self.m) if self.nbits == 8 else ((n + 31) // 32, _m4(self.m) // 2, 32)
        arrays = {"codes": state["codes"].reshape(shape), "ids": state["ids"], **self.pq._arrays()}
        if self._store is not None:
            params.update(self._store.params(state))
            arrays.update(self._store.arrays(state))
        return params, arrays

    @classmethod
    def _from_state(cls, f: Fields) -> PQIndex:
        index = f.build(
            cls,
            f.int("dim", 1, MAX_DIM),
            f.int("m", 1, MAX_DIM),
            nbits=f.int("nbits", 4, 8),
            metric=f.choice("metric", PQ_METRICS),
            opq=f.bool("opq"),
        )
        index.pq._restore(f)
        n = f.int("n", 0, 2**40)
        expected = (n, index.m) if index.nbits == 8 else ((n + 31) // 32, _m4(index.m) // 2, 32)
        codes = f.array("codes", np.uint8, expected)
        ids = f.ids("ids", n)
        if n and index.pq.codebooks is None:
            raise f.error("pq_codebooks", f"missing, but the index holds {n} codes")
        if index.opq and index.pq.codebooks is not None and index.pq.rotation is None:
            raise f.error("pq_rotation", "missing, but the index was trained with opq=True")
        if f.has("rerank"):
            index._store = f.rows_for(RerankStore.restore(f, index.dim, index.metric), n)
            index._make_core()
        index._sync()
        index._core.restore(
            np.ascontiguousarray(codes).reshape(-1),
            np.ascontiguousarray(ids),
            f.int("next_id", 0, 2**62),
        )
        return index

    def _repr_fields(self) -> str:
        rerank = None if self._store is None else (self._store.path or "memory")
        return f"m={self.m}, nbits={self.nbits}, opq={self.opq}, rerank={rerank!r}"
