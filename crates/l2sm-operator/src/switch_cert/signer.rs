//! The operator's signer for [`SIGNER_NAME`] CertificateSigningRequests (leader only).
//!
//! Requests of other signers are never touched. A request of ours is approved only when all
//! of these hold, else denied with the reason (condition `Denied`, reason
//! [`DENIED_REASON`]):
//! - `spec.username` is the agents' ServiceAccount
//!   (`system:serviceaccount:<operator namespace>:<agent SA>`);
//! - `spec.extra` carries the pod-name and pod-uid claims of a pod-bound token, naming an
//!   existing pod in the operator's namespace with that uid, labelled `app=l2sm-agent`,
//!   controlled by a DaemonSet, running as the agents' ServiceAccount, scheduled on the node
//!   the request names; a node-name claim, when present, names that node too;
//! - the request itself passes [`check_request`] (exactly `CN=<node>`, one SAN URI
//!   `urn:l2sm:node:<node>`, P-256 or Ed25519, `client auth` usage, self-signature valid).
//!
//! A request approved by someone else is checked all the same before it is signed: one that
//! fails the checks gets the condition `Failed` (reason [`FAILED_REASON`]) and no
//! certificate. The certificate lives `min(spec.expirationSeconds, cap)` (cap: one year by
//! default); `status.certificate` is the leaf followed by the CA certificate, which the agent
//! writes to `ca.crt`. No rate limit per node: a node asking again (a restarted init container)
//! gets another certificate for its new key; the controller's one-session-per-DPID rule and the
//! node binding keep a second certificate of the same node from impersonating any other.

use super::{
    check_request, issue, SwitchCa, EXTRA_NODE_NAME, EXTRA_POD_NAME, EXTRA_POD_UID, SIGNER_NAME,
};
use crate::reconcile::overlay::APP_LABEL;
use futures::StreamExt as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::{watcher, Controller};
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Reason of the `Denied` condition the signer sets.
pub const DENIED_REASON: &str = "L2smSwitchRequestRefused";
/// Reason of the `Approved` condition the signer sets.
pub const APPROVED_REASON: &str = "L2smAgentOnNode";
/// Reason of the `Failed` condition on an approved request whose content fails the checks.
pub const FAILED_REASON: &str = "L2smSwitchRequestInvalid";
/// Default name of the agents' ServiceAccount.
pub const DEFAULT_AGENT_SERVICE_ACCOUNT: &str = "l2sm-agent";
/// Default name of the CA Secret.
pub const DEFAULT_CA_SECRET: &str = "l2sm-switch-ca";
/// Default longest lifetime of a switch certificate (one year).
pub const DEFAULT_MAX_LIFETIME: Duration = super::DEFAULT_EXPIRATION;

/// What the signer needs.
#[derive(Debug, Clone)]
pub struct SignerConfig {
    /// The operator's namespace: agent pods and the CA Secret live here.
    pub namespace: String,
    /// The agents' ServiceAccount (in `namespace`).
    pub agent_service_account: String,
    /// The CA Secret (`tls.crt`, `tls.key`, PKCS#8) in `namespace`.
    pub ca_secret: String,
    /// Longest lifetime of an issued certificate.
    pub max_lifetime: Duration,
}

impl Default for SignerConfig {
    fn default() -> Self {
        SignerConfig {
            namespace: "l2sm-system".into(),
            agent_service_account: DEFAULT_AGENT_SERVICE_ACCOUNT.into(),
            ca_secret: DEFAULT_CA_SECRET.into(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }
}

/// Why a pass over a request failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// A Kubernetes call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The CA Secret is missing or unusable.
    #[error("CA Secret {secret}: {problem}")]
    Ca {
        /// Which Secret.
        secret: String,
        /// What is wrong.
        problem: String,
    },
    /// Signing failed.
    #[error(transparent)]
    Cert(#[from] super::CertError),
}

struct Ctx {
    client: kube::Client,
    config: SignerConfig,
}

fn condition(c: &CertificateSigningRequest, ty: &str) -> bool {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|x| x.type_ == ty && x.status == "True"))
}

fn new_condition(ty: &str, reason: &str, message: &str) -> CertificateSigningRequestCondition {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    CertificateSigningRequestCondition {
        type_: ty.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Whether the request's sender is an agent pod on the node the request names: `Err` is the
/// denial message.
async fn check_sender(
    csr: &CertificateSigningRequest,
    node: &str,
    ctx: &Ctx,
) -> Result<Result<(), String>, kube::Error> {
    let cfg = &ctx.config;
    let want_user = format!(
        "system:serviceaccount:{}:{}",
        cfg.namespace, cfg.agent_service_account
    );
    let user = csr.spec.username.as_deref().unwrap_or("");
    if user != want_user {
        return Ok(Err(format!(
            "requested by {user:?}, not the agents' ServiceAccount {want_user:?}"
        )));
    }
    let extra = csr.spec.extra.clone().unwrap_or_default();
    let one = |key: &str| -> Result<String, String> {
        match extra.get(key).map(Vec::as_slice) {
            Some([v]) if !v.is_empty() => Ok(v.clone()),
            _ => Err(format!(
                "no {key} claim (the request must be made with a pod-bound ServiceAccount token)"
            )),
        }
    };
    let (pod_name, pod_uid) = match (one(EXTRA_POD_NAME), one(EXTRA_POD_UID)) {
        (Ok(n), Ok(u)) => (n, u),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    if let Some(claimed) = extra.get(EXTRA_NODE_NAME) {
        if claimed.as_slice() != [node.to_string()] {
            return Ok(Err(format!(
                "the token's node claim {claimed:?} is not the requested node {node:?}"
            )));
        }
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &cfg.namespace);
    let Some(pod) = pods.get_opt(&pod_name).await? else {
        return Ok(Err(format!(
            "pod {}/{pod_name} does not exist",
            cfg.namespace
        )));
    };
    if pod.metadata.uid.as_deref() != Some(pod_uid.as_str()) {
        return Ok(Err(format!(
            "pod {}/{pod_name} has another uid than the token's {pod_uid} (a replaced pod)",
            cfg.namespace
        )));
    }
    if pod.labels().get(APP_LABEL.0).map(String::as_str) != Some(APP_LABEL.1) {
        return Ok(Err(format!(
            "pod {}/{pod_name} is not an agent (no label {}={})",
            cfg.namespace, APP_LABEL.0, APP_LABEL.1
        )));
    }
    let by_daemonset = pod
        .owner_references()
        .iter()
        .any(|o| o.kind == "DaemonSet" && o.api_version == "apps/v1" && o.controller == Some(true));
    if !by_daemonset {
        return Ok(Err(format!(
            "pod {}/{pod_name} is not controlled by a DaemonSet",
            cfg.namespace
        )));
    }
    let spec = pod.spec.unwrap_or_default();
    if spec.service_account_name.as_deref() != Some(cfg.agent_service_account.as_str()) {
        return Ok(Err(format!(
            "pod {}/{pod_name} runs as ServiceAccount {:?}, not {:?}",
            cfg.namespace, spec.service_account_name, cfg.agent_service_account
        )));
    }
    match spec.node_name.as_deref() {
        Some(n) if n == node => Ok(Ok(())),
        other => Ok(Err(format!(
            "pod {}/{pod_name} runs on node {other:?}, not on the requested node {node:?}",
            cfg.namespace
        ))),
    }
}

/// The whole trust decision: `Ok(checked request)` or the denial message.
async fn decide(
    csr: &CertificateSigningRequest,
    ctx: &Ctx,
) -> Result<Result<super::CheckedRequest, String>, kube::Error> {
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let checked = match check_request(&csr.spec.request.0, &usages) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.0)),
    };
    Ok(check_sender(csr, &checked.node, ctx)
        .await?
        .map(|()| checked))
}

async fn load_ca(ctx: &Ctx) -> Result<SwitchCa, SignerError> {
    let cfg = &ctx.config;
    let ca_err = |problem: String| SignerError::Ca {
        secret: format!("{}/{}", cfg.namespace, cfg.ca_secret),
        problem,
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cfg.namespace);
    let secret = secrets
        .get_opt(&cfg.ca_secret)
        .await?
        .ok_or_else(|| ca_err("not found".into()))?;
    let data = secret.data.unwrap_or_default();
    let field = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .ok_or_else(|| ca_err(format!("no {k}")))
    };
    SwitchCa::from_pem(&field("tls.crt")?, &field("tls.key")?).map_err(|e| ca_err(e.to_string()))
}

/// One pass over a request.
pub async fn reconcile_request(
    csr: &CertificateSigningRequest,
    client: &kube::Client,
    config: &SignerConfig,
) -> Result<(), SignerError> {
    let ctx = Ctx {
        client: client.clone(),
        config: config.clone(),
    };
    reconcile_one(csr, &ctx).await
}

async fn reconcile_one(csr: &CertificateSigningRequest, ctx: &Ctx) -> Result<(), SignerError> {
    if csr.spec.signer_name != SIGNER_NAME {
        return Ok(());
    }
    let name = csr.name_any();
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if issued || condition(csr, "Denied") || condition(csr, "Failed") {
        return Ok(());
    }
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    let approved = condition(csr, "Approved");
    let checked = match decide(csr, ctx).await? {
        Ok(c) => c,
        Err(why) => {
            let mut updated = csr.clone();
            let status = updated.status.get_or_insert_with(Default::default);
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            let sub = if approved {
                // Approved by someone else: never signed, and said why.
                tracing::warn!(csr = %name, "approved request fails the checks; not signing: {why}");
                conditions.push(new_condition("Failed", FAILED_REASON, &why));
                "status"
            } else {
                tracing::warn!(csr = %name, "denying: {why}");
                conditions.push(new_condition("Denied", DENIED_REASON, &why));
                "approval"
            };
            api.replace_subresource(sub, &name, &PostParams::default(), &updated)
                .await?;
            return Ok(());
        }
    };
    let ca = load_ca(ctx).await?;
    let mut current = csr.clone();
    if !approved {
        let status = current.status.get_or_insert_with(Default::default);
        status
            .conditions
            .get_or_insert_with(Vec::new)
            .push(new_condition(
                "Approved",
                APPROVED_REASON,
                &format!(
                    "the agent pod on node {} asked for its own identity",
                    checked.node
                ),
            ));
        current = api
            .replace_subresource("approval", &name, &PostParams::default(), &current)
            .await?;
        tracing::info!(csr = %name, node = %checked.node, "approved");
    }
    let requested = csr
        .spec
        .expiration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(ctx.config.max_lifetime);
    let lifetime = requested.min(ctx.config.max_lifetime);
    let chain = issue(
        &checked,
        &csr.spec.request.0,
        &ca,
        lifetime,
        SystemTime::now(),
    )?;
    let status: &mut CertificateSigningRequestStatus =
        current.status.get_or_insert_with(Default::default);
    status.certificate = Some(ByteString(chain.into_bytes()));
    api.replace_status(&name, &PostParams::default(), &current)
        .await?;
    tracing::info!(csr = %name, node = %checked.node, lifetime_s = lifetime.as_secs(), "signed");
    Ok(())
}

/// Runs the signer until `stop` resolves: a Controller over every CertificateSigningRequest
/// (those of other signers are skipped at once).
pub async fn run(
    client: kube::Client,
    config: SignerConfig,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let ctx = Arc::new(Ctx { client, config });
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(stop)
        .run(
            |csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>| async move {
                reconcile_one(&csr, &ctx)
                    .await
                    .map(|()| Action::await_change())
            },
            |csr: Arc<CertificateSigningRequest>, err: &SignerError, _| {
                tracing::warn!(csr = %csr.name_any(), "switch certificate request: {err}");
                Action::requeue(Duration::from_secs(5))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}
