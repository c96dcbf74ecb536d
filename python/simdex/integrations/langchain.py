"""LangChain vector store on a simdex index (``pip install 'simdex[langchain]'``).

```python
from simdex.integrations.langchain import SimdexVectorStore

store = SimdexVectorStore(embeddings)                      # any langchain Embeddings
ids = store.add_texts(["a cat", "a dog"], [{"kind": "pet"}, {"kind": "pet"}])
store.similarity_search_with_score("kitten", k=1, filter={"kind": "pet"})
store.save_local("store/"); store = SimdexVectorStore.load_local("store/", embeddings)
```

Documents keep LangChain's string ids; the index holds int64 ids the store assigns (never
reused), so adding an existing id replaces that document. A metadata filter (a dict of
required values, or a callable on the metadata) selects the allowed documents, and the index
searches only those (simdex's ``filter=``), so k results come back whenever k documents match.
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

import simdex as sx

from . import _kinds

Filter = Callable[[dict[str, Any]], bool] | dict[str, Any] | None
_FORMAT = "simdex-langchain"
_VERSION = 1
_KINDS = ("flat", "hnsw")  # kinds the store can create itself (no training needed)


class SimdexVectorStore(VectorStore):
    """A LangChain VectorStore whose vectors live in a simdex index.

    embedding : a langchain_core Embeddings object (embed_documents / embed_query)
    metric    : 'cosine' (default), 'ip' or 'l2'; with an index given, None takes its metric
    index     : None or 'flat' (exact search), 'hnsw' (created at the first add, when the
                embedding dimension is known), or an empty simdex index (trained first when
                its kind needs training: PQ, IVF-PQ, binary, LeanVec)

    Scores of similarity_search_with_score are simdex distances (smaller is closer);
    similarity_search_with_relevance_scores maps them to [0, 1]-style relevance (cosine and
    ip: 1 - distance, l2: 1 - euclidean / sqrt(2)). Thread-safe: writes take one lock.
    """

    def __init__(
        self, embedding: Embeddings, *, metric: str | None = None, index: Any = None
    ) -> None:
        if not isinstance(embedding, Embeddings):
            raise TypeError(
                "embedding must be a langchain_core Embeddings object; got "
                f"{type(embedding).__name__}"
            )
        self._embedding = embedding
        self._lock = threading.RLock()
        self._docs: dict[
            int, tuple[str, str, dict[str, Any]]
        ] = {}  # int id -> (id, text, metadata)
        self._int_of: dict[str, int] = {}
        self._next = 0
        if index is None or isinstance(index, str):
            kind = "flat" if index is None else index
            if kind not in _KINDS:
                raise ValueError(
                    f"index must be None, {', '.join(map(repr, _KINDS))} or a simdex index; "
                    f"got {index!r}"
                )
            self._kind: str | None = kind
            self._index: Any = None
            self._metric = "cosine" if metric is None else metric
        else:
            if (
                not hasattr(index, "search")
                or not hasattr(index, "add")
                or not hasattr(index, "dim")
            ):
                raise TypeError(
                    f"index must be None, a kind name or a simdex index; got {type(index).__name__}"
                )
            if len(index):
                raise ValueError(
                    f"index must be empty (the store keeps the document of every row it "
                    f"adds); got an index with {len(index)} rows"
                )
            if metric is not None and metric != index.metric:
                raise ValueError(
                    f"metric={metric!r} does not match the index's metric {index.metric!r}"
                )
            self._kind, self._index, self._metric = None, index, index.metric
        if self._metric not in ("cosine", "ip", "l2"):
            raise ValueError(f"metric must be 'cosine', 'ip' or 'l2'; got {self._metric!r}")

    # ---- properties ------------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def index(self) -> Any:
        """The simdex index (None until the first add when the store creates it)."""
        return self._index

    @property
    def metric(self) -> str:
        return self._metric

    def __len__(self) -> int:
        return len(self._docs)

    # ---- writing ---------------------------------------------------------------------------
    def _vectors(self, rows: Any, count: int) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != count:
            raise ValueError(
                f"the embeddings must give one vector per text: expected ({count}, dim); got "
                f"shape {x.shape}"
            )
        return x

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and add texts; an id already in the store replaces its document.

        metadatas : one dict per text (or None)
        ids       : one string id per text; None entries (or ids=None) get a new uuid4
        returns   : the ids, in order
        """
        if kwargs:
            raise TypeError(f"add_texts got unexpected keyword arguments {sorted(kwargs)}")
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(
                f"metadatas must have one dict per text: {len(texts)} texts, {len(metadatas)} "
                "metadatas"
            )
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"ids must have one id per text: {len(texts)} texts, {len(ids)} ids")
        if not texts:
            return []
        given: list[Any] = (
            list(ids) if ids is not None else [None] * len(texts)
        )  # add_documents passes None ids
        doc_ids = [str(uuid.uuid4()) if i is None else i for i in given]
        if any(not isinstance(i, str) for i in doc_ids):
            raise TypeError("ids must be strings (or None for a generated id)")
        if len(set(doc_ids)) != len(doc_ids):
            raise ValueError(
                "ids must be unique within one call; got duplicates "
                f"{sorted({i for i in doc_ids if doc_ids.count(i) > 1})[:5]}"
            )
        metas = [dict(m) for m in metadatas] if metadatas is not None else [{} for _ in texts]
        x = self._vectors(self._embedding.embed_documents(texts), len(texts))
        with self._lock:
            index = self._ensure_index(x)
            new = np.arange(self._next, self._next + len(texts), dtype=np.int64)
            index.add(x, new)  # first: if it raises, nothing has changed
            self._next += len(texts)
            replaced = [self._int_of[i] for i in doc_ids if i in self._int_of]
            if replaced:
                index.remove(np.asarray(replaced, dtype=np.int64))
                for old in replaced:
                    del self._docs[old]
            for n, doc_id, text, meta in zip(new.tolist(), doc_ids, texts, metas, strict=True):
                self._docs[n] = (doc_id, text, meta)
                self._int_of[doc_id] = n
        return doc_ids

    def _ensure_index(self, x: np.ndarray) -> Any:
        if self._index is None:
            assert self._kind is not None
            self._index = _kinds.make_index(self._kind, x.shape[1], self._metric, len(x))
        elif x.shape[1] != self._index.dim:
            raise ValueError(
                f"the embeddings have dimension {x.shape[1]}, the index {self._index.dim}"
            )
        if not getattr(self._index, "is_trained", True):
            self._index.train(x)
        return self._index

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete the documents with these ids (unknown ids are ignored); ids=None raises."""
        if kwargs:
            raise TypeError(f"delete got unexpected keyword arguments {sorted(kwargs)}")
        if ids is None:
            raise ValueError("delete needs the ids to delete (ids=None would delete everything)")
        with self._lock:
            gone = [self._int_of.pop(i) for i in dict.fromkeys(ids) if i in self._int_of]
            if gone and self._index is not None:
                self._index.remove(np.asarray(gone, dtype=np.int64))
            for n in gone:
                del self._docs[n]
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in the order asked (missing ids are skipped)."""
        with self._lock:
            found = [self._int_of[i] for i in dict.fromkeys(ids) if i in self._int_of]
            return [self._document(n) for n in found]

    def _document(self, n: int) -> Document:
        doc_id, text, meta = self._docs[n]
        return Document(id=doc_id, page_content=text, metadata=dict(meta))

    # ---- searching -------------------------------------------------------------------------
    def _allowed(self, filter: Filter) -> np.ndarray | None:
        """int64 ids of the documents the filter keeps (None = no filter)."""
        if filter is None:
            return None
        if callable(filter):
            keep = filter
        elif isinstance(filter, dict):
            wanted = dict(filter)

            def keep(meta: dict[str, Any]) -> bool:
                for key, value in wanted.items():
                    if key not in meta:
                        return False
                    if isinstance(value, (list, tuple, set)):
                        if meta[key] not in value:
                            return False
                    elif meta[key] != value:
                        return False
                return True
        else:
            raise TypeError(
                f"filter must be a dict of metadata values or a callable on the metadata; "
                f"got {type(filter).__name__}"
            )
        return np.fromiter(
            (n for n, (_, _, meta) in self._docs.items() if keep(meta)), dtype=np.int64
        )

    def similarity_search_with_score_by_vector(
        self, embedding: Sequence[float], k: int = 4, filter: Filter = None, **search_params: Any
    ) -> list[tuple[Document, float]]:
        """(document, distance) of the k nearest documents, closest first.

        filter        : dict {key: value or list of accepted values} or callable(metadata) -> bool
        search_params : passed to the index's search (e.g. ef=128 for HNSW)
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1; got {k!r}")
        with self._lock:
            index = self._index
            if index is None or not self._docs:
                return []
            allowed = self._allowed(filter)
        if allowed is not None and allowed.size == 0:
            return []
        # outside the lock: simdex indexes take concurrent searches and writes themselves
        dist, ids = index.search(
            np.asarray(embedding, dtype=np.float32), k, filter=allowed, **search_params
        )
        with self._lock:  # a document deleted meanwhile is left out
            return [
                (self._document(int(n)), float(d))
                for d, n in zip(dist, ids, strict=True)
                if n >= 0 and int(n) in self._docs
            ]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **search_params: Any
    ) -> list[Document]:
        return [
            doc
            for doc, _ in self.similarity_search_with_score_by_vector(
                embedding, k, filter, **search_params
            )
        ]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter = None, **search_params: Any
    ) -> list[tuple[Document, float]]:
        return self.similarity_search_with_score_by_vector(
            self._embedding.embed_query(query), k, filter, **search_params
        )

    def similarity_search(
        self, query: str, k: int = 4, filter: Filter = None, **search_params: Any
    ) -> list[Document]:
        return [
            doc for doc, _ in self.similarity_search_with_score(query, k, filter, **search_params)
        ]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self._metric == "l2":  # simdex's l2 is squared: relevance of the euclidean distance
            return lambda d: 1.0 - math.sqrt(max(d, 0.0)) / math.sqrt(2)
        return lambda d: 1.0 - d  # cosine: cos; ip: the inner product

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **search_params: Any,
    ) -> list[Document]:
        """k documents chosen by maximal marginal relevance among the fetch_k nearest (needs an
        index that keeps vectors: flat, hnsw or a compressed index with re-ranking)."""
        with self._lock:
            found = self.similarity_search_with_score_by_vector(
                embedding, max(fetch_k, k), filter, **search_params
            )
            if not found:
                return []
            ids = np.asarray(
                [self._int_of[doc.id] for doc, _ in found if doc.id is not None], dtype=np.int64
            )
            try:
                vectors = self._index.reconstruct(ids)
            except ValueError as e:
                raise ValueError(f"max marginal relevance needs the stored vectors: {e}") from None
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32), list(vectors), lambda_mult=lambda_mult, k=k
        )
        return [found[i][0] for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **search_params: Any,
    ) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, filter, **search_params
        )

    # ---- construction and persistence --------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        metric: str | None = None,
        index: Any = None,
        **kwargs: Any,
    ) -> SimdexVectorStore:
        """A store (see the class: metric, index) holding the texts."""
        if kwargs:
            raise TypeError(f"from_texts got unexpected keyword arguments {sorted(kwargs)}")
        store = cls(embedding, metric=metric, index=index)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def save_local(self, folder_path: str | os.PathLike[str], index_name: str = "index") -> None:
        """Write <index_name>.sdx (the simdex index) and <index_name>.json (ids, texts and
        metadata, which must be JSON-serialisable) into folder_path."""
        folder = Path(folder_path)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            state = {
                "format": _FORMAT,
                "version": _VERSION,
                "metric": self._metric,
                "kind": self._kind,
                "next": self._next,
                "docs": [[n, doc_id, text, meta] for n, (doc_id, text, meta) in self._docs.items()],
            }
            try:
                text = json.dumps(state, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise TypeError(
                    f"save_local stores metadata as JSON; a value cannot be written: {e}"
                ) from None
            if self._index is not None:
                self._index.save(folder / f"{index_name}.sdx")
            else:
                (folder / f"{index_name}.sdx").unlink(missing_ok=True)
            tmp = folder / f"{index_name}.json.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, folder / f"{index_name}.json")

    @classmethod
    def load_local(
        cls, folder_path: str | os.PathLike[str], embeddings: Embeddings, index_name: str = "index"
    ) -> SimdexVectorStore:
        """A store written by save_local (the files are checked; nothing is unpickled)."""
        folder = Path(folder_path)
        source = folder / f"{index_name}.json"
        try:
            state = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{source} is not a saved SimdexVectorStore: {e}") from None
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{source} is not a saved SimdexVectorStore (no format {_FORMAT!r})")
        if state.get("version") != _VERSION:
            raise ValueError(
                f"{source}: unsupported version {state.get('version')!r} (this simdex reads "
                f"{_VERSION})"
            )
        docs: Any = state.get("docs")
        next_id: Any = state.get("next")
        kind: Any = state.get("kind")
        ok = (
            isinstance(docs, list)
            and isinstance(next_id, int)
            and kind in (None, *_KINDS)
            and all(
                isinstance(d, list)
                and len(d) == 4
                and isinstance(d[0], int)
                and 0 <= d[0] < next_id
                and isinstance(d[1], str)
                and isinstance(d[2], str)
                and isinstance(d[3], dict)
                for d in docs
            )
        )
        if not ok:
            raise ValueError(
                f"{source} is corrupt: expected docs [[int id < next, str id, text, metadata], ...]"
            )
        store = cls(embeddings, metric=state.get("metric"), index=kind)
        saved = folder / f"{index_name}.sdx"
        index = sx.load(saved) if saved.exists() else None
        rows = sorted(d[0] for d in docs)
        held = [] if index is None else sorted(index.ids.tolist())
        if held != rows or len({d[1] for d in docs}) != len(docs):
            raise ValueError(
                f"{source} does not match {saved}: {len(docs)} documents with unique ids "
                f"expected for {len(held)} index rows"
            )
        if index is not None and index.metric != store._metric:
            raise ValueError(
                f"{saved} has metric {index.metric!r}, {source} says {store._metric!r}"
            )
        store._index, store._next = index, next_id
        for n, doc_id, text, meta in docs:
            store._docs[n] = (doc_id, text, meta)
            store._int_of[doc_id] = n
        return store


__all__ = ["SimdexVectorStore"]
