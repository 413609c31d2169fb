//! Per-node switch certificates issued through Kubernetes CertificateSigningRequests.
//!
//! Flow (docs/kubernetes.md, "Switch certificates"):
//! 1. On each node, the agent pod's init container (`l2sm agent-cert`, [`agent`]) keeps
//!    `tls.key`, `tls.crt` and `ca.crt` in the node's switch TLS directory. When they are missing,
//!    do not name the node, do not chain to `ca.crt`, or have less than a third of their
//!    lifetime left, it makes a P-256 key on the node and creates a `certificates.k8s.io/v1`
//!    CertificateSigningRequest for [`SIGNER_NAME`] with the pod's ServiceAccount token.
//! 2. The operator's signer ([`signer`], leader only) approves a request only when the API
//!    server's record of who sent it (`spec.username`, and the pod and node claims of a bound
//!    ServiceAccount token in `spec.extra`) names a running agent pod on the very node the
//!    request names, and the request itself asks for exactly that node's identity; else it
//!    denies it with the reason. It then signs with the CA in the Secret `l2sm-switch-ca` and
//!    writes the leaf followed by the CA certificate into `status.certificate`.
//! 3. The init container writes the files (each atomically) and exits; the agent and OVS use
//!    them for OpenFlow (`ssl:`) and for the controller's REST API (client certificate).
//!
//! This module holds what both sides check: the request's content ([`check_request`]), the
//! issued certificate ([`issue`]) and what a certificate on disk says ([`CertInfo`]).

pub mod agent;
pub mod signer;

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry;
use x509_parser::prelude::FromDer as _;

/// The signer name of switch certificate requests (the only one the operator's signer acts on).
pub const SIGNER_NAME: &str = "l2sm.l2sm.k8s.local/switch";
/// Prefix of the SAN URI naming a node (the controller's `identity::NODE_URI_PREFIX`).
pub const NODE_URI_PREFIX: &str = "urn:l2sm:node:";
/// Prefix of the CertificateSigningRequests the agents create.
pub const CSR_PREFIX: &str = "l2sm-switch-";
/// The ServiceAccount token claims the API server copies into `spec.extra`.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
/// The pod uid claim.
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
/// The node name claim (tokens bound to a pod on Kubernetes ≥ 1.30 carry it).
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
/// Key usages a switch request may ask for: `client auth` is required.
pub const ALLOWED_USAGES: [&str; 3] = ["client auth", "digital signature", "key encipherment"];
/// Default lifetime an agent asks for (one year).
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest lifetime the API server accepts in `expirationSeconds` (10 minutes).
pub const MIN_EXPIRATION: Duration = Duration::from_secs(600);

/// The SAN URI naming `node`.
pub fn node_uri(node: &str) -> String {
    format!("{NODE_URI_PREFIX}{node}")
}

/// Whether `node` is a plausible Kubernetes node name (a DNS subdomain: lower-case letters,
/// digits, `-` and `.`, at most 253 bytes, alphanumeric at both ends).
pub fn valid_node_name(node: &str) -> bool {
    let b = node.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// FNV-1a 64 of `bytes` in hex: tells keys apart in a name (not a security property).
fn short_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Name of the request for `node`'s key (its SubjectPublicKeyInfo DER): `l2sm-switch-<node>-<hash>`,
/// the node part shortened to keep the name within 253 bytes.
pub fn csr_name(node: &str, spki_der: &[u8]) -> String {
    let hash = short_hash(spki_der);
    let room = 253 - CSR_PREFIX.len() - 1 - hash.len();
    let mut n = &node[..node.len().min(room)];
    n = n.trim_end_matches(['-', '.']);
    format!("{CSR_PREFIX}{n}-{hash}")
}

/// What a valid switch request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRequest {
    /// The node named (CN and SAN URI).
    pub node: String,
    /// The request's SubjectPublicKeyInfo (DER).
    pub spki_der: Vec<u8>,
}

/// Why a request's content is refused (the Denied condition's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(msg: impl Into<String>) -> Refused {
    Refused(msg.into())
}

/// The one PEM block labelled `label` in `pem`: an error when there is none, another
/// block, or garbage.
fn single_pem(pem: &[u8], label: &str) -> Result<Vec<u8>, Refused> {
    let mut found = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| refused(format!("the request is not PEM: {e}")))?;
        found.push(block);
    }
    match found.as_slice() {
        [one] if one.label == label => Ok(one.contents.clone()),
        [] => Err(refused(format!("no {label} PEM block"))),
        [one] => Err(refused(format!(
            "a {} PEM block where a {label} was expected",
            one.label
        ))),
        _ => Err(refused(format!(
            "{} PEM blocks where one {label} was expected",
            found.len()
        ))),
    }
}

/// Checks a switch request (`spec.request`, PEM) and its `spec.usages`: a well-formed
/// PKCS#10 request whose self-signature verifies, subject exactly `CN=<node>`, exactly one
/// SAN, the URI `urn:l2sm:node:<node>`, a P-256 or Ed25519 key, no extension beyond SAN,
/// key usage, extended key usage and a non-CA basic constraints, and usages `client auth`
/// (with at most `digital signature` and `key encipherment`).
pub fn check_request(pem: &[u8], usages: &[String]) -> Result<CheckedRequest, Refused> {
    if !usages.iter().any(|u| u == "client auth") {
        return Err(refused(format!("usages {usages:?} lack \"client auth\"")));
    }
    if let Some(u) = usages
        .iter()
        .find(|u| !ALLOWED_USAGES.contains(&u.as_str()))
    {
        return Err(refused(format!(
            "usage {u:?} is not allowed (only {ALLOWED_USAGES:?})"
        )));
    }
    let der = single_pem(pem, "CERTIFICATE REQUEST")?;
    let (rest, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| refused(format!("the request does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(refused("trailing bytes after the request"));
    }
    csr.verify_signature()
        .map_err(|e| refused(format!("the request's self-signature does not verify: {e}")))?;
    let info = &csr.certification_request_info;

    // Subject: exactly one attribute, the common name.
    let attrs: Vec<_> = info.subject.iter_attributes().collect();
    let node = match attrs.as_slice() {
        [cn] if *cn.attr_type() == oid_registry::OID_X509_COMMON_NAME => cn
            .as_str()
            .map_err(|_| refused("the common name is not a string"))?
            .to_string(),
        _ => {
            return Err(refused(format!(
                "the subject must be exactly CN=<node>, not {:?}",
                info.subject.to_string()
            )))
        }
    };
    if !valid_node_name(&node) {
        return Err(refused(format!("CN {node:?} is not a node name")));
    }

    // Key: P-256 or Ed25519.
    let alg = &info.subject_pki.algorithm;
    let p256 = alg.algorithm == oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        && alg
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == oid_registry::OID_EC_P256);
    let ed25519 = alg.algorithm == oid_registry::OID_SIG_ED25519;
    if !(p256 || ed25519) {
        return Err(refused(format!(
            "the key must be ECDSA P-256 or Ed25519, not {}",
            alg.algorithm
        )));
    }

    // Extensions: exactly one SAN, the node's URI.
    let want = node_uri(&node);
    let mut sans: Option<Vec<String>> = None;
    for ext in csr.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                if sans.is_some() {
                    return Err(refused("two subjectAltName extensions"));
                }
                let mut names = Vec::new();
                for n in &san.general_names {
                    match n {
                        GeneralName::URI(u) => names.push(format!("URI:{u}")),
                        GeneralName::DNSName(d) => names.push(format!("DNS:{d}")),
                        GeneralName::IPAddress(_) => names.push("IP address".into()),
                        other => names.push(format!("{other:?}")),
                    }
                }
                sans = Some(names);
            }
            ParsedExtension::KeyUsage(_) | ParsedExtension::ExtendedKeyUsage(_) => {}
            ParsedExtension::BasicConstraints(bc) if !bc.ca => {}
            ParsedExtension::BasicConstraints(_) => {
                return Err(refused("the request asks for a CA certificate"))
            }
            other => {
                return Err(refused(format!(
                    "unexpected extension in the request: {other:?}"
                )))
            }
        }
    }
    match sans.as_deref() {
        Some([one]) if *one == format!("URI:{want}") => {}
        Some(names) => {
            return Err(refused(format!(
                "the subjectAltName must be exactly URI:{want}, not {names:?}"
            )))
        }
        None => return Err(refused(format!("no subjectAltName URI:{want}"))),
    }
    Ok(CheckedRequest {
        node,
        spki_der: info.subject_pki.raw.to_vec(),
    })
}

/// Why a certificate could not be issued or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The CA's files do not parse.
    #[error("switch CA: {0}")]
    Ca(String),
    /// rcgen refused.
    #[error("signing: {0}")]
    Sign(#[from] rcgen::Error),
    /// A certificate does not parse.
    #[error("certificate: {0}")]
    Parse(String),
}

/// The CA that signs switch certificates: its certificate (PEM, what `ca.crt` becomes) and key.
pub struct SwitchCa {
    cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for SwitchCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchCa").finish_non_exhaustive()
    }
}

impl SwitchCa {
    /// From the PEM certificate and PKCS#8 key of a CA Secret (`tls.crt`, `tls.key`).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| {
            CertError::Ca(format!(
                "tls.key: {e} (a PKCS#8 \"PRIVATE KEY\" is needed: cert-manager's privateKey.encoding: PKCS8)"
            ))
        })?;
        // The first certificate of tls.crt is the CA's own.
        let first = x509_parser::pem::Pem::iter_from_buffer(cert_pem.as_bytes())
            .next()
            .ok_or_else(|| CertError::Ca("tls.crt holds no certificate".into()))?
            .map_err(|e| CertError::Ca(format!("tls.crt: {e}")))?;
        let info = CertInfo::from_der(&first.contents)
            .map_err(|e| CertError::Ca(format!("tls.crt: {e}")))?;
        if info.spki_der != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(CertError::Ca("tls.key is not the key of tls.crt".into()));
        }
        let issuer = rcgen::Issuer::from_ca_cert_der(&first.contents.clone().into(), key)
            .map_err(|e| CertError::Ca(format!("tls.crt: {e}")))?;
        let cert_pem = pem_block("CERTIFICATE", &first.contents);
        Ok(Self { cert_pem, issuer })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
}

/// One PEM block.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Issues the certificate of a checked request: subject CN=`<node>`, the one SAN URI, key
/// usage digital signature, extended key usage client auth, valid from a minute ago for
/// `lifetime`. Returns `status.certificate`: the leaf, then the CA certificate.
pub fn issue(
    req: &CheckedRequest,
    csr_pem: &[u8],
    ca: &SwitchCa,
    lifetime: Duration,
    now: SystemTime,
) -> Result<String, CertError> {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType, SerialNumber,
    };
    // rcgen's CSR parser gives the public key in the form its signer takes (it verified the
    // self-signature again).
    let csr = rcgen::CertificateSigningRequestParams::from_pem(&String::from_utf8_lossy(csr_pem))?;
    if rcgen::PublicKeyData::subject_public_key_info(&csr.public_key) != req.spki_der {
        return Err(CertError::Parse("the request's key changed".into()));
    }
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, req.node.as_str());
    params.subject_alt_names = vec![SanType::URI(
        node_uri(&req.node)
            .try_into()
            .map_err(|e| CertError::Parse(format!("node URI: {e}")))?,
    )];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let start = now
        .checked_sub(Duration::from_secs(60))
        .unwrap_or(UNIX_EPOCH);
    params.not_before = time::OffsetDateTime::from(start);
    params.not_after = time::OffsetDateTime::from(now + lifetime);
    let mut serial = [0u8; 16];
    // Unique enough: the time and the key's hash (the CA never issues two certificates for
    // one key in the same nanosecond).
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    serial[..8].copy_from_slice(&(nanos as u64).to_be_bytes());
    let h = u64::from_str_radix(&short_hash(&req.spki_der), 16).unwrap_or(0);
    serial[8..].copy_from_slice(&h.to_be_bytes());
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let cert = params.signed_by(&csr.public_key, &ca.issuer)?;
    Ok(format!("{}{}", cert.pem(), ca.cert_pem))
}

/// What a certificate says, as far as switch identities go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The nodes named by `urn:l2sm:node:` SAN URIs.
    pub nodes: Vec<String>,
    /// Validity start and end.
    pub not_before: SystemTime,
    /// Validity end.
    pub not_after: SystemTime,
    /// SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// The whole certificate, DER.
    pub der: Vec<u8>,
}

fn time_of(t: &x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH
    }
}

impl CertInfo {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| CertError::Parse(e.to_string()))?;
        let mut nodes = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                if let GeneralName::URI(u) = n {
                    if let Some(node) = u.strip_prefix(NODE_URI_PREFIX) {
                        nodes.push(node.to_string());
                    }
                }
            }
        }
        Ok(Self {
            nodes,
            not_before: time_of(&cert.validity().not_before),
            not_after: time_of(&cert.validity().not_after),
            spki_der: cert.public_key().raw.to_vec(),
            der: der.to_vec(),
        })
    }

    /// Every certificate of a PEM text, in order.
    pub fn all_from_pem(pem: &[u8]) -> Result<Vec<Self>, CertError> {
        let mut out = Vec::new();
        for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| CertError::Parse(format!("PEM: {e}")))?;
            if block.label != "CERTIFICATE" {
                return Err(CertError::Parse(format!(
                    "a {} PEM block among certificates",
                    block.label
                )));
            }
            out.push(Self::from_der(&block.contents)?);
        }
        Ok(out)
    }

    /// Whether `issuer` signed this certificate (its signature verifies with the issuer's key).
    pub fn signed_by(&self, issuer: &CertInfo) -> bool {
        let (Ok((_, cert)), Ok((_, ca))) = (
            x509_parser::parse_x509_certificate(&self.der),
            x509_parser::parse_x509_certificate(&issuer.der),
        ) else {
            return false;
        };
        cert.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// The one node this certificate names, if exactly one.
    pub fn node(&self) -> Option<&str> {
        match self.nodes.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Whether at `now` more than a third of the lifetime is left.
    pub fn fresh_at(&self, now: SystemTime) -> bool {
        let Ok(life) = self.not_after.duration_since(self.not_before) else {
            return false;
        };
        match self.not_after.duration_since(now) {
            Ok(left) => now >= self.not_before && left * 3 > life,
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_names_are_bounded_and_per_key() {
        let a = csr_name("node-1", b"key a");
        let b = csr_name("node-1", b"key b");
        assert!(a.starts_with("l2sm-switch-node-1-"));
        assert_ne!(a, b);
        let long = "n".repeat(253);
        assert!(csr_name(&long, b"k").len() <= 253);
    }

    /// A request as `l2sm agent-cert` makes it, as PEM and DER.
    fn agent_request(node: &str) -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, node);
        params.subject_alt_names = vec![rcgen::SanType::URI(node_uri(node).try_into().unwrap())];
        let csr = params.serialize_request(&key).unwrap();
        (csr.pem().unwrap(), csr.der().to_vec())
    }

    /// (header length, content length) of the DER element at `der[pos..]`.
    fn tlv(der: &[u8], pos: usize) -> (usize, usize) {
        let first = der[pos + 1] as usize;
        if first < 0x80 {
            return (2, first);
        }
        let n = first & 0x7f;
        let len = der[pos + 2..pos + 2 + n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | *b as usize);
        (2 + n, len)
    }

    /// Any pod that can mint a token for the agent ServiceAccount sends these bytes: every
    /// single-byte change of what the request signs (subject, key, SAN) or of its signature
    /// value is refused; no change anywhere, and no garbage, panics.
    #[test]
    fn tampered_and_garbage_requests_are_refused() {
        let usages = vec!["client auth".to_string()];
        let (pem, der) = agent_request("node-1");
        let ok = check_request(pem.as_bytes(), &usages).expect("an agent's own request");
        assert_eq!(ok.node, "node-1");
        // CertificationRequest = SEQUENCE { info, signatureAlgorithm, signature BIT STRING }.
        let (outer, _) = tlv(&der, 0);
        let (ih, il) = tlv(&der, outer);
        let info = outer..outer + ih + il;
        let (ah, al) = tlv(&der, info.end);
        let sig_at = info.end + ah + al;
        let (sh, sl) = tlv(&der, sig_at);
        // After the BIT STRING's unused-bits byte.
        let signature = sig_at + sh + 1..sig_at + sh + sl;
        assert_eq!(signature.end, der.len());
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0x01;
            let pem = pem_block("CERTIFICATE REQUEST", &bad);
            let answer = check_request(pem.as_bytes(), &usages);
            if info.contains(&i) || signature.contains(&i) {
                assert!(answer.is_err(), "byte {i} changed, still accepted");
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in [0usize, 1, 16, 200, 4096] {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            assert!(check_request(&junk, &usages).is_err());
            let pem = pem_block("CERTIFICATE REQUEST", &junk);
            assert!(check_request(pem.as_bytes(), &usages).is_err());
        }
    }

    #[test]
    fn node_names() {
        assert!(valid_node_name("kind-worker2"));
        assert!(valid_node_name("ip-10-0-0-1.ec2.internal"));
        for bad in ["", "A", "-a", "a-", "a b", "a/b", "a_b"] {
            assert!(!valid_node_name(bad), "{bad}");
        }
    }
}
