#!/usr/bin/env bash
# The test job: install simdex with its test extra into the current Python, then run the
# suite at the detected SIMD level and once more with SIMDEX_SIMD=scalar.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet ".[test]"
python -m pytest -q tests
SIMDEX_SIMD=scalar python -m pytest -q tests
