//! Nicira experimenter actions (OVS `include/openflow/nicira-ext.h`, `lib/ofp-actions.c`,
//! `lib/learn.c`): `NXAST_RESUBMIT_TABLE`, `NXAST_LEARN` and `NXAST_LEARN2`.
//!
//! ```text
//! nx_action_learn (32 bytes, then specs, then zero padding to 8):
//! | type=0xffff | len | vendor=0x00002320 | subtype=16 | idle | hard | priority |
//! | cookie (64) | flags | table_id | pad | fin_idle | fin_hard |
//! nx_action_learn2 (40 bytes, then the result field header when flags has WRITE_RESULT,
//! then specs, then zero padding to 8):
//! | the 32 bytes above with subtype=45 | limit (32) | result_dst_ofs (16) | pad2 (16) |
//! [ result_dst: NXM header (32) ]
//! spec: | 0 0 | src:1 | dst:2 | n_bits:11 | src (field: header32 + ofs16, or immediate) |
//!       | dst (match/load: header32 + ofs16; output: nothing) |
//! ```
//!
//! Immediates occupy `2 * ceil(n_bits / 16)` bytes, big-endian, value right-aligned.
//! OVS stops at an all-zero spec header and rejects non-zero bytes after it, so the
//! encoder refuses `n_bits == 0` (it would read as the terminator).

use crate::error::{DecodeError, DecodeResult, EncodeError, EncodeResult};
use crate::types::{Action, LearnSpec, NxLearn, NxLearn2, NxmFieldRef};
use crate::wire::{Reader, Writer};

/// `NX_VENDOR_ID`, the experimenter id of every Nicira action.
pub const NX_VENDOR_ID: u32 = 0x0000_2320;
/// `in_port` of [`Action::NxResubmit`] that keeps the packet's input port (`OFPP_IN_PORT`
/// in OpenFlow 1.0's 16-bit port space, which this action still uses).
pub const NX_RESUBMIT_IN_PORT: u16 = 0xfff8;
/// [`NxLearn::flags`] bit: learned flows send FLOW_REMOVED (`NX_LEARN_F_SEND_FLOW_REM`).
pub const NX_LEARN_F_SEND_FLOW_REM: u16 = 1 << 0;
/// [`NxLearn::flags`] bit: delete learned flows with the learning flow
/// (`NX_LEARN_F_DELETE_LEARNED`).
pub const NX_LEARN_F_DELETE_LEARNED: u16 = 1 << 1;
/// [`NxLearn::flags`] bit of an [`NxLearn2`]: write the result bit to its `result_dst`
/// (`NX_LEARN_F_WRITE_RESULT`).
pub const NX_LEARN_F_WRITE_RESULT: u16 = 1 << 2;

pub(crate) const NXAST_RESUBMIT_TABLE: u16 = 14;
pub(crate) const NXAST_LEARN: u16 = 16;
pub(crate) const NXAST_LEARN2: u16 = 45;
const OFPAT_EXPERIMENTER: u16 = 0xffff;
const NX_RESUBMIT_LEN: u16 = 16;

const NX_LEARN_SRC_IMMEDIATE: u16 = 1 << 13;
const NX_LEARN_DST_LOAD: u16 = 1 << 11;
const NX_LEARN_DST_OUTPUT: u16 = 2 << 11;
const NX_LEARN_DST_MASK: u16 = 3 << 11;
const NX_LEARN_RESERVED_BITS: u16 = 0xc000;
const NX_LEARN_N_BITS_MASK: u16 = 0x07ff;
/// The experimenter OXM class, whose headers are 64 bits and so do not fit [`NxmFieldRef`].
const OXM_CLASS_EXPERIMENTER: u32 = 0xffff;

/// Width in bits of the field an NXM/OXM header names (half the payload when masked).
pub const fn nxm_field_bits(header: u32) -> u16 {
    let len = (header & 0xff) as u16;
    let has_mask = header & 0x100 != 0;
    if has_mask {
        len / 2 * 8
    } else {
        len * 8
    }
}

/// Bytes an immediate of `n_bits` occupies in a learn spec.
pub(crate) const fn immediate_len(n_bits: u16) -> usize {
    2 * (n_bits as usize).div_ceil(16)
}

impl NxmFieldRef {
    /// A reference starting at bit `ofs` of the field `header`.
    pub const fn new(header: u32, ofs: u16) -> Self {
        NxmFieldRef { header, ofs }
    }
    /// The whole field (offset 0); pair it with [`nxm_field_bits`] for `n_bits`.
    pub const fn whole(header: u32) -> Self {
        NxmFieldRef { header, ofs: 0 }
    }
}

impl LearnSpec {
    /// `dst[]=src[]`: the learned flow matches all of `dst` against the current `src`.
    pub const fn match_fields(src: u32, dst: u32) -> Self {
        LearnSpec::MatchField {
            src: NxmFieldRef::whole(src),
            dst: NxmFieldRef::whole(dst),
            n_bits: nxm_field_bits(dst),
        }
    }
    /// `field[]`: the learned flow matches `field` against its current value.
    pub const fn match_same(field: u32) -> Self {
        LearnSpec::match_fields(field, field)
    }
    /// `dst[ofs..]=value`: the learned flow matches `n_bits` of `dst` against a constant.
    pub fn match_value(value: u64, dst: NxmFieldRef, n_bits: u16) -> Self {
        LearnSpec::MatchImmediate {
            value: immediate_bytes(value, n_bits),
            dst,
            n_bits,
        }
    }
    /// `load:src[]->dst[]`: the learned flow copies the current `src` into `dst`.
    pub const fn load_fields(src: u32, dst: u32) -> Self {
        LearnSpec::LoadField {
            src: NxmFieldRef::whole(src),
            dst: NxmFieldRef::whole(dst),
            n_bits: nxm_field_bits(dst),
        }
    }
    /// `load:value->dst[ofs..]`.
    pub fn load_value(value: u64, dst: NxmFieldRef, n_bits: u16) -> Self {
        LearnSpec::LoadImmediate {
            value: immediate_bytes(value, n_bits),
            dst,
            n_bits,
        }
    }
    /// `output:src[]`: the learned flow outputs to the port currently held in `src`.
    pub const fn output_field(src: u32) -> Self {
        LearnSpec::Output {
            src: NxmFieldRef::whole(src),
            n_bits: nxm_field_bits(src),
        }
    }
}

/// The wire form of an immediate: the low `n_bits` of `value`, big-endian, in
/// `2 * ceil(n_bits / 16)` bytes (zero-extended beyond 64 bits).
pub fn immediate_bytes(value: u64, n_bits: u16) -> Vec<u8> {
    let len = immediate_len(n_bits);
    let masked = if n_bits >= 64 {
        value
    } else {
        value & ((1u64 << n_bits) - 1)
    };
    let be = masked.to_be_bytes();
    let mut out = vec![0u8; len.saturating_sub(be.len())];
    out.extend_from_slice(be.get(be.len().saturating_sub(len)..).unwrap_or(&be));
    out
}

impl NxLearn {
    /// A learn action into `table_id` with no timeouts, priority 0x8000 (OVS's default)
    /// and zero cookie and flags.
    pub fn new(table_id: u8, specs: Vec<LearnSpec>) -> Self {
        NxLearn {
            idle_timeout: 0,
            hard_timeout: 0,
            priority: 0x8000,
            cookie: 0,
            flags: 0,
            table_id,
            fin_idle_timeout: 0,
            fin_hard_timeout: 0,
            specs,
        }
    }
}

impl NxLearn2 {
    /// `learn` capped at `limit` flows (0: no cap), writing whether it learned to
    /// `result_dst` when given (sets or clears [`NX_LEARN_F_WRITE_RESULT`] to match).
    pub fn new(mut learn: NxLearn, limit: u32, result_dst: Option<NxmFieldRef>) -> Self {
        if result_dst.is_some() {
            learn.flags |= NX_LEARN_F_WRITE_RESULT;
        } else {
            learn.flags &= !NX_LEARN_F_WRITE_RESULT;
        }
        NxLearn2 {
            learn,
            limit,
            result_dst,
        }
    }
}

pub(crate) fn encode_resubmit(w: &mut Writer, in_port: u16, table: u8) {
    w.u16(OFPAT_EXPERIMENTER);
    w.u16(NX_RESUBMIT_LEN);
    w.u32(NX_VENDOR_ID);
    w.u16(NXAST_RESUBMIT_TABLE);
    w.u16(in_port);
    w.u8(table);
    w.zeros(3);
}

pub(crate) fn encode_learn(w: &mut Writer, l: &NxLearn, ctx: &'static str) -> EncodeResult<()> {
    let start = w.len();
    let len_at = put_learn_header(w, l, NXAST_LEARN);
    for spec in &l.specs {
        encode_spec(w, spec, ctx)?;
    }
    w.pad8_from(start);
    w.patch_len16(len_at, start, ctx, "nx_learn action")
}

pub(crate) fn encode_learn2(w: &mut Writer, l: &NxLearn2, ctx: &'static str) -> EncodeResult<()> {
    let writes = l.learn.flags & NX_LEARN_F_WRITE_RESULT != 0;
    if writes != l.result_dst.is_some() {
        return Err(EncodeError::Unrepresentable {
            context: ctx,
            detail: "nx_learn2 has NX_LEARN_F_WRITE_RESULT in its flags without a result_dst, \
                     or a result_dst without the flag"
                .into(),
        });
    }
    let start = w.len();
    let len_at = put_learn_header(w, &l.learn, NXAST_LEARN2);
    w.u32(l.limit);
    w.u16(l.result_dst.map_or(0, |r| r.ofs));
    w.zeros(2);
    if let Some(r) = &l.result_dst {
        put_header(w, r.header, ctx)?;
    }
    for spec in &l.learn.specs {
        encode_spec(w, spec, ctx)?;
    }
    w.pad8_from(start);
    w.patch_len16(len_at, start, ctx, "nx_learn2 action")
}

/// The 32 bytes every learn action starts with; returns where its length goes.
fn put_learn_header(w: &mut Writer, l: &NxLearn, subtype: u16) -> usize {
    w.u16(OFPAT_EXPERIMENTER);
    let len_at = w.placeholder16();
    w.u32(NX_VENDOR_ID);
    w.u16(subtype);
    w.u16(l.idle_timeout);
    w.u16(l.hard_timeout);
    w.u16(l.priority);
    w.u64(l.cookie);
    w.u16(l.flags);
    w.u8(l.table_id);
    w.u8(0);
    w.u16(l.fin_idle_timeout);
    w.u16(l.fin_hard_timeout);
    len_at
}

fn encode_spec(w: &mut Writer, spec: &LearnSpec, ctx: &'static str) -> EncodeResult<()> {
    let (src_imm, dst_bits, n_bits) = match spec {
        LearnSpec::MatchField { n_bits, .. } => (false, 0, *n_bits),
        LearnSpec::MatchImmediate { n_bits, .. } => (true, 0, *n_bits),
        LearnSpec::LoadField { n_bits, .. } => (false, NX_LEARN_DST_LOAD, *n_bits),
        LearnSpec::LoadImmediate { n_bits, .. } => (true, NX_LEARN_DST_LOAD, *n_bits),
        LearnSpec::Output { n_bits, .. } => (false, NX_LEARN_DST_OUTPUT, *n_bits),
    };
    if n_bits == 0 || n_bits > NX_LEARN_N_BITS_MASK {
        return Err(EncodeError::Unrepresentable {
            context: ctx,
            detail: format!("nx_learn spec n_bits {n_bits} is outside 1..=2047"),
        });
    }
    w.u16(n_bits | dst_bits | if src_imm { NX_LEARN_SRC_IMMEDIATE } else { 0 });
    match spec {
        LearnSpec::MatchField { src, .. }
        | LearnSpec::LoadField { src, .. }
        | LearnSpec::Output { src, .. } => {
            put_ref(w, src, ctx)?;
        }
        LearnSpec::MatchImmediate { value, .. } | LearnSpec::LoadImmediate { value, .. } => {
            let len = immediate_len(n_bits);
            if value.len() > len {
                return Err(EncodeError::TooLong {
                    context: ctx,
                    item: "nx_learn immediate",
                    len: value.len(),
                    max: len,
                });
            }
            // Shorter values are big-endian numbers: left-pad them to the wire width.
            w.zeros(len - value.len());
            w.bytes(value);
        }
    }
    match spec {
        LearnSpec::MatchField { dst, .. }
        | LearnSpec::MatchImmediate { dst, .. }
        | LearnSpec::LoadField { dst, .. }
        | LearnSpec::LoadImmediate { dst, .. } => put_ref(w, dst, ctx),
        LearnSpec::Output { .. } => Ok(()),
    }
}

fn put_ref(w: &mut Writer, r: &NxmFieldRef, ctx: &'static str) -> EncodeResult<()> {
    put_header(w, r.header, ctx)?;
    w.u16(r.ofs);
    Ok(())
}

fn put_header(w: &mut Writer, header: u32, ctx: &'static str) -> EncodeResult<()> {
    if header >> 16 == OXM_CLASS_EXPERIMENTER {
        return Err(EncodeError::Unrepresentable {
            context: ctx,
            detail: format!(
                "nx_learn field header {header:#010x} is an experimenter oxm, which needs 64 bits"
            ),
        });
    }
    w.u32(header);
    Ok(())
}

/// Decodes a Nicira action from everything after its experimenter id.
///
/// `Ok(None)` means "valid but not modelled" (another subtype, or a learn spec naming an
/// experimenter OXM): the caller keeps the action as raw [`Action::Experimenter`].
pub(crate) fn decode_nx_action(data: &[u8], ctx: &'static str) -> DecodeResult<Option<Action>> {
    let mut r = Reader::new(data, ctx);
    let Ok(subtype) = r.peek_u16(0, "nicira subtype") else {
        return Ok(None);
    };
    match subtype {
        NXAST_RESUBMIT_TABLE => {
            if data.len() != 8 {
                return Err(DecodeError::WrongLength {
                    context: ctx,
                    item: "nx_resubmit_table action",
                    len: data.len() + 8,
                    expected: 16,
                });
            }
            r.skip(2, "nx_resubmit_table subtype")?;
            let in_port = r.u16("nx_resubmit_table in_port")?;
            let table = r.u8("nx_resubmit_table table")?;
            Ok(Some(Action::NxResubmit { in_port, table }))
        }
        NXAST_LEARN => {
            r.skip(2, "nx_learn subtype")?;
            Ok(decode_learn(&mut r)?.map(Action::NxLearn))
        }
        NXAST_LEARN2 => Ok(decode_learn2(&mut r)?.map(Action::NxLearn2)),
        _ => Ok(None),
    }
}

fn decode_learn2(r: &mut Reader<'_>) -> DecodeResult<Option<NxLearn2>> {
    let ctx = r.ctx();
    r.skip(2, "nx_learn2 subtype")?;
    let head = decode_learn_head(r)?;
    let limit = r.u32("nx_learn2 limit")?;
    let result_ofs = r.u16("nx_learn2 result_dst_ofs")?;
    if r.u16("nx_learn2 pad")? != 0 {
        return Err(DecodeError::Invalid {
            context: ctx,
            detail: "nx_learn2 padding is not zero",
        });
    }
    let result_dst = if head.flags & NX_LEARN_F_WRITE_RESULT != 0 {
        let header = r.u32("nx_learn2 result_dst header")?;
        if header >> 16 == OXM_CLASS_EXPERIMENTER {
            return Ok(None);
        }
        Some(NxmFieldRef {
            header,
            ofs: result_ofs,
        })
    } else if result_ofs != 0 {
        return Err(DecodeError::Invalid {
            context: ctx,
            detail: "nx_learn2 has a result_dst offset without NX_LEARN_F_WRITE_RESULT",
        });
    } else {
        None
    };
    let Some(specs) = decode_specs(r)? else {
        return Ok(None);
    };
    Ok(Some(NxLearn2 {
        learn: NxLearn { specs, ..head },
        limit,
        result_dst,
    }))
}

fn decode_learn(r: &mut Reader<'_>) -> DecodeResult<Option<NxLearn>> {
    let head = decode_learn_head(r)?;
    Ok(decode_specs(r)?.map(|specs| NxLearn { specs, ..head }))
}

/// The fixed fields of a learn action after its subtype (no specs yet).
fn decode_learn_head(r: &mut Reader<'_>) -> DecodeResult<NxLearn> {
    let idle_timeout = r.u16("nx_learn idle_timeout")?;
    let hard_timeout = r.u16("nx_learn hard_timeout")?;
    let priority = r.u16("nx_learn priority")?;
    let cookie = r.u64("nx_learn cookie")?;
    let flags = r.u16("nx_learn flags")?;
    let table_id = r.u8("nx_learn table_id")?;
    r.skip(1, "nx_learn pad")?;
    let fin_idle_timeout = r.u16("nx_learn fin_idle_timeout")?;
    let fin_hard_timeout = r.u16("nx_learn fin_hard_timeout")?;
    Ok(NxLearn {
        idle_timeout,
        hard_timeout,
        priority,
        cookie,
        flags,
        table_id,
        fin_idle_timeout,
        fin_hard_timeout,
        specs: Vec::new(),
    })
}

/// Specs up to the all-zero terminator or the end, then only zero padding. `None`: a spec
/// names an experimenter OXM (the action stays raw).
fn decode_specs(r: &mut Reader<'_>) -> DecodeResult<Option<Vec<LearnSpec>>> {
    let ctx = r.ctx();
    let mut specs = Vec::new();
    while r.remaining() >= 2 {
        let header = r.peek_u16(0, "nx_learn spec header")?;
        if header == 0 {
            break;
        }
        r.skip(2, "nx_learn spec header")?;
        match decode_spec(r, header)? {
            Some(spec) => specs.push(spec),
            None => return Ok(None),
        }
    }
    if r.rest().iter().any(|&b| b != 0) {
        return Err(DecodeError::Invalid {
            context: ctx,
            detail: "nx_learn has non-zero bytes after its last spec",
        });
    }
    Ok(Some(specs))
}

fn decode_spec(r: &mut Reader<'_>, header: u16) -> DecodeResult<Option<LearnSpec>> {
    let ctx = r.ctx();
    if header & NX_LEARN_RESERVED_BITS != 0 {
        return Err(DecodeError::BadValue {
            context: ctx,
            item: "nx_learn spec header",
            value: header.into(),
        });
    }
    let n_bits = header & NX_LEARN_N_BITS_MASK;
    if n_bits == 0 {
        return Err(DecodeError::Invalid {
            context: ctx,
            detail: "nx_learn spec has zero n_bits",
        });
    }
    let src_imm = header & NX_LEARN_SRC_IMMEDIATE != 0;
    let dst = header & NX_LEARN_DST_MASK;
    if dst == NX_LEARN_DST_MASK {
        return Err(DecodeError::BadValue {
            context: ctx,
            item: "nx_learn spec destination",
            value: dst.into(),
        });
    }
    if dst == NX_LEARN_DST_OUTPUT && src_imm {
        return Err(DecodeError::Invalid {
            context: ctx,
            detail: "nx_learn output spec has an immediate source",
        });
    }
    let src = if src_imm {
        Err(r
            .take(immediate_len(n_bits), "nx_learn immediate")?
            .to_vec())
    } else {
        match read_ref(r)? {
            Some(f) => Ok(f),
            None => return Ok(None),
        }
    };
    if dst == NX_LEARN_DST_OUTPUT {
        return Ok(match src {
            Ok(src) => Some(LearnSpec::Output { src, n_bits }),
            Err(_) => None,
        });
    }
    let Some(dst_ref) = read_ref(r)? else {
        return Ok(None);
    };
    let load = dst == NX_LEARN_DST_LOAD;
    Ok(Some(match (src, load) {
        (Ok(src), false) => LearnSpec::MatchField {
            src,
            dst: dst_ref,
            n_bits,
        },
        (Err(value), false) => LearnSpec::MatchImmediate {
            value,
            dst: dst_ref,
            n_bits,
        },
        (Ok(src), true) => LearnSpec::LoadField {
            src,
            dst: dst_ref,
            n_bits,
        },
        (Err(value), true) => LearnSpec::LoadImmediate {
            value,
            dst: dst_ref,
            n_bits,
        },
    }))
}

fn read_ref(r: &mut Reader<'_>) -> DecodeResult<Option<NxmFieldRef>> {
    let header = r.u32("nx_learn field header")?;
    if header >> 16 == OXM_CLASS_EXPERIMENTER {
        return Ok(None);
    }
    let ofs = r.u16("nx_learn field offset")?;
    Ok(Some(NxmFieldRef { header, ofs }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::nxm;

    #[test]
    fn immediates_are_right_aligned_in_16_bit_units() {
        assert_eq!(immediate_bytes(1, 1), [0, 1]);
        assert_eq!(immediate_bytes(0x1ff, 8), [0, 0xff]);
        assert_eq!(immediate_bytes(0x0102_0304_0506, 48), [1, 2, 3, 4, 5, 6]);
        assert_eq!(immediate_bytes(0x1234, 17), [0, 0, 0x12, 0x34]);
        assert_eq!(immediate_bytes(u64::MAX, 80).len(), 10);
        assert_eq!(&immediate_bytes(u64::MAX, 80)[..2], [0, 0]);
    }

    #[test]
    fn field_widths() {
        assert_eq!(nxm_field_bits(nxm::TUN_ID), 64);
        assert_eq!(nxm_field_bits(nxm::ETH_SRC), 48);
        assert_eq!(nxm_field_bits(nxm::IN_PORT), 16);
        assert_eq!(nxm_field_bits(nxm::reg(3)), 32);
        assert_eq!(nxm_field_bits(nxm::header(1, 0, true, 8)), 32);
    }

    #[test]
    fn zero_n_bits_is_refused() {
        let l = NxLearn::new(
            2,
            vec![LearnSpec::Output {
                src: NxmFieldRef::whole(nxm::IN_PORT),
                n_bits: 0,
            }],
        );
        let err = encode_learn(&mut Writer::new(), &l, "flow_mod").unwrap_err();
        assert_eq!(
            err.to_string(),
            "flow_mod: nx_learn spec n_bits 0 is outside 1..=2047"
        );
    }

    #[test]
    fn short_immediates_are_left_padded() {
        let spec = LearnSpec::MatchImmediate {
            value: vec![1],
            dst: NxmFieldRef::whole(nxm::reg(0)),
            n_bits: 32,
        };
        let mut w = Writer::new();
        encode_spec(&mut w, &spec, "t").unwrap();
        assert_eq!(w.into_vec(), [0x20, 0x20, 0, 0, 0, 1, 0, 1, 0, 4, 0, 0]);
    }

    fn learn2(result: Option<NxmFieldRef>) -> NxLearn2 {
        NxLearn2::new(
            NxLearn::new(2, vec![LearnSpec::match_same(nxm::ETH_SRC)]),
            256,
            result,
        )
    }

    #[test]
    fn learn2_wire_layout() {
        let mut w = Writer::new();
        let l = learn2(Some(NxmFieldRef::new(nxm::reg(2), 5)));
        encode_learn2(&mut w, &l, "t").unwrap();
        let v = w.into_vec();
        // 40 fixed + 4 result header + 2 + 6 + 6 spec = 58, padded to 64.
        assert_eq!(v.len(), 64);
        assert_eq!(&v[2..4], [0, 64]);
        assert_eq!(&v[8..10], [0, 45]);
        assert_eq!(&v[24..26], NX_LEARN_F_WRITE_RESULT.to_be_bytes());
        assert_eq!(&v[32..36], 256u32.to_be_bytes());
        assert_eq!(&v[36..38], [0, 5]);
        assert_eq!(&v[38..40], [0, 0]);
        assert_eq!(&v[40..44], nxm::reg(2).to_be_bytes());
        assert_eq!(&v[44..46], [0, 48]);
        let back = decode_nx_action(&v[8..], "t").unwrap();
        assert_eq!(back, Some(Action::NxLearn2(l)));
    }

    #[test]
    fn learn2_result_flag_and_field_go_together() {
        let mut l = learn2(None);
        l.learn.flags |= NX_LEARN_F_WRITE_RESULT;
        assert!(encode_learn2(&mut Writer::new(), &l, "t").is_err());
        let mut l = learn2(Some(NxmFieldRef::whole(nxm::reg(2))));
        l.learn.flags = 0;
        assert!(encode_learn2(&mut Writer::new(), &l, "t").is_err());
        // An offset without the flag, and non-zero padding, are refused on decode.
        let mut w = Writer::new();
        encode_learn2(&mut w, &learn2(None), "t").unwrap();
        let v = w.into_vec();
        let mut bad = v.clone();
        bad[37] = 1;
        assert!(decode_nx_action(&bad[8..], "t").is_err());
        let mut bad = v;
        bad[39] = 1;
        assert!(decode_nx_action(&bad[8..], "t").is_err());
    }

    #[test]
    fn truncated_learn2_is_an_error_never_a_panic() {
        let mut w = Writer::new();
        encode_learn2(&mut w, &learn2(Some(NxmFieldRef::whole(nxm::reg(2)))), "t").unwrap();
        let v = w.into_vec();
        for end in 8..v.len() {
            let _ = decode_nx_action(&v[8..end], "t");
        }
        assert!(decode_nx_action(&v[8..42], "t").is_err());
    }
}
