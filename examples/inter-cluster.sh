#!/usr/bin/env bash
# Two clusters joined at layer 2, the shape of upstream's examples/inter-cluster-setup: each
# cluster has its nodes, its controller and its edge (NetworkEdgeDevice) on its first node; a
# provider controller joins the edges. The provider network `ping-network` exists in both
# clusters and at the provider; pod `ping` (cluster c1) and pod `pong` (cluster c2) share it.
# Each cluster's local network `blue`, same name, stays a LAN of its own.
# Usage (root): L2SM=target/release/l2sm examples/inter-cluster.sh
set -euo pipefail
l2sm() { "${L2SM:-l2sm}" --lab "${LAB:-example}" "$@"; }
# `! cmd` would not stop the script under `set -e`: this does when cmd unexpectedly works.
fails() { if "$@"; then echo "should have failed: $*" >&2; exit 1; fi; }
# A first frame can be lost while a userspace tunnel resolves its next hop: try a few times.
reaches() { for _ in 1 2 3 4 5; do l2sm lab exec "$1" -- ping -c1 -W1 -q "$2" >/dev/null && return 0; done; return 1; }
trap 'l2sm lab down' EXIT
l2sm lab up --clusters 2 --nodes 2
l2sm network create ping-network --provider     # at the provider, in c1 and c2, edges connected
l2sm attach --cluster c1 --node n2 --pod ping --network ping-network --ip 10.1.2.1/24
l2sm attach --cluster c2 --node n2 --pod pong --network ping-network --ip 10.1.2.2/24
reaches ping 10.1.2.2                           # c1 -> c2, through both edges
reaches pong 10.1.2.1                           # and back
l2sm network create blue                        # one local network per cluster
l2sm attach --cluster c1 --node n1 --pod blue1 --network blue --ip 10.20.0.1/24
l2sm attach --cluster c2 --node n1 --pod blue2 --network blue --ip 10.20.0.2/24
fails l2sm lab exec blue1 -- ping -c2 -W1 -q 10.20.0.2   # same name, different LANs
l2sm lab status
l2sm topology
l2sm network delete ping-network                # hops, both clusters, the provider
fails l2sm lab exec ping -- ping -c2 -W1 -q 10.1.2.2
echo "inter-cluster example: OK"
