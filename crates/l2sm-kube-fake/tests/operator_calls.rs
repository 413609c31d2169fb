//! The operator's five controllers (`l2sm_operator::operator::run_controllers`) run against
//! the fake API server (their watchers LIST then WATCH it): every call they make is in the
//! operator's table of API calls (`l2sm_operator::api_calls`), which `deploy/rbac.yaml` is
//! checked against. The L2S-M controller is unreachable here: reconcilers that need it fail
//! and requeue, which is enough to exercise their Kubernetes calls up to that point.

use k8s_openapi::api::core::v1::Pod;
use l2sm_api::{ControllerClient, RetryPolicy};
use l2sm_kube_fake::FakeApi;
use l2sm_operator::api_calls::allows;
use l2sm_operator::crd::{L2Network, NetworkEdgeDevice, Overlay, QuarantinePodRequest};
use l2sm_operator::reconcile::{Context, Settings};
use serde_json::json;
use std::time::{Duration, Instant};

fn obj<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_the_controllers_is_in_the_table() {
    let fake = FakeApi::new();
    fake.seed(&obj::<NetworkEdgeDevice>(json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "NetworkEdgeDevice",
        "metadata": {"name": "ned", "namespace": "default"},
        "spec": {"provider": {"name": "idco", "domain": ["10.0.0.1"]},
                 "nodeConfig": {"nodeName": "n1", "ipAddress": "10.0.0.5"},
                 "neighbors": [{"node": "remote", "domain": "10.1.0.5"}]}
    })));
    fake.seed(&obj::<L2Network>(json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
        "metadata": {"name": "blue", "namespace": "default"},
        "spec": {"type": "vnet"}
    })));
    fake.seed(&obj::<Pod>(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"l2sm": "true"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })));
    fake.register::<Overlay>();
    fake.register::<QuarantinePodRequest>();

    let controller = ControllerClient::new(
        "http://127.0.0.1:9",
        Some(("op".into(), "secret".into())),
        RetryPolicy {
            attempts: 1,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(10),
            timeout: Duration::from_millis(500),
        },
    )
    .unwrap();
    let ctx = Context::new(fake.client(), controller, Settings::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let client = fake.client();
    let task = tokio::spawn(async move {
        l2sm_operator::operator::run_controllers(client, None, ctx, stop_rx).await;
    });

    // The NetworkEdgeDevice reconciler needs no controller: its status shows up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ned: NetworkEdgeDevice = fake.get(Some("default"), "ned").unwrap();
        let net: L2Network = fake.get(Some("default"), "blue").unwrap();
        let has_finalizer = net.metadata.finalizers.is_some_and(|f| !f.is_empty());
        if ned.status.is_some() && has_finalizer {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "controllers did not act: {:#?}",
            fake.calls()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("controllers stop")
        .unwrap();

    let calls = fake.calls();
    let outside: Vec<_> = calls
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
        .map(|c| format!("{} {} {:?}", c.verb, c.resource_path(), c.namespace))
        .collect();
    assert!(
        outside.is_empty(),
        "calls missing from l2sm_operator::api_calls: {outside:?}"
    );
    // The five controllers listed and watched their kinds.
    for resource in [
        "l2networks",
        "overlays",
        "networkedgedevices",
        "quarantinepodrequests",
        "pods",
        "daemonsets",
    ] {
        for verb in ["list", "watch"] {
            assert!(
                calls
                    .iter()
                    .any(|c| c.resource == resource && c.verb == verb),
                "no {verb} of {resource}"
            );
        }
    }
    // The status write went to /status.
    assert!(calls.iter().any(|c| c.resource == "networkedgedevices"
        && c.subresource.as_deref() == Some("status")
        && c.verb == "patch"
        && c.code == 200));
}
