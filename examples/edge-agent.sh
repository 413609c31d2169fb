#!/usr/bin/env bash
# Two clusters' edge switches on one host and one provider controller: a "pod" behind each edge
# pings the other through the VXLAN tunnel between the edges. Upstream's operator's part is
# played by hand: the NED files, AttachInterface over gRPC (curl as the gRPC client, the exact
# request bytes upstream's generated client sends) and the provider's vnets API.
#
#   ul (underlay): Linux bridge ul0; the provider controller (10.91.0.254)
#   e1, e2 (edge nodes): OVS (userspace datapath), `l2sm edge`, a Linux bridge br1
#   pa, pb (pods): one veth each into br1 of e1 / e2
#
# Usage (root; Open vSwitch, iproute2, ethtool, curl with HTTP/2):
#   L2SM=target/release/l2sm examples/edge-agent.sh
set -euo pipefail
L2SM=$(realpath "${L2SM:-$(command -v l2sm)}")
P=${PREFIX:-l2sm-edgex}
DIR=/run/$P
PROVIDER=idco
API=10.91.0.254:8181
AUTH=admin:edge-example
at() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }

cleanup() {
    set +e
    for f in "$DIR"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    sleep 0.5
    for ns in pa pb e1 e2 ul; do ip netns del "$P-$ns" 2>/dev/null; done
    rm -rf "$DIR"
}
trap cleanup EXIT
cleanup
mkdir -p "$DIR"

# Underlay and management network, one Linux bridge in the underlay namespace.
ip netns add "$P-ul"
at ul ip link set lo up
at ul ip link add ul0 type bridge
at ul ip addr add 10.90.0.254/24 dev ul0
at ul ip addr add 10.91.0.254/24 dev ul0
at ul ip link set ul0 up

# The provider controller (OpenFlow over plain TCP: upstream's edges have no TLS there).
# (ip netns exec, then env, exec the daemon: $! is its pid.)
ip netns exec "$P-ul" env L2SM_API_USER=admin L2SM_API_PASSWORD=edge-example \
    "$L2SM" controller --insecure-openflow \
    --openflow-listen 10.91.0.254:6653 --api-listen "$API" --state-dir "$DIR/provider" \
    >"$DIR/provider.log" 2>&1 &
echo $! >"$DIR/provider.pid"

switch_name() { echo "br-$(printf '%s' "$1$PROVIDER" | sha256sum | cut -c1-8)"; }
dpid() { printf '%s' "$1" | sha256sum | cut -c1-16; }

edge() { # edge N: node namespace, OVS, br-phy with the underlay address, l2sm edge
    local n=$1 other=$((3 - $1)) d="$DIR/e$1"
    mkdir -p "$d"
    ip netns add "$P-e$n"
    at "e$n" ip link set lo up
    # eth0: the tunnels' underlay (inside OVS); mgmt: the node's own path to the controller.
    at "e$n" ip link add eth0 type veth peer name "u$n" netns "$P-ul"
    at "e$n" ip link add mgmt type veth peer name "m$n" netns "$P-ul"
    at "e$n" ip addr add "10.91.0.$n/24" dev mgmt
    for l in eth0 mgmt; do at "e$n" ip link set "$l" up; done
    for l in "u$n" "m$n"; do at ul ip link set "$l" master ul0 up; done
    at ul ethtool -K "u$n" tx off >/dev/null
    at "e$n" sysctl -qw net.ipv4.conf.eth0.arp_ignore=8
    ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    for prog in ovsdb-server ovs-vswitchd; do
        local args=("unix:$d/db.sock")
        [ $prog = ovsdb-server ] && args=("$d/conf.db" "--remote=punix:$d/db.sock")
        OVS_RUNDIR=$d OVS_DBDIR=$d OVS_LOGDIR=$d at "e$n" $prog "${args[@]}" \
            --pidfile="$d/$prog.pid" --unixctl="$d/$prog.ctl" --log-file="$d/$prog.log" \
            --detach --no-chdir
        cp "$d/$prog.pid" "$DIR/e$n-$prog.pid"
    done
    # Userspace tunnels need the node's underlay address on an OVS bridge (the lab does the same).
    ovs-vsctl --db="unix:$d/db.sock" -- add-br br-phy -- set bridge br-phy datapath_type=netdev \
        -- add-port br-phy eth0
    at "e$n" ip addr add "10.90.0.$n/24" dev br-phy
    at "e$n" ip link set br-phy up
    at "e$n" ethtool -K br-phy tx off >/dev/null
    # What upstream's operator writes into the NED ConfigMap.
    printf '{"controllerIp":["10.91.0.254"],"controllerPort":"6653","providerName":"","nodeName":"edge-%s","switchName":"%s"}\n' \
        "$n" "$(switch_name "edge-$n")" >"$d/config.json"
    printf '{"name":"edge-%s","nodeIP":"10.90.0.%s","neighborNodes":["10.90.0.%s"]}\n' \
        "$n" "$n" "$other" >"$d/neighbors.json"
    # The cluster side: a Linux bridge br1 (upstream: the one behind the cluster switch's port).
    at "e$n" ip link add br1 type bridge
    at "e$n" ip link set br1 up
    # gRPC as upstream's operator dials it (cleartext), only from the "operator" address.
    ip netns exec "$P-e$n" env RUST_LOG=info \
        "$L2SM" edge --config-dir "$d" --ovsdb "unix:$d/db.sock" \
        --datapath-type netdev --ned-grpc-insecure --ned-grpc-listen "10.91.0.$n:50051" \
        --ned-grpc-allow 10.91.0.254/32 >"$d/edge.log" 2>&1 &
    echo $! >"$DIR/e$n-edge.pid"
}
edge 1
edge 2

pod() { # pod NAME EDGE IP: a namespace with net1, its peer in the edge's br1
    ip netns add "$P-$1"
    at "$1" ip link set lo up
    at "$1" ip link add net1 type veth peer name "v$1" netns "$P-e$2"
    at "$1" ip addr add "$3" dev net1
    at "$1" ethtool -K net1 tx off >/dev/null
    at "$1" ip link set net1 up
    at "e$2" ip link set "v$1" master br1 up
}
pod pa 1 10.10.0.1/24
pod pb 2 10.10.0.2/24

wait_for() { # wait_for WHAT CMD...: up to 30 s
    local what=$1; shift
    for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "timed out waiting for $what" >&2; return 1
}
wait_for "the provider API" at ul curl -sf -u "$AUTH" "http://$API/onos/vnets/api/status"
for n in 1 2; do wait_for "edge $n's gRPC listener" at ul bash -c "exec 3<>/dev/tcp/10.91.0.$n/50051"; done

# AttachInterface{interface_name: "br1"}: upstream's request bytes, a gRPC frame over h2c.
attach() { # attach N: prints the port number the edge answers
    printf '\x00\x00\x00\x00\x05\x0a\x03br1' >"$DIR/attach.req"
    at ul curl -sS --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
        --data-binary @"$DIR/attach.req" -o "$DIR/attach-$1.resp" \
        "http://10.91.0.$1:50051/nedpb.NedService/AttachInterface"
    # 5-byte frame prefix, then field 1 (tag 0x08) holds the port number (one byte here).
    [ "$(od -An -tx1 -j5 -N1 "$DIR/attach-$1.resp" | tr -d ' ')" = 08 ] || {
        echo "edge $1 did not answer a port" >&2; exit 1; }
    od -An -tu1 -j6 -N1 "$DIR/attach-$1.resp" | tr -d ' '
}
p1=$(attach 1)
p2=$(attach 2)
[ "$(attach 1)" = "$p1" ] || { echo "a repeated AttachInterface made a second port" >&2; exit 1; }
d1=$(dpid "$(switch_name edge-1)")
d2=$(dpid "$(switch_name edge-2)")
echo "edge-1 port of:$d1/$p1, edge-2 port of:$d2/$p2"

# `! cmd` would not stop the script under `set -e`: this does when cmd unexpectedly works.
fails() { if "$@"; then echo "should have failed: $*" >&2; exit 1; fi; }
# Edge ports in no network carry nothing (fail_mode=secure, the provider's pipeline).
fails at pa ping -c1 -W1 10.10.0.2

# The provider network joining both edge ports (upstream's vnets contract).
vnets() { at ul curl -sSf -u "$AUTH" -H 'content-type: application/json' "$@"; }
vnets -X POST "http://$API/onos/vnets/api" -d '{"networkId":"inter"}'
vnets -X POST "http://$API/onos/vnets/api/port" \
    -d "{\"networkId\":\"inter\",\"networkEndpoints\":[\"of:$d1/$p1\",\"of:$d2/$p2\"]}"

wait_for "pa to reach pb across the edges" at pa ping -c1 -W1 10.10.0.2
at pa ping -c3 -i0.2 -W1 10.10.0.2
at pb ping -c3 -i0.2 -W1 10.10.0.1
ovs-vsctl --db="unix:$DIR/e1/db.sock" --columns=name,options find Interface type=vxlan
echo "edge example: OK"
