//! The operator's real edge client (`edge::GrpcEdge`) against the real edge gRPC server
//! (`l2sm_agent::edge::grpc::serve`, with a recording service instead of OVS): the calls, the
//! answers, how gRPC errors and unreachable edges map to conditions, and TLS both ways (the
//! edge's certificate verified for `l2sm-edge`, the operator's client certificate required).

use futures::future::BoxFuture;
use futures::FutureExt as _;
use l2sm_agent::edge::grpc::{self, Access, Limits, NedService, Stats};
use l2sm_ned::grpc::{Code, Status};
use l2sm_ned::{
    AttachInterfaceRequest, AttachInterfaceResponse, ConnectNetworkRequest, ConnectNetworkResponse,
    CreateVxlanRequest, CreateVxlanResponse, DisconnectNetworkRequest, DisconnectNetworkResponse,
};
use l2sm_operator::edge::{
    EdgeConnection, EdgeConnector, EdgeError, EdgeTlsFiles, GrpcEdge, EDGE_TLS_SERVER_NAME,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl NedService for Recorder {
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
        async { Err(Status::new(Code::Unimplemented, "not here")) }.boxed()
    }

    fn connect_network(
        &self,
        req: ConnectNetworkRequest,
    ) -> BoxFuture<'_, Result<ConnectNetworkResponse, Status>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("connect {} {}", req.network, req.cluster_bridge));
        async move {
            if req.cluster_bridge == "br-missing" {
                return Err(Status::new(
                    Code::NotFound,
                    "no bridge \"br-missing\": 100%",
                ));
            }
            Ok(ConnectNetworkResponse {
                edge_port: 7,
                cluster_port: 0xD007,
                node_name: "edge-node".into(),
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
            .push(format!("disconnect {}", req.network));
        async { Ok(DisconnectNetworkResponse {}) }.boxed()
    }
}

async fn start(access: Access) -> (SocketAddr, Arc<Recorder>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = Arc::new(Recorder::default());
    let svc: Arc<dyn NedService> = service.clone();
    tokio::spawn(grpc::serve(
        listener,
        access,
        Limits::default(),
        Arc::new(Stats::default()),
        svc,
    ));
    (addr, service)
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn h2c_calls_answer_and_errors_map_to_conditions() {
    let (addr, service) = start(Access {
        tls: None,
        allow: vec![],
    })
    .await;
    let edge = GrpcEdge::insecure(TIMEOUT);
    let c = edge
        .connect_network(addr, "inter", "br-1a2b3c4d")
        .await
        .expect("connect");
    assert_eq!(
        c,
        EdgeConnection {
            edge_port: 7,
            cluster_port: 0xD007,
            node_name: "edge-node".into()
        }
    );
    edge.disconnect_network(addr, "inter")
        .await
        .expect("disconnect");
    // A gRPC error is a refusal with the edge's code and message.
    match edge.connect_network(addr, "inter", "br-missing").await {
        Err(e @ EdgeError::Refused { code: 5, .. }) => {
            assert_eq!(e.reason(), "EdgeRefused");
            assert!(
                e.to_string().contains("no bridge \"br-missing\": 100%"),
                "{e}"
            );
        }
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    assert_eq!(
        *service.calls.lock().unwrap(),
        [
            "connect inter br-1a2b3c4d",
            "disconnect inter",
            "connect inter br-missing"
        ]
    );
    // Nothing listening: unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    match edge.disconnect_network(closed, "inter").await {
        Err(e @ EdgeError::Unreachable { .. }) => assert_eq!(e.reason(), "EdgeUnreachable"),
        other => panic!("expected unreachable, got {other:?}"),
    }
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate, and its PEM files when `dir` is given.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    server_name: Option<&str>,
) -> (Identity, String, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    match server_name {
        Some(name) => {
            p.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        None => p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    let pem = (cert.pem(), key.serialize_pem());
    (
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ),
        pem.0,
        pem.1,
    )
}

/// The operator's files: a client certificate of `client_ca`, trusting `server_ca`.
fn files(
    dir: &std::path::Path,
    client_ca: &CertifiedIssuer<'static, KeyPair>,
    server_ca: &CertifiedIssuer<'static, KeyPair>,
) -> EdgeTlsFiles {
    let (_, cert, key) = leaf(client_ca, None);
    let f = EdgeTlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        ca: dir.join("ca.crt"),
    };
    std::fs::write(&f.cert, cert).unwrap();
    std::fs::write(&f.key, key).unwrap();
    std::fs::write(&f.ca, server_ca.pem()).unwrap();
    f
}

#[tokio::test]
async fn tls_verifies_the_edge_for_its_shared_name_and_presents_the_operators_certificate() {
    let server_ca = ca("edge server CA");
    let client_ca = ca("operator client CA");
    let start_tls = |server_name: &'static str| {
        let ((cert, key), _, _) = leaf(&server_ca, Some(server_name));
        let config =
            l2sm_agent::edge::tls::server_config(cert, key, &[client_ca.der().clone()]).unwrap();
        start(Access {
            tls: Some(tokio_rustls::TlsAcceptor::from(config)),
            allow: vec![],
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let good = files(dir.path(), &client_ca, &server_ca);
    let (addr, service) = start_tls(EDGE_TLS_SERVER_NAME).await;
    let edge = GrpcEdge::tls(good.clone(), TIMEOUT);
    let c = edge
        .connect_network(addr, "inter", "br-1a2b3c4d")
        .await
        .expect("connect over TLS");
    assert_eq!(c.cluster_port, 0xD007);

    // An edge whose certificate names something else is not trusted.
    let (other_addr, other_service) = start_tls("somebody-else").await;
    let refused = edge.connect_network(other_addr, "inter", "br-1").await;
    assert!(
        matches!(refused, Err(EdgeError::Unreachable { .. })),
        "{refused:?}"
    );
    // A client certificate from another CA is refused by the edge.
    let stranger = ca("stranger");
    let dir2 = tempfile::tempdir().unwrap();
    let bad = GrpcEdge::tls(files(dir2.path(), &stranger, &server_ca), TIMEOUT);
    let refused = bad.connect_network(addr, "inter", "br-1").await;
    assert!(refused.is_err(), "a stranger's certificate was served");
    // Missing files: a clear reason, nothing sent.
    let missing = GrpcEdge::tls(
        EdgeTlsFiles {
            cert: dir.path().join("nope.crt"),
            ..good
        },
        TIMEOUT,
    );
    match missing.connect_network(addr, "inter", "br-1").await {
        Err(EdgeError::Unreachable { reason, .. }) => {
            assert!(reason.contains("nope.crt"), "{reason}")
        }
        other => panic!("expected a file error, got {other:?}"),
    }
    assert_eq!(
        *service.calls.lock().unwrap(),
        ["connect inter br-1a2b3c4d"]
    );
    assert!(other_service.calls.lock().unwrap().is_empty());
}
