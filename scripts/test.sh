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
section "fetch crates"
# cargo deny reads every crate's metadata offline: on a fresh machine nothing is downloaded yet.
cargo fetch --locked
section "licenses, bans, sources (cargo deny, offline)"
# Errors only: duplicate versions are warnings (see them with `cargo deny check bans`).
cargo deny --offline --locked --log-level error check licenses bans sources
section "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
section "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
section "manifests"
scripts/validate-manifests.sh
section "shellcheck"
# Every shell script, found by its shebang (or a .sh name) among the files git tracks or
# would track, so a new script cannot escape.
mapfile -t shell_scripts < <(
  git ls-files --cached --others --exclude-standard | while IFS= read -r f; do
    [ -f "$f" ] || continue
    case "$f" in
      *.sh) echo "$f" ;;
      *) head -n 1 "$f" | grep -qE '^#!.*([/ ])(ba|da|k)?sh( |$)' && echo "$f" ;;
    esac
  done | sort -u
)
# A listing that found nothing (or missed this very script) would check nothing.
printf '%s\n' "${shell_scripts[@]}" | grep -qx scripts/test.sh || {
  echo "shellcheck: the script search did not find scripts/test.sh" >&2
  exit 1
}
echo "shellcheck: ${#shell_scripts[@]} scripts"
shellcheck --external-sources "${shell_scripts[@]}"
section "static CNI plugin"
# Built the one way the Dockerfile builds it (a static executable); every CNI test below runs
# this binary: crates/l2sm-cni/tests/static_binary.rs checks it has no interpreter, needs no
# shared library and runs in an empty root, and the CNI end-to-end tests run it in the lab.
L2SM_CNI_PLUGIN=$(scripts/build-cni-static.sh)
export L2SM_CNI_PLUGIN
# glibc's loader agrees (it says "statically linked" for a static-pie).
ldd_says=$(ldd "$L2SM_CNI_PLUGIN" 2>&1 || true) # exits 1 for a static executable
if ! grep -qE 'not a dynamic executable|statically linked' <<<"$ldd_says"; then
  echo "$L2SM_CNI_PLUGIN is not static: $ldd_says" >&2
  exit 1
fi
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
section "API fuzzing (schemathesis, loopback)"
# The REST API against its own OpenAPI document (scripts/api-fuzz.sh says what is checked),
# with the binary the tests above ran; bounded by its case count and a wall-clock limit.
L2SM_BIN="${CARGO_TARGET_DIR:-target}/debug/l2sm" scripts/api-fuzz.sh
section "image (buildah: Debian 12 base from debootstrap, smoke checks inside)"
# The release image from the Dockerfile, on a base made here from Debian's packages (cached
# in /var/cache/l2sm-image), smoke-run and written as an OCI archive (scripts/build-image.sh
# says what it checks). Cold about 3 minutes plus the release build, warm under a minute.
scripts/build-image.sh
# A broken Dockerfile line fails the script and leaves no container behind.
broken=$(mktemp -d)
sed 's/openvswitch-switch kmod/openvswitch-switch-no-such-package kmod/' Dockerfile >"$broken/Dockerfile"
grep -q no-such-package "$broken/Dockerfile" || { echo "the broken-Dockerfile check edits nothing" >&2; exit 1; }
containers_before=$(buildah containers --all --quiet | wc -l)
if scripts/build-image.sh --dockerfile "$broken/Dockerfile" --tag localhost/l2sm:broken-check \
  --output "$broken/image.tar" >"$broken/log" 2>&1; then
  echo "scripts/build-image.sh succeeded with a broken Dockerfile" >&2
  exit 1
fi
grep -q "openvswitch-switch-no-such-package" "$broken/log" || {
  echo "scripts/build-image.sh failed, but not at the broken line:" >&2
  tail -n 20 "$broken/log" >&2
  exit 1
}
[ "$(buildah containers --all --quiet | wc -l)" = "$containers_before" ] || {
  echo "scripts/build-image.sh left a container behind after a failed build" >&2
  exit 1
}
rm -rf "$broken"
echo "image: a broken Dockerfile line fails the build, no container left"
section "done"
