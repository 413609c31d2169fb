//! `l2sm agent-cert`: keeps the node's switch key and certificate in the switch TLS directory,
//! asking the cluster for a new certificate when needed (see the [module](super) docs).
//!
//! Files: `tls.key` (PKCS#8, mode 0600), `tls.crt` (the node's certificate) and `ca.crt` (the
//! switch CA, the last certificate of the CSR's `status.certificate`). Each is written to a
//! temporary file in the same directory and renamed over the old one, so a reader sees the
//! old file or the new one, never part of one. The new key stays in memory until the
//! certificate is issued: a failed or timed-out request leaves the old files as they were.

use super::{csr_name, node_uri, valid_node_name, CertInfo, SIGNER_NAME};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Key file name.
pub const KEY_FILE: &str = "tls.key";
/// Certificate file name.
pub const CERT_FILE: &str = "tls.crt";
/// CA file name.
pub const CA_FILE: &str = "ca.crt";

/// Options of `l2sm agent-cert`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentCertArgs {
    /// This node's Kubernetes name (the certificate's identity).
    #[arg(long, env = "NODENAME")]
    pub node: String,
    /// Directory of `tls.key`, `tls.crt` and `ca.crt` (the host's switch TLS directory).
    #[arg(long, default_value = crate::reconcile::overlay::SWITCH_TLS_DIR)]
    pub dir: PathBuf,
    /// Lifetime asked for (`expirationSeconds`; the signer may cap it): seconds, or a number
    /// with `s`, `m` or `h`.
    #[arg(long, default_value = "8760h", value_parser = crate::operator::parse_duration)]
    pub expiration: Duration,
    /// How long to wait for the certificate before failing.
    #[arg(long, default_value = "5m", value_parser = crate::operator::parse_duration)]
    pub timeout: Duration,
}

/// What `agent-cert` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The files were valid for this node with more than a third of their lifetime left.
    Kept {
        /// End of the kept certificate's validity.
        not_after: SystemTime,
    },
    /// A new key and certificate were written.
    Issued {
        /// The request that got the certificate.
        csr: String,
        /// Why the old files were not kept.
        why: String,
    },
}

/// Why `agent-cert` failed. Nothing in the directory changed.
#[derive(Debug, thiserror::Error)]
pub enum AgentCertError {
    /// Bad options.
    #[error("{0}")]
    Config(String),
    /// The directory cannot be read or written.
    #[error("{path}: {error}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// What happened.
        error: std::io::Error,
    },
    /// A Kubernetes call failed.
    #[error("CertificateSigningRequest {csr}: {error}")]
    Kube {
        /// The request.
        csr: String,
        /// The error.
        error: kube::Error,
    },
    /// The request was denied or failed.
    #[error("CertificateSigningRequest {csr} was {condition}: {reason}: {message}")]
    Refused {
        /// The request.
        csr: String,
        /// `Denied` or `Failed`.
        condition: String,
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// The request was deleted before it got a certificate.
    #[error("CertificateSigningRequest {csr} disappeared before a certificate was issued")]
    Vanished {
        /// The request.
        csr: String,
    },
    /// No certificate within the timeout.
    #[error("CertificateSigningRequest {csr} got no certificate within {}s (not approved yet? the operator's signer approves only requests from agent pods on the node they name; `kubectl get csr {csr}`)", timeout.as_secs())]
    Timeout {
        /// The request.
        csr: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The issued certificate is not usable.
    #[error("CertificateSigningRequest {csr}: the issued certificate {problem}")]
    BadCertificate {
        /// The request.
        csr: String,
        /// What is wrong.
        problem: String,
    },
    /// Key generation failed.
    #[error("key: {0}")]
    Key(#[from] rcgen::Error),
}

/// Why the files in `dir` are not good for `node` at `now`; `None` when they are.
pub fn current_problem(dir: &Path, node: &str, now: SystemTime) -> Option<String> {
    let read = |name: &str| std::fs::read(dir.join(name));
    let (key, cert, ca) = match (read(KEY_FILE), read(CERT_FILE), read(CA_FILE)) {
        (Ok(k), Ok(c), Ok(a)) => (k, c, a),
        _ => return Some("no key, certificate and CA yet".into()),
    };
    let key = match rcgen::KeyPair::from_pem(&String::from_utf8_lossy(&key)) {
        Ok(k) => k,
        Err(e) => return Some(format!("{KEY_FILE} does not parse: {e}")),
    };
    let certs = match CertInfo::all_from_pem(&cert) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => return Some(format!("{CERT_FILE} holds no certificate")),
        Err(e) => return Some(format!("{CERT_FILE}: {e}")),
    };
    let cas = match CertInfo::all_from_pem(&ca) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => return Some(format!("{CA_FILE} holds no certificate")),
        Err(e) => return Some(format!("{CA_FILE}: {e}")),
    };
    let leaf = &certs[0];
    if leaf.node() != Some(node) {
        return Some(format!(
            "{CERT_FILE} names {:?}, not {}",
            leaf.nodes,
            node_uri(node)
        ));
    }
    if leaf.spki_der != rcgen::PublicKeyData::subject_public_key_info(&key) {
        return Some(format!("{KEY_FILE} is not the key of {CERT_FILE}"));
    }
    if !cas.iter().any(|ca| leaf.signed_by(ca)) {
        return Some(format!("{CERT_FILE} does not chain to {CA_FILE}"));
    }
    if !leaf.fresh_at(now) {
        return Some(format!(
            "{CERT_FILE} has less than a third of its lifetime left (until {})",
            time::OffsetDateTime::from(leaf.not_after)
        ));
    }
    None
}

/// Writes `data` to `dir/name` atomically (temporary file, fsync, rename) with `mode`.
pub fn write_atomic(dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<(), AgentCertError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let io = |error| AgentCertError::Io {
        path: path.clone(),
        error,
    };
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        // The rename is durable once the directory is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// How often the request is looked at while waiting.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Between two reads of the request.
    pub poll: Duration,
    /// Between two progress log lines.
    pub progress: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            poll: Duration::from_secs(2),
            progress: Duration::from_secs(30),
        }
    }
}

/// Keeps valid files, else gets a new certificate through a CertificateSigningRequest.
pub async fn ensure_certificate(
    client: kube::Client,
    args: &AgentCertArgs,
    timing: Timing,
) -> Result<Outcome, AgentCertError> {
    let node = args.node.trim();
    if !valid_node_name(node) {
        return Err(AgentCertError::Config(format!(
            "--node {node:?} is not a Kubernetes node name"
        )));
    }
    if args.expiration < super::MIN_EXPIRATION || args.expiration.as_secs() > i32::MAX as u64 {
        return Err(AgentCertError::Config(format!(
            "--expiration must be between 10m and {}s",
            i32::MAX
        )));
    }
    let dir = &args.dir;
    std::fs::create_dir_all(dir).map_err(|error| AgentCertError::Io {
        path: dir.clone(),
        error,
    })?;
    let why = match current_problem(dir, node, SystemTime::now()) {
        None => {
            let not_after = std::fs::read(dir.join(CERT_FILE))
                .ok()
                .and_then(|c| CertInfo::all_from_pem(&c).ok())
                .and_then(|c| c.first().map(|c| c.not_after))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            tracing::info!(node, dir = %dir.display(), "switch certificate is valid; keeping it");
            return Ok(Outcome::Kept { not_after });
        }
        Some(why) => why,
    };
    tracing::info!(node, "requesting a switch certificate: {why}");

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let name = csr_name(node, &spki);
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, node);
    params.subject_alt_names = vec![rcgen::SanType::URI(node_uri(node).try_into()?)];
    let request = params.serialize_request(&key)?.pem()?;

    let api: Api<CertificateSigningRequest> = Api::all(client);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: SIGNER_NAME.into(),
            usages: Some(vec!["client auth".into(), "digital signature".into()]),
            expiration_seconds: i32::try_from(args.expiration.as_secs()).ok(),
            ..Default::default()
        },
        status: None,
    };
    let kube_err = |error| AgentCertError::Kube {
        csr: name.clone(),
        error,
    };
    api.create(&PostParams::default(), &csr)
        .await
        .map_err(kube_err)?;
    tracing::info!(csr = %name, "created; waiting for approval and signature");

    let started = Instant::now();
    let mut last_log = Instant::now();
    let chain = loop {
        let Some(current) = api.get_opt(&name).await.map_err(kube_err)? else {
            return Err(AgentCertError::Vanished { csr: name });
        };
        let status = current.status.unwrap_or_default();
        for c in status.conditions.iter().flatten() {
            if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
                return Err(AgentCertError::Refused {
                    csr: name,
                    condition: c.type_.clone(),
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                });
            }
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            break cert.0;
        }
        if started.elapsed() >= args.timeout {
            return Err(AgentCertError::Timeout {
                csr: name,
                timeout: args.timeout,
            });
        }
        if last_log.elapsed() >= timing.progress {
            let approved = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Approved" && c.status == "True");
            tracing::info!(csr = %name, waited = started.elapsed().as_secs(), approved, "still waiting for the certificate");
            last_log = Instant::now();
        }
        tokio::time::sleep(timing.poll).await;
    };

    // The leaf, then the CA: check before writing anything.
    let bad = |problem: String| AgentCertError::BadCertificate {
        csr: name.clone(),
        problem,
    };
    let certs = CertInfo::all_from_pem(&chain).map_err(|e| bad(e.to_string()))?;
    let (leaf, ca) = match certs.as_slice() {
        [leaf, .., ca] => (leaf, ca),
        _ => {
            return Err(bad(
                "holds no CA certificate after the node's (the signer puts the CA last)".into(),
            ))
        }
    };
    if leaf.spki_der != spki {
        return Err(bad("is not for the key this node made".into()));
    }
    if leaf.node() != Some(node) {
        return Err(bad(format!("names {:?}, not {node}", leaf.nodes)));
    }
    if !leaf.signed_by(ca) {
        return Err(bad("does not chain to the CA certificate after it".into()));
    }
    let leaf_pem = super::pem_block("CERTIFICATE", &leaf.der);
    let ca_pem = super::pem_block("CERTIFICATE", &ca.der);
    // CA first (it rarely changes), then the key, then the certificate: a crash in between
    // leaves a key that is not the certificate's, which the next run renews.
    write_atomic(dir, CA_FILE, ca_pem.as_bytes(), 0o644)?;
    write_atomic(dir, KEY_FILE, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(dir, CERT_FILE, leaf_pem.as_bytes(), 0o644)?;
    tracing::info!(csr = %name, dir = %dir.display(), "switch certificate written");
    Ok(Outcome::Issued { csr: name, why })
}

/// `l2sm agent-cert` with the in-cluster configuration (the pod's ServiceAccount token).
pub async fn run(args: AgentCertArgs) -> Result<Outcome, AgentCertError> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| AgentCertError::Config(format!("cannot reach the Kubernetes API: {e}")))?;
    ensure_certificate(client, &args, Timing::default()).await
}
