//! Restart safety of the node agent and its Open vSwitch, and link reconciliation from the
//! topology, on a real lab.

use l2sm_test_support::lab::TestLab;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts `ping -i 0.1 -c COUNT` from `pod` in the background; returns its output when done.
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

fn agent_list(lab: &TestLab, node: &str) -> serde_json::Value {
    use std::io::{BufRead, Write};
    let path = format!("/run/l2sm/lab/{}/{node}/agent.sock", lab.name);
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.write_all(b"{\"op\":\"list\"}\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str::<serde_json::Value>(&line).unwrap()["result"].clone()
}

fn two_pods(tag: &str, nodes: usize) -> TestLab {
    let lab = TestLab::up(tag, nodes);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    assert!(lab.pings("a", "10.10.0.2"));
    lab
}

#[test]
fn agent_restarts_lose_no_packet_and_renumber_nothing() {
    let lab = two_pods("ar", 2);
    let before = (agent_list(&lab, "n1"), agent_list(&lab, "n2"));
    let ping = background_ping(&lab, "a", "10.10.0.2", 40);
    std::thread::sleep(Duration::from_millis(300));
    lab.ok(&["lab", "restart", "n1"]);
    lab.ok(&["lab", "restart", "n2"]);
    let (sent, received, line) = loss(ping);
    assert!(
        sent >= 40 && received == sent,
        "packets lost during agent restarts: {line}"
    );
    assert_eq!(
        (agent_list(&lab, "n1"), agent_list(&lab, "n2")),
        before,
        "ports changed"
    );
}

#[test]
fn a_restarted_agent_re_reports_its_ports_to_the_controller() {
    let lab = two_pods("rr", 2);
    // The controller forgets every membership of blue (delete + create gives an empty network).
    lab.ok(&["network", "delete", "blue"]);
    lab.ok(&["network", "create", "blue"]);
    assert!(lab.blocked("a", "10.10.0.2"), "memberships should be gone");
    lab.ok(&["lab", "restart", "n1"]);
    lab.ok(&["lab", "restart", "n2"]);
    l2sm_test_support::wait_until("memberships re-reported", Duration::from_secs(10), || {
        lab.ok(&["network", "list"]).matches("of:").count() == 2
    });
    l2sm_test_support::wait_until("traffic back", Duration::from_secs(10), || {
        lab.pings("a", "10.10.0.2")
    });
}

#[test]
fn vswitchd_restart_recovers_flows_and_keeps_port_numbers() {
    let lab = two_pods("vr", 2);
    let before = agent_list(&lab, "n1");
    lab.ok(&["lab", "restart", "n1/ovs-vswitchd"]);
    l2sm_test_support::wait_until(
        "traffic after the vswitchd restart",
        Duration::from_secs(20),
        || lab.pings("a", "10.10.0.2"),
    );
    assert_eq!(agent_list(&lab, "n1"), before, "ports renumbered");
}

#[test]
fn the_agent_survives_an_ovsdb_server_restart() {
    let lab = two_pods("or", 2);
    lab.ok(&["lab", "restart", "n1/ovsdb-server"]);
    lab.attach("n1", "c", "blue", "10.10.0.3/24");
    assert!(lab.pings("c", "10.10.0.2"));
    assert!(lab.pings("a", "10.10.0.2"));
}

#[test]
fn topology_changes_reconcile_links_without_flapping_the_others() {
    let lab = TestLab::up("tp", 3);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    lab.attach("n3", "c", "blue", "10.10.0.3/24");
    assert!(lab.pings("a", "10.10.0.3"));
    let path = format!("/run/l2sm/lab/{}/topology.json", lab.name);
    let original = std::fs::read_to_string(&path).unwrap();
    let ping = background_ping(&lab, "a", "10.10.0.2", 60);
    // Drop the n1-n3 link: a line n3 - n2 - n1 ... without n1-n3.
    let cut = r#"{"nodes":[{"name":"n1","nodeIP":"10.250.0.1"},{"name":"n2","nodeIP":"10.250.0.2"},
        {"name":"n3","nodeIP":"10.250.0.3"}],"links":[{"endpointA":"n1","endpointB":"n2"},
        {"endpointA":"n2","endpointB":"n3"}]}"#;
    std::fs::write(&path, cut).unwrap();
    let ports = |node: &str| lab.vxlan_ports(node);
    l2sm_test_support::wait_until("n1 to drop its link to n3", Duration::from_secs(10), || {
        ports("n1") == 1
    });
    l2sm_test_support::wait_until("n3 to drop its link to n1", Duration::from_secs(10), || {
        ports("n3") == 1
    });
    assert_eq!(ports("n2"), 2);
    let (sent, received, line) = loss(ping);
    assert!(
        sent >= 60 && received == sent,
        "n1-n2 traffic flapped while n1-n3 was removed: {line}"
    );
    std::fs::write(&path, original).unwrap();
    l2sm_test_support::wait_until(
        "the n1-n3 link to come back",
        Duration::from_secs(10),
        || ports("n1") == 2,
    );
    l2sm_test_support::wait_until("a to reach c again", Duration::from_secs(10), || {
        lab.pings("a", "10.10.0.3")
    });
    // A broken topology is ignored; links stay as they are.
    std::fs::write(&path, "{broken").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ports("n1"), 2);
}

#[test]
fn trunk_links_from_the_topology_become_ports_in_the_trunk_range() {
    let lab = TestLab::up("tk", 2);
    let (n1, n2) = (
        format!("l2sm-{}-n1", lab.name),
        format!("l2sm-{}-n2", lab.name),
    );
    let ok = Command::new("ip")
        .args([
            "link", "add", "tr0", "netns", &n1, "type", "veth", "peer", "name", "tr0", "netns", &n2,
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let path = format!("/run/l2sm/lab/{}/topology.json", lab.name);
    let with_trunk = r#"{"nodes":[{"name":"n1","nodeIP":"10.250.0.1"},{"name":"n2","nodeIP":"10.250.0.2"}],
        "links":[{"endpointA":"n1","endpointB":"n2"},
                 {"endpointA":"n1","endpointB":"n2","type":"trunk","interfaceA":"tr0","interfaceB":"tr0"}]}"#;
    std::fs::write(&path, with_trunk).unwrap();
    let trunk_port = |node: &str| {
        let out = Command::new("ovs-vsctl")
            .arg(format!(
                "--db=unix:/run/l2sm/lab/{}/{node}/db.sock",
                lab.name
            ))
            .args([
                "--bare",
                "--columns=ofport",
                "find",
                "Interface",
                "name=tr0",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for node in ["n1", "n2"] {
        l2sm_test_support::wait_until("the trunk port", Duration::from_secs(10), || {
            trunk_port(node) == "57344"
        });
    }
    let without = r#"{"nodes":[{"name":"n1","nodeIP":"10.250.0.1"},{"name":"n2","nodeIP":"10.250.0.2"}],
        "links":[{"endpointA":"n1","endpointB":"n2"}]}"#;
    std::fs::write(&path, without).unwrap();
    for node in ["n1", "n2"] {
        l2sm_test_support::wait_until("the trunk port to go", Duration::from_secs(10), || {
            trunk_port(node).is_empty()
        });
    }
    let still = Command::new("ip")
        .args(["-n", &n1, "link", "show", "tr0"])
        .status()
        .unwrap();
    assert!(
        still.success(),
        "removing a trunk must not delete the device"
    );
}

fn dump_flows(lab: &TestLab, node: &str) -> Vec<String> {
    let out = Command::new("ls")
        .arg(format!("/run/l2sm/lab/{}/{node}", lab.name))
        .output()
        .unwrap();
    let bridge_mgmt = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|f| f.starts_with("br-") && f.ends_with(".mgmt") && !f.starts_with("br-phy"))
        .expect("bridge management socket")
        .to_string();
    let out = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow13", "--no-stats", "--no-names", "dump-flows"])
        .arg(format!(
            "unix:/run/l2sm/lab/{}/{node}/{bridge_mgmt}",
            lab.name
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut flows: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("table="))
        .map(str::to_string)
        .collect();
    flows.sort();
    flows
}

#[test]
fn a_controller_restart_loses_no_packet_and_keeps_learned_macs() {
    let lab = two_pods("cr", 2);
    let before = dump_flows(&lab, "n1");
    assert!(
        before
            .iter()
            .any(|f| f.contains("table=2") && f.contains("dl_dst=")),
        "no learned MACs: {before:?}"
    );
    let ping = background_ping(&lab, "a", "10.10.0.2", 50);
    std::thread::sleep(Duration::from_millis(300));
    lab.ok(&["lab", "restart", "controller"]);
    l2sm_test_support::wait_until("the switches to reconnect", Duration::from_secs(10), || {
        lab.ok(&["lab", "status"])
            .lines()
            .filter(|l| l.contains(" yes "))
            .count()
            == 2
    });
    let (sent, received, line) = loss(ping);
    assert!(
        sent >= 50 && received == sent,
        "packets lost across a controller restart: {line}"
    );
    let after = dump_flows(&lab, "n1");
    assert_eq!(after, before, "the reconnect changed the switch's flows");
}

#[test]
fn a_switch_reconnecting_with_unchanged_state_loses_no_packet_and_gets_no_message() {
    let lab = two_pods("sr", 2);
    let before = dump_flows(&lab, "n1");
    let m = l2sm_test_support::lab::metrics(&lab);
    let mods = |m: &str| {
        l2sm_test_support::lab::metric(m, "l2sm_flow_mods_total")
            + l2sm_test_support::lab::metric(m, "l2sm_group_mods_total")
    };
    let (mods_before, connections_before) = (
        mods(&m),
        l2sm_test_support::lab::metric(&m, "l2sm_switch_connections_total"),
    );
    let ping = background_ping(&lab, "a", "10.10.0.2", 50);
    std::thread::sleep(Duration::from_millis(300));
    // Reset n1's OpenFlow connection (as a network blip would): OVS keeps its flows and
    // reconnects. (Removing the controller from OVSDB instead would make OVS wipe its flows.)
    let reset = Command::new("ip")
        .args(["netns", "exec", &format!("l2sm-{}-n1", lab.name)])
        .args([
            "ss",
            "-K",
            "-tn",
            "dst",
            "10.251.0.254",
            "dport",
            "=",
            "6653",
        ])
        .output()
        .unwrap();
    assert!(
        reset.status.success(),
        "ss -K: {}",
        String::from_utf8_lossy(&reset.stderr)
    );
    l2sm_test_support::wait_until("n1 to reconnect", Duration::from_secs(15), || {
        let m = l2sm_test_support::lab::metrics(&lab);
        l2sm_test_support::lab::metric(&m, "l2sm_switch_connections_total") > connections_before
            && l2sm_test_support::lab::metric(&m, "l2sm_switches_connected") == 2.0
    });
    let (sent, received, line) = loss(ping);
    assert!(
        sent >= 50 && received == sent,
        "packets lost across a switch reconnect: {line}"
    );
    assert_eq!(
        dump_flows(&lab, "n1"),
        before,
        "the reconnect changed flows"
    );
    let m = l2sm_test_support::lab::metrics(&lab);
    assert_eq!(
        mods(&m),
        mods_before,
        "the controller sent FLOW_MOD/GROUP_MOD to a switch whose state was unchanged"
    );
}

#[test]
fn an_attach_returns_once_the_switch_holds_the_ports_flows() {
    let lab = two_pods("pf", 2);
    for i in 0..5 {
        let pod = format!("p{i}");
        lab.attach("n1", &pod, "blue", &format!("10.10.0.{}/24", 10 + i));
        // Right after the attach: the port's member flows (here its learning flow) are
        // already on the switch, so the pod's first frames are not dropped.
        let ofport = agent_list(&lab, "n1")
            .as_array()
            .unwrap()
            .iter()
            .find(|a| {
                a["pod"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&format!("/{pod}")))
            })
            .and_then(|a| a["ofport"].as_u64())
            .unwrap_or_else(|| panic!("no attachment of {pod}"));
        let flows = dump_flows(&lab, "n1");
        assert!(
            flows
                .iter()
                .any(|f| f.contains("table=1") && f.contains(&format!("in_port={ofport} "))),
            "attach of {pod} returned before its port {ofport} was programmed: {flows:#?}"
        );
    }
}
