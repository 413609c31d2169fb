#!/usr/bin/env bash
# A pod on two networks routes between them; detaching one network removes just that interface.
# Usage (root): L2SM=target/release/l2sm examples/router.sh
set -euo pipefail
l2sm() { "${L2SM:-l2sm}" --lab "${LAB:-example}" "$@"; }
# `! cmd` would not stop the script under `set -e`: this does when cmd unexpectedly works.
fails() { if "$@"; then echo "should have failed: $*" >&2; exit 1; fi; }
trap 'l2sm lab down' EXIT
l2sm lab up --nodes 2
l2sm network create blue
l2sm network create red
l2sm attach --node n1 --pod router --network blue --ip 10.10.0.254/24
l2sm attach --node n1 --pod router --network red  --ip 10.20.0.254/24   # becomes net2
l2sm attach --node n2 --pod a --network blue --ip 10.10.0.1/24
l2sm attach --node n2 --pod b --network red  --ip 10.20.0.1/24
l2sm lab exec router -- sysctl -qw net.ipv4.ip_forward=1
l2sm lab exec a -- ip route add 10.20.0.0/24 via 10.10.0.254
l2sm lab exec b -- ip route add 10.10.0.0/24 via 10.20.0.254
l2sm lab exec a -- ping -c1 -W2 10.20.0.1                     # routed through the router pod
l2sm detach --pod router --network red                         # just net2 goes away
fails l2sm lab exec a -- ping -c1 -W1 10.20.0.1
l2sm lab exec a -- ping -c1 -W2 10.10.0.254                   # blue still works
echo "router example: OK"
