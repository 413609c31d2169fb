use super::*;
use crate::dns::wire::{self, *};
use crate::dns::Zone;
use crate::model::{Model, PortOwner};
use l2sm_pipeline::ids::PortId;
use proptest::prelude::*;

const POD_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

const DNS4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const POD6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const DNS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0xffff, 0xffff, 0xffff, 0xffff);

fn ep() -> Endpoint {
    Endpoint {
        addr: Some(DNS4),
        addr6: Some(DNS6),
        mac: l2sm_pipeline::dns::mac(5),
    }
}

fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

/// A UDP/IPv4 frame to the DNS endpoint carrying `payload`, with correct checksums.
fn query_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = udp_frame(
        ep().mac,
        DNS4,
        53,
        V4 {
            addr: POD_IP,
            mac: POD_MAC,
        },
        payload,
    );
    // udp_frame writes source port 53 and the endpoint as source: make it a query from the
    // pod's port 40000 to port 53 (fix both checksums).
    f.truncate(ETH_HEADER + 28 + payload.len());
    f[ETH_HEADER + 20..ETH_HEADER + 22].copy_from_slice(&40000u16.to_be_bytes());
    f[ETH_HEADER + 22..ETH_HEADER + 24].copy_from_slice(&53u16.to_be_bytes());
    fix_udp_checksum(&mut f);
    f
}

fn fix_udp_checksum(f: &mut [u8]) {
    let udp = ETH_HEADER + 20;
    f[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
    let c = !udp_sum(POD_IP, DNS4, &f[udp..]);
    f[udp + 6..udp + 8].copy_from_slice(&c.to_be_bytes());
}

fn fix_ip_checksum(f: &mut [u8]) {
    let ip = ETH_HEADER;
    f[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
    let c = !fold(sum16(0, &f[ip..ip + 20]));
    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
}

fn echo(msg: &[u8]) -> Option<Vec<u8>> {
    Some(msg.to_vec())
}

#[test]
fn arp_for_the_dns_address_is_answered_from_the_dns_mac() {
    let reply = answer(&arp_request(POD_MAC, POD_IP, DNS4), ep(), echo).unwrap();
    let Reply::Arp(f) = reply else {
        panic!("not an ARP reply")
    };
    assert_eq!(f.len(), MIN_FRAME);
    assert_eq!(&f[0..6], &POD_MAC, "to the asker");
    assert_eq!(&f[6..12], &ep().mac);
    assert_eq!(&f[12..14], &[0x08, 0x06]);
    assert_eq!(u16::from_be_bytes([f[20], f[21]]), 2, "a reply");
    assert_eq!(&f[22..28], &ep().mac, "sender: the DNS MAC");
    assert_eq!(&f[28..32], &DNS4.octets(), "sender: the DNS address");
    assert_eq!(&f[32..38], &POD_MAC);
    assert_eq!(&f[38..42], &POD_IP.octets());
    // The MAC is locally administered unicast and names the VNI.
    assert_eq!(
        l2sm_pipeline::dns::mac(0x12_3456),
        [2, 0x4c, 0x32, 0x12, 0x34, 0x56]
    );
    // Duplicate address detection probes are answered (the address is taken).
    assert!(answer(
        &arp_request(POD_MAC, Ipv4Addr::UNSPECIFIED, DNS4),
        ep(),
        echo
    )
    .is_ok());
}

#[test]
fn arp_that_is_not_a_request_for_the_dns_address_is_dropped() {
    let other = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(
        answer(&arp_request(POD_MAC, POD_IP, other), ep(), echo),
        Err(DropReason::WrongTarget)
    );
    // Claiming the DNS address, or another MAC than the frame's source.
    assert_eq!(
        answer(&arp_request(POD_MAC, DNS4, DNS4), ep(), echo),
        Err(DropReason::BadSource)
    );
    let mut f = arp_request(POD_MAC, POD_IP, DNS4);
    f[22] ^= 0x10;
    assert_eq!(answer(&f, ep(), echo), Err(DropReason::BadSource));
    // A reply, not a request.
    let mut f = arp_request(POD_MAC, POD_IP, DNS4);
    f[21] = 2;
    assert_eq!(answer(&f, ep(), echo), Err(DropReason::NotQuery));
    // Multicast source MAC.
    let mut f = arp_request([1, 0, 0x5e, 0, 0, 1], POD_IP, DNS4);
    f[22..28].copy_from_slice(&[1, 0, 0x5e, 0, 0, 1]);
    assert_eq!(answer(&f, ep(), echo), Err(DropReason::BadSource));
}

#[test]
fn a_query_is_answered_with_valid_headers_back_to_its_source() {
    let payload = b"\x12\x34hello dns";
    let frame = query_frame(payload);
    let Reply::Dns(f) = answer(&frame, ep(), echo).unwrap() else {
        panic!("not a DNS answer")
    };
    assert_eq!(&f[0..6], &POD_MAC);
    assert_eq!(&f[6..12], &ep().mac);
    let ip = &f[ETH_HEADER..ETH_HEADER + 20];
    assert_eq!(fold(sum16(0, ip)), 0xffff, "IPv4 header checksum");
    assert_eq!(&ip[12..16], &DNS4.octets());
    assert_eq!(&ip[16..20], &POD_IP.octets());
    let udp = &f[ETH_HEADER + 20..ETH_HEADER + 28 + payload.len()];
    assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 53);
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 40000);
    assert_eq!(udp_sum(DNS4, POD_IP, udp), 0xffff, "UDP checksum");
    assert_eq!(&udp[8..], payload);
    // Our own answer, punted back (it is not a query to port 53 of the endpoint).
    assert!(answer(&f, ep(), echo).is_err());
    // Checksum 0 (none) is accepted; padding after the packet too.
    let mut f = frame.clone();
    f[ETH_HEADER + 26..ETH_HEADER + 28].copy_from_slice(&[0, 0]);
    f.extend_from_slice(&[0; 20]);
    assert!(answer(&f, ep(), echo).is_ok());
}

#[test]
fn broken_queries_are_dropped_with_their_reason() {
    let good = query_frame(b"\x00\x01query");
    let case = |f: &dyn Fn(&mut Vec<u8>), want: DropReason| {
        let mut frame = good.clone();
        f(&mut frame);
        assert_eq!(answer(&frame, ep(), echo), Err(want), "{want:?}");
    };
    case(&|f| f.truncate(ETH_HEADER + 10), DropReason::Truncated);
    case(&|f| f.truncate(f.len() - 1), DropReason::Truncated);
    case(&|f| f[ETH_HEADER + 11] ^= 1, DropReason::BadIp);
    case(&|f| f[ETH_HEADER] = 0x65, DropReason::BadIp);
    case(
        &|f| {
            f[ETH_HEADER + 6] = 0x20; // more fragments
            fix_ip_checksum(f);
        },
        DropReason::Fragment,
    );
    case(
        &|f| {
            f[ETH_HEADER + 7] = 0x01; // offset
            fix_ip_checksum(f);
        },
        DropReason::Fragment,
    );
    case(
        &|f| {
            f[ETH_HEADER + 9] = 6; // TCP
            fix_ip_checksum(f);
        },
        DropReason::NotQuery,
    );
    case(
        &|f| {
            f[ETH_HEADER + 19] = 7; // another destination
            fix_ip_checksum(f);
        },
        DropReason::WrongTarget,
    );
    case(
        &|f| {
            f[ETH_HEADER + 12..ETH_HEADER + 16].copy_from_slice(&[255, 255, 255, 255]);
            fix_ip_checksum(f);
        },
        DropReason::BadSource,
    );
    case(
        &|f| {
            let last = f.len() - 1;
            f[last] ^= 0xff
        },
        DropReason::BadUdp,
    );
    case(
        &|f| {
            f[ETH_HEADER + 22..ETH_HEADER + 24].copy_from_slice(&54u16.to_be_bytes());
            fix_udp_checksum(f);
        },
        DropReason::BadUdp,
    );
    case(
        &|f| f[ETH_HEADER + 24..ETH_HEADER + 26].copy_from_slice(&200u16.to_be_bytes()),
        DropReason::BadUdp,
    );
    case(&|f| f[0] = 0xff, DropReason::WrongTarget);
    case(&|f| f[6] = 0x01, DropReason::BadSource);
    case(
        &|f| {
            // An 802.1Q tag in front of the IPv4 header.
            f.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        },
        DropReason::Vlan,
    );
    case(
        &|f| f[12..14].copy_from_slice(&[0x88, 0xcc]),
        DropReason::NotQuery,
    );
    // The DNS layer says nothing (a response): silence, counted.
    assert_eq!(answer(&good, ep(), |_| None), Err(DropReason::Silent));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    // Random frames, and mutations of a good query and a good ARP request: never a panic,
    // and whatever is answered is a well-formed frame to a unicast MAC.
    #[test]
    fn random_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = answer(&frame, ep(), echo);
    }

    #[test]
    fn mutated_frames_never_panic(
        arp in any::<bool>(),
        cut in 0usize..120,
        flips in proptest::collection::vec((0usize..120, any::<u8>()), 0..6),
    ) {
        let mut f = if arp {
            arp_request(POD_MAC, POD_IP, DNS4)
        } else {
            let q = build_query(9, &wire::Name::parse("a.blue.l2sm").unwrap(), TYPE_A, true);
            query_frame(&q)
        };
        for (at, x) in flips {
            if let Some(b) = f.get_mut(at) {
                *b ^= x;
            }
        }
        f.truncate(f.len().min(cut.max(1) + 14));
        if let Ok(Reply::Dns(out) | Reply::Arp(out)) = answer(&f, ep(), echo) {
            prop_assert!(out.len() >= MIN_FRAME);
            prop_assert_eq!(out[0] & 1, 0);
            prop_assert_eq!(&out[6..12], &ep().mac[..]);
        }
    }
}

fn port(dpid: u64, port: u32) -> PortId {
    PortId { dpid, port }
}

fn owner(pod: &str, ips: &[&str]) -> PortOwner {
    PortOwner {
        pod: Some(pod.into()),
        attachment: format!("cni/{pod}/net1"),
        interface: "net1".into(),
        mac: None,
        ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        port_security: None,
    }
}

/// blue: a (10.0.0.1, fd00::1), b (10.0.0.2); red: c (10.1.0.1), and a pod called `blue` on red.
fn zone() -> Zone {
    let mut m = Model::default();
    m.create_network("blue", None).unwrap();
    m.create_network("red", None).unwrap();
    m.add_ports("blue", &[port(1, 1), port(1, 2)]).unwrap();
    m.add_ports("red", &[port(1, 3), port(1, 4)]).unwrap();
    m.set_owner(port(1, 1), owner("ns/a", &["10.0.0.1", "fd00::1"]))
        .unwrap();
    m.set_owner(port(1, 2), owner("ns/b", &["10.0.0.2"]))
        .unwrap();
    m.set_owner(port(1, 3), owner("ns/c", &["10.1.0.1"]))
        .unwrap();
    m.set_owner(port(1, 4), owner("ns/blue", &["10.1.0.2"]))
        .unwrap();
    let extra = [
        (
            wire::Name::parse("x.blue.inter.l2sm").unwrap(),
            ["10.9.0.1".parse().unwrap()].into(),
        ),
        (
            wire::Name::parse("y.red.inter.l2sm").unwrap(),
            ["10.9.0.2".parse().unwrap()].into(),
        ),
    ]
    .into();
    Zone::with_entries(&m, 1, &extra)
}

fn ask_from(network: &str, name: &str, qtype: u16) -> Response {
    let msg = build_query(3, &wire::Name::parse(name).unwrap(), qtype, true);
    let out = respond(&zone(), network, &msg).unwrap();
    parse_response(&out).unwrap()
}

fn data(r: &Response) -> Vec<String> {
    r.answers
        .iter()
        .map(|a| match &a.data {
            RData::Addr(ip) => ip.to_string(),
            RData::Ptr(n) => n.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_network_sees_only_its_own_names() {
    let r = ask_from("blue", "b.blue.l2sm", TYPE_A);
    assert_eq!((r.rcode, data(&r)), (0, vec!["10.0.0.2".to_string()]));
    assert_eq!(
        data(&ask_from("blue", "a.blue.l2sm", TYPE_AAAA)),
        ["fd00::1"]
    );
    assert_eq!(
        data(&ask_from("blue", "x.blue.inter.l2sm", TYPE_A)),
        ["10.9.0.1"]
    );
    // PTR of its own addresses, both families.
    assert_eq!(
        data(&ask_from("blue", "1.0.0.10.in-addr.arpa", TYPE_PTR)),
        ["a.blue.l2sm."]
    );
    let v6 = wire::Name::reverse("fd00::1".parse().unwrap()).to_string();
    assert_eq!(data(&ask_from("blue", &v6, TYPE_PTR)), ["a.blue.l2sm."]);
    // The network itself and the apex exist (NODATA).
    for name in ["blue.l2sm", "l2sm"] {
        let r = ask_from("blue", name, TYPE_A);
        assert_eq!((r.rcode, r.answers.len()), (0, 0), "{name}");
    }
    // Everything of red is NXDOMAIN from blue: its names, its network, its addresses'
    // reverse names (like an address nobody has), its update-API names, and a red pod
    // called like the asking network.
    for (name, t) in [
        ("c.red.l2sm", TYPE_A),
        ("red.l2sm", TYPE_A),
        ("blue.red.l2sm", TYPE_A),
        ("y.red.inter.l2sm", TYPE_A),
        ("1.0.1.10.in-addr.arpa", TYPE_PTR),
        ("9.9.9.10.in-addr.arpa", TYPE_PTR),
        ("2.0.0.10.in-addr.arpa.blue.l2sm", TYPE_A),
        ("nothere.blue.l2sm", TYPE_A),
    ] {
        let r = ask_from("blue", name, t);
        assert_eq!(r.rcode, 3, "{name} from blue");
        assert!(r.answers.is_empty(), "{name}");
    }
    // And the other way round.
    assert_eq!(ask_from("red", "b.blue.l2sm", TYPE_A).rcode, 3);
    assert_eq!(ask_from("red", "2.0.0.10.in-addr.arpa", TYPE_PTR).rcode, 3);
    assert_eq!(
        data(&ask_from("red", "blue.red.l2sm", TYPE_A)),
        ["10.1.0.2"]
    );
    // Outside the zone: refused, as on the listener.
    assert_eq!(ask_from("blue", "example.com", TYPE_A).rcode, 5);
    // Garbage: FORMERR with a header, silence without.
    assert_eq!(respond(&zone(), "blue", &[0; 5]), None);
    let r = respond(&zone(), "blue", &[0, 7, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(r[3] & 0x0f, 1);
}

#[test]
fn ports_are_bounded_separately() {
    let mut b = PortBuckets::new(10, 3);
    let t = Instant::now();
    assert!((0..3).all(|_| b.allow(1, t)));
    assert!(!b.allow(1, t), "over the burst");
    assert!(b.allow(2, t), "another port has its own bucket");
    assert!(
        b.allow(1, t + std::time::Duration::from_millis(150)),
        "refilled"
    );
    b.retain(|p| p == 2);
    assert!(b.allow(1, t), "forgotten, full again");
}

/// A neighbour solicitation from the pod (`src`, hop limit `hop`) for `target`.
fn ns_frame(src: Ipv6Addr, target: Ipv6Addr, hop: u8) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&t);
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&POD_MAC);
    let c = !sum6(src, group, 58, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = ipv6_frame(
        [0x33, 0x33, 0xff, t[13], t[14], t[15]],
        group,
        POD_MAC,
        src,
        58,
        hop,
        &icmp,
    );
    f.truncate(ETH_HEADER + IPV6_HEADER + icmp.len());
    f
}

/// A UDP/IPv6 query from the pod's port 40000 to the DNS address.
fn query6_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = udp6_frame(ep().mac, DNS6, 53, POD_MAC, POD6, payload);
    f.truncate(ETH_HEADER + IPV6_HEADER + 8 + payload.len());
    let udp = ETH_HEADER + IPV6_HEADER;
    f[udp..udp + 2].copy_from_slice(&40000u16.to_be_bytes());
    f[udp + 6..udp + 8].copy_from_slice(&[0, 0]);
    let c = !sum6(POD6, DNS6, 17, &f[udp..]);
    f[udp + 6..udp + 8].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn neighbour_solicitations_for_the_ipv6_address_get_an_advertisement() {
    let Reply::Nd(f) = answer(&ns_frame(POD6, DNS6, 255), ep(), echo).unwrap() else {
        panic!("not a neighbour advertisement")
    };
    assert_eq!(&f[0..6], &POD_MAC);
    assert_eq!(&f[6..12], &ep().mac);
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    let ip = &f[ETH_HEADER..ETH_HEADER + IPV6_HEADER];
    assert_eq!((ip[6], ip[7]), (58, 255), "ICMPv6, hop limit 255");
    assert_eq!(&ip[8..24], &DNS6.octets());
    assert_eq!(&ip[24..40], &POD6.octets());
    let icmp = &f[ETH_HEADER + IPV6_HEADER..ETH_HEADER + IPV6_HEADER + 32];
    assert_eq!(sum6(DNS6, POD6, 58, icmp), 0xffff, "ICMPv6 checksum");
    assert_eq!(
        (icmp[0], icmp[1], icmp[4]),
        (136, 0, 0x60),
        "solicited, override"
    );
    assert_eq!(&icmp[8..24], &DNS6.octets());
    assert_eq!(&icmp[24..26], &[2, 1]);
    assert_eq!(&icmp[26..32], &ep().mac);

    let other = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9);
    for (frame, want) in [
        (ns_frame(POD6, other, 255), DropReason::WrongTarget),
        (ns_frame(POD6, DNS6, 64), DropReason::BadIp),
        (
            ns_frame(Ipv6Addr::UNSPECIFIED, DNS6, 255),
            DropReason::BadSource,
        ),
    ] {
        assert_eq!(answer(&frame, ep(), echo), Err(want));
    }
    let mut bad = ns_frame(POD6, DNS6, 255);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(answer(&bad, ep(), echo), Err(DropReason::BadIp), "checksum");
    // A network without an IPv6 address answers no IPv6, one without IPv4 no ARP.
    let v4_only = Endpoint {
        addr6: None,
        ..ep()
    };
    assert_eq!(
        answer(&ns_frame(POD6, DNS6, 255), v4_only, echo),
        Err(DropReason::WrongTarget)
    );
    let v6_only = Endpoint { addr: None, ..ep() };
    assert_eq!(
        answer(&arp_request(POD_MAC, POD_IP, DNS4), v6_only, echo),
        Err(DropReason::WrongTarget)
    );
}

#[test]
fn an_ipv6_query_is_answered_with_a_valid_checksum() {
    let payload = b"\x43\x21hello six";
    let Reply::Dns(f) = answer(&query6_frame(payload), ep(), echo).unwrap() else {
        panic!("not a DNS answer")
    };
    assert_eq!(&f[0..6], &POD_MAC);
    let ip = &f[ETH_HEADER..ETH_HEADER + IPV6_HEADER];
    assert_eq!(&ip[8..24], &DNS6.octets());
    assert_eq!(&ip[24..40], &POD6.octets());
    let udp = &f[ETH_HEADER + IPV6_HEADER..ETH_HEADER + IPV6_HEADER + 8 + payload.len()];
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 40000);
    assert_eq!(sum6(DNS6, POD6, 17, udp), 0xffff, "UDP checksum");
    assert_eq!(&udp[8..], payload);
    // The checksum is mandatory over IPv6; a wrong one, or another destination, is dropped.
    let mut f = query6_frame(payload);
    f[ETH_HEADER + IPV6_HEADER + 6..ETH_HEADER + IPV6_HEADER + 8].copy_from_slice(&[0, 0]);
    assert_eq!(answer(&f, ep(), echo), Err(DropReason::BadUdp));
    let mut f = query6_frame(payload);
    let last = f.len() - 1;
    f[last] ^= 0x40;
    assert_eq!(answer(&f, ep(), echo), Err(DropReason::BadUdp));
    let mut f = query6_frame(payload);
    f[ETH_HEADER + 39] ^= 1;
    assert_eq!(answer(&f, ep(), echo), Err(DropReason::WrongTarget));
    let mut f = query6_frame(payload);
    f[ETH_HEADER + 6] = 0; // hop-by-hop options header: not parsed
    assert_eq!(answer(&f, ep(), echo), Err(DropReason::NotQuery));
    let mut f = query6_frame(payload);
    f.truncate(f.len() - 3);
    assert_eq!(answer(&f, ep(), echo), Err(DropReason::Truncated));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn mutated_ipv6_frames_never_panic(
        ns in any::<bool>(),
        cut in 0usize..140,
        flips in proptest::collection::vec((0usize..140, any::<u8>()), 0..6),
    ) {
        let mut f = if ns {
            ns_frame(POD6, DNS6, 255)
        } else {
            let q = build_query(9, &wire::Name::parse("a.blue.l2sm").unwrap(), TYPE_AAAA, true);
            query6_frame(&q)
        };
        for (at, x) in flips {
            if let Some(b) = f.get_mut(at) {
                *b ^= x;
            }
        }
        f.truncate(f.len().min(cut.max(1) + 14));
        if let Ok(Reply::Dns(out) | Reply::Nd(out)) = answer(&f, ep(), echo) {
            prop_assert!(out.len() >= MIN_FRAME);
            prop_assert_eq!(out[0] & 1, 0);
            prop_assert_eq!(&out[6..12], &ep().mac[..]);
        }
    }
}
