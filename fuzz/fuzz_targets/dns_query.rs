//! The DNS query path: bytes as a datagram (first byte odd) or a TCP message, decoded and
//! answered from a zone with pods, an address-less pod, IPv6 and update-API entries, exactly
//! as the listener does (`dns::server::respond_in`). Every answer must be a parseable
//! response echoing the query's id; a query that parses must get an answer within the size
//! limit of its transport.
#![no_main]

use l2sm_controller::dns::server::respond_in;
use l2sm_controller::dns::wire;
use l2sm_controller::dns::Zone;
use l2sm_controller::model::{Model, PortOwner};
use l2sm_pipeline::ids::PortId;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let mut m = Model::default();
        m.create_network("blue", None).expect("network");
        m.create_network("red", None).expect("network");
        let port = |dpid, port| PortId { dpid, port };
        m.add_ports("blue", &[port(1, 1), port(1, 2), port(2, 1)])
            .expect("ports");
        m.add_ports("red", &[port(2, 2)]).expect("ports");
        for (p, pod, ips) in [
            (port(1, 1), "ns1/a", &["10.0.0.1", "fd00::1"][..]),
            (port(1, 2), "ns2/a", &["10.0.0.2"][..]),
            (port(2, 1), "ns1/b", &["10.0.0.3"][..]),
            (port(2, 2), "ns1/c", &[][..]),
        ] {
            m.set_owner(
                p,
                PortOwner {
                    pod: Some(pod.into()),
                    attachment: format!("cni/{pod}/net1"),
                    interface: "net1".into(),
                    mac: None,
                    ips: ips.iter().map(|i| i.parse().expect("ip")).collect(),
                    port_security: None,
                },
            )
            .expect("owner");
        }
        let mut extra: BTreeMap<wire::Name, BTreeSet<std::net::IpAddr>> = BTreeMap::new();
        extra
            .entry(wire::Name::parse("p.shared.inter.l2sm").expect("name"))
            .or_default()
            .insert("10.30.0.2".parse().expect("ip"));
        Zone::with_entries(&m, 1, &extra)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, msg)) = data.split_first() else {
        return;
    };
    let tcp = mode & 1 == 0;
    let parsed = wire::parse_query(msg);
    let Some(out) = respond_in(zone(), msg, tcp) else {
        // Silence only for less than a header or a response.
        assert!(msg.len() < 12 || msg[2] & 0x80 != 0, "silent on a query");
        return;
    };
    let r = wire::parse_response(&out).expect("our answer parses");
    assert_eq!(r.id, u16::from_be_bytes([msg[0], msg[1]]), "id echoed");
    match parsed {
        Ok(q) => {
            let limit = if tcp {
                usize::from(u16::MAX)
            } else {
                q.edns.map_or(wire::PLAIN_UDP_SIZE, |e| {
                    usize::from(e.udp_size.clamp(512, wire::EDNS_UDP_SIZE))
                })
            };
            assert!(out.len() <= limit, "{} > {limit}", out.len());
        }
        Err(_) => assert_eq!(r.rcode, u16::from(wire::RCODE_FORMERR)),
    }
});
