#!/usr/bin/env bash
# ASan + UBSan build of the extension, then the test suite against it.
#
#   bash ci/sanitize.sh                 # build + the reduced CI selection (SANITIZE_CI_TESTS)
#   bash ci/sanitize.sh tests           # build + the whole suite (slow: see README "Hardening")
#   bash ci/sanitize.sh tests/test_io.py -k mmap   # any pytest arguments
#   bash ci/sanitize.sh --build-only
#
# The build lives in BUILD_DIR (default build-asan) with its own package tree of symlinks
# (BUILD_DIR/pkg, as ci/dev-build.sh makes), so it never touches the normal build. Python is
# not built with ASan, so the ASan runtime (and libstdc++, whose operator new/delete ASan must
# see first) are preloaded. Any sanitizer report aborts the run (non-zero exit).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${BUILD_DIR:-$root/build-asan}")
san="-fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=undefined,float-cast-overflow -g"
# a CI environment may hold only the installed wheel: get the build tools ci/dev-build.sh uses
python -c "import pybind11" 2>/dev/null || python -m pip install --quiet pybind11
command -v cmake >/dev/null || python -m pip install --quiet cmake
command -v ninja >/dev/null || python -m pip install --quiet ninja
mkdir -p "$build"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS="$san" -DCMAKE_MODULE_LINKER_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="$san" \
    -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    -DPython_EXECUTABLE="$(command -v python)" >/dev/null
fi
bash "$root/ci/dev-build.sh" "$build" >/dev/null  # configured above: builds and links the package tree
if [ "${1:-}" = "--build-only" ]; then echo "built: $build/pkg"; exit 0; fi

# The reduced selection CI runs (a few minutes under ASan): the loaders, the crafted-file
# corpus, the live-index concurrency tests and the kernels at every tier.
SANITIZE_CI_TESTS=(tests/test_untrusted.py tests/test_format.py tests/test_io.py tests/test_flat.py
                   tests/test_kernels.py tests/test_pq.py tests/test_ivf.py tests/test_binary.py)
if [ "$#" -eq 0 ]; then set -- "${SANITIZE_CI_TESTS[@]}"; fi

export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
export PYTHONPATH="$build/pkg"
export SIMDEX_SANITIZED=1  # tests that need an unsanitized process (e.g. huge allocations) may skip
cd "$root"
python -m pytest -q -p no:cacheprovider "$@"
