#!/usr/bin/env bash
# Fuzz sx.load with atheris (tests/fuzz/fuzz_load.py), one target per index kind.
#
#   bash ci/fuzz.sh                 # CI: 15 s per target (11 targets: ~4 min with start-up)
#   bash ci/fuzz.sh 600             # by hand: 10 minutes per target
#   bash ci/fuzz.sh 60 hnsw ivfpq   # chosen targets only
#
# Each target gets its budget split 4:1 between the structure-aware mutator (header fields,
# array entries and contents changed, checksums recomputed: reaches the semantic checks) and
# plain byte mutation (reaches the format checks). Seeds are small real files of each kind
# written by the simdex under test (tests/fuzz/seeds.py) plus the committed tests/data files.
# Uses the simdex that `python` imports (PYTHONPATH=build-dev/pkg for a dev build).
#
# Output in FUZZ_DIR (default build-fuzz): corpus/<target> (kept between runs: longer runs
# start where the last stopped), findings/<target>/<hash>.sdx + .txt (Python-level findings,
# one per distinct error), crashes/<target>-crash-* (signals, hangs over FUZZ_TIMEOUT s,
# OOMs over FUZZ_RSS_MB). A run that crashes is restarted for the rest of its budget.
# FUZZ_ASAN=1 then replays each corpus under the ASan + UBSan build (ci/sanitize.sh).
# Exit status 1 when anything was found; the summary lists it. Reproduce one input with
#   python tests/fuzz/fuzz_load.py --target T --replay FILE
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
budget=${1:-15}
shift || true
all_targets=(flat hnsw pq8 pq4 ivfpq leanvec binary binary-graph rabitq ivf-rabitq hnsw-rabitq)
targets=("${@:-${all_targets[@]}}")
out=$(realpath -m "${FUZZ_DIR:-$root/build-fuzz}")
timeout_s=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-4096}

if ! python -c "import atheris" 2>/dev/null; then
  # the fuzz extra of pyproject.toml; atheris has wheels for Linux x86-64 (elsewhere it needs clang)
  python -m pip install --quiet "atheris>=2.3" || { echo "fuzz: atheris is not installable here; skipped"; exit 0; }
fi
python -c "import simdex" || { echo "fuzz: simdex is not importable (set PYTHONPATH)"; exit 2; }

rm -rf "$out/seeds" "$out/findings" "$out/crashes"  # the corpus stays: it holds the coverage reached
mkdir -p "$out/seeds" "$out/corpus" "$out/findings" "$out/crashes"
python "$root/tests/fuzz/seeds.py" "$out/seeds" "${targets[@]}" >/dev/null 2>&1 \
  || { echo "fuzz: writing the seed files failed"; python "$root/tests/fuzz/seeds.py" "$out/seeds"; exit 2; }

# run TARGET MODE SECONDS: fuzz until the budget is spent, restarting after a crash (at most 5)
run() {
  local target=$1 mode=$2 seconds=$3 start restarts=0 left
  mkdir -p "$out/corpus/$target"
  start=$(date +%s)
  while :; do
    left=$((seconds - ($(date +%s) - start)))
    [ "$left" -ge 2 ] && [ "$restarts" -le 5 ] || break
    python "$root/tests/fuzz/fuzz_load.py" --target "$target" --mode "$mode" --findings "$out/findings" -- \
      "$out/corpus/$target" "$out/seeds/$target" -max_total_time="$left" -max_len=4000000 \
      -timeout="$timeout_s" -rss_limit_mb="$rss_mb" -print_final_stats=1 \
      -artifact_prefix="$out/crashes/$target-" >"$out/$target-$mode.log" 2>&1 || restarts=$((restarts + 1))
    grep -E "^stat::number_of_executed_units|^FINDING|SUMMARY: libFuzzer" "$out/$target-$mode.log" \
      | sed "s/^/  [$target $mode] /"
    grep -q "SUMMARY: libFuzzer" "$out/$target-$mode.log" || break  # budget spent without a crash
  done
}

started=$(date +%s)
for target in "${targets[@]}"; do
  run "$target" struct $((budget - budget / 5))
  [ $((budget / 5)) -ge 2 ] && run "$target" bytes $((budget / 5))
done

echo
echo "fuzz: $(( $(date +%s) - started )) s for ${#targets[@]} targets x ${budget} s; output in $out"

# FUZZ_ASAN=1: replay every target's corpus (the coverage reached) and seeds under the ASan +
# UBSan build of ci/sanitize.sh, which notices memory errors that do not crash the plain build.
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
  bash "$root/ci/sanitize.sh" --build-only >/dev/null
  for target in "${targets[@]}"; do
    log="$out/$target-asan-replay.log"
    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
      ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      PYTHONPATH="$root/build-asan/pkg" python "$root/tests/fuzz/fuzz_load.py" --target "$target" \
      --replay "$out/corpus/$target"/* "$out/seeds/$target"/* >"$log" 2>&1
    if grep -qE "ERROR: AddressSanitizer|runtime error:|Fatal Python error" "$log"; then
      cp "$log" "$out/crashes/$target-asan-replay.log"
      echo "  [$target asan] $(grep -m1 -E "ERROR: AddressSanitizer|runtime error:|Fatal Python error" "$log")"
      echo "  [$target asan] on input $(grep -E "^/" "$log" | tail -1)"
    else
      echo "  [$target asan] replayed $(grep -cE "^/" "$log") inputs: no sanitizer report"
    fi
  done
fi
found=0
for f in "$out"/findings/*/*.txt; do
  [ -e "$f" ] || continue
  found=$((found + 1))
  echo "  finding $(basename "$(dirname "$f")")/$(basename "$f" .txt).sdx: $(head -1 "$f")"
done
for f in "$out"/crashes/*; do
  [ -e "$f" ] || continue
  found=$((found + 1))
  echo "  crash   crashes/$(basename "$f")"
done
if [ "$found" -gt 0 ]; then
  echo "fuzz: $found finding(s) (each input loads or raises ValueError, and what loads must keep the contract)"
  exit 1
fi
echo "fuzz: no findings"
