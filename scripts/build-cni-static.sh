#!/usr/bin/env bash
# Builds the CNI plugin `l2sm-cni` as a static executable and prints its path (the only line
# on stdout; cargo's output goes to stderr). The one way to build it: the Dockerfile,
# scripts/test.sh and the CNI tests all call this script.
#
# Multus (thick) runs the plugin in the host's root, where the C library may be older than
# the one it was built against (RHEL 8, Ubuntu 20.04, Amazon Linux 2): a static binary needs
# none. Only the host's glibc target is installed here (no musl), so this links glibc
# statically (`+crt-static`). The explicit `--target` keeps the flag off build scripts and
# proc-macros, and puts the result in its own directory (target/<triple>/release), apart from
# the workspace's ordinary (dynamic) build. The plugin uses nothing that needs glibc's NSS or
# dlopen at run time (no name lookups: it talks to the agent over a unix socket);
# crates/l2sm-cni/tests/static_binary.rs checks that, and that the result is static.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=$(rustc -vV | sed -n 's/^host: //p')
case "$triple" in
  *-linux-gnu) ;;
  *) echo "build-cni-static.sh: host target $triple is not a glibc Linux target" >&2; exit 1 ;;
esac
# Only for this build's target crates: RUSTFLAGS with --target does not reach build scripts.
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
exe=$(cargo build --release --locked --target "$triple" -p l2sm-cni --bin l2sm-cni \
  --message-format=json-render-diagnostics \
  | grep -o '"executable":"[^"]*/l2sm-cni"' | tail -n 1 | cut -d'"' -f4)
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  echo "build-cni-static.sh: cargo reported no l2sm-cni executable" >&2
  exit 1
fi
echo "$exe"
