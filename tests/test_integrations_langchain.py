"""simdex.integrations.langchain: langchain-tests' standard VectorStore suite on an exact and an
HNSW store, plus filters, scores, MMR, persistence and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("langchain_core", reason="needs the langchain extra: pip install 'simdex[langchain]'")
pytest.importorskip("langchain_tests", reason="needs langchain-tests (in simdex's test extra)")

import simdex as sx
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_tests.integration_tests import VectorStoreIntegrationTests
from simdex.integrations.langchain import SimdexVectorStore


class TestSimdexFlatStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> SimdexVectorStore:
        return SimdexVectorStore(self.get_embeddings())


class TestSimdexHNSWStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> SimdexVectorStore:
        return SimdexVectorStore(self.get_embeddings(), index=sx.HNSWIndex(6, "cosine", M=8))


class AxisEmbeddings(Embeddings):
    """Texts 'a0'..'a7' -> unit vector on axis i; other texts -> the normalised sum of the
    axes named in them ('a1 a2'), so distances are known exactly."""

    def _one(self, text: str) -> list[float]:
        v = np.zeros(8)
        for word in text.split():
            v[int(word[1:])] += 1.0
        return (v / np.linalg.norm(v)).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._one(text)


@pytest.fixture
def store() -> SimdexVectorStore:
    s = SimdexVectorStore(AxisEmbeddings())
    s.add_texts([f"a{i}" for i in range(8)], [{"axis": i, "even": i % 2 == 0} for i in range(8)],
                ids=[f"d{i}" for i in range(8)])
    return s


def test_scores_are_distances_and_relevance(store):
    (doc, d), (_, d2) = store.similarity_search_with_score("a3", k=2)
    assert doc.id == "d3" and doc.page_content == "a3" and doc.metadata == {"axis": 3, "even": False}
    assert d == pytest.approx(0.0, abs=1e-6) and d2 == pytest.approx(1.0, abs=1e-6)  # orthogonal
    (_, r), = store.similarity_search_with_relevance_scores("a3", k=1)
    assert r == pytest.approx(1.0, abs=1e-6)
    half = store.similarity_search_with_score("a3 a5", k=2)
    assert {doc.id for doc, _ in half} == {"d3", "d5"}
    assert all(s == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-6) for _, s in half)


def test_metadata_filters_reach_the_index(store):
    even = store.similarity_search("a3", k=3, filter={"even": True})
    assert len(even) == 3 and all(doc.metadata["even"] for doc in even)
    listed = store.similarity_search("a3", k=8, filter={"axis": [1, 3, 6]})
    assert len(listed) == 3 and listed[0].id == "d3"
    assert [d.id for d in store.similarity_search("a0", k=2, filter=lambda m: m["axis"] > 5)] in (
        ["d6", "d7"], ["d7", "d6"])
    assert store.similarity_search("a0", k=2, filter={"missing_key": 1}) == []
    with pytest.raises(TypeError, match="filter must be"):
        store.similarity_search("a0", filter=["even"])


def test_upsert_replaces_and_delete_forgets(store):
    store.add_texts(["a5"], [{"axis": 5, "v": 2}], ids=["d3"])
    assert len(store) == 8
    top = store.similarity_search("a5", k=2)
    assert {doc.id for doc in top} == {"d3", "d5"}
    assert store.get_by_ids(["d3"])[0].metadata == {"axis": 5, "v": 2}
    assert len(store.index) == 8  # the old row of d3 left the index
    store.delete(["d3", "d5", "nope"])
    assert store.get_by_ids(["d3", "d5"]) == [] and len(store.index) == 6
    assert "d3" not in {doc.id for doc in store.similarity_search("a5", k=8)}
    with pytest.raises(ValueError, match="needs the ids"):
        store.delete()


def test_max_marginal_relevance_prefers_diversity():
    s = SimdexVectorStore(AxisEmbeddings())
    s.add_texts(["a0", "a0 a1", "a0 a1 a1", "a2", "a0 a2"], ids=["x", "near1", "near2", "far", "mix"])
    plain = [d.id for d in s.similarity_search("a0", k=2)]
    mmr = [d.id for d in s.max_marginal_relevance_search("a0", k=2, fetch_k=5, lambda_mult=0.3)]
    assert plain == ["x", "near1"] or plain == ["x", "mix"]
    assert mmr[0] == "x" and mmr[1] not in ("near1", "near2")


def test_save_and_load_round_trip(store, tmp_path):
    store.delete(["d1"])
    store.save_local(tmp_path / "s")
    loaded = SimdexVectorStore.load_local(tmp_path / "s", AxisEmbeddings())
    assert len(loaded) == 7 and loaded.metric == "cosine"
    assert loaded.similarity_search_with_score("a4", k=3) == store.similarity_search_with_score("a4", k=3)
    new = loaded.add_texts(["a1"])  # fresh int ids continue after the saved ones
    assert loaded.get_by_ids(new)[0].page_content == "a1" and len(loaded.index) == 8
    meta = json.loads((tmp_path / "s" / "index.json").read_text())
    meta["docs"][0][0] = 10_000
    (tmp_path / "s" / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="corrupt|does not match"):
        SimdexVectorStore.load_local(tmp_path / "s", AxisEmbeddings())
    (tmp_path / "s" / "index.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a saved SimdexVectorStore"):
        SimdexVectorStore.load_local(tmp_path / "s", AxisEmbeddings())


def test_save_refuses_metadata_json_cannot_hold(tmp_path):
    s = SimdexVectorStore(AxisEmbeddings())
    s.add_texts(["a1"], [{"when": object()}])
    with pytest.raises(TypeError, match="JSON"):
        s.save_local(tmp_path)


def test_constructors_and_bad_input():
    emb = DeterministicFakeEmbedding(size=16)
    s = SimdexVectorStore.from_documents([Document("x", metadata={"k": 1}, id="one"), Document("y")], emb,
                                         index="hnsw", metric="l2")
    assert isinstance(s.index, sx.HNSWIndex) and s.index.metric == "l2" and len(s) == 2
    assert s.get_by_ids(["one"])[0].metadata == {"k": 1}
    assert s.similarity_search_with_relevance_scores("x", k=1)[0][1] == pytest.approx(1.0, abs=1e-3)
    pq = sx.PQIndex(16, 4, nbits=4, rerank="memory")
    t = SimdexVectorStore(emb, index=pq)
    t.add_texts([f"text {i}" for i in range(64)])  # the empty PQ index is trained on the first add
    assert pq.is_trained and len(t.similarity_search("text 3", k=5, rerank_k=20)) == 5
    with pytest.raises(ValueError, match="index must be None"):
        SimdexVectorStore(emb, index="annoy")
    with pytest.raises(ValueError, match="metric"):
        SimdexVectorStore(emb, metric="hamming")
    full = sx.FlatIndex(16)
    full.add(np.ones((1, 16), np.float32))
    with pytest.raises(ValueError, match="must be empty"):
        SimdexVectorStore(emb, index=full)
    with pytest.raises(ValueError, match="does not match"):
        SimdexVectorStore(emb, index=sx.FlatIndex(16, "ip"), metric="cosine")
    with pytest.raises(ValueError, match="dimension 16, the index 8"):
        SimdexVectorStore(emb, index=sx.FlatIndex(8, "cosine")).add_texts(["a"])
    with pytest.raises(ValueError, match="unique"):
        s.add_texts(["a", "b"], ids=["z", "z"])
    with pytest.raises(ValueError, match="one dict per text"):
        s.add_texts(["a", "b"], [{}])
    with pytest.raises(TypeError, match="unexpected keyword"):
        s.similarity_search("x", k=1, nprobe=3)  # an HNSW search has no nprobe: not ignored


def test_threads_add_search_and_delete_at_once():
    from concurrent.futures import ThreadPoolExecutor

    s = SimdexVectorStore(DeterministicFakeEmbedding(size=16), index="hnsw")
    s.add_texts(["seed"], ids=["seed"])

    def work(t: int) -> int:
        ids = s.add_texts([f"t{t} doc {i}" for i in range(40)], ids=[f"{t}-{i}" for i in range(40)])
        hits = 0
        for i in range(20):
            # other threads' deletions may drop some of the 3; a live document is never lost
            docs = s.similarity_search(f"t{t} doc {i}", k=3)
            assert len(docs) <= 3
            hits += bool(docs) and docs[0].id == f"{t}-{i}"
        s.delete(ids[:10])
        return hits

    with ThreadPoolExecutor(4) as pool:
        assert all(h >= 18 for h in pool.map(work, range(4)))  # its own text is its nearest
    assert len(s) == 1 + 4 * 30 and len(s.index) == len(s)
    assert s.get_by_ids(["0-5", "0-15"])[0].id == "0-15"
