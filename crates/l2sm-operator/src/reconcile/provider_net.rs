//! The provider path of an L2Network with `spec.provider` (an inter-cluster network; issue
//! #17, docs/operator.md "Provider networks"). After the in-cluster network exists:
//!
//! 1. the NetworkEdgeDevice of this cluster for the provider (`spec.provider.name`, any
//!    namespace, first by namespace and name) and its node and address (`nodeConfig`, or
//!    upstream's default) are found — local checks first, so a bad spec changes nothing;
//! 2. at the provider (each `domain` in turn, the one used last time first): the network is
//!    read, and created when absent (upstream's contract: the first cluster creates it, the
//!    others find it);
//! 3. `ConnectNetwork(network, cluster bridge of the edge's node)` on the edge
//!    (`nodeConfig.ipAddress:50051`) makes or finds the patch port pair;
//! 4. the in-cluster controller gets member `of:<cluster dpid>/<cluster_port>`, the provider
//!    member `of:<edge dpid>/<edge_port>`.
//!
//! `status.providerConnectivity`: `Available` when all of it is done; `Unavailable` when the
//! provider, the edge or the in-cluster controller cannot be reached or refuses (the
//! reconcile is retried with backoff; the `ProviderConnected` condition says why); `Unknown`
//! when the spec or the edge device keeps it from being tried (nothing is changed anywhere).
//! `status.providerAttachment` records what was made, for the deletion.
//!
//! Deletion (the L2Network's finalizer, when no same-named L2Network of another namespace
//! remains): both member ports are removed, `DisconnectNetwork` is called (skipped when the
//! edge device no longer exists), and the network is deleted at the provider only when this
//! cluster created it (`providerAttachment.created`) and no member is left there (read just
//! before; another cluster's member keeps it). Upstream undoes nothing.

use super::nedevice::{edge_dpid, effective_node_config, validate as validate_ned};
use super::{Context, Result};
use crate::crd::{
    ConnectivityStatus, L2Network, NetworkEdgeDevice, NodeConfigSpec, ProviderAttachment,
    ProviderSpec,
};
use crate::edge::{EdgeConnection, EDGE_GRPC_PORT, END_EDGE_HOP_PORT, FIRST_EDGE_HOP_PORT};
use crate::provider::{base_urls, ProviderError};
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use l2sm_pipeline::ids::{self, PortId, OVERLAY_PROVIDER};
use std::net::{IpAddr, SocketAddr};

/// Condition type of the provider path.
pub const CONDITION_PROVIDER: &str = "ProviderConnected";

/// What the provider path reached, for the status.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderOutcome {
    /// `status.providerConnectivity`.
    pub connectivity: ConnectivityStatus,
    /// The condition's status is True.
    pub ok: bool,
    /// Condition reason.
    pub reason: String,
    /// Condition message.
    pub message: String,
    /// What is made so far (None: nothing yet, keep what the status has).
    pub attachment: Option<ProviderAttachment>,
    /// A failure worth retrying with backoff.
    pub retry: bool,
}

impl ProviderOutcome {
    fn unknown(reason: &str, message: String) -> Self {
        ProviderOutcome {
            connectivity: ConnectivityStatus::Unknown,
            ok: false,
            reason: reason.into(),
            message: format!("{message}; nothing was changed at the provider or the edge"),
            attachment: None,
            retry: false,
        }
    }

    fn unavailable(reason: &str, message: String, attachment: Option<ProviderAttachment>) -> Self {
        ProviderOutcome {
            connectivity: ConnectivityStatus::Unavailable,
            ok: false,
            reason: reason.into(),
            message: format!("{message} (retried with backoff)"),
            attachment,
            retry: true,
        }
    }
}

/// The cluster switch of `node` (the node agent's bridge).
pub fn cluster_bridge(node: &str) -> String {
    ids::switch_name(node, OVERLAY_PROVIDER)
}

/// Member id of the cluster side of the hop.
pub fn cluster_member(node: &str, port: i64) -> String {
    format!("of:{}/{port}", ids::dpid_hex(super::pod::node_dpid(node)))
}

/// Member id of the edge side of the hop at the provider.
pub fn edge_member(node: &str, provider: &str, port: i64) -> String {
    format!("of:{}/{port}", ids::dpid_hex(edge_dpid(node, provider)))
}

/// Checks `ConnectNetwork`'s answer against hop.md: the edge's node, an edge port in the pod
/// range, a cluster port in the edge-hop range.
pub fn check_connection(c: &EdgeConnection, node: &str) -> std::result::Result<(), String> {
    if c.node_name != node {
        return Err(format!(
            "the edge answered for node {:?}, the edge device is on {node:?}",
            c.node_name
        ));
    }
    if !(1..i64::from(ids::FIRST_TRUNK_PORT)).contains(&c.edge_port) {
        return Err(format!(
            "the edge answered edge port {}, not a port number it may use",
            c.edge_port
        ));
    }
    if !(i64::from(FIRST_EDGE_HOP_PORT)..i64::from(END_EDGE_HOP_PORT)).contains(&c.cluster_port) {
        return Err(format!(
            "the edge answered cluster port {}, outside the edge-hop range 0xD000-0xDFFF",
            c.cluster_port
        ));
    }
    Ok(())
}

/// The edge device serving `provider` in this cluster: the NetworkEdgeDevices of any namespace
/// with that `spec.provider.name`, not being deleted, first by namespace and name.
pub fn pick_edge<'a>(
    neds: &'a [NetworkEdgeDevice],
    provider: &str,
) -> Option<&'a NetworkEdgeDevice> {
    let mut found: Vec<&NetworkEdgeDevice> = neds
        .iter()
        .filter(|n| n.spec.provider.name == provider && n.metadata.deletion_timestamp.is_none())
        .collect();
    found.sort_by_key(|n| (n.namespace().unwrap_or_default(), n.name_any()));
    found.first().copied()
}

/// The edge's gRPC address from its `nodeConfig`.
pub fn edge_address(nc: &NodeConfigSpec) -> std::result::Result<SocketAddr, String> {
    let ip: IpAddr = nc.ip_address.trim().parse().map_err(|_| {
        format!(
            "nodeConfig.ipAddress {:?} is not an IP address",
            nc.ip_address
        )
    })?;
    Ok(SocketAddr::new(ip, EDGE_GRPC_PORT))
}

/// `base_urls`, the one in `first` (used last time) first.
fn ordered_bases(
    p: &ProviderSpec,
    first: Option<&str>,
) -> std::result::Result<Vec<String>, String> {
    let mut bases = base_urls(p)?;
    if let Some(f) = first {
        if let Some(i) = bases.iter().position(|b| b == f) {
            let b = bases.remove(i);
            bases.insert(0, b);
        }
    }
    Ok(bases)
}

/// Finds this cluster's edge device for the network's provider, with its node and address.
async fn find_edge(
    ctx: &Context,
    p: &ProviderSpec,
) -> Result<std::result::Result<(NetworkEdgeDevice, NodeConfigSpec, SocketAddr), ProviderOutcome>> {
    let all: Api<NetworkEdgeDevice> = Api::all(ctx.kube.clone());
    let neds = all.list(&ListParams::default()).await?.items;
    let Some(ned) = pick_edge(&neds, &p.name).cloned() else {
        return Ok(Err(ProviderOutcome::unknown(
            "NoEdgeDevice",
            format!(
                "no NetworkEdgeDevice with spec.provider.name {:?} in this cluster: create one \
                 (the network stays cluster-local until then)",
                p.name
            ),
        )));
    };
    let id = format!("{}/{}", ned.namespace().unwrap_or_default(), ned.name_any());
    let nodes = if ned.spec.node_config.is_none() {
        super::nodes(ctx).await?
    } else {
        Vec::new()
    };
    let checked = effective_node_config(&ned.spec, &nodes).and_then(|nc| {
        validate_ned(&ned.spec, &nc)?;
        let addr = edge_address(&nc)?;
        Ok((nc, addr))
    });
    Ok(match checked {
        Ok((nc, addr)) => Ok((ned, nc, addr)),
        Err(m) => Err(ProviderOutcome::unknown(
            "EdgeDeviceInvalid",
            format!("NetworkEdgeDevice {id}: {m}"),
        )),
    })
}

/// Runs the provider path for `net` (whose in-cluster network exists). Err: a Kubernetes
/// call failed; everything else is in the outcome.
pub async fn attach(net: &L2Network, p: &ProviderSpec, ctx: &Context) -> Result<ProviderOutcome> {
    let name = net.name_any();
    let old = net
        .status
        .as_ref()
        .and_then(|s| s.provider_attachment.clone());
    if p.name.trim().is_empty() {
        return Ok(ProviderOutcome::unknown(
            "InvalidProvider",
            "spec.provider.name is empty".into(),
        ));
    }
    let bases = match ordered_bases(p, old.as_ref().map(|a| a.provider_url.as_str())) {
        Ok(b) => b,
        Err(m) => return Ok(ProviderOutcome::unknown("InvalidProvider", m)),
    };
    let (ned, nc, addr) = match find_edge(ctx, p).await? {
        Ok(found) => found,
        Err(outcome) => return Ok(outcome),
    };
    let ned_id = format!("{}/{}", ned.namespace().unwrap_or_default(), ned.name_any());

    // The network at the provider: each domain in turn.
    let mut failures: Vec<ProviderError> = Vec::new();
    let mut found = None;
    for base in &bases {
        let step = async {
            match ctx.provider.members(base, &name).await? {
                Some(_) => Ok(false),
                None => ctx.provider.create(base, &name).await.map(|()| true),
            }
        };
        match step.await {
            Ok(created_now) => {
                found = Some((base.clone(), created_now));
                break;
            }
            Err(e) => {
                tracing::info!(network = %name, provider = %base, "provider not usable: {e}");
                failures.push(e);
            }
        }
    }
    let Some((base, created_now)) = found else {
        let reason = failures
            .last()
            .map(ProviderError::reason)
            .unwrap_or("ProviderUnreachable");
        let all = failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Ok(ProviderOutcome::unavailable(
            reason,
            format!("no provider address of {:?} answered: {all}", p.name),
            None,
        ));
    };
    if created_now {
        tracing::info!(network = %name, provider = %base, "network created at the provider");
    }
    // Created by this cluster: now, or on an earlier pass at the same provider.
    let created = created_now
        || old
            .as_ref()
            .is_some_and(|a| a.created && a.provider_url == base);
    let mut attachment = ProviderAttachment {
        provider_url: base.clone(),
        created,
        edge_device: Some(ned_id.clone()),
        node: Some(nc.node_name.clone()),
        edge_address: Some(addr.to_string()),
        edge_port: None,
        cluster_port: None,
    };
    if let Some(o) = &old {
        // Keep the ports recorded while the edge cannot be asked again.
        if o.node == attachment.node {
            attachment.edge_port = o.edge_port.clone();
            attachment.cluster_port = o.cluster_port.clone();
        }
    }

    let bridge = cluster_bridge(&nc.node_name);
    let conn = match ctx.edge.connect_network(addr, &name, &bridge).await {
        Ok(c) => c,
        Err(e) => {
            return Ok(ProviderOutcome::unavailable(
                e.reason(),
                format!("ConnectNetwork on edge {ned_id}: {e}"),
                Some(attachment),
            ))
        }
    };
    if let Err(m) = check_connection(&conn, &nc.node_name) {
        return Ok(ProviderOutcome::unavailable(
            "EdgeAnswerInvalid",
            format!("ConnectNetwork on edge {ned_id}: {m}"),
            Some(attachment),
        ));
    }
    let cluster_port = cluster_member(&nc.node_name, conn.cluster_port);
    let edge_port = edge_member(&nc.node_name, &p.name, conn.edge_port);
    attachment.cluster_port = Some(cluster_port.clone());
    attachment.edge_port = Some(edge_port.clone());

    if let Err(e) = ctx.controller.add_port(&name, &cluster_port).await {
        return Ok(ProviderOutcome::unavailable(
            e.reason(),
            format!("in-cluster controller, member {cluster_port}: {e}"),
            Some(attachment),
        ));
    }
    if let Err(e) = ctx.provider.add_port(&base, &name, &edge_port).await {
        return Ok(ProviderOutcome::unavailable(
            e.reason(),
            format!("provider member {edge_port}: {e}"),
            Some(attachment),
        ));
    }
    Ok(ProviderOutcome {
        connectivity: ConnectivityStatus::Available,
        ok: true,
        reason: "ProviderConnected".into(),
        message: format!(
            "network {name:?} at provider {base} ({}), through edge {ned_id} on node {}: \
             member {edge_port} at the provider, {cluster_port} in the cluster",
            if created {
                "created by this cluster"
            } else {
                "found there"
            },
            nc.node_name
        ),
        attachment: Some(attachment),
        retry: false,
    })
}

/// `port` if it is a well-formed member on datapath `dpid` whose number is in `range`.
fn checked_port(port: &str, dpid: u64, range: std::ops::Range<u32>) -> Option<String> {
    let id: PortId = port.parse().ok()?;
    (id.dpid == dpid && range.contains(&id.port)).then(|| port.to_string())
}

/// Undoes what `status.providerAttachment` records (see the module documentation). Err: a
/// step failed (the message names it); the finalizer retries.
pub async fn detach(net: &L2Network, ctx: &Context) -> std::result::Result<(), String> {
    let Some(a) = net
        .status
        .as_ref()
        .and_then(|s| s.provider_attachment.clone())
    else {
        return Ok(());
    };
    let name = net.name_any();
    let provider_name = net
        .spec
        .provider
        .as_ref()
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let node = a.node.clone().unwrap_or_default();
    // Only ports of the shape this operator makes are removed (the status is not trusted to
    // name other members).
    let cluster_port = a.cluster_port.as_deref().and_then(|p| {
        checked_port(
            p,
            super::pod::node_dpid(&node),
            FIRST_EDGE_HOP_PORT..END_EDGE_HOP_PORT,
        )
    });
    let edge_port = a.edge_port.as_deref().and_then(|p| {
        checked_port(
            p,
            edge_dpid(&node, &provider_name),
            1..ids::FIRST_TRUNK_PORT,
        )
    });
    if let Some(port) = &cluster_port {
        match ctx.controller.remove_port(&name, port).await {
            Ok(()) => {}
            // The network is gone already (409/404 for an unknown network).
            Err(e) if matches!(e.status(), Some(404 | 409)) => {}
            Err(e) => return Err(format!("in-cluster controller, member {port}: {e}")),
        }
    }
    let mut bases = vec![a.provider_url.clone()];
    if let Some(p) = &net.spec.provider {
        for b in base_urls(p).unwrap_or_default() {
            if !bases.contains(&b) {
                bases.push(b);
            }
        }
    }
    // The provider that answers (the recorded one first).
    let mut used = None;
    let mut failures = Vec::new();
    for base in &bases {
        let step = async {
            if let Some(port) = &edge_port {
                match ctx.provider.remove_port(base, &name, port).await {
                    Ok(()) => {}
                    Err(ProviderError::Refused {
                        status: 404 | 409, ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
            ctx.provider.members(base, &name).await
        };
        match step.await {
            Ok(members) => {
                used = Some((base.clone(), members));
                break;
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    let Some((base, members)) = used else {
        return Err(format!("provider: {}", failures.join("; ")));
    };
    // The edge, unless its device is gone (its pod with it).
    if let Some(addr) = a
        .edge_address
        .as_deref()
        .and_then(|s| s.parse::<SocketAddr>().ok())
    {
        let all: Api<NetworkEdgeDevice> = Api::all(ctx.kube.clone());
        let neds = all
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("listing NetworkEdgeDevices: {e}"))?
            .items;
        let still_there = neds.iter().any(|n| {
            n.spec.provider.name == provider_name
                && n.spec
                    .node_config
                    .as_ref()
                    .is_none_or(|nc| nc.node_name == node)
        });
        if still_there {
            ctx.edge
                .disconnect_network(addr, &name)
                .await
                .map_err(|e| format!("DisconnectNetwork: {e}"))?;
        } else {
            tracing::info!(network = %name, edge = %addr, "edge device gone: DisconnectNetwork skipped");
        }
    }
    match members {
        Some(left) if a.created && left.is_empty() => {
            ctx.provider
                .delete(&base, &name)
                .await
                .map_err(|e| format!("deleting the network at the provider: {e}"))?;
            tracing::info!(network = %name, provider = %base, "network deleted at the provider");
        }
        Some(left) => {
            tracing::info!(network = %name, provider = %base, created = a.created, members = left.len(),
                "network kept at the provider");
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_outside_the_hop_ranges_are_refused() {
        let ok = EdgeConnection {
            edge_port: 3,
            cluster_port: 0xD003,
            node_name: "n1".into(),
        };
        assert_eq!(check_connection(&ok, "n1"), Ok(()));
        assert!(check_connection(&ok, "n2").unwrap_err().contains("node"));
        for (e, c) in [(0, 0xD001), (0xE000, 0xD001), (1, 0xCFFF), (1, 0xE000)] {
            let bad = EdgeConnection {
                edge_port: e,
                cluster_port: c,
                ..ok.clone()
            };
            assert!(check_connection(&bad, "n1").is_err(), "{e} {c}");
        }
    }

    #[test]
    fn only_ports_of_the_recorded_shape_are_removed() {
        let dpid = super::super::pod::node_dpid("n1");
        let good = cluster_member("n1", 0xD002);
        assert_eq!(
            checked_port(&good, dpid, FIRST_EDGE_HOP_PORT..END_EDGE_HOP_PORT),
            Some(good.clone())
        );
        // A pod port of the same switch, or the hop port of another node: never.
        let pod_port = cluster_member("n1", 7);
        assert_eq!(
            checked_port(&pod_port, dpid, FIRST_EDGE_HOP_PORT..END_EDGE_HOP_PORT),
            None
        );
        let other = cluster_member("n2", 0xD002);
        assert_eq!(
            checked_port(&other, dpid, FIRST_EDGE_HOP_PORT..END_EDGE_HOP_PORT),
            None
        );
        assert_eq!(checked_port("garbage", dpid, 1..2), None);
    }
}
