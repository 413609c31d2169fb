//! NetworkEdgeDevice: the cluster's edge switch (`l2sm edge`, docs/edge.md) runs on
//! `spec.nodeConfig.nodeName` with upstream's `config.json` and `neighbors.json`.
//!
//! - **Workload**: one DaemonSet pinned to that node (node affinity on `metadata.name`, the
//!   node's own name, not the `kubernetes.io/hostname` label, which may differ). A DaemonSet
//!   rather than upstream's ReplicaSet or a Deployment: it never runs two edges on the node at
//!   once during a rollout (the old pod goes before the new one, which matters for a
//!   host-network listener on 50051 and one OVS bridge), it ignores the scheduler's capacity
//!   decisions and taints the way the node agent does, and it is the kind the node agents use
//!   (same RBAC, same readiness diagnosis).
//! - **Where**: in the operator's namespace, as the node agents (privileged, host network:
//!   only that namespace admits them, and a user able to exec into pods of their own namespace
//!   must not reach a root shell on the node through it). Owner references cannot cross
//!   namespaces: the objects carry the NED in labels and an annotation, the NED's finalizer
//!   deletes them, and their events map back to the NED by the annotation.
//! - **Defaults** as upstream's (§6.3): `nodeConfig` ← the first control-plane (or master)
//!   node and its InternalIP (computed on each pass, not written into the spec); the switch
//!   template ← the agent image (upstream's `talpa ned` template is accepted and mapped, as
//!   for Overlays; any other image must be allowed, [`super::overlay::review_template`]);
//!   provider ports ← the CRD defaults (`ofPort` 6633).
//! - **ConfigMap** with upstream's two files, server-side applied on every pass, so a
//!   `neighbors` change reaches the running edge (it re-reads the file; nothing restarts).
//! - **gRPC security**: the edge serves TLS with client certificates from the Secret
//!   [`super::Settings::edge_grpc_secret`] (`--edge-grpc-secret`), or cleartext with
//!   `--edge-grpc-insecure` (upstream's way; for labs).
//! - **Status**: `availability` Available when the edge pod is ready, `openflowId` the edge
//!   switch's `of:<dpid>`, and a `Ready` condition saying what is missing.

use super::overlay::{agent_problem, bounded_name, review_template};
use super::FIELD_MANAGER;
use super::{bool_status, now, patch_status, tracked, Context, Error, Result, Settings};
use crate::crd::{
    condition, set_condition, ConnectivityStatus, NetworkEdgeDevice, NetworkEdgeDeviceSpec,
    NetworkEdgeDeviceStatus, NodeConfigSpec, CONDITION_READY, FINALIZER,
};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, HostPathVolumeSource, Node,
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    PodTemplateSpec, SecretVolumeSource, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use l2sm_pipeline::ids;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Label on the edge objects: `app=l2sm-edge`.
pub const APP_LABEL: (&str, &str) = ("app", "l2sm-edge");
/// Label on the edge objects: the NED's name (hashed when longer than a label value).
pub const NED_LABEL: &str = "l2sm.l2sm.k8s.local/ned";
/// Label on the edge objects: the NED's namespace.
pub const NED_NAMESPACE_LABEL: &str = "l2sm.l2sm.k8s.local/ned-namespace";
/// Annotation on the edge objects: `<namespace>/<name>` of the NED (exact).
pub const NED_ANNOTATION: &str = "l2sm.l2sm.k8s.local/ned";
/// Upstream's NED config file.
pub const CONFIG_KEY: &str = "config.json";
/// Upstream's NED neighbours file.
pub const NEIGHBORS_KEY: &str = "neighbors.json";
/// Where the edge reads the two files (upstream's mount point).
pub const CONFIG_DIR: &str = "/etc/l2sm";
/// Where the edge reads its gRPC TLS files.
pub const TLS_DIR: &str = "/etc/l2sm-edge-tls";
/// The edge container's name (upstream's switch container name).
pub const CONTAINER_NAME: &str = "l2sm-switch";
/// The node agent's OVS run directory (the edge uses the node's own Open vSwitch).
pub const OVS_RUN_DIR: &str = "/var/run/openvswitch";
/// Node labels upstream picks the default NED node by.
pub const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// Name of the NED's ConfigMap (in the operator's namespace).
pub fn config_map_name(namespace: &str, ned: &str) -> String {
    bounded_name("l2sm-edge-", namespace, ned, "-config")
}

/// Name of the NED's DaemonSet (in the operator's namespace).
pub fn daemon_set_name(namespace: &str, ned: &str) -> String {
    bounded_name("l2sm-edge-", namespace, ned, "")
}

/// The NED an edge object belongs to, from its annotation (the controller's mapper).
pub fn ned_of<K: ResourceExt>(obj: &K) -> Option<ObjectRef<NetworkEdgeDevice>> {
    let (ns, name) = obj.annotations().get(NED_ANNOTATION)?.split_once('/')?;
    if ns.is_empty() || name.is_empty() {
        return None;
    }
    Some(ObjectRef::new(name).within(ns))
}

/// The edge switch's bridge name: upstream's `br-` + hash(node + provider name).
pub fn edge_switch_name(node: &str, provider: &str) -> String {
    ids::switch_name(node, provider)
}

/// The edge switch's datapath id.
pub fn edge_dpid(node: &str, provider: &str) -> u64 {
    ids::datapath_id(&edge_switch_name(node, provider))
}

/// Upstream's default `nodeConfig`: the first control-plane (or master) node, by name, that
/// has an InternalIP, with that address.
pub fn default_node_config(nodes: &[Node]) -> Option<NodeConfigSpec> {
    let mut candidates: Vec<&Node> = nodes
        .iter()
        .filter(|n| {
            let labels = n.labels();
            CONTROL_PLANE_LABELS.iter().any(|l| labels.contains_key(*l))
        })
        .collect();
    candidates.sort_by_key(|n| n.name_any());
    candidates.into_iter().find_map(|n| {
        let ip = n
            .status
            .as_ref()?
            .addresses
            .as_ref()?
            .iter()
            .find(|a| a.type_ == "InternalIP")?
            .address
            .clone();
        Some(NodeConfigSpec {
            node_name: n.name_any(),
            ip_address: ip,
        })
    })
}

/// The node the edge runs on and its address: the spec's, else upstream's default.
pub fn effective_node_config(
    spec: &NetworkEdgeDeviceSpec,
    nodes: &[Node],
) -> std::result::Result<NodeConfigSpec, String> {
    match &spec.node_config {
        Some(nc) => Ok(nc.clone()),
        None => default_node_config(nodes).ok_or_else(|| {
            "spec.nodeConfig is not set and no control-plane node with an InternalIP was \
             found to default it to (upstream's default): set spec.nodeConfig"
                .to_string()
        }),
    }
}

/// Checks the spec with its effective `nodeConfig`: what the edge would refuse at start
/// (names, addresses, neighbours that are not IPs of the node address's family).
pub fn validate(
    spec: &NetworkEdgeDeviceSpec,
    nc: &NodeConfigSpec,
) -> std::result::Result<(), String> {
    if spec.provider.name.trim().is_empty() {
        return Err("spec.provider.name is empty".into());
    }
    if spec.provider.domain.iter().all(|d| d.trim().is_empty()) {
        return Err("spec.provider.domain names no controller address".into());
    }
    if let Some((i, d)) = spec.provider.domain.iter().enumerate().find(|(_, d)| {
        d.trim()
            .contains(|c: char| c.is_whitespace() || c == '/' || c == ',')
    }) {
        return Err(format!(
            "spec.provider.domain[{i}] {d:?} is not a host name or IP address"
        ));
    }
    let of_port = spec.provider.of_port.trim();
    if !of_port.is_empty() && of_port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!(
            "spec.provider.ofPort {of_port:?} is not a port number"
        ));
    }
    if !crate::switch_cert::valid_node_name(&nc.node_name) {
        return Err(format!(
            "spec.nodeConfig.nodeName {:?} is not a node name",
            nc.node_name
        ));
    }
    let ip: IpAddr = nc.ip_address.trim().parse().map_err(|_| {
        format!(
            "spec.nodeConfig.ipAddress {:?} is not an IP address",
            nc.ip_address
        )
    })?;
    for (i, n) in spec.neighbors.iter().flatten().enumerate() {
        if n.node.trim().is_empty() || n.domain.trim().is_empty() {
            return Err(format!("spec.neighbors[{i}] needs both node and domain"));
        }
        let remote: IpAddr = n.domain.trim().parse().map_err(|_| {
            format!(
                "spec.neighbors[{i}].domain {:?} is not an IP address (VXLAN tunnels need one)",
                n.domain
            )
        })?;
        if remote.is_ipv4() != ip.is_ipv4() {
            return Err(format!(
                "spec.neighbors[{i}].domain {remote} is not of the family of \
                 spec.nodeConfig.ipAddress {ip}"
            ));
        }
        if remote == ip {
            return Err(format!(
                "spec.neighbors[{i}].domain {remote} is this edge's own address"
            ));
        }
    }
    // spec.monitor: status.linkMetrics from the provider controller (reconcile::link_metrics);
    // no probe sidecar or monitoring network, so ipCIDR and lpmIp are not needed.
    Ok(())
}

/// Upstream's `config.json` (field order as upstream writes it).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile<'a> {
    controller_ip: Vec<&'a str>,
    controller_port: &'a str,
    provider_name: &'a str,
    node_name: &'a str,
    switch_name: String,
}

/// Upstream's `neighbors.json`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct NeighborsFile<'a> {
    name: &'a str,
    #[serde(rename = "nodeIP")]
    node_ip: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    neighbor_nodes: Vec<&'a str>,
}

/// The two files of the NED, as upstream's operator writes them: `config.json` (provider
/// addresses and OpenFlow port, node, bridge name) and `neighbors.json` (this edge's address
/// and the other edges').
pub fn config_files(spec: &NetworkEdgeDeviceSpec, nc: &NodeConfigSpec) -> BTreeMap<String, String> {
    let of_port = match spec.provider.of_port.trim() {
        "" => "6633",
        p => p,
    };
    let config = ConfigFile {
        controller_ip: spec
            .provider
            .domain
            .iter()
            .map(|d| d.trim())
            .filter(|d| !d.is_empty())
            .collect(),
        controller_port: of_port,
        provider_name: "",
        node_name: &nc.node_name,
        switch_name: edge_switch_name(&nc.node_name, &spec.provider.name),
    };
    let neighbors = NeighborsFile {
        name: &nc.node_name,
        node_ip: nc.ip_address.trim(),
        neighbor_nodes: spec
            .neighbors
            .iter()
            .flatten()
            .map(|n| n.domain.trim())
            .collect(),
    };
    // Serialising these plain structs cannot fail.
    BTreeMap::from([
        (
            CONFIG_KEY.to_string(),
            serde_json::to_string(&config).unwrap_or_default(),
        ),
        (
            NEIGHBORS_KEY.to_string(),
            serde_json::to_string(&neighbors).unwrap_or_default(),
        ),
    ])
}

/// Labels selecting the edge objects (and pod) of NED `namespace/name`.
pub fn ned_labels(namespace: &str, ned: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.0.to_string(), APP_LABEL.1.to_string()),
        (NED_LABEL.to_string(), super::l2network::label_value(ned)),
        (
            NED_NAMESPACE_LABEL.to_string(),
            super::l2network::label_value(namespace),
        ),
    ])
}

/// Label selector string of [`ned_labels`].
pub fn edge_selector(namespace: &str, ned: &str) -> String {
    ned_labels(namespace, ned)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn edge_meta(ned: &NetworkEdgeDevice, name: String, home: &str) -> ObjectMeta {
    let ns = ned.namespace().unwrap_or_default();
    let ned_name = ned.name_any();
    ObjectMeta {
        name: Some(name),
        namespace: Some(home.to_string()),
        labels: Some(ned_labels(&ns, &ned_name)),
        annotations: Some(BTreeMap::from([(
            NED_ANNOTATION.to_string(),
            format!("{ns}/{ned_name}"),
        )])),
        ..Default::default()
    }
}

/// The NED's ConfigMap (in the operator's namespace `home`).
pub fn config_map(ned: &NetworkEdgeDevice, nc: &NodeConfigSpec, home: &str) -> ConfigMap {
    let ns = ned.namespace().unwrap_or_default();
    ConfigMap {
        metadata: edge_meta(ned, config_map_name(&ns, &ned.name_any()), home),
        data: Some(config_files(&ned.spec, nc)),
        ..Default::default()
    }
}

/// The edge container: the reviewed template's image, pull policy and resources; the
/// operator's command, arguments, mounts and security context. Err: the template is refused.
pub fn edge_container(
    spec: &NetworkEdgeDeviceSpec,
    settings: &Settings,
) -> std::result::Result<(Container, Option<String>), String> {
    let review = review_template(spec.switch_template.as_ref(), settings)?;
    let template = spec
        .switch_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first());
    let mut args: Vec<String> = vec![
        "edge".into(),
        "--config-dir".into(),
        CONFIG_DIR.into(),
        "--ovsdb".into(),
        format!("unix:{OVS_RUN_DIR}/db.sock"),
    ];
    let mount = |name: &str, path: &str, ro: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: ro.then_some(true),
        ..Default::default()
    };
    let mut mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("ovs-run", OVS_RUN_DIR, false),
    ];
    if settings.edge_grpc_insecure {
        args.push("--ned-grpc-insecure".into());
    } else {
        args.extend([
            "--ned-grpc-tls-cert".into(),
            format!("{TLS_DIR}/tls.crt"),
            "--ned-grpc-tls-key".into(),
            format!("{TLS_DIR}/tls.key"),
            "--ned-grpc-client-ca".into(),
            format!("{TLS_DIR}/ca.crt"),
        ]);
        mounts.push(mount("grpc-tls", TLS_DIR, true));
    }
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(review.image),
        image_pull_policy: template.and_then(|c| c.image_pull_policy.clone()),
        resources: template.and_then(|c| c.resources.clone()),
        command: Some(vec!["l2sm".into()]),
        args: Some(args),
        // The edge drives the node's OVS and makes links: root.
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_group: Some(0),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    Ok((container, review.note))
}

/// The NED's DaemonSet: one edge pod on `nc.node_name`, in the operator's namespace.
pub fn daemon_set(
    ned: &NetworkEdgeDevice,
    nc: &NodeConfigSpec,
    container: Container,
    settings: &Settings,
) -> DaemonSet {
    let ns = ned.namespace().unwrap_or_default();
    let name = ned.name_any();
    let labels = ned_labels(&ns, &name);
    let template_meta = ned
        .spec
        .switch_template
        .as_ref()
        .and_then(|t| t.metadata.as_ref());
    let mut pod_labels = template_meta
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    pod_labels.extend(labels.clone());
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(&ns, &name),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "ovs-run".into(),
            host_path: Some(HostPathVolumeSource {
                path: OVS_RUN_DIR.into(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Default::default()
        },
    ];
    if !settings.edge_grpc_insecure {
        volumes.push(Volume {
            name: "grpc-tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(settings.edge_grpc_secret.clone()),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    DaemonSet {
        metadata: edge_meta(ned, daemon_set_name(&ns, &name), &settings.namespace),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels),
                ..Default::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: template_meta.and_then(|m| m.annotations.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(settings.agent_service_account.clone()),
                    // The edge does not talk to the Kubernetes API.
                    automount_service_account_token: Some(false),
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
                    priority_class_name: settings.agent_priority_class.clone(),
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]),
                    affinity: Some(Affinity {
                        node_affinity: Some(NodeAffinity {
                            required_during_scheduling_ignored_during_execution: Some(
                                NodeSelector {
                                    node_selector_terms: vec![NodeSelectorTerm {
                                        match_fields: Some(vec![NodeSelectorRequirement {
                                            key: "metadata.name".into(),
                                            operator: "In".into(),
                                            values: Some(vec![nc.node_name.clone()]),
                                        }]),
                                        ..Default::default()
                                    }],
                                },
                            ),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Another NetworkEdgeDevice already placed on `node` (explicit `nodeConfig`), older than
/// `me` (creation time, then namespace and name): two edges on one node would share its
/// host-network gRPC port and OVS, so the younger one is not deployed.
pub fn conflicting_ned(
    neds: &[NetworkEdgeDevice],
    me: &NetworkEdgeDevice,
    node: &str,
) -> Option<String> {
    let key = |n: &NetworkEdgeDevice| {
        (
            n.metadata.creation_timestamp.as_ref().map(|t| t.0),
            n.namespace().unwrap_or_default(),
            n.name_any(),
        )
    };
    let mine = key(me);
    neds.iter()
        .filter(|n| key(n) != mine)
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter(|n| {
            n.spec
                .node_config
                .as_ref()
                .is_some_and(|nc| nc.node_name == node)
        })
        .filter(|n| key(n) < mine)
        .map(|n| format!("{}/{}", n.namespace().unwrap_or_default(), n.name_any()))
        .next()
}

/// What a pass saw, for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The spec cannot be deployed (nothing written).
    Invalid(String),
    /// The switch template is refused (nothing written).
    Refused(String),
    /// Deployed on `node`.
    Deployed {
        /// The node.
        node: String,
        /// The edge switch's datapath id.
        dpid: u64,
        /// The edge pod is ready.
        ready: bool,
        /// `nodeConfig` was defaulted (upstream's rule).
        defaulted: bool,
        /// What of the template was not used.
        note: Option<String>,
        /// Why the edge pod does not run, when known.
        problem: Option<super::overlay::AgentProblem>,
    },
}

/// The NED's status for what was observed.
pub fn compute_status(
    old: Option<&NetworkEdgeDeviceStatus>,
    generation: Option<i64>,
    observed: &Observed,
    now: Time,
) -> NetworkEdgeDeviceStatus {
    let mut status = old.cloned().unwrap_or_default();
    let (ok, reason, message) = match observed {
        Observed::Invalid(m) => {
            status.availability = ConnectivityStatus::Unavailable;
            (false, "InvalidSpec".to_string(), m.clone())
        }
        Observed::Refused(m) => {
            status.availability = ConnectivityStatus::Unavailable;
            (
                false,
                super::overlay::REASON_TEMPLATE_REFUSED.to_string(),
                format!("{m}; no edge is deployed or changed for this NetworkEdgeDevice"),
            )
        }
        Observed::Deployed {
            node,
            dpid,
            ready,
            defaulted,
            note,
            problem,
        } => {
            status.availability = if *ready {
                ConnectivityStatus::Available
            } else {
                ConnectivityStatus::Unavailable
            };
            status.openflow_id = Some(format!("of:{}", ids::dpid_hex(*dpid)));
            let mut msg = if *ready {
                format!("edge switch running on node {node}")
            } else {
                match problem {
                    Some(p) => format!("edge on node {node} not ready: {}", p.message),
                    None => format!("edge on node {node} not ready yet"),
                }
            };
            if *defaulted {
                msg.push_str(&format!(
                    " (nodeConfig defaulted to control-plane node {node})"
                ));
            }
            if let Some(n) = note {
                msg.push_str(&format!("; {n}"));
            }
            let reason = match (ready, problem) {
                (true, _) => "EdgeRunning".to_string(),
                (false, Some(p)) => p.reason.clone(),
                (false, None) => "EdgeStarting".to_string(),
            };
            (*ready, reason, msg)
        }
    };
    // Upstream's fields not measured here.
    status.connected_neighbors = None;
    set_condition(
        &mut status.conditions,
        condition(
            CONDITION_READY,
            bool_status(ok),
            &reason,
            message,
            generation,
            now,
        ),
    );
    status
}

/// How soon a NED whose edge is not ready is looked at again.
pub const EDGE_RECHECK: std::time::Duration = std::time::Duration::from_secs(20);

/// Reconciles one NetworkEdgeDevice.
pub async fn reconcile(ned: Arc<NetworkEdgeDevice>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<NetworkEdgeDevice> =
        Api::namespaced(ctx.kube.clone(), &ned.namespace().unwrap_or_default());
    tracked(&*ned, &ctx, async {
        finalizer(&api, FINALIZER, ned.clone(), |event| async {
            match event {
                Event::Apply(n) => apply(&n, &ctx).await,
                Event::Cleanup(n) => cleanup(&n, &ctx).await,
            }
        })
        .await
        .map_err(Error::from)
    })
    .await
}

async fn write(ned: &NetworkEdgeDevice, ctx: &Context, observed: &Observed) -> Result<()> {
    let st = compute_status(
        ned.status.as_ref(),
        ned.metadata.generation,
        observed,
        now(),
    );
    patch_status(ned, ned.status.as_ref(), st, ctx).await
}

async fn apply(ned: &NetworkEdgeDevice, ctx: &Context) -> Result<Action> {
    let ns = ned.namespace().unwrap_or_default();
    let name = ned.name_any();
    let nodes = if ned.spec.node_config.is_none() {
        super::nodes(ctx).await?
    } else {
        Vec::new()
    };
    let nc = match effective_node_config(&ned.spec, &nodes)
        .and_then(|nc| validate(&ned.spec, &nc).map(|()| nc))
    {
        Ok(nc) => nc,
        Err(m) => {
            write(ned, ctx, &Observed::Invalid(m)).await?;
            // Nothing to retry until the spec (or, for the default, the nodes) change.
            return Ok(Action::requeue(ctx.settings.resync));
        }
    };
    let all: Api<NetworkEdgeDevice> = Api::all(ctx.kube.clone());
    let neds = all.list(&ListParams::default()).await?.items;
    if let Some(other) = conflicting_ned(&neds, ned, &nc.node_name) {
        let m = format!(
            "NetworkEdgeDevice {other} already runs an edge on node {}: one edge per node \
             (they would share its gRPC port and Open vSwitch); nothing is deployed for this one",
            nc.node_name
        );
        write(ned, ctx, &Observed::Invalid(m)).await?;
        return Ok(Action::requeue(ctx.settings.resync));
    }
    let (container, note) = match edge_container(&ned.spec, &ctx.settings) {
        Ok(c) => c,
        Err(m) => {
            tracing::warn!(ned = %format!("{ns}/{name}"), "{m}");
            write(ned, ctx, &Observed::Refused(m)).await?;
            return Ok(Action::await_change());
        }
    };
    let home = ctx.settings.namespace.as_str();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let cm = config_map(ned, &nc, home);
    let cms: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), home);
    cms.patch(&cm.name_any(), &params, &Patch::Apply(&cm))
        .await?;
    let ds = daemon_set(ned, &nc, container, &ctx.settings);
    let dss: Api<DaemonSet> = Api::namespaced(ctx.kube.clone(), home);
    let applied = dss
        .patch(&ds.name_any(), &params, &Patch::Apply(&ds))
        .await?;
    let ready = applied
        .status
        .as_ref()
        .is_some_and(|s| s.number_ready >= 1 && s.desired_number_scheduled >= 1);
    let unplaceable = applied.status.as_ref().is_some_and(|s| {
        s.desired_number_scheduled == 0
            && s.observed_generation.is_some()
            && s.observed_generation >= applied.metadata.generation
    });
    let problem = if ready {
        None
    } else if unplaceable {
        Some(super::overlay::AgentProblem {
            reason: "NodeNotEligible".into(),
            message: format!(
                "the DaemonSet {home}/{} places no pod: node {:?} does not exist or cannot run it",
                applied.name_any(),
                nc.node_name
            ),
        })
    } else {
        let pods: Api<Pod> = Api::namespaced(ctx.kube.clone(), home);
        let listed = pods
            .list(&ListParams::default().labels(&edge_selector(&ns, &name)))
            .await?;
        agent_problem(&applied, &listed.items)
    };
    let observed = Observed::Deployed {
        dpid: edge_dpid(&nc.node_name, &ned.spec.provider.name),
        node: nc.node_name,
        ready,
        defaulted: ned.spec.node_config.is_none(),
        note,
        problem,
    };
    let mut st = compute_status(
        ned.status.as_ref(),
        ned.metadata.generation,
        &observed,
        now(),
    );
    // Link health of the edge's links to its neighbours (spec.monitor), from the provider
    // controller (an L2S-M controller: `GET /api/v1/links`).
    let monitor = ned.spec.monitor.as_ref();
    let me = match &observed {
        Observed::Deployed { node, .. } => node.clone(),
        _ => String::new(),
    };
    let neighbours: Vec<String> = ned
        .spec
        .neighbors
        .iter()
        .flatten()
        .map(|n| n.node.clone())
        .collect();
    let base = crate::provider::base_urls(&ned.spec.provider)
        .ok()
        .and_then(|b| b.into_iter().next());
    st.link_metrics = super::link_metrics::refresh(
        ctx,
        &super::object_key(ned),
        monitor,
        ned.status.as_ref().and_then(|s| s.link_metrics.as_ref()),
        |a, b| {
            (a == me && neighbours.iter().any(|n| n == b))
                || (b == me && neighbours.iter().any(|n| n == a))
        },
        || async {
            match &base {
                Some(b) => ctx.provider.links(b).await.map_err(|e| e.to_string()),
                None => Err("spec.provider names no address".to_string()),
            }
        },
    )
    .await;
    patch_status(ned, ned.status.as_ref(), st, ctx).await?;
    let resync = match monitor {
        Some(m) => ctx.settings.resync.min(super::link_metrics::interval(m)),
        None => ctx.settings.resync,
    };
    if !ready {
        return Ok(Action::requeue(resync.min(EDGE_RECHECK)));
    }
    Ok(Action::requeue(resync))
}

fn gone(r: std::result::Result<(), kube::Error>) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::from(e)),
    }
}

/// Deletes the edge's DaemonSet and ConfigMap. The provider networks using this edge notice
/// on their next pass (condition `NoEdgeDevice`); the edge's patch ports stay in the node's
/// OVS until those networks are deleted or the bridge is removed.
async fn cleanup(ned: &NetworkEdgeDevice, ctx: &Context) -> Result<Action> {
    let ns = ned.namespace().unwrap_or_default();
    let name = ned.name_any();
    let home = ctx.settings.namespace.as_str();
    let dp = DeleteParams::default();
    let dss: Api<DaemonSet> = Api::namespaced(ctx.kube.clone(), home);
    gone(
        dss.delete(&daemon_set_name(&ns, &name), &dp)
            .await
            .map(|_| ()),
    )?;
    let cms: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), home);
    gone(
        cms.delete(&config_map_name(&ns, &name), &dp)
            .await
            .map(|_| ()),
    )?;
    tracing::info!(ned = %format!("{ns}/{name}"), "edge removed");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{find_condition, NeighborSpec, ProviderSpec};

    fn spec() -> NetworkEdgeDeviceSpec {
        NetworkEdgeDeviceSpec {
            provider: ProviderSpec {
                name: "idco".into(),
                domain: vec!["10.0.0.1".into(), "prov.example".into()],
                sdn_port: "30808".into(),
                dns_port: "30053".into(),
                dns_grpc_port: "30818".into(),
                of_port: "6633".into(),
            },
            node_config: Some(NodeConfigSpec {
                node_name: "n1".into(),
                ip_address: "10.0.0.5".into(),
            }),
            neighbors: Some(vec![NeighborSpec {
                node: "remote".into(),
                domain: "10.1.0.5".into(),
                lpm_ip: None,
            }]),
            switch_template: None,
            monitor: None,
        }
    }

    fn nc(s: &NetworkEdgeDeviceSpec) -> NodeConfigSpec {
        s.node_config.clone().unwrap()
    }

    fn node(name: &str, labels: &[&str], ip: Option<&str>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name,
                "labels": labels.iter().map(|l| (l.to_string(), String::new())).collect::<BTreeMap<_, _>>()},
            "status": {"addresses": ip.map(|i| vec![serde_json::json!({"type": "InternalIP", "address": i})]).unwrap_or_default()}
        }))
        .unwrap()
    }

    #[test]
    fn files_are_upstreams() {
        let s = spec();
        let files = config_files(&s, &nc(&s));
        let sw = edge_switch_name("n1", "idco");
        assert_eq!(
            files[CONFIG_KEY],
            format!(
                r#"{{"controllerIp":["10.0.0.1","prov.example"],"controllerPort":"6633","providerName":"","nodeName":"n1","switchName":"{sw}"}}"#
            )
        );
        assert_eq!(
            files[NEIGHBORS_KEY],
            r#"{"name":"n1","nodeIP":"10.0.0.5","neighborNodes":["10.1.0.5"]}"#
        );
        let mut s = spec();
        s.neighbors = None;
        s.provider.of_port = String::new();
        let files = config_files(&s, &nc(&s));
        assert_eq!(files[NEIGHBORS_KEY], r#"{"name":"n1","nodeIP":"10.0.0.5"}"#);
        assert!(files[CONFIG_KEY].contains(r#""controllerPort":"6633""#));
    }

    #[test]
    fn node_config_defaults_to_the_first_control_plane_node() {
        let nodes = vec![
            node("w1", &[], Some("10.0.0.9")),
            node(
                "cp2",
                &["node-role.kubernetes.io/control-plane"],
                Some("10.0.0.3"),
            ),
            node("cp1", &["node-role.kubernetes.io/master"], None),
            node(
                "cp0",
                &["node-role.kubernetes.io/control-plane"],
                Some("10.0.0.2"),
            ),
        ];
        let d = default_node_config(&nodes).unwrap();
        assert_eq!(
            (d.node_name.as_str(), d.ip_address.as_str()),
            ("cp0", "10.0.0.2")
        );
        let mut s = spec();
        s.node_config = None;
        assert_eq!(effective_node_config(&s, &nodes).unwrap(), d);
        let e = effective_node_config(&s, &nodes[..1]).unwrap_err();
        assert!(e.contains("nodeConfig"), "{e}");
    }

    #[test]
    fn invalid_specs_are_named() {
        type Edit = Box<dyn Fn(&mut NetworkEdgeDeviceSpec)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|s| s.node_config.as_mut().unwrap().ip_address = "nope".into()),
                "ipAddress",
            ),
            (
                Box::new(|s| s.node_config.as_mut().unwrap().ip_address = String::new()),
                "ipAddress",
            ),
            (
                Box::new(|s| s.node_config.as_mut().unwrap().node_name = "Bad Node".into()),
                "nodeName",
            ),
            (
                Box::new(|s| s.neighbors.as_mut().unwrap()[0].domain.clear()),
                "neighbors[0]",
            ),
            (
                Box::new(|s| s.neighbors.as_mut().unwrap()[0].domain = "edge.example".into()),
                "not an IP",
            ),
            (
                Box::new(|s| s.neighbors.as_mut().unwrap()[0].domain = "fd00::1".into()),
                "family",
            ),
            (
                Box::new(|s| s.neighbors.as_mut().unwrap()[0].domain = "10.0.0.5".into()),
                "own address",
            ),
            (Box::new(|s| s.provider.domain = vec![]), "domain"),
            (Box::new(|s| s.provider.name = " ".into()), "provider.name"),
            (Box::new(|s| s.provider.of_port = "x".into()), "ofPort"),
        ];
        for (edit, needle) in cases {
            let mut s = spec();
            edit(&mut s);
            let e = validate(&s, &nc(&s)).unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        assert_eq!(validate(&spec(), &nc(&spec())), Ok(()));
        let st = compute_status(None, Some(1), &Observed::Invalid("x".into()), now());
        let c = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert_eq!(st.availability, ConnectivityStatus::Unavailable);
    }

    fn ned() -> NetworkEdgeDevice {
        let mut n = NetworkEdgeDevice::new("edge", spec());
        n.metadata.namespace = Some("team".into());
        n
    }

    #[test]
    fn daemon_set_pins_one_edge_to_the_node_with_tls_by_default() {
        let settings = Settings::default();
        let s = spec();
        let (c, note) = edge_container(&s, &settings).unwrap();
        assert_eq!(note, None);
        let ds = daemon_set(&ned(), &nc(&s), c, &settings);
        assert_eq!(ds.metadata.namespace.as_deref(), Some("l2sm-system"));
        assert_eq!(
            ds.metadata.annotations.as_ref().unwrap()[NED_ANNOTATION],
            "team/edge"
        );
        assert_eq!(ned_of(&ds), Some(ObjectRef::new("edge").within("team")));
        let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.host_network, Some(true));
        let term = &pod
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms[0];
        let f = &term.match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (f.key.as_str(), f.values.clone().unwrap()),
            ("metadata.name", vec!["n1".to_string()])
        );
        let c = &pod.containers[0];
        let args = c.args.clone().unwrap();
        assert_eq!(&args[..3], ["edge", "--config-dir", CONFIG_DIR]);
        assert!(
            args.contains(&"--ned-grpc-client-ca".to_string()),
            "{args:?}"
        );
        assert!(!args.contains(&"--ned-grpc-insecure".to_string()));
        let vols = pod.volumes.as_ref().unwrap();
        assert!(vols
            .iter()
            .any(|v| v.secret.as_ref().and_then(|s| s.secret_name.as_deref())
                == Some(super::super::DEFAULT_EDGE_GRPC_SECRET)));
        assert!(vols
            .iter()
            .any(|v| v.host_path.as_ref().map(|h| h.path.as_str()) == Some(OVS_RUN_DIR)));
        assert_eq!(c.image.as_deref(), Some(settings.agent_image.as_str()));

        let insecure = Settings {
            edge_grpc_insecure: true,
            ..Settings::default()
        };
        let (c, _) = edge_container(&s, &insecure).unwrap();
        let ds = daemon_set(&ned(), &nc(&s), c, &insecure);
        let pod = ds.spec.unwrap().template.spec.unwrap();
        assert!(pod.containers[0]
            .args
            .as_ref()
            .unwrap()
            .contains(&"--ned-grpc-insecure".to_string()));
        assert!(pod.volumes.unwrap().iter().all(|v| v.secret.is_none()));
    }

    #[test]
    fn upstream_ned_template_maps_to_the_agent_image_and_others_are_refused() {
        let mut s = spec();
        s.switch_template = Some(
            serde_json::from_value(serde_json::json!({
                "spec": {"hostNetwork": true, "containers": [{"name": "l2sm-switch",
                    "image": "alexdecb/talpa:1.3.8", "args": ["ned"],
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]}
            }))
            .unwrap(),
        );
        let (c, _) = edge_container(&s, &Settings::default()).unwrap();
        assert_eq!(
            c.image.as_deref(),
            Some(Settings::default().agent_image.as_str())
        );
        s.switch_template = Some(
            serde_json::from_value(serde_json::json!({
                "spec": {"containers": [{"name": "x", "image": "evil/root:1"}]}
            }))
            .unwrap(),
        );
        let e = edge_container(&s, &Settings::default()).unwrap_err();
        assert!(e.contains("image"), "{e}");
    }

    #[test]
    fn the_older_edge_device_keeps_the_node() {
        let at = |name: &str, secs: i64| {
            let mut n = ned();
            n.metadata.name = Some(name.into());
            n.metadata.creation_timestamp = Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
            ));
            n
        };
        let (old, young) = (at("zz-old", 10), at("aa-young", 20));
        let all = vec![old.clone(), young.clone()];
        assert_eq!(
            conflicting_ned(&all, &young, "n1"),
            Some("team/zz-old".into())
        );
        assert_eq!(conflicting_ned(&all, &old, "n1"), None);
        assert_eq!(conflicting_ned(&all, &young, "n2"), None);
    }

    #[test]
    fn status_reports_the_edge() {
        let obs = Observed::Deployed {
            node: "n1".into(),
            dpid: 0xab,
            ready: true,
            defaulted: true,
            note: None,
            problem: None,
        };
        let st = compute_status(None, Some(2), &obs, now());
        assert_eq!(st.availability, ConnectivityStatus::Available);
        assert_eq!(st.openflow_id.as_deref(), Some("of:00000000000000ab"));
        let c = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "EdgeRunning")
        );
        assert!(c.message.contains("defaulted"), "{}", c.message);
        let again = compute_status(Some(&st), Some(2), &obs, now());
        assert_eq!(again, st);
        let obs = Observed::Deployed {
            node: "n1".into(),
            dpid: 0xab,
            ready: false,
            defaulted: false,
            note: None,
            problem: None,
        };
        let st = compute_status(Some(&st), Some(2), &obs, now());
        assert_eq!(st.availability, ConnectivityStatus::Unavailable);
        let c = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "EdgeStarting")
        );
    }
}
