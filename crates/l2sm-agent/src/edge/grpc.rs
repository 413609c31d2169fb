//! The edge's gRPC server: upstream's `nedpb.NedService` on hyper's HTTP/2 server (cleartext
//! with prior knowledge, as grpc-go's insecure server, or TLS with ALPN `h2` and client
//! certificates), unary calls only.
//!
//! Listener rules: a connection cap (connections above it are closed at once), an address
//! allow-list checked before anything is read, a TLS handshake timeout, a deadline for the
//! first request of a connection (slow-loris prefaces and headers), an idle timeout between
//! requests, a per-request body timeout, at most [`Limits::max_streams`] concurrent requests
//! per connection, a header list bound and [`l2sm_ned::grpc::MAX_MESSAGE`] per message.
//! Answers follow grpc-go: trailers-only for errors, `grpc-status`/`grpc-message`
//! (percent-encoded) in the trailers, UNIMPLEMENTED for unknown services and methods.

use futures::future::BoxFuture;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ipnet::IpNet;
use l2sm_ned::grpc::{self, Code, Method, Status};
use l2sm_ned::{
    AttachInterfaceRequest, AttachInterfaceResponse, ConnectNetworkRequest, ConnectNetworkResponse,
    CreateVxlanRequest, CreateVxlanResponse, DisconnectNetworkRequest, DisconnectNetworkResponse,
    Message,
};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// What the server calls for each method.
pub trait NedService: Send + Sync + 'static {
    /// `CreateVxlan`.
    fn create_vxlan(
        &self,
        req: CreateVxlanRequest,
    ) -> BoxFuture<'_, Result<CreateVxlanResponse, Status>>;
    /// `AttachInterface`.
    fn attach_interface(
        &self,
        req: AttachInterfaceRequest,
    ) -> BoxFuture<'_, Result<AttachInterfaceResponse, Status>>;
    /// `l2sm.edge.v1.EdgeService/ConnectNetwork` (UNIMPLEMENTED unless served).
    fn connect_network(
        &self,
        _req: ConnectNetworkRequest,
    ) -> BoxFuture<'_, Result<ConnectNetworkResponse, Status>> {
        Box::pin(async { Err(unimplemented(Method::ConnectNetwork)) })
    }
    /// `l2sm.edge.v1.EdgeService/DisconnectNetwork` (UNIMPLEMENTED unless served).
    fn disconnect_network(
        &self,
        _req: DisconnectNetworkRequest,
    ) -> BoxFuture<'_, Result<DisconnectNetworkResponse, Status>> {
        Box::pin(async { Err(unimplemented(Method::DisconnectNetwork)) })
    }
}

fn unimplemented(m: Method) -> Status {
    Status::new(
        Code::Unimplemented,
        format!(
            "unknown method {} for service {}",
            m.name(),
            grpc::EDGE_SERVICE
        ),
    )
}

/// Bounds of the listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Bound of the TLS handshake.
    pub handshake_timeout: Duration,
    /// A connection must have sent a complete request header by then (preface included).
    pub first_request_timeout: Duration,
    /// A connection with no request in progress is closed after this long.
    pub idle_timeout: Duration,
    /// Bound of reading one request's body.
    pub body_timeout: Duration,
    /// Concurrent requests (HTTP/2 streams) per connection.
    pub max_streams: u32,
    /// Bound of one request's header list, bytes.
    pub max_header_list: u32,
    /// Largest request message.
    pub max_message: usize,
    /// How long a connection told to go away (GOAWAY after a timeout) may still take to
    /// finish before it is dropped.
    pub goaway_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            handshake_timeout: Duration::from_secs(10),
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(10),
            max_streams: 8,
            max_header_list: 16 * 1024,
            max_message: grpc::MAX_MESSAGE,
            goaway_grace: Duration::from_secs(5),
        }
    }
}

/// Why a connection was closed without being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over [`Limits::max_connections`].
    ConnectionCap,
    /// The peer address is not in the allow-list.
    NotAllowed,
    /// TLS handshake failed (no or bad client certificate, timeout, not TLS).
    Tls,
}

impl Refusal {
    /// Every reason (closed metric label set).
    pub const ALL: [Refusal; 3] = [Refusal::ConnectionCap, Refusal::NotAllowed, Refusal::Tls];

    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::ConnectionCap => "connection_cap",
            Refusal::NotAllowed => "not_allowed",
            Refusal::Tls => "tls",
        }
    }
}

/// Counters of the server; labels come from closed sets (method: the four methods or
/// `other`; code: the 17 gRPC codes; refusal: [`Refusal::ALL`]).
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections served.
    pub connections: AtomicU64,
    refused: [AtomicU64; 3],
    // [method or other][code]
    requests: [[AtomicU64; 17]; 5],
}

fn method_slot(m: Option<Method>) -> usize {
    match m {
        Some(Method::CreateVxlan) => 0,
        Some(Method::AttachInterface) => 1,
        Some(Method::ConnectNetwork) => 2,
        Some(Method::DisconnectNetwork) => 3,
        None => 4,
    }
}

impl Stats {
    fn refuse(&self, r: Refusal) {
        self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections refused for `r`.
    pub fn refused(&self, r: Refusal) -> u64 {
        self.refused[r as usize].load(Ordering::Relaxed)
    }

    fn count(&self, m: Option<Method>, c: Code) {
        self.requests[method_slot(m)][usize::from(c.value())].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests of method `m` (`None`: any other path) answered with `c`.
    pub fn requests(&self, m: Option<Method>, c: Code) -> u64 {
        self.requests[method_slot(m)][usize::from(c.value())].load(Ordering::Relaxed)
    }

    /// The counters in Prometheus text format (non-zero request series only).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# TYPE l2sm_edge_grpc_connections_total counter\n");
        out.push_str(&format!(
            "l2sm_edge_grpc_connections_total {}\n",
            self.connections.load(Ordering::Relaxed)
        ));
        out.push_str("# TYPE l2sm_edge_grpc_refused_total counter\n");
        for r in Refusal::ALL {
            out.push_str(&format!(
                "l2sm_edge_grpc_refused_total{{reason=\"{}\"}} {}\n",
                r.name(),
                self.refused(r)
            ));
        }
        out.push_str("# TYPE l2sm_edge_grpc_requests_total counter\n");
        for m in Method::ALL.map(Some).into_iter().chain([None]) {
            for c in Code::ALL {
                let n = self.requests(m, c);
                if n > 0 {
                    out.push_str(&format!(
                        "l2sm_edge_grpc_requests_total{{method=\"{}\",code=\"{}\"}} {n}\n",
                        m.map_or("other", Method::name),
                        c.name()
                    ));
                }
            }
        }
        out
    }
}

/// Who may connect and how.
pub struct Access {
    /// TLS (client certificates verified by the acceptor's configuration); `None`: cleartext
    /// HTTP/2 with prior knowledge (upstream's insecure server).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Peer addresses allowed (empty: any).
    pub allow: Vec<IpNet>,
}

/// The body of an answer: at most one data frame, then the trailers (if any).
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

fn status_headers(h: &mut HeaderMap, s: &Status) {
    h.insert("grpc-status", HeaderValue::from(u16::from(s.code.value())));
    if !s.message.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&grpc::percent_encode(&s.message)) {
            h.insert("grpc-message", v);
        }
    }
}

/// A trailers-only answer (HTTP status, content type and status in one HEADERS frame).
fn error_response(http: StatusCode, s: &Status) -> Response<GrpcBody> {
    let mut r = Response::new(GrpcBody {
        data: None,
        trailers: None,
    });
    *r.status_mut() = http;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(grpc::CONTENT_TYPE));
    status_headers(r.headers_mut(), s);
    r
}

fn ok_response(message: Vec<u8>) -> Response<GrpcBody> {
    let mut trailers = HeaderMap::new();
    status_headers(&mut trailers, &Status::new(Code::Ok, ""));
    let mut r = Response::new(GrpcBody {
        data: Some(Bytes::from(grpc::frame(&message))),
        trailers: Some(trailers),
    });
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(grpc::CONTENT_TYPE));
    r
}

/// Reads the whole body, bounded in size (checked from the message prefix as soon as it
/// arrives) and in time.
async fn read_body(mut body: Incoming, limits: &Limits) -> Result<Vec<u8>, Status> {
    let read = async {
        let mut buf = Vec::new();
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
            match frame {
                None => return Ok(buf),
                Some(Err(e)) => {
                    return Err(Status::new(Code::Cancelled, format!("request body: {e}")))
                }
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        buf.extend_from_slice(&d);
                        grpc::check_prefix(&buf, limits.max_message)?;
                        if buf.len() > grpc::PREFIX_LEN + limits.max_message {
                            return Err(Status::new(
                                Code::Internal,
                                "grpc: server received more than one request message for unary RPC",
                            ));
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(limits.body_timeout, read)
        .await
        .map_err(|_| Status::new(Code::DeadlineExceeded, "request body not received in time"))?
}

async fn call(service: &dyn NedService, method: Method, message: &[u8]) -> Result<Vec<u8>, Status> {
    let bad = |e: l2sm_ned::DecodeError| {
        Status::new(
            Code::Internal,
            format!("grpc: error unmarshalling request: {e}"),
        )
    };
    Ok(match method {
        Method::CreateVxlan => service
            .create_vxlan(CreateVxlanRequest::decode(message).map_err(bad)?)
            .await?
            .encode(),
        Method::AttachInterface => service
            .attach_interface(AttachInterfaceRequest::decode(message).map_err(bad)?)
            .await?
            .encode(),
        Method::ConnectNetwork => service
            .connect_network(ConnectNetworkRequest::decode(message).map_err(bad)?)
            .await?
            .encode(),
        Method::DisconnectNetwork => service
            .disconnect_network(DisconnectNetworkRequest::decode(message).map_err(bad)?)
            .await?
            .encode(),
    })
}

/// Answers one request.
async fn handle(
    req: Request<Incoming>,
    service: &dyn NedService,
    limits: &Limits,
    stats: &Stats,
) -> Response<GrpcBody> {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let content_type = header("content-type").unwrap_or("").to_string();
    let is_grpc = content_type == grpc::CONTENT_TYPE
        || content_type.starts_with("application/grpc+")
        || content_type.starts_with("application/grpc;");
    if !is_grpc {
        stats.count(None, Code::InvalidArgument);
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Status::new(
                Code::InvalidArgument,
                format!("invalid gRPC request content-type {content_type:?}"),
            ),
        );
    }
    if req.method() != hyper::http::Method::POST {
        stats.count(None, Code::Internal);
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &Status::new(
                Code::Internal,
                format!(
                    "Received a HEADERS frame with :method {:?} which should be POST",
                    req.method().as_str()
                ),
            ),
        );
    }
    let method = match Method::from_path(req.uri().path()) {
        Ok(m) => m,
        Err(s) => {
            stats.count(None, s.code);
            tracing::debug!(code = s.code.name(), "edge gRPC: {}", s.message);
            return error_response(StatusCode::OK, &s);
        }
    };
    let encoding = header("grpc-encoding").map(str::to_owned);
    let outcome = async {
        grpc::check_encoding(encoding.as_deref())?;
        let body = read_body(req.into_body(), limits).await?;
        let message = grpc::unary_message(&body, limits.max_message)?;
        call(service, method, message).await
    }
    .await;
    match outcome {
        Ok(answer) => {
            stats.count(Some(method), Code::Ok);
            ok_response(answer)
        }
        Err(s) => {
            stats.count(Some(method), s.code);
            tracing::info!(
                method = method.name(),
                code = s.code.name(),
                "edge gRPC call failed: {}",
                s.message
            );
            error_response(StatusCode::OK, &s)
        }
    }
}

/// What the connection's watchdog needs to know.
struct Activity {
    in_flight: AtomicUsize,
    requests: AtomicU64,
    last: std::sync::Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_connection<I>(
    io: I,
    service: Arc<dyn NedService>,
    limits: Arc<Limits>,
    stats: Arc<Stats>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        requests: AtomicU64::new(0),
        last: std::sync::Mutex::new(Instant::now()),
    });
    let svc = {
        let activity = activity.clone();
        let limits = limits.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            activity.in_flight.fetch_add(1, Ordering::AcqRel);
            activity.requests.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(activity.clone());
            let (service, limits, stats) = (service.clone(), limits.clone(), stats.clone());
            async move {
                let r = handle(req, &*service, &limits, &stats).await;
                drop(guard);
                Ok::<_, std::convert::Infallible>(r)
            }
        })
    };
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(limits.max_header_list)
        .max_pending_accept_reset_streams(Some(16))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let started = Instant::now();
    let tick =
        (limits.first_request_timeout.min(limits.idle_timeout) / 4).max(Duration::from_millis(50));
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("edge gRPC connection ended: {e}");
                }
                return;
            }
            _ = tokio::time::sleep(tick) => {
                if let Some(since) = closing {
                    if since.elapsed() > limits.goaway_grace {
                        tracing::debug!("edge gRPC connection dropped after GOAWAY grace");
                        return;
                    }
                    continue;
                }
                let busy = activity.in_flight.load(Ordering::Acquire) > 0;
                let idle_for = activity.last.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
                let never = activity.requests.load(Ordering::Relaxed) == 0;
                let expired = if never {
                    started.elapsed() > limits.first_request_timeout
                } else {
                    !busy && idle_for > limits.idle_timeout
                };
                if expired {
                    tracing::debug!(first = never, "edge gRPC connection timed out");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
            }
        }
    }
}

fn allowed(allow: &[IpNet], peer: SocketAddr) -> bool {
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    allow.is_empty() || allow.iter().any(|n| n.contains(&ip))
}

/// Serves until the listener fails.
pub async fn serve(
    listener: TcpListener,
    access: Access,
    limits: Limits,
    stats: Arc<Stats>,
    service: Arc<dyn NedService>,
) -> std::io::Result<()> {
    let limits = Arc::new(limits);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let access = Arc::new(access);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            // Out of file descriptors and the like: wait, do not spin.
            Err(e) => {
                tracing::warn!("edge gRPC accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !allowed(&access.allow, peer) {
            stats.refuse(Refusal::NotAllowed);
            tracing::warn!(%peer, "edge gRPC connection refused: address not allowed");
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            stats.refuse(Refusal::ConnectionCap);
            tracing::warn!(%peer, max = limits.max_connections, "edge gRPC connection refused: too many connections");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (service, limits, stats, access) = (
            service.clone(),
            limits.clone(),
            stats.clone(),
            access.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            match &access.tls {
                None => {
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    serve_connection(tcp, service, limits, stats).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => {
                            stats.connections.fetch_add(1, Ordering::Relaxed);
                            serve_connection(tls, service, limits, stats).await
                        }
                        Ok(Err(e)) => {
                            stats.refuse(Refusal::Tls);
                            tracing::warn!(%peer, "edge gRPC TLS handshake failed: {e}");
                        }
                        Err(_) => {
                            stats.refuse(Refusal::Tls);
                            tracing::warn!(%peer, "edge gRPC TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
}
