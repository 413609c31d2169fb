#!/usr/bin/env bash
# Lab measurements, each next to a baseline taken in the same run: `lab up` time, time from
# `attach` returning to the first successful cross-node ping, and iperf3 TCP throughput through
# the L2S-M pipeline (same node, across nodes) next to the same namespaces on a plain Linux bridge.
# Root; uses its own lab "bench" and namespaces l2sm-bench-*; removes everything at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
scripts/deps.sh
cargo build --release --locked --bin l2sm -q
L="target/release/l2sm --lab bench"
SECS=${SECS:-5}
cleanup() {
  $L lab down >/dev/null 2>&1 || true
  for ns in l2sm-bench-lb l2sm-bench-la l2sm-bench-lc; do ip netns del $ns 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }

echo "== lab up (3 nodes), 3 runs"
for i in 1 2 3; do
  t0=$(now); $L lab up --nodes 3 >/dev/null 2>&1; t1=$(now)
  echo "  run $i: $(ms "$t0" "$t1") ms"
  [ $i = 3 ] || $L lab down >/dev/null 2>&1
done

$L network create blue >/dev/null
$L attach --node n1 --pod a --network blue --ip 10.10.0.1/24 >/dev/null
$L attach --node n1 --pod b --network blue --ip 10.10.0.2/24 >/dev/null
$L attach --node n2 --pod c --network blue --ip 10.10.0.3/24 >/dev/null
$L lab exec a -- ping -c 2 -W 1 -q 10.10.0.2 >/dev/null
$L lab exec a -- ping -c 2 -W 1 -q 10.10.0.3 >/dev/null

echo "== attach -> first cross-node ping (pod on n3, pinged from n1), 3 pods"
for i in 4 5 6; do
  $L attach --node n3 --pod p$i --network blue --ip 10.10.0.$i/24 >/dev/null
  t0=$(now)
  out=$($L lab exec a -- ping -D -i 0.002 -c 1 -w 5 10.10.0.$i 2>/dev/null || true)
  first=$(echo "$out" | awk -F'[][]' '/bytes from/ { print $2; exit }')
  echo "  p$i: $(ms "$t0" "$first") ms"
done

iperf_pair() { # server-pod server-ip client-pod
  $L lab exec "$1" -- iperf3 -s -1 -D -p 5201 >/dev/null 2>&1; sleep 0.3
  $L lab exec "$3" -- iperf3 -c "$2" -p 5201 -t "$SECS" -f m 2>/dev/null | awk '/sender/ { print $(NF-3) }'
}
iperf_ns() {
  ip netns exec "$1" iperf3 -s -1 -D -p 5201 >/dev/null 2>&1; sleep 0.3
  ip netns exec "$3" iperf3 -c "$2" -p 5201 -t "$SECS" -f m 2>/dev/null | awk '/sender/ { print $(NF-3) }'
}

echo "== iperf3 TCP, $SECS s, one stream (Mbit/s)"
same=$(iperf_pair b 10.10.0.2 a)
cross=$(iperf_pair c 10.10.0.3 a)

# Baseline: the same kind of pod namespaces (veth, MTU 1450) on a plain Linux bridge.
ip netns add l2sm-bench-lb; ip netns add l2sm-bench-la; ip netns add l2sm-bench-lc
ip -n l2sm-bench-lb link add br0 type bridge; ip -n l2sm-bench-lb link set br0 up
for p in a c; do
  ip -n l2sm-bench-lb link add v$p mtu 1450 type veth peer name net1 mtu 1450 netns l2sm-bench-l$p
  ip -n l2sm-bench-lb link set v$p master br0 up
  ip -n l2sm-bench-l$p link set lo up; ip -n l2sm-bench-l$p link set net1 up
done
ip -n l2sm-bench-la addr add 10.20.0.1/24 dev net1
ip -n l2sm-bench-lc addr add 10.20.0.3/24 dev net1
ip netns exec l2sm-bench-la ping -c 1 -W 1 -q 10.20.0.3 >/dev/null
bridge=$(iperf_ns l2sm-bench-lc 10.20.0.3 l2sm-bench-la)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
printf '  %-34s %10s %10s\n' path Mbit/s "vs bridge"
printf '  %-34s %10s %10s\n' "L2S-M same node (OVS userspace)" "$same" "$(ratio "$same" "$bridge")"
printf '  %-34s %10s %10s\n' "L2S-M across nodes (VXLAN)" "$cross" "$(ratio "$cross" "$bridge")"
printf '  %-34s %10s %10s\n' "plain Linux bridge (kernel)" "$bridge" "1.000"
