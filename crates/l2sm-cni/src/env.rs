//! The `CNI_*` environment variables.

use crate::config::parse_cidr;
use crate::error::{env, CniError};
use ipnet::IpNet;

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub(crate) fn parse(s: Option<&str>) -> Result<Command, CniError> {
        Ok(match s.unwrap_or("") {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "" => {
                return Err(env(
                    "CNI_COMMAND is not set (expected ADD, DEL, CHECK, VERSION, STATUS or GC)",
                ))
            }
            other => {
                return Err(env(format!(
                    "CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"
                )))
            }
        })
    }
}

/// `CNI_ARGS`: what Kubernetes runtimes and Multus put there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CniArgs {
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub infra_container_id: Option<String>,
    /// `IP=a/p,b/q` (Multus' older way of passing static addresses).
    pub ips: Vec<IpNet>,
    /// `MAC=…` (same).
    pub mac: Option<String>,
}

impl CniArgs {
    /// Parses `K=V;K=V`. Unknown keys are an error unless `IgnoreUnknown` is true, as with the
    /// reference plugins.
    pub(crate) fn parse(s: &str) -> Result<CniArgs, CniError> {
        let mut args = CniArgs::default();
        let mut unknown = Vec::new();
        let mut ignore_unknown = false;
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(env(format!(
                    "CNI_ARGS: {pair:?} is not KEY=VALUE (pairs are separated by ';')"
                )));
            };
            if v.contains('=') {
                return Err(env(format!("CNI_ARGS: {pair:?} has more than one '='")));
            }
            let value = || (!v.is_empty()).then(|| v.to_string());
            match k {
                "IgnoreUnknown" => {
                    ignore_unknown = match v.to_ascii_lowercase().as_str() {
                        "1" | "true" => true,
                        "0" | "false" | "" => false,
                        _ => {
                            return Err(env(format!(
                                "CNI_ARGS: IgnoreUnknown={v:?} is not a boolean"
                            )))
                        }
                    }
                }
                "K8S_POD_NAMESPACE" => args.pod_namespace = value(),
                "K8S_POD_NAME" => args.pod_name = value(),
                "K8S_POD_UID" => args.pod_uid = value(),
                "K8S_POD_INFRA_CONTAINER_ID" => args.infra_container_id = value(),
                "MAC" => args.mac = value(),
                "IP" => {
                    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                        args.ips
                            .push(parse_cidr(item).map_err(|e| env(format!("CNI_ARGS IP: {e}")))?);
                    }
                }
                _ => unknown.push(k.to_string()),
            }
        }
        if !unknown.is_empty() && !ignore_unknown {
            return Err(env(format!(
                "CNI_ARGS: unknown key(s) {} (set IgnoreUnknown=1 to pass them anyway)",
                unknown.join(", ")
            )));
        }
        Ok(args)
    }

    /// `namespace/name` when both are known.
    pub(crate) fn pod(&self) -> Option<String> {
        match (&self.pod_namespace, &self.pod_name) {
            (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
            (None, Some(n)) => Some(n.clone()),
            _ => None,
        }
    }
}

/// Everything the runtime passed in the environment.
#[derive(Debug, Clone)]
pub(crate) struct CniEnv {
    pub command: Command,
    container_id: Option<String>,
    netns: Option<String>,
    ifname: Option<String>,
    pub args: CniArgs,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

impl CniEnv {
    /// Reads the variables through `get` (the process environment in `main`).
    pub(crate) fn read(get: impl Fn(&str) -> Option<String>) -> Result<CniEnv, CniError> {
        let command = Command::parse(get("CNI_COMMAND").as_deref())?;
        let args = match command {
            Command::Add | Command::Del | Command::Check => {
                CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?
            }
            _ => CniArgs::default(),
        };
        Ok(CniEnv {
            command,
            container_id: non_empty(get("CNI_CONTAINERID")),
            netns: non_empty(get("CNI_NETNS")),
            ifname: non_empty(get("CNI_IFNAME")),
            args,
        })
    }

    pub(crate) fn container_id(&self) -> Result<&str, CniError> {
        let id = self
            .container_id
            .as_deref()
            .ok_or_else(|| env("CNI_CONTAINERID is not set"))?;
        let mut chars = id.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(env(format!(
                "CNI_CONTAINERID {id:?} is invalid: it must start with a letter or digit, followed by letters, digits, '_', '.' or '-'"
            )));
        }
        Ok(id)
    }

    pub(crate) fn ifname(&self) -> Result<&str, CniError> {
        let name = self
            .ifname
            .as_deref()
            .ok_or_else(|| env("CNI_IFNAME is not set"))?;
        let valid = name.len() <= 15
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
        if !valid {
            return Err(env(format!(
                "CNI_IFNAME {name:?} is not a valid interface name (1-15 printable ASCII characters, no '/' or ':')"
            )));
        }
        Ok(name)
    }

    /// The namespace path, required (ADD, CHECK).
    pub(crate) fn netns(&self) -> Result<&str, CniError> {
        self.netns.as_deref().ok_or_else(|| {
            env("CNI_NETNS is not set: ADD and CHECK need the container's network namespace")
        })
    }

    /// The agent's attachment id: the spec's key for an attachment, `cni/<container>/<ifname>`.
    pub(crate) fn attachment_id(&self) -> Result<String, CniError> {
        Ok(attachment_id(self.container_id()?, self.ifname()?))
    }
}

pub(crate) fn attachment_id(container_id: &str, ifname: &str) -> String {
    format!("cni/{container_id}/{ifname}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::read(|k| map.get(k).cloned())
    }

    #[test]
    fn kubernetes_args_are_understood() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=a;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;FOO=bar",
        )
        .unwrap();
        assert_eq!(a.pod().as_deref(), Some("default/a"));
        assert_eq!(a.pod_uid.as_deref(), Some("u-1"));
        assert_eq!(a.infra_container_id.as_deref(), Some("abc"));
    }

    #[test]
    fn unknown_args_need_ignore_unknown() {
        let e = CniArgs::parse("FOO=bar").unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("FOO"), "{}", e.msg);
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        assert_eq!(CniArgs::parse("novalue").unwrap_err().code, 4);
        assert_eq!(CniArgs::parse("IgnoreUnknown=maybe").unwrap_err().code, 4);
    }

    #[test]
    fn multus_ip_and_mac_args() {
        let a = CniArgs::parse("IP=10.1.1.1/24,10.1.2.1/24;MAC=02:00:00:00:00:01").unwrap();
        assert_eq!(a.ips.len(), 2);
        assert_eq!(a.mac.as_deref(), Some("02:00:00:00:00:01"));
        let e = CniArgs::parse("IP=10.1.1.1").unwrap_err();
        assert!(e.msg.contains("prefix"), "{}", e.msg);
    }

    #[test]
    fn environment_is_validated() {
        assert_eq!(env_of(&[]).unwrap_err().code, 4);
        assert_eq!(env_of(&[("CNI_COMMAND", "PUT")]).unwrap_err().code, 4);
        let e = env_of(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "net1")]).unwrap();
        assert!(e
            .container_id()
            .unwrap_err()
            .msg
            .contains("CNI_CONTAINERID"));
        assert!(e.netns().unwrap_err().msg.contains("CNI_NETNS"));
        let e = env_of(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "-bad"),
            ("CNI_IFNAME", "a/b"),
        ])
        .unwrap();
        assert_eq!(e.container_id().unwrap_err().code, 4);
        assert_eq!(e.ifname().unwrap_err().code, 4);
        let e = env_of(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c0ffee_1.x-y"),
            ("CNI_IFNAME", "net1"),
            ("CNI_NETNS", ""),
        ])
        .unwrap();
        assert_eq!(e.attachment_id().unwrap(), "cni/c0ffee_1.x-y/net1");
        assert!(e.netns().is_err(), "an empty CNI_NETNS counts as unset");
    }
}
