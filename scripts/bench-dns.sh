#!/usr/bin/env bash
# The controller's DNS server next to dnsmasq serving the same names from a hosts file, on
# loopback in the same run, measured with dnsperf (Debian package, installed here if missing).
#
#   scripts/bench-dns.sh                          (the controller: $CARGO_TARGET_DIR or target,
#   PROFILE=release scripts/bench-dns.sh           /debug/l2sm, or /release/l2sm with PROFILE=release)
#   L2SM=/path/to/l2sm scripts/bench-dns.sh        (any binary)
#
# NAMES names (default 100) `pod-<i>.bench.l2sm`, each one A record. Two runs per server:
# throughput (dnsperf -c 4 -q 100 for SECS seconds, default 10) and latency at a fixed
# QPS (default 2000, dnsperf -v: every query's latency, p50/p99 computed here); ROUNDS
# rounds of both (default 1), alternating which server goes first.
# Prints one line per server and measure; raw dnsperf output in $OUT (default a temp dir).
set -euo pipefail
L2SM=$(realpath "${L2SM:-${CARGO_TARGET_DIR:-target}/${PROFILE:-debug}/l2sm}")
[ -x "$L2SM" ] || { echo "no controller binary at $L2SM (cargo build [--release] --bin l2sm)" >&2; exit 1; }
NAMES=${NAMES:-100}
SECS=${SECS:-10}
QPS=${QPS:-2000}
OUT=${OUT:-$(mktemp -d /tmp/l2sm-bench-dns.XXXXXX)}
mkdir -p "$OUT"
echo "controller: $L2SM; raw output in $OUT"
command -v dnsperf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y dnsperf >/dev/null
command -v dnsmasq >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y dnsmasq-base >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(free_port); OF=$(free_port); DNS=$(free_port); MASQ=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$L2SM" controller --insecure-openflow --upstream-default-credentials \
    --api-listen "127.0.0.1:$API" --openflow-listen "127.0.0.1:$OF" \
    --state-dir "$OUT/state" --dns-listen "127.0.0.1:$DNS" --dns-rate-limit 10000000 \
    2>"$OUT/controller.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf -u karaf:karaf "http://127.0.0.1:$API/onos/vnets/api/status" >/dev/null && break; sleep 0.1; done
c() { curl -sf -u karaf:karaf -H 'content-type: application/json' "$@" >/dev/null; }
c -X POST "http://127.0.0.1:$API/onos/vnets/api" -d '{"networkId":"bench"}'
: >"$OUT/hosts"; : >"$OUT/queries"
for i in $(seq 1 "$NAMES"); do
    ip="10.20.$((i / 250)).$((i % 250 + 1))"
    c -X POST "http://127.0.0.1:$API/onos/vnets/api/port" \
        -d "{\"networkId\":\"bench\",\"networkEndpoints\":[\"of:00000000000000b1/$i\"]}"
    c -X PUT "http://127.0.0.1:$API/api/v1/switches/of:00000000000000b1/ports/$i/owner" \
        -d "{\"pod\":\"bench/pod-$i\",\"attachment\":\"cni/$i/net1\",\"ips\":[\"$ip\"]}"
    echo "$ip pod-$i.bench.l2sm" >>"$OUT/hosts"
    echo "pod-$i.bench.l2sm A" >>"$OUT/queries"
done
dnsmasq --keep-in-foreground --conf-file=/dev/null --user=root --port="$MASQ" \
    --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
    --addn-hosts="$OUT/hosts" --local=/l2sm/ --log-facility=- 2>"$OUT/dnsmasq.log" &
pids+=($!)
sleep 0.5
# ROUNDS rounds (default 1), the order of the two servers swapped every round so that a
# change of the machine's load does not favour one of them.
for round in $(seq 1 "${ROUNDS:-1}"); do
  order=(l2sm:"$DNS" dnsmasq:"$MASQ")
  [ $((round % 2)) = 1 ] || order=(dnsmasq:"$MASQ" l2sm:"$DNS")
  for who in "${order[@]}"; do
    name=${who%%:*}; port=${who#*:}
    # Every name answers before anything is measured.
    dnsperf -s 127.0.0.1 -p "$port" -d "$OUT/queries" -n 1 >"$OUT/$name-check.txt"
    grep -q "Queries lost:         0 " "$OUT/$name-check.txt" || { echo "$name lost queries" >&2; exit 1; }
    grep -q "NOERROR $NAMES " "$OUT/$name-check.txt" || { echo "$name: not every name answered" >&2; cat "$OUT/$name-check.txt" >&2; exit 1; }
    dnsperf -s 127.0.0.1 -p "$port" -d "$OUT/queries" -l "$SECS" -c 4 -q 100 >"$OUT/$name-qps-$round.txt"
    qps=$(awk '/Queries per second/ {print $4}' "$OUT/$name-qps-$round.txt")
    lost=$(awk '/Queries lost/ {print $3}' "$OUT/$name-qps-$round.txt")
    dnsperf -s 127.0.0.1 -p "$port" -d "$OUT/queries" -l "$SECS" -Q "$QPS" -v >"$OUT/$name-lat-$round.txt"
    read -r n p50 p99 max < <(awk '$1 == ">" && $2 == "NOERROR" {print $NF * 1e6}' "$OUT/$name-lat-$round.txt" \
        | sort -n | awk '{v[NR]=$1} END {print NR, v[int(NR*0.5)+1], v[int(NR*0.99)+1], v[NR]}')
    echo "round $round $name: $qps queries/s (lost $lost); at $QPS/s: n=$n p50=${p50} us p99=${p99} us max=${max} us (load $(cut -d' ' -f1 /proc/loadavg))"
  done
done

# A restart under 10 queries/s: how many fail, and for how long (stop to first answer).
cat >"$OUT/probe.py" <<'PY'
import socket, struct, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"".join(
    bytes([len(l)]) + l.encode() for l in "pod-1.bench.l2sm".split(".")) + b"\0" + struct.pack(">HH", 1, 1)
fails, first, last, sent, t0 = 0, None, None, 0, time.monotonic()
while time.monotonic() - t0 < secs:
    start = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.09)
    ok = False
    try:
        s.sendto(q, ("127.0.0.1", port)); r = s.recv(512)
        ok = len(r) > 12 and r[3] & 0xf == 0 and r[6:8] != b"\0\0"  # NOERROR with an answer
    except OSError:
        pass
    s.close(); sent += 1
    if not ok:
        fails += 1; first = first if first is not None else start - t0; last = time.monotonic() - t0
    time.sleep(max(0, 0.1 - (time.monotonic() - start)))
window = 0 if first is None else (last - first) * 1000
print(f"{sent} {fails} {window:.0f}")
PY
python3 "$OUT/probe.py" "$DNS" 6 >"$OUT/restart.txt" &
probe=$!
sleep 2
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
"$L2SM" controller --insecure-openflow --upstream-default-credentials \
    --api-listen "127.0.0.1:$API" --openflow-listen "127.0.0.1:$OF" \
    --state-dir "$OUT/state" --dns-listen "127.0.0.1:$DNS" --dns-rate-limit 10000000 \
    2>>"$OUT/controller.log" &
pids[0]=$!
wait "$probe"
read -r sent failed window <"$OUT/restart.txt"
echo "restart at 10 queries/s: $failed of $sent queries failed, window ${window} ms (stop to restart included)"
echo "raw output in $OUT"
