//! IDS for `L2Network.spec.ids`: a Suricata Deployment on the network's mirror port, its rules
//! ConfigMap, and (when the network names a quarantine network) the alert watcher beside it.
//!
//! Everything lives in the operator's namespace ([`super::Settings::namespace`]): whoever may
//! create an L2Network must not get Deployments or ConfigMaps written into other namespaces
//! (issue #15; upstream's `ids.namespace` lets an L2Network's author place a privileged pod in
//! any namespace). A namespaced object cannot be owned by an object of another namespace, so
//! the L2Network's finalizer deletes the Deployment, and the Deployment owns the rules
//! ConfigMap and the mirror NAD (garbage-collected with it).
//!
//! Rules: one ConfigMap key per rule set, `NNN-<source>.rules` (inline) and
//! `NNN-<source>-<key>` (each `.rules` key of a referenced ConfigMap, read by the operator in
//! the network's namespace), `NNN` the source's position — two sources with the same key never
//! collide. `HOME_NET` is set on Suricata's command line (`--set vars.address-groups.HOME_NET=…`),
//! never as a `var` line in a rules file (which Suricata rejects). `url` sources are fetched by
//! the pod's init container (curl, bounded time and size), `useEmergingThreatsOpen` runs
//! `suricata-update` there (failures tolerated: an offline cluster still runs its own rules),
//! `ignorePorts` becomes a BPF filter. A hash of everything the pod runs with is a pod template
//! annotation, so a change rolls the Deployment.
//!
//! Mirror: the pod's only extra interface comes from the NAD `l2sm.mirror.<network>`, whose CNI
//! configuration carries `"mirrorOf": "<network>"` and no `network`: a CNI plugin that does not
//! know `mirrorOf` refuses it (no network named) rather than making the IDS a member.

use super::l2network::label_value;
use super::{bool_status, now, Context, Error, Result, FIELD_MANAGER};
use crate::crd::{condition, set_condition, IdsRules, L2Network, L2NetworkStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Condition on the L2Network: the IDS is deployed (or why not).
pub const CONDITION_IDS: &str = "IdsReady";
/// Label on every IDS object: `label_value("<namespace>.<network>")` of its L2Network.
pub const IDS_OF_LABEL: &str = "l2sm.l2sm.k8s.local/ids-of";
/// Pod template annotation: hash of the rules and settings the pod runs with.
pub const RULES_HASH_ANNOTATION: &str = "l2sm.l2sm.k8s.local/ids-rules-hash";
/// L2Network annotation naming the network pods an alert names are moved to (turns the
/// alert watcher on).
pub const QUARANTINE_TO_ANNOTATION: &str = "l2sm.l2sm.k8s.local/ids-quarantine-to";
/// Label the operator puts on an L2Network with an IDS (`label_value(name)`): what the alert
/// watcher's QuarantinePodRequests select the source network by.
pub const NETWORK_NAME_LABEL: &str = "l2sm.l2sm.k8s.local/network-name";
/// Annotations on IDS objects: the L2Network they serve.
pub const IDS_NETWORK_ANNOTATION: &str = "l2sm.l2sm.k8s.local/ids-network";
/// Prefix of the mirror NADs (network NADs start with `l2sm-`: no name is both).
pub const MIRROR_NAD_PREFIX: &str = "l2sm.mirror.";
/// ServiceAccount of the IDS pods (deploy/rbac.yaml): may only create QuarantinePodRequests
/// and Events, and read L2Networks and pods.
pub const WATCHER_SERVICE_ACCOUNT: &str = "l2sm-ids-watcher";
/// Where the rules ConfigMap is mounted.
const RULES_DIR: &str = "/etc/l2sm-ids/rules";
/// Where fetched rules (url sources, Emerging Threats) are written by the init container.
const FETCHED_DIR: &str = "/var/lib/l2sm-ids/fetched";
/// Suricata's log directory (EVE JSON), shared with the watcher.
const LOG_DIR: &str = "/var/log/suricata";
/// Largest rules ConfigMap the operator writes (the API server's limit is 1 MiB).
pub const MAX_RULES_BYTES: usize = 900 * 1024;
/// Largest url source the init container downloads.
const MAX_URL_BYTES: u64 = 64 * 1024 * 1024;

/// IDS images and resources (operator flags `--ids-image`, `--ids-cpu`, `--ids-memory`,
/// `--ids-memory-limit`).
#[derive(Debug, Clone, PartialEq)]
pub struct IdsSettings {
    /// Suricata image (needs bash, curl and suricata-update, as jasonish/suricata has).
    pub image: String,
    /// CPU request of the Suricata container.
    pub cpu: String,
    /// Memory request of the Suricata container.
    pub memory: String,
    /// Memory limit of the Suricata container.
    pub memory_limit: String,
    /// Alert watcher: QuarantinePodRequests per minute, and burst.
    pub rate_per_minute: u32,
    /// See `rate_per_minute`.
    pub burst: u32,
}

impl Default for IdsSettings {
    fn default() -> Self {
        IdsSettings {
            image: "docker.io/jasonish/suricata:7.0.8".into(),
            cpu: "500m".into(),
            memory: "1Gi".into(),
            memory_limit: "2Gi".into(),
            rate_per_minute: 10,
            burst: 5,
        }
    }
}

/// The rules a spec asks for, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// ConfigMap key → rules text, in load order (keys sort as the sources are listed).
    pub files: BTreeMap<String, String>,
    /// `url` sources, in order: (file name under the fetched directory, URL).
    pub urls: Vec<(String, String)>,
    /// `HOME_NET` as Suricata's address group (`[a,b]`), or None for Suricata's default.
    pub home_net: Option<String>,
    /// BPF filter for `ignorePorts`.
    pub bpf: Option<String>,
    /// Fetch Emerging Threats Open at start.
    pub emerging_threats: bool,
}

/// A ConfigMap key part from free text: `[-._a-zA-Z0-9]`, others become `_`, at most 100.
fn key_part(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if out.is_empty() || out.chars().all(|c| c == '.') {
        out = "_".into();
    }
    out
}

/// Resolves the spec's rule sources. `referenced` holds the data of the ConfigMaps
/// `configMapRef` names (absent: the ConfigMap does not exist). Errors say what to fix.
pub fn resolve_rules(
    spec: &IdsRules,
    network_cidr: Option<&str>,
    referenced: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Rules, String> {
    let node = spec.node.trim();
    if node.is_empty() || node.len() > 253 {
        return Err("ids.node must name the node the IDS runs on".into());
    }
    let mut files = BTreeMap::new();
    let mut urls = Vec::new();
    let sources = spec.custom_rule_sources.as_deref().unwrap_or_default();
    if sources.len() > 999 {
        return Err(format!("{} rule sources; at most 999", sources.len()));
    }
    for (i, src) in sources.iter().enumerate() {
        let name = key_part(&src.name);
        let mut used = false;
        if let Some(text) = &src.inline {
            used = true;
            files.insert(format!("{i:03}-{name}.rules"), text.clone());
        }
        if let Some(r) = &src.config_map_ref {
            used = true;
            let Some(data) = referenced.get(&r.name) else {
                return Err(format!(
                    "rule source {:?}: ConfigMap {:?} does not exist in the network's namespace",
                    src.name, r.name
                ));
            };
            let mut any = false;
            for (key, text) in data.iter().filter(|(k, _)| k.ends_with(".rules")) {
                any = true;
                files.insert(format!("{i:03}-{name}-{}", key_part(key)), text.clone());
            }
            if !any {
                return Err(format!(
                    "rule source {:?}: ConfigMap {:?} has no key ending in .rules",
                    src.name, r.name
                ));
            }
        }
        if let Some(url) = &src.url {
            used = true;
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() <= 2048
                && url.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(format!(
                    "rule source {:?}: url {url:?} is not an http(s) URL without spaces",
                    src.name
                ));
            }
            urls.push((format!("{i:03}-{name}.rules"), url.clone()));
        }
        if !used {
            return Err(format!(
                "rule source {:?} names no rules: set inline, configMapRef or url",
                src.name
            ));
        }
    }
    let size: usize = files.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_RULES_BYTES {
        return Err(format!(
            "the rules take {size} bytes; at most {MAX_RULES_BYTES} fit in a ConfigMap (use url sources for large rule sets)"
        ));
    }
    let mut cidrs: Vec<String> = Vec::new();
    for c in spec.home_net_cidr.as_deref().unwrap_or_default() {
        let c = c.trim();
        let net: ipnet::IpNet = c
            .parse()
            .map_err(|_| format!("homeNetCidr {c:?} is not a CIDR such as 10.0.0.0/24"))?;
        cidrs.push(net.trunc().to_string());
    }
    if cidrs.is_empty() {
        if let Some(c) = network_cidr.map(str::trim).filter(|c| !c.is_empty()) {
            if let Ok(net) = c.parse::<ipnet::IpNet>() {
                cidrs.push(net.trunc().to_string());
            }
        }
    }
    let home_net = (!cidrs.is_empty()).then(|| format!("[{}]", cidrs.join(",")));
    let mut ports: Vec<u16> = Vec::new();
    for p in spec.ignore_ports.as_deref().unwrap_or_default() {
        let port = u16::try_from(*p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("ignorePorts: {p} is not a port (1-65535)"))?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    let bpf = (!ports.is_empty()).then(|| {
        let list: Vec<String> = ports.iter().map(|p| format!("port {p}")).collect();
        format!("not ({})", list.join(" or "))
    });
    Ok(Rules {
        files,
        urls,
        home_net,
        bpf,
        emerging_threats: spec.use_emerging_threats_open,
    })
}

/// A DNS label (≤ 50, so that suffixes fit) `<prefix><text, cleaned and cut>-<hash of
/// text>`: readable, and two texts never share a name (`a.b` + `c` and `a` + `b.c` differ by
/// their hash).
pub fn bounded_name(prefix: &str, text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let h = hex(&Sha256::digest(text.as_bytes())[..4]);
    let keep = 50usize.saturating_sub(prefix.len() + 1 + h.len());
    let head: String = clean.chars().take(keep).collect();
    format!("{prefix}{}-{h}", head.trim_end_matches('-'))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Name of the IDS Deployment of L2Network `ns/name` (in the operator's namespace).
pub fn deployment_name(ns: &str, name: &str) -> String {
    bounded_name("ids-", &format!("{ns}/{name}"))
}

/// Name of its rules ConfigMap.
pub fn rules_configmap_name(ns: &str, name: &str) -> String {
    format!("{}-rules", deployment_name(ns, name))
}

/// Name of the mirror NAD of `network`.
pub fn mirror_nad_name(network: &str) -> String {
    format!("{MIRROR_NAD_PREFIX}{network}")
}

/// The value of [`IDS_OF_LABEL`] for L2Network `ns/name`.
pub fn ids_of(ns: &str, name: &str) -> String {
    label_value(&format!("{ns}.{name}"))
}

/// Hash of what the pod runs with (rules, urls, arguments, images).
pub fn rules_hash(rules: &Rules, settings: &IdsSettings, quarantine_to: Option<&str>) -> String {
    let mut h = Sha256::new();
    for (k, v) in &rules.files {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    for (f, u) in &rules.urls {
        h.update(format!("url {f} {u}\n").as_bytes());
    }
    h.update(
        format!(
            "{:?} {:?} {}\n",
            rules.home_net, rules.bpf, rules.emerging_threats
        )
        .as_bytes(),
    );
    h.update(format!("{settings:?} {quarantine_to:?}").as_bytes());
    hex(&h.finalize()[..16])
}

/// The shell of the Suricata container: gather the rule files, run Suricata on the mirror
/// interface with HOME_NET and the BPF filter as arguments (never interpolated: they come as
/// environment variables).
fn suricata_script() -> String {
    format!(
        "set -eu\nshopt -s nullglob\nmkdir -p /var/lib/suricata/rules\n\
         cat /dev/null {RULES_DIR}/*.rules {FETCHED_DIR}/*.rules > /var/lib/suricata/rules/l2sm.rules\n\
         set -- -i net1 -S /var/lib/suricata/rules/l2sm.rules -l {LOG_DIR}\n\
         if [ -n \"${{HOME_NET:-}}\" ]; then set -- \"$@\" --set \"vars.address-groups.HOME_NET=$HOME_NET\"; fi\n\
         if [ -n \"${{BPF_FILTER:-}}\" ]; then set -- \"$@\" \"$BPF_FILTER\"; fi\n\
         exec suricata \"$@\"\n"
    )
}

/// The init container's shell: url sources (each URL in `RULE_URL_<i>`, file `RULE_FILE_<i>`)
/// and Emerging Threats Open.
fn fetch_script(count: usize, emerging_threats: bool) -> String {
    let mut s = format!("set -u\nmkdir -p {FETCHED_DIR}\nfailed=0\n");
    for i in 0..count {
        s.push_str(&format!(
            "curl -fsSL --proto =http,https --max-time 120 --max-filesize {MAX_URL_BYTES} \
             -o \"{FETCHED_DIR}/$RULE_FILE_{i}\" \"$RULE_URL_{i}\" || {{ echo \"cannot fetch $RULE_URL_{i}\" >&2; failed=1; }}\n"
        ));
    }
    if emerging_threats {
        s.push_str(&format!(
            "suricata-update --no-test --no-reload -o {FETCHED_DIR}/et >&2 && \
             mv {FETCHED_DIR}/et/suricata.rules {FETCHED_DIR}/zz-emerging-threats.rules \
             || echo 'Emerging Threats Open not fetched; running the custom rules only' >&2\n"
        ));
    }
    // A url source that cannot be fetched fails the pod (retried by Kubernetes with backoff):
    // running without rules the spec names would look protected and is not.
    s.push_str("exit $failed\n");
    s
}

/// The objects of the IDS of `net` (Deployment, rules ConfigMap, mirror NAD), as JSON for
/// server-side apply into `operator_ns`.
pub fn desired_objects(
    net: &L2Network,
    rules: &Rules,
    settings: &IdsSettings,
    watch_image: &str,
    operator_ns: &str,
) -> (Value, Value, Value) {
    let ns = net.namespace().unwrap_or_default();
    let name = net.name_any();
    let ids = net.spec.ids.as_ref();
    let node = ids.map(|i| i.node.clone()).unwrap_or_default();
    let dep_name = deployment_name(&ns, &name);
    let cm_name = rules_configmap_name(&ns, &name);
    let of = ids_of(&ns, &name);
    let quarantine_to = net
        .annotations()
        .get(QUARANTINE_TO_ANNOTATION)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let hash = rules_hash(rules, settings, quarantine_to.as_deref());
    let labels = json!({"app": "l2sm-ids", "l2sm/component": "ids", IDS_OF_LABEL: of});
    let annotations = json!({IDS_NETWORK_ANNOTATION: format!("{ns}/{name}")});
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": cm_name, "namespace": operator_ns, "labels": labels, "annotations": annotations},
        "data": rules.files,
    });
    let mirror = mirror_nad_name(&name);
    let nad = json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": mirror, "namespace": operator_ns, "labels": labels, "annotations": annotations},
        "spec": {"config": json!({
            "cniVersion": crate::annotations::NAD_CNI_VERSION,
            "name": mirror,
            "type": crate::annotations::CNI_TYPE,
            "mirrorOf": name,
            // The CNI plugin lets only this namespace's pods take the mirror: a NAD can be
            // referenced from any namespace.
            "mirrorNamespace": operator_ns,
        }).to_string()},
    });
    let mut env = vec![];
    if let Some(h) = &rules.home_net {
        env.push(json!({"name": "HOME_NET", "value": h}));
    }
    if let Some(b) = &rules.bpf {
        env.push(json!({"name": "BPF_FILTER", "value": b}));
    }
    let mut fetch_env = vec![];
    for (i, (file, url)) in rules.urls.iter().enumerate() {
        fetch_env.push(json!({"name": format!("RULE_FILE_{i}"), "value": file}));
        fetch_env.push(json!({"name": format!("RULE_URL_{i}"), "value": url}));
    }
    let drop_all = json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    let mut containers = vec![json!({
        "name": "suricata",
        "image": settings.image,
        "command": ["/bin/bash", "-c", suricata_script()],
        "env": env,
        "resources": {
            "requests": {"cpu": settings.cpu, "memory": settings.memory},
            "limits": {"memory": settings.memory_limit},
        },
        // AF_PACKET capture on the mirror interface; no privileged container.
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW", "SYS_NICE", "IPC_LOCK"]},
        },
        "volumeMounts": [
            {"name": "rules", "mountPath": RULES_DIR, "readOnly": true},
            {"name": "fetched", "mountPath": "/var/lib/l2sm-ids"},
            {"name": "logs", "mountPath": LOG_DIR},
        ],
    })];
    let mut volumes = vec![
        json!({"name": "rules", "configMap": {"name": cm_name}}),
        json!({"name": "fetched", "emptyDir": {}}),
        json!({"name": "logs", "emptyDir": {"sizeLimit": "1Gi"}}),
    ];
    if let Some(target) = &quarantine_to {
        containers.push(json!({
            "name": "ids-watch",
            "image": watch_image,
            "args": [
                "ids-watch", "--eve", format!("{LOG_DIR}/eve.json"),
                "--network", name, "--namespace", ns, "--quarantine-to", target,
                "--rate-per-minute", settings.rate_per_minute.to_string(),
                "--burst", settings.burst.to_string(),
            ],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                "runAsNonRoot": true, "runAsUser": 65534, "readOnlyRootFilesystem": true,
            },
            "volumeMounts": [
                {"name": "logs", "mountPath": LOG_DIR, "readOnly": true},
                {"name": "watch-token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
            ],
        }));
        // The ServiceAccount's token only in the watcher's container, not in Suricata's.
        volumes.push(json!({"name": "watch-token", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        ]}}));
    }
    let mut init = vec![];
    if !rules.urls.is_empty() || rules.emerging_threats {
        init.push(json!({
            "name": "fetch-rules",
            "image": settings.image,
            "command": ["/bin/bash", "-c", fetch_script(rules.urls.len(), rules.emerging_threats)],
            "env": fetch_env,
            "securityContext": drop_all,
            "volumeMounts": [{"name": "fetched", "mountPath": "/var/lib/l2sm-ids"}],
        }));
    }
    let multus =
        json!([{"name": mirror, "namespace": operator_ns, "interface": "net1"}]).to_string();
    let dep = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": dep_name, "namespace": operator_ns, "labels": labels, "annotations": annotations},
        "spec": {
            "replicas": 1,
            // One mirror port: never two pods at once.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": "l2sm-ids", IDS_OF_LABEL: of}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "k8s.v1.cni.cncf.io/networks": multus,
                        RULES_HASH_ANNOTATION: hash,
                        IDS_NETWORK_ANNOTATION: format!("{ns}/{name}"),
                    },
                },
                "spec": {
                    "serviceAccountName": WATCHER_SERVICE_ACCOUNT,
                    "automountServiceAccountToken": false,
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "initContainers": init,
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    });
    (dep, cm, nad)
}

/// The NAD resource (Multus).
fn nad_api(ctx: &Context, ns: &str) -> Api<DynamicObject> {
    let ar: ApiResource = super::l2network::nad_resource();
    Api::namespaced_with(ctx.kube.clone(), ns, &ar)
}

/// Field manager of the IDS applies.
fn manager() -> String {
    format!("{FIELD_MANAGER}-ids")
}

/// Whether the L2Network has (or had, per its status) an IDS: only then does the reconcile
/// make IDS calls.
pub fn involved(net: &L2Network) -> bool {
    let wanted = net.spec.ids.as_ref().is_some_and(|i| i.enabled);
    let had = net
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == CONDITION_IDS));
    wanted || had
}

/// Makes the IDS objects of `net` what its spec says, and records it in `status` (condition
/// [`CONDITION_IDS`]; removed when the spec no longer asks for an IDS and the objects are
/// gone). Bad input (a missing ConfigMap, a bad CIDR) changes nothing and says why.
pub async fn reconcile(net: &L2Network, ctx: &Context, status: &mut L2NetworkStatus) -> Result<()> {
    if !involved(net) {
        return Ok(());
    }
    let generation = net.metadata.generation;
    let Some(spec) = net.spec.ids.as_ref().filter(|i| i.enabled) else {
        remove(net, ctx).await?;
        status.conditions.retain(|c| c.type_ != CONDITION_IDS);
        return Ok(());
    };
    let ns = net.namespace().unwrap_or_default();
    let name = net.name_any();
    let mut referenced = BTreeMap::new();
    let cms: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), &ns);
    for src in spec.custom_rule_sources.as_deref().unwrap_or_default() {
        if let Some(r) = &src.config_map_ref {
            if let Some(cm) = cms.get_opt(&r.name).await? {
                referenced.insert(r.name.clone(), cm.data.unwrap_or_default());
            }
        }
    }
    let resolved = resolve_rules(spec, net.spec.network_cidr.as_deref(), &referenced)
        .and_then(|r| check_quarantine_to(net).map(|()| r));
    let (ok, reason, message) = match resolved {
        Err(msg) => (false, "InvalidIdsSpec", msg),
        Ok(rules) => {
            label_network(net, ctx).await?;
            let op_ns = &ctx.settings.namespace;
            let (dep, cm, nad) = desired_objects(
                net,
                &rules,
                &ctx.settings.ids,
                &ctx.settings.agent_image,
                op_ns,
            );
            let params = PatchParams::apply(&manager()).force();
            let deps: Api<Deployment> = Api::namespaced(ctx.kube.clone(), op_ns);
            let applied = deps
                .patch(&deployment_name(&ns, &name), &params, &Patch::Apply(&dep))
                .await?;
            // The ConfigMap and the NAD go with the Deployment (garbage collection).
            let owner = json!([{
                "apiVersion": "apps/v1", "kind": "Deployment",
                "name": applied.name_any(), "uid": applied.uid().unwrap_or_default(),
                "controller": true, "blockOwnerDeletion": true,
            }]);
            let mut cm = cm;
            cm["metadata"]["ownerReferences"] = owner.clone();
            let mut nad = nad;
            nad["metadata"]["ownerReferences"] = owner;
            let op_cms: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), op_ns);
            op_cms
                .patch(
                    &rules_configmap_name(&ns, &name),
                    &params,
                    &Patch::Apply(&cm),
                )
                .await?;
            nad_api(ctx, op_ns)
                .patch(&mirror_nad_name(&name), &params, &Patch::Apply(&nad))
                .await?;
            let available = applied
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            if available > 0 {
                (
                    true,
                    "IdsRunning",
                    format!(
                        "Suricata runs on the mirror of {name:?} (Deployment {op_ns}/{})",
                        applied.name_any()
                    ),
                )
            } else {
                (
                    false,
                    "IdsStarting",
                    format!(
                        "Deployment {op_ns}/{} has no available pod yet",
                        applied.name_any()
                    ),
                )
            }
        }
    };
    set_condition(
        &mut status.conditions,
        condition(
            CONDITION_IDS,
            bool_status(ok),
            reason,
            message,
            generation,
            now(),
        ),
    );
    Ok(())
}

/// The quarantine network the annotation names must be another network's name.
fn check_quarantine_to(net: &L2Network) -> Result<(), String> {
    let Some(t) = net.annotations().get(QUARANTINE_TO_ANNOTATION) else {
        return Ok(());
    };
    let t = t.trim();
    if t.is_empty() {
        return Ok(());
    }
    if label_value(t) != t || l2sm_pipeline::ids::validate_network_name(t).is_err() {
        return Err(format!(
            "annotation {QUARANTINE_TO_ANNOTATION}: {t:?} is not an L2Network name"
        ));
    }
    if t == net.name_any() {
        return Err(format!(
            "annotation {QUARANTINE_TO_ANNOTATION}: the quarantine network must be another network"
        ));
    }
    Ok(())
}

/// Adds [`NETWORK_NAME_LABEL`] to the L2Network (what the watcher's requests select).
async fn label_network(net: &L2Network, ctx: &Context) -> Result<()> {
    let want = label_value(&net.name_any());
    if net.labels().get(NETWORK_NAME_LABEL) == Some(&want) {
        return Ok(());
    }
    let api: Api<L2Network> =
        Api::namespaced(ctx.kube.clone(), &net.namespace().unwrap_or_default());
    api.patch(
        &net.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {NETWORK_NAME_LABEL: want}}})),
    )
    .await?;
    Ok(())
}

/// Deletes the IDS Deployment of `net` (its ConfigMap and NAD go with it; deleted here too,
/// in case the garbage collector is slow or an earlier version left them unowned).
pub async fn remove(net: &L2Network, ctx: &Context) -> Result<()> {
    let ns = net.namespace().unwrap_or_default();
    let name = net.name_any();
    let op_ns = &ctx.settings.namespace;
    let lp = ListParams::default().labels(&format!("{IDS_OF_LABEL}={}", ids_of(&ns, &name)));
    let dp = DeleteParams::background();
    let deps: Api<Deployment> = Api::namespaced(ctx.kube.clone(), op_ns);
    for d in deps.list(&lp).await?.items {
        ignore_404(deps.delete(&d.name_any(), &dp).await.map(drop))?;
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), op_ns);
    for c in cms.list(&lp).await?.items {
        ignore_404(cms.delete(&c.name_any(), &dp).await.map(drop))?;
    }
    let nads = nad_api(ctx, op_ns);
    for n in nads.list(&lp).await?.items {
        ignore_404(nads.delete(&n.name_any(), &dp).await.map(drop))?;
    }
    Ok(())
}

fn ignore_404(r: Result<(), kube::Error>) -> Result<()> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map_err(Error::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ConfigMapRef, RuleSource};

    fn spec(sources: Vec<RuleSource>) -> IdsRules {
        IdsRules {
            enabled: true,
            home_net_cidr: None,
            use_emerging_threats_open: false,
            custom_rule_sources: Some(sources),
            ignore_ports: None,
            node: "n1".into(),
            profile: "suricata".into(),
            namespace: None,
        }
    }

    fn src(name: &str, inline: Option<&str>, cm: Option<&str>, url: Option<&str>) -> RuleSource {
        RuleSource {
            name: name.into(),
            url: url.map(Into::into),
            inline: inline.map(Into::into),
            config_map_ref: cm.map(|n| ConfigMapRef { name: n.into() }),
        }
    }

    #[test]
    fn names_are_bounded_labels() {
        let n = deployment_name("team-a", "blue");
        assert!(n.starts_with("ids-team-a-blue-"), "{n}");
        assert_eq!(n, deployment_name("team-a", "blue"));
        let long = "x".repeat(200);
        let n = deployment_name("ns", &long);
        assert!(n.len() <= 50, "{n}");
        assert_ne!(n, deployment_name("ns", &format!("{long}y")));
        // A dot in a name does not make two networks share a Deployment.
        assert_ne!(deployment_name("a.b", "c"), deployment_name("a", "b.c"));
    }

    #[test]
    fn no_var_lines_and_bad_input_is_refused() {
        let mut s = spec(vec![src(
            "a",
            Some("alert ip any any -> any any (sid:1;)"),
            None,
            None,
        )]);
        s.home_net_cidr = Some(vec!["10.0.0.7/24".into()]);
        let r = resolve_rules(&s, None, &BTreeMap::new()).unwrap();
        assert_eq!(r.home_net.as_deref(), Some("[10.0.0.0/24]"));
        assert!(r.files.values().all(|t| !t.contains("var ")));
        s.home_net_cidr = Some(vec!["nonsense".into()]);
        assert!(resolve_rules(&s, None, &BTreeMap::new())
            .unwrap_err()
            .contains("homeNetCidr"));
        let s = spec(vec![src("empty", None, None, None)]);
        assert!(resolve_rules(&s, None, &BTreeMap::new())
            .unwrap_err()
            .contains("names no rules"));
        let s = spec(vec![src("u", None, None, Some("file:///etc/passwd"))]);
        assert!(resolve_rules(&s, None, &BTreeMap::new()).is_err());
        let s = spec(vec![src("u", None, None, Some("https://x/y z"))]);
        assert!(resolve_rules(&s, None, &BTreeMap::new()).is_err());
        let mut s = spec(vec![]);
        s.node = " ".into();
        assert!(resolve_rules(&s, None, &BTreeMap::new())
            .unwrap_err()
            .contains("ids.node"));
        let mut s = spec(vec![]);
        s.ignore_ports = Some(vec![70000]);
        assert!(resolve_rules(&s, None, &BTreeMap::new()).is_err());
        s.ignore_ports = Some(vec![53, 123, 53]);
        assert_eq!(
            resolve_rules(&s, None, &BTreeMap::new())
                .unwrap()
                .bpf
                .as_deref(),
            Some("not (port 53 or port 123)")
        );
    }
}
