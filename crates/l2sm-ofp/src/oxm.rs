//! `struct ofp_match` of type OFPMT_OXM and OXM TLVs (OpenFlow 1.3.5 §7.2.3).
//!
//! ```text
//! ofp_match:   | type = 1 (16) | length (16) | OXM TLVs ... | zero pad to 8 |
//! OXM header:  | class (16) | field (7) | hasmask (1) | payload length (8) |
//! ```
//!
//! `ofp_match.length` excludes the trailing padding while the enclosing structure must
//! skip it, so both lengths are handled here and nowhere else.
//!
//! A TLV decodes to a typed [`OxmField`] variant only when class, field, mask bit and
//! payload length all match the variant's shape; anything else (other fields, or an odd
//! shape of a known one) becomes [`OxmField::Other`] so it re-encodes byte for byte.
//!
//! Payload widths of the OpenFlow-basic fields (bytes; doubled when masked, `m` = the
//! spec allows a mask):
//!
//! ```text
//!  0 in_port 4        10 ip_proto 1      20 icmpv4_code 1   30 icmpv6_code 1
//!  1 in_phy_port 4    11 ipv4_src 4 m    21 arp_op 2        31 ipv6_nd_target 16
//!  2 metadata 8 m     12 ipv4_dst 4 m    22 arp_spa 4 m     32 ipv6_nd_sll 6
//!  3 eth_dst 6 m      13 tcp_src 2       23 arp_tpa 4 m     33 ipv6_nd_tll 6
//!  4 eth_src 6 m      14 tcp_dst 2       24 arp_sha 6 m     34 mpls_label 4
//!  5 eth_type 2       15 udp_src 2       25 arp_tha 6 m     35 mpls_tc 1
//!  6 vlan_vid 2 m     16 udp_dst 2       26 ipv6_src 16 m   36 mpls_bos 1
//!  7 vlan_pcp 1       17 sctp_src 2      27 ipv6_dst 16 m   37 pbb_isid 3 m
//!  8 ip_dscp 1        18 sctp_dst 2      28 ipv6_flabel 4 m 38 tunnel_id 8 m
//!  9 ip_ecn 1         19 icmpv4_type 1   29 icmpv6_type 1   39 ipv6_exthdr 2 m
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{DecodeError, DecodeResult, EncodeError, EncodeResult};
use crate::types::{Match, OxmField};
use crate::wire::{pad8, Reader, Writer};

/// `OFPXMC_NXM_1`: the Nicira extension class holding `NXM_NX_REG0..15`.
pub const OXM_CLASS_NXM_1: u16 = 0x0001;
/// `OFPXMC_OPENFLOW_BASIC`.
pub const OXM_CLASS_OPENFLOW_BASIC: u16 = 0x8000;
/// `OFPVID_PRESENT`: set in [`OxmField::VlanVid`] values to match tagged frames.
pub const OFPVID_PRESENT: u16 = 0x1000;

const OFPMT_OXM: u16 = 1;
/// Nicira registers 0..=15 (field 16 of the same class is already `NXM_NX_TUN_ID`).
const NX_REG_COUNT: u8 = 16;

/// `enum oxm_ofb_match_fields`.
mod ofb {
    pub(super) const IN_PORT: u8 = 0;
    pub(super) const IN_PHY_PORT: u8 = 1;
    pub(super) const METADATA: u8 = 2;
    pub(super) const ETH_DST: u8 = 3;
    pub(super) const ETH_SRC: u8 = 4;
    pub(super) const ETH_TYPE: u8 = 5;
    pub(super) const VLAN_VID: u8 = 6;
    pub(super) const VLAN_PCP: u8 = 7;
    pub(super) const IP_DSCP: u8 = 8;
    pub(super) const IP_ECN: u8 = 9;
    pub(super) const IP_PROTO: u8 = 10;
    pub(super) const IPV4_SRC: u8 = 11;
    pub(super) const IPV4_DST: u8 = 12;
    pub(super) const TCP_SRC: u8 = 13;
    pub(super) const TCP_DST: u8 = 14;
    pub(super) const UDP_SRC: u8 = 15;
    pub(super) const UDP_DST: u8 = 16;
    pub(super) const SCTP_SRC: u8 = 17;
    pub(super) const SCTP_DST: u8 = 18;
    pub(super) const ICMPV4_TYPE: u8 = 19;
    pub(super) const ICMPV4_CODE: u8 = 20;
    pub(super) const ARP_OP: u8 = 21;
    pub(super) const ARP_SPA: u8 = 22;
    pub(super) const ARP_TPA: u8 = 23;
    pub(super) const ARP_SHA: u8 = 24;
    pub(super) const ARP_THA: u8 = 25;
    pub(super) const IPV6_SRC: u8 = 26;
    pub(super) const IPV6_DST: u8 = 27;
    pub(super) const IPV6_FLABEL: u8 = 28;
    pub(super) const ICMPV6_TYPE: u8 = 29;
    pub(super) const ICMPV6_CODE: u8 = 30;
    pub(super) const IPV6_ND_TARGET: u8 = 31;
    pub(super) const IPV6_ND_SLL: u8 = 32;
    pub(super) const IPV6_ND_TLL: u8 = 33;
    pub(super) const MPLS_LABEL: u8 = 34;
    pub(super) const MPLS_TC: u8 = 35;
    pub(super) const MPLS_BOS: u8 = 36;
    pub(super) const PBB_ISID: u8 = 37;
    pub(super) const TUNNEL_ID: u8 = 38;
    pub(super) const IPV6_EXTHDR: u8 = 39;
}

const fn oxm_header(class: u16, field: u8, has_mask: bool, len: u8) -> u32 {
    crate::types::nxm::header(class, field, has_mask, len)
}

impl OxmField {
    /// `in_port=port`.
    pub const fn in_port(port: u32) -> Self {
        OxmField::InPort(port)
    }
    /// `eth_dst=mac`.
    pub const fn eth_dst(mac: [u8; 6]) -> Self {
        OxmField::EthDst {
            value: mac,
            mask: None,
        }
    }
    /// `eth_dst=mac/mask` (for example the multicast bit `01:00:00:00:00:00/01:00:00:00:00:00`).
    pub const fn eth_dst_masked(mac: [u8; 6], mask: [u8; 6]) -> Self {
        OxmField::EthDst {
            value: mac,
            mask: Some(mask),
        }
    }
    /// `eth_src=mac`.
    pub const fn eth_src(mac: [u8; 6]) -> Self {
        OxmField::EthSrc {
            value: mac,
            mask: None,
        }
    }
    /// `eth_src=mac/mask`.
    pub const fn eth_src_masked(mac: [u8; 6], mask: [u8; 6]) -> Self {
        OxmField::EthSrc {
            value: mac,
            mask: Some(mask),
        }
    }
    /// `eth_type=ethertype`.
    pub const fn eth_type(ethertype: u16) -> Self {
        OxmField::EthType(ethertype)
    }
    /// `vlan_vid=vid` for a tagged frame (sets [`OFPVID_PRESENT`]).
    pub const fn vlan_vid(vid: u16) -> Self {
        OxmField::VlanVid {
            value: vid | OFPVID_PRESENT,
            mask: None,
        }
    }
    /// `tunnel_id=id` (the VXLAN VNI on OVS).
    pub const fn tunnel_id(id: u64) -> Self {
        OxmField::TunnelId {
            value: id,
            mask: None,
        }
    }
    /// `tunnel_id=id/mask`.
    pub const fn tunnel_id_masked(id: u64, mask: u64) -> Self {
        OxmField::TunnelId {
            value: id,
            mask: Some(mask),
        }
    }
    /// `metadata=value`.
    pub const fn metadata(value: u64) -> Self {
        OxmField::Metadata { value, mask: None }
    }
    /// `metadata=value/mask`.
    pub const fn metadata_masked(value: u64, mask: u64) -> Self {
        OxmField::Metadata {
            value,
            mask: Some(mask),
        }
    }
    /// `reg<idx>=value` (Nicira register, `idx` in 0..=15).
    pub const fn reg(idx: u8, value: u32) -> Self {
        OxmField::NxReg {
            idx,
            value,
            mask: None,
        }
    }
    /// `reg<idx>=value/mask`.
    pub const fn reg_masked(idx: u8, value: u32, mask: u32) -> Self {
        OxmField::NxReg {
            idx,
            value,
            mask: Some(mask),
        }
    }
    /// `ip_proto=proto` (needs `eth_type` IPv4 or IPv6 first).
    pub const fn ip_proto(proto: u8) -> Self {
        OxmField::IpProto(proto)
    }
    /// `ipv4_src=addr` (needs `eth_type=0x0800` first).
    pub const fn ipv4_src(addr: Ipv4Addr) -> Self {
        OxmField::Ipv4Src {
            value: addr,
            mask: None,
        }
    }
    /// `ipv4_dst=addr` (needs `eth_type=0x0800` first).
    pub const fn ipv4_dst(addr: Ipv4Addr) -> Self {
        OxmField::Ipv4Dst {
            value: addr,
            mask: None,
        }
    }
    /// `ipv4_dst=addr/prefix_len`: the address with its host bits cleared, masked.
    /// `prefix_len` 32 or more gives the unmasked form.
    pub fn ipv4_dst_prefix(addr: Ipv4Addr, prefix_len: u8) -> Self {
        if prefix_len >= 32 {
            return OxmField::ipv4_dst(addr);
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0);
        OxmField::Ipv4Dst {
            value: Ipv4Addr::from(u32::from(addr) & mask),
            mask: Some(Ipv4Addr::from(mask)),
        }
    }

    /// The OXM class and field number of this TLV.
    pub fn class_and_field(&self) -> (u16, u8) {
        use ofb::*;
        const B: u16 = OXM_CLASS_OPENFLOW_BASIC;
        let field = match self {
            OxmField::InPort(_) => IN_PORT,
            OxmField::InPhyPort(_) => IN_PHY_PORT,
            OxmField::Metadata { .. } => METADATA,
            OxmField::EthDst { .. } => ETH_DST,
            OxmField::EthSrc { .. } => ETH_SRC,
            OxmField::EthType(_) => ETH_TYPE,
            OxmField::VlanVid { .. } => VLAN_VID,
            OxmField::VlanPcp(_) => VLAN_PCP,
            OxmField::IpDscp(_) => IP_DSCP,
            OxmField::IpEcn(_) => IP_ECN,
            OxmField::IpProto(_) => IP_PROTO,
            OxmField::Ipv4Src { .. } => IPV4_SRC,
            OxmField::Ipv4Dst { .. } => IPV4_DST,
            OxmField::TcpSrc(_) => TCP_SRC,
            OxmField::TcpDst(_) => TCP_DST,
            OxmField::UdpSrc(_) => UDP_SRC,
            OxmField::UdpDst(_) => UDP_DST,
            OxmField::SctpSrc(_) => SCTP_SRC,
            OxmField::SctpDst(_) => SCTP_DST,
            OxmField::Icmpv4Type(_) => ICMPV4_TYPE,
            OxmField::Icmpv4Code(_) => ICMPV4_CODE,
            OxmField::ArpOp(_) => ARP_OP,
            OxmField::ArpSpa { .. } => ARP_SPA,
            OxmField::ArpTpa { .. } => ARP_TPA,
            OxmField::ArpSha { .. } => ARP_SHA,
            OxmField::ArpTha { .. } => ARP_THA,
            OxmField::Ipv6Src { .. } => IPV6_SRC,
            OxmField::Ipv6Dst { .. } => IPV6_DST,
            OxmField::Ipv6Flabel { .. } => IPV6_FLABEL,
            OxmField::Icmpv6Type(_) => ICMPV6_TYPE,
            OxmField::Icmpv6Code(_) => ICMPV6_CODE,
            OxmField::Ipv6NdTarget(_) => IPV6_ND_TARGET,
            OxmField::Ipv6NdSll(_) => IPV6_ND_SLL,
            OxmField::Ipv6NdTll(_) => IPV6_ND_TLL,
            OxmField::MplsLabel(_) => MPLS_LABEL,
            OxmField::MplsTc(_) => MPLS_TC,
            OxmField::MplsBos(_) => MPLS_BOS,
            OxmField::PbbIsid { .. } => PBB_ISID,
            OxmField::TunnelId { .. } => TUNNEL_ID,
            OxmField::Ipv6Exthdr { .. } => IPV6_EXTHDR,
            OxmField::NxReg { idx, .. } => return (OXM_CLASS_NXM_1, *idx),
            OxmField::Other { class, field, .. } => return (*class, *field),
        };
        (B, field)
    }

    /// Whether the TLV carries a mask (OXM `hasmask` bit).
    pub fn has_mask(&self) -> bool {
        match self {
            OxmField::Metadata { mask, .. } | OxmField::TunnelId { mask, .. } => mask.is_some(),
            OxmField::EthDst { mask, .. }
            | OxmField::EthSrc { mask, .. }
            | OxmField::ArpSha { mask, .. }
            | OxmField::ArpTha { mask, .. } => mask.is_some(),
            OxmField::VlanVid { mask, .. } | OxmField::Ipv6Exthdr { mask, .. } => mask.is_some(),
            OxmField::Ipv4Src { mask, .. }
            | OxmField::Ipv4Dst { mask, .. }
            | OxmField::ArpSpa { mask, .. }
            | OxmField::ArpTpa { mask, .. } => mask.is_some(),
            OxmField::Ipv6Src { mask, .. } | OxmField::Ipv6Dst { mask, .. } => mask.is_some(),
            OxmField::Ipv6Flabel { mask, .. }
            | OxmField::PbbIsid { mask, .. }
            | OxmField::NxReg { mask, .. } => mask.is_some(),
            OxmField::Other { has_mask, .. } => *has_mask,
            OxmField::InPort(_)
            | OxmField::InPhyPort(_)
            | OxmField::EthType(_)
            | OxmField::VlanPcp(_)
            | OxmField::IpDscp(_)
            | OxmField::IpEcn(_)
            | OxmField::IpProto(_)
            | OxmField::TcpSrc(_)
            | OxmField::TcpDst(_)
            | OxmField::UdpSrc(_)
            | OxmField::UdpDst(_)
            | OxmField::SctpSrc(_)
            | OxmField::SctpDst(_)
            | OxmField::Icmpv4Type(_)
            | OxmField::Icmpv4Code(_)
            | OxmField::ArpOp(_)
            | OxmField::Icmpv6Type(_)
            | OxmField::Icmpv6Code(_)
            | OxmField::Ipv6NdTarget(_)
            | OxmField::Ipv6NdSll(_)
            | OxmField::Ipv6NdTll(_)
            | OxmField::MplsLabel(_)
            | OxmField::MplsTc(_)
            | OxmField::MplsBos(_) => false,
        }
    }
}

/// Writes one OpenFlow-basic TLV of an `N`-byte field, with its mask if any.
fn put<const N: usize>(w: &mut Writer, field: u8, value: [u8; N], mask: Option<[u8; N]>) {
    // N is at most 16, so the payload length always fits the 8-bit OXM length.
    let len = if mask.is_some() { 2 * N } else { N };
    w.u32(oxm_header(
        OXM_CLASS_OPENFLOW_BASIC,
        field,
        mask.is_some(),
        len as u8,
    ));
    w.bytes(&value);
    if let Some(m) = mask {
        w.bytes(&m);
    }
}

/// The low three bytes of a 24-bit PBB I-SID, or an error if it does not fit.
fn isid_bytes(v: u32, ctx: &'static str, item: &str) -> EncodeResult<[u8; 3]> {
    match v.to_be_bytes() {
        [0, a, b, c] => Ok([a, b, c]),
        _ => Err(EncodeError::Unrepresentable {
            context: ctx,
            detail: format!("oxm pbb_isid {item} {v:#x} does not fit in 24 bits"),
        }),
    }
}

/// Appends one OXM TLV.
pub(crate) fn encode_oxm(w: &mut Writer, f: &OxmField, ctx: &'static str) -> EncodeResult<()> {
    use ofb::*;
    let v4 = |a: &Ipv4Addr| a.octets();
    let v6 = |a: &Ipv6Addr| a.octets();
    match f {
        OxmField::InPort(p) => put(w, IN_PORT, p.to_be_bytes(), None),
        OxmField::InPhyPort(p) => put(w, IN_PHY_PORT, p.to_be_bytes(), None),
        OxmField::Metadata { value, mask } => {
            put(w, METADATA, value.to_be_bytes(), mask.map(u64::to_be_bytes))
        }
        OxmField::EthDst { value, mask } => put(w, ETH_DST, *value, *mask),
        OxmField::EthSrc { value, mask } => put(w, ETH_SRC, *value, *mask),
        OxmField::EthType(t) => put(w, ETH_TYPE, t.to_be_bytes(), None),
        OxmField::VlanVid { value, mask } => {
            put(w, VLAN_VID, value.to_be_bytes(), mask.map(u16::to_be_bytes))
        }
        OxmField::VlanPcp(v) => put(w, VLAN_PCP, [*v], None),
        OxmField::IpDscp(v) => put(w, IP_DSCP, [*v], None),
        OxmField::IpEcn(v) => put(w, IP_ECN, [*v], None),
        OxmField::IpProto(v) => put(w, IP_PROTO, [*v], None),
        OxmField::Ipv4Src { value, mask } => put(w, IPV4_SRC, v4(value), mask.as_ref().map(v4)),
        OxmField::Ipv4Dst { value, mask } => put(w, IPV4_DST, v4(value), mask.as_ref().map(v4)),
        OxmField::TcpSrc(p) => put(w, TCP_SRC, p.to_be_bytes(), None),
        OxmField::TcpDst(p) => put(w, TCP_DST, p.to_be_bytes(), None),
        OxmField::UdpSrc(p) => put(w, UDP_SRC, p.to_be_bytes(), None),
        OxmField::UdpDst(p) => put(w, UDP_DST, p.to_be_bytes(), None),
        OxmField::SctpSrc(p) => put(w, SCTP_SRC, p.to_be_bytes(), None),
        OxmField::SctpDst(p) => put(w, SCTP_DST, p.to_be_bytes(), None),
        OxmField::Icmpv4Type(v) => put(w, ICMPV4_TYPE, [*v], None),
        OxmField::Icmpv4Code(v) => put(w, ICMPV4_CODE, [*v], None),
        OxmField::ArpOp(v) => put(w, ARP_OP, v.to_be_bytes(), None),
        OxmField::ArpSpa { value, mask } => put(w, ARP_SPA, v4(value), mask.as_ref().map(v4)),
        OxmField::ArpTpa { value, mask } => put(w, ARP_TPA, v4(value), mask.as_ref().map(v4)),
        OxmField::ArpSha { value, mask } => put(w, ARP_SHA, *value, *mask),
        OxmField::ArpTha { value, mask } => put(w, ARP_THA, *value, *mask),
        OxmField::Ipv6Src { value, mask } => put(w, IPV6_SRC, v6(value), mask.as_ref().map(v6)),
        OxmField::Ipv6Dst { value, mask } => put(w, IPV6_DST, v6(value), mask.as_ref().map(v6)),
        OxmField::Ipv6Flabel { value, mask } => put(
            w,
            IPV6_FLABEL,
            value.to_be_bytes(),
            mask.map(u32::to_be_bytes),
        ),
        OxmField::Icmpv6Type(v) => put(w, ICMPV6_TYPE, [*v], None),
        OxmField::Icmpv6Code(v) => put(w, ICMPV6_CODE, [*v], None),
        OxmField::Ipv6NdTarget(a) => put(w, IPV6_ND_TARGET, v6(a), None),
        OxmField::Ipv6NdSll(mac) => put(w, IPV6_ND_SLL, *mac, None),
        OxmField::Ipv6NdTll(mac) => put(w, IPV6_ND_TLL, *mac, None),
        OxmField::MplsLabel(v) => put(w, MPLS_LABEL, v.to_be_bytes(), None),
        OxmField::MplsTc(v) => put(w, MPLS_TC, [*v], None),
        OxmField::MplsBos(v) => put(w, MPLS_BOS, [*v], None),
        OxmField::PbbIsid { value, mask } => {
            let value = isid_bytes(*value, ctx, "value")?;
            let mask = mask.map(|m| isid_bytes(m, ctx, "mask")).transpose()?;
            put(w, PBB_ISID, value, mask);
        }
        OxmField::TunnelId { value, mask } => put(
            w,
            TUNNEL_ID,
            value.to_be_bytes(),
            mask.map(u64::to_be_bytes),
        ),
        OxmField::Ipv6Exthdr { value, mask } => put(
            w,
            IPV6_EXTHDR,
            value.to_be_bytes(),
            mask.map(u16::to_be_bytes),
        ),
        OxmField::NxReg { idx, value, mask } => {
            if *idx >= NX_REG_COUNT {
                return Err(EncodeError::Unrepresentable {
                    context: ctx,
                    detail: format!("oxm nx register index {idx} is outside 0..=15"),
                });
            }
            w.u32(oxm_header(
                OXM_CLASS_NXM_1,
                *idx,
                mask.is_some(),
                if mask.is_some() { 8 } else { 4 },
            ));
            w.u32(*value);
            if let Some(m) = mask {
                w.u32(*m);
            }
        }
        OxmField::Other {
            class,
            field,
            has_mask,
            value,
        } => {
            if *field > 0x7f {
                return Err(EncodeError::Unrepresentable {
                    context: ctx,
                    detail: format!("oxm field number {field} does not fit in 7 bits"),
                });
            }
            let len = u8::try_from(value.len()).map_err(|_| EncodeError::TooLong {
                context: ctx,
                item: "oxm payload",
                len: value.len(),
                max: usize::from(u8::MAX),
            })?;
            w.u32(oxm_header(*class, *field, *has_mask, len));
            w.bytes(value);
        }
    }
    Ok(())
}

/// Payload length of an `n`-byte field, with or without its mask.
const fn width(n: u8, masked: bool) -> u8 {
    if masked {
        2 * n
    } else {
        n
    }
}

/// Reads a value and, when `masked`, the mask that follows it.
fn masked<T>(
    p: &mut Reader<'_>,
    masked: bool,
    read: impl Fn(&mut Reader<'_>) -> DecodeResult<T>,
) -> DecodeResult<(T, Option<T>)> {
    let value = read(p)?;
    let mask = if masked { Some(read(p)?) } else { None };
    Ok((value, mask))
}

fn ipv4(p: &mut Reader<'_>) -> DecodeResult<Ipv4Addr> {
    p.array::<4>("oxm ipv4 address").map(Ipv4Addr::from)
}

fn ipv6(p: &mut Reader<'_>) -> DecodeResult<Ipv6Addr> {
    p.array::<16>("oxm ipv6 address").map(Ipv6Addr::from)
}

fn mac(p: &mut Reader<'_>) -> DecodeResult<[u8; 6]> {
    p.array("oxm mac address")
}

fn be16(p: &mut Reader<'_>) -> DecodeResult<u16> {
    p.u16("oxm 16-bit value")
}

fn be32(p: &mut Reader<'_>) -> DecodeResult<u32> {
    p.u32("oxm 32-bit value")
}

fn be64(p: &mut Reader<'_>) -> DecodeResult<u64> {
    p.u64("oxm 64-bit value")
}

fn isid(p: &mut Reader<'_>) -> DecodeResult<u32> {
    let [a, b, c] = p.array("oxm pbb_isid")?;
    Ok(u32::from_be_bytes([0, a, b, c]))
}

/// Decodes an OpenFlow-basic payload whose shape matches a typed variant; `None` for any
/// other shape (which the caller keeps raw).
fn decode_basic(field: u8, m: bool, len: u8, p: &mut Reader<'_>) -> DecodeResult<Option<OxmField>> {
    use ofb::*;
    // Unmaskable fields must come without the mask bit; maskable ones with the length
    // their mask bit implies.
    let plain = |n: u8| !m && len == n;
    let maskable = |n: u8| len == width(n, m);
    let f = match field {
        IN_PORT if plain(4) => OxmField::InPort(be32(p)?),
        IN_PHY_PORT if plain(4) => OxmField::InPhyPort(be32(p)?),
        METADATA if maskable(8) => {
            let (value, mask) = masked(p, m, be64)?;
            OxmField::Metadata { value, mask }
        }
        ETH_DST if maskable(6) => {
            let (value, mask) = masked(p, m, mac)?;
            OxmField::EthDst { value, mask }
        }
        ETH_SRC if maskable(6) => {
            let (value, mask) = masked(p, m, mac)?;
            OxmField::EthSrc { value, mask }
        }
        ETH_TYPE if plain(2) => OxmField::EthType(be16(p)?),
        VLAN_VID if maskable(2) => {
            let (value, mask) = masked(p, m, be16)?;
            OxmField::VlanVid { value, mask }
        }
        VLAN_PCP if plain(1) => OxmField::VlanPcp(p.u8("oxm vlan_pcp")?),
        IP_DSCP if plain(1) => OxmField::IpDscp(p.u8("oxm ip_dscp")?),
        IP_ECN if plain(1) => OxmField::IpEcn(p.u8("oxm ip_ecn")?),
        IP_PROTO if plain(1) => OxmField::IpProto(p.u8("oxm ip_proto")?),
        IPV4_SRC if maskable(4) => {
            let (value, mask) = masked(p, m, ipv4)?;
            OxmField::Ipv4Src { value, mask }
        }
        IPV4_DST if maskable(4) => {
            let (value, mask) = masked(p, m, ipv4)?;
            OxmField::Ipv4Dst { value, mask }
        }
        TCP_SRC if plain(2) => OxmField::TcpSrc(be16(p)?),
        TCP_DST if plain(2) => OxmField::TcpDst(be16(p)?),
        UDP_SRC if plain(2) => OxmField::UdpSrc(be16(p)?),
        UDP_DST if plain(2) => OxmField::UdpDst(be16(p)?),
        SCTP_SRC if plain(2) => OxmField::SctpSrc(be16(p)?),
        SCTP_DST if plain(2) => OxmField::SctpDst(be16(p)?),
        ICMPV4_TYPE if plain(1) => OxmField::Icmpv4Type(p.u8("oxm icmpv4_type")?),
        ICMPV4_CODE if plain(1) => OxmField::Icmpv4Code(p.u8("oxm icmpv4_code")?),
        ARP_OP if plain(2) => OxmField::ArpOp(be16(p)?),
        ARP_SPA if maskable(4) => {
            let (value, mask) = masked(p, m, ipv4)?;
            OxmField::ArpSpa { value, mask }
        }
        ARP_TPA if maskable(4) => {
            let (value, mask) = masked(p, m, ipv4)?;
            OxmField::ArpTpa { value, mask }
        }
        ARP_SHA if maskable(6) => {
            let (value, mask) = masked(p, m, mac)?;
            OxmField::ArpSha { value, mask }
        }
        ARP_THA if maskable(6) => {
            let (value, mask) = masked(p, m, mac)?;
            OxmField::ArpTha { value, mask }
        }
        IPV6_SRC if maskable(16) => {
            let (value, mask) = masked(p, m, ipv6)?;
            OxmField::Ipv6Src { value, mask }
        }
        IPV6_DST if maskable(16) => {
            let (value, mask) = masked(p, m, ipv6)?;
            OxmField::Ipv6Dst { value, mask }
        }
        IPV6_FLABEL if maskable(4) => {
            let (value, mask) = masked(p, m, be32)?;
            OxmField::Ipv6Flabel { value, mask }
        }
        ICMPV6_TYPE if plain(1) => OxmField::Icmpv6Type(p.u8("oxm icmpv6_type")?),
        ICMPV6_CODE if plain(1) => OxmField::Icmpv6Code(p.u8("oxm icmpv6_code")?),
        IPV6_ND_TARGET if plain(16) => OxmField::Ipv6NdTarget(ipv6(p)?),
        IPV6_ND_SLL if plain(6) => OxmField::Ipv6NdSll(mac(p)?),
        IPV6_ND_TLL if plain(6) => OxmField::Ipv6NdTll(mac(p)?),
        MPLS_LABEL if plain(4) => OxmField::MplsLabel(be32(p)?),
        MPLS_TC if plain(1) => OxmField::MplsTc(p.u8("oxm mpls_tc")?),
        MPLS_BOS if plain(1) => OxmField::MplsBos(p.u8("oxm mpls_bos")?),
        PBB_ISID if maskable(3) => {
            let (value, mask) = masked(p, m, isid)?;
            OxmField::PbbIsid { value, mask }
        }
        TUNNEL_ID if maskable(8) => {
            let (value, mask) = masked(p, m, be64)?;
            OxmField::TunnelId { value, mask }
        }
        IPV6_EXTHDR if maskable(2) => {
            let (value, mask) = masked(p, m, be16)?;
            OxmField::Ipv6Exthdr { value, mask }
        }
        _ => return Ok(None),
    };
    Ok(Some(f))
}

/// Reads one OXM TLV.
pub(crate) fn decode_oxm(r: &mut Reader<'_>) -> DecodeResult<OxmField> {
    let header = r.u32("oxm header")?;
    let class = (header >> 16) as u16;
    let field = ((header >> 9) & 0x7f) as u8;
    let has_mask = header & 0x100 != 0;
    let len = (header & 0xff) as u8;
    let payload = r.take(usize::from(len), "oxm payload")?;
    let mut p = Reader::new(payload, r.ctx());
    let typed = match class {
        OXM_CLASS_OPENFLOW_BASIC => decode_basic(field, has_mask, len, &mut p)?,
        OXM_CLASS_NXM_1 if field < NX_REG_COUNT && len == width(4, has_mask) => {
            let (value, mask) = masked(&mut p, has_mask, be32)?;
            Some(OxmField::NxReg {
                idx: field,
                value,
                mask,
            })
        }
        _ => None,
    };
    Ok(typed.unwrap_or_else(|| OxmField::Other {
        class,
        field,
        has_mask,
        value: payload.to_vec(),
    }))
}

/// Appends an OXM `ofp_match` including its trailing zero padding.
pub(crate) fn encode_match(w: &mut Writer, m: &Match, ctx: &'static str) -> EncodeResult<()> {
    let start = w.len();
    w.u16(OFPMT_OXM);
    let len_at = w.placeholder16();
    for f in &m.fields {
        encode_oxm(w, f, ctx)?;
    }
    w.patch_len16(len_at, start, ctx, "match")?;
    w.pad8_from(start);
    Ok(())
}

/// Reads an `ofp_match` and skips its padding.
pub(crate) fn decode_match(r: &mut Reader<'_>) -> DecodeResult<Match> {
    let ctx = r.ctx();
    let mtype = r.u16("match type")?;
    if mtype != OFPMT_OXM {
        return Err(DecodeError::BadValue {
            context: ctx,
            item: "match type",
            value: mtype.into(),
        });
    }
    let len = usize::from(r.u16("match length")?);
    if len < 4 {
        return Err(DecodeError::TooShort {
            context: ctx,
            item: "match",
            len,
            min: 4,
        });
    }
    let mut body = r.sub(len - 4, "match")?;
    r.skip(pad8(len), "match padding")?;
    let mut fields = Vec::new();
    while !body.is_empty() {
        fields.push(decode_oxm(&mut body)?);
    }
    Ok(Match { fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(m: &Match) -> Vec<u8> {
        let mut w = Writer::new();
        encode_match(&mut w, m, "test").unwrap();
        w.into_vec()
    }

    #[test]
    fn empty_match_is_padded_to_eight() {
        assert_eq!(enc(&Match::any()), [0, 1, 0, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn in_port_match_matches_ovs_bytes() {
        // From `ovs-ofctl -O OpenFlow13 add-flow ... in_port=1,...` (OVS 3.1).
        let m = Match::any().with(OxmField::in_port(1));
        assert_eq!(
            enc(&m),
            [0, 1, 0, 0x0c, 0x80, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn odd_shapes_of_known_fields_stay_raw() {
        // IN_PORT with the mask bit set is not a legal OXM, but must survive intact.
        let raw = [0x80, 0x00, 0x01, 0x08, 0, 0, 0, 1, 0, 0, 0, 0xff];
        let mut r = Reader::new(&raw, "test");
        let f = decode_oxm(&mut r).unwrap();
        assert_eq!(
            f,
            OxmField::Other {
                class: 0x8000,
                field: 0,
                has_mask: true,
                value: raw[4..].to_vec()
            }
        );
        let mut w = Writer::new();
        encode_oxm(&mut w, &f, "test").unwrap();
        assert_eq!(w.into_vec(), raw);
    }

    #[test]
    fn non_oxm_match_type_is_rejected() {
        let mut r = Reader::new(&[0, 0, 0, 88], "flow_mod");
        assert_eq!(
            decode_match(&mut r).unwrap_err().to_string(),
            "flow_mod: match type value 0x0 is not valid"
        );
    }

    #[test]
    fn register_index_out_of_range() {
        let mut w = Writer::new();
        let err = encode_oxm(&mut w, &OxmField::reg(16, 1), "flow_mod").unwrap_err();
        assert_eq!(
            err.to_string(),
            "flow_mod: oxm nx register index 16 is outside 0..=15"
        );
    }
}
