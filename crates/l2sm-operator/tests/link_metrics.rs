//! `Overlay.status.linkMetrics` from our controller's link health (`GET /api/v1/links` of a
//! real `l2sm controller` with a topology), through the stateful fake Kubernetes API: written
//! with `spec.monitor` only, one entry per link direction of the overlay's nodes, by a
//! server-side apply on `/status`, not again before the interval (the status write's own
//! watch event does not start a loop), removed with `spec.monitor`; a controller that cannot
//! be asked keeps what is stored.

use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Patch, PatchParams};
use kube::Api;
use l2sm_api::{ControllerClient, RetryPolicy};
use l2sm_kube_fake::FakeApi;
use l2sm_operator::crd::{LinkStatus, Overlay};
use l2sm_operator::reconcile::{self, Context, Settings};
use l2sm_test_support::controller::ControllerProcess;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const HOME: &str = "l2sm-system";

fn settings() -> Settings {
    Settings {
        namespace: HOME.into(),
        credentials_secret: Some("l2sm-controller-credentials".into()),
        agent_api_certificate: false,
        ..Settings::default()
    }
}

fn cluster(controller: ControllerClient) -> (FakeApi, Arc<Context>) {
    let fake = FakeApi::new();
    fake.authorize(|c| {
        l2sm_operator::api_calls::allows(
            &c.group,
            &c.resource,
            c.subresource.as_deref(),
            &c.verb,
            c.namespace.as_deref(),
            c.name.as_deref(),
            HOME,
        )
    });
    fake.seed(
        &serde_json::from_value::<Secret>(json!({
            "metadata": {"name": "l2sm-controller-credentials", "namespace": HOME},
            "type": "kubernetes.io/basic-auth",
            "data": {"username": "bDJzbQ==", "password": "cHc="}
        }))
        .unwrap(),
    );
    for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
        fake.seed(
            &serde_json::from_value::<Node>(json!({
                "metadata": {"name": n},
                "status": {"addresses": [{"type": "InternalIP", "address": format!("10.0.0.{}", i + 1)}]}
            }))
            .unwrap(),
        );
    }
    let ctx = Context::new(fake.client(), controller, settings());
    (fake, ctx)
}

fn overlay(nodes: &[&str], monitor: bool) -> Overlay {
    let mut v = json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "Overlay",
        "metadata": {"name": "ovl", "namespace": "default"},
        "spec": {
            "provider": {"name": "l2sm-controller", "domain": ["l2sm-controller-service.l2sm-system.svc"], "ofPort": "6633"},
            "topology": {"nodes": nodes},
            "interfaceNumber": 4
        }
    });
    if monitor {
        v["spec"]["monitor"] = json!({"metrics": [{"name": "rtt", "interval": 0}]});
    }
    serde_json::from_value(v).unwrap()
}

async fn pass(fake: &FakeApi, ctx: &Arc<Context>) -> Overlay {
    let o = fake.get::<Overlay>(Some("default"), "ovl").unwrap();
    reconcile::overlay::reconcile(Arc::new(o), ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("overlay: {e:?}"));
    fake.get::<Overlay>(Some("default"), "ovl").unwrap()
}

fn metrics(o: &Overlay) -> Option<Vec<LinkStatus>> {
    o.status.as_ref().and_then(|s| s.link_metrics.clone())
}

fn client(ctrl: &ControllerProcess) -> ControllerClient {
    ControllerClient::new(
        &ctrl.url(),
        Some((ctrl.user.clone(), ctrl.password.clone())),
        RetryPolicy::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn overlay_link_metrics_come_from_the_controller_at_the_monitor_interval() {
    // The controller knows a line n1 - n2 - n3 and a link to a node of no overlay (n4).
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("topology.json");
    std::fs::write(
        &topo,
        json!({"nodes": ["n1", "n2", "n3", "n4"], "links": [
            {"endpointA": "n1", "endpointB": "n2"},
            {"endpointA": "n2", "endpointB": "n3"},
            {"endpointA": "n3", "endpointB": "n4"},
        ], "addresses": {"n1": "10.0.0.1", "n2": "10.0.0.2", "n3": "10.0.0.3", "n4": "10.0.0.4"}})
        .to_string(),
    )
    .unwrap();
    let ctrl = ControllerProcess::start_args(&["--topology", topo.to_str().unwrap()]);
    let (fake, ctx) = cluster(client(&ctrl));

    // Without spec.monitor: no linkMetrics.
    fake.seed(&overlay(&["n1", "n2", "n3"], false));
    let mut o = pass(&fake, &ctx).await;
    for _ in 0..2 {
        o = pass(&fake, &ctx).await;
    }
    assert!(o.status.is_some());
    assert_eq!(metrics(&o), None);

    // With it: each direction of the overlay's links; no switch is connected, so Down.
    let api: Api<Overlay> = Api::namespaced(fake.admin_client(), "default");
    api.patch(
        "ovl",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"monitor": {"metrics": [{"name": "rtt", "interval": 0}]}}})),
    )
    .await
    .unwrap();
    fake.clear_calls();
    let o = pass(&fake, &ctx).await;
    let m = metrics(&o).expect("linkMetrics written");
    let pairs: Vec<(String, String, String)> = m
        .iter()
        .map(|l| {
            (
                l.source_node.clone(),
                l.target_node.clone(),
                l.status.clone(),
            )
        })
        .collect();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string(), "Down".to_string());
    assert_eq!(
        pairs,
        [s("n1", "n2"), s("n2", "n1"), s("n2", "n3"), s("n3", "n2")]
    );
    // Written by a server-side apply on /status.
    let writes: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| {
            c.resource == "overlays"
                && c.verb == "patch"
                && c.subresource.as_deref() == Some("status")
        })
        .collect();
    assert!(!writes.is_empty());
    assert!(
        writes
            .iter()
            .all(|c| c.patch_type.as_deref() == Some("application/apply-patch+yaml")),
        "{writes:?}"
    );
    let stored: serde_json::Value = fake
        .get_value("l2sm.l2sm.k8s.local", "overlays", Some("default"), "ovl")
        .unwrap();
    assert_eq!(stored["status"]["linkMetrics"][0]["sourceNode"], "n1");

    // The pass the status write wakes, right after: not due, nothing written.
    fake.clear_calls();
    pass(&fake, &ctx).await;
    assert!(
        !fake
            .calls()
            .iter()
            .any(|c| c.subresource.as_deref() == Some("status")),
        "{:?}",
        fake.calls()
    );

    // After the interval (minimum 10 s), and with the controller gone: the stored entries stay.
    drop(ctrl);
    tokio::time::sleep(reconcile::link_metrics::MIN_INTERVAL + Duration::from_millis(200)).await;
    let o2 = pass(&fake, &ctx).await;
    assert_eq!(metrics(&o2), Some(m));

    // spec.monitor removed: linkMetrics removed.
    api.patch(
        "ovl",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"monitor": null}})),
    )
    .await
    .unwrap();
    let o3 = pass(&fake, &ctx).await;
    assert_eq!(metrics(&o3), None);
}

/// A NetworkEdgeDevice's `linkMetrics` come from its provider controller (an L2S-M
/// controller's `GET /api/v1/links`), for its links to its neighbours only.
#[tokio::test]
async fn edge_link_metrics_come_from_the_provider_controller() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("topology.json");
    std::fs::write(
        &topo,
        json!({"nodes": ["n1", "remote0", "remote1", "other"], "links": [
            {"endpointA": "n1", "endpointB": "remote0"},
            {"endpointA": "remote0", "endpointB": "remote1"},
            {"endpointA": "n1", "endpointB": "other"},
        ], "addresses": {"n1": "10.0.0.1", "remote0": "10.0.0.2", "remote1": "10.0.0.3", "other": "10.0.0.4"}})
        .to_string(),
    )
    .unwrap();
    let provider = ControllerProcess::start_args(&["--topology", topo.to_str().unwrap()]);
    let port = provider
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let fake = FakeApi::new();
    let settings = Settings {
        namespace: HOME.into(),
        provider_credentials: Some(l2sm_operator::provider::Credentials {
            user: provider.user.clone(),
            password: provider.password.clone(),
        }),
        provider_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    let unused = ControllerClient::new("http://127.0.0.1:1", None, RetryPolicy::once()).unwrap();
    let ctx = Context::new(fake.client(), unused, settings);
    let ned: l2sm_operator::crd::NetworkEdgeDevice = serde_json::from_value(json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "NetworkEdgeDevice",
        "metadata": {"name": "edge1", "namespace": "default"},
        "spec": {
            "provider": {"name": "prov", "domain": ["127.0.0.1"], "sdnPort": port},
            "nodeConfig": {"nodeName": "n1", "ipAddress": "10.0.0.5"},
            "neighbors": [{"node": "remote0", "domain": "10.1.0.5"}],
            "monitor": {"metrics": [{"name": "rtt", "interval": 1}], "ipCIDR": "10.200.0.1/24"},
        },
    }))
    .unwrap();
    fake.seed(&ned);
    let pass = || async {
        let n = fake
            .get::<l2sm_operator::crd::NetworkEdgeDevice>(Some("default"), "edge1")
            .unwrap();
        reconcile::nedevice::reconcile(Arc::new(n), ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("NED: {e}"))
    };
    pass().await; // finalizer
    let action = pass().await;
    // Requeued at most at the monitor interval (1 minute).
    assert!(
        action == kube::runtime::controller::Action::requeue(Duration::from_secs(60))
            || action
                == kube::runtime::controller::Action::requeue(
                    reconcile::nedevice::EDGE_RECHECK.min(Duration::from_secs(60))
                ),
        "{action:?}"
    );
    let stored = fake
        .get::<l2sm_operator::crd::NetworkEdgeDevice>(Some("default"), "edge1")
        .unwrap();
    let m = stored.status.unwrap().link_metrics.expect("linkMetrics");
    let pairs: Vec<(String, String)> = m
        .iter()
        .map(|l| (l.source_node.clone(), l.target_node.clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("n1".to_string(), "remote0".to_string()),
            ("remote0".to_string(), "n1".to_string())
        ]
    );
}
