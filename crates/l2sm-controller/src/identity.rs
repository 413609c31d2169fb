//! Node identities of switches: which node an X.509 certificate names, which datapath ids that
//! node may claim, which datapath ids have a session, and why sessions were refused.
//!
//! A node is named by a SAN URI `urn:l2sm:node:<node-name>` (the common name is for humans
//! only). The certificate has already been verified against the configured CA when these
//! functions look at it (see [`crate::switch_tls`]).

use rustls::pki_types::CertificateDer;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Prefix of the SAN URI that names a node.
pub const NODE_URI_PREFIX: &str = "urn:l2sm:node:";

/// The SAN URI naming `node` in its certificate.
pub fn node_uri(node: &str) -> String {
    format!("{NODE_URI_PREFIX}{node}")
}

/// The node a certificate names: its one SAN URI `urn:l2sm:node:<name>`. `None` when the
/// certificate does not parse, has no such URI, names two different nodes, or the name is
/// empty or not a plausible node name (printable ASCII, at most 253 bytes).
pub fn node_of_certificate(cert: &CertificateDer<'_>) -> Option<String> {
    named_by(cert, NODE_URI_PREFIX)
}

/// Prefix of the SAN URI naming a cluster (a cluster controller publishing its
/// `inter.l2sm` names to the provider).
pub const CLUSTER_URI_PREFIX: &str = "urn:l2sm:cluster:";

/// The cluster a certificate names: its one SAN URI `urn:l2sm:cluster:<name>`, with the same
/// rules as [`node_of_certificate`].
pub fn cluster_of_certificate(cert: &CertificateDer<'_>) -> Option<String> {
    named_by(cert, CLUSTER_URI_PREFIX)
}

/// The one name a certificate's SAN URIs give after `prefix`.
fn named_by(cert: &CertificateDer<'_>, prefix: &str) -> Option<String> {
    let mut nodes: BTreeSet<String> = BTreeSet::new();
    for uri in san_uris(cert.as_ref())? {
        if let Some(name) = uri.strip_prefix(prefix) {
            let plausible =
                !name.is_empty() && name.len() <= 253 && name.bytes().all(|b| b.is_ascii_graphic());
            if !plausible {
                return None;
            }
            nodes.insert(name.to_string());
        }
    }
    let mut it = nodes.into_iter();
    match (it.next(), it.next()) {
        (Some(node), None) => Some(node),
        _ => None,
    }
}

/// The datapath id the agent of `node` gives its switch (upstream's naming: see
/// [`l2sm_pipeline::ids`]).
pub fn node_dpid(node: &str) -> u64 {
    use l2sm_pipeline::ids;
    ids::datapath_id(&ids::switch_name(node, ids::OVERLAY_PROVIDER))
}

/// One DER TLV: tag, contents, and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Every element of a constructed value's contents.
fn elements(mut contents: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !contents.is_empty() {
        let (tag, value, rest) = tlv(contents)?;
        out.push((tag, value));
        contents = rest;
    }
    Some(out)
}

/// DER of the subjectAltName extension's OID, 2.5.29.17.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// The URIs in a certificate's subjectAltName extension (empty without one); `None` when the
/// certificate is not well-formed DER.
fn san_uris(der: &[u8]) -> Option<Vec<String>> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut uris = Vec::new();
    // The extensions are tbsCertificate's [3] EXPLICIT element.
    for (tag, value) in elements(tbs)? {
        if tag != 0xa3 {
            continue;
        }
        let (tag, exts, _) = tlv(value)?;
        if tag != SEQUENCE {
            return None;
        }
        for (tag, ext) in elements(exts)? {
            if tag != SEQUENCE {
                return None;
            }
            let parts = elements(ext)?;
            let Some((0x06, oid)) = parts.first().copied() else {
                return None;
            };
            if oid != SAN_OID {
                continue;
            }
            // extnValue is the last element (an optional `critical` BOOLEAN may precede it).
            let Some((0x04, octets)) = parts.last().copied() else {
                return None;
            };
            let (tag, names, _) = tlv(octets)?;
            if tag != SEQUENCE {
                return None;
            }
            for (tag, name) in elements(names)? {
                // uniformResourceIdentifier [6] IMPLICIT IA5String.
                if tag == 0x86 {
                    uris.push(String::from_utf8(name.to_vec()).ok()?);
                }
            }
        }
    }
    Some(uris)
}

/// Why a switch connection got no session. A closed set: each is one metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The TLS handshake failed: no client certificate, one the CA did not sign, or not TLS.
    Tls,
    /// The certificate names no node (no `urn:l2sm:node:` SAN URI).
    NoNode,
    /// The datapath id claimed in FEATURES_REPLY is not the certificate node's.
    WrongDpid,
    /// Another session already holds that datapath id.
    Duplicate,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Refusal; 4] = [
        Refusal::Tls,
        Refusal::NoNode,
        Refusal::WrongDpid,
        Refusal::Duplicate,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Tls => "tls",
            Refusal::NoNode => "no_node",
            Refusal::WrongDpid => "wrong_dpid",
            Refusal::Duplicate => "duplicate",
        }
    }
}

/// Counters of refused switch sessions, by [`Refusal`].
#[derive(Debug, Default)]
pub struct Refusals {
    counts: [AtomicU64; 4],
}

impl Refusals {
    /// Counts one refusal.
    pub fn count(&self, why: Refusal) {
        self.counts[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many sessions were refused for `why`.
    pub fn get(&self, why: Refusal) -> u64 {
        self.counts[why as usize].load(Ordering::Relaxed)
    }

    /// Appends the Prometheus text of `l2sm_switch_sessions_refused_total`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let name = "l2sm_switch_sessions_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} Switch connections refused a session, by reason."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for why in Refusal::ALL {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{}\"}} {}",
                why.label(),
                self.get(why)
            );
        }
    }
}

/// Datapath ids that have a session (claimed at FEATURES_REPLY, released when the session
/// ends): the first session of a datapath id keeps it, later ones are refused.
#[derive(Debug, Default)]
pub struct Claims {
    held: Mutex<BTreeSet<u64>>,
}

impl Claims {
    /// Claims `dpid`; false when another session holds it.
    pub fn claim(&self, dpid: u64) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dpid)
    }

    /// Releases a claim made by [`Claims::claim`].
    pub fn release(&self, dpid: u64) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&dpid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: Vec<rcgen::SanType>) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().clone()
    }

    fn uri(s: &str) -> rcgen::SanType {
        rcgen::SanType::URI(s.to_string().try_into().unwrap())
    }

    #[test]
    fn node_from_san_uri() {
        let c = cert(vec![
            rcgen::SanType::DnsName("n1.example".try_into().unwrap()),
            uri("urn:l2sm:node:n1"),
            uri("https://example.com/"),
        ]);
        assert_eq!(node_of_certificate(&c).as_deref(), Some("n1"));
    }

    #[test]
    fn no_node_without_uri_or_with_two() {
        assert_eq!(
            node_of_certificate(&cert(vec![rcgen::SanType::DnsName(
                "n1".try_into().unwrap()
            )])),
            None
        );
        assert_eq!(
            node_of_certificate(&cert(vec![
                uri("urn:l2sm:node:n1"),
                uri("urn:l2sm:node:n2")
            ])),
            None
        );
        assert_eq!(
            node_of_certificate(&cert(vec![uri("urn:l2sm:node:")])),
            None
        );
        assert_eq!(node_of_certificate(&cert(vec![])), None);
    }

    #[test]
    fn garbage_is_no_node() {
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x02, 0x30],
        ] {
            assert_eq!(
                node_of_certificate(&CertificateDer::from(bytes.to_vec())),
                None
            );
        }
        // Every truncation of a real certificate.
        let c = cert(vec![uri("urn:l2sm:node:n1")]);
        for n in 0..c.len() {
            let cut = CertificateDer::from(c[..n].to_vec());
            assert_eq!(node_of_certificate(&cut), None, "truncated at {n}");
        }
    }

    #[test]
    fn dpid_is_the_agents() {
        assert_eq!(
            format!("{:016x}", node_dpid("l2sm-test-worker")),
            l2sm_pipeline::ids::dpid_hex(l2sm_pipeline::ids::datapath_id(
                &l2sm_pipeline::ids::switch_name("l2sm-test-worker", "l2sm-controller")
            ))
        );
    }

    #[test]
    fn claims_are_exclusive() {
        let c = Claims::default();
        assert!(c.claim(7));
        assert!(!c.claim(7));
        c.release(7);
        assert!(c.claim(7));
    }
}
