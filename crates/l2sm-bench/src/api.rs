//! `l2sm-bench api`: latency of the controller's REST API over plain HTTP and over HTTPS,
//! measured in the same run against the same binary and the same state.
//!
//! Two controllers run side by side from one fed state directory (copied): one serves the API
//! over plain HTTP, the other over TLS (`--api-tls-cert/-key`, a certificate made for the
//! run). Requests are made in rounds that alternate between the two (plain first on even
//! rounds, TLS first on odd ones), so the noise of a shared machine falls on both alike.
//!
//! Operations, each timed from sending the request to the last byte of the answer:
//! - `read`: `GET /api/v1/networks` with Basic authentication (every network and its member
//!   ports: what the operator and the CLI list);
//! - `write`: `POST /onos/vnets/api/port` adding one port to a network, then `DELETE` of the
//!   same port (upstream's contract, Basic authentication; each call is one sample; both
//!   persist the state before answering).
//!
//! Connections:
//! - `keepalive`: each of C workers opens one connection (handshake outside the timing) and
//!   sends its requests on it, one at a time, reopening (untimed) when the server closes it
//!   (`--api-max-requests-per-connection`);
//! - `new`: every request opens its own connection (TCP connect and, over TLS, the
//!   handshake, inside the timing), as a client that calls rarely does: an agent reporting a
//!   pod, whose pooled connection the server closed after its idle timeout. The client keeps
//!   rustls' session cache (as the API client of the agent and the operator does: one
//!   configuration per client), so TLS handshakes after the first resume a session (TLS 1.3
//!   PSK with a fresh ECDHE exchange: no certificate is signed, sent or verified);
//! - `new-full`: the same with session resumption off on the client: every handshake is a
//!   full one (certificate, ECDSA P-256 signature and its verification), the cost of a
//!   client's first contact.

use crate::scenario::{Cluster, ClusterSpec};
use crate::tls::BenchPki;
use crate::util::{ms, ControllerSpec, ScratchDir, Usage, PASSWORD, USER};
use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of the REST latency benchmark.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// The `l2sm` binary.
    pub l2sm: PathBuf,
    /// Samples per operation, connection mode and transport.
    pub requests: usize,
    /// Clients in flight at once.
    pub concurrency: usize,
    /// Rounds the samples are split into (alternating plain and TLS).
    pub rounds: usize,
    /// The state the controllers serve: switches × networks × ports per switch memberships.
    pub cluster: ClusterSpec,
    /// Transports to measure.
    pub plain: bool,
    /// Measure TLS too.
    pub tls: bool,
}

/// What was measured (JSON in docs/benchmarks-controller.md).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiReport {
    /// Member ports in the served state.
    pub memberships: usize,
    /// Networks in the served state.
    pub networks: usize,
    /// Size of the `read` answer, bytes.
    pub read_bytes: usize,
    /// Clients in flight at once.
    pub concurrency: usize,
    /// Rounds (plain and TLS alternate).
    pub rounds: usize,
    /// One entry per connection mode, operation and transport.
    pub results: Vec<ApiResult>,
    /// TLS/plain ratios per connection mode and operation (when both were measured).
    pub ratios: Vec<ApiRatio>,
    /// Controller serving plain HTTP, at the end.
    pub controller_plain: Option<Usage>,
    /// Controller serving TLS, at the end.
    pub controller_tls: Option<Usage>,
}

/// Latencies of one connection mode × operation × transport.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiResult {
    /// `keepalive`, `new` or `new-full`.
    pub connection: &'static str,
    /// `read` or `write`.
    pub op: &'static str,
    /// `plain` or `tls`.
    pub transport: &'static str,
    /// Samples.
    pub requests: usize,
    /// Connections opened (keepalive: reopened when the server closed them).
    pub connections: usize,
    /// Latency percentiles and mean, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Samples per second of wall time spent on this transport (all clients together).
    pub throughput_per_s: f64,
    /// Controller CPU time (user + system) per request, microseconds (10 ms clock ticks
    /// summed over the rounds: coarse for short runs).
    pub server_cpu_us: f64,
    /// TLS connections that resumed an earlier session (no certificate sent or verified);
    /// 0 for plain.
    pub resumed: usize,
}

/// TLS over plain of one connection mode and operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiRatio {
    /// `keepalive`, `new` or `new-full`.
    pub connection: &'static str,
    /// `read` or `write`.
    pub op: &'static str,
    /// p50 TLS / p50 plain.
    pub p50: f64,
    /// p99 TLS / p99 plain.
    pub p99: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }
}

/// How a client reaches one controller's API.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    /// The same TLS client without session resumption.
    tls_full: Option<tokio_rustls::TlsConnector>,
    authorization: String,
}

/// How requests get their connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One connection per client, kept alive.
    KeepAlive,
    /// A new connection per request, TLS sessions resumed.
    New,
    /// A new connection per request, full TLS handshakes.
    NewFull,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::KeepAlive => "keepalive",
            Mode::New => "new",
            Mode::NewFull => "new-full",
        }
    }
}

type Sender = SendRequest<Full<Bytes>>;

impl Target {
    /// A new HTTP/1.1 connection (TCP, and the TLS handshake when the target speaks TLS).
    async fn connect(&self) -> anyhow::Result<Sender> {
        Ok(self.connect_resumed(true).await?.0)
    }

    /// [`Target::connect`], TLS sessions resumed when `resume`; whether the handshake did.
    async fn connect_resumed(&self, resume: bool) -> anyhow::Result<(Sender, bool)> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = if resume { &self.tls } else { &self.tls_full };
        match tls {
            None => Ok((handshake(tcp).await?, false)),
            Some(connector) => {
                let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake with the API")?;
                let resumed =
                    tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                Ok((handshake(tls).await?, resumed))
            }
        }
    }

    fn request(
        &self,
        op: Op,
        step: usize,
        port: &str,
    ) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
        let builder = hyper::Request::builder()
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::AUTHORIZATION, &self.authorization);
        let req = match op {
            Op::Read => builder
                .method(hyper::Method::GET)
                .uri("/api/v1/networks")
                .body(Full::new(Bytes::new()))?,
            Op::Write => {
                let body = serde_json::to_vec(&l2sm_api::vnets::NetworkDto::ports(
                    WRITE_NETWORK,
                    &[port.to_string()],
                ))?;
                // Even steps attach the port, odd ones detach it: the state stays the same.
                let method = if step % 2 == 0 {
                    hyper::Method::POST
                } else {
                    hyper::Method::DELETE
                };
                builder
                    .method(method)
                    .uri("/onos/vnets/api/port")
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body)))?
            }
        };
        Ok(req)
    }
}

/// The network the write operation attaches ports to and detaches them from.
const WRITE_NETWORK: &str = "bench-net-0";

async fn handshake<S>(io: S) -> anyhow::Result<Sender>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request, reads the whole answer; fails on anything but 2xx. Returns the answer's
/// size.
async fn call(sender: &mut Sender, req: hyper::Request<Full<Bytes>>) -> anyhow::Result<usize> {
    let what = format!("{} {}", req.method(), req.uri());
    sender
        .ready()
        .await
        .with_context(|| format!("{what}: connection closed"))?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("{what}: no answer"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("{what}: reading the answer"))?
        .to_bytes();
    if !status.is_success() {
        bail!(
            "{what}: answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    Ok(body.len())
}

/// Samples of one batch: latencies (ms), connections opened, wall time.
struct Batch {
    samples: Vec<f64>,
    connections: usize,
    resumed: usize,
    wall: Duration,
    server_cpu_ms: u64,
}

/// `count` requests of `op` spread over `concurrency` clients. Each client has its own port
/// for writes (`of:<dpid>/<1000 + client>`), so concurrent writes do not undo each other.
async fn batch(
    target: &Target,
    op: Op,
    mode: Mode,
    count: usize,
    concurrency: usize,
    ports: &[String],
) -> anyhow::Result<Batch> {
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for c in 0..concurrency {
        // Writes come in attach/detach pairs per client so the state ends as it began.
        let mut n = count / concurrency + usize::from(c < count % concurrency);
        if op == Op::Write && n % 2 == 1 {
            n += 1;
        }
        let target = target.clone();
        let port = ports[c % ports.len()].clone();
        clients.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(n);
            let (mut connections, mut resumed) = (0, 0);
            let mut sender: Option<Sender> = None;
            for step in 0..n {
                let req = target.request(op, step, &port)?;
                if mode == Mode::KeepAlive {
                    // Reuse the connection while the server keeps it; reopen outside the
                    // timing when it closed it (requests-per-connection cap).
                    let usable = match sender.as_mut() {
                        Some(s) => s.ready().await.is_ok(),
                        None => false,
                    };
                    if !usable {
                        let (s, r) = target.connect_resumed(true).await?;
                        sender = Some(s);
                        connections += 1;
                        resumed += usize::from(r);
                    }
                    let s = sender.as_mut().ok_or_else(|| anyhow!("no connection"))?;
                    let t = Instant::now();
                    call(s, req).await?;
                    samples.push(ms(t.elapsed()));
                } else {
                    let t = Instant::now();
                    let (mut s, r) = target.connect_resumed(mode == Mode::New).await?;
                    call(&mut s, req).await?;
                    samples.push(ms(t.elapsed()));
                    connections += 1;
                    resumed += usize::from(r);
                }
            }
            anyhow::Ok((samples, connections, resumed))
        }));
    }
    let mut out = Batch {
        samples: Vec::with_capacity(count),
        connections: 0,
        resumed: 0,
        wall: Duration::ZERO,
        server_cpu_ms: 0,
    };
    for c in clients {
        let (s, n, r) = c.await.context("API client panicked")??;
        out.samples.extend(s);
        out.connections += n;
        out.resumed += r;
    }
    out.wall = t0.elapsed();
    Ok(out)
}

/// The `q` quantile (0..=1) of sorted `v`, nearest rank.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn summarize(
    connection: &'static str,
    op: Op,
    transport: &'static str,
    batches: Vec<Batch>,
) -> ApiResult {
    let mut samples: Vec<f64> = batches.iter().flat_map(|b| b.samples.clone()).collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    let wall: f64 = batches.iter().map(|b| b.wall.as_secs_f64()).sum();
    let n = samples.len();
    ApiResult {
        connection,
        op: op.name(),
        transport,
        requests: n,
        connections: batches.iter().map(|b| b.connections).sum(),
        p50_ms: quantile(&samples, 0.50),
        p90_ms: quantile(&samples, 0.90),
        p99_ms: quantile(&samples, 0.99),
        max_ms: samples.last().copied().unwrap_or(f64::NAN),
        mean_ms: samples.iter().sum::<f64>() / n.max(1) as f64,
        throughput_per_s: if wall > 0.0 { n as f64 / wall } else { 0.0 },
        server_cpu_us: batches.iter().map(|b| b.server_cpu_ms).sum::<u64>() as f64 * 1000.0
            / n.max(1) as f64,
        resumed: batches.iter().map(|b| b.resumed).sum(),
    }
}

/// Runs the benchmark.
pub async fn run(opts: &ApiOptions) -> anyhow::Result<ApiReport> {
    if !opts.plain && !opts.tls {
        bail!("nothing to measure: neither plain nor TLS");
    }
    if opts.requests == 0 || opts.concurrency == 0 || opts.rounds == 0 {
        bail!("--requests, --concurrency and --rounds must be at least 1");
    }
    let cluster = Cluster::generate(&opts.cluster)?;
    let dir = ScratchDir::new("api")?;
    let topo_path = dir.0.join("topology.json");
    std::fs::write(&topo_path, cluster.topology_file().to_json())?;
    let pki = BenchPki::new(&dir.0)?;

    // Feed one controller, stop it, and give each measured controller a copy of its state.
    let spec = ControllerSpec::new(&opts.l2sm, &dir.0, Some(topo_path.clone()))?;
    let mut setup = spec.spawn()?;
    setup.wait_serving(Duration::from_secs(10)).await?;
    cluster
        .feed(setup.api()?, 50, 4)
        .await
        .context("feeding networks and memberships")?;
    setup.stop();
    drop(setup);

    let mut controllers = Vec::new();
    for (name, tls) in [("plain", false), ("tls", true)] {
        if (tls && !opts.tls) || (!tls && !opts.plain) {
            continue;
        }
        let sub = dir.0.join(name);
        std::fs::create_dir_all(&sub)?;
        copy_dir(&spec.state_dir, &sub.join("state"))?;
        let mut s = ControllerSpec::new(&opts.l2sm, &sub, Some(topo_path.clone()))?;
        if tls {
            s.api_tls = Some(pki.files.clone());
        }
        let mut c = s.spawn()?;
        c.wait_serving(Duration::from_secs(10)).await?;
        let (connector, full) = match tls {
            true => (
                Some(tokio_rustls::TlsConnector::from(pki.api_client(true)?)),
                Some(tokio_rustls::TlsConnector::from(pki.api_client(false)?)),
            ),
            false => (None, None),
        };
        let target = Target {
            addr: s.api,
            tls: connector,
            tls_full: full,
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
            ),
        };
        controllers.push((if tls { "tls" } else { "plain" }, c, target));
    }

    // Ports the writers attach and detach: one per client, on existing switches, numbered
    // above every pod port the state has.
    let ports: Vec<String> = (0..opts.concurrency)
        .map(|c| {
            let sw = &cluster.switches[c % cluster.switches.len()];
            format!("of:{}/{}", l2sm_pipeline::ids::dpid_hex(sw.dpid), 1000 + c)
        })
        .collect();

    // Warm up each (connections, the allocator, the state's caches) and size the read.
    let mut read_bytes = 0;
    for (_, _, target) in &controllers {
        let mut s = target.connect().await?;
        for _ in 0..20 {
            read_bytes = call(&mut s, target.request(Op::Read, 0, "")?).await?;
        }
        batch(
            target,
            Op::Write,
            Mode::KeepAlive,
            2 * opts.concurrency,
            opts.concurrency,
            &ports,
        )
        .await?;
    }

    let mut results = Vec::new();
    let mut ratios = Vec::new();
    for mode in [Mode::KeepAlive, Mode::New, Mode::NewFull] {
        let connection = mode.name();
        for op in [Op::Read, Op::Write] {
            let mut per: Vec<Vec<Batch>> = controllers.iter().map(|_| Vec::new()).collect();
            let per_round = opts.requests.div_ceil(opts.rounds);
            for round in 0..opts.rounds {
                let order: Vec<usize> = if round % 2 == 0 {
                    (0..controllers.len()).collect()
                } else {
                    (0..controllers.len()).rev().collect()
                };
                for i in order {
                    let (_, c, target) = &mut controllers[i];
                    c.check_alive()?;
                    let cpu0 = c.usage()?.cpu_ms;
                    let mut b =
                        batch(target, op, mode, per_round, opts.concurrency, &ports).await?;
                    b.server_cpu_ms = c.usage()?.cpu_ms.saturating_sub(cpu0);
                    per[i].push(b);
                }
            }
            let summaries: Vec<ApiResult> = controllers
                .iter()
                .zip(per)
                .map(|((name, _, _), b)| summarize(connection, op, name, b))
                .collect();
            if let [p, t] = summaries.as_slice() {
                ratios.push(ApiRatio {
                    connection,
                    op: op.name(),
                    p50: t.p50_ms / p.p50_ms,
                    p99: t.p99_ms / p.p99_ms,
                });
            }
            results.extend(summaries);
        }
    }
    let usage = |name: &str| {
        controllers
            .iter()
            .find(|(n, _, _)| *n == name)
            .and_then(|(_, c, _)| c.usage().ok())
    };
    let report = ApiReport {
        memberships: cluster.membership_count(),
        networks: opts.cluster.networks,
        read_bytes,
        concurrency: opts.concurrency,
        rounds: opts.rounds,
        results,
        ratios,
        controller_plain: usage("plain"),
        controller_tls: usage("tls"),
    };
    for (_, c, _) in &mut controllers {
        c.stop();
    }
    Ok(report)
}

/// Copies the files of `from` (one level, what a controller's state directory holds).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
