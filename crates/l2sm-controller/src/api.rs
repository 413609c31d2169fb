//! REST API: the upstream ONOS "vnets" contract under `/onos/vnets/api` (same paths, bodies and
//! status codes, so the upstream operator can drive this controller), and a small native API
//! under `/api/v1`. Every answer is immediate; switches are programmed in the background.

use super::model::ModelError;
use super::{Shared, UpdateError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use l2sm_api::v1::{self, LinkView, NetworkView};
use l2sm_api::vnets::NetworkDto;
use l2sm_pipeline::ids::{self, PortId};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

mod openapi;
mod views;

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

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) shared: Arc<Shared>,
    credentials: Arc<Credentials>,
    /// Paths of the route table: the closed set of `route` labels of the latency metric.
    route_paths: Arc<BTreeSet<&'static str>>,
}

impl axum::extract::FromRef<AppState> for Arc<Shared> {
    fn from_ref(state: &AppState) -> Arc<Shared> {
        state.shared.clone()
    }
}

/// Builds the API router from [`routes`], the one list of what the API serves (the OpenAPI
/// document is generated from the same list).
pub fn router(shared: Arc<Shared>, credentials: Credentials) -> Router {
    let table = routes();
    let state = AppState {
        shared,
        credentials: Arc::new(credentials),
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
    use axum::routing::delete;
    use openapi::{Resp, RouteSpec};
    let err = |code: u16, why: &'static str| Resp::error(code, why);
    vec![
        (
            RouteSpec::open("get", "/onos/ui", "Readiness probe of upstream's operator")
                .responses(vec![Resp::text(200, "the controller is up")]),
            get(|| async { "L2S-M controller\n" }),
        ),
        (
            RouteSpec::open("get", "/metrics", "Prometheus metrics")
                .responses(vec![Resp::text(200, "metrics in Prometheus text format")]),
            get(super::metrics::handler),
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
                    err(400, "invalid body or network name"),
                ]),
            post(create_network),
        ),
        (
            RouteSpec::authed("get", "/onos/vnets/api/status", "Health (upstream)")
                .responses(vec![Resp::empty(200, "the API is up")]),
            get(status),
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
                err(400, "invalid body"),
                err(
                    409,
                    "unknown network, port in another network or the mirror port",
                ),
                err(500, "missing or malformed endpoints (as upstream)"),
            ]),
            post(add_port),
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
            delete(remove_port),
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
                err(400, "invalid body or missing mirrorPort"),
                err(409, "unknown network or port in a network"),
                err(500, "malformed port id (as upstream)"),
            ]),
            post(set_mirror_port),
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
            get(get_network),
        ),
        (
            RouteSpec::authed(
                "delete",
                "/onos/vnets/api/{network_id}",
                "Delete a network (upstream)",
            )
            .responses(vec![Resp::empty(204, "deleted, or it did not exist")]),
            delete(delete_network),
        ),
        (
            RouteSpec::authed("get", "/api/v1/networks", "Every network")
                .responses(vec![Resp::json_array(200, "networks", "Network")]),
            get(list_networks),
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
            post(create_network_v1),
        ),
        (
            RouteSpec::authed("get", "/api/v1/networks/{network_id}", "One network").responses(
                vec![
                    Resp::json(200, "the network", "Network"),
                    err(404, "unknown network"),
                ],
            ),
            get(get_network_v1),
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
            delete(clear_mirror_port),
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
            post(allocate),
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
            post(release),
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
            post(ipam_gc),
        ),
        (
            RouteSpec::authed("get", "/api/v1/switches", "Connected switches")
                .responses(vec![Resp::json_array(200, "switches", "Switch")]),
            get(list_switches),
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
            get(views::switch_flows),
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
            get(views::switch_groups),
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
            axum::routing::put(set_port_owner),
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
            delete(clear_port_owner),
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
                err(400, "invalid body, datapath id or port number"),
                err(404, "unknown target network"),
                err(409, "the port is not a member of the source network"),
            ]),
            post(move_port),
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
            post(wait_programmed),
        ),
        (
            RouteSpec::authed("get", "/api/v1/ports", "Ports of connected switches")
                .responses(vec![Resp::json_array(200, "ports", "Port")]),
            get(views::list_ports),
        ),
        (
            RouteSpec::authed("get", "/api/v1/attachments", "Network memberships")
                .responses(vec![Resp::json_array(200, "memberships", "Attachment")]),
            get(views::list_attachments),
        ),
        (
            RouteSpec::authed("get", "/api/v1/links", "Live inter-switch links")
                .responses(vec![Resp::json_array(200, "links", "Link")]),
            get(list_links),
        ),
    ]
    .into_iter()
    .map(|(spec, handler)| {
        let spec = spec.with_common_errors();
        (spec, handler)
    })
    .collect()
}

/// The OpenAPI document of [`routes`].
pub fn openapi_json() -> serde_json::Value {
    let specs: Vec<openapi::RouteSpec> = routes().into_iter().map(|(s, _)| s).collect();
    openapi::document(&specs, MAX_BODY)
}

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
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = l2sm_api::ErrorBody::new(self.status.as_u16(), self.message);
        (self.status, Json(body)).into_response()
    }
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

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

async fn require_auth(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let expected = format!("{}:{}", state.credentials.user, state.credentials.password);
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        });
    if given.as_deref() == Some(expected.as_bytes()) {
        return next.run(req).await;
    }
    let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong credentials").into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"karaf\""),
    );
    resp
}

fn parse_body(body: &Bytes) -> Result<NetworkDto, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    })
}

fn network_id(dto: &NetworkDto) -> Result<String, ApiError> {
    let id = dto
        .network_id
        .clone()
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "networkId is required"))?;
    ids::validate_network_name(&id).map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(id)
}

/// Upstream answers 500 for endpoints it cannot parse; we keep the code and add a message.
fn parse_port(s: &str) -> Result<PortId, ApiError> {
    s.parse()
        .map_err(|e: ids::IdError| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn update_error(e: UpdateError) -> ApiError {
    match e {
        UpdateError::Model(ModelError::PortNotMember(p)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("port {p} is not a member of any network"),
        ),
        UpdateError::Model(ModelError::VniExhausted) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "no free VNI left")
        }
        UpdateError::Model(m) => error(StatusCode::CONFLICT, m.to_string()),
        UpdateError::Persist(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn status() -> StatusCode {
    StatusCode::OK
}

async fn create_network(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let dto = parse_body(&body)?;
    let id = network_id(&dto)?;
    let mirror = dto.mirror_port.as_deref().map(parse_port).transpose()?;
    let created = state
        .shared
        .update(|m| m.create_network(&id, mirror))
        .map_err(update_error)?;
    if created {
        tracing::info!(network = %id, "network created");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_network(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let model = state.shared.model();
    let Some(net) = model.networks.get(&id) else {
        let message = format!("network {id:?} does not exist");
        return Err(error(StatusCode::NOT_FOUND, message));
    };
    // Same human-readable text as upstream's Network.toString().
    let mut text = format!("Id: {id}\nEndpoints: \n");
    for ep in &net.endpoints {
        text.push_str(&format!(" -{ep}\n"));
    }
    text.push_str("Tunnel Ids: \n");
    for _ in &net.endpoints {
        text.push_str(&format!(" -{}\n", net.vni));
    }
    match &net.mirror_port {
        Some(p) => text.push_str(&format!("Mirror Port: {p}\n")),
        None => text.push_str("Mirror Port: null\n"),
    }
    let content_type = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    Ok((StatusCode::OK, content_type, text).into_response())
}

async fn delete_network(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let existed = state
        .shared
        .update(|m| Ok(m.delete_network(&id)))
        .map_err(update_error)?;
    if existed {
        tracing::info!(network = %id, "network deleted");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn endpoints(dto: &NetworkDto) -> Result<Vec<PortId>, ApiError> {
    let list = dto.network_endpoints.as_ref().ok_or_else(|| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "networkEndpoints is required",
        )
    })?;
    list.iter().map(|s| parse_port(s)).collect()
}

async fn add_port(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let dto = parse_body(&body)?;
    let id = network_id(&dto).map_err(|_| {
        error(
            StatusCode::CONFLICT,
            "networkId is missing or names no network",
        )
    })?;
    let ports = endpoints(&dto)?;
    if state
        .shared
        .update(|m| m.add_ports(&id, &ports))
        .map_err(update_error)?
    {
        tracing::info!(network = %id, ports = ?ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(), "ports added");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove_port(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let dto = parse_body(&body)?;
    let id = network_id(&dto).map_err(|_| {
        error(
            StatusCode::CONFLICT,
            "networkId is missing or names no network",
        )
    })?;
    let ports = endpoints(&dto)?;
    state
        .shared
        .update(|m| m.remove_ports(&id, &ports))
        .map_err(update_error)?;
    tracing::info!(network = %id, ports = ?ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(), "ports removed");
    Ok(StatusCode::OK.into_response())
}

async fn set_mirror_port(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let dto = parse_body(&body)?;
    let mirror = match dto.mirror_port.as_deref() {
        Some(s) if !s.is_empty() => parse_port(s)?,
        _ => return Err(error(StatusCode::BAD_REQUEST, "mirrorPort is required")),
    };
    let id = network_id(&dto).map_err(|_| {
        error(
            StatusCode::CONFLICT,
            "networkId is missing or names no network",
        )
    })?;
    state
        .shared
        .update(|m| m.set_mirror_port(&id, mirror))
        .map_err(update_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn network_view(name: &str, n: &super::model::Network) -> NetworkView {
    NetworkView {
        name: name.to_string(),
        vni: n.vni,
        vlan: n.vlan,
        endpoints: n.endpoints.iter().map(|e| e.to_string()).collect(),
        mirror_port: n.mirror_port.map(|p| p.to_string()),
        ipam: n.ipam.as_ref().map(super::ipam::Ipam::view),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    })
}

async fn create_network_v1(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let req: v1::CreateNetwork = json_body(&body)?;
    ids::validate_network_name(&req.name)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let created = if req.cidrs.is_empty() {
        if !req.pod_ranges.is_empty() || !req.exclude.is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "podRanges and exclude need cidrs",
            ));
        }
        state
            .shared
            .update(|m| m.create_network(&req.name, None))
            .map_err(update_error)?
    } else {
        let ipam = super::ipam::Ipam::new(req.cidrs, req.pod_ranges, req.exclude)
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
        state
            .shared
            .update(|m| m.create_network_with_ipam(&req.name, ipam))
            .map_err(update_error)?
    };
    let model = state.shared.model();
    let view = model
        .networks
        .get(&req.name)
        .map(|n| network_view(&req.name, n));
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

async fn get_network_v1(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let model = state.shared.model();
    let net = model.networks.get(&id).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("network {id:?} does not exist"),
        )
    })?;
    Ok(Json(network_view(&id, net)).into_response())
}

/// Stops mirroring a network (upstream has no way to do this); 204 even when it had none.
async fn clear_mirror_port(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    state
        .shared
        .update(|m| m.clear_mirror_port(&id))
        .map_err(|e| match e {
            UpdateError::Model(ModelError::UnknownNetwork(_)) => error(
                StatusCode::NOT_FOUND,
                format!("network {id:?} does not exist"),
            ),
            other => update_error(other),
        })?;
    tracing::info!(network = %id, "mirror port cleared");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn model_status(e: UpdateError) -> ApiError {
    match e {
        UpdateError::Model(ModelError::UnknownNetwork(n)) => error(
            StatusCode::NOT_FOUND,
            format!("network {n:?} does not exist"),
        ),
        other => update_error(other),
    }
}

async fn allocate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult {
    let req: v1::AllocationRequest = json_body(&body)?;
    if req.owner.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "owner is required"));
    }
    let port = req
        .port
        .as_deref()
        .map(|p| {
            p.parse::<PortId>()
                .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))
        })
        .transpose()?;
    let ips = state
        .shared
        .update(|m| m.allocate(&id, &req.owner, &req.ips, port))
        .map_err(model_status)?;
    Ok(Json(v1::Allocated { ips }).into_response())
}

async fn release(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult {
    let req: v1::AllocationRequest = json_body(&body)?;
    let released = state
        .shared
        .update(|m| Ok(m.release(&id, &req.owner)))
        .map_err(update_error)?;
    Ok(Json(v1::Released { released }).into_response())
}

/// `{dpid}` and `{port}` of the per-port routes as a port id.
fn path_port(dpid: &str, port: &str) -> Result<PortId, ApiError> {
    let bad = || {
        error(
            StatusCode::BAD_REQUEST,
            format!(
                "malformed port {dpid:?}/{port:?} (expected of:<16 hex digits> and a port number)"
            ),
        )
    };
    let dpid = views::parse_dpid(dpid).ok_or_else(bad)?;
    let port: u32 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok(PortId { dpid, port })
}

/// Longest pod (`namespace/name`), attachment id or interface name accepted.
const MAX_OWNER_FIELD: usize = 512;

async fn set_port_owner(
    State(state): State<AppState>,
    Path((dpid, port)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult {
    let port = path_port(&dpid, &port)?;
    let req: v1::PortOwnerRequest = json_body(&body)?;
    if req.attachment.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "attachment is required"));
    }
    let fields = [
        req.pod.as_deref().unwrap_or(""),
        &req.attachment,
        &req.interface,
    ];
    if fields
        .iter()
        .any(|f| f.len() > MAX_OWNER_FIELD || f.chars().any(char::is_control))
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "pod, attachment and interface must be short printable text",
        ));
    }
    let owner = super::model::PortOwner {
        pod: req.pod.filter(|p| !p.is_empty()),
        attachment: req.attachment,
        interface: req.interface,
    };
    let pod = owner.pod.clone();
    if state
        .shared
        .update(|m| m.set_owner(port, owner))
        .map_err(|e| match e {
            UpdateError::Model(ModelError::PortNotMember(p)) => error(
                StatusCode::CONFLICT,
                format!("port {p} is not a member of any network"),
            ),
            other => update_error(other),
        })?
    {
        tracing::info!(%port, pod = ?pod, "port owner recorded");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn clear_port_owner(
    State(state): State<AppState>,
    Path((dpid, port)): Path<(String, String)>,
) -> ApiResult {
    let port = path_port(&dpid, &port)?;
    state
        .shared
        .update(|m| Ok(m.clear_owner(&port)))
        .map_err(update_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Answers once the port's switch has confirmed (barrier reply) flows that make the port a
/// member of the network: the agent waits for this before a pod's interface is reported
/// ready, so a pod's first frames are not dropped by a switch that does not know its port yet.
async fn wait_programmed(
    State(state): State<AppState>,
    Path((dpid, port)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult {
    let port = path_port(&dpid, &port)?;
    let req: v1::WaitRequest = json_body(&body)?;
    let vni = state
        .shared
        .model()
        .networks
        .get(&req.network)
        .map(|n| n.vni)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("network {:?} does not exist", req.network),
            )
        })?;
    // A switch without a session cannot be programmed: say so at once instead of timing out.
    if !state.shared.is_connected(port.dpid) {
        return Err(error(
            StatusCode::CONFLICT,
            format!(
                "switch of:{:016x} is not connected to the controller",
                port.dpid
            ),
        ));
    }
    let timeout = std::time::Duration::from_millis(req.timeout_ms.min(v1::MAX_WAIT_MS));
    if state.shared.wait_programmed(port, vni, timeout).await {
        Ok(Json(v1::Programmed { programmed: true }).into_response())
    } else {
        Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "port {port} is not programmed in network {:?} on its switch after {} ms",
                req.network,
                timeout.as_millis()
            ),
        ))
    }
}

async fn move_port(
    State(state): State<AppState>,
    Path((dpid, port)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult {
    let port = path_port(&dpid, &port)?;
    let req: v1::MoveRequest = json_body(&body)?;
    let moved = state
        .shared
        .update(|m| m.move_port(port, &req.from, &req.to))
        .map_err(|e| match e {
            UpdateError::Model(ModelError::UnknownNetwork(n)) => error(
                StatusCode::NOT_FOUND,
                format!("network {n:?} does not exist"),
            ),
            UpdateError::Model(m @ ModelError::PortNotMember(_)) => {
                error(StatusCode::CONFLICT, m.to_string())
            }
            other => update_error(other),
        })?;
    if moved {
        tracing::info!(%port, from = %req.from, to = %req.to, "port moved");
    }
    Ok(Json(v1::Moved {
        moved,
        network: req.to,
    })
    .into_response())
}

async fn ipam_gc(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let req: v1::GcRequest = json_body(&body)?;
    let valid: std::collections::BTreeSet<String> = req.valid_owners.into_iter().collect();
    let released = state
        .shared
        .update(|m| Ok(m.gc(&req.owner_prefix, &valid)))
        .map_err(update_error)?;
    Ok(Json(v1::Released { released }).into_response())
}

async fn list_networks(State(state): State<AppState>) -> Json<Vec<NetworkView>> {
    let model = state.shared.model();
    Json(
        model
            .networks
            .iter()
            .map(|(name, n)| network_view(name, n))
            .collect(),
    )
}

async fn list_links(State(state): State<AppState>) -> Json<Vec<LinkView>> {
    let links = state.shared.link_report();
    Json(
        links
            .into_iter()
            .map(|r| {
                (
                    r.link,
                    r.live,
                    if r.live {
                        "up"
                    } else if !r.ports_up {
                        "port down"
                    } else {
                        "no probes"
                    },
                )
            })
            .map(|(l, live, st)| LinkView {
                live,
                state: st.into(),
                a: format!("of:{:016x}", l.a.dpid),
                a_port: l.a.port,
                b: format!("of:{:016x}", l.b.dpid),
                b_port: l.b.port,
                kind: match l.kind {
                    l2sm_pipeline::LinkKind::Tunnel => "tunnel".into(),
                    l2sm_pipeline::LinkKind::Trunk => "trunk".into(),
                },
            })
            .collect(),
    )
}

async fn list_switches(State(state): State<AppState>) -> Response {
    Json(state.shared.switch_list()).into_response()
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
}
