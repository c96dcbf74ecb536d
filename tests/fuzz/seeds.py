"""Seed files for the load fuzzers: small real index files of every kind, written by the
simdex under test, plus the committed back-compatibility files of tests/data.

    python tests/fuzz/seeds.py OUT_DIR       # writes OUT_DIR/<target>/<variant>.sdx
"""

from __future__ import annotations

import pathlib
import shutil
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"

# fuzz target -> the committed fixtures (tests/data) of that kind
FIXTURES = {
    "flat": ["flat-float32-v1.sdx", "flat-int8-v1.sdx"],
    "hnsw": ["hnsw-float32-v1.sdx", "hnsw-int8-v1.sdx"],
    "pq8": ["pq8-rerank-v1.sdx"],
    "pq4": ["pq4-v1.sdx"],
    "ivfpq": ["ivfpq8-v1.sdx", "ivfpq4-v1.sdx"],
    "leanvec": ["leanvec-v1.sdx"],
    "binary": ["binary-v1.sdx"],
    "binary-graph": ["binary-graph-v1.sdx"],
    "rabitq": ["rabitq-v1.sdx", "rabitq-ip-v1.sdx", "rabitq-ip-v2.sdx"],
    "ivf-rabitq": [
        "approximate/ivf-rabitq-v1.sdx", "approximate/ivf-rabitq-ip-v2.sdx", "approximate/ivf-rabitq-ip-v1.sdx"
    ],
    "hnsw-rabitq": ["hnsw-rabitq-v1.sdx"],
}
TARGETS = list(FIXTURES)


def variants(sx: Any) -> dict[str, dict[str, Callable[[], Any]]]:
    """target -> {variant name: constructor}; small so that one load + exercise is fast."""
    g = {"M": 4, "ef_construction": 16}
    return {
        "flat": {
            "l2-float32": lambda: sx.FlatIndex(8, "l2"),
            "ip-float16": lambda: sx.FlatIndex(8, "ip", storage="float16"),
            "l2-bfloat16": lambda: sx.FlatIndex(8, "l2", storage="bfloat16"),
            "cosine-int8": lambda: sx.FlatIndex(8, "cosine", storage="int8"),
            "hamming": lambda: sx.FlatIndex(16, "hamming"),
        },
        "hnsw": {
            "l2-float32": lambda: sx.HNSWIndex(8, "l2", **g),
            "cosine-int8": lambda: sx.HNSWIndex(8, "cosine", storage="int8", **g),
            "hamming": lambda: sx.HNSWIndex(16, "hamming", **g),
        },
        "pq8": {
            "l2-rerank": lambda: sx.PQIndex(8, 2, metric="l2", rerank="memory"),
            "ip-opq": lambda: sx.PQIndex(8, 2, metric="ip", opq=True),
        },
        "pq4": {
            "ip": lambda: sx.PQIndex(8, 2, nbits=4, metric="ip"),
            "l2-rerank": lambda: sx.PQIndex(8, 4, nbits=4, metric="l2", rerank="memory"),
        },
        "ivfpq": {
            "l2-8bit": lambda: sx.IVFPQIndex(8, 4, 2, metric="l2"),
            "cosine-4bit-rerank": lambda: sx.IVFPQIndex(8, 4, 2, nbits=4, metric="cosine", rerank="memory"),
        },
        "leanvec": {
            "ip-id": lambda: sx.LeanVecIndex(8, 4, kind="id", metric="ip", **g),
            "cosine-ood-int8": lambda: sx.LeanVecIndex(8, 4, kind="ood", metric="cosine", secondary="int8", **g),
        },
        "binary": {
            "2bit-rerank": lambda: sx.BinaryIndex(16, bits=2, rerank="memory"),
            "1bit": lambda: sx.BinaryIndex(16),
        },
        "binary-graph": {
            "1bit": lambda: sx.BinaryIndex(16, graph=True, **g),
        },
        "rabitq": {
            "l2-1bit": lambda: sx.RaBitQIndex(8, bits=1, metric="l2"),
            "ip-4bit-rerank": lambda: sx.RaBitQIndex(8, bits=4, metric="ip", rerank="memory"),
        },
        "ivf-rabitq": {
            "l2-1bit": lambda: sx.IVFRaBitQIndex(8, 4, bits=1, metric="l2"),
            "cosine-2bit-rerank": lambda: sx.IVFRaBitQIndex(8, 4, bits=2, metric="cosine", rerank="memory"),
            "ip-2bit": lambda: sx.IVFRaBitQIndex(8, 4, bits=2, metric="ip"),
        },
        "hnsw-rabitq": {
            "l2-1bit": lambda: sx.HNSWIndex(8, "l2", storage="rabitq", bits=1, **g),
            "cosine-4bit": lambda: sx.HNSWIndex(8, "cosine", storage="rabitq", bits=4, **g),
        },
    }


def data(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((4, d)).astype(np.float32)
    return (centers[rng.integers(0, 4, n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


def write_seeds(sx: Any, out: pathlib.Path, targets: list[str] | None = None) -> dict[str, list[pathlib.Path]]:
    written: dict[str, list[pathlib.Path]] = {}
    for target, makers in variants(sx).items():
        if targets and target not in targets:
            continue
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, make in makers.items():
            index = make()
            d = index.dim
            x = data(300, d, 1)
            if index.metric == "hamming":
                x = np.packbits(x > 0, axis=1)
            ids = np.arange(40, dtype=np.int64) * 3 + 5
            if isinstance(index, sx.LeanVecIndex) and index.projection.kind == "ood":
                index.train(x, data(100, d, 2))
            else:
                index.train(x)
            index.add(x[:40], ids, threads=1)
            index.remove(ids[::7])  # tombstones / free slots are part of what a file holds
            path = folder / f"{name}.sdx"
            index.save(path)
            paths.append(path)
        empty = makers[next(iter(makers))]()
        empty.save(folder / "empty.sdx")  # untrained / empty: the other branch of every loader
        paths.append(folder / "empty.sdx")
        for fixture in FIXTURES[target]:
            copy = folder / pathlib.Path(fixture).name
            shutil.copy(DATA / fixture, copy)
            paths.append(copy)
        written[target] = paths
    return written


if __name__ == "__main__":
    import simdex

    for target, paths in write_seeds(simdex, pathlib.Path(sys.argv[1]), sys.argv[2:]).items():
        print(target, len(paths), "seeds")
