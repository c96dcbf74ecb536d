"""progress=True on every long operation: bars reach their total, results do not change."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import simdex as sx
from simdex import _progress


class FakeBar:
    made: list["FakeBar"] = []

    def __init__(self, total: int, unit: str, desc: str) -> None:
        self.total, self.desc, self.n, self.closed = total, desc, 0, False
        FakeBar.made.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    module = types.ModuleType("tqdm.auto")
    module.tqdm = FakeBar
    monkeypatch.setitem(sys.modules, "tqdm", types.ModuleType("tqdm"))
    monkeypatch.setitem(sys.modules, "tqdm.auto", module)
    FakeBar.made = []
    yield FakeBar.made


def data(n=2500, d=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def check_bars(made, *descs):
    assert [b.desc for b in made] == list(descs)
    for b in made:
        assert b.closed and b.n == b.total, (b.desc, b.n, b.total)


def test_chunked_adds_match_unchunked(bars, monkeypatch):
    monkeypatch.setattr(_progress, "CHUNK", 700)  # several chunks on small data
    x = data()
    q = data(20, seed=1)
    for make in (lambda: sx.PQIndex(16, 4, rerank="memory").train(x),
                 lambda: sx.PQIndex(16, 4, nbits=4).train(x),
                 lambda: sx.IVFPQIndex(16, 8, 4).train(x, n_iter=3),
                 lambda: sx.FlatIndex(16, storage="float16"),
                 lambda: sx.BinaryIndex(16, bits=2)):
        plain, shown = make(), make()
        FakeBar.made.clear()
        plain.add(x)
        shown.add(x, progress=True)
        assert len(bars) == 1 and bars[0].n == bars[0].total == 2500 and bars[0].closed
        a, b = plain.search(q, 5), shown.search(q, 5)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.distances, b.distances)


def test_graph_adds(bars):
    x = data(3000)
    index = sx.HNSWIndex(16, M=8)
    index.add(x, threads=1, progress=True)
    plain = sx.HNSWIndex(16, M=8)
    plain.add(x, threads=1)
    np.testing.assert_array_equal(index.search(x[:10], 3).ids, plain.search(x[:10], 3).ids)
    lean = sx.LeanVecIndex(16, 8, kind="id").train(x, progress=True)
    lean.add(x, progress=True)
    binary = sx.BinaryIndex(16, graph=True)
    binary.train(x, progress=True)
    binary.add(x, progress=True)
    check_bars(bars, "HNSW add", "LeanVec train", "LeanVec add", "Binary train", "Binary graph add")
    assert bars[0].total == 3000 and len(lean) == 3000 and len(binary) == 3000


def test_training(bars):
    x = data(3000)
    centroids, _ = sx.kmeans(x, 8, n_iter=4, progress=True)
    pq = sx.ProductQuantizer(16, 4, nbits=4).fit(x, opq=True, opq_iter=2, progress=True)
    sx.PQIndex(16, 4, nbits=4).train(x, progress=True)
    sx.IVFPQIndex(16, 8, 4).train(x, n_iter=3, progress=True)
    check_bars(bars, "k-means", "PQ fit (OPQ)", "PQ fit", "k-means", "PQ fit")
    assert bars[0].total == 5 and bars[1].total == 3 * 4
    np.testing.assert_array_equal(centroids, sx.kmeans(x, 8, n_iter=4)[0])
    assert pq.rotation is not None


def test_without_tqdm_warns_and_works(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails
    x = data(500)
    with pytest.warns(RuntimeWarning, match="tqdm"):
        ids = sx.HNSWIndex(16).add(x, progress=True)
    assert ids.shape == (500,)
    with pytest.warns(RuntimeWarning, match="tqdm"):
        sx.kmeans(x, 4, progress=True)


def test_progress_must_be_bool():
    x = data(300)
    for call in (lambda: sx.FlatIndex(16).add(x, progress="yes"), lambda: sx.kmeans(x, 4, progress=1),
                 lambda: sx.HNSWIndex(16).add(x, progress=None)):
        with pytest.raises(TypeError, match="progress"):
            call()
