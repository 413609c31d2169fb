use super::wire::*;
use super::*;
use crate::model::PortOwner;
use l2sm_pipeline::ids::PortId;
use proptest::prelude::*;

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

/// blue: ns1/a (10.0.0.1, fd00::1), ns2/a (10.0.0.2), ns1/b (10.0.0.3); red: ns1/c (no IPs).
fn model() -> Model {
    let mut m = Model::default();
    m.create_network("blue", None).unwrap();
    m.create_network("red", None).unwrap();
    m.add_ports("blue", &[port(1, 1), port(1, 2), port(2, 1)])
        .unwrap();
    m.add_ports("red", &[port(2, 2)]).unwrap();
    m.set_owner(port(1, 1), owner("ns1/a", &["10.0.0.1", "fd00::1"]))
        .unwrap();
    m.set_owner(port(1, 2), owner("ns2/a", &["10.0.0.2"]))
        .unwrap();
    m.set_owner(port(2, 1), owner("ns1/b", &["10.0.0.3"]))
        .unwrap();
    m.set_owner(port(2, 2), owner("ns1/c", &[])).unwrap();
    m
}

fn ask(zone: &Zone, name: &str, qtype: u16) -> Response {
    let q = parse_query(&build_query(7, &Name::parse(name).unwrap(), qtype, false)).unwrap();
    let msg = encode_answer(&q, &zone.answer(&q), 65535);
    parse_response(&msg).unwrap()
}

fn addrs(r: &Response) -> Vec<String> {
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
fn records_follow_the_model() {
    let zone = Zone::of(&model(), 3);
    let r = ask(&zone, "a.blue.l2sm", TYPE_A);
    assert_eq!((r.rcode, r.aa), (0, true));
    assert_eq!(addrs(&r), ["10.0.0.1", "10.0.0.2"], "two pods called a");
    assert!(r.answers.iter().all(|a| a.ttl == TTL));
    assert_eq!(addrs(&ask(&zone, "A.Blue.L2SM.", TYPE_AAAA)), ["fd00::1"]);
    assert_eq!(
        addrs(&ask(&zone, "3.0.0.10.in-addr.arpa", TYPE_PTR)),
        ["b.blue.l2sm."]
    );
    let v6 = Name::reverse("fd00::1".parse().unwrap()).to_string();
    assert_eq!(addrs(&ask(&zone, &v6, TYPE_PTR)), ["a.blue.l2sm."]);

    // NODATA: the name exists (c has no address; b has no AAAA; a network; the apex).
    for (name, t) in [
        ("c.red.l2sm", TYPE_A),
        ("b.blue.l2sm", TYPE_AAAA),
        ("blue.l2sm", TYPE_A),
        ("l2sm", TYPE_A),
    ] {
        let r = ask(&zone, name, t);
        assert_eq!((r.rcode, r.answers.len()), (0, 0), "{name}");
        assert!(
            matches!(r.authority[0].data, RData::Soa(ref s) if s.serial == 3 && s.times[3] == TTL)
        );
    }
    // NXDOMAIN with the SOA: b is not on red, no such network, deeper names.
    for name in ["b.red.l2sm", "green.l2sm", "a.green.l2sm", "x.a.blue.l2sm"] {
        let r = ask(&zone, name, TYPE_A);
        assert_eq!((r.rcode, r.aa), (u16::from(RCODE_NXDOMAIN), true), "{name}");
        assert_eq!(r.authority.len(), 1);
    }
    // REFUSED outside the zone, unknown reverse names included: not a resolver.
    for (name, t) in [
        ("example.com", TYPE_A),
        ("l2sm.example.com", TYPE_A),
        ("9.0.0.10.in-addr.arpa", TYPE_PTR),
        ("in-addr.arpa", TYPE_PTR),
    ] {
        let r = ask(&zone, name, t);
        assert_eq!(
            (r.rcode, r.aa, r.answers.len()),
            (u16::from(RCODE_REFUSED), false, 0),
            "{name}"
        );
    }
    assert_eq!(ask(&zone, "l2sm", TYPE_SOA).answers.len(), 1);

    // Detach of ns2/a, and b moved to red (quarantine keeps its owner).
    let mut m = model();
    m.remove_ports("blue", &[port(1, 2)]).unwrap();
    m.move_port(port(2, 1), "blue", "red").unwrap();
    let zone = Zone::of(&m, 4);
    assert_eq!(addrs(&ask(&zone, "a.blue.l2sm", TYPE_A)), ["10.0.0.1"]);
    assert_eq!(
        ask(&zone, "b.blue.l2sm", TYPE_A).rcode,
        u16::from(RCODE_NXDOMAIN)
    );
    assert_eq!(addrs(&ask(&zone, "b.red.l2sm", TYPE_A)), ["10.0.0.3"]);
    assert_eq!(
        ask(&zone, "2.0.0.10.in-addr.arpa", TYPE_PTR).rcode,
        u16::from(RCODE_REFUSED)
    );
}

/// Bytes of `dig +noedns a.blue.l2sm A` (id 0x1234, RD) and of our answer, by hand from
/// RFC 1035 §4.1.
#[test]
fn goldens() {
    let query: &[u8] = &[
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, //
        1, b'a', 4, b'b', b'l', b'u', b'e', 4, b'l', b'2', b's', b'm', 0, //
        0, 1, 0, 1,
    ];
    let q = parse_query(query).unwrap();
    assert_eq!(q.name.to_string(), "a.blue.l2sm.");
    assert_eq!(
        (q.id, q.qtype, q.qclass, q.rd, q.edns),
        (0x1234, 1, 1, true, None)
    );
    assert_eq!(build_query(0x1234, &q.name, TYPE_A, false), query);
    let answer = Answer {
        rcode: 0,
        aa: true,
        answers: vec![Record {
            name: q.name.clone(),
            ttl: 5,
            data: RData::Addr("10.0.0.1".parse().unwrap()),
        }],
        authority: vec![],
    };
    let mut expected = query.to_vec();
    expected[2..4].copy_from_slice(&[0x85, 0x00]); // QR AA RD
    expected[7] = 1; // ANCOUNT
    expected.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1]);
    assert_eq!(encode_answer(&q, &answer, 512), expected);

    // With EDNS0 (udp 1232, DO): the OPT comes back with our size and DO.
    let mut edns = query.to_vec();
    edns[11] = 1;
    edns.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    let q = parse_query(&edns).unwrap();
    assert_eq!(
        q.edns,
        Some(Edns {
            udp_size: 1232,
            version: 0,
            dnssec_ok: true
        })
    );
    let out = encode_answer(&q, &Answer::default(), 512);
    assert_eq!(
        &out[out.len() - 11..],
        &[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]
    );
    // EDNS version 1: BADVERS (16) = ext-rcode 1 in the OPT, 0 in the header.
    let at = edns.len() - 5;
    edns[at] = 1;
    let q = parse_query(&edns).unwrap();
    let out = encode_answer(&q, &Zone::default().answer(&q), 512);
    let r = parse_response(&out).unwrap();
    assert_eq!((out[3] & 0xf, r.rcode), (0, RCODE_BADVERS));

    // Case of the question is echoed as it came.
    let mut upper = query.to_vec();
    upper[13] = b'A';
    let q = parse_query(&upper).unwrap();
    assert_eq!(q.name.0[0], "a");
    assert_eq!(encode_answer(&q, &Answer::default(), 512)[13], b'A');
}

#[test]
fn large_answers_truncate_on_udp() {
    let mut m = Model::default();
    m.create_network("big", None).unwrap();
    let ports: Vec<PortId> = (1..=60).map(|i| port(1, i)).collect();
    m.add_ports("big", &ports).unwrap();
    for (i, p) in ports.iter().enumerate() {
        m.set_owner(
            *p,
            owner(&format!("ns{i}/web"), &[&format!("10.1.0.{}", i + 1)]),
        )
        .unwrap();
    }
    let zone = Zone::of(&m, 1);
    let name = Name::parse("web.big.l2sm").unwrap();
    let q = parse_query(&build_query(1, &name, TYPE_A, false)).unwrap();
    let answer = zone.answer(&q);
    assert_eq!(answer.answers.len(), 60);
    let udp = parse_response(&encode_answer(&q, &answer, PLAIN_UDP_SIZE)).unwrap();
    assert!(udp.tc && udp.answers.is_empty());
    let tcp = parse_response(&encode_answer(&q, &answer, 65535)).unwrap();
    assert!(!tcp.tc);
    assert_eq!(tcp.answers.len(), 60);
    // With EDNS (1232) the 60 records (16 octets each) fit.
    let q = parse_query(&build_query(1, &name, TYPE_A, true)).unwrap();
    let r = parse_response(&encode_answer(&q, &answer, 1232)).unwrap();
    assert!(!r.tc && r.answers.len() == 60);
}

#[test]
fn malformed_queries_are_errors() {
    let good = build_query(1, &Name::parse("a.blue.l2sm").unwrap(), TYPE_A, false);
    // Every truncation.
    for n in 0..good.len() {
        assert!(parse_query(&good[..n]).is_err(), "truncated at {n}");
    }
    // A compression loop in the question (pointer to itself), and a forward pointer.
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(parse_query(&looped), Err(WireError::BadName));
    let mut forward = good[..12].to_vec();
    forward.extend_from_slice(&[0xc0, 20, 0, 1, 0, 1]);
    assert_eq!(parse_query(&forward), Err(WireError::BadName));
    // Huge counts.
    let mut counts = good.clone();
    counts[4..12].copy_from_slice(&[0xff; 8]);
    assert_eq!(parse_query(&counts), Err(WireError::Counts));
    // A name longer than 255.
    let mut long = good[..12].to_vec();
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'x'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(parse_query(&long), Err(WireError::BadName));
    // Responses are never answered; a header gets FORMERR with its id.
    let mut resp = good.clone();
    resp[2] |= 0x80;
    assert_eq!(parse_query(&resp), Err(WireError::Direction));
    assert_eq!(header_only_answer(&resp, RCODE_FORMERR), None);
    let formerr = header_only_answer(&counts, RCODE_FORMERR).unwrap();
    assert_eq!(formerr, [0, 1, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn names_and_reverse_names() {
    assert_eq!(Name::parse("a..b"), None);
    assert_eq!(Name::parse(&"x".repeat(64)), None);
    assert!(Name::parse(&["y"; 127].join(".")).is_some());
    assert_eq!(Name::parse(&["y"; 128].join(".")), None);
    for ip in ["10.1.2.3", "fd00::1:2", "::", "255.255.255.255"] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(Name::reverse(ip).reverse_address(), Some(ip));
    }
    assert_eq!(
        Name::parse("01.0.0.10.in-addr.arpa")
            .unwrap()
            .reverse_address(),
        None
    );
    assert_eq!(
        Name::parse("256.0.0.10.in-addr.arpa")
            .unwrap()
            .reverse_address(),
        None
    );
    assert!(!valid_label("-a") && !valid_label("a_b") && valid_label("a-1"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Arbitrary bytes: parsers return (never panic), and the server's answer is FORMERR,
    /// silence, or a well-formed answer at most 512 octets on UDP.
    #[test]
    fn random_bytes_never_panic(msg in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_response(&msg);
        let zone = Zone::of(&model(), 1);
        if let Ok(q) = parse_query(&msg) {
            let out = encode_answer(&q, &zone.answer(&q), PLAIN_UDP_SIZE);
            prop_assert!(out.len() <= PLAIN_UDP_SIZE.max(12 + q.wire_name.len() + 4 + 11));
            prop_assert_eq!(parse_response(&out).map(|r| r.id), Ok(q.id));
        }
    }

    /// Mutations of valid queries (the interesting neighbourhood of the parser).
    #[test]
    fn mutated_queries_never_panic(
        name in "[a-z]{1,10}(\\.[a-z]{1,10}){0,3}",
        edns in any::<bool>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut msg = build_query(9, &Name::parse(&name).unwrap(), TYPE_A, edns);
        prop_assert!(parse_query(&msg).is_ok());
        let zone = Zone::of(&model(), 1);
        for (at, b) in flips {
            let i = at % msg.len();
            msg[i] = b;
        }
        if let Ok(q) = parse_query(&msg) {
            let out = encode_answer(&q, &zone.answer(&q), 65535);
            prop_assert!(parse_response(&out).is_ok());
        }
    }
}

/// `AddEntryRequest{entry: {pod_name: "b", ip_address: "10.0.0.2", network: "shared",
/// scope: "inter"}}` as protobuf-go marshals it (fields in order; field 1 is the embedded
/// `DNSEntry`, tag 0x0a), and the answer `AddEntryResponse{}` (empty message: no bytes).
#[test]
fn update_api_goldens() {
    use super::grpc::*;
    let golden: &[u8] = &[
        0x0a, 0x1c, // entry, 28 bytes
        0x0a, 0x01, b'b', //
        0x12, 0x08, b'1', b'0', b'.', b'0', b'.', b'0', b'.', b'2', //
        0x1a, 0x06, b's', b'h', b'a', b'r', b'e', b'd', //
        0x22, 0x05, b'i', b'n', b't', b'e', b'r',
    ];
    let entry = DnsEntry {
        pod_name: "b".into(),
        ip_address: "10.0.0.2".into(),
        network: "shared".into(),
        scope: "inter".into(),
    };
    assert_eq!(entry_request(&entry), golden);
    assert_eq!(parse_entry_request(golden).unwrap(), entry);
    assert!(message_response("").is_empty());
    // Unknown fields are skipped; a missing entry is an empty one; wrong wire types refused.
    let mut unknown = golden.to_vec();
    unknown.extend_from_slice(&[0x28, 0x01]);
    assert_eq!(parse_entry_request(&unknown).unwrap(), entry);
    assert_eq!(parse_entry_request(&[]).unwrap(), DnsEntry::default());
    assert!(parse_entry_request(&[0x08, 0x01]).is_err());
    assert!(parse_entry_request(&golden[..10]).is_err());
    assert_eq!(
        Method::from_path("/l2smdns.DnsService/AddEntry").unwrap(),
        Method::AddEntry
    );
    assert!(Method::from_path("/l2smdns.DnsService/ListEntries").is_err());
    assert!(Method::from_path("/other.Service/AddEntry").is_err());
}

proptest! {
    /// Random bytes as an update request never panic.
    #[test]
    fn random_update_requests_never_panic(msg in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = super::grpc::parse_entry_request(&msg);
        let _ = super::grpc::ReplaceCluster::decode(&msg, 3);
    }
}

/// IPAM allocations attached to a port are the pod's addresses too (with those the agent
/// reported, no duplicates), and a zone of 5,000 pods on one IPAM network is built in one
/// linear pass (measured: well under a second even in a debug build).
#[test]
fn ipam_allocations_count_and_big_zones_build_fast() {
    use crate::ipam::Ipam;
    let mut m = Model::default();
    let cidr: ipnet::IpNet = "10.8.0.0/16".parse().unwrap();
    m.create_network_with_ipam("big", Ipam::new(vec![cidr], vec![], vec![]).unwrap())
        .unwrap();
    let n = 5000u32;
    let ports: Vec<PortId> = (1..=n).map(|i| port(u64::from(i % 7 + 1), i)).collect();
    m.add_ports("big", &ports).unwrap();
    for (i, p) in ports.iter().enumerate() {
        let ips = m
            .allocate("big", &format!("cni/{i}"), &[], Some(*p))
            .unwrap();
        let reported = ips[0].addr().to_string();
        // The first pod also reports the allocated address itself: one record, not two.
        let own: Vec<&str> = if i == 0 {
            vec![reported.as_str()]
        } else {
            vec![]
        };
        m.set_owner(*p, owner(&format!("ns/p{i}"), &own)).unwrap();
    }
    let started = std::time::Instant::now();
    let zone = Zone::of(&m, 1);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(1),
        "zone of {n} pods took {took:?}"
    );
    assert_eq!(zone.hosts.len(), n as usize);
    assert_eq!(zone.reverse.len(), n as usize);
    let r = ask(&zone, "p0.big.l2sm", TYPE_A);
    assert_eq!(addrs(&r).len(), 1);
    let ip = addrs(&ask(&zone, "p4999.big.l2sm", TYPE_A));
    assert_eq!(ip.len(), 1);
    let rev = Name::reverse(ip[0].parse().unwrap()).to_string();
    assert_eq!(addrs(&ask(&zone, &rev, TYPE_PTR)), ["p4999.big.l2sm."]);
}

/// Update-API names: answered, their ancestors are empty non-terminals (NODATA, not NXDOMAIN:
/// RFC 8020 resolvers would otherwise deny every name below), siblings NXDOMAIN.
#[test]
fn entries_and_their_empty_non_terminals() {
    let mut extra = std::collections::BTreeMap::new();
    extra.insert(
        Name::parse("b.shared.inter.l2sm").unwrap(),
        ["10.0.0.9".parse().unwrap()].into_iter().collect(),
    );
    let zone = Zone::with_entries(&model(), 1, &extra);
    assert_eq!(
        addrs(&ask(&zone, "b.shared.inter.l2sm", TYPE_A)),
        ["10.0.0.9"]
    );
    assert_eq!(
        addrs(&ask(&zone, "9.0.0.10.in-addr.arpa", TYPE_PTR)),
        ["b.shared.inter.l2sm."]
    );
    for ent in ["shared.inter.l2sm", "inter.l2sm"] {
        let r = ask(&zone, ent, TYPE_A);
        assert_eq!(
            (r.rcode, r.answers.len(), r.authority.len()),
            (0, 0, 1),
            "{ent}"
        );
    }
    for missing in [
        "c.shared.inter.l2sm",
        "other.inter.l2sm",
        "x.b.shared.inter.l2sm",
    ] {
        assert_eq!(
            ask(&zone, missing, TYPE_A).rcode,
            u16::from(RCODE_NXDOMAIN),
            "{missing}"
        );
    }
}
