//! What a lab is made of, recorded on disk as it is built so `lab down` can always remove it,
//! even after a crash half-way through `lab up`.

use anyhow::{anyhow, bail, Context as _};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every lab lives under this directory.
pub const LAB_ROOT: &str = "/run/l2sm/lab";
/// Underlay subnet prefix: node k is .k, the controller is .254.
pub const UNDERLAY_PREFIX: &str = "10.250.0";
/// Controller address on the underlay.
pub const CONTROLLER_IP: &str = "10.250.0.254";
/// Management subnet prefix: node k is .k on its `mgmt` interface, the controller is .254.
/// Control traffic (OpenFlow, the REST API) takes this kernel path, like a host's own stack,
/// instead of the userspace OVS that carries the overlay.
pub const MGMT_PREFIX: &str = "10.251.0";
/// Controller address on the management network.
pub const CONTROLLER_MGMT_IP: &str = "10.251.0.254";
/// OpenFlow port of the lab controller.
pub const OPENFLOW_PORT: u16 = 6653;
/// API port of the lab controller.
pub const API_PORT: u16 = 8181;
/// The controller's DNS port (UDP and TCP), on every address of the underlay namespace.
pub const DNS_PORT: u16 = 53;
/// Multi-cluster labs: the provider controller's address (on the router namespace's `lo`),
/// reached from every node's management interface through the router.
pub const PROVIDER_IP: &str = "10.252.0.254";
/// OpenFlow port of the provider controller (upstream's edges dial 6633).
pub const PROVIDER_OPENFLOW_PORT: u16 = 6633;
/// REST port of the provider controller (upstream's `sdnPort` default).
pub const PROVIDER_API_PORT: u16 = 30808;
/// The provider controller's DNS update API (upstream's `SERVER_PORT`): cluster controllers
/// send it their pods on provider networks (`<name>.<network>.inter.l2sm`); its DNS answers
/// on [`DNS_PORT`] of [`PROVIDER_IP`].
pub const PROVIDER_DNS_GRPC_PORT: u16 = 8081;
/// gRPC port of the edges (upstream's NED port).
pub const EDGE_GRPC_PORT: u16 = 50051;
/// The router's host number on every cluster's underlay and management subnets.
pub const ROUTER_HOST: u8 = 253;

/// A lab's persisted description.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LabState {
    /// Lab name.
    pub name: String,
    /// Nodes.
    pub nodes: Vec<NodeState>,
    /// Controller process.
    pub controller_pid: Option<i32>,
    /// API credentials (generated per lab).
    pub api_user: String,
    /// API password.
    pub api_password: String,
    /// Pods by name.
    pub pods: BTreeMap<String, PodState>,
    /// Whether `lab up` finished.
    pub ready: bool,
    /// OpenFlow over plain TCP (`lab up --insecure-openflow`) instead of TLS.
    #[serde(default)]
    pub insecure_openflow: bool,
    /// Clusters of a multi-cluster lab (`lab up --clusters N`); empty: one cluster, the
    /// layout of `lab up --nodes N`.
    #[serde(default)]
    pub clusters: Vec<ClusterState>,
    /// The provider controller of a multi-cluster lab.
    #[serde(default)]
    pub provider_pid: Option<i32>,
    /// Provider networks: name -> cluster -> its hop.
    #[serde(default)]
    pub provider_networks: BTreeMap<String, BTreeMap<String, Hop>>,
    /// What `lab apply -f` made, so `lab delete -f` removes exactly that.
    #[serde(default)]
    pub applied: Vec<crate::apply::Applied>,
    /// IDS running on networks' mirror ports (`l2sm lab ids`), by network.
    #[serde(default)]
    pub ids: BTreeMap<String, IdsState>,
    /// Pods the IDS moved to a quarantine network, oldest first (the audit trail).
    #[serde(default)]
    pub quarantined: Vec<QuarantineRecord>,
}

/// One `l2sm lab ids` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdsState {
    /// The IDS pod (its namespace is `<prefix>-p-<pod>`).
    pub pod: String,
    /// Node it runs on.
    pub node: String,
    /// Its interface's port, the network's mirror.
    pub port: String,
    /// The `l2sm lab ids` process.
    pub pid: i32,
    /// Where offending pods go.
    #[serde(default)]
    pub quarantine_to: Option<String>,
    /// Rules loaded.
    pub rules: usize,
}

/// A pod moved to quarantine because of an alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// Pod (the lab's name; the controller's owner when the lab does not know the port).
    pub pod: String,
    /// Its port.
    pub port: String,
    /// Network it was moved out of.
    pub from: String,
    /// Quarantine network.
    pub to: String,
    /// The alert's rule.
    pub sid: u32,
    /// The alert's message.
    pub msg: String,
    /// The alert's EVE timestamp.
    pub alert_time: String,
    /// From the packet's capture to the controller's answer to the move, milliseconds.
    pub latency_ms: u64,
}

impl LabState {
    /// Whether this is a multi-cluster lab.
    pub fn is_multi(&self) -> bool {
        !self.clusters.is_empty()
    }
}

/// One cluster of a multi-cluster lab.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ClusterState {
    /// `c1`, `c2`, …
    pub name: String,
    /// Its controller.
    pub controller_pid: Option<i32>,
    /// Its edge (`l2sm edge` on its first node).
    pub edge_pid: Option<i32>,
    /// The node the edge runs on.
    pub edge_node: String,
}

/// A provider network's hop in one cluster: the patch port pair the edge made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hop {
    /// The edge's port, member at the provider (`of:<edge dpid>/<n>`).
    pub edge_port: String,
    /// The cluster switch's port, member at the cluster's controller.
    pub cluster_port: String,
}

/// Where one cluster's controller and underlay are: the single cluster of `lab up --nodes`,
/// or cluster `c<i>` of a multi-cluster lab.
#[derive(Debug, Clone)]
pub struct Site {
    /// `None` for the single cluster.
    pub cluster: Option<String>,
    /// Namespace of the underlay bridge and the controller.
    pub ul_ns: String,
    /// Underlay /24 prefix (`10.250.<i>`).
    pub ul_prefix: String,
    /// Management /24 prefix (`10.251.<i>`).
    pub mgmt_prefix: String,
    /// Directory of the controller's state, log, topology and certificate.
    pub dir: PathBuf,
}

impl Site {
    /// The controller's underlay address.
    pub fn controller_ip(&self) -> String {
        format!("{}.254", self.ul_prefix)
    }
    /// The controller's management address.
    pub fn controller_mgmt_ip(&self) -> String {
        format!("{}.254", self.mgmt_prefix)
    }
    /// The topology file the cluster's agents and controller read.
    pub fn topology_path(&self) -> PathBuf {
        self.dir.join("topology.json")
    }
    /// Label in messages.
    pub fn label(&self) -> &str {
        self.cluster.as_deref().unwrap_or("lab")
    }
}

/// One emulated node.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct NodeState {
    /// Node name (`n1`, …; `c1-n1`, … in a multi-cluster lab).
    pub name: String,
    /// Its cluster in a multi-cluster lab.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Underlay address.
    pub ip: String,
    /// ovsdb-server pid.
    pub ovsdb_pid: Option<i32>,
    /// ovs-vswitchd pid.
    pub vswitchd_pid: Option<i32>,
    /// Agent pid.
    pub agent_pid: Option<i32>,
}

/// Per-namespace `/etc` files, as `ip netns exec` bind-mounts them.
pub const NETNS_ETC: &str = "/etc/netns";

/// One pod.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PodState {
    /// Node it runs on.
    pub node: String,
    /// Its interfaces.
    pub attachments: Vec<PodAttachment>,
    /// Its Kubernetes `namespace/name` when `lab apply` made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<String>,
    /// Its Kubernetes labels when `lab apply` made it (QuarantinePodRequests select on them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One pod interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodAttachment {
    /// Network.
    pub network: String,
    /// Interface name in the pod.
    pub ifname: String,
    /// Addresses.
    pub ips: Vec<ipnet::IpNet>,
    /// Switch port id.
    pub port: String,
    /// Agent attachment id.
    pub attachment_id: String,
    /// The network's DNS address when the pod was attached (networks with an IPv4 CIDR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<std::net::Ipv4Addr>,
    /// The network's IPv6 DNS address when the pod was attached (networks with an IPv6 CIDR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns6: Option<std::net::Ipv6Addr>,
}

/// Names and paths of one lab.
#[derive(Debug, Clone)]
pub struct Lab {
    /// Lab name.
    pub name: String,
}

impl Lab {
    /// Validates the lab name: it ends up in namespace names and paths.
    pub fn new(name: &str) -> anyhow::Result<Lab> {
        if name.is_empty()
            || name.len() > 12
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            bail!("invalid lab name {name:?}: use 1-12 lowercase letters or digits");
        }
        Ok(Lab {
            name: name.to_string(),
        })
    }

    /// Prefix of every network namespace of this lab.
    pub fn ns_prefix(&self) -> String {
        format!("l2sm-{}-", self.name)
    }
    /// Underlay namespace (Linux bridge + controller).
    pub fn underlay_ns(&self) -> String {
        format!("l2sm-{}-ul", self.name)
    }
    /// Router namespace of a multi-cluster lab (routes between the clusters' underlays; the
    /// provider controller).
    pub fn router_ns(&self) -> String {
        format!("l2sm-{}-rt", self.name)
    }
    /// The site of the single cluster (`None`) or of cluster `c<i>`.
    pub fn site(&self, cluster: Option<&str>) -> anyhow::Result<Site> {
        match cluster {
            None => Ok(Site {
                cluster: None,
                ul_ns: self.underlay_ns(),
                ul_prefix: UNDERLAY_PREFIX.into(),
                mgmt_prefix: MGMT_PREFIX.into(),
                dir: self.dir(),
            }),
            Some(c) => {
                let i = cluster_index(c)?;
                Ok(Site {
                    cluster: Some(c.to_string()),
                    ul_ns: format!("l2sm-{}-{c}-ul", self.name),
                    ul_prefix: format!("10.250.{i}"),
                    mgmt_prefix: format!("10.251.{i}"),
                    dir: self.dir().join(c),
                })
            }
        }
    }
    /// Namespace of a node.
    pub fn node_ns(&self, node: &str) -> String {
        format!("l2sm-{}-{node}", self.name)
    }
    /// Namespace of a pod.
    pub fn pod_ns(&self, pod: &str) -> String {
        format!("l2sm-{}-p-{pod}", self.name)
    }
    /// Where `ip netns exec` (and `l2sm lab exec`) find a pod's own `/etc` files: the pod's
    /// `resolv.conf` lives here.
    pub fn pod_etc(&self, pod: &str) -> PathBuf {
        Path::new(NETNS_ETC).join(self.pod_ns(pod))
    }
    /// Lab directory.
    pub fn dir(&self) -> PathBuf {
        Path::new(LAB_ROOT).join(&self.name)
    }
    /// Run directory of a node's OVS and agent.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir().join(node)
    }
    /// A node's agent socket.
    pub fn agent_socket(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("agent.sock")
    }
    fn state_file(&self) -> PathBuf {
        self.dir().join("lab.json")
    }

    /// Loads the state; `None` when the lab does not exist.
    pub fn load(&self) -> anyhow::Result<Option<LabState>> {
        match std::fs::read(self.state_file()) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!(
                    "corrupt lab state {} (run `l2sm lab down`)",
                    self.state_file().display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read {}", self.state_file().display()))
            }
        }
    }

    /// Loads the state of a lab that must be up.
    pub fn load_ready(&self) -> anyhow::Result<LabState> {
        match self.load()? {
            Some(s) if s.ready => Ok(s),
            Some(_) => bail!(
                "lab {:?} is not fully up (run `l2sm lab down`, then `l2sm lab up`)",
                self.name
            ),
            None => bail!("lab {:?} is not up (run `l2sm lab up`)", self.name),
        }
    }

    /// Writes the state atomically (readable by root only: it holds the API password).
    pub fn save(&self, state: &LabState) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(self.dir())?;
        let tmp = self.dir().join("lab.json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(state)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.state_file())?;
        Ok(())
    }

    /// Takes the lab's lock so concurrent CLI calls do not interleave their changes.
    pub fn lock(&self) -> anyhow::Result<LabLock> {
        std::fs::create_dir_all(LAB_ROOT).with_context(|| format!("cannot create {LAB_ROOT}"))?;
        let path = Path::new(LAB_ROOT).join(format!("{}.lock", self.name));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow!("cannot lock {}: {e}", path.display()))?;
        Ok(LabLock { _lock: lock })
    }

    /// Controller API client for this lab (dialled from the underlay namespace).
    pub fn controller_api(&self, state: &LabState) -> anyhow::Result<l2sm_api::ControllerClient> {
        if state.is_multi() {
            bail!(
                "lab {:?} has several clusters, each with its controller: this command takes --cluster (network create/delete, attach) or --controller-url",
                self.name
            );
        }
        self.site_api(state, &self.site(None)?)
    }

    /// API client of a site's controller (dialled from its underlay namespace).
    pub fn site_api(
        &self,
        state: &LabState,
        site: &Site,
    ) -> anyhow::Result<l2sm_api::ControllerClient> {
        Ok(l2sm_api::ControllerClient::in_netns(
            &format!("http://{}:{API_PORT}", site.controller_ip()),
            Some((state.api_user.clone(), state.api_password.clone())),
            l2sm_api::RetryPolicy::once(),
            Path::new(l2sm_netns::NETNS_DIR).join(&site.ul_ns),
        )?)
    }

    /// API client of the provider controller (dialled from the router namespace).
    pub fn provider_api(&self, state: &LabState) -> anyhow::Result<l2sm_api::ControllerClient> {
        Ok(l2sm_api::ControllerClient::in_netns(
            &format!("http://{PROVIDER_IP}:{PROVIDER_API_PORT}"),
            Some((state.api_user.clone(), state.api_password.clone())),
            l2sm_api::RetryPolicy::once(),
            Path::new(l2sm_netns::NETNS_DIR).join(self.router_ns()),
        )?)
    }
}

/// The number of a cluster name `c<i>` (1 to 9).
pub fn cluster_index(name: &str) -> anyhow::Result<u8> {
    name.strip_prefix('c')
        .and_then(|n| n.parse::<u8>().ok())
        .filter(|i| (1..=9).contains(i) && name.len() == 2)
        .ok_or_else(|| anyhow!("invalid cluster {name:?}: clusters are c1 to c9"))
}

/// Held while a CLI command changes a lab.
pub struct LabLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}
