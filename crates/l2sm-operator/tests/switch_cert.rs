//! Automatic switch certificates (issue #14): `l2sm agent-cert` (switch_cert::agent) and the
//! operator's signer (switch_cert::signer) against the fake API server, each client
//! authenticated as its ServiceAccount and held to its RBAC table.
//!
//! - End to end: the files are written (key 0600), the certificate chains to the CA, names
//!   the node, and the controller's TLS verifier and identity code accept it for that node;
//!   a second run keeps it (no new request); one with less than a third left is renewed.
//! - Denials with the reason: a pod on another node, a token node claim for another node, a
//!   replaced pod (uid), a ServiceAccount that is not the agents', an extra DNS SAN, two
//!   URIs, a wrong CN; another signer's request is never touched; a request approved by a
//!   human but failing the checks gets `Failed`, never a certificate.
//! - Failures leave the directory as it was: a request that vanishes, a timeout.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use l2sm_kube_fake::{FakeApi, Identity};
use l2sm_operator::api_calls;
use l2sm_operator::switch_cert::agent::{
    ensure_certificate, AgentCertArgs, AgentCertError, Outcome, Timing, CA_FILE, CERT_FILE,
    KEY_FILE,
};
use l2sm_operator::switch_cert::signer::{self, SignerConfig, DENIED_REASON, FAILED_REASON};
use l2sm_operator::switch_cert::{self, CertInfo, SIGNER_NAME};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const NS: &str = "l2sm-system";
const OPERATOR_USER: &str = "system:serviceaccount:l2sm-system:l2sm-operator";
const AGENT_USER: &str = "system:serviceaccount:l2sm-system:l2sm-agent";
const CSRS: &str = "certificatesigningrequests";
const CERTS: &str = "certificates.k8s.io";

struct Ca {
    cert_pem: String,
    key_pem: String,
}

fn make_ca() -> Ca {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "l2sm-switch-ca");
    let key = KeyPair::generate().unwrap();
    let key_pem = key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(params, key).unwrap();
    Ca {
        cert_pem: ca.pem(),
        key_pem,
    }
}

struct Cluster {
    fake: FakeApi,
    ca: Ca,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A fake cluster with the switch CA Secret, RBAC per ServiceAccount (the operator's and the
/// agents' tables; anyone else may do what an agent may), and the signer running when
/// `signer` is true.
fn cluster(signer: bool) -> Cluster {
    let fake = FakeApi::new();
    fake.authorize(|c| {
        let args = (
            c.group.as_str(),
            c.resource.as_str(),
            c.subresource.as_deref(),
            c.verb.as_str(),
            c.namespace.as_deref(),
            c.name.as_deref(),
            NS,
        );
        let table = if c.user == OPERATOR_USER {
            api_calls::allows
        } else {
            api_calls::agent_allows
        };
        table(args.0, args.1, args.2, args.3, args.4, args.5, args.6)
    });
    let ca = make_ca();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "l2sm-switch-ca", "namespace": NS},
        "type": "kubernetes.io/tls",
        "stringData": {},
    }))
    .unwrap();
    let mut secret = secret;
    secret.data = Some(BTreeMap::from([
        (
            "tls.crt".into(),
            ByteString(ca.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".into(),
            ByteString(ca.key_pem.clone().into_bytes()),
        ),
        (
            "ca.crt".into(),
            ByteString(ca.cert_pem.clone().into_bytes()),
        ),
    ]));
    fake.seed(&secret);
    let mut stop = None;
    if signer {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let client = fake.client_as(Identity {
            username: OPERATOR_USER.into(),
            ..Default::default()
        });
        tokio::spawn(signer::run(
            client,
            SignerConfig {
                namespace: NS.into(),
                ..SignerConfig::default()
            },
            async move {
                let _ = rx.await;
            },
        ));
        stop = Some(tx);
    }
    Cluster { fake, ca, stop }
}

/// An agent pod of a DaemonSet on `node`, as stored (with its uid).
fn agent_pod(fake: &FakeApi, name: &str, node: &str) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": NS,
            "labels": {"app": "l2sm-agent"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "l2sm-agents",
                                 "uid": "ds-uid", "controller": true}],
        },
        "spec": {"nodeName": node, "serviceAccountName": "l2sm-agent",
                 "containers": [{"name": "l2sm-switch", "image": "l2sm"}]},
    }))
    .unwrap();
    fake.seed(&pod)
}

/// The identity a pod-bound token of `pod` gives (with the node claim when `node_claim`).
fn token_of(pod: &Pod, node_claim: bool) -> Identity {
    let mut extra = BTreeMap::from([
        (
            switch_cert::EXTRA_POD_NAME.to_string(),
            vec![pod.metadata.name.clone().unwrap()],
        ),
        (
            switch_cert::EXTRA_POD_UID.to_string(),
            vec![pod.metadata.uid.clone().unwrap()],
        ),
    ]);
    if node_claim {
        extra.insert(
            switch_cert::EXTRA_NODE_NAME.to_string(),
            vec![pod.spec.as_ref().unwrap().node_name.clone().unwrap()],
        );
    }
    Identity {
        username: AGENT_USER.into(),
        uid: "sa-uid".into(),
        groups: vec![
            "system:serviceaccounts".into(),
            "system:authenticated".into(),
        ],
        extra,
    }
}

fn args(dir: &Path, node: &str, timeout: Duration) -> AgentCertArgs {
    AgentCertArgs {
        node: node.into(),
        dir: dir.to_path_buf(),
        expiration: Duration::from_secs(30 * 24 * 3600),
        timeout,
    }
}

fn fast() -> Timing {
    Timing {
        poll: Duration::from_millis(20),
        progress: Duration::from_millis(200),
    }
}

fn csrs(fake: &FakeApi) -> Vec<CertificateSigningRequest> {
    fake.list(None)
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The controller's view: a TLS session whose client presents the written files is
/// accepted by the controller's OpenFlow verifier (CA = the written ca.crt), and the node it
/// names is `node`, whose datapath id the session may then claim.
async fn controller_accepts(dir: &Path, ca: &Ca, node: &str) {
    use l2sm_controller::{identity, switch_tls};
    // The controller's server certificate from the same CA.
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &ca.cert_pem,
        rcgen::KeyPair::from_pem(&ca.key_pem).unwrap(),
    )
    .unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let server = switch_tls::server_config(
        vec![server_cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap(),
        &switch_tls::load_certs(&dir.join(CA_FILE)).unwrap(),
    )
    .unwrap();
    let client = switch_tls::client_config(
        &switch_tls::load_certs(&dir.join(CA_FILE)).unwrap(),
        Some((
            switch_tls::load_certs(&dir.join(CERT_FILE)).unwrap(),
            switch_tls::load_key(&dir.join(KEY_FILE)).unwrap(),
        )),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        switch_tls::accept(&acceptor, tcp).await.map(|(_, n)| n)
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _session = switch_tls::connect(client, "localhost", tcp).await.unwrap();
    let named = accepted
        .await
        .unwrap()
        .expect("the controller accepts the certificate");
    assert_eq!(named.as_deref(), Some(node));
    assert_eq!(
        identity::node_dpid(named.as_deref().unwrap()),
        identity::node_dpid(node)
    );
}

fn condition<'a>(
    csr: &'a CertificateSigningRequest,
    ty: &str,
) -> Option<&'a CertificateSigningRequestCondition> {
    csr.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

#[tokio::test]
async fn agent_gets_a_certificate_the_controller_accepts_and_keeps_it() {
    let cl = cluster(true);
    let pod = agent_pod(&cl.fake, "agent-a", "node-1");
    let dir = tempfile::tempdir().unwrap();
    let client = cl.fake.client_as(token_of(&pod, true));
    let out = ensure_certificate(
        client.clone(),
        &args(dir.path(), "node-1", Duration::from_secs(10)),
        fast(),
    )
    .await
    .unwrap();
    let Outcome::Issued { csr, .. } = out else {
        panic!("{out:?}")
    };
    assert!(csr.starts_with("l2sm-switch-node-1-"), "{csr}");

    // Files: key 0600, certificate chains to ca.crt (the CA), names the node.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let leaf =
        &CertInfo::all_from_pem(&std::fs::read(dir.path().join(CERT_FILE)).unwrap()).unwrap()[0];
    let ca = &CertInfo::all_from_pem(&std::fs::read(dir.path().join(CA_FILE)).unwrap()).unwrap()[0];
    let real_ca = &CertInfo::all_from_pem(cl.ca.cert_pem.as_bytes()).unwrap()[0];
    assert_eq!(ca.der, real_ca.der, "ca.crt is the switch CA");
    assert!(leaf.signed_by(real_ca));
    assert_eq!(leaf.nodes, vec!["node-1".to_string()]);
    // The requested 30 days (under the one-year cap).
    let life = leaf.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(
        life > Duration::from_secs(29 * 24 * 3600) && life <= Duration::from_secs(30 * 24 * 3600),
        "{life:?}"
    );
    controller_accepts(dir.path(), &cl.ca, "node-1").await;

    // The stored request: the server's record of the sender, approved by the signer.
    let stored: CertificateSigningRequest = cl.fake.get(None, &csr).unwrap();
    assert_eq!(stored.spec.username.as_deref(), Some(AGENT_USER));
    assert_eq!(
        condition(&stored, "Approved").unwrap().reason.as_deref(),
        Some(signer::APPROVED_REASON)
    );

    // Every call of each side is in its RBAC table (the authorizer refused nothing).
    let calls = cl.fake.calls();
    assert!(
        calls.iter().all(|c| c.code != 403),
        "{:?}",
        calls.iter().filter(|c| c.code == 403).collect::<Vec<_>>()
    );
    let agent_calls: Vec<_> = calls.iter().filter(|c| c.user == AGENT_USER).collect();
    assert!(agent_calls.iter().any(|c| c.verb == "create"));
    assert!(agent_calls
        .iter()
        .all(|c| c.resource == CSRS && (c.verb == "create" || c.verb == "get")));

    // A second run keeps the files: no new request.
    let before = files(dir.path());
    let out = ensure_certificate(
        client,
        &args(dir.path(), "node-1", Duration::from_secs(10)),
        fast(),
    )
    .await
    .unwrap();
    assert!(matches!(out, Outcome::Kept { .. }), "{out:?}");
    assert_eq!(csrs(&cl.fake).len(), 1);
    assert_eq!(files(dir.path()), before);

    // Files of another node are not kept for this one.
    assert!(
        switch_cert::agent::current_problem(dir.path(), "node-2", SystemTime::now())
            .unwrap()
            .contains("names")
    );
}

#[tokio::test]
async fn a_certificate_with_less_than_a_third_left_is_renewed() {
    let cl = cluster(true);
    let pod = agent_pod(&cl.fake, "agent-a", "node-1");
    let dir = tempfile::tempdir().unwrap();
    // Files as an earlier issue left them, with 25 % of a 4000 s lifetime left.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "node-1");
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "urn:l2sm:node:node-1".try_into().unwrap(),
    )];
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let checked = switch_cert::check_request(csr_pem.as_bytes(), &["client auth".into()]).unwrap();
    let ca = switch_cert::SwitchCa::from_pem(&cl.ca.cert_pem, &cl.ca.key_pem).unwrap();
    let chain = switch_cert::issue(
        &checked,
        csr_pem.as_bytes(),
        &ca,
        Duration::from_secs(4000),
        SystemTime::now() - Duration::from_secs(3000),
    )
    .unwrap();
    let certs = CertInfo::all_from_pem(chain.as_bytes()).unwrap();
    std::fs::write(dir.path().join(KEY_FILE), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.path().join(CERT_FILE),
        switch_cert::pem_block("CERTIFICATE", &certs[0].der),
    )
    .unwrap();
    std::fs::write(dir.path().join(CA_FILE), &cl.ca.cert_pem).unwrap();
    let problem =
        switch_cert::agent::current_problem(dir.path(), "node-1", SystemTime::now()).unwrap();
    assert!(problem.contains("third"), "{problem}");
    // With more than a third left, the same files are kept.
    assert_eq!(
        switch_cert::agent::current_problem(
            dir.path(),
            "node-1",
            SystemTime::now() - Duration::from_secs(2000)
        ),
        None
    );

    let out = ensure_certificate(
        cl.fake.client_as(token_of(&pod, true)),
        &args(dir.path(), "node-1", Duration::from_secs(10)),
        fast(),
    )
    .await
    .unwrap();
    assert!(
        matches!(out, Outcome::Issued { ref why, .. } if why.contains("third")),
        "{out:?}"
    );
    let leaf =
        &CertInfo::all_from_pem(&std::fs::read(dir.path().join(CERT_FILE)).unwrap()).unwrap()[0];
    assert_ne!(leaf.der, certs[0].der);
    assert_ne!(
        std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap(),
        key.serialize_pem(),
        "a new key"
    );
    assert_eq!(
        switch_cert::agent::current_problem(dir.path(), "node-1", SystemTime::now()),
        None
    );
}

/// Runs agent-cert as `who` for `node` and expects a denial whose message contains `why`;
/// nothing is written.
async fn expect_denied(cl: &Cluster, who: Identity, node: &str, why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let err = ensure_certificate(
        cl.fake.client_as(who),
        &args(dir.path(), node, Duration::from_secs(10)),
        fast(),
    )
    .await
    .unwrap_err();
    match &err {
        AgentCertError::Refused {
            condition,
            reason,
            message,
            ..
        } => {
            assert_eq!(condition, "Denied");
            assert_eq!(reason, DENIED_REASON);
            assert!(message.contains(why), "{message:?} lacks {why:?}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(why));
    assert!(
        files(dir.path()).is_empty(),
        "nothing written: {:?}",
        files(dir.path())
    );
    // Never signed.
    for c in csrs(&cl.fake) {
        assert!(c.status.and_then(|s| s.certificate).is_none());
    }
}

#[tokio::test]
async fn requests_from_the_wrong_sender_are_denied() {
    let cl = cluster(true);
    let on_2 = agent_pod(&cl.fake, "agent-b", "node-2");
    // The pod on node-2 asks for node-1 (no node claim: the pod's nodeName decides).
    expect_denied(
        &cl,
        token_of(&on_2, false),
        "node-1",
        "runs on node Some(\"node-2\")",
    )
    .await;
    // With a node claim for node-2.
    expect_denied(&cl, token_of(&on_2, true), "node-1", "node claim").await;
    // A replaced pod: the token's uid is not the pod's.
    let mut stale = token_of(&on_2, true);
    stale
        .extra
        .insert(switch_cert::EXTRA_POD_UID.into(), vec!["old-uid".into()]);
    expect_denied(&cl, stale, "node-2", "another uid").await;
    // Another ServiceAccount.
    let mut other = token_of(&on_2, true);
    other.username = "system:serviceaccount:l2sm-system:default".into();
    expect_denied(&cl, other, "node-2", "not the agents' ServiceAccount").await;
    // No pod claims (a legacy token).
    let mut legacy = token_of(&on_2, true);
    legacy.extra.clear();
    expect_denied(&cl, legacy, "node-2", "pod-bound").await;
    // A pod that is not an agent (no DaemonSet, other label).
    let plain: Pod = serde_json::from_value(json!({
        "metadata": {"name": "plain", "namespace": NS, "labels": {"app": "other"}},
        "spec": {"nodeName": "node-2", "serviceAccountName": "l2sm-agent",
                 "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    let plain = cl.fake.seed(&plain);
    expect_denied(&cl, token_of(&plain, true), "node-2", "not an agent").await;
}

/// Creates a request with content `csr_pem` as the agent of `pod` and returns it once the
/// signer decided.
async fn submit(
    cl: &Cluster,
    pod: &Pod,
    name: &str,
    csr_pem: &str,
    signer: &str,
) -> CertificateSigningRequest {
    let api: Api<CertificateSigningRequest> = Api::all(cl.fake.client_as(token_of(pod, true)));
    let csr = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: signer.into(),
            usages: Some(vec!["client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    api.create(&PostParams::default(), &csr).await.unwrap();
    decided(cl, name).await
}

async fn decided(cl: &Cluster, name: &str) -> CertificateSigningRequest {
    for _ in 0..750 {
        let c: CertificateSigningRequest = cl.fake.get(None, name).unwrap();
        if ["Denied", "Failed"]
            .iter()
            .any(|t| condition(&c, t).is_some())
            || c.status
                .as_ref()
                .and_then(|s| s.certificate.as_ref())
                .is_some()
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} was not decided")
}

fn request(cn: &str, sans: Vec<rcgen::SanType>) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn uri(node: &str) -> rcgen::SanType {
    rcgen::SanType::URI(format!("urn:l2sm:node:{node}").try_into().unwrap())
}

#[tokio::test]
async fn requests_with_the_wrong_content_are_denied_and_other_signers_untouched() {
    let cl = cluster(true);
    let pod = agent_pod(&cl.fake, "agent-a", "node-1");
    let cases = [
        (
            "dns",
            request(
                "node-1",
                vec![
                    uri("node-1"),
                    rcgen::SanType::DnsName("evil.example".try_into().unwrap()),
                ],
            ),
            "DNS:evil.example",
        ),
        (
            "two-uris",
            request("node-1", vec![uri("node-1"), uri("node-2")]),
            "exactly URI:urn:l2sm:node:node-1",
        ),
        (
            "wrong-cn",
            request("node-2", vec![uri("node-1")]),
            "exactly URI:urn:l2sm:node:node-2",
        ),
        ("no-san", request("node-1", vec![]), "no subjectAltName"),
    ];
    // Another signer's request first: the signer must leave it as it is.
    let foreign = request("node-1", vec![uri("node-1")]);
    let api: Api<CertificateSigningRequest> = Api::all(cl.fake.client_as(token_of(&pod, true)));
    let mut other = CertificateSigningRequest::default();
    other.metadata.name = Some("foreign".into());
    other.spec = CertificateSigningRequestSpec {
        request: ByteString(foreign.into_bytes()),
        signer_name: "example.com/other".into(),
        usages: Some(vec!["client auth".into()]),
        ..Default::default()
    };
    api.create(&PostParams::default(), &other).await.unwrap();
    let foreign_before = cl.fake.get_value(CERTS, CSRS, None, "foreign").unwrap();
    for (name, pem, why) in cases {
        let c = submit(&cl, &pod, name, &pem, SIGNER_NAME).await;
        let denied = condition(&c, "Denied").unwrap_or_else(|| panic!("{name}: {c:?}"));
        assert_eq!(denied.reason.as_deref(), Some(DENIED_REASON));
        assert!(
            denied.message.as_deref().unwrap().contains(why),
            "{name}: {:?}",
            denied.message
        );
        assert!(c.status.unwrap().certificate.is_none());
    }
    // A usage beyond client auth.
    let pem = request("node-1", vec![uri("node-1")]);
    let api2: Api<CertificateSigningRequest> = Api::all(cl.fake.client_as(token_of(&pod, true)));
    let mut server_auth = CertificateSigningRequest::default();
    server_auth.metadata.name = Some("server-auth".into());
    server_auth.spec = CertificateSigningRequestSpec {
        request: ByteString(pem.into_bytes()),
        signer_name: SIGNER_NAME.into(),
        usages: Some(vec!["client auth".into(), "server auth".into()]),
        ..Default::default()
    };
    api2.create(&PostParams::default(), &server_auth)
        .await
        .unwrap();
    let c = decided(&cl, "server-auth").await;
    assert!(condition(&c, "Denied")
        .unwrap()
        .message
        .as_deref()
        .unwrap()
        .contains("server auth"));
    // The foreign request was seen long before these were decided, and is untouched: same
    // resourceVersion, spec and status (managedFields timestamps are not compared: once, in a
    // loaded run, the stored entry's time moved by a second with the resourceVersion unchanged,
    // i.e. without any write).
    let untouched = |v: &serde_json::Value| {
        (
            v["metadata"]["resourceVersion"].clone(),
            v["spec"].clone(),
            v["status"].clone(),
        )
    };
    assert_eq!(
        untouched(&cl.fake.get_value(CERTS, CSRS, None, "foreign").unwrap()),
        untouched(&foreign_before)
    );
    // A valid one from the same pod is still signed (the signer did not stop).
    let ok = submit(
        &cl,
        &pod,
        "valid",
        &request("node-1", vec![uri("node-1")]),
        SIGNER_NAME,
    )
    .await;
    assert!(ok.status.unwrap().certificate.is_some());
}

#[tokio::test]
async fn a_request_approved_by_someone_else_is_still_checked() {
    let cl = cluster(false);
    let pod = agent_pod(&cl.fake, "agent-a", "node-1");
    let api: Api<CertificateSigningRequest> = Api::all(cl.fake.client_as(token_of(&pod, true)));
    let mut bad = CertificateSigningRequest::default();
    bad.metadata.name = Some("human-approved".into());
    bad.spec = CertificateSigningRequestSpec {
        request: ByteString(request("node-2", vec![uri("node-2")]).into_bytes()),
        signer_name: SIGNER_NAME.into(),
        usages: Some(vec!["client auth".into()]),
        ..Default::default()
    };
    let created = api.create(&PostParams::default(), &bad).await.unwrap();
    // An admin approves it (kubectl certificate approve).
    let admin: Api<CertificateSigningRequest> = Api::all(cl.fake.admin_client());
    let mut approved = created.clone();
    approved.status = Some(CertificateSigningRequestStatus {
        conditions: Some(vec![CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("KubectlApprove".into()),
            ..Default::default()
        }]),
        ..Default::default()
    });
    admin
        .replace_subresource(
            "approval",
            "human-approved",
            &PostParams::default(),
            &approved,
        )
        .await
        .unwrap();
    // The signer runs now: the pod is on node-1, the request names node-2.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(signer::run(
        cl.fake.client_as(Identity {
            username: OPERATOR_USER.into(),
            ..Default::default()
        }),
        SignerConfig {
            namespace: NS.into(),
            ..SignerConfig::default()
        },
        async move {
            let _ = rx.await;
        },
    ));
    let c = decided(&cl, "human-approved").await;
    let _ = tx.send(());
    let failed = condition(&c, "Failed").expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some(FAILED_REASON));
    assert!(
        failed
            .message
            .as_deref()
            .unwrap()
            .contains("is not the requested node \"node-2\""),
        "{failed:?}"
    );
    assert!(condition(&c, "Approved").is_some());
    assert!(c.status.unwrap().certificate.is_none(), "never signed");
}

/// Existing files, as a failure must leave them: an expiring set.
fn expiring_files(cl: &Cluster, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "node-1");
    params.subject_alt_names = vec![uri("node-1")];
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let checked = switch_cert::check_request(csr_pem.as_bytes(), &["client auth".into()]).unwrap();
    let ca = switch_cert::SwitchCa::from_pem(&cl.ca.cert_pem, &cl.ca.key_pem).unwrap();
    let chain = switch_cert::issue(
        &checked,
        csr_pem.as_bytes(),
        &ca,
        Duration::from_secs(600),
        SystemTime::now() - Duration::from_secs(599),
    )
    .unwrap();
    let certs = CertInfo::all_from_pem(chain.as_bytes()).unwrap();
    std::fs::write(dir.join(KEY_FILE), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.join(CERT_FILE),
        switch_cert::pem_block("CERTIFICATE", &certs[0].der),
    )
    .unwrap();
    std::fs::write(dir.join(CA_FILE), &cl.ca.cert_pem).unwrap();
    files(dir)
}

#[tokio::test]
async fn a_vanished_request_or_a_timeout_fails_clearly_and_changes_nothing() {
    let cl = cluster(false);
    let pod = agent_pod(&cl.fake, "agent-a", "node-1");
    let dir = tempfile::tempdir().unwrap();
    let before = expiring_files(&cl, dir.path());

    // Nobody signs: timeout, naming the request.
    let err = ensure_certificate(
        cl.fake.client_as(token_of(&pod, true)),
        &args(dir.path(), "node-1", Duration::from_millis(300)),
        fast(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AgentCertError::Timeout { .. }), "{err}");
    let name = csrs(&cl.fake)[0].metadata.name.clone().unwrap();
    assert!(err.to_string().contains(&name), "{err}");
    assert_eq!(
        files(dir.path()),
        before,
        "old files untouched, no temporary left"
    );

    // The request is deleted while the agent waits.
    let fake = cl.fake.clone();
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let remover = tokio::spawn({
        let seen = seen.clone();
        async move {
            for _ in 0..500 {
                let pending: Vec<CertificateSigningRequest> = fake.list(None);
                if let Some(c) = pending
                    .iter()
                    .find(|c| c.metadata.name.as_deref() != Some(name.as_str()))
                {
                    fake.remove(CERTS, CSRS, None, c.metadata.name.as_deref().unwrap());
                    seen.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let err = ensure_certificate(
        cl.fake.client_as(token_of(&pod, true)),
        &args(dir.path(), "node-1", Duration::from_secs(10)),
        fast(),
    )
    .await
    .unwrap_err();
    remover.await.unwrap();
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst));
    assert!(matches!(err, AgentCertError::Vanished { .. }), "{err}");
    assert!(err.to_string().contains("disappeared"), "{err}");
    assert_eq!(files(dir.path()), before);
}

#[tokio::test]
async fn bad_options_change_nothing() {
    let cl = cluster(false);
    let dir = tempfile::tempdir().unwrap();
    for node in ["", "Node_1", "a/b"] {
        let err = ensure_certificate(
            cl.fake.client(),
            &args(dir.path(), node, Duration::from_secs(1)),
            fast(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, AgentCertError::Config(_)), "{err}");
    }
    let mut short = args(dir.path(), "node-1", Duration::from_secs(1));
    short.expiration = Duration::from_secs(60);
    assert!(matches!(
        ensure_certificate(cl.fake.client(), &short, fast())
            .await
            .unwrap_err(),
        AgentCertError::Config(_)
    ));
    assert!(csrs(&cl.fake).is_empty());
    assert!(files(dir.path()).is_empty());
}
