#!/usr/bin/env bash
# The whole test suite. README's second command and `.ci/run` run exactly this.
#
# 1. builds the shipped WebAssembly filters (when scripts/build-filters.sh exists);
# 2. checks formatting and lints (warnings are errors);
# 3. runs every test of the workspace: unit, property, and the end-to-end tests against real
#    nats-server, Pushgateway, Prometheus and node_exporter on free loopback ports;
# 4. builds, installs, runs and purges the Debian package (scripts/test-deb.sh, as root);
# 5. checks and tests the guest workspaces (guest-sdk/, filters/) natively.
#
# Needs the Debian packages `.ci/run` installs. Debug builds only: no release build here.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

if [[ -f scripts/build-filters.sh ]]; then
    step "building the WebAssembly filters"
    bash scripts/build-filters.sh
fi

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# The end-to-end tests run the daemon as a child process: build it once here, and tell the tests
# where it is, so no test process has to invoke cargo itself.
step "cargo build -p promrelay --bin promrelay"
cargo build -p promrelay --bin promrelay
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$PWD/$target_dir"
export PROMRELAY_BIN="$target_dir/debug/promrelay"

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace"
    cargo nextest run --workspace --no-fail-fast
    step "cargo test --workspace --doc"
    cargo test --workspace --doc
else
    step "cargo test --workspace"
    cargo test --workspace --no-fail-fast
fi

# The Debian package of the debug binary built above: build, dpkg -i, run it, purge. Needs root and
# cargo-deb; prints SKIPPED without them (a failure when PROMRELAY_REQUIRE_DEB=1, as in CI).
step "scripts/test-deb.sh (the Debian package)"
bash scripts/test-deb.sh

# The guest side (the filter SDK and the shipped filters) lives in workspaces of its own, never
# built by the host's cargo commands; their unit tests run natively against the SDK's ABI stub.
for guest in guest-sdk filters; do
    [[ -f "$guest/Cargo.toml" ]] || continue
    step "$guest: fmt, clippy, test (native)"
    cargo fmt --all --check --manifest-path "$guest/Cargo.toml"
    cargo clippy --manifest-path "$guest/Cargo.toml" --all-targets -- -D warnings
    cargo test --manifest-path "$guest/Cargo.toml"
done

step "all tests passed"
