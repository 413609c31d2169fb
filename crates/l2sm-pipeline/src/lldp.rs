//! LLDP link probes (IEEE 802.1AB), as ONOS and Faucet use them to confirm inter-switch links:
//! the controller sends one out of a link port by PACKET_OUT, the switch at the other end
//! hands it back by PACKET_IN, and the probe says where it was sent from. The chassis id is the
//! datapath id (`of:<16 hex>`, locally assigned subtype), the port id the port number
//! (decimal, locally assigned subtype). Decoding takes any bytes and never panics.

/// Destination of probes: the nearest-bridge group address, which bridges never forward.
pub const LLDP_MULTICAST: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];

const TLV_END: u8 = 0;
const TLV_CHASSIS_ID: u8 = 1;
const TLV_PORT_ID: u8 = 2;
const TLV_TTL: u8 = 3;
/// Organizationally specific TLV: carries the probe's sequence number.
const TLV_ORG: u8 = 127;
/// OUI of the sequence TLV: locally administered (no registered OUI), "L2" and a version.
const SEQ_OUI: [u8; 3] = [0x02, 0x4c, 0x32];
/// Subtype of the sequence TLV.
const SEQ_SUBTYPE: u8 = 1;
/// Chassis and port id subtype "locally assigned".
const SUBTYPE_LOCAL: u8 = 7;

/// Where a probe was sent from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probe {
    /// Sending switch.
    pub dpid: u64,
    /// Port it was sent out of.
    pub port: u32,
}

/// Why a frame is not one of our probes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LldpError {
    /// Shorter than its headers say.
    #[error("truncated LLDP frame")]
    Truncated,
    /// Not ethertype 0x88cc.
    #[error("not an LLDP frame (ethertype {0:#06x})")]
    NotLldp(u16),
    /// A mandatory TLV is missing or out of order.
    #[error("LLDP frame lacks its {0} TLV")]
    Missing(&'static str),
    /// A chassis or port id this controller does not send.
    #[error("LLDP {0} is not one of ours")]
    Foreign(&'static str),
}

fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    // 7-bit type, 9-bit length; our values are far below 512 bytes.
    let len = value.len().min(511) as u16;
    out.extend_from_slice(&((u16::from(kind) << 9) | len).to_be_bytes());
    out.extend_from_slice(&value[..usize::from(len)]);
}

/// The probe frame for `probe`, with a time-to-live of `ttl_secs`.
pub fn encode(probe: Probe, ttl_secs: u16) -> Vec<u8> {
    encode_inner(probe, ttl_secs, None)
}

/// The probe frame for `probe` carrying sequence number `seq` (an organizationally specific
/// TLV after the time to live): the controller matches the probe that comes back with the
/// time it sent it, and counts the ones that never do.
pub fn encode_seq(probe: Probe, ttl_secs: u16, seq: u64) -> Vec<u8> {
    encode_inner(probe, ttl_secs, Some(seq))
}

fn encode_inner(probe: Probe, ttl_secs: u16, seq: Option<u64>) -> Vec<u8> {
    // Built in place (probes go out on every link each interval): one allocation, sized for
    // the longest frame (14 + 22 + 13 + 4 + 14 + 2 bytes).
    let mut f = Vec::with_capacity(72);
    f.extend_from_slice(&LLDP_MULTICAST);
    // Locally administered source address derived from the datapath id.
    let d = probe.dpid.to_be_bytes();
    f.extend_from_slice(&[0x02, d[3], d[4], d[5], d[6], d[7]]);
    f.extend_from_slice(&crate::ETH_TYPE_LLDP.to_be_bytes());
    // "of:" and the datapath id in 16 lowercase hex digits.
    let mut chassis = [0u8; 20];
    chassis[..4].copy_from_slice(&[SUBTYPE_LOCAL, b'o', b'f', b':']);
    for (i, c) in chassis[4..].iter_mut().enumerate() {
        *c = b"0123456789abcdef"[((probe.dpid >> (60 - 4 * i)) & 0xf) as usize];
    }
    tlv(&mut f, TLV_CHASSIS_ID, &chassis);
    // The port number in decimal.
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut n = probe.port;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut port = [SUBTYPE_LOCAL; 11];
    let port_len = 1 + digits.len() - at;
    port[1..port_len].copy_from_slice(&digits[at..]);
    tlv(&mut f, TLV_PORT_ID, &port[..port_len]);
    tlv(&mut f, TLV_TTL, &ttl_secs.to_be_bytes());
    if let Some(seq) = seq {
        let mut v = [0u8; 12];
        v[..3].copy_from_slice(&SEQ_OUI);
        v[3] = SEQ_SUBTYPE;
        v[4..].copy_from_slice(&seq.to_be_bytes());
        tlv(&mut f, TLV_ORG, &v);
    }
    tlv(&mut f, TLV_END, &[]);
    f
}

/// The text of a "locally assigned" chassis or port id.
fn local_id<'a>(v: &'a [u8], name: &'static str) -> Result<&'a str, LldpError> {
    match v.split_first() {
        Some((&SUBTYPE_LOCAL, rest)) => {
            std::str::from_utf8(rest).map_err(|_| LldpError::Foreign(name))
        }
        _ => Err(LldpError::Foreign(name)),
    }
}

/// Decodes a probe sent by [`encode`] (an 802.1Q tag in front is tolerated). Anything else,
/// including other LLDP speakers' frames, is an error.
pub fn decode(frame: &[u8]) -> Result<Probe, LldpError> {
    decode_seq(frame).map(|(p, _)| p)
}

/// Decodes a probe sent by [`encode`] or [`encode_seq`], with its sequence number when it
/// carries one (a malformed sequence TLV counts as none).
pub fn decode_seq(frame: &[u8]) -> Result<(Probe, Option<u64>), LldpError> {
    let be16 = |b: &[u8], at: usize| -> Result<u16, LldpError> {
        let s = b.get(at..at + 2).ok_or(LldpError::Truncated)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    };
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    if ethertype == crate::ETH_TYPE_VLAN {
        at += 4;
        ethertype = be16(frame, at)?;
    }
    if ethertype != crate::ETH_TYPE_LLDP {
        return Err(LldpError::NotLldp(ethertype));
    }
    at += 2;
    let mut tlvs: Vec<(u8, &[u8])> = Vec::new();
    loop {
        let header = be16(frame, at)?;
        let (kind, len) = ((header >> 9) as u8, usize::from(header & 0x1ff));
        let value = frame
            .get(at + 2..at + 2 + len)
            .ok_or(LldpError::Truncated)?;
        if kind == TLV_END {
            break;
        }
        tlvs.push((kind, value));
        at += 2 + len;
    }
    let get = |i: usize, kind: u8, name: &'static str| match tlvs.get(i) {
        Some((k, v)) if *k == kind => Ok(*v),
        _ => Err(LldpError::Missing(name)),
    };
    let chassis = get(0, TLV_CHASSIS_ID, "chassis id")?;
    let port = get(1, TLV_PORT_ID, "port id")?;
    get(2, TLV_TTL, "time to live")?;
    let dpid = local_id(chassis, "chassis id")?
        .strip_prefix("of:")
        .filter(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or(LldpError::Foreign("chassis id"))?;
    let port_str = local_id(port, "port id")?;
    let port = port_str
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| port_str.parse::<u32>().ok())
        .flatten()
        .ok_or(LldpError::Foreign("port id"))?;
    let seq = tlvs.iter().skip(3).find_map(|(kind, v)| {
        if *kind != TLV_ORG || v.get(..3) != Some(&SEQ_OUI[..]) || v.get(3) != Some(&SEQ_SUBTYPE) {
            return None;
        }
        let bytes: [u8; 8] = v.get(4..12)?.try_into().ok()?;
        Some(u64::from_be_bytes(bytes))
    });
    Ok((Probe { dpid, port }, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_wire_layout() {
        let p = Probe {
            dpid: 0x0000_1234_5678_9abc,
            port: 61440,
        };
        let f = encode(p, 4);
        assert_eq!(&f[..6], &LLDP_MULTICAST);
        assert_eq!(&f[12..14], &[0x88, 0xcc]);
        assert_eq!(decode(&f), Ok(p));
        // Chassis TLV: type 1, length 1 + 19.
        assert_eq!(&f[14..17], &[0x02, 20, SUBTYPE_LOCAL]);
        assert_eq!(&f[17..36], b"of:0000123456789abc");
    }

    #[test]
    fn a_vlan_tag_in_front_is_tolerated() {
        let p = Probe { dpid: 7, port: 1 };
        let mut f = encode(p, 4);
        f.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        assert_eq!(decode(&f), Ok(p));
    }

    #[test]
    fn garbage_is_refused() {
        let good = encode(Probe { dpid: 7, port: 1 }, 4);
        assert_eq!(decode(&[]), Err(LldpError::Truncated));
        assert_eq!(decode(&good[..20]), Err(LldpError::Truncated));
        let mut ip = good.clone();
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(decode(&ip), Err(LldpError::NotLldp(0x0800)));
        // MAC-address chassis id (subtype 4), as other LLDP speakers send.
        let mut other = good[..14].to_vec();
        tlv(&mut other, TLV_CHASSIS_ID, &[4, 1, 2, 3, 4, 5, 6]);
        tlv(&mut other, TLV_PORT_ID, &[SUBTYPE_LOCAL, b'1']);
        tlv(&mut other, TLV_TTL, &[0, 4]);
        tlv(&mut other, TLV_END, &[]);
        assert_eq!(decode(&other), Err(LldpError::Foreign("chassis id")));
        let mut no_ttl = good[..14].to_vec();
        tlv(&mut no_ttl, TLV_CHASSIS_ID, b"\x07of:0000000000000007");
        tlv(&mut no_ttl, TLV_PORT_ID, b"\x07+1");
        tlv(&mut no_ttl, TLV_END, &[]);
        assert_eq!(decode(&no_ttl), Err(LldpError::Missing("time to live")));
        let mut bad_port = good[..14].to_vec();
        tlv(&mut bad_port, TLV_CHASSIS_ID, b"\x07of:0000000000000007");
        tlv(&mut bad_port, TLV_PORT_ID, b"\x07+1");
        tlv(&mut bad_port, TLV_TTL, &[0, 4]);
        tlv(&mut bad_port, TLV_END, &[]);
        assert_eq!(decode(&bad_port), Err(LldpError::Foreign("port id")));
        let mut huge = good[..14].to_vec();
        tlv(&mut huge, TLV_CHASSIS_ID, b"\x07of:0000000000000007");
        tlv(&mut huge, TLV_PORT_ID, b"\x0799999999999");
        tlv(&mut huge, TLV_TTL, &[0, 4]);
        tlv(&mut huge, TLV_END, &[]);
        assert_eq!(decode(&huge), Err(LldpError::Foreign("port id")));
    }

    /// The frame as the first version built it (a Vec per TLV, `format!` for the ids): the
    /// in-place encoder must give the same bytes.
    fn reference_encoding(probe: Probe, ttl_secs: u16, seq: Option<u64>) -> Vec<u8> {
        let mut f = LLDP_MULTICAST.to_vec();
        let d = probe.dpid.to_be_bytes();
        f.extend_from_slice(&[0x02, d[3], d[4], d[5], d[6], d[7]]);
        f.extend_from_slice(&crate::ETH_TYPE_LLDP.to_be_bytes());
        let mut chassis = vec![SUBTYPE_LOCAL];
        chassis.extend_from_slice(format!("of:{:016x}", probe.dpid).as_bytes());
        tlv(&mut f, TLV_CHASSIS_ID, &chassis);
        let mut port = vec![SUBTYPE_LOCAL];
        port.extend_from_slice(probe.port.to_string().as_bytes());
        tlv(&mut f, TLV_PORT_ID, &port);
        tlv(&mut f, TLV_TTL, &ttl_secs.to_be_bytes());
        if let Some(seq) = seq {
            let mut v = SEQ_OUI.to_vec();
            v.push(SEQ_SUBTYPE);
            v.extend_from_slice(&seq.to_be_bytes());
            tlv(&mut f, TLV_ORG, &v);
        }
        tlv(&mut f, TLV_END, &[]);
        f
    }

    #[test]
    fn the_encoding_is_byte_for_byte_the_reference_one_at_the_edges() {
        for dpid in [0, 1, 0xf, 0x10, u64::MAX, 0x0123_4567_89ab_cdef] {
            for port in [0, 1, 9, 10, 99, 100, 61440, 4_294_967_039, u32::MAX] {
                for seq in [None, Some(0), Some(u64::MAX)] {
                    let p = Probe { dpid, port };
                    let got = encode_inner(p, 7, seq);
                    assert_eq!(got, reference_encoding(p, 7, seq), "{p:?} {seq:?}");
                    assert!(
                        got.len() <= got.capacity() && got.capacity() == 72,
                        "one allocation"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn the_encoding_is_byte_for_byte_the_reference_one(dpid in any::<u64>(), port in any::<u32>(), ttl in any::<u16>(), seq in any::<Option<u64>>()) {
            let p = Probe { dpid, port };
            prop_assert_eq!(encode_inner(p, ttl, seq), reference_encoding(p, ttl, seq));
        }

        #[test]
        fn round_trips(dpid in any::<u64>(), port in any::<u32>(), ttl in any::<u16>()) {
            prop_assert_eq!(decode(&encode(Probe { dpid, port }, ttl)), Ok(Probe { dpid, port }));
        }

        #[test]
        fn sequence_numbers_round_trip(dpid in any::<u64>(), port in any::<u32>(), seq in any::<u64>()) {
            let f = encode_seq(Probe { dpid, port }, 4, seq);
            prop_assert_eq!(decode_seq(&f), Ok((Probe { dpid, port }, Some(seq))));
            prop_assert_eq!(decode(&f), Ok(Probe { dpid, port }));
            prop_assert_eq!(decode_seq(&encode(Probe { dpid, port }, 4)), Ok((Probe { dpid, port }, None)));
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_probes_never_panic(idx in 0usize..64, byte in any::<u8>(), cut in 0usize..64) {
            let mut f = encode(Probe { dpid: 0xabcd, port: 61441 }, 4);
            if idx < f.len() { f[idx] = byte; }
            f.truncate(cut.max(1).min(f.len()));
            let _ = decode(&f);
        }
    }
}
