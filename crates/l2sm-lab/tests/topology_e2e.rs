//! Partial meshes, rerouting and a switch the agents do not manage, on real labs.

use l2sm_test_support::lab::{Capture, TestLab};
use std::process::Command;
use std::time::Duration;

fn vxlan_ports(lab: &TestLab, node: &str) -> usize {
    lab.vxlan_ports(node)
}

#[test]
fn on_a_line_traffic_between_the_ends_transits_the_middle_node() {
    let lab = TestLab::new("ln");
    lab.ok(&["lab", "up", "--nodes", "3", "--topology", "line"]);
    assert_eq!(
        (
            vxlan_ports(&lab, "n1"),
            vxlan_ports(&lab, "n2"),
            vxlan_ports(&lab, "n3")
        ),
        (1, 2, 1)
    );
    lab.ok(&["network", "create", "blue"]);
    lab.ok(&["network", "create", "red"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n3", "c", "blue", "10.10.0.3/24");
    lab.attach("n3", "r", "red", "10.10.0.9/24");
    assert!(lab.pings("a", "10.10.0.3"), "n1 -> n3 across n2");
    assert!(lab.pings("c", "10.10.0.1"), "n3 -> n1 across n2");
    assert!(lab.blocked("a", "10.10.0.9"), "isolation on the line");
    let text = lab.ok(&["topology"]);
    assert_eq!(
        text.matches("<->").count(),
        2,
        "a line of three has two links:\n{text}"
    );
    assert!(text.contains("blue") && text.contains("tunnel"), "{text}");
    let dot = lab.ok(&["topology", "--dot"]);
    assert!(
        dot.starts_with("graph l2sm {") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
    assert_eq!(dot.matches("style=solid").count(), 2, "{dot}");
}

/// Counts the broadcast ICMP echo requests for `dst` seen in a capture.
fn broadcasts(capture: &str, dst: &str) -> usize {
    capture
        .lines()
        .filter(|l| l.contains(&format!("> {dst}: ICMP echo request")))
        .count()
}

fn one_broadcast_reaches_every_member_once(lab: &TestLab, pods: &[&str]) {
    let caps: Vec<(&str, Capture)> = pods
        .iter()
        .skip(1)
        .map(|p| (*p, Capture::start(lab, p, "net1", 4, "icmp")))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // One broadcast frame: a ping to the subnet's broadcast address.
    lab.exec_ok(
        pods[0],
        &["ping", "-b", "-c", "1", "-W", "1", "10.10.0.255"],
    );
    for (pod, cap) in caps {
        let seen = cap.output();
        assert_eq!(
            broadcasts(&seen, "10.10.0.255"),
            1,
            "pod {pod} got the broadcast != once:\n{seen}"
        );
    }
}

#[test]
fn on_a_ring_broadcasts_arrive_once_and_traffic_reroutes_around_a_cut() {
    let lab = TestLab::new("rg");
    lab.ok(&["lab", "up", "--nodes", "4", "--topology", "ring"]);
    lab.ok(&["network", "create", "blue"]);
    let pods = [
        ("a", "n1", "10.10.0.1"),
        ("b", "n2", "10.10.0.2"),
        ("c", "n3", "10.10.0.3"),
        ("d", "n4", "10.10.0.4"),
    ];
    for (pod, node, ip) in pods {
        lab.attach(node, pod, "blue", &format!("{ip}/24"));
    }
    assert!(lab.pings("a", "10.10.0.3"));
    one_broadcast_reaches_every_member_once(&lab, &["a", "b", "c", "d"]);
    // Cut n1-n2: everything must go the other way round.
    let path = format!("/run/l2sm/lab/{}/topology.json", lab.name);
    let mut topo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let links = topo["links"].as_array_mut().unwrap();
    links.retain(|l| !(l["endpointA"] == "n1" && l["endpointB"] == "n2"));
    std::fs::write(&path, serde_json::to_vec(&topo).unwrap()).unwrap();
    l2sm_test_support::wait_until("n1 to drop its link to n2", Duration::from_secs(10), || {
        vxlan_ports(&lab, "n1") == 1
    });
    l2sm_test_support::wait_until(
        "a to reach b around the ring",
        Duration::from_secs(15),
        || lab.pings("a", "10.10.0.2"),
    );
    // Every pair converges within a few seconds (new tunnels resolve their neighbours first).
    for (from, to) in [
        ("b", "10.10.0.1"),
        ("a", "10.10.0.3"),
        ("c", "10.10.0.1"),
        ("d", "10.10.0.2"),
    ] {
        l2sm_test_support::wait_until(
            &format!("{from} to reach {to}"),
            Duration::from_secs(15),
            || lab.pings(from, to),
        );
    }
    one_broadcast_reaches_every_member_once(&lab, &["a", "b", "c", "d"]);
}

/// An OVS bridge set up by hand like a hardware OpenFlow switch: its own OVS in its own
/// namespace, connected to the controller, linked to two nodes by plain veth trunks.
struct HardwareSwitch {
    dir: String,
    pids: Vec<i32>,
}

impl Drop for HardwareSwitch {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hardware_switch(lab: &TestLab, dpid: &str) -> HardwareSwitch {
    let ns = format!("l2sm-{}-hw", lab.name);
    let (n1, n2, ul) = (
        format!("l2sm-{}-n1", lab.name),
        format!("l2sm-{}-n2", lab.name),
        format!("l2sm-{}-ul", lab.name),
    );
    let dir = format!("/run/l2sm/test-hw-{}", lab.name);
    std::fs::create_dir_all(&dir).unwrap();
    sh(&["ip", "netns", "add", &ns]);
    // Management: an address on the underlay to reach the controller.
    sh(&[
        "ip", "link", "add", "mgmt", "netns", &ns, "type", "veth", "peer", "name", "hw", "netns",
        &ul,
    ]);
    sh(&["ip", "-n", &ul, "link", "set", "hw", "master", "ul0", "up"]);
    sh(&[
        "ip",
        "-n",
        &ns,
        "addr",
        "add",
        "10.250.0.200/24",
        "dev",
        "mgmt",
    ]);
    sh(&["ip", "-n", &ns, "link", "set", "mgmt", "up"]);
    // Trunk cables to n1 and n2.
    for (node, port) in [(&n1, "p1"), (&n2, "p2")] {
        sh(&[
            "ip", "link", "add", "trk", "netns", node, "type", "veth", "peer", "name", port,
            "netns", &ns,
        ]);
        sh(&["ip", "-n", node, "link", "set", "trk", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", port, "up"]);
        for (n, i) in [(node.as_str(), "trk"), (ns.as_str(), port)] {
            sh(&["ip", "netns", "exec", n, "ethtool", "-K", i, "tx", "off"]);
        }
    }
    let env = [
        ("OVS_RUNDIR", &dir),
        ("OVS_DBDIR", &dir),
        ("OVS_LOGDIR", &dir),
    ];
    sh(&[
        "ovsdb-tool",
        "create",
        &format!("{dir}/conf.db"),
        "/usr/share/openvswitch/vswitch.ovsschema",
    ]);
    let db = format!("unix:{dir}/db.sock");
    let run = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .envs(env)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "ovsdb-server",
        &format!("{dir}/conf.db"),
        &format!("--remote=punix:{dir}/db.sock"),
        &format!("--pidfile={dir}/ovsdb-server.pid"),
        &format!("--log-file={dir}/ovsdb-server.log"),
        "--detach",
        "--no-chdir",
    ]);
    run(&["ovs-vsctl", &format!("--db={db}"), "--no-wait", "init"]);
    run(&[
        "ovs-vswitchd",
        &db,
        &format!("--pidfile={dir}/ovs-vswitchd.pid"),
        &format!("--log-file={dir}/ovs-vswitchd.log"),
        "--detach",
        "--no-chdir",
    ]);
    let pid = |f: &str| {
        std::fs::read_to_string(format!("{dir}/{f}"))
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
    };
    let hw = HardwareSwitch {
        dir: dir.clone(),
        pids: vec![pid("ovsdb-server.pid"), pid("ovs-vswitchd.pid")],
    };
    // The lab runs OpenFlow over TLS: the switch gets a certificate naming node "hw" from
    // the lab's CA (the controller accepts it for the datapath id the topology gives hw).
    let lab_handle = l2sm_lab::state::Lab::new(&lab.name).unwrap();
    let files = l2sm_lab::pki::issue(&lab_handle, "hw", std::path::Path::new(&dir)).unwrap();
    let ca = l2sm_lab::pki::paths(&lab_handle).ca_cert;
    run(&[
        "ovs-vsctl",
        &format!("--db={db}"),
        "set-ssl",
        files.key.to_str().unwrap(),
        files.cert.to_str().unwrap(),
        ca.to_str().unwrap(),
    ]);
    run(&[
        "ovs-vsctl",
        &format!("--db={db}"),
        "add-br",
        "hw0",
        "--",
        "set",
        "bridge",
        "hw0",
        "datapath_type=netdev",
        "protocols=OpenFlow13",
        "fail_mode=secure",
        &format!("other_config:datapath-id={dpid}"),
        "--",
        "add-port",
        "hw0",
        "p1",
        "--",
        "set",
        "interface",
        "p1",
        "ofport_request=57344",
        "--",
        "add-port",
        "hw0",
        "p2",
        "--",
        "set",
        "interface",
        "p2",
        "ofport_request=57345",
        "--",
        "set-controller",
        "hw0",
        "ssl:10.250.0.254:6653",
        "--",
        "set",
        "controller",
        "hw0",
        "connection_mode=out-of-band",
        "max_backoff=1000",
    ]);
    hw
}

#[test]
fn two_networks_cross_an_unmanaged_openflow_switch_over_trunks_isolated() {
    let lab = TestLab::new("hw");
    let dpid = "00000000000000aa";
    let topo = serde_json::json!({
        "nodes": ["n1", "n2", {"name": "hw", "dpid": dpid}],
        "links": [
            {"endpointA": "n1", "endpointB": "hw", "type": "trunk", "interfaceA": "trk", "interfaceB": "p1"},
            {"endpointA": "hw", "endpointB": "n2", "type": "trunk", "interfaceA": "p2", "interfaceB": "trk"}
        ]
    });
    let file = format!("/tmp/l2sm-{}-topology.json", lab.name);
    std::fs::write(&file, topo.to_string()).unwrap();
    lab.ok(&["lab", "up", "--nodes", "2", "--topology", &file]);
    let _ = std::fs::remove_file(&file);
    let _hw = hardware_switch(&lab, dpid);
    l2sm_test_support::wait_until(
        "the hardware switch to connect",
        Duration::from_secs(15),
        || lab.ok(&["lab", "status"]).contains("of:00000000000000aa"),
    );
    lab.ok(&["network", "create", "blue"]);
    lab.ok(&["network", "create", "red"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    lab.attach("n1", "c", "red", "10.10.0.3/24");
    lab.attach("n2", "d", "red", "10.10.0.4/24");
    assert_eq!(
        (vxlan_ports(&lab, "n1"), vxlan_ports(&lab, "n2")),
        (0, 0),
        "only trunks in this topology"
    );
    // The agents add the trunk ports from the topology.
    l2sm_test_support::wait_until(
        "blue across the hardware switch",
        Duration::from_secs(15),
        || lab.pings("a", "10.10.0.2"),
    );
    assert!(
        lab.pings("c", "10.10.0.4"),
        "red across the hardware switch"
    );
    assert!(lab.blocked("a", "10.10.0.4"));
    assert!(lab.blocked("c", "10.10.0.2"));
    // On the trunk the two networks carry different tags.
    let cap = Capture::start(&lab, "n1", "trk", 3, "icmp");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(lab.pings("a", "10.10.0.2"));
    assert!(lab.pings("c", "10.10.0.4"));
    let seen = cap.output();
    assert!(
        seen.contains("vlan 1,") && seen.contains("vlan 2,"),
        "expected tags 1 and 2 on the trunk:\n{seen}"
    );
    // LLDP probes cross the trunks (untagged) both ways: both links are confirmed.
    l2sm_test_support::wait_until("both trunk links up", Duration::from_secs(10), || {
        link_states(&lab) == (2, 0)
    });
}

/// Links in `l2sm topology` by state: (up, down).
fn link_states(lab: &TestLab) -> (usize, usize) {
    let text = lab.ok(&["topology"]);
    let links: Vec<&str> = text.lines().filter(|l| l.contains("<->")).collect();
    let up = links
        .iter()
        .filter(|l| l.trim_end().ends_with(" up"))
        .count();
    (up, links.len() - up)
}

/// br-phy of a lab node, where the VXLAN packets leave (userspace tunnels, UDP port 7000).
fn br_phy(lab: &TestLab, node: &str) -> String {
    format!("unix:/run/l2sm/lab/{}/{node}/br-phy.mgmt", lab.name)
}

#[test]
fn lldp_marks_a_silently_broken_link_down_traffic_reroutes_and_it_comes_back() {
    let lab = TestLab::new("ld");
    lab.ok(&["lab", "up", "--nodes", "4", "--topology", "ring"]);
    lab.ok(&["network", "create", "blue"]);
    let pods = [
        ("a", "n1", "10.10.0.1"),
        ("b", "n2", "10.10.0.2"),
        ("c", "n3", "10.10.0.3"),
        ("d", "n4", "10.10.0.4"),
    ];
    for (pod, node, ip) in pods {
        lab.attach(node, pod, "blue", &format!("{ip}/24"));
    }
    l2sm_test_support::wait_until("all four links up", Duration::from_secs(10), || {
        link_states(&lab) == (4, 0)
    });
    assert!(lab.pings("a", "10.10.0.2"));
    // Break n1 -> n2 in the underlay only: VXLAN packets from n1 to n2 are dropped on n1's
    // br-phy. Ports stay up and the topology file is unchanged; only probes can tell.
    let n2_ip = lab.state()["nodes"][1]["ip"].as_str().unwrap().to_string();
    let rule = format!("priority=100,udp,nw_dst={n2_ip},tp_dst=7000");
    let bridge = br_phy(&lab, "n1");
    sh(&[
        "ovs-ofctl",
        "add-flow",
        &bridge,
        &format!("{rule},actions=drop"),
    ]);
    let cut = std::time::Instant::now();
    l2sm_test_support::wait_until(
        "the controller to mark the link down",
        Duration::from_secs(10),
        || link_states(&lab) == (3, 1),
    );
    let detected = cut.elapsed();
    eprintln!("link down detected after {detected:?}");
    l2sm_test_support::wait_until(
        "a to reach b the other way round",
        Duration::from_secs(15),
        || lab.pings("a", "10.10.0.2"),
    );
    for (from, to) in [("b", "10.10.0.1"), ("c", "10.10.0.1"), ("d", "10.10.0.2")] {
        l2sm_test_support::wait_until(
            &format!("{from} to reach {to}"),
            Duration::from_secs(15),
            || lab.pings(from, to),
        );
    }
    one_broadcast_reaches_every_member_once(&lab, &["a", "b", "c", "d"]);
    let m = l2sm_test_support::lab::metrics(&lab);
    assert_eq!(l2sm_test_support::lab::metric(&m, "l2sm_links_live"), 3.0);
    assert_eq!(
        l2sm_test_support::lab::metric(&m, "l2sm_links_configured"),
        4.0
    );
    assert!(l2sm_test_support::lab::metric(&m, "l2sm_lldp_probes_received_total") > 0.0);
    // Restore: the link comes back.
    sh(&["ovs-ofctl", "del-flows", "--strict", &bridge, &rule]);
    l2sm_test_support::wait_until("the link to come back", Duration::from_secs(10), || {
        link_states(&lab) == (4, 0)
    });
    l2sm_test_support::wait_until("a to reach b again", Duration::from_secs(15), || {
        lab.pings("a", "10.10.0.2")
    });
    one_broadcast_reaches_every_member_once(&lab, &["a", "b", "c", "d"]);
    let m = l2sm_test_support::lab::metrics(&lab);
    assert_eq!(l2sm_test_support::lab::metric(&m, "l2sm_links_live"), 4.0);
    assert!(l2sm_test_support::lab::metric(&m, "l2sm_flow_mod_batch_latency_seconds_count") > 0.0);
    assert!(
        m.contains("l2sm_switch_flows{dpid=\"of:"),
        "per-switch flows: {m}"
    );
}

/// Port id (`of:…/n`) of `pod`'s first interface, from the lab state.
fn pod_port(lab: &TestLab, pod: &str) -> String {
    lab.state()["pods"][pod]["attachments"][0]["port"]
        .as_str()
        .unwrap_or_else(|| panic!("no port for {pod}"))
        .to_string()
}

/// Everything `pod` sees on net1 while `action` runs.
fn seen_during(lab: &TestLab, pod: &str, action: impl FnOnce()) -> String {
    let cap = Capture::start(lab, pod, "net1", 4, "");
    std::thread::sleep(Duration::from_millis(1500));
    action();
    cap.output()
}

fn count(capture: &str, needle: &str) -> usize {
    capture.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_mirror_port_sees_each_frame_of_its_network_once_and_nothing_else() {
    let lab = TestLab::up("mr", 3);
    lab.ok(&["network", "create", "blue"]);
    lab.ok(&["network", "create", "red"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    lab.attach("n1", "r1", "red", "10.10.0.11/24");
    lab.attach("n2", "r2", "red", "10.10.0.12/24");
    // The mirror: a pod on the third node, attached to blue, then made its mirror.
    lab.attach("n3", "m", "blue", "10.10.0.3/24");
    let port = pod_port(&lab, "m");
    lab.ok(&["network", "mirror", "blue", &port]);
    let nets = lab.ok(&["network", "list"]);
    assert!(!nets.contains(&port), "the mirror is no member:\n{nets}");
    std::thread::sleep(Duration::from_millis(500));
    let traffic = || {
        for pod in ["a", "b"] {
            lab.exec_ok(pod, &["ip", "neigh", "flush", "all"]);
        }
        assert!(lab.exec_ok("a", &["ping", "-c", "1", "-W", "2", "10.10.0.2"]));
        lab.exec_ok("a", &["ping", "-b", "-c", "1", "-W", "1", "10.10.0.255"]);
        assert!(lab.exec_ok("r1", &["ping", "-c", "1", "-W", "2", "10.10.0.12"]));
    };
    let seen = seen_during(&lab, "m", traffic);
    for (what, needle) in [
        ("ARP request", "Request who-has 10.10.0.2 tell 10.10.0.1"),
        ("ARP reply", "Reply 10.10.0.2 is-at"),
        (
            "unicast request",
            "10.10.0.1 > 10.10.0.2: ICMP echo request",
        ),
        ("unicast reply", "10.10.0.2 > 10.10.0.1: ICMP echo reply"),
        ("broadcast", "10.10.0.1 > 10.10.0.255: ICMP echo request"),
    ] {
        assert_eq!(
            count(&seen, needle),
            1,
            "{what} != once on the mirror:\n{seen}"
        );
    }
    assert!(
        !seen.contains("10.10.0.11") && !seen.contains("10.10.0.12"),
        "red traffic reached blue's mirror:\n{seen}"
    );
    // What the mirror sends goes nowhere.
    assert!(lab.blocked("m", "10.10.0.2"));
    // Replace it with a port on n1, where a lives (copies taken locally), then clear it.
    lab.attach("n1", "m2", "blue", "10.10.0.4/24");
    let port2 = pod_port(&lab, "m2");
    lab.ok(&["network", "mirror", "blue", &port2]);
    std::thread::sleep(Duration::from_millis(500));
    let old = Capture::start(&lab, "m", "net1", 4, "icmp");
    let seen = seen_during(&lab, "m2", traffic);
    assert_eq!(
        count(&seen, "10.10.0.2 > 10.10.0.1: ICMP echo reply"),
        1,
        "replaced mirror:\n{seen}"
    );
    assert_eq!(count(&seen, "10.10.0.1 > 10.10.0.255"), 1, "{seen}");
    let old = old.output();
    assert!(
        !old.contains("ICMP echo"),
        "the old mirror still gets copies:\n{old}"
    );
    lab.ok(&["network", "mirror", "blue", "--clear"]);
    std::thread::sleep(Duration::from_millis(500));
    let seen = seen_during(&lab, "m2", traffic);
    // Nothing from the network's pods (the node's end of the pod's veth may still talk).
    for pod in ["a", "b"] {
        let theirs = mac(&lab, pod);
        assert!(
            !seen.contains(&theirs) && !seen.contains("ICMP echo"),
            "cleared mirror still gets {pod}'s ({theirs}) frames:\n{seen}"
        );
    }
}

/// MAC address of `pod`'s net1.
fn mac(lab: &TestLab, pod: &str) -> String {
    let out = lab.ok(&["lab", "exec", pod, "--", "ip", "-o", "link", "show", "net1"]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {out}"))
        .to_string()
}

#[test]
fn mirror_copies_follow_the_tree_on_a_line() {
    // n1 - n2 - n3: members on n1 and n2, mirror on n3, so n1's copies transit n2.
    let lab = TestLab::new("ml");
    lab.ok(&["lab", "up", "--nodes", "3", "--topology", "line"]);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    lab.attach("n3", "m", "blue", "10.10.0.3/24");
    let port = pod_port(&lab, "m");
    lab.ok(&["network", "mirror", "blue", &port]);
    std::thread::sleep(Duration::from_millis(500));
    let seen = seen_during(&lab, "m", || {
        assert!(lab.exec_ok(
            "a",
            &["ping", "-c", "2", "-i", "0.3", "-W", "2", "10.10.0.2"]
        ));
        lab.exec_ok("a", &["ping", "-b", "-c", "1", "-W", "1", "10.10.0.255"]);
    });
    assert_eq!(
        count(&seen, "10.10.0.1 > 10.10.0.2: ICMP echo request"),
        2,
        "{seen}"
    );
    assert_eq!(
        count(&seen, "10.10.0.2 > 10.10.0.1: ICMP echo reply"),
        2,
        "{seen}"
    );
    assert_eq!(count(&seen, "10.10.0.1 > 10.10.0.255"), 1, "{seen}");
}
