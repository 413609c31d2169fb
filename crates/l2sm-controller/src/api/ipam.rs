//! Addresses of a network's owners: allocate, release, and collect those of vanished owners.

use super::{error, json_body, not_found, update_error, ApiResult, AppState, Body};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::Json;
use l2sm_api::v1;
use l2sm_pipeline::ids::PortId;

pub(super) async fn allocate(
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
        .map_err(not_found)?;
    Ok(Json(v1::Allocated { ips }).into_response())
}

pub(super) async fn release(
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

pub(super) async fn gc(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let req: v1::GcRequest = json_body(&body)?;
    let valid: std::collections::BTreeSet<String> = req.valid_owners.into_iter().collect();
    let released = state
        .shared
        .update(|m| Ok(m.gc(&req.owner_prefix, &valid)))
        .map_err(update_error)?;
    Ok(Json(v1::Released { released }).into_response())
}
