#!/usr/bin/env bash
# Runs the fuzz targets for longer than the test suite does (it runs each for 3 s), in a release
# build: the scrape parser, the batch reader, the wire decoder and the config loader.
#
#   scripts/fuzz.sh                  every target, 10 minutes each
#   scripts/fuzz.sh 3600 text wire   these targets, an hour each
#
# Environment: SEED (default: the date, so each day explores other inputs; printed for replay).
# A finding stops the run with exit 1; its input is in fuzz/findings/. Replay it with
#   target/release/promrelay-fuzz --replay fuzz/findings/FILE TARGET
# and, once fixed, move it into fuzz/regressions/TARGET/ so every test run checks it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-600}
shift || true
seed=${SEED:-$(date +%Y%m%d)}

cargo build --release -p promrelay-fuzz --bin promrelay-fuzz
target_dir="${CARGO_TARGET_DIR:-target}"
echo "fuzzing for ${seconds}s per target, seed $seed" >&2
exec "$target_dir/release/promrelay-fuzz" --seconds "$seconds" --seed "$seed" --hang-seconds 10 "$@"
