//! The reconcilers against a stateful fake Kubernetes API (`l2sm-kube-fake`: real merge
//! patch, JSON patch, server-side apply field ownership, `/status`, resourceVersion
//! preconditions, finalizers, watches) and our real controller (`l2sm controller`, or an
//! address nobody listens on). Each test runs several passes, reading the object back from the
//! store before each one as the watch would deliver it, and asserts the STORED objects (and,
//! where it is the point, the calls made).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{reflector, watcher};
use kube::{Api, ResourceExt};
use l2sm_api::v1::{CreateNetwork, PortOwnerRequest};
use l2sm_api::{ControllerClient, RetryPolicy};
use l2sm_kube_fake::{Call, FakeApi};
use l2sm_operator::api_calls::allows;
use l2sm_operator::crd::{L2Network, QuarantinePodRequest, FINALIZER};
use l2sm_operator::reconcile::pod::{pod_attachments, Attachment};
use l2sm_operator::reconcile::{self, Context, Settings, CLEANUP_LABEL, STATUS_ANNOTATION};
use l2sm_test_support::controller::ControllerProcess;
use l2sm_test_support::free_port;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAD_GROUP: &str = "k8s.cni.cncf.io";
const NADS: &str = "network-attachment-definitions";

fn client(ctrl: &ControllerProcess) -> ControllerClient {
    ControllerClient::new(
        &ctrl.url(),
        Some((ctrl.user.clone(), ctrl.password.clone())),
        RetryPolicy::default(),
    )
    .unwrap()
}

/// Our controller (killed when dropped) holding these networks, and a client.
async fn controller_with(networks: &[&str]) -> (ControllerProcess, ControllerClient) {
    let ctrl = ControllerProcess::start();
    let c = client(&ctrl);
    for name in networks {
        c.create_network(&CreateNetwork {
            name: name.to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    (ctrl, c)
}

/// A controller client for an address nobody listens on, retrying 2 times quickly.
fn unreachable_client() -> ControllerClient {
    ControllerClient::new(
        &format!("http://127.0.0.1:{}", free_port()),
        Some(("op".into(), "secret".into())),
        RetryPolicy {
            attempts: 2,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
        },
    )
    .unwrap()
}

fn context(fake: &FakeApi, controller: ControllerClient, settings: Settings) -> Arc<Context> {
    Context::new(fake.client(), controller, settings)
}

/// A pod cache as the Pod controller's: a reflector of the `l2sm` pods watching the fake, filled
/// before it is returned. The operator reads pods from it (listing a node's pods instead needs
/// the field selector `spec.nodeName`, which the fake does not implement).
async fn live_cache(fake: &FakeApi) -> reflector::Store<Pod> {
    use futures::StreamExt as _;
    use kube::runtime::WatchStreamExt as _;
    let (store, writer) = reflector::store::<Pod>();
    let events = watcher(
        Api::<Pod>::all(fake.client()),
        watcher::Config::default().labels("l2sm=true"),
    )
    .default_backoff()
    .reflect(writer);
    tokio::spawn(events.for_each(|_| async {}));
    tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready())
        .await
        .expect("the pod cache fills")
        .unwrap();
    store
}

fn port_on(node: &str, n: u32) -> String {
    format!("of:{:016x}/{n}", reconcile::pod::node_dpid(node))
}

fn l2network(ns: &str, name: &str, labels: Value, status: Option<Value>) -> L2Network {
    let mut v = json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"type": "vnet"}
    });
    if let Some(s) = status {
        v["status"] = s;
    }
    serde_json::from_value(v).unwrap()
}

fn pod(ns: &str, name: &str, node: &str, labels: Value, annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap()
}

/// Multus's network status for one interface `net1` on network `net`'s NAD in `ns`.
fn multus(ns: &str, net: &str, ip: &str) -> String {
    json!([{"name": format!("{ns}/l2sm-{net}"), "interface": "net1", "ips": [ip], "mac": "02:00:00:00:00:01"}])
        .to_string()
}

fn stored_pod(fake: &FakeApi, ns: &str, name: &str) -> Pod {
    fake.get::<Pod>(Some(ns), name)
        .unwrap_or_else(|| panic!("pod {ns}/{name} is stored"))
}

fn stored_net(fake: &FakeApi, ns: &str, name: &str) -> L2Network {
    fake.get::<L2Network>(Some(ns), name)
        .unwrap_or_else(|| panic!("L2Network {ns}/{name} is stored"))
}

/// One L2Network pass on the stored object, as the watch would deliver it.
async fn net_pass(fake: &FakeApi, ctx: &Arc<Context>, ns: &str, name: &str) -> Action {
    let net = Arc::new(stored_net(fake, ns, name));
    reconcile::l2network::reconcile(net, ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("L2Network {ns}/{name}: {e}"))
}

async fn pod_pass(fake: &FakeApi, ctx: &Arc<Context>, ns: &str, name: &str) -> Action {
    let p = Arc::new(stored_pod(fake, ns, name));
    reconcile::pod::reconcile(p, ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("pod {ns}/{name}: {e}"))
}

async fn qpr_pass(fake: &FakeApi, ctx: &Arc<Context>, ns: &str, name: &str) -> Action {
    let q = Arc::new(
        fake.get::<QuarantinePodRequest>(Some(ns), name)
            .expect("QuarantinePodRequest is stored"),
    );
    reconcile::quarantine::reconcile(q, ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("QuarantinePodRequest {ns}/{name}: {e}"))
}

/// Deletes `name` as a user would; the calls of the operator so far are checked against the
/// table first, and the user's own call is not recorded as the operator's.
async fn user_deletes<K>(fake: &FakeApi, ns: &str, name: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    assert_calls_in_table(fake);
    let api: Api<K> = Api::namespaced(fake.client(), ns);
    api.delete(name, &DeleteParams::default()).await.unwrap();
    fake.clear_calls();
}

/// Every call made is in the operator's table of API calls (which `deploy/rbac.yaml` grants),
/// in the scope and for the names the table gives.
fn assert_calls_in_table(fake: &FakeApi) {
    let outside: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| {
            !allows(
                &c.group,
                &c.resource,
                c.subresource.as_deref(),
                &c.verb,
                c.namespace.as_deref(),
                c.name.as_deref(),
                "l2sm-system",
            )
        })
        .map(|c| {
            format!(
                "{} {}.{} {:?}",
                c.verb,
                c.resource_path(),
                c.group,
                c.namespace
            )
        })
        .collect();
    assert!(
        outside.is_empty(),
        "calls missing from api_calls: {outside:?}"
    );
}

fn writes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| !matches!(c.verb.as_str(), "get" | "list" | "watch"))
        .map(|c| {
            format!(
                "{} {} {}/{}",
                c.verb,
                c.resource_path(),
                c.namespace.clone().unwrap_or_default(),
                c.name.clone().unwrap_or_default()
            )
        })
        .collect()
}

fn status_json(net: &L2Network) -> Value {
    serde_json::to_value(net.status.as_ref().expect("a status")).unwrap()
}

/// #5: the status is exactly what the reconciler computes — keys it no longer has (an address
/// of a pod that went, upstream's `lastAssignedIP` and `providerConnectivity` left by another
/// writer) are removed from the stored object — and a pass with nothing new writes nothing.
#[tokio::test]
async fn l2network_status_drops_removed_keys_and_an_unchanged_pass_writes_nothing() {
    let (_ctrl, c) = controller_with(&[]).await;
    let fake = FakeApi::new();
    let ctx = context(&fake, c, Settings::default());
    // Left by another writer (the upstream operator, or this one's earlier merge patches).
    fake.seed(&l2network(
        "default",
        "blue",
        json!({}),
        Some(json!({
            "connectedPodCount": 3, "internalConnectivity": "Available",
            "lastAssignedIP": "10.30.0.9", "providerConnectivity": "Available",
            "assignedIPs": {"10.30.0.9": "old-pod"}
        })),
    ));
    let att = json!([{"network": "blue", "interface": "net1", "ips": ["10.30.0.5"]}]).to_string();
    fake.seed(&pod(
        "default",
        "p1",
        "w1",
        json!({"l2sm": "true"}),
        json!({"l2sm/networks": "blue", STATUS_ANNOTATION: att}),
    ));

    // Pass 1 adds the finalizer, pass 2 makes the network, NAD and status.
    net_pass(&fake, &ctx, "default", "blue").await;
    assert_eq!(
        stored_net(&fake, "default", "blue").finalizers(),
        [FINALIZER]
    );
    net_pass(&fake, &ctx, "default", "blue").await;
    let st = status_json(&stored_net(&fake, "default", "blue"));
    assert_eq!(st["assignedIPs"], json!({"10.30.0.5": "p1"}), "{st}");
    assert!(st.get("lastAssignedIP").is_none(), "{st}");
    assert!(st.get("providerConnectivity").is_none(), "{st}");
    assert_eq!(st["connectedPodCount"], 0);
    assert_eq!(st["conditions"][0]["reason"], "NetworkReady");

    // The pod goes: its address leaves the status (the operator's own key this time).
    fake.remove("", "pods", Some("default"), "p1");
    net_pass(&fake, &ctx, "default", "blue").await;
    let st = status_json(&stored_net(&fake, "default", "blue"));
    assert!(st.get("assignedIPs").is_none(), "{st}");

    // Nothing new: no status write (nor any other write).
    fake.clear_calls();
    let rv = fake.resource_version();
    net_pass(&fake, &ctx, "default", "blue").await;
    net_pass(&fake, &ctx, "default", "blue").await;
    let calls = fake.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.subresource.as_deref() == Some("status")),
        "{:?}",
        writes(&calls)
    );
    assert_eq!(fake.resource_version(), rv, "{:?}", writes(&calls));
    // The status writes were server-side applies by the operator's field manager.
    let stored = fake
        .get_value("l2sm.l2sm.k8s.local", "l2networks", Some("default"), "blue")
        .unwrap();
    let managers: Vec<&str> = stored["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["subresource"] == "status")
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"l2sm-operator"), "{managers:?}");
    assert_calls_in_table(&fake);
}

/// #5 for QuarantinePodRequest: a source the selector no longer finds leaves the status.
#[tokio::test]
async fn quarantine_status_forgets_a_source_it_no_longer_finds() {
    let (_ctrl, c) = controller_with(&[]).await;
    let fake = FakeApi::new();
    let ctx = context(&fake, c, Settings::default());
    let q: QuarantinePodRequest = serde_json::from_value(json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "QuarantinePodRequest",
        "metadata": {"name": "q", "namespace": "default"},
        "spec": {"selector": {"podLabelSelector": {"matchLabels": {"app": "web"}},
                              "l2NetworkSelector": {"matchLabels": {"tier": "prod"}}},
                 "targetL2Network": "jail"},
        "status": {"sourceL2NetworkName": "blue", "targetL2NetworkName": "jail",
                   "matchedPodCount": 1, "movedPodCount": 1}
    }))
    .unwrap();
    fake.seed(&q);
    qpr_pass(&fake, &ctx, "default", "q").await;
    let st = fake
        .get_value(
            "l2sm.l2sm.k8s.local",
            "quarantinepodrequests",
            Some("default"),
            "q",
        )
        .unwrap()["status"]
        .clone();
    assert!(st.get("sourceL2NetworkName").is_none(), "{st}");
    assert_eq!(st["targetL2NetworkName"], "jail");
    // Counts of the last successful pass are kept, on purpose.
    assert_eq!(st["movedPodCount"], 1);
    assert_eq!(st["conditions"][0]["reason"], "SourceL2NetworkNotFound");
    fake.clear_calls();
    qpr_pass(&fake, &ctx, "default", "q").await;
    assert!(
        writes(&fake.calls()).is_empty(),
        "{:?}",
        writes(&fake.calls())
    );
    assert_calls_in_table(&fake);
}

/// Seeds what a quarantine of `default/web-1` needs: L2Networks blue (tier=prod) and jail, and
/// the pod asking for blue with `status`; the controller has its port on blue, owned by it.
async fn quarantine_setup(fake: &FakeApi, c: &ControllerClient, status: Value) -> String {
    let port = port_on("w1", 4);
    c.add_port("blue", &port).await.unwrap();
    c.set_port_owner(
        port.parse().unwrap(),
        &PortOwnerRequest {
            pod: Some("default/web-1".into()),
            attachment: "cni/c1/net1".into(),
            interface: "net1".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    fake.seed(&l2network("default", "blue", json!({"tier": "prod"}), None));
    fake.seed(&l2network("default", "jail", json!({}), None));
    let mut annotations = json!({"l2sm/networks": "blue",
        "k8s.v1.cni.cncf.io/network-status": multus("default", "blue", "10.40.0.5")});
    if !status.is_null() {
        annotations[STATUS_ANNOTATION] = json!(status.to_string());
    }
    fake.seed(&pod(
        "default",
        "web-1",
        "w1",
        json!({"l2sm": "true", "app": "web"}),
        annotations,
    ));
    fake.seed(
        &serde_json::from_value::<QuarantinePodRequest>(json!({
            "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "QuarantinePodRequest",
            "metadata": {"name": "q", "namespace": "default"},
            "spec": {"selector": {"podLabelSelector": {"matchLabels": {"app": "web"}},
                                  "l2NetworkSelector": {"matchLabels": {"tier": "prod"}}},
                     "targetL2Network": "jail"}
        }))
        .unwrap(),
    );
    port
}

fn the_attachment(fake: &FakeApi) -> Attachment {
    let atts = pod_attachments(&stored_pod(fake, "default", "web-1"));
    assert_eq!(atts.len(), 1, "{atts:?}");
    atts[0].clone()
}

/// #6, Pod reconciler after the quarantine: it works on the pod as it read it before the
/// move (its watch event), and must not erase `quarantinedFrom` and the moved port.
#[tokio::test]
async fn pod_reconciler_with_a_stale_pod_keeps_the_quarantine() {
    let (_ctrl, c) = controller_with(&["blue", "jail"]).await;
    let fake = FakeApi::new();
    let ctx = context(&fake, c.clone(), Settings::default());
    let port = quarantine_setup(&fake, &c, Value::Null).await;
    ctx.set_pod_store(live_cache(&fake).await);

    // The Pod reconciler's copy, read before the quarantine.
    let stale = Arc::new(stored_pod(&fake, "default", "web-1"));
    qpr_pass(&fake, &ctx, "default", "q").await;
    let moved = the_attachment(&fake);
    assert_eq!(
        (moved.network.as_str(), moved.quarantined_from.as_deref()),
        ("jail", Some("blue"))
    );
    reconcile::pod::reconcile(stale, ctx.clone()).await.unwrap();

    // Both writers' keys are there: the quarantine's and the Pod reconciler's (interface,
    // address from Multus).
    let att = the_attachment(&fake);
    assert_eq!(att.network, "jail", "{att:?}");
    assert_eq!(att.quarantined_from.as_deref(), Some("blue"), "{att:?}");
    assert_eq!(att.port.as_deref(), Some(port.as_str()), "{att:?}");
    assert_eq!(att.interface.as_deref(), Some("net1"), "{att:?}");
    assert_eq!(att.ips, ["10.40.0.5"], "{att:?}");

    // More passes of both, in any order: it stays so, and the request counts the pod moved.
    for _ in 0..2 {
        pod_pass(&fake, &ctx, "default", "web-1").await;
        qpr_pass(&fake, &ctx, "default", "q").await;
    }
    assert_eq!(the_attachment(&fake), att);
    let q = fake
        .get::<QuarantinePodRequest>(Some("default"), "q")
        .unwrap();
    let st = q.status.unwrap();
    assert_eq!(
        (st.matched_pod_count, st.moved_pod_count),
        (Some(1), Some(1))
    );
    let jail = c.get_network("jail").await.unwrap().unwrap();
    assert_eq!(jail.endpoints, [port]);
    // The request found its pods in the cache (#9): the only pod lists are the cache's own.
    let lists: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c.resource == "pods" && c.verb == "list")
        .map(|c| format!("{:?} {}", c.namespace, c.query))
        .collect();
    assert!(
        lists
            .iter()
            .all(|l| l.starts_with("None labelSelector=l2sm=true")),
        "{lists:?}"
    );
    assert_calls_in_table(&fake);
}

/// #6, quarantine during a Pod reconciler write: between the request's pod list and its
/// annotation write, the Pod reconciler writes the pod (interface, address); the quarantine
/// must not erase them.
#[tokio::test]
async fn quarantine_during_a_pod_write_keeps_the_pod_reconcilers_keys() {
    let (_ctrl, c) = controller_with(&["blue", "jail"]).await;
    let fake = FakeApi::new();
    let ctx = context(&fake, c.clone(), Settings::default());
    let port = quarantine_setup(
        &fake,
        &c,
        json!([{"network": "blue", "port": port_on("w1", 4)}]),
    )
    .await;

    // The concurrent writer: right before the quarantine's first pod write is served, the
    // Pod reconciler's write lands (what Multus reported, added to the attachment).
    let once = Arc::new(AtomicBool::new(false));
    {
        let fake2 = fake.clone();
        let once = once.clone();
        fake.on_request(move |call| {
            if call.verb == "patch"
                && call.resource == "pods"
                && call.name.as_deref() == Some("web-1")
                && !once.swap(true, Ordering::SeqCst)
            {
                let mut p = fake2
                    .get_value("", "pods", Some("default"), "web-1")
                    .unwrap();
                let atts = json!([{"network": "blue", "interface": "net1",
                    "ips": ["10.40.0.5"], "mac": "02:00:00:00:00:01", "port": port_on("w1", 4)}]);
                p["metadata"]["annotations"][STATUS_ANNOTATION] = json!(atts.to_string());
                fake2.seed_value("", "pods", p).unwrap();
            }
        });
    }
    qpr_pass(&fake, &ctx, "default", "q").await;
    assert!(once.load(Ordering::SeqCst), "the concurrent write happened");
    let att = the_attachment(&fake);
    assert_eq!(
        (
            att.network.as_str(),
            att.quarantined_from.as_deref(),
            att.port.as_deref()
        ),
        ("jail", Some("blue"), Some(port.as_str())),
        "{att:?}"
    );
    assert_eq!(att.interface.as_deref(), Some("net1"), "{att:?}");
    assert_eq!(att.ips, ["10.40.0.5"], "{att:?}");
    assert_eq!(att.mac.as_deref(), Some("02:00:00:00:00:01"), "{att:?}");
    // The first write was refused (409), then made against the pod read again.
    let conflicts = fake
        .calls()
        .iter()
        .filter(|c| c.verb == "patch" && c.resource == "pods" && c.code == 409)
        .count();
    assert_eq!(conflicts, 1);
    assert_calls_in_table(&fake);
}

/// #3: a pod asking for a network but holding nothing in the controller (no port, no address
/// yet) never gets the finalizer; once it holds something, it gets the finalizer and the
/// cleanup label together.
#[tokio::test]
async fn pod_gets_the_finalizer_only_with_something_to_clean() {
    let (_ctrl, c) = controller_with(&["blue"]).await;
    let fake = FakeApi::new();
    let ctx = context(&fake, c.clone(), Settings::default());
    fake.seed(&pod(
        "default",
        "p",
        "w1",
        json!({"l2sm": "true"}),
        json!({"l2sm/networks": "blue"}),
    ));
    ctx.set_pod_store(live_cache(&fake).await);
    for _ in 0..3 {
        pod_pass(&fake, &ctx, "default", "p").await;
    }
    let p = stored_pod(&fake, "default", "p");
    assert!(p.finalizers().is_empty(), "{:?}", p.finalizers());
    assert!(!p.labels().contains_key(CLEANUP_LABEL));
    assert_eq!(
        pod_attachments(&p),
        [Attachment {
            network: "blue".into(),
            ..Default::default()
        }]
    );
    // Deleting it is immediate (no finalizer).
    user_deletes::<Pod>(&fake, "default", "p").await;
    assert!(fake.get::<Pod>(Some("default"), "p").is_none());

    // Another pod whose interface Multus reported with an address: finalizer and label.
    fake.seed(&pod(
        "default",
        "q",
        "w1",
        json!({"l2sm": "true"}),
        json!({"l2sm/networks": "blue",
               "k8s.v1.cni.cncf.io/network-status": multus("default", "blue", "10.0.0.7")}),
    ));
    for _ in 0..2 {
        pod_pass(&fake, &ctx, "default", "q").await;
    }
    let q = stored_pod(&fake, "default", "q");
    assert_eq!(q.finalizers(), [FINALIZER.to_string()]);
    assert_eq!(q.labels()[CLEANUP_LABEL], "true");
    assert_calls_in_table(&fake);
}

/// Events recorded about `name` in `ns`.
fn events_about(fake: &FakeApi, ns: &str, name: &str) -> Vec<Event> {
    fake.list::<Event>(Some(ns))
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// #3: the controller is down when a pod is deleted: the cleanup is retried (the pod stays,
/// finalized) until the timeout after the deletion, then the finalizer is released with a
/// Warning Event stored; the pod is gone.
#[tokio::test]
async fn deleted_pod_with_the_controller_down_is_released_after_the_timeout() {
    let fake = FakeApi::new();
    let settings = Settings {
        cleanup_timeout: Duration::from_secs(4),
        ..Settings::default()
    };
    let ctx = context(&fake, unreachable_client(), settings);
    let atts = json!([{"network": "blue", "interface": "net1", "ips": ["10.0.0.7"], "port": port_on("w1", 3)}]);
    let mut p = pod(
        "default",
        "p",
        "w1",
        json!({"l2sm": "true", CLEANUP_LABEL: "true"}),
        json!({"l2sm/networks": "blue", STATUS_ANNOTATION: atts.to_string()}),
    );
    p.metadata.finalizers = Some(vec![FINALIZER.into()]);
    fake.seed(&p);
    user_deletes::<Pod>(&fake, "default", "p").await;
    let deleted = Instant::now();

    // Before the timeout: an error (retried with backoff), the pod stays.
    let stored = Arc::new(stored_pod(&fake, "default", "p"));
    assert!(stored.metadata.deletion_timestamp.is_some());
    let err = reconcile::pod::reconcile_cleanup(stored.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    // Looked at again no later than when the timeout is due: backoff 1 s, 2 s, then not the
    // 4 s of a plain failure.
    assert_eq!(
        reconcile::error_policy(stored.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    reconcile::error_policy(stored.clone(), &err, ctx.clone());
    assert_ne!(
        reconcile::error_policy(stored, &err, ctx.clone()),
        Action::requeue(Duration::from_secs(4))
    );
    assert_eq!(stored_pod(&fake, "default", "p").finalizers(), [FINALIZER]);
    assert!(events_about(&fake, "default", "p").is_empty());

    // After it (deletionTimestamp has whole seconds: a second of margin): released, with a
    // Warning Event.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(deleted.elapsed())).await;
    let stored = Arc::new(stored_pod(&fake, "default", "p"));
    let action = reconcile::pod::reconcile_cleanup(stored, ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    assert!(fake.get::<Pod>(Some("default"), "p").is_none(), "pod gone");
    let events = events_about(&fake, "default", "p");
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.reason.as_deref(), Some("CleanupAbandoned"));
    assert!(
        ev.note
            .as_deref()
            .unwrap_or_default()
            .contains("unreachable"),
        "{ev:?}"
    );
    assert_calls_in_table(&fake);
}

/// #3 for L2Networks: deleted while the controller is down, released after the timeout with a
/// Warning Event; its NAD goes too.
#[tokio::test]
async fn deleted_l2network_with_the_controller_down_is_released_after_the_timeout() {
    let fake = FakeApi::new();
    let settings = Settings {
        cleanup_timeout: Duration::from_secs(4),
        ..Settings::default()
    };
    let ctx = context(&fake, unreachable_client(), settings);
    let mut net = l2network("default", "blue", json!({}), None);
    net.metadata.finalizers = Some(vec![FINALIZER.into()]);
    fake.seed(&net);
    let nad = l2sm_operator::reconcile::l2network::nad("default", "blue", "default");
    fake.seed_value(NAD_GROUP, NADS, nad).unwrap();
    user_deletes::<L2Network>(&fake, "default", "blue").await;
    let deleted = Instant::now();

    let err = reconcile::l2network::reconcile(
        Arc::new(stored_net(&fake, "default", "blue")),
        ctx.clone(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert_eq!(
        stored_net(&fake, "default", "blue").finalizers(),
        [FINALIZER]
    );

    tokio::time::sleep(Duration::from_secs(5).saturating_sub(deleted.elapsed())).await;
    net_pass(&fake, &ctx, "default", "blue").await;
    assert!(fake.get::<L2Network>(Some("default"), "blue").is_none());
    assert!(fake
        .get_value(NAD_GROUP, NADS, Some("default"), "l2sm-blue")
        .is_none());
    let events = events_about(&fake, "default", "blue");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reason.as_deref(), Some("CleanupAbandoned"));
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert_calls_in_table(&fake);
}

/// Waits until `cond` holds on the fake (polling), or panics with `what`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// #3 with the controllers running as `l2sm operator` runs them (watches on the fake): a pod
/// attached to a network gets the finalizer; its `l2sm` label is removed (it leaves the
/// `l2sm=true` watch); deleted, it is still cleaned up (its port leaves the network) and
/// released.
#[tokio::test]
async fn pod_whose_l2sm_label_is_removed_is_still_finalized() {
    label_removed_then_deleted(false).await;
}

/// The same for a pod an earlier version finalized (finalizer, no cleanup label): the
/// operator adds the label with its next status write.
#[tokio::test]
async fn pod_finalized_by_an_earlier_version_is_still_finalized_after_label_removal() {
    label_removed_then_deleted(true).await;
}

async fn label_removed_then_deleted(finalized_before: bool) {
    let (_ctrl, c) = controller_with(&["blue"]).await;
    let port = port_on("w1", 5);
    c.add_port("blue", &port).await.unwrap();
    c.set_port_owner(
        port.parse().unwrap(),
        &PortOwnerRequest {
            pod: Some("default/p".into()),
            attachment: "cni/c5/net1".into(),
            interface: "net1".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let fake = FakeApi::new();
    let ctx = context(&fake, c.clone(), Settings::default());
    fake.seed(&pod(
        "default",
        "p",
        "w1",
        json!({"l2sm": "true"}),
        json!({"l2sm/networks": "blue",
               "k8s.v1.cni.cncf.io/network-status": multus("default", "blue", "10.0.0.8")}),
    ));
    if finalized_before {
        let mut p = stored_pod(&fake, "default", "p");
        p.metadata.finalizers = Some(vec![FINALIZER.into()]);
        fake.seed(&p);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(l2sm_operator::operator::run_controllers(
        fake.client(),
        None,
        ctx,
        stop_rx,
    ));
    eventually("the finalizer and the cleanup label are there", || {
        fake.get::<Pod>(Some("default"), "p").is_some_and(|p| {
            p.finalizers().iter().any(|f| f == FINALIZER) && p.labels().contains_key(CLEANUP_LABEL)
        })
    })
    .await;
    assert_calls_in_table(&fake);
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"l2sm": null}}})),
    )
    .await
    .unwrap();
    fake.clear_calls();
    // Let the `l2sm=true` watch drop it, then delete.
    tokio::time::sleep(Duration::from_millis(300)).await;
    user_deletes::<Pod>(&fake, "default", "p").await;
    eventually("the pod is released", || {
        fake.get::<Pod>(Some("default"), "p").is_none()
    })
    .await;
    let blue = c.get_network("blue").await.unwrap().unwrap();
    assert!(!blue.endpoints.contains(&port), "{blue:?}");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("controllers stopped")
        .unwrap();
    assert_calls_in_table(&fake);
}

fn nad_labels(fake: &FakeApi, ns: &str) -> Option<Value> {
    fake.get_value(NAD_GROUP, NADS, Some(ns), "l2sm-blue")
        .map(|n| n["metadata"]["labels"].clone())
}

/// #10: two L2Networks named blue in ns1 and ns2, with pods in both namespaces: the NADs are
/// owned by both; deleting ns2's keeps the network in the controller and the NADs the pods
/// use (content unchanged); deleting the last one removes them.
#[tokio::test]
async fn same_named_l2networks_in_two_namespaces_do_not_delete_each_others_nads() {
    let (_ctrl, c) = controller_with(&[]).await;
    let fake = FakeApi::new();
    let ctx = context(&fake, c.clone(), Settings::default());
    for ns in ["ns1", "ns2"] {
        fake.seed(&l2network(ns, "blue", json!({}), None));
        fake.seed(&pod(
            ns,
            "p",
            "w1",
            json!({"l2sm": "true"}),
            json!({"l2sm/networks": "blue"}),
        ));
    }
    // Finalizer passes, then applies, ns2's last (on main its label overwrote ns1's).
    for ns in ["ns1", "ns2", "ns1", "ns2"] {
        net_pass(&fake, &ctx, ns, "blue").await;
    }
    let nad1 = fake
        .get_value(NAD_GROUP, NADS, Some("ns1"), "l2sm-blue")
        .expect("NAD in ns1");
    for ns in ["ns1", "ns2"] {
        let labels = nad_labels(&fake, ns).unwrap();
        assert_eq!(labels["owner.l2sm.l2sm.k8s.local/ns1"], "blue", "{labels}");
        assert_eq!(labels["owner.l2sm.l2sm.k8s.local/ns2"], "blue", "{labels}");
    }

    // Delete ns2's blue.
    user_deletes::<L2Network>(&fake, "ns2", "blue").await;
    net_pass(&fake, &ctx, "ns2", "blue").await;
    assert!(fake.get::<L2Network>(Some("ns2"), "blue").is_none());
    // ns1's pods keep their NAD, unchanged but for ns2's owner label; ns2's pod (still asking
    // for blue, which ns1 defines) keeps its NAD too; the network stays in the controller.
    let after = fake
        .get_value(NAD_GROUP, NADS, Some("ns1"), "l2sm-blue")
        .expect("ns1's NAD kept");
    assert_eq!(after["spec"], nad1["spec"]);
    for ns in ["ns1", "ns2"] {
        let labels = nad_labels(&fake, ns).unwrap_or_else(|| panic!("NAD in {ns} kept"));
        assert_eq!(labels["owner.l2sm.l2sm.k8s.local/ns1"], "blue", "{labels}");
        assert!(
            labels.get("owner.l2sm.l2sm.k8s.local/ns2").is_none(),
            "{labels}"
        );
    }
    assert!(c.get_network("blue").await.unwrap().is_some());
    // ns1's next passes change nothing of that.
    net_pass(&fake, &ctx, "ns1", "blue").await;
    assert!(nad_labels(&fake, "ns1").is_some() && nad_labels(&fake, "ns2").is_some());

    // Delete the last blue: the network and both NADs go.
    user_deletes::<L2Network>(&fake, "ns1", "blue").await;
    net_pass(&fake, &ctx, "ns1", "blue").await;
    assert!(fake.get::<L2Network>(Some("ns1"), "blue").is_none());
    assert_eq!(nad_labels(&fake, "ns1"), None);
    assert_eq!(nad_labels(&fake, "ns2"), None);
    assert!(c.get_network("blue").await.unwrap().is_none());
    assert_calls_in_table(&fake);
}

/// #9: given the Pod controller's cache, the L2Network reconcile reads pods from it: no pod
/// LIST call (the pod below exists only in the cache: its namespace gets the NAD anyway).
#[tokio::test]
async fn l2network_reads_pods_from_the_cache() {
    let (_ctrl, c) = controller_with(&[]).await;
    let fake = FakeApi::new();
    let ctx = context(&fake, c, Settings::default());
    let (store, mut writer) = reflector::store::<Pod>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(pod(
        "team-a",
        "p",
        "w1",
        json!({"l2sm": "true"}),
        json!({"l2sm/networks": "blue"}),
    )));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    assert!(ctx.set_pod_store(store));
    fake.seed(&l2network("default", "blue", json!({}), None));
    for _ in 0..3 {
        net_pass(&fake, &ctx, "default", "blue").await;
    }
    let calls = fake.calls();
    let pod_calls: Vec<&Call> = calls.iter().filter(|c| c.resource == "pods").collect();
    assert!(pod_calls.is_empty(), "{pod_calls:?}");
    assert!(fake
        .get_value(NAD_GROUP, NADS, Some("team-a"), "l2sm-blue")
        .is_some());
    assert!(fake
        .get_value(NAD_GROUP, NADS, Some("default"), "l2sm-blue")
        .is_some());
    assert_calls_in_table(&fake);
}

/// #9: given a Node cache, the Overlay reconcile (run on every agent DaemonSet status change)
/// reads node addresses from it: no Node LIST call; the topology has the cached address.
#[tokio::test]
async fn overlay_reads_nodes_from_the_cache() {
    use k8s_openapi::api::core::v1::Node;
    use l2sm_operator::crd::Overlay;
    let fake = FakeApi::new();
    let ctx = context(&fake, unreachable_client(), Settings::default());
    let (store, mut writer) = reflector::store::<Node>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for (name, ip) in [("w1", "10.0.0.1"), ("w2", "10.0.0.2")] {
        writer.apply_watcher_event(&watcher::Event::InitApply(
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
            }))
            .unwrap(),
        ));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    assert!(ctx.set_node_store(store));
    let overlay: Overlay = serde_json::from_value(json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "Overlay",
        "metadata": {"name": "ovl", "namespace": "default"},
        "spec": {
            "provider": {"name": "l2sm-controller", "domain": ["l2sm-controller-service.l2sm-system.svc"]},
            "topology": {"nodes": ["w1", "w2"], "links": [{"endpointA": "w1", "endpointB": "w2"}]},
            "switchTemplate": {"spec": {"containers": [{"name": "l2sm-switch", "image": "alexdecb/talpa:1.3.8"}]}}
        }
    }))
    .unwrap();
    fake.seed(&overlay);
    for _ in 0..2 {
        let o = Arc::new(fake.get::<Overlay>(Some("default"), "ovl").unwrap());
        reconcile::overlay::reconcile(o, ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("overlay: {e}"));
    }
    let calls = fake.calls();
    assert!(
        !calls.iter().any(|c| c.resource == "nodes"),
        "{:?}",
        writes(&calls)
    );
    // The addresses came from the cache (the fake has no Node at all).
    let topologies: Vec<String> = fake
        .list_values("", "configmaps", None)
        .iter()
        .map(|cm| cm["data"].to_string())
        .collect();
    assert!(
        topologies
            .iter()
            .any(|t| t.contains("10.0.0.1") && t.contains("10.0.0.2")),
        "{topologies:?}"
    );
    assert_calls_in_table(&fake);
}

/// Issue #15, `--network-scope namespace`: blue of team-a lists team-c; pods of team-a, team-b
/// (which bypassed the webhook) and team-c ask for it. The NAD goes to team-a and team-c,
/// never to team-b, whatever reconciler runs; with the default scope, team-b gets it too.
#[tokio::test]
async fn scoped_network_writes_no_nad_into_a_namespace_that_may_not_use_it() {
    let (_ctrl, c) = controller_with(&[]).await;
    for (scope, b_gets_it) in [
        (l2sm_operator::scope::NetworkScope::Namespace, false),
        (l2sm_operator::scope::NetworkScope::Global, true),
    ] {
        let fake = FakeApi::new();
        let ctx = context(
            &fake,
            c.clone(),
            Settings {
                network_scope: scope,
                ..Settings::default()
            },
        );
        let mut net = l2network("team-a", "blue", json!({}), None);
        net.metadata.annotations = Some(
            [(
                l2sm_operator::scope::ALLOWED_NAMESPACES_ANNOTATION.to_string(),
                "team-c".to_string(),
            )]
            .into(),
        );
        fake.seed(&net);
        for ns in ["team-a", "team-b", "team-c"] {
            fake.seed(&pod(
                ns,
                "p",
                "w1",
                json!({"l2sm": "true"}),
                json!({"l2sm/networks": "blue"}),
            ));
        }
        assert!(ctx.set_pod_store(live_cache(&fake).await));
        for _ in 0..3 {
            net_pass(&fake, &ctx, "team-a", "blue").await;
        }
        pod_pass(&fake, &ctx, "team-b", "p").await;
        net_pass(&fake, &ctx, "team-a", "blue").await;
        for ns in ["team-a", "team-c"] {
            assert!(
                fake.get_value(NAD_GROUP, NADS, Some(ns), "l2sm-blue")
                    .is_some(),
                "{scope:?}: NAD in {ns}"
            );
        }
        assert_eq!(
            fake.get_value(NAD_GROUP, NADS, Some("team-b"), "l2sm-blue")
                .is_some(),
            b_gets_it,
            "{scope:?}: NAD in team-b"
        );
        if !b_gets_it {
            let into_b: Vec<Call> = fake
                .calls()
                .into_iter()
                .filter(|c| c.resource == NADS && c.namespace.as_deref() == Some("team-b"))
                .collect();
            assert!(into_b.is_empty(), "{into_b:?}");
        }
        assert_calls_in_table(&fake);
    }
    // The network itself exists (team-a's pods use it).
    assert!(c.get_network("blue").await.unwrap().is_some());
}
