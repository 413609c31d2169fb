//! Watches through `kube::Api::watch` and `kube::runtime::watcher`: events from a
//! resourceVersion, label-selector transitions, expiry, and the watcher's LIST+WATCH.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::Api;
use l2sm_kube_fake::FakeApi;
use serde_json::{json, Value};
use std::time::Duration;

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns1", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap()
}

/// The type and object name of a raw watch event.
fn kind(e: WatchEvent<Pod>) -> (String, String) {
    match e {
        WatchEvent::Added(p) => ("ADDED".into(), name(&p)),
        WatchEvent::Modified(p) => ("MODIFIED".into(), name(&p)),
        WatchEvent::Deleted(p) => ("DELETED".into(), name(&p)),
        WatchEvent::Bookmark(b) => ("BOOKMARK".into(), b.metadata.resource_version),
        WatchEvent::Error(e) => ("ERROR".into(), e.code.to_string()),
    }
}

#[tokio::test]
async fn raw_watch_with_label_selector_sees_transitions() {
    let fake = FakeApi::new();
    fake.seed(&pod("before", json!({"l2sm": "true"})));
    let rv = fake.resource_version().to_string();
    let api: Api<Pod> = Api::namespaced(fake.client(), "ns1");
    let wp = WatchParams::default().labels("l2sm=true").timeout(30);
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    let pp = PatchParams::default();
    api.create(&PostParams::default(), &pod("a", json!({"l2sm": "true"})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &pod("other", json!({})))
        .await
        .unwrap();
    api.patch(
        "a",
        &pp,
        &Patch::Merge(json!({"metadata": {"annotations": {"x": "1"}}})),
    )
    .await
    .unwrap();
    // Stops matching: DELETED for this watch.
    api.patch(
        "a",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"l2sm": null}}})),
    )
    .await
    .unwrap();
    // Starts matching: ADDED.
    api.patch(
        "other",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"l2sm": "true"}}})),
    )
    .await
    .unwrap();
    api.delete("other", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let e = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("an event")
            .unwrap()
            .expect("stream open");
        seen.push(kind(e));
    }
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        seen,
        [
            s("ADDED", "a"),
            s("MODIFIED", "a"),
            s("DELETED", "a"),
            s("ADDED", "other"),
            s("DELETED", "other"),
        ]
    );
}

#[tokio::test]
async fn watch_from_version_zero_starts_with_the_current_objects_and_times_out() {
    let fake = FakeApi::new();
    fake.seed(&pod("a", json!({})));
    let api: Api<Pod> = Api::namespaced(fake.client(), "ns1");
    let wp = WatchParams::default().timeout(1);
    let events: Vec<_> = tokio::time::timeout(
        Duration::from_secs(10),
        api.watch(&wp, "0").await.unwrap().collect::<Vec<_>>(),
    )
    .await
    .expect("the server closes the watch at its timeout");
    let kinds: Vec<_> = events.into_iter().map(|e| kind(e.unwrap())).collect();
    assert_eq!(kinds, [("ADDED".to_string(), "a".to_string())]);
}

#[tokio::test]
async fn watch_from_a_forgotten_version_is_expired() {
    let fake = FakeApi::new();
    fake.seed(&pod("a", json!({})));
    let api: Api<Pod> = Api::namespaced(fake.client(), "ns1");
    let first: Vec<_> = api
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .collect()
        .await;
    let kinds: Vec<_> = first.into_iter().map(|e| kind(e.unwrap())).collect();
    assert_eq!(kinds, [("ERROR".to_string(), "410".to_string())]);
}

type Stream = futures::stream::BoxStream<'static, Result<watcher::Event<Pod>, watcher::Error>>;

async fn next(w: &mut Stream) -> watcher::Event<Pod> {
    tokio::time::timeout(Duration::from_secs(5), w.try_next())
        .await
        .expect("a watcher event")
        .unwrap()
        .expect("watcher open")
}

#[tokio::test]
async fn runtime_watcher_sees_apply_and_delete_including_selector_exit() {
    let fake = FakeApi::new();
    fake.seed(&pod("a", json!({"l2sm": "true"})));
    let api: Api<Pod> = Api::namespaced(fake.client(), "ns1");
    let mut w: Stream =
        watcher(api.clone(), watcher::Config::default().labels("l2sm=true")).boxed();
    assert!(matches!(next(&mut w).await, watcher::Event::Init));
    assert!(matches!(next(&mut w).await, watcher::Event::InitApply(p) if name(&p) == "a"));
    assert!(matches!(next(&mut w).await, watcher::Event::InitDone));
    let pp = PatchParams::default();
    api.create(&PostParams::default(), &pod("b", json!({"l2sm": "true"})))
        .await
        .unwrap();
    assert!(matches!(next(&mut w).await, watcher::Event::Apply(p) if name(&p) == "b"));
    api.patch("b", &pp, &Patch::Merge(json!({"spec": {"nodeName": "n1"}})))
        .await
        .unwrap();
    assert!(matches!(next(&mut w).await, watcher::Event::Apply(p)
        if p.spec.as_ref().unwrap().node_name.as_deref() == Some("n1")));
    api.patch(
        "a",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"l2sm": "false"}}})),
    )
    .await
    .unwrap();
    assert!(matches!(next(&mut w).await, watcher::Event::Delete(p) if name(&p) == "a"));
    api.delete("b", &DeleteParams::default()).await.unwrap();
    assert!(matches!(next(&mut w).await, watcher::Event::Delete(p) if name(&p) == "b"));
}
