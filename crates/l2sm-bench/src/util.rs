//! What every benchmark needs: a controller process of its own (free ports, private state
//! directory, log file), a client of its API, and the kernel's view of the process's memory
//! and CPU time.

use anyhow::{anyhow, bail, Context as _};
use l2sm_api::{ControllerClient, RetryPolicy};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    /// Removes the directory, unless `L2SM_BENCH_KEEP` is set (to read the controllers' logs
    /// afterwards; the path is printed on stderr).
    fn drop(&mut self) {
        if std::env::var_os("L2SM_BENCH_KEEP").is_some() {
            eprintln!("l2sm-bench: kept {}", self.0.display());
            return;
        }
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
    /// OpenFlow over TLS with these files; `None`: plain TCP (`--insecure-openflow`).
    pub tls: Option<crate::tls::TlsFiles>,
    /// The API over TLS with these files (`--api-tls-cert/-key`; `ca` is what clients
    /// trust); `None`: plain HTTP.
    pub api_tls: Option<crate::tls::TlsFiles>,
    /// `--store` (`None`: the default, redb in the state directory).
    pub store: Option<String>,
    /// More arguments of `l2sm controller` (e.g. `--lldp-interval-ms`).
    pub extra_args: Vec<String>,
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
            tls: None,
            api_tls: None,
            store: None,
            extra_args: Vec::new(),
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
        if let Some(s) = &self.store {
            cmd.arg("--store").arg(s);
        }
        match &self.tls {
            Some(f) => {
                cmd.arg("--openflow-tls-cert")
                    .arg(&f.cert)
                    .arg("--openflow-tls-key")
                    .arg(&f.key)
                    .arg("--openflow-tls-ca")
                    .arg(&f.ca);
            }
            // Plain TCP: the baseline of the OpenFlow programming rate.
            None => {
                cmd.arg("--insecure-openflow");
            }
        }
        if let Some(f) = &self.api_tls {
            cmd.arg("--api-tls-cert")
                .arg(&f.cert)
                .arg("--api-tls-key")
                .arg(&f.key);
        }
        cmd.args(&self.extra_args);
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

    /// A client of this controller's API: one try per call with a 30 s deadline, so a
    /// benchmark sees every failure at once and makes exactly the requests it times.
    pub fn api(&self) -> anyhow::Result<ControllerClient> {
        let retry = RetryPolicy {
            timeout: Duration::from_secs(30),
            ..RetryPolicy::once()
        };
        let credentials = Some((USER.into(), PASSWORD.into()));
        match &self.spec.api_tls {
            None => ControllerClient::new(&format!("http://{}", self.spec.api), credentials, retry),
            Some(f) => ControllerClient::with_tls(
                &format!("https://{}", self.spec.api),
                credentials,
                retry,
                l2sm_api::TlsOptions {
                    ca_file: Some(f.ca.clone()),
                    ..Default::default()
                },
            ),
        }
        .context("controller API client")
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
        let api = self.api()?;
        let (mut api_ok, mut of_ok) = (false, false);
        loop {
            if !of_ok {
                of_ok = tokio::net::TcpStream::connect(self.spec.openflow)
                    .await
                    .is_ok();
            }
            if !api_ok {
                api_ok = api.ready().await.is_ok();
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

/// Median of `values` (the lower middle for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

/// The `q` quantile (0..=1) of `values`, nearest rank; NaN for none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Milliseconds of a duration, as a float with microsecond precision.
pub fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}
