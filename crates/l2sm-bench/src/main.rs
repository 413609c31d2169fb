//! `l2sm-bench`: reproducible benchmarks of the L2S-M controller. Human-readable tables by
//! default, one JSON document with `--json` (fields in docs/benchmarks-controller.md).

use clap::{Parser, Subcommand};
use l2sm_bench::scenario::{ClusterSpec, Shape};
use l2sm_bench::{cold, convergence};
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
    },
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
        } => {
            let opts = convergence::SynthOptions {
                cluster: ClusterSpec {
                    switches,
                    networks,
                    ports_per_switch: ports,
                    shape,
                },
                l2sm,
                batch,
                concurrency,
                timeout: Duration::from_secs(timeout),
                settle: Duration::from_secs(1),
                restart,
            };
            let r = convergence::run(&opts).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"controller": r}))?);
            } else {
                print_synth(&r);
            }
        }
        Command::ColdStart {
            runs,
            switches,
            networks,
        } => {
            let r = cold::run(&l2sm, runs, switches, networks).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"cold_start": r}))?);
            } else {
                println!("cold start: controller spawn -> API and OpenFlow serving ({} runs)", r.runs);
                println!("  {:<34} {:>10}", "state", "p50 ms");
                println!("  {:<34} {:>10.1}", "empty", r.empty_p50_ms);
                println!(
                    "  {:<34} {:>10.1}",
                    format!("{} memberships", r.loaded_memberships),
                    r.loaded_p50_ms
                );
            }
        }
    }
    Ok(())
}

fn print_synth(r: &convergence::SynthReport) {
    let c = &r.cluster;
    println!(
        "synthetic switches: {} switches x {} networks, {} ports/switch, {:?} graph ({} tunnels)",
        c.switches, c.networks, c.ports_per_switch, c.shape, r.links
    );
    println!(
        "  fed {} memberships ({} per request) in {:.0} ms; expected {} flows, {} groups",
        r.memberships, r.feed_batch, r.feed_ms, r.expected_flows, r.expected_groups
    );
    println!(
        "  {:<10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>8} {:>9} {:>9} {:>8}",
        "start", "serving", "p50 sw", "converged", "flow_mods", "group_mods", "churn", "RSS MiB", "peak MiB", "CPU s"
    );
    let row = |name: &str, s: &convergence::StartReport| {
        println!(
            "  {:<10} {:>8.1}ms {:>8.1}ms {:>10.1}ms {:>10} {:>10} {:>8} {:>9.1} {:>9.1} {:>8.2}{}",
            name,
            s.serving_ms,
            s.p50_switch_ms,
            s.convergence_ms,
            s.flow_mods,
            s.group_mods,
            s.mods_after_convergence,
            s.controller.rss_kib as f64 / 1024.0,
            s.controller.peak_rss_kib as f64 / 1024.0,
            s.controller.cpu_ms as f64 / 1000.0,
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
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
