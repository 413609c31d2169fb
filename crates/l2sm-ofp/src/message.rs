//! Whole messages: `encode`, `decode` and the fixed bodies (OpenFlow 1.3.5 §7.3-§7.5).

use crate::action::{decode_actions, encode_actions};
use crate::error::{DecodeError, EncodeError, EncodeResult};
use crate::group_mod::{decode_group_mod, encode_group_mod};
use crate::header::{peek_header, HEADER_LEN};
use crate::instruction::{decode_instructions, encode_instructions};
use crate::meter_mod::{decode_meter_mod, encode_meter_mod};
use crate::multipart::{decode_reply, decode_request, encode_reply, encode_request};
use crate::oxm::{decode_match, encode_match};
use crate::port_desc::{decode_port, encode_port};
use crate::queue_config::{decode_queue_config, encode_queue_config};
use crate::types::{
    AsyncConfig, ControllerRole, ErrorMsg, FeaturesReply, FlowMod, FlowModCommand, FlowRemoved,
    Message, OfpMessage, PacketIn, PacketOut, PortMod, PortStatus, RoleMsg, SwitchConfig, TableMod,
    OFP_VERSION,
};
use crate::wire::{pad8, Reader, Writer};

const OFPT_HELLO: u8 = 0;
const OFPT_ERROR: u8 = 1;
const OFPT_ECHO_REQUEST: u8 = 2;
const OFPT_ECHO_REPLY: u8 = 3;
const OFPT_EXPERIMENTER: u8 = 4;
const OFPT_FEATURES_REQUEST: u8 = 5;
const OFPT_FEATURES_REPLY: u8 = 6;
const OFPT_GET_CONFIG_REQUEST: u8 = 7;
const OFPT_GET_CONFIG_REPLY: u8 = 8;
const OFPT_SET_CONFIG: u8 = 9;
const OFPT_PACKET_IN: u8 = 10;
const OFPT_FLOW_REMOVED: u8 = 11;
const OFPT_PORT_STATUS: u8 = 12;
const OFPT_PACKET_OUT: u8 = 13;
const OFPT_FLOW_MOD: u8 = 14;
const OFPT_GROUP_MOD: u8 = 15;
const OFPT_PORT_MOD: u8 = 16;
const OFPT_TABLE_MOD: u8 = 17;
const OFPT_MULTIPART_REQUEST: u8 = 18;
const OFPT_MULTIPART_REPLY: u8 = 19;
const OFPT_BARRIER_REQUEST: u8 = 20;
const OFPT_BARRIER_REPLY: u8 = 21;
const OFPT_QUEUE_GET_CONFIG_REQUEST: u8 = 22;
const OFPT_QUEUE_GET_CONFIG_REPLY: u8 = 23;
const OFPT_ROLE_REQUEST: u8 = 24;
const OFPT_ROLE_REPLY: u8 = 25;
const OFPT_GET_ASYNC_REQUEST: u8 = 26;
const OFPT_GET_ASYNC_REPLY: u8 = 27;
const OFPT_SET_ASYNC: u8 = 28;
const OFPT_METER_MOD: u8 = 29;

/// `OFPHET_VERSIONBITMAP`, the only HELLO element type defined by OpenFlow 1.3.
const OFPHET_VERSIONBITMAP: u16 = 1;
/// Versions up to 1.2 define no HELLO elements; their bodies must be ignored.
const FIRST_VERSION_WITH_HELLO_ELEMENTS: u8 = 0x04;

impl OfpMessage {
    /// Pairs a body with its transaction id.
    pub const fn new(xid: u32, body: Message) -> Self {
        OfpMessage { xid, body }
    }
}

impl Message {
    /// A HELLO advertising OpenFlow 1.3 only (version bitmap `1 << 4`).
    pub fn hello_v13() -> Self {
        Message::Hello {
            version_bitmap: Some(vec![1 << OFP_VERSION]),
        }
    }

    /// The wire `ofp_type` of this body.
    pub fn msg_type(&self) -> u8 {
        match self {
            Message::Hello { .. } => OFPT_HELLO,
            Message::Error(_) => OFPT_ERROR,
            Message::EchoRequest(_) => OFPT_ECHO_REQUEST,
            Message::EchoReply(_) => OFPT_ECHO_REPLY,
            Message::Experimenter { .. } => OFPT_EXPERIMENTER,
            Message::FeaturesRequest => OFPT_FEATURES_REQUEST,
            Message::FeaturesReply(_) => OFPT_FEATURES_REPLY,
            Message::GetConfigRequest => OFPT_GET_CONFIG_REQUEST,
            Message::GetConfigReply(_) => OFPT_GET_CONFIG_REPLY,
            Message::SetConfig(_) => OFPT_SET_CONFIG,
            Message::PacketIn(_) => OFPT_PACKET_IN,
            Message::FlowRemoved(_) => OFPT_FLOW_REMOVED,
            Message::PortStatus(_) => OFPT_PORT_STATUS,
            Message::PacketOut(_) => OFPT_PACKET_OUT,
            Message::FlowMod(_) => OFPT_FLOW_MOD,
            Message::GroupMod(_) => OFPT_GROUP_MOD,
            Message::PortMod(_) => OFPT_PORT_MOD,
            Message::TableMod(_) => OFPT_TABLE_MOD,
            Message::MultipartRequest(_) => OFPT_MULTIPART_REQUEST,
            Message::MultipartReply(_) => OFPT_MULTIPART_REPLY,
            Message::BarrierRequest => OFPT_BARRIER_REQUEST,
            Message::BarrierReply => OFPT_BARRIER_REPLY,
            Message::QueueGetConfigRequest { .. } => OFPT_QUEUE_GET_CONFIG_REQUEST,
            Message::QueueGetConfigReply(_) => OFPT_QUEUE_GET_CONFIG_REPLY,
            Message::RoleRequest(_) => OFPT_ROLE_REQUEST,
            Message::RoleReply(_) => OFPT_ROLE_REPLY,
            Message::GetAsyncRequest => OFPT_GET_ASYNC_REQUEST,
            Message::GetAsyncReply(_) => OFPT_GET_ASYNC_REPLY,
            Message::SetAsync(_) => OFPT_SET_ASYNC,
            Message::MeterMod(_) => OFPT_METER_MOD,
            Message::Other { msg_type, .. } => *msg_type,
        }
    }

    /// Whether the peer answers this message with a reply carrying the same xid
    /// (ECHO, FEATURES, GET_CONFIG, MULTIPART, BARRIER, QUEUE_GET_CONFIG, ROLE and
    /// GET_ASYNC requests). Other messages are only answered when they fail, with an
    /// ERROR.
    pub fn expects_reply(&self) -> bool {
        matches!(
            self,
            Message::EchoRequest(_)
                | Message::FeaturesRequest
                | Message::GetConfigRequest
                | Message::MultipartRequest(_)
                | Message::BarrierRequest
                | Message::QueueGetConfigRequest { .. }
                | Message::RoleRequest(_)
                | Message::GetAsyncRequest
        )
    }

    /// Whether this is the reply half of a request/reply pair (see
    /// [`Message::expects_reply`]).
    pub fn is_reply(&self) -> bool {
        matches!(
            self,
            Message::EchoReply(_)
                | Message::FeaturesReply(_)
                | Message::GetConfigReply(_)
                | Message::MultipartReply(_)
                | Message::BarrierReply
                | Message::QueueGetConfigReply(_)
                | Message::RoleReply(_)
                | Message::GetAsyncReply(_)
        )
    }

    /// Short lower-case name of the message type, as used in error messages and logs.
    pub fn name(&self) -> &'static str {
        type_name(self.msg_type())
    }
}

fn type_name(t: u8) -> &'static str {
    match t {
        OFPT_HELLO => "hello",
        OFPT_ERROR => "error",
        OFPT_ECHO_REQUEST => "echo_request",
        OFPT_ECHO_REPLY => "echo_reply",
        OFPT_EXPERIMENTER => "experimenter",
        OFPT_FEATURES_REQUEST => "features_request",
        OFPT_FEATURES_REPLY => "features_reply",
        OFPT_GET_CONFIG_REQUEST => "get_config_request",
        OFPT_GET_CONFIG_REPLY => "get_config_reply",
        OFPT_SET_CONFIG => "set_config",
        OFPT_PACKET_IN => "packet_in",
        OFPT_FLOW_REMOVED => "flow_removed",
        OFPT_PORT_STATUS => "port_status",
        OFPT_PACKET_OUT => "packet_out",
        OFPT_FLOW_MOD => "flow_mod",
        OFPT_GROUP_MOD => "group_mod",
        OFPT_PORT_MOD => "port_mod",
        OFPT_TABLE_MOD => "table_mod",
        OFPT_MULTIPART_REQUEST => "multipart_request",
        OFPT_MULTIPART_REPLY => "multipart_reply",
        OFPT_BARRIER_REQUEST => "barrier_request",
        OFPT_BARRIER_REPLY => "barrier_reply",
        OFPT_QUEUE_GET_CONFIG_REQUEST => "queue_get_config_request",
        OFPT_QUEUE_GET_CONFIG_REPLY => "queue_get_config_reply",
        OFPT_ROLE_REQUEST => "role_request",
        OFPT_ROLE_REPLY => "role_reply",
        OFPT_GET_ASYNC_REQUEST => "get_async_request",
        OFPT_GET_ASYNC_REPLY => "get_async_reply",
        OFPT_SET_ASYNC => "set_async",
        OFPT_METER_MOD => "meter_mod",
        _ => "message",
    }
}

/// Encodes one message, header included, as OpenFlow 1.3 (version 0x04).
///
/// The result round-trips through [`decode`], with three normalisations: learn immediates
/// shorter than their wire width come back left-padded, [`Message::Other`] / raw
/// variants whose type the codec models come back in their typed form, and padding the
/// codec skips (in meter bands, queue properties...) comes back zeroed.
///
/// # Errors
///
/// [`EncodeError::TooLong`] when the message (or a nested length field) exceeds its wire
/// field, [`EncodeError::Unrepresentable`] for values OpenFlow 1.3 cannot carry (a masked
/// set_field, a register index above 15, an unaligned raw TLV, an over-long port name...).
pub fn encode(msg: &OfpMessage) -> Result<Vec<u8>, EncodeError> {
    // Most messages (flow mods included) fit: one allocation instead of five doublings.
    let mut out = Vec::with_capacity(256);
    encode_into(msg, &mut out)?;
    Ok(out)
}

/// Like [`encode`], but appends the message to `out` (reusing its allocation, as a
/// session's output buffer does). On error `out` is left as it was.
///
/// # Errors
///
/// The same as [`encode`].
pub fn encode_into(msg: &OfpMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let ctx = msg.body.name();
    let base = out.len();
    let mut w = Writer::from_vec(std::mem::take(out));
    w.u8(OFP_VERSION);
    w.u8(msg.body.msg_type());
    let len_at = w.placeholder16();
    w.u32(msg.xid);
    let result = encode_body(&mut w, &msg.body, ctx)
        .and_then(|()| w.patch_len16(len_at, base, ctx, "message"));
    *out = w.into_vec();
    if result.is_err() {
        out.truncate(base);
    }
    result
}

fn encode_body(w: &mut Writer, body: &Message, ctx: &'static str) -> EncodeResult<()> {
    match body {
        Message::Hello { version_bitmap } => {
            if let Some(bitmaps) = version_bitmap {
                let start = w.len();
                w.u16(OFPHET_VERSIONBITMAP);
                let len_at = w.placeholder16();
                bitmaps.iter().for_each(|b| w.u32(*b));
                w.patch_len16(len_at, start, ctx, "hello version bitmap")?;
                w.pad8_from(start);
            }
        }
        Message::Error(e) => {
            w.u16(e.err_type);
            w.u16(e.code);
            w.bytes(&e.data);
        }
        Message::EchoRequest(data) | Message::EchoReply(data) => w.bytes(data),
        Message::Experimenter {
            experimenter,
            exp_type,
            data,
        } => {
            w.u32(*experimenter);
            w.u32(*exp_type);
            w.bytes(data);
        }
        Message::FeaturesRequest
        | Message::GetConfigRequest
        | Message::BarrierRequest
        | Message::BarrierReply => {}
        Message::FeaturesReply(f) => {
            w.u64(f.datapath_id);
            w.u32(f.n_buffers);
            w.u8(f.n_tables);
            w.u8(f.auxiliary_id);
            w.zeros(2);
            w.u32(f.capabilities);
            w.u32(0);
        }
        Message::GetConfigReply(c) | Message::SetConfig(c) => {
            w.u16(c.flags);
            w.u16(c.miss_send_len);
        }
        Message::PacketIn(p) => {
            w.u32(p.buffer_id);
            w.u16(p.total_len);
            w.u8(p.reason);
            w.u8(p.table_id);
            w.u64(p.cookie);
            encode_match(w, &p.r#match, ctx)?;
            w.zeros(2);
            w.bytes(&p.data);
        }
        Message::PortStatus(s) => {
            w.u8(s.reason);
            w.zeros(7);
            encode_port(w, &s.desc, ctx)?;
        }
        Message::PacketOut(p) => {
            w.u32(p.buffer_id);
            w.u32(p.in_port);
            let len_at = w.placeholder16();
            w.zeros(6);
            let start = w.len();
            encode_actions(w, &p.actions, ctx)?;
            w.patch_len16(len_at, start, ctx, "packet_out actions")?;
            w.bytes(&p.data);
        }
        Message::FlowMod(f) => {
            w.u64(f.cookie);
            w.u64(f.cookie_mask);
            w.u8(f.table_id);
            w.u8(f.command as u8);
            w.u16(f.idle_timeout);
            w.u16(f.hard_timeout);
            w.u16(f.priority);
            w.u32(f.buffer_id);
            w.u32(f.out_port);
            w.u32(f.out_group);
            w.u16(f.flags);
            w.zeros(2);
            encode_match(w, &f.r#match, ctx)?;
            encode_instructions(w, &f.instructions, ctx)?;
        }
        Message::GroupMod(g) => encode_group_mod(w, g, ctx)?,
        Message::MultipartRequest(m) => encode_request(w, m, ctx)?,
        Message::MultipartReply(m) => encode_reply(w, m, ctx)?,
        Message::FlowRemoved(f) => {
            w.u64(f.cookie);
            w.u16(f.priority);
            w.u8(f.reason);
            w.u8(f.table_id);
            w.u32(f.duration_sec);
            w.u32(f.duration_nsec);
            w.u16(f.idle_timeout);
            w.u16(f.hard_timeout);
            w.u64(f.packet_count);
            w.u64(f.byte_count);
            encode_match(w, &f.r#match, ctx)?;
        }
        Message::PortMod(p) => {
            w.u32(p.port_no);
            w.zeros(4);
            w.bytes(&p.hw_addr);
            w.zeros(2);
            w.u32(p.config);
            w.u32(p.mask);
            w.u32(p.advertise);
            w.zeros(4);
        }
        Message::TableMod(t) => {
            w.u8(t.table_id);
            w.zeros(3);
            w.u32(t.config);
        }
        Message::QueueGetConfigRequest { port } => {
            w.u32(*port);
            w.zeros(4);
        }
        Message::QueueGetConfigReply(c) => encode_queue_config(w, c, ctx)?,
        Message::RoleRequest(r) | Message::RoleReply(r) => {
            w.u32(r.role as u32);
            w.zeros(4);
            w.u64(r.generation_id);
        }
        Message::GetAsyncRequest => {}
        Message::GetAsyncReply(a) | Message::SetAsync(a) => {
            for v in a
                .packet_in_mask
                .iter()
                .chain(&a.port_status_mask)
                .chain(&a.flow_removed_mask)
            {
                w.u32(*v);
            }
        }
        Message::MeterMod(m) => encode_meter_mod(w, m, ctx)?,
        Message::Other { body, .. } => w.bytes(body),
    }
    Ok(())
}

/// Decodes exactly one complete message (`buf.len()` must equal the header's length).
///
/// Never panics. A message whose version is not 0x04 is accepted only if it is a HELLO,
/// so that a session can read the peer's versions and negotiate; use
/// [`peek_header`](crate::peek_header) to see the version itself. Unknown message types
/// decode to [`Message::Other`].
///
/// # Errors
///
/// A [`DecodeError`] naming the offending structure for any malformed input.
pub fn decode(buf: &[u8]) -> Result<OfpMessage, DecodeError> {
    let Some(h) = peek_header(buf) else {
        return Err(DecodeError::Truncated {
            context: "ofp_header",
            item: "header",
            needed: HEADER_LEN,
            available: buf.len(),
        });
    };
    if usize::from(h.length) < HEADER_LEN {
        return Err(DecodeError::LengthBelowHeader(h.length));
    }
    if usize::from(h.length) != buf.len() {
        return Err(DecodeError::LengthMismatch {
            declared: h.length,
            actual: buf.len(),
        });
    }
    if h.version != OFP_VERSION && h.msg_type != OFPT_HELLO {
        return Err(DecodeError::UnsupportedVersion(h.version));
    }
    let ctx = type_name(h.msg_type);
    let mut r = Reader::new(buf.get(HEADER_LEN..).unwrap_or_default(), ctx);
    let body = decode_body(&mut r, h.msg_type, h.version)?;
    r.finish("body")?;
    Ok(OfpMessage { xid: h.xid, body })
}

fn decode_body(r: &mut Reader<'_>, msg_type: u8, version: u8) -> Result<Message, DecodeError> {
    let ctx = r.ctx();
    let body = match msg_type {
        OFPT_HELLO => decode_hello(r, version)?,
        OFPT_ERROR => Message::Error(ErrorMsg {
            err_type: r.u16("error type")?,
            code: r.u16("error code")?,
            data: r.rest().to_vec(),
        }),
        OFPT_ECHO_REQUEST => Message::EchoRequest(r.rest().to_vec()),
        OFPT_ECHO_REPLY => Message::EchoReply(r.rest().to_vec()),
        OFPT_EXPERIMENTER => Message::Experimenter {
            experimenter: r.u32("experimenter id")?,
            exp_type: r.u32("experimenter exp_type")?,
            data: r.rest().to_vec(),
        },
        OFPT_FEATURES_REQUEST => Message::FeaturesRequest,
        OFPT_GET_CONFIG_REQUEST => Message::GetConfigRequest,
        OFPT_BARRIER_REQUEST => Message::BarrierRequest,
        OFPT_BARRIER_REPLY => Message::BarrierReply,
        OFPT_FEATURES_REPLY => {
            let datapath_id = r.u64("features datapath_id")?;
            let n_buffers = r.u32("features n_buffers")?;
            let n_tables = r.u8("features n_tables")?;
            let auxiliary_id = r.u8("features auxiliary_id")?;
            r.skip(2, "features pad")?;
            let capabilities = r.u32("features capabilities")?;
            r.skip(4, "features reserved")?;
            Message::FeaturesReply(FeaturesReply {
                datapath_id,
                n_buffers,
                n_tables,
                auxiliary_id,
                capabilities,
            })
        }
        OFPT_GET_CONFIG_REPLY | OFPT_SET_CONFIG => {
            let c = SwitchConfig {
                flags: r.u16("switch_config flags")?,
                miss_send_len: r.u16("switch_config miss_send_len")?,
            };
            if msg_type == OFPT_SET_CONFIG {
                Message::SetConfig(c)
            } else {
                Message::GetConfigReply(c)
            }
        }
        OFPT_PACKET_IN => {
            let buffer_id = r.u32("packet_in buffer_id")?;
            let total_len = r.u16("packet_in total_len")?;
            let reason = r.u8("packet_in reason")?;
            let table_id = r.u8("packet_in table_id")?;
            let cookie = r.u64("packet_in cookie")?;
            let r#match = decode_match(r)?;
            r.skip(2, "packet_in pad")?;
            Message::PacketIn(PacketIn {
                buffer_id,
                total_len,
                reason,
                table_id,
                cookie,
                r#match,
                data: r.rest().to_vec(),
            })
        }
        OFPT_PORT_STATUS => {
            let reason = r.u8("port_status reason")?;
            r.skip(7, "port_status pad")?;
            Message::PortStatus(PortStatus {
                reason,
                desc: decode_port(r)?,
            })
        }
        OFPT_PACKET_OUT => {
            let buffer_id = r.u32("packet_out buffer_id")?;
            let in_port = r.u32("packet_out in_port")?;
            let actions_len = usize::from(r.u16("packet_out actions_len")?);
            r.skip(6, "packet_out pad")?;
            let actions = decode_actions(&mut r.sub(actions_len, "packet_out actions")?)?;
            Message::PacketOut(PacketOut {
                buffer_id,
                in_port,
                actions,
                data: r.rest().to_vec(),
            })
        }
        OFPT_FLOW_MOD => {
            let cookie = r.u64("flow_mod cookie")?;
            let cookie_mask = r.u64("flow_mod cookie_mask")?;
            let table_id = r.u8("flow_mod table_id")?;
            let command = match r.u8("flow_mod command")? {
                0 => FlowModCommand::Add,
                1 => FlowModCommand::Modify,
                2 => FlowModCommand::ModifyStrict,
                3 => FlowModCommand::Delete,
                4 => FlowModCommand::DeleteStrict,
                v => {
                    return Err(DecodeError::BadValue {
                        context: ctx,
                        item: "flow_mod command",
                        value: v.into(),
                    })
                }
            };
            let idle_timeout = r.u16("flow_mod idle_timeout")?;
            let hard_timeout = r.u16("flow_mod hard_timeout")?;
            let priority = r.u16("flow_mod priority")?;
            let buffer_id = r.u32("flow_mod buffer_id")?;
            let out_port = r.u32("flow_mod out_port")?;
            let out_group = r.u32("flow_mod out_group")?;
            let flags = r.u16("flow_mod flags")?;
            r.skip(2, "flow_mod pad")?;
            let r#match = decode_match(r)?;
            let instructions = decode_instructions(r)?;
            Message::FlowMod(FlowMod {
                cookie,
                cookie_mask,
                table_id,
                command,
                idle_timeout,
                hard_timeout,
                priority,
                buffer_id,
                out_port,
                out_group,
                flags,
                r#match,
                instructions,
            })
        }
        OFPT_GROUP_MOD => Message::GroupMod(decode_group_mod(r)?),
        OFPT_MULTIPART_REQUEST => Message::MultipartRequest(decode_request(r)?),
        OFPT_MULTIPART_REPLY => Message::MultipartReply(decode_reply(r)?),
        OFPT_FLOW_REMOVED => Message::FlowRemoved(FlowRemoved {
            cookie: r.u64("flow_removed cookie")?,
            priority: r.u16("flow_removed priority")?,
            reason: r.u8("flow_removed reason")?,
            table_id: r.u8("flow_removed table_id")?,
            duration_sec: r.u32("flow_removed duration_sec")?,
            duration_nsec: r.u32("flow_removed duration_nsec")?,
            idle_timeout: r.u16("flow_removed idle_timeout")?,
            hard_timeout: r.u16("flow_removed hard_timeout")?,
            packet_count: r.u64("flow_removed packet_count")?,
            byte_count: r.u64("flow_removed byte_count")?,
            r#match: decode_match(r)?,
        }),
        OFPT_PORT_MOD => {
            let port_no = r.u32("port_mod port_no")?;
            r.skip(4, "port_mod pad")?;
            let hw_addr = r.array("port_mod hw_addr")?;
            r.skip(2, "port_mod pad2")?;
            let p = PortMod {
                port_no,
                hw_addr,
                config: r.u32("port_mod config")?,
                mask: r.u32("port_mod mask")?,
                advertise: r.u32("port_mod advertise")?,
            };
            r.skip(4, "port_mod pad3")?;
            Message::PortMod(p)
        }
        OFPT_TABLE_MOD => {
            let table_id = r.u8("table_mod table_id")?;
            r.skip(3, "table_mod pad")?;
            Message::TableMod(TableMod {
                table_id,
                config: r.u32("table_mod config")?,
            })
        }
        OFPT_QUEUE_GET_CONFIG_REQUEST => {
            let port = r.u32("queue_get_config_request port")?;
            r.skip(4, "queue_get_config_request pad")?;
            Message::QueueGetConfigRequest { port }
        }
        OFPT_QUEUE_GET_CONFIG_REPLY => Message::QueueGetConfigReply(decode_queue_config(r)?),
        OFPT_ROLE_REQUEST | OFPT_ROLE_REPLY => {
            let role = match r.u32("role")? {
                0 => ControllerRole::NoChange,
                1 => ControllerRole::Equal,
                2 => ControllerRole::Master,
                3 => ControllerRole::Slave,
                v => {
                    return Err(DecodeError::BadValue {
                        context: ctx,
                        item: "role",
                        value: v.into(),
                    })
                }
            };
            r.skip(4, "role pad")?;
            let m = RoleMsg {
                role,
                generation_id: r.u64("role generation_id")?,
            };
            if msg_type == OFPT_ROLE_REQUEST {
                Message::RoleRequest(m)
            } else {
                Message::RoleReply(m)
            }
        }
        OFPT_GET_ASYNC_REQUEST => Message::GetAsyncRequest,
        OFPT_GET_ASYNC_REPLY | OFPT_SET_ASYNC => {
            let mut words = [0u32; 6];
            for v in &mut words {
                *v = r.u32("async_config mask")?;
            }
            let [p0, p1, s0, s1, f0, f1] = words;
            let a = AsyncConfig {
                packet_in_mask: [p0, p1],
                port_status_mask: [s0, s1],
                flow_removed_mask: [f0, f1],
            };
            if msg_type == OFPT_SET_ASYNC {
                Message::SetAsync(a)
            } else {
                Message::GetAsyncReply(a)
            }
        }
        OFPT_METER_MOD => Message::MeterMod(decode_meter_mod(r)?),
        _ => Message::Other {
            msg_type,
            body: r.rest().to_vec(),
        },
    };
    Ok(body)
}

/// HELLO elements (`struct ofp_hello_elem_header`); each is padded to 8 bytes but its
/// `length` excludes the padding. A missing final pad is tolerated, as OVS does not
/// depend on it either.
fn decode_hello(r: &mut Reader<'_>, version: u8) -> Result<Message, DecodeError> {
    let ctx = r.ctx();
    if version < FIRST_VERSION_WITH_HELLO_ELEMENTS {
        let _ignored = r.rest();
        return Ok(Message::Hello {
            version_bitmap: None,
        });
    }
    let mut version_bitmap = None;
    while !r.is_empty() {
        let elem_type = r.peek_u16(0, "hello element header")?;
        let len = usize::from(r.peek_u16(2, "hello element header")?);
        if len < 4 {
            return Err(DecodeError::TooShort {
                context: ctx,
                item: "hello element",
                len,
                min: 4,
            });
        }
        let mut e = r.sub(len, "hello element")?;
        let pad = pad8(len).min(r.remaining());
        r.skip(pad, "hello element padding")?;
        e.skip(4, "hello element header")?;
        if elem_type == OFPHET_VERSIONBITMAP && version_bitmap.is_none() {
            if e.remaining() % 4 != 0 {
                return Err(DecodeError::Invalid {
                    context: ctx,
                    detail: "hello version bitmap is not a whole number of 32-bit words",
                });
            }
            let mut words = Vec::with_capacity(e.remaining() / 4);
            while !e.is_empty() {
                words.push(e.u32("hello version bitmap")?);
            }
            version_bitmap = Some(words);
        }
    }
    Ok(Message::Hello { version_bitmap })
}
