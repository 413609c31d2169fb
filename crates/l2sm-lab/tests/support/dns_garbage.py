#!/usr/bin/env python3
"""Sends broken frames at a network's DNS address from inside a pod (dns_network_e2e).

Usage: dns_garbage.py IFNAME SRC_IP DNS_IP DNS_MAC SEED

Each kind of breakage the switch still punts (it matches on addresses and ports only), so the
controller must drop it and count it: a bad UDP checksum, a bad IPv4 header checksum, an ARP
request whose sender MAC is not the frame's source, then 300 queries with random payloads
(FORMERR or silence). Also a VLAN-tagged query, a first fragment and an IPv4 total length
beyond the frame, which the punt flow does not match at all (OVS gives fragments no UDP ports
and does not parse past a bad total length). Prints one line per kind.
"""
import random
import socket
import struct
import sys


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def mac(text):
    return bytes(int(x, 16) for x in text.split(":"))


def main():
    ifname, src, dst, dst_mac, seed = sys.argv[1:6]
    rnd = random.Random(int(seed))
    dst_mac = mac(dst_mac)
    s4, d4 = socket.inet_aton(src), socket.inet_aton(dst)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((ifname, 0))
    # The interface's own MAC (this namespace's; /sys is the host's).
    src_mac = sock.getsockname()[4]

    def udp(payload, sport=40000, good_sum=True):
        length = 8 + len(payload)
        hdr = struct.pack("!HHHH", sport, 53, length, 0)
        pseudo = s4 + d4 + struct.pack("!BBH", 0, 17, length)
        c = csum(pseudo + hdr + payload) or 0xFFFF
        if not good_sum:
            c ^= 0x5A5A
        return struct.pack("!HHHH", sport, 53, length, c) + payload

    def ip(body, flags=0, total=None, good_sum=True):
        total = 20 + len(body) if total is None else total
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 7, flags, 64, 17, 0, s4, d4)
        c = csum(hdr)
        if not good_sum:
            c ^= 0x00FF
        return hdr[:10] + struct.pack("!H", c) + hdr[12:] + body

    def eth(body, ethertype=0x0800, tag=None):
        head = dst_mac + src_mac
        if tag is not None:
            head += struct.pack("!HH", 0x8100, tag)
        return head + struct.pack("!H", ethertype) + body

    query = bytes.fromhex("abcd01000001000000000000") + b"\x01a\x04blue\x04l2sm\x00\x00\x01\x00\x01"
    kinds = {
        "bad_udp": eth(ip(udp(query, good_sum=False))),
        "fragment": eth(ip(udp(query), flags=0x2000)),
        "bad_ip": eth(ip(udp(query), good_sum=False)),
        "truncated": eth(ip(udp(query), total=20 + 8 + len(query) + 64)),
        "vlan": eth(ip(udp(query)), tag=5),
    }
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + bytes([2, 9, 9, 9, 9, 9]) + s4 + b"\0" * 6 + d4
    kinds["bad_source"] = b"\xff" * 6 + src_mac + struct.pack("!H", 0x0806) + arp
    for name, frame in kinds.items():
        sock.send(frame)
        print(name, len(frame))
    for _ in range(300):
        payload = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 80)))
        if rnd.random() < 0.5:
            payload = query[:2] + payload
        sock.send(eth(ip(udp(payload, sport=rnd.randrange(1024, 65535)))))
    print("random 300")


main()
