//! The abuse limits of [`crate::limits`], through the interpreter of the parent module.

use super::*;
use crate::limits::{Limits, CONTROLLER_METER};

fn local_frame(port: u32) -> Frame {
    Frame {
        in_port: port,
        tunnel_id: 0,
        vlan: None,
        eth_src: UNICAST_SRC,
    }
}

/// The learn action of the table-1 rule of `port` (the one matching only `in_port`).
fn learn_of(p: &SwitchPipeline, port: u32) -> Action {
    let rule = p
        .flows
        .values()
        .find(|f| f.table == table::LEARN && f.r#match.fields == [OxmField::InPort(port)])
        .expect("a learn rule for the port");
    match &rule.instructions[0] {
        Instruction::ApplyActions(a) => a[0].clone(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn pod_ports_learn_under_their_networks_cap_and_links_learn_freely() {
    let mut net = mesh(&[1, 2], &[61440]);
    net.limits = Limits {
        mac_limit: 17,
        ..Limits::default()
    };
    let view = SwitchView {
        links: [(61440, LinkKind::Tunnel)].into(),
        networks: [(5, net)].into(),
    };
    let p = compile(&view);
    for port in [1, 2] {
        let Action::NxLearn2(l) = learn_of(&p, port) else {
            panic!("pod port {port} learns without a cap")
        };
        assert_eq!(l.limit, 17);
        assert_eq!(l.learn.cookie, cookie::LEARNED | u64::from(port));
        assert_eq!(
            l.result_dst,
            Some(l2sm_ofp::NxmFieldRef::new(l2sm_ofp::nxm::reg(2), 0))
        );
    }
    assert!(matches!(learn_of(&p, 61440), Action::NxLearn(_)));
    // Without a cap, the plain learn action (and no excess flow).
    let mut off = view.clone();
    off.networks.get_mut(&5).unwrap().limits = Limits::OFF;
    let p = compile(&off);
    assert!(matches!(learn_of(&p, 1), Action::NxLearn(_)));
    assert!(p
        .flows
        .values()
        .all(|f| f.cookie & cookie::OWNER_MASK != cookie::EXCESS));
    assert_eq!(
        p.meters.keys().copied().collect::<Vec<_>>(),
        [CONTROLLER_METER]
    );
}

proptest! {
    /// A frame whose source the cap refused goes nowhere, and the one flow that counts it is
    /// its port's excess flow; with the source learned, the same frame floods as before.
    #[test]
    fn a_source_over_the_cap_is_dropped_and_counted_on_its_port(view in view_strategy(), port in 1u32..20) {
        let p = compile(&view);
        let Some(net) = view.networks.values().find(|n| n.members.contains(&port)) else {
            return Ok(());
        };
        let (out, trace) = run_traced(&p, local_frame(port), 0x0800, false);
        if net.limits.mac_limit == 0 {
            prop_assert_eq!(out, run_full(&p, local_frame(port), 0x0800));
            prop_assert!(trace.cookies.iter().all(|c| c & cookie::OWNER_MASK != cookie::EXCESS));
        } else {
            prop_assert!(out.is_empty(), "over the cap but sent: {:?}", out);
            prop_assert_eq!(trace.cookies.last().copied(), Some(cookie::EXCESS | u64::from(port)));
        }
        let (_, trace) = run_traced(&p, local_frame(port), 0x0800, true);
        prop_assert!(trace.cookies.iter().all(|c| c & cookie::OWNER_MASK != cookie::EXCESS));
    }

    /// Floods from a pod port pass exactly its own meter (when its network has one); frames
    /// from links and known unicast pass none.
    #[test]
    fn floods_from_pod_ports_pass_their_port_meter_only(view in view_strategy(), port in 1u32..20, link in 0usize..7) {
        let p = compile(&view);
        if let Some(net) = view.networks.values().find(|n| n.members.contains(&port)) {
            let (_, trace) = run_traced(&p, local_frame(port), 0x0800, true);
            let expected: Vec<u32> = if net.limits.flood_pps == 0 { vec![] } else { vec![limits::port_meter(port)] };
            prop_assert_eq!(trace.meters, expected);
            if net.limits.flood_pps != 0 {
                let m = &p.meters[&limits::port_meter(port)];
                prop_assert_eq!((m.rate, m.burst), (net.limits.flood_pps, net.limits.flood_burst));
            }
            // Known unicast: the destination was learned behind another member.
            if let Some((&vni, other)) = view.networks.iter().find(|(_, n)| n.members.contains(&port))
                .and_then(|(v, n)| n.members.iter().find(|&&o| o != port).map(|o| (v, o)))
            {
                let mut q = p.clone();
                learn(&mut q, vni, *other, false);
                let (out, trace) = run_traced(&q, local_frame(port), 0x0800, true);
                prop_assert_eq!(out.len(), 1);
                prop_assert!(trace.meters.is_empty(), "known unicast was metered");
            }
        }
        let links: Vec<u32> = view.links.keys().copied().collect();
        if let Some(&lp) = links.get(link) {
            for (&vni, net) in &view.networks {
                let (_, trace) = run_traced(&p, link_frame(&view, lp, vni, Some(net)), 0x0800, true);
                prop_assert!(trace.meters.is_empty(), "a frame from link {} was metered", lp);
            }
        }
    }

    /// Every flow that sends to the controller goes through the controller meter, which
    /// exists; meter ids are pod ports or the controller meter, never both.
    #[test]
    fn everything_sent_to_the_controller_is_metered(view in view_strategy()) {
        let p = compile(&view);
        prop_assert!(p.meters.contains_key(&CONTROLLER_METER));
        prop_assert!(!ids::is_pod_port(CONTROLLER_METER));
        for f in p.flows.values() {
            let punts = f.instructions.iter().any(|i| matches!(i,
                Instruction::ApplyActions(a) if a.iter().any(|a| matches!(a,
                    Action::Output { port, .. } if *port == l2sm_ofp::port::CONTROLLER))));
            if punts {
                prop_assert_eq!(f.instructions.first(), Some(&Instruction::Meter(CONTROLLER_METER)));
            }
        }
        for &id in p.meters.keys() {
            prop_assert!(id == CONTROLLER_METER || limits::meter_port(id) == Some(id));
        }
    }
}

#[test]
fn a_new_rate_only_modifies_meters() {
    let view = SwitchView {
        links: [(61440, LinkKind::Tunnel)].into(),
        networks: [(1, mesh(&[1, 2], &[61440])), (2, mesh(&[3], &[61440]))].into(),
    };
    let mut faster = view.clone();
    faster.networks.get_mut(&1).unwrap().limits.flood_pps = 5000;
    let msgs = diff(&compile(&view), &compile(&faster));
    let got: Vec<(u32, MeterModCommand, u32)> = msgs
        .iter()
        .map(|m| match m {
            Message::MeterMod(mm) => match mm.bands[..] {
                [l2sm_ofp::MeterBand::Drop { rate, .. }] => (mm.meter_id, mm.command, rate),
                _ => panic!("{mm:?}"),
            },
            other => panic!("not a meter change: {other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, MeterModCommand::Modify, 5000),
            (2, MeterModCommand::Modify, 5000)
        ]
    );
    // Turning the meter off removes the metered flood flows, then the meters.
    let mut off = view.clone();
    off.networks.get_mut(&1).unwrap().limits.flood_pps = 0;
    let msgs = diff(&compile(&view), &compile(&off));
    let kinds: Vec<String> = msgs
        .iter()
        .map(|m| match m {
            Message::FlowMod(f) => format!("flow {:?}", f.command),
            Message::MeterMod(mm) => format!("meter {:?} {}", mm.command, mm.meter_id),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "flow DeleteStrict",
            "flow DeleteStrict",
            "meter Delete 1",
            "meter Delete 2"
        ]
    );
}

#[test]
fn a_switch_without_meters_gets_the_same_flows_without_meter_instructions() {
    let view = SwitchView {
        links: [(61440, LinkKind::Tunnel)].into(),
        networks: [(1, mesh(&[1, 2], &[61440]))].into(),
    };
    let p = compile(&view);
    let bare = limits::without_meters(p.clone());
    assert!(bare.meters.is_empty());
    assert_eq!(bare.flows.len(), p.flows.len());
    assert!(bare.flows.values().all(|f| !f
        .instructions
        .iter()
        .any(|i| matches!(i, Instruction::Meter(_)))));
    // Floods still reach the members.
    let out = run(&bare, local_frame(1));
    assert_eq!(out, [(2, None), (61440, None)].into());
}
