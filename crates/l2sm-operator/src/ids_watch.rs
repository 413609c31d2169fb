//! `l2sm ids-watch`: turns Suricata's EVE alerts into QuarantinePodRequests.
//!
//! It runs as a second container of the IDS pod ([`crate::reconcile::ids`]), reading
//! `eve.json` from the volume the two containers share: alerts never cross the network, and
//! the watcher lives and dies with the Suricata it listens to. Per alert:
//!
//! 1. the line is parsed (lines longer than `--max-line-bytes` and lines that are not JSON
//!    objects are skipped and counted; events other than `alert` are ignored);
//! 2. the offending pod is the one that has the alert's source address on the network
//!    (`status.assignedIPs` of the L2Network, written by the operator), else the one whose
//!    `l2sm/status` attachment on the network has the alert's source MAC (`ether.src_mac`);
//!    no pod: counted as unresolved (traffic of something that is no pod of the network);
//! 3. a QuarantinePodRequest named from (network, pod, sid) — one per pod per signature,
//!    whatever the number of alerts — selects that pod by its
//!    [`crate::reconcile::pod::POD_NAME_LABEL`] and the network by
//!    [`crate::reconcile::ids::NETWORK_NAME_LABEL`], targets the quarantine network, and
//!    carries the alert (sid, signature, source address and MAC, time) in annotations; an
//!    Event on the request names the alert. An existing request (409) is a duplicate, not an
//!    error;
//! 4. requests are rate-limited (a token bucket: `--burst`, refilled at `--rate-per-minute`);
//!    an alert over the limit is counted and dropped, and a later alert of the same pod and
//!    signature still creates its request.

use crate::crd::{L2Network, QuarantinePodRequest, QuarantinePodRequestSpec, QuarantineSelector};
use crate::reconcile::ids::NETWORK_NAME_LABEL;
use crate::reconcile::l2network::label_value;
use crate::reconcile::pod::{pod_attachments, POD_NAME_LABEL};
use crate::reconcile::POD_LABEL;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Resource, ResourceExt};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Read, Seek};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Annotations on the requests the watcher creates.
pub const ANN_SID: &str = "l2sm.l2sm.k8s.local/ids-signature-id";
/// The alert's signature (message).
pub const ANN_SIGNATURE: &str = "l2sm.l2sm.k8s.local/ids-signature";
/// The alert's source address.
pub const ANN_SRC_IP: &str = "l2sm.l2sm.k8s.local/ids-src-ip";
/// The alert's source MAC, when Suricata logged it.
pub const ANN_SRC_MAC: &str = "l2sm.l2sm.k8s.local/ids-src-mac";
/// The pod the alert was attributed to.
pub const ANN_POD: &str = "l2sm.l2sm.k8s.local/ids-pod";
/// The alert's timestamp (Suricata's).
pub const ANN_TIME: &str = "l2sm.l2sm.k8s.local/ids-alert-time";
/// Label on the requests: the network (`label_value`).
pub const LABEL_IDS_NETWORK: &str = "l2sm.l2sm.k8s.local/ids-network";

/// `l2sm ids-watch` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct IdsWatchArgs {
    /// Suricata's EVE JSON log.
    #[arg(long)]
    pub eve: PathBuf,
    /// The L2Network the IDS watches.
    #[arg(long)]
    pub network: String,
    /// Its namespace (where requests are created).
    #[arg(long)]
    pub namespace: String,
    /// The L2Network offending pods are moved to.
    #[arg(long)]
    pub quarantine_to: String,
    /// Requests per minute (refill of the token bucket).
    #[arg(long, default_value_t = 10)]
    pub rate_per_minute: u32,
    /// Requests that may be created at once.
    #[arg(long, default_value_t = 5)]
    pub burst: u32,
    /// Longer EVE lines are skipped.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_line_bytes: usize,
    /// Read the file from its start (default: only what is appended after the start).
    #[arg(long)]
    pub from_start: bool,
}

/// One alert, as far as the watcher needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// `alert.signature_id`.
    pub sid: u64,
    /// `alert.signature`.
    pub signature: String,
    /// `src_ip`.
    pub src_ip: Option<String>,
    /// `ether.src_mac`.
    pub src_mac: Option<String>,
    /// `timestamp`.
    pub timestamp: Option<String>,
}

#[derive(Deserialize)]
struct EveLine {
    event_type: Option<String>,
    timestamp: Option<String>,
    src_ip: Option<String>,
    ether: Option<EveEther>,
    alert: Option<EveAlert>,
}

#[derive(Deserialize)]
struct EveEther {
    src_mac: Option<String>,
}

#[derive(Deserialize)]
struct EveAlert {
    signature_id: Option<u64>,
    signature: Option<String>,
}

/// What a line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// An alert event.
    Alert(Alert),
    /// Another event type (flow, stats, …).
    Other,
    /// Not an EVE event (bad JSON, an alert without its sid).
    Garbage,
}

/// Parses one EVE line.
pub fn parse_line(line: &[u8]) -> Line {
    let Ok(ev) = serde_json::from_slice::<EveLine>(line) else {
        return Line::Garbage;
    };
    match ev.event_type.as_deref() {
        Some("alert") => {}
        Some(_) => return Line::Other,
        None => return Line::Garbage,
    }
    let Some(a) = ev.alert else {
        return Line::Garbage;
    };
    let Some(sid) = a.signature_id else {
        return Line::Garbage;
    };
    Line::Alert(Alert {
        sid,
        signature: a.signature.unwrap_or_default(),
        src_ip: ev.src_ip,
        src_mac: ev
            .ether
            .and_then(|e| e.src_mac)
            .map(|m| m.to_ascii_lowercase()),
        timestamp: ev.timestamp,
    })
}

/// Reads complete lines appended to a file, each at most `max` bytes (longer ones are
/// skipped and counted); a file that shrinks or is replaced (rotation) is read from its start.
pub struct Tail {
    path: PathBuf,
    max: usize,
    offset: u64,
    ino: Option<u64>,
    partial: Vec<u8>,
    skipping: bool,
}

impl Tail {
    /// A tail of `path` from its current end (`from_start`: from its beginning).
    pub fn new(path: PathBuf, max: usize, from_start: bool) -> Self {
        let (offset, ino) = match std::fs::metadata(&path) {
            Ok(m) if !from_start => (m.len(), Some(inode(&m))),
            Ok(m) => (0, Some(inode(&m))),
            Err(_) => (0, None),
        };
        Tail {
            path,
            max,
            offset,
            ino,
            partial: Vec::new(),
            skipping: false,
        }
    }

    /// The complete lines appended since the last call, and how many were too long.
    pub fn read(&mut self) -> std::io::Result<(Vec<Vec<u8>>, u64)> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e),
        };
        if Some(inode(&meta)) != self.ino || meta.len() < self.offset {
            self.ino = Some(inode(&meta));
            self.offset = 0;
            self.partial.clear();
            self.skipping = false;
        }
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(std::io::SeekFrom::Start(self.offset))?;
        // At most 8 MiB per call: a burst of alerts is worked through over several calls.
        let mut r = std::io::BufReader::new(f.take(8 << 20));
        let mut lines = Vec::new();
        let mut too_long = 0;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = r.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            let complete = buf.last() == Some(&b'\n');
            let body = if complete { &buf[..n - 1] } else { &buf[..] };
            if self.skipping {
                if complete {
                    self.skipping = false;
                }
                continue;
            }
            if self.partial.len() + body.len() > self.max {
                too_long += 1;
                self.partial.clear();
                self.skipping = !complete;
                continue;
            }
            self.partial.extend_from_slice(body);
            if complete {
                lines.push(std::mem::take(&mut self.partial));
            }
        }
        Ok((lines, too_long))
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// Counters of what the watcher saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Lines read.
    pub lines: u64,
    /// Alert events.
    pub alerts: u64,
    /// Lines that are no EVE event.
    pub garbage: u64,
    /// Lines over the length bound.
    pub too_long: u64,
    /// Alerts whose source is no pod of the network.
    pub unresolved: u64,
    /// Requests created.
    pub created: u64,
    /// Alerts whose request exists already.
    pub duplicates: u64,
    /// Alerts dropped by the rate limit.
    pub rate_limited: u64,
    /// API calls that failed.
    pub errors: u64,
}

/// A token bucket.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    at: Instant,
}

impl Bucket {
    /// `burst` tokens, refilled at `per_minute`.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Bucket {
            tokens: f64::from(burst.max(1)),
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_minute) / 60.0,
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The request name for (network, pod, sid): `ids-<network>-<pod>-<sid>` when it is a valid
/// name of at most 253 characters, else `ids-<sid>-<hash>`. Deterministic: the same alert
/// again names the same request.
pub fn request_name(network: &str, pod: &str, sid: u64) -> String {
    let plain = format!("ids-{network}-{pod}-{sid}");
    if plain.len() <= 253 {
        return plain;
    }
    let h = Sha256::digest(format!("{network}/{pod}").as_bytes());
    let hex: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("ids-{sid}-{hex}")
}

/// The QuarantinePodRequest for an alert attributed to `pod`.
pub fn request_for(
    namespace: &str,
    network: &str,
    pod: &str,
    target: &str,
    alert: &Alert,
) -> QuarantinePodRequest {
    let mut annotations = BTreeMap::from([
        (ANN_SID.to_string(), alert.sid.to_string()),
        (
            ANN_SIGNATURE.to_string(),
            alert.signature.chars().take(1024).collect(),
        ),
        (ANN_POD.to_string(), pod.to_string()),
    ]);
    if let Some(ip) = &alert.src_ip {
        annotations.insert(ANN_SRC_IP.into(), ip.clone());
    }
    if let Some(mac) = &alert.src_mac {
        annotations.insert(ANN_SRC_MAC.into(), mac.clone());
    }
    if let Some(t) = &alert.timestamp {
        annotations.insert(ANN_TIME.into(), t.clone());
    }
    let one = |k: &str, v: String| LabelSelector {
        match_labels: Some(BTreeMap::from([(k.to_string(), v)])),
        match_expressions: None,
    };
    QuarantinePodRequest {
        metadata: ObjectMeta {
            name: Some(request_name(network, pod, alert.sid)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                LABEL_IDS_NETWORK.to_string(),
                label_value(network),
            )])),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: QuarantinePodRequestSpec {
            selector: QuarantineSelector {
                pod_label_selector: one(POD_NAME_LABEL, label_value(pod)),
                l2_network_selector: one(NETWORK_NAME_LABEL, label_value(network)),
            },
            target_l2_network: target.to_string(),
        },
        status: None,
    }
}

/// The watcher: resolves alerts to pods and creates requests.
pub struct Watcher {
    client: kube::Client,
    namespace: String,
    network: String,
    target: String,
    bucket: Bucket,
    done: HashSet<String>,
    recorder: Recorder,
    by_ip: BTreeMap<String, String>,
    by_mac: BTreeMap<String, String>,
    refreshed: Option<Instant>,
    /// What it counted.
    pub counters: Counters,
}

/// Shortest time between two reads of the network and its pods (a burst of alerts from an
/// unknown source does not become a burst of API calls).
const REFRESH_MIN: Duration = Duration::from_secs(1);

impl Watcher {
    /// A watcher creating requests through `client`.
    pub fn new(client: kube::Client, args: &IdsWatchArgs) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "l2sm-ids-watch".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Watcher {
            client,
            namespace: args.namespace.clone(),
            network: args.network.clone(),
            target: args.quarantine_to.clone(),
            bucket: Bucket::new(args.rate_per_minute, args.burst),
            done: HashSet::new(),
            recorder,
            by_ip: BTreeMap::new(),
            by_mac: BTreeMap::new(),
            refreshed: None,
            counters: Counters::default(),
        }
    }

    /// Reads the network's addresses and its pods' MACs again (at most once per
    /// [`REFRESH_MIN`]).
    async fn refresh(&mut self) -> Result<(), kube::Error> {
        if self.refreshed.is_some_and(|t| t.elapsed() < REFRESH_MIN) {
            return Ok(());
        }
        self.refreshed = Some(Instant::now());
        let nets: Api<L2Network> = Api::namespaced(self.client.clone(), &self.namespace);
        self.by_ip = nets
            .get(&self.network)
            .await?
            .status
            .and_then(|s| s.assigned_ips)
            .unwrap_or_default()
            .into_iter()
            .map(|(ip, pod)| (ip.split('/').next().unwrap_or_default().to_string(), pod))
            .collect();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut by_mac = BTreeMap::new();
        for p in pods
            .list(&ListParams::default().labels(&format!("{POD_LABEL}=true")))
            .await?
            .items
        {
            for a in pod_attachments(&p) {
                if a.network == self.network {
                    if let Some(mac) = a.mac {
                        by_mac.insert(mac.to_ascii_lowercase(), p.name_any());
                    }
                }
            }
        }
        self.by_mac = by_mac;
        Ok(())
    }

    fn lookup(&self, alert: &Alert) -> Option<String> {
        alert
            .src_ip
            .as_ref()
            .and_then(|ip| self.by_ip.get(ip))
            .or_else(|| alert.src_mac.as_ref().and_then(|m| self.by_mac.get(m)))
            .cloned()
    }

    /// Handles one line.
    pub async fn handle(&mut self, line: &[u8]) {
        self.counters.lines += 1;
        let alert = match parse_line(line) {
            Line::Alert(a) => a,
            Line::Other => return,
            Line::Garbage => {
                self.counters.garbage += 1;
                return;
            }
        };
        self.counters.alerts += 1;
        let mut pod = self.lookup(&alert);
        if pod.is_none() {
            if let Err(e) = self.refresh().await {
                self.counters.errors += 1;
                tracing::warn!("cannot read network {:?} and its pods: {e}", self.network);
                return;
            }
            pod = self.lookup(&alert);
        }
        let Some(pod) = pod else {
            self.counters.unresolved += 1;
            tracing::info!(sid = alert.sid, src_ip = ?alert.src_ip, src_mac = ?alert.src_mac,
                "alert from no pod of network {:?}", self.network);
            return;
        };
        let name = request_name(&self.network, &pod, alert.sid);
        if self.done.contains(&name) {
            self.counters.duplicates += 1;
            return;
        }
        if !self.bucket.take(Instant::now()) {
            self.counters.rate_limited += 1;
            tracing::warn!(sid = alert.sid, %pod, "alert over the rate limit: no request");
            return;
        }
        let req = request_for(&self.namespace, &self.network, &pod, &self.target, &alert);
        let api: Api<QuarantinePodRequest> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.create(&PostParams::default(), &req).await {
            Ok(created) => {
                self.done.insert(name.clone());
                self.counters.created += 1;
                tracing::info!(request = %name, sid = alert.sid, %pod, "quarantine requested");
                let note =
                    format!(
                    "IDS alert sid {} ({:?}) from pod {pod} ({}) on network {:?}: moved to {:?}",
                    alert.sid,
                    alert.signature,
                    alert.src_ip.as_deref().or(alert.src_mac.as_deref()).unwrap_or("?"),
                    self.network,
                    self.target
                );
                let ev = Event {
                    type_: EventType::Warning,
                    reason: "IdsAlert".into(),
                    note: Some(note.chars().take(1024).collect()),
                    action: "Quarantine".into(),
                    secondary: None,
                };
                if let Err(e) = self.recorder.publish(&ev, &created.object_ref(&())).await {
                    tracing::warn!("event not recorded: {e}");
                }
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.done.insert(name);
                self.counters.duplicates += 1;
            }
            Err(e) => {
                self.counters.errors += 1;
                tracing::warn!(request = %name, "cannot create the request: {e}");
            }
        }
    }

    /// Handles every complete line `tail` has now.
    pub async fn drain(&mut self, tail: &mut Tail) -> std::io::Result<()> {
        let (lines, too_long) = tail.read()?;
        self.counters.too_long += too_long;
        self.counters.lines += too_long;
        for l in lines {
            self.handle(&l).await;
        }
        Ok(())
    }
}

/// Why the watcher cannot start.
#[derive(Debug, thiserror::Error)]
pub enum IdsWatchError {
    /// An argument is unusable.
    #[error("{0}")]
    Args(String),
    /// No Kubernetes client (no in-cluster ServiceAccount, no kubeconfig).
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
}

/// Checks the arguments: names as Kubernetes takes them, bounds that make sense.
pub fn validate(args: &IdsWatchArgs) -> Result<(), IdsWatchError> {
    let bad = |m: String| Err(IdsWatchError::Args(m));
    for (what, v) in [
        ("--network", &args.network),
        ("--namespace", &args.namespace),
        ("--quarantine-to", &args.quarantine_to),
    ] {
        let ok = !v.is_empty()
            && v.len() <= 253
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok {
            return bad(format!("{what} {v:?} is not a Kubernetes object name"));
        }
    }
    if args.network == args.quarantine_to {
        return bad("--quarantine-to must name another network than --network".into());
    }
    if args.rate_per_minute == 0 || args.burst == 0 {
        return bad("--rate-per-minute and --burst must be at least 1".into());
    }
    if !(256..=16 << 20).contains(&args.max_line_bytes) {
        return bad("--max-line-bytes must be between 256 and 16777216".into());
    }
    Ok(())
}

/// Runs the watcher until the process is stopped.
pub async fn run(args: IdsWatchArgs) -> Result<(), IdsWatchError> {
    validate(&args)?;
    let client = kube::Client::try_default().await?;
    let mut w = Watcher::new(client, &args);
    let mut tail = Tail::new(args.eve.clone(), args.max_line_bytes, args.from_start);
    let mut last = Counters::default();
    let mut report = Instant::now();
    loop {
        if let Err(e) = w.drain(&mut tail).await {
            tracing::warn!("cannot read {}: {e}", args.eve.display());
        }
        if report.elapsed() >= Duration::from_secs(60) && w.counters != last {
            tracing::info!(counters = ?w.counters, "ids-watch");
            last = w.counters.clone();
            report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
