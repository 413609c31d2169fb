//! `l2sm lab apply -f` / `l2sm lab delete -f`: Kubernetes manifests in upstream's format
//! realized in the lab through the operator's own code: the `l2sm/networks` grammar and the
//! mutating webhook decide a pod's interfaces (same messages as in a cluster), each interface
//! is the network's NetworkAttachmentDefinition configuration handed to `l2sm-cni` as Multus
//! hands it, networks are created as the L2Network reconciler creates them, and a
//! QuarantinePodRequest moves ports as the quarantine reconciler does. A pod's processes never
//! run: what its `command`/`args` do to its own network is recognised and applied in its
//! namespace through netlink ([`effects`]); everything else is listed as not emulated.
//!
//! Everything is validated before anything changes; a failure while acting rolls back what
//! this apply made. What an apply made is recorded in the lab state ([`Applied`]), and
//! `lab delete -f` removes exactly that.

pub mod effects;
pub mod manifests;

use crate::state::{Lab, LabState, PodState};
use crate::{attach_in, detach_in, AttachOptions, NadAttach, PodIdentity};
use anyhow::{anyhow, bail};
use effects::Effect;
use ipnet::IpNet;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::core::{Selector, SelectorExt as _};
use l2sm_api::v1::CreateNetwork;
use l2sm_api::ControllerClient;
use l2sm_operator::annotations::{nad_cni_config, nad_name, parse_multus, MULTUS_ANNOTATION};
use l2sm_operator::crd::{L2Network, L2NetworkSpec, NetworkType, Overlay, QuarantinePodRequest};
use l2sm_operator::reconcile::{l2network, overlay, quarantine};
use l2sm_operator::webhook::{MemoryCatalog, Webhook, WebhookConfig, WEBHOOK_NAME};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// API group of L2S-M's custom resources.
const GROUP: &str = "l2sm.l2sm.k8s.local";

/// One object `lab apply` made (or found as it is), recorded in the lab state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Applied {
    /// Kind (`L2Network`, `Pod`, …).
    pub kind: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Kubernetes name.
    pub name: String,
    /// Its labels (pods: the pod template's, for later QuarantinePodRequests).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// L2Network: the controller network this apply created (`None`: it existed already and
    /// is left in place by `lab delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Pod or Deployment: the lab pods made for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// QuarantinePodRequest: the ports it moved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<Move>,
    /// Digest of the manifest object (the same object applied again is "unchanged").
    pub digest: String,
}

/// A port a QuarantinePodRequest moved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Move {
    /// Lab pod.
    pub pod: String,
    /// Switch port.
    pub port: String,
    /// Source network.
    pub from: String,
    /// Target network.
    pub to: String,
}

/// The lab's name for a Kubernetes pod: its name in `default`, `<namespace>-<name>` elsewhere.
pub fn lab_pod_name(namespace: &str, name: &str) -> String {
    if namespace == "default" {
        name.to_string()
    } else {
        format!("{namespace}-{name}")
    }
}

/// Where an object came from and what it is.
#[derive(Debug, Clone)]
struct Meta {
    kind: String,
    namespace: String,
    name: String,
    origin: String,
    labels: BTreeMap<String, String>,
    digest: String,
}

impl Meta {
    /// `kind/name` as kubectl prints it (`pod/ping`, `l2network.l2sm.l2sm.k8s.local/x`).
    fn display(&self) -> String {
        let kind = self.kind.to_ascii_lowercase();
        let kind = match self.kind.as_str() {
            "L2Network" | "Overlay" | "QuarantinePodRequest" | "NetworkEdgeDevice" => {
                format!("{kind}.{GROUP}")
            }
            "Deployment" => "deployment.apps".into(),
            _ => kind,
        };
        if self.namespace == "default" || self.namespace.is_empty() {
            format!("{kind}/{}", self.name)
        } else {
            format!("{kind}/{} (namespace {})", self.name, self.namespace)
        }
    }

    fn key(&self) -> (String, String, String) {
        (self.kind.clone(), self.namespace.clone(), self.name.clone())
    }
}

/// One planned pod.
#[derive(Debug, Clone)]
struct PodPlan {
    key: String,
    k8s: String,
    node: String,
    labels: BTreeMap<String, String>,
    interfaces: Vec<Iface>,
    effects: Vec<(Effect, String)>,
}

#[derive(Debug, Clone)]
struct Iface {
    network: String,
    nad: Value,
    ifname: String,
    ips: Vec<IpNet>,
    mac: Option<String>,
}

#[derive(Debug, Clone)]
enum Body {
    Network {
        req: CreateNetwork,
        exists: bool,
    },
    Pods(Vec<PodPlan>),
    Quarantine {
        source: String,
        target: String,
        pods: Selector,
    },
    /// Validated and recorded; nothing to do in the lab (Overlay) or not emulated at all.
    Record,
}

#[derive(Debug, Clone)]
struct Planned {
    meta: Meta,
    body: Body,
    notes: Vec<String>,
    /// Applied before with the same manifest: nothing to do.
    unchanged: bool,
}

/// Known networks: (namespace, name) -> labels.
type Networks = BTreeMap<(String, String), BTreeMap<String, String>>;

/// `lab apply -f`: prints one line per object and what is not emulated; `Err` (nothing
/// changed, or everything rolled back) lists every bad object.
pub async fn apply(lab: &Lab, paths: &[PathBuf], recursive: bool) -> anyhow::Result<()> {
    let docs = manifests::read(paths, recursive).map_err(|e| anyhow!(e.join("\n")))?;
    let _lock = lab.lock()?;
    let mut state = lab.load_ready()?;
    if state.is_multi() {
        bail!("lab apply works on a single-cluster lab (lab up --nodes N); this lab has several clusters");
    }
    let api = lab.controller_api(&state)?;
    let planned = match plan(lab, &state, &api, &docs).await {
        Ok(p) => p,
        Err(errors) => {
            bail!(
                "{}\nnothing was changed: {} object(s) invalid",
                errors.join("\n"),
                errors.len()
            )
        }
    };
    let mut undo = Vec::new();
    // Records are saved as objects are made, so an interrupted apply can still be deleted.
    let recorded_before = state.applied.len();
    let mut lines = Vec::new();
    for p in &planned {
        if p.unchanged {
            lines.push(format!("{} unchanged", p.meta.display()));
            continue;
        }
        match act(lab, &mut state, &api, p, &mut undo).await {
            Ok((record, line)) => {
                state.applied.push(record);
                lab.save(&state)?;
                lines.push(line);
                for n in &p.notes {
                    lines.push(format!("  {n}"));
                }
            }
            Err(e) => {
                let failed = format!("{}: {e:#}", p.meta.display());
                state.applied.truncate(recorded_before);
                let rolled = rollback(lab, &mut state, &api, undo).await;
                let mut msg = format!("error when creating {:?}: {failed}", p.meta.origin);
                match rolled {
                    Ok(()) => msg.push_str("\nrolled back: nothing this apply made is left"),
                    Err(r) => msg.push_str(&format!("\nrollback incomplete: {r}")),
                }
                bail!(msg);
            }
        }
    }
    lab.save(&state)?;
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// `lab delete -f`: removes what `lab apply` made for these objects (pods, then networks);
/// objects it did not make are reported as not found.
pub async fn delete(lab: &Lab, paths: &[PathBuf], recursive: bool) -> anyhow::Result<()> {
    let docs = manifests::read(paths, recursive).map_err(|e| anyhow!(e.join("\n")))?;
    let _lock = lab.lock()?;
    let mut state = lab.load_ready()?;
    let api = lab.controller_api(&state)?;
    let mut metas = Vec::new();
    let mut errors = Vec::new();
    for d in &docs {
        match meta_of(d) {
            Ok(m) => metas.push(m),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        bail!(
            "{}\nnothing was deleted: {} object(s) invalid",
            errors.join("\n"),
            errors.len()
        );
    }
    // Quarantine requests, then pods, then everything else, then networks.
    let rank = |k: &str| match k {
        "QuarantinePodRequest" => 0,
        "Pod" | "Deployment" => 1,
        "L2Network" => 3,
        _ => 2,
    };
    metas.sort_by_key(|m| rank(&m.kind));
    let mut missing = Vec::new();
    for m in metas {
        let Some(i) = state.applied.iter().position(|a| {
            (a.kind.as_str(), a.namespace.as_str(), a.name.as_str())
                == (m.kind.as_str(), m.namespace.as_str(), m.name.as_str())
        }) else {
            missing.push(format!(
                "Error from lab: {} not found (not made by lab apply)",
                m.display()
            ));
            continue;
        };
        let rec = state.applied[i].clone();
        for pod in &rec.pods {
            if state.pods.contains_key(pod) {
                detach_in(lab, &mut state, pod, None).await?;
            }
        }
        if let Some(net) = &rec.network {
            api.delete_network(net)
                .await
                .map_err(|e| anyhow!("{}: deleting network {net}: {e}", m.display()))?;
        }
        state.applied.remove(i);
        lab.save(&state)?;
        let note = if rec.kind == "QuarantinePodRequest" && !rec.moves.is_empty() {
            " (moved pods stay on the target network, as in a cluster)"
        } else if rec.kind == "L2Network" && rec.network.is_none() {
            " (its network existed before lab apply: left in place)"
        } else {
            ""
        };
        println!("{} deleted{note}", m.display());
    }
    if !missing.is_empty() {
        bail!(missing.join("\n"));
    }
    Ok(())
}

/// A stable digest of an object (FNV-1a over its JSON).
fn digest(v: &Value) -> String {
    format!("{:016x}", fnv(v.to_string().as_bytes()))
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn meta_of(d: &manifests::Doc) -> Result<Meta, String> {
    let v = &d.value;
    let api_version = v["apiVersion"].as_str().unwrap_or_default();
    let kind = v["kind"].as_str().unwrap_or_default();
    let name = v["metadata"]["name"].as_str().unwrap_or_default();
    if kind.is_empty() || api_version.is_empty() {
        return Err(format!(
            "error validating {:?}: apiVersion and kind must be set",
            d.origin
        ));
    }
    if name.is_empty() {
        return Err(format!(
            "error when creating {:?}: {kind}: metadata.name must be set",
            d.origin
        ));
    }
    let known = match kind {
        "L2Network" | "Overlay" | "QuarantinePodRequest" | "NetworkEdgeDevice" => {
            api_version == format!("{GROUP}/v1")
        }
        "Pod"
        | "Service"
        | "ConfigMap"
        | "Secret"
        | "ServiceAccount"
        | "Namespace"
        | "PersistentVolumeClaim"
        | "Endpoints" => api_version == "v1",
        "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" => api_version == "apps/v1",
        "Job" | "CronJob" => api_version == "batch/v1",
        "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
            api_version == "rbac.authorization.k8s.io/v1"
        }
        "NetworkPolicy" | "Ingress" => api_version == "networking.k8s.io/v1",
        "NetworkAttachmentDefinition" => api_version == "k8s.cni.cncf.io/v1",
        _ => false,
    };
    if !known {
        return Err(format!(
            "resource mapping not found for name: {name:?} from {:?}: no matches for kind {kind:?} in version {api_version:?}",
            d.origin
        ));
    }
    let namespace = v["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let labels = v["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Meta {
        kind: kind.to_string(),
        namespace,
        name: name.to_string(),
        origin: d.origin.clone(),
        labels,
        digest: digest(v),
    })
}

/// Validates every object and decides what to do, changing nothing. `Err`: one message per
/// bad object.
async fn plan(
    lab: &Lab,
    state: &LabState,
    api: &ControllerClient,
    docs: &[manifests::Doc],
) -> Result<Vec<Planned>, Vec<String>> {
    let mut errors = Vec::new();
    let mut objects = Vec::new();
    let mut seen = BTreeSet::new();
    for d in docs {
        match meta_of(d) {
            Ok(m) => {
                if !seen.insert(m.key()) {
                    errors.push(format!(
                        "error when creating {:?}: {} appears twice",
                        d.origin,
                        m.display()
                    ));
                    continue;
                }
                objects.push((m, d.value.clone()));
            }
            Err(e) => errors.push(e),
        }
    }
    let controller_nets = match api.networks().await {
        Ok(n) => n,
        Err(e) => return Err(vec![format!("cannot list the lab's networks: {e}")]),
    };
    // Every network a pod or request may name: the controller's (in the namespace an earlier
    // apply gave it, else `default`) and this apply's.
    let mut networks: Networks = BTreeMap::new();
    for n in &controller_nets {
        let rec = state
            .applied
            .iter()
            .find(|a| a.kind == "L2Network" && a.name == n.name);
        let ns = rec.map_or("default".to_string(), |a| a.namespace.clone());
        let labels = rec.map(|a| a.labels.clone()).unwrap_or_default();
        networks.insert((ns, n.name.clone()), labels);
    }
    let mut out = Vec::new();
    // Networks first: pods and requests are checked against them.
    objects.sort_by_key(|(m, _)| match m.kind.as_str() {
        "L2Network" => 0,
        "Overlay" | "NetworkEdgeDevice" => 1,
        "Pod" | "Deployment" => 2,
        "QuarantinePodRequest" => 4,
        _ => 3,
    });
    let mut net_names: BTreeMap<String, String> = BTreeMap::new();
    for (m, v) in objects.iter().filter(|(m, _)| m.kind == "L2Network") {
        if let Some(other_ns) = net_names.insert(m.name.clone(), m.namespace.clone()) {
            errors.push(format!(
                "error when creating {:?}: {}: an L2Network of that name is also in namespace {other_ns} (networks are found by name)",
                m.origin,
                m.display()
            ));
            continue;
        }
        let planned =
            existing(state, m).unwrap_or_else(|| plan_network(state, &controller_nets, m, v));
        match planned {
            Ok(p) => {
                networks.insert((m.namespace.clone(), m.name.clone()), m.labels.clone());
                out.push(p);
            }
            Err(e) => errors.push(e),
        }
    }
    let catalog = MemoryCatalog::new();
    for (ns, name) in networks.keys() {
        catalog.insert(ns, name);
    }
    let webhook = Webhook::new(catalog, WebhookConfig::default());
    let nets_by_nad: BTreeMap<String, String> = networks
        .keys()
        .map(|(_, n)| (nad_name(n), n.clone()))
        .collect();
    let mut placed = 0usize;
    let mut planned_pods: Vec<PodPlan> = Vec::new();
    for (m, v) in objects.iter().filter(|(m, _)| m.kind != "L2Network") {
        if let Some(result) = existing(state, m) {
            match result {
                Ok(p) => out.push(p),
                Err(e) => errors.push(e),
            }
            continue;
        }
        let result = match m.kind.as_str() {
            "Overlay" => plan_overlay(state, &lab.dir().join("topology.json"), m, v),
            "NetworkEdgeDevice" => Ok(Planned {
                meta: m.clone(),
                body: Body::Record,
                notes: vec![
                    "not emulated: NetworkEdgeDevice (edges need a multi-cluster lab: l2sm lab up --clusters N)"
                        .into(),
                ],
                unchanged: false,
            }),
            "Pod" | "Deployment" => {
                let ctx = PodContext {
                    state,
                    webhook: &webhook,
                    nets_by_nad: &nets_by_nad,
                    planned: &planned_pods,
                };
                plan_pods(&ctx, m, v, &mut placed).await
            }
            "QuarantinePodRequest" => plan_quarantine(m, v, &networks),
            other => Ok(Planned {
                meta: m.clone(),
                body: Body::Record,
                notes: vec![format!("not emulated: {other} (the lab realizes L2S-M objects, pods and deployments)")],
                unchanged: false,
            }),
        };
        match result {
            Ok(p) => {
                if let Body::Pods(pods) = &p.body {
                    planned_pods.extend(pods.iter().cloned());
                }
                out.push(p);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// An object applied before: `Ok` (unchanged) with the same manifest; `Err` with another
/// (the lab does not update objects). `None`: a new object.
fn existing(state: &LabState, m: &Meta) -> Option<Result<Planned, String>> {
    let rec = state.applied.iter().find(|a| {
        (a.kind.as_str(), a.namespace.as_str(), a.name.as_str())
            == (m.kind.as_str(), m.namespace.as_str(), m.name.as_str())
    })?;
    if rec.digest == m.digest {
        return Some(Ok(Planned {
            meta: m.clone(),
            body: Body::Record,
            notes: Vec::new(),
            unchanged: true,
        }));
    }
    Some(Err(format!(
        "error when applying {:?}: {} exists with another manifest: lab apply does not update objects (lab delete -f it first)",
        m.origin,
        m.display()
    )))
}

fn plan_network(
    state: &LabState,
    controller_nets: &[l2sm_api::v1::NetworkView],
    m: &Meta,
    v: &Value,
) -> Result<Planned, String> {
    let bad = |msg: String| format!("error when creating {:?}: {}: {msg}", m.origin, m.display());
    let net: L2Network =
        serde_json::from_value(v.clone()).map_err(|e| bad(format!("invalid L2Network: {e}")))?;
    l2sm_operator::annotations::check_network_name(&m.name).map_err(|e| bad(e.to_string()))?;
    let req = l2network::desired_request(&m.name, &net.spec).map_err(bad)?;
    let mut notes = network_notes(&net.spec);
    let recorded = state
        .applied
        .iter()
        .any(|a| a.kind == "L2Network" && a.name == m.name && a.namespace == m.namespace);
    let exists = match controller_nets.iter().find(|n| n.name == m.name) {
        Some(view) if !recorded => {
            if !l2network::settings_match(&req, view) {
                return Err(bad(format!(
                    "the lab's network {:?} exists with other address settings",
                    m.name
                )));
            }
            notes.push(
                "the lab's network of that name exists: used as it is, kept by lab delete".into(),
            );
            true
        }
        _ => false,
    };
    Ok(Planned {
        meta: m.clone(),
        body: Body::Network { req, exists },
        notes,
        unchanged: false,
    })
}

fn network_notes(spec: &L2NetworkSpec) -> Vec<String> {
    let mut notes = Vec::new();
    if spec.network_type == NetworkType::Vlink {
        notes.push(
            "not emulated: vlink path (spec.config): a plain vnet, the controller picks the path (as upstream's operator does)"
                .into(),
        );
    }
    if let Some(ids) = spec.ids.as_ref().filter(|i| i.enabled) {
        notes.push(format!(
            "not emulated: IDS (spec.ids, Suricata on node {}): no traffic mirror or IDS in lab apply",
            ids.node
        ));
    }
    if spec.provider.is_some() {
        notes.push(
            "not emulated: provider (inter-cluster network): a cluster-local network here".into(),
        );
    }
    notes
}

fn plan_overlay(
    state: &LabState,
    topology_file: &std::path::Path,
    m: &Meta,
    v: &Value,
) -> Result<Planned, String> {
    let bad = |msg: String| format!("error when creating {:?}: {}: {msg}", m.origin, m.display());
    let ov: Overlay =
        serde_json::from_value(v.clone()).map_err(|e| bad(format!("invalid Overlay: {e}")))?;
    let topo = overlay::validate(&ov.spec).map_err(bad)?;
    let lab_nodes: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut notes = Vec::new();
    let named: Vec<&String> = topo
        .nodes
        .iter()
        .filter(|n| lab_nodes.contains(&n.as_str()))
        .collect();
    notes.push(format!(
        "topology: {} nodes, {} links; the lab's switches and tunnels are the ones `lab up --topology` made ({} nodes: {}){}",
        topo.nodes.len(),
        topo.links.as_ref().map_or(0, Vec::len),
        lab_nodes.len(),
        lab_nodes.join(", "),
        if named.len() == topo.nodes.len() {
            String::new()
        } else {
            let unknown: Vec<&str> = topo
                .nodes
                .iter()
                .map(String::as_str)
                .filter(|n| !lab_nodes.contains(n))
                .collect();
            format!(
                "; not emulated: the Overlay's own nodes and links (no lab node is named {}; `lab up --topology FILE` takes this topology with nodes n1..nN)",
                unknown.join(", ")
            )
        }
    ));
    if named.len() == topo.nodes.len() {
        // Its nodes are lab nodes: which of its links the lab has.
        let pair = |a: &str, b: &str| {
            if a <= b {
                (a.to_string(), b.to_string())
            } else {
                (b.to_string(), a.to_string())
            }
        };
        let wanted: BTreeSet<(String, String)> = topo
            .links
            .iter()
            .flatten()
            .map(|l| pair(&l.endpoint_a, &l.endpoint_b))
            .collect();
        let have: BTreeSet<(String, String)> = std::fs::read_to_string(topology_file)
            .ok()
            .and_then(|t| l2sm_api::topology::parse(&t).ok())
            .map(|t| t.links.iter().map(|l| pair(&l.a, &l.b)).collect())
            .unwrap_or_default();
        let show = |set: Vec<&(String, String)>| {
            set.iter()
                .map(|(a, b)| format!("{a}-{b}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let missing: Vec<_> = wanted.difference(&have).collect();
        let extra: Vec<_> = have.difference(&wanted).collect();
        if missing.is_empty() && extra.is_empty() {
            notes.push("the lab has exactly the Overlay's links".into());
        }
        if !missing.is_empty() {
            notes.push(format!(
                "not emulated: links {} (the lab has no such tunnel; `lab up --topology FILE` sets the links)",
                show(missing)
            ));
        }
        if !extra.is_empty() {
            notes.push(format!(
                "the lab also has links {} (not in the Overlay; kept)",
                show(extra)
            ));
        }
    }
    if ov.spec.switch_template.is_some() {
        notes.push("not emulated: switchTemplate (the lab runs its own agents)".into());
    }
    if ov.spec.monitor.is_some() {
        notes.push("not emulated: monitor (link probes)".into());
    }
    Ok(Planned {
        meta: m.clone(),
        body: Body::Record,
        notes,
        unchanged: false,
    })
}

struct PodContext<'a> {
    state: &'a LabState,
    webhook: &'a Webhook<MemoryCatalog>,
    nets_by_nad: &'a BTreeMap<String, String>,
    planned: &'a [PodPlan],
}

/// A Pod, or a Deployment's replicas (named as a ReplicaSet would, deterministically:
/// `<deployment>-<template hash>-<5 characters from the hash and the replica index>`).
async fn plan_pods(
    ctx: &PodContext<'_>,
    m: &Meta,
    v: &Value,
    placed: &mut usize,
) -> Result<Planned, String> {
    let bad = |msg: String| format!("error when creating {:?}: {}: {msg}", m.origin, m.display());
    let mut notes = Vec::new();
    let pods: Vec<Value> = if m.kind == "Deployment" {
        let d: Deployment = serde_json::from_value(v.clone())
            .map_err(|e| bad(format!("invalid Deployment: {e}")))?;
        let spec = d.spec.ok_or_else(|| bad("spec is required".into()))?;
        let replicas = spec.replicas.unwrap_or(1);
        let replicas =
            usize::try_from(replicas).map_err(|_| bad(format!("replicas {replicas} < 0")))?;
        let template = serde_json::to_value(&spec.template).map_err(|e| bad(e.to_string()))?;
        let hash = safe_encode(fnv(template.to_string().as_bytes()), 10);
        let labels = template["metadata"]["labels"].clone();
        let selector_ok = spec.selector.match_labels.as_ref().is_none_or(|want| {
            want.iter()
                .all(|(k, val)| labels[k].as_str() == Some(val.as_str()))
        });
        if !selector_ok {
            return Err(bad(
                "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`"
                    .into(),
            ));
        }
        notes.push(
            "not emulated: the ReplicaSet and its rollouts (replicas are plain lab pods)".into(),
        );
        (0..replicas)
            .map(|i| {
                let suffix = safe_encode(fnv(format!("{hash}/{i}").as_bytes()), 5);
                let mut pod = json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": template["metadata"].clone(),
                    "spec": template["spec"].clone(),
                });
                pod["metadata"]["name"] = format!("{}-{hash}-{suffix}", m.name).into();
                pod["metadata"]["namespace"] = m.namespace.clone().into();
                if !pod["metadata"]["labels"].is_object() {
                    pod["metadata"]["labels"] = json!({});
                }
                pod["metadata"]["labels"]["pod-template-hash"] = hash.clone().into();
                pod
            })
            .collect()
    } else {
        vec![v.clone()]
    };
    let mut plans = Vec::new();
    for pod in pods {
        let plan = plan_pod(ctx, m, pod, *placed + plans.len(), &mut notes, &plans).await?;
        plans.push(plan);
    }
    *placed += plans.len();
    Ok(Planned {
        meta: m.clone(),
        body: Body::Pods(plans),
        notes,
        unchanged: false,
    })
}

/// Kubernetes' `SafeEncodeString` alphabet (no vowels, no look-alikes), `len` characters.
fn safe_encode(mut h: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

async fn plan_pod(
    ctx: &PodContext<'_>,
    m: &Meta,
    mut value: Value,
    index: usize,
    notes: &mut Vec<String>,
    siblings: &[PodPlan],
) -> Result<PodPlan, String> {
    let bad = |msg: String| format!("error when creating {:?}: {}: {msg}", m.origin, m.display());
    if value["metadata"]["namespace"].as_str().is_none() {
        value["metadata"]["namespace"] = m.namespace.clone().into();
    }
    let pod: Pod =
        serde_json::from_value(value.clone()).map_err(|e| bad(format!("invalid Pod: {e}")))?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = m.namespace.clone();
    let key = lab_pod_name(&namespace, &name);
    if !crate::valid_pod_name(&key) {
        return Err(bad(format!(
            "lab pod name {key:?} is invalid: the lab takes 1-40 lowercase letters, digits and '-' (<namespace>-<name> outside default)"
        )));
    }
    let k8s = format!("{namespace}/{name}");
    let taken = ctx.planned.iter().chain(siblings).any(|p| p.key == key)
        || ctx.state.pods.get(&key).is_some_and(|p| {
            p.k8s.as_deref() != Some(k8s.as_str()) || !recorded_pod(ctx.state, &key)
        });
    if taken {
        return Err(bad(format!("a lab pod named {key:?} exists already")));
    }
    let spec = pod.spec.clone().unwrap_or_default();
    // The mutating webhook, as the API server calls it on CREATE.
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("lab-apply-{index}"),
            "operation": "CREATE",
            "namespace": namespace,
            "object": value,
        }
    });
    let answer = ctx
        .webhook
        .review(review.to_string().as_bytes())
        .await
        .map_err(bad)?;
    let response = &answer["response"];
    if response["allowed"].as_bool() != Some(true) {
        let msg = response["status"]["message"].as_str().unwrap_or("denied");
        return Err(format!(
            "Error from server: error when creating {:?}: admission webhook {WEBHOOK_NAME:?} denied the request: {msg}",
            m.origin
        ));
    }
    let multus = match response["patch"].as_str() {
        Some(b64) => {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| bad(e.to_string()))?;
            let ops: Vec<Value> = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
            let multus_path = format!(
                "/metadata/annotations/{}",
                MULTUS_ANNOTATION.replace('/', "~1")
            );
            ops.iter()
                .find(|o| o["path"] == multus_path.as_str())
                .and_then(|o| o["value"].as_str())
                .map(str::to_string)
        }
        None => None,
    };
    let mut interfaces = Vec::new();
    let has_request = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(l2sm_operator::annotations::NETWORKS_ANNOTATION));
    let opted_in = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("l2sm"))
        .map(String::as_str)
        == Some("true");
    if has_request && !opted_in {
        notes.push(format!(
            "pod {name}: no interfaces: without the label l2sm: \"true\" the webhook does not see it (as in a cluster)"
        ));
    }
    if let Some(value) = multus {
        let elements = parse_multus(&value).map_err(|e| bad(e.to_string()))?;
        for (i, el) in elements.iter().enumerate() {
            let Some(network) = ctx.nets_by_nad.get(&el.name) else {
                return Err(bad(format!(
                    "{MULTUS_ANNOTATION}: network-attachment-definition {:?} not found",
                    el.name
                )));
            };
            let ips: Vec<IpNet> = el
                .ips
                .iter()
                .map(|s| s.parse().map_err(|_| bad(format!("invalid IP {s:?}"))))
                .collect::<Result<_, _>>()?;
            interfaces.push(Iface {
                network: network.clone(),
                nad: nad_cni_config(network),
                ifname: el
                    .interface
                    .clone()
                    .unwrap_or_else(|| format!("net{}", i + 1)),
                ips,
                mac: el.mac.clone(),
            });
        }
    }
    for iface in &interfaces {
        for ip in &iface.ips {
            let host = ip.prefix_len() >= ip.max_prefix_len().saturating_sub(1);
            let broadcast = matches!(ip, IpNet::V4(v4) if v4.addr() == v4.broadcast());
            if !host && (ip.addr() == ip.network() || broadcast) {
                return Err(bad(format!(
                    "network {:?}: {ip} is the {} address of its subnet",
                    iface.network,
                    if broadcast { "broadcast" } else { "network" }
                )));
            }
        }
    }
    // Static addresses must be free on their network (the controller checks networks with
    // address management; the lab the others, as `l2sm attach` does).
    for iface in &interfaces {
        for ip in &iface.ips {
            let clash = ctx
                .state
                .pods
                .iter()
                .flat_map(|(k, p)| p.attachments.iter().map(move |a| (k.clone(), a)))
                .find(|(_, a)| {
                    a.network == iface.network && a.ips.iter().any(|x| x.addr() == ip.addr())
                })
                .map(|(k, _)| k)
                .or_else(|| {
                    ctx.planned
                        .iter()
                        .chain(siblings)
                        .find(|p| {
                            p.interfaces.iter().any(|i| {
                                i.network == iface.network
                                    && i.ips.iter().any(|x| x.addr() == ip.addr())
                            })
                        })
                        .map(|p| p.key.clone())
                });
            if let Some(other) = clash {
                return Err(bad(format!(
                    "IP {} is already used by pod {other:?} on network {:?}",
                    ip.addr(),
                    iface.network
                )));
            }
        }
    }
    let node = place(ctx.state, &spec, index, &name, notes);
    let mut effects = Vec::new();
    for c in &spec.containers {
        container_effects(&name, c, &mut effects, notes);
    }
    if let Some(sysctls) = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref())
    {
        for s in sysctls {
            match (effects::sysctl_key(&s.name), s.value.as_str()) {
                (Some(key), "0" | "1") => effects.push((
                    Effect::Sysctl {
                        key,
                        value: s.value.clone(),
                    },
                    format!("securityContext.sysctls {}={}", s.name, s.value),
                )),
                _ => notes.push(format!(
                    "pod {name}: not emulated: sysctl {}={}",
                    s.name, s.value
                )),
            }
        }
    }
    pod_notes(&name, &spec, notes);
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    Ok(PodPlan {
        key,
        k8s,
        node,
        labels,
        interfaces,
        effects,
    })
}

fn recorded_pod(state: &LabState, key: &str) -> bool {
    state
        .applied
        .iter()
        .any(|a| a.pods.iter().any(|p| p == key))
}

/// The node: `nodeName` or the `kubernetes.io/hostname` node selector when it names a lab
/// node, else round-robin over the lab's nodes in apply order.
fn place(
    state: &LabState,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    index: usize,
    pod: &str,
    notes: &mut Vec<String>,
) -> String {
    let wanted = spec.node_name.clone().or_else(|| {
        spec.node_selector
            .as_ref()
            .and_then(|s| s.get("kubernetes.io/hostname").cloned())
    });
    let rr = state
        .nodes
        .get(index % state.nodes.len().max(1))
        .map(|n| n.name.clone())
        .unwrap_or_default();
    match wanted {
        Some(w) if state.nodes.iter().any(|n| n.name == w) => w,
        Some(w) => {
            notes.push(format!(
                "pod {pod}: node {w:?} is not a lab node: placed on {rr} (round-robin)"
            ));
            rr
        }
        None => rr,
    }
}

fn caps(c: &Container) -> (bool, bool) {
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let net_admin = privileged
        || sc
            .and_then(|s| s.capabilities.as_ref())
            .and_then(|c| c.add.as_ref())
            .is_some_and(|add| {
                add.iter()
                    .any(|a| a == "NET_ADMIN" || a == "ALL" || a == "CAP_NET_ADMIN")
            });
    (net_admin, privileged)
}

fn container_effects(
    pod: &str,
    c: &Container,
    out: &mut Vec<(Effect, String)>,
    notes: &mut Vec<String>,
) {
    let script = effects::parse_container(
        c.command.as_deref().unwrap_or_default(),
        c.args.as_deref().unwrap_or_default(),
    );
    let (net_admin, privileged) = caps(c);
    let mut skipped: Vec<String> = script.other.iter().map(|s| format!("`{s}`")).collect();
    for (e, text) in script.effects {
        let allowed = if e.needs_privileged() {
            privileged
        } else {
            net_admin
        };
        if allowed {
            out.push((e, text));
        } else {
            let need = if e.needs_privileged() {
                "privileged (a writable /proc/sys)"
            } else {
                "NET_ADMIN"
            };
            notes.push(format!(
                "pod {pod}: not emulated: `{text}`: it would fail in a cluster, container {} is not {need}",
                c.name
            ));
        }
    }
    let image = c.image.as_deref().unwrap_or("(none)");
    let mut what = format!(
        "container {} (image {image}; the lab runs no processes from manifests)",
        c.name
    );
    if !skipped.is_empty() {
        let which = if c.command.as_ref().is_none_or(Vec::is_empty) {
            "its args (for the image's entrypoint)"
        } else {
            "its commands"
        };
        what.push_str(&format!(", {which} {}", skipped.join(", ")));
        skipped.clear();
    }
    notes.push(format!("pod {pod}: not emulated: {what}"));
    let mut more = Vec::new();
    if c.ports.as_ref().is_some_and(|p| !p.is_empty()) {
        more.push("ports");
    }
    if c.env.as_ref().is_some_and(|e| !e.is_empty()) || c.env_from.is_some() {
        more.push("env");
    }
    if c.volume_mounts.as_ref().is_some_and(|v| !v.is_empty()) {
        more.push("volumeMounts");
    }
    if c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some() {
        more.push("probes");
    }
    if c.resources.is_some() {
        more.push("resources");
    }
    if !more.is_empty() {
        notes.push(format!(
            "pod {pod}: not emulated: container {}: {}",
            c.name,
            more.join(", ")
        ));
    }
}

fn pod_notes(pod: &str, spec: &k8s_openapi::api::core::v1::PodSpec, notes: &mut Vec<String>) {
    let mut more = Vec::new();
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        more.push("initContainers");
    }
    if spec.volumes.as_ref().is_some_and(|v| !v.is_empty()) {
        more.push("volumes");
    }
    if spec.affinity.is_some() {
        more.push("affinity");
    }
    if spec.tolerations.as_ref().is_some_and(|t| !t.is_empty()) {
        more.push("tolerations");
    }
    if spec.host_network == Some(true) {
        more.push("hostNetwork");
    }
    if spec.service_account_name.is_some() {
        more.push("serviceAccountName");
    }
    if !more.is_empty() {
        notes.push(format!("pod {pod}: not emulated: {}", more.join(", ")));
    }
}

fn plan_quarantine(m: &Meta, v: &Value, networks: &Networks) -> Result<Planned, String> {
    let bad = |msg: String| format!("error when creating {:?}: {}: {msg}", m.origin, m.display());
    let qpr: QuarantinePodRequest = serde_json::from_value(v.clone())
        .map_err(|e| bad(format!("invalid QuarantinePodRequest: {e}")))?;
    let failed = |f: quarantine::Failure| bad(format!("{}: {}", f.reason, f.message));
    let spec = &qpr.spec;
    let net_sel = quarantine::selector(
        &spec.selector.l2_network_selector,
        "InvalidL2NetworkSelector",
        "L2Network",
    )
    .map_err(failed)?;
    let net_sel: Selector = spec
        .selector
        .l2_network_selector
        .clone()
        .try_into()
        .map_err(|e| {
            bad(format!(
                "InvalidL2NetworkSelector: invalid L2Network selector: {e} ({net_sel})"
            ))
        })?;
    // The namespace's networks the selector matches, as L2Network objects for the
    // reconciler's own decision.
    let matched: Vec<L2Network> = networks
        .iter()
        .filter(|((ns, _), labels)| *ns == m.namespace && net_sel.matches(labels))
        .filter_map(|((ns, name), labels)| {
            serde_json::from_value(json!({
                "apiVersion": format!("{GROUP}/v1"),
                "kind": "L2Network",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"type": "vnet"},
            }))
            .ok()
        })
        .collect();
    let source = quarantine::pick_source(&matched).map_err(failed)?;
    let target = spec.target_l2_network.clone();
    if !networks.contains_key(&(m.namespace.clone(), target.clone())) {
        return Err(bad(format!(
            "TargetL2NetworkNotFound: target L2Network {target:?} does not exist"
        )));
    }
    if source == target {
        return Err(bad(
            "InvalidRequest: source and target L2Network are the same".into(),
        ));
    }
    quarantine::selector(
        &spec.selector.pod_label_selector,
        "InvalidPodSelector",
        "pod",
    )
    .map_err(failed)?;
    let pods: Selector = spec
        .selector
        .pod_label_selector
        .clone()
        .try_into()
        .map_err(|e| bad(format!("InvalidPodSelector: invalid pod selector: {e}")))?;
    Ok(Planned {
        meta: m.clone(),
        body: Body::Quarantine {
            source,
            target,
            pods,
        },
        notes: Vec::new(),
        unchanged: false,
    })
}

/// What to undo when a later step fails.
enum Undo {
    Network(String),
    Pod(String),
    Move(Move),
}

async fn act(
    lab: &Lab,
    state: &mut LabState,
    api: &ControllerClient,
    p: &Planned,
    undo: &mut Vec<Undo>,
) -> anyhow::Result<(Applied, String)> {
    let m = &p.meta;
    let mut rec = Applied {
        kind: m.kind.clone(),
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        labels: m.labels.clone(),
        network: None,
        pods: Vec::new(),
        moves: Vec::new(),
        digest: m.digest.clone(),
    };
    let line = match &p.body {
        Body::Network { req, exists } => {
            if *exists {
                format!("{} created (the lab's network existed)", m.display())
            } else {
                // As the L2Network reconciler: the controller network of that name.
                let (created, _) = api.create_network(req).await?;
                if created {
                    undo.push(Undo::Network(req.name.clone()));
                    rec.network = Some(req.name.clone());
                }
                format!("{} created", m.display())
            }
        }
        Body::Record => {
            if p.notes.iter().all(|n| n.starts_with("not emulated")) && m.kind != "Overlay" {
                format!("{} skipped", m.display())
            } else {
                format!("{} created", m.display())
            }
        }
        Body::Pods(pods) => {
            let mut summary = Vec::new();
            for pod in pods {
                undo.push(Undo::Pod(pod.key.clone()));
                create_pod(lab, state, pod).await?;
                rec.pods.push(pod.key.clone());
                if m.kind == "Deployment" {
                    rec.labels = pod.labels.clone();
                }
                let ifaces: Vec<String> = state
                    .pods
                    .get(&pod.key)
                    .map(|s| {
                        s.attachments
                            .iter()
                            .map(|a| {
                                let ips: Vec<String> =
                                    a.ips.iter().map(ToString::to_string).collect();
                                format!("{} {} {}", a.ifname, a.network, ips.join(","))
                                    .trim_end()
                                    .to_string()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let effects: Vec<String> =
                    pod.effects.iter().map(|(_, t)| format!("`{t}`")).collect();
                let mut s = format!("{} on {}", pod.k8s, pod.node);
                if !ifaces.is_empty() {
                    s.push_str(&format!(": {}", ifaces.join("; ")));
                }
                if !effects.is_empty() {
                    s.push_str(&format!("; applied {}", effects.join(", ")));
                }
                summary.push(s);
            }
            format!("{} created ({})", m.display(), summary.join(" | "))
        }
        Body::Quarantine {
            source,
            target,
            pods,
        } => {
            if api.get_network(target).await?.is_none() {
                bail!("TargetL2NetworkUnavailable: target L2Network {target:?} does not exist in the SDN controller");
            }
            let labels = pod_labels(state, &m.namespace);
            let mut moved = 0;
            let keys: Vec<String> = state.pods.keys().cloned().collect();
            for key in keys {
                let Some(l) = labels.get(&key) else { continue };
                if !pods.matches(l) {
                    continue;
                }
                let Some(ps) = state.pods.get(&key) else {
                    continue;
                };
                let atts: Vec<l2sm_operator::reconcile::pod::Attachment> = ps
                    .attachments
                    .iter()
                    .map(|a| l2sm_operator::reconcile::pod::Attachment {
                        network: a.network.clone(),
                        interface: Some(a.ifname.clone()),
                        port: Some(a.port.clone()),
                        ..Default::default()
                    })
                    .collect();
                let requested: Vec<String> = atts.iter().map(|a| a.network.clone()).collect();
                match quarantine::pod_action(&requested, &atts, source, target, None) {
                    quarantine::PodAction::Move { index, port } => {
                        let id = port
                            .parse()
                            .map_err(|e| anyhow!("PodMoveFailed: port {port:?}: {e}"))?;
                        api.move_port(id, source, target)
                            .await
                            .map_err(|e| anyhow!("PodMoveFailed: pod {key}: {e}"))?;
                        let mv = Move {
                            pod: key.clone(),
                            port: port.clone(),
                            from: source.clone(),
                            to: target.clone(),
                        };
                        undo.push(Undo::Move(mv.clone()));
                        if let Some(a) = state
                            .pods
                            .get_mut(&key)
                            .and_then(|p| p.attachments.get_mut(index))
                        {
                            a.network = target.clone();
                        }
                        lab.save(state)?;
                        rec.moves.push(mv);
                        moved += 1;
                    }
                    quarantine::PodAction::PortUnknown => {
                        bail!("PodMoveFailed: the switch port of pod {key} on {source:?} is not known yet")
                    }
                    quarantine::PodAction::Skip | quarantine::PodAction::AlreadyMoved => {}
                }
            }
            format!(
                "{} created (Available=True PodsMoved: moved {moved} pod(s) from {source:?} to {target:?})",
                m.display()
            )
        }
    };
    Ok((rec, line))
}

/// Labels of the lab pods `lab apply` made in `namespace` (earlier applies and this one).
fn pod_labels(state: &LabState, namespace: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in state
        .applied
        .iter()
        .filter(|a| a.namespace == namespace && (a.kind == "Pod" || a.kind == "Deployment"))
    {
        for p in &a.pods {
            out.insert(p.clone(), a.labels.clone());
        }
    }
    for (k, p) in &state.pods {
        if let Some(l) = pending_labels(p, namespace) {
            out.entry(k.clone()).or_insert(l);
        }
    }
    out
}

/// Pods made by the apply in progress carry their labels in the state until recorded.
fn pending_labels(p: &PodState, namespace: &str) -> Option<BTreeMap<String, String>> {
    let k8s = p.k8s.as_deref()?;
    let (ns, _) = k8s.split_once('/')?;
    (ns == namespace).then(|| p.labels.clone())
}

async fn create_pod(lab: &Lab, state: &mut LabState, pod: &PodPlan) -> anyhow::Result<()> {
    let identity = PodIdentity::parse(&pod.k8s).ok_or_else(|| anyhow!("bad pod name"))?;
    if pod.interfaces.is_empty() {
        l2sm_netns::create_named(&lab.pod_ns(&pod.key))?;
    }
    for iface in &pod.interfaces {
        let opts = AttachOptions {
            node: pod.node.clone(),
            pod: pod.key.clone(),
            network: iface.network.clone(),
            ips: iface.ips.iter().map(ToString::to_string).collect(),
            ifname: Some(iface.ifname.clone()),
            mac: iface.mac.clone(),
            mtu: None,
            port_security: None,
            cluster: None,
        };
        let nad = NadAttach {
            config: iface.nad.clone(),
            pod: identity.clone(),
        };
        attach_in(lab, state, opts, Some(nad)).await?;
    }
    let entry = state
        .pods
        .entry(pod.key.clone())
        .or_insert_with(|| PodState {
            node: pod.node.clone(),
            ..Default::default()
        });
    entry.k8s = Some(pod.k8s.clone());
    entry.labels = pod.labels.clone();
    lab.save(state)?;
    apply_effects(lab, &pod.key, &pod.effects).await
}

/// Applies recognised effects in the pod's namespace: netlink for addresses, routes and
/// links, the namespace's own `/proc/sys/net` (written from a thread inside it) for sysctls.
async fn apply_effects(lab: &Lab, pod: &str, list: &[(Effect, String)]) -> anyhow::Result<()> {
    if list.is_empty() {
        return Ok(());
    }
    let ns = l2sm_netns::Netns::open_named(&lab.pod_ns(pod))?;
    let list = list.to_vec();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for (e, text) in list {
            let r: l2sm_netns::Result<()> = match &e {
                Effect::AddAddress { dev, addr } => {
                    let (dev, addr) = (dev.clone(), *addr);
                    l2sm_netns::with_netlink(&ns, move |nl| match nl.add_address(&dev, addr) {
                        Err(e) if e.is_already_exists() => Ok(()),
                        r => r,
                    })
                }
                Effect::AddRoute { dst, via, dev } => {
                    let (dst, via, dev) = (*dst, *via, dev.clone());
                    l2sm_netns::with_netlink(&ns, move |nl| nl.add_route(dst, via, dev.as_deref()))
                }
                Effect::LinkUp { dev } => {
                    let dev = dev.clone();
                    l2sm_netns::with_netlink(&ns, move |nl| nl.set_up(&dev))
                }
                Effect::Sysctl { key, value } => l2sm_netns::set_sysctl(&ns, key, value),
            };
            r.map_err(|err| anyhow!("`{text}`: {err}"))?;
        }
        Ok(())
    })
    .await?
}

async fn rollback(
    lab: &Lab,
    state: &mut LabState,
    api: &ControllerClient,
    undo: Vec<Undo>,
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for u in undo.into_iter().rev() {
        match u {
            Undo::Move(mv) => {
                let back = async {
                    let id = mv.port.parse().map_err(|e| anyhow!("{e}"))?;
                    api.move_port(id, &mv.to, &mv.from).await?;
                    if let Some(a) = state
                        .pods
                        .get_mut(&mv.pod)
                        .and_then(|p| p.attachments.iter_mut().find(|a| a.port == mv.port))
                    {
                        a.network = mv.from.clone();
                    }
                    anyhow::Ok(())
                };
                if let Err(e) = back.await {
                    problems.push(format!("moving {} back: {e}", mv.pod));
                }
            }
            Undo::Pod(key) => {
                if state.pods.contains_key(&key) {
                    if let Err(e) = detach_in(lab, state, &key, None).await {
                        problems.push(format!("pod {key}: {e:#}"));
                    }
                } else if let Err(e) = l2sm_netns::delete_named(&lab.pod_ns(&key)) {
                    problems.push(format!("pod {key}: {e}"));
                }
            }
            Undo::Network(name) => {
                if let Err(e) = api.delete_network(&name).await {
                    problems.push(format!("network {name}: {e}"));
                }
            }
        }
    }
    lab.save(state)?;
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(problems.join("; "))
    }
}
