//! Instructions (OpenFlow 1.3.5 §7.2.4, `struct ofp_instruction` and its variants).
//!
//! ```text
//! goto_table:     | type=1 | len=8  | table_id | pad[3] |
//! write_metadata: | type=2 | len=24 | pad[4] | metadata (64) | metadata_mask (64) |
//! write/apply/clear_actions: | type=3/4/5 | len=8+actions | pad[4] | actions ... |
//! meter:          | type=6 | len=8  | meter_id |
//! experimenter:   | type=0xffff | len | experimenter | data ... |
//! ```

use crate::action::{check_aligned, decode_actions, encode_actions};
use crate::error::{DecodeResult, EncodeResult};
use crate::types::{Action, Instruction};
use crate::wire::{expect_len, Reader, Writer};

const OFPIT_GOTO_TABLE: u16 = 1;
const OFPIT_WRITE_METADATA: u16 = 2;
const OFPIT_WRITE_ACTIONS: u16 = 3;
const OFPIT_APPLY_ACTIONS: u16 = 4;
const OFPIT_CLEAR_ACTIONS: u16 = 5;
const OFPIT_METER: u16 = 6;
const OFPIT_EXPERIMENTER: u16 = 0xffff;

impl Instruction {
    /// `goto_table:table`.
    pub const fn goto_table(table: u8) -> Self {
        Instruction::GotoTable(table)
    }
    /// `apply_actions(actions)`.
    pub const fn apply_actions(actions: Vec<Action>) -> Self {
        Instruction::ApplyActions(actions)
    }
    /// `write_actions(actions)`.
    pub const fn write_actions(actions: Vec<Action>) -> Self {
        Instruction::WriteActions(actions)
    }
    /// `write_metadata:value/mask`.
    pub const fn write_metadata(value: u64, mask: u64) -> Self {
        Instruction::WriteMetadata { value, mask }
    }
}

pub(crate) fn encode_instructions(
    w: &mut Writer,
    insts: &[Instruction],
    ctx: &'static str,
) -> EncodeResult<()> {
    insts.iter().try_for_each(|i| encode_instruction(w, i, ctx))
}

fn encode_instruction(w: &mut Writer, inst: &Instruction, ctx: &'static str) -> EncodeResult<()> {
    let start = w.len();
    match inst {
        Instruction::GotoTable(table) => {
            w.u16(OFPIT_GOTO_TABLE);
            w.u16(8);
            w.u8(*table);
            w.zeros(3);
        }
        Instruction::WriteMetadata { value, mask } => {
            w.u16(OFPIT_WRITE_METADATA);
            w.u16(24);
            w.zeros(4);
            w.u64(*value);
            w.u64(*mask);
        }
        Instruction::WriteActions(actions) | Instruction::ApplyActions(actions) => {
            let t = if matches!(inst, Instruction::WriteActions(_)) {
                OFPIT_WRITE_ACTIONS
            } else {
                OFPIT_APPLY_ACTIONS
            };
            w.u16(t);
            let len_at = w.placeholder16();
            w.zeros(4);
            encode_actions(w, actions, ctx)?;
            w.patch_len16(len_at, start, ctx, "actions instruction")?;
        }
        Instruction::ClearActions => {
            w.u16(OFPIT_CLEAR_ACTIONS);
            w.u16(8);
            w.zeros(4);
        }
        Instruction::Meter(id) => {
            w.u16(OFPIT_METER);
            w.u16(8);
            w.u32(*id);
        }
        Instruction::Experimenter { experimenter, data } => {
            check_aligned(8 + data.len(), ctx, "experimenter instruction")?;
            w.u16(OFPIT_EXPERIMENTER);
            let len_at = w.placeholder16();
            w.u32(*experimenter);
            w.bytes(data);
            w.patch_len16(len_at, start, ctx, "experimenter instruction")?;
        }
        Instruction::Other { inst_type, data } => {
            check_aligned(4 + data.len(), ctx, "instruction")?;
            w.u16(*inst_type);
            let len_at = w.placeholder16();
            w.bytes(data);
            w.patch_len16(len_at, start, ctx, "instruction")?;
        }
    }
    Ok(())
}

/// Decodes an instruction list that fills `r` completely.
pub(crate) fn decode_instructions(r: &mut Reader<'_>) -> DecodeResult<Vec<Instruction>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let mut i = r.tlv(2, 8, "instruction")?;
        out.push(decode_instruction(&mut i)?);
    }
    Ok(out)
}

fn decode_instruction(r: &mut Reader<'_>) -> DecodeResult<Instruction> {
    let ctx = r.ctx();
    let inst_type = r.u16("instruction type")?;
    let len = usize::from(r.u16("instruction length")?);
    let fixed = |item: &'static str, expected: usize| expect_len(ctx, item, len, expected);
    let inst = match inst_type {
        OFPIT_GOTO_TABLE => {
            fixed("goto_table instruction", 8)?;
            Instruction::GotoTable(r.u8("goto_table table_id")?)
        }
        OFPIT_WRITE_METADATA => {
            fixed("write_metadata instruction", 24)?;
            r.skip(4, "write_metadata pad")?;
            Instruction::WriteMetadata {
                value: r.u64("write_metadata metadata")?,
                mask: r.u64("write_metadata mask")?,
            }
        }
        OFPIT_WRITE_ACTIONS | OFPIT_APPLY_ACTIONS => {
            r.skip(4, "actions instruction pad")?;
            let actions = decode_actions(r)?;
            if inst_type == OFPIT_WRITE_ACTIONS {
                Instruction::WriteActions(actions)
            } else {
                Instruction::ApplyActions(actions)
            }
        }
        OFPIT_CLEAR_ACTIONS => {
            fixed("clear_actions instruction", 8)?;
            Instruction::ClearActions
        }
        OFPIT_METER => {
            fixed("meter instruction", 8)?;
            Instruction::Meter(r.u32("meter meter_id")?)
        }
        OFPIT_EXPERIMENTER => {
            let experimenter = r.u32("instruction experimenter id")?;
            Instruction::Experimenter {
                experimenter,
                data: r.rest().to_vec(),
            }
        }
        _ => Instruction::Other {
            inst_type,
            data: r.rest().to_vec(),
        },
    };
    Ok(inst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misaligned_instruction_names_the_message() {
        let raw = [0, 1, 0, 3, 0, 0, 0, 0];
        let mut r = Reader::new(&raw, "flow_mod");
        assert_eq!(
            decode_instructions(&mut r).unwrap_err().to_string(),
            "flow_mod: instruction length 3 is not a multiple of 8"
        );
    }

    #[test]
    fn instruction_overrunning_its_container() {
        let raw = [0, 1, 0, 16, 2, 0, 0, 0];
        let mut r = Reader::new(&raw, "flow_mod");
        assert_eq!(
            decode_instructions(&mut r).unwrap_err().to_string(),
            "flow_mod: instruction truncated: need 16 bytes, 8 available"
        );
    }

    #[test]
    fn empty_apply_actions() {
        let mut w = Writer::new();
        encode_instructions(&mut w, &[Instruction::apply_actions(vec![])], "t").unwrap();
        let v = w.into_vec();
        assert_eq!(v, [0, 4, 0, 8, 0, 0, 0, 0]);
        assert_eq!(
            decode_instructions(&mut Reader::new(&v, "t")).unwrap(),
            [Instruction::ApplyActions(vec![])]
        );
    }
}
