//! The reconcilers. Each one is level-triggered: it reads the object, the controller's state
//! and the related Kubernetes objects, computes what should be (pure functions, unit-tested
//! without I/O) and applies the difference. Every step is idempotent, so a failure anywhere is
//! handled by running the whole reconcile again later, with exponential backoff per object.

pub mod ids;
pub mod l2network;
pub mod link_metrics;
pub mod nedevice;
pub mod overlay;
pub mod pod;
pub mod provider_net;
pub mod quarantine;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use l2sm_api::{ClientError, ControllerClient};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Annotation the Pod reconciler writes: the pod's attachments as the system sees them.
pub const STATUS_ANNOTATION: &str = "l2sm/status";
/// Label the webhook selects pods by (upstream's).
pub const POD_LABEL: &str = "l2sm";
/// Label the operator sets, together with its finalizer, on a pod it has something to clean up
/// for (ports, addresses). A watch on this label (not on [`POD_LABEL`]) finalizes the pod, so
/// a pod whose `l2sm` label is removed is still released when it is deleted.
pub const CLEANUP_LABEL: &str = "l2sm.l2sm.k8s.local/cleanup";
/// Multus's annotation with the attachments it made (interface, addresses, MAC).
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// Label on the NADs written by earlier versions for the L2Network `<namespace>.<name>` (one
/// owner only; read when cleaning up, replaced by per-namespace owner labels).
pub const NETWORK_LABEL: &str = "l2sm.l2sm.k8s.local/network";
/// Field manager of the operator's server-side applies.
pub const FIELD_MANAGER: &str = "l2sm-operator";
/// Reason of the Warning Event recorded when a finalizer is released without its cleanup.
pub const CLEANUP_ABANDONED: &str = "CleanupAbandoned";

/// How long a reconciler waits for a cache (reflector store) to be filled after a start.
const STORE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// What the reconcilers need besides the object.
pub struct Context {
    /// Kubernetes API.
    pub kube: kube::Client,
    /// Our controller's REST API.
    pub controller: ControllerClient,
    /// Operator settings.
    pub settings: Settings,
    /// The cluster's edge switches (provider networks).
    pub edge: Arc<dyn crate::edge::EdgeConnector>,
    /// Provider controllers (provider networks).
    pub provider: crate::provider::ProviderClient,
    /// Events about the reconciled objects (`events.k8s.io/v1`).
    pub recorder: Recorder,
    pods: OnceLock<Store<Pod>>,
    nodes: OnceLock<Store<Node>>,
    failures: Mutex<HashMap<String, u32>>,
    /// When each object's `status.linkMetrics` was last refreshed ([`link_metrics`]).
    pub(crate) link_metrics_at: Mutex<HashMap<String, std::time::Instant>>,
}

/// Operator settings the reconcilers use.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Image of the node agent (`l2sm agent`), used unless a switch template names another
    /// from [`Settings::allowed_agent_images`].
    pub agent_image: String,
    /// Other images an Overlay's `switchTemplate` may run the agent with (exact references,
    /// or `repository:*` for any tag or digest of a repository); any other image is refused.
    pub allowed_agent_images: Vec<String>,
    /// Which namespaces may use an L2Network (`--network-scope`).
    pub network_scope: crate::scope::NetworkScope,
    /// Controller REST URL the agents use.
    pub controller_url: String,
    /// Secret with keys `username` and `password` the agents read their API credentials
    /// from (`--agent-api-auth credentials`); None: no Secret in the agent pods.
    pub credentials_secret: Option<String>,
    /// The agents authenticate to the controller's REST API with their node's switch
    /// certificate (`--controller-api-cert/-key/-ca`).
    pub agent_api_certificate: bool,
    /// The agent pods get their node's switch certificate themselves (`l2sm agent-cert` init
    /// container with a pod-bound ServiceAccount token); false: placed by hand.
    pub switch_certs_auto: bool,
    /// ServiceAccount of the agent pods.
    pub agent_service_account: String,
    /// How often an object is re-checked when nothing happens (drift with the controller).
    pub resync: Duration,
    /// First retry delay after a failure; doubled per consecutive failure.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// The operator's own namespace: the agent DaemonSets and topology ConfigMaps of every
    /// Overlay live here (beside the credentials Secret), whatever the Overlay's namespace.
    pub namespace: String,
    /// Host directory the agents' init container installs the CNI plugin into (the
    /// directory Multus and the container runtime look up CNI plugins in).
    pub cni_bin_dir: String,
    /// PriorityClass of the agent pods (none: the default priority).
    pub agent_priority_class: Option<String>,
    /// How long after its deletion an object's cleanup is retried while it fails (controller
    /// unreachable); then the finalizer is released anyway, with a Warning Event.
    pub cleanup_timeout: Duration,
    /// Credentials sent to provider controllers (default: upstream's `karaf:karaf`).
    pub provider_credentials: Option<crate::provider::Credentials>,
    /// Deadline of one call to a provider controller.
    pub provider_timeout: Duration,
    /// The edge switches serve cleartext gRPC (`--ned-grpc-insecure`) instead of TLS with
    /// client certificates.
    pub edge_grpc_insecure: bool,
    /// Secret (in [`Settings::namespace`]; `tls.crt`, `tls.key`, `ca.crt`) mounted into the
    /// edge pods: their gRPC server certificate and the CA the operator's client certificate
    /// must chain to.
    pub edge_grpc_secret: String,
    /// IDS (`L2Network.spec.ids`): Suricata image, resources, alert watcher rate.
    pub ids: ids::IdsSettings,
}

/// Default of [`Settings::edge_grpc_secret`].
pub const DEFAULT_EDGE_GRPC_SECRET: &str = "l2sm-edge-grpc-tls";

/// Default of [`Settings::cleanup_timeout`].
pub const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            agent_image: "ghcr.io/l2sm/l2sm:latest".into(),
            allowed_agent_images: Vec::new(),
            network_scope: crate::scope::NetworkScope::Global,
            controller_url: "https://l2sm-controller-service.l2sm-system.svc:8181".into(),
            credentials_secret: None,
            agent_api_certificate: true,
            switch_certs_auto: true,
            agent_service_account: crate::switch_cert::signer::DEFAULT_AGENT_SERVICE_ACCOUNT.into(),
            resync: Duration::from_secs(300),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            namespace: "l2sm-system".into(),
            cni_bin_dir: "/opt/cni/bin".into(),
            agent_priority_class: Some("l2sm-node-critical".into()),
            cleanup_timeout: DEFAULT_CLEANUP_TIMEOUT,
            provider_credentials: Some(crate::provider::Credentials::upstream()),
            provider_timeout: Duration::from_secs(10),
            edge_grpc_insecure: false,
            edge_grpc_secret: DEFAULT_EDGE_GRPC_SECRET.into(),
            ids: ids::IdsSettings::default(),
        }
    }
}

impl Context {
    /// A context for the reconcilers, without an edge client (provider networks then report
    /// `EdgeClientMissing`).
    pub fn new(kube: kube::Client, controller: ControllerClient, settings: Settings) -> Arc<Self> {
        Self::with_edge(kube, controller, settings, Arc::new(crate::edge::Unwired))
    }

    /// A context for the reconcilers calling the edge switches through `edge`.
    pub fn with_edge(
        kube: kube::Client,
        controller: ControllerClient,
        settings: Settings,
        edge: Arc<dyn crate::edge::EdgeConnector>,
    ) -> Arc<Self> {
        let provider = crate::provider::ProviderClient::new(
            settings.provider_credentials.as_ref(),
            settings.provider_timeout,
        );
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Arc::new(Context {
            recorder: Recorder::new(kube.clone(), reporter),
            kube,
            controller,
            settings,
            edge,
            provider,
            pods: OnceLock::new(),
            nodes: OnceLock::new(),
            failures: Mutex::new(HashMap::new()),
            link_metrics_at: Mutex::new(HashMap::new()),
        })
    }

    /// Reads the pods labelled `l2sm=true` from `store` instead of listing them (the Pod
    /// controller's cache). Only the first store given is kept; returns whether it was.
    pub fn set_pod_store(&self, store: Store<Pod>) -> bool {
        self.pods.set(store).is_ok()
    }

    /// Reads the Nodes from `store` instead of listing them. Only the first store given is
    /// kept; returns whether it was.
    pub fn set_node_store(&self, store: Store<Node>) -> bool {
        self.nodes.set(store).is_ok()
    }

    /// Delay before retrying `key` after one more consecutive failure.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.settings
            .initial_backoff
            .saturating_mul(factor)
            .min(self.settings.max_backoff)
    }

    /// Forgets the failures of `key` (it reconciled).
    pub fn reset_backoff(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Why a reconcile did not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (conflict, server error, …).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A controller call failed.
    #[error(transparent)]
    Controller(#[from] ClientError),
    /// Adding or removing the finalizer, or the step it guards, failed.
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// Something must happen first (e.g. a pod's containers must stop); not a failure.
    #[error("waiting: {0}")]
    Waiting(String),
    /// The cleanup of a deleted object failed; it is retried until `abandon_in` has passed,
    /// then its finalizer is released anyway.
    #[error("cleanup failed (given up in {}s if it keeps failing): {error}", abandon_in.as_secs())]
    Cleanup {
        /// Why.
        error: Box<Error>,
        /// Time left before the cleanup is given up.
        abandon_in: Duration,
    },
    /// A provider network could not be connected (provider controller or edge switch);
    /// the condition says why.
    #[error("provider network: {0}")]
    Provider(String),
    /// A status could not be encoded.
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<finalizer::Error<Error>> for Error {
    fn from(e: finalizer::Error<Error>) -> Self {
        Error::Finalizer(Box::new(e))
    }
}

/// Result of a reconcile.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `kind/namespace/name`, the key of per-object backoff.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Requeue after a failure, with exponential backoff per object.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = object_key(&*obj);
    let mut wait = ctx.next_backoff(&key);
    if let Some(left) = abandon_in(err) {
        // Look again when the cleanup is due to be given up, not a full backoff later.
        wait = wait.min(left.max(Duration::from_secs(1)));
    }
    tracing::warn!(object = %key, ?wait, "reconcile failed: {err}");
    Action::requeue(wait)
}

/// The time left before a failing cleanup is given up, if `err` is one.
fn abandon_in(err: &Error) -> Option<Duration> {
    match err {
        Error::Cleanup { abandon_in, .. } => Some(*abandon_in),
        Error::Finalizer(f) => match &**f {
            finalizer::Error::CleanupFailed(e) => abandon_in(e),
            _ => None,
        },
        _ => None,
    }
}

/// Runs a reconcile and resets the object's backoff when it succeeds.
pub(crate) async fn tracked<K, F>(obj: &K, ctx: &Context, run: F) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
    F: std::future::Future<Output = Result<Action>>,
{
    let out = run.await;
    if out.is_ok() {
        ctx.reset_backoff(&object_key(obj));
    }
    out
}

/// The current time as a Kubernetes timestamp.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// `"True"` or `"False"`.
pub(crate) fn bool_status(ok: bool) -> &'static str {
    if ok {
        "True"
    } else {
        "False"
    }
}

/// RFC 7386 merge patch turning `old` into `new`: keys only in `old` become `null` (deleted),
/// changed keys get their new value (objects recursively, anything else replaced whole).
pub fn merge_diff(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::{Map, Value};
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Map::new();
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            for (k, v) in n {
                match o.get(k) {
                    Some(ov) if ov == v => {}
                    Some(ov) => {
                        out.insert(k.clone(), merge_diff(ov, v));
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

/// Makes `status` the status of `obj`, exactly: nothing is written when `current` already is
/// it (compared as the API stores it, so sub-second timestamps do not count), otherwise a
/// server-side apply on `/status` by [`FIELD_MANAGER`] (forced: the operator owns the status
/// of its resources) sets it, and the keys `status` no longer has are removed — the apply
/// removes those the operator wrote itself; keys another writer left behind (an earlier
/// version's merge patches, the upstream operator) are removed by a merge patch with `null`s.
pub(crate) async fn patch_status<K, S>(
    obj: &K,
    current: Option<&S>,
    status: S,
    ctx: &Context,
) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    S: serde::Serialize + serde::de::DeserializeOwned,
{
    let want = serde_json::to_value(&status)?;
    if let Some(cur) = current {
        if serde_json::to_value(cur)? == want {
            return Ok(());
        }
    }
    let name = obj.name_any();
    let api: kube::Api<K> =
        kube::Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "namespace": obj.namespace()},
        "status": want,
    });
    let applied = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    // What is stored now, as far as `S` knows it (fields it does not model are left alone).
    let stored = serde_json::to_value(&applied)?
        .get("status")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let stored = match serde_json::from_value::<S>(stored.clone()) {
        Ok(s) => serde_json::to_value(&s)?,
        Err(_) => stored,
    };
    if stored != want {
        let leftover = merge_diff(&stored, &want);
        tracing::debug!(object = %object_key(obj), %leftover, "removing status keys of other writers");
        api.patch_status(
            &name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(serde_json::json!({ "status": leftover })),
        )
        .await?;
    }
    Ok(())
}

/// Waits (bounded) until `store` has been filled by its first list.
async fn ready<K>(store: &Store<K>, what: &str) -> Result<()>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    match tokio::time::timeout(STORE_SYNC_TIMEOUT, store.wait_until_ready()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Error::Waiting(format!("the {what} cache stopped"))),
        Err(_) => Err(Error::Waiting(format!(
            "the {what} cache is not filled yet"
        ))),
    }
}

/// The pods labelled `l2sm=true` (in `namespace`, or every namespace the operator watches):
/// from the Pod controller's cache when the context has it, else listed.
pub(crate) async fn labelled_pods(ctx: &Context, namespace: Option<&str>) -> Result<Vec<Arc<Pod>>> {
    if let Some(store) = ctx.pods.get() {
        ready(store, "pod").await?;
        return Ok(store.state_filter(|p| {
            namespace.is_none_or(|ns| p.metadata.namespace.as_deref() == Some(ns))
        }));
    }
    let api: kube::Api<Pod> = match namespace {
        Some(ns) => kube::Api::namespaced(ctx.kube.clone(), ns),
        None => kube::Api::all(ctx.kube.clone()),
    };
    let list = api
        .list(&ListParams::default().labels(&format!("{POD_LABEL}=true")))
        .await?;
    Ok(list.items.into_iter().map(Arc::new).collect())
}

/// The pods of `namespace` matching `selector`: from the cache of `l2sm` pods when the context
/// has it (a pod without the label has no L2S-M attachment to act on), else listed.
pub(crate) async fn selected_pods(
    ctx: &Context,
    namespace: &str,
    selector: &kube::core::Selector,
) -> Result<Vec<Arc<Pod>>> {
    use kube::core::SelectorExt as _;
    if let Some(store) = ctx.pods.get() {
        ready(store, "pod").await?;
        return Ok(store.state_filter(|p| {
            p.metadata.namespace.as_deref() == Some(namespace) && selector.matches(p.labels())
        }));
    }
    let api: kube::Api<Pod> = kube::Api::namespaced(ctx.kube.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(&selector.to_string()))
        .await?;
    Ok(list.items.into_iter().map(Arc::new).collect())
}

/// The pods labelled `l2sm=true` scheduled on `node`: from the cache, else listed.
pub(crate) async fn labelled_pods_on(ctx: &Context, node: &str) -> Result<Vec<Arc<Pod>>> {
    if let Some(store) = ctx.pods.get() {
        ready(store, "pod").await?;
        return Ok(store
            .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)));
    }
    let all: kube::Api<Pod> = kube::Api::all(ctx.kube.clone());
    let list = all
        .list(
            &ListParams::default()
                .labels(&format!("{POD_LABEL}=true"))
                .fields(&format!("spec.nodeName={node}")),
        )
        .await?;
    Ok(list.items.into_iter().map(Arc::new).collect())
}

/// Every Node: from the node cache when the context has it, else listed.
pub(crate) async fn nodes(ctx: &Context) -> Result<Vec<Node>> {
    if let Some(store) = ctx.nodes.get() {
        ready(store, "node").await?;
        return Ok(store.state().iter().map(|n| (**n).clone()).collect());
    }
    let api: kube::Api<Node> = kube::Api::all(ctx.kube.clone());
    Ok(api.list(&ListParams::default()).await?.items)
}

/// How long ago `meta`'s object was deleted (zero when it is not being deleted).
pub(crate) fn deleted_for(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Duration {
    meta.deletion_timestamp
        .as_ref()
        .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default()
}

/// Records a Warning Event [`CLEANUP_ABANDONED`] on `obj` saying why its cleanup was given up.
/// An Event that cannot be written is logged, never an error (the finalizer goes anyway).
pub(crate) async fn cleanup_abandoned<K>(obj: &K, ctx: &Context, why: &str)
where
    K: Resource<DynamicType = ()>,
{
    let mut note = format!(
        "cleanup still failing {}s after deletion (--cleanup-timeout); finalizer released \
         without it: {why}",
        ctx.settings.cleanup_timeout.as_secs()
    );
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    tracing::warn!(object = %object_key(obj), "{note}");
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: CLEANUP_ABANDONED.into(),
        note: Some(note),
        action: "Cleanup".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(object = %object_key(obj), "cannot record the {CLEANUP_ABANDONED} event: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_diff_nulls_removed_keys_and_keeps_equal_ones() {
        let old = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": [1, 2], "gone": "v"});
        let new = json!({"a": 1, "b": {"x": 1}, "c": [1], "added": true});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"b": {"y": null}, "c": [1], "gone": null, "added": true})
        );
        assert_eq!(merge_diff(&new, &new), json!({}));
    }

    #[test]
    fn failing_cleanup_is_looked_at_again_before_the_timeout() {
        let err = Error::Cleanup {
            error: Box::new(Error::Waiting("x".into())),
            abandon_in: Duration::from_secs(7),
        };
        assert_eq!(abandon_in(&err), Some(Duration::from_secs(7)));
        let wrapped = Error::from(finalizer::Error::CleanupFailed(err));
        assert_eq!(abandon_in(&wrapped), Some(Duration::from_secs(7)));
        assert_eq!(abandon_in(&Error::Waiting("x".into())), None);
    }
}
