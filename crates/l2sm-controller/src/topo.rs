//! The controller's view of the overlay graph: the configured topology (the same file the
//! agents read), resolved against what the connected switches report, gives the live links;
//! the planner turns them and the model into every switch's view.

use super::model::{Model, Network};
use super::{ConnectedSwitch, Direction};
use l2sm_api::topology::{TopoLink, Topology};
use l2sm_pipeline::ids;
use l2sm_pipeline::ids::PortId;
use l2sm_pipeline::plan::{self, End, Link, NetworkSpec};
use l2sm_pipeline::{LinkKind, SwitchView};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A topology with everything needed to find link ports resolved once.
#[derive(Debug, Clone)]
pub struct ResolvedTopology {
    links: Vec<ResolvedLink>,
    /// Nodes given a datapath id in the file (switches not named after their node).
    explicit_dpids: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct ResolvedLink {
    /// Name of the link in metrics and the API (see [`link_id`]).
    pub(crate) id: Box<str>,
    pub(crate) a: (u64, String),
    pub(crate) b: (u64, String),
    pub(crate) kind: LinkKind,
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

/// The name of a configured link: `n1--n2` for a tunnel, `n1:eth1--n2:eth2` for a trunk (two
/// nodes may have several trunks, but one tunnel). A closed set: one per link of the file.
pub fn link_id(l: &TopoLink) -> String {
    match l.kind {
        LinkKind::Tunnel => format!("{}--{}", l.a, l.b),
        LinkKind::Trunk => format!(
            "{}:{}--{}:{}",
            l.a,
            l.interface_a.as_deref().unwrap_or(""),
            l.b,
            l.interface_b.as_deref().unwrap_or("")
        ),
    }
}

impl ResolvedTopology {
    /// Resolves node datapath ids and link port names (DNS lookups happen here, once).
    pub fn new(topo: &Topology) -> anyhow::Result<ResolvedTopology> {
        let nodes: Nodes<'_> = topo.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        // Each node's datapath id once (two hashes), not once per link end.
        let mut dpids: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        let mut dpid = |name: &str| -> u64 {
            match dpids.get(name) {
                Some(d) => *d,
                None => {
                    let d = node_dpid(&nodes, name);
                    if let Some((key, _)) = nodes.get_key_value(name) {
                        dpids.insert(key, d);
                    }
                    d
                }
            }
        };
        let links = topo
            .links
            .iter()
            .map(|l| {
                Ok(ResolvedLink {
                    id: link_id(l).into(),
                    a: (dpid(&l.a), port_name(&nodes, l, true)?),
                    b: (dpid(&l.b), port_name(&nodes, l, false)?),
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

    /// A topology of `links` (tests build graphs without a file).
    #[cfg(test)]
    pub(crate) fn for_tests(links: Vec<ResolvedLink>) -> ResolvedTopology {
        ResolvedTopology {
            links,
            explicit_dpids: BTreeMap::new(),
        }
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
                    id: l.id.clone(),
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    /// Its name (see [`link_id`]).
    pub id: Box<str>,
    /// Ends (port 0 for a switch without a session) and kind.
    pub link: Link,
    /// Both ports exist and are up (or their switch is within its reconnect grace).
    pub ports_up: bool,
    /// LLDP probes arrive both ways (or are not expected yet).
    pub probes_ok: bool,
    /// Usable: ports up and probes arriving.
    pub live: bool,
}

/// What the planner needs of one network: where its members are, its mirror and which
/// members have port security.
pub fn network_spec(model: &Model, n: &Network) -> NetworkSpec {
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
        secured: secured(model, n),
        limits: n.limits().into(),
        dns: n.dns_address(),
        dns6: n.dns_address6(),
    }
}

/// Members of `n` with port security, and what each may send.
fn secured(model: &Model, n: &Network) -> BTreeMap<End, Option<l2sm_pipeline::PortBinding>> {
    n.endpoints
        .iter()
        .filter_map(|ep| {
            let end = End {
                dpid: ep.dpid,
                port: ep.port,
            };
            Some((end, model.member_port_security(n, ep)?))
        })
        .collect()
}

/// The links every view is made of: the live ones (a network may use them) and those whose
/// ports are up but whose probes stopped (a view keeps their probe flows, and nothing else,
/// or their probes could never bring them back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// Live links.
    pub live: Vec<Link>,
    /// Ends (port known) of links with ports up but no probes.
    pub probe_only: Vec<(End, LinkKind)>,
    /// Switches with a session: the ones that get a view.
    pub connected: BTreeSet<u64>,
}

impl Graph {
    /// The graph for `switches` now.
    pub fn of(
        topo: &ResolvedTopology,
        switches: &BTreeMap<u64, ConnectedSwitch>,
        absent_ok: &dyn Fn(u64) -> bool,
        dead: &BTreeSet<Direction>,
    ) -> Graph {
        let report = topo.report(switches, absent_ok, dead);
        Graph {
            live: report.iter().filter(|r| r.live).map(|r| r.link).collect(),
            probe_only: report
                .iter()
                .filter(|r| r.ports_up && !r.live)
                .flat_map(|r| [(r.link.a, r.link.kind), (r.link.b, r.link.kind)])
                .filter(|(end, _)| end.port != 0)
                .collect(),
            connected: switches.keys().copied().collect(),
        }
    }

    /// The link ports of every connected switch.
    fn links_of(&self) -> BTreeMap<u64, BTreeMap<u32, LinkKind>> {
        let mut out: BTreeMap<u64, BTreeMap<u32, LinkKind>> = self
            .connected
            .iter()
            .map(|&d| (d, BTreeMap::new()))
            .collect();
        for l in &self.live {
            for end in [l.a, l.b] {
                if let Some(v) = out.get_mut(&end.dpid) {
                    v.insert(end.port, l.kind);
                }
            }
        }
        for (end, kind) in &self.probe_only {
            if let Some(v) = out.get_mut(&end.dpid) {
                v.entry(end.port).or_insert(*kind);
            }
        }
        out
    }
}

/// Every connected switch's view under a configured topology, computed from scratch (the
/// reference the [`Planner`] is checked against).
pub fn plan_all(
    topo: &ResolvedTopology,
    model: &Model,
    switches: &BTreeMap<u64, ConnectedSwitch>,
    absent_ok: &dyn Fn(u64) -> bool,
    dead: &BTreeSet<Direction>,
) -> BTreeMap<u64, SwitchView> {
    let graph = Graph::of(topo, switches, absent_ok, dead);
    let networks: Vec<NetworkSpec> = model
        .networks
        .values()
        .map(|n| network_spec(model, n))
        .collect();
    let mut views = plan::plan(&graph.connected, &graph.live, &networks);
    for (end, kind) in &graph.probe_only {
        if let Some(view) = views.get_mut(&end.dpid) {
            view.links.entry(end.port).or_insert(*kind);
        }
    }
    views
}

/// Every switch's view, shared: views that did not change from one plan to the next are the
/// same `Arc`, so sessions tell "unchanged" at once.
pub type Plan = BTreeMap<u64, Arc<SwitchView>>;

/// What decides a network's views besides the graph (port security aside): addressing,
/// members, mirror and abuse limits.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NetKey {
    vni: u32,
    vlan: Option<u16>,
    endpoints: Vec<PortId>,
    mirror: Option<PortId>,
    limits: l2sm_pipeline::limits::Limits,
}

impl NetKey {
    fn of(n: &Network) -> NetKey {
        NetKey {
            vni: n.vni,
            vlan: n.vlan,
            endpoints: n.endpoints.clone(),
            mirror: n.mirror_port,
            limits: n.limits().into(),
        }
    }

    fn matches(&self, n: &Network) -> bool {
        self.vni == n.vni
            && self.vlan == n.vlan
            && self.mirror == n.mirror_port
            && self.endpoints == n.endpoints
            && self.limits == l2sm_pipeline::limits::Limits::from(n.limits())
    }
}

/// A network as last planned.
#[derive(Debug, Clone)]
struct Planned {
    key: NetKey,
    secured: BTreeMap<End, Option<l2sm_pipeline::PortBinding>>,
    /// Switches whose view carries it (connected or not).
    carriers: BTreeSet<u64>,
}

/// The networks that changed since the last plan.
#[derive(Debug, Default)]
struct Changes {
    /// Changed or new networks: name, what the planner keeps, what it plans.
    changed: Vec<(String, NetKey, NetworkSpec)>,
    /// Networks gone from the model.
    removed: Vec<String>,
}

/// The planner with memory: it plans again only the networks that changed since its last
/// plan and rebuilds only the views of the switches that carry them, unless the graph changed
/// (links, their liveness, connected switches), when every network is planned again. Gives
/// what [`plan_all`] gives (checked by a property test).
#[derive(Debug, Default)]
pub struct Planner {
    graph: Option<Graph>,
    adjacency: plan::Graph,
    networks: BTreeMap<String, Planned>,
    plan: Arc<Plan>,
}

impl Planner {
    /// Plans the model `read` gives on `graph`. `read` is called once and its guard held only
    /// while the model is compared with the last plan's (no planning under it). With the
    /// graph of the last plan only the networks that changed are planned; with another
    /// graph, every one.
    pub fn plan<M: std::ops::Deref<Target = Model>>(
        &mut self,
        graph: Graph,
        read: impl FnOnce() -> M,
    ) -> Arc<Plan> {
        let full = self.graph.as_ref() != Some(&graph);
        if full {
            self.adjacency = plan::Graph::new(&graph.live);
            self.graph = Some(graph);
            self.networks.clear();
        }
        let changes = {
            let model = read();
            self.changes(&model)
        };
        if full {
            self.plan_everything(changes)
        } else if changes.changed.is_empty() && changes.removed.is_empty() {
            self.plan.clone()
        } else {
            self.plan_changes(changes)
        }
    }

    /// What changed in `model` since the last plan.
    fn changes(&self, model: &Model) -> Changes {
        let mut out = Changes::default();
        for (name, n) in &model.networks {
            match self.networks.get(name) {
                Some(p) if p.key.matches(n) => {
                    let secured = secured(model, n);
                    if secured != p.secured {
                        let mut spec = network_spec(model, n);
                        spec.secured = secured;
                        out.changed.push((name.clone(), p.key.clone(), spec));
                    }
                }
                _ => out
                    .changed
                    .push((name.clone(), NetKey::of(n), network_spec(model, n))),
            }
        }
        out.removed = self
            .networks
            .keys()
            .filter(|k| !model.networks.contains_key(*k))
            .cloned()
            .collect();
        out
    }

    /// The graph is the last plan's: a changed network leaves the views that no longer carry
    /// it and enters, or changes in, those whose part of it differs; only those views are
    /// copied and compared.
    fn plan_changes(&mut self, changes: Changes) -> Arc<Plan> {
        let mut dirty: BTreeMap<u64, SwitchView> = BTreeMap::new();
        fn view<'a>(
            dirty: &'a mut BTreeMap<u64, SwitchView>,
            plan: &Plan,
            d: u64,
        ) -> Option<&'a mut SwitchView> {
            let old = plan.get(&d)?;
            Some(dirty.entry(d).or_insert_with(|| (**old).clone()))
        }
        // Networks gone, and changed ones whose VNI changed (deleted and created again).
        let mut kept: BTreeMap<&str, Planned> = BTreeMap::new();
        let gone = changes
            .removed
            .iter()
            .chain(changes.changed.iter().map(|(name, _, _)| name));
        for name in gone {
            let Some(p) = self.networks.remove(name) else {
                continue;
            };
            let same_vni = changes
                .changed
                .iter()
                .any(|(n, _, spec)| n == name && spec.vni == p.key.vni);
            if same_vni {
                kept.insert(name, p);
                continue;
            }
            for &d in &p.carriers {
                if let Some(v) = view(&mut dirty, &self.plan, d) {
                    v.networks.remove(&p.key.vni);
                }
            }
        }
        for (name, key, spec) in &changes.changed {
            let result = plan::plan_network(&self.adjacency, spec);
            if let Some(p) = kept.get(name.as_str()) {
                for d in p.carriers.iter().filter(|d| !result.contains_key(d)) {
                    if let Some(v) = view(&mut dirty, &self.plan, *d) {
                        v.networks.remove(&spec.vni);
                    }
                }
            }
            for (&d, nv) in &result {
                let current = match dirty.get(&d) {
                    Some(v) => v.networks.get(&spec.vni),
                    None => self.plan.get(&d).and_then(|v| v.networks.get(&spec.vni)),
                };
                if current != Some(nv) {
                    if let Some(v) = view(&mut dirty, &self.plan, d) {
                        v.networks.insert(spec.vni, nv.clone());
                    }
                }
            }
            self.networks.insert(
                name.clone(),
                Planned {
                    key: key.clone(),
                    secured: spec.secured.clone(),
                    carriers: result.into_keys().collect(),
                },
            );
        }
        if dirty.is_empty() {
            return self.plan.clone();
        }
        let mut next = (*self.plan).clone();
        for (d, v) in dirty {
            if next.get(&d).is_some_and(|old| **old != v) {
                next.insert(d, Arc::new(v));
            }
        }
        self.plan = Arc::new(next);
        self.plan.clone()
    }

    /// A new graph: every network planned, every view built again (a view equal to the last
    /// plan's keeps its `Arc`).
    fn plan_everything(&mut self, changes: Changes) -> Arc<Plan> {
        let mut views: BTreeMap<u64, SwitchView> = self
            .graph
            .as_ref()
            .map(Graph::links_of)
            .unwrap_or_default()
            .into_iter()
            .map(|(d, links)| {
                let networks = BTreeMap::new();
                (d, SwitchView { links, networks })
            })
            .collect();
        for (name, key, spec) in changes.changed {
            let result = plan::plan_network(&self.adjacency, &spec);
            let carriers = result.keys().copied().collect();
            for (d, nv) in result {
                if let Some(v) = views.get_mut(&d) {
                    v.networks.insert(spec.vni, nv);
                }
            }
            self.networks.insert(
                name,
                Planned {
                    key,
                    secured: spec.secured,
                    carriers,
                },
            );
        }
        let previous = &self.plan;
        let plan: Plan = views
            .into_iter()
            .map(|(d, v)| match previous.get(&d) {
                Some(old) if **old == v => (d, old.clone()),
                _ => (d, Arc::new(v)),
            })
            .collect();
        self.plan = Arc::new(plan);
        self.plan.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Probes;
    use super::*;
    use l2sm_api::v1::{PortStatusView, SwitchStatus};
    use l2sm_pipeline::ids::PortId;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    /// Two trunk-linked switches 1 and 2 (ports "p1" and "p2"), both connected.
    fn setup(probing_for: Duration) -> (ResolvedTopology, BTreeMap<u64, ConnectedSwitch>) {
        let topo = ResolvedTopology {
            links: vec![ResolvedLink {
                id: "x--y".into(),
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

    /// One step of a random history: a model change or a graph change.
    #[derive(Debug, Clone)]
    enum Step {
        Create(u8, Option<(u64, u32)>),
        Delete(u8),
        /// Deleted and created again at once: same name, another VNI.
        Recreate(u8, Vec<(u64, u32)>),
        Add(u8, Vec<(u64, u32)>),
        Remove(u8, (u64, u32)),
        Move((u64, u32), u8, u8),
        Mirror(u8, Option<(u64, u32)>),
        Owner((u64, u32), Option<bool>, bool),
        Security(u8, bool),
        /// MAC cap and flood meter (0: off).
        Limits(u8, u32, u32),
        Connect(u64, bool),
        PortLive(usize, bool),
        Dead(usize, bool),
        Absent(u64, bool),
    }

    const SWITCHES: u64 = 6;
    /// Ring 1..=6 plus chords 1-3 and 2-5 (trunks; link k has ports 57344+k on both ends).
    const LINKS: [(u64, u64); 8] = [
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 5),
        (5, 6),
        (6, 1),
        (1, 3),
        (2, 5),
    ];

    fn step() -> impl Strategy<Value = Step> {
        let port = (1..=SWITCHES, 1u32..4);
        let net = 0u8..4;
        prop_oneof![
            (net.clone(), proptest::option::of(port.clone())).prop_map(|(n, m)| Step::Create(n, m)),
            net.clone().prop_map(Step::Delete),
            (net.clone(), proptest::collection::vec(port.clone(), 1..4))
                .prop_map(|(n, p)| Step::Recreate(n, p)),
            (net.clone(), proptest::collection::vec(port.clone(), 1..4))
                .prop_map(|(n, p)| Step::Add(n, p)),
            (net.clone(), port.clone()).prop_map(|(n, p)| Step::Remove(n, p)),
            (port.clone(), net.clone(), net.clone()).prop_map(|(p, a, b)| Step::Move(p, a, b)),
            (net.clone(), proptest::option::of(port.clone())).prop_map(|(n, m)| Step::Mirror(n, m)),
            (
                port.clone(),
                proptest::option::of(any::<bool>()),
                any::<bool>()
            )
                .prop_map(|(p, s, mac)| Step::Owner(p, s, mac)),
            (net.clone(), any::<bool>()).prop_map(|(n, on)| Step::Security(n, on)),
            (net.clone(), 0u32..3, 0u32..3).prop_map(|(n, m, f)| Step::Limits(n, m * 8, f * 100)),
            (1..=SWITCHES, any::<bool>()).prop_map(|(d, c)| Step::Connect(d, c)),
            (0..LINKS.len() * 2, any::<bool>()).prop_map(|(i, l)| Step::PortLive(i, l)),
            (0..LINKS.len() * 2, any::<bool>()).prop_map(|(i, d)| Step::Dead(i, d)),
            (1..=SWITCHES, any::<bool>()).prop_map(|(d, a)| Step::Absent(d, a)),
        ]
    }

    /// The switches and graph of a history.
    struct World {
        topo: ResolvedTopology,
        connected: BTreeSet<u64>,
        /// (link, end b?) -> port down.
        down: BTreeSet<usize>,
        dead: BTreeSet<Direction>,
        absent_ok: BTreeSet<u64>,
    }

    impl World {
        fn new() -> World {
            let links = LINKS
                .iter()
                .enumerate()
                .map(|(k, &(a, b))| ResolvedLink {
                    id: format!("t{k}").into(),
                    a: (a, format!("t{k}a")),
                    b: (b, format!("t{k}b")),
                    kind: LinkKind::Trunk,
                })
                .collect();
            World {
                topo: ResolvedTopology {
                    links,
                    explicit_dpids: BTreeMap::new(),
                },
                connected: BTreeSet::new(),
                down: BTreeSet::new(),
                dead: BTreeSet::new(),
                absent_ok: BTreeSet::new(),
            }
        }

        fn end(&self, i: usize) -> End {
            let (k, b) = (i / 2, i % 2 == 1);
            let (x, y) = LINKS[k];
            End {
                dpid: if b { y } else { x },
                port: 57344 + k as u32,
            }
        }

        fn switches(&self) -> BTreeMap<u64, ConnectedSwitch> {
            self.connected
                .iter()
                .map(|&d| {
                    let ports = LINKS
                        .iter()
                        .enumerate()
                        .flat_map(|(k, &(a, b))| [(2 * k, a, "a"), (2 * k + 1, b, "b")])
                        .filter(|(_, dpid, _)| *dpid == d)
                        .map(|(i, _, side)| PortStatusView {
                            number: 57344 + (i / 2) as u32,
                            name: format!("t{}{side}", i / 2),
                            kind: "trunk".into(),
                            live: !self.down.contains(&i),
                        })
                        .collect();
                    let sw = ConnectedSwitch {
                        status: SwitchStatus {
                            id: format!("of:{d:016x}"),
                            peer: String::new(),
                            ports,
                            flows: 0,
                            groups: 0,
                        },
                        session: d,
                        probing_since: None,
                    };
                    (d, sw)
                })
                .collect()
        }
    }

    /// A step whose outcome does not matter.
    fn ok<T>(_: T) -> Result<(), crate::model::ModelError> {
        Ok(())
    }

    fn apply(m: &mut Model, w: &mut World, step: &Step) {
        let name = |n: u8| format!("n{n}");
        let p = |(d, p): (u64, u32)| port(d, p);
        // Refused changes are part of the history too (they must change nothing).
        let _ = match step {
            Step::Create(n, mirror) => m.create_network(&name(*n), mirror.map(p)).map(drop),
            Step::Delete(n) => ok(m.delete_network(&name(*n))),
            Step::Recreate(n, ports) => {
                m.delete_network(&name(*n));
                let ports: Vec<PortId> = ports.iter().copied().map(p).collect();
                m.create_network(&name(*n), None)
                    .and_then(|_| m.add_ports(&name(*n), &ports))
                    .map(drop)
            }
            Step::Add(n, ports) => {
                let ports: Vec<PortId> = ports.iter().copied().map(p).collect();
                m.add_ports(&name(*n), &ports).map(drop)
            }
            Step::Remove(n, x) => m.remove_ports(&name(*n), &[p(*x)]),
            Step::Move(x, a, b) => m.move_port(p(*x), &name(*a), &name(*b)).map(drop),
            Step::Mirror(n, Some(x)) => m.set_mirror_port(&name(*n), p(*x)),
            Step::Mirror(n, None) => m.clear_mirror_port(&name(*n)),
            Step::Owner(x, security, mac) => {
                let owner = crate::model::PortOwner {
                    pod: None,
                    attachment: "a".into(),
                    interface: "net1".into(),
                    mac: mac.then(|| "02:00:00:00:00:01".into()),
                    ips: vec!["10.0.0.1".parse().unwrap()],
                    port_security: *security,
                };
                m.set_owner(p(*x), owner).map(drop)
            }
            Step::Security(n, on) => m.set_port_security(&name(*n), *on),
            Step::Limits(n, mac_limit, flood_pps) => m.set_limits(
                &name(*n),
                l2sm_api::v1::NetworkLimits {
                    mac_limit: *mac_limit,
                    flood_pps: *flood_pps,
                    flood_burst: *flood_pps,
                },
            ),
            Step::Connect(d, true) => ok(w.connected.insert(*d)),
            Step::Connect(d, false) => ok(w.connected.remove(d)),
            Step::PortLive(i, true) => ok(w.down.remove(i)),
            Step::PortLive(i, false) => ok(w.down.insert(*i)),
            Step::Dead(i, dead) => {
                let (a, b) = (w.end(*i), w.end(*i ^ 1));
                if *dead {
                    w.dead.insert((a, b));
                } else {
                    w.dead.remove(&(a, b));
                }
                Ok(())
            }
            Step::Absent(d, true) => ok(w.absent_ok.insert(*d)),
            Step::Absent(d, false) => ok(w.absent_ok.remove(d)),
        };
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// The planner that plans only what changed gives, after every step of a random
        /// history of model and graph changes (planned after each step or after a few),
        /// exactly the views planning everything gives; and a view that did not change keeps
        /// its `Arc`.
        #[test]
        fn planning_what_changed_equals_planning_everything(
            steps in proptest::collection::vec(step(), 1..40),
            every in 1usize..4,
        ) {
            let mut model = Model { next_vni: 1, ..Model::default() };
            let mut world = World::new();
            let mut planner = Planner::default();
            let mut last: Option<Arc<Plan>> = None;
            for (i, step) in steps.iter().enumerate() {
                apply(&mut model, &mut world, step);
                // Several changes between two plans, too (a network deleted and created
                // again under its name, with another VNI, among them).
                if i % every != every - 1 && i != steps.len() - 1 {
                    continue;
                }
                let switches = world.switches();
                let absent = world.absent_ok.clone();
                let absent_ok = move |d: u64| absent.contains(&d);
                let graph = Graph::of(&world.topo, &switches, &absent_ok, &world.dead);
                let plan = planner.plan(graph, || &model);
                let full = plan_all(&world.topo, &model, &switches, &absent_ok, &world.dead);
                let got: BTreeMap<u64, SwitchView> =
                    plan.iter().map(|(d, v)| (*d, (**v).clone())).collect();
                prop_assert_eq!(&got, &full, "after {:?}", step);
                if let Some(last) = &last {
                    for (d, v) in plan.iter() {
                        if let Some(old) = last.get(d) {
                            prop_assert_eq!(Arc::ptr_eq(old, v), **old == **v, "switch {}", d);
                        }
                    }
                }
                last = Some(plan);
            }
        }
    }
}
