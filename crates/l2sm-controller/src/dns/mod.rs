//! The controller's authoritative DNS server for the `l2sm` zone: `<name>.<network>.l2sm` has
//! an A/AAAA record per address of every member port whose owner's pod is called `<name>`
//! (the part of `namespace/name` after the slash), and each of those addresses has a PTR back.
//!
//! Records are derived from the model itself: the zone is rebuilt on the first query after
//! the model's generation moved, so a name exists from the moment the change that made it
//! was committed (an attach's owner report) and is gone from the moment the port left. No
//! recursion: names outside the zone (and reverse names of addresses we do not know) are
//! REFUSED.

pub mod client;
pub mod server;
pub mod wire;

use crate::model::Model;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use wire::{Answer, Name, Query, RData, Record, Soa};

/// The zone's apex.
pub const ZONE: &str = "l2sm";
/// TTL of every record, seconds: short, names follow pods.
pub const TTL: u32 = 5;

/// Whether `label` may be a DNS label of ours: 1-63 of `a-z`, `0-9`, `-`, not starting or
/// ending with `-` (pod and network names are Kubernetes names: they always are).
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= wire::MAX_LABEL
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The records of one model state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Zone {
    /// SOA serial (the model generation it was built from, truncated).
    pub serial: u32,
    /// Networks (every one is a name of the zone, without records of its own).
    pub networks: BTreeSet<String>,
    /// `(network, name)` → addresses (empty for pods without any: the name exists, NODATA).
    pub hosts: BTreeMap<(String, String), BTreeSet<IpAddr>>,
    /// Address → the names pointing at it.
    pub reverse: BTreeMap<IpAddr, BTreeSet<Name>>,
}

impl Zone {
    /// The zone of `model`: every member port with an owner that names a pod, its reported
    /// addresses and the IPAM allocations attached to it.
    pub fn of(model: &Model, serial: u32) -> Zone {
        let mut zone = Zone {
            serial,
            ..Zone::default()
        };
        for (net_name, net) in &model.networks {
            let network = net_name.to_ascii_lowercase();
            if !valid_label(&network) {
                continue;
            }
            zone.networks.insert(network.clone());
            for port in &net.endpoints {
                let Some(owner) = model.port_owners.get(port) else {
                    continue;
                };
                let Some(pod) = owner.pod.as_deref() else {
                    continue;
                };
                let name = pod.rsplit('/').next().unwrap_or(pod).to_ascii_lowercase();
                if !valid_label(&name) {
                    continue;
                }
                let allocated = net.ipam.iter().flat_map(|i| {
                    i.ports
                        .iter()
                        .filter(|(_, p)| *p == port)
                        .flat_map(|(o, _)| i.held_by(o))
                        .map(|n| n.addr())
                });
                let addrs: Vec<IpAddr> = owner.ips.iter().copied().chain(allocated).collect();
                let fqdn = Name(vec![name.clone(), network.clone(), ZONE.into()]);
                for ip in &addrs {
                    zone.reverse.entry(*ip).or_default().insert(fqdn.clone());
                }
                zone.hosts
                    .entry((network.clone(), name))
                    .or_default()
                    .extend(addrs);
            }
        }
        zone
    }

    fn soa(&self) -> Record {
        Record {
            name: Name(vec![ZONE.into()]),
            ttl: TTL,
            data: RData::Soa(Soa {
                mname: Name(vec!["ns".into(), ZONE.into()]),
                rname: Name(vec!["hostmaster".into(), ZONE.into()]),
                serial: self.serial,
                // refresh, retry, expire, minimum (the negative-answer TTL)
                times: [60, 10, 600, TTL],
            }),
        }
    }

    /// The answer to `query` (opcode and class checked here too).
    pub fn answer(&self, query: &Query) -> Answer {
        let refused = Answer {
            rcode: u16::from(wire::RCODE_REFUSED),
            ..Answer::default()
        };
        if query.opcode != 0 {
            return Answer {
                rcode: u16::from(wire::RCODE_NOTIMP),
                ..Answer::default()
            };
        }
        if query.edns.is_some_and(|e| e.version > 0) {
            return Answer {
                rcode: wire::RCODE_BADVERS,
                ..Answer::default()
            };
        }
        if query.qclass != wire::CLASS_IN && query.qclass != 255 {
            return refused;
        }
        let name = &query.name;
        let record = |data: RData| Record {
            name: name.clone(),
            ttl: TTL,
            data,
        };
        let found = |answers: Vec<Record>| Answer {
            rcode: u16::from(wire::RCODE_NOERROR),
            aa: true,
            answers,
            authority: vec![],
        };
        let nodata = |zone: &Zone| Answer {
            rcode: u16::from(wire::RCODE_NOERROR),
            aa: true,
            answers: vec![],
            authority: vec![zone.soa()],
        };
        // Reverse names: only those of addresses we hold.
        if name.ends_with(&["in-addr", "arpa"]) || name.ends_with(&["ip6", "arpa"]) {
            let Some(targets) = name.reverse_address().and_then(|ip| self.reverse.get(&ip)) else {
                return refused;
            };
            return match query.qtype {
                wire::TYPE_PTR | wire::TYPE_ANY => found(
                    targets
                        .iter()
                        .map(|t| record(RData::Ptr(t.clone())))
                        .collect(),
                ),
                _ => nodata(self),
            };
        }
        if !name.ends_with(&[ZONE]) {
            return refused;
        }
        let labels = &name.0[..name.0.len() - 1];
        let nxdomain = Answer {
            rcode: u16::from(wire::RCODE_NXDOMAIN),
            aa: true,
            answers: vec![],
            authority: vec![self.soa()],
        };
        match labels {
            [] => match query.qtype {
                wire::TYPE_SOA | wire::TYPE_ANY => found(vec![self.soa()]),
                _ => nodata(self),
            },
            [network] if self.networks.contains(network) => nodata(self),
            [host, network] => {
                let Some(addrs) = self.hosts.get(&(network.clone(), host.clone())) else {
                    return nxdomain;
                };
                let want = |ip: &&IpAddr| match query.qtype {
                    wire::TYPE_A => ip.is_ipv4(),
                    wire::TYPE_AAAA => ip.is_ipv6(),
                    wire::TYPE_ANY => true,
                    _ => false,
                };
                let answers: Vec<Record> = addrs
                    .iter()
                    .filter(want)
                    .map(|ip| record(RData::Addr(*ip)))
                    .collect();
                if answers.is_empty() {
                    nodata(self)
                } else {
                    found(answers)
                }
            }
            _ => nxdomain,
        }
    }
}

/// The zone of the model's current generation, rebuilt on the first query after a change.
pub struct Zones {
    shared: Arc<crate::Shared>,
    current: Mutex<Option<(u64, Arc<Zone>)>>,
}

impl Zones {
    /// Zones of `shared`'s model.
    pub fn new(shared: Arc<crate::Shared>) -> Zones {
        Zones {
            shared,
            current: Mutex::new(None),
        }
    }

    /// The zone of the model now.
    pub fn current(&self) -> Arc<Zone> {
        // The generation first: the model read next holds at least its changes (a change
        // committed meanwhile bumps it again and the next query rebuilds).
        let generation = self.shared.generation();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, zone)) = current.as_ref() {
            if *g == generation {
                return zone.clone();
            }
        }
        let zone = Arc::new(self.shared.with_model(|m| Zone::of(m, generation as u32)));
        *current = Some((generation, zone.clone()));
        zone
    }
}

#[cfg(test)]
mod tests;
