//! The CNI result, written in the configuration's version, and `prevResult` read back.

use crate::config::Version;
use crate::error::{CniError, DECODE_FAILURE};
use ipnet::IpNet;
use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// One `ips` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IpConfig {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// A version-neutral result. Interfaces, routes and DNS are kept as JSON objects so fields of a
/// previous plugin's result pass through untouched.
#[derive(Debug, Clone, Default)]
pub(crate) struct CniResult {
    pub interfaces: Vec<Map<String, Value>>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Value>,
    pub dns: Option<Value>,
}

/// An interface entry.
pub(crate) fn interface(
    name: &str,
    mac: Option<&str>,
    sandbox: Option<&str>,
    mtu: Option<u32>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), name.into());
    if let Some(mac) = mac {
        m.insert("mac".into(), mac.into());
    }
    if let Some(mtu) = mtu {
        m.insert("mtu".into(), mtu.into());
    }
    if let Some(sb) = sandbox {
        m.insert("sandbox".into(), sb.into());
    }
    m
}

impl CniResult {
    /// The result as the given spec version writes it.
    pub(crate) fn to_json(&self, version: Version) -> Value {
        let mut out = Map::new();
        out.insert("cniVersion".into(), version.as_str().into());
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut i = i.clone();
                if version < Version::V110 {
                    // Fields 1.1.0 added to interfaces.
                    for k in ["mtu", "socketPath", "pciID"] {
                        i.remove(k);
                    }
                }
                Value::Object(i)
            })
            .collect();
        if !interfaces.is_empty() {
            out.insert("interfaces".into(), interfaces.into());
        }
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut m = Map::new();
                if version.ips_have_version() {
                    let v = if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    m.insert("version".into(), v.into());
                }
                m.insert("address".into(), ip.address.to_string().into());
                if let Some(gw) = ip.gateway {
                    m.insert("gateway".into(), gw.to_string().into());
                }
                if let Some(i) = ip.interface {
                    m.insert("interface".into(), i.into());
                }
                Value::Object(m)
            })
            .collect();
        if !ips.is_empty() {
            out.insert("ips".into(), ips.into());
        }
        if !self.routes.is_empty() {
            out.insert("routes".into(), self.routes.clone().into());
        }
        out.insert("dns".into(), self.dns.clone().unwrap_or_else(|| json!({})));
        Value::Object(out)
    }

    /// Reads a `prevResult` (0.3.0 to 1.1.0 formats).
    pub(crate) fn from_prev(v: &Value) -> Result<CniResult, CniError> {
        let bad =
            |msg: String| CniError::new(DECODE_FAILURE, format!("cannot decode prevResult: {msg}"));
        let Value::Object(o) = v else {
            return Err(bad("it is not a JSON object".into()));
        };
        if o.contains_key("ip4") || o.contains_key("ip6") {
            return Err(bad(
                "it is in the 0.2.0 format (ip4/ip6), which l2sm does not read".into(),
            ));
        }
        let array = |key: &str| -> Result<Vec<Value>, CniError> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Array(a)) => Ok(a.clone()),
                Some(_) => Err(bad(format!("\"{key}\" is not an array"))),
            }
        };
        let mut interfaces = Vec::new();
        for (i, itf) in array("interfaces")?.into_iter().enumerate() {
            match itf {
                Value::Object(m) if m.get("name").is_some_and(Value::is_string) => {
                    interfaces.push(m)
                }
                _ => {
                    return Err(bad(format!(
                        "interfaces[{i}] is not an object with a \"name\""
                    )))
                }
            }
        }
        let mut ips = Vec::new();
        for (i, ip) in array("ips")?.into_iter().enumerate() {
            let Value::Object(m) = ip else {
                return Err(bad(format!("ips[{i}] is not an object")));
            };
            let address = m
                .get("address")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<IpNet>().ok())
                .ok_or_else(|| {
                    bad(format!(
                        "ips[{i}].address is not an address with a prefix length"
                    ))
                })?;
            let gateway = match m.get("gateway") {
                None | Some(Value::Null) => None,
                Some(g) => Some(
                    g.as_str()
                        .and_then(|s| s.parse::<IpAddr>().ok())
                        .ok_or_else(|| bad(format!("ips[{i}].gateway is not an IP address")))?,
                ),
            };
            let interface = match m.get("interface") {
                None | Some(Value::Null) => None,
                Some(n) => Some(
                    n.as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| bad(format!("ips[{i}].interface is not an index")))?,
                ),
            };
            ips.push(IpConfig {
                address,
                gateway,
                interface,
            });
        }
        let routes = array("routes")?;
        let dns = match o.get("dns") {
            None | Some(Value::Null) => None,
            Some(d @ Value::Object(_)) => Some(d.clone()),
            Some(_) => return Err(bad("\"dns\" is not an object".into())),
        };
        Ok(CniResult {
            interfaces,
            ips,
            routes,
            dns,
        })
    }

    /// Appends `next` (this plugin's part) after `self` (a previous plugin's result), shifting
    /// its interface indexes. DNS: ours when we have some, else the previous one.
    pub(crate) fn append(mut self, next: CniResult) -> CniResult {
        let offset = self.interfaces.len();
        self.interfaces.extend(next.interfaces);
        self.ips.extend(next.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + offset);
            ip
        }));
        self.routes.extend(next.routes);
        let ours_empty = next
            .dns
            .as_ref()
            .is_none_or(|d| d.as_object().is_some_and(Map::is_empty));
        if !ours_empty {
            self.dns = next.dns;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                interface("ls0000100001", Some("aa:bb:cc:dd:ee:01"), None, None),
                interface(
                    "net1",
                    Some("02:00:00:00:00:01"),
                    Some("/run/netns/p"),
                    Some(1400),
                ),
            ],
            ips: vec![
                IpConfig {
                    address: "10.0.0.1/24".parse().unwrap(),
                    gateway: Some("10.0.0.254".parse().unwrap()),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00::1/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(1),
                },
            ],
            routes: vec![json!({"dst": "10.2.0.0/16", "gw": "10.0.0.254"})],
            dns: None,
        }
    }

    #[test]
    fn versions_differ_in_ip_version_and_mtu() {
        let old = sample().to_json(Version::V040);
        assert_eq!(old["cniVersion"], "0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        assert!(old["interfaces"][1].get("mtu").is_none());
        let new = sample().to_json(Version::V100);
        assert!(new["ips"][0].get("version").is_none());
        assert!(new["interfaces"][1].get("mtu").is_none());
        let v11 = sample().to_json(Version::V110);
        assert_eq!(v11["interfaces"][1]["mtu"], 1400);
        assert_eq!(v11["interfaces"][1]["sandbox"], "/run/netns/p");
        assert_eq!(v11["dns"], json!({}));
    }

    #[test]
    fn prev_result_round_trips_and_appends() {
        for v in Version::ALL {
            let back = CniResult::from_prev(&sample().to_json(v)).unwrap();
            assert_eq!(back.ips, sample().ips);
            assert_eq!(back.interfaces.len(), 2);
        }
        let prev = CniResult {
            interfaces: vec![interface("eth0", None, Some("/x"), None)],
            ips: vec![IpConfig {
                address: "192.168.0.2/24".parse().unwrap(),
                gateway: None,
                interface: Some(0),
            }],
            routes: vec![],
            dns: Some(json!({"nameservers": ["192.168.0.1"]})),
        };
        let merged = prev.append(sample());
        assert_eq!(merged.interfaces.len(), 3);
        assert_eq!(merged.ips[1].interface, Some(2));
        assert_eq!(merged.dns, Some(json!({"nameservers": ["192.168.0.1"]})));
    }

    #[test]
    fn bad_prev_results() {
        for bad in [
            json!([]),
            json!({"ip4": {"ip": "10.0.0.1/24"}}),
            json!({"interfaces": [{"mac": "x"}]}),
            json!({"ips": [{"address": "10.0.0.1"}]}),
            json!({"ips": [{"address": "10.0.0.1/24", "interface": -1}]}),
            json!({"dns": []}),
        ] {
            assert_eq!(CniResult::from_prev(&bad).unwrap_err().code, 6, "{bad}");
        }
    }
}
