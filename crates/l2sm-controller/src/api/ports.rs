//! Switch ports: the ports of connected switches, network memberships with their owners and
//! addresses, and the per-port operations the agent and the operator use (record the owner,
//! wait until programmed, move to another network).

use super::switches::parse_dpid;
use super::{error, json_body, not_found, update_error, ApiError, ApiResult, AppState, Body};
use crate::model::{ModelError, PortOwner};
use crate::UpdateError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::Json;
use l2sm_api::v1::{self, AttachmentView, PortView};
use l2sm_pipeline::ids::PortId;
use std::collections::BTreeMap;

pub(super) async fn list_ports(State(state): State<AppState>) -> Json<Vec<PortView>> {
    let model = state.shared.model();
    let mut member: BTreeMap<PortId, &str> = BTreeMap::new();
    let mut mirror: BTreeMap<PortId, &str> = BTreeMap::new();
    for (name, n) in &model.networks {
        for ep in &n.endpoints {
            member.insert(*ep, name);
        }
        if let Some(m) = n.mirror_port {
            mirror.insert(m, name);
        }
    }
    let mut out = Vec::new();
    for sw in state.shared.switch_list() {
        let Some(dpid) = parse_dpid(&sw.id) else {
            continue;
        };
        for p in &sw.ports {
            let id = PortId {
                dpid,
                port: p.number,
            };
            let owner = model.port_owners.get(&id);
            out.push(PortView {
                pod: owner.and_then(|o| o.pod.clone()),
                attachment: owner.map(|o| o.attachment.clone()),
                interface: owner.map(|o| o.interface.clone()),
                id: id.to_string(),
                switch: sw.id.clone(),
                port: p.number,
                name: p.name.clone(),
                kind: p.kind.clone(),
                up: p.live,
                network: member.get(&id).map(|s| s.to_string()),
                mirror: mirror.contains_key(&id),
                mirror_of: mirror.get(&id).map(|s| s.to_string()),
            });
        }
    }
    Json(out)
}

pub(super) async fn list_attachments(State(state): State<AppState>) -> Json<Vec<AttachmentView>> {
    let model = state.shared.model();
    let switches: BTreeMap<u64, _> = state
        .shared
        .switch_list()
        .into_iter()
        .filter_map(|s| Some((parse_dpid(&s.id)?, s)))
        .collect();
    let mut out = Vec::new();
    for (name, n) in &model.networks {
        let owners: BTreeMap<PortId, &String> = n
            .ipam
            .iter()
            .flat_map(|i| i.ports.iter().map(|(o, p)| (*p, o)))
            .collect();
        for ep in &n.endpoints {
            let sw = switches.get(&ep.dpid);
            let reported = model.port_owners.get(ep);
            let owner = owners.get(ep).map(|o| o.to_string());
            let ips = match (&n.ipam, &owner) {
                (Some(i), Some(o)) => i.held_by(o),
                _ => Vec::new(),
            };
            out.push(AttachmentView {
                network: name.clone(),
                port: ep.to_string(),
                vni: n.vni,
                vlan: n.vlan,
                connected: sw.is_some(),
                name: sw.and_then(|s| {
                    s.ports
                        .iter()
                        .find(|p| p.number == ep.port)
                        .map(|p| p.name.clone())
                }),
                owner,
                ips,
                pod: reported.and_then(|o| o.pod.clone()),
                attachment: reported.map(|o| o.attachment.clone()),
                interface: reported.map(|o| o.interface.clone()),
            });
        }
    }
    Json(out)
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
    let dpid = parse_dpid(dpid).ok_or_else(bad)?;
    let port: u32 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok(PortId { dpid, port })
}

/// Longest pod (`namespace/name`), attachment id or interface name accepted.
const MAX_OWNER_FIELD: usize = 512;

pub(super) async fn set_port_owner(
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
    let owner = PortOwner {
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

pub(super) async fn clear_port_owner(
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
pub(super) async fn wait_programmed(
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

/// How long a move waits for the port's switch to confirm it (barrier reply) before it is
/// reported as pending (202).
pub(crate) const MOVE_CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Moves a member port to another network. Answers 200 once the port's switch has confirmed
/// (barrier reply after its batch) flows that make the port a member of `to` and no longer
/// of `from`, as an attach waits with `wait`; 202 (same body) when the move is recorded but
/// the switch has not confirmed it: not connected, or no barrier reply within
/// [`MOVE_CONFIRM_TIMEOUT`]. Repeating the request waits again.
pub(super) async fn move_port(
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
            UpdateError::Model(m @ ModelError::PortNotMember(_)) => {
                error(StatusCode::CONFLICT, m.to_string())
            }
            other => not_found(other),
        })?;
    if moved {
        tracing::info!(%port, from = %req.from, to = %req.to, "port moved");
    }
    let confirmed = state.shared.is_connected(port.dpid)
        && wait_moved(&state.shared, port, &req.from, &req.to).await;
    let status = if confirmed {
        StatusCode::OK
    } else {
        tracing::warn!(%port, to = %req.to, "port move recorded; its switch has not confirmed it yet");
        StatusCode::ACCEPTED
    };
    let body = v1::Moved {
        moved,
        network: req.to,
    };
    Ok((status, Json(body)).into_response())
}

/// Waits until the port's switch has confirmed a view where `port` is a member of `to` and
/// not of `from`; false after [`MOVE_CONFIRM_TIMEOUT`] (or when a network vanished).
async fn wait_moved(shared: &crate::Shared, port: PortId, from: &str, to: &str) -> bool {
    let model = shared.model();
    let vni = |n: &str| model.networks.get(n).map(|n| n.vni);
    let Some(to_vni) = vni(to) else { return false };
    let from_vni = vni(from);
    let mut rx = shared.applied.subscribe();
    let done = move |m: &BTreeMap<u64, std::sync::Arc<l2sm_pipeline::SwitchView>>| {
        m.get(&port.dpid).is_some_and(|v| {
            let member = |vni: u32| {
                v.networks
                    .get(&vni)
                    .is_some_and(|n| n.members.contains(&port.port))
            };
            member(to_vni) && !from_vni.is_some_and(member)
        })
    };
    tokio::time::timeout(MOVE_CONFIRM_TIMEOUT, async move {
        loop {
            if done(&rx.borrow_and_update()) {
                return true;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    })
    .await
    .unwrap_or(false)
}
