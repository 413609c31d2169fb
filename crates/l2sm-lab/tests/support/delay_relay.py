"""An L2 relay between two interfaces (test tool, run in the lab's underlay namespace): frames
are copied both ways as they are; IPv4/UDP frames from SRC to PORT (the overlay's VXLAN port) going from
the `bridge` side to the `node` side are delayed (SIGUSR1: by 20 ms) or every second one is
dropped (SIGUSR2: delay off, 50 % loss). Stands in for `tc netem` on kernels without it.
Usage: delay_relay.py NODE_IF BRIDGE_IF SRC_IP PORT"""
import heapq, signal, socket, sys, threading, time

node_if, bridge_if, src = sys.argv[1], sys.argv[2], socket.inet_aton(sys.argv[3])
port = int(sys.argv[4]).to_bytes(2, "big")
ETH_P_ALL, PACKET_OUTGOING = 0x0003, 4
state = {"delay": 0.0, "drop_every": 0, "matched": 0, "held": 0, "held_s": 0.0}

def loss_mode(*_):
    # Reports how long the delayed frames were really held (Python's own scheduling included).
    n = state["held"]
    print(f"held {n} {state['held_s'] / max(n, 1) * 1000:.3f}", flush=True)
    state.update(delay=0.0, drop_every=2)

signal.signal(signal.SIGUSR1, lambda *_: state.update(delay=0.020, drop_every=0))
signal.signal(signal.SIGUSR2, loss_mode)

def sock(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    return s

node, bridge = sock(node_if), sock(bridge_if)
queue, cond = [], threading.Condition()

def matched(f):
    return (len(f) > 38 and f[12:14] == b"\x08\x00" and f[23] == 17 and f[26:30] == src
            and f[36:38] == port)

def pump(rx, tx, towards_node):
    seq = 0
    while True:
        f, addr = rx.recvfrom(65535)
        if addr[2] == PACKET_OUTGOING:
            continue
        if towards_node and matched(f):
            state["matched"] += 1
            every = state["drop_every"]
            if every and state["matched"] % every == 0:
                continue
            if state["delay"] > 0:
                with cond:
                    seq += 1
                    now = time.monotonic()
                    heapq.heappush(queue, (now + state["delay"], seq, now, f))
                    cond.notify()
                continue
        tx.send(f)

def delayed():
    while True:
        with cond:
            while not queue:
                cond.wait()
            due, _, received, f = queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                cond.wait(wait)
                continue
            heapq.heappop(queue)
        node.send(f)
        state["held"] += 1
        state["held_s"] += time.monotonic() - received

threading.Thread(target=pump, args=(node, bridge, False), daemon=True).start()
threading.Thread(target=delayed, daemon=True).start()
print("relay up", flush=True)
pump(bridge, node, True)
