//! `ovs-ofctl ofp-print` for the messages added for full OpenFlow 1.3 coverage: flow
//! removed, port/table/meter mods, queue config, role, async config, and every multipart
//! type. What OVS 3.1 does not implement is checked to fail exactly there.

use crate::golden::{check, check_ovs_rejects, mp_reply, mp_request};
use l2sm_ofp::*;

fn tcp_80() -> Match {
    Match::any()
        .with(OxmField::eth_type(0x0800))
        .with(OxmField::ip_proto(6))
        .with(OxmField::TcpDst(80))
}

#[test]
fn flow_removed() {
    let fr = FlowRemoved {
        cookie: 0x12,
        priority: 100,
        reason: 0,
        table_id: 3,
        duration_sec: 10,
        duration_nsec: 500_000_000,
        idle_timeout: 60,
        hard_timeout: 0,
        packet_count: 5,
        byte_count: 300,
        r#match: tcp_80(),
    };
    check(
        0,
        Message::FlowRemoved(fr),
        "OFPT_FLOW_REMOVED (OF1.3) (xid=0x0): priority=100,tcp,tp_dst=80 reason=idle \
         table_id=3 cookie:0x12 duration10.500s idle60 pkts5 bytes300",
    );
}

#[test]
fn port_mod_takes_a_port_down() {
    let pm = PortMod {
        port_no: 1,
        hw_addr: [2, 0, 0, 0, 0, 1],
        config: OFPPC_PORT_DOWN,
        mask: OFPPC_PORT_DOWN,
        advertise: 0,
    };
    check(
        1,
        Message::PortMod(pm),
        "OFPT_PORT_MOD (OF1.3) (xid=0x1): port: 1: addr:02:00:00:00:00:01\n     \
         config: PORT_DOWN\n     \
         mask:   PORT_DOWN\n     \
         advertise: UNCHANGED",
    );
}

#[test]
fn table_mod() {
    check(
        2,
        Message::TableMod(TableMod {
            table_id: 1,
            config: 0,
        }),
        "OFPT_TABLE_MOD (OF1.3) (xid=0x2): table_id=1",
    );
    check(
        2,
        Message::TableMod(TableMod {
            table_id: TABLE_ALL,
            config: 3,
        }),
        "OFPT_TABLE_MOD (OF1.3) (xid=0x2): table_id: ALL_TABLES",
    );
}

#[test]
fn queue_get_config() {
    check(
        3,
        Message::QueueGetConfigRequest { port: 1 },
        "OFPT_QUEUE_GET_CONFIG_REQUEST (OF1.3) (xid=0x3): port=1",
    );
    let reply = QueueGetConfigReply {
        port: 1,
        queues: vec![PacketQueue {
            queue_id: 7,
            port: 1,
            properties: vec![QueueProp::MinRate(100), QueueProp::MaxRate(500)],
        }],
    };
    check(
        3,
        Message::QueueGetConfigReply(reply),
        "OFPT_QUEUE_GET_CONFIG_REPLY (OF1.3) (xid=0x3): port=1\n\
         queue 7: min_rate:10.0% max_rate:50.0%",
    );
}

#[test]
fn role_request_and_reply() {
    check(
        4,
        Message::RoleRequest(RoleMsg {
            role: ControllerRole::Master,
            generation_id: 5,
        }),
        "OFPT_ROLE_REQUEST (OF1.3) (xid=0x4): role=primary generation_id=5",
    );
    check(
        4,
        Message::RoleReply(RoleMsg {
            role: ControllerRole::Slave,
            generation_id: 5,
        }),
        "OFPT_ROLE_REPLY (OF1.3) (xid=0x4): role=secondary generation_id=5",
    );
    check(
        4,
        Message::RoleRequest(RoleMsg {
            role: ControllerRole::NoChange,
            generation_id: 0,
        }),
        "OFPT_ROLE_REQUEST (OF1.3) (xid=0x4): role=nochange",
    );
}

#[test]
fn async_config() {
    check(
        5,
        Message::GetAsyncRequest,
        "OFPT_GET_ASYNC_REQUEST (OF1.3) (xid=0x5):",
    );
    let a = AsyncConfig {
        packet_in_mask: [0b11, 0b1],
        port_status_mask: [0b111, 0b111],
        flow_removed_mask: [0b1111, 0],
    };
    let text = "\n \
         primary:\n       \
         PACKET_IN: no_match action\n     \
         PORT_STATUS: add delete modify\n    \
         FLOW_REMOVED: idle hard delete group_delete\n     \
         ROLE_STATUS: (off)\n    \
         TABLE_STATUS: (off)\n  \
         REQUESTFORWARD: (off)\n\n \
         secondary:\n       \
         PACKET_IN: no_match\n     \
         PORT_STATUS: add delete modify\n    \
         FLOW_REMOVED: (off)\n     \
         ROLE_STATUS: (off)\n    \
         TABLE_STATUS: (off)\n  \
         REQUESTFORWARD: (off)";
    check(
        5,
        Message::GetAsyncReply(a),
        &format!("OFPT_GET_ASYNC_REPLY (OF1.3) (xid=0x5):{text}"),
    );
    check(
        5,
        Message::SetAsync(a),
        &format!("OFPT_SET_ASYNC (OF1.3) (xid=0x5):{text}"),
    );
}

#[test]
fn meter_mod_add_modify_delete() {
    check(
        6,
        Message::MeterMod(MeterMod::add_drop(1, 1000)),
        "OFPT_METER_MOD (OF1.3) (xid=0x6): ADD meter=1 kbps stats bands=\n\
         type=drop rate=1000",
    );
    let modify = MeterMod {
        command: MeterModCommand::Modify,
        flags: OFPMF_PKTPS | OFPMF_BURST,
        meter_id: 2,
        bands: vec![
            MeterBand::DscpRemark {
                rate: 100,
                burst_size: 10,
                prec_level: 1,
            },
            MeterBand::Drop {
                rate: 200,
                burst_size: 20,
            },
        ],
    };
    check(
        6,
        Message::MeterMod(modify),
        "OFPT_METER_MOD (OF1.3) (xid=0x6): MOD meter=2 pktps burst bands=\n\
         type=dscp_remark rate=100 burst_size=10 prec_level=1\n\
         type=drop rate=200 burst_size=20",
    );
    check(
        6,
        Message::MeterMod(MeterMod::delete(meter::ALL)),
        "OFPT_METER_MOD (OF1.3) (xid=0x6): DEL meter=all bands=",
    );
}

#[test]
fn experimenter_meter_band_is_not_implemented_by_ovs() {
    let m = MeterMod {
        command: MeterModCommand::Add,
        flags: OFPMF_KBPS,
        meter_id: 3,
        bands: vec![MeterBand::Experimenter {
            rate: 1,
            burst_size: 0,
            experimenter: NX_VENDOR_ID,
            data: Vec::new(),
        }],
    };
    check_ovs_rejects(Message::MeterMod(m), "OFPMMFC_BAD_BAND");
}

#[test]
fn multipart_stats_requests() {
    let cases = [
        (
            MultipartRequestBody::Aggregate(FlowStatsRequest::new(TABLE_ALL, tcp_80())),
            "OFPST_AGGREGATE request (OF1.3) (xid=0x7): tcp,tp_dst=80",
        ),
        (
            MultipartRequestBody::Table,
            "OFPST_TABLE request (OF1.3) (xid=0x7):",
        ),
        (
            MultipartRequestBody::PortStats { port_no: port::ANY },
            "OFPST_PORT request (OF1.3) (xid=0x7): port_no=ANY",
        ),
        (
            MultipartRequestBody::PortStats { port_no: 1 },
            "OFPST_PORT request (OF1.3) (xid=0x7): port_no=1",
        ),
        (
            MultipartRequestBody::Queue {
                port_no: port::ANY,
                queue_id: queue::ALL,
            },
            "OFPST_QUEUE request (OF1.3) (xid=0x7): port=ANY queue=ALL",
        ),
        (
            MultipartRequestBody::Group {
                group_id: group::ALL,
            },
            "OFPST_GROUP request (OF1.3) (xid=0x7): group_id=ALL",
        ),
        (
            MultipartRequestBody::GroupFeatures,
            "OFPST_GROUP_FEATURES request (OF1.3) (xid=0x7):",
        ),
        (
            MultipartRequestBody::Meter {
                meter_id: meter::ALL,
            },
            "OFPST_METER request (OF1.3) (xid=0x7): meter=all",
        ),
        (
            MultipartRequestBody::MeterConfig { meter_id: 1 },
            "OFPST_METER_CONFIG request (OF1.3) (xid=0x7): meter=1",
        ),
        (
            MultipartRequestBody::MeterFeatures,
            "OFPST_METER_FEATURES request (OF1.3) (xid=0x7):",
        ),
        (
            MultipartRequestBody::TableFeatures(Vec::new()),
            "OFPST_TABLE_FEATURES request (OF1.3) (xid=0x7):",
        ),
        // Nicira's NXST_IPFIX_BRIDGE (3) and NXST_IPFIX_FLOW (4) experimenter stats.
        (
            MultipartRequestBody::Experimenter {
                experimenter: NX_VENDOR_ID,
                exp_type: 3,
                data: Vec::new(),
            },
            "NXST_IPFIX_BRIDGE request (OF1.3) (xid=0x7):",
        ),
        (
            MultipartRequestBody::Experimenter {
                experimenter: NX_VENDOR_ID,
                exp_type: 4,
                data: Vec::new(),
            },
            "NXST_IPFIX_FLOW request (OF1.3) (xid=0x7):",
        ),
    ];
    for (body, expected) in cases {
        check(7, mp_request(body), expected);
    }
}

#[test]
fn aggregate_and_table_replies() {
    check(
        8,
        mp_reply(
            0,
            MultipartReplyBody::Aggregate(AggregateStats {
                packet_count: 10,
                byte_count: 1000,
                flow_count: 3,
            }),
        ),
        "OFPST_AGGREGATE reply (OF1.3) (xid=0x8): packet_count=10 byte_count=1000 flow_count=3",
    );
    let t = |table_id, active_count, lookup_count, matched_count| TableStats {
        table_id,
        active_count,
        lookup_count,
        matched_count,
    };
    check(
        8,
        mp_reply(
            0,
            MultipartReplyBody::Table(vec![t(0, 4, 100, 90), t(1, 0, 0, 0)]),
        ),
        "OFPST_TABLE reply (OF1.3) (xid=0x8):\n  \
         table 0:\n    \
         active=4, lookup=100, matched=90\n\n  \
         table 1:\n    \
         active=0, lookup=0, matched=0",
    );
}

#[test]
fn port_and_queue_stats_replies() {
    let p = PortStats {
        port_no: 1,
        rx_packets: 1,
        tx_packets: 2,
        rx_bytes: 3,
        tx_bytes: 4,
        rx_dropped: 5,
        tx_dropped: 6,
        rx_errors: 7,
        tx_errors: 8,
        rx_frame_err: 9,
        rx_over_err: 10,
        rx_crc_err: 11,
        collisions: 12,
        duration_sec: 13,
        duration_nsec: 14_000_000,
    };
    check(
        9,
        mp_reply(0, MultipartReplyBody::PortStats(vec![p])),
        "OFPST_PORT reply (OF1.3) (xid=0x9): 1 ports\n  \
         port  1: rx pkts=1, bytes=3, drop=5, errs=7, frame=9, over=10, crc=11\n           \
         tx pkts=2, bytes=4, drop=6, errs=8, coll=12\n           \
         duration=13.014s",
    );
    let q = QueueStats {
        port_no: 1,
        queue_id: 2,
        tx_bytes: 3,
        tx_packets: 4,
        tx_errors: 5,
        duration_sec: 6,
        duration_nsec: 7,
    };
    check(
        9,
        mp_reply(0, MultipartReplyBody::Queue(vec![q])),
        "OFPST_QUEUE reply (OF1.3) (xid=0x9): 1 queues\n  \
         port 1 queue 2: bytes=3, pkts=4, errors=5, duration=6.000000007s",
    );
}

#[test]
fn group_stats_and_features_replies() {
    let g = GroupStats {
        group_id: 1,
        ref_count: 2,
        packet_count: 3,
        byte_count: 4,
        duration_sec: 5,
        duration_nsec: 6,
        bucket_stats: vec![
            BucketCounter {
                packet_count: 7,
                byte_count: 8,
            },
            BucketCounter {
                packet_count: 9,
                byte_count: 10,
            },
        ],
    };
    check(
        10,
        mp_reply(0, MultipartReplyBody::Group(vec![g])),
        "OFPST_GROUP reply (OF1.3) (xid=0xa):\n \
         group_id=1,duration=5.000000006s,ref_count=2,packet_count=3,byte_count=4,\
         bucket0:packet_count=7,byte_count=8,bucket1:packet_count=9,byte_count=10",
    );
    // Action bitmaps: bit 0 output, 22 group, 17 push_vlan, 18 pop_vlan.
    let f = GroupFeatures {
        types: 0xf,
        capabilities: 0x7,
        max_groups: [100, 200, 300, 400],
        actions: [1 | 1 << 22, 1, 1 << 17, 1 << 18],
    };
    check(
        10,
        mp_reply(0, MultipartReplyBody::GroupFeatures(f)),
        "OFPST_GROUP_FEATURES reply (OF1.3) (xid=0xa):\n \
         Group table:\n    \
         Types:  0xf\n    \
         Capabilities:  0x7\n    \
         all group:\n       \
         max_groups=0x64\n       \
         actions: output group\n    \
         select group:\n       \
         max_groups=0xc8\n       \
         actions: output\n    \
         indirect group:\n       \
         max_groups=0x12c\n       \
         actions: push_vlan\n    \
         fast failover group:\n       \
         max_groups=0x190\n       \
         actions: strip_vlan",
    );
}

#[test]
fn meter_stats_config_and_features_replies() {
    let m = MeterStats {
        meter_id: 1,
        flow_count: 2,
        packet_in_count: 3,
        byte_in_count: 4,
        duration_sec: 5,
        duration_nsec: 6,
        band_stats: vec![MeterBandStats {
            packet_band_count: 7,
            byte_band_count: 8,
        }],
    };
    check(
        11,
        mp_reply(0, MultipartReplyBody::Meter(vec![m])),
        "OFPST_METER reply (OF1.3) (xid=0xb):\n\
         meter:1 flow_count:2 packet_in_count:3 byte_in_count:4 duration:5.000000006s bands:\n\
         0: packet_count:7 byte_count:8",
    );
    let c = MeterConfig {
        flags: OFPMF_KBPS | OFPMF_STATS,
        meter_id: 1,
        bands: vec![MeterBand::Drop {
            rate: 1000,
            burst_size: 0,
        }],
    };
    check(
        11,
        mp_reply(0, MultipartReplyBody::MeterConfig(vec![c])),
        "OFPST_METER_CONFIG reply (OF1.3) (xid=0xb):\n\
         meter=1 kbps stats bands=\n\
         type=drop rate=1000",
    );
    let f = MeterFeatures {
        max_meter: 100,
        band_types: 0b110,
        capabilities: 0xf,
        max_bands: 8,
        max_color: 0,
    };
    check(
        11,
        mp_reply(0, MultipartReplyBody::MeterFeatures(f)),
        "OFPST_METER_FEATURES reply (OF1.3) (xid=0xb):\n\
         max_meter:100 max_bands:8 max_color:0\n\
         band_types: drop dscp_remark\n\
         capabilities: kbps pktps burst stats",
    );
}

#[test]
fn experimenter_multipart_reply_keeps_its_data() {
    // NXST_IPFIX_BRIDGE reply: ten 64-bit counters, then collector_set_id and padding.
    let mut data: Vec<u8> = (1u64..=10).flat_map(u64::to_be_bytes).collect();
    data.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0]);
    let body = MultipartReplyBody::Experimenter {
        experimenter: NX_VENDOR_ID,
        exp_type: 3,
        data,
    };
    check(
        12,
        mp_reply(0, body),
        "NXST_IPFIX_BRIDGE reply (OF1.3) (xid=0xc):\n  \
         bridge ipfix: flows=1, current flows=2, sampled pkts=3, ipv4 ok=4, ipv6 ok=5, tx pkts=9\n                \
         pkts errs=6, ipv4 errs=7, ipv6 errs=8, tx errs=10",
    );
}
