//! Model-based tests: a small interpreter runs frames through the compiled tables (without the
//! learned entries, i.e. the worst case where everything floods) and checks isolation and split
//! horizon on random switch views.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Frame {
    in_port: u32,
    tunnel_id: u64,
    eth_src: [u8; 6],
}

struct Packet {
    in_port: u32,
    tunnel_id: u64,
    reg0: u32,
    eth_src: [u8; 6],
}

fn matches(m: &Match, pkt: &Packet) -> bool {
    m.fields.iter().all(|f| match f {
        OxmField::InPort(p) => *p == pkt.in_port,
        OxmField::TunnelId { value, mask } => {
            let mask = mask.unwrap_or(u64::MAX);
            pkt.tunnel_id & mask == value & mask
        }
        OxmField::NxReg {
            idx: 0,
            value,
            mask,
        } => {
            let mask = mask.unwrap_or(u32::MAX);
            pkt.reg0 & mask == value & mask
        }
        OxmField::EthSrc { value, mask } => {
            let mask = mask.unwrap_or([0xff; 6]);
            (0..6).all(|i| pkt.eth_src[i] & mask[i] == value[i] & mask[i])
        }
        other => panic!("interpreter does not know {other:?}"),
    })
}

/// Returns the ports a frame leaves through (empty = dropped).
fn run(p: &SwitchPipeline, frame: Frame) -> BTreeSet<u32> {
    let mut pkt = Packet {
        in_port: frame.in_port,
        tunnel_id: frame.tunnel_id,
        reg0: 0,
        eth_src: frame.eth_src,
    };
    let mut out = BTreeSet::new();
    let mut table_id = 0u8;
    loop {
        let best = p
            .flows
            .values()
            .filter(|f| f.table == table_id && matches(&f.r#match, &pkt))
            .max_by_key(|f| f.priority);
        let Some(flow) = best else { return out };
        let mut next = None;
        for ins in &flow.instructions {
            match ins {
                Instruction::ApplyActions(actions) => {
                    for a in actions {
                        match a {
                            Action::SetField(OxmField::TunnelId { value, .. }) => {
                                pkt.tunnel_id = *value
                            }
                            Action::SetField(OxmField::NxReg { idx: 0, value, .. }) => {
                                pkt.reg0 = *value
                            }
                            Action::NxLearn(_) => {}
                            Action::Group(g) => {
                                for &port in &p.groups[g].outputs {
                                    if port != pkt.in_port {
                                        out.insert(port);
                                    }
                                }
                            }
                            Action::Output { port, .. } => {
                                out.insert(*port);
                            }
                            other => panic!("interpreter does not know {other:?}"),
                        }
                    }
                }
                Instruction::GotoTable(t) => next = Some(*t),
                other => panic!("interpreter does not know {other:?}"),
            }
        }
        match next {
            Some(t) => table_id = t,
            None => return out,
        }
    }
}

/// Random views: up to 4 tunnels (ports 1000+), up to 4 networks with disjoint member ports.
fn view_strategy() -> impl Strategy<Value = SwitchView> {
    (
        prop::collection::btree_set(1000u32..1004, 0..4),
        prop::collection::vec(
            (1u32..50, prop::collection::btree_set(1u32..20, 0..5)),
            0..4,
        ),
    )
        .prop_map(|(tunnel_ports, nets)| {
            let mut used = BTreeSet::new();
            let mut networks = BTreeMap::new();
            for (vni, ports) in nets {
                let ports: BTreeSet<u32> = ports.into_iter().filter(|p| used.insert(*p)).collect();
                if !ports.is_empty() {
                    networks.entry(vni).or_insert(ports);
                }
            }
            SwitchView {
                tunnel_ports,
                networks,
            }
        })
}

fn member_network(view: &SwitchView, port: u32) -> Option<u32> {
    view.networks
        .iter()
        .find(|(_, m)| m.contains(&port))
        .map(|(v, _)| *v)
}

const UNICAST_SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];

proptest! {
    #[test]
    fn local_frames_flood_within_their_network(view in view_strategy(), port in 1u32..20) {
        let p = compile(&view);
        let out = run(&p, Frame { in_port: port, tunnel_id: 0, eth_src: UNICAST_SRC });
        match member_network(&view, port) {
            None => prop_assert!(out.is_empty(), "non-member port {port} forwarded to {out:?}"),
            Some(vni) => {
                let mut expected: BTreeSet<u32> = view.networks[&vni].clone();
                expected.remove(&port);
                expected.extend(view.tunnel_ports.iter().copied());
                prop_assert_eq!(out, expected);
            }
        }
    }

    #[test]
    fn tunnel_frames_reach_only_local_members_of_their_vni(
        view in view_strategy(), tunnel in 1000u32..1004, vni in 1u64..50
    ) {
        let p = compile(&view);
        let out = run(&p, Frame { in_port: tunnel, tunnel_id: vni, eth_src: UNICAST_SRC });
        let carried = u32::try_from(vni).ok().and_then(|v| view.networks.get(&v));
        match (view.tunnel_ports.contains(&tunnel), carried) {
            (true, Some(members)) => prop_assert_eq!(&out, members),
            _ => prop_assert!(out.is_empty(), "unexpected forwarding {out:?}"),
        }
        prop_assert!(out.iter().all(|p| !view.tunnel_ports.contains(p)), "split horizon broken");
    }

    #[test]
    fn multicast_sources_are_dropped(view in view_strategy(), port in 1u32..20) {
        let p = compile(&view);
        let out = run(&p, Frame { in_port: port, tunnel_id: 0, eth_src: [3, 0, 0, 0, 0, 1] });
        prop_assert!(out.is_empty());
    }

    #[test]
    fn diff_turns_old_into_new(a in view_strategy(), b in view_strategy()) {
        let (old, new) = (compile(&a), compile(&b));
        let mut state = old.clone();
        for msg in diff(&old, &new) {
            match msg {
                Message::FlowMod(fm) => {
                    let key_of = |fm: &FlowMod| FlowEntry {
                        table: fm.table_id,
                        priority: fm.priority,
                        cookie: 0,
                        r#match: fm.r#match.clone(),
                        instructions: Vec::new(),
                    }.key();
                    match fm.command {
                        FlowModCommand::Add => {
                            state.flows.insert(key_of(&fm), FlowEntry {
                                table: fm.table_id,
                                priority: fm.priority,
                                cookie: fm.cookie,
                                r#match: fm.r#match.clone(),
                                instructions: fm.instructions.clone(),
                            });
                        }
                        FlowModCommand::DeleteStrict => {
                            prop_assert!(state.flows.remove(&key_of(&fm)).is_some());
                        }
                        other => prop_assert!(false, "unexpected command {other:?}"),
                    }
                }
                Message::GroupMod(gm) => match gm.command {
                    GroupModCommand::Add | GroupModCommand::Modify => {
                        let outputs = gm.buckets.iter().map(|b| match b.actions[..] {
                            [Action::Output { port, .. }] => port,
                            _ => panic!("unexpected bucket"),
                        }).collect();
                        state.groups.insert(gm.group_id, GroupEntry { group_id: gm.group_id, outputs });
                    }
                    GroupModCommand::Delete => {
                        prop_assert!(state.groups.remove(&gm.group_id).is_some());
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

#[test]
fn one_member_change_touches_one_flow_and_the_groups_of_its_network() {
    let mut view = SwitchView {
        tunnel_ports: [1001, 1002].into(),
        networks: [(1, [1, 2].into()), (2, [3].into())].into(),
    };
    let before = compile(&view);
    view.networks.get_mut(&1).map(|m| m.insert(4));
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
    assert_eq!(flows, 1);
    assert_eq!(groups, vec![flood_local_group(1), flood_remote_group(1)]);
}

#[test]
fn group_ids_do_not_collide_and_stay_below_the_reserved_range() {
    assert_ne!(flood_local_group(1), flood_remote_group(1));
    assert_ne!(flood_remote_group(1), flood_local_group(2));
    assert!(flood_remote_group(MAX_VNI) <= l2sm_ofp::group::MAX);
}
