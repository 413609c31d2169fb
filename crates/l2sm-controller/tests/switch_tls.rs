//! The OpenFlow listener over TLS, without Open vSwitch: peers without a certificate from the
//! switch CA, with a certificate naming no node, naming another node than the datapath id they
//! claim, or duplicating a connected datapath id get no session, each counted by reason; a
//! switch with its own node's certificate gets one. (The lab test `switch_identity_e2e` does
//! the same against real switches and compares their flows.)

use l2sm_controller::identity::node_dpid;
use l2sm_controller::switch_tls;
use l2sm_ofp::{FeaturesReply, Message, OfpMessage};
use l2sm_test_support::controller::ControllerProcess;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A client certificate from `ca`, with SAN URI `urn:l2sm:node:NODE` when `node` is given.
fn client(ca: &CertifiedIssuer<'static, KeyPair>, node: Option<&str>) -> Identity {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    if let Some(n) = node {
        p.subject_alt_names = vec![SanType::URI(
            format!("urn:l2sm:node:{n}").try_into().unwrap(),
        )];
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// What the controller did with a peer.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Closed before any OpenFlow message.
    NoOpenFlow,
    /// HELLO and FEATURES_REQUEST, then closed.
    DroppedAfterFeatures,
    /// A request only a session sends.
    Session,
}

/// Connects with `identity` (or no certificate) and plays a switch claiming `dpid`; a granted
/// session stays open until the returned stream is dropped.
async fn switch(
    port: u16,
    ca: &CertifiedIssuer<'static, KeyPair>,
    identity: Option<Identity>,
    dpid: u64,
) -> (Verdict, Option<Box<dyn std::any::Any + Send>>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let config = switch_tls::client_config(&[ca.der().clone()], identity).unwrap();
    let Ok(mut s) = switch_tls::connect(config, "127.0.0.1", tcp).await else {
        return (Verdict::NoOpenFlow, None);
    };
    let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 4096]);
    let (mut got_any, mut featured) = (false, false);
    loop {
        while let Ok(Some(len)) = l2sm_ofp::message_len(&buf) {
            if buf.len() < len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..len).collect();
            got_any = true;
            let msg = l2sm_ofp::decode(&frame).unwrap();
            let reply = match msg.body {
                Message::Hello { .. } => Message::hello_v13(),
                Message::FeaturesRequest => {
                    featured = true;
                    Message::FeaturesReply(FeaturesReply {
                        datapath_id: dpid,
                        n_buffers: 0,
                        n_tables: 254,
                        auxiliary_id: 0,
                        capabilities: 0,
                    })
                }
                Message::EchoRequest(d) => Message::EchoReply(d),
                _ => return (Verdict::Session, Some(Box::new(s))),
            };
            s.write_all(&l2sm_ofp::encode(&OfpMessage::new(msg.xid, reply)).unwrap())
                .await
                .unwrap();
            s.flush().await.unwrap();
        }
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
            Err(_) => panic!("no verdict in 10 s"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    match (got_any, featured) {
        (false, _) => (Verdict::NoOpenFlow, None),
        (true, true) => (Verdict::DroppedAfterFeatures, None),
        (true, false) => panic!("closed before FEATURES_REQUEST"),
    }
}

fn refused(c: &ControllerProcess, reason: &str) -> u64 {
    let (code, text) = c.req("GET", "/metrics", None);
    assert_eq!(code, 200);
    let key = format!("l2sm_switch_sessions_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key}"))
}

/// A controller serving OpenFlow over TLS (its certificate and the switch CA in a temporary
/// directory), with `extra` arguments.
fn tls_controller(
    extra: &[&str],
) -> (
    ControllerProcess,
    CertifiedIssuer<'static, KeyPair>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let switch_ca = ca("switch CA");
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &switch_ca).unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    std::fs::write(path("c.pem"), cert.pem()).unwrap();
    std::fs::write(path("c.key"), key.serialize_pem()).unwrap();
    std::fs::write(path("ca.pem"), switch_ca.pem()).unwrap();
    let (c, k, a) = (path("c.pem"), path("c.key"), path("ca.pem"));
    let mut args = vec![
        "--openflow-tls-cert",
        &c,
        "--openflow-tls-key",
        &k,
        "--openflow-tls-ca",
        &a,
    ];
    args.extend_from_slice(extra);
    (ControllerProcess::start_args(&args), switch_ca, dir)
}

#[test]
fn only_a_switch_with_its_own_nodes_certificate_gets_a_session() {
    let (c, switch_ca, _dir) = tls_controller(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let of = c.openflow;
    let other_ca = ca("another CA");

    // No certificate; a certificate from another CA; plain TCP to the TLS port.
    let v = rt.block_on(switch(of, &switch_ca, None, node_dpid("x")));
    assert_eq!(v.0, Verdict::NoOpenFlow);
    let v = rt.block_on(switch(
        of,
        &switch_ca,
        Some(client(&other_ca, Some("x"))),
        node_dpid("x"),
    ));
    assert_eq!(v.0, Verdict::NoOpenFlow);
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", of))
            .await
            .unwrap();
        let hello = l2sm_ofp::encode(&OfpMessage::new(1, Message::hello_v13())).unwrap();
        let _ = s.write_all(&hello).await;
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        // Whatever comes back is a TLS alert, never an OpenFlow message.
        assert!(n == 0 || b[0] != 4, "OpenFlow over plain TCP was answered");
    });
    l2sm_test_support::wait_until("three TLS refusals counted", Duration::from_secs(5), || {
        refused(&c, "tls") == 3
    });

    // A certificate naming no node.
    let v = rt.block_on(switch(
        of,
        &switch_ca,
        Some(client(&switch_ca, None)),
        node_dpid("x"),
    ));
    assert_eq!(v.0, Verdict::NoOpenFlow);
    assert_eq!(refused(&c, "no_node"), 1);

    // x's certificate claiming x's edge switch on a controller that is no provider.
    let v = rt.block_on(switch(
        of,
        &switch_ca,
        Some(client(&switch_ca, Some("x"))),
        edge_dpid("x", "idco"),
    ));
    assert_eq!(v.0, Verdict::DroppedAfterFeatures);
    assert_eq!(refused(&c, "wrong_dpid"), 1);

    // Node y's certificate claiming x's datapath id.
    let v = rt.block_on(switch(
        of,
        &switch_ca,
        Some(client(&switch_ca, Some("y"))),
        node_dpid("x"),
    ));
    assert_eq!(v.0, Verdict::DroppedAfterFeatures);
    assert_eq!(refused(&c, "wrong_dpid"), 2);

    // x's own certificate: a session (the controller reads its ports). A second one for x
    // while it lasts: refused.
    let (v, held) = rt.block_on(switch(
        of,
        &switch_ca,
        Some(client(&switch_ca, Some("x"))),
        node_dpid("x"),
    ));
    assert_eq!(v, Verdict::Session);
    let v = rt.block_on(switch(
        of,
        &switch_ca,
        Some(client(&switch_ca, Some("x"))),
        node_dpid("x"),
    ));
    assert_eq!(v.0, Verdict::DroppedAfterFeatures);
    assert_eq!(refused(&c, "duplicate"), 1);
    drop(held);
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    // Once x's session ended, x may connect again.
    let (v, _held) = rt.block_on(switch(
        of,
        &switch_ca,
        Some(client(&switch_ca, Some("x"))),
        node_dpid("x"),
    ));
    assert_eq!(v, Verdict::Session);
}

/// The datapath id of `node`'s edge switch for `provider` (upstream's naming).
fn edge_dpid(node: &str, provider: &str) -> u64 {
    use l2sm_pipeline::ids;
    ids::datapath_id(&ids::switch_name(node, provider))
}

#[test]
fn a_provider_controller_lets_a_node_claim_its_own_edge_switch_only() {
    let (c, switch_ca, _dir) = tls_controller(&["--openflow-edge-provider", "idco"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let of = c.openflow;
    let x = || Some(client(&switch_ca, Some("x")));
    // x's edge switch for this provider: a session; a second one is a duplicate.
    let (v, held) = rt.block_on(switch(of, &switch_ca, x(), edge_dpid("x", "idco")));
    assert_eq!(v, Verdict::Session);
    let v = rt.block_on(switch(of, &switch_ca, x(), edge_dpid("x", "idco")));
    assert_eq!(v.0, Verdict::DroppedAfterFeatures);
    assert_eq!(refused(&c, "duplicate"), 1);
    // y's edge, and x's edge for another provider: refused.
    for dpid in [edge_dpid("y", "idco"), edge_dpid("x", "other")] {
        let v = rt.block_on(switch(of, &switch_ca, x(), dpid));
        assert_eq!(v.0, Verdict::DroppedAfterFeatures);
    }
    assert_eq!(refused(&c, "wrong_dpid"), 2);
    // The node's own switch still gets its session next to its edge's.
    let (v, _node) = rt.block_on(switch(of, &switch_ca, x(), node_dpid("x")));
    assert_eq!(v, Verdict::Session);
    drop(held);
}

#[test]
fn without_tls_files_or_insecure_openflow_the_controller_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(l2sm_test_support::bin::l2sm())
        .args(["controller", "--api-listen", "127.0.0.1:0"])
        .args(["--openflow-listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .env("L2SM_API_USER", "u")
        .env("L2SM_API_PASSWORD", "p")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--openflow-tls-cert") && err.contains("--openflow-tls-ca"),
        "{err}"
    );
}
