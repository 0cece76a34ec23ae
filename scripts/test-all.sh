#!/usr/bin/env bash
# Runs every test of Endure: the Rust workspace (unit, scenario, storage conformance and
# integration tests against the real binary), then the compatibility suites that run the
# real Dapr Python SDK and the durabletask-dapr e2e suite against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/endure-target}"

echo "== cargo test (release profile: the one profile we build)"
cargo build --release --locked -p endure
cargo test --release --locked --workspace

export ENDURE_BIN="$CARGO_TARGET_DIR/release/endure"

echo "== Dapr Python SDK compatibility suite (dapr-ext-workflow), one node and three"
bash tests/compat/run_compat.sh

echo "== peer suite: durabletask-dapr 0.17.4 e2e tests"
bash tests/compat/run_peer_suite.sh

echo "== deploy/: manifests agree with the binary; the local cluster script works"
bash tests/deploy/run.sh

echo "== all tests passed"
