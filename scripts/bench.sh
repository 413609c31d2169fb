#!/usr/bin/env bash
# Every performance measurement of the project, each next to a baseline measured in the same run,
# written to BENCHMARKS.md (and docs/bench/*.png) by `l2sm-bench-report`. See docs/benchmarks.md.
#
#   scripts/bench.sh            full run (a few minutes)
#   scripts/bench.sh --quick    smaller counts, for iterating on the script or the report
#
# Root. Builds its own labs (bl2sm: the L2S-M pipeline; bnorm: the same lab with every flow
# replaced by one `NORMAL` flow) and namespaces l2sm-bkrn-* (Linux bridge + kernel VXLAN) and
# l2sm-bcni-* (the reference bridge CNI plugin); removes all of them at the end, even on failure.
# A section that cannot run leaves a "not measured: <reason>" row, never a number.
# Environment: RESULTS=DIR keeps the raw samples there; OUT=DIR writes the report elsewhere;
# ONLY="dataplane attach controller agent codec" runs only some sections (the others say so);
# LEVELS="1 10 100" sets the numbers of pods attached at once; KEEP=1 leaves the labs and
# namespaces up at the end, for inspection (the next run removes them).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
MODE=full
for a in "$@"; do
  case $a in
    --quick) MODE=quick ;;
    -h | --help) sed -n 2,14p "$0"; exit 0 ;;
    *) echo "unknown argument: $a (try --help)" >&2; exit 2 ;;
  esac
done
if [ $MODE = quick ]; then
  SECS=2 REPS=1 PINGS=20 LEVELS=${LEVELS:-"1 5 20"} ROUNDS1=3 CODEC_ARGS="--warm-up-time 0.3 --measurement-time 1"
  SWITCHES="10 100" BRIDGES="10" FLOWS=3000 COLD_RUNS=3 TLS_SWITCHES="100" TLS_RUNS=1
else
  SECS=5 REPS=3 PINGS=100 LEVELS=${LEVELS:-"1 10 100"} ROUNDS1=10 CODEC_ARGS=""
  SWITCHES="10 100 1000 5000 10000" BRIDGES="10 100" FLOWS=30000 COLD_RUNS=10 TLS_SWITCHES="1000 5000" TLS_RUNS=3
fi

scripts/deps.sh
if [ ! -r /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  echo "installing: fonts-dejavu-core (plot labels)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-dejavu-core >/dev/null
fi
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
echo "== building (release)"
cargo build --release --locked -q --bin l2sm --bin l2sm-cni --bin l2sm-bench-report
BIN=$TARGET/release
CNI=$BIN/l2sm-cni
OUT=${OUT:-.}
RES=${RESULTS:-$(mktemp -d /tmp/l2sm-bench.XXXXXX)}
mkdir -p "$RES"
: >"$RES/samples.jsonl"
KNS=l2sm-bkrn
CNS=l2sm-bcni
TMP=$(mktemp -d)

cleanup() {
  set +e
  if [ -n "${KEEP:-}" ] && [ -n "${CLEANUP_DONE:-}" ]; then
    echo "KEEP: labs bl2sm/bnorm and namespaces $KNS-*, $CNS-* left for inspection; rerun without KEEP to remove them"
    return
  fi
  CLEANUP_DONE=1
  for lab in bl2sm bnorm; do "$BIN/l2sm" --lab $lab lab down >/dev/null 2>&1; done
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^($KNS|$CNS)-"); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
cleanup
TMP=$(mktemp -d)

# rec KEY VALUE…: one raw sample per value. skip SECTION REASON: the section was not measured.
rec() { local k=$1; shift; for v in "$@"; do printf '{"key":"%s","v":%s}\n' "$k" "$v" >>"$RES/samples.jsonl"; done; }
skip() { printf '{"skip":"%s","reason":"%s"}\n' "$1" "${2//\"/\'}" >>"$RES/samples.jsonl"; echo "  not measured: $1: $2"; }
note() { printf '{"note":"%s","text":"%s"}\n' "$1" "${2//\"/\'}" >>"$RES/samples.jsonl"; }
ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", (b - a) * 1000 }'; }

machine() {
  local cpu load
  cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
  read -r load _ </proc/loadavg
  cat >"$RES/machine.json" <<EOF
{"date":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","mode":"$MODE","nproc":$(nproc),"cpu":"${cpu:-unknown}",
 "kernel":"$(uname -r)","ovs":"$(ovs-vswitchd --version | awk 'NR==1 { print $NF }')",
 "commit":"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +changes)",
 "load_start":"$(cut -d' ' -f1-3 /proc/loadavg)","mem_mib":$(awk '/MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo),
 "others":"$(pgrep -c -x 'cargo|rustc|ovs-vswitchd|l2sm|iperf3' || true)"}
EOF
  echo "== machine: $(nproc) cores, load $load"
}

# ---------------------------------------------------------------- data plane
# Three systems with the same shape: pods a, b on node 1, pod c on node 2, MTU 1450, VXLAN
# between the nodes over an underlay bridge. Throughput and RTT runs are interleaved across the
# systems so that a burst of load from other jobs hits all of them alike.
lab_pods() { # lab
  local L="$BIN/l2sm --lab $1"
  $L network create blue >/dev/null
  $L attach --node n1 --pod a --network blue --ip 10.10.0.1/24 >/dev/null
  $L attach --node n1 --pod b --network blue --ip 10.10.0.2/24 >/dev/null
  $L attach --node n2 --pod c --network blue --ip 10.10.0.3/24 >/dev/null
}
lab_bridge() { # lab node
  ovs-vsctl --db=unix:"/run/l2sm/lab/$1/$2/db.sock" list-br | grep -v '^br-phy$'
}
# Replaces the controller's pipeline with plain `NORMAL` switching: no controller, one flow.
# Two nodes make a single tunnel, so NORMAL's flooding has no loop.
to_normal() { # lab
  local n d br
  for n in n1 n2; do
    d=/run/l2sm/lab/$1/$n; br=$(lab_bridge "$1" $n)
    ovs-vsctl --db=unix:"$d/db.sock" del-controller "$br"
    OVS_RUNDIR=$d ovs-ofctl -O OpenFlow13 del-flows "$br"
    OVS_RUNDIR=$d ovs-ofctl -O OpenFlow13 del-groups "$br"
    OVS_RUNDIR=$d ovs-ofctl -O OpenFlow13 add-flow "$br" "priority=0,actions=NORMAL"
  done
}
still_normal() { # lab: fails if anything put the pipeline back during the runs
  local n d br
  for n in n1 n2; do
    d=/run/l2sm/lab/$1/$n; br=$(lab_bridge "$1" $n)
    [ -z "$(ovs-vsctl --db=unix:"$d/db.sock" get-controller "$br")" ] || return 1
    [ "$(OVS_RUNDIR=$d ovs-ofctl -O OpenFlow13 dump-flows "$br" --no-stats | grep -c .)" = 1 ] || return 1
  done
}
# Linux bridge + kernel VXLAN (offloads as the kernel sets them): the kernel baseline.
kernel_lab() {
  local k
  ip netns add $KNS-ul
  ip -n $KNS-ul link add ul0 type bridge
  ip -n $KNS-ul link set ul0 up
  for k in 1 2; do
    ip netns add $KNS-n$k
    ip -n $KNS-ul link add n$k type veth peer name eth0 netns $KNS-n$k
    ip -n $KNS-ul link set n$k master ul0 up
    ip -n $KNS-n$k link set lo up
    ip -n $KNS-n$k addr add 10.250.0.$k/24 dev eth0
    ip -n $KNS-n$k link set eth0 up
    ip -n $KNS-n$k link add br0 type bridge
    ip -n $KNS-n$k link set br0 up
    ip -n $KNS-n$k link add vx0 type vxlan id 1 remote 10.250.0.$((3 - k)) local 10.250.0.$k dstport 4789 dev eth0
    ip -n $KNS-n$k link set vx0 master br0 up
  done
  for p in a:1:1 b:1:2 c:2:3; do
    IFS=: read -r pod node ip <<<"$p"
    ip netns add "$KNS-p-$pod"
    ip -n "$KNS-n$node" link add "v$pod" mtu 1450 type veth peer name net1 mtu 1450 netns "$KNS-p-$pod"
    ip -n "$KNS-n$node" link set "v$pod" master br0 up
    ip -n "$KNS-p-$pod" link set lo up
    ip -n "$KNS-p-$pod" addr add "10.10.0.$ip/24" dev net1
    ip -n "$KNS-p-$pod" link set net1 up
  done
}
# in SYSTEM POD CMD…: runs CMD in a pod of one of the three systems.
in_pod() {
  local sys=$1 pod=$2; shift 2
  case $sys in
    l2sm) "$BIN/l2sm" --lab bl2sm lab exec "$pod" -- "$@" ;;
    ovs) "$BIN/l2sm" --lab bnorm lab exec "$pod" -- "$@" ;;
    kernel) ip netns exec "$KNS-p-$pod" "$@" ;;
  esac
}
iperf() { # system server-pod server-ip client-pod: Mbit/s at the receiver
  in_pod "$1" "$2" iperf3 -s -1 -D -p 5201 >/dev/null 2>&1
  sleep 0.3
  in_pod "$1" "$4" iperf3 -c "$3" -p 5201 -t "$SECS" -f m 2>/dev/null | awk '/receiver/ { print $(NF-2) }'
}
rtts() { # system pod ip: one RTT (ms) per reply
  in_pod "$1" "$2" ping -c "$PINGS" -i 0.02 "$3" 2>/dev/null | awk -F'time=' '/time=/ { split($2, t, " "); print t[1] }'
}
vswitchd_ctl() { echo "/run/l2sm/lab/$1/$2/ovs-vswitchd.ctl"; }
pmd_stat() { # lab node field
  ovs-appctl -t "$(vswitchd_ctl "$1" "$2")" dpif-netdev/pmd-stats-show | awk -F': ' -v f="$3" '$1 ~ f { print $2 + 0; exit }'
}

dataplane() {
  echo "== data plane: 3 systems x (same node, across nodes), $REPS x $SECS s iperf3, $PINGS pings"
  local t0
  t0=$EPOCHREALTIME; "$BIN/l2sm" --lab bl2sm lab up --nodes 2 >/dev/null; rec lab.up.l2sm "$(ms_since "$t0")"
  t0=$EPOCHREALTIME; "$BIN/l2sm" --lab bnorm lab up --nodes 2 >/dev/null; rec lab.up.l2sm "$(ms_since "$t0")"
  t0=$EPOCHREALTIME; kernel_lab; rec lab.up.kernel "$(ms_since "$t0")"
  lab_pods bl2sm
  lab_pods bnorm
  to_normal bnorm
  local sys path r v
  for sys in l2sm ovs kernel; do # warm-up: ARP, learned MACs, tunnel ARP
    in_pod $sys a ping -c 3 -i 0.2 -W 2 -q 10.10.0.2 >/dev/null
    in_pod $sys a ping -c 3 -i 0.2 -W 2 -q 10.10.0.3 >/dev/null || { echo "$sys: no cross-node ping" >&2; return 1; }
  done
  for lab in bl2sm bnorm; do for n in n1 n2; do ovs-appctl -t "$(vswitchd_ctl $lab $n)" dpif-netdev/pmd-stats-clear >/dev/null; done; done
  for ((r = 1; r <= REPS; r++)); do
    for sys in l2sm ovs kernel; do
      for path in same cross; do
        if [ $path = same ]; then v=$(iperf $sys b 10.10.0.2 a); else v=$(iperf $sys c 10.10.0.3 a); fi
        [ -n "$v" ] || { echo "$sys $path: iperf3 gave no result" >&2; return 1; }
        rec dp.tput.$path.$sys "$v"
        echo "  run $r $sys $path: $v Mbit/s"
      done
    done
  done
  for sys in l2sm ovs kernel; do
    # shellcheck disable=SC2046
    rec dp.rtt.same.$sys $(rtts $sys a 10.10.0.2)
    # shellcheck disable=SC2046
    rec dp.rtt.cross.$sys $(rtts $sys a 10.10.0.3)
  done
  # Why the two OVS configurations differ: passes through the datapath per packet (>1 means
  # recirculation), datapath flows (megaflows) and upcalls, on node 1, over all the runs above.
  for lab in bl2sm bnorm; do
    sys=l2sm; [ $lab = bnorm ] && sys=ovs
    rec dp.diag.passes.$sys "$(pmd_stat $lab n1 'avg. datapath passes')"
    rec dp.diag.upcalls.$sys "$(pmd_stat $lab n1 'miss with success upcall')"
    rec dp.diag.megaflow_hits.$sys "$(pmd_stat $lab n1 'megaflow hits')"
    rec dp.diag.emc_hits.$sys "$(pmd_stat $lab n1 'emc hits')"
    rec dp.diag.packets.$sys "$(pmd_stat $lab n1 'packets received')"
    rec dp.diag.dpflows.$sys "$(ovs-appctl -t "$(vswitchd_ctl $lab n1)" dpctl/dump-flows | grep -c .)"
  done
  ovs-appctl -t "$(vswitchd_ctl bl2sm n1)" dpctl/dump-flows >"$RES/dpflows-l2sm.txt" || true
  ovs-appctl -t "$(vswitchd_ctl bnorm n1)" dpctl/dump-flows >"$RES/dpflows-ovs.txt" || true
  still_normal bnorm || { echo "the NORMAL lab got its pipeline back during the runs" >&2; return 1; }
  for ns in $KNS-p-a $KNS-p-b $KNS-p-c $KNS-n1 $KNS-n2 $KNS-ul; do
    for pid in $(ip netns pids "$ns"); do kill "$pid" 2>/dev/null || true; done
    ip netns del "$ns"
  done
}

# ---------------------------------------------------------------- attach
# CNI ADD to the first ping answered by a pod on the other node, for N pods started at once,
# next to the same through the NORMAL lab (same agent and OVS, no pipeline: what the port
# plumbing alone costs) and to Debian's bridge plugin + host-local (one node: its first ping
# goes to a pod on the same bridge). Each pod: one bash timing ADD and then `ping` until the
# first reply.
cpu_ticks() { # pid: user + system clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
attach_round() { # system level round
  local sys=$1 n=$2 round=$3 i ns conf node pids=()
  local out=$TMP/att-$sys-$n-$round
  # ovs-vswitchd logs main-loop stalls over 1 s ("long NNNms poll interval"); in the userspace
  # datapath that thread also forwards the packets, so a stall delays every first ping.
  local lab=bl2sm
  [ "$sys" = ovs ] && lab=bnorm
  local vlog=/run/l2sm/lab/$lab/n1/ovs-vswitchd.log l0=0 vpid c0=0 w0=$EPOCHREALTIME
  vpid=$(cat /run/l2sm/lab/$lab/n1/ovs-vswitchd.pid 2>/dev/null || echo 0)
  if [ "$sys" != bridge ]; then l0=$(wc -l <"$vlog"); c0=$(cpu_ticks "$vpid"); fi
  mkdir -p "$out"
  for ((i = 1; i <= n; i++)); do ip netns add "$CNS-$sys-$i"; done
  for ((i = 1; i <= n; i++)); do
    ns=$CNS-$sys-$i
    if [ "$sys" != bridge ]; then
      node=l2sm-$lab-n1
      conf='{"cniVersion":"1.0.0","name":"l2sm-att","type":"l2sm","network":"att","agentSocket":"/run/l2sm/lab/'$lab'/n1/agent.sock","capabilities":{"ips":true},"runtimeConfig":{"ips":["10.70.'$((i / 250))'.'$((i % 250 + 1))'/16"]}}'
      plugin=$CNI peer=10.70.255.254
    else
      node=$CNS-host
      conf='{"cniVersion":"1.0.0","name":"bench-bridge","type":"bridge","bridge":"bcnibr0","ipam":{"type":"host-local","subnet":"10.71.0.0/16","rangeStart":"10.71.0.10","dataDir":"'$TMP/host-local'"}}'
      plugin=/usr/lib/cni/bridge peer=10.71.0.2
    fi
    # shellcheck disable=SC2016 # the single-quoted script is expanded by the inner bash
    ip netns exec "$node" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C bash -c '
      t0=$EPOCHREALTIME
      CNI_COMMAND=ADD CNI_CONTAINERID=b'"$round"'x$1 CNI_NETNS=/run/netns/$2 CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p$1" "$3" <<<"$4" >"$5/add-$1.json" ||
        { echo "ADD failed: $(head -c 300 "$5/add-$1.json")" >"$5/err-$1"; exit 1; }
      t1=$EPOCHREALTIME
      ip netns exec "$2" ping -c 1 -i 0.002 -w 60 -q "$6" >/dev/null ||
        { echo "no ping reply from $6 within 60 s of ADD returning" >"$5/err-$1"; exit 2; }
      echo "$t0 $t1 $EPOCHREALTIME" >"$5/t-$1"' _ "$i" "$ns" "$plugin" "$conf" "$out" "$peer" &
    pids+=($!)
  done
  local failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
  [ $failed = 0 ] || {
    echo "$sys at $n pods: $failed failed, e.g. $(cat "$out"/err-* 2>/dev/null | sort | uniq -c | sort -rn | head -1 | tr -s ' ')" >&2
    return 1
  }
  awk '{ printf "%.3f\n", ($3 - $1) * 1000 }' "$out"/t-* >"$out/ping"
  awk '{ printf "%.3f\n", ($2 - $1) * 1000 }' "$out"/t-* >"$out/add"
  # shellcheck disable=SC2046
  rec "attach.$sys.c$n" $(cat "$out/ping")
  # shellcheck disable=SC2046
  rec "attach_add.$sys.c$n" $(cat "$out/add")
  if [ "$sys" != bridge ]; then
    local stalls
    stalls=$(tail -n +$((l0 + 1)) "$vlog" | { grep -o 'long [0-9]*ms poll interval' || true; } |
      awk '{ v = $2; sub("ms", "", v); v += 0; t += v; if (v > m) m = v } END { print m + 0, t + 0 }')
    rec "attach_stall.$sys.c$n" "${stalls% *}"
    rec "attach_stall_sum.$sys.c$n" "${stalls#* }"
    # Node 1's ovs-vswitchd CPU over the round, as a share of one core (100 = one core busy).
    rec "attach_vswitchd_cpu.$sys.c$n" "$(awk -v c="$(($(cpu_ticks "$vpid") - c0))" -v hz="$(getconf CLK_TCK)" \
      -v a="$w0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", 100 * c / hz / (b - a) }')"
  fi
  # Tear down (not timed).
  for ((i = 1; i <= n; i++)); do
    ip netns exec "$node" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=DEL CNI_CONTAINERID="b${round}x$i" \
      CNI_NETNS="/run/netns/$CNS-$sys-$i" CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni "$plugin" <<<"$conf" >/dev/null 2>&1 || true
    ip netns del "$CNS-$sys-$i"
  done
}

attach() {
  echo "== attach: CNI ADD -> first ping, at $LEVELS pods at once"
  local lab
  for lab in bl2sm bnorm; do
    "$BIN/l2sm" --lab $lab lab status >/dev/null 2>&1 || "$BIN/l2sm" --lab $lab lab up --nodes 2 >/dev/null
    "$BIN/l2sm" --lab $lab network create att >/dev/null
    "$BIN/l2sm" --lab $lab attach --node n2 --pod peer --network att --ip 10.70.255.254/16 >/dev/null
  done
  to_normal bnorm
  # The bridge plugin's host: its own namespace (never the host's), and a peer pod on it.
  ip netns add $CNS-host
  ip netns add $CNS-peer
  ip netns exec $CNS-host env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND=ADD CNI_CONTAINERID=peer \
    CNI_NETNS=/run/netns/$CNS-peer CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge \
    <<<'{"cniVersion":"1.0.0","name":"bench-bridge","type":"bridge","bridge":"bcnibr0","ipam":{"type":"static","addresses":[{"address":"10.71.0.2/16"}]}}' >/dev/null
  local n r rounds sys
  for n in $LEVELS; do
    rounds=1
    [ "$n" = 1 ] && rounds=$ROUNDS1
    [ "$n" -gt 1 ] && [ "$n" -le 10 ] && [ $MODE = full ] && rounds=3
    for ((r = 1; r <= rounds; r++)); do
      for sys in l2sm ovs bridge; do attach_round $sys "$n" "$n$r"; done
    done
    echo "  $n at once: done ($rounds rounds)"
  done
  still_normal bnorm || { echo "the NORMAL lab got its pipeline back during the attach rounds" >&2; return 1; }
}

# ---------------------------------------------------------------- controller
# Measured by `l2sm-bench` (crates/l2sm-bench, docs/benchmarks-controller.md): a real controller
# against synthetic OpenFlow switches and against real OVS bridges (convergence, RSS, CPU against
# the number of switches), flow programming next to `ovs-ofctl add-flows`, cold start. Its JSON
# documents go in as they are.
controller() {
  if ! cargo build --release --locked -q --bin l2sm-bench 2>"$TMP/ctl-build.err"; then
    if grep -q "no bin target named" "$TMP/ctl-build.err"; then
      skip controller "this tree has no l2sm-bench binary (the controller benchmark)"
      return 0
    fi
    cat "$TMP/ctl-build.err" >&2
    return 1
  fi
  mkdir -p "$RES/controller"
  local B=("$BIN/l2sm-bench" --l2sm "$BIN/l2sm" --json) n
  for n in $SWITCHES; do
    echo "== controller: $n synthetic switches"
    # The scaling table reads the TCP run; above 1,000 switches only that one is made (TLS at
    # scale is the TLS section's), with time for 10,000 switches to converge.
    if [ "$n" -gt 1000 ]; then
      "${B[@]}" controller --switches "$n" --openflow tcp --timeout 180 >"$RES/controller/synth-$n.json"
    else
      "${B[@]}" controller --switches "$n" >"$RES/controller/synth-$n.json"
    fi
  done
  for n in $BRIDGES; do
    echo "== controller: $n real OVS bridges"
    "${B[@]}" ovs --bridges "$n" >"$RES/controller/ovs-$n.json"
  done
  echo "== controller: flow programming rate, $FLOWS flows, next to ovs-ofctl add-flows"
  "${B[@]}" flow-rate --flows "$FLOWS" >"$RES/controller/flow-rate.json"
  echo "== controller: cold start"
  "${B[@]}" cold-start --runs "$COLD_RUNS" >"$RES/controller/cold-start.json"
  # Control plane over TLS (issue #14): TCP then TLS on the same cluster, and REST plain vs TLS,
  # each repeated (the report gives medians and ranges).
  local i
  for i in $(seq "$TLS_RUNS"); do
    for n in $TLS_SWITCHES; do
      echo "== controller: $n synthetic switches over TCP then TLS, run $i"
      "${B[@]}" controller --switches "$n" --batch 50 --openflow both \
        >"$RES/controller/tls-$n-$i.json"
    done
    echo "== controller: REST latency plain vs TLS, run $i"
    "${B[@]}" api >"$RES/controller/api-$i.json"
  done
}

# ---------------------------------------------------------------- agent
# crates/l2sm-agent/benches/agent_attach.rs: 100 pod interfaces through the node agent's API (no CNI
# exec, no ping) next to the same plumbing by `ip` + `ovs-vsctl`, and a 50-link reconcile.
agent() {
  echo "== agent: cargo bench -p l2sm-agent --bench agent_attach"
  cargo bench --locked -q -p l2sm-agent --bench agent_attach >"$RES/agent.txt" 2>&1 || {
    tail -5 "$RES/agent.txt" >&2; return 1; }
  local line label key
  while IFS= read -r line; do
    label=${line%% p50 *}; label=${label%"${label##*[! ]}"}
    case $label in
      "l2sm agent, sequential") key=l2sm.seq ;;
      "l2sm agent, 100 concurrent") key=l2sm.c100 ;;
      "ip + ovs-vsctl, sequential") key=shell.seq ;;
      "ip + ovs-vsctl, 100 concurrent") key=shell.c100 ;;
      *) continue ;;
    esac
    # shellcheck disable=SC2046
    set -- $(echo "$line" | sed -E 's/.* p50 +([0-9.]+) ms +p99 +([0-9.]+) ms +total +([0-9.]+) ms.*/\1 \2 \3/')
    rec agent.$key.p50 "$1"; rec agent.$key.p99 "$2"; rec agent.$key.total "$3"
  done <"$RES/agent.txt"
  line=$(grep '50-link topology' "$RES/agent.txt" || true)
  [ -z "$line" ] || rec agent.topo50 "$(echo "$line" | sed -E 's/.*: ([0-9.]+) ms.*/\1/')"
  grep -q agent.l2sm.seq.p50 "$RES/samples.jsonl" || { echo "agent_attach printed no result line" >&2; return 1; }
}

# ---------------------------------------------------------------- codec
codec() {
  echo "== codec: criterion (l2sm-ofp codec)"
  # shellcheck disable=SC2086
  cargo bench --locked -q -p l2sm-ofp --bench codec -- $CODEC_ARGS >"$RES/codec.txt" 2>&1 || {
    tail -5 "$RES/codec.txt" >&2; return 1; }
  local f g
  for f in "$TARGET"/criterion/*/*/new/estimates.json; do
    g=${f#"$TARGET"/criterion/}; g=${g%/new/estimates.json}
    mkdir -p "$RES/codec/$g"; cp "$f" "$RES/codec/$g/estimates.json"
  done
}

section() { # name: a failing section becomes a "not measured" row and the run goes on
  case " ${ONLY:-$1} " in *" $1 "*) ;; *) skip "$1" "left out (ONLY=$ONLY)"; return 0 ;; esac
  local rc
  set +e
  (
    set -eE
    trap 'echo "stopped at scripts/bench.sh:$LINENO: $BASH_COMMAND" >&2' ERR
    "$1"
  ) 2> >(tee "$TMP/$1.err" >&2)
  rc=$?
  set -e
  local why
  why=$(grep -v '^\s*$' "$TMP/$1.err" | tail -1 | cut -c1-200 || true)
  [ $rc = 0 ] || skip "$1" "${why:-exit status $rc, no message (a bug in scripts/bench.sh)}"
}

machine
section dataplane
section attach
if [ -z "${KEEP:-}" ]; then
  for lab in bl2sm bnorm; do "$BIN/l2sm" --lab $lab lab down >/dev/null 2>&1 || true; done
fi
section controller
section agent
section codec
sed -i "s|^ \"others\"| \"load_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\n \"others\"|" "$RES/machine.json"
"$BIN/l2sm-bench-report" --results "$RES" --out "$OUT"
echo "raw samples: $RES"
