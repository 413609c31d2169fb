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
const OFPXMT_OFB_IN_PORT: u8 = 0;
const OFPXMT_OFB_METADATA: u8 = 2;
const OFPXMT_OFB_ETH_DST: u8 = 3;
const OFPXMT_OFB_ETH_SRC: u8 = 4;
const OFPXMT_OFB_ETH_TYPE: u8 = 5;
const OFPXMT_OFB_VLAN_VID: u8 = 6;
const OFPXMT_OFB_TUNNEL_ID: u8 = 38;
/// Nicira registers 0..=15 (field 16 of the same class is already `NXM_NX_TUN_ID`).
const NX_REG_COUNT: u8 = 16;

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

    /// Whether the TLV carries a mask (OXM `hasmask` bit).
    pub fn has_mask(&self) -> bool {
        match self {
            OxmField::InPort(_) | OxmField::EthType(_) => false,
            OxmField::Metadata { mask, .. } | OxmField::TunnelId { mask, .. } => mask.is_some(),
            OxmField::EthDst { mask, .. } | OxmField::EthSrc { mask, .. } => mask.is_some(),
            OxmField::VlanVid { mask, .. } => mask.is_some(),
            OxmField::NxReg { mask, .. } => mask.is_some(),
            OxmField::Other { has_mask, .. } => *has_mask,
        }
    }
}

/// Appends one OXM TLV.
pub(crate) fn encode_oxm(w: &mut Writer, f: &OxmField, ctx: &'static str) -> EncodeResult<()> {
    const B: u16 = OXM_CLASS_OPENFLOW_BASIC;
    match f {
        OxmField::InPort(p) => {
            w.u32(oxm_header(B, OFPXMT_OFB_IN_PORT, false, 4));
            w.u32(*p);
        }
        OxmField::Metadata { value, mask } => put_u64(w, B, OFPXMT_OFB_METADATA, *value, *mask),
        OxmField::EthDst { value, mask } => put_mac(w, OFPXMT_OFB_ETH_DST, value, mask.as_ref()),
        OxmField::EthSrc { value, mask } => put_mac(w, OFPXMT_OFB_ETH_SRC, value, mask.as_ref()),
        OxmField::EthType(t) => {
            w.u32(oxm_header(B, OFPXMT_OFB_ETH_TYPE, false, 2));
            w.u16(*t);
        }
        OxmField::VlanVid { value, mask } => {
            w.u32(oxm_header(
                B,
                OFPXMT_OFB_VLAN_VID,
                mask.is_some(),
                if mask.is_some() { 4 } else { 2 },
            ));
            w.u16(*value);
            if let Some(m) = mask {
                w.u16(*m);
            }
        }
        OxmField::TunnelId { value, mask } => put_u64(w, B, OFPXMT_OFB_TUNNEL_ID, *value, *mask),
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

fn put_u64(w: &mut Writer, class: u16, field: u8, value: u64, mask: Option<u64>) {
    w.u32(oxm_header(
        class,
        field,
        mask.is_some(),
        if mask.is_some() { 16 } else { 8 },
    ));
    w.u64(value);
    if let Some(m) = mask {
        w.u64(m);
    }
}

fn put_mac(w: &mut Writer, field: u8, value: &[u8; 6], mask: Option<&[u8; 6]>) {
    let len = if mask.is_some() { 12 } else { 6 };
    w.u32(oxm_header(
        OXM_CLASS_OPENFLOW_BASIC,
        field,
        mask.is_some(),
        len,
    ));
    w.bytes(value);
    if let Some(m) = mask {
        w.bytes(m);
    }
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
    const B: u16 = OXM_CLASS_OPENFLOW_BASIC;
    let typed = match (class, field, has_mask, len) {
        (B, OFPXMT_OFB_IN_PORT, false, 4) => OxmField::InPort(p.u32("oxm in_port")?),
        (B, OFPXMT_OFB_METADATA, false, 8) => OxmField::Metadata {
            value: p.u64("oxm metadata")?,
            mask: None,
        },
        (B, OFPXMT_OFB_METADATA, true, 16) => OxmField::Metadata {
            value: p.u64("oxm metadata")?,
            mask: Some(p.u64("oxm metadata mask")?),
        },
        (B, OFPXMT_OFB_ETH_DST, false, 6) => OxmField::EthDst {
            value: p.array("oxm eth_dst")?,
            mask: None,
        },
        (B, OFPXMT_OFB_ETH_DST, true, 12) => OxmField::EthDst {
            value: p.array("oxm eth_dst")?,
            mask: Some(p.array("oxm eth_dst mask")?),
        },
        (B, OFPXMT_OFB_ETH_SRC, false, 6) => OxmField::EthSrc {
            value: p.array("oxm eth_src")?,
            mask: None,
        },
        (B, OFPXMT_OFB_ETH_SRC, true, 12) => OxmField::EthSrc {
            value: p.array("oxm eth_src")?,
            mask: Some(p.array("oxm eth_src mask")?),
        },
        (B, OFPXMT_OFB_ETH_TYPE, false, 2) => OxmField::EthType(p.u16("oxm eth_type")?),
        (B, OFPXMT_OFB_VLAN_VID, false, 2) => OxmField::VlanVid {
            value: p.u16("oxm vlan_vid")?,
            mask: None,
        },
        (B, OFPXMT_OFB_VLAN_VID, true, 4) => OxmField::VlanVid {
            value: p.u16("oxm vlan_vid")?,
            mask: Some(p.u16("oxm vlan_vid mask")?),
        },
        (B, OFPXMT_OFB_TUNNEL_ID, false, 8) => OxmField::TunnelId {
            value: p.u64("oxm tunnel_id")?,
            mask: None,
        },
        (B, OFPXMT_OFB_TUNNEL_ID, true, 16) => OxmField::TunnelId {
            value: p.u64("oxm tunnel_id")?,
            mask: Some(p.u64("oxm tunnel_id mask")?),
        },
        (OXM_CLASS_NXM_1, idx, false, 4) if idx < NX_REG_COUNT => OxmField::NxReg {
            idx,
            value: p.u32("oxm nx register")?,
            mask: None,
        },
        (OXM_CLASS_NXM_1, idx, true, 8) if idx < NX_REG_COUNT => OxmField::NxReg {
            idx,
            value: p.u32("oxm nx register")?,
            mask: Some(p.u32("oxm nx register mask")?),
        },
        _ => OxmField::Other {
            class,
            field,
            has_mask,
            value: payload.to_vec(),
        },
    };
    Ok(typed)
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
