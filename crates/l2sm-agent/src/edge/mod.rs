//! `l2sm edge`: the edge switch of a cluster (upstream's "NetworkEdgeDevice", `talpa ned`).
//!
//! One OVS bridge with upstream's deterministic name and datapath id, OpenFlow to the provider
//! controller, one flow-based VXLAN tunnel per neighbour edge (`neighbors.json`, re-read when
//! it changes), and upstream's gRPC `nedpb.NedService` (`AttachInterface`, `CreateVxlan`) so
//! upstream's operator can drive it. OVS through OVSDB, links through netlink; never a
//! command.
//!
//! Differences from upstream, on purpose (docs/edge.md has the list): bad configuration is an
//! error; `fail_mode=secure`; tunnels carry `local_ip` and are scoped to this bridge;
//! `AttachInterface` fails when the Linux bridge does not exist, answers the existing port
//! for a Linux bridge already attached, and never allocates port 3998; `CreateVxlan` really
//! adds the tunnel (keeping the others) and says so; the gRPC listener requires TLS with
//! client certificates unless `--ned-grpc-insecure`.

pub mod config;
pub mod grpc;
pub mod tls;

use crate::ovs::{
    BridgeSpec, NewPort, Ovs, PatchEnd, PortChange, PortLocation, TunnelSpec, FIRST_TRUNK_OFPORT,
};
use crate::target::ControllerTargets;
use anyhow::{anyhow, bail, Context as _};
use config::{EdgeConfig, NeighborSet};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use ipnet::IpNet;
use l2sm_ned::grpc::{Code, Status};
use l2sm_ned::{
    AttachInterfaceRequest, AttachInterfaceResponse, ConnectNetworkRequest, ConnectNetworkResponse,
    CreateVxlanRequest, CreateVxlanResponse, DisconnectNetworkRequest, DisconnectNetworkResponse,
};
use l2sm_netns::Netns;
use l2sm_pipeline::ids;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Upstream's reserved port id of the monitoring probe (`ls<token>p1999`); never allocated.
pub const RESERVED_PROBE_ID: u32 = 1999;
/// `external_ids` key of an attached port: the host Linux bridge its veth peer is in.
pub const EDGE_BRIDGE_KEY: &str = "l2sm-edge-bridge";
/// `external_ids` key of both ends of a cluster-to-edge hop: the provider network.
pub const EDGE_NETWORK_KEY: &str = "l2sm-edge-network";
/// `external_ids` key of both ends of a hop: the edge bridge that made it.
pub const EDGE_OWNER_KEY: &str = "l2sm-edge";
/// Name prefix of a hop's end on the cluster bridge (`lsedge<id>`).
pub const HOP_CLUSTER_PREFIX: &str = "lsedge";

/// The name of a hop's cluster end.
pub fn hop_cluster_port_name(id: u32) -> String {
    format!("{HOP_CLUSTER_PREFIX}{id}")
}

/// The hop id of a cluster end's name `lsedge<id>`.
pub fn parse_hop_cluster_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(HOP_CLUSTER_PREFIX)?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || rest.starts_with('0') {
        return None;
    }
    rest.parse()
        .ok()
        .filter(|n| (1..=ids::MAX_EDGE_HOP_ID).contains(n))
}

/// Options of `l2sm edge`.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeArgs {
    /// Directory of upstream's NED files `config.json` and `neighbors.json` (the NED
    /// ConfigMap's mount point upstream).
    #[arg(long, default_value = "/etc/l2sm")]
    pub config_dir: PathBuf,
    /// OVSDB server socket (`unix:PATH` or `PATH`).
    #[arg(long, default_value = "unix:/var/run/openvswitch/db.sock")]
    pub ovsdb: String,
    /// OVS datapath type: `system` (kernel module) or `netdev` (userspace).
    #[arg(long, default_value = "system")]
    pub datapath_type: String,
    /// How often `neighbors.json` is checked for changes, in ms (upstream: 10 s).
    #[arg(long, default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub neighbors_poll_ms: u64,
    /// Address of upstream's gRPC `nedpb.NedService` (upstream: `:50051`).
    #[arg(long, default_value = "0.0.0.0:50051")]
    pub ned_grpc_listen: SocketAddr,
    /// Serve gRPC in cleartext (HTTP/2 with prior knowledge) without client authentication,
    /// as upstream does and as upstream's operator dials. Anyone who can reach the port can
    /// then create interfaces on this node: combine with `--ned-grpc-allow`.
    #[arg(long, conflicts_with_all = ["ned_grpc_tls_cert", "ned_grpc_tls_key", "ned_grpc_client_ca"])]
    pub ned_grpc_insecure: bool,
    /// PEM certificate of the gRPC listener (TLS, ALPN h2).
    #[arg(long, required_unless_present = "ned_grpc_insecure", requires_all = ["ned_grpc_tls_key", "ned_grpc_client_ca"])]
    pub ned_grpc_tls_cert: Option<PathBuf>,
    /// PEM private key of `--ned-grpc-tls-cert`.
    #[arg(long, requires = "ned_grpc_tls_cert")]
    pub ned_grpc_tls_key: Option<PathBuf>,
    /// PEM CA file: gRPC clients must present a certificate chaining to it.
    #[arg(long, requires = "ned_grpc_tls_cert")]
    pub ned_grpc_client_ca: Option<PathBuf>,
    /// Client addresses allowed to connect to the gRPC listener (CIDR, repeatable); none:
    /// any address.
    #[arg(long = "ned-grpc-allow")]
    pub ned_grpc_allow: Vec<IpNet>,
    /// PEM private key of this edge's switch for OpenFlow over TLS to the provider (`ssl:`
    /// targets); without the three `--ssl-*` flags OpenFlow runs over TCP, as upstream.
    #[arg(long, requires_all = ["ssl_certificate", "ssl_ca_cert"])]
    pub ssl_private_key: Option<PathBuf>,
    /// PEM certificate of this edge's switch.
    #[arg(long, requires_all = ["ssl_private_key", "ssl_ca_cert"])]
    pub ssl_certificate: Option<PathBuf>,
    /// PEM CA certificate the provider controller's certificate must chain to.
    #[arg(long, requires_all = ["ssl_private_key", "ssl_certificate"])]
    pub ssl_ca_cert: Option<PathBuf>,
    /// `AttachInterface` joins only Linux bridges named this prefix and a number (upstream's
    /// operator passes the NAD bridges `br<N>`), never another bridge of the node (a host's
    /// pod bridge, say).
    #[arg(long, default_value = "br")]
    pub attach_bridge_prefix: String,
    /// Bridges `ConnectNetwork` may patch the edge to (repeatable). Default: the node's
    /// cluster switch only (upstream's `switch_name(nodeName, "l2sm-controller")`), so a
    /// caller cannot join the edge to the underlay bridge or anything else on the node.
    #[arg(long = "cluster-bridge")]
    pub cluster_bridges: Vec<String>,
    /// Controller reconnect backoff ceiling, in ms.
    #[arg(long, default_value_t = 8000)]
    pub max_backoff_ms: u64,
    /// Controller inactivity probe, in ms.
    #[arg(long, default_value_t = 5000)]
    pub inactivity_probe_ms: u64,
}

impl EdgeArgs {
    fn config_path(&self) -> PathBuf {
        self.config_dir.join("config.json")
    }

    fn neighbors_path(&self) -> PathBuf {
        self.config_dir.join("neighbors.json")
    }
}

/// OpenFlow targets of the configuration: one per controller address (upstream joined them
/// into one string, which OVS cannot parse).
fn controller_targets(cfg: &EdgeConfig, ssl: bool) -> anyhow::Result<ControllerTargets> {
    let scheme = if ssl { "ssl" } else { "tcp" };
    let targets: Vec<String> = cfg
        .controllers
        .iter()
        .map(|c| match c.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("{scheme}:[{v6}]:{}", cfg.controller_port),
            _ => format!("{scheme}:{c}:{}", cfg.controller_port),
        })
        .collect();
    ControllerTargets::parse(&targets).context("config.json: controllerIp")
}

fn ssl_files(args: &EdgeArgs) -> anyhow::Result<Option<crate::ovs::SslSpec>> {
    let (Some(key), Some(cert), Some(ca)) = (
        &args.ssl_private_key,
        &args.ssl_certificate,
        &args.ssl_ca_cert,
    ) else {
        return Ok(None);
    };
    let abs = |flag: &str, p: &PathBuf| -> anyhow::Result<String> {
        let a = std::path::absolute(p).with_context(|| format!("{flag} {}", p.display()))?;
        std::fs::File::open(&a).with_context(|| format!("{flag}: cannot read {}", a.display()))?;
        Ok(a.display().to_string())
    };
    Ok(Some(crate::ovs::SslSpec {
        private_key: abs("--ssl-private-key", key)?,
        certificate: abs("--ssl-certificate", cert)?,
        ca_cert: abs("--ssl-ca-cert", ca)?,
    }))
}

/// The tunnels for a neighbour set plus the addresses CreateVxlan added.
pub fn desired_tunnels(set: &NeighborSet, added: &[IpAddr]) -> Vec<TunnelSpec> {
    let mut remotes: Vec<IpAddr> = set.remotes.clone();
    for a in added {
        if !remotes.contains(a) {
            remotes.push(*a);
        }
    }
    remotes
        .into_iter()
        .map(|r| TunnelSpec {
            name: config::edge_tunnel_name(set.local, r),
            remote_ip: r.to_string(),
            local_ip: Some(set.local.to_string()),
        })
        .collect()
}

struct Tunnels {
    file: NeighborSet,
    /// Neighbours added over gRPC (kept across file changes, not across restarts).
    added: Vec<IpAddr>,
}

/// The running edge.
pub struct Edge {
    ovs: Ovs,
    bridge: String,
    dpid: u64,
    node_name: String,
    own_netns: Netns,
    tunnels: tokio::sync::Mutex<Tunnels>,
    /// Serialises port allocation.
    attach: tokio::sync::Mutex<()>,
    /// The bridges' datapath type (a hop's two bridges must share it).
    datapath_type: String,
    /// The bridges a hop may lead to (`--cluster-bridge`, default the node's cluster switch).
    cluster_bridges: Vec<String>,
    /// `AttachInterface` bridges: this prefix and a number (`--attach-bridge-prefix`).
    attach_bridge_prefix: String,
}

/// The port id of an interface name `ls<token><id>` of this switch (`None` for anything
/// else, probe ports `ls<token>p<id>` included).
pub fn parse_port_name(dpid: u64, name: &str) -> Option<u32> {
    let prefix = format!("ls{}", &ids::dpid_hex(dpid)[..5]);
    let rest = name.strip_prefix(&prefix)?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || rest.starts_with('0') {
        return None;
    }
    rest.parse()
        .ok()
        .filter(|n| (1..FIRST_TRUNK_OFPORT).contains(n))
}

/// Upstream's allocation: one above the highest id in use (`used`), skipping upstream's
/// reserved probe id 1999 (upstream doubled it to 3998).
pub fn next_port_id(used: impl IntoIterator<Item = u32>) -> Option<u32> {
    let max = used.into_iter().max().unwrap_or(0);
    let mut next = max.checked_add(1)?;
    if next == RESERVED_PROBE_ID {
        next += 1;
    }
    (next < FIRST_TRUNK_OFPORT).then_some(next)
}

/// At most 40 characters of a client's value, for messages and logs.
fn shown(value: &str) -> String {
    let mut s: String = value.chars().take(40).collect();
    if s.len() < value.len() {
        s.push('…');
    }
    s
}

fn internal(e: anyhow::Error) -> Status {
    Status::new(Code::Internal, format!("{e:#}"))
}

impl Edge {
    /// Brings the tunnels in line with the neighbour set and the gRPC additions.
    async fn reconcile_tunnels(&self, t: &Tunnels) -> anyhow::Result<()> {
        let want = desired_tunnels(&t.file, &t.added);
        self.ovs.ensure_tunnels(&self.bridge, &want).await?;
        tracing::info!(bridge = %self.bridge, tunnels = want.len(), "edge tunnels reconciled");
        Ok(())
    }

    /// Adds to the bridge every `ls<token><id>` interface of this node that is not a port
    /// yet (veths made by AttachInterface survive an edge or OVS restart), with OpenFlow
    /// number `id`, and records the Linux bridge its peer is in.
    async fn adopt_orphans(&self) -> anyhow::Result<usize> {
        let ports: Vec<String> = self
            .ovs
            .interfaces(&self.bridge)
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect();
        let dpid = self.dpid;
        let orphans = super::run_netlink(&self.own_netns, move |nl| {
            let mut found = Vec::new();
            for name in nl.link_names()? {
                let Some(id) = parse_port_name(dpid, &name) else {
                    continue;
                };
                if ports.contains(&name) {
                    continue;
                }
                let peer = format!("lspeer{id}");
                let master = if nl.link_exists(&peer)? {
                    nl.set_up(&peer)?;
                    nl.master_of(&peer)?
                } else {
                    None
                };
                nl.set_up(&name)?;
                found.push((name, id, master));
            }
            Ok(found)
        })
        .await?;
        if orphans.is_empty() {
            return Ok(0);
        }
        let changes: Vec<PortChange> = orphans
            .iter()
            .map(|(name, id, master)| {
                PortChange::Add(NewPort {
                    name: name.clone(),
                    ofport: *id,
                    external_ids: master
                        .iter()
                        .map(|m| (EDGE_BRIDGE_KEY.to_string(), m.clone()))
                        .collect(),
                })
            })
            .collect();
        let results = self.ovs.apply_port_changes(&self.bridge, &changes).await?;
        let mut adopted = 0;
        // One port that cannot get its number back must not keep the edge from starting.
        for ((name, id, master), r) in orphans.iter().zip(results) {
            match r {
                Ok(()) => {
                    adopted += 1;
                    tracing::info!(port = %name, ofport = id, bridge = master.as_deref().unwrap_or("-"), "re-attached existing edge port");
                }
                Err(e) => {
                    tracing::warn!(port = %name, "cannot re-attach existing edge port: {e:#}")
                }
            }
        }
        Ok(adopted)
    }

    /// `AttachInterface`: a veth `ls<token><id>` <-> `lspeer<id>`, the peer in the Linux bridge
    /// `name`, the first end on the switch with OpenFlow number `id`. A Linux bridge that
    /// already has a port answers that port (a retried call must not make a second path,
    /// which would loop frames). Nothing is left behind on failure.
    pub async fn attach_interface(&self, name: &str) -> Result<AttachInterfaceResponse, Status> {
        if !super::valid_ifname(name) {
            return Err(Status::new(
                Code::InvalidArgument,
                format!(
                    "invalid interface name {:?} (1-15 printable characters, no '/' or ':')",
                    shown(name)
                ),
            ));
        }
        let _one = self.attach.lock().await;
        let ifaces = self.ovs.interfaces(&self.bridge).await.map_err(internal)?;
        if let Some(row) = ifaces
            .iter()
            .find(|i| i.external_ids.get(EDGE_BRIDGE_KEY).map(String::as_str) == Some(name))
        {
            if let Some(n) = row.ofport_request.or(row.ofport) {
                tracing::info!(bridge = %name, port = %row.name, "AttachInterface: already attached");
                return Ok(AttachInterfaceResponse {
                    interface_num: n,
                    node_name: self.node_name.clone(),
                });
            }
        }
        let target = name.to_string();
        let (kind, links) = super::run_netlink(&self.own_netns, move |nl| {
            Ok((nl.is_bridge(&target)?, nl.link_names()?))
        })
        .await
        .map_err(internal)?;
        match kind {
            None => {
                return Err(Status::new(
                    Code::NotFound,
                    format!("no interface {name:?} on this node"),
                ))
            }
            Some(false) => {
                return Err(Status::new(
                    Code::FailedPrecondition,
                    format!("{name:?} is not a Linux bridge"),
                ))
            }
            Some(true) => {}
        }
        let numbered = name
            .strip_prefix(self.attach_bridge_prefix.as_str())
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !numbered {
            return Err(Status::new(
                Code::PermissionDenied,
                format!(
                    "this edge joins only bridges {}<N> (--attach-bridge-prefix), not {name:?}",
                    self.attach_bridge_prefix
                ),
            ));
        }
        let used = ifaces
            .iter()
            .filter_map(|i| parse_port_name(self.dpid, &i.name))
            .chain(links.iter().filter_map(|l| parse_port_name(self.dpid, l)));
        let id = next_port_id(used).ok_or_else(|| {
            Status::new(
                Code::ResourceExhausted,
                format!("no port number left on {}", self.bridge),
            )
        })?;
        let host_if = ids::port_interface_name(self.dpid, id);
        let peer = format!("lspeer{id}");
        if links.contains(&peer) {
            return Err(Status::new(
                Code::FailedPrecondition,
                format!("{peer} already exists on this node (another edge on this host?)"),
            ));
        }
        let (hi, pe, br) = (host_if.clone(), peer.clone(), name.to_string());
        super::run_netlink(&self.own_netns, move |nl| {
            nl.create_veth(&hi, &pe, None, None)?;
            let r = (|| {
                nl.set_master(&pe, &br)?;
                nl.set_up(&pe)?;
                nl.set_up(&hi)
            })();
            if r.is_err() {
                let _ = nl.delete_link(&hi);
            }
            r
        })
        .await
        .map_err(|e| {
            internal(e.context(format!("cannot create {host_if} <-> {peer} in {name}")))
        })?;
        let change = PortChange::Add(NewPort {
            name: host_if.clone(),
            ofport: id,
            external_ids: vec![(EDGE_BRIDGE_KEY.to_string(), name.to_string())],
        });
        let added = match self
            .ovs
            .apply_port_changes(&self.bridge, std::slice::from_ref(&change))
            .await
        {
            Ok(mut r) => r.pop().unwrap_or(Ok(())),
            Err(e) => Err(e),
        };
        if let Err(e) = added {
            let _ = self
                .ovs
                .apply_port_changes(&self.bridge, &[PortChange::Remove(host_if.clone())])
                .await;
            let hi = host_if.clone();
            let _ = super::run_netlink(&self.own_netns, move |nl| nl.delete_link(&hi)).await;
            return Err(internal(
                e.context(format!("cannot add {host_if} to {}", self.bridge)),
            ));
        }
        tracing::info!(bridge = %name, port = %host_if, ofport = id, "AttachInterface: attached");
        Ok(AttachInterfaceResponse {
            interface_num: i64::from(id),
            node_name: self.node_name.clone(),
        })
    }

    /// `CreateVxlan`: adds a tunnel to that edge, keeping every other tunnel.
    pub async fn create_vxlan(&self, ip: &str) -> CreateVxlanResponse {
        let fail = |message: String| CreateVxlanResponse {
            success: false,
            message,
        };
        let Ok(remote) = ip.trim().parse::<IpAddr>() else {
            return fail(format!("invalid IP address {:?}", shown(ip)));
        };
        let mut t = self.tunnels.lock().await;
        if let Err(e) = config::check_remote(t.file.local, remote) {
            return fail(e);
        }
        let fresh = !t.added.contains(&remote) && !t.file.remotes.contains(&remote);
        if fresh {
            t.added.push(remote);
        }
        if let Err(e) = self.reconcile_tunnels(&t).await {
            if fresh {
                t.added.retain(|a| *a != remote);
            }
            return fail(format!("cannot create the VxLAN to {remote}: {e:#}"));
        }
        CreateVxlanResponse {
            success: true,
            message: format!("VxLAN with IP {remote} created successfully"),
        }
    }

    /// This edge's hops (both ends), as OVSDB has them.
    async fn hops(&self) -> anyhow::Result<Vec<PortLocation>> {
        Ok(self
            .ovs
            .ports_with_external_id(EDGE_NETWORK_KEY)
            .await?
            .into_iter()
            .filter(|p| p.external_ids.get(EDGE_OWNER_KEY) == Some(&self.bridge))
            .collect())
    }

    /// `ConnectNetwork`: one patch port pair between this edge's bridge and the cluster
    /// bridge for `network`: `ls<token><id>` (OpenFlow `id`) here, `lsedge<id>` (OpenFlow
    /// `0xD000 + id`) there, made in one OVSDB transaction. The same network again answers
    /// the same pair; a pair that is half there or on another cluster bridge is made again.
    pub async fn connect_network(
        &self,
        network: &str,
        cluster_bridge: &str,
    ) -> Result<ConnectNetworkResponse, Status> {
        ids::validate_network_name(network)
            .map_err(|e| Status::new(Code::InvalidArgument, e.to_string()))?;
        if !super::valid_ifname(cluster_bridge) {
            return Err(Status::new(
                Code::InvalidArgument,
                format!("invalid bridge name {:?}", shown(cluster_bridge)),
            ));
        }
        if cluster_bridge == self.bridge {
            return Err(Status::new(
                Code::InvalidArgument,
                format!("{cluster_bridge} is the edge's own bridge"),
            ));
        }
        let _one = self.attach.lock().await;
        match self
            .ovs
            .bridge_datapath_type(cluster_bridge)
            .await
            .map_err(internal)?
        {
            None => {
                return Err(Status::new(
                    Code::NotFound,
                    format!("no bridge {cluster_bridge:?} in this node's Open vSwitch"),
                ))
            }
            Some(t) if t != self.datapath_type => {
                return Err(Status::new(
                    Code::FailedPrecondition,
                    format!(
                        "{cluster_bridge} has datapath type {t:?}, the edge {:?}: patch ports need one datapath",
                        self.datapath_type
                    ),
                ))
            }
            Some(_) => {}
        }
        if !self.cluster_bridges.iter().any(|b| b == cluster_bridge) {
            return Err(Status::new(
                Code::PermissionDenied,
                format!(
                    "this edge connects only to {} (--cluster-bridge), not {cluster_bridge}",
                    self.cluster_bridges.join(", ")
                ),
            ));
        }
        let hops = self.hops().await.map_err(internal)?;
        let mine: Vec<PortLocation> = hops
            .iter()
            .filter(|p| p.external_ids.get(EDGE_NETWORK_KEY).map(String::as_str) == Some(network))
            .cloned()
            .collect();
        let edge_end = mine
            .iter()
            .find(|p| p.bridge == self.bridge)
            .and_then(|p| parse_port_name(self.dpid, &p.name));
        let cluster_end = mine
            .iter()
            .find(|p| p.bridge == cluster_bridge)
            .and_then(|p| parse_hop_cluster_name(&p.name));
        if let (Some(a), Some(b)) = (edge_end, cluster_end) {
            if a == b && mine.len() == 2 && self.hop_works(a, cluster_bridge).await {
                tracing::info!(network, port = a, "ConnectNetwork: already connected");
                return Ok(self.hop_answer(a));
            }
        }
        if !mine.is_empty() {
            tracing::warn!(
                network,
                ends = mine.len(),
                "ConnectNetwork: repairing an incomplete hop"
            );
            self.ovs.remove_ports(&mine).await.map_err(internal)?;
        }
        // Numbers in use: this bridge's ports and ls<token><n> links (AttachInterface's), and
        // every hop's cluster end on the cluster bridge.
        let ifaces = self.ovs.interfaces(&self.bridge).await.map_err(internal)?;
        let on_cluster = self
            .ovs
            .interfaces(cluster_bridge)
            .await
            .map_err(internal)?;
        let links = super::run_netlink(&self.own_netns, |nl| nl.link_names())
            .await
            .map_err(internal)?;
        let used: Vec<u32> = ifaces
            .iter()
            .filter_map(|i| parse_port_name(self.dpid, &i.name))
            .chain(links.iter().filter_map(|l| parse_port_name(self.dpid, l)))
            .chain(
                on_cluster
                    .iter()
                    .filter_map(|i| parse_hop_cluster_name(&i.name)),
            )
            .chain(
                on_cluster
                    .iter()
                    .filter_map(|i| i.ofport_request.or(i.ofport))
                    .filter_map(|n| u32::try_from(n).ok())
                    .filter_map(|n| n.checked_sub(ids::FIRST_EDGE_HOP_PORT))
                    .filter(|n| *n <= ids::MAX_EDGE_HOP_ID),
            )
            .collect();
        // The id this network had, if still free (its members keep their numbers).
        let id = match edge_end.or(cluster_end).filter(|i| !used.contains(i)) {
            Some(i) => i,
            None => next_port_id(used.iter().copied())
                .filter(|i| *i <= ids::MAX_EDGE_HOP_ID)
                .ok_or_else(|| {
                    Status::new(
                        Code::ResourceExhausted,
                        format!(
                            "no hop number left on {} (ids 1 to {})",
                            self.bridge,
                            ids::MAX_EDGE_HOP_ID
                        ),
                    )
                })?,
        };
        let a = PatchEnd {
            bridge: self.bridge.clone(),
            name: ids::port_interface_name(self.dpid, id),
            ofport: id,
        };
        let b = PatchEnd {
            bridge: cluster_bridge.to_string(),
            name: hop_cluster_port_name(id),
            ofport: ids::FIRST_EDGE_HOP_PORT + id,
        };
        let external_ids = [
            (EDGE_NETWORK_KEY.to_string(), network.to_string()),
            (EDGE_OWNER_KEY.to_string(), self.bridge.clone()),
        ];
        self.ovs
            .create_patch_pair(&a, &b, &external_ids)
            .await
            .map_err(|e| {
                internal(e.context(format!("cannot connect {network} to {cluster_bridge}")))
            })?;
        tracing::info!(network, edge_port = %a.name, cluster_port = %b.name, id, "ConnectNetwork: connected");
        Ok(self.hop_answer(id))
    }

    fn hop_answer(&self, id: u32) -> ConnectNetworkResponse {
        ConnectNetworkResponse {
            edge_port: i64::from(id),
            cluster_port: i64::from(ids::FIRST_EDGE_HOP_PORT + id),
            node_name: self.node_name.clone(),
        }
    }

    /// Whether both ends of hop `id` are in place with their numbers and no error.
    async fn hop_works(&self, id: u32, cluster_bridge: &str) -> bool {
        let ok = |rows: &[crate::ovs::InterfaceRow], name: &str, ofport: u32| {
            rows.iter().any(|r| {
                r.name == name
                    && r.kind == "patch"
                    && r.ofport == Some(i64::from(ofport))
                    && r.error.as_ref().is_none_or(|e| e.is_empty())
            })
        };
        let (Ok(edge), Ok(cluster)) = (
            self.ovs.interfaces(&self.bridge).await,
            self.ovs.interfaces(cluster_bridge).await,
        ) else {
            return false;
        };
        ok(&edge, &ids::port_interface_name(self.dpid, id), id)
            && ok(
                &cluster,
                &hop_cluster_port_name(id),
                ids::FIRST_EDGE_HOP_PORT + id,
            )
    }

    /// `DisconnectNetwork`: removes both ends of `network`'s hop in one transaction; an
    /// unknown network is fine.
    pub async fn disconnect_network(
        &self,
        network: &str,
    ) -> Result<DisconnectNetworkResponse, Status> {
        ids::validate_network_name(network)
            .map_err(|e| Status::new(Code::InvalidArgument, e.to_string()))?;
        let _one = self.attach.lock().await;
        let mine: Vec<PortLocation> = self
            .hops()
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|p| p.external_ids.get(EDGE_NETWORK_KEY).map(String::as_str) == Some(network))
            .collect();
        if mine.is_empty() {
            tracing::info!(network, "DisconnectNetwork: not connected");
            return Ok(DisconnectNetworkResponse {});
        }
        self.ovs.remove_ports(&mine).await.map_err(internal)?;
        tracing::info!(network, ends = mine.len(), "DisconnectNetwork: removed");
        Ok(DisconnectNetworkResponse {})
    }

    /// Re-reads `neighbors.json` when its bytes change; a bad file is logged and ignored
    /// (the tunnels stay as they are); a failed reconcile is retried on the next pass.
    async fn watch_neighbors(self: Arc<Self>, path: PathBuf, every: Duration) {
        let mut last = std::fs::read(&path).ok();
        let mut pending = false;
        loop {
            tokio::time::sleep(every).await;
            let current = std::fs::read(&path).ok();
            if current == last && !pending {
                continue;
            }
            last = current;
            let set = match config::load_neighbors(&path) {
                Ok(s) => s,
                Err(e) => {
                    pending = false;
                    tracing::warn!("neighbors.json change ignored, tunnels kept: {e:#}");
                    continue;
                }
            };
            let mut t = self.tunnels.lock().await;
            let before = std::mem::replace(&mut t.file, set);
            match self.reconcile_tunnels(&t).await {
                Ok(()) => pending = false,
                Err(e) => {
                    t.file = before;
                    pending = true;
                    tracing::warn!("cannot apply neighbors.json yet: {e:#}");
                }
            }
        }
    }
}

impl grpc::NedService for Edge {
    fn create_vxlan(
        &self,
        req: CreateVxlanRequest,
    ) -> BoxFuture<'_, Result<CreateVxlanResponse, Status>> {
        async move { Ok(Edge::create_vxlan(self, &req.ip_address).await) }.boxed()
    }

    fn attach_interface(
        &self,
        req: AttachInterfaceRequest,
    ) -> BoxFuture<'_, Result<AttachInterfaceResponse, Status>> {
        async move { Edge::attach_interface(self, &req.interface_name).await }.boxed()
    }

    fn connect_network(
        &self,
        req: ConnectNetworkRequest,
    ) -> BoxFuture<'_, Result<ConnectNetworkResponse, Status>> {
        async move { Edge::connect_network(self, &req.network, &req.cluster_bridge).await }.boxed()
    }

    fn disconnect_network(
        &self,
        req: DisconnectNetworkRequest,
    ) -> BoxFuture<'_, Result<DisconnectNetworkResponse, Status>> {
        async move { Edge::disconnect_network(self, &req.network).await }.boxed()
    }
}

/// Runs the edge until SIGINT/SIGTERM.
pub async fn run(args: EdgeArgs) -> anyhow::Result<()> {
    let cfg = config::load_settings(&args.config_path())?;
    let neighbors = config::load_neighbors(&args.neighbors_path())?;
    let access = grpc::Access {
        tls: match (&args.ned_grpc_tls_cert, &args.ned_grpc_tls_key, &args.ned_grpc_client_ca) {
            (Some(c), Some(k), Some(ca)) => Some(tokio_rustls::TlsAcceptor::from(
                tls::server_config_from_files(c, k, ca).context("--ned-grpc-tls-*")?,
            )),
            _ if args.ned_grpc_insecure => None,
            _ => bail!("--ned-grpc-tls-cert, --ned-grpc-tls-key and --ned-grpc-client-ca are required unless --ned-grpc-insecure"),
        },
        allow: args.ned_grpc_allow.clone(),
    };
    if access.tls.is_none() {
        tracing::warn!(listen = %args.ned_grpc_listen, allow = ?args.ned_grpc_allow,
            "edge gRPC without TLS or authentication (--ned-grpc-insecure): whoever reaches it can create interfaces on this node");
    }
    let ssl = ssl_files(&args)?;
    let mut targets = controller_targets(&cfg, ssl.is_some())?;
    let controllers = super::resolve_at_start(&mut targets).await?;
    let own_netns =
        Netns::open("/proc/self/ns/net").context("cannot open own network namespace")?;
    let ovs = Ovs::connect(&args.ovsdb, Duration::from_secs(15)).await?;
    match &ssl {
        Some(s) => ovs.ensure_ssl(s).await?,
        None => {
            tracing::warn!("OpenFlow to the provider over plain TCP, unauthenticated (as upstream)")
        }
    }
    let dpid = ids::datapath_id(&cfg.switch_name);
    let spec = BridgeSpec {
        name: cfg.switch_name.clone(),
        dpid_hex: ids::dpid_hex(dpid),
        datapath_type: args.datapath_type.clone(),
        controllers,
        max_backoff_ms: args.max_backoff_ms,
        inactivity_probe_ms: args.inactivity_probe_ms,
    };
    ovs.ensure_bridge(&spec).await?;
    let edge = Arc::new(Edge {
        ovs,
        bridge: cfg.switch_name.clone(),
        dpid,
        node_name: cfg.node_name.clone(),
        own_netns,
        tunnels: tokio::sync::Mutex::new(Tunnels {
            file: neighbors,
            added: Vec::new(),
        }),
        attach: tokio::sync::Mutex::new(()),
        datapath_type: args.datapath_type.clone(),
        attach_bridge_prefix: args.attach_bridge_prefix.clone(),
        cluster_bridges: if args.cluster_bridges.is_empty() {
            vec![ids::switch_name(&cfg.node_name, ids::OVERLAY_PROVIDER)]
        } else {
            args.cluster_bridges.clone()
        },
    });
    let adopted = edge.adopt_orphans().await?;
    {
        let t = edge.tunnels.lock().await;
        edge.reconcile_tunnels(&t).await?;
    }
    let listener = tokio::net::TcpListener::bind(args.ned_grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.ned_grpc_listen))?;
    tracing::info!(
        node = %cfg.node_name,
        bridge = %edge.bridge,
        dpid = %ids::dpid_hex(dpid),
        adopted,
        grpc = %listener.local_addr().map_err(|e| anyhow!(e))?,
        tls = access.tls.is_some(),
        "edge ready"
    );
    tokio::spawn(edge.clone().watch_neighbors(
        args.neighbors_path(),
        Duration::from_millis(args.neighbors_poll_ms),
    ));
    let stats = Arc::new(grpc::Stats::default());
    let service: Arc<dyn grpc::NedService> = edge.clone();
    tokio::select! {
        r = grpc::serve(listener, access, grpc::Limits::default(), stats.clone(), service) => {
            r.context("edge gRPC server stopped")?;
        }
        _ = l2sm_runtime::shutdown_signal() => tracing::info!("edge stopping"),
    }
    tracing::info!(stats = %stats.render(), "edge gRPC counters");
    Ok(())
}
