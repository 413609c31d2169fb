//! The DNS listener: UDP and TCP on one address, answers only for the `l2sm` zone.
//!
//! Hygiene: two UDP threads read the one socket and answer queries in turn (an answer is a
//! lookup in memory, nothing to wait for: a thread blocked in `recvfrom` wakes straight into
//! the answer, where an async task pays a reactor wakeup and often a hand-over to another
//! worker thread; docs/dns.md "Performance" has the numbers); TCP connections are capped (more are closed at once), each idle one closed
//! after the idle timeout, each serving a bounded number of queries; every source address
//! has a token bucket (queries over it are dropped on UDP, close the connection on TCP).

use super::wire;
use super::Zones;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Limits of the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// TCP connections served at once.
    pub max_tcp_connections: usize,
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle: Duration,
    /// Queries served on one TCP connection.
    pub max_queries_per_connection: u32,
    /// Queries per second per source address (sustained).
    pub rate_per_source: u32,
    /// Burst per source address.
    pub burst_per_source: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_tcp_connections: 128,
            tcp_idle: Duration::from_secs(10),
            max_queries_per_connection: 1000,
            rate_per_source: 1000,
            burst_per_source: 2000,
        }
    }
}

/// Source addresses tracked at most by the rate limiter; when full, buckets that are full
/// again are forgotten (one sweep per [`SWEEP_EVERY`] at most, so spoofed sources cannot make
/// every query pay for a sweep), and meanwhile new sources share one bucket.
const MAX_SOURCES: usize = 16_384;
/// Shortest time between two sweeps of the rate limiter's table.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Per-source token buckets.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_source: HashMap<IpAddr, (f64, Instant)>,
    last_sweep: Option<Instant>,
}

impl RateLimiter {
    /// `rate` queries per second, bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// Whether a query from `ip` may be answered now.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Buckets {
            by_source: buckets,
            last_sweep,
        } = &mut *guard;
        let due = last_sweep.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY);
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&ip) && due {
            *last_sweep = Some(now);
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let key = if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&ip) {
            IpAddr::from([0u8; 4]) // shared overflow bucket
        } else {
            ip
        };
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Answers one message received over UDP (`tcp` false: size limits apply) or TCP. `None`:
/// say nothing (not even a header, or a response).
pub fn respond(zones: &Zones, msg: &[u8], tcp: bool) -> Option<Vec<u8>> {
    respond_in(&zones.current(), msg, tcp)
}

/// [`respond`] with a given zone (what the fuzz target drives: `fuzz/`).
pub fn respond_in(zone: &super::Zone, msg: &[u8], tcp: bool) -> Option<Vec<u8>> {
    match wire::parse_query(msg) {
        Ok(query) => {
            let answer = zone.answer(&query);
            let limit = if tcp {
                usize::from(u16::MAX)
            } else {
                match query.edns {
                    Some(e) => usize::from(e.udp_size.clamp(512, wire::EDNS_UDP_SIZE)),
                    None => wire::PLAIN_UDP_SIZE,
                }
            };
            Some(wire::encode_answer(&query, &answer, limit))
        }
        Err(wire::WireError::Direction) => None,
        Err(_) => wire::header_only_answer(msg, wire::RCODE_FORMERR),
    }
}

/// Serves DNS on `udp` and `tcp` until either fails.
pub async fn serve(
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    zones: Arc<Zones>,
    limits: Limits,
) -> std::io::Result<()> {
    let limiter = Arc::new(RateLimiter::new(
        limits.rate_per_source,
        limits.burst_per_source,
    ));
    // The UDP thread stops when this future is dropped.
    let (udp_task, stop) = serve_udp(udp, zones.clone(), limiter.clone())?;
    let _stop = StopOnDrop(stop);
    let tcp_task = tokio::spawn(serve_tcp(tcp, zones, limiter, limits));
    tokio::select! {
        r = udp_task => r.unwrap_or_else(|_| Err(std::io::Error::other("DNS UDP thread ended"))),
        r = tcp_task => r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
    }
}

/// Threads answering UDP.
const UDP_THREADS: usize = 2;

/// How often the UDP thread looks whether its listener was dropped (its read timeout).
const UDP_STOP_CHECK: Duration = Duration::from_millis(200);

/// Sets a flag when dropped: the UDP thread stops when the future that owns this is dropped.
struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// What the UDP thread ended with.
type UdpDone = tokio::sync::oneshot::Receiver<std::io::Result<()>>;

/// Serves UDP on a thread of its own (blocking reads): the receiver gets the thread's end,
/// and setting the flag stops it (within [`UDP_STOP_CHECK`]).
fn serve_udp(
    socket: tokio::net::UdpSocket,
    zones: Arc<Zones>,
    limiter: Arc<RateLimiter>,
) -> std::io::Result<(UdpDone, Arc<std::sync::atomic::AtomicBool>)> {
    let socket = socket.into_std()?;
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(UDP_STOP_CHECK))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // UDP_THREADS threads read the one socket (the kernel hands each datagram to one of
    // them): one answers while another is in the kernel. The first to end reports.
    let done_tx = Arc::new(Mutex::new(Some(done_tx)));
    for _ in 0..UDP_THREADS {
        let socket = socket.try_clone()?;
        let (zones, limiter, stop, done_tx) = (
            zones.clone(),
            limiter.clone(),
            stop.clone(),
            done_tx.clone(),
        );
        std::thread::Builder::new()
            .name("l2sm-dns-udp".into())
            .spawn(move || {
                let r = udp_loop(&socket, &zones, &limiter, &stop);
                let first = done_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(tx) = first {
                    let _ = tx.send(r);
                }
            })?;
    }
    Ok((done_rx, stop))
}

fn udp_loop(
    socket: &std::net::UdpSocket,
    zones: &Zones,
    limiter: &RateLimiter,
    stop: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            // The read timeout: look at the stop flag again.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            // ICMP errors of earlier sends surface here on some systems, and a signal may
            // interrupt the read: not fatal.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        if !limiter.allow(peer.ip()) {
            continue;
        }
        let Some(answer) = buf.get(..n).and_then(|m| respond(zones, m, false)) else {
            continue;
        };
        if let Err(e) = socket.send_to(&answer, peer) {
            tracing::debug!(%peer, "DNS answer not sent: {e}");
        }
    }
    Ok(())
}

async fn serve_tcp(
    listener: tokio::net::TcpListener,
    zones: Arc<Zones>,
    limiter: Arc<RateLimiter>,
    limits: Limits,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_tcp_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!("DNS TCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let (zones, limiter) = (zones.clone(), limiter.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_connection(stream, peer, &zones, &limiter, limits).await {
                tracing::debug!(%peer, "DNS TCP connection ended: {e}");
            }
        });
    }
}

async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    zones: &Zones,
    limiter: &RateLimiter,
    limits: Limits,
) -> std::io::Result<()> {
    for _ in 0..limits.max_queries_per_connection {
        // A buffer per message, of its announced size: idle connections hold none.
        let read = async {
            let len = usize::from(stream.read_u16().await?);
            let mut buf = vec![0u8; len];
            stream.read_exact(&mut buf).await?;
            Ok::<Vec<u8>, std::io::Error>(buf)
        };
        let buf = match tokio::time::timeout(limits.tcp_idle, read).await {
            Ok(Ok(buf)) => buf,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()), // idle
        };
        if !limiter.allow(peer.ip()) {
            return Ok(());
        }
        let Some(answer) = respond(zones, &buf, true) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&wire_len(answer.len()).to_be_bytes());
        framed.extend_from_slice(&answer);
        tokio::time::timeout(limits.tcp_idle, stream.write_all(&framed))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    }
    Ok(())
}

fn wire_len(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source gets its burst then nothing until tokens come back; other sources are not
    /// affected; 20,000 distinct sources never grow the table past its cap.
    #[test]
    fn buckets_are_per_source_and_bounded() {
        let limiter = RateLimiter::new(1, 5);
        let a: IpAddr = [10, 0, 0, 1].into();
        assert_eq!((0..10).filter(|_| limiter.allow(a)).count(), 5);
        assert!(limiter.allow([10, 0, 0, 2].into()));
        for i in 0..20_000u32 {
            let ip: IpAddr = std::net::Ipv4Addr::from(0x0b00_0000 + i).into();
            limiter.allow(ip);
        }
        let table = limiter.buckets.lock().unwrap();
        assert!(
            table.by_source.len() <= MAX_SOURCES + 1,
            "{}",
            table.by_source.len()
        );
    }
}
