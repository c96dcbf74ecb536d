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


def kernel_files() -> list[tuple[str, str]]:
    """(op, tier) of every entry of CMakeLists.txt's SIMDEX_KERNEL_FILES."""
    text = (ROOT / "CMakeLists.txt").read_text()
    body = re.search(r"set\(SIMDEX_KERNEL_FILES([^)]*)\)", text).group(1)
    return [tuple(entry.split("/")) for entry in body.split()]


def tier_lines(built: set[str]) -> str:
    """tiers.inc as CMake writes it, for a build of the tiers in `built`."""
    text = (ROOT / "CMakeLists.txt").read_text()
    tiers = re.search(r"set\(SIMDEX_TIERS ([^)]*)\)", text).group(1).split()
    lines = []
    for tier in tiers:
        words = re.search(rf"set\(SIMDEX_TIER_{tier} ([^)]*)\)", text).group(1).replace('""', "").split()
        parent, features = (words[0], words[1:]) if words else ("", [])
        lines.append(f'SIMDEX_TIER({tier}, "{parent}", "{" ".join(features)}", {int(tier in built)})\n')
    return "".join(lines)


def test_every_kernel_file_exists_and_every_op_has_scalar():
    files = kernel_files()
    for op, tier in files:
        assert (CPP / "kernels" / op / f"{tier}.cpp").exists(), f"missing kernels/{op}/{tier}.cpp"
        assert (op, "scalar") in files, f"op {op} has no scalar file"
    listed = {f"{op}/{tier}.cpp" for op, tier in files}
    on_disk = {f"{p.parent.name}/{p.name}" for p in (CPP / "kernels").glob("*/*.cpp")}
    assert on_disk == listed, f"kernel files not registered: {on_disk - listed}"


def test_tier_files_register_their_own_tier():
    for op, tier in kernel_files():
        text = (CPP / "kernels" / op / f"{tier}.cpp").read_text()
        assert f"void register_{op}_{tier}(KernelTable&" in text, f"kernels/{op}/{tier}.cpp"


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="aarch64 cross compiler not installed (apt-get install g++-aarch64-linux-gnu)")
def test_aarch64_sources_compile(tmp_path):
    arm = [(op, tier) for op, tier in kernel_files() if tier in ("scalar", "neon")]
    (tmp_path / "kernel_registry.inc").write_text(
        "".join(f"SIMDEX_REGISTER({op}, {tier})\n" for op, tier in arm))
    (tmp_path / "tiers.inc").write_text(tier_lines({"scalar", "neon"}))
    sources = [CPP / "kernels" / op / f"{tier}.cpp" for op, tier in arm]
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
