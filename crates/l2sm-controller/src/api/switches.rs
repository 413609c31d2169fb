//! Connected switches, live inter-switch links, and the flows and groups the controller
//! programs into one switch.

use super::{error, ApiError, ApiResult, AppState};
use super::{json_body, Body};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::Json;
use l2sm_api::v1::{LinkView, SwitchStatus};
use l2sm_ofp::{Action, Instruction};
use l2sm_pipeline::LinkKind;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Connected switches, in the contract's own view type.
pub(super) async fn list_switches(State(state): State<AppState>) -> Json<Vec<SwitchStatus>> {
    Json(state.shared.switch_list())
}

pub(super) async fn list_links(State(state): State<AppState>) -> Json<Vec<LinkView>> {
    Json(link_views(&state.shared))
}

/// Every configured link with its liveness and health, as the API reports it.
pub(crate) fn link_views(shared: &crate::Shared) -> Vec<LinkView> {
    let now = std::time::Instant::now();
    shared
        .link_report()
        .into_iter()
        .map(|r| {
            let l = r.link;
            let state = if r.live {
                "up"
            } else if !r.ports_up {
                "port down"
            } else {
                "no probes"
            };
            // A switch without a session has port 0 there: nothing to measure.
            let measured = l.a.port != 0 && l.b.port != 0;
            let health = |from, to| {
                if measured {
                    shared.health.direction(from, to, now).view()
                } else {
                    Default::default()
                }
            };
            LinkView {
                live: r.live,
                state: state.into(),
                probed: shared.probes.heard_both(l.a, l.b),
                a: format!("of:{:016x}", l.a.dpid),
                a_port: l.a.port,
                b: format!("of:{:016x}", l.b.dpid),
                b_port: l.b.port,
                kind: match l.kind {
                    l2sm_pipeline::LinkKind::Tunnel => "tunnel".into(),
                    l2sm_pipeline::LinkKind::Trunk => "trunk".into(),
                },
                id: r.id.to_string(),
                ab: health(l.a, l.b),
                ba: health(l.b, l.a),
            }
        })
        .collect()
}

/// `GET /api/v1/topology.svg`: switches, links coloured by health and labelled with latency
/// and loss, networks; drawn by the controller itself (no Graphviz).
pub(super) async fn topology_svg(State(state): State<AppState>) -> axum::response::Response {
    let links = link_views(&state.shared);
    let switches = state.shared.switch_list();
    let Json(networks) = super::networks::list_networks(State(state.clone())).await;
    let body = l2sm_api::picture::svg(&switches, &links, &networks);
    ([(axum::http::header::CONTENT_TYPE, "image/svg+xml")], body).into_response()
}

/// `of:<16 hex>`, or the 16 hex digits alone.
pub(super) fn parse_dpid(s: &str) -> Option<u64> {
    let hex = s.strip_prefix("of:").unwrap_or(s);
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The pipeline the controller programs into a connected switch: compiled from the view the
/// switch's session uses (model and topology at the current generation), which is what the
/// session converges the switch to.
fn pipeline_of(
    state: &AppState,
    dpid_text: &str,
) -> Result<(String, l2sm_pipeline::SwitchPipeline), ApiError> {
    let dpid = parse_dpid(dpid_text).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            format!("malformed datapath id {dpid_text:?} (expected of:<16 hex digits>)"),
        )
    })?;
    let id = format!("of:{dpid:016x}");
    let sw = state
        .shared
        .switch_list()
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("switch {id} is not connected"),
            )
        })?;
    let links: BTreeMap<u32, LinkKind> = sw
        .ports
        .iter()
        .filter_map(|p| match p.kind.as_str() {
            "tunnel" => Some((p.number, LinkKind::Tunnel)),
            "trunk" => Some((p.number, LinkKind::Trunk)),
            _ => None,
        })
        .collect();
    // `None`: the current plan does not know the switch yet, so nothing is programmed.
    let pipeline = state
        .shared
        .view_of(dpid, links)
        .map(|(view, _)| l2sm_pipeline::compile(&view))
        .unwrap_or_default();
    Ok((id, pipeline))
}

fn action_json(a: &Action) -> Value {
    match a {
        Action::Output { port, .. } => json!({"type": "output", "port": port}),
        Action::Group(g) => json!({"type": "group", "groupId": g}),
        Action::SetField(f) => json!({"type": "set_field", "field": format!("{f:?}")}),
        Action::PushVlan(t) => json!({"type": "push_vlan", "ethertype": t}),
        Action::PopVlan => json!({"type": "pop_vlan"}),
        Action::NxResubmit { in_port, table } => {
            json!({"type": "resubmit", "inPort": in_port, "table": table})
        }
        Action::NxLearn(l) => json!({
            "type": "learn",
            "table": l.table_id,
            "priority": l.priority,
            "idleTimeout": l.idle_timeout,
            "cookie": format!("{:#018x}", l.cookie),
            "specs": l.specs.len(),
        }),
        Action::NxLearn2(l) => json!({
            "type": "learn",
            "table": l.learn.table_id,
            "priority": l.learn.priority,
            "idleTimeout": l.learn.idle_timeout,
            "cookie": format!("{:#018x}", l.learn.cookie),
            "specs": l.learn.specs.len(),
            "limit": l.limit,
            "resultDst": l.result_dst.map(|r| format!("{:#010x}[{}]", r.header, r.ofs)),
        }),
        other => json!({"type": "other", "text": format!("{other:?}")}),
    }
}

fn instruction_json(i: &Instruction) -> Value {
    let actions = |list: &[Action]| list.iter().map(action_json).collect::<Vec<_>>();
    match i {
        Instruction::GotoTable(t) => json!({"type": "goto_table", "table": t}),
        Instruction::ApplyActions(a) => json!({"type": "apply_actions", "actions": actions(a)}),
        Instruction::WriteActions(a) => json!({"type": "write_actions", "actions": actions(a)}),
        Instruction::ClearActions => json!({"type": "clear_actions"}),
        Instruction::Meter(id) => json!({"type": "meter", "meter": id}),
        Instruction::WriteMetadata { value, mask } => json!({
            "type": "write_metadata",
            "value": format!("{value:#x}"),
            "mask": format!("{mask:#x}"),
        }),
        other => json!({"type": "other", "text": format!("{other:?}")}),
    }
}

pub(super) async fn switch_flows(
    State(state): State<AppState>,
    Path(dpid): Path<String>,
) -> ApiResult {
    let (id, pipeline) = pipeline_of(&state, &dpid)?;
    let flows: Vec<Value> = pipeline
        .flows
        .values()
        .map(|f| {
            json!({
                "table": f.table,
                "priority": f.priority,
                "cookie": format!("{:#018x}", f.cookie),
                "match": f.r#match.fields.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>(),
                "instructions": f.instructions.iter().map(instruction_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({"switch": id, "flows": flows})).into_response())
}

pub(super) async fn switch_groups(
    State(state): State<AppState>,
    Path(dpid): Path<String>,
) -> ApiResult {
    let (id, pipeline) = pipeline_of(&state, &dpid)?;
    let groups: Vec<Value> = pipeline
        .groups
        .values()
        .map(|g| {
            json!({
                "groupId": g.group_id,
                "type": "all",
                "buckets": g.buckets.iter().map(|b| b.iter().map(action_json).collect::<Vec<_>>()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({"switch": id, "groups": groups})).into_response())
}

/// Answers once every connected switch has confirmed (barrier reply, or nothing to change)
/// the state of the model and the links as it was when the request came: what `lab up` and
/// tests wait for before the first frame, and what an operator can call after a change.
pub(super) async fn settle(State(state): State<AppState>, Body(body): Body) -> ApiResult {
    let req: l2sm_api::v1::SettleRequest = json_body(&body)?;
    let generation = state.shared.generation();
    let timeout = super::wait_timeout(req.timeout_ms)?;
    let switches = state.shared.switch_list().len();
    let pending = state.shared.wait_settled(generation, timeout).await;
    if pending.is_empty() {
        return Ok(Json(l2sm_api::v1::Settled {
            settled: true,
            switches,
        })
        .into_response());
    }
    let mut names: Vec<String> = pending.iter().map(|d| format!("of:{d:016x}")).collect();
    let more = names.len().saturating_sub(10);
    names.truncate(10);
    Err(error(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "{} of {switches} switches have not confirmed the current state after {} ms: {}{}",
            pending.len(),
            timeout.as_millis(),
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    ))
}
