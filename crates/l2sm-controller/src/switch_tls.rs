//! TLS of the OpenFlow channel: the controller's server configuration (its own certificate,
//! and client certificates required and verified against the switches' CA), the client
//! configuration a switch uses (tests, the benchmark's synthetic switches), and the per
//! connection handshake that yields the node named by the switch's certificate.
//!
//! The identity check itself (certificate node ↔ claimed datapath id, one session per
//! datapath id) is in [`crate::identity`] and the session in [`crate::openflow`].

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Bound of the TLS handshake of one switch connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read or holds no usable PEM object.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the configuration (unsupported key, key not matching the certificate…).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA certificates cannot verify clients.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Every certificate of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c.clone())?;
    }
    Ok(roots)
}

/// The controller's OpenFlow TLS server: presents `cert`/`key`, and requires a client
/// certificate chaining to one of `ca`.
pub fn server_config(
    cert: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca)?),
        provider(),
    )
    .build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert, key)?;
    Ok(Arc::new(config))
}

/// [`server_config`] from PEM files (`--openflow-tls-cert/-key/-ca`).
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    server_config(load_certs(cert)?, load_key(key)?, &load_certs(ca)?)
}

/// A switch's TLS client: trusts controllers whose certificate chains to `ca`, and presents
/// `cert`/`key` when given (without, it offers no certificate).
pub fn client_config(
    ca: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(cert, key)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Connects a switch-side TLS session over `tcp` to a controller whose certificate names
/// `server_name` (an IP address or DNS name).
pub async fn connect(
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The server side of one switch connection: the TLS session and the node its certificate
/// names (`None`: the certificate names no node).
pub async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Option<String>,
)> {
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    let node = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(crate::identity::node_of_certificate);
    Ok((tls, node))
}
