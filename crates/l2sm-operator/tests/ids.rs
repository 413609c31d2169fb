//! IDS for `L2Network.spec.ids` against the stateful fake Kubernetes API (`l2sm-kube-fake`):
//! the Suricata Deployment, its rules ConfigMap from every kind of customRuleSources (two
//! sources with the same key included), the mirror NAD, rollout when the rules change, bad
//! input changing nothing, removal when `spec.ids` goes; and `l2sm ids-watch`: an EVE file
//! with alerts and garbage becomes exactly the expected QuarantinePodRequests, repeated
//! alerts none more, within the watcher's RBAC table. The STORED objects are asserted.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use l2sm_api::{ControllerClient, RetryPolicy};
use l2sm_kube_fake::FakeApi;
use l2sm_operator::api_calls::{allows, ids_watch_allows};
use l2sm_operator::crd::{L2Network, L2NetworkStatus, QuarantinePodRequest};
use l2sm_operator::ids_watch::{self, IdsWatchArgs, Tail, Watcher};
use l2sm_operator::reconcile::ids::{
    self, CONDITION_IDS, IDS_OF_LABEL, NETWORK_NAME_LABEL, QUARANTINE_TO_ANNOTATION,
    RULES_HASH_ANNOTATION,
};
use l2sm_operator::reconcile::pod::POD_NAME_LABEL;
use l2sm_operator::reconcile::{Context, Settings};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

const OP_NS: &str = "l2sm-system";
const NAD_GROUP: &str = "k8s.cni.cncf.io";
const NADS: &str = "network-attachment-definitions";

/// The controller is not asked by the IDS code: an address nobody listens on.
fn no_controller() -> ControllerClient {
    ControllerClient::new(
        &format!("http://127.0.0.1:{}", l2sm_test_support::free_port()),
        None,
        RetryPolicy {
            attempts: 1,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
        },
    )
    .unwrap()
}

fn context(fake: &FakeApi) -> Arc<Context> {
    Context::new(fake.client(), no_controller(), Settings::default())
}

fn network(ids: Option<Value>, annotations: Value) -> L2Network {
    let mut spec = json!({"type": "vnet", "networkCIDR": "10.20.0.0/24"});
    if let Some(i) = ids {
        spec["ids"] = i;
    }
    serde_json::from_value(json!({
        "apiVersion": "l2sm.l2sm.k8s.local/v1", "kind": "L2Network",
        "metadata": {"name": "blue", "namespace": "team-a", "annotations": annotations},
        "spec": spec,
    }))
    .unwrap()
}

fn every_source() -> Value {
    json!({
        "enabled": true, "node": "w1", "profile": "suricata",
        // Upstream would place the IDS here; we keep it in the operator's namespace.
        "namespace": "elsewhere",
        "useEmergingThreatsOpen": false,
        "homeNetCidr": ["10.20.0.7/24", "10.30.0.0/24"],
        "ignorePorts": [53],
        "customRuleSources": [
            {"name": "local", "inline": "alert icmp any any -> any any (msg:\"ping\"; sid:1000001;)"},
            {"name": "team", "configMapRef": {"name": "team-rules"}},
            {"name": "other", "configMapRef": {"name": "other-rules"}},
            {"name": "remote", "url": "https://rules.example/emerging.rules"},
            {"name": "local", "inline": "alert tcp any any -> any 23 (msg:\"telnet\"; sid:1000002;)"},
        ],
    })
}

fn configmap(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "team-a"},
        "data": data,
    }))
    .unwrap()
}

/// Runs the IDS part of an L2Network pass on the stored network; returns the status it
/// computed.
async fn ids_pass(fake: &FakeApi, ctx: &Arc<Context>) -> L2NetworkStatus {
    let net = fake
        .get::<L2Network>(Some("team-a"), "blue")
        .expect("network stored");
    let mut status = net.status.clone().unwrap_or_default();
    ids::reconcile(&net, ctx, &mut status)
        .await
        .expect("ids reconcile");
    status
}

/// Stores `status` as the network's status (what the L2Network pass writes after the IDS part).
async fn store_status(fake: &FakeApi, status: &L2NetworkStatus) {
    let api: Api<L2Network> = Api::namespaced(fake.admin_client(), "team-a");
    let mut v = serde_json::to_value(status).unwrap();
    if v.get("conditions").is_none() {
        v["conditions"] = json!([]);
    }
    api.patch_status(
        "blue",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": v})),
    )
    .await
    .unwrap();
}

fn deployment(fake: &FakeApi) -> Option<Deployment> {
    fake.get::<Deployment>(Some(OP_NS), &ids::deployment_name("team-a", "blue"))
}

fn rules_cm(fake: &FakeApi) -> Option<ConfigMap> {
    fake.get::<ConfigMap>(Some(OP_NS), &ids::rules_configmap_name("team-a", "blue"))
}

fn hash(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[RULES_HASH_ANNOTATION]
        .clone()
}

fn cond(status: &L2NetworkStatus) -> (String, String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_IDS)
        .expect("IdsReady condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// The signature of the RBAC tables' checks (`allows`, `ids_watch_allows`).
type Allows = fn(&str, &str, Option<&str>, &str, Option<&str>, Option<&str>, &str) -> bool;

/// Every call the fake saw is one `allowed` grants (`who` names the table in the message).
fn assert_calls_in(fake: &FakeApi, allowed: Allows, who: &str) {
    let outside: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| {
            !allowed(
                &c.group,
                &c.resource,
                c.subresource.as_deref(),
                &c.verb,
                c.namespace.as_deref(),
                c.name.as_deref(),
                OP_NS,
            )
        })
        .map(|c| {
            format!(
                "{} {}.{} {:?}",
                c.verb,
                c.resource_path(),
                c.group,
                c.namespace
            )
        })
        .collect();
    assert!(
        outside.is_empty(),
        "calls outside the {who}'s table: {outside:?}"
    );
}

fn assert_operator_calls_in_table(fake: &FakeApi) {
    assert_calls_in(fake, allows, "operator");
}

#[tokio::test]
async fn deployment_rules_configmap_and_mirror_from_every_rule_source() {
    let fake = FakeApi::new();
    let ctx = context(&fake);
    fake.seed(&network(
        Some(every_source()),
        json!({QUARANTINE_TO_ANNOTATION: "jail"}),
    ));
    // Both referenced ConfigMaps use the key upstream's example uses: they must not collide.
    fake.seed(&configmap(
        "team-rules",
        json!({"suricata.rules": "alert udp any any -> any 4444 (msg:\"team\"; sid:2000001;)", "README": "not rules"}),
    ));
    fake.seed(&configmap(
        "other-rules",
        json!({"suricata.rules": "alert udp any any -> any 5555 (msg:\"other\"; sid:3000001;)"}),
    ));
    let status = ids_pass(&fake, &ctx).await;
    assert_operator_calls_in_table(&fake);

    // The rules ConfigMap: one key per rule set, the two `suricata.rules` and the two sources
    // named `local` side by side, in the spec's order; no `var` line anywhere.
    let cm = rules_cm(&fake).expect("rules ConfigMap in the operator's namespace");
    let data = cm.data.clone().unwrap();
    assert_eq!(
        data.keys().cloned().collect::<Vec<_>>(),
        [
            "000-local.rules",
            "001-team-suricata.rules",
            "002-other-suricata.rules",
            "004-local.rules"
        ]
    );
    assert!(data["001-team-suricata.rules"].contains("sid:2000001"));
    assert!(data["002-other-suricata.rules"].contains("sid:3000001"));
    assert!(data["000-local.rules"].contains("sid:1000001"));
    assert!(data["004-local.rules"].contains("sid:1000002"));
    for text in data.values() {
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("var ")),
            "{text}"
        );
    }

    // The Deployment: one Suricata on the mirror, HOME_NET and the BPF filter as arguments,
    // the url source fetched by the init container, the watcher beside it with the token.
    let d = deployment(&fake).expect("IDS Deployment in the operator's namespace");
    let v = serde_json::to_value(&d).unwrap();
    let tpl = &v["spec"]["template"];
    assert_eq!(v["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(tpl["spec"]["nodeSelector"]["kubernetes.io/hostname"], "w1");
    assert_eq!(tpl["spec"]["serviceAccountName"], "l2sm-ids-watcher");
    assert_eq!(tpl["spec"]["automountServiceAccountToken"], false);
    let multus: Value = serde_json::from_str(
        tpl["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        multus,
        json!([{"name": "l2sm.mirror.blue", "namespace": OP_NS, "interface": "net1"}])
    );
    let suricata = &tpl["spec"]["containers"][0];
    assert_eq!(suricata["name"], "suricata");
    assert_eq!(suricata["image"], Settings::default().ids.image);
    assert_eq!(
        suricata["env"],
        json!([
            {"name": "HOME_NET", "value": "[10.20.0.0/24,10.30.0.0/24]"},
            {"name": "BPF_FILTER", "value": "not (port 53)"},
        ])
    );
    assert_eq!(suricata["resources"]["requests"]["cpu"], "500m");
    assert!(suricata["securityContext"].get("privileged").is_none());
    assert!(!suricata["volumeMounts"].to_string().contains("watch-token"));
    let init = &tpl["spec"]["initContainers"][0];
    assert_eq!(
        init["env"],
        json!([
            {"name": "RULE_FILE_0", "value": "003-remote.rules"},
            {"name": "RULE_URL_0", "value": "https://rules.example/emerging.rules"},
        ])
    );
    // The URL is never part of the script (no shell injection through the spec).
    assert!(!init["command"].to_string().contains("rules.example"));
    let watch = &tpl["spec"]["containers"][1];
    assert_eq!(watch["name"], "ids-watch");
    let args: Vec<&str> = watch["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args[..9],
        [
            "ids-watch",
            "--eve",
            "/var/log/suricata/eve.json",
            "--network",
            "blue",
            "--namespace",
            "team-a",
            "--quarantine-to",
            "jail"
        ]
    );
    assert!(watch["volumeMounts"].to_string().contains("watch-token"));

    // The mirror NAD: `mirrorOf`, and no `network` (a plugin that does not know mirrors
    // refuses it instead of making the IDS a member).
    let nad = fake
        .get_value(NAD_GROUP, NADS, Some(OP_NS), "l2sm.mirror.blue")
        .expect("mirror NAD");
    let conf: Value = serde_json::from_str(nad["spec"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(conf["mirrorOf"], "blue");
    assert!(conf.get("network").is_none(), "{conf}");
    // The ConfigMap and the NAD go with the Deployment.
    for owners in [
        serde_json::to_value(&cm.metadata.owner_references).unwrap(),
        nad["metadata"]["ownerReferences"].clone(),
    ] {
        assert_eq!(owners[0]["kind"], "Deployment");
        assert_eq!(owners[0]["uid"], json!(d.metadata.uid));
    }
    // Nothing outside the operator's namespace, whatever `ids.namespace` says.
    assert!(fake.list::<Deployment>(Some("elsewhere")).is_empty());
    assert!(fake.list::<Deployment>(Some("team-a")).is_empty());
    // The network is selectable by the watcher's requests.
    let net = fake.get::<L2Network>(Some("team-a"), "blue").unwrap();
    assert_eq!(net.labels()[NETWORK_NAME_LABEL], "blue");
    let (s, reason, _) = cond(&status);
    assert_eq!((s.as_str(), reason.as_str()), ("False", "IdsStarting"));

    // Once the Deployment has a pod: IdsRunning.
    let deps: Api<Deployment> = Api::namespaced(fake.admin_client(), OP_NS);
    deps.patch_status(
        &ids::deployment_name("team-a", "blue"),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"availableReplicas": 1}})),
    )
    .await
    .unwrap();
    let status = ids_pass(&fake, &ctx).await;
    assert_eq!(cond(&status).1, "IdsRunning");
}

#[tokio::test]
async fn rules_change_rolls_out_and_bad_input_changes_nothing() {
    let fake = FakeApi::new();
    let ctx = context(&fake);
    fake.seed(&network(Some(every_source()), json!({})));
    fake.seed(&configmap(
        "team-rules",
        json!({"suricata.rules": "alert ip any any -> any any (sid:1;)"}),
    ));
    fake.seed(&configmap(
        "other-rules",
        json!({"a.rules": "alert ip any any -> any any (sid:2;)"}),
    ));
    let status = ids_pass(&fake, &ctx).await;
    store_status(&fake, &status).await;
    let d0 = deployment(&fake).unwrap();
    let h0 = hash(&d0);
    // Without a quarantine network: Suricata only, no watcher.
    assert_eq!(
        d0.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers
            .len(),
        1
    );

    // The same spec again: nothing changes (same hash, same resourceVersion).
    ids_pass(&fake, &ctx).await;
    let d1 = deployment(&fake).unwrap();
    assert_eq!(hash(&d1), h0);
    assert_eq!(d1.resource_version(), d0.resource_version());

    // A referenced ConfigMap changes: new rules, new hash (the Deployment rolls).
    let cms: Api<ConfigMap> = Api::namespaced(fake.admin_client(), "team-a");
    cms.patch(
        "team-rules",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"suricata.rules": "alert ip any any -> any any (sid:99;)"}})),
    )
    .await
    .unwrap();
    fake.clear_calls(); // the user's, not the operator's
    ids_pass(&fake, &ctx).await;
    let h1 = hash(&deployment(&fake).unwrap());
    assert_ne!(h1, h0);
    assert!(rules_cm(&fake).unwrap().data.unwrap()["001-team-suricata.rules"].contains("sid:99"));

    // An inline rule changes in the spec: new hash again.
    let nets: Api<L2Network> = Api::namespaced(fake.admin_client(), "team-a");
    let mut ids_spec = every_source();
    ids_spec["customRuleSources"][0]["inline"] = json!("alert ip any any -> any any (sid:7;)");
    nets.patch(
        "blue",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ids": ids_spec}})),
    )
    .await
    .unwrap();
    ids_pass(&fake, &ctx).await;
    let d2 = deployment(&fake).unwrap();
    assert_ne!(hash(&d2), h1);
    let cm2 = rules_cm(&fake).unwrap();

    // Bad input: a referenced ConfigMap disappears, a bad CIDR. Nothing is written, the
    // condition says why.
    cms.delete("other-rules", &Default::default())
        .await
        .unwrap();
    fake.clear_calls(); // the user's, not the operator's
    let status = ids_pass(&fake, &ctx).await;
    let (s, reason, message) = cond(&status);
    assert_eq!((s.as_str(), reason.as_str()), ("False", "InvalidIdsSpec"));
    assert!(message.contains("other-rules"), "{message}");
    assert_eq!(
        deployment(&fake).unwrap().resource_version(),
        d2.resource_version()
    );
    assert_eq!(
        rules_cm(&fake).unwrap().resource_version(),
        cm2.resource_version()
    );
    fake.seed(&configmap(
        "other-rules",
        json!({"a.rules": "alert ip any any -> any any (sid:2;)"}),
    ));
    let mut bad = ids_spec.clone();
    bad["homeNetCidr"] = json!(["10.0.0.0/33"]);
    nets.patch(
        "blue",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ids": bad}})),
    )
    .await
    .unwrap();
    let status = ids_pass(&fake, &ctx).await;
    assert!(cond(&status).2.contains("homeNetCidr"));
    assert_eq!(
        deployment(&fake).unwrap().resource_version(),
        d2.resource_version()
    );
    // A quarantine network that is the network itself: refused, nothing written.
    nets.patch(
        "blue",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {QUARANTINE_TO_ANNOTATION: "blue"}}, "spec": {"ids": ids_spec}})),
    )
    .await
    .unwrap();
    let status = ids_pass(&fake, &ctx).await;
    assert!(
        cond(&status).2.contains("another network"),
        "{:?}",
        cond(&status)
    );
    assert_eq!(
        deployment(&fake).unwrap().resource_version(),
        d2.resource_version()
    );
    assert_operator_calls_in_table(&fake);
}

#[tokio::test]
async fn removing_spec_ids_deletes_the_ids_and_networks_without_ids_cost_no_call() {
    let fake = FakeApi::new();
    let ctx = context(&fake);
    // A network that never had an IDS: not a single IDS call.
    fake.seed(&network(None, json!({})));
    let status = ids_pass(&fake, &ctx).await;
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    assert!(status.conditions.is_empty());

    let nets: Api<L2Network> = Api::namespaced(fake.admin_client(), "team-a");
    let mut one = every_source();
    one["customRuleSources"] =
        json!([{"name": "x", "inline": "alert ip any any -> any any (sid:5;)"}]);
    nets.patch(
        "blue",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ids": one}})),
    )
    .await
    .unwrap();
    let status = ids_pass(&fake, &ctx).await;
    store_status(&fake, &status).await;
    assert!(deployment(&fake).is_some() && rules_cm(&fake).is_some());
    // Another network's IDS (same namespace of the operator) is left alone.
    fake.seed(&serde_json::from_value::<Deployment>(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ids-team-b-red", "namespace": OP_NS, "labels": {IDS_OF_LABEL: "team-b.red"}},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}},
    })).unwrap());

    // `spec.ids` removed: the Deployment, the ConfigMap and the NAD go, the condition too.
    nets.patch(
        "blue",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ids": null}})),
    )
    .await
    .unwrap();
    fake.clear_calls();
    let status = ids_pass(&fake, &ctx).await;
    assert_operator_calls_in_table(&fake);
    assert!(deployment(&fake).is_none());
    assert!(rules_cm(&fake).is_none());
    assert!(fake
        .get_value(NAD_GROUP, NADS, Some(OP_NS), "l2sm.mirror.blue")
        .is_none());
    assert!(fake
        .get::<Deployment>(Some(OP_NS), "ids-team-b-red")
        .is_some());
    assert!(status.conditions.iter().all(|c| c.type_ != CONDITION_IDS));
    store_status(&fake, &status).await;
    // And from then on, no IDS call again.
    fake.clear_calls();
    ids_pass(&fake, &ctx).await;
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());

    // `enabled: false` counts as removed.
    let mut off = one.clone();
    off["enabled"] = json!(false);
    nets.patch(
        "blue",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ids": one}})),
    )
    .await
    .unwrap();
    let status = ids_pass(&fake, &ctx).await;
    store_status(&fake, &status).await;
    assert!(deployment(&fake).is_some());
    nets.patch(
        "blue",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ids": off}})),
    )
    .await
    .unwrap();
    ids_pass(&fake, &ctx).await;
    assert!(deployment(&fake).is_none());
}

// ------------------------------------------------------------------ ids-watch

fn watched_pod(name: &str, mac: &str, ip: Option<&str>, network: &str) -> Pod {
    let att = json!([{"network": network, "interface": "net1", "ips": ip.map(|i| vec![i]).unwrap_or_default(), "mac": mac}]);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-a",
            "labels": {"l2sm": "true", "app": "web", POD_NAME_LABEL: name},
            "annotations": {"l2sm/status": att.to_string()}},
        "spec": {"nodeName": "w1", "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

fn alert(sid: u64, src_ip: &str, mac: Option<&str>) -> String {
    let mut v = json!({
        "timestamp": "2026-12-05T09:00:00.000000+0000", "event_type": "alert",
        "src_ip": src_ip, "src_port": 1234, "dest_ip": "10.20.0.1", "dest_port": 23, "proto": "TCP",
        "alert": {"action": "allowed", "gid": 1, "signature_id": sid, "rev": 1, "signature": format!("rule {sid}"), "severity": 2},
    });
    if let Some(m) = mac {
        v["ether"] = json!({"src_mac": m, "dest_mac": "02:00:00:00:00:01"});
    }
    v.to_string()
}

fn watch_args(eve: &std::path::Path, rate: u32, burst: u32) -> IdsWatchArgs {
    IdsWatchArgs {
        eve: eve.to_path_buf(),
        network: "blue".into(),
        namespace: "team-a".into(),
        quarantine_to: "jail".into(),
        rate_per_minute: rate,
        burst,
        max_line_bytes: 4096,
        from_start: true,
    }
}

fn seed_watched(fake: &FakeApi) {
    let mut net = network(None, json!({}));
    net.metadata.labels = Some([(NETWORK_NAME_LABEL.to_string(), "blue".to_string())].into());
    net.status = Some(
        serde_json::from_value(json!({
            "internalConnectivity": "Available",
            "assignedIPs": {"10.20.0.5": "a", "10.20.0.6": "b"},
        }))
        .unwrap(),
    );
    fake.seed(&net);
    let mut red = network(None, json!({}));
    red.metadata.name = Some("red".into());
    fake.seed(&red);
    fake.seed(&watched_pod(
        "a",
        "02:00:00:00:00:0a",
        Some("10.20.0.5/24"),
        "blue",
    ));
    fake.seed(&watched_pod(
        "b",
        "02:00:00:00:00:0b",
        Some("10.20.0.6/24"),
        "blue",
    ));
    // c has no address on blue: found by its MAC.
    fake.seed(&watched_pod("c", "02:00:00:00:00:0c", None, "blue"));
    // d is on another network with a MAC an alert will carry: not blue's.
    fake.seed(&watched_pod(
        "d",
        "02:00:00:00:00:0d",
        Some("10.20.0.9/24"),
        "red",
    ));
}

fn requests(fake: &FakeApi) -> BTreeSet<String> {
    fake.list::<QuarantinePodRequest>(Some("team-a"))
        .iter()
        .map(|q| q.name_any())
        .collect()
}

fn assert_watch_calls_in_table(fake: &FakeApi) {
    assert_calls_in(fake, ids_watch_allows, "watcher");
}

#[tokio::test]
async fn eve_alerts_and_garbage_become_exactly_the_expected_requests() {
    let fake = FakeApi::new();
    seed_watched(&fake);
    let dir = tempfile::tempdir().unwrap();
    let eve = dir.path().join("eve.json");
    let mut f = std::fs::File::create(&eve).unwrap();
    let lines = [
        alert(2001, "10.20.0.5", None), // a: request 1
        "this is not json".to_string(), // garbage
        json!({"event_type": "flow", "src_ip": "10.20.0.6"}).to_string(), // ignored
        "x".repeat(5000),               // too long
        alert(2001, "10.20.0.5", None), // a again: duplicate
        alert(2002, "10.20.0.5", None), // a, another rule: request 2
        alert(2001, "10.20.0.99", Some("02:00:00:00:00:0C")), // c by MAC: request 3
        alert(2001, "10.99.0.1", Some("02:00:00:00:00:0d")), // d is not on blue: unresolved
        json!({"event_type": "alert", "alert": {"signature": "no sid"}}).to_string(), // garbage
        "[1,2,3]".to_string(),          // garbage
    ];
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    // A line still being written is not read yet.
    write!(f, "{}", &alert(2003, "10.20.0.6", None)[..40]).unwrap();
    f.flush().unwrap();

    let mut w = Watcher::new(fake.client(), &watch_args(&eve, 60, 10));
    let mut tail = Tail::new(eve.clone(), 4096, true);
    w.drain(&mut tail).await.unwrap();
    assert_eq!(
        requests(&fake),
        BTreeSet::from([
            "ids-blue-a-2001".into(),
            "ids-blue-a-2002".into(),
            "ids-blue-c-2001".into()
        ])
    );
    let c = w.counters.clone();
    assert_eq!(
        (c.lines, c.alerts, c.garbage, c.too_long),
        (10, 5, 3, 1),
        "{c:?}"
    );
    assert_eq!(
        (
            c.created,
            c.duplicates,
            c.unresolved,
            c.rate_limited,
            c.errors
        ),
        (3, 1, 1, 0, 0),
        "{c:?}"
    );

    // The rest of the partial line arrives: b's request.
    writeln!(f, "{}", &alert(2003, "10.20.0.6", None)[40..]).unwrap();
    f.flush().unwrap();
    w.drain(&mut tail).await.unwrap();
    assert!(requests(&fake).contains("ids-blue-b-2003"));
    assert_eq!(requests(&fake).len(), 4);

    assert_watch_calls_in_table(&fake);
    fake.clear_calls();
    // What a request says: the pod (and only it) by its label, the network by its label,
    // the target, the alert in annotations.
    let q = fake
        .get::<QuarantinePodRequest>(Some("team-a"), "ids-blue-c-2001")
        .unwrap();
    assert_eq!(q.spec.target_l2_network, "jail");
    let ann = q.annotations();
    assert_eq!(ann[ids_watch::ANN_SID], "2001");
    assert_eq!(ann[ids_watch::ANN_SIGNATURE], "rule 2001");
    assert_eq!(ann[ids_watch::ANN_POD], "c");
    assert_eq!(ann[ids_watch::ANN_SRC_MAC], "02:00:00:00:00:0c");
    let sel = |ls: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector| {
        kube::core::Selector::try_from(ls.clone())
            .unwrap()
            .to_string()
    };
    let pods: Api<Pod> = Api::namespaced(fake.admin_client(), "team-a");
    let matched: Vec<String> = pods
        .list(&ListParams::default().labels(&sel(&q.spec.selector.pod_label_selector)))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(matched, ["c"]);
    let nets: Api<L2Network> = Api::namespaced(fake.admin_client(), "team-a");
    let matched: Vec<String> = nets
        .list(&ListParams::default().labels(&sel(&q.spec.selector.l2_network_selector)))
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(matched, ["blue"]);
    // An Event per request names the alert.
    let events: Vec<Event> = fake.list::<Event>(Some("team-a"));
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events.iter().any(
        |e| e.note.as_deref().is_some_and(|n| n.contains("sid 2002"))
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("ids-blue-a-2002")
    ));

    // A restarted watcher reading the whole file again: no new request.
    fake.clear_calls();
    let mut w2 = Watcher::new(fake.client(), &watch_args(&eve, 60, 10));
    let mut tail2 = Tail::new(eve.clone(), 4096, true);
    w2.drain(&mut tail2).await.unwrap();
    assert_eq!(requests(&fake).len(), 4);
    assert_eq!(
        (w2.counters.created, w2.counters.duplicates),
        (0, 5),
        "{:?}",
        w2.counters
    );
    assert_watch_calls_in_table(&fake);
}

#[tokio::test]
async fn requests_are_rate_limited_and_rotation_is_followed() {
    let fake = FakeApi::new();
    seed_watched(&fake);
    let dir = tempfile::tempdir().unwrap();
    let eve = dir.path().join("eve.json");
    let body: String = (0..5)
        .map(|i| alert(3000 + i, "10.20.0.5", None) + "\n")
        .collect();
    std::fs::write(&eve, &body).unwrap();
    // Burst 2, then one per minute: 2 requests now, 3 alerts dropped (and counted).
    let mut w = Watcher::new(fake.client(), &watch_args(&eve, 1, 2));
    let mut tail = Tail::new(eve.clone(), 4096, true);
    w.drain(&mut tail).await.unwrap();
    assert_eq!(requests(&fake).len(), 2);
    assert_eq!(
        (w.counters.created, w.counters.rate_limited),
        (2, 3),
        "{:?}",
        w.counters
    );

    // The file is rotated (replaced by a shorter one): read from its start.
    let rotated = dir.path().join("eve.json.new");
    std::fs::write(&rotated, alert(4000, "10.20.0.6", None) + "\n").unwrap();
    std::fs::rename(&rotated, &eve).unwrap();
    let mut w = Watcher::new(fake.client(), &watch_args(&eve, 60, 5));
    w.drain(&mut tail).await.unwrap();
    assert!(
        requests(&fake).contains("ids-blue-b-4000"),
        "{:?}",
        requests(&fake)
    );
}

#[test]
fn watcher_arguments_are_checked() {
    let ok = watch_args(std::path::Path::new("/x"), 10, 5);
    assert!(ids_watch::validate(&ok).is_ok());
    for bad in [
        IdsWatchArgs {
            quarantine_to: "blue".into(),
            ..ok.clone()
        },
        IdsWatchArgs {
            network: "Blue".into(),
            ..ok.clone()
        },
        IdsWatchArgs {
            namespace: String::new(),
            ..ok.clone()
        },
        IdsWatchArgs {
            burst: 0,
            ..ok.clone()
        },
        IdsWatchArgs {
            max_line_bytes: 10,
            ..ok.clone()
        },
    ] {
        assert!(ids_watch::validate(&bad).is_err(), "{bad:?}");
    }
    // Names are deterministic and bounded.
    assert_eq!(ids_watch::request_name("blue", "a", 7), "ids-blue-a-7");
    let long = ids_watch::request_name(&"n".repeat(200), &"p".repeat(100), 7);
    assert!(long.len() <= 253 && long.starts_with("ids-7-"), "{long}");
    assert_eq!(
        long,
        ids_watch::request_name(&"n".repeat(200), &"p".repeat(100), 7)
    );
}

/// Through the L2Network reconciler with our real controller: the network is created, the IDS
/// deployed and its condition stored; deleting the L2Network (its finalizer) deletes the IDS.
#[tokio::test]
async fn the_l2network_reconciler_deploys_the_ids_and_its_deletion_removes_it() {
    use l2sm_test_support::controller::ControllerProcess;
    let ctrl = ControllerProcess::start();
    let controller = ControllerClient::new(
        &ctrl.url(),
        Some((ctrl.user.clone(), ctrl.password.clone())),
        RetryPolicy::default(),
    )
    .unwrap();
    let fake = FakeApi::new();
    let ctx = Context::new(fake.client(), controller.clone(), Settings::default());
    let mut one = every_source();
    one["customRuleSources"] =
        json!([{"name": "x", "inline": "alert ip any any -> any any (sid:5;)"}]);
    fake.seed(&network(Some(one), json!({})));
    let pass = || async {
        let net = fake.get::<L2Network>(Some("team-a"), "blue");
        if let Some(net) = net {
            l2sm_operator::reconcile::l2network::reconcile(Arc::new(net), ctx.clone())
                .await
                .unwrap_or_else(|e| panic!("L2Network: {e}"));
        }
    };
    for _ in 0..2 {
        pass().await;
    }
    assert_operator_calls_in_table(&fake);
    assert!(controller.network_exists("blue").await.unwrap());
    assert!(deployment(&fake).is_some());
    let stored = fake.get::<L2Network>(Some("team-a"), "blue").unwrap();
    let (s, reason, _) = cond(stored.status.as_ref().unwrap());
    assert_eq!((s.as_str(), reason.as_str()), ("False", "IdsStarting"));

    let nets: Api<L2Network> = Api::namespaced(fake.admin_client(), "team-a");
    nets.delete("blue", &Default::default()).await.unwrap();
    fake.clear_calls();
    pass().await;
    assert_operator_calls_in_table(&fake);
    assert!(fake.get::<L2Network>(Some("team-a"), "blue").is_none());
    assert!(deployment(&fake).is_none());
    assert!(rules_cm(&fake).is_none());
    assert!(fake
        .get_value(NAD_GROUP, NADS, Some(OP_NS), "l2sm.mirror.blue")
        .is_none());
    assert!(!controller.network_exists("blue").await.unwrap());
}
