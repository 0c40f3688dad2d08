#!/usr/bin/env bash
# Measures how long Proto Balance takes to load N affinity entries at start (default 100,000):
# writes a database with N entries (sqlite3), starts the balancer on it, and prints its log line
# "affinity: N entries loaded ... in X ms" (the map loads in the background while it serves).
# Usage: tools/affinity-load.sh [BINARY] [N]      (BINARY defaults to build/bin/protobalance)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-build/bin/protobalance}
count=${2:-100000}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
pid=0

mkdir -p "$work/state"
# The text rows of schema 2 (what the previous release wrote, and what sqlite3 alone can write:
# the binary keys of schema 3 need the balancer's own conversion, which runs when it opens the
# file, before the load). For the figures of issue 17 at scale see tools/affinity-scale.
{
  for f in migrations/0001_*.sql migrations/0002_*.sql; do cat "$f"; done
  echo "PRAGMA user_version = 2;"
  now=$(date +%s)
  cat <<SQL
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $count)
INSERT INTO affinity (cluster, client, node, first_seen, last_seen, connections)
SELECT 'web',
       '10.' || ((i >> 16) & 255) || '.' || ((i >> 8) & 255) || '.' || (i & 255),
       CASE i % 3 WHEN 0 THEN 'alpha' WHEN 1 THEN 'beta' ELSE 'gamma' END,
       $now - 86400, $now - (i % 3600), 1 + i % 50
FROM n;
SQL
} | sqlite3 "$work/state/protobalance.db"

cat >"$work/pb.toml" <<TOML
[service]
threads = 1
state_dir = "state"
[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "web"
[[cluster]]
name = "web"
[cluster.affinity]
enabled = true
[[cluster.node]]
name = "alpha"
address = "127.0.0.1:9"
[[cluster.node]]
name = "beta"
address = "127.0.0.1:9"
[[cluster.node]]
name = "gamma"
address = "127.0.0.1:9"
TOML

"$binary" --config "$work/pb.toml" 2>"$work/log" &
pid=$!
for _ in $(seq 1 600); do
  grep -q "entries loaded" "$work/log" && break
  sleep 0.1
done
grep -o "affinity: [0-9]* entries loaded .*" "$work/log" || { cat "$work/log"; exit 1; }
