//! The lab's switch PKI: a CA made at `lab up`, the controller's OpenFlow server certificate,
//! and one key + certificate per node naming it (SAN URI `urn:l2sm:node:NAME`), so that every
//! switch talks to the controller over mutually authenticated TLS. Private keys are written
//! 0600; ovs-vswitchd runs as root in the lab and reads its node's files itself.
//!
//! ```text
//! <lab dir>/pki/ca.pem ca.key controller.pem controller.key
//! <lab dir>/<node>/switch.pem switch.key
//! ```

use crate::state::{Lab, Site};
use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Prefix of the SAN URI naming a node (the controller's `identity` module reads it).
pub const NODE_URI_PREFIX: &str = "urn:l2sm:node:";

/// Where the lab's PKI files are.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// The controller's OpenFlow server certificate (PEM).
    pub controller_cert: PathBuf,
    /// Its private key (PEM, 0600).
    pub controller_key: PathBuf,
}

/// A node's switch certificate and key.
#[derive(Debug, Clone)]
pub struct NodeCert {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, 0600).
    pub key: PathBuf,
}

/// The PKI files of `lab`.
pub fn paths(lab: &Lab) -> Pki {
    let dir = lab.dir().join("pki");
    Pki {
        ca_cert: dir.join("ca.pem"),
        controller_cert: dir.join("controller.pem"),
        controller_key: dir.join("controller.key"),
    }
}

/// The switch certificate files of `node`.
pub fn node_paths(lab: &Lab, node: &str) -> NodeCert {
    let dir = lab.node_dir(node);
    NodeCert {
        cert: dir.join("switch.pem"),
        key: dir.join("switch.key"),
    }
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A key is never readable by others, not even for an instant.
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn ca_params(lab: &Lab) -> anyhow::Result<CertificateParams> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("l2sm lab {} switch CA", lab.name),
    );
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(ca_params)
}

/// Issues a switch certificate for `node` from the lab's CA into `dir` (`switch.pem`,
/// `switch.key`): for a switch the lab does not run itself (an unmanaged OpenFlow switch
/// named in the topology).
pub fn issue(lab: &Lab, node: &str, dir: &Path) -> anyhow::Result<NodeCert> {
    let key_path = lab.dir().join("pki").join("ca.key");
    let ca_key = KeyPair::from_pem(
        &std::fs::read_to_string(&key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?,
    )?;
    let ca = rcgen::Issuer::new(ca_params(lab)?, ca_key);
    let key = KeyPair::generate()?;
    let cert = node_params(node)?.signed_by(&key, &ca)?;
    let files = NodeCert {
        cert: dir.join("switch.pem"),
        key: dir.join("switch.key"),
    };
    write(&files.cert, &cert.pem(), 0o644)?;
    write(&files.key, &key.serialize_pem(), 0o600)?;
    Ok(files)
}

/// Makes a fresh CA, the controller's certificate, and a certificate for each of `nodes`.
pub fn create(lab: &Lab, nodes: &[String]) -> anyhow::Result<Pki> {
    create_for_sites(lab, nodes, &[lab.site(None)?], None)
}

/// The provider controller's certificate and key (multi-cluster lab).
pub fn provider_files(lab: &Lab) -> (PathBuf, PathBuf) {
    let dir = lab.dir().join("pki");
    (dir.join("provider.pem"), dir.join("provider.key"))
}

/// The controller certificate and key of a site: `pki/controller.pem` for the single
/// cluster, `pki/controller-<cluster>.pem` for a cluster of a multi-cluster lab.
pub fn controller_files(lab: &Lab, site: &Site) -> (PathBuf, PathBuf) {
    let dir = lab.dir().join("pki");
    match &site.cluster {
        None => (dir.join("controller.pem"), dir.join("controller.key")),
        Some(c) => (
            dir.join(format!("controller-{c}.pem")),
            dir.join(format!("controller-{c}.key")),
        ),
    }
}

/// The CA, one controller certificate per site (its management and underlay addresses),
/// the provider controller's (at `provider_ip`, when given) and one switch certificate per
/// node.
pub fn create_for_sites(
    lab: &Lab,
    nodes: &[String],
    sites: &[Site],
    provider_ip: Option<&str>,
) -> anyhow::Result<Pki> {
    let pki = paths(lab);
    let ca_params = ca_params(lab)?;
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    write(&pki.ca_cert, &ca.pem(), 0o644)?;
    write(&lab.dir().join("pki").join("ca.key"), &ca_key_pem, 0o600)?;

    let server = |addresses: Vec<String>, (cert_path, key_path): (PathBuf, PathBuf)| {
        let mut params = CertificateParams::new(addresses)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "l2sm-controller");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        write(&cert_path, &cert.pem(), 0o644)?;
        write(&key_path, &key.serialize_pem(), 0o600)?;
        anyhow::Ok(())
    };
    for site in sites {
        // The controller: its addresses on the management network and the underlay.
        server(
            vec![site.controller_mgmt_ip(), site.controller_ip()],
            controller_files(lab, site),
        )?;
    }
    if let Some(ip) = provider_ip {
        server(vec![ip.to_string()], provider_files(lab))?;
    }

    for node in nodes {
        let files = node_paths(lab, node);
        let (cert, key) = node_certificate(node, &ca)?;
        write(&files.cert, &cert, 0o644)?;
        write(&files.key, &key, 0o600)?;
    }
    Ok(pki)
}

/// A client certificate naming `node` (SAN URI, CN), signed by `ca`: (certificate, key) PEM.
pub fn node_certificate(
    node: &str,
    ca: &CertifiedIssuer<'_, KeyPair>,
) -> anyhow::Result<(String, String)> {
    let params = node_params(node)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The certificate parameters of `node`'s switch.
fn node_params(node: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, node);
    params.subject_alt_names = vec![SanType::URI(
        format!("{NODE_URI_PREFIX}{node}")
            .try_into()
            .with_context(|| format!("node name {node:?} cannot go in a certificate"))?,
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    Ok(params)
}
