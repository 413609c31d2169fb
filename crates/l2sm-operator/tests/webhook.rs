//! The mutating webhook over real HTTPS: a server on 127.0.0.1 with a freshly generated
//! certificate, AdmissionReview v1 requests for every annotation form and every error case,
//! and the returned base64 JSON patch decoded and applied to the pod.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use l2sm_operator::scope::{NetworkScope, ALLOWED_NAMESPACES_ANNOTATION};
use l2sm_operator::webhook::{self, MemoryCatalog, OnError, Webhook, WebhookConfig, WEBHOOK_PATH};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

struct Server {
    addr: SocketAddr,
    ca_pem: String,
    catalog: Arc<MemoryCatalog>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A webhook serving cert files from a temporary directory, as with cert-manager.
    async fn start(on_error: OnError) -> Server {
        Server::start_scoped(on_error, NetworkScope::Global).await
    }

    /// A webhook with `--network-scope` `scope`.
    async fn start_scoped(on_error: OnError, scope: NetworkScope) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let pair = webhook::write_self_signed(dir.path(), &names()).unwrap();
        let tls = webhook::tls_from_files(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
            .unwrap();
        let catalog = Arc::new(MemoryCatalog::new());
        for (ns, n) in [
            ("default", "ping-network-intra"),
            ("default", "v-network-1"),
            ("default", "v-network-2"),
            ("default", "vlink-sample"),
            ("other", "remote-net"),
        ] {
            catalog.insert(ns, n);
        }
        let hook = Arc::new(Webhook::new(
            catalog.clone(),
            WebhookConfig { on_error, scope },
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(webhook::serve_https(
            listener,
            tls,
            webhook::router(hook),
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            ca_pem: pair.ca_pem,
            catalog,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn post(&self, body: &str) -> (u16, Vec<u8>) {
        request(self.addr, &self.ca_pem, "POST", WEBHOOK_PATH, body)
            .await
            .unwrap()
    }

    /// Posts a review and returns the `response` object.
    async fn review(&self, body: &str) -> Value {
        let (code, bytes) = self.post(body).await;
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&bytes));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        v["response"].clone()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

fn names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// One HTTPS request on a fresh connection, verifying the server against `ca_pem`.
async fn request(
    addr: SocketAddr,
    ca_pem: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Vec<u8>), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(client_config(ca_pem))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((code, bytes.to_vec()))
}

fn pod(labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ping", "namespace": "default", "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "c", "image": "alpine:latest"}]}
    })
}

fn l2sm_pod(networks: &str) -> Value {
    pod(json!({"l2sm": "true"}), json!({"l2sm/networks": networks}))
}

fn review_body(uid: &str, operation: &str, namespace: &str, object: &Value) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "test"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
    .to_string()
}

fn create(object: &Value) -> String {
    review_body("uid-1", "CREATE", "default", object)
}

/// Decodes the response's patch and applies its `add` operations to `pod`.
fn apply_patch(response: &Value, pod: &Value) -> (Vec<Value>, Value) {
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(
            response["patch"]
                .as_str()
                .expect("patch is a base64 string"),
        )
        .unwrap();
    let ops: Vec<Value> = serde_json::from_slice(&raw).unwrap();
    let mut out = pod.clone();
    for op in &ops {
        assert_eq!(op["op"], "add");
        let path = op["path"].as_str().unwrap();
        // Only annotations change: never the node, never anything else.
        assert!(path.starts_with("/metadata/annotations/"), "{path}");
        let mut target = &mut out;
        let tokens: Vec<String> = path[1..]
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        for t in &tokens[..tokens.len() - 1] {
            target = &mut target[t.as_str()];
        }
        target[tokens.last().unwrap().as_str()] = op["value"].clone();
    }
    (ops, out)
}

fn multus_of(pod: &Value) -> Value {
    serde_json::from_str(
        pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
            .as_str()
            .expect("multus annotation"),
    )
    .unwrap()
}

/// Every accepted form of `l2sm/networks` and the Multus value it becomes.
#[tokio::test]
async fn annotation_forms_become_multus_networks() {
    let server = Server::start(OnError::Reject).await;
    let cases = [
        (
            "ping-network-intra",
            json!([{"name": "l2sm-ping-network-intra"}]),
        ),
        (
            "v-network-1, v-network-2",
            json!([{"name": "l2sm-v-network-1"}, {"name": "l2sm-v-network-2"}]),
        ),
        (
            r#"[{"name": "ping-network-intra"}]"#,
            json!([{"name": "l2sm-ping-network-intra"}]),
        ),
        (
            r#"[{"name": "ping-network-intra","ips": ["10.0.0.1/24"]}]"#,
            json!([{"name": "l2sm-ping-network-intra", "ips": ["10.0.0.1/24"]}]),
        ),
        (
            r#"[{"name": "v-network-1", "ips": ["10.0.1.1/24"]}, {"name": "v-network-2", "ips": ["10.0.2.1/24"]}]"#,
            json!([{"name": "l2sm-v-network-1", "ips": ["10.0.1.1/24"]},
                   {"name": "l2sm-v-network-2", "ips": ["10.0.2.1/24"]}]),
        ),
        (
            "[ { \"name\": \"vlink-sample\",\n    \"ips\": [\"192.168.1.2/24\"] }]",
            json!([{"name": "l2sm-vlink-sample", "ips": ["192.168.1.2/24"]}]),
        ),
        (
            r#"[{"Name": "v-network-1", "IPs": ["fd00::1/64"], "ifname": "blue0", "mac": "02:00:00:00:00:07", "namespace": "ignored", "extra": true}]"#,
            json!([{"name": "l2sm-v-network-1", "ips": ["fd00::1/64"], "mac": "02:00:00:00:00:07", "interface": "blue0"}]),
        ),
        // Duplicates give two interfaces on one network, as upstream.
        (
            "ping-network-intra,ping-network-intra",
            json!([{"name": "l2sm-ping-network-intra"}, {"name": "l2sm-ping-network-intra"}]),
        ),
        // Found by name in another namespace, as upstream.
        ("remote-net", json!([{"name": "l2sm-remote-net"}])),
    ];
    for (annotation, want) in cases {
        let p = l2sm_pod(annotation);
        let resp = server.review(&create(&p)).await;
        assert_eq!(resp["uid"], "uid-1");
        let (ops, patched) = apply_patch(&resp, &p);
        assert_eq!(ops.len(), 1, "{annotation}: {ops:?}");
        assert_eq!(multus_of(&patched), want, "{annotation}");
        // Nothing else changed: no node pinned, the request annotation kept.
        assert!(patched["spec"].get("nodeName").is_none());
        assert_eq!(
            patched["metadata"]["annotations"]["l2sm/networks"],
            annotation
        );
    }
    server.stop().await;
}

/// A pod's own Multus networks are kept and ours appended; a pod already carrying ours is
/// left alone (webhook re-invocation).
#[tokio::test]
async fn existing_multus_networks_are_merged() {
    let server = Server::start(OnError::Reject).await;
    let p = pod(
        json!({"l2sm": "true"}),
        json!({"l2sm/networks": "v-network-1", "k8s.v1.cni.cncf.io/networks": "macvlan-conf"}),
    );
    let (_, patched) = apply_patch(&server.review(&create(&p)).await, &p);
    assert_eq!(
        multus_of(&patched),
        json!([{"name": "macvlan-conf"}, {"name": "l2sm-v-network-1"}])
    );
    // Reviewing the mutated pod again changes nothing.
    let again = server.review(&create(&patched)).await;
    assert_eq!(again["allowed"], true);
    assert!(again.get("patch").is_none(), "{again}");
    server.stop().await;
}

/// Pods the webhook must not touch: answered `allowed` with no patch.
#[tokio::test]
async fn pods_left_alone() {
    let server = Server::start(OnError::Reject).await;
    let cases = [
        (
            "no l2sm label",
            pod(json!({"app": "x"}), json!({"l2sm/networks": "nope"})),
            "CREATE",
        ),
        (
            "label not true",
            pod(json!({"l2sm": "false"}), json!({"l2sm/networks": "nope"})),
            "CREATE",
        ),
        (
            "no labels",
            pod(Value::Null, json!({"l2sm/networks": "nope"})),
            "CREATE",
        ),
        (
            "no l2sm/networks",
            pod(json!({"l2sm": "true"}), json!({"other": "x"})),
            "CREATE",
        ),
        (
            "no annotations",
            pod(json!({"l2sm": "true"}), Value::Null),
            "CREATE",
        ),
        (
            "already errored",
            pod(
                json!({"l2sm": "true"}),
                json!({"l2sm/networks": "nope", "l2sm/error": "earlier"}),
            ),
            "CREATE",
        ),
        ("empty request", l2sm_pod("  "), "CREATE"),
        ("empty list", l2sm_pod("[]"), "CREATE"),
        ("update", l2sm_pod("nope"), "UPDATE"),
        ("delete", l2sm_pod("nope"), "DELETE"),
    ];
    for (what, p, op) in cases {
        let resp = server
            .review(&review_body("uid-9", op, "default", &p))
            .await;
        assert_eq!(resp["uid"], "uid-9", "{what}");
        assert_eq!(resp["allowed"], true, "{what}: {resp}");
        assert!(resp.get("patch").is_none(), "{what}: {resp}");
    }
    server.stop().await;
}

/// Pods created through a controller have no name yet; the namespace comes from the request.
#[tokio::test]
async fn generate_name_pod_in_request_namespace() {
    let server = Server::start(OnError::Reject).await;
    server.catalog.insert("apps", "blue");
    let mut p = l2sm_pod("blue");
    p["metadata"] = json!({"generateName": "web-", "labels": {"l2sm": "true"},
                           "annotations": {"l2sm/networks": "blue"}});
    let resp = server
        .review(&review_body("uid-2", "CREATE", "apps", &p))
        .await;
    let (_, patched) = apply_patch(&resp, &p);
    assert_eq!(multus_of(&patched), json!([{"name": "l2sm-blue"}]));
    server.stop().await;
}

/// Every bad request is refused with a message naming the network or the field.
#[tokio::test]
async fn bad_requests_are_rejected_with_a_message() {
    let server = Server::start(OnError::Reject).await;
    let cases: [(&str, Value, u16, &[&str]); 14] = [
        (
            "unknown network",
            l2sm_pod("nope"),
            404,
            &["\"nope\"", "does not exist"],
        ),
        (
            "second network unknown",
            l2sm_pod("v-network-1, missing-net"),
            404,
            &["\"missing-net\""],
        ),
        (
            "unknown in JSON",
            l2sm_pod(r#"[{"name":"ghost","ips":["10.0.0.1/24"]}]"#),
            404,
            &["\"ghost\""],
        ),
        (
            "malformed JSON",
            l2sm_pod(r#"[{"name": "v-network-1""#),
            400,
            &["l2sm/networks", "JSON"],
        ),
        (
            "single object",
            l2sm_pod(r#"{"name":"v-network-1"}"#),
            400,
            &["single JSON object"],
        ),
        (
            "element not object",
            l2sm_pod(r#"["v-network-1"]"#),
            400,
            &["element 0"],
        ),
        (
            "missing name",
            l2sm_pod(r#"[{"ips":["10.0.0.1/24"]}]"#),
            400,
            &["element 0", "\"name\""],
        ),
        (
            "ips not a list",
            l2sm_pod(r#"[{"name":"v-network-1","ips":"10.0.0.1/24"}]"#),
            400,
            &["\"ips\""],
        ),
        (
            "ip without prefix",
            l2sm_pod(r#"[{"name":"v-network-1","ips":["10.0.0.1"]}]"#),
            400,
            &["\"v-network-1\"", "ips[0]", "10.0.0.1"],
        ),
        (
            "duplicate ip",
            l2sm_pod(r#"[{"name":"v-network-1","ips":["10.0.0.1/24","10.0.0.1/24"]}]"#),
            400,
            &["\"v-network-1\"", "twice"],
        ),
        (
            "bad network name",
            l2sm_pod("Ping_Net"),
            400,
            &["\"Ping_Net\""],
        ),
        (
            "bad ifname",
            l2sm_pod(r#"[{"name":"v-network-1","ifname":"a/b"}]"#),
            400,
            &["\"v-network-1\"", "ifname"],
        ),
        (
            "bad mac",
            l2sm_pod(r#"[{"name":"v-network-1","mac":"ff:ff:ff:ff:ff:ff"}]"#),
            400,
            &["\"v-network-1\"", "mac"],
        ),
        (
            "unreadable existing Multus annotation",
            pod(
                json!({"l2sm": "true"}),
                json!({"l2sm/networks": "v-network-1", "k8s.v1.cni.cncf.io/networks": "[{"}),
            ),
            400,
            &["k8s.v1.cni.cncf.io/networks"],
        ),
    ];
    for (what, p, code, needles) in cases {
        let resp = server.review(&create(&p)).await;
        assert_eq!(resp["uid"], "uid-1");
        assert_eq!(resp["allowed"], false, "{what}: {resp}");
        assert!(resp.get("patch").is_none(), "{what}");
        assert_eq!(resp["status"]["code"], code, "{what}: {resp}");
        let msg = resp["status"]["message"].as_str().unwrap();
        for n in needles {
            assert!(msg.contains(n), "{what}: {msg:?} lacks {n:?}");
        }
    }
    // The catalog cannot be consulted: refused (503), naming the network.
    server.catalog.fail_with(Some("connection refused"));
    let resp = server.review(&create(&l2sm_pod("v-network-1"))).await;
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 503);
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"v-network-1\"") && msg.contains("connection refused"),
        "{msg}"
    );
    server.stop().await;
}

/// In annotate mode the pod is admitted without networks and `l2sm/error` says why.
#[tokio::test]
async fn annotate_mode_admits_with_l2sm_error() {
    let server = Server::start(OnError::Annotate).await;
    for (p, needle) in [
        (l2sm_pod("v-network-1, nope"), "\"nope\""),
        (
            l2sm_pod(r#"[{"name":"v-network-1","ips":["300.0.0.1/24"]}]"#),
            "ips[0]",
        ),
    ] {
        let resp = server.review(&create(&p)).await;
        let (ops, patched) = apply_patch(&resp, &p);
        assert_eq!(ops.len(), 1);
        let err = patched["metadata"]["annotations"]["l2sm/error"]
            .as_str()
            .unwrap();
        assert!(err.contains(needle), "{err}");
        assert!(patched["metadata"]["annotations"]
            .get("k8s.v1.cni.cncf.io/networks")
            .is_none());
    }
    // Good requests are mutated as usual.
    let p = l2sm_pod("v-network-2");
    let (_, patched) = apply_patch(&server.review(&create(&p)).await, &p);
    assert_eq!(multus_of(&patched), json!([{"name": "l2sm-v-network-2"}]));
    server.stop().await;
}

/// Requests that are not AdmissionReview v1 get HTTP 400; other paths 404; health 200.
#[tokio::test]
async fn protocol_errors() {
    let server = Server::start(OnError::Reject).await;
    for body in [
        "not json".to_owned(),
        json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
               "request": {"uid": "x", "operation": "CREATE"}})
        .to_string(),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "Pod", "request": {"uid": "x"}})
            .to_string(),
    ] {
        let (code, _) = server.post(&body).await;
        assert_eq!(code, 400, "{body}");
    }
    let get = |path: &'static str| request(server.addr, &server.ca_pem, "GET", path, "");
    assert_eq!(get("/healthz").await.unwrap(), (200, b"ok".to_vec()));
    assert_eq!(get("/nope").await.unwrap().0, 404);
    server.stop().await;
}

/// The server only speaks TLS with its certificate; a client trusting another CA fails.
#[tokio::test]
async fn tls_is_required_and_verified() {
    let server = Server::start(OnError::Reject).await;
    let other = webhook::self_signed(&names()).unwrap();
    let err = request(server.addr, &other.ca_pem, "GET", "/healthz", "")
        .await
        .unwrap_err();
    assert!(err.starts_with("TLS"), "{err}");
    // Plain HTTP gets no HTTP answer.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    server.stop().await;
}

/// A renewed certificate (cert-manager rewriting the mounted secret) is served from the
/// next connection on, without a restart.
#[tokio::test]
async fn renewed_certificate_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let first = webhook::write_self_signed(dir.path(), &names()).unwrap();
    let tls =
        webhook::tls_from_files(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hook = Arc::new(Webhook::new(MemoryCatalog::new(), WebhookConfig::default()));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(webhook::serve_https(
        listener,
        tls,
        webhook::router(hook),
        async {
            let _ = stopped.await;
        },
    ));
    assert_eq!(
        request(addr, &first.ca_pem, "GET", "/healthz", "")
            .await
            .unwrap()
            .0,
        200
    );
    // Make sure the new files get a different modification time.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = webhook::write_self_signed(dir.path(), &names()).unwrap();
    assert_eq!(
        request(addr, &second.ca_pem, "GET", "/healthz", "")
            .await
            .unwrap()
            .0,
        200
    );
    assert!(request(addr, &first.ca_pem, "GET", "/healthz", "")
        .await
        .is_err());
    // A broken rewrite keeps the last good pair in service.
    std::fs::write(dir.path().join("tls.key"), "garbage").unwrap();
    assert_eq!(
        request(addr, &second.ca_pem, "GET", "/healthz", "")
            .await
            .unwrap()
            .0,
        200
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// Bootstrap helpers: files laid out as cert-manager's secret, a CA bundle, its patch.
#[test]
fn self_signed_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let names = webhook::service_dns_names("l2sm-webhook-service", "l2sm-system");
    assert!(names.contains(&"l2sm-webhook-service.l2sm-system.svc".to_owned()));
    let pair = webhook::write_self_signed(dir.path(), &names).unwrap();
    for f in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(Path::new(&dir.path().join(f)).exists(), "{f}");
    }
    let bundle = pair.ca_bundle();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&bundle)
        .unwrap();
    assert_eq!(decoded, pair.ca_pem.as_bytes());
    assert_eq!(
        webhook::ca_bundle_patch(2, &bundle),
        json!([
            {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle},
            {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": bundle}
        ])
    );
    assert!(webhook::tls_from_pem(&pair.cert_pem, &pair.key_pem).is_ok());
    assert!(webhook::tls_from_pem(&pair.cert_pem, "nope").is_err());
    assert!(webhook::tls_from_pem("", &pair.key_pem).is_err());
    assert!(
        webhook::tls_from_files(&dir.path().join("missing"), &dir.path().join("tls.key")).is_err()
    );
}

/// The shared self-signed pair is checked before use: valid now for the Service's names, not
/// for other names, and not once it expires (a pair near expiry is replaced at start-up).
#[test]
fn self_signed_pairs_are_checked_for_names_and_expiry() {
    use std::time::{Duration, SystemTime};
    let names = webhook::service_dns_names("l2sm-webhook-service", "l2sm-system");
    let pair = webhook::self_signed(&names).unwrap();
    let now = SystemTime::now();
    assert_eq!(webhook::check_pair(&pair, &names, now), None);
    // Still good a month from now (not near expiry)…
    let renew = now + webhook::SELF_SIGNED_RENEW_BEFORE;
    assert_eq!(webhook::check_pair(&pair, &names, renew), None);
    // …but not after its validity.
    let days = webhook::SELF_SIGNED_VALIDITY_DAYS as u64 + 2;
    let later = now + Duration::from_secs(days * 24 * 3600);
    let why = webhook::check_pair(&pair, &names, later).expect("expired");
    assert!(why.contains("xpired"), "{why}");
    // Another Service's names are not covered.
    let other = webhook::service_dns_names("l2sm-webhook-service", "elsewhere");
    let why = webhook::check_pair(&pair, &other, now).expect("other names");
    assert!(why.contains("elsewhere"), "{why}");
    // A key that is not the certificate's, or a CA that did not sign it, is refused.
    let stranger = webhook::self_signed(&names).unwrap();
    let mixed = webhook::SelfSigned {
        key_pem: stranger.key_pem.clone(),
        ..pair.clone()
    };
    assert!(webhook::check_pair(&mixed, &names, now).is_some());
    let wrong_ca = webhook::SelfSigned {
        ca_pem: stranger.ca_pem,
        ..pair
    };
    assert!(webhook::check_pair(&wrong_ca, &names, now).is_some());
}

/// `--network-scope namespace` (issue #15): a pod of namespace B asking for A's network is
/// refused with a message naming the network and both namespaces; a namespace the network
/// lists, or its own, is allowed; with the default scope (`global`), upstream's behaviour.
#[tokio::test]
async fn network_scope_limits_networks_to_their_namespaces() {
    let body = |ns: &str, networks: &str| {
        let mut p = l2sm_pod(networks);
        p["metadata"]["namespace"] = json!(ns);
        review_body("uid-s", "CREATE", ns, &p)
    };
    let server = Server::start_scoped(OnError::Reject, NetworkScope::Namespace).await;
    server.catalog.insert("team-a", "a-net");
    server
        .catalog
        .insert_allowing("team-a", "shared-net", &["team-b"]);
    server.catalog.insert_allowing("team-a", "open-net", &["*"]);

    let r = server.review(&body("team-b", "a-net")).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], 403, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    for needle in [
        "\"a-net\"",
        "\"team-a\"",
        "\"team-b\"",
        ALLOWED_NAMESPACES_ANNOTATION,
    ] {
        assert!(msg.contains(needle), "{needle} not in {msg}");
    }
    // One refused network among several refuses the pod.
    let r = server.review(&body("team-b", "shared-net,a-net")).await;
    assert_eq!(r["allowed"], false, "{r}");

    // Its own namespace, a listed namespace, `*`: allowed.
    for (ns, net) in [
        ("team-a", "a-net"),
        ("team-b", "shared-net"),
        ("team-c", "open-net"),
    ] {
        let r = server.review(&body(ns, net)).await;
        assert_eq!(r["allowed"], true, "{ns} {net}: {r}");
        let (_, patched) = apply_patch(&r, &l2sm_pod(net));
        assert_eq!(multus_of(&patched).as_array().unwrap().len(), 1);
    }
    // Not listed: refused even though another namespace is.
    let r = server.review(&body("team-c", "shared-net")).await;
    assert_eq!(r["allowed"], false, "{r}");
    // A same-named network of the pod's own namespace is its own: allowed.
    server.catalog.insert("team-b", "a-net");
    let r = server.review(&body("team-b", "a-net")).await;
    assert_eq!(r["allowed"], true, "{r}");
    // Unknown networks are still 404.
    let r = server.review(&body("team-b", "nowhere")).await;
    assert_eq!(r["status"]["code"], 404, "{r}");
    server.stop().await;

    // Scoping off (the default): upstream's behaviour, any namespace may use it by name.
    let server = Server::start(OnError::Reject).await;
    server.catalog.insert("team-a", "a-net");
    let r = server.review(&body("team-b", "a-net")).await;
    assert_eq!(r["allowed"], true, "{r}");
    let (_, patched) = apply_patch(&r, &l2sm_pod("a-net"));
    assert_eq!(multus_of(&patched).as_array().unwrap().len(), 1);
    server.stop().await;

    // Annotate mode: admitted without networks, the refusal in `l2sm/error`.
    let server = Server::start_scoped(OnError::Annotate, NetworkScope::Namespace).await;
    server.catalog.insert("team-a", "a-net");
    let r = server.review(&body("team-b", "a-net")).await;
    let (_, patched) = apply_patch(&r, &l2sm_pod("a-net"));
    let err = patched["metadata"]["annotations"]["l2sm/error"]
        .as_str()
        .unwrap();
    assert!(err.contains("team-a"), "{err}");
    assert!(patched["metadata"]["annotations"]
        .get("k8s.v1.cni.cncf.io/networks")
        .is_none());
    server.stop().await;
}
