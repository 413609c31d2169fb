#!/usr/bin/env bash
# Data-plane cost of port security: iperf3 throughput through the L2S-M pipeline with port
# security on, next to the same pipeline without it and to plain OVS `NORMAL`, all measured in
# the same run with interleaved repetitions (a burst of load from other jobs hits all alike).
#
#   scripts/bench-portsec.sh            5 repetitions of 5 s per system and path
#   REPS=3 SECS=3 scripts/bench-portsec.sh
#
# Root. Three labs of the same shape as scripts/bench.sh's data plane (pods a, b on node 1, c on
# node 2, MTU 1450, VXLAN between the nodes): bpsec (network created with --port-security, IPAM
# so each port's addresses are checked too), bplain (the same network without it) and bpnorm
# (every flow replaced by one NORMAL flow). Prints each run, the medians and the ratios; removes
# the labs at the end, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
SECS=${SECS:-5}
REPS=${REPS:-5}
scripts/deps.sh
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
echo "== building (release)"
cargo build --release --locked -q --bin l2sm --bin l2sm-cni
BIN=$TARGET/release
LABS="bpsec bplain bpnorm"
cleanup() {
  set +e
  for lab in $LABS; do "$BIN/l2sm" --lab "$lab" lab down >/dev/null 2>&1; done
}
trap cleanup EXIT
cleanup

lab_pods() { # lab [--port-security]
  local L="$BIN/l2sm --lab $1"
  # shellcheck disable=SC2086 # the flag, or nothing
  $L network create blue --cidr 10.10.0.0/24 ${2:-} >/dev/null
  $L attach --node n1 --pod a --network blue --ip 10.10.0.1/24 >/dev/null
  $L attach --node n1 --pod b --network blue --ip 10.10.0.2/24 >/dev/null
  $L attach --node n2 --pod c --network blue --ip 10.10.0.3/24 >/dev/null
}
lab_bridge() { # lab node
  ovs-vsctl --db=unix:"/run/l2sm/lab/$1/$2/db.sock" list-br | grep -v '^br-phy$'
}
to_normal() { # lab
  local n d br
  for n in n1 n2; do
    d=/run/l2sm/lab/$1/$n; br=$(lab_bridge "$1" $n)
    ovs-vsctl --db=unix:"$d/db.sock" del-controller "$br"
    OVS_RUNDIR=$d ovs-ofctl -O OpenFlow13 del-flows "$br"
    OVS_RUNDIR=$d ovs-ofctl -O OpenFlow13 del-groups "$br"
    OVS_RUNDIR=$d ovs-ofctl -O OpenFlow13 add-flow "$br" "priority=0,actions=NORMAL"
  done
}
drop_flows() { # lab node: port-security drop flows on the node's bridge (cookie 0x4c320050…)
  local d=/run/l2sm/lab/$1/$2
  OVS_RUNDIR=$d ovs-ofctl -O OpenFlow13 dump-flows "$(lab_bridge "$1" "$2")" table=0 |
    grep -c 'cookie=0x4c320050' || true
}
in_pod() { local lab=$1 pod=$2; shift 2; "$BIN/l2sm" --lab "$lab" lab exec "$pod" -- "$@"; }
iperf() { # lab server-pod server-ip client-pod: Mbit/s at the receiver
  in_pod "$1" "$2" iperf3 -s -1 -D -p 5201 >/dev/null 2>&1
  sleep 0.3
  in_pod "$1" "$4" iperf3 -c "$3" -p 5201 -t "$SECS" -f m 2>/dev/null | awk '/receiver/ { print $(NF-2) }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "== labs"
for lab in $LABS; do "$BIN/l2sm" --lab "$lab" lab up --nodes 2 >/dev/null; done
lab_pods bpsec --port-security
lab_pods bplain
lab_pods bpnorm
to_normal bpnorm
n=$(drop_flows bpsec n1)
[ "$n" -gt 0 ] || { echo "bpsec has no port-security drop flows on n1" >&2; exit 1; }
[ "$(drop_flows bplain n1)" = 0 ] || { echo "bplain has port-security flows" >&2; exit 1; }
echo "  bpsec n1: $n port-security drop flows"
for lab in $LABS; do # warm-up: ARP, learned MACs, tunnel ARP
  in_pod "$lab" a ping -c 3 -i 0.2 -W 2 -q 10.10.0.2 >/dev/null
  in_pod "$lab" a ping -c 3 -i 0.2 -W 2 -q 10.10.0.3 >/dev/null || { echo "$lab: no cross-node ping" >&2; exit 1; }
done

RES=$(mktemp -d)
echo "== iperf3: $REPS x $SECS s per system and path"
for ((r = 1; r <= REPS; r++)); do
  for lab in $LABS; do
    for path in same cross; do
      if [ $path = same ]; then v=$(iperf "$lab" b 10.10.0.2 a); else v=$(iperf "$lab" c 10.10.0.3 a); fi
      [ -n "$v" ] || { echo "$lab $path: iperf3 gave no result" >&2; exit 1; }
      echo "$v" >>"$RES/$lab.$path"
      echo "  run $r $lab $path: $v Mbit/s"
    done
  done
done
echo "== medians (Mbit/s) and ratios"
for path in same cross; do
  ps=$(median <"$RES/bpsec.$path"); pl=$(median <"$RES/bplain.$path"); no=$(median <"$RES/bpnorm.$path")
  awk -v p="$path" -v ps="$ps" -v pl="$pl" -v no="$no" 'BEGIN {
    printf "  %-5s port security %8.1f | pipeline %8.1f | NORMAL %8.1f | port security / NORMAL %.2fx | / pipeline %.2fx\n",
      p, ps, pl, no, ps / no, ps / pl }'
done
rm -rf "$RES"
