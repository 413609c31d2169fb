//! TLS of the edge's gRPC listener: the edge's certificate, client certificates required and
//! verified against a CA file, ALPN `h2` (as gRPC clients require). The same shape as the
//! controller's switch TLS (`l2sm-controller/src/switch_tls.rs`), which the agent cannot
//! depend on.

use anyhow::{bail, Context as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file (at least one).
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: bad PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no CERTIFICATE in the file", path.display());
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("cannot read a key from {}", path.display()))
}

/// The server configuration: presents `cert`/`key`, requires a client certificate chaining
/// to `ca`, offers only `h2`.
pub fn server_config(
    cert: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: &[CertificateDer<'static>],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c.clone()).context("CA certificate refused")?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .context("client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert, key)
        .context("certificate and key refused")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// [`server_config`] from PEM files.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    server_config(load_certs(cert)?, load_key(key)?, &load_certs(ca)?)
}
