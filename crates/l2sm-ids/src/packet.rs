//! Raw Ethernet frames → what rules look at.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The parts of a frame a rule looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IP source.
    pub src_ip: IpAddr,
    /// IP destination.
    pub dst_ip: IpAddr,
    /// IP protocol (IPv6: the upper-layer header after any extension headers).
    pub proto: u8,
    /// TCP/UDP source port (absent for other protocols and for non-first fragments).
    pub src_port: Option<u16>,
    /// TCP/UDP destination port.
    pub dst_port: Option<u16>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// What `content` looks at: the TCP/UDP payload, the ICMP data after its 8-byte header,
    /// else the IP payload.
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses an Ethernet II frame (one optional 802.1Q tag) carrying IPv4 or IPv6; `None` for
/// anything else or a truncated header.
pub fn parse_frame(frame: &[u8]) -> Option<Packet<'_>> {
    let dst_mac: [u8; 6] = frame.get(0..6)?.try_into().ok()?;
    let src_mac: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
    let mut off = 12;
    let mut ethertype = be16(frame, off)?;
    if ethertype == 0x8100 {
        off += 4;
        ethertype = be16(frame, off)?;
    }
    let l3 = frame.get(off + 2..)?;
    let (src_ip, dst_ip, proto, l4, first_fragment) = match ethertype {
        0x0800 => {
            if l3.first()? >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(l3.first()? & 0x0f) * 4;
            if ihl < 20 || ihl > l3.len() {
                return None;
            }
            let total = usize::from(be16(l3, 2)?);
            let end = total.clamp(ihl, l3.len());
            let frag_offset = be16(l3, 6)? & 0x1fff;
            let src: [u8; 4] = l3.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = l3.get(16..20)?.try_into().ok()?;
            (
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                *l3.get(9)?,
                l3.get(ihl..end)?,
                frag_offset == 0,
            )
        }
        0x86dd => {
            if l3.first()? >> 4 != 6 {
                return None;
            }
            let plen = usize::from(be16(l3, 4)?);
            let src: [u8; 16] = l3.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = l3.get(24..40)?.try_into().ok()?;
            let end = (40 + plen).min(l3.len());
            // Skip extension headers (hop-by-hop, routing, destination options, fragment) to
            // the upper-layer header; a later fragment has no ports.
            let mut next = *l3.get(6)?;
            let mut at = 40;
            let mut first = true;
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        let len = (usize::from(*l3.get(at + 1)?) + 1) * 8;
                        next = *l3.get(at)?;
                        at += len;
                    }
                    44 => {
                        first = be16(l3, at + 2)? & 0xfff8 == 0;
                        next = *l3.get(at)?;
                        at += 8;
                    }
                    _ => break,
                }
            }
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                next,
                l3.get(at.min(end)..end)?,
                first,
            )
        }
        _ => return None,
    };
    let mut p = Packet {
        src_mac,
        dst_mac,
        src_ip,
        dst_ip,
        proto,
        src_port: None,
        dst_port: None,
        icmp: None,
        payload: l4,
    };
    if !first_fragment {
        return Some(p);
    }
    match proto {
        6 => {
            let data = usize::from(l4.get(12)? >> 4) * 4;
            p.src_port = be16(l4, 0);
            p.dst_port = be16(l4, 2);
            p.payload = l4.get(data.max(20)..).unwrap_or(&[]);
        }
        17 => {
            p.src_port = be16(l4, 0);
            p.dst_port = be16(l4, 2);
            p.payload = l4.get(8..).unwrap_or(&[]);
        }
        1 | 58 => {
            p.icmp = Some((*l4.first()?, *l4.get(1)?));
            p.payload = l4.get(8..).unwrap_or(&[]);
        }
        _ => {}
    }
    Some(p)
}

/// A MAC as `aa:bb:cc:dd:ee:ff`.
pub(crate) fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
