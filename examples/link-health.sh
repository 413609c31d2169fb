#!/usr/bin/env bash
# Link health without sidecars: the controller's own LLDP probes give latency, jitter and loss
# per link and direction; 20 ms of netem on one direction of one link shows on that direction
# only; a picture of the topology, coloured by health.
# Usage (root; Graphviz installed: scripts/deps.sh): L2SM=target/release/l2sm examples/link-health.sh
set -euo pipefail
l2sm() { "${L2SM:-l2sm}" --lab "${LAB:-example}" "$@"; }
lab=${LAB:-example}
trap 'l2sm lab down' EXIT
l2sm lab up --nodes 3
sleep 12                                  # a few probes and echo round trips on every link
l2sm topology                             # every link, both directions: latency, jitter, loss
# Inject 20 ms on VXLAN frames from n1 to n2 only (the underlay bridge's port towards n2).
n1=$(l2sm lab status | awk '$1 == "n1" { print $2; exit }')
n1=${n1:-10.250.0.1}
ul() { ip netns exec "l2sm-$lab-ul" "$@"; }
ul tc qdisc add dev n2 root handle 1: prio
ul tc qdisc add dev n2 parent 1:3 handle 30: netem delay 20ms
ul tc filter add dev n2 parent 1: protocol ip prio 1 u32 \
  match ip src "$n1/32" match ip dport 4789 0xffff flowid 1:3
sleep 20                                  # the latency window (16 probes) refills
l2sm topology | sed -n '/^LINKS/,/^NETWORKS/p'   # n1->n2 about 20 ms more, the rest unchanged
ul tc qdisc change dev n2 parent 1:3 handle 30: netem loss 50%
sleep 20
l2sm topology | sed -n '/^LINKS/,/^NETWORKS/p'   # n1->n2 loses probes
l2sm topology --format svg -o "${OUT:-/tmp}/l2sm-topology.svg"
l2sm topology --format png -o "${OUT:-/tmp}/l2sm-topology.png"
echo "pictures: ${OUT:-/tmp}/l2sm-topology.svg and .png (the n1--n2 link is orange)"
