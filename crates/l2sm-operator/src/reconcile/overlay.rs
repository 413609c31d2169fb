//! Overlay: the node agent runs on every listed node with the overlay's topology. The
//! topology goes into a ConfigMap in the agent's file format (nodes with their InternalIP,
//! links); the agent re-reads it when it changes, so topology edits re-link the switches
//! without restarting anything. The agents run as one DaemonSet pinned to the listed nodes,
//! with the image and resources of `switchTemplate`'s first container.
//!
//! `interfaceNumber` is accepted and reported: ports are created when pods attach.

use super::{
    bool_status, now, patch_status, tracked, Context, Error, Result, Settings, FIELD_MANAGER,
};
use crate::crd::{
    condition, set_condition, Overlay, OverlaySpec, OverlayStatus, TopologySpec, CONDITION_READY,
    FINALIZER,
};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource,
    HostPathVolumeSource, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectFieldSelector, PodSpec, PodTemplateSpec, SecretKeySelector,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event};
use kube::{Api, Resource, ResourceExt};
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

/// Name of the overlay's topology ConfigMap (upstream's name).
pub fn config_map_name(overlay: &str) -> String {
    format!("{overlay}-topology")
}

/// Name of the overlay's agent DaemonSet.
pub fn daemon_set_name(overlay: &str) -> String {
    format!("l2sm-agent-{overlay}")
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

/// The agent container from the template's first container (image, pull policy, resources)
/// and the operator's defaults; the note says what of the template was not used.
pub fn agent_container(spec: &OverlaySpec, settings: &Settings) -> (Container, Option<String>) {
    let template = spec
        .switch_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first());
    let mut note = None;
    let image = match template.and_then(|c| c.image.clone()) {
        Some(img) if is_upstream_switch_image(&img) => {
            note = Some(format!(
                "switchTemplate image {img} is upstream's switch; the L2S-M agent image {} runs instead",
                settings.agent_image
            ));
            settings.agent_image.clone()
        }
        Some(img) => img,
        None => settings.agent_image.clone(),
    };
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
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(image),
        image_pull_policy: template.and_then(|c| c.image_pull_policy.clone()),
        resources: template.and_then(|c| c.resources.clone()),
        command: Some(vec!["l2sm".into()]),
        args: Some(vec![
            "agent".into(),
            "--node".into(),
            "$(NODENAME)".into(),
            "--topology".into(),
            format!("{CONFIG_DIR}/{TOPOLOGY_KEY}"),
            "--controller".into(),
            format!("tcp:{domain}:{of_port}"),
            "--controller-api".into(),
            settings.controller_url.clone(),
        ]),
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
            VolumeMount {
                mount_propagation: Some("HostToContainer".into()),
                ..mount("netns", "/var/run/netns", false)
            },
        ]),
        ..Default::default()
    };
    (container, note)
}

fn overlay_labels(overlay: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), "l2sm-agent".to_string()),
        (
            "l2sm.l2sm.k8s.local/overlay".to_string(),
            super::l2network::label_value(overlay),
        ),
    ])
}

/// The topology ConfigMap, owned by the overlay.
pub fn config_map(overlay: &Overlay, topology: String) -> ConfigMap {
    let name = overlay.name_any();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(&name)),
            namespace: overlay.namespace(),
            labels: Some(overlay_labels(&name)),
            owner_references: overlay.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(TOPOLOGY_KEY.to_string(), topology)])),
        ..Default::default()
    }
}

/// The agent DaemonSet, owned by the overlay, pinned to the listed nodes.
pub fn daemon_set(overlay: &Overlay, nodes: &[String], container: Container) -> DaemonSet {
    let name = overlay.name_any();
    let labels = overlay_labels(&name);
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
    let init_containers = overlay
        .spec
        .switch_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.init_containers.clone());
    DaemonSet {
        metadata: ObjectMeta {
            name: Some(daemon_set_name(&name)),
            namespace: overlay.namespace(),
            labels: Some(labels.clone()),
            owner_references: overlay.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
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
                    host_network: Some(true),
                    host_pid: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
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
                    init_containers,
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "config".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: config_map_name(&name),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        host("ovs-run", "/var/run/openvswitch"),
                        host("l2sm-run", "/run/l2sm"),
                        host("netns", "/var/run/netns"),
                    ]),
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
    },
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
    let (ok, reason, message) = match observed {
        Observed::Invalid(m) => (false, "InvalidSpec", m.clone()),
        Observed::Deployed {
            wanted,
            ready,
            unaddressed,
            note,
        } => {
            let mut msg = format!("{ready}/{wanted} node agent(s) ready");
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
            let reason = if !unaddressed.is_empty() {
                "NodesWithoutAddress"
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
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let cm = config_map(overlay, topology_file(&topo, &addresses));
    let cms: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), &ns);
    cms.patch(&cm.name_any(), &params, &Patch::Apply(&cm))
        .await?;
    let (container, note) = agent_container(&overlay.spec, &ctx.settings);
    let ds = daemon_set(overlay, &topo.nodes, container);
    let dss: Api<DaemonSet> = Api::namespaced(ctx.kube.clone(), &ns);
    let applied = dss
        .patch(&ds.name_any(), &params, &Patch::Apply(&ds))
        .await?;
    let ready = applied
        .status
        .as_ref()
        .map(|s| s.number_ready.max(0) as usize)
        .unwrap_or(0);
    let observed = Observed::Deployed {
        wanted: topo.nodes.len(),
        ready,
        unaddressed,
        note,
    };
    let st = compute_status(
        overlay.status.as_ref(),
        &overlay.spec,
        generation,
        &observed,
        now(),
    );
    patch_status(overlay, overlay.status.as_ref(), st, ctx).await?;
    Ok(Action::requeue(ctx.settings.resync))
}

async fn cleanup(overlay: &Overlay, ctx: &Context) -> Result<Action> {
    let ns = overlay.namespace().unwrap_or_default();
    let name = overlay.name_any();
    let gone = |r: std::result::Result<_, kube::Error>| match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::from(e)),
    };
    let dss: Api<DaemonSet> = Api::namespaced(ctx.kube.clone(), &ns);
    gone(
        dss.delete(&daemon_set_name(&name), &DeleteParams::default())
            .await
            .map(|_| ()),
    )?;
    let cms: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), &ns);
    gone(
        cms.delete(&config_map_name(&name), &DeleteParams::default())
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
        let settings = Settings::default();
        let (c, note) = agent_container(&s, &settings);
        assert_eq!(c.image.as_deref(), Some("registry.example/l2sm:v9"));
        assert_eq!(c.resources, Some(resources));
        assert!(note.is_none());
        let args = c.args.unwrap();
        assert!(
            args.contains(&"tcp:l2sm-controller-service.l2sm-system.svc:6633".to_string()),
            "{args:?}"
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
        let (c, note) = agent_container(&s, &settings);
        assert_eq!(c.image.as_deref(), Some(settings.agent_image.as_str()));
        assert!(note.unwrap().contains("talpa"));
    }

    #[test]
    fn status_reports_readiness_and_the_port_note() {
        let s = spec(&["w1", "w2"], &[]);
        let obs = Observed::Deployed {
            wanted: 2,
            ready: 1,
            unaddressed: vec![],
            note: None,
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
        };
        let st = compute_status(Some(&st), &s, Some(3), &obs, now());
        let r = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(r.reason, "NodesWithoutAddress");
        assert!(r.message.contains("w2"));
    }
}
