#!/usr/bin/env bash
# Cross-cluster data path against same-cluster cross-node, in the same run: iperf3 TCP
# throughput (one stream) and ping RTT, runs interleaved. A multi-cluster lab (2 clusters of 2
# nodes, userspace OVS): the edge of each cluster runs on its node n1, so
#   same cluster, across nodes:   c1-n1 -> c1-n2               (1 VXLAN tunnel)
#   across clusters, edge nodes:  c1-n1 -> c2-n1               (patch pair, edge VXLAN across the
#                                                                router, patch pair)
#   across clusters, other nodes: c1-n2 -> c2-n2               (3 tunnels: into the edge's node,
#                                                                between the edges, out of it)
# Root; uses its own lab "benchmc"; removes everything at the end.
# L2SM=path/to/l2sm to use a given build (the data path is OVS's; the build only changes how
# fast the lab comes up); otherwise a release build is made.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
if [ -z "${L2SM:-}" ]; then
  cargo build --release --locked --bin l2sm --bin l2sm-cni -q
  L2SM=target/release/l2sm
fi
L="$L2SM --lab benchmc"
SECS=${SECS:-5}
RUNS=${RUNS:-3}
cleanup() { $L lab down >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

$L lab up --clusters 2 --nodes 2 >/dev/null 2>&1
$L network create inter --provider >/dev/null
$L network create blue --cluster c1 >/dev/null
attach() { $L attach --cluster "$1" --node "$2" --pod "$3" --network "$4" --ip "$5/24" >/dev/null; }
attach c1 n1 la blue 10.40.0.1   # same cluster, across nodes
attach c1 n2 lb blue 10.40.0.2
attach c1 n1 ea inter 10.30.0.1  # edge node to edge node
attach c2 n1 eb inter 10.30.0.2
attach c1 n2 xa inter 10.30.0.3  # non-edge node to non-edge node
attach c2 n2 xb inter 10.30.0.4
warm() { for _ in 1 2 3 4 5; do $L lab exec "$1" -- ping -c 1 -W 1 -q "$2" >/dev/null 2>&1 && return 0; done; echo "no path $1 -> $2" >&2; exit 1; }
warm la 10.40.0.2; warm ea 10.30.0.2; warm xa 10.30.0.4

iperf_pair() { # client server-pod server-ip -> Mbit/s
  $L lab exec "$2" -- iperf3 -s -1 -D -p 5201 >/dev/null 2>&1; sleep 0.3
  $L lab exec "$1" -- iperf3 -c "$3" -p 5201 -t "$SECS" -f m 2>/dev/null | awk '/receiver/ { print $(NF-2) }'
}
rtt() { # client ip -> "median p99" in ms over 100 pings
  $L lab exec "$1" -- ping -i 0.05 -c 100 -q -W 1 "$2" >/dev/null 2>&1 || true
  $L lab exec "$1" -- ping -i 0.05 -c 100 -W 1 "$2" 2>/dev/null \
    | awk -F'time=' '/time=/ { split($2, a, " "); print a[1] }' | sort -n \
    | awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a n/a"; exit } m = v[int((NR + 1) / 2)]; p = v[int(NR * 0.99 + 0.5)]; print m, p }'
}
med() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] " (" v[1] "-" v[NR] ")" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

declare -a S E X
echo "== iperf3 TCP, $SECS s, one stream, $RUNS interleaved runs (Mbit/s)"
for i in $(seq "$RUNS"); do
  S+=("$(iperf_pair la lb 10.40.0.2)")
  E+=("$(iperf_pair ea eb 10.30.0.2)")
  X+=("$(iperf_pair xa xb 10.30.0.4)")
  echo "  run $i: same cluster ${S[-1]}, edge nodes ${E[-1]}, other nodes ${X[-1]}"
done
s=$(printf '%s\n' "${S[@]}" | med); e=$(printf '%s\n' "${E[@]}" | med); x=$(printf '%s\n' "${X[@]}" | med)
sm=${s%% *}; em=${e%% *}; xm=${x%% *}
echo "== ping RTT, 100 pings at 50 ms (median p99, ms)"
rs=$(rtt la 10.40.0.2); re=$(rtt ea 10.30.0.2); rx=$(rtt xa 10.30.0.4)
diff() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", a - b }'; }
printf '  %-44s %-22s %-8s %-18s %s\n' path "Mbit/s median (min-max)" "ratio" "RTT ms median p99" "RTT - same cluster"
printf '  %-44s %-22s %-8s %-18s %s\n' "same cluster, across nodes (1 tunnel)" "$s" "1.00" "$rs" "-"
printf '  %-44s %-22s %-8s %-18s %s\n' "across clusters, edge nodes (hop, router)" "$e" "$(ratio "$em" "$sm")" "$re" "$(diff "${re%% *}" "${rs%% *}")"
printf '  %-44s %-22s %-8s %-18s %s\n' "across clusters, other nodes (3 tunnels)" "$x" "$(ratio "$xm" "$sm")" "$rx" "$(diff "${rx%% *}" "${rs%% *}")"
