"""ShardedIndex: one simdex index split into shards that live on Dask workers.

    import simdex as sx
    from dask.distributed import Client
    from simdex.distributed import ShardedIndex

    client = Client("tcp://scheduler:8786")
    index = ShardedIndex(lambda: sx.HNSWIndex(384, "cosine", M=16), client=client)
    index.train(sample)             # once, on the client; the trained state goes to every shard
    index.add(x)                    # NumPy or dask.array; ids are global
    D, I = index.search(q, 10)      # every shard searched, top-k merged exactly

How it works
- Shards are Dask actors (`_Shard`), one per shard, pinned to a worker (round-robin over
  the workers, sorted by address). A shard holds one simdex index for its whole life: queries
  and rows travel to it, the index never does.
- Shared code space: `train(x)` trains one prototype index (built by `make_index()`) on the
  client and ships that trained, empty index to every shard (pickling goes through the
  simdex file format), so codebooks, projections and int8 ranges are the same everywhere.
  Indexes that train themselves on their first add (int8 Flat / HNSW, BinaryIndex) are
  trained on the first added batch (a dask.array's first block) by the client in the same way.
- Placement: a row lives on shard `shard_of(id, n_shards)` (a fixed 64-bit mix of its id,
  modulo the number of shards). Routing `remove`, `reconstruct` and `id in index` costs
  O(len(ids)) with no table on the client; the owning shard alone checks that a new id is
  not taken, so ids stay globally unique.
- Search: the queries go to every shard, each returns its top-`shard_k` (default k) and the
  client merges them: distances ascending (every simdex metric is a distance: smaller is
  closer), ties broken by the smaller id, -1 / +inf padding last. For exact shards the
  result equals one index over all the rows. `filter=`, `max_distance=` and the index's own
  search parameters (ef, nprobe, rerank_k, threads, ...) pass through to every shard.
- Failure: every call waits for all shards it needs. A shard whose worker was lost (or that
  does not answer within `timeout=`) makes the call raise ShardUnavailableError; no partial
  result is ever returned. A shard's rows die with its worker (there are no replicas):
  reload the index from its last `save()`. An `add` that fails on some shard is undone on
  the others before the error is raised.
- Persistence: `save(directory)` has every worker write its shard file (the simdex index
  format) and the client write `manifest.json`; `ShardedIndex.load(directory, client=...)`
  has the workers read their files (memory-mapped with mmap=True). The directory must be
  visible under the same path to the client and every worker (a local or shared disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

try:
    import distributed
    from distributed.utils import sync
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "simdex.distributed needs Dask: pip install 'simdex[distributed]' (dask and distributed)"
    ) from exc

from . import _checks, _format
from ._base import Index, _ReadWriteLock
from ._result import SearchResult

__all__ = ["ShardUnavailableError", "ShardedIndex", "merge_range", "merge_topk", "shard_of"]

MANIFEST = "manifest.json"
FORMAT = "simdex-sharded"
FORMAT_VERSION = 1
PLACEMENT = "splitmix64-mod"
MAX_SHARDS = 65536
_MAX_MANIFEST_BYTES = 16 << 20
_TOKEN = re.compile(r"[0-9a-f]{16}")
_SHARD_FILE = re.compile(r"shard-(\d{5})-([0-9a-f]{16})\.sdx")


class ShardUnavailableError(RuntimeError):
    """A shard did not answer: its worker was lost, or it exceeded the call's timeout.
    The call returned nothing (no partial result). Attributes: shard, worker."""

    def __init__(self, message: str, shard: int, worker: str) -> None:
        super().__init__(message)
        self.shard, self.worker = shard, worker

    def __reduce__(self) -> tuple[Any, ...]:  # raised in worker tasks too: travels back pickled
        return (type(self), (str(self), self.shard, self.worker))


# ---- placement -----------------------------------------------------------------------------
_MIX_ADD = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def shard_of(ids: Any, n_shards: int) -> np.ndarray:
    """Owning shard of each id: (n,) int64 in [0, n_shards).

    The splitmix64 finaliser of the id, modulo n_shards: sequential ids and ids sharing a
    stride spread evenly. Fixed for a format version (saved manifests rely on it)."""
    z = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1).view(np.uint64)
    with np.errstate(over="ignore"):
        z = z + _MIX_ADD
        z = (z ^ (z >> np.uint64(30))) * _MIX_1
        z = (z ^ (z >> np.uint64(27))) * _MIX_2
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_shards)).astype(np.int64)


def _split(ids: np.ndarray, n_shards: int) -> dict[int, np.ndarray]:
    """Positions of ids per owning shard (only shards that own some): {shard: (m,) int64}."""
    owner = shard_of(ids, n_shards)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n_shards + 1))
    return {
        s: order[bounds[s] : bounds[s + 1]] for s in range(n_shards) if bounds[s + 1] > bounds[s]
    }


def _filters_per_shard(filter: Any, n_shards: int) -> list[Any] | None:
    """A filter of allowed ids split by owning shard (each shard is sent only its own ids:
    the payload stays len(filter) in all, not n_shards times it); None when the filter goes
    whole to every shard (None, a boolean mask by id, a list holding a mask, or input the
    shards will reject with their own message)."""
    if filter is None or n_shards == 1:
        return None
    if _checks.is_filter_list(filter):
        rows = [_filters_per_shard(f, n_shards) for f in filter]
        split = [r for r in rows if r is not None]
        if len(split) != len(rows):
            return None
        return [[r[s] for r in split] for s in range(n_shards)]
    a = np.asarray(filter)
    if (
        a.ndim != 1
        or a.dtype.kind not in "iu"
        or (a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max)
    ):
        return None
    ids = a.astype(np.int64, copy=False)
    owner = shard_of(ids, n_shards)
    return [ids[owner == s] for s in range(n_shards)]


# ---- merging -------------------------------------------------------------------------------
def _order_keys(distances: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """uint32 keys ordered as the float32 distances (-0.0 == 0.0), padding (-1) above all."""
    bits = (distances + np.float32(0.0)).view(np.uint32)
    keys = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    keys[ids < 0] = np.uint32(0xFFFFFFFF)
    return keys


def merge_topk(distances: list[np.ndarray], ids: list[np.ndarray], k: int) -> SearchResult:
    """Global top-k of per-shard results.

    distances : one (q, k_s) float32 array per shard, each row ascending, +inf padded
    ids       : one (q, k_s) int64 array per shard, -1 padded
    returns   : SearchResult((q, k) float32 ascending, (q, k) int64): equal distances in id
                order, padding (-1 / +inf) last

    Cost O(q * sum(k_s)) + O(q * k log k): a partition finds each row's k-th key, only the
    entries up to it (k, or more on ties) are sorted by (distance, id).
    """
    d = np.concatenate(distances, axis=1).astype(np.float32, copy=False)
    i = np.concatenate(ids, axis=1).astype(np.int64, copy=False)
    if d.shape[1] < k:
        pad = k - d.shape[1]
        d = np.concatenate([d, np.full((d.shape[0], pad), np.inf, np.float32)], axis=1)
        i = np.concatenate([i, np.full((i.shape[0], pad), -1, np.int64)], axis=1)
    keys = _order_keys(d, i)
    if d.shape[1] > 2 * k:  # keep the entries up to each row's k-th key (ties included)
        keep = keys <= np.partition(keys, k - 1, axis=1)[:, k - 1 : k]
        width = int(keep.sum(axis=1).max())
        cols = np.argsort(~keep, axis=1, kind="stable")[:, :width]  # kept columns first
        keys, d, i = (np.take_along_axis(a, cols, axis=1) for a in (keys, d, i))
    order = np.lexsort((i, keys), axis=1)[:, :k]
    return SearchResult(np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1))


def merge_range(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], nq: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-shard range results (lims (nq + 1,), distances, ids) into one, each query's
    results ascending (equal distances in id order)."""
    query = np.concatenate(
        [np.repeat(np.arange(nq, dtype=np.int64), np.diff(lims)) for lims, _, _ in parts]
    )
    d = np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False)
    i = np.concatenate([p[2] for p in parts]).astype(np.int64, copy=False)
    order = np.lexsort((i, d, query))
    lims = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(np.bincount(query, minlength=nq), out=lims[1:])
    return lims, d[order], i[order]


# ---- the shard (a Dask actor) --------------------------------------------------------------
def _reported(method: Callable[..., Any]) -> Callable[..., Any]:
    """Return (None, result) or (exception, None): an error raised by the index travels back
    as a value, so any exception the client sees from the actor future is a transport
    failure (worker lost, timeout), never the index's own error."""

    def wrapper(self: _Shard, *args: Any) -> tuple[BaseException | None, Any]:
        try:
            return None, method(self, *args)
        except Exception as exc:  # noqa: BLE001 - re-raised on the client
            return exc, None

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def _private(index: Index) -> Index:
    """A shard's own copy of the template: with in-process workers (processes=False) Dask
    hands every actor the very object the client sent, and shards must never share one."""
    copy: Index = pickle.loads(pickle.dumps(index))
    return copy


class _Shard:
    """One shard: a simdex index resident on one worker (Dask actor; its methods run one at
    a time in the worker's actor thread, each index call using the index's own threads)."""

    def __init__(
        self,
        number: int,
        n_shards: int,
        index: Index | None = None,
        path: str | None = None,
        mmap: bool = False,
        expect: dict[str, Any] | None = None,
    ) -> None:
        self.number, self.n_shards = number, n_shards
        self.error: Exception | None = None
        self._index: Index | None = None
        try:
            if path is not None:
                self._index = self._load(path, mmap, expect or {})
            elif index is not None:
                self._index = _private(index)
        except Exception as exc:  # noqa: BLE001 - reported by check()
            self.error = exc

    @property
    def index(self) -> Index:
        if self._index is None:
            raise self.error or ValueError(f"shard {self.number} holds no index")
        return self._index

    @index.setter
    def index(self, value: Index) -> None:
        self._index = value

    def _load(self, path: str, mmap: bool, expect: dict[str, Any]) -> Index:
        where = f"shard {self.number} ({path!r})"
        if not os.path.isfile(path):
            raise ValueError(f"{where}: file missing")
        size = os.path.getsize(path)
        if size != expect["bytes"]:
            raise ValueError(f"{where}: {size} bytes, the manifest says {expect['bytes']}")
        index = _format.load(path, mmap=mmap)
        if not isinstance(index, Index) or index.kind != expect["kind"]:
            raise ValueError(
                f"{where}: holds {type(index).__name__}, the manifest says kind {expect['kind']!r}"
            )
        if index.dim != expect["dim"] or index.metric != expect["metric"]:
            raise ValueError(
                f"{where}: dim={index.dim}, metric={index.metric!r}; the manifest says "
                f"dim={expect['dim']}, metric={expect['metric']!r}"
            )
        if len(index) != expect["rows"]:
            raise ValueError(f"{where}: {len(index)} rows, the manifest says {expect['rows']}")
        ids = index.ids
        misplaced = int(np.count_nonzero(shard_of(ids, self.n_shards) != self.number))
        if misplaced:
            raise ValueError(
                f"{where}: {misplaced} ids belong to other shards (files swapped or renamed?)"
            )
        if ids.size and int(ids.max()) >= expect["next_id"]:
            raise ValueError(
                f"{where}: id {int(ids.max())} >= next_id {expect['next_id']} of the manifest"
            )
        return index

    @_reported
    def check(self) -> str:
        """Raise the construction error, if any; else the index's repr."""
        return repr(self.index)

    @_reported
    def reset(self, index: Index) -> None:
        """Replace the (empty) index by a trained one."""
        if len(self.index):
            raise ValueError(
                f"train() must come before the first add(): shard {self.number} "
                f"already holds {len(self.index)} rows"
            )
        self.index = _private(index)

    @_reported
    def add(self, x: np.ndarray, ids: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return self.index.add(x, ids, **params)

    @_reported
    def remove(self, ids: np.ndarray) -> int:
        return int(self.index.remove(ids))

    @_reported
    def search(
        self, queries: np.ndarray, k: int, params: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        d, i = self.index.search(queries, k, **params)
        return d, i

    @_reported
    def range_search(
        self, queries: np.ndarray, radius: Any, params: dict[str, Any]
    ) -> tuple[Any, ...]:
        return self.index.range_search(queries, radius, **params)

    @_reported
    def contains(self, ids: np.ndarray) -> np.ndarray:
        return np.fromiter((int(i) in self.index for i in ids), dtype=bool, count=len(ids))

    @_reported
    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        return self.index.reconstruct(ids)

    @_reported
    def ids(self) -> np.ndarray:
        return self.index.ids

    @_reported
    def stats(self) -> tuple[int, int]:
        return len(self.index), int(self.index.nbytes)

    @_reported
    def save(self, path: str) -> dict[str, Any]:
        self.index.save(path)
        return {"rows": len(self.index), "bytes": os.path.getsize(path)}

    @_reported
    def apply(self, fn: Callable[[Index], Any]) -> Any:
        """Run fn(index) on the shard (maintenance such as compact; returns its result)."""
        return fn(self.index)


def _add_block(
    block: Any,
    ids: np.ndarray,
    actors: list[Any],
    workers: list[str],
    params: dict[str, Any],
    codes: bool,
    dim: int,
    timeout: float | None,
) -> int:
    """A task on the worker holding one dask.array block: check it, split it by owning shard
    and add each part to its shard (worker to worker; the client never sees the rows).
    All or nothing, as ShardedIndex.add; returns the number of rows added."""

    def failure(shard: int, exc: BaseException) -> BaseException:
        if not isinstance(exc, _Transport):
            return exc
        return ShardUnavailableError(
            f"shard {shard} on worker {workers[shard]} did not answer while "
            f"rows were added ({exc}); the add was undone",
            shard,
            workers[shard],
        )

    rows = _check_rows(block, dim, codes, "x")[0]
    if rows.shape[0] != ids.shape[0]:
        raise ValueError(
            f"a block of {rows.shape[0]} rows was given {ids.shape[0]} ids (chunk sizes changed?)"
        )
    error = _add_parts(actors, rows, ids, params, timeout, failure, distributed.get_worker().loop)
    if error is not None:
        raise error
    return int(ids.shape[0])


def _add_parts(
    actors: list[Any],
    rows: np.ndarray,
    ids: np.ndarray,
    params: dict[str, Any],
    timeout: float | None,
    failure: Callable[[int, BaseException], BaseException],
    loop: Any,
) -> BaseException | None:
    """Add rows (n, d) with global ids (n,) to their owning shards; on any failure remove
    them again from the shards that took them and return the first error (else None)."""
    parts = _split(ids, len(actors))
    calls = {
        s: _invoke(
            actors[s],
            "add",
            np.ascontiguousarray(rows[pos]),
            np.ascontiguousarray(ids[pos]),
            params,
        )
        for s, pos in parts.items()
    }
    results, errors = _wait(calls, timeout, loop)
    if not errors:
        return None
    undo = {s: _invoke(actors[s], "remove", np.ascontiguousarray(ids[parts[s]])) for s in results}
    _wait(undo, timeout, loop)
    shard, exc = min(errors.items())
    return failure(shard, exc)


class _Refused:
    """An actor call that failed before it was sent (the actor's worker is known lost)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self, timeout: float | None = None) -> Any:
        raise self.exc


def _invoke(actor: Any, method: str, *args: Any) -> Any:
    """Start actor.method(*args): its future, or a _Refused when Dask refuses the call."""
    try:
        return getattr(actor, method)(*args)
    except Exception as exc:  # noqa: BLE001 - e.g. "Worker holding Actor was lost"
        return _Refused(exc)


def _wait(
    calls: dict[int, Any], timeout: float | None, loop: Any
) -> tuple[dict[int, Any], dict[int, BaseException]]:
    """Wait for every actor call at once (one hop onto the Dask event loop `loop`, one
    deadline): ({shard: result}, {shard: exception}), exceptions from the transport
    (wrapped in _Transport) and from the index (reported as values) alike."""
    results: dict[int, Any] = {}
    errors: dict[int, BaseException] = {}
    pending = {}
    for shard, future in calls.items():
        if isinstance(future, _Refused):
            errors[shard] = _Transport(future.exc)
        else:
            pending[shard] = future

    async def answer(future: Any) -> Any:
        return await future

    async def all_answers() -> dict[int, asyncio.Task[Any]]:
        tasks = {shard: asyncio.ensure_future(answer(f)) for shard, f in pending.items()}
        _, late = await asyncio.wait(tasks.values(), timeout=timeout)
        for task in late:  # stops the waiting only; the shard finishes the call on its own
            task.cancel()
        if late:
            await asyncio.wait(late)
        return tasks

    for shard, task in sync(loop, all_answers).items() if pending else ():
        if task.cancelled():
            errors[shard] = _Transport(TimeoutError(f"no answer within {timeout} s"))
        elif (failure := task.exception()) is not None:
            errors[shard] = _Transport(failure)
        else:
            raised, value = task.result()
            if raised is not None:
                errors[shard] = raised
            else:
                results[shard] = value
    return results, errors


class _Transport(Exception):
    """Wraps an exception raised by the Dask transport (not by the index)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


def _check_rows(x: Any, dim: int, codes: bool, name: str) -> tuple[np.ndarray, bool]:
    """Vectors or packed codes checked once, as the shards' index would: ((n, d), was_1d)."""
    if codes:
        return _checks.as_codes(x, dim // 8, name)
    return _checks.as_float_rows(x, dim, name)


def _is_dask_array(x: Any) -> bool:
    return type(x).__module__.startswith("dask.array") and hasattr(x, "chunks")


def _auto_trains(index: Index) -> bool:
    """Indexes whose add() trains them when untrained (int8 ranges, binarizer weights)."""
    from .binary import BinaryIndex
    from .flat import FlatIndex
    from .hnsw import HNSWIndex

    return isinstance(index, (FlatIndex, HNSWIndex, BinaryIndex))


# ---- the sharded index ---------------------------------------------------------------------
class ShardedIndex:
    """One index split into shards resident on Dask workers (see the module docstring).

    make_index : callable returning one empty simdex index (the shard template), e.g.
                 ``lambda: sx.HNSWIndex(384, "cosine", M=16)`` or a functools.partial
    client     : a dask.distributed.Client (default: the current one)
    n_shards   : number of shards (default: the number of workers), placed round-robin on
                 the workers sorted by address
    """

    def __init__(
        self, make_index: Callable[[], Index], *, client: Any = None, n_shards: int | None = None
    ) -> None:
        if not callable(make_index):
            raise TypeError(
                f"make_index must be a callable returning an empty simdex index; "
                f"got {type(make_index).__name__}"
            )
        proto = make_index()
        if not isinstance(proto, Index):
            raise TypeError(
                f"make_index() must return a simdex index (FlatIndex, HNSWIndex, ...); "
                f"got {type(proto).__name__}"
            )
        if len(proto):
            raise ValueError(
                f"make_index() must return an empty index; got one with {len(proto)} rows"
            )
        store = getattr(proto, "_store", None)
        if getattr(store, "path", None) is not None:
            raise ValueError(
                "an index whose re-rank vectors live in a file (rerank=<path>) cannot be "
                "sharded: every shard would write the same file; use rerank='memory'"
            )
        client = _client(client)
        workers = _workers(client)
        n_shards = (
            len(workers) if n_shards is None else _checks.check_positive_int(n_shards, "n_shards")
        )
        if n_shards > MAX_SHARDS:
            raise ValueError(f"n_shards must be <= {MAX_SHARDS}; got {n_shards}")
        self._proto: Index | None = proto
        self._init(client, proto.kind, proto.dim, proto.metric, type(proto).__name__, next_id=0)
        self._start(workers, [{"index": proto} for _ in range(n_shards)])

    def _init(
        self, client: Any, kind: str, dim: int, metric: str, class_name: str, next_id: int
    ) -> None:
        self._client = client
        self.kind, self.dim, self.metric = kind, dim, metric
        self._class_name = class_name
        self._codes = metric == "hamming"
        self._next_id = next_id
        self._id_lock = threading.Lock()  # guards _next_id
        self._rw = _ReadWriteLock()  # writes (add, remove) shared; save exclusive
        self._futures: list[Any] = []
        self._actors: list[Any] = []
        self._workers: list[str] = []

    def _start(self, workers: list[str], kwargs: list[dict[str, Any]]) -> None:
        n = len(kwargs)
        token = secrets.token_hex(8)
        self._workers = [workers[s % len(workers)] for s in range(n)]
        self._futures = [
            self._client.submit(
                _Shard,
                s,
                n,
                **kwargs[s],
                workers=[self._workers[s]],
                allow_other_workers=False,
                actor=True,
                pure=False,
                key=f"simdex-shard-{token}-{s}",
            )
            for s in range(n)
        ]
        self._actors = [f.result() for f in self._futures]
        self._all("check")

    # ---- calls to shards ---------------------------------------------------------------------
    def _failure(self, shard: int, exc: BaseException) -> BaseException:
        if not isinstance(exc, _Transport):
            return exc
        cause = exc.cause
        lost = self._futures[shard].status != "finished"
        why = (
            "its worker was lost"
            if lost or not isinstance(cause, TimeoutError)
            else "it did not answer within the timeout"
        )
        err = ShardUnavailableError(
            f"shard {shard} of {len(self._actors)} on worker {self._workers[shard]} is "
            "unavailable: "
            f"{why} ({type(cause).__name__}: {cause}). No partial result was returned. A lost "
            "shard's rows are gone with its worker: load the index again from its last save().",
            shard,
            self._workers[shard],
        )
        err.__cause__ = cause
        return err

    def _call(self, calls: dict[int, Any], timeout: float | None) -> dict[int, Any]:
        results, errors = _wait(calls, timeout, self._client.loop)
        if errors:
            shard = min(errors, key=lambda s: (not isinstance(errors[s], _Transport), s))
            raise self._failure(shard, errors[shard])
        return results

    def _all(self, method: str, *args: Any, timeout: float | None = None) -> list[Any]:
        results = self._call(
            {s: _invoke(a, method, *args) for s, a in enumerate(self._actors)}, timeout
        )
        return [results[s] for s in range(len(self._actors))]

    def _scatter(
        self,
        method: str,
        queries: np.ndarray,
        arg: Any,
        params: dict[str, Any],
        timeout: float | None,
    ) -> list[Any]:
        """method(queries, arg, params) on every shard, an id filter split by owning shard."""
        filters = _filters_per_shard(params.get("filter"), self.n_shards)
        calls = {
            s: _invoke(
                a,
                method,
                queries,
                arg,
                params if filters is None else {**params, "filter": filters[s]},
            )
            for s, a in enumerate(self._actors)
        }
        results = self._call(calls, timeout)
        return [results[s] for s in range(self.n_shards)]

    # ---- properties ----------------------------------------------------------------------
    @property
    def n_shards(self) -> int:
        return len(self._actors)

    @property
    def workers(self) -> list[str]:
        """The worker address of each shard."""
        return list(self._workers)

    def shard_sizes(self) -> np.ndarray:
        """Rows per shard, (n_shards,) int64."""
        return np.array([n for n, _ in self._all("stats")], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.shard_sizes().sum())

    @property
    def nbytes(self) -> int:
        """Memory held by all shards (on their workers)."""
        return int(sum(b for _, b in self._all("stats")))

    @property
    def ids(self) -> np.ndarray:
        """Every live id, int64 (n,), shard by shard."""
        parts = self._all("ids")
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def __contains__(self, id: object) -> bool:
        if isinstance(id, bool) or not isinstance(id, (int, np.integer)):
            return False
        ids = np.array([int(id)], dtype=np.int64)
        shard = int(shard_of(ids, self.n_shards)[0])
        return bool(
            self._call({shard: _invoke(self._actors[shard], "contains", ids)}, None)[shard][0]
        )

    def __repr__(self) -> str:
        return (
            f"ShardedIndex({self._class_name}, kind={self.kind!r}, dim={self.dim}, "
            f"metric={self.metric!r}, "
            f"n_shards={self.n_shards}, workers={len(set(self._workers))})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            "a ShardedIndex cannot be pickled (its shards live on Dask workers); "
            "use save(directory) and ShardedIndex.load(directory, client=...)"
        )

    # ---- building ------------------------------------------------------------------------
    def train(self, x: Any, **params: Any) -> ShardedIndex:
        """Train the shard template once, on the client, from a sample x (n, d) (NumPy, or a
        dask.array that is computed: pass a sample), then give every shard that trained
        (empty) index. params go to the index's train (seed, queries, threads, ...).
        Must come before the first add."""
        if self._proto is None:
            raise ValueError(
                "a loaded ShardedIndex is already trained (its shards came from files)"
            )
        if _is_dask_array(x):
            x = x.compute()
        with _writing(self._rw):
            sizes = self.shard_sizes()
            if sizes.any():
                raise ValueError(
                    "train() must come before the first add(): the shards hold "
                    f"{int(sizes.sum())} rows"
                )
            self._proto.train(x, **params)
            self._ship_proto()
        return self

    def _ship_proto(self) -> None:
        self._all("reset", self._proto)

    def _ensure_trained(self, first: Callable[[], np.ndarray]) -> None:
        """Before the first add: an untrained template that trains itself on add (int8 ranges,
        binarizer) is trained here on the first batch and shipped, so the shards agree."""
        if self._proto is None or getattr(self._proto, "is_trained", True):
            return
        if not _auto_trains(self._proto):
            raise ValueError(
                f"{self._class_name} is not trained; call train(x) on a sample before add()"
            )
        with _writing(self._rw):
            if not self._proto.is_trained and not self.shard_sizes().any():
                self._proto.train(first())
                self._ship_proto()

    def _reserve(self, n: int, ids: np.ndarray | None) -> np.ndarray:
        with self._id_lock:
            if ids is None:
                ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            if ids.size:
                self._next_id = max(self._next_id, int(ids.max()) + 1)
        return ids

    def add(
        self, x: Any, ids: Any = None, *, timeout: float | None = None, **params: Any
    ) -> np.ndarray:
        """Add vectors; returns their global ids (n,) int64.

        x       : (n, d) floats (or uint8 codes for metric='hamming'), NumPy or dask.array;
                  dask blocks are added by tasks on the workers that hold them, straight to
                  the owning shards
        ids     : (n,) unique non-negative ints not in the index, or None (sequential from
                  one past the largest id ever added)
        timeout : seconds to wait for the shards (None = no limit)
        params  : passed to each shard's add (threads, insertion_order, ...)

        All or nothing: if any shard fails, the rows already added elsewhere are removed and
        the error is raised (ShardUnavailableError when a worker was lost). One exception: a
        shard that exceeded `timeout` but is alive may still apply its part afterwards."""
        if _is_dask_array(x):
            return self._add_dask(x, ids, timeout, params)
        rows, _ = _check_rows(x, self.dim, self._codes, "x")
        new = None if ids is None else _checks.as_ids(ids, rows.shape[0])
        self._ensure_trained(lambda: rows)
        new = self._reserve(rows.shape[0], new)
        with _reading(self._rw):
            error = _add_parts(
                self._actors, rows, new, params, timeout, self._failure, self._client.loop
            )
        if error is not None:
            raise error
        return new

    def _add_dask(
        self, x: Any, ids: Any, timeout: float | None, params: dict[str, Any]
    ) -> np.ndarray:
        width = self.dim // 8 if self._codes else self.dim
        if x.ndim != 2 or (not np.isnan(x.shape[1]) and x.shape[1] != width):
            raise ValueError(f"x must have shape (n, {width}); got a dask array of shape {x.shape}")
        if np.isnan(x.shape[0]):
            x = x.compute_chunk_sizes()
        x = x.rechunk({1: -1})
        n = int(x.shape[0])
        if n == 0:
            raise ValueError("x is empty (0 rows)")
        if ids is not None:
            ids = _checks.as_ids(ids.compute() if _is_dask_array(ids) else ids, n)
        self._ensure_trained(
            lambda: _check_rows(x.blocks[0].compute(), self.dim, self._codes, "x")[0]
        )
        new = self._reserve(n, ids)
        starts = np.concatenate([[0], np.cumsum(x.chunks[0])]).astype(np.int64)
        blocks = self._client.compute(list(x.to_delayed().ravel()))
        with _reading(self._rw):
            tasks = [
                self._client.submit(
                    _add_block,
                    block,
                    new[starts[b] : starts[b + 1]],
                    self._actors,
                    self._workers,
                    params,
                    self._codes,
                    self.dim,
                    timeout,
                    pure=False,
                )
                for b, block in enumerate(blocks)
            ]
            distributed.wait(tasks)  # type: ignore[no-untyped-call]
            failed = [t for t in tasks if t.status != "finished"]
            if failed:  # all or nothing: take back the blocks that went in
                for b, t in enumerate(tasks):
                    if t.status == "finished":
                        self._remove_locked(new[starts[b] : starts[b + 1]], timeout)
                raise failed[0].exception()
        return new

    def remove(self, ids: Any, *, timeout: float | None = None) -> int:
        """Remove ids (unknown ones are ignored), each on its owning shard; returns how many
        were removed."""
        a = _checks.as_id_list(ids)
        with _reading(self._rw):
            return self._remove_locked(a, timeout)

    def _remove_locked(self, ids: np.ndarray, timeout: float | None) -> int:
        parts = _split(ids, self.n_shards)
        results = self._call(
            {
                s: _invoke(self._actors[s], "remove", np.ascontiguousarray(ids[pos]))
                for s, pos in parts.items()
            },
            timeout,
        )
        return int(sum(results.values()))

    def reconstruct(self, ids: Any, *, timeout: float | None = None) -> np.ndarray:
        """Stored vectors of the given ids, asked from their owning shards: (len(ids), d).
        KeyError names ids not in the index (as the shard index raises it)."""
        a = _checks.as_id_list(ids)
        if a.size == 0:
            return (
                np.zeros((0, self.dim // 8), np.uint8)
                if self._codes
                else np.zeros((0, self.dim), np.float32)
            )
        parts = _split(a, self.n_shards)
        results = self._call(
            {
                s: _invoke(self._actors[s], "reconstruct", np.ascontiguousarray(a[pos]))
                for s, pos in parts.items()
            },
            timeout,
        )
        first = next(iter(results.values()))
        out = np.empty((a.size,) + first.shape[1:], dtype=first.dtype)
        for s, pos in parts.items():
            out[pos] = results[s]
        return out

    def map_shards(self, fn: Callable[[Index], Any], *, timeout: float | None = None) -> list[Any]:
        """fn(index) run on every shard's index on its worker (e.g. ``lambda i: i.compact()``);
        returns the results in shard order. fn must not keep the index."""
        with _reading(self._rw):
            return self._all("apply", fn, timeout=timeout)

    # ---- search --------------------------------------------------------------------------
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        shard_k: int | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> SearchResult:
        """Global k nearest neighbours: every shard is searched, the results are merged.

        queries : (q, d) or (d,) floats (uint8 codes for metric='hamming')
        k       : int >= 1
        shard_k : results asked from each shard (>= k; default k). Exact shards need no
                  more; approximate shards may gain recall from over-fetching.
        timeout : seconds to wait for the slowest shard (None = no limit); a shard that does
                  not answer raises ShardUnavailableError (never a partial result)
        params  : passed to every shard's search: filter (global ids, a mask by id, or one
                  filter per query; an id array reaches each shard as the ids it owns),
                  max_distance, ef, nprobe, rerank_k, threads, ...
        returns : SearchResult(distances (q, k) float32 ascending, ids (q, k) int64 global,
                  -1 / +inf padded); equal distances are ordered by id
        """
        k = _checks.check_k(k)
        shard_k = k if shard_k is None else _checks.check_positive_int(shard_k, "shard_k")
        if shard_k < k:
            raise ValueError(f"shard_k must be >= k={k}; got {shard_k}")
        q, was_1d = _check_rows(queries, self.dim, self._codes, "queries")
        _checks.as_max_distance(params.get("max_distance"), q.shape[0])  # fail before sending
        parts = self._scatter("search", q, shard_k, params, timeout)
        d, i = merge_topk([p[0] for p in parts], [p[1] for p in parts], k)
        return SearchResult(d[0], i[0]) if was_1d else SearchResult(d, i)

    def range_search(
        self, queries: Any, radius: Any, *, timeout: float | None = None, **params: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored vector within radius of each query, from every shard, as FAISS's
        range_search: (lims (q + 1,) int64, distances (total,) float32 ascending per query,
        ids (total,) int64). radius: a float or (q,) floats; params as in search."""
        q, _ = _check_rows(queries, self.dim, self._codes, "queries")
        if _checks.as_max_distance(radius, q.shape[0]) is None:
            raise ValueError("radius must be a float or one float per query; got None")
        parts = self._scatter("range_search", q, radius, params, timeout)
        return merge_range(parts, q.shape[0])

    # ---- persistence -----------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str], *, timeout: float | None = None) -> None:
        """Write one file per shard (written by its worker) and manifest.json (by the client)
        into directory, which the workers must see under the same path. Adds and removes of
        this object wait meanwhile, so the files form one snapshot. The manifest is replaced
        last (atomically): a failed save leaves the previous one loadable."""
        directory = os.path.abspath(os.fspath(directory))
        os.makedirs(directory, exist_ok=True)
        if not os.path.isdir(directory):
            raise ValueError(f"{directory!r} is not a directory")
        token = secrets.token_hex(8)
        with _writing(self._rw):
            done = self._call(
                {
                    s: _invoke(a, "save", os.path.join(directory, _shard_file(s, token)))
                    for s, a in enumerate(self._actors)
                },
                timeout,
            )
            written = [done[s] for s in range(self.n_shards)]
            with self._id_lock:
                next_id = self._next_id
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "placement": PLACEMENT,
            "kind": self.kind,
            "class": self._class_name,
            "dim": self.dim,
            "metric": self.metric,
            "next_id": next_id,
            "token": token,
            "shards": written,
        }
        tmp = os.path.join(directory, MANIFEST + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(manifest, fh, indent=1)
        os.replace(tmp, os.path.join(directory, MANIFEST))
        for name in os.listdir(directory):  # shard files of earlier saves
            m = _SHARD_FILE.fullmatch(name)
            if m and m.group(2) != token:
                os.remove(os.path.join(directory, name))

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, client: Any = None, mmap: bool = False
    ) -> ShardedIndex:
        """Load a saved ShardedIndex: each shard file is read by the worker that will hold it
        (memory-mapped there with mmap=True), placed round-robin on the current workers.
        The manifest and every shard file are validated (ValueError names the problem)."""
        directory = os.path.abspath(os.fspath(directory))
        manifest = _read_manifest(os.path.join(directory, MANIFEST))
        if not isinstance(mmap, bool):
            raise TypeError(f"mmap must be True or False; got {type(mmap).__name__}")
        client = _client(client)
        self = cls.__new__(cls)
        self._proto = None
        self._init(
            client,
            manifest["kind"],
            manifest["dim"],
            manifest["metric"],
            manifest["class"],
            manifest["next_id"],
        )
        common = {k: manifest[k] for k in ("kind", "dim", "metric", "next_id")}
        kwargs = [
            {
                "path": os.path.join(directory, _shard_file(s, manifest["token"])),
                "mmap": mmap,
                "expect": {**common, **shard},
            }
            for s, shard in enumerate(manifest["shards"])
        ]
        self._start(_workers(client), kwargs)
        return self


def _shard_file(shard: int, token: str) -> str:
    return f"shard-{shard:05d}-{token}.sdx"


def _read_manifest(path: str) -> dict[str, Any]:
    """The manifest, validated field by field (it is untrusted input)."""

    def bad(why: str) -> ValueError:
        return ValueError(f"{path!r} is not a valid ShardedIndex manifest: {why}")

    if not os.path.isfile(path):
        raise ValueError(
            f"no ShardedIndex manifest at {path!r} (was the directory written by save()?)"
        )
    size = os.path.getsize(path)
    if size > _MAX_MANIFEST_BYTES:
        raise bad(f"{size} bytes, more than {_MAX_MANIFEST_BYTES}")
    with open(path, "rb") as fh:
        try:
            m = json.loads(fh.read().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad(f"not JSON ({exc})") from None
    if not isinstance(m, dict):
        raise bad(f"expected a JSON object, got {type(m).__name__}")
    expected = {
        "format",
        "version",
        "placement",
        "kind",
        "class",
        "dim",
        "metric",
        "next_id",
        "token",
        "shards",
    }
    if set(m) != expected:
        raise bad(f"fields {sorted(m)}, expected {sorted(expected)}")
    if m["format"] != FORMAT:
        raise bad(f"format {m['format']!r}, expected {FORMAT!r}")
    if type(m["version"]) is not int or not 1 <= m["version"] <= FORMAT_VERSION:
        raise bad(f"version {m['version']!r}; this simdex reads 1..{FORMAT_VERSION}")
    if m["placement"] != PLACEMENT:
        raise bad(f"placement {m['placement']!r}, expected {PLACEMENT!r}")
    for name in ("kind", "class", "metric", "token"):
        if not isinstance(m[name], str):
            raise bad(f"{name} must be a string; got {m[name]!r}")
    if m["kind"] not in _format._KINDS:
        raise bad(f"unknown index kind {m['kind']!r}; known: {sorted(_format._KINDS)}")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,63}", m["class"]):
        raise bad(f"class {m['class']!r} is not a class name")
    if m["metric"] not in _checks.METRICS:
        raise bad(f"metric {m['metric']!r} is not one of {_checks.METRICS}")
    if not _TOKEN.fullmatch(m["token"]):
        raise bad(f"token {m['token']!r} is not 16 hex digits")
    for name, top in (("dim", 1 << 20), ("next_id", np.iinfo(np.int64).max)):
        if type(m[name]) is not int or not (1 if name == "dim" else 0) <= m[name] <= top:
            raise bad(f"{name} must be an int in range; got {m[name]!r}")
    shards = m["shards"]
    if not isinstance(shards, list) or not 1 <= len(shards) <= MAX_SHARDS:
        raise bad(f"shards must be a list of 1..{MAX_SHARDS} entries")
    for s, entry in enumerate(shards):
        if (
            not isinstance(entry, dict)
            or set(entry) != {"rows", "bytes"}
            or any(type(entry[f]) is not int or entry[f] < 0 for f in ("rows", "bytes"))
        ):
            raise bad(f"shard {s}: expected {{'rows': int >= 0, 'bytes': int >= 0}}; got {entry!r}")
    return m


@contextlib.contextmanager
def _reading(lock: _ReadWriteLock) -> Iterator[None]:
    lock.acquire_read()
    try:
        yield
    finally:
        lock.release_read()


@contextlib.contextmanager
def _writing(lock: _ReadWriteLock) -> Iterator[None]:
    lock.acquire_write()
    try:
        yield
    finally:
        lock.release_write()


def _client(client: Any) -> Any:
    if client is None:
        try:
            return distributed.default_client()  # type: ignore[no-untyped-call]
        except ValueError:
            raise ValueError(
                "no Dask client: pass client=Client(...) or create one first"
            ) from None
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a dask.distributed.Client; got {type(client).__name__}")
    return client


def _workers(client: Any) -> list[str]:
    workers = sorted(client.nthreads())  # every worker's address
    if not workers:
        raise ValueError(
            "the Dask cluster has no workers; start some before building a ShardedIndex"
        )
    return workers
