#!/usr/bin/env bash
# Run the upstream end-to-end suite of durabletask-dapr 0.17.4 (the wire dialect used by
# dapr-ext-workflow 1.17.x) against the real endure binary.
#
#   tests/compat/run_peer_suite.sh [extra pytest args...]
#
# At test time it downloads the sdist (pip download --no-binary :all:), unpacks it in a
# temporary directory (nothing is written into the repository), installs it with its test
# dependencies into its OWN venv (durabletask-dapr needs protobuf < 7, dapr-ext-workflow
# 1.18.3 runs with protobuf 7, so the two are not mixed), starts endure on free ports via
# endure_server.py, and runs
#   pytest -m e2e tests/durabletask/test_orchestration_e2e.py tests/durabletask/test_orchestration_e2e_async.py
# with DAPR_GRPC_ENDPOINT=localhost:<port> (durabletask.internal.shared.get_default_host_address
# reads DAPR_GRPC_ENDPOINT first, then DAPR_GRPC_HOST/DAPR_RUNTIME_HOST + DAPR_GRPC_PORT,
# then localhost:4001).
#
# Environment:
#   ENDURE_BIN             endure binary (default: $CARGO_TARGET_DIR/release/endure)
#   CARGO_TARGET_DIR       default: $HOME/.cache/endure-target
#   ENDURE_PEER_VENV_DIR   venv (default: $HOME/.cache/endure-peer-venv)
#   PYTHON                 interpreter used to create the venv (default: python3)
#   JUNIT_XML              if set, write a JUnit XML report there
#   KEEP_WORK=1            keep the temporary directory (sdist, server log) afterwards
# Exit status: non-zero on any failure.
set -euo pipefail

PEER_PKG="durabletask-dapr"
PEER_VERSION="0.17.4"
# Test dependencies of the sdist's [dev] extra that the e2e tests need (the rest of [dev]
# is tox, ruff, pytest-cov and grpcio-tools, which the tests do not use), pinned.
PEER_TEST_DEPS=(pytest==8.4.2 pytest-asyncio==1.5.0 pytest-timeout==2.4.0)
PEER_TIMEOUT_S="${PEER_TIMEOUT_S:-300}"   # per test

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${ENDURE_PEER_VENV_DIR:-$HOME/.cache/endure-peer-venv}"
python="${PYTHON:-python3}"
export ENDURE_BIN="${ENDURE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/endure-target}/release/endure}"

if [[ ! -x "$ENDURE_BIN" ]]; then
    echo "run_peer_suite.sh: endure binary not found at $ENDURE_BIN" >&2
    echo "  build it first (cargo build --release) or set ENDURE_BIN" >&2
    exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/endure-peer.XXXXXX")"
cleanup() {
    if [[ "${KEEP_WORK:-0}" == "1" ]]; then
        echo "run_peer_suite.sh: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

if [[ ! -x "$venv/bin/python" ]]; then
    echo "run_peer_suite.sh: creating venv $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

echo "run_peer_suite.sh: downloading the $PEER_PKG==$PEER_VERSION source distribution"
"${pip[@]}" download --quiet --no-binary :all: --no-deps "$PEER_PKG==$PEER_VERSION" -d "$work/dl"
sdist="$(ls "$work"/dl/*.tar.gz)"
tar -xzf "$sdist" -C "$work"
src="$work/durabletask_dapr-$PEER_VERSION"
if [[ ! -f "$src/tests/durabletask/test_orchestration_e2e.py" ]]; then
    echo "run_peer_suite.sh: unexpected sdist layout in $sdist" >&2
    exit 2
fi

echo "run_peer_suite.sh: installing $PEER_PKG $PEER_VERSION and test deps into $venv"
"${pip[@]}" install --quiet "$src" "${PEER_TEST_DEPS[@]}"

args=(-m e2e -v -rfE -p no:cacheprovider --timeout="$PEER_TIMEOUT_S"
      tests/durabletask/test_orchestration_e2e.py
      tests/durabletask/test_orchestration_e2e_async.py)
if [[ -n "${JUNIT_XML:-}" ]]; then
    args+=("--junitxml=$JUNIT_XML")
fi

echo "run_peer_suite.sh: endure = $ENDURE_BIN"
cd "$src"
set +e
# endure_server.py starts endure on free ports with a fresh data dir under $TMPDIR, exports
# DAPR_GRPC_ENDPOINT=localhost:<port> to the command, stops endure afterwards and prints
# its log if anything failed.
TMPDIR="$work" "$venv/bin/python" "$here/endure_server.py" run --host-for-env localhost -- \
    "$venv/bin/python" -m pytest "${args[@]}" "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "run_peer_suite.sh: no test was collected" >&2
fi
exit $rc
