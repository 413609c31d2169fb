//! The operator's reconcilers against a scripted Kubernetes API (kube-rs `tower-test` mock:
//! every request the reconciler makes is checked and answered by the test, in order) and our
//! real controller (`l2sm controller` on 127.0.0.1 with a temporary state directory). Per
//! reconciler: create, update, delete, a conflict (409) and a server error (500) from the API
//! server, and an unreachable controller (retries with backoff, condition set, requeue).

use http::{Request, Response};
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::runtime::controller::Action;
use l2sm_api::v1::{AllocationRequest, CreateNetwork, PortOwnerRequest};
use l2sm_api::{ControllerClient, RetryPolicy};
use l2sm_operator::crd::{L2Network, NetworkEdgeDevice, Overlay, QuarantinePodRequest};
use l2sm_operator::leader::{LeaderElector, Timings};
use l2sm_operator::reconcile::{self, Context, Error, Settings};
use l2sm_test_support::controller::ControllerProcess;
use l2sm_test_support::free_port;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A client of `ctrl`, with its credentials.
fn client(ctrl: &ControllerProcess) -> ControllerClient {
    ControllerClient::new(
        &ctrl.url(),
        Some((ctrl.user.clone(), ctrl.password.clone())),
        RetryPolicy::default(),
    )
    .unwrap()
}

/// Our controller (killed when dropped) holding these networks (name, CIDRs), and a client.
async fn controller_with(networks: &[(&str, &[&str])]) -> (ControllerProcess, ControllerClient) {
    let ctrl = ControllerProcess::start();
    let c = client(&ctrl);
    for (name, cidrs) in networks {
        c.create_network(&CreateNetwork {
            name: name.to_string(),
            cidrs: cidrs.iter().map(|s| s.parse().unwrap()).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    (ctrl, c)
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
    (
        Context::new(client, controller, Settings::default()),
        handle,
    )
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

/// Answers a quarantine pass's first two reads: the source selector finds network `blue`
/// (list with `query`), and the target `jail` exists.
async fn source_blue_target_jail(h: &mut Handle, query: &str) {
    answer(
        h,
        "GET",
        L2N,
        query,
        200,
        list("L2NetworkList", vec![l2network("blue", None, true, false)]),
    )
    .await;
    answer(
        h,
        "GET",
        &format!("{L2N}/jail"),
        "",
        200,
        l2network("jail", None, true, false),
    )
    .await;
}

/// The result of a spawned reconcile; one still waiting after 10 s made a request the test
/// did not script.
async fn done<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("reconcile finished (or it made an unscripted API request)")
        .expect("reconcile task")
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
async fn answer(
    handle: &mut Handle,
    method: &str,
    path: &str,
    query: &str,
    code: u16,
    body: Value,
) -> Value {
    let (req, send) = expect(handle, method, path, query).await;
    reply(send, code, &body);
    req
}

/// Answers the next request (`method` on `path`) with an API server error `code`.
async fn refuse(handle: &mut Handle, method: &str, path: &str, code: u16) {
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        _ => "InternalError",
    };
    answer(handle, method, path, "", code, status(code, reason)).await;
}

/// Answers the status write of the object at `path` (a server-side apply by the operator's
/// field manager, forced) with `obj` holding the status written; returns that status.
async fn status_written(handle: &mut Handle, path: &str, obj: &Value) -> Value {
    let (body, send) = expect(
        handle,
        "PATCH",
        &format!("{path}/status"),
        "fieldManager=l2sm-operator",
    )
    .await;
    assert_eq!(body["kind"], obj["kind"], "{body}");
    assert_eq!(body["apiVersion"], obj["apiVersion"], "{body}");
    let mut stored = obj.clone();
    stored["status"] = body["status"].clone();
    reply(send, 200, &stored);
    body["status"].clone()
}

/// The `l2sm/status` annotation a pod patch writes.
fn attachments_written(patch: &Value) -> Value {
    serde_json::from_str(
        patch["metadata"]["annotations"]["l2sm/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

/// Asserts the waits `error_policy` gives for `err`, one call per entry: the backoff of
/// consecutive failures.
fn assert_backoff<K>(obj: &Arc<K>, err: &Error, ctx: &Arc<Context>, secs: &[u64])
where
    K: kube::Resource<DynamicType = ()>,
{
    for s in secs {
        assert_eq!(
            reconcile::error_policy(obj.clone(), err, ctx.clone()),
            Action::requeue(Duration::from_secs(*s))
        );
    }
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

/// The NAD of network `name` in `default`, as the API server answers an apply of it.
fn default_nad(name: &str) -> Value {
    json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition", "metadata": {"name": format!("l2sm-{name}")}})
}

/// Answers an L2Network pass's reads and applies when no pod asks for network `name`: the
/// pod list (empty), then the NAD in the network's own namespace.
async fn no_pods_own_nad(h: &mut Handle, name: &str) {
    answer(h, "GET", "/api/v1/pods", "", 200, list("PodList", vec![])).await;
    answer(
        h,
        "PATCH",
        &format!("/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/l2sm-{name}"),
        "",
        200,
        default_nad(name),
    )
    .await;
}

#[tokio::test]
async fn l2network_create_update_delete_against_the_real_controller() {
    let (_ctrl, c) = controller_with(&[]).await;
    let (ctx, mut h) = context(c.clone());

    // 1. New resource: the finalizer is added first (and nothing else happens yet).
    let net = l2network("blue", Some("10.10.0.0/24"), false, false);
    let task = tokio::spawn(reconcile::l2network::reconcile(
        obj::<L2Network>(&net),
        ctx.clone(),
    ));
    let patch = answer(
        &mut h,
        "PATCH",
        &format!("{L2N}/blue"),
        "",
        200,
        net.clone(),
    )
    .await;
    assert!(patch.to_string().contains(FIN), "{patch}");
    assert!(matches!(done(task).await, Ok(a) if a == Action::await_change()));

    // 2. With the finalizer: the network is created in the controller, NADs in the network's
    //    namespace and in every namespace whose pods ask for it, then the status.
    let net = l2network("blue", Some("10.10.0.0/24"), true, false);
    let task = tokio::spawn(reconcile::l2network::reconcile(
        obj::<L2Network>(&net),
        ctx.clone(),
    ));
    let pod = pod_json(
        "a",
        "team-a",
        "w1",
        json!({"l2sm/networks": "[{\"name\": \"blue\"}]"}),
        true,
    );
    let other = pod_json("b", "team-b", "w1", json!({"l2sm/networks": "red"}), true);
    answer(
        &mut h,
        "GET",
        "/api/v1/pods",
        "labelSelector=l2sm=true",
        200,
        list("PodList", vec![pod, other]),
    )
    .await;
    for ns in ["default", "team-a"] {
        let path = format!(
            "/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/l2sm-blue"
        );
        let (nad, send) =
            expect(&mut h, "PATCH", &path, "fieldManager=l2sm-operator-default").await;
        let config: Value = serde_json::from_str(nad["spec"]["config"].as_str().unwrap()).unwrap();
        assert_eq!(config["type"], "l2sm");
        assert_eq!(config["network"], "blue");
        // Owned by the L2Network of namespace `default` (one label per owning namespace).
        assert_eq!(
            nad["metadata"]["labels"]["owner.l2sm.l2sm.k8s.local/default"],
            "blue"
        );
        assert!(nad["metadata"]["labels"]
            .get("l2sm.l2sm.k8s.local/network")
            .is_none());
        reply(send, 200, &nad);
    }
    let st = status_written(&mut h, &format!("{L2N}/blue"), &net).await;
    assert_eq!(st["internalConnectivity"], "Available");
    let ready = condition(&st, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("NetworkReady"))
    );
    assert_eq!(ready["observedGeneration"], 2);
    let action = done(task).await.unwrap();
    assert_eq!(action, Action::requeue(Settings::default().resync));
    let cidrs = |view: l2sm_api::v1::NetworkView| -> Vec<String> {
        view.ipam
            .unwrap()
            .cidrs
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let view = c
        .get_network("blue")
        .await
        .unwrap()
        .expect("network in the controller");
    assert_eq!(cidrs(view), ["10.10.0.0/24"]);

    // 3. Update: a different CIDR is refused with a condition; the controller keeps its plan.
    let mut changed = l2network("blue", Some("10.99.0.0/24"), true, false);
    changed["metadata"]["generation"] = json!(3);
    let task = tokio::spawn(reconcile::l2network::reconcile(
        obj::<L2Network>(&changed),
        ctx.clone(),
    ));
    no_pods_own_nad(&mut h, "blue").await;
    let st = status_written(&mut h, &format!("{L2N}/blue"), &changed).await;
    let ready = condition(&st, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("CIDRChangeRefused"))
    );
    assert_eq!(ready["observedGeneration"], 3);
    done(task).await.unwrap();
    let view = c.get_network("blue").await.unwrap().unwrap();
    assert_eq!(cidrs(view), ["10.10.0.0/24"]);

    // 4. Delete: no other L2Network is named blue, so the network goes from the controller,
    //    its NADs from every namespace (one already gone: 404 is fine; one labelled by an
    //    earlier version is found too), then the finalizer.
    let gone = l2network("blue", Some("10.10.0.0/24"), true, true);
    let task = tokio::spawn(reconcile::l2network::reconcile(
        obj::<L2Network>(&gone),
        ctx.clone(),
    ));
    let nad = |ns: &str, label: &str, value: &str| {
        json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "l2sm-blue", "namespace": ns, "resourceVersion": "21", "labels": {label: value}}})
    };
    answer(
        &mut h,
        "GET",
        "/apis/l2sm.l2sm.k8s.local/v1/l2networks",
        "fieldSelector=metadata.name=blue",
        200,
        list("L2NetworkList", vec![gone.clone()]),
    )
    .await;
    answer(
        &mut h,
        "GET",
        "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
        "labelSelector=owner.l2sm.l2sm.k8s.local/default=blue",
        200,
        list(
            "NetworkAttachmentDefinitionList",
            vec![nad("default", "owner.l2sm.l2sm.k8s.local/default", "blue")],
        ),
    )
    .await;
    answer(
        &mut h,
        "GET",
        "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
        "labelSelector=l2sm.l2sm.k8s.local/network=default.blue",
        200,
        list(
            "NetworkAttachmentDefinitionList",
            vec![nad("team-a", "l2sm.l2sm.k8s.local/network", "default.blue")],
        ),
    )
    .await;
    let del = answer(
        &mut h,
        "DELETE",
        "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/l2sm-blue",
        "",
        200,
        status(200, "Success"),
    )
    .await;
    // Deleted only as listed (another owner may have joined since).
    assert_eq!(del["preconditions"]["resourceVersion"], "21", "{del}");
    refuse(
        &mut h,
        "DELETE",
        "/apis/k8s.cni.cncf.io/v1/namespaces/team-a/network-attachment-definitions/l2sm-blue",
        404,
    )
    .await;
    let fin = answer(
        &mut h,
        "PATCH",
        &format!("{L2N}/blue"),
        "",
        200,
        gone.clone(),
    )
    .await;
    assert!(fin.to_string().contains("remove"), "{fin}");
    done(task).await.unwrap();
    assert!(c.get_network("blue").await.unwrap().is_none());

    // 5. Deleting again (the controller lost it, e.g. restored from an old backup): 404 is success.
    let task = tokio::spawn(reconcile::l2network::reconcile(
        obj::<L2Network>(&gone),
        ctx.clone(),
    ));
    for query in ["fieldSelector=metadata.name=blue", "", ""] {
        let path = if query.is_empty() {
            "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions"
        } else {
            "/apis/l2sm.l2sm.k8s.local/v1/l2networks"
        };
        answer(&mut h, "GET", path, query, 200, list("List", vec![])).await;
    }
    answer(
        &mut h,
        "PATCH",
        &format!("{L2N}/blue"),
        "",
        200,
        gone.clone(),
    )
    .await;
    done(task).await.unwrap();
}

#[tokio::test]
async fn l2network_conflict_and_server_error_are_retried_with_backoff() {
    let (_ctrl, c) = controller_with(&[]).await;
    let (ctx, mut h) = context(c.clone());
    let net = l2network("green", None, true, false);
    let o = obj::<L2Network>(&net);

    // 500 from the API server while listing pods.
    let task = tokio::spawn(reconcile::l2network::reconcile(o.clone(), ctx.clone()));
    refuse(&mut h, "GET", "/api/v1/pods", 500).await;
    let err = done(task).await.unwrap_err();
    assert!(matches!(&err, Error::Finalizer(_)), "{err}");
    assert!(
        err.to_string().contains("scripted InternalError")
            || format!("{err:?}").contains("InternalError"),
        "{err:?}"
    );
    assert_backoff(&o, &err, &ctx, &[1]);

    // 409 on the status write (someone else wrote first): retried, with a longer wait.
    let task = tokio::spawn(reconcile::l2network::reconcile(o.clone(), ctx.clone()));
    no_pods_own_nad(&mut h, "green").await;
    refuse(&mut h, "PATCH", &format!("{L2N}/green/status"), 409).await;
    let err = done(task).await.unwrap_err();
    assert!(format!("{err:?}").contains("409"), "{err:?}");
    assert_backoff(&o, &err, &ctx, &[2]);

    // The next pass succeeds and resets the backoff. The network was created once (the
    // second create was a no-op).
    let task = tokio::spawn(reconcile::l2network::reconcile(o.clone(), ctx.clone()));
    no_pods_own_nad(&mut h, "green").await;
    status_written(&mut h, &format!("{L2N}/green"), &net).await;
    done(task).await.unwrap();
    assert_eq!(
        ctx.next_backoff("L2Network/default/green"),
        Duration::from_secs(1)
    );
    assert_eq!(c.networks().await.unwrap().len(), 1);
}

#[tokio::test]
async fn l2network_with_controller_unreachable_sets_condition_and_requeues() {
    let (ctx, mut h) = context(unreachable_client());
    let net = l2network("blue", None, true, false);
    let o = obj::<L2Network>(&net);
    let started = Instant::now();
    let task = tokio::spawn(reconcile::l2network::reconcile(o.clone(), ctx.clone()));
    let st = status_written(&mut h, &format!("{L2N}/blue"), &net).await;
    assert_eq!(st["internalConnectivity"], "Unavailable");
    let ready = condition(&st, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("ControllerUnreachable"))
    );
    assert!(
        ready["message"].as_str().unwrap().contains("3 attempt(s)"),
        "{ready}"
    );
    let err = done(task).await.unwrap_err();
    // Backoff between the 3 attempts: 10 ms + 20 ms at least.
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_backoff(&o, &err, &ctx, &[1, 2, 4]);
}

// ------------------------------------------------------------------ Pod

const CLEANUP_LABEL: &str = "l2sm.l2sm.k8s.local/cleanup";

/// A pod as the operator leaves it once it holds something to clean up: finalizer and
/// cleanup label.
fn finalized_pod(name: &str, ns: &str, node: &str, annotations: Value) -> Value {
    let mut p = pod_json(name, ns, node, annotations, true);
    p["metadata"]["labels"][CLEANUP_LABEL] = json!("true");
    p["metadata"]["labels"]["l2sm.l2sm.k8s.local/pod-name"] = json!(name);
    p
}

#[tokio::test]
async fn pod_status_cleanup_and_errors() {
    let (_ctrl, c) = controller_with(&[("blue", &["10.20.0.0/24"])]).await;
    let port = port_on("w1", 3);
    c.add_port("blue", &port).await.unwrap();
    let (ctx, mut h) = context(c.clone());
    let net_status = json!([{"name": "team-a/l2sm-blue", "interface": "net1", "ips": ["10.20.0.5"], "mac": "02:00:00:00:00:05"}]).to_string();
    let annotations =
        json!({"l2sm/networks": "blue", "k8s.v1.cni.cncf.io/network-status": net_status});

    // A pod asking for nothing is ignored, without any API call.
    let plain = pod_json("x", "team-a", "w1", json!({}), false);
    assert_eq!(
        reconcile::pod::reconcile(obj::<Pod>(&plain), ctx.clone())
            .await
            .unwrap(),
        Action::await_change()
    );

    // Create: one write, guarded by the resourceVersion read, with the status annotation
    // (interface, address, port) and, as the pod now holds a port and an address, the
    // finalizer and the cleanup label.
    let p = pod_json("a", "team-a", "w1", annotations.clone(), false);
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&p), ctx.clone()));
    answer(
        &mut h,
        "GET",
        "/api/v1/pods",
        "fieldSelector=spec.nodeName=w1",
        200,
        list("PodList", vec![p.clone()]),
    )
    .await;
    let patch = answer(
        &mut h,
        "PATCH",
        "/api/v1/namespaces/team-a/pods/a",
        "",
        200,
        p.clone(),
    )
    .await;
    let written = attachments_written(&patch);
    assert_eq!(
        written,
        json!([{"network": "blue", "interface": "net1", "ips": ["10.20.0.5"], "mac": "02:00:00:00:00:05", "port": port}])
    );
    assert_eq!(patch["metadata"]["resourceVersion"], "7", "{patch}");
    assert_eq!(patch["metadata"]["finalizers"], json!([FIN]), "{patch}");
    assert_eq!(
        patch["metadata"]["labels"][CLEANUP_LABEL], "true",
        "{patch}"
    );
    assert_eq!(
        done(task).await.unwrap(),
        Action::requeue(Settings::default().resync)
    );

    // Update with nothing new: no write.
    let mut annotated = annotations.clone();
    annotated["l2sm/status"] = json!(written.to_string());
    let p = finalized_pod("a", "team-a", "w1", annotated.clone());
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&p), ctx.clone()));
    answer(
        &mut h,
        "GET",
        "/api/v1/pods",
        "",
        200,
        list("PodList", vec![p.clone()]),
    )
    .await;
    done(task).await.unwrap();

    // A 409 on the annotation write (the pod changed meanwhile): the pod is read again and
    // the write made against its new resourceVersion.
    let p2 = finalized_pod("a", "team-a", "w1", annotations.clone());
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&p2), ctx.clone()));
    answer(
        &mut h,
        "GET",
        "/api/v1/pods",
        "",
        200,
        list("PodList", vec![]),
    )
    .await;
    refuse(&mut h, "PATCH", "/api/v1/namespaces/team-a/pods/a", 409).await;
    let mut fresh = p2.clone();
    fresh["metadata"]["resourceVersion"] = json!("8");
    answer(
        &mut h,
        "GET",
        "/api/v1/namespaces/team-a/pods/a",
        "",
        200,
        fresh.clone(),
    )
    .await;
    let patch = answer(
        &mut h,
        "PATCH",
        "/api/v1/namespaces/team-a/pods/a",
        "",
        200,
        fresh.clone(),
    )
    .await;
    assert_eq!(patch["metadata"]["resourceVersion"], "8", "{patch}");
    done(task).await.unwrap();
    // Conflicts on every attempt: an error, retried with backoff.
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&p2), ctx.clone()));
    answer(
        &mut h,
        "GET",
        "/api/v1/pods",
        "",
        200,
        list("PodList", vec![]),
    )
    .await;
    for _ in 0..3 {
        refuse(&mut h, "PATCH", "/api/v1/namespaces/team-a/pods/a", 409).await;
        answer(
            &mut h,
            "GET",
            "/api/v1/namespaces/team-a/pods/a",
            "",
            200,
            fresh.clone(),
        )
        .await;
    }
    refuse(&mut h, "PATCH", "/api/v1/namespaces/team-a/pods/a", 409).await;
    assert!(format!("{:?}", done(task).await.unwrap_err()).contains("409"));
    // A 500 listing the node's pods, too.
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&p2), ctx.clone()));
    refuse(&mut h, "GET", "/api/v1/pods", 500).await;
    assert!(format!("{:?}", done(task).await.unwrap_err()).contains("500"));

    // A pod asking for a network but holding nothing yet (no Multus status, no port): no
    // finalizer.
    let bare = pod_json("b", "team-a", "w2", json!({"l2sm/networks": "blue"}), false);
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&bare), ctx.clone()));
    answer(
        &mut h,
        "GET",
        "/api/v1/pods",
        "fieldSelector=spec.nodeName=w2",
        200,
        list("PodList", vec![]),
    )
    .await;
    let patch = answer(
        &mut h,
        "PATCH",
        "/api/v1/namespaces/team-a/pods/b",
        "",
        200,
        bare.clone(),
    )
    .await;
    assert_eq!(attachments_written(&patch), json!([{"network": "blue"}]));
    assert!(patch["metadata"].get("finalizers").is_none(), "{patch}");
    assert!(patch["metadata"].get("labels").is_none(), "{patch}");
    done(task).await.unwrap();

    // Delete while the containers still run: wait (no controller change, no API call).
    let mut deleting = finalized_pod("a", "team-a", "w1", annotated.clone());
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let mut running = deleting.clone();
    running["metadata"]["deletionTimestamp"] =
        json!(k8s_openapi::jiff::Timestamp::now().to_string());
    running["status"] = json!({"containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]});
    let err = reconcile::pod::reconcile_cleanup(obj::<Pod>(&running), ctx.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("running"), "{err}");
    assert!(c
        .get_network("blue")
        .await
        .unwrap()
        .unwrap()
        .endpoints
        .contains(&port));
    // The `l2sm` pods' reconciler leaves a labelled pod's deletion to the cleanup one.
    assert_eq!(
        reconcile::pod::reconcile(obj::<Pod>(&deleting), ctx.clone())
            .await
            .unwrap(),
        Action::await_change()
    );

    // Delete once stopped: port out of the network, address released, finalizer removed
    // (guarded by the resourceVersion).
    let held = c
        .allocate(
            "blue",
            &AllocationRequest {
                owner: "cni/c1/net1".into(),
                ips: vec!["10.20.0.5/24".parse().unwrap()],
                port: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(held, ["10.20.0.5/24".parse().unwrap()]);
    let task = tokio::spawn(reconcile::pod::reconcile_cleanup(
        obj::<Pod>(&deleting),
        ctx.clone(),
    ));
    let fin = answer(
        &mut h,
        "PATCH",
        "/api/v1/namespaces/team-a/pods/a",
        "",
        200,
        deleting.clone(),
    )
    .await;
    assert_eq!(
        fin,
        json!({"metadata": {"finalizers": [], "resourceVersion": "7"}})
    );
    done(task).await.unwrap();
    let blue = c.get_network("blue").await.unwrap().unwrap();
    assert!(blue.endpoints.is_empty(), "{blue:?}");
    assert!(blue.ipam.unwrap().allocations.is_empty());

    // A pod still "running" long after its deletion (its node is gone) is cleaned up anyway.
    let mut stale = running.clone();
    stale["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let task = tokio::spawn(reconcile::pod::reconcile_cleanup(
        obj::<Pod>(&stale),
        ctx.clone(),
    ));
    answer(
        &mut h,
        "PATCH",
        "/api/v1/namespaces/team-a/pods/a",
        "",
        200,
        stale.clone(),
    )
    .await;
    done(task).await.unwrap();

    // Controller unreachable: the pod keeps its finalizer and the reconcile is retried, until
    // the cleanup timeout after the deletion.
    let (ctx2, mut h2) = context(unreachable_client());
    let mut recent = deleting.clone();
    recent["metadata"]["deletionTimestamp"] =
        json!(k8s_openapi::jiff::Timestamp::now().to_string());
    let err = reconcile::pod::reconcile_cleanup(obj::<Pod>(&recent), ctx2.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert_backoff(&obj::<Pod>(&recent), &err, &ctx2, &[1, 2]);
    // Past the timeout (deleted long ago): a Warning Event, then the finalizer goes.
    let task = tokio::spawn(reconcile::pod::reconcile_cleanup(
        obj::<Pod>(&deleting),
        ctx2.clone(),
    ));
    let event = answer(
        &mut h2,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/team-a/events",
        "",
        201,
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "a.1", "namespace": "team-a"}, "eventTime": "2026-01-01T00:00:00.000000Z"}),
    )
    .await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("CleanupAbandoned"))
    );
    assert_eq!(event["regarding"]["name"], "a");
    assert!(
        event["note"].as_str().unwrap().contains("unreachable"),
        "{event}"
    );
    let fin = answer(
        &mut h2,
        "PATCH",
        "/api/v1/namespaces/team-a/pods/a",
        "",
        200,
        deleting.clone(),
    )
    .await;
    assert_eq!(fin["metadata"]["finalizers"], json!([]));
    assert_eq!(done(task).await.unwrap(), Action::await_change());
}

// ------------------------------------------------------------------ Overlay

const OVL: &str = "/apis/l2sm.l2sm.k8s.local/v1/namespaces/default/overlays";

fn overlay(nodes: &[&str], links: &[(&str, &str)], finalizer: bool, deleting: bool) -> Value {
    let mut v = json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "Overlay",
        "metadata": {"name": "ovl", "namespace": "default", "uid": "u-ovl", "generation": 1, "resourceVersion": "3"},
        "spec": {
            "provider": {"name": "l2sm-controller", "domain": ["l2sm-controller-service.l2sm-system.svc"], "ofPort": "6633"},
            "topology": {"nodes": nodes, "links": links.iter().map(|(a, b)| json!({"endpointA": a, "endpointB": b})).collect::<Vec<_>>()},
            "interfaceNumber": 10,
            "switchTemplate": {"spec": {"containers": [{"name": "l2sm-switch", "image": "alexdecb/talpa:1.3.8",
                "resources": {"limits": {"memory": "256Mi"}}}]}}
        }
    });
    if finalizer {
        v["metadata"]["finalizers"] = json!([FIN]);
    }
    if deleting {
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    v
}

fn node(name: &str, ip: Option<&str>) -> Value {
    let addrs: Vec<Value> = ip
        .iter()
        .map(|ip| json!({"type": "InternalIP", "address": ip}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"addresses": addrs}})
}

/// Answers an Overlay pass's node list with `nodes`.
async fn nodes_listed(h: &mut Handle, nodes: Vec<Value>) {
    answer(h, "GET", "/api/v1/nodes", "", 200, list("NodeList", nodes)).await;
}

/// The agent ConfigMap and DaemonSet of Overlay `default/ovl`: in the operator's namespace.
fn agent_paths() -> (String, String) {
    use reconcile::overlay::{config_map_name, daemon_set_name};
    (
        format!(
            "/api/v1/namespaces/l2sm-system/configmaps/{}",
            config_map_name("default", "ovl")
        ),
        format!(
            "/apis/apps/v1/namespaces/l2sm-system/daemonsets/{}",
            daemon_set_name("default", "ovl")
        ),
    )
}

/// Answers the ConfigMap and DaemonSet applies and (fewer ready than
/// wanted) the agent pods' list; returns the topology file and the DaemonSet.
async fn overlay_applies(h: &mut Handle, ready: i32) -> (Value, Value) {
    let (cm_path, ds_path) = agent_paths();
    let (cm, send) = expect(h, "PATCH", &cm_path, "fieldManager=l2sm-operator").await;
    reply(send, 200, &cm);
    let topo: Value = serde_json::from_str(cm["data"]["topology.json"].as_str().unwrap()).unwrap();
    let (ds, send) = expect(h, "PATCH", &ds_path, "fieldManager=l2sm-operator").await;
    let wanted = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        ["matchExpressions"][0]["values"]
        .as_array()
        .map_or(0, |v| v.len() as i32);
    let mut answered = ds.clone();
    answered["status"] = json!({"currentNumberScheduled": wanted, "desiredNumberScheduled": wanted, "numberMisscheduled": 0, "numberReady": ready});
    reply(send, 200, &answered);
    if ready < wanted {
        // Why are agents not ready: their pods, by label, in the operator's namespace.
        let pods: Vec<Value> = (0..wanted)
            .map(|i| {
                json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("agent-{i}"), "namespace": "l2sm-system"},
                "spec": {"containers": [], "nodeName": format!("w{}", i + 1)}})
            })
            .collect();
        answer(
            h,
            "GET",
            "/api/v1/namespaces/l2sm-system/pods",
            "labelSelector=app=l2sm-agent%2Cl2sm.l2sm.k8s.local/overlay=ovl%2Cl2sm.l2sm.k8s.local/overlay-namespace=default",
            200,
            list("PodList", pods),
        )
        .await;
    }
    (topo, ds)
}

#[tokio::test]
async fn overlay_create_update_delete_and_errors() {
    let (ctx, mut h) = context(unreachable_client());
    // Create: finalizer first.
    let o = overlay(&["w1", "w2"], &[("w1", "w2")], false, false);
    let task = tokio::spawn(reconcile::overlay::reconcile(
        obj::<Overlay>(&o),
        ctx.clone(),
    ));
    answer(&mut h, "PATCH", &format!("{OVL}/ovl"), "", 200, o.clone()).await;
    done(task).await.unwrap();

    // Apply: topology with node addresses, agent DaemonSet pinned to the nodes with the
    // template's resources (upstream's talpa image replaced by ours, and said so).
    let o = overlay(&["w1", "w2"], &[("w1", "w2")], true, false);
    let task = tokio::spawn(reconcile::overlay::reconcile(
        obj::<Overlay>(&o),
        ctx.clone(),
    ));
    nodes_listed(
        &mut h,
        vec![
            node("w1", Some("10.0.0.1")),
            node("w2", Some("10.0.0.2")),
            node("w3", Some("10.0.0.3")),
        ],
    )
    .await;
    let (topo, ds) = overlay_applies(&mut h, 1).await;
    assert_eq!(
        topo,
        json!({"nodes": [{"name": "w1", "nodeIP": "10.0.0.1"}, {"name": "w2", "nodeIP": "10.0.0.2"}], "links": [{"endpointA": "w1", "endpointB": "w2"}]})
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!(["w1", "w2"])
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"], Settings::default().agent_image);
    assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
    // No owner reference across namespaces: the owning Overlay is named in an annotation.
    assert!(ds["metadata"]["ownerReferences"].is_null(), "{ds}");
    assert_eq!(
        ds["metadata"]["annotations"]["l2sm.l2sm.k8s.local/overlay"],
        "default/ovl"
    );
    let st = status_written(&mut h, &format!("{OVL}/ovl"), &o).await;
    let ready = condition(&st, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("AgentsStarting"))
    );
    assert!(
        ready["message"].as_str().unwrap().contains("talpa"),
        "{ready}"
    );
    let ports = condition(&st, "PortsOnDemand");
    assert!(
        ports["message"]
            .as_str()
            .unwrap()
            .contains("interfaceNumber 10"),
        "{ports}"
    );
    done(task).await.unwrap();

    // Update: a third node and a ring; the ConfigMap changes (the agents re-read it), and
    // a node without address is reported.
    let o = overlay(
        &["w1", "w2", "w3"],
        &[("w1", "w2"), ("w2", "w3"), ("w3", "w1")],
        true,
        false,
    );
    let task = tokio::spawn(reconcile::overlay::reconcile(
        obj::<Overlay>(&o),
        ctx.clone(),
    ));
    nodes_listed(
        &mut h,
        vec![
            node("w1", Some("10.0.0.1")),
            node("w2", Some("10.0.0.2")),
            node("w3", None),
        ],
    )
    .await;
    let (topo, ds) = overlay_applies(&mut h, 3).await;
    assert_eq!(topo["nodes"][2], "w3");
    assert_eq!(topo["links"].as_array().unwrap().len(), 3);
    assert_eq!(
        ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"][0]["values"],
        json!(["w1", "w2", "w3"])
    );
    let st = status_written(&mut h, &format!("{OVL}/ovl"), &o).await;
    assert_eq!(condition(&st, "Ready")["reason"], "NodesWithoutAddress");
    done(task).await.unwrap();

    // Invalid spec: a condition, no workload.
    let bad = overlay(&["w1"], &[("w1", "zz")], true, false);
    let task = tokio::spawn(reconcile::overlay::reconcile(
        obj::<Overlay>(&bad),
        ctx.clone(),
    ));
    let st = status_written(&mut h, &format!("{OVL}/ovl"), &bad).await;
    let ready = condition(&st, "Ready");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(ready["message"].as_str().unwrap().contains("\"zz\""));
    assert_eq!(done(task).await.unwrap(), Action::await_change());

    // 500 from the API server on the DaemonSet apply; 409 on the status write.
    let oo = obj::<Overlay>(&o);
    let task = tokio::spawn(reconcile::overlay::reconcile(oo.clone(), ctx.clone()));
    nodes_listed(&mut h, vec![]).await;
    let (cm_path, ds_path) = agent_paths();
    answer(
        &mut h,
        "PATCH",
        &cm_path,
        "",
        200,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ovl-topology"}}),
    )
    .await;
    refuse(&mut h, "PATCH", &ds_path, 500).await;
    let err = done(task).await.unwrap_err();
    assert_backoff(&oo, &err, &ctx, &[1]);
    let task = tokio::spawn(reconcile::overlay::reconcile(oo.clone(), ctx.clone()));
    nodes_listed(&mut h, vec![]).await;
    overlay_applies(&mut h, 0).await;
    refuse(&mut h, "PATCH", &format!("{OVL}/ovl/status"), 409).await;
    let err = done(task).await.unwrap_err();
    assert!(format!("{err:?}").contains("409"));
    assert_backoff(&oo, &err, &ctx, &[2]);

    // Delete: workload and config go (already gone is fine), then the finalizer.
    let gone = overlay(&["w1"], &[], true, true);
    let task = tokio::spawn(reconcile::overlay::reconcile(
        obj::<Overlay>(&gone),
        ctx.clone(),
    ));
    answer(&mut h, "DELETE", &ds_path, "", 200, status(200, "Success")).await;
    refuse(&mut h, "DELETE", &cm_path, 404).await;
    answer(
        &mut h,
        "PATCH",
        &format!("{OVL}/ovl"),
        "",
        200,
        gone.clone(),
    )
    .await;
    done(task).await.unwrap();
}

// ------------------------------------------------------------------ QuarantinePodRequest

const QPR: &str = "/apis/l2sm.l2sm.k8s.local/v1/namespaces/default/quarantinepodrequests";

fn qpr(target: &str) -> Value {
    json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "QuarantinePodRequest",
        "metadata": {"name": "q", "namespace": "default", "uid": "u-q", "generation": 1, "resourceVersion": "9"},
        "spec": {"selector": {"podLabelSelector": {"matchLabels": {"app": "web"}},
                              "l2NetworkSelector": {"matchLabels": {"tier": "prod"}}},
                 "targetL2Network": target}
    })
}

/// Answers a quarantine pass's pod list (selected with `query`) with `pods`.
async fn pods_selected(h: &mut Handle, query: &str, pods: Vec<Value>) {
    answer(
        h,
        "GET",
        "/api/v1/namespaces/default/pods",
        query,
        200,
        list("PodList", pods),
    )
    .await;
}

/// What a node's agent reports for a port it attached: its pod and CNI attachment on `net1`.
fn owner(pod: &str, attachment: &str) -> PortOwnerRequest {
    PortOwnerRequest {
        pod: Some(pod.into()),
        attachment: attachment.into(),
        interface: "net1".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn quarantine_moves_the_port_live_and_reports() {
    let (_ctrl, c) = controller_with(&[("blue", &[]), ("jail", &[])]).await;
    let port = port_on("w1", 4);
    c.add_port("blue", &port).await.unwrap();
    let (ctx, mut h) = context(c.clone());
    let q = qpr("jail");
    let atts = json!([{"network": "blue", "interface": "net1", "port": port}]).to_string();
    let mut web = pod_json(
        "web-1",
        "default",
        "w1",
        json!({"l2sm/networks": "blue", "l2sm/status": atts}),
        true,
    );
    web["metadata"]["labels"]["app"] = json!("web");
    let other = pod_json(
        "web-2",
        "default",
        "w1",
        json!({"l2sm/networks": "red"}),
        true,
    );

    let task = tokio::spawn(reconcile::quarantine::reconcile(
        obj::<QuarantinePodRequest>(&q),
        ctx.clone(),
    ));
    source_blue_target_jail(&mut h, "labelSelector=tier=prod").await;
    pods_selected(&mut h, "labelSelector=app=web", vec![web.clone(), other]).await;
    let patch = answer(
        &mut h,
        "PATCH",
        "/api/v1/namespaces/default/pods/web-1",
        "",
        200,
        web.clone(),
    )
    .await;
    let moved = attachments_written(&patch);
    // Written against the pod as listed (a concurrent writer gets a 409, not lost).
    assert_eq!(patch["metadata"]["resourceVersion"], "7", "{patch}");
    assert_eq!(moved[0]["network"], "jail");
    assert_eq!(moved[0]["quarantinedFrom"], "blue");
    assert_eq!(moved[0]["port"], port);
    let st = status_written(&mut h, &format!("{QPR}/q"), &q).await;
    assert_eq!(
        (st["matchedPodCount"].as_i64(), st["movedPodCount"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (
            st["sourceL2NetworkName"].as_str(),
            st["targetL2NetworkName"].as_str()
        ),
        (Some("blue"), Some("jail"))
    );
    for t in ["Available", "Ready"] {
        let cnd = condition(&st, t);
        assert_eq!(
            (cnd["status"].as_str(), cnd["reason"].as_str()),
            (Some("True"), Some("PodsMoved"))
        );
        assert_eq!(cnd["message"], "moved 1 pod(s) from \"blue\" to \"jail\"");
    }
    done(task).await.unwrap();
    // The port moved in the controller; the pod was never touched otherwise.
    assert!(c
        .get_network("jail")
        .await
        .unwrap()
        .unwrap()
        .endpoints
        .contains(&port));
    assert!(c
        .get_network("blue")
        .await
        .unwrap()
        .unwrap()
        .endpoints
        .is_empty());

    // Second pass (the pod now reports the move): counted, nothing moved again, no writes.
    let mut q2 = q.clone();
    q2["status"] = st.clone();
    web["metadata"]["annotations"]["l2sm/status"] = json!(moved.to_string());
    let task = tokio::spawn(reconcile::quarantine::reconcile(
        obj::<QuarantinePodRequest>(&q2),
        ctx.clone(),
    ));
    source_blue_target_jail(&mut h, "").await;
    pods_selected(&mut h, "", vec![web.clone()]).await;
    done(task).await.unwrap();
}

/// Two pods of one network attached on one node before any reconcile: the guess cannot tell
/// their ports apart, the owners the agent reported can; quarantine moves exactly one.
#[tokio::test]
async fn owned_ports_tell_pods_on_one_node_apart_and_quarantine_moves_the_right_one() {
    let (_ctrl, c) = controller_with(&[("blue", &[]), ("jail", &[])]).await;
    let (p1, p2) = (port_on("w1", 3), port_on("w1", 4));
    // What the agent does on attach: membership, then owner.
    c.add_port("blue", &p1).await.unwrap();
    c.add_port("blue", &p2).await.unwrap();
    c.set_port_owner(p1.parse().unwrap(), &owner("default/web-1", "cni/c1/net1"))
        .await
        .unwrap();
    c.set_port_owner(p2.parse().unwrap(), &owner("default/db-1", "cni/c2/net1"))
        .await
        .unwrap();
    // Only member ports have owners.
    let err = c
        .set_port_owner(
            port_on("w1", 9).parse().unwrap(),
            &owner("default/x", "cni/c9/net1"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("409"), "{err}");
    let (ctx, mut h) = context(c.clone());

    // The db pod's status gets its own port, without looking at the other pods of the node.
    let net_status = json!([{"name": "default/l2sm-blue", "interface": "net1", "ips": [], "mac": "02:00:00:00:00:04"}]).to_string();
    let db = pod_json(
        "db-1",
        "default",
        "w1",
        json!({"l2sm/networks": "blue", "k8s.v1.cni.cncf.io/network-status": net_status}),
        true,
    );
    let task = tokio::spawn(reconcile::pod::reconcile(obj::<Pod>(&db), ctx.clone()));
    let patch = answer(
        &mut h,
        "PATCH",
        "/api/v1/namespaces/default/pods/db-1",
        "",
        200,
        db.clone(),
    )
    .await;
    assert_eq!(attachments_written(&patch)[0]["port"], p2);
    assert_eq!(
        done(task).await.unwrap(),
        Action::requeue(Settings::default().resync)
    );

    // Quarantine of web-1 (not reconciled yet, no l2sm/status): its own port moves.
    let q = qpr("jail");
    let mut web = pod_json(
        "web-1",
        "default",
        "w1",
        json!({"l2sm/networks": "blue"}),
        true,
    );
    web["metadata"]["labels"]["app"] = json!("web");
    let task = tokio::spawn(reconcile::quarantine::reconcile(
        obj::<QuarantinePodRequest>(&q),
        ctx.clone(),
    ));
    source_blue_target_jail(&mut h, "labelSelector=tier=prod").await;
    pods_selected(&mut h, "labelSelector=app=web", vec![web.clone()]).await;
    let patch = answer(
        &mut h,
        "PATCH",
        "/api/v1/namespaces/default/pods/web-1",
        "",
        200,
        web.clone(),
    )
    .await;
    assert_eq!(
        attachments_written(&patch),
        json!([{"network": "jail", "port": p1, "quarantinedFrom": "blue"}])
    );
    let st = status_written(&mut h, &format!("{QPR}/q"), &q).await;
    assert_eq!(st["movedPodCount"], 1);
    done(task).await.unwrap();
    let blue = c.get_network("blue").await.unwrap().unwrap();
    let jail = c.get_network("jail").await.unwrap().unwrap();
    assert_eq!(blue.endpoints, std::slice::from_ref(&p2));
    assert_eq!(jail.endpoints, std::slice::from_ref(&p1));
    // The moved port keeps its owner; the other is untouched.
    let owners = c.attachments().await.unwrap();
    let of = |p: &str| owners.iter().find(|m| m.port == p).unwrap().clone();
    assert_eq!(
        (of(&p1).network.as_str(), of(&p1).pod.as_deref()),
        ("jail", Some("default/web-1"))
    );
    assert_eq!(
        (of(&p2).network.as_str(), of(&p2).pod.as_deref()),
        ("blue", Some("default/db-1"))
    );
    // Leaving the network drops the owner.
    c.remove_port("jail", &p1).await.unwrap();
    assert!(c.attachments().await.unwrap().iter().all(|m| m.port != p1));
}

#[tokio::test]
async fn quarantine_failures_have_upstream_reasons() {
    let (_ctrl, c) = controller_with(&[("blue", &[])]).await;
    let (ctx, mut h) = context(c.clone());
    let q = qpr("jail");
    let qo = obj::<QuarantinePodRequest>(&q);
    let run = |ctx: Arc<Context>| tokio::spawn(reconcile::quarantine::reconcile(qo.clone(), ctx));

    // What is missing, as the API server and the controller answer the pass's reads (GET
    // path, code, body): each a condition with upstream's reason and a look again in 30 s.
    let blue_only = || list("L2NetworkList", vec![l2network("blue", None, true, false)]);
    let jail = format!("{L2N}/jail");
    let cases = [
        (
            vec![(L2N.to_string(), 200, list("L2NetworkList", vec![]))],
            "SourceL2NetworkNotFound",
            "L2Network selector did not match any source L2Network",
        ),
        (
            vec![(
                L2N.to_string(),
                200,
                list(
                    "L2NetworkList",
                    vec![
                        l2network("blue", None, true, false),
                        l2network("red", None, true, false),
                    ],
                ),
            )],
            "MultipleSourceL2Networks",
            "L2Network selector matched 2 source L2Networks; expected exactly one",
        ),
        (
            vec![
                (L2N.to_string(), 200, blue_only()),
                (jail.clone(), 404, status(404, "NotFound")),
            ],
            "TargetL2NetworkNotFound",
            "target L2Network \"jail\" does not exist",
        ),
        (
            // The resource exists; the controller has no network "jail".
            vec![
                (L2N.to_string(), 200, blue_only()),
                (jail.clone(), 200, l2network("jail", None, true, false)),
            ],
            "TargetL2NetworkUnavailable",
            "target L2Network \"jail\" does not exist in the SDN controller",
        ),
    ];
    for (reads, reason, message) in cases {
        let task = run(ctx.clone());
        for (path, code, body) in reads {
            answer(&mut h, "GET", &path, "", code, body).await;
        }
        let st = status_written(&mut h, &format!("{QPR}/q"), &q).await;
        for t in ["Available", "Ready"] {
            let cnd = condition(&st, t);
            assert_eq!(
                (
                    cnd["status"].as_str(),
                    cnd["reason"].as_str(),
                    cnd["message"].as_str()
                ),
                (Some("False"), Some(reason), Some(message))
            );
        }
        assert_eq!(
            done(task).await.unwrap(),
            Action::requeue(Duration::from_secs(30)),
            "{reason}"
        );
    }

    // API server error listing networks; conflict on the status write.
    let task = run(ctx.clone());
    refuse(&mut h, "GET", L2N, 500).await;
    let err = done(task).await.unwrap_err();
    assert_backoff(&qo, &err, &ctx, &[1]);
    let task = run(ctx.clone());
    answer(&mut h, "GET", L2N, "", 200, list("L2NetworkList", vec![])).await;
    refuse(&mut h, "PATCH", &format!("{QPR}/q/status"), 409).await;
    assert!(format!("{:?}", done(task).await.unwrap_err()).contains("409"));

    // Controller unreachable: TargetL2NetworkCheckFailed, and an error (retried with backoff).
    let (ctx2, mut h2) = context(unreachable_client());
    let task = run(ctx2.clone());
    source_blue_target_jail(&mut h2, "").await;
    let st = status_written(&mut h2, &format!("{QPR}/q"), &q).await;
    let cnd = condition(&st, "Available");
    assert_eq!(cnd["reason"], "TargetL2NetworkCheckFailed");
    assert!(cnd["message"]
        .as_str()
        .unwrap()
        .starts_with("could not check target L2Network in SDN controller"));
    let err = done(task).await.unwrap_err();
    assert_backoff(&qo, &err, &ctx2, &[1, 2]);
}

// ------------------------------------------------------------------ NetworkEdgeDevice

#[tokio::test]
async fn network_edge_device_deploys_its_edge_and_retries_api_errors() {
    let (ctx, mut h) = context(unreachable_client());
    let ned = json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "NetworkEdgeDevice",
        "metadata": {"name": "ned", "namespace": "default", "generation": 1,
                     "finalizers": [FIN]},
        "spec": {"provider": {"name": "idco", "domain": ["10.0.0.1"]},
                 "nodeConfig": {"nodeName": "n1", "ipAddress": "10.0.0.5"},
                 "neighbors": [{"node": "remote", "domain": "10.1.0.5"}]}
    });
    let path = "/apis/l2sm.l2sm.k8s.local/v1/namespaces/default/networkedgedevices/ned/status";
    let cm_path = format!(
        "/api/v1/namespaces/l2sm-system/configmaps/{}",
        reconcile::nedevice::config_map_name("default", "ned")
    );
    let ds_path = format!(
        "/apis/apps/v1/namespaces/l2sm-system/daemonsets/{}",
        reconcile::nedevice::daemon_set_name("default", "ned")
    );
    let task = tokio::spawn(reconcile::nedevice::reconcile(
        obj::<NetworkEdgeDevice>(&ned),
        ctx.clone(),
    ));
    // The edge devices (one edge per node), server-side applies of the ConfigMap and the
    // DaemonSet (answered as stored), the edge pods (none yet), then the status.
    let neds = "/apis/l2sm.l2sm.k8s.local/v1/networkedgedevices";
    answer(
        &mut h,
        "GET",
        neds,
        "",
        200,
        list("NetworkEdgeDeviceList", vec![ned.clone()]),
    )
    .await;
    let (cm, send) = expect(&mut h, "PATCH", &cm_path, "fieldManager=l2sm-operator").await;
    assert!(cm["data"]["neighbors.json"]
        .as_str()
        .unwrap()
        .contains("10.1.0.5"));
    reply(send, 200, &cm);
    let (ds, send) = expect(&mut h, "PATCH", &ds_path, "fieldManager=l2sm-operator").await;
    reply(send, 200, &ds);
    answer(
        &mut h,
        "GET",
        "/api/v1/namespaces/l2sm-system/pods",
        "labelSelector=",
        200,
        list("PodList", vec![]),
    )
    .await;
    let st = status_written(&mut h, path.trim_end_matches("/status"), &ned).await;
    assert_eq!(condition(&st, "Ready")["reason"], "EdgeStarting");
    assert_eq!(st["availability"], "Unavailable");
    done(task).await.unwrap();

    // The DaemonSet apply refused (500): the reconcile fails and is retried with backoff.
    let task = tokio::spawn(reconcile::nedevice::reconcile(
        obj::<NetworkEdgeDevice>(&ned),
        ctx.clone(),
    ));
    answer(
        &mut h,
        "GET",
        neds,
        "",
        200,
        list("NetworkEdgeDeviceList", vec![ned.clone()]),
    )
    .await;
    let (cm, send) = expect(&mut h, "PATCH", &cm_path, "").await;
    reply(send, 200, &cm);
    refuse(&mut h, "PATCH", &ds_path, 500).await;
    let err = done(task).await.unwrap_err();
    assert_backoff(&obj::<NetworkEdgeDevice>(&ned), &err, &ctx, &[1, 2]);

    // A bad spec: only the status is written (a conflict there is an error too).
    let mut bad = ned.clone();
    bad["spec"]["nodeConfig"]["ipAddress"] = json!("not-an-ip");
    let task = tokio::spawn(reconcile::nedevice::reconcile(
        obj::<NetworkEdgeDevice>(&bad),
        ctx.clone(),
    ));
    let st = answer(&mut h, "PATCH", path, "", 409, status(409, "Conflict")).await;
    assert_eq!(condition(&st["status"], "Ready")["reason"], "InvalidSpec");
    assert!(done(task).await.is_err());
    let task = tokio::spawn(reconcile::nedevice::reconcile(
        obj::<NetworkEdgeDevice>(&bad),
        ctx.clone(),
    ));
    refuse(&mut h, "PATCH", path, 500).await;
    assert!(done(task).await.is_err());
}

// ------------------------------------------------------------------ Leader election

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/l2sm-system/leases";

fn lease(holder: &str, renewed_ago_secs: i64, transitions: i32) -> Value {
    let renewed = k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(renewed_ago_secs);
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "ec71f4b7.l2sm.k8s.local", "namespace": "l2sm-system", "resourceVersion": "11"},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                    "acquireTime": renewed.to_string(), "renewTime": renewed.to_string(), "leaseTransitions": transitions}})
}

#[tokio::test]
async fn leader_election_acquires_renews_and_steps_down() {
    let (svc, mut h) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let me = Arc::new(LeaderElector::new(
        client,
        "l2sm-system",
        "ec71f4b7.l2sm.k8s.local",
        "op-a",
        Timings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_millis(300),
            retry_period: Duration::from_millis(50),
        },
    ));
    let name = format!("{LEASES}/ec71f4b7.l2sm.k8s.local");

    // No lease: created, held.
    let t = {
        let me = me.clone();
        tokio::spawn(async move { me.try_acquire_or_renew().await })
    };
    refuse(&mut h, "GET", &name, 404).await;
    let created = answer(&mut h, "POST", LEASES, "", 201, lease("op-a", 0, 0)).await;
    assert_eq!(created["spec"]["holderIdentity"], "op-a");
    assert!(done(t).await.unwrap());

    // Held by someone else, fresh: follow, no write.
    let t = {
        let me = me.clone();
        tokio::spawn(async move { me.try_acquire_or_renew().await })
    };
    answer(&mut h, "GET", &name, "", 200, lease("op-b", 1, 3)).await;
    assert!(!done(t).await.unwrap());

    // Held by someone else, expired: taken over, transitions counted, resourceVersion sent.
    let t = {
        let me = me.clone();
        tokio::spawn(async move { me.try_acquire_or_renew().await })
    };
    answer(&mut h, "GET", &name, "", 200, lease("op-b", 60, 3)).await;
    let put = answer(&mut h, "PUT", &name, "", 200, lease("op-a", 0, 4)).await;
    assert_eq!(put["spec"]["holderIdentity"], "op-a");
    assert_eq!(put["spec"]["leaseTransitions"], 4);
    assert_eq!(put["metadata"]["resourceVersion"], "11");
    assert!(done(t).await.unwrap());

    // Two candidates raced and the other won (409): not leader.
    let t = {
        let me = me.clone();
        tokio::spawn(async move { me.try_acquire_or_renew().await })
    };
    answer(&mut h, "GET", &name, "", 200, lease("op-b", 60, 4)).await;
    refuse(&mut h, "PUT", &name, 409).await;
    assert!(!done(t).await.unwrap());

    // API server error: an error, not leadership.
    let t = {
        let me = me.clone();
        tokio::spawn(async move { me.try_acquire_or_renew().await })
    };
    refuse(&mut h, "GET", &name, 500).await;
    assert!(done(t).await.is_err());

    // Leading: renewals keep the same acquireTime and transitions; when renewals fail past
    // the deadline, the elector steps down.
    let mut leading = me.clone().keep_renewing();
    answer(&mut h, "GET", &name, "", 200, lease("op-a", 1, 4)).await;
    let renew = answer(&mut h, "PUT", &name, "", 200, lease("op-a", 0, 4)).await;
    assert_eq!(renew["spec"]["leaseTransitions"], 4);
    assert_eq!(renew["spec"]["holderIdentity"], "op-a");
    assert!(*leading.borrow());
    let failing = tokio::spawn(async move {
        loop {
            match h.next_request().await {
                Some((_, send)) => reply(send, 500, &status(500, "InternalError")),
                None => return,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), leading.wait_for(|l| !l))
        .await
        .expect("stepped down")
        .unwrap();
    failing.abort();
}

#[tokio::test]
async fn leader_steps_down_when_another_takes_over_and_releases_on_exit() {
    let (svc, mut h) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let me = Arc::new(LeaderElector::new(
        client,
        "l2sm-system",
        "ec71f4b7.l2sm.k8s.local",
        "op-a",
        Timings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(5),
            retry_period: Duration::from_millis(20),
        },
    ));
    let name = format!("{LEASES}/ec71f4b7.l2sm.k8s.local");
    let mut leading = me.clone().keep_renewing();
    answer(&mut h, "GET", &name, "", 200, lease("op-b", 1, 5)).await;
    tokio::time::timeout(Duration::from_secs(5), leading.wait_for(|l| !l))
        .await
        .expect("stepped down")
        .unwrap();

    // Release: only our own lease is given up (holder cleared, 1 s duration).
    let t = {
        let me = me.clone();
        tokio::spawn(async move { me.release().await })
    };
    answer(&mut h, "GET", &name, "", 200, lease("op-a", 1, 5)).await;
    let put = answer(&mut h, "PUT", &name, "", 200, lease("", 0, 5)).await;
    assert!(put["spec"]["holderIdentity"].is_null());
    assert_eq!(put["spec"]["leaseDurationSeconds"], 1);
    done(t).await.unwrap();
    let t = {
        let me = me.clone();
        tokio::spawn(async move { me.release().await })
    };
    answer(&mut h, "GET", &name, "", 200, lease("op-b", 1, 6)).await;
    done(t).await.unwrap();
}

// ------------------------------------------------------------------ The runtime

/// The five controllers wired as `l2sm operator` runs them: an L2Network listed by the API
/// server gets reconciled (its finalizer added), and the controllers stop when asked.
#[tokio::test]
async fn controllers_run_reconcile_and_stop() {
    let (_ctrl, c) = controller_with(&[]).await;
    let (ctx, mut h) = context(c);
    let client = ctx.kube.clone();
    let (finalized_tx, mut finalized_rx) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        while let Some((req, send)) = h.next_request().await {
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            let method = req.method().clone();
            if query.contains("watch=true") {
                // End the watch at once; the watcher lists again later.
                send.send_response(Response::builder().status(200).body(Body::empty()).unwrap());
            } else if method == "GET" && path == "/apis/l2sm.l2sm.k8s.local/v1/l2networks" {
                reply(
                    send,
                    200,
                    &list("L2NetworkList", vec![l2network("blue", None, false, false)]),
                );
            } else if method == "PATCH" && path == format!("{L2N}/blue") {
                let body = req.into_body().collect_bytes().await.unwrap();
                let _ = finalized_tx.send(String::from_utf8_lossy(&body).to_string());
                reply(send, 200, &l2network("blue", None, true, false));
            } else if method == "GET" {
                reply(send, 200, &list("List", vec![]));
            } else {
                reply(send, 404, &status(404, "NotFound"));
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(async move {
        l2sm_operator::operator::run_controllers(client, None, ctx, stop_rx).await
    });
    let patch = tokio::time::timeout(Duration::from_secs(20), finalized_rx.recv())
        .await
        .expect("the L2Network was reconciled")
        .unwrap();
    assert!(patch.contains(FIN), "{patch}");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("controllers stopped")
        .unwrap();
    server.abort();
}
