//! The Overlay reconciler against the stateful fake API server (`l2sm-kube-fake`): several
//! passes, then the stored objects are asserted (issue #13, defects 1, 7 and 12).
//!
//! - An Overlay in a user namespace gets its agent DaemonSet and topology ConfigMap in the
//!   operator's namespace only, where the credentials Secret its pods read exists.
//! - Same-named Overlays of two namespaces do not collide; deleting one removes its objects
//!   and leaves the other's.
//! - Why agents do not run (a pod waiting with `CreateContainerConfigError`, pods the
//!   DaemonSet could not create) shows in the Overlay's `AgentsReady` condition.
//! - The init container installs the CNI plugin into the configured host directory.
//! - The controller watches the agent DaemonSets by label and maps them back to the Overlay.
//! - Issue #15: a `switchTemplate` that could run code as root on the nodes (initContainers, a
//!   foreign image, a hostPath volume, a command) is refused with `TemplateAccepted=False` and
//!   no agent object is written; an allow-listed image is accepted; an accepted Overlay edited
//!   to a refused template keeps its DaemonSet as it was.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DeleteParams};
use kube::ResourceExt;
use l2sm_api::{ControllerClient, RetryPolicy};
use l2sm_kube_fake::FakeApi;
use l2sm_operator::crd::{Overlay, FINALIZER};
use l2sm_operator::reconcile::overlay::{
    config_map_name, daemon_set_name, overlay_labels, CNI_BIN_MOUNT, CONDITION_AGENTS,
    INSTALL_CNI_CONTAINER,
};
use l2sm_operator::reconcile::{self, Context, Settings};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const HOME: &str = "l2sm-system";
const CNI_DIR: &str = "/var/lib/rancher/k3s/data/current/bin";

fn controller() -> ControllerClient {
    // The Overlay reconciler never calls the controller.
    ControllerClient::new(
        &format!("http://127.0.0.1:{}", l2sm_test_support::free_port()),
        None,
        RetryPolicy {
            attempts: 1,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
        },
    )
    .unwrap()
}

fn settings() -> Settings {
    Settings {
        namespace: HOME.into(),
        cni_bin_dir: CNI_DIR.into(),
        // The Basic-credential mode (`--agent-api-auth credentials`): the agents read the
        // Secret. The default (node certificates) is covered by reconcile::overlay's tests.
        credentials_secret: Some("l2sm-controller-credentials".into()),
        agent_api_certificate: false,
        ..Settings::default()
    }
}

/// A fake cluster with the operator's Secret and nodes w1..w3.
fn cluster() -> (FakeApi, Arc<Context>) {
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
    for (i, n) in ["w1", "w2", "w3"].iter().enumerate() {
        fake.seed(
            &serde_json::from_value::<Node>(json!({
                "metadata": {"name": n},
                "status": {"addresses": [{"type": "InternalIP", "address": format!("10.0.0.{}", i + 1)}]}
            }))
            .unwrap(),
        );
    }
    let ctx = Context::new(fake.client(), controller(), settings());
    (fake, ctx)
}

fn seed_overlay(fake: &FakeApi, ns: &str, nodes: &[&str]) {
    seed_overlay_with(fake, ns, nodes, None);
}

/// An Overlay `ovl` in `ns` with `switchTemplate.spec` = `template` (none: no template).
fn overlay_with(ns: &str, nodes: &[&str], template: Option<serde_json::Value>) -> Overlay {
    let mut v = json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "Overlay",
        "metadata": {"name": "ovl", "namespace": ns},
        "spec": {
            "provider": {"name": "l2sm-controller", "domain": ["l2sm-controller-service.l2sm-system.svc"], "ofPort": "6633"},
            "topology": {"nodes": nodes},
            "interfaceNumber": 4
        }
    });
    if let Some(t) = template {
        v["spec"]["switchTemplate"] = json!({ "spec": t });
    }
    serde_json::from_value(v).unwrap()
}

fn seed_overlay_with(
    fake: &FakeApi,
    ns: &str,
    nodes: &[&str],
    template: Option<serde_json::Value>,
) {
    fake.seed(&overlay_with(ns, nodes, template));
}

/// One reconcile of the Overlay as stored now (None: it is gone).
async fn pass(fake: &FakeApi, ctx: &Arc<Context>, ns: &str) -> Option<Overlay> {
    let o = fake.get::<Overlay>(Some(ns), "ovl")?;
    reconcile::overlay::reconcile(Arc::new(o), ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("reconcile of {ns}/ovl: {e:?}"));
    fake.get::<Overlay>(Some(ns), "ovl")
}

/// Reconciles until the Overlay has a status (finalizer pass, then apply).
async fn settle(fake: &FakeApi, ctx: &Arc<Context>, ns: &str) -> Overlay {
    for _ in 0..3 {
        pass(fake, ctx, ns).await;
    }
    fake.get::<Overlay>(Some(ns), "ovl").unwrap()
}

fn agents(fake: &FakeApi, ns: &str) -> (Option<DaemonSet>, Option<ConfigMap>) {
    (
        fake.get::<DaemonSet>(Some(HOME), &daemon_set_name(ns, "ovl")),
        fake.get::<ConfigMap>(Some(HOME), &config_map_name(ns, "ovl")),
    )
}

fn condition(o: &Overlay, type_: &str) -> (String, String, String) {
    let c = o
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", o.status));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[tokio::test]
async fn overlay_in_a_tenant_namespace_runs_its_agents_beside_the_credentials_secret() {
    let (fake, ctx) = cluster();
    seed_overlay(&fake, "tenant", &["w1", "w2"]);
    let o = settle(&fake, &ctx, "tenant").await;
    assert!(o.finalizers().iter().any(|f| f == FINALIZER));

    // Nothing in the Overlay's namespace; the agent objects in the operator's.
    assert!(fake.list::<DaemonSet>(Some("tenant")).is_empty());
    assert!(fake.list::<ConfigMap>(Some("tenant")).is_empty());
    let (ds, cm) = agents(&fake, "tenant");
    let ds = ds.expect("agent DaemonSet in the operator's namespace");
    let cm = cm.expect("topology ConfigMap in the operator's namespace");
    assert!(
        ds.metadata.owner_references.is_none(),
        "no cross-namespace owner"
    );
    assert!(cm.data.unwrap()["topology.json"].contains("10.0.0.2"));

    // Every Secret and ConfigMap the agent pods reference exists in the pods' namespace.
    let pod = ds.spec.unwrap().template.spec.unwrap();
    let containers: Vec<_> = pod
        .init_containers
        .iter()
        .flatten()
        .chain(pod.containers.iter())
        .collect();
    let mut secret_refs = 0;
    for c in &containers {
        for e in c.env.iter().flatten() {
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                let s = fake.get::<Secret>(Some(HOME), &r.name).unwrap_or_else(|| {
                    panic!("{} reads Secret {} absent from {HOME}", e.name, r.name)
                });
                assert!(s.data.unwrap().contains_key(&r.key), "{}", r.key);
                secret_refs += 1;
            }
        }
    }
    assert_eq!(
        secret_refs, 2,
        "user and password from the credentials Secret"
    );
    for v in pod.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            assert!(
                fake.get::<ConfigMap>(Some(HOME), &c.name).is_some(),
                "{}",
                c.name
            );
        }
    }

    // The CNI plugin is installed into the configured host directory, before the agent.
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, INSTALL_CNI_CONTAINER);
    assert_eq!(
        init.args.clone().unwrap(),
        vec![
            "install-cni".to_string(),
            "--dir".into(),
            CNI_BIN_MOUNT.into()
        ]
    );
    let mount = init
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == CNI_BIN_MOUNT)
        .expect("the CNI directory is mounted");
    let vol = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    assert_eq!(vol.host_path.as_ref().unwrap().path, CNI_DIR);
    assert_eq!(init.image, pod.containers[0].image);
    // Our own PriorityClass, not system-node-critical.
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("l2sm-node-critical")
    );

    // Nothing written in the Overlay's namespace but the Overlay itself.
    for c in fake.calls() {
        if c.namespace.as_deref() == Some("tenant") && c.resource != "overlays" {
            assert!(
                ["list", "get", "watch"].contains(&c.verb.as_str()),
                "{} {} in tenant",
                c.verb,
                c.resource
            );
        }
    }
    let (status, reason, _) = condition(&o, CONDITION_AGENTS);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "AgentsStarting")
    );
}

#[tokio::test]
async fn same_named_overlays_of_two_namespaces_do_not_collide_and_deletion_removes_them() {
    let (fake, ctx) = cluster();
    seed_overlay(&fake, "tenant-a", &["w1", "w2"]);
    seed_overlay(&fake, "tenant-b", &["w3"]);
    settle(&fake, &ctx, "tenant-a").await;
    settle(&fake, &ctx, "tenant-b").await;
    // A second round: neither overwrites the other.
    settle(&fake, &ctx, "tenant-a").await;
    let nodes = |ns: &str| {
        let ds = agents(&fake, ns).0.unwrap();
        let pod = ds.spec.unwrap().template.spec.unwrap();
        pod.affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms[0]
            .match_expressions
            .clone()
            .unwrap()[0]
            .values
            .clone()
            .unwrap()
    };
    assert_eq!(nodes("tenant-a"), vec!["w1", "w2"]);
    assert_eq!(nodes("tenant-b"), vec!["w3"]);
    let topo = |ns: &str| agents(&fake, ns).1.unwrap().data.unwrap()["topology.json"].clone();
    assert!(topo("tenant-a").contains("w2") && !topo("tenant-a").contains("w3"));
    assert!(topo("tenant-b").contains("w3") && !topo("tenant-b").contains("w1"));
    assert_eq!(fake.list::<DaemonSet>(Some(HOME)).len(), 2);
    // The selectors differ too (one DaemonSet never adopts the other's pods).
    let sel = |ns: &str| {
        agents(&fake, ns)
            .0
            .unwrap()
            .spec
            .unwrap()
            .selector
            .match_labels
    };
    assert_ne!(sel("tenant-a"), sel("tenant-b"));

    // Delete tenant-a's Overlay: its finalizer removes its agent objects, not tenant-b's.
    let api: Api<Overlay> = Api::namespaced(fake.admin_client(), "tenant-a");
    api.delete("ovl", &DeleteParams::default()).await.unwrap();
    assert!(
        fake.get::<Overlay>(Some("tenant-a"), "ovl").is_some(),
        "held by the finalizer"
    );
    assert!(
        pass(&fake, &ctx, "tenant-a").await.is_none(),
        "finalizer released"
    );
    assert_eq!(agents(&fake, "tenant-a"), (None, None));
    let (ds, cm) = agents(&fake, "tenant-b");
    assert!(ds.is_some() && cm.is_some());
}

#[tokio::test]
async fn why_agents_do_not_run_shows_in_the_overlay_condition() {
    let (fake, ctx) = cluster();
    seed_overlay(&fake, "tenant", &["w1", "w2"]);
    settle(&fake, &ctx, "tenant").await;
    // The DaemonSet controller scheduled two pods; one cannot start.
    let mut ds = agents(&fake, "tenant").0.unwrap();
    ds.status = Some(
        serde_json::from_value(json!({
            "currentNumberScheduled": 2, "desiredNumberScheduled": 2,
            "numberMisscheduled": 0, "numberReady": 1
        }))
        .unwrap(),
    );
    fake.seed(&ds);
    let pod = |name: &str, node: &str, waiting: Option<(&str, &str)>| {
        let state = match waiting {
            Some((reason, message)) => json!({"waiting": {"reason": reason, "message": message}}),
            None => json!({"running": {}}),
        };
        serde_json::from_value::<Pod>(json!({
            "metadata": {"name": name, "namespace": HOME, "labels": overlay_labels("tenant", "ovl")},
            "spec": {"nodeName": node, "containers": [{"name": "l2sm-switch"}]},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "l2sm-switch",
                "ready": waiting.is_none(), "restartCount": 0, "image": "l2sm", "imageID": "", "state": state}]}
        }))
        .unwrap()
    };
    fake.seed(&pod("agent-1", "w1", None));
    fake.seed(&pod(
        "agent-2",
        "w2",
        Some((
            "CreateContainerConfigError",
            "secret \"l2sm-controller-credentials\" not found",
        )),
    ));
    let o = pass(&fake, &ctx, "tenant").await.unwrap();
    let (status, reason, message) = condition(&o, CONDITION_AGENTS);
    assert_eq!(status, "False");
    assert_eq!(reason, "CreateContainerConfigError");
    assert!(
        message.contains("not found") && message.contains("w2"),
        "{message}"
    );
    let (_, _, ready) = condition(&o, "Ready");
    assert!(ready.contains("CreateContainerConfigError"), "{ready}");

    // No pods at all although two are wanted (e.g. refused by Pod Security): FailedCreate.
    fake.remove("", "pods", Some(HOME), "agent-1");
    fake.remove("", "pods", Some(HOME), "agent-2");
    let mut ds = agents(&fake, "tenant").0.unwrap();
    ds.status.as_mut().unwrap().number_ready = 0;
    fake.seed(&ds);
    let o = pass(&fake, &ctx, "tenant").await.unwrap();
    let (status, reason, message) = condition(&o, CONDITION_AGENTS);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "FailedCreate")
    );
    assert!(message.contains("describe daemonset"), "{message}");

    // All ready: True.
    let mut ds = agents(&fake, "tenant").0.unwrap();
    ds.status.as_mut().unwrap().number_ready = 2;
    fake.seed(&ds);
    let o = pass(&fake, &ctx, "tenant").await.unwrap();
    let (status, reason, _) = condition(&o, CONDITION_AGENTS);
    assert_eq!((status.as_str(), reason.as_str()), ("True", "AgentsReady"));
}

#[tokio::test]
async fn the_controller_maps_agent_daemonsets_back_to_their_overlay() {
    let (fake, ctx) = cluster();
    seed_overlay(&fake, "tenant", &["w1"]);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let client = fake.client();
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move { l2sm_operator::operator::run_controllers(client, None, ctx, stop_rx).await }
    });
    let name = daemon_set_name("tenant", "ovl");
    let wait_for = |present: bool| {
        let fake = fake.clone();
        let name = name.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(20), async {
                while fake.get::<DaemonSet>(Some(HOME), &name).is_some() != present {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("DaemonSet present={present} in time"));
        }
    };
    wait_for(true).await;
    let first_uid = fake.get::<DaemonSet>(Some(HOME), &name).unwrap().uid();
    let dss: Api<DaemonSet> = Api::namespaced(fake.admin_client(), HOME);
    dss.delete(&name, &DeleteParams::default()).await.unwrap();
    // Recreated through the watch (the resync is 300 s away).
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(ds) = fake.get::<DaemonSet>(Some(HOME), &name) {
                if ds.uid() != first_uid {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the deleted agent DaemonSet was recreated through the watch");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("controllers stopped")
        .unwrap();
}

/// The operator's settings with one extra allowed agent image.
const ALLOWED: &str = "registry.example/l2sm:v2";

fn cluster_allowing() -> (FakeApi, Arc<Context>) {
    let (fake, _) = cluster();
    let ctx = Context::new(
        fake.client(),
        controller(),
        Settings {
            allowed_agent_images: vec![ALLOWED.into()],
            ..settings()
        },
    );
    (fake, ctx)
}

#[tokio::test]
async fn dangerous_switch_templates_are_refused_and_create_nothing() {
    let cases = [
        (
            "initContainers",
            json!({"containers": [{"name": "l2sm-switch"}],
                   "initContainers": [{"name": "own", "image": "busybox", "command": ["sh", "-c", "id"]}]}),
        ),
        (
            "containers[0].image",
            json!({"containers": [{"name": "l2sm-switch", "image": "evil.example/root:1"}]}),
        ),
        (
            "hostPath",
            json!({"containers": [{"name": "l2sm-switch"}],
                   "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
        ),
        (
            "containers[0].command",
            json!({"containers": [{"name": "l2sm-switch", "image": ALLOWED, "command": ["sh"]}]}),
        ),
    ];
    for (field, template) in cases {
        let (fake, ctx) = cluster_allowing();
        seed_overlay_with(&fake, "tenant", &["w1", "w2"], Some(template));
        let o = settle(&fake, &ctx, "tenant").await;
        let (status, reason, message) = condition(&o, "TemplateAccepted");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "TemplateRefused"),
            "{field}"
        );
        assert!(message.contains(field), "{field}: {message}");
        let (status, reason, _) = condition(&o, "Ready");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "TemplateRefused"),
            "{field}"
        );
        // No DaemonSet and no ConfigMap, in any namespace.
        assert!(fake.list::<DaemonSet>(None).is_empty(), "{field}");
        assert!(fake.list::<ConfigMap>(None).is_empty(), "{field}");
    }
}

#[tokio::test]
async fn allow_listed_image_is_accepted_and_a_later_refused_edit_leaves_the_agents() {
    let (fake, ctx) = cluster_allowing();
    seed_overlay_with(
        &fake,
        "tenant",
        &["w1", "w2"],
        Some(
            json!({"containers": [{"name": "l2sm-switch", "image": ALLOWED,
            "imagePullPolicy": "IfNotPresent", "resources": {"limits": {"memory": "256Mi"}}}]}),
        ),
    );
    let o = settle(&fake, &ctx, "tenant").await;
    assert_eq!(condition(&o, "TemplateAccepted").0, "True");
    // Only in the operator's namespace, nothing in the tenant's.
    assert!(fake.list::<DaemonSet>(Some("tenant")).is_empty());
    let (ds, cm) = agents(&fake, "tenant");
    let ds = ds.expect("agent DaemonSet");
    assert!(cm.is_some());
    assert_eq!(fake.list::<DaemonSet>(None).len(), 1);
    let pod = ds.spec.clone().unwrap().template.spec.unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some(ALLOWED));
    assert_eq!(
        pod.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert!(pod.containers[0].resources.is_some());
    // The init containers are the operator's own, with the same image.
    for i in pod.init_containers.iter().flatten() {
        assert_eq!(i.image.as_deref(), Some(ALLOWED), "{}", i.name);
        assert_eq!(
            i.command.as_deref(),
            Some(&["l2sm".to_string()][..]),
            "{}",
            i.name
        );
    }

    // The tenant edits it to run its own init container: refused, the DaemonSet as it was.
    let mut edited = fake.get::<Overlay>(Some("tenant"), "ovl").unwrap();
    edited.spec = overlay_with(
        "tenant",
        &["w1", "w2", "w3"],
        Some(
            json!({"containers": [{"name": "l2sm-switch", "image": ALLOWED}],
            "initContainers": [{"name": "own", "image": "busybox"}]}),
        ),
    )
    .spec;
    let api: Api<Overlay> = Api::namespaced(fake.admin_client(), "tenant");
    api.replace("ovl", &Default::default(), &edited)
        .await
        .unwrap();
    let o = pass(&fake, &ctx, "tenant").await.unwrap();
    let (status, reason, message) = condition(&o, "TemplateAccepted");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "TemplateRefused")
    );
    assert!(message.contains("initContainers"), "{message}");
    let (after, _) = agents(&fake, "tenant");
    let after = after.expect("DaemonSet kept");
    assert_eq!(after.spec, ds.spec, "the DaemonSet is left as it was");
    assert_eq!(
        after.metadata.resource_version,
        ds.metadata.resource_version
    );
    assert_eq!(fake.list::<DaemonSet>(None).len(), 1);

    // Back to an accepted template: deployed again, with the new node.
    let mut fixed = fake.get::<Overlay>(Some("tenant"), "ovl").unwrap();
    fixed.spec = overlay_with("tenant", &["w1", "w2", "w3"], None).spec;
    api.replace("ovl", &Default::default(), &fixed)
        .await
        .unwrap();
    let o = pass(&fake, &ctx, "tenant").await.unwrap();
    assert_eq!(condition(&o, "TemplateAccepted").0, "True");
    let (ds, _) = agents(&fake, "tenant");
    assert!(format!("{:?}", ds.unwrap().spec).contains("w3"));
}

/// Upstream's own Overlay template (talpa image, its args, env and NET_ADMIN) still deploys:
/// the agent image runs instead, and the status says what was ignored.
#[tokio::test]
async fn upstream_switch_template_still_deploys() {
    let (fake, ctx) = cluster();
    seed_overlay_with(
        &fake,
        "default",
        &["w1"],
        Some(
            json!({"containers": [{"name": "l2sm-switch", "image": "alexdecb/talpa:1.3.8",
            "imagePullPolicy": "Always", "args": ["sps-init", "--node_name=$(NODENAME)"],
            "env": [{"name": "NODENAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "resources": {}, "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]}),
        ),
    );
    let o = settle(&fake, &ctx, "default").await;
    let (status, _, message) = condition(&o, "TemplateAccepted");
    assert_eq!(status, "True");
    assert!(message.contains("talpa"), "{message}");
    let (ds, _) = agents(&fake, "default");
    let pod = ds.expect("DaemonSet").spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some(Settings::default().agent_image.as_str())
    );
}
