//! Every Kubernetes API call the operator makes, one row per (resource, verb, scope), with the
//! reason. `deploy/rbac.yaml` grants exactly this table (checked both ways by
//! `tests/rbac.rs`), and tests driving the reconcilers against `l2sm-kube-fake` can check each
//! recorded call with [`permits`].
//!
//! Adding a call to the code means adding its row here (the RBAC test then says which rule
//! `deploy/rbac.yaml` lacks). A `kube::runtime` `Controller` or watcher on a resource is a
//! `list` and a `watch`; the `finalizer` helper is a `patch` (JSON patch) of the main
//! resource; server-side apply is a `patch`, and also a `create` when it may create the
//! object (the API server authorizes an apply that creates as `create`); `get_opt` is a
//! `get`; `replace` is an `update`; `list_metadata` is a `list`.

use crate::leader::DEFAULT_LEASE_NAME;
use crate::switch_cert::signer::DEFAULT_CA_SECRET;
use crate::switch_cert::SIGNER_NAME;

/// A Kubernetes verb, as RBAC names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    /// Read one object.
    Get,
    /// Read a collection.
    List,
    /// Stream changes of a collection.
    Watch,
    /// POST a new object.
    Create,
    /// PUT an object.
    Update,
    /// PATCH an object (merge, JSON, or server-side apply).
    Patch,
    /// DELETE an object.
    Delete,
    /// Approve CertificateSigningRequests of a signer (`signers`, named by the signer).
    Approve,
    /// Sign CertificateSigningRequests of a signer (`signers`, named by the signer).
    Sign,
}

impl Verb {
    /// The RBAC name of the verb.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::Approve => "approve",
            Verb::Sign => "sign",
        }
    }

    /// The verb of an RBAC name (`deletecollection` and other verbs the operator never uses
    /// are None).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "get" => Verb::Get,
            "list" => Verb::List,
            "watch" => Verb::Watch,
            "create" => Verb::Create,
            "update" => Verb::Update,
            "patch" => Verb::Patch,
            "delete" => Verb::Delete,
            "approve" => Verb::Approve,
            "sign" => Verb::Sign,
            _ => return None,
        })
    }
}

/// Where a call acts, which decides the kind of RBAC rule that grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A cluster-scoped kind (Nodes, webhook configurations): a ClusterRole.
    Cluster,
    /// A namespaced kind in any namespace, or across all of them: a ClusterRole.
    Namespaced,
    /// A namespaced kind only in the operator's own namespace (`--namespace`,
    /// `l2sm-system`): a Role there.
    OperatorNamespace,
    /// Only in CoreDNS's namespace ([`COREDNS_NAMESPACE`]): a Role there.
    CoreDnsNamespace,
}

/// Namespace of CoreDNS's ConfigMap the RBAC grants (`--coredns-configmap`'s default).
pub const COREDNS_NAMESPACE: &str = crate::coredns::DEFAULT_CONFIGMAP.0;

/// One call the operator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiCall {
    /// API group ("" for the core group).
    pub group: &'static str,
    /// Plural resource name.
    pub resource: &'static str,
    /// Subresource (`status`, `finalizers`), if any.
    pub subresource: Option<&'static str>,
    /// The verb.
    pub verb: Verb,
    /// Where it acts.
    pub scope: Scope,
    /// The only object it acts on, when the name is fixed (RBAC `resourceNames`).
    pub name: Option<&'static str>,
    /// Why the operator makes it (code path).
    pub reason: &'static str,
}

impl ApiCall {
    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn resource_path(&self) -> String {
        match self.subresource {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.to_string(),
        }
    }
}

const L2SM: &str = "l2sm.l2sm.k8s.local";
const NAD: &str = "k8s.cni.cncf.io";
const CERTS: &str = "certificates.k8s.io";

const fn call(
    group: &'static str,
    resource: &'static str,
    subresource: Option<&'static str>,
    verb: Verb,
    scope: Scope,
    reason: &'static str,
) -> ApiCall {
    ApiCall {
        group,
        resource,
        subresource,
        verb,
        scope,
        name: None,
        reason,
    }
}

const fn named(c: ApiCall, name: &'static str) -> ApiCall {
    ApiCall {
        name: Some(name),
        ..c
    }
}

use Scope::{Cluster, CoreDnsNamespace, Namespaced, OperatorNamespace};
use Verb::{Approve, Create, Delete, Get, List, Patch, Sign, Update, Watch};

/// The table.
pub const API_CALLS: &[ApiCall] = &[
    // L2Network (reconcile/l2network.rs, operator.rs, webhook.rs, reconcile/quarantine.rs)
    call(L2SM, "l2networks", None, List, Namespaced, "operator.rs: the L2Network Controller's watcher (list); webhook.rs KubeCatalog::find (list_metadata by name, all namespaces); quarantine.rs: source networks by selector"),
    call(L2SM, "l2networks", None, Watch, Namespaced, "operator.rs: the L2Network Controller's watcher"),
    call(L2SM, "l2networks", None, Get, Namespaced, "reconcile/quarantine.rs: the target network exists (get_opt)"),
    call(L2SM, "l2networks", None, Patch, Namespaced, "reconcile/l2network.rs: kube finalizer helper adds/removes the finalizer (JSON patch); reconcile/ids.rs: the network-name label (merge patch)"),
    call(L2SM, "l2networks", Some("status"), Patch, Namespaced, "reconcile/mod.rs patch_status: network status"),
    // Overlay (reconcile/overlay.rs, operator.rs)
    call(L2SM, "overlays", None, List, Namespaced, "operator.rs: the Overlay Controller's watcher"),
    call(L2SM, "overlays", None, Watch, Namespaced, "operator.rs: the Overlay Controller's watcher"),
    call(L2SM, "overlays", None, Patch, Namespaced, "reconcile/overlay.rs: kube finalizer helper adds/removes the finalizer (JSON patch)"),
    call(L2SM, "overlays", Some("status"), Patch, Namespaced, "reconcile/mod.rs patch_status: overlay status"),
    // NetworkEdgeDevice (reconcile/nedevice.rs, operator.rs)
    call(L2SM, "networkedgedevices", None, List, Namespaced, "operator.rs: the NetworkEdgeDevice Controller's watcher and the L2Network Controller's watch of edge devices; reconcile/provider_net.rs: the edge device of a provider (all namespaces); nedevice.rs: one edge per node (all namespaces)"),
    call(L2SM, "networkedgedevices", None, Watch, Namespaced, "operator.rs: the NetworkEdgeDevice Controller's watcher and the L2Network Controller's watch of edge devices"),
    call(L2SM, "networkedgedevices", None, Patch, Namespaced, "reconcile/nedevice.rs: kube finalizer helper adds/removes the finalizer (JSON patch)"),
    call(L2SM, "networkedgedevices", Some("status"), Patch, Namespaced, "reconcile/mod.rs patch_status: device status"),
    // QuarantinePodRequest (reconcile/quarantine.rs, operator.rs)
    call(L2SM, "quarantinepodrequests", None, List, Namespaced, "operator.rs: the QuarantinePodRequest Controller's watcher"),
    call(L2SM, "quarantinepodrequests", None, Watch, Namespaced, "operator.rs: the QuarantinePodRequest Controller's watcher"),
    call(L2SM, "quarantinepodrequests", Some("status"), Patch, Namespaced, "reconcile/mod.rs patch_status: request status"),
    // Pods (reconcile/pod.rs, reconcile/l2network.rs, reconcile/quarantine.rs, operator.rs)
    call("", "pods", None, List, Namespaced, "operator.rs: the Pod Controller and the L2Network/QuarantinePodRequest watches of l2sm pods; l2network.rs and pod.rs list l2sm pods; quarantine.rs pods by selector; overlay.rs and nedevice.rs: agent and edge pods (operator namespace) when not ready"),
    call("", "pods", None, Watch, Namespaced, "operator.rs: the Pod Controller and the L2Network/QuarantinePodRequest watches of l2sm pods"),
    call("", "pods", None, Patch, Namespaced, "reconcile/pod.rs and quarantine.rs: the l2sm/status annotation (merge patch); pod.rs: kube finalizer helper (JSON patch)"),
    call("", "pods", None, Get, Namespaced, "reconcile/pod.rs and quarantine.rs: read the pod again after a 409 on a write guarded by its resourceVersion (l2sm/status, finalizer); switch_cert/signer.rs: the agent pod a switch certificate request claims to come from"),
    // Nodes (reconcile/overlay.rs)
    call("", "nodes", None, List, Cluster, "reconcile/overlay.rs: node addresses for the topology; nedevice.rs, provider_net.rs: the default edge node (first control-plane node)"),
    call("", "nodes", None, Watch, Cluster, "operator.rs: the node cache (reflector) reconcile/overlay.rs reads node addresses from"),
    // Events (reconcile/mod.rs cleanup_abandoned, kube Recorder) in the object's namespace.
    call("events.k8s.io", "events", None, Create, Namespaced, "reconcile/mod.rs cleanup_abandoned: Warning Event CleanupAbandoned when a finalizer is released without its cleanup"),
    call("events.k8s.io", "events", None, Patch, Namespaced, "kube Recorder: the same event again is recorded as a series (patch)"),
    // NetworkAttachmentDefinitions (reconcile/l2network.rs)
    call(NAD, "network-attachment-definitions", None, Patch, Namespaced, "reconcile/l2network.rs: server-side apply of each network's NAD (creates it when missing)"),
    call(NAD, "network-attachment-definitions", None, Create, Namespaced, "reconcile/l2network.rs: the apply that creates a missing NAD is authorized as create"),
    call(NAD, "network-attachment-definitions", None, List, Namespaced, "reconcile/l2network.rs cleanup: the network's NADs in every namespace (label selector)"),
    call(NAD, "network-attachment-definitions", None, Delete, Namespaced, "reconcile/l2network.rs cleanup: delete the network's NADs"),
    // Agent DaemonSets and topology ConfigMaps, only in the operator's namespace (beside the
    // credentials Secret), whatever namespace the Overlay is in (reconcile/overlay.rs, operator.rs)
    call("apps", "daemonsets", None, List, OperatorNamespace, "operator.rs: the Overlay Controller watches agent DaemonSets (app=l2sm-agent), the NetworkEdgeDevice Controller edge DaemonSets (app=l2sm-edge)"),
    call("apps", "daemonsets", None, Watch, OperatorNamespace, "operator.rs: the Overlay Controller watches agent DaemonSets (app=l2sm-agent), the NetworkEdgeDevice Controller edge DaemonSets (app=l2sm-edge)"),
    call("apps", "daemonsets", None, Patch, OperatorNamespace, "reconcile/overlay.rs, nedevice.rs: server-side apply of the agent and edge DaemonSets"),
    call("apps", "daemonsets", None, Create, OperatorNamespace, "reconcile/overlay.rs, nedevice.rs: the apply that creates an agent or edge DaemonSet is authorized as create"),
    call("apps", "daemonsets", None, Delete, OperatorNamespace, "reconcile/overlay.rs, nedevice.rs cleanup: delete the agent or edge DaemonSet"),
    call("", "configmaps", None, Patch, OperatorNamespace, "reconcile/overlay.rs: server-side apply of the topology ConfigMap; nedevice.rs: of the edge ConfigMap (config.json, neighbors.json)"),
    call("", "configmaps", None, Create, OperatorNamespace, "reconcile/overlay.rs, nedevice.rs: the apply that creates a topology or edge ConfigMap is authorized as create"),
    call("", "configmaps", None, Delete, OperatorNamespace, "reconcile/overlay.rs, nedevice.rs cleanup: delete the topology or edge ConfigMap"),
    // IDS (reconcile/ids.rs): Suricata Deployments and rules ConfigMaps in the operator's
    // namespace, the mirror NADs there (rows above), rule ConfigMaps read where the network is.
    call("", "configmaps", None, Get, Namespaced, "reconcile/ids.rs: the ConfigMaps customRuleSources[].configMapRef names, in the network's namespace (get_opt)"),
    call("", "configmaps", None, List, OperatorNamespace, "reconcile/ids.rs remove: the IDS rules ConfigMaps of a network (label selector)"),
    call("apps", "deployments", None, Patch, OperatorNamespace, "reconcile/ids.rs: server-side apply of the IDS Deployment"),
    call("apps", "deployments", None, Create, OperatorNamespace, "reconcile/ids.rs: the apply that creates an IDS Deployment is authorized as create"),
    call("apps", "deployments", None, List, OperatorNamespace, "reconcile/ids.rs remove: the IDS Deployments of a network (label selector)"),
    call("apps", "deployments", None, Delete, OperatorNamespace, "reconcile/ids.rs remove: delete the IDS Deployment (spec.ids removed, network deleted)"),
    // The CoreDNS stanza (coredns.rs): CoreDNS's ConfigMap (kube-system/coredns by default) and
    // the controller's Service (its cluster IP and DNS port).
    named(call("", "configmaps", None, Get, CoreDnsNamespace, "coredns.rs sync_once: read the Corefile (get_opt)"), crate::coredns::DEFAULT_CONFIGMAP.1),
    named(call("", "configmaps", None, Patch, CoreDnsNamespace, "coredns.rs sync_once: write the Corefile (merge patch of data.Corefile guarded by the resourceVersion read)"), crate::coredns::DEFAULT_CONFIGMAP.1),
    named(call("", "services", None, Get, OperatorNamespace, "coredns.rs service_target: the controller Service's cluster IP and DNS port"), "l2sm-controller-service"),
    // Leader election (leader.rs) in the operator's namespace.
    named(call("coordination.k8s.io", "leases", None, Get, OperatorNamespace, "leader.rs: read the Lease (get_opt) to acquire, renew and release"), DEFAULT_LEASE_NAME),
    call("coordination.k8s.io", "leases", None, Create, OperatorNamespace, "leader.rs: create the Lease when missing"),
    named(call("coordination.k8s.io", "leases", None, Update, OperatorNamespace, "leader.rs: take, renew and release the Lease (replace with its resourceVersion)"), DEFAULT_LEASE_NAME),
    // Webhook self-signed bootstrap: one CA and serving certificate for every replica
    // (webhook.rs shared_self_signed, operator.rs webhook_tls).
    named(call("", "secrets", None, Get, OperatorNamespace, "webhook.rs shared_self_signed: read the shared self-signed pair (get_opt)"), "l2sm-webhook-self-signed"),
    call("", "secrets", None, Create, OperatorNamespace, "webhook.rs shared_self_signed: the first replica stores the pair (409 means another did)"),
    named(call("", "secrets", None, Update, OperatorNamespace, "webhook.rs shared_self_signed: rotate a pair that no longer fits (replace with its resourceVersion)"), "l2sm-webhook-self-signed"),
    named(call("admissionregistration.k8s.io", "mutatingwebhookconfigurations", None, Patch, Cluster, "operator.rs webhook_tls: write the self-signed CA into caBundle (JSON patch)"), "l2sm-mutating-webhook-configuration"),
    // Switch certificates (switch_cert/signer.rs): the signer of l2sm.l2sm.k8s.local/switch.
    call(CERTS, "certificatesigningrequests", None, List, Cluster, "switch_cert/signer.rs: the CertificateSigningRequest Controller's watcher"),
    call(CERTS, "certificatesigningrequests", None, Watch, Cluster, "switch_cert/signer.rs: the CertificateSigningRequest Controller's watcher"),
    call(CERTS, "certificatesigningrequests", Some("approval"), Update, Cluster, "switch_cert/signer.rs: approve or deny a switch certificate request (replace /approval)"),
    call(CERTS, "certificatesigningrequests", Some("status"), Update, Cluster, "switch_cert/signer.rs: write the issued certificate, or Failed (replace /status)"),
    named(call(CERTS, "signers", None, Approve, Cluster, "switch_cert/signer.rs: the API server lets only approvers of the signer approve its requests"), SIGNER_NAME),
    named(call(CERTS, "signers", None, Sign, Cluster, "switch_cert/signer.rs: the API server lets only signers of the signer write status.certificate"), SIGNER_NAME),
    named(call("", "secrets", None, Get, OperatorNamespace, "switch_cert/signer.rs: the switch CA's certificate and key"), DEFAULT_CA_SECRET),
];

/// Every Kubernetes API call of the node agents' ServiceAccount (`l2sm-agent`, bound in
/// `deploy/rbac.yaml`): only `l2sm agent-cert` ([`crate::switch_cert::agent`]) talks to the
/// API server. No `delete`: an agent that could delete requests could delete other nodes'
/// pending ones (the API server garbage-collects issued requests after an hour).
pub const AGENT_API_CALLS: &[ApiCall] = &[
    call(CERTS, "certificatesigningrequests", None, Create, Cluster, "switch_cert/agent.rs: request this node's switch certificate"),
    call(CERTS, "certificatesigningrequests", None, Get, Cluster, "switch_cert/agent.rs: wait for the request's certificate (get, polled; a name per key, so no resourceNames)"),
];

/// Every Kubernetes API call of the IDS pods' ServiceAccount (`l2sm-ids-watcher`, bound in
/// `deploy/rbac.yaml`): `l2sm ids-watch` ([`crate::ids_watch`]). It may create
/// QuarantinePodRequests and read what finds the offending pod; nothing else (no update or
/// delete of requests, no writes to pods or networks).
pub const IDS_WATCH_API_CALLS: &[ApiCall] = &[
    call(
        L2SM,
        "quarantinepodrequests",
        None,
        Create,
        Namespaced,
        "ids_watch.rs: the request for the pod an alert came from (409: it exists, a duplicate)",
    ),
    call(
        L2SM,
        "l2networks",
        None,
        Get,
        Namespaced,
        "ids_watch.rs refresh: the network's status.assignedIPs (address -> pod)",
    ),
    call(
        "",
        "pods",
        None,
        List,
        Namespaced,
        "ids_watch.rs refresh: the network's pods (label l2sm=true) and their l2sm/status MACs",
    ),
    call(
        "events.k8s.io",
        "events",
        None,
        Create,
        Namespaced,
        "ids_watch.rs: an Event on the request naming the alert",
    ),
];

/// Whether [`IDS_WATCH_API_CALLS`] allows this request (as [`allows`] for the operator).
pub fn ids_watch_allows(
    group: &str,
    resource: &str,
    subresource: Option<&str>,
    verb: &str,
    namespace: Option<&str>,
    name: Option<&str>,
    operator_namespace: &str,
) -> bool {
    table_allows(
        IDS_WATCH_API_CALLS,
        (group, resource, subresource, verb),
        namespace,
        name,
        operator_namespace,
    )
}

/// Whether [`AGENT_API_CALLS`] allows this request (as [`allows`] for the operator).
pub fn agent_allows(
    group: &str,
    resource: &str,
    subresource: Option<&str>,
    verb: &str,
    namespace: Option<&str>,
    name: Option<&str>,
    operator_namespace: &str,
) -> bool {
    table_allows(
        AGENT_API_CALLS,
        (group, resource, subresource, verb),
        namespace,
        name,
        operator_namespace,
    )
}

/// Whether the table, as `deploy/rbac.yaml` grants it, allows this request: a row for the
/// group, resource, subresource and verb whose scope covers `namespace` (None: cluster scope
/// or every namespace) and whose fixed name, if any, is `name`. What tests give the fake API
/// server as its RBAC.
pub fn allows(
    group: &str,
    resource: &str,
    subresource: Option<&str>,
    verb: &str,
    namespace: Option<&str>,
    name: Option<&str>,
    operator_namespace: &str,
) -> bool {
    table_allows(
        API_CALLS,
        (group, resource, subresource, verb),
        namespace,
        name,
        operator_namespace,
    )
}

fn table_allows(
    table: &[ApiCall],
    (group, resource, subresource, verb): (&str, &str, Option<&str>, &str),
    namespace: Option<&str>,
    name: Option<&str>,
    operator_namespace: &str,
) -> bool {
    table.iter().any(|c| {
        c.group == group
            && c.resource == resource
            && c.subresource == subresource
            && c.verb.as_str() == verb
            && match c.scope {
                Scope::Cluster => namespace.is_none(),
                Scope::Namespaced => true,
                Scope::OperatorNamespace => namespace == Some(operator_namespace),
                Scope::CoreDnsNamespace => namespace == Some(COREDNS_NAMESPACE),
            }
            && c.name.is_none_or(|fixed| name == Some(fixed))
    })
}

/// Whether the table has a row for this call (group, resource, subresource, verb as the
/// fake API server records them; `watch` and `list` are distinct verbs).
pub fn permits(group: &str, resource: &str, subresource: Option<&str>, verb: &str) -> bool {
    API_CALLS.iter().any(|c| {
        c.group == group
            && c.resource == resource
            && c.subresource == subresource
            && c.verb.as_str() == verb
    })
}
