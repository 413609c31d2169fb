//! `l2sm-bench store`: API write latency with the state in redb and in etcd, in the same run.
//!
//! A single-member etcd (the `etcd` binary, Debian's `etcd-server`) runs on loopback with its
//! data directory in the scratch directory; two controllers run side by side, one on
//! `--store redb` (the default), one on `--store etcd://…`. Each sample is one API write that
//! persists before answering: `POST /onos/vnets/api/port` adding one port to a network, then
//! `DELETE` of it, one at a time on a kept-alive client. Rounds alternate which backend goes
//! first, so the noise of a shared machine falls on both alike.

use crate::util::{ms, quantile, ControllerSpec, ScratchDir};
use anyhow::{bail, Context as _};
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options of the store benchmark.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The `l2sm` binary.
    pub l2sm: PathBuf,
    /// The `etcd` binary.
    pub etcd: PathBuf,
    /// Write samples per backend.
    pub requests: usize,
    /// Rounds the samples are split into (alternating which backend goes first).
    pub rounds: usize,
}

/// Latency of one backend.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    /// Samples.
    pub samples: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// What `l2sm-bench store` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreReport {
    /// `--store redb`.
    pub redb: Latency,
    /// `--store etcd://…`.
    pub etcd: Latency,
    /// etcd p50 / redb p50.
    pub ratio_p50: f64,
    /// etcd p99 / redb p99.
    pub ratio_p99: f64,
    /// `etcd --version`, first line.
    pub etcd_version: String,
}

/// A running etcd, killed on drop.
struct Etcd {
    child: Child,
    port: u16,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd_healthy(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}

fn start_etcd(binary: &PathBuf, dir: &std::path::Path) -> anyhow::Result<Etcd> {
    let (client, peer) = (crate::util::free_port()?, crate::util::free_port()?);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.join("etcd.log"))?;
    let child = Command::new(binary)
        .args(["--name", "bench"])
        .arg("--data-dir")
        .arg(dir.join("etcd-data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("bench={peer_url}")])
        .args(["--logger", "zap", "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (Debian: etcd-server; give --etcd)",
                binary.display()
            )
        })?;
    let mut etcd = Etcd {
        child,
        port: client,
    };
    let start = Instant::now();
    while !etcd_healthy(etcd.port) {
        if let Some(status) = etcd.child.try_wait()? {
            bail!(
                "etcd exited ({status}); see {}",
                dir.join("etcd.log").display()
            );
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("etcd not healthy within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(etcd)
}

fn latency(samples: &[f64]) -> Latency {
    Latency {
        samples: samples.len(),
        p50_ms: quantile(samples, 0.5),
        p99_ms: quantile(samples, 0.99),
        max_ms: samples.iter().copied().fold(0.0, f64::max),
    }
}

/// Runs the benchmark.
pub async fn run(o: &StoreOptions) -> anyhow::Result<StoreReport> {
    let version = Command::new(&o.etcd)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} (Debian: etcd-server)", o.etcd.display()))?;
    let etcd_version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let scratch = ScratchDir::new("store")?;
    let etcd = start_etcd(&o.etcd, scratch.0.as_path())?;
    let mut specs = Vec::new();
    for (name, store) in [
        ("redb", None),
        (
            "etcd",
            Some(format!("etcd://127.0.0.1:{}/bench/", etcd.port)),
        ),
    ] {
        let dir = scratch.0.as_path().join(name);
        std::fs::create_dir_all(&dir)?;
        let mut spec = ControllerSpec::new(&o.l2sm, &dir, None)?;
        spec.store = store;
        specs.push(spec);
    }
    let mut controllers = Vec::new();
    for spec in &specs {
        let mut c = spec.spawn()?;
        c.wait_serving(Duration::from_secs(20)).await?;
        controllers.push(c);
    }
    let clients = controllers
        .iter()
        .map(|c| c.api())
        .collect::<anyhow::Result<Vec<_>>>()?;
    for c in &clients {
        c.create_vnet("bench").await?;
    }
    let mut samples = [Vec::new(), Vec::new()];
    let rounds = o.rounds.max(1);
    let per_round = o.requests.div_ceil(2 * rounds).max(1);
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for b in order {
            for i in 0..per_round {
                let port = format!("of:00000000000000aa/{}", i + 1);
                let t = Instant::now();
                clients[b].add_port("bench", &port).await?;
                samples[b].push(ms(t.elapsed()));
                let t = Instant::now();
                clients[b].remove_port("bench", &port).await?;
                samples[b].push(ms(t.elapsed()));
            }
        }
    }
    for c in &mut controllers {
        c.check_alive()?;
        c.stop();
    }
    drop(etcd);
    let (redb, etcd) = (latency(&samples[0]), latency(&samples[1]));
    Ok(StoreReport {
        ratio_p50: etcd.p50_ms / redb.p50_ms,
        ratio_p99: etcd.p99_ms / redb.p99_ms,
        redb,
        etcd,
        etcd_version,
    })
}
