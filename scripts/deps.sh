#!/usr/bin/env bash
# Installs the Debian packages the lab and the tests need (idempotent; root).
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# tshark: the packet matcher of `l2sm lab ids` (docs/ids.md).
# etcd-server: the controller's --store etcd://… tests run a real etcd (3.4 on Debian 12);
# protobuf-compiler + libprotobuf-dev: the etcd client's gRPC code is generated at build time.
for pkg in openvswitch-switch openvswitch-common iproute2 iputils-ping tcpdump iperf3 ethtool procps containernetworking-plugins python3-venv curl dnsmasq-base graphviz tshark etcd-server protobuf-compiler libprotobuf-dev; do
  have "$pkg" || need+=("$pkg")
done
have shellcheck || need+=(shellcheck) # scripts/test.sh checks every shell script
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's init scripts may try to start a system-wide OVS; the lab runs its own.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
# cargo-deny checks licenses, bans and sources offline (scripts/test.sh); built once from
# crates.io, pinned so every machine checks with the same rules.
CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q " $CARGO_DENY_VERSION\$"; then
  echo "installing cargo-deny $CARGO_DENY_VERSION (once; a few minutes)"
  cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
fi
