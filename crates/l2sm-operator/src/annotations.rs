//! The pod-facing API, pure: the `l2sm/networks` grammar (both upstream forms), the Multus
//! annotation the webhook writes, and the NetworkAttachmentDefinition of a network.
//!
//! Compatible with upstream where users touch it (every value upstream accepts and means
//! something still works) and stricter where upstream silently produced garbage: malformed JSON
//! is an error naming the field, not a comma-split of the raw text.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Label that opts a pod into L2S-M (the webhook's object selector).
pub const POD_LABEL: &str = "l2sm";
/// The only value of [`POD_LABEL`] that opts in.
pub const POD_LABEL_VALUE: &str = "true";
/// The networks a pod asks for.
pub const NETWORKS_ANNOTATION: &str = "l2sm/networks";
/// What Multus reads; written by the webhook.
pub const MULTUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// Why a pod did not get its networks (when the webhook admits instead of rejecting).
pub const ERROR_ANNOTATION: &str = "l2sm/error";
/// DNS name of a pod on inter-cluster networks.
pub const APP_LABEL: &str = "l2sm/app";
/// Prefix of the NetworkAttachmentDefinition of a network: `l2sm-<network>`.
pub const NAD_PREFIX: &str = "l2sm-";
/// CNI `type` of our plugin (the executable's name in `/opt/cni/bin`).
pub const CNI_TYPE: &str = "l2sm";
/// CNI version written into the NADs.
pub const NAD_CNI_VERSION: &str = "1.0.0";
/// Label on every NAD the operator manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "l2sm-operator";
/// Annotation naming the network of a NAD (network names may exceed a label value's 63 chars).
pub const NAD_NETWORK_ANNOTATION: &str = "l2sm/network";

/// Longest network name whose NAD name (`l2sm-` + name) is still a valid object name.
pub const MAX_NETWORK_NAME: usize = 253 - NAD_PREFIX.len();

/// One network a pod asks for, in annotation order (interface `net1`, `net2`, ... unless
/// `ifname` says otherwise).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkRequest {
    /// The L2Network's name.
    pub name: String,
    /// Accepted for compatibility; upstream overwrote it, the network is found by name.
    pub namespace: Option<String>,
    /// Static addresses with prefix length, passed to the CNI plugin unchanged.
    pub ips: Vec<String>,
    /// Interface name in the pod (upstream parsed and dropped it; we pass it to Multus).
    pub ifname: Option<String>,
    /// MAC address of the pod interface.
    pub mac: Option<String>,
}

/// A bad annotation value; every message names the annotation and the element or network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// `l2sm/networks` starts with `[` but is not valid JSON (or not a list); carries the
    /// JSON parser's message.
    #[error("{NETWORKS_ANNOTATION}: not a JSON list of networks: {0}")]
    Json(String),
    /// `l2sm/networks` is a single JSON object rather than a list of them.
    #[error(
        "{NETWORKS_ANNOTATION}: a single JSON object; write a list ([{{\"name\": ...}}]) or comma-separated names"
    )]
    SingleObject,
    /// An element of the JSON list is not an object.
    #[error("{NETWORKS_ANNOTATION}: element {index} is not an object")]
    NotAnObject {
        /// Zero-based position of the element in the list.
        index: usize,
    },
    /// An element of the JSON list has no `name`, or a null or empty one.
    #[error("{NETWORKS_ANNOTATION}: element {index} has no \"name\"")]
    MissingName {
        /// Zero-based position of the element in the list.
        index: usize,
    },
    /// A known key of a JSON element has a value of the wrong JSON type.
    #[error("{NETWORKS_ANNOTATION}: element {index}: \"{field}\" must be {expected}")]
    FieldType {
        /// Zero-based position of the element in the list.
        index: usize,
        /// The offending key (`name`, `namespace`, `ifname`, `mac` or `ips`).
        field: &'static str,
        /// The type the key must have, as a phrase (`a string`, `a list of strings`).
        expected: &'static str,
    },
    /// A requested network name is not a valid L2Network name (see [`check_network_name`]).
    #[error("{NETWORKS_ANNOTATION}: network name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The network name as written.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// An entry of a network's `ips` is not an address with a prefix length valid for its
    /// family.
    #[error(
        "{NETWORKS_ANNOTATION}: network {network:?}: ips[{index}] {value:?} is not an address with a prefix length (like 10.0.0.1/24)"
    )]
    InvalidIp {
        /// The network the entry belongs to.
        network: String,
        /// Zero-based position of the entry in that network's `ips`.
        index: usize,
        /// The entry as written.
        value: String,
    },
    /// The same address appears twice in one network's `ips`.
    #[error("{NETWORKS_ANNOTATION}: network {network:?}: address {ip} is requested twice")]
    DuplicateIp {
        /// The network whose `ips` repeat the address.
        network: String,
        /// The repeated entry as written (second occurrence).
        ip: String,
    },
    /// A network's `ifname` is not a valid Linux interface name.
    #[error("{NETWORKS_ANNOTATION}: network {network:?}: ifname {value:?} is invalid: {reason}")]
    InvalidIfName {
        /// The network the interface was requested on.
        network: String,
        /// The interface name as written.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Two requests in the annotation ask for the same interface name.
    #[error("{NETWORKS_ANNOTATION}: interface name {0:?} is used twice")]
    DuplicateIfName(String),
    /// A network's `mac` is not six colon-separated hex pairs with the multicast bit clear.
    #[error(
        "{NETWORKS_ANNOTATION}: network {network:?}: mac {value:?} is not a unicast MAC address"
    )]
    InvalidMac {
        /// The network the MAC was requested on.
        network: String,
        /// The MAC as written.
        value: String,
    },
    /// The pod's own `k8s.v1.cni.cncf.io/networks` value, which ours is merged after, cannot
    /// be parsed; carries the reason.
    #[error("{MULTUS_ANNOTATION}: the pod's existing value cannot be read: {0}")]
    ExistingMultus(String),
}

/// Parses `l2sm/networks`: either a JSON list of `{"name", "ips", "ifname", "namespace"}`
/// objects (keys matched case-insensitively and unknown keys ignored, as Go's decoder did) or
/// a comma-separated list of names (spaces trimmed, empty items skipped). Names may repeat
/// (two interfaces on one network). An empty value asks for nothing.
pub fn parse_networks(value: &str) -> Result<Vec<NetworkRequest>, AnnotationError> {
    let trimmed = value.trim();
    let requests = if trimmed.starts_with('[') {
        parse_json_list(trimmed)?
    } else if trimmed.starts_with('{') {
        return Err(AnnotationError::SingleObject);
    } else {
        trimmed
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| NetworkRequest {
                name: name.to_owned(),
                ..Default::default()
            })
            .collect()
    };
    validate(&requests)?;
    Ok(requests)
}

fn parse_json_list(text: &str) -> Result<Vec<NetworkRequest>, AnnotationError> {
    let list: Vec<Value> =
        serde_json::from_str(text).map_err(|e| AnnotationError::Json(e.to_string()))?;
    list.iter()
        .enumerate()
        .map(|(index, item)| {
            let obj = item
                .as_object()
                .ok_or(AnnotationError::NotAnObject { index })?;
            parse_element(index, obj)
        })
        .collect()
}

fn parse_element(
    index: usize,
    obj: &Map<String, Value>,
) -> Result<NetworkRequest, AnnotationError> {
    let mut req = NetworkRequest::default();
    let mut name = None;
    let string = |field: &'static str, v: &Value| -> Result<Option<String>, AnnotationError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(AnnotationError::FieldType {
                index,
                field,
                expected: "a string",
            }),
        }
    };
    for (key, v) in obj {
        match key.to_ascii_lowercase().as_str() {
            "name" => name = string("name", v)?,
            "namespace" => req.namespace = string("namespace", v)?,
            "ifname" | "interface" => req.ifname = string("ifname", v)?,
            "mac" => req.mac = string("mac", v)?,
            "ips" => {
                req.ips = match v {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or(AnnotationError::FieldType {
                            index,
                            field: "ips",
                            expected: "a list of strings",
                        })?,
                    _ => {
                        return Err(AnnotationError::FieldType {
                            index,
                            field: "ips",
                            expected: "a list of strings",
                        })
                    }
                }
            }
            // Go's decoder ignored unknown keys; so do we.
            _ => {}
        }
    }
    req.name = name
        .filter(|n| !n.is_empty())
        .ok_or(AnnotationError::MissingName { index })?;
    Ok(req)
}

fn validate(requests: &[NetworkRequest]) -> Result<(), AnnotationError> {
    let mut ifnames: Vec<&str> = Vec::new();
    for req in requests {
        check_network_name(&req.name)?;
        let mut seen: Vec<IpAddr> = Vec::new();
        for (index, ip) in req.ips.iter().enumerate() {
            let addr = parse_cidr(ip).ok_or_else(|| AnnotationError::InvalidIp {
                network: req.name.clone(),
                index,
                value: ip.clone(),
            })?;
            if seen.contains(&addr) {
                return Err(AnnotationError::DuplicateIp {
                    network: req.name.clone(),
                    ip: ip.clone(),
                });
            }
            seen.push(addr);
        }
        if let Some(ifname) = &req.ifname {
            check_ifname(ifname).map_err(|reason| AnnotationError::InvalidIfName {
                network: req.name.clone(),
                value: ifname.clone(),
                reason,
            })?;
            if ifnames.contains(&ifname.as_str()) {
                return Err(AnnotationError::DuplicateIfName(ifname.clone()));
            }
            ifnames.push(ifname);
        }
        if let Some(mac) = &req.mac {
            if !is_unicast_mac(mac) {
                return Err(AnnotationError::InvalidMac {
                    network: req.name.clone(),
                    value: mac.clone(),
                });
            }
        }
    }
    Ok(())
}

/// An L2Network name must be a Kubernetes object name (DNS-1123 subdomain) short enough for
/// its NAD name.
pub fn check_network_name(name: &str) -> Result<(), AnnotationError> {
    let bad = |reason: &str| {
        Err(AnnotationError::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.len() > MAX_NETWORK_NAME {
        return bad(&format!("longer than {MAX_NETWORK_NAME} characters"));
    }
    for label in name.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_ends = label
            .bytes()
            .next()
            .zip(label.bytes().last())
            .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
        if !ok_chars || !ok_ends {
            return bad(
                "must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
            );
        }
    }
    Ok(())
}

/// `addr/len` with a prefix length valid for the family; returns the address.
fn parse_cidr(s: &str) -> Option<IpAddr> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some(addr)
}

/// Linux interface names: 1-15 bytes, no '/', ':' or whitespace, not `.`/`..`.
fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 15 {
        return Err("must be 1 to 15 characters");
    }
    if name == "." || name == ".." {
        return Err("cannot be . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || !c.is_ascii())
    {
        return Err("must be ASCII without '/', ':' or spaces");
    }
    Ok(())
}

fn is_unicast_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return false;
    }
    u8::from_str_radix(parts[0], 16).is_ok_and(|first| first & 1 == 0)
}

/// Renders requests as the JSON form of `l2sm/networks` (what the quarantine reconciler writes
/// back after moving a pod).
pub fn render_networks(requests: &[NetworkRequest]) -> String {
    /// The JSON element, fields in the order users write them.
    #[derive(Serialize)]
    struct Element<'a> {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<&'a str>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        ips: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        ifname: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mac: Option<&'a str>,
    }
    let list: Vec<Element<'_>> = requests
        .iter()
        .map(|r| Element {
            name: &r.name,
            namespace: r.namespace.as_deref(),
            ips: &r.ips,
            ifname: r.ifname.as_deref(),
            mac: r.mac.as_deref(),
        })
        .collect();
    // Serializing plain strings cannot fail.
    serde_json::to_string(&list).unwrap_or_default()
}

/// One element of the Multus network-selection annotation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MultusElement {
    /// Name of the NetworkAttachmentDefinition (for ours, `l2sm-<network>`).
    pub name: String,
    /// Namespace of the NAD; absent means the pod's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Static addresses with prefix length for the interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// MAC address for the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Interface name in the pod; absent lets Multus pick `netN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Whatever else a user's own element carries (kept verbatim when merging).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Name of the NetworkAttachmentDefinition of a network, in every namespace that uses it.
pub fn nad_name(network: &str) -> String {
    format!("{NAD_PREFIX}{network}")
}

/// The Multus element for one request: our NAD (resolved in the pod's namespace) with the
/// requested addresses. Pure L2 requests carry no address (our plugin needs none, unlike the
/// upstream `static` IPAM bridge setup that required a random fe80 address).
pub fn multus_element(req: &NetworkRequest) -> MultusElement {
    MultusElement {
        name: nad_name(&req.name),
        namespace: None,
        ips: req.ips.clone(),
        mac: req.mac.clone(),
        interface: req.ifname.clone(),
        other: Map::new(),
    }
}

/// Parses an existing Multus annotation: a JSON list, or Multus's short form
/// `[namespace/]name[@interface]` separated by commas.
pub fn parse_multus(value: &str) -> Result<Vec<MultusElement>, AnnotationError> {
    let trimmed = value.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed)
            .map_err(|e| AnnotationError::ExistingMultus(e.to_string()));
    }
    trimmed
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (rest, interface) = match item.split_once('@') {
                Some((r, i)) => (r, Some(i.to_owned())),
                None => (item, None),
            };
            let (namespace, name) = match rest.split_once('/') {
                Some((ns, n)) => (Some(ns.to_owned()), n),
                None => (None, rest),
            };
            if name.is_empty() || interface.as_deref() == Some("") {
                return Err(AnnotationError::ExistingMultus(format!(
                    "bad element {item:?}"
                )));
            }
            Ok(MultusElement {
                name: name.to_owned(),
                namespace,
                ips: Vec::new(),
                mac: None,
                interface,
                other: Map::new(),
            })
        })
        .collect()
}

/// The Multus annotation a pod must carry for its requests, merged after the pod's own Multus
/// networks (upstream could not combine them). `None` when the pod already carries exactly
/// this (a re-invoked webhook changes nothing).
pub fn multus_annotation(
    existing: Option<&str>,
    requests: &[NetworkRequest],
) -> Result<Option<String>, AnnotationError> {
    let ours: Vec<MultusElement> = requests.iter().map(multus_element).collect();
    let mut all = match existing {
        Some(v) if !v.trim().is_empty() => parse_multus(v)?,
        _ => Vec::new(),
    };
    if ours.is_empty() || all.ends_with(&ours) {
        return Ok(None);
    }
    all.extend(ours);
    // Serializing plain strings and maps cannot fail.
    Ok(Some(serde_json::to_string(&all).unwrap_or_default()))
}

/// The CNI configuration of a network's NAD (see docs/cni.md): our plugin, the network by
/// name, and the capabilities that let Multus pass per-pod `ips` and `mac`.
pub fn nad_cni_config(network: &str) -> Value {
    json!({
        "cniVersion": NAD_CNI_VERSION,
        "name": nad_name(network),
        "type": CNI_TYPE,
        "network": network,
        "capabilities": {"ips": true, "mac": true},
    })
}

/// The NetworkAttachmentDefinition (`k8s.cni.cncf.io/v1`) of a network in a namespace, as
/// JSON ready for server-side apply. Not labelled `app: l2sm`, so an upstream operator
/// running during a migration never takes it for one of its bridge NADs.
pub fn nad_for_network(network: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": nad_name(network),
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {NAD_NETWORK_ANNOTATION: network},
        },
        "spec": {"config": nad_cni_config(network).to_string()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &str) -> Vec<String> {
        parse_networks(v)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn comma_form() {
        assert_eq!(names("ping-network"), ["ping-network"]);
        assert_eq!(
            names("v-network-1, v-network-2"),
            ["v-network-1", "v-network-2"]
        );
        assert_eq!(names(" a,,b , "), ["a", "b"]);
        assert_eq!(names("a,a"), ["a", "a"]);
        assert!(names("").is_empty());
        assert!(names("  ").is_empty());
    }

    #[test]
    fn json_form() {
        let r = parse_networks(
            r#"[{"name": "v-network-1", "ips": ["10.0.1.1/24"]}, {"name": "v-network-2", "ips": ["10.0.2.1/24"]}]"#,
        )
        .unwrap();
        assert_eq!(r[0].name, "v-network-1");
        assert_eq!(r[0].ips, ["10.0.1.1/24"]);
        assert_eq!(r[1].ips, ["10.0.2.1/24"]);
        // Multi-line, case-insensitive keys, unknown keys ignored, null fields.
        let r = parse_networks(
            "[\n {\n \"Name\": \"vlink-sample\",\n \"IPs\": [\"192.168.1.2/24\", \"fd00::2/64\"], \"foo\": 1, \"namespace\": null }\n]",
        )
        .unwrap();
        assert_eq!(r[0].name, "vlink-sample");
        assert_eq!(r[0].ips, ["192.168.1.2/24", "fd00::2/64"]);
        assert_eq!(parse_networks("[]").unwrap(), []);
        let r = parse_networks(
            r#"[{"name":"n","ifname":"eth9","mac":"02:00:00:00:00:01","namespace":"x"}]"#,
        )
        .unwrap();
        assert_eq!(r[0].ifname.as_deref(), Some("eth9"));
        assert_eq!(r[0].mac.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(r[0].namespace.as_deref(), Some("x"));
    }

    #[test]
    fn errors_name_the_field_or_network() {
        let err = |v: &str| parse_networks(v).unwrap_err().to_string();
        assert!(err("[{\"name\": \"a\"").contains("not a JSON list"));
        assert!(err(r#"{"name":"a"}"#).contains("single JSON object"));
        assert!(err(r#"["a"]"#).contains("element 0 is not an object"));
        assert!(
            err(r#"[{"name":"a"},{"ips":["10.0.0.1/24"]}]"#).contains("element 1 has no \"name\"")
        );
        assert!(err(r#"[{"name":""}]"#).contains("element 0 has no"));
        assert!(err(r#"[{"name":"a","ips":"10.0.0.1/24"}]"#)
            .contains("\"ips\" must be a list of strings"));
        assert!(err(r#"[{"name":"a","ips":[1]}]"#).contains("\"ips\" must be"));
        assert!(err(r#"[{"name":7}]"#).contains("\"name\" must be a string"));
        let e = err(r#"[{"name":"blue","ips":["10.0.0.1"]}]"#);
        assert!(
            e.contains("network \"blue\"") && e.contains("ips[0]"),
            "{e}"
        );
        assert!(err(r#"[{"name":"blue","ips":["10.0.0.1/33"]}]"#).contains("ips[0]"));
        assert!(
            err(r#"[{"name":"blue","ips":["10.0.0.1/24","10.0.0.2/24","fe80::1/129"]}]"#)
                .contains("ips[2]")
        );
        assert!(
            err(r#"[{"name":"blue","ips":["10.0.0.1/24","10.0.0.1/16"]}]"#)
                .contains("requested twice")
        );
        assert!(err("Blue").contains("\"Blue\" is invalid"));
        assert!(err("a b").contains("\"a b\" is invalid"));
        assert!(err("-a").contains("invalid"));
        assert!(err(&"a".repeat(249)).contains("longer than 248"));
        assert!(parse_networks(&"a".repeat(248)).is_ok());
        assert!(err(r#"[{"name":"a","ifname":"this-is-too-long"}]"#).contains("ifname"));
        assert!(
            err(r#"[{"name":"a","ifname":"x"},{"name":"b","ifname":"x"}]"#).contains("used twice")
        );
        assert!(err(r#"[{"name":"a","mac":"01:00:00:00:00:01"}]"#).contains("mac"));
        assert!(err(r#"[{"name":"a","mac":"zz"}]"#).contains("mac"));
    }

    #[test]
    fn multus_output() {
        let reqs =
            parse_networks(r#"[{"name":"blue","ips":["10.0.0.1/24"]},{"name":"red"}]"#).unwrap();
        let out = multus_annotation(None, &reqs).unwrap().unwrap();
        assert_eq!(
            out,
            r#"[{"name":"l2sm-blue","ips":["10.0.0.1/24"]},{"name":"l2sm-red"}]"#
        );
        // Re-invocation on an already mutated pod: nothing to do.
        assert_eq!(multus_annotation(Some(&out), &reqs).unwrap(), None);
        // The pod's own Multus networks are kept, ours appended.
        let merged = multus_annotation(Some("macvlan-conf, other/sriov@eth5"), &reqs)
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(
            v,
            json!([
                {"name": "macvlan-conf"},
                {"name": "sriov", "namespace": "other", "interface": "eth5"},
                {"name": "l2sm-blue", "ips": ["10.0.0.1/24"]},
                {"name": "l2sm-red"}
            ])
        );
        let merged =
            multus_annotation(Some(r#"[{"name":"x","default-route":["1.2.3.4"]}]"#), &reqs)
                .unwrap()
                .unwrap();
        assert!(
            merged.starts_with(r#"[{"name":"x","default-route":["1.2.3.4"]},"#),
            "{merged}"
        );
        assert!(multus_annotation(Some("[{"), &reqs)
            .unwrap_err()
            .to_string()
            .contains(MULTUS_ANNOTATION));
        assert!(multus_annotation(Some("a@"), &reqs).is_err());
        assert_eq!(multus_annotation(None, &[]).unwrap(), None);
    }

    #[test]
    fn render_round_trips() {
        let v = r#"[{"name":"a","namespace":"ns","ips":["10.0.0.1/24"],"ifname":"net7","mac":"02:00:00:00:00:01"},{"name":"b"}]"#;
        let reqs = parse_networks(v).unwrap();
        assert_eq!(render_networks(&reqs), v);
        assert_eq!(parse_networks(&render_networks(&reqs)).unwrap(), reqs);
    }

    #[test]
    fn nad_shape() {
        let nad = nad_for_network("blue", "apps");
        assert_eq!(nad["metadata"]["name"], "l2sm-blue");
        assert_eq!(nad["metadata"]["namespace"], "apps");
        assert_eq!(nad["metadata"]["annotations"]["l2sm/network"], "blue");
        assert!(nad["metadata"]["labels"].get("app").is_none());
        let cfg: Value = serde_json::from_str(nad["spec"]["config"].as_str().unwrap()).unwrap();
        assert_eq!(
            cfg,
            json!({"cniVersion": "1.0.0", "name": "l2sm-blue", "type": "l2sm", "network": "blue",
                   "capabilities": {"ips": true, "mac": true}})
        );
    }
}
