#!/usr/bin/env bash
# One closed-loop run of endure-bench against a fresh local three-node cluster
# (deploy/local/cluster.sh), its worker connected to every node, while `perf stat` counts
# the fdatasync and fsync calls of the three endure processes and /proc their CPU time.
#
#   bench/cluster_bench.sh ENDURE_BIN BENCH_BIN WORKFLOWS CONCURRENCY [ACTIVITIES]
#   ENDURE_SHARDS=1 bench/cluster_bench.sh ...    one shard instead of the default 8
#   NODES=1 ...                                   a single node (no --peer) instead
#
# Prints one markdown row:
#   | nodes | shards | concurrency | workflows | workflows/s | p50 / p99 ms | syncs/s |
#   | syncs per workflow | CPU ms per workflow, per node |
# Needs perf with syscall tracepoints. Not run in CI beyond a smoke (a benchmark on a busy
# machine measures the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?endure binary}"; bench="${2:?endure-bench binary}"
workflows="${3:?workflows}"; concurrency="${4:?concurrency}"; activities="${5:-3}"
nodes="${NODES:-3}"
dir="$(mktemp -d /tmp/cluster-bench.XXXX)"
export ENDURE_BIN="$bin" ENDURE_CLUSTER_DIR="$dir" ENDURE_LOG_LEVEL=warn
export ENDURE_BASE_GRPC_PORT=24000 ENDURE_BASE_HTTP_PORT=24100 ENDURE_BASE_RAFT_PORT=24200
cleanup() {
  if [[ "$nodes" == 1 ]]; then kill "$(cat "$dir/single.pid" 2>/dev/null)" 2>/dev/null || true
  else deploy/local/cluster.sh clean >/dev/null 2>&1 || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
if [[ "$nodes" == 1 ]]; then
  "$bin" serve --data-dir "$dir/data" --grpc-addr 127.0.0.1:24001 --http-addr 127.0.0.1:24101 \
    >"$dir/single.log" 2>&1 &
  echo $! >"$dir/single.pid"
  pids="$(cat "$dir/single.pid")"
  endpoints="http://127.0.0.1:24001"
  for _ in $(seq 100); do curl -fs http://127.0.0.1:24101/readyz >/dev/null && break; sleep 0.1; done
else
  deploy/local/cluster.sh start >/dev/null
  pids="$(cat "$dir"/node-*/endure.pid | paste -sd' ' -)"
  endpoints="http://127.0.0.1:24001,http://127.0.0.1:24002,http://127.0.0.1:24003"
  for port in 24101 24102 24103; do
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  done
  # Placement moves each shard to its preferred leader a few seconds after the start.
  for _ in $(seq 150); do
    curl -fs http://127.0.0.1:24101/cluster/status | python3 -c '
import json, sys
shards = json.load(sys.stdin)["shards"]
sys.exit(0 if all(s.get("leader_id") == s["preferred_leader"] for s in shards) else 1)' && break
    sleep 0.2
  done
fi
# utime + stime in clock ticks of each node, in node order.
cpu_ticks() { for pid in $pids; do awk '{print $14 + $15}' "/proc/$pid/stat"; done | paste -sd, -; }
cpu_before="$(cpu_ticks)"
perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -p "${pids// /,}" \
  -o "$dir/perf.csv" &
perf_pid=$!
sleep 0.3
out="$("$bench" --endpoints "$endpoints" --workflows "$workflows" --concurrency "$concurrency" \
  --activities "$activities" --warmup 0 --json)"
kill -INT "$perf_pid"; wait "$perf_pid" || true
cpu_after="$(cpu_ticks)"
syncs="$(awk -F, '/sys_enter_f(data)?sync/ {s += $1} END {print s}' "$dir/perf.csv")"
python3 - "$out" "$syncs" "$cpu_before" "$cpu_after" "$(getconf CLK_TCK)" "$nodes" \
  "${ENDURE_SHARDS:-$([[ $nodes == 1 ]] && echo 1 || echo 8)}" <<'PY'
import json, sys
run, syncs = json.loads(sys.argv[1]), int(sys.argv[2])
before, after = ([int(t) for t in arg.split(",")] for arg in sys.argv[3:5])
tick_ms, nodes, shards = 1000 / int(sys.argv[5]), sys.argv[6], sys.argv[7]
n, seconds = run["workflows"], run["seconds"]
cpu = " / ".join(f"{(a - b) * tick_ms / n:.2f}" for b, a in zip(before, after))
print(f"| {nodes} | {shards} | {run['concurrency']} | {n} | {run['workflows_per_second']:.0f} | "
      f"{run['p50_ms']:.1f} / {run['p99_ms']:.1f} | {syncs / seconds:.0f} | {syncs / n:.1f} | {cpu} |")
PY
