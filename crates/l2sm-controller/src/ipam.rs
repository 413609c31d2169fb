//! Address management per network, kept in the controller with the rest of its state: one
//! CIDR per address family, an optional pod range inside it, exclusions, and allocations keyed
//! by owner (CNI's container id + interface name), so a repeated request returns the same
//! address and a release frees exactly what the owner had.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// IPAM settings and allocations of one network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Ipam {
    /// Subnets, at most one IPv4 and one IPv6.
    pub cidrs: Vec<IpNet>,
    /// Ranges dynamic addresses come from (upstream `podAddressRange`); each inside a CIDR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_ranges: Vec<IpNet>,
    /// Addresses never handed out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<IpAddr>,
    /// Address -> owner.
    #[serde(default)]
    pub allocations: BTreeMap<IpAddr, String>,
    /// Owner -> the switch port it is attached to, when the requester said so (the agent
    /// does): lets the API show each membership with its addresses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, l2sm_pipeline::ids::PortId>,
}

/// Why an IPAM request was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    /// Bad settings.
    #[error("invalid IPAM settings: {0}")]
    Settings(String),
    /// A static address outside every CIDR.
    #[error("address {0} is outside the network's CIDR")]
    Outside(IpAddr),
    /// A static address that is the network or broadcast address, or excluded.
    #[error("address {0} is reserved (network, broadcast or excluded address)")]
    Reserved(IpAddr),
    /// A static address taken by someone else.
    #[error("address {addr} is already allocated to {owner}")]
    Taken {
        /// The address.
        addr: IpAddr,
        /// Its owner.
        owner: String,
    },
    /// The owner already holds different addresses.
    #[error("{owner} already holds {held}; release it first")]
    OwnerHolds {
        /// The owner.
        owner: String,
        /// What it holds.
        held: String,
    },
    /// Nothing free.
    #[error("no free address left in {0}")]
    Exhausted(IpNet),
    /// A static address that is the network's DNS address.
    #[error("address {0} is reserved: it is the network's DNS address (docs/dns.md)")]
    DnsAddress(IpAddr),
}

/// The DNS address an IPv4 CIDR reserves: its last usable host (the address below the
/// broadcast address), for prefixes up to /30 (a /31 or /32 has no room for it). The first
/// usable host is where upstream's examples and most LANs put a router; IPAM hands out
/// addresses from the bottom up, so the top of the range is the least likely to be in use.
pub fn dns_address_of(cidr: &IpNet) -> Option<std::net::Ipv4Addr> {
    match cidr {
        IpNet::V4(v4) if v4.prefix_len() <= 30 => {
            Some(std::net::Ipv4Addr::from(u32::from(v4.broadcast()) - 1))
        }
        _ => None,
    }
}

/// The DNS address an IPv6 CIDR reserves: its last address (IPv6 has no broadcast address;
/// RFC 2526's reserved anycast identifiers of a /64 are `fdff:ffff:ffff:ff80` and up to
/// `fdff:ffff:ffff:ffff`, below it), for prefixes up to /126.
pub fn dns_address6_of(cidr: &IpNet) -> Option<std::net::Ipv6Addr> {
    match cidr {
        IpNet::V6(v6) if v6.prefix_len() <= 126 => Some(v6.broadcast()),
        _ => None,
    }
}

fn reserved(net: &IpNet, addr: IpAddr) -> bool {
    match net {
        IpNet::V4(v4) if v4.prefix_len() < 31 => {
            IpAddr::V4(v4.network()) == addr || IpAddr::V4(v4.broadcast()) == addr
        }
        IpNet::V6(v6) if v6.prefix_len() < 127 => IpAddr::V6(v6.network()) == addr,
        _ => false,
    }
}

impl Ipam {
    /// How the API shows these settings and allocations.
    pub fn view(&self) -> l2sm_api::v1::IpamView {
        l2sm_api::v1::IpamView {
            cidrs: self.cidrs.clone(),
            pod_ranges: self.pod_ranges.clone(),
            exclude: self.exclude.clone(),
            allocations: self.allocations.clone(),
            ports: self.ports.clone(),
        }
    }

    /// Validated settings without allocations.
    pub fn new(
        cidrs: Vec<IpNet>,
        pod_ranges: Vec<IpNet>,
        exclude: Vec<IpAddr>,
    ) -> Result<Ipam, IpamError> {
        if cidrs.is_empty() {
            return Err(IpamError::Settings("at least one CIDR is needed".into()));
        }
        let v4 = cidrs.iter().filter(|c| matches!(c, IpNet::V4(_))).count();
        if v4 > 1 || cidrs.len() - v4 > 1 {
            return Err(IpamError::Settings(
                "at most one IPv4 and one IPv6 CIDR".into(),
            ));
        }
        let cidrs: Vec<IpNet> = cidrs.into_iter().map(|c| c.trunc()).collect();
        for r in &pod_ranges {
            if !cidrs.iter().any(|c| c.contains(r)) {
                return Err(IpamError::Settings(format!(
                    "pod range {r} is not inside a CIDR"
                )));
            }
        }
        Ok(Ipam {
            cidrs,
            pod_ranges,
            exclude,
            allocations: BTreeMap::new(),
            ports: BTreeMap::new(),
        })
    }

    /// What `owner` holds, as addresses with their CIDR's prefix length.
    pub fn held_by(&self, owner: &str) -> Vec<IpNet> {
        self.allocations
            .iter()
            .filter(|(_, o)| o.as_str() == owner)
            .filter_map(|(a, _)| self.with_prefix(*a))
            .collect()
    }

    fn with_prefix(&self, addr: IpAddr) -> Option<IpNet> {
        let cidr = self.cidrs.iter().find(|c| c.contains(&addr))?;
        IpNet::new(addr, cidr.prefix_len()).ok()
    }

    /// The network's DNS address ([`dns_address_of`] its IPv4 CIDR), unless an allocation
    /// holds that address (state written before addresses were reserved: the holder keeps
    /// it, and the network has no DNS address until it is released).
    pub fn dns_address(&self) -> Option<std::net::Ipv4Addr> {
        self.cidrs
            .iter()
            .find_map(dns_address_of)
            .filter(|a| !self.allocations.contains_key(&IpAddr::V4(*a)))
    }

    /// The network's IPv6 DNS address ([`dns_address6_of`] its IPv6 CIDR), on the same
    /// terms as [`Ipam::dns_address`].
    pub fn dns_address6(&self) -> Option<std::net::Ipv6Addr> {
        self.cidrs
            .iter()
            .find_map(dns_address6_of)
            .filter(|a| !self.allocations.contains_key(&IpAddr::V6(*a)))
    }

    /// Whether `addr` is an address [`Ipam::dns_address`] or [`Ipam::dns_address6`] reserves
    /// (held or not).
    fn is_dns_address(&self, addr: IpAddr) -> bool {
        self.cidrs.iter().any(|c| {
            dns_address_of(c).map(IpAddr::V4) == Some(addr)
                || dns_address6_of(c).map(IpAddr::V6) == Some(addr)
        })
    }

    fn check_static(&self, owner: &str, addr: IpAddr) -> Result<(), IpamError> {
        let cidr = self
            .cidrs
            .iter()
            .find(|c| c.contains(&addr))
            .ok_or(IpamError::Outside(addr))?;
        if reserved(cidr, addr) || self.exclude.contains(&addr) {
            return Err(IpamError::Reserved(addr));
        }
        if self.is_dns_address(addr)
            && self.allocations.get(&addr).map(String::as_str) != Some(owner)
        {
            return Err(IpamError::DnsAddress(addr));
        }
        match self.allocations.get(&addr) {
            Some(o) if o != owner => Err(IpamError::Taken {
                addr,
                owner: o.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn next_free(&self, cidr: &IpNet) -> Result<IpAddr, IpamError> {
        let ranges: Vec<&IpNet> = self
            .pod_ranges
            .iter()
            .filter(|r| cidr.contains(*r))
            .collect();
        let ranges = if ranges.is_empty() {
            vec![cidr]
        } else {
            ranges
        };
        for range in ranges {
            // hosts() skips network/broadcast for IPv4; stop early on huge IPv6 ranges.
            for addr in range.hosts().take(1 << 20) {
                if !reserved(cidr, addr)
                    && !self.is_dns_address(addr)
                    && !self.exclude.contains(&addr)
                    && !self.allocations.contains_key(&addr)
                {
                    return Ok(addr);
                }
            }
        }
        Err(IpamError::Exhausted(*cidr))
    }

    /// Allocates for `owner`: the given static addresses (validated), or one address per CIDR.
    /// A repeated request of the same owner returns what it already holds.
    pub fn allocate(&mut self, owner: &str, requested: &[IpAddr]) -> Result<Vec<IpNet>, IpamError> {
        let held = self.held_by(owner);
        if !held.is_empty() {
            let same = requested.is_empty() || {
                let mut a: Vec<IpAddr> = held.iter().map(|n| n.addr()).collect();
                let mut b = requested.to_vec();
                a.sort();
                b.sort();
                a == b
            };
            if same {
                return Ok(held);
            }
            let held = held
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",");
            return Err(IpamError::OwnerHolds {
                owner: owner.to_string(),
                held,
            });
        }
        let chosen: Vec<IpAddr> = if requested.is_empty() {
            self.cidrs
                .clone()
                .iter()
                .map(|c| self.next_free(c))
                .collect::<Result<_, _>>()?
        } else {
            for addr in requested {
                self.check_static(owner, *addr)?;
            }
            requested.to_vec()
        };
        for addr in &chosen {
            self.allocations.insert(*addr, owner.to_string());
        }
        Ok(chosen.iter().filter_map(|a| self.with_prefix(*a)).collect())
    }

    /// Frees everything `owner` holds; returns how many addresses were freed.
    pub fn release(&mut self, owner: &str) -> usize {
        let before = self.allocations.len();
        self.allocations.retain(|_, o| o != owner);
        self.ports.remove(owner);
        before - self.allocations.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn dynamic_allocation_skips_reserved_and_is_idempotent_per_owner() {
        // A /29: .1 to .5 for pods (.6 is the DNS address, .0 and .7 network and broadcast).
        let mut ipam = Ipam::new(vec![net("10.0.0.0/29")], vec![], vec![]).unwrap();
        assert_eq!(ipam.allocate("a", &[]).unwrap(), vec![net("10.0.0.1/29")]);
        assert_eq!(
            ipam.allocate("a", &[]).unwrap(),
            vec![net("10.0.0.1/29")],
            "same owner, same address"
        );
        for (i, owner) in ["b", "c", "d", "e"].iter().enumerate() {
            let want = format!("10.0.0.{}/29", i + 2);
            assert_eq!(ipam.allocate(owner, &[]).unwrap(), vec![net(&want)]);
        }
        assert_eq!(
            ipam.allocate("f", &[]),
            Err(IpamError::Exhausted(net("10.0.0.0/29")))
        );
        assert_eq!(ipam.release("a"), 1);
        assert_eq!(ipam.allocate("f", &[]).unwrap(), vec![net("10.0.0.1/29")]);
    }

    #[test]
    fn static_requests_are_validated() {
        let mut ipam = Ipam::new(vec![net("10.0.0.0/24")], vec![], vec![ip("10.0.0.9")]).unwrap();
        assert_eq!(
            ipam.allocate("a", &[ip("10.0.1.1")]),
            Err(IpamError::Outside(ip("10.0.1.1")))
        );
        assert_eq!(
            ipam.allocate("a", &[ip("10.0.0.0")]),
            Err(IpamError::Reserved(ip("10.0.0.0")))
        );
        assert_eq!(
            ipam.allocate("a", &[ip("10.0.0.255")]),
            Err(IpamError::Reserved(ip("10.0.0.255")))
        );
        assert_eq!(
            ipam.allocate("a", &[ip("10.0.0.9")]),
            Err(IpamError::Reserved(ip("10.0.0.9")))
        );
        assert_eq!(
            ipam.allocate("a", &[ip("10.0.0.5")]).unwrap(),
            vec![net("10.0.0.5/24")]
        );
        assert_eq!(
            ipam.allocate("b", &[ip("10.0.0.5")]),
            Err(IpamError::Taken {
                addr: ip("10.0.0.5"),
                owner: "a".into()
            })
        );
        assert!(matches!(
            ipam.allocate("a", &[ip("10.0.0.6")]),
            Err(IpamError::OwnerHolds { .. })
        ));
        // Dynamic allocation never hands out a static or excluded address.
        let got: Vec<IpNet> = (0..5)
            .flat_map(|i| ipam.allocate(&format!("d{i}"), &[]).unwrap())
            .collect();
        assert!(!got.contains(&net("10.0.0.5/24")) && !got.contains(&net("10.0.0.9/24")));
    }

    #[test]
    fn the_dns_address_is_never_handed_out() {
        assert_eq!(
            dns_address_of(&net("10.0.0.0/24")),
            Some("10.0.0.254".parse().unwrap())
        );
        assert_eq!(
            dns_address_of(&net("10.0.0.0/30")),
            Some("10.0.0.2".parse().unwrap())
        );
        assert_eq!(dns_address_of(&net("10.0.0.0/31")), None);
        assert_eq!(dns_address_of(&net("fd00::/64")), None);
        assert_eq!(
            dns_address6_of(&net("fd00:10::/64")),
            Some("fd00:10::ffff:ffff:ffff:ffff".parse().unwrap())
        );
        assert_eq!(dns_address6_of(&net("fd00::/127")), None);
        let mut v6 = Ipam::new(vec![net("fd00::/126")], vec![], vec![]).unwrap();
        assert_eq!(v6.dns_address6(), Some("fd00::3".parse().unwrap()));
        assert_eq!(v6.dns_address(), None);
        assert_eq!(
            v6.allocate("a", &[ip("fd00::3")]),
            Err(IpamError::DnsAddress(ip("fd00::3")))
        );
        let got: Vec<IpNet> = (0..2)
            .flat_map(|i| v6.allocate(&format!("s{i}"), &[]).unwrap())
            .collect();
        assert_eq!(got, vec![net("fd00::1/126"), net("fd00::2/126")]);
        assert!(v6.allocate("s2", &[]).is_err(), "::3 is the DNS address");
        // A /30 has two hosts: one for a pod, one for DNS.
        let mut ipam = Ipam::new(vec![net("10.0.0.0/30")], vec![], vec![]).unwrap();
        assert_eq!(ipam.dns_address(), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(
            ipam.allocate("a", &[ip("10.0.0.2")]),
            Err(IpamError::DnsAddress(ip("10.0.0.2")))
        );
        assert!(
            ipam.allocations.is_empty(),
            "a refused request changes nothing"
        );
        assert_eq!(ipam.allocate("a", &[]).unwrap(), vec![net("10.0.0.1/30")]);
        assert_eq!(
            ipam.allocate("b", &[]),
            Err(IpamError::Exhausted(net("10.0.0.0/30")))
        );
        let msg = IpamError::DnsAddress(ip("10.0.0.2")).to_string();
        assert!(msg.contains("DNS address"), "{msg}");
        // Inside a pod range too.
        let mut ipam =
            Ipam::new(vec![net("10.0.0.0/29")], vec![net("10.0.0.4/30")], vec![]).unwrap();
        assert_eq!(ipam.allocate("p0", &[]).unwrap(), vec![net("10.0.0.5/29")]);
        assert!(ipam.allocate("p1", &[]).is_err(), ".6 is the DNS address");
        // State from before the reservation: the holder keeps the address, and the network
        // has no DNS address while it does.
        let mut old = Ipam::new(vec![net("10.0.0.0/24")], vec![], vec![]).unwrap();
        old.allocations.insert(ip("10.0.0.254"), "legacy".into());
        assert_eq!(old.dns_address(), None);
        assert_eq!(
            old.allocate("legacy", &[ip("10.0.0.254")]).unwrap(),
            vec![net("10.0.0.254/24")]
        );
        old.release("legacy");
        assert_eq!(old.dns_address(), Some("10.0.0.254".parse().unwrap()));
    }

    #[test]
    fn pod_range_and_dual_stack() {
        let mut ipam = Ipam::new(
            vec![net("10.0.0.0/24"), net("fd00::/64")],
            vec![net("10.0.0.128/25")],
            vec![],
        )
        .unwrap();
        let got = ipam.allocate("a", &[]).unwrap();
        assert_eq!(got, vec![net("10.0.0.129/24"), net("fd00::1/64")]);
        assert!(Ipam::new(vec![net("10.0.0.0/24")], vec![net("10.1.0.0/25")], vec![]).is_err());
        assert!(Ipam::new(vec![net("10.0.0.0/24"), net("10.1.0.0/24")], vec![], vec![]).is_err());
        assert!(Ipam::new(vec![], vec![], vec![]).is_err());
    }
}
