//! The upstream ONOS "vnets" contract: same bodies and status codes as upstream, so the
//! upstream operator can drive this controller. Networks are named by upstream's NetworkDTO;
//! ports are `of:<16 hex>/<n>`, and endpoints it cannot parse answer 500, as upstream does.

use super::{error, json_body, update_error, ApiError, ApiResult, AppState, Body};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse as _;
use l2sm_api::vnets::NetworkDto;
use l2sm_pipeline::ids::{self, PortId};

/// Upstream's operator probes this page for readiness: any 200 will do.
pub(super) async fn ready() -> &'static str {
    "L2S-M controller\n"
}

/// Upstream's health check: 200 while the API serves.
pub(super) async fn status() -> StatusCode {
    StatusCode::OK
}

/// The DTO's network name, required and a valid Kubernetes object name.
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

/// The DTO's member ports; missing or malformed is a 500, as upstream answers.
fn endpoints(dto: &NetworkDto) -> Result<Vec<PortId>, ApiError> {
    let list = dto.network_endpoints.as_ref().ok_or_else(|| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "networkEndpoints is required",
        )
    })?;
    list.iter().map(|s| parse_port(s)).collect()
}

pub(super) async fn create_network(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let dto: NetworkDto = json_body(&body)?;
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

pub(super) async fn get_network(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
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

pub(super) async fn delete_network(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let existed = state
        .shared
        .update(|m| Ok(m.delete_network(&id)))
        .map_err(update_error)?;
    if existed {
        tracing::info!(network = %id, "network deleted");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The network and ports of a membership change (upstream answers 409 for a missing or
/// invalid `networkId` there, and 500 for ports it cannot parse).
pub(super) fn membership(body: &Bytes) -> Result<(String, Vec<PortId>), ApiError> {
    let dto: NetworkDto = json_body(body)?;
    let id = network_id(&dto).map_err(|_| {
        error(
            StatusCode::CONFLICT,
            "networkId is missing or names no network",
        )
    })?;
    Ok((id, endpoints(&dto)?))
}

pub(super) async fn add_port(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let (id, ports) = membership(&body)?;
    if state
        .shared
        .update(|m| m.add_ports(&id, &ports))
        .map_err(update_error)?
    {
        tracing::info!(network = %id, ports = ?ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(), "ports added");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn remove_port(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let (id, ports) = membership(&body)?;
    state
        .shared
        .update(|m| m.remove_ports(&id, &ports))
        .map_err(update_error)?;
    tracing::info!(network = %id, ports = ?ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(), "ports removed");
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn set_mirror_port(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let dto: NetworkDto = json_body(&body)?;
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

#[cfg(test)]
mod tests {
    use super::super::testing::TestApi;

    const P1: &str = "of:a30b6e801ab54336/3";
    const P2: &str = "of:fa97dd6bd2e32553/1";
    const VNETS: &str = "/onos/vnets/api";
    const PORT: &str = "/onos/vnets/api/port";
    const MIRROR: &str = "/onos/vnets/api/mirror-port";
    const BLUE: &str = "/onos/vnets/api/blue";

    #[tokio::test]
    async fn upstream_vnets_contract() {
        let api = TestApi::new();
        // Readiness and auth.
        assert_eq!(api.send("GET", "/onos/ui", None, false).await.0, 200);
        assert_eq!(
            api.send("GET", "/onos/vnets/api/status", None, false)
                .await
                .0,
            401
        );
        let add =
            |net: &str, ep: &str| format!(r#"{{"networkId":"{net}","networkEndpoints":["{ep}"]}}"#);
        let (blue_p1, blue_p2, nope_p1) = (add("blue", P1), add("blue", P2), add("nope", P1));
        let blue_bad = add("blue", "of:xyz/1");
        let mirror = format!(r#"{{"networkId":"blue","mirrorPort":"{P2}"}}"#);
        // Health; create (idempotent).
        api.expect_all(&[
            ("GET", "/onos/vnets/api/status", None, 200, "health"),
            (
                "POST",
                VNETS,
                Some(r#"{"networkId":"blue"}"#),
                204,
                "created",
            ),
            (
                "POST",
                VNETS,
                Some(r#"{"networkId":"blue"}"#),
                204,
                "exists",
            ),
        ])
        .await;
        let (code, body) = api.req("GET", BLUE, None).await;
        assert_eq!(code, 200);
        assert!(body.starts_with("Id: blue\nEndpoints: \n"), "{body:?}");
        assert!(body.contains("Mirror Port: null"), "{body:?}");
        // Unknown network; ports.
        api.expect_all(&[
            ("GET", "/onos/vnets/api/nope", None, 404, "unknown"),
            ("POST", PORT, Some(&blue_p1), 204, "added"),
            ("POST", PORT, Some(&blue_p1), 204, "re-adding is a no-op"),
            ("POST", PORT, Some(&nope_p1), 409, "unknown network"),
            ("POST", PORT, Some(&blue_bad), 500, "malformed endpoint"),
            (
                "POST",
                PORT,
                Some(r#"{"networkId":"blue"}"#),
                500,
                "no endpoints",
            ),
            (
                "POST",
                VNETS,
                Some(r#"{"networkId":"red"}"#),
                204,
                "created",
            ),
        ])
        .await;
        let (code, body) = api.req("POST", PORT, Some(&add("red", P1))).await;
        assert_eq!(code, 409, "a port belongs to one network");
        assert!(body.contains("blue"), "{body}");
        assert!(api.req("GET", BLUE, None).await.1.contains(P1));
        // Mirror port.
        api.expect_all(&[
            (
                "POST",
                MIRROR,
                Some(r#"{"networkId":"blue"}"#),
                400,
                "no port",
            ),
            ("POST", MIRROR, Some(&mirror), 204, "set"),
        ])
        .await;
        assert!(api
            .req("GET", BLUE, None)
            .await
            .1
            .contains(&format!("Mirror Port: {P2}")));
        // Remove ports: 200, non-member 500, unknown network 409; then bad bodies.
        api.expect_all(&[
            (
                "POST",
                PORT,
                Some(&blue_p2),
                409,
                "mirror cannot be a member",
            ),
            ("DELETE", PORT, Some(&blue_p1), 200, "removed"),
            ("DELETE", PORT, Some(&blue_p1), 500, "not a member"),
            ("DELETE", PORT, Some(&nope_p1), 409, "unknown network"),
            ("POST", VNETS, Some("{not json"), 400, "not JSON"),
            (
                "POST",
                VNETS,
                Some(r#"{"networkId":"x","bogus":1}"#),
                400,
                "unknown field",
            ),
        ])
        .await;
        let long = format!(r#"{{"networkId":"{}"}}"#, "a".repeat(300));
        let (code, body) = api.req("POST", VNETS, Some(&long)).await;
        assert_eq!(code, 400);
        assert!(body.contains("longer than 253"), "{body}");
        // Delete (also when unknown).
        api.expect_all(&[
            (
                "POST",
                VNETS,
                Some(r#"{"networkId":"a b"}"#),
                400,
                "bad name",
            ),
            ("DELETE", BLUE, None, 204, "deleted"),
            ("DELETE", BLUE, None, 204, "deleting an unknown network"),
            ("GET", BLUE, None, 404, "gone"),
            ("GET", "/nowhere", None, 404, "no such endpoint"),
        ])
        .await;
    }
}
