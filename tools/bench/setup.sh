#!/usr/bin/env bash
# Prepares a machine for tools/bench/run: installs HAProxy, nginx (+ stream module), wrk and
# iperf3 through tools/install-deps.sh --bench (Debian packages only), then builds the Release
# protobalance binary into build/bench. Idempotent: present packages are skipped and the build
# is incremental, so running it twice costs seconds.
# Usage: tools/bench/setup.sh            (run as root the first time, for apt)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build="$root/build/bench"
jobs=${PB_BENCH_JOBS:-2}

bash "$root/tools/install-deps.sh" --bench

# PB_BUILD_TESTS=OFF: the bench needs only the daemon, and tests double the build time.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPB_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target protobalance -j"$jobs"

echo "bench setup: ready; binary at $build/bin/protobalance"
echo "next: $root/tools/bench/run --quick"
