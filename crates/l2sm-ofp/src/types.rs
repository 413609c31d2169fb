//! Semantic representation of the OpenFlow 1.3 messages L2S-M exchanges with switches.
//!
//! These types are the contract between the codec (`encode`/`decode`) and the rest of the
//! project. Numbers are host-order; the codec does all byte-order work.

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
    Hello { version_bitmap: Option<Vec<u32>> },
    /// OFPT_ERROR (1).
    Error(ErrorMsg),
    /// OFPT_ECHO_REQUEST (2) with arbitrary payload.
    EchoRequest(Vec<u8>),
    /// OFPT_ECHO_REPLY (3) with arbitrary payload.
    EchoReply(Vec<u8>),
    /// OFPT_EXPERIMENTER (4); data kept intact.
    Experimenter {
        experimenter: u32,
        exp_type: u32,
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
    /// OFPT_PORT_STATUS (12).
    PortStatus(PortStatus),
    /// OFPT_PACKET_OUT (13).
    PacketOut(PacketOut),
    /// OFPT_FLOW_MOD (14).
    FlowMod(FlowMod),
    /// OFPT_GROUP_MOD (15).
    GroupMod(GroupMod),
    /// OFPT_MULTIPART_REQUEST (18).
    MultipartRequest(MultipartRequest),
    /// OFPT_MULTIPART_REPLY (19).
    MultipartReply(MultipartReply),
    /// OFPT_BARRIER_REQUEST (20).
    BarrierRequest,
    /// OFPT_BARRIER_REPLY (21).
    BarrierReply,
    /// Any other message type, body kept as raw bytes (everything after the 8-byte header).
    Other { msg_type: u8, body: Vec<u8> },
}

/// OFPT_ERROR body (`struct ofp_error_msg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    /// `enum ofp_error_type` (0xffff = experimenter).
    pub err_type: u16,
    /// Type-specific code.
    pub code: u16,
    /// At least the first 64 bytes of the failed request, or an ASCII string for HELLO_FAILED.
    pub data: Vec<u8>,
}

/// `struct ofp_switch_features`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeaturesReply {
    pub datapath_id: u64,
    pub n_buffers: u32,
    pub n_tables: u8,
    pub auxiliary_id: u8,
    pub capabilities: u32,
}

/// `struct ofp_switch_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchConfig {
    pub flags: u16,
    pub miss_send_len: u16,
}

/// `struct ofp_packet_in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    pub buffer_id: u32,
    pub total_len: u16,
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    pub r#match: Match,
    pub data: Vec<u8>,
}

/// `struct ofp_packet_out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    pub buffer_id: u32,
    pub in_port: u32,
    pub actions: Vec<Action>,
    pub data: Vec<u8>,
}

/// `struct ofp_port_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    /// 0 = add, 1 = delete, 2 = modify (`enum ofp_port_reason`).
    pub reason: u8,
    pub desc: PortDesc,
}

/// `struct ofp_port` (64 bytes on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDesc {
    pub port_no: u32,
    pub hw_addr: [u8; 6],
    /// Interface name, without trailing NULs (at most 15 bytes on the wire + NUL).
    pub name: String,
    pub config: u32,
    pub state: u32,
    pub curr: u32,
    pub advertised: u32,
    pub supported: u32,
    pub peer: u32,
    pub curr_speed: u32,
    pub max_speed: u32,
}

/// FLOW_MOD commands (`enum ofp_flow_mod_command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowModCommand {
    Add = 0,
    Modify = 1,
    ModifyStrict = 2,
    Delete = 3,
    DeleteStrict = 4,
}

/// `struct ofp_flow_mod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    pub cookie: u64,
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: FlowModCommand,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    pub out_port: u32,
    pub out_group: u32,
    pub flags: u16,
    pub r#match: Match,
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
    Add = 0,
    Modify = 1,
    Delete = 2,
}

/// Group types (`enum ofp_group_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupType {
    All = 0,
    Select = 1,
    Indirect = 2,
    FastFailover = 3,
}

/// `struct ofp_group_mod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMod {
    pub command: GroupModCommand,
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

/// `struct ofp_bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub weight: u16,
    pub watch_port: u32,
    pub watch_group: u32,
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
    pub flags: u16,
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
    /// OFPMP_GROUP_DESC (7).
    GroupDesc,
    /// OFPMP_PORT_DESC (13).
    PortDesc,
    /// Any other type, body kept raw.
    Other { mp_type: u16, body: Vec<u8> },
}

/// `struct ofp_flow_stats_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStatsRequest {
    pub table_id: u8,
    pub out_port: u32,
    pub out_group: u32,
    pub cookie: u64,
    pub cookie_mask: u64,
    pub r#match: Match,
}

/// `struct ofp_multipart_reply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartReply {
    pub flags: u16,
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
    /// OFPMP_GROUP_DESC (7).
    GroupDesc(Vec<GroupDescStats>),
    /// OFPMP_PORT_DESC (13).
    PortDesc(Vec<PortDesc>),
    /// Any other type, body kept raw.
    Other { mp_type: u16, body: Vec<u8> },
}

/// `struct ofp_desc` (strings without trailing NULs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescStats {
    pub mfr_desc: String,
    pub hw_desc: String,
    pub sw_desc: String,
    pub serial_num: String,
    pub dp_desc: String,
}

/// `struct ofp_flow_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub r#match: Match,
    pub instructions: Vec<Instruction>,
}

/// `struct ofp_group_desc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescStats {
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

/// `struct ofp_match` of type OFPMT_OXM: an ordered list of OXM TLVs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
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
/// Fields this project uses have typed variants; every other field (any class) decodes to
/// [`OxmField::Other`] and re-encodes to the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OxmField {
    /// OXM_OF_IN_PORT.
    InPort(u32),
    /// OXM_OF_METADATA (optionally masked).
    Metadata { value: u64, mask: Option<u64> },
    /// OXM_OF_ETH_DST (optionally masked).
    EthDst {
        value: [u8; 6],
        mask: Option<[u8; 6]>,
    },
    /// OXM_OF_ETH_SRC (optionally masked).
    EthSrc {
        value: [u8; 6],
        mask: Option<[u8; 6]>,
    },
    /// OXM_OF_ETH_TYPE.
    EthType(u16),
    /// OXM_OF_VLAN_VID (includes the OFPVID_PRESENT bit 0x1000 as on the wire).
    VlanVid { value: u16, mask: Option<u16> },
    /// OXM_OF_TUNNEL_ID (optionally masked).
    TunnelId { value: u64, mask: Option<u64> },
    /// Nicira register `NXM_NX_REG<idx>` (class 0x0001, field idx 0..=15).
    NxReg {
        idx: u8,
        value: u32,
        mask: Option<u32>,
    },
    /// Any other field; `value` holds value followed by mask when `has_mask`.
    Other {
        class: u16,
        field: u8,
        has_mask: bool,
        value: Vec<u8>,
    },
}

/// Instructions (`enum ofp_instruction_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Instruction {
    GotoTable(u8),
    WriteMetadata {
        value: u64,
        mask: u64,
    },
    WriteActions(Vec<Action>),
    ApplyActions(Vec<Action>),
    ClearActions,
    Meter(u32),
    Experimenter {
        experimenter: u32,
        data: Vec<u8>,
    },
    /// Any other instruction type, kept intact; `data` is everything after the 4-byte
    /// type/length header.
    Other {
        inst_type: u16,
        data: Vec<u8>,
    },
}

/// Actions (`enum ofp_action_type`) plus the Nicira actions the pipeline uses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// OFPAT_OUTPUT.
    Output { port: u32, max_len: u16 },
    /// OFPAT_GROUP.
    Group(u32),
    /// OFPAT_SET_FIELD with one OXM (never masked).
    SetField(OxmField),
    /// OFPAT_PUSH_VLAN with the given ethertype.
    PushVlan(u16),
    /// OFPAT_POP_VLAN.
    PopVlan,
    /// Nicira NXAST_RESUBMIT_TABLE (subtype 14). `in_port` 0xfff8 = OFPP_IN_PORT (keep).
    NxResubmit { in_port: u16, table: u8 },
    /// Nicira NXAST_LEARN (subtype 16).
    NxLearn(NxLearn),
    /// Any other experimenter action; `data` is everything after the experimenter id.
    Experimenter { experimenter: u32, data: Vec<u8> },
    /// Any other standard action type (for example OFPAT_DEC_NW_TTL), kept intact; `data`
    /// is everything after the 4-byte type/length header.
    Other { action_type: u16, data: Vec<u8> },
}

/// `struct nx_action_learn` (Nicira, OVS `lib/learn.c` wire format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NxLearn {
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub cookie: u64,
    pub flags: u16,
    pub table_id: u8,
    pub fin_idle_timeout: u16,
    pub fin_hard_timeout: u16,
    pub specs: Vec<LearnSpec>,
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
        src: NxmFieldRef,
        dst: NxmFieldRef,
        n_bits: u16,
    },
    /// The learned flow matches `dst` against an immediate value (big-endian, padded to 16 bits).
    MatchImmediate {
        value: Vec<u8>,
        dst: NxmFieldRef,
        n_bits: u16,
    },
    /// The learned flow loads `dst` from the current value of `src`.
    LoadField {
        src: NxmFieldRef,
        dst: NxmFieldRef,
        n_bits: u16,
    },
    /// The learned flow loads an immediate value into `dst`.
    LoadImmediate {
        value: Vec<u8>,
        dst: NxmFieldRef,
        n_bits: u16,
    },
    /// The learned flow outputs to the port held in `src`.
    Output { src: NxmFieldRef, n_bits: u16 },
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
