//! The controller's view of the overlay graph: the configured topology (the same file the
//! agents read), resolved against what the connected switches report, gives the live links;
//! the planner turns them and the model into every switch's view.

use super::state::Model;
use super::{Direction, SwitchStatus};
use crate::topology::{TopoLink, Topology};
use l2sm_pipeline::ids;
use l2sm_pipeline::plan::{self, End, Link, NetworkSpec};
use l2sm_pipeline::{LinkKind, SwitchView};
use std::collections::{BTreeMap, BTreeSet};

/// A topology with everything needed to find link ports resolved once.
#[derive(Debug, Clone)]
pub struct ResolvedTopology {
    links: Vec<ResolvedLink>,
}

#[derive(Debug, Clone)]
struct ResolvedLink {
    a: (u64, String),
    b: (u64, String),
    kind: LinkKind,
}

fn node_dpid(topo: &Topology, name: &str) -> u64 {
    topo.node(name)
        .and_then(|n| n.dpid)
        .unwrap_or_else(|| ids::datapath_id(&ids::switch_name(name, ids::OVERLAY_PROVIDER)))
}

/// Port name at `me`'s end of `link`.
fn port_name(topo: &Topology, link: &TopoLink, me_is_a: bool) -> anyhow::Result<String> {
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
            let addr = topo
                .node(other)
                .and_then(|n| n.address.clone())
                .unwrap_or_default();
            Ok(ids::vxlan_port_name(&crate::topology::resolve_address(
                &addr,
            )?))
        }
    }
}

impl ResolvedTopology {
    /// Resolves node datapath ids and link port names (DNS lookups happen here, once).
    pub fn new(topo: &Topology) -> anyhow::Result<ResolvedTopology> {
        let links = topo
            .links
            .iter()
            .map(|l| {
                Ok(ResolvedLink {
                    a: (node_dpid(topo, &l.a), port_name(topo, l, true)?),
                    b: (node_dpid(topo, &l.b), port_name(topo, l, false)?),
                    kind: l.kind,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(ResolvedTopology { links })
    }

    /// Links that are up: on a connected switch the port must exist and be up, and LLDP
    /// probes must cross the link both ways (`dead` lists the directions that stopped); a
    /// switch the controller has no session with (yet, or for a short while: see
    /// `absent_ok`) is given the benefit of the doubt, so switches reconnecting one after the
    /// other after a controller restart do not make trees flap.
    pub fn live_links(
        &self,
        switches: &BTreeMap<u64, SwitchStatus>,
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
        switches: &BTreeMap<u64, SwitchStatus>,
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
            let port = sw.ports.iter().find(|p| &p.name == name)?;
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
    pub fn probed_directions(&self, switches: &BTreeMap<u64, SwitchStatus>) -> Vec<Direction> {
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
    switches: &BTreeMap<u64, SwitchStatus>,
    absent_ok: &dyn Fn(u64) -> bool,
    dead: &BTreeSet<Direction>,
) -> BTreeMap<u64, SwitchView> {
    let links = topo.live_links(switches, absent_ok, dead);
    let networks: Vec<NetworkSpec> = model
        .networks
        .values()
        .map(|n| {
            let mut members: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
            for ep in &n.endpoints {
                members.entry(ep.dpid).or_default().insert(ep.port);
            }
            NetworkSpec {
                vni: n.vni,
                vlan: n.vlan,
                members,
                mirror: n.mirror_port.map(|p| End {
                    dpid: p.dpid,
                    port: p.port,
                }),
            }
        })
        .collect();
    let connected: BTreeSet<u64> = switches.keys().copied().collect();
    plan::plan(&connected, &links, &networks)
}
