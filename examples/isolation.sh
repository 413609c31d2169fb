#!/usr/bin/env bash
# Two isolated networks across three nodes: same-network pods reach each other, others do not.
# Usage (root): L2SM=target/release/l2sm examples/isolation.sh
set -euo pipefail
l2sm() { "${L2SM:-l2sm}" --lab "${LAB:-example}" "$@"; }
# `! cmd` would not stop the script under `set -e`: this does when cmd unexpectedly works.
fails() { if "$@"; then echo "should have failed: $*" >&2; exit 1; fi; }
trap 'l2sm lab down' EXIT
l2sm lab up --nodes 3
l2sm network create blue
l2sm network create red
l2sm attach --node n1 --pod a --network blue --ip 10.10.0.1/24
l2sm attach --node n2 --pod b --network blue --ip 10.10.0.2/24
l2sm attach --node n3 --pod c --network red  --ip 10.10.0.3/24
l2sm lab exec a -- ping -c1 -W2 10.10.0.2                  # works, across nodes
fails l2sm lab exec a -- ping -c1 -W1 10.10.0.3                # fails: other network
l2sm lab status
l2sm detach --pod a
fails l2sm lab exec b -- ping -c1 -W1 10.10.0.1                # a is gone
echo "isolation example: OK"
