#!/usr/bin/env bash
# Runs every check and test of the project. Needs root (lab tests use namespaces and OVS).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh must run as root: the lab tests create network namespaces and run Open vSwitch" >&2
  exit 1
fi
scripts/deps.sh
echo "== format"
cargo fmt --all -- --check
echo "== licenses, bans, sources (cargo deny, offline)"
# Errors only: duplicate versions are warnings (see them with `cargo deny check bans`).
cargo deny --offline --locked --log-level error check licenses bans sources
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== manifests"
scripts/validate-manifests.sh
echo "== tests"
# Tests of one crate run the binaries of others (the lab runs `l2sm`, CNI tests run both):
# cargo builds a package's own binaries for its tests only, so build them all first.
cargo build --workspace --bins --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
