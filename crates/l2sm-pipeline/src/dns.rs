//! DNS on the network itself: every network with a DNS address (a reserved address of its
//! IPv4 CIDR, see the controller's IPAM) has, on every switch that carries it, flows that hand
//! its local pods' ARP requests for that address and their UDP queries to port 53 of it to the
//! controller, which answers with PACKET_OUT to the port the frame came in on.
//!
//! ```text
//!  table 1 LEARN  prio 30  tunnel_id=VNI, reg0=0/1, vlan none, ARP request, arp_tpa=DNS
//!                                                         -> meter:DNS_METER, controller
//!                 prio 30  tunnel_id=VNI, reg0=0/1, vlan none, IPv4 UDP, ip_dst=DNS, udp_dst=53
//!                                                         -> meter:DNS_METER, controller
//!                 prio 29  tunnel_id=VNI, reg0=0/1, ARP, arp_spa=DNS   -> drop
//!  and for the IPv6 DNS address DNS6 (networks with an IPv6 CIDR):
//!                 prio 30  ..., ICMPv6 NS, nd_target=DNS6                -> meter, controller
//!                 prio 30  ..., IPv6 UDP, ipv6_dst=DNS6, udp_dst=53      -> meter, controller
//!                 prio 29  ..., ICMPv6 NA, nd_target=DNS6                -> drop
//! ```
//!
//! - The flows sit in table 1, after classification: a frame only gets there with the VNI of
//!   its port's network, after port security admitted it, so a punted frame is always one the
//!   port could have sent into its own network anyway. The cookie (`DNS | vni`) names the
//!   network; the controller checks the in_port is a member of it on that switch too.
//! - `reg0=0`: only frames from local pod ports (a link's frames were punted, if at all, at
//!   the switch where they entered).
//! - A punted frame goes nowhere else: no flooding of DNS ARP requests, no query reaches
//!   another pod.
//! - A pod claiming the DNS address (ARP with it as sender) is dropped: it cannot teach the
//!   network's ARP caches another owner of that address.
//! - The punts go through their own meter ([`DNS_METER`]), not the LLDP one: a pod flooding
//!   queries can exhaust only the DNS budget of its switch, never the link probes.

use crate::{reg, table, tunnel_id, FlowEntry};
use l2sm_ofp::{Action, Instruction, Match, OxmField};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Cookie owner of the DNS punt flows: `DNS | vni`.
pub const COOKIE: u64 = 0x4c32_0004_0000_0000;
/// Meter of every DNS punt flow of a switch (the trunk port range, which no pod port can
/// have; [`crate::limits::CONTROLLER_METER`] + 1).
pub const DNS_METER: u32 = crate::ids::FIRST_TRUNK_PORT + 1;
/// Rate of the DNS meter, packets/s per switch (queries and ARP requests of all its pods).
pub const DNS_PPS: u32 = 1000;
/// Burst of the DNS meter, packets.
pub const DNS_BURST: u32 = 1000;
/// Priority of the punt flows in table 1 (above the multicast-source drop, 20).
pub const PUNT_PRIORITY: u16 = 30;
/// Priority of the drop of ARP claiming the DNS address.
pub const CLAIM_DROP_PRIORITY: u16 = 29;
/// UDP port of DNS.
pub const DNS_PORT: u16 = 53;
/// ARP request opcode.
pub const ARP_REQUEST: u16 = 1;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// The MAC the DNS address of network `vni` answers ARP with: locally administered unicast,
/// `02:4c:32` then the VNI's 24 bits.
pub fn mac(vni: u32) -> [u8; 6] {
    let v = vni.to_be_bytes();
    [0x02, 0x4c, 0x32, v[1], v[2], v[3]]
}

/// The cookie of network `vni`'s punt flows.
pub fn cookie(vni: u32) -> u64 {
    COOKIE | u64::from(vni)
}

/// The network a punt flow's cookie names, if it is one.
pub fn cookie_vni(c: u64) -> Option<u32> {
    (c & crate::cookie::OWNER_MASK == COOKIE)
        .then_some((c & 0xffff_ffff) as u32)
        .filter(|v| *v <= crate::MAX_VNI)
}

/// The DNS meter.
pub fn meter() -> crate::limits::MeterEntry {
    crate::limits::MeterEntry {
        meter_id: DNS_METER,
        rate: DNS_PPS,
        burst: DNS_BURST,
    }
}

fn local(vni: u32) -> Match {
    Match::any().with(tunnel_id(vni)).with(reg(0, 0, Some(1)))
}

fn punt() -> Vec<Instruction> {
    vec![
        Instruction::Meter(DNS_METER),
        Instruction::ApplyActions(vec![Action::to_controller()]),
    ]
}

/// The table-1 flows of network `vni` whose IPv6 DNS address is `addr`.
pub fn flows6(vni: u32, addr: Ipv6Addr) -> Vec<FlowEntry> {
    let untagged = OxmField::VlanVid {
        value: 0,
        mask: None,
    };
    let ip6 = || {
        local(vni)
            .with(untagged.clone())
            .with(OxmField::EthType(crate::port_security::ETH_TYPE_IPV6))
    };
    let nd = |t: u8| {
        ip6()
            .with(OxmField::IpProto(IPPROTO_ICMPV6))
            .with(OxmField::Icmpv6Type(t))
            .with(OxmField::Ipv6NdTarget(addr))
    };
    let entry = |priority, r#match, instructions| FlowEntry {
        table: table::LEARN,
        priority,
        cookie: cookie(vni),
        r#match,
        instructions,
    };
    vec![
        entry(PUNT_PRIORITY, nd(crate::port_security::ICMPV6_NS), punt()),
        entry(
            PUNT_PRIORITY,
            ip6()
                .with(OxmField::IpProto(IPPROTO_UDP))
                .with(OxmField::Ipv6Dst {
                    value: addr,
                    mask: None,
                })
                .with(OxmField::UdpDst(DNS_PORT)),
            punt(),
        ),
        entry(
            CLAIM_DROP_PRIORITY,
            nd(crate::port_security::ICMPV6_NA),
            vec![],
        ),
    ]
}

/// The table-1 flows of network `vni` whose DNS address is `addr`.
pub fn flows(vni: u32, addr: Ipv4Addr) -> Vec<FlowEntry> {
    let local = || local(vni);
    let untagged = OxmField::VlanVid {
        value: 0,
        mask: None,
    };
    let punt = punt();
    let entry = |priority, r#match, instructions| FlowEntry {
        table: table::LEARN,
        priority,
        cookie: cookie(vni),
        r#match,
        instructions,
    };
    vec![
        entry(
            PUNT_PRIORITY,
            local()
                .with(untagged.clone())
                .with(OxmField::EthType(crate::port_security::ETH_TYPE_ARP))
                .with(OxmField::ArpOp(ARP_REQUEST))
                .with(OxmField::ArpTpa {
                    value: addr,
                    mask: None,
                }),
            punt.clone(),
        ),
        entry(
            PUNT_PRIORITY,
            local()
                .with(untagged)
                .with(OxmField::EthType(crate::port_security::ETH_TYPE_IPV4))
                .with(OxmField::IpProto(IPPROTO_UDP))
                .with(OxmField::Ipv4Dst {
                    value: addr,
                    mask: None,
                })
                .with(OxmField::UdpDst(DNS_PORT)),
            punt,
        ),
        entry(
            CLAIM_DROP_PRIORITY,
            local()
                .with(OxmField::EthType(crate::port_security::ETH_TYPE_ARP))
                .with(OxmField::ArpSpa {
                    value: addr,
                    mask: None,
                }),
            vec![],
        ),
    ]
}
