//! OpenFlow over TLS for the benchmarks: a CA, the controller's certificate and one
//! certificate per synthetic switch (naming its node, as the lab and Kubernetes do), so the
//! synthetic switches speak TLS to a controller that requires client certificates.

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The controller's TLS files (`--openflow-tls-cert/-key/-ca`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// The switches' CA (PEM).
    pub ca: PathBuf,
}

/// A CA that issues the controller's and the switches' certificates.
pub struct BenchPki {
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    /// The controller's files.
    pub files: TlsFiles,
}

impl BenchPki {
    /// A fresh CA and a controller certificate for 127.0.0.1, written into `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<BenchPki> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "l2sm-bench switch CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca_der = ca.der().clone();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        let files = TlsFiles {
            cert: dir.join("controller.pem"),
            key: dir.join("controller.key"),
            ca: dir.join("ca.pem"),
        };
        std::fs::write(&files.cert, cert.pem()).context("controller.pem")?;
        std::fs::write(&files.key, key.serialize_pem()).context("controller.key")?;
        std::fs::write(&files.ca, ca.pem()).context("ca.pem")?;
        Ok(BenchPki { ca, ca_der, files })
    }

    /// A TLS client of the API: trusts the CA, shows no certificate (it authenticates with
    /// Basic credentials, as the operator and upstream's clients do); with `resume`, rustls'
    /// default in-memory session cache, else every handshake is a full one.
    pub fn api_client(&self, resume: bool) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Arc::new(config))
    }

    /// The TLS client of the switch of `node`: its own certificate (SAN URI
    /// `urn:l2sm:node:NODE`), trusting the CA.
    pub fn client(&self, node: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::URI(
            format!("urn:l2sm:node:{node}")
                .try_into()
                .with_context(|| format!("node name {node:?}"))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(l2sm_controller::switch_tls::client_config(
            std::slice::from_ref(&self.ca_der),
            Some((vec![cert.der().clone()], key)),
        )?)
    }
}
