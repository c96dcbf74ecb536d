"""simdex.integrations.ann_benchmarks: read config.yml and expand it as ann-benchmarks does
(run groups, arg_groups, query_args products, '@metric'), then drive each wrapper through its
protocol (fit, set_query_arguments, query, batch_query, get_batch_results, memory, str, done)
and check recall against brute force -- without installing ann-benchmarks."""

from __future__ import annotations

import importlib
import itertools
from pathlib import Path

import numpy as np
import pytest
import simdex as sx
from simdex.__main__ import generated_dataset
from simdex.integrations import ann_benchmarks
from simdex.integrations.ann_benchmarks import module as wrappers

yaml = pytest.importorskip("yaml", reason="reading config.yml needs PyYAML (in the test extra)")

CONFIG = Path(ann_benchmarks.__file__).with_name("config.yml")


def combinations(args):
    """ann-benchmarks' expansion: a list -> product of its items (scalars are one-item lists),
    a dict -> product over its list-valued entries."""
    if isinstance(args, list):
        return [list(x) for x in itertools.product(*[a if isinstance(a, list) else [a] for a in args])]
    return [dict(x) for x in itertools.product(*[[(k, e) for e in (v if isinstance(v, list) else [v])]
                                                 for k, v in args.items()])]


def definitions(point_type, metric):
    """(name, constructor, constructor args, query argument groups) for every run group."""
    config = yaml.safe_load(CONFIG.read_text())
    out = []
    for algo in config[point_type].get("any", config[point_type].get(metric, [])):
        for group in algo["run_groups"].values():
            if "arg_groups" in group:
                args = combinations([combinations(g) if isinstance(g, dict) else g for g in group["arg_groups"]])
            else:
                args = combinations(group["args"])
            queries = combinations(group["query_args"]) if "query_args" in group else []
            for arg in args:
                full = [metric if a == "@metric" else a for a in algo["base_args"]]
                full += arg if isinstance(arg, list) else [arg]
                # instantiate_algorithm imports <module>.module; algorithm_status imports <module>
                constructor = getattr(importlib.import_module(f"{algo['module']}.module"), algo["constructor"])
                assert hasattr(importlib.import_module(algo["module"]), algo["constructor"])
                out.append((algo["name"], constructor, full, queries))
    return out


def run(constructor, args, query_groups, train, test, count):
    """The runner's protocol; returns [(str(algo), single-query ids, batch ids)] per query group."""
    algo = constructor(*args)
    before = algo.get_memory_usage()
    algo.fit(train)
    assert algo.get_memory_usage() - before > 0
    results = []
    for query_args in query_groups or [[]]:
        algo.set_query_arguments(*query_args)
        single = [algo.query(v, count) for v in test]
        algo.batch_query(test, count)
        batch = algo.get_batch_results()
        assert all(len(r) <= count for r in single + batch)
        assert isinstance(algo.get_additional(), dict)
        results.append((str(algo), single, batch))
    algo.done()
    return results


def recall(found, truth):
    return float(np.mean([len(set(map(int, f)) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def angular_data():
    data, queries = generated_dataset(2000, 40, 16, seed=3)
    return data, queries, sx.knn(queries, data, 10, "cosine").ids


@pytest.mark.parametrize("metric", ["angular", "euclidean"])
def test_every_definition_runs_and_finds_neighbours(angular_data, metric):
    data, queries, truth = angular_data
    if metric == "euclidean":
        data = data * np.linspace(0.5, 2.0, len(data), dtype=np.float32)[:, None]  # norms differ
        truth = sx.knn(queries, data, 10, "l2").ids
    defs = definitions("float", metric)
    kinds = {name for name, *_ in defs}
    assert kinds >= {"simdex-flat", "simdex-hnsw", "simdex-pq", "simdex-ivfpq", "simdex-leanvec"}
    assert ("simdex-binary" in kinds) == (metric == "angular")  # binary codes score inner products
    for name, constructor, args, query_groups in defs:
        results = run(constructor, args, query_groups, data, queries, 10)
        names = [r[0] for r in results]
        assert len(set(names)) == len(names) and all(n.startswith(name) for n in names)
        best = max(recall(single, truth) for _, single, _ in results)
        assert best >= 0.9, (name, args, best)
        for _, single, batch in results:  # one query at a time or all at once: the same answer
            assert recall(batch, [s.tolist() for s in single]) >= 0.98


def test_hamming_points_are_packed():
    rng = np.random.default_rng(0)
    bits = rng.random((800, 60)) < 0.5  # 60 bits: padded to 64
    queries = bits[:20] ^ (rng.random((20, 60)) < 0.05)
    packed = np.packbits(bits, axis=1)
    truth = sx.knn(np.packbits(queries, axis=1), packed, 5, "hamming").ids
    for name, constructor, args, query_groups in definitions("bit", "hamming"):
        results = run(constructor, args, query_groups, bits, queries, 5)
        assert max(recall(s, truth) for _, s, _ in results) >= 0.95, name


def test_the_wrapper_says_what_it_needs():
    with pytest.raises(ValueError, match="ann-benchmarks names"):
        wrappers.SimdexHNSW("cosine")
    with pytest.raises(ValueError, match="support simdex metrics"):
        wrappers.SimdexBinary("euclidean", {})
    algo = wrappers.SimdexHNSW("angular", {"M": 8})
    with pytest.raises(RuntimeError, match="fit"):
        algo.query(np.ones(4, np.float32), 3)
    with pytest.raises(TypeError, match="takes 1 argument"):
        algo.set_query_arguments(10, 20)
    algo.set_query_arguments(32)
    assert str(algo) == "simdex-hnsw(M=8, ef=32)" == algo.name
