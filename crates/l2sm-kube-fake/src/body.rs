//! The answer body: bytes at once, or a watch stream (initial events, then live events from a
//! bounded channel, until the watch's timeout).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Body of the fake's answers.
#[derive(Debug)]
pub struct FakeBody {
    first: Option<Bytes>,
    rx: Option<mpsc::Receiver<Bytes>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl FakeBody {
    /// A complete body.
    pub(crate) fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        Self {
            first: (!b.is_empty()).then_some(b),
            rx: None,
            deadline: None,
        }
    }

    /// A stream: `first`, then whatever arrives on `rx` until it closes or `timeout` passes.
    pub(crate) fn stream(
        first: Bytes,
        rx: mpsc::Receiver<Bytes>,
        timeout: std::time::Duration,
    ) -> Self {
        Self {
            first: (!first.is_empty()).then_some(first),
            rx: Some(rx),
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some(b) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        let Some(rx) = this.rx.as_mut() else {
            return Poll::Ready(None);
        };
        match rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => return Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(None) => {
                this.rx = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if let Some(d) = this.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                // Closing the receiver makes the store drop this watcher.
                this.rx = None;
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rx.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.first, &self.rx) {
            (Some(b), None) => SizeHint::with_exact(b.len() as u64),
            (None, None) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
