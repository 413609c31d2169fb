//! REST API: the upstream ONOS "vnets" contract under `/onos/vnets/api` (same paths, bodies and
//! status codes, so the upstream operator can drive this controller), and a small native API
//! under `/api/v1`. Every answer is immediate; switches are programmed in the background.

use super::state::ModelError;
use super::{Shared, UpdateError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use l2sm_pipeline::ids::{self, PortId};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
struct AppState {
    shared: Arc<Shared>,
    credentials: Arc<Credentials>,
}

/// Builds the API router.
pub fn router(shared: Arc<Shared>, credentials: Credentials) -> Router {
    let state = AppState {
        shared,
        credentials: Arc::new(credentials),
    };
    let vnets = Router::new()
        .route("/onos/vnets/api", post(create_network))
        .route("/onos/vnets/api/status", get(status))
        .route("/onos/vnets/api/port", post(add_port).delete(remove_port))
        .route("/onos/vnets/api/mirror-port", post(set_mirror_port))
        .route(
            "/onos/vnets/api/{network_id}",
            get(get_network).delete(delete_network),
        )
        .route(
            "/api/v1/networks",
            get(list_networks).post(create_network_v1),
        )
        .route("/api/v1/networks/{network_id}", get(get_network_v1))
        .route(
            "/api/v1/networks/{network_id}/mirror",
            axum::routing::delete(clear_mirror_port),
        )
        .route("/api/v1/networks/{network_id}/allocations", post(allocate))
        .route("/api/v1/networks/{network_id}/release", post(release))
        .route("/api/v1/ipam/gc", post(ipam_gc))
        .route("/api/v1/switches", get(list_switches))
        .route("/api/v1/links", get(list_links))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    Router::new()
        .route("/onos/ui", get(|| async { "L2S-M controller\n" }))
        .route("/metrics", get(metrics))
        .merge(vnets)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint").into_response() })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// JSON error body `{"code": N, "message": "..."}`, the shape ONOS uses.
/// An API error, answered as the JSON body `{"code": N, "message": "..."}` ONOS uses.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            code: u16,
            message: String,
        }
        let body = Body {
            code: self.status.as_u16(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

type ApiResult = Result<Response, ApiError>;

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state
        .shared
        .metrics
        .api_requests
        .fetch_add(1, Ordering::Relaxed);
    next.run(req).await
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

/// Upstream `NetworkDTO`. Unknown fields are refused (upstream parses with
/// FAIL_ON_UNKNOWN_PROPERTIES).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NetworkDto {
    network_id: Option<String>,
    network_endpoints: Option<Vec<String>>,
    #[allow(dead_code)]
    tunnel_list: Option<Vec<i64>>,
    mirror_port: Option<String>,
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

async fn create_network(State(state): State<AppState>, body: Bytes) -> ApiResult {
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

async fn add_port(State(state): State<AppState>, body: Bytes) -> ApiResult {
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

async fn remove_port(State(state): State<AppState>, body: Bytes) -> ApiResult {
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

async fn set_mirror_port(State(state): State<AppState>, body: Bytes) -> ApiResult {
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

/// One network in the native API.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkView {
    /// Name.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// 802.1Q id on trunk links.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// Member ports.
    pub endpoints: Vec<String>,
    /// Mirror port, if any.
    pub mirror_port: Option<String>,
    /// Address management, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<super::ipam::Ipam>,
}

fn network_view(name: &str, n: &super::state::Network) -> NetworkView {
    NetworkView {
        name: name.to_string(),
        vni: n.vni,
        vlan: n.vlan,
        endpoints: n.endpoints.iter().map(|e| e.to_string()).collect(),
        mirror_port: n.mirror_port.map(|p| p.to_string()),
        ipam: n.ipam.clone(),
    }
}

/// Body of `POST /api/v1/networks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateNetwork {
    name: String,
    #[serde(default)]
    cidrs: Vec<ipnet::IpNet>,
    #[serde(default)]
    pod_ranges: Vec<ipnet::IpNet>,
    #[serde(default)]
    exclude: Vec<std::net::IpAddr>,
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    })
}

async fn create_network_v1(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let req: CreateNetwork = json_body(&body)?;
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

/// Body of the allocation endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AllocationRequest {
    owner: String,
    #[serde(default)]
    ips: Vec<ipnet::IpNet>,
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

async fn allocate(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let req: AllocationRequest = json_body(&body)?;
    if req.owner.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "owner is required"));
    }
    let ips = state
        .shared
        .update(|m| m.allocate(&id, &req.owner, &req.ips))
        .map_err(model_status)?;
    Ok(Json(serde_json::json!({ "ips": ips })).into_response())
}

async fn release(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let req: AllocationRequest = json_body(&body)?;
    let released = state
        .shared
        .update(|m| Ok(m.release(&id, &req.owner)))
        .map_err(update_error)?;
    Ok(Json(serde_json::json!({ "released": released })).into_response())
}

/// Body of `POST /api/v1/ipam/gc`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GcRequest {
    owner_prefix: String,
    valid_owners: Vec<String>,
}

async fn ipam_gc(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let req: GcRequest = json_body(&body)?;
    let valid: std::collections::BTreeSet<String> = req.valid_owners.into_iter().collect();
    let released = state
        .shared
        .update(|m| Ok(m.gc(&req.owner_prefix, &valid)))
        .map_err(update_error)?;
    Ok(Json(serde_json::json!({ "released": released })).into_response())
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

/// One configured link in the native API, with its liveness.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    /// Switch at one end.
    pub a: String,
    /// Its port (0 while that switch has no session).
    pub a_port: u32,
    /// Switch at the other end.
    pub b: String,
    /// Its port.
    pub b_port: u32,
    /// `tunnel` or `trunk`.
    pub kind: String,
    /// Carries traffic: ports up and LLDP probes arriving both ways.
    #[serde(default = "yes")]
    pub live: bool,
    /// `up`, `port down` or `no probes`.
    #[serde(default)]
    pub state: String,
}

fn yes() -> bool {
    true
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

async fn metrics(State(state): State<AppState>) -> Response {
    let m = &state.shared.metrics;
    let model = state.shared.model();
    let switches = state.shared.switch_list();
    let memberships: usize = model.networks.values().map(|n| n.endpoints.len()).sum();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let flows: usize = switches.iter().map(|s| s.flows).sum();
    let rows: [(&str, &str, &str, u64); 9] = [
        (
            "l2sm_switches_connected",
            "gauge",
            "Switches connected.",
            switches.len() as u64,
        ),
        (
            "l2sm_networks",
            "gauge",
            "Networks defined.",
            model.networks.len() as u64,
        ),
        (
            "l2sm_memberships",
            "gauge",
            "Member ports over all networks.",
            memberships as u64,
        ),
        (
            "l2sm_flows_installed",
            "gauge",
            "Flows installed by the controller.",
            flows as u64,
        ),
        (
            "l2sm_flow_mods_total",
            "counter",
            "FLOW_MOD messages sent.",
            load(&m.flow_mods),
        ),
        (
            "l2sm_group_mods_total",
            "counter",
            "GROUP_MOD messages sent.",
            load(&m.group_mods),
        ),
        (
            "l2sm_switch_connections_total",
            "counter",
            "Switch connections.",
            load(&m.connections),
        ),
        (
            "l2sm_switch_protocol_errors_total",
            "counter",
            "Switch connections closed on a protocol error.",
            load(&m.protocol_errors),
        ),
        (
            "l2sm_api_requests_total",
            "counter",
            "API requests served.",
            load(&m.api_requests),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    out.push_str(&super::metrics::render(&state.shared));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}
