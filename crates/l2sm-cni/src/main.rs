//! `l2sm-cni`: the L2S-M CNI plugin (spec 1.0.0 and 1.1.0; configurations of 0.3.0 to 1.1.0).
//!
//! Multus (or any runtime) runs it with the `CNI_*` variables and the network configuration on
//! stdin. It is a thin, synchronous client of the node agent's unix socket: ADD asks the agent
//! to attach an interface, DEL to detach it, CHECK compares the agent's records and the
//! container's interface with `prevResult`, STATUS asks whether the agent is up, GC detaches
//! this plugin's attachments the runtime no longer knows. See docs/cni.md.

#![warn(clippy::unwrap_used)] // input paths answer with errors; tests may unwrap

mod commands;
mod config;
mod env;
mod error;
mod netif;
mod result;

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin()
        .read_to_end(&mut stdin)
        .map_err(|e| e.to_string());
    let version = config::peek_version(&stdin).unwrap_or(config::Version::LATEST);
    let outcome = std::panic::catch_unwind(move || {
        read.map_err(|e| {
            error::CniError::new(
                error::IO_FAILURE,
                format!("cannot read the network configuration from stdin: {e}"),
            )
        })?;
        let env = env::CniEnv::read(|k| std::env::var(k).ok())?;
        commands::run(&env, &stdin)
    })
    .unwrap_or_else(|_| {
        Err(error::internal(
            "l2sm-cni failed unexpectedly (a bug: please report it)",
        ))
    });
    let (out, code) = match outcome {
        Ok(None) => (None, ExitCode::SUCCESS),
        Ok(Some(v)) => (Some(v), ExitCode::SUCCESS),
        Err(e) => (Some(e.to_json(version.as_str())), ExitCode::FAILURE),
    };
    if let Some(v) = out {
        let mut stdout = std::io::stdout().lock();
        // Nothing sensible is left to do if stdout is gone.
        let _ = writeln!(stdout, "{v}");
        let _ = stdout.flush();
    }
    code
}
