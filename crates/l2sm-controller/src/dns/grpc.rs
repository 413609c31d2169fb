//! Upstream's DNS update API, `l2smdns.DnsService`, wire-compatible with upstream's generated
//! code (l2sm-dns `api/v1/dns.proto`), served on hyper's HTTP/2 server: over TLS with client
//! certificates, or cleartext with prior knowledge (upstream's way) only with an explicit
//! `--dns-grpc-insecure`.
//!
//! ```proto
//! syntax = "proto3";
//! package l2smdns;
//! service DnsService {
//!   rpc AddEntry(AddEntryRequest) returns (AddEntryResponse);
//!   rpc AddServer(AddServerRequest) returns (AddServerResponse);
//!   rpc DeleteEntry(DeleteEntryRequest) returns (DeleteEntryResponse);
//!   // Ours (not upstream's): a cluster controller's whole set of `inter` names.
//!   rpc ReplaceCluster(ReplaceClusterRequest) returns (ReplaceClusterResponse);
//! }
//! message ReplaceClusterRequest  { string cluster = 1; repeated DNSEntry entries = 2; }
//! message ReplaceClusterResponse { string message = 1; }
//! message DNSEntry { string pod_name = 1; string ip_address = 2; string network = 3; string scope = 4; }
//! message AddEntryRequest    { DNSEntry entry = 1; }   message AddEntryResponse    { string message = 1; }
//! message DeleteEntryRequest { DNSEntry entry = 1; }   message DeleteEntryResponse { string message = 1; }
//! message AddServerRequest   { Server server = 1; }    message AddServerResponse   { string message = 1; }
//! message Server { string domPort = 1; string serverDomain = 2; string serverPort = 3; }
//! ```
//!
//! `AddEntry` makes `<pod_name>.<network>.<scope>.l2sm` resolve to `ip_address` (a name may
//! have several addresses, as upstream), `DeleteEntry` removes that pair. `AddServer` asks
//! upstream's updater to write a CoreDNS `forward` block: this server is authoritative only
//! and forwards nothing, so it answers UNIMPLEMENTED (upstream's operator does not call it over
//! gRPC anyway: it edits its own cluster's CoreDNS with upstream's library).
//! `ReplaceCluster` is this project's extension for `<name>.<network>.inter.l2sm` (docs/dns.md):
//! cluster `cluster`'s names become exactly `entries` (scope `inter`), so a detached pod's name
//! goes with the next call; at most [`super::MAX_CLUSTER_ENTRIES`], every entry valid, no name
//! another cluster holds, or INVALID_ARGUMENT / FAILED_PRECONDITION and nothing changes.
//! Protobuf framing, statuses and the message codec rules are `l2sm-ned`'s.

use super::Zones;
use hyper::body::Incoming;
use hyper::http::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use l2sm_ned::grpc::{self, Code, Status};
use l2sm_ned::server::{self, error_response, ok_response, GrpcBody};
use l2sm_ned::wire::{self, DecodeError, Fields, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The service name.
pub const SERVICE: &str = "l2smdns.DnsService";
/// Upstream's port of the update API (the container's `SERVER_PORT`).
pub const UPSTREAM_PORT: u16 = 8081;

/// `DNSEntry`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsEntry {
    /// Pod name (upstream: the `l2sm/app` label, else the pod name).
    pub pod_name: String,
    /// Address, IPv4 or IPv6 text.
    pub ip_address: String,
    /// Network name.
    pub network: String,
    /// Scope (upstream's operator uses `inter`).
    pub scope: String,
}

/// `Server` (of `AddServerRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Server {
    /// CoreDNS server-block key (`domPort`).
    pub dom_port: String,
    /// Forward target host (`serverDomain`).
    pub server_domain: String,
    /// Forward target port (`serverPort`).
    pub server_port: String,
}

fn decode_strings<const N: usize>(
    buf: &[u8],
    names: [&'static str; N],
) -> Result<[String; N], DecodeError> {
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for f in Fields::new(buf) {
        let (number, value) = f?;
        let i = usize::try_from(number).unwrap_or(usize::MAX);
        if (1..=N).contains(&i) {
            out[i - 1] = wire::as_string(number, names[i - 1], value)?;
        }
    }
    Ok(out)
}

/// The embedded message of field 1 (a proto3 message field: the last one wins), if present.
fn decode_field1(buf: &[u8]) -> Result<Option<&[u8]>, DecodeError> {
    let mut last = None;
    for f in Fields::new(buf) {
        match f? {
            (1, Value::Bytes(b)) => last = Some(b),
            (1, v) => {
                return Err(DecodeError::WrongWireType {
                    field: 1,
                    name: "entry",
                    got: v.wire_type(),
                    want: wire::LEN,
                })
            }
            _ => {}
        }
    }
    Ok(last)
}

impl DnsEntry {
    /// Encodes the message (fields in order, defaults left out, as protobuf-go).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        wire::put_string(&mut b, 1, &self.pod_name);
        wire::put_string(&mut b, 2, &self.ip_address);
        wire::put_string(&mut b, 3, &self.network);
        wire::put_string(&mut b, 4, &self.scope);
        b
    }

    /// Decodes the message.
    pub fn decode(buf: &[u8]) -> Result<DnsEntry, DecodeError> {
        let [pod_name, ip_address, network, scope] =
            decode_strings(buf, ["pod_name", "ip_address", "network", "scope"])?;
        Ok(DnsEntry {
            pod_name,
            ip_address,
            network,
            scope,
        })
    }
}

impl Server {
    /// Decodes the message.
    pub fn decode(buf: &[u8]) -> Result<Server, DecodeError> {
        let [dom_port, server_domain, server_port] =
            decode_strings(buf, ["domPort", "serverDomain", "serverPort"])?;
        Ok(Server {
            dom_port,
            server_domain,
            server_port,
        })
    }
}

/// `AddEntryRequest` / `DeleteEntryRequest` bytes around an entry.
pub fn entry_request(entry: &DnsEntry) -> Vec<u8> {
    let mut b = Vec::new();
    let inner = entry.encode();
    // An empty embedded message is still sent when set (protobuf-go writes set message
    // fields even when empty).
    wire::put_tag(&mut b, 1, wire::LEN);
    wire::put_varint(&mut b, inner.len() as u64);
    b.extend_from_slice(&inner);
    b
}

/// Parses an `AddEntryRequest` / `DeleteEntryRequest` (a missing entry is an empty one).
pub fn parse_entry_request(buf: &[u8]) -> Result<DnsEntry, DecodeError> {
    Ok(match decode_field1(buf)? {
        Some(b) => DnsEntry::decode(b)?,
        None => DnsEntry::default(),
    })
}

/// `ReplaceClusterRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaceCluster {
    /// The cluster whose names these are.
    pub cluster: String,
    /// Every name of the cluster.
    pub entries: Vec<DnsEntry>,
}

impl ReplaceCluster {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        wire::put_string(&mut b, 1, &self.cluster);
        for e in &self.entries {
            let inner = e.encode();
            wire::put_tag(&mut b, 2, wire::LEN);
            wire::put_varint(&mut b, inner.len() as u64);
            b.extend_from_slice(&inner);
        }
        b
    }

    /// Decodes the message; more than `max_entries` entries is an error (decoding stops
    /// there).
    pub fn decode(buf: &[u8], max_entries: usize) -> Result<ReplaceCluster, ReplaceDecodeError> {
        let mut r = ReplaceCluster::default();
        for f in Fields::new(buf) {
            match f? {
                (1, v) => r.cluster = wire::as_string(1, "cluster", v)?,
                (2, Value::Bytes(b)) => {
                    if r.entries.len() >= max_entries {
                        return Err(ReplaceDecodeError::TooMany(max_entries));
                    }
                    r.entries.push(DnsEntry::decode(b)?);
                }
                (2, v) => {
                    return Err(DecodeError::WrongWireType {
                        field: 2,
                        name: "entries",
                        got: v.wire_type(),
                        want: wire::LEN,
                    }
                    .into())
                }
                _ => {}
            }
        }
        Ok(r)
    }
}

/// Why a `ReplaceClusterRequest` did not decode.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceDecodeError {
    /// Not protobuf of this message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// More entries than a cluster may hold.
    #[error("more than {0} entries: a cluster holds at most that many")]
    TooMany(usize),
}

/// A response `{ string message = 1; }`.
pub fn message_response(message: &str) -> Vec<u8> {
    let mut b = Vec::new();
    wire::put_string(&mut b, 1, message);
    b
}

/// The methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `AddEntry`.
    AddEntry,
    /// `DeleteEntry`.
    DeleteEntry,
    /// `AddServer`.
    AddServer,
    /// `ReplaceCluster` (ours).
    ReplaceCluster,
}

impl Method {
    /// The method of an HTTP/2 `:path`.
    pub fn from_path(path: &str) -> Result<Method, Status> {
        let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
            return Err(Status::new(
                Code::Unimplemented,
                format!("malformed method name: {path:?}"),
            ));
        };
        if service != SERVICE {
            return Err(Status::new(
                Code::Unimplemented,
                format!("unknown service {service}"),
            ));
        }
        match method {
            "AddEntry" => Ok(Method::AddEntry),
            "DeleteEntry" => Ok(Method::DeleteEntry),
            "AddServer" => Ok(Method::AddServer),
            "ReplaceCluster" => Ok(Method::ReplaceCluster),
            other => Err(Status::new(
                Code::Unimplemented,
                format!("unknown method {other} for service {SERVICE}"),
            )),
        }
    }

    /// The `:path`.
    pub fn path(self) -> &'static str {
        match self {
            Method::AddEntry => "/l2smdns.DnsService/AddEntry",
            Method::DeleteEntry => "/l2smdns.DnsService/DeleteEntry",
            Method::AddServer => "/l2smdns.DnsService/AddServer",
            Method::ReplaceCluster => "/l2smdns.DnsService/ReplaceCluster",
        }
    }
}

/// Who is calling, as the connection shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Cleartext (`--dns-grpc-insecure`): anyone who reaches the port.
    Cleartext,
    /// A verified client certificate, with the cluster its SAN URI
    /// `urn:l2sm:cluster:<name>` names, if any. Only that cluster's names may be replaced.
    Certificate {
        /// The cluster the certificate names.
        cluster: Option<String>,
    },
}

/// Runs one call from an unauthenticated (cleartext) caller.
pub fn call(zones: &Zones, method: Method, message: &[u8]) -> Result<Vec<u8>, Status> {
    call_as(zones, &Caller::Cleartext, method, message)
}

/// Runs one call from `caller`.
pub fn call_as(
    zones: &Zones,
    caller: &Caller,
    method: Method,
    message: &[u8],
) -> Result<Vec<u8>, Status> {
    let bad = |e: DecodeError| {
        Status::new(
            Code::Internal,
            format!("grpc: error unmarshalling request: {e}"),
        )
    };
    match method {
        Method::AddEntry | Method::DeleteEntry => {
            let e = parse_entry_request(message).map_err(bad)?;
            let invalid = |m: String| Status::new(Code::InvalidArgument, m);
            let name = Zones::entry_name(&e.pod_name, &e.network, &e.scope)
                .map_err(|err| invalid(err.to_string()))?;
            let add = method == Method::AddEntry;
            match zones.change_entry(name.clone(), &e.ip_address, add) {
                Ok(changed) => {
                    tracing::info!(%name, ip = e.ip_address, add, changed, "DNS entry");
                    Ok(message_response(""))
                }
                Err(err @ super::EntryError::Persist(_)) => {
                    Err(Status::new(Code::Internal, err.to_string()))
                }
                Err(err) => Err(invalid(err.to_string())),
            }
        }
        Method::ReplaceCluster => {
            let r = ReplaceCluster::decode(message, super::MAX_CLUSTER_ENTRIES).map_err(
                |e| match e {
                    ReplaceDecodeError::Decode(e) => bad(e),
                    e @ ReplaceDecodeError::TooMany(_) => {
                        Status::new(Code::InvalidArgument, e.to_string())
                    }
                },
            )?;
            if let Caller::Certificate { cluster } = caller {
                if cluster.as_deref() != Some(r.cluster.as_str()) {
                    return Err(Status::new(
                        Code::PermissionDenied,
                        match cluster {
                            Some(c) => format!(
                                "the client certificate names cluster {c:?}, not {:?}",
                                r.cluster
                            ),
                            None => format!(
                                "the client certificate names no cluster (a SAN URI {}<name>): it may not replace the names of {:?}",
                                crate::identity::CLUSTER_URI_PREFIX,
                                r.cluster
                            ),
                        },
                    ));
                }
            }
            match zones.replace_cluster(&r.cluster, &r.entries) {
                Ok(changed) => {
                    if changed {
                        tracing::info!(
                            cluster = r.cluster,
                            entries = r.entries.len(),
                            "DNS names of a cluster replaced"
                        );
                    }
                    Ok(message_response(""))
                }
                Err(err @ super::ReplaceError::Taken { .. }) => {
                    Err(Status::new(Code::FailedPrecondition, err.to_string()))
                }
                Err(err) => Err(Status::new(Code::InvalidArgument, err.to_string())),
            }
        }
        Method::AddServer => {
            if let Some(b) = decode_field1(message).map_err(bad)? {
                Server::decode(b).map_err(bad)?;
            }
            Err(Status::new(
                Code::Unimplemented,
                "AddServer: this server is authoritative for l2sm. only and forwards nothing; \
                 forward zones belong in the cluster's CoreDNS",
            ))
        }
    }
}

/// Bounds of the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections at once; more are closed at once.
    pub max_connections: usize,
    /// TLS handshake bound.
    pub handshake_timeout: Duration,
    /// A connection is closed after this long (update calls are short and rare).
    pub connection_lifetime: Duration,
    /// Reading one request's body.
    pub body_timeout: Duration,
    /// Concurrent streams per connection.
    pub max_streams: u32,
    /// Header list bound, bytes.
    pub max_header_list: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 64,
            handshake_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(120),
            body_timeout: Duration::from_secs(10),
            max_streams: 8,
            max_header_list: 16 * 1024,
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    zones: &Zones,
    caller: &Caller,
    limits: &Limits,
) -> Response<GrpcBody> {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    if let Some(refused) = server::not_grpc(&req) {
        return refused;
    }
    if req.method() != hyper::http::Method::POST {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &Status::new(Code::Internal, "gRPC requests are POST"),
        );
    }
    let method = match Method::from_path(req.uri().path()) {
        Ok(m) => m,
        Err(s) => return error_response(StatusCode::OK, &s),
    };
    let encoding = header("grpc-encoding").map(str::to_owned);
    let outcome = async {
        grpc::check_encoding(encoding.as_deref())?;
        let max = match method {
            Method::ReplaceCluster => super::MAX_REPLACE_MESSAGE,
            _ => grpc::MAX_MESSAGE,
        };
        let body = server::read_body(req.into_body(), max, limits.body_timeout).await?;
        let message = grpc::unary_message(&body, max)?;
        call_as(zones, caller, method, message)
    }
    .await;
    match outcome {
        Ok(answer) => ok_response(answer),
        Err(s) => {
            tracing::info!(
                ?method,
                code = s.code.name(),
                "DNS gRPC call failed: {}",
                s.message
            );
            error_response(StatusCode::OK, &s)
        }
    }
}

async fn serve_connection<I>(io: I, zones: Arc<Zones>, caller: Caller, limits: Limits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let caller = Arc::new(caller);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (zones, caller) = (zones.clone(), caller.clone());
        async move { Ok::<_, std::convert::Infallible>(handle(req, &zones, &caller, &limits).await) }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(limits.max_header_list)
        .max_pending_accept_reset_streams(Some(16))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    // Update calls are short: a connection lives a bounded time whatever it does.
    match tokio::time::timeout(limits.connection_lifetime, conn).await {
        Ok(Err(e)) => tracing::debug!("DNS gRPC connection ended: {e}"),
        Err(_) => tracing::debug!("DNS gRPC connection closed: lifetime over"),
        Ok(Ok(())) => {}
    }
}

/// Serves until the listener fails: TLS (client certificates as `tls` requires them) or,
/// with `tls` `None`, cleartext HTTP/2 with prior knowledge.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    zones: Arc<Zones>,
    limits: Limits,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("DNS gRPC accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "DNS gRPC connection refused: too many connections");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (zones, tls) = (zones.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(tcp, zones, Caller::Cleartext, limits).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
                    {
                        Ok(Ok(s)) => {
                            let cluster = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(crate::identity::cluster_of_certificate);
                            serve_connection(s, zones, Caller::Certificate { cluster }, limits)
                                .await
                        }
                        Ok(Err(e)) => tracing::warn!(%peer, "DNS gRPC TLS handshake failed: {e}"),
                        Err(_) => tracing::warn!(%peer, "DNS gRPC TLS handshake timed out"),
                    }
                }
            }
        });
    }
}
