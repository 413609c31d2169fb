//! The four custom resources of L2S-M, wire-compatible with the upstream Go operator
//! (`l2sm.l2sm.k8s.local/v1`): same JSON field names, enums, required fields and defaults, so
//! upstream manifests apply unchanged. Additions (never renames): `status.conditions` on every
//! kind, labels/annotations kept in `switchTemplate.metadata`, extra printer columns.

// Several `printcolumn(...)` attributes repeat keys by design; the lint misreads them.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every L2S-M resource.
pub const GROUP: &str = "l2sm.l2sm.k8s.local";
/// API version of every L2S-M resource.
pub const VERSION: &str = "v1";
/// Finalizer the upstream operator puts on everything it finalizes; kept for drop-in upgrades.
pub const FINALIZER: &str = "l2sm.operator.io/finalizer";
/// The condition type every kind reports.
pub const CONDITION_READY: &str = "Ready";
/// The condition type the upstream QuarantinePodRequest controller reports (kept for compatibility).
pub const CONDITION_AVAILABLE: &str = "Available";

fn default_sdn_port() -> String {
    "30808".into()
}
fn default_dns_port() -> String {
    "30053".into()
}
fn default_dns_grpc_port() -> String {
    "30818".into()
}
fn default_of_port() -> String {
    "6633".into()
}
fn default_true() -> bool {
    true
}
fn default_interface_number() -> i64 {
    10
}
fn default_spread_factor() -> String {
    "0.2".into()
}
fn default_export_method() -> String {
    "default".into()
}

/// Schema of `status.conditions`: the metav1 Condition list with the API server's own
/// validation (as controller-gen writes it), a map keyed by `type` so server-side apply merges
/// per condition.
fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "message": {"type": "string", "maxLength": 32768},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "reason": {
                    "type": "string", "minLength": 1, "maxLength": 1024,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
                },
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "type": {
                    "type": "string", "maxLength": 316,
                    "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                }
            }
        }
    })
}

/// Adds `name` to the `required` list of an object schema (for fields that are both defaulted
/// and required upstream: serde's `default` would otherwise drop them from `required`).
fn require(schema: &mut schemars::Schema, name: &str) {
    let entry = schema
        .ensure_object()
        .entry("required")
        .or_insert_with(|| serde_json::json!([]));
    if let Some(list) = entry.as_array_mut() {
        if !list.iter().any(|v| v == name) {
            list.push(name.into());
        }
    }
}

/// A controller (SDN provider) reference: the in-cluster controller for Overlays, an external
/// one for NetworkEdgeDevices and inter-cluster L2Networks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    pub name: String,
    pub domain: Vec<String>,
    #[serde(default = "default_sdn_port")]
    pub sdn_port: String,
    #[serde(default = "default_dns_port")]
    pub dns_port: String,
    #[serde(default = "default_dns_grpc_port")]
    pub dns_grpc_port: String,
    #[serde(default = "default_of_port")]
    pub of_port: String,
}

/// Pod template of a switch (upstream: Overlay and NED). Only `spec.containers` is required.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchTemplateSpec {
    /// Upstream declares a bare object here (so the API server prunes it); we keep labels and
    /// annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SwitchTemplateMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SwitchPodSpec>,
}

/// The part of ObjectMeta a switch template may carry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchTemplateMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The subset of a PodSpec upstream accepts for switch pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchPodSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub volumes: Option<Vec<Volume>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<Container>>,
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
}

/// Link monitoring (LPM) settings of an Overlay or NED.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorSpec {
    pub metrics: Vec<MetricSpec>,
    #[serde(default = "default_spread_factor")]
    pub spread_factor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_metric: Option<ExportMetricSpec>,
    /// Overlay only: pool of the probe-port addresses.
    #[serde(
        rename = "networkCIDR",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub network_cidr: Option<String>,
    /// NED only: the probe address (with prefix) of the NED.
    #[serde(rename = "ipCIDR", default, skip_serializing_if = "Option::is_none")]
    pub ip_cidr: Option<String>,
}

/// One measurement (`rtt`, `jitter`, `throughput` or a script).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    pub name: String,
    /// Minutes between measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_source: Option<ScriptSource>,
}

/// A script in a ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ScriptSource {
    pub name: String,
    pub key: String,
}

/// Where link metrics are exported.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportMetricSpec {
    #[serde(default = "default_export_method")]
    pub method: String,
    #[serde(default = "default_export_method")]
    pub service_account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
}

/// Measured state of one link (part of the upstream schema; reported by later work).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    pub source_node: String,
    pub target_node: String,
    /// `Up`, `Down` or `Degraded`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricValue>>,
}

/// Latest value of one metric.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct MetricValue {
    pub name: String,
    pub value: String,
}

/// Connectivity of a network towards a controller.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConnectivityStatus {
    Available,
    #[default]
    Unavailable,
    Unknown,
}

/// Network type. Upstream sends every type to the same controller API; so do we (vlink paths
/// are a later capability).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub enum NetworkType {
    #[serde(rename = "ext-vnet")]
    ExtVnet,
    #[serde(rename = "vnet")]
    Vnet,
    #[serde(rename = "vlink")]
    Vlink,
}

// ---------------------------------------------------------------- L2Network

/// An isolated link-layer virtual network; its id in the controller is the resource name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "l2sm.l2sm.k8s.local",
    version = "v1",
    kind = "L2Network",
    plural = "l2networks",
    namespaced,
    status = "L2NetworkStatus",
    derive = "PartialEq",
    printcolumn(
        name = "AVAILABILITY",
        type_ = "string",
        json_path = ".status.internalConnectivity",
        description = "Internal SDN Controller Connectivity"
    ),
    printcolumn(
        name = "CONNECTED_PODS",
        type_ = "integer",
        json_path = ".status.connectedPodCount",
        description = "Number of pods in the network"
    ),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        priority = "1"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct L2NetworkSpec {
    #[serde(rename = "type")]
    pub network_type: NetworkType,
    /// Free-form, type-specific configuration (vlink paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Set for inter-cluster networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderSpec>,
    /// Enables address assignment; the prefix length of assigned addresses comes from here.
    #[serde(
        rename = "networkCIDR",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub network_cidr: Option<String>,
    /// The pool (inside `networkCIDR`) addresses are taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_address_range: Option<String>,
    /// Traffic mirroring to an IDS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<IdsRules>,
}

/// IDS settings of a network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = ids_required)]
pub struct IdsRules {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_net_cidr: Option<Vec<String>>,
    #[serde(default = "default_true")]
    pub use_emerging_threats_open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_rule_sources: Option<Vec<RuleSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_ports: Option<Vec<i32>>,
    pub node: String,
    pub profile: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Upstream lists the two defaulted booleans as required too.
fn ids_required(schema: &mut schemars::Schema) {
    require(schema, "enabled");
    require(schema, "useEmergingThreatsOpen");
}

/// A set of IDS rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleSource {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapRef>,
}

/// A ConfigMap in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ConfigMapRef {
    pub name: String,
}

/// Observed state of an L2Network.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = l2network_status_required)]
pub struct L2NetworkStatus {
    #[serde(default)]
    pub connected_pod_count: i64,
    #[serde(
        rename = "lastAssignedIP",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_assigned_ip: Option<String>,
    /// Address (without prefix) -> pod name.
    #[serde(
        rename = "assignedIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub assigned_ips: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub internal_connectivity: ConnectivityStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_connectivity: Option<ConnectivityStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_attachment: Option<ProviderAttachment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Where a provider network is attached, as the operator made it (an addition to upstream's
/// status): the provider address that answered, whether this cluster created the network
/// there, the edge device and node, and the two member ports of the cluster-to-edge hop. Read
/// when the network is deleted, to undo exactly this.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderAttachment {
    pub provider_url: String,
    #[serde(default)]
    pub created: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_port: Option<String>,
}

fn l2network_status_required(schema: &mut schemars::Schema) {
    require(schema, "internalConnectivity");
}

// ---------------------------------------------------------------- Overlay

/// The switch fabric: which nodes get a switch and how they are linked.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "l2sm.l2sm.k8s.local",
    version = "v1",
    kind = "Overlay",
    plural = "overlays",
    namespaced,
    status = "OverlayStatus",
    derive = "PartialEq",
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct OverlaySpec {
    /// The in-cluster controller the switches connect to.
    pub provider: ProviderSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<TopologySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_template: Option<SwitchTemplateSpec>,
    /// Upstream pre-creates this many ports per node; ports here are created on demand, so the
    /// value is accepted and only reported.
    #[serde(default = "default_interface_number")]
    pub interface_number: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorSpec>,
}

/// Nodes with a switch and the bidirectional links between them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct TopologySpec {
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<Link>>,
}

/// A bidirectional link between two nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Link {
    #[serde(rename = "endpointA")]
    pub endpoint_a: String,
    #[serde(rename = "endpointB")]
    pub endpoint_b: String,
}

/// Observed state of an Overlay.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverlayStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_metrics: Option<Vec<LinkStatus>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------- NetworkEdgeDevice

/// The edge switch of a cluster towards other clusters (`l2sm edge`, deployed by the operator).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "l2sm.l2sm.k8s.local",
    version = "v1",
    kind = "NetworkEdgeDevice",
    plural = "networkedgedevices",
    namespaced,
    status = "NetworkEdgeDeviceStatus",
    derive = "PartialEq",
    printcolumn(name = "STATUS", type_ = "string", json_path = ".status.availability"),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        priority = "1"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkEdgeDeviceSpec {
    /// The external (provider) controller.
    pub provider: ProviderSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_config: Option<NodeConfigSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbors: Option<Vec<NeighborSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_template: Option<SwitchTemplateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorSpec>,
}

/// Where the NED runs and its tunnel address.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfigSpec {
    pub node_name: String,
    pub ip_address: String,
}

/// A remote NED.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NeighborSpec {
    pub node: String,
    pub domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lpm_ip: Option<String>,
}

/// Observed state of a NED.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = ned_status_required)]
pub struct NetworkEdgeDeviceStatus {
    #[serde(default)]
    pub availability: ConnectivityStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_neighbors: Option<Vec<NeighborSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openflow_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_metrics: Option<Vec<LinkStatus>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

fn ned_status_required(schema: &mut schemars::Schema) {
    require(schema, "availability");
}

// ---------------------------------------------------------------- QuarantinePodRequest

/// Moves the selected pods' ports from their (single, selected) network to `targetL2Network`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "l2sm.l2sm.k8s.local",
    version = "v1",
    kind = "QuarantinePodRequest",
    plural = "quarantinepodrequests",
    namespaced,
    status = "QuarantinePodRequestStatus",
    derive = "PartialEq",
    printcolumn(
        name = "TARGET",
        type_ = "string",
        json_path = ".spec.targetL2Network",
        priority = "1"
    ),
    printcolumn(
        name = "MOVED",
        type_ = "integer",
        json_path = ".status.movedPodCount",
        priority = "1"
    ),
    printcolumn(
        name = "READY",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        priority = "1"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinePodRequestSpec {
    pub selector: QuarantineSelector,
    #[serde(rename = "targetL2Network")]
    #[schemars(length(min = 1))]
    pub target_l2_network: String,
}

/// Which pods, on which network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineSelector {
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub pod_label_selector: LabelSelector,
    #[serde(rename = "l2NetworkSelector")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub l2_network_selector: LabelSelector,
}

/// Observed state of a QuarantinePodRequest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinePodRequestStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(
        rename = "sourceL2NetworkName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub source_l2_network_name: Option<String>,
    #[serde(
        rename = "targetL2NetworkName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target_l2_network_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_pod_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_pod_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------- conditions

/// Builds a metav1 Condition (`status` is `"True"`, `"False"` or `"Unknown"`).
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: now,
    }
}

/// Inserts or replaces the condition of the same type, keeping `lastTransitionTime` when the
/// status did not change (the Kubernetes convention). Returns whether anything changed, so a
/// reconciler can skip a no-op status write.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            let transition = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            let updated = Condition {
                last_transition_time: transition,
                ..new
            };
            if *old == updated {
                false
            } else {
                *old = updated;
                true
            }
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// The condition of a type, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
