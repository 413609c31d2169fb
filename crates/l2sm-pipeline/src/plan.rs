//! Which links each network uses, for every switch at once: the input of [`crate::compile`].
//!
//! A network whose switches are all directly linked to each other floods over those links
//! with split horizon (mesh). Otherwise it floods over one spanning tree: breadth-first from
//! the smallest datapath id that has members, over live links only, pruned to the branches
//! that lead to members. Trees are recomputed from scratch whenever the graph changes; they are
//! deterministic, so networks the change does not touch keep exactly the same tree (and the
//! switches get no message for them).

use crate::{FloodMode, LinkKind, MirrorView, NetworkView, PortBinding, SwitchView};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// One end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct End {
    /// Switch.
    pub dpid: u64,
    /// Port on that switch.
    pub port: u32,
}

/// A live link between two switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// One end.
    pub a: End,
    /// The other end.
    pub b: End,
    /// Tunnel or trunk.
    pub kind: LinkKind,
}

/// A network and where its members are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    /// VNI.
    pub vni: u32,
    /// 802.1Q id on trunks.
    pub vlan: Option<u16>,
    /// Member ports per switch.
    pub members: BTreeMap<u64, BTreeSet<u32>>,
    /// The mirror port, if any: its switch joins the network's mesh or tree as a leaf.
    pub mirror: Option<End>,
    /// Members with port security and what each may send (see [`NetworkView::secured`]).
    pub secured: BTreeMap<End, Option<PortBinding>>,
    /// MAC cap and flood meter of its pod ports.
    pub limits: crate::limits::Limits,
    /// Its DNS address (see [`NetworkView::dns`]).
    pub dns: Option<std::net::Ipv4Addr>,
    /// Its IPv6 DNS address (see [`NetworkView::dns6`]).
    pub dns6: Option<std::net::Ipv6Addr>,
}

/// Adjacency: switch -> neighbour -> (local port, remote port), lowest port first.
type Adjacency = BTreeMap<u64, BTreeMap<u64, (u32, u32)>>;

/// The live links as a graph, built once for any number of [`plan_network`] calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph(Adjacency);

impl Graph {
    /// The graph of `links` (a link from a switch to itself is ignored; between two switches
    /// the lowest local port wins).
    pub fn new(links: &[Link]) -> Graph {
        Graph(graph(links))
    }
}

fn graph(links: &[Link]) -> Adjacency {
    let mut g: Adjacency = BTreeMap::new();
    for l in links {
        if l.a.dpid == l.b.dpid {
            continue;
        }
        for (x, y) in [(l.a, l.b), (l.b, l.a)] {
            let entry = g
                .entry(x.dpid)
                .or_default()
                .entry(y.dpid)
                .or_insert((x.port, y.port));
            if x.port < entry.0 {
                *entry = (x.port, y.port);
            }
        }
    }
    g
}

/// Tree edges (child, parent) connecting every member switch reachable from the others.
fn tree_edges(g: &Adjacency, members: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut edges = Vec::new();
    let mut covered: BTreeSet<u64> = BTreeSet::new();
    for &root in members {
        if covered.contains(&root) {
            continue;
        }
        // Lookups only (the order comes from the queue and the sorted adjacency): hashed.
        let mut parent: HashMap<u64, u64> = HashMap::new();
        let mut seen: HashSet<u64> = [root].into();
        let mut queue: VecDeque<u64> = [root].into();
        while let Some(x) = queue.pop_front() {
            for &y in g.get(&x).into_iter().flat_map(|n| n.keys()) {
                if seen.insert(y) {
                    parent.insert(y, x);
                    queue.push_back(y);
                }
            }
        }
        // Keep only the paths from the root to members.
        let mut kept: BTreeSet<u64> = [root].into();
        for &m in members.iter().filter(|m| seen.contains(m)) {
            let mut x = m;
            while kept.insert(x) {
                let Some(&p) = parent.get(&x) else { break };
                edges.push((x, p));
                x = p;
            }
        }
        covered.extend(members.iter().filter(|m| seen.contains(m)));
    }
    edges
}

/// Where each switch sends mirror copies: the mirror's switch to the port itself; in a mesh the
/// others over their direct link; in a tree every switch towards its parent, the tree being
/// walked from the mirror's switch.
fn mirror_views(
    used: &BTreeMap<u64, BTreeMap<u64, u32>>,
    mirror: End,
    mode: FloodMode,
) -> BTreeMap<u64, MirrorView> {
    let mut views: BTreeMap<u64, MirrorView> = BTreeMap::new();
    views.insert(
        mirror.dpid,
        MirrorView {
            port: Some(mirror.port),
            toward: BTreeSet::new(),
        },
    );
    match mode {
        FloodMode::Mesh => {
            for (&d, neighbours) in used {
                if let Some(&port) = neighbours.get(&mirror.dpid) {
                    if d != mirror.dpid {
                        views.entry(d).or_default().toward.insert(port);
                    }
                }
            }
        }
        FloodMode::Tree => {
            let mut queue: VecDeque<u64> = [mirror.dpid].into();
            let mut seen: BTreeSet<u64> = [mirror.dpid].into();
            while let Some(x) = queue.pop_front() {
                for (&y, _) in used.get(&x).into_iter().flatten() {
                    if seen.insert(y) {
                        if let Some(&port) = used.get(&y).and_then(|n| n.get(&x)) {
                            views.entry(y).or_default().toward.insert(port);
                        }
                        queue.push_back(y);
                    }
                }
            }
        }
    }
    views
}

/// Computes every switch's view. `switches` are the switches to produce views for (usually
/// the connected ones); `links` the live links among them.
pub fn plan(
    switches: &BTreeSet<u64>,
    links: &[Link],
    networks: &[NetworkSpec],
) -> BTreeMap<u64, SwitchView> {
    let mut views: BTreeMap<u64, SwitchView> = switches
        .iter()
        .map(|&d| (d, SwitchView::default()))
        .collect();
    for l in links {
        for end in [l.a, l.b] {
            if let Some(v) = views.get_mut(&end.dpid) {
                v.links.insert(end.port, l.kind);
            }
        }
    }
    let g = Graph::new(links);
    for net in networks {
        for (d, nv) in plan_network(&g, net) {
            if let Some(v) = views.get_mut(&d) {
                v.networks.insert(net.vni, nv);
            }
        }
    }
    views
}

/// One network's view on every switch that carries it (members, mirror, transit switches of
/// its tree), connected or not: what [`plan`] puts under the network's VNI in each view.
/// Depends only on the graph and the network, so a planner can keep the result while both
/// stay the same.
pub fn plan_network(g: &Graph, net: &NetworkSpec) -> BTreeMap<u64, NetworkView> {
    let g = &g.0;
    let member_switches: BTreeSet<u64> = net
        .members
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(d, _)| *d)
        .chain(net.mirror.map(|m| m.dpid))
        .collect();
    if member_switches.is_empty() {
        return BTreeMap::new();
    }
    let linked = |a: u64, b: u64| g.get(&a).is_some_and(|n| n.contains_key(&b));
    let full_mesh = member_switches
        .iter()
        .all(|&a| member_switches.iter().all(|&b| a == b || linked(a, b)));
    let mode = if full_mesh {
        FloodMode::Mesh
    } else {
        FloodMode::Tree
    };
    let mut ports: BTreeMap<u64, BTreeSet<u32>> = member_switches
        .iter()
        .map(|&d| (d, BTreeSet::new()))
        .collect();
    // Switch -> neighbour in the mesh or tree -> local port towards it.
    let mut used: BTreeMap<u64, BTreeMap<u64, u32>> = BTreeMap::new();
    if full_mesh {
        for &a in &member_switches {
            for &b in &member_switches {
                if let Some(&(pa, _)) = g.get(&a).and_then(|n| n.get(&b)) {
                    ports.entry(a).or_default().insert(pa);
                    used.entry(a).or_default().insert(b, pa);
                }
            }
        }
    } else {
        for (child, parent) in tree_edges(g, &member_switches) {
            if let Some(&(pc, pp)) = g.get(&child).and_then(|n| n.get(&parent)) {
                ports.entry(child).or_default().insert(pc);
                ports.entry(parent).or_default().insert(pp);
                used.entry(child).or_default().insert(parent, pc);
                used.entry(parent).or_default().insert(child, pp);
            }
        }
    }
    let mirrors = net
        .mirror
        .map(|m| mirror_views(&used, m, mode))
        .unwrap_or_default();
    ports
        .into_iter()
        .map(|(d, link_ports)| {
            let members = net.members.get(&d).cloned().unwrap_or_default();
            let mirror = net
                .mirror
                .map(|_| mirrors.get(&d).cloned().unwrap_or_default());
            let secured = net
                .secured
                .range(
                    End { dpid: d, port: 0 }..=End {
                        dpid: d,
                        port: u32::MAX,
                    },
                )
                .filter(|(end, _)| members.contains(&end.port))
                .map(|(end, b)| (end.port, b.clone()))
                .collect();
            (
                d,
                NetworkView {
                    members,
                    link_ports,
                    mode,
                    vlan: net.vlan,
                    mirror,
                    secured,
                    limits: net.limits,
                    dns: net.dns,
                    dns6: net.dns6,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(a: u64, pa: u32, b: u64, pb: u32) -> Link {
        Link {
            a: End { dpid: a, port: pa },
            b: End { dpid: b, port: pb },
            kind: LinkKind::Tunnel,
        }
    }

    fn net(vni: u32, members: &[(u64, u32)]) -> NetworkSpec {
        let mut m: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
        for &(d, p) in members {
            m.entry(d).or_default().insert(p);
        }
        NetworkSpec {
            vni,
            vlan: Some(1),
            members: m,
            mirror: None,
            ..NetworkSpec::default()
        }
    }

    fn mirrored(mut n: NetworkSpec, dpid: u64, port: u32) -> NetworkSpec {
        n.mirror = Some(End { dpid, port });
        n
    }

    #[test]
    fn a_mirror_on_a_switch_without_members_joins_the_mesh() {
        let links = [link(1, 12, 2, 21), link(1, 13, 3, 31), link(2, 23, 3, 32)];
        let views = plan(
            &[1, 2, 3].into(),
            &links,
            &[mirrored(net(7, &[(1, 1), (2, 1)]), 3, 9)],
        );
        assert_eq!(views[&1].networks[&7].mode, FloodMode::Mesh);
        let m = |d: u64| views[&d].networks[&7].mirror.clone().unwrap();
        assert_eq!(m(1).toward, [13].into());
        assert_eq!(m(2).toward, [23].into());
        assert_eq!((m(3).port, m(3).toward.len()), (Some(9), 0));
        assert!(views[&3].networks[&7].members.is_empty());
    }

    #[test]
    fn on_a_ring_mirror_copies_follow_the_tree_towards_the_mirror() {
        // 1-2-3-4-1, members on 1 and 2, mirror on 3: 1 is not linked to 3, so a tree.
        let ring = [
            link(1, 12, 2, 21),
            link(2, 23, 3, 32),
            link(3, 34, 4, 43),
            link(4, 41, 1, 14),
        ];
        let views = plan(
            &[1, 2, 3, 4].into(),
            &ring,
            &[mirrored(net(7, &[(1, 1), (2, 1)]), 3, 9)],
        );
        let nv = |d: u64| views[&d].networks.get(&7).cloned();
        assert_eq!(nv(1).unwrap().mode, FloodMode::Tree);
        // Each carrying switch but the mirror's has exactly one way towards it, over tree links.
        for d in [1, 2, 3, 4] {
            let Some(n) = nv(d) else { continue };
            let m = n.mirror.unwrap();
            if d == 3 {
                assert_eq!(m.port, Some(9));
            } else {
                assert_eq!(m.toward.len(), 1, "switch {d}");
                assert!(m.toward.is_subset(&n.link_ports));
            }
        }
    }

    #[test]
    fn full_mesh_uses_split_horizon_over_direct_links() {
        let links = [link(1, 12, 2, 21), link(1, 13, 3, 31), link(2, 23, 3, 32)];
        let views = plan(&[1, 2, 3].into(), &links, &[net(7, &[(1, 1), (2, 1)])]);
        assert_eq!(views[&1].networks[&7].mode, FloodMode::Mesh);
        assert_eq!(views[&1].networks[&7].link_ports, [12].into());
        assert_eq!(views[&2].networks[&7].link_ports, [21].into());
        assert!(
            !views[&3].networks.contains_key(&7),
            "switch 3 does not carry it"
        );
    }

    #[test]
    fn a_line_makes_the_middle_switch_a_transit() {
        let links = [link(1, 12, 2, 21), link(2, 23, 3, 32)];
        let views = plan(&[1, 2, 3].into(), &links, &[net(7, &[(1, 1), (3, 1)])]);
        assert_eq!(views[&2].networks[&7].mode, FloodMode::Tree);
        assert_eq!(views[&2].networks[&7].link_ports, [21, 23].into());
        assert!(views[&2].networks[&7].members.is_empty());
        assert_eq!(views[&1].networks[&7].link_ports, [12].into());
        assert_eq!(views[&3].networks[&7].link_ports, [32].into());
    }

    #[test]
    fn a_ring_floods_over_a_tree_and_reroutes_when_a_link_is_cut() {
        // 1-2-3-4-1, members on 1 and 3 (not directly linked).
        let ring = [
            link(1, 12, 2, 21),
            link(2, 23, 3, 32),
            link(3, 34, 4, 43),
            link(4, 41, 1, 14),
        ];
        let nets = [net(7, &[(1, 1), (3, 1)])];
        let views = plan(&[1, 2, 3, 4].into(), &ring, &nets);
        let tree_ports: usize = views
            .values()
            .filter_map(|v| v.networks.get(&7))
            .map(|n| n.link_ports.len())
            .sum();
        assert_eq!(
            tree_ports, 4,
            "a path of two links: four link ports in all, no loop"
        );
        assert!(views[&2].networks.contains_key(&7) != views[&4].networks.contains_key(&7));
        // Cut 1-2: the tree goes through 4.
        let views = plan(&[1, 2, 3, 4].into(), &ring[1..], &nets);
        assert!(views[&4].networks.contains_key(&7));
        assert!(!views[&2].networks.contains_key(&7));
        assert_eq!(views[&1].networks[&7].link_ports, [14].into());
    }

    #[test]
    fn unrelated_networks_keep_their_plan_when_a_link_changes() {
        let links = [link(1, 12, 2, 21), link(2, 23, 3, 32), link(1, 13, 3, 31)];
        let nets = [net(7, &[(1, 1), (2, 1)]), net(8, &[(2, 2), (3, 2)])];
        let before = plan(&[1, 2, 3].into(), &links, &nets);
        let after = plan(&[1, 2, 3].into(), &[links[0], links[1]], &nets);
        assert_eq!(before[&1].networks[&7], after[&1].networks[&7]);
        assert_eq!(before[&2].networks[&8], after[&2].networks[&8]);
    }

    #[test]
    fn disconnected_members_form_separate_trees() {
        let links = [link(1, 12, 2, 21)];
        let views = plan(
            &[1, 2, 3].into(),
            &links,
            &[net(7, &[(1, 1), (2, 1), (3, 1)])],
        );
        assert_eq!(views[&1].networks[&7].link_ports, [12].into());
        assert!(views[&3].networks[&7].link_ports.is_empty());
    }
}
