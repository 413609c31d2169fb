//! `l2sm-bench controller`: N synthetic switches × M networks, convergence after controller
//! start, controller memory and CPU.
//!
//! 1. A setup controller is fed the cluster (networks and memberships through the upstream
//!    API, one port per request as agents report them), then stopped: its state is persisted.
//! 2. The synthetic switches start dialling; the controller is spawned again (t = 0) with the
//!    same state and topology. Convergence is the moment the last switch's table first holds
//!    its complete expected pipeline (checked at each barrier).
//! 3. After a settle period: messages sent after convergence (churn), RSS, peak RSS, CPU.

use crate::scenario::{Cluster, ClusterSpec};
use crate::synth::{run_switch, Counters, SimSwitch, Wiring};
use crate::util::{ms, ControllerSpec, ScratchDir, Usage};
use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of the synthetic-switch benchmark.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Cluster to emulate.
    pub cluster: ClusterSpec,
    /// The `l2sm` binary.
    pub l2sm: PathBuf,
    /// Memberships per API request while feeding (1 = as agents do).
    pub batch: usize,
    /// API requests in flight while feeding.
    pub concurrency: usize,
    /// Give up waiting for convergence after this long.
    pub timeout: Duration,
    /// Time to keep watching after convergence (messages sent then are churn).
    pub settle: Duration,
    /// Also restart the controller once converged and time the reconvergence.
    pub restart: bool,
    /// OpenFlow over TLS (every synthetic switch with its own certificate) instead of plain
    /// TCP.
    pub tls: bool,
}

/// Result of the synthetic-switch benchmark (the JSON is documented in
/// docs/benchmarks-controller.md).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SynthReport {
    /// OpenFlow transport: `tcp` or `tls`.
    pub openflow: &'static str,
    /// Cluster parameters.
    pub cluster: ClusterSpec,
    /// Inter-switch tunnels.
    pub links: usize,
    /// Member ports in all.
    pub memberships: usize,
    /// Memberships per API request while feeding.
    pub feed_batch: usize,
    /// Time to create the networks and report every membership, ms.
    pub feed_ms: f64,
    /// Add-ports requests while feeding.
    pub feed_requests: usize,
    /// Median latency of one add-ports request, ms, over the last tenth of the feed (the
    /// controller holding nearly the whole state).
    pub feed_p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub feed_p99_ms: f64,
    /// Flows all switches must hold in all.
    pub expected_flows: usize,
    /// Groups all switches must hold in all.
    pub expected_groups: usize,
    /// Controller start.
    pub start: StartReport,
    /// Controller restart with every switch already programmed, if asked.
    pub restart: Option<StartReport>,
}

/// One controller start with N switches dialling.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StartReport {
    /// Switches whose table reached the expected state.
    pub converged_switches: usize,
    /// Whether every switch converged before the timeout.
    pub converged: bool,
    /// Controller spawn -> API and OpenFlow port serving, ms.
    pub serving_ms: f64,
    /// Controller spawn -> half of the switches converged, ms.
    pub p50_switch_ms: f64,
    /// Controller spawn -> every switch converged (the convergence time), ms.
    pub convergence_ms: f64,
    /// FLOW_MODs received by the switches up to the end of the settle period.
    pub flow_mods: u64,
    /// GROUP_MODs received likewise.
    pub group_mods: u64,
    /// Learned-MAC flushes received up to the end of the settle period (trees that changed
    /// while switches joined).
    pub learned_flushes: u64,
    /// FLOW_MODs (flushes included) + GROUP_MODs received after every switch had converged
    /// (churn; ideally 0).
    pub mods_after_convergence: u64,
    /// Controller memory and CPU at the end of the settle period.
    pub controller: Usage,
    /// CPU time of the benchmark process (the synthetic switches, their TLS included) from
    /// the controller's spawn to the end of the settle period, ms: on a small machine the
    /// switches compete with the controller for the same cores.
    pub switches_cpu_ms: u64,
}

/// Runs the benchmark.
pub async fn run(opts: &SynthOptions) -> anyhow::Result<SynthReport> {
    let cluster = Cluster::generate(&opts.cluster)?;
    let dir = ScratchDir::new("synth")?;
    let topo_path = dir.0.join("topology.json");
    std::fs::write(&topo_path, cluster.topology_file().to_json())?;
    let mut spec = ControllerSpec::new(&opts.l2sm, &dir.0, Some(topo_path))?;
    let pki = match opts.tls {
        true => Some(crate::tls::BenchPki::new(&dir.0)?),
        false => None,
    };
    spec.tls = pki.as_ref().map(|p| p.files.clone());

    // 1. Feed a setup controller, then stop it: the state is on disk.
    let mut setup = spec.spawn()?;
    setup.wait_serving(Duration::from_secs(10)).await?;
    let t = Instant::now();
    let (nets, latencies) = cluster
        .feed_timed(setup.api()?, opts.batch, opts.concurrency)
        .await
        .context("feeding networks and memberships")?;
    let feed_ms = ms(t.elapsed());
    // The last tenth of the requests: the controller then holds (nearly) the whole state, so
    // this is the cost of one change at this size (the whole feed mixes in every smaller one).
    let tail = &latencies[latencies.len() - latencies.len() / 10..];
    setup.stop();
    drop(setup);
    let expected = cluster.expected(&nets);

    // 2. Switches dial; the controller starts.
    let n = cluster.switches.len();
    let counters = Arc::new(Counters::default());
    let wiring = Arc::new(Wiring::new(n, &cluster.links));
    let stop = Arc::new(AtomicBool::new(false));
    let converged_at = Arc::new(Mutex::new(vec![None; n]));
    let mut tasks = Vec::new();
    for (i, (sw, exp)) in cluster.switches.iter().zip(&expected).enumerate() {
        let sim = SimSwitch {
            index: i,
            dpid: sw.dpid,
            ports: sw.ports.clone(),
            expected: Arc::new(exp.clone()),
        };
        let tls = match &pki {
            Some(p) => Some(p.client(&sw.node)?),
            None => None,
        };
        tasks.push(tokio::spawn(run_switch(
            sim,
            spec.openflow,
            tls,
            counters.clone(),
            wiring.clone(),
            stop.clone(),
            converged_at.clone(),
        )));
    }
    let mut controller = spec.spawn()?;
    let start = measure_start(opts, &mut controller, &counters, &converged_at, n).await;
    let start = match start {
        Ok(s) => s,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
    };

    // 3. Optional hitless restart: the switches keep their tables and reconnect.
    let restart = if opts.restart && start.converged {
        controller.stop();
        drop(controller);
        counters.converged.store(0, Ordering::Relaxed);
        converged_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
            .for_each(|s| *s = None);
        let mut again = spec.spawn()?;
        let r = measure_restart(opts, &mut again, &counters, n).await;
        controller = again;
        Some(r?)
    } else {
        None
    };
    stop.store(true, Ordering::Relaxed);
    controller.stop();
    for t in tasks {
        let _ = t.await;
    }
    Ok(SynthReport {
        openflow: if opts.tls { "tls" } else { "tcp" },
        cluster: opts.cluster.clone(),
        links: cluster.links.len(),
        memberships: cluster.membership_count(),
        feed_batch: opts.batch,
        feed_ms,
        feed_requests: latencies.len(),
        feed_p50_ms: crate::util::quantile(tail, 0.5),
        feed_p99_ms: crate::util::quantile(tail, 0.99),
        expected_flows: expected.iter().map(|p| p.flows.len()).sum(),
        expected_groups: expected.iter().map(|p| p.groups.len()).sum(),
        start,
        restart,
    })
}

async fn measure_start(
    opts: &SynthOptions,
    controller: &mut crate::util::Controller,
    counters: &Counters,
    converged_at: &Mutex<Vec<Option<Instant>>>,
    n: usize,
) -> anyhow::Result<StartReport> {
    let t0 = Instant::now();
    let own0 = Usage::of(std::process::id())?.cpu_ms;
    let serving = controller.wait_serving(Duration::from_secs(10)).await?;
    let deadline = t0 + opts.timeout;
    while (counters.converged.load(Ordering::Relaxed) as usize) < n && Instant::now() < deadline {
        controller.check_alive()?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mods = || {
        counters.flow_mods.load(Ordering::Relaxed)
            + counters.group_mods.load(Ordering::Relaxed)
            + counters.meter_mods.load(Ordering::Relaxed)
            + counters.learned_flushes.load(Ordering::Relaxed)
    };
    let mods_at_convergence = mods();
    tokio::time::sleep(opts.settle).await;
    let usage = controller.usage()?;
    // Diagnostics: keep the controller up a while to look at it (gdb, /proc/PID/smaps).
    if let Some(secs) = std::env::var("L2SM_BENCH_HOLD_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        eprintln!(
            "l2sm-bench: holding controller pid {} for {secs} s",
            controller.pid()
        );
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    let times: Vec<f64> = converged_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .flatten()
        .map(|t| ms(t.duration_since(t0)))
        .collect();
    let converged_switches = times.len();
    Ok(StartReport {
        converged_switches,
        converged: converged_switches == n,
        serving_ms: ms(serving.duration_since(t0)),
        p50_switch_ms: crate::util::median(&times),
        convergence_ms: if converged_switches == n {
            times.iter().copied().fold(0.0, f64::max)
        } else {
            f64::NAN
        },
        flow_mods: counters.flow_mods.load(Ordering::Relaxed),
        group_mods: counters.group_mods.load(Ordering::Relaxed),
        learned_flushes: counters.learned_flushes.load(Ordering::Relaxed),
        mods_after_convergence: mods() - mods_at_convergence,
        controller: usage,
        switches_cpu_ms: Usage::of(std::process::id())?.cpu_ms.saturating_sub(own0),
    })
}

/// Restart with programmed switches: convergence is every switch reconnected, its state read
/// by the controller and (no) difference sent, i.e. all switches listed by the API with the
/// expected flow counts.
async fn measure_restart(
    opts: &SynthOptions,
    controller: &mut crate::util::Controller,
    counters: &Counters,
    n: usize,
) -> anyhow::Result<StartReport> {
    let flow0 = counters.flow_mods.load(Ordering::Relaxed);
    let group0 = counters.group_mods.load(Ordering::Relaxed);
    let flush0 = counters.learned_flushes.load(Ordering::Relaxed);
    let meter0 = counters.meter_mods.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let own0 = Usage::of(std::process::id())?.cpu_ms;
    let serving = controller.wait_serving(Duration::from_secs(10)).await?;
    let api = controller.api()?;
    let deadline = t0 + opts.timeout;
    let mut done_at = None;
    while Instant::now() < deadline {
        controller.check_alive()?;
        match api.switches().await {
            Ok(list) if list.len() >= n => {
                done_at = Some(Instant::now());
                break;
            }
            Ok(_) => {}
            // No answer at all fails the run; an error answer is asked again.
            Err(e @ l2sm_api::ClientError::Unreachable { .. }) => return Err(e.into()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(opts.settle).await;
    let usage = controller.usage()?;
    let flow_mods = counters.flow_mods.load(Ordering::Relaxed) - flow0;
    let group_mods = counters.group_mods.load(Ordering::Relaxed) - group0;
    let learned_flushes = counters.learned_flushes.load(Ordering::Relaxed) - flush0;
    let meter_mods = counters.meter_mods.load(Ordering::Relaxed) - meter0;
    let convergence = done_at.map(|t| ms(t.duration_since(t0)));
    Ok(StartReport {
        converged_switches: if done_at.is_some() { n } else { 0 },
        converged: done_at.is_some(),
        serving_ms: ms(serving.duration_since(t0)),
        p50_switch_ms: f64::NAN,
        convergence_ms: convergence.unwrap_or(f64::NAN),
        flow_mods,
        group_mods,
        learned_flushes,
        // A restart with unchanged trees flushes nothing: any flush (or meter change) here
        // is churn.
        mods_after_convergence: flow_mods + group_mods + meter_mods + learned_flushes,
        controller: usage,
        switches_cpu_ms: Usage::of(std::process::id())?.cpu_ms.saturating_sub(own0),
    })
}
