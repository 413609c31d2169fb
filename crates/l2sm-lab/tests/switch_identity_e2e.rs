//! The switch channel trusts no one: on a real lab (OVS switches speaking OpenFlow over TLS
//! with their node certificates), impostor switches get no session and leave the real
//! switches' flows and groups byte-identical; a pod cannot reach the controller's OpenFlow
//! port with anything that gets a session.
//!
//! The impostor is a small OpenFlow client (the `l2sm-ofp` codec over tokio-rustls) run from a
//! node's network namespace, as a compromised process on a node would.

use l2sm_ofp::{FeaturesReply, Message, OfpMessage};
use l2sm_test_support::lab::{metrics, TestLab};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const CONTROLLER: &str = "10.251.0.254";
const OPENFLOW_PORT: u16 = 6653;

/// What the controller did with an impostor.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The connection ended before any OpenFlow message arrived (TLS refused).
    NoOpenFlow,
    /// The controller said HELLO and asked for features, then closed the connection without
    /// a single request of a session.
    DroppedAfterFeatures,
    /// The controller treated the peer as a switch (it sent a multipart request, a FLOW_MOD,
    /// a GROUP_MOD or a barrier).
    Session(String),
    /// No TCP connection at all (the address is not reachable from there).
    Unreachable(String),
}

/// A TCP connection to the controller made from inside network namespace `ns`.
fn connect_from(ns: &str, addr: &str) -> std::io::Result<std::net::TcpStream> {
    let path = format!("/run/netns/{ns}");
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("namespace");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })
    .join()
    .expect("connect thread")
}

fn ca_certs(lab: &TestLab) -> Vec<CertificateDer<'static>> {
    let path = format!("/run/l2sm/lab/{}/pki/ca.pem", lab.name);
    CertificateDer::pem_file_iter(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .map(|c| c.unwrap())
        .collect()
}

/// `node`'s own switch key and certificate, as the lab wrote them.
fn node_identity(
    lab: &TestLab,
    node: &str,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let dir = format!("/run/l2sm/lab/{}/{node}", lab.name);
    let certs = CertificateDer::pem_file_iter(format!("{dir}/switch.pem"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/switch.key")).unwrap();
    (certs, key)
}

/// A certificate for a node the lab does not have, from the lab's CA: a legitimate switch
/// the controller must accept (shows that the impostor client can get a session).
fn stranger_identity(
    lab: &TestLab,
    node: &str,
    dir: &std::path::Path,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let handle = l2sm_lab::state::Lab::new(&lab.name).unwrap();
    let files = l2sm_lab::pki::issue(&handle, node, dir).unwrap();
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    (certs, PrivateKeyDer::from_pem_file(&files.key).unwrap())
}

fn dpid_of(node: &str) -> u64 {
    l2sm_controller::identity::node_dpid(node)
}

/// Plays a switch claiming `dpid` until the controller decides.
async fn play_switch<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, dpid: u64) -> Verdict {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut got_any = false;
    let mut sent_features = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        while let Ok(Some(len)) = l2sm_ofp::message_len(&buf) {
            if buf.len() < len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..len).collect();
            got_any = true;
            let msg = match l2sm_ofp::decode(&frame) {
                Ok(m) => m,
                // A message this client cannot decode is a request of a session.
                Err(e) => return Verdict::Session(format!("undecodable message: {e}")),
            };
            let reply = match msg.body {
                Message::Hello { .. } => Some(Message::hello_v13()),
                Message::FeaturesRequest => {
                    sent_features = true;
                    Some(Message::FeaturesReply(FeaturesReply {
                        datapath_id: dpid,
                        n_buffers: 0,
                        n_tables: 254,
                        auxiliary_id: 0,
                        capabilities: 0x4f,
                    }))
                }
                Message::EchoRequest(d) => Some(Message::EchoReply(d)),
                other => return Verdict::Session(format!("{other:?}")),
            };
            if let Some(body) = reply {
                let bytes = l2sm_ofp::encode(&OfpMessage::new(msg.xid, body)).unwrap();
                if s.write_all(&bytes).await.is_err() {
                    break;
                }
                let _ = s.flush().await;
            }
        }
        let read = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await;
        match read {
            Err(_) => panic!("the controller neither closed nor served the impostor in 15 s"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    match (got_any, sent_features) {
        (false, _) => Verdict::NoOpenFlow,
        (true, true) => Verdict::DroppedAfterFeatures,
        (true, false) => panic!("closed during the OpenFlow handshake, before FEATURES_REQUEST"),
    }
}

/// An impostor switch from namespace `ns`: TLS with `identity` (none: no certificate), then
/// OpenFlow claiming `dpid`.
async fn impostor(
    lab: &TestLab,
    ns: &str,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    dpid: u64,
) -> Verdict {
    impostor_at(lab, ns, CONTROLLER, identity, dpid).await
}

/// [`impostor`] toward the controller at `addr`.
async fn impostor_at(
    lab: &TestLab,
    ns: &str,
    addr: &str,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    dpid: u64,
) -> Verdict {
    let tcp = match connect_from(ns, &format!("{addr}:{OPENFLOW_PORT}")) {
        Ok(t) => t,
        Err(e) => return Verdict::Unreachable(e.to_string()),
    };
    tcp.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
    let config = l2sm_controller::switch_tls::client_config(&ca_certs(lab), identity).unwrap();
    match l2sm_controller::switch_tls::connect(config, CONTROLLER, tcp).await {
        Ok(tls) => play_switch(tls, dpid).await,
        Err(_) => Verdict::NoOpenFlow,
    }
}

fn mgmt_socket(lab: &TestLab, node: &str) -> String {
    let dir = format!("/run/l2sm/lab/{}/{node}", lab.name);
    let mgmt = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|f| f.starts_with("br-") && f.ends_with(".mgmt") && !f.starts_with("br-phy"))
        .unwrap_or_else(|| panic!("no OVS management socket in {dir}"));
    format!("unix:{dir}/{mgmt}")
}

/// `ovs-ofctl -O OpenFlow13 dump-flows` and `dump-groups` of `node`'s bridge, with the
/// volatile fields (durations, counters, ages) removed.
fn switch_state(lab: &TestLab, node: &str) -> String {
    let target = mgmt_socket(lab, node);
    let mut out = String::new();
    for what in ["dump-flows", "dump-groups"] {
        let o = Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow13", what, &target])
            .output()
            .expect("ovs-ofctl (install openvswitch-switch)");
        assert!(
            o.status.success(),
            "ovs-ofctl {what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let kept: Vec<&str> = line
                .split([' ', ','])
                .filter(|f| {
                    !f.is_empty()
                        && ![
                            "duration=",
                            "n_packets=",
                            "n_bytes=",
                            "idle_age=",
                            "hard_age=",
                        ]
                        .iter()
                        .any(|p| f.starts_with(p))
                })
                .collect();
            out.push_str(&kept.join(" "));
            out.push('\n');
        }
    }
    out
}

/// `l2sm_switch_sessions_refused_total{reason=...}`.
fn refused(lab: &TestLab, reason: &str) -> u64 {
    let text = metrics(lab);
    let key = format!("l2sm_switch_sessions_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /metrics"))
}

/// The connected switches with the address of their session's peer, from the API: a
/// replaced session would show another peer port.
fn sessions(lab: &TestLab) -> Vec<(String, String)> {
    let (code, body) = l2sm_test_support::lab::api_call(lab, "GET", "/api/v1/switches");
    assert_eq!(code, 200, "GET /api/v1/switches: {body}");
    let list = body
        .as_array()
        .or_else(|| body["switches"].as_array())
        .unwrap_or_else(|| panic!("{body}"));
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["peer"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn impostor_switches_get_no_session_and_change_nothing() {
    let lab = TestLab::up("sid", 2);
    // Something worth stealing: a network with members on both switches (flood groups).
    lab.ok(&["network", "create", "blue", "--cidr", "10.31.0.0/24"]);
    lab.attach("n1", "a", "blue", "10.31.0.1/24");
    lab.attach("n2", "b", "blue", "10.31.0.2/24");
    assert!(lab.pings("a", "10.31.0.2"));

    // The lab's switches speak TLS.
    for node in ["n1", "n2"] {
        let db = format!("unix:/run/l2sm/lab/{}/{node}/db.sock", lab.name);
        let bridges = Command::new("ovs-vsctl")
            .args([&format!("--db={db}"), "list-br"])
            .output()
            .unwrap();
        let bridge = String::from_utf8_lossy(&bridges.stdout)
            .lines()
            .find(|b| b.starts_with("br-") && *b != "br-phy")
            .expect("overlay bridge")
            .to_string();
        let ctl = Command::new("ovs-vsctl")
            .args([&format!("--db={db}"), "get-controller", &bridge])
            .output()
            .unwrap();
        let ctl = String::from_utf8_lossy(&ctl.stdout).trim().to_string();
        assert_eq!(ctl, format!("ssl:{CONTROLLER}:{OPENFLOW_PORT}"), "{node}");
    }

    let before = [switch_state(&lab, "n1"), switch_state(&lab, "n2")];
    assert!(
        before[0].contains("group_id="),
        "no groups to protect:\n{}",
        before[0]
    );
    let sessions_before = sessions(&lab);
    let n1_ns = format!("l2sm-{}-n1", lab.name);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // (a) no certificate.
    let tls_before = refused(&lab, "tls");
    let v = rt.block_on(impostor(&lab, &n1_ns, None, dpid_of("n2")));
    assert_eq!(v, Verdict::NoOpenFlow, "no certificate");
    assert_eq!(refused(&lab, "tls"), tls_before + 1);

    // (b) n1's valid certificate, claiming n2's datapath id.
    let v = rt.block_on(impostor(
        &lab,
        &n1_ns,
        Some(node_identity(&lab, "n1")),
        dpid_of("n2"),
    ));
    assert_eq!(
        v,
        Verdict::DroppedAfterFeatures,
        "certificate of another node"
    );
    assert_eq!(refused(&lab, "wrong_dpid"), 1);

    // (c) n1's certificate and datapath id while n1's switch is connected.
    let v = rt.block_on(impostor(
        &lab,
        &n1_ns,
        Some(node_identity(&lab, "n1")),
        dpid_of("n1"),
    ));
    assert_eq!(
        v,
        Verdict::DroppedAfterFeatures,
        "duplicate of a connected datapath id"
    );
    assert_eq!(refused(&lab, "duplicate"), 1);

    // The same client with a certificate of a node that has no switch yet gets a session:
    // the refusals above are the identity checks, not a broken client.
    let v = rt.block_on(impostor(
        &lab,
        &n1_ns,
        Some(stranger_identity(&lab, "n9", tmp.path())),
        dpid_of("n9"),
    ));
    assert!(
        matches!(v, Verdict::Session(_)),
        "a legitimate switch: {v:?}"
    );

    // Nothing changed on the real switches, and they kept their sessions.
    std::thread::sleep(Duration::from_millis(500));
    let after = [switch_state(&lab, "n1"), switch_state(&lab, "n2")];
    assert_eq!(before[0], after[0], "n1's flows and groups changed");
    assert_eq!(before[1], after[1], "n2's flows and groups changed");
    assert_eq!(sessions_before, sessions(&lab));
    assert!(lab.pings("a", "10.31.0.2"));

    // A pod cannot open a session: from its namespace the controller is not reachable at
    // all, or (if it were) TLS without a node key gets no OpenFlow.
    let pod_ns = format!("l2sm-{}-p-a", lab.name);
    for addr in [CONTROLLER, "10.250.0.254"] {
        let v = rt.block_on(impostor_at(&lab, &pod_ns, addr, None, dpid_of("n1")));
        assert!(
            matches!(v, Verdict::Unreachable(_) | Verdict::NoOpenFlow),
            "a pod got {v:?} from {addr}"
        );
        eprintln!("from a pod to {addr}: {v:?}");
    }
}
