//! A stateful, in-memory stand-in for kube-apiserver that a [`kube::Client`] talks to through
//! `tower` (no sockets), for tests of the operator.
//!
//! ```no_run
//! # async fn doc() {
//! use l2sm_kube_fake::FakeApi;
//! let api = FakeApi::new();
//! let client: kube::Client = api.client(); // inside a tokio runtime
//! # }
//! ```
//!
//! It is schema-less (every object is a `serde_json::Value`) and URL-driven:
//! `/api/v1[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]` and
//! `/apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]`. A resource must be
//! known (a built-in table of the kinds the operator touches, plus [`FakeApi::register`] and
//! [`FakeApi::seed`]); unknown resources answer 404 as the real server does.
//!
//! What it does as kube-apiserver does:
//! - verbs: get, list, watch (streamed JSON lines: ADDED/MODIFIED/DELETED/ERROR from the
//!   given resourceVersion; `""`/`"0"` start with the current objects; 410 Expired for a
//!   version older than the retained history; closed at `timeoutSeconds`), create (409
//!   AlreadyExists, generateName, name validation), update, patch, delete,
//!   deletecollection; `Accept: …;as=PartialObjectMetadata[List]` (kube's `*_metadata`
//!   calls) answers metadata only;
//! - metadata: uid, creationTimestamp, resourceVersion (one global counter bumped per write),
//!   generation (bumped when anything outside metadata and status changes), managedFields;
//!   a write that changes nothing is not a write (no new resourceVersion, no event);
//! - preconditions: a PUT or PATCH whose object carries another `metadata.resourceVersion`
//!   (or uid) than the stored one → 409 Conflict; a PUT of a custom resource without
//!   resourceVersion → 422 (built-in kinds allow unconditional updates); DeleteOptions
//!   preconditions (resourceVersion, uid);
//! - patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902; a failed `test` → 422, a
//!   `test` of `null` passes on a missing path as in the API server's library, which
//!   kube-rs's finalizer helper relies on), server-side apply (field ownership per manager
//!   and subresource, a manager's `Update` writes own what they changed, removal of fields
//!   and maps a manager stopped applying unless another manager owns them, 409 on conflicts
//!   unless `force=true`, creation of a missing object (201), 400 when the configuration
//!   carries `metadata.managedFields` (e.g. an object read back and re-applied); list-maps: `conditions` by
//!   `type`, `containers`/`initContainers`/`ephemeralContainers`/`env`/`volumes` by `name`,
//!   `volumeMounts` by `mountPath`, other lists atomic; JSON bodies); strategic merge patch
//!   → 415;
//! - the `/status` subresource of kinds that have one (pods, nodes, namespaces, services,
//!   deployments, daemonsets, statefulsets, replicasets, CRDs and the four l2sm CRDs): writes
//!   to `/status` change only `.status`, writes to the main resource leave `.status` as it
//!   is, create drops `.status` (pods start `Pending`);
//! - deletion: DELETE of an object with finalizers sets deletionTimestamp (202, the object
//!   stays); a write that empties the finalizers of a deleting object removes it; adding a
//!   finalizer to a deleting object → 422; without finalizers DELETE removes it (200);
//! - list and watch selectors: labelSelector (`=`, `==`, `!=`, `key`, `!key`, `in`, `notin`),
//!   fieldSelector `metadata.name` / `metadata.namespace` (other fields → 400); a watch with
//!   a selector sees DELETED when an object stops matching and ADDED when it starts to;
//!   `limit` and `continue` pagination;
//! - CertificateSigningRequests (`certificates.k8s.io/v1`, cluster-scoped): `spec.username`,
//!   `uid`, `groups`, `extra` set from the caller ([`FakeApi::client_as`]); the spec
//!   immutable; `/approval` writes only conditions and needs `approve` on `signers` (named
//!   by the signer) through [`FakeApi::authorize`]; `/status` may set the certificate only on
//!   an Approved (not Denied/Failed) request, once, PEM CERTIFICATE blocks only, with `sign`;
//!   Approved/Denied are exclusive and cannot be removed (server-side apply of CSRs → 415);
//! - errors are `metav1.Status` bodies with reason and code; garbage bodies → 400, unknown
//!   resources and paths → 404, and the store is left unchanged.
//!
//! Test-side access: [`FakeApi::seed`] stores objects as they are (status included; the
//! fields are owned by the manager `fake-seed`, as objects a user created are owned by
//! kubectl), [`FakeApi::get`]/[`FakeApi::list`] read the store, [`FakeApi::calls`] is the
//! log of every request (verb, group, resource, subresource, namespace, patch type, field
//! manager, body, status code), [`FakeApi::fail_next`] injects one error,
//! [`FakeApi::on_request`] runs a hook before each request is served (a concurrent writer),
//! [`FakeApi::authorize`] stands in for RBAC (a refused call gets 403 and changes nothing;
//! an apply that would create is also checked as `create`, as the real server does), and
//! [`FakeApi::admin_client`] is a client it does not apply to (the test as the user).
//!
//! What it does not do: admission (no defaulting, no validation against schemas, no
//! webhooks, no namespace lifecycle: objects may be created in namespaces that do not
//! exist), authentication (identities are what a test gives [`FakeApi::client_as`]; RBAC only as the test's [`FakeApi::authorize`] rule), garbage collection of dependents
//! (ownerReferences, propagationPolicy), graceful deletion of pods (a pod without finalizers
//! goes at once, as after its kubelet confirmed), strategic merge patch, YAML request bodies
//! (kube-rs sends JSON), `resourceVersionMatch`, `dryRun` beyond "do not persist", protobuf,
//! `managedFields` sent in an update (ignored; the real server would take them), tables,
//! periodic watch bookmarks (only the initial-events-end one of `sendInitialEvents`),
//! and list-map keys from schemas (the fixed set above).
#![warn(clippy::unwrap_used)]

mod body;
mod csr;
mod selector;
mod server;
mod ssa;

pub use body::FakeBody;

use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// API group ("" for the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name (`pods`).
    pub resource: String,
    /// Subresource (`status`), if any.
    pub subresource: Option<String>,
    /// Namespace of the request; None for cluster-scoped requests (and lists across all
    /// namespaces).
    pub namespace: Option<String>,
    /// Object name, for item requests.
    pub name: Option<String>,
    /// Content type of a PATCH (`application/merge-patch+json`, `application/json-patch+json`,
    /// `application/apply-patch+yaml`, …).
    pub patch_type: Option<String>,
    /// The `fieldManager` query parameter.
    pub field_manager: Option<String>,
    /// The decoded query string (`labelSelector=l2sm=true&…`).
    pub query: String,
    /// The request body, when it was JSON.
    pub body: Option<Value>,
    /// Status code of the answer; 0 while the request is being served (what
    /// [`FakeApi::on_request`] hooks see).
    pub code: u16,
    /// Who made the request: [`DEFAULT_USER`], or the user of a [`FakeApi::client_as`]
    /// client.
    pub user: String,
}

/// The user of [`FakeApi::client`]'s requests.
pub const DEFAULT_USER: &str = "fake";

/// Who a client is, as the API server's authenticator would have found (what it copies into
/// a CertificateSigningRequest's `spec.username`, `uid`, `groups` and `extra`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// User name (`system:serviceaccount:<ns>:<name>` for a ServiceAccount).
    pub username: String,
    /// User uid.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes (a pod-bound token's `authentication.kubernetes.io/pod-name`, …).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl Call {
    /// `resource` or `resource/subresource`.
    pub fn resource_path(&self) -> String {
        match &self.subresource {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.clone(),
        }
    }
}

type Hook = Arc<dyn Fn(&Call) + Send + Sync>;

/// The fake API server. Clones share the same store.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<server::State>>,
    hooks: Arc<Mutex<Vec<Hook>>>,
    /// Requests through this handle bypass [`FakeApi::authorize`] (a cluster admin).
    admin: bool,
    /// Who requests through this handle come from (None: [`DEFAULT_USER`]).
    identity: Option<Arc<Identity>>,
}

impl Default for FakeApi {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FakeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApi").finish_non_exhaustive()
    }
}

/// Whether `K` is namespaced (from its kube scope type).
fn namespaced<K: Resource>() -> bool {
    let scope = std::any::type_name::<K::Scope>();
    !scope.ends_with("ClusterResourceScope")
}

impl FakeApi {
    /// An empty store knowing the built-in kinds.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(server::State::new())),
            hooks: Arc::new(Mutex::new(Vec::new())),
            admin: false,
            identity: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, server::State> {
        // A panic in a test thread holding the lock must not hide the state from others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A client of this store (every client shares it). Call inside a tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// A client of this store acting as a cluster admin: not subject to
    /// [`FakeApi::authorize`] (what a test does as the user, e.g. `kubectl delete`).
    pub fn admin_client(&self) -> kube::Client {
        let mut admin = self.clone();
        admin.admin = true;
        kube::Client::new(admin, "default")
    }

    /// A client of this store authenticated as `identity`: its requests carry the user
    /// (in [`Call::user`], which [`FakeApi::authorize`] rules see), and CertificateSigningRequests
    /// it creates get `spec.username`/`uid`/`groups`/`extra` from it, whatever the body says.
    pub fn client_as(&self, identity: Identity) -> kube::Client {
        let mut as_user = self.clone();
        as_user.identity = Some(Arc::new(identity));
        kube::Client::new(as_user, "default")
    }

    /// Makes a resource known: its group, version, plural, kind, scope and whether it has a
    /// `/status` subresource.
    pub fn register_kind(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        status_subresource: bool,
    ) {
        self.lock().register(server::ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            status: status_subresource,
        });
    }

    /// Makes `K` known (scope from its type; a `/status` subresource when its `status` is
    /// not part of the built-in table already: pass through [`Self::register_kind`] to say).
    pub fn register<K: Resource<DynamicType = ()>>(&self) {
        let mut st = self.lock();
        let group = K::group(&()).to_string();
        let plural = K::plural(&()).to_string();
        if st.find(&group, &plural).is_none() {
            st.register(server::ResourceType {
                group,
                version: K::version(&()).to_string(),
                plural,
                kind: K::kind(&()).to_string(),
                namespaced: namespaced::<K>(),
                status: true,
            });
        }
    }

    /// Stores `obj` as it is (status included, no admission), giving it uid,
    /// creationTimestamp, resourceVersion and generation when absent; replaces an existing
    /// object of the same name. Emits a watch event. Returns the stored object.
    ///
    /// # Panics
    /// When `obj` does not serialize to an object with a name (a test mistake).
    pub fn seed<K>(&self, obj: &K) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        self.register::<K>();
        let mut v = serde_json::to_value(obj).expect("seed: object serializes");
        let group = K::group(&()).to_string();
        let plural = K::plural(&()).to_string();
        let stored = self
            .lock()
            .seed(&group, &plural, &mut v)
            .expect("seed: object has a name (and a namespace when namespaced)");
        serde_json::from_value(stored).expect("seed: stored object deserializes")
    }

    /// Stores a raw object of a known resource (see [`Self::seed`]).
    ///
    /// # Errors
    /// Unknown resource, or an object without a name.
    pub fn seed_value(&self, group: &str, plural: &str, obj: Value) -> Result<Value, String> {
        let mut v = obj;
        self.lock().seed(group, plural, &mut v)
    }

    /// The stored object, if any.
    pub fn get<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let v = self.get_value(&K::group(&()), &K::plural(&()), namespace, name)?;
        serde_json::from_value(v).ok()
    }

    /// The stored object as JSON, if any.
    pub fn get_value(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.lock()
            .get(group, plural, namespace.unwrap_or(""), name)
    }

    /// Every stored object of `K` (in `namespace`, or all), sorted by namespace and name.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        self.list_values(&K::group(&()), &K::plural(&()), namespace)
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Every stored object of a resource as JSON.
    pub fn list_values(&self, group: &str, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        self.lock().list_all(group, plural, namespace)
    }

    /// Removes an object at once, finalizers or not (as if it never existed; emits DELETED).
    pub fn remove(&self, group: &str, plural: &str, namespace: Option<&str>, name: &str) {
        self.lock()
            .force_remove(group, plural, namespace.unwrap_or(""), name);
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Every request answered so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The next request with this verb on this resource (`pods`, or `pods/status` for a
    /// subresource) fails with `code` (409, 500, 503, …) and changes nothing.
    pub fn fail_next(&self, verb: &str, resource: &str, code: u16) {
        self.lock()
            .failures
            .push((verb.to_string(), resource.to_string(), code));
    }

    /// Runs `hook` on every request before it is served (with `code` 0), outside the store's
    /// lock: it may write through this `FakeApi` (a concurrent writer) or record.
    pub fn on_request(&self, hook: impl Fn(&Call) + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(hook));
    }

    /// Stands in for RBAC: every later call `allow` refuses is answered 403 Forbidden and
    /// changes nothing (recorded with code 403). A server-side apply that would create the
    /// object is also checked as a `create`, as the real server authorizes it.
    pub fn authorize(&self, allow: impl Fn(&Call) -> bool + Send + Sync + 'static) {
        self.lock().authorizer = Some(Arc::new(allow));
    }

    /// Serves one request (what the `tower::Service` does).
    pub async fn handle(&self, req: http::Request<kube::client::Body>) -> http::Response<FakeBody> {
        let (parts, body) = req.into_parts();
        let bytes = match body.collect_bytes().await {
            Ok(b) => b,
            Err(e) => {
                return server::error_response(400, "BadRequest", &format!("reading body: {e}"))
            }
        };
        let user = self
            .identity
            .as_ref()
            .map_or_else(|| DEFAULT_USER.to_string(), |i| i.username.clone());
        let parsed = server::Parsed::new(&parts, &bytes, &user);
        let hooks: Vec<Hook> = self.hooks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !hooks.is_empty() {
            if let Ok(p) = &parsed {
                let call = p.call(0);
                for h in &hooks {
                    h(&call);
                }
            }
        }
        let mut st = self.lock();
        st.serving_admin = self.admin;
        st.serving_identity = self
            .identity
            .as_deref()
            .cloned()
            .unwrap_or_else(|| Identity {
                username: DEFAULT_USER.into(),
                ..Default::default()
            });
        st.serve(parsed, &bytes)
    }
}

impl tower::Service<http::Request<kube::client::Body>> for FakeApi {
    type Response = http::Response<FakeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}
