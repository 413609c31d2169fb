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
use hyper::body::Incoming;
use hyper::http::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ipnet::IpNet;
use l2sm_ned::grpc::{self, Code, Method, Status};
use l2sm_ned::server::{self, error_response, ok_response, GrpcBody};
use l2sm_ned::{
    AttachInterfaceRequest, AttachInterfaceResponse, ConnectNetworkRequest, ConnectNetworkResponse,
    CreateVxlanRequest, CreateVxlanResponse, DisconnectNetworkRequest, DisconnectNetworkResponse,
    Message,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
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
    if let Some(refused) = server::not_grpc(&req) {
        stats.count(None, Code::InvalidArgument);
        return refused;
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
        let body =
            server::read_body(req.into_body(), limits.max_message, limits.body_timeout).await?;
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
