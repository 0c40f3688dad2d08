#!/usr/bin/env bash
# Sets everything up (Debian packages, Release build) and runs Proto Balance on the example
# configuration with two demo HTTP nodes (alpha on 9001, beta on 9002). In another terminal:
#   curl http://127.0.0.1:8080/      (repeat it: the answers spread over the two nodes)
# Ctrl-C stops the balancer and the demo nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPB_BUILD_TESTS=OFF >/dev/null
cmake --build build --target protobalance pbadmin

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
python3 tools/demo/backend.py --name alpha --port 9001 & pids+=($!)
python3 tools/demo/backend.py --name beta --port 9002 & pids+=($!)
sleep 0.5
for pid in "${pids[@]}"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "demo: a demo node could not start (is port 9001 or 9002 already in use?)" >&2
    exit 1
  fi
done

echo "Proto Balance on http://127.0.0.1:8080/ -> alpha (9001), beta (9002); Ctrl-C to stop"
build/bin/protobalance --config config/protobalance.toml
