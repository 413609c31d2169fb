//! L2Network: the network exists in the controller with the requested address plan, a
//! NetworkAttachmentDefinition exists in every namespace whose pods use it, and the status
//! says what the controller has (connected ports, assigned addresses) with a `Ready`
//! condition. Deleting the resource deletes the network (an unknown one counts as deleted) and
//! its NADs. A network with `spec.provider` is also connected to the provider controller
//! through the cluster's edge switch, and disconnected on deletion ([`super::provider_net`]).

use super::pod::{pod_attachments, requested_networks};
use super::provider_net::{ProviderOutcome, CONDITION_PROVIDER};
use super::{
    bool_status, cleanup_abandoned, deleted_for, labelled_pods, now, patch_status, tracked,
    Context, Error, Result, FIELD_MANAGER, NETWORK_LABEL,
};
use crate::crd::{
    condition, set_condition, ConnectivityStatus, L2Network, L2NetworkSpec, L2NetworkStatus,
    CONDITION_READY, FINALIZER,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event};
use kube::{Api, ResourceExt};
use l2sm_api::v1::{CreateNetwork, NetworkView};
use l2sm_api::{ClientError, CreateOutcome};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What the controller (or the spec) says about the network, for the status.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The spec cannot be honoured as written.
    Invalid(String),
    /// The network exists with the requested settings.
    Ready(NetworkView),
    /// The network exists with other address settings, which the controller does not change.
    SettingsDiffer {
        /// What the controller has.
        current: NetworkView,
        /// What the spec asks for.
        wanted: CreateNetwork,
    },
    /// The controller could not be asked or refused.
    Failed {
        /// Condition reason.
        reason: String,
        /// What went wrong.
        message: String,
    },
}

/// The controller request for a spec: the name, and the address plan (`networkCIDR`,
/// `podAddressRange`) checked and normalized.
pub fn desired_request(name: &str, spec: &L2NetworkSpec) -> Result<CreateNetwork, String> {
    let mut req = CreateNetwork {
        name: name.to_string(),
        ..Default::default()
    };
    let cidr = match spec.network_cidr.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<ipnet::IpNet>()
                .map_err(|_| format!("networkCIDR {s:?} is not a CIDR such as 10.0.0.0/24"))?
                .trunc(),
        ),
    };
    let range = match spec.pod_address_range.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<ipnet::IpNet>()
                .map_err(|_| format!("podAddressRange {s:?} is not a CIDR such as 10.0.0.0/25"))?
                .trunc(),
        ),
    };
    match (cidr, range) {
        (None, Some(_)) => return Err("podAddressRange needs networkCIDR".into()),
        (Some(c), Some(r)) if !c.contains(&r) => {
            return Err(format!("podAddressRange {r} is not inside networkCIDR {c}"))
        }
        _ => {}
    }
    req.cidrs = cidr.into_iter().collect();
    req.pod_ranges = range.into_iter().collect();
    Ok(req)
}

fn normalized(list: &[ipnet::IpNet]) -> BTreeSet<ipnet::IpNet> {
    list.iter().map(ipnet::IpNet::trunc).collect()
}

/// Subnets as text, for condition messages.
fn texts(list: &[ipnet::IpNet]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

/// Whether the controller's network has the address plan the request asks for.
pub fn settings_match(req: &CreateNetwork, view: &NetworkView) -> bool {
    let (cidrs, ranges) = match &view.ipam {
        Some(i) => (normalized(&i.cidrs), normalized(&i.pod_ranges)),
        None => (BTreeSet::new(), BTreeSet::new()),
    };
    cidrs == normalized(&req.cidrs) && ranges == normalized(&req.pod_ranges)
}

/// Classifies a create answer.
pub fn observe(
    req: &CreateNetwork,
    answer: std::result::Result<CreateOutcome, &ClientError>,
) -> Observed {
    match answer {
        Ok(CreateOutcome::Ready(view)) => Observed::Ready(view),
        Ok(CreateOutcome::ExistsWithOtherSettings(view)) if settings_match(req, &view) => {
            Observed::Ready(view)
        }
        Ok(CreateOutcome::ExistsWithOtherSettings(current)) => Observed::SettingsDiffer {
            current,
            wanted: req.clone(),
        },
        Err(e) => Observed::Failed {
            reason: e.reason().to_string(),
            message: e.to_string(),
        },
    }
}

/// Namespaces that need the network's NAD: its own, and those of pods asking for it.
pub fn nad_namespaces<'a>(
    network_ns: &str,
    network: &str,
    pods: impl IntoIterator<Item = (&'a str, Vec<String>)>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::from([network_ns.to_string()]);
    for (ns, nets) in pods {
        if nets.iter().any(|n| n == network) {
            out.insert(ns.to_string());
        }
    }
    out
}

/// The status for what was observed. `assigned` maps addresses to pod names (from the pods'
/// attachment status); the controller's allocations add the addresses no pod reports, under
/// their owner.
pub fn compute_status(
    old: Option<&L2NetworkStatus>,
    generation: Option<i64>,
    observed: &Observed,
    mut assigned: BTreeMap<String, String>,
    now: Time,
) -> L2NetworkStatus {
    let mut status = old.cloned().unwrap_or_default();
    // Upstream's field this operator does not maintain (its own IPAM cursor): not reported,
    // and removed when an earlier writer left it. The provider part is [`provider_status`]'s.
    status.last_assigned_ip = None;
    status.provider_connectivity = None;
    let (ok, reason, message) = match observed {
        Observed::Invalid(msg) => (false, "InvalidSpec".to_string(), msg.clone()),
        Observed::Failed { reason, message } => {
            status.internal_connectivity = ConnectivityStatus::Unavailable;
            (false, reason.clone(), message.clone())
        }
        Observed::Ready(view) | Observed::SettingsDiffer { current: view, .. } => {
            status.internal_connectivity = ConnectivityStatus::Available;
            status.connected_pod_count = view.endpoints.len() as i64;
            if let Some(ipam) = &view.ipam {
                for (ip, owner) in &ipam.allocations {
                    assigned
                        .entry(ip.to_string())
                        .or_insert_with(|| owner.clone());
                }
            }
            status.assigned_ips = (!assigned.is_empty()).then_some(assigned);
            match observed {
                Observed::SettingsDiffer { current, wanted } => {
                    let have = current
                        .ipam
                        .as_ref()
                        .map(|i| [texts(&i.cidrs), texts(&i.pod_ranges)])
                        .unwrap_or_default();
                    (
                        false,
                        "CIDRChangeRefused".to_string(),
                        format!(
                            "the controller keeps network {:?} with CIDRs {:?} and pod ranges {:?}; \
                             the spec asks for {:?} and {:?}. Changing the address plan of an existing \
                             network is not supported: delete and re-create the L2Network",
                            current.name,
                            have[0],
                            have[1],
                            texts(&wanted.cidrs),
                            texts(&wanted.pod_ranges)
                        ),
                    )
                }
                _ => (
                    true,
                    "NetworkReady".to_string(),
                    format!(
                        "network exists in the controller (VNI {}), {} port(s) attached",
                        view.vni,
                        view.endpoints.len()
                    ),
                ),
            }
        }
    };
    set_condition(
        &mut status.conditions,
        condition(
            CONDITION_READY,
            bool_status(ok),
            &reason,
            message,
            generation,
            now,
        ),
    );
    status
}

/// The provider part of the status (inter-cluster networks): `providerConnectivity`, the
/// `ProviderConnected` condition and `providerAttachment`. `outcome` None with a provider in
/// the spec: the in-cluster network is not ready, so the provider path was not run. Without a
/// provider, a recorded attachment is kept (the deletion undoes it).
pub fn provider_status(
    status: &mut L2NetworkStatus,
    spec_has_provider: bool,
    outcome: Option<&ProviderOutcome>,
    generation: Option<i64>,
    now: Time,
) {
    if !spec_has_provider {
        status.provider_connectivity = None;
        status.conditions.retain(|c| c.type_ != CONDITION_PROVIDER);
        return;
    }
    let (ok, reason, message) = match outcome {
        Some(o) => {
            status.provider_connectivity = Some(o.connectivity);
            if let Some(a) = &o.attachment {
                status.provider_attachment = Some(a.clone());
            }
            (o.ok, o.reason.clone(), o.message.clone())
        }
        None => {
            status.provider_connectivity = Some(ConnectivityStatus::Unknown);
            (
                false,
                "InClusterNetworkNotReady".to_string(),
                "the network does not exist in the in-cluster controller yet, so it is not \
                 connected to the provider"
                    .to_string(),
            )
        }
    };
    set_condition(
        &mut status.conditions,
        condition(
            CONDITION_PROVIDER,
            bool_status(ok),
            &reason,
            message,
            generation,
            now,
        ),
    );
}

/// The NetworkAttachmentDefinition kind (Multus), which k8s-openapi does not type.
pub fn nad_resource() -> ApiResource {
    ApiResource {
        group: "k8s.cni.cncf.io".into(),
        version: "v1".into(),
        api_version: "k8s.cni.cncf.io/v1".into(),
        kind: "NetworkAttachmentDefinition".into(),
        plural: "network-attachment-definitions".into(),
    }
}

/// A label value naming `s` (label values are at most 63 characters): `s` itself when it
/// fits, otherwise a prefix and a hash.
pub fn label_value(s: &str) -> String {
    if s.len() <= 63 {
        return s.to_string();
    }
    // FNV-1a, enough to tell names apart in a label.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{}-{h:016x}", s[..46].trim_end_matches(['-', '.']))
}

/// Prefix of the labels naming the L2Networks that own a NAD: `<prefix><namespace>` =
/// the network's name (as [`label_value`]). L2Networks are named per namespace but a network
/// (and its NAD `l2sm-<name>`, whose content depends on the name only) is one per name in the
/// controller, so same-named L2Networks of several namespaces share their NADs; each adds its
/// own label, and a NAD goes only with its last owner.
pub const NAD_OWNER_PREFIX: &str = "owner.l2sm.l2sm.k8s.local/";

/// The owner label of the L2Network in namespace `ns` (namespace names are valid label names).
pub fn owner_label(ns: &str) -> String {
    format!("{NAD_OWNER_PREFIX}{ns}")
}

/// Label selector of the NADs owned by the L2Network `ns/name`.
pub fn owner_selector(ns: &str, name: &str) -> String {
    format!("{}={}", owner_label(ns), label_value(name))
}

/// Label selector of the NADs an earlier version made for the network `ns/name` (one owner).
pub fn network_selector(ns: &str, name: &str) -> String {
    format!("{NETWORK_LABEL}={}", label_value(&format!("{ns}.{name}")))
}

/// The namespaces of the L2Networks named `network` that own `nad` by its labels.
pub fn nad_owners(labels: &BTreeMap<String, String>, network: &str) -> BTreeSet<String> {
    let value = label_value(network);
    labels
        .iter()
        .filter(|(_, v)| **v == value)
        .filter_map(|(k, _)| k.strip_prefix(NAD_OWNER_PREFIX))
        .map(str::to_string)
        .collect()
}

/// Field manager of the NAD applies made for the L2Networks of namespace `ns`: one per owner,
/// so that one owner's apply never removes the label of another.
pub fn nad_field_manager(ns: &str) -> String {
    format!("{FIELD_MANAGER}-{ns}")
}

/// The NAD of `network` in `namespace` (op-api's builder, unchanged), labelled as owned by the
/// L2Network of that name in `network_ns`.
pub fn nad(network_ns: &str, network: &str, namespace: &str) -> serde_json::Value {
    let mut obj = crate::annotations::nad_for_network(network, namespace);
    obj["metadata"]["labels"][owner_label(network_ns)] =
        serde_json::Value::String(label_value(network));
    obj
}

/// What to do with a NAD when one of its owners goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NadFate {
    /// Delete it: no L2Network of that name remains, or none owns it and no pod of its
    /// namespace uses it.
    Delete,
    /// Keep it, only without the leaving owner's label.
    Disown,
}

/// Decides a NAD's fate when the L2Network of `leaving` namespace goes: `owners` are the
/// namespaces its labels name, `remaining` those of the other L2Networks of the same name that
/// still exist, `used` whether pods of the NAD's namespace ask for the network.
pub fn nad_fate(
    owners: &BTreeSet<String>,
    leaving: &str,
    remaining: &BTreeSet<String>,
    used: bool,
) -> NadFate {
    if remaining.is_empty() {
        return NadFate::Delete;
    }
    let live_owner = owners.iter().any(|o| o != leaving && remaining.contains(o));
    if live_owner || used {
        NadFate::Disown
    } else {
        NadFate::Delete
    }
}

/// Reconciles one L2Network.
pub async fn reconcile(net: Arc<L2Network>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<L2Network> =
        Api::namespaced(ctx.kube.clone(), &net.namespace().unwrap_or_default());
    tracked(&*net, &ctx, async {
        finalizer(&api, FINALIZER, net.clone(), |event| async {
            match event {
                Event::Apply(n) => apply(&n, &ctx).await,
                Event::Cleanup(n) => cleanup(&n, &ctx).await,
            }
        })
        .await
        .map_err(Error::from)
    })
    .await
}

async fn apply(net: &L2Network, ctx: &Context) -> Result<Action> {
    let name = net.name_any();
    let ns = net.namespace().unwrap_or_default();
    let generation = net.metadata.generation;
    let has_provider = net.spec.provider.is_some();
    let req = match desired_request(&name, &net.spec) {
        Ok(r) => r,
        Err(msg) => {
            let mut status = compute_status(
                net.status.as_ref(),
                generation,
                &Observed::Invalid(msg),
                BTreeMap::new(),
                now(),
            );
            provider_status(&mut status, has_provider, None, generation, now());
            patch_status(net, net.status.as_ref(), status, ctx).await?;
            // Nothing to retry until the spec changes.
            return Ok(Action::await_change());
        }
    };
    let answer = ctx.controller.ensure_network(&req).await;
    let observed = observe(&req, answer.as_ref().map(Clone::clone));
    if let Err(e) = answer {
        let mut status = compute_status(
            net.status.as_ref(),
            generation,
            &observed,
            BTreeMap::new(),
            now(),
        );
        provider_status(&mut status, has_provider, None, generation, now());
        patch_status(net, net.status.as_ref(), status, ctx).await?;
        return Err(e.into());
    }

    let pods = labelled_pods(ctx, None).await?;
    let namespaces = nad_namespaces(
        &ns,
        &name,
        pods.iter().map(|p| {
            (
                p.metadata.namespace.as_deref().unwrap_or_default(),
                requested_networks(p),
            )
        }),
    );
    // With `--network-scope namespace`, only namespaces that may use the network get its NAD
    // (checked here too: a pod may have bypassed the webhook).
    let allowed = crate::scope::allowed_namespaces(net.metadata.annotations.as_ref());
    let (namespaces, refused): (BTreeSet<String>, BTreeSet<String>) =
        namespaces.into_iter().partition(|target| {
            crate::scope::may_use(ctx.settings.network_scope, &ns, &allowed, target)
        });
    for target in &refused {
        tracing::warn!(network = %name, namespace = %ns, "no NAD written: {}",
            crate::scope::refusal(&name, &ns, target));
    }
    let params = PatchParams::apply(&nad_field_manager(&ns)).force();
    for target in &namespaces {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.kube.clone(), target, &nad_resource());
        let obj = nad(&ns, &name, target);
        api.patch(
            &crate::annotations::nad_name(&name),
            &params,
            &Patch::Apply(&obj),
        )
        .await?;
    }

    let mut assigned = BTreeMap::new();
    for pod in &pods {
        for att in pod_attachments(pod) {
            if att.network == name && pod.metadata.namespace.as_deref() == Some(ns.as_str()) {
                for ip in att.ips {
                    let bare = ip.split('/').next().unwrap_or_default().to_string();
                    assigned.insert(bare, pod.name_any());
                }
            }
        }
    }
    // Inter-cluster: connect the network to the provider through this cluster's edge.
    let outcome = match &net.spec.provider {
        Some(p) => Some(super::provider_net::attach(net, p, ctx).await?),
        None => None,
    };
    let mut status = compute_status(net.status.as_ref(), generation, &observed, assigned, now());
    provider_status(
        &mut status,
        has_provider,
        outcome.as_ref(),
        generation,
        now(),
    );
    // IDS (spec.ids): Suricata on the network's mirror, its rules, the alert watcher.
    super::ids::reconcile(net, ctx, &mut status).await?;
    patch_status(net, net.status.as_ref(), status, ctx).await?;
    if let Some(o) = outcome.filter(|o| o.retry) {
        // Retried with the object's backoff (error_policy).
        return Err(Error::Provider(o.message));
    }
    Ok(Action::requeue(ctx.settings.resync))
}

/// Deletes the network in the controller (unless a same-named L2Network of another namespace
/// still uses it) and the NADs no other owner needs. When the controller keeps failing for
/// [`super::Settings::cleanup_timeout`] after the deletion, goes on without it (Warning Event).
async fn cleanup(net: &L2Network, ctx: &Context) -> Result<Action> {
    let deleted_for = deleted_for(&net.metadata);
    let bound = ctx.settings.cleanup_timeout;
    match cleanup_steps(net, ctx, deleted_for >= bound).await {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if deleted_for < bound => Err(Error::Cleanup {
            error: Box::new(e),
            abandon_in: bound - deleted_for,
        }),
        Err(e) => {
            cleanup_abandoned(
                net,
                ctx,
                &format!("{e}; its NADs may be left in their namespaces"),
            )
            .await;
            Ok(Action::await_change())
        }
    }
}

/// The cleanup's steps; with `overdue`, a controller that cannot be asked is given up (with
/// an Event) and the NADs are still removed.
async fn cleanup_steps(net: &L2Network, ctx: &Context, overdue: bool) -> Result<()> {
    let name = net.name_any();
    let ns = net.namespace().unwrap_or_default();
    if super::ids::involved(net) {
        super::ids::remove(net, ctx).await?;
    }
    let all_networks: Api<L2Network> = Api::all(ctx.kube.clone());
    let remaining: BTreeSet<String> = all_networks
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await?
        .items
        .into_iter()
        .filter(|n| n.uid() != net.uid() && n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| n.namespace())
        .collect();
    if remaining.is_empty() {
        // Inter-cluster: undo the provider side first (its ports, the edge's pair, the
        // network at the provider when this cluster made it and nobody else uses it).
        if let Err(e) = super::provider_net::detach(net, ctx).await {
            if !overdue {
                return Err(Error::Provider(e));
            }
            cleanup_abandoned(
                net,
                ctx,
                &format!("{e}; the provider side of network {name:?} may be left behind"),
            )
            .await;
        }
        if let Err(e) = ctx.controller.delete_network(&name).await {
            if !overdue {
                return Err(e.into());
            }
            cleanup_abandoned(
                net,
                ctx,
                &format!("{e}; network {name:?} may stay in the L2S-M controller"),
            )
            .await;
        }
    } else {
        tracing::info!(network = %name, namespace = %ns, others = ?remaining,
            "network kept in the controller: same-named L2Networks remain");
    }
    let all: Api<DynamicObject> = Api::all_with(ctx.kube.clone(), &nad_resource());
    let mut nads = all
        .list(&ListParams::default().labels(&owner_selector(&ns, &name)))
        .await?
        .items;
    let legacy = network_selector(&ns, &name);
    for obj in all
        .list(&ListParams::default().labels(&legacy))
        .await?
        .items
    {
        if !nads
            .iter()
            .any(|n| n.namespace() == obj.namespace() && n.name_any() == obj.name_any())
        {
            nads.push(obj);
        }
    }
    let nad_name = crate::annotations::nad_name(&name);
    for obj in nads.into_iter().filter(|o| o.name_any() == nad_name) {
        let target = obj.namespace().unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.kube.clone(), &target, &nad_resource());
        let used = !remaining.is_empty()
            && labelled_pods(ctx, Some(&target))
                .await?
                .iter()
                .any(|p| requested_networks(p).contains(&name));
        let owners = nad_owners(obj.labels(), &name);
        let rv = obj.resource_version();
        let result = match nad_fate(&owners, &ns, &remaining, used) {
            NadFate::Delete => api
                .delete(
                    &obj.name_any(),
                    &DeleteParams {
                        preconditions: Some(Preconditions {
                            resource_version: rv,
                            uid: obj.uid(),
                        }),
                        ..DeleteParams::default()
                    },
                )
                .await
                .map(drop),
            NadFate::Disown => {
                let mut labels = serde_json::Map::new();
                labels.insert(owner_label(&ns), serde_json::Value::Null);
                if obj.labels().get(NETWORK_LABEL) == Some(&label_value(&format!("{ns}.{name}"))) {
                    labels.insert(NETWORK_LABEL.into(), serde_json::Value::Null);
                }
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": rv, "labels": labels}
                });
                api.patch(
                    &obj.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map(drop)
            }
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(network = %name, namespace = %ns, "network deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{find_condition, NetworkType};
    use l2sm_api::v1::IpamView;

    fn spec(cidr: Option<&str>, range: Option<&str>) -> L2NetworkSpec {
        L2NetworkSpec {
            network_type: NetworkType::Vnet,
            config: None,
            provider: None,
            network_cidr: cidr.map(Into::into),
            pod_address_range: range.map(Into::into),
            ids: None,
        }
    }

    fn t() -> Time {
        now()
    }

    #[test]
    fn requests_from_specs() {
        let r = desired_request("n", &spec(None, None)).unwrap();
        assert!(r.cidrs.is_empty() && r.pod_ranges.is_empty());
        let r = desired_request("n", &spec(Some("10.34.0.0/16"), Some("10.34.20.0/24"))).unwrap();
        assert_eq!(texts(&r.cidrs), ["10.34.0.0/16"]);
        assert_eq!(texts(&r.pod_ranges), ["10.34.20.0/24"]);
        // Host bits are dropped, as the controller would.
        let r = desired_request("n", &spec(Some("10.0.0.7/24"), None)).unwrap();
        assert_eq!(texts(&r.cidrs), ["10.0.0.0/24"]);
        for (c, p, needle) in [
            (Some("10.0.0.0"), None, "networkCIDR"),
            (Some("banana"), None, "networkCIDR"),
            (None, Some("10.0.0.0/24"), "needs networkCIDR"),
            (Some("10.0.0.0/24"), Some("10.1.0.0/25"), "not inside"),
            (Some("10.0.0.0/24"), Some("x"), "podAddressRange"),
        ] {
            let e = desired_request("n", &spec(c, p)).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    fn view(cidrs: &[&str]) -> NetworkView {
        NetworkView {
            name: "n".into(),
            vni: 3,
            endpoints: vec!["of:0000000000000001/1".into()],
            ipam: (!cidrs.is_empty()).then(|| IpamView {
                cidrs: cidrs.iter().map(|s| s.parse().unwrap()).collect(),
                allocations: BTreeMap::from([(
                    "10.0.0.1".parse().unwrap(),
                    "cni/abc/net1".to_string(),
                )]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_status_counts_ports_and_names_pods() {
        let req = desired_request("n", &spec(Some("10.0.0.0/24"), None)).unwrap();
        let obs = observe(&req, Ok(CreateOutcome::Ready(view(&["10.0.0.0/24"]))));
        let st = compute_status(
            None,
            Some(4),
            &obs,
            BTreeMap::from([("10.0.0.9".into(), "pod-b".into())]),
            t(),
        );
        assert_eq!(st.internal_connectivity, ConnectivityStatus::Available);
        assert_eq!(st.connected_pod_count, 1);
        let ips = st.assigned_ips.clone().unwrap();
        assert_eq!(ips["10.0.0.9"], "pod-b");
        assert_eq!(ips["10.0.0.1"], "cni/abc/net1");
        let c = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.observed_generation),
            ("True", "NetworkReady", Some(4))
        );
        // Same observation again: nothing changes (no status write, no reconcile loop).
        let again = compute_status(
            Some(&st),
            Some(4),
            &obs,
            BTreeMap::from([("10.0.0.9".into(), "pod-b".into())]),
            t(),
        );
        assert_eq!(again, st);
    }

    #[test]
    fn cidr_change_is_refused_with_a_condition() {
        let req = desired_request("n", &spec(Some("10.9.0.0/24"), None)).unwrap();
        let obs = observe(
            &req,
            Ok(CreateOutcome::ExistsWithOtherSettings(view(&[
                "10.0.0.0/24",
            ]))),
        );
        assert!(matches!(obs, Observed::SettingsDiffer { .. }));
        let st = compute_status(None, Some(2), &obs, BTreeMap::new(), t());
        let c = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "CIDRChangeRefused")
        );
        assert!(
            c.message.contains("10.0.0.0/24") && c.message.contains("10.9.0.0/24"),
            "{}",
            c.message
        );
        assert_eq!(st.internal_connectivity, ConnectivityStatus::Available);
        // A 409 whose settings turn out equal (a race with another writer) is just ready.
        let req = desired_request("n", &spec(Some("10.0.0.0/24"), None)).unwrap();
        assert!(matches!(
            observe(
                &req,
                Ok(CreateOutcome::ExistsWithOtherSettings(view(&[
                    "10.0.0.0/24"
                ])))
            ),
            Observed::Ready(_)
        ));
    }

    #[test]
    fn controller_failure_marks_unavailable() {
        let req = desired_request("n", &spec(None, None)).unwrap();
        let err = ClientError::Unreachable {
            url: "http://x".into(),
            attempts: 3,
            reason: "refused".into(),
        };
        let old = compute_status(
            None,
            Some(1),
            &observe(&req, Ok(CreateOutcome::Ready(view(&[])))),
            BTreeMap::new(),
            t(),
        );
        let st = compute_status(
            Some(&old),
            Some(1),
            &observe(&req, Err(&err)),
            BTreeMap::new(),
            t(),
        );
        assert_eq!(st.internal_connectivity, ConnectivityStatus::Unavailable);
        let c = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "ControllerUnreachable")
        );
        // Last known counts are kept while the controller cannot be asked.
        assert_eq!(st.connected_pod_count, 1);
    }

    #[test]
    fn nads_go_where_pods_ask_for_the_network() {
        let pods = vec![
            ("team-a", vec!["blue".to_string()]),
            ("team-b", vec!["red".to_string()]),
            ("team-c", vec!["red".to_string(), "blue".to_string()]),
        ];
        let ns = nad_namespaces("default", "blue", pods);
        assert_eq!(
            ns.into_iter().collect::<Vec<_>>(),
            ["default", "team-a", "team-c"]
        );
    }

    #[test]
    fn upstream_fields_not_maintained_are_dropped_from_the_status() {
        let old = L2NetworkStatus {
            last_assigned_ip: Some("10.0.0.7".into()),
            provider_connectivity: Some(ConnectivityStatus::Available),
            assigned_ips: Some(BTreeMap::from([("10.0.0.7".into(), "gone".into())])),
            ..Default::default()
        };
        let req = desired_request("n", &spec(None, None)).unwrap();
        let obs = observe(&req, Ok(CreateOutcome::Ready(view(&[]))));
        let st = compute_status(Some(&old), Some(1), &obs, BTreeMap::new(), t());
        assert_eq!(st.last_assigned_ip, None);
        assert_eq!(st.provider_connectivity, None);
        assert_eq!(st.assigned_ips, None);
    }

    #[test]
    fn nads_are_owned_per_namespace_and_go_with_their_last_owner() {
        let obj = nad("ns1", "blue", "team-a");
        assert_eq!(obj["metadata"]["name"], "l2sm-blue");
        assert_eq!(
            obj["metadata"]["labels"]["owner.l2sm.l2sm.k8s.local/ns1"],
            "blue"
        );
        let labels: BTreeMap<String, String> =
            serde_json::from_value(obj["metadata"]["labels"].clone()).unwrap();
        let mut both = labels.clone();
        both.insert(owner_label("ns2"), "blue".into());
        // Another network's owner label does not count.
        both.insert(owner_label("ns3"), "red".into());
        let owners = nad_owners(&both, "blue");
        assert_eq!(
            owners,
            BTreeSet::from(["ns1".to_string(), "ns2".to_string()])
        );
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        // ns2's blue goes, ns1's blue remains and owns it: keep.
        assert_eq!(
            nad_fate(&owners, "ns2", &set(&["ns1"]), false),
            NadFate::Disown
        );
        // The last blue goes: delete, even if pods still ask for it.
        assert_eq!(nad_fate(&owners, "ns2", &set(&[]), true), NadFate::Delete);
        // Another blue remains but neither owns this NAD nor do pods here use it: delete.
        assert_eq!(
            nad_fate(&set(&["ns2"]), "ns2", &set(&["ns1"]), false),
            NadFate::Delete
        );
        // ... unless pods of its namespace use it (ns1's blue will label it on its next pass).
        assert_eq!(
            nad_fate(&set(&["ns2"]), "ns2", &set(&["ns1"]), true),
            NadFate::Disown
        );
        // An owner label of an L2Network that no longer exists does not keep it.
        assert_eq!(
            nad_fate(&owners, "ns2", &set(&["ns9"]), false),
            NadFate::Delete
        );
    }

    #[test]
    fn long_label_values_are_hashed() {
        assert_eq!(label_value("default.blue"), "default.blue");
        let long = format!("ns.{}", "x".repeat(100));
        let v = label_value(&long);
        assert!(v.len() <= 63, "{v}");
        assert_ne!(v, label_value(&format!("ns.{}y", "x".repeat(99))));
    }
}
