//! What every benchmark needs: a controller process of its own (free ports, private state
//! directory, log file), a tiny HTTP client for its API, and the kernel's view of the
//! process's memory and CPU time.

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// API credentials given to benchmark controllers.
pub const USER: &str = "bench";
/// API password given to benchmark controllers.
pub const PASSWORD: &str = "bench-password";

/// A scratch directory removed on drop: `/tmp/l2sm-bench-<pid>-<tag>`.
#[derive(Debug)]
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// Creates a fresh directory (an old one of the same name is removed first).
    pub fn new(tag: &str) -> anyhow::Result<ScratchDir> {
        let path = std::env::temp_dir().join(format!("l2sm-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough on one host).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Where and how a benchmark controller runs.
#[derive(Debug, Clone)]
pub struct ControllerSpec {
    /// The `l2sm` binary.
    pub l2sm: PathBuf,
    /// OpenFlow listen address.
    pub openflow: SocketAddr,
    /// API listen address.
    pub api: SocketAddr,
    /// Persistent state directory.
    pub state_dir: PathBuf,
    /// Topology file, if any.
    pub topology: Option<PathBuf>,
    /// Log file (stdout and stderr of the controller).
    pub log: PathBuf,
}

impl ControllerSpec {
    /// A controller on fresh ports with its state and log in `dir`.
    pub fn new(l2sm: &Path, dir: &Path, topology: Option<PathBuf>) -> anyhow::Result<Self> {
        Ok(ControllerSpec {
            l2sm: l2sm.to_path_buf(),
            openflow: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            api: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            state_dir: dir.join("state"),
            topology,
            log: dir.join("controller.log"),
        })
    }

    /// Starts the controller; the returned handle kills it on drop.
    pub fn spawn(&self) -> anyhow::Result<Controller> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut cmd = Command::new(&self.l2sm);
        cmd.arg("controller")
            .arg("--openflow-listen")
            .arg(self.openflow.to_string())
            .arg("--api-listen")
            .arg(self.api.to_string())
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("L2SM_API_USER", USER)
            .env("L2SM_API_PASSWORD", PASSWORD)
            .env(
                "RUST_LOG",
                std::env::var("L2SM_BENCH_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(t) = &self.topology {
            cmd.arg("--topology").arg(t);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.l2sm.display()))?;
        Ok(Controller {
            child,
            spec: self.clone(),
        })
    }
}

/// A running controller process.
#[derive(Debug)]
pub struct Controller {
    child: Child,
    /// How it was started.
    pub spec: ControllerSpec,
}

impl Controller {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The API client for this controller.
    pub fn api(&self) -> Api {
        Api {
            addr: self.spec.api,
        }
    }

    /// Fails with the log's tail if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.spec.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "controller exited ({status}); log {}:\n{}",
                self.spec.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// Waits until both the API answers and the OpenFlow port accepts; returns when that was.
    pub async fn wait_serving(&mut self, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        let api = self.api();
        let (mut api_ok, mut of_ok) = (false, false);
        loop {
            if !of_ok {
                of_ok = tokio::net::TcpStream::connect(self.spec.openflow)
                    .await
                    .is_ok();
            }
            if !api_ok {
                api_ok = api
                    .request("GET", "/onos/ui", None)
                    .await
                    .is_ok_and(|r| r.0 == 200);
            }
            if api_ok && of_ok {
                return Ok(Instant::now());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("controller not serving after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Stops the controller with SIGTERM (SIGKILL after 5 s) and waits for it.
    pub fn stop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Memory and CPU of the process now.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        Usage::of(self.pid())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Memory and CPU time of a process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// Resident set size now, KiB (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set size, KiB (VmHWM).
    pub peak_rss_kib: u64,
    /// User + system CPU time, milliseconds.
    pub cpu_ms: u64,
}

impl Usage {
    /// Reads the usage of process `pid`.
    pub fn of(pid: u32) -> anyhow::Result<Usage> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("process {pid} is gone"))?;
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may contain spaces) start at ")".
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
        let ticks = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|&h| h > 0)
            .unwrap_or(100) as u64;
        Ok(Usage {
            rss_kib: kib("VmRSS:"),
            peak_rss_kib: kib("VmHWM:"),
            cpu_ms: (ticks(11) + ticks(12)) * 1000 / hz,
        })
    }
}

/// The controller's REST API, one request per connection.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    /// Address of the API.
    pub addr: SocketAddr,
}

impl Api {
    /// Sends a request with Basic auth; returns status and body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
            .await
            .map_err(|_| anyhow!("{method} {path}: no answer within 30 s"))??;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("{method} {path}: malformed HTTP answer"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("{method} {path}: no status in answer"))?;
        // Chunked bodies are not expected from axum for these small answers, but be safe.
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        Ok((status, body))
    }

    /// A request that must answer with one of `ok` statuses.
    pub async fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        ok: &[u16],
    ) -> anyhow::Result<String> {
        let (status, text) = self.request(method, path, body).await?;
        if !ok.contains(&status) {
            bail!("{method} {path} answered {status}: {}", text.trim());
        }
        Ok(text)
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Median of `values` (the lower middle for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

/// Milliseconds of a duration, as a float with microsecond precision.
pub fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}
