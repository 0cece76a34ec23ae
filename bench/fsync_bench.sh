#!/usr/bin/env bash
# Fsyncs per workflow on a three-node cluster: runs bench/chain_bench.py against the leader
# of a fresh local cluster (deploy/local/cluster.sh) while `perf stat` counts the fdatasync
# and fsync system calls of the three endure processes, and /proc their CPU time.
#   ENDURE_SHARDS=1 bench/fsync_bench.sh ...   compares one shard with the default 8.
#
#   bench/fsync_bench.sh ENDURE_BIN [CONCURRENT] [SEQUENTIAL]
#
# Needs: perf (syscalls tracepoints), a Python with dapr-ext-workflow (PYTHON, default
# ~/.cache/endure-venv/bin/python). Prints one markdown row:
#   | binary | shards | workflows | concurrent workflows/s | sequential p50 / p99 | syncs |
#   | syncs per workflow | CPU ms per workflow, node 1 / 2 / 3 |
# Not run in CI (a benchmark on a busy machine measures the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?endure binary}"; concurrent="${2:-1000}"; sequential="${3:-100}"
python="${PYTHON:-$HOME/.cache/endure-venv/bin/python}"
dir="$(mktemp -d /tmp/fsync-bench.XXXX)"
export ENDURE_BIN="$bin" ENDURE_CLUSTER_DIR="$dir" ENDURE_LOG_LEVEL=warn
export ENDURE_BASE_GRPC_PORT=24000 ENDURE_BASE_HTTP_PORT=24100 ENDURE_BASE_RAFT_PORT=24200
trap 'deploy/local/cluster.sh clean >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
deploy/local/cluster.sh start >/dev/null

leader_port=""
for _ in $(seq 50); do
  leader="$("$bin" cluster status --endpoint "127.0.0.1:$((ENDURE_BASE_GRPC_PORT + 1))" --output json 2>/dev/null \
    | "$python" -c 'import json,sys; print(json.load(sys.stdin)[0].get("leaderId") or "")' || true)"
  if [[ -n "$leader" ]]; then leader_port=$((ENDURE_BASE_GRPC_PORT + leader)); break; fi
  sleep 0.2
done
[[ -n "$leader_port" ]] || { echo "no leader" >&2; exit 1; }
pids="$(cat "$dir"/node-*/endure.pid | paste -sd, -)"
# utime + stime in clock ticks of each node, in node order.
cpu_ticks() { for pid in ${pids//,/ }; do awk '{print $14 + $15}' "/proc/$pid/stat"; done | paste -sd, -; }
cpu_before="$(cpu_ticks)"

perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -p "$pids" \
  -o "$dir/perf.csv" &
perf_pid=$!
sleep 0.5
out="$(DAPR_GRPC_ENDPOINT="127.0.0.1:$leader_port" "$python" bench/chain_bench.py \
  --sequential "$sequential" --concurrent "$concurrent")"
kill -INT "$perf_pid"; wait "$perf_pid" || true
cpu_after="$(cpu_ticks)"
echo "$out" >&2
syncs="$(awk -F, '/sys_enter_f(data)?sync/ {s += $1} END {print s}' "$dir/perf.csv")"
workflows=$((concurrent + sequential + 5))  # chain_bench runs 5 warm-up chains
"$python" - "$bin" "$workflows" "$syncs" "$out" "$cpu_before" "$cpu_after" "$(getconf CLK_TCK)" \
  "${ENDURE_SHARDS:-8}" <<'EOF'
import re, sys
binary, workflows, syncs, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
before, after = ([int(t) for t in arg.split(",")] for arg in sys.argv[5:7])
tick_ms = 1000 / int(sys.argv[7])
cpu = " / ".join(f"{(a - b) * tick_ms / workflows:.2f}" for b, a in zip(before, after))
rate = re.search(r"([0-9.]+) workflows/s", out)
lat = re.search(r"p50=([0-9.]+) ms p99=([0-9.]+) ms", out)
print(f"| {binary} | {sys.argv[8]} | {workflows} | {rate.group(1) if rate else '?'} | "
      f"{lat.group(1) + ' / ' + lat.group(2) + ' ms' if lat else '?'} | {syncs} | {syncs / workflows:.1f} | {cpu} |")
EOF
