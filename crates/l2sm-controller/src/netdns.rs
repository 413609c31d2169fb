//! DNS on the network itself: the frames the switches punt to the controller for a network's
//! DNS address ([`l2sm_pipeline::dns`]) and the frames that answer them.
//!
//! A punted frame is an ARP request for the DNS address or a UDP query to its port 53, from a
//! member port of the network the punt flow's cookie names. The answer (an ARP reply from the
//! network's DNS MAC, or the DNS answer from the DNS address's port 53) goes back with
//! PACKET_OUT straight out of the port the frame came in on: it never enters the pipeline, so
//! it can reach no other port. The DNS answer is the zone as seen from that network
//! ([`crate::dns::Zone::answer_from_network`]).
//!
//! Everything is checked before anything is answered (every length, the IPv4 header checksum,
//! the UDP checksum when there is one, no fragments, no VLAN tags, unicast sources); anything
//! else is dropped and counted by reason ([`Counters`]), never answered, never a panic.

use crate::dns::wire;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const ETH_HEADER: usize = 14;
const ETH_TYPE_ARP: u16 = 0x0806;
const ETH_TYPE_IPV4: u16 = 0x0800;
const ETH_TYPE_IPV6: u16 = 0x86dd;
const IPV6_HEADER: usize = 40;
/// The hop limit neighbour discovery requires (RFC 4861) and answers with.
const ND_HOP_LIMIT: u8 = 255;
/// 802.1Q, 802.1ad and the old QinQ ethertype: tagged frames are never answered.
const ETH_TYPES_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// Length of an Ethernet/IPv4 ARP packet.
const ARP_LEN: usize = 28;
/// The shortest Ethernet frame without FCS: replies are padded to it.
const MIN_FRAME: usize = 60;
/// TTL of the answers' IPv4 headers.
const REPLY_TTL: u8 = 64;

/// Why a punted frame was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than its headers say, or than any header.
    Truncated,
    /// A VLAN tag.
    Vlan,
    /// Neither ARP nor IPv4, or an ARP that is not an Ethernet/IPv4 request.
    NotQuery,
    /// A bad IPv4 header: version, length or checksum.
    BadIp,
    /// An IPv4 fragment.
    Fragment,
    /// A bad UDP header: length, checksum or port.
    BadUdp,
    /// A source that cannot be answered: multicast or zero MAC, broadcast, multicast or zero
    /// address, an ARP whose sender is not the frame's source or claims the DNS address.
    BadSource,
    /// Not for this network's DNS address (or not from a member of the network).
    WrongTarget,
    /// Over the port's rate.
    RateLimited,
    /// The DNS message got no answer (a response, or less than a header).
    Silent,
}

impl DropReason {
    /// Every reason, in the order of the counters.
    pub const ALL: [DropReason; 10] = [
        DropReason::Truncated,
        DropReason::Vlan,
        DropReason::NotQuery,
        DropReason::BadIp,
        DropReason::Fragment,
        DropReason::BadUdp,
        DropReason::BadSource,
        DropReason::WrongTarget,
        DropReason::RateLimited,
        DropReason::Silent,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Vlan => "vlan",
            DropReason::NotQuery => "not_query",
            DropReason::BadIp => "bad_ip",
            DropReason::Fragment => "fragment",
            DropReason::BadUdp => "bad_udp",
            DropReason::BadSource => "bad_source",
            DropReason::WrongTarget => "wrong_target",
            DropReason::RateLimited => "rate_limited",
            DropReason::Silent => "silent",
        }
    }

    fn index(self) -> usize {
        DropReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// What was answered, and what was dropped by reason
/// (`l2sm_network_dns_{answers,drops}_total`).
#[derive(Debug, Default)]
pub struct Counters {
    /// ARP replies sent.
    pub arp_answers: AtomicU64,
    /// Neighbour advertisements sent.
    pub nd_answers: AtomicU64,
    /// DNS answers sent.
    pub dns_answers: AtomicU64,
    drops: [AtomicU64; 10],
}

impl Counters {
    /// Counts one dropped frame.
    pub fn dropped(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Frames dropped for `reason` so far.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].load(Ordering::Relaxed)
    }
}

/// One network's DNS endpoint, as the frame's checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The IPv4 DNS address.
    pub addr: Option<Ipv4Addr>,
    /// The IPv6 DNS address.
    pub addr6: Option<Ipv6Addr>,
    /// The MAC it answers with.
    pub mac: [u8; 6],
}

/// The IPv4 side of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V4 {
    addr: Ipv4Addr,
    mac: [u8; 6],
}

/// What a frame asked for, and the frame that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An ARP reply.
    Arp(Vec<u8>),
    /// A DNS answer in UDP/IPv4 or UDP/IPv6.
    Dns(Vec<u8>),
    /// A neighbour advertisement (IPv6).
    Nd(Vec<u8>),
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, DropReason> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(DropReason::Truncated)
}

fn ipv4_at(b: &[u8], at: usize) -> Result<Ipv4Addr, DropReason> {
    b.get(at..at + 4)
        .map(|s| Ipv4Addr::new(s[0], s[1], s[2], s[3]))
        .ok_or(DropReason::Truncated)
}

fn mac_at(b: &[u8], at: usize) -> Result<[u8; 6], DropReason> {
    let s = b.get(at..at + 6).ok_or(DropReason::Truncated)?;
    let mut mac = [0; 6];
    mac.copy_from_slice(s);
    Ok(mac)
}

/// The ones' complement sum of `data` (RFC 1071), added to `sum`.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The UDP checksum sum over the IPv4 pseudo-header and `udp` (header and payload).
fn udp_sum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut sum = sum16(0, &src.octets());
    sum = sum16(sum, &dst.octets());
    sum += 17 + udp.len() as u32;
    fold(sum16(sum, udp))
}

fn unicast_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
}

fn unicast_source(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

/// The answer to one punted frame for endpoint `ep`: `dns` turns a DNS message into the
/// answer's DNS message (`None`: say nothing). Checks everything first (see the module doc).
pub fn answer(
    frame: &[u8],
    ep: Endpoint,
    dns: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Result<Reply, DropReason> {
    let dst_mac = mac_at(frame, 0)?;
    let src_mac = mac_at(frame, 6)?;
    let eth_type = u16_at(frame, 12)?;
    if ETH_TYPES_VLAN.contains(&eth_type) {
        return Err(DropReason::Vlan);
    }
    if !unicast_mac(&src_mac) {
        return Err(DropReason::BadSource);
    }
    let body = &frame[ETH_HEADER..];
    let v4 = || {
        ep.addr
            .map(|addr| V4 { addr, mac: ep.mac })
            .ok_or(DropReason::WrongTarget)
    };
    match eth_type {
        ETH_TYPE_ARP => arp(body, src_mac, v4()?).map(Reply::Arp),
        ETH_TYPE_IPV4 => {
            // A query goes to the DNS MAC (after ARP) or, from a pod that guessed, anywhere
            // unicast; never to a group address.
            if dst_mac[0] & 1 != 0 {
                return Err(DropReason::WrongTarget);
            }
            udp(body, src_mac, v4()?, dns).map(Reply::Dns)
        }
        ETH_TYPE_IPV6 => {
            let addr6 = ep.addr6.ok_or(DropReason::WrongTarget)?;
            ipv6(body, dst_mac, src_mac, ep.mac, addr6, dns)
        }
        _ => Err(DropReason::NotQuery),
    }
}

fn arp(body: &[u8], src_mac: [u8; 6], ep: V4) -> Result<Vec<u8>, DropReason> {
    if body.len() < ARP_LEN {
        return Err(DropReason::Truncated);
    }
    let (htype, ptype, hlen, plen, op) = (
        u16_at(body, 0)?,
        u16_at(body, 2)?,
        body[4],
        body[5],
        u16_at(body, 6)?,
    );
    if (htype, ptype, hlen, plen, op) != (1, ETH_TYPE_IPV4, 6, 4, 1) {
        return Err(DropReason::NotQuery);
    }
    let sha = mac_at(body, 8)?;
    let spa = ipv4_at(body, 14)?;
    let tpa = ipv4_at(body, 24)?;
    if tpa != ep.addr {
        return Err(DropReason::WrongTarget);
    }
    // Duplicate address detection probes (sender 0.0.0.0) are answered too: the address is
    // taken. A sender claiming the DNS address itself, or another MAC than the frame's, not.
    if sha != src_mac || spa == ep.addr || spa.is_broadcast() || spa.is_multicast() {
        return Err(DropReason::BadSource);
    }
    let mut out = Vec::with_capacity(MIN_FRAME);
    out.extend_from_slice(&src_mac);
    out.extend_from_slice(&ep.mac);
    out.extend_from_slice(&ETH_TYPE_ARP.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    out.extend_from_slice(&ep.mac);
    out.extend_from_slice(&ep.addr.octets());
    out.extend_from_slice(&sha);
    out.extend_from_slice(&spa.octets());
    out.resize(MIN_FRAME, 0);
    Ok(out)
}

fn udp(
    body: &[u8],
    src_mac: [u8; 6],
    ep: V4,
    dns: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, DropReason> {
    let first = *body.first().ok_or(DropReason::Truncated)?;
    if first >> 4 != 4 {
        return Err(DropReason::BadIp);
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 {
        return Err(DropReason::BadIp);
    }
    let header = body.get(..ihl).ok_or(DropReason::Truncated)?;
    let total = usize::from(u16_at(body, 2)?);
    if total < ihl {
        return Err(DropReason::BadIp);
    }
    // Frames may carry padding after the packet, never less than it.
    let packet = body.get(..total).ok_or(DropReason::Truncated)?;
    if fold(sum16(0, header)) != 0xffff {
        return Err(DropReason::BadIp);
    }
    let frag = u16_at(body, 6)?;
    if frag & 0x2000 != 0 || frag & 0x1fff != 0 {
        return Err(DropReason::Fragment);
    }
    if header[9] != l2sm_pipeline::dns::IPPROTO_UDP {
        return Err(DropReason::NotQuery);
    }
    let src = ipv4_at(header, 12)?;
    let dst = ipv4_at(header, 16)?;
    if dst != ep.addr {
        return Err(DropReason::WrongTarget);
    }
    if !unicast_source(src) {
        return Err(DropReason::BadSource);
    }
    let datagram = &packet[ihl..];
    let udp_len = usize::from(u16_at(datagram, 4)?);
    if udp_len < 8 || udp_len > datagram.len() {
        return Err(DropReason::BadUdp);
    }
    let datagram = &datagram[..udp_len];
    let (sport, dport, checksum) = (
        u16_at(datagram, 0)?,
        u16_at(datagram, 2)?,
        u16_at(datagram, 6)?,
    );
    if dport != l2sm_pipeline::dns::DNS_PORT || sport == 0 {
        return Err(DropReason::BadUdp);
    }
    if checksum != 0 && udp_sum(src, dst, datagram) != 0xffff {
        return Err(DropReason::BadUdp);
    }
    let answer = dns(&datagram[8..]).ok_or(DropReason::Silent)?;
    Ok(udp_frame(src_mac, src, sport, ep, &answer))
}

/// An Ethernet/IPv4/UDP frame from `ep`'s port 53 to `(dst_mac, dst, dport)` carrying `payload`.
fn udp_frame(dst_mac: [u8; 6], dst: Ipv4Addr, dport: u16, ep: V4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut out = Vec::with_capacity(ETH_HEADER + total);
    out.extend_from_slice(&dst_mac);
    out.extend_from_slice(&ep.mac);
    out.extend_from_slice(&ETH_TYPE_IPV4.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = REPLY_TTL;
    ip[9] = l2sm_pipeline::dns::IPPROTO_UDP;
    ip[12..16].copy_from_slice(&ep.addr.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let csum = !fold(sum16(0, &ip));
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    out.extend_from_slice(&ip);
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&l2sm_pipeline::dns::DNS_PORT.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let csum = match !udp_sum(ep.addr, dst, &udp) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&csum.to_be_bytes());
    out.extend_from_slice(&udp);
    out.resize(out.len().max(MIN_FRAME), 0);
    out
}

/// The checksum sum over the IPv6 pseudo-header (next header `next`) and `data`.
fn sum6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, data: &[u8]) -> u16 {
    let mut sum = sum16(0, &src.octets());
    sum = sum16(sum, &dst.octets());
    let len = data.len() as u32;
    sum += (len >> 16) + (len & 0xffff) + u32::from(next);
    fold(sum16(sum, data))
}

fn unicast6(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_loopback())
}

/// An IPv6 packet for the IPv6 DNS address: a neighbour solicitation for it, or a UDP query
/// to its port 53. No extension headers (anything else is not a query).
fn ipv6(
    body: &[u8],
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    mac: [u8; 6],
    addr6: Ipv6Addr,
    dns: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Result<Reply, DropReason> {
    let header = body.get(..IPV6_HEADER).ok_or(DropReason::Truncated)?;
    if header[0] >> 4 != 6 {
        return Err(DropReason::BadIp);
    }
    let payload_len = usize::from(u16_at(header, 4)?);
    let payload = body
        .get(IPV6_HEADER..IPV6_HEADER + payload_len)
        .ok_or(DropReason::Truncated)?;
    let (next, hop_limit) = (header[6], header[7]);
    let addr_at = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&header[at..at + 16]);
        Ipv6Addr::from(a)
    };
    let (src, dst) = (addr_at(8), addr_at(24));
    match next {
        l2sm_pipeline::dns::IPPROTO_ICMPV6 => {
            if payload.len() < 24 {
                return Err(DropReason::Truncated);
            }
            if payload[0] != l2sm_pipeline::port_security::ICMPV6_NS || payload[1] != 0 {
                return Err(DropReason::NotQuery);
            }
            if hop_limit != ND_HOP_LIMIT || sum6(src, dst, next, payload) != 0xffff {
                return Err(DropReason::BadIp);
            }
            let mut target = [0u8; 16];
            target.copy_from_slice(&payload[8..24]);
            if Ipv6Addr::from(target) != addr6 {
                return Err(DropReason::WrongTarget);
            }
            // Duplicate address detection (from ::) is not answered: the address is never
            // handed out, and a DAD answer goes to all nodes.
            if !unicast6(src) {
                return Err(DropReason::BadSource);
            }
            // Options: each a type, a length in units of 8 octets (never 0), within the packet.
            let mut opts = &payload[24..];
            while !opts.is_empty() {
                let len = usize::from(*opts.get(1).ok_or(DropReason::Truncated)?) * 8;
                if len == 0 {
                    return Err(DropReason::NotQuery);
                }
                opts = opts.get(len..).ok_or(DropReason::Truncated)?;
            }
            Ok(Reply::Nd(na_frame(src_mac, src, mac, addr6)))
        }
        l2sm_pipeline::dns::IPPROTO_UDP => {
            if dst_mac[0] & 1 != 0 {
                return Err(DropReason::WrongTarget);
            }
            if dst != addr6 {
                return Err(DropReason::WrongTarget);
            }
            if !unicast6(src) {
                return Err(DropReason::BadSource);
            }
            let udp_len = usize::from(u16_at(payload, 4)?);
            if udp_len < 8 || udp_len > payload.len() {
                return Err(DropReason::BadUdp);
            }
            let datagram = &payload[..udp_len];
            let (sport, dport, checksum) = (
                u16_at(datagram, 0)?,
                u16_at(datagram, 2)?,
                u16_at(datagram, 6)?,
            );
            if dport != l2sm_pipeline::dns::DNS_PORT || sport == 0 {
                return Err(DropReason::BadUdp);
            }
            // Over IPv6 the UDP checksum is mandatory.
            if checksum == 0 || sum6(src, dst, next, datagram) != 0xffff {
                return Err(DropReason::BadUdp);
            }
            let answer = dns(&datagram[8..]).ok_or(DropReason::Silent)?;
            Ok(Reply::Dns(udp6_frame(
                src_mac, src, sport, mac, addr6, &answer,
            )))
        }
        _ => Err(DropReason::NotQuery),
    }
}

/// An Ethernet/IPv6 header from (`mac`, `src`) to (`dst_mac`, `dst`) for `payload`.
fn ipv6_frame(
    dst_mac: [u8; 6],
    dst: Ipv6Addr,
    mac: [u8; 6],
    src: Ipv6Addr,
    next: u8,
    hop_limit: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_HEADER + IPV6_HEADER + payload.len());
    out.extend_from_slice(&dst_mac);
    out.extend_from_slice(&mac);
    out.extend_from_slice(&ETH_TYPE_IPV6.to_be_bytes());
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(&[next, hop_limit]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(payload);
    out.resize(out.len().max(MIN_FRAME), 0);
    out
}

/// The solicited neighbour advertisement of `addr6` (`mac`) to (`dst_mac`, `dst`).
fn na_frame(dst_mac: [u8; 6], dst: Ipv6Addr, mac: [u8; 6], addr6: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![l2sm_pipeline::port_security::ICMPV6_NA, 0, 0, 0];
    icmp.extend_from_slice(&[0x60, 0, 0, 0]); // solicited, override
    icmp.extend_from_slice(&addr6.octets());
    icmp.extend_from_slice(&[2, 1]); // target link-layer address
    icmp.extend_from_slice(&mac);
    let c = !sum6(addr6, dst, l2sm_pipeline::dns::IPPROTO_ICMPV6, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv6_frame(
        dst_mac,
        dst,
        mac,
        addr6,
        l2sm_pipeline::dns::IPPROTO_ICMPV6,
        ND_HOP_LIMIT,
        &icmp,
    )
}

/// A UDP/IPv6 frame from `addr6` port 53 to (`dst_mac`, `dst`, `dport`) carrying `payload`.
fn udp6_frame(
    dst_mac: [u8; 6],
    dst: Ipv6Addr,
    dport: u16,
    mac: [u8; 6],
    addr6: Ipv6Addr,
    payload: &[u8],
) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut udp = Vec::with_capacity(len);
    udp.extend_from_slice(&l2sm_pipeline::dns::DNS_PORT.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&(len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let c = match !sum6(addr6, dst, l2sm_pipeline::dns::IPPROTO_UDP, &udp) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    ipv6_frame(
        dst_mac,
        dst,
        mac,
        addr6,
        l2sm_pipeline::dns::IPPROTO_UDP,
        REPLY_TTL,
        &udp,
    )
}

/// The DNS answer to `msg` from inside network `network` (UDP size limits apply: 512 octets,
/// or the client's EDNS size up to 1232). `None`: say nothing.
pub fn respond(zone: &crate::dns::Zone, network: &str, msg: &[u8]) -> Option<Vec<u8>> {
    match wire::parse_query(msg) {
        Ok(query) => {
            let answer = zone.answer_from_network(network, &query);
            let limit = match query.edns {
                Some(e) => usize::from(e.udp_size.clamp(512, wire::EDNS_UDP_SIZE)),
                None => wire::PLAIN_UDP_SIZE,
            };
            Some(wire::encode_answer(&query, &answer, limit))
        }
        Err(wire::WireError::Direction) => None,
        Err(_) => wire::header_only_answer(msg, wire::RCODE_FORMERR),
    }
}

/// Per-port token buckets of one switch: each member port may have `rate` frames a second
/// answered, in bursts of `burst`. At most one bucket per port of the switch that is a member
/// of a network with DNS (the caller checks membership first).
#[derive(Debug)]
pub struct PortBuckets {
    rate: f64,
    burst: f64,
    buckets: HashMap<u32, (f64, Instant)>,
}

/// Frames per second a pod port may have answered (ARP and DNS together).
pub const PORT_RATE: u32 = 100;
/// Burst of [`PORT_RATE`].
pub const PORT_BURST: u32 = 200;

impl Default for PortBuckets {
    fn default() -> Self {
        PortBuckets::new(PORT_RATE, PORT_BURST)
    }
}

impl PortBuckets {
    /// `rate` per second, bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> PortBuckets {
        PortBuckets {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether a frame from `port` may be answered at `now`.
    pub fn allow(&mut self, port: u32, now: Instant) -> bool {
        let (tokens, last) = self.buckets.entry(port).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.rate;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets ports that are no longer members.
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        self.buckets.retain(|p, _| keep(*p));
    }
}

#[cfg(test)]
mod tests;
