"""The command line: info, demo and bench run and report sensible numbers."""

from __future__ import annotations

import re
import subprocess
import sys


def run(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "simdex", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_info():
    out = run("info")
    assert "simd" in out and "features" in out


def test_demo_reports_recall_against_numpy():
    out = run("demo", "--n", "3000", "--dim", "32", "--queries", "50")
    recalls = {line[:34].strip(): float(line[34:44]) for line in out.splitlines()
               if re.match(r"^\S.{33}\s+\d\.\d{3}", line)}
    assert recalls["FlatIndex storage=float32"] == 1.0
    assert recalls["HNSWIndex M=16 ef=64"] >= 0.95
    assert recalls["PQIndex m=32x8 + rerank 100"] >= 0.9


def test_bench_writes_plot(tmp_path):
    plot = tmp_path / "curve.png"
    out = run("bench", "--n", "2000", "--dim", "16", "--queries", "50", "--ef", "16,64",
              "--ef-construction", "64", "--plot", str(plot))
    assert "| hnsw | ef=64 |" in out and "| flat | - | 1.0000 |" in out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert plot.exists() and plot.stat().st_size > 1000
