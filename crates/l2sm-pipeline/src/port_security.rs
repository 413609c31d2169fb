//! Port security (like OVN's `port_security`): a pod port with it admits only frames sent from
//! its assigned MAC and, when its addresses are known, from its assigned addresses; everything
//! else is dropped by flows of their own cookie ([`crate::cookie::PORT_SECURITY`] | port), so
//! the switch's flow statistics count each port's drops.
//!
//! All of it happens in table 0 (CLASSIFY), in place of the plain member flow
//! `in_port=P -> [mirror copy,] tunnel_id:=VNI, goto 1`, which a secured port does not get:
//!
//! ```text
//!  prio 100  in_port=P                                            -> drop (counted)
//!  prio 101  in_port=P, eth_src=M                                 -> admit (other ethertypes)
//!  prio 102  in_port=P, eth_src=M, eth_type=ARP|IPv4|IPv6          -> drop (counted)
//!  prio 103  ... ARP,  arp_sha=M, arp_spa=A          (A in the IPv4 set)   -> admit
//!            ... IPv4, ip_src=A                      (A in the IPv4 set)   -> admit
//!            ... IPv6, ipv6_src=S                    (S in the IPv6 set)   -> admit
//!  prio 104  ... IPv6, ICMPv6 NS or NA                                    -> drop (counted)
//!            ... IPv6, ipv6_src=::, ICMPv6 MLD report (131, 143)          -> admit
//!  prio 105  ... NS,  ipv6_src=S, nd_sll=M or absent                      -> admit
//!            ... NS,  ipv6_src=::, nd_sll absent, nd_target=S (DAD)       -> admit
//!            ... NA,  ipv6_src=S, nd_target=T, nd_tll=M or absent (T, S in the set) -> admit
//! ```
//!
//! "Admit" is the member flow's own instructions. The IPv6 set is the port's IPv6 addresses
//! plus the link-local address the kernel derives from the MAC (modified EUI-64, Linux's
//! default `addr_gen_mode`), so a port keeps working link-local IPv6 and ND, but cannot use a
//! neighbour's link-local address. A port whose binding has no address at all is checked on
//! its MAC only (and ARP's sender MAC); one without a binding (MAC not known yet) only gets
//! the drop flow: it forwards nothing until it is known.
//!
//! OVS parses one 802.1Q tag, so a singly tagged frame is checked like an untagged one; a
//! frame with two tags is an "other ethertype" frame (admitted with the right MAC).

use crate::{cookie, table, FlowEntry};
use l2sm_ofp::{Instruction, Match, OxmField};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Ethertype of ARP.
pub const ETH_TYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv4.
pub const ETH_TYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETH_TYPE_IPV6: u16 = 0x86dd;
/// IP protocol number of ICMPv6.
const IPPROTO_ICMPV6: u8 = 58;
/// ICMPv6 neighbour solicitation.
pub const ICMPV6_NS: u8 = 135;
/// ICMPv6 neighbour advertisement.
pub const ICMPV6_NA: u8 = 136;
/// ICMPv6 MLDv1 report.
const ICMPV6_MLD1_REPORT: u8 = 131;
/// ICMPv6 MLDv2 report.
const ICMPV6_MLD2_REPORT: u8 = 143;
/// What OVS reports for an absent ND link-layer address option.
const NO_LLADDR: [u8; 6] = [0; 6];

/// Priorities of the table-0 flows of a secured port (see the module documentation).
pub mod priority {
    /// Everything else from the port: dropped. The plain member flow's priority, so securing a
    /// port replaces that flow in place.
    pub const DROP: u16 = 100;
    /// Frames from the port's MAC (ethertypes without an address check).
    pub const ADMIT_MAC: u16 = 101;
    /// ARP, IPv4 and IPv6 from the port's MAC that no address flow admits: dropped.
    pub const DROP_L3: u16 = 102;
    /// ARP, IPv4 and IPv6 from one of the port's addresses.
    pub const ADMIT_L3: u16 = 103;
    /// Neighbour discovery that no ND flow admits: dropped; MLD reports from `::`.
    pub const DROP_ND: u16 = 104;
    /// Neighbour solicitations and advertisements about the port's own addresses.
    pub const ADMIT_ND: u16 = 105;
}

/// What a port with port security may send: its MAC and, when known, its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortBinding {
    /// The port's MAC: every frame it sends must carry it as `eth_src`.
    pub mac: [u8; 6],
    /// Its IPv4 addresses (ARP sender and IPv4 source).
    pub ipv4: BTreeSet<Ipv4Addr>,
    /// Its IPv6 addresses (IPv6 source, ND target); the link-local address derived from
    /// `mac` is always allowed besides.
    pub ipv6: BTreeSet<Ipv6Addr>,
}

impl PortBinding {
    /// A binding of the MAC alone (addresses unknown: only the MAC is checked).
    pub fn mac_only(mac: [u8; 6]) -> PortBinding {
        PortBinding {
            mac,
            ipv4: BTreeSet::new(),
            ipv6: BTreeSet::new(),
        }
    }

    /// Whether addresses are checked: the binding has at least one.
    pub fn has_addresses(&self) -> bool {
        !self.ipv4.is_empty() || !self.ipv6.is_empty()
    }

    /// The IPv4 addresses a source may be: the unicast ones of the binding.
    pub fn allowed_ipv4(&self) -> BTreeSet<Ipv4Addr> {
        self.ipv4
            .iter()
            .copied()
            .filter(|a| !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast())
            .collect()
    }

    /// The IPv6 addresses a source may be: the unicast ones of the binding and the
    /// link-local address derived from the MAC.
    pub fn allowed_ipv6(&self) -> BTreeSet<Ipv6Addr> {
        self.ipv6
            .iter()
            .copied()
            .filter(|a| !a.is_unspecified() && !a.is_multicast())
            .chain([link_local(self.mac)])
            .collect()
    }
}

/// The link-local address Linux gives an interface with this MAC (`fe80::/64` and the
/// modified EUI-64 interface id).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

/// The cookie of the drop flows of `port`.
pub fn drop_cookie(port: u32) -> u64 {
    cookie::PORT_SECURITY | u64::from(port)
}

/// The member port a drop flow's cookie counts for, if it is one.
pub fn drop_cookie_port(c: u64) -> Option<u32> {
    (c & cookie::OWNER_MASK == cookie::PORT_SECURITY).then_some((c & 0xffff_ffff) as u32)
}

/// The table-0 flows of member `port` with port security: `admit` is what the plain member
/// flow would do (its instructions, with `admit_cookie`); `binding` what the port may send
/// (`None`: not known yet, nothing is admitted).
pub(crate) fn classify_flows(
    port: u32,
    admit_cookie: u64,
    binding: Option<&PortBinding>,
    admit: &[Instruction],
) -> Vec<FlowEntry> {
    let drop_c = drop_cookie(port);
    let base = || Match::any().with(OxmField::InPort(port));
    let entry = |priority, cookie, r#match, instructions: Vec<Instruction>| FlowEntry {
        table: table::CLASSIFY,
        priority,
        cookie,
        r#match,
        instructions,
    };
    let mut flows = vec![entry(priority::DROP, drop_c, base(), vec![])];
    let Some(b) = binding else {
        return flows;
    };
    let from_mac = || {
        base().with(OxmField::EthSrc {
            value: b.mac,
            mask: None,
        })
    };
    let admit_flow = |priority, m| entry(priority, admit_cookie, m, admit.to_vec());
    let drop_flow = |priority, m| entry(priority, drop_c, m, vec![]);
    flows.push(admit_flow(priority::ADMIT_MAC, from_mac()));
    let arp = || {
        from_mac()
            .with(OxmField::EthType(ETH_TYPE_ARP))
            .with(OxmField::ArpSha {
                value: b.mac,
                mask: None,
            })
    };
    flows.push(drop_flow(
        priority::DROP_L3,
        from_mac().with(OxmField::EthType(ETH_TYPE_ARP)),
    ));
    if !b.has_addresses() {
        // MAC only: ARP must at least name the port's MAC as its sender.
        flows.push(admit_flow(priority::ADMIT_L3, arp()));
        return flows;
    }
    for ethertype in [ETH_TYPE_IPV4, ETH_TYPE_IPV6] {
        flows.push(drop_flow(
            priority::DROP_L3,
            from_mac().with(OxmField::EthType(ethertype)),
        ));
    }
    for a in b.allowed_ipv4() {
        flows.push(admit_flow(
            priority::ADMIT_L3,
            arp().with(OxmField::ArpSpa {
                value: a,
                mask: None,
            }),
        ));
        flows.push(admit_flow(
            priority::ADMIT_L3,
            from_mac()
                .with(OxmField::EthType(ETH_TYPE_IPV4))
                .with(OxmField::Ipv4Src {
                    value: a,
                    mask: None,
                }),
        ));
    }
    let v6 = b.allowed_ipv6();
    let ip6 = || from_mac().with(OxmField::EthType(ETH_TYPE_IPV6));
    let src = |m: Match, s: Ipv6Addr| {
        m.with(OxmField::Ipv6Src {
            value: s,
            mask: None,
        })
    };
    let icmp6 = |m: Match, t: u8| {
        m.with(OxmField::IpProto(IPPROTO_ICMPV6))
            .with(OxmField::Icmpv6Type(t))
    };
    for &s in &v6 {
        flows.push(admit_flow(priority::ADMIT_L3, src(ip6(), s)));
    }
    for t in [ICMPV6_NS, ICMPV6_NA] {
        flows.push(drop_flow(priority::DROP_ND, icmp6(ip6(), t)));
    }
    for t in [ICMPV6_MLD1_REPORT, ICMPV6_MLD2_REPORT] {
        flows.push(admit_flow(
            priority::DROP_ND,
            icmp6(src(ip6(), Ipv6Addr::UNSPECIFIED), t),
        ));
    }
    for &s in &v6 {
        for lladdr in [b.mac, NO_LLADDR] {
            flows.push(admit_flow(
                priority::ADMIT_ND,
                icmp6(src(ip6(), s), ICMPV6_NS).with(OxmField::Ipv6NdSll(lladdr)),
            ));
        }
        // Duplicate address detection: from ::, about one of its own addresses.
        flows.push(admit_flow(
            priority::ADMIT_ND,
            icmp6(src(ip6(), Ipv6Addr::UNSPECIFIED), ICMPV6_NS)
                .with(OxmField::Ipv6NdTarget(s))
                .with(OxmField::Ipv6NdSll(NO_LLADDR)),
        ));
        for &target in &v6 {
            for lladdr in [b.mac, NO_LLADDR] {
                flows.push(admit_flow(
                    priority::ADMIT_ND,
                    icmp6(src(ip6(), s), ICMPV6_NA)
                        .with(OxmField::Ipv6NdTarget(target))
                        .with(OxmField::Ipv6NdTll(lladdr)),
                ));
            }
        }
    }
    flows
}

#[cfg(test)]
mod tests;
