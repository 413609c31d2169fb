//! Semantic representation of the OpenFlow 1.3 messages L2S-M exchanges with switches.
//!
//! These types are the contract between the codec (`encode`/`decode`) and the rest of the
//! project. Numbers are host-order; the codec does all byte-order work.

use std::net::{Ipv4Addr, Ipv6Addr};

/// OpenFlow 1.3 wire version.
pub const OFP_VERSION: u8 = 0x04;

/// Reserved port numbers (OpenFlow 1.3.5 §7.2.1, `enum ofp_port_no`).
pub mod port {
    /// Maximum number of a physical/logical port.
    pub const MAX: u32 = 0xffff_ff00;
    /// Send the packet out the input port.
    pub const IN_PORT: u32 = 0xffff_fff8;
    /// Submit the packet to the first flow table.
    pub const TABLE: u32 = 0xffff_fff9;
    /// Forward using non-OpenFlow pipeline.
    pub const NORMAL: u32 = 0xffff_fffa;
    /// Flood using non-OpenFlow pipeline.
    pub const FLOOD: u32 = 0xffff_fffb;
    /// All standard ports except the input port.
    pub const ALL: u32 = 0xffff_fffc;
    /// Send to controller.
    pub const CONTROLLER: u32 = 0xffff_fffd;
    /// Local openflow "port".
    pub const LOCAL: u32 = 0xffff_fffe;
    /// Wildcard port used only for flow mod (delete) and flow stats requests.
    pub const ANY: u32 = 0xffff_ffff;
}

/// Reserved group numbers (`enum ofp_group`).
pub mod group {
    /// Last usable group number.
    pub const MAX: u32 = 0xffff_ff00;
    /// Represents all groups for group delete commands.
    pub const ALL: u32 = 0xffff_fffc;
    /// Wildcard group used only for flow stats requests.
    pub const ANY: u32 = 0xffff_ffff;
}

/// Reserved meter numbers (`enum ofp_meter`).
pub mod meter {
    /// Last usable meter number.
    pub const MAX: u32 = 0xffff_0000;
    /// Meter for slow datapath packets, if any.
    pub const SLOWPATH: u32 = 0xffff_fffd;
    /// Meter for packets sent to the controller, if any.
    pub const CONTROLLER: u32 = 0xffff_fffe;
    /// All meters, for METER_MOD delete and meter stats/config requests.
    pub const ALL: u32 = 0xffff_ffff;
}

/// Reserved queue number (`OFPQ_ALL`) for queue stats requests.
pub mod queue {
    /// All queues of the port(s).
    pub const ALL: u32 = 0xffff_ffff;
}

/// Table id meaning "all tables" in FLOW_MOD delete and stats requests.
pub const TABLE_ALL: u8 = 0xff;
/// `buffer_id` meaning "no buffered packet".
pub const NO_BUFFER: u32 = 0xffff_ffff;

/// One OpenFlow message with its transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfpMessage {
    /// Transaction id (`ofp_header.xid`).
    pub xid: u32,
    /// The message body.
    pub body: Message,
}

/// Message bodies (`enum ofp_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// OFPT_HELLO (0). `version_bitmap`: the OFPHET_VERSIONBITMAP element's bitmaps, if any.
    Hello {
        /// Version bitmaps (bit `n` of word `i` = version `32 * i + n`); `None` when the
        /// HELLO carries no bitmap element.
        version_bitmap: Option<Vec<u32>>,
    },
    /// OFPT_ERROR (1).
    Error(ErrorMsg),
    /// OFPT_ECHO_REQUEST (2) with arbitrary payload.
    EchoRequest(Vec<u8>),
    /// OFPT_ECHO_REPLY (3) with arbitrary payload.
    EchoReply(Vec<u8>),
    /// OFPT_EXPERIMENTER (4); data kept intact.
    Experimenter {
        /// Experimenter id (an OUI or one assigned by the ONF).
        experimenter: u32,
        /// Experimenter-defined message type.
        exp_type: u32,
        /// Experimenter-defined payload after the 16-byte fixed part.
        data: Vec<u8>,
    },
    /// OFPT_FEATURES_REQUEST (5).
    FeaturesRequest,
    /// OFPT_FEATURES_REPLY (6).
    FeaturesReply(FeaturesReply),
    /// OFPT_GET_CONFIG_REQUEST (7).
    GetConfigRequest,
    /// OFPT_GET_CONFIG_REPLY (8).
    GetConfigReply(SwitchConfig),
    /// OFPT_SET_CONFIG (9).
    SetConfig(SwitchConfig),
    /// OFPT_PACKET_IN (10).
    PacketIn(PacketIn),
    /// OFPT_FLOW_REMOVED (11).
    FlowRemoved(FlowRemoved),
    /// OFPT_PORT_STATUS (12).
    PortStatus(PortStatus),
    /// OFPT_PACKET_OUT (13).
    PacketOut(PacketOut),
    /// OFPT_FLOW_MOD (14).
    FlowMod(FlowMod),
    /// OFPT_GROUP_MOD (15).
    GroupMod(GroupMod),
    /// OFPT_PORT_MOD (16).
    PortMod(PortMod),
    /// OFPT_TABLE_MOD (17).
    TableMod(TableMod),
    /// OFPT_MULTIPART_REQUEST (18).
    MultipartRequest(MultipartRequest),
    /// OFPT_MULTIPART_REPLY (19).
    MultipartReply(MultipartReply),
    /// OFPT_BARRIER_REQUEST (20).
    BarrierRequest,
    /// OFPT_BARRIER_REPLY (21).
    BarrierReply,
    /// OFPT_QUEUE_GET_CONFIG_REQUEST (22): the queues of `port` ([`port::ANY`] for all).
    QueueGetConfigRequest {
        /// Port whose queues are queried.
        port: u32,
    },
    /// OFPT_QUEUE_GET_CONFIG_REPLY (23).
    QueueGetConfigReply(QueueGetConfigReply),
    /// OFPT_ROLE_REQUEST (24).
    RoleRequest(RoleMsg),
    /// OFPT_ROLE_REPLY (25).
    RoleReply(RoleMsg),
    /// OFPT_GET_ASYNC_REQUEST (26).
    GetAsyncRequest,
    /// OFPT_GET_ASYNC_REPLY (27).
    GetAsyncReply(AsyncConfig),
    /// OFPT_SET_ASYNC (28).
    SetAsync(AsyncConfig),
    /// OFPT_METER_MOD (29).
    MeterMod(MeterMod),
    /// Any other message type, body kept as raw bytes (everything after the 8-byte header).
    Other {
        /// `ofp_header.type` of the message.
        msg_type: u8,
        /// Everything after the 8-byte header.
        body: Vec<u8>,
    },
}

/// OFPT_ERROR body (`struct ofp_error_msg`), numbers kept raw; see
/// [`ErrorMsg::error_code`] for the typed view and [`ErrorMsg::describe`] for a log line.
///
/// An experimenter error (`err_type` 0xffff, `struct ofp_error_experimenter_msg`) keeps its
/// `exp_type` in `code` and its 32-bit experimenter id in the first four bytes of `data`
/// ([`ErrorMsg::experimenter`] reads it, [`ErrorMsg::experimenter_error`] builds one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    /// `enum ofp_error_type` (0xffff = experimenter).
    pub err_type: u16,
    /// Type-specific code (`exp_type` for experimenter errors).
    pub code: u16,
    /// At least the first 64 bytes of the failed request, or an ASCII string for HELLO_FAILED.
    pub data: Vec<u8>,
}

/// `struct ofp_switch_features`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeaturesReply {
    /// Datapath unique id: lower 48 bits a MAC address, upper 16 bits implementer-defined.
    pub datapath_id: u64,
    /// Maximum number of packets the switch buffers at once.
    pub n_buffers: u32,
    /// Number of flow tables the datapath supports.
    pub n_tables: u8,
    /// Auxiliary connection id (0 on the main connection).
    pub auxiliary_id: u8,
    /// `enum ofp_capabilities` bits (OFPC_FLOW_STATS...).
    pub capabilities: u32,
}

/// `struct ofp_switch_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchConfig {
    /// `enum ofp_config_flags` bits (IP fragment handling).
    pub flags: u16,
    /// Bytes of a packet the pipeline sends to the controller other than through an output
    /// action (0xffff: the whole packet).
    pub miss_send_len: u16,
}

/// `struct ofp_packet_in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    /// Id of the packet buffered on the switch, or [`NO_BUFFER`].
    pub buffer_id: u32,
    /// Full length of the frame (`data` may be shorter).
    pub total_len: u16,
    /// `enum ofp_packet_in_reason`: 0 no match (table miss), 1 action, 2 invalid TTL.
    pub reason: u8,
    /// Table the packet was looked up in.
    pub table_id: u8,
    /// Cookie of the flow entry that sent the packet (all-ones if none).
    pub cookie: u64,
    /// Pipeline fields of the packet (IN_PORT, METADATA, TUNNEL_ID...).
    pub r#match: Match,
    /// The Ethernet frame, possibly truncated.
    pub data: Vec<u8>,
}

/// `struct ofp_flow_removed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRemoved {
    /// Opaque controller-issued identifier of the flow.
    pub cookie: u64,
    /// Priority of the flow.
    pub priority: u16,
    /// `enum ofp_flow_removed_reason`: 0 idle timeout, 1 hard timeout, 2 delete, 3 group
    /// delete (OVS also sends 4, meter delete).
    pub reason: u8,
    /// Table the flow was in.
    pub table_id: u8,
    /// Time the flow was alive, whole seconds.
    pub duration_sec: u32,
    /// Time the flow was alive beyond `duration_sec`, in nanoseconds.
    pub duration_nsec: u32,
    /// Idle timeout of the flow, in seconds, as installed.
    pub idle_timeout: u16,
    /// Hard timeout of the flow, in seconds, as installed.
    pub hard_timeout: u16,
    /// Packets that matched the flow.
    pub packet_count: u64,
    /// Bytes that matched the flow.
    pub byte_count: u64,
    /// Match of the flow.
    pub r#match: Match,
}

/// `struct ofp_port_mod`: change the bits of `config` selected by `mask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMod {
    /// Port to modify.
    pub port_no: u32,
    /// Must be the port's current address (a sanity check, not a change).
    pub hw_addr: [u8; 6],
    /// `enum ofp_port_config` bits.
    pub config: u32,
    /// Which `config` bits to change.
    pub mask: u32,
    /// `enum ofp_port_features` bits to advertise; 0 leaves them unchanged.
    pub advertise: u32,
}

/// `struct ofp_table_mod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMod {
    /// The table, or [`TABLE_ALL`].
    pub table_id: u8,
    /// `enum ofp_table_config` bits (OpenFlow 1.3 defines none; kept raw).
    pub config: u32,
}

/// `struct ofp_queue_get_config_reply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueGetConfigReply {
    /// Port that was queried.
    pub port: u32,
    /// Queues configured on the port.
    pub queues: Vec<PacketQueue>,
}

/// `struct ofp_packet_queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketQueue {
    /// Id of the queue.
    pub queue_id: u32,
    /// Port the queue is attached to.
    pub port: u32,
    /// Properties of the queue.
    pub properties: Vec<QueueProp>,
}

/// Queue properties (`enum ofp_queue_properties`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueProp {
    /// OFPQT_MIN_RATE, in 1/10 of a percent; above 1000 means disabled.
    MinRate(u16),
    /// OFPQT_MAX_RATE, in 1/10 of a percent; above 1000 means disabled.
    MaxRate(u16),
    /// OFPQT_EXPERIMENTER; `data` follows the 16-byte fixed part.
    Experimenter {
        /// Experimenter id.
        experimenter: u32,
        /// Experimenter-defined data.
        data: Vec<u8>,
    },
    /// Any other property; `data` is everything after the 4-byte type/length header.
    Other {
        /// `enum ofp_queue_properties` value.
        property: u16,
        /// Property body after the 4-byte type/length header.
        data: Vec<u8>,
    },
}

/// Controller roles (`enum ofp_controller_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControllerRole {
    /// Do not change the current role (query it).
    NoChange = 0,
    /// Full access, like every other EQUAL controller (the default).
    Equal = 1,
    /// Full access, at most one master.
    Master = 2,
    /// Read-only access.
    Slave = 3,
}

/// `struct ofp_role_request`, the body of both ROLE_REQUEST and ROLE_REPLY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMsg {
    /// Role requested, or the role held (in a reply).
    pub role: ControllerRole,
    /// Master election generation id (ignored for [`ControllerRole::NoChange`] and
    /// [`ControllerRole::Equal`]).
    pub generation_id: u64,
}

/// `struct ofp_async_config`: which asynchronous messages this connection receives.
/// Index 0 applies in the MASTER and EQUAL roles, index 1 in the SLAVE role; each bit
/// `1 << reason` enables one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsyncConfig {
    /// PACKET_IN reasons (`enum ofp_packet_in_reason`) to receive.
    pub packet_in_mask: [u32; 2],
    /// PORT_STATUS reasons (`enum ofp_port_reason`) to receive.
    pub port_status_mask: [u32; 2],
    /// FLOW_REMOVED reasons (`enum ofp_flow_removed_reason`) to receive.
    pub flow_removed_mask: [u32; 2],
}

/// METER_MOD commands (`enum ofp_meter_mod_command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterModCommand {
    /// OFPMC_ADD: add a new meter.
    Add = 0,
    /// OFPMC_MODIFY: modify an existing meter.
    Modify = 1,
    /// OFPMC_DELETE: delete a meter.
    Delete = 2,
}

/// `struct ofp_meter_mod`. `flags` are the `OFPMF_*` bits ([`OFPMF_KBPS`](crate::OFPMF_KBPS)...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterMod {
    /// What to do with the meter.
    pub command: MeterModCommand,
    /// `OFPMF_*` bits: rate unit, burst, statistics.
    pub flags: u16,
    /// Meter to add, modify or delete.
    pub meter_id: u32,
    /// Bands of the meter.
    pub bands: Vec<MeterBand>,
}

/// Meter bands (`struct ofp_meter_band_header` and its types). `rate` is in kb/s or
/// packets/s and `burst_size` in kb or packets, as the meter's flags say.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeterBand {
    /// OFPMBT_DROP.
    Drop {
        /// Rate above which packets are dropped.
        rate: u32,
        /// Burst size.
        burst_size: u32,
    },
    /// OFPMBT_DSCP_REMARK: raise the drop precedence by `prec_level`.
    DscpRemark {
        /// Rate above which packets are remarked.
        rate: u32,
        /// Burst size.
        burst_size: u32,
        /// Number of drop precedence levels to add.
        prec_level: u8,
    },
    /// OFPMBT_EXPERIMENTER; `data` follows the 16-byte fixed part.
    Experimenter {
        /// Rate of the band.
        rate: u32,
        /// Burst size.
        burst_size: u32,
        /// Experimenter id.
        experimenter: u32,
        /// Experimenter-defined data.
        data: Vec<u8>,
    },
    /// Any other band type; `data` is everything after the 12-byte common header.
    Other {
        /// `enum ofp_meter_band_type` value.
        band_type: u16,
        /// Rate of the band.
        rate: u32,
        /// Burst size.
        burst_size: u32,
        /// Band body after the 12-byte common header.
        data: Vec<u8>,
    },
}

/// `struct ofp_packet_out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    /// Packet buffered on the switch to send, or [`NO_BUFFER`] to send `data`.
    pub buffer_id: u32,
    /// Input port the actions see (for example [`port::CONTROLLER`]).
    pub in_port: u32,
    /// Actions applied to the packet.
    pub actions: Vec<Action>,
    /// The Ethernet frame, when `buffer_id` is [`NO_BUFFER`].
    pub data: Vec<u8>,
}

/// `struct ofp_port_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    /// 0 = add, 1 = delete, 2 = modify (`enum ofp_port_reason`).
    pub reason: u8,
    /// The port that was added, deleted or modified.
    pub desc: PortDesc,
}

/// `struct ofp_port` (64 bytes on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDesc {
    /// Port number.
    pub port_no: u32,
    /// MAC address of the port.
    pub hw_addr: [u8; 6],
    /// Interface name, without trailing NULs (at most 15 bytes on the wire + NUL).
    pub name: String,
    /// `enum ofp_port_config` bits (administrative settings).
    pub config: u32,
    /// `enum ofp_port_state` bits (link state).
    pub state: u32,
    /// Current features (`enum ofp_port_features` bits).
    pub curr: u32,
    /// Features the port advertises.
    pub advertised: u32,
    /// Features the port supports.
    pub supported: u32,
    /// Features the link peer advertises.
    pub peer: u32,
    /// Current bitrate in kb/s.
    pub curr_speed: u32,
    /// Maximum bitrate in kb/s.
    pub max_speed: u32,
}

/// FLOW_MOD commands (`enum ofp_flow_mod_command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowModCommand {
    /// OFPFC_ADD: add a new flow.
    Add = 0,
    /// OFPFC_MODIFY: modify every matching flow.
    Modify = 1,
    /// OFPFC_MODIFY_STRICT: modify the flow with exactly this match and priority.
    ModifyStrict = 2,
    /// OFPFC_DELETE: delete every matching flow.
    Delete = 3,
    /// OFPFC_DELETE_STRICT: delete the flow with exactly this match and priority.
    DeleteStrict = 4,
}

/// `struct ofp_flow_mod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    /// Opaque controller-issued identifier.
    pub cookie: u64,
    /// Cookie bits that must match for modify and delete (0: no restriction).
    pub cookie_mask: u64,
    /// Table of the flow ([`TABLE_ALL`] for a delete in every table).
    pub table_id: u8,
    /// What to do with the flow.
    pub command: FlowModCommand,
    /// Seconds without a matching packet before the flow is removed (0: never).
    pub idle_timeout: u16,
    /// Seconds before the flow is removed regardless of traffic (0: never).
    pub hard_timeout: u16,
    /// Priority of the flow (higher matches first).
    pub priority: u16,
    /// Buffered packet to run through the flow, or [`NO_BUFFER`].
    pub buffer_id: u32,
    /// For deletes, only flows that output to this port ([`port::ANY`]: no restriction).
    pub out_port: u32,
    /// For deletes, only flows that output to this group ([`group::ANY`]: no restriction).
    pub out_group: u32,
    /// `enum ofp_flow_mod_flags` bits (OFPFF_SEND_FLOW_REM...).
    pub flags: u16,
    /// Fields to match.
    pub r#match: Match,
    /// Instructions of the flow.
    pub instructions: Vec<Instruction>,
}

impl FlowMod {
    /// An ADD with no timeouts, no buffer and wildcard out_port/out_group.
    pub fn add(
        table_id: u8,
        priority: u16,
        r#match: Match,
        instructions: Vec<Instruction>,
    ) -> Self {
        FlowMod {
            cookie: 0,
            cookie_mask: 0,
            table_id,
            command: FlowModCommand::Add,
            idle_timeout: 0,
            hard_timeout: 0,
            priority,
            buffer_id: NO_BUFFER,
            out_port: port::ANY,
            out_group: group::ANY,
            flags: 0,
            r#match,
            instructions,
        }
    }

    /// A non-strict DELETE over `table_id` (use [`TABLE_ALL`] for every table).
    pub fn delete(table_id: u8, r#match: Match) -> Self {
        FlowMod {
            command: FlowModCommand::Delete,
            ..FlowMod::add(table_id, 0, r#match, Vec::new())
        }
    }
}

/// GROUP_MOD commands (`enum ofp_group_mod_command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupModCommand {
    /// OFPGC_ADD: add a new group.
    Add = 0,
    /// OFPGC_MODIFY: modify an existing group.
    Modify = 1,
    /// OFPGC_DELETE: delete a group.
    Delete = 2,
}

/// Group types (`enum ofp_group_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupType {
    /// OFPGT_ALL: execute every bucket (multicast, broadcast).
    All = 0,
    /// OFPGT_SELECT: execute one bucket (load sharing).
    Select = 1,
    /// OFPGT_INDIRECT: execute the one bucket.
    Indirect = 2,
    /// OFPGT_FF: execute the first live bucket.
    FastFailover = 3,
}

/// `struct ofp_group_mod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMod {
    /// What to do with the group.
    pub command: GroupModCommand,
    /// Type of the group.
    pub group_type: GroupType,
    /// Group to add, modify or delete.
    pub group_id: u32,
    /// Buckets of the group.
    pub buckets: Vec<Bucket>,
}

/// `struct ofp_bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Relative weight of the bucket (select groups only).
    pub weight: u16,
    /// Port whose liveness makes the bucket live (fast failover groups only).
    pub watch_port: u32,
    /// Group whose liveness makes the bucket live (fast failover groups only).
    pub watch_group: u32,
    /// Actions executed when the bucket is chosen.
    pub actions: Vec<Action>,
}

impl Bucket {
    /// A bucket for an ALL group: no weight, no watch.
    pub fn all(actions: Vec<Action>) -> Self {
        Bucket {
            weight: 0,
            watch_port: port::ANY,
            watch_group: group::ANY,
            actions,
        }
    }
}

/// `struct ofp_multipart_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartRequest {
    /// `OFPMPF_REQ_*` bits (1: more requests follow).
    pub flags: u16,
    /// Type and body of the request.
    pub body: MultipartRequestBody,
}

/// Multipart request bodies (`enum ofp_multipart_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultipartRequestBody {
    /// OFPMP_DESC (0).
    Desc,
    /// OFPMP_FLOW (1).
    Flow(FlowStatsRequest),
    /// OFPMP_AGGREGATE (2): the same filter as a flow stats request.
    Aggregate(FlowStatsRequest),
    /// OFPMP_TABLE (3).
    Table,
    /// OFPMP_PORT_STATS (4): one port or [`port::ANY`].
    PortStats {
        /// Port to read.
        port_no: u32,
    },
    /// OFPMP_QUEUE (5): [`port::ANY`] and [`queue::ALL`] are wildcards.
    Queue {
        /// Port of the queues.
        port_no: u32,
        /// Queue to read.
        queue_id: u32,
    },
    /// OFPMP_GROUP (6): one group or [`group::ALL`].
    Group {
        /// Group to read.
        group_id: u32,
    },
    /// OFPMP_GROUP_DESC (7).
    GroupDesc,
    /// OFPMP_GROUP_FEATURES (8).
    GroupFeatures,
    /// OFPMP_METER (9): one meter or [`meter::ALL`].
    Meter {
        /// Meter to read.
        meter_id: u32,
    },
    /// OFPMP_METER_CONFIG (10): one meter or [`meter::ALL`].
    MeterConfig {
        /// Meter to read.
        meter_id: u32,
    },
    /// OFPMP_METER_FEATURES (11).
    MeterFeatures,
    /// OFPMP_TABLE_FEATURES (12), body kept opaque (empty: only query).
    TableFeatures(Vec<u8>),
    /// OFPMP_PORT_DESC (13).
    PortDesc,
    /// OFPMP_EXPERIMENTER (0xffff), data kept intact.
    Experimenter {
        /// Experimenter id.
        experimenter: u32,
        /// Experimenter-defined type.
        exp_type: u32,
        /// Experimenter-defined body.
        data: Vec<u8>,
    },
    /// Any other type, body kept raw.
    Other {
        /// `enum ofp_multipart_type` value.
        mp_type: u16,
        /// Request body after the multipart header.
        body: Vec<u8>,
    },
}

/// `struct ofp_flow_stats_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStatsRequest {
    /// Table to read, or [`TABLE_ALL`].
    pub table_id: u8,
    /// Only flows that output to this port ([`port::ANY`]: no restriction).
    pub out_port: u32,
    /// Only flows that output to this group ([`group::ANY`]: no restriction).
    pub out_group: u32,
    /// Cookie the flows must have, in the bits of `cookie_mask`.
    pub cookie: u64,
    /// Cookie bits that must match (0: no restriction).
    pub cookie_mask: u64,
    /// Fields the flows must match.
    pub r#match: Match,
}

/// `struct ofp_multipart_reply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartReply {
    /// `OFPMPF_REPLY_*` bits ([`MULTIPART_REPLY_MORE`]).
    pub flags: u16,
    /// Type and body of the reply.
    pub body: MultipartReplyBody,
}

/// Flag in [`MultipartReply::flags`]: more replies follow.
pub const MULTIPART_REPLY_MORE: u16 = 1;

/// Multipart reply bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultipartReplyBody {
    /// OFPMP_DESC (0).
    Desc(DescStats),
    /// OFPMP_FLOW (1).
    Flow(Vec<FlowStats>),
    /// OFPMP_AGGREGATE (2).
    Aggregate(AggregateStats),
    /// OFPMP_TABLE (3).
    Table(Vec<TableStats>),
    /// OFPMP_PORT_STATS (4).
    PortStats(Vec<PortStats>),
    /// OFPMP_QUEUE (5).
    Queue(Vec<QueueStats>),
    /// OFPMP_GROUP (6).
    Group(Vec<GroupStats>),
    /// OFPMP_GROUP_DESC (7).
    GroupDesc(Vec<GroupDescStats>),
    /// OFPMP_GROUP_FEATURES (8).
    GroupFeatures(GroupFeatures),
    /// OFPMP_METER (9).
    Meter(Vec<MeterStats>),
    /// OFPMP_METER_CONFIG (10).
    MeterConfig(Vec<MeterConfig>),
    /// OFPMP_METER_FEATURES (11).
    MeterFeatures(MeterFeatures),
    /// OFPMP_TABLE_FEATURES (12), body kept opaque.
    TableFeatures(Vec<u8>),
    /// OFPMP_PORT_DESC (13).
    PortDesc(Vec<PortDesc>),
    /// OFPMP_EXPERIMENTER (0xffff), data kept intact.
    Experimenter {
        /// Experimenter id.
        experimenter: u32,
        /// Experimenter-defined type.
        exp_type: u32,
        /// Experimenter-defined body.
        data: Vec<u8>,
    },
    /// Any other type, body kept raw.
    Other {
        /// `enum ofp_multipart_type` value.
        mp_type: u16,
        /// Reply body after the multipart header.
        body: Vec<u8>,
    },
}

/// `struct ofp_desc` (strings without trailing NULs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescStats {
    /// Manufacturer description.
    pub mfr_desc: String,
    /// Hardware description.
    pub hw_desc: String,
    /// Software description.
    pub sw_desc: String,
    /// Serial number.
    pub serial_num: String,
    /// Human-readable description of the datapath.
    pub dp_desc: String,
}

/// `struct ofp_flow_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    /// Table the flow is in.
    pub table_id: u8,
    /// Time the flow has been alive, whole seconds.
    pub duration_sec: u32,
    /// Time alive beyond `duration_sec`, in nanoseconds.
    pub duration_nsec: u32,
    /// Priority of the flow.
    pub priority: u16,
    /// Idle timeout in seconds (0: none).
    pub idle_timeout: u16,
    /// Hard timeout in seconds (0: none).
    pub hard_timeout: u16,
    /// `enum ofp_flow_mod_flags` bits.
    pub flags: u16,
    /// Opaque controller-issued identifier.
    pub cookie: u64,
    /// Packets that matched the flow.
    pub packet_count: u64,
    /// Bytes that matched the flow.
    pub byte_count: u64,
    /// Match of the flow.
    pub r#match: Match,
    /// Instructions of the flow.
    pub instructions: Vec<Instruction>,
}

/// `struct ofp_group_desc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescStats {
    /// Type of the group.
    pub group_type: GroupType,
    /// Group id.
    pub group_id: u32,
    /// Buckets of the group.
    pub buckets: Vec<Bucket>,
}

/// `struct ofp_aggregate_stats_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateStats {
    /// Packets that matched the flows.
    pub packet_count: u64,
    /// Bytes that matched the flows.
    pub byte_count: u64,
    /// Number of flows.
    pub flow_count: u32,
}

/// `struct ofp_table_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    /// Table id.
    pub table_id: u8,
    /// Number of active flows.
    pub active_count: u32,
    /// Packets looked up in the table.
    pub lookup_count: u64,
    /// Packets that matched a flow of the table.
    pub matched_count: u64,
}

/// `struct ofp_port_stats` (all-ones for counters a switch does not keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    /// Port number.
    pub port_no: u32,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Packets dropped by RX.
    pub rx_dropped: u64,
    /// Packets dropped by TX.
    pub tx_dropped: u64,
    /// Receive errors (a superset of the more specific ones).
    pub rx_errors: u64,
    /// Transmit errors (a superset of the more specific ones).
    pub tx_errors: u64,
    /// Frame alignment errors.
    pub rx_frame_err: u64,
    /// Packets with RX overrun.
    pub rx_over_err: u64,
    /// CRC errors.
    pub rx_crc_err: u64,
    /// Collisions.
    pub collisions: u64,
    /// Time the port has been alive, whole seconds.
    pub duration_sec: u32,
    /// Time alive beyond `duration_sec`, in nanoseconds.
    pub duration_nsec: u32,
}

/// `struct ofp_queue_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Port of the queue.
    pub port_no: u32,
    /// Queue id.
    pub queue_id: u32,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Packets dropped due to overrun.
    pub tx_errors: u64,
    /// Time the queue has been alive, whole seconds.
    pub duration_sec: u32,
    /// Time alive beyond `duration_sec`, in nanoseconds.
    pub duration_nsec: u32,
}

/// `struct ofp_group_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStats {
    /// Group id.
    pub group_id: u32,
    /// Flows and groups forwarding to this group.
    pub ref_count: u32,
    /// Packets processed by the group.
    pub packet_count: u64,
    /// Bytes processed by the group.
    pub byte_count: u64,
    /// Time the group has been alive, whole seconds.
    pub duration_sec: u32,
    /// Time alive beyond `duration_sec`, in nanoseconds.
    pub duration_nsec: u32,
    /// One counter per bucket, in bucket order.
    pub bucket_stats: Vec<BucketCounter>,
}

/// `struct ofp_bucket_counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketCounter {
    /// Packets processed by the bucket.
    pub packet_count: u64,
    /// Bytes processed by the bucket.
    pub byte_count: u64,
}

/// `struct ofp_group_features`. Arrays are indexed by [`GroupType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupFeatures {
    /// Bitmap of `1 << GroupType` supported.
    pub types: u32,
    /// `enum ofp_group_capabilities` bits.
    pub capabilities: u32,
    /// Maximum number of groups of each type.
    pub max_groups: [u32; 4],
    /// Bitmaps of `1 << action type` supported, per group type.
    pub actions: [u32; 4],
}

/// `struct ofp_meter_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterStats {
    /// Meter id.
    pub meter_id: u32,
    /// Number of flows bound to the meter.
    pub flow_count: u32,
    /// Packets that entered the meter.
    pub packet_in_count: u64,
    /// Bytes that entered the meter.
    pub byte_in_count: u64,
    /// Time the meter has been alive, whole seconds.
    pub duration_sec: u32,
    /// Time alive beyond `duration_sec`, in nanoseconds.
    pub duration_nsec: u32,
    /// One entry per band, in band order.
    pub band_stats: Vec<MeterBandStats>,
}

/// `struct ofp_meter_band_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterBandStats {
    /// Packets processed by the band.
    pub packet_band_count: u64,
    /// Bytes processed by the band.
    pub byte_band_count: u64,
}

/// `struct ofp_meter_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterConfig {
    /// `OFPMF_*` bits.
    pub flags: u16,
    /// Meter id.
    pub meter_id: u32,
    /// Bands of the meter.
    pub bands: Vec<MeterBand>,
}

/// `struct ofp_meter_features`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterFeatures {
    /// Maximum number of meters.
    pub max_meter: u32,
    /// Bitmap of `1 << band type` supported.
    pub band_types: u32,
    /// `OFPMF_*` flags supported.
    pub capabilities: u32,
    /// Maximum number of bands per meter.
    pub max_bands: u8,
    /// Maximum color value.
    pub max_color: u8,
}

/// `struct ofp_match` of type OFPMT_OXM: an ordered list of OXM TLVs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    /// OXM fields, in wire order; empty matches every packet.
    pub fields: Vec<OxmField>,
}

impl Match {
    /// The empty (match-everything) match.
    pub fn any() -> Self {
        Match::default()
    }
    /// Builder: append one field.
    pub fn with(mut self, field: OxmField) -> Self {
        self.fields.push(field);
        self
    }
}

/// OXM TLVs (OpenFlow 1.3.5 §7.2.3.7) plus the Nicira NXM_NX registers (class 0x0001).
///
/// Every OpenFlow-basic field (IN_PORT = 0 to IPV6_EXTHDR = 39) has a typed variant, with
/// a mask exactly where §7.2.3.7 allows one; numbers are host-order, addresses use
/// `std::net` types. A TLV decodes to a typed variant only when its class, field, mask
/// bit and length have that variant's shape; anything else (other classes, a mask the
/// spec does not allow, an odd length) becomes [`OxmField::Other`] and re-encodes to the
/// same bytes. Values are not range-checked (a 3-bit VLAN_PCP of 9 is sent as is and the
/// switch decides), except where the wire cannot hold them ([`OxmField::PbbIsid`]).
///
/// Prerequisites (§7.2.3.8, e.g. ETH_TYPE=0x0800 before IPV4_SRC) are neither added nor
/// checked: a [`Match`] encodes exactly the fields given, in order, and the switch rejects a
/// missing prerequisite with OFPBMC_BAD_PREREQ.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OxmField {
    /// OXM_OF_IN_PORT (0).
    InPort(u32),
    /// OXM_OF_IN_PHY_PORT (1); needs IN_PORT.
    InPhyPort(u32),
    /// OXM_OF_METADATA (2, optionally masked).
    Metadata {
        /// Field value.
        value: u64,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<u64>,
    },
    /// OXM_OF_ETH_DST (3, optionally masked).
    EthDst {
        /// Field value.
        value: [u8; 6],
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<[u8; 6]>,
    },
    /// OXM_OF_ETH_SRC (4, optionally masked).
    EthSrc {
        /// Field value.
        value: [u8; 6],
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<[u8; 6]>,
    },
    /// OXM_OF_ETH_TYPE (5).
    EthType(u16),
    /// OXM_OF_VLAN_VID (6; includes the OFPVID_PRESENT bit 0x1000 as on the wire).
    VlanVid {
        /// Field value.
        value: u16,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<u16>,
    },
    /// OXM_OF_VLAN_PCP (7, 3 bits); needs VLAN_VID != NONE.
    VlanPcp(u8),
    /// OXM_OF_IP_DSCP (8, 6 bits); needs ETH_TYPE IPv4 or IPv6.
    IpDscp(u8),
    /// OXM_OF_IP_ECN (9, 2 bits); needs ETH_TYPE IPv4 or IPv6.
    IpEcn(u8),
    /// OXM_OF_IP_PROTO (10); needs ETH_TYPE IPv4 or IPv6.
    IpProto(u8),
    /// OXM_OF_IPV4_SRC (11, optionally masked); needs ETH_TYPE=0x0800.
    Ipv4Src {
        /// Field value.
        value: Ipv4Addr,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<Ipv4Addr>,
    },
    /// OXM_OF_IPV4_DST (12, optionally masked); needs ETH_TYPE=0x0800.
    Ipv4Dst {
        /// Field value.
        value: Ipv4Addr,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<Ipv4Addr>,
    },
    /// OXM_OF_TCP_SRC (13); needs IP_PROTO=6.
    TcpSrc(u16),
    /// OXM_OF_TCP_DST (14); needs IP_PROTO=6.
    TcpDst(u16),
    /// OXM_OF_UDP_SRC (15); needs IP_PROTO=17.
    UdpSrc(u16),
    /// OXM_OF_UDP_DST (16); needs IP_PROTO=17.
    UdpDst(u16),
    /// OXM_OF_SCTP_SRC (17); needs IP_PROTO=132.
    SctpSrc(u16),
    /// OXM_OF_SCTP_DST (18); needs IP_PROTO=132.
    SctpDst(u16),
    /// OXM_OF_ICMPV4_TYPE (19); needs IP_PROTO=1.
    Icmpv4Type(u8),
    /// OXM_OF_ICMPV4_CODE (20); needs IP_PROTO=1.
    Icmpv4Code(u8),
    /// OXM_OF_ARP_OP (21); needs ETH_TYPE=0x0806.
    ArpOp(u16),
    /// OXM_OF_ARP_SPA (22, optionally masked); needs ETH_TYPE=0x0806.
    ArpSpa {
        /// Field value.
        value: Ipv4Addr,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<Ipv4Addr>,
    },
    /// OXM_OF_ARP_TPA (23, optionally masked); needs ETH_TYPE=0x0806.
    ArpTpa {
        /// Field value.
        value: Ipv4Addr,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<Ipv4Addr>,
    },
    /// OXM_OF_ARP_SHA (24, optionally masked); needs ETH_TYPE=0x0806.
    ArpSha {
        /// Field value.
        value: [u8; 6],
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<[u8; 6]>,
    },
    /// OXM_OF_ARP_THA (25, optionally masked); needs ETH_TYPE=0x0806.
    ArpTha {
        /// Field value.
        value: [u8; 6],
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<[u8; 6]>,
    },
    /// OXM_OF_IPV6_SRC (26, optionally masked); needs ETH_TYPE=0x86dd.
    Ipv6Src {
        /// Field value.
        value: Ipv6Addr,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<Ipv6Addr>,
    },
    /// OXM_OF_IPV6_DST (27, optionally masked); needs ETH_TYPE=0x86dd.
    Ipv6Dst {
        /// Field value.
        value: Ipv6Addr,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<Ipv6Addr>,
    },
    /// OXM_OF_IPV6_FLABEL (28, 20 bits in 32, optionally masked); needs ETH_TYPE=0x86dd.
    Ipv6Flabel {
        /// Field value.
        value: u32,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<u32>,
    },
    /// OXM_OF_ICMPV6_TYPE (29); needs IP_PROTO=58.
    Icmpv6Type(u8),
    /// OXM_OF_ICMPV6_CODE (30); needs IP_PROTO=58.
    Icmpv6Code(u8),
    /// OXM_OF_IPV6_ND_TARGET (31); needs ICMPV6_TYPE 135 or 136.
    Ipv6NdTarget(Ipv6Addr),
    /// OXM_OF_IPV6_ND_SLL (32); needs ICMPV6_TYPE=135.
    Ipv6NdSll([u8; 6]),
    /// OXM_OF_IPV6_ND_TLL (33); needs ICMPV6_TYPE=136.
    Ipv6NdTll([u8; 6]),
    /// OXM_OF_MPLS_LABEL (34, 20 bits in 32); needs ETH_TYPE 0x8847 or 0x8848.
    MplsLabel(u32),
    /// OXM_OF_MPLS_TC (35, 3 bits); needs ETH_TYPE 0x8847 or 0x8848.
    MplsTc(u8),
    /// OXM_OF_MPLS_BOS (36, 1 bit); needs ETH_TYPE 0x8847 or 0x8848.
    MplsBos(u8),
    /// OXM_OF_PBB_ISID (37, 24 bits on the wire, optionally masked); needs ETH_TYPE=0x88e7.
    /// Encoding refuses values or masks above 0xffffff.
    PbbIsid {
        /// Field value.
        value: u32,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<u32>,
    },
    /// OXM_OF_TUNNEL_ID (38, optionally masked).
    TunnelId {
        /// Field value.
        value: u64,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<u64>,
    },
    /// OXM_OF_IPV6_EXTHDR (39, 9 bits in 16, optionally masked); needs ETH_TYPE=0x86dd.
    Ipv6Exthdr {
        /// Field value.
        value: u16,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<u16>,
    },
    /// Nicira register `NXM_NX_REG<idx>` (class 0x0001, field idx 0..=15).
    NxReg {
        /// Register number, 0..=15.
        idx: u8,
        /// Register value.
        value: u32,
        /// Bits of `value` that must match (1 = compare); `None` for an exact match.
        mask: Option<u32>,
    },
    /// Any other field; `value` holds value followed by mask when `has_mask`.
    Other {
        /// OXM class.
        class: u16,
        /// Field number within the class (7 bits).
        field: u8,
        /// The OXM `hasmask` bit.
        has_mask: bool,
        /// Payload: the value, then the mask when `has_mask`.
        value: Vec<u8>,
    },
}

/// Instructions (`enum ofp_instruction_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Instruction {
    /// OFPIT_GOTO_TABLE: continue the pipeline at this (later) table.
    GotoTable(u8),
    /// OFPIT_WRITE_METADATA: set the bits of `mask` in the metadata to `value`.
    WriteMetadata {
        /// Metadata value to write.
        value: u64,
        /// Metadata bits to write.
        mask: u64,
    },
    /// OFPIT_WRITE_ACTIONS: merge the actions into the action set.
    WriteActions(Vec<Action>),
    /// OFPIT_APPLY_ACTIONS: apply the actions immediately.
    ApplyActions(Vec<Action>),
    /// OFPIT_CLEAR_ACTIONS: empty the action set.
    ClearActions,
    /// OFPIT_METER: send the packet through this meter.
    Meter(u32),
    /// OFPIT_EXPERIMENTER.
    Experimenter {
        /// Experimenter id.
        experimenter: u32,
        /// Experimenter-defined data after the experimenter id.
        data: Vec<u8>,
    },
    /// Any other instruction type, kept intact; `data` is everything after the 4-byte
    /// type/length header.
    Other {
        /// `enum ofp_instruction_type` value.
        inst_type: u16,
        /// Instruction body after the 4-byte type/length header.
        data: Vec<u8>,
    },
}

/// Actions (`enum ofp_action_type`) plus the Nicira actions the pipeline uses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// OFPAT_OUTPUT.
    Output {
        /// Output port: a port number or one of the reserved [`port`] numbers.
        port: u32,
        /// Bytes to send when `port` is [`port::CONTROLLER`]
        /// ([`OFPCML_NO_BUFFER`](crate::OFPCML_NO_BUFFER): whole packet).
        max_len: u16,
    },
    /// OFPAT_GROUP.
    Group(u32),
    /// OFPAT_SET_FIELD with one OXM (never masked).
    SetField(OxmField),
    /// OFPAT_PUSH_VLAN with the given ethertype.
    PushVlan(u16),
    /// OFPAT_POP_VLAN.
    PopVlan,
    /// Nicira NXAST_RESUBMIT_TABLE (subtype 14). `in_port` 0xfff8 = OFPP_IN_PORT (keep).
    NxResubmit {
        /// Input port for the lookup, 16 bits
        /// ([`NX_RESUBMIT_IN_PORT`](crate::NX_RESUBMIT_IN_PORT) keeps the packet's own).
        in_port: u16,
        /// Table to look up.
        table: u8,
    },
    /// Nicira NXAST_LEARN (subtype 16).
    NxLearn(NxLearn),
    /// Nicira NXAST_LEARN2 (subtype 45): a learn action with a cap and a result bit.
    NxLearn2(NxLearn2),
    /// Any other experimenter action; `data` is everything after the experimenter id.
    Experimenter {
        /// Experimenter id.
        experimenter: u32,
        /// Action body after the experimenter id.
        data: Vec<u8>,
    },
    /// Any other standard action type (for example OFPAT_DEC_NW_TTL), kept intact; `data`
    /// is everything after the 4-byte type/length header.
    Other {
        /// `enum ofp_action_type` value.
        action_type: u16,
        /// Action body after the 4-byte type/length header.
        data: Vec<u8>,
    },
}

/// `struct nx_action_learn` (Nicira, OVS `lib/learn.c` wire format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NxLearn {
    /// Idle timeout of the learned flow, in seconds (0: none).
    pub idle_timeout: u16,
    /// Hard timeout of the learned flow, in seconds (0: none).
    pub hard_timeout: u16,
    /// Priority of the learned flow.
    pub priority: u16,
    /// Cookie of the learned flow.
    pub cookie: u64,
    /// `NX_LEARN_F_*` bits.
    pub flags: u16,
    /// Table the learned flow goes into.
    pub table_id: u8,
    /// Idle timeout the learned flow takes once it sees a TCP FIN or RST (0: none).
    pub fin_idle_timeout: u16,
    /// Hard timeout the learned flow takes once it sees a TCP FIN or RST (0: none).
    pub fin_hard_timeout: u16,
    /// What the learned flow matches and does.
    pub specs: Vec<LearnSpec>,
}

/// `struct nx_action_learn2` (Nicira NXAST_LEARN2, Open vSwitch 2.8+): [`NxLearn`] plus a cap
/// on the flows it may create and a bit that says whether it learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NxLearn2 {
    /// The learn action itself. Its `flags` carry
    /// [`NX_LEARN_F_WRITE_RESULT`](crate::NX_LEARN_F_WRITE_RESULT) exactly when `result_dst`
    /// is set (the encoder refuses anything else).
    pub learn: NxLearn,
    /// At most this many flows with the learned flow's cookie in its table: beyond, the
    /// action learns nothing (0: no cap).
    pub limit: u32,
    /// The bit (one bit at `ofs` of an NXM field) set to 1 when the flow was learned or
    /// refreshed, to 0 when `limit` refused it.
    pub result_dst: Option<NxmFieldRef>,
}

/// A field slice reference inside a learn spec: an NXM/OXM 32-bit header plus bit offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NxmFieldRef {
    /// NXM header, for example [`nxm::ETH_SRC`].
    pub header: u32,
    /// Bit offset inside the field.
    pub ofs: u16,
}

/// One `nx_learn_spec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LearnSpec {
    /// The learned flow matches `dst` against the current value of `src`.
    MatchField {
        /// Field slice read when the learn action runs.
        src: NxmFieldRef,
        /// Field slice the learned flow matches.
        dst: NxmFieldRef,
        /// Width in bits of the slices.
        n_bits: u16,
    },
    /// The learned flow matches `dst` against an immediate value (big-endian, padded to 16 bits).
    MatchImmediate {
        /// The immediate value (big-endian, padded to 16 bits).
        value: Vec<u8>,
        /// Field slice the learned flow matches.
        dst: NxmFieldRef,
        /// Width in bits of the slices.
        n_bits: u16,
    },
    /// The learned flow loads `dst` from the current value of `src`.
    LoadField {
        /// Field slice read when the learn action runs.
        src: NxmFieldRef,
        /// Field slice the learned flow loads.
        dst: NxmFieldRef,
        /// Width in bits of the slices.
        n_bits: u16,
    },
    /// The learned flow loads an immediate value into `dst`.
    LoadImmediate {
        /// The immediate value (big-endian, padded to 16 bits).
        value: Vec<u8>,
        /// Field slice the learned flow loads.
        dst: NxmFieldRef,
        /// Width in bits of the slices.
        n_bits: u16,
    },
    /// The learned flow outputs to the port held in `src`.
    Output {
        /// Field slice holding the output port.
        src: NxmFieldRef,
        /// Width in bits of the slices.
        n_bits: u16,
    },
}

/// NXM headers (class << 16 | field << 9 | hasmask << 8 | length) used in learn specs.
pub mod nxm {
    /// Build an NXM header.
    pub const fn header(class: u16, field: u8, has_mask: bool, len: u8) -> u32 {
        ((class as u32) << 16) | ((field as u32) << 9) | ((has_mask as u32) << 8) | len as u32
    }
    /// NXM_OF_IN_PORT (16 bits).
    pub const IN_PORT: u32 = header(0x0000, 0, false, 2);
    /// NXM_OF_ETH_DST.
    pub const ETH_DST: u32 = header(0x0000, 1, false, 6);
    /// NXM_OF_ETH_SRC.
    pub const ETH_SRC: u32 = header(0x0000, 2, false, 6);
    /// NXM_OF_ETH_TYPE.
    pub const ETH_TYPE: u32 = header(0x0000, 3, false, 2);
    /// NXM_NX_TUN_ID (64 bits).
    pub const TUN_ID: u32 = header(0x0001, 16, false, 8);
    /// `NXM_NX_REG<n>`.
    pub const fn reg(n: u8) -> u32 {
        header(0x0001, n, false, 4)
    }
}
