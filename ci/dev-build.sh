#!/usr/bin/env bash
# Fast in-place developer build: cmake + ninja (+ ccache) into BUILD_DIR (default build-dev),
# then a package tree BUILD_DIR/pkg/simdex of symlinks to python/simdex plus the built
# extension. Use it with: PYTHONPATH=BUILD_DIR/pkg python -m pytest
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$root/build-dev}")
mkdir -p "$build"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    -DPython_EXECUTABLE="$(command -v python)" >/dev/null
fi
cmake --build "$build" -- -j"${JOBS:-2}"
pkg="$build/pkg/simdex"
mkdir -p "$pkg"
find "$pkg" -maxdepth 1 -type l -delete
for f in "$root"/python/simdex/*; do ln -sf "$f" "$pkg/"; done
ln -sf "$build"/_core*.so "$pkg/"
echo "built: PYTHONPATH=$build/pkg"
