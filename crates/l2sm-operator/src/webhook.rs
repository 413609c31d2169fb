//! The mutating admission webhook for pods (`/mutate-v1-pod`, AdmissionReview v1, HTTPS).
//!
//! It only translates `l2sm/networks` into the Multus annotation pointing at each network's
//! NetworkAttachmentDefinition: it never picks a node, allocates nothing and writes nothing
//! anywhere (an honest `sideEffects: None`, safe for dry runs and for pods that another
//! admission plugin rejects later). Addresses come from the controller's IPAM at attach time.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use kube::api::{Api, ListParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::annotations::{
    multus_annotation, parse_networks, ERROR_ANNOTATION, MULTUS_ANNOTATION, NETWORKS_ANNOTATION,
    POD_LABEL, POD_LABEL_VALUE,
};
use crate::crd::L2Network;
use crate::scope::{allowed_namespaces, may_use, refusal, NetworkScope};

/// Path the API server posts pod reviews to (as upstream).
pub const WEBHOOK_PATH: &str = "/mutate-v1-pod";
/// Port the webhook listens on (as upstream).
pub const DEFAULT_PORT: u16 = 9443;
/// Name of the webhook inside the MutatingWebhookConfiguration (as upstream).
pub const WEBHOOK_NAME: &str = "mpod.kb.io";
/// Where cert-manager's secret is mounted (as upstream): `tls.crt`, `tls.key`, `ca.crt`.
pub const DEFAULT_CERT_DIR: &str = "/tmp/k8s-webhook-server/serving-certs";

/// What to do with a pod whose request cannot be honoured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Refuse the pod with a message naming the network or field (the default: a pod that
    /// silently lacks its network is worse than one that is not created).
    #[default]
    Reject,
    /// Admit the pod without L2S-M interfaces and record why in `l2sm/error` (upstream's
    /// behaviour when it ran out of interfaces).
    Annotate,
}

/// Settings of the webhook.
#[derive(Clone, Debug, Default)]
pub struct WebhookConfig {
    /// Whether a pod whose `l2sm/networks` cannot be honoured is rejected or admitted with
    /// `l2sm/error`.
    pub on_error: OnError,
    /// Which namespaces may use a network (`--network-scope`); with
    /// [`NetworkScope::Namespace`], a pod asking for a network its namespace may not use is
    /// refused (403) naming the network and both namespaces.
    pub scope: NetworkScope,
}

/// An L2Network found by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkRef {
    /// Namespace the L2Network lives in (the pod's own when it has one of that name).
    pub namespace: String,
    /// The L2Network's name, as requested in `l2sm/networks`.
    pub name: String,
    /// The other namespaces it lists in [`crate::scope::ALLOWED_NAMESPACES_ANNOTATION`]
    /// (used with `--network-scope namespace`).
    pub allowed_namespaces: Vec<String>,
}

/// The catalog could not be consulted (API server unreachable, RBAC...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CatalogError(pub String);

/// Where the webhook looks networks up. Networks are found by name, preferring the pod's
/// namespace (the controller keys networks by name, as upstream did).
pub trait NetworkCatalog: Send + Sync + 'static {
    /// Every L2Network named `name`, of any namespace.
    fn candidates(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<NetworkRef>, CatalogError>> + Send;

    /// Finds the L2Network named `name`, preferring the one in `pod_namespace`; `Ok(None)`
    /// when no namespace has it.
    fn find(
        &self,
        name: &str,
        pod_namespace: &str,
    ) -> impl Future<Output = Result<Option<NetworkRef>, CatalogError>> + Send {
        async move { Ok(pick(self.candidates(name).await?, pod_namespace)) }
    }

    /// Finds the L2Network named `name` that pods of `pod_namespace` may use under `scope`:
    /// the pod's own namespace's, else the first (by namespace) that allows it. `Ok(Err(ns))`:
    /// networks of that name exist but none may be used, the first in namespace `ns`.
    fn find_usable(
        &self,
        name: &str,
        pod_namespace: &str,
        scope: NetworkScope,
    ) -> impl Future<Output = Result<Option<Result<NetworkRef, String>>, CatalogError>> + Send {
        async move {
            let found = self.candidates(name).await?;
            let first_ns = found.iter().map(|n| n.namespace.clone()).min();
            let usable = found
                .into_iter()
                .filter(|n| may_use(scope, &n.namespace, &n.allowed_namespaces, pod_namespace))
                .collect();
            Ok(match (pick(usable, pod_namespace), first_ns) {
                (Some(n), _) => Some(Ok(n)),
                (None, Some(ns)) => Some(Err(ns)),
                (None, None) => None,
            })
        }
    }
}

impl<T: NetworkCatalog> NetworkCatalog for Arc<T> {
    fn candidates(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<NetworkRef>, CatalogError>> + Send {
        (**self).candidates(name)
    }
}

/// The catalog over the Kubernetes API (`L2Network` in all namespaces).
#[derive(Clone)]
pub struct KubeCatalog {
    api: Api<L2Network>,
}

impl KubeCatalog {
    /// A catalog listing L2Networks through `client`.
    pub fn new(client: kube::Client) -> Self {
        KubeCatalog {
            api: Api::all(client),
        }
    }
}

impl NetworkCatalog for KubeCatalog {
    async fn candidates(&self, name: &str) -> Result<Vec<NetworkRef>, CatalogError> {
        let list = self
            .api
            .list_metadata(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await
            .map_err(|e| CatalogError(format!("listing L2Networks: {e}")))?;
        let found: Vec<NetworkRef> = list
            .items
            .into_iter()
            .filter(|m| m.metadata.name.as_deref() == Some(name))
            .map(|m| NetworkRef {
                allowed_namespaces: allowed_namespaces(m.metadata.annotations.as_ref()),
                namespace: m.metadata.namespace.unwrap_or_default(),
                name: name.to_owned(),
            })
            .collect();
        Ok(found)
    }
}

fn pick(mut found: Vec<NetworkRef>, pod_namespace: &str) -> Option<NetworkRef> {
    match found.iter().position(|n| n.namespace == pod_namespace) {
        Some(i) => Some(found.swap_remove(i)),
        None => {
            found.sort_by(|a, b| a.namespace.cmp(&b.namespace));
            found.into_iter().next()
        }
    }
}

/// An in-memory catalog (tests, and `l2sm lab`-style setups without an API server).
#[derive(Default)]
pub struct MemoryCatalog {
    networks: Mutex<BTreeMap<(String, String), Vec<String>>>,
    failure: Mutex<Option<String>>,
}

impl MemoryCatalog {
    /// An empty catalog whose lookups succeed (and find nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds network `name` in `namespace`.
    pub fn insert(&self, namespace: &str, name: &str) {
        self.insert_allowing(namespace, name, &[]);
    }

    /// Adds network `name` in `namespace` listing `allowed` namespaces in its
    /// [`crate::scope::ALLOWED_NAMESPACES_ANNOTATION`].
    pub fn insert_allowing(&self, namespace: &str, name: &str, allowed: &[&str]) {
        if let Ok(mut n) = self.networks.lock() {
            n.insert(
                (namespace.to_owned(), name.to_owned()),
                allowed.iter().map(|a| a.to_string()).collect(),
            );
        }
    }

    /// Makes every lookup fail with `message` (or succeed again with `None`).
    pub fn fail_with(&self, message: Option<&str>) {
        if let Ok(mut f) = self.failure.lock() {
            *f = message.map(str::to_owned);
        }
    }
}

impl NetworkCatalog for MemoryCatalog {
    async fn candidates(&self, name: &str) -> Result<Vec<NetworkRef>, CatalogError> {
        if let Some(msg) = self.failure.lock().ok().and_then(|f| f.clone()) {
            return Err(CatalogError(msg));
        }
        let found = self
            .networks
            .lock()
            .map_err(|_| CatalogError("catalog lock poisoned".into()))?
            .iter()
            .filter(|((_, n), _)| n == name)
            .map(|((ns, n), allowed)| NetworkRef {
                namespace: ns.clone(),
                name: n.clone(),
                allowed_namespaces: allowed.clone(),
            })
            .collect();
        Ok(found)
    }
}

// ---------------------------------------------------------------- AdmissionReview v1

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    api_version: String,
    kind: String,
    request: Option<RequestIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    uid: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    object: Option<Value>,
}

/// The answer to one review, before it is wrapped in an AdmissionReview.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Admit unchanged.
    Allow,
    /// Admit with these JSON-patch operations.
    Patch(Vec<Value>),
    /// Refuse, with an HTTP-like code and a message for the user.
    Deny {
        /// HTTP status code for the AdmissionReview `status`: 400 for a bad annotation, 404
        /// for a network that does not exist, 403 for a network the pod's namespace may not
        /// use (`--network-scope namespace`), 503 when the catalog cannot be consulted.
        code: u16,
        /// Why the pod is refused, naming the annotation and the network or field.
        message: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
}

/// The webhook: a catalog and settings.
pub struct Webhook<C> {
    catalog: C,
    config: WebhookConfig,
}

/// A failure that names what is wrong, with the code used when rejecting.
struct Failure {
    code: u16,
    message: String,
}

impl<C: NetworkCatalog> Webhook<C> {
    /// A webhook looking networks up in `catalog`, behaving as `config` says.
    pub fn new(catalog: C, config: WebhookConfig) -> Self {
        Webhook { catalog, config }
    }

    /// Answers one AdmissionReview v1 body. Errors in the review itself (not JSON, not v1,
    /// no request) are `Err` with a message for an HTTP 400.
    pub async fn review(&self, body: &[u8]) -> Result<Value, String> {
        let review: ReviewIn =
            serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
        if review.kind != "AdmissionReview" || review.api_version != "admission.k8s.io/v1" {
            return Err(format!(
                "expected admission.k8s.io/v1 AdmissionReview, got {}/{}",
                review.api_version, review.kind
            ));
        }
        let req = review
            .request
            .ok_or_else(|| "AdmissionReview without a request".to_owned())?;
        let verdict = self.decide(&req).await;
        let mut out = ResponseOut {
            uid: req.uid,
            allowed: true,
            status: None,
            patch: None,
            patch_type: None,
        };
        match verdict {
            Verdict::Allow => {}
            Verdict::Patch(ops) => {
                let raw = serde_json::to_vec(&ops).map_err(|e| e.to_string())?;
                out.patch = Some(base64::engine::general_purpose::STANDARD.encode(raw));
                out.patch_type = Some("JSONPatch");
            }
            Verdict::Deny { code, message } => {
                out.allowed = false;
                out.status = Some(json!({"code": code, "message": message}));
            }
        }
        Ok(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": out,
        }))
    }

    async fn decide(&self, req: &RequestIn) -> Verdict {
        // Only creation: Multus reads the annotation once, when the sandbox is made.
        if req.operation != "CREATE" {
            return Verdict::Allow;
        }
        let Some(pod) = &req.object else {
            return Verdict::Allow;
        };
        let meta = &pod["metadata"];
        if meta["labels"][POD_LABEL].as_str() != Some(POD_LABEL_VALUE) {
            return Verdict::Allow;
        }
        let annotations = meta["annotations"].as_object();
        let get = |k: &str| annotations.and_then(|a| a.get(k)).and_then(Value::as_str);
        if get(ERROR_ANNOTATION).is_some() {
            return Verdict::Allow;
        }
        let Some(requested) = get(NETWORKS_ANNOTATION) else {
            return Verdict::Allow;
        };
        let namespace = req
            .namespace
            .as_deref()
            .or_else(|| meta["namespace"].as_str())
            .unwrap_or("default");
        match self
            .multus_for(requested, get(MULTUS_ANNOTATION), namespace)
            .await
        {
            Ok(None) => Verdict::Allow,
            Ok(Some(value)) => {
                tracing::debug!(namespace, networks = %value, "attaching pod");
                Verdict::Patch(vec![set_annotation(MULTUS_ANNOTATION, &value)])
            }
            Err(f) => match self.config.on_error {
                OnError::Reject => {
                    tracing::info!(namespace, error = %f.message, "rejecting pod");
                    Verdict::Deny {
                        code: f.code,
                        message: f.message,
                    }
                }
                OnError::Annotate => {
                    tracing::info!(namespace, error = %f.message, "admitting pod without its L2S-M networks");
                    Verdict::Patch(vec![set_annotation(ERROR_ANNOTATION, &f.message)])
                }
            },
        }
    }

    async fn multus_for(
        &self,
        requested: &str,
        existing: Option<&str>,
        namespace: &str,
    ) -> Result<Option<String>, Failure> {
        let bad = |message: String| Failure { code: 400, message };
        let requests = parse_networks(requested).map_err(|e| bad(e.to_string()))?;
        for r in &requests {
            match self
                .catalog
                .find_usable(&r.name, namespace, self.config.scope)
                .await
            {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(network_ns))) => {
                    return Err(Failure {
                        code: 403,
                        message: format!(
                            "{NETWORKS_ANNOTATION}: {}",
                            refusal(&r.name, &network_ns, namespace)
                        ),
                    })
                }
                Ok(None) => {
                    return Err(Failure {
                        code: 404,
                        message: format!(
                            "{NETWORKS_ANNOTATION}: L2Network {:?} does not exist",
                            r.name
                        ),
                    })
                }
                Err(e) => {
                    return Err(Failure {
                        code: 503,
                        message: format!(
                            "{NETWORKS_ANNOTATION}: cannot look up L2Network {:?}: {e}",
                            r.name
                        ),
                    })
                }
            }
        }
        multus_annotation(existing, &requests).map_err(|e| bad(e.to_string()))
    }
}

/// JSON-patch operation setting one annotation (the map exists: the pod has `l2sm/networks`).
fn set_annotation(key: &str, value: &str) -> Value {
    let escaped = key.replace('~', "~0").replace('/', "~1");
    json!({"op": "add", "path": format!("/metadata/annotations/{escaped}"), "value": value})
}

/// The webhook's routes: `POST /mutate-v1-pod` and `GET /healthz`.
pub fn router<C: NetworkCatalog>(webhook: Arc<Webhook<C>>) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(handle::<C>))
        .route("/healthz", get(|| async { "ok" }))
        // Pod specs can be large; the API server caps requests at 3 MiB.
        .layer(DefaultBodyLimit::max(8 << 20))
        .with_state(webhook)
}

async fn handle<C: NetworkCatalog>(
    State(webhook): State<Arc<Webhook<C>>>,
    body: Bytes,
) -> axum::response::Response {
    match webhook.review(&body).await {
        Ok(v) => Json(v).into_response(),
        Err(msg) => {
            tracing::warn!(error = %msg, "bad admission request");
            (StatusCode::BAD_REQUEST, msg).into_response()
        }
    }
}

// ---------------------------------------------------------------- HTTPS

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating the self-signed CA, serving certificate or a key pair failed.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Reading or writing a certificate file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The certificate file (or in-memory PEM) holds no certificate.
    #[error("{0}: no PEM certificate")]
    NoCertificate(PathBuf),
    /// The certificate or key PEM cannot be parsed (for a key, also when none is found).
    #[error("{path}: bad PEM: {message}")]
    Pem {
        /// The file, or `<certificate>`/`<key>` for in-memory PEM.
        path: PathBuf,
        /// The PEM parser's error.
        message: String,
    },
    /// rustls refused the key (unsupported type) or the server configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// Reading or writing the shared self-signed Secret failed.
    #[error("self-signed Secret {secret}: {source}")]
    Kube {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The API error.
        source: kube::Error,
    },
    /// The replicas did not agree on one shared certificate (the Secret kept changing).
    #[error("self-signed Secret {0}: no stable certificate after several attempts")]
    Unsettled(String),
}

/// A CA and a serving certificate signed by it, PEM encoded.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    /// The CA certificate: what goes into the webhook configuration's `caBundle`.
    pub ca_pem: String,
    /// The serving certificate, signed by the CA, for the requested names (`tls.crt`).
    pub cert_pem: String,
    /// The serving certificate's private key (`tls.key`).
    pub key_pem: String,
}

impl SelfSigned {
    /// The `caBundle` value (base64 of the CA's PEM).
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }
}

/// DNS names the API server uses to reach the webhook Service.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// How long a self-signed CA and serving certificate are valid.
pub const SELF_SIGNED_VALIDITY_DAYS: i64 = 5 * 365;
/// A shared self-signed certificate expiring within this time is replaced at start-up.
pub const SELF_SIGNED_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Secret (in the operator's namespace) through which the replicas share one self-signed CA
/// and serving certificate.
pub const SELF_SIGNED_SECRET: &str = "l2sm-webhook-self-signed";

/// The civil date (year, month, day) `days` days after 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

/// The civil date `offset_days` from today (UTC).
fn date_from_today(offset_days: i64) -> (i32, u8, u8) {
    let today = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 / 86_400)
        .unwrap_or(0);
    civil_from_days(today + offset_days)
}

/// Bootstrap TLS without cert-manager: a fresh CA and a serving certificate for `names`
/// (DNS names or IP addresses), valid from yesterday for [`SELF_SIGNED_VALIDITY_DAYS`].
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "l2sm-webhook-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let (from, until) = (
        date_from_today(-1),
        date_from_today(SELF_SIGNED_VALIDITY_DAYS),
    );
    ca_params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    ca_params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("l2sm-webhook"),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params.signed_by(&key, &ca)?;
    Ok(SelfSigned {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Why `pair` cannot serve `names` at `at` (`None`: it can): the serving certificate must
/// chain to a CA of `pair.ca_pem`, be valid at `at` and name every one of `names`, and the
/// key must be the certificate's.
pub fn check_pair(pair: &SelfSigned, names: &[String], at: SystemTime) -> Option<String> {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{ServerName, UnixTime};
    let key = match certified_key(
        pair.cert_pem.as_bytes(),
        pair.key_pem.as_bytes(),
        Path::new("tls.crt"),
        Path::new("tls.key"),
    ) {
        Ok(k) => k,
        Err(e) => return Some(e.to_string()),
    };
    if let Err(e) = key.keys_match() {
        return Some(format!("tls.key is not the key of tls.crt: {e}"));
    }
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pair.ca_pem.as_bytes()) {
        match ca {
            Ok(ca) => {
                if let Err(e) = roots.add(ca) {
                    return Some(format!("ca.crt: {e}"));
                }
            }
            Err(e) => return Some(format!("ca.crt: {e}")),
        }
    }
    if roots.is_empty() {
        return Some("ca.crt holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider,
    )
    .build()
    {
        Ok(v) => v,
        Err(e) => return Some(format!("ca.crt: {e}")),
    };
    let Some((leaf, chain)) = key.cert.split_first() else {
        return Some("tls.crt holds no certificate".into());
    };
    let now = UnixTime::since_unix_epoch(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    for name in names {
        let server = match ServerName::try_from(name.clone()) {
            Ok(n) => n,
            Err(e) => return Some(format!("{name:?}: {e}")),
        };
        if let Err(e) = verifier.verify_server_cert(leaf, chain, &server, &[], now) {
            return Some(format!("not valid for {name} then: {e}"));
        }
    }
    None
}

/// The pair stored in a shared self-signed Secret (`ca.crt`, `tls.crt`, `tls.key`).
fn pair_from_secret(secret: &k8s_openapi::api::core::v1::Secret) -> Option<SelfSigned> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(SelfSigned {
        ca_pem: text("ca.crt")?,
        cert_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
    })
}

/// The Secret storing `pair`.
fn secret_for(name: &str, pair: &SelfSigned) -> k8s_openapi::api::core::v1::Secret {
    use k8s_openapi::ByteString;
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([("app.kubernetes.io/part-of".to_string(), "l2sm".to_string())].into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("ca.crt", &pair.ca_pem),
                ("tls.crt", &pair.cert_pem),
                ("tls.key", &pair.key_pem),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
            .collect(),
        ),
        ..Default::default()
    }
}

/// The first certificate of a PEM bundle, as PEM.
fn first_pem_cert(bundle: &str) -> Option<String> {
    let end = "-----END CERTIFICATE-----";
    let start = bundle.find("-----BEGIN CERTIFICATE-----")?;
    let stop = bundle[start..].find(end)? + start + end.len();
    Some(format!("{}\n", &bundle[start..stop]))
}

/// One self-signed CA and serving certificate for `names`, shared by every replica through
/// the Secret `namespace/secret_name`: the first replica creates it; a replica that loses
/// that race (409 AlreadyExists) reads and uses the winner's. A stored pair that does not
/// cover `names` or expires within [`SELF_SIGNED_RENEW_BEFORE`] is replaced (an update with
/// the resourceVersion read, so of two replicas rotating at once one wins and the other
/// reads its pair), and the new `ca.crt` keeps the previous CA after the new one, so replicas
/// still serving the previous certificate stay trusted through the caBundle until they
/// restart. Every replica puts the returned `ca_pem` into the caBundle: all write the same.
pub async fn shared_self_signed(
    client: kube::Client,
    namespace: &str,
    secret_name: &str,
    names: &[String],
) -> Result<SelfSigned, TlsError> {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::PostParams;
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let id = format!("{namespace}/{secret_name}");
    let kube_err = |source| TlsError::Kube {
        secret: id.clone(),
        source,
    };
    let renew_at = SystemTime::now() + SELF_SIGNED_RENEW_BEFORE;
    for _ in 0..5 {
        let Some(current) = api.get_opt(secret_name).await.map_err(kube_err)? else {
            let pair = self_signed(names)?;
            match api
                .create(&PostParams::default(), &secret_for(secret_name, &pair))
                .await
            {
                Ok(_) => {
                    tracing::info!(secret = %id, "created the shared self-signed webhook certificate");
                    return Ok(pair);
                }
                // Another replica created it first: use the one it stored.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(kube_err(e)),
            }
        };
        let stored = pair_from_secret(&current);
        let why = match &stored {
            Some(pair) => match check_pair(pair, names, renew_at) {
                None => return Ok(pair.clone()),
                Some(why) => why,
            },
            None => "ca.crt, tls.crt or tls.key missing".to_string(),
        };
        tracing::warn!(secret = %id, reason = %why, "replacing the shared self-signed webhook certificate");
        let mut pair = self_signed(names)?;
        if let Some(previous) = stored.as_ref().and_then(|p| first_pem_cert(&p.ca_pem)) {
            pair.ca_pem.push_str(&previous);
        }
        let mut replacement = secret_for(secret_name, &pair);
        replacement.metadata.resource_version = current.metadata.resource_version.clone();
        match api
            .replace(secret_name, &PostParams::default(), &replacement)
            .await
        {
            Ok(_) => return Ok(pair),
            // Another replica replaced it first: read and use its pair.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(kube_err(e)),
        }
    }
    Err(TlsError::Unsettled(id))
}

/// [`self_signed`], written as cert-manager lays its secret out (`tls.crt`, `tls.key`,
/// `ca.crt` in `dir`), so the server code path is the same either way.
pub fn write_self_signed(dir: &Path, names: &[String]) -> Result<SelfSigned, TlsError> {
    let pair = self_signed(names)?;
    let io = |path: PathBuf| move |source| TlsError::Io { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_owned()))?;
    for (file, body) in [
        ("ca.crt", &pair.ca_pem),
        ("tls.crt", &pair.cert_pem),
        ("tls.key", &pair.key_pem),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, body).map_err(io(path.clone()))?;
    }
    Ok(pair)
}

/// JSON patch setting `caBundle` on each of `webhooks` webhooks of a
/// MutatingWebhookConfiguration (the operator applies it after a self-signed bootstrap).
pub fn ca_bundle_patch(webhooks: usize, ca_bundle: &str) -> Value {
    Value::Array(
        (0..webhooks)
            .map(|i| {
                json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": ca_bundle})
            })
            .collect(),
    )
}

fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Io {
            path: p.to_owned(),
            source,
        })
    };
    certified_key(&read(cert)?, &read(key)?, cert, key)
}

fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        path: key_path.to_owned(),
        message: e.to_string(),
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)?;
    Ok(CertifiedKey::new(certs, signer))
}

/// Serves the certificate in a pair of files and picks up a renewed pair (cert-manager
/// rotates the mounted secret) at the next handshake after the files change.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<(Option<SystemTime>, Arc<CertifiedKey>)>,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let stamp = modified(&self.cert).max(modified(&self.key));
        let mut current = self.current.lock().ok()?;
        if stamp != current.0 {
            match load_certified_key(&self.cert, &self.key) {
                Ok(k) => *current = (stamp, Arc::new(k)),
                // Mid-rotation (one file written, not the other): keep serving the old pair
                // and retry when a file changes again.
                Err(e) => {
                    current.0 = stamp;
                    tracing::warn!(error = %e, "keeping the previous webhook certificate");
                }
            }
        }
        Some(current.1.clone())
    }
}

fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS settings serving `cert`/`key` (PEM files, e.g. cert-manager's `tls.crt`/`tls.key`),
/// reloaded when they change.
pub fn tls_from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let first = load_certified_key(cert, key)?;
    let stamp = modified(cert).max(modified(key));
    server_config(Arc::new(ReloadingCert {
        cert: cert.to_owned(),
        key: key.to_owned(),
        current: Mutex::new((stamp, Arc::new(first))),
    }))
}

/// TLS settings serving an in-memory PEM pair.
pub fn tls_from_pem(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let key = certified_key(
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
        Path::new("<certificate>"),
        Path::new("<key>"),
    )?;
    server_config(Arc::new(FixedCert(Arc::new(key))))
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Limits of the webhook's HTTPS server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time for the TLS handshake, then for each request's header; between requests on a
    /// kept-alive connection it is the idle timeout.
    pub header_timeout: Duration,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Requests served on one connection; the last answer says `Connection: close`.
    pub max_requests_per_connection: u64,
    /// Largest buffered request header (bytes); larger ones are refused.
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_requests_per_connection: 1000,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Serves `router` over HTTPS (HTTP/1.1, as the API server speaks to webhooks) on
/// `listener` with the default [`ServerLimits`] until `shutdown` completes. Each connection
/// runs on its own task; a failed handshake only ends that connection.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_https_with(listener, tls, router, ServerLimits::default(), shutdown).await
}

/// Serves `router` over HTTPS on `listener` within `limits` until `shutdown` completes. Accept
/// errors (descriptors exhausted…) are logged and retried after a pause, never fatal.
pub async fn serve_https_with(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Over the cap: closed at once, nothing allocated for it.
            tracing::debug!(%peer, "webhook connection cap reached; connection closed");
            drop(stream);
            continue;
        };
        let acceptor = acceptor.clone();
        let limits = limits.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls =
                match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "webhook TLS handshake timed out");
                        return;
                    }
                };
            let inner = TowerToHyperService::new(router);
            let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let max = limits.max_requests_per_connection.max(1);
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    use hyper::service::Service as _;
                    let last = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 >= max;
                    let fut = inner.call(req);
                    async move {
                        let mut resp = fut.await?;
                        if last {
                            resp.headers_mut().insert(
                                hyper::header::CONNECTION,
                                hyper::header::HeaderValue::from_static("close"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
}
