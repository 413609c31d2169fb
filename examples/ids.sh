#!/usr/bin/env bash
# An IDS on a network's mirror port closes the loop: pod a sends a datagram a rule matches, the
# IDS raises a Suricata EVE alert and moves a to the quarantine network; b and c carry on.
# Usage (root): L2SM=target/release/l2sm examples/ids.sh
set -euo pipefail
l2sm() { "${L2SM:-l2sm}" --lab "${LAB:-example}" "$@"; }
fails() { if "$@"; then echo "should have failed: $*" >&2; exit 1; fi; }
work=$(mktemp -d)
trap 'l2sm lab down; rm -rf "$work"' EXIT
l2sm lab up --nodes 3
l2sm network create blue
l2sm network create quarantine
l2sm attach --node n1 --pod a --network blue --ip 10.10.0.1/24
l2sm attach --node n2 --pod b --network blue --ip 10.10.0.2/24
l2sm attach --node n3 --pod c --network blue --ip 10.10.0.3/24
l2sm attach --node n3 --pod honeypot --network quarantine --ip 10.10.0.2/24
cat > "$work/suricata.rules" <<'RULES'
# Suricata syntax, the subset of docs/ids.md
alert udp any any -> $HOME_NET 4444 (msg:"attack on 4444"; content:"attack"; nocase; sid:1000001; rev:1;)
alert icmp any any -> any any (msg:"ICMP echo to the honeypot address"; content:"quarantine-me"; sid:1000002;)
RULES
# The IDS runs in the foreground: here in the background until its first alert.
l2sm lab ids --network blue --rules "$work/suricata.rules" --var 'HOME_NET=[10.10.0.0/24]' \
  --quarantine-to quarantine --eve "$work/eve.json" --count 1 2> "$work/ids.log" &
ids=$!
until grep -q '; ready' "$work/ids.log"; do
  kill -0 "$ids" 2>/dev/null || { cat "$work/ids.log"; exit 1; }
  sleep 0.2
done
l2sm lab exec a -- ping -c1 -W2 10.10.0.2                      # harmless: no alert
l2sm lab exec a -- bash -c 'echo "an ATTACK" > /dev/udp/10.10.0.2/4444'
wait "$ids"
cat "$work/ids.log"
cat "$work/eve.json"                                           # one EVE alert, sid 1000001
l2sm lab status | sed -n '/QUARANTINED/,/^$/p'                 # a, the sid and the message
fails l2sm lab exec a -- ping -c1 -W1 10.10.0.3                # a is cut from blue …
l2sm lab exec a -- ip neigh flush all                         # 10.10.0.2 is the honeypot now
l2sm lab exec a -- ping -c1 -W2 10.10.0.2                      # … and a talks to it
l2sm lab exec b -- ping -c1 -W2 10.10.0.3                      # b and c carry on
echo "ids example: OK"
