//! A synthetic cluster: N nodes (one switch each) on a partial mesh of VXLAN tunnels, M
//! networks, P pod ports per switch. It produces what the controller is fed (the topology file
//! the agents read, networks and memberships through the upstream API, as agents report them)
//! and, independently of the controller, every switch's expected flows and groups (the
//! pipeline compiler applied to the planner's views once every switch is connected).

use anyhow::{anyhow, bail, Context as _};
use l2sm_api::topology::{LinkEntry, NodeEntry, TopologyFile};
use l2sm_api::ControllerClient;
use l2sm_ofp::PortDesc;
use l2sm_pipeline::plan::{self, End, Link, NetworkSpec};
use l2sm_pipeline::{compile, ids, LinkKind, SwitchPipeline};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Shape of the tunnel graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Ring plus one chord per node (node i to i+⌊√N⌋): 4 tunnels per switch, short paths.
    Sparse,
    /// A ring: 2 tunnels per switch.
    Ring,
    /// Every switch linked to every other (N-1 tunnels per switch; small N only).
    Mesh,
}

/// Parameters of the cluster.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterSpec {
    /// Number of switches.
    pub switches: usize,
    /// Number of networks.
    pub networks: usize,
    /// Pod ports per switch; port j of switch i joins network (i·P + j) mod M.
    pub ports_per_switch: u32,
    /// Tunnel graph.
    pub shape: Shape,
    /// Links are trunks (plain ports, networks as VLAN tags; names unique in one OVS) instead
    /// of VXLAN tunnels (names derived from the remote address, unique per node only).
    pub trunks: bool,
}

/// One switch of the cluster.
#[derive(Debug, Clone)]
pub struct SwitchSpec {
    /// Node name.
    pub node: String,
    /// Bridge name (as the agent would name it).
    pub bridge: String,
    /// Datapath id.
    pub dpid: u64,
    /// Underlay address.
    pub ip: Ipv4Addr,
    /// Ports the switch reports: pod ports 1..=P, then link ports (tunnels from 0xf000,
    /// trunks from 0xe000).
    pub ports: Vec<PortDesc>,
    /// Tunnel ports: OpenFlow port -> remote IP.
    pub tunnels: BTreeMap<u32, Ipv4Addr>,
    /// Trunk ports: OpenFlow port -> (own interface name, peer interface name).
    pub trunks: BTreeMap<u32, (String, String)>,
}

/// The generated cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Parameters.
    pub spec: ClusterSpec,
    /// Switches, by index.
    pub switches: Vec<SwitchSpec>,
    /// Tunnels as (switch index, port, switch index, port).
    pub links: Vec<(usize, u32, usize, u32)>,
    /// Network names, by index.
    pub network_names: Vec<String>,
}

fn port_desc(port_no: u32, name: String) -> PortDesc {
    PortDesc {
        port_no,
        hw_addr: [
            0x02,
            0,
            0,
            (port_no >> 16) as u8,
            (port_no >> 8) as u8,
            port_no as u8,
        ],
        name,
        config: 0,
        state: l2sm_ofp::OFPPS_LIVE,
        curr: 0,
        advertised: 0,
        supported: 0,
        peer: 0,
        curr_speed: 10_000_000,
        max_speed: 10_000_000,
    }
}

impl Cluster {
    /// Builds the cluster: names, datapath ids, addresses, links and port numbers.
    pub fn generate(spec: &ClusterSpec) -> anyhow::Result<Cluster> {
        let n = spec.switches;
        if n == 0 || spec.networks == 0 {
            bail!("need at least one switch and one network");
        }
        if n > 60_000 {
            bail!("at most 60000 switches");
        }
        if spec.ports_per_switch == 0 || spec.ports_per_switch >= ids::FIRST_TRUNK_PORT {
            bail!("ports per switch must be 1..{}", ids::FIRST_TRUNK_PORT);
        }
        let mut switches: Vec<SwitchSpec> = (0..n)
            .map(|i| {
                let node = format!("bench{i:05}");
                let bridge = ids::switch_name(&node, ids::OVERLAY_PROVIDER);
                let dpid = ids::datapath_id(&bridge);
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i as u32 + 1);
                let ports = (1..=spec.ports_per_switch)
                    .map(|p| port_desc(p, ids::port_interface_name(dpid, p)))
                    .collect();
                SwitchSpec {
                    node,
                    bridge,
                    dpid,
                    ip,
                    ports,
                    tunnels: BTreeMap::new(),
                    trunks: BTreeMap::new(),
                }
            })
            .collect();
        let mut pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut add = |a: usize, b: usize| {
            if a != b {
                pairs.insert((a.min(b), a.max(b)));
            }
        };
        match spec.shape {
            Shape::Ring | Shape::Sparse if n > 1 => {
                for i in 0..n {
                    add(i, (i + 1) % n);
                }
                if spec.shape == Shape::Sparse {
                    let chord = ((n as f64).sqrt() as usize).max(2);
                    for i in 0..n {
                        add(i, (i + chord) % n);
                    }
                }
            }
            Shape::Mesh => {
                for a in 0..n {
                    for b in a + 1..n {
                        add(a, b);
                    }
                }
            }
            _ => {}
        }
        let first = if spec.trunks {
            ids::FIRST_TRUNK_PORT
        } else {
            ids::FIRST_TUNNEL_PORT
        };
        let mut next_port: Vec<u32> = vec![first; n];
        let mut links = Vec::new();
        for (a, b) in pairs {
            let (pa, pb) = (next_port[a], next_port[b]);
            next_port[a] += 1;
            next_port[b] += 1;
            if spec.trunks {
                let (na, nb) = (format!("tr{a}-{b}"), format!("tr{b}-{a}"));
                switches[a].trunks.insert(pa, (na.clone(), nb.clone()));
                switches[b].trunks.insert(pb, (nb, na));
            } else {
                let (ipa, ipb) = (switches[a].ip, switches[b].ip);
                switches[a].tunnels.insert(pa, ipb);
                switches[b].tunnels.insert(pb, ipa);
            }
            links.push((a, pa, b, pb));
        }
        for sw in &mut switches {
            let mut names = BTreeSet::new();
            for (&port, ip) in &sw.tunnels {
                let name = ids::vxlan_port_name(&ip.to_string());
                if !names.insert(name.clone()) {
                    bail!("two tunnels of {} would share the name {name}", sw.node);
                }
                sw.ports.push(port_desc(port, name));
            }
            for (&port, (name, _)) in &sw.trunks {
                sw.ports.push(port_desc(port, name.clone()));
            }
        }
        Ok(Cluster {
            spec: spec.clone(),
            switches,
            links,
            network_names: (0..spec.networks)
                .map(|k| format!("bench-net-{k}"))
                .collect(),
        })
    }

    /// The overlay topology file (the format agents and the controller read).
    pub fn topology_file(&self) -> TopologyFile {
        let nodes = self
            .switches
            .iter()
            .map(|s| NodeEntry::Full {
                name: s.node.clone(),
                node_ip: Some(s.ip.to_string()),
                dpid: None,
            })
            .collect();
        let links = self
            .links
            .iter()
            .map(|&(a, pa, b, pb)| {
                let (sa, sb) = (&self.switches[a], &self.switches[b]);
                let tunnel = LinkEntry::tunnel(&sa.node, &sb.node);
                match (sa.trunks.get(&pa), sb.trunks.get(&pb)) {
                    (Some((ia, _)), Some((ib, _))) => LinkEntry {
                        kind: Some("trunk".into()),
                        interface_a: Some(ia.clone()),
                        interface_b: Some(ib.clone()),
                        ..tunnel
                    },
                    _ => tunnel,
                }
            })
            .collect();
        TopologyFile {
            nodes,
            links: Some(links),
            addresses: Default::default(),
        }
    }

    /// Member ports of each network: (switch index, port).
    pub fn memberships(&self) -> Vec<Vec<(usize, u32)>> {
        let p = self.spec.ports_per_switch as usize;
        let m = self.spec.networks;
        let mut out = vec![Vec::new(); m];
        for i in 0..self.switches.len() {
            for j in 0..p {
                out[(i * p + j) % m].push((i, j as u32 + 1));
            }
        }
        out
    }

    /// Number of member ports in all.
    pub fn membership_count(&self) -> usize {
        self.switches.len() * self.spec.ports_per_switch as usize
    }

    /// Creates the networks and reports every membership through the upstream API, the way
    /// agents do: one add-ports request per port (`batch` = 1), or `batch` ports per request;
    /// `concurrency` requests in flight. Returns each network's (VNI, VLAN).
    pub async fn feed(
        &self,
        api: ControllerClient,
        batch: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<(u32, Option<u16>)>> {
        Ok(self.feed_timed(api, batch, concurrency).await?.0)
    }

    /// [`Cluster::feed`], also returning the latency of every add-ports request, ms (in the
    /// order they completed).
    pub async fn feed_timed(
        &self,
        api: ControllerClient,
        batch: usize,
        concurrency: usize,
    ) -> anyhow::Result<(Vec<(u32, Option<u16>)>, Vec<f64>)> {
        for name in &self.network_names {
            api.create_vnet(name)
                .await
                .with_context(|| format!("creating network {name}"))?;
        }
        // (network, ports) of each request.
        let mut requests: Vec<(String, Vec<String>)> = Vec::new();
        for (k, members) in self.memberships().iter().enumerate() {
            for chunk in members.chunks(batch.max(1)) {
                let eps: Vec<String> = chunk
                    .iter()
                    .map(|&(i, p)| format!("of:{}/{p}", ids::dpid_hex(self.switches[i].dpid)))
                    .collect();
                requests.push((self.network_names[k].clone(), eps));
            }
        }
        let requests = Arc::new(tokio::sync::Mutex::new(requests));
        let mut workers = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (requests, api) = (requests.clone(), api.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let Some((network, ports)) = requests.lock().await.pop() else {
                        return anyhow::Ok(latencies);
                    };
                    let t = std::time::Instant::now();
                    api.add_ports(&network, &ports).await?;
                    latencies.push(crate::util::ms(t.elapsed()));
                }
            }));
        }
        let mut latencies = Vec::new();
        for w in workers {
            latencies.extend(w.await.context("membership worker panicked")??);
        }
        let list = api.networks().await.context("listing the networks")?;
        let nets = self
            .network_names
            .iter()
            .map(|name| {
                let n = list
                    .iter()
                    .find(|n| n.name == *name)
                    .ok_or_else(|| anyhow!("network {name} missing from the controller"))?;
                Ok((n.vni, n.vlan))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok((nets, latencies))
    }

    /// What every switch must hold once all are connected, by switch index.
    pub fn expected(&self, nets: &[(u32, Option<u16>)]) -> Vec<SwitchPipeline> {
        let links: Vec<Link> = self
            .links
            .iter()
            .map(|&(a, pa, b, pb)| Link {
                a: End {
                    dpid: self.switches[a].dpid,
                    port: pa,
                },
                b: End {
                    dpid: self.switches[b].dpid,
                    port: pb,
                },
                kind: if self.spec.trunks {
                    LinkKind::Trunk
                } else {
                    LinkKind::Tunnel
                },
            })
            .collect();
        let specs: Vec<NetworkSpec> = self
            .memberships()
            .iter()
            .zip(nets)
            .map(|(members, &(vni, vlan))| {
                let mut m: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
                for &(i, p) in members {
                    m.entry(self.switches[i].dpid).or_default().insert(p);
                }
                NetworkSpec {
                    vni,
                    vlan,
                    members: m,
                    mirror: None,
                    ..NetworkSpec::default()
                }
            })
            .collect();
        let all: BTreeSet<u64> = self.switches.iter().map(|s| s.dpid).collect();
        let views = plan::plan(&all, &links, &specs);
        self.switches
            .iter()
            .map(|s| views.get(&s.dpid).map(compile).unwrap_or_default())
            .collect()
    }
}
