//! Attach latency of the node agent, next to the same work done with `ip` + `ovs-vsctl` in the
//! same run, and time to reconcile a 50-link topology. Needs root (it builds a lab named
//! `bagent`). Run: `cargo bench -p l2sm --bench agent_attach`.

use l2sm_agent_api::{call, AgentRequest, AttachRequest};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const LAB: &str = "bagent";
const N: usize = 100;

fn l2sm(args: &[&str]) {
    let out = Command::new(l2sm_test_support::bin::l2sm())
        .args(["--lab", LAB])
        .args(args)
        .output()
        .expect("l2sm");
    assert!(
        out.status.success(),
        "l2sm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sh(cmd: &[&str]) {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().expect(cmd[0]);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pod_ns(i: usize) -> String {
    format!("l2sm-{LAB}-p-b{i}")
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx]
}

fn report(label: &str, mut lat: Vec<Duration>, total: Duration) -> Duration {
    let p50 = percentile(&mut lat, 0.5);
    let p99 = percentile(&mut lat, 0.99);
    println!(
        "{label:<44} p50 {:>7.1} ms  p99 {:>7.1} ms  total {:>7.0} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
    p50
}

fn socket() -> PathBuf {
    PathBuf::from(format!("/run/l2sm/lab/{LAB}/n1/agent.sock"))
}

fn attach(i: usize) -> Duration {
    let req = AgentRequest::Attach(AttachRequest {
        attachment_id: format!("bench/{i}"),
        netns: PathBuf::from(format!("/run/netns/{}", pod_ns(i))),
        ifname: "net1".into(),
        network: "blue".into(),
        mac: None,
        ips: vec![format!("10.{}.{}.{}/8", 60, i / 250, i % 250 + 1)
            .parse()
            .unwrap()],
        routes: vec![],
        mtu: None,
        pod: None,
        port_security: None,
        mirror: false,
    });
    let t = Instant::now();
    call(&socket(), &req, Duration::from_secs(60)).expect("attach");
    t.elapsed()
}

fn detach_all() {
    for i in 0..N {
        let req = AgentRequest::Detach {
            attachment_id: format!("bench/{i}"),
        };
        call(&socket(), &req, Duration::from_secs(60)).expect("detach");
    }
}

fn bridge() -> String {
    let out = Command::new(l2sm_test_support::bin::l2sm())
        .args(["--lab", LAB, "lab", "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|w| w.starts_with("br-"))
        .expect("bridge name")
        .to_string()
}

/// The same plumbing with the command-line tools: veth, address, up, `ovs-vsctl add-port`.
fn shell_attach(i: usize, bridge: &str, db: &str) -> Duration {
    let node = format!("l2sm-{LAB}-n1");
    let host = format!("shb{i}");
    let t = Instant::now();
    let pod = pod_ns(i);
    sh(&[
        "ip", "-n", &node, "link", "add", &host, "mtu", "1450", "type", "veth", "peer", "name",
        "net1", "mtu", "1450", "netns", &pod,
    ]);
    sh(&[
        "ip",
        "-n",
        &pod,
        "addr",
        "add",
        &format!("10.61.{}.{}/8", i / 250, i % 250 + 1),
        "dev",
        "net1",
    ]);
    sh(&["ip", "-n", &pod, "link", "set", "net1", "up"]);
    sh(&["ip", "-n", &node, "link", "set", &host, "up"]);
    sh(&[
        "ovs-vsctl",
        &format!("--db=unix:{db}"),
        "add-port",
        bridge,
        &host,
        "--",
        "set",
        "interface",
        &host,
        &format!("ofport_request={}", 2000 + i),
    ]);
    t.elapsed()
}

fn shell_detach(i: usize, bridge: &str, db: &str) {
    let host = format!("shb{i}");
    sh(&[
        "ovs-vsctl",
        &format!("--db=unix:{db}"),
        "del-port",
        bridge,
        &host,
    ]);
    sh(&["ip", "-n", &format!("l2sm-{LAB}-n1"), "link", "del", &host]);
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("agent_attach benchmark needs root");
        std::process::exit(1);
    }
    let _ = Command::new(l2sm_test_support::bin::l2sm())
        .args(["--lab", LAB, "lab", "down"])
        .output();
    l2sm(&["lab", "up", "--nodes", "1"]);
    let result = std::panic::catch_unwind(run);
    let _ = Command::new(l2sm_test_support::bin::l2sm())
        .args(["--lab", LAB, "lab", "down"])
        .output();
    if result.is_err() {
        std::process::exit(1);
    }
}

fn run() {
    l2sm(&["network", "create", "blue"]);
    for i in 0..N {
        l2sm_netns::create_named(&pod_ns(i)).expect("pod namespace");
    }
    let db = format!("/run/l2sm/lab/{LAB}/n1/db.sock");
    let bridge = bridge();
    println!("attach, {N} pods on one node (lab, OVS userspace datapath)");

    let t = Instant::now();
    let lat: Vec<Duration> = (0..N).map(attach).collect();
    let ours_seq = report("l2sm agent, sequential", lat, t.elapsed());
    detach_all();

    let t = Instant::now();
    let lat: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..N).map(|i| s.spawn(move || attach(i))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ours_conc_total = t.elapsed();
    report("l2sm agent, 100 concurrent", lat, ours_conc_total);
    detach_all();

    let t = Instant::now();
    let lat: Vec<Duration> = (0..N).map(|i| shell_attach(i, &bridge, &db)).collect();
    let shell_seq = report("ip + ovs-vsctl, sequential", lat, t.elapsed());
    for i in 0..N {
        shell_detach(i, &bridge, &db);
    }
    let t = Instant::now();
    let lat: Vec<Duration> = std::thread::scope(|s| {
        let (bridge, db) = (&bridge, &db);
        let hs: Vec<_> = (0..N)
            .map(|i| s.spawn(move || shell_attach(i, bridge, db)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let shell_conc_total = t.elapsed();
    report("ip + ovs-vsctl, 100 concurrent", lat, shell_conc_total);
    for i in 0..N {
        shell_detach(i, &bridge, &db);
    }
    println!(
        "ratio ip+ovs-vsctl / l2sm: sequential p50 {:.2}x, 100 concurrent total {:.2}x",
        shell_seq.as_secs_f64() / ours_seq.as_secs_f64(),
        shell_conc_total.as_secs_f64() / ours_conc_total.as_secs_f64()
    );

    // 50 links from scratch: a topology of 51 nodes, n1's agent restarted to reconcile it.
    let topo = format!("/run/l2sm/lab/{LAB}/topology.json");
    let nodes: Vec<_> = (1..=51)
        .map(|k| serde_json::json!({"name": format!("n{k}"), "nodeIP": format!("10.250.{}.{}", k / 200, k % 200 + 1)}))
        .collect();
    std::fs::write(
        &topo,
        serde_json::to_vec(&serde_json::json!({"nodes": nodes})).unwrap(),
    )
    .unwrap();
    let count = || l2sm_test_support::lab::vxlan_ports_at(&db);
    let t = Instant::now();
    l2sm(&["lab", "restart", "n1"]);
    while count() < 50 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "links not reconciled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    println!(
        "50-link topology reconciled from scratch (agent restart included): {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}
