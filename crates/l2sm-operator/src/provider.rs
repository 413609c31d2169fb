//! Client of a *provider* controller (the one every cluster's edge connects to) for
//! inter-cluster L2Networks: upstream's vnets contract (`/onos/vnets/api`, plain HTTP, Basic
//! credentials), so the provider may be upstream's ONOS app or our `l2sm controller`.
//!
//! Unlike upstream (which formats the whole `domain` list into one host, `[a]:30808`, working
//! for one domain by accident), each entry of `spec.provider.domain` is a provider address of
//! its own: callers try them in order ([`base_urls`]) and use the first that answers.

use crate::crd::ProviderSpec;
use http::{header, Method, Request};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Upstream's default REST port of a provider (`sdnPort`).
pub const DEFAULT_SDN_PORT: u16 = 30808;
/// Largest answer read from a provider.
const MAX_ANSWER: usize = 1 << 20;

/// API credentials (the password is never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Upstream's hard-coded ONOS credentials (`karaf:karaf`), what an upstream provider
    /// expects.
    pub fn upstream() -> Self {
        Credentials {
            user: "karaf".into(),
            password: "karaf".into(),
        }
    }
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No answer (connection refused, name not resolved, timeout).
    #[error("provider {url} unreachable: {reason}")]
    Unreachable {
        /// URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An answer other than the contract's success.
    #[error("provider answered {status} to {method} {url}: {message}")]
    Refused {
        /// Method.
        method: String,
        /// URL called.
        url: String,
        /// Status code.
        status: u16,
        /// The answer's text (shortened).
        message: String,
    },
}

impl ProviderError {
    /// Short machine-friendly reason for status conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            ProviderError::Unreachable { .. } => "ProviderUnreachable",
            ProviderError::Refused { .. } => "ProviderRefused",
        }
    }
}

/// The base URLs (`http://HOST:PORT`) of a provider, one per `domain` entry in order, with
/// `sdnPort` (default 30808). Err: the spec names no usable address (the message says why).
pub fn base_urls(provider: &ProviderSpec) -> Result<Vec<String>, String> {
    let port = match provider.sdn_port.trim() {
        "" => DEFAULT_SDN_PORT,
        p => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("spec.provider.sdnPort {p:?} is not a port number")),
        },
    };
    let mut out = Vec::new();
    for (i, d) in provider.domain.iter().enumerate() {
        let d = d.trim();
        if d.is_empty() {
            continue;
        }
        let host_ok = d
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !host_ok {
            return Err(format!(
                "spec.provider.domain[{i}] {d:?} is not a host name or IP address"
            ));
        }
        let host = match d.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]"),
            Err(_) if d.contains(':') => {
                return Err(format!(
                    "spec.provider.domain[{i}] {d:?}: give the address without a port \
                     (the REST port is spec.provider.sdnPort)"
                ))
            }
            Err(_) => d.to_string(),
        };
        out.push(format!("http://{host}:{port}"));
    }
    if out.is_empty() {
        return Err("spec.provider.domain names no provider address".into());
    }
    Ok(out)
}

/// The member ports in upstream's text answer to `GET /onos/vnets/api/<name>`
/// (`Id: …\nEndpoints: \n -of:…/1\n…Tunnel Ids: …`).
pub fn parse_members(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_endpoints = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Endpoints:") {
            in_endpoints = true;
            continue;
        }
        if in_endpoints {
            match t.strip_prefix('-') {
                Some(p) if !p.trim().is_empty() => out.push(p.trim().to_string()),
                Some(_) => {}
                None => break,
            }
        }
    }
    out
}

/// A vnets client for provider controllers (one for all of them; the base URL is per call).
#[derive(Clone)]
pub struct ProviderClient {
    http: Client<HttpConnector, Full<Bytes>>,
    authorization: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ProviderClient {
    /// A client sending `credentials` (Basic), each call bounded by `timeout`.
    pub fn new(credentials: Option<&Credentials>, timeout: Duration) -> Self {
        use base64::Engine as _;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build(connector);
        ProviderClient {
            http,
            authorization: credentials.map(|c| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", c.user, c.password))
                )
            }),
            timeout,
        }
    }

    async fn call(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, String), ProviderError> {
        let url = format!("{base}{path}");
        let unreachable = |reason: String| ProviderError::Unreachable {
            url: url.clone(),
            reason,
        };
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(a) = &self.authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let bytes = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| unreachable(e.to_string()))?;
        let call = async {
            let resp = self.http.request(req).await.map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                msg
            })?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(unreachable)
    }

    fn refused(method: &str, url: String, status: u16, text: &str) -> ProviderError {
        let mut message: String = text.trim().chars().take(300).collect();
        if message.is_empty() {
            message = "(no message)".into();
        }
        ProviderError::Refused {
            method: method.into(),
            url,
            status,
            message,
        }
    }

    /// The network's member ports, None when the provider has no such network (404; any
    /// other non-200 answer is an error, unlike upstream, which took it for "absent").
    pub async fn members(
        &self,
        base: &str,
        network: &str,
    ) -> Result<Option<Vec<String>>, ProviderError> {
        let path = format!("/onos/vnets/api/{network}");
        let (status, text) = self.call(base, Method::GET, &path, None).await?;
        match status {
            200 => Ok(Some(parse_members(&text))),
            404 => Ok(None),
            s => Err(Self::refused("GET", format!("{base}{path}"), s, &text)),
        }
    }

    async fn expect(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: serde_json::Value,
        ok: &[u16],
    ) -> Result<(), ProviderError> {
        let m = method.to_string();
        let (status, text) = self.call(base, method, path, Some(body)).await?;
        if ok.contains(&status) {
            Ok(())
        } else {
            Err(Self::refused(&m, format!("{base}{path}"), status, &text))
        }
    }

    /// `GET /api/v1/links` of a provider that is an L2S-M controller: its links' health
    /// (the NetworkEdgeDevice's `status.linkMetrics`).
    pub async fn links(&self, base: &str) -> Result<Vec<l2sm_api::v1::LinkView>, ProviderError> {
        let path = "/api/v1/links";
        let (status, text) = self.call(base, Method::GET, path, None).await?;
        if status != 200 {
            return Err(Self::refused("GET", format!("{base}{path}"), status, &text));
        }
        serde_json::from_str(&text).map_err(|e| ProviderError::Refused {
            method: "GET".into(),
            url: format!("{base}{path}"),
            status,
            message: format!("not a list of links: {e}"),
        })
    }

    /// `POST /onos/vnets/api {"networkId": network}` (204).
    pub async fn create(&self, base: &str, network: &str) -> Result<(), ProviderError> {
        let body = serde_json::json!({"networkId": network});
        self.expect(base, Method::POST, "/onos/vnets/api", body, &[200, 204])
            .await
    }

    /// `POST /onos/vnets/api/port` with one endpoint.
    pub async fn add_port(
        &self,
        base: &str,
        network: &str,
        port: &str,
    ) -> Result<(), ProviderError> {
        let body = serde_json::json!({"networkId": network, "networkEndpoints": [port]});
        self.expect(
            base,
            Method::POST,
            "/onos/vnets/api/port",
            body,
            &[200, 204],
        )
        .await
    }

    /// `DELETE /onos/vnets/api/port` with one endpoint.
    pub async fn remove_port(
        &self,
        base: &str,
        network: &str,
        port: &str,
    ) -> Result<(), ProviderError> {
        let body = serde_json::json!({"networkId": network, "networkEndpoints": [port]});
        self.expect(
            base,
            Method::DELETE,
            "/onos/vnets/api/port",
            body,
            &[200, 204],
        )
        .await
    }

    /// `DELETE /onos/vnets/api/<network>`; an unknown network (404) is a success.
    pub async fn delete(&self, base: &str, network: &str) -> Result<(), ProviderError> {
        let path = format!("/onos/vnets/api/{network}");
        let (status, text) = self.call(base, Method::DELETE, &path, None).await?;
        match status {
            200 | 204 | 404 => Ok(()),
            s => Err(Self::refused("DELETE", format!("{base}{path}"), s, &text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(domain: &[&str], port: &str) -> ProviderSpec {
        ProviderSpec {
            name: "p".into(),
            domain: domain.iter().map(|s| s.to_string()).collect(),
            sdn_port: port.into(),
            dns_port: String::new(),
            dns_grpc_port: String::new(),
            of_port: String::new(),
        }
    }

    #[test]
    fn each_domain_is_an_address_of_its_own() {
        assert_eq!(
            base_urls(&provider(&["10.0.0.1", " prov.example ", "fd00::1"], "")).unwrap(),
            [
                "http://10.0.0.1:30808",
                "http://prov.example:30808",
                "http://[fd00::1]:30808"
            ]
        );
        assert_eq!(
            base_urls(&provider(&["a"], "8181")).unwrap(),
            ["http://a:8181"]
        );
        for (d, port, needle) in [
            (vec![], "", "names no provider"),
            (vec![""], "", "names no provider"),
            (vec!["10.0.0.1:30808"], "", "without a port"),
            (vec!["http://x"], "", "not a host name"),
            (vec!["a b"], "", "not a host name"),
            (vec!["a"], "0", "sdnPort"),
            (vec!["a"], "x", "sdnPort"),
        ] {
            let e = base_urls(&provider(&d, port)).unwrap_err();
            assert!(e.contains(needle), "{d:?} {port}: {e}");
        }
    }

    #[test]
    fn members_from_upstreams_text() {
        let text = "Id: inter\nEndpoints: \n -of:0000000000000001/3\n -of:00000000000000aa/53249\nTunnel Ids: \n -7\n -7\nMirror Port: null\n";
        assert_eq!(
            parse_members(text),
            ["of:0000000000000001/3", "of:00000000000000aa/53249"]
        );
        assert!(parse_members("Id: x\nEndpoints: \nTunnel Ids: \nMirror Port: null\n").is_empty());
    }

    #[test]
    fn credentials_are_not_printed() {
        let c = Credentials::upstream();
        assert!(!format!("{c:?}").contains("password"));
    }
}
