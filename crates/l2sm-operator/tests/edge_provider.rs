//! Issue #17 on the operator side, against the stateful fake Kubernetes API
//! (`l2sm-kube-fake`), real controllers (`l2sm controller` processes: the in-cluster one of each
//! cluster and the provider) and the edge test double (`edge::testing::FakeEdge`, which
//! behaves as hop.md describes `l2sm edge`'s ConnectNetwork/DisconnectNetwork):
//!
//! - the NetworkEdgeDevice reconciler: edge DaemonSet + ConfigMap + status, a neighbour
//!   change re-applied, deletion, bad specs;
//! - the L2Network provider path: both controllers end with the right members, an unreachable
//!   provider (Unavailable, backoff, then Available), each domain tried, deletion on both
//!   sides, a second cluster finding the first one's network, bad specs changing nothing.
//!
//! Every Kubernetes call made is checked against the operator's API-call table (which
//! `deploy/rbac.yaml` grants).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use l2sm_api::{ControllerClient, RetryPolicy};
use l2sm_kube_fake::FakeApi;
use l2sm_operator::api_calls::allows;
use l2sm_operator::crd::{
    find_condition, ConnectivityStatus, L2Network, NetworkEdgeDevice, CONDITION_READY,
};
use l2sm_operator::edge::testing::{EdgeCall, FakeEdge};
use l2sm_operator::provider::{Credentials, ProviderClient};
use l2sm_operator::reconcile::nedevice::{self, config_map_name, daemon_set_name};
use l2sm_operator::reconcile::provider_net::{
    cluster_bridge, cluster_member, edge_member, CONDITION_PROVIDER,
};
use l2sm_operator::reconcile::{self, Context, Error, Settings};
use l2sm_test_support::controller::ControllerProcess;
use l2sm_test_support::free_port;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const HOME: &str = "l2sm-system";
const NS: &str = "team";

fn client(ctrl: &ControllerProcess) -> ControllerClient {
    ControllerClient::new(
        &ctrl.url(),
        Some((ctrl.user.clone(), ctrl.password.clone())),
        RetryPolicy::default(),
    )
    .unwrap()
}

fn settings() -> Settings {
    Settings {
        // The provider in these tests is an `l2sm controller` with the test credentials.
        provider_credentials: Some(Credentials {
            user: "test".into(),
            password: "secret".into(),
        }),
        provider_timeout: Duration::from_secs(2),
        ..Settings::default()
    }
}

/// One cluster: its fake API, its controller (and client), its edge, the operator context.
struct Cluster {
    fake: FakeApi,
    /// Kept running for the test.
    _ctrl: ControllerProcess,
    controller: ControllerClient,
    edge: Arc<FakeEdge>,
    ctx: Arc<Context>,
}

fn cluster(edges: &[(SocketAddr, &str)]) -> Cluster {
    let fake = FakeApi::new();
    let ctrl = ControllerProcess::start();
    let controller = client(&ctrl);
    let edge = Arc::new(FakeEdge::new(edges));
    let ctx = Context::with_edge(fake.client(), controller.clone(), settings(), edge.clone());
    Cluster {
        fake,
        _ctrl: ctrl,
        controller,
        edge,
        ctx,
    }
}

fn addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 50051)
}

fn ned(
    name: &str,
    provider: &str,
    node_config: Option<Value>,
    neighbors: &[&str],
) -> NetworkEdgeDevice {
    let mut spec = json!({
        "provider": {"name": provider, "domain": ["10.9.0.1"]},
        "neighbors": neighbors.iter().enumerate()
            .map(|(i, d)| json!({"node": format!("remote{i}"), "domain": d}))
            .collect::<Vec<_>>(),
    });
    if let Some(nc) = node_config {
        spec["nodeConfig"] = nc;
    }
    serde_json::from_value(json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "NetworkEdgeDevice",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }))
    .unwrap()
}

fn provider_net(name: &str, provider: &str, domains: &[&str], sdn_port: u16) -> L2Network {
    serde_json::from_value(json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"type": "vnet", "provider": {
            "name": provider, "domain": domains, "sdnPort": sdn_port.to_string()}},
    }))
    .unwrap()
}

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
                HOME,
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

fn stored_ned(fake: &FakeApi, name: &str) -> NetworkEdgeDevice {
    fake.get::<NetworkEdgeDevice>(Some(NS), name)
        .unwrap_or_else(|| panic!("NED {name} is stored"))
}

fn stored_net(fake: &FakeApi, name: &str) -> L2Network {
    fake.get::<L2Network>(Some(NS), name)
        .unwrap_or_else(|| panic!("L2Network {name} is stored"))
}

/// A cluster for NED tests only: the fake API and a context (no controller is called).
struct NedOnly {
    fake: FakeApi,
    ctx: Arc<Context>,
}

fn ned_only() -> NedOnly {
    let fake = FakeApi::new();
    let unused = ControllerClient::new("http://127.0.0.1:1", None, RetryPolicy::once()).unwrap();
    let ctx = Context::new(fake.client(), unused, settings());
    NedOnly { fake, ctx }
}

async fn ned_pass(c: &NedOnly, name: &str) -> Action {
    reconcile::nedevice::reconcile(Arc::new(stored_ned(&c.fake, name)), c.ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("NED {name}: {e}"))
}

async fn net_try(c: &Cluster, name: &str) -> Result<Action, Error> {
    reconcile::l2network::reconcile(Arc::new(stored_net(&c.fake, name)), c.ctx.clone()).await
}

async fn net_pass(c: &Cluster, name: &str) -> Action {
    net_try(c, name)
        .await
        .unwrap_or_else(|e| panic!("L2Network {name}: {e}"))
}

/// Adds the finalizer (first pass) and applies (second).
async fn net_passes(c: &Cluster, name: &str) {
    net_pass(c, name).await;
    net_pass(c, name).await;
}

async fn user_deletes<K>(fake: &FakeApi, name: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    assert_calls_in_table(fake);
    let api: Api<K> = Api::namespaced(fake.client(), NS);
    api.delete(name, &DeleteParams::default()).await.unwrap();
    fake.clear_calls();
}

fn provider_client() -> ProviderClient {
    ProviderClient::new(
        Some(&Credentials {
            user: "test".into(),
            password: "secret".into(),
        }),
        Duration::from_secs(2),
    )
}

/// The members of `network` at the provider (vnets text, as the operator reads it), None when
/// it has no such network.
async fn provider_members(provider: &ControllerProcess, network: &str) -> Option<Vec<String>> {
    let mut m = provider_client()
        .members(&provider.url(), network)
        .await
        .unwrap();
    if let Some(v) = m.as_mut() {
        v.sort();
    }
    m
}

async fn cluster_members(c: &Cluster, network: &str) -> Option<Vec<String>> {
    c.controller
        .get_network(network)
        .await
        .unwrap()
        .map(|v| v.endpoints.into_iter().collect())
}

fn provider_condition(net: &L2Network) -> (String, String, String) {
    let st = net.status.as_ref().expect("a status");
    let c = find_condition(&st.conditions, CONDITION_PROVIDER)
        .unwrap_or_else(|| panic!("no {CONDITION_PROVIDER} condition: {st:?}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

// ------------------------------------------------------------------ NetworkEdgeDevice

/// A NED yields its edge DaemonSet (pinned to the node, TLS gRPC, the node's OVS) and the
/// ConfigMap with upstream's two files in the operator's namespace; the status says the edge is
/// starting, then running once the DaemonSet reports a ready pod.
#[tokio::test]
async fn ned_yields_the_edge_workload_its_files_and_a_status() {
    let c = ned_only();
    c.fake.seed(&ned(
        "edge1",
        "prov",
        Some(json!({"nodeName": "n1", "ipAddress": "10.0.0.5"})),
        &["10.1.0.5"],
    ));
    ned_pass(&c, "edge1").await; // finalizer
    let action = ned_pass(&c, "edge1").await;
    assert_eq!(action, Action::requeue(nedevice::EDGE_RECHECK));

    let cm: ConfigMap = c
        .fake
        .get(Some(HOME), &config_map_name(NS, "edge1"))
        .expect("the edge ConfigMap in the operator's namespace");
    let data = cm.data.unwrap();
    let config: Value = serde_json::from_str(&data["config.json"]).unwrap();
    assert_eq!(
        config,
        json!({"controllerIp": ["10.9.0.1"], "controllerPort": "6633", "providerName": "",
               "nodeName": "n1", "switchName": nedevice::edge_switch_name("n1", "prov")})
    );
    let neighbors: Value = serde_json::from_str(&data["neighbors.json"]).unwrap();
    assert_eq!(
        neighbors,
        json!({"name": "n1", "nodeIP": "10.0.0.5", "neighborNodes": ["10.1.0.5"]})
    );

    let ds: DaemonSet = c
        .fake
        .get(Some(HOME), &daemon_set_name(NS, "edge1"))
        .expect("the edge DaemonSet in the operator's namespace");
    let pod = ds.spec.clone().unwrap().template.spec.unwrap();
    let aff = serde_json::to_value(pod.affinity.as_ref().unwrap()).unwrap();
    assert_eq!(
        aff["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchFields"],
        json!([{"key": "metadata.name", "operator": "In", "values": ["n1"]}])
    );
    assert_eq!(pod.host_network, Some(true));
    let args = pod.containers[0].args.clone().unwrap();
    assert_eq!(args[0], "edge");
    assert!(args.iter().any(|a| a == "--ned-grpc-tls-cert"), "{args:?}");
    let cm_vol = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "config")
        .unwrap();
    assert_eq!(
        cm_vol.config_map.as_ref().unwrap().name,
        config_map_name(NS, "edge1")
    );
    assert_eq!(
        nedevice::ned_of(&ds),
        Some(kube::runtime::reflector::ObjectRef::new("edge1").within(NS))
    );

    let st = stored_ned(&c.fake, "edge1").status.unwrap();
    assert_eq!(st.availability, ConnectivityStatus::Unavailable);
    assert_eq!(
        st.openflow_id,
        Some(format!("of:{:016x}", nedevice::edge_dpid("n1", "prov")))
    );
    let cond = find_condition(&st.conditions, CONDITION_READY).unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "EdgeStarting")
    );

    // The DaemonSet controller reports the pod ready (not the operator's call).
    assert_calls_in_table(&c.fake);
    let dss: Api<DaemonSet> = Api::namespaced(c.fake.admin_client(), HOME);
    dss.patch_status(
        &daemon_set_name(NS, "edge1"),
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"desiredNumberScheduled": 1, "numberReady": 1,
            "currentNumberScheduled": 1, "numberMisscheduled": 0}}),
        ),
    )
    .await
    .unwrap();
    c.fake.clear_calls();
    let action = ned_pass(&c, "edge1").await;
    assert_eq!(action, Action::requeue(c.ctx.settings.resync));
    let st = stored_ned(&c.fake, "edge1").status.unwrap();
    assert_eq!(st.availability, ConnectivityStatus::Available);
    let cond = find_condition(&st.conditions, CONDITION_READY).unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("True", "EdgeRunning")
    );
    assert_calls_in_table(&c.fake);
}

/// A neighbour added to the NED reaches the running edge: the ConfigMap is re-applied with
/// the new `neighbors.json`; the DaemonSet is not rewritten (no restart). Then the NED is
/// deleted: its DaemonSet and ConfigMap go, and the finalizer is released.
#[tokio::test]
async fn neighbour_change_is_reapplied_and_deletion_removes_the_edge() {
    let c = ned_only();
    let fake = &c.fake;
    fake.seed(&ned(
        "edge1",
        "prov",
        Some(json!({"nodeName": "n1", "ipAddress": "10.0.0.5"})),
        &["10.1.0.5"],
    ));
    let pass = || ned_pass(&c, "edge1");
    pass().await;
    pass().await;
    let ds_rv = fake
        .get::<DaemonSet>(Some(HOME), &daemon_set_name(NS, "edge1"))
        .unwrap()
        .resource_version();

    let neds: Api<NetworkEdgeDevice> = Api::namespaced(fake.admin_client(), NS);
    neds.patch(
        "edge1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"neighbors": [
            {"node": "r0", "domain": "10.1.0.5"}, {"node": "r1", "domain": "10.2.0.5"}]}})),
    )
    .await
    .unwrap();
    fake.clear_calls();
    pass().await;
    let cm: ConfigMap = fake.get(Some(HOME), &config_map_name(NS, "edge1")).unwrap();
    let neighbors: Value = serde_json::from_str(&cm.data.unwrap()["neighbors.json"]).unwrap();
    assert_eq!(neighbors["neighborNodes"], json!(["10.1.0.5", "10.2.0.5"]));
    assert_eq!(
        fake.get::<DaemonSet>(Some(HOME), &daemon_set_name(NS, "edge1"))
            .unwrap()
            .resource_version(),
        ds_rv,
        "the DaemonSet is unchanged"
    );

    user_deletes::<NetworkEdgeDevice>(fake, "edge1").await;
    pass().await;
    assert!(fake
        .get::<DaemonSet>(Some(HOME), &daemon_set_name(NS, "edge1"))
        .is_none());
    assert!(fake
        .get::<ConfigMap>(Some(HOME), &config_map_name(NS, "edge1"))
        .is_none());
    assert!(fake.get::<NetworkEdgeDevice>(Some(NS), "edge1").is_none());
    assert_calls_in_table(fake);
}

/// A NED the edge would refuse (a neighbour named by host, no node to default to, a node that
/// already has an edge) gets an `InvalidSpec` condition naming the field, and nothing is
/// deployed; without `nodeConfig` it defaults to the control-plane node, as upstream.
#[tokio::test]
async fn bad_ned_specs_deploy_nothing_and_node_config_defaults_as_upstream() {
    let c = ned_only();
    let fake = &c.fake;
    fake.seed(&ned(
        "byname",
        "prov",
        Some(json!({"nodeName": "n1", "ipAddress": "10.0.0.5"})),
        &["edge.example.org"],
    ));
    fake.seed(&ned("nonode", "prov", None, &[]));
    for name in ["byname", "nonode"] {
        for _ in 0..2 {
            ned_pass(&c, name).await;
        }
        let st = stored_ned(fake, name).status.unwrap();
        let cond = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("False", "InvalidSpec")
        );
        let needle = if name == "byname" {
            "neighbors[0].domain"
        } else {
            "nodeConfig"
        };
        assert!(cond.message.contains(needle), "{}", cond.message);
        assert!(fake
            .get::<DaemonSet>(Some(HOME), &daemon_set_name(NS, name))
            .is_none());
        assert!(fake
            .get::<ConfigMap>(Some(HOME), &config_map_name(NS, name))
            .is_none());
    }
    // Two edge devices on one node: the older keeps it, the other is not deployed.
    for name in ["first", "second"] {
        fake.seed(&ned(
            name,
            "prov",
            Some(json!({"nodeName": "n7", "ipAddress": "10.0.0.7"})),
            &[],
        ));
        ned_pass(&c, name).await;
        ned_pass(&c, name).await;
    }
    assert!(fake
        .get::<DaemonSet>(Some(HOME), &daemon_set_name(NS, "first"))
        .is_some());
    assert!(fake
        .get::<DaemonSet>(Some(HOME), &daemon_set_name(NS, "second"))
        .is_none());
    let st = stored_ned(fake, "second").status.unwrap();
    let cond = find_condition(&st.conditions, CONDITION_READY).unwrap();
    assert!(
        cond.message
            .contains("team/first already runs an edge on node n7"),
        "{}",
        cond.message
    );
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}
    }))
    .unwrap();
    fake.seed(&node);
    ned_pass(&c, "nonode").await;
    let cm: ConfigMap = fake
        .get(Some(HOME), &config_map_name(NS, "nonode"))
        .expect("deployed once a control-plane node exists");
    let neighbors: Value = serde_json::from_str(&cm.data.unwrap()["neighbors.json"]).unwrap();
    assert_eq!(neighbors, json!({"name": "cp1", "nodeIP": "10.0.0.2"}));
    let st = stored_ned(fake, "nonode").status.unwrap();
    let cond = find_condition(&st.conditions, CONDITION_READY).unwrap();
    assert!(cond.message.contains("defaulted"), "{}", cond.message);
    assert_calls_in_table(fake);
}

// ------------------------------------------------------------------ provider networks

/// The happy path and its undoing: the network is created at the provider, the edge connects
/// it to the cluster switch of its node, the in-cluster controller gets the cluster port and
/// the provider the edge port; a second pass changes nothing. A member another cluster adds at
/// the provider keeps the network there when this cluster's L2Network goes; once that member
/// is gone too... the deletion of a network this cluster created and nobody else uses removes
/// it at the provider (checked on a second network).
#[tokio::test]
async fn provider_network_connects_both_sides_and_deletion_undoes_them() {
    let provider = ControllerProcess::start();
    let c = cluster(&[(addr("10.0.0.5"), "n1")]);
    c.fake.seed(&ned(
        "edge1",
        "prov",
        Some(json!({"nodeName": "n1", "ipAddress": "10.0.0.5"})),
        &[],
    ));
    for net in ["inter", "solo"] {
        c.fake
            .seed(&provider_net(net, "prov", &["127.0.0.1"], provider.api));
        net_passes(&c, net).await;
    }
    let inter = stored_net(&c.fake, "inter");
    let st = inter.status.clone().unwrap();
    assert_eq!(
        st.provider_connectivity,
        Some(ConnectivityStatus::Available)
    );
    let (s, reason, msg) = provider_condition(&inter);
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("True", "ProviderConnected"),
        "{msg}"
    );
    let a = st.provider_attachment.clone().unwrap();
    assert!(a.created);
    assert_eq!(a.provider_url, provider.url());
    // Ids per network at the edge: inter got pair 1, solo pair 2.
    let edge_port = edge_member("n1", "prov", 1);
    let cluster_port = cluster_member("n1", 0xD001);
    assert_eq!(a.edge_port.as_deref(), Some(edge_port.as_str()));
    assert_eq!(a.cluster_port.as_deref(), Some(cluster_port.as_str()));
    assert_eq!(
        provider_members(&provider, "inter").await,
        Some(vec![edge_port.clone()])
    );
    assert_eq!(
        cluster_members(&c, "inter").await,
        Some(vec![cluster_port.clone()])
    );
    assert_eq!(
        c.edge.connected(addr("10.0.0.5")).get("inter"),
        Some(&cluster_bridge("n1"))
    );
    // Nothing new on another pass.
    net_pass(&c, "inter").await;
    assert_eq!(
        provider_members(&provider, "inter").await,
        Some(vec![edge_port.clone()])
    );
    assert_eq!(
        stored_net(&c.fake, "inter")
            .status
            .unwrap()
            .provider_attachment,
        Some(a)
    );

    // Another cluster's edge joins `inter` at the provider.
    let foreign = edge_member("m1", "prov", 4);
    provider_client()
        .add_port(&provider.url(), "inter", &foreign)
        .await
        .unwrap();
    for net in ["inter", "solo"] {
        user_deletes::<L2Network>(&c.fake, net).await;
        net_pass(&c, net).await;
        assert!(
            c.fake.get::<L2Network>(Some(NS), net).is_none(),
            "{net} released"
        );
        assert!(
            c.edge
                .calls()
                .contains(&EdgeCall::Disconnect(addr("10.0.0.5"), net.into())),
            "{net}: DisconnectNetwork"
        );
        assert!(!c.edge.connected(addr("10.0.0.5")).contains_key(net));
        assert_eq!(
            cluster_members(&c, net).await,
            None,
            "{net} gone in the cluster"
        );
    }
    // Only the other cluster's member is left on `inter`, which stays; `solo` is gone.
    assert_eq!(
        provider_members(&provider, "inter").await,
        Some(vec![foreign])
    );
    assert_eq!(provider_members(&provider, "solo").await, None);
    assert_calls_in_table(&c.fake);
}

/// A second cluster finds the network the first created (it does not create it, and records
/// so); both edges are members at the provider. Deleting the second cluster's L2Network
/// removes only its member and keeps the network; deleting the first one's (the creator, with
/// no member left) removes it. In the other order (`other`): the creator's deletion keeps it
/// (a member is left), and the second cluster, which did not create it, leaves it too.
#[tokio::test]
async fn a_second_cluster_finds_the_network_created_by_the_first() {
    let provider = ControllerProcess::start();
    let c1 = cluster(&[(addr("10.0.0.5"), "n1")]);
    let c2 = cluster(&[(addr("10.1.0.5"), "m1")]);
    c1.fake.seed(&ned(
        "edge",
        "prov",
        Some(json!({"nodeName": "n1", "ipAddress": "10.0.0.5"})),
        &["10.1.0.5"],
    ));
    c2.fake.seed(&ned(
        "edge",
        "prov",
        Some(json!({"nodeName": "m1", "ipAddress": "10.1.0.5"})),
        &["10.0.0.5"],
    ));
    for c in [&c1, &c2] {
        for net in ["inter", "other"] {
            c.fake
                .seed(&provider_net(net, "prov", &["127.0.0.1"], provider.api));
            net_passes(c, net).await;
        }
    }
    let a1 = stored_net(&c1.fake, "inter")
        .status
        .unwrap()
        .provider_attachment
        .unwrap();
    let a2 = stored_net(&c2.fake, "inter")
        .status
        .unwrap()
        .provider_attachment
        .unwrap();
    assert!(a1.created && !a2.created, "{a1:?} {a2:?}");
    let mut both = vec![edge_member("n1", "prov", 1), edge_member("m1", "prov", 1)];
    both.sort();
    assert_eq!(provider_members(&provider, "inter").await, Some(both));
    assert_eq!(
        cluster_members(&c2, "inter").await,
        Some(vec![cluster_member("m1", 0xD001)])
    );
    let (_, _, msg) = provider_condition(&stored_net(&c2.fake, "inter"));
    assert!(msg.contains("found there"), "{msg}");

    user_deletes::<L2Network>(&c2.fake, "inter").await;
    net_pass(&c2, "inter").await;
    assert_eq!(
        provider_members(&provider, "inter").await,
        Some(vec![edge_member("n1", "prov", 1)])
    );
    user_deletes::<L2Network>(&c1.fake, "inter").await;
    net_pass(&c1, "inter").await;
    assert_eq!(provider_members(&provider, "inter").await, None);

    user_deletes::<L2Network>(&c1.fake, "other").await;
    net_pass(&c1, "other").await;
    assert_eq!(
        provider_members(&provider, "other").await,
        Some(vec![edge_member("m1", "prov", 2)])
    );
    user_deletes::<L2Network>(&c2.fake, "other").await;
    net_pass(&c2, "other").await;
    assert_eq!(provider_members(&provider, "other").await, Some(vec![]));
    assert_calls_in_table(&c1.fake);
    assert_calls_in_table(&c2.fake);
}

/// The provider cannot be reached: `providerConnectivity` Unavailable with the reason, the
/// reconcile fails so it is retried with growing backoff, and nothing is asked of the edge;
/// when the provider comes up the next pass connects it (Available) and the backoff is reset.
/// The in-cluster network exists meanwhile.
#[tokio::test]
async fn unreachable_provider_is_retried_with_backoff_then_available() {
    let c = cluster(&[(addr("10.0.0.5"), "n1")]);
    let port = free_port();
    c.fake.seed(&ned(
        "edge1",
        "prov",
        Some(json!({"nodeName": "n1", "ipAddress": "10.0.0.5"})),
        &[],
    ));
    c.fake
        .seed(&provider_net("inter", "prov", &["127.0.0.1"], port));
    net_pass(&c, "inter").await; // finalizer
    let err = net_try(&c, "inter").await.unwrap_err();
    assert!(err.to_string().contains("provider"), "{err}");
    let net = stored_net(&c.fake, "inter");
    let st = net.status.clone().unwrap();
    assert_eq!(
        st.provider_connectivity,
        Some(ConnectivityStatus::Unavailable)
    );
    assert_eq!(st.internal_connectivity, ConnectivityStatus::Available);
    let (s, reason, msg) = provider_condition(&net);
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("False", "ProviderUnreachable")
    );
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("backoff"),
        "{msg}"
    );
    assert!(c.edge.calls().is_empty(), "{:?}", c.edge.calls());
    assert_eq!(cluster_members(&c, "inter").await, Some(vec![]));
    let arc = Arc::new(net);
    for secs in [1, 2, 4] {
        assert_eq!(
            reconcile::error_policy(arc.clone(), &err, c.ctx.clone()),
            Action::requeue(Duration::from_secs(secs))
        );
    }

    let provider = ControllerProcess::start_on(
        tempfile::tempdir().unwrap(),
        "test",
        "secret",
        port,
        free_port(),
    );
    net_pass(&c, "inter").await;
    let net = stored_net(&c.fake, "inter");
    assert_eq!(
        net.status.as_ref().unwrap().provider_connectivity,
        Some(ConnectivityStatus::Available)
    );
    assert_eq!(
        provider_members(&provider, "inter").await,
        Some(vec![edge_member("n1", "prov", 1)])
    );
    // Success reset the backoff: the next failure waits the first delay again.
    assert_eq!(
        reconcile::error_policy(Arc::new(net), &err, c.ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );

    // The edge down: Unavailable, EdgeUnreachable, retried.
    c.edge.set_down(true);
    let err = net_try(&c, "inter").await.unwrap_err();
    assert!(err.to_string().contains("edge"), "{err}");
    let (s, reason, _) = provider_condition(&stored_net(&c.fake, "inter"));
    assert_eq!((s.as_str(), reason.as_str()), ("False", "EdgeUnreachable"));
    assert_calls_in_table(&c.fake);
}

/// Each provider domain is tried in turn: the first (nothing listens there) refuses the
/// connection, the second answers and is used (and recorded).
#[tokio::test]
async fn each_provider_domain_is_tried_in_turn() {
    let provider = ControllerProcess::start();
    let c = cluster(&[(addr("10.0.0.5"), "n1")]);
    c.fake.seed(&ned(
        "edge1",
        "prov",
        Some(json!({"nodeName": "n1", "ipAddress": "10.0.0.5"})),
        &[],
    ));
    // The controller listens on 127.0.0.1 only: 127.0.0.2 refuses.
    c.fake.seed(&provider_net(
        "inter",
        "prov",
        &["127.0.0.2", "127.0.0.1"],
        provider.api,
    ));
    net_passes(&c, "inter").await;
    let st = stored_net(&c.fake, "inter").status.unwrap();
    assert_eq!(
        st.provider_connectivity,
        Some(ConnectivityStatus::Available)
    );
    assert_eq!(st.provider_attachment.unwrap().provider_url, provider.url());
    assert_eq!(
        provider_members(&provider, "inter").await,
        Some(vec![edge_member("n1", "prov", 1)])
    );
    assert_calls_in_table(&c.fake);
}

/// Specs the provider path cannot honour — no edge device for the provider, an edge device
/// without an address, a provider without a usable address — give a clear condition,
/// `providerConnectivity` Unknown, no retry loop, and change nothing at the provider, the
/// edge or the in-cluster controller's network membership.
#[tokio::test]
async fn bad_provider_specs_change_nothing() {
    let provider = ControllerProcess::start();
    let c = cluster(&[(addr("10.0.0.5"), "n1")]);
    // An edge device of another provider, one of this provider without an address, and no
    // control-plane node to default it to.
    c.fake.seed(&ned(
        "other",
        "elsewhere",
        Some(json!({"nodeName": "n1", "ipAddress": "10.0.0.5"})),
        &[],
    ));
    c.fake.seed(&provider_net(
        "nobody",
        "prov",
        &["127.0.0.1"],
        provider.api,
    ));
    net_passes(&c, "nobody").await;
    let (s, reason, msg) = provider_condition(&stored_net(&c.fake, "nobody"));
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("False", "NoEdgeDevice"),
        "{msg}"
    );
    assert!(
        msg.contains("\"prov\"") && msg.contains("nothing was changed"),
        "{msg}"
    );

    c.fake.seed(&ned(
        "unaddressed",
        "prov2",
        Some(json!({"nodeName": "n1", "ipAddress": ""})),
        &[],
    ));
    c.fake.seed(&provider_net(
        "noaddr",
        "prov2",
        &["127.0.0.1"],
        provider.api,
    ));
    net_passes(&c, "noaddr").await;
    let (_, reason, msg) = provider_condition(&stored_net(&c.fake, "noaddr"));
    assert_eq!(reason, "EdgeDeviceInvalid", "{msg}");
    assert!(
        msg.contains("ipAddress") && msg.contains("unaddressed"),
        "{msg}"
    );

    c.fake.seed(&ned("defaultless", "prov3", None, &[]));
    c.fake.seed(&provider_net(
        "nodefault",
        "prov3",
        &["127.0.0.1"],
        provider.api,
    ));
    net_passes(&c, "nodefault").await;
    let (_, reason, msg) = provider_condition(&stored_net(&c.fake, "nodefault"));
    assert_eq!(reason, "EdgeDeviceInvalid", "{msg}");
    assert!(msg.contains("nodeConfig"), "{msg}");

    c.fake.seed(&provider_net(
        "baddomain",
        "prov",
        &["127.0.0.1:30808"],
        provider.api,
    ));
    net_passes(&c, "baddomain").await;
    let (_, reason, msg) = provider_condition(&stored_net(&c.fake, "baddomain"));
    assert_eq!(reason, "InvalidProvider", "{msg}");

    for net in ["nobody", "noaddr", "nodefault", "baddomain"] {
        let st = stored_net(&c.fake, net).status.unwrap();
        assert_eq!(
            st.provider_connectivity,
            Some(ConnectivityStatus::Unknown),
            "{net}"
        );
        assert_eq!(st.provider_attachment, None, "{net}");
        assert_eq!(
            provider_members(&provider, net).await,
            None,
            "{net} at the provider"
        );
        assert_eq!(
            cluster_members(&c, net).await,
            Some(vec![]),
            "{net} in the cluster"
        );
    }
    assert!(c.edge.calls().is_empty(), "{:?}", c.edge.calls());
    assert_calls_in_table(&c.fake);
    // Deleting them touches nothing outside the cluster either.
    user_deletes::<L2Network>(&c.fake, "nobody").await;
    net_pass(&c, "nobody").await;
    assert!(c.edge.calls().is_empty());
}
