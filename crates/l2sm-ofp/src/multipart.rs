//! Multipart messages (OpenFlow 1.3.5 §7.3.5, `struct ofp_multipart_request/reply`).
//!
//! ```text
//! | type (16) | flags (16) | pad[4] | body ... |
//! ```
//!
//! Every OpenFlow 1.3 multipart type is modelled: DESC, FLOW, AGGREGATE, TABLE,
//! PORT_STATS, QUEUE, GROUP, GROUP_DESC, GROUP_FEATURES, METER, METER_CONFIG,
//! METER_FEATURES, PORT_DESC and EXPERIMENTER (`experimenter`, `exp_type`, data kept
//! intact). TABLE_FEATURES keeps its body as opaque bytes, and any type OpenFlow 1.3 does
//! not define stays raw in the `Other` variants.
//!
//! Replies that are arrays of fixed-size entries (TABLE, PORT_STATS, QUEUE) must be a
//! whole number of entries; variable-size entries (FLOW, GROUP, GROUP_DESC, METER,
//! METER_CONFIG) carry their own 8-aligned length, which is checked like any TLV.

use crate::error::{DecodeError, DecodeResult, EncodeResult};
use crate::group_mod::{decode_buckets, encode_buckets, group_type_from_wire};
use crate::instruction::{decode_instructions, encode_instructions};
use crate::meter_mod::{decode_bands, encode_bands};
use crate::oxm::{decode_match, encode_match};
use crate::port_desc::{decode_port, encode_port, PORT_LEN};
use crate::types::{
    group, port, AggregateStats, BucketCounter, DescStats, FlowStats, FlowStatsRequest,
    GroupDescStats, GroupFeatures, GroupStats, Match, MeterBandStats, MeterConfig, MeterFeatures,
    MeterStats, MultipartReply, MultipartReplyBody, MultipartRequest, MultipartRequestBody,
    PortStats, QueueStats, TableStats, TABLE_ALL,
};
use crate::wire::{decode_cstr, encode_cstr, Reader, Writer};

const OFPMP_DESC: u16 = 0;
const OFPMP_FLOW: u16 = 1;
const OFPMP_AGGREGATE: u16 = 2;
const OFPMP_TABLE: u16 = 3;
const OFPMP_PORT_STATS: u16 = 4;
const OFPMP_QUEUE: u16 = 5;
const OFPMP_GROUP: u16 = 6;
const OFPMP_GROUP_DESC: u16 = 7;
const OFPMP_GROUP_FEATURES: u16 = 8;
const OFPMP_METER: u16 = 9;
const OFPMP_METER_CONFIG: u16 = 10;
const OFPMP_METER_FEATURES: u16 = 11;
const OFPMP_TABLE_FEATURES: u16 = 12;
const OFPMP_PORT_DESC: u16 = 13;
const OFPMP_EXPERIMENTER: u16 = 0xffff;

/// `struct ofp_table_stats`.
const TABLE_STATS_LEN: usize = 24;
/// `struct ofp_port_stats`.
const PORT_STATS_LEN: usize = 112;
/// `struct ofp_queue_stats`.
const QUEUE_STATS_LEN: usize = 40;
/// Fixed part of `struct ofp_group_stats`, before the bucket counters.
const GROUP_STATS_FIXED_LEN: usize = 40;
/// Fixed part of `struct ofp_meter_stats`, before the band stats.
const METER_STATS_FIXED_LEN: usize = 40;
/// Fixed part of `struct ofp_meter_config`, before the bands.
const METER_CONFIG_FIXED_LEN: usize = 8;
/// `struct ofp_bucket_counter` and `struct ofp_meter_band_stats`.
const COUNTER_PAIR_LEN: usize = 16;

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
        MultipartRequestBody::Aggregate(_) => OFPMP_AGGREGATE,
        MultipartRequestBody::Table => OFPMP_TABLE,
        MultipartRequestBody::PortStats { .. } => OFPMP_PORT_STATS,
        MultipartRequestBody::Queue { .. } => OFPMP_QUEUE,
        MultipartRequestBody::Group { .. } => OFPMP_GROUP,
        MultipartRequestBody::GroupDesc => OFPMP_GROUP_DESC,
        MultipartRequestBody::GroupFeatures => OFPMP_GROUP_FEATURES,
        MultipartRequestBody::Meter { .. } => OFPMP_METER,
        MultipartRequestBody::MeterConfig { .. } => OFPMP_METER_CONFIG,
        MultipartRequestBody::MeterFeatures => OFPMP_METER_FEATURES,
        MultipartRequestBody::TableFeatures(_) => OFPMP_TABLE_FEATURES,
        MultipartRequestBody::PortDesc => OFPMP_PORT_DESC,
        MultipartRequestBody::Experimenter { .. } => OFPMP_EXPERIMENTER,
        MultipartRequestBody::Other { mp_type, .. } => *mp_type,
    };
    w.u16(mp_type);
    w.u16(m.flags);
    w.zeros(4);
    match &m.body {
        MultipartRequestBody::Desc
        | MultipartRequestBody::Table
        | MultipartRequestBody::GroupDesc
        | MultipartRequestBody::GroupFeatures
        | MultipartRequestBody::MeterFeatures
        | MultipartRequestBody::PortDesc => {}
        MultipartRequestBody::Flow(f) | MultipartRequestBody::Aggregate(f) => {
            w.u8(f.table_id);
            w.zeros(3);
            w.u32(f.out_port);
            w.u32(f.out_group);
            w.zeros(4);
            w.u64(f.cookie);
            w.u64(f.cookie_mask);
            encode_match(w, &f.r#match, ctx)?;
        }
        MultipartRequestBody::PortStats { port_no: id }
        | MultipartRequestBody::Group { group_id: id }
        | MultipartRequestBody::Meter { meter_id: id }
        | MultipartRequestBody::MeterConfig { meter_id: id } => {
            w.u32(*id);
            w.zeros(4);
        }
        MultipartRequestBody::Queue { port_no, queue_id } => {
            w.u32(*port_no);
            w.u32(*queue_id);
        }
        MultipartRequestBody::Experimenter {
            experimenter,
            exp_type,
            data,
        } => {
            w.u32(*experimenter);
            w.u32(*exp_type);
            w.bytes(data);
        }
        MultipartRequestBody::TableFeatures(body) | MultipartRequestBody::Other { body, .. } => {
            w.bytes(body)
        }
    }
    Ok(())
}

fn decode_flow_stats_request(r: &mut Reader<'_>) -> DecodeResult<FlowStatsRequest> {
    let table_id = r.u8("flow_stats_request table_id")?;
    r.skip(3, "flow_stats_request pad")?;
    let out_port = r.u32("flow_stats_request out_port")?;
    let out_group = r.u32("flow_stats_request out_group")?;
    r.skip(4, "flow_stats_request pad2")?;
    let cookie = r.u64("flow_stats_request cookie")?;
    let cookie_mask = r.u64("flow_stats_request cookie_mask")?;
    let r#match = decode_match(r)?;
    Ok(FlowStatsRequest {
        table_id,
        out_port,
        out_group,
        cookie,
        cookie_mask,
        r#match,
    })
}

/// Reads the `u32 id; pad[4]` body shared by the PORT_STATS, GROUP, METER and
/// METER_CONFIG requests.
fn decode_id_request(r: &mut Reader<'_>, item: &'static str) -> DecodeResult<u32> {
    let id = r.u32(item)?;
    r.skip(4, "multipart request pad")?;
    Ok(id)
}

pub(crate) fn decode_request(r: &mut Reader<'_>) -> DecodeResult<MultipartRequest> {
    let mp_type = r.u16("multipart type")?;
    let flags = r.u16("multipart flags")?;
    r.skip(4, "multipart pad")?;
    let body = match mp_type {
        OFPMP_DESC => MultipartRequestBody::Desc,
        OFPMP_FLOW => MultipartRequestBody::Flow(decode_flow_stats_request(r)?),
        OFPMP_AGGREGATE => MultipartRequestBody::Aggregate(decode_flow_stats_request(r)?),
        OFPMP_TABLE => MultipartRequestBody::Table,
        OFPMP_PORT_STATS => MultipartRequestBody::PortStats {
            port_no: decode_id_request(r, "port_stats_request port_no")?,
        },
        OFPMP_QUEUE => MultipartRequestBody::Queue {
            port_no: r.u32("queue_stats_request port_no")?,
            queue_id: r.u32("queue_stats_request queue_id")?,
        },
        OFPMP_GROUP => MultipartRequestBody::Group {
            group_id: decode_id_request(r, "group_stats_request group_id")?,
        },
        OFPMP_GROUP_DESC => MultipartRequestBody::GroupDesc,
        OFPMP_GROUP_FEATURES => MultipartRequestBody::GroupFeatures,
        OFPMP_METER => MultipartRequestBody::Meter {
            meter_id: decode_id_request(r, "meter_multipart_request meter_id")?,
        },
        OFPMP_METER_CONFIG => MultipartRequestBody::MeterConfig {
            meter_id: decode_id_request(r, "meter_multipart_request meter_id")?,
        },
        OFPMP_METER_FEATURES => MultipartRequestBody::MeterFeatures,
        OFPMP_TABLE_FEATURES => MultipartRequestBody::TableFeatures(r.rest().to_vec()),
        OFPMP_PORT_DESC => MultipartRequestBody::PortDesc,
        OFPMP_EXPERIMENTER => MultipartRequestBody::Experimenter {
            experimenter: r.u32("multipart experimenter")?,
            exp_type: r.u32("multipart exp_type")?,
            data: r.rest().to_vec(),
        },
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
        MultipartReplyBody::Aggregate(_) => OFPMP_AGGREGATE,
        MultipartReplyBody::Table(_) => OFPMP_TABLE,
        MultipartReplyBody::PortStats(_) => OFPMP_PORT_STATS,
        MultipartReplyBody::Queue(_) => OFPMP_QUEUE,
        MultipartReplyBody::Group(_) => OFPMP_GROUP,
        MultipartReplyBody::GroupDesc(_) => OFPMP_GROUP_DESC,
        MultipartReplyBody::GroupFeatures(_) => OFPMP_GROUP_FEATURES,
        MultipartReplyBody::Meter(_) => OFPMP_METER,
        MultipartReplyBody::MeterConfig(_) => OFPMP_METER_CONFIG,
        MultipartReplyBody::MeterFeatures(_) => OFPMP_METER_FEATURES,
        MultipartReplyBody::TableFeatures(_) => OFPMP_TABLE_FEATURES,
        MultipartReplyBody::PortDesc(_) => OFPMP_PORT_DESC,
        MultipartReplyBody::Experimenter { .. } => OFPMP_EXPERIMENTER,
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
        MultipartReplyBody::Aggregate(a) => {
            w.u64(a.packet_count);
            w.u64(a.byte_count);
            w.u32(a.flow_count);
            w.zeros(4);
        }
        MultipartReplyBody::Table(tables) => {
            for t in tables {
                w.u8(t.table_id);
                w.zeros(3);
                w.u32(t.active_count);
                w.u64(t.lookup_count);
                w.u64(t.matched_count);
            }
        }
        MultipartReplyBody::PortStats(ports) => ports.iter().for_each(|p| encode_port_stats(w, p)),
        MultipartReplyBody::Queue(queues) => {
            for q in queues {
                w.u32(q.port_no);
                w.u32(q.queue_id);
                w.u64(q.tx_bytes);
                w.u64(q.tx_packets);
                w.u64(q.tx_errors);
                w.u32(q.duration_sec);
                w.u32(q.duration_nsec);
            }
        }
        MultipartReplyBody::Group(groups) => {
            for g in groups {
                let start = w.len();
                let len_at = w.placeholder16();
                w.zeros(2);
                w.u32(g.group_id);
                w.u32(g.ref_count);
                w.zeros(4);
                w.u64(g.packet_count);
                w.u64(g.byte_count);
                w.u32(g.duration_sec);
                w.u32(g.duration_nsec);
                for b in &g.bucket_stats {
                    w.u64(b.packet_count);
                    w.u64(b.byte_count);
                }
                w.patch_len16(len_at, start, ctx, "group_stats entry")?;
            }
        }
        MultipartReplyBody::GroupFeatures(f) => {
            w.u32(f.types);
            w.u32(f.capabilities);
            f.max_groups.iter().for_each(|v| w.u32(*v));
            f.actions.iter().for_each(|v| w.u32(*v));
        }
        MultipartReplyBody::Meter(meters) => {
            for m in meters {
                let start = w.len();
                w.u32(m.meter_id);
                let len_at = w.placeholder16();
                w.zeros(6);
                w.u32(m.flow_count);
                w.u64(m.packet_in_count);
                w.u64(m.byte_in_count);
                w.u32(m.duration_sec);
                w.u32(m.duration_nsec);
                for b in &m.band_stats {
                    w.u64(b.packet_band_count);
                    w.u64(b.byte_band_count);
                }
                w.patch_len16(len_at, start, ctx, "meter_stats entry")?;
            }
        }
        MultipartReplyBody::MeterConfig(configs) => {
            for c in configs {
                let start = w.len();
                let len_at = w.placeholder16();
                w.u16(c.flags);
                w.u32(c.meter_id);
                encode_bands(w, &c.bands, ctx)?;
                w.patch_len16(len_at, start, ctx, "meter_config entry")?;
            }
        }
        MultipartReplyBody::MeterFeatures(f) => {
            w.u32(f.max_meter);
            w.u32(f.band_types);
            w.u32(f.capabilities);
            w.u8(f.max_bands);
            w.u8(f.max_color);
            w.zeros(2);
        }
        MultipartReplyBody::Experimenter {
            experimenter,
            exp_type,
            data,
        } => {
            w.u32(*experimenter);
            w.u32(*exp_type);
            w.bytes(data);
        }
        MultipartReplyBody::TableFeatures(body) | MultipartReplyBody::Other { body, .. } => {
            w.bytes(body)
        }
    }
    Ok(())
}

fn encode_port_stats(w: &mut Writer, p: &PortStats) {
    w.u32(p.port_no);
    w.zeros(4);
    for v in [
        p.rx_packets,
        p.tx_packets,
        p.rx_bytes,
        p.tx_bytes,
        p.rx_dropped,
        p.tx_dropped,
        p.rx_errors,
        p.tx_errors,
        p.rx_frame_err,
        p.rx_over_err,
        p.rx_crc_err,
        p.collisions,
    ] {
        w.u64(v);
    }
    w.u32(p.duration_sec);
    w.u32(p.duration_nsec);
}

fn decode_port_stats(r: &mut Reader<'_>) -> DecodeResult<PortStats> {
    let port_no = r.u32("port_stats port_no")?;
    r.skip(4, "port_stats pad")?;
    let mut c = [0u64; 12];
    for v in &mut c {
        *v = r.u64("port_stats counter")?;
    }
    let [rx_packets, tx_packets, rx_bytes, tx_bytes, rx_dropped, tx_dropped, rx_errors, tx_errors, rx_frame_err, rx_over_err, rx_crc_err, collisions] =
        c;
    Ok(PortStats {
        port_no,
        rx_packets,
        tx_packets,
        rx_bytes,
        tx_bytes,
        rx_dropped,
        tx_dropped,
        rx_errors,
        tx_errors,
        rx_frame_err,
        rx_over_err,
        rx_crc_err,
        collisions,
        duration_sec: r.u32("port_stats duration_sec")?,
        duration_nsec: r.u32("port_stats duration_nsec")?,
    })
}

/// Fails unless `r` holds a whole number of `entry_len`-byte entries.
fn whole_entries(r: &Reader<'_>, entry_len: usize, detail: &'static str) -> DecodeResult<()> {
    if r.remaining() % entry_len == 0 {
        Ok(())
    } else {
        Err(DecodeError::Invalid {
            context: r.ctx(),
            detail,
        })
    }
}

/// Reads 16-byte counter pairs (`ofp_bucket_counter`, `ofp_meter_band_stats`) until `r`
/// is exhausted.
fn decode_counter_pairs(r: &mut Reader<'_>, detail: &'static str) -> DecodeResult<Vec<[u64; 2]>> {
    whole_entries(r, COUNTER_PAIR_LEN, detail)?;
    let mut out = Vec::with_capacity(r.remaining() / COUNTER_PAIR_LEN);
    while !r.is_empty() {
        out.push([r.u64("packet counter")?, r.u64("byte counter")?]);
    }
    Ok(out)
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
        OFPMP_AGGREGATE => {
            let a = AggregateStats {
                packet_count: r.u64("aggregate packet_count")?,
                byte_count: r.u64("aggregate byte_count")?,
                flow_count: r.u32("aggregate flow_count")?,
            };
            r.skip(4, "aggregate pad")?;
            MultipartReplyBody::Aggregate(a)
        }
        OFPMP_TABLE => {
            whole_entries(
                r,
                TABLE_STATS_LEN,
                "table stats body is not a whole number of 24-byte ofp_table_stats",
            )?;
            let mut tables = Vec::with_capacity(r.remaining() / TABLE_STATS_LEN);
            while !r.is_empty() {
                let table_id = r.u8("table_stats table_id")?;
                r.skip(3, "table_stats pad")?;
                tables.push(TableStats {
                    table_id,
                    active_count: r.u32("table_stats active_count")?,
                    lookup_count: r.u64("table_stats lookup_count")?,
                    matched_count: r.u64("table_stats matched_count")?,
                });
            }
            MultipartReplyBody::Table(tables)
        }
        OFPMP_PORT_STATS => {
            whole_entries(
                r,
                PORT_STATS_LEN,
                "port stats body is not a whole number of 112-byte ofp_port_stats",
            )?;
            let mut ports = Vec::with_capacity(r.remaining() / PORT_STATS_LEN);
            while !r.is_empty() {
                ports.push(decode_port_stats(r)?);
            }
            MultipartReplyBody::PortStats(ports)
        }
        OFPMP_QUEUE => {
            whole_entries(
                r,
                QUEUE_STATS_LEN,
                "queue stats body is not a whole number of 40-byte ofp_queue_stats",
            )?;
            let mut queues = Vec::with_capacity(r.remaining() / QUEUE_STATS_LEN);
            while !r.is_empty() {
                queues.push(QueueStats {
                    port_no: r.u32("queue_stats port_no")?,
                    queue_id: r.u32("queue_stats queue_id")?,
                    tx_bytes: r.u64("queue_stats tx_bytes")?,
                    tx_packets: r.u64("queue_stats tx_packets")?,
                    tx_errors: r.u64("queue_stats tx_errors")?,
                    duration_sec: r.u32("queue_stats duration_sec")?,
                    duration_nsec: r.u32("queue_stats duration_nsec")?,
                });
            }
            MultipartReplyBody::Queue(queues)
        }
        OFPMP_GROUP => {
            let mut groups = Vec::new();
            while !r.is_empty() {
                let mut e = r.tlv(0, GROUP_STATS_FIXED_LEN, "group_stats entry")?;
                e.skip(4, "group_stats length and pad")?;
                let group_id = e.u32("group_stats group_id")?;
                let ref_count = e.u32("group_stats ref_count")?;
                e.skip(4, "group_stats pad2")?;
                let packet_count = e.u64("group_stats packet_count")?;
                let byte_count = e.u64("group_stats byte_count")?;
                let duration_sec = e.u32("group_stats duration_sec")?;
                let duration_nsec = e.u32("group_stats duration_nsec")?;
                let bucket_stats = decode_counter_pairs(
                    &mut e,
                    "group stats bucket counters are not a whole number of 16-byte entries",
                )?
                .into_iter()
                .map(|[packet_count, byte_count]| BucketCounter {
                    packet_count,
                    byte_count,
                })
                .collect();
                groups.push(GroupStats {
                    group_id,
                    ref_count,
                    packet_count,
                    byte_count,
                    duration_sec,
                    duration_nsec,
                    bucket_stats,
                });
            }
            MultipartReplyBody::Group(groups)
        }
        OFPMP_GROUP_FEATURES => {
            let types = r.u32("group_features types")?;
            let capabilities = r.u32("group_features capabilities")?;
            let mut max_groups = [0u32; 4];
            for v in &mut max_groups {
                *v = r.u32("group_features max_groups")?;
            }
            let mut actions = [0u32; 4];
            for v in &mut actions {
                *v = r.u32("group_features actions")?;
            }
            MultipartReplyBody::GroupFeatures(GroupFeatures {
                types,
                capabilities,
                max_groups,
                actions,
            })
        }
        OFPMP_METER => {
            let mut meters = Vec::new();
            while !r.is_empty() {
                let mut e = r.tlv(4, METER_STATS_FIXED_LEN, "meter_stats entry")?;
                let meter_id = e.u32("meter_stats meter_id")?;
                e.skip(8, "meter_stats length and pad")?;
                let flow_count = e.u32("meter_stats flow_count")?;
                let packet_in_count = e.u64("meter_stats packet_in_count")?;
                let byte_in_count = e.u64("meter_stats byte_in_count")?;
                let duration_sec = e.u32("meter_stats duration_sec")?;
                let duration_nsec = e.u32("meter_stats duration_nsec")?;
                let band_stats = decode_counter_pairs(
                    &mut e,
                    "meter stats band counters are not a whole number of 16-byte entries",
                )?
                .into_iter()
                .map(|[packet_band_count, byte_band_count]| MeterBandStats {
                    packet_band_count,
                    byte_band_count,
                })
                .collect();
                meters.push(MeterStats {
                    meter_id,
                    flow_count,
                    packet_in_count,
                    byte_in_count,
                    duration_sec,
                    duration_nsec,
                    band_stats,
                });
            }
            MultipartReplyBody::Meter(meters)
        }
        OFPMP_METER_CONFIG => {
            let mut configs = Vec::new();
            while !r.is_empty() {
                let mut e = r.tlv(0, METER_CONFIG_FIXED_LEN, "meter_config entry")?;
                e.skip(2, "meter_config length")?;
                let flags = e.u16("meter_config flags")?;
                let meter_id = e.u32("meter_config meter_id")?;
                let bands = decode_bands(&mut e)?;
                configs.push(MeterConfig {
                    flags,
                    meter_id,
                    bands,
                });
            }
            MultipartReplyBody::MeterConfig(configs)
        }
        OFPMP_METER_FEATURES => {
            let f = MeterFeatures {
                max_meter: r.u32("meter_features max_meter")?,
                band_types: r.u32("meter_features band_types")?,
                capabilities: r.u32("meter_features capabilities")?,
                max_bands: r.u8("meter_features max_bands")?,
                max_color: r.u8("meter_features max_color")?,
            };
            r.skip(2, "meter_features pad")?;
            MultipartReplyBody::MeterFeatures(f)
        }
        OFPMP_TABLE_FEATURES => MultipartReplyBody::TableFeatures(r.rest().to_vec()),
        OFPMP_EXPERIMENTER => MultipartReplyBody::Experimenter {
            experimenter: r.u32("multipart experimenter")?,
            exp_type: r.u32("multipart exp_type")?,
            data: r.rest().to_vec(),
        },
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
