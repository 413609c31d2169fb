//! The fake API server driven through a real `kube::Client` and `kube::Api`: each test checks
//! one kube-apiserver behaviour a reconciler depends on.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use l2sm_kube_fake::FakeApi;
use serde_json::{json, Value};

fn cm(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns1"},
        "data": data,
    }))
    .unwrap()
}

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns1", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other:?}"),
    }
}

fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.reason.clone(),
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test]
async fn create_get_metadata_and_already_exists() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    let c = api
        .create(&PostParams::default(), &cm("a", json!({"k": "v"})))
        .await
        .unwrap();
    let m = &c.metadata;
    assert!(m.uid.is_some());
    assert!(m.creation_timestamp.is_some());
    assert_eq!(m.generation, Some(1));
    let rv1: u64 = m.resource_version.as_ref().unwrap().parse().unwrap();
    let e = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "AlreadyExists");
    assert_eq!(code(e), 409);
    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");
    // Another object: the global counter moves on.
    let b = api
        .create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    let rv2: u64 = b.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    let e = api.get("missing").await.unwrap_err();
    assert_eq!(code(e), 404);
    // generateName.
    let mut g = cm("", json!({}));
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let made = api.create(&PostParams::default(), &g).await.unwrap();
    assert!(made.metadata.name.unwrap().starts_with("gen-"));
}

#[tokio::test]
async fn merge_patch_null_deletes_a_key() {
    let fake = FakeApi::new();
    fake.seed(&cm("a", json!({"keep": "1", "drop": "2"})));
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"drop": null, "new": "3"}})),
    )
    .await
    .unwrap();
    let data = fake
        .get::<ConfigMap>(Some("ns1"), "a")
        .unwrap()
        .data
        .unwrap();
    assert_eq!(data.len(), 2, "{data:?}");
    assert_eq!(data["keep"], "1");
    assert_eq!(data["new"], "3");
}

#[tokio::test]
async fn stale_resource_version_is_a_conflict() {
    let fake = FakeApi::new();
    let seeded = fake.seed(&cm("a", json!({"k": "v"})));
    let stale = seeded.metadata.resource_version.clone().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    // Someone else writes.
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    // Merge patch with the old resourceVersion: 409, nothing changed.
    let e = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": stale}, "data": {"k": "x"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), 409);
    // PUT with the old object: 409.
    let e = api
        .replace("a", &PostParams::default(), &seeded)
        .await
        .unwrap_err();
    assert_eq!(code(e), 409);
    assert_eq!(
        fake.get::<ConfigMap>(Some("ns1"), "a")
            .unwrap()
            .data
            .unwrap()["k"],
        "w"
    );
    // With the current version it goes through.
    let cur = api.get("a").await.unwrap();
    let mut next = cur.clone();
    next.data = Some([("k".to_string(), "y".to_string())].into());
    api.replace("a", &PostParams::default(), &next)
        .await
        .unwrap();
}

#[tokio::test]
async fn json_patch_test_failure_is_422_and_changes_nothing() {
    let fake = FakeApi::new();
    fake.seed(&cm("a", json!({"k": "v"})));
    let rv = fake.resource_version();
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    let p: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "other"},
        {"op": "replace", "path": "/data/k", "value": "x"},
    ]))
    .unwrap();
    let e = api
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(p))
        .await
        .unwrap_err();
    assert_eq!(code(e), 422);
    assert_eq!(fake.resource_version(), rv);
    let p: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "replace", "path": "/data/k", "value": "x"},
    ]))
    .unwrap();
    api.patch("a", &PatchParams::default(), &Patch::<()>::Json(p))
        .await
        .unwrap();
    assert_eq!(
        fake.get::<ConfigMap>(Some("ns1"), "a")
            .unwrap()
            .data
            .unwrap()["k"],
        "x"
    );
}

#[tokio::test]
async fn no_op_write_keeps_the_resource_version() {
    let fake = FakeApi::new();
    fake.seed(&cm("a", json!({"k": "v"})));
    let rv = fake.resource_version();
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    assert_eq!(fake.resource_version(), rv);
}

#[tokio::test]
async fn status_subresource_and_main_resource_are_separate() {
    let fake = FakeApi::new();
    let mut p = pod("p", json!({}));
    p.status = Some(serde_json::from_value(json!({"phase": "Running"})).unwrap());
    fake.seed(&p);
    let api: Api<Pod> = Api::namespaced(fake.client(), "ns1");
    // A main write that tries to change status: status stays, spec changes, generation bumps.
    api.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Failed"}})),
    )
    .await
    .unwrap();
    let got = fake.get::<Pod>(Some("ns1"), "p").unwrap();
    assert_eq!(
        got.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert_eq!(got.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    assert_eq!(got.metadata.generation, Some(2));
    // A /status write that tries to change spec: spec stays, generation stays.
    api.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"nodeName": "n2"}, "status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    let got = fake.get::<Pod>(Some("ns1"), "p").unwrap();
    assert_eq!(
        got.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    assert_eq!(got.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    assert_eq!(got.metadata.generation, Some(2));
    // Create drops status (pods start Pending).
    let mut q = pod("q", json!({}));
    q.status = Some(serde_json::from_value(json!({"phase": "Running"})).unwrap());
    let made = api.create(&PostParams::default(), &q).await.unwrap();
    assert_eq!(made.status.unwrap().phase.as_deref(), Some("Pending"));
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let fake = FakeApi::new();
    let mut c = cm("a", json!({}));
    c.metadata.finalizers = Some(vec!["l2sm/cleanup".into()]);
    fake.seed(&c);
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let held = fake
        .get::<ConfigMap>(Some("ns1"), "a")
        .expect("held by its finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());
    // Adding a finalizer now is refused.
    let e = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["l2sm/cleanup", "other/x"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), 422);
    // Removing the last finalizer removes the object.
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(fake.get::<ConfigMap>(Some("ns1"), "a").is_none());
    // Without finalizers DELETE removes at once.
    fake.seed(&cm("b", json!({})));
    api.delete("b", &DeleteParams::default()).await.unwrap();
    assert!(fake.get::<ConfigMap>(Some("ns1"), "b").is_none());
}

#[tokio::test]
async fn list_with_label_and_field_selectors() {
    let fake = FakeApi::new();
    fake.seed(&pod("a", json!({"l2sm": "true", "tier": "web"})));
    fake.seed(&pod("b", json!({"l2sm": "true", "tier": "db"})));
    fake.seed(&pod("c", json!({"tier": "web"})));
    let mut other = pod("d", json!({"l2sm": "true"}));
    other.metadata.namespace = Some("ns2".into());
    fake.seed(&other);
    let all: Api<Pod> = Api::all(fake.client());
    let ns1: Api<Pod> = Api::namespaced(fake.client(), "ns1");
    let names = |l: kube::core::ObjectList<Pod>| {
        l.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    let q = |s: &str| ListParams::default().labels(s);
    assert_eq!(
        names(all.list(&q("l2sm=true")).await.unwrap()),
        ["a", "b", "d"]
    );
    assert_eq!(names(ns1.list(&q("l2sm==true")).await.unwrap()), ["a", "b"]);
    assert_eq!(names(ns1.list(&q("tier!=web")).await.unwrap()), ["b"]);
    assert_eq!(names(ns1.list(&q("!l2sm")).await.unwrap()), ["c"]);
    assert_eq!(
        names(ns1.list(&q("l2sm,tier in (db, x)")).await.unwrap()),
        ["b"]
    );
    assert_eq!(
        names(ns1.list(&q("tier notin (db)")).await.unwrap()),
        ["a", "c"]
    );
    let f = ListParams::default().fields("metadata.name=c");
    assert_eq!(names(ns1.list(&f).await.unwrap()), ["c"]);
    let list = ns1.list(&ListParams::default()).await.unwrap();
    assert!(list.metadata.resource_version.is_some());
    let e = ns1.list(&q("a in (")).await.unwrap_err();
    assert_eq!(code(e), 400);
    // Pagination.
    let page = ns1.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let cont = page.metadata.continue_.clone().unwrap();
    let rest = ns1
        .list(&ListParams::default().limit(2).continue_token(&cont))
        .await
        .unwrap();
    assert_eq!(names(rest), ["c"]);
}

#[tokio::test]
async fn injected_failure_then_success_and_call_log() {
    let fake = FakeApi::new();
    fake.seed(&cm("a", json!({})));
    fake.fail_next("patch", "configmaps", 500);
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    let pp = PatchParams::apply("me");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "1"}});
    let e = api.patch("a", &pp, &Patch::Apply(&body)).await.unwrap_err();
    assert_eq!(code(e), 500);
    api.patch("a", &pp, &Patch::Apply(&body)).await.unwrap();
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].code, 500);
    assert_eq!(calls[1].code, 200);
    assert_eq!(calls[1].verb, "patch");
    assert_eq!(calls[1].resource, "configmaps");
    assert_eq!(calls[1].namespace.as_deref(), Some("ns1"));
    assert_eq!(calls[1].field_manager.as_deref(), Some("me"));
    assert_eq!(
        calls[1].patch_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
}

#[tokio::test]
async fn json_patch_test_of_null_passes_on_a_missing_path_as_kube_apiserver() {
    // What kube-rs's finalizer helper sends to add the first finalizer.
    let fake = FakeApi::new();
    fake.seed(&cm("a", json!({})));
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    let add: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["l2sm/x"]},
    ]))
    .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::<()>::Json(add.clone()),
    )
    .await
    .unwrap();
    let got = fake.get::<ConfigMap>(Some("ns1"), "a").unwrap();
    assert_eq!(got.metadata.finalizers.unwrap(), ["l2sm/x"]);
    // Now present: the same test fails.
    let e = api
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(add))
        .await
        .unwrap_err();
    assert_eq!(code(e), 422);
}

#[tokio::test]
async fn a_hook_can_write_concurrently_and_the_stale_write_conflicts() {
    let fake = FakeApi::new();
    fake.seed(&pod("p", json!({})));
    let api: Api<Pod> = Api::namespaced(fake.client(), "ns1");
    let read = api.get("p").await.unwrap();
    let rv = read.metadata.resource_version.clone().unwrap();
    // Another writer changes the pod just before our patch is served.
    let other = fake.clone();
    let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fired.clone();
    fake.on_request(move |call| {
        if call.verb == "patch" && !f.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut v = other.get_value("", "pods", Some("ns1"), "p").unwrap();
            v["metadata"]["annotations"] = json!({"l2sm/status": "theirs"});
            other.seed_value("", "pods", v).unwrap();
        }
    });
    let e = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"resourceVersion": rv, "annotations": {"l2sm/status": "mine"}}
            })),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), 409);
    let got = fake.get::<Pod>(Some("ns1"), "p").unwrap();
    assert_eq!(got.metadata.annotations.unwrap()["l2sm/status"], "theirs");
    assert_eq!(fake.calls().last().unwrap().code, 409);
}

#[tokio::test]
async fn metadata_only_answers_as_partial_object_metadata() {
    use l2sm_operator::crd::L2Network;
    use l2sm_operator::webhook::{KubeCatalog, NetworkCatalog};
    let fake = FakeApi::new();
    for ns in ["ns1", "ns2"] {
        fake.seed(
            &serde_json::from_value::<L2Network>(json!({
                "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
                "metadata": {"name": "blue", "namespace": ns, "labels": {"a": "b"}},
                "spec": {"type": "vnet"}
            }))
            .unwrap(),
        );
    }
    let api: Api<L2Network> = Api::all(fake.client());
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    assert_eq!(list.items[0].metadata.labels.as_ref().unwrap()["a"], "b");
    // The raw answer is a PartialObjectMetadataList without specs.
    let req = http::Request::builder()
        .uri("/apis/l2sm.l2sm.k8s.local/v1/l2networks")
        .header(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = fake.handle(req).await;
    let body = http_body_util_collect(resp).await;
    assert_eq!(body["kind"], "PartialObjectMetadataList");
    assert!(body["items"][0].get("spec").is_none(), "{body}");
    // The webhook's catalog finds the pod's own namespace's network through it.
    let found = KubeCatalog::new(fake.client())
        .find("blue", "ns2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.namespace, "ns2");
}

async fn http_body_util_collect(resp: http::Response<l2sm_kube_fake::FakeBody>) -> Value {
    use http_body::Body as _;
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Ok(data) = frame.unwrap().into_data() {
            out.extend_from_slice(&data);
        }
    }
    serde_json::from_slice(&out).unwrap()
}

#[tokio::test]
async fn custom_resources_refuse_unconditional_updates() {
    use l2sm_operator::crd::L2Network;
    let fake = FakeApi::new();
    let net = fake.seed(
        &serde_json::from_value::<L2Network>(json!({
            "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
            "metadata": {"name": "blue", "namespace": "ns1"},
            "spec": {"type": "vnet"}
        }))
        .unwrap(),
    );
    let api: Api<L2Network> = Api::namespaced(fake.client(), "ns1");
    let mut unconditional = net.clone();
    unconditional.metadata.resource_version = None;
    let e = api
        .replace("blue", &PostParams::default(), &unconditional)
        .await
        .unwrap_err();
    assert_eq!(code(e), 422);
    api.replace("blue", &PostParams::default(), &net)
        .await
        .unwrap();
    // A built-in kind allows it.
    let c = fake.seed(&cm("a", json!({})));
    let mut u = c.clone();
    u.metadata.resource_version = None;
    u.data = Some([("k".to_string(), "v".to_string())].into());
    Api::<ConfigMap>::namespaced(fake.client(), "ns1")
        .replace("a", &PostParams::default(), &u)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_authorizer_refuses_with_403_and_changes_nothing() {
    let fake = FakeApi::new();
    fake.seed(&cm("a", json!({"k": "v"})));
    // RBAC of a client that may patch ConfigMaps in ns1 but never create them.
    fake.authorize(|c| {
        c.resource == "configmaps" && c.namespace.as_deref() == Some("ns1") && c.verb == "patch"
    });
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    let e = api.get("a").await.unwrap_err();
    assert_eq!(reason(&e), "Forbidden");
    assert_eq!(code(e), 403);
    let e = api.delete("a", &DeleteParams::default()).await.unwrap_err();
    assert_eq!(code(e), 403);
    assert!(fake.get::<ConfigMap>(Some("ns1"), "a").is_some());
    // A merge patch of an existing object is a patch: allowed.
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    // A server-side apply that would create is also authorized as a create: refused.
    let params = PatchParams::apply("me").force();
    let e = api
        .patch("b", &params, &Patch::Apply(cm("b", json!({}))))
        .await
        .unwrap_err();
    assert_eq!(code(e), 403);
    assert!(fake.get::<ConfigMap>(Some("ns1"), "b").is_none());
    // Other namespaces are out of scope.
    let other: Api<ConfigMap> = Api::namespaced(fake.client(), "ns2");
    let e = other
        .patch("a", &PatchParams::default(), &Patch::Merge(json!({})))
        .await
        .unwrap_err();
    assert_eq!(code(e), 403);
    // Refusals are recorded with their code.
    assert!(fake.calls().iter().filter(|c| c.code == 403).count() >= 4);
    // The admin client (the test acting as the user) is not subject to it.
    let admin: Api<ConfigMap> = Api::namespaced(fake.admin_client(), "ns1");
    admin.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(fake.get::<ConfigMap>(Some("ns1"), "a").is_none());
}
