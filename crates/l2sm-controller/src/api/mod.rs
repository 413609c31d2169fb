//! REST API: the upstream ONOS "vnets" contract (same paths, bodies and status codes, so the
//! upstream operator can drive this controller), and a small native API. Every answer is
//! immediate; switches are programmed in the background.
//!
//! This module holds what every route shares: the route table (the one place paths are
//! written; the router and the OpenAPI document are both built from it), authentication, body
//! limits, the body extractor and the JSON error. Handlers live in one module per resource.

use super::model::ModelError;
use super::{Shared, UpdateError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub mod auth;
mod ipam;
mod networks;
mod openapi;
mod ports;
pub mod server;
mod switches;
#[cfg(test)]
mod testing;
mod vnets;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// HTTP Basic credentials the API accepts.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// The single `--api-user`/`--api-password` pair: the admin identity.
impl From<Credentials> for auth::Users {
    fn from(c: Credentials) -> auth::Users {
        let mut users = auth::Users::default();
        users.insert(&c.user, &c.password, auth::Role::Admin);
        users
    }
}

/// What every handler and middleware gets.
#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    users: Arc<auth::Users>,
    /// Paths of the route table: the closed set of `route` labels of the latency metric.
    route_paths: Arc<BTreeSet<&'static str>>,
}

/// Lets handlers outside this module (`/metrics`) take the shared state alone.
impl axum::extract::FromRef<AppState> for Arc<Shared> {
    fn from_ref(state: &AppState) -> Arc<Shared> {
        state.shared.clone()
    }
}

/// Builds the API router from `routes()`, the one list of what the API serves (the OpenAPI
/// document is generated from the same list). `users` are the identities it accepts.
pub fn router(shared: Arc<Shared>, users: impl Into<auth::Users>) -> Router {
    let table = routes();
    let state = AppState {
        shared,
        users: Arc::new(users.into()),
        route_paths: Arc::new(table.iter().map(|(spec, _)| spec.path).collect()),
    };
    let (mut open, mut authed) = (Router::new(), Router::new());
    for (spec, handler) in table {
        if spec.auth {
            authed = authed.route(spec.path, handler);
        } else {
            open = open.route(spec.path, handler);
        }
    }
    let authed = authed.route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    open.merge(authed)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint").into_response() })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
            .into_response()
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(limit_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// A method router for one route of [`routes`].
type Handler = axum::routing::MethodRouter<AppState>;

/// Every route the API serves, with its documentation. The router and the OpenAPI document
/// are both built from this list, so they cannot disagree.
fn routes() -> Vec<(openapi::RouteSpec, Handler)> {
    use openapi::{Resp, RouteSpec};
    let err = |code: u16, why: &'static str| Resp::error(code, why);
    vec![
        (
            RouteSpec::open("get", "/onos/ui", "Readiness probe of upstream's operator")
                .responses(vec![Resp::text(200, "the controller is up")]),
            get(vnets::ready),
        ),
        (
            RouteSpec::authed(
                "get",
                "/metrics",
                "Prometheus metrics (any identity, e.g. a reader)",
            )
            .responses(vec![Resp::text(200, "metrics in Prometheus text format")]),
            get(crate::metrics::handler),
        ),
        (
            RouteSpec::open("get", "/api/v1/openapi.json", "This document")
                .responses(vec![Resp::json(200, "the OpenAPI 3.0 document", "Object")]),
            get(openapi_document),
        ),
        (
            RouteSpec::authed("post", "/onos/vnets/api", "Create a network (upstream)")
                .request("NetworkDto")
                .responses(vec![
                    Resp::empty(204, "created, or it already existed"),
                    err(
                        400,
                        "invalid body or network name, or a mirror port outside the pod range",
                    ),
                    err(409, "the mirror port is a member of another network"),
                ]),
            post(vnets::create_network),
        ),
        (
            RouteSpec::authed("get", "/onos/vnets/api/status", "Health (upstream)")
                .responses(vec![Resp::empty(200, "the API is up")]),
            get(vnets::status),
        ),
        (
            RouteSpec::authed(
                "post",
                "/onos/vnets/api/port",
                "Add member ports (upstream)",
            )
            .request("PortsDto")
            .responses(vec![
                Resp::empty(204, "added (re-adding is a no-op)"),
                err(
                    400,
                    "invalid body, or a port outside the pod range 1..57343",
                ),
                err(
                    409,
                    "unknown network, port in another network or the mirror port",
                ),
                err(500, "missing or malformed endpoints (as upstream)"),
            ]),
            post(vnets::add_port),
        ),
        (
            RouteSpec::authed(
                "delete",
                "/onos/vnets/api/port",
                "Remove member ports (upstream)",
            )
            .request("PortsDto")
            .responses(vec![
                Resp::empty(200, "removed"),
                err(400, "invalid body"),
                err(409, "unknown network"),
                err(
                    500,
                    "port not a member, missing or malformed endpoints (as upstream)",
                ),
            ]),
            delete(vnets::remove_port),
        ),
        (
            RouteSpec::authed(
                "post",
                "/onos/vnets/api/mirror-port",
                "Set the mirror port (upstream)",
            )
            .request("MirrorDto")
            .responses(vec![
                Resp::empty(204, "set"),
                err(
                    400,
                    "invalid body, missing mirrorPort, or a port outside the pod range 1..57343",
                ),
                err(409, "unknown network or port in a network"),
                err(500, "malformed port id (as upstream)"),
            ]),
            post(vnets::set_mirror_port),
        ),
        (
            RouteSpec::authed(
                "get",
                "/onos/vnets/api/{network_id}",
                "One network as upstream's text",
            )
            .responses(vec![
                Resp::text(200, "upstream's Network.toString()"),
                err(404, "unknown network"),
            ]),
            get(vnets::get_network),
        ),
        (
            RouteSpec::authed(
                "delete",
                "/onos/vnets/api/{network_id}",
                "Delete a network (upstream)",
            )
            .responses(vec![Resp::empty(204, "deleted, or it did not exist")]),
            delete(vnets::delete_network),
        ),
        (
            RouteSpec::authed("get", "/api/v1/networks", "Every network")
                .responses(vec![Resp::json_array(200, "networks", "Network")]),
            get(networks::list_networks),
        ),
        (
            RouteSpec::authed(
                "post",
                "/api/v1/networks",
                "Create a network, optionally with IPAM",
            )
            .request("CreateNetwork")
            .responses(vec![
                Resp::json(201, "created", "Network"),
                Resp::json(200, "exists with the same settings", "Network"),
                err(400, "invalid body, name or IPAM settings"),
                err(409, "exists with other IPAM settings"),
                err(500, "no VNI left"),
            ]),
            post(networks::create_network),
        ),
        (
            RouteSpec::authed("get", "/api/v1/networks/{network_id}", "One network").responses(
                vec![
                    Resp::json(200, "the network", "Network"),
                    err(404, "unknown network"),
                ],
            ),
            get(networks::get_network),
        ),
        (
            RouteSpec::authed(
                "put",
                "/api/v1/networks/{network_id}/limits",
                "Set the abuse limits of the network's pod ports (MAC cap, flood meter)",
            )
            .request("NetworkLimits")
            .responses(vec![
                Resp::json(200, "set; the network as it is now", "Network"),
                err(400, "invalid body or a limit out of range"),
                err(404, "unknown network"),
            ]),
            put(networks::set_limits),
        ),
        (
            RouteSpec::authed(
                "delete",
                "/api/v1/networks/{network_id}/mirror",
                "Stop mirroring the network",
            )
            .responses(vec![
                Resp::empty(204, "cleared, or it had no mirror port"),
                err(404, "unknown network"),
            ]),
            delete(networks::clear_mirror_port),
        ),
        (
            RouteSpec::authed(
                "post",
                "/api/v1/networks/{network_id}/allocations",
                "Addresses for an owner",
            )
            .request("AllocationRequest")
            .responses(vec![
                Resp::json(200, "the owner's addresses", "Allocation"),
                err(400, "invalid body"),
                err(404, "unknown network"),
                err(409, "address refused (outside, reserved, taken, exhausted)"),
            ]),
            post(ipam::allocate),
        ),
        (
            RouteSpec::authed(
                "post",
                "/api/v1/networks/{network_id}/release",
                "Free an owner's addresses",
            )
            .request("ReleaseRequest")
            .responses(vec![
                Resp::json(200, "how many addresses were freed", "Released"),
                err(400, "invalid body"),
            ]),
            post(ipam::release),
        ),
        (
            RouteSpec::authed(
                "post",
                "/api/v1/ipam/gc",
                "Free allocations of vanished owners",
            )
            .request("GcRequest")
            .responses(vec![
                Resp::json(200, "how many addresses were freed", "Released"),
                err(400, "invalid body"),
            ]),
            post(ipam::gc),
        ),
        (
            RouteSpec::authed("get", "/api/v1/switches", "Connected switches")
                .responses(vec![Resp::json_array(200, "switches", "Switch")]),
            get(switches::list_switches),
        ),
        (
            RouteSpec::authed(
                "get",
                "/api/v1/switches/{dpid}/flows",
                "Flows of one switch",
            )
            .responses(vec![
                Resp::json(200, "the flows the controller programs", "SwitchFlows"),
                err(400, "malformed datapath id"),
                err(404, "switch not connected"),
            ]),
            get(switches::switch_flows),
        ),
        (
            RouteSpec::authed(
                "get",
                "/api/v1/switches/{dpid}/groups",
                "Groups of one switch",
            )
            .responses(vec![
                Resp::json(200, "the groups the controller programs", "SwitchGroups"),
                err(400, "malformed datapath id"),
                err(404, "switch not connected"),
            ]),
            get(switches::switch_groups),
        ),
        (
            RouteSpec::authed(
                "put",
                "/api/v1/switches/{dpid}/ports/{port}/owner",
                "Record who a member port belongs to",
            )
            .request("PortOwner")
            .responses(vec![
                Resp::empty(204, "recorded (or replaced)"),
                err(400, "invalid body, datapath id or port number"),
                err(409, "the port is not a member of any network"),
            ]),
            put(ports::set_port_owner),
        ),
        (
            RouteSpec::authed(
                "delete",
                "/api/v1/switches/{dpid}/ports/{port}/owner",
                "Forget who a port belongs to",
            )
            .responses(vec![
                Resp::empty(204, "forgotten, or it had no owner"),
                err(400, "invalid datapath id or port number"),
            ]),
            delete(ports::clear_port_owner),
        ),
        (
            RouteSpec::authed(
                "post",
                "/api/v1/switches/{dpid}/ports/{port}/move",
                "Move a member port to another network, keeping its owner",
            )
            .request("MoveRequest")
            .responses(vec![
                Resp::json(200, "moved, or it was in the target already", "Moved"),
                Resp::json(
                    202,
                    "moved; its switch has not confirmed it yet (pending)",
                    "Moved",
                ),
                err(
                    400,
                    "invalid body, datapath id or port number (pod ports are 1..57343)",
                ),
                err(404, "unknown target network"),
                err(409, "the port is not a member of the source network"),
            ]),
            post(ports::move_port),
        ),
        (
            RouteSpec::authed(
                "put",
                "/api/v1/switches/{dpid}/ports/{port}/mirror",
                "Make a pod port a network's mirror (an IDS), unless another port is",
            )
            .request("MirrorRequest")
            .responses(vec![
                Resp::empty(204, "the port mirrors the network (or did already)"),
                err(
                    400,
                    "invalid body, datapath id or port number (pod ports are 1..57343)",
                ),
                err(404, "unknown network"),
                err(
                    409,
                    "the port is a member of a network, mirrors another network, or the network is mirrored to another port",
                ),
            ]),
            put(ports::claim_mirror_port),
        ),
        (
            RouteSpec::authed(
                "delete",
                "/api/v1/switches/{dpid}/ports/{port}/mirror",
                "Stop a port mirroring any network",
            )
            .responses(vec![
                Resp::empty(204, "it mirrors nothing (now or already)"),
                err(400, "invalid datapath id or port number"),
            ]),
            delete(ports::release_mirror_port),
        ),
        (
            RouteSpec::authed(
                "post",
                "/api/v1/switches/{dpid}/ports/{port}/wait",
                "Wait until a member port is programmed on its switch",
            )
            .request("WaitRequest")
            .responses(vec![
                Resp::json(200, "the switch confirmed the port's flows", "Programmed"),
                err(400, "invalid body, datapath id or port number"),
                err(404, "unknown network"),
                err(409, "the switch is not connected to the controller"),
                err(504, "not programmed within the timeout"),
            ]),
            post(ports::wait_programmed),
        ),
        (
            RouteSpec::authed("get", "/api/v1/ports", "Ports of connected switches")
                .responses(vec![Resp::json_array(200, "ports", "Port")]),
            get(ports::list_ports),
        ),
        (
            RouteSpec::authed("get", "/api/v1/attachments", "Network memberships")
                .responses(vec![Resp::json_array(200, "memberships", "Attachment")]),
            get(ports::list_attachments),
        ),
        (
            RouteSpec::authed(
                "post",
                "/api/v1/settle",
                "Wait until every connected switch holds every change made so far",
            )
            .request("SettleRequest")
            .responses(vec![
                Resp::json(
                    200,
                    "every connected switch confirmed the current state",
                    "Settled",
                ),
                err(400, "invalid body"),
                err(504, "some switches did not confirm within the timeout"),
            ]),
            post(switches::settle),
        ),
        (
            RouteSpec::authed("get", "/api/v1/links", "Live inter-switch links")
                .responses(vec![Resp::json_array(200, "links", "Link")]),
            get(switches::list_links),
        ),
        (
            RouteSpec::authed(
                "get",
                "/api/v1/topology.svg",
                "Picture of the topology: links coloured by health, labelled with latency and loss",
            )
            .responses(vec![Resp::svg(200, "SVG image")]),
            get(switches::topology_svg),
        ),
    ]
    .into_iter()
    .map(|(spec, handler)| {
        let spec = spec.with_common_errors();
        (spec, handler)
    })
    .collect()
}

/// The OpenAPI document of `routes()`.
pub fn openapi_json() -> serde_json::Value {
    let specs: Vec<openapi::RouteSpec> = routes().into_iter().map(|(s, _)| s).collect();
    openapi::document(&specs, MAX_BODY)
}

/// `GET` of the OpenAPI document: open, so tools can read it without credentials.
async fn openapi_document() -> Json<serde_json::Value> {
    Json(openapi_json())
}

/// Refuses bodies announced larger than [`MAX_BODY`] on every route, before any handler runs
/// (bodies without a length are cut by the body extractor).
async fn limit_body(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// A request body, with axum's plain-text rejections (too large, unreadable) turned into JSON
/// errors.
struct Body(Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_BODY} bytes"),
            )),
            Err(r) => Err(error(r.status(), r.body_text())),
        }
    }
}

/// An API error, answered as `{"error": "...", "code": N, "message": "..."}`: `error` for
/// native clients, `code` and `message` in the shape ONOS uses for upstream's.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = l2sm_api::ErrorBody::new(self.status.as_u16(), self.message);
        (self.status, Json(body)).into_response()
    }
}

/// An [`ApiError`] with this status and message.
fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

/// What a handler answers: a response, or a JSON error.
type ApiResult = Result<Response, ApiError>;

/// Counts and times every request (the outermost layer: refused ones count too).
async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state
        .shared
        .metrics
        .api_requests
        .fetch_add(1, Ordering::Relaxed);
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .and_then(|p| state.route_paths.get(p.as_str()).copied())
        .unwrap_or("unmatched");
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state
        .shared
        .metrics
        .api_latency
        .observe(method, route, started.elapsed().as_secs_f64());
    response
}

/// The `method` label: standard methods by name, any extension method as `other`, so a client
/// cannot grow the label set.
fn method_label(method: &axum::http::Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

/// HTTP Basic authentication (or the client certificate's node) on the routes that need it,
/// 401 with upstream's realm otherwise; then the caller's role must allow the call (403).
async fn require_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let identity = req
        .extensions()
        .get::<auth::Identity>()
        .cloned()
        .or_else(|| basic_identity(&state.users, req.headers()));
    let Some(identity) = identity else {
        let mut resp =
            error(StatusCode::UNAUTHORIZED, "missing or wrong credentials").into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"karaf\""),
        );
        return resp;
    };
    match authorized(&identity, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => {
            tracing::warn!(user = %identity.name, role = %identity.role, "API call refused: {}", e.message);
            e.into_response()
        }
    }
}

/// The identity of the request's Basic credentials, if they are right.
fn basic_identity(users: &auth::Users, headers: &HeaderMap) -> Option<auth::Identity> {
    let decoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let name = std::str::from_utf8(decoded.get(..colon)?).ok()?;
    users.authenticate(name, decoded.get(colon + 1..)?)
}

/// The request back when `identity` may make it: the switches it touches are read from the
/// path (`{dpid}`) or, for upstream's port routes, from the body (read here, within
/// [`MAX_BODY`], and handed on unchanged). A path or body the handler would refuse is refused
/// here with the handler's own error.
async fn authorized(identity: &auth::Identity, req: Request) -> Result<Request, ApiError> {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().clone();
    if identity.own_dpid().is_none() {
        auth::authorize(identity, &method, &route, &auth::Touches::Nothing)?;
        return Ok(req);
    }
    let (mut parts, mut body) = req.into_parts();
    let mut touches = auth::Touches::Nothing;
    if route.contains("{dpid}/ports/{port}") {
        use axum::extract::FromRequestParts as _;
        let params = axum::extract::RawPathParams::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        let port = ports::path_port(&get("dpid"), &get("port"))?;
        touches = auth::Touches::Switches(vec![port.dpid]);
    } else if route == "/onos/vnets/api/port" {
        let b = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_BODY} bytes"),
            )
        })?;
        let (_, ports) = vnets::membership(&b)?;
        touches = auth::Touches::Switches(ports.iter().map(|p| p.dpid).collect());
        body = axum::body::Body::from(b);
    } else if route == "/api/v1/networks/{network_id}/allocations" {
        // The port an allocation is linked to must be the agent's own too; a body the
        // handler refuses is left to it.
        let b = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_BODY} bytes"),
            )
        })?;
        if let Ok(l2sm_api::v1::AllocationRequest { port: Some(p), .. }) =
            serde_json::from_slice(&b)
        {
            if let Ok(port) = p.parse::<l2sm_pipeline::ids::PortId>() {
                touches = auth::Touches::Switches(vec![port.dpid]);
            }
        }
        body = axum::body::Body::from(b);
    }
    auth::authorize(identity, &method, &route, &touches)?;
    Ok(Request::from_parts(parts, body))
}

/// The answer to a refused or failed change, in upstream's codes: conflicts are 409, a member
/// that is not one and an exhausted VNI space are 500 (as upstream), as is a failed write.
fn update_error(e: UpdateError) -> ApiError {
    match e {
        UpdateError::Model(ModelError::PortNotMember(p)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("port {p} is not a member of any network"),
        ),
        UpdateError::Model(m @ ModelError::NotPodPort(_)) => {
            error(StatusCode::BAD_REQUEST, m.to_string())
        }
        UpdateError::Model(ModelError::VniExhausted) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "no free VNI left")
        }
        UpdateError::Model(m) => error(StatusCode::CONFLICT, m.to_string()),
        // Another controller won the write: nothing changed, the state is reloaded; retry.
        UpdateError::Persist(ref p) if p.is_retryable() => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        UpdateError::Persist(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Like [`update_error`], but an unknown network is 404: the native API names the network in
/// the path, so a missing one is a missing resource.
fn not_found(e: UpdateError) -> ApiError {
    match e {
        UpdateError::Model(ModelError::UnknownNetwork(n)) => error(
            StatusCode::NOT_FOUND,
            format!("network {n:?} does not exist"),
        ),
        other => update_error(other),
    }
}

/// A JSON request body; anything else is a 400 that says why.
fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    })
}

/// A wait's `timeoutMs`: an int64 as the document says (400 otherwise), capped at
/// [`l2sm_api::v1::MAX_WAIT_MS`].
fn wait_timeout(ms: u64) -> Result<std::time::Duration, ApiError> {
    if i64::try_from(ms).is_err() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "timeoutMs must be an int64 (the wait is capped at 10000 ms anyway)",
        ));
    }
    Ok(std::time::Duration::from_millis(
        ms.min(l2sm_api::v1::MAX_WAIT_MS),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_once_and_each_in_the_document() {
        let specs: Vec<openapi::RouteSpec> = routes().into_iter().map(|(s, _)| s).collect();
        let unique: std::collections::BTreeSet<(&str, &str)> =
            specs.iter().map(|s| (s.method, s.path)).collect();
        assert_eq!(unique.len(), specs.len(), "a route is listed twice");
        let doc = openapi_json();
        let mut documented = std::collections::BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                assert!(
                    !op["responses"].as_object().unwrap().is_empty(),
                    "{method} {path}"
                );
                documented.insert((method.clone(), path.clone()));
            }
        }
        let served: std::collections::BTreeSet<(String, String)> = unique
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[tokio::test]
    async fn errors_are_json_and_bodies_are_limited_on_every_route() {
        let api = testing::TestApi::new();
        let json_error = |code: u16, text: &str, want: u16| {
            assert_eq!(code, want, "{text}");
            let v: serde_json::Value =
                serde_json::from_str(text).unwrap_or_else(|_| panic!("{text}"));
            assert!(!v["error"].as_str().unwrap_or("").is_empty(), "{text}");
        };
        for (method, path, want) in [
            ("GET", "/api/v1/switches/of:00000000000000aa/flows", 404),
            ("GET", "/api/v1/switches/nope/groups", 400),
            ("PUT", "/api/v1/networks", 405),
            ("GET", "/nowhere", 404),
        ] {
            let (code, text) = api.req(method, path, None).await;
            json_error(code, &text, want);
        }
        let (code, text) = api.send("GET", "/api/v1/networks", None, false).await;
        json_error(code, &text, 401);
        let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(70_000));
        for (method, path) in [
            ("POST", "/api/v1/networks"),
            ("POST", "/onos/vnets/api"),
            ("GET", "/api/v1/ports"),
            ("POST", "/api/v1/networks/x/allocations"),
        ] {
            let (code, text) = api.req(method, path, Some(&big)).await;
            json_error(code, &text, 413);
        }
        // Latency is recorded per route template, never per raw path.
        api.req("GET", "/api/v1/networks/some-name", None).await;
        let metrics = api.req("GET", "/metrics", None).await.1;
        assert!(
            metrics.contains(
                r#"l2sm_api_request_duration_seconds_count{method="GET",route="/api/v1/networks/{network_id}"} 1"#
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                r#"l2sm_api_request_duration_seconds_bucket{method="PUT",route="/api/v1/networks",le="+Inf"} 1"#
            ),
            "{metrics}"
        );
        assert!(!metrics.contains("some-name"), "{metrics}");
    }

    /// A client picks the method: extension methods share one label value.
    #[tokio::test]
    async fn extension_methods_do_not_grow_the_label_set() {
        let api = testing::TestApi::new();
        let methods = ["FROB", "ZAPP", "get"];
        for method in methods {
            assert_eq!(api.req(method, "/api/v1/networks", None).await.0, 405);
        }
        let metrics = api.req("GET", "/metrics", None).await.1;
        assert!(
            metrics.contains(
                r#"l2sm_api_request_duration_seconds_count{method="other",route="/api/v1/networks"} 3"#
            ),
            "{metrics}"
        );
        for method in methods {
            let label = format!("method=\"{method}\"");
            assert!(!metrics.contains(&label), "{label}: {metrics}");
        }
    }

    /// A connected switch is shown as the contract's SwitchStatus, and counted per switch on
    /// /metrics; the session's bookkeeping shows nowhere.
    #[tokio::test]
    async fn connected_switches_are_shown_as_the_contract_type() {
        use l2sm_api::v1::{PortStatusView, SwitchStatus};
        let api = testing::TestApi::new();
        let status = SwitchStatus {
            id: "of:00000000000000aa".into(),
            peer: "127.0.0.1:40000".into(),
            ports: vec![PortStatusView {
                number: 1,
                name: "veth1".into(),
                kind: "port".into(),
                live: true,
            }],
            flows: 7,
            groups: 2,
        };
        api.shared.switches().insert(
            0xaa,
            crate::ConnectedSwitch {
                status: status.clone(),
                session: 1,
                probing_since: Some(std::time::Instant::now()),
            },
        );
        let (code, text) = api.req("GET", "/api/v1/switches", None).await;
        assert_eq!(code, 200, "{text}");
        assert_eq!(
            text,
            r#"[{"id":"of:00000000000000aa","peer":"127.0.0.1:40000","ports":[{"number":1,"name":"veth1","kind":"port","live":true}],"flows":7,"groups":2}]"#
        );
        let shown: Vec<SwitchStatus> = serde_json::from_str(&text).unwrap();
        assert_eq!(shown, [status]);
        let metrics = api.req("GET", "/metrics", None).await.1;
        for line in [
            "l2sm_switches_connected 1\n",
            "l2sm_flows_installed 7\n",
            "l2sm_switch_flows{dpid=\"of:00000000000000aa\"} 7\n",
            "l2sm_switch_groups{dpid=\"of:00000000000000aa\"} 2\n",
        ] {
            assert!(metrics.contains(line), "{line}: {metrics}");
        }
    }
}
