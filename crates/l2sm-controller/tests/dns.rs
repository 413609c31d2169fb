//! The controller's DNS server on a real controller process, over real UDP and TCP: records
//! appear when an owner report answers and vanish on detach or move, several pods with one
//! name, PTR, negative answers with the SOA, REFUSED outside the zone, TC on large UDP
//! answers, malformed input, the per-source rate limit and a restart.

use l2sm_controller::dns::client::{exchange_tcp, exchange_udp, lookup};
use l2sm_controller::dns::wire::{self, Name, RData, Response};
use l2sm_test_support::controller::ControllerProcess;
use l2sm_test_support::free_port;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(2);
const DPID: &str = "of:a30b6e801ab54336";

fn start(extra: &[&str]) -> (ControllerProcess, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let mut args = vec!["--dns-listen", listen.as_str()];
    args.extend_from_slice(extra);
    (ControllerProcess::start_args(&args), addr)
}

fn ask(dns: SocketAddr, name: &str, qtype: u16) -> Response {
    lookup(dns, &Name::parse(name).unwrap(), qtype, T).expect("DNS answer")
}

fn data(r: &Response) -> Vec<String> {
    let mut v: Vec<String> = r
        .answers
        .iter()
        .map(|a| match &a.data {
            RData::Addr(ip) => ip.to_string(),
            RData::Ptr(n) => n.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    v.sort();
    v
}

fn attach(c: &ControllerProcess, net: &str, port: u32, pod: &str, ips: &[&str]) {
    let ports = format!(r#"{{"networkId":"{net}","networkEndpoints":["{DPID}/{port}"]}}"#);
    assert_eq!(c.req("POST", "/onos/vnets/api/port", Some(&ports)).0, 204);
    let ips: Vec<String> = ips.iter().map(|i| format!("\"{i}\"")).collect();
    let owner = format!(
        r#"{{"pod":"{pod}","attachment":"cni/{port}/net1","interface":"net1","ips":[{}]}}"#,
        ips.join(",")
    );
    let path = format!("/api/v1/switches/{DPID}/ports/{port}/owner");
    let (code, text) = c.req("PUT", &path, Some(&owner));
    assert_eq!(code, 204, "{text}");
}

fn detach(c: &ControllerProcess, net: &str, port: u32) {
    let ports = format!(r#"{{"networkId":"{net}","networkEndpoints":["{DPID}/{port}"]}}"#);
    assert_eq!(c.req("DELETE", "/onos/vnets/api/port", Some(&ports)).0, 200);
}

fn soa_serial(r: &Response) -> Option<u32> {
    match r.authority.first().map(|a| &a.data) {
        Some(RData::Soa(s)) => Some(s.serial),
        _ => None,
    }
}

/// Names follow the API at once (each lookup right after the call returns, no waiting):
/// attach, a second pod with the same name, PTR both ways, detach, a move; negative answers
/// carry the SOA; other zones are refused; UDP and TCP agree; a restart keeps every record.
#[test]
fn names_follow_attach_detach_and_move() {
    let (c, dns) = start(&[]);
    for n in ["blue", "red"] {
        let body = format!(r#"{{"networkId":"{n}"}}"#);
        assert_eq!(c.req("POST", "/onos/vnets/api", Some(&body)).0, 204);
    }
    let r = ask(dns, "a.blue.l2sm", wire::TYPE_A);
    assert_eq!(r.rcode, u16::from(wire::RCODE_NXDOMAIN));
    assert!(soa_serial(&r).is_some(), "NXDOMAIN carries the SOA");

    attach(&c, "blue", 1, "ns1/a", &["10.0.0.1", "fd00::1"]);
    let r = ask(dns, "a.blue.l2sm", wire::TYPE_A);
    assert_eq!(
        (r.rcode, r.aa, data(&r)),
        (0, true, vec!["10.0.0.1".into()])
    );
    assert_eq!(data(&ask(dns, "a.blue.l2sm", wire::TYPE_AAAA)), ["fd00::1"]);
    attach(&c, "blue", 2, "ns2/a", &["10.0.0.2"]);
    attach(&c, "blue", 3, "ns1/b", &["10.0.0.3"]);
    assert_eq!(
        data(&ask(dns, "a.blue.l2sm", wire::TYPE_A)),
        ["10.0.0.1", "10.0.0.2"],
        "two pods called a"
    );
    let ptr = |ip: &str| {
        let name = Name::reverse(ip.parse().unwrap());
        lookup(dns, &name, wire::TYPE_PTR, T).unwrap()
    };
    assert_eq!(data(&ptr("10.0.0.3")), ["b.blue.l2sm."]);
    assert_eq!(data(&ptr("fd00::1")), ["a.blue.l2sm."]);

    // TCP gives the same answer as UDP.
    let q = wire::build_query(
        77,
        &Name::parse("a.blue.l2sm").unwrap(),
        wire::TYPE_A,
        false,
    );
    let udp = wire::parse_response(&exchange_udp(dns, &q, T).unwrap()).unwrap();
    let tcp = wire::parse_response(&exchange_tcp(dns, &q, T).unwrap()).unwrap();
    assert_eq!(udp, tcp);
    assert_eq!(udp.id, 77);

    // Negative answers: NODATA (name there, type not), NXDOMAIN, both with the SOA.
    let r = ask(dns, "b.blue.l2sm", wire::TYPE_AAAA);
    assert_eq!((r.rcode, r.answers.len()), (0, 0));
    assert!(soa_serial(&r).is_some());
    let r = ask(dns, "b.red.l2sm", wire::TYPE_A);
    assert_eq!(r.rcode, u16::from(wire::RCODE_NXDOMAIN));
    // Not a resolver.
    for name in ["example.com", "localhost"] {
        let r = ask(dns, name, wire::TYPE_A);
        assert_eq!(
            (r.rcode, r.answers.len(), r.ra),
            (u16::from(wire::RCODE_REFUSED), 0, false)
        );
    }
    assert_eq!(ptr("192.0.2.1").rcode, u16::from(wire::RCODE_REFUSED));

    // Detach ns2/a: gone at once (name and PTR); move b to red: follows.
    detach(&c, "blue", 2);
    assert_eq!(data(&ask(dns, "a.blue.l2sm", wire::TYPE_A)), ["10.0.0.1"]);
    assert_eq!(ptr("10.0.0.2").rcode, u16::from(wire::RCODE_REFUSED));
    let (code, text) = c.req(
        "POST",
        &format!("/api/v1/switches/{DPID}/ports/3/move"),
        Some(r#"{"from":"blue","to":"red"}"#),
    );
    assert_eq!(code, 202, "{text}");
    assert_eq!(
        ask(dns, "b.blue.l2sm", wire::TYPE_A).rcode,
        u16::from(wire::RCODE_NXDOMAIN)
    );
    assert_eq!(data(&ask(dns, "b.red.l2sm", wire::TYPE_A)), ["10.0.0.3"]);
    assert_eq!(data(&ptr("10.0.0.3")), ["b.red.l2sm."]);

    // A restart keeps every record (they are the model's).
    let before: Vec<Vec<String>> = ["a.blue.l2sm", "b.red.l2sm"]
        .iter()
        .map(|n| data(&ask(dns, n, wire::TYPE_A)))
        .collect();
    let (api, of) = (c.api, c.openflow);
    let dir = c.stop();
    let listen = dns.to_string();
    let c = ControllerProcess::start_on_with(
        dir,
        "test",
        "secret",
        api,
        of,
        &["--dns-listen", listen.as_str()],
    );
    let after: Vec<Vec<String>> = ["a.blue.l2sm", "b.red.l2sm"]
        .iter()
        .map(|n| data(&ask(dns, n, wire::TYPE_A)))
        .collect();
    assert_eq!(before, after);
    drop(c);
}

/// 100 pods called `web`: over UDP without EDNS (512 octets) and with EDNS (1232) the answer
/// is truncated (TC, no records), over TCP it has all 100; `lookup` falls back to TCP.
#[test]
fn large_answers_set_tc_on_udp_and_come_whole_over_tcp() {
    let (c, dns) = start(&[]);
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"big"}"#))
            .0,
        204
    );
    for i in 1..=100u32 {
        attach(
            &c,
            "big",
            i,
            &format!("ns{i}/web"),
            &[&format!("10.9.{}.{}", i / 200, i % 200 + 1)],
        );
    }
    let name = Name::parse("web.big.l2sm").unwrap();
    for edns in [false, true] {
        let q = wire::build_query(5, &name, wire::TYPE_A, edns);
        let raw = exchange_udp(dns, &q, T).unwrap();
        assert!(raw.len() <= if edns { 1232 } else { 512 });
        let r = wire::parse_response(&raw).unwrap();
        assert!(r.tc && r.answers.is_empty(), "edns {edns}: {r:?}");
        let r = wire::parse_response(&exchange_tcp(dns, &q, T).unwrap()).unwrap();
        assert!(!r.tc);
        assert_eq!(r.answers.len(), 100);
    }
    assert_eq!(
        lookup(dns, &name, wire::TYPE_A, T).unwrap().answers.len(),
        100
    );
}

/// Malformed datagrams and TCP messages (random bytes, truncations, compression loops, huge
/// counts, responses) get FORMERR or silence; the server keeps answering and stays up.
#[test]
fn malformed_input_gets_formerr_or_silence() {
    let (mut c, dns) = start(&[]);
    let good = wire::build_query(1, &Name::parse("x.l2sm").unwrap(), wire::TYPE_A, false);
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let mut counts = good.clone();
    counts[4..12].copy_from_slice(&[0xff; 8]);
    let mut response = good.clone();
    response[2] |= 0x80;
    // FORMERR with the id for parseable headers.
    for msg in [&looped, &counts, &good[..good.len() - 1].to_vec()] {
        let r = wire::parse_response(&exchange_udp(dns, msg, T).unwrap()).unwrap();
        assert_eq!((r.id, r.rcode), (1, u16::from(wire::RCODE_FORMERR)));
        let r = wire::parse_response(&exchange_tcp(dns, msg, T).unwrap()).unwrap();
        assert_eq!((r.id, r.rcode), (1, u16::from(wire::RCODE_FORMERR)));
    }
    // Silence for responses and for less than a header.
    for msg in [&response[..], &good[..5], &[][..]] {
        let got = exchange_udp(dns, msg, Duration::from_millis(300));
        assert!(got.is_err(), "answered {msg:?}: {got:?}");
    }
    // Random junk, 3,000 datagrams and 200 TCP messages (xorshift, seeded).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..3200 {
        let len = (next() % 700) as usize;
        let mut msg: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && msg.len() > 12 {
            // Keep the header plausible so the name parser gets exercised.
            msg[2..12].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        }
        if i < 3000 {
            sock.send_to(&msg, dns).unwrap();
        } else {
            let _ = exchange_tcp(dns, &msg, Duration::from_millis(500));
        }
    }
    assert!(c.is_running(), "controller died");
    // The junk spent this source's burst: a moment refills it (1,000 a second).
    std::thread::sleep(Duration::from_millis(100));
    let r = ask(dns, "x.l2sm", wire::TYPE_A);
    assert_eq!(r.rcode, u16::from(wire::RCODE_NXDOMAIN));
}

/// What a malformed query must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// FORMERR with the query's id.
    Formerr,
    /// Anything parseable with the id (or silence only for a response / less than a header).
    Any,
}

/// One mutated query of class `i % 6` (xorshift `next`): truncated, a compression loop, a
/// forward pointer, huge counts, flipped bytes, random bytes.
fn malformed(i: usize, next: &mut impl FnMut() -> u64) -> (Vec<u8>, Expect) {
    let names = [
        "a.blue.l2sm",
        "x.l2sm",
        "1.0.0.10.in-addr.arpa",
        "example.com",
    ];
    let name = Name::parse(names[(next() % 4) as usize]).unwrap();
    let mut q = wire::build_query(next() as u16, &name, wire::TYPE_A, next() % 2 == 0);
    match i % 6 {
        0 => {
            let keep = 12 + (next() as usize) % (q.len() - 12);
            q.truncate(keep);
            (q, Expect::Formerr)
        }
        1 => {
            // The question's name points at itself, or a label then a pointer back to it.
            q.truncate(12);
            if next() % 2 == 0 {
                q.extend_from_slice(&[0xc0, 12]);
            } else {
                q.extend_from_slice(&[1, b'a', 0xc0, 12]);
            }
            q.extend_from_slice(&[0, 1, 0, 1]);
            (q, Expect::Formerr)
        }
        2 => {
            // A pointer forward (into the type/class bytes).
            q.truncate(12);
            q.extend_from_slice(&[0xc0, 14, 0, 1, 0, 1]);
            (q, Expect::Formerr)
        }
        3 => {
            // Huge counts: more questions, answers, authority or additional records than
            // the message holds.
            let field = 4 + 2 * (next() as usize % 4);
            let count = 2 + (next() as u16 % 65534);
            q[field..field + 2].copy_from_slice(&count.to_be_bytes());
            (q, Expect::Formerr)
        }
        4 => {
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % q.len();
                q[at] ^= 1 << (next() % 8);
            }
            (q, Expect::Any)
        }
        _ => {
            let len = (next() % 600) as usize;
            ((0..len).map(|_| next() as u8).collect(), Expect::Any)
        }
    }
}

/// Checks one exchange: the answer (or its absence) is what `msg` deserves.
fn check_answer(msg: &[u8], expect: Expect, got: std::io::Result<Vec<u8>>, how: &str) {
    let silent_ok = msg.len() < 12 || msg[2] & 0x80 != 0;
    match got {
        Err(_) => assert!(silent_ok, "{how}: no answer to {msg:02x?} ({expect:?})"),
        Ok(raw) => {
            assert!(
                !silent_ok,
                "{how}: answered a response or a stub {msg:02x?}"
            );
            let r = wire::parse_response(&raw).unwrap_or_else(|e| {
                panic!("{how}: unparseable answer {raw:02x?} to {msg:02x?}: {e}")
            });
            assert_eq!(r.id, u16::from_be_bytes([msg[0], msg[1]]), "{how}: id");
            if expect == Expect::Formerr {
                assert_eq!(r.rcode, u16::from(wire::RCODE_FORMERR), "{how}: {msg:02x?}");
            }
        }
    }
}

/// Bounded randomized queries on both transports (seeded, so a failure repeats): truncated,
/// compression loops, forward pointers and huge counts get FORMERR with their id; flipped
/// and random bytes get a parseable answer with the id, or silence only when they are a
/// response or shorter than a header; the controller stays up and answers a good query.
#[test]
fn random_queries_over_udp_and_tcp_get_formerr_or_silence() {
    let (mut c, dns) = start(&["--dns-rate-limit", "1000000"]);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut udp, mut tcp, mut formerr) = (0, 0, 0);
    for i in 0..1800 {
        let (msg, expect) = malformed(i, &mut next);
        let silent_ok = msg.len() < 12 || msg[2] & 0x80 != 0;
        // A short wait where silence is the right answer, a long one otherwise.
        let wait = if silent_ok {
            Duration::from_millis(30)
        } else {
            T
        };
        if i % 4 == 3 {
            check_answer(&msg, expect, exchange_tcp(dns, &msg, wait), "tcp");
            tcp += 1;
        } else {
            check_answer(&msg, expect, exchange_udp(dns, &msg, wait), "udp");
            udp += 1;
        }
        formerr += usize::from(expect == Expect::Formerr);
    }
    assert!(c.is_running(), "controller died");
    assert_eq!((udp, tcp, formerr), (1350, 450, 1200));
    let r = ask(dns, "x.l2sm", wire::TYPE_A);
    assert_eq!(r.rcode, u16::from(wire::RCODE_NXDOMAIN));
}

/// One source gets its burst (twice the rate) and then the rate, the rest is dropped; a
/// second later it is answered again.
#[test]
fn queries_are_rate_limited_per_source() {
    let (_c, dns) = start(&["--dns-rate-limit", "20"]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let q = wire::build_query(3, &Name::parse("x.l2sm").unwrap(), wire::TYPE_A, false);
    let started = Instant::now();
    for _ in 0..200 {
        sock.send_to(&q, dns).unwrap();
    }
    let mut answered = 0;
    let mut buf = [0u8; 512];
    while sock.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Burst 40, then 20/s for the time the sends and reads took.
    let most = 40.0 + 20.0 * elapsed + 1.0;
    assert!(
        (40..=most as usize).contains(&answered),
        "{answered} of 200 answered in {elapsed:.2} s"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ask(dns, "x.l2sm", wire::TYPE_A).rcode, 3);
}

/// One unary gRPC call over `io` (an HTTP/2 connection): the `grpc-status` (from the
/// trailers, or the headers of a trailers-only answer) and the answer message.
async fn grpc_on<I>(io: I, path: &str, message: &[u8]) -> (u16, Vec<u8>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt as _;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://127.0.0.1{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            l2sm_ned::grpc::frame(message),
        )))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let head_status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let collected = resp.into_body().collect().await.unwrap();
    let trailer_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status")?.to_str().ok()?.parse().ok());
    let bytes = collected.to_bytes();
    let msg = if bytes.len() >= 5 {
        bytes[5..].to_vec()
    } else {
        vec![]
    };
    (trailer_status.or(head_status).expect("grpc-status"), msg)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// [`grpc_on`] over cleartext HTTP/2 with prior knowledge.
fn grpc_call(addr: SocketAddr, path: &str, message: &[u8]) -> (u16, Vec<u8>) {
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        grpc_on(tcp, path, message).await
    })
}

/// Upstream's update API: `AddEntry` with the bytes upstream's generated client sends makes
/// `b.shared.inter.l2sm` resolve at once; bad input (missing fields, an invalid address, a
/// label too long) is INVALID_ARGUMENT and changes nothing; `DeleteEntry` removes it; entries
/// survive a restart; `AddServer` is UNIMPLEMENTED (authoritative only); the API does not
/// start without TLS or an explicit `--dns-grpc-insecure`.
#[test]
fn update_api_adds_and_deletes_names() {
    use l2sm_controller::dns::grpc::{entry_request, DnsEntry, Method};
    let grpc_port = free_port();
    let grpc: SocketAddr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
    let grpc_listen = grpc.to_string();
    let (c, dns) = start(&["--dns-grpc-listen", &grpc_listen, "--dns-grpc-insecure"]);
    let entry = DnsEntry {
        pod_name: "b".into(),
        ip_address: "10.0.0.2".into(),
        network: "shared".into(),
        scope: "inter".into(),
    };
    // The golden bytes of the codec's unit test.
    let (code, msg) = grpc_call(grpc, Method::AddEntry.path(), &entry_request(&entry));
    assert_eq!((code, msg.len()), (0, 0));
    assert_eq!(
        data(&ask(dns, "b.shared.inter.l2sm", wire::TYPE_A)),
        ["10.0.0.2"]
    );
    let ptr = lookup(
        dns,
        &Name::reverse("10.0.0.2".parse().unwrap()),
        wire::TYPE_PTR,
        T,
    )
    .unwrap();
    assert_eq!(data(&ptr), ["b.shared.inter.l2sm."]);
    // Bad input: an error status, nothing changes.
    let long = "x".repeat(64);
    for bad in [
        DnsEntry {
            pod_name: String::new(),
            ..entry.clone()
        },
        DnsEntry {
            scope: String::new(),
            ..entry.clone()
        },
        DnsEntry {
            ip_address: "10.0.0.300".into(),
            pod_name: "z".into(),
            ..entry.clone()
        },
        DnsEntry {
            ip_address: String::new(),
            pod_name: "z".into(),
            ..entry.clone()
        },
        DnsEntry {
            pod_name: long.clone(),
            ..entry.clone()
        },
        DnsEntry {
            network: "Bad_Net".into(),
            ..entry.clone()
        },
    ] {
        let (code, _) = grpc_call(grpc, Method::AddEntry.path(), &entry_request(&bad));
        assert_eq!(code, 3, "INVALID_ARGUMENT for {bad:?}");
    }
    let (code, _) = grpc_call(grpc, Method::AddEntry.path(), &[0x0a, 0x05, 0x0a]);
    assert_eq!(code, 13, "INTERNAL for an unparseable message, as grpc-go");
    assert_eq!(
        ask(dns, "z.shared.inter.l2sm", wire::TYPE_A).rcode,
        u16::from(wire::RCODE_NXDOMAIN)
    );
    assert_eq!(
        data(&ask(dns, "b.shared.inter.l2sm", wire::TYPE_A)),
        ["10.0.0.2"]
    );
    let (code, _) = grpc_call(grpc, Method::AddServer.path(), &[]);
    assert_eq!(code, 12, "UNIMPLEMENTED");
    let (code, _) = grpc_call(grpc, "/l2smdns.DnsService/Nope", &[]);
    assert_eq!(code, 12);

    // A second address for the name (upstream keeps both), then a restart keeps them.
    let second = DnsEntry {
        ip_address: "fd00::2".into(),
        ..entry.clone()
    };
    assert_eq!(
        grpc_call(grpc, Method::AddEntry.path(), &entry_request(&second)).0,
        0
    );
    let (api, of) = (c.api, c.openflow);
    let dir = c.stop();
    let listen = dns.to_string();
    let c = ControllerProcess::start_on_with(
        dir,
        "test",
        "secret",
        api,
        of,
        &[
            "--dns-listen",
            &listen,
            "--dns-grpc-listen",
            &grpc_listen,
            "--dns-grpc-insecure",
        ],
    );
    assert_eq!(
        data(&ask(dns, "b.shared.inter.l2sm", wire::TYPE_A)),
        ["10.0.0.2"]
    );
    assert_eq!(
        data(&ask(dns, "b.shared.inter.l2sm", wire::TYPE_AAAA)),
        ["fd00::2"]
    );
    assert_eq!(
        grpc_call(grpc, Method::DeleteEntry.path(), &entry_request(&entry)).0,
        0
    );
    assert_eq!(
        data(&ask(dns, "b.shared.inter.l2sm", wire::TYPE_A)),
        Vec::<String>::new()
    );
    assert_eq!(
        grpc_call(grpc, Method::DeleteEntry.path(), &entry_request(&second)).0,
        0
    );
    assert_eq!(
        ask(dns, "b.shared.inter.l2sm", wire::TYPE_A).rcode,
        u16::from(wire::RCODE_NXDOMAIN)
    );
    drop(c);

    // Neither TLS nor --dns-grpc-insecure: the controller refuses to start.
    let out = std::process::Command::new(l2sm_test_support::bin::l2sm())
        .args([
            "controller",
            "--insecure-openflow",
            "--upstream-default-credentials",
        ])
        .args([
            "--dns-listen",
            "127.0.0.1:0",
            "--dns-grpc-listen",
            "127.0.0.1:0",
        ])
        .arg("--state-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--openflow-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--dns-grpc-insecure"), "{stderr}");
}

/// Over TLS the update API wants a client certificate from `--dns-grpc-client-ca`: without
/// one (or with one from another CA) the handshake fails and nothing changes; with one,
/// `AddEntry` works.
#[test]
fn update_api_over_tls_needs_a_client_certificate() {
    use l2sm_controller::dns::grpc::{entry_request, DnsEntry, Method};
    use l2sm_controller::switch_tls;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    };
    let leaf = |ca: &CertifiedIssuer<'static, KeyPair>, sans: Vec<String>, client: bool| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, ca).unwrap();
        (cert, key)
    };
    let (good_ca, other_ca) = (ca("dns-ca"), ca("other-ca"));
    let dir = tempfile::tempdir().unwrap();
    let (server, server_key) = leaf(&good_ca, vec!["127.0.0.1".into()], false);
    let files = [
        ("server.pem", server.pem()),
        ("server.key", server_key.serialize_pem()),
        ("ca.pem", good_ca.pem()),
    ];
    for (name, pem) in &files {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let grpc_listen = grpc.to_string();
    let (cert, key, client_ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let (_c, dns) = start(&[
        "--dns-grpc-listen",
        &grpc_listen,
        "--dns-grpc-tls-cert",
        &cert,
        "--dns-grpc-tls-key",
        &key,
        "--dns-grpc-client-ca",
        &client_ca,
    ]);
    let identity = |ca: &CertifiedIssuer<'static, KeyPair>| {
        let (c, k) = leaf(ca, vec![], true);
        (
            vec![c.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der())),
        )
    };
    let entry = DnsEntry {
        pod_name: "b".into(),
        ip_address: "10.0.0.2".into(),
        network: "shared".into(),
        scope: "inter".into(),
    };
    let call = |id: Option<_>| {
        let mut config =
            (*switch_tls::client_config(&[good_ca.der().clone()], id).unwrap()).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let request = entry_request(&entry);
        runtime().block_on(async move {
            let tcp = tokio::net::TcpStream::connect(grpc).await.unwrap();
            let tls = switch_tls::connect(std::sync::Arc::new(config), "127.0.0.1", tcp).await;
            let Ok(tls) = tls else { return None };
            // TLS 1.3: a refused client certificate shows on the first read.
            let (send_ok, out) = tokio::time::timeout(Duration::from_secs(5), async {
                let call =
                    tokio::spawn(
                        async move { grpc_on(tls, Method::AddEntry.path(), &request).await },
                    );
                match call.await {
                    Ok(r) => (true, Some(r)),
                    Err(_) => (false, None),
                }
            })
            .await
            .unwrap_or((false, None));
            if send_ok {
                out
            } else {
                None
            }
        })
    };
    assert_eq!(call(None), None, "no client certificate");
    assert_eq!(
        call(Some(identity(&other_ca))),
        None,
        "another CA's certificate"
    );
    assert_eq!(
        ask(dns, "b.shared.inter.l2sm", wire::TYPE_A).rcode,
        u16::from(wire::RCODE_NXDOMAIN)
    );
    assert_eq!(call(Some(identity(&good_ca))), Some((0, vec![])));
    assert_eq!(
        data(&ask(dns, "b.shared.inter.l2sm", wire::TYPE_A)),
        ["10.0.0.2"]
    );
}

/// TCP hygiene: 128 silent connections are held, the 129th is closed at once, queries still
/// work over UDP meanwhile, and the silent ones are closed after the 10 s idle timeout.
#[test]
fn tcp_connections_are_capped_and_idle_ones_closed() {
    use std::io::Read as _;
    let (_c, dns) = start(&[]);
    let held: Vec<std::net::TcpStream> = (0..128)
        .map(|_| std::net::TcpStream::connect(dns).unwrap())
        .collect();
    // Let the server accept them all.
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = std::net::TcpStream::connect(dns).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(
        matches!(extra.read(&mut b), Ok(0) | Err(_)),
        "connection 129 not closed"
    );
    assert_eq!(
        ask(dns, "x.l2sm", wire::TYPE_A).rcode,
        3,
        "UDP still answers"
    );
    let started = Instant::now();
    let mut first = &held[0];
    first
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let r = first.read(&mut b);
    let waited = started.elapsed();
    assert!(matches!(r, Ok(0)), "{r:?}");
    assert!(
        waited > Duration::from_secs(8) && waited < Duration::from_secs(12),
        "closed after {waited:?}"
    );
}

/// `<name>.<network>.inter.l2sm` between two real controllers over TLS: a cluster controller
/// (`--provider-dns` with a client certificate) sends its pods on a network with an edge hop
/// member to a provider controller whose update API requires client certificates; the name
/// resolves at the provider, a pod of a network without a hop never does, and a detach takes
/// the name away. A cluster controller given neither TLS nor `--provider-dns-insecure` does
/// not start.
#[test]
fn inter_names_reach_a_tls_provider_from_a_cluster_controller() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "dns-ca");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let leaf = |sans: Vec<String>, purpose| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let dir = tempfile::tempdir().unwrap();
    let (server, server_key) = leaf(
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    // A cluster controller's certificate names its cluster: only that cluster's names may be
    // replaced with it.
    let client_of = |cluster: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.subject_alt_names = vec![rcgen::SanType::URI(
            format!("urn:l2sm:cluster:{cluster}").try_into().unwrap(),
        )];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (client, client_key) = client_of("c1");
    let (other, other_key) = client_of("c2");
    for (name, pem) in [
        ("server.pem", server),
        ("server.key", server_key),
        ("client.pem", client),
        ("client.key", client_key),
        ("other.pem", other),
        ("other.key", other_key),
        ("ca.pem", ca.pem()),
    ] {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let grpc = format!("127.0.0.1:{}", free_port());
    let (provider, dns) = start(&[
        "--dns-grpc-listen",
        &grpc,
        "--dns-grpc-tls-cert",
        &path("server.pem"),
        "--dns-grpc-tls-key",
        &path("server.key"),
        "--dns-grpc-client-ca",
        &path("ca.pem"),
    ]);
    assert_eq!(
        provider
            .req("POST", "/onos/vnets/api", Some(r#"{"networkId":"shared"}"#))
            .0,
        204
    );
    let cluster = ControllerProcess::start_args(&[
        "--provider-dns",
        &grpc,
        "--provider-dns-cluster",
        "c1",
        "--provider-dns-tls-ca",
        &path("ca.pem"),
        "--provider-dns-tls-cert",
        &path("client.pem"),
        "--provider-dns-tls-key",
        &path("client.key"),
    ]);
    for n in ["shared", "blue"] {
        let body = format!(r#"{{"networkId":"{n}"}}"#);
        assert_eq!(cluster.req("POST", "/onos/vnets/api", Some(&body)).0, 204);
    }
    // The cluster end of an edge hop (no owner), then pods.
    let hop = format!(
        r#"{{"networkId":"shared","networkEndpoints":["{DPID}/{}"]}}"#,
        0xd001
    );
    assert_eq!(
        cluster.req("POST", "/onos/vnets/api/port", Some(&hop)).0,
        204
    );
    attach(&cluster, "shared", 5, "ns/b", &["10.30.0.2", "fd00:30::2"]);
    attach(&cluster, "blue", 6, "ns/q", &["10.40.0.6"]);
    let until = |what: &str, ok: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !ok() {
            assert!(t.elapsed() < Duration::from_secs(3), "{what} within 3 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        t.elapsed()
    };
    let took = until("b.shared.inter.l2sm at the provider", &|| {
        data(&ask(dns, "b.shared.inter.l2sm", wire::TYPE_A)) == ["10.30.0.2"]
    });
    println!("b.shared.inter.l2sm served over TLS {took:?} after the attach returned");
    assert_eq!(
        data(&ask(dns, "b.shared.inter.l2sm", wire::TYPE_AAAA)),
        ["fd00:30::2"]
    );
    assert_eq!(
        ask(dns, "q.blue.inter.l2sm", wire::TYPE_A).rcode,
        u16::from(wire::RCODE_NXDOMAIN)
    );
    detach(&cluster, "shared", 5);
    until("b.shared.inter.l2sm gone at the provider", &|| {
        ask(dns, "b.shared.inter.l2sm", wire::TYPE_A).rcode == u16::from(wire::RCODE_NXDOMAIN)
    });

    // A controller whose certificate names cluster c2 cannot publish as c1.
    let impostor = ControllerProcess::start_args(&[
        "--provider-dns",
        &grpc,
        "--provider-dns-cluster",
        "c1",
        "--provider-dns-tls-ca",
        &path("ca.pem"),
        "--provider-dns-tls-cert",
        &path("other.pem"),
        "--provider-dns-tls-key",
        &path("other.key"),
    ]);
    let body = r#"{"networkId":"shared"}"#;
    assert_eq!(impostor.req("POST", "/onos/vnets/api", Some(body)).0, 204);
    assert_eq!(
        impostor.req("POST", "/onos/vnets/api/port", Some(&hop)).0,
        204
    );
    attach(&impostor, "shared", 7, "ns/x", &["10.30.0.7"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        ask(dns, "x.shared.inter.l2sm", wire::TYPE_A).rcode,
        u16::from(wire::RCODE_NXDOMAIN),
        "a certificate of c2 published names as c1"
    );

    // Neither TLS nor --provider-dns-insecure: refused at start.
    let out = std::process::Command::new(l2sm_test_support::bin::l2sm())
        .args([
            "controller",
            "--insecure-openflow",
            "--upstream-default-credentials",
            "--provider-dns",
            &grpc,
            "--provider-dns-cluster",
            "c1",
        ])
        .arg("--state-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--openflow-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--provider-dns-insecure"), "{stderr}");
}
