//! The controller's view of the overlay graph: the configured topology (the same file the
//! agents read), resolved against what the connected switches report, gives the live links;
//! the planner turns them and the model into every switch's view.

use super::state::Model;
use super::SwitchStatus;
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

/// Nodes by name, built once per resolution (thousands of nodes, thousands of links).
type Nodes<'a> = std::collections::HashMap<&'a str, &'a crate::topology::TopoNode>;

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
            Ok(ids::vxlan_port_name(&crate::topology::resolve_address(
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
        Ok(ResolvedTopology { links })
    }

    /// Links that are up: on a connected switch the port must exist and be up; a switch the
    /// controller has no session with (yet, or for a short while: see `absent_ok`) is given
    /// the benefit of the doubt, so switches reconnecting one after the other after a
    /// controller restart do not make trees flap.
    pub fn live_links(
        &self,
        switches: &BTreeMap<u64, SwitchStatus>,
        absent_ok: &dyn Fn(u64) -> bool,
    ) -> Vec<Link> {
        let find = |(dpid, name): &(u64, String)| -> Option<End> {
            let Some(sw) = switches.get(dpid) else {
                // Port number unknown; only this switch's own view would need it.
                return absent_ok(*dpid).then_some(End {
                    dpid: *dpid,
                    port: 0,
                });
            };
            let port = sw.ports.iter().find(|p| &p.name == name && p.live)?;
            Some(End {
                dpid: *dpid,
                port: port.number,
            })
        };
        self.links
            .iter()
            .filter_map(|l| {
                Some(Link {
                    a: find(&l.a)?,
                    b: find(&l.b)?,
                    kind: l.kind,
                })
            })
            .collect()
    }
}

/// Every connected switch's view under a configured topology.
pub fn plan_all(
    topo: &ResolvedTopology,
    model: &Model,
    switches: &BTreeMap<u64, SwitchStatus>,
    absent_ok: &dyn Fn(u64) -> bool,
) -> BTreeMap<u64, SwitchView> {
    let links = topo.live_links(switches, absent_ok);
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
            }
        })
        .collect();
    let connected: BTreeSet<u64> = switches.keys().copied().collect();
    plan::plan(&connected, &links, &networks)
}
