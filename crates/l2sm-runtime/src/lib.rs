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

/// Hands heap memory freed after bursts of work back to the operating system.
///
/// glibc keeps freed memory in its arenas for reuse: after a controller has read and
/// programmed thousands of switches, tens of MiB of transient state (flow tables read back,
/// compiled pipelines, message batches) stay resident although nothing uses them. Callers say
/// when a burst freed memory ([`HeapTrimmer::freed`]); once the process has been quiet for a
/// moment (or a burst has gone on for long), [`HeapTrimmer::run`] trims the heap on a blocking
/// thread. Elsewhere than on glibc this does nothing.
#[derive(Debug)]
pub struct HeapTrimmer {
    notify: tokio::sync::Notify,
    trims: std::sync::atomic::AtomicU64,
}

impl Default for HeapTrimmer {
    fn default() -> Self {
        HeapTrimmer {
            notify: tokio::sync::Notify::new(),
            trims: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl HeapTrimmer {
    /// Notes that work which allocated much has ended (cheap: callable per event).
    pub fn freed(&self) {
        self.notify.notify_one();
    }

    /// How many times the heap was trimmed.
    pub fn trims(&self) -> u64 {
        self.trims.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Trims after every burst: `quiet` without a new [`HeapTrimmer::freed`], or `at_most`
    /// after the burst's first one, whichever comes first. Runs until dropped.
    pub async fn run(
        self: std::sync::Arc<Self>,
        quiet: std::time::Duration,
        at_most: std::time::Duration,
    ) {
        loop {
            self.notify.notified().await;
            let give_up = tokio::time::Instant::now() + at_most;
            loop {
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep(quiet) => break,
                    _ = tokio::time::sleep_until(give_up) => break,
                }
            }
            let started = std::time::Instant::now();
            if let Ok(returned) = tokio::task::spawn_blocking(trim_heap).await {
                self.trims
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(
                    returned,
                    took_us = started.elapsed().as_micros() as u64,
                    "heap trimmed"
                );
            }
        }
    }
}

/// Caps glibc's malloc arenas at `max` for this process, unless `MALLOC_ARENA_MAX` is set
/// (then glibc already follows it). By default glibc gives each thread that meets contention
/// an arena of its own and keeps their free memory apart: with thousands of switch sessions
/// moving between two runtime workers and the blocking pool, that cost the controller
/// 8-15 MiB of RSS at 5,000 TLS switches (BENCHMARKS.md), with no CPU gain measured. Call it
/// before any thread starts. Whether the cap was set.
#[allow(unsafe_code)] // one FFI call without preconditions; see SAFETY
pub fn limit_heap_arenas(max: u16) -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter under the allocator's own lock; it
        // has no preconditions on the caller.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, i32::from(max)) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = max;
        false
    }
}

/// Returns free heap memory to the operating system now (glibc's `malloc_trim`); whether
/// any was returned.
#[allow(unsafe_code)] // one FFI call without preconditions; see SAFETY
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks and releases free chunks of the allocator's own
        // arenas under their locks; it has no preconditions on the caller.
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
