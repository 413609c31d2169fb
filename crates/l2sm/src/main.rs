//! `l2sm`: one binary for the controller, the node agent, the operator, the lab and the CLI
//! verbs. It only parses the command line and dispatches to the component crates
//! (`l2sm-controller`, `l2sm-agent`, `l2sm-operator`, `l2sm-lab`), and installs the CNI plugin
//! (`install_cni`).

// Input paths answer with errors; tests may unwrap.
#![warn(clippy::unwrap_used)]
// Doc comments of the clap types are the command's help text, where `<LAB>` is a placeholder.
#![allow(rustdoc::invalid_html_tags)]

mod cli;
mod install_cni;

use clap::Parser as _;
use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    let daemon = matches!(
        args.command,
        Command::Controller(_)
            | Command::Agent(_)
            | Command::Operator(_)
            | Command::AgentCert(_)
            | Command::IdsWatch(_)
    );
    if daemon {
        // One malloc arena: long-running and memory-bound, not allocation-bound.
        l2sm_runtime::limit_heap_arenas(1);
    }
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
