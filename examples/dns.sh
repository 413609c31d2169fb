#!/usr/bin/env bash
# Names on networks: the lab's controller answers <pod>.<network>.l2sm from its own state, the
# moment an attach returns, and forgets the name the moment the detach returns (docs/dns.md).
# Pods ask it themselves through their network's DNS address (a network with a CIDR has one:
# its last usable host, 10.10.0.254 here); each lab pod's resolv.conf names it, and only the
# pod's own network's names exist there.
# Usage (root): L2SM=target/debug/l2sm examples/dns.sh
set -euo pipefail
l2sm() { "${L2SM:-l2sm}" --lab "${LAB:-example}" "$@"; }
# `! cmd` would not stop the script under `set -e`: this does when cmd unexpectedly works.
fails() { if "$@"; then echo "should have failed: $*" >&2; exit 1; fi; }
trap 'l2sm lab down' EXIT
l2sm lab up --nodes 2
l2sm network create blue --cidr 10.10.0.0/24
l2sm network create red --cidr 10.20.0.0/24
l2sm network list                                 # blue's DNS column: 10.10.0.254
l2sm attach --node n1 --pod a --network blue --ip 10.10.0.1/24
l2sm attach --node n2 --pod b --network blue --ip 10.10.0.2/24
l2sm attach --node n2 --pod r --network red --ip 10.20.0.1/24
fails l2sm attach --node n1 --pod z --network blue --ip 10.10.0.254/24   # reserved for DNS

# From the lab's underlay namespace (scripting).
l2sm dns lookup b.blue.l2sm                      # b.blue.l2sm. 5 A 10.10.0.2
l2sm dns lookup --type PTR 10.10.0.1             # ... PTR a.blue.l2sm.
fails l2sm dns lookup example.com                 # refused: not a resolver
# Any DNS client in the controller's namespace works too (dig, if installed).
if command -v dig >/dev/null; then
    l2sm lab exec underlay -- dig +short @10.250.0.254 a.blue.l2sm
fi

# From inside the pods, on the network itself (glibc, the pod's resolv.conf).
l2sm lab exec a -- getent hosts b.blue.l2sm        # 10.10.0.2  b.blue.l2sm
l2sm lab exec a -- getent hosts b                  # the same: search blue.l2sm
l2sm lab exec a -- getent hosts 10.10.0.2          # PTR: b.blue.l2sm
fails l2sm lab exec r -- getent hosts b.blue.l2sm  # NXDOMAIN from red
l2sm lab exec r -- getent hosts r.red.l2sm         # 10.20.0.1  r.red.l2sm

l2sm detach --pod b
fails l2sm dns lookup b.blue.l2sm                 # NXDOMAIN: gone with the detach
fails l2sm lab exec a -- getent hosts b.blue.l2sm  # gone from inside too
echo "dns example: OK"
