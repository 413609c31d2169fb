//! Upstream's NED configuration files, as the upstream operator writes them into the edge's
//! ConfigMap: `config.json` (controller, node, switch name) and `neighbors.json` (this edge's
//! address and the other edges'). Unknown fields are ignored, as upstream's `encoding/json`
//! does; unlike upstream, values are validated and a bad file is an error that changes
//! nothing.

use anyhow::{anyhow, bail, Context as _};
use l2sm_pipeline::ids;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;

/// Largest configuration file read.
const MAX_FILE: u64 = 1024 * 1024;

/// `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Controller addresses (IPs or host names): the provider controller's OpenFlow
    /// endpoint(s).
    #[serde(default)]
    pub controller_ip: Vec<String>,
    /// OpenFlow port, as a string (upstream's type).
    #[serde(default)]
    pub controller_port: String,
    /// Provider name (part of the switch name when `switchName` is empty).
    #[serde(default)]
    pub provider_name: String,
    /// The edge's node name (answered by AttachInterface).
    #[serde(default)]
    pub node_name: String,
    /// The bridge name (the upstream operator computes `br-<sha256(node+provider)[:8]>`).
    #[serde(default)]
    pub switch_name: String,
}

/// `neighbors.json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Neighbors {
    /// This edge's node name.
    #[serde(default)]
    pub name: String,
    /// This edge's underlay address: the tunnels' local IP.
    #[serde(rename = "nodeIP")]
    pub node_ip: String,
    /// The other edges' addresses (upstream: `ned.spec.neighbors[].domain`).
    #[serde(default)]
    pub neighbor_nodes: Vec<String>,
}

/// What the edge runs with, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Node name.
    pub node_name: String,
    /// Bridge name.
    pub switch_name: String,
    /// OpenFlow port of the controller(s).
    pub controller_port: u16,
    /// Controller hosts (IPs or names).
    pub controllers: Vec<String>,
}

/// The validated neighbour set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborSet {
    /// Local underlay address.
    pub local: IpAddr,
    /// Remote edges, without duplicates, in file order.
    pub remotes: Vec<IpAddr>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_FILE {
        bail!("{} is larger than {MAX_FILE} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn valid_bridge_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Parses and validates `config.json`.
pub fn parse_settings(bytes: &[u8]) -> anyhow::Result<EdgeConfig> {
    let s: Settings = serde_json::from_slice(bytes).context("config.json")?;
    if s.node_name.is_empty() {
        bail!("config.json: nodeName is empty");
    }
    let switch_name = if s.switch_name.is_empty() {
        ids::switch_name(&s.node_name, &s.provider_name)
    } else {
        s.switch_name.clone()
    };
    if !valid_bridge_name(&switch_name) {
        bail!("config.json: switchName {switch_name:?} is not a valid interface name");
    }
    let controller_port: u16 = s
        .controller_port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            anyhow!(
                "config.json: controllerPort {:?} is not a port number",
                s.controller_port
            )
        })?;
    if s.controller_ip.is_empty() {
        bail!("config.json: controllerIp is empty");
    }
    for c in &s.controller_ip {
        if c.is_empty() || c.len() > 253 || c.chars().any(|ch| ch.is_whitespace() || ch == '/') {
            bail!("config.json: controllerIp entry {c:?} is neither an address nor a host name");
        }
    }
    Ok(EdgeConfig {
        node_name: s.node_name,
        switch_name,
        controller_port,
        controllers: s.controller_ip,
    })
}

/// Parses and validates `neighbors.json`: every address must be an IP of the local
/// address's family (OVS tunnels need addresses; upstream passed names through and failed).
pub fn parse_neighbors(bytes: &[u8]) -> anyhow::Result<NeighborSet> {
    let n: Neighbors = serde_json::from_slice(bytes).context("neighbors.json")?;
    let local: IpAddr = n.node_ip.parse().map_err(|_| {
        anyhow!(
            "neighbors.json: nodeIP {:?} is not an IP address",
            n.node_ip
        )
    })?;
    let mut remotes = Vec::new();
    for r in &n.neighbor_nodes {
        let ip: IpAddr = r
            .parse()
            .map_err(|_| anyhow!("neighbors.json: neighbour {r:?} is not an IP address"))?;
        check_remote(local, ip).map_err(|e| anyhow!("neighbors.json: {e}"))?;
        if !remotes.contains(&ip) {
            remotes.push(ip);
        }
    }
    Ok(NeighborSet { local, remotes })
}

/// A remote edge address must differ from the local one and be of the same family.
pub fn check_remote(local: IpAddr, remote: IpAddr) -> Result<(), String> {
    if remote == local {
        return Err(format!("neighbour {remote} is this edge's own address"));
    }
    if remote.is_ipv4() != local.is_ipv4() {
        return Err(format!(
            "neighbour {remote} and local address {local} are of different address families"
        ));
    }
    if remote.is_unspecified() || remote.is_multicast() || remote.is_loopback() {
        return Err(format!("neighbour {remote} is not a unicast address"));
    }
    Ok(())
}

/// Reads `config.json`.
pub fn load_settings(path: &Path) -> anyhow::Result<EdgeConfig> {
    parse_settings(&read(path)?).with_context(|| path.display().to_string())
}

/// Reads `neighbors.json`.
pub fn load_neighbors(path: &Path) -> anyhow::Result<NeighborSet> {
    parse_neighbors(&read(path)?).with_context(|| path.display().to_string())
}

/// Upstream's NED tunnel name: `vxlan-` + the first 5 hex digits of sha256(local + remote),
/// the two addresses concatenated as text.
pub fn edge_tunnel_name(local: IpAddr, remote: IpAddr) -> String {
    ids::vxlan_port_name(&format!("{local}{remote}"))
}
