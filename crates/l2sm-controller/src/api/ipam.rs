//! Addresses of a network's owners: allocate, release, and collect those of vanished owners.

use super::{error, json_body, not_found, update_error, ApiResult, AppState, Body};
use crate::model::ModelError;
use crate::UpdateError;
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

/// Frees the allocations of owners with the given prefix that are not listed valid. A
/// prefix that would select every owner (empty or blank) is refused (400): an empty
/// selector must never mean "everything".
pub(super) async fn gc(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let req: v1::GcRequest = json_body(&body)?;
    let valid: std::collections::BTreeSet<String> = req.valid_owners.into_iter().collect();
    let released = state
        .shared
        .update(|m| m.gc(&req.owner_prefix, &valid))
        .map_err(|e| match e {
            UpdateError::Model(m @ ModelError::UnboundedGc) => {
                error(StatusCode::BAD_REQUEST, m.to_string())
            }
            other => update_error(other),
        })?;
    Ok(Json(v1::Released { released }).into_response())
}

#[cfg(test)]
mod tests {
    use super::super::testing::TestApi;
    use serde_json::{json, Value};

    async fn allocation(api: &TestApi, net: &str, owner: &str, ips: &str) -> (u16, Value) {
        let body = format!(r#"{{"owner":"{owner}","ips":{ips}}}"#);
        let path = format!("/api/v1/networks/{net}/allocations");
        let (code, text) = api.req("POST", &path, Some(&body)).await;
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn ipam_validates_settings_and_static_requests() {
        let api = TestApi::new();
        let nets = "/api/v1/networks";
        let create = r#"{"name":"web","cidrs":["10.1.0.0/24","fd00:1::/64"],"podRanges":["10.1.0.128/25"],"exclude":["10.1.0.130"]}"#;
        api.expect_all(&[
            ("POST", nets, Some(create), 201, "created"),
            ("POST", nets, Some(create), 200, "same settings: no-op"),
            (
                "POST",
                nets,
                Some(r#"{"name":"web","cidrs":["10.2.0.0/24"]}"#),
                409,
                "other settings",
            ),
            (
                "POST",
                nets,
                Some(r#"{"name":"x","cidrs":["10.0.0.0/24","10.1.0.0/24"]}"#),
                400,
                "two IPv4 CIDRs",
            ),
            (
                "POST",
                nets,
                Some(r#"{"name":"x","cidrs":["10.0.0.0/24"],"podRanges":["10.9.0.0/25"]}"#),
                400,
                "pod range outside",
            ),
            (
                "POST",
                nets,
                Some(r#"{"name":"x","cidrs":["10.0.0.0/33"]}"#),
                400,
                "bad prefix",
            ),
            (
                "POST",
                nets,
                Some(r#"{"name":"x","podRanges":["10.0.0.0/25"]}"#),
                400,
                "pod range without CIDR",
            ),
        ])
        .await;
        let (code, v) = allocation(&api, "web", "pod-a/net1", "[]").await;
        assert_eq!(code, 200);
        assert_eq!(
            v["ips"],
            json!(["10.1.0.129/24", "fd00:1::1/64"]),
            "pod range first, both families"
        );
        let (_, again) = allocation(&api, "web", "pod-a/net1", "[]").await;
        assert_eq!(again, v, "same owner, same addresses");
        let (_, v) = allocation(&api, "web", "pod-b/net1", "[]").await;
        assert_eq!(
            v["ips"][0], "10.1.0.131/24",
            "the excluded address is skipped"
        );
        for (ips, needle) in [
            (r#"["10.9.0.5/24"]"#, "outside"),
            (r#"["10.1.0.0/24"]"#, "reserved"),
            (r#"["10.1.0.255/24"]"#, "reserved"),
            (r#"["10.1.0.130/24"]"#, "reserved"),
            (r#"["10.1.0.129/24"]"#, "already allocated to pod-a/net1"),
        ] {
            let (code, v) = allocation(&api, "web", "pod-c/net1", ips).await;
            assert_eq!(code, 409, "{ips}");
            assert!(
                v["message"].as_str().unwrap_or("").contains(needle),
                "{ips}: {v}"
            );
        }
        assert_eq!(allocation(&api, "nope", "x", "[]").await.0, 404);
        // L2 only: nothing invented, static addresses pass through.
        let l2 = r#"{"networkId":"l2"}"#;
        api.expect_all(&[("POST", "/onos/vnets/api", Some(l2), 204, "created")])
            .await;
        assert_eq!(allocation(&api, "l2", "x", "[]").await.1["ips"], json!([]));
        assert_eq!(
            allocation(&api, "l2", "x", r#"["192.168.7.1/24"]"#).await.1["ips"],
            json!(["192.168.7.1/24"])
        );
        // Release (idempotent) and GC.
        for (want, why) in [
            (r#"{"released":2}"#, "freed"),
            (r#"{"released":0}"#, "idempotent"),
        ] {
            let body = r#"{"owner":"pod-a/net1"}"#;
            let (_, text) = api
                .req("POST", "/api/v1/networks/web/release", Some(body))
                .await;
            assert_eq!(text, want, "{why}");
        }
        allocation(&api, "web", "cni/c1/net1", "[]").await;
        allocation(&api, "web", "cni/c2/net1", "[]").await;
        let gc = r#"{"ownerPrefix":"cni/","validOwners":["cni/c1/net1"]}"#;
        assert_eq!(
            api.req("POST", "/api/v1/ipam/gc", Some(gc)).await.1,
            r#"{"released":2}"#
        );
        let net = api.req("GET", "/api/v1/networks/web", None).await.1;
        assert!(
            net.contains("cni/c1/net1")
                && !net.contains("cni/c2/net1")
                && net.contains("pod-b/net1"),
            "{net}"
        );
    }
}
