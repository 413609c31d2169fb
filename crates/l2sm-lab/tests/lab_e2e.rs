//! Lab end-to-end acceptance: real namespaces, real Open vSwitch (userspace datapath), the real
//! agent and controller, real traffic. Needs root; fails (never skips) without it.

use l2sm_test_support::lab::{Capture, TestLab};
use std::time::Duration;

/// (pod, node, network, ip)
const PODS: [(&str, &str, &str, &str); 6] = [
    ("a", "n1", "blue", "10.10.0.1"),
    ("b", "n2", "blue", "10.10.0.2"),
    ("e", "n3", "blue", "10.10.0.5"),
    ("c", "n3", "red", "10.10.0.3"),
    ("d", "n1", "red", "10.10.0.4"),
    ("f", "n2", "red", "10.10.0.6"),
];

fn two_networks(lab: &TestLab) {
    lab.ok(&["network", "create", "blue"]);
    lab.ok(&["network", "create", "red"]);
    for (pod, node, net, ip) in PODS {
        lab.attach(node, pod, net, &format!("{ip}/24"));
    }
}

#[test]
fn same_network_pairs_ping_and_cross_network_pairs_do_not() {
    let lab = TestLab::up("iso", 3);
    two_networks(&lab);
    std::thread::scope(|s| {
        let mut checks = Vec::new();
        for (from, _, from_net, _) in PODS {
            for (to, _, to_net, ip) in PODS {
                if from == to {
                    continue;
                }
                let lab = &lab;
                checks.push(s.spawn(move || {
                    let same = from_net == to_net;
                    let ok = if same {
                        lab.pings(from, ip)
                    } else {
                        lab.blocked(from, ip)
                    };
                    (from, to, same, ok)
                }));
            }
        }
        let failures: Vec<String> = checks
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|(_, _, _, ok)| !ok)
            .map(|(f, t, same, _)| {
                if same {
                    format!("{f} cannot reach {t}")
                } else {
                    format!("{f} reaches {t} across networks")
                }
            })
            .collect();
        assert!(
            failures.is_empty(),
            "connectivity matrix wrong: {failures:?}"
        );
    });
}

#[test]
fn a_broadcast_reaches_every_pod_of_its_network_and_no_other() {
    let lab = TestLab::up("arp", 3);
    two_networks(&lab);
    let captures: Vec<(&str, &str, Capture)> = PODS
        .iter()
        .map(|(pod, _, net, _)| (*pod, *net, Capture::start(&lab, pod, "net1", 5, "arp")))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // ARP requests for an address nobody has: broadcast frames from a blue pod.
    assert!(!lab.exec_ok("a", &["ping", "-c", "2", "-W", "1", "10.10.0.99"]));
    for (pod, net, cap) in captures {
        let seen = cap.output();
        let got =
            seen.contains("who-has 10.10.0.99") || seen.contains("Request who-has 10.10.0.99");
        if pod == "a" {
            assert!(got, "sender a did not see its own request: {seen}");
        } else if net == "blue" {
            assert!(got, "blue pod {pod} missed the broadcast: {seen}");
        } else {
            assert!(!got, "red pod {pod} saw a blue broadcast: {seen}");
            assert!(
                !seen.contains("10.10.0.1 "),
                "red pod {pod} saw frames of a blue pod: {seen}"
            );
        }
    }
}

/// a (n1) and b (n2) on blue, reaching each other; c (n3) on red, same subnet.
fn blue_pair_and_a_red_pod(lab: &TestLab) {
    lab.ok(&["network", "create", "blue"]);
    lab.ok(&["network", "create", "red"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    lab.attach("n3", "c", "red", "10.10.0.3/24");
    assert!(lab.pings("a", "10.10.0.2"));
}

#[test]
fn detached_pod_loses_connectivity_and_reattaches_to_another_network_only() {
    let lab = TestLab::up("det", 3);
    blue_pair_and_a_red_pod(&lab);
    lab.ok(&["detach", "--pod", "a"]);
    assert!(
        lab.blocked("b", "10.10.0.1"),
        "b still reaches the detached pod's address"
    );
    assert!(
        !lab.namespaces().iter().any(|n| n.ends_with("-p-a")),
        "pod namespace left behind"
    );
    lab.attach("n1", "a", "red", "10.10.0.1/24");
    assert!(
        lab.pings("a", "10.10.0.3"),
        "re-attached pod cannot reach red"
    );
    assert!(
        lab.blocked("a", "10.10.0.2"),
        "re-attached pod still reaches blue"
    );
    assert!(
        lab.blocked("b", "10.10.0.1"),
        "blue still reaches the re-attached pod"
    );
}

#[test]
fn a_pod_on_two_networks_and_detaching_one_of_them() {
    let lab = TestLab::up("two", 2);
    lab.ok(&["network", "create", "blue"]);
    lab.ok(&["network", "create", "red"]);
    lab.attach("n1", "r", "blue", "10.10.0.1/24");
    let out = lab.attach("n1", "r", "red", "10.20.0.1/24");
    assert!(
        out.contains("net2"),
        "second interface should be net2: {out}"
    );
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    lab.attach("n2", "c", "red", "10.20.0.3/24");
    assert!(lab.pings("r", "10.10.0.2"));
    assert!(lab.pings("r", "10.20.0.3"));
    lab.ok(&["detach", "--pod", "r", "--network", "red"]);
    assert!(lab.blocked("r", "10.20.0.3"));
    assert!(
        lab.pings("r", "10.10.0.2"),
        "detaching red must not touch blue"
    );
    assert!(
        !lab.exec_ok("r", &["ip", "link", "show", "net2"]),
        "net2 still present"
    );
}

#[test]
fn without_controller_traffic_flows_and_isolation_holds_then_new_attaches_work() {
    let lab = TestLab::up("ctl", 3);
    blue_pair_and_a_red_pod(&lab);
    let pid = lab.state()["controller_pid"]
        .as_i64()
        .expect("controller pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill controller");
    l2sm_test_support::wait_until("the controller to die", Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
    });
    let capture = Capture::start(&lab, "c", "net1", 8, "");
    std::thread::sleep(Duration::from_millis(1000));
    // Longer than OVS's inactivity probe: fail_mode=secure must keep the flows.
    for round in 0..4 {
        assert!(
            lab.pings("a", "10.10.0.2"),
            "round {round}: established traffic stopped"
        );
        assert!(
            lab.blocked("a", "10.10.0.3"),
            "round {round}: isolation lost"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let seen = capture.output();
    assert!(
        !seen.contains("10.10.0.1"),
        "red pod saw blue frames with the controller down: {seen}"
    );
    lab.ok(&["lab", "restart", "controller"]);
    lab.attach("n3", "e", "blue", "10.10.0.5/24");
    l2sm_test_support::wait_until("the new pod to reach blue", Duration::from_secs(15), || {
        lab.pings("e", "10.10.0.1")
    });
    assert!(lab.blocked("e", "10.10.0.3"));
}

#[test]
fn lab_down_leaves_nothing_and_up_after_a_killed_lab_works() {
    let mut lab = TestLab::up("dn", 2);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    assert!(!lab.processes().is_empty());
    // Crash everything the lab runs.
    for pid in lab.processes() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let ctl = lab.state()["controller_pid"].as_i64().unwrap() as i32;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ctl),
        nix::sys::signal::Signal::SIGKILL,
    );
    std::thread::sleep(Duration::from_millis(300));
    lab.ok(&["lab", "up", "--nodes", "2"]);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    assert!(lab.pings("a", "10.10.0.2"));
    lab.ok(&["lab", "down"]);
    lab.keep();
    assert!(
        lab.namespaces().is_empty(),
        "namespaces left: {:?}",
        lab.namespaces()
    );
    assert!(
        lab.processes().is_empty(),
        "processes left: {:?}",
        lab.processes()
    );
    assert!(
        !std::path::Path::new("/run/l2sm/lab")
            .join(&lab.name)
            .exists(),
        "lab directory left"
    );
    assert!(
        !std::path::Path::new("/run/l2sm/lab")
            .join(format!("{}.lock", lab.name))
            .exists(),
        "lock file left"
    );
    // Idempotent.
    lab.ok(&["lab", "down"]);
}

fn snapshot(lab: &TestLab) -> (Vec<String>, serde_json::Value, String) {
    (lab.namespaces(), lab.state(), lab.ok(&["network", "list"]))
}

#[test]
fn bad_input_gets_one_line_errors_and_changes_nothing() {
    let lab = TestLab::up("bad", 2);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    let before = snapshot(&lab);
    // attach --node N --pod P --network NET [--ip IP], and what its error must say.
    let attach = |node: &str, pod: &str, net: &str, ip: Option<&str>| -> Vec<String> {
        let mut v: Vec<String> = ["attach", "--node", node, "--pod", pod, "--network", net]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(ip) = ip {
            v.extend(["--ip".to_string(), ip.to_string()]);
        }
        v
    };
    let words = |w: &[&str]| -> Vec<String> { w.iter().map(|s| s.to_string()).collect() };
    let cases: [(Vec<String>, &str); 11] = [
        (
            attach("n2", "x", "nope", Some("10.10.0.9/24")),
            "unknown network",
        ),
        (
            attach("n2", "a", "blue", Some("10.10.0.9/24")),
            "already exists on node n1",
        ),
        (
            attach("n2", "x", "blue", Some("10.10.0.300/24")),
            "invalid IP/CIDR",
        ),
        (
            attach("n2", "x", "blue", Some("10.10.0.9")),
            "invalid IP/CIDR",
        ),
        (attach("n2", "x", "blue", Some("banana")), "invalid IP/CIDR"),
        (
            attach("n2", "x", "blue", Some("10.10.0.1/24")),
            "already used by pod",
        ),
        (attach("n9", "x", "blue", None), "unknown node"),
        (attach("n2", "X/y", "blue", None), "invalid pod name"),
        (attach("n1", "a", "blue", None), "already attached"),
        (
            words(&["network", "create", "Not_Valid"]),
            "invalid network name",
        ),
        (words(&["lab", "up", "--nodes", "2"]), "already up"),
    ];
    for (args, expect) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let args = &args[..];
        let line = lab.fails(args);
        assert!(
            line.contains(expect),
            "{args:?}: error {line:?} does not mention {expect:?}"
        );
    }
    assert_eq!(snapshot(&lab), before, "a refused command changed the lab");
}

#[test]
fn status_reports_nodes_switches_networks_and_pods() {
    let lab = TestLab::up("st", 2);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    let out = lab.ok(&["lab", "status"]);
    for needle in [
        "n1",
        "n2",
        "10.250.0.1",
        "br-",
        "of:",
        "blue",
        "10.10.0.1/24",
        "net1",
    ] {
        assert!(out.contains(needle), "status lacks {needle:?}:\n{out}");
    }
    let connected = out.lines().filter(|l| l.contains(" yes ")).count();
    assert_eq!(
        connected, 2,
        "both switches should show as connected:\n{out}"
    );
}

/// Every script in `examples/` runs against the built binary and succeeds.
#[test]
fn examples_run_in_the_lab() {
    l2sm_test_support::prereq::require_lab();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    scripts.sort();
    assert!(
        !scripts.is_empty(),
        "no examples found in {}",
        dir.display()
    );
    for (i, script) in scripts.iter().enumerate() {
        let lab = TestLab::new(&format!("ex{i}"));
        let out = std::process::Command::new("bash")
            .arg(script)
            .env("L2SM", l2sm_test_support::bin::l2sm())
            .env("LAB", &lab.name)
            .output()
            .expect("run example");
        assert!(
            out.status.success(),
            "{} failed:\n{}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn pods_get_addresses_from_the_network_cidr_and_give_them_back() {
    let lab = TestLab::up("ip", 2);
    lab.ok(&[
        "network",
        "create",
        "blue",
        "--cidr",
        "10.30.0.0/24",
        "--exclude",
        "10.30.0.1",
    ]);
    let a = lab.ok(&["attach", "--node", "n1", "--pod", "a", "--network", "blue"]);
    let b = lab.ok(&["attach", "--node", "n2", "--pod", "b", "--network", "blue"]);
    assert!(a.contains("10.30.0.2/24"), "{a}");
    assert!(b.contains("10.30.0.3/24"), "{b}");
    assert!(lab.pings("a", "10.30.0.3"));
    // A static request is validated against the CIDR and the allocations.
    let taken = lab.fails(&[
        "attach",
        "--node",
        "n2",
        "--pod",
        "c",
        "--network",
        "blue",
        "--ip",
        "10.30.0.2/24",
    ]);
    assert!(taken.contains("already allocated"), "{taken}");
    let outside = lab.fails(&[
        "attach",
        "--node",
        "n2",
        "--pod",
        "c",
        "--network",
        "blue",
        "--ip",
        "10.99.0.2/24",
    ]);
    assert!(outside.contains("outside"), "{outside}");
    assert!(
        !lab.namespaces().iter().any(|n| n.ends_with("-p-c")),
        "refused pod left its namespace"
    );
    lab.ok(&["detach", "--pod", "a"]);
    // The address is free again.
    let c = lab.ok(&["attach", "--node", "n2", "--pod", "c", "--network", "blue"]);
    assert!(c.contains("10.30.0.2/24"), "{c}");
    let list = lab.ok(&["network", "list"]);
    assert!(list.contains("10.30.0.0/24"), "{list}");
}
