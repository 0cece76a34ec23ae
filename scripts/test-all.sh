#!/usr/bin/env bash
# Runs every test of Endure: the Rust workspace (unit, scenario, storage conformance and
# integration tests against the real binary), then the compatibility suites that run the
# real Dapr Python SDK and the durabletask-dapr e2e suite against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/endure-target}"

echo "== cargo clippy: every crate and target, warnings are errors (release profile, so the"
echo "   dependencies built for the tests are reused)"
cargo clippy --release --locked --workspace --all-targets -- -D warnings

echo "== cargo test (release profile: the one profile we build)"
cargo build --release --locked -p endure
# The default members: everything but the chaos suite, whose own unit tests (the
# checkers on synthetic histories) run next.
cargo test --release --locked
cargo test --release --locked -p endure-chaos

export ENDURE_BIN="$CARGO_TARGET_DIR/release/endure"
# The TLS tests of the compatibility suite make their certificates with this.
cargo build --release --locked -p endure-tls --features testing --example test-certs

echo "== Dapr Python SDK compatibility suite (dapr-ext-workflow), one node and three"
bash tests/compat/run_compat.sh

echo "== peer suite: durabletask-dapr 0.17.4 e2e tests"
bash tests/compat/run_peer_suite.sh

echo "== deploy/: manifests agree with the binary; the local cluster script works"
bash tests/deploy/run.sh

echo "== load driver smoke: endure-bench on one node and on three"
cargo build --release --locked -p endure-bench
bash scripts/bench-smoke.sh

echo "== flood smoke: an open-loop gRPC flood at 10x a node's capacity gets only OK and"
echo "   RESOURCE_EXHAUSTED, and the node stays up (figures: bench/RESULTS.md, Overload)"
(cd bench && python3 flood.py --binary "$ENDURE_BIN" --seconds 5 --capacity-seconds 3 \
  --serve-arg=--max-pending-proposals=64)

echo "== chaos smoke: kill, pause and partition, ${CHAOS_SMOKE_SECS:=60} s each, on three real nodes"
cargo build --release --locked -p endure-chaos
bash scripts/chaos-smoke.sh "$CHAOS_SMOKE_SECS"

echo "== all tests passed"
