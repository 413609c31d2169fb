//! One raw HTTP/1.1 request per connection: for tests that check status codes and bodies
//! exactly as they go on the wire, including malformed requests a typed client cannot send.

use std::io::{Read as _, Write as _};
use std::time::Duration;

/// Sends `method path` with an optional JSON body and Basic `authorization` (the base64
/// token); `None` when nothing answers. Returns the status and the body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    authorization: Option<&str>,
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = authorization {
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}
