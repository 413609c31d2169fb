//! Native networks: list, create (optionally with IPAM), read, and stop mirroring.

use super::{error, json_body, not_found, update_error, ApiResult, AppState, Body};
use crate::ipam::Ipam;
use crate::model::Network;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::Json;
use l2sm_api::v1::{self, NetworkView};
use l2sm_pipeline::ids;

fn network_view(name: &str, n: &Network) -> NetworkView {
    NetworkView {
        name: name.to_string(),
        vni: n.vni,
        vlan: n.vlan,
        endpoints: n.endpoints.iter().map(|e| e.to_string()).collect(),
        mirror_port: n.mirror_port.map(|p| p.to_string()),
        ipam: n.ipam.as_ref().map(Ipam::view),
        port_security: n.port_security,
        limits: n.limits(),
        dns: n.dns_view(),
    }
}

pub(super) async fn list_networks(State(state): State<AppState>) -> Json<Vec<NetworkView>> {
    let model = state.shared.model();
    Json(
        model
            .networks
            .iter()
            .map(|(name, n)| network_view(name, n))
            .collect(),
    )
}

pub(super) async fn create_network(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let req: v1::CreateNetwork = json_body(&body)?;
    ids::validate_network_name(&req.name)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    if let Some(limits) = &req.limits {
        limits
            .check()
            .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    }
    let limits = req.limits;
    let created = if req.cidrs.is_empty() {
        if !req.pod_ranges.is_empty() || !req.exclude.is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "podRanges and exclude need cidrs",
            ));
        }
        state
            .shared
            .update(|m| {
                m.check_port_security(&req.name, req.port_security)?;
                let created = m.create_network(&req.name, None)?;
                m.set_port_security(&req.name, req.port_security)?;
                m.apply_create_limits(&req.name, created, limits)?;
                Ok(created)
            })
            .map_err(update_error)?
    } else {
        let ipam = Ipam::new(req.cidrs, req.pod_ranges, req.exclude)
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
        state
            .shared
            .update(|m| {
                m.check_port_security(&req.name, req.port_security)?;
                let created = m.create_network_with_ipam(&req.name, ipam)?;
                m.set_port_security(&req.name, req.port_security)?;
                m.apply_create_limits(&req.name, created, limits)?;
                Ok(created)
            })
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

pub(super) async fn get_network(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    current_view(&state, &id)
}

/// The network as the model holds it now, or 404.
fn current_view(state: &AppState, id: &str) -> ApiResult {
    let model = state.shared.model();
    let net = model.networks.get(id).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("network {id:?} does not exist"),
        )
    })?;
    Ok(Json(network_view(id, net)).into_response())
}

/// Sets the abuse limits of a network's pod ports (`PUT /api/v1/networks/{name}/limits`).
pub(super) async fn set_limits(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body,
) -> ApiResult {
    let limits: v1::NetworkLimits = json_body(&body)?;
    limits
        .check()
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    state
        .shared
        .update(|m| m.set_limits(&id, limits))
        .map_err(not_found)?;
    tracing::info!(network = %id, ?limits, "limits set");
    current_view(&state, &id)
}

/// Stops mirroring a network (upstream has no way to do this); 204 even when it had none.
pub(super) async fn clear_mirror_port(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    state
        .shared
        .update(|m| m.clear_mirror_port(&id))
        .map_err(not_found)?;
    tracing::info!(network = %id, "mirror port cleared");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::super::testing::TestApi;
    use serde_json::{json, Value};

    async fn limits_of(api: &TestApi, net: &str) -> Value {
        let (code, text) = api
            .req("GET", &format!("/api/v1/networks/{net}"), None)
            .await;
        assert_eq!(code, 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["limits"].clone()
    }

    /// Limits on create and through their own resource: defaults when left out, every field
    /// checked, an existing network with other limits is a conflict on create, and the switch
    /// views carry them.
    #[tokio::test]
    async fn limits_are_set_on_create_and_through_their_resource() {
        let api = TestApi::new();
        let nets = "/api/v1/networks";
        api.expect_all(&[
            ("POST", nets, Some(r#"{"name":"plain"}"#), 201, "defaults"),
            (
                "POST",
                nets,
                Some(r#"{"name":"tight","limits":{"macLimit":4,"floodPps":10}}"#),
                201,
                "with limits",
            ),
            (
                "POST",
                nets,
                Some(r#"{"name":"tight","limits":{"macLimit":4,"floodPps":10}}"#),
                200,
                "same limits: no-op",
            ),
            (
                "POST",
                nets,
                Some(r#"{"name":"tight","limits":{"macLimit":5}}"#),
                409,
                "other limits",
            ),
            (
                "POST",
                nets,
                Some(r#"{"name":"x","limits":{"macLimit":99999999}}"#),
                400,
                "cap out of range",
            ),
            (
                "POST",
                nets,
                Some(r#"{"name":"x","limits":{"burst":1}}"#),
                400,
                "unknown field",
            ),
            (
                "PUT",
                "/api/v1/networks/nope/limits",
                Some("{}"),
                404,
                "unknown network",
            ),
            (
                "PUT",
                "/api/v1/networks/plain/limits",
                Some(r#"{"floodPps":-1}"#),
                400,
                "negative",
            ),
            (
                "PUT",
                "/api/v1/networks/plain/limits",
                Some(r#"{"floodBurst":200000000}"#),
                400,
                "burst out of range",
            ),
        ])
        .await;
        assert_eq!(
            limits_of(&api, "plain").await,
            json!({"macLimit": 256, "floodPps": 1000, "floodBurst": 1000})
        );
        assert_eq!(
            limits_of(&api, "tight").await,
            json!({"macLimit": 4, "floodPps": 10, "floodBurst": 1000})
        );
        let (code, text) = api
            .req(
                "PUT",
                "/api/v1/networks/plain/limits",
                Some(r#"{"macLimit":0,"floodPps":0}"#),
            )
            .await;
        assert_eq!(code, 200, "{text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["limits"],
            json!({"macLimit": 0, "floodPps": 0, "floodBurst": 1000})
        );
        // The model hands them to the compiler.
        let model = api.shared.model();
        let tight = &model.networks["tight"];
        let view = model.switch_view(1, Default::default());
        assert!(view.networks.is_empty(), "no members yet");
        assert_eq!(
            l2sm_pipeline::limits::Limits::from(tight.limits()),
            l2sm_pipeline::limits::Limits {
                mac_limit: 4,
                flood_pps: 10,
                flood_burst: 1000
            }
        );
    }
}
