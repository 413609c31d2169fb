#!/usr/bin/env bash
# Link health without sidecars: the controller's own LLDP probes give latency, jitter and loss
# per link and direction; 20 ms of netem on one direction of one link shows on that direction
# only (skipped, with a note, on kernels without sch_netem/sch_prio); pictures of the topology,
# coloured by health.
# Usage (root; Graphviz installed: scripts/deps.sh): L2SM=target/release/l2sm examples/link-health.sh
set -euo pipefail
l2sm() { "${L2SM:-l2sm}" --lab "${LAB:-example}" "$@"; }
lab=${LAB:-example}
out=${OUT:-/tmp}
trap 'l2sm lab down' EXIT
l2sm lab up --nodes 3
sleep 12                                  # a few probes and echo round trips on every link
l2sm topology                             # every link, both directions: latency, jitter, loss
# 20 ms on VXLAN frames (UDP 7000) from n1 (10.250.0.1) to n2 only: on the underlay bridge's
# port towards n2; the control channel runs on another network and is not touched.
ul() { ip netns exec "l2sm-$lab-ul" "$@"; }
if ul tc qdisc add dev n2 root handle 1: prio 2>/dev/null &&
    ul tc qdisc add dev n2 parent 1:3 handle 30: netem delay 20ms 2>/dev/null; then
    ul tc filter add dev n2 parent 1: protocol ip prio 1 u32 \
        match ip src 10.250.0.1/32 match ip dport 7000 0xffff flowid 1:3
    sleep 20                              # the latency window (16 probes) refills
    l2sm topology | sed -n '/^LINKS/,/^NETWORKS/p'   # n1->n2 about 20 ms more, the rest unchanged
    ul tc qdisc change dev n2 parent 1:3 handle 30: netem loss 50%
    sleep 20
    l2sm topology | sed -n '/^LINKS/,/^NETWORKS/p'   # n1->n2 loses probes
else
    echo "this kernel has no sch_prio/sch_netem: no delay or loss injected" >&2
fi
l2sm topology --format svg -o "$out/l2sm-topology.svg"
l2sm topology --format png -o "$out/l2sm-topology.png"
echo "pictures: $out/l2sm-topology.svg and $out/l2sm-topology.png"
