//! The edge's gRPC listener over real sockets, without OVS: a hand-built gRPC client (hyper's
//! HTTP/2 client) sends the bytes upstream's operator sends and checks the answer's bytes,
//! headers and trailers; unknown methods, oversized, compressed and malformed messages,
//! garbage and slow prefaces, the connection cap, the allow-list and TLS client
//! certificates; `l2sm_ned::client::EdgeClient` (h2c and TLS) calling both services, statuses
//! and its timeout. The service behind it is a recording double.

use futures::future::BoxFuture;
use futures::FutureExt as _;
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::http::{HeaderMap, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use l2sm_agent::edge::grpc::{self, Access, Limits, NedService, Refusal, Stats};
use l2sm_ned::client::{ClientError, EdgeClient};
use l2sm_ned::grpc::{Code, Method, Status};
use l2sm_ned::{
    AttachInterfaceRequest, AttachInterfaceResponse, ConnectNetworkRequest, ConnectNetworkResponse,
    CreateVxlanRequest, CreateVxlanResponse, DisconnectNetworkRequest, DisconnectNetworkResponse,
    Message,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Records calls; answers AttachInterface with port 3 of node `edge-a`, and a NOT_FOUND
/// status for the bridge `missing`.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl NedService for Recorder {
    fn create_vxlan(
        &self,
        req: CreateVxlanRequest,
    ) -> BoxFuture<'_, Result<CreateVxlanResponse, Status>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("CreateVxlan {}", req.ip_address));
        async move {
            Ok(CreateVxlanResponse {
                success: true,
                message: format!("VxLAN with IP {} created successfully", req.ip_address),
            })
        }
        .boxed()
    }

    fn attach_interface(
        &self,
        req: AttachInterfaceRequest,
    ) -> BoxFuture<'_, Result<AttachInterfaceResponse, Status>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("AttachInterface {}", req.interface_name));
        async move {
            if req.interface_name == "missing" {
                return Err(Status::new(
                    Code::NotFound,
                    "no interface \"missing\" on this node: 100% sure\n",
                ));
            }
            Ok(AttachInterfaceResponse {
                interface_num: 3,
                node_name: "edge-a".into(),
            })
        }
        .boxed()
    }

    fn connect_network(
        &self,
        req: ConnectNetworkRequest,
    ) -> BoxFuture<'_, Result<ConnectNetworkResponse, Status>> {
        self.calls.lock().unwrap().push(format!(
            "ConnectNetwork {} {}",
            req.network, req.cluster_bridge
        ));
        async move {
            if req.cluster_bridge == "missing" {
                return Err(Status::new(Code::NotFound, "no bridge \"missing\""));
            }
            Ok(ConnectNetworkResponse {
                edge_port: 7,
                cluster_port: 0xD007,
                node_name: "edge-a".into(),
            })
        }
        .boxed()
    }

    fn disconnect_network(
        &self,
        req: DisconnectNetworkRequest,
    ) -> BoxFuture<'_, Result<DisconnectNetworkResponse, Status>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("DisconnectNetwork {}", req.network));
        async { Ok(DisconnectNetworkResponse {}) }.boxed()
    }
}

struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
    service: Arc<Recorder>,
}

async fn start(access: Access, limits: Limits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(Stats::default());
    let service = Arc::new(Recorder::default());
    let svc: Arc<dyn NedService> = service.clone();
    tokio::spawn(grpc::serve(listener, access, limits, stats.clone(), svc));
    Server {
        addr,
        stats,
        service,
    }
}

fn insecure() -> Access {
    Access {
        tls: None,
        allow: vec![],
    }
}

/// A request body of one chunk.
struct Once(Option<Bytes>);

impl Body for Once {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
}

/// What came back for one call.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

impl Answer {
    /// grpc-status and decoded grpc-message, from the trailers or (trailers-only) the headers.
    fn grpc(&self) -> (Code, String) {
        let h = self.trailers.as_ref().unwrap_or(&self.headers);
        let code = Code::from_value(h.get("grpc-status").expect("grpc-status").to_str().unwrap());
        let msg = h
            .get("grpc-message")
            .map(|v| l2sm_ned::grpc::percent_decode(v.to_str().unwrap()))
            .unwrap_or_default();
        (code, msg)
    }
}

type Sender = hyper::client::conn::http2::SendRequest<Once>;

async fn h2<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: I) -> Sender {
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

async fn h2c(addr: SocketAddr) -> Sender {
    h2(tokio::net::TcpStream::connect(addr).await.unwrap()).await
}

async fn call_with(
    send: &mut Sender,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://edge{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Once(Some(Bytes::from(body)))).unwrap();
    let resp = send.send_request(req).await.expect("response");
    let (parts, mut incoming): (_, Incoming) = resp.into_parts();
    let (mut body, mut trailers) = (Vec::new(), None);
    while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx)).await {
        let f = f.unwrap();
        match f.into_data() {
            Ok(d) => body.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
        trailers,
    }
}

async fn call(send: &mut Sender, path: &str, body: Vec<u8>) -> Answer {
    call_with(send, "POST", path, &[], body).await
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Whether the server closes `s` within `within` (EOF or reset), writing `bytes` first.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // SETTINGS, GOAWAY…
        }
    }
}

#[tokio::test]
async fn upstream_requests_get_upstream_shaped_answers_byte_for_byte() {
    let srv = start(insecure(), Limits::default()).await;
    let mut c = h2c(srv.addr).await;
    // AttachInterface{interface_name: "br1"}, as upstream's operator's generated client sends it.
    let a = call(
        &mut c,
        "/nedpb.NedService/AttachInterface",
        hex("00000000050a03627231"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/grpc");
    // {interface_num: 3, node_name: "edge-a"}: 08 03 12 06 "edge-a", framed.
    assert_eq!(
        a.body,
        hex("000000000a0803120665646765 2d61".replace(' ', "").as_str())
    );
    let t = a.trailers.as_ref().expect("trailers");
    assert_eq!(t["grpc-status"], "0");
    assert!(t.get("grpc-message").is_none());
    assert_eq!(
        AttachInterfaceResponse::decode(&a.body[5..]).unwrap(),
        AttachInterfaceResponse {
            interface_num: 3,
            node_name: "edge-a".into()
        }
    );
    let v = call(
        &mut c,
        "/nedpb.NedService/CreateVxlan",
        l2sm_ned::grpc::frame(
            &CreateVxlanRequest {
                ip_address: "10.0.0.2".into(),
            }
            .encode(),
        ),
    )
    .await;
    assert_eq!(v.grpc(), (Code::Ok, String::new()));
    let r = CreateVxlanResponse::decode(&v.body[5..]).unwrap();
    assert!(r.success);
    assert_eq!(r.message, "VxLAN with IP 10.0.0.2 created successfully");
    // A service error: trailers-only, the message percent-encoded on the wire.
    let e = call(
        &mut c,
        "/nedpb.NedService/AttachInterface",
        l2sm_ned::grpc::frame(
            &AttachInterfaceRequest {
                interface_name: "missing".into(),
            }
            .encode(),
        ),
    )
    .await;
    assert!(e.trailers.is_none() && e.body.is_empty(), "{e:?}");
    assert_eq!(e.status, StatusCode::OK);
    assert_eq!(
        e.headers["grpc-message"],
        "no interface \"missing\" on this node: 100%25 sure%0A"
    );
    assert_eq!(
        e.grpc(),
        (
            Code::NotFound,
            "no interface \"missing\" on this node: 100% sure\n".into()
        )
    );
    assert_eq!(
        *srv.service.calls.lock().unwrap(),
        [
            "AttachInterface br1",
            "CreateVxlan 10.0.0.2",
            "AttachInterface missing"
        ]
    );
    assert_eq!(
        srv.stats.requests(Some(Method::AttachInterface), Code::Ok),
        1
    );
    assert_eq!(
        srv.stats
            .requests(Some(Method::AttachInterface), Code::NotFound),
        1
    );
    let text = srv.stats.render();
    assert!(
        text.contains("l2sm_edge_grpc_requests_total{method=\"CreateVxlan\",code=\"OK\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_methods_and_bad_requests_get_grpc_gos_statuses() {
    let srv = start(insecure(), Limits::default()).await;
    let mut c = h2c(srv.addr).await;
    let empty = l2sm_ned::grpc::frame(&[]);
    for (path, code, msg) in [
        (
            "/nedpb.NedService/GetNodeName",
            Code::Unimplemented,
            "unknown method GetNodeName for service nedpb.NedService",
        ),
        (
            "/grpc.health.v1.Health/Check",
            Code::Unimplemented,
            "unknown service grpc.health.v1.Health",
        ),
    ] {
        let a = call(&mut c, path, empty.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.grpc(), (code, msg.to_string()), "{path}");
        assert!(
            a.trailers.is_none(),
            "{path}: trailers-only answer expected"
        );
    }
    let attach = "/nedpb.NedService/AttachInterface";
    type Case<'a> = (Vec<u8>, Vec<(&'a str, &'a str)>, Code, &'a str);
    let cases: Vec<Case<'_>> = vec![
        // Declared length above the limit: refused from the prefix alone.
        (
            hex("0000100000"),
            vec![],
            Code::ResourceExhausted,
            "larger than max (1048576 vs. 16384)",
        ),
        (
            vec![0; 5 + 16 * 1024 + 1]
                .into_iter()
                .enumerate()
                .map(|(i, b)| match i {
                    2 => 0x40,
                    4 => 0x01,
                    _ => b,
                })
                .collect(),
            vec![],
            Code::ResourceExhausted,
            "larger than max",
        ),
        (
            hex("01000000050a03627231"),
            vec![],
            Code::Internal,
            "compressed flag set",
        ),
        (
            hex("00000000050a03627231"),
            vec![("grpc-encoding", "gzip")],
            Code::Unimplemented,
            "Decompressor is not installed",
        ),
        (
            hex("00000000020a05"),
            vec![],
            Code::Internal,
            "grpc: error unmarshalling request: unexpected end of message",
        ),
        (
            hex("00000000040a02c328"),
            vec![],
            Code::Internal,
            "invalid UTF-8",
        ),
        (
            hex("00000000050a03627231000000050a03627232"),
            vec![],
            Code::Internal,
            "more than one request message",
        ),
        (vec![], vec![], Code::Internal, "no request message"),
        (
            hex("000000000a0a03"),
            vec![],
            Code::Internal,
            "request ends inside the message",
        ),
    ];
    for (body, headers, code, msg) in cases {
        let a = call_with(&mut c, "POST", attach, &headers, body.clone()).await;
        let (got, text) = a.grpc();
        assert_eq!(got, code, "{body:02x?}: {text}");
        assert!(text.contains(msg), "{body:02x?}: {text:?} lacks {msg:?}");
    }
    let a = call_with(&mut c, "GET", attach, &[], empty.clone()).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.grpc().0, Code::Internal);
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("http://edge{attach}"))
        .header("content-type", "application/json")
        .body(Once(Some(Bytes::from(empty))))
        .unwrap();
    req.headers_mut().remove("te");
    let r = c.send_request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.headers()["grpc-status"], "3");
    assert!(
        srv.service.calls.lock().unwrap().is_empty(),
        "no bad request reached the service"
    );
    // The connection survived every refusal.
    let ok = call(&mut c, attach, hex("00000000050a03627231")).await;
    assert_eq!(ok.grpc().0, Code::Ok);
}

#[tokio::test]
async fn garbage_and_slow_prefaces_are_cut_off() {
    let limits = Limits {
        first_request_timeout: Duration::from_millis(400),
        goaway_grace: Duration::from_millis(500),
        ..Limits::default()
    };
    let srv = start(insecure(), limits).await;
    // HTTP/1.1 instead of the HTTP/2 preface: closed at once.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    // Half a preface, then silence.
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before the deadline"
    );
    // A full preface and SETTINGS, then a HEADERS frame that never ends (no END_HEADERS, no
    // CONTINUATION): the slow-loris header.
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap(); // empty SETTINGS
                                                              // HEADERS, stream 1, flags END_STREAM only, 1 byte of header block (":method: POST" = 0x83).
    s.write_all(&[0, 0, 1, 1, 0x01, 0, 0, 0, 1, 0x83])
        .await
        .unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    // A well-behaved client still gets served.
    let mut c = h2c(srv.addr).await;
    let a = call(
        &mut c,
        "/nedpb.NedService/AttachInterface",
        hex("00000000050a03627231"),
    )
    .await;
    assert_eq!(a.grpc().0, Code::Ok);
}

#[tokio::test]
async fn connections_above_the_cap_are_closed_and_the_slot_comes_back() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let srv = start(insecure(), limits).await;
    let mut a = h2c(srv.addr).await;
    let mut b = h2c(srv.addr).await;
    for c in [&mut a, &mut b] {
        let r = call(
            c,
            "/nedpb.NedService/AttachInterface",
            hex("00000000050a03627231"),
        )
        .await;
        assert_eq!(r.grpc().0, Code::Ok);
    }
    let mut third = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let _ = third.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(closed_within(&mut third, Duration::from_secs(2)).await);
    assert_eq!(srv.stats.refused(Refusal::ConnectionCap), 1);
    drop(a);
    // The first connection's slot is released once the server sees it closed.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        if !closed_within(&mut s, Duration::from_millis(300)).await {
            ok = true;
            break;
        }
    }
    assert!(ok, "a slot was freed");
}

#[tokio::test]
async fn the_allow_list_is_checked_before_anything_is_read() {
    let srv = start(
        Access {
            tls: None,
            allow: vec!["10.0.0.0/8".parse().unwrap()],
        },
        Limits::default(),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    assert_eq!(srv.stats.refused(Refusal::NotAllowed), 1);
    let srv = start(
        Access {
            tls: None,
            allow: vec!["127.0.0.0/8".parse().unwrap()],
        },
        Limits::default(),
    )
    .await;
    let mut c = h2c(srv.addr).await;
    let a = call(
        &mut c,
        "/nedpb.NedService/AttachInterface",
        hex("00000000050a03627231"),
    )
    .await;
    assert_eq!(a.grpc().0, Code::Ok);
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, server: bool) -> Identity {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    if server {
        p.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

async fn tls_connect(
    addr: SocketAddr,
    server_ca: &CertifiedIssuer<'static, KeyPair>,
    identity: Option<Identity>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((c, k)) => b.with_client_auth_cert(c, k).unwrap(),
        None => b.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

#[tokio::test]
async fn tls_requires_a_client_certificate_from_the_ca() {
    let server_ca = ca("edge server CA");
    let client_ca = ca("edge client CA");
    let other_ca = ca("someone else");
    let (cert, key) = leaf(&server_ca, true);
    let config =
        l2sm_agent::edge::tls::server_config(cert, key, &[client_ca.der().clone()]).unwrap();
    let srv = start(
        Access {
            tls: Some(tokio_rustls::TlsAcceptor::from(config)),
            allow: vec![],
        },
        Limits::default(),
    )
    .await;
    let attach = "/nedpb.NedService/AttachInterface";
    // With a client certificate from the client CA: served over h2 (ALPN).
    let tls = tls_connect(srv.addr, &server_ca, Some(leaf(&client_ca, false)))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut c = h2(tls).await;
    assert_eq!(
        call(&mut c, attach, hex("00000000050a03627231"))
            .await
            .grpc()
            .0,
        Code::Ok
    );
    // Without a certificate, or with one from another CA: no HTTP/2 session.
    for identity in [None, Some(leaf(&other_ca, false))] {
        let refused = match tls_connect(srv.addr, &server_ca, identity).await {
            Err(_) => true,
            Ok(tls) => {
                // TLS 1.3: the server's verdict arrives after the client's handshake.
                let r = hyper::client::conn::http2::handshake::<_, _, Once>(
                    TokioExecutor::new(),
                    TokioIo::new(tls),
                )
                .await;
                match r {
                    Err(_) => true,
                    Ok((mut send, conn)) => {
                        tokio::spawn(conn);
                        let req = Request::builder()
                            .method("POST")
                            .uri(format!("http://edge{attach}"))
                            .header("content-type", "application/grpc")
                            .body(Once(Some(Bytes::from(hex("00000000050a03627231")))))
                            .unwrap();
                        send.send_request(req).await.is_err()
                    }
                }
            }
        };
        assert!(refused, "a client without a valid certificate was served");
    }
    // Plain HTTP/2 on the TLS port is not served either.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    assert_eq!(srv.stats.refused(Refusal::Tls), 3);
    assert_eq!(srv.service.calls.lock().unwrap().len(), 1);
}

/// Holds every AttachInterface call until released; counts the calls inside.
struct Gated {
    inside: std::sync::atomic::AtomicUsize,
    gate: tokio::sync::Semaphore,
}

impl NedService for Gated {
    fn create_vxlan(
        &self,
        _: CreateVxlanRequest,
    ) -> BoxFuture<'_, Result<CreateVxlanResponse, Status>> {
        async { Err(Status::new(Code::Unimplemented, "not here")) }.boxed()
    }

    fn attach_interface(
        &self,
        _: AttachInterfaceRequest,
    ) -> BoxFuture<'_, Result<AttachInterfaceResponse, Status>> {
        async move {
            self.inside
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _p = self.gate.acquire().await.unwrap();
            Ok(AttachInterfaceResponse {
                interface_num: 1,
                node_name: "n".into(),
            })
        }
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_connection_are_bounded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = Arc::new(Gated {
        inside: Default::default(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let svc: Arc<dyn NedService> = service.clone();
    let limits = Limits::default();
    let max = limits.max_streams as usize;
    tokio::spawn(grpc::serve(
        listener,
        insecure(),
        limits,
        Arc::new(Stats::default()),
        svc,
    ));
    let c = h2c(addr).await;
    // Streams opened before the client saw the server's SETTINGS are refused by the server
    // (REFUSED_STREAM, safe to retry); later ones wait in the client. Either way at most
    // `max` run at once.
    let calls: Vec<_> = (0..max + 4)
        .map(|_| {
            let mut c = c.clone();
            tokio::spawn(async move {
                let req = Request::builder()
                    .method("POST")
                    .uri("http://edge/nedpb.NedService/AttachInterface")
                    .header("content-type", "application/grpc")
                    .body(Once(Some(Bytes::from(hex("00000000050a03627231")))))
                    .unwrap();
                match c.send_request(req).await {
                    Ok(r) => Ok(r.status()),
                    Err(e) => Err(format!("{e:?}")),
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        service.inside.load(std::sync::atomic::Ordering::SeqCst),
        max,
        "at most {max} requests of one connection in progress"
    );
    service.gate.add_permits(1000);
    let mut served = 0;
    for h in calls {
        match h.await.unwrap() {
            Ok(status) => {
                assert_eq!(status, StatusCode::OK);
                served += 1;
            }
            Err(e) => assert!(e.contains("REFUSED_STREAM"), "{e}"),
        }
    }
    assert!(served >= max, "{served}");
    assert_eq!(
        service.inside.load(std::sync::atomic::Ordering::SeqCst),
        served
    );
}

#[tokio::test]
async fn the_edge_client_calls_both_services_over_h2c_and_tls() {
    // h2c: the four methods, answers and statuses as the server gives them.
    let srv = start(insecure(), Limits::default()).await;
    let mut c = EdgeClient::connect_h2c(srv.addr, Duration::from_secs(5))
        .await
        .unwrap();
    let r = c.connect_network("inter", "br-1a2b3c4d").await.unwrap();
    assert_eq!(
        r,
        ConnectNetworkResponse {
            edge_port: 7,
            cluster_port: 0xD007,
            node_name: "edge-a".into()
        }
    );
    c.disconnect_network("inter").await.unwrap();
    assert_eq!(c.attach_interface("br1").await.unwrap().interface_num, 3);
    assert!(c.create_vxlan("10.0.0.2").await.unwrap().success);
    match c.attach_interface("missing").await {
        Err(ClientError::Status(s)) => {
            assert_eq!(s.code, Code::NotFound);
            // percent-encoded on the wire, decoded by the client
            assert_eq!(
                s.message,
                "no interface \"missing\" on this node: 100% sure\n"
            );
        }
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    let e = c.connect_network("inter", "missing").await.unwrap_err();
    assert_eq!(e.code(), Some(Code::NotFound));
    assert_eq!(
        *srv.service.calls.lock().unwrap(),
        [
            "ConnectNetwork inter br-1a2b3c4d",
            "DisconnectNetwork inter",
            "AttachInterface br1",
            "CreateVxlan 10.0.0.2",
            "AttachInterface missing",
            "ConnectNetwork inter missing",
        ]
    );
    assert_eq!(
        srv.stats.requests(Some(Method::ConnectNetwork), Code::Ok),
        1
    );
    assert_eq!(
        srv.stats
            .requests(Some(Method::ConnectNetwork), Code::NotFound),
        1
    );
    assert_eq!(
        srv.stats
            .requests(Some(Method::DisconnectNetwork), Code::Ok),
        1
    );
    assert!(srv
        .stats
        .render()
        .contains("method=\"ConnectNetwork\",code=\"OK\"} 1"));

    // TLS with a client certificate: the client sets ALPN h2 itself.
    let server_ca = ca("edge server CA");
    let client_ca = ca("edge client CA");
    let (cert, key) = leaf(&server_ca, true);
    let config =
        l2sm_agent::edge::tls::server_config(cert, key, &[client_ca.der().clone()]).unwrap();
    let tls_srv = start(
        Access {
            tls: Some(tokio_rustls::TlsAcceptor::from(config)),
            allow: vec![],
        },
        Limits::default(),
    )
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.der().clone()).unwrap();
    let (chain, key) = leaf(&client_ca, false);
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let mut t = EdgeClient::connect_tls(
        tls_srv.addr,
        "127.0.0.1",
        Arc::new(client),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(
        t.connect_network("inter", "br-x").await.unwrap().edge_port,
        7
    );

    // A service without the hop answers UNIMPLEMENTED; a call that never ends times out.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gated: Arc<dyn NedService> = Arc::new(Gated {
        inside: Default::default(),
        gate: tokio::sync::Semaphore::new(0),
    });
    tokio::spawn(grpc::serve(
        listener,
        insecure(),
        Limits::default(),
        Arc::new(Stats::default()),
        gated,
    ));
    let mut g = EdgeClient::connect_h2c(addr, Duration::from_millis(300))
        .await
        .unwrap();
    let e = g.connect_network("inter", "br-x").await.unwrap_err();
    assert_eq!(e.code(), Some(Code::Unimplemented), "{e}");
    let started = Instant::now();
    let e = g.attach_interface("br1").await.unwrap_err();
    assert!(matches!(e, ClientError::Timeout(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Nothing listening: a connection error, not a hang.
    drop(g);
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = free.local_addr().unwrap();
    drop(free);
    let e = EdgeClient::connect_h2c(gone, Duration::from_secs(2))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::Connect(_)), "{e}");
}
