//! Bytes Open vSwitch 3.1 really sends, decoded to the expected structs and re-encoded
//! to the same bytes (parse -> struct, emit -> bytes, as netlink-packet-route does).
//!
//! Where the files come from: see `tests/fixtures/ovs-3.1/README.md`. `sw_*` were sent by
//! `ovs-vswitchd` to a controller connection, `ctl_*` by `ovs-ofctl -O OpenFlow13` to the
//! switch; the first line of each file names the command or event.

use crate::builders::{delete_learned_on_port, flood_group, learn_flow_mod};
use crate::ovs::hex;
use l2sm_ofp::*;

macro_rules! fixture {
    ($name:literal) => {
        hex(include_str!(concat!("../fixtures/ovs-3.1/", $name, ".hex")))
    };
}

/// Asserts `decode(bytes) == expected` and `encode(expected) == bytes`.
#[track_caller]
fn both_ways(bytes: &[u8], expected: OfpMessage) {
    assert_eq!(decode(bytes).expect("fixture decodes"), expected);
    assert_eq!(
        encode(&expected).expect("expected message encodes"),
        bytes,
        "re-encoding differs"
    );
}

fn msg(xid: u32, body: Message) -> OfpMessage {
    OfpMessage::new(xid, body)
}

fn port(port_no: u32, mac_tail: [u8; 2], name: &str, state: u32) -> PortDesc {
    PortDesc {
        port_no,
        hw_addr: [0xaa, 0x55, 0xaa, 0x55, mac_tail[0], mac_tail[1]],
        name: name.into(),
        config: 0,
        state,
        curr: 0,
        advertised: 0,
        supported: 0,
        peer: 0,
        curr_speed: 0,
        max_speed: 0,
    }
}

#[test]
fn switch_hello() {
    let bytes = fixture!("sw_hello");
    assert_eq!(peek_header(&bytes).map(|h| h.version), Some(0x04));
    both_ways(&bytes, msg(0x10, Message::hello_v13()));
}

#[test]
fn features_reply() {
    let expected = FeaturesReply {
        datapath_id: 0xa1,
        n_buffers: 0,
        n_tables: 254,
        auxiliary_id: 0,
        // FLOW_STATS | TABLE_STATS | PORT_STATS | GROUP_STATS | QUEUE_STATS
        capabilities: 0x4f,
    };
    both_ways(
        &fixture!("sw_features_reply"),
        msg(2, Message::FeaturesReply(expected)),
    );
}

#[test]
fn port_desc_reply_with_local_and_two_ports() {
    let local = PortDesc {
        hw_addr: [0x2e, 0xd1, 0x07, 0xcb, 0xaf, 0x4e],
        ..port(port::LOCAL, [0, 0], "br0", OFPPS_LIVE)
    };
    let expected = MultipartReply {
        flags: 0,
        body: MultipartReplyBody::PortDesc(vec![
            local,
            port(1, [0x00, 0x0f], "p1", OFPPS_LIVE),
            port(2, [0x00, 0x0e], "vxlan-p2", OFPPS_LIVE),
        ]),
    };
    both_ways(
        &fixture!("sw_port_desc_reply"),
        msg(3, Message::MultipartReply(expected.clone())),
    );
    let MultipartReplyBody::PortDesc(ports) = expected.body else {
        unreachable!()
    };
    assert!(ports.iter().all(PortDesc::is_up));
}

#[test]
fn desc_reply() {
    let expected = DescStats {
        mfr_desc: "Nicira, Inc.".into(),
        hw_desc: "Open vSwitch".into(),
        sw_desc: "3.1.0".into(),
        serial_num: "None".into(),
        dp_desc: "None".into(),
    };
    both_ways(
        &fixture!("sw_desc_reply"),
        msg(
            4,
            Message::MultipartReply(MultipartReply {
                flags: 0,
                body: MultipartReplyBody::Desc(expected),
            }),
        ),
    );
}

#[test]
fn get_config_echo_and_barrier_replies() {
    both_ways(
        &fixture!("sw_get_config_reply"),
        msg(
            5,
            Message::GetConfigReply(SwitchConfig {
                flags: 0,
                miss_send_len: 0,
            }),
        ),
    );
    both_ways(
        &fixture!("sw_echo_reply"),
        msg(6, Message::EchoReply(b"ping".to_vec())),
    );
    both_ways(&fixture!("sw_barrier_reply"), msg(7, Message::BarrierReply));
}

#[test]
fn error_bad_request_bad_type() {
    let bytes = fixture!("sw_error_bad_type");
    // OFPET_BAD_REQUEST / OFPBRC_BAD_TYPE, echoing our 12-byte message of type 99.
    let data = vec![0x04, 99, 0, 12, 0, 0, 0, 8, 1, 2, 3, 4];
    both_ways(
        &bytes,
        msg(
            8,
            Message::Error(ErrorMsg {
                err_type: 1,
                code: 1,
                data,
            }),
        ),
    );
}

#[test]
fn packet_in_of_an_arp_frame() {
    let bytes = fixture!("sw_packet_in");
    // The frame injected with `ovs-appctl netdev-dummy/receive p1 <hex>` (43 bytes: one
    // trailing zero more than a minimal ARP request).
    let frame = hex(
        "ffffffffffff0000000000010806000108000604000100000000000100000000000000000000000a000002",
    );
    let expected = PacketIn {
        buffer_id: NO_BUFFER,
        total_len: 43,
        reason: 1, // OFPR_ACTION
        table_id: 0,
        cookie: 0,
        r#match: Match::any().with(OxmField::in_port(1)),
        data: frame,
    };
    both_ways(&bytes, msg(0, Message::PacketIn(expected)));
}

#[test]
fn port_status_add_then_modify() {
    let add = PortStatus {
        reason: 0,
        desc: port(3, [0x00, 0x11], "p3", 0),
    };
    both_ways(
        &fixture!("sw_port_status_add"),
        msg(0, Message::PortStatus(add)),
    );
    let modify = PortStatus {
        reason: 2,
        desc: port(3, [0x00, 0x11], "p3", OFPPS_LIVE),
    };
    both_ways(
        &fixture!("sw_port_status_modify"),
        msg(0, Message::PortStatus(modify)),
    );
}

#[test]
fn flow_stats_reply_contains_our_learn_flow() {
    let bytes = fixture!("sw_flow_stats_reply");
    let ours = learn_flow_mod();
    let expected = MultipartReply {
        flags: 0,
        body: MultipartReplyBody::Flow(vec![
            FlowStats {
                table_id: 0,
                duration_sec: 4,
                duration_nsec: 48_000_000,
                priority: 5,
                idle_timeout: 0,
                hard_timeout: 0,
                flags: 0,
                cookie: 0,
                packet_count: 1,
                byte_count: 43,
                r#match: Match::any().with(OxmField::in_port(1)),
                instructions: vec![Instruction::apply_actions(vec![Action::to_controller()])],
            },
            FlowStats {
                table_id: 1,
                duration_sec: 3,
                duration_nsec: 24_000_000,
                priority: 10,
                idle_timeout: 0,
                hard_timeout: 0,
                flags: 0,
                cookie: 0x1234,
                packet_count: 0,
                byte_count: 0,
                r#match: ours.r#match,
                instructions: ours.instructions,
            },
        ]),
    };
    both_ways(&bytes, msg(10, Message::MultipartReply(expected)));
}

#[test]
fn group_desc_reply() {
    let g = flood_group(7, &[1, 2]);
    let expected = GroupDescStats {
        group_type: g.group_type,
        group_id: g.group_id,
        buckets: g.buckets,
    };
    both_ways(
        &fixture!("sw_group_desc_reply"),
        msg(
            11,
            Message::MultipartReply(MultipartReply {
                flags: 0,
                body: MultipartReplyBody::GroupDesc(vec![expected]),
            }),
        ),
    );
}

#[test]
fn our_learn_flow_mod_is_byte_identical_to_ovs_ofctl() {
    both_ways(
        &fixture!("ctl_flow_mod_learn"),
        msg(6, Message::FlowMod(learn_flow_mod())),
    );
}

#[test]
fn our_port_flush_is_byte_identical_to_ovs_ofctl() {
    // ovs-ofctl fills in its default priority 0x8000, which a non-strict delete ignores.
    let fm = FlowMod {
        priority: 0x8000,
        ..delete_learned_on_port(3)
    };
    both_ways(
        &fixture!("ctl_flow_mod_delete_out_port"),
        msg(6, Message::FlowMod(fm)),
    );
}

#[test]
fn our_flood_group_is_byte_identical_to_ovs_ofctl() {
    both_ways(
        &fixture!("ctl_group_mod_add_all"),
        msg(6, Message::GroupMod(flood_group(8, &[1, 2, 3]))),
    );
}

#[test]
fn our_packet_out_is_byte_identical_to_ovs_ofctl() {
    // The 40-byte frame given to `ovs-ofctl packet-out ... packet=<hex>`.
    let data =
        hex("ffffffffffff00000000000108060001080006040001000000000001000000000000000000000000");
    let po = PacketOut {
        buffer_id: NO_BUFFER,
        in_port: port::CONTROLLER,
        actions: vec![Action::output(2)],
        data,
    };
    both_ways(&fixture!("ctl_packet_out"), msg(6, Message::PacketOut(po)));
}

#[test]
fn flow_mod_with_masks_resubmit_vlan_group_and_metadata() {
    let fm = FlowMod::add(
        0,
        1,
        Match::any()
            .with(OxmField::in_port(1))
            .with(OxmField::eth_dst_masked(
                [1, 0, 0, 0, 0, 0],
                [1, 0, 0, 0, 0, 0],
            ))
            .with(OxmField::tunnel_id(5)),
        vec![
            Instruction::apply_actions(vec![
                Action::resubmit(3),
                Action::push_vlan(0x8100),
                Action::PopVlan,
                Action::group(7),
            ]),
            Instruction::write_metadata(1, 0xff),
        ],
    );
    both_ways(&fixture!("ctl_flow_mod_misc"), msg(6, Message::FlowMod(fm)));
}

#[test]
fn controller_requests() {
    both_ways(&fixture!("ctl_hello"), msg(1, Message::hello_v13()));
    both_ways(
        &fixture!("ctl_features_request"),
        msg(2, Message::FeaturesRequest),
    );
    both_ways(
        &fixture!("ctl_get_config_request"),
        msg(5, Message::GetConfigRequest),
    );
    both_ways(
        &fixture!("ctl_barrier_request"),
        msg(7, Message::BarrierRequest),
    );
    let mp = |xid, body| msg(xid, Message::MultipartRequest(MultipartRequest::new(body)));
    both_ways(
        &fixture!("ctl_desc_request"),
        mp(2, MultipartRequestBody::Desc),
    );
    both_ways(
        &fixture!("ctl_group_desc_request"),
        mp(2, MultipartRequestBody::GroupDesc),
    );
    both_ways(
        &fixture!("ctl_port_desc_request"),
        mp(3, MultipartRequestBody::PortDesc),
    );
    both_ways(
        &fixture!("ctl_flow_stats_request"),
        mp(
            6,
            MultipartRequestBody::Flow(FlowStatsRequest::new(2, Match::any())),
        ),
    );
    // OFPMP_TABLE_FEATURES keeps its body opaque (empty: a query).
    both_ways(
        &fixture!("ctl_table_features_request"),
        mp(2, MultipartRequestBody::TableFeatures(Vec::new())),
    );
}
