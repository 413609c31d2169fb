//! Server-side apply through `kube::Api`: field ownership per manager, removal of fields a
//! manager stopped applying, conflicts, force, and apply of `/status`.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::Api;
use l2sm_kube_fake::FakeApi;
use l2sm_operator::crd::L2Network;
use serde_json::{json, Value};

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other:?}"),
    }
}

fn cm_apply(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": data})
}

#[tokio::test]
async fn apply_creates_then_removes_what_the_manager_stopped_applying_only() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    let first = api
        .patch(
            "a",
            &PatchParams::apply("op"),
            &Patch::Apply(cm_apply(json!({"mine": "1", "gone": "2"}))),
        )
        .await
        .unwrap();
    assert!(first.metadata.uid.is_some(), "apply creates");
    // Another manager applies its own key.
    api.patch(
        "a",
        &PatchParams::apply("other"),
        &Patch::Apply(cm_apply(json!({"theirs": "3"}))),
    )
    .await
    .unwrap();
    // `op` stops applying `gone`: removed; `theirs` stays.
    api.patch(
        "a",
        &PatchParams::apply("op"),
        &Patch::Apply(cm_apply(json!({"mine": "1"}))),
    )
    .await
    .unwrap();
    let data = fake
        .get::<ConfigMap>(Some("ns1"), "a")
        .unwrap()
        .data
        .unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["mine", "theirs"]);
    // A field both apply with the same value is shared: dropping it from one keeps it.
    api.patch(
        "a",
        &PatchParams::apply("other"),
        &Patch::Apply(cm_apply(json!({"theirs": "3", "mine": "1"}))),
    )
    .await
    .unwrap();
    api.patch(
        "a",
        &PatchParams::apply("op"),
        &Patch::Apply(cm_apply(json!({}))),
    )
    .await
    .unwrap();
    let data = fake
        .get::<ConfigMap>(Some("ns1"), "a")
        .unwrap()
        .data
        .unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["mine", "theirs"]);
    // managedFields are rendered.
    let got = api.get("a").await.unwrap();
    let managers: Vec<_> = got
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"other".to_string()), "{managers:?}");
}

#[tokio::test]
async fn apply_conflict_without_force_is_409_and_force_takes_over() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    api.patch(
        "a",
        &PatchParams::apply("first"),
        &Patch::Apply(cm_apply(json!({"k": "1"}))),
    )
    .await
    .unwrap();
    let rv = fake.resource_version();
    let e = api
        .patch(
            "a",
            &PatchParams::apply("second"),
            &Patch::Apply(cm_apply(json!({"k": "2"}))),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), 409);
    assert_eq!(fake.resource_version(), rv, "a conflict changes nothing");
    api.patch(
        "a",
        &PatchParams::apply("second").force(),
        &Patch::Apply(cm_apply(json!({"k": "2"}))),
    )
    .await
    .unwrap();
    // `first` lost the field: its next apply without it does not remove it.
    api.patch(
        "a",
        &PatchParams::apply("first"),
        &Patch::Apply(cm_apply(json!({}))),
    )
    .await
    .unwrap();
    let data = fake
        .get::<ConfigMap>(Some("ns1"), "a")
        .unwrap()
        .data
        .unwrap();
    assert_eq!(data["k"], "2");
    // A merge patch (an update manager) also owns what it wrote: applying another value
    // conflicts.
    api.patch(
        "a",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"data": {"e": "1"}})),
    )
    .await
    .unwrap();
    let e = api
        .patch(
            "a",
            &PatchParams::apply("second"),
            &Patch::Apply(cm_apply(json!({"k": "2", "e": "2"}))),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), 409);
}

fn l2n_status(status: Value) -> Value {
    json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
        "metadata": {"name": "blue"},
        "status": status,
    })
}

#[tokio::test]
async fn apply_of_status_removes_dropped_keys_and_never_touches_spec() {
    let fake = FakeApi::new();
    let net: L2Network = serde_json::from_value(json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
        "metadata": {"name": "blue", "namespace": "ns1"},
        "spec": {"type": "vnet", "networkCIDR": "10.0.0.0/24"},
    }))
    .unwrap();
    fake.seed(&net);
    let api: Api<L2Network> = Api::namespaced(fake.client(), "ns1");
    let pp = PatchParams::apply("l2sm-operator").force();
    api.patch_status(
        "blue",
        &pp,
        &Patch::Apply(l2n_status(json!({
            "connectedPodCount": 1,
            "lastAssignedIP": "10.0.0.2",
            "assignedIPs": {"10.0.0.2": "p1"},
            "internalConnectivity": "Available",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Stale", "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
        }))),
    )
    .await
    .unwrap();
    let gen = fake
        .get::<L2Network>(Some("ns1"), "blue")
        .unwrap()
        .metadata
        .generation;
    // Next pass: no address, no lastAssignedIP, one condition.
    api.patch_status(
        "blue",
        &pp,
        &Patch::Apply(l2n_status(json!({
            "connectedPodCount": 0,
            "internalConnectivity": "Available",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
        }))),
    )
    .await
    .unwrap();
    let got = fake
        .get_value("l2sm.l2sm.k8s.local", "l2networks", Some("ns1"), "blue")
        .unwrap();
    let st = &got["status"];
    assert!(st.get("lastAssignedIP").is_none(), "{st}");
    assert!(st.get("assignedIPs").is_none(), "{st}");
    assert_eq!(st["conditions"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(got["spec"]["networkCIDR"], "10.0.0.0/24");
    assert_eq!(got["metadata"]["generation"].as_i64(), gen);
    // Apply to the main resource ignores status.
    let e = api
        .patch(
            "blue",
            &PatchParams::apply("l2sm-operator"),
            &Patch::Apply(json!({
                "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
                "metadata": {"name": "blue"},
                "spec": {"type": "vnet", "networkCIDR": "10.0.0.0/24"},
                "status": {"connectedPodCount": 7},
            })),
        )
        .await;
    // The seeded spec is owned by the seed manager with the same values: no conflict.
    e.unwrap();
    let got = fake
        .get_value("l2sm.l2sm.k8s.local", "l2networks", Some("ns1"), "blue")
        .unwrap();
    assert_eq!(got["status"]["connectedPodCount"], 0);
    // Apply to /status of a missing object: 404.
    let e = api
        .patch_status(
            "red",
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
                "metadata": {"name": "red"}, "status": {},
            })),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), 404);
}

#[tokio::test]
async fn list_maps_merge_per_key_and_atomic_lists_are_replaced() {
    use k8s_openapi::api::core::v1::Pod;
    let fake = FakeApi::new();
    let api: Api<Pod> = Api::namespaced(fake.client(), "ns1");
    let apply = |containers: Value, args: Value| {
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": containers, "tolerations": args},
        })
    };
    api.patch(
        "p",
        &PatchParams::apply("a"),
        &Patch::Apply(apply(
            json!([{"name": "a", "image": "x"}]),
            json!([{"key": "k1", "operator": "Exists"}]),
        )),
    )
    .await
    .unwrap();
    // Another manager adds its own container (merged by name) and takes the atomic list.
    api.patch(
        "p",
        &PatchParams::apply("b").force(),
        &Patch::Apply(apply(
            json!([{"name": "b", "image": "y"}]),
            json!([{"key": "k2", "operator": "Exists"}]),
        )),
    )
    .await
    .unwrap();
    let spec = fake.get_value("", "pods", Some("ns1"), "p").unwrap()["spec"].clone();
    let names: Vec<_> = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        spec["tolerations"],
        json!([{"key": "k2", "operator": "Exists"}])
    );
    // `a` stops applying its container: only `b`'s stays.
    api.patch(
        "p",
        &PatchParams::apply("a"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})),
    )
    .await
    .unwrap();
    let spec = fake.get_value("", "pods", Some("ns1"), "p").unwrap()["spec"].clone();
    assert_eq!(spec["containers"], json!([{"name": "b", "image": "y"}]));
}

#[tokio::test]
async fn applying_an_object_read_back_with_managed_fields_is_refused() {
    let fake = FakeApi::new();
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns1");
    api.patch(
        "a",
        &PatchParams::apply("op"),
        &Patch::Apply(cm_apply(json!({"k": "1"}))),
    )
    .await
    .unwrap();
    let read = api.get("a").await.unwrap();
    assert!(read.metadata.managed_fields.is_some());
    let e = api
        .patch("a", &PatchParams::apply("op"), &Patch::Apply(&read))
        .await
        .unwrap_err();
    assert_eq!(code(e), 400);
}
