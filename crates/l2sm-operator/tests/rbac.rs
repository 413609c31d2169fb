//! `deploy/rbac.yaml` grants exactly the operator's table of API calls
//! (`l2sm_operator::api_calls::API_CALLS`): every call is granted (a missing grant is a
//! 403 on a real cluster), and every grant is used by a call (least privilege), with the
//! ClusterRole for cluster-wide calls, the Role in the operator's namespace for calls only
//! there, and `resourceNames` honoured. The same for the node agents' ServiceAccount and
//! `AGENT_API_CALLS`.

use l2sm_operator::api_calls::{
    ApiCall, Scope, Verb, AGENT_API_CALLS, API_CALLS, COREDNS_NAMESPACE, IDS_WATCH_API_CALLS,
};
use serde_json::Value;
use std::path::PathBuf;

const OPERATOR_NAMESPACE: &str = "l2sm-system";
const SERVICE_ACCOUNT: &str = "l2sm-operator";
const AGENT_SERVICE_ACCOUNT: &str = "l2sm-agent";
const IDS_WATCH_SERVICE_ACCOUNT: &str = "l2sm-ids-watcher";

fn load(rel: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// One expanded grant: (role kind, group, resource[/sub], verb, resourceNames).
#[derive(Debug, Clone, PartialEq)]
struct Grant {
    role: &'static str,
    group: String,
    resource: String,
    verb: String,
    names: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The grants of the roles bound to the operator's ServiceAccount.
fn grants() -> Vec<Grant> {
    grants_of(SERVICE_ACCOUNT)
}

/// The names of the roles bound to a ServiceAccount other than `sa`.
fn roles_of_others(docs: &[Value], sa: &str) -> Vec<(String, String)> {
    docs.iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        .filter(|d| {
            !d["subjects"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["name"] == sa))
        })
        .map(|d| {
            (
                d["roleRef"]["kind"].as_str().unwrap_or("").to_string(),
                d["roleRef"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The grants of the roles bound to ServiceAccount `sa`.
fn grants_of(sa: &str) -> Vec<Grant> {
    let docs = load("deploy/rbac.yaml");
    let others = roles_of_others(&docs, sa);
    let bound = |kind: &str, ns: Option<&str>| -> Vec<String> {
        let binding = if kind == "ClusterRole" {
            "ClusterRoleBinding"
        } else {
            "RoleBinding"
        };
        docs.iter()
            .filter(|d| d["kind"] == binding)
            .filter(|d| ns.is_none() || d["metadata"]["namespace"].as_str() == ns)
            .filter(|d| d["roleRef"]["kind"] == kind)
            .filter(|d| {
                d["subjects"].as_array().is_some_and(|s| {
                    s.iter().any(|s| {
                        s["kind"] == "ServiceAccount"
                            && s["name"] == sa
                            && s["namespace"] == OPERATOR_NAMESPACE
                    })
                })
            })
            .map(|d| d["roleRef"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let cluster_roles = bound("ClusterRole", None);
    let roles = bound("Role", Some(OPERATOR_NAMESPACE));
    // The CoreDNS stanza's Role, in CoreDNS's namespace (coredns.rs).
    let coredns_roles = bound("Role", Some(COREDNS_NAMESPACE));
    assert!(!cluster_roles.is_empty(), "no ClusterRole bound to {sa}");
    let mut out = Vec::new();
    for d in &docs {
        let kind = d["kind"].as_str().unwrap_or("");
        let name = d["metadata"]["name"].as_str().unwrap_or("");
        if others.iter().any(|(k, n)| k == kind && n == name)
            && !cluster_roles
                .iter()
                .chain(&roles)
                .chain(&coredns_roles)
                .any(|n| n == name)
        {
            continue; // another ServiceAccount's role
        }
        let (role, ok) = match d["kind"].as_str() {
            Some("ClusterRole") => (
                "ClusterRole",
                cluster_roles.iter().any(|n| d["metadata"]["name"] == **n),
            ),
            Some("Role") if d["metadata"]["namespace"] == COREDNS_NAMESPACE => (
                "CoreDnsRole",
                coredns_roles.iter().any(|n| d["metadata"]["name"] == **n),
            ),
            Some("Role") => (
                "Role",
                d["metadata"]["namespace"] == OPERATOR_NAMESPACE
                    && roles.iter().any(|n| d["metadata"]["name"] == **n),
            ),
            _ => continue,
        };
        assert!(ok, "a {role} bound to nobody: {}", d["metadata"]);
        for rule in d["rules"].as_array().expect("rules") {
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "the operator calls no non-resource URL: {rule}"
            );
            let names = strings(&rule["resourceNames"]);
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        out.push(Grant {
                            role,
                            group: group.clone(),
                            resource: resource.clone(),
                            verb,
                            names: names.clone(),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Whether `g` grants `c`.
fn grants_call(g: &Grant, c: &ApiCall) -> bool {
    let role_fits = match c.scope {
        Scope::Cluster | Scope::Namespaced => g.role == "ClusterRole",
        Scope::OperatorNamespace => g.role != "CoreDnsRole",
        Scope::CoreDnsNamespace => g.role != "Role",
    };
    role_fits
        && (g.group == c.group || g.group == "*")
        && (g.resource == c.resource_path() || g.resource == "*")
        && (g.verb == c.verb.as_str() || g.verb == "*")
        && (g.names.is_empty() || c.name.is_some_and(|n| g.names.iter().any(|x| x == n)))
}

#[test]
fn every_call_is_granted() {
    every_call_of_is_granted(API_CALLS, &grants());
}

#[test]
fn every_agent_call_is_granted() {
    every_call_of_is_granted(AGENT_API_CALLS, &grants_of(AGENT_SERVICE_ACCOUNT));
}

#[test]
fn every_grant_is_used() {
    every_grant_of_is_used(API_CALLS, grants());
}

#[test]
fn every_agent_grant_is_used() {
    every_grant_of_is_used(AGENT_API_CALLS, grants_of(AGENT_SERVICE_ACCOUNT));
}

#[test]
fn every_ids_watch_call_is_granted() {
    every_call_of_is_granted(IDS_WATCH_API_CALLS, &grants_of(IDS_WATCH_SERVICE_ACCOUNT));
}

#[test]
fn every_ids_watch_grant_is_used() {
    every_grant_of_is_used(IDS_WATCH_API_CALLS, grants_of(IDS_WATCH_SERVICE_ACCOUNT));
}

/// The IDS pods' ServiceAccount (what the operator's IDS Deployments name) may create
/// QuarantinePodRequests and read, nothing else: no update, patch or delete of anything, no
/// Secrets, no writes to pods or networks; and it is declared where the IDS pods run.
#[test]
fn the_ids_watcher_may_only_create_requests_and_read() {
    assert_eq!(
        l2sm_operator::reconcile::ids::WATCHER_SERVICE_ACCOUNT,
        IDS_WATCH_SERVICE_ACCOUNT
    );
    let docs = load("deploy/rbac.yaml");
    assert!(docs.iter().any(|d| d["kind"] == "ServiceAccount"
        && d["metadata"]["name"] == IDS_WATCH_SERVICE_ACCOUNT
        && d["metadata"]["namespace"] == OPERATOR_NAMESPACE));
    let grants = grants_of(IDS_WATCH_SERVICE_ACCOUNT);
    assert!(!grants.is_empty());
    for g in &grants {
        let ok = match g.verb.as_str() {
            "get" | "list" => g.resource != "secrets",
            "create" => {
                (g.group == "l2sm.l2sm.k8s.local" && g.resource == "quarantinepodrequests")
                    || (g.group == "events.k8s.io" && g.resource == "events")
            }
            _ => false,
        };
        assert!(
            ok,
            "the IDS watcher is granted {} {}.{}",
            g.verb, g.resource, g.group
        );
    }
    assert!(grants
        .iter()
        .any(|g| g.verb == "create" && g.resource == "quarantinepodrequests"));
}

/// The agents' ServiceAccount token is mounted only into the agent pods the operator writes
/// (which need it for `agent-cert`), and the ServiceAccount exists beside its role.
#[test]
fn the_agent_service_account_is_declared() {
    let docs = load("deploy/rbac.yaml");
    assert!(docs.iter().any(|d| d["kind"] == "ServiceAccount"
        && d["metadata"]["name"] == AGENT_SERVICE_ACCOUNT
        && d["metadata"]["namespace"] == OPERATOR_NAMESPACE));
    assert_eq!(
        l2sm_operator::switch_cert::signer::DEFAULT_AGENT_SERVICE_ACCOUNT,
        AGENT_SERVICE_ACCOUNT
    );
}

fn every_call_of_is_granted(table: &[ApiCall], grants: &[Grant]) {
    let missing: Vec<String> = table
        .iter()
        .filter(|c| !grants.iter().any(|g| grants_call(g, c)))
        .map(|c| {
            format!(
                "{:?} {} {}.{} (name {:?}): {}",
                c.scope,
                c.verb.as_str(),
                c.resource_path(),
                c.group,
                c.name,
                c.reason
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/rbac.yaml does not grant:\n{}",
        missing.join("\n")
    );
}

fn every_grant_of_is_used(table: &[ApiCall], grants: Vec<Grant>) {
    let unused: Vec<String> = grants
        .into_iter()
        .filter(|g| {
            // A wildcard is never least privilege.
            g.group == "*"
                || g.resource == "*"
                || g.verb == "*"
                || !table.iter().any(|c| {
                    // A ClusterRole grant is used only by a call that needs it cluster-wide;
                    // calls in the operator's namespace belong in the Role.
                    let scope_fits = match g.role {
                        "ClusterRole" => matches!(c.scope, Scope::Cluster | Scope::Namespaced),
                        "CoreDnsRole" => c.scope == Scope::CoreDnsNamespace,
                        _ => c.scope == Scope::OperatorNamespace,
                    };
                    scope_fits
                        && g.group == c.group
                        && g.resource == c.resource_path()
                        && g.verb == c.verb.as_str()
                        // A rule without resourceNames for a call with a fixed name is
                        // broader than needed.
                        && (c.name.is_none()
                            || g.names.iter().any(|x| Some(x.as_str()) == c.name))
                })
        })
        .map(|g| {
            format!(
                "{}: {} {}.{} {:?}",
                g.role, g.verb, g.resource, g.group, g.names
            )
        })
        .collect();
    assert!(
        unused.is_empty(),
        "deploy/rbac.yaml grants what no call in l2sm_operator::api_calls uses:\n{}",
        unused.join("\n")
    );
}

#[test]
fn the_deployment_runs_as_the_bound_service_account() {
    let docs = load("deploy/operator.yaml");
    let sa: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .map(|d| &d["spec"]["template"]["spec"]["serviceAccountName"])
        .collect();
    assert!(!sa.is_empty(), "no operator Deployment");
    for s in sa {
        assert_eq!(s, SERVICE_ACCOUNT);
    }
}

#[test]
fn the_table_is_well_formed() {
    table_is_well_formed(API_CALLS);
    table_is_well_formed(AGENT_API_CALLS);
    table_is_well_formed(IDS_WATCH_API_CALLS);
    assert!(l2sm_operator::api_calls::agent_allows(
        "certificates.k8s.io",
        "certificatesigningrequests",
        None,
        "create",
        None,
        None,
        OPERATOR_NAMESPACE
    ));
    assert!(!l2sm_operator::api_calls::agent_allows(
        "certificates.k8s.io",
        "certificatesigningrequests",
        Some("approval"),
        "update",
        None,
        Some("x"),
        OPERATOR_NAMESPACE
    ));
    assert!(l2sm_operator::api_calls::allows(
        "certificates.k8s.io",
        "signers",
        None,
        "sign",
        None,
        Some("l2sm.l2sm.k8s.local/switch"),
        OPERATOR_NAMESPACE
    ));
    assert!(!l2sm_operator::api_calls::allows(
        "certificates.k8s.io",
        "signers",
        None,
        "sign",
        None,
        Some("kubernetes.io/kube-apiserver-client"),
        OPERATOR_NAMESPACE
    ));
}

fn table_is_well_formed(table: &[ApiCall]) {
    for (i, c) in table.iter().enumerate() {
        assert!(!c.reason.is_empty(), "{c:?}");
        assert_eq!(Verb::parse(c.verb.as_str()), Some(c.verb));
        // list, watch and create cannot be restricted by name in RBAC.
        if c.name.is_some() {
            assert!(
                !matches!(c.verb, Verb::List | Verb::Watch | Verb::Create),
                "{c:?}"
            );
        }
        for d in &table[..i] {
            assert!(
                !(d.group == c.group
                    && d.resource == c.resource
                    && d.subresource == c.subresource
                    && d.verb == c.verb
                    && d.scope == c.scope
                    && d.name == c.name),
                "duplicate row {c:?}"
            );
        }
    }
    assert!(l2sm_operator::api_calls::permits("", "pods", None, "watch"));
    assert!(!l2sm_operator::api_calls::permits(
        "", "events", None, "create"
    ));
}

/// Issue #15: whoever may create an Overlay (or an L2Network with an IDS) must not get
/// DaemonSets or ConfigMaps written anywhere but the operator's namespace. In
/// `deploy/rbac.yaml` (every role, whoever it is bound to) no ClusterRole grants any verb on
/// DaemonSets, nor any but `get` on ConfigMaps (wildcards included; IDS rule sources are read
/// where the network is), and the Roles that grant them are all in one namespace, the
/// operator's — except CoreDNS's ConfigMap itself (the stanza, coredns.rs): a Role in its
/// namespace granting get and patch of that one name, nothing else.
#[test]
fn daemonsets_and_configmaps_are_granted_in_one_namespace_only() {
    let docs = load("deploy/rbac.yaml");
    let covers = |rule: &Value, group: &str, resource: &str| {
        strings(&rule["apiGroups"])
            .iter()
            .any(|g| g == group || g == "*")
            && strings(&rule["resources"])
                .iter()
                .any(|r| r == resource || r == "*")
    };
    let mut namespaces = std::collections::BTreeSet::new();
    let mut granted = Vec::new();
    for d in &docs {
        let kind = d["kind"].as_str().unwrap_or("");
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        for rule in d["rules"].as_array().expect("rules") {
            for (group, resource) in [
                ("apps", "daemonsets"),
                ("apps", "deployments"),
                ("", "configmaps"),
            ] {
                if !covers(rule, group, resource) {
                    continue;
                }
                if kind == "ClusterRole" && resource == "configmaps" {
                    // IDS rule sources are read where the network is: reading, nothing more.
                    assert_eq!(
                        strings(&rule["verbs"]),
                        ["get"],
                        "configmaps granted cluster-wide beyond get by ClusterRole {}: {rule}",
                        d["metadata"]["name"]
                    );
                    continue;
                }
                if kind == "Role" && d["metadata"]["namespace"] == COREDNS_NAMESPACE {
                    assert_eq!(strings(&rule["apiGroups"]), [""], "{rule}");
                    assert_eq!(strings(&rule["resources"]), ["configmaps"], "{rule}");
                    assert_eq!(strings(&rule["resourceNames"]), ["coredns"], "{rule}");
                    assert_eq!(strings(&rule["verbs"]), ["get", "patch"], "{rule}");
                    continue;
                }
                assert_eq!(
                    kind, "Role",
                    "{resource} granted cluster-wide by ClusterRole {}: {rule}",
                    d["metadata"]["name"]
                );
                namespaces.insert(
                    d["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                );
                granted.push(format!("{resource}:{}", strings(&rule["verbs"]).join(",")));
            }
        }
    }
    assert_eq!(
        namespaces.into_iter().collect::<Vec<_>>(),
        [OPERATOR_NAMESPACE],
        "{granted:?}"
    );
    // The operator does write them (there, and only there).
    for needle in ["daemonsets:", "deployments:", "configmaps:"] {
        assert!(
            granted
                .iter()
                .any(|g| g.starts_with(needle) && g.contains("patch")),
            "{needle} {granted:?}"
        );
    }
}
