//! Action lists (OpenFlow 1.3.5 §7.2.5, `struct ofp_action_header` and friends).
//!
//! ```text
//! | type (16) | len (16, multiple of 8, includes this header) | body ... |
//! ```
//!
//! Standard actions other than the modelled ones decode to [`Action::Other`] and
//! experimenter actions other than the two Nicira ones to [`Action::Experimenter`], both
//! byte-identical on re-encoding, so a flow dump never fails on a foreign action.

use crate::error::{DecodeError, DecodeResult, EncodeError, EncodeResult};
use crate::nicira::{self, NX_RESUBMIT_IN_PORT, NX_VENDOR_ID};
use crate::oxm::{decode_oxm, encode_oxm};
use crate::types::{port, Action, NxLearn, NxLearn2, OxmField};
use crate::wire::{expect_len, Reader, Writer};

/// `OFPCML_NO_BUFFER`: as [`Action::Output`] `max_len` towards the controller, send the
/// whole packet instead of buffering it on the switch.
pub const OFPCML_NO_BUFFER: u16 = 0xffff;

const OFPAT_OUTPUT: u16 = 0;
const OFPAT_PUSH_VLAN: u16 = 17;
const OFPAT_POP_VLAN: u16 = 18;
const OFPAT_GROUP: u16 = 22;
const OFPAT_SET_FIELD: u16 = 25;
const OFPAT_EXPERIMENTER: u16 = 0xffff;

impl Action {
    /// `output:port` (`max_len` 0, which only matters for the controller port).
    pub const fn output(port: u32) -> Self {
        Action::Output { port, max_len: 0 }
    }
    /// `output:CONTROLLER` carrying the whole packet ([`OFPCML_NO_BUFFER`]).
    pub const fn to_controller() -> Self {
        Action::Output {
            port: port::CONTROLLER,
            max_len: OFPCML_NO_BUFFER,
        }
    }
    /// `group:id`.
    pub const fn group(id: u32) -> Self {
        Action::Group(id)
    }
    /// `set_field:field` (the field must be unmasked).
    pub const fn set_field(field: OxmField) -> Self {
        Action::SetField(field)
    }
    /// `push_vlan:ethertype`.
    pub const fn push_vlan(ethertype: u16) -> Self {
        Action::PushVlan(ethertype)
    }
    /// `resubmit(,table)`: look `table` up with the current in_port, then continue here.
    pub const fn resubmit(table: u8) -> Self {
        Action::NxResubmit {
            in_port: NX_RESUBMIT_IN_PORT,
            table,
        }
    }
    /// `learn(...)`.
    pub const fn learn(learn: NxLearn) -> Self {
        Action::NxLearn(learn)
    }
    /// `learn(limit=...,result_dst=...,...)`.
    pub const fn learn2(learn: NxLearn2) -> Self {
        Action::NxLearn2(learn)
    }
}

pub(crate) fn encode_actions(
    w: &mut Writer,
    actions: &[Action],
    ctx: &'static str,
) -> EncodeResult<()> {
    actions.iter().try_for_each(|a| encode_action(w, a, ctx))
}

fn encode_action(w: &mut Writer, a: &Action, ctx: &'static str) -> EncodeResult<()> {
    let start = w.len();
    match a {
        Action::Output { port, max_len } => {
            w.u16(OFPAT_OUTPUT);
            w.u16(16);
            w.u32(*port);
            w.u16(*max_len);
            w.zeros(6);
        }
        Action::Group(id) => {
            w.u16(OFPAT_GROUP);
            w.u16(8);
            w.u32(*id);
        }
        Action::SetField(field) => {
            if field.has_mask() {
                return Err(EncodeError::Unrepresentable {
                    context: ctx,
                    detail: format!("set_field action with masked {field:?} needs openflow 1.5"),
                });
            }
            w.u16(OFPAT_SET_FIELD);
            let len_at = w.placeholder16();
            encode_oxm(w, field, ctx)?;
            w.pad8_from(start);
            w.patch_len16(len_at, start, ctx, "set_field action")?;
        }
        Action::PushVlan(ethertype) => {
            w.u16(OFPAT_PUSH_VLAN);
            w.u16(8);
            w.u16(*ethertype);
            w.zeros(2);
        }
        Action::PopVlan => {
            w.u16(OFPAT_POP_VLAN);
            w.u16(8);
            w.zeros(4);
        }
        Action::NxResubmit { in_port, table } => nicira::encode_resubmit(w, *in_port, *table),
        Action::NxLearn(learn) => nicira::encode_learn(w, learn, ctx)?,
        Action::NxLearn2(learn) => nicira::encode_learn2(w, learn, ctx)?,
        Action::Experimenter { experimenter, data } => {
            check_aligned(8 + data.len(), ctx, "experimenter action")?;
            w.u16(OFPAT_EXPERIMENTER);
            let len_at = w.placeholder16();
            w.u32(*experimenter);
            w.bytes(data);
            w.patch_len16(len_at, start, ctx, "experimenter action")?;
        }
        Action::Other { action_type, data } => {
            check_aligned(4 + data.len(), ctx, "action")?;
            w.u16(*action_type);
            let len_at = w.placeholder16();
            w.bytes(data);
            w.patch_len16(len_at, start, ctx, "action")?;
        }
    }
    Ok(())
}

/// Raw TLVs are written as given, so their total length must already be 8-aligned.
pub(crate) fn check_aligned(len: usize, ctx: &'static str, item: &'static str) -> EncodeResult<()> {
    if len % 8 == 0 {
        Ok(())
    } else {
        Err(EncodeError::Unrepresentable {
            context: ctx,
            detail: format!("{item} length {len} is not a multiple of 8"),
        })
    }
}

/// Decodes an action list that fills `r` completely.
pub(crate) fn decode_actions(r: &mut Reader<'_>) -> DecodeResult<Vec<Action>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let mut a = r.tlv(2, 8, "action")?;
        out.push(decode_action(&mut a)?);
    }
    Ok(out)
}

fn decode_action(a: &mut Reader<'_>) -> DecodeResult<Action> {
    let ctx = a.ctx();
    let action_type = a.u16("action type")?;
    let len = usize::from(a.u16("action length")?);
    let fixed = |item: &'static str, expected: usize| expect_len(ctx, item, len, expected);
    let action = match action_type {
        OFPAT_OUTPUT => {
            fixed("output action", 16)?;
            let port = a.u32("output port")?;
            let max_len = a.u16("output max_len")?;
            Action::Output { port, max_len }
        }
        OFPAT_GROUP => {
            fixed("group action", 8)?;
            Action::Group(a.u32("group id")?)
        }
        OFPAT_PUSH_VLAN => {
            fixed("push_vlan action", 8)?;
            Action::PushVlan(a.u16("push_vlan ethertype")?)
        }
        OFPAT_POP_VLAN => {
            fixed("pop_vlan action", 8)?;
            Action::PopVlan
        }
        OFPAT_SET_FIELD => {
            let field = decode_oxm(a)?;
            if field.has_mask() {
                return Err(DecodeError::Invalid {
                    context: ctx,
                    detail: "set_field action carries a masked oxm",
                });
            }
            if a.remaining() >= 8 {
                return Err(DecodeError::TrailingBytes {
                    context: ctx,
                    item: "set_field oxm",
                    count: a.remaining(),
                });
            }
            Action::SetField(field)
        }
        OFPAT_EXPERIMENTER => {
            let experimenter = a.u32("experimenter id")?;
            let data = a.rest();
            let nx = if experimenter == NX_VENDOR_ID {
                nicira::decode_nx_action(data, ctx)?
            } else {
                None
            };
            nx.unwrap_or_else(|| Action::Experimenter {
                experimenter,
                data: data.to_vec(),
            })
        }
        _ => Action::Other {
            action_type,
            data: a.rest().to_vec(),
        },
    };
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(a: &Action) -> Vec<u8> {
        let mut w = Writer::new();
        encode_action(&mut w, a, "test").unwrap();
        w.into_vec()
    }

    #[test]
    fn set_field_pads_to_eight() {
        // OVS 3.1 encodes set_field:0x7->reg0 exactly like this.
        let a = Action::set_field(OxmField::reg(0, 7));
        assert_eq!(
            enc(&a),
            [0, 0x19, 0, 0x10, 0, 1, 0, 4, 0, 0, 0, 7, 0, 0, 0, 0]
        );
        let a = Action::set_field(OxmField::eth_type(0x0800));
        assert_eq!(
            enc(&a),
            [0, 0x19, 0, 0x10, 0x80, 0, 0x0a, 2, 8, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn masked_set_field_is_refused() {
        let mut w = Writer::new();
        assert!(encode_action(
            &mut w,
            &Action::set_field(OxmField::reg_masked(0, 1, 1)),
            "t"
        )
        .is_err());
    }

    #[test]
    fn unknown_standard_action_survives() {
        // OFPAT_DEC_NW_TTL.
        let raw = [0, 24, 0, 8, 0, 0, 0, 0];
        let mut r = Reader::new(&raw, "t");
        let acts = decode_actions(&mut r).unwrap();
        assert_eq!(
            acts,
            [Action::Other {
                action_type: 24,
                data: vec![0; 4]
            }]
        );
        assert_eq!(enc(&acts[0]), raw);
    }

    #[test]
    fn output_with_wrong_length() {
        let raw = [0, 0, 0, 8, 0, 0, 0, 1];
        let mut r = Reader::new(&raw, "packet_out");
        assert_eq!(
            decode_actions(&mut r).unwrap_err().to_string(),
            "packet_out: output action length 8 differs from the expected 16"
        );
    }
}
