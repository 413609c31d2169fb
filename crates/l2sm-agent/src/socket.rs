//! The unix socket server of the agent's local API (JSON lines, one reply per request line),
//! bounded: at most [`SocketLimits::max_connections`] connections at once (more wait in the
//! listen backlog), a request line must arrive complete within
//! [`SocketLimits::header_timeout`] of the connection or of the previous reply, a connection
//! idle for [`SocketLimits::idle_timeout`] between requests is closed, a request line longer
//! than [`SocketLimits::max_request_bytes`] is refused, every reply write has a timeout, and
//! an `accept()` error (descriptors exhausted, ...) is logged and retried with a backoff: it
//! never ends the server.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Bounds of the local API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    /// Connections served at once; more wait (unaccepted) until one closes.
    pub max_connections: usize,
    /// Time for the first bytes of a request line to arrive, from the connection (or the
    /// previous reply) until the line is complete.
    pub header_timeout: Duration,
    /// Time a connection may stay open without starting a new request after a reply.
    pub idle_timeout: Duration,
    /// Longest request line (bytes, newline excluded).
    pub max_request_bytes: usize,
    /// Longest time one reply write may block.
    pub write_timeout: Duration,
}

impl Default for SocketLimits {
    /// 64 connections, 5 s to send a request, 30 s idle, 1 MiB requests, 10 s writes.
    fn default() -> Self {
        SocketLimits {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_request_bytes: 1 << 20,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// What the server counts (read by tests and logs).
#[derive(Debug, Default)]
pub struct SocketStats {
    /// Failed `accept()` calls.
    pub accept_errors: AtomicU64,
    /// Connections closed because a request did not arrive in time or was too long.
    pub refused: AtomicU64,
}

/// First wait after a failed `accept()`; doubled on each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait after a failed `accept()`.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves `listener` forever: each request line goes to `handle`, whose answer (one line,
/// without newline) is written back.
pub async fn serve<H, F>(
    listener: UnixListener,
    limits: SocketLimits,
    stats: Arc<SocketStats>,
    handle: H,
) where
    H: Fn(String) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = String> + Send,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        // Wait for room first: a connection beyond the cap stays in the listen backlog.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot accept a local API connection");
                drop(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let (handle, stats) = (handle.clone(), stats.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(stream, limits, &stats, handle).await {
                tracing::debug!("agent API connection: {e}");
            }
        });
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("no complete request within {0:?}")]
    Timeout(Duration),
    #[error("request longer than {0} bytes")]
    TooLong(usize),
    #[error("reply not written within {0:?}")]
    WriteTimeout(Duration),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

async fn connection<H, F>(
    stream: UnixStream,
    limits: SocketLimits,
    stats: &SocketStats,
    handle: H,
) -> Result<(), ConnectionError>
where
    H: Fn(String) -> F,
    F: Future<Output = String>,
{
    let (rd, mut wr) = stream.into_split();
    // One byte more than allowed, so an over-long line is seen as such.
    let limit = u64::try_from(limits.max_request_bytes).unwrap_or(u64::MAX) + 1;
    let mut rd = BufReader::new(rd);
    let mut first = true;
    loop {
        let mut line = Vec::new();
        // A new request must start within the idle timeout (the first one, within the header
        // timeout) and be complete within the header timeout of its first byte.
        let wait = if first {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
        first = false;
        let started = tokio::time::timeout(wait, rd.fill_buf()).await;
        match started {
            Err(_) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                return Err(ConnectionError::Timeout(wait));
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok([])) => return Ok(()),
            Ok(Ok(_)) => {}
        }
        let read = tokio::time::timeout(
            limits.header_timeout,
            (&mut rd).take(limit).read_until(b'\n', &mut line),
        )
        .await;
        match read {
            Err(_) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                return Err(ConnectionError::Timeout(limits.header_timeout));
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
        }
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        if line.len() > limits.max_request_bytes {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            let reply = serde_json::json!({
                "ok": false,
                "error": format!("request longer than {} bytes", limits.max_request_bytes),
            });
            let _ = write_line(&mut wr, &reply.to_string(), limits.write_timeout).await;
            return Err(ConnectionError::TooLong(limits.max_request_bytes));
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let reply = handle(text).await;
        write_line(&mut wr, &reply, limits.write_timeout).await?;
        if !complete {
            // The peer closed after a last line without newline.
            return Ok(());
        }
    }
}

async fn write_line(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    reply: &str,
    timeout: Duration,
) -> Result<(), ConnectionError> {
    let mut out = Vec::with_capacity(reply.len() + 1);
    out.extend_from_slice(reply.as_bytes());
    out.push(b'\n');
    tokio::time::timeout(timeout, wr.write_all(&out))
        .await
        .map_err(|_| ConnectionError::WriteTimeout(timeout))??;
    Ok(())
}
