"""The benchmark scripts behind README's performance table, runnable from an installed package.

    python -m simdex.bench                           # list the scripts
    python -m simdex.bench hnsw --data minilm.hdf5   # run bench_hnsw.py with these arguments
    simdex scripts hnsw --data minilm.hdf5           # the same through the command line

The sdist ships the repository's ``bench/`` folder and the wheel installs it as
``simdex/_bench`` (CMakeLists.txt); in a source checkout the scripts are read from
``bench/``. They compare against FAISS, hnswlib, USearch and simsimd:
``pip install 'simdex[bench]'``. Their results and commands are in RESULTS.md beside them.
"""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

PREFIX = "bench_"


def scripts_dir() -> Path | None:
    """The folder holding the bench_*.py scripts, or None when this install has none."""
    installed = Path(__file__).with_name("_bench")  # wheel / sdist install
    if installed.is_dir():
        return installed
    checkout = (
        Path(__file__).resolve().parents[2] / "bench"
    )  # source tree (dev builds symlink here)
    return checkout if any(checkout.glob(f"{PREFIX}*.py")) else None


def available() -> dict[str, Path]:
    """Script name ('hnsw', 'pq', ...) -> path of bench_<name>.py."""
    folder = scripts_dir()
    if folder is None:
        return {}
    return {p.stem[len(PREFIX) :]: p for p in sorted(folder.glob(f"{PREFIX}*.py"))}


def summary(path: Path) -> str:
    """The first line of a script's docstring."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def run(name: str, argv: list[str]) -> int:
    """Run bench_<name>.py as __main__ with argv; returns its exit status."""
    scripts = available()
    if name not in scripts:
        print(
            f"simdex.bench: no script {name!r}; available: "
            f"{', '.join(scripts) or 'none in this install'}",
            file=sys.stderr,
        )
        return 2
    saved = sys.argv
    sys.argv = [str(scripts[name]), *argv]
    try:
        runpy.run_path(str(scripts[name]), run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except ModuleNotFoundError as e:
        print(
            f"simdex.bench {name}: needs {e.name!r} (the peers: pip install 'simdex[bench]')",
            file=sys.stderr,
        )
        return 1
    finally:
        sys.argv = saved
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        scripts = available()
        if not scripts:
            print(
                "no benchmark scripts in this install (they ship in the wheel and the sdist as "
                "simdex/_bench)",
                file=sys.stderr,
            )
            return 1
        print(f"benchmark scripts in {scripts_dir()} (results: RESULTS.md there):")
        for name, path in scripts.items():
            print(f"  {name:<10} {summary(path)}")
        print("run one: python -m simdex.bench NAME [--help | ARGS...]")
        return 0
    return run(args[0], args[1:])


if __name__ == "__main__":
    sys.exit(main())
