//! A small async gRPC client for the edge's services (feature `client`): one HTTP/2
//! connection (hyper's client), cleartext with prior knowledge (h2c) or TLS with ALPN `h2`,
//! unary calls, every call bounded by a timeout.
//!
//! ```no_run
//! # async fn f() -> Result<(), l2sm_ned::client::ClientError> {
//! use l2sm_ned::client::EdgeClient;
//! use std::time::Duration;
//! let mut c = EdgeClient::connect_h2c("10.0.0.1:50051".parse().unwrap(), Duration::from_secs(5)).await?;
//! let r = c.connect_network("inter", "br-1a2b3c4d").await?;
//! println!("edge port {}, cluster port {}", r.edge_port, r.cluster_port);
//! # Ok(()) }
//! ```

use crate::grpc::{self, Code, Method, Status};
use crate::messages::{
    AttachInterfaceRequest, AttachInterfaceResponse, ConnectNetworkRequest, ConnectNetworkResponse,
    CreateVxlanRequest, CreateVxlanResponse, DisconnectNetworkRequest, DisconnectNetworkResponse,
    Message,
};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::http::{HeaderMap, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest answer message accepted.
const MAX_ANSWER: usize = 64 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, TLS or HTTP/2 failed.
    #[error("cannot reach the edge: {0}")]
    Connect(String),
    /// The call or the connection did not finish in time.
    #[error("the edge did not answer within {0:?}")]
    Timeout(Duration),
    /// The HTTP/2 exchange failed (connection lost, stream reset).
    #[error("HTTP/2: {0}")]
    Http(String),
    /// The edge answered with a gRPC status other than OK.
    #[error("the edge answered {0}")]
    Status(Status),
    /// The answer is not a valid message.
    #[error("invalid answer: {0}")]
    Invalid(String),
}

impl ClientError {
    /// The gRPC code, when the edge answered one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status(s) => Some(s.code),
            _ => None,
        }
    }
}

/// A request body: one data frame.
struct OneFrame(Option<Bytes>);

impl Body for OneFrame {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// One HTTP/2 connection to an edge.
pub struct EdgeClient {
    sender: hyper::client::conn::http2::SendRequest<OneFrame>,
    authority: String,
    timeout: Duration,
}

impl EdgeClient {
    /// HTTP/2 over an established stream (a TCP stream for h2c, or a TLS stream that
    /// negotiated `h2`); `authority` goes into `:authority`; every call is bounded by
    /// `timeout`, the handshake too.
    pub async fn handshake<I>(
        io: I,
        authority: &str,
        timeout: Duration,
    ) -> Result<EdgeClient, ClientError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let hs = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io));
        let (sender, conn) = tokio::time::timeout(timeout, hs)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(EdgeClient {
            sender,
            authority: authority.to_string(),
            timeout,
        })
    }

    /// Cleartext HTTP/2 with prior knowledge (an edge run with `--ned-grpc-insecure`).
    pub async fn connect_h2c(
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<EdgeClient, ClientError> {
        let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|e| ClientError::Connect(format!("{addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        Self::handshake(tcp, &addr.to_string(), timeout).await
    }

    /// HTTP/2 over TLS: `tls` is the client configuration (its root store, and the client
    /// certificate the edge requires); ALPN is set to `h2` here.
    pub async fn connect_tls(
        addr: SocketAddr,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<EdgeClient, ClientError> {
        let mut config = (*tls).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| ClientError::Connect(format!("server name {server_name:?}: {e}")))?;
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| ClientError::Connect(format!("{addr}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| ClientError::Connect(format!("TLS with {addr}: {e}")))
        };
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        Self::handshake(stream, server_name, timeout).await
    }

    /// One unary call of `method`.
    pub async fn unary<Q: Message, A: Message>(
        &mut self,
        method: Method,
        request: &Q,
    ) -> Result<A, ClientError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.unary_inner(method, request))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    async fn unary_inner<Q: Message, A: Message>(
        &mut self,
        method: Method,
        request: &Q,
    ) -> Result<A, ClientError> {
        let message = self.raw_inner(method.path(), request.encode()).await?;
        A::decode(&message).map_err(|e| ClientError::Invalid(e.to_string()))
    }

    /// One unary call of any method (`path` is `/package.Service/Method`) with an encoded
    /// request; returns the encoded answer (for services whose messages live elsewhere, as
    /// the controller's `l2smdns.DnsService`).
    pub async fn unary_raw(
        &mut self,
        path: &str,
        request: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.raw_inner(path, request))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    async fn raw_inner(&mut self, path: &str, request: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let req = Request::post(format!("http://{}{}", self.authority, path))
            .version(hyper::http::Version::HTTP_2)
            .header("content-type", grpc::CONTENT_TYPE)
            .header("te", "trailers")
            .header("grpc-timeout", format!("{}m", self.timeout.as_millis()))
            .body(OneFrame(Some(Bytes::from(grpc::frame(&request)))))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        std::future::poll_fn(|cx| self.sender.poll_ready(cx))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        if parts.status != hyper::http::StatusCode::OK {
            return Err(ClientError::Http(format!("HTTP status {}", parts.status)));
        }
        // Trailers-only answer: the status is in the headers.
        if let Some(s) = status_of(&parts.headers) {
            if s.code != Code::Ok {
                return Err(ClientError::Status(s));
            }
        }
        let (data, trailers) = read_all(body).await?;
        let status = trailers
            .as_ref()
            .and_then(status_of)
            .or_else(|| status_of(&parts.headers))
            .ok_or_else(|| ClientError::Invalid("no grpc-status in the answer".into()))?;
        if status.code != Code::Ok {
            return Err(ClientError::Status(status));
        }
        let message =
            grpc::unary_message(&data, MAX_ANSWER).map_err(|s| ClientError::Invalid(s.message))?;
        Ok(message.to_vec())
    }

    /// `l2sm.edge.v1.EdgeService/ConnectNetwork`.
    pub async fn connect_network(
        &mut self,
        network: &str,
        cluster_bridge: &str,
    ) -> Result<ConnectNetworkResponse, ClientError> {
        let req = ConnectNetworkRequest {
            network: network.to_string(),
            cluster_bridge: cluster_bridge.to_string(),
        };
        self.unary(Method::ConnectNetwork, &req).await
    }

    /// `l2sm.edge.v1.EdgeService/DisconnectNetwork`.
    pub async fn disconnect_network(&mut self, network: &str) -> Result<(), ClientError> {
        let req = DisconnectNetworkRequest {
            network: network.to_string(),
        };
        let _: DisconnectNetworkResponse = self.unary(Method::DisconnectNetwork, &req).await?;
        Ok(())
    }

    /// `nedpb.NedService/AttachInterface`.
    pub async fn attach_interface(
        &mut self,
        interface_name: &str,
    ) -> Result<AttachInterfaceResponse, ClientError> {
        let req = AttachInterfaceRequest {
            interface_name: interface_name.to_string(),
        };
        self.unary(Method::AttachInterface, &req).await
    }

    /// `nedpb.NedService/CreateVxlan`.
    pub async fn create_vxlan(
        &mut self,
        ip_address: &str,
    ) -> Result<CreateVxlanResponse, ClientError> {
        let req = CreateVxlanRequest {
            ip_address: ip_address.to_string(),
        };
        self.unary(Method::CreateVxlan, &req).await
    }
}

fn status_of(h: &HeaderMap) -> Option<Status> {
    let code = h.get("grpc-status")?.to_str().ok()?;
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(grpc::percent_decode)
        .unwrap_or_default();
    Some(Status::new(Code::from_value(code), message))
}

async fn read_all(mut body: Incoming) -> Result<(Vec<u8>, Option<HeaderMap>), ClientError> {
    let mut data = Vec::new();
    let mut trailers = None;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => return Ok((data, trailers)),
            Some(Err(e)) => return Err(ClientError::Http(e.to_string())),
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => {
                    if data.len() + d.len() > grpc::PREFIX_LEN + MAX_ANSWER {
                        return Err(ClientError::Invalid("answer too large".into()));
                    }
                    data.extend_from_slice(&d);
                }
                Err(f) => {
                    if let Ok(t) = f.into_trailers() {
                        trailers = Some(t);
                    }
                }
            },
        }
    }
}
