//! Multi-cluster labs on real Open vSwitch with real traffic: two clusters of two nodes, each
//! with its controller and its edge, a router between their underlays and a provider
//! controller.
//!
//! - Pods of both clusters on the provider network `inter` reach each other (every pair,
//!   both ways, pods on the edge's node too) and iperf3 runs across; each cluster's local
//!   network `blue` (same name) is a LAN of its own; a second provider network `inter2`
//!   (same subnet as `inter`) is isolated from `inter`: the full connectivity matrix, and
//!   a raw-frame capture on every pod interface meanwhile with 0 frames from outside the
//!   pod's LAN.
//! - The provider controller, one cluster's controller and one edge restart during a 100 ms
//!   ping: 0 lost; nothing duplicated (flows of the edge and cluster bridges, patch ports,
//!   tunnels); `network delete` of a provider network undoes all of it; `lab down` leaves
//!   no namespace, process or file.
//! - `<name>.<network>.inter.l2sm`: a pod on a provider network is found by name at the
//!   provider's DNS from both clusters right after its attach, gone right after its detach,
//!   back after a provider restart.

use l2sm_test_support::lab::{Capture, TestLab};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

/// (pod, cluster, node in the cluster, network, address)
const PODS: &[(&str, &str, &str, &str, &str)] = &[
    ("pa", "c1", "n2", "inter", "10.30.0.1"),
    ("pb", "c1", "n1", "inter", "10.30.0.2"), // on the edge's node
    ("pc", "c2", "n2", "inter", "10.30.0.3"),
    ("pd", "c2", "n1", "inter", "10.30.0.4"),
    ("ra", "c1", "n2", "inter2", "10.30.0.11"),
    ("rb", "c2", "n2", "inter2", "10.30.0.12"),
    ("qa", "c1", "n1", "blue", "10.40.0.1"),
    ("qb", "c1", "n2", "blue", "10.40.0.2"),
    ("qc", "c2", "n1", "blue", "10.40.0.3"),
    ("qd", "c2", "n2", "blue", "10.40.0.4"),
];

/// The LAN of a pod: a provider network is one LAN, a local network one per cluster.
fn lan(pod: &(&str, &str, &str, &str, &str)) -> String {
    match pod.3 {
        "blue" => format!("blue@{}", pod.1),
        other => other.to_string(),
    }
}

fn subnet(ip: &str) -> &str {
    ip.rsplit_once('.').map(|(s, _)| s).unwrap_or(ip)
}

fn up(tag: &str) -> TestLab {
    let lab = TestLab::new(tag);
    lab.ok(&["lab", "up", "--clusters", "2", "--nodes", "2"]);
    lab
}

/// The MAC of an interface in a namespace.
fn mac_of(ns: &str, ifname: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-br", "link", "show", ifname])
        .output()
        .unwrap();
    assert!(out.status.success(), "no {ifname} in {ns}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// Networks and pods of [`PODS`]; returns the MACs of each pod's two ends: its own
/// interface, and the node's end of its port (a veth whose kernel sends IPv6 neighbour and
/// listener messages into the pod's own network).
fn populate(lab: &TestLab) -> BTreeMap<String, (String, String)> {
    let out = lab.ok(&["network", "create", "inter", "--provider"]);
    assert!(out.contains("provider network inter created"), "{out}");
    lab.ok(&["network", "create", "inter2", "--provider"]);
    let out = lab.ok(&["network", "create", "blue"]);
    assert!(
        out.contains("created in c1") && out.contains("created in c2"),
        "{out}"
    );
    let mut macs = BTreeMap::new();
    for (pod, cluster, node, net, ip) in PODS {
        let out = lab.ok(&[
            "attach",
            "--cluster",
            cluster,
            "--node",
            node,
            "--pod",
            pod,
            "--network",
            net,
            "--ip",
            &format!("{ip}/24"),
        ]);
        let mac = out
            .split("(mac ")
            .nth(1)
            .and_then(|r| r.get(..17))
            .unwrap_or_else(|| panic!("no MAC in {out}"))
            .to_string();
        // "switch port of:<dpid>/<n>": the node's end is ls<first 5 hex of dpid><n>.
        let port = out.trim().rsplit(' ').next().unwrap();
        let (dpid, n) = port.trim_start_matches("of:").split_once('/').unwrap();
        let host = mac_of(
            &format!("l2sm-{}-{cluster}-{node}", lab.name),
            &format!("ls{}{n}", &dpid[..5]),
        );
        macs.insert(pod.to_string(), (mac, host));
    }
    macs
}

fn ping_ok(lab: &TestLab, from: &str, ip: &str) -> bool {
    lab.exec_ok(from, &["ping", "-c", "1", "-W", "1", "-q", ip])
}

/// Reachability of `ip` from `from`, allowing for first-frame ARP resolution (a reachable
/// pair answers within 3 tries; a blocked one never).
fn reaches(lab: &TestLab, from: &str, ip: &str) -> bool {
    (0..3).any(|_| ping_ok(lab, from, ip))
}

#[test]
fn provider_networks_join_clusters_local_networks_and_second_provider_network_stay_apart() {
    let lab = up("ic");
    let macs = populate(&lab);
    // First contact across the clusters (tunnel and ARP resolution on the way).
    l2sm_test_support::wait_until(
        "pa to reach pc across the clusters",
        Duration::from_secs(20),
        || ping_ok(&lab, "pa", "10.30.0.3"),
    );

    // A capture on every pod interface while the matrix runs.
    let captures: Vec<(&str, Capture)> = PODS
        .iter()
        .map(|p| (p.0, Capture::start(&lab, p.0, "net1", 40, "")))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));

    // Every ordered pair in the same subnet (other pairs cannot even address each other):
    // reachable exactly when both are on the same LAN.
    let pairs: Vec<_> = PODS
        .iter()
        .flat_map(|a| PODS.iter().map(move |b| (a, b)))
        .filter(|(a, b)| a.0 != b.0 && subnet(a.4) == subnet(b.4))
        .collect();
    let results: Vec<(String, String, bool, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .chunks(6)
            .map(|chunk| {
                let lab = &lab;
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|(a, b)| {
                            (
                                a.0.to_string(),
                                b.0.to_string(),
                                lan(a) == lan(b),
                                reaches(lab, a.0, b.4),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let wrong: Vec<_> = results.iter().filter(|r| r.2 != r.3).collect();
    assert!(
        wrong.is_empty(),
        "connectivity matrix (from, to, expected, got) differs: {wrong:?}"
    );
    let reachable = results.iter().filter(|r| r.2).count();
    assert_eq!(reachable, 12 + 2 + 2 + 2, "pairs expected to reach");
    assert_eq!(results.len() - reachable, 24, "pairs expected apart");

    // iperf3 across the clusters, both directions.
    assert!(lab.exec_ok("pc", &["iperf3", "-s", "-D", "-1"]));
    std::thread::sleep(Duration::from_millis(500));
    let out = lab.run(&[
        "lab",
        "exec",
        "pa",
        "--",
        "iperf3",
        "-c",
        "10.30.0.3",
        "-t",
        "2",
        "-J",
    ]);
    assert!(out.status.success(), "iperf3 c1 -> c2 failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap();
    assert!(bps > 1e6, "c1 -> c2 at {bps} bit/s");
    assert!(lab.exec_ok("pa", &["iperf3", "-s", "-D", "-1"]));
    std::thread::sleep(Duration::from_millis(500));
    assert!(lab.exec_ok("pc", &["iperf3", "-c", "10.30.0.1", "-t", "2"]));

    // Frames: every frame a pod saw came from its own LAN (its own included), and each saw
    // frames from another member of its LAN (the capture works).
    let mut lan_macs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in PODS {
        let (pod_mac, host_mac) = macs[p.0].clone();
        let set = lan_macs.entry(lan(p)).or_default();
        set.insert(pod_mac);
        set.insert(host_mac);
    }
    for (pod, cap) in captures {
        let p = PODS.iter().find(|p| p.0 == pod).unwrap();
        let mine = &lan_macs[&lan(p)];
        let seen = cap.output();
        let mut frames = 0;
        let mut from_others = 0;
        for line in seen.lines() {
            // "HH:MM:SS.ffffff SRC > DST, ethertype …"
            let Some(src) = line.split_whitespace().nth(1) else {
                continue;
            };
            frames += 1;
            assert!(
                mine.contains(src),
                "{pod} ({}) saw a frame from outside its LAN: {line}",
                lan(p)
            );
            if src != macs[pod].0 && src != macs[pod].1 {
                from_others += 1;
            }
        }
        assert!(
            from_others > 0,
            "{pod} captured no frame from its LAN ({frames} frames): {seen}"
        );
    }
}

fn background_ping(lab: &TestLab, pod: &str, ip: &str, count: u32) -> std::process::Child {
    Command::new(l2sm_test_support::bin::l2sm())
        .args([
            "--lab", &lab.name, "lab", "exec", pod, "--", "ping", "-i", "0.1", "-c",
        ])
        .arg(count.to_string())
        .arg(ip)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping")
}

fn loss(child: std::process::Child) -> (u32, u32, String) {
    let out = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .to_string();
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse().ok())
        .collect();
    (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
        line,
    )
}

fn ovs(lab: &TestLab, node: &str, program: &str, args: &[&str]) -> String {
    let dir = format!("/run/l2sm/lab/{}/{node}", lab.name);
    let mut cmd = Command::new(program);
    if program == "ovs-vsctl" {
        cmd.arg(format!("--db=unix:{dir}/db.sock"));
    }
    let out = cmd.args(args).env("OVS_RUNDIR", &dir).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flows of a bridge of a node, sorted, without counters.
fn flows(lab: &TestLab, node: &str, bridge: &str) -> Vec<String> {
    let sock = format!("unix:/run/l2sm/lab/{}/{node}/{bridge}.mgmt", lab.name);
    let mut v: Vec<String> = ovs(
        lab,
        node,
        "ovs-ofctl",
        &[
            "-O",
            "OpenFlow13",
            "--no-stats",
            "--no-names",
            "dump-flows",
            &sock,
        ],
    )
    .lines()
    .filter(|l| l.contains("table="))
    .map(str::to_string)
    .collect();
    v.sort();
    v
}

/// `name type ofport` of every interface of the node's OVS, sorted.
fn interfaces(lab: &TestLab, node: &str) -> Vec<String> {
    let mut v: Vec<String> = ovs(
        lab,
        node,
        "ovs-vsctl",
        &[
            "--format=csv",
            "--no-headings",
            "--columns=name,type,ofport",
            "list",
            "Interface",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect();
    v.sort();
    v
}

#[test]
fn controller_provider_and_edge_restarts_lose_nothing_and_delete_and_down_leave_nothing() {
    let lab = up("ir");
    lab.ok(&["network", "create", "inter", "--provider"]);
    lab.ok(&[
        "attach",
        "--cluster",
        "c1",
        "--node",
        "n2",
        "--pod",
        "a",
        "--network",
        "inter",
        "--ip",
        "10.30.0.1/24",
    ]);
    lab.ok(&[
        "attach",
        "--cluster",
        "c2",
        "--node",
        "n2",
        "--pod",
        "b",
        "--network",
        "inter",
        "--ip",
        "10.30.0.2/24",
    ]);
    l2sm_test_support::wait_until("a to reach b", Duration::from_secs(20), || {
        ping_ok(&lab, "a", "10.30.0.2")
    });
    let (edge_bridge, cluster_bridge) = {
        let st = lab.ok(&["lab", "status"]);
        let sw = st
            .lines()
            .find(|l| l.trim_start().starts_with("c1-n1"))
            .and_then(|l| l.split_whitespace().nth(3))
            .expect("c1-n1's switch in lab status")
            .to_string();
        let edges: Vec<String> = ovs(&lab, "c1-n1", "ovs-vsctl", &["list-br"])
            .lines()
            .filter(|b| *b != "br-phy" && *b != sw)
            .map(str::to_string)
            .collect();
        assert_eq!(edges.len(), 1, "one edge bridge on c1-n1: {edges:?}");
        (edges[0].clone(), sw)
    };
    let before = (
        flows(&lab, "c1-n1", &edge_bridge),
        flows(&lab, "c1-n1", &cluster_bridge),
        interfaces(&lab, "c1-n1"),
        interfaces(&lab, "c2-n1"),
    );
    assert_eq!(
        before.2.iter().filter(|l| l.contains(",patch,")).count(),
        2,
        "one patch pair on c1-n1: {:?}",
        before.2
    );

    // The network's VNI at the provider (and in each cluster) before the restarts.
    let vnis = |lab: &TestLab| -> Vec<String> {
        let list = lab.ok(&["network", "list"]);
        let mut v: Vec<String> = list
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("inter"))
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect();
        v.sort();
        v
    };
    let vnis_before = vnis(&lab);
    assert_eq!(
        vnis_before.len(),
        3,
        "inter in c1, c2 and at the provider: {vnis_before:?}"
    );

    // Controllers: the provider and c1's, during a 100 ms ping: nothing lost.
    let ping = background_ping(&lab, "a", "10.30.0.2", 60);
    std::thread::sleep(Duration::from_millis(300));
    lab.ok(&["lab", "restart", "provider"]);
    lab.ok(&["lab", "restart", "c1/controller"]);
    let (sent, received, line) = loss(ping);
    assert!(
        sent >= 60 && received == sent,
        "packets lost across controller restarts: {line}"
    );
    assert_eq!(
        vnis(&lab),
        vnis_before,
        "a restarted controller renumbered the network"
    );

    // The edge, as the node agent: nothing lost either (the bridge and its flows stay).
    let ping = background_ping(&lab, "a", "10.30.0.2", 50);
    std::thread::sleep(Duration::from_millis(300));
    lab.ok(&["lab", "restart", "c1/edge"]);
    // And the node agent of the edge's node (it leaves the hop's port on its bridge alone).
    lab.ok(&["lab", "restart", "c1-n1"]);
    let (sent, received, line) = loss(ping);
    assert!(
        sent >= 50 && received == sent,
        "packets lost across edge and agent restarts: {line}"
    );
    // The provider network again: the same hop, nothing new.
    let again = lab.ok(&["network", "create", "inter", "--provider"]);
    assert!(again.contains("already exists"), "{again}");
    l2sm_test_support::wait_until("flows back as before", Duration::from_secs(20), || {
        (
            flows(&lab, "c1-n1", &edge_bridge),
            flows(&lab, "c1-n1", &cluster_bridge),
            interfaces(&lab, "c1-n1"),
            interfaces(&lab, "c2-n1"),
        ) == before
    });
    assert!(ping_ok(&lab, "b", "10.30.0.1"));

    // Bad input changes nothing.
    let out = lab.run(&["network", "create", "x", "--provider", "--cluster", "c1"]);
    assert!(!out.status.success(), "--provider with --cluster accepted");
    let err = lab.fails(&["network", "create", "blue", "--cluster", "c9"]);
    assert!(err.contains("c9"), "{err}");
    let err = lab.fails(&[
        "network",
        "create",
        "y",
        "--provider",
        "--cidr",
        "10.9.0.0/24",
    ]);
    assert!(err.contains("no addresses"), "{err}");
    let err = lab.fails(&[
        "attach",
        "--cluster",
        "c3",
        "--node",
        "n1",
        "--pod",
        "z",
        "--network",
        "inter",
    ]);
    assert!(err.contains("c3"), "{err}");
    lab.ok(&["network", "create", "local", "--cluster", "c2"]);
    let err = lab.fails(&["network", "create", "local", "--provider"]);
    assert!(err.contains("c2 already has a network"), "{err}");
    assert_eq!(
        interfaces(&lab, "c1-n1"),
        before.2,
        "a refused create made ports"
    );

    // Delete the provider network: hops, memberships and networks go everywhere.
    let out = lab.ok(&["network", "delete", "inter"]);
    assert!(out.contains("provider network inter deleted"), "{out}");
    for node in ["c1-n1", "c2-n1"] {
        let ifs = interfaces(&lab, node);
        assert!(
            !ifs.iter().any(|l| l.contains(",patch,")),
            "{node} keeps a patch port: {ifs:?}"
        );
    }
    let list = lab.ok(&["network", "list"]);
    assert!(!list.contains(" inter "), "{list}");
    assert!(!ping_ok(&lab, "a", "10.30.0.2"));

    // Down after failures (an edge and the provider killed): nothing left.
    let state = lab.state();
    for pid in [
        state["clusters"][1]["edge_pid"].as_i64().unwrap(),
        state["provider_pid"].as_i64().unwrap(),
    ] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    lab.ok(&["lab", "down"]);
    assert_eq!(lab.namespaces(), Vec::<String>::new());
    assert_eq!(lab.processes(), Vec::<i32>::new());
    assert!(!std::path::Path::new(&format!("/run/l2sm/lab/{}", lab.name)).exists());
}

/// `l2sm dns lookup --server <provider>:53 NAME` run in cluster `cluster`'s underlay
/// namespace (where its controller runs): exit code and output.
fn lookup_from(lab: &TestLab, cluster: &str, name: &str) -> (Option<i32>, String) {
    let bin = l2sm_test_support::bin::l2sm();
    let out = lab.run(&[
        "lab",
        "exec",
        cluster,
        "--",
        bin.to_str().unwrap(),
        "dns",
        "lookup",
        "--timeout",
        "1",
        "--server",
        "10.252.0.254:53",
        name,
    ]);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Waits up to `within` for `name` to resolve (`want` Some(address)) or to be gone (`None`)
/// from both clusters; returns how long it took.
fn settle(lab: &TestLab, name: &str, want: Option<&str>, within: Duration) -> Duration {
    let t = std::time::Instant::now();
    loop {
        let got: Vec<(Option<i32>, String)> = ["c1", "c2"]
            .iter()
            .map(|c| lookup_from(lab, c, name))
            .collect();
        let done = got.iter().all(|(code, out)| match want {
            Some(ip) => *code == Some(0) && out.contains(&format!("A {ip}")),
            None => *code == Some(1) && out.contains("NXDOMAIN"),
        });
        if done {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "{name} not {} from both clusters within {within:?}: {got:?}",
            if want.is_some() { "resolvable" } else { "gone" }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `<name>.<network>.inter.l2sm` (docs/dns.md): a pod of cluster c2 on provider network
/// `shared` is found by name at the provider's DNS from both clusters within 1 s of its
/// attach (c2's controller sends its names to the provider's update API) and is gone within
/// 1 s of its detach; a pod on a cluster-local network never gets an inter name; a restarted
/// provider has the name again within 8 s (the clusters send theirs every 5 s).
#[test]
fn a_pod_on_a_provider_network_gets_an_inter_name_served_to_both_clusters() {
    let lab = up("id");
    lab.ok(&["network", "create", "shared", "--provider"]);
    lab.ok(&["network", "create", "blue"]);
    let name = "b.shared.inter.l2sm";
    let (code, out) = lookup_from(&lab, "c1", name);
    assert_eq!(code, Some(1), "{out}");
    let attach = |pod: &str, net: &str, ip: &str| {
        lab.ok(&[
            "attach",
            "--cluster",
            "c2",
            "--node",
            "n2",
            "--pod",
            pod,
            "--network",
            net,
            "--ip",
            ip,
        ])
    };
    attach("q", "blue", "10.40.0.9/24");
    attach("b", "shared", "10.30.0.2/24");
    let second = Duration::from_secs(1);
    let up = settle(&lab, name, Some("10.30.0.2"), second);
    println!("attach -> {name} resolvable from both clusters: {up:?}");
    // The local network's pod has no inter name (blue has no edge hop).
    let (code, out) = lookup_from(&lab, "c1", "q.blue.inter.l2sm");
    assert_eq!(code, Some(1), "{out}");
    // The provider keeps the names in memory: after a restart the clusters' periodic
    // sends (every 5 s) refill it.
    lab.ok(&["lab", "restart", "provider"]);
    let back = settle(&lab, name, Some("10.30.0.2"), Duration::from_secs(8));
    println!("provider restart -> {name} back: {back:?}");
    lab.ok(&["detach", "--pod", "b"]);
    let gone = settle(&lab, name, None, second);
    println!("detach -> {name} gone from both clusters: {gone:?}");
}
