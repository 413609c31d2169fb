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
use std::net::{Ipv4Addr, Ipv6Addr};

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

/// Payload width and maskability of each OpenFlow-basic field, from §7.2.3.7 of the spec
/// (written out independently of the codec's own table).
const BASIC_FIELDS: [(usize, bool); 40] = [
    (4, false),  // 0 in_port
    (4, false),  // 1 in_phy_port
    (8, true),   // 2 metadata
    (6, true),   // 3 eth_dst
    (6, true),   // 4 eth_src
    (2, false),  // 5 eth_type
    (2, true),   // 6 vlan_vid
    (1, false),  // 7 vlan_pcp
    (1, false),  // 8 ip_dscp
    (1, false),  // 9 ip_ecn
    (1, false),  // 10 ip_proto
    (4, true),   // 11 ipv4_src
    (4, true),   // 12 ipv4_dst
    (2, false),  // 13 tcp_src
    (2, false),  // 14 tcp_dst
    (2, false),  // 15 udp_src
    (2, false),  // 16 udp_dst
    (2, false),  // 17 sctp_src
    (2, false),  // 18 sctp_dst
    (1, false),  // 19 icmpv4_type
    (1, false),  // 20 icmpv4_code
    (2, false),  // 21 arp_op
    (4, true),   // 22 arp_spa
    (4, true),   // 23 arp_tpa
    (6, true),   // 24 arp_sha
    (6, true),   // 25 arp_tha
    (16, true),  // 26 ipv6_src
    (16, true),  // 27 ipv6_dst
    (4, true),   // 28 ipv6_flabel
    (1, false),  // 29 icmpv6_type
    (1, false),  // 30 icmpv6_code
    (16, false), // 31 ipv6_nd_target
    (6, false),  // 32 ipv6_nd_sll
    (6, false),  // 33 ipv6_nd_tll
    (4, false),  // 34 mpls_label
    (1, false),  // 35 mpls_tc
    (1, false),  // 36 mpls_bos
    (3, true),   // 37 pbb_isid
    (8, true),   // 38 tunnel_id
    (2, true),   // 39 ipv6_exthdr
];

/// Whether (class, field, hasmask, len) is a shape that decodes to a typed [`OxmField`].
fn is_typed_oxm(class: u16, field: u8, has_mask: bool, len: usize) -> bool {
    match class {
        0x8000 => BASIC_FIELDS
            .get(usize::from(field))
            .is_some_and(|&(w, maskable)| {
                if has_mask {
                    maskable && len == 2 * w
                } else {
                    len == w
                }
            }),
        0x0001 => field < 16 && len == if has_mask { 8 } else { 4 },
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

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

/// The OXM fields added for full OpenFlow-basic coverage (every field but the seven
/// the first version of the codec modelled).
fn more_basic_oxm() -> impl Strategy<Value = OxmField> {
    let u24 = || 0u32..=0x00ff_ffff;
    prop_oneof![
        any::<u32>().prop_map(OxmField::InPhyPort),
        any::<u8>().prop_map(OxmField::VlanPcp),
        any::<u8>().prop_map(OxmField::IpDscp),
        any::<u8>().prop_map(OxmField::IpEcn),
        any::<u8>().prop_map(OxmField::IpProto),
        (ipv4(), option::of(ipv4())).prop_map(|(value, mask)| OxmField::Ipv4Src { value, mask }),
        (ipv4(), option::of(ipv4())).prop_map(|(value, mask)| OxmField::Ipv4Dst { value, mask }),
        any::<u16>().prop_map(OxmField::TcpSrc),
        any::<u16>().prop_map(OxmField::TcpDst),
        any::<u16>().prop_map(OxmField::UdpSrc),
        any::<u16>().prop_map(OxmField::UdpDst),
        any::<u16>().prop_map(OxmField::SctpSrc),
        any::<u16>().prop_map(OxmField::SctpDst),
        any::<u8>().prop_map(OxmField::Icmpv4Type),
        any::<u8>().prop_map(OxmField::Icmpv4Code),
        any::<u16>().prop_map(OxmField::ArpOp),
        (ipv4(), option::of(ipv4())).prop_map(|(value, mask)| OxmField::ArpSpa { value, mask }),
        (ipv4(), option::of(ipv4())).prop_map(|(value, mask)| OxmField::ArpTpa { value, mask }),
        (mac(), option::of(mac())).prop_map(|(value, mask)| OxmField::ArpSha { value, mask }),
        (mac(), option::of(mac())).prop_map(|(value, mask)| OxmField::ArpTha { value, mask }),
        (ipv6(), option::of(ipv6())).prop_map(|(value, mask)| OxmField::Ipv6Src { value, mask }),
        (ipv6(), option::of(ipv6())).prop_map(|(value, mask)| OxmField::Ipv6Dst { value, mask }),
        (any::<u32>(), option::of(any::<u32>()))
            .prop_map(|(value, mask)| OxmField::Ipv6Flabel { value, mask }),
        any::<u8>().prop_map(OxmField::Icmpv6Type),
        any::<u8>().prop_map(OxmField::Icmpv6Code),
        ipv6().prop_map(OxmField::Ipv6NdTarget),
        mac().prop_map(OxmField::Ipv6NdSll),
        mac().prop_map(OxmField::Ipv6NdTll),
        any::<u32>().prop_map(OxmField::MplsLabel),
        any::<u8>().prop_map(OxmField::MplsTc),
        any::<u8>().prop_map(OxmField::MplsBos),
        (u24(), option::of(u24())).prop_map(|(value, mask)| OxmField::PbbIsid { value, mask }),
        (any::<u16>(), option::of(any::<u16>()))
            .prop_map(|(value, mask)| OxmField::Ipv6Exthdr { value, mask }),
    ]
}

pub(crate) fn oxm() -> impl Strategy<Value = OxmField> {
    prop_oneof![
        1 => any::<u32>().prop_map(OxmField::InPort),
        1 => (any::<u64>(), option::of(any::<u64>()))
            .prop_map(|(value, mask)| OxmField::Metadata { value, mask }),
        1 => (mac(), option::of(mac())).prop_map(|(value, mask)| OxmField::EthDst { value, mask }),
        1 => (mac(), option::of(mac())).prop_map(|(value, mask)| OxmField::EthSrc { value, mask }),
        1 => any::<u16>().prop_map(OxmField::EthType),
        1 => (any::<u16>(), option::of(any::<u16>()))
            .prop_map(|(value, mask)| OxmField::VlanVid { value, mask }),
        1 => (any::<u64>(), option::of(any::<u64>()))
            .prop_map(|(value, mask)| OxmField::TunnelId { value, mask }),
        1 => (0u8..16, any::<u32>(), option::of(any::<u32>()))
            .prop_map(|(idx, value, mask)| OxmField::NxReg { idx, value, mask }),
        3 => more_basic_oxm(),
        1 => other_oxm(),
    ]
}

fn unmasked_oxm() -> impl Strategy<Value = OxmField> {
    oxm().prop_filter("set_field takes no mask", |f| !f.has_mask())
}

pub(crate) fn r#match() -> impl Strategy<Value = Match> {
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

fn nx_learn2() -> impl Strategy<Value = NxLearn2> {
    (nx_learn(), any::<u32>(), option::of(field_ref())).prop_map(|(learn, limit, result_dst)| {
        // The decoder reads the result field exactly when the flag says so.
        NxLearn2::new(learn, limit, result_dst)
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
        any::<u16>().prop_filter("modelled subtype", |s| ![14, 16, 45].contains(s)),
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

pub(crate) fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(port, max_len)| Action::Output { port, max_len }),
        any::<u32>().prop_map(Action::Group),
        unmasked_oxm().prop_map(Action::SetField),
        any::<u16>().prop_map(Action::PushVlan),
        Just(Action::PopVlan),
        (any::<u16>(), any::<u8>())
            .prop_map(|(in_port, table)| Action::NxResubmit { in_port, table }),
        nx_learn().prop_map(Action::NxLearn),
        nx_learn2().prop_map(Action::NxLearn2),
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

pub(crate) fn instruction() -> impl Strategy<Value = Instruction> {
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

/// Multipart types with a typed body (all of OpenFlow 1.3, TABLE_FEATURES included).
const MODELLED_MP_TYPES: [u16; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0xffff];

fn other_mp_type() -> impl Strategy<Value = u16> {
    any::<u16>().prop_filter("modelled", |t| !MODELLED_MP_TYPES.contains(t))
}

fn multipart_request() -> impl Strategy<Value = MultipartRequest> {
    let body = prop_oneof![
        Just(MultipartRequestBody::Desc),
        flow_stats_request().prop_map(MultipartRequestBody::Flow),
        flow_stats_request().prop_map(MultipartRequestBody::Aggregate),
        Just(MultipartRequestBody::Table),
        any::<u32>().prop_map(|port_no| MultipartRequestBody::PortStats { port_no }),
        any::<(u32, u32)>()
            .prop_map(|(port_no, queue_id)| MultipartRequestBody::Queue { port_no, queue_id }),
        any::<u32>().prop_map(|group_id| MultipartRequestBody::Group { group_id }),
        Just(MultipartRequestBody::GroupDesc),
        Just(MultipartRequestBody::GroupFeatures),
        any::<u32>().prop_map(|meter_id| MultipartRequestBody::Meter { meter_id }),
        any::<u32>().prop_map(|meter_id| MultipartRequestBody::MeterConfig { meter_id }),
        Just(MultipartRequestBody::MeterFeatures),
        bytes(24).prop_map(MultipartRequestBody::TableFeatures),
        Just(MultipartRequestBody::PortDesc),
        (any::<u32>(), any::<u32>(), bytes(24)).prop_map(|(experimenter, exp_type, data)| {
            MultipartRequestBody::Experimenter {
                experimenter,
                exp_type,
                data,
            }
        }),
        (other_mp_type(), bytes(24))
            .prop_map(|(mp_type, body)| MultipartRequestBody::Other { mp_type, body }),
    ];
    (any::<u16>(), body).prop_map(|(flags, body)| MultipartRequest { flags, body })
}

fn counters() -> impl Strategy<Value = Vec<(u64, u64)>> {
    vec(any::<(u64, u64)>(), 0..4)
}

fn group_stats() -> impl Strategy<Value = GroupStats> {
    (any::<(u32, u32, u64, u64, u32, u32)>(), counters()).prop_map(|(g, buckets)| GroupStats {
        group_id: g.0,
        ref_count: g.1,
        packet_count: g.2,
        byte_count: g.3,
        duration_sec: g.4,
        duration_nsec: g.5,
        bucket_stats: buckets
            .into_iter()
            .map(|(packet_count, byte_count)| BucketCounter {
                packet_count,
                byte_count,
            })
            .collect(),
    })
}

fn meter_stats() -> impl Strategy<Value = MeterStats> {
    (any::<(u32, u32, u64, u64, u32, u32)>(), counters()).prop_map(|(m, bands)| MeterStats {
        meter_id: m.0,
        flow_count: m.1,
        packet_in_count: m.2,
        byte_in_count: m.3,
        duration_sec: m.4,
        duration_nsec: m.5,
        band_stats: bands
            .into_iter()
            .map(|(packet_band_count, byte_band_count)| MeterBandStats {
                packet_band_count,
                byte_band_count,
            })
            .collect(),
    })
}

fn port_stats() -> impl Strategy<Value = PortStats> {
    (any::<u32>(), any::<[u64; 12]>(), any::<(u32, u32)>()).prop_map(|(port_no, c, d)| PortStats {
        port_no,
        rx_packets: c[0],
        tx_packets: c[1],
        rx_bytes: c[2],
        tx_bytes: c[3],
        rx_dropped: c[4],
        tx_dropped: c[5],
        rx_errors: c[6],
        tx_errors: c[7],
        rx_frame_err: c[8],
        rx_over_err: c[9],
        rx_crc_err: c[10],
        collisions: c[11],
        duration_sec: d.0,
        duration_nsec: d.1,
    })
}

pub(crate) fn meter_band() -> impl Strategy<Value = MeterBand> {
    prop_oneof![
        any::<(u32, u32)>().prop_map(|(rate, burst_size)| MeterBand::Drop { rate, burst_size }),
        any::<(u32, u32, u8)>().prop_map(|(rate, burst_size, prec_level)| {
            MeterBand::DscpRemark {
                rate,
                burst_size,
                prec_level,
            }
        }),
        (any::<(u32, u32, u32)>(), aligned_bytes(0)).prop_map(
            |((rate, burst_size, experimenter), data)| MeterBand::Experimenter {
                rate,
                burst_size,
                experimenter,
                data,
            }
        ),
        (
            any::<u16>().prop_filter("modelled band", |t| ![1, 2, 0xffff].contains(t)),
            any::<(u32, u32)>(),
            (0usize..3).prop_flat_map(|n| vec(any::<u8>(), n * 8 + 4)),
        )
            .prop_map(|(band_type, (rate, burst_size), data)| MeterBand::Other {
                band_type,
                rate,
                burst_size,
                data,
            }),
    ]
}

fn meter_mod() -> impl Strategy<Value = MeterMod> {
    let command = prop_oneof![
        Just(MeterModCommand::Add),
        Just(MeterModCommand::Modify),
        Just(MeterModCommand::Delete)
    ];
    (command, any::<u16>(), any::<u32>(), vec(meter_band(), 0..4)).prop_map(
        |(command, flags, meter_id, bands)| MeterMod {
            command,
            flags,
            meter_id,
            bands,
        },
    )
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
    let table = any::<(u8, u32, u64, u64)>().prop_map(|t| TableStats {
        table_id: t.0,
        active_count: t.1,
        lookup_count: t.2,
        matched_count: t.3,
    });
    let queue = any::<(u32, u32, u64, u64, u64, u32, u32)>().prop_map(|q| QueueStats {
        port_no: q.0,
        queue_id: q.1,
        tx_bytes: q.2,
        tx_packets: q.3,
        tx_errors: q.4,
        duration_sec: q.5,
        duration_nsec: q.6,
    });
    let meter_config = (any::<u16>(), any::<u32>(), vec(meter_band(), 0..3)).prop_map(
        |(flags, meter_id, bands)| MeterConfig {
            flags,
            meter_id,
            bands,
        },
    );
    let body = prop_oneof![
        desc_stats().prop_map(MultipartReplyBody::Desc),
        vec(flow_stats(), 0..3).prop_map(MultipartReplyBody::Flow),
        any::<(u64, u64, u32)>().prop_map(|(packet_count, byte_count, flow_count)| {
            MultipartReplyBody::Aggregate(AggregateStats {
                packet_count,
                byte_count,
                flow_count,
            })
        }),
        vec(table, 0..4).prop_map(MultipartReplyBody::Table),
        vec(port_stats(), 0..3).prop_map(MultipartReplyBody::PortStats),
        vec(queue, 0..3).prop_map(MultipartReplyBody::Queue),
        vec(group_stats(), 0..3).prop_map(MultipartReplyBody::Group),
        vec(group_desc, 0..3).prop_map(MultipartReplyBody::GroupDesc),
        (any::<(u32, u32)>(), any::<[u32; 4]>(), any::<[u32; 4]>()).prop_map(
            |((types, capabilities), max_groups, actions)| {
                MultipartReplyBody::GroupFeatures(GroupFeatures {
                    types,
                    capabilities,
                    max_groups,
                    actions,
                })
            }
        ),
        vec(meter_stats(), 0..3).prop_map(MultipartReplyBody::Meter),
        vec(meter_config, 0..3).prop_map(MultipartReplyBody::MeterConfig),
        any::<(u32, u32, u32, u8, u8)>().prop_map(|m| {
            MultipartReplyBody::MeterFeatures(MeterFeatures {
                max_meter: m.0,
                band_types: m.1,
                capabilities: m.2,
                max_bands: m.3,
                max_color: m.4,
            })
        }),
        bytes(40).prop_map(MultipartReplyBody::TableFeatures),
        vec(port_desc(), 0..3).prop_map(MultipartReplyBody::PortDesc),
        (any::<u32>(), any::<u32>(), bytes(24)).prop_map(|(experimenter, exp_type, data)| {
            MultipartReplyBody::Experimenter {
                experimenter,
                exp_type,
                data,
            }
        }),
        (other_mp_type(), bytes(24))
            .prop_map(|(mp_type, body)| MultipartReplyBody::Other { mp_type, body }),
    ];
    (any::<u16>(), body).prop_map(|(flags, body)| MultipartReply { flags, body })
}

fn queue_prop() -> impl Strategy<Value = QueueProp> {
    prop_oneof![
        any::<u16>().prop_map(QueueProp::MinRate),
        any::<u16>().prop_map(QueueProp::MaxRate),
        (any::<u32>(), aligned_bytes(0))
            .prop_map(|(experimenter, data)| QueueProp::Experimenter { experimenter, data }),
        (
            any::<u16>().prop_filter("modelled property", |t| ![1, 2, 0xffff].contains(t)),
            (0usize..3).prop_flat_map(|n| vec(any::<u8>(), n * 8 + 4)),
        )
            .prop_map(|(property, data)| QueueProp::Other { property, data }),
    ]
}

fn queue_config_reply() -> impl Strategy<Value = QueueGetConfigReply> {
    let queue = (any::<u32>(), any::<u32>(), vec(queue_prop(), 0..3)).prop_map(
        |(queue_id, port, properties)| PacketQueue {
            queue_id,
            port,
            properties,
        },
    );
    (any::<u32>(), vec(queue, 0..3)).prop_map(|(port, queues)| QueueGetConfigReply { port, queues })
}

fn flow_removed() -> impl Strategy<Value = FlowRemoved> {
    (
        any::<(u64, u16, u8, u8, u32, u32, u16, u16)>(),
        any::<(u64, u64)>(),
        r#match(),
    )
        .prop_map(|(a, (packet_count, byte_count), r#match)| FlowRemoved {
            cookie: a.0,
            priority: a.1,
            reason: a.2,
            table_id: a.3,
            duration_sec: a.4,
            duration_nsec: a.5,
            idle_timeout: a.6,
            hard_timeout: a.7,
            packet_count,
            byte_count,
            r#match,
        })
}

fn role() -> impl Strategy<Value = RoleMsg> {
    let role = prop_oneof![
        Just(ControllerRole::NoChange),
        Just(ControllerRole::Equal),
        Just(ControllerRole::Master),
        Just(ControllerRole::Slave)
    ];
    (role, any::<u64>()).prop_map(|(role, generation_id)| RoleMsg {
        role,
        generation_id,
    })
}

fn async_config() -> impl Strategy<Value = AsyncConfig> {
    any::<[u32; 6]>().prop_map(|m| AsyncConfig {
        packet_in_mask: [m[0], m[1]],
        port_status_mask: [m[2], m[3]],
        flow_removed_mask: [m[4], m[5]],
    })
}

/// Message types OpenFlow 1.3 does not define (30..).
fn unmodelled_type() -> impl Strategy<Value = u8> {
    30u8..=255
}

pub(crate) fn message() -> impl Strategy<Value = Message> {
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
        flow_removed().prop_map(Message::FlowRemoved),
        (any::<u32>(), mac(), any::<(u32, u32, u32)>()).prop_map(|(port_no, hw_addr, c)| {
            Message::PortMod(PortMod {
                port_no,
                hw_addr,
                config: c.0,
                mask: c.1,
                advertise: c.2,
            })
        }),
        any::<(u8, u32)>()
            .prop_map(|(table_id, config)| Message::TableMod(TableMod { table_id, config })),
        any::<u32>().prop_map(|port| Message::QueueGetConfigRequest { port }),
        queue_config_reply().prop_map(Message::QueueGetConfigReply),
        role().prop_map(Message::RoleRequest),
        role().prop_map(Message::RoleReply),
        Just(Message::GetAsyncRequest),
        async_config().prop_map(Message::GetAsyncReply),
        async_config().prop_map(Message::SetAsync),
        meter_mod().prop_map(Message::MeterMod),
        (unmodelled_type(), bytes(32))
            .prop_map(|(msg_type, body)| Message::Other { msg_type, body }),
    ]
}

pub(crate) fn ofp_message() -> impl Strategy<Value = OfpMessage> {
    (any::<u32>(), message()).prop_map(|(xid, body)| OfpMessage::new(xid, body))
}

/// `n` proptest cases, unless `PROPTEST_CASES` asks for a longer (or shorter) run.
pub(crate) fn config(n: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}
