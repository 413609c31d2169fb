//! Every OpenFlow-basic OXM field (IN_PORT = 0 to IPV6_EXTHDR = 39) in a FLOW_MOD, as
//! `ovs-ofctl ofp-print` reads it, plus its exact bytes for the three fields OVS 3.1
//! does not implement (IN_PHY_PORT, PBB_ISID, IPV6_EXTHDR).
//!
//! The codec adds no prerequisites: each match below lists them first, as §7.2.3.8 asks,
//! and a match without them is sent as given and refused by OVS.

use crate::golden::{check, check_ovs_rejects};
use l2sm_ofp::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use OxmField::*;

const IPV4: OxmField = EthType(0x0800);
const IPV6: OxmField = EthType(0x86dd);

fn flow(fields: Vec<OxmField>) -> Message {
    Message::FlowMod(FlowMod::add(0, 1, Match { fields }, Vec::new()))
}

#[track_caller]
fn prints(fields: Vec<OxmField>, ovs_match: &str) {
    check(
        1,
        flow(fields),
        &format!("OFPT_FLOW_MOD (OF1.3) (xid=0x1): ADD priority=1,{ovs_match} actions=drop"),
    );
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("ipv6 literal")
}

#[test]
fn ethernet_and_vlan_fields() {
    prints(
        vec![
            InPort(7),
            OxmField::metadata(5),
            OxmField::eth_src([1, 2, 3, 4, 5, 6]),
            OxmField::eth_dst_masked([1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]),
        ],
        "metadata=0x5,in_port=7,dl_src=01:02:03:04:05:06,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00",
    );
    prints(
        vec![OxmField::vlan_vid(10), VlanPcp(3)],
        "dl_vlan=10,dl_vlan_pcp=3",
    );
}

#[test]
fn ipv4_and_transport_fields() {
    prints(
        vec![IPV4, IpDscp(46), IpEcn(1), IpProto(6), TcpSrc(1), TcpDst(2)],
        "tcp,nw_tos=184,nw_ecn=1,tp_src=1,tp_dst=2",
    );
    prints(
        vec![
            IPV4,
            OxmField::ipv4_src(Ipv4Addr::new(10, 0, 0, 1)),
            OxmField::ipv4_dst_prefix(Ipv4Addr::new(10, 1, 2, 3), 16),
        ],
        "ip,nw_src=10.0.0.1,nw_dst=10.1.0.0/16",
    );
    prints(
        vec![IPV4, IpProto(17), UdpSrc(53), UdpDst(54)],
        "udp,tp_src=53,tp_dst=54",
    );
    prints(
        vec![IPV4, IpProto(132), SctpSrc(1), SctpDst(2)],
        "sctp,tp_src=1,tp_dst=2",
    );
    prints(
        vec![IPV4, IpProto(1), Icmpv4Type(8), Icmpv4Code(0)],
        "icmp,icmp_type=8,icmp_code=0",
    );
}

#[test]
fn arp_fields() {
    prints(
        vec![
            EthType(0x0806),
            ArpOp(1),
            ArpSpa {
                value: Ipv4Addr::new(10, 0, 0, 1),
                mask: None,
            },
            ArpTpa {
                value: Ipv4Addr::new(10, 0, 0, 0),
                mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            },
            ArpSha {
                value: [0, 0, 0, 0, 0, 1],
                mask: None,
            },
            ArpTha {
                value: [2, 0, 0, 0, 0, 0],
                mask: Some([0xff, 0, 0, 0, 0, 0]),
            },
        ],
        "arp,arp_spa=10.0.0.1,arp_tpa=10.0.0.0/24,arp_op=1,arp_sha=00:00:00:00:00:01,\
         arp_tha=02:00:00:00:00:00/ff:00:00:00:00:00",
    );
}

#[test]
fn ipv6_fields() {
    prints(
        vec![
            IPV6,
            Ipv6Src {
                value: Ipv6Addr::LOCALHOST,
                mask: None,
            },
            Ipv6Dst {
                value: v6("fe80::"),
                mask: Some(v6("ffff::")),
            },
            Ipv6Flabel {
                value: 0x12345,
                mask: None,
            },
        ],
        "ipv6,ipv6_src=::1,ipv6_dst=fe80::/16,ipv6_label=0x12345",
    );
    prints(
        vec![
            IPV6,
            Ipv6Flabel {
                value: 0x10000,
                mask: Some(0xf0000),
            },
        ],
        "ipv6,ipv6_label=0x10000/0xf0000",
    );
    prints(
        vec![
            IPV6,
            IpProto(58),
            Icmpv6Type(135),
            Icmpv6Code(0),
            Ipv6NdTarget(v6("2001:db8::1")),
            Ipv6NdSll([0, 1, 2, 3, 4, 5]),
        ],
        "icmp6,icmp_type=135,icmp_code=0,nd_target=2001:db8::1,nd_sll=00:01:02:03:04:05",
    );
    prints(
        vec![
            IPV6,
            IpProto(58),
            Icmpv6Type(136),
            Icmpv6Code(0),
            Ipv6NdTarget(v6("2001:db8::1")),
            Ipv6NdTll([0, 1, 2, 3, 4, 5]),
        ],
        "icmp6,icmp_type=136,icmp_code=0,nd_target=2001:db8::1,nd_tll=00:01:02:03:04:05",
    );
}

#[test]
fn mpls_and_tunnel_fields() {
    prints(
        vec![EthType(0x8847), MplsLabel(1000), MplsTc(5), MplsBos(1)],
        "mpls,mpls_label=1000,mpls_tc=5,mpls_bos=1",
    );
    prints(
        vec![OxmField::tunnel_id_masked(0x500, 0xff00)],
        "tun_id=0x500/0xff00",
    );
}

#[test]
fn set_field_with_the_new_fields() {
    let fm = FlowMod::add(
        0,
        1,
        Match::any().with(IPV4).with(IpProto(6)),
        vec![Instruction::apply_actions(vec![
            Action::set_field(OxmField::ipv4_dst(Ipv4Addr::new(10, 0, 0, 9))),
            Action::set_field(TcpDst(8080)),
            Action::set_field(IpDscp(10)),
            Action::set_field(OxmField::eth_src([2, 0, 0, 0, 0, 1])),
        ])],
    );
    check(
        2,
        Message::FlowMod(fm),
        "OFPT_FLOW_MOD (OF1.3) (xid=0x2): ADD priority=1,tcp actions=set_field:10.0.0.9->ip_dst,\
         set_field:8080->tcp_dst,set_field:10->ip_dscp,set_field:02:00:00:00:00:01->eth_src",
    );
}

#[test]
fn prerequisites_are_the_callers_job() {
    check_ovs_rejects(flow(vec![IpProto(6)]), "OFPBMC_BAD_PREREQ");
}

/// Encodes `field` alone in a match and returns the TLV bytes.
fn tlv(field: OxmField) -> Vec<u8> {
    let bytes = encode(&OfpMessage::new(1, flow(vec![field]))).expect("encodes");
    let match_len = usize::from(u16::from_be_bytes([bytes[50], bytes[51]]));
    bytes[52..48 + match_len].to_vec()
}

#[test]
fn fields_ovs_does_not_implement_have_the_spec_layout() {
    // OVS 3.1 has no IN_PHY_PORT, PBB_ISID or IPV6_EXTHDR and says so, after parsing the
    // fields before them.
    check_ovs_rejects(flow(vec![InPort(1), InPhyPort(1)]), "OFPBMC_BAD_FIELD");
    let pbb = PbbIsid {
        value: 0x12_3456,
        mask: None,
    };
    check_ovs_rejects(flow(vec![EthType(0x88e7), pbb.clone()]), "OFPBMC_BAD_FIELD");
    let exthdr = Ipv6Exthdr {
        value: 0x4,
        mask: Some(0x1ff),
    };
    check_ovs_rejects(flow(vec![IPV6, exthdr.clone()]), "OFPBMC_BAD_FIELD");
    // class 0x8000, field << 1 | hasmask, length, payload (§7.2.3.7).
    assert_eq!(tlv(InPhyPort(3)), [0x80, 0x00, 0x02, 4, 0, 0, 0, 3]);
    assert_eq!(tlv(pbb), [0x80, 0x00, 0x4a, 3, 0x12, 0x34, 0x56]);
    assert_eq!(
        tlv(PbbIsid {
            value: 0x12_0000,
            mask: Some(0xff_0000)
        }),
        [0x80, 0x00, 0x4b, 6, 0x12, 0, 0, 0xff, 0, 0]
    );
    assert_eq!(tlv(exthdr), [0x80, 0x00, 0x4f, 4, 0, 4, 0x01, 0xff]);
}

#[test]
fn pbb_isid_must_fit_24_bits() {
    let too_big = flow(vec![PbbIsid {
        value: 0x100_0000,
        mask: None,
    }]);
    assert_eq!(
        encode(&OfpMessage::new(1, too_big))
            .unwrap_err()
            .to_string(),
        "flow_mod: oxm pbb_isid value 0x1000000 does not fit in 24 bits"
    );
}

#[test]
fn masks_outside_the_spec_stay_raw() {
    // OVS accepts (and may report) a masked TCP_SRC, which §7.2.3.7 does not allow: it
    // stays an `Other` field and still prints and round-trips.
    let masked_tcp = OxmField::Other {
        class: OXM_CLASS_OPENFLOW_BASIC,
        field: 13,
        has_mask: true,
        value: vec![0, 0x50, 0xff, 0xf0],
    };
    prints(
        vec![IPV4, IpProto(6), masked_tcp.clone()],
        "tcp,tp_src=0x50/0xfff0",
    );
    assert_eq!(masked_tcp.class_and_field(), (0x8000, 13));
    assert_eq!(TcpSrc(1).class_and_field(), (0x8000, 13));
    assert_eq!(OxmField::reg(3, 1).class_and_field(), (0x0001, 3));
}
