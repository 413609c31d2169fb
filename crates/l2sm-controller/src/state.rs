//! The controller's model: networks, their VNIs, VLAN ids, member ports, mirror ports and IPAM
//! allocations. The model in memory is a cache; the truth is a redb database in the state
//! directory, changed in one durable transaction per API change, so a restart (or a crash)
//! keeps every acknowledged change and never half of one.

use super::ipam::{Ipam, IpamError};
use anyhow::Context as _;
use l2sm_pipeline::ids::PortId;
use l2sm_pipeline::{FloodMode, LinkKind, NetworkView, SwitchView, MAX_VNI};
use redb::{Database, ReadableTable as _, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One virtual network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Network {
    /// Stable VXLAN network identifier, never 0, never reused while the network exists.
    pub vni: u32,
    /// Member ports, in the order they joined.
    pub endpoints: Vec<PortId>,
    /// Port receiving a copy of the network's traffic (stored; programming comes later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_port: Option<PortId>,
    /// 802.1Q id of the network on trunk links; `None` once all 4094 are taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Address management; `None` for an L2-only network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
}

/// Who a member port belongs to, as the agent that plumbed it reports: the operator needs the
/// exact pod of each port (the switch port is invisible in Kubernetes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortOwner {
    /// Pod, `namespace/name` (absent for attachments made without a pod identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Attachment id (`cni/<container>/<ifname>` for the CNI plugin).
    pub attachment: String,
    /// Interface name inside the pod.
    #[serde(default)]
    pub interface: String,
}

/// Highest usable 802.1Q id.
pub const MAX_VLAN: u16 = 4094;

/// Everything the controller must remember across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Model {
    /// Networks by name.
    pub networks: BTreeMap<String, Network>,
    /// Next VNI to hand out.
    #[serde(default = "first_vni")]
    pub next_vni: u32,
    /// Owners of member ports. An owner lives as long as its port is a member: it goes when
    /// the port leaves its network (or the network is deleted) and follows a move.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_owners: BTreeMap<PortId, PortOwner>,
}

fn first_vni() -> u32 {
    1
}

/// Why a model change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// The network does not exist.
    #[error("network {0:?} does not exist")]
    UnknownNetwork(String),
    /// The port already belongs to another network; a port is in exactly one network.
    #[error("port {port} already belongs to network {network:?}")]
    PortInOtherNetwork {
        /// The port.
        port: PortId,
        /// Its current network.
        network: String,
    },
    /// The port is the network's mirror port.
    #[error("port {0} is the mirror port of the network")]
    PortIsMirror(PortId),
    /// The port is in no network.
    #[error("port {0} is not a member of any network")]
    PortNotMember(PortId),
    /// Every VNI is in use.
    #[error("no free VNI left")]
    VniExhausted,
    /// The network exists with other IPAM settings.
    #[error("network {0:?} already exists with different IPAM settings")]
    IpamMismatch(String),
    /// An address request was refused.
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

impl Model {
    fn allocate_vni(&mut self) -> Result<u32, ModelError> {
        let used: BTreeSet<u32> = self.networks.values().map(|n| n.vni).collect();
        if used.len() >= MAX_VNI as usize {
            return Err(ModelError::VniExhausted);
        }
        let mut candidate = self.next_vni.clamp(1, MAX_VNI);
        while used.contains(&candidate) {
            candidate = if candidate >= MAX_VNI {
                1
            } else {
                candidate + 1
            };
        }
        self.next_vni = if candidate >= MAX_VNI {
            1
        } else {
            candidate + 1
        };
        Ok(candidate)
    }

    /// Creates a network; creating an existing one changes nothing (upstream semantics).
    /// Returns whether the network is new.
    pub fn create_network(
        &mut self,
        name: &str,
        mirror_port: Option<PortId>,
    ) -> Result<bool, ModelError> {
        if self.networks.contains_key(name) {
            return Ok(false);
        }
        let vni = self.allocate_vni()?;
        let vlan = self.free_vlan();
        self.networks.insert(
            name.to_string(),
            Network {
                vni,
                endpoints: Vec::new(),
                mirror_port,
                vlan,
                ipam: None,
            },
        );
        Ok(true)
    }

    /// Lowest 802.1Q id no network uses.
    fn free_vlan(&self) -> Option<u16> {
        let used: BTreeSet<u16> = self.networks.values().filter_map(|n| n.vlan).collect();
        (1..=MAX_VLAN).find(|v| !used.contains(v))
    }

    /// Gives a VLAN id to networks that have none (state written by older versions).
    pub fn assign_missing_vlans(&mut self) {
        let names: Vec<String> = self
            .networks
            .iter()
            .filter(|(_, n)| n.vlan.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for name in names {
            let vlan = self.free_vlan();
            if let Some(n) = self.networks.get_mut(&name) {
                n.vlan = vlan;
            }
        }
    }

    /// Creates a network with address management; an existing network with the same settings
    /// is left as it is (returns false).
    pub fn create_network_with_ipam(&mut self, name: &str, ipam: Ipam) -> Result<bool, ModelError> {
        if let Some(existing) = self.networks.get(name) {
            let same = existing.ipam.as_ref().is_some_and(|i| {
                i.cidrs == ipam.cidrs
                    && i.pod_ranges == ipam.pod_ranges
                    && i.exclude == ipam.exclude
            });
            return if same {
                Ok(false)
            } else {
                Err(ModelError::IpamMismatch(name.to_string()))
            };
        }
        self.create_network(name, None)?;
        if let Some(n) = self.networks.get_mut(name) {
            n.ipam = Some(ipam);
        }
        Ok(true)
    }

    /// Addresses for `owner` on `network`: allocated (or validated static ones) when the
    /// network has IPAM; the static ones as given otherwise (L2 only: nothing is invented).
    /// `port`, when given, records which switch port the owner is attached to.
    pub fn allocate(
        &mut self,
        network: &str,
        owner: &str,
        requested: &[ipnet::IpNet],
        port: Option<PortId>,
    ) -> Result<Vec<ipnet::IpNet>, ModelError> {
        let net = self
            .networks
            .get_mut(network)
            .ok_or_else(|| ModelError::UnknownNetwork(network.to_string()))?;
        match net.ipam.as_mut() {
            None => Ok(requested.to_vec()),
            Some(ipam) => {
                let addrs: Vec<std::net::IpAddr> = requested.iter().map(|n| n.addr()).collect();
                let ips = ipam.allocate(owner, &addrs)?;
                if let Some(port) = port {
                    ipam.ports.insert(owner.to_string(), port);
                }
                Ok(ips)
            }
        }
    }

    /// Frees what `owner` holds on `network` (nothing to do for unknown networks).
    pub fn release(&mut self, network: &str, owner: &str) -> usize {
        self.networks
            .get_mut(network)
            .and_then(|n| n.ipam.as_mut())
            .map(|i| i.release(owner))
            .unwrap_or(0)
    }

    /// Frees allocations of owners starting with `prefix` that are not in `valid`.
    pub fn gc(&mut self, prefix: &str, valid: &BTreeSet<String>) -> usize {
        let mut freed = 0;
        for ipam in self.networks.values_mut().filter_map(|n| n.ipam.as_mut()) {
            let before = ipam.allocations.len();
            ipam.allocations
                .retain(|_, o| !o.starts_with(prefix) || valid.contains(o));
            ipam.ports
                .retain(|o, _| !o.starts_with(prefix) || valid.contains(o));
            freed += before - ipam.allocations.len();
        }
        freed
    }

    /// Deletes a network and its memberships (and their owners). Returns whether it existed.
    pub fn delete_network(&mut self, name: &str) -> bool {
        match self.networks.remove(name) {
            Some(net) => {
                for ep in &net.endpoints {
                    self.port_owners.remove(ep);
                }
                true
            }
            None => false,
        }
    }

    /// Records who a member port belongs to (replacing an earlier owner). Returns whether
    /// anything changed.
    pub fn set_owner(&mut self, port: PortId, owner: PortOwner) -> Result<bool, ModelError> {
        if self.network_of(&port).is_none() {
            return Err(ModelError::PortNotMember(port));
        }
        Ok(self.port_owners.insert(port, owner.clone()) != Some(owner))
    }

    /// Forgets a port's owner. Returns whether it had one.
    pub fn clear_owner(&mut self, port: &PortId) -> bool {
        self.port_owners.remove(port).is_some()
    }

    /// Moves a member port from network `from` to network `to` in one change, keeping its
    /// owner (quarantine). Returns false when it is in `to` already.
    pub fn move_port(&mut self, port: PortId, from: &str, to: &str) -> Result<bool, ModelError> {
        if !self.networks.contains_key(to) {
            return Err(ModelError::UnknownNetwork(to.to_string()));
        }
        match self.network_of(&port) {
            Some(n) if n == to => return Ok(false),
            Some(n) if n == from => {}
            Some(n) => {
                return Err(ModelError::PortInOtherNetwork {
                    port,
                    network: n.to_string(),
                })
            }
            None => return Err(ModelError::PortNotMember(port)),
        }
        if let Some(net) = self.networks.get_mut(from) {
            net.endpoints.retain(|p| *p != port);
        }
        if let Some(net) = self.networks.get_mut(to) {
            net.endpoints.push(port);
        }
        Ok(true)
    }

    /// The network a port belongs to, if any.
    pub fn network_of(&self, port: &PortId) -> Option<&str> {
        self.networks
            .iter()
            .find(|(_, n)| n.endpoints.contains(port))
            .map(|(name, _)| name.as_str())
    }

    /// Adds member ports, all or nothing. Ports already in this network are kept as they are.
    pub fn add_ports(&mut self, name: &str, ports: &[PortId]) -> Result<bool, ModelError> {
        let net = self
            .networks
            .get(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        for port in ports {
            // The mirror of any network: it would leak that network's copies into this one.
            if net.mirror_port.as_ref() == Some(port) || self.mirror_of(port).is_some() {
                return Err(ModelError::PortIsMirror(*port));
            }
            if let Some(other) = self.network_of(port) {
                if other != name {
                    return Err(ModelError::PortInOtherNetwork {
                        port: *port,
                        network: other.to_string(),
                    });
                }
            }
        }
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        let mut changed = false;
        for port in ports {
            if !net.endpoints.contains(port) {
                net.endpoints.push(*port);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Removes member ports, all or nothing.
    pub fn remove_ports(&mut self, name: &str, ports: &[PortId]) -> Result<(), ModelError> {
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        if let Some(missing) = ports.iter().find(|p| !net.endpoints.contains(p)) {
            return Err(ModelError::PortNotMember(*missing));
        }
        net.endpoints.retain(|p| !ports.contains(p));
        for p in ports {
            self.port_owners.remove(p);
        }
        Ok(())
    }

    /// The network whose mirror port `port` is, if any.
    pub fn mirror_of(&self, port: &PortId) -> Option<&str> {
        self.networks
            .iter()
            .find(|(_, n)| n.mirror_port.as_ref() == Some(port))
            .map(|(name, _)| name.as_str())
    }

    /// Sets (or replaces) the mirror port of a network.
    pub fn set_mirror_port(&mut self, name: &str, port: PortId) -> Result<(), ModelError> {
        if let Some(owner) = self
            .network_of(&port)
            .or_else(|| self.mirror_of(&port).filter(|n| *n != name))
        {
            return Err(ModelError::PortInOtherNetwork {
                port,
                network: owner.to_string(),
            });
        }
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        net.mirror_port = Some(port);
        Ok(())
    }

    /// Stops mirroring a network.
    pub fn clear_mirror_port(&mut self, name: &str) -> Result<(), ModelError> {
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        net.mirror_port = None;
        Ok(())
    }

    /// The compiler input for switch `dpid` on a full mesh: every network with members here
    /// floods to every link, with split horizon. Which tunnel leads to the mirror's switch is
    /// unknown here, so copies go into every tunnel and only the mirror's switch keeps them.
    pub fn switch_view(&self, dpid: u64, links: BTreeMap<u32, LinkKind>) -> SwitchView {
        let mut networks: BTreeMap<u32, NetworkView> = BTreeMap::new();
        for net in self.networks.values() {
            let mirror_here = net.mirror_port.filter(|m| m.dpid == dpid);
            if mirror_here.is_none() && !net.endpoints.iter().any(|ep| ep.dpid == dpid) {
                continue;
            }
            let members = net
                .endpoints
                .iter()
                .filter(|ep| ep.dpid == dpid)
                .map(|ep| ep.port)
                .collect();
            let mirror = net.mirror_port.map(|_| match mirror_here {
                Some(m) => l2sm_pipeline::MirrorView {
                    port: Some(m.port),
                    toward: BTreeSet::new(),
                },
                None => l2sm_pipeline::MirrorView {
                    port: None,
                    toward: links
                        .iter()
                        .filter(|(_, k)| **k == LinkKind::Tunnel)
                        .map(|(p, _)| *p)
                        .collect(),
                },
            });
            networks.insert(
                net.vni,
                NetworkView {
                    members,
                    link_ports: links.keys().copied().collect(),
                    mode: FloodMode::Mesh,
                    vlan: net.vlan,
                    mirror,
                },
            );
        }
        SwitchView { links, networks }
    }
}

/// The network row of the store: everything but members and allocations, which have their own
/// tables so that a join or an allocation writes one small row.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkRow {
    vni: u32,
    #[serde(default)]
    vlan: Option<u16>,
    #[serde(default)]
    mirror_port: Option<PortId>,
    #[serde(default)]
    ipam: Option<IpamSettings>,
}

/// IPAM settings without the allocations.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpamSettings {
    cidrs: Vec<ipnet::IpNet>,
    pod_ranges: Vec<ipnet::IpNet>,
    exclude: Vec<std::net::IpAddr>,
}

impl NetworkRow {
    fn of(n: &Network) -> NetworkRow {
        NetworkRow {
            vni: n.vni,
            vlan: n.vlan,
            mirror_port: n.mirror_port,
            ipam: n.ipam.as_ref().map(|i| IpamSettings {
                cidrs: i.cidrs.clone(),
                pod_ranges: i.pod_ranges.clone(),
                exclude: i.exclude.clone(),
            }),
        }
    }
}

/// Network name -> JSON [`NetworkRow`].
const NETWORKS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("networks");
/// Port id (`of:<16 hex>/<n>`) -> (network, join sequence). One row per port: a port is in at
/// most one network by construction.
const MEMBERS: TableDefinition<'_, &str, (&str, u64)> = TableDefinition::new("members");
/// (network, address) -> owner.
const ALLOCATIONS: TableDefinition<'_, (&str, &str), &str> = TableDefinition::new("allocations");
/// (network, owner) -> port id the owner is attached to.
const OWNER_PORTS: TableDefinition<'_, (&str, &str), &str> = TableDefinition::new("owner_ports");
/// Port id -> JSON [`PortOwner`] of a member port.
const PORT_OWNERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("port_owners");
/// Counters: `next_vni`, `next_member_seq`, `legacy_imported`.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// Name of the store file in the state directory.
pub const STORE_FILE: &str = "state.redb";
/// State file of earlier versions, imported once.
pub const LEGACY_FILE: &str = "state.json";

/// The model on disk: a redb database, written in one transaction per change and made durable
/// (fsync) before the change is acknowledged.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// One line saying why the store cannot be opened.
fn open_error(path: &Path, e: redb::DatabaseError) -> anyhow::Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => anyhow::anyhow!(
            "controller state {} is in use by another controller (locked)",
            path.display()
        ),
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::WouldBlock =>
        {
            anyhow::anyhow!(
                "controller state {} is in use by another controller (locked)",
                path.display()
            )
        }
        other => anyhow::anyhow!(
            "cannot open controller state {}: {} (corrupt or not a state file; move it away to start empty)",
            path.display(),
            other.to_string().replace('\n', " ")
        ),
    }
}

fn db_err(e: impl Into<redb::Error>) -> anyhow::Error {
    anyhow::anyhow!("controller state store: {}", e.into())
}

impl Store {
    /// Opens (or creates) the store in `state_dir`, importing a legacy `state.json` once.
    pub fn open(state_dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
        let path = state_dir.join(STORE_FILE);
        let db = Database::create(&path).map_err(|e| open_error(&path, e))?;
        let store = Store { db, path };
        store.init()?;
        store.import_legacy(&state_dir.join(LEGACY_FILE))?;
        Ok(store)
    }

    /// Creates the tables so that reads never meet a missing one.
    fn init(&self) -> anyhow::Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(NETWORKS).map_err(db_err)?;
        tx.open_table(MEMBERS).map_err(db_err)?;
        tx.open_table(ALLOCATIONS).map_err(db_err)?;
        tx.open_table(OWNER_PORTS).map_err(db_err)?;
        // Stores of earlier versions get the table here, empty.
        tx.open_table(PORT_OWNERS).map_err(db_err)?;
        tx.open_table(META).map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Imports the JSON state of earlier versions, once: the import and its marker commit in
    /// one transaction, then the file is renamed to `state.json.imported`.
    fn import_legacy(&self, legacy: &Path) -> anyhow::Result<()> {
        let bytes = match std::fs::read(legacy) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", legacy.display())),
        };
        let imported = {
            let tx = self.db.begin_read().map_err(db_err)?;
            let meta = tx.open_table(META).map_err(db_err)?;
            let v = meta.get("legacy_imported").map_err(db_err)?;
            v.is_some_and(|v| v.value() == 1)
        };
        if imported {
            tracing::warn!(
                file = %legacy.display(),
                "legacy state file ignored: the store already imported one"
            );
            return Ok(());
        }
        {
            let mut model: Model = serde_json::from_slice(&bytes).with_context(|| {
                format!("corrupt legacy controller state in {}", legacy.display())
            })?;
            model.assign_missing_vlans();
            let current = self.load()?;
            let tx = self.db.begin_write().map_err(db_err)?;
            Self::write_diff(&tx, &current, &model)?;
            tx.open_table(META)
                .map_err(db_err)?
                .insert("legacy_imported", 1)
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            tracing::info!(
                file = %legacy.display(),
                networks = model.networks.len(),
                "imported legacy controller state"
            );
        }
        let done = legacy.with_extension("json.imported");
        std::fs::rename(legacy, &done)
            .with_context(|| format!("cannot rename {} to {}", legacy.display(), done.display()))
    }

    /// Loads the model (an empty one on first start).
    pub fn load(&self) -> anyhow::Result<Model> {
        let corrupt = |what: String| {
            anyhow::anyhow!(
                "corrupt controller state in {}: {what}",
                self.path.display()
            )
        };
        let tx = self.db.begin_read().map_err(db_err)?;
        let meta = tx.open_table(META).map_err(db_err)?;
        let next_vni = match meta.get("next_vni").map_err(db_err)? {
            Some(v) => u32::try_from(v.value()).map_err(|_| corrupt("next_vni".into()))?,
            None => 1,
        };
        let mut model = Model {
            networks: BTreeMap::new(),
            next_vni,
            port_owners: BTreeMap::new(),
        };
        for row in tx
            .open_table(NETWORKS)
            .map_err(db_err)?
            .iter()
            .map_err(db_err)?
        {
            let (name, value) = row.map_err(db_err)?;
            let row: NetworkRow = serde_json::from_slice(value.value())
                .map_err(|e| corrupt(format!("network {:?}: {e}", name.value())))?;
            let ipam = match row.ipam {
                Some(s) => Some(
                    Ipam::new(s.cidrs, s.pod_ranges, s.exclude)
                        .map_err(|e| corrupt(format!("network {:?}: {e}", name.value())))?,
                ),
                None => None,
            };
            model.networks.insert(
                name.value().to_string(),
                Network {
                    vni: row.vni,
                    endpoints: Vec::new(),
                    mirror_port: row.mirror_port,
                    vlan: row.vlan,
                    ipam,
                },
            );
        }
        let mut members: BTreeMap<String, Vec<(u64, PortId)>> = BTreeMap::new();
        for row in tx
            .open_table(MEMBERS)
            .map_err(db_err)?
            .iter()
            .map_err(db_err)?
        {
            let (port, value) = row.map_err(db_err)?;
            let (network, seq) = value.value();
            let port: PortId = port
                .value()
                .parse()
                .map_err(|e| corrupt(format!("member {:?}: {e}", port.value())))?;
            members
                .entry(network.to_string())
                .or_default()
                .push((seq, port));
        }
        for (network, mut ports) in members {
            let net = model
                .networks
                .get_mut(&network)
                .ok_or_else(|| corrupt(format!("member of unknown network {network:?}")))?;
            ports.sort();
            net.endpoints = ports.into_iter().map(|(_, p)| p).collect();
        }
        for row in tx
            .open_table(ALLOCATIONS)
            .map_err(db_err)?
            .iter()
            .map_err(db_err)?
        {
            let (key, owner) = row.map_err(db_err)?;
            let (network, addr) = key.value();
            let addr: std::net::IpAddr = addr
                .parse()
                .map_err(|e| corrupt(format!("allocation {addr:?}: {e}")))?;
            let ipam = model
                .networks
                .get_mut(network)
                .and_then(|n| n.ipam.as_mut())
                .ok_or_else(|| {
                    corrupt(format!("allocation in network {network:?} without IPAM"))
                })?;
            ipam.allocations.insert(addr, owner.value().to_string());
        }
        for row in tx
            .open_table(OWNER_PORTS)
            .map_err(db_err)?
            .iter()
            .map_err(db_err)?
        {
            let (key, port) = row.map_err(db_err)?;
            let (network, owner) = key.value();
            let port: PortId = port
                .value()
                .parse()
                .map_err(|e| corrupt(format!("port of {owner:?}: {e}")))?;
            let ipam = model
                .networks
                .get_mut(network)
                .and_then(|n| n.ipam.as_mut())
                .ok_or_else(|| corrupt(format!("owner in network {network:?} without IPAM")))?;
            ipam.ports.insert(owner.to_string(), port);
        }
        for row in tx
            .open_table(PORT_OWNERS)
            .map_err(db_err)?
            .iter()
            .map_err(db_err)?
        {
            let (port, value) = row.map_err(db_err)?;
            let id: PortId = port
                .value()
                .parse()
                .map_err(|e| corrupt(format!("owner of port {:?}: {e}", port.value())))?;
            let owner: PortOwner = serde_json::from_slice(value.value())
                .map_err(|e| corrupt(format!("owner of port {id}: {e}")))?;
            if model.network_of(&id).is_none() {
                return Err(corrupt(format!(
                    "owner of port {id}, which is in no network"
                )));
            }
            model.port_owners.insert(id, owner);
        }
        Ok(model)
    }

    /// Makes the stored state go from `old` to `new` in one durable transaction.
    pub fn save(&self, old: &Model, new: &Model) -> anyhow::Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        Self::write_diff(&tx, old, new)?;
        tx.commit().map_err(db_err)
    }

    /// Writes only the rows that differ between `old` (what the store holds) and `new`.
    fn write_diff(tx: &WriteTransaction, old: &Model, new: &Model) -> anyhow::Result<()> {
        let mut meta = tx.open_table(META).map_err(db_err)?;
        if old.next_vni != new.next_vni || meta.get("next_vni").map_err(db_err)?.is_none() {
            meta.insert("next_vni", u64::from(new.next_vni))
                .map_err(db_err)?;
        }
        let mut networks = tx.open_table(NETWORKS).map_err(db_err)?;
        for (name, net) in &new.networks {
            let row = NetworkRow::of(net);
            if old.networks.get(name).map(NetworkRow::of).as_ref() != Some(&row) {
                networks
                    .insert(name.as_str(), serde_json::to_vec(&row)?.as_slice())
                    .map_err(db_err)?;
            }
        }
        for name in old
            .networks
            .keys()
            .filter(|n| !new.networks.contains_key(*n))
        {
            networks.remove(name.as_str()).map_err(db_err)?;
        }
        // Members: one row per port, keyed by port; new rows get the next sequence number so
        // the join order survives a restart.
        let owners = |m: &Model| -> BTreeMap<PortId, String> {
            m.networks
                .iter()
                .flat_map(|(name, n)| n.endpoints.iter().map(move |p| (*p, name.clone())))
                .collect()
        };
        let (before, after) = (owners(old), owners(new));
        let mut members = tx.open_table(MEMBERS).map_err(db_err)?;
        for port in before.keys().filter(|p| !after.contains_key(*p)) {
            members.remove(port.to_string().as_str()).map_err(db_err)?;
        }
        let mut seq = meta
            .get("next_member_seq")
            .map_err(db_err)?
            .map(|v| v.value())
            .unwrap_or(0);
        let seq_start = seq;
        for (name, net) in &new.networks {
            for port in &net.endpoints {
                if before.get(port) != Some(name) {
                    members
                        .insert(port.to_string().as_str(), (name.as_str(), seq))
                        .map_err(db_err)?;
                    seq += 1;
                }
            }
        }
        if seq != seq_start {
            meta.insert("next_member_seq", seq).map_err(db_err)?;
        }
        // Allocations: per network, rows that appeared, changed owner or disappeared.
        let empty = BTreeMap::new();
        fn allocations_of<'m>(
            m: &'m Model,
            name: &str,
        ) -> Option<&'m BTreeMap<std::net::IpAddr, String>> {
            m.networks
                .get(name)
                .and_then(|n| n.ipam.as_ref())
                .map(|i| &i.allocations)
        }
        fn ports_of<'m>(m: &'m Model, name: &str) -> Option<&'m BTreeMap<String, PortId>> {
            m.networks
                .get(name)
                .and_then(|n| n.ipam.as_ref())
                .map(|i| &i.ports)
        }
        let no_ports = BTreeMap::new();
        let mut allocations = tx.open_table(ALLOCATIONS).map_err(db_err)?;
        let names: BTreeSet<&String> = old.networks.keys().chain(new.networks.keys()).collect();
        for name in names {
            let a = allocations_of(old, name).unwrap_or(&empty);
            let b = allocations_of(new, name).unwrap_or(&empty);
            if a == b {
                continue;
            }
            for addr in a.keys().filter(|k| !b.contains_key(*k)) {
                allocations
                    .remove((name.as_str(), addr.to_string().as_str()))
                    .map_err(db_err)?;
            }
            for (addr, owner) in b.iter().filter(|(k, v)| a.get(*k) != Some(*v)) {
                allocations
                    .insert((name.as_str(), addr.to_string().as_str()), owner.as_str())
                    .map_err(db_err)?;
            }
        }
        let mut owner_ports = tx.open_table(OWNER_PORTS).map_err(db_err)?;
        for name in old.networks.keys().chain(new.networks.keys()) {
            let a = ports_of(old, name).unwrap_or(&no_ports);
            let b = ports_of(new, name).unwrap_or(&no_ports);
            if a == b {
                continue;
            }
            for owner in a.keys().filter(|k| !b.contains_key(*k)) {
                owner_ports
                    .remove((name.as_str(), owner.as_str()))
                    .map_err(db_err)?;
            }
            for (owner, port) in b.iter().filter(|(k, v)| a.get(*k) != Some(*v)) {
                owner_ports
                    .insert((name.as_str(), owner.as_str()), port.to_string().as_str())
                    .map_err(db_err)?;
            }
        }
        if old.port_owners != new.port_owners {
            let mut port_owners = tx.open_table(PORT_OWNERS).map_err(db_err)?;
            for port in old
                .port_owners
                .keys()
                .filter(|p| !new.port_owners.contains_key(*p))
            {
                port_owners
                    .remove(port.to_string().as_str())
                    .map_err(db_err)?;
            }
            for (port, owner) in new
                .port_owners
                .iter()
                .filter(|(p, o)| old.port_owners.get(*p) != Some(*o))
            {
                port_owners
                    .insert(
                        port.to_string().as_str(),
                        serde_json::to_vec(owner)?.as_slice(),
                    )
                    .map_err(db_err)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(dpid: u64, port: u32) -> PortId {
        PortId { dpid, port }
    }

    #[test]
    fn vnis_are_stable_unique_and_never_zero() {
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        assert!(m.create_network("a", None).unwrap());
        assert!(m.create_network("b", None).unwrap());
        assert!(!m.create_network("a", None).unwrap());
        assert_eq!(m.networks["a"].vni, 1);
        assert_eq!(m.networks["b"].vni, 2);
        m.delete_network("a");
        m.create_network("c", None).unwrap();
        assert_eq!(
            m.networks["c"].vni, 3,
            "a freed VNI is not reused right away"
        );
        m.next_vni = MAX_VNI;
        m.create_network("d", None).unwrap();
        m.create_network("e", None).unwrap();
        assert_eq!(m.networks["d"].vni, MAX_VNI);
        assert_eq!(m.networks["e"].vni, 1, "wraps around, skipping 0");
    }

    #[test]
    fn a_port_belongs_to_one_network() {
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        m.create_network("a", None).unwrap();
        m.create_network("b", None).unwrap();
        assert!(m.add_ports("a", &[port(1, 1)]).unwrap());
        assert!(!m.add_ports("a", &[port(1, 1)]).unwrap());
        assert_eq!(
            m.add_ports("b", &[port(1, 2), port(1, 1)]),
            Err(ModelError::PortInOtherNetwork {
                port: port(1, 1),
                network: "a".into()
            })
        );
        assert!(m.networks["b"].endpoints.is_empty(), "all or nothing");
        assert_eq!(
            m.add_ports("zz", &[port(1, 3)]),
            Err(ModelError::UnknownNetwork("zz".into()))
        );
        assert_eq!(
            m.remove_ports("b", &[port(1, 1)]),
            Err(ModelError::PortNotMember(port(1, 1)))
        );
        m.remove_ports("a", &[port(1, 1)]).unwrap();
        m.add_ports("b", &[port(1, 1)]).unwrap();
    }

    #[test]
    fn switch_view_only_has_local_members() {
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        m.create_network("a", None).unwrap();
        m.add_ports("a", &[port(1, 1), port(2, 1), port(1, 5)])
            .unwrap();
        let v = m.switch_view(1, [(100, LinkKind::Tunnel)].into());
        assert_eq!(v.networks.len(), 1);
        assert_eq!(v.networks[&1].members, [1, 5].into());
        assert_eq!(v.networks[&1].link_ports, [100].into());
        assert_eq!(v.networks[&1].vlan, Some(1));
        assert!(m.switch_view(3, BTreeMap::new()).networks.is_empty());
    }

    #[test]
    fn store_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let empty = store.load().unwrap();
        assert_eq!(empty.next_vni, 1);
        let mut m = empty.clone();
        m.create_network("a", None).unwrap();
        m.create_network("b", Some(port(9, 9))).unwrap();
        let ipam = Ipam::new(vec!["10.0.0.0/24".parse().unwrap()], vec![], vec![]).unwrap();
        m.create_network_with_ipam("c", ipam).unwrap();
        m.add_ports("a", &[port(7, 3), port(1, 2), port(5, 1)])
            .unwrap();
        m.allocate("c", "o1", &[], Some(port(4, 4))).unwrap();
        m.allocate("c", "o2", &[], None).unwrap();
        store.save(&empty, &m).unwrap();
        assert_eq!(store.load().unwrap(), m);
        // Moves, removals and releases are written as differences.
        let mut n = m.clone();
        n.remove_ports("a", &[port(1, 2)]).unwrap();
        n.add_ports("b", &[port(1, 2)]).unwrap();
        n.add_ports("a", &[port(1, 1)]).unwrap();
        n.release("c", "o1");
        n.delete_network("a");
        n.create_network("a", None).unwrap();
        n.add_ports("a", &[port(7, 3)]).unwrap();
        store.save(&m, &n).unwrap();
        assert_eq!(store.load().unwrap(), n);
        drop(store);
        assert_eq!(Store::open(dir.path()).unwrap().load().unwrap(), n);
    }

    fn owner(pod: &str, att: &str) -> PortOwner {
        PortOwner {
            pod: Some(pod.into()),
            attachment: att.into(),
            interface: "net1".into(),
        }
    }

    #[test]
    fn owners_live_with_membership_and_follow_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let empty = store.load().unwrap();
        let mut m = empty.clone();
        m.create_network("a", None).unwrap();
        m.create_network("q", None).unwrap();
        assert_eq!(
            m.set_owner(port(1, 1), owner("ns/p1", "cni/c1/net1")),
            Err(ModelError::PortNotMember(port(1, 1))),
            "only member ports have owners"
        );
        m.add_ports("a", &[port(1, 1), port(1, 2), port(1, 3)])
            .unwrap();
        assert!(m
            .set_owner(port(1, 1), owner("ns/p1", "cni/c1/net1"))
            .unwrap());
        assert!(!m
            .set_owner(port(1, 1), owner("ns/p1", "cni/c1/net1"))
            .unwrap());
        m.set_owner(port(1, 2), owner("ns/p2", "cni/c2/net1"))
            .unwrap();
        m.set_owner(port(1, 3), owner("ns/p3", "cni/c3/net1"))
            .unwrap();
        store.save(&empty, &m).unwrap();
        assert_eq!(store.load().unwrap(), m);
        let mut n = m.clone();
        // A move keeps the owner; leaving the network or its deletion drops it.
        assert!(n.move_port(port(1, 2), "a", "q").unwrap());
        assert!(!n.move_port(port(1, 2), "a", "q").unwrap());
        assert_eq!(
            n.move_port(port(1, 9), "a", "q"),
            Err(ModelError::PortNotMember(port(1, 9)))
        );
        assert_eq!(
            n.move_port(port(1, 1), "a", "zz"),
            Err(ModelError::UnknownNetwork("zz".into()))
        );
        assert_eq!(n.port_owners[&port(1, 2)].pod.as_deref(), Some("ns/p2"));
        n.remove_ports("a", &[port(1, 1)]).unwrap();
        assert!(!n.port_owners.contains_key(&port(1, 1)));
        n.delete_network("a");
        assert!(!n.port_owners.contains_key(&port(1, 3)));
        assert_eq!(n.port_owners.len(), 1);
        assert!(n.clear_owner(&port(1, 2)) && !n.clear_owner(&port(1, 2)));
        n.set_owner(port(1, 2), owner("ns/p2", "cni/c2/net1"))
            .unwrap();
        store.save(&m, &n).unwrap();
        drop(store);
        assert_eq!(Store::open(dir.path()).unwrap().load().unwrap(), n);
    }

    #[test]
    fn stores_without_the_owner_table_open_and_gain_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What an earlier version wrote: no `port_owners` table.
            let db = Database::create(dir.path().join(STORE_FILE)).unwrap();
            let tx = db.begin_write().unwrap();
            let row = NetworkRow {
                vni: 1,
                vlan: Some(1),
                mirror_port: None,
                ipam: None,
            };
            tx.open_table(NETWORKS)
                .unwrap()
                .insert("a", serde_json::to_vec(&row).unwrap().as_slice())
                .unwrap();
            tx.open_table(MEMBERS)
                .unwrap()
                .insert("of:0000000000000001/1", ("a", 0))
                .unwrap();
            tx.open_table(META).unwrap().insert("next_vni", 2).unwrap();
            tx.commit().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let m = store.load().unwrap();
        assert_eq!(m.networks["a"].endpoints, [port(1, 1)]);
        assert!(m.port_owners.is_empty());
        let mut n = m.clone();
        n.set_owner(port(1, 1), owner("ns/p", "cni/c/net1"))
            .unwrap();
        store.save(&m, &n).unwrap();
        drop(store);
        assert_eq!(Store::open(dir.path()).unwrap().load().unwrap(), n);
    }

    #[test]
    fn corrupt_or_locked_store_is_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another controller"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        drop(store);
        std::fs::write(dir.path().join(STORE_FILE), vec![0x5a; 8192]).unwrap();
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot open controller state"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn legacy_json_is_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        m.create_network("a", None).unwrap();
        m.add_ports("a", &[port(7, 3)]).unwrap();
        let mut legacy = serde_json::to_value(&m).unwrap();
        // Written by a version without VLAN ids.
        legacy["networks"]["a"]
            .as_object_mut()
            .unwrap()
            .remove("vlan");
        std::fs::write(
            dir.path().join(LEGACY_FILE),
            serde_json::to_vec(&legacy).unwrap(),
        )
        .unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), m);
        assert!(!dir.path().join(LEGACY_FILE).exists());
        assert!(dir.path().join("state.json.imported").exists());
        drop(store);
        // Imported once: a state.json that shows up again is left alone.
        std::fs::write(dir.path().join(LEGACY_FILE), b"{garbage").unwrap();
        assert_eq!(Store::open(dir.path()).unwrap().load().unwrap(), m);
        assert!(dir.path().join(LEGACY_FILE).exists());
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(LEGACY_FILE), b"{garbage").unwrap();
        let err = Store::open(other.path()).unwrap_err().to_string();
        assert!(err.contains("corrupt legacy"), "{err}");
    }
}
