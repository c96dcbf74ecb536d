#!/usr/bin/env bash
# The test job: install simdex with its test extra into the current Python, then run the
# suite at the detected SIMD level and once more with SIMDEX_SIMD=scalar.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet ".[test]"
# Optional: the aarch64 cross compiler lets tests/test_build.py prove the NEON sources compile.
if ! command -v aarch64-linux-gnu-g++ >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq g++-aarch64-linux-gnu) >/dev/null 2>&1 || true
fi
python -m pytest -q tests
SIMDEX_SIMD=scalar python -m pytest -q tests
