//! The webhook's self-signed mode with several replicas (issue #13, defect 4): two operator
//! webhooks started as `l2sm operator` starts them (`start_webhook`, real HTTPS on
//! 127.0.0.1) against one stateful fake API server. Both must serve a certificate that
//! verifies against the `caBundle` stored in the MutatingWebhookConfiguration, for the
//! Service's DNS name; before, each replica made its own CA and the last one written won, so
//! the API server's calls to the other replica failed TLS.

use base64::Engine as _;
use clap::Parser;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use l2sm_kube_fake::FakeApi;
use l2sm_operator::operator::{start_webhook, OperatorArgs};
use l2sm_operator::webhook;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

const NS: &str = "l2sm-system";
const SERVICE: &str = "l2sm-webhook-service";
const CONFIG: &str = "l2sm-mutating-webhook-configuration";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: OperatorArgs,
}

fn args(port: u16) -> OperatorArgs {
    Cli::try_parse_from([
        "l2sm-operator",
        "--namespace",
        NS,
        "--webhook-self-signed-service",
        SERVICE,
        "--webhook-listen",
        &format!("127.0.0.1:{port}"),
        // No cert-manager: the mounted files do not exist.
        "--webhook-cert",
        "/nonexistent/l2sm/tls.crt",
        "--webhook-key",
        "/nonexistent/l2sm/tls.key",
    ])
    .unwrap()
    .args
}

fn cluster() -> FakeApi {
    let fake = FakeApi::new();
    // RBAC as deploy/rbac.yaml grants it (the operator's table of API calls).
    fake.authorize(|c| {
        l2sm_operator::api_calls::allows(
            &c.group,
            &c.resource,
            c.subresource.as_deref(),
            &c.verb,
            c.namespace.as_deref(),
            c.name.as_deref(),
            NS,
        )
    });
    fake.seed(
        &serde_json::from_value::<MutatingWebhookConfiguration>(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": CONFIG},
            "webhooks": [{
                "name": "mpod.kb.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "clientConfig": {"service": {"name": SERVICE, "namespace": NS, "path": "/mutate-v1-pod"}}
            }]
        }))
        .unwrap(),
    );
    fake
}

/// The CA certificates in the stored configuration's caBundle.
fn ca_bundle(fake: &FakeApi) -> Vec<CertificateDer<'static>> {
    let mwc = fake
        .get::<MutatingWebhookConfiguration>(None, CONFIG)
        .unwrap();
    let hooks = mwc.webhooks.unwrap();
    assert_eq!(hooks.len(), 1);
    let bundle = hooks[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("caBundle set");
    CertificateDer::pem_slice_iter(&bundle.0)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// GET /healthz over HTTPS as the API server calls the webhook: the Service's DNS name,
/// verified against `roots` only.
async fn healthz(addr: SocketAddr, roots: &[CertificateDer<'static>]) -> Result<u16, String> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = format!("{SERVICE}.{NS}.svc");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.clone()).unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/healthz")
        .header("host", name)
        .body(String::new())
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{addr} not listening");
}

#[tokio::test]
async fn two_self_signed_replicas_serve_certificates_the_ca_bundle_verifies() {
    let fake = cluster();
    let (p1, p2) = (
        l2sm_test_support::free_port(),
        l2sm_test_support::free_port(),
    );
    let (a1, a2) = (args(p1), args(p2));
    // Both replicas start at the same time (as a Deployment's two pods do).
    let (r1, r2) = tokio::join!(
        start_webhook(&a1, fake.client()),
        start_webhook(&a2, fake.client())
    );
    let (t1, t2) = (r1.unwrap(), r2.unwrap());
    let addrs: Vec<SocketAddr> = [p1, p2]
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
        .collect();
    for a in &addrs {
        wait_listening(*a).await;
    }
    let roots = ca_bundle(&fake);
    for a in &addrs {
        assert_eq!(
            healthz(*a, &roots).await,
            Ok(200),
            "replica on {a} serves a certificate the caBundle does not verify"
        );
    }
    // One shared pair, in the operator's namespace.
    let secret = fake
        .get::<Secret>(Some(NS), webhook::SELF_SIGNED_SECRET)
        .expect("the shared Secret");
    let data = secret.data.unwrap();
    let stored_bundle = fake
        .get::<MutatingWebhookConfiguration>(None, CONFIG)
        .unwrap()
        .webhooks
        .unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap();
    assert_eq!(
        data["ca.crt"].0, stored_bundle.0,
        "caBundle is the shared CA"
    );
    let creates = fake
        .calls()
        .into_iter()
        .filter(|c| c.verb == "create" && c.resource == "secrets" && c.code < 300)
        .count();
    assert_eq!(
        creates, 1,
        "one replica created the pair, the other read it"
    );

    // A third replica (a restart) reuses the stored pair and leaves the caBundle as it is.
    let p3 = l2sm_test_support::free_port();
    let t3 = start_webhook(&args(p3), fake.client()).await.unwrap();
    let a3: SocketAddr = format!("127.0.0.1:{p3}").parse().unwrap();
    wait_listening(a3).await;
    assert_eq!(ca_bundle(&fake), roots);
    for a in addrs.iter().chain([&a3]) {
        assert_eq!(healthz(*a, &roots).await, Ok(200), "{a}");
    }
    for t in [t1, t2, t3] {
        t.abort();
    }
}

#[tokio::test]
async fn a_stored_pair_for_other_names_is_rotated_keeping_the_previous_ca_trusted() {
    let fake = cluster();
    // A pair from an install in another namespace (does not cover this Service's names).
    let old = webhook::self_signed(&webhook::service_dns_names(SERVICE, "elsewhere")).unwrap();
    let b = |s: &str| json!(base64::engine::general_purpose::STANDARD.encode(s));
    fake.seed(
        &serde_json::from_value::<Secret>(json!({
            "metadata": {"name": webhook::SELF_SIGNED_SECRET, "namespace": NS},
            "type": "kubernetes.io/tls",
            "data": {"ca.crt": b(&old.ca_pem), "tls.crt": b(&old.cert_pem), "tls.key": b(&old.key_pem)}
        }))
        .unwrap(),
    );
    let p = l2sm_test_support::free_port();
    let t = start_webhook(&args(p), fake.client()).await.unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{p}").parse().unwrap();
    wait_listening(addr).await;
    let roots = ca_bundle(&fake);
    assert_eq!(roots.len(), 2, "the new CA and the previous one");
    let old_ca = CertificateDer::from_pem_slice(old.ca_pem.as_bytes()).unwrap();
    assert!(roots.contains(&old_ca), "the previous CA stays trusted");
    assert_eq!(healthz(addr, &roots).await, Ok(200));
    let stored = fake
        .get::<Secret>(Some(NS), webhook::SELF_SIGNED_SECRET)
        .unwrap()
        .data
        .unwrap();
    assert_ne!(stored["tls.crt"].0, old.cert_pem.as_bytes(), "rotated");
    t.abort();
}

/// Stores `pair` as the shared Secret (what another replica's write does).
fn seed_pair(fake: &FakeApi, pair: &webhook::SelfSigned) {
    let b = |s: &str| json!(base64::engine::general_purpose::STANDARD.encode(s));
    fake.seed(
        &serde_json::from_value::<Secret>(json!({
            "metadata": {"name": webhook::SELF_SIGNED_SECRET, "namespace": NS},
            "type": "kubernetes.io/tls",
            "data": {"ca.crt": b(&pair.ca_pem), "tls.crt": b(&pair.cert_pem), "tls.key": b(&pair.key_pem)}
        }))
        .unwrap(),
    );
}

/// Another replica writes the Secret between this replica's read and its write: the create
/// (409 AlreadyExists) or the rotating update (409 Conflict, stale resourceVersion) loses, and
/// this replica serves the winner's pair and writes the winner's CA.
#[tokio::test]
async fn a_replica_losing_the_race_serves_the_winners_pair() {
    let names = webhook::service_dns_names(SERVICE, NS);
    for stale_first in [false, true] {
        let fake = cluster();
        if stale_first {
            seed_pair(
                &fake,
                &webhook::self_signed(&webhook::service_dns_names(SERVICE, "elsewhere")).unwrap(),
            );
        }
        let winner = webhook::self_signed(&names).unwrap();
        let (verb, hook_fake, hook_winner) = (
            if stale_first { "update" } else { "create" },
            fake.clone(),
            winner.clone(),
        );
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hook_fired = fired.clone();
        fake.on_request(move |c| {
            if c.verb == verb
                && c.resource == "secrets"
                && !hook_fired.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                seed_pair(&hook_fake, &hook_winner);
            }
        });
        let p = l2sm_test_support::free_port();
        let t = start_webhook(&args(p), fake.client()).await.unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{p}").parse().unwrap();
        wait_listening(addr).await;
        assert!(
            fired.load(std::sync::atomic::Ordering::SeqCst),
            "the race happened"
        );
        let lost = fake
            .calls()
            .into_iter()
            .any(|c| c.verb == verb && c.resource == "secrets" && c.code == 409);
        assert!(lost, "this replica's {verb} lost with 409");
        let winner_ca = CertificateDer::from_pem_slice(winner.ca_pem.as_bytes()).unwrap();
        assert_eq!(ca_bundle(&fake), vec![winner_ca.clone()], "the winner's CA");
        assert_eq!(healthz(addr, &[winner_ca]).await, Ok(200));
        t.abort();
    }
}
