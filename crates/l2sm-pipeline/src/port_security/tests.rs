//! Port security: the table-0 decision for random frames against an independent statement of
//! the rules, no two equal-priority flows matching one frame, and the flows around it.

use super::*;
use crate::{compile, diff, FloodMode, LinkKind, NetworkView, SwitchPipeline, SwitchView};
use l2sm_ofp::{Action, Message};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// A frame as table 0 sees it: `None` for fields the frame does not have.
#[derive(Debug, Clone)]
struct Pkt {
    in_port: u32,
    eth_src: [u8; 6],
    eth_type: u16,
    ip4_src: Option<Ipv4Addr>,
    arp_spa: Option<Ipv4Addr>,
    arp_sha: Option<[u8; 6]>,
    ip6_src: Option<Ipv6Addr>,
    icmp6_type: Option<u8>,
    nd_target: Option<Ipv6Addr>,
    nd_sll: Option<[u8; 6]>,
    nd_tll: Option<[u8; 6]>,
}

fn field_matches(f: &OxmField, p: &Pkt) -> bool {
    match f {
        OxmField::InPort(x) => *x == p.in_port,
        OxmField::EthSrc { value, mask: None } => *value == p.eth_src,
        OxmField::EthType(t) => *t == p.eth_type,
        OxmField::Ipv4Src { value, mask: None } => Some(*value) == p.ip4_src,
        OxmField::ArpSpa { value, mask: None } => Some(*value) == p.arp_spa,
        OxmField::ArpSha { value, mask: None } => Some(*value) == p.arp_sha,
        OxmField::Ipv6Src { value, mask: None } => Some(*value) == p.ip6_src,
        OxmField::IpProto(58) => p.icmp6_type.is_some(),
        OxmField::Icmpv6Type(t) => Some(*t) == p.icmp6_type,
        OxmField::Ipv6NdTarget(t) => Some(*t) == p.nd_target,
        OxmField::Ipv6NdSll(m) => Some(*m) == p.nd_sll,
        OxmField::Ipv6NdTll(m) => Some(*m) == p.nd_tll,
        other => panic!("table 0 of a secured port should not match on {other:?}"),
    }
}

/// The table-0 flow that takes `p`. Panics when two flows of the winning priority both
/// match: which one the switch picks would be undefined.
fn classify<'a>(pipeline: &'a SwitchPipeline, p: &Pkt) -> Option<&'a FlowEntry> {
    let hits: Vec<&FlowEntry> = pipeline
        .flows
        .values()
        .filter(|f| {
            f.table == table::CLASSIFY && f.r#match.fields.iter().all(|x| field_matches(x, p))
        })
        .collect();
    let top = hits.iter().map(|f| f.priority).max()?;
    let best: Vec<_> = hits.into_iter().filter(|f| f.priority == top).collect();
    assert_eq!(
        best.len(),
        1,
        "overlapping flows of priority {top} for {p:?}: {best:#?}"
    );
    Some(best[0])
}

/// The rules, stated independently of the flows.
fn should_admit(b: Option<&PortBinding>, p: &Pkt) -> bool {
    let Some(b) = b else { return false };
    if p.eth_src != b.mac {
        return false;
    }
    if !b.has_addresses() {
        return p.eth_type != ETH_TYPE_ARP || p.arp_sha == Some(b.mac);
    }
    let v4 = |a: Option<Ipv4Addr>| {
        a.is_some_and(|a| b.ipv4.contains(&a) && !a.is_unspecified() && !a.is_broadcast())
    };
    let mut v6set: BTreeSet<Ipv6Addr> = b.ipv6.clone();
    v6set.insert(link_local(b.mac));
    v6set.remove(&Ipv6Addr::UNSPECIFIED);
    let v6 = |a: Option<Ipv6Addr>| a.is_some_and(|a| v6set.contains(&a));
    let own_or_none = |m: Option<[u8; 6]>| m == Some(b.mac) || m == Some([0; 6]);
    match p.eth_type {
        ETH_TYPE_ARP => p.arp_sha == Some(b.mac) && v4(p.arp_spa),
        ETH_TYPE_IPV4 => v4(p.ip4_src),
        ETH_TYPE_IPV6 => match p.icmp6_type {
            Some(ICMPV6_NS) => {
                (v6(p.ip6_src) && own_or_none(p.nd_sll))
                    || (p.ip6_src == Some(Ipv6Addr::UNSPECIFIED)
                        && p.nd_sll == Some([0; 6])
                        && v6(p.nd_target))
            }
            Some(ICMPV6_NA) => v6(p.ip6_src) && v6(p.nd_target) && own_or_none(p.nd_tll),
            Some(131 | 143) if p.ip6_src == Some(Ipv6Addr::UNSPECIFIED) => true,
            _ => v6(p.ip6_src),
        },
        _ => true,
    }
}

const MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const OTHER_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 2];
const PORT: u32 = 3;
const VNI: u32 = 7;

fn ip4(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn ip6(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n)
}

fn view(secured: Option<Option<PortBinding>>) -> SwitchView {
    let mut net = NetworkView {
        members: [PORT, 4].into(),
        link_ports: [61440].into(),
        mode: FloodMode::Mesh,
        vlan: Some(7),
        ..NetworkView::default()
    };
    if let Some(b) = secured {
        net.secured.insert(PORT, b);
    }
    SwitchView {
        links: [(61440, LinkKind::Tunnel)].into(),
        networks: [(VNI, net)].into(),
    }
}

/// Whether `p`, classified by `pipeline`, goes on into table 1 in network `vni`.
fn admitted_into(pipeline: &SwitchPipeline, p: &Pkt, vni: u32) -> bool {
    let Some(f) = classify(pipeline, p) else {
        return false;
    };
    let set_vni = Action::SetField(OxmField::TunnelId {
        value: u64::from(vni),
        mask: None,
    });
    let sets_vni = f
        .instructions
        .iter()
        .any(|i| matches!(i, Instruction::ApplyActions(a) if a.contains(&set_vni)));
    let goes_on = f
        .instructions
        .contains(&Instruction::GotoTable(table::LEARN));
    if goes_on {
        assert!(sets_vni, "admitted frame without its network's VNI: {f:?}");
        assert_eq!(f.cookie, cookie::NETWORK | u64::from(vni));
    } else {
        assert!(
            f.instructions.is_empty(),
            "neither admitted nor dropped: {f:?}"
        );
        assert_eq!(
            f.cookie,
            drop_cookie(p.in_port),
            "a drop of port {} not counted under its cookie",
            p.in_port
        );
    }
    goes_on
}

fn binding_strategy() -> impl Strategy<Value = PortBinding> {
    (
        prop::collection::btree_set(1u8..4, 0..3),
        prop::collection::btree_set(1u16..4, 0..3),
        any::<bool>(),
    )
        .prop_map(|(v4, v6, weird)| {
            let mut b = PortBinding {
                mac: MAC,
                ipv4: v4.into_iter().map(ip4).collect(),
                ipv6: v6.into_iter().map(ip6).collect(),
            };
            if weird {
                // Never usable as a source, even when a binding lists them.
                b.ipv4.insert(Ipv4Addr::BROADCAST);
                b.ipv6.insert(Ipv6Addr::UNSPECIFIED);
            }
            b
        })
}

fn pkt_strategy() -> impl Strategy<Value = Pkt> {
    let macs = prop::sample::select(vec![MAC, OTHER_MAC, [0; 6]]);
    let v4 = prop::sample::select(vec![ip4(1), ip4(2), ip4(3), ip4(9), Ipv4Addr::BROADCAST]);
    let v6 = prop::sample::select(vec![
        ip6(1),
        ip6(2),
        ip6(9),
        link_local(MAC),
        link_local(OTHER_MAC),
        Ipv6Addr::UNSPECIFIED,
    ]);
    (
        (
            prop::sample::select(vec![PORT, PORT, PORT, 4]),
            prop::sample::select(vec![MAC, MAC, MAC, OTHER_MAC]),
            prop::sample::select(vec![
                ETH_TYPE_ARP,
                ETH_TYPE_IPV4,
                ETH_TYPE_IPV6,
                ETH_TYPE_IPV6,
                ETH_TYPE_IPV6,
                0x88cc,
            ]),
            v4.clone(),
            v4,
            macs.clone(),
        ),
        (
            v6.clone(),
            prop::option::weighted(
                0.8,
                prop::sample::select(vec![ICMPV6_NS, ICMPV6_NA, 128, 131, 143]),
            ),
            v6,
            macs.clone(),
            macs,
        ),
    )
        .prop_map(
            |((in_port, eth_src, eth_type, a4, spa, sha), (s6, icmp, target, sll, tll))| {
                let arp = eth_type == ETH_TYPE_ARP;
                let v6 = eth_type == ETH_TYPE_IPV6;
                let nd = v6 && matches!(icmp, Some(ICMPV6_NS | ICMPV6_NA));
                Pkt {
                    in_port,
                    eth_src,
                    eth_type,
                    ip4_src: (eth_type == ETH_TYPE_IPV4).then_some(a4),
                    arp_spa: arp.then_some(spa),
                    arp_sha: arp.then_some(sha),
                    ip6_src: v6.then_some(s6),
                    icmp6_type: if v6 { icmp } else { None },
                    nd_target: nd.then_some(target),
                    nd_sll: (v6 && icmp == Some(ICMPV6_NS)).then_some(sll),
                    nd_tll: (v6 && icmp == Some(ICMPV6_NA)).then_some(tll),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn a_secured_port_admits_exactly_what_its_binding_allows(
        b in prop::option::of(binding_strategy()), p in pkt_strategy()
    ) {
        let pipeline = compile(&view(Some(b.clone())));
        let admitted = admitted_into(&pipeline, &p, VNI);
        let want = if p.in_port == PORT { should_admit(b.as_ref(), &p) } else { true };
        prop_assert_eq!(admitted, want, "binding {:?}, frame {:?}", b, p);
    }

    #[test]
    fn without_port_security_every_frame_of_a_member_is_admitted(p in pkt_strategy()) {
        let pipeline = compile(&view(None));
        prop_assert!(admitted_into(&pipeline, &p, VNI));
    }

    #[test]
    fn securing_a_port_changes_only_its_own_table_0_flows(b in prop::option::of(binding_strategy())) {
        let (plain, secured) = (compile(&view(None)), compile(&view(Some(b))));
        for msg in diff(&plain, &secured) {
            let Message::FlowMod(fm) = msg else {
                prop_assert!(false, "unexpected {msg:?}");
                continue;
            };
            prop_assert_eq!(fm.table_id, table::CLASSIFY);
            prop_assert!(fm.r#match.fields.contains(&OxmField::InPort(PORT)));
        }
    }
}

#[test]
fn a_port_without_a_known_mac_only_drops() {
    let p = compile(&view(Some(None)));
    let flows: Vec<&FlowEntry> = p
        .flows
        .values()
        .filter(|f| {
            f.table == table::CLASSIFY && f.r#match.fields.contains(&OxmField::InPort(PORT))
        })
        .collect();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].priority, priority::DROP);
    assert_eq!(flows[0].cookie, drop_cookie(PORT));
    assert!(flows[0].instructions.is_empty());
}

#[test]
fn flows_of_a_dual_stack_port() {
    let b = PortBinding {
        mac: MAC,
        ipv4: [ip4(1)].into(),
        ipv6: [ip6(1)].into(),
    };
    let p = compile(&view(Some(Some(b))));
    let mine: Vec<&FlowEntry> = p
        .flows
        .values()
        .filter(|f| {
            f.table == table::CLASSIFY && f.r#match.fields.contains(&OxmField::InPort(PORT))
        })
        .collect();
    let drops = mine
        .iter()
        .filter(|f| f.cookie == drop_cookie(PORT))
        .count();
    // Catch-all, ARP/IPv4/IPv6 without an allowed address, NS and NA not about its addresses.
    assert_eq!(drops, 1 + 3 + 2);
    // 1 MAC, ARP+IPv4, 2 IPv6 sources (global, link-local), 2 MLD from ::, and per IPv6 source
    // 2 NS + 1 DAD + 2 targets x 2 NA.
    assert_eq!(mine.len() - drops, 1 + 2 + 2 + 2 + 2 * (2 + 1 + 4));
    assert_eq!(
        drop_cookie_port(drop_cookie(PORT)),
        Some(PORT),
        "the metric finds the port back"
    );
    assert_eq!(drop_cookie_port(cookie::NETWORK | 3), None);
}

#[test]
fn link_local_is_modified_eui64() {
    assert_eq!(
        link_local([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]),
        "fe80::42:acff:fe11:2".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(
        link_local([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn plan_hands_each_switch_its_secured_members() {
    use crate::plan::{plan, End, NetworkSpec};
    let b = PortBinding::mac_only(MAC);
    let spec = NetworkSpec {
        vni: VNI,
        vlan: Some(7),
        members: BTreeMap::from([(1, [1, 2].into()), (2, [1].into())]),
        secured: BTreeMap::from([
            (End { dpid: 1, port: 2 }, Some(b.clone())),
            (End { dpid: 2, port: 1 }, None),
            // Not a member: ignored.
            (End { dpid: 2, port: 9 }, Some(b.clone())),
        ]),
        ..NetworkSpec::default()
    };
    let views = plan(&[1, 2].into(), &[], &[spec]);
    assert_eq!(
        views[&1].networks[&VNI].secured,
        BTreeMap::from([(2, Some(b))])
    );
    assert_eq!(
        views[&2].networks[&VNI].secured,
        BTreeMap::from([(1, None)])
    );
}
