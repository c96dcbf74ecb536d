"""The build stays portable: no -march=native, and the aarch64 sources compile."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CPP = ROOT / "cpp"


def test_no_march_native():
    for path in [ROOT / "CMakeLists.txt", ROOT / "pyproject.toml", *CPP.rglob("*.[ch]pp")]:
        assert "march=native" not in path.read_text(), path


def test_every_registered_op_has_every_isa_file():
    text = (ROOT / "CMakeLists.txt").read_text()
    ops = re.search(r"set\(SIMDEX_KERNEL_OPS ([^)]*)\)", text).group(1).split()
    for op in ops:
        for isa in ("scalar", "avx2", "avx512", "neon"):
            assert (CPP / "kernels" / op / f"{isa}.cpp").exists(), f"missing kernels/{op}/{isa}.cpp"


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="aarch64 cross compiler not installed (apt-get install g++-aarch64-linux-gnu)")
def test_aarch64_sources_compile(tmp_path):
    text = (ROOT / "CMakeLists.txt").read_text()
    ops = re.search(r"set\(SIMDEX_KERNEL_OPS ([^)]*)\)", text).group(1).split()
    (tmp_path / "kernel_registry.inc").write_text(
        "".join(f"SIMDEX_REGISTER({op}, {isa})\n" for op in ops for isa in ("scalar", "neon")))
    sources = [CPP / "kernels" / op / f"{isa}.cpp" for op in ops for isa in ("scalar", "neon")]
    sources += [p for p in (CPP / "index").glob("*.cpp")] + [CPP / "dispatch.cpp", CPP / "parallel.cpp"]
    for src in sources:
        r = subprocess.run(["aarch64-linux-gnu-g++", "-std=c++17", "-O1", "-march=armv8-a", "-fsyntax-only",
                            "-I", str(CPP), "-I", str(tmp_path), str(src)], capture_output=True, text=True)
        assert r.returncode == 0, f"{src}:\n{r.stderr[:2000]}"


def test_core_stub_lists_every_binding():
    """python/simdex/_core.pyi (pybind11-stubgen output) must cover the compiled module."""
    import simdex._core as core

    stub = (ROOT / "python" / "simdex" / "_core.pyi").read_text()
    public = [name for name in dir(core) if not name.startswith("_")]
    missing = [name for name in public if not re.search(rf"\b(def|class) {name}\b", stub)]
    assert not missing, f"regenerate the stub (pybind11-stubgen simdex._core): missing {missing}"
