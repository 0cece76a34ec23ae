#!/usr/bin/env bash
# Run the main Dapr Workflow compatibility suite (tests/compat) with the real Dapr Python
# SDK (dapr-ext-workflow, pinned in requirements.txt) against the real endure binary.
#
#   tests/compat/run_compat.sh [extra pytest args...]
#
# The suite runs twice: first against a single `endure serve`, then against a 3-node Raft
# cluster (ENDURE_CLUSTER_NODES=3: the SDK worker on one follower, the client on the
# other, test_crash_recovery kills the leader). Both runs always happen.
#
# Environment:
#   ENDURE_BIN          endure binary (default: $CARGO_TARGET_DIR/release/endure)
#   CARGO_TARGET_DIR    default: $HOME/.cache/endure-target
#   ENDURE_VENV_DIR     venv for the suite (default: $HOME/.cache/endure-venv)
#   PYTHON              interpreter used to create the venv (default: python3, needs >= 3.10)
#   JUNIT_XML           if set, write JUnit XML reports: the single-node run to $JUNIT_XML,
#                       the cluster run to $JUNIT_XML with "-cluster" before its extension
#   ENDURE_COMPAT_MODES modes to run, in order (default: "single cluster")
# Exit status: 0 if every mode passed; otherwise the first failing mode's pytest status
# (non-zero on any failure, error, or if no test ran). The failing modes are printed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${ENDURE_VENV_DIR:-$HOME/.cache/endure-venv}"
python="${PYTHON:-python3}"
export ENDURE_BIN="${ENDURE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/endure-target}/release/endure}"

if [[ ! -x "$ENDURE_BIN" ]]; then
    echo "run_compat.sh: endure binary not found at $ENDURE_BIN" >&2
    echo "  build it first (cargo build --release) or set ENDURE_BIN" >&2
    exit 2
fi

# (Re)create the venv and install the pinned requirements when they changed.
stamp="$venv/.endure-requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "run_compat.sh: creating venv $venv"
    "$python" -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    echo "run_compat.sh: installing $here/requirements.txt into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" > "$stamp"
fi

echo "run_compat.sh: endure = $ENDURE_BIN"
cd "$root"

# run_mode NAME: run the whole suite in one mode; sets mode_rc.
run_mode() {
    local mode="$1"
    local args=(-v -rfE --durations=15)
    local env_mode=()
    case "$mode" in
        single) env_mode=(env -u ENDURE_CLUSTER_NODES) ;;
        cluster) env_mode=(env ENDURE_CLUSTER_NODES=3) ;;
        *) echo "run_compat.sh: unknown mode '$mode' (single, cluster)" >&2; mode_rc=2; return ;;
    esac
    if [[ -n "${JUNIT_XML:-}" ]]; then
        local xml="$JUNIT_XML"
        if [[ "$mode" == cluster ]]; then
            if [[ "$xml" == *.* ]]; then xml="${xml%.*}-cluster.${xml##*.}"; else xml="$xml-cluster"; fi
        fi
        args+=("--junitxml=$xml")
    fi
    echo
    echo "run_compat.sh: ===== mode: $mode ====="
    local started=$SECONDS
    set +e
    "${env_mode[@]}" "$venv/bin/python" -m pytest "$here" "${args[@]}" "${extra[@]}"
    mode_rc=$?
    set -e
    if [[ $mode_rc -eq 5 ]]; then
        echo "run_compat.sh: no test was collected ($mode)" >&2
    fi
    summary+=("$mode: exit $mode_rc in $((SECONDS - started))s")
}

extra=("$@")
summary=()
failed=()
rc=0
for mode in ${ENDURE_COMPAT_MODES:-single cluster}; do
    run_mode "$mode"
    if [[ $mode_rc -ne 0 ]]; then
        failed+=("$mode")
        if [[ $rc -eq 0 ]]; then rc=$mode_rc; fi
    fi
done

echo
for line in "${summary[@]}"; do
    echo "run_compat.sh: $line"
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "run_compat.sh: FAILED in mode(s): ${failed[*]}" >&2
else
    echo "run_compat.sh: all modes passed"
fi
exit $rc
