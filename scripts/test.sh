#!/usr/bin/env bash
# Runs every check and test of the project. Needs root (lab tests use namespaces and OVS).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh must run as root: the lab tests create network namespaces and run Open vSwitch" >&2
  exit 1
fi
# Each section says when it starts, so a slow step shows in CI's log.
section() { echo "== $1 (at ${SECONDS}s)"; }
scripts/deps.sh
section "format"
cargo fmt --all -- --check
section "licenses, bans, sources (cargo deny, offline)"
# Errors only: duplicate versions are warnings (see them with `cargo deny check bans`).
cargo deny --offline --locked --log-level error check licenses bans sources
section "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
section "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
section "manifests"
scripts/validate-manifests.sh
section "tests"
# A target marked `test = false` (no unit tests, so no empty harness to build) must stay
# without tests: one added there would never run.
for manifest in crates/*/Cargo.toml; do
  if grep -q '^test = false' "$manifest"; then
    crate=$(dirname "$manifest")
    if grep -rlE '#\[(tokio::)?test\b|#\[cfg\(test\)\]' "$crate/src" >/dev/null; then
      echo "$crate has tests in src/ but its Cargo.toml says test = false" >&2
      exit 1
    fi
  fi
done
# Tests of one crate run the binaries of others (the lab runs `l2sm`, CNI tests run both).
# Cargo builds a package's binaries for that package's integration tests, and every binary
# crate here has some (crates/l2sm/tests/cli.rs, crates/l2sm-cni/tests, ...), so one
# workspace build makes them all before any test runs; l2sm-test-support fails loudly if one
# is missing.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
section "done"
