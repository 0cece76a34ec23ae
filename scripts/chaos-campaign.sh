#!/usr/bin/env bash
# The long chaos campaign behind jepsen/RESULTS.md (not run in CI):
#   scripts/chaos-campaign.sh OUT COMPOSITE_RUNS COMPOSITE_SECS SINGLE_RUNS SINGLE_SECS [FIRST_SEED]
# COMPOSITE_RUNS runs of `--nemesis all`, then SINGLE_RUNS runs of each nemesis alone, with
# consecutive seeds, on a server built with `--features chaos` (for clock and failpoints):
#   cargo build --release -p endure --features chaos && cp $target/release/endure /tmp/endure-chaos-node
# NEMESES="clock wipe" picks the single nemeses (and their order). Several campaigns may run
# at once into different OUT directories (the harness picks free ports; a port taken
# between its pick and a node's bind shows as an `unknown` run, never as a pass).
# Prints one line per run and a markdown summary at the end; every run directory is kept.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?run directory}"; composite_runs="${2:-20}"; composite_secs="${3:-300}"
single_runs="${4:-5}"; single_secs="${5:-60}"; seed="${6:-1000}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/endure-target}"
node_bin="${ENDURE_CHAOS_NODE_BIN:-/tmp/endure-chaos-node}"
mkdir -p "$out"
run() {  # nemesis secs seed
  local dir="$out/$1-$3"
  "$target/release/endure-chaos" run --nemesis "$1" --time-limit "$2" --seed "$3" \
    --endure-bin "$node_bin" --out "$dir" > "$dir.stdout" 2>&1
  echo "$1 seed=$3 exit=$? $(tail -n 1 "$dir.stdout")"
}
for ((i = 0; i < composite_runs; i++)); do run all "$composite_secs" $((seed++)); done
for nemesis in ${NEMESES:-kill kill-all pause partition clock disk wipe}; do
  for ((i = 0; i < single_runs; i++)); do run "$nemesis" "$single_secs" $((seed++)); done
done
python3 - "$out" <<'PY'
import glob, json, sys, collections
rows = collections.OrderedDict()
for path in sorted(glob.glob(sys.argv[1] + "/**/results.json", recursive=True)):
    r = json.load(open(path))
    key = r["flags"]["nemesis"]
    row = rows.setdefault(key, dict(runs=0, secs=0, ops=0, installed=0, skipped=0, valid=0, invalid=[], unknown=[]))
    row["runs"] += 1
    row["secs"] += r["flags"]["time_limit"]
    row["ops"] += sum(c.get("invoke", 0) for f, c in r["op_counts"].items() if f not in ("nemesis", "cluster-status"))
    for event in r["nemesis_timeline"]:
        if event.get("type") == "ok":
            row["installed" if event.get("outcome") == "installed" else "skipped"] += 1
    verdict = r["valid"]
    if verdict is True:
        row["valid"] += 1
    elif verdict is False:
        bad = [p["property"] for p in r["properties"] if p["verdict"]["valid"] == "false"]
        row["invalid"].append(f'seed {r["seed"]}: {",".join(bad)}')
    else:
        row["unknown"].append(f'seed {r["seed"]}')
print("| nemesis | runs | seconds | client ops | faults installed | skipped | valid | invalid | unknown |")
print("|---|---|---|---|---|---|---|---|---|")
for key, row in rows.items():
    print(f'| {key} | {row["runs"]} | {row["secs"]} | {row["ops"]} | {row["installed"]} | {row["skipped"]} | {row["valid"]} | {"; ".join(row["invalid"]) or 0} | {"; ".join(row["unknown"]) or 0} |')
PY
