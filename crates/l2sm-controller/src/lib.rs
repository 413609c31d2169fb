//! `l2sm controller`: the OpenFlow 1.3 server for every switch, the owner of networks, VNIs and
//! memberships, and the REST API (upstream ONOS-vnets compatible, plus a small native API).
//!
//! Data flow: an API call changes the [`model::Model`] (committed to the [`store::Store`]
//! before the answer is sent), then bumps a generation counter. With a topology, one planner
//! task turns each generation into every switch's view (at most once per [`PLAN_INTERVAL`]
//! and per [`PLAN_SPACING`] times a plan's duration, however fast changes come) and tells the
//! sessions; without one, sessions derive their own view from the model. Each session whose
//! view changed recompiles its own pipeline and sends only the difference.

#![warn(clippy::unwrap_used)]
// input paths answer with errors; tests may unwrap
// The OpenAPI document is one `json!` literal, deeper than the default macro recursion.
#![recursion_limit = "256"]

pub mod api;
pub mod dns;
pub mod health;
pub mod identity;
pub mod ipam;
#[cfg(test)]
mod memory_tests;
pub mod metrics;
pub mod model;
pub mod netdns;
pub mod openflow;
pub mod provider_dns;
pub mod store;
pub mod switch_tls;
pub mod topo;

use anyhow::Context as _;
use model::{Model, ModelError};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use store::Store;
use tokio::sync::watch;

/// One direction of a link: probes sent out of `.0` arrive at `.1`.
pub type Direction = (l2sm_pipeline::plan::End, l2sm_pipeline::plan::End);

/// LLDP liveness: when each direction of each link last carried a probe, and which directions
/// are considered dead (what the planner uses; changed only by [`Shared::check_links`], so a
/// plan stays consistent within one generation).
#[derive(Debug)]
pub struct Probes {
    /// Time between probes on one port.
    pub interval: Duration,
    heard: Mutex<BTreeMap<Direction, Instant>>,
    dead: RwLock<std::collections::BTreeSet<Direction>>,
}

impl Probes {
    fn new(interval: Duration) -> Probes {
        Probes {
            interval,
            heard: Mutex::new(BTreeMap::new()),
            dead: RwLock::new(Default::default()),
        }
    }

    /// A direction without a probe for this long is dead: three missed probes, plus slack.
    pub fn dead_after(&self) -> Duration {
        self.interval * 3 + self.interval / 2
    }

    /// Records a probe that arrived.
    pub fn heard(&self, direction: Direction) {
        self.heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(direction, Instant::now());
    }

    /// Whether probes arrived both ways between `a` and `b` within the dead time: the link has
    /// carried frames, so the tunnel's own neighbour resolution (a userspace VXLAN port drops
    /// the frame that makes it ARP for the remote end) is done.
    pub fn heard_both(&self, a: l2sm_pipeline::plan::End, b: l2sm_pipeline::plan::End) -> bool {
        let dead_after = self.dead_after();
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        [(a, b), (b, a)]
            .iter()
            .all(|d| heard.get(d).is_some_and(|t| t.elapsed() < dead_after))
    }

    /// Directions currently dead.
    pub fn dead(&self) -> std::collections::BTreeSet<Direction> {
        self.dead.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn publish(&self, dead: std::collections::BTreeSet<Direction>) {
        *self.dead.write().unwrap_or_else(|e| e.into_inner()) = dead;
    }

    /// The dead set for `directions` (both ends connected, ports up), if it differs from the
    /// published one. A direction is alive while probes arrive, or while both switches have
    /// been connected for less than the dead time (nothing could have arrived yet).
    fn evaluate(
        &self,
        directions: &[Direction],
        switches: &BTreeMap<u64, ConnectedSwitch>,
    ) -> Option<std::collections::BTreeSet<Direction>> {
        let dead_after = self.dead_after();
        let heard = {
            let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
            // Forget directions silent for long (links that left the topology).
            heard.retain(|_, t| t.elapsed() < dead_after * 10);
            heard.clone()
        };
        let young = |dpid: u64| {
            switches
                .get(&dpid)
                .and_then(|s| s.probing_since)
                .is_none_or(|t| t.elapsed() < dead_after)
        };
        let dead: std::collections::BTreeSet<Direction> = directions
            .iter()
            .filter(|(from, to)| {
                let recent = heard
                    .get(&(*from, *to))
                    .is_some_and(|t| t.elapsed() < dead_after);
                !recent && !young(from.dpid) && !young(to.dpid)
            })
            .copied()
            .collect();
        let current = self.dead();
        if dead == current {
            return None;
        }
        for (from, to) in dead.difference(&current) {
            tracing::warn!(
                from = format!("of:{:016x}/{}", from.dpid, from.port),
                to = format!("of:{:016x}/{}", to.dpid, to.port),
                "link down: no LLDP probe for {dead_after:?}"
            );
        }
        for (from, to) in current.difference(&dead) {
            tracing::info!(
                from = format!("of:{:016x}/{}", from.dpid, from.port),
                to = format!("of:{:016x}/{}", to.dpid, to.port),
                "link up: LLDP probes arrive"
            );
        }
        Some(dead)
    }
}

/// Options of `l2sm controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Address the OpenFlow server listens on.
    #[arg(long, default_value = "0.0.0.0:6653")]
    pub openflow_listen: SocketAddr,
    /// Address the REST API listens on.
    #[arg(long, default_value = "0.0.0.0:8181")]
    pub api_listen: SocketAddr,
    /// Directory holding the persistent state.
    #[arg(long, default_value = "/var/lib/l2sm/controller")]
    pub state_dir: PathBuf,
    /// Where the model is kept: `redb` (a database in --state-dir, one controller) or
    /// `etcd://host:port[,host:port…][/prefix]` (keys under the prefix, default `/l2sm/`; each
    /// change one compare-and-swap transaction).
    #[arg(long, env = "L2SM_STORE", default_value = "redb")]
    pub store: String,
    /// This replica's name: with an etcd store, take part in the leader election; only the
    /// leader changes the state, the others answer writes with 503 naming it.
    #[arg(long, env = "L2SM_REPLICA")]
    pub replica: Option<String>,
    /// User name for HTTP Basic authentication of the API.
    #[arg(long, env = "L2SM_API_USER")]
    pub api_user: Option<String>,
    /// Password for HTTP Basic authentication of the API.
    #[arg(long, env = "L2SM_API_PASSWORD", hide_env_values = true)]
    pub api_password: Option<String>,
    /// Accept upstream L2S-M's well-known credentials (karaf/karaf) when none are given.
    #[arg(long)]
    pub upstream_default_credentials: bool,
    /// Overlay topology (the file the agents read). Without it, switches are assumed to form a
    /// full mesh of the tunnels they report; with it, partial meshes, trunks and switches not
    /// managed by an agent work, with one spanning tree per network.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Milliseconds between LLDP probes on each inter-switch link port; a configured link is
    /// down after three intervals without probes in either direction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub lldp_interval_ms: u64,
    /// Milliseconds between reads of each switch's abuse-limit counters (flood meter and
    /// controller meter drops, MAC-cap excess) for `/metrics`.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(500..=600_000))]
    pub limit_stats_interval_ms: u64,
    /// Users file of the API: per-node agent, reader and admin identities (format in
    /// docs/controller.md). `--api-user`/`--api-password`, when given, add one admin.
    #[arg(long)]
    pub api_users: Option<PathBuf>,
    /// PEM certificate chain of the API: the API speaks HTTPS only (re-read when it changes).
    #[arg(long, requires = "api_tls_key")]
    pub api_tls_cert: Option<PathBuf>,
    /// PEM private key of `--api-tls-cert`.
    #[arg(long, requires = "api_tls_cert")]
    pub api_tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates authenticate agents: SAN URI `urn:l2sm:node:<name>`
    /// is the agent of node `<name>`.
    #[arg(long, requires = "api_tls_cert")]
    pub api_client_ca: Option<PathBuf>,
    /// Milliseconds to receive a request header (and the longest idle time between requests
    /// on a kept-alive connection).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub api_header_timeout_ms: u64,
    /// API connections served at once; more are closed at once.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub api_max_connections: u64,
    /// Requests served on one API connection before it is closed.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub api_max_requests_per_connection: u64,
    /// PEM certificate (chain) the OpenFlow listener presents to switches.
    #[arg(long, required_unless_present = "insecure_openflow")]
    pub openflow_tls_cert: Option<PathBuf>,
    /// PEM private key of `--openflow-tls-cert`.
    #[arg(long, required_unless_present = "insecure_openflow")]
    pub openflow_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) switch certificates must chain to; a switch's certificate names
    /// its node (SAN URI `urn:l2sm:node:NAME`) and may only claim that node's datapath id.
    #[arg(long, required_unless_present = "insecure_openflow")]
    pub openflow_tls_ca: Option<PathBuf>,
    /// On a provider controller (inter-cluster networks): the provider name edges derive
    /// their switch from (upstream's `switch_name(node, provider)`). A node's certificate may
    /// then also claim its node's edge switch for this provider, since the edge shares the
    /// node's Open vSwitch and so its certificate.
    #[arg(long, env = "L2SM_OPENFLOW_EDGE_PROVIDER", value_parser = valid_provider_name)]
    pub openflow_edge_provider: Option<String>,
    /// Serve OpenFlow over plain TCP, without TLS: any peer that reaches the port may claim
    /// any datapath id. For tests and benchmarks only; logs a warning.
    #[arg(long, conflicts_with_all = ["openflow_tls_cert", "openflow_tls_key", "openflow_tls_ca"])]
    pub insecure_openflow: bool,
    /// Milliseconds a switch session may wait for a reply (port, flow and group reads), for a
    /// batch's barrier reply or for one write to complete before it is closed.
    #[arg(long, default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub openflow_timeout_ms: u64,
    /// Address (UDP and TCP) of the authoritative DNS server for `<pod>.<network>.l2sm`
    /// (docs/dns.md); off unless given.
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// DNS queries per second answered per source address (bursts of twice as many).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub dns_rate_limit: u32,
    /// Address of upstream's DNS update API, gRPC `l2smdns.DnsService` (upstream's port is
    /// 8081): HTTP/2 over TLS with client certificates (`--dns-grpc-tls-*`), or cleartext with
    /// `--dns-grpc-insecure`. Needs `--dns-listen`.
    #[arg(long, requires = "dns_listen")]
    pub dns_grpc_listen: Option<SocketAddr>,
    /// PEM certificate (chain) of the DNS update API.
    #[arg(long, requires_all = ["dns_grpc_tls_key", "dns_grpc_client_ca"])]
    pub dns_grpc_tls_cert: Option<PathBuf>,
    /// PEM private key of `--dns-grpc-tls-cert`.
    #[arg(long, requires = "dns_grpc_tls_cert")]
    pub dns_grpc_tls_key: Option<PathBuf>,
    /// PEM CA the update API's clients' certificates must chain to.
    #[arg(long, requires = "dns_grpc_tls_cert")]
    pub dns_grpc_client_ca: Option<PathBuf>,
    /// Serve the DNS update API over cleartext HTTP/2 without authentication (upstream's way):
    /// anyone who reaches the port can add names.
    #[arg(long, conflicts_with = "dns_grpc_tls_cert")]
    pub dns_grpc_insecure: bool,
    /// On a cluster controller: the provider controller's DNS update API (its
    /// `--dns-grpc-listen`), which gets this cluster's pods on provider networks as
    /// `<name>.<network>.inter.l2sm` (`ReplaceCluster`, docs/dns.md). Over TLS with
    /// `--provider-dns-tls-ca` (the provider's certificate must name its IP address), or
    /// cleartext with `--provider-dns-insecure`.
    #[arg(long, requires = "provider_dns_cluster")]
    pub provider_dns: Option<SocketAddr>,
    /// This cluster's name in the provider's DNS (a DNS label; one set of names per cluster).
    #[arg(long, requires = "provider_dns", value_parser = valid_cluster_label)]
    pub provider_dns_cluster: Option<String>,
    /// PEM CA the provider's DNS update API certificate must chain to.
    #[arg(long, requires = "provider_dns")]
    pub provider_dns_tls_ca: Option<PathBuf>,
    /// PEM client certificate presented to the provider's DNS update API.
    #[arg(long, requires_all = ["provider_dns_tls_ca", "provider_dns_tls_key"])]
    pub provider_dns_tls_cert: Option<PathBuf>,
    /// PEM private key of `--provider-dns-tls-cert`.
    #[arg(long, requires = "provider_dns_tls_cert")]
    pub provider_dns_tls_key: Option<PathBuf>,
    /// Send the names in cleartext (the provider runs `--dns-grpc-insecure`; labs only).
    #[arg(
        long,
        requires = "provider_dns",
        conflicts_with = "provider_dns_tls_ca"
    )]
    pub provider_dns_insecure: bool,
}

fn valid_cluster_label(s: &str) -> Result<String, String> {
    if dns::valid_label(s) {
        Ok(s.to_string())
    } else {
        Err("must be a DNS label (1-63 of a-z, 0-9, '-', not starting or ending with '-')".into())
    }
}

/// How long links of a switch without a session still count as up: long enough for switches
/// to reconnect after a controller restart without trees flapping.
pub const ABSENT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Every switch's view for one state of the model and the graph. Views that did not change
/// from one plan to the next are the same `Arc`, so sessions tell "unchanged" at once.
type Plan = topo::Plan;

/// A plan and the generation of the model and graph it was made from.
#[derive(Debug, Default)]
struct Planned {
    generation: u64,
    views: Arc<Plan>,
}

/// The view a switch has confirmed (barrier reply after its batch, or nothing to send), and
/// the generation it was derived from: the switch holds every change up to that generation.
#[derive(Debug, Clone)]
pub struct AppliedView {
    /// What the switch holds.
    pub view: Arc<l2sm_pipeline::SwitchView>,
    /// Generation of the model and graph the view was derived from.
    pub generation: u64,
}

/// Shortest time between two plans after a quiet moment. An attach makes two changes (the
/// port, then its owner), so the second waits for this: 20 ms made it half of an attach's
/// time in the agent (11 of 21 ms); at 5 ms it is 5 ms. In a burst (each change arriving
/// before the pause ran out) the pause doubles up to [`PLAN_INTERVAL_BURST`], so a hundred attaches or
/// a thousand switches connecting cost a few plans, not one per change (each plan is a batch
/// of flow changes every switch's datapath must revalidate).
pub const PLAN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// Longest pause between two plans in a burst of changes.
pub const PLAN_INTERVAL_BURST: std::time::Duration = std::time::Duration::from_millis(40);

/// Two plans start at least this many times the first one's duration apart: with thousands of
/// switches a plan takes tens of milliseconds, and switches arriving one by one (TLS
/// handshakes spread their arrival over seconds) must not keep the planner, and every session
/// re-syncing to each intermediate tree, busy all the time (measured with 5,000 switches:
/// planning back to back sent each flow up to 9 times and did not converge in 60 s).
pub const PLAN_SPACING: u32 = 4;

/// A switch with a session: what the API shows of it (the contract's own type, so the view
/// is defined once) and the session's bookkeeping, which the API never shows.
#[derive(Debug, Clone)]
pub struct ConnectedSwitch {
    /// What `GET /api/v1/switches` shows.
    pub status: l2sm_api::v1::SwitchStatus,
    /// The session that published it: an ending session removes the switch only while it is
    /// still its own (a reconnect may have replaced it).
    pub(crate) session: u64,
    /// When the session started probing its links: liveness gives it time to send probes.
    pub(crate) probing_since: Option<std::time::Instant>,
}

/// State shared by the API and every switch session.
pub struct Shared {
    model: RwLock<Model>,
    store: Store,
    generation: watch::Sender<u64>,
    switches: Mutex<BTreeMap<u64, ConnectedSwitch>>,
    next_session: AtomicU64,
    topology: RwLock<Option<Arc<topo::ResolvedTopology>>>,
    started: std::time::Instant,
    /// When each switch last lost its session.
    disconnected_at: Mutex<BTreeMap<u64, std::time::Instant>>,
    /// Views of every switch under the topology, published by the planner.
    plan: watch::Sender<Arc<Planned>>,
    /// The planner's memory: what it planned last (only the planner task plans).
    planner: Mutex<topo::Planner>,
    /// Bumped when sessions must look at their view again (a new plan, or a model change
    /// without topology).
    views: watch::Sender<u64>,
    /// LLDP liveness of links.
    pub probes: Probes,
    /// Link health: latency, jitter and loss of the probes, port counters of link ports.
    pub health: health::Health,
    /// The view each connected switch has confirmed (barrier reply after its batch): what
    /// "this port is programmed" waits for.
    applied: watch::Sender<BTreeMap<u64, AppliedView>>,
    /// Counters.
    pub metrics: metrics::Metrics,
    /// Abuse-limit counters each switch last reported.
    pub limit_stats: metrics::LimitStats,
    /// Datapath ids that have a session: a second session for one is refused.
    pub(crate) dpid_claims: identity::Claims,
    /// The provider name of edges whose switches a node's certificate may also claim
    /// (`--openflow-edge-provider`).
    pub(crate) edge_provider: std::sync::OnceLock<String>,
    /// Told when a burst (a switch synced, a session ended, a plan) freed memory.
    pub heap: Arc<l2sm_runtime::HeapTrimmer>,
    /// The zones the in-network DNS path answers from ([`netdns`]); weak: whoever serves DNS
    /// owns them (they hold this `Shared`).
    zones: std::sync::OnceLock<std::sync::Weak<dns::Zones>>,
}

impl Shared {
    /// Loads the persisted model from `store`; links are probed every `probe_interval`.
    pub fn new(store: Store, probe_interval: Duration) -> anyhow::Result<Arc<Shared>> {
        let model = store.load()?;
        Ok(Arc::new(Shared {
            model: RwLock::new(model),
            store,
            generation: watch::channel(0).0,
            switches: Mutex::new(BTreeMap::new()),
            next_session: AtomicU64::new(1),
            topology: RwLock::new(None),
            started: std::time::Instant::now(),
            disconnected_at: Mutex::new(BTreeMap::new()),
            plan: watch::channel(Arc::new(Planned::default())).0,
            planner: Mutex::new(topo::Planner::default()),
            views: watch::channel(0).0,
            probes: Probes::new(probe_interval),
            health: health::Health::new(probe_interval),
            applied: watch::channel(BTreeMap::new()).0,
            metrics: metrics::Metrics::default(),
            limit_stats: metrics::LimitStats::default(),
            dpid_claims: identity::Claims::default(),
            edge_provider: std::sync::OnceLock::new(),
            heap: Arc::new(l2sm_runtime::HeapTrimmer::default()),
            zones: std::sync::OnceLock::new(),
        }))
    }

    /// Lets the in-network DNS path answer from `zones` (once; later calls change nothing).
    pub fn serve_network_dns(&self, zones: &Arc<dns::Zones>) {
        let _ = self.zones.set(Arc::downgrade(zones));
    }

    /// The zone the in-network DNS path answers from now, if any.
    pub fn network_dns_zone(&self) -> Option<Arc<dns::Zone>> {
        Some(self.zones.get()?.upgrade()?.current())
    }

    /// Runs `f` on the model as it is now (under the read lock: keep `f` short).
    pub fn with_model<R>(&self, f: impl FnOnce(&Model) -> R) -> R {
        f(&self.model.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A consistent copy of the model.
    pub fn model(&self) -> Model {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Applies `change` to a copy of the model, commits the difference to the store (durably),
    /// then publishes it. Nothing changes when `change` fails or the state cannot be written.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut Model) -> Result<R, ModelError>,
    ) -> Result<R, UpdateError> {
        let mut guard = self.model.write().unwrap_or_else(|e| e.into_inner());
        if self.store.take_reload() {
            // Just elected: the previous leader's changes are in the store, not here.
            self.reload_after_conflict(&mut guard);
        }
        let mut next = guard.clone();
        let result = change(&mut next)?;
        if next != *guard {
            if let Err(e) = self.store.save(&guard, &next) {
                if matches!(e, store::StoreError::Conflict) {
                    // Another controller wrote first: take its state, so a retry starts from it.
                    // (A follower's refused write reloads nothing: it polls the state anyway,
                    // and a flood of refused writes must not become a flood of full reads.)
                    self.reload_after_conflict(&mut guard);
                }
                return Err(UpdateError::Persist(e));
            }
            *guard = next;
            drop(guard);
            self.bump();
        }
        Ok(result)
    }

    /// On a follower replica: reloads the model when the leader changed the state, so reads
    /// and views follow the leader's.
    pub fn follow_store(&self) {
        if !self.store.is_follower() {
            return;
        }
        match self.store.changed_elsewhere() {
            Ok(true) => {
                let mut guard = self.model.write().unwrap_or_else(|e| e.into_inner());
                self.reload_after_conflict(&mut guard);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot check the controller state for changes"),
        }
    }

    /// Replaces the model with what the store holds now (after a lost compare-and-swap).
    fn reload_after_conflict(&self, guard: &mut Model) {
        match self.store.load() {
            Ok(model) => {
                tracing::info!(
                    "controller state reloaded from the store (another writer changed it)"
                );
                if model != *guard {
                    *guard = model;
                    self.bump();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot reload the controller state"),
        }
    }

    /// Records that switch `dpid` holds `view`, derived from `generation` (its batch was
    /// acknowledged by a barrier, or it needed nothing). Waiters are woken only when the view
    /// or the generation moved.
    pub fn view_applied(&self, dpid: u64, view: Arc<l2sm_pipeline::SwitchView>, generation: u64) {
        self.applied.send_if_modified(|m| match m.get_mut(&dpid) {
            Some(a) if Arc::ptr_eq(&a.view, &view) && a.generation >= generation => false,
            Some(a) => {
                a.generation = a.generation.max(generation);
                a.view = view;
                true
            }
            None => {
                m.insert(dpid, AppliedView { view, generation });
                true
            }
        });
    }

    /// The generation of the model and graph now: every change made so far is in it.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Waits until every connected switch has confirmed a view derived from `generation` or
    /// later: then every flow and group change up to that generation is on every switch.
    /// Returns the switches that had not when `timeout` passed (empty: settled). Switches
    /// that disconnect meanwhile are not waited for.
    pub async fn wait_settled(&self, generation: u64, timeout: Duration) -> Vec<u64> {
        let mut rx = self.applied.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let connected: Vec<u64> = self.switches().keys().copied().collect();
            let laggards: Vec<u64> = {
                let applied = rx.borrow_and_update();
                connected
                    .into_iter()
                    .filter(|d| applied.get(d).is_none_or(|a| a.generation < generation))
                    .collect()
            };
            if laggards.is_empty() {
                return laggards;
            }
            // Disconnections change `applied` too, so this wakes for them.
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return laggards,
            }
        }
    }

    /// Waits until `port` is programmed as a member of network `vni` on its switch, with port
    /// security as `secured` says (see [`model::Model::port_security`]); false when `timeout`
    /// passes first.
    pub async fn wait_programmed(
        &self,
        port: l2sm_pipeline::ids::PortId,
        vni: u32,
        secured: Option<Option<l2sm_pipeline::PortBinding>>,
        timeout: Duration,
    ) -> bool {
        let mut rx = self.applied.subscribe();
        let programmed = |m: &BTreeMap<u64, AppliedView>| {
            m.get(&port.dpid)
                .and_then(|a| a.view.networks.get(&vni))
                .is_some_and(|n| {
                    n.members.contains(&port.port) && n.secured.get(&port.port) == secured.as_ref()
                })
        };
        tokio::time::timeout(timeout, async move {
            loop {
                if programmed(&rx.borrow_and_update()) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// Records that a switch lost its session (its links stay up for [`ABSENT_GRACE`]).
    pub fn switch_gone(&self, dpid: u64) {
        self.applied.send_modify(|m| {
            m.remove(&dpid);
        });
        self.disconnected_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dpid, std::time::Instant::now());
        self.bump();
    }

    /// Tells the planner (or, without topology, every session) that the graph or the model
    /// changed.
    pub fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
        if self.topology().is_none() {
            self.views.send_modify(|g| *g += 1);
        }
    }

    /// Installs (or replaces) the configured topology.
    pub fn set_topology(&self, topo: topo::ResolvedTopology) {
        *self.topology.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(topo));
        self.bump();
    }

    fn topology(&self) -> Option<Arc<topo::ResolvedTopology>> {
        self.topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the links of a switch without a session still count as up (grace period).
    fn absent_ok(&self) -> impl Fn(u64) -> bool {
        let gone = self
            .disconnected_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (now, started) = (std::time::Instant::now(), self.started);
        move |dpid: u64| match gone.get(&dpid) {
            Some(at) => now.duration_since(*at) < ABSENT_GRACE,
            None => now.duration_since(started) < ABSENT_GRACE,
        }
    }

    /// Every link of the configured topology whose ends are known, with its liveness.
    pub fn link_report(&self) -> Vec<topo::LinkReport> {
        let Some(topo) = self.topology() else {
            return Vec::new();
        };
        let switches = self.switches().clone();
        topo.report(&switches, &self.absent_ok(), &self.probes.dead())
    }

    /// Re-evaluates LLDP liveness of the configured links; re-plans when a link went down or
    /// came back (networks whose trees do not change get no message).
    pub fn check_links(&self) {
        let Some(topo) = self.topology() else { return };
        // Under the switches' lock rather than on a copy of them (this runs twice per probe
        // interval; a copy of a thousand switches' ports cost more than the evaluation).
        // Lock order: switches, then the probes' own locks, which never wait for switches.
        let (directions, dead) = {
            let switches = self.switches();
            let directions = topo.probed_directions(&switches);
            let dead = self.probes.evaluate(&directions, &switches);
            (directions, dead)
        };
        self.health.retain(&directions);
        if let Some(dead) = dead {
            self.probes.publish(dead);
            self.bump();
        }
    }

    /// The view switch `dpid` must be programmed with. `local_links` are the switch's own
    /// link ports, used when no topology is configured (full mesh of what it reports). `None`
    /// while the current plan predates the switch's session: programming it from a plan that
    /// does not know it would wipe what it holds; the next plan wakes the session again.
    pub fn view_of(
        &self,
        dpid: u64,
        local_links: BTreeMap<u32, l2sm_pipeline::LinkKind>,
    ) -> Option<(Arc<l2sm_pipeline::SwitchView>, u64)> {
        if self.topology().is_none() {
            // The generation first: the model read next holds at least its changes.
            let generation = self.generation();
            let model = self.model.read().unwrap_or_else(|e| e.into_inner());
            return Some((Arc::new(model.switch_view(dpid, local_links)), generation));
        }
        let planned = self.plan.borrow();
        planned
            .views
            .get(&dpid)
            .map(|v| (v.clone(), planned.generation))
    }

    /// Computes every switch's view under the topology and publishes it, keeping the `Arc`
    /// of each view that did not change. Costs what changed: with the graph of the last plan,
    /// only networks that changed are planned and only the views carrying them rebuilt.
    fn replan(&self) {
        let Some(topo) = self.topology() else { return };
        // The generation first: the model and graph read next hold at least its changes.
        let generation = self.generation();
        let absent_ok = self.absent_ok();
        let dead = self.probes.dead();
        let graph = topo::Graph::of(&topo, &self.switches(), &absent_ok, &dead);
        let mut planner = self.planner.lock().unwrap_or_else(|e| e.into_inner());
        let views = planner.plan(graph, || {
            self.model.read().unwrap_or_else(|e| e.into_inner())
        });
        drop(planner);
        {
            let last = self.plan.borrow();
            if Arc::ptr_eq(&views, &last.views) && last.generation == generation {
                return;
            }
        }
        // Published even when no view changed: sessions then confirm the new generation.
        self.plan
            .send_replace(Arc::new(Planned { generation, views }));
        self.views.send_modify(|g| *g += 1);
        self.heap.freed();
    }

    /// Subscribes to "look at your view again" notifications.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.views.subscribe()
    }

    fn switches(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ConnectedSwitch>> {
        self.switches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The datapath id a switch of `node` must claim: the topology's, when it gives the node
    /// one, else the one the agent derives from the node name.
    pub fn node_dpid(&self, node: &str) -> u64 {
        self.topology()
            .and_then(|t| t.explicit_dpid(node))
            .unwrap_or_else(|| identity::node_dpid(node))
    }

    /// The datapath id of `node`'s edge switch, when this controller serves as the provider
    /// of edges (`--openflow-edge-provider`).
    pub fn edge_dpid(&self, node: &str) -> Option<u64> {
        use l2sm_pipeline::ids;
        let provider = self.edge_provider.get()?;
        Some(ids::datapath_id(&ids::switch_name(node, provider)))
    }

    /// Whether switch `dpid` has a session.
    pub fn is_connected(&self, dpid: u64) -> bool {
        self.switches().contains_key(&dpid)
    }

    /// Connected switches, as the API shows them.
    pub fn switch_list(&self) -> Vec<l2sm_api::v1::SwitchStatus> {
        self.switches().values().map(|s| s.status.clone()).collect()
    }

    fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}

/// A refused or failed model update.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The change itself was refused.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The new state could not be written; nothing changed.
    #[error("cannot persist controller state: {0}")]
    Persist(store::StoreError),
}

/// How often a follower replica checks whether the leader changed the state.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Runs the controller until SIGINT/SIGTERM.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let of_tls = openflow_tls(&args)?;
    let mut users = match &args.api_users {
        Some(path) => api::auth::Users::load(path)?,
        None => api::auth::Users::default(),
    };
    match (args.api_user.clone(), args.api_password.clone()) {
        (Some(u), Some(p)) if !u.is_empty() => users.insert(&u, &p, api::auth::Role::Admin),
        (None, None) if args.upstream_default_credentials => {
            users.insert("karaf", "karaf", api::auth::Role::Admin)
        }
        (Some(_), None) | (None, Some(_)) => {
            anyhow::bail!("give both --api-user and --api-password (or L2SM_API_USER and L2SM_API_PASSWORD)")
        }
        _ if !users.is_empty() => {}
        _ => anyhow::bail!(
            "no API credentials: pass --api-user/--api-password, set L2SM_API_USER/L2SM_API_PASSWORD, \
             --api-users FILE, or --upstream-default-credentials for upstream's karaf/karaf"
        ),
    };
    let api_tls = match (args.api_tls_cert.clone(), args.api_tls_key.clone()) {
        (Some(cert), Some(key)) => Some(api::server::tls_config(
            cert,
            key,
            args.api_client_ca.clone(),
        )?),
        _ => None,
    };
    let api_limits = api::server::Limits {
        header_timeout: Duration::from_millis(args.api_header_timeout_ms),
        max_connections: usize::try_from(args.api_max_connections).unwrap_or(usize::MAX),
        max_requests_per_connection: args.api_max_requests_per_connection,
        ..api::server::Limits::default()
    };
    let store = Store::from_spec(&args.store, &args.state_dir, args.replica.as_deref())?;
    let shared = Shared::new(store, Duration::from_millis(args.lldp_interval_ms))?;
    if let Some(provider) = &args.openflow_edge_provider {
        let _ = shared.edge_provider.set(provider.clone());
    }
    if args.replica.is_some() {
        // A follower's copy follows the leader's changes (polled: one small get a second).
        let follower = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FOLLOW_EVERY).await;
                let s = follower.clone();
                let _ = tokio::task::spawn_blocking(move || s.follow_store()).await;
            }
        });
    }
    // Connecting thousands of switches reads and compiles their tables: once that settles,
    // the freed heap goes back to the system (glibc otherwise kept ~30 MiB of it with
    // 5,000 switches).
    tokio::spawn(shared.heap.clone().run(HEAP_TRIM_QUIET, HEAP_TRIM_AT_MOST));
    shared
        .limit_stats
        .set_interval(Duration::from_millis(args.limit_stats_interval_ms));
    let of_listener = listen(args.openflow_listen, OPENFLOW_BACKLOG)
        .with_context(|| format!("cannot listen for OpenFlow on {}", args.openflow_listen))?;
    let api_listener = tokio::net::TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("cannot listen for the API on {}", args.api_listen))?;
    if let Some(path) = args.topology.clone() {
        let topo = l2sm_api::topology::load_all(&path)?;
        shared.set_topology(topo::ResolvedTopology::new(&topo)?);
        tokio::spawn(planner(shared.clone()));
        tokio::spawn(watch_topology(path, shared.clone()));
        // Grace periods expire without any event: re-plan now and then.
        let ticker = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ABSENT_GRACE / 2).await;
                ticker.bump();
            }
        });
        // Links die by silence: look at the probes twice per interval.
        let checker = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(checker.probes.interval / 2).await;
                checker.check_links();
            }
        });
    }
    if of_tls.is_none() {
        tracing::warn!(
            "--insecure-openflow: OpenFlow over plain TCP, switches are not authenticated; \
             any peer that reaches the port can claim any datapath id"
        );
    }
    let model = shared.model();
    tracing::info!(
        openflow = %args.openflow_listen,
        api = %args.api_listen,
        networks = model.networks.len(),
        "controller serving"
    );
    // The in-network DNS path (networks' DNS addresses, docs/dns.md) answers whether or not
    // `--dns-listen` is given; the update API's entries come with the listener.
    let zones = Arc::new(match args.dns_listen {
        Some(_) => dns::Zones::with_entries_in(shared.clone(), &args.state_dir)?,
        None => dns::Zones::new(shared.clone()),
    });
    shared.serve_network_dns(&zones);
    let dns_task = match args.dns_listen {
        Some(addr) => {
            let udp = tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("cannot listen for DNS on udp {addr}"))?;
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for DNS on tcp {addr}"))?;
            tracing::info!(dns = %addr, "DNS serving zone {}", dns::ZONE);
            let limits = dns::server::Limits {
                rate_per_source: args.dns_rate_limit,
                burst_per_source: args.dns_rate_limit.saturating_mul(2),
                ..dns::server::Limits::default()
            };
            let zones = zones.clone();
            if let Some(grpc_addr) = args.dns_grpc_listen {
                let tls = match (
                    &args.dns_grpc_tls_cert,
                    &args.dns_grpc_tls_key,
                    &args.dns_grpc_client_ca,
                ) {
                    (Some(cert), Some(key), Some(ca)) => {
                        let config = switch_tls::server_config_from_files(cert, key, ca)
                            .context("cannot set up the DNS update API's TLS")?;
                        let mut config = (*config).clone();
                        config.alpn_protocols = vec![b"h2".to_vec()];
                        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
                    }
                    _ if args.dns_grpc_insecure => {
                        tracing::warn!(
                            "--dns-grpc-insecure: the DNS update API is cleartext and \
                             unauthenticated; anyone who reaches it can add names"
                        );
                        None
                    }
                    _ => anyhow::bail!(
                        "--dns-grpc-listen needs --dns-grpc-tls-cert, --dns-grpc-tls-key and \
                         --dns-grpc-client-ca (or --dns-grpc-insecure, upstream's way)"
                    ),
                };
                let listener = tokio::net::TcpListener::bind(grpc_addr)
                    .await
                    .with_context(|| format!("cannot listen for DNS updates on {grpc_addr}"))?;
                tracing::info!(dns_grpc = %grpc_addr, tls = tls.is_some(), "DNS update API serving");
                let zones = zones.clone();
                tokio::spawn(async move {
                    if let Err(e) =
                        dns::grpc::serve(listener, tls, zones, dns::grpc::Limits::default()).await
                    {
                        tracing::error!("DNS update API stopped: {e}");
                    }
                });
            }
            tokio::spawn(dns::server::serve(udp, tcp, zones, limits))
        }
        None => tokio::spawn(std::future::pending()),
    };
    if let (Some(addr), Some(cluster)) = (args.provider_dns, args.provider_dns_cluster.clone()) {
        let tls = match &args.provider_dns_tls_ca {
            Some(ca) => {
                let ca = switch_tls::load_certs(ca).context("--provider-dns-tls-ca")?;
                let identity = match (&args.provider_dns_tls_cert, &args.provider_dns_tls_key) {
                    (Some(cert), Some(key)) => Some((
                        switch_tls::load_certs(cert).context("--provider-dns-tls-cert")?,
                        switch_tls::load_key(key).context("--provider-dns-tls-key")?,
                    )),
                    _ => None,
                };
                Some(
                    switch_tls::client_config(&ca, identity)
                        .context("cannot set up TLS to the provider's DNS update API")?,
                )
            }
            None if args.provider_dns_insecure => None,
            None => anyhow::bail!(
                "--provider-dns needs --provider-dns-tls-ca (and a client certificate) or \
                 --provider-dns-insecure"
            ),
        };
        tracing::info!(provider_dns = %addr, cluster, tls = tls.is_some(), "sending inter.l2sm names to the provider");
        tokio::spawn(provider_dns::run(
            shared.clone(),
            provider_dns::Target { addr, cluster, tls },
        ));
    }
    // OpenFlow and the API last: the API answers health checks, so once it does every
    // listener is bound (tests and probes then never meet a DNS port not listening yet).
    let of_limits =
        openflow::SessionLimits::with_timeout(Duration::from_millis(args.openflow_timeout_ms));
    let of_task = tokio::spawn(openflow::serve_with(
        of_listener,
        shared.clone(),
        of_limits,
        of_tls,
    ));
    let app = api::router(shared.clone(), users);
    let api_task = tokio::spawn(api::server::serve(
        api_listener,
        app,
        api_limits,
        api_tls,
        shared.clone(),
    ));
    tokio::select! {
        r = dns_task => r.context("DNS server stopped")?.context("DNS server failed")?,
        r = of_task => r.context("OpenFlow server stopped")?.context("OpenFlow server failed")?,
        r = api_task => r.context("API server stopped")?,
        _ = l2sm_runtime::shutdown_signal() => tracing::info!("controller stopping"),
    }
    // A leader hands over at once instead of after its lease's TTL.
    shared.store.resign();
    Ok(())
}

/// The OpenFlow listener's TLS acceptor (`None` with `--insecure-openflow`).
fn openflow_tls(args: &ControllerArgs) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    if args.insecure_openflow {
        return Ok(None);
    }
    let (Some(cert), Some(key), Some(ca)) = (
        &args.openflow_tls_cert,
        &args.openflow_tls_key,
        &args.openflow_tls_ca,
    ) else {
        anyhow::bail!(
            "OpenFlow needs --openflow-tls-cert, --openflow-tls-key and --openflow-tls-ca \
             (or --insecure-openflow for plain TCP)"
        );
    };
    let config = switch_tls::server_config_from_files(cert, key, ca)
        .context("cannot set up OpenFlow TLS")?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(config)))
}

/// Pending connections the OpenFlow listener queues (the kernel caps it at
/// `net.core.somaxconn`). Thousands of switches dial at once after a controller restart; with
/// tokio's default of 1,024, 5,000 switches over TLS overflowed the queue ~14,000 times in one
/// start (`TcpExtListenOverflows`), and each dropped SYN waits 1, 2, 4… s for its retransmission.
pub const OPENFLOW_BACKLOG: u32 = 8192;

/// The heap is trimmed once no switch synced, no session ended and no plan was made for this
/// long. Trimming locks the allocator's arenas while it returns pages (12–100 ms with 5,000
/// switches' state; seconds on a starved CPU), so it waits for a quiet moment...
const HEAP_TRIM_QUIET: Duration = Duration::from_secs(1);
/// ...except in a burst that never pauses, where it trims this often at most.
const HEAP_TRIM_AT_MOST: Duration = Duration::from_secs(60);

/// A provider name as edges use it in their switch name: printable ASCII, at most 253 bytes.
fn valid_provider_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 253 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a provider name is 1-253 printable ASCII characters".into());
    }
    Ok(s.to_string())
}

/// A TCP listener on `addr` with room for `backlog` pending connections (address reuse as
/// `TcpListener::bind` sets it).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Re-plans after every change of the model or the graph, at most once per
/// [`PLAN_INTERVAL`] (up to [`PLAN_INTERVAL_BURST`] in a burst) and at most once per
/// [`PLAN_SPACING`] times the last plan's duration:
/// changes arriving meanwhile are folded into the next plan.
async fn planner(shared: Arc<Shared>) {
    let mut generation = shared.generation.subscribe();
    let mut pause = PLAN_INTERVAL;
    loop {
        generation.borrow_and_update();
        let started = tokio::time::Instant::now();
        // A whole plan of thousands of switches takes tens of milliseconds: the worker hands
        // its other tasks (API requests, sessions) to the others meanwhile. (On a blocking
        // thread instead, 1,000 switches converged ~50% slower in the same period.)
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| shared.replan());
        } else {
            shared.replan();
        }
        let spacing = pause.max(started.elapsed() * PLAN_SPACING);
        if generation.changed().await.is_err() {
            return;
        }
        // A change within the pause means a burst: the pause after the next plan doubles.
        // After a quiet moment it is short again (this change still waits only `spacing`).
        pause = if started.elapsed() < pause {
            (pause * 2).min(PLAN_INTERVAL_BURST)
        } else {
            PLAN_INTERVAL
        };
        tokio::time::sleep_until(started + spacing).await;
    }
}

/// Re-reads the topology file when it changes; a broken file is ignored with a warning.
async fn watch_topology(path: PathBuf, shared: Arc<Shared>) {
    let mut last = std::fs::read(&path).ok();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let current = std::fs::read(&path).ok();
        if current == last {
            continue;
        }
        last = current;
        match l2sm_api::topology::load_all(&path)
            .map_err(anyhow::Error::from)
            .and_then(|t| topo::ResolvedTopology::new(&t))
        {
            Ok(t) => {
                tracing::info!(path = %path.display(), "topology reloaded");
                shared.set_topology(t);
            }
            Err(e) => tracing::warn!("topology change ignored: {e:#}"),
        }
    }
}
