//! `l2sm-bench monitoring`: what link monitoring costs the controller (issue #19): N synthetic
//! switches with their tunnels in the controller's topology, measured twice on a fresh
//! controller each time:
//!
//! - **on**: LLDP probes on every link port each second (`--lldp-interval-ms 1000`, the
//!   default), an echo per switch per interval, port statistics every 5 s (the default): the
//!   link health of docs/monitoring.md;
//! - **off**: the same switches and links with probes every 60 s (`--lldp-interval-ms 60000`,
//!   the largest the controller takes) and statistics every 600 s: the cost of the
//!   connections alone.
//!
//! Each run waits until every switch is connected (and, when on, every link is probed both
//! ways), lets it settle, then reads the controller's CPU time (`/proc/<pid>/stat`) and the
//! OpenFlow bytes the synthetic switches received from it and sent to it over the window.

use crate::scenario::{Cluster, ClusterSpec};
use crate::synth::{run_switch, Counters, SimSwitch, Wiring};
use crate::util::{ms, ControllerSpec, ScratchDir, Usage};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of the monitoring benchmark.
#[derive(Debug, Clone)]
pub struct MonitoringOptions {
    /// The `l2sm` binary.
    pub l2sm: PathBuf,
    /// Switches and tunnel graph (networks play no part: none is created).
    pub cluster: ClusterSpec,
    /// Measurement window.
    pub window: Duration,
    /// Time between "everything up" and the window.
    pub settle: Duration,
    /// Give up waiting for the switches and links after this long.
    pub timeout: Duration,
}

/// One run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModeReport {
    /// `--lldp-interval-ms` of the run.
    pub lldp_interval_ms: u64,
    /// `--limit-stats-interval-ms` of the run.
    pub stats_interval_ms: u64,
    /// Switches connected when the window started.
    pub switches: usize,
    /// Links probed both ways when the window started.
    pub links_probed: usize,
    /// Window length, ms.
    pub window_ms: f64,
    /// Controller CPU time in the window, ms.
    pub cpu_ms: u64,
    /// Controller CPU, percent of one core.
    pub cpu_percent: f64,
    /// OpenFlow bytes per second from the switches to the controller.
    pub read_bytes_per_s: f64,
    /// OpenFlow bytes per second from the controller to the switches.
    pub written_bytes_per_s: f64,
    /// Resident memory at the end, KiB.
    pub rss_kib: u64,
}

/// Both runs and the difference.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MonitoringReport {
    /// Cluster parameters.
    pub cluster: ClusterSpec,
    /// Inter-switch links.
    pub links: usize,
    /// Probes each second.
    pub on: ModeReport,
    /// Probes each minute.
    pub off: ModeReport,
    /// CPU of monitoring: on − off, percent of one core.
    pub monitoring_cpu_percent: f64,
    /// Control-channel bytes of monitoring per link per second (read + written, on − off).
    pub bytes_per_link_per_s: f64,
    /// CPU of monitoring per link, microseconds of CPU per second.
    pub cpu_us_per_link_per_s: f64,
}

/// Runs both modes.
pub async fn run(opts: &MonitoringOptions) -> anyhow::Result<MonitoringReport> {
    let cluster = Cluster::generate(&opts.cluster)?;
    let on = run_mode(opts, &cluster, 1000, 5000).await?;
    let off = run_mode(opts, &cluster, 60_000, 600_000).await?;
    let links = cluster.links.len();
    let bytes = |m: &ModeReport| m.read_bytes_per_s + m.written_bytes_per_s;
    let cpu = on.cpu_percent - off.cpu_percent;
    Ok(MonitoringReport {
        cluster: opts.cluster.clone(),
        links,
        monitoring_cpu_percent: cpu,
        bytes_per_link_per_s: (bytes(&on) - bytes(&off)) / links.max(1) as f64,
        cpu_us_per_link_per_s: cpu / 100.0 * 1e6 / links.max(1) as f64,
        on,
        off,
    })
}

async fn run_mode(
    opts: &MonitoringOptions,
    cluster: &Cluster,
    lldp_ms: u64,
    stats_ms: u64,
) -> anyhow::Result<ModeReport> {
    let dir = ScratchDir::new("monitoring")?;
    let topo_path = dir.0.join("topology.json");
    std::fs::write(&topo_path, cluster.topology_file().to_json())?;
    let mut spec = ControllerSpec::new(&opts.l2sm, &dir.0, Some(topo_path))?;
    spec.extra_args = vec![
        "--lldp-interval-ms".into(),
        lldp_ms.to_string(),
        "--limit-stats-interval-ms".into(),
        stats_ms.to_string(),
    ];
    let expected = cluster.expected(&[]);
    let n = cluster.switches.len();
    let counters = Arc::new(Counters::default());
    let wiring = Arc::new(Wiring::new(n, &cluster.links));
    let stop = Arc::new(AtomicBool::new(false));
    let converged_at = Arc::new(Mutex::new(vec![None; n]));
    let mut controller = spec.spawn()?;
    controller.wait_serving(Duration::from_secs(10)).await?;
    let mut tasks = Vec::new();
    for (i, (sw, exp)) in cluster.switches.iter().zip(&expected).enumerate() {
        let sim = SimSwitch {
            index: i,
            dpid: sw.dpid,
            ports: sw.ports.clone(),
            expected: Arc::new(exp.clone()),
        };
        tasks.push(tokio::spawn(run_switch(
            sim,
            spec.openflow,
            None,
            counters.clone(),
            wiring.clone(),
            stop.clone(),
            converged_at.clone(),
        )));
    }
    let result = async {
        let api = controller.api()?;
        let deadline = Instant::now() + opts.timeout;
        let want_links = if lldp_ms <= 1000 { cluster.links.len() } else { 0 };
        let (mut switches, mut probed) = (0, 0);
        while Instant::now() < deadline {
            controller.check_alive()?;
            switches = api.switches().await.map(|l| l.len()).unwrap_or(0);
            if switches >= n {
                probed = api
                    .links()
                    .await
                    .map(|l| l.iter().filter(|l| l.live && l.probed).count())
                    .unwrap_or(0);
                if probed >= want_links {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if switches < n || probed < want_links {
            anyhow::bail!(
                "after {:?}: {switches} of {n} switches connected, {probed} of {want_links} links probed",
                opts.timeout
            );
        }
        tokio::time::sleep(opts.settle).await;
        let pid = controller.pid();
        let bytes = || {
            (
                counters.bytes_to_controller.load(Ordering::Relaxed),
                counters.bytes_from_controller.load(Ordering::Relaxed),
            )
        };
        let (u0, io0, t0) = (Usage::of(pid)?, bytes(), Instant::now());
        tokio::time::sleep(opts.window).await;
        let (u1, io1, t1) = (Usage::of(pid)?, bytes(), Instant::now());
        let secs = t1.duration_since(t0).as_secs_f64();
        let cpu_ms = u1.cpu_ms.saturating_sub(u0.cpu_ms);
        Ok(ModeReport {
            lldp_interval_ms: lldp_ms,
            stats_interval_ms: stats_ms,
            switches,
            links_probed: probed,
            window_ms: ms(t1.duration_since(t0)),
            cpu_ms,
            cpu_percent: cpu_ms as f64 / (secs * 1000.0) * 100.0,
            read_bytes_per_s: io1.0.saturating_sub(io0.0) as f64 / secs,
            written_bytes_per_s: io1.1.saturating_sub(io0.1) as f64 / secs,
            rss_kib: u1.rss_kib,
        })
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    controller.stop();
    for t in tasks {
        let _ = t.await;
    }
    result
}

/// Prints the report as text.
pub fn print(r: &MonitoringReport) {
    println!(
        "monitoring: {} synthetic switches, {} links ({:?})",
        r.cluster.switches, r.links, r.cluster.shape
    );
    for m in [&r.on, &r.off] {
        println!(
            "  probes every {:>6} ms, stats every {:>6} ms: CPU {:.2} % of a core ({} ms in {:.1} s), read {:.0} B/s, written {:.0} B/s, RSS {} KiB, {} links probed",
            m.lldp_interval_ms,
            m.stats_interval_ms,
            m.cpu_percent,
            m.cpu_ms,
            m.window_ms / 1000.0,
            m.read_bytes_per_s,
            m.written_bytes_per_s,
            m.rss_kib,
            m.links_probed
        );
    }
    println!(
        "  monitoring at 1 s: {:.2} % of a core ({:.1} us of CPU per link per second), {:.0} bytes per link per second on the control channels",
        r.monitoring_cpu_percent, r.cpu_us_per_link_per_s, r.bytes_per_link_per_s
    );
}
