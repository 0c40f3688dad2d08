#!/usr/bin/env bash
# Builds the `fuzz` preset (clang-14, ASan, UBSan, libFuzzer) and runs one fuzz target, or all of
# them, each for SECONDS (default 30) on a scratch copy of its seed corpus tests/fuzz/corpus/NAME
# (with tests/fuzz/NAME.dict when there is one). Fails on any crash, leak, timeout or sanitizer
# report, and leaves the input that caused it in build/fuzz/findings/NAME/: fix the bug, then add
# that file to tests/fuzz/corpus/NAME/ as a regression input (docs/reliability.md).
# Usage: tools/fuzz.sh [TARGET|all] [SECONDS]      e.g. tools/fuzz.sh config 60
# Environment: FUZZ_JOBS (build jobs, default 2), FUZZ_NO_BUILD=1 (use the binaries as built).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-all}
seconds=${2:-30}
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a number, got '$seconds'" >&2; exit 2; }

all=()
for source in tests/fuzz/*_fuzz.cpp; do
  name=$(basename "$source" _fuzz.cpp)
  all+=("$name")
done
if [[ "$target" == all ]]; then
  targets=("${all[@]}")
else
  if [[ ! -f "tests/fuzz/${target}_fuzz.cpp" ]]; then
    echo "fuzz.sh: no target '$target' (have: ${all[*]})" >&2
    exit 2
  fi
  targets=("$target")
fi

if [[ "${FUZZ_NO_BUILD:-0}" != 1 ]]; then
  cmake --preset fuzz >/dev/null
fi
# Targets the configuration declines to build (see tests/fuzz/CMakeLists.txt) are skipped.
known=$(cmake --build build/fuzz --target help | sed -n 's/^\(fuzz_[A-Za-z0-9_]*\):.*/\1/p')
runnable=()
for name in "${targets[@]}"; do
  if grep -qx "fuzz_$name" <<<"$known"; then
    runnable+=("$name")
  else
    echo "fuzz.sh: $name skipped: not built by this configuration (tests/fuzz/CMakeLists.txt)"
  fi
done
targets=("${runnable[@]}")
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "fuzz.sh: no target to run" >&2
  exit 1
fi
if [[ "${FUZZ_NO_BUILD:-0}" != 1 ]]; then
  cmake --build --preset fuzz --parallel "${FUZZ_JOBS:-2}" --target "${targets[@]/#/fuzz_}"
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

failed=()
for name in "${targets[@]}"; do
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/pb-fuzz-$name.XXXXXX")
  mkdir -p "$scratch/corpus" "$scratch/tmp" "build/fuzz/findings/$name"
  if [[ -d "tests/fuzz/corpus/$name" ]]; then
    cp -r "tests/fuzz/corpus/$name/." "$scratch/corpus/"
  fi
  args=("$scratch/corpus" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560
        -print_final_stats=1 -artifact_prefix="build/fuzz/findings/$name/")
  [[ -f "tests/fuzz/$name.dict" ]] && args+=(-dict="tests/fuzz/$name.dict")
  echo "fuzz.sh: $name for ${seconds}s ($(ls "$scratch/corpus" | wc -l) seed inputs)"
  log="build/fuzz/findings/$name/last-run.log"
  if TMPDIR="$scratch/tmp" "build/fuzz/bin/fuzz_$name" "${args[@]}" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^stat::new_units_added|^Done' "$log" | tr '\n' ' '
    echo
  else
    tail -n 60 "$log"
    echo "fuzz.sh: $name FAILED; the input is in build/fuzz/findings/$name/ (log: $log)" >&2
    failed+=("$name")
  fi
  rm -rf "$scratch"
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s) ran ${seconds}s each without a finding"
