//! The committed CRD YAML is what the types generate, and the generated schemas carry the
//! upstream contract (names, enums, defaults, required fields, printer columns).

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{json, Value};

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
}

#[test]
fn committed_crd_yaml_is_current() {
    let mut stale = Vec::new();
    let expected: Vec<&str> = l2sm_operator::crds().iter().map(|(f, _)| *f).collect();
    for (file, crd) in l2sm_operator::crds() {
        let generated = l2sm_operator::crd_yaml(&crd).expect("serialize CRD");
        let path = crds_dir().join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "deploy/crds is stale for {stale:?}: run `cargo run -p l2sm-operator --example crdgen deploy/crds`"
    );
    // No leftover file of a CRD we no longer generate.
    let mut present: Vec<String> = std::fs::read_dir(crds_dir())
        .expect("deploy/crds exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    present.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(present, want);
}

/// The stream for `kubectl apply -f -` holds the four documents.
#[test]
fn all_crds_stream() {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&l2sm_operator::all_crds_yaml().unwrap()).unwrap();
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "L2Network",
            "Overlay",
            "NetworkEdgeDevice",
            "QuarantinePodRequest"
        ]
    );
}

/// The committed YAML parses back into the same CRD (the YAML writer loses nothing).
#[test]
fn committed_yaml_round_trips() {
    for (file, crd) in l2sm_operator::crds() {
        let text = std::fs::read_to_string(crds_dir().join(file)).expect("read CRD file");
        let parsed: Value = serde_saphyr::from_str(&text).expect("parse CRD YAML");
        assert_eq!(parsed, serde_json::to_value(&crd).unwrap(), "{file}");
    }
}

/// A generated CRD as JSON (all generated once per test binary).
fn crd(kind: &str) -> Value {
    static ALL: OnceLock<Vec<Value>> = OnceLock::new();
    ALL.get_or_init(|| {
        l2sm_operator::crds()
            .into_iter()
            .map(|(_, c)| serde_json::to_value(c).unwrap())
            .collect()
    })
    .iter()
    .find(|c| c["spec"]["names"]["kind"] == kind)
    .unwrap_or_else(|| panic!("no CRD {kind}"))
    .clone()
}

/// Follows a path of property names from the root schema.
fn at<'a>(crd: &'a Value, path: &[&str]) -> &'a Value {
    let mut v = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    for p in path {
        v = match *p {
            "[]" => &v["items"],
            name => &v["properties"][name],
        };
        assert!(!v.is_null(), "no {p} in {path:?}");
    }
    v
}

fn required(v: &Value) -> Vec<String> {
    let mut r: Vec<String> = v["required"]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    r.sort();
    r
}

fn columns(crd: &Value) -> Vec<(String, String)> {
    crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["jsonPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_crd_is_namespaced_v1_with_status() {
    let plurals = [
        ("L2Network", "l2networks", "l2network"),
        ("Overlay", "overlays", "overlay"),
        (
            "NetworkEdgeDevice",
            "networkedgedevices",
            "networkedgedevice",
        ),
        (
            "QuarantinePodRequest",
            "quarantinepodrequests",
            "quarantinepodrequest",
        ),
    ];
    for (kind, plural, singular) in plurals {
        let c = crd(kind);
        assert_eq!(
            c["metadata"]["name"],
            format!("{plural}.l2sm.l2sm.k8s.local")
        );
        assert_eq!(c["spec"]["group"], "l2sm.l2sm.k8s.local");
        assert_eq!(c["spec"]["scope"], "Namespaced");
        assert_eq!(c["spec"]["names"]["plural"], plural);
        assert_eq!(c["spec"]["names"]["singular"], singular);
        assert_eq!(c["spec"]["names"]["listKind"], format!("{kind}List"));
        let v = &c["spec"]["versions"];
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["name"], "v1");
        assert_eq!(v[0]["served"], true);
        assert_eq!(v[0]["storage"], true);
        assert_eq!(v[0]["subresources"]["status"], json!({}));
        // Every kind has Ready conditions, as a list map keyed by type.
        let conds = at(&c, &["status", "conditions"]);
        assert_eq!(conds["x-kubernetes-list-type"], "map");
        assert_eq!(conds["x-kubernetes-list-map-keys"], json!(["type"]));
        assert_eq!(
            required(&conds["items"]),
            ["lastTransitionTime", "message", "reason", "status", "type"]
        );
        assert_eq!(
            conds["items"]["properties"]["status"]["enum"],
            json!(["True", "False", "Unknown"])
        );
        assert!(conds["items"]["properties"]["observedGeneration"].is_object());
        // The top-level spec is required, as upstream.
        assert_eq!(required(at(&c, &[])), ["spec"]);
        // Optional fields are plain optional, as controller-gen writes them.
        assert!(
            !c.to_string().contains("\"nullable\""),
            "{kind} has nullable"
        );
    }
}

#[test]
fn l2network_schema_matches_upstream() {
    let c = crd("L2Network");
    let spec = at(&c, &["spec"]);
    assert_eq!(required(spec), ["type"]);
    let ty = at(&c, &["spec", "type"]);
    assert_eq!(ty["enum"], json!(["ext-vnet", "vnet", "vlink"]));
    assert_eq!(ty["type"], "string");
    assert_eq!(ty["x-kubernetes-preserve-unknown-fields"], true);
    let mut props: Vec<&String> = spec["properties"].as_object().unwrap().keys().collect();
    props.sort();
    assert_eq!(
        props,
        [
            "config",
            "ids",
            "networkCIDR",
            "podAddressRange",
            "provider",
            "type"
        ]
    );
    check_provider(at(&c, &["spec", "provider"]));
    let ids = at(&c, &["spec", "ids"]);
    assert_eq!(
        required(ids),
        ["enabled", "node", "profile", "useEmergingThreatsOpen"]
    );
    assert_eq!(ids["properties"]["enabled"]["default"], true);
    assert_eq!(ids["properties"]["useEmergingThreatsOpen"]["default"], true);
    for f in [
        "homeNetCidr",
        "customRuleSources",
        "ignorePorts",
        "namespace",
    ] {
        assert!(ids["properties"][f].is_object(), "ids.{f}");
    }
    let src = at(&c, &["spec", "ids", "customRuleSources", "[]"]);
    assert_eq!(required(src), ["name"]);
    assert!(src["properties"]["configMapRef"]["properties"]["name"].is_object());

    let status = at(&c, &["status"]);
    assert_eq!(required(status), ["internalConnectivity"]);
    let ic = at(&c, &["status", "internalConnectivity"]);
    assert_eq!(ic["enum"], json!(["Available", "Unavailable", "Unknown"]));
    assert_eq!(ic["default"], "Unavailable");
    assert_eq!(
        at(&c, &["status", "providerConnectivity"])["enum"],
        json!(["Available", "Unavailable", "Unknown"])
    );
    assert_eq!(at(&c, &["status", "connectedPodCount"])["default"], 0);
    assert_eq!(at(&c, &["status", "connectedPodCount"])["type"], "integer");
    assert_eq!(
        at(&c, &["status", "assignedIPs"])["additionalProperties"]["type"],
        "string"
    );
    assert_eq!(at(&c, &["status", "lastAssignedIP"])["type"], "string");

    let cols = columns(&c);
    assert_eq!(
        cols[..2],
        [
            (
                "AVAILABILITY".to_owned(),
                ".status.internalConnectivity".to_owned()
            ),
            (
                "CONNECTED_PODS".to_owned(),
                ".status.connectedPodCount".to_owned()
            )
        ]
    );
    assert_eq!(
        cols.last().unwrap(),
        &("AGE".to_owned(), ".metadata.creationTimestamp".to_owned())
    );
}

fn check_provider(p: &Value) {
    assert_eq!(required(p), ["domain", "name"]);
    assert_eq!(p["properties"]["domain"]["type"], "array");
    assert_eq!(p["properties"]["domain"]["items"]["type"], "string");
    for (field, default) in [
        ("sdnPort", "30808"),
        ("dnsPort", "30053"),
        ("dnsGrpcPort", "30818"),
        ("ofPort", "6633"),
    ] {
        assert_eq!(p["properties"][field]["default"], default, "{field}");
        assert_eq!(p["properties"][field]["type"], "string", "{field}");
    }
}

fn check_monitor(m: &Value) {
    assert_eq!(required(m), ["metrics"]);
    assert_eq!(m["properties"]["spreadFactor"]["default"], "0.2");
    assert_eq!(required(&m["properties"]["metrics"]["items"]), ["name"]);
    let script = &m["properties"]["metrics"]["items"]["properties"]["scriptSource"];
    assert_eq!(required(script), ["key", "name"]);
    let export = &m["properties"]["exportMetric"]["properties"];
    assert_eq!(export["method"]["default"], "default");
    assert_eq!(export["serviceAccount"]["default"], "default");
    assert_eq!(export["config"]["additionalProperties"]["type"], "string");
    assert!(m["properties"]["networkCIDR"].is_object());
    assert!(m["properties"]["ipCIDR"].is_object());
}

fn check_switch_template(t: &Value) {
    assert_eq!(required(&t["properties"]["spec"]), ["containers"]);
    let spec = &t["properties"]["spec"]["properties"];
    for f in ["volumes", "initContainers", "containers", "hostNetwork"] {
        assert!(spec[f].is_object(), "switchTemplate.spec.{f}");
    }
    assert_eq!(
        spec["volumes"]["x-kubernetes-list-map-keys"],
        json!(["name"])
    );
    // A full container schema (image, args, env, resources, securityContext...).
    let container = &spec["containers"]["items"];
    assert_eq!(required(container), ["name"]);
    for f in ["image", "args", "env", "resources", "securityContext"] {
        assert!(container["properties"][f].is_object(), "container.{f}");
    }
    // Labels and annotations survive (upstream prunes them: bug 16).
    let meta = &t["properties"]["metadata"]["properties"];
    assert!(meta["labels"].is_object() && meta["annotations"].is_object());
}

fn check_link_status(l: &Value) {
    assert_eq!(required(l), ["sourceNode", "status", "targetNode"]);
    assert_eq!(
        required(&l["properties"]["metrics"]["items"]),
        ["name", "value"]
    );
}

#[test]
fn overlay_schema_matches_upstream() {
    let c = crd("Overlay");
    assert_eq!(required(at(&c, &["spec"])), ["provider"]);
    check_provider(at(&c, &["spec", "provider"]));
    assert_eq!(at(&c, &["spec", "interfaceNumber"])["default"], 10);
    assert_eq!(at(&c, &["spec", "interfaceNumber"])["type"], "integer");
    let topo = at(&c, &["spec", "topology"]);
    assert_eq!(required(topo), ["nodes"]);
    assert_eq!(
        required(at(&c, &["spec", "topology", "links", "[]"])),
        ["endpointA", "endpointB"]
    );
    check_switch_template(at(&c, &["spec", "switchTemplate"]));
    check_monitor(at(&c, &["spec", "monitor"]));
    check_link_status(at(&c, &["status", "linkMetrics", "[]"]));
    assert_eq!(
        columns(&c).last().unwrap().0,
        "AGE",
        "upstream has none; ours add READY and AGE"
    );
}

#[test]
fn network_edge_device_schema_matches_upstream() {
    let c = crd("NetworkEdgeDevice");
    assert_eq!(required(at(&c, &["spec"])), ["provider"]);
    check_provider(at(&c, &["spec", "provider"]));
    assert_eq!(
        required(at(&c, &["spec", "nodeConfig"])),
        ["ipAddress", "nodeName"]
    );
    let n = at(&c, &["spec", "neighbors", "[]"]);
    assert_eq!(required(n), ["domain", "node"]);
    assert!(n["properties"]["lpmIp"].is_object());
    check_switch_template(at(&c, &["spec", "switchTemplate"]));
    check_monitor(at(&c, &["spec", "monitor"]));

    let status = at(&c, &["status"]);
    assert_eq!(required(status), ["availability"]);
    assert_eq!(
        status["properties"]["availability"]["enum"],
        json!(["Available", "Unavailable", "Unknown"])
    );
    assert_eq!(
        status["properties"]["availability"]["default"],
        "Unavailable"
    );
    assert_eq!(
        required(at(&c, &["status", "connectedNeighbors", "[]"])),
        ["domain", "node"]
    );
    assert_eq!(at(&c, &["status", "openflowId"])["type"], "string");
    check_link_status(at(&c, &["status", "linkMetrics", "[]"]));
    assert_eq!(
        columns(&c)[0],
        ("STATUS".to_owned(), ".status.availability".to_owned())
    );
}

#[test]
fn quarantine_schema_matches_upstream() {
    let c = crd("QuarantinePodRequest");
    assert_eq!(required(at(&c, &["spec"])), ["selector", "targetL2Network"]);
    assert_eq!(at(&c, &["spec", "targetL2Network"])["minLength"], 1);
    let sel = at(&c, &["spec", "selector"]);
    assert_eq!(required(sel), ["l2NetworkSelector", "podLabelSelector"]);
    for s in ["l2NetworkSelector", "podLabelSelector"] {
        assert_eq!(sel["properties"][s]["x-kubernetes-map-type"], "atomic");
        let p = &sel["properties"][s]["properties"];
        assert_eq!(p["matchLabels"]["additionalProperties"]["type"], "string");
        assert_eq!(
            required(&p["matchExpressions"]["items"]),
            ["key", "operator"]
        );
    }
    let status = at(&c, &["status"])["properties"].as_object().unwrap();
    let mut keys: Vec<&String> = status.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "conditions",
            "matchedPodCount",
            "movedPodCount",
            "observedGeneration",
            "sourceL2NetworkName",
            "targetL2NetworkName"
        ]
    );
    assert_eq!(status["matchedPodCount"]["format"], "int32");
    assert_eq!(status["observedGeneration"]["format"], "int64");
}

/// The API server only accepts structural schemas; without one to ask here, check its rules:
/// a type on every node (or int-or-string), no `properties` beside `additionalProperties`, no
/// JSON-schema features it forbids, list maps keyed by required fields, defaults that match
/// their type and nothing under `metadata` but a bare object.
#[test]
fn schemas_are_structural() {
    fn walk(s: &Value, path: &str, errs: &mut Vec<String>) {
        let Some(obj) = s.as_object() else {
            errs.push(format!("{path}: not an object"));
            return;
        };
        for forbidden in [
            "$ref",
            "definitions",
            "patternProperties",
            "additionalItems",
            "dependencies",
            "nullable",
            "uniqueItems",
            "allOf",
            "anyOf",
            "oneOf",
            "not",
        ] {
            if obj.contains_key(forbidden) {
                errs.push(format!("{path}: {forbidden}"));
            }
        }
        let ty = obj.get("type").and_then(Value::as_str);
        if ty.is_none() && obj.get("x-kubernetes-int-or-string") != Some(&json!(true)) {
            errs.push(format!("{path}: no type"));
        }
        if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
            errs.push(format!("{path}: properties and additionalProperties"));
        }
        if let Some(d) = obj.get("default") {
            let ok = match ty {
                Some("string") => d.is_string(),
                Some("integer") => d.is_i64(),
                Some("boolean") => d.is_boolean(),
                Some("object") => d.is_object(),
                Some("array") => d.is_array(),
                _ => false,
            };
            if !ok {
                errs.push(format!("{path}: default {d} is not a {ty:?}"));
            }
            if let Some(values) = obj.get("enum").and_then(Value::as_array) {
                if !values.contains(d) {
                    errs.push(format!("{path}: default {d} not in enum"));
                }
            }
        }
        if obj.get("x-kubernetes-list-type") == Some(&json!("map")) {
            let item = &s["items"];
            for key in s["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let k = key.as_str().unwrap_or("");
                let required = item["required"].as_array().is_some_and(|r| r.contains(key));
                let defaulted = item["properties"][k].get("default").is_some();
                if !required && !defaulted {
                    errs.push(format!(
                        "{path}: list-map key {k} neither required nor defaulted"
                    ));
                }
            }
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                walk(v, &format!("{path}.{k}"), errs);
            }
        }
        if let Some(items) = obj.get("items") {
            walk(items, &format!("{path}[]"), errs);
        }
        if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
            walk(extra, &format!("{path}{{}}"), errs);
        }
    }
    for kind in [
        "L2Network",
        "Overlay",
        "NetworkEdgeDevice",
        "QuarantinePodRequest",
    ] {
        let c = crd(kind);
        let root = at(&c, &[]);
        assert_eq!(root["type"], "object");
        assert_eq!(at(&c, &["metadata"]), &json!({"type": "object"}), "{kind}");
        let mut errs = Vec::new();
        walk(root, kind, &mut errs);
        assert!(errs.is_empty(), "{errs:#?}");
    }
}

/// `deploy/crds/kustomization.yaml` lists exactly the generated CRDs.
#[test]
fn kustomization_lists_every_crd() {
    let text = std::fs::read_to_string(crds_dir().join("kustomization.yaml")).unwrap();
    let k: Value = serde_saphyr::from_str(&text).unwrap();
    let listed: Vec<&str> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let generated: Vec<&str> = l2sm_operator::crds().iter().map(|(f, _)| *f).collect();
    assert_eq!(listed, generated);
}
