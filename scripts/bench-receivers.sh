#!/usr/bin/env bash
# Pushes/s with 1, 2 and 3 receivers sharing one consumer (shared_order) against a real
# nats-server and Pushgateway. Not part of the test suite.
#   scripts/bench-receivers.sh [SCRAPES]     (default 600 scrapes of distinct groups)
# PROMRELAY_BIN picks the promrelay binary (default: target/release/promrelay, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
if [[ -z "${PROMRELAY_BIN:-}" ]]; then
    cargo build --release -p promrelay --bin promrelay
    export PROMRELAY_BIN="$target/release/promrelay"
fi
export SCRAPES="${1:-600}"
export PROMRELAY_TEST_LOG="${PROMRELAY_TEST_LOG:-info}"
cargo build -p promrelay-tests --bin receivers_bench
"$target/debug/receivers_bench"
