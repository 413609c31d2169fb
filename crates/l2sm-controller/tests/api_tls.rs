//! The REST API over TLS on a real controller process: the typed client verifies the server
//! against a CA, a client certificate naming a node authenticates as that node's agent (its
//! own ports only), Basic credentials keep working, plain HTTP gets nothing, and a renewed
//! certificate is served without a restart.

use l2sm_api::{ControllerClient, RetryPolicy, TlsOptions};
use l2sm_controller::api::auth::node_dpid;
use l2sm_test_support::controller::ControllerProcess;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use std::path::{Path, PathBuf};

struct Pki {
    ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(cn: &str) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        Pki {
            ca_pem: issuer.pem(),
            issuer,
        }
    }

    /// A certificate with these SANs, written as `<dir>/<stem>.crt` and `.key`.
    fn issue(&self, dir: &Path, stem: &str, sans: Vec<SanType>) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = sans;
        p.distinguished_name.push(DnType::CommonName, stem);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

fn server_sans() -> Vec<SanType> {
    vec![
        SanType::DnsName("localhost".try_into().unwrap()),
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
    ]
}

fn node_san(node: &str) -> Vec<SanType> {
    vec![SanType::URI(
        format!("urn:l2sm:node:{node}").try_into().unwrap(),
    )]
}

#[tokio::test]
async fn tls_api_with_client_certificates_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_ca = Pki::new("api-ca");
    let client_ca = Pki::new("node-ca");
    let (cert, key) = server_ca.issue(d, "server", server_sans());
    std::fs::write(d.join("ca.pem"), &server_ca.ca_pem).unwrap();
    std::fs::write(d.join("client-ca.pem"), &client_ca.ca_pem).unwrap();
    let (a_cert, a_key) = client_ca.issue(d, "node-a", node_san("node-a"));
    // Same node name, but signed by a CA the controller does not trust.
    let rogue = Pki::new("rogue");
    let (r_cert, r_key) = rogue.issue(d, "rogue", node_san("node-a"));

    let c = ControllerProcess::start_with_args(
        "op",
        "op-pw",
        &[
            "--api-tls-cert".into(),
            cert.display().to_string(),
            "--api-tls-key".into(),
            key.display().to_string(),
            "--api-client-ca".into(),
            d.join("client-ca.pem").display().to_string(),
        ],
    );
    // `start_with_args` waited for any answer; plain HTTP gets no HTTP answer now.
    assert!(
        c.try_request("GET", "/onos/vnets/api/status", None, true)
            .is_none_or(|(code, _)| code == 400),
        "plain HTTP served on the TLS port"
    );
    let url = format!("https://localhost:{}", c.api);
    let tls = |cert: Option<(&PathBuf, &PathBuf)>| TlsOptions {
        ca_file: Some(d.join("ca.pem")),
        client_cert: cert.map(|c| c.0.clone()),
        client_key: cert.map(|c| c.1.clone()),
    };
    let admin = ControllerClient::with_tls(
        &url,
        Some(("op".into(), "op-pw".into())),
        RetryPolicy::once(),
        tls(None),
    )
    .unwrap();
    admin.create_vnet("n1").await.expect("admin over TLS");

    let agent = ControllerClient::with_tls(
        &url,
        None,
        RetryPolicy::once(),
        tls(Some((&a_cert, &a_key))),
    )
    .unwrap();
    let own = format!("of:{:016x}/3", node_dpid("node-a"));
    let other = format!("of:{:016x}/3", node_dpid("node-b"));
    agent
        .add_port("n1", &own)
        .await
        .expect("node-a's certificate adds node-a's port");
    let refused = agent.add_port("n1", &other).await.unwrap_err();
    assert_eq!(refused.status(), Some(403), "{refused}");
    let refused = agent.create_vnet("n2").await.unwrap_err();
    assert_eq!(refused.status(), Some(403), "{refused}");

    // No certificate, no credentials: 401. A certificate of an untrusted CA: no session.
    let anonymous = ControllerClient::with_tls(&url, None, RetryPolicy::once(), tls(None)).unwrap();
    assert_eq!(anonymous.networks().await.unwrap_err().status(), Some(401));
    let rogue_client = ControllerClient::with_tls(
        &url,
        None,
        RetryPolicy::once(),
        tls(Some((&r_cert, &r_key))),
    )
    .unwrap();
    let e = rogue_client.add_port("n1", &other).await.unwrap_err();
    assert_eq!(
        e.status(),
        None,
        "an untrusted client certificate got an answer: {e}"
    );

    // A renewed certificate from another CA is served at the next handshake.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let new_ca = Pki::new("api-ca-2");
    let (new_cert, new_key) = new_ca.issue(d, "server2", server_sans());
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::write(d.join("ca2.pem"), &new_ca.ca_pem).unwrap();
    let renewed = ControllerClient::with_tls(
        &url,
        Some(("op".into(), "op-pw".into())),
        RetryPolicy::once(),
        TlsOptions {
            ca_file: Some(d.join("ca2.pem")),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        renewed.networks().await.is_ok(),
        "renewed certificate not served"
    );
    let old_trust = ControllerClient::with_tls(
        &url,
        Some(("op".into(), "op-pw".into())),
        RetryPolicy::once(),
        tls(None),
    )
    .unwrap();
    assert!(
        old_trust.networks().await.is_err(),
        "the old certificate is still served"
    );
}
