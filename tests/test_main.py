"""The command line: --version, info, demo, bench (every index kind, peers, --n with --data,
plots and their failures) and the benchmark scripts it ships (simdex.bench)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest
import simdex as sx
from simdex import bench as bench_scripts
from simdex.__main__ import PEERS, generated_dataset, main
from simdex.integrations._kinds import KINDS


def run(*args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "simdex", *args], capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == status, r.stderr
    return r


def table(out: str) -> dict[tuple[str, str], float]:
    """bench's markdown table -> {(index, param): recall}."""
    rows = re.findall(r"^\| (\S+) \| (\S+(?:, \S+)*) \| (\d\.\d{4}) \|", out, re.MULTILINE)
    return {(kind, param): float(recall) for kind, param, recall in rows}


def test_version():
    assert run("--version").stdout.strip() == f"simdex {sx.__version__}"
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0


def test_info():
    out = run("info").stdout
    assert "simd" in out and "features" in out


def test_demo_reports_recall_against_numpy():
    out = run("demo", "--n", "2000", "--dim", "16", "--queries", "50").stdout
    recalls = {line[:34].strip(): float(line[34:44]) for line in out.splitlines()
               if re.match(r"^\S.{33}\s+\d\.\d{3}", line)}
    assert recalls["FlatIndex storage=float32"] == 1.0
    assert recalls["HNSWIndex M=16 ef=64"] >= 0.95
    assert recalls["PQIndex m=16x8 + rerank 100"] >= 0.9
    assert recalls["BinaryIndex 1 bit + rerank 100"] >= 0.6  # 16 bits only: re-rank of 100 still helps


SMALL = ["--n", "1500", "--dim", "16", "--queries", "40", "--ef", "16,64", "--ef-construction", "64",
         "--repeats", "1"]


def test_bench_runs_every_kind_and_the_installed_peers(capsys):
    status = main(["bench", *SMALL, "--index", ",".join(KINDS), "--peers", "--param", "pq.nbits=4",
                   "--param", "ivfpq.nlist=16", "--sweep", "binary.rerank_k=400"])
    out, err = capsys.readouterr()
    assert status == 0, err
    rows = table(out)
    assert rows[("flat", "exact")] == 1.0
    assert rows[("hnsw", "ef=64")] >= 0.95
    assert max(r for (kind, _), r in rows.items() if kind == "pq") >= 0.95
    assert max(r for (kind, _), r in rows.items() if kind == "ivfpq") >= 0.95
    assert [p for kind, p in rows if kind == "binary"] == ["rerank_k=400"] and rows[("binary", "rerank_k=400")] >= 0.9
    assert rows[("leanvec", "ef=64")] >= 0.8
    for peer in PEERS:
        if importlib.util.find_spec(peer) is None:
            assert f"peer {peer} is not installed" in err
        else:
            label = {"faiss": "faiss-hnsw"}.get(peer, peer)
            assert rows[(label, "ef=64")] >= 0.95
    if importlib.util.find_spec("faiss") is not None:
        assert rows[("faiss-flat", "exact")] == 1.0


@pytest.fixture
def hdf5_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    data, queries = generated_dataset(1200, 30, 24, seed=5)
    path = tmp_path / "tiny-angular.hdf5"
    with h5py.File(path, "w") as f:
        f.attrs["distance"] = "angular"
        f["train"], f["test"] = data, queries
        f["neighbors"] = sx.knn(queries, data, 20, "cosine").ids  # neighbours among all 1200 rows
    return path


def test_bench_honours_n_with_data(hdf5_file, capsys):
    assert main(["bench", "--data", str(hdf5_file), "--n", "300", "--index", "flat", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "tiny-angular.hdf5, n=300, d=24, metric=cosine" in out
    assert table(out)[("flat", "exact")] == 1.0  # truth recomputed for the first 300 rows
    assert main(["bench", "--data", str(hdf5_file), "--index", "flat", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "n=1200" in out and table(out)[("flat", "exact")] == 1.0


def test_plot_has_a_title_and_labelled_points(hdf5_file, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    figures = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **kw: (figures.append(fig), real_savefig(fig, *a, **kw)))
    plot = tmp_path / "curve.png"
    assert main(["bench", "--data", str(hdf5_file), "--index", "flat,hnsw", "--ef", "16,64",
                 "--repeats", "1", "--plot", str(plot)]) == 0
    assert plot.stat().st_size > 1000 and f"plot written to {plot}" in capsys.readouterr().out
    ax = figures[0].axes[0]
    title = ax.get_title()
    assert all(part in title for part in ("tiny-angular.hdf5", "n=1200", "k=10", f"simd={sx.simd_level()}"))
    assert {t.get_text() for t in ax.texts} >= {"exact", "ef=16", "ef=64"}
    assert ax.get_xlabel() == "recall@10"


def test_plot_that_cannot_be_made_fails(tmp_path, monkeypatch, capsys):
    argv = ["bench", "--index", "flat", "--n", "100", "--queries", "5"]
    assert main([*argv, "--plot", str(tmp_path / "missing" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert main([*argv, "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--index", "flat,annoy"], "unknown index kind 'annoy'"),
    (["--param", "pq:m=4"], "KIND.NAME=VALUE"),
    (["--param", "vamana.R=4"], "unknown index kind 'vamana'"),
    (["--sweep", "hnsw.nprobe=4"], "sweeps 'ef'"),
    (["--n", "0"], "--n must be >= 1"),
    (["--data", "/nonexistent.hdf5"], "cannot read --data"),
])
def test_bad_bench_requests_exit_2(argv, message, capsys):
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_failing_kind_is_reported_and_the_rest_runs(capsys):
    status = main(["bench", *SMALL, "--index", "pq,flat", "--param", "pq.m=5"])  # 16 % 5 != 0
    out, err = capsys.readouterr()
    assert status == 1 and "pq: failed: dim must be a multiple of m" in err
    assert table(out)[("flat", "exact")] == 1.0


def test_bench_scripts_are_listed_and_run(capsys):
    assert main(["scripts"]) == 0
    listing = capsys.readouterr().out
    assert {"hnsw", "pq", "exact", "binary", "leanvec", "live", "kernels"} <= set(bench_scripts.available())
    assert "hnsw " in listing and "HNSW side by side" in listing
    assert bench_scripts.main(["nope"]) == 2 and "no script 'nope'" in capsys.readouterr().err
    assert main(["scripts", "exact", "--help"]) == 0
    assert "usage: bench_exact.py" in capsys.readouterr().out


def test_installed_layout_runs_scripts_from_simdex_bench(tmp_path, monkeypatch):
    """A wheel ships bench/ as simdex/_bench: the scripts are found there, run as __main__ with
    their own argv, and a missing peer library is named."""
    package = tmp_path / "simdex"
    (package / "_bench").mkdir(parents=True)
    (package / "_bench" / "bench_echo.py").write_text(
        '"""Echo: writes its arguments."""\nimport sys, pathlib\n'
        'if __name__ == "__main__":\n    pathlib.Path(sys.argv[1]).write_text(" ".join(sys.argv[2:]))\n')
    (package / "_bench" / "bench_peer.py").write_text('"""Needs a peer."""\nimport not_a_real_peer_lib\n')
    monkeypatch.setattr(bench_scripts, "__file__", str(package / "bench.py"))
    assert bench_scripts.scripts_dir() == package / "_bench"
    assert bench_scripts.summary(bench_scripts.available()["echo"]) == "Echo: writes its arguments."
    assert bench_scripts.run("echo", [str(tmp_path / "out.txt"), "--n", "5"]) == 0
    assert (tmp_path / "out.txt").read_text() == "--n 5"
    assert bench_scripts.run("peer", []) == 1


def test_generated_data_is_unit_norm_and_seeded():
    a, qa = generated_dataset(500, 10, 16, seed=1)
    b, _ = generated_dataset(500, 10, 16, seed=1)
    assert np.array_equal(a, b) and a.shape == (500, 16) and qa.shape == (10, 16)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)


def test_bench_scripts_are_packaged():
    """The sdist keeps bench/ (no plots) and the wheel installs its scripts as simdex/_bench
    (checked by building a wheel into a fresh venv: see bench/RESULTS.md section 7)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    settings = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["scikit-build"]
    assert not any(p.rstrip("/") == "bench" for p in settings["sdist"]["exclude"])
    cmake = (root / "CMakeLists.txt").read_text()
    assert re.search(r'install\(DIRECTORY bench/ DESTINATION simdex/_bench FILES_MATCHING PATTERN "\*\.py"', cmake)
