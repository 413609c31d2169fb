//! A small blocking DNS client for `l2sm dns lookup` and tests: one query over UDP (with
//! EDNS0), retried over TCP when the answer comes back truncated.

use super::wire::{self, Name, Response};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

/// Why a lookup failed (a negative answer is not a failure: see [`Response::rcode`]).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Sending, receiving or connecting failed (timeouts included).
    #[error("DNS query to {0} failed: {1}")]
    Io(SocketAddr, std::io::Error),
    /// The answer could not be parsed.
    #[error("malformed DNS answer from {0}: {1}")]
    Malformed(SocketAddr, wire::WireError),
    /// The answer was for another query.
    #[error("DNS answer from {0} does not match the query")]
    Mismatch(SocketAddr),
}

/// Sends `query` over UDP and returns the raw answer.
pub fn exchange_udp(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0u8; 4], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(query)?;
    let mut buf = vec![0u8; 65535];
    let n = socket.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Sends `query` over TCP (two-octet length prefix) and returns the raw answer.
pub fn exchange_tcp(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let mut s = std::net::TcpStream::connect_timeout(&server, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Looks `name` up (type `qtype`) at `server`: UDP first, TCP when truncated.
pub fn lookup(
    server: SocketAddr,
    name: &Name,
    qtype: u16,
    timeout: Duration,
) -> Result<Response, LookupError> {
    let id = query_id();
    let query = wire::build_query(id, name, qtype, true);
    let check = |raw: Vec<u8>| {
        let r = wire::parse_response(&raw).map_err(|e| LookupError::Malformed(server, e))?;
        let matches = r.id == id
            && r.question
                .as_ref()
                .is_some_and(|(n, t)| n == name && *t == qtype);
        if matches {
            Ok(r)
        } else {
            Err(LookupError::Mismatch(server))
        }
    };
    let r = check(exchange_udp(server, &query, timeout).map_err(|e| LookupError::Io(server, e))?)?;
    if !r.tc {
        return Ok(r);
    }
    check(exchange_tcp(server, &query, timeout).map_err(|e| LookupError::Io(server, e))?)
}

/// A query id that differs from call to call (not a security measure: the server is ours).
fn query_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16) ^ std::process::id()) as u16
}
