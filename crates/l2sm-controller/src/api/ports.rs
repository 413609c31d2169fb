//! Switch ports: the ports of connected switches, network memberships with their owners and
//! addresses, and the per-port operations the agent and the operator use (record the owner,
//! wait until programmed, move to another network).

use super::switches::parse_dpid;
use super::{error, json_body, not_found, update_error, ApiError, ApiResult, AppState, Body};
use crate::model::{format_mac, parse_mac, ModelError, PortOwner};
use crate::UpdateError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::Json;
use l2sm_api::v1::{self, AttachmentView, PortView};
use l2sm_pipeline::ids::PortId;
use std::collections::BTreeMap;
use std::net::IpAddr;

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
            let binding = model.member_port_security(n, ep);
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
                mac: reported.and_then(|o| o.mac.clone()),
                port_security: binding.is_some(),
                binding: binding.map(|b| v1::PortBindingView {
                    mac: b.as_ref().map(|b| format_mac(b.mac)),
                    addresses: b
                        .map(|b| {
                            let v4 = b.allowed_ipv4().into_iter().map(IpAddr::V4);
                            let v6 = b.allowed_ipv6().into_iter().map(IpAddr::V6);
                            v4.chain(v6).collect()
                        })
                        .unwrap_or_default(),
                }),
            });
        }
    }
    Json(out)
}

/// `{dpid}` and `{port}` of the per-port routes as a port id.
pub(super) fn path_port(dpid: &str, port: &str) -> Result<PortId, ApiError> {
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

/// Longest pod (`namespace/name`), attachment id or interface name accepted, in characters
/// (the OpenAPI `maxLength`).
const MAX_OWNER_FIELD: usize = 512;

/// Most addresses a port's owner may report.
pub(super) const MAX_OWNER_IPS: usize = 16;

/// One reported address: an IPv4 or IPv6 address, with or without a prefix length. Any
/// address is recorded; port security never admits an unspecified, multicast or broadcast
/// one as a source.
fn parse_address(text: &str) -> Result<IpAddr, ApiError> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<ipnet::IpNet>().ok().map(|n| n.addr()))
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("{text:?} is not an IPv4 or IPv6 address"),
            )
        })
}

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
        .any(|f| f.chars().count() > MAX_OWNER_FIELD || f.chars().any(char::is_control))
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "pod, attachment and interface must be short printable text",
        ));
    }
    let mac = match req.mac.as_deref() {
        None => None,
        Some(m) => match parse_mac(m) {
            Some(mac) if mac[0] & 1 == 0 => Some(format_mac(mac)),
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("mac {m:?} is not a unicast MAC (xx:xx:xx:xx:xx:xx)"),
                ))
            }
        },
    };
    if req.ips.len() > MAX_OWNER_IPS {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_OWNER_IPS} addresses per port"),
        ));
    }
    let ips = req
        .ips
        .iter()
        .map(|text| parse_address(text))
        .collect::<Result<Vec<_>, _>>()?;
    let owner = PortOwner {
        pod: req.pod.filter(|p| !p.is_empty()),
        attachment: req.attachment,
        interface: req.interface,
        mac,
        ips,
        port_security: req.port_security,
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
/// member of the network, and every other connected switch has confirmed the state of the
/// model as it was when the wait began (so the flood groups of the network's other switches
/// include the way to this port): the agent waits for this before a pod's interface is
/// reported ready, so a pod's first frames are not dropped by a switch that does not know its
/// port yet. Other switches that do not confirm in time are named in `pendingSwitches` (the
/// answer is still 200: the port itself is programmed).
pub(super) async fn wait_programmed(
    State(state): State<AppState>,
    Path((dpid, port)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult {
    let port = path_port(&dpid, &port)?;
    let req: v1::WaitRequest = json_body(&body)?;
    let model = state.shared.model();
    let (vni, secured) = model
        .networks
        .get(&req.network)
        .map(|n| (n.vni, model.member_port_security(n, &port)))
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
    let generation = state.shared.generation();
    let timeout = super::wait_timeout(req.timeout_ms)?;
    let started = tokio::time::Instant::now();
    if state
        .shared
        .wait_programmed(port, vni, secured, timeout)
        .await
    {
        let left = timeout.saturating_sub(started.elapsed());
        let pending = state.shared.wait_settled(generation, left).await;
        if !pending.is_empty() {
            tracing::warn!(%port, network = %req.network, switches = pending.len(),
                "port programmed; other switches have not confirmed the change yet");
        }
        Ok(Json(v1::Programmed {
            programmed: true,
            pending_switches: pending.iter().map(|d| format!("of:{d:016x}")).collect(),
        })
        .into_response())
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
/// of `from`, and every other connected switch the resulting state, as an attach waits with
/// `wait`; 202 (same body) when the move is recorded but not confirmed everywhere: not
/// connected, or no barrier reply within [`MOVE_CONFIRM_TIMEOUT`]. Repeating the request
/// waits again.
/// Makes a pod port a network's mirror (an IDS pod's port; its node's agent may ask), unless
/// the network is mirrored to another port: 409 then, nothing taken away.
pub(super) async fn claim_mirror_port(
    State(state): State<AppState>,
    Path((dpid, port)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult {
    let port = path_port(&dpid, &port)?;
    let req: v1::MirrorRequest = json_body(&body)?;
    let changed = state
        .shared
        .update(|m| m.claim_mirror_port(&req.network, port))
        .map_err(not_found)?;
    if changed {
        tracing::info!(%port, network = %req.network, "port mirrors the network");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Stops a port mirroring whichever network it mirrors; 204 also when it mirrored none.
pub(super) async fn release_mirror_port(
    State(state): State<AppState>,
    Path((dpid, port)): Path<(String, String)>,
) -> ApiResult {
    let port = path_port(&dpid, &port)?;
    let released = state
        .shared
        .update(|m| Ok::<_, ModelError>(m.release_mirror_port(port)))
        .map_err(not_found)?;
    if let Some(network) = released {
        tracing::info!(%port, %network, "port no longer mirrors the network");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

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
    let generation = state.shared.generation();
    let started = tokio::time::Instant::now();
    let confirmed = state.shared.is_connected(port.dpid)
        && wait_moved(&state.shared, port, &req.from, &req.to).await
        && state
            .shared
            .wait_settled(
                generation,
                MOVE_CONFIRM_TIMEOUT.saturating_sub(started.elapsed()),
            )
            .await
            .is_empty();
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
    let done = move |m: &BTreeMap<u64, crate::AppliedView>| {
        m.get(&port.dpid).map(|a| &a.view).is_some_and(|v| {
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

#[cfg(test)]
mod tests {
    use super::super::testing::TestApi;
    use l2sm_api::v1::{AttachmentView, NetworkView};
    use l2sm_pipeline::ids::PortId;
    use l2sm_pipeline::PortBinding;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    const DPID: u64 = 0xab;
    const OWNER: &str = "/api/v1/switches/of:00000000000000ab/ports/7/owner";
    const PORT: PortId = PortId {
        dpid: DPID,
        port: 7,
    };

    async fn join(api: &TestApi, network: &str) {
        let body =
            format!(r#"{{"networkId":"{network}","networkEndpoints":["of:00000000000000ab/7"]}}"#);
        let (code, text) = api.req("POST", "/onos/vnets/api/port", Some(&body)).await;
        assert_eq!(code, 204, "{text}");
    }

    fn connect(api: &TestApi, dpid: u64) {
        api.shared.switches().insert(
            dpid,
            crate::ConnectedSwitch {
                status: Default::default(),
                session: dpid,
                probing_since: None,
            },
        );
    }

    /// An attach's wait and `settle` answer only once every connected switch confirmed the
    /// model as it was when they began; a switch that confirmed an older generation (or
    /// nothing) is waited for and named, a disconnected one is not.
    #[tokio::test]
    async fn waits_cover_every_connected_switch_not_only_the_ports_own() {
        const OTHER: u64 = 0xcd;
        let api = TestApi::new();
        api.req("POST", "/api/v1/networks", Some(r#"{"name":"blue"}"#))
            .await;
        join(&api, "blue").await;
        connect(&api, DPID);
        connect(&api, OTHER);
        let now = api.shared.generation();
        let view = Arc::new(api.shared.model().switch_view(DPID, BTreeMap::new()));
        api.shared.view_applied(DPID, view, now);
        // The other switch confirmed only an older state.
        let empty = Arc::new(l2sm_pipeline::SwitchView::default());
        api.shared.view_applied(OTHER, empty.clone(), now - 1);

        let huge = r#"{"timeoutMs":9223372036854775808}"#;
        assert_eq!(api.req("POST", "/api/v1/settle", Some(huge)).await.0, 400);
        let null_limits = r#"{"name":"green","limits":null}"#;
        assert_eq!(
            api.req("POST", "/api/v1/networks", Some(null_limits))
                .await
                .0,
            400
        );
        let settle = r#"{"timeoutMs":50}"#;
        let (code, text) = api.req("POST", "/api/v1/settle", Some(settle)).await;
        assert_eq!(code, 504, "{text}");
        assert!(text.contains("of:00000000000000cd"), "{text}");
        let wait = "/api/v1/switches/of:00000000000000ab/ports/7/wait";
        let (code, text) = api
            .req("POST", wait, Some(r#"{"network":"blue","timeoutMs":50}"#))
            .await;
        assert_eq!(code, 200, "the port itself is programmed: {text}");
        let reply: l2sm_api::v1::Programmed = serde_json::from_str(&text).unwrap();
        assert_eq!(
            reply.pending_switches,
            vec!["of:00000000000000cd".to_string()]
        );

        // Confirming the current generation (even with an unchanged view) settles it.
        api.shared.view_applied(OTHER, empty, now);
        let (code, text) = api.req("POST", "/api/v1/settle", Some(settle)).await;
        assert_eq!(code, 200, "{text}");
        let (code, text) = api
            .req("POST", wait, Some(r#"{"network":"blue","timeoutMs":50}"#))
            .await;
        assert_eq!(code, 200, "{text}");
        assert!(serde_json::from_str::<l2sm_api::v1::Programmed>(&text)
            .unwrap()
            .pending_switches
            .is_empty());

        // A later change is not settled by confirmations of earlier generations...
        api.req("POST", "/api/v1/networks", Some(r#"{"name":"red"}"#))
            .await;
        assert_eq!(api.req("POST", "/api/v1/settle", Some(settle)).await.0, 504);
        // ...and a switch that disconnects is not waited for.
        api.shared.switches().remove(&OTHER);
        api.shared.switch_gone(OTHER);
        let later = api.shared.generation();
        let view = Arc::new(api.shared.model().switch_view(DPID, BTreeMap::new()));
        api.shared.view_applied(DPID, view, later);
        assert_eq!(api.req("POST", "/api/v1/settle", Some(settle)).await.0, 200);
    }

    async fn attachment(api: &TestApi) -> AttachmentView {
        let (code, text) = api.req("GET", "/api/v1/attachments", None).await;
        assert_eq!(code, 200, "{text}");
        let all: Vec<AttachmentView> = serde_json::from_str(&text).unwrap();
        all.into_iter()
            .find(|a| a.port == PORT.to_string())
            .expect("the port's attachment")
    }

    /// What the compiler is given for the port on its switch.
    fn compiled(api: &TestApi) -> Option<Option<PortBinding>> {
        let view = api.shared.model().switch_view(DPID, BTreeMap::new());
        let net = view.networks.values().next().expect("the port's network");
        assert!(net.members.contains(&7));
        net.secured.get(&7).cloned()
    }

    #[tokio::test]
    async fn port_security_is_set_per_network_and_a_conflicting_create_changes_nothing() {
        let api = TestApi::new();
        let body = r#"{"name":"sec","portSecurity":true}"#;
        let (code, text) = api.req("POST", "/api/v1/networks", Some(body)).await;
        assert_eq!(code, 201, "{text}");
        let view: NetworkView = serde_json::from_str(&text).unwrap();
        assert!(view.port_security);
        assert_eq!(api.req("POST", "/api/v1/networks", Some(body)).await.0, 200);
        let before = api.shared.model();
        let (code, text) = api
            .req("POST", "/api/v1/networks", Some(r#"{"name":"sec"}"#))
            .await;
        assert_eq!(code, 409, "{text}");
        assert!(text.contains("port security"), "{text}");
        assert_eq!(api.shared.model(), before);
        // With IPAM too; and a plain network stays plain.
        let ipam = r#"{"name":"sec4","cidrs":["10.9.0.0/24"],"portSecurity":true}"#;
        let (code, text) = api.req("POST", "/api/v1/networks", Some(ipam)).await;
        assert_eq!(code, 201, "{text}");
        assert!(text.contains(r#""portSecurity":true"#), "{text}");
        let (_, text) = api
            .req("POST", "/api/v1/networks", Some(r#"{"name":"plain"}"#))
            .await;
        assert!(text.contains(r#""portSecurity":false"#), "{text}");
        // Upstream's create of an existing secured network is a no-op, as for any network.
        let (code, _) = api
            .req("POST", "/onos/vnets/api", Some(r#"{"networkId":"sec"}"#))
            .await;
        assert_eq!(code, 204);
        assert!(api.shared.model().networks["sec"].port_security);
    }

    #[tokio::test]
    async fn a_secured_port_forwards_nothing_until_its_mac_is_reported() {
        let api = TestApi::new();
        api.req(
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"sec","portSecurity":true}"#),
        )
        .await;
        join(&api, "sec").await;
        // Upstream-style add-port: no MAC known, the port is secured and admits nothing.
        assert_eq!(compiled(&api), Some(None));
        let att = attachment(&api).await;
        assert!(att.port_security);
        let binding = att.binding.expect("a binding");
        assert_eq!((binding.mac, binding.addresses.len()), (None, 0));
        // An owner without a MAC changes nothing of that.
        let (code, _) = api.req("PUT", OWNER, Some(r#"{"attachment":"a"}"#)).await;
        assert_eq!(code, 204);
        assert_eq!(compiled(&api), Some(None));
        // The agent reports MAC and addresses: they are what the port may send.
        let body =
            r#"{"attachment":"a","mac":"02:AA:00:00:00:01","ips":["10.0.0.5/24","fd00::5"]}"#;
        let (code, text) = api.req("PUT", OWNER, Some(body)).await;
        assert_eq!(code, 204, "{text}");
        let want = PortBinding {
            mac: [2, 0xaa, 0, 0, 0, 1],
            ipv4: ["10.0.0.5".parse().unwrap()].into(),
            ipv6: ["fd00::5".parse().unwrap()].into(),
        };
        assert_eq!(compiled(&api), Some(Some(want)));
        let att = attachment(&api).await;
        assert_eq!(att.mac.as_deref(), Some("02:aa:00:00:00:01"));
        let shown: Vec<String> = att
            .binding
            .expect("a binding")
            .addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.5", "fd00::5", "fe80::aa:ff:fe00:1"]);
        // The port's own override turns it off, and on again.
        let off = r#"{"attachment":"a","mac":"02:aa:00:00:00:01","portSecurity":false}"#;
        assert_eq!(api.req("PUT", OWNER, Some(off)).await.0, 204);
        assert_eq!(compiled(&api), None);
        let att = attachment(&api).await;
        assert!(!att.port_security && att.binding.is_none());
    }

    #[tokio::test]
    async fn a_port_may_turn_it_on_in_a_plain_network_and_ipam_addresses_count() {
        let api = TestApi::new();
        let net = r#"{"name":"v4","cidrs":["10.7.0.0/24"]}"#;
        assert_eq!(api.req("POST", "/api/v1/networks", Some(net)).await.0, 201);
        join(&api, "v4").await;
        let alloc =
            r#"{"owner":"cni/x/net1","ips":["10.7.0.9/24"],"port":"of:00000000000000ab/7"}"#;
        let (code, text) = api
            .req("POST", "/api/v1/networks/v4/allocations", Some(alloc))
            .await;
        assert_eq!(code, 200, "{text}");
        assert_eq!(compiled(&api), None, "off by default");
        let on = r#"{"attachment":"cni/x/net1","mac":"02:00:00:00:00:09","portSecurity":true}"#;
        assert_eq!(api.req("PUT", OWNER, Some(on)).await.0, 204);
        let b = compiled(&api).flatten().expect("a binding");
        assert_eq!(b.ipv4, ["10.7.0.9".parse().unwrap()].into());
    }

    #[tokio::test]
    async fn bad_macs_and_addresses_are_refused_and_change_nothing() {
        let api = TestApi::new();
        api.req(
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"sec","portSecurity":true}"#),
        )
        .await;
        join(&api, "sec").await;
        let many: Vec<String> = (1..=17).map(|i| format!("\"10.0.0.{i}\"")).collect();
        let many = format!(r#"{{"attachment":"a","ips":[{}]}}"#, many.join(","));
        for bad in [
            r#"{"attachment":"a","mac":"02:00:00:00:00"}"#,
            r#"{"attachment":"a","mac":"02:00:00:00:00:01:02"}"#,
            r#"{"attachment":"a","mac":"03:00:00:00:00:01"}"#,
            r#"{"attachment":"a","mac":"zz:00:00:00:00:01"}"#,
            r#"{"attachment":"a","mac":"2:0:0:0:0:1"}"#,
            r#"{"attachment":"a","mac":7}"#,
            r#"{"attachment":"a","ips":["10.0.0.300"]}"#,
            r#"{"attachment":"a","ips":["fd00::/129"]}"#,
            r#"{"attachment":"a","ips":["host"]}"#,
            r#"{"attachment":"a","portSecurity":"yes"}"#,
            &many,
        ] {
            let (code, text) = api.req("PUT", OWNER, Some(bad)).await;
            assert_eq!(code, 400, "{bad}: {text}");
            assert!(api.shared.model().port_owners.is_empty(), "{bad}");
        }
        let bad_net = r#"{"name":"x","portSecurity":1}"#;
        assert_eq!(
            api.req("POST", "/api/v1/networks", Some(bad_net)).await.0,
            400
        );
        assert!(!api.shared.model().networks.contains_key("x"));
    }

    /// The agent's wait answers only once the switch holds the port with its binding: a view
    /// with the port but without the MAC it reported is not enough.
    #[tokio::test]
    async fn wait_covers_the_binding() {
        let api = TestApi::new();
        api.req(
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"sec","portSecurity":true}"#),
        )
        .await;
        join(&api, "sec").await;
        api.shared.switches().insert(
            DPID,
            crate::ConnectedSwitch {
                status: Default::default(),
                session: 1,
                probing_since: None,
            },
        );
        // The switch holds the port, MAC unknown.
        let view = api.shared.model().switch_view(DPID, BTreeMap::new());
        api.shared.view_applied(DPID, Arc::new(view), u64::MAX);
        let wait = "/api/v1/switches/of:00000000000000ab/ports/7/wait";
        let body = r#"{"network":"sec","timeoutMs":50}"#;
        assert_eq!(api.req("POST", wait, Some(body)).await.0, 200);
        let owner = r#"{"attachment":"a","mac":"02:00:00:00:00:01"}"#;
        assert_eq!(api.req("PUT", OWNER, Some(owner)).await.0, 204);
        let (code, text) = api.req("POST", wait, Some(body)).await;
        assert_eq!(code, 504, "the binding is not on the switch yet: {text}");
        let view = api.shared.model().switch_view(DPID, BTreeMap::new());
        api.shared.view_applied(DPID, Arc::new(view), u64::MAX);
        assert_eq!(api.req("POST", wait, Some(body)).await.0, 200);
    }

    #[tokio::test]
    async fn drops_are_exported_per_network_and_port() {
        let api = TestApi::new();
        api.req(
            "POST",
            "/api/v1/networks",
            Some(r#"{"name":"sec","portSecurity":true}"#),
        )
        .await;
        join(&api, "sec").await;
        let drops = &api.shared.metrics.port_security_drops;
        drops.record(DPID, &[(7, 5), (9, 3)].into());
        drops.record(DPID, &[(7, 2), (9, 4)].into());
        let (_, text) = api.req("GET", "/metrics", None).await;
        // 5 then a reset to 2: 7 in all. Port 9 is no member: not shown.
        assert!(
            text.contains(
                "l2sm_port_security_drops_total{network=\"sec\",port=\"of:00000000000000ab/7\"} 7\n"
            ),
            "{text}"
        );
        assert!(!text.contains("/9\""), "{text}");
        drops.record(DPID, &BTreeMap::new());
        assert_eq!(
            drops.get(&PORT),
            None,
            "a port no longer secured is forgotten"
        );
    }
}
