//! The reconcilers. Each one is level-triggered: it reads the object, the controller's state
//! and the related Kubernetes objects, computes what should be (pure functions, unit-tested
//! without I/O) and applies the difference. Every step is idempotent, so a failure anywhere is
//! handled by running the whole reconcile again later, with exponential backoff per object.

pub mod l2network;
pub mod nedevice;
pub mod overlay;
pub mod pod;
pub mod quarantine;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::finalizer;
use kube::{Resource, ResourceExt};
use l2sm_api::{ClientError, ControllerClient};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Annotation the Pod reconciler writes: the pod's attachments as the system sees them.
pub const STATUS_ANNOTATION: &str = "l2sm/status";
/// Label the webhook selects pods by (upstream's).
pub const POD_LABEL: &str = "l2sm";
/// Multus's annotation with the attachments it made (interface, addresses, MAC).
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// Label on the objects the operator manages for a resource in another namespace (owner
/// references cannot cross namespaces), `<namespace>.<name>` of the owner.
pub const NETWORK_LABEL: &str = "l2sm.l2sm.k8s.local/network";
/// Field manager of the operator's server-side applies.
pub const FIELD_MANAGER: &str = "l2sm-operator";

/// What the reconcilers need besides the object.
pub struct Context {
    /// Kubernetes API.
    pub kube: kube::Client,
    /// Our controller's REST API.
    pub controller: ControllerClient,
    /// Operator settings.
    pub settings: Settings,
    failures: Mutex<HashMap<String, u32>>,
}

/// Operator settings the reconcilers use.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Image of the node agent (`l2sm agent`), used unless a switch template names another.
    pub agent_image: String,
    /// Controller REST URL the agents use.
    pub controller_url: String,
    /// Secret with keys `user` and `password` the agents read their API credentials from.
    pub credentials_secret: Option<String>,
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            agent_image: "ghcr.io/l2sm/l2sm:latest".into(),
            controller_url: "http://l2sm-controller-service.l2sm-system.svc:8181".into(),
            credentials_secret: Some("l2sm-controller-credentials".into()),
            resync: Duration::from_secs(300),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            namespace: "l2sm-system".into(),
            cni_bin_dir: "/opt/cni/bin".into(),
            agent_priority_class: Some("l2sm-node-critical".into()),
        }
    }
}

impl Context {
    /// A context for the reconcilers.
    pub fn new(kube: kube::Client, controller: ControllerClient, settings: Settings) -> Arc<Self> {
        Arc::new(Context {
            kube,
            controller,
            settings,
            failures: Mutex::new(HashMap::new()),
        })
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
    let wait = ctx.next_backoff(&key);
    tracing::warn!(object = %key, ?wait, "reconcile failed: {err}");
    Action::requeue(wait)
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

/// Merge-patches `status` onto `obj`'s status subresource, unless `current` already is it
/// (a write would only wake the controller again).
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
        + std::fmt::Debug,
    S: PartialEq + serde::Serialize,
{
    if current == Some(&status) {
        return Ok(());
    }
    let api: kube::Api<K> =
        kube::Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    api.patch_status(
        &obj.name_any(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await?;
    Ok(())
}
