//! The in-network DNS path against a real controller process and a scripted switch: the
//! controller answers a punted ARP request or DNS query with a PACKET_OUT out of the ingress
//! port only, with the names of the network the punt flow's cookie names, and only when that
//! port is a member of that network on the switch. Random PACKET_INs with DNS cookies are
//! dropped and counted; the controller survives them and answers as before.

use l2sm_controller::dns::wire::{build_query, parse_response, Name, RData, TYPE_A};
use l2sm_ofp::{Action, Message, OfpMessage};
use l2sm_test_support::controller::ControllerProcess;
use l2sm_test_support::ofswitch::{port, FakeSwitch};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const DPID: u64 = 0x00dd_0000_0000_0001;
const POD_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn arp_request(spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&POD_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&POD_MAC);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

fn udp_query(src: Ipv4Addr, dst: Ipv4Addr, dst_mac: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&POD_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (28 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no checksum
    f.extend_from_slice(payload);
    f
}

fn punt(in_port: u32, vni: u32, data: Vec<u8>) -> Message {
    Message::PacketIn(l2sm_ofp::PacketIn {
        buffer_id: l2sm_ofp::NO_BUFFER,
        total_len: data.len() as u16,
        reason: 1,
        table_id: 1,
        cookie: l2sm_pipeline::dns::cookie(vni),
        r#match: l2sm_ofp::Match::any().with(l2sm_ofp::OxmField::InPort(in_port)),
        data,
    })
}

/// Answers what the controller asks for `for_at_least`, and at most `limit` longer while it
/// keeps sending; returns the PACKET_OUTs it sent (output port, frame).
fn pump(sw: &mut FakeSwitch, for_at_least: Duration) -> Vec<(Vec<u32>, Vec<u8>)> {
    let ports = [port(1, "p1"), port(2, "p2")];
    let mut outs = Vec::new();
    let until = Instant::now() + for_at_least;
    sw.set_read_timeout(Duration::from_millis(50));
    while Instant::now() < until {
        match sw.recv() {
            Ok(Some(OfpMessage {
                body: Message::PacketOut(p),
                ..
            })) => outs.push((
                p.actions
                    .iter()
                    .filter_map(|a| match a {
                        Action::Output { port, .. } => Some(*port),
                        _ => None,
                    })
                    .collect(),
                p.data,
            )),
            Ok(Some(msg)) => {
                sw.answer(&msg, &ports).expect("answer");
            }
            Ok(None) => panic!("the controller closed the switch's connection"),
            Err(_) => {} // read timeout
        }
    }
    outs
}

fn drops(c: &ControllerProcess, reason: &str) -> u64 {
    let (code, text) = c.req("GET", "/metrics", None);
    assert_eq!(code, 200);
    let prefix = format!("l2sm_network_dns_drops_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {reason} counter"))
}

/// Every frame the in-network DNS path counted: answers and drops of every reason.
fn counted(c: &ControllerProcess) -> u64 {
    let (code, text) = c.req("GET", "/metrics", None);
    assert_eq!(code, 200);
    text.lines()
        .filter(|l| {
            l.starts_with("l2sm_network_dns_drops_total{")
                || l.starts_with("l2sm_network_dns_answers_total{")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// The DNS answer inside a PACKET_OUT frame: rcode and A records.
fn dns_of(frame: &[u8]) -> (u16, Vec<String>) {
    let r = parse_response(&frame[42..]).expect("a DNS answer after Ethernet/IPv4/UDP");
    let data = r
        .answers
        .iter()
        .map(|a| match &a.data {
            RData::Addr(ip) => ip.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    (r.rcode, data)
}

#[test]
fn punted_queries_are_answered_on_their_port_with_their_networks_names_only() {
    let c = ControllerProcess::start_args(&["--openflow-timeout-ms", "60000"]);
    let p = |n: u32| format!("of:{DPID:016x}/{n}");
    for (net, cidr, n, pod, ip) in [
        ("blue", "10.10.0.0/24", 1, "a", "10.10.0.1"),
        ("red", "10.20.0.0/24", 2, "c", "10.20.0.1"),
    ] {
        let create = format!(r#"{{"name":"{net}","cidrs":["{cidr}"]}}"#);
        assert_eq!(c.req("POST", "/api/v1/networks", Some(&create)).0, 201);
        let ports = format!(r#"{{"networkId":"{net}","networkEndpoints":["{}"]}}"#, p(n));
        assert_eq!(c.req("POST", "/onos/vnets/api/port", Some(&ports)).0, 204);
        let owner = format!(r#"{{"pod":"ns/{pod}","attachment":"cni/{pod}/net1","ips":["{ip}"]}}"#);
        let path = format!("/api/v1/switches/of:{DPID:016x}/ports/{n}/owner");
        let (code, text) = c.req("PUT", &path, Some(&owner));
        assert!(code == 200 || code == 204, "{code} {text}");
    }
    let vni = |net: &str| -> u32 {
        let (_, text) = c.req("GET", &format!("/api/v1/networks/{net}"), None);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["vni"].as_u64().unwrap() as u32
    };
    let (blue, red) = (vni("blue"), vni("red"));
    let blue_dns = Ipv4Addr::new(10, 10, 0, 254);
    let blue_mac = l2sm_pipeline::dns::mac(blue);
    let a = Ipv4Addr::new(10, 10, 0, 1);

    let mut sw = FakeSwitch::connect(c.openflow, DPID).unwrap();
    let read = sw.handshake(&[port(1, "p1"), port(2, "p2")]).unwrap();
    sw.answer(&read, &[port(1, "p1"), port(2, "p2")]).unwrap();
    pump(&mut sw, Duration::from_millis(800));

    // ARP from blue's member: answered out of port 1 only, from blue's DNS MAC.
    sw.send(1, punt(1, blue, arp_request(a, blue_dns))).unwrap();
    let outs = pump(&mut sw, Duration::from_millis(300));
    assert_eq!(outs.len(), 1, "{outs:?}");
    assert_eq!(outs[0].0, [1]);
    assert_eq!(&outs[0].1[6..12], &blue_mac);
    assert_eq!(&outs[0].1[28..32], &blue_dns.octets());

    // Blue's cookie on red's member port (or on a port of no network): nothing goes out.
    let before = drops(&c, "wrong_target");
    sw.send(
        2,
        punt(2, blue, arp_request(Ipv4Addr::new(10, 20, 0, 1), blue_dns)),
    )
    .unwrap();
    sw.send(3, punt(7, blue, arp_request(a, blue_dns))).unwrap();
    // Red's cookie from blue's port: not a member of red.
    sw.send(4, punt(1, red, arp_request(a, blue_dns))).unwrap();
    assert!(pump(&mut sw, Duration::from_millis(300)).is_empty());
    assert_eq!(drops(&c, "wrong_target"), before + 3);

    // DNS from blue: blue's names, NXDOMAIN for red's.
    let ask = |sw: &mut FakeSwitch, name: &str| {
        let q = build_query(9, &Name::parse(name).unwrap(), TYPE_A, true);
        sw.send(5, punt(1, blue, udp_query(a, blue_dns, blue_mac, &q)))
            .unwrap();
        let outs = pump(sw, Duration::from_millis(300));
        assert_eq!(outs.len(), 1, "{name}: {outs:?}");
        assert_eq!(outs[0].0, [1], "out of the asking port only");
        dns_of(&outs[0].1)
    };
    assert_eq!(
        ask(&mut sw, "a.blue.l2sm"),
        (0, vec!["10.10.0.1".to_string()])
    );
    assert_eq!(ask(&mut sw, "c.red.l2sm").0, 3);

    // Random frames with DNS cookies: dropped or answered, never a crash.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let good = udp_query(
        a,
        blue_dns,
        blue_mac,
        &build_query(9, &Name::parse("a.blue.l2sm").unwrap(), TYPE_A, true),
    );
    let counted_before = counted(&c);
    let batch: Vec<(u32, Message)> = (0..3000)
        .map(|i| {
            let mut data = if next() % 2 == 0 {
                good.clone()
            } else {
                arp_request(a, blue_dns)
            };
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % data.len();
                data[at] ^= next() as u8;
            }
            data.truncate(1 + (next() as usize) % (data.len() + 8));
            let vni = [blue, blue, red, 0, 0x7f_ffff][(next() % 5) as usize];
            let in_port = [1, 1, 2, 9][(next() % 4) as usize];
            (i, punt(in_port, vni, data))
        })
        .collect();
    sw.send_all(&batch).unwrap();
    let outs = pump(&mut sw, Duration::from_millis(1500));
    assert!(
        outs.iter()
            .all(|(ports, _)| ports.len() == 1 && (ports[0] == 1 || ports[0] == 2)),
        "an answer left through a port that asked for nothing"
    );
    // The port's bound held: at most its burst (200) answers for port 1 in this burst.
    assert!(outs.iter().filter(|(p, _)| p[0] == 1).count() <= 200);
    assert!(drops(&c, "rate_limited") > 0);
    // Every one of them was counted exactly once: answered, or dropped with its reason.
    assert_eq!(counted(&c) - counted_before, 3000);
    // Still answering, once the bucket refilled.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        ask(&mut sw, "a.blue.l2sm"),
        (0, vec!["10.10.0.1".to_string()])
    );
}
