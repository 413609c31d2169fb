//! What every L2S-M daemon and command shares at run time: how it stops and how it logs.

#![warn(clippy::unwrap_used)] // input paths answer with errors; tests may unwrap

/// Resolves on SIGINT or SIGTERM (never, if the handler cannot be installed).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Logs to standard error, filtered by `RUST_LOG`; daemons default to `info`, commands to
/// `warn` so their output stays readable.
pub fn init_tracing(daemon: bool) {
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
