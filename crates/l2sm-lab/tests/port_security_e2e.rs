//! Port security in the lab: real namespaces, Open vSwitch, agent and controller. A hostile pod
//! that changes its MAC or uses a neighbour's addresses (ARP, IPv4, IPv6, ND) reaches no one,
//! poisons no cache, and its drops are counted; the victim's traffic goes on; reverted, the
//! pod works again. A pod of the same network with port security turned off (its own
//! override) sends the same frames and does poison: the frames and the observations are
//! sound. Needs root; fails (never skips) without it.
//!
//! The hostile frames are built here and sent from an `AF_PACKET` socket inside the pod's
//! namespace (on a thread of its own): no packet tool beyond what `scripts/deps.sh` installs.
#![allow(unsafe_code)] // one `sendto` on an AF_PACKET socket (see `send_raw`)

use l2sm_test_support::lab::{metrics, Capture, TestLab};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

const NET: &str = "sec";
/// (pod, node, IPv4, IPv6)
const A: (&str, &str, &str, &str) = ("a", "n1", "10.30.0.1", "fd30::1");
const B: (&str, &str, &str, &str) = ("b", "n2", "10.30.0.2", "fd30::2");
/// The hostile pod, beside `a` on n1.
const C: (&str, &str, &str, &str) = ("c", "n1", "10.30.0.3", "fd30::3");
/// The same frames from a pod whose port security is off.
const D: (&str, &str, &str, &str) = ("d", "n2", "10.30.0.4", "fd30::4");
const SPOOF_MAC: [u8; 6] = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];

fn attach(lab: &TestLab, (pod, node, v4, v6): (&str, &str, &str, &str), extra: &[&str]) -> String {
    let (v4, v6) = (format!("{v4}/24"), format!("{v6}/64"));
    let mut args = vec![
        "attach",
        "--node",
        node,
        "--pod",
        pod,
        "--network",
        NET,
        "--ip",
        &v4,
        "--ip",
        &v6,
    ];
    args.extend_from_slice(extra);
    let out = lab.ok(&args);
    // "... switch port of:<dpid>/<n>"
    out.split_whitespace()
        .last()
        .expect("the attach output names the switch port")
        .to_string()
}

fn exec(lab: &TestLab, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["lab", "exec", pod, "--"];
    args.extend_from_slice(cmd);
    let out = lab.run(&args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mac_of(lab: &TestLab, pod: &str) -> [u8; 6] {
    // "N: net1@ifM: <...> ... link/ether xx:xx:xx:xx:xx:xx brd ..."
    let text = exec(lab, pod, &["ip", "-o", "link", "show", "net1"]);
    let word = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {pod}: {text:?}"));
    let mut mac = [0u8; 6];
    for (i, p) in word.split(':').enumerate() {
        mac[i] = u8::from_str_radix(p, 16).expect("a MAC");
    }
    mac
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// What `pod`'s neighbour table says about `ip`.
fn neigh(lab: &TestLab, pod: &str, ip: &str) -> String {
    exec(lab, pod, &["ip", "neigh", "show", ip])
}

/// Retries `ping` (IPv4 or IPv6) for a few seconds: IPv6 addresses need their DAD first.
fn reaches(lab: &TestLab, from: &str, ip: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        if lab.exec_ok(from, &["ping", "-c", "1", "-W", "1", "-q", ip]) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The drop counter of `port` on `/metrics` (0 while the series is absent).
fn drops(lab: &TestLab, port: &str) -> f64 {
    let prefix = format!("l2sm_port_security_drops_total{{network=\"{NET}\",port=\"{port}\"}} ");
    metrics(lab)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0.0)
}

/// Waits (the controller reads the counters every 5 s) until `port`'s drop counter is above
/// `above`; returns it.
fn drops_above(lab: &TestLab, port: &str, above: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = drops(lab, port);
        if n > above || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ---- frames ----

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ARP reply "`spa` is at `sha`" to `tha`/`tpa`, sent from `src`.
fn arp_reply(
    dst: [u8; 6],
    src: [u8; 6],
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4, 0, 2];
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa.octets());
    p.extend_from_slice(&tha);
    p.extend_from_slice(&tpa.octets());
    ether(dst, src, 0x0806, &p)
}

/// An ICMP echo request `src_ip` -> `dst_ip`.
fn ipv4_ping(dst: [u8; 6], src: [u8; 6], src_ip: Ipv4Addr, dst_ip: Ipv4Addr) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(b"port-security");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let len = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&len.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&src_ip.octets());
    ip.extend_from_slice(&dst_ip.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    ether(dst, src, 0x0800, &ip)
}

/// An IPv6 packet carrying the ICMPv6 message `icmp` (checksum filled in).
fn ipv6_icmp(
    dst: [u8; 6],
    src: [u8; 6],
    src_ip: Ipv6Addr,
    dst_ip: Ipv6Addr,
    hop_limit: u8,
    mut icmp: Vec<u8>,
) -> Vec<u8> {
    let len = icmp.len() as u16;
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src_ip.octets());
    pseudo.extend_from_slice(&dst_ip.octets());
    pseudo.extend_from_slice(&u32::from(len).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&icmp);
    let c = checksum(&pseudo);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&len.to_be_bytes());
    ip.extend_from_slice(&[58, hop_limit]);
    ip.extend_from_slice(&src_ip.octets());
    ip.extend_from_slice(&dst_ip.octets());
    ip.extend_from_slice(&icmp);
    ether(dst, src, 0x86dd, &ip)
}

fn ipv6_ping(dst: [u8; 6], src: [u8; 6], src_ip: Ipv6Addr, dst_ip: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![128, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(b"port-security");
    ipv6_icmp(dst, src, src_ip, dst_ip, 64, icmp)
}

/// An unsolicited neighbour advertisement with the override flag: "`target` is at `tll`".
fn neighbour_advert(
    dst: [u8; 6],
    src: [u8; 6],
    src_ip: Ipv6Addr,
    dst_ip: Ipv6Addr,
    target: Ipv6Addr,
    tll: [u8; 6],
) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&tll);
    ipv6_icmp(dst, src, src_ip, dst_ip, 255, icmp)
}

fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

/// Sends `frames` out of `net1` of `pod`, from an AF_PACKET socket opened in the pod's
/// namespace on a thread of its own (setns changes only the calling thread).
fn send_raw(lab: &TestLab, pod: &str, frames: Vec<Vec<u8>>) {
    let ns = format!("/run/netns/l2sm-{}-p-{pod}", lab.name);
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).expect("the pod's namespace");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let name = std::ffi::CString::new("net1").unwrap();
        // SAFETY: plain libc calls with valid pointers and sizes; the descriptor is closed.
        unsafe {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let index = libc::if_nametoindex(name.as_ptr());
            assert!(index > 0, "no net1 in {ns}");
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = index as i32;
            addr.sll_halen = 6;
            for frame in &frames {
                addr.sll_addr[..6].copy_from_slice(&frame[..6]);
                let sent = libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(
                    sent,
                    frame.len() as isize,
                    "sendto: {}",
                    std::io::Error::last_os_error()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            libc::close(fd);
        }
    })
    .join()
    .expect("the sender thread");
}

/// The hostile frames of `from` (MAC `mac`) claiming `victim`'s addresses towards `a`.
fn spoofing_frames(mac: [u8; 6], a_mac: [u8; 6], victim: (&str, &str, &str, &str)) -> Vec<Vec<u8>> {
    let a4: Ipv4Addr = A.2.parse().unwrap();
    let a6: Ipv6Addr = A.3.parse().unwrap();
    let v4: Ipv4Addr = victim.2.parse().unwrap();
    let v6: Ipv6Addr = victim.3.parse().unwrap();
    let bcast = [0xff; 6];
    let mut frames = Vec::new();
    for _ in 0..3 {
        // Gratuitous ARP reply, and a unicast one to a: "victim's IPv4 is at my MAC".
        frames.push(arp_reply(bcast, mac, mac, v4, bcast, v4));
        frames.push(arp_reply(a_mac, mac, mac, v4, a_mac, a4));
        // IPv4 and IPv6 packets with the victim's source.
        frames.push(ipv4_ping(a_mac, mac, v4, a4));
        frames.push(ipv6_ping(a_mac, mac, v6, a6));
        // Neighbour advertisements for the victim's IPv6 address, from the sender's own
        // link-local address (a source it may use) and from the victim's address.
        frames.push(neighbour_advert(a_mac, mac, link_local(mac), a6, v6, mac));
        frames.push(neighbour_advert(a_mac, mac, v6, a6, v6, mac));
    }
    frames
}

/// tcpdump filter for what `spoofing_frames` sends from `mac` about `victim`.
fn spoof_filter(mac: [u8; 6], victim: (&str, &str, &str, &str)) -> String {
    let spa = victim
        .2
        .parse::<Ipv4Addr>()
        .unwrap()
        .octets()
        .map(|b| format!("{b:02x}"))
        .join("");
    format!(
        "ether src {} and ( ( arp and arp[14:4] = 0x{spa} ) or src host {} or src host {} or ( icmp6 and ip6[40] = 136 ) )",
        mac_text(mac),
        victim.2,
        victim.3
    )
}

#[test]
fn a_pod_with_port_security_cannot_use_another_mac_or_address() {
    let lab = TestLab::up("ps", 2);
    lab.ok(&[
        "network",
        "create",
        NET,
        "--cidr",
        "10.30.0.0/24",
        "--cidr",
        "fd30::/64",
        "--port-security",
    ]);
    attach(&lab, A, &[]);
    attach(&lab, B, &[]);
    let c_port = attach(&lab, C, &[]);
    attach(&lab, D, &["--port-security", "off"]);
    let (a_mac, b_mac, c_mac, d_mac) = (
        mac_of(&lab, "a"),
        mac_of(&lab, "b"),
        mac_of(&lab, "c"),
        mac_of(&lab, "d"),
    );

    // Port security admits what the pods legitimately send: ARP, IPv4, ND (with DAD), IPv6.
    for (from, to) in [("a", B), ("a", C), ("c", B), ("b", A), ("a", D)] {
        assert!(reaches(&lab, from, to.2), "{from} cannot reach {}", to.2);
        assert!(reaches(&lab, from, to.3), "{from} cannot reach {}", to.3);
    }
    assert!(neigh(&lab, "a", B.2).contains(&mac_text(b_mac)));
    assert!(neigh(&lab, "a", B.3).contains(&mac_text(b_mac)));
    let before = drops(&lab, &c_port);

    // The victim b keeps talking to a through everything that follows.
    let victim = std::thread::scope(|s| {
        let victim = s.spawn(|| {
            exec(
                &lab,
                "b",
                &["ping", "-c", "50", "-i", "0.2", "-W", "1", "-q", A.2],
            )
        });

        // 1. c changes its MAC: it reaches no one.
        let spoof = mac_text(SPOOF_MAC);
        exec(&lab, "c", &["ip", "link", "set", "net1", "address", &spoof]);
        exec(&lab, "c", &["ip", "neigh", "flush", "all"]);
        for to in [A, B] {
            assert!(
                lab.blocked("c", to.2),
                "c with a foreign MAC reaches {}",
                to.0
            );
        }
        exec(
            &lab,
            "c",
            &["ip", "link", "set", "net1", "address", &mac_text(c_mac)],
        );

        // 2. c claims b's addresses (ARP, IPv4, IPv6, ND); a sees none of it and its caches
        // keep b's MAC.
        let cap = Capture::start(&lab, "a", "net1", 4, &spoof_filter(c_mac, B));
        std::thread::sleep(Duration::from_millis(1500));
        send_raw(&lab, "c", spoofing_frames(c_mac, a_mac, B));
        let seen = cap.output();
        assert!(seen.trim().is_empty(), "a saw c's spoofed frames:\n{seen}");
        assert!(
            neigh(&lab, "a", B.2).contains(&mac_text(b_mac)),
            "a's ARP cache for b was changed: {}",
            neigh(&lab, "a", B.2)
        );
        assert!(
            neigh(&lab, "a", B.3).contains(&mac_text(b_mac)),
            "a's neighbour entry for b was changed: {}",
            neigh(&lab, "a", B.3)
        );
        victim.join().expect("the victim's ping")
    });
    let received: u32 = victim
        .split(" received")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("ping summary: {victim}"));
    assert!(
        received >= 49,
        "b's traffic with a suffered: {received}/50 received\n{victim}"
    );

    // 3. Every one of those frames was dropped and counted at c's port.
    let sent = spoofing_frames(c_mac, a_mac, B).len() as f64;
    let counted = drops_above(&lab, &c_port, before + sent - 1.0);
    assert!(
        counted >= before + sent,
        "drops of c's port: {before} before, {counted} after {sent} spoofed frames"
    );

    // 4. c reverted (own MAC, own addresses) works again.
    for to in [A, B] {
        assert!(reaches(&lab, "c", to.2), "reverted c cannot reach {}", to.0);
        assert!(reaches(&lab, "c", to.3), "reverted c cannot reach {}", to.3);
    }

    // 5. Control: d, on the same network with port security off, sends the same frames
    // claiming c's addresses: they reach a and poison its caches. Without port security c's
    // frames above would have done the same to b's entries.
    assert!(neigh(&lab, "a", C.2).contains(&mac_text(c_mac)));
    let cap = Capture::start(&lab, "a", "net1", 4, &spoof_filter(d_mac, C));
    std::thread::sleep(Duration::from_millis(1500));
    send_raw(&lab, "d", spoofing_frames(d_mac, a_mac, C));
    let seen = cap.output();
    assert!(
        seen.contains(C.2) && seen.contains(C.3),
        "a should see d's spoofed frames (port security off for d):\n{seen}"
    );
    assert!(
        neigh(&lab, "a", C.2).contains(&mac_text(d_mac)),
        "d's ARP replies should have poisoned a's cache: {}",
        neigh(&lab, "a", C.2)
    );
    assert!(
        neigh(&lab, "a", C.3).contains(&mac_text(d_mac)),
        "d's advertisements should have poisoned a's neighbour table: {}",
        neigh(&lab, "a", C.3)
    );
}
