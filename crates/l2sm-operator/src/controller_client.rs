//! HTTP client of our controller's REST API (`l2sm controller`): networks with their address
//! management, memberships (ports), allocations and switches. Transient failures (connection
//! refused, timeouts, 502/503/504) are retried with exponential backoff; the idempotent
//! answers upstream treats as errors (404 on delete, 409 on create) are successes here.

use base64::Engine as _;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use l2sm_pipeline::ids::PortId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest answer read from the controller.
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// Why a controller call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL cannot be used.
    #[error("invalid controller URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer (connection refused, reset, timeout), after every retry.
    #[error("controller unreachable at {url} after {attempts} attempt(s): {reason}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The controller answered with an error status.
    #[error("controller answered {status} to {method} {path}: {message}")]
    Status {
        /// Method called.
        method: String,
        /// Path called.
        path: String,
        /// Status code.
        status: u16,
        /// The `message` of the JSON error body, or the body.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("unexpected answer to {path}: {reason}")]
    Decode {
        /// Path called.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

impl ClientError {
    /// Whether waiting and trying again may help (the controller is down or overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Status { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// Short machine-friendly reason for status conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            ClientError::Unreachable { .. } => "ControllerUnreachable",
            ClientError::Status { .. } => "ControllerError",
            ClientError::InvalidUrl { .. } => "ControllerMisconfigured",
            ClientError::Decode { .. } => "ControllerError",
        }
    }
}

/// How transient failures are retried: `attempts` tries, waiting `initial`, then twice as
/// long each time up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in total (at least 1).
    pub attempts: u32,
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Deadline of one request.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Wait before try number `attempt + 1` (`attempt` counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// A network as `GET /api/v1/networks` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkView {
    /// Name.
    pub name: String,
    /// VXLAN network identifier.
    #[serde(default)]
    pub vni: u32,
    /// Member ports, `of:<dpid>/<n>`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Address management, if the network has it.
    #[serde(default)]
    pub ipam: Option<IpamView>,
}

/// Address management of a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamView {
    /// Subnets.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Ranges dynamic addresses come from.
    #[serde(default)]
    pub pod_ranges: Vec<String>,
    /// Address -> owner (`cni/<container id>/<ifname>` for CNI allocations).
    #[serde(default)]
    pub allocations: BTreeMap<String, String>,
}

/// What to create: a name, and address management when `cidrs` is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRequest {
    /// Network name.
    pub name: String,
    /// Subnets (one IPv4, one IPv6 at most).
    pub cidrs: Vec<String>,
    /// Ranges inside them for dynamic addresses.
    pub pod_ranges: Vec<String>,
}

/// What `create_network` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Created now, or it existed with the same settings.
    Ready(NetworkView),
    /// A network of that name exists with other address settings (the controller does not
    /// change them); its current state.
    ExistsWithOtherSettings(NetworkView),
}

/// A connected switch, as `GET /api/v1/switches` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SwitchView {
    /// `of:<16 hex>`.
    pub id: String,
    /// Its ports.
    #[serde(default)]
    pub ports: Vec<SwitchPortView>,
}

/// One port of a switch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SwitchPortView {
    /// OpenFlow number.
    pub number: u32,
    /// Interface name.
    #[serde(default)]
    pub name: String,
    /// `port`, `tunnel` or `trunk`.
    #[serde(default)]
    pub kind: String,
}

/// A membership as `GET /api/v1/attachments` shows it, with the port's owner when the node's
/// agent reported it (agents of earlier versions did not).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Network.
    pub network: String,
    /// Member port, `of:<dpid>/<n>`.
    pub port: String,
    /// Pod the port belongs to, `namespace/name`.
    #[serde(default)]
    pub pod: Option<String>,
    /// Attachment id (`cni/<container id>/<ifname>`).
    #[serde(default)]
    pub attachment: Option<String>,
    /// Interface inside the pod.
    #[serde(default)]
    pub interface: Option<String>,
}

/// What a port move did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveOutcome {
    /// Removed from the source, added to the target.
    Moved,
    /// It was in the target already (a repeated request).
    AlreadyThere,
}

/// Client of one controller.
#[derive(Clone)]
pub struct ControllerClient {
    base: String,
    authorization: Option<String>,
    retry: RetryPolicy,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for ControllerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerClient")
            .field("base", &self.base)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn message(&self) -> String {
        #[derive(Deserialize)]
        struct ErrorBody {
            message: String,
        }
        match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(e) => e.message,
            Err(_) => String::from_utf8_lossy(&self.body).trim().to_string(),
        }
    }
}

impl ControllerClient {
    /// A client of the controller at `base_url` (`http://host:port`), with Basic credentials.
    pub fn new(
        base_url: &str,
        credentials: Option<(String, String)>,
        retry: RetryPolicy,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let uri: Uri =
            base.parse()
                .map_err(|e: http::uri::InvalidUri| ClientError::InvalidUrl {
                    url: base_url.to_string(),
                    reason: e.to_string(),
                })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::InvalidUrl {
                url: base_url.to_string(),
                reason: "expected http://HOST[:PORT]".into(),
            });
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(ClientError::InvalidUrl {
                url: base_url.to_string(),
                reason: "give the controller's address without a path".into(),
            });
        }
        let authorization = credentials.map(|(user, password)| {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        });
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(retry.timeout));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(ControllerClient {
            base,
            authorization,
            retry: RetryPolicy {
                attempts: retry.attempts.max(1),
                ..retry
            },
            http,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, String> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        if let Some(auth) = &self.authorization {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::copy_from_slice(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| e.to_string())?;
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
            let status = resp.status();
            let limited = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE);
            let body = limited
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>(Answer { status, body })
        };
        tokio::time::timeout(self.retry.timeout, call)
            .await
            .map_err(|_| format!("no answer within {:?}", self.retry.timeout))?
    }

    /// One call, retried while the controller is unreachable or answers 502-504.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.once(&method, path, body).await;
            let retryable = match &outcome {
                Err(_) => true,
                Ok(a) => matches!(a.status.as_u16(), 502..=504),
            };
            if !retryable || attempt >= self.retry.attempts {
                return match outcome {
                    Ok(a) => Ok(a),
                    Err(reason) => Err(ClientError::Unreachable {
                        url: format!("{}{path}", self.base),
                        attempts: attempt,
                        reason,
                    }),
                };
            }
            let wait = self.retry.backoff(attempt);
            tracing::debug!(%path, attempt, ?wait, "controller call failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    fn status_error(method: &Method, path: &str, a: &Answer) -> ClientError {
        ClientError::Status {
            method: method.to_string(),
            path: path.to_string(),
            status: a.status.as_u16(),
            message: a.message(),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(path: &str, a: &Answer) -> Result<T, ClientError> {
        serde_json::from_slice(&a.body).map_err(|e| ClientError::Decode {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    fn json(value: &impl Serialize) -> Vec<u8> {
        // Serializing our own plain structs cannot fail.
        serde_json::to_vec(value).unwrap_or_default()
    }

    /// `GET /onos/vnets/api/status`: the controller answers.
    pub async fn health(&self) -> Result<(), ClientError> {
        let path = "/onos/vnets/api/status";
        let a = self.call(Method::GET, path, None).await?;
        if a.status == StatusCode::OK {
            Ok(())
        } else {
            Err(Self::status_error(&Method::GET, path, &a))
        }
    }

    /// Creates a network (with address management when `cidrs` is set). An existing network
    /// with the same settings is a success; one with other settings is reported, not changed.
    pub async fn create_network(&self, req: &NetworkRequest) -> Result<CreateOutcome, ClientError> {
        let path = "/api/v1/networks";
        let a = self
            .call(Method::POST, path, Some(&Self::json(req)))
            .await?;
        match a.status {
            StatusCode::OK | StatusCode::CREATED => {
                Ok(CreateOutcome::Ready(Self::decode(path, &a)?))
            }
            StatusCode::CONFLICT => match self.get_network(&req.name).await? {
                Some(view) => Ok(CreateOutcome::ExistsWithOtherSettings(view)),
                None => Err(Self::status_error(&Method::POST, path, &a)),
            },
            _ => Err(Self::status_error(&Method::POST, path, &a)),
        }
    }

    /// One network, `None` when the controller has none of that name.
    pub async fn get_network(&self, name: &str) -> Result<Option<NetworkView>, ClientError> {
        let path = format!("/api/v1/networks/{}", encode_segment(name));
        let a = self.call(Method::GET, &path, None).await?;
        match a.status {
            StatusCode::OK => Ok(Some(Self::decode(&path, &a)?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Self::status_error(&Method::GET, &path, &a)),
        }
    }

    /// Every network with its members and allocations.
    pub async fn list_networks(&self) -> Result<Vec<NetworkView>, ClientError> {
        let path = "/api/v1/networks";
        let a = self.call(Method::GET, path, None).await?;
        if a.status != StatusCode::OK {
            return Err(Self::status_error(&Method::GET, path, &a));
        }
        Self::decode(path, &a)
    }

    /// Deletes a network and its memberships; an unknown network (404) is a success.
    pub async fn delete_network(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/onos/vnets/api/{}", encode_segment(name));
        let a = self.call(Method::DELETE, &path, None).await?;
        match a.status.as_u16() {
            200 | 204 | 404 => Ok(()),
            _ => Err(Self::status_error(&Method::DELETE, &path, &a)),
        }
    }

    /// Connected switches and their ports.
    pub async fn switches(&self) -> Result<Vec<SwitchView>, ClientError> {
        let path = "/api/v1/switches";
        let a = self.call(Method::GET, path, None).await?;
        if a.status != StatusCode::OK {
            return Err(Self::status_error(&Method::GET, path, &a));
        }
        Self::decode(path, &a)
    }

    /// Adds `port` (`of:<dpid>/<n>`) to `network`; re-adding is a no-op.
    pub async fn add_port(&self, network: &str, port: &str) -> Result<(), ClientError> {
        let path = "/onos/vnets/api/port";
        let body = serde_json::json!({"networkId": network, "networkEndpoints": [port]});
        let a = self
            .call(Method::POST, path, Some(&Self::json(&body)))
            .await?;
        match a.status.as_u16() {
            200 | 204 => Ok(()),
            _ => Err(Self::status_error(&Method::POST, path, &a)),
        }
    }

    /// Removes `port` from `network`.
    pub async fn remove_port(&self, network: &str, port: &str) -> Result<(), ClientError> {
        let path = "/onos/vnets/api/port";
        let body = serde_json::json!({"networkId": network, "networkEndpoints": [port]});
        let a = self
            .call(Method::DELETE, path, Some(&Self::json(&body)))
            .await?;
        match a.status.as_u16() {
            200 | 204 => Ok(()),
            _ => Err(Self::status_error(&Method::DELETE, path, &a)),
        }
    }

    /// Every membership with its port's owner.
    pub async fn memberships(&self) -> Result<Vec<Membership>, ClientError> {
        let path = "/api/v1/attachments";
        let a = self.call(Method::GET, path, None).await?;
        if a.status != StatusCode::OK {
            return Err(Self::status_error(&Method::GET, path, &a));
        }
        Self::decode(path, &a)
    }

    /// The per-port path `/api/v1/switches/{dpid}/ports/{n}/<what>` of `port`.
    fn port_path(port: &str, what: &str) -> Result<String, ClientError> {
        let id: PortId = port.parse().map_err(|e| ClientError::Status {
            method: "PORT".into(),
            path: port.to_string(),
            status: 400,
            message: format!("{e}"),
        })?;
        Ok(format!(
            "/api/v1/switches/of:{:016x}/ports/{}/{what}",
            id.dpid, id.port
        ))
    }

    /// Records who a member port belongs to (what the node's agent does on attach).
    pub async fn set_port_owner(
        &self,
        port: &str,
        pod: Option<&str>,
        attachment: &str,
        interface: &str,
    ) -> Result<(), ClientError> {
        let path = Self::port_path(port, "owner")?;
        let body =
            serde_json::json!({"pod": pod, "attachment": attachment, "interface": interface});
        let a = self
            .call(Method::PUT, &path, Some(&Self::json(&body)))
            .await?;
        match a.status.as_u16() {
            200 | 204 => Ok(()),
            _ => Err(Self::status_error(&Method::PUT, &path, &a)),
        }
    }

    /// Moves `port` from network `from` to network `to` in one controller change, live: the
    /// pod keeps its interface and the port its owner; only the membership changes.
    /// Repeating a finished move is a no-op.
    pub async fn move_port(
        &self,
        port: &str,
        from: &str,
        to: &str,
    ) -> Result<MoveOutcome, ClientError> {
        let path = Self::port_path(port, "move")?;
        let body = serde_json::json!({"from": from, "to": to});
        let a = self
            .call(Method::POST, &path, Some(&Self::json(&body)))
            .await?;
        if a.status != StatusCode::OK {
            return Err(Self::status_error(&Method::POST, &path, &a));
        }
        #[derive(Deserialize)]
        struct Moved {
            moved: bool,
        }
        Ok(if Self::decode::<Moved>(&path, &a)?.moved {
            MoveOutcome::Moved
        } else {
            MoveOutcome::AlreadyThere
        })
    }

    /// Frees the addresses `owner` holds on `network` (idempotent).
    pub async fn release(&self, network: &str, owner: &str) -> Result<usize, ClientError> {
        let path = format!("/api/v1/networks/{}/release", encode_segment(network));
        let body = serde_json::json!({ "owner": owner });
        let a = self
            .call(Method::POST, &path, Some(&Self::json(&body)))
            .await?;
        match a.status.as_u16() {
            200 => {
                #[derive(Deserialize)]
                struct Released {
                    released: usize,
                }
                Ok(Self::decode::<Released>(&path, &a)?.released)
            }
            404 => Ok(0),
            _ => Err(Self::status_error(&Method::POST, &path, &a)),
        }
    }
}

/// Percent-encodes a path segment (network names are DNS-like, but never trust input).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_paths() {
        assert_eq!(
            ControllerClient::port_path("of:00000000000000a1/3", "move").unwrap(),
            "/api/v1/switches/of:00000000000000a1/ports/3/move"
        );
        assert!(ControllerClient::port_path("of:1/x", "move").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let p = RetryPolicy {
            attempts: 10,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(700),
            timeout: Duration::from_secs(1),
        };
        let waits: Vec<u128> = (1..=5).map(|i| p.backoff(i).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 700, 700]);
        assert_eq!(p.backoff(200), Duration::from_millis(700));
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["ftp://x", "not a url", "http://h:1/path", "https://h:1"] {
            assert!(
                matches!(
                    ControllerClient::new(url, None, RetryPolicy::default()),
                    Err(ClientError::InvalidUrl { .. })
                ),
                "{url}"
            );
        }
        assert!(
            ControllerClient::new("http://127.0.0.1:8181/", None, RetryPolicy::default()).is_ok()
        );
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("blue-1.x"), "blue-1.x");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
