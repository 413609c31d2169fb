#!/usr/bin/env bash
# Controller benchmarks (docs/benchmarks-controller.md): 1,000 synthetic OpenFlow switches x 10
# networks (convergence after controller start, RSS, CPU, restart), one ovs-vswitchd with 100
# bridges, flow programming rate next to `ovs-ofctl add-flows`, cold start, the same 1,000
# switches over TLS, and REST latency plain vs TLS (`l2sm-bench api`).
# Root (real OVS under /run/l2sm-bench-*); everything it starts is removed at the end.
# Extra arguments go to `l2sm-bench all`, e.g. `--json` for the machine-readable report.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
scripts/deps.sh >&2
cargo build --release --locked -p l2sm -p l2sm-bench -q
T=${CARGO_TARGET_DIR:-target}/release
exec "$T/l2sm-bench" --l2sm "$T/l2sm" all "$@"
