//! Our encodings as `ovs-ofctl -O OpenFlow13 ofp-print` (OVS 3.1) reads them.
//!
//! Each test encodes one message, has OVS print it, and compares the text; it also checks
//! that OVS printed no warning and that our own decoder returns the original message.

use crate::builders::{arp_request, delete_learned_on_port, flood_group, learn_flow_mod, VNI};
use crate::ovs::ofp_print;
use l2sm_ofp::*;

#[track_caller]
pub(crate) fn check(xid: u32, body: Message, expected: &str) {
    let msg = OfpMessage::new(xid, body);
    let bytes = encode(&msg).expect("encodes");
    let printed = ofp_print(&bytes);
    assert_eq!(
        printed.trim_end(),
        expected.trim_end(),
        "ofp-print output differs"
    );
    assert_eq!(decode(&bytes).expect("decodes"), msg);
}

/// For what OVS 3.1 does not implement: OVS must fail with exactly `ovs_error` (so the
/// bytes got as far as the unsupported part), and our decoder must return the message.
#[track_caller]
pub(crate) fn check_ovs_rejects(body: Message, ovs_error: &str) {
    let msg = OfpMessage::new(1, body);
    let bytes = encode(&msg).expect("encodes");
    let printed = ofp_print(&bytes);
    let first = printed.lines().next().unwrap_or_default();
    assert!(
        first.ends_with(&format!("***decode error: {ovs_error}***")),
        "expected OVS to fail with {ovs_error}, got: {printed}"
    );
    assert_eq!(decode(&bytes).expect("decodes"), msg);
}

pub(crate) fn mp_request(body: MultipartRequestBody) -> Message {
    Message::MultipartRequest(MultipartRequest::new(body))
}

pub(crate) fn mp_reply(flags: u16, body: MultipartReplyBody) -> Message {
    Message::MultipartReply(MultipartReply { flags, body })
}

fn live_port(port_no: u32, name: &str) -> PortDesc {
    PortDesc {
        port_no,
        hw_addr: [0x02, 0, 0, 0, 0, port_no.to_be_bytes()[3]],
        name: name.into(),
        config: 0,
        state: OFPPS_LIVE,
        curr: 0,
        advertised: 0,
        supported: 0,
        peer: 0,
        curr_speed: 10_000_000,
        max_speed: 0,
    }
}

// ---- controller -> switch ------------------------------------------------------------

#[test]
fn hello_with_version_bitmap() {
    check(
        1,
        Message::hello_v13(),
        "OFPT_HELLO (OF1.3) (xid=0x1):\n version bitmap: 0x04",
    );
    let bitmap = (1 << 1) | (1 << 4) | (1 << 5);
    check(
        1,
        Message::Hello {
            version_bitmap: Some(vec![bitmap]),
        },
        "OFPT_HELLO (OF1.3) (xid=0x1):\n version bitmap: 0x01, 0x04, 0x05",
    );
}

#[test]
fn echo_request_and_reply() {
    check(
        2,
        Message::EchoRequest(b"keepalive".to_vec()),
        "OFPT_ECHO_REQUEST (OF1.3) (xid=0x2): 9 bytes of payload\n\
         00000000  6b 65 65 70 61 6c 69 76-65                      |keepalive       |",
    );
    check(
        2,
        Message::EchoReply(Vec::new()),
        "OFPT_ECHO_REPLY (OF1.3) (xid=0x2): 0 bytes of payload",
    );
}

#[test]
fn features_and_config_requests() {
    check(
        3,
        Message::FeaturesRequest,
        "OFPT_FEATURES_REQUEST (OF1.3) (xid=0x3):",
    );
    check(
        4,
        Message::GetConfigRequest,
        "OFPT_GET_CONFIG_REQUEST (OF1.3) (xid=0x4):",
    );
}

#[test]
fn set_config_full_packets_to_controller() {
    check(
        5,
        Message::SetConfig(SwitchConfig {
            flags: 0,
            miss_send_len: 0xffff,
        }),
        "OFPT_SET_CONFIG (OF1.3) (xid=0x5): frags=normal miss_send_len=65535",
    );
}

#[test]
fn barrier_request_and_reply() {
    check(
        6,
        Message::BarrierRequest,
        "OFPT_BARRIER_REQUEST (OF1.3) (xid=0x6):",
    );
    check(
        6,
        Message::BarrierReply,
        "OFPT_BARRIER_REPLY (OF1.3) (xid=0x6):",
    );
}

#[test]
fn flow_mod_with_learn_set_fields_and_goto() {
    check(
        7,
        Message::FlowMod(learn_flow_mod()),
        "OFPT_FLOW_MOD (OF1.3) (xid=0x7): ADD table:1 priority=10 \
         actions=learn(table=2,idle_timeout=300,priority=100,NXM_NX_TUN_ID[],\
         NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],NXM_NX_REG0[0]=0x1,output:NXM_OF_IN_PORT[]),\
         set_field:0x5->tun_id,set_field:0x7->reg0,goto_table:2",
    );
}

#[test]
fn flow_mod_learn_variants() {
    let learn = NxLearn {
        hard_timeout: 60,
        cookie: 0x77,
        flags: NX_LEARN_F_DELETE_LEARNED,
        fin_idle_timeout: 1,
        fin_hard_timeout: 2,
        ..NxLearn::new(
            10,
            vec![
                LearnSpec::MatchField {
                    src: NxmFieldRef::new(nxm::reg(1), 4),
                    dst: NxmFieldRef::new(nxm::reg(2), 8),
                    n_bits: 8,
                },
                LearnSpec::match_value(0x1234, NxmFieldRef::whole(nxm::reg(3)), 16),
                LearnSpec::match_value(0x0102_0304_0506, NxmFieldRef::whole(nxm::ETH_DST), 48),
                LearnSpec::load_fields(nxm::TUN_ID, nxm::TUN_ID),
                LearnSpec::load_value(5, NxmFieldRef::whole(nxm::reg(4)), 8),
                LearnSpec::output_field(nxm::reg(5)),
            ],
        )
    };
    check(
        8,
        Message::FlowMod(FlowMod::add(1, 10, Match::any(), vec![Instruction::apply_actions(vec![Action::learn(learn)])])),
        "OFPT_FLOW_MOD (OF1.3) (xid=0x8): ADD table:1 priority=10 \
         actions=learn(table=10,hard_timeout=60,fin_idle_timeout=1,fin_hard_timeout=2,delete_learned,\
         cookie=0x77,NXM_NX_REG2[8..15]=NXM_NX_REG1[4..11],NXM_NX_REG3[0..15]=0x1234,\
         eth_dst=01:02:03:04:05:06,load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],load:0x5->NXM_NX_REG4[0..7],\
         output:NXM_NX_REG5[])",
    );
}

/// NXAST_LEARN2 as `ovs-ofctl` reads it: the cap and the result bit, then the specs.
#[test]
fn flow_mod_learn2_with_limit_and_result() {
    let learn = NxLearn2::new(
        NxLearn {
            idle_timeout: 300,
            priority: 110,
            cookie: 0x4c32_0002_0000_0003,
            ..NxLearn::new(
                2,
                vec![
                    LearnSpec::match_same(nxm::TUN_ID),
                    LearnSpec::match_fields(nxm::ETH_SRC, nxm::ETH_DST),
                    LearnSpec::LoadField {
                        src: NxmFieldRef::whole(nxm::IN_PORT),
                        dst: NxmFieldRef::whole(nxm::reg(1)),
                        n_bits: 16,
                    },
                ],
            )
        },
        256,
        Some(NxmFieldRef::new(nxm::reg(2), 0)),
    );
    check(
        8,
        Message::FlowMod(FlowMod::add(
            1,
            10,
            Match::any(),
            vec![Instruction::apply_actions(vec![Action::learn2(
                learn.clone(),
            )])],
        )),
        "OFPT_FLOW_MOD (OF1.3) (xid=0x8): ADD table:1 priority=10 \
         actions=learn(table=2,idle_timeout=300,priority=110,cookie=0x4c32000200000003,\
         limit=256,result_dst=NXM_NX_REG2[0],NXM_NX_TUN_ID[],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],\
         load:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15])",
    );
    // Without a result field: no header after the fixed part, the offset stays 0.
    let plain = NxLearn2::new(learn.learn, 7, None);
    check(
        9,
        Message::FlowMod(FlowMod::add(
            1,
            10,
            Match::any(),
            vec![Instruction::apply_actions(vec![Action::learn2(plain)])],
        )),
        "OFPT_FLOW_MOD (OF1.3) (xid=0x9): ADD table:1 priority=10 \
         actions=learn(table=2,idle_timeout=300,priority=110,cookie=0x4c32000200000003,\
         limit=7,NXM_NX_TUN_ID[],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],\
         load:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15])",
    );
}

#[test]
fn flow_mod_classify_local_port() {
    let fm = FlowMod {
        cookie: 0x0001_0000_0000_0005,
        ..FlowMod::add(
            0,
            100,
            Match::any().with(OxmField::in_port(7)),
            vec![
                Instruction::apply_actions(vec![Action::set_field(OxmField::tunnel_id(VNI))]),
                Instruction::write_metadata(1, 1),
                Instruction::goto_table(1),
            ],
        )
    };
    check(
        9,
        Message::FlowMod(fm),
        "OFPT_FLOW_MOD (OF1.3) (xid=0x9): ADD priority=100,in_port=7 cookie:0x1000000000005 \
         actions=set_field:0x5->tun_id,write_metadata:0x1/0x1,goto_table:1",
    );
}

#[test]
fn flow_mod_tunnel_ingress_with_reg_and_resubmit() {
    let fm = FlowMod::add(
        0,
        100,
        Match::any()
            .with(OxmField::in_port(2))
            .with(OxmField::tunnel_id(VNI)),
        vec![
            Instruction::apply_actions(vec![
                Action::set_field(OxmField::reg(0, 1)),
                Action::resubmit(2),
            ]),
            Instruction::goto_table(1),
        ],
    );
    check(
        10,
        Message::FlowMod(fm),
        "OFPT_FLOW_MOD (OF1.3) (xid=0xa): ADD priority=100,tun_id=0x5,in_port=2 \
         actions=set_field:0x1->reg0,resubmit(,2),goto_table:1",
    );
}

#[test]
fn flow_mod_every_match_field_and_instruction() {
    let fm = FlowMod {
        idle_timeout: 10,
        hard_timeout: 20,
        flags: 1, // OFPFF_SEND_FLOW_REM
        ..FlowMod::add(
            3,
            100,
            Match::any()
                .with(OxmField::in_port(2))
                .with(OxmField::eth_type(0x0800))
                .with(OxmField::eth_src([0, 0, 0, 0, 0, 1]))
                .with(OxmField::eth_dst_masked(
                    [1, 0, 0, 0, 0, 0],
                    [1, 0, 0, 0, 0, 0],
                ))
                .with(OxmField::vlan_vid(10))
                .with(OxmField::tunnel_id_masked(VNI, 0xffff_ffff))
                .with(OxmField::metadata_masked(2, 2))
                .with(OxmField::reg_masked(0, 1, 1)),
            vec![
                Instruction::apply_actions(vec![
                    Action::push_vlan(0x8100),
                    Action::to_controller(),
                ]),
                Instruction::write_actions(vec![Action::PopVlan, Action::group(9)]),
                Instruction::ClearActions,
                Instruction::Meter(1),
            ],
        )
    };
    check(
        11,
        Message::FlowMod(fm),
        "OFPT_FLOW_MOD (OF1.3) (xid=0xb): ADD table:3 priority=100,ip,reg0=0x1/0x1,\
         tun_id=0x5/0xffffffff,metadata=0x2/0x2,in_port=2,dl_vlan=10,dl_src=00:00:00:00:00:01,\
         dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 idle:10 hard:20 send_flow_rem \
         actions=meter:1,push_vlan:0x8100,CONTROLLER:65535,clear_actions,write_actions(pop_vlan,group:9)",
    );
}

#[test]
fn flow_mod_delete_learned_on_port() {
    check(
        12,
        Message::FlowMod(delete_learned_on_port(3)),
        "OFPT_FLOW_MOD (OF1.3) (xid=0xc): DEL table:2 priority=0 out_port:3 actions=drop",
    );
}

#[test]
fn flow_mod_delete_everything() {
    check(
        13,
        Message::FlowMod(FlowMod::delete(TABLE_ALL, Match::any())),
        "OFPT_FLOW_MOD (OF1.3) (xid=0xd): DEL table:255 priority=0 actions=drop",
    );
}

#[test]
fn group_mod_add_all_with_three_buckets() {
    check(
        14,
        Message::GroupMod(flood_group(1, &[1, 2, 3])),
        "OFPT_GROUP_MOD (OF1.3) (xid=0xe):\n \
         ADD group_id=1,type=all,bucket=actions=output:1,bucket=actions=output:2,bucket=actions=output:3",
    );
}

#[test]
fn group_mod_modify_and_delete_all() {
    check(
        15,
        Message::GroupMod(GroupMod::modify_all(
            1,
            vec![Bucket::all(vec![Action::output(4)])],
        )),
        "OFPT_GROUP_MOD (OF1.3) (xid=0xf):\n MOD group_id=1,type=all,bucket=actions=output:4",
    );
    // OFPG_ALL = 0xfffffffc; OVS prints it as a number.
    check(
        15,
        Message::GroupMod(GroupMod::delete(group::ALL)),
        "OFPT_GROUP_MOD (OF1.3) (xid=0xf):\n DEL group_id=4294967292,type=all",
    );
}

#[test]
fn packet_out_of_an_arp_request() {
    let po = PacketOut {
        buffer_id: NO_BUFFER,
        in_port: port::CONTROLLER,
        actions: vec![Action::output(2)],
        data: arp_request(),
    };
    check(
        16,
        Message::PacketOut(po),
        "OFPT_PACKET_OUT (OF1.3) (xid=0x10): in_port=CONTROLLER actions=output:2 data_len=42\n\
         arp,vlan_tci=0x0000,dl_src=00:00:00:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=10.0.0.1,\
         arp_tpa=10.0.0.2,arp_op=1,arp_sha=00:00:00:00:00:01,arp_tha=00:00:00:00:00:00",
    );
}

#[test]
fn multipart_requests() {
    check(
        17,
        mp_request(MultipartRequestBody::Desc),
        "OFPST_DESC request (OF1.3) (xid=0x11):",
    );
    check(
        17,
        mp_request(MultipartRequestBody::PortDesc),
        "OFPST_PORT_DESC request (OF1.3) (xid=0x11): port=ANY",
    );
    check(
        17,
        mp_request(MultipartRequestBody::GroupDesc),
        "OFPST_GROUP_DESC request (OF1.3) (xid=0x11): group_id=ALL",
    );
    check(
        17,
        mp_request(MultipartRequestBody::Flow(FlowStatsRequest::new(
            2,
            Match::any().with(OxmField::tunnel_id(VNI)),
        ))),
        "OFPST_FLOW request (OF1.3) (xid=0x11): table=2 tun_id=0x5",
    );
    check(
        17,
        mp_request(MultipartRequestBody::Flow(FlowStatsRequest::all())),
        "OFPST_FLOW request (OF1.3) (xid=0x11):",
    );
}

#[test]
fn error_hello_failed() {
    check(
        18,
        Message::Error(ErrorMsg {
            err_type: 0,
            code: 0,
            data: b"only OpenFlow 1.3".to_vec(),
        }),
        "OFPT_ERROR (OF1.3) (xid=0x12): OFPHFC_INCOMPATIBLE\nonly OpenFlow 1.3",
    );
}

#[test]
fn error_with_every_part_typed() {
    // The switch echoes the failed request; OVS prints it after the code.
    let failed = encode(&OfpMessage::new(
        9,
        Message::FlowMod(FlowMod::delete(1, Match::any())),
    ))
    .expect("encodes");
    let e = ErrorMsg::new(ErrorCode::BadMatch(BadMatchCode::BadPrereq), failed);
    assert_eq!(
        e.describe(),
        "OFPET_BAD_MATCH/OFPBMC_BAD_PREREQ (a prerequisite was not met), \
         in reply to message type 14 xid 9 (56 bytes of it echoed)"
    );
    check(
        18,
        Message::Error(e),
        "OFPT_ERROR (OF1.3) (xid=0x12): OFPBMC_BAD_PREREQ\n\
         OFPT_FLOW_MOD (OF1.3) (xid=0x9): DEL table:1 priority=0 actions=drop",
    );
    let e = ErrorMsg::new(
        ErrorCode::MeterModFailed(MeterModFailedCode::MeterExists),
        Vec::new(),
    );
    assert_eq!((e.err_type, e.code), (12, 1));
    check(
        18,
        Message::Error(e),
        "OFPT_ERROR (OF1.3) (xid=0x12): OFPMMFC_METER_EXISTS\nOpenFlow message is empty",
    );
}

#[test]
fn experimenter_errors() {
    // Nicira's OpenFlow 1.2+ experimenter errors: exp_type 2 is NXBRC_NXM_INVALID.
    let barrier = encode(&OfpMessage::new(9, Message::BarrierRequest)).expect("encodes");
    let e = ErrorMsg::experimenter_error(2, NX_VENDOR_ID, &barrier);
    assert_eq!(e.experimenter(), Some(NX_VENDOR_ID));
    assert_eq!(e.payload(), barrier);
    check(
        18,
        Message::Error(e),
        "OFPT_ERROR (OF1.3) (xid=0x12): NXBRC_NXM_INVALID\n\
         OFPT_BARRIER_REQUEST (OF1.3) (xid=0x9):",
    );
}

#[test]
fn experimenter_message() {
    // NXT_SET_PACKET_IN_FORMAT (Nicira subtype 16), format 2 = nxt_packet_in2.
    check(
        19,
        Message::Experimenter {
            experimenter: NX_VENDOR_ID,
            exp_type: 16,
            data: vec![0, 0, 0, 2],
        },
        "NXT_SET_PACKET_IN_FORMAT (OF1.3) (xid=0x13): format=nxt_packet_in2",
    );
}

// ---- switch -> controller (what a fake switch in tests would send) --------------------

#[test]
fn features_reply() {
    let f = FeaturesReply {
        datapath_id: 0xa1,
        n_buffers: 0,
        n_tables: 254,
        auxiliary_id: 0,
        capabilities: 0x4f,
    };
    check(
        1,
        Message::FeaturesReply(f),
        "OFPT_FEATURES_REPLY (OF1.3) (xid=0x1): dpid:00000000000000a1\n\
         n_tables:254, n_buffers:0\n\
         capabilities: FLOW_STATS TABLE_STATS PORT_STATS GROUP_STATS QUEUE_STATS",
    );
}

#[test]
fn get_config_reply() {
    check(
        2,
        Message::GetConfigReply(SwitchConfig {
            flags: 0,
            miss_send_len: 128,
        }),
        "OFPT_GET_CONFIG_REPLY (OF1.3) (xid=0x2): frags=normal miss_send_len=128",
    );
}

#[test]
fn packet_in() {
    let pi = PacketIn {
        buffer_id: NO_BUFFER,
        total_len: 42,
        reason: 1,
        table_id: 0,
        cookie: 0x10,
        r#match: Match::any()
            .with(OxmField::in_port(2))
            .with(OxmField::tunnel_id(VNI)),
        data: arp_request(),
    };
    check(
        0,
        Message::PacketIn(pi),
        "OFPT_PACKET_IN (OF1.3) (xid=0x0): cookie=0x10 total_len=42 tun_id=0x5,in_port=2 (via action) \
         data_len=42 (unbuffered)\n\
         arp,vlan_tci=0x0000,dl_src=00:00:00:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=10.0.0.1,\
         arp_tpa=10.0.0.2,arp_op=1,arp_sha=00:00:00:00:00:01,arp_tha=00:00:00:00:00:00",
    );
}

#[test]
fn port_status() {
    check(
        0,
        Message::PortStatus(PortStatus {
            reason: 0,
            desc: live_port(3, "vxlan-b"),
        }),
        "OFPT_PORT_STATUS (OF1.3) (xid=0x0): ADD: 3(vxlan-b): addr:02:00:00:00:00:03\n     \
         config:     0\n     \
         state:      LIVE\n     \
         speed: 10000 Mbps now, 0 Mbps max",
    );
}

#[test]
fn port_desc_reply_with_two_ports() {
    check(
        3,
        mp_reply(
            0,
            MultipartReplyBody::PortDesc(vec![live_port(1, "ls1p1"), live_port(2, "vxlan-a")]),
        ),
        "OFPST_PORT_DESC reply (OF1.3) (xid=0x3):\n \
         1(ls1p1): addr:02:00:00:00:00:01\n     \
         config:     0\n     \
         state:      LIVE\n     \
         speed: 10000 Mbps now, 0 Mbps max\n \
         2(vxlan-a): addr:02:00:00:00:00:02\n     \
         config:     0\n     \
         state:      LIVE\n     \
         speed: 10000 Mbps now, 0 Mbps max",
    );
}

#[test]
fn flow_stats_reply_with_more_flag() {
    let learned = FlowStats {
        table_id: 2,
        duration_sec: 5,
        duration_nsec: 0,
        priority: 100,
        idle_timeout: 300,
        hard_timeout: 0,
        flags: 0,
        cookie: 0,
        packet_count: 3,
        byte_count: 180,
        r#match: Match::any()
            .with(OxmField::tunnel_id(VNI))
            .with(OxmField::eth_dst([0, 0, 0, 0, 0, 1])),
        instructions: vec![Instruction::apply_actions(vec![Action::output(1)])],
    };
    check(
        4,
        mp_reply(
            MULTIPART_REPLY_MORE,
            MultipartReplyBody::Flow(vec![learned]),
        ),
        "OFPST_FLOW reply (OF1.3) (xid=0x4): flags=[more]\n \
         cookie=0x0, duration=5s, table=2, n_packets=3, n_bytes=180, idle_timeout=300, \
         priority=100,tun_id=0x5,dl_dst=00:00:00:00:00:01 actions=output:1",
    );
}

#[test]
fn group_desc_reply() {
    let g = GroupDescStats {
        group_type: GroupType::All,
        group_id: 1,
        buckets: flood_group(1, &[1, 2]).buckets,
    };
    check(
        5,
        mp_reply(0, MultipartReplyBody::GroupDesc(vec![g])),
        "OFPST_GROUP_DESC reply (OF1.3) (xid=0x5):\n group_id=1,type=all,bucket=actions=output:1,bucket=actions=output:2",
    );
}

#[test]
fn desc_reply() {
    let d = DescStats {
        mfr_desc: "L2S-M".into(),
        hw_desc: "fake".into(),
        sw_desc: "0.1".into(),
        serial_num: "1".into(),
        dp_desc: "test bridge".into(),
    };
    check(
        6,
        mp_reply(0, MultipartReplyBody::Desc(d)),
        "OFPST_DESC reply (OF1.3) (xid=0x6):\n\
         Manufacturer: L2S-M\n\
         Hardware: fake\n\
         Software: 0.1\n\
         Serial Num: 1\n\
         DP Description: test bridge",
    );
}
