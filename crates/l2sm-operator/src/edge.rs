//! The operator's side of the cluster-to-edge hop (docs/edge.md; issue #17): the calls the
//! L2Network reconciler makes on a cluster's edge switch (`l2sm edge`) for a provider network,
//! behind a small trait so the reconcilers do not depend on the gRPC client.
//!
//! `ConnectNetwork(network, cluster_bridge)` makes (or finds: it is idempotent per network)
//! one OVS patch port pair between the edge's bridge and the cluster switch `cluster_bridge`
//! of the edge's node, and answers the two OpenFlow port numbers and the node's name;
//! `DisconnectNetwork(network)` removes the pair (an unknown network is fine). The messages are
//! `/l2sm.edge.v1.EdgeService/{ConnectNetwork,DisconnectNetwork}` (crate `l2sm-ned`).
//!
//! [`GrpcEdge`] is the real client (crate `l2sm-ned`, feature `client`: HTTP/2, TLS with the
//! operator's client certificate or h2c, a deadline per call), used by `operator.rs`;
//! [`Unwired`] is what contexts built without one get (`Context::new`), and
//! [`testing::FakeEdge`] the test double.

use futures::future::BoxFuture;
use std::net::SocketAddr;

/// The port the edge serves gRPC on (upstream's, hard-coded there too).
pub const EDGE_GRPC_PORT: u16 = 50051;

/// The name the operator verifies an edge's gRPC certificate for. All edges serve the one
/// certificate of the operator's `--edge-grpc-secret` (mounted into every edge pod), so it
/// names this, not each node's address; the edge in turn accepts only client certificates of
/// that Secret's `ca.crt`.
pub const EDGE_TLS_SERVER_NAME: &str = "l2sm-edge";

/// First OpenFlow port number of edge hops on a cluster switch (`0xD000 + id`).
pub const FIRST_EDGE_HOP_PORT: u32 = 0xD000;
/// One past the last edge-hop port number (0xD000–0xDFFF are reserved for edge hops).
pub const END_EDGE_HOP_PORT: u32 = 0xE000;

/// What `ConnectNetwork` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConnection {
    /// The edge bridge's port of the pair (a member at the provider controller).
    pub edge_port: i64,
    /// The cluster switch's port of the pair (a member at the in-cluster controller).
    pub cluster_port: i64,
    /// The node the edge runs on.
    pub node_name: String,
}

/// Why an edge call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// The edge could not be reached (connection refused, TLS failure, timeout).
    #[error("edge at {addr} unreachable: {reason}")]
    Unreachable {
        /// Address dialed.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The edge answered with a gRPC error.
    #[error("edge at {addr} refused: gRPC status {code}: {message}")]
    Refused {
        /// Address dialed.
        addr: SocketAddr,
        /// gRPC status code.
        code: u32,
        /// `grpc-message`.
        message: String,
    },
    /// This operator build has no edge client (see the module documentation).
    #[error("no edge client is configured in this operator build")]
    NotWired,
}

impl EdgeError {
    /// Short machine-friendly reason for status conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            EdgeError::Unreachable { .. } => "EdgeUnreachable",
            EdgeError::Refused { .. } => "EdgeRefused",
            EdgeError::NotWired => "EdgeClientMissing",
        }
    }
}

/// The calls the operator makes on an edge switch. Implementations bound every call in time.
pub trait EdgeConnector: Send + Sync + 'static {
    /// Connects the edge at `addr` to the cluster switch `cluster_bridge` of its node for
    /// `network` (idempotent: the same network answers the same ports).
    fn connect_network<'a>(
        &'a self,
        addr: SocketAddr,
        network: &'a str,
        cluster_bridge: &'a str,
    ) -> BoxFuture<'a, Result<EdgeConnection, EdgeError>>;

    /// Removes the edge's connection for `network` (none: success).
    fn disconnect_network<'a>(
        &'a self,
        addr: SocketAddr,
        network: &'a str,
    ) -> BoxFuture<'a, Result<(), EdgeError>>;
}

/// No edge client: every call fails with [`EdgeError::NotWired`], which provider networks
/// report in their condition (`EdgeClientMissing`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwired;

impl EdgeConnector for Unwired {
    fn connect_network<'a>(
        &'a self,
        _addr: SocketAddr,
        _network: &'a str,
        _cluster_bridge: &'a str,
    ) -> BoxFuture<'a, Result<EdgeConnection, EdgeError>> {
        Box::pin(async { Err(EdgeError::NotWired) })
    }

    fn disconnect_network<'a>(
        &'a self,
        _addr: SocketAddr,
        _network: &'a str,
    ) -> BoxFuture<'a, Result<(), EdgeError>> {
        Box::pin(async { Err(EdgeError::NotWired) })
    }
}

/// The real client: gRPC over HTTP/2 to the edge (`l2sm_ned::client`), one connection per
/// call (a provider network calls its edge when it is made and when it is deleted), bounded
/// by `timeout`. TLS files are read at each call, so a Secret mounted or renewed later is used
/// without a restart.
#[derive(Debug, Clone)]
pub struct GrpcEdge {
    tls: Option<EdgeTlsFiles>,
    timeout: std::time::Duration,
}

/// The operator's client certificate and key, and the CA the edges' certificate chains to.
#[derive(Debug, Clone)]
pub struct EdgeTlsFiles {
    /// Client certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM).
    pub key: std::path::PathBuf,
    /// CA certificates (PEM).
    pub ca: std::path::PathBuf,
}

impl GrpcEdge {
    /// Cleartext HTTP/2 (edges run with `--ned-grpc-insecure`).
    pub fn insecure(timeout: std::time::Duration) -> GrpcEdge {
        GrpcEdge { tls: None, timeout }
    }

    /// TLS with a client certificate, the edge's certificate verified for
    /// [`EDGE_TLS_SERVER_NAME`].
    pub fn tls(files: EdgeTlsFiles, timeout: std::time::Duration) -> GrpcEdge {
        GrpcEdge {
            tls: Some(files),
            timeout,
        }
    }

    async fn client(&self, addr: SocketAddr) -> Result<l2sm_ned::client::EdgeClient, EdgeError> {
        let unreachable = |reason: String| EdgeError::Unreachable { addr, reason };
        let client = match &self.tls {
            None => l2sm_ned::client::EdgeClient::connect_h2c(addr, self.timeout).await,
            Some(files) => {
                let config = files.client_config().map_err(unreachable)?;
                l2sm_ned::client::EdgeClient::connect_tls(
                    addr,
                    EDGE_TLS_SERVER_NAME,
                    config,
                    self.timeout,
                )
                .await
            }
        };
        client.map_err(|e| error_of(addr, e))
    }
}

impl EdgeTlsFiles {
    fn client_config(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&read(&self.ca)?) {
            let ca = ca.map_err(|e| format!("{}: {e}", self.ca.display()))?;
            roots
                .add(ca)
                .map_err(|e| format!("{}: {e}", self.ca.display()))?;
        }
        let chain = CertificateDer::pem_slice_iter(&read(&self.cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", self.cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate", self.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?)
            .map_err(|e| format!("{}: {e}", self.key.display()))?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate: {e}"))?;
        Ok(std::sync::Arc::new(config))
    }
}

fn error_of(addr: SocketAddr, e: l2sm_ned::client::ClientError) -> EdgeError {
    match e {
        l2sm_ned::client::ClientError::Status(s) => EdgeError::Refused {
            addr,
            code: u32::from(s.code as u8),
            message: s.message,
        },
        other => EdgeError::Unreachable {
            addr,
            reason: other.to_string(),
        },
    }
}

impl EdgeConnector for GrpcEdge {
    fn connect_network<'a>(
        &'a self,
        addr: SocketAddr,
        network: &'a str,
        cluster_bridge: &'a str,
    ) -> BoxFuture<'a, Result<EdgeConnection, EdgeError>> {
        Box::pin(async move {
            let mut c = self.client(addr).await?;
            let r = c
                .connect_network(network, cluster_bridge)
                .await
                .map_err(|e| error_of(addr, e))?;
            Ok(EdgeConnection {
                edge_port: r.edge_port,
                cluster_port: r.cluster_port,
                node_name: r.node_name,
            })
        })
    }

    fn disconnect_network<'a>(
        &'a self,
        addr: SocketAddr,
        network: &'a str,
    ) -> BoxFuture<'a, Result<(), EdgeError>> {
        Box::pin(async move {
            let mut c = self.client(addr).await?;
            c.disconnect_network(network)
                .await
                .map_err(|e| error_of(addr, e))
        })
    }
}

/// Test doubles.
pub mod testing {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// One call the fake received.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum EdgeCall {
        /// `ConnectNetwork(network, cluster_bridge)` at an address.
        Connect(SocketAddr, String, String),
        /// `DisconnectNetwork(network)` at an address.
        Disconnect(SocketAddr, String),
    }

    #[derive(Debug, Default)]
    struct State {
        /// Per edge address: network -> (id, cluster bridge).
        pairs: BTreeMap<SocketAddr, BTreeMap<String, (i64, String)>>,
        next_id: BTreeMap<SocketAddr, i64>,
        calls: Vec<EdgeCall>,
        down: bool,
    }

    /// An edge that behaves as hop.md describes `l2sm edge`: ids allocated from 1 per edge,
    /// the same network answers the same pair (`edge_port = id`, `cluster_port = 0xD000 +
    /// id`), disconnect of an unknown network is fine. It answers for every address in
    /// `nodes` (address -> node name); other addresses are unreachable, as is every address
    /// while [`FakeEdge::set_down`] is on.
    #[derive(Debug, Default)]
    pub struct FakeEdge {
        nodes: BTreeMap<SocketAddr, String>,
        state: Mutex<State>,
    }

    impl FakeEdge {
        /// An edge answering at each `(address, node name)`.
        pub fn new(nodes: &[(SocketAddr, &str)]) -> Self {
            FakeEdge {
                nodes: nodes.iter().map(|(a, n)| (*a, n.to_string())).collect(),
                state: Mutex::new(State::default()),
            }
        }

        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Makes every address unreachable (true) or answer again (false).
        pub fn set_down(&self, down: bool) {
            self.state().down = down;
        }

        /// The calls received so far.
        pub fn calls(&self) -> Vec<EdgeCall> {
            self.state().calls.clone()
        }

        /// The networks connected at `addr`, with their cluster bridge.
        pub fn connected(&self, addr: SocketAddr) -> BTreeMap<String, String> {
            self.state()
                .pairs
                .get(&addr)
                .map(|m| m.iter().map(|(k, (_, b))| (k.clone(), b.clone())).collect())
                .unwrap_or_default()
        }

        fn reachable(&self, st: &State, addr: SocketAddr) -> Result<String, EdgeError> {
            match self.nodes.get(&addr) {
                Some(node) if !st.down => Ok(node.clone()),
                _ => Err(EdgeError::Unreachable {
                    addr,
                    reason: "connection refused (fake)".into(),
                }),
            }
        }
    }

    impl EdgeConnector for FakeEdge {
        fn connect_network<'a>(
            &'a self,
            addr: SocketAddr,
            network: &'a str,
            cluster_bridge: &'a str,
        ) -> BoxFuture<'a, Result<EdgeConnection, EdgeError>> {
            let mut st = self.state();
            st.calls.push(EdgeCall::Connect(
                addr,
                network.to_string(),
                cluster_bridge.to_string(),
            ));
            let out = self.reachable(&st, addr).map(|node_name| {
                let id = match st.pairs.get(&addr).and_then(|m| m.get(network)) {
                    Some((id, _)) => *id,
                    None => {
                        let next = st.next_id.entry(addr).or_insert(1);
                        let id = *next;
                        *next += 1;
                        st.pairs
                            .entry(addr)
                            .or_default()
                            .insert(network.to_string(), (id, cluster_bridge.to_string()));
                        id
                    }
                };
                EdgeConnection {
                    edge_port: id,
                    cluster_port: i64::from(FIRST_EDGE_HOP_PORT) + id,
                    node_name,
                }
            });
            Box::pin(async move { out })
        }

        fn disconnect_network<'a>(
            &'a self,
            addr: SocketAddr,
            network: &'a str,
        ) -> BoxFuture<'a, Result<(), EdgeError>> {
            let mut st = self.state();
            st.calls
                .push(EdgeCall::Disconnect(addr, network.to_string()));
            let out = self.reachable(&st, addr).map(|_| {
                if let Some(m) = st.pairs.get_mut(&addr) {
                    m.remove(network);
                }
            });
            Box::pin(async move { out })
        }
    }
}
