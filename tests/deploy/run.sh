#!/usr/bin/env bash
# Checks deploy/ (local cluster script, systemd unit and configs, Kubernetes manifests,
# Dockerfile) against the real endure binary: flags and TOML keys exist, ports agree,
# the sample configs form a working cluster, cluster.sh survives a kill -9 and a restart.
#
#   tests/deploy/run.sh [extra pytest args...]
#
# Environment:
#   ENDURE_BIN          endure binary (default: $CARGO_TARGET_DIR/release/endure)
#   CARGO_TARGET_DIR    default: $HOME/.cache/endure-target
#   ENDURE_DEPLOY_VENV  venv for these tests (default: $HOME/.cache/endure-deploy-venv)
#   PYTHON              interpreter that creates the venv (default: python3, needs >= 3.11)
#   JUNIT_XML           if set, write a JUnit XML report there
# Exit status: pytest's (non-zero on any failure, error, or if no test ran).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${ENDURE_DEPLOY_VENV:-$HOME/.cache/endure-deploy-venv}"
python="${PYTHON:-python3}"
export ENDURE_BIN="${ENDURE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/endure-target}/release/endure}"

if [[ ! -x "$ENDURE_BIN" ]]; then
    echo "run.sh: endure binary not found at $ENDURE_BIN" >&2
    echo "  build it first (cargo build --release -p endure) or set ENDURE_BIN" >&2
    exit 2
fi

# (Re)create the venv and install the pinned requirements when they changed.
stamp="$venv/.endure-requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "run.sh: $python is older than 3.11 (tomllib); set PYTHON" >&2
        exit 2
    fi
    echo "run.sh: creating venv $venv"
    "$python" -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    echo "run.sh: installing $here/requirements.txt into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" >"$stamp"
fi

args=(-v -rfEs -p no:cacheprovider)
if [[ -n "${JUNIT_XML:-}" ]]; then
    args+=("--junitxml=$JUNIT_XML")
fi

echo "run.sh: endure = $ENDURE_BIN"
cd "$root"
set +e
"$venv/bin/python" -m pytest "$here" "${args[@]}" "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "run.sh: no test was collected" >&2
fi
exit $rc
