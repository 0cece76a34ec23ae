#!/usr/bin/env bash
# A short run of the load driver (endure-bench), so CI keeps it working: 300 workflows on
# one node, then on a local three-node cluster with the worker on every node. Every
# workflow's output is checked by the driver; a wrong or missing one fails the run. The
# figures it prints are not benchmarks (see bench/RESULTS.md for how those are taken).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/endure-target}"
bin="${ENDURE_BIN:-$CARGO_TARGET_DIR/release/endure}"
bench="$CARGO_TARGET_DIR/release/endure-bench"
dir="$(mktemp -d /tmp/bench-smoke.XXXX)"
export ENDURE_BIN="$bin" ENDURE_CLUSTER_DIR="$dir/cluster" ENDURE_LOG_LEVEL=warn
export ENDURE_BASE_GRPC_PORT=25000 ENDURE_BASE_HTTP_PORT=25100 ENDURE_BASE_RAFT_PORT=25200
single=""
cleanup() {
  [[ -n "$single" ]] && kill "$single" 2>/dev/null || true
  deploy/local/cluster.sh clean >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

ready() {
  for _ in $(seq 150); do curl -fs "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.2; done
  echo "node on HTTP port $1 never became ready" >&2; return 1
}

"$bin" serve --data-dir "$dir/single" --grpc-addr 127.0.0.1:25050 --http-addr 127.0.0.1:25150 \
  >"$dir/single.log" 2>&1 &
single=$!
ready 25150
echo "one node:"
"$bench" --endpoints http://127.0.0.1:25050 --workflows 300 --concurrency 20
kill "$single"; wait "$single" 2>/dev/null || true; single=""

deploy/local/cluster.sh start >/dev/null
for port in 25101 25102 25103; do ready "$port"; done
echo "three nodes, 8 shards:"
"$bench" --endpoints http://127.0.0.1:25001,http://127.0.0.1:25002,http://127.0.0.1:25003 \
  --workflows 300 --concurrency 20
