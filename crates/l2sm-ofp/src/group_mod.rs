//! Groups: `struct ofp_group_mod` and `struct ofp_bucket` (OpenFlow 1.3.5 §7.3.4.2),
//! also used by the GROUP_DESC multipart reply.
//!
//! ```text
//! ofp_group_mod: | command (16) | type (8) | pad | group_id (32) | buckets ... |
//! ofp_bucket:    | len (16) | weight (16) | watch_port | watch_group | pad[4] | actions |
//! ```

use crate::action::{decode_actions, encode_actions};
use crate::error::{DecodeError, DecodeResult, EncodeResult};
use crate::types::{Bucket, GroupMod, GroupModCommand, GroupType};
use crate::wire::{Reader, Writer};

const BUCKET_HEADER_LEN: usize = 16;

impl GroupMod {
    /// Adds group `group_id` of type ALL (flooding: every bucket gets a copy).
    pub fn add_all(group_id: u32, buckets: Vec<Bucket>) -> Self {
        GroupMod {
            command: GroupModCommand::Add,
            group_type: GroupType::All,
            group_id,
            buckets,
        }
    }
    /// Replaces the buckets of group `group_id` (type ALL).
    pub fn modify_all(group_id: u32, buckets: Vec<Bucket>) -> Self {
        GroupMod {
            command: GroupModCommand::Modify,
            ..GroupMod::add_all(group_id, buckets)
        }
    }
    /// Deletes group `group_id` ([`group::ALL`](crate::group::ALL) for every group).
    pub fn delete(group_id: u32) -> Self {
        GroupMod {
            command: GroupModCommand::Delete,
            ..GroupMod::add_all(group_id, Vec::new())
        }
    }
}

pub(crate) fn group_type_from_wire(v: u8, ctx: &'static str) -> DecodeResult<GroupType> {
    Ok(match v {
        0 => GroupType::All,
        1 => GroupType::Select,
        2 => GroupType::Indirect,
        3 => GroupType::FastFailover,
        _ => {
            return Err(DecodeError::BadValue {
                context: ctx,
                item: "group type",
                value: v.into(),
            })
        }
    })
}

pub(crate) fn encode_group_mod(
    w: &mut Writer,
    g: &GroupMod,
    ctx: &'static str,
) -> EncodeResult<()> {
    w.u16(g.command as u16);
    w.u8(g.group_type as u8);
    w.u8(0);
    w.u32(g.group_id);
    encode_buckets(w, &g.buckets, ctx)
}

pub(crate) fn decode_group_mod(r: &mut Reader<'_>) -> DecodeResult<GroupMod> {
    let ctx = r.ctx();
    let command = match r.u16("group_mod command")? {
        0 => GroupModCommand::Add,
        1 => GroupModCommand::Modify,
        2 => GroupModCommand::Delete,
        v => {
            return Err(DecodeError::BadValue {
                context: ctx,
                item: "group_mod command",
                value: v.into(),
            })
        }
    };
    let group_type = group_type_from_wire(r.u8("group_mod type")?, ctx)?;
    r.skip(1, "group_mod pad")?;
    let group_id = r.u32("group_mod group_id")?;
    let buckets = decode_buckets(r)?;
    Ok(GroupMod {
        command,
        group_type,
        group_id,
        buckets,
    })
}

pub(crate) fn encode_buckets(
    w: &mut Writer,
    buckets: &[Bucket],
    ctx: &'static str,
) -> EncodeResult<()> {
    for b in buckets {
        let start = w.len();
        let len_at = w.placeholder16();
        w.u16(b.weight);
        w.u32(b.watch_port);
        w.u32(b.watch_group);
        w.zeros(4);
        encode_actions(w, &b.actions, ctx)?;
        w.patch_len16(len_at, start, ctx, "bucket")?;
    }
    Ok(())
}

/// Decodes a bucket list that fills `r` completely.
pub(crate) fn decode_buckets(r: &mut Reader<'_>) -> DecodeResult<Vec<Bucket>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let mut b = r.tlv(0, BUCKET_HEADER_LEN, "bucket")?;
        b.skip(2, "bucket len")?;
        let weight = b.u16("bucket weight")?;
        let watch_port = b.u32("bucket watch_port")?;
        let watch_group = b.u32("bucket watch_group")?;
        b.skip(4, "bucket pad")?;
        let actions = decode_actions(&mut b)?;
        out.push(Bucket {
            weight,
            watch_port,
            watch_group,
            actions,
        });
    }
    Ok(out)
}
