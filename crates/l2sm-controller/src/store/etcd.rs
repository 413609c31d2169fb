//! The model in etcd (`--store etcd://host:port[,host:port…][/prefix]`).
//!
//! Keys, under the prefix (default `/l2sm/`; network names are escaped, `%` as `%25` and `/` as
//! `%2F`, so one network's keys never fall under another's):
//!
//! | key                             | value                                  |
//! |---------------------------------|----------------------------------------|
//! | `generation`                    | changes committed so far (decimal)     |
//! | `meta/next_vni`                 | decimal                                |
//! | `meta/next_member_seq`          | decimal                                |
//! | `networks/<net>`                | JSON network row (as redb's)           |
//! | `members/<net>/<port>`          | join sequence (decimal)                |
//! | `allocations/<net>/<addr>`      | owner                                  |
//! | `owner_ports/<net>/<owner>`     | port id                                |
//! | `port_owners/<port>`            | JSON [`PortOwner`]                     |
//! | `leader`                        | the leader replica's name (`--replica`), on its lease |
//!
//! With `--replica NAME`, replicas elect a leader: the `leader` key, created only if absent and
//! held by a lease of [`LEASE_TTL_SECS`] renewed every second. Only the leader writes, and
//! each of its transactions also compares the leader key's create_revision with the one it
//! created (fencing: a deposed leader's write fails in etcd), and it stops acting on its own
//! 1.5 s before its lease could expire when renewals fail (cut off from etcd).
//!
//! Each change is one etcd transaction: its puts and deletes, plus the next `generation`,
//! applied only if `generation`'s mod_revision is still the one this controller last read or
//! wrote. Two controllers writing at once can never both win: the loser gets
//! [`StoreError::Conflict`], writes nothing, and reloads. Load is one ranged get, paged, at
//! one revision (a consistent snapshot).
//!
//! The client is async (tonic); the store is called from the controller's synchronous update
//! path, so requests run on a small runtime of their own and the caller blocks on the answer,
//! as it blocks on redb's fsync.

use super::{Diff, NetworkRow, StoreError};
use crate::model::{Model, PortOwner};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, PutOptions,
    Txn, TxnOp, TxnOpResponse,
};
use l2sm_pipeline::ids::PortId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/l2sm/";
/// Keys per page of the load.
const PAGE: i64 = 1000;
/// How long one request (a get page, a transaction) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the state lives in etcd: parsed from `etcd://host:port[,host:port…][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTarget {
    /// `http://host:port` of each member.
    pub endpoints: Vec<String>,
    /// The key prefix, starting and ending with `/`.
    pub prefix: String,
}

impl EtcdTarget {
    /// Parses `etcd://host:port[,host:port…][/prefix]`.
    pub fn parse(spec: &str) -> Result<EtcdTarget, StoreError> {
        let bad = |reason: &str| StoreError::BadSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let rest = spec.strip_prefix("etcd://").ok_or_else(|| {
            bad("expected `redb` or etcd://host:port[,host:port…][/prefix] (etcds:// is not supported)")
        })?;
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, p),
            None => (rest, ""),
        };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| bad(&format!("endpoint {host:?} is not host:port")))?;
            if name.is_empty()
                || name
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "@?#".contains(c))
            {
                return Err(bad(&format!("endpoint {host:?} has no valid host")));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(bad(&format!("endpoint {host:?} has no valid port"))),
            }
            endpoints.push(format!("http://{name}:{port}"));
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the prefix holds whitespace or control characters"));
        }
        let prefix = if prefix.is_empty() {
            DEFAULT_PREFIX.to_string()
        } else {
            format!("/{prefix}/")
        };
        Ok(EtcdTarget { endpoints, prefix })
    }
}

/// Lease of the leader key, seconds: a dead leader's key is gone this long after its last
/// renewal.
pub const LEASE_TTL_SECS: i64 = 5;
/// A leader stops acting this long before its lease could expire in etcd (counted from when
/// it sent the last renewal that etcd acknowledged, which is before etcd received it).
const FENCE_MARGIN: Duration = Duration::from_millis(1500);
/// How often a follower tries to take an empty leader key.
const CAMPAIGN_EVERY: Duration = Duration::from_millis(250);
/// How often the lease is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(1);

/// This replica's part in the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// No answer from etcd yet (or the lease was lost).
    Unknown,
    /// Another replica leads.
    Follower {
        /// Its name (`--replica`).
        leader: String,
    },
    /// This replica leads, while `Instant::now() < until`.
    Leader {
        /// create_revision of the leader key it wrote: each write compares it (fencing).
        revision: i64,
        /// When it stops acting unless the lease is renewed.
        until: Instant,
    },
}

/// Leader election through the `leader` key under the prefix, held by a lease.
#[derive(Debug)]
struct Election {
    name: String,
    role: Mutex<Role>,
    /// Set when this replica became leader: the model must be reloaded before it writes.
    reload: AtomicBool,
    /// The lease the election runs on now (0: none yet).
    lease: AtomicI64,
    /// Set when the controller stops: campaign no more.
    resigned: AtomicBool,
}

impl Election {
    fn set(&self, role: Role) {
        let mut r = self.role.lock().unwrap_or_else(|e| e.into_inner());
        let was_leader = matches!(*r, Role::Leader { .. });
        let is_leader = matches!(role, Role::Leader { .. });
        if is_leader && !was_leader {
            self.reload.store(true, Ordering::SeqCst);
            tracing::info!(replica = %self.name, "elected leader");
        } else if was_leader && !is_leader {
            tracing::warn!(replica = %self.name, now = ?role, "no longer the leader");
        }
        *r = role;
    }

    fn role(&self) -> Role {
        self.role.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Campaigns for, holds and renews the leader key, for as long as the store lives.
async fn run_election(client: Client, key: String, el: Arc<Election>) {
    while !el.resigned.load(Ordering::SeqCst) {
        let mut leases = client.lease_client();
        let asked = Instant::now();
        let lease = match leases.grant(LEASE_TTL_SECS, None).await {
            Ok(r) => {
                el.lease.store(r.id(), Ordering::SeqCst);
                r.id()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot get an etcd lease for the election");
                el.set(Role::Unknown);
                tokio::time::sleep(CAMPAIGN_EVERY).await;
                continue;
            }
        };
        let (mut keeper, mut answers) = match leases.keep_alive(lease).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the etcd lease");
                el.set(Role::Unknown);
                tokio::time::sleep(CAMPAIGN_EVERY).await;
                continue;
            }
        };
        let mut renewed = asked;
        let mut last_renewal = Instant::now();
        let ttl = Duration::from_secs(LEASE_TTL_SECS.unsigned_abs());
        loop {
            if el.resigned.load(Ordering::SeqCst) {
                break;
            }
            if last_renewal.elapsed() >= RENEW_EVERY {
                last_renewal = Instant::now();
                let sent = Instant::now();
                let answer = async {
                    keeper.keep_alive().await?;
                    answers.message().await
                };
                match tokio::time::timeout(RENEW_EVERY, answer).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => renewed = sent,
                    Ok(Ok(_)) => {
                        tracing::warn!("etcd lease of the election expired");
                        el.set(Role::Unknown);
                        break;
                    }
                    Ok(Err(_)) | Err(_) => {
                        if renewed.elapsed() >= ttl {
                            el.set(Role::Unknown);
                            break;
                        }
                    }
                }
            }
            let until = renewed + ttl - FENCE_MARGIN;
            match el.role() {
                Role::Leader { revision, .. } => {
                    el.set(Role::Leader { revision, until });
                }
                _ => {
                    let mut kv = client.kv_client();
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(
                            key.clone(),
                            el.name.clone(),
                            Some(PutOptions::new().with_lease(lease)),
                        )])
                        .or_else([TxnOp::get(key.clone(), None)]);
                    match tokio::time::timeout(REQUEST_TIMEOUT, kv.txn(txn)).await {
                        Ok(Ok(r)) if r.succeeded() => {
                            let revision = r.header().map(|h| h.revision()).unwrap_or(0);
                            el.set(Role::Leader { revision, until });
                        }
                        Ok(Ok(r)) => {
                            let leader =
                                r.op_responses()
                                    .into_iter()
                                    .find_map(|op| match op {
                                        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                                            String::from_utf8_lossy(kv.value()).into_owned()
                                        }),
                                        _ => None,
                                    })
                                    .unwrap_or_else(|| "unknown".into());
                            el.set(Role::Follower { leader });
                        }
                        Ok(Err(_)) | Err(_) => el.set(Role::Unknown),
                    }
                }
            }
            let pause = if matches!(el.role(), Role::Leader { .. }) {
                RENEW_EVERY
            } else {
                CAMPAIGN_EVERY
            };
            tokio::time::sleep(pause).await;
        }
        // The lease is gone or unreachable: the key with it; campaign again on a new one.
        let _ = leases.revoke(lease).await;
    }
}

/// What the next change is compared with.
#[derive(Debug, Default)]
struct Seen {
    /// mod_revision of the `generation` key as last read or written (0: absent).
    revision: i64,
    /// Its value.
    generation: u64,
    /// The next member sequence number.
    next_member_seq: u64,
}

/// The model in etcd.
pub struct EtcdStore {
    rt: Option<tokio::runtime::Runtime>,
    client: Client,
    prefix: String,
    endpoints: String,
    seen: Mutex<Seen>,
    election: Option<Arc<Election>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // May run inside the controller's runtime: never wait there.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// `%` and `/` of a network name escaped, so a name is one key segment.
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

fn unescape(seg: &str) -> String {
    seg.replace("%2F", "/").replace("%25", "%")
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connects to `target`. Nothing is read yet: [`EtcdStore::load`] does.
    pub fn connect(target: &EtcdTarget) -> Result<EtcdStore, StoreError> {
        let endpoints = target.endpoints.join(",");
        let err = |reason: String| StoreError::Etcd {
            endpoints: endpoints.clone(),
            reason: reason.replace('\n', " "),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("l2sm-etcd")
            .enable_all()
            .build()
            .map_err(|e| err(format!("cannot start the client's runtime: {e}")))?;
        let eps = target.endpoints.clone();
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let client = futures::executor::block_on(rt.spawn(Client::connect(eps, Some(options))))
            .map_err(|e| err(format!("client task failed: {e}")))?
            .map_err(|e| err(format!("cannot connect: {e}")))?;
        Ok(EtcdStore {
            rt: Some(rt),
            client,
            prefix: target.prefix.clone(),
            endpoints,
            seen: Mutex::new(Seen::default()),
            election: None,
        })
    }

    /// Connects and takes part in the leader election as `replica`: only the leader writes
    /// (others get [`StoreError::NotLeader`] naming it), and only while its lease holds.
    pub fn connect_replica(target: &EtcdTarget, replica: &str) -> Result<EtcdStore, StoreError> {
        let mut store = EtcdStore::connect(target)?;
        let el = Arc::new(Election {
            name: replica.to_string(),
            role: Mutex::new(Role::Unknown),
            reload: AtomicBool::new(false),
            lease: AtomicI64::new(0),
            resigned: AtomicBool::new(false),
        });
        if let Some(rt) = &store.rt {
            rt.spawn(run_election(
                store.client.clone(),
                store.key("leader"),
                el.clone(),
            ));
        }
        store.election = Some(el);
        Ok(store)
    }

    /// This replica's role (`None`: no election, the store is written by whoever holds it).
    pub fn role(&self) -> Option<Role> {
        self.election.as_ref().map(|e| e.role())
    }

    /// Leaves the election (the controller is stopping): stops acting at once and revokes the
    /// lease, which deletes the leader key, so another replica takes over within its campaign
    /// interval instead of waiting for the lease to expire.
    pub fn resign(&self) {
        let Some(el) = &self.election else {
            return;
        };
        el.resigned.store(true, Ordering::SeqCst);
        el.set(Role::Unknown);
        let lease = el.lease.load(Ordering::SeqCst);
        if lease == 0 {
            return;
        }
        let mut leases = self.client.lease_client();
        let revoked = self.block(async move {
            tokio::time::timeout(Duration::from_secs(2), leases.revoke(lease)).await
        });
        match revoked {
            Ok(Ok(Ok(_))) => tracing::info!(replica = %el.name, "left the election"),
            _ => tracing::warn!(
                replica = %el.name,
                "could not revoke the election lease: it expires within {LEASE_TTL_SECS} s"
            ),
        }
    }

    /// Whether another writer changed the state since this store last loaded or saved (one
    /// get of the `generation` key). Followers poll it to keep their copy current.
    pub fn changed_elsewhere(&self) -> Result<bool, StoreError> {
        let mut kv = self.client.kv_client();
        let key = self.key("generation");
        let got = self
            .block(async move { kv.get(key, None).await })?
            .map_err(|e| self.etcd_err("cannot read the generation", e))?;
        let now = got.kvs().first().map_or(0, KeyValue::mod_revision);
        Ok(now != self.seen.lock().unwrap_or_else(|e| e.into_inner()).revision)
    }

    /// True once after this replica became leader: the state must be reloaded before writing.
    pub fn take_reload(&self) -> bool {
        self.election
            .as_ref()
            .is_some_and(|e| e.reload.swap(false, Ordering::SeqCst))
    }

    /// The leader key's create_revision this replica writes under, or why it may not write.
    fn fence(&self) -> Result<Option<i64>, StoreError> {
        let Some(el) = &self.election else {
            return Ok(None);
        };
        match el.role() {
            Role::Leader { revision, until } if Instant::now() < until => Ok(Some(revision)),
            Role::Leader { .. } => Err(StoreError::NotLeader {
                leader: "unknown: this replica's lease was not renewed in time".into(),
            }),
            Role::Follower { leader } => Err(StoreError::NotLeader { leader }),
            Role::Unknown => Err(StoreError::NotLeader {
                leader: "unknown: no election result from etcd".into(),
            }),
        }
    }

    fn etcd_err(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            reason: format!("{what}: {e}").replace('\n', " "),
        }
    }

    /// Runs `f` on the client's runtime and waits for it (from any thread, in or out of a
    /// runtime).
    fn block<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| self.etcd_err("store", "closed"))?;
        futures::executor::block_on(rt.spawn(f)).map_err(|e| self.etcd_err("client task", e))
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Every key under the prefix, at one revision, a page at a time.
    fn read_all(&self) -> Result<Vec<KeyValue>, StoreError> {
        let mut kv = self.client.kv_client();
        let prefix = self.prefix.clone().into_bytes();
        self.block(async move {
            let end = prefix_end(&prefix);
            let mut start = prefix;
            let mut revision = 0;
            let mut out = Vec::new();
            loop {
                let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
                if revision != 0 {
                    options = options.with_revision(revision);
                }
                let mut resp = kv.get(start.clone(), Some(options)).await?;
                if revision == 0 {
                    revision = resp.header().map(|h| h.revision()).unwrap_or(0);
                }
                let more = resp.more();
                let kvs = resp.take_kvs();
                match kvs.last() {
                    Some(last) => {
                        start = last.key().to_vec();
                        start.push(0);
                    }
                    None => break,
                }
                out.extend(kvs);
                if !more {
                    break;
                }
            }
            Ok::<_, etcd_client::Error>(out)
        })?
        .map_err(|e| self.etcd_err("cannot read the state", e))
    }

    /// Loads the model (an empty one when the prefix holds nothing) and records the revision
    /// the next change is compared with.
    pub fn load(&self) -> Result<Model, StoreError> {
        let kvs = self.read_all()?;
        let mut seen = Seen::default();
        let mut model = Model {
            networks: BTreeMap::new(),
            next_vni: 1,
            port_owners: BTreeMap::new(),
        };
        let mut members: BTreeMap<String, Vec<(u64, PortId)>> = BTreeMap::new();
        let mut allocations = Vec::new();
        let mut owner_ports = Vec::new();
        let mut port_owners = Vec::new();
        for kv in &kvs {
            let full = String::from_utf8_lossy(kv.key()).into_owned();
            let corrupt = |what: String| StoreError::EtcdCorrupt {
                key: full.clone(),
                what,
            };
            let rest = full
                .strip_prefix(&self.prefix)
                .ok_or_else(|| corrupt("outside the prefix".into()))?;
            let value = std::str::from_utf8(kv.value())
                .map_err(|_| corrupt("the value is not UTF-8".into()))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| corrupt(format!("{value:?} is not a number")))
            };
            let (kind, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let in_network = || {
                tail.split_once('/')
                    .map(|(net, rest)| (unescape(net), rest))
                    .ok_or_else(|| corrupt("expected <network>/<name>".into()))
            };
            let parse_port = |s: &str| {
                s.parse::<PortId>()
                    .map_err(|e| corrupt(format!("port {s:?}: {e}")))
            };
            match (kind, tail) {
                ("generation", "") => {
                    seen.generation = number()?;
                    seen.revision = kv.mod_revision();
                }
                ("meta", "next_vni") => {
                    model.next_vni = u32::try_from(number()?)
                        .map_err(|_| corrupt(format!("{value:?} is out of range")))?;
                }
                ("meta", "next_member_seq") => seen.next_member_seq = number()?,
                // The election's key (`--replica`): not part of the model.
                ("leader", "") => {}
                ("networks", name) if !name.is_empty() && !name.contains('/') => {
                    let row: NetworkRow = serde_json::from_str(value)
                        .map_err(|e| corrupt(format!("not a network row: {e}")))?;
                    let network = row.into_network().map_err(corrupt)?;
                    model.networks.insert(unescape(name), network);
                }
                ("members", _) => {
                    let (net, port) = in_network()?;
                    let port = parse_port(port)?;
                    members.entry(net).or_default().push((number()?, port));
                }
                ("allocations", _) => {
                    let (net, addr) = in_network()?;
                    let addr: std::net::IpAddr = addr
                        .parse()
                        .map_err(|e| corrupt(format!("address {addr:?}: {e}")))?;
                    allocations.push((full.clone(), net, addr, value.to_string()));
                }
                ("owner_ports", _) => {
                    let (net, owner) = in_network()?;
                    let port = parse_port(value)?;
                    owner_ports.push((full.clone(), net, owner.to_string(), port));
                }
                ("port_owners", port) => {
                    let port = parse_port(port)?;
                    let owner: PortOwner = serde_json::from_str(value)
                        .map_err(|e| corrupt(format!("not a port owner: {e}")))?;
                    port_owners.push((full.clone(), port, owner));
                }
                _ => return Err(corrupt("not a key of the controller state".into())),
            }
        }
        let corrupt = |key: String, what: String| StoreError::EtcdCorrupt { key, what };
        for (network, mut ports) in members {
            let net = model.networks.get_mut(&network).ok_or_else(|| {
                corrupt(
                    self.key(&format!("members/{}/", escape(&network))),
                    "members of a network that does not exist".into(),
                )
            })?;
            ports.sort();
            net.endpoints = ports.into_iter().map(|(_, p)| p).collect();
        }
        for (key, network, addr, owner) in allocations {
            let ipam = model
                .networks
                .get_mut(&network)
                .and_then(|n| n.ipam.as_mut())
                .ok_or_else(|| corrupt(key, "allocation in a network without IPAM".into()))?;
            ipam.allocations.insert(addr, owner);
        }
        for (key, network, owner, port) in owner_ports {
            let ipam = model
                .networks
                .get_mut(&network)
                .and_then(|n| n.ipam.as_mut())
                .ok_or_else(|| corrupt(key, "owner in a network without IPAM".into()))?;
            ipam.ports.insert(owner, port);
        }
        for (key, port, owner) in port_owners {
            if model.network_of(&port).is_none() {
                return Err(corrupt(key, "owner of a port in no network".into()));
            }
            model.port_owners.insert(port, owner);
        }
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        Ok(model)
    }

    /// Makes the state go from `old` to `new` in one etcd transaction, if nobody wrote since
    /// this store last loaded or saved; [`StoreError::Conflict`] (nothing written) otherwise.
    pub fn save(&self, old: &Model, new: &Model) -> Result<(), StoreError> {
        let fence = self.fence()?;
        let d = Diff::of(old, new);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut ops = Vec::new();
        let put = |ops: &mut Vec<TxnOp>, k: String, v: String| ops.push(TxnOp::put(k, v, None));
        let del = |ops: &mut Vec<TxnOp>, k: String| ops.push(TxnOp::delete(k, None));
        if let Some(vni) = d.next_vni {
            put(&mut ops, self.key("meta/next_vni"), vni.to_string());
        }
        for (name, row) in &d.networks_put {
            put(
                &mut ops,
                self.key(&format!("networks/{}", escape(name))),
                serde_json::to_string(row)?,
            );
        }
        // A deleted network's rows go with one range delete per table (a big network stays
        // one small transaction).
        let deleted: BTreeSet<&str> = d.networks_del.iter().copied().collect();
        for name in &d.networks_del {
            let n = escape(name);
            del(&mut ops, self.key(&format!("networks/{n}")));
            for table in ["members", "allocations", "owner_ports"] {
                ops.push(TxnOp::delete(
                    self.key(&format!("{table}/{n}/")),
                    Some(DeleteOptions::new().with_prefix()),
                ));
            }
        }
        for (name, port) in d.left.iter().filter(|(n, _)| !deleted.contains(n)) {
            del(
                &mut ops,
                self.key(&format!("members/{}/{port}", escape(name))),
            );
        }
        let mut seq = seen.next_member_seq;
        for (name, port) in &d.joined {
            put(
                &mut ops,
                self.key(&format!("members/{}/{port}", escape(name))),
                seq.to_string(),
            );
            seq += 1;
        }
        if !d.joined.is_empty() {
            put(&mut ops, self.key("meta/next_member_seq"), seq.to_string());
        }
        for (name, addr) in d
            .allocations_del
            .iter()
            .filter(|(n, _)| !deleted.contains(n))
        {
            del(
                &mut ops,
                self.key(&format!("allocations/{}/{addr}", escape(name))),
            );
        }
        for (name, addr, owner) in &d.allocations_put {
            put(
                &mut ops,
                self.key(&format!("allocations/{}/{addr}", escape(name))),
                owner.to_string(),
            );
        }
        for (name, owner) in d
            .owner_ports_del
            .iter()
            .filter(|(n, _)| !deleted.contains(n))
        {
            del(
                &mut ops,
                self.key(&format!("owner_ports/{}/{owner}", escape(name))),
            );
        }
        for (name, owner, port) in &d.owner_ports_put {
            put(
                &mut ops,
                self.key(&format!("owner_ports/{}/{owner}", escape(name))),
                port.to_string(),
            );
        }
        for port in &d.port_owners_del {
            del(&mut ops, self.key(&format!("port_owners/{port}")));
        }
        for (port, owner) in &d.port_owners_put {
            put(
                &mut ops,
                self.key(&format!("port_owners/{port}")),
                serde_json::to_string(owner)?,
            );
        }
        let generation = seen.generation + 1;
        let gen_key = self.key("generation");
        put(&mut ops, gen_key.clone(), generation.to_string());
        let mut compares = vec![Compare::mod_revision(
            gen_key,
            CompareOp::Equal,
            seen.revision,
        )];
        let leader_key = self.key("leader");
        if let Some(revision) = fence {
            // Fencing: the write holds only while this replica's leader key does.
            compares.push(Compare::create_revision(
                leader_key.clone(),
                CompareOp::Equal,
                revision,
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else([TxnOp::get(leader_key, None)]);
        let mut kv = self.client.kv_client();
        let resp = self
            .block(async move { kv.txn(txn).await })?
            .map_err(|e| self.etcd_err("cannot write the state", e))?;
        if !resp.succeeded() {
            if let Some(revision) = fence {
                let holder = resp.op_responses().into_iter().find_map(|op| match op {
                    TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                        (
                            kv.create_revision(),
                            String::from_utf8_lossy(kv.value()).into_owned(),
                        )
                    }),
                    _ => None,
                });
                match holder {
                    Some((r, _)) if r == revision => {}
                    other => {
                        if let Some(el) = &self.election {
                            el.set(Role::Unknown);
                        }
                        return Err(StoreError::NotLeader {
                            leader: other.map_or("none".into(), |(_, name)| name),
                        });
                    }
                }
            }
            return Err(StoreError::Conflict);
        }
        let revision = resp
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| self.etcd_err("write", "answer without a revision"))?;
        *seen = Seen {
            revision,
            generation,
            next_member_seq: seq,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{apply, owner, port, step};
    use super::super::{Store, StoreError};
    use super::*;
    use crate::ipam::Ipam;
    use l2sm_test_support::etcd::EtcdProcess;

    fn open(etcd: &EtcdProcess, prefix: &str) -> Store {
        let dir = std::path::Path::new("/nonexistent");
        Store::from_spec(&etcd.url(prefix), dir, None).expect("connect to the test etcd")
    }

    /// Writes raw keys, as another program (or a bad hand) would.
    fn put_raw(etcd: &EtcdProcess, pairs: &[(&str, &[u8])]) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let url = format!("http://127.0.0.1:{}", etcd.client_port);
        rt.block_on(async {
            let mut c = Client::connect([url], None).await.unwrap();
            for (k, v) in pairs {
                c.put(*k, *v, None).await.unwrap();
            }
        });
    }

    #[test]
    fn store_urls_are_parsed_and_bad_ones_refused() {
        let t = EtcdTarget::parse("etcd://10.0.0.1:2379").unwrap();
        assert_eq!(t.endpoints, ["http://10.0.0.1:2379"]);
        assert_eq!(t.prefix, "/l2sm/");
        let t = EtcdTarget::parse("etcd://a:1,b.example:2379/prod/l2sm/").unwrap();
        assert_eq!(t.endpoints, ["http://a:1", "http://b.example:2379"]);
        assert_eq!(t.prefix, "/prod/l2sm/");
        assert_eq!(EtcdTarget::parse("etcd://a:1/x").unwrap().prefix, "/x/");
        for bad in [
            "etcd://",
            "etcd://a",
            "etcd://:1",
            "etcd://a:0",
            "etcd://a:99999",
            "etcd://a:1,",
            "etcd://a b:1",
            "etcd://a:1/x y",
            "etcds://a:1",
            "http://a:1",
            "rebd",
        ] {
            let e = Store::from_spec(bad, std::path::Path::new("/nonexistent"), None)
                .map(|_| ())
                .unwrap_err();
            assert!(matches!(e, StoreError::BadSpec { .. }), "{bad}: {e}");
            let text = e.to_string();
            assert!(
                text.contains("invalid --store") && !text.contains('\n'),
                "{text}"
            );
        }
        assert_eq!(escape("a/b%c"), "a%2Fb%25c");
        assert_eq!(unescape(&escape("a/b%2Fc%")), "a/b%2Fc%");
        assert_eq!(prefix_end(b"/l2sm/"), b"/l2sm0");
    }

    /// The same random histories written to redb and to etcd, change by change, load as the
    /// same model (member order included), and as the model itself; a second controller
    /// connecting afresh loads it too.
    #[test]
    fn etcd_and_redb_stores_load_the_same_model_over_random_histories() {
        use proptest::strategy::{Strategy as _, ValueTree as _};
        let etcd = EtcdProcess::start();
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 24,
            ..Default::default()
        });
        let histories = proptest::collection::vec(step(), 1..25);
        for case in 0..24 {
            let steps = histories.new_tree(&mut runner).unwrap().current();
            let dir = tempfile::tempdir().unwrap();
            let redb = Store::open(dir.path()).unwrap();
            let prefix = format!("/case{case}/");
            let etcd_store = open(&etcd, &prefix);
            let mut model = redb.load().unwrap();
            assert_eq!(etcd_store.load().unwrap(), model, "both start empty");
            for step in &steps {
                let mut next = model.clone();
                apply(&mut next, step);
                if next == model {
                    continue;
                }
                redb.save(&model, &next).unwrap();
                etcd_store.save(&model, &next).unwrap();
                model = next;
            }
            let from_redb = redb.load().unwrap();
            let from_etcd = etcd_store.load().unwrap();
            assert_eq!(from_etcd, from_redb, "case {case}: {steps:?}");
            assert_eq!(from_etcd, model, "case {case}: {steps:?}");
            drop(etcd_store);
            assert_eq!(open(&etcd, &prefix).load().unwrap(), model, "case {case}");
        }
    }

    /// A big network (more members than etcd's default 128 operations per transaction) is
    /// deleted in one small transaction; its rows are gone, another network's are kept.
    #[test]
    fn deleting_a_big_network_is_one_small_transaction() {
        let etcd = EtcdProcess::start();
        let store = open(&etcd, "/big/");
        let empty = store.load().unwrap();
        let mut m = empty.clone();
        m.create_network("a", None).unwrap();
        m.create_network("a/b", None).unwrap();
        m.add_ports("a/b", &[port(9, 9)]).unwrap();
        store.save(&empty, &m).unwrap();
        for chunk in 0..3u32 {
            let mut n = m.clone();
            let ports: Vec<PortId> = (0..100).map(|i| port(1, chunk * 100 + i + 1)).collect();
            n.add_ports("a", &ports).unwrap();
            store.save(&m, &n).unwrap();
            m = n;
        }
        let mut n = m.clone();
        n.delete_network("a");
        store.save(&m, &n).unwrap();
        assert_eq!(store.load().unwrap(), n);
        assert_eq!(n.networks["a/b"].endpoints, [port(9, 9)]);
    }

    /// Two controllers on the same state write at once, round after round: exactly one wins
    /// each round; the loser's error is retryable, wrote nothing, and after a reload its
    /// retry succeeds.
    #[test]
    fn two_writers_racing_exactly_one_wins_each_round() {
        let etcd = EtcdProcess::start();
        let stores = [open(&etcd, "/race/"), open(&etcd, "/race/")];
        let mut models = [stores[0].load().unwrap(), stores[1].load().unwrap()];
        let mut wins = [0u32; 2];
        for round in 0..30 {
            let nexts: Vec<Model> = (0..2)
                .map(|w| {
                    let mut n = models[w].clone();
                    n.create_network(&format!("w{w}-r{round}"), None).unwrap();
                    n
                })
                .collect();
            let barrier = std::sync::Barrier::new(2);
            let results: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..2)
                    .map(|w| {
                        let (store, old, new, barrier) =
                            (&stores[w], &models[w], &nexts[w], &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            store.save(old, new)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners: Vec<usize> = (0..2).filter(|w| results[*w].is_ok()).collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            let (winner, loser) = (winners[0], 1 - winners[0]);
            wins[winner] += 1;
            let err = results[loser].as_ref().unwrap_err();
            assert!(err.is_retryable(), "{err}");
            assert!(err.to_string().contains("another writer"), "{err}");
            // What is stored is the winner's change, and only it.
            let stored = stores[loser].load().unwrap();
            assert_eq!(stored, nexts[winner], "round {round}");
            assert!(!stored.networks.contains_key(&format!("w{loser}-r{round}")));
            // The loser retries on the reloaded state and wins.
            let mut retry = stored.clone();
            retry
                .create_network(&format!("w{loser}-r{round}"), None)
                .unwrap();
            stores[loser].save(&stored, &retry).unwrap();
            // The winner now lags: its next write fails until it reloads.
            let mut stale = nexts[winner].clone();
            stale.create_network("stale", None).unwrap();
            let err = stores[winner].save(&nexts[winner], &stale).unwrap_err();
            assert!(err.is_retryable(), "{err}");
            models = [stores[0].load().unwrap(), stores[1].load().unwrap()];
            assert_eq!(models[0], retry);
            assert_eq!(models[1], retry);
        }
        assert_eq!(wins[0] + wins[1], 30);
    }

    /// A value that does not decode is an error naming the key, never a panic, and the store
    /// is not changed by the attempt.
    #[test]
    fn bad_data_in_etcd_is_an_error_naming_the_key() {
        let etcd = EtcdProcess::start();
        let row = r#"{"vni":1,"vlan":1}"#.as_bytes();
        /// Raw keys and values written, and the key the error must name.
        type Case<'a> = (&'a [(&'a str, &'a [u8])], &'a str);
        let cases: &[Case<'_>] = &[
            (&[("/b1/networks/a", b"{not json")], "/b1/networks/a"),
            (&[("/b2/meta/next_vni", b"many")], "/b2/meta/next_vni"),
            (
                &[("/b3/meta/next_vni", b"99999999999")],
                "/b3/meta/next_vni",
            ),
            (&[("/b4/generation", b"\xff\xfe")], "/b4/generation"),
            (
                &[("/b5/networks/a", row), ("/b5/members/a/of:zz/1", b"0")],
                "/b5/members/a/of:zz/1",
            ),
            (
                &[
                    ("/b6/networks/a", row),
                    ("/b6/members/a/of:0000000000000001/1", b"x"),
                ],
                "/b6/members/a/of:0000000000000001/1",
            ),
            (
                &[("/b7/members/ghost/of:0000000000000001/1", b"0")],
                "/b7/members/ghost/",
            ),
            (
                &[
                    ("/b8/networks/a", row),
                    ("/b8/allocations/a/10.0.0.1", b"o"),
                ],
                "/b8/allocations/a/10.0.0.1",
            ),
            (
                &[("/b9/port_owners/of:0000000000000001/1", b"{}")],
                "/b9/port_owners/",
            ),
            (&[("/b10/something/else", b"1")], "/b10/something/else"),
            (
                &[(
                    "/b11/networks/a",
                    br#"{"vni":1,"ipam":{"cidrs":["10.0.0.0/33"],"podRanges":[],"exclude":[]}}"#,
                )],
                "/b11/networks/a",
            ),
        ];
        for (pairs, key) in cases {
            put_raw(&etcd, pairs);
            let prefix = format!("/{}/", key.split('/').nth(1).unwrap());
            let store = open(&etcd, &prefix);
            let err = store.load().unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, StoreError::EtcdCorrupt { .. }), "{text}");
            assert!(text.contains(key), "{key}: {text}");
            assert!(!text.contains('\n'), "{text}");
        }
    }

    /// An etcd that does not answer is one clear line naming it, not a hang or a panic.
    #[test]
    fn unreachable_etcd_is_a_clear_error() {
        let port = l2sm_test_support::free_port();
        let start = std::time::Instant::now();
        let err = Store::from_spec(
            &format!("etcd://127.0.0.1:{port}"),
            std::path::Path::new("/nonexistent"),
            None,
        )
        .and_then(|s| s.load())
        .unwrap_err()
        .to_string();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(!err.contains('\n'), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{:?}",
            start.elapsed()
        );
    }

    fn replica(etcd: &EtcdProcess, prefix: &str, name: &str) -> EtcdStore {
        EtcdStore::connect_replica(&EtcdTarget::parse(&etcd.url(prefix)).unwrap(), name).unwrap()
    }

    fn acting(s: &EtcdStore) -> bool {
        matches!(s.fence(), Ok(Some(_)))
    }

    fn wait(what: &str, secs: u64, f: impl Fn() -> bool) -> Duration {
        let start = std::time::Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    fn with_network(m: &Model, name: &str) -> Model {
        let mut n = m.clone();
        n.create_network(name, None).unwrap();
        n
    }

    /// One leader: the other replica refuses writes naming it (retryable, nothing written); a
    /// leader whose lease is revoked behind its back is fenced by etcd at its very next write
    /// (nothing written), and a new leader reloads and writes.
    #[test]
    fn only_the_leader_writes_and_a_deposed_leader_is_fenced() {
        let etcd = EtcdProcess::start();
        let a = replica(&etcd, "/el/", "a");
        wait("a elected", 10, || acting(&a));
        let b = replica(&etcd, "/el/", "b");
        wait("b follows a", 10, || {
            b.role() == Some(Role::Follower { leader: "a".into() })
        });
        assert!(!acting(&b));
        let m = a.load().unwrap();
        assert_eq!(b.load().unwrap(), m);
        let err = b.save(&m, &with_network(&m, "from-b")).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("leader: a"), "{err}");
        let m1 = with_network(&m, "from-a");
        a.save(&m, &m1).unwrap();
        assert_eq!(b.load().unwrap(), m1, "b's refused write left nothing");
        // Revoke a's lease from outside: a still believes it leads, etcd knows better.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let url = format!("http://127.0.0.1:{}", etcd.client_port);
        rt.block_on(async {
            let mut c = Client::connect([url], None).await.unwrap();
            let got = c.get("/el/leader", None).await.unwrap();
            let lease = got.kvs()[0].lease();
            c.lease_revoke(lease).await.unwrap();
        });
        let err = a.save(&m1, &with_network(&m1, "late")).unwrap_err();
        assert!(
            matches!(err, StoreError::NotLeader { .. }),
            "a deposed leader's write must be fenced: {err}"
        );
        assert_eq!(b.load().unwrap(), m1, "the fenced write left nothing");
        // Someone is elected again, reloads, and writes.
        wait("a new leader", 10, || acting(&a) || acting(&b));
        let leader = if acting(&a) { &a } else { &b };
        assert!(leader.take_reload());
        let now = leader.load().unwrap();
        assert_eq!(now, m1);
        leader.save(&now, &with_network(&now, "after")).unwrap();
    }

    /// A leader cut off from etcd (etcd frozen with SIGSTOP) stops acting before its lease can
    /// expire in etcd: within TTL - margin of its last renewal, so less than 3.5 s after the
    /// cut (its last renewal was sent before it).
    #[test]
    fn a_leader_cut_off_from_etcd_stops_acting_before_its_lease_can_expire() {
        let etcd = EtcdProcess::start();
        let a = replica(&etcd, "/cut/", "a");
        wait("a elected", 10, || acting(&a));
        // Let a renewal or two go through, then freeze etcd.
        std::thread::sleep(Duration::from_millis(1500));
        assert!(acting(&a));
        let before = a.load().unwrap();
        let pid = etcd.pid().to_string();
        let stop = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap();
        assert!(stop.success());
        let took = wait("a to stop acting", 10, || !acting(&a));
        // It refuses at once, without waiting on the frozen etcd.
        let t = std::time::Instant::now();
        let err = a.save(&before, &with_network(&before, "x")).unwrap_err();
        assert!(matches!(err, StoreError::NotLeader { .. }), "{err}");
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        let cont = std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap();
        assert!(cont.success());
        let ttl = Duration::from_secs(LEASE_TTL_SECS as u64);
        assert!(
            // Its last renewal was sent before the cut, so the lease holds in etcd until at
            // least cut + TTL: it must have stopped a clear second before that.
            took < ttl - Duration::from_secs(1),
            "stopped acting {took:?} after the cut: its lease may already have expired"
        );
        assert!(
            took > Duration::from_millis(1000),
            "stopped after {took:?}: should act while its lease surely holds"
        );
        // etcd back: a leads again (its old key expired or is its own) and writes.
        wait("a elected again", 20, || acting(&a));
        a.take_reload();
        let m = a.load().unwrap();
        a.save(&m, &with_network(&m, "back")).unwrap();
    }

    /// Owners and allocations round-trip with escaping: a network name with `/` and `%`.
    #[test]
    fn odd_network_names_round_trip() {
        let etcd = EtcdProcess::start();
        let store = open(&etcd, "/odd/");
        let empty = store.load().unwrap();
        let mut m = empty.clone();
        let ipam = Ipam::new(vec!["10.0.0.0/28".parse().unwrap()], vec![], vec![]).unwrap();
        m.create_network_with_ipam("x/%2F", ipam).unwrap();
        m.create_network("x", None).unwrap();
        m.add_ports("x/%2F", &[port(1, 1)]).unwrap();
        m.add_ports("x", &[port(1, 2)]).unwrap();
        m.allocate("x/%2F", "cni/a/b/net1", &[], Some(port(1, 1)))
            .unwrap();
        m.set_owner(port(1, 1), owner("ns/p", "cni/a/b/net1"))
            .unwrap();
        store.save(&empty, &m).unwrap();
        assert_eq!(open(&etcd, "/odd/").load().unwrap(), m);
        let mut n = m.clone();
        n.delete_network("x/%2F");
        store.save(&m, &n).unwrap();
        assert_eq!(open(&etcd, "/odd/").load().unwrap(), n);
    }
}
