//! Proptest strategies for every codec type.
//!
//! They generate canonical values only: the forms `decode` produces. Raw fallbacks
//! (`Other`, `Experimenter`) never take a shape the codec models, because those decode to
//! the typed variant instead; learn immediates have their exact wire width. Collections
//! stay small so the suite runs in seconds.

use l2sm_ofp::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

/// Byte vectors whose length is `rem` modulo 8, as raw TLV tails must be.
fn aligned_bytes(rem: usize) -> impl Strategy<Value = Vec<u8>> {
    (0usize..3).prop_flat_map(move |n| vec(any::<u8>(), n * 8 + rem))
}

fn mac() -> impl Strategy<Value = [u8; 6]> {
    any::<[u8; 6]>()
}

/// Whether (class, field, hasmask, len) is a shape that decodes to a typed [`OxmField`].
fn is_typed_oxm(class: u16, field: u8, has_mask: bool, len: usize) -> bool {
    match (class, field) {
        (0x8000, 0) => !has_mask && len == 4,
        (0x8000, 2) | (0x8000, 38) => len == if has_mask { 16 } else { 8 },
        (0x8000, 3) | (0x8000, 4) => len == if has_mask { 12 } else { 6 },
        (0x8000, 5) => !has_mask && len == 2,
        (0x8000, 6) => len == if has_mask { 4 } else { 2 },
        (0x0001, 0..=15) => len == if has_mask { 8 } else { 4 },
        _ => false,
    }
}

fn other_oxm() -> impl Strategy<Value = OxmField> {
    let class = prop_oneof![
        Just(0x0000u16),
        Just(0x0001),
        Just(0x8000),
        Just(0xffff),
        any::<u16>()
    ];
    (class, 0u8..=0x7f, any::<bool>(), bytes(16))
        .prop_filter("typed shape", |(c, f, m, v)| {
            !is_typed_oxm(*c, *f, *m, v.len())
        })
        .prop_map(|(class, field, has_mask, value)| OxmField::Other {
            class,
            field,
            has_mask,
            value,
        })
}

pub fn oxm() -> impl Strategy<Value = OxmField> {
    prop_oneof![
        any::<u32>().prop_map(OxmField::InPort),
        (any::<u64>(), option::of(any::<u64>()))
            .prop_map(|(value, mask)| OxmField::Metadata { value, mask }),
        (mac(), option::of(mac())).prop_map(|(value, mask)| OxmField::EthDst { value, mask }),
        (mac(), option::of(mac())).prop_map(|(value, mask)| OxmField::EthSrc { value, mask }),
        any::<u16>().prop_map(OxmField::EthType),
        (any::<u16>(), option::of(any::<u16>()))
            .prop_map(|(value, mask)| OxmField::VlanVid { value, mask }),
        (any::<u64>(), option::of(any::<u64>()))
            .prop_map(|(value, mask)| OxmField::TunnelId { value, mask }),
        (0u8..16, any::<u32>(), option::of(any::<u32>()))
            .prop_map(|(idx, value, mask)| OxmField::NxReg { idx, value, mask }),
        other_oxm(),
    ]
}

fn unmasked_oxm() -> impl Strategy<Value = OxmField> {
    oxm().prop_filter("set_field takes no mask", |f| !f.has_mask())
}

pub fn r#match() -> impl Strategy<Value = Match> {
    vec(oxm(), 0..5).prop_map(|fields| Match { fields })
}

fn field_ref() -> impl Strategy<Value = NxmFieldRef> {
    let header = prop_oneof![
        Just(nxm::IN_PORT),
        Just(nxm::ETH_DST),
        Just(nxm::ETH_SRC),
        Just(nxm::TUN_ID),
        (0u8..16).prop_map(nxm::reg),
        any::<u32>().prop_filter("experimenter class needs 64-bit headers", |h| h >> 16
            != 0xffff),
    ];
    (header, any::<u16>()).prop_map(|(header, ofs)| NxmFieldRef { header, ofs })
}

fn n_bits() -> impl Strategy<Value = u16> {
    prop_oneof![4 => 1u16..=64, 1 => 1u16..=0x7ff]
}

fn immediate(n_bits: u16) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 2 * usize::from(n_bits).div_ceil(16))
}

fn learn_spec() -> impl Strategy<Value = LearnSpec> {
    prop_oneof![
        (field_ref(), field_ref(), n_bits()).prop_map(|(src, dst, n_bits)| LearnSpec::MatchField {
            src,
            dst,
            n_bits
        }),
        (n_bits(), field_ref()).prop_flat_map(|(n_bits, dst)| immediate(n_bits)
            .prop_map(move |value| LearnSpec::MatchImmediate { value, dst, n_bits })),
        (field_ref(), field_ref(), n_bits()).prop_map(|(src, dst, n_bits)| LearnSpec::LoadField {
            src,
            dst,
            n_bits
        }),
        (n_bits(), field_ref()).prop_flat_map(|(n_bits, dst)| immediate(n_bits)
            .prop_map(move |value| LearnSpec::LoadImmediate { value, dst, n_bits })),
        (field_ref(), n_bits()).prop_map(|(src, n_bits)| LearnSpec::Output { src, n_bits }),
    ]
}

fn nx_learn() -> impl Strategy<Value = NxLearn> {
    (
        any::<[u16; 6]>(),
        any::<u64>(),
        any::<u8>(),
        vec(learn_spec(), 0..4),
    )
        .prop_map(|(t, cookie, table_id, specs)| NxLearn {
            idle_timeout: t[0],
            hard_timeout: t[1],
            priority: t[2],
            cookie,
            flags: t[3],
            table_id,
            fin_idle_timeout: t[4],
            fin_hard_timeout: t[5],
            specs,
        })
}

fn raw_experimenter_action() -> impl Strategy<Value = Action> {
    let foreign = (
        any::<u32>().prop_filter("nicira", |e| *e != NX_VENDOR_ID),
        aligned_bytes(0),
    )
        .prop_map(|(experimenter, data)| Action::Experimenter { experimenter, data });
    // A Nicira action the codec does not model (e.g. NXAST_REG_LOAD = 7) stays raw too.
    let nicira = (
        any::<u16>().prop_filter("modelled subtype", |s| *s != 14 && *s != 16),
        0usize..3,
    )
        .prop_flat_map(|(subtype, n)| {
            vec(any::<u8>(), n * 8 + 6).prop_map(move |tail| {
                let mut data = subtype.to_be_bytes().to_vec();
                data.extend(tail);
                Action::Experimenter {
                    experimenter: NX_VENDOR_ID,
                    data,
                }
            })
        });
    prop_oneof![foreign, nicira]
}

pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(port, max_len)| Action::Output { port, max_len }),
        any::<u32>().prop_map(Action::Group),
        unmasked_oxm().prop_map(Action::SetField),
        any::<u16>().prop_map(Action::PushVlan),
        Just(Action::PopVlan),
        (any::<u16>(), any::<u8>())
            .prop_map(|(in_port, table)| Action::NxResubmit { in_port, table }),
        nx_learn().prop_map(Action::NxLearn),
        raw_experimenter_action(),
        (
            any::<u16>().prop_filter("modelled type", |t| ![0, 17, 18, 22, 25, 0xffff]
                .contains(t)),
            aligned_bytes(4)
        )
            .prop_map(|(action_type, data)| Action::Other { action_type, data }),
    ]
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    vec(action(), 0..4)
}

pub fn instruction() -> impl Strategy<Value = Instruction> {
    prop_oneof![
        any::<u8>().prop_map(Instruction::GotoTable),
        (any::<u64>(), any::<u64>())
            .prop_map(|(value, mask)| Instruction::WriteMetadata { value, mask }),
        actions().prop_map(Instruction::WriteActions),
        actions().prop_map(Instruction::ApplyActions),
        Just(Instruction::ClearActions),
        any::<u32>().prop_map(Instruction::Meter),
        (any::<u32>(), aligned_bytes(0))
            .prop_map(|(experimenter, data)| Instruction::Experimenter { experimenter, data }),
        ((7u16..0xffff), aligned_bytes(4))
            .prop_map(|(inst_type, data)| Instruction::Other { inst_type, data }),
    ]
}

fn instructions() -> impl Strategy<Value = Vec<Instruction>> {
    vec(instruction(), 0..4)
}

fn flow_mod_command() -> impl Strategy<Value = FlowModCommand> {
    prop_oneof![
        Just(FlowModCommand::Add),
        Just(FlowModCommand::Modify),
        Just(FlowModCommand::ModifyStrict),
        Just(FlowModCommand::Delete),
        Just(FlowModCommand::DeleteStrict),
    ]
}

fn flow_mod() -> impl Strategy<Value = FlowMod> {
    (
        any::<(u64, u64, u8)>(),
        flow_mod_command(),
        any::<(u16, u16, u16, u32, u32, u32, u16)>(),
        r#match(),
        instructions(),
    )
        .prop_map(
            |((cookie, cookie_mask, table_id), command, t, r#match, instructions)| FlowMod {
                cookie,
                cookie_mask,
                table_id,
                command,
                idle_timeout: t.0,
                hard_timeout: t.1,
                priority: t.2,
                buffer_id: t.3,
                out_port: t.4,
                out_group: t.5,
                flags: t.6,
                r#match,
                instructions,
            },
        )
}

fn group_type() -> impl Strategy<Value = GroupType> {
    prop_oneof![
        Just(GroupType::All),
        Just(GroupType::Select),
        Just(GroupType::Indirect),
        Just(GroupType::FastFailover)
    ]
}

fn buckets() -> impl Strategy<Value = Vec<Bucket>> {
    vec(
        (any::<u16>(), any::<u32>(), any::<u32>(), actions()).prop_map(
            |(weight, watch_port, watch_group, actions)| Bucket {
                weight,
                watch_port,
                watch_group,
                actions,
            },
        ),
        0..4,
    )
}

fn group_mod() -> impl Strategy<Value = GroupMod> {
    let command = prop_oneof![
        Just(GroupModCommand::Add),
        Just(GroupModCommand::Modify),
        Just(GroupModCommand::Delete)
    ];
    (command, group_type(), any::<u32>(), buckets()).prop_map(
        |(command, group_type, group_id, buckets)| GroupMod {
            command,
            group_type,
            group_id,
            buckets,
        },
    )
}

fn port_desc() -> impl Strategy<Value = PortDesc> {
    (any::<u32>(), mac(), "[a-z0-9-]{0,15}", any::<[u32; 8]>()).prop_map(
        |(port_no, hw_addr, name, v)| PortDesc {
            port_no,
            hw_addr,
            name,
            config: v[0],
            state: v[1],
            curr: v[2],
            advertised: v[3],
            supported: v[4],
            peer: v[5],
            curr_speed: v[6],
            max_speed: v[7],
        },
    )
}

fn desc_stats() -> impl Strategy<Value = DescStats> {
    (
        "[ -~]{0,40}",
        "[ -~]{0,40}",
        "[ -~]{0,40}",
        "[ -~]{0,31}",
        "[ -~]{0,40}",
    )
        .prop_map(
            |(mfr_desc, hw_desc, sw_desc, serial_num, dp_desc)| DescStats {
                mfr_desc,
                hw_desc,
                sw_desc,
                serial_num,
                dp_desc,
            },
        )
}

fn flow_stats_request() -> impl Strategy<Value = FlowStatsRequest> {
    (any::<(u8, u32, u32, u64, u64)>(), r#match()).prop_map(
        |((table_id, out_port, out_group, cookie, cookie_mask), r#match)| FlowStatsRequest {
            table_id,
            out_port,
            out_group,
            cookie,
            cookie_mask,
            r#match,
        },
    )
}

fn flow_stats() -> impl Strategy<Value = FlowStats> {
    (
        any::<(u8, u32, u32, u16, u16, u16, u16)>(),
        any::<(u64, u64, u64)>(),
        r#match(),
        instructions(),
    )
        .prop_map(
            |(a, (cookie, packet_count, byte_count), r#match, instructions)| FlowStats {
                table_id: a.0,
                duration_sec: a.1,
                duration_nsec: a.2,
                priority: a.3,
                idle_timeout: a.4,
                hard_timeout: a.5,
                flags: a.6,
                cookie,
                packet_count,
                byte_count,
                r#match,
                instructions,
            },
        )
}

const MODELLED_MP_TYPES: [u16; 4] = [0, 1, 7, 13];

fn multipart_request() -> impl Strategy<Value = MultipartRequest> {
    let body = prop_oneof![
        Just(MultipartRequestBody::Desc),
        flow_stats_request().prop_map(MultipartRequestBody::Flow),
        Just(MultipartRequestBody::GroupDesc),
        Just(MultipartRequestBody::PortDesc),
        (
            any::<u16>().prop_filter("modelled", |t| !MODELLED_MP_TYPES.contains(t)),
            bytes(24)
        )
            .prop_map(|(mp_type, body)| MultipartRequestBody::Other { mp_type, body }),
    ];
    (any::<u16>(), body).prop_map(|(flags, body)| MultipartRequest { flags, body })
}

fn multipart_reply() -> impl Strategy<Value = MultipartReply> {
    let group_desc =
        (group_type(), any::<u32>(), buckets()).prop_map(|(group_type, group_id, buckets)| {
            GroupDescStats {
                group_type,
                group_id,
                buckets,
            }
        });
    let body = prop_oneof![
        desc_stats().prop_map(MultipartReplyBody::Desc),
        vec(flow_stats(), 0..3).prop_map(MultipartReplyBody::Flow),
        vec(group_desc, 0..3).prop_map(MultipartReplyBody::GroupDesc),
        vec(port_desc(), 0..3).prop_map(MultipartReplyBody::PortDesc),
        (
            any::<u16>().prop_filter("modelled", |t| !MODELLED_MP_TYPES.contains(t)),
            bytes(24)
        )
            .prop_map(|(mp_type, body)| MultipartReplyBody::Other { mp_type, body }),
    ];
    (any::<u16>(), body).prop_map(|(flags, body)| MultipartReply { flags, body })
}

/// Message types the codec does not model (FLOW_REMOVED, PORT_MOD, TABLE_MOD, 22..).
fn unmodelled_type() -> impl Strategy<Value = u8> {
    prop_oneof![Just(11u8), Just(16), Just(17), 22u8..=255]
}

pub fn message() -> impl Strategy<Value = Message> {
    let switch_config = || {
        any::<(u16, u16)>().prop_map(|(flags, miss_send_len)| SwitchConfig {
            flags,
            miss_send_len,
        })
    };
    prop_oneof![
        option::of(vec(any::<u32>(), 0..3))
            .prop_map(|version_bitmap| Message::Hello { version_bitmap }),
        (any::<u16>(), any::<u16>(), bytes(32)).prop_map(|(err_type, code, data)| Message::Error(
            ErrorMsg {
                err_type,
                code,
                data
            }
        )),
        bytes(32).prop_map(Message::EchoRequest),
        bytes(32).prop_map(Message::EchoReply),
        (any::<u32>(), any::<u32>(), bytes(32)).prop_map(|(experimenter, exp_type, data)| {
            Message::Experimenter {
                experimenter,
                exp_type,
                data,
            }
        }),
        Just(Message::FeaturesRequest),
        any::<(u64, u32, u8, u8, u32)>().prop_map(
            |(datapath_id, n_buffers, n_tables, auxiliary_id, capabilities)| {
                Message::FeaturesReply(FeaturesReply {
                    datapath_id,
                    n_buffers,
                    n_tables,
                    auxiliary_id,
                    capabilities,
                })
            }
        ),
        Just(Message::GetConfigRequest),
        switch_config().prop_map(Message::GetConfigReply),
        switch_config().prop_map(Message::SetConfig),
        (any::<(u32, u16, u8, u8, u64)>(), r#match(), bytes(64)).prop_map(
            |((buffer_id, total_len, reason, table_id, cookie), r#match, data)| {
                Message::PacketIn(PacketIn {
                    buffer_id,
                    total_len,
                    reason,
                    table_id,
                    cookie,
                    r#match,
                    data,
                })
            }
        ),
        (any::<u8>(), port_desc())
            .prop_map(|(reason, desc)| Message::PortStatus(PortStatus { reason, desc })),
        (any::<u32>(), any::<u32>(), actions(), bytes(64)).prop_map(
            |(buffer_id, in_port, actions, data)| Message::PacketOut(PacketOut {
                buffer_id,
                in_port,
                actions,
                data
            })
        ),
        flow_mod().prop_map(Message::FlowMod),
        group_mod().prop_map(Message::GroupMod),
        multipart_request().prop_map(Message::MultipartRequest),
        multipart_reply().prop_map(Message::MultipartReply),
        Just(Message::BarrierRequest),
        Just(Message::BarrierReply),
        (unmodelled_type(), bytes(32))
            .prop_map(|(msg_type, body)| Message::Other { msg_type, body }),
    ]
}

pub fn ofp_message() -> impl Strategy<Value = OfpMessage> {
    (any::<u32>(), message()).prop_map(|(xid, body)| OfpMessage::new(xid, body))
}

/// `n` proptest cases, unless `PROPTEST_CASES` asks for a longer (or shorter) run.
pub fn config(n: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}
