//! A typed async client of the controller's REST API, used by the agent, the lab, the CLI, the
//! operator and the benchmarks. Every path and body of the contract is spelled here once.
//!
//! Transient failures (connection refused, timeouts, 502/503/504) are retried as the
//! [`RetryPolicy`] says; a client can dial from inside a network namespace (how the lab's CLI
//! reaches a controller that lives on the lab's underlay without giving the host an address
//! there).

use crate::error::ErrorBody;
use crate::v1::{
    Allocated, AllocationRequest, AttachmentView, CreateNetwork, GcRequest, LinkView, MoveRequest,
    Moved, NetworkView, PortOwnerRequest, PortView, Released, SettleRequest, Settled, SwitchStatus,
    WaitRequest,
};
use crate::vnets::NetworkDto;
use base64::Engine as _;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use l2sm_pipeline::ids::PortId;
use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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
    /// A request argument cannot be sent (e.g. a malformed port id).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No answer (connection refused, reset, timeout), after every retry.
    #[error("controller API at {url} is unreachable after {attempts} attempt(s): {reason}")]
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

    /// The status code of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The controller's own words for an error answer (its `message`), else the whole error.
    pub fn message(&self) -> String {
        match self {
            ClientError::Status { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Short machine-friendly reason for status conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            ClientError::Unreachable { .. } => "ControllerUnreachable",
            ClientError::Status { .. } | ClientError::Decode { .. } => "ControllerError",
            ClientError::InvalidUrl { .. } | ClientError::InvalidRequest(_) => {
                "ControllerMisconfigured"
            }
        }
    }
}

/// How long an idle kept-alive connection may be reused: half the controller's idle limit.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// One try with a 10 s deadline: for callers that report failures at once (CLI, agent).
    pub fn once() -> Self {
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Wait before try number `attempt + 1` (`attempt` counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// TLS settings of a client: whom to trust, and the client certificate to show.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM CA certificates the controller's certificate must chain to; the system's roots
    /// when `None`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (an agent's node certificate), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    /// The rustls client configuration of these options.
    fn config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                for c in certs {
                    let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{}: no CA certificate", path.display()));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    let _ = roots.add(c);
                }
                if roots.is_empty() {
                    return Err("no system CA certificates found; give a CA file".into());
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let mut config = match (&self.client_cert, &self.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| format!("{}: {e}", cert.display()))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{}: {e}", cert.display()))?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("{}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| format!("{}: {e}", cert.display()))?
            }
            _ => return Err("give both a client certificate and its key".into()),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A connection to the controller: plain TCP, or TLS over it.
#[derive(Debug)]
enum Conn {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl hyper_util::client::legacy::connect::Connection for Conn {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

/// Opens connections to the controller, from this process's network namespace or from
/// another one (on a blocking thread: `setns` never runs on an async worker), wrapped in TLS
/// for `https://` addresses.
#[derive(Clone)]
struct Dialer {
    netns: Option<Arc<PathBuf>>,
    timeout: Duration,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("netns", &self.netns)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

type DialFuture = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<Conn>>> + Send>>;

impl tower_service::Service<Uri> for Dialer {
    type Response = TokioIo<Conn>;
    type Error = std::io::Error;
    type Future = DialFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (netns, timeout, tls) = (self.netns.clone(), self.timeout, self.tls.clone());
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_string();
            let https = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            // Every address the name resolves to, in order, as a resolver-backed connector
            // would: a Service name with one dead address must not fail the whole call.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::other(format!("{host} resolves to nothing")));
            }
            let stream = connect_first(&addrs, netns, timeout).await?;
            stream.set_nodelay(true)?;
            if !https {
                return Ok(TokioIo::new(Conn::Plain(stream)));
            }
            let tls = tls.ok_or_else(|| std::io::Error::other("https without TLS settings"))?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| std::io::Error::other(format!("{host}: {e}")))?;
            let stream = tokio::time::timeout(timeout, tls.connect(name, stream))
                .await
                .map_err(|_| {
                    std::io::Error::other(format!("TLS handshake with {host} timed out"))
                })??;
            Ok(TokioIo::new(Conn::Tls(Box::new(stream))))
        })
    }
}

/// The first of `addrs` that accepts a connection; the last failure when none does.
async fn connect_first(
    addrs: &[SocketAddr],
    netns: Option<Arc<PathBuf>>,
    timeout: Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = std::io::Error::other("no address to connect to");
    for &addr in addrs {
        match connect(addr, netns.clone(), timeout).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One TCP connection to `addr`, from the network namespace at `netns` when given.
async fn connect(
    addr: SocketAddr,
    netns: Option<Arc<PathBuf>>,
    timeout: Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    match netns {
        None => tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other(format!("timed out connecting to {addr}")))?,
        Some(path) => {
            let std_stream = tokio::task::spawn_blocking(move || {
                let ns = l2sm_netns::Netns::open(path.as_path()).map_err(std::io::Error::other)?;
                l2sm_netns::run_in_netns(&ns, move || {
                    std::net::TcpStream::connect_timeout(&addr, timeout)
                })
                .map_err(std::io::Error::other)?
            })
            .await
            .map_err(std::io::Error::other)??;
            std_stream.set_nonblocking(true)?;
            tokio::net::TcpStream::from_std(std_stream)
        }
    }
}

/// What [`ControllerClient::ensure_network`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Created now, or it existed with the same settings.
    Ready(NetworkView),
    /// A network of that name exists with other address settings (the controller does not
    /// change them); its current state.
    ExistsWithOtherSettings(NetworkView),
}

/// Client of one controller.
#[derive(Clone)]
pub struct ControllerClient {
    base: String,
    authorization: Option<String>,
    retry: RetryPolicy,
    http: Client<Dialer, Full<Bytes>>,
}

impl std::fmt::Debug for ControllerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerClient")
            .field("base", &self.base)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// One answer: status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl ControllerClient {
    /// A client of the controller at `base_url` (`http://host:port`), with Basic credentials.
    pub fn new(
        base_url: &str,
        credentials: Option<(String, String)>,
        retry: RetryPolicy,
    ) -> Result<Self, ClientError> {
        Self::build(base_url, credentials, retry, None, None)
    }

    /// Like [`ControllerClient::new`], with TLS settings for an `https://` address (without
    /// them, `https://` trusts the system's CA certificates). Also the way an agent shows its
    /// node certificate; credentials may then be `None`.
    pub fn with_tls(
        base_url: &str,
        credentials: Option<(String, String)>,
        retry: RetryPolicy,
        tls: TlsOptions,
    ) -> Result<Self, ClientError> {
        Self::build(base_url, credentials, retry, None, Some(tls))
    }

    /// Like [`ControllerClient::new`], dialing from the network namespace at `netns`.
    pub fn in_netns(
        base_url: &str,
        credentials: Option<(String, String)>,
        retry: RetryPolicy,
        netns: PathBuf,
    ) -> Result<Self, ClientError> {
        Self::build(base_url, credentials, retry, Some(netns), None)
    }

    fn build(
        base_url: &str,
        credentials: Option<(String, String)>,
        retry: RetryPolicy,
        netns: Option<PathBuf>,
        tls: Option<TlsOptions>,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: base_url.to_string(),
            reason,
        };
        let uri: Uri = base
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
        let https = uri.scheme_str() == Some("https");
        if !(https || uri.scheme_str() == Some("http")) || uri.host().is_none() {
            return Err(invalid(
                "expected http://HOST[:PORT] or https://HOST[:PORT]".into(),
            ));
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(invalid(
                "give the controller's address without a path".into(),
            ));
        }
        let authorization = credentials.map(|(user, password)| {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        });
        let tls = match (https, tls) {
            (false, _) => None,
            (true, opts) => Some(tokio_rustls::TlsConnector::from(
                opts.unwrap_or_default().config().map_err(invalid)?,
            )),
        };
        let dialer = Dialer {
            netns: netns.map(Arc::new),
            timeout: retry.timeout,
            tls,
        };
        // Idle connections are dropped well before the controller's own idle limit (10 s,
        // its header timeout): a request sent on a connection the server is closing at that
        // moment fails with a reset, and the agent does not retry.
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(dialer);
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
            tracing_debug(path, attempt, wait);
            tokio::time::sleep(wait).await;
        }
    }

    /// A call with a JSON body.
    async fn call_json(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Answer, ClientError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ClientError::InvalidRequest(format!("cannot encode the body: {e}")))?;
        self.call(method, path, Some(&bytes)).await
    }

    /// `Ok` when the answer's status is one of `ok`, else the controller's error.
    fn expect(method: &Method, path: &str, a: Answer, ok: &[u16]) -> Result<Answer, ClientError> {
        if ok.contains(&a.status.as_u16()) {
            Ok(a)
        } else {
            Err(Self::status_error(method, path, &a))
        }
    }

    /// The controller's error answer as a [`ClientError::Status`].
    fn status_error(method: &Method, path: &str, a: &Answer) -> ClientError {
        ClientError::Status {
            method: method.to_string(),
            path: path.to_string(),
            status: a.status.as_u16(),
            message: ErrorBody::message_of(&a.body),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(path: &str, a: &Answer) -> Result<T, ClientError> {
        serde_json::from_slice(&a.body).map_err(|e| ClientError::Decode {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// GET `path`, 200 and a JSON body of type `T`.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let a = self.call(Method::GET, path, None).await?;
        let a = Self::expect(&Method::GET, path, a, &[200])?;
        Self::decode(path, &a)
    }

    // ---- upstream's vnets contract (/onos/vnets/api) ----

    /// `GET /onos/ui`: the readiness probe, answered without credentials (what upstream's
    /// operator and the benchmarks wait for).
    pub async fn ready(&self) -> Result<(), ClientError> {
        let path = "/onos/ui";
        let a = self.call(Method::GET, path, None).await?;
        Self::expect(&Method::GET, path, a, &[200]).map(drop)
    }

    /// `GET /onos/vnets/api/status`: the controller answers.
    pub async fn health(&self) -> Result<(), ClientError> {
        let path = "/onos/vnets/api/status";
        let a = self.call(Method::GET, path, None).await?;
        Self::expect(&Method::GET, path, a, &[200]).map(drop)
    }

    /// Whether a network of that name exists (`GET /onos/vnets/api/{name}`).
    pub async fn network_exists(&self, name: &str) -> Result<bool, ClientError> {
        let path = format!("/onos/vnets/api/{}", encode_segment(name));
        let a = self.call(Method::GET, &path, None).await?;
        match a.status.as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Self::expect(&Method::GET, &path, a, &[]).map(|_| false),
        }
    }

    /// Creates a network without address management (`POST /onos/vnets/api`); an existing
    /// network is left as it is.
    pub async fn create_vnet(&self, name: &str) -> Result<(), ClientError> {
        let path = "/onos/vnets/api";
        let a = self
            .call_json(Method::POST, path, &NetworkDto::network(name))
            .await?;
        Self::expect(&Method::POST, path, a, &[200, 204]).map(drop)
    }

    /// Deletes a network and its memberships; an unknown network (404) is a success.
    pub async fn delete_network(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/onos/vnets/api/{}", encode_segment(name));
        let a = self.call(Method::DELETE, &path, None).await?;
        Self::expect(&Method::DELETE, &path, a, &[200, 204, 404]).map(drop)
    }

    /// Adds ports (`of:<dpid>/<n>`) to `network`; re-adding is a no-op.
    pub async fn add_ports(&self, network: &str, ports: &[String]) -> Result<(), ClientError> {
        let path = "/onos/vnets/api/port";
        let a = self
            .call_json(Method::POST, path, &NetworkDto::ports(network, ports))
            .await?;
        Self::expect(&Method::POST, path, a, &[200, 204]).map(drop)
    }

    /// Adds one port to `network`.
    pub async fn add_port(&self, network: &str, port: &str) -> Result<(), ClientError> {
        self.add_ports(network, &[port.to_string()]).await
    }

    /// Removes ports from `network`.
    pub async fn remove_ports(&self, network: &str, ports: &[String]) -> Result<(), ClientError> {
        let path = "/onos/vnets/api/port";
        let a = self
            .call_json(Method::DELETE, path, &NetworkDto::ports(network, ports))
            .await?;
        Self::expect(&Method::DELETE, path, a, &[200, 204]).map(drop)
    }

    /// Removes one port from `network`.
    pub async fn remove_port(&self, network: &str, port: &str) -> Result<(), ClientError> {
        self.remove_ports(network, &[port.to_string()]).await
    }

    /// Makes `port` the network's mirror port (`POST /onos/vnets/api/mirror-port`).
    pub async fn set_mirror_port(&self, network: &str, port: &str) -> Result<(), ClientError> {
        let path = "/onos/vnets/api/mirror-port";
        let a = self
            .call_json(Method::POST, path, &NetworkDto::mirror(network, port))
            .await?;
        Self::expect(&Method::POST, path, a, &[200, 204]).map(drop)
    }

    // ---- the native API (/api/v1) ----

    /// Creates a network (with address management when `cidrs` is set). `Ok(true)` when it
    /// was created now, `Ok(false)` when it existed with the same settings; a network with
    /// other settings is a 409 [`ClientError::Status`].
    pub async fn create_network(
        &self,
        req: &CreateNetwork,
    ) -> Result<(bool, Option<NetworkView>), ClientError> {
        let path = "/api/v1/networks";
        let a = self.call_json(Method::POST, path, req).await?;
        let a = Self::expect(&Method::POST, path, a, &[200, 201])?;
        let created = a.status == StatusCode::CREATED;
        Ok((created, Self::decode(path, &a)?))
    }

    /// Creates a network, or finds the one of that name: [`CreateOutcome::Ready`] when it was
    /// created now or exists with the same settings, [`CreateOutcome::ExistsWithOtherSettings`]
    /// with its current state when the controller keeps other address settings (it never
    /// changes them). For reconcilers, which report a differing plan instead of failing.
    pub async fn ensure_network(&self, req: &CreateNetwork) -> Result<CreateOutcome, ClientError> {
        let path = "/api/v1/networks";
        let a = self.call_json(Method::POST, path, req).await?;
        if a.status == StatusCode::CONFLICT {
            return match self.get_network(&req.name).await? {
                Some(view) => Ok(CreateOutcome::ExistsWithOtherSettings(view)),
                // Deleted meanwhile: the conflict itself is the answer.
                None => Err(Self::status_error(&Method::POST, path, &a)),
            };
        }
        let a = Self::expect(&Method::POST, path, a, &[200, 201])?;
        Ok(CreateOutcome::Ready(Self::decode(path, &a)?))
    }

    /// One network, `None` when the controller has none of that name.
    pub async fn get_network(&self, name: &str) -> Result<Option<NetworkView>, ClientError> {
        let path = format!("/api/v1/networks/{}", encode_segment(name));
        let a = self.call(Method::GET, &path, None).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let a = Self::expect(&Method::GET, &path, a, &[200])?;
        Ok(Some(Self::decode(&path, &a)?))
    }

    /// Every network with its members and allocations.
    pub async fn networks(&self) -> Result<Vec<NetworkView>, ClientError> {
        self.get("/api/v1/networks").await
    }

    /// Sets the abuse limits of a network's pod ports; answers the network as it is now.
    pub async fn set_network_limits(
        &self,
        network: &str,
        limits: &crate::v1::NetworkLimits,
    ) -> Result<NetworkView, ClientError> {
        let path = format!("/api/v1/networks/{}/limits", encode_segment(network));
        let a = self.call_json(Method::PUT, &path, limits).await?;
        let a = Self::expect(&Method::PUT, &path, a, &[200])?;
        Self::decode(&path, &a)
    }

    /// Stops mirroring a network.
    pub async fn clear_mirror_port(&self, network: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/networks/{}/mirror", encode_segment(network));
        let a = self.call(Method::DELETE, &path, None).await?;
        Self::expect(&Method::DELETE, &path, a, &[200, 204]).map(drop)
    }

    /// Allocates addresses on `network` for `req.owner` (the same answer when repeated).
    pub async fn allocate(
        &self,
        network: &str,
        req: &AllocationRequest,
    ) -> Result<Vec<ipnet::IpNet>, ClientError> {
        let path = format!("/api/v1/networks/{}/allocations", encode_segment(network));
        let a = self.call_json(Method::POST, &path, req).await?;
        let a = Self::expect(&Method::POST, &path, a, &[200])?;
        Ok(Self::decode::<Allocated>(&path, &a)?.ips)
    }

    /// Frees the addresses `owner` holds on `network` (idempotent; an unknown network frees 0).
    pub async fn release(&self, network: &str, owner: &str) -> Result<usize, ClientError> {
        let path = format!("/api/v1/networks/{}/release", encode_segment(network));
        let req = AllocationRequest {
            owner: owner.to_string(),
            ..Default::default()
        };
        let a = self.call_json(Method::POST, &path, &req).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(0);
        }
        let a = Self::expect(&Method::POST, &path, a, &[200])?;
        Ok(Self::decode::<Released>(&path, &a)?.released)
    }

    /// Frees what owners starting with `req.owner_prefix` hold unless they are listed valid.
    pub async fn ipam_gc(&self, req: &GcRequest) -> Result<usize, ClientError> {
        let path = "/api/v1/ipam/gc";
        let a = self.call_json(Method::POST, path, req).await?;
        let a = Self::expect(&Method::POST, path, a, &[200])?;
        Ok(Self::decode::<Released>(path, &a)?.released)
    }

    /// Connected switches and their ports.
    pub async fn switches(&self) -> Result<Vec<SwitchStatus>, ClientError> {
        self.get("/api/v1/switches").await
    }

    /// Configured links with their liveness.
    pub async fn links(&self) -> Result<Vec<LinkView>, ClientError> {
        self.get("/api/v1/links").await
    }

    /// Every port of every connected switch.
    pub async fn ports(&self) -> Result<Vec<PortView>, ClientError> {
        self.get("/api/v1/ports").await
    }

    /// Every membership with its port's owner.
    pub async fn attachments(&self) -> Result<Vec<AttachmentView>, ClientError> {
        self.get("/api/v1/attachments").await
    }

    /// The flows the controller keeps on switch `dpid`.
    pub async fn switch_flows(&self, dpid: u64) -> Result<serde_json::Value, ClientError> {
        self.get(&format!("/api/v1/switches/of:{dpid:016x}/flows"))
            .await
    }

    /// The groups the controller keeps on switch `dpid`.
    pub async fn switch_groups(&self, dpid: u64) -> Result<serde_json::Value, ClientError> {
        self.get(&format!("/api/v1/switches/of:{dpid:016x}/groups"))
            .await
    }

    /// The per-port path `/api/v1/switches/{dpid}/ports/{n}/<what>`.
    fn port_path(port: PortId, what: &str) -> String {
        format!(
            "/api/v1/switches/of:{:016x}/ports/{}/{what}",
            port.dpid, port.port
        )
    }

    /// Records who a member port belongs to (what the node's agent does on attach).
    pub async fn set_port_owner(
        &self,
        port: PortId,
        owner: &PortOwnerRequest,
    ) -> Result<(), ClientError> {
        let path = Self::port_path(port, "owner");
        let a = self.call_json(Method::PUT, &path, owner).await?;
        Self::expect(&Method::PUT, &path, a, &[200, 204]).map(drop)
    }

    /// Makes a pod port `network`'s mirror; 409 when another port mirrors it already.
    pub async fn claim_mirror_port(&self, port: PortId, network: &str) -> Result<(), ClientError> {
        let path = Self::port_path(port, "mirror");
        let req = crate::v1::MirrorRequest {
            network: network.to_string(),
        };
        let a = self.call_json(Method::PUT, &path, &req).await?;
        Self::expect(&Method::PUT, &path, a, &[200, 204]).map(drop)
    }

    /// Stops a port mirroring any network.
    pub async fn release_mirror_port(&self, port: PortId) -> Result<(), ClientError> {
        let path = Self::port_path(port, "mirror");
        let a = self.call(Method::DELETE, &path, None).await?;
        Self::expect(&Method::DELETE, &path, a, &[200, 204]).map(drop)
    }

    /// Forgets who a port belongs to.
    pub async fn clear_port_owner(&self, port: PortId) -> Result<(), ClientError> {
        let path = Self::port_path(port, "owner");
        let a = self.call(Method::DELETE, &path, None).await?;
        Self::expect(&Method::DELETE, &path, a, &[200, 204]).map(drop)
    }

    /// Answers once the port's switch confirmed flows that make it a member of
    /// `req.network`; 409 when the switch has no session, 504 when the wait ran out.
    pub async fn wait_programmed(
        &self,
        port: PortId,
        req: &WaitRequest,
    ) -> Result<(), ClientError> {
        let path = Self::port_path(port, "wait");
        let a = self.call_json(Method::POST, &path, req).await?;
        Self::expect(&Method::POST, &path, a, &[200]).map(drop)
    }

    /// Answers once every connected switch holds every change made before the call (barrier
    /// confirmed); 504 when `timeout_ms` (at most 10 s) ran out first.
    pub async fn settle(&self, timeout_ms: u64) -> Result<Settled, ClientError> {
        let path = "/api/v1/settle";
        let a = self
            .call_json(Method::POST, path, &SettleRequest { timeout_ms })
            .await?;
        let a = Self::expect(&Method::POST, path, a, &[200])?;
        Self::decode(path, &a)
    }

    /// Moves `port` from network `from` to network `to` in one controller change, live: the
    /// pod keeps its interface and the port its owner. Repeating a finished move is a no-op
    /// (`moved` is false). The move is recorded whether the controller answers 200 (the
    /// port's switch confirmed it) or 202 (pending: the switch will get it when it can).
    pub async fn move_port(
        &self,
        port: PortId,
        from: &str,
        to: &str,
    ) -> Result<Moved, ClientError> {
        let path = Self::port_path(port, "move");
        let req = MoveRequest {
            from: from.to_string(),
            to: to.to_string(),
        };
        let a = self.call_json(Method::POST, &path, &req).await?;
        let a = Self::expect(&Method::POST, &path, a, &[200, 202])?;
        Self::decode(&path, &a)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let path = "/metrics";
        let a = self.call(Method::GET, path, None).await?;
        let a = Self::expect(&Method::GET, path, a, &[200])?;
        Ok(String::from_utf8_lossy(&a.body).into_owned())
    }
}

fn tracing_debug(path: &str, attempt: u32, wait: Duration) {
    tracing::debug!(%path, attempt, ?wait, "controller call failed; retrying");
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
        let port: PortId = "of:00000000000000a1/3".parse().unwrap();
        assert_eq!(
            ControllerClient::port_path(port, "move"),
            "/api/v1/switches/of:00000000000000a1/ports/3/move"
        );
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
        for url in [
            "ftp://x",
            "not a url",
            "http://h:1/path",
            "https://h:1/path",
        ] {
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
        // https:// with a CA file that cannot be read is refused up front.
        let missing_ca = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(matches!(
            ControllerClient::with_tls("https://h:1", None, RetryPolicy::default(), missing_ca),
            Err(ClientError::InvalidUrl { .. })
        ));
    }

    #[tokio::test]
    async fn every_resolved_address_is_tried_in_order() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (open_addr, closed_addr) = (open.local_addr().unwrap(), closed.local_addr().unwrap());
        drop(closed);
        let t = Duration::from_secs(2);
        let stream = connect_first(&[closed_addr, open_addr], None, t)
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), open_addr);
        assert!(connect_first(&[closed_addr], None, t).await.is_err());
        assert!(connect_first(&[], None, t).await.is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("blue-1.x"), "blue-1.x");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
