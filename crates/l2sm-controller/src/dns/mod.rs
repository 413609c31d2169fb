//! The controller's authoritative DNS server for the `l2sm` zone: `<name>.<network>.l2sm` has
//! an A/AAAA record per address of every member port whose owner's pod is called `<name>`
//! (the part of `namespace/name` after the slash), and each of those addresses has a PTR back.
//!
//! Records are derived from the model itself: the zone is rebuilt on the first query after
//! the model's generation moved, so a name exists from the moment the change that made it
//! was committed (an attach's owner report) and is gone from the moment the port left. No
//! recursion: names outside the zone (and reverse names of addresses we do not know) are
//! REFUSED.

pub mod client;
pub mod grpc;
pub mod server;
pub mod wire;

use crate::model::Model;
use l2sm_pipeline::ids::PortId;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use wire::{Answer, Name, Query, RData, Record, Soa};

/// The zone's apex.
pub const ZONE: &str = "l2sm";
/// TTL of every record, seconds: short, names follow pods.
pub const TTL: u32 = 5;

/// Whether `label` may be a DNS label of ours: 1-63 of `a-z`, `0-9`, `-`, not starting or
/// ending with `-` (pod and network names are Kubernetes names: they always are).
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= wire::MAX_LABEL
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The records of one model state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Zone {
    /// SOA serial (the model generation it was built from, truncated).
    pub serial: u32,
    /// Networks (every one is a name of the zone, without records of its own).
    pub networks: BTreeSet<String>,
    /// `(network, name)` → addresses (empty for pods without any: the name exists, NODATA).
    pub hosts: BTreeMap<(String, String), BTreeSet<IpAddr>>,
    /// Address → the names pointing at it.
    pub reverse: BTreeMap<IpAddr, BTreeSet<Name>>,
    /// Names registered through upstream's update API (`<pod>.<network>.<scope>.l2sm`).
    pub extra: BTreeMap<Name, BTreeSet<IpAddr>>,
    /// Names above those (`<network>.<scope>.l2sm`, `<scope>.l2sm`): they exist without
    /// records (NODATA, never NXDOMAIN, which would deny the names below, RFC 8020).
    pub empty_non_terminals: BTreeSet<Name>,
}

impl Zone {
    /// The zone of `model`: every member port with an owner that names a pod, its reported
    /// addresses and the IPAM allocations attached to it.
    pub fn of(model: &Model, serial: u32) -> Zone {
        Zone::with_entries(model, serial, &BTreeMap::new())
    }

    /// [`Zone::of`] plus the names registered through the update API.
    pub fn with_entries(
        model: &Model,
        serial: u32,
        extra: &BTreeMap<Name, BTreeSet<IpAddr>>,
    ) -> Zone {
        let mut zone = Zone {
            serial,
            extra: extra.clone(),
            ..Zone::default()
        };
        for (name, addrs) in extra {
            for ip in addrs {
                zone.reverse.entry(*ip).or_default().insert(name.clone());
            }
            // Every proper ancestor below the apex.
            for cut in 1..name.0.len().saturating_sub(1) {
                zone.empty_non_terminals
                    .insert(Name(name.0[cut..].to_vec()));
            }
        }
        for (net_name, net) in &model.networks {
            let network = net_name.to_ascii_lowercase();
            if !valid_label(&network) {
                continue;
            }
            zone.networks.insert(network.clone());
            // IPAM allocations by port, in one pass (not one scan per port: a rebuild stays
            // linear in the network's size).
            let mut allocated: BTreeMap<&PortId, Vec<IpAddr>> = BTreeMap::new();
            if let Some(ipam) = &net.ipam {
                let mut by_owner: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
                for (addr, owner) in &ipam.allocations {
                    if ipam.cidrs.iter().any(|c| c.contains(addr)) {
                        by_owner.entry(owner.as_str()).or_default().push(*addr);
                    }
                }
                for (owner, port) in &ipam.ports {
                    if let Some(addrs) = by_owner.get(owner.as_str()) {
                        allocated.entry(port).or_default().extend(addrs);
                    }
                }
            }
            for port in &net.endpoints {
                let Some(owner) = model.port_owners.get(port) else {
                    continue;
                };
                let Some(pod) = owner.pod.as_deref() else {
                    continue;
                };
                let name = pod.rsplit('/').next().unwrap_or(pod).to_ascii_lowercase();
                if !valid_label(&name) {
                    continue;
                }
                let addrs: Vec<IpAddr> = owner
                    .ips
                    .iter()
                    .chain(allocated.get(port).into_iter().flatten())
                    .copied()
                    .collect();
                let fqdn = Name(vec![name.clone(), network.clone(), ZONE.into()]);
                for ip in &addrs {
                    zone.reverse.entry(*ip).or_default().insert(fqdn.clone());
                }
                zone.hosts
                    .entry((network.clone(), name))
                    .or_default()
                    .extend(addrs);
            }
        }
        zone
    }

    fn soa(&self) -> Record {
        Record {
            name: Name(vec![ZONE.into()]),
            ttl: TTL,
            data: RData::Soa(Soa {
                mname: Name(vec!["ns".into(), ZONE.into()]),
                rname: Name(vec!["hostmaster".into(), ZONE.into()]),
                serial: self.serial,
                // refresh, retry, expire, minimum (the negative-answer TTL)
                times: [60, 10, 600, TTL],
            }),
        }
    }

    /// The answer to `query` (opcode and class checked here too).
    pub fn answer(&self, query: &Query) -> Answer {
        let refused = Answer {
            rcode: u16::from(wire::RCODE_REFUSED),
            ..Answer::default()
        };
        if query.opcode != 0 {
            return Answer {
                rcode: u16::from(wire::RCODE_NOTIMP),
                ..Answer::default()
            };
        }
        if query.edns.is_some_and(|e| e.version > 0) {
            return Answer {
                rcode: wire::RCODE_BADVERS,
                ..Answer::default()
            };
        }
        if query.qclass != wire::CLASS_IN && query.qclass != 255 {
            return refused;
        }
        let name = &query.name;
        let record = |data: RData| Record {
            name: name.clone(),
            ttl: TTL,
            data,
        };
        let found = |answers: Vec<Record>| Answer {
            rcode: u16::from(wire::RCODE_NOERROR),
            aa: true,
            answers,
            authority: vec![],
        };
        let nodata = |zone: &Zone| Answer {
            rcode: u16::from(wire::RCODE_NOERROR),
            aa: true,
            answers: vec![],
            authority: vec![zone.soa()],
        };
        // Reverse names: only those of addresses we hold.
        if name.ends_with(&["in-addr", "arpa"]) || name.ends_with(&["ip6", "arpa"]) {
            let Some(targets) = name.reverse_address().and_then(|ip| self.reverse.get(&ip)) else {
                return refused;
            };
            return match query.qtype {
                wire::TYPE_PTR | wire::TYPE_ANY => found(
                    targets
                        .iter()
                        .map(|t| record(RData::Ptr(t.clone())))
                        .collect(),
                ),
                _ => nodata(self),
            };
        }
        if !name.ends_with(&[ZONE]) {
            return refused;
        }
        let addresses = |addrs: &BTreeSet<IpAddr>| {
            let want = |ip: &&IpAddr| match query.qtype {
                wire::TYPE_A => ip.is_ipv4(),
                wire::TYPE_AAAA => ip.is_ipv6(),
                wire::TYPE_ANY => true,
                _ => false,
            };
            let answers: Vec<Record> = addrs
                .iter()
                .filter(want)
                .map(|ip| record(RData::Addr(*ip)))
                .collect();
            if answers.is_empty() {
                nodata(self)
            } else {
                found(answers)
            }
        };
        if let Some(addrs) = self.extra.get(name) {
            return addresses(addrs);
        }
        if self.empty_non_terminals.contains(name) {
            return nodata(self);
        }
        let labels = &name.0[..name.0.len() - 1];
        let nxdomain = Answer {
            rcode: u16::from(wire::RCODE_NXDOMAIN),
            aa: true,
            answers: vec![],
            authority: vec![self.soa()],
        };
        match labels {
            [] => match query.qtype {
                wire::TYPE_SOA | wire::TYPE_ANY => found(vec![self.soa()]),
                _ => nodata(self),
            },
            [network] if self.networks.contains(network) => nodata(self),
            [host, network] => match self.hosts.get(&(network.clone(), host.clone())) {
                Some(addrs) => addresses(addrs),
                None => nxdomain,
            },
            _ => nxdomain,
        }
    }
}

impl Zone {
    /// The answer to `query` as seen from inside network `network` (the in-network path,
    /// [`crate::netdns`]): only that network's names exist. `<name>.<network>.l2sm` (and
    /// update-API names `<pod>.<network>.<scope>.l2sm`), the network's own name and the apex
    /// answer as [`Zone::answer`] does; every other name under `l2sm` is NXDOMAIN, and a
    /// reverse name is answered with the PTRs to this network's names only (NXDOMAIN when
    /// there are none: an address of another network looks exactly like an unknown one).
    pub fn answer_from_network(&self, network: &str, query: &Query) -> Answer {
        let plain = self.answer(query);
        if query.opcode != 0
            || query.edns.is_some_and(|e| e.version > 0)
            || (query.qclass != wire::CLASS_IN && query.qclass != 255)
        {
            return plain;
        }
        let name = &query.name;
        let ours = |n: &Name| {
            n.ends_with(&[ZONE])
                && n.0.len() >= 3
                && n.0.get(1).map(String::as_str) == Some(network)
        };
        let nxdomain = |authority| Answer {
            rcode: u16::from(wire::RCODE_NXDOMAIN),
            aa: true,
            answers: vec![],
            authority,
        };
        if name.ends_with(&["in-addr", "arpa"]) || name.ends_with(&["ip6", "arpa"]) {
            let targets: Vec<&Name> = name
                .reverse_address()
                .and_then(|ip| self.reverse.get(&ip))
                .into_iter()
                .flatten()
                .filter(|t| ours(t))
                .collect();
            if targets.is_empty() {
                return nxdomain(vec![]);
            }
            let answers = match query.qtype {
                wire::TYPE_PTR | wire::TYPE_ANY => targets
                    .into_iter()
                    .map(|t| Record {
                        name: name.clone(),
                        ttl: TTL,
                        data: RData::Ptr(t.clone()),
                    })
                    .collect(),
                _ => vec![],
            };
            let authority = if answers.is_empty() {
                vec![self.soa()]
            } else {
                vec![]
            };
            return Answer {
                rcode: u16::from(wire::RCODE_NOERROR),
                aa: true,
                answers,
                authority,
            };
        }
        if !name.ends_with(&[ZONE]) {
            return plain;
        }
        let labels = &name.0[..name.0.len() - 1];
        let visible = labels.is_empty() || labels == [network] || ours(name);
        if visible {
            plain
        } else {
            nxdomain(vec![self.soa()])
        }
    }
}

/// Why an entry of the update API was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// A field is missing or not a DNS label.
    #[error("{0} must be a DNS label (1-63 of a-z, 0-9, '-', not starting or ending with '-')")]
    BadLabel(&'static str),
    /// The address does not parse.
    #[error("ip_address {0:?} is not an IPv4 or IPv6 address")]
    BadAddress(String),
    /// The entries file could not be written.
    #[error("cannot persist DNS entries: {0}")]
    Persist(std::io::Error),
}

/// Entries file (in the controller's state directory).
pub const ENTRIES_FILE: &str = "dns-entries.json";

/// The zone of the model's current generation (plus the update API's entries), rebuilt on
/// the first query after either changed.
pub struct Zones {
    shared: Arc<crate::Shared>,
    entries_path: Option<std::path::PathBuf>,
    entries: Mutex<BTreeMap<Name, BTreeSet<IpAddr>>>,
    entries_version: std::sync::atomic::AtomicU64,
    /// Each cluster's `inter` names (`ReplaceCluster`), held in memory only: clusters send
    /// theirs again periodically, so a restarted provider refills within one period.
    clusters: Mutex<BTreeMap<String, BTreeMap<Name, BTreeSet<IpAddr>>>>,
    current: Mutex<Option<(ZoneKey, Arc<Zone>)>>,
}

/// Most names one cluster may hold through `ReplaceCluster`.
pub const MAX_CLUSTER_ENTRIES: usize = 1024;

/// Largest `ReplaceCluster` request, bytes: [`MAX_CLUSTER_ENTRIES`] entries of the longest
/// fields (two 63-byte labels, an IPv6 address, the scope, framing: under 200 bytes each).
/// Other calls keep gRPC's usual bound.
pub const MAX_REPLACE_MESSAGE: usize = 256 * 1024;

/// The scope of names clusters publish to the provider.
pub const INTER_SCOPE: &str = "inter";

/// Why a cluster's replace was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The cluster name is not a DNS label.
    #[error(
        "cluster must be a DNS label (1-63 of a-z, 0-9, '-', not starting or ending with '-')"
    )]
    BadCluster,
    /// More entries than [`MAX_CLUSTER_ENTRIES`].
    #[error("{0} entries: a cluster holds at most {MAX_CLUSTER_ENTRIES}")]
    TooMany(usize),
    /// An entry's scope is not `inter`.
    #[error("entry {0}: scope must be \"inter\", not {1:?}")]
    BadScope(usize, String),
    /// An entry's name or address is invalid.
    #[error("entry {0}: {1}")]
    Entry(usize, EntryError),
    /// A name is held by another cluster.
    #[error("{name} is held by cluster {holder}")]
    Taken {
        /// The name.
        name: Name,
        /// The cluster holding it.
        holder: String,
    },
}

/// What a built zone was derived from: the model's generation and the entries' version.
type ZoneKey = (u64, u64);

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredEntry {
    name: String,
    ip: IpAddr,
}

impl Zones {
    /// Zones of `shared`'s model, without update-API entries.
    pub fn new(shared: Arc<crate::Shared>) -> Zones {
        Zones {
            shared,
            entries_path: None,
            entries: Mutex::new(BTreeMap::new()),
            entries_version: Default::default(),
            clusters: Mutex::new(BTreeMap::new()),
            current: Mutex::new(None),
        }
    }

    /// Zones of `shared`'s model with the entries kept in `dir`/[`ENTRIES_FILE`] (read now).
    pub fn with_entries_in(
        shared: Arc<crate::Shared>,
        dir: &std::path::Path,
    ) -> anyhow::Result<Zones> {
        use anyhow::Context as _;
        let path = dir.join(ENTRIES_FILE);
        let mut entries: BTreeMap<Name, BTreeSet<IpAddr>> = BTreeMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Vec<StoredEntry> = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{}: not a DNS entries file", path.display()))?;
                for e in stored {
                    let name = Name::parse(&e.name)
                        .with_context(|| format!("{}: bad name {:?}", path.display(), e.name))?;
                    entries.entry(name).or_default().insert(e.ip);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        Ok(Zones {
            entries_path: Some(path),
            entries: Mutex::new(entries),
            ..Zones::new(shared)
        })
    }

    /// The zone now.
    pub fn current(&self) -> Arc<Zone> {
        // The generation first: the model read next holds at least its changes (a change
        // committed meanwhile bumps it again and the next query rebuilds).
        let generation = self.shared.generation();
        let version = self
            .entries_version
            .load(std::sync::atomic::Ordering::Acquire);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, zone)) = current.as_ref() {
            if *key == (generation, version) {
                return zone.clone();
            }
        }
        let mut extra = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        // Cluster names only for the networks this controller holds (the provider's
        // provider networks): a cluster cannot name a network the provider does not serve.
        let networks: BTreeSet<String> = self
            .shared
            .with_model(|m| m.networks.keys().map(|n| n.to_ascii_lowercase()).collect());
        for names in clusters.values() {
            for (name, ips) in names {
                if name.0.get(1).is_some_and(|n| networks.contains(n)) {
                    extra.entry(name.clone()).or_default().extend(ips);
                }
            }
        }
        drop(clusters);
        let serial = (generation as u32).wrapping_add(version as u32);
        let zone = Arc::new(
            self.shared
                .with_model(|m| Zone::with_entries(m, serial, &extra)),
        );
        *current = Some(((generation, version), zone.clone()));
        zone
    }

    /// The name `<pod>.<network>.<scope>.l2sm` of an update-API entry.
    pub fn entry_name(pod: &str, network: &str, scope: &str) -> Result<Name, EntryError> {
        for (what, label) in [("pod_name", pod), ("network", network), ("scope", scope)] {
            if !valid_label(label) {
                return Err(EntryError::BadLabel(what));
            }
        }
        Ok(Name(vec![
            pod.into(),
            network.into(),
            scope.into(),
            ZONE.into(),
        ]))
    }

    /// Replaces cluster `cluster`'s `inter` names with `entries` (`<pod_name>.<network>.inter.l2sm`
    /// → `ip_address`); an empty list removes them all. Validated as a whole: any bad entry,
    /// more than [`MAX_CLUSTER_ENTRIES`], or a name another cluster holds refuses the call and
    /// changes nothing. Returns whether anything changed.
    pub fn replace_cluster(
        &self,
        cluster: &str,
        entries: &[grpc::DnsEntry],
    ) -> Result<bool, ReplaceError> {
        if !valid_label(cluster) {
            return Err(ReplaceError::BadCluster);
        }
        if entries.len() > MAX_CLUSTER_ENTRIES {
            return Err(ReplaceError::TooMany(entries.len()));
        }
        let mut next: BTreeMap<Name, BTreeSet<IpAddr>> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            if e.scope != INTER_SCOPE {
                return Err(ReplaceError::BadScope(i, e.scope.clone()));
            }
            let name = Zones::entry_name(&e.pod_name, &e.network, &e.scope)
                .map_err(|err| ReplaceError::Entry(i, err))?;
            let ip: IpAddr = e.ip_address.parse().map_err(|_| {
                ReplaceError::Entry(i, EntryError::BadAddress(e.ip_address.clone()))
            })?;
            next.entry(name).or_default().insert(ip);
        }
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        for (holder, names) in clusters.iter() {
            if holder == cluster {
                continue;
            }
            if let Some(name) = next.keys().find(|n| names.contains_key(*n)) {
                return Err(ReplaceError::Taken {
                    name: name.clone(),
                    holder: holder.clone(),
                });
            }
        }
        let changed = if next.is_empty() {
            clusters.remove(cluster).is_some()
        } else if clusters.get(cluster) == Some(&next) {
            false
        } else {
            clusters.insert(cluster.to_string(), next);
            true
        };
        if changed {
            self.entries_version
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        Ok(changed)
    }

    /// The names cluster `cluster` holds (`ReplaceCluster`), with their addresses.
    pub fn cluster_names(&self, cluster: &str) -> BTreeMap<Name, BTreeSet<IpAddr>> {
        self.clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster)
            .cloned()
            .unwrap_or_default()
    }

    /// Adds (`add`) or removes an entry; persisted before it is visible. Returns whether
    /// anything changed.
    pub fn change_entry(&self, name: Name, ip: &str, add: bool) -> Result<bool, EntryError> {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| EntryError::BadAddress(ip.to_string()))?;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = entries.clone();
        let changed = if add {
            next.entry(name).or_default().insert(ip)
        } else {
            let removed = next.get_mut(&name).is_some_and(|s| s.remove(&ip));
            if next.get(&name).is_some_and(BTreeSet::is_empty) {
                next.remove(&name);
            }
            removed
        };
        if !changed {
            return Ok(false);
        }
        if let Some(path) = &self.entries_path {
            let stored: Vec<StoredEntry> = next
                .iter()
                .flat_map(|(n, ips)| {
                    ips.iter().map(move |ip| StoredEntry {
                        name: n.to_string(),
                        ip: *ip,
                    })
                })
                .collect();
            let bytes = serde_json::to_vec_pretty(&stored)
                .map_err(|e| EntryError::Persist(std::io::Error::other(e)))?;
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, bytes)
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(EntryError::Persist)?;
        }
        *entries = next;
        self.entries_version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
