//! `l2sm agent`: one per node. Owns the node's Open vSwitch through OVSDB (bridge, tunnels,
//! pod ports), plumbs pod interfaces with netlink, tells the controller which port joined which
//! network, and serves the local attach API on a unix socket.

#![warn(clippy::unwrap_used)] // input paths answer with errors; tests may unwrap

pub mod edge;
pub mod ovs;
pub mod proto;
pub mod socket;
pub mod target;

use crate::proto::{AgentRequest, AgentStatus, AttachRequest, Attachment, Reply};
use anyhow::{anyhow, bail, Context as _};
use l2sm_api::v1::{AllocationRequest, PortOwnerRequest, WaitRequest};
use l2sm_api::{ClientError, ControllerClient, RetryPolicy};
use l2sm_netns::Netns;
use l2sm_pipeline::ids::{self, PortId};
use ovs::{BridgeSpec, NewPort, Ovs, PortBatcher, PortChange, TunnelSpec};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use target::ControllerTargets;
use tokio::net::UnixListener;

/// Options of `l2sm agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Name of this node (the switch name and datapath id derive from it).
    #[arg(long)]
    pub node: String,
    /// OVSDB server socket (`unix:PATH` or `PATH`).
    #[arg(long, default_value = "unix:/var/run/openvswitch/db.sock")]
    pub ovsdb: String,
    /// Provider name used in the switch name (upstream: `l2sm-controller` for the overlay).
    #[arg(long, default_value = ids::OVERLAY_PROVIDER)]
    pub provider: String,
    /// OVS datapath type: `system` (kernel module) or `netdev` (userspace).
    #[arg(long, default_value = "system")]
    pub datapath_type: String,
    /// OpenFlow controller target(s), e.g. `tcp:10.0.0.1:6653` or
    /// `tcp:l2sm-controller-service.l2sm-system.svc:6633`: host names are resolved by the
    /// agent (system resolver, with the resolv.conf search list) and written to OVS as IPs.
    #[arg(long = "controller", required = true)]
    pub controllers: Vec<String>,
    /// How often host names in `--controller` are resolved again, in ms; a changed address
    /// (the Service was recreated) updates the switch's controller target.
    #[arg(long, default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub controller_resolve_interval_ms: u64,
    /// Controller REST API, e.g. `http://10.0.0.1:8181`.
    #[arg(long)]
    pub controller_api: String,
    /// User name for the controller API.
    #[arg(long, env = "L2SM_API_USER")]
    pub api_user: Option<String>,
    /// Password for the controller API.
    #[arg(long, env = "L2SM_API_PASSWORD", hide_env_values = true)]
    pub api_password: Option<String>,
    /// PEM CA file the controller API's certificate must chain to (`https://` API; the
    /// system's roots without it).
    #[arg(long)]
    pub controller_api_ca: Option<PathBuf>,
    /// PEM client certificate shown to the controller API (SAN URI `urn:l2sm:node:<node>`:
    /// authenticates as this node's agent), with `--controller-api-key`.
    #[arg(long, requires = "controller_api_key")]
    pub controller_api_cert: Option<PathBuf>,
    /// PEM private key of `--controller-api-cert`.
    #[arg(long, requires = "controller_api_cert")]
    pub controller_api_key: Option<PathBuf>,
    /// Unix socket for the local attach API.
    #[arg(long, default_value = "/run/l2sm/agent.sock")]
    pub listen: PathBuf,
    /// A peer node as NAME=IP (repeat for each peer); adds to `--topology`.
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// Topology file (Overlay `topology` shape or upstream topology.json); re-read when it
    /// changes, and links are reconciled without touching unchanged ones.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Default MTU of pod interfaces.
    #[arg(long, default_value_t = 1450)]
    pub mtu: u32,
    /// Turn off TX checksum offload on pod veths (needed with OVS userspace tunnels).
    #[arg(long)]
    pub disable_tx_offload: bool,
    /// Controller reconnect backoff ceiling, in ms.
    #[arg(long, default_value_t = 8000)]
    pub max_backoff_ms: u64,
    /// Controller inactivity probe, in ms.
    #[arg(long, default_value_t = 5000)]
    pub inactivity_probe_ms: u64,
    /// PEM private key of this node's switch for `ssl:` controller targets (OVS's SSL table;
    /// ovs-vswitchd reads the file itself).
    #[arg(long, requires_all = ["ssl_certificate", "ssl_ca_cert"])]
    pub ssl_private_key: Option<PathBuf>,
    /// PEM certificate of this node's switch, naming the node (SAN URI `urn:l2sm:node:NAME`).
    #[arg(long, requires_all = ["ssl_private_key", "ssl_ca_cert"])]
    pub ssl_certificate: Option<PathBuf>,
    /// PEM CA certificate the controller's certificate must chain to.
    #[arg(long, requires_all = ["ssl_private_key", "ssl_certificate"])]
    pub ssl_ca_cert: Option<PathBuf>,
}

/// OVS SSL settings from the `--ssl-*` flags; an `ssl:` controller target needs them, and
/// the files must exist (ovs-vswitchd would only log that it cannot read them).
fn ssl_spec(args: &AgentArgs) -> anyhow::Result<Option<ovs::SslSpec>> {
    let wants_ssl = args.controllers.iter().any(|c| c.starts_with("ssl:"));
    let (Some(key), Some(cert), Some(ca)) = (
        &args.ssl_private_key,
        &args.ssl_certificate,
        &args.ssl_ca_cert,
    ) else {
        if wants_ssl {
            anyhow::bail!(
                "an ssl: controller target needs --ssl-private-key, --ssl-certificate and --ssl-ca-cert"
            );
        }
        return Ok(None);
    };
    let mut paths = Vec::new();
    for (flag, path) in [
        ("--ssl-private-key", key),
        ("--ssl-certificate", cert),
        ("--ssl-ca-cert", ca),
    ] {
        let abs =
            std::path::absolute(path).with_context(|| format!("{flag} {}", path.display()))?;
        std::fs::File::open(&abs)
            .with_context(|| format!("{flag}: cannot read {}", abs.display()))?;
        paths.push(abs.display().to_string());
    }
    let [private_key, certificate, ca_cert] =
        <[String; 3]>::try_from(paths).map_err(|_| anyhow::anyhow!("three SSL paths expected"))?;
    Ok(Some(ovs::SslSpec {
        private_key,
        certificate,
        ca_cert,
    }))
}

struct Agent {
    args: AgentArgs,
    ovs: Ovs,
    bridge: String,
    dpid: u64,
    own_netns: Netns,
    controller: ControllerClient,
    tunnels: std::sync::Mutex<Vec<TunnelSpec>>,
    /// Pod port additions and removals, committed in shared OVSDB transactions.
    ports: PortBatcher,
    /// Port numbers held by attaches in progress.
    reserved: std::sync::Mutex<std::collections::BTreeSet<u32>>,
    /// Attachment ids being attached or detached right now.
    inflight: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Serialises link reconciliation.
    links: tokio::sync::Mutex<()>,
}

fn tunnel_to(address: &str) -> TunnelSpec {
    TunnelSpec {
        name: ids::vxlan_port_name(address),
        remote_ip: address.to_string(),
        local_ip: None,
    }
}

/// Bound of one resolution of a controller host name.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent tries, at start, to resolve controller host names before giving up.
const STARTUP_RESOLVE_DEADLINE: Duration = Duration::from_secs(60);

/// Resolves the controller targets' host names at start, retrying (with a log line each time)
/// until every name has an address or [`STARTUP_RESOLVE_DEADLINE`] passes.
async fn resolve_at_start(targets: &mut ControllerTargets) -> anyhow::Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + STARTUP_RESOLVE_DEADLINE;
    let mut delay = Duration::from_millis(200);
    loop {
        let refresh = targets.refresh(RESOLVE_TIMEOUT).await;
        for (host, _, target) in &refresh.changed {
            tracing::info!(%host, %target, "controller host resolved");
        }
        if let Some(current) = targets.current() {
            return Ok(current);
        }
        let err = refresh
            .failed
            .into_iter()
            .next()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "a controller host name did not resolve".into());
        if tokio::time::Instant::now() + delay > deadline {
            bail!("{err} (gave up after {STARTUP_RESOLVE_DEADLINE:?})");
        }
        tracing::warn!("{err}; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// How long an attach waits for the switch to confirm the new port's flows.
const PROGRAMMED_WAIT_MS: u64 = 2000;

/// Links from `--peer` flags plus the topology file, if any: tunnels and trunk interfaces.
fn desired_links(
    args: &AgentArgs,
) -> anyhow::Result<(Vec<TunnelSpec>, Vec<l2sm_api::topology::Trunk>)> {
    let mut tunnels = parse_peers(&args.peers)?;
    let mut trunks = Vec::new();
    // A topology file that does not exist yet (Kubernetes: no Overlay yet, the optional
    // ConfigMap is not mounted) means no links, not an error: it is re-read when it appears.
    if let Some(path) = args.topology.as_ref().filter(|p| p.exists()) {
        let links = l2sm_api::topology::load(path, &args.node)?;
        for peer in links.tunnels {
            let t = tunnel_to(&peer.address);
            if !tunnels.contains(&t) {
                tunnels.push(t);
            }
        }
        trunks = links.trunks;
    }
    Ok((tunnels, trunks))
}

fn parse_peers(peers: &[String]) -> anyhow::Result<Vec<TunnelSpec>> {
    peers
        .iter()
        .map(|p| {
            let (name, ip) = p
                .split_once('=')
                .ok_or_else(|| anyhow!("--peer {p:?}: expected NAME=IP"))?;
            let addr: std::net::IpAddr = ip
                .parse()
                .map_err(|_| anyhow!("--peer {p:?}: {ip:?} is not an IP address"))?;
            if name.is_empty() {
                bail!("--peer {p:?}: empty node name");
            }
            Ok(TunnelSpec {
                name: ids::vxlan_port_name(&addr.to_string()),
                remote_ip: addr.to_string(),
                local_ip: None,
            })
        })
        .collect()
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let (tunnels, trunks) = desired_links(&args)?;
    let mut targets = ControllerTargets::parse(&args.controllers)?;
    let credentials = args.api_user.clone().zip(args.api_password.clone());
    let api_tls = l2sm_api::TlsOptions {
        ca_file: args.controller_api_ca.clone(),
        client_cert: args.controller_api_cert.clone(),
        client_key: args.controller_api_key.clone(),
    };
    let controller = ControllerClient::with_tls(
        &args.controller_api,
        credentials,
        RetryPolicy::once(),
        api_tls,
    )?;
    let bridge = ids::switch_name(&args.node, &args.provider);
    let dpid = ids::datapath_id(&bridge);
    let own_netns =
        Netns::open("/proc/self/ns/net").context("cannot open own network namespace")?;
    let controllers = resolve_at_start(&mut targets).await?;
    let ssl = ssl_spec(&args)?;
    let ovs = Ovs::connect(&args.ovsdb, Duration::from_secs(15)).await?;
    if let Some(ssl) = &ssl {
        ovs.ensure_ssl(ssl).await?;
    } else if !args.controllers.iter().any(|c| c.starts_with("ssl:")) {
        tracing::warn!("no ssl: controller target: OpenFlow runs over plain TCP, unauthenticated");
    }
    let spec = BridgeSpec {
        name: bridge.clone(),
        dpid_hex: ids::dpid_hex(dpid),
        datapath_type: args.datapath_type.clone(),
        controllers,
        max_backoff_ms: args.max_backoff_ms,
        inactivity_probe_ms: args.inactivity_probe_ms,
    };
    ovs.ensure_bridge(&spec).await?;
    ovs.ensure_tunnels(&bridge, &tunnels).await?;
    let (present, _) = present_trunks(&own_netns, trunks).await?;
    ovs.ensure_trunks(&bridge, &present).await?;
    let ports = PortBatcher::spawn(ovs.clone(), bridge.clone());
    let agent = Arc::new(Agent {
        args,
        ovs,
        bridge,
        dpid,
        own_netns,
        controller,
        tunnels: std::sync::Mutex::new(tunnels),
        ports,
        reserved: Default::default(),
        inflight: Default::default(),
        links: tokio::sync::Mutex::new(()),
    });
    tokio::spawn(agent.clone().report_memberships());
    if targets.has_names() {
        tokio::spawn(agent.clone().watch_controllers(targets, spec));
    }
    if agent.args.topology.is_some() {
        tokio::spawn(agent.clone().watch_topology());
    }
    let listener = bind_socket(&agent.args.listen)?;
    tracing::info!(
        node = %agent.args.node,
        bridge = %agent.bridge,
        dpid = %ids::dpid_hex(agent.dpid),
        tunnels = agent.tunnels().len(),
        socket = %agent.args.listen.display(),
        "agent ready"
    );
    let serve = {
        let agent = agent.clone();
        let stats = Arc::new(socket::SocketStats::default());
        socket::serve(
            listener,
            socket::SocketLimits::default(),
            stats,
            move |line| {
                let agent = agent.clone();
                async move { agent.answer(&line).await }
            },
        )
    };
    tokio::select! {
        _ = serve => tracing::warn!("agent API server stopped"),
        _ = l2sm_runtime::shutdown_signal() => tracing::info!("agent stopping"),
    }
    let _ = std::fs::remove_file(&agent.args.listen);
    Ok(())
}

fn bind_socket(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another agent is already serving {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || anyhow!("invalid MAC address {s:?}");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 != 0 {
        bail!("MAC address {s} is a multicast address");
    }
    Ok(mac)
}

/// A stable, locally administered unicast MAC for an attachment that did not ask for one.
fn derived_mac(dpid: u64, attachment_id: &str) -> [u8; 6] {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{dpid:016x}/{attachment_id}").as_bytes());
    [0x02, digest[0], digest[1], digest[2], digest[3], digest[4]]
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Agent {
    fn tunnels(&self) -> Vec<TunnelSpec> {
        self.tunnels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tells the controller about every port this node already has (after an agent or
    /// controller restart the controller may have missed them). Adding a known port is a no-op
    /// there, so this is safe to repeat; it retries until the controller answers.
    async fn report_memberships(self: Arc<Self>) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.report_memberships_once().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(ports = n, "memberships re-reported to the controller");
                    }
                    return;
                }
                Err(e) => tracing::warn!("cannot re-report memberships yet: {e:#}"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn report_memberships_once(&self) -> anyhow::Result<usize> {
        let attachments = self.list().await?;
        for att in &attachments {
            if att.mirror {
                // A mirror stays a mirror: never re-reported as a member.
                let Ok(port) = att.port.parse::<PortId>() else {
                    continue;
                };
                if let Err(e) = self.controller.claim_mirror_port(port, &att.network).await {
                    match e.status() {
                        Some(404 | 409) => tracing::warn!(port = %att.port, network = %att.network,
                            "controller refuses this node's mirror port: {}", e.message()),
                        _ => return Err(e.into()),
                    }
                }
                continue;
            }
            match self.controller.add_port(&att.network, &att.port).await {
                Ok(()) => {}
                Err(e) if e.status() == Some(409) => {
                    tracing::warn!(port = %att.port, network = %att.network,
                    "controller refuses a port this node has: {}", e.message());
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            // The port may have moved to another network (quarantine): its owner is the same.
            self.report_owner(att).await?;
        }
        Ok(attachments.len())
    }

    /// Tells the controller which pod and attachment a member port belongs to (the operator
    /// needs the exact pod of each port), with the interface's MAC and addresses and its port
    /// security override (what port security admits). A controller without the endpoint
    /// (older version) is tolerated with a warning.
    async fn report_owner(&self, att: &Attachment) -> anyhow::Result<()> {
        let ofport = att.ofport;
        let owner = PortOwnerRequest {
            pod: att.pod.clone(),
            attachment: att.attachment_id.clone(),
            interface: att.ifname.clone(),
            mac: Some(att.mac.clone()).filter(|m| !m.is_empty()),
            ips: att.ips.iter().map(|ip| ip.to_string()).collect(),
            port_security: att.port_security,
        };
        let port = PortId {
            dpid: self.dpid,
            port: ofport,
        };
        match self.controller.set_port_owner(port, &owner).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.status(), Some(404 | 405)) => {
                tracing::warn!(
                    "controller does not record port owners (older version?): {}",
                    e.message()
                );
                Ok(())
            }
            Err(ClientError::Status {
                status, message, ..
            }) => bail!(
                "controller answered {status} recording the owner of port {ofport}: {message}"
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the controller says the switch holds the flows of port `ofport` in
    /// `network`. Never fails the attach: the port is a member either way and its flows come
    /// with the switch's next batch; a slow or older controller only costs a warning.
    async fn wait_programmed(&self, ofport: u32, network: &str) {
        let port = PortId {
            dpid: self.dpid,
            port: ofport,
        };
        let req = WaitRequest {
            network: network.to_string(),
            timeout_ms: PROGRAMMED_WAIT_MS,
        };
        match self.controller.wait_programmed(port, &req).await {
            Ok(()) => {}
            Err(ClientError::Status {
                status, message, ..
            }) => tracing::warn!(
                port = ofport,
                "port may not be programmed yet ({status}): {message}"
            ),
            Err(e) => tracing::warn!(
                port = ofport,
                "cannot ask whether the port is programmed: {e:#}"
            ),
        }
    }

    /// Resolves the controller host names again every `--controller-resolve-interval-ms`;
    /// when an address changes, points the bridge's controller at the new one. A name that
    /// does not resolve keeps its last address (logged, retried on the next pass).
    async fn watch_controllers(
        self: Arc<Self>,
        mut targets: ControllerTargets,
        mut spec: BridgeSpec,
    ) {
        let interval = Duration::from_millis(self.args.controller_resolve_interval_ms);
        // A change whose write to OVS failed: retried on the next pass.
        let mut unwritten = false;
        loop {
            tokio::time::sleep(interval).await;
            let refresh = targets.refresh(RESOLVE_TIMEOUT).await;
            for e in &refresh.failed {
                tracing::warn!(
                    keeping = ?spec.controllers,
                    "{e}; keeping the last controller address, retrying in {interval:?}"
                );
            }
            for (host, old, new) in &refresh.changed {
                tracing::info!(%host, old = old.as_deref().unwrap_or("-"), %new,
                    "controller address changed");
            }
            if refresh.changed.is_empty() && !unwritten {
                continue;
            }
            let Some(controllers) = targets.current() else {
                continue;
            };
            spec.controllers = controllers;
            match self.ovs.ensure_bridge(&spec).await {
                Ok(()) => {
                    unwritten = false;
                    tracing::info!(bridge = %spec.name, controllers = ?spec.controllers,
                        "controller target updated");
                }
                Err(e) => {
                    unwritten = true;
                    tracing::warn!("cannot update the controller target: {e:#}");
                }
            }
        }
    }

    /// Re-reads the topology file when it changes and reconciles the links; also retries
    /// trunks whose interface did not exist yet.
    async fn watch_topology(self: Arc<Self>) {
        let mut last = self
            .args
            .topology
            .as_ref()
            .and_then(|p| std::fs::read(p).ok());
        let mut pending = true;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let Some(path) = &self.args.topology else {
                return;
            };
            let current = std::fs::read(path).ok();
            if current == last && !pending {
                continue;
            }
            last = current;
            match self.reconcile_links().await {
                Ok(missing) => pending = missing,
                Err(e) => tracing::warn!("topology change ignored: {e:#}"),
            }
        }
    }

    /// Brings tunnels and trunks in line with the topology; returns whether some trunk
    /// interface is still missing.
    async fn reconcile_links(&self) -> anyhow::Result<bool> {
        let (tunnels, trunks) = desired_links(&self.args)?;
        let (present, missing) = present_trunks(&self.own_netns, trunks).await?;
        let _guard = self.links.lock().await;
        self.ovs.ensure_tunnels(&self.bridge, &tunnels).await?;
        self.ovs.ensure_trunks(&self.bridge, &present).await?;
        tracing::info!(
            tunnels = tunnels.len(),
            trunks = present.len(),
            "links reconciled"
        );
        *self.tunnels.lock().unwrap_or_else(|e| e.into_inner()) = tunnels;
        Ok(missing)
    }

    /// The reply line to one request line of the local API.
    async fn answer(&self, line: &str) -> String {
        let reply = match serde_json::from_str::<AgentRequest>(line) {
            Err(e) => Reply {
                ok: false,
                error: Some(format!("malformed request: {e}")),
                result: None,
            },
            Ok(req) => match self.handle(req).await {
                Ok(result) => Reply {
                    ok: true,
                    error: None,
                    result: Some(result),
                },
                Err(e) => Reply {
                    ok: false,
                    error: Some(format!("{e:#}")),
                    result: None,
                },
            },
        };
        serde_json::to_string(&reply).unwrap_or_else(|e| {
            json!({"ok": false, "error": format!("cannot encode the reply: {e}")}).to_string()
        })
    }

    async fn handle(&self, req: AgentRequest) -> anyhow::Result<serde_json::Value> {
        match req {
            AgentRequest::Attach(a) => Ok(serde_json::to_value(self.attach(a).await?)?),
            AgentRequest::Detach { attachment_id } => {
                Ok(json!({ "detached": self.detach(&attachment_id).await? }))
            }
            AgentRequest::List => Ok(serde_json::to_value(self.list().await?)?),
            AgentRequest::Status => Ok(serde_json::to_value(AgentStatus {
                node: self.args.node.clone(),
                bridge: self.bridge.clone(),
                dpid: format!("of:{}", ids::dpid_hex(self.dpid)),
                tunnels: self
                    .tunnels()
                    .iter()
                    .map(|t| (t.name.clone(), t.remote_ip.clone()))
                    .collect(),
                attachments: self.list().await?.len(),
            })?),
        }
    }

    async fn list(&self) -> anyhow::Result<Vec<Attachment>> {
        let ifaces = self.ovs.interfaces(&self.bridge).await?;
        Ok(ifaces
            .iter()
            .filter_map(|i| self.attachment_from_row(i))
            .collect())
    }

    fn attachment_from_row(&self, row: &ovs::InterfaceRow) -> Option<Attachment> {
        let ext = &row.external_ids;
        let ofport = u32::try_from(row.ofport.or(row.ofport_request)?).ok()?;
        Some(Attachment {
            attachment_id: ext.get("attachment-id")?.clone(),
            network: ext.get("l2sm-network")?.clone(),
            ifname: ext.get("ifname").cloned().unwrap_or_default(),
            host_ifname: row.name.clone(),
            port: PortId {
                dpid: self.dpid,
                port: ofport,
            }
            .to_string(),
            ofport,
            mac: ext.get("mac").cloned().unwrap_or_default(),
            ips: ext
                .get("ips")
                .map(|s| s.split(',').filter_map(|ip| ip.parse().ok()).collect())
                .unwrap_or_default(),
            pod: ext.get("pod").cloned(),
            port_security: ext.get("port-security").and_then(|v| v.parse().ok()),
            mirror: ext.get("l2sm-mirror").map(String::as_str) == Some("true"),
        })
    }

    /// Addresses for an attachment from the controller's IPAM (which also checks that the
    /// network exists): the static ones validated, or allocated ones; none for L2-only networks
    /// without static addresses.
    async fn allocate(
        &self,
        network: &str,
        owner: &str,
        ips: &[ipnet::IpNet],
        port: PortId,
    ) -> anyhow::Result<Vec<ipnet::IpNet>> {
        // The port lets the controller show the membership with its addresses.
        let req = AllocationRequest {
            owner: owner.to_string(),
            ips: ips.to_vec(),
            port: Some(port.to_string()),
        };
        match self.controller.allocate(network, &req).await {
            Ok(ips) => Ok(ips),
            Err(e) => match e.status() {
                Some(404) => bail!("unknown network {network:?}"),
                Some(401) => bail!("the controller refused our credentials"),
                Some(_) => bail!("address request refused: {}", e.message()),
                None => Err(e.into()),
            },
        }
    }

    async fn release(&self, network: &str, owner: &str) -> anyhow::Result<()> {
        match self.controller.release(network, owner).await {
            Ok(_) => Ok(()),
            Err(ClientError::Status {
                status, message, ..
            }) => bail!("controller answered {status} releasing addresses of {owner}: {message}"),
            Err(e) => Err(e.into()),
        }
    }

    async fn attach(&self, req: AttachRequest) -> anyhow::Result<Attachment> {
        if req.attachment_id.is_empty() {
            bail!("attachment_id must not be empty");
        }
        if !valid_ifname(&req.ifname) {
            bail!(
                "invalid interface name {:?} (1-15 printable characters, no '/' or ':')",
                req.ifname
            );
        }
        ids::validate_network_name(&req.network)?;
        if req.mirror && !req.ips.is_empty() {
            bail!(
                "a mirror port has no addresses: it only receives copies of the network's frames"
            );
        }
        let mtu = req.mtu.unwrap_or(self.args.mtu);
        if !(68..=65535).contains(&mtu) {
            bail!("MTU {mtu} is out of range (68-65535)");
        }
        // Known before anything is made, so it can be recorded in the same OVSDB transaction.
        let mac = match req.mac.as_deref() {
            Some(m) => parse_mac(m)?,
            None => derived_mac(self.dpid, &req.attachment_id),
        };
        let _busy = InFlight::claim(&self.inflight, &req.attachment_id).await?;
        let interfaces = self.ovs.interfaces(&self.bridge).await?;
        if let Some(row) = interfaces
            .iter()
            .find(|i| i.external_ids.get("attachment-id") == Some(&req.attachment_id))
        {
            let existing = self.attachment_from_row(row).ok_or_else(|| {
                anyhow!("attachment {} exists but is incomplete", req.attachment_id)
            })?;
            if existing.network != req.network || existing.mirror != req.mirror {
                bail!(
                    "attachment {} already exists on network {:?}{}",
                    req.attachment_id,
                    existing.network,
                    if existing.mirror {
                        " as its mirror"
                    } else {
                        ""
                    }
                );
            }
            // A retried ADD after an attach cut short before its last step (the agent
            // stopped): the pod's interface may still be down.
            let pod_ns = Netns::open(&req.netns)
                .with_context(|| format!("pod network namespace {}", req.netns.display()))?;
            bring_up(&pod_ns, &req.ifname, &req.routes, true).await?;
            return Ok(existing);
        }
        let pod_ns = Netns::open(&req.netns)
            .with_context(|| format!("pod network namespace {}", req.netns.display()))?;
        let used: Vec<u32> = interfaces
            .iter()
            .filter_map(|i| i.ofport_request.or(i.ofport))
            .filter_map(|n| u32::try_from(n).ok())
            .collect();
        let reservation = Reservation::take(&self.reserved, &used)
            .ok_or_else(|| anyhow!("no free port number left on {}", self.bridge))?;
        let ofport = reservation.port;
        let host_if = ids::port_interface_name(self.dpid, ofport);
        let port_id = PortId {
            dpid: self.dpid,
            port: ofport,
        };
        let tx_off = self.args.disable_tx_offload;

        let started = std::time::Instant::now();
        // 1. In parallel: the network must exist; the veth pair, pod end born inside the pod.
        let (hi, pi, pns) = (host_if.clone(), req.ifname.clone(), pod_ns.clone());
        let make_veth = run_netlink(&self.own_netns, move |nl| {
            nl.create_veth(&hi, &pi, Some(&pns), Some(mtu))?;
            let r = (|| {
                if tx_off {
                    nl.set_tx_checksum(&hi, false)?;
                }
                nl.set_up(&hi)
            })();
            if r.is_err() {
                let _ = nl.delete_link(&hi);
            }
            r
        });
        // A mirror port gets no addresses (IPAM also checks that the network exists; for a
        // mirror the controller checks it when the port becomes the mirror).
        let allocate = async {
            if req.mirror {
                Ok(Vec::new())
            } else {
                self.allocate(&req.network, &req.attachment_id, &req.ips, port_id)
                    .await
            }
        };
        let (allocated, veth) = tokio::join!(allocate, make_veth);
        let veth =
            veth.with_context(|| format!("cannot create interface {} in the pod", req.ifname));
        let ips = match (allocated, veth) {
            (Ok(ips), Ok(())) => ips,
            (allocated, veth) => {
                self.delete_host_veth(&host_if).await;
                if allocated.is_ok() {
                    let _ = self.release(&req.network, &req.attachment_id).await;
                }
                return Err(allocated
                    .err()
                    .or(veth.err())
                    .unwrap_or_else(|| anyhow!("attach failed")));
            }
        };

        let t_veth = started.elapsed();
        // 2. In parallel: the pod side (MAC, addresses, up, routes) and the OVS port.
        // The pod's interface stays down until the switches hold its flows (step 5).
        let (pi, pod_ips) = (req.ifname.clone(), ips.clone());
        let configure_pod = run_netlink(&pod_ns, move |nl| {
            nl.set_mac(&pi, mac)?;
            if tx_off {
                nl.set_tx_checksum(&pi, false)?;
            }
            for ip in &pod_ips {
                nl.add_address(&pi, *ip)?;
            }
            Ok(())
        });
        let pod_mac = format_mac(mac);
        let mut ext = vec![
            ("attachment-id".to_string(), req.attachment_id.clone()),
            ("l2sm-network".to_string(), req.network.clone()),
            ("ifname".to_string(), req.ifname.clone()),
            ("ips".to_string(), crate::proto::join_ips(&ips)),
            ("netns".to_string(), req.netns.display().to_string()),
        ];
        ext.push(("mac".to_string(), pod_mac.clone()));
        if let Some(pod) = &req.pod {
            ext.push(("pod".to_string(), pod.clone()));
        }
        if let Some(on) = req.port_security {
            ext.push(("port-security".to_string(), on.to_string()));
        }
        if req.mirror {
            ext.push(("l2sm-mirror".to_string(), "true".to_string()));
        }
        let add_port = self.ports.apply(PortChange::Add(NewPort {
            name: host_if.clone(),
            ofport,
            external_ids: ext,
        }));
        let (configured, added) = tokio::join!(configure_pod, add_port);
        let configured =
            configured.with_context(|| format!("cannot configure {} in the pod", req.ifname));
        let added = added.with_context(|| format!("cannot add port {host_if} to {}", self.bridge));
        match (configured, added) {
            (Ok(()), Ok(())) => {}
            (c, a) => {
                let _ = self.ports.apply(PortChange::Remove(host_if.clone())).await;
                self.delete_host_veth(&host_if).await;
                return Err(c
                    .err()
                    .or(a.err())
                    .unwrap_or_else(|| anyhow!("attach failed")));
            }
        };

        let t_port = started.elapsed();
        if req.mirror {
            return self
                .attach_mirror(&req, &pod_ns, reservation, host_if, port_id, pod_mac)
                .await;
        }
        // 3. Membership in the controller.
        let port_text = port_id.to_string();
        let reported = match self.controller.add_port(&req.network, &port_text).await {
            Ok(()) => Ok(()),
            Err(ClientError::Status {
                status: 409,
                message,
                ..
            }) => Err(anyhow!("controller refused the port: {message}")),
            Err(ClientError::Status {
                status, message, ..
            }) => Err(anyhow!("controller answered {status}: {message}")),
            Err(e) => Err(e.into()),
        };
        let attachment = Attachment {
            attachment_id: req.attachment_id.clone(),
            network: req.network.clone(),
            ifname: req.ifname.clone(),
            host_ifname: host_if.clone(),
            port: port_id.to_string(),
            ofport,
            mac: pod_mac,
            ips,
            pod: req.pod.clone(),
            port_security: req.port_security,
            mirror: false,
        };
        let reported = match reported {
            Ok(()) => {
                let owned = self.report_owner(&attachment).await;
                if owned.is_err() {
                    let _ = self.controller.remove_port(&req.network, &port_text).await;
                }
                owned
            }
            Err(e) => Err(e),
        };
        if let Err(e) = reported {
            let _ = self.ports.apply(PortChange::Remove(host_if.clone())).await;
            self.delete_host_veth(&host_if).await;
            let _ = self.release(&req.network, &req.attachment_id).await;
            return Err(e);
        }
        reservation.keep();
        let t_reported = started.elapsed();
        // 4. Wait (bounded) until the switch holds the port's flows: the pod's first frames
        // (its ARP requests) would be dropped by a switch that does not know the port yet.
        self.wait_programmed(ofport, &req.network).await;
        let t_programmed = started.elapsed();
        // 5. Only now the pod's interface comes up: a frame it sent before its switch had its
        // flows would be dropped, and Open vSwitch could keep that verdict cached in its
        // datapath for a while after the flows arrive (until its revalidators run).
        if let Err(e) = bring_up(&pod_ns, &req.ifname, &req.routes, false).await {
            let _ = self.controller.remove_port(&req.network, &port_text).await;
            let _ = self.ports.apply(PortChange::Remove(host_if.clone())).await;
            self.delete_host_veth(&host_if).await;
            let _ = self.release(&req.network, &req.attachment_id).await;
            return Err(e);
        }
        tracing::info!(
            attachment = %req.attachment_id,
            network = %req.network,
            port = %port_id,
            veth_ms = t_veth.as_millis() as u64,
            port_ms = (t_port - t_veth).as_millis() as u64,
            controller_ms = (t_reported - t_port).as_millis() as u64,
            programmed_ms = (t_programmed - t_reported).as_millis() as u64,
            up_ms = (started.elapsed() - t_programmed).as_millis() as u64,
            "attached"
        );
        Ok(attachment)
    }

    /// The last steps of a mirror attachment (an IDS): the port becomes the network's mirror
    /// in the controller (refused when the network has another mirror), then the pod's
    /// interface comes up. Undone entirely on failure.
    async fn attach_mirror(
        &self,
        req: &AttachRequest,
        pod_ns: &Netns,
        reservation: Reservation<'_>,
        host_if: String,
        port_id: PortId,
        mac: String,
    ) -> anyhow::Result<Attachment> {
        let port_text = port_id.to_string();
        let undo_port = || async {
            let _ = self.ports.apply(PortChange::Remove(host_if.clone())).await;
            self.delete_host_veth(&host_if).await;
        };
        match self
            .controller
            .claim_mirror_port(port_id, &req.network)
            .await
        {
            Ok(()) => {}
            Err(e) => {
                undo_port().await;
                return Err(match e {
                    ClientError::Status {
                        status, message, ..
                    } => anyhow!(
                        "controller refused {port_text} as mirror of {:?} ({status}): {message}",
                        req.network
                    ),
                    e => e.into(),
                });
            }
        }
        if let Err(e) = bring_up(pod_ns, &req.ifname, &[], false).await {
            let _ = self.controller.release_mirror_port(port_id).await;
            undo_port().await;
            return Err(e);
        }
        reservation.keep();
        tracing::info!(attachment = %req.attachment_id, network = %req.network,
            port = %port_id, "attached as the network's mirror");
        Ok(Attachment {
            attachment_id: req.attachment_id.clone(),
            network: req.network.clone(),
            ifname: req.ifname.clone(),
            host_ifname: host_if,
            port: port_text,
            ofport: port_id.port,
            mac,
            ips: Vec::new(),
            pod: req.pod.clone(),
            port_security: None,
            mirror: true,
        })
    }

    async fn delete_host_veth(&self, host_if: &str) {
        let hi = host_if.to_string();
        if let Err(e) =
            run_netlink(&self.own_netns, move |nl| nl.delete_link(&hi).map(|_| ())).await
        {
            tracing::warn!("cannot delete {host_if}: {e:#}");
        }
    }

    /// Removes the membership of a port that was moved to another network after it was
    /// attached, when the controller still records this attachment as its owner.
    async fn remove_moved_membership(
        &self,
        att: &Attachment,
        attachment_id: &str,
    ) -> anyhow::Result<()> {
        let ports = self.controller.ports().await?;
        let Some(view) = ports.iter().find(|p| p.id == att.port) else {
            return Ok(());
        };
        let (Some(network), Some(owner)) = (view.network.as_deref(), view.attachment.as_deref())
        else {
            return Ok(());
        };
        if owner != attachment_id || network == att.network {
            return Ok(());
        }
        match self.controller.remove_port(network, &att.port).await {
            Ok(()) => {
                tracing::info!(port = %att.port, network, "removed the membership of a moved port");
                Ok(())
            }
            Err(e) if matches!(e.status(), Some(409)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn detach(&self, attachment_id: &str) -> anyhow::Result<bool> {
        let _busy = InFlight::claim(&self.inflight, attachment_id).await?;
        let interfaces = self.ovs.interfaces(&self.bridge).await?;
        let Some(att) = interfaces
            .iter()
            .filter(|i| {
                i.external_ids.get("attachment-id").map(String::as_str) == Some(attachment_id)
            })
            .find_map(|i| self.attachment_from_row(i))
        else {
            return Ok(false);
        };
        if att.mirror {
            let port: PortId = att.port.parse().map_err(|e| {
                anyhow!(
                    "attachment {attachment_id} has a bad port {}: {e}",
                    att.port
                )
            })?;
            match self.controller.release_mirror_port(port).await {
                Ok(()) => {}
                Err(ClientError::Status {
                    status, message, ..
                }) => bail!(
                    "controller answered {status} releasing mirror {}: {message}",
                    att.port
                ),
                Err(e) => return Err(e.into()),
            }
            self.ports
                .apply(PortChange::Remove(att.host_ifname.clone()))
                .await?;
            self.reserved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&att.ofport);
            let hi = att.host_ifname.clone();
            run_netlink(&self.own_netns, move |nl| nl.delete_link(&hi).map(|_| ())).await?;
            tracing::info!(attachment = %attachment_id, network = %att.network, port = %att.port, "mirror detached");
            return Ok(true);
        }
        match self.controller.remove_port(&att.network, &att.port).await {
            Ok(()) => {}
            // Not a member there: the port may have been moved (quarantine) since it was
            // attached, and OVSDB still names the network it was attached to. Left as a
            // member of the network it moved to, the controller would keep a port that no
            // longer exists, and hand that membership to the next port OVS numbers the same.
            Err(e) if matches!(e.status(), Some(409 | 500)) => {
                tracing::info!(port = %att.port, network = %att.network,
                    "controller had no membership there: {}", e.message());
                self.remove_moved_membership(&att, attachment_id).await?;
            }
            Err(ClientError::Status {
                status, message, ..
            }) => bail!(
                "controller answered {status} removing {}: {message}",
                att.port
            ),
            Err(e) => return Err(e.into()),
        }
        self.release(&att.network, attachment_id).await?;
        self.ports
            .apply(PortChange::Remove(att.host_ifname.clone()))
            .await?;
        self.reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&att.ofport);
        let hi = att.host_ifname.clone();
        run_netlink(&self.own_netns, move |nl| nl.delete_link(&hi).map(|_| ())).await?;
        tracing::info!(attachment = %attachment_id, network = %att.network, port = %att.port, "detached");
        Ok(true)
    }
}

/// Marks an attachment id as being worked on, so two requests for the same id never race.
struct InFlight<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<String>>,
    id: String,
}

impl<'a> InFlight<'a> {
    /// Waits (up to a minute) while another request works on the same id: a runtime that
    /// retried after a client-side timeout then gets the first request's outcome.
    async fn claim(
        set: &'a std::sync::Mutex<std::collections::HashSet<String>>,
        id: &str,
    ) -> anyhow::Result<InFlight<'a>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if set
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_string())
            {
                return Ok(InFlight {
                    set,
                    id: id.to_string(),
                });
            }
            if tokio::time::Instant::now() > deadline {
                bail!("attachment {id} is being changed by another request; retry");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// The lowest OpenFlow number free for a pod port: not `used` (on the bridge), not
/// `reserved` (attaches in progress), below [`ids::FIRST_EDGE_HOP_PORT`] (0xD000-0xDFFF are
/// the edge's hops, 0xE000 up trunks and tunnels).
pub fn next_pod_port(used: &[u32], reserved: &std::collections::BTreeSet<u32>) -> Option<u32> {
    (1..ids::FIRST_EDGE_HOP_PORT).find(|n| !used.contains(n) && !reserved.contains(n))
}

/// An OpenFlow port number held for an attach in progress (numbers only show in OVSDB once
/// the port is added, so concurrent attaches reserve them here).
struct Reservation<'a> {
    set: &'a std::sync::Mutex<std::collections::BTreeSet<u32>>,
    port: u32,
}

impl<'a> Reservation<'a> {
    fn take(
        set: &'a std::sync::Mutex<std::collections::BTreeSet<u32>>,
        used: &[u32],
    ) -> Option<Reservation<'a>> {
        let mut guard = set.lock().unwrap_or_else(|e| e.into_inner());
        let port = next_pod_port(used, &guard)?;
        guard.insert(port);
        Some(Reservation { set, port })
    }
}

impl Reservation<'_> {
    /// The port now exists: keep the number reserved until detach, so an attach that read
    /// OVSDB before this port was committed can never pick it again.
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.port);
    }
}

/// Splits trunks into those whose interface exists on this node and those that do not (yet):
/// a cable plugged in later is picked up on a later pass.
async fn present_trunks(
    ns: &Netns,
    trunks: Vec<l2sm_api::topology::Trunk>,
) -> anyhow::Result<(Vec<l2sm_api::topology::Trunk>, bool)> {
    if trunks.is_empty() {
        return Ok((trunks, false));
    }
    let names: Vec<String> = trunks.iter().map(|t| t.interface.clone()).collect();
    let exists = run_netlink(ns, move |nl| {
        names
            .iter()
            .map(|n| nl.link_exists(n))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let mut present = Vec::new();
    let mut missing = false;
    for (t, ok) in trunks.into_iter().zip(exists) {
        if ok {
            present.push(t);
        } else {
            tracing::warn!(interface = %t.interface, peer = %t.peer, "trunk interface not found (yet)");
            missing = true;
        }
    }
    Ok((present, missing))
}

/// Brings a pod's interface up and adds its routes (which need the link up). With `again`,
/// routes already there are kept (a retried attach).
async fn bring_up(
    pod_ns: &Netns,
    ifname: &str,
    routes: &[l2sm_agent_api::RouteSpec],
    again: bool,
) -> anyhow::Result<()> {
    let (pi, routes) = (ifname.to_string(), routes.to_vec());
    run_netlink(pod_ns, move |nl| {
        nl.set_up(&pi)?;
        for r in &routes {
            match nl.add_route(r.dst, r.gw, Some(&pi)) {
                Err(l2sm_netns::Error::AlreadyExists { .. }) if again => {}
                other => other?,
            }
        }
        Ok(())
    })
    .await
    .with_context(|| format!("cannot bring {ifname} up in the pod"))
}

/// Netlink work runs on a dedicated thread (it joins another namespace); keep it off the
/// async workers.
async fn run_netlink<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce(&mut l2sm_netns::Netlink) -> Result<T, l2sm_netns::Error> + Send + 'static,
) -> anyhow::Result<T> {
    let ns = ns.clone();
    let r = tokio::task::spawn_blocking(move || l2sm_netns::with_netlink(&ns, f))
        .await
        .map_err(|e| anyhow!("netlink task failed: {e}"))?;
    Ok(r?)
}
