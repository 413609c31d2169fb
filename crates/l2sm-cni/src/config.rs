//! The network configuration on stdin: versions, the `l2sm` fields, static IPAM, per-pod
//! addresses (`runtimeConfig`, `args`, `CNI_ARGS`), `prevResult` and GC's valid attachments.

use crate::env::CniArgs;
use crate::error::{config, CniError, DECODE_FAILURE, INCOMPATIBLE_VERSION, UNSUPPORTED_FIELD};
use ipnet::IpNet;
use l2sm_agent_api::RouteSpec;
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::PathBuf;

/// Where the node agent listens unless `agentSocket` says otherwise.
pub(crate) const DEFAULT_AGENT_SOCKET: &str = "/run/l2sm/agent.sock";

/// CNI spec versions this plugin speaks, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Version {
    V030,
    V031,
    V040,
    V100,
    V110,
}

impl Version {
    pub(crate) const ALL: [Version; 5] = [
        Version::V030,
        Version::V031,
        Version::V040,
        Version::V100,
        Version::V110,
    ];
    pub(crate) const LATEST: Version = Version::V110;

    pub(crate) fn parse(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Version::V030 => "0.3.0",
            Version::V031 => "0.3.1",
            Version::V040 => "0.4.0",
            Version::V100 => "1.0.0",
            Version::V110 => "1.1.0",
        }
    }

    /// Before 1.0.0, every `ips` entry carries `"version": "4"|"6"`.
    pub(crate) fn ips_have_version(self) -> bool {
        self < Version::V100
    }

    pub(crate) fn supported_list() -> String {
        Version::ALL.map(Version::as_str).join(", ")
    }
}

/// An address for the pod interface, with its gateway when static IPAM names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    pub net: IpNet,
    pub gateway: Option<IpAddr>,
}

/// A parsed network configuration.
#[derive(Debug, Clone)]
pub(crate) struct NetConf {
    pub version: Version,
    pub network: String,
    pub mtu: Option<u32>,
    pub agent_socket: PathBuf,
    /// Static IPAM addresses, then per-pod ones, without duplicates.
    pub addresses: Vec<Address>,
    pub routes: Vec<RouteSpec>,
    /// `dns` for the result (IPAM's, else the configuration's).
    pub dns: Option<Value>,
    /// MAC for the pod interface (normalized to lowercase).
    pub mac: Option<String>,
    /// Port security of the interface, overriding its network's: `args.cni.portSecurity`,
    /// else the configuration's `portSecurity`.
    pub port_security: Option<bool>,
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` as (containerID, ifname), when present.
    pub valid_attachments: Option<Vec<(String, String)>>,
    /// An IDS mirror attachment (`mirrorOf`: `network` is the network mirrored): the one
    /// Kubernetes namespace whose pods may take it (`mirrorNamespace`, the operator's).
    pub mirror_namespace: Option<String>,
}

/// Parses `a.b.c.d/len` (or IPv6). A bare address gets a message that says what is missing.
pub(crate) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if s.contains('/') {
        s.parse::<IpNet>().map_err(|_| {
            format!("{s:?} is not an IP address with a prefix length (like 10.0.0.1/24)")
        })
    } else if s.parse::<IpAddr>().is_ok() {
        Err(format!(
            "{s:?} has no prefix length: write the address with its network's prefix, like {s}/24"
        ))
    } else {
        Err(format!(
            "{s:?} is not an IP address with a prefix length (like 10.0.0.1/24)"
        ))
    }
}

/// Parses and checks a MAC address for a pod interface; returns it in lowercase.
pub(crate) fn parse_mac(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bytes: Option<Vec<u8>> = (parts.len() == 6)
        .then(|| {
            parts
                .iter()
                .map(|p| {
                    (p.len() == 2)
                        .then(|| u8::from_str_radix(p, 16).ok())
                        .flatten()
                })
                .collect()
        })
        .flatten();
    let Some(bytes) = bytes else {
        return Err(format!(
            "{s:?} is not a MAC address (like 02:00:00:00:00:01)"
        ));
    };
    if bytes[0] & 1 != 0 {
        return Err(format!(
            "{s} is a multicast MAC address, which an interface cannot have"
        ));
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err(format!("{s} is the all-zero MAC address"));
    }
    Ok(s.to_ascii_lowercase())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn get_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(config(format!(
            "\"{path}\" must be a string, not {}",
            type_name(v)
        ))),
    }
}

fn get_bool(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(config(format!(
            "\"{path}\" must be a boolean, not {}",
            type_name(v)
        ))),
    }
}

fn get_obj<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(config(format!(
            "\"{path}\" must be an object, not {}",
            type_name(v)
        ))),
    }
}

fn get_array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a [Value], CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(config(format!(
            "\"{path}\" must be an array, not {}",
            type_name(v)
        ))),
    }
}

fn string_list(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<String>, CniError> {
    get_array(obj, key, path)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            v => Err(config(format!(
                "\"{path}[{i}]\" must be a string, not {}",
                type_name(v)
            ))),
        })
        .collect()
}

fn parse_ip(s: &str, path: &str) -> Result<IpAddr, CniError> {
    s.parse()
        .map_err(|_| config(format!("\"{path}\": {s:?} is not an IP address")))
}

/// Reads only `cniVersion`, leniently: for VERSION and for the version of error messages.
pub(crate) fn peek_version(stdin: &[u8]) -> Option<Version> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    Version::parse(v.get("cniVersion")?.as_str()?)
}

fn parse_version(obj: &Map<String, Value>) -> Result<Version, CniError> {
    match obj.get("cniVersion") {
        None | Some(Value::Null) => Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "the network configuration has no \"cniVersion\" (which means 0.1.0); l2sm supports {}",
                Version::supported_list()
            ),
        )),
        Some(Value::String(s)) => Version::parse(s).ok_or_else(|| {
            CniError::new(
                INCOMPATIBLE_VERSION,
                format!(
                    "CNI version {s:?} is not supported; l2sm supports {}",
                    Version::supported_list()
                ),
            )
        }),
        Some(v) => Err(config(format!("\"cniVersion\" must be a string, not {}", type_name(v)))),
    }
}

fn parse_dns(v: &Map<String, Value>, path: &str) -> Result<Value, CniError> {
    let mut out = Map::new();
    let nameservers = string_list(v, "nameservers", &format!("{path}.nameservers"))?;
    for (i, ns) in nameservers.iter().enumerate() {
        parse_ip(ns, &format!("{path}.nameservers[{i}]"))?;
    }
    if !nameservers.is_empty() {
        out.insert("nameservers".into(), nameservers.into());
    }
    if let Some(d) = get_str(v, "domain", &format!("{path}.domain"))? {
        if !d.is_empty() {
            out.insert("domain".into(), d.into());
        }
    }
    for key in ["search", "options"] {
        let list = string_list(v, key, &format!("{path}.{key}"))?;
        if !list.is_empty() {
            out.insert(key.into(), list.into());
        }
    }
    Ok(Value::Object(out))
}

fn parse_route(v: &Value, path: &str) -> Result<RouteSpec, CniError> {
    let Value::Object(o) = v else {
        return Err(config(format!(
            "\"{path}\" must be an object like {{\"dst\": \"10.0.0.0/8\", \"gw\": \"10.1.0.1\"}}"
        )));
    };
    for key in o.keys() {
        if key != "dst" && key != "gw" {
            return Err(CniError::new(
                UNSUPPORTED_FIELD,
                format!("unsupported field \"{path}.{key}\" = {}: l2sm routes take only \"dst\" and \"gw\"", o[key]),
            ));
        }
    }
    let dst_s = get_str(o, "dst", &format!("{path}.dst"))?
        .ok_or_else(|| config(format!("\"{path}.dst\" is required")))?;
    let dst: IpNet = dst_s.parse().map_err(|_| {
        config(format!(
            "\"{path}.dst\": {dst_s:?} is not a prefix like 10.0.0.0/8"
        ))
    })?;
    if dst.trunc() != dst {
        return Err(config(format!(
            "\"{path}.dst\": {dst} has host bits set (did you mean {}?)",
            dst.trunc()
        )));
    }
    let gw = get_str(o, "gw", &format!("{path}.gw"))?
        .map(|g| parse_ip(g, &format!("{path}.gw")))
        .transpose()?;
    if let Some(gw) = gw {
        if gw.is_ipv4() != dst.addr().is_ipv4() {
            return Err(config(format!(
                "\"{path}\": gateway {gw} and destination {dst} are of different IP families"
            )));
        }
    }
    Ok(RouteSpec { dst, gw })
}

struct Ipam {
    addresses: Vec<Address>,
    routes: Vec<RouteSpec>,
    dns: Option<Value>,
}

fn parse_ipam(ipam: &Map<String, Value>) -> Result<Ipam, CniError> {
    let none = Ipam {
        addresses: vec![],
        routes: vec![],
        dns: None,
    };
    match get_str(ipam, "type", "ipam.type")? {
        None | Some("") if ipam.keys().all(|k| k == "type") => return Ok(none),
        None | Some("") => {
            return Err(config(
                "\"ipam\" has settings but no \"type\": l2sm understands {\"type\": \"static\", \"addresses\": [...], \"routes\": [...]}",
            ))
        }
        Some("static") => {}
        Some(other) => {
            return Err(CniError::new(
                UNSUPPORTED_FIELD,
                format!(
                    "unsupported field \"ipam.type\" = {other:?}: l2sm supports only \"static\" IPAM (or per-pod addresses in runtimeConfig.ips)"
                ),
            ))
        }
    }
    let mut addresses = Vec::new();
    for (i, a) in get_array(ipam, "addresses", "ipam.addresses")?
        .iter()
        .enumerate()
    {
        let path = format!("ipam.addresses[{i}]");
        let Value::Object(o) = a else {
            return Err(config(format!(
                "\"{path}\" must be an object like {{\"address\": \"10.0.0.1/24\"}}"
            )));
        };
        let s = get_str(o, "address", &format!("{path}.address"))?
            .ok_or_else(|| config(format!("\"{path}.address\" is required")))?;
        let net = parse_cidr(s).map_err(|e| config(format!("\"{path}.address\": {e}")))?;
        let gateway = get_str(o, "gateway", &format!("{path}.gateway"))?
            .map(|g| parse_ip(g, &format!("{path}.gateway")))
            .transpose()?;
        if let Some(gw) = gateway {
            if gw.is_ipv4() != net.addr().is_ipv4() {
                return Err(config(format!(
                    "\"{path}\": gateway {gw} and address {net} are of different IP families"
                )));
            }
        }
        addresses.push(Address { net, gateway });
    }
    let routes = get_array(ipam, "routes", "ipam.routes")?
        .iter()
        .enumerate()
        .map(|(i, r)| parse_route(r, &format!("ipam.routes[{i}]")))
        .collect::<Result<_, _>>()?;
    let dns = get_obj(ipam, "dns", "ipam.dns")?
        .map(|d| parse_dns(d, "ipam.dns"))
        .transpose()?;
    Ok(Ipam {
        addresses,
        routes,
        dns,
    })
}

fn per_pod_ips(list: Vec<String>, path: &str) -> Result<Vec<IpNet>, CniError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| parse_cidr(s).map_err(|e| config(format!("\"{path}[{i}]\": {e}"))))
        .collect()
}

fn parse_valid_attachments(v: &[Value], key: &str) -> Result<Vec<(String, String)>, CniError> {
    v.iter()
        .enumerate()
        .map(|(i, a)| {
            let path = format!("{key}[{i}]");
            let Value::Object(o) = a else {
                return Err(config(format!(
                    "\"{path}\" must be an object with \"containerID\" and \"ifname\""
                )));
            };
            let cid = get_str(o, "containerID", &format!("{path}.containerID"))?;
            let ifname = get_str(o, "ifname", &format!("{path}.ifname"))?;
            match (cid, ifname) {
                (Some(c), Some(i)) if !c.is_empty() && !i.is_empty() => {
                    Ok((c.to_string(), i.to_string()))
                }
                _ => Err(config(format!(
                    "\"{path}\" needs non-empty \"containerID\" and \"ifname\""
                ))),
            }
        })
        .collect()
}

impl NetConf {
    /// Parses the configuration, merging per-pod settings from `CNI_ARGS`.
    pub(crate) fn parse(stdin: &[u8], cni_args: &CniArgs) -> Result<NetConf, CniError> {
        if stdin.iter().all(u8::is_ascii_whitespace) {
            return Err(CniError::new(
                DECODE_FAILURE,
                "no network configuration on stdin",
            ));
        }
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                DECODE_FAILURE,
                format!("cannot decode the network configuration on stdin: {e}"),
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(CniError::new(
                DECODE_FAILURE,
                format!(
                    "the network configuration must be a JSON object, not {}",
                    type_name(&value)
                ),
            ));
        };
        let version = parse_version(&obj)?;
        get_str(&obj, "name", "name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| config("\"name\" (the network configuration's name) is required"))?;
        // An IDS mirror attachment (the operator's `l2sm.mirror.<network>` NAD): the port
        // becomes the network's mirror, never a member, and only pods of the namespace the
        // NAD names may take it (a NAD can be referenced from any namespace).
        let mirror_of = get_str(&obj, "mirrorOf", "mirrorOf")?.map(str::to_string);
        let mirror_namespace = match &mirror_of {
            None => None,
            Some(_) if obj.get("network").is_some_and(|v| !v.is_null()) => {
                return Err(CniError::new(
                    UNSUPPORTED_FIELD,
                    "\"mirrorOf\" and \"network\" exclude each other: a mirror port is no member of the network it mirrors",
                ));
            }
            Some(_) => Some(
                get_str(&obj, "mirrorNamespace", "mirrorNamespace")?
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        config("\"mirrorOf\" needs \"mirrorNamespace\" (the namespace whose pods may mirror the network)")
                    })?
                    .to_string(),
            ),
        };
        let network = match mirror_of {
            Some(n) => n,
            None => get_str(&obj, "network", "network")?
                .ok_or_else(|| config("\"network\" (the L2S-M network to join) is required"))?
                .to_string(),
        };
        l2sm_pipeline::ids::validate_network_name(&network)
            .map_err(|e| config(format!("\"network\": {e}")))?;
        let mtu = match obj.get("mtu") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(m @ 68..=65535) => Some(m as u32),
                _ => {
                    return Err(config(format!(
                        "\"mtu\" must be a whole number from 68 to 65535, not {v}"
                    )))
                }
            },
        };
        let agent_socket = match get_str(&obj, "agentSocket", "agentSocket")? {
            None => PathBuf::from(DEFAULT_AGENT_SOCKET),
            Some("") => return Err(config("\"agentSocket\" must not be empty")),
            Some(s) => PathBuf::from(s),
        };
        let ipam = match get_obj(&obj, "ipam", "ipam")? {
            Some(i) => parse_ipam(i)?,
            None => Ipam {
                addresses: vec![],
                routes: vec![],
                dns: None,
            },
        };
        let dns = match ipam.dns {
            Some(d) => Some(d),
            None => get_obj(&obj, "dns", "dns")?
                .map(|d| parse_dns(d, "dns"))
                .transpose()?,
        };

        // Per-pod settings: runtimeConfig (capabilities "ips"/"mac"), args.cni, CNI_ARGS.
        let runtime = get_obj(&obj, "runtimeConfig", "runtimeConfig")?;
        let args_cni = match get_obj(&obj, "args", "args")? {
            Some(a) => get_obj(a, "cni", "args.cni")?,
            None => None,
        };
        let mut per_pod = Vec::new();
        if let Some(r) = runtime {
            per_pod.extend(per_pod_ips(
                string_list(r, "ips", "runtimeConfig.ips")?,
                "runtimeConfig.ips",
            )?);
        }
        if let Some(a) = args_cni {
            per_pod.extend(per_pod_ips(
                string_list(a, "ips", "args.cni.ips")?,
                "args.cni.ips",
            )?);
        }
        per_pod.extend(cni_args.ips.iter().copied());
        let mut addresses = ipam.addresses;
        for net in per_pod {
            if !addresses.iter().any(|a| a.net == net) {
                addresses.push(Address { net, gateway: None });
            }
        }

        let mac_sources = [
            (
                runtime
                    .map(|r| get_str(r, "mac", "runtimeConfig.mac"))
                    .transpose()?
                    .flatten(),
                "runtimeConfig.mac",
            ),
            (
                args_cni
                    .map(|a| get_str(a, "mac", "args.cni.mac"))
                    .transpose()?
                    .flatten(),
                "args.cni.mac",
            ),
            (cni_args.mac.as_deref(), "CNI_ARGS MAC"),
        ];
        let mac = match mac_sources
            .iter()
            .find_map(|(m, path)| m.map(|m| (m, *path)))
        {
            Some((m, path)) => Some(parse_mac(m).map_err(|e| config(format!("\"{path}\": {e}")))?),
            None => None,
        };

        let port_security = match args_cni
            .map(|a| get_bool(a, "portSecurity", "args.cni.portSecurity"))
            .transpose()?
            .flatten()
        {
            Some(b) => Some(b),
            None => get_bool(&obj, "portSecurity", "portSecurity")?,
        };

        let prev_result = match obj.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.clone()),
        };
        let valid_attachments = ["cni.dev/valid-attachments", "cni.dev/attachments"]
            .iter()
            .find_map(|key| obj.get(*key).filter(|v| !v.is_null()).map(|v| (key, v)))
            .map(|(key, v)| match v {
                Value::Array(a) => parse_valid_attachments(a, key),
                v => Err(config(format!(
                    "\"{key}\" must be an array, not {}",
                    type_name(v)
                ))),
            })
            .transpose()?;

        Ok(NetConf {
            version,
            network,
            mtu,
            agent_socket,
            addresses,
            routes: ipam.routes,
            dns,
            mac,
            port_security,
            prev_result,
            valid_attachments,
            mirror_namespace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes(), &CniArgs::default())
    }

    fn base() -> Value {
        json!({"cniVersion": "1.0.0", "name": "l2sm-blue", "type": "l2sm", "network": "blue"})
    }

    fn with(extra: Value) -> Value {
        let mut b = base();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    }

    #[test]
    fn minimal_configuration() {
        let c = parse(base()).unwrap();
        assert_eq!(c.version, Version::V100);
        assert_eq!(c.network, "blue");
        assert_eq!(c.agent_socket, PathBuf::from(DEFAULT_AGENT_SOCKET));
        assert!(c.addresses.is_empty() && c.routes.is_empty() && c.mac.is_none());
        assert!(parse(with(json!({"ipam": {}})))
            .unwrap()
            .addresses
            .is_empty());
    }

    #[test]
    fn versions() {
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            assert_eq!(
                parse(with(json!({"cniVersion": v})))
                    .unwrap()
                    .version
                    .as_str(),
                v
            );
        }
        for v in [json!("0.2.0"), json!("2.0.0"), Value::Null] {
            assert_eq!(
                parse(with(json!({"cniVersion": v}))).unwrap_err().code,
                1,
                "{v}"
            );
        }
        assert_eq!(
            peek_version(br#"{"cniVersion":"0.4.0"}"#),
            Some(Version::V040)
        );
        assert_eq!(peek_version(b"nonsense"), None);
    }

    #[test]
    fn port_security_from_the_configuration_or_the_pod() {
        let c = |v: Value| parse(with(v));
        assert_eq!(c(json!({})).unwrap().port_security, None);
        assert_eq!(
            c(json!({"portSecurity": true})).unwrap().port_security,
            Some(true)
        );
        let pod_off = json!({"portSecurity": true, "args": {"cni": {"portSecurity": false}}});
        assert_eq!(c(pod_off).unwrap().port_security, Some(false));
        for bad in [
            json!({"portSecurity": "yes"}),
            json!({"args": {"cni": {"portSecurity": 1}}}),
        ] {
            let e = c(bad.clone()).unwrap_err();
            assert!(e.msg.contains("must be a boolean"), "{bad}: {}", e.msg);
        }
    }

    #[test]
    fn static_ipam_runtime_config_and_args_merge() {
        let args = CniArgs::parse("IgnoreUnknown=1;IP=10.9.0.1/24").unwrap();
        let c = NetConf::parse(
            with(json!({
                "ipam": {"type": "static",
                         "addresses": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1"}],
                         "routes": [{"dst": "10.2.0.0/16", "gw": "10.1.0.1"}, {"dst": "10.3.0.0/16"}],
                         "dns": {"nameservers": ["10.1.0.1"], "search": ["example"]}},
                "runtimeConfig": {"ips": ["10.1.0.5/24", "fd00::5/64"], "mac": "02:AA:00:00:00:01"},
                "args": {"cni": {"ips": ["10.8.0.1/24"]}},
                "mtu": 1400
            }))
            .to_string()
            .as_bytes(),
            &args,
        )
        .unwrap();
        let nets: Vec<String> = c.addresses.iter().map(|a| a.net.to_string()).collect();
        assert_eq!(
            nets,
            ["10.1.0.5/24", "fd00::5/64", "10.8.0.1/24", "10.9.0.1/24"]
        );
        assert_eq!(c.addresses[0].gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].gw, None);
        assert_eq!(c.mac.as_deref(), Some("02:aa:00:00:00:01"));
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.dns.unwrap()["nameservers"], json!(["10.1.0.1"]));
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let cases = [
            (json!({"network": null}), 7, "\"network\""),
            (json!({"mirrorOf": "blue"}), 2, "mirrorOf"),
            (
                json!({"network": null, "mirrorOf": "blue"}),
                7,
                "mirrorNamespace",
            ),
            (
                json!({"network": null, "mirrorOf": 5, "mirrorNamespace": "x"}),
                7,
                "mirrorOf",
            ),
            (json!({"network": "Blue_"}), 7, "network"),
            (json!({"name": ""}), 7, "\"name\""),
            (json!({"mtu": 20}), 7, "mtu"),
            (json!({"mtu": "1500"}), 7, "mtu"),
            (json!({"agentSocket": 5}), 7, "agentSocket"),
            (
                json!({"ipam": {"type": "host-local", "subnet": "10.0.0.0/24"}}),
                2,
                "host-local",
            ),
            (json!({"ipam": {"addresses": []}}), 7, "type"),
            (
                json!({"ipam": {"type": "static", "addresses": [{"address": "10.0.0.300/24"}]}}),
                7,
                "ipam.addresses[0].address",
            ),
            (
                json!({"ipam": {"type": "static", "addresses": [{"address": "10.0.0.3"}]}}),
                7,
                "no prefix length",
            ),
            (
                json!({"ipam": {"type": "static", "addresses": [{"address": "10.0.0.3/24", "gateway": "fd00::1"}]}}),
                7,
                "families",
            ),
            (
                json!({"ipam": {"type": "static", "routes": [{"dst": "10.1.2.3/8"}]}}),
                7,
                "host bits",
            ),
            (
                json!({"ipam": {"type": "static", "routes": [{"dst": "10.0.0.0/8", "table": 5}]}}),
                2,
                "table",
            ),
            (
                json!({"runtimeConfig": {"ips": ["10.1.1.11"]}}),
                7,
                "runtimeConfig.ips[0]",
            ),
            (
                json!({"runtimeConfig": {"ips": "10.1.1.11/24"}}),
                7,
                "array",
            ),
            (
                json!({"runtimeConfig": {"mac": "01:00:00:00:00:01"}}),
                7,
                "multicast",
            ),
            (json!({"runtimeConfig": {"mac": "zz"}}), 7, "not a MAC"),
            (
                json!({"dns": {"nameservers": ["dns.example"]}}),
                7,
                "dns.nameservers[0]",
            ),
            (
                json!({"cni.dev/valid-attachments": [{"containerID": "a"}]}),
                7,
                "ifname",
            ),
        ];
        for (extra, code, needle) in cases {
            let e = parse(with(extra.clone())).unwrap_err();
            assert_eq!(e.code, code, "{extra}: {e:?}");
            assert!(
                e.msg.contains(needle),
                "{extra}: {:?} lacks {needle:?}",
                e.msg
            );
        }
        for bad in [&b""[..], b"  ", b"{", b"[1]", b"\"x\""] {
            assert_eq!(
                NetConf::parse(bad, &CniArgs::default()).unwrap_err().code,
                6
            );
        }
    }

    #[test]
    fn gc_attachments_under_either_key() {
        let c = parse(with(
            json!({"cni.dev/attachments": [{"containerID": "a", "ifname": "net1"}]}),
        ))
        .unwrap();
        assert_eq!(
            c.valid_attachments.unwrap(),
            [("a".to_string(), "net1".to_string())]
        );
        assert!(parse(base()).unwrap().valid_attachments.is_none());
    }
}
