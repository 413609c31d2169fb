//! A deliberately tiny HTTP/1.1 client for the controller API (one request per connection).
//! It can dial from inside a network namespace, which is how the lab CLI reaches a controller
//! that lives on the lab's underlay without giving the host an address there.

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// Where and how to reach the controller's REST API.
#[derive(Debug, Clone)]
pub struct ControllerApi {
    /// `host:port` as given in the URL.
    pub authority: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Basic-auth user and password.
    pub credentials: Option<(String, String)>,
    /// Network namespace to dial from (lab mode).
    pub netns: Option<PathBuf>,
}

/// A response: status and body text.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body as text.
    pub body: String,
}

impl HttpResponse {
    /// The `message` of a JSON error body, or the raw body.
    pub fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.body.trim().to_string())
    }
}

impl ControllerApi {
    /// Parses `http://HOST:PORT` (IP or resolvable name).
    pub fn new(
        url: &str,
        credentials: Option<(String, String)>,
        netns: Option<PathBuf>,
    ) -> anyhow::Result<ControllerApi> {
        let authority = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("controller URL {url:?} must start with http://"))?
            .trim_end_matches('/')
            .to_string();
        if authority.contains('/') {
            bail!("controller URL {url:?} must not have a path");
        }
        use std::net::ToSocketAddrs as _;
        let addr = authority
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve controller address {authority:?}"))?
            .next()
            .ok_or_else(|| anyhow!("controller address {authority:?} resolves to nothing"))?;
        Ok(ControllerApi {
            authority,
            addr,
            credentials,
            netns,
        })
    }

    async fn connect(&self) -> anyhow::Result<tokio::net::TcpStream> {
        let addr = self.addr;
        let stream = match &self.netns {
            None => tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| anyhow!("timed out connecting to the controller at {addr}"))??,
            Some(ns) => {
                let ns = l2sm_netns::Netns::open(ns)?;
                let std_stream = tokio::task::spawn_blocking(move || {
                    l2sm_netns::run_in_netns(&ns, move || {
                        std::net::TcpStream::connect_timeout(&addr, TIMEOUT)
                    })
                })
                .await??
                .with_context(|| format!("cannot connect to the controller at {addr}"))?;
                std_stream.set_nonblocking(true)?;
                tokio::net::TcpStream::from_std(std_stream)?
            }
        };
        Ok(stream)
    }

    /// Sends one request; `body` is sent as JSON.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<HttpResponse> {
        let fut = async {
            let mut stream = self
                .connect()
                .await
                .with_context(|| format!("controller API at {} is unreachable", self.authority))?;
            let payload = body.map(|b| b.to_string()).unwrap_or_default();
            let mut req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: */*\r\n",
                self.authority
            );
            if let Some((user, pass)) = &self.credentials {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                req.push_str(&format!("Authorization: Basic {token}\r\n"));
            }
            if body.is_some() {
                req.push_str("Content-Type: application/json\r\n");
            }
            req.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
            req.push_str(&payload);
            stream.write_all(req.as_bytes()).await?;
            let mut raw = Vec::new();
            (&mut stream)
                .take(MAX_RESPONSE as u64)
                .read_to_end(&mut raw)
                .await?;
            parse_response(&raw)
        };
        // Every failure names the controller, so callers can tell an outage from a refusal.
        let authority = &self.authority;
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| anyhow!("controller API at {authority} did not answer in time"))?
            .map_err(|e| {
                if format!("{e:#}").contains("controller API at") {
                    e
                } else {
                    e.context(format!("controller API at {authority} failed"))
                }
            })
    }
}

fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response from the controller"))?;
    let head = std::str::from_utf8(&raw[..split]).context("non-UTF-8 HTTP headers")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("malformed HTTP status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("malformed chunked body"))?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("malformed chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunked body");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        let r = parse_response(
            b"HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (409, "hello"));
        assert!(parse_response(b"garbage").is_err());
    }
}
