//! The controller's network model: networks, their VNIs, VLAN ids, member ports, mirror ports,
//! port owners and IPAM allocations, and the rules every change obeys (a port is in one
//! network, VNIs are never 0 nor reused right away). Pure: no I/O, so every rule is tested in
//! memory; [`crate::store`] persists it.

use super::ipam::{Ipam, IpamError};
use l2sm_api::v1::NetworkLimits;
use l2sm_pipeline::ids::PortId;
use l2sm_pipeline::{FloodMode, LinkKind, NetworkView, PortBinding, SwitchView, MAX_VNI};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One virtual network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Network {
    /// Stable VXLAN network identifier, never 0, never reused while the network exists.
    pub vni: u32,
    /// Member ports, in the order they joined.
    pub endpoints: Vec<PortId>,
    /// Port receiving a copy of the network's traffic (stored; programming comes later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_port: Option<PortId>,
    /// 802.1Q id of the network on trunk links; `None` once all 4094 are taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Address management; `None` for an L2-only network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    /// Port security on the network's member ports (each port's owner may override it): a
    /// secured port sends only from its reported MAC and addresses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub port_security: bool,
    /// Abuse limits of its pod ports as set through the API; `None`: the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<NetworkLimits>,
}

impl Network {
    /// The limits in effect: the ones set, else the defaults.
    pub fn limits(&self) -> NetworkLimits {
        self.limits.unwrap_or_default()
    }

    /// The network's DNS address, if it has one (an IPv4 CIDR, see
    /// [`crate::ipam::dns_address_of`]).
    pub fn dns_address(&self) -> Option<std::net::Ipv4Addr> {
        self.ipam.as_ref().and_then(Ipam::dns_address)
    }

    /// The network's IPv6 DNS address, if it has one (an IPv6 CIDR, see
    /// [`crate::ipam::dns_address6_of`]).
    pub fn dns_address6(&self) -> Option<std::net::Ipv6Addr> {
        self.ipam.as_ref().and_then(Ipam::dns_address6)
    }

    /// How the API shows the network's DNS endpoint.
    pub fn dns_view(&self) -> Option<l2sm_api::v1::NetworkDnsView> {
        let (address, address6) = (self.dns_address(), self.dns_address6());
        (address.is_some() || address6.is_some()).then(|| l2sm_api::v1::NetworkDnsView {
            address,
            address6,
            mac: format_mac(l2sm_pipeline::dns::mac(self.vni)),
        })
    }
}

/// Who a member port belongs to, as the agent that plumbed it reports: the operator needs the
/// exact pod of each port (the switch port is invisible in Kubernetes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortOwner {
    /// Pod, `namespace/name` (absent for attachments made without a pod identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Attachment id (`cni/<container>/<ifname>` for the CNI plugin).
    pub attachment: String,
    /// Interface name inside the pod.
    #[serde(default)]
    pub interface: String,
    /// MAC of the pod interface (lowercase `xx:xx:xx:xx:xx:xx`), when the agent reported it:
    /// the only source MAC port security admits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Addresses of the pod interface the agent reported (port security admits these and the
    /// IPAM allocations attached to the port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<std::net::IpAddr>,
    /// This port's port security, overriding its network's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
}

/// A MAC as six bytes (`xx:xx:xx:xx:xx:xx`, hex digits in either case); `None` if malformed.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A MAC in the form the model keeps (lowercase, colons).
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Highest usable 802.1Q id.
pub const MAX_VLAN: u16 = 4094;

/// Everything the controller must remember across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Model {
    /// Networks by name.
    pub networks: BTreeMap<String, Network>,
    /// Next VNI to hand out.
    #[serde(default = "first_vni")]
    pub next_vni: u32,
    /// Owners of member ports. An owner lives as long as its port is a member: it goes when
    /// the port leaves its network (or the network is deleted) and follows a move.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_owners: BTreeMap<PortId, PortOwner>,
}

fn first_vni() -> u32 {
    1
}

/// Why a model change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// The network does not exist.
    #[error("network {0:?} does not exist")]
    UnknownNetwork(String),
    /// The port already belongs to another network; a port is in exactly one network.
    #[error("port {port} already belongs to network {network:?}")]
    PortInOtherNetwork {
        /// The port.
        port: PortId,
        /// Its current network.
        network: String,
    },
    /// The port is the network's mirror port.
    #[error("port {0} is the mirror port of the network")]
    PortIsMirror(PortId),
    /// The port is in no network.
    #[error("port {0} is not a member of any network")]
    PortNotMember(PortId),
    /// The network is mirrored to another port already (a port-scoped mirror request never
    /// takes the mirror away from another port).
    #[error("network {network:?} is mirrored to {port} already")]
    MirrorTaken {
        /// The network.
        network: String,
        /// Its mirror.
        port: PortId,
    },
    /// A member or mirror outside the pod port range: trunk and tunnel port numbers belong to
    /// inter-switch links.
    #[error("port {0} is not a pod port: members and mirrors are ports 1 to {last} (higher numbers are inter-switch links)", last = l2sm_pipeline::ids::FIRST_TRUNK_PORT - 1)]
    NotPodPort(PortId),
    /// Every VNI is in use.
    #[error("no free VNI left")]
    VniExhausted,
    /// The network exists with other IPAM settings.
    #[error("network {0:?} already exists with different IPAM settings")]
    IpamMismatch(String),
    /// The network exists with the other port security setting.
    #[error("network {0:?} already exists with a different port security setting")]
    PortSecurityMismatch(String),
    /// The network exists with other limits (they change through its `limits` resource).
    #[error("network {0:?} already exists with different limits (PUT /api/v1/networks/{0}/limits changes them)")]
    LimitsMismatch(String),
    /// An address request was refused.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A collection whose owner prefix would select every owner (empty or blank).
    #[error("ownerPrefix must not be empty: it would select every owner")]
    UnboundedGc,
}

/// Members and mirrors are pod ports; see [`ModelError::NotPodPort`].
fn pod_port(port: &PortId) -> Result<(), ModelError> {
    if l2sm_pipeline::ids::is_pod_port(port.port) {
        Ok(())
    } else {
        Err(ModelError::NotPodPort(*port))
    }
}

impl Model {
    fn allocate_vni(&mut self) -> Result<u32, ModelError> {
        let used: BTreeSet<u32> = self.networks.values().map(|n| n.vni).collect();
        if used.len() >= MAX_VNI as usize {
            return Err(ModelError::VniExhausted);
        }
        let mut candidate = self.next_vni.clamp(1, MAX_VNI);
        while used.contains(&candidate) {
            candidate = if candidate >= MAX_VNI {
                1
            } else {
                candidate + 1
            };
        }
        self.next_vni = if candidate >= MAX_VNI {
            1
        } else {
            candidate + 1
        };
        Ok(candidate)
    }

    /// Turns port security of network `name` on or off. A network that exists already keeps
    /// its setting: asking for the other one is a conflict.
    pub fn check_port_security(&self, name: &str, on: bool) -> Result<(), ModelError> {
        match self.networks.get(name) {
            Some(n) if n.port_security != on => {
                Err(ModelError::PortSecurityMismatch(name.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Sets port security of a network just created.
    pub fn set_port_security(&mut self, name: &str, on: bool) -> Result<(), ModelError> {
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        net.port_security = on;
        Ok(())
    }

    /// Whether `port` has port security and, if so, what it may send: `Some(None)` while its
    /// MAC is not known (it forwards nothing), `None` without port security (or when it is no
    /// member).
    pub fn port_security(&self, port: &PortId) -> Option<Option<PortBinding>> {
        let net = self
            .networks
            .values()
            .find(|n| n.endpoints.contains(port))?;
        self.member_port_security(net, port)
    }

    /// [`Model::port_security`] of `port`, a member of `net` (cheap for ports without it).
    pub fn member_port_security(
        &self,
        net: &Network,
        port: &PortId,
    ) -> Option<Option<PortBinding>> {
        let owner = self.port_owners.get(port);
        let on = owner
            .and_then(|o| o.port_security)
            .unwrap_or(net.port_security);
        if !on {
            return None;
        }
        let Some((owner, mac)) = owner.and_then(|o| Some((o, parse_mac(o.mac.as_deref()?)?)))
        else {
            return Some(None);
        };
        let mut binding = PortBinding::mac_only(mac);
        let allocated = net.ipam.iter().flat_map(|i| {
            i.ports
                .iter()
                .filter(|(_, p)| *p == port)
                .flat_map(|(o, _)| i.held_by(o))
                .map(|n| n.addr())
        });
        for ip in owner.ips.iter().copied().chain(allocated) {
            match ip {
                std::net::IpAddr::V4(a) => binding.ipv4.insert(a),
                std::net::IpAddr::V6(a) => binding.ipv6.insert(a),
            };
        }
        Some(Some(binding))
    }

    /// Creates a network; creating an existing one changes nothing (upstream semantics).
    /// Returns whether the network is new.
    pub fn create_network(
        &mut self,
        name: &str,
        mirror_port: Option<PortId>,
    ) -> Result<bool, ModelError> {
        if self.networks.contains_key(name) {
            return Ok(false);
        }
        if let Some(port) = mirror_port {
            // The same rules as setting it later.
            self.check_mirror_port(name, port)?;
        }
        let vni = self.allocate_vni()?;
        let vlan = self.free_vlan();
        self.networks.insert(
            name.to_string(),
            Network {
                vni,
                endpoints: Vec::new(),
                mirror_port,
                vlan,
                ipam: None,
                port_security: false,
                limits: None,
            },
        );
        Ok(true)
    }

    /// Sets the limits of a network's pod ports.
    pub fn set_limits(&mut self, name: &str, limits: NetworkLimits) -> Result<(), ModelError> {
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        net.limits = Some(limits);
        Ok(())
    }

    /// After a create that asked for `limits`: a new network takes them, an existing one must
    /// already have them (in effect), else [`ModelError::LimitsMismatch`].
    pub fn apply_create_limits(
        &mut self,
        name: &str,
        created: bool,
        limits: Option<NetworkLimits>,
    ) -> Result<(), ModelError> {
        let Some(limits) = limits else { return Ok(()) };
        if created {
            return self.set_limits(name, limits);
        }
        match self.networks.get(name) {
            Some(n) if n.limits() == limits => Ok(()),
            Some(_) => Err(ModelError::LimitsMismatch(name.to_string())),
            None => Err(ModelError::UnknownNetwork(name.to_string())),
        }
    }

    /// Lowest 802.1Q id no network uses.
    fn free_vlan(&self) -> Option<u16> {
        let used: BTreeSet<u16> = self.networks.values().filter_map(|n| n.vlan).collect();
        (1..=MAX_VLAN).find(|v| !used.contains(v))
    }

    /// Gives a VLAN id to networks that have none (state written by older versions).
    pub fn assign_missing_vlans(&mut self) {
        let names: Vec<String> = self
            .networks
            .iter()
            .filter(|(_, n)| n.vlan.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for name in names {
            let vlan = self.free_vlan();
            if let Some(n) = self.networks.get_mut(&name) {
                n.vlan = vlan;
            }
        }
    }

    /// Creates a network with address management; an existing network with the same settings
    /// is left as it is (returns false).
    pub fn create_network_with_ipam(&mut self, name: &str, ipam: Ipam) -> Result<bool, ModelError> {
        if let Some(existing) = self.networks.get(name) {
            let same = existing.ipam.as_ref().is_some_and(|i| {
                i.cidrs == ipam.cidrs
                    && i.pod_ranges == ipam.pod_ranges
                    && i.exclude == ipam.exclude
            });
            return if same {
                Ok(false)
            } else {
                Err(ModelError::IpamMismatch(name.to_string()))
            };
        }
        self.create_network(name, None)?;
        if let Some(n) = self.networks.get_mut(name) {
            n.ipam = Some(ipam);
        }
        Ok(true)
    }

    /// Addresses for `owner` on `network`: allocated (or validated static ones) when the
    /// network has IPAM; the static ones as given otherwise (L2 only: nothing is invented).
    /// `port`, when given, records which switch port the owner is attached to.
    pub fn allocate(
        &mut self,
        network: &str,
        owner: &str,
        requested: &[ipnet::IpNet],
        port: Option<PortId>,
    ) -> Result<Vec<ipnet::IpNet>, ModelError> {
        let net = self
            .networks
            .get_mut(network)
            .ok_or_else(|| ModelError::UnknownNetwork(network.to_string()))?;
        match net.ipam.as_mut() {
            None => Ok(requested.to_vec()),
            Some(ipam) => {
                let addrs: Vec<std::net::IpAddr> = requested.iter().map(|n| n.addr()).collect();
                let ips = ipam.allocate(owner, &addrs)?;
                if let Some(port) = port {
                    ipam.ports.insert(owner.to_string(), port);
                }
                Ok(ips)
            }
        }
    }

    /// Frees what `owner` holds on `network` (nothing to do for unknown networks).
    pub fn release(&mut self, network: &str, owner: &str) -> usize {
        self.networks
            .get_mut(network)
            .and_then(|n| n.ipam.as_mut())
            .map(|i| i.release(owner))
            .unwrap_or(0)
    }

    /// Frees allocations of owners starting with `prefix` that are not in `valid`. A prefix
    /// that selects every owner (empty or blank) is refused and frees nothing.
    pub fn gc(&mut self, prefix: &str, valid: &BTreeSet<String>) -> Result<usize, ModelError> {
        if prefix.trim().is_empty() {
            return Err(ModelError::UnboundedGc);
        }
        let mut freed = 0;
        for ipam in self.networks.values_mut().filter_map(|n| n.ipam.as_mut()) {
            let before = ipam.allocations.len();
            ipam.allocations
                .retain(|_, o| !o.starts_with(prefix) || valid.contains(o));
            ipam.ports
                .retain(|o, _| !o.starts_with(prefix) || valid.contains(o));
            freed += before - ipam.allocations.len();
        }
        Ok(freed)
    }

    /// Deletes a network and its memberships (and their owners). Returns whether it existed.
    pub fn delete_network(&mut self, name: &str) -> bool {
        match self.networks.remove(name) {
            Some(net) => {
                for ep in &net.endpoints {
                    self.port_owners.remove(ep);
                }
                true
            }
            None => false,
        }
    }

    /// Records who a member port belongs to (replacing an earlier owner). Returns whether
    /// anything changed.
    pub fn set_owner(&mut self, port: PortId, owner: PortOwner) -> Result<bool, ModelError> {
        if self.network_of(&port).is_none() {
            return Err(ModelError::PortNotMember(port));
        }
        Ok(self.port_owners.insert(port, owner.clone()) != Some(owner))
    }

    /// Forgets a port's owner. Returns whether it had one.
    pub fn clear_owner(&mut self, port: &PortId) -> bool {
        self.port_owners.remove(port).is_some()
    }

    /// Moves a member port from network `from` to network `to` in one change, keeping its
    /// owner (quarantine). Returns false when it is in `to` already.
    pub fn move_port(&mut self, port: PortId, from: &str, to: &str) -> Result<bool, ModelError> {
        pod_port(&port)?;
        if !self.networks.contains_key(to) {
            return Err(ModelError::UnknownNetwork(to.to_string()));
        }
        match self.network_of(&port) {
            Some(n) if n == to => return Ok(false),
            Some(n) if n == from => {}
            Some(n) => {
                return Err(ModelError::PortInOtherNetwork {
                    port,
                    network: n.to_string(),
                })
            }
            None => return Err(ModelError::PortNotMember(port)),
        }
        if let Some(net) = self.networks.get_mut(from) {
            net.endpoints.retain(|p| *p != port);
        }
        if let Some(net) = self.networks.get_mut(to) {
            net.endpoints.push(port);
        }
        Ok(true)
    }

    /// The network a port belongs to, if any.
    pub fn network_of(&self, port: &PortId) -> Option<&str> {
        self.networks
            .iter()
            .find(|(_, n)| n.endpoints.contains(port))
            .map(|(name, _)| name.as_str())
    }

    /// Adds member ports, all or nothing. Ports already in this network are kept as they are.
    pub fn add_ports(&mut self, name: &str, ports: &[PortId]) -> Result<bool, ModelError> {
        let net = self
            .networks
            .get(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        for port in ports {
            pod_port(port)?;
            // The mirror of any network: it would leak that network's copies into this one.
            if net.mirror_port.as_ref() == Some(port) || self.mirror_of(port).is_some() {
                return Err(ModelError::PortIsMirror(*port));
            }
            if let Some(other) = self.network_of(port) {
                if other != name {
                    return Err(ModelError::PortInOtherNetwork {
                        port: *port,
                        network: other.to_string(),
                    });
                }
            }
        }
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        let mut changed = false;
        for port in ports {
            if !net.endpoints.contains(port) {
                net.endpoints.push(*port);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Removes member ports, all or nothing.
    pub fn remove_ports(&mut self, name: &str, ports: &[PortId]) -> Result<(), ModelError> {
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        if let Some(missing) = ports.iter().find(|p| !net.endpoints.contains(p)) {
            return Err(ModelError::PortNotMember(*missing));
        }
        net.endpoints.retain(|p| !ports.contains(p));
        for p in ports {
            self.port_owners.remove(p);
        }
        Ok(())
    }

    /// The network whose mirror port `port` is, if any.
    pub fn mirror_of(&self, port: &PortId) -> Option<&str> {
        self.networks
            .iter()
            .find(|(_, n)| n.mirror_port.as_ref() == Some(port))
            .map(|(name, _)| name.as_str())
    }

    /// Whether `port` may be network `name`'s mirror: a pod port that is no network's member
    /// and no other network's mirror.
    fn check_mirror_port(&self, name: &str, port: PortId) -> Result<(), ModelError> {
        pod_port(&port)?;
        match self
            .network_of(&port)
            .or_else(|| self.mirror_of(&port).filter(|n| *n != name))
        {
            Some(owner) => Err(ModelError::PortInOtherNetwork {
                port,
                network: owner.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Sets (or replaces) the mirror port of a network.
    pub fn set_mirror_port(&mut self, name: &str, port: PortId) -> Result<(), ModelError> {
        self.check_mirror_port(name, port)?;
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        net.mirror_port = Some(port);
        Ok(())
    }

    /// Makes `port` network `name`'s mirror unless another port is (an IDS pod attaching:
    /// it never takes another's mirror). Returns whether anything changed.
    pub fn claim_mirror_port(&mut self, name: &str, port: PortId) -> Result<bool, ModelError> {
        self.check_mirror_port(name, port)?;
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        match net.mirror_port {
            Some(p) if p == port => Ok(false),
            Some(p) => Err(ModelError::MirrorTaken {
                network: name.to_string(),
                port: p,
            }),
            None => {
                net.mirror_port = Some(port);
                Ok(true)
            }
        }
    }

    /// Stops `port` mirroring whichever network it mirrors. Returns that network.
    pub fn release_mirror_port(&mut self, port: PortId) -> Option<String> {
        let name = self.mirror_of(&port)?.to_string();
        if let Some(net) = self.networks.get_mut(&name) {
            net.mirror_port = None;
        }
        Some(name)
    }

    /// Stops mirroring a network.
    pub fn clear_mirror_port(&mut self, name: &str) -> Result<(), ModelError> {
        let net = self
            .networks
            .get_mut(name)
            .ok_or_else(|| ModelError::UnknownNetwork(name.to_string()))?;
        net.mirror_port = None;
        Ok(())
    }

    /// The compiler input for switch `dpid` on a full mesh: every network with members here
    /// floods to every link, with split horizon. Which tunnel leads to the mirror's switch is
    /// unknown here, so copies go into every tunnel and only the mirror's switch keeps them.
    pub fn switch_view(&self, dpid: u64, links: BTreeMap<u32, LinkKind>) -> SwitchView {
        let mut networks: BTreeMap<u32, NetworkView> = BTreeMap::new();
        for net in self.networks.values() {
            let mirror_here = net.mirror_port.filter(|m| m.dpid == dpid);
            if mirror_here.is_none() && !net.endpoints.iter().any(|ep| ep.dpid == dpid) {
                continue;
            }
            let members = net
                .endpoints
                .iter()
                .filter(|ep| ep.dpid == dpid)
                .map(|ep| ep.port)
                .collect();
            let secured = net
                .endpoints
                .iter()
                .filter(|ep| ep.dpid == dpid)
                .filter_map(|ep| Some((ep.port, self.member_port_security(net, ep)?)))
                .collect();
            let mirror = net.mirror_port.map(|_| match mirror_here {
                Some(m) => l2sm_pipeline::MirrorView {
                    port: Some(m.port),
                    toward: BTreeSet::new(),
                },
                None => l2sm_pipeline::MirrorView {
                    port: None,
                    toward: links
                        .iter()
                        .filter(|(_, k)| **k == LinkKind::Tunnel)
                        .map(|(p, _)| *p)
                        .collect(),
                },
            });
            networks.insert(
                net.vni,
                NetworkView {
                    members,
                    link_ports: links.keys().copied().collect(),
                    mode: FloodMode::Mesh,
                    vlan: net.vlan,
                    mirror,
                    secured,
                    limits: net.limits().into(),
                    dns: net.dns_address(),
                    dns6: net.dns_address6(),
                },
            );
        }
        SwitchView { links, networks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(dpid: u64, port: u32) -> PortId {
        PortId { dpid, port }
    }

    #[test]
    fn vnis_are_stable_unique_and_never_zero() {
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        assert!(m.create_network("a", None).unwrap());
        assert!(m.create_network("b", None).unwrap());
        assert!(!m.create_network("a", None).unwrap());
        assert_eq!(m.networks["a"].vni, 1);
        assert_eq!(m.networks["b"].vni, 2);
        m.delete_network("a");
        m.create_network("c", None).unwrap();
        assert_eq!(
            m.networks["c"].vni, 3,
            "a freed VNI is not reused right away"
        );
        m.next_vni = MAX_VNI;
        m.create_network("d", None).unwrap();
        m.create_network("e", None).unwrap();
        assert_eq!(m.networks["d"].vni, MAX_VNI);
        assert_eq!(m.networks["e"].vni, 1, "wraps around, skipping 0");
    }

    #[test]
    fn a_port_belongs_to_one_network() {
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        m.create_network("a", None).unwrap();
        m.create_network("b", None).unwrap();
        assert!(m.add_ports("a", &[port(1, 1)]).unwrap());
        assert!(!m.add_ports("a", &[port(1, 1)]).unwrap());
        assert_eq!(
            m.add_ports("b", &[port(1, 2), port(1, 1)]),
            Err(ModelError::PortInOtherNetwork {
                port: port(1, 1),
                network: "a".into()
            })
        );
        assert!(m.networks["b"].endpoints.is_empty(), "all or nothing");
        assert_eq!(
            m.add_ports("zz", &[port(1, 3)]),
            Err(ModelError::UnknownNetwork("zz".into()))
        );
        assert_eq!(
            m.remove_ports("b", &[port(1, 1)]),
            Err(ModelError::PortNotMember(port(1, 1)))
        );
        m.remove_ports("a", &[port(1, 1)]).unwrap();
        m.add_ports("b", &[port(1, 1)]).unwrap();
    }

    #[test]
    fn members_and_mirrors_are_pod_ports() {
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        m.create_network("a", None).unwrap();
        m.create_network("b", None).unwrap();
        m.add_ports("a", &[port(1, 1)]).unwrap();
        let before = m.clone();
        for p in [0xe000, 0xe001, 0xf000, 0xfeff, 0xffff_fefe] {
            assert_eq!(
                m.add_ports("a", &[port(1, 2), port(1, p)]),
                Err(ModelError::NotPodPort(port(1, p)))
            );
            assert_eq!(
                m.set_mirror_port("b", port(1, p)),
                Err(ModelError::NotPodPort(port(1, p)))
            );
            assert_eq!(
                m.move_port(port(1, p), "a", "b"),
                Err(ModelError::NotPodPort(port(1, p)))
            );
        }
        assert_eq!(
            m.create_network("c", Some(port(1, 0xe000))),
            Err(ModelError::NotPodPort(port(1, 0xe000)))
        );
        // A member of another network as the new network's mirror would receive its copies.
        assert_eq!(
            m.create_network("c", Some(port(1, 1))),
            Err(ModelError::PortInOtherNetwork {
                port: port(1, 1),
                network: "a".into()
            })
        );
        assert_eq!(m, before, "refused changes change nothing");
        m.add_ports("a", &[port(1, 0xdfff)]).unwrap();
    }

    #[test]
    fn switch_view_only_has_local_members() {
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        m.create_network("a", None).unwrap();
        m.add_ports("a", &[port(1, 1), port(2, 1), port(1, 5)])
            .unwrap();
        let v = m.switch_view(1, [(100, LinkKind::Tunnel)].into());
        assert_eq!(v.networks.len(), 1);
        assert_eq!(v.networks[&1].members, [1, 5].into());
        assert_eq!(v.networks[&1].link_ports, [100].into());
        assert_eq!(v.networks[&1].vlan, Some(1));
        assert!(m.switch_view(3, BTreeMap::new()).networks.is_empty());
    }

    fn owner(pod: &str, att: &str) -> PortOwner {
        PortOwner {
            pod: Some(pod.into()),
            attachment: att.into(),
            interface: "net1".into(),
            mac: None,
            ips: Vec::new(),
            port_security: None,
        }
    }

    #[test]
    fn owners_live_with_membership_and_follow_moves() {
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        m.create_network("a", None).unwrap();
        m.create_network("q", None).unwrap();
        assert_eq!(
            m.set_owner(port(1, 1), owner("ns/p1", "cni/c1/net1")),
            Err(ModelError::PortNotMember(port(1, 1))),
            "only member ports have owners"
        );
        m.add_ports("a", &[port(1, 1), port(1, 2), port(1, 3)])
            .unwrap();
        assert!(m
            .set_owner(port(1, 1), owner("ns/p1", "cni/c1/net1"))
            .unwrap());
        assert!(!m
            .set_owner(port(1, 1), owner("ns/p1", "cni/c1/net1"))
            .unwrap());
        m.set_owner(port(1, 2), owner("ns/p2", "cni/c2/net1"))
            .unwrap();
        m.set_owner(port(1, 3), owner("ns/p3", "cni/c3/net1"))
            .unwrap();
        let mut n = m.clone();
        // A move keeps the owner; leaving the network or its deletion drops it.
        assert!(n.move_port(port(1, 2), "a", "q").unwrap());
        assert!(!n.move_port(port(1, 2), "a", "q").unwrap());
        assert_eq!(
            n.move_port(port(1, 9), "a", "q"),
            Err(ModelError::PortNotMember(port(1, 9)))
        );
        assert_eq!(
            n.move_port(port(1, 1), "a", "zz"),
            Err(ModelError::UnknownNetwork("zz".into()))
        );
        assert_eq!(n.port_owners[&port(1, 2)].pod.as_deref(), Some("ns/p2"));
        n.remove_ports("a", &[port(1, 1)]).unwrap();
        assert!(!n.port_owners.contains_key(&port(1, 1)));
        n.delete_network("a");
        assert!(!n.port_owners.contains_key(&port(1, 3)));
        assert_eq!(n.port_owners.len(), 1);
        assert!(n.clear_owner(&port(1, 2)) && !n.clear_owner(&port(1, 2)));
        n.set_owner(port(1, 2), owner("ns/p2", "cni/c2/net1"))
            .unwrap();
    }
}
