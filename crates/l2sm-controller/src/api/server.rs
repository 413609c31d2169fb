//! The API's HTTP server: connections served one by one with hyper, so every limit is ours to
//! set. A connection cap (a semaphore; connections beyond it are closed at once, before any
//! buffer is allocated), a header-read timeout that also bounds how long a kept-alive
//! connection may sit idle, a cap on the header size and on requests per connection, and
//! optional TLS whose certificate is re-read when its files change.

use super::auth::{Identity, Role};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits of the API server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to receive a request's whole header, counted from when the connection is ready for
    /// it: a new connection (after the TLS handshake, which has the same bound), or a kept-alive
    /// one after its previous answer (so it is the idle timeout too).
    pub header_timeout: Duration,
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Requests served on one connection; the last answer says `Connection: close`.
    pub max_requests_per_connection: u64,
    /// Largest request header (bytes); larger ones get 431.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_requests_per_connection: 1000,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Serves `app` on `listener` within `limits`, over TLS when `tls` is given. Never returns
/// on its own: accept errors (descriptors exhausted…) are logged and retried after a pause.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<crate::Shared>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let limits = Arc::new(limits);
    let mut backoff = Duration::from_millis(10);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                tracing::warn!(error = %e, "API accept failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Over the cap: close now, having allocated nothing for it.
            shared
                .metrics
                .api_connections_refused
                .fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let (app, limits, acceptor) = (app.clone(), limits.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match acceptor {
                None => serve_connection(stream, app, &limits, None).await,
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "API TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "API TLS handshake timed out");
                                return;
                            }
                        };
                    let identity = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(super::auth::node_of_certificate)
                        .map(|node| Identity {
                            name: format!("cert:{node}"),
                            role: Role::Agent(node),
                        });
                    serve_connection(tls, app, &limits, identity).await
                }
            }
        });
    }
}

/// One connection: HTTP/1.1 with the limits, requests counted, `identity` (from a client
/// certificate) attached to every request.
async fn serve_connection<S>(stream: S, app: Router, limits: &Limits, identity: Option<Identity>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let inner = TowerToHyperService::new(app);
    let served = Arc::new(AtomicU64::new(0));
    let max = limits.max_requests_per_connection.max(1);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        use hyper::service::Service as _;
        if let Some(id) = &identity {
            req.extensions_mut().insert(id.clone());
        }
        let last = served.fetch_add(1, Ordering::Relaxed) + 1 >= max;
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
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "API connection ended with an error");
    }
}

/// A TLS certificate and key read from files, read again at the next handshake after either
/// file changed (a renewed certificate is served without a restart; a broken one is ignored
/// with a warning and the previous one kept).
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<(
        Option<SystemTime>,
        Option<SystemTime>,
        Arc<rustls::sign::CertifiedKey>,
    )>,
}

/// Why a certificate or key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// A file cannot be read or parsed.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load_key(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::sign::CertifiedKey, TlsFileError> {
    let bad = |p: &std::path::Path, why: String| TlsFileError::File {
        path: p.display().to_string(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key_der, &provider)
        .map_err(|e| bad(key, e.to_string()))
}

impl ReloadingCert {
    /// Reads `cert` (PEM chain) and `key` (PEM private key) once; fails when they are unusable.
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<ReloadingCert, TlsFileError> {
        let loaded = load_key(&cert, &key)?;
        let stamps = (modified(&cert), modified(&key));
        Ok(ReloadingCert {
            current: Mutex::new((stamps.0, stamps.1, Arc::new(loaded))),
            cert,
            key,
        })
    }

    fn get(&self) -> Arc<rustls::sign::CertifiedKey> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let stamps = (modified(&self.cert), modified(&self.key));
        if (stamps.0, stamps.1) != (cur.0, cur.1) {
            match load_key(&self.cert, &self.key) {
                Ok(k) => {
                    tracing::info!(cert = %self.cert.display(), "API certificate reloaded");
                    *cur = (stamps.0, stamps.1, Arc::new(k));
                }
                Err(e) => {
                    tracing::warn!("API certificate change ignored: {e}");
                    cur.0 = stamps.0;
                    cur.1 = stamps.1;
                }
            }
        }
        cur.2.clone()
    }
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.get())
    }
}

/// The TLS configuration of the API: the reloading certificate, and with `client_ca` a
/// client certificate is asked for (optional: Basic authentication keeps working) and, when
/// given, must chain to that CA.
pub fn tls_config(
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
) -> Result<Arc<rustls::ServerConfig>, TlsFileError> {
    let resolver = Arc::new(ReloadingCert::new(cert, key)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let bad = |p: &std::path::Path, why: String| TlsFileError::File {
        path: p.display().to_string(),
        why,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError::File {
            path: "(TLS)".into(),
            why: e.to_string(),
        })?;
    let mut config = match client_ca {
        None => builder.with_no_client_auth().with_cert_resolver(resolver),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&ca).map_err(|e| bad(&ca, e.to_string()))? {
                let c = c.map_err(|e| bad(&ca, e.to_string()))?;
                roots.add(c).map_err(|e| bad(&ca, e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad(&ca, "no CA certificate in the file".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| bad(&ca, e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(resolver)
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
