#!/usr/bin/env bash
# Sets everything up (Debian packages) and builds with the `dev` preset (Debug, AddressSanitizer,
# UndefinedBehaviorSanitizer, warnings as errors), then runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh
cmake --preset dev
cmake --build --preset dev
ctest --preset dev -j2
