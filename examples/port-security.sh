#!/usr/bin/env bash
# Port security: pods send only from their own MAC and addresses. A pod that takes another MAC,
# or another pod's IP, reaches no one; put back, it works again. A pod may opt out.
# Usage (root): L2SM=target/release/l2sm examples/port-security.sh
set -euo pipefail
l2sm() { "${L2SM:-l2sm}" --lab "${LAB:-example}" "$@"; }
# `! cmd` would not stop the script under `set -e`: this does when cmd unexpectedly works.
fails() { if "$@"; then echo "should have failed: $*" >&2; exit 1; fi; }
trap 'l2sm lab down' EXIT
l2sm lab up --nodes 2
l2sm network create sec --cidr 10.20.0.0/24 --port-security
l2sm attach --node n1 --pod a --network sec --ip 10.20.0.1/24
l2sm attach --node n2 --pod b --network sec --ip 10.20.0.2/24
l2sm attach --node n2 --pod c --network sec --ip 10.20.0.3/24
l2sm attach --node n1 --pod d --network sec --ip 10.20.0.4/24 --port-security off
l2sm lab exec c -- ping -c1 -W2 10.20.0.1                       # works: its own MAC and IP
# c takes another MAC: its frames are dropped at its switch port.
mac=$(l2sm lab exec c -- ip -o link show net1 | awk '{ for (i = 1; i < NF; i++) if ($i == "link/ether") print $(i + 1) }')
l2sm lab exec c -- ip link set net1 address 02:66:66:66:66:66
l2sm lab exec c -- ip neigh flush all
fails l2sm lab exec c -- ping -c1 -W1 10.20.0.1
l2sm lab exec c -- ip link set net1 address "$mac"
# c takes b's IP instead: dropped too (a's ARP cache is not told otherwise).
l2sm lab exec c -- ip addr add 10.20.0.2/32 dev net1
fails l2sm lab exec c -- ping -c1 -W1 -I 10.20.0.2 10.20.0.1
l2sm lab exec c -- ip addr del 10.20.0.2/32 dev net1
l2sm lab exec c -- ping -c1 -W2 10.20.0.1                       # put back: works again
l2sm lab exec b -- ping -c1 -W2 10.20.0.1                       # b was never affected
# d opted out: it may use another address.
l2sm lab exec d -- ip addr add 10.20.0.44/32 dev net1
l2sm lab exec d -- ping -c1 -W2 -I 10.20.0.44 10.20.0.2
echo "port security example: OK"
