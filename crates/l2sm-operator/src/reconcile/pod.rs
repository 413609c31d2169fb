//! Pods asking for L2S-M networks: the annotation `l2sm/status` says, per requested network,
//! the interface, addresses, MAC and switch port the pod got; on deletion the pod's ports and
//! addresses are released in the controller (a safety net behind the CNI plugin's DEL, which
//! does the same when the runtime calls it).
//!
//! The switch port is not visible in Kubernetes: the CNI plugin picks the lowest free port of
//! the node's switch, and the node's agent tells the controller which pod (and interface) owns
//! it. That owner is the truth. Ports without one (attached by an agent of an earlier version)
//! fall back to a guess: the ports of the network on the pod's switch that no other pod owns or
//! has claimed in its own `l2sm/status`; when that leaves more than one candidate, the port
//! stays unknown and the reconcile is retried.

use super::{
    cleanup_abandoned, deleted_for, labelled_pods_on, object_key, tracked, Context, Error, Result,
    CLEANUP_LABEL, NETWORK_STATUS_ANNOTATION, STATUS_ANNOTATION,
};
use crate::crd::FINALIZER;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use l2sm_api::v1::{AttachmentView, NetworkView};
use l2sm_pipeline::ids::{self, PortId, OVERLAY_PROVIDER};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Annotation with the networks a pod asks for (upstream's).
pub const NETWORKS_ANNOTATION: &str = "l2sm/networks";

/// Retry delay while an attachment is not complete yet (CNI still running, port ambiguous).
const PENDING_RETRY: Duration = Duration::from_secs(5);

/// Writes of a pod's metadata tried before a conflict (409: the pod changed since it was
/// read) is left to the retry with backoff.
const WRITE_ATTEMPTS: usize = 4;

/// One attachment in `l2sm/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The network the pod's interface is on now.
    pub network: String,
    /// Interface inside the pod (`net1`, …), once Multus reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Addresses of the interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// MAC of the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Switch port, `of:<dpid>/<n>`, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// The network the port was moved from by a QuarantinePodRequest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined_from: Option<String>,
}

/// One entry of Multus's `k8s.v1.cni.cncf.io/network-status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkStatusEntry {
    /// `<namespace>/<NAD name>`.
    #[serde(default)]
    pub name: String,
    /// Interface in the pod.
    #[serde(default)]
    pub interface: Option<String>,
    /// Addresses (Multus writes them without prefix length).
    #[serde(default)]
    pub ips: Vec<String>,
    /// MAC.
    #[serde(default)]
    pub mac: Option<String>,
}

/// Names of the networks a pod asks for, in annotation order (empty when it asks for none).
pub fn requested_networks(pod: &Pod) -> Vec<String> {
    pod.annotations()
        .get(NETWORKS_ANNOTATION)
        .map(|v| {
            crate::annotations::parse_networks(v)
                .map(|list| list.into_iter().map(|n| n.name).collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// The pod's `l2sm/status` (empty when absent or unreadable).
pub fn pod_attachments(pod: &Pod) -> Vec<Attachment> {
    pod.annotations()
        .get(STATUS_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// Multus's network status of the pod (empty when absent or unreadable).
pub fn network_status(pod: &Pod) -> Vec<NetworkStatusEntry> {
    pod.annotations()
        .get(NETWORK_STATUS_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// Datapath id of the overlay switch of `node`.
pub fn node_dpid(node: &str) -> u64 {
    ids::datapath_id(&ids::switch_name(node, OVERLAY_PROVIDER))
}

/// `namespace/name` of a pod, as the CNI plugin reports it.
pub fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// The port the controller says `pod` owns on `network`: the one for `interface` when the pod
/// has several there, else the only one. Ports in `skip` are taken already.
pub fn owned_port(
    owners: &[AttachmentView],
    pod: &str,
    network: &str,
    interface: Option<&str>,
    skip: &BTreeSet<String>,
) -> Option<String> {
    let mine: Vec<&AttachmentView> = owners
        .iter()
        .filter(|m| {
            m.network == network && m.pod.as_deref() == Some(pod) && !skip.contains(&m.port)
        })
        .collect();
    interface
        .and_then(|i| mine.iter().find(|m| m.interface.as_deref() == Some(i)))
        .or(match mine.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .map(|m| m.port.clone())
}

/// What the controller knows: memberships and the owners of member ports.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// Networks with their member ports.
    pub networks: &'a [NetworkView],
    /// Memberships with port owners.
    pub owners: &'a [AttachmentView],
}

/// Computes a pod's attachments from what it asked for, what Multus reported, the
/// controller's memberships and port owners, and the ports other pods on the node claim.
/// `previous` is the current `l2sm/status`: known ports are kept while the controller still
/// has them (and does not say another pod owns them).
pub fn desired_attachments(
    pod: &str,
    requested: &[String],
    multus: &[NetworkStatusEntry],
    node: Option<&str>,
    known: Known<'_>,
    claimed_by_others: &BTreeSet<String>,
    previous: &[Attachment],
) -> Vec<Attachment> {
    let Known { networks, owners } = known;
    let dpid = node.map(node_dpid);
    let member_of = |port: &str| {
        networks
            .iter()
            .find(|n| n.endpoints.iter().any(|e| e == port))
            .map(|n| n.name.clone())
    };
    let mut used_nad_entries = BTreeSet::new();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(requested.len());
    for (i, wanted) in requested.iter().enumerate() {
        let prev = previous.get(i).filter(|p| {
            p.network == *wanted || p.quarantined_from.as_deref() == Some(wanted.as_str())
        });
        let network = prev
            .map(|p| p.network.clone())
            .unwrap_or_else(|| wanted.clone());
        let nad = crate::annotations::nad_name(wanted);
        let entry = multus.iter().enumerate().find(|(k, e)| {
            !used_nad_entries.contains(k) && e.name.rsplit('/').next() == Some(nad.as_str())
        });
        let mut att = Attachment {
            network: network.clone(),
            quarantined_from: prev.and_then(|p| p.quarantined_from.clone()),
            ..Default::default()
        };
        if let Some((k, e)) = entry {
            used_nad_entries.insert(k);
            att.interface = e.interface.clone();
            att.ips = e.ips.clone();
            att.mac = e.mac.clone();
        }
        // Owned by someone: the controller knows the pod of the port exactly.
        let owner_of = |port: &str| {
            owners
                .iter()
                .find(|m| m.port == port)
                .and_then(|m| m.pod.as_deref())
        };
        let exact = owned_port(owners, pod, &network, att.interface.as_deref(), &taken);
        // A port we knew stays ours while the controller has it in our network.
        let kept = prev.and_then(|p| p.port.clone()).filter(|p| {
            member_of(p).as_deref() == Some(network.as_str())
                && owner_of(p).is_none_or(|o| o == pod)
        });
        att.port = exact.or(kept).or_else(|| {
            let dpid = dpid?;
            let candidates: Vec<&String> = networks
                .iter()
                .find(|n| n.name == network)?
                .endpoints
                .iter()
                .filter(|e| {
                    e.parse::<PortId>().is_ok_and(|p| p.dpid == dpid)
                        && !claimed_by_others.contains(*e)
                        && !taken.contains(*e)
                        && owner_of(e).is_none()
                })
                .collect();
            match candidates.as_slice() {
                [only] => Some((*only).clone()),
                _ => None,
            }
        });
        if let Some(p) = &att.port {
            taken.insert(p.clone());
        }
        out.push(att);
    }
    out
}

/// Whether every attachment is complete (interface reported and port known).
pub fn complete(atts: &[Attachment]) -> bool {
    atts.iter()
        .all(|a| a.interface.is_some() && a.port.is_some())
}

/// Whether the pod carries the operator's finalizer.
pub fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == FINALIZER)
}

/// Whether the attachments hold something the controller must give back when the pod goes:
/// a switch port or an address. Only then does the pod get the finalizer.
pub fn needs_cleanup(atts: &[Attachment]) -> bool {
    atts.iter().any(|a| a.port.is_some() || !a.ips.is_empty())
}

/// The merge patch that makes `pod`'s `l2sm/status` `atts` and, when `finalize`, adds the
/// finalizer, [`CLEANUP_LABEL`] and [`POD_NAME_LABEL`]; `None` when the pod already is so. It carries the pod's
/// `resourceVersion`: a pod changed since it was read (another writer of `l2sm/status`, such
/// as the QuarantinePodRequest reconciler) is refused with 409 instead of overwritten.
pub fn metadata_patch(pod: &Pod, atts: &[Attachment], finalize: bool) -> Option<serde_json::Value> {
    let value = serde_json::to_string(atts).unwrap_or_default();
    let annotate = pod_attachments(pod) != atts;
    let add_finalizer = finalize && !has_finalizer(pod);
    let pod_name = super::l2network::label_value(&pod.name_any());
    let add_label = finalize
        && (pod.labels().get(CLEANUP_LABEL).map(String::as_str) != Some("true")
            || pod.labels().get(POD_NAME_LABEL) != Some(&pod_name));
    if !annotate && !add_finalizer && !add_label {
        return None;
    }
    let mut meta = serde_json::json!({});
    if let Some(rv) = &pod.metadata.resource_version {
        meta["resourceVersion"] = rv.clone().into();
    }
    if annotate {
        meta["annotations"] = serde_json::json!({ STATUS_ANNOTATION: value });
    }
    if add_finalizer {
        let mut list = pod.finalizers().to_vec();
        list.push(FINALIZER.to_string());
        meta["finalizers"] = list.into();
    }
    if add_label {
        meta["labels"] = serde_json::json!({ CLEANUP_LABEL: "true", POD_NAME_LABEL: pod_name });
    }
    Some(serde_json::json!({ "metadata": meta }))
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Label the operator puts on each pod holding ports (with [`CLEANUP_LABEL`]): its name (as
/// [`super::l2network::label_value`]), so that a QuarantinePodRequest can select exactly one
/// pod (the IDS alert watcher's requests do). A pod that sets it itself to another pod's name
/// only gets itself selected too; the operator corrects the value.
pub const POD_NAME_LABEL: &str = "l2sm.l2sm.k8s.local/pod-name";

/// Reconciles one pod labelled `l2sm: "true"`: its `l2sm/status`, and the finalizer once the
/// pod holds ports or addresses. A deleted pod carrying [`CLEANUP_LABEL`] is finalized by
/// [`reconcile_cleanup`] (whose watch still sees it when the `l2sm` label is gone); here only
/// those finalized by earlier versions (finalizer without the label).
pub async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action> {
    let ours = has_finalizer(&pod);
    if pod.metadata.deletion_timestamp.is_some() {
        if ours && !pod.labels().contains_key(CLEANUP_LABEL) {
            return tracked(&*pod, &ctx, finalize(&pod, &ctx)).await;
        }
        return Ok(Action::await_change());
    }
    if !ours && !pod.annotations().contains_key(NETWORKS_ANNOTATION) {
        return Ok(Action::await_change());
    }
    tracked(&*pod, &ctx, apply(&pod, &ctx)).await
}

/// Reconciles one pod carrying [`CLEANUP_LABEL`] (whatever its other labels): when it is
/// deleted, its ports and addresses are released in the controller and the finalizer removed;
/// after [`super::Settings::cleanup_timeout`] of failures, the finalizer is removed anyway with
/// a Warning Event.
pub async fn reconcile_cleanup(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action> {
    if pod.metadata.deletion_timestamp.is_none() || !has_finalizer(&pod) {
        return Ok(Action::await_change());
    }
    tracked(&*pod, &ctx, finalize(&pod, &ctx)).await
}

async fn apply(pod: &Pod, ctx: &Context) -> Result<Action> {
    let networks = ctx.controller.networks().await?;
    let owners = ctx.controller.attachments().await?;
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let key = pod_key(pod);
    let known = Known {
        networks: &networks,
        owners: &owners,
    };
    let api: Api<Pod> = Api::namespaced(ctx.kube.clone(), &pod.namespace().unwrap_or_default());
    // The other pods' claims on the node, read at most once.
    let mut claims: Option<BTreeSet<String>> = None;
    let mut current = pod.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let requested = requested_networks(&current);
        let previous = pod_attachments(&current);
        let multus = network_status(&current);
        let no_claims = BTreeSet::new();
        let exact = desired_attachments(
            &key, &requested, &multus, None, known, &no_claims, &previous,
        );
        // The other pods' claims only matter for guessing ports without an owner.
        let all_owned = exact.iter().all(|a| {
            a.port
                .as_deref()
                .is_some_and(|p| owners.iter().any(|m| m.port == p && m.pod.is_some()))
        });
        if let (Some(node), false, None) = (node.as_ref(), all_owned, claims.as_ref()) {
            let mut claimed = BTreeSet::new();
            for other in labelled_pods_on(ctx, node)
                .await?
                .iter()
                .filter(|p| p.uid() != current.uid())
            {
                claimed.extend(pod_attachments(other).into_iter().filter_map(|a| a.port));
            }
            claims = Some(claimed);
        }
        let atts = desired_attachments(
            &key,
            &requested,
            &multus,
            node.as_deref(),
            known,
            claims.as_ref().unwrap_or(&no_claims),
            &previous,
        );
        let finalize = needs_cleanup(&atts) || has_finalizer(&current);
        let Some(patch) = metadata_patch(&current, &atts, finalize) else {
            return Ok(next_action(node.as_deref(), &atts, ctx));
        };
        match api
            .patch(
                &current.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(next_action(node.as_deref(), &atts, ctx)),
            Err(e) if is_conflict(&e) && attempt < WRITE_ATTEMPTS => {
                tracing::debug!(pod = %key, "pod changed meanwhile; reading it again");
                current = api.get(&current.name_any()).await?;
                if current.metadata.deletion_timestamp.is_some() || current.uid() != pod.uid() {
                    return Ok(Action::await_change());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Incomplete attachments of a scheduled pod are waiting for the CNI plugin or for port
/// disambiguation: look again soon. An unscheduled pod changes (and is reconciled) when it is
/// bound.
fn next_action(node: Option<&str>, atts: &[Attachment], ctx: &Context) -> Action {
    if node.is_none() {
        Action::await_change()
    } else if complete(atts) {
        Action::requeue(ctx.settings.resync)
    } else {
        Action::requeue(PENDING_RETRY)
    }
}

/// Rewrites `l2sm/status` of `pod` with what `edit` makes of the attachments of the freshest
/// copy of the pod, guarded by its `resourceVersion`: on a conflict the pod is read again and
/// `edit` runs again, at most [`WRITE_ATTEMPTS`] times. `edit` returns `None` when there is
/// nothing to write.
pub(crate) async fn edit_attachments<F>(api: &Api<Pod>, pod: &Pod, mut edit: F) -> Result<()>
where
    F: FnMut(&Pod) -> Option<Vec<Attachment>>,
{
    let mut current = pod.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(atts) = edit(&current) else {
            return Ok(());
        };
        let Some(patch) = metadata_patch(&current, &atts, false) else {
            return Ok(());
        };
        match api
            .patch(
                &current.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) && attempt < WRITE_ATTEMPTS => {
                current = api.get(&current.name_any()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the pod's containers still run (its interfaces are still in use).
pub fn still_running(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
        })
}

/// A network name and a port or an address owner.
pub type NetworkAnd = (String, String);

fn grace(pod: &Pod) -> std::time::Duration {
    let secs = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    std::time::Duration::from_secs(secs.max(0) as u64)
}

/// What to undo in the controller for a deleted pod: ports still members (network, port) and
/// address owners still holding the pod's addresses (network, owner).
pub fn cleanup_plan(
    atts: &[Attachment],
    networks: &[NetworkView],
) -> (Vec<NetworkAnd>, Vec<NetworkAnd>) {
    let mut ports = Vec::new();
    let mut owners = BTreeSet::new();
    for a in atts {
        if let Some(port) = &a.port {
            if let Some(n) = networks.iter().find(|n| n.endpoints.contains(port)) {
                ports.push((n.name.clone(), port.clone()));
            }
        }
        if let Some(net) = networks.iter().find(|n| n.name == a.network) {
            if let Some(ipam) = &net.ipam {
                for ip in &a.ips {
                    let bare = ip.split('/').next().unwrap_or_default();
                    let owner = bare
                        .parse::<std::net::IpAddr>()
                        .ok()
                        .and_then(|ip| ipam.allocations.get(&ip));
                    if let Some(owner) = owner {
                        owners.insert((net.name.clone(), owner.clone()));
                    }
                }
            }
        }
    }
    (ports, owners.into_iter().collect())
}

/// How long after deletion a pod still reported running is assumed gone (its node is
/// unreachable and will never report the containers stopped).
const STALE_RUNNING: std::time::Duration = std::time::Duration::from_secs(120);

/// Finalizes a deleted pod: waits while its containers run (bounded), releases what it holds
/// in the controller and removes the finalizer; when that keeps failing for
/// [`super::Settings::cleanup_timeout`] after the deletion, removes the finalizer anyway and
/// records a Warning Event.
async fn finalize(pod: &Pod, ctx: &Context) -> Result<Action> {
    let deleted_for = deleted_for(&pod.metadata);
    let bound = ctx.settings.cleanup_timeout;
    if still_running(pod) && deleted_for < (STALE_RUNNING + grace(pod)).min(bound) {
        return Err(Error::Waiting(format!(
            "pod {} still has running containers",
            pod.name_any()
        )));
    }
    if let Err(e) = cleanup(pod, ctx).await {
        if deleted_for < bound {
            return Err(Error::Cleanup {
                error: Box::new(e),
                abandon_in: bound - deleted_for,
            });
        }
        let held = serde_json::to_string(&pod_attachments(pod)).unwrap_or_default();
        cleanup_abandoned(
            pod,
            ctx,
            &format!(
                "{e}; the ports and addresses of l2sm/status {held} may stay in the controller"
            ),
        )
        .await;
    }
    release_finalizer(pod, ctx).await?;
    Ok(Action::await_change())
}

/// Removes the finalizer, guarded by the pod's `resourceVersion` (a pod changed meanwhile is
/// read again).
async fn release_finalizer(pod: &Pod, ctx: &Context) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.kube.clone(), &pod.namespace().unwrap_or_default());
    let mut current = pod.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        if !has_finalizer(&current) {
            return Ok(());
        }
        let rest: Vec<&String> = current
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .collect();
        let mut meta = serde_json::json!({ "finalizers": rest });
        if let Some(rv) = &current.metadata.resource_version {
            meta["resourceVersion"] = rv.clone().into();
        }
        match api
            .patch(
                &current.name_any(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "metadata": meta })),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %object_key(pod), "finalizer released");
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) if is_conflict(&e) && attempt < WRITE_ATTEMPTS => {
                match api.get_opt(&current.name_any()).await? {
                    Some(p) if p.uid() == pod.uid() => current = p,
                    _ => return Ok(()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Releases the pod's ports and addresses in the controller.
async fn cleanup(pod: &Pod, ctx: &Context) -> Result<()> {
    let atts = pod_attachments(pod);
    if atts.is_empty() {
        return Ok(());
    }
    let networks = ctx.controller.networks().await?;
    let (ports, owners) = cleanup_plan(&atts, &networks);
    for (network, port) in ports {
        ctx.controller.remove_port(&network, &port).await?;
    }
    for (network, owner) in owners {
        ctx.controller.release(&network, &owner).await?;
    }
    tracing::info!(pod = %pod.name_any(), "attachments released");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use l2sm_api::v1::IpamView;
    use std::collections::BTreeMap;

    fn port(node: &str, n: u32) -> String {
        PortId {
            dpid: node_dpid(node),
            port: n,
        }
        .to_string()
    }

    fn net(name: &str, eps: Vec<String>) -> NetworkView {
        NetworkView {
            name: name.into(),
            vni: 1,
            endpoints: eps,
            ..Default::default()
        }
    }

    fn known(nets: &[NetworkView]) -> Known<'_> {
        Known {
            networks: nets,
            owners: &[],
        }
    }

    fn owned(network: &str, port: String, pod: &str, ifname: &str) -> AttachmentView {
        AttachmentView {
            network: network.into(),
            port,
            pod: Some(pod.into()),
            attachment: Some(format!("cni/c-{pod}/{ifname}")),
            interface: Some(ifname.into()),
            ..Default::default()
        }
    }

    #[test]
    fn owned_ports_are_exact_even_when_several_pods_share_a_node() {
        // Two pods of blue attached on w1 before any reconcile: the guess cannot tell them
        // apart, the owners can.
        let nets = [net("blue", vec![port("w1", 3), port("w1", 4)])];
        let owners = [
            owned("blue", port("w1", 3), "default/p2", "net1"),
            owned("blue", port("w1", 4), "default/p", "net1"),
        ];
        let k = Known {
            networks: &nets,
            owners: &owners,
        };
        let nad = crate::annotations::nad_name("blue");
        let atts = desired_attachments(
            "default/p",
            &["blue".into()],
            &[multus(&nad, "10.0.0.1")],
            Some("w1"),
            k,
            &BTreeSet::new(),
            &[],
        );
        assert_eq!(atts[0].port.as_deref(), Some(port("w1", 4).as_str()));
        // A wrong earlier guess is corrected.
        let prev = vec![Attachment {
            network: "blue".into(),
            port: Some(port("w1", 3)),
            ..Default::default()
        }];
        let atts = desired_attachments(
            "default/p",
            &["blue".into()],
            &[],
            Some("w1"),
            k,
            &BTreeSet::new(),
            &prev,
        );
        assert_eq!(atts[0].port.as_deref(), Some(port("w1", 4).as_str()));
        // Two interfaces on one network: matched by interface name.
        let owners = [
            owned("blue", port("w1", 3), "default/p", "net2"),
            owned("blue", port("w1", 4), "default/p", "net1"),
        ];
        let k = Known {
            networks: &nets,
            owners: &owners,
        };
        let mut second = multus(&nad, "10.0.0.2");
        second.interface = Some("net2".into());
        let atts = desired_attachments(
            "default/p",
            &["blue".into(), "blue".into()],
            &[multus(&nad, "10.0.0.1"), second],
            Some("w1"),
            k,
            &BTreeSet::new(),
            &[],
        );
        assert_eq!(atts[0].port.as_deref(), Some(port("w1", 4).as_str()));
        assert_eq!(atts[1].port.as_deref(), Some(port("w1", 3).as_str()));
        // A port without owner next to an owned one of another pod: the guess skips the
        // owned one (agents of earlier versions).
        let owners = [owned("blue", port("w1", 3), "default/p2", "net1")];
        let atts = desired_attachments(
            "default/p",
            &["blue".into()],
            &[],
            Some("w1"),
            Known {
                networks: &nets,
                owners: &owners,
            },
            &BTreeSet::new(),
            &[],
        );
        assert_eq!(atts[0].port.as_deref(), Some(port("w1", 4).as_str()));
    }

    fn multus(nad: &str, ip: &str) -> NetworkStatusEntry {
        NetworkStatusEntry {
            name: format!("default/{nad}"),
            interface: Some("net1".into()),
            ips: vec![ip.into()],
            mac: Some("02:00:00:00:00:01".into()),
        }
    }

    #[test]
    fn dpid_matches_upstream_examples() {
        // reference §3.3: l2sm-test-worker -> of:a30b6e801ab54336
        assert_eq!(
            format!("{:016x}", node_dpid("l2sm-test-worker")),
            "a30b6e801ab54336"
        );
    }

    #[test]
    fn unique_port_on_the_node_is_the_pods() {
        let nets = [net("blue", vec![port("w1", 3), port("w2", 1)])];
        let nad = crate::annotations::nad_name("blue");
        let atts = desired_attachments(
            "default/p",
            &["blue".into()],
            &[multus(&nad, "10.0.0.1")],
            Some("w1"),
            known(&nets),
            &BTreeSet::new(),
            &[],
        );
        assert_eq!(atts.len(), 1);
        assert_eq!(atts[0].port.as_deref(), Some(port("w1", 3).as_str()));
        assert_eq!(atts[0].interface.as_deref(), Some("net1"));
        assert_eq!(atts[0].ips, ["10.0.0.1"]);
        assert!(complete(&atts));
    }

    #[test]
    fn claimed_ports_are_excluded_and_ambiguity_leaves_port_unknown() {
        let nets = [net("blue", vec![port("w1", 3), port("w1", 4)])];
        let atts = desired_attachments(
            "default/p",
            &["blue".into()],
            &[],
            Some("w1"),
            known(&nets),
            &BTreeSet::new(),
            &[],
        );
        assert_eq!(atts[0].port, None);
        assert!(!complete(&atts));
        let claimed = BTreeSet::from([port("w1", 3)]);
        let atts = desired_attachments(
            "default/p",
            &["blue".into()],
            &[],
            Some("w1"),
            known(&nets),
            &claimed,
            &[],
        );
        assert_eq!(atts[0].port.as_deref(), Some(port("w1", 4).as_str()));
    }

    #[test]
    fn known_port_is_kept_and_dropped_when_gone() {
        let prev = vec![Attachment {
            network: "blue".into(),
            port: Some(port("w1", 3)),
            ..Default::default()
        }];
        let nets = [net("blue", vec![port("w1", 3), port("w1", 4)])];
        let atts = desired_attachments(
            "default/p",
            &["blue".into()],
            &[],
            Some("w1"),
            known(&nets),
            &BTreeSet::new(),
            &prev,
        );
        assert_eq!(atts[0].port.as_deref(), Some(port("w1", 3).as_str()));
        let nets = [net("blue", vec![])];
        let atts = desired_attachments(
            "default/p",
            &["blue".into()],
            &[],
            Some("w1"),
            known(&nets),
            &BTreeSet::new(),
            &prev,
        );
        assert_eq!(atts[0].port, None);
    }

    #[test]
    fn quarantined_attachment_follows_its_port() {
        let prev = vec![Attachment {
            network: "jail".into(),
            port: Some(port("w1", 3)),
            quarantined_from: Some("blue".into()),
            ..Default::default()
        }];
        let nets = [net("blue", vec![]), net("jail", vec![port("w1", 3)])];
        // The request may still name the old network (or the rewritten one).
        for asked in ["blue", "jail"] {
            let atts = desired_attachments(
                "default/p",
                &[asked.into()],
                &[],
                Some("w1"),
                known(&nets),
                &BTreeSet::new(),
                &prev,
            );
            assert_eq!(atts[0].network, "jail");
            assert_eq!(atts[0].quarantined_from.as_deref(), Some("blue"));
            assert_eq!(atts[0].port.as_deref(), Some(port("w1", 3).as_str()));
        }
    }

    #[test]
    fn finalizer_only_with_something_to_clean_and_writes_carry_the_resource_version() {
        let bare = vec![Attachment {
            network: "blue".into(),
            ..Default::default()
        }];
        assert!(!needs_cleanup(&bare));
        let with_port = vec![Attachment {
            network: "blue".into(),
            port: Some(port("w1", 3)),
            ..Default::default()
        }];
        let with_ip = vec![Attachment {
            network: "blue".into(),
            ips: vec!["10.0.0.1".into()],
            ..Default::default()
        }];
        assert!(needs_cleanup(&with_port) && needs_cleanup(&with_ip));

        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.resource_version = Some("42".into());
        pod.metadata.finalizers = Some(vec!["other/f".into()]);
        let patch = metadata_patch(&pod, &with_port, true).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(
            patch["metadata"]["finalizers"],
            serde_json::json!(["other/f", FINALIZER])
        );
        assert_eq!(patch["metadata"]["labels"][CLEANUP_LABEL], "true");
        let written: Vec<Attachment> = serde_json::from_str(
            patch["metadata"]["annotations"][STATUS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(written, with_port);
        // Without something to clean: only the annotation.
        let patch = metadata_patch(&pod, &bare, false).unwrap();
        assert!(patch["metadata"].get("finalizers").is_none());
        assert!(patch["metadata"].get("labels").is_none());
        // Already so: nothing to write.
        pod.metadata.annotations = Some(
            [(
                STATUS_ANNOTATION.to_string(),
                serde_json::to_string(&with_port).unwrap(),
            )]
            .into(),
        );
        pod.metadata.finalizers = Some(vec![FINALIZER.into()]);
        pod.metadata.labels = Some(
            [
                (CLEANUP_LABEL.to_string(), "true".to_string()),
                (POD_NAME_LABEL.to_string(), pod.name_any()),
            ]
            .into(),
        );
        assert_eq!(metadata_patch(&pod, &with_port, true), None);
    }

    #[test]
    fn cleanup_releases_ports_and_owners() {
        let atts = vec![Attachment {
            network: "blue".into(),
            ips: vec!["10.0.0.5".into()],
            port: Some(port("w1", 3)),
            ..Default::default()
        }];
        let mut blue = net("blue", vec![port("w1", 3)]);
        blue.ipam = Some(IpamView {
            cidrs: vec!["10.0.0.0/24".parse().unwrap()],
            allocations: BTreeMap::from([("10.0.0.5".parse().unwrap(), "cni/c1/net1".into())]),
            ..Default::default()
        });
        let (ports, owners) = cleanup_plan(&atts, &[blue]);
        assert_eq!(ports, [("blue".to_string(), port("w1", 3))]);
        assert_eq!(owners, [("blue".to_string(), "cni/c1/net1".to_string())]);
        // Already gone (CNI DEL came first): nothing to do.
        let (ports, owners) = cleanup_plan(&atts, &[net("blue", vec![])]);
        assert!(ports.is_empty() && owners.is_empty());
    }
}
