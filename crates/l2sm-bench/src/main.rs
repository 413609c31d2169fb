//! `l2sm-bench`: reproducible benchmarks of the L2S-M controller. Human-readable tables by
//! default, one JSON document with `--json` (fields in docs/benchmarks-controller.md).

use clap::{Parser, Subcommand};
use l2sm_bench::scenario::{ClusterSpec, Shape};
use l2sm_bench::{api, cold, convergence, real, store};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "l2sm-bench", about = "Benchmarks of the L2S-M controller")]
struct Cli {
    /// The `l2sm` binary to benchmark (default: `l2sm` next to this program).
    #[arg(long, global = true)]
    l2sm: Option<PathBuf>,
    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N synthetic OpenFlow switches x M networks: convergence after controller start, RSS, CPU.
    Controller {
        #[arg(long, default_value_t = 1000)]
        switches: usize,
        #[arg(long, default_value_t = 10)]
        networks: usize,
        /// Pod ports per switch.
        #[arg(long, default_value_t = 4)]
        ports: u32,
        /// Tunnel graph.
        #[arg(long, value_enum, default_value_t = Shape::Sparse)]
        shape: Shape,
        /// Memberships per API request while feeding (1 = one per port, as agents report).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// API requests in flight while feeding.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds to wait for convergence.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Also restart the controller once converged and time the reconnection.
        #[arg(long)]
        restart: bool,
        /// OpenFlow transport of the synthetic switches: plain TCP, TLS with a certificate
        /// per switch, or both one after the other (same cluster) with the TLS/TCP ratio.
        #[arg(long, value_enum, default_value_t = Transport::Both)]
        openflow: Transport,
    },
    /// One ovs-vswitchd with N bridges connected to the controller: convergence, RSS, CPU.
    Ovs {
        #[arg(long, default_value_t = 100)]
        bridges: usize,
        #[arg(long, default_value_t = 10)]
        networks: usize,
        /// Pod ports per bridge.
        #[arg(long, default_value_t = 4)]
        ports: u32,
        /// Seconds to wait for convergence.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// K flows into one real OVS bridge: our controller vs `ovs-ofctl add-flows` from a file.
    FlowRate {
        #[arg(long, default_value_t = 30000)]
        flows: usize,
    },
    /// API write latency with the state in redb vs in etcd (a local single-member etcd), in
    /// the same run: p50/p99 and their ratio.
    Store {
        /// Write samples per backend.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// Rounds the samples are split into; the backends alternate going first.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// The etcd binary.
        #[arg(long, default_value = "etcd")]
        etcd: PathBuf,
    },
    /// REST latency, plain HTTP vs TLS in the same run: p50/p99 of a read and a write,
    /// kept-alive connections and a new connection per request.
    Api {
        /// Samples per operation, connection mode and transport.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Clients in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Rounds the samples are split into; plain and TLS alternate between rounds.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Switches in the served state (4 member ports each).
        #[arg(long, default_value_t = 100)]
        switches: usize,
        #[arg(long, default_value_t = 10)]
        networks: usize,
        /// Transport of the API: plain HTTP, TLS, or both (same run, with the ratio).
        #[arg(long, value_enum, default_value_t = ApiTransport::Both)]
        tls: ApiTransport,
    },
    /// What link monitoring costs the controller: N synthetic switches, LLDP probes each
    /// second vs each minute: CPU and control-channel bytes per link.
    Monitoring {
        #[arg(long, default_value_t = 1000)]
        switches: usize,
        /// Tunnel graph.
        #[arg(long, value_enum, default_value_t = Shape::Sparse)]
        shape: Shape,
        /// Seconds measured per run.
        #[arg(long, default_value_t = 30)]
        window: u64,
        /// Seconds to wait for the switches and links.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Everything with the default sizes, one report (what BENCHMARKS.md is generated from).
    All,
    /// Controller spawn -> serving (API and OpenFlow), empty and loaded state.
    ColdStart {
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Switches in the loaded state (4 member ports each).
        #[arg(long, default_value_t = 1000)]
        switches: usize,
        #[arg(long, default_value_t = 10)]
        networks: usize,
    },
}

fn default_l2sm() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("l2sm")))
        .unwrap_or_else(|| PathBuf::from("l2sm"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let l2sm = cli.l2sm.clone().unwrap_or_else(default_l2sm);
    if !l2sm.exists() {
        anyhow::bail!("no l2sm binary at {} (give --l2sm)", l2sm.display());
    }
    match cli.command {
        Command::Controller {
            switches,
            networks,
            ports,
            shape,
            batch,
            concurrency,
            timeout,
            restart,
            openflow,
        } => {
            let opts = |tls| {
                synth_options(
                    &l2sm,
                    switches,
                    networks,
                    ports,
                    shape,
                    batch,
                    concurrency,
                    timeout,
                    restart,
                    tls,
                )
            };
            let plain = match openflow {
                Transport::Tcp | Transport::Both => Some(convergence::run(&opts(false)).await?),
                Transport::Tls => None,
            };
            let tls = match openflow {
                Transport::Tls | Transport::Both => Some(convergence::run(&opts(true)).await?),
                Transport::Tcp => None,
            };
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "controller": plain,
                        "controller_tls": tls,
                    }))?
                );
            } else {
                for r in plain.iter().chain(&tls) {
                    print_synth(r);
                }
                if let (Some(p), Some(t)) = (&plain, &tls) {
                    print_tls_ratio(p, t);
                }
            }
        }
        Command::Monitoring {
            switches,
            shape,
            window,
            timeout,
        } => {
            let r = l2sm_bench::monitoring::run(&l2sm_bench::monitoring::MonitoringOptions {
                l2sm: l2sm.clone(),
                cluster: ClusterSpec {
                    switches,
                    networks: 1,
                    ports_per_switch: 1,
                    shape,
                    trunks: false,
                },
                window: Duration::from_secs(window),
                settle: Duration::from_secs(5),
                timeout: Duration::from_secs(timeout),
            })
            .await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"monitoring": r}))?
                );
            } else {
                l2sm_bench::monitoring::print(&r);
            }
        }
        Command::Ovs {
            bridges,
            networks,
            ports,
            timeout,
        } => {
            let r = real::bridges(
                &l2sm,
                &ovs_spec(bridges, networks, ports),
                Duration::from_secs(timeout),
            )
            .await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"ovs": r}))?
                );
            } else {
                print_ovs(&r);
            }
        }
        Command::FlowRate { flows } => {
            let r = real::flow_rate(&l2sm, flows).await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"flow_rate": r}))?
                );
            } else {
                print_rate(&r);
            }
        }
        Command::All => {
            let synth = convergence::run(&synth_options(
                &l2sm,
                1000,
                10,
                4,
                Shape::Sparse,
                1,
                8,
                60,
                true,
                false,
            ))
            .await?;
            let synth_tls = convergence::run(&synth_options(
                &l2sm,
                1000,
                10,
                4,
                Shape::Sparse,
                1,
                8,
                60,
                false,
                true,
            ))
            .await?;
            let ovs = real::bridges(&l2sm, &ovs_spec(100, 10, 4), Duration::from_secs(60)).await?;
            let rate = real::flow_rate(&l2sm, 30000).await?;
            let cold = cold::run(&l2sm, 10, 1000, 10).await?;
            let api = api::run(&api::ApiOptions {
                l2sm: l2sm.clone(),
                requests: 2000,
                concurrency: 4,
                rounds: 10,
                cluster: ClusterSpec {
                    switches: 100,
                    networks: 10,
                    ports_per_switch: 4,
                    shape: Shape::Sparse,
                    trunks: false,
                },
                plain: true,
                tls: true,
            })
            .await?;
            if cli.json {
                let doc = serde_json::json!({
                    "schema": 1,
                    "controller": synth,
                    "controller_tls": synth_tls,
                    "ovs": ovs,
                    "flow_rate": rate,
                    "cold_start": cold,
                    "api": api,
                    "host": host(),
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print_synth(&synth);
                print_synth(&synth_tls);
                print_tls_ratio(&synth, &synth_tls);
                println!();
                print_ovs(&ovs);
                println!();
                print_rate(&rate);
                println!();
                print_cold(&cold);
                println!();
                print_api(&api);
            }
        }
        Command::Api {
            requests,
            concurrency,
            rounds,
            switches,
            networks,
            tls,
        } => {
            let r = api::run(&api::ApiOptions {
                l2sm: l2sm.clone(),
                requests,
                concurrency,
                rounds,
                cluster: ClusterSpec {
                    switches,
                    networks,
                    ports_per_switch: 4,
                    shape: Shape::Sparse,
                    trunks: false,
                },
                plain: matches!(tls, ApiTransport::Plain | ApiTransport::Both),
                tls: matches!(tls, ApiTransport::Tls | ApiTransport::Both),
            })
            .await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"api": r}))?
                );
            } else {
                print_api(&r);
            }
        }
        Command::Store {
            requests,
            rounds,
            etcd,
        } => {
            let r = store::run(&store::StoreOptions {
                l2sm: l2sm.clone(),
                etcd,
                requests,
                rounds,
            })
            .await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"store": r}))?
                );
            } else {
                println!(
                    "API write latency (port add/remove, one at a time), {}",
                    r.etcd_version
                );
                println!("store  samples  p50 ms  p99 ms  max ms");
                for (name, l) in [("redb", &r.redb), ("etcd", &r.etcd)] {
                    println!(
                        "{name:<6} {:>7}  {:>6.2}  {:>6.2}  {:>6.2}",
                        l.samples, l.p50_ms, l.p99_ms, l.max_ms
                    );
                }
                println!(
                    "etcd/redb: p50 x{:.2}, p99 x{:.2}",
                    r.ratio_p50, r.ratio_p99
                );
            }
        }
        Command::ColdStart {
            runs,
            switches,
            networks,
        } => {
            let r = cold::run(&l2sm, runs, switches, networks).await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"cold_start": r}))?
                );
            } else {
                print_cold(&r);
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn synth_options(
    l2sm: &std::path::Path,
    switches: usize,
    networks: usize,
    ports: u32,
    shape: Shape,
    batch: usize,
    concurrency: usize,
    timeout: u64,
    restart: bool,
    tls: bool,
) -> convergence::SynthOptions {
    convergence::SynthOptions {
        cluster: ClusterSpec {
            switches,
            networks,
            ports_per_switch: ports,
            shape,
            trunks: false,
        },
        l2sm: l2sm.to_path_buf(),
        batch,
        concurrency,
        timeout: Duration::from_secs(timeout),
        settle: Duration::from_secs(2),
        restart,
        tls,
    }
}

/// OpenFlow transport of the synthetic switches.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Transport {
    /// Plain TCP (`--insecure-openflow`).
    Tcp,
    /// TLS, a certificate per switch.
    Tls,
    /// Both, in this order.
    Both,
}

/// Transport of the API.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ApiTransport {
    /// Plain HTTP.
    Plain,
    /// HTTPS (a certificate made for the run; clients authenticate with Basic credentials).
    Tls,
    /// Both, the same run, alternating.
    Both,
}

/// OpenFlow programming rate over TLS next to plain TCP: messages the switches received up to
/// convergence over the convergence time.
fn print_tls_ratio(plain: &convergence::SynthReport, tls: &convergence::SynthReport) {
    let rate = |r: &convergence::SynthReport| {
        (r.start.flow_mods + r.start.group_mods) as f64 / (r.start.convergence_ms / 1000.0)
    };
    let (p, t) = (rate(plain), rate(tls));
    println!(
        "  OpenFlow programming rate: tcp {p:.0} msg/s, tls {t:.0} msg/s, tls/tcp {:.2}; convergence tcp {:.0} ms, tls {:.0} ms",
        t / p,
        plain.start.convergence_ms,
        tls.start.convergence_ms
    );
}

fn ovs_spec(bridges: usize, networks: usize, ports: u32) -> ClusterSpec {
    ClusterSpec {
        switches: bridges,
        networks,
        ports_per_switch: ports,
        shape: Shape::Sparse,
        trunks: true,
    }
}

/// What the numbers were measured on.
fn host() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let ovs = std::process::Command::new("ovs-vswitchd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    serde_json::json!({"cpu": cpu, "cores": cores, "ovs": ovs})
}

fn print_api(r: &api::ApiReport) {
    println!(
        "REST latency: {} networks, {} member ports (read answer {} bytes); {} clients, {} rounds alternating plain and TLS",
        r.networks, r.memberships, r.read_bytes, r.concurrency, r.rounds
    );
    println!(
        "  {:<10} {:<6} {:<6} {:>7} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "connection",
        "op",
        "api",
        "samples",
        "conns",
        "resumed",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "req/s",
        "server us"
    );
    for x in &r.results {
        println!(
            "  {:<10} {:<6} {:<6} {:>7} {:>6} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.0} {:>10.0}",
            x.connection,
            x.op,
            x.transport,
            x.requests,
            x.connections,
            x.resumed,
            x.p50_ms,
            x.p90_ms,
            x.p99_ms,
            x.max_ms,
            x.throughput_per_s,
            x.server_cpu_us
        );
    }
    for x in &r.ratios {
        println!(
            "  TLS/plain {:<10} {:<6} p50 {:.2}  p99 {:.2}",
            x.connection, x.op, x.p50, x.p99
        );
    }
}

fn print_cold(r: &cold::ColdReport) {
    println!(
        "cold start: controller spawn -> API and OpenFlow serving ({} runs)",
        r.runs
    );
    println!("  {:<34} {:>10}", "state", "p50 ms");
    println!("  {:<34} {:>10.1}", "empty", r.empty_p50_ms);
    println!(
        "  {:<34} {:>10.1}",
        format!("{} memberships", r.loaded_memberships),
        r.loaded_p50_ms
    );
}

fn print_ovs(r: &real::BridgesReport) {
    let c = &r.cluster;
    println!(
        "real OVS: one ovs-vswitchd, {} bridges x {} networks, {} ports/bridge ({} trunk links: patch ports); expected {} flows, {} groups",
        c.switches, c.networks, c.ports_per_switch, r.links, r.expected_flows, r.expected_groups
    );
    println!(
        "  serving {:.1} ms, converged {:.1} ms ({}/{} bridges); controller RSS {:.1} MiB (peak {:.1}), CPU {:.2} s; ovs-vswitchd RSS {:.1} MiB",
        r.serving_ms,
        r.convergence_ms,
        r.converged_bridges,
        c.switches,
        r.controller.rss_kib as f64 / 1024.0,
        r.controller.peak_rss_kib as f64 / 1024.0,
        r.controller.cpu_ms as f64 / 1000.0,
        r.vswitchd.rss_kib as f64 / 1024.0,
    );
}

fn print_rate(r: &real::RateReport) {
    println!(
        "flow programming rate: {} flows + {} groups into one OVS bridge",
        r.flows, r.groups
    );
    println!("  {:<28} {:>10} {:>12}", "", "ms", "flows/s");
    println!(
        "  {:<28} {:>10.1} {:>12.0}",
        "l2sm controller", r.controller_ms, r.controller_flows_per_s
    );
    println!(
        "  {:<28} {:>10.1} {:>12.0}",
        "ovs-ofctl add-flows (file)", r.ofctl_ms, r.ofctl_flows_per_s
    );
    println!("  ratio controller/ofctl: {:.2} (goal <= 1.5)", r.ratio);
}

fn print_synth(r: &convergence::SynthReport) {
    let c = &r.cluster;
    println!(
        "synthetic switches over {}: {} switches x {} networks, {} ports/switch, {:?} graph ({} tunnels)",
        r.openflow,
        c.switches, c.networks, c.ports_per_switch, c.shape, r.links
    );
    println!(
        "  fed {} memberships ({} per request) in {:.0} ms; expected {} flows, {} groups",
        r.memberships, r.feed_batch, r.feed_ms, r.expected_flows, r.expected_groups
    );
    println!(
        "  API write (add ports, last tenth of {} requests): p50 {:.3} ms, p99 {:.3} ms",
        r.feed_requests, r.feed_p50_ms, r.feed_p99_ms
    );
    println!(
        "  {:<10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>8} {:>9} {:>9} {:>8} {:>10}",
        "start",
        "serving",
        "p50 sw",
        "converged",
        "flow_mods",
        "group_mods",
        "churn",
        "RSS MiB",
        "peak MiB",
        "CPU s",
        "switches s"
    );
    let row = |name: &str, s: &convergence::StartReport| {
        let t = |v: f64| {
            if v.is_finite() {
                format!("{v:.1}ms")
            } else {
                "-".into()
            }
        };
        println!(
            "  {:<10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>8} {:>9.1} {:>9.1} {:>8.2} {:>10.2}{}",
            name,
            t(s.serving_ms),
            t(s.p50_switch_ms),
            t(s.convergence_ms),
            s.flow_mods,
            s.group_mods,
            s.mods_after_convergence,
            s.controller.rss_kib as f64 / 1024.0,
            s.controller.peak_rss_kib as f64 / 1024.0,
            s.controller.cpu_ms as f64 / 1000.0,
            s.switches_cpu_ms as f64 / 1000.0,
            if s.converged {
                String::new()
            } else {
                format!("  NOT CONVERGED ({} switches)", s.converged_switches)
            }
        );
    };
    row("cold", &r.start);
    if let Some(s) = &r.restart {
        row("restart", s);
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("l2sm-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l2sm-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
