"""HNSWIndex: approximate k-NN on a hierarchical navigable small-world graph (C++ core).

The graph, the stored rows, the id <-> slot map, tombstones and the reader-writer lock live in
one C++ object, simdex._core.HnswGraph (see cpp/index/hnsw.hpp for the algorithm, memory
layout and locking); this module validates input, encodes rows, picks the insertion order and
persists. Each operation is one call into C++.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, _core, _progress, _result, _storage
from ._base import CoreIndex
from ._checks import MAX_DIM, Metric, Storage
from ._format import Fields
from ._rerank import RerankStore
from ._result import SearchResult
from .kernels import normalize
from .lid import lid
from .rabitq import draw_rotation

INSERTION_ORDERS = ("given", "random", "lid_desc")
DEFAULT_EF = 64
LID_K = 20
HNSW_STORAGES = (*_checks.STORAGES, "rabitq")
RABITQ_ROTATION = "hadamard"


class HNSWIndex(CoreIndex):
    """Approximate nearest-neighbour graph index (Malkov & Yashunin HNSW).

    dim             : vector dimension; for metric='hamming' the number of bits (a multiple of
                      8) and vectors are uint8 codes packed with numpy.packbits
    metric          : 'l2' (squared), 'ip' (1 - <q, x>), 'cosine' (1 - cos), 'hamming'
    M               : links per node on upper levels (2M on level 0), int >= 2
    ef_construction : candidate list size while building, int >= 1
    storage         : 'float32', 'float16', 'bfloat16' or 'int8' (ranges trained on the first
                      add); queries stay float32. 'rabitq': a graph over compressed codes
                      (SymphonyQG-style): each node keeps the RaBitQ codes of its level-0
                      neighbours beside its links, the level-0 walk scores them from those
                      codes, every node it expands is scored exactly (float32 rows kept in
                      RAM, or in a file: see rerank), and up to rerank_k - max(ef, k) more
                      candidates are re-ranked (search's rerank_k, default 2 * max(ef, k)).
                      The graph itself is built on the exact rows. The centre of the codes is
                      the mean of the vectors of train() or of the first add.
    bits            : storage='rabitq' only: bits per dimension of the codes, 1..8 (queries are
                      quantised to min(8, bits + 3) bits); default 1
    int8_queries    : storage='int8' with metric 'ip' or 'cosine' only: queries are rounded to
                      int8 too (one scale per query), so every distance is an exact integer dot
                      product (VNNI on AVX-512). Faster walks and builds; distances carry the
                      query rounding (about 1/254 of the largest scaled component per term),
                      so use it where results are re-ranked. Default False.
    seed            : seeds node levels and insertion_order='random'; with threads=1 the
                      build is deterministic
    rerank          : storage='rabitq' only: where the exact float32 rows live (used to build,
                      for the upper-level descent, the exact scores of expanded nodes and the
                      re-rank). None or 'memory' (default): in RAM, inside the node blocks; a
                      path: in that file, grown and memory-mapped (the node blocks then hold
                      links only; the OS pages rows in as the walk reads them). save() records
                      the file's size and CRC-32, never its path: reopen with
                      simdex.load(index_path, rerank=path). A read-only file still searches.
    overwrite       : allow rerank to name an existing non-empty file (it is emptied)

    Filtered search (filter=): only allowed ids are returned; the walk still passes through
    excluded nodes. When fewer than 3% of the vectors (or at most max(ef, k)) are allowed,
    the allowed rows are scanned exactly instead (kHnswExactFilterFraction in hnsw.hpp).
    """

    kind = "hnsw"

    def __init__(
        self,
        dim: int,
        metric: Metric = "l2",
        *,
        M: int = 16,
        ef_construction: int = 200,
        storage: Storage = "float32",
        seed: int = 0,
        int8_queries: bool = False,
        bits: int | None = None,
        rerank: Any = None,
        overwrite: bool = False,
    ) -> None:
        self.dim = _checks.check_dim(dim)
        self.metric = _checks.check_metric(metric)
        self.storage = _checks.check_choice(storage, "storage", HNSW_STORAGES)
        if bits is not None and self.storage != "rabitq":
            raise ValueError(f"bits applies to storage='rabitq' only; got storage={storage!r}")
        self.bits = 1 if bits is None else _checks.check_positive_int(bits, "bits")
        if self.bits > 8:
            raise ValueError(f"bits must be in 1..8; got {bits}")
        self.M = _checks.check_positive_int(M, "M", 2)
        if self.M > 1024:
            raise ValueError(f"M must be <= 1024; got {M}")
        self.ef_construction = _checks.check_list_size(ef_construction, "ef_construction")
        self.seed = _checks.check_positive_int(seed, "seed", 0)
        if self.metric == "hamming":
            if storage != "float32":
                raise ValueError(
                    "metric='hamming' stores packed bit codes; storage must be left at its default"
                )
            if self.dim % 8:
                raise ValueError(
                    "for metric='hamming' dim is the number of bits and must be a multiple of 8; "
                    f"got {dim}"
                )
        if self.storage == "rabitq" and self.metric == "hamming":
            raise ValueError("storage='rabitq' codes float vectors; metric 'hamming' has none")
        if rerank is not None and self.storage != "rabitq":
            raise ValueError(
                "rerank applies to storage='rabitq' only (its exact rows in RAM or a file); "
                f"got storage={storage!r}"
            )
        self._ef = DEFAULT_EF
        self._centre: np.ndarray | None = None  # storage='rabitq': the codes' centre
        hamming = self.metric == "hamming"
        self._query_dtype = np.dtype(np.uint8 if hamming else np.float32)
        self._query_width = self.dim // 8 if hamming else self.dim
        self._lo: np.ndarray | None = None
        self._scale: np.ndarray | None = None
        if not isinstance(int8_queries, bool):
            raise TypeError(
                f"int8_queries must be True or False; got {type(int8_queries).__name__}"
            )
        if int8_queries and (self.storage != "int8" or self.metric not in ("ip", "cosine")):
            raise ValueError(
                "int8_queries=True needs storage='int8' and metric 'ip' or 'cosine'; "
                f"got storage={self.storage!r}, metric={self.metric!r}"
            )
        # last: every argument is checked before a rerank file is created (or emptied)
        where = RerankStore.check_where(rerank, overwrite)
        # storage='rabitq', rows in a file: the store the graph reads its rows from
        self._store: RerankStore | None = None
        if where is not None and where != "memory":
            self._store = RerankStore(self.dim, self.metric, where)
        self._core = self._new_core()
        self._core.int8_queries = int8_queries

    def _new_core(self) -> Any:
        return _core.HnswGraph(
            self._core_storage(),
            self.metric,
            self.dim,
            self.M,
            self.ef_construction,
            self.seed,
            None if self._store is None else self._store.core,
        )

    # ---- properties ---------------------------------------------------------------------
    def _core_storage(self) -> str:
        return "bits" if self.metric == "hamming" else self._row_storage

    @property
    def _row_storage(self) -> str:
        return "float32" if self.storage == "rabitq" else self.storage

    def _enable_codes(self, centre: np.ndarray) -> None:
        """storage='rabitq': fix the codes' centre (dim,) float32 and turn the code side on."""
        self._centre = np.ascontiguousarray(centre, dtype=np.float32)
        self._core.enable_codes(
            self.bits,
            min(8, self.bits + 3),
            RABITQ_ROTATION,
            draw_rotation(self.dim, RABITQ_ROTATION, self.seed),
            self._centre,
        )

    @property
    def is_trained(self) -> bool:
        """False only for storage='int8' / 'rabitq' before their ranges / centre are learnt
        (train() or first add)."""
        if self.storage == "rabitq":
            return self._centre is not None
        return self.storage != "int8" or self._lo is not None

    @property
    def int8_queries(self) -> bool:
        return bool(self._core.int8_queries)

    @property
    def ef(self) -> int:
        """Default search list size (search uses max(ef, k)); int >= 1."""
        return self._ef

    @ef.setter
    def ef(self, value: int) -> None:
        self._ef = _checks.check_list_size(value, "ef")

    @property
    def nbytes(self) -> int:
        extra = (
            0 if self._lo is None or self._scale is None else self._lo.nbytes + self._scale.nbytes
        )
        if self._centre is not None:
            extra += self._centre.nbytes
        return int(self._core.nbytes + extra)

    def _prepare(self, x: Any, name: str) -> tuple[np.ndarray, bool]:
        if self.metric == "hamming":
            return _checks.as_codes(x, self.dim // 8, name)
        return _checks.as_float_rows(x, self.dim, name)

    # ---- building -----------------------------------------------------------------------
    def train(self, x: Any) -> HNSWIndex:
        """Learn int8 ranges (storage='int8') or the codes' centre (storage='rabitq') from
        sample vectors x (n, dim) before the first add; other storages need no training (a
        no-op)."""
        a, _ = self._prepare(x, "x")
        if self.storage == "rabitq":
            if len(self) or self._core.slot_count or self._centre is not None:
                raise ValueError(
                    "train() must come before the first add() and only once: the codes' centre "
                    "is fixed"
                )
            if self.metric == "cosine":
                a = normalize(a)
            self._enable_codes(a.mean(axis=0, dtype=np.float64))
        if self.storage == "int8":
            if len(self) or self._core.slot_count:
                raise ValueError(
                    "train() must come before the first add(): the int8 ranges of stored rows are "
                    "fixed"
                )
            if self.metric == "cosine":
                a = normalize(a)
            self._lo, self._scale = _storage.train_int8(a)
            self._core.set_ranges(self._lo, self._scale)
        return self

    def add(
        self,
        x: Any,
        ids: Any = None,
        *,
        threads: int | None = None,
        insertion_order: str = "given",
        progress: bool = False,
    ) -> np.ndarray:
        """Insert vectors; returns their ids (n,) int64.

        x               : (n, dim) floats, or (n, dim/8) uint8 codes for metric='hamming'
        ids             : (n,) unique non-negative ints not in the index, or None (sequential)
        threads         : build threads (None = all cores); threads=1 is deterministic
        insertion_order : 'given' (row order), 'random' (seeded), 'lid_desc' (descending
                          local intrinsic dimensionality, see simdex.lid)
        progress        : show a tqdm progress bar (needs tqdm: pip install simdex[progress])

        Ctrl-C stops the insert: the rows inserted so far stay and are searchable, the others
        are not added (check with `id in index`).
        """
        threads = _checks.check_threads(threads)
        insertion_order = _checks.check_choice(insertion_order, "insertion_order", INSERTION_ORDERS)
        _progress.check(progress)
        a, _ = self._prepare(x, "x")
        new_ids = None if ids is None else _checks.as_ids(ids, a.shape[0])
        a, rows = self._encode_rows(a)
        order = self._order(a, insertion_order, threads)
        with _progress.Progress(progress, a.shape[0], "HNSW add") as bar:
            return self._add_rows(rows, new_ids, order, threads, bar)

    def _encode_rows(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Checked rows (n, dim) -> (rows as indexed (unit length for cosine), rows encoded to
        the storage, C-contiguous); the first add of int8 storage learns the ranges."""
        if self.metric == "cosine":
            a = normalize(a)
        if self.storage == "int8" and self._lo is None:
            _storage.warn_small_int8_sample(a.shape[0], type(self).__name__)
            self._lo, self._scale = _storage.train_int8(a)
            self._core.set_ranges(self._lo, self._scale)
        if self.storage == "rabitq" and self._centre is None:
            self._enable_codes(a.mean(axis=0, dtype=np.float64))
        rows = (
            a
            if self.metric == "hamming"
            else _storage.encode(a, self._row_storage, self._lo, self._scale)
        )
        return a, np.ascontiguousarray(rows)

    def _order(self, a: np.ndarray, insertion_order: str, threads: int | None) -> np.ndarray | None:
        n = a.shape[0]
        if insertion_order == "given" or n < 2:
            return None
        if insertion_order == "random":
            rng = np.random.default_rng([self.seed, int(self._core.insert_count)])
            return rng.permutation(n).astype(np.int64)
        # lid_desc: Euclidean LID of what is stored (bits unpacked: squared L2 = Hamming)
        points = np.unpackbits(a, axis=1).astype(np.float32) if self.metric == "hamming" else a
        k = min(LID_K, n - 1)
        values = lid(points, k, threads=threads)
        return np.argsort(-values, kind="stable").astype(np.int64)

    def _add_rows(
        self,
        rows: np.ndarray,
        ids: np.ndarray | None,
        order: np.ndarray | None,
        threads: int | None,
        bar: _progress.Progress,
    ) -> np.ndarray:
        """Insert encoded rows: one call into the core, or (a bar shown) chunks of about 1%
        of the rows, each ticking the bar. LeanVec and Binary graphs insert through here."""
        if not bar.shown:
            added: np.ndarray = self._core.add(rows, ids, order, threads)
            return added
        n = rows.shape[0]
        sequence = np.arange(n, dtype=np.int64) if order is None else order
        out = np.empty(n, dtype=np.int64)
        for part in _progress.chunks(n, bar, chunk=max(1000, n // 100)):
            chosen = sequence[part]
            out[chosen] = self._core.add(
                np.ascontiguousarray(rows[chosen]),
                None if ids is None else np.ascontiguousarray(ids[chosen]),
                None,
                threads,
            )
        return out

    def remove(self, ids: Any, *, threads: int | None = None) -> int:
        """Remove vectors by id (unknown ids are ignored); returns how many were removed.

        O(1) per id: the node becomes a tombstone that searches walk through but never
        return. Once tombstones exceed 10% of the live vectors, their neighbours re-select
        links and the slots are reused by later adds (or call compact()).
        """
        threads = _checks.check_threads(threads)
        return int(self._core.remove(_checks.as_id_list(ids), threads))

    def compact(self, *, threads: int | None = None) -> int:
        """Unlink every removed (tombstoned) node now and free its slot; returns how many."""
        threads = _checks.check_threads(threads)
        return int(self._core.compact(threads))

    # ---- search -------------------------------------------------------------------------
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        ef: int | None = None,
        filter: Any = None,
        max_distance: Any = None,
        threads: int | None = None,
        buffered: bool = False,
        rerank_k: int | None = None,
    ) -> SearchResult:
        """Approximate k nearest neighbours.

        queries      : (q, dim) or (dim,) float32 (other float dtypes are converted with one
                       copy); uint8 codes (q, dim/8) for metric='hamming'
        k            : int >= 1
        ef           : search list size (default: the ef property); max(ef, k) is used
        filter       : int64 array of allowed ids, or boolean mask indexed by id, or a list
                       with one such filter per query row
        max_distance : float or (q,) floats; results farther than it are dropped (-1 / +inf)
        threads      : None = all cores (a single query uses one)
        buffered     : with k > ef, keep the search window at ef and return the k best of
                       every node scored on the way (a candidate buffer larger than the
                       window, for re-ranking pipelines; SVS-style); default: window max(ef, k)
        rerank_k     : storage='rabitq' only: candidates scored exactly, default
                       2 * max(ef, k), values below k count as k. Without a filter (bits=1):
                       the max(ef, k) nodes of the walk's window are scored as they are
                       expanded, plus the best rerank_k - max(ef, k) estimates outside it
                       whose RaBitQ lower bound can still beat the k-th exact distance; with
                       a filter or bits > 1: the rerank_k best estimates of the walk
        returns      : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64, -1 padded)
        """
        if (
            filter is None
            and max_distance is None
            and threads is None
            and not buffered
            and (
                rerank_k is None
                or (
                    self.storage == "rabitq"
                    and type(rerank_k) is int
                    and 0 < rerank_k <= _checks.MAX_LIST
                )
            )
            and type(k) is int
            and k > 0
            and (ef is None or (type(ef) is int and ef > 0))
            and type(queries) is np.ndarray
            and queries.ndim == 1
            and queries.dtype == self._query_dtype
            and queries.shape[0] == self._query_width
            and queries.flags.c_contiguous
        ):
            # lean path for one query (C++ re-checks size and finiteness)
            return SearchResult(
                *self._core.search1(queries, k, self._ef if ef is None else ef, rerank_k or 0)
            )
        k = _checks.check_k(k)
        ef = self._ef if ef is None else _checks.check_list_size(ef, "ef")
        threads = _checks.check_threads(threads)
        q, was_1d = self._prepare(queries, "queries")
        allowed, offsets, allowed_mask = _checks.as_filter(filter, q.shape[0])
        if not isinstance(buffered, bool):
            raise TypeError(f"buffered must be True or False; got {type(buffered).__name__}")
        code_buffer = 0
        if rerank_k is not None:
            if self.storage != "rabitq":
                raise ValueError("rerank_k applies to storage='rabitq' indexes only")
            code_buffer = _checks.check_list_size(rerank_k, "rerank_k")
        if buffered and self.storage == "rabitq":
            raise ValueError("buffered applies to float graphs; storage='rabitq' uses rerank_k")
        dist, ids = self._core.search(
            q,
            q.shape[0],
            k,
            ef,
            allowed,
            offsets,
            allowed_mask,
            self.metric == "cosine",
            threads,
            buffered,
            code_buffer,
        )
        return _result.finish(dist, ids, was_1d, max_distance)

    # ---- persistence --------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = self._core.state()  # one consistent copy, taken under the graph's read lock
        params = {
            "dim": self.dim,
            "metric": self.metric,
            "storage": self.storage,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "seed": self.seed,
            "ef": self._ef,
            "next_id": int(state["next_id"]),
            "entry": int(state["entry"]),
            "max_level": int(state["max_level"]),
            "insert_count": int(state["insert_count"]),
            "block_bytes": int(self._core.block_bytes),
            "int8_queries": self.int8_queries,
        }
        if self.storage == "rabitq":
            params["bits"] = self.bits
        if self._store is not None:  # the side file's rows, bytes and CRC-32 (never its path)
            params.update(self._store.params(state))
        arrays = {
            "blocks": state["blocks"],
            "levels": state["levels"],
            "upper": state["upper"],
            "ids": state["ids"],
        }
        if self._lo is not None:
            arrays["lo"], arrays["scale"] = self._lo, self._scale
        if self._centre is not None:
            arrays["centre"] = self._centre
        return params, arrays

    @classmethod
    def _from_state(cls, f: Fields) -> HNSWIndex:
        index = f.build(
            cls,
            f.int("dim", 1, MAX_DIM),
            f.choice("metric", _checks.METRICS),
            M=f.int("M", 2, 1024),
            ef_construction=f.int("ef_construction", 1, _checks.MAX_LIST),
            storage=f.choice("storage", HNSW_STORAGES),
            seed=f.int("seed", 0, 2**63 - 1),
            int8_queries=f.bool("int8_queries", False),
        )
        if index.storage == "rabitq":
            index.bits = f.int("bits", 1, 8)
        index.ef = f.int("ef", 1, _checks.MAX_LIST)
        ids = f.ids("ids")
        n = ids.shape[0]
        if f.has("rerank"):  # storage='rabitq' with its rows in a side file
            if index.storage != "rabitq":
                raise f.error(
                    "rerank", f"only storage='rabitq' keeps rows apart; got {index.storage!r}"
                )
            f.choice("rerank", ("file",))
            f.int("rerank_crc32", 0, 2**32 - 1)  # always written with these rows
            store = RerankStore.restore(f, index.dim, index.metric)
            if len(store) < n:
                raise f.error("rerank_rows", f"{len(store)} re-rank rows for {n} slots")
            index._store = store
            index._core = index._new_core()
        bb = index._core.block_bytes
        if f.int("block_bytes", 1, 1 << 30) != bb:
            raise f.error(
                "block_bytes", f"{f.params['block_bytes']} does not match {bb} for these parameters"
            )
        blocks = f.array("blocks", np.uint8, (n, bb))
        levels = f.array("levels", np.int32, (n,))
        upper = f.array("upper", np.uint32, (None,))
        if ((ids >= 0) & (levels < 0)).any():
            raise f.error("levels", "a slot with an id has no level")
        if index.metric != "hamming" and index._store is None:  # (side file: checked by restore)
            dtype = _storage.ROW_DTYPES[index._row_storage]
            row_bytes = index.dim * np.dtype(dtype).itemsize
            f.finite_rows(
                "blocks",
                np.ascontiguousarray(blocks[:, :row_bytes]).view(dtype),
                index._row_storage,
            )
        ranges = (
            f.optional_ranges("lo", "scale", index.dim, needed=n > 0)
            if index.storage == "int8"
            else None
        )
        if ranges is not None:  # an int8 index saved before its first add has none
            index._lo, index._scale = ranges
            index._core.set_ranges(index._lo, index._scale)
        if index.storage == "rabitq":
            centre = f.optional_array("centre", np.float32, (index.dim,), finite=True)
            if centre is not None:  # none: saved before its first add
                index._enable_codes(f.bounded("centre", centre, index.dim))
            elif n > 0:
                raise f.error("centre", "missing, but the index holds vectors")
        # links, levels and the entry point are checked by the core before use
        # (storage='rabitq': the codes are re-encoded from the checked rows, never read)
        index._core.restore(
            blocks,
            np.ascontiguousarray(ids),
            levels,
            upper,
            f.int("entry", -1, 2**32 - 2),
            f.int("max_level", -1, 30),
            f.int("insert_count", 0, 2**63 - 1),
            f.int("next_id", 0, 2**62, 0),
            True,
        )
        return index

    def _repr_fields(self) -> str:
        fields = f"M={self.M}, ef_construction={self.ef_construction}"
        if self.storage != "float32":
            fields = f"storage={self.storage!r}, " + fields
        if self.int8_queries:
            fields += ", int8_queries=True"
        if self.storage == "rabitq":
            fields += f", bits={self.bits}"
        if self._store is not None:
            fields += f", rerank={self._store.path!r}"
        return fields

    def __repr__(self) -> str:
        return (
            f"HNSWIndex(dim={self.dim}, metric={self.metric!r}, {self._repr_fields()}, "
            f"n={len(self)}, simd={self._core.simd!r})"
        )
