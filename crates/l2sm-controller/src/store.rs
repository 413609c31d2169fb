//! The model on disk. The model in memory is a cache; the truth is the store, changed in one
//! durable transaction per API change, so a restart (or a crash) keeps every acknowledged change
//! and never half of one. Two backends ([`Store`]):
//!
//! - [`RedbStore`] (the default): a redb database in the state directory, one controller. Also
//!   imports, once, the JSON state file of earlier versions.
//! - [`etcd::EtcdStore`] (`--store etcd://…`): the same rows as keys under a prefix in etcd,
//!   each change one etcd transaction that only commits if nobody else wrote since this
//!   controller last read (compare-and-swap on the revision of a generation key).
//!
//! Both write what `Diff` finds between the model the store holds and the next one.

pub mod etcd;

use super::ipam::Ipam;
use super::model::{Model, Network, PortOwner};
use l2sm_pipeline::ids::PortId;
use redb::{Database, ReadableTable as _, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The network row of the store: everything but members and allocations, which have their own
/// tables so that a join or an allocation writes one small row.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NetworkRow {
    vni: u32,
    #[serde(default)]
    vlan: Option<u16>,
    #[serde(default)]
    mirror_port: Option<PortId>,
    #[serde(default)]
    ipam: Option<IpamSettings>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    port_security: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limits: Option<l2sm_api::v1::NetworkLimits>,
}

/// IPAM settings without the allocations.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IpamSettings {
    cidrs: Vec<ipnet::IpNet>,
    pod_ranges: Vec<ipnet::IpNet>,
    exclude: Vec<std::net::IpAddr>,
}

impl NetworkRow {
    /// The network this row describes, without members or allocations (IPAM settings that do
    /// not hold are refused: the reason is returned).
    pub(crate) fn into_network(self) -> Result<Network, String> {
        let ipam = match self.ipam {
            Some(s) => {
                Some(Ipam::new(s.cidrs, s.pod_ranges, s.exclude).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        Ok(Network {
            vni: self.vni,
            endpoints: Vec::new(),
            mirror_port: self.mirror_port,
            vlan: self.vlan,
            ipam,
            port_security: self.port_security,
            limits: self.limits,
        })
    }

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
            port_security: n.port_security,
            limits: n.limits,
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
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Why the store cannot be opened, read or written. Each is one line: the controller prints
/// it and exits, and an operator must be able to act on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory cannot be created.
    #[error("cannot create state directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another controller holds the store.
    #[error("controller state {} is in use by another controller (locked)", path.display())]
    Locked {
        /// The store file.
        path: PathBuf,
    },
    /// The file is not a store redb can open.
    #[error(
        "cannot open controller state {}: {reason} (corrupt or not a state file; move it away to start empty)",
        path.display()
    )]
    Open {
        /// The store file.
        path: PathBuf,
        /// redb's reason, on one line.
        reason: String,
    },
    /// A read or write of the database failed.
    #[error("controller state store: {0}")]
    Db(Box<redb::Error>),
    /// A row holds something this version cannot read.
    #[error("corrupt controller state in {}: {what}", path.display())]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Which row, and why.
        what: String,
    },
    /// The `--store` argument is not `redb` or a valid `etcd://` URL.
    #[error("invalid --store {spec:?}: {reason}")]
    BadSpec {
        /// The argument.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// etcd cannot be reached or refused a request.
    #[error("etcd store at {endpoints}: {reason}")]
    Etcd {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// The client's reason, on one line.
        reason: String,
    },
    /// A key in etcd holds something this version cannot read.
    #[error("corrupt controller state in etcd key {key:?}: {what}")]
    EtcdCorrupt {
        /// The full key.
        key: String,
        /// Why.
        what: String,
    },
    /// Another controller changed the state since this one last read it: nothing was written.
    /// Retryable once the state is reloaded (the controller reloads it at once).
    #[error("the controller state changed under this controller (another writer won); nothing was written: retry")]
    Conflict,
    /// This replica is not the leader (or no longer holds its lease): nothing was written.
    #[error("this controller replica is not the leader (leader: {leader}); nothing was written: retry against the leader")]
    NotLeader {
        /// The leader's name (`--replica`), or why none is known.
        leader: String,
    },
    /// A row cannot be encoded.
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// The legacy state file cannot be read.
    #[error("cannot read {}", path.display())]
    ReadLegacy {
        /// The legacy file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The legacy state file is not valid.
    #[error("corrupt legacy controller state in {}", path.display())]
    CorruptLegacy {
        /// The legacy file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The imported legacy file cannot be renamed out of the way.
    #[error("cannot rename {} to {}", from.display(), to.display())]
    RenameLegacy {
        /// The legacy file.
        from: PathBuf,
        /// Its new name.
        to: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where the controller keeps its state: `--store redb` (the state directory) or
/// `--store etcd://host:port[,host:port…][/prefix]`.
pub enum Store {
    /// The embedded redb database.
    Redb(RedbStore),
    /// Keys in etcd.
    Etcd(Box<etcd::EtcdStore>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Redb(s) => s.fmt(f),
            Store::Etcd(s) => s.fmt(f),
        }
    }
}

impl Store {
    /// Opens (or creates) the redb store in `state_dir`, importing a legacy `state.json` once.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        RedbStore::open(state_dir).map(Store::Redb)
    }

    /// Opens the store `spec` names: `redb` (in `state_dir`) or an `etcd://` URL; with
    /// `replica`, this controller takes part in the leader election (etcd only).
    pub fn from_spec(
        spec: &str,
        state_dir: &Path,
        replica: Option<&str>,
    ) -> Result<Store, StoreError> {
        let bad = |reason: &str| StoreError::BadSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if spec == "redb" {
            if replica.is_some() {
                return Err(bad("--replica needs an etcd store"));
            }
            return Store::open(state_dir);
        }
        let target = etcd::EtcdTarget::parse(spec)?;
        match replica {
            None => etcd::EtcdStore::connect(&target).map(|s| Store::Etcd(Box::new(s))),
            Some(r) if r.is_empty() || r.len() > 253 || r.chars().any(|c| c.is_control()) => {
                Err(bad("--replica must be 1 to 253 printable characters"))
            }
            Some(r) => {
                etcd::EtcdStore::connect_replica(&target, r).map(|s| Store::Etcd(Box::new(s)))
            }
        }
    }

    /// Whether this replica follows another (it must keep its copy current by polling).
    pub fn is_follower(&self) -> bool {
        match self {
            Store::Redb(_) => false,
            Store::Etcd(s) => {
                matches!(s.role(), Some(r) if !matches!(r, etcd::Role::Leader { .. }))
            }
        }
    }

    /// Whether another writer changed the state since this store last loaded or saved (always
    /// false on redb: nobody else writes it).
    pub fn changed_elsewhere(&self) -> Result<bool, StoreError> {
        match self {
            Store::Redb(_) => Ok(false),
            Store::Etcd(s) => s.changed_elsewhere(),
        }
    }

    /// Leaves the leader election, if any (the controller is stopping).
    pub fn resign(&self) {
        if let Store::Etcd(s) = self {
            s.resign();
        }
    }

    /// True once after this replica became leader: reload before the next write.
    pub fn take_reload(&self) -> bool {
        match self {
            Store::Redb(_) => false,
            Store::Etcd(s) => s.take_reload(),
        }
    }

    /// Loads the model (an empty one on first start). On etcd this also records the revision
    /// the next change is compared with.
    pub fn load(&self) -> Result<Model, StoreError> {
        match self {
            Store::Redb(s) => s.load(),
            Store::Etcd(s) => s.load(),
        }
    }

    /// Makes the stored state go from `old` (what this controller last loaded or saved) to
    /// `new` in one durable transaction. On etcd, [`StoreError::Conflict`] when another writer
    /// changed the state meanwhile: nothing was written; reload and retry.
    pub fn save(&self, old: &Model, new: &Model) -> Result<(), StoreError> {
        match self {
            Store::Redb(s) => s.save(old, new),
            Store::Etcd(s) => s.save(old, new),
        }
    }
}

/// One line saying why the store cannot be opened.
fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    let path = path.to_path_buf();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path },
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::WouldBlock =>
        {
            StoreError::Locked { path }
        }
        other => StoreError::Open {
            path,
            reason: other.to_string().replace('\n', " "),
        },
    }
}

impl StoreError {
    /// Whether the same change may succeed when retried after a reload (another writer won).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Conflict | StoreError::NotLeader { .. })
    }
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

impl RedbStore {
    /// Opens (or creates) the store in `state_dir`, importing a legacy `state.json` once.
    pub fn open(state_dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(STORE_FILE);
        let db = Database::create(&path).map_err(|e| open_error(&path, e))?;
        let store = RedbStore { db, path };
        store.init()?;
        store.import_legacy(&state_dir.join(LEGACY_FILE))?;
        Ok(store)
    }

    /// Creates the tables so that reads never meet a missing one.
    fn init(&self) -> Result<(), StoreError> {
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
    fn import_legacy(&self, legacy: &Path) -> Result<(), StoreError> {
        let bytes = match std::fs::read(legacy) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(StoreError::ReadLegacy {
                    path: legacy.to_path_buf(),
                    source,
                })
            }
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
            let mut model: Model =
                serde_json::from_slice(&bytes).map_err(|source| StoreError::CorruptLegacy {
                    path: legacy.to_path_buf(),
                    source,
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
        std::fs::rename(legacy, &done).map_err(|source| StoreError::RenameLegacy {
            from: legacy.to_path_buf(),
            to: done,
            source,
        })
    }

    /// Loads the model (an empty one on first start).
    pub fn load(&self) -> Result<Model, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt {
            path: self.path.clone(),
            what,
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
            let network = row
                .into_network()
                .map_err(|e| corrupt(format!("network {:?}: {e}", name.value())))?;
            model.networks.insert(name.value().to_string(), network);
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
    pub fn save(&self, old: &Model, new: &Model) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        Self::write_diff(&tx, old, new)?;
        tx.commit().map_err(db_err)
    }

    /// Writes only the rows that differ between `old` (what the store holds) and `new`.
    fn write_diff(tx: &WriteTransaction, old: &Model, new: &Model) -> Result<(), StoreError> {
        let d = Diff::of(old, new);
        let mut meta = tx.open_table(META).map_err(db_err)?;
        if d.next_vni.is_some() || meta.get("next_vni").map_err(db_err)?.is_none() {
            meta.insert("next_vni", u64::from(new.next_vni))
                .map_err(db_err)?;
        }
        let mut networks = tx.open_table(NETWORKS).map_err(db_err)?;
        for (name, row) in &d.networks_put {
            networks
                .insert(*name, serde_json::to_vec(row)?.as_slice())
                .map_err(db_err)?;
        }
        for name in &d.networks_del {
            networks.remove(*name).map_err(db_err)?;
        }
        let mut members = tx.open_table(MEMBERS).map_err(db_err)?;
        if !d.left.is_empty() {
            // A port that left one network for another keeps its row (rewritten below).
            let moved: std::collections::HashSet<PortId> =
                d.joined.iter().map(|(_, p)| *p).collect();
            for (_, port) in d.left.iter().filter(|(_, p)| !moved.contains(p)) {
                members.remove(port.to_string().as_str()).map_err(db_err)?;
            }
        }
        if !d.joined.is_empty() {
            let mut seq = meta
                .get("next_member_seq")
                .map_err(db_err)?
                .map(|v| v.value())
                .unwrap_or(0);
            for (name, port) in &d.joined {
                members
                    .insert(port.to_string().as_str(), (*name, seq))
                    .map_err(db_err)?;
                seq += 1;
            }
            meta.insert("next_member_seq", seq).map_err(db_err)?;
        }
        let mut allocations = tx.open_table(ALLOCATIONS).map_err(db_err)?;
        for (name, addr) in &d.allocations_del {
            allocations
                .remove((*name, addr.to_string().as_str()))
                .map_err(db_err)?;
        }
        for (name, addr, owner) in &d.allocations_put {
            allocations
                .insert((*name, addr.to_string().as_str()), *owner)
                .map_err(db_err)?;
        }
        let mut owner_ports = tx.open_table(OWNER_PORTS).map_err(db_err)?;
        for (name, owner) in &d.owner_ports_del {
            owner_ports.remove((*name, *owner)).map_err(db_err)?;
        }
        for (name, owner, port) in &d.owner_ports_put {
            owner_ports
                .insert((*name, *owner), port.to_string().as_str())
                .map_err(db_err)?;
        }
        if !d.port_owners_del.is_empty() || !d.port_owners_put.is_empty() {
            let mut port_owners = tx.open_table(PORT_OWNERS).map_err(db_err)?;
            for port in &d.port_owners_del {
                port_owners
                    .remove(port.to_string().as_str())
                    .map_err(db_err)?;
            }
            for (port, owner) in &d.port_owners_put {
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

/// What one change writes, whatever the backend: the rows that differ between the model the
/// store holds (`old`) and the next one (`new`). Computing it costs what the change touched,
/// not the state's size (member lists are only compared for networks whose list changed).
#[derive(Debug, Default)]
pub(crate) struct Diff<'m> {
    /// The next VNI, when it moved.
    pub(crate) next_vni: Option<u32>,
    /// Network rows created or changed.
    pub(crate) networks_put: Vec<(&'m str, NetworkRow)>,
    /// Networks deleted (their members, allocations and owners are listed too).
    pub(crate) networks_del: Vec<&'m str>,
    /// Members that left a network (a moved port is also in `joined`).
    pub(crate) left: Vec<(&'m str, PortId)>,
    /// Members that joined a network, in join order.
    pub(crate) joined: Vec<(&'m str, PortId)>,
    /// Allocations gone.
    pub(crate) allocations_del: Vec<(&'m str, std::net::IpAddr)>,
    /// Allocations new or with a new owner.
    pub(crate) allocations_put: Vec<(&'m str, std::net::IpAddr, &'m str)>,
    /// Owners whose port is gone.
    pub(crate) owner_ports_del: Vec<(&'m str, &'m str)>,
    /// Owners with a new port.
    pub(crate) owner_ports_put: Vec<(&'m str, &'m str, PortId)>,
    /// Member ports that lost their owner.
    pub(crate) port_owners_del: Vec<PortId>,
    /// Member ports with a new or changed owner.
    pub(crate) port_owners_put: Vec<(PortId, &'m PortOwner)>,
}

impl<'m> Diff<'m> {
    pub(crate) fn of(old: &'m Model, new: &'m Model) -> Diff<'m> {
        let mut d = Diff {
            next_vni: (old.next_vni != new.next_vni).then_some(new.next_vni),
            ..Diff::default()
        };
        for (name, net) in &new.networks {
            let row = NetworkRow::of(net);
            if old.networks.get(name).map(NetworkRow::of).as_ref() != Some(&row) {
                d.networks_put.push((name.as_str(), row));
            }
        }
        d.networks_del = old
            .networks
            .keys()
            .filter(|n| !new.networks.contains_key(*n))
            .map(String::as_str)
            .collect();
        // Members: new rows get the next sequence number (from the backend) so the join order
        // survives a restart.
        for (name, net) in &old.networks {
            if !new.networks.contains_key(name) {
                d.left
                    .extend(net.endpoints.iter().map(|p| (name.as_str(), *p)));
            }
        }
        for (name, net) in &new.networks {
            let before = old
                .networks
                .get(name)
                .map(|n| n.endpoints.as_slice())
                .unwrap_or_default();
            if before == net.endpoints.as_slice() {
                continue;
            }
            let (gone, came) = endpoint_diff(before, &net.endpoints);
            d.left.extend(gone.into_iter().map(|p| (name.as_str(), p)));
            d.joined
                .extend(came.into_iter().map(|p| (name.as_str(), p)));
        }
        // Allocations and owners' ports: per network, rows that appeared, changed or went.
        static EMPTY: BTreeMap<std::net::IpAddr, String> = BTreeMap::new();
        static NO_PORTS: BTreeMap<String, PortId> = BTreeMap::new();
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
        let names: BTreeSet<&'m String> = old.networks.keys().chain(new.networks.keys()).collect();
        for name in names {
            let a = allocations_of(old, name).unwrap_or(&EMPTY);
            let b = allocations_of(new, name).unwrap_or(&EMPTY);
            if a != b {
                d.allocations_del.extend(
                    a.keys()
                        .filter(|k| !b.contains_key(*k))
                        .map(|addr| (name.as_str(), *addr)),
                );
                d.allocations_put.extend(
                    b.iter()
                        .filter(|(k, v)| a.get(*k) != Some(*v))
                        .map(|(addr, owner)| (name.as_str(), *addr, owner.as_str())),
                );
            }
            let a = ports_of(old, name).unwrap_or(&NO_PORTS);
            let b = ports_of(new, name).unwrap_or(&NO_PORTS);
            if a != b {
                d.owner_ports_del.extend(
                    a.keys()
                        .filter(|k| !b.contains_key(*k))
                        .map(|owner| (name.as_str(), owner.as_str())),
                );
                d.owner_ports_put.extend(
                    b.iter()
                        .filter(|(k, v)| a.get(*k) != Some(*v))
                        .map(|(owner, port)| (name.as_str(), owner.as_str(), *port)),
                );
            }
        }
        if old.port_owners != new.port_owners {
            d.port_owners_del = old
                .port_owners
                .keys()
                .filter(|p| !new.port_owners.contains_key(*p))
                .copied()
                .collect();
            d.port_owners_put = new
                .port_owners
                .iter()
                .filter(|(p, o)| old.port_owners.get(*p) != Some(*o))
                .map(|(p, o)| (*p, o))
                .collect();
        }
        d
    }
}

/// Ports of `old` missing from `new`, and ports of `new` missing from `old` (in `new`'s
/// order), for one network's member list. Every model change keeps the order of the members
/// that stay and appends the ones that join, so one walk over both lists finds both sets;
/// anything else (a result that does not hold up) is diffed as sets.
fn endpoint_diff(old: &[PortId], new: &[PortId]) -> (Vec<PortId>, Vec<PortId>) {
    let (mut gone, mut j) = (Vec::new(), 0);
    for p in old {
        if new.get(j) == Some(p) {
            j += 1;
        } else {
            gone.push(*p);
        }
    }
    let came = &new[j..];
    let holds = if gone.len() + came.len() <= 16 {
        gone.iter().all(|p| !new.contains(p)) && came.iter().all(|p| !old.contains(p))
    } else {
        let (o, n): (std::collections::HashSet<_>, std::collections::HashSet<_>) =
            (old.iter().collect(), new.iter().collect());
        gone.iter().all(|p| !n.contains(p)) && came.iter().all(|p| !o.contains(p))
    };
    if holds {
        return (gone, came.to_vec());
    }
    let (o, n): (std::collections::HashSet<_>, std::collections::HashSet<_>) =
        (old.iter().collect(), new.iter().collect());
    (
        old.iter().filter(|p| !n.contains(p)).copied().collect(),
        new.iter().filter(|p| !o.contains(p)).copied().collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn port(dpid: u64, port: u32) -> PortId {
        PortId { dpid, port }
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
        m.set_port_security("c", true).unwrap();
        m.set_owner(
            port(5, 1),
            PortOwner {
                mac: Some("02:00:00:00:00:01".into()),
                ips: vec!["10.0.0.9".parse().unwrap()],
                port_security: Some(true),
                ..owner("ns/p", "cni/x/net1")
            },
        )
        .unwrap();
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

    pub(super) fn owner(pod: &str, att: &str) -> PortOwner {
        PortOwner {
            pod: Some(pod.into()),
            attachment: att.into(),
            interface: "net1".into(),
            mac: None,
            ips: Vec::new(),
            port_security: None,
        }
    }

    /// Owners are written with their port's membership, follow a move and go with it (the
    /// rules themselves are tested in the model).
    #[test]
    fn owners_are_stored_and_follow_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let empty = store.load().unwrap();
        let mut m = empty.clone();
        m.create_network("a", None).unwrap();
        m.create_network("q", None).unwrap();
        m.add_ports("a", &[port(1, 1), port(1, 2), port(1, 3)])
            .unwrap();
        m.set_owner(port(1, 1), owner("ns/p1", "cni/c1/net1"))
            .unwrap();
        m.set_owner(port(1, 2), owner("ns/p2", "cni/c2/net1"))
            .unwrap();
        m.set_owner(port(1, 3), owner("ns/p3", "cni/c3/net1"))
            .unwrap();
        store.save(&empty, &m).unwrap();
        assert_eq!(store.load().unwrap(), m);
        let mut n = m.clone();
        n.move_port(port(1, 2), "a", "q").unwrap();
        n.remove_ports("a", &[port(1, 1)]).unwrap();
        n.delete_network("a");
        n.clear_owner(&port(1, 2));
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
                port_security: false,
                limits: None,
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

    #[derive(Debug, Clone)]
    pub(super) enum Step {
        Create(u8, bool),
        Delete(u8),
        Add(u8, Vec<(u64, u32)>),
        Remove(u8, Vec<(u64, u32)>),
        Move((u64, u32), u8, u8),
        Owner((u64, u32), bool),
        Allocate(u8, u8, Option<(u64, u32)>),
        Release(u8, u8),
    }

    pub(super) fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let port = (1u64..3, 1u32..4);
        let ports = proptest::collection::vec(port.clone(), 1..4);
        let net = 0u8..3;
        prop_oneof![
            (net.clone(), any::<bool>()).prop_map(|(n, i)| Step::Create(n, i)),
            net.clone().prop_map(Step::Delete),
            (net.clone(), ports.clone()).prop_map(|(n, p)| Step::Add(n, p)),
            // Mostly one port: all or nothing, several are seldom all members.
            (net.clone(), proptest::collection::vec(port.clone(), 1..3))
                .prop_map(|(n, p)| Step::Remove(n, p)),
            (port.clone(), net.clone(), net.clone()).prop_map(|(p, a, b)| Step::Move(p, a, b)),
            (port.clone(), any::<bool>()).prop_map(|(p, set)| Step::Owner(p, set)),
            (net.clone(), 0u8..4, proptest::option::of(port))
                .prop_map(|(n, o, p)| Step::Allocate(n, o, p)),
            (net, 0u8..4).prop_map(|(n, o)| Step::Release(n, o)),
        ]
    }

    pub(super) fn apply(m: &mut Model, step: &Step) {
        let name = |n: u8| format!("n{n}");
        let p = |(d, p): (u64, u32)| port(d, p);
        let _ = match step {
            Step::Create(n, false) => m.create_network(&name(*n), None).map(|_| ()),
            Step::Create(n, true) => {
                let ipam = Ipam::new(vec!["10.0.0.0/28".parse().unwrap()], vec![], vec![]).unwrap();
                m.create_network_with_ipam(&name(*n), ipam).map(|_| ())
            }
            Step::Delete(n) => {
                m.delete_network(&name(*n));
                Ok(())
            }
            Step::Add(n, ports) => {
                let ports: Vec<PortId> = ports.iter().copied().map(p).collect();
                m.add_ports(&name(*n), &ports).map(|_| ())
            }
            Step::Remove(n, ports) => {
                let ports: Vec<PortId> = ports.iter().copied().map(p).collect();
                m.remove_ports(&name(*n), &ports)
            }
            Step::Move(x, a, b) => m.move_port(p(*x), &name(*a), &name(*b)).map(|_| ()),
            Step::Owner(x, true) => m
                .set_owner(p(*x), owner(&format!("ns/{}", x.1), "cni/c/net1"))
                .map(|_| ()),
            Step::Owner(x, false) => {
                m.clear_owner(&p(*x));
                Ok(())
            }
            Step::Allocate(n, o, x) => m
                .allocate(&name(*n), &format!("o{o}"), &[], x.map(p))
                .map(|_| ()),
            Step::Release(n, o) => {
                m.release(&name(*n), &format!("o{o}"));
                Ok(())
            }
        };
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]
        /// Writing only what changed between two models, step after step of a random history,
        /// leaves a store that loads as the last model (member order included), before and
        /// after reopening.
        #[test]
        fn writing_differences_keeps_the_store_equal_to_the_model(
            steps in proptest::collection::vec(step(), 1..25)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let mut model = store.load().unwrap();
            for step in &steps {
                let mut next = model.clone();
                apply(&mut next, step);
                store.save(&model, &next).unwrap();
                model = next;
                proptest::prop_assert_eq!(&store.load().unwrap(), &model, "after {:?}", step);
            }
            drop(store);
            proptest::prop_assert_eq!(Store::open(dir.path()).unwrap().load().unwrap(), model);
        }

        /// The member-list difference is the set difference both ways, whatever the lists.
        #[test]
        fn endpoint_differences_are_set_differences(
            old in proptest::collection::btree_set((1u64..4, 1u32..6), 0..12),
            new in proptest::collection::btree_set((1u64..4, 1u32..6), 0..12),
            keep_order in proptest::prelude::any::<bool>(),
        ) {
            let old: Vec<PortId> = old.into_iter().map(|(d, p)| port(d, p)).collect();
            let mut new: Vec<PortId> = new.into_iter().map(|(d, p)| port(d, p)).collect();
            if keep_order {
                // What model changes do: survivors in order, newcomers appended.
                let (mut kept, added): (Vec<PortId>, Vec<PortId>) =
                    new.iter().partition(|p| old.contains(p));
                kept.extend(added);
                new = kept;
            } else {
                new.reverse();
            }
            let (gone, came) = endpoint_diff(&old, &new);
            let want_gone: Vec<PortId> = old.iter().filter(|p| !new.contains(p)).copied().collect();
            let want_came: Vec<PortId> = new.iter().filter(|p| !old.contains(p)).copied().collect();
            proptest::prop_assert_eq!(gone, want_gone);
            proptest::prop_assert_eq!(came, want_came);
        }
    }
}
