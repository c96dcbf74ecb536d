"""Every Python block of README.md runs, top to bottom, in one namespace (as a reader would
paste them), in a scratch directory."""

from __future__ import annotations

import os
import pathlib
import re
import time

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


# The examples exercise the API, not a tier (every module's tests run at every tier): the CI
# pass with SIMDEX_SIMD=scalar skips them.
@pytest.mark.skipif(
    bool(os.environ.get("SIMDEX_SIMD")), reason="runs once, in the pass at the detected tier"
)
def test_readme_blocks_run(tmp_path, monkeypatch):
    pytest.importorskip("dask.distributed")
    pytest.importorskip("langchain_core")
    pytest.importorskip("sklearn")
    code = blocks()
    assert len(code) >= 5, "README lost its examples?"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for number, block in enumerate(code):
        start = time.perf_counter()
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"README python block {number} failed: {exc!r}\n{block}") from exc
        print(f"block {number}: {time.perf_counter() - start:.1f} s")
