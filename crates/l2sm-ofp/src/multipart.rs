//! Multipart messages (OpenFlow 1.3.5 §7.3.5, `struct ofp_multipart_request/reply`).
//!
//! ```text
//! | type (16) | flags (16) | pad[4] | body ... |
//! ```
//!
//! Modelled bodies: DESC (`struct ofp_desc`), FLOW (`struct ofp_flow_stats_request` /
//! `struct ofp_flow_stats`), GROUP_DESC (`struct ofp_group_desc`) and PORT_DESC
//! (`struct ofp_port`). Every other type keeps its body raw.

use crate::error::{DecodeError, DecodeResult, EncodeResult};
use crate::group_mod::{decode_buckets, encode_buckets, group_type_from_wire};
use crate::instruction::{decode_instructions, encode_instructions};
use crate::oxm::{decode_match, encode_match};
use crate::port_desc::{decode_port, encode_port, PORT_LEN};
use crate::types::{
    group, port, DescStats, FlowStats, FlowStatsRequest, GroupDescStats, Match, MultipartReply,
    MultipartReplyBody, MultipartRequest, MultipartRequestBody, TABLE_ALL,
};
use crate::wire::{decode_cstr, encode_cstr, Reader, Writer};

const OFPMP_DESC: u16 = 0;
const OFPMP_FLOW: u16 = 1;
const OFPMP_GROUP_DESC: u16 = 7;
const OFPMP_PORT_DESC: u16 = 13;

/// `DESC_STR_LEN` and `SERIAL_NUM_LEN` of `struct ofp_desc`.
const DESC_STR_LEN: usize = 256;
const SERIAL_NUM_LEN: usize = 32;
/// Fixed part of `struct ofp_flow_stats` before its match.
const FLOW_STATS_FIXED_LEN: usize = 48;
/// Smallest `struct ofp_flow_stats`: the fixed part plus an empty, padded match.
const FLOW_STATS_MIN_LEN: usize = FLOW_STATS_FIXED_LEN + 8;
const GROUP_DESC_FIXED_LEN: usize = 8;

impl MultipartRequest {
    /// A single-part request (`flags` 0).
    pub const fn new(body: MultipartRequestBody) -> Self {
        MultipartRequest { flags: 0, body }
    }
}

impl FlowStatsRequest {
    /// All flows of `table_id` ([`TABLE_ALL`] for every table) matching `r#match`.
    pub fn new(table_id: u8, r#match: Match) -> Self {
        FlowStatsRequest {
            table_id,
            out_port: port::ANY,
            out_group: group::ANY,
            cookie: 0,
            cookie_mask: 0,
            r#match,
        }
    }
    /// Every flow of every table.
    pub fn all() -> Self {
        FlowStatsRequest::new(TABLE_ALL, Match::any())
    }
}

pub(crate) fn encode_request(
    w: &mut Writer,
    m: &MultipartRequest,
    ctx: &'static str,
) -> EncodeResult<()> {
    let mp_type = match &m.body {
        MultipartRequestBody::Desc => OFPMP_DESC,
        MultipartRequestBody::Flow(_) => OFPMP_FLOW,
        MultipartRequestBody::GroupDesc => OFPMP_GROUP_DESC,
        MultipartRequestBody::PortDesc => OFPMP_PORT_DESC,
        MultipartRequestBody::Other { mp_type, .. } => *mp_type,
    };
    w.u16(mp_type);
    w.u16(m.flags);
    w.zeros(4);
    match &m.body {
        MultipartRequestBody::Desc
        | MultipartRequestBody::GroupDesc
        | MultipartRequestBody::PortDesc => {}
        MultipartRequestBody::Flow(f) => {
            w.u8(f.table_id);
            w.zeros(3);
            w.u32(f.out_port);
            w.u32(f.out_group);
            w.zeros(4);
            w.u64(f.cookie);
            w.u64(f.cookie_mask);
            encode_match(w, &f.r#match, ctx)?;
        }
        MultipartRequestBody::Other { body, .. } => w.bytes(body),
    }
    Ok(())
}

pub(crate) fn decode_request(r: &mut Reader<'_>) -> DecodeResult<MultipartRequest> {
    let mp_type = r.u16("multipart type")?;
    let flags = r.u16("multipart flags")?;
    r.skip(4, "multipart pad")?;
    let body = match mp_type {
        OFPMP_DESC => MultipartRequestBody::Desc,
        OFPMP_GROUP_DESC => MultipartRequestBody::GroupDesc,
        OFPMP_PORT_DESC => MultipartRequestBody::PortDesc,
        OFPMP_FLOW => {
            let table_id = r.u8("flow_stats_request table_id")?;
            r.skip(3, "flow_stats_request pad")?;
            let out_port = r.u32("flow_stats_request out_port")?;
            let out_group = r.u32("flow_stats_request out_group")?;
            r.skip(4, "flow_stats_request pad2")?;
            let cookie = r.u64("flow_stats_request cookie")?;
            let cookie_mask = r.u64("flow_stats_request cookie_mask")?;
            let r#match = decode_match(r)?;
            MultipartRequestBody::Flow(FlowStatsRequest {
                table_id,
                out_port,
                out_group,
                cookie,
                cookie_mask,
                r#match,
            })
        }
        mp_type => MultipartRequestBody::Other {
            mp_type,
            body: r.rest().to_vec(),
        },
    };
    r.finish("multipart request body")?;
    Ok(MultipartRequest { flags, body })
}

pub(crate) fn encode_reply(
    w: &mut Writer,
    m: &MultipartReply,
    ctx: &'static str,
) -> EncodeResult<()> {
    let mp_type = match &m.body {
        MultipartReplyBody::Desc(_) => OFPMP_DESC,
        MultipartReplyBody::Flow(_) => OFPMP_FLOW,
        MultipartReplyBody::GroupDesc(_) => OFPMP_GROUP_DESC,
        MultipartReplyBody::PortDesc(_) => OFPMP_PORT_DESC,
        MultipartReplyBody::Other { mp_type, .. } => *mp_type,
    };
    w.u16(mp_type);
    w.u16(m.flags);
    w.zeros(4);
    match &m.body {
        MultipartReplyBody::Desc(d) => {
            encode_cstr(w, &d.mfr_desc, DESC_STR_LEN, ctx, "desc mfr_desc")?;
            encode_cstr(w, &d.hw_desc, DESC_STR_LEN, ctx, "desc hw_desc")?;
            encode_cstr(w, &d.sw_desc, DESC_STR_LEN, ctx, "desc sw_desc")?;
            encode_cstr(w, &d.serial_num, SERIAL_NUM_LEN, ctx, "desc serial_num")?;
            encode_cstr(w, &d.dp_desc, DESC_STR_LEN, ctx, "desc dp_desc")?;
        }
        MultipartReplyBody::Flow(flows) => {
            for f in flows {
                let start = w.len();
                let len_at = w.placeholder16();
                w.u8(f.table_id);
                w.u8(0);
                w.u32(f.duration_sec);
                w.u32(f.duration_nsec);
                w.u16(f.priority);
                w.u16(f.idle_timeout);
                w.u16(f.hard_timeout);
                w.u16(f.flags);
                w.zeros(4);
                w.u64(f.cookie);
                w.u64(f.packet_count);
                w.u64(f.byte_count);
                encode_match(w, &f.r#match, ctx)?;
                encode_instructions(w, &f.instructions, ctx)?;
                w.patch_len16(len_at, start, ctx, "flow_stats entry")?;
            }
        }
        MultipartReplyBody::GroupDesc(groups) => {
            for g in groups {
                let start = w.len();
                let len_at = w.placeholder16();
                w.u8(g.group_type as u8);
                w.u8(0);
                w.u32(g.group_id);
                encode_buckets(w, &g.buckets, ctx)?;
                w.patch_len16(len_at, start, ctx, "group_desc entry")?;
            }
        }
        MultipartReplyBody::PortDesc(ports) => {
            for p in ports {
                encode_port(w, p, ctx)?;
            }
        }
        MultipartReplyBody::Other { body, .. } => w.bytes(body),
    }
    Ok(())
}

pub(crate) fn decode_reply(r: &mut Reader<'_>) -> DecodeResult<MultipartReply> {
    let ctx = r.ctx();
    let mp_type = r.u16("multipart type")?;
    let flags = r.u16("multipart flags")?;
    r.skip(4, "multipart pad")?;
    let body = match mp_type {
        OFPMP_DESC => MultipartReplyBody::Desc(DescStats {
            mfr_desc: decode_cstr(r.take(DESC_STR_LEN, "desc mfr_desc")?),
            hw_desc: decode_cstr(r.take(DESC_STR_LEN, "desc hw_desc")?),
            sw_desc: decode_cstr(r.take(DESC_STR_LEN, "desc sw_desc")?),
            serial_num: decode_cstr(r.take(SERIAL_NUM_LEN, "desc serial_num")?),
            dp_desc: decode_cstr(r.take(DESC_STR_LEN, "desc dp_desc")?),
        }),
        OFPMP_FLOW => {
            let mut flows = Vec::new();
            while !r.is_empty() {
                let mut e = r.tlv(0, FLOW_STATS_MIN_LEN, "flow_stats entry")?;
                flows.push(decode_flow_stats(&mut e)?);
            }
            MultipartReplyBody::Flow(flows)
        }
        OFPMP_GROUP_DESC => {
            let mut groups = Vec::new();
            while !r.is_empty() {
                let mut e = r.tlv(0, GROUP_DESC_FIXED_LEN, "group_desc entry")?;
                e.skip(2, "group_desc length")?;
                let group_type = group_type_from_wire(e.u8("group_desc type")?, ctx)?;
                e.skip(1, "group_desc pad")?;
                let group_id = e.u32("group_desc group_id")?;
                let buckets = decode_buckets(&mut e)?;
                groups.push(GroupDescStats {
                    group_type,
                    group_id,
                    buckets,
                });
            }
            MultipartReplyBody::GroupDesc(groups)
        }
        OFPMP_PORT_DESC => {
            if r.remaining() % PORT_LEN != 0 {
                return Err(DecodeError::Invalid {
                    context: ctx,
                    detail: "port_desc body is not a whole number of 64-byte ofp_port",
                });
            }
            let mut ports = Vec::new();
            while !r.is_empty() {
                ports.push(decode_port(r)?);
            }
            MultipartReplyBody::PortDesc(ports)
        }
        mp_type => MultipartReplyBody::Other {
            mp_type,
            body: r.rest().to_vec(),
        },
    };
    r.finish("multipart reply body")?;
    Ok(MultipartReply { flags, body })
}

fn decode_flow_stats(e: &mut Reader<'_>) -> DecodeResult<FlowStats> {
    e.skip(2, "flow_stats length")?;
    let table_id = e.u8("flow_stats table_id")?;
    e.skip(1, "flow_stats pad")?;
    let duration_sec = e.u32("flow_stats duration_sec")?;
    let duration_nsec = e.u32("flow_stats duration_nsec")?;
    let priority = e.u16("flow_stats priority")?;
    let idle_timeout = e.u16("flow_stats idle_timeout")?;
    let hard_timeout = e.u16("flow_stats hard_timeout")?;
    let flags = e.u16("flow_stats flags")?;
    e.skip(4, "flow_stats pad2")?;
    let cookie = e.u64("flow_stats cookie")?;
    let packet_count = e.u64("flow_stats packet_count")?;
    let byte_count = e.u64("flow_stats byte_count")?;
    let r#match = decode_match(e)?;
    let instructions = decode_instructions(e)?;
    Ok(FlowStats {
        table_id,
        duration_sec,
        duration_nsec,
        priority,
        idle_timeout,
        hard_timeout,
        flags,
        cookie,
        packet_count,
        byte_count,
        r#match,
        instructions,
    })
}
