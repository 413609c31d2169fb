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
        limits: n.limits(),
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
                let created = m.create_network(&req.name, None)?;
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
                let created = m.create_network_with_ipam(&req.name, ipam)?;
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
    let model = state.shared.model();
    let net = model.networks.get(&id).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("network {id:?} does not exist"),
        )
    })?;
    Ok(Json(network_view(&id, net)).into_response())
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
