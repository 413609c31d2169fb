//! Overlay: the node agent runs on every listed node with the overlay's topology. The
//! topology goes into a ConfigMap in the agent's file format (nodes with their InternalIP,
//! links); the agent re-reads it when it changes, so topology edits re-link the switches
//! without restarting anything. The agents run as one DaemonSet pinned to the listed nodes,
//! with the image and resources of `switchTemplate`'s first container.
//!
//! The DaemonSet and the ConfigMap live in the operator's own namespace, whatever namespace
//! the Overlay is in: the agents read the controller's credentials Secret, which exists only
//! there, and only that namespace admits privileged host-network pods (Pod Security level
//! `privileged`). Owner references cannot cross namespaces, so the objects carry the owning
//! Overlay in labels and an annotation, the Overlay's finalizer deletes them, and the
//! controller maps their events back to the Overlay by the annotation. Their names join the
//! Overlay's namespace and name with a hash of both (same-named Overlays of two namespaces
//! never collide) and stay within Kubernetes' 63-character limit.
//!
//! An init container installs the CNI plugin (`l2sm install-cni`) into the host directory
//! the operator is configured with, so wherever an agent runs, the plugin Multus calls is
//! there. The Overlay's `AgentsReady` condition says why agents are not running (a pod
//! waiting with `CreateContainerConfigError`, `ImagePullBackOff`, …, or pods the DaemonSet
//! could not create).
//!
//! The `switchTemplate` is reviewed first ([`review_template`]): whoever may create an
//! Overlay must not choose code that runs as root on the nodes, so a template with init
//! containers, a command, volumes, an image outside the allow-list, … is refused with the
//! `TemplateAccepted` condition and nothing is written (agents of an earlier accepted
//! template are left as they were).
//!
//! `interfaceNumber` is accepted and reported: ports are created when pods attach.

use super::{
    bool_status, now, patch_status, tracked, Context, Error, Result, Settings, FIELD_MANAGER,
};
use crate::crd::{
    condition, set_condition, Overlay, OverlaySpec, OverlayStatus, SwitchTemplateSpec,
    TopologySpec, CONDITION_READY, FINALIZER,
};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource,
    HostPathVolumeSource, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec, SecretKeySelector,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use l2sm_api::topology::{LinkEntry, NodeEntry, TopologyFile};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Key of the topology in the ConfigMap.
pub const TOPOLOGY_KEY: &str = "topology.json";
/// Where the agent container finds it.
pub const CONFIG_DIR: &str = "/etc/l2sm";
/// Condition type of the `interfaceNumber` note.
pub const CONDITION_PORTS: &str = "PortsOnDemand";
/// Name of the agent container (upstream's switch container name, which monitoring looks up).
pub const CONTAINER_NAME: &str = "l2sm-switch";

/// Condition type saying whether the agents run, and why not.
pub const CONDITION_AGENTS: &str = "AgentsReady";
/// Label on the agent objects: `app=l2sm-agent` (as before).
pub const APP_LABEL: (&str, &str) = ("app", "l2sm-agent");
/// Label on the agent objects: the owning Overlay's name (hashed when longer than a label).
pub const OVERLAY_LABEL: &str = "l2sm.l2sm.k8s.local/overlay";
/// Label on the agent objects: the owning Overlay's namespace.
pub const OVERLAY_NAMESPACE_LABEL: &str = "l2sm.l2sm.k8s.local/overlay-namespace";
/// Annotation on the agent objects: `<namespace>/<name>` of the owning Overlay, exact
/// (labels may be hashed), which the controller maps events back by.
pub const OVERLAY_ANNOTATION: &str = "l2sm.l2sm.k8s.local/overlay";
/// Name of the init container installing the CNI plugin.
pub const INSTALL_CNI_CONTAINER: &str = "install-cni";
/// Where the init container sees the host's CNI plugin directory.
pub const CNI_BIN_MOUNT: &str = "/host/cni-bin";
/// Longest name of the objects made per Overlay (a DNS label, which also fits label values).
const MAX_NAME: usize = 63;
/// Host directory holding the node's own switch key and certificate (`tls.key`, `tls.crt`,
/// and the CA `ca.crt`), issued per node (docs/kubernetes.md, "Switch certificates"). The
/// agent sees it at the same path, read-only, and hands the paths to ovs-vswitchd, which reads
/// the files itself on the host.
pub const SWITCH_TLS_DIR: &str = "/var/lib/l2sm/switch-tls";

/// FNV-1a of `s`, folded to 32 bits: enough to tell Overlays apart in a name.
fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:08x}", (h ^ (h >> 32)) as u32)
}

/// `<prefix><namespace>-<overlay>-<hash><suffix>`, the readable part cut so the whole stays
/// within 63 characters; the hash of `namespace/overlay` keeps names apart.
pub(crate) fn bounded_name(prefix: &str, namespace: &str, overlay: &str, suffix: &str) -> String {
    let hash = short_hash(&format!("{namespace}/{overlay}"));
    let room = MAX_NAME - prefix.len() - suffix.len() - hash.len() - 1;
    let readable = format!("{namespace}-{overlay}");
    let cut: String = readable.chars().take(room).collect();
    let cut = cut.trim_end_matches(['-', '.']);
    format!("{prefix}{cut}-{hash}{suffix}")
}

/// Name of the topology ConfigMap of Overlay `namespace/overlay` (in the operator's
/// namespace).
pub fn config_map_name(namespace: &str, overlay: &str) -> String {
    bounded_name("l2sm-agent-", namespace, overlay, "-topology")
}

/// Name of the agent DaemonSet of Overlay `namespace/overlay` (in the operator's namespace).
pub fn daemon_set_name(namespace: &str, overlay: &str) -> String {
    bounded_name("l2sm-agent-", namespace, overlay, "")
}

/// The Overlay an agent object belongs to, from its annotation (the controller's mapper).
pub fn overlay_of<K: ResourceExt>(obj: &K) -> Option<ObjectRef<Overlay>> {
    let (ns, name) = obj.annotations().get(OVERLAY_ANNOTATION)?.split_once('/')?;
    if ns.is_empty() || name.is_empty() {
        return None;
    }
    Some(ObjectRef::new(name).within(ns))
}

/// Checks the topology: present, nodes named once, links between listed nodes.
pub fn validate(spec: &OverlaySpec) -> std::result::Result<&TopologySpec, String> {
    let topo = spec
        .topology
        .as_ref()
        .ok_or("spec.topology is required: list the nodes that get a switch")?;
    if topo.nodes.is_empty() {
        return Err("spec.topology.nodes is empty".into());
    }
    let mut seen = BTreeSet::new();
    for n in &topo.nodes {
        if n.trim().is_empty() {
            return Err("spec.topology.nodes has an empty name".into());
        }
        if !seen.insert(n.as_str()) {
            return Err(format!("node {n:?} is listed twice in spec.topology.nodes"));
        }
    }
    for l in topo.links.iter().flatten() {
        for end in [&l.endpoint_a, &l.endpoint_b] {
            if !seen.contains(end.as_str()) {
                return Err(format!(
                    "link {}-{}: node {end:?} is not in spec.topology.nodes",
                    l.endpoint_a, l.endpoint_b
                ));
            }
        }
        if l.endpoint_a == l.endpoint_b {
            return Err(format!("link {0}-{0} joins a node to itself", l.endpoint_a));
        }
    }
    if spec.provider.domain.iter().all(|d| d.trim().is_empty()) {
        return Err("spec.provider.domain names no controller address".into());
    }
    if spec.interface_number < 0 {
        return Err(format!(
            "spec.interfaceNumber is {}; it must not be negative",
            spec.interface_number
        ));
    }
    Ok(topo)
}

/// The agent's topology file for the overlay: nodes with the addresses known, links as
/// given (none: full mesh). Nodes without a known address are listed by name only.
pub fn topology_file(topo: &TopologySpec, addresses: &BTreeMap<String, String>) -> String {
    let file = TopologyFile {
        nodes: topo
            .nodes
            .iter()
            .map(|n| match addresses.get(n) {
                Some(ip) => NodeEntry::Full {
                    name: n.clone(),
                    node_ip: Some(ip.clone()),
                    dpid: None,
                },
                None => NodeEntry::Name(n.clone()),
            })
            .collect(),
        links: topo.links.as_ref().map(|links| {
            links
                .iter()
                .map(|l| LinkEntry::tunnel(&l.endpoint_a, &l.endpoint_b))
                .collect()
        }),
        addresses: BTreeMap::new(),
    };
    // Through a Value, whose keys are sorted: the same text earlier operators wrote, so an
    // upgrade does not rewrite the ConfigMap. Pretty, so `kubectl get cm -o yaml` is
    // readable. Plain strings: serialising cannot fail.
    serde_json::to_value(&file)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_default()
}

/// Whether an image is upstream's switch (talpa), which cannot run our agent.
fn is_upstream_switch_image(image: &str) -> bool {
    let repo = image.split(['@', ':']).next().unwrap_or(image);
    repo.ends_with("/talpa") || repo == "talpa" || repo.ends_with("/l2sm-switch")
}

/// Condition type saying whether the Overlay's `switchTemplate` is accepted.
pub const CONDITION_TEMPLATE: &str = "TemplateAccepted";
/// Reason of a refused `switchTemplate` (on [`CONDITION_TEMPLATE`] and `Ready`).
pub const REASON_TEMPLATE_REFUSED: &str = "TemplateRefused";

/// Upstream's switch arguments (talpa's `sps-init --node_name=…` and `ned`): accepted in a
/// template and ignored, since the agent runs with its own arguments.
fn is_upstream_switch_args(args: &[String]) -> bool {
    match args.split_first() {
        None => true,
        Some((first, rest)) => {
            (first == "sps-init" || first == "ned")
                && rest.iter().all(|a| a.starts_with("--node_name="))
        }
    }
}

/// The repository of an image reference (`host:5000/a/b:tag@sha256:…` → `host:5000/a/b`).
fn image_repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// Whether `image` may run as the agent: the operator's own agent image, or an entry of the
/// allow-list (exact, or `repository:*` for any tag or digest of that repository).
pub fn image_allowed(image: &str, settings: &Settings) -> bool {
    image == settings.agent_image
        || settings
            .allowed_agent_images
            .iter()
            .any(|a| match a.strip_suffix(":*") {
                Some(repo) => image_repository(image) == repo,
                None => image == a,
            })
}

/// Whether a serialised field is absent in effect (null, empty list or object).
fn is_empty_json(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Container fields a template may set; everything else is refused.
const TEMPLATE_CONTAINER_FIELDS: [&str; 7] = [
    "name",
    "image",
    "imagePullPolicy",
    "resources",
    "args",
    "env",
    "securityContext",
];

/// What the agent gets from an accepted `switchTemplate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateReview {
    /// Image of the agent (and its init containers).
    pub image: String,
    /// What of the template was replaced or ignored, for the status.
    pub note: Option<String>,
}

/// Reviews an Overlay's `switchTemplate` (pure). The agent pods are privileged, on the host
/// network and PID namespace of every listed node, so whoever may create an Overlay must not
/// choose what they run: an image outside the allow-list, init containers, a command, volumes
/// or mounts, environment from Secrets or ConfigMaps, probes, lifecycle hooks or a
/// securityContext are refused (the error names the field). Allowed: an image from the
/// allow-list (upstream's switch image maps to the agent image), `imagePullPolicy`,
/// `resources`; upstream's own switch settings (`args` `sps-init`/`ned`, plain or `fieldRef`
/// `env`, the `NET_ADMIN` capability, `hostNetwork`) are accepted and ignored.
pub fn review_template(
    template: Option<&SwitchTemplateSpec>,
    settings: &Settings,
) -> std::result::Result<TemplateReview, String> {
    const AT: &str = "spec.switchTemplate.spec";
    let own = || TemplateReview {
        image: settings.agent_image.clone(),
        note: None,
    };
    let Some(pod) = template.and_then(|t| t.spec.as_ref()) else {
        return Ok(own());
    };
    if pod.init_containers.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(format!(
            "{AT}.initContainers is refused: init containers would run as root on the nodes; \
             the operator adds its own"
        ));
    }
    if let Some(v) = pod.volumes.iter().flatten().next() {
        let kind = if v.host_path.is_some() {
            " (hostPath)"
        } else {
            ""
        };
        return Err(format!(
            "{AT}.volumes is refused: volume {:?}{kind} would be mounted into a privileged \
             agent; the operator mounts what the agent needs",
            v.name
        ));
    }
    if pod.containers.len() > 1 {
        return Err(format!(
            "{AT}.containers[1] ({:?}) is refused: the agent pod runs only the agent container",
            pod.containers[1].name
        ));
    }
    let Some(c) = pod.containers.first() else {
        return Ok(own());
    };
    let at = format!("{AT}.containers[0]");
    let fields = serde_json::to_value(c).map_err(|e| format!("{at}: {e}"))?;
    for (k, v) in fields.as_object().into_iter().flatten() {
        if !TEMPLATE_CONTAINER_FIELDS.contains(&k.as_str()) && !is_empty_json(v) {
            return Err(format!(
                "{at}.{k} is refused: the agent runs privileged on every listed node, so a \
                 template may set only image (from the operator's allow-list), imagePullPolicy \
                 and resources"
            ));
        }
    }
    let mut ignored = Vec::new();
    if let Some(args) = c.args.as_deref().filter(|a| !a.is_empty()) {
        if !is_upstream_switch_args(args) {
            return Err(format!(
                "{at}.args is refused: the agent runs with the operator's arguments (only \
                 upstream's switch arguments `sps-init`/`ned` are accepted, and ignored)"
            ));
        }
        ignored.push("args");
    }
    if let Some(env) = c.env.as_deref().filter(|e| !e.is_empty()) {
        for (i, e) in env.iter().enumerate() {
            let from = e.value_from.as_ref();
            if from.is_some_and(|f| f.secret_key_ref.is_some() || f.config_map_key_ref.is_some()) {
                return Err(format!(
                    "{at}.env[{i}] ({:?}) is refused: environment from Secrets or ConfigMaps \
                     would hand them to a privileged agent",
                    e.name
                ));
            }
        }
        ignored.push("env");
    }
    if let Some(sc) = &c.security_context {
        let upstream = serde_json::to_value(sc)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .is_some_and(|o| {
                o.iter().all(|(k, v)| {
                    is_empty_json(v)
                        || k == "capabilities"
                            && v.as_object().is_some_and(|caps| {
                                caps.iter().all(|(ck, cv)| {
                                    is_empty_json(cv)
                                        || ck == "add"
                                            && cv
                                                .as_array()
                                                .is_some_and(|a| a.iter().all(|x| x == "NET_ADMIN"))
                                })
                            })
                })
            });
        if !upstream {
            return Err(format!(
                "{at}.securityContext is refused: the operator sets the agent's security \
                 context (only upstream's `capabilities.add: [NET_ADMIN]` is accepted, and \
                 ignored)"
            ));
        }
        ignored.push("securityContext");
    }
    let mut notes = Vec::new();
    let image = match c.image.as_deref() {
        None => settings.agent_image.clone(),
        Some(img) if is_upstream_switch_image(img) => {
            notes.push(format!(
                "switchTemplate image {img} is upstream's switch; the L2S-M agent image {} runs instead",
                settings.agent_image
            ));
            settings.agent_image.clone()
        }
        Some(img) if image_allowed(img, settings) => img.to_string(),
        Some(img) => {
            let mut allowed = vec![settings.agent_image.as_str()];
            allowed.extend(settings.allowed_agent_images.iter().map(String::as_str));
            return Err(format!(
                "{at}.image {img:?} is refused: not in the operator's allowed agent images \
                 ({}; operator flag --allowed-agent-images)",
                allowed.join(", ")
            ));
        }
    };
    if !ignored.is_empty() {
        notes.push(format!(
            "switchTemplate {} (upstream's switch settings) ignored: the agent runs with its own",
            ignored.join(", ")
        ));
    }
    Ok(TemplateReview {
        image,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

/// The agent container: the image of the reviewed template ([`review_template`]), its pull
/// policy and resources, and the operator's command, arguments, environment, mounts and
/// security context. The note says what of the template was not used; Err: the template is
/// refused (the message names the field).
pub fn agent_container(
    spec: &OverlaySpec,
    settings: &Settings,
) -> std::result::Result<(Container, Option<String>), String> {
    let review = review_template(spec.switch_template.as_ref(), settings)?;
    let template = spec
        .switch_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first());
    let (image, note) = (review.image, review.note);
    let provider = &spec.provider;
    let domain = provider
        .domain
        .iter()
        .find(|d| !d.trim().is_empty())
        .cloned()
        .unwrap_or_default();
    let of_port = if provider.of_port.is_empty() {
        "6633"
    } else {
        provider.of_port.as_str()
    };
    let mut env = vec![EnvVar {
        name: "NODENAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "spec.nodeName".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if let Some(secret) = &settings.credentials_secret {
        for (var, key) in [
            ("L2SM_API_USER", "username"),
            ("L2SM_API_PASSWORD", "password"),
        ] {
            env.push(EnvVar {
                name: var.into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.clone(),
                        key: key.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    let mount = |name: &str, path: &str, ro: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: ro.then_some(true),
        ..Default::default()
    };
    let mut args = vec![
        "agent".into(),
        "--node".into(),
        "$(NODENAME)".into(),
        "--topology".into(),
        format!("{CONFIG_DIR}/{TOPOLOGY_KEY}"),
        "--controller".into(),
        format!("ssl:{domain}:{of_port}"),
        "--controller-api".into(),
        settings.controller_url.clone(),
        "--ssl-private-key".into(),
        format!("{SWITCH_TLS_DIR}/tls.key"),
        "--ssl-certificate".into(),
        format!("{SWITCH_TLS_DIR}/tls.crt"),
        "--ssl-ca-cert".into(),
        format!("{SWITCH_TLS_DIR}/ca.crt"),
    ];
    if settings.agent_api_certificate {
        // The node's switch certificate is also its REST identity (agent of this node only).
        args.extend([
            "--controller-api-cert".into(),
            format!("{SWITCH_TLS_DIR}/tls.crt"),
            "--controller-api-key".into(),
            format!("{SWITCH_TLS_DIR}/tls.key"),
            "--controller-api-ca".into(),
            format!("{SWITCH_TLS_DIR}/ca.crt"),
        ]);
    }
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(image),
        image_pull_policy: template.and_then(|c| c.image_pull_policy.clone()),
        resources: template.and_then(|c| c.resources.clone()),
        command: Some(vec!["l2sm".into()]),
        args: Some(args),
        env: Some(env),
        // The agent drives OVS and pod namespaces: root, whatever user the image defaults to.
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_group: Some(0),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR, true),
            mount("ovs-run", "/var/run/openvswitch", false),
            mount("l2sm-run", "/run/l2sm", false),
            mount("switch-tls", SWITCH_TLS_DIR, true),
            VolumeMount {
                mount_propagation: Some("HostToContainer".into()),
                ..mount("netns", "/var/run/netns", false)
            },
        ]),
        ..Default::default()
    };
    Ok((container, note))
}

/// The init container installing the CNI plugin from the agent's image into the host
/// directory mounted at [`CNI_BIN_MOUNT`].
pub fn install_cni_container(agent: &Container) -> Container {
    Container {
        name: INSTALL_CNI_CONTAINER.into(),
        image: agent.image.clone(),
        image_pull_policy: agent.image_pull_policy.clone(),
        command: Some(vec!["l2sm".into()]),
        args: Some(vec![
            "install-cni".into(),
            "--dir".into(),
            CNI_BIN_MOUNT.into(),
        ]),
        // Writes a root-owned host directory, whatever user the image defaults to.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "cni-bin".into(),
            mount_path: CNI_BIN_MOUNT.into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// Name of the init container getting the node's switch certificate.
pub const AGENT_CERT_CONTAINER: &str = "agent-cert";
/// Where the agent-cert init container finds its ServiceAccount token (where in-cluster
/// clients look).
pub const TOKEN_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Lifetime of the projected token (the kubelet renews it; the API server's minimum is 600).
pub const TOKEN_SECONDS: i64 = 3600;

/// The init container keeping the node's switch key and certificate (`l2sm agent-cert`) in
/// the host's switch TLS directory, with the pod-bound ServiceAccount token (mounted into this
/// container only: the pod does not automount it).
pub fn agent_cert_container(agent: &Container) -> Container {
    Container {
        name: AGENT_CERT_CONTAINER.into(),
        image: agent.image.clone(),
        image_pull_policy: agent.image_pull_policy.clone(),
        command: Some(vec!["l2sm".into()]),
        args: Some(vec![
            "agent-cert".into(),
            "--node".into(),
            "$(NODENAME)".into(),
            "--dir".into(),
            SWITCH_TLS_DIR.into(),
        ]),
        env: Some(vec![EnvVar {
            name: "NODENAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.nodeName".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        // Writes the root-owned host directory.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "switch-tls".into(),
                mount_path: SWITCH_TLS_DIR.into(),
                ..Default::default()
            },
            VolumeMount {
                name: "agent-token".into(),
                mount_path: TOKEN_MOUNT.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// The projected ServiceAccount token volume of [`agent_cert_container`] (token bound to the
/// pod, the cluster CA, the namespace: what an in-cluster client reads).
fn token_volume() -> Volume {
    use k8s_openapi::api::core::v1::{
        ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath,
        ProjectedVolumeSource, ServiceAccountTokenProjection, VolumeProjection,
    };
    Volume {
        name: "agent-token".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(TOKEN_SECONDS),
                        audience: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
            default_mode: None,
        }),
        ..Default::default()
    }
}

/// Labels selecting the agent objects (and pods) of Overlay `namespace/overlay`.
pub fn overlay_labels(namespace: &str, overlay: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.0.to_string(), APP_LABEL.1.to_string()),
        (
            OVERLAY_LABEL.to_string(),
            super::l2network::label_value(overlay),
        ),
        (
            OVERLAY_NAMESPACE_LABEL.to_string(),
            super::l2network::label_value(namespace),
        ),
    ])
}

/// Label selector string of [`overlay_labels`].
pub fn agent_selector(namespace: &str, overlay: &str) -> String {
    overlay_labels(namespace, overlay)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Metadata of an agent object of `overlay`, in the operator's namespace `home`.
fn agent_meta(overlay: &Overlay, name: String, home: &str) -> ObjectMeta {
    let ns = overlay.namespace().unwrap_or_default();
    let overlay_name = overlay.name_any();
    ObjectMeta {
        name: Some(name),
        namespace: Some(home.to_string()),
        labels: Some(overlay_labels(&ns, &overlay_name)),
        annotations: Some(BTreeMap::from([(
            OVERLAY_ANNOTATION.to_string(),
            format!("{ns}/{overlay_name}"),
        )])),
        ..Default::default()
    }
}

/// The topology ConfigMap of the overlay, in the operator's namespace `home`.
pub fn config_map(overlay: &Overlay, topology: String, home: &str) -> ConfigMap {
    let ns = overlay.namespace().unwrap_or_default();
    let name = config_map_name(&ns, &overlay.name_any());
    ConfigMap {
        metadata: agent_meta(overlay, name, home),
        data: Some(BTreeMap::from([(TOPOLOGY_KEY.to_string(), topology)])),
        ..Default::default()
    }
}

/// The agent DaemonSet of the overlay, in the operator's namespace, pinned to the listed
/// nodes, with the CNI plugin's install as its first init container.
pub fn daemon_set(
    overlay: &Overlay,
    nodes: &[String],
    container: Container,
    settings: &Settings,
) -> DaemonSet {
    let ns = overlay.namespace().unwrap_or_default();
    let name = overlay.name_any();
    let labels = overlay_labels(&ns, &name);
    let host = |vol: &str, path: &str| Volume {
        name: vol.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: Some("DirectoryOrCreate".into()),
        }),
        ..Default::default()
    };
    let template_meta = overlay
        .spec
        .switch_template
        .as_ref()
        .and_then(|t| t.metadata.as_ref());
    let mut pod_labels = template_meta
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    pod_labels.extend(labels.clone());
    let mut init_containers = vec![install_cni_container(&container)];
    if settings.switch_certs_auto {
        init_containers.push(agent_cert_container(&container));
    }
    // Never the template's own init containers: they would run as root on the nodes
    // (review_template refuses a template that has any).
    DaemonSet {
        metadata: agent_meta(overlay, daemon_set_name(&ns, &name), &settings.namespace),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: template_meta.and_then(|m| m.annotations.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(settings.agent_service_account.clone()),
                    // Only the agent-cert init container gets a token (a projected volume).
                    automount_service_account_token: Some(false),
                    host_network: Some(true),
                    host_pid: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
                    priority_class_name: settings.agent_priority_class.clone(),
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]),
                    affinity: Some(Affinity {
                        node_affinity: Some(NodeAffinity {
                            required_during_scheduling_ignored_during_execution: Some(
                                NodeSelector {
                                    node_selector_terms: vec![NodeSelectorTerm {
                                        match_expressions: Some(vec![NodeSelectorRequirement {
                                            key: "kubernetes.io/hostname".into(),
                                            operator: "In".into(),
                                            values: Some(nodes.to_vec()),
                                        }]),
                                        ..Default::default()
                                    }],
                                },
                            ),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    init_containers: Some(init_containers),
                    containers: vec![container],
                    volumes: Some(
                        vec![
                            Volume {
                                name: "config".into(),
                                config_map: Some(ConfigMapVolumeSource {
                                    name: config_map_name(&ns, &name),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                            host("ovs-run", "/var/run/openvswitch"),
                            host("l2sm-run", "/run/l2sm"),
                            host("netns", "/var/run/netns"),
                            host("cni-bin", &settings.cni_bin_dir),
                            host("switch-tls", SWITCH_TLS_DIR),
                        ]
                        .into_iter()
                        .chain(settings.switch_certs_auto.then(token_volume))
                        .collect(),
                    ),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the reconcile saw, for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The spec cannot be deployed.
    Invalid(String),
    /// The `switchTemplate` is refused ([`review_template`]): nothing was created or changed.
    Refused(String),
    /// Deployed; `ready` agents of `wanted`, nodes without an address, template note.
    Deployed {
        /// Agents wanted (listed nodes).
        wanted: usize,
        /// Agents ready.
        ready: usize,
        /// Listed nodes with no InternalIP (or no Node object).
        unaddressed: Vec<String>,
        /// What of the switch template was not used.
        note: Option<String>,
        /// Why agents are not running, when known.
        problem: Option<AgentProblem>,
    },
}

/// Why agent pods are not running: a reason as Kubernetes names it and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentProblem {
    /// `CreateContainerConfigError`, `ImagePullBackOff`, `FailedCreate`, …
    pub reason: String,
    /// Which pod or object, and Kubernetes' message.
    pub message: String,
}

/// Waiting reasons of a container that is on its way (not a problem).
const STARTING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Why the DaemonSet's agents are not running, from its status and its pods (pure).
pub fn agent_problem(ds: &DaemonSet, pods: &[Pod]) -> Option<AgentProblem> {
    let ds_name = ds.name_any();
    let ds_ns = ds.namespace().unwrap_or_default();
    let mut found: Vec<AgentProblem> = Vec::new();
    for pod in pods {
        let pod_name = pod.name_any();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| "no node yet".into());
        let Some(status) = pod.status.as_ref() else {
            continue;
        };
        let statuses = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        let mut problem = None;
        for c in statuses {
            let state = c.state.as_ref();
            if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
                let reason = w.reason.clone().unwrap_or_default();
                if !reason.is_empty() && !STARTING.contains(&reason.as_str()) {
                    problem = Some(AgentProblem {
                        message: format!(
                            "agent pod {ds_ns}/{pod_name} ({node}), container {}: {reason}: {}",
                            c.name,
                            w.message.clone().unwrap_or_default()
                        ),
                        reason,
                    });
                    break;
                }
            }
            if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
                if t.exit_code != 0 {
                    let reason = t.reason.clone().unwrap_or_else(|| "Error".into());
                    problem = Some(AgentProblem {
                        message: format!(
                            "agent pod {ds_ns}/{pod_name} ({node}), container {} exited with {}: {}",
                            c.name,
                            t.exit_code,
                            t.message.clone().unwrap_or_default()
                        ),
                        reason,
                    });
                    break;
                }
            }
        }
        if problem.is_none() {
            // Not scheduled: the scheduler's reason (e.g. Unschedulable) and message.
            problem = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                .map(|c| AgentProblem {
                    reason: c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
                    message: format!(
                        "agent pod {ds_ns}/{pod_name}: {}",
                        c.message.clone().unwrap_or_default()
                    ),
                });
        }
        found.extend(problem);
    }
    if let Some(mut first) = found.first().cloned() {
        if found.len() > 1 {
            first.message.push_str(&format!(
                " (and {} more agent pod(s) failing)",
                found.len() - 1
            ));
        }
        return Some(first);
    }
    let st = ds.status.as_ref()?;
    if let Some(c) = st.conditions.iter().flatten().find(|c| c.status == "True") {
        return Some(AgentProblem {
            reason: c.reason.clone().unwrap_or_else(|| c.type_.clone()),
            message: format!(
                "daemonset {ds_ns}/{ds_name}: {}",
                c.message.clone().unwrap_or_default()
            ),
        });
    }
    let desired = usize::try_from(st.desired_number_scheduled).unwrap_or(0);
    if desired > pods.len() {
        return Some(AgentProblem {
            reason: "FailedCreate".into(),
            message: format!(
                "{} of {desired} agent pod(s) do not exist: the DaemonSet cannot create them \
                 (`kubectl -n {ds_ns} describe daemonset {ds_name}` shows why, e.g. Pod Security \
                 or a missing PriorityClass)",
                desired - pods.len()
            ),
        });
    }
    None
}

/// The overlay's status for what was observed.
pub fn compute_status(
    old: Option<&OverlayStatus>,
    spec: &OverlaySpec,
    generation: Option<i64>,
    observed: &Observed,
    now: Time,
) -> OverlayStatus {
    let mut status = old.cloned().unwrap_or_default();
    if let Observed::Refused(m) = observed {
        // The agents deployed from an earlier accepted template (if any) are left as they
        // were: their AgentsReady condition stays as last observed.
        for (type_, message) in [
            (CONDITION_TEMPLATE, m.clone()),
            (
                CONDITION_READY,
                format!(
                    "{m}; no agent DaemonSet is created or changed for this Overlay (agents \
                     deployed from an earlier accepted template keep running as they were)"
                ),
            ),
        ] {
            set_condition(
                &mut status.conditions,
                condition(
                    type_,
                    "False",
                    REASON_TEMPLATE_REFUSED,
                    message,
                    generation,
                    now.clone(),
                ),
            );
        }
        return status;
    }
    let (agents_ok, agents_reason, agents_message) = match observed {
        Observed::Invalid(m) | Observed::Refused(m) => {
            (false, "InvalidSpec".to_string(), m.clone())
        }
        Observed::Deployed {
            wanted,
            ready,
            problem,
            ..
        } => match problem {
            _ if ready >= wanted => (
                true,
                "AgentsReady".to_string(),
                format!("{ready}/{wanted} node agent(s) ready"),
            ),
            Some(p) => (
                false,
                p.reason.clone(),
                format!("{ready}/{wanted} node agent(s) ready; {}", p.message),
            ),
            None => (
                false,
                "AgentsStarting".to_string(),
                format!("{ready}/{wanted} node agent(s) ready"),
            ),
        },
    };
    let (ok, reason, message) = match observed {
        Observed::Invalid(m) | Observed::Refused(m) => (false, "InvalidSpec", m.clone()),
        Observed::Deployed {
            wanted,
            ready,
            unaddressed,
            note,
            problem,
        } => {
            let mut msg = match problem {
                Some(p) if ready < wanted => {
                    format!("{ready}/{wanted} node agent(s) ready; {}", p.message)
                }
                _ => format!("{ready}/{wanted} node agent(s) ready"),
            };
            if !unaddressed.is_empty() {
                msg.push_str(&format!(
                    "; no InternalIP known for {}, so no tunnels to it yet",
                    unaddressed.join(", ")
                ));
            }
            if let Some(n) = note {
                msg.push_str("; ");
                msg.push_str(n);
            }
            set_condition(
                &mut status.conditions,
                condition(
                    CONDITION_TEMPLATE,
                    "True",
                    "TemplateAccepted",
                    match note {
                        Some(n) => format!("switchTemplate accepted; {n}"),
                        None => "switchTemplate accepted (or none given)".to_string(),
                    },
                    generation,
                    now.clone(),
                ),
            );
            let reason = if !unaddressed.is_empty() {
                "NodesWithoutAddress"
            } else if ready < wanted && problem.is_some() {
                "AgentsNotRunning"
            } else if ready < wanted {
                "AgentsStarting"
            } else {
                "AgentsReady"
            };
            (unaddressed.is_empty() && ready >= wanted, reason, msg)
        }
    };
    set_condition(
        &mut status.conditions,
        condition(
            CONDITION_READY,
            bool_status(ok),
            reason,
            message,
            generation,
            now.clone(),
        ),
    );
    set_condition(
        &mut status.conditions,
        condition(
            CONDITION_AGENTS,
            bool_status(agents_ok),
            &agents_reason,
            agents_message,
            generation,
            now.clone(),
        ),
    );
    set_condition(
        &mut status.conditions,
        condition(
            CONDITION_PORTS,
            "True",
            "PortsCreatedOnDemand",
            format!(
                "interfaceNumber {} accepted: switch ports are created when pods attach, with no per-node limit",
                spec.interface_number
            ),
            generation,
            now,
        ),
    );
    status
}

/// InternalIP of every node that has one.
pub fn node_addresses(nodes: &[Node]) -> BTreeMap<String, String> {
    nodes
        .iter()
        .filter_map(|n| {
            let ip = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .clone();
            Some((n.name_any(), ip))
        })
        .collect()
}

/// Reconciles one Overlay.
pub async fn reconcile(overlay: Arc<Overlay>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<Overlay> =
        Api::namespaced(ctx.kube.clone(), &overlay.namespace().unwrap_or_default());
    tracked(&*overlay, &ctx, async {
        finalizer(&api, FINALIZER, overlay.clone(), |event| async {
            match event {
                Event::Apply(o) => apply(&o, &ctx).await,
                Event::Cleanup(o) => cleanup(&o, &ctx).await,
            }
        })
        .await
        .map_err(Error::from)
    })
    .await
}

async fn apply(overlay: &Overlay, ctx: &Context) -> Result<Action> {
    let generation = overlay.metadata.generation;
    let ns = overlay.namespace().unwrap_or_default();
    let topo = match validate(&overlay.spec) {
        Ok(t) => t.clone(),
        Err(m) => {
            let st = compute_status(
                overlay.status.as_ref(),
                &overlay.spec,
                generation,
                &Observed::Invalid(m),
                now(),
            );
            patch_status(overlay, overlay.status.as_ref(), st, ctx).await?;
            return Ok(Action::await_change());
        }
    };
    let addresses = node_addresses(&super::nodes(ctx).await?);
    let unaddressed: Vec<String> = topo
        .nodes
        .iter()
        .filter(|n| !addresses.contains_key(*n))
        .cloned()
        .collect();
    // A refused template changes nothing: no ConfigMap or DaemonSet is written for it.
    let (container, note) = match agent_container(&overlay.spec, &ctx.settings) {
        Ok(c) => c,
        Err(m) => {
            tracing::warn!(overlay = %format!("{ns}/{}", overlay.name_any()), "{m}");
            let st = compute_status(
                overlay.status.as_ref(),
                &overlay.spec,
                generation,
                &Observed::Refused(m),
                now(),
            );
            patch_status(overlay, overlay.status.as_ref(), st, ctx).await?;
            return Ok(Action::await_change());
        }
    };
    let home = ctx.settings.namespace.as_str();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let cm = config_map(overlay, topology_file(&topo, &addresses), home);
    let cms: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), home);
    cms.patch(&cm.name_any(), &params, &Patch::Apply(&cm))
        .await?;
    let ds = daemon_set(overlay, &topo.nodes, container, &ctx.settings);
    let dss: Api<DaemonSet> = Api::namespaced(ctx.kube.clone(), home);
    let applied = dss
        .patch(&ds.name_any(), &params, &Patch::Apply(&ds))
        .await?;
    let ready = applied
        .status
        .as_ref()
        .map(|s| s.number_ready.max(0) as usize)
        .unwrap_or(0);
    let wanted = topo.nodes.len();
    let problem = if ready < wanted {
        let pods: Api<Pod> = Api::namespaced(ctx.kube.clone(), home);
        let selector = agent_selector(&ns, &overlay.name_any());
        let listed = pods.list(&ListParams::default().labels(&selector)).await?;
        agent_problem(&applied, &listed.items)
    } else {
        None
    };
    let observed = Observed::Deployed {
        wanted,
        ready,
        unaddressed,
        note,
        problem,
    };
    let mut st = compute_status(
        overlay.status.as_ref(),
        &overlay.spec,
        generation,
        &observed,
        now(),
    );
    // Link health of the overlay's links (spec.monitor), from the controller.
    let monitor = overlay.spec.monitor.as_ref();
    st.link_metrics = super::link_metrics::refresh(
        ctx,
        &super::object_key(overlay),
        monitor,
        overlay
            .status
            .as_ref()
            .and_then(|s| s.link_metrics.as_ref()),
        |a, b| topo.nodes.iter().any(|n| n == a) && topo.nodes.iter().any(|n| n == b),
        || ctx.controller.links(),
    )
    .await;
    patch_status(overlay, overlay.status.as_ref(), st, ctx).await?;
    let resync = match monitor {
        Some(m) => ctx.settings.resync.min(super::link_metrics::interval(m)),
        None => ctx.settings.resync,
    };
    if ready < wanted {
        // Pod states do not change the DaemonSet (which wakes this reconciler): look again
        // soon, so the status says why agents do not start.
        return Ok(Action::requeue(resync.min(AGENTS_RECHECK)));
    }
    Ok(Action::requeue(resync))
}

/// How soon an Overlay whose agents are not all ready is looked at again.
pub const AGENTS_RECHECK: std::time::Duration = std::time::Duration::from_secs(20);

fn gone(r: std::result::Result<(), kube::Error>) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::from(e)),
    }
}

async fn cleanup(overlay: &Overlay, ctx: &Context) -> Result<Action> {
    let ns = overlay.namespace().unwrap_or_default();
    let name = overlay.name_any();
    let home = ctx.settings.namespace.as_str();
    let dp = DeleteParams::default();
    let dss: Api<DaemonSet> = Api::namespaced(ctx.kube.clone(), home);
    gone(
        dss.delete(&daemon_set_name(&ns, &name), &dp)
            .await
            .map(|_| ()),
    )?;
    let cms: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), home);
    gone(
        cms.delete(&config_map_name(&ns, &name), &dp)
            .await
            .map(|_| ()),
    )?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{find_condition, Link, ProviderSpec, SwitchPodSpec, SwitchTemplateSpec};
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn spec(nodes: &[&str], links: &[(&str, &str)]) -> OverlaySpec {
        OverlaySpec {
            provider: ProviderSpec {
                name: "l2sm-controller".into(),
                domain: vec!["l2sm-controller-service.l2sm-system.svc".into()],
                sdn_port: "30808".into(),
                dns_port: "30053".into(),
                dns_grpc_port: "30818".into(),
                of_port: "6633".into(),
            },
            topology: Some(TopologySpec {
                nodes: nodes.iter().map(|s| s.to_string()).collect(),
                links: Some(
                    links
                        .iter()
                        .map(|(a, b)| Link {
                            endpoint_a: a.to_string(),
                            endpoint_b: b.to_string(),
                        })
                        .collect(),
                ),
            }),
            switch_template: None,
            interface_number: 10,
            monitor: None,
        }
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(validate(&spec(&["a", "b"], &[("a", "b")])).is_ok());
        let mut s = spec(&["a"], &[]);
        s.topology = None;
        assert!(validate(&s).unwrap_err().contains("topology is required"));
        assert!(validate(&spec(&[], &[])).unwrap_err().contains("empty"));
        assert!(validate(&spec(&["a", "a"], &[]))
            .unwrap_err()
            .contains("twice"));
        assert!(validate(&spec(&["a"], &[("a", "z")]))
            .unwrap_err()
            .contains("\"z\""));
        assert!(validate(&spec(&["a"], &[("a", "a")]))
            .unwrap_err()
            .contains("itself"));
    }

    #[test]
    fn topology_file_is_what_the_agent_reads() {
        let s = spec(&["w1", "w2", "w3"], &[("w1", "w2")]);
        let addrs = BTreeMap::from([
            ("w1".to_string(), "10.0.0.1".to_string()),
            ("w2".to_string(), "10.0.0.2".to_string()),
        ]);
        let file: serde_json::Value =
            serde_json::from_str(&topology_file(s.topology.as_ref().unwrap(), &addrs)).unwrap();
        assert_eq!(
            file,
            serde_json::json!({
                "nodes": [{"name": "w1", "nodeIP": "10.0.0.1"}, {"name": "w2", "nodeIP": "10.0.0.2"}, "w3"],
                "links": [{"endpointA": "w1", "endpointB": "w2"}]
            })
        );
    }

    #[test]
    fn template_image_and_resources_are_honoured() {
        let mut s = spec(&["w1"], &[]);
        let resources = ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("256Mi".into()),
            )])),
            ..Default::default()
        };
        s.switch_template = Some(SwitchTemplateSpec {
            metadata: None,
            spec: Some(SwitchPodSpec {
                volumes: None,
                init_containers: None,
                containers: vec![Container {
                    name: "l2sm-switch".into(),
                    image: Some("registry.example/l2sm:v9".into()),
                    resources: Some(resources.clone()),
                    ..Default::default()
                }],
                host_network: None,
            }),
        });
        let settings = Settings {
            allowed_agent_images: vec!["registry.example/l2sm:v9".into()],
            ..Settings::default()
        };
        let (c, note) = agent_container(&s, &settings).unwrap();
        assert_eq!(c.image.as_deref(), Some("registry.example/l2sm:v9"));
        assert_eq!(c.resources, Some(resources));
        assert!(note.is_none());
        let args = c.args.unwrap();
        assert!(
            args.contains(&"ssl:l2sm-controller-service.l2sm-system.svc:6633".to_string()),
            "{args:?}"
        );
        // The switch certificate of the node: its host directory, read-only, same path.
        for (flag, file) in [
            ("--ssl-private-key", "tls.key"),
            ("--ssl-certificate", "tls.crt"),
            ("--ssl-ca-cert", "ca.crt"),
        ] {
            let i = args.iter().position(|a| a == flag).expect(flag);
            assert_eq!(args[i + 1], format!("{SWITCH_TLS_DIR}/{file}"));
        }
        let m = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "switch-tls")
            .unwrap();
        assert_eq!(
            (m.mount_path.as_str(), m.read_only),
            (SWITCH_TLS_DIR, Some(true))
        );
        // Upstream's switch image cannot run the agent: ours runs, and the status says so.
        s.switch_template
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("alexdecb/talpa:1.3.8".into());
        let (c, note) = agent_container(&s, &settings).unwrap();
        assert_eq!(c.image.as_deref(), Some(settings.agent_image.as_str()));
        assert!(note.unwrap().contains("talpa"));
    }

    fn template(container: serde_json::Value) -> SwitchTemplateSpec {
        serde_json::from_value(serde_json::json!({"spec": {"containers": [container]}}))
            .expect("template")
    }

    #[test]
    fn upstream_switch_templates_are_accepted_and_map_to_the_agent() {
        let settings = Settings::default();
        // Upstream's default Overlay and NED templates (talpa image, args, env, NET_ADMIN).
        for t in [
            serde_json::json!({"name": "l2sm-switch", "image": "alexdecb/talpa:1.3.8",
                "imagePullPolicy": "Always", "resources": {},
                "args": ["sps-init", "--node_name=$(NODENAME)"],
                "env": [{"name": "NODENAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}),
            serde_json::json!({"name": "l2sm-switch", "image": "alexdecb/talpa:1.3.8",
                "args": ["ned"], "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}),
        ] {
            let r = review_template(Some(&template(t)), &settings).expect("accepted");
            assert_eq!(r.image, settings.agent_image);
            let note = r.note.expect("note");
            assert!(note.contains("talpa") && note.contains("ignored"), "{note}");
        }
        assert_eq!(
            review_template(None, &settings).unwrap().image,
            settings.agent_image
        );
    }

    #[test]
    fn dangerous_templates_are_refused_naming_the_field() {
        let settings = Settings {
            allowed_agent_images: vec!["reg.example/l2sm:v2".into(), "reg.example/dev:*".into()],
            ..Settings::default()
        };
        let refused = |c: serde_json::Value, field: &str| {
            let e =
                review_template(Some(&template(c.clone())), &settings).expect_err(&c.to_string());
            assert!(e.contains(field) && e.contains("refused"), "{field}: {e}");
        };
        refused(
            serde_json::json!({"name": "s", "image": "evil/x:1"}),
            "containers[0].image",
        );
        refused(
            serde_json::json!({"name": "s", "command": ["sh"]}),
            "containers[0].command",
        );
        refused(
            serde_json::json!({"name": "s", "args": ["-c", "id"]}),
            "containers[0].args",
        );
        refused(
            serde_json::json!({"name": "s", "volumeMounts": [{"name": "h", "mountPath": "/h"}]}),
            "containers[0].volumeMounts",
        );
        refused(
            serde_json::json!({"name": "s", "envFrom": [{"secretRef": {"name": "x"}}]}),
            "containers[0].envFrom",
        );
        refused(
            serde_json::json!({"name": "s", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k"}}}]}),
            "containers[0].env[0]",
        );
        refused(
            serde_json::json!({"name": "s", "securityContext": {"runAsUser": 0}}),
            "containers[0].securityContext",
        );
        refused(
            serde_json::json!({"name": "s", "lifecycle": {"postStart": {"exec": {"command": ["sh"]}}}}),
            "containers[0].lifecycle",
        );
        let pod = |spec: serde_json::Value| -> SwitchTemplateSpec {
            serde_json::from_value(serde_json::json!({ "spec": spec })).expect("template")
        };
        for (spec, field) in [
            (
                serde_json::json!({"containers": [{"name": "s"}],
                    "initContainers": [{"name": "i", "image": "busybox"}]}),
                "initContainers",
            ),
            (
                serde_json::json!({"containers": [{"name": "s"}],
                    "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
                "hostPath",
            ),
            (
                serde_json::json!({"containers": [{"name": "s"}, {"name": "x"}]}),
                "containers[1]",
            ),
        ] {
            let e = review_template(Some(&pod(spec)), &settings).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
        // Allowed: images of the allow-list, pull policy, resources.
        for img in [
            "reg.example/l2sm:v2",
            "reg.example/dev:abc",
            "reg.example/dev@sha256:00",
        ] {
            let r = review_template(
                Some(&template(serde_json::json!({"name": "s", "image": img,
                    "imagePullPolicy": "IfNotPresent", "resources": {"limits": {"cpu": "1"}}}))),
                &settings,
            )
            .unwrap_or_else(|e| panic!("{img}: {e}"));
            assert_eq!((r.image.as_str(), r.note), (img, None));
        }
        for img in [
            "reg.example/l2sm:v3",
            "reg.example/dev-evil:1",
            "reg.example/l2sm",
        ] {
            assert!(!image_allowed(img, &settings), "{img}");
        }
        assert_eq!(image_repository("h:5000/a/b:t@sha256:1"), "h:5000/a/b");
        assert_eq!(image_repository("h:5000/a/b"), "h:5000/a/b");
    }

    #[test]
    fn a_refused_template_keeps_the_agents_condition_and_says_so() {
        let s = spec(&["w1"], &[]);
        let deployed = Observed::Deployed {
            wanted: 1,
            ready: 1,
            unaddressed: vec![],
            note: None,
            problem: None,
        };
        let st = compute_status(None, &s, Some(1), &deployed, now());
        let t = find_condition(&st.conditions, CONDITION_TEMPLATE).unwrap();
        assert_eq!(t.status, "True");
        let st = compute_status(
            Some(&st),
            &s,
            Some(2),
            &Observed::Refused("spec.switchTemplate.spec.initContainers is refused".into()),
            now(),
        );
        let t = find_condition(&st.conditions, CONDITION_TEMPLATE).unwrap();
        assert_eq!(
            (t.status.as_str(), t.reason.as_str()),
            ("False", REASON_TEMPLATE_REFUSED)
        );
        let r = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(r.reason, REASON_TEMPLATE_REFUSED);
        assert!(r.message.contains("initContainers"), "{}", r.message);
        let a = find_condition(&st.conditions, CONDITION_AGENTS).unwrap();
        assert_eq!(
            a.status, "True",
            "agents of the accepted template still run"
        );
    }

    #[test]
    fn status_reports_readiness_and_the_port_note() {
        let s = spec(&["w1", "w2"], &[]);
        let obs = Observed::Deployed {
            wanted: 2,
            ready: 1,
            unaddressed: vec![],
            note: None,
            problem: None,
        };
        let st = compute_status(None, &s, Some(3), &obs, now());
        let r = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "AgentsStarting")
        );
        let p = find_condition(&st.conditions, CONDITION_PORTS).unwrap();
        assert!(
            p.message.contains("interfaceNumber 10") && p.message.contains("on demand")
                || p.message.contains("when pods attach")
        );
        let obs = Observed::Deployed {
            wanted: 2,
            ready: 2,
            unaddressed: vec![],
            note: None,
            problem: None,
        };
        let st = compute_status(Some(&st), &s, Some(3), &obs, now());
        let r = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "AgentsReady")
        );
        let obs = Observed::Deployed {
            wanted: 2,
            ready: 2,
            unaddressed: vec!["w2".into()],
            note: None,
            problem: None,
        };
        let st = compute_status(Some(&st), &s, Some(3), &obs, now());
        let r = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(r.reason, "NodesWithoutAddress");
        assert!(r.message.contains("w2"));
    }

    #[test]
    fn names_are_per_namespace_and_bounded() {
        let a = daemon_set_name("tenant-a", "ovl");
        let b = daemon_set_name("tenant-b", "ovl");
        assert_ne!(a, b);
        assert!(a.starts_with("l2sm-agent-tenant-a-ovl-"), "{a}");
        // Same readable part, different Overlays: the hash tells them apart.
        assert_ne!(daemon_set_name("a-b", "c"), daemon_set_name("a", "b-c"));
        let long = "o".repeat(253);
        for n in [
            daemon_set_name(&"n".repeat(63), &long),
            config_map_name(&"n".repeat(63), &long),
            config_map_name("tenant", "ovl"),
        ] {
            assert!(n.len() <= 63, "{n} is {} long", n.len());
            assert!(!n.contains("-.") && !n.contains(".-"), "{n}");
        }
        assert_ne!(
            daemon_set_name("t", &format!("{long}x")),
            daemon_set_name("t", &format!("{long}y"))
        );
        for (k, v) in overlay_labels(&"n".repeat(63), &long) {
            assert!(v.len() <= 63, "label {k}={v}");
        }
    }

    #[test]
    fn agents_get_their_certificate_and_use_it_for_rest() {
        let o = Overlay::new("ovl", spec(&["w1"], &[]));
        let settings = Settings::default();
        let (c, _) = agent_container(&o.spec, &settings).unwrap();
        // No shared admin credential: the node certificate is the REST identity.
        assert!(
            c.env.iter().flatten().all(|e| e
                .value_from
                .as_ref()
                .is_none_or(|v| v.secret_key_ref.is_none())),
            "{:?}",
            c.env
        );
        let args = c.args.clone().unwrap();
        for (flag, file) in [
            ("--controller-api-cert", "tls.crt"),
            ("--controller-api-key", "tls.key"),
            ("--controller-api-ca", "ca.crt"),
        ] {
            let i = args
                .iter()
                .position(|a| a == flag)
                .unwrap_or_else(|| panic!("{flag}"));
            assert_eq!(args[i + 1], format!("{SWITCH_TLS_DIR}/{file}"));
        }
        let ds = daemon_set(&o, &["w1".to_string()], c, &settings);
        let pod = ds.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("l2sm-agent"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let inits = pod.init_containers.clone().unwrap();
        let cert = inits
            .iter()
            .find(|i| i.name == AGENT_CERT_CONTAINER)
            .unwrap();
        assert_eq!(
            cert.args.clone().unwrap()[..2],
            ["agent-cert".to_string(), "--node".to_string()]
        );
        // The token is mounted into agent-cert only, writable switch-tls there only.
        let mounts = |c: &Container, vol: &str| {
            c.volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == vol)
                .cloned()
        };
        assert!(mounts(cert, "agent-token").is_some());
        assert_eq!(mounts(cert, "switch-tls").unwrap().read_only, None);
        for other in pod
            .containers
            .iter()
            .chain(inits.iter().filter(|i| i.name != AGENT_CERT_CONTAINER))
        {
            assert!(mounts(other, "agent-token").is_none(), "{}", other.name);
        }
        let token = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "agent-token")
            .unwrap();
        let sources = token.projected.as_ref().unwrap().sources.clone().unwrap();
        assert!(sources.iter().any(|s| s.service_account_token.is_some()));

        // The Basic credential and hand-made certificates remain possible.
        let manual = Settings {
            credentials_secret: Some("creds".into()),
            agent_api_certificate: false,
            switch_certs_auto: false,
            ..Settings::default()
        };
        let (c, _) = agent_container(&o.spec, &manual).unwrap();
        assert!(!c
            .args
            .clone()
            .unwrap()
            .contains(&"--controller-api-cert".to_string()));
        assert!(c
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "L2SM_API_PASSWORD"));
        let ds = daemon_set(&o, &["w1".to_string()], c, &manual);
        let pod = ds.spec.unwrap().template.spec.unwrap();
        assert!(pod
            .init_containers
            .unwrap()
            .iter()
            .all(|i| i.name != AGENT_CERT_CONTAINER));
        assert!(pod.volumes.unwrap().iter().all(|v| v.name != "agent-token"));
    }

    #[test]
    fn agent_objects_map_back_to_their_overlay() {
        let mut o = Overlay::new("ovl", spec(&["w1"], &[]));
        o.metadata.namespace = Some("tenant".into());
        let settings = Settings::default();
        let (c, _) = agent_container(&o.spec, &settings).unwrap();
        let ds = daemon_set(&o, &["w1".to_string()], c, &settings);
        assert_eq!(ds.metadata.namespace.as_deref(), Some("l2sm-system"));
        assert!(ds.metadata.owner_references.is_none());
        assert_eq!(
            overlay_of(&ds),
            Some(ObjectRef::<Overlay>::new("ovl").within("tenant"))
        );
        let cm = config_map(&o, String::new(), "l2sm-system");
        assert_eq!(overlay_of(&cm), overlay_of(&ds));
        // The init container installs the CNI plugin into the configured host directory.
        let pod = ds.spec.unwrap().template.spec.unwrap();
        let init = &pod.init_containers.unwrap()[0];
        assert_eq!(
            init.args.clone().unwrap(),
            vec!["install-cni", "--dir", CNI_BIN_MOUNT]
        );
        let tls = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "switch-tls")
            .unwrap();
        assert_eq!(tls.host_path.as_ref().unwrap().path, SWITCH_TLS_DIR);
        let vol = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "cni-bin")
            .unwrap();
        assert_eq!(vol.host_path.unwrap().path, settings.cni_bin_dir);
    }

    #[test]
    fn agent_problems_name_the_reason() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent-x", "namespace": "l2sm-system"},
            "spec": {"nodeName": "w1", "containers": []},
            "status": {"containerStatuses": [{"name": "l2sm-switch", "ready": false, "restartCount": 0,
                "image": "i", "imageID": "",
                "state": {"waiting": {"reason": "CreateContainerConfigError",
                                      "message": "secret \"l2sm-controller-credentials\" not found"}}}]}
        }))
        .unwrap();
        let ds: DaemonSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ds", "namespace": "l2sm-system"},
            "status": {"currentNumberScheduled": 1, "desiredNumberScheduled": 2,
                       "numberMisscheduled": 0, "numberReady": 0}
        }))
        .unwrap();
        let p = agent_problem(&ds, std::slice::from_ref(&pod)).unwrap();
        assert_eq!(p.reason, "CreateContainerConfigError");
        assert!(
            p.message.contains("not found") && p.message.contains("w1"),
            "{}",
            p.message
        );
        // No pods at all although two are wanted: the DaemonSet cannot create them.
        let p = agent_problem(&ds, &[]).unwrap();
        assert_eq!(p.reason, "FailedCreate");
        // A pod still being created is not a problem.
        let mut starting = pod.clone();
        starting
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .state
            .as_mut()
            .unwrap()
            .waiting
            .as_mut()
            .unwrap()
            .reason = Some("ContainerCreating".into());
        let mut ds1 = ds.clone();
        ds1.status.as_mut().unwrap().desired_number_scheduled = 1;
        assert_eq!(agent_problem(&ds1, &[starting]), None);
    }
}
