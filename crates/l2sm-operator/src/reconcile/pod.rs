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
    tracked, Context, Error, Result, NETWORK_STATUS_ANNOTATION, POD_LABEL, STATUS_ANNOTATION,
};
use crate::crd::FINALIZER;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event};
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

/// Reconciles one pod labelled `l2sm: "true"`.
pub async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action> {
    let ours = pod.finalizers().iter().any(|f| f == FINALIZER);
    if !ours && !pod.annotations().contains_key(NETWORKS_ANNOTATION) {
        return Ok(Action::await_change());
    }
    let api: Api<Pod> = Api::namespaced(ctx.kube.clone(), &pod.namespace().unwrap_or_default());
    tracked(&*pod, &ctx, async {
        finalizer(&api, FINALIZER, pod.clone(), |event| async {
            match event {
                Event::Apply(p) => apply(&p, &ctx).await,
                Event::Cleanup(p) => cleanup(&p, &ctx).await,
            }
        })
        .await
        .map_err(Error::from)
    })
    .await
}

async fn apply(pod: &Pod, ctx: &Context) -> Result<Action> {
    let requested = requested_networks(pod);
    let networks = ctx.controller.networks().await?;
    let owners = ctx.controller.attachments().await?;
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let key = pod_key(pod);
    let previous = pod_attachments(pod);
    let multus = network_status(pod);
    let no_claims = BTreeSet::new();
    let known = Known {
        networks: &networks,
        owners: &owners,
    };
    let exact = desired_attachments(
        &key, &requested, &multus, None, known, &no_claims, &previous,
    );
    let mut claimed = BTreeSet::new();
    // The other pods' claims only matter for guessing ports without an owner.
    let all_owned = exact.iter().all(|a| {
        a.port
            .as_deref()
            .is_some_and(|p| owners.iter().any(|m| m.port == p && m.pod.is_some()))
    });
    if let Some(node) = node.as_ref().filter(|_| !all_owned) {
        let all: Api<Pod> = Api::all(ctx.kube.clone());
        let on_node = all
            .list(
                &ListParams::default()
                    .labels(&format!("{POD_LABEL}=true"))
                    .fields(&format!("spec.nodeName={node}")),
            )
            .await?;
        for other in on_node.items.iter().filter(|p| p.uid() != pod.uid()) {
            claimed.extend(pod_attachments(other).into_iter().filter_map(|a| a.port));
        }
    }
    let atts = desired_attachments(
        &key,
        &requested,
        &multus,
        node.as_deref(),
        known,
        &claimed,
        &previous,
    );
    if atts != previous {
        let api: Api<Pod> = Api::namespaced(ctx.kube.clone(), &pod.namespace().unwrap_or_default());
        let value = serde_json::to_string(&atts).unwrap_or_default();
        api.patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {STATUS_ANNOTATION: value}}
            })),
        )
        .await?;
    }
    // Incomplete attachments of a scheduled pod are waiting for the CNI plugin or for port
    // disambiguation: look again soon. An unscheduled pod changes (and is reconciled) when
    // it is bound.
    Ok(if node.is_none() {
        Action::await_change()
    } else if complete(&atts) {
        Action::requeue(ctx.settings.resync)
    } else {
        Action::requeue(PENDING_RETRY)
    })
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

async fn cleanup(pod: &Pod, ctx: &Context) -> Result<Action> {
    let deleted_for = pod
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0))
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .unwrap_or_default();
    if still_running(pod) && deleted_for < STALE_RUNNING + grace(pod) {
        return Err(Error::Waiting(format!(
            "pod {} still has running containers",
            pod.name_any()
        )));
    }
    let atts = pod_attachments(pod);
    if atts.is_empty() {
        return Ok(Action::await_change());
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
    Ok(Action::await_change())
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
