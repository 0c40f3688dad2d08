#!/usr/bin/env bash
# Sets everything up (Debian packages) and builds with the `dev` preset (Debug, AddressSanitizer,
# UndefinedBehaviorSanitizer, warnings as errors), then runs every test with ctest (the fault
# suite included: `ctest --preset dev -L fault` runs it alone).
# Usage: tools/test.sh [STAGE...]     stages: dev (the default), tsan, fuzz
#   tsan  builds the `tsan` preset (ThreadSanitizer) and runs the end-to-end tests, which start
#         the real daemon, under it; the first race reported stops the daemon (halt_on_error)
#         and fails its test.
#   fuzz  builds the `fuzz` preset (clang-14, libFuzzer) and runs every fuzz target for
#         FUZZ_SECONDS (default 30) seconds: any crash, leak or sanitizer report fails.
# CI (.ci/run) runs all three.
set -euo pipefail
cd "$(dirname "$0")/.."

stages=("$@")
[[ ${#stages[@]} -eq 0 ]] && stages=(dev)

bash tools/install-deps.sh
for stage in "${stages[@]}"; do
  echo "test.sh: stage $stage ($(date -u +%H:%M:%S))"
  case "$stage" in
    dev)
      cmake --preset dev
      cmake --build --preset dev
      ctest --preset dev -j2
      ;;
    tsan)
      cmake --preset tsan
      cmake --build --preset tsan --target protobalance pbadmin pb_test_integration
      # Only the end-to-end executable is built here; the others' placeholders are skipped.
      ctest --preset tsan -j2 -E '_NOT_BUILT$'
      ;;
    fuzz)
      bash tools/fuzz.sh all "${FUZZ_SECONDS:-30}"
      ;;
    *)
      echo "test.sh: unknown stage '$stage' (dev, tsan, fuzz)" >&2
      exit 2
      ;;
  esac
done
echo "test.sh: ${stages[*]} passed ($(date -u +%H:%M:%S))"
