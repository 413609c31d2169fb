//! The controller's view of the overlay graph: the configured topology (the same file the
//! agents read), resolved against what the connected switches report, gives the live links;
//! the planner turns them and the model into every switch's view.

use super::model::Model;
use super::{ConnectedSwitch, Direction};
use l2sm_api::topology::{TopoLink, Topology};
use l2sm_pipeline::ids;
use l2sm_pipeline::plan::{self, End, Link, NetworkSpec};
use l2sm_pipeline::{LinkKind, SwitchView};
use std::collections::{BTreeMap, BTreeSet};

/// A topology with everything needed to find link ports resolved once.
#[derive(Debug, Clone)]
pub struct ResolvedTopology {
    links: Vec<ResolvedLink>,
    /// Nodes given a datapath id in the file (switches not named after their node).
    explicit_dpids: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
struct ResolvedLink {
    a: (u64, String),
    b: (u64, String),
    kind: LinkKind,
}

/// Nodes by name, built once per resolution (thousands of nodes, thousands of links).
type Nodes<'a> = std::collections::HashMap<&'a str, &'a l2sm_api::topology::TopoNode>;

fn node_dpid(nodes: &Nodes<'_>, name: &str) -> u64 {
    nodes
        .get(name)
        .and_then(|n| n.dpid)
        .unwrap_or_else(|| ids::datapath_id(&ids::switch_name(name, ids::OVERLAY_PROVIDER)))
}

/// Port name at `me`'s end of `link`.
fn port_name(nodes: &Nodes<'_>, link: &TopoLink, me_is_a: bool) -> anyhow::Result<String> {
    match link.kind {
        LinkKind::Trunk => Ok(if me_is_a {
            &link.interface_a
        } else {
            &link.interface_b
        }
        .clone()
        .unwrap_or_default()),
        LinkKind::Tunnel => {
            let other = if me_is_a { &link.b } else { &link.a };
            let addr = nodes
                .get(other.as_str())
                .and_then(|n| n.address.clone())
                .unwrap_or_default();
            Ok(ids::vxlan_port_name(&l2sm_api::topology::resolve_address(
                &addr,
            )?))
        }
    }
}

impl ResolvedTopology {
    /// Resolves node datapath ids and link port names (DNS lookups happen here, once).
    pub fn new(topo: &Topology) -> anyhow::Result<ResolvedTopology> {
        let nodes: Nodes<'_> = topo.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let links = topo
            .links
            .iter()
            .map(|l| {
                Ok(ResolvedLink {
                    a: (node_dpid(&nodes, &l.a), port_name(&nodes, l, true)?),
                    b: (node_dpid(&nodes, &l.b), port_name(&nodes, l, false)?),
                    kind: l.kind,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let explicit_dpids = topo
            .nodes
            .iter()
            .filter_map(|n| Some((n.name.clone(), n.dpid?)))
            .collect();
        Ok(ResolvedTopology {
            links,
            explicit_dpids,
        })
    }

    /// The datapath id the file gives `node`, if it gives one.
    pub fn explicit_dpid(&self, node: &str) -> Option<u64> {
        self.explicit_dpids.get(node).copied()
    }

    /// Links that are up: on a connected switch the port must exist and be up, and LLDP
    /// probes must cross the link both ways (`dead` lists the directions that stopped); a
    /// switch the controller has no session with (yet, or for a short while: see
    /// `absent_ok`) is given the benefit of the doubt, so switches reconnecting one after the
    /// other after a controller restart do not make trees flap.
    #[cfg(test)]
    pub fn live_links(
        &self,
        switches: &BTreeMap<u64, ConnectedSwitch>,
        absent_ok: &dyn Fn(u64) -> bool,
        dead: &BTreeSet<Direction>,
    ) -> Vec<Link> {
        self.report(switches, absent_ok, dead)
            .into_iter()
            .filter(|r| r.live)
            .map(|r| r.link)
            .collect()
    }

    /// Every configured link whose ends can be placed, with its state.
    pub fn report(
        &self,
        switches: &BTreeMap<u64, ConnectedSwitch>,
        absent_ok: &dyn Fn(u64) -> bool,
        dead: &BTreeSet<Direction>,
    ) -> Vec<LinkReport> {
        // An end: its port number (0 while the switch has no session) and whether it is up.
        let find = |(dpid, name): &(u64, String)| -> Option<(End, bool)> {
            let Some(sw) = switches.get(dpid) else {
                // Port number unknown; only this switch's own view would need it.
                let end = End {
                    dpid: *dpid,
                    port: 0,
                };
                return Some((end, absent_ok(*dpid)));
            };
            let port = sw.status.ports.iter().find(|p| &p.name == name)?;
            Some((
                End {
                    dpid: *dpid,
                    port: port.number,
                },
                port.live,
            ))
        };
        self.links
            .iter()
            .filter_map(|l| {
                let ((a, a_up), (b, b_up)) = (find(&l.a)?, find(&l.b)?);
                let probes_ok = !dead.contains(&(a, b)) && !dead.contains(&(b, a));
                Some(LinkReport {
                    link: Link { a, b, kind: l.kind },
                    ports_up: a_up && b_up,
                    probes_ok,
                    live: a_up && b_up && probes_ok,
                })
            })
            .collect()
    }

    /// Directions whose probes are expected: both switches connected, both ports up.
    pub fn probed_directions(&self, switches: &BTreeMap<u64, ConnectedSwitch>) -> Vec<Direction> {
        self.report(switches, &|_| false, &BTreeSet::new())
            .into_iter()
            .filter(|r| r.ports_up && r.link.a.port != 0 && r.link.b.port != 0)
            .flat_map(|r| [(r.link.a, r.link.b), (r.link.b, r.link.a)])
            .collect()
    }
}

/// A configured link and its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkReport {
    /// Ends (port 0 for a switch without a session) and kind.
    pub link: Link,
    /// Both ports exist and are up (or their switch is within its reconnect grace).
    pub ports_up: bool,
    /// LLDP probes arrive both ways (or are not expected yet).
    pub probes_ok: bool,
    /// Usable: ports up and probes arriving.
    pub live: bool,
}

/// Every connected switch's view under a configured topology.
pub fn plan_all(
    topo: &ResolvedTopology,
    model: &Model,
    switches: &BTreeMap<u64, ConnectedSwitch>,
    absent_ok: &dyn Fn(u64) -> bool,
    dead: &BTreeSet<Direction>,
) -> BTreeMap<u64, SwitchView> {
    let report = topo.report(switches, absent_ok, dead);
    let links: Vec<Link> = report.iter().filter(|r| r.live).map(|r| r.link).collect();
    let networks: Vec<NetworkSpec> = model
        .networks
        .values()
        .map(|n| {
            let mut members: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
            for ep in &n.endpoints {
                members.entry(ep.dpid).or_default().insert(ep.port);
            }
            let secured = n
                .endpoints
                .iter()
                .filter_map(|ep| {
                    let end = End {
                        dpid: ep.dpid,
                        port: ep.port,
                    };
                    Some((end, model.member_port_security(n, ep)?))
                })
                .collect();
            NetworkSpec {
                vni: n.vni,
                vlan: n.vlan,
                members,
                mirror: n.mirror_port.map(|p| End {
                    dpid: p.dpid,
                    port: p.port,
                }),
                secured,
                limits: n.limits().into(),
            }
        })
        .collect();
    let connected: BTreeSet<u64> = switches.keys().copied().collect();
    let mut views = plan::plan(&connected, &links, &networks);
    // A link that is down for lack of probes still needs its probe flows (and nothing else:
    // no network uses it), or its probes could never bring it back.
    for r in report.iter().filter(|r| r.ports_up && !r.live) {
        for end in [r.link.a, r.link.b] {
            if let Some(view) = views.get_mut(&end.dpid).filter(|_| end.port != 0) {
                view.links.entry(end.port).or_insert(r.link.kind);
            }
        }
    }
    views
}

#[cfg(test)]
mod tests {
    use super::super::Probes;
    use super::*;
    use l2sm_api::v1::{PortStatusView, SwitchStatus};
    use l2sm_pipeline::ids::PortId;
    use std::time::{Duration, Instant};

    /// Two trunk-linked switches 1 and 2 (ports "p1" and "p2"), both connected.
    fn setup(probing_for: Duration) -> (ResolvedTopology, BTreeMap<u64, ConnectedSwitch>) {
        let topo = ResolvedTopology {
            links: vec![ResolvedLink {
                a: (1, "p1".into()),
                b: (2, "p2".into()),
                kind: LinkKind::Trunk,
            }],
            explicit_dpids: BTreeMap::new(),
        };
        let switch = |dpid: u64, name: &str, number: u32| ConnectedSwitch {
            status: SwitchStatus {
                id: format!("of:{dpid:016x}"),
                peer: String::new(),
                ports: vec![PortStatusView {
                    number,
                    name: name.into(),
                    kind: "trunk".into(),
                    live: true,
                }],
                flows: 0,
                groups: 0,
            },
            session: 1,
            probing_since: Instant::now().checked_sub(probing_for),
        };
        let switches = [(1, switch(1, "p1", 57344)), (2, switch(2, "p2", 57345))].into();
        (topo, switches)
    }

    const A: End = End {
        dpid: 1,
        port: 57344,
    };
    const B: End = End {
        dpid: 2,
        port: 57345,
    };

    #[test]
    fn a_link_needs_probes_both_ways_once_switches_had_time_to_send_them() {
        let probes = Probes::new(Duration::from_millis(100));
        // Just connected: no probe yet, but nothing could have arrived: alive.
        let (topo, young) = setup(Duration::ZERO);
        let dirs = topo.probed_directions(&young);
        assert_eq!(dirs, vec![(A, B), (B, A)]);
        assert_eq!(probes.evaluate(&dirs, &young), None);
        // Connected for long, no probes at all: both directions dead, the link is not live.
        let (topo, old) = setup(Duration::from_secs(5));
        let dead = probes.evaluate(&dirs, &old).expect("a change");
        assert_eq!(dead.len(), 2);
        probes.publish(dead.clone());
        assert!(topo.live_links(&old, &|_| true, &dead).is_empty());
        // Probes one way only: still down.
        probes.heard((A, B));
        let dead = probes.evaluate(&dirs, &old).expect("a change");
        assert_eq!(dead, [(B, A)].into());
        probes.publish(dead.clone());
        let report = topo.report(&old, &|_| true, &dead);
        assert!(report[0].ports_up && !report[0].probes_ok && !report[0].live);
        // Both ways: live again.
        probes.heard((B, A));
        let dead = probes.evaluate(&dirs, &old).expect("a change");
        assert!(dead.is_empty());
        probes.publish(dead.clone());
        assert_eq!(topo.live_links(&old, &|_| true, &dead).len(), 1);
        assert_eq!(probes.evaluate(&dirs, &old), None, "no change, no re-plan");
        // Silence for longer than the dead time.
        std::thread::sleep(probes.dead_after() + Duration::from_millis(20));
        assert_eq!(probes.evaluate(&dirs, &old).map(|d| d.len()), Some(2));
    }

    #[test]
    fn a_port_that_is_down_is_not_probed_and_not_live() {
        let (topo, mut switches) = setup(Duration::from_secs(5));
        if let Some(s) = switches.get_mut(&2) {
            s.status.ports[0].live = false;
        }
        assert!(topo.probed_directions(&switches).is_empty());
        let report = topo.report(&switches, &|_| true, &BTreeSet::new());
        assert!(!report[0].ports_up && !report[0].live);
    }

    fn port(dpid: u64, port: u32) -> PortId {
        PortId { dpid, port }
    }

    #[test]
    fn mirror_ports_are_planned_and_never_members_anywhere() {
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        m.create_network("blue", None).unwrap();
        m.create_network("red", None).unwrap();
        m.add_ports("blue", &[port(1, 1), port(2, 1)]).unwrap();
        m.set_mirror_port("blue", port(3, 9)).unwrap();
        // The mirror of blue can join no network, nor mirror another one.
        assert!(m.add_ports("red", &[port(3, 9)]).is_err());
        assert!(m.set_mirror_port("red", port(3, 9)).is_err());
        assert!(m.set_mirror_port("blue", port(3, 9)).is_ok(), "idempotent");
        // Without a topology: the mirror's switch carries blue for the mirror alone, members'
        // switches copy into every tunnel.
        let links: BTreeMap<u32, LinkKind> =
            [(61440, LinkKind::Tunnel), (57344, LinkKind::Trunk)].into();
        let v3 = m.switch_view(3, links.clone());
        let n3 = &v3.networks[&m.networks["blue"].vni];
        assert!(n3.members.is_empty());
        assert_eq!(n3.mirror.as_ref().and_then(|m| m.port), Some(9));
        let v1 = m.switch_view(1, links);
        let mirror = v1.networks[&1].mirror.clone().unwrap();
        assert_eq!((mirror.port, mirror.toward), (None, [61440].into()));
        m.clear_mirror_port("blue").unwrap();
        assert!(m.switch_view(3, BTreeMap::new()).networks.is_empty());
        assert!(m.clear_mirror_port("nope").is_err());
    }
}
