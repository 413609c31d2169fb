//! The API in-process for tests: the real router on a fresh store, driven request by request
//! without a socket or a child process. Tests that need a restart, a kill or the OpenFlow
//! socket run the controller process instead (`tests/controller_api.rs`).

use super::{router, Credentials};
use crate::store::Store;
use crate::Shared;
use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

/// Basic token of the credentials [`TestApi`] accepts (`test:secret`).
pub(super) const TOKEN: &str = "dGVzdDpzZWNyZXQ=";

/// A request and the status it must get (with why, for the failure message): one row of a
/// table-driven test.
pub(super) type Exchange<'a> = (&'a str, &'a str, Option<&'a str>, u16, &'a str);

/// The API router on a store in a temporary directory.
pub(super) struct TestApi {
    router: Router,
    /// The state behind the router, for tests that publish what a switch session would.
    pub(super) shared: Arc<Shared>,
    /// Dropped after the router, which holds the store open.
    _dir: tempfile::TempDir,
}

impl TestApi {
    /// A controller with no networks, no switches and credentials `test`/`secret`.
    pub(super) fn new() -> TestApi {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open the store");
        let shared = Shared::new(store, Duration::from_secs(1)).expect("load the store");
        let credentials = Credentials {
            user: "test".into(),
            password: "secret".into(),
        };
        TestApi {
            router: router(shared.clone(), credentials),
            shared,
            _dir: dir,
        }
    }

    /// One request as a client sends it (JSON content type, a length even without a body),
    /// with or without the credentials: the status and the body.
    pub(super) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        authenticated: bool,
    ) -> (u16, String) {
        let body = body.unwrap_or("").to_string();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len());
        if authenticated {
            req = req.header(header::AUTHORIZATION, format!("Basic {TOKEN}"));
        }
        let req = req.body(Body::from(body)).expect("a valid request");
        let resp = match self.router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("the response body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// One request with the credentials.
    pub(super) async fn req(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.send(method, path, body, true).await
    }

    /// Sends each request of `table` in order, with the credentials; each must get its
    /// status.
    pub(super) async fn expect_all(&self, table: &[Exchange<'_>]) {
        for (method, path, body, want, why) in table {
            let (code, text) = self.req(method, path, *body).await;
            assert_eq!(code, *want, "{method} {path} {body:?} ({why}): {text}");
        }
    }
}
