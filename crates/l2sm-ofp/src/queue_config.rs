//! Queue configuration (OpenFlow 1.3.5 §7.3.6): `struct ofp_queue_get_config_reply`,
//! `struct ofp_packet_queue` and the queue properties.
//!
//! ```text
//! reply:        | port (32) | pad[4] | ofp_packet_queue ...                         |
//! packet_queue: | queue_id (32) | port (32) | len (16) | pad[6] | properties ...    |
//! property:     | property (16) | len (16) | pad[4] | body                          |
//!   min/max_rate:  | rate (16) | pad[6] |                               (16 bytes)
//!   experimenter:  | experimenter (32) | pad[4] | data ... |          (16 + data)
//! ```

use crate::action::check_aligned;
use crate::error::{DecodeError, DecodeResult, EncodeResult};
use crate::types::{PacketQueue, QueueGetConfigReply, QueueProp};
use crate::wire::{Reader, Writer};

const OFPQT_MIN_RATE: u16 = 1;
const OFPQT_MAX_RATE: u16 = 2;
const OFPQT_EXPERIMENTER: u16 = 0xffff;
const PACKET_QUEUE_FIXED_LEN: usize = 16;
const RATE_PROP_LEN: usize = 16;
const PROP_HEADER_LEN: usize = 8;

pub(crate) fn encode_queue_config(
    w: &mut Writer,
    c: &QueueGetConfigReply,
    ctx: &'static str,
) -> EncodeResult<()> {
    w.u32(c.port);
    w.zeros(4);
    for q in &c.queues {
        let start = w.len();
        w.u32(q.queue_id);
        w.u32(q.port);
        let len_at = w.placeholder16();
        w.zeros(6);
        for p in &q.properties {
            encode_prop(w, p, ctx)?;
        }
        w.patch_len16(len_at, start, ctx, "packet_queue")?;
    }
    Ok(())
}

fn encode_prop(w: &mut Writer, p: &QueueProp, ctx: &'static str) -> EncodeResult<()> {
    let start = w.len();
    match p {
        QueueProp::MinRate(rate) | QueueProp::MaxRate(rate) => {
            let t = if matches!(p, QueueProp::MinRate(_)) {
                OFPQT_MIN_RATE
            } else {
                OFPQT_MAX_RATE
            };
            w.u16(t);
            w.u16(RATE_PROP_LEN as u16);
            w.zeros(4);
            w.u16(*rate);
            w.zeros(6);
        }
        QueueProp::Experimenter { experimenter, data } => {
            check_aligned(16 + data.len(), ctx, "experimenter queue property")?;
            w.u16(OFPQT_EXPERIMENTER);
            let len_at = w.placeholder16();
            w.zeros(4);
            w.u32(*experimenter);
            w.zeros(4);
            w.bytes(data);
            w.patch_len16(len_at, start, ctx, "experimenter queue property")?;
        }
        QueueProp::Other { property, data } => {
            check_aligned(4 + data.len(), ctx, "queue property")?;
            if 4 + data.len() < PROP_HEADER_LEN {
                return Err(crate::error::EncodeError::Unrepresentable {
                    context: ctx,
                    detail: "queue property shorter than its 8-byte header".into(),
                });
            }
            w.u16(*property);
            let len_at = w.placeholder16();
            w.bytes(data);
            w.patch_len16(len_at, start, ctx, "queue property")?;
        }
    }
    Ok(())
}

pub(crate) fn decode_queue_config(r: &mut Reader<'_>) -> DecodeResult<QueueGetConfigReply> {
    let port = r.u32("queue_get_config_reply port")?;
    r.skip(4, "queue_get_config_reply pad")?;
    let mut queues = Vec::new();
    while !r.is_empty() {
        let mut q = r.tlv(8, PACKET_QUEUE_FIXED_LEN, "packet_queue")?;
        let queue_id = q.u32("packet_queue queue_id")?;
        let port = q.u32("packet_queue port")?;
        q.skip(8, "packet_queue len and pad")?;
        let mut properties = Vec::new();
        while !q.is_empty() {
            let mut p = q.tlv(2, PROP_HEADER_LEN, "queue property")?;
            properties.push(decode_prop(&mut p)?);
        }
        queues.push(PacketQueue {
            queue_id,
            port,
            properties,
        });
    }
    Ok(QueueGetConfigReply { port, queues })
}

fn decode_prop(p: &mut Reader<'_>) -> DecodeResult<QueueProp> {
    let ctx = p.ctx();
    let property = p.u16("queue property type")?;
    let len = usize::from(p.u16("queue property length")?);
    let rate = |p: &mut Reader<'_>, item: &'static str| {
        if len != RATE_PROP_LEN {
            return Err(DecodeError::WrongLength {
                context: ctx,
                item,
                len,
                expected: RATE_PROP_LEN,
            });
        }
        p.skip(4, "queue property pad")?;
        p.u16("queue property rate")
    };
    Ok(match property {
        OFPQT_MIN_RATE => QueueProp::MinRate(rate(p, "min_rate queue property")?),
        OFPQT_MAX_RATE => QueueProp::MaxRate(rate(p, "max_rate queue property")?),
        OFPQT_EXPERIMENTER => {
            p.skip(4, "queue property pad")?;
            let experimenter = p.u32("queue property experimenter")?;
            p.skip(4, "queue property experimenter pad")?;
            QueueProp::Experimenter {
                experimenter,
                data: p.rest().to_vec(),
            }
        }
        _ => QueueProp::Other {
            property,
            data: p.rest().to_vec(),
        },
    })
}
