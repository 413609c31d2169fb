//! Manifests in the upstream format (the reference's example scenarios, in
//! `tests/manifests/`): every custom resource validates against our generated CRD schema and
//! deserializes into our types with the upstream defaults; every pod (and pod template) goes
//! through the annotation parser and the webhook and gets the expected Multus networks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine as _;
use l2sm_operator::annotations::{parse_networks, NETWORKS_ANNOTATION};
use l2sm_operator::crd::{
    ConnectivityStatus, L2Network, NetworkEdgeDevice, NetworkType, Overlay, QuarantinePodRequest,
};
use l2sm_operator::webhook::{MemoryCatalog, Webhook, WebhookConfig};
use serde_json::{json, Value};

const FILES: [&str; 8] = [
    "overlay-setup.yaml",
    "ping-pong.yaml",
    "adding-ips.yaml",
    "cdn.yaml",
    "vlink.yaml",
    "inter-cluster.yaml",
    "ids.yaml",
    "quarantine.yaml",
];
const MONITORED: &str = "monitored-overlay.yaml";

fn load(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn all_files() -> impl Iterator<Item = &'static str> {
    FILES.into_iter().chain([MONITORED])
}

// ---------------------------------------------------------------- schema validation

/// Validates `v` against a CRD structural schema, as the API server would after defaulting:
/// types, required fields (a defaulted field counts as present), enums, minLength, unknown
/// fields (which the server would prune silently: an error here, since a manifest carrying
/// them would lose data), int-or-string and preserve-unknown-fields. Patterns and formats are
/// not checked.
fn validate(schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    if schema["x-kubernetes-int-or-string"] == true {
        if !(v.is_i64() || v.is_u64() || v.is_string()) {
            errs.push(format!("{path}: must be an integer or a string"));
        }
        return;
    }
    if let Some(values) = schema["enum"].as_array() {
        if !values.contains(v) {
            errs.push(format!("{path}: {v} is not one of {values:?}"));
        }
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    };
    if !ok {
        errs.push(format!("{path}: expected {ty}, got {v}"));
        return;
    }
    if let (Some(min), Some(s)) = (schema["minLength"].as_u64(), v.as_str()) {
        if (s.chars().count() as u64) < min {
            errs.push(format!("{path}: shorter than {min}"));
        }
    }
    if let Some(items) = v.as_array() {
        for (i, item) in items.iter().enumerate() {
            validate(&schema["items"], item, &format!("{path}[{i}]"), errs);
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema["properties"].as_object();
        for req in schema["required"].as_array().into_iter().flatten() {
            let name = req.as_str().unwrap_or("");
            let defaulted = props
                .and_then(|p| p.get(name))
                .is_some_and(|p| p.get("default").is_some());
            if !obj.contains_key(name) && !defaulted {
                errs.push(format!("{path}: missing required {name}"));
            }
        }
        for (k, val) in obj {
            let sub = format!("{path}.{k}");
            if let Some(p) = props.and_then(|p| p.get(k)) {
                validate(p, val, &sub, errs);
            } else if schema["additionalProperties"].is_object() {
                validate(&schema["additionalProperties"], val, &sub, errs);
            } else if props.is_some() && schema["x-kubernetes-preserve-unknown-fields"] != true {
                errs.push(format!("{sub}: unknown field"));
            }
        }
    }
}

/// The root schema of each of our kinds, as committed (generated once per test binary).
fn schema_for(kind: &str) -> &'static Value {
    static SCHEMAS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            l2sm_operator::crds()
                .into_iter()
                .map(|(_, c)| {
                    let v = serde_json::to_value(&c.spec.versions[0].schema).unwrap();
                    (c.spec.names.kind, v["openAPIV3Schema"].clone())
                })
                .collect()
        })
        .get(kind)
        .unwrap_or_else(|| panic!("not ours: {kind}"))
}

fn errors(doc: &Value) -> Vec<String> {
    let kind = doc["kind"].as_str().unwrap();
    let mut errs = Vec::new();
    validate(schema_for(kind), doc, kind, &mut errs);
    errs
}

fn is_ours(doc: &Value) -> bool {
    doc["apiVersion"] == "l2sm.l2sm.k8s.local/v1"
}

#[test]
fn every_custom_resource_validates_against_our_crds() {
    let mut count = BTreeMap::<String, usize>::new();
    for file in all_files() {
        for doc in load(file).iter().filter(|d| is_ours(d)) {
            let errs = errors(doc);
            assert!(errs.is_empty(), "{file}: {errs:#?}");
            *count
                .entry(doc["kind"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    // Every kind is covered.
    assert_eq!(
        count.keys().collect::<Vec<_>>(),
        [
            "L2Network",
            "NetworkEdgeDevice",
            "Overlay",
            "QuarantinePodRequest"
        ]
    );
}

/// The validator catches what the API server would refuse or prune, including the stale
/// upstream docs' forms (`domain` as a string, `numberInterfaces`).
#[test]
fn invalid_resources_are_caught() {
    let net = json!({"apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
                     "metadata": {"name": "n"}, "spec": {"type": "vnet"}});
    assert!(errors(&net).is_empty());
    let broken = |patch: fn(&mut Value), needle: &str| {
        let mut doc = net.clone();
        patch(&mut doc);
        let errs = errors(&doc);
        assert!(
            errs.iter().any(|e| e.contains(needle)),
            "{needle}: {errs:?}"
        );
    };
    broken(|d| d["spec"]["type"] = json!("vlan"), "is not one of");
    broken(|d| d["spec"] = json!({}), "missing required type");
    broken(
        |d| d["spec"]["networkCidr"] = json!("10.0.0.0/24"),
        "unknown field",
    );
    broken(
        |d| d["spec"]["provider"] = json!({"name": "p", "domain": "1.2.3.4"}),
        "spec.provider.domain: expected array",
    );
    broken(
        |d| d["spec"]["ids"] = json!({"node": "n"}),
        "missing required profile",
    );
    broken(
        |d| d["spec"]["ids"] = json!({"node": "n", "profile": "p", "enabled": "yes"}),
        "expected boolean",
    );
    broken(
        |d| d["status"] = json!({"internalConnectivity": "Up"}),
        "is not one of",
    );

    let overlay = load("overlay-setup.yaml").remove(0);
    let mut stale = overlay.clone();
    stale["spec"]["numberInterfaces"] = json!(3);
    assert!(errors(&stale)
        .iter()
        .any(|e| e.contains("numberInterfaces: unknown field")));
    let mut stale = overlay.clone();
    stale["spec"]["switchTemplate"]["spec"] = json!({});
    assert!(errors(&stale)
        .iter()
        .any(|e| e.contains("missing required containers")));
    let mut stale = overlay;
    stale["spec"]["topology"]["links"][0] = json!({"endpointA": "a"});
    assert!(errors(&stale)
        .iter()
        .any(|e| e.contains("missing required endpointB")));

    let qpr = load("quarantine.yaml")
        .into_iter()
        .find(|d| d["kind"] == "QuarantinePodRequest")
        .unwrap();
    let mut bad = qpr.clone();
    bad["spec"]["targetL2Network"] = json!("");
    assert!(errors(&bad).iter().any(|e| e.contains("shorter than 1")));
    let mut bad = qpr;
    bad["spec"]["selector"]
        .as_object_mut()
        .unwrap()
        .remove("l2NetworkSelector");
    assert!(errors(&bad)
        .iter()
        .any(|e| e.contains("missing required l2NetworkSelector")));
}

// ---------------------------------------------------------------- typed resources

fn typed<T: serde::de::DeserializeOwned>(doc: &Value) -> T {
    serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", doc["metadata"]["name"]))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn custom_resources_deserialize_with_upstream_defaults() {
    // Every resource of ours deserializes, and serializes back without losing a field.
    for file in all_files() {
        for doc in load(file).iter().filter(|d| is_ours(d)) {
            let back = match doc["kind"].as_str().unwrap() {
                "L2Network" => serde_json::to_value(typed::<L2Network>(doc)),
                "Overlay" => serde_json::to_value(typed::<Overlay>(doc)),
                "NetworkEdgeDevice" => serde_json::to_value(typed::<NetworkEdgeDevice>(doc)),
                "QuarantinePodRequest" => serde_json::to_value(typed::<QuarantinePodRequest>(doc)),
                k => panic!("{k}"),
            }
            .unwrap();
            assert_contains(&back, doc, &format!("{file} {}", doc["metadata"]["name"]));
        }
    }

    let docs = load("overlay-setup.yaml");
    let o: Overlay = typed(find(&docs, "Overlay", "overlay-sample"));
    assert_eq!(o.spec.interface_number, 10, "default");
    assert_eq!(o.spec.provider.of_port, "6633");
    assert_eq!(o.spec.provider.sdn_port, "30808");
    assert_eq!(o.spec.provider.dns_port, "30053");
    assert_eq!(o.spec.provider.dns_grpc_port, "30818");
    let topo = o.spec.topology.unwrap();
    assert_eq!(topo.nodes.len(), 3);
    assert_eq!(topo.links.unwrap().len(), 3);
    let tmpl = o.spec.switch_template.unwrap().spec.unwrap();
    assert_eq!(tmpl.containers[0].name, "l2sm-switch");
    assert_eq!(
        tmpl.containers[0].args.as_deref().unwrap(),
        ["sps-init", "--node_name=$(NODENAME)"]
    );

    let docs = load("ping-pong.yaml");
    let n: L2Network = typed(find(&docs, "L2Network", "ping-network-intra"));
    assert_eq!(n.spec.network_type, NetworkType::Vnet);
    assert!(n.spec.network_cidr.is_none() && n.spec.provider.is_none() && n.status.is_none());

    let docs = load("vlink.yaml");
    let n: L2Network = typed(find(&docs, "L2Network", "vlink-sample"));
    assert_eq!(n.spec.network_type, NetworkType::Vlink);
    let cfg: Value = serde_json::from_str(n.spec.config.as_deref().unwrap()).unwrap();
    assert_eq!(cfg["overlay-parameters"]["path"]["links"][2], "link-de");

    let docs = load("inter-cluster.yaml");
    let ned: NetworkEdgeDevice = typed(find(&docs, "NetworkEdgeDevice", "example-ned"));
    assert_eq!(ned.spec.provider.name, "idco-controller");
    assert_eq!(ned.spec.provider.of_port, "30663");
    assert_eq!(ned.spec.provider.dns_grpc_port, "30818", "default");
    let nc = ned.spec.node_config.unwrap();
    assert_eq!(
        (nc.node_name.as_str(), nc.ip_address.as_str()),
        ("worker-cluster-2-control-plane", "172.18.0.4")
    );
    let nb = &ned.spec.neighbors.unwrap()[0];
    assert_eq!(
        (nb.node.as_str(), nb.domain.as_str(), nb.lpm_ip.as_deref()),
        ("cluster-b", "172.18.0.3", None)
    );
    let ts = ned.spec.switch_template.unwrap().spec.unwrap();
    assert_eq!(ts.host_network, Some(true));
    let n: L2Network = typed(find(&docs, "L2Network", "ping-network"));
    assert_eq!(n.spec.network_cidr.as_deref(), Some("10.1.2.0/24"));
    assert_eq!(n.spec.pod_address_range.as_deref(), Some("10.1.0.0/16"));
    let p = n.spec.provider.unwrap();
    assert_eq!(
        (p.dns_port.as_str(), p.sdn_port.as_str(), p.of_port.as_str()),
        ("8001", "30808", "6633")
    );

    let docs = load("ids.yaml");
    let n: L2Network = typed(find(&docs, "L2Network", "ztna-example-1-icmp"));
    let ids = n.spec.ids.unwrap();
    assert!(ids.enabled && !ids.use_emerging_threats_open);
    assert_eq!(ids.node, "l2sm-test-control-plane");
    let rule = &ids.custom_rule_sources.unwrap()[0];
    assert!(rule.inline.as_deref().unwrap().contains("sid:1000002"));

    let docs = load("quarantine.yaml");
    let prod: L2Network = typed(find(&docs, "L2Network", "example-production-network"));
    let ids = prod.spec.ids.unwrap();
    assert!(ids.enabled, "default true");
    assert!(!ids.use_emerging_threats_open);
    assert_eq!(
        ids.custom_rule_sources.unwrap()[0]
            .config_map_ref
            .as_ref()
            .unwrap()
            .name,
        "production-ids-rules"
    );
    let quar: L2Network = typed(find(&docs, "L2Network", "example-quarantine-network"));
    assert!(
        quar.spec.ids.unwrap().use_emerging_threats_open,
        "default true"
    );
    let q: QuarantinePodRequest = typed(find(
        &docs,
        "QuarantinePodRequest",
        "example-production-network",
    ));
    assert_eq!(q.spec.target_l2_network, "example-quarantine-network");
    assert_eq!(
        q.spec.selector.pod_label_selector.match_labels.unwrap()["security.l2sm/demo-role"],
        "attacker"
    );
    assert_eq!(
        q.spec.selector.l2_network_selector.match_labels.unwrap()["l2sm/role"],
        "production"
    );

    let docs = load(MONITORED);
    let o: Overlay = typed(&docs[0]);
    let m = o.spec.monitor.unwrap();
    assert_eq!(m.spread_factor, "0.2", "default");
    assert_eq!(m.metrics.len(), 4);
    assert_eq!(
        m.metrics[3].script_source.as_ref().unwrap().key,
        "measure.sh"
    );
    let e = m.export_metric.unwrap();
    assert_eq!(e.method, "codeco-swm");
    assert_eq!(e.config.unwrap()["nt_namespace"], "network-l2sm-namespace");

    // Status as the upstream operator wrote it still reads.
    let status: l2sm_operator::crd::L2NetworkStatus = serde_json::from_value(json!({
        "connectedPodCount": 2, "assignedIPs": {"10.0.0.1": "ping-intra"},
        "lastAssignedIP": "10.0.0.1", "internalConnectivity": "Available"}))
    .unwrap();
    assert_eq!(status.internal_connectivity, ConnectivityStatus::Available);
    assert_eq!(status.assigned_ips.unwrap()["10.0.0.1"], "ping-intra");
}

/// Every field of `want` is in `got` with the same value (`got` may add defaults).
fn assert_contains(got: &Value, want: &Value, ctx: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                let gv = g.get(k).unwrap_or_else(|| panic!("{ctx}: lost field {k}"));
                assert_contains(gv, wv, &format!("{ctx}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{ctx}");
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                assert_contains(gv, wv, &format!("{ctx}[{i}]"));
            }
        }
        _ => assert_eq!(got, want, "{ctx}"),
    }
}

// ---------------------------------------------------------------- pods

type Want = &'static [(&'static str, &'static [&'static str])];

/// (file, pod or Deployment, networks with their requested addresses).
const PODS: &[(&str, &str, Want)] = &[
    (
        "ping-pong.yaml",
        "ping-intra",
        &[("ping-network-intra", &["10.0.0.1/24"])],
    ),
    (
        "ping-pong.yaml",
        "pong-intra",
        &[("ping-network-intra", &[])],
    ),
    (
        "adding-ips.yaml",
        "ping-intra",
        &[("ping-network-intra-l3", &["10.0.0.1/24"])],
    ),
    (
        "adding-ips.yaml",
        "pong-intra",
        &[("ping-network-intra-l3", &["10.0.0.2/24"])],
    ),
    (
        "cdn.yaml",
        "cdn-server",
        &[("v-network-1", &["10.0.1.2/24"])],
    ),
    (
        "cdn.yaml",
        "router",
        &[
            ("v-network-1", &["10.0.1.1/24"]),
            ("v-network-2", &["10.0.2.1/24"]),
        ],
    ),
    (
        "cdn.yaml",
        "content-server",
        &[("v-network-2", &["10.0.2.2/24"])],
    ),
    (
        "vlink.yaml",
        "ping",
        &[("vlink-sample", &["192.168.1.2/24"])],
    ),
    (
        "vlink.yaml",
        "pong",
        &[("vlink-sample", &["192.168.1.3/24"])],
    ),
    ("inter-cluster.yaml", "ping", &[("ping-network", &[])]),
    ("inter-cluster.yaml", "pong", &[("ping-network", &[])]),
    ("ids.yaml", "ping", &[("ztna-example-1-icmp", &[])]),
    ("ids.yaml", "pong", &[("ztna-example-1-icmp", &[])]),
    (
        "quarantine.yaml",
        "server",
        &[("example-production-network", &["10.20.0.10/24"])],
    ),
    (
        "quarantine.yaml",
        "host1",
        &[("example-production-network", &["10.20.0.101/24"])],
    ),
    (
        "quarantine.yaml",
        "host2",
        &[("example-production-network", &["10.20.0.102/24"])],
    ),
    (
        "quarantine.yaml",
        "honeypot-server",
        &[("example-quarantine-network", &["10.20.0.10/24"])],
    ),
    (
        "quarantine.yaml",
        "attacker",
        &[("example-production-network", &["10.20.0.103/24"])],
    ),
];

/// The pods of a file: Pods as they are, workloads as their template (name = workload name).
fn pods(docs: &[Value]) -> Vec<(String, Value)> {
    docs.iter()
        .filter_map(|d| match d["kind"].as_str() {
            Some("Pod") => Some((d["metadata"]["name"].as_str()?.to_owned(), d.clone())),
            Some("Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
                let t = &d["spec"]["template"];
                Some((
                    d["metadata"]["name"].as_str()?.to_owned(),
                    json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": t["metadata"], "spec": t["spec"]}),
                ))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_pod_gets_its_networks() {
    let mut seen = Vec::new();
    for file in FILES {
        let docs = load(file);
        // The webhook sees exactly the networks of the scenario.
        let catalog = MemoryCatalog::new();
        for d in docs.iter().filter(|d| d["kind"] == "L2Network") {
            catalog.insert("default", d["metadata"]["name"].as_str().unwrap());
        }
        let hook = Webhook::new(catalog, WebhookConfig::default());
        for (name, pod) in pods(&docs) {
            let want = PODS
                .iter()
                .find(|(f, p, _)| *f == file && *p == name)
                .unwrap_or_else(|| panic!("{file}: unexpected pod {name}"))
                .2;
            let annotation = pod["metadata"]["annotations"][NETWORKS_ANNOTATION]
                .as_str()
                .unwrap();
            let parsed: Vec<(String, Vec<String>)> = parse_networks(annotation)
                .unwrap()
                .into_iter()
                .map(|r| (r.name, r.ips))
                .collect();
            let expected: Vec<(String, Vec<String>)> = want
                .iter()
                .map(|(n, ips)| (n.to_string(), ips.iter().map(|s| s.to_string()).collect()))
                .collect();
            assert_eq!(parsed, expected, "{file} {name}");

            let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": name, "operation": "CREATE", "namespace": "default", "object": pod}});
            let out = hook.review(review.to_string().as_bytes()).await.unwrap();
            let resp = &out["response"];
            assert_eq!(resp["allowed"], true, "{file} {name}: {resp}");
            let patch: Value = serde_json::from_slice(
                &base64::engine::general_purpose::STANDARD
                    .decode(resp["patch"].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(patch.as_array().unwrap().len(), 1);
            assert_eq!(
                patch[0]["path"],
                "/metadata/annotations/k8s.v1.cni.cncf.io~1networks"
            );
            let multus: Value = serde_json::from_str(patch[0]["value"].as_str().unwrap()).unwrap();
            let multus_expected: Vec<Value> = want
                .iter()
                .map(|(n, ips)| {
                    if ips.is_empty() {
                        json!({"name": format!("l2sm-{n}")})
                    } else {
                        json!({"name": format!("l2sm-{n}"), "ips": ips})
                    }
                })
                .collect();
            assert_eq!(multus, Value::Array(multus_expected), "{file} {name}");
            seen.push((file, name));
        }
    }
    assert_eq!(seen.len(), PODS.len(), "every listed pod was found");
}

// ---------------------------------------------------------------- the install base (deploy/)

/// Every document of the files the kustomize base in deploy/ lists (directories skipped: the
/// CRDs are checked elsewhere).
fn deploy_docs() -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let k: Value = serde_saphyr::from_str(&read("kustomization.yaml")).unwrap();
    let mut docs = Vec::new();
    for r in k["resources"].as_array().unwrap() {
        let r = r.as_str().unwrap();
        if dir.join(r).is_dir() {
            continue;
        }
        let found: Vec<Value> = serde_saphyr::from_multiple(&read(r)).unwrap();
        docs.extend(found.into_iter().filter(|d| !d.is_null()));
    }
    docs
}

fn pod_specs(docs: &[Value]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter(|d| ["Deployment", "DaemonSet"].contains(&d["kind"].as_str().unwrap_or("")))
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap().to_string(),
                &d["spec"]["template"]["spec"],
            )
        })
        .collect()
}

/// Issue #13: what a real cluster refuses or waits on forever.
#[test]
fn install_base_works_on_real_clusters() {
    let docs = deploy_docs();
    let specs = pod_specs(&docs);
    // Defect 12: no system-node-critical outside kube-system; every class used is ours.
    let classes: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "PriorityClass")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    for (name, spec) in &specs {
        if let Some(c) = spec["priorityClassName"].as_str() {
            assert!(
                classes.contains(&c),
                "{name} uses PriorityClass {c}, which the base does not create"
            );
        }
    }
    assert!(specs
        .iter()
        .any(|(_, s)| s["priorityClassName"] == "l2sm-node-critical"));
    // Defect 1: the namespace of the privileged agents admits them under Pod Security.
    let ns = find(&docs, "Namespace", "l2sm-system");
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            ns["metadata"]["labels"][format!("pod-security.kubernetes.io/{mode}")],
            "privileged",
            "{mode}"
        );
    }
    // Defect 4: without cert-manager the certificate Secret is absent; the pods must start.
    let operator = find(&docs, "Deployment", "l2sm-operator");
    let spec = &operator["spec"]["template"]["spec"];
    let cert = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "webhook-cert")
        .unwrap();
    assert_eq!(cert["secret"]["optional"], true, "{cert}");
    // Defect 8: the pod is not killed before its graceful shutdown (the reconcilers' grace,
    // then the lease release, bounded by the renew deadline) is over.
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    let shutdown = l2sm_operator::operator::SHUTDOWN_GRACE
        + l2sm_operator::leader::Timings::default().renew_deadline;
    assert!(
        grace > shutdown.as_secs(),
        "terminationGracePeriodSeconds {grace} <= graceful shutdown {shutdown:?}"
    );
    // Defect 7: the switch DaemonSet does not install the CNI plugin (the agents do, into
    // the configured directory), so dropping it loses nothing.
    let switch = find(&docs, "DaemonSet", "l2sm-switch").to_string();
    assert!(
        !switch.contains("l2sm-cni") && !switch.contains("cni/bin"),
        "{switch}"
    );
}
