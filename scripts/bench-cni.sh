#!/usr/bin/env bash
# CNI ADD (and DEL) latency, from exec of the plugin to its result, over N pods (default 200)
# on one node: l2sm-cni through the node agent of a 1-node lab, next to Debian's reference
# `bridge` plugin with `host-local` IPAM on the same machine in the same run (its bridge in a
# namespace of its own, never in the host's). Both loops run inside one shell in the plugin's
# node namespace, timed with bash's $EPOCHREALTIME (no fork for the clock), so the numbers hold
# only the plugin's own exec and work.
# Root; uses lab "benchcni" and namespaces l2sm-benchcni-*; removes everything, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
scripts/deps.sh
if [ ! -x /usr/lib/cni/bridge ] || [ ! -x /usr/lib/cni/host-local ]; then
  echo "installing: containernetworking-plugins"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containernetworking-plugins >/dev/null
fi
N=${N:-200}
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
cargo build --release --locked -q --bin l2sm --bin l2sm-cni
LAB=benchcni
L="$TARGET/release/l2sm --lab $LAB"
CNI=$TARGET/release/l2sm-cni
TMP=
cleanup() {
  [ -n "${KEEP:-}" ] || $L lab down >/dev/null 2>&1 || true
  [ -z "$TMP" ] || rm -rf "$TMP"
}
trap cleanup EXIT
cleanup
TMP=$(mktemp -d)

$L lab up --nodes 1 >/dev/null
$L network create blue >/dev/null
NODE=l2sm-$LAB-n1
BHOST=l2sm-$LAB-bh
ip netns add "$BHOST"
for i in $(seq 1 "$N"); do
  ip netns add "l2sm-$LAB-p-l$i"
  ip netns add "l2sm-$LAB-p-b$i"
done

# Runs ADD (or DEL) for pods 1..N with a configuration printf'd from a template that takes
# i/250 and i%250+1 (an address per pod); prints "t0 t1" per call.
# Arguments: netns plugin template pod-prefix command output-dir.
run_loop() {
  # shellcheck disable=SC2016 # the loop is a script of its own, expanded by the inner bash
  ip netns exec "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C bash -c '
    plugin=$1 template=$2 prefix=$3 cmd=$4 n=$5 out=$6
    for ((i = 1; i <= n; i++)); do
      printf -v conf "$template" $((i / 250)) $((i % 250 + 1))
      t0=$EPOCHREALTIME
      CNI_COMMAND=$cmd CNI_CONTAINERID=bench$i CNI_NETNS=/run/netns/$prefix$i CNI_IFNAME=net1 \
        CNI_PATH=/usr/lib/cni CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p$i" \
        "$plugin" <<<"$conf" >"$out/$cmd-$i.json" || { echo "$cmd $i failed: $(cat "$out/$cmd-$i.json")" >&2; exit 1; }
      t1=$EPOCHREALTIME
      echo "$t0 $t1"
    done' _ "$2" "$3" "$4" "$5" "$N" "$6"
}

# p50 and p99 (nearest rank) of "t0 t1" lines, in ms; optional line range FROM TO.
percentiles() {
  awk -v from="${2:-1}" -v to="${3:-1000000000}" 'NR >= from && NR <= to { printf "%.3f\n", ($2 - $1) * 1000 }' "$1" |
    sort -n | awk '
    { v[NR] = $1 }
    END { p50 = v[int((NR * 50 + 99) / 100)]; p99 = v[int((NR * 99 + 99) / 100)]; printf "%s %s\n", p50, p99 }'
}

L2SM_CONF='{"cniVersion":"1.0.0","name":"l2sm-blue","type":"l2sm","network":"blue","agentSocket":"/run/l2sm/lab/'$LAB'/n1/agent.sock","capabilities":{"ips":true},"runtimeConfig":{"ips":["10.60.%d.%d/16"]}}'
BRIDGE_CONF='{"cniVersion":"1.0.0","name":"bench-bridge","type":"bridge","bridge":"benchcnibr0","ipam":{"type":"host-local","subnet":"10.61.0.0/16","dataDir":"'$TMP/host-local'"}}%.0s%.0s'

mkdir -p "$TMP/l2sm" "$TMP/bridge"
echo "== $N CNI ADDs, then $N DELs, one node"
# The floor: exec of each binary answering VERSION.
run_loop "$NODE" "$CNI" "$L2SM_CONF" "l2sm-$LAB-p-l" VERSION "$TMP/l2sm" >"$TMP/l2sm-version"
run_loop "$BHOST" /usr/lib/cni/bridge "$BRIDGE_CONF" "l2sm-$LAB-p-b" VERSION "$TMP/bridge" >"$TMP/bridge-version"
run_loop "$NODE" "$CNI" "$L2SM_CONF" "l2sm-$LAB-p-l" ADD "$TMP/l2sm" >"$TMP/l2sm-add"
run_loop "$BHOST" /usr/lib/cni/bridge "$BRIDGE_CONF" "l2sm-$LAB-p-b" ADD "$TMP/bridge" >"$TMP/bridge-add"
ok=$(grep -l '"sandbox"' "$TMP"/l2sm/ADD-*.json | wc -l)
okb=$(grep -l '"sandbox"' "$TMP"/bridge/ADD-*.json | wc -l)
if [ "$ok" != "$N" ] || [ "$okb" != "$N" ]; then
  echo "not every ADD returned a result ($ok, $okb of $N)" >&2
  exit 1
fi
ports=$(ovs-vsctl --db=unix:/run/l2sm/lab/$LAB/n1/db.sock list-ports "$(ovs-vsctl --db=unix:/run/l2sm/lab/$LAB/n1/db.sock list-br | grep '^br-' | grep -v br-phy)" | grep -c '^ls' || true)
[ "$ports" = "$N" ] || { echo "expected $N pod ports on the switch, found $ports" >&2; exit 1; }
# Both data paths work: first and last pod of each answer a ping from a neighbour.
ip netns exec "l2sm-$LAB-p-l1" ping -c 1 -W 2 -q 10.60.$((N / 250)).$((N % 250 + 1)) >/dev/null
run_loop "$NODE" "$CNI" "$L2SM_CONF" "l2sm-$LAB-p-l" DEL "$TMP/l2sm" >"$TMP/l2sm-del"
run_loop "$BHOST" /usr/lib/cni/bridge "$BRIDGE_CONF" "l2sm-$LAB-p-b" DEL "$TMP/bridge" >"$TMP/bridge-del"

tenth=$(((N + 9) / 10))
read -r lv50 lv99 < <(percentiles "$TMP/l2sm-version")
read -r bv50 bv99 < <(percentiles "$TMP/bridge-version")
read -r lf50 _ < <(percentiles "$TMP/l2sm-add" 1 "$tenth")
read -r ll50 _ < <(percentiles "$TMP/l2sm-add" $((N - tenth + 1)) "$N")
read -r bf50 _ < <(percentiles "$TMP/bridge-add" 1 "$tenth")
read -r bl50 _ < <(percentiles "$TMP/bridge-add" $((N - tenth + 1)) "$N")
read -r la50 la99 < <(percentiles "$TMP/l2sm-add")
read -r ba50 ba99 < <(percentiles "$TMP/bridge-add")
read -r ld50 ld99 < <(percentiles "$TMP/l2sm-del")
read -r bd50 bd99 < <(percentiles "$TMP/bridge-del")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
printf '  %-44s %9s %9s\n' "" "p50 ms" "p99 ms"
printf '  %-44s %9s %9s\n' "ADD l2sm-cni (agent, OVS port, controller)" "$la50" "$la99"
printf '  %-44s %9s %9s\n' "ADD bridge + host-local (reference)" "$ba50" "$ba99"
printf '  %-44s %9s %9s\n' "ADD ratio l2sm / bridge" "$(ratio "$la50" "$ba50")" "$(ratio "$la99" "$ba99")"
printf '  %-44s %9s %9s\n' "ADD l2sm-cni, first / last $tenth pods (p50)" "$lf50" "$ll50"
printf '  %-44s %9s %9s\n' "ADD bridge, first / last $tenth pods (p50)" "$bf50" "$bl50"
printf '  %-44s %9s %9s\n' "DEL l2sm-cni" "$ld50" "$ld99"
printf '  %-44s %9s %9s\n' "DEL bridge + host-local" "$bd50" "$bd99"
printf '  %-44s %9s %9s\n' "DEL ratio l2sm / bridge" "$(ratio "$ld50" "$bd50")" "$(ratio "$ld99" "$bd99")"
printf '  %-44s %9s %9s\n' "VERSION l2sm-cni (exec floor)" "$lv50" "$lv99"
printf '  %-44s %9s %9s\n' "VERSION bridge (exec floor)" "$bv50" "$bv99"
