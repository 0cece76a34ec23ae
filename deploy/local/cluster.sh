#!/usr/bin/env bash
# Runs a three-node Endure cluster on loopback, for development and failure drills.
#
#   cluster.sh start [N]            start every node (or node N), wait until each serves
#                                   and knows the leader of every shard
#   cluster.sh stop [N]             SIGTERM every node (or node N); SIGKILL after
#                                   $ENDURE_STOP_TIMEOUT seconds
#   cluster.sh status [ARGS...]     each node's pid and whether it is alive, then
#                                   `endure cluster status` of the live nodes (ARGS go to
#                                   it, e.g. `status --output json`)
#   cluster.sh kill N               kill -9 node N (a crash; its pid file is kept)
#   cluster.sh restart N            stop node N if it runs, start it again with the flags
#                                   it was first started with, wait until it serves
#   cluster.sh logs N [TAIL ARGS]   tail node N's log (default `-n 100`; `logs 1 -f` follows)
#   cluster.sh clean                stop every node, delete their data and logs
#
# Node N (1..3) listens on loopback:
#   gRPC (SDKs, CLI)   ENDURE_BASE_GRPC_PORT + N   default 50001, 50002, 50003
#   HTTP (/metrics..)  ENDURE_BASE_HTTP_PORT + N   default 3501, 3502, 3503
#   Raft (internal)    ENDURE_BASE_RAFT_PORT + N   default 50101, 50102, 50103
# and keeps everything under $ENDURE_CLUSTER_DIR/node-N/ (default ./endure-cluster):
#   data/ (RocksDB), endure.log, endure.pid, argv (the flags it was first started with;
#   later starts reuse them, since the Raft membership stored in data/ names these ports).
#
# Environment:
#   ENDURE_BIN               endure binary (default:
#                            ${CARGO_TARGET_DIR:-$HOME/.cache/endure-target}/release/endure)
#   ENDURE_CLUSTER_DIR       where the nodes' data, logs and pid files go
#   ENDURE_BASE_GRPC_PORT    default 50000
#   ENDURE_BASE_HTTP_PORT    default 3500
#   ENDURE_BASE_RAFT_PORT    default 50100
#   ENDURE_CLUSTER_LOG_FORMAT  text (default) or json
#   ENDURE_START_TIMEOUT     seconds `start`/`restart` wait for a node (default 30)
#   ENDURE_STOP_TIMEOUT      seconds `stop` waits before SIGKILL (default 15)
#   ENDURE_LOG_LEVEL, RUST_LOG and the other ENDURE_* settings reach the nodes as usual
#   (the flags this script passes win over them).
#
# Exit status: 0 on success; `status` exits 3 when a node is not running; 1 on errors,
# 2 on bad usage.
set -euo pipefail

readonly NODES=3
prog="$(basename "$0")"

bin="${ENDURE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/endure-target}/release/endure}"
cluster_dir="${ENDURE_CLUSTER_DIR:-./endure-cluster}"
if [[ "$cluster_dir" != /* ]]; then
    cluster_dir="$PWD/$cluster_dir"
fi
grpc_base="${ENDURE_BASE_GRPC_PORT:-50000}"
http_base="${ENDURE_BASE_HTTP_PORT:-3500}"
raft_base="${ENDURE_BASE_RAFT_PORT:-50100}"
log_format="${ENDURE_CLUSTER_LOG_FORMAT:-text}"
start_timeout="${ENDURE_START_TIMEOUT:-30}"
stop_timeout="${ENDURE_STOP_TIMEOUT:-15}"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
    echo "$prog: $*" >&2
    exit 1
}

need_bin() {
    if [[ ! -x "$bin" ]]; then
        die "endure binary not found at $bin (build it with 'cargo build --release -p endure' or set ENDURE_BIN)"
    fi
}

check_node() {
    if [[ ! "${1:-}" =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > NODES)); then
        die "node must be 1..$NODES, got '${1:-}'"
    fi
}

node_dir() { echo "$cluster_dir/node-$1"; }
pid_file() { echo "$cluster_dir/node-$1/endure.pid"; }
log_file() { echo "$cluster_dir/node-$1/endure.log"; }
argv_file() { echo "$cluster_dir/node-$1/argv"; }

# The flags of a fresh node N, one per line.
default_args() {
    local n="$1" i
    printf '%s\n' \
        --node-id "$n" \
        --data-dir "$(node_dir "$n")/data" \
        --grpc-addr "127.0.0.1:$((grpc_base + n))" \
        --http-addr "127.0.0.1:$((http_base + n))" \
        --raft-addr "127.0.0.1:$((raft_base + n))" \
        --log-format "$log_format"
    for ((i = 1; i <= NODES; i++)); do
        printf '%s\n' --peer "$i=127.0.0.1:$((raft_base + i))"
    done
}

# Sets ARGS to node N's flags: those recorded when it first started, else the defaults.
load_args() {
    local file
    file="$(argv_file "$1")"
    if [[ -f "$file" ]]; then
        mapfile -t ARGS <"$file"
    else
        mapfile -t ARGS < <(default_args "$1")
    fi
}

# The value that follows flag $1 in ARGS.
arg_value() {
    local i
    for ((i = 0; i < ${#ARGS[@]} - 1; i++)); do
        if [[ "${ARGS[i]}" == "$1" ]]; then
            echo "${ARGS[i + 1]}"
            return 0
        fi
    done
    return 1
}

pid_of() {
    local file
    file="$(pid_file "$1")"
    if [[ -f "$file" ]]; then
        cat "$file"
    fi
}

# True when node N's recorded pid is a live `endure serve` of this node (not a reused pid,
# not a zombie).
is_alive() {
    local pid args
    pid="$(pid_of "$1")"
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    args="$(ps -ww -p "$pid" -o args= 2>/dev/null || true)"
    [[ "$args" == *" serve "* && "$args" == *"$(node_dir "$1")/data"* ]]
}

start_node() {
    local n="$1" dir pid
    if is_alive "$n"; then
        echo "node $n: already running (pid $(pid_of "$n"))"
        return 0
    fi
    dir="$(node_dir "$n")"
    mkdir -p "$dir"
    load_args "$n"
    if [[ ! -f "$(argv_file "$n")" ]]; then
        printf '%s\n' "${ARGS[@]}" >"$(argv_file "$n")"
    fi
    printf '=== %s: %s serve %s\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" "$bin" "${ARGS[*]}" >>"$(log_file "$n")"
    # NO_COLOR: plain text in the log files, no terminal colour codes.
    NO_COLOR=1 nohup "$bin" serve "${ARGS[@]}" >>"$(log_file "$n")" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$(pid_file "$n")"
    echo "node $n: started pid $pid (grpc $(arg_value --grpc-addr), http $(arg_value --http-addr)," \
        "raft $(arg_value --raft-addr)); log $(log_file "$n")"
}

# Waits until node N answers on gRPC and knows a leader for every shard (the status
# document names the node's leader and each shard's; none may be null).
wait_ready() {
    local n="$1" deadline grpc out
    deadline=$((SECONDS + start_timeout))
    load_args "$n"
    grpc="$(arg_value --grpc-addr)"
    while true; do
        if ! is_alive "$n"; then
            echo "$prog: node $n exited; the end of its log:" >&2
            tail -n 20 "$(log_file "$n")" >&2 || true
            return 1
        fi
        out="$("$bin" cluster status --endpoint "http://$grpc" --timeout 1 --output json 2>/dev/null || true)"
        if ! [[ "$out" =~ \"leaderId\":\ *null ]] && [[ "$out" =~ \"leaderId\":\ *([0-9]+) ]]; then
            echo "node $n: serving on $grpc, leader is node ${BASH_REMATCH[1]}"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            echo "$prog: node $n did not serve within ${start_timeout}s (a node serves once a" \
                "majority of the $NODES nodes runs); see $(log_file "$n")" >&2
            return 1
        fi
        sleep 0.2
    done
}

# Sends SIGTERM to the given nodes, waits for them, SIGKILLs whatever is left.
stop_nodes() {
    local n deadline left
    for n in "$@"; do
        if is_alive "$n"; then
            kill -TERM "$(pid_of "$n")" 2>/dev/null || true
        fi
    done
    deadline=$((SECONDS + stop_timeout))
    while true; do
        left=()
        for n in "$@"; do
            if is_alive "$n"; then
                left+=("$n")
            fi
        done
        if ((${#left[@]} == 0)) || ((SECONDS >= deadline)); then
            break
        fi
        sleep 0.2
    done
    for n in "${left[@]}"; do
        echo "node $n: did not stop within ${stop_timeout}s, sending SIGKILL" >&2
        kill -KILL "$(pid_of "$n")" 2>/dev/null || true
    done
    for n in "$@"; do
        if [[ -f "$(pid_file "$n")" ]]; then
            rm -f "$(pid_file "$n")"
            echo "node $n: stopped"
        fi
    done
}

all_nodes() {
    local i
    for ((i = 1; i <= NODES; i++)); do
        echo "$i"
    done
}

cmd_start() {
    local nodes n
    need_bin
    if (($#)); then
        check_node "$1"
        nodes=("$1")
    else
        mapfile -t nodes < <(all_nodes)
    fi
    mkdir -p "$cluster_dir"
    for n in "${nodes[@]}"; do
        start_node "$n"
    done
    for n in "${nodes[@]}"; do
        wait_ready "$n"
    done
}

cmd_stop() {
    local nodes
    if (($#)); then
        check_node "$1"
        nodes=("$1")
    else
        mapfile -t nodes < <(all_nodes)
    fi
    stop_nodes "${nodes[@]}"
}

cmd_status() {
    local n pid endpoints=() down=0 rc=0
    need_bin
    for ((n = 1; n <= NODES; n++)); do
        load_args "$n"
        pid="$(pid_of "$n")"
        if is_alive "$n"; then
            printf 'node %s  running  pid %-7s grpc %s  http %s  raft %s\n' "$n" "$pid" \
                "$(arg_value --grpc-addr)" "$(arg_value --http-addr)" "$(arg_value --raft-addr)"
            endpoints+=(--endpoint "http://$(arg_value --grpc-addr)")
        elif [[ -n "$pid" ]]; then
            printf 'node %s  dead     pid %-7s (killed or crashed; log %s)\n' "$n" "$pid" "$(log_file "$n")"
            down=1
        else
            printf 'node %s  stopped\n' "$n"
            down=1
        fi
    done
    if ((${#endpoints[@]})); then
        echo
        "$bin" cluster status "${endpoints[@]}" --timeout "${ENDURE_STATUS_TIMEOUT:-5}" "$@" || rc=$?
    fi
    if ((down)); then
        return 3
    fi
    return "$rc"
}

cmd_kill() {
    local n="${1:-}"
    check_node "$n"
    if ! is_alive "$n"; then
        die "node $n is not running"
    fi
    kill -KILL "$(pid_of "$n")"
    echo "node $n: killed (SIGKILL) pid $(pid_of "$n")"
}

cmd_restart() {
    local n="${1:-}"
    check_node "$n"
    need_bin
    if [[ ! -f "$(argv_file "$n")" ]]; then
        die "node $n was never started in $cluster_dir (use '$prog start')"
    fi
    if is_alive "$n"; then
        stop_nodes "$n"
    fi
    start_node "$n"
    wait_ready "$n"
}

cmd_logs() {
    local n="${1:-}" log
    check_node "$n"
    shift
    log="$(log_file "$n")"
    [[ -f "$log" ]] || die "no log for node $n at $log"
    if (($#)); then
        tail "$@" -- "$log"
    else
        tail -n 100 -- "$log"
    fi
}

cmd_clean() {
    local n
    cmd_stop
    for ((n = 1; n <= NODES; n++)); do
        rm -rf -- "$(node_dir "$n")"
    done
    rmdir -- "$cluster_dir" 2>/dev/null || true
    echo "removed the nodes' data and logs under $cluster_dir"
}

command="${1:-}"
if (($#)); then
    shift
fi
case "$command" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    kill) cmd_kill "$@" ;;
    restart) cmd_restart "$@" ;;
    logs) cmd_logs "$@" ;;
    clean) cmd_clean ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
esac
