//! Model-based tests: a small interpreter runs frames through the compiled tables (without
//! learned entries, i.e. the worst case where everything floods, plus hand-written learned
//! entries where unicast matters) and checks isolation, split horizon, trees and VLAN tags on
//! random switch views.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Frame {
    in_port: u32,
    tunnel_id: u64,
    vlan: Option<u16>,
    eth_src: [u8; 6],
}

#[derive(Debug, Clone)]
struct Packet {
    eth_type: u16,
    in_port: u32,
    tunnel_id: u64,
    vlan: Option<u16>,
    regs: [u32; 3],
    eth_src: [u8; 6],
    /// Whether a capped learn succeeds (false: the port is at its cap for this source).
    learn_ok: bool,
    /// What the frame carries above Ethernet, for the DNS punt flows.
    l3: L3,
    /// What the frame went through, shared by every copy.
    trace: std::rc::Rc<std::cell::RefCell<Trace>>,
}

/// The layer-3 content the DNS punt flows look at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum L3 {
    /// Nothing the DNS flows match on (no ARP, no UDP).
    #[default]
    Other,
    /// An ARP packet.
    Arp {
        op: u16,
        spa: std::net::Ipv4Addr,
        tpa: std::net::Ipv4Addr,
    },
    /// UDP in IPv4.
    Udp { dst: std::net::Ipv4Addr, dport: u16 },
    /// ICMPv6 neighbour discovery (`t`: 135 solicitation, 136 advertisement).
    Nd { t: u8, target: std::net::Ipv6Addr },
    /// UDP in IPv6.
    Udp6 { dst: std::net::Ipv6Addr, dport: u16 },
}

/// Meters a frame passed and cookies of the flows it matched.
#[derive(Debug, Clone, Default)]
struct Trace {
    meters: Vec<u32>,
    cookies: Vec<u64>,
}

/// (port, VLAN id on the wire) of every copy that leaves the switch.
type Out = BTreeSet<(u32, Option<u16>)>;

/// Every copy that leaves the switch, duplicates kept: (port, VLAN id, tunnel id).
type Sent = Vec<(u32, Option<u16>, u64)>;

fn matches(m: &Match, pkt: &Packet) -> bool {
    m.fields.iter().all(|f| match f {
        OxmField::InPort(p) => *p == pkt.in_port,
        OxmField::TunnelId { value, mask } => {
            let mask = mask.unwrap_or(u64::MAX);
            pkt.tunnel_id & mask == value & mask
        }
        OxmField::NxReg { idx, value, mask } => {
            let mask = mask.unwrap_or(u32::MAX);
            pkt.regs[usize::from(*idx)] & mask == value & mask
        }
        OxmField::EthSrc { value, mask } => {
            let mask = mask.unwrap_or([0xff; 6]);
            (0..6).all(|i| pkt.eth_src[i] & mask[i] == value[i] & mask[i])
        }
        OxmField::VlanVid {
            value: 0,
            mask: None,
        } => pkt.vlan.is_none(),
        OxmField::VlanVid { value, mask: None } => pkt.vlan.map(|v| v | 0x1000) == Some(*value),
        OxmField::EthType(t) => pkt.eth_type == *t,
        OxmField::ArpOp(o) => matches!(pkt.l3, L3::Arp { op, .. } if op == *o),
        OxmField::ArpSpa { value, mask: None } => {
            matches!(pkt.l3, L3::Arp { spa, .. } if spa == *value)
        }
        OxmField::ArpTpa { value, mask: None } => {
            matches!(pkt.l3, L3::Arp { tpa, .. } if tpa == *value)
        }
        OxmField::IpProto(17) => matches!(pkt.l3, L3::Udp { .. } | L3::Udp6 { .. }),
        OxmField::IpProto(58) => matches!(pkt.l3, L3::Nd { .. }),
        OxmField::Ipv4Dst { value, mask: None } => {
            matches!(pkt.l3, L3::Udp { dst, .. } if dst == *value)
        }
        OxmField::Ipv6Dst { value, mask: None } => {
            matches!(pkt.l3, L3::Udp6 { dst, .. } if dst == *value)
        }
        OxmField::UdpDst(port) => {
            matches!(pkt.l3, L3::Udp { dport, .. } | L3::Udp6 { dport, .. } if dport == *port)
        }
        OxmField::Icmpv6Type(want) => matches!(pkt.l3, L3::Nd { t, .. } if t == *want),
        OxmField::Ipv6NdTarget(a) => matches!(pkt.l3, L3::Nd { target, .. } if target == *a),
        other => panic!("interpreter does not know {other:?}"),
    })
}

fn apply(p: &SwitchPipeline, actions: &[Action], pkt: &mut Packet, out: &mut Sent, depth: u8) {
    for a in actions {
        match a {
            Action::SetField(OxmField::TunnelId { value, .. }) => pkt.tunnel_id = *value,
            Action::SetField(OxmField::NxReg { idx, value, .. }) => {
                pkt.regs[usize::from(*idx)] = *value
            }
            Action::SetField(OxmField::VlanVid { value, .. }) => pkt.vlan = Some(value & 0x0fff),
            Action::PushVlan(_) => pkt.vlan = Some(0),
            Action::PopVlan => pkt.vlan = None,
            Action::NxLearn(_) => {}
            Action::NxLearn2(l) => {
                let r = l.result_dst.expect("capped learns write their result");
                assert_eq!(r.header, l2sm_ofp::nxm::reg(limits::RESULT_REG));
                let bit = 1u32 << r.ofs;
                let reg = &mut pkt.regs[usize::from(limits::RESULT_REG)];
                *reg = if pkt.learn_ok {
                    *reg | bit
                } else {
                    *reg & !bit
                };
            }
            Action::NxResubmit { table, .. } => {
                assert!(depth < 4, "resubmit loop");
                run_table(p, *table, pkt, out, depth + 1);
            }
            Action::Group(g) => {
                for bucket in &p.groups[g].buckets {
                    let mut copy = pkt.clone();
                    apply(p, bucket, &mut copy, out, depth);
                }
            }
            Action::Output { port, .. } => {
                // OpenFlow never sends a frame back out of its ingress port.
                if *port != pkt.in_port {
                    out.push((*port, pkt.vlan, pkt.tunnel_id));
                }
            }
            other => panic!("interpreter does not know {other:?}"),
        }
    }
}

/// Runs one table (and whatever it jumps to).
fn run_table(p: &SwitchPipeline, mut table_id: u8, pkt: &mut Packet, out: &mut Sent, depth: u8) {
    loop {
        let best = p
            .flows
            .values()
            .filter(|f| f.table == table_id && matches(&f.r#match, pkt))
            .max_by_key(|f| f.priority);
        let Some(flow) = best else { return };
        pkt.trace.borrow_mut().cookies.push(flow.cookie);
        let mut next = None;
        for ins in &flow.instructions {
            match ins {
                Instruction::Meter(id) => {
                    assert!(p.meters.contains_key(id), "meter {id} is not installed");
                    pkt.trace.borrow_mut().meters.push(*id);
                }
                Instruction::ApplyActions(actions) => apply(p, actions, pkt, out, depth),
                Instruction::GotoTable(t) => next = Some(*t),
                other => panic!("interpreter does not know {other:?}"),
            }
        }
        match next {
            Some(t) => table_id = t,
            None => return,
        }
    }
}

fn run(p: &SwitchPipeline, frame: Frame) -> Out {
    run_full(p, frame, 0x0800)
        .into_iter()
        .map(|(port, vlan, _)| (port, vlan))
        .collect()
}

fn run_full(p: &SwitchPipeline, frame: Frame, eth_type: u16) -> Sent {
    run_traced(p, frame, eth_type, true).0
}

/// Runs a frame; `learn_ok` says whether a capped learn succeeds. Returns what left and what
/// the frame went through.
fn run_traced(p: &SwitchPipeline, frame: Frame, eth_type: u16, learn_ok: bool) -> (Sent, Trace) {
    run_l3(p, frame, eth_type, L3::Other, learn_ok)
}

/// [`run_traced`] of a frame with layer-3 content `l3`.
fn run_l3(
    p: &SwitchPipeline,
    frame: Frame,
    eth_type: u16,
    l3: L3,
    learn_ok: bool,
) -> (Sent, Trace) {
    let mut pkt = Packet {
        eth_type,
        in_port: frame.in_port,
        tunnel_id: frame.tunnel_id,
        vlan: frame.vlan,
        regs: [0; 3],
        eth_src: frame.eth_src,
        learn_ok,
        l3,
        trace: Default::default(),
    };
    let mut out = Sent::new();
    run_table(p, table::CLASSIFY, &mut pkt, &mut out, 0);
    let trace = pkt.trace.borrow().clone();
    (out, trace)
}

/// Random views: tunnels (ports 61440+), trunks (57344+), up to 4 networks with disjoint
/// members (1..20), each network using a random subset of the links, mesh or tree, VLAN = VNI.
/// Limits as networks may have them: the defaults, none, or each limit alone.
fn limits_strategy() -> impl Strategy<Value = limits::Limits> {
    prop_oneof![
        Just(limits::Limits::default()),
        Just(limits::Limits::OFF),
        (1u32..1000).prop_map(|mac_limit| limits::Limits {
            mac_limit,
            ..limits::Limits::OFF
        }),
        (1u32..100_000, 0u32..10_000).prop_map(|(flood_pps, flood_burst)| limits::Limits {
            flood_pps,
            flood_burst,
            ..limits::Limits::OFF
        }),
    ]
}

fn view_strategy() -> impl Strategy<Value = SwitchView> {
    (
        prop::collection::btree_set(61440u32..61444, 0..4),
        prop::collection::btree_set(57344u32..57347, 0..3),
        prop::collection::vec(
            (
                1u32..50,
                prop::collection::btree_set(1u32..20, 0..5),
                prop::collection::btree_set(0usize..7, 0..7),
                (any::<bool>(), limits_strategy()),
            ),
            0..4,
        ),
    )
        .prop_map(|(tunnels, trunks, nets)| {
            let mut links: BTreeMap<u32, LinkKind> = BTreeMap::new();
            links.extend(tunnels.iter().map(|&p| (p, LinkKind::Tunnel)));
            links.extend(trunks.iter().map(|&p| (p, LinkKind::Trunk)));
            let all_links: Vec<u32> = links.keys().copied().collect();
            let mut used = BTreeSet::new();
            let mut networks = BTreeMap::new();
            for (vni, members, link_idx, (tree, limits)) in nets {
                let members: BTreeSet<u32> =
                    members.into_iter().filter(|p| used.insert(*p)).collect();
                let link_ports: BTreeSet<u32> = link_idx
                    .iter()
                    .filter_map(|i| all_links.get(*i).copied())
                    .collect();
                if members.is_empty() && link_ports.len() < 2 {
                    continue;
                }
                let mode = if tree {
                    FloodMode::Tree
                } else {
                    FloodMode::Mesh
                };
                let vlan = Some(u16::try_from(vni).unwrap());
                networks.entry(vni).or_insert(NetworkView {
                    members,
                    link_ports,
                    mode,
                    vlan,
                    mirror: None,
                    limits,
                    ..NetworkView::default()
                });
            }
            SwitchView { links, networks }
        })
}

const UNICAST_SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn wire_vlan(view: &SwitchView, port: u32, net: &NetworkView) -> Option<u16> {
    match view.links.get(&port) {
        Some(LinkKind::Trunk) => net.vlan,
        _ => None,
    }
}

fn expected(
    view: &SwitchView,
    net: &NetworkView,
    ports: impl Iterator<Item = u32>,
    except: u32,
) -> Out {
    ports
        .filter(|p| *p != except)
        .map(|p| (p, wire_vlan(view, p, net)))
        .collect()
}

/// The frame a link delivers for network `vni` (tunnel id or tag).
fn link_frame(view: &SwitchView, port: u32, vni: u32, net: Option<&NetworkView>) -> Frame {
    match view.links.get(&port) {
        Some(LinkKind::Trunk) => Frame {
            in_port: port,
            tunnel_id: 0,
            vlan: Some(
                net.and_then(|n| n.vlan)
                    .unwrap_or(u16::try_from(vni % 4000).unwrap()),
            ),
            eth_src: UNICAST_SRC,
        },
        _ => Frame {
            in_port: port,
            tunnel_id: u64::from(vni),
            vlan: None,
            eth_src: UNICAST_SRC,
        },
    }
}

proptest! {
    #[test]
    fn local_frames_flood_within_their_network(view in view_strategy(), port in 1u32..20) {
        let p = compile(&view);
        let out = run(&p, Frame { in_port: port, tunnel_id: 0, vlan: None, eth_src: UNICAST_SRC });
        match view.networks.values().find(|n| n.members.contains(&port)) {
            None => prop_assert!(out.is_empty(), "non-member port {port} forwarded to {out:?}"),
            Some(net) => {
                let want = expected(&view, net, net.members.iter().chain(&net.link_ports).copied(), port);
                prop_assert_eq!(out, want);
            }
        }
    }

    #[test]
    fn link_frames_follow_the_flood_mode_of_their_network(
        view in view_strategy(), link in prop::sample::select(vec![61440u32, 61441, 61442, 61443, 57344, 57345, 57346]), vni in 1u32..50
    ) {
        let p = compile(&view);
        let net = view.networks.get(&vni);
        let out = run(&p, link_frame(&view, link, vni, net));
        match net {
            Some(net) if view.links.contains_key(&link) && net.link_ports.contains(&link) => {
                let want = match net.mode {
                    FloodMode::Mesh => expected(&view, net, net.members.iter().copied(), link),
                    FloodMode::Tree => expected(&view, net, net.members.iter().chain(&net.link_ports).copied(), link),
                };
                prop_assert_eq!(out, want);
            }
            _ => prop_assert!(out.is_empty(), "link {link} vni {vni}: unexpected forwarding {out:?}"),
        }
    }

    #[test]
    fn frames_never_leave_on_a_port_of_another_network(view in view_strategy(), port in 1u32..20) {
        let p = compile(&view);
        let out = run(&p, Frame { in_port: port, tunnel_id: 0, vlan: None, eth_src: UNICAST_SRC });
        for (vni, net) in &view.networks {
            if !net.members.contains(&port) {
                for (o, _) in &out {
                    prop_assert!(!net.members.contains(o), "frame of another network reached {o} of vni {vni}");
                }
            }
        }
    }

    #[test]
    fn multicast_sources_are_dropped(view in view_strategy(), port in 1u32..20) {
        let p = compile(&view);
        let out = run(&p, Frame { in_port: port, tunnel_id: 0, vlan: None, eth_src: [3, 0, 0, 0, 0, 1] });
        prop_assert!(out.is_empty());
    }

    #[test]
    fn diff_turns_old_into_new(a in view_strategy(), b in view_strategy()) {
        let (old, new) = (compile(&a), compile(&b));
        let mut state = old.clone();
        for msg in diff(&old, &new) {
            match msg {
                Message::FlowMod(fm) => {
                    let entry = FlowEntry {
                        table: fm.table_id,
                        priority: fm.priority,
                        cookie: fm.cookie,
                        r#match: fm.r#match.clone(),
                        instructions: fm.instructions.clone(),
                    };
                    match fm.command {
                        FlowModCommand::Add => {
                            state.flows.insert(entry.key(), entry);
                        }
                        FlowModCommand::DeleteStrict => {
                            prop_assert!(state.flows.remove(&entry.key()).is_some());
                        }
                        other => prop_assert!(false, "unexpected command {other:?}"),
                    }
                }
                Message::GroupMod(gm) => match gm.command {
                    GroupModCommand::Add | GroupModCommand::Modify => {
                        let buckets = gm.buckets.iter().map(|b| b.actions.clone()).collect();
                        state.groups.insert(gm.group_id, GroupEntry { group_id: gm.group_id, buckets });
                    }
                    GroupModCommand::Delete => {
                        prop_assert!(state.groups.remove(&gm.group_id).is_some());
                    }
                },
                Message::MeterMod(mm) => match mm.command {
                    MeterModCommand::Add | MeterModCommand::Modify => {
                        prop_assert_eq!(mm.command == MeterModCommand::Add, !state.meters.contains_key(&mm.meter_id));
                        let entry = limits::MeterEntry::from_config(mm.flags, mm.meter_id, &mm.bands);
                        prop_assert!(entry.is_some(), "not a pipeline meter: {:?}", mm);
                        state.meters.insert(mm.meter_id, entry.unwrap());
                    }
                    MeterModCommand::Delete => {
                        prop_assert!(state.meters.remove(&mm.meter_id).is_some());
                    }
                },
                other => prop_assert!(false, "unexpected message {other:?}"),
            }
        }
        prop_assert_eq!(state, new);
    }

    #[test]
    fn diff_of_identical_states_is_empty(a in view_strategy()) {
        prop_assert!(diff(&compile(&a), &compile(&a)).is_empty());
    }
}

fn mesh(members: &[u32], links: &[u32]) -> NetworkView {
    NetworkView {
        members: members.iter().copied().collect(),
        link_ports: links.iter().copied().collect(),
        mode: FloodMode::Mesh,
        vlan: Some(7),
        mirror: None,
        ..NetworkView::default()
    }
}

/// Adds a learned entry by hand ("MAC M of vni V is behind port P"), as `learn` would.
fn learn(p: &mut SwitchPipeline, vni: u32, port: u32, split_horizon: bool) {
    let mut m = Match::any().with(tunnel_id(vni));
    if split_horizon {
        m = m.with(reg(0, 0, Some(1)));
    }
    p.add_flow(FlowEntry {
        table: table::UNICAST,
        priority: 100,
        cookie: cookie::LEARNED | u64::from(port),
        r#match: m,
        instructions: vec![Instruction::ApplyActions(vec![Action::SetField(reg(
            1, port, None,
        ))])],
    });
}

#[test]
fn known_unicast_leaves_on_one_port_and_trunks_get_the_tag() {
    let view = SwitchView {
        links: [(61440, LinkKind::Tunnel), (57344, LinkKind::Trunk)].into(),
        networks: [(1, mesh(&[1, 2], &[61440, 57344]))].into(),
    };
    let mut p = compile(&view);
    learn(&mut p, 1, 57344, true);
    let out = run(
        &p,
        Frame {
            in_port: 1,
            tunnel_id: 0,
            vlan: None,
            eth_src: UNICAST_SRC,
        },
    );
    assert_eq!(out, [(57344, Some(7))].into());
    // A frame from the tunnel must not be sent into the trunk (split horizon): it floods
    // locally instead.
    let out = run(
        &p,
        Frame {
            in_port: 61440,
            tunnel_id: 1,
            vlan: None,
            eth_src: UNICAST_SRC,
        },
    );
    assert_eq!(out, [(1, None), (2, None)].into());
    // Tagged frame from the trunk: the tag is removed before local delivery.
    let out = run(
        &p,
        Frame {
            in_port: 57344,
            tunnel_id: 0,
            vlan: Some(7),
            eth_src: UNICAST_SRC,
        },
    );
    assert_eq!(out, [(1, None), (2, None)].into());
    // A tag of no network carried here is dropped.
    let out = run(
        &p,
        Frame {
            in_port: 57344,
            tunnel_id: 0,
            vlan: Some(8),
            eth_src: UNICAST_SRC,
        },
    );
    assert!(out.is_empty());
}

#[test]
fn a_tree_transit_switch_forwards_between_its_tree_links() {
    let net = NetworkView {
        members: BTreeSet::new(),
        link_ports: [57344, 57345].into(),
        mode: FloodMode::Tree,
        vlan: Some(9),
        mirror: None,
        ..NetworkView::default()
    };
    let view = SwitchView {
        links: [
            (57344, LinkKind::Trunk),
            (57345, LinkKind::Trunk),
            (57346, LinkKind::Trunk),
        ]
        .into(),
        networks: [(3, net)].into(),
    };
    let p = compile(&view);
    let out = run(
        &p,
        Frame {
            in_port: 57344,
            tunnel_id: 0,
            vlan: Some(9),
            eth_src: UNICAST_SRC,
        },
    );
    assert_eq!(out, [(57345, Some(9))].into());
    let out = run(
        &p,
        Frame {
            in_port: 57346,
            tunnel_id: 0,
            vlan: Some(9),
            eth_src: UNICAST_SRC,
        },
    );
    assert!(out.is_empty(), "a link outside the tree is ignored");
}

#[test]
fn one_member_change_touches_its_flows_and_the_groups_of_its_network() {
    let mut view = SwitchView {
        links: [(61440, LinkKind::Tunnel), (61441, LinkKind::Tunnel)].into(),
        networks: [
            (1, mesh(&[1, 2], &[61440, 61441])),
            (2, mesh(&[3], &[61440, 61441])),
        ]
        .into(),
    };
    let before = compile(&view);
    if let Some(n) = view.networks.get_mut(&1) {
        n.members.insert(4);
    }
    let msgs = diff(&before, &compile(&view));
    let flows = msgs
        .iter()
        .filter(|m| matches!(m, Message::FlowMod(_)))
        .count();
    let groups: Vec<u32> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::GroupMod(g) => Some(g.group_id),
            _ => None,
        })
        .collect();
    // classifier, learn rule and known-unicast egress of the new port, and its limits: the
    // excess drop and the metered flood, through its own new meter
    assert_eq!(flows, 5);
    assert_eq!(groups, vec![flood_local_group(1), flood_remote_group(1)]);
    let meters: Vec<(u32, MeterModCommand)> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::MeterMod(mm) => Some((mm.meter_id, mm.command)),
            _ => None,
        })
        .collect();
    assert_eq!(meters, [(limits::port_meter(4), MeterModCommand::Add)]);
}

#[test]
fn group_ids_do_not_collide_and_stay_below_the_reserved_range() {
    assert_ne!(flood_local_group(1), flood_remote_group(1));
    assert_ne!(flood_remote_group(1), flood_local_group(2));
    assert!(flood_remote_group(MAX_VNI) <= l2sm_ofp::group::MAX);
}

#[test]
fn flushing_a_port_targets_exactly_its_learned_entries() {
    let Message::FlowMod(fm) = flush_learned(5) else {
        panic!("not a flow mod")
    };
    assert_eq!(
        (fm.table_id, fm.cookie, fm.cookie_mask),
        (table::UNICAST, cookie::LEARNED | 5, u64::MAX)
    );
}

/// Random views where every network may have a mirror: local (port 30 + index) or reached
/// through some of its tunnel ports.
fn mirrored_view_strategy() -> impl Strategy<Value = SwitchView> {
    (
        view_strategy(),
        prop::collection::vec(
            (any::<bool>(), prop::collection::btree_set(0usize..4, 0..3)),
            4,
        ),
    )
        .prop_map(|(mut view, mirrors)| {
            let links = view.links.clone();
            for (i, ((_, net), (local, toward))) in
                view.networks.iter_mut().zip(mirrors).enumerate()
            {
                let tunnels: Vec<u32> = net
                    .link_ports
                    .iter()
                    .copied()
                    .filter(|p| links.get(p) == Some(&LinkKind::Tunnel))
                    .collect();
                net.mirror = Some(if local {
                    MirrorView {
                        port: Some(30 + u32::try_from(i).unwrap()),
                        toward: BTreeSet::new(),
                    }
                } else {
                    MirrorView {
                        port: None,
                        toward: toward
                            .iter()
                            .filter_map(|i| tunnels.get(*i).copied())
                            .collect(),
                    }
                });
            }
            view
        })
}

/// The copies a frame of `net` entering on `in_port` must produce, sorted.
fn expected_copies(net: &NetworkView, mvni: u32, in_port: u32) -> Sent {
    let m = net.mirror.as_ref().unwrap();
    let mut want: Sent = match m.port {
        Some(local) => vec![(local, None, 0)],
        None => m
            .toward
            .iter()
            .filter(|p| **p != in_port)
            .map(|p| (*p, None, u64::from(mvni)))
            .collect(),
    };
    want.sort();
    want
}

fn copies(sent: &Sent, net: &NetworkView, mvni: u32) -> Sent {
    let local = net.mirror.as_ref().and_then(|m| m.port);
    let mut c: Sent = sent
        .iter()
        .filter(|(p, _, t)| *t == u64::from(mvni) || Some(*p) == local)
        .map(|&(p, v, t)| {
            if Some(p) == local {
                (p, v, 0)
            } else {
                (p, v, t)
            }
        })
        .collect();
    c.sort();
    c
}

proptest! {
    #[test]
    fn a_local_frame_is_copied_to_the_mirror_exactly_once(view in mirrored_view_strategy(), port in 1u32..20) {
        let p = compile(&view);
        let frame = Frame { in_port: port, tunnel_id: 0, vlan: None, eth_src: UNICAST_SRC };
        let sent = run_full(&p, frame, 0x0800);
        let Some((&vni, net)) = view.networks.iter().find(|(_, n)| n.members.contains(&port)) else {
            prop_assert!(sent.is_empty());
            return Ok(());
        };
        let mvni = mirror_vni(vni).unwrap();
        prop_assert_eq!(copies(&sent, net, mvni), expected_copies(net, mvni, port));
        // The regular delivery is unchanged and never carries the mirror VNI.
        let regular: Out = sent.iter().filter(|(_, _, t)| *t != u64::from(mvni)).map(|&(p, v, _)| (p, v))
            .filter(|(p, _)| Some(*p) != net.mirror.as_ref().and_then(|m| m.port)).collect();
        prop_assert_eq!(regular, expected(&view, net, net.members.iter().chain(&net.link_ports).copied(), port));
        // Other networks' mirrors get nothing.
        for (other, n) in &view.networks {
            if *other != vni {
                let their = n.mirror.as_ref().and_then(|m| m.port);
                prop_assert!(sent.iter().all(|(p, _, _)| Some(*p) != their));
            }
        }
    }

    #[test]
    fn frames_from_links_are_not_copied_again_and_copies_go_on_towards_the_mirror(
        view in mirrored_view_strategy(), link in prop::sample::select(vec![61440u32, 61441, 61442, 61443]), vni in 1u32..50
    ) {
        let p = compile(&view);
        let Some(net) = view.networks.get(&vni) else { return Ok(()) };
        let mvni = mirror_vni(vni).unwrap();
        let m = net.mirror.as_ref().unwrap();
        // A regular frame of the network from a link: no copy (it was copied where it entered).
        let sent = run_full(&p, link_frame(&view, link, vni, Some(net)), 0x0800);
        prop_assert!(copies(&sent, net, mvni).is_empty(), "copied again: {sent:?}");
        // A copy from a link: to the local mirror port, on along the tree, or dropped.
        let copy = Frame { in_port: link, tunnel_id: u64::from(mvni), vlan: None, eth_src: UNICAST_SRC };
        let mut sent = run_full(&p, copy, 0x0800);
        sent.sort();
        let on_link = view.links.get(&link) == Some(&LinkKind::Tunnel) && net.link_ports.contains(&link);
        let want: Sent = match (on_link, m.port, net.mode) {
            (false, _, _) => vec![],
            (true, Some(local), _) => vec![(local, None, u64::from(mvni))],
            (true, None, FloodMode::Tree) if !m.toward.contains(&link) => expected_copies(net, mvni, link),
            _ => vec![],
        };
        prop_assert_eq!(sent, want);
    }

    #[test]
    fn the_mirror_port_sends_nothing_anywhere(view in mirrored_view_strategy()) {
        let p = compile(&view);
        for net in view.networks.values() {
            if let Some(port) = net.mirror.as_ref().and_then(|m| m.port) {
                let frame = Frame { in_port: port, tunnel_id: 0, vlan: None, eth_src: UNICAST_SRC };
                prop_assert!(run_full(&p, frame, 0x0800).is_empty());
            }
        }
    }

    #[test]
    fn only_probes_on_link_ports_go_to_the_controller(view in mirrored_view_strategy(), port in prop::sample::select(vec![1u32, 5, 30, 57344, 61440]), vni in 0u32..60) {
        let p = compile(&view);
        let to_controller = |sent: &Sent| sent.iter().any(|s| s.0 == l2sm_ofp::port::CONTROLLER);
        // A probe: on a link port, no VNI, untagged.
        let probe = Frame { in_port: port, tunnel_id: 0, vlan: None, eth_src: UNICAST_SRC };
        let sent = run_full(&p, probe, ETH_TYPE_LLDP);
        if view.links.contains_key(&port) {
            prop_assert_eq!(sent, vec![(l2sm_ofp::port::CONTROLLER, None, 0)]);
        } else {
            // A pod's LLDP frame is a frame of its network, never a packet-in.
            prop_assert!(!to_controller(&sent), "pod LLDP punted: {sent:?}");
        }
        // Network traffic on links (a VNI on tunnels, a tag on trunks) is never punted.
        let tagged = Frame { in_port: port, tunnel_id: u64::from(vni.max(1)), vlan: Some(vni.max(1) as u16), eth_src: UNICAST_SRC };
        if view.links.contains_key(&port) {
            prop_assert!(!to_controller(&run_full(&p, tagged, ETH_TYPE_LLDP)));
        }
    }

    #[test]
    fn diff_between_mirrored_views_is_exact(a in mirrored_view_strategy(), b in mirrored_view_strategy()) {
        prop_assert!(diff(&compile(&a), &compile(&a)).is_empty());
        let changed = !diff(&compile(&a), &compile(&b)).is_empty();
        prop_assert_eq!(changed, compile(&a) != compile(&b));
    }
}

#[test]
fn setting_a_mirror_changes_only_that_networks_classifier_flows() {
    let mut view = SwitchView {
        links: [(61440, LinkKind::Tunnel), (61441, LinkKind::Tunnel)].into(),
        networks: [
            (1, mesh(&[1, 2], &[61440, 61441])),
            (2, mesh(&[3], &[61440, 61441])),
        ]
        .into(),
    };
    let before = compile(&view);
    if let Some(n) = view.networks.get_mut(&1) {
        n.mirror = Some(MirrorView {
            port: None,
            toward: [61441].into(),
        });
    }
    let msgs = diff(&before, &compile(&view));
    // The two member classifiers of network 1 get the copy; nothing else moves (a mesh
    // switch that is not the mirror's does not pass copies on).
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    for m in &msgs {
        let Message::FlowMod(fm) = m else {
            panic!("{m:?}")
        };
        assert_eq!(
            (fm.table_id, fm.cookie),
            (table::CLASSIFY, cookie::NETWORK | 1)
        );
    }
}

#[test]
fn mirror_vnis_never_collide_with_network_vnis() {
    assert_eq!(mirror_vni(MAX_VNI + 1), None);
    let m = mirror_vni(MAX_VNI).unwrap();
    assert!(m > MAX_VNI && m < (1 << 24), "fits VXLAN's 24 bits");
    assert_ne!(mirror_vni(1), mirror_vni(2));
}

/// Views as a buggy or hostile caller could build them: members and mirrors in the trunk and
/// tunnel ranges, on link ports, in several networks at once, mirrors that are members.
fn hostile_view_strategy() -> impl Strategy<Value = SwitchView> {
    let port = prop::sample::select(vec![
        1u32, 2, 3, 4, 0xdfff, 57344, 57345, 61440, 61441, 0xff00,
    ]);
    (
        prop::collection::btree_set(61440u32..61443, 0..3),
        prop::collection::btree_set(57344u32..57346, 0..2),
        prop::collection::vec(
            (
                1u32..8,
                prop::collection::btree_set(port.clone(), 0..4),
                prop::option::of(port),
                any::<bool>(),
            ),
            1..4,
        ),
    )
        .prop_map(|(tunnels, trunks, nets)| {
            let mut links: BTreeMap<u32, LinkKind> = BTreeMap::new();
            links.extend(tunnels.iter().map(|&p| (p, LinkKind::Tunnel)));
            links.extend(trunks.iter().map(|&p| (p, LinkKind::Trunk)));
            let link_ports: BTreeSet<u32> = links.keys().copied().collect();
            let mut networks = BTreeMap::new();
            for (vni, members, mirror, tree) in nets {
                networks.entry(vni).or_insert(NetworkView {
                    members,
                    link_ports: link_ports.clone(),
                    mode: if tree {
                        FloodMode::Tree
                    } else {
                        FloodMode::Mesh
                    },
                    vlan: Some(u16::try_from(vni).unwrap()),
                    mirror: mirror.map(|p| MirrorView {
                        port: Some(p),
                        toward: BTreeSet::new(),
                    }),
                    ..NetworkView::default()
                });
            }
            SwitchView { links, networks }
        })
}

fn outputs(actions: &[Action]) -> impl Iterator<Item = u32> + '_ {
    actions.iter().filter_map(|a| match a {
        Action::Output { port, .. } => Some(*port),
        _ => None,
    })
}

proptest! {
    /// Whatever the compiler is given, a port that is not a link serves at most one network
    /// and only in one role: frames entering it are classified into one network, and only
    /// that network's floods, unicast and copies leave through it; a port receiving mirror
    /// copies classifies nothing; members and mirrors are pod ports.
    #[test]
    fn member_mirror_and_link_ports_are_disjoint(view in hostile_view_strategy()) {
        let p = compile(&view);
        let network_of_cookie = |c: u64| {
            (c & cookie::OWNER_MASK == cookie::NETWORK).then_some((c & 0xffff_ffff) as u32)
        };
        let mut ingress: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        let mut egress: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        let mut copy_targets = BTreeSet::new();
        for f in p.flows.values() {
            let in_port = f.r#match.fields.iter().find_map(|x| match x {
                OxmField::InPort(p) => Some(*p),
                _ => None,
            });
            let only_port = f.r#match.fields.len() == 1;
            if let (Some(port), true, Some(vni)) = (in_port, only_port, network_of_cookie(f.cookie)) {
                if f.table == table::CLASSIFY {
                    ingress.entry(port).or_default().insert(vni);
                }
            }
            for i in &f.instructions {
                if let Instruction::ApplyActions(actions) = i {
                    for o in outputs(actions) {
                        if let Some(vni) = network_of_cookie(f.cookie) {
                            egress.entry(o).or_default().insert(vni);
                        }
                        if f.table == table::CLASSIFY {
                            copy_targets.insert(o);
                        }
                    }
                }
            }
        }
        for g in p.groups.values() {
            let vni = g.group_id >> 1;
            for b in &g.buckets {
                for o in outputs(b) {
                    egress.entry(o).or_default().insert(vni);
                }
            }
        }
        for (port, vnis) in &ingress {
            prop_assert!(ids::is_pod_port(*port), "member classifier on non-pod port {port}");
            prop_assert!(!view.links.contains_key(port), "member classifier on link {port}");
            prop_assert_eq!(vnis.len(), 1, "port {} classified into {:?}", port, vnis);
            prop_assert!(!copy_targets.contains(port), "mirror port {} also classifies", port);
        }
        for (port, vnis) in &egress {
            if view.links.contains_key(port) {
                continue;
            }
            prop_assert!(ids::is_pod_port(*port), "output to non-pod port {port}");
            prop_assert!(vnis.len() <= 1, "port {} receives networks {:?}", port, vnis);
            if let Some(own) = ingress.get(port) {
                prop_assert_eq!(own, vnis, "port {} receives another network than its own", port);
            }
        }
        // And the compiler says what it left out exactly when the view broke a rule.
        let sound = view.violations().is_empty();
        prop_assert_eq!(sound, view.sanitized().as_ref() == &view);
    }

    /// A sound view compiles as it is: the rules remove nothing from the views the controller
    /// builds.
    #[test]
    fn sound_views_have_no_violations(view in mirrored_view_strategy()) {
        prop_assert!(view.violations().is_empty(), "{:?}", view.violations());
    }
}

#[test]
fn violations_name_the_port_and_why() {
    let mut view = SwitchView::default();
    view.links.insert(61440, LinkKind::Tunnel);
    view.networks.insert(1, mesh(&[1, 2, 57344], &[61440]));
    view.networks.insert(2, mesh(&[2, 61440], &[61440]));
    let v = view.violations();
    assert!(v.contains(&ViewViolation::SharedPort {
        port: 2,
        vnis: vec![1, 2]
    }));
    assert!(v.contains(&ViewViolation::NotPodPort {
        vni: 1,
        port: 57344
    }));
    assert!(v.contains(&ViewViolation::NotPodPort {
        vni: 2,
        port: 61440
    }));
    assert_eq!(v.len(), 3);
    let clean = view.sanitized();
    assert_eq!(clean.networks[&1].members, BTreeSet::from([1]));
    assert!(clean.networks[&2].members.is_empty());
}

/// Abuse limits: MAC cap, flood meters, controller meter.
mod limits_props;

proptest! {
    /// A switch reports match fields in its own order: reading back what was installed must
    /// diff to nothing, whatever the order, and a real change must still be sent.
    #[test]
    fn diff_ignores_the_order_of_match_fields(view in view_strategy(), seed in any::<u64>()) {
        let installed = compile(&view);
        let mut read_back = installed.clone();
        for flow in read_back.flows.values_mut() {
            let n = flow.r#match.fields.len();
            if n > 1 {
                flow.r#match.fields.rotate_left((seed as usize) % n);
            }
        }
        prop_assert!(diff(&read_back, &installed).is_empty());
        if let Some(flow) = read_back.flows.values_mut().next() {
            flow.cookie ^= 1;
            prop_assert_eq!(diff(&read_back, &installed).len(), 1);
        }
    }
}

/// The DNS address tests give network `vni`.
fn dns_addr(vni: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(10, 0, u8::try_from(vni).unwrap(), 254)
}

/// The IPv6 DNS address tests give network `vni`.
fn dns_addr6(vni: u32) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::new(0xfd00, u16::try_from(vni).unwrap(), 0, 0, 0, 0, 0, 0xffff)
}

/// Random views where some networks have a DNS address, some an IPv6 one too (or only).
fn dns_view_strategy() -> impl Strategy<Value = SwitchView> {
    (view_strategy(), prop::collection::vec(0u8..4, 4)).prop_map(|(mut view, on)| {
        for (i, (vni, net)) in view.networks.iter_mut().enumerate() {
            let mode = on[i % 4];
            if mode & 1 != 0 {
                net.dns = Some(dns_addr(*vni));
            }
            if mode & 2 != 0 {
                net.dns6 = Some(dns_addr6(*vni));
            }
        }
        view
    })
}

/// Whether `net` has a DNS address of the family of ethertype `eth_type`.
fn has_dns(net: &NetworkView, eth_type: u16) -> bool {
    if eth_type == 0x86dd {
        net.dns6.is_some()
    } else {
        net.dns.is_some()
    }
}

/// An ethertype and what the frame carries above Ethernet.
type EthFrame = (u16, L3);

/// Every DNS frame a pod could send for network `vni`'s address (ARP request, UDP query),
/// with its ethertype; and frames near them that must not be punted.
fn dns_frames(vni: u32) -> (Vec<EthFrame>, Vec<EthFrame>) {
    let addr = dns_addr(vni);
    let me = std::net::Ipv4Addr::new(10, 0, 0, 1);
    let addr6 = dns_addr6(vni);
    let me6 = std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    let arp = |op, tpa| L3::Arp { op, spa: me, tpa };
    let udp = |dst, dport| L3::Udp { dst, dport };
    let nd = |t, target| L3::Nd { t, target };
    let udp6 = |dst, dport| L3::Udp6 { dst, dport };
    let punted = vec![
        (0x0806, arp(1, addr)),
        (0x0800, udp(addr, 53)),
        (0x86dd, nd(135, addr6)),
        (0x86dd, udp6(addr6, 53)),
    ];
    let not = vec![
        (0x0806, arp(2, addr)),
        (0x0800, udp(addr, 54)),
        (0x0800, udp(me, 53)),
        (0x86dd, udp(addr, 53)),
        (0x0800, udp6(addr6, 53)),
        (0x86dd, nd(136, addr6)),
        (0x86dd, nd(135, me6)),
        (0x86dd, udp6(me6, 53)),
        (0x86dd, udp6(addr6, 54)),
    ];
    (punted, not)
}

proptest! {
    // The DNS punt flows: a member's ARP request for its own network's DNS address and its
    // UDP queries to port 53 of it go to the controller alone (through the DNS meter, with
    // the cookie naming that network); a query for another network's address, or anything
    // near a query, is forwarded as before (only within the port's network); a non-member
    // port or a link never causes a punt.
    #[test]
    fn dns_punts_only_a_members_own_queries(
        view in dns_view_strategy(), port in 1u32..20, target in 1u32..50,
        link in prop::sample::select(vec![61440u32, 61441, 57344]),
    ) {
        let p = compile(&view);
        let own = view.networks.iter().find(|(_, n)| n.members.contains(&port));
        let frame = Frame { in_port: port, tunnel_id: 0, vlan: None, eth_src: UNICAST_SRC };
        let (punted, not) = dns_frames(target);
        let controller = (l2sm_ofp::port::CONTROLLER, None, u64::from(target));
        for (eth_type, l3) in &punted {
            let (out, trace) = run_l3(&p, frame, *eth_type, *l3, true);
            match own {
                Some((vni, net)) if *vni == target && has_dns(net, *eth_type) => {
                    prop_assert_eq!(&out, &vec![controller], "{:?}", l3);
                    prop_assert_eq!(trace.meters.last(), Some(&dns::DNS_METER));
                    prop_assert_eq!(trace.cookies.last(), Some(&dns::cookie(target)));
                    prop_assert_eq!(dns::cookie_vni(dns::cookie(target)), Some(target));
                }
                Some((vni, net)) => {
                    // Not its network's DNS address: forwarded like any frame, in its network.
                    let want = expected(&view, net, net.members.iter().chain(&net.link_ports).copied(), port);
                    let got: Out = out.iter().map(|(o, v, _)| (*o, *v)).collect();
                    prop_assert_eq!(got, want, "vni {} asking {}", vni, target);
                    prop_assert!(out.iter().all(|(_, _, t)| *t == u64::from(*vni)));
                }
                None => prop_assert!(out.is_empty()),
            }
            // From a link, never punted (whatever network it carries).
            let net = view.networks.get(&target);
            let (out, _) = run_l3(&p, link_frame(&view, link, target, net), *eth_type, *l3, true);
            prop_assert!(out.iter().all(|(o, _, _)| *o != l2sm_ofp::port::CONTROLLER), "{:?}", out);
        }
        for (eth_type, l3) in &not {
            let (out, _) = run_l3(&p, frame, *eth_type, *l3, true);
            prop_assert!(out.iter().all(|(o, _, _)| *o != l2sm_ofp::port::CONTROLLER), "{:?} punted", l3);
        }
        // A pod claiming its network's DNS address in ARP is dropped.
        if let Some((vni, net)) = own.filter(|(_, n)| n.dns.is_some()) {
            let claim = L3::Arp { op: 2, spa: dns_addr(*vni), tpa: dns_addr(*vni) };
            let (out, _) = run_l3(&p, frame, 0x0806, claim, true);
            prop_assert!(out.is_empty(), "claim forwarded: {:?} ({:?})", out, net.members);
        }
        if let Some((vni, _)) = own.filter(|(_, n)| n.dns6.is_some()) {
            let claim = L3::Nd { t: 136, target: dns_addr6(*vni) };
            let (out, _) = run_l3(&p, frame, 0x86dd, claim, true);
            prop_assert!(out.is_empty(), "NA claim forwarded: {:?}", out);
        }
    }

    // DNS flows come and go with the network's address, and change nothing else.
    #[test]
    fn dns_adds_only_its_own_flows_and_meter(view in view_strategy()) {
        let mut with = view.clone();
        for (vni, net) in with.networks.iter_mut() {
            net.dns = Some(dns_addr(*vni));
            net.dns6 = Some(dns_addr6(*vni));
        }
        let (a, b) = (compile(&view), compile(&with));
        let dns_owned = |f: &&FlowEntry| f.cookie & cookie::OWNER_MASK == dns::COOKIE;
        prop_assert!(a.flows.values().filter(dns_owned).count() == 0);
        let extra: Vec<&FlowEntry> = b.flows.values().filter(dns_owned).collect();
        let with_members = with.networks.values().filter(|n| !n.members.is_empty()).count();
        prop_assert_eq!(extra.len(), 6 * with_members);
        for f in &extra {
            prop_assert_eq!(f.table, table::LEARN);
            // Every DNS flow is keyed by its network's VNI and by "from a local port".
            let vni = dns::cookie_vni(f.cookie).unwrap();
            prop_assert!(f.r#match.fields.contains(&tunnel_id(vni)));
            prop_assert!(f.r#match.fields.contains(&reg(0, 0, Some(1))));
            // Either the punt (meter + controller) or a drop: never an output to a port.
            let punt = vec![
                Instruction::Meter(dns::DNS_METER),
                Instruction::ApplyActions(vec![Action::to_controller()]),
            ];
            prop_assert!(f.instructions.is_empty() || f.instructions == punt);
        }
        let rest: BTreeMap<_, _> = b.flows.iter().filter(|(_, f)| !dns_owned(f)).map(|(k, f)| (k.clone(), f.clone())).collect();
        prop_assert_eq!(&rest, &a.flows);
        prop_assert_eq!(&b.groups, &a.groups);
        prop_assert_eq!(b.meters.contains_key(&dns::DNS_METER), with_members > 0);
        prop_assert!(!limits::without_meters(b).flows.values().any(|f| f.instructions.iter().any(|i| matches!(i, Instruction::Meter(_)))));
    }
}

#[test]
fn dns_cookies_and_macs() {
    assert_eq!(dns::cookie_vni(cookie::NETWORK | 5), None);
    assert_eq!(dns::cookie_vni(cookie::STATIC), None);
    assert_eq!(
        dns::cookie_vni(dns::COOKIE | (u64::from(MAX_VNI) + 1)),
        None
    );
    assert_eq!(dns::cookie_vni(dns::cookie(MAX_VNI)), Some(MAX_VNI));
    let mac = dns::mac(7);
    assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
    assert_ne!(dns::mac(7), dns::mac(8));
    assert!(dns::DNS_METER != limits::CONTROLLER_METER && !ids::is_pod_port(dns::DNS_METER));
}
