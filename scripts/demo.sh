#!/usr/bin/env bash
# The lab demo: a 3-node emulated cluster, two isolated networks, pods on every node, the
# connectivity matrix (who reaches whom), then teardown. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/demo.sh must run as root (network namespaces, Open vSwitch)" >&2
  exit 1
fi
scripts/deps.sh
echo "== building (release)"
cargo build --release --locked --bin l2sm
L=target/release/l2sm
export L2SM_LAB=demo
trap '$L lab down' EXIT

$L lab up --nodes 3
$L network create blue
$L network create red
#        pod node network ip
PODS=("a n1 blue 10.10.0.1" "b n2 blue 10.10.0.2" "c n3 blue 10.10.0.3"
      "d n1 red 10.10.0.4"  "e n2 red 10.10.0.5"  "f n3 red 10.10.0.6")
for p in "${PODS[@]}"; do
  read -r pod node net ip <<<"$p"
  $L attach --node "$node" --pod "$pod" --network "$net" --ip "$ip/24"
done
echo
$L lab status
echo
echo "== connectivity matrix (ping from row to column; all pods share one IP subnet)"
tmp=$(mktemp -d)
for src in "${PODS[@]}"; do
  read -r s _ <<<"$src"
  for dst in "${PODS[@]}"; do
    read -r d _ _ ip <<<"$dst"
    [ "$s" = "$d" ] && continue
    ( if $L lab exec "$s" -- ping -c 3 -i 0.2 -W 1 -q "$ip" >/dev/null 2>&1; then echo ok; else echo "--"; fi ) >"$tmp/$s-$d" &
  done
done
wait
printf '%8s' ""
for dst in "${PODS[@]}"; do read -r d _ net _ <<<"$dst"; printf '%8s' "$d($net)"; done; echo
for src in "${PODS[@]}"; do
  read -r s _ net _ <<<"$src"; printf '%8s' "$s($net)"
  for dst in "${PODS[@]}"; do
    read -r d _ <<<"$dst"
    if [ "$s" = "$d" ]; then printf '%8s' "."; else printf '%8s' "$(cat "$tmp/$s-$d")"; fi
  done
  echo
done
rm -rf "$tmp"
echo
echo "same network: ok; across networks: -- (isolated). Tearing down."
