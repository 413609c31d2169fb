//! OpenFlow controller targets. `ovs-vswitchd` resolves a host name in a `tcp:`/`ssl:` target
//! itself (libunbound), without the `resolv.conf` search list, so a Kubernetes Service name such
//! as `l2sm-controller-service.l2sm-system.svc` never resolves there and a `fail_mode=secure`
//! bridge forwards nothing. The agent therefore resolves host names with the system resolver
//! (`getaddrinfo`: search list, `ndots`, `/etc/hosts`) and writes `tcp:IP:PORT` into OVS.
//! Everything else (IP literals, `unix:`, `punix:`, `ptcp:`, `pssl:`) goes to OVS unchanged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Port OVS uses for a `tcp:`/`ssl:` controller target without one (the IANA OpenFlow port).
pub const DEFAULT_OPENFLOW_PORT: u16 = 6653;

/// Why a target is refused or a name does not resolve.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The `--controller` value is not a target OVS understands.
    #[error("controller target {target:?}: {reason}")]
    Invalid {
        /// The value given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The resolver answered with an error (unknown name, no server reachable, …).
    #[error("cannot resolve controller host {host:?}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The resolver did not answer in time.
    #[error("resolving controller host {host:?} took longer than {timeout:?}")]
    Timeout {
        /// The host name.
        host: String,
        /// The bound that was hit.
        timeout: Duration,
    },
    /// The name exists but has no address.
    #[error("controller host {host:?} resolved to no address")]
    NoAddress {
        /// The host name.
        host: String,
    },
}

/// One `--controller` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerTarget {
    /// Written to OVS as given: an IP literal, or a form without a host name to resolve.
    Fixed(String),
    /// `tcp:`/`ssl:` with a host name the agent resolves.
    Named {
        /// `tcp` or `ssl`.
        scheme: String,
        /// The host name, as given.
        host: String,
        /// The port (the OpenFlow default when the target has none).
        port: u16,
    },
}

impl std::str::FromStr for ControllerTarget {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, TargetError> {
        let bad = |reason: &str| TargetError::Invalid {
            target: s.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = s.split_once(':').ok_or_else(|| {
            bad("expected SCHEME:ADDRESS, SCHEME one of tcp, ssl, unix, punix, ptcp, pssl")
        })?;
        match scheme {
            "unix" | "punix" => {
                if rest.is_empty() {
                    return Err(bad("missing socket path"));
                }
                Ok(ControllerTarget::Fixed(s.to_string()))
            }
            // Passive targets name a local port and address: nothing to resolve.
            "ptcp" | "pssl" => Ok(ControllerTarget::Fixed(s.to_string())),
            "tcp" | "ssl" => {
                let (host, port) = split_host_port(rest).map_err(|r| bad(&r))?;
                match host {
                    Host::Ip => Ok(ControllerTarget::Fixed(s.to_string())),
                    Host::Name(host) => Ok(ControllerTarget::Named {
                        scheme: scheme.to_string(),
                        host,
                        port: port.unwrap_or(DEFAULT_OPENFLOW_PORT),
                    }),
                }
            }
            other => Err(bad(&format!(
                "unknown scheme {other:?} (use tcp, ssl, unix, punix, ptcp or pssl)"
            ))),
        }
    }
}

enum Host {
    /// An IP literal: OVS takes it as is.
    Ip,
    Name(String),
}

/// Splits `HOST[:PORT]` or `[IPV6][:PORT]`.
fn split_host_port(rest: &str) -> Result<(Host, Option<u16>), String> {
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| "unbalanced '[' around an IPv6 address".to_string())?;
        addr.parse::<Ipv6Addr>()
            .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after the IPv6 address"))?,
            ),
        };
        (Host::Ip, port)
    } else {
        if rest.parse::<Ipv6Addr>().is_ok() {
            return Err("an IPv6 address needs brackets: tcp:[ADDRESS]:PORT".into());
        }
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if host.is_empty() {
            return Err("missing host".into());
        }
        let host = match host.parse::<Ipv4Addr>() {
            Ok(_) => Host::Ip,
            Err(_) => {
                check_host_name(host)?;
                Host::Name(host.to_string())
            }
        };
        (host, port)
    };
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{p:?} is not a port number (1-65535)")),
        })
        .transpose()?;
    Ok((host, port))
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`, optionally fully
/// qualified with a trailing dot.
fn check_host_name(host: &str) -> Result<(), String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Err(format!("host name {host:?} is longer than 253 characters"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("{host:?} is neither an IP address nor a host name"));
        }
    }
    if labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    Ok(())
}

/// The OVS spelling of a target at `ip`: `tcp:10.0.0.1:6653`, `tcp:[fd00::1]:6653`.
pub fn format_target(scheme: &str, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{scheme}:{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}:[{v6}]:{port}"),
    }
}

/// The address to use among `addrs`: `previous` while the name still has it (no needless
/// reconnect when a name has several addresses), otherwise the resolver's first choice.
pub fn choose(addrs: &[IpAddr], previous: Option<IpAddr>) -> Option<IpAddr> {
    match previous {
        Some(p) if addrs.contains(&p) => Some(p),
        _ => addrs.first().copied(),
    }
}

/// Resolves `host` with the system resolver (`getaddrinfo`), bounded by `timeout`.
pub async fn lookup(host: &str, port: u16, timeout: Duration) -> Result<Vec<IpAddr>, TargetError> {
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| TargetError::Timeout {
            host: host.to_string(),
            timeout,
        })?
        .map_err(|source| TargetError::Resolve {
            host: host.to_string(),
            source,
        })?;
    let mut addrs: Vec<IpAddr> = Vec::new();
    for a in found {
        if !addrs.contains(&a.ip()) {
            addrs.push(a.ip());
        }
    }
    if addrs.is_empty() {
        return Err(TargetError::NoAddress {
            host: host.to_string(),
        });
    }
    Ok(addrs)
}

/// The `--controller` targets and, for each named one, the last address it resolved to.
#[derive(Debug, Clone)]
pub struct ControllerTargets {
    targets: Vec<ControllerTarget>,
    addrs: Vec<Option<IpAddr>>,
}

/// What one resolution pass changed.
#[derive(Debug, Default)]
pub struct Refresh {
    /// `(host, old target, new target)` for each named target whose address changed.
    pub changed: Vec<(String, Option<String>, String)>,
    /// Names that did not resolve this time (their last address is kept).
    pub failed: Vec<TargetError>,
}

impl ControllerTargets {
    /// Parses every `--controller` value; the first invalid one is the error.
    pub fn parse(values: &[String]) -> Result<ControllerTargets, TargetError> {
        let targets = values
            .iter()
            .map(|v| v.parse())
            .collect::<Result<Vec<ControllerTarget>, _>>()?;
        let addrs = vec![None; targets.len()];
        Ok(ControllerTargets { targets, addrs })
    }

    /// Whether some target has a host name to (re-)resolve.
    pub fn has_names(&self) -> bool {
        self.targets
            .iter()
            .any(|t| matches!(t, ControllerTarget::Named { .. }))
    }

    /// The targets to write into OVS, or `None` while some name has never resolved (a
    /// controller list without it would silently drop a controller).
    pub fn current(&self) -> Option<Vec<String>> {
        self.targets
            .iter()
            .zip(&self.addrs)
            .map(|(t, a)| match t {
                ControllerTarget::Fixed(s) => Some(s.clone()),
                ControllerTarget::Named { scheme, port, .. } => {
                    a.map(|ip| format_target(scheme, ip, *port))
                }
            })
            .collect()
    }

    /// Records the outcome of resolving target `index`: a new address replaces the old one
    /// (kept when the old one is still among the answers), a failure keeps the old one.
    pub fn record(
        &mut self,
        index: usize,
        outcome: Result<Vec<IpAddr>, TargetError>,
        refresh: &mut Refresh,
    ) {
        let Some(ControllerTarget::Named { scheme, host, port }) = self.targets.get(index) else {
            return;
        };
        let previous = self.addrs[index];
        match outcome {
            Ok(addrs) => {
                let chosen = choose(&addrs, previous);
                if chosen != previous {
                    if let Some(ip) = chosen {
                        refresh.changed.push((
                            host.clone(),
                            previous.map(|p| format_target(scheme, p, *port)),
                            format_target(scheme, ip, *port),
                        ));
                        self.addrs[index] = chosen;
                    }
                }
            }
            Err(e) => refresh.failed.push(e),
        }
    }

    /// Resolves every named target once (each lookup bounded by `timeout`).
    pub async fn refresh(&mut self, timeout: Duration) -> Refresh {
        let mut refresh = Refresh::default();
        for i in 0..self.targets.len() {
            let outcome = match &self.targets[i] {
                ControllerTarget::Named { host, port, .. } => lookup(host, *port, timeout).await,
                ControllerTarget::Fixed(_) => continue,
            };
            self.record(i, outcome, &mut refresh);
        }
        refresh
    }
}
