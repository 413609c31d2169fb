//! DNS on the L2S-M network itself (docs/dns.md, "Reaching it from pods"): a network with a
//! CIDR has a reserved DNS address; the switches hand ARP and DNS for it to the controller,
//! which answers on the same network with that network's names only. Lab pods get a
//! `resolv.conf` naming it, so plain glibc (`getent`) resolves pod names from inside a pod.
//! Needs root; fails (never skips) without it.
//!
//! Timings are printed (`--no-capture` shows them): query RTT from a pod, how long after a
//! detach or a move returned the name changed, and the restart window.

use l2sm_controller::dns::wire::{
    build_query, parse_response, Name, RData, TYPE_A, TYPE_AAAA, TYPE_PTR,
};
use l2sm_test_support::lab::{api_call, api_call_with, metrics, TestLab};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Output;
use std::time::{Duration, Instant};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `lab exec POD -- CMD`: (exit code, stdout).
fn exec(lab: &TestLab, pod: &str, cmd: &[&str]) -> (i32, String) {
    let mut args = vec!["lab", "exec", pod, "--"];
    args.extend_from_slice(cmd);
    let o = lab.run(&args);
    (o.status.code().unwrap_or(-1), text(&o))
}

/// The addresses the lab gave `pod` on its first interface.
fn addrs_of(lab: &TestLab, pod: &str) -> Vec<IpAddr> {
    let state = lab.state();
    state["pods"][pod]["attachments"][0]["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("no addresses of {pod}: {state}"))
        .iter()
        .map(|n| {
            let n: ipnet::IpNet = n.as_str().unwrap().parse().unwrap();
            n.addr()
        })
        .collect()
}

fn v4(addrs: &[IpAddr]) -> IpAddr {
    *addrs.iter().find(|a| a.is_ipv4()).expect("an IPv4 address")
}

/// A DNS client living in a pod's network namespace: one thread that entered it, one UDP
/// socket, queries sent to `server:53` one at a time.
struct PodResolver {
    tx: std::sync::mpsc::Sender<(Vec<u8>, Duration)>,
    rx: std::sync::mpsc::Receiver<Option<(Vec<u8>, Duration)>>,
}

/// What came back: rcode and the answers' data (addresses, PTR names), or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    rcode: u16,
    data: Vec<String>,
    rtt: Duration,
}

impl PodResolver {
    fn new(lab: &TestLab, pod: &str, server: impl Into<IpAddr>) -> PodResolver {
        let server = server.into();
        let any = match server {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        PodResolver::from(lab, pod, any, server)
    }

    /// A resolver whose queries come from `source`.
    fn from(
        lab: &TestLab,
        pod: &str,
        source: impl Into<IpAddr>,
        server: impl Into<IpAddr>,
    ) -> PodResolver {
        let (source, server) = (source.into(), server.into());
        let ns = format!("/run/netns/l2sm-{}-p-{pod}", lab.name);
        let (tx, queries) = std::sync::mpsc::channel::<(Vec<u8>, Duration)>();
        let (answers, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).expect("pod namespace");
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let sock = UdpSocket::bind(SocketAddr::from((source, 0))).expect("bind");
            sock.connect(SocketAddr::from((server, 53)))
                .expect("connect");
            let mut buf = [0u8; 2048];
            for (q, timeout) in queries {
                sock.set_read_timeout(Some(timeout)).unwrap();
                // Drop late answers of earlier queries.
                sock.set_nonblocking(true).unwrap();
                while sock.recv(&mut buf).is_ok() {}
                sock.set_nonblocking(false).unwrap();
                let start = Instant::now();
                let got = sock.send(&q).ok().and_then(|_| loop {
                    match sock.recv(&mut buf) {
                        Ok(n) if buf[..2] == q[..2] => break Some(buf[..n].to_vec()),
                        Ok(_) => continue,
                        Err(_) => break None,
                    }
                });
                if answers.send(got.map(|a| (a, start.elapsed()))).is_err() {
                    return;
                }
            }
        });
        PodResolver { tx, rx }
    }

    fn ask_with(&self, name: &str, qtype: u16, timeout: Duration) -> Option<Answer> {
        let id = rand_id();
        let q = build_query(id, &Name::parse(name).unwrap(), qtype, true);
        self.tx.send((q, timeout)).unwrap();
        let (msg, rtt) = self.rx.recv().unwrap()?;
        let r = parse_response(&msg).expect("a parseable answer");
        Some(Answer {
            rcode: r.rcode,
            data: r
                .answers
                .iter()
                .map(|a| match &a.data {
                    RData::Addr(ip) => ip.to_string(),
                    RData::Ptr(n) => n.to_string(),
                    other => format!("{other:?}"),
                })
                .collect(),
            rtt,
        })
    }

    fn ask(&self, name: &str, qtype: u16) -> Answer {
        // The first query of a pod also waits for its ARP answer.
        self.ask_with(name, qtype, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("no answer for {name}"))
    }
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0x4c32);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn reverse(ip: IpAddr) -> String {
    Name::reverse(ip).to_string()
}

/// `l2sm_network_dns_drops_total{reason}` in a metrics text.
fn drops(m: &str, reason: &str) -> u64 {
    let prefix = format!("l2sm_network_dns_drops_total{{reason=\"{reason}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {reason} drops counter in {m}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn pods_resolve_their_own_networks_names_through_the_network() {
    let lab = TestLab::up("dn", 2);
    lab.ok(&[
        "network",
        "create",
        "blue",
        "--cidr",
        "10.10.0.0/24",
        "--cidr",
        "fd00:10::/64",
    ]);
    lab.ok(&["network", "create", "red", "--cidr", "10.20.0.0/24"]);
    lab.ok(&["network", "create", "quarantine", "--cidr", "10.30.0.0/24"]);
    lab.ok(&["network", "create", "plain"]);

    // The reserved address: in the network view, refused as a static address.
    let (code, blue) = api_call(&lab, "GET", "/api/v1/networks/blue");
    assert_eq!(code, 200, "{blue}");
    assert_eq!(blue["dns"]["address"], "10.10.0.254", "{blue}");
    assert_eq!(
        blue["dns"]["address6"], "fd00:10::ffff:ffff:ffff:ffff",
        "{blue}"
    );
    let vni = blue["vni"].as_u64().unwrap();
    assert_eq!(
        blue["dns"]["mac"],
        format!(
            "02:4c:32:{:02x}:{:02x}:{:02x}",
            (vni >> 16) & 0xff,
            (vni >> 8) & 0xff,
            vni & 0xff
        )
    );
    let list = lab.ok(&["network", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("blue ") && l.contains(" 10.10.0.254 ")),
        "{list}"
    );
    let (_, plain) = api_call(&lab, "GET", "/api/v1/networks/plain");
    assert!(
        plain.get("dns").is_none(),
        "L2-only: no DNS address: {plain}"
    );
    let o = lab.run(&[
        "attach",
        "--node",
        "n1",
        "--pod",
        "z",
        "--network",
        "blue",
        "--ip",
        "10.10.0.254/24",
    ]);
    assert!(!o.status.success(), "the DNS address was given to a pod");
    assert!(text(&o).contains("DNS address"), "{}", text(&o));
    assert!(
        !std::path::Path::new(&format!("/etc/netns/l2sm-{}-p-z", lab.name)).exists(),
        "a refused attach left a resolv.conf"
    );

    for (node, pod, net) in [
        ("n1", "a", "blue"),
        ("n2", "b", "blue"),
        ("n1", "c", "blue"),
        ("n2", "r", "red"),
        ("n1", "q", "quarantine"),
    ] {
        lab.ok(&["attach", "--node", node, "--pod", pod, "--network", net]);
    }
    // A pod on an L2-only network gets no resolv.conf.
    lab.attach("n2", "p", "plain", "10.99.0.1/24");
    let etc = |pod: &str| format!("/etc/netns/l2sm-{}-p-{pod}/resolv.conf", lab.name);
    assert!(!std::path::Path::new(&etc("p")).exists());
    let conf = std::fs::read_to_string(etc("a")).expect("a's resolv.conf");
    assert!(conf.contains("nameserver 10.10.0.254"), "{conf}");
    assert!(
        conf.contains("nameserver fd00:10::ffff:ffff:ffff:ffff"),
        "{conf}"
    );
    assert!(std::fs::read_to_string(etc("r"))
        .unwrap()
        .contains("nameserver 10.20.0.254"));

    // glibc in a blue pod: every blue pod, both families, and reverse lookups.
    let (a, b, c) = (
        addrs_of(&lab, "a"),
        addrs_of(&lab, "b"),
        addrs_of(&lab, "c"),
    );
    assert_eq!(a.len(), 2, "dual-stack: {a:?}");
    for (name, want) in [("a", &a), ("b", &b), ("c", &c)] {
        let fqdn = format!("{name}.blue.l2sm");
        let (code, out) = exec(&lab, "a", &["getent", "ahosts", &fqdn]);
        assert_eq!(code, 0, "getent ahosts {fqdn}: {out}");
        for ip in want.iter() {
            assert!(
                out.contains(&ip.to_string()),
                "{fqdn}: {ip} missing in {out}"
            );
        }
    }
    let (code, out) = exec(&lab, "b", &["getent", "hosts", "a"]);
    assert_eq!(code, 0, "search blue.l2sm: {out}");
    for ip in &b {
        let (code, out) = exec(&lab, "a", &["getent", "hosts", &ip.to_string()]);
        assert_eq!(code, 0, "PTR {ip}: {out}");
        assert!(out.contains("b.blue.l2sm"), "PTR {ip}: {out}");
    }

    // The same over IPv6 (neighbour discovery for the IPv6 DNS address, UDP/IPv6), once the
    // pod's IPv6 address is past duplicate address detection.
    let six = PodResolver::new(
        &lab,
        "a",
        "fd00:10::ffff:ffff:ffff:ffff".parse::<IpAddr>().unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Some(r) = six.ask_with("b.blue.l2sm", TYPE_AAAA, Duration::from_millis(500)) {
            break r;
        }
        assert!(Instant::now() < deadline, "no answer over IPv6");
    };
    let b6: Vec<String> = b
        .iter()
        .filter(|a| a.is_ipv6())
        .map(|a| a.to_string())
        .collect();
    assert_eq!(first.data, b6);
    let r = six.ask("r.red.l2sm", TYPE_A);
    assert_eq!(r.rcode, 3, "red's name over IPv6 from blue: {r:?}");
    let o = lab.run(&[
        "attach",
        "--node",
        "n1",
        "--pod",
        "z6",
        "--network",
        "blue",
        "--ip",
        "fd00:10::ffff:ffff:ffff:ffff/64",
    ]);
    assert!(
        !o.status.success(),
        "the IPv6 DNS address was given to a pod"
    );
    assert!(text(&o).contains("DNS address"), "{}", text(&o));

    // A red pod: NXDOMAIN for blue's names and addresses, through its own network.
    let (code, out) = exec(&lab, "r", &["getent", "hosts", "b.blue.l2sm"]);
    assert_eq!(code, 2, "a red pod resolved a blue name: {out}");
    let red = PodResolver::new(&lab, "r", Ipv4Addr::new(10, 20, 0, 254));
    assert_eq!(
        red.ask("r.red.l2sm", TYPE_A).data,
        [v4(&addrs_of(&lab, "r")).to_string()]
    );
    for (name, t) in [
        ("b.blue.l2sm".to_string(), TYPE_A),
        ("blue.l2sm".to_string(), TYPE_A),
        (reverse(v4(&b)), TYPE_PTR),
        (reverse(b[1]), TYPE_PTR),
    ] {
        let r = red.ask(&name, t);
        assert_eq!((r.rcode, r.data.len()), (3, 0), "{name} from red: {r:?}");
    }

    // Detach: the name is gone within 100 ms of the command returning.
    let blue_r = PodResolver::new(&lab, "a", Ipv4Addr::new(10, 10, 0, 254));
    assert_eq!(blue_r.ask("c.blue.l2sm", TYPE_A).rcode, 0);
    lab.ok(&["detach", "--pod", "c"]);
    let returned = Instant::now();
    let gone = blue_r.ask("c.blue.l2sm", TYPE_A);
    let detach_lag = returned.elapsed();
    assert_eq!(
        gone.rcode, 3,
        "c still resolves right after its detach: {gone:?}"
    );
    assert!(
        detach_lag < Duration::from_millis(100),
        "detach lag {detach_lag:?}"
    );
    assert!(
        !std::path::Path::new(&etc("c")).exists(),
        "detach left c's resolv.conf"
    );

    // Move (quarantine): b's name leaves blue and appears in quarantine within 100 ms.
    let (code, list) = api_call(&lab, "GET", "/api/v1/attachments");
    assert_eq!(code, 200);
    let port = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["pod"].as_str().is_some_and(|p| p.ends_with("/b")))
        .and_then(|x| x["port"].as_str())
        .unwrap_or_else(|| panic!("no attachment of b: {list}"))
        .to_string();
    let (dpid, number) = port.rsplit_once('/').unwrap();
    let quarantine = PodResolver::new(&lab, "q", Ipv4Addr::new(10, 30, 0, 254));
    assert_eq!(quarantine.ask("b.quarantine.l2sm", TYPE_A).rcode, 3);
    let (code, reply) = api_call_with(
        &lab,
        "POST",
        &format!("/api/v1/switches/{dpid}/ports/{number}/move"),
        Some(r#"{"from":"blue","to":"quarantine"}"#),
    );
    assert_eq!(code, 200, "{reply}");
    let returned = Instant::now();
    let old = blue_r.ask("b.blue.l2sm", TYPE_A);
    let new = quarantine.ask("b.quarantine.l2sm", TYPE_A);
    let move_lag = returned.elapsed();
    assert_eq!(old.rcode, 3, "b still in blue after the move: {old:?}");
    assert_eq!(
        new.data,
        [v4(&b).to_string()],
        "b not in quarantine after the move"
    );
    assert!(
        move_lag < Duration::from_millis(100),
        "move lag {move_lag:?}"
    );

    // Query RTT from a pod, through the switch and the controller.
    let mut rtts = Vec::new();
    for _ in 0..200 {
        let r = blue_r.ask("a.blue.l2sm", TYPE_A);
        assert_eq!(r.data, [v4(&a).to_string()]);
        rtts.push(r.rtt);
    }
    rtts.sort();
    let (p50, p99) = (percentile(&rtts, 0.5), percentile(&rtts, 0.99));
    eprintln!(
        "in-network DNS: RTT p50 {p50:?} p99 {p99:?} max {:?} (200 queries); detach lag {detach_lag:?}, move lag {move_lag:?}",
        rtts[rtts.len() - 1]
    );
    assert!(p50 < Duration::from_millis(20), "RTT p50 {p50:?}");

    // Garbage is dropped and counted: a query that is no DNS message gets silence.
    let before = metrics(&lab);
    let silent = |m: &str| drops(m, "silent");
    let ns = format!("/run/netns/l2sm-{}-p-a", lab.name);
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(&[1, 2, 3], "10.10.0.254:53").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(s.recv(&mut buf).is_err(), "garbage got an answer");
    })
    .join()
    .unwrap();
    assert_eq!(silent(&metrics(&lab)), silent(&before) + 1);

    // Broken frames from a pod (raw socket): each kind the switch punts is dropped and
    // counted by the controller, a VLAN-tagged query and a fragment are never punted, 300 random payloads in
    // a burst hit the port's bound, and the controller answers as before afterwards.
    let before = metrics(&lab);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dns_garbage.py");
    let blue_mac = blue["dns"]["mac"].as_str().unwrap();
    let (code, out) = exec(
        &lab,
        "a",
        &[
            "python3",
            script,
            "net1",
            &v4(&a).to_string(),
            "10.10.0.254",
            blue_mac,
            "7",
        ],
    );
    assert_eq!(code, 0, "{out}");
    std::thread::sleep(Duration::from_millis(500));
    let after = metrics(&lab);
    for reason in ["bad_udp", "bad_ip", "bad_source", "rate_limited"] {
        assert!(
            drops(&after, reason) > drops(&before, reason),
            "no {reason} drop counted"
        );
    }
    // Neither is punted: the flow wants untagged frames, and OVS gives fragments no UDP ports
    // (nor does it parse past an IPv4 total length beyond the frame: that one is not punted
    // either, so the unit tests cover the controller's truncation checks).
    assert_eq!(
        drops(&after, "vlan"),
        drops(&before, "vlan"),
        "a tagged frame was punted"
    );
    assert_eq!(
        drops(&after, "fragment"),
        drops(&before, "fragment"),
        "a fragment was punted"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(blue_r.ask("a.blue.l2sm", TYPE_A).data, [v4(&a).to_string()]);

    // Port security still holds on the DNS path: a secured pod resolves from its own
    // address, and a query from an address it does not own is dropped before the punt.
    lab.ok(&[
        "network",
        "create",
        "sec",
        "--cidr",
        "10.40.0.0/24",
        "--port-security",
    ]);
    lab.ok(&["attach", "--node", "n1", "--pod", "s1", "--network", "sec"]);
    lab.ok(&["attach", "--node", "n2", "--pod", "s2", "--network", "sec"]);
    let (code, out) = exec(&lab, "s1", &["getent", "hosts", "s2.sec.l2sm"]);
    assert_eq!(code, 0, "a secured pod cannot resolve: {out}");
    let (code, out) = exec(
        &lab,
        "s1",
        &["ip", "addr", "add", "10.40.0.77/24", "dev", "net1"],
    );
    assert_eq!(code, 0, "{out}");
    let spoofed = PodResolver::from(
        &lab,
        "s1",
        Ipv4Addr::new(10, 40, 0, 77),
        Ipv4Addr::new(10, 40, 0, 254),
    );
    let before = metrics(&lab);
    for _ in 0..3 {
        assert_eq!(
            spoofed.ask_with("s2.sec.l2sm", TYPE_A, Duration::from_millis(300)),
            None,
            "a query from an address the secured pod does not own was answered"
        );
    }
    let answered = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("l2sm_network_dns_answers_total{kind=\"dns\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no answers counter in {m}"))
    };
    assert_eq!(
        answered(&metrics(&lab)),
        answered(&before),
        "spoofed queries reached the controller"
    );

    // The first network with a DNS address counts, and the file follows detach.
    lab.attach("n1", "m", "plain", "10.99.0.2/24");
    assert!(!std::path::Path::new(&etc("m")).exists());
    lab.ok(&["attach", "--node", "n1", "--pod", "m", "--network", "red"]);
    let conf = std::fs::read_to_string(etc("m")).expect("m's resolv.conf");
    assert!(
        conf.contains("nameserver 10.20.0.254") && conf.contains("search red.l2sm"),
        "{conf}"
    );
    lab.ok(&["detach", "--pod", "m", "--network", "red"]);
    assert!(
        !std::path::Path::new(&etc("m")).exists(),
        "resolv.conf outlived red"
    );

    // Lab down removes the resolv.conf files it wrote.
    lab.ok(&["lab", "down"]);
    for pod in ["a", "b", "r", "q", "s1", "s2"] {
        assert!(
            !std::path::Path::new(&etc(pod)).exists(),
            "{pod}'s resolv.conf left"
        );
    }
}

#[test]
fn a_controller_restart_keeps_every_name() {
    let lab = TestLab::up("dr", 1);
    lab.ok(&["network", "create", "blue", "--cidr", "10.10.0.0/24"]);
    lab.ok(&["attach", "--node", "n1", "--pod", "a", "--network", "blue"]);
    lab.ok(&["attach", "--node", "n1", "--pod", "b", "--network", "blue"]);
    let b = v4(&addrs_of(&lab, "b")).to_string();
    let resolver = PodResolver::new(&lab, "a", Ipv4Addr::new(10, 10, 0, 254));
    assert_eq!(
        resolver.ask("b.blue.l2sm", TYPE_A).data,
        std::slice::from_ref(&b)
    );

    // 10 queries/s (90 ms timeout each) from before the restart until well after it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let b2 = b.clone();
    let asker = std::thread::spawn(move || {
        let mut log = Vec::new();
        let start = Instant::now();
        let mut k = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let at = start + Duration::from_millis(100) * k;
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let ok = resolver
                .ask_with("b.blue.l2sm", TYPE_A, Duration::from_millis(90))
                .is_some_and(|r| r.data == [b2.clone()]);
            log.push((Instant::now(), ok));
            k += 1;
        }
        log
    });
    std::thread::sleep(Duration::from_secs(2));
    let restart_at = Instant::now();
    lab.ok(&["lab", "restart", "controller"]);
    let returned = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let log = asker.join().unwrap();
    let failed: Vec<Instant> = log.iter().filter(|(_, ok)| !ok).map(|(t, _)| *t).collect();
    let window = match (failed.first(), failed.last()) {
        (Some(f), Some(l)) => l.duration_since(*f) + Duration::from_millis(100),
        _ => Duration::ZERO,
    };
    // Failures form one window around the restart (how many queries inside it were still
    // answered shows whether it flapped).
    let in_window = |t: &Instant| {
        failed
            .first()
            .zip(failed.last())
            .is_some_and(|(f, l)| t >= f && t <= l)
    };
    let inside_ok = log.iter().filter(|(t, ok)| *ok && in_window(t)).count();
    eprintln!(
        "restart: {} of {} queries failed at 10/s; window {window:?} (restart command took {:?}); {inside_ok} answered inside the window",
        failed.len(),
        log.len(),
        returned.duration_since(restart_at)
    );
    assert!(
        failed
            .first()
            .is_none_or(|f| *f >= restart_at && *f <= returned + Duration::from_secs(1)),
        "failures started away from the restart"
    );
    // Every query in the last 3 s was answered, with the same record.
    let late = log
        .iter()
        .filter(|(t, _)| *t > returned + Duration::from_secs(3))
        .collect::<Vec<_>>();
    assert!(
        late.len() >= 20 && late.iter().all(|(_, ok)| *ok),
        "{late:?}"
    );
}
