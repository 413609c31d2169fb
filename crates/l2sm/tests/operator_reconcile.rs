//! The operator's reconcilers against a scripted Kubernetes API (kube-rs `tower-test` mock:
//! every request the reconciler makes is checked and answered by the test, in order) and our
//! real controller (`l2sm controller` on 127.0.0.1 with a temporary state directory). Per
//! reconciler: create, update, delete, a conflict (409) and a server error (500) from the API
//! server, and an unreachable controller (retries with backoff, condition set, requeue).

use http::{Request, Response};
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::runtime::controller::Action;
use l2sm_operator::controller_client::{ControllerClient, NetworkRequest, RetryPolicy};
use l2sm_operator::crd::{L2Network, NetworkEdgeDevice, Overlay, QuarantinePodRequest};
use l2sm_operator::leader::{LeaderElector, Timings};
use l2sm_operator::reconcile::{self, Context, Error, Settings};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_l2sm");

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Our controller, killed (by pid) when dropped.
struct RealController {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for RealController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RealController {
    fn start() -> RealController {
        let dir = tempfile::tempdir().unwrap();
        let api = free_port();
        let child = Command::new(BIN)
            .args(["controller", "--api-listen", &format!("127.0.0.1:{api}")])
            .args(["--openflow-listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--state-dir")
            .arg(dir.path())
            .env("L2SM_API_USER", "op")
            .env("L2SM_API_PASSWORD", "secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start l2sm controller");
        let c = RealController {
            child,
            url: format!("http://127.0.0.1:{api}"),
            _dir: dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", api)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "controller did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    /// A raw POST (for what the operator itself never does, e.g. allocate an address).
    fn post(&self, path: &str, body: &str) {
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic b3A6c2VjcmV0\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }

    fn client(&self) -> ControllerClient {
        ControllerClient::new(
            &self.url,
            Some(("op".into(), "secret".into())),
            RetryPolicy::default(),
        )
        .unwrap()
    }
}

/// A controller client for an address nobody listens on, retrying 3 times quickly.
fn unreachable_client() -> ControllerClient {
    ControllerClient::new(
        &format!("http://127.0.0.1:{}", free_port()),
        Some(("op".into(), "secret".into())),
        RetryPolicy {
            attempts: 3,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            timeout: Duration::from_secs(2),
        },
    )
    .unwrap()
}

fn context(controller: ControllerClient) -> (Arc<Context>, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    (Context::new(client, controller, Settings::default()), handle)
}

/// Takes the next request, checks method and path (and that the query contains `query`),
/// returns its JSON body and the responder.
async fn expect(
    handle: &mut Handle,
    method: &str,
    path: &str,
    query: &str,
) -> (Value, tower_test::mock::SendResponse<Response<Body>>) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
        .expect("client gone");
    assert_eq!(req.method().as_str(), method, "{}", req.uri());
    assert_eq!(req.uri().path(), path);
    let q = req.uri().query().unwrap_or_default().to_string();
    let q = q.replace("%3D", "=").replace("%2F", "/");
    assert!(q.contains(query), "query {q:?} lacks {query:?}");
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, send)
}

fn reply(send: tower_test::mock::SendResponse<Response<Body>>, code: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("scripted {reason}"), "reason": reason, "code": code})
}

/// Answers the next request as given; returns the request body.
async fn answer(handle: &mut Handle, method: &str, path: &str, query: &str, code: u16, body: Value) -> Value {
    let (req, send) = expect(handle, method, path, query).await;
    reply(send, code, &body);
    req
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

const FIN: &str = "l2sm.operator.io/finalizer";
const L2N: &str = "/apis/l2sm.l2sm.k8s.local/v1/namespaces/default/l2networks";

fn l2network(name: &str, cidr: Option<&str>, finalizer: bool, deleting: bool) -> Value {
    let mut v = json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
        "metadata": {"name": name, "namespace": "default", "uid": "u-1", "generation": 2, "resourceVersion": "5"},
        "spec": {"type": "vnet"}
    });
    if let Some(c) = cidr {
        v["spec"]["networkCIDR"] = json!(c);
    }
    if finalizer {
        v["metadata"]["finalizers"] = json!([FIN]);
    }
    if deleting {
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    v
}

fn obj<K: serde::de::DeserializeOwned>(v: &Value) -> Arc<K> {
    Arc::new(serde_json::from_value(v.clone()).unwrap())
}

fn pod_json(name: &str, ns: &str, node: &str, annotations: Value, finalizer: bool) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "labels": {"l2sm": "true"},
                     "annotations": annotations, "resourceVersion": "7"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    });
    if finalizer {
        p["metadata"]["finalizers"] = json!([FIN]);
    }
    p
}

fn port_on(node: &str, n: u32) -> String {
    format!(
        "of:{:016x}/{n}",
        l2sm_operator::reconcile::pod::node_dpid(node)
    )
}

// ------------------------------------------------------------------ L2Network

#[tokio::test]
async fn l2network_create_update_delete_against_the_real_controller() {
    let ctrl = RealController::start();
    let (ctx, mut h) = context(ctrl.client());

    // 1. New resource: the finalizer is added first (and nothing else happens yet).
    let net = l2network("blue", Some("10.10.0.0/24"), false, false);
    let task = tokio::spawn(reconcile::l2network::reconcile(obj::<L2Network>(&net), ctx.clone()));
    let patch = answer(&mut h, "PATCH", &format!("{L2N}/blue"), "", 200, net.clone()).await;
    assert!(patch.to_string().contains(FIN), "{patch}");
    assert!(matches!(task.await.unwrap(), Ok(a) if a == Action::await_change()));

    // 2. With the finalizer: the network is created in the controller, NADs in the network's
    //    namespace and in every namespace whose pods ask for it, then the status.
    let net = l2network("blue", Some("10.10.0.0/24"), true, false);
    let task = tokio::spawn(reconcile::l2network::reconcile(obj::<L2Network>(&net), ctx.clone()));
    let pod = pod_json(
        "a",
        "team-a",
        "w1",
        json!({"l2sm/networks": "[{\"name\": \"blue\"}]"}),
        true,
    );
    let other = pod_json("b", "team-b", "w1", json!({"l2sm/networks": "red"}), true);
    answer(&mut h, "GET", "/api/v1/pods", "labelSelector=l2sm=true", 200, list("PodList", vec![pod, other])).await;
    for ns in ["default", "team-a"] {
        let path = format!("/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/l2sm-blue");
        let (nad, send) = expect(&mut h, "PATCH", &path, "fieldManager=l2sm-operator").await;
        let config: Value = serde_json::from_str(nad["spec"]["config"].as_str().unwrap()).unwrap();
        assert_eq!(config["type"], "l2sm");
        assert_eq!(config["network"], "blue");
        assert_eq!(nad["metadata"]["labels"]["l2sm.l2sm.k8s.local/network"], "default.blue");
        reply(send, 200, &nad);
    }
    let st = answer(&mut h, "PATCH", &format!("{L2N}/blue/status"), "", 200, net.clone()).await;
    let st = &st["status"];
    assert_eq!(st["internalConnectivity"], "Available");
    let ready = condition(st, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("True"), Some("NetworkReady")));
    assert_eq!(ready["observedGeneration"], 2);
    let action = task.await.unwrap().unwrap();
    assert_eq!(action, Action::requeue(Settings::default().resync));
    let view = ctrl.client().get_network("blue").await.unwrap().expect("network in the controller");
    assert_eq!(view.ipam.unwrap().cidrs, ["10.10.0.0/24"]);

    // 3. Update: a different CIDR is refused with a condition; the controller keeps its plan.
    let mut changed = l2network("blue", Some("10.99.0.0/24"), true, false);
    changed["metadata"]["generation"] = json!(3);
    let task = tokio::spawn(reconcile::l2network::reconcile(obj::<L2Network>(&changed), ctx.clone()));
    answer(&mut h, "GET", "/api/v1/pods", "", 200, list("PodList", vec![])).await;
    answer(&mut h, "PATCH", "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/l2sm-blue", "", 200, json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition", "metadata": {"name": "l2sm-blue"}})).await;
    let st = answer(&mut h, "PATCH", &format!("{L2N}/blue/status"), "", 200, changed.clone()).await;
    let ready = condition(&st["status"], "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("CIDRChangeRefused")));
    assert_eq!(ready["observedGeneration"], 3);
    task.await.unwrap().unwrap();
    let view = ctrl.client().get_network("blue").await.unwrap().unwrap();
    assert_eq!(view.ipam.unwrap().cidrs, ["10.10.0.0/24"]);

    // 4. Delete: the network goes from the controller, its NADs from every namespace (one
    //    already gone: 404 is fine), then the finalizer.
    let gone = l2network("blue", Some("10.10.0.0/24"), true, true);
    let task = tokio::spawn(reconcile::l2network::reconcile(obj::<L2Network>(&gone), ctx.clone()));
    let nad = |ns: &str| json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition", "metadata": {"name": "l2sm-blue", "namespace": ns}});
    answer(
        &mut h,
        "GET",
        "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
        "labelSelector=l2sm.l2sm.k8s.local/network=default.blue",
        200,
        list("NetworkAttachmentDefinitionList", vec![nad("default"), nad("team-a")]),
    )
    .await;
    answer(&mut h, "DELETE", "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/l2sm-blue", "", 200, status(200, "Success")).await;
    answer(&mut h, "DELETE", "/apis/k8s.cni.cncf.io/v1/namespaces/team-a/network-attachment-definitions/l2sm-blue", "", 404, status(404, "NotFound")).await;
    let fin = answer(&mut h, "PATCH", &format!("{L2N}/blue"), "", 200, gone.clone()).await;
    assert!(fin.to_string().contains("remove"), "{fin}");
    task.await.unwrap().unwrap();
    assert!(ctrl.client().get_network("blue").await.unwrap().is_none());

    // 5. Deleting again (the controller lost it, e.g. restored from an old backup): 404 is success.
    let task = tokio::spawn(reconcile::l2network::reconcile(obj::<L2Network>(&gone), ctx.clone()));
    answer(&mut h, "GET", "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions", "", 200, list("NetworkAttachmentDefinitionList", vec![])).await;
    answer(&mut h, "PATCH", &format!("{L2N}/blue"), "", 200, gone.clone()).await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn l2network_conflict_and_server_error_are_retried_with_backoff() {
    let ctrl = RealController::start();
    let (ctx, mut h) = context(ctrl.client());
    let net = l2network("green", None, true, false);
    let o = obj::<L2Network>(&net);

    // 500 from the API server while listing pods.
    let task = tokio::spawn(reconcile::l2network::reconcile(o.clone(), ctx.clone()));
    answer(&mut h, "GET", "/api/v1/pods", "", 500, status(500, "InternalError")).await;
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(&err, Error::Finalizer(_)), "{err}");
    assert!(err.to_string().contains("scripted InternalError") || format!("{err:?}").contains("InternalError"), "{err:?}");
    assert_eq!(reconcile::error_policy(o.clone(), &err, ctx.clone()), Action::requeue(Duration::from_secs(1)));

    // 409 on the status write (someone else wrote first): retried, with a longer wait.
    let task = tokio::spawn(reconcile::l2network::reconcile(o.clone(), ctx.clone()));
    answer(&mut h, "GET", "/api/v1/pods", "", 200, list("PodList", vec![])).await;
    answer(&mut h, "PATCH", "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/l2sm-green", "", 200, json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition", "metadata": {"name": "l2sm-green"}})).await;
    answer(&mut h, "PATCH", &format!("{L2N}/green/status"), "", 409, status(409, "Conflict")).await;
    let err = task.await.unwrap().unwrap_err();
    assert!(format!("{err:?}").contains("409"), "{err:?}");
    assert_eq!(reconcile::error_policy(o.clone(), &err, ctx.clone()), Action::requeue(Duration::from_secs(2)));

    // The next pass succeeds and resets the backoff. The network was created once (the
    // second create was a no-op).
    let task = tokio::spawn(reconcile::l2network::reconcile(o.clone(), ctx.clone()));
    answer(&mut h, "GET", "/api/v1/pods", "", 200, list("PodList", vec![])).await;
    answer(&mut h, "PATCH", "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/l2sm-green", "", 200, json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition", "metadata": {"name": "l2sm-green"}})).await;
    answer(&mut h, "PATCH", &format!("{L2N}/green/status"), "", 200, net.clone()).await;
    task.await.unwrap().unwrap();
    assert_eq!(ctx.next_backoff("L2Network/default/green"), Duration::from_secs(1));
    assert_eq!(ctrl.client().list_networks().await.unwrap().len(), 1);
}

#[tokio::test]
async fn l2network_with_controller_unreachable_sets_condition_and_requeues() {
    let (ctx, mut h) = context(unreachable_client());
    let net = l2network("blue", None, true, false);
    let o = obj::<L2Network>(&net);
    let started = Instant::now();
    let task = tokio::spawn(reconcile::l2network::reconcile(o.clone(), ctx.clone()));
    let st = answer(&mut h, "PATCH", &format!("{L2N}/blue/status"), "", 200, net.clone()).await;
    let st = &st["status"];
    assert_eq!(st["internalConnectivity"], "Unavailable");
    let ready = condition(st, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("ControllerUnreachable")));
    assert!(ready["message"].as_str().unwrap().contains("3 attempt(s)"), "{ready}");
    let err = task.await.unwrap().unwrap_err();
    // Backoff between the 3 attempts: 10 ms + 20 ms at least.
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(reconcile::error_policy(o.clone(), &err, ctx.clone()), Action::requeue(Duration::from_secs(1)));
    assert_eq!(reconcile::error_policy(o.clone(), &err, ctx.clone()), Action::requeue(Duration::from_secs(2)));
    assert_eq!(reconcile::error_policy(o.clone(), &err, ctx.clone()), Action::requeue(Duration::from_secs(4)));
}

// ------------------------------------------------------------------ Pod

#[tokio::test]
async fn pod_status_cleanup_and_errors() {
    let ctrl = RealController::start();
    let c = ctrl.client();
    c.create_network(&NetworkRequest { name: "blue".into(), cidrs: vec!["10.20.0.0/24".into()], ..Default::default() })
        .await
        .unwrap();
    let port = port_on("w1", 3);
    c.add_port("blue", &port).await.unwrap();
    let (ctx, mut h) = context(c.clone());
    let net_status = json!([{"name": "team-a/l2sm-blue", "interface": "net1", "ips": ["10.20.0.5"], "mac": "02:00:00:00:00:05"}]).to_string();
    let annotations = json!({"l2sm/networks": "blue", "k8s.v1.cni.cncf.io/network-status": net_status});

    // A pod asking for nothing is ignored, without any API call.
    let plain = pod_json("x", "team-a", "w1", json!({}), false);
    assert_eq!(reconcile::pod::reconcile(obj::<Pod>(&plain), ctx.clone()).await.unwrap(), Action::await_change());

    // Create: finalizer, then the status annotation with interface, address and port.
    let p = pod_json("a", "team-a", "w1", annotations.clone(), false);
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&p), ctx.clone()));
    answer(&mut h, "PATCH", "/api/v1/namespaces/team-a/pods/a", "", 200, p.clone()).await;
    task.await.unwrap().unwrap();
    let p = pod_json("a", "team-a", "w1", annotations.clone(), true);
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&p), ctx.clone()));
    answer(&mut h, "GET", "/api/v1/pods", "fieldSelector=spec.nodeName=w1", 200, list("PodList", vec![p.clone()])).await;
    let patch = answer(&mut h, "PATCH", "/api/v1/namespaces/team-a/pods/a", "", 200, p.clone()).await;
    let written: Value = serde_json::from_str(patch["metadata"]["annotations"]["l2sm/status"].as_str().unwrap()).unwrap();
    assert_eq!(written, json!([{"network": "blue", "interface": "net1", "ips": ["10.20.0.5"], "mac": "02:00:00:00:00:05", "port": port}]));
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(Settings::default().resync));

    // Update with nothing new: no write.
    let mut annotated = annotations.clone();
    annotated["l2sm/status"] = json!(written.to_string());
    let p = pod_json("a", "team-a", "w1", annotated.clone(), true);
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&p), ctx.clone()));
    answer(&mut h, "GET", "/api/v1/pods", "", 200, list("PodList", vec![p.clone()])).await;
    task.await.unwrap().unwrap();

    // A 409 on the annotation write (the pod changed meanwhile) is an error, retried.
    let p2 = pod_json("a", "team-a", "w1", annotations.clone(), true);
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&p2), ctx.clone()));
    answer(&mut h, "GET", "/api/v1/pods", "", 200, list("PodList", vec![])).await;
    answer(&mut h, "PATCH", "/api/v1/namespaces/team-a/pods/a", "", 409, status(409, "Conflict")).await;
    assert!(format!("{:?}", task.await.unwrap().unwrap_err()).contains("409"));
    // A 500 listing the node's pods, too.
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&p2), ctx.clone()));
    answer(&mut h, "GET", "/api/v1/pods", "", 500, status(500, "InternalError")).await;
    assert!(format!("{:?}", task.await.unwrap().unwrap_err()).contains("500"));

    // Delete while the containers still run: wait (no controller change, no API call).
    let mut deleting = pod_json("a", "team-a", "w1", annotated.clone(), true);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let mut running = deleting.clone();
    running["status"] = json!({"containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]});
    let err = reconcile::pod::reconcile(obj::<Pod>(&running), ctx.clone()).await.unwrap_err();
    assert!(err.to_string().contains("running"), "{err}");
    assert!(c.get_network("blue").await.unwrap().unwrap().endpoints.contains(&port));

    // Delete once stopped: port out of the network, address released, finalizer removed.
    ctrl.post("/api/v1/networks/blue/allocations", r#"{"owner":"cni/c1/net1","ips":["10.20.0.5/24"]}"#);
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&deleting), ctx.clone()));
    let fin = answer(&mut h, "PATCH", "/api/v1/namespaces/team-a/pods/a", "", 200, deleting.clone()).await;
    assert!(fin.to_string().contains("remove"), "{fin}");
    task.await.unwrap().unwrap();
    let blue = c.get_network("blue").await.unwrap().unwrap();
    assert!(blue.endpoints.is_empty(), "{blue:?}");
    assert!(blue.ipam.unwrap().allocations.is_empty());

    // Controller unreachable: the pod keeps its finalizer and the reconcile is retried.
    let (ctx2, _h2) = context(unreachable_client());
    let err = reconcile::pod::reconcile(obj::<Pod>(&deleting), ctx2.clone()).await.unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    let o = obj::<Pod>(&deleting);
    assert_eq!(reconcile::error_policy(o.clone(), &err, ctx2.clone()), Action::requeue(Duration::from_secs(1)));
    assert_eq!(reconcile::error_policy(o, &err, ctx2), Action::requeue(Duration::from_secs(2)));
}
