//! `l2sm`: one binary for the controller, the node agent, the operator, the lab and the CLI
//! verbs. It only parses the command line and dispatches to the component crates
//! (`l2sm-controller`, `l2sm-agent`, `l2sm-operator`, `l2sm-lab`).

#![warn(clippy::unwrap_used)]
// input paths answer with errors; tests may unwrap

// Doc comments of the clap types are the command's help text, where `<LAB>` is a placeholder.
#![allow(rustdoc::invalid_html_tags)]

mod cli;

use clap::{Parser, Subcommand};

/// L2S-M: isolated link-layer virtual networks for pods, across nodes.
#[derive(Debug, Parser)]
#[command(name = "l2sm", version, about)]
struct Cli {
    /// Lab to act on (namespaces l2sm-<LAB>-*, state in /run/l2sm/lab/<LAB>).
    #[arg(long, global = true, env = "L2SM_LAB", default_value = "lab")]
    lab: String,
    /// Controller API URL for network verbs outside a lab, e.g. http://10.0.0.1:8181
    /// (credentials from L2SM_API_USER / L2SM_API_PASSWORD).
    #[arg(long, global = true, env = "L2SM_CONTROLLER_URL")]
    controller_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the SDN controller (OpenFlow 1.3 server + REST API).
    Controller(l2sm_controller::ControllerArgs),
    /// Run the node agent (OVS, pod interfaces).
    Agent(l2sm_agent::AgentArgs),
    /// Emulated cluster on this host.
    #[command(subcommand)]
    Lab(cli::LabCommand),
    /// Manage virtual networks.
    #[command(subcommand)]
    Network(cli::NetworkCommand),
    /// Give a pod an interface on a network (lab).
    Attach(cli::AttachArgs),
    /// Remove a pod's interface(s) (lab).
    Detach(cli::DetachArgs),
    /// Run the Kubernetes operator (reconcilers, webhook, leader election).
    Operator(Box<l2sm_operator::operator::OperatorArgs>),
    /// Switches, links and networks, as text or Graphviz DOT.
    Topology {
        /// Print Graphviz DOT instead of text.
        #[arg(long)]
        dot: bool,
    },
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    let daemon = matches!(
        args.command,
        Command::Controller(_) | Command::Agent(_) | Command::Operator(_)
    );
    l2sm_runtime::init_tracing(daemon);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(if daemon { 2 } else { 1 })
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::dispatch(args.lab, args.controller_url, args.command)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
