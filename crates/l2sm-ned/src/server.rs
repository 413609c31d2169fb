//! What every unary gRPC server of the project shares over hyper's HTTP/2 server (feature
//! `server`): the answer body (one message, then the trailers), trailers-only error answers,
//! the request checks grpc-go makes before routing, and a bounded read of the one request
//! message. The edge's `nedpb`/`l2sm.edge.v1` server and the controller's `l2smdns` server
//! are built on it.

use crate::grpc::{self, Code, Status};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The body of an answer: at most one data frame, then the trailers (if any).
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

fn status_headers(h: &mut HeaderMap, s: &Status) {
    h.insert("grpc-status", HeaderValue::from(u16::from(s.code.value())));
    if !s.message.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&grpc::percent_encode(&s.message)) {
            h.insert("grpc-message", v);
        }
    }
}

/// A trailers-only answer (HTTP status, content type and status in one HEADERS frame).
pub fn error_response(http: StatusCode, s: &Status) -> Response<GrpcBody> {
    let mut r = Response::new(GrpcBody {
        data: None,
        trailers: None,
    });
    *r.status_mut() = http;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(grpc::CONTENT_TYPE));
    status_headers(r.headers_mut(), s);
    r
}

/// A successful answer: `message` framed, then `grpc-status: 0` in the trailers.
pub fn ok_response(message: Vec<u8>) -> Response<GrpcBody> {
    let mut trailers = HeaderMap::new();
    status_headers(&mut trailers, &Status::new(Code::Ok, ""));
    let mut r = Response::new(GrpcBody {
        data: Some(Bytes::from(grpc::frame(&message))),
        trailers: Some(trailers),
    });
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(grpc::CONTENT_TYPE));
    r
}

/// The answer to a request that is not gRPC at all: a content type other than
/// `application/grpc[+…|;…]` (415). `None` when it is one.
pub fn not_grpc(req: &Request<Incoming>) -> Option<Response<GrpcBody>> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_grpc = content_type == grpc::CONTENT_TYPE
        || content_type.starts_with("application/grpc+")
        || content_type.starts_with("application/grpc;");
    (!is_grpc).then(|| {
        error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &Status::new(
                Code::InvalidArgument,
                format!("invalid gRPC request content-type {content_type:?}"),
            ),
        )
    })
}

/// Reads the whole request body, bounded in size (checked from the message prefix as soon as
/// it arrives: at most one message of `max_message` bytes) and in time.
pub async fn read_body(
    mut body: Incoming,
    max_message: usize,
    timeout: Duration,
) -> Result<Vec<u8>, Status> {
    let read = async {
        let mut buf = Vec::new();
        loop {
            match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                None => return Ok(buf),
                Some(Err(e)) => {
                    return Err(Status::new(Code::Cancelled, format!("request body: {e}")))
                }
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        buf.extend_from_slice(&d);
                        grpc::check_prefix(&buf, max_message)?;
                        if buf.len() > grpc::PREFIX_LEN + max_message {
                            return Err(Status::new(
                                Code::Internal,
                                "grpc: server received more than one request message for unary RPC",
                            ));
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Status::new(Code::DeadlineExceeded, "request body not received in time"))?
}
