//! The overlay topology: the Overlay CR's `topology` (nodes and bidirectional links
//! `endpointA`/`endpointB`) plus each node's underlay address. Upstream's switch reads the same
//! thing from `topology.json` (`Nodes`/`Links`, `nodeIP`); both spellings are accepted. Agents
//! take their own links from it; the controller takes the whole graph (and the datapath ids of
//! switches it does not manage, such as hardware OpenFlow switches). The lab and the operator
//! write it with [`TopologyFile`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Why a topology cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The document is not a valid topology.
    #[error("invalid topology: {0}")]
    Invalid(String),
    /// A node's address does not resolve.
    #[error("{0}")]
    Resolve(String),
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file's content is refused.
    #[error("topology {path}: {inner}")]
    File {
        /// The file.
        path: String,
        /// Why.
        inner: Box<TopologyError>,
    },
}

type Result<T> = std::result::Result<T, TopologyError>;

macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err(TopologyError::Invalid(format!($($arg)*)))
    };
}

/// A node entry: a bare name (Overlay CR) or a name with its address (topology.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeEntry {
    /// Just the name; the address comes from [`TopologyFile::addresses`].
    Name(String),
    /// A name with its address or datapath id.
    Full {
        /// Node name.
        name: String,
        /// Underlay address (IP or resolvable name).
        #[serde(
            rename = "nodeIP",
            alias = "nodeIp",
            alias = "ip",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        node_ip: Option<String>,
        /// Datapath id of a switch not managed by an agent (`of:<16 hex>` or 16 hex digits).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dpid: Option<String>,
    },
}

/// A link entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEntry {
    /// One end (a node name).
    #[serde(rename = "endpointA")]
    pub endpoint_a: String,
    /// The other end.
    #[serde(rename = "endpointB")]
    pub endpoint_b: String,
    /// `tunnel` (default: VXLAN between the nodes' addresses) or `trunk` (a plain interface
    /// at each end, e.g. a cable to an OpenFlow hardware switch; networks ride as VLAN tags).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Trunk only: the interface at endpoint A.
    #[serde(
        rename = "interfaceA",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_a: Option<String>,
    /// Trunk only: the interface at endpoint B.
    #[serde(
        rename = "interfaceB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_b: Option<String>,
}

impl LinkEntry {
    /// A tunnel between two nodes.
    pub fn tunnel(a: &str, b: &str) -> Self {
        LinkEntry {
            endpoint_a: a.to_string(),
            endpoint_b: b.to_string(),
            ..Default::default()
        }
    }
}

/// The topology document as written: what the lab and the operator's Overlay reconciler give
/// the agents and the controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyFile {
    /// Nodes.
    #[serde(alias = "Nodes")]
    pub nodes: Vec<NodeEntry>,
    /// Links; none means a full mesh of tunnels.
    #[serde(alias = "Links", default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<LinkEntry>>,
    /// Node name -> underlay address, for nodes listed by name only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, String>,
}

impl TopologyFile {
    /// Parses a document without validating it (see [`parse`] for that).
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| TopologyError::Invalid(e.to_string()))
    }

    /// The document as JSON.
    pub fn to_json(&self) -> String {
        // Plain strings and maps: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A node of the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopoNode {
    /// Node name.
    pub name: String,
    /// Underlay address as written (IP or name), needed for tunnels.
    pub address: Option<String>,
    /// Datapath id given explicitly (unmanaged switches); otherwise derived from the name.
    pub dpid: Option<u64>,
}

/// A link of the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopoLink {
    /// Endpoint A.
    pub a: String,
    /// Endpoint B.
    pub b: String,
    /// Tunnel or trunk.
    pub kind: l2sm_pipeline::LinkKind,
    /// Trunk interface at A.
    pub interface_a: Option<String>,
    /// Trunk interface at B.
    pub interface_b: Option<String>,
}

/// A whole, validated topology.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Nodes.
    pub nodes: Vec<TopoNode>,
    /// Links (a full mesh of tunnels when the document has no `links`).
    pub links: Vec<TopoLink>,
}

impl Topology {
    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&TopoNode> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

fn parse_dpid(s: &str) -> Result<u64> {
    let hex = s.strip_prefix("of:").unwrap_or(s);
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        invalid!("dpid {s:?} is not 16 hex digits");
    }
    u64::from_str_radix(hex, 16).map_err(|e| TopologyError::Invalid(e.to_string()))
}

/// Parses and validates a topology document.
pub fn parse(json: &str) -> Result<Topology> {
    validate(TopologyFile::from_json(json)?)
}

/// Validates a topology document.
pub fn validate(file: TopologyFile) -> Result<Topology> {
    let mut nodes: Vec<TopoNode> = Vec::new();
    // Name -> has an address; lookups stay O(1) with thousands of nodes.
    let mut known: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for entry in &file.nodes {
        let (name, ip, dpid) = match entry {
            NodeEntry::Name(n) => (n.clone(), None, None),
            NodeEntry::Full {
                name,
                node_ip,
                dpid,
            } => (name.clone(), node_ip.clone(), dpid.clone()),
        };
        if name.is_empty() {
            invalid!("a node has an empty name");
        }
        let address = ip.or_else(|| file.addresses.get(&name).cloned());
        if known.insert(name.clone(), address.is_some()).is_some() {
            invalid!("node {name:?} is listed twice");
        }
        let dpid = dpid.as_deref().map(parse_dpid).transpose()?;
        nodes.push(TopoNode {
            name,
            address,
            dpid,
        });
    }
    let mut links = Vec::new();
    match &file.links {
        None => {
            for (i, a) in nodes.iter().enumerate() {
                for b in &nodes[i + 1..] {
                    links.push(TopoLink {
                        a: a.name.clone(),
                        b: b.name.clone(),
                        kind: l2sm_pipeline::LinkKind::Tunnel,
                        interface_a: None,
                        interface_b: None,
                    });
                }
            }
        }
        Some(entries) => {
            for l in entries {
                for end in [&l.endpoint_a, &l.endpoint_b] {
                    if !known.contains_key(end) {
                        invalid!("link endpoint {end:?} is not a listed node");
                    }
                }
                if l.endpoint_a == l.endpoint_b {
                    invalid!("link from {:?} to itself", l.endpoint_a);
                }
                let kind = match l.kind.as_deref() {
                    None | Some("tunnel") => l2sm_pipeline::LinkKind::Tunnel,
                    Some("trunk") => l2sm_pipeline::LinkKind::Trunk,
                    Some(other) => {
                        invalid!("link type {other:?} (use tunnel or trunk)")
                    }
                };
                if kind == l2sm_pipeline::LinkKind::Trunk {
                    for iface in [&l.interface_a, &l.interface_b] {
                        let Some(iface) = iface else {
                            invalid!(
                                "trunk link {} - {} needs interfaceA and interfaceB",
                                l.endpoint_a,
                                l.endpoint_b
                            );
                        };
                        if iface.is_empty() || iface.len() > 15 || iface.contains('/') {
                            invalid!("bad trunk interface name {iface:?}");
                        }
                    }
                }
                links.push(TopoLink {
                    a: l.endpoint_a.clone(),
                    b: l.endpoint_b.clone(),
                    kind,
                    interface_a: l.interface_a.clone(),
                    interface_b: l.interface_b.clone(),
                });
            }
        }
    }
    for l in links
        .iter()
        .filter(|l| l.kind == l2sm_pipeline::LinkKind::Tunnel)
    {
        for end in [&l.a, &l.b] {
            if known.get(end) == Some(&false) {
                invalid!("no address for node {end:?}");
            }
        }
    }
    Ok(Topology { nodes, links })
}

/// Reads and parses a whole topology file.
pub fn load_all(path: &Path) -> Result<Topology> {
    parse(&read(path)?).map_err(|e| in_file(path, e))
}

/// Resolves a node address to an IP string (tunnel port names derive from it).
pub fn resolve_address(host: &str) -> Result<String> {
    resolve(host)
}

/// A trunk link of this node: a local interface that becomes a switch port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// Node at the other end.
    pub peer: String,
    /// Local interface name.
    pub interface: String,
}

/// Everything this node must be linked to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLinks {
    /// VXLAN tunnels.
    pub tunnels: Vec<Peer>,
    /// Trunk interfaces.
    pub trunks: Vec<Trunk>,
}

/// A peer this node must have a link to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Peer node name.
    pub name: String,
    /// Peer underlay address (IP or resolvable name, resolved to an IP).
    pub address: String,
}

fn resolve(host: &str) -> Result<String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    use std::net::ToSocketAddrs as _;
    let addr = (host, 0)
        .to_socket_addrs()
        .map_err(|e| TopologyError::Resolve(format!("cannot resolve node address {host:?}: {e}")))?
        .next()
        .ok_or_else(|| {
            TopologyError::Resolve(format!("node address {host:?} resolves to nothing"))
        })?;
    Ok(addr.ip().to_string())
}

/// Parses a topology document and returns every link of `me`. Without `links`, every node
/// is linked to every other by a tunnel (full mesh).
pub fn links_of(json: &str, me: &str) -> Result<NodeLinks> {
    let topo = parse(json)?;
    if topo.node(me).is_none() {
        invalid!("this node ({me:?}) is not in its node list");
    }
    let mut out = NodeLinks::default();
    let mut peers: Vec<&str> = Vec::new();
    for l in &topo.links {
        let (other, local_if) = if l.a == me {
            (&l.b, &l.interface_a)
        } else if l.b == me {
            (&l.a, &l.interface_b)
        } else {
            continue;
        };
        match l.kind {
            l2sm_pipeline::LinkKind::Trunk => out.trunks.push(Trunk {
                peer: other.clone(),
                interface: local_if.clone().unwrap_or_default(),
            }),
            l2sm_pipeline::LinkKind::Tunnel => {
                if !peers.contains(&other.as_str()) {
                    peers.push(other);
                }
            }
        }
    }
    peers.sort();
    for name in peers {
        let host = topo
            .node(name)
            .and_then(|n| n.address.clone())
            .unwrap_or_default();
        out.tunnels.push(Peer {
            address: resolve(&host)?,
            name: name.to_string(),
        });
    }
    Ok(out)
}

/// Reads and parses a topology file.
pub fn load(path: &Path, me: &str) -> Result<NodeLinks> {
    links_of(&read(path)?, me).map_err(|e| in_file(path, e))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn in_file(path: &Path, e: TopologyError) -> TopologyError {
    TopologyError::File {
        path: path.display().to_string(),
        inner: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let file = TopologyFile {
            nodes: vec![
                NodeEntry::Name("n1".into()),
                NodeEntry::Full {
                    name: "n2".into(),
                    node_ip: Some("10.0.0.2".into()),
                    dpid: None,
                },
                NodeEntry::Full {
                    name: "hw".into(),
                    node_ip: None,
                    dpid: Some("of:00000000000000a1".into()),
                },
            ],
            links: Some(vec![
                LinkEntry::tunnel("n1", "n2"),
                LinkEntry {
                    endpoint_a: "n1".into(),
                    endpoint_b: "hw".into(),
                    kind: Some("trunk".into()),
                    interface_a: Some("tr0".into()),
                    interface_b: Some("p1".into()),
                },
            ]),
            addresses: [("n1".to_string(), "10.0.0.1".to_string())].into(),
        };
        let json = file.to_json();
        assert_eq!(TopologyFile::from_json(&json).unwrap(), file);
        let topo = parse(&json).unwrap();
        assert_eq!(topo.nodes.len(), 3);
        assert_eq!(topo.node("hw").and_then(|n| n.dpid), Some(0xa1));
        assert_eq!(
            topo.node("n1").and_then(|n| n.address.clone()).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(topo.links[1].kind, l2sm_pipeline::LinkKind::Trunk);
        // Absent optional fields are left out, as upstream writes them.
        assert!(!json.contains("null"), "{json}");
    }

    #[test]
    fn upstream_topology_json() {
        let json = r#"{"Nodes":[{"name":"a","nodeIP":"10.0.0.1"},{"name":"b","nodeIP":"10.0.0.2"},
            {"name":"c","nodeIP":"10.0.0.3"}],"Links":[{"endpointA":"a","endpointB":"b"},
            {"endpointA":"c","endpointB":"a"},{"endpointA":"b","endpointB":"c"}]}"#;
        let peers = links_of(json, "a").unwrap().tunnels;
        assert_eq!(
            peers,
            vec![
                Peer {
                    name: "b".into(),
                    address: "10.0.0.2".into()
                },
                Peer {
                    name: "c".into(),
                    address: "10.0.0.3".into()
                }
            ]
        );
    }

    #[test]
    fn overlay_cr_shape_with_addresses_and_a_line() {
        let json = r#"{"nodes":["n1","n2","n3"],"links":[{"endpointA":"n1","endpointB":"n2"},
            {"endpointA":"n2","endpointB":"n3"}],"addresses":{"n1":"10.1.0.1","n2":"10.1.0.2","n3":"10.1.0.3"}}"#;
        assert_eq!(links_of(json, "n1").unwrap().tunnels.len(), 1);
        assert_eq!(links_of(json, "n2").unwrap().tunnels.len(), 2);
    }

    #[test]
    fn no_links_means_full_mesh() {
        let json =
            r#"{"nodes":["x","y","z"],"addresses":{"x":"::1","y":"10.0.0.2","z":"10.0.0.3"}}"#;
        assert_eq!(links_of(json, "x").unwrap().tunnels.len(), 2);
    }

    #[test]
    fn trunk_links_name_the_local_interface() {
        let json = r#"{"nodes":["n1","n2","hw"],"addresses":{"n1":"10.0.0.1","n2":"10.0.0.2"},
            "links":[{"endpointA":"n1","endpointB":"hw","type":"trunk","interfaceA":"tr0","interfaceB":"p1"},
            {"endpointA":"hw","endpointB":"n2","type":"trunk","interfaceA":"p2","interfaceB":"tr0"},
            {"endpointA":"n1","endpointB":"n2"}]}"#;
        let n1 = links_of(json, "n1").unwrap();
        assert_eq!(
            n1.trunks,
            vec![Trunk {
                peer: "hw".into(),
                interface: "tr0".into()
            }]
        );
        assert_eq!(n1.tunnels.len(), 1);
        let bad =
            r#"{"nodes":["n1","hw"],"links":[{"endpointA":"n1","endpointB":"hw","type":"trunk"}]}"#;
        assert!(format!("{:#}", links_of(bad, "n1").unwrap_err()).contains("needs interfaceA"));
        let bad =
            r#"{"nodes":["n1","hw"],"links":[{"endpointA":"n1","endpointB":"hw","type":"wire"}]}"#;
        assert!(format!("{:#}", links_of(bad, "n1").unwrap_err()).contains("link type"));
    }

    #[test]
    fn bad_topologies_are_refused_with_a_reason() {
        for (json, needle) in [
            (r#"{"nodes":["a","b"]}"#, "no address for node \"a\""),
            (
                r#"{"nodes":["b"],"addresses":{"b":"10.0.0.1"}}"#,
                "not in its node list",
            ),
            (r#"{"nodes":["a","a"]}"#, "listed twice"),
            (
                r#"{"nodes":["a"],"links":[{"endpointA":"a","endpointB":"q"}]}"#,
                "not a listed node",
            ),
            (
                r#"{"nodes":["a"],"links":[{"endpointA":"a","endpointB":"a"}]}"#,
                "to itself",
            ),
            (r#"{"nodes":["a"],"bogus":1}"#, "invalid topology"),
            (r#"not json"#, "invalid topology"),
        ] {
            let err = format!("{:#}", links_of(json, "a").unwrap_err());
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
