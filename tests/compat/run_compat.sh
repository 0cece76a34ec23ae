#!/usr/bin/env bash
# Run the main Dapr Workflow compatibility suite (tests/compat) with the real Dapr Python
# SDK (dapr-ext-workflow, pinned in requirements.txt) against the real endure binary.
#
#   tests/compat/run_compat.sh [extra pytest args...]
#
# Environment:
#   ENDURE_BIN         endure binary (default: $CARGO_TARGET_DIR/release/endure)
#   CARGO_TARGET_DIR   default: $HOME/.cache/endure-target
#   ENDURE_VENV_DIR    venv for the suite (default: $HOME/.cache/endure-venv)
#   PYTHON             interpreter used to create the venv (default: python3, needs >= 3.10)
#   JUNIT_XML          if set, write a JUnit XML report there
# Exit status: pytest's (non-zero on any failure, error, or if no test ran).
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

args=(-v -rfE --durations=15)
if [[ -n "${JUNIT_XML:-}" ]]; then
    args+=("--junitxml=$JUNIT_XML")
fi

echo "run_compat.sh: endure = $ENDURE_BIN"
cd "$root"
set +e
"$venv/bin/python" -m pytest "$here" "${args[@]}" "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "run_compat.sh: no test was collected" >&2
fi
exit $rc
