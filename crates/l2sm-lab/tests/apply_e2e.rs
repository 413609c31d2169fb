//! `l2sm lab apply -f` / `lab delete -f` end to end: our examples with the shapes of
//! upstream's (examples/k8s/) behave as upstream documents, what cannot be emulated is
//! listed, bad manifests change nothing, a failure midway is rolled back, and nothing from a
//! manifest runs or reaches the host. Needs root; fails (never skips) without it.

use l2sm_test_support::lab::{api_call, TestLab};
use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> String {
    root().join("examples/k8s").join(name).display().to_string()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn apply(lab: &TestLab, files: &[&str]) -> String {
    let mut args = vec!["lab", "apply"];
    for f in files {
        args.extend(["-f", f]);
    }
    lab.ok(&args)
}

fn delete(lab: &TestLab, files: &[&str]) -> String {
    let mut args = vec!["lab", "delete"];
    for f in files {
        args.extend(["-f", f]);
    }
    lab.ok(&args)
}

/// What the lab is made of, as far as an apply could change it: namespaces, controller
/// networks, pods in the state, the records of applies, and every node switch's ports.
#[derive(Debug, PartialEq)]
struct Snapshot {
    namespaces: Vec<String>,
    networks: Vec<String>,
    pods: Vec<String>,
    applied: usize,
    ports: Vec<String>,
}

fn snapshot(lab: &TestLab) -> Snapshot {
    let (code, nets) = api_call(lab, "GET", "/api/v1/networks");
    assert_eq!(code, 200, "{nets}");
    let mut networks: Vec<String> = nets
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    networks.sort();
    let state = lab.state();
    let pods = state["pods"].as_object().unwrap().keys().cloned().collect();
    let applied = state["applied"].as_array().map_or(0, Vec::len);
    let mut ports = Vec::new();
    for node in ["n1", "n2", "n3"] {
        let db = format!("unix:/run/l2sm/lab/{}/{node}/db.sock", lab.name);
        let out = std::process::Command::new("ovs-vsctl")
            .args([
                "--db",
                &db,
                "--format=csv",
                "--no-headings",
                "--columns=name",
                "list",
                "Interface",
            ])
            .output()
            .expect("ovs-vsctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            ports.push(format!("{node}:{l}"));
        }
    }
    ports.sort();
    Snapshot {
        namespaces: lab.namespaces(),
        networks,
        pods,
        applied,
        ports,
    }
}

fn pod_ips(lab: &TestLab, pod: &str) -> Vec<String> {
    lab.state()["pods"][pod]["attachments"]
        .as_array()
        .unwrap_or_else(|| panic!("no pod {pod}"))
        .iter()
        .flat_map(|a| {
            a["ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_string())
        })
        .collect()
}

fn node_of(lab: &TestLab, pod: &str) -> String {
    lab.state()["pods"][pod]["node"]
        .as_str()
        .unwrap()
        .to_string()
}

fn exec_out(lab: &TestLab, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["lab", "exec", pod, "--"];
    args.extend_from_slice(cmd);
    lab.ok(&args)
}

#[test]
fn upstream_examples_behave_as_documented_and_delete_leaves_the_lab_as_before() {
    let lab = TestLab::up("apx", 3);
    let before = snapshot(&lab);

    // overlay: validated, the lab's own mesh kept and said so.
    let out = apply(&lab, &[&example("overlay.yaml")]);
    assert!(
        out.contains("overlay.l2sm.l2sm.k8s.local/overlay-sample created"),
        "{out}"
    );
    assert!(out.contains("topology: 3 nodes, 3 links"), "{out}");
    assert!(
        out.contains("not emulated: the Overlay's own nodes and links"),
        "{out}"
    );
    delete(&lab, &[&example("overlay.yaml")]);
    assert_eq!(snapshot(&lab), before);
    // An Overlay over the lab's own nodes: its links compared with the lab's full mesh.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("line.yaml");
    std::fs::write(
        &file,
        "apiVersion: l2sm.l2sm.k8s.local/v1\nkind: Overlay\nmetadata: {name: line}\nspec:\n  provider: {name: p, domain: [c]}\n  topology:\n    nodes: [n1, n2, n3, n4]\n    links: [{endpointA: n1, endpointB: n2}, {endpointA: n3, endpointB: n2}, {endpointA: n3, endpointB: n4}]\n",
    )
    .unwrap();
    let out = apply(&lab, &[&file.display().to_string()]);
    assert!(
        out.contains("not emulated: the Overlay's own nodes and links (no lab node is named n4;"),
        "{out}"
    );
    delete(&lab, &[&file.display().to_string()]);
    std::fs::write(
        &file,
        "apiVersion: l2sm.l2sm.k8s.local/v1\nkind: Overlay\nmetadata: {name: line}\nspec:\n  provider: {name: p, domain: [c]}\n  topology:\n    nodes: [n1, n2, n3]\n    links: [{endpointA: n1, endpointB: n2}, {endpointA: n3, endpointB: n2}]\n",
    )
    .unwrap();
    let out = apply(&lab, &[&file.display().to_string()]);
    assert!(
        out.contains("the lab also has links n1-n3 (not in the Overlay; kept)"),
        "{out}"
    );
    assert!(!out.contains("not emulated: links"), "{out}");
    delete(&lab, &[&file.display().to_string()]);
    assert_eq!(snapshot(&lab), before);

    // ping-pong: ping-intra has 10.0.0.1/24 from its annotation, pong-intra only the network;
    // their commands' /30 addresses on net1 are applied; they reach each other across nodes.
    let out = apply(&lab, &[&example("ping-pong.yaml")]);
    assert!(out.contains("pod/ping-intra created"), "{out}");
    assert_eq!(pod_ips(&lab, "ping-intra"), ["10.0.0.1/24"]);
    assert!(pod_ips(&lab, "pong-intra").is_empty());
    assert_ne!(node_of(&lab, "ping-intra"), node_of(&lab, "pong-intra"));
    let addrs = exec_out(
        &lab,
        "pong-intra",
        &["ip", "-4", "-o", "addr", "show", "dev", "net1"],
    );
    assert!(
        addrs.contains("192.168.12.2/30") && !addrs.contains("10.0.0."),
        "{addrs}"
    );
    assert!(lab.pings("ping-intra", "192.168.12.2"));
    assert!(lab.pings("pong-intra", "192.168.12.1"));
    assert!(
        out.contains("not emulated: container ping (image alpine:3.20"),
        "{out}"
    );
    assert!(out.contains("`sleep infinity`"), "{out}");
    let status = lab.ok(&["lab", "status"]);
    assert!(
        status.contains("default/ping-intra") && status.contains("default/pong-intra"),
        "{status}"
    );
    // The same manifests again: unchanged, nothing new.
    let again = apply(&lab, &[&example("ping-pong.yaml")]);
    assert!(again.contains("pod/ping-intra unchanged"), "{again}");
    delete(&lab, &[&example("ping-pong.yaml")]);
    assert_eq!(snapshot(&lab), before);

    // adding-ips: static addresses from the annotation, ping without any manual step.
    apply(&lab, &[&example("adding-ips.yaml")]);
    assert_eq!(pod_ips(&lab, "pong-intra"), ["10.0.0.2/24"]);
    assert!(lab.pings("ping-intra", "10.0.0.2"));
    assert!(lab.pings("pong-intra", "10.0.0.1"));
    delete(&lab, &[&example("adding-ips.yaml")]);
    assert_eq!(snapshot(&lab), before);

    // cdn: cdn-server reaches the content-server replica through the router (one routed hop),
    // only while the router forwards; the two ends share no segment.
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let out = apply(&lab, &[&example("cdn.yaml")]);
    let content: Vec<String> = lab.state()["pods"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("content-server-"))
        .cloned()
        .collect();
    assert_eq!(content.len(), 1, "{content:?}");
    let parts: Vec<&str> = content[0].rsplitn(3, '-').collect();
    assert_eq!((parts[0].len(), parts[1].len()), (5, 10), "{content:?}");
    assert!(
        out.contains("not emulated: container server (image alexdecb/video-server-test:1"),
        "{out}"
    );
    assert!(
        out.contains("not emulated: container server: ports"),
        "{out}"
    );
    assert_eq!(
        exec_out(&lab, "router", &["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward,
        "the router's sysctl reached the host"
    );
    let routes = exec_out(&lab, "cdn-server", &["ip", "route", "show", "10.0.2.0/24"]);
    assert!(routes.contains("via 10.0.1.1 dev net1"), "{routes}");
    assert!(lab.pings("cdn-server", "10.0.2.2"));
    let reply = exec_out(
        &lab,
        "cdn-server",
        &["ping", "-c", "1", "-W", "1", "10.0.2.2"],
    );
    assert!(reply.contains("ttl=63"), "not one routed hop: {reply}");
    assert!(lab.pings(&content[0], "10.0.1.2"));
    lab.ok(&[
        "lab",
        "exec",
        "router",
        "--",
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=0",
    ]);
    assert!(
        lab.blocked("cdn-server", "10.0.2.2"),
        "reached the content server without the router"
    );
    lab.ok(&[
        "lab",
        "exec",
        "router",
        "--",
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    assert!(lab.pings("cdn-server", "10.0.2.2"));
    delete(&lab, &[&example("cdn.yaml")]);
    assert_eq!(snapshot(&lab), before);

    // vlink: a plain vnet, the path listed as not emulated, hostnames that are no lab node
    // placed round-robin and said so.
    let out = apply(&lab, &[&example("vlink.yaml")]);
    assert!(out.contains("not emulated: vlink path"), "{out}");
    assert!(out.contains("node \"node-a\" is not a lab node"), "{out}");
    assert!(lab.pings("ping", "192.168.1.3"));
    delete(&lab, &[&example("vlink.yaml")]);
    assert_eq!(snapshot(&lab), before);

    // ids: addresses from the network's CIDR, the IDS listed as not emulated.
    let out = apply(&lab, &[&example("ids.yaml")]);
    assert!(out.contains("not emulated: IDS"), "{out}");
    let mut got = [pod_ips(&lab, "ping"), pod_ips(&lab, "pong")].concat();
    got.sort();
    assert_eq!(got, ["10.0.0.1/24", "10.0.0.2/24"]);
    let pong = pod_ips(&lab, "pong")[0]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(lab.pings("ping", &pong));
    delete(&lab, &[&example("ids.yaml")]);
    assert_eq!(snapshot(&lab), before);

    // quarantine: the attacker first reaches production; the request moves it live to the
    // quarantine network, where 10.20.0.10 is the honeypot, and production is out of reach.
    let q = |f: &str| example(&format!("quarantine/{f}"));
    let out = apply(
        &lab,
        &[
            &q("01-networks.yaml"),
            &q("02-pods.yaml"),
            &q("03-attacker.yaml"),
        ],
    );
    assert!(
        out.contains("configmap/production-ids-rules skipped"),
        "{out}"
    );
    assert!(lab.pings("attacker", "10.20.0.101"));
    let out = apply(&lab, &[&q("04-quarantine-request.yaml")]);
    assert!(
        out.contains(
            "moved 1 pod(s) from \"example-production-network\" to \"example-quarantine-network\""
        ),
        "{out}"
    );
    assert!(
        lab.blocked("attacker", "10.20.0.101"),
        "the quarantined pod still reaches production"
    );
    assert!(lab.pings("attacker", "10.20.0.10"));
    let link = exec_out(
        &lab,
        "honeypot-server",
        &["ip", "-o", "link", "show", "dev", "net1"],
    );
    let honeypot_mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {link}"))
        .to_string();
    let neigh = exec_out(&lab, "attacker", &["ip", "neigh", "show", "10.20.0.10"]);
    assert!(
        neigh.contains(&honeypot_mac),
        "10.20.0.10 is not the honeypot: {neigh} vs {honeypot_mac}"
    );
    assert!(lab.pings("host1", "10.20.0.10"));
    assert!(lab.pings("host1", "10.20.0.102"));
    let status = lab.ok(&["lab", "status"]);
    assert!(
        status
            .lines()
            .any(|l| l.contains("default/attacker") && l.contains("example-quarantine-network")),
        "{status}"
    );
    let out = delete(&lab, &[&example("quarantine")]);
    assert!(
        out.contains("quarantinepodrequest.l2sm.l2sm.k8s.local/example-production-network deleted"),
        "{out}"
    );
    assert_eq!(snapshot(&lab), before);
}

#[test]
fn a_bad_manifest_dir_changes_nothing_and_a_failure_midway_is_rolled_back() {
    let lab = TestLab::up("apb", 3);
    let before = snapshot(&lab);
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/bad");
    let out = lab.run(&["lab", "apply", "-f", &bad.display().to_string()]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    for expected in [
        "no matches for kind \"L2Gateway\" in version \"l2sm.l2sm.k8s.local/v1\"",
        "admission webhook \"mpod.kb.io\" denied the request: l2sm/networks: not a JSON list of networks",
        "admission webhook \"mpod.kb.io\" denied the request: l2sm/networks: L2Network \"no-such-network\" does not exist",
        "admission webhook \"mpod.kb.io\" denied the request: l2sm/networks: network \"good-network\": ips[0] \"10.77.0.300/24\" is not an address",
        "l2network.l2sm.l2sm.k8s.local/bad-cidr: networkCIDR \"10.78.0.0/33\" is not a CIDR",
        "pod/subnet-address: network \"good-network\": 10.77.0.255/24 is the broadcast address of its subnet",
        "nothing was changed: 6 object(s) invalid",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("README"), "{stderr}");
    assert_eq!(snapshot(&lab), before);

    // Valid manifests whose second pod fails while acting (its route's gateway is on no
    // network it has): the network and first pod this apply made are removed again.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        r#"apiVersion: l2sm.l2sm.k8s.local/v1
kind: L2Network
metadata: {name: rb-net}
spec: {type: vnet}
---
apiVersion: v1
kind: Pod
metadata:
  name: rb-a
  labels: {l2sm: "true"}
  annotations: {l2sm/networks: '[{"name": "rb-net", "ips": ["10.66.0.1/24"]}]'}
spec:
  containers: [{name: c, image: alpine, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata:
  name: rb-b
  labels: {l2sm: "true"}
  annotations: {l2sm/networks: '[{"name": "rb-net", "ips": ["10.66.0.2/24"]}]'}
spec:
  containers:
    - name: c
      image: alpine
      command: [sh, -c, "ip route add 10.9.0.0/16 via 10.99.0.1 dev net1"]
      securityContext: {capabilities: {add: [NET_ADMIN]}}
"#,
    )
    .unwrap();
    let out = lab.run(&["lab", "apply", "-f", &dir.path().display().to_string()]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("pod/rb-b"), "{stderr}");
    assert!(
        stderr.contains("ip route add 10.9.0.0/16 via 10.99.0.1 dev net1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rolled back: nothing this apply made is left"),
        "{stderr}"
    );
    assert_eq!(snapshot(&lab), before);

    // Deleting what was never applied is reported, and changes nothing.
    let out = lab.run(&["lab", "delete", "-f", &dir.path().display().to_string()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("pod/rb-a not found"), "{stderr}");
    assert_eq!(snapshot(&lab), before);
}

#[test]
fn manifest_commands_never_run_nor_reach_the_host() {
    let lab = TestLab::up("aph", 2);
    let canary = std::env::temp_dir().join(format!("l2sm-apply-canary-{}", lab.name));
    let dir = tempfile::tempdir().unwrap();
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_v6 = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        format!(
            r#"apiVersion: l2sm.l2sm.k8s.local/v1
kind: L2Network
metadata: {{name: hs-net}}
spec: {{type: vnet}}
---
apiVersion: v1
kind: Pod
metadata:
  name: hs-a
  labels: {{l2sm: "true"}}
  annotations: {{l2sm/networks: hs-net}}
spec:
  securityContext:
    sysctls: [{{name: net.ipv6.conf.all.forwarding, value: "1"}}]
  containers:
    - name: c
      image: alpine
      command: [sh, -c]
      args:
        - |
          touch {canary} && echo pwned > {canary}
          sysctl -w net.ipv4.ip_forward=1
          echo 1 > /proc/sys/net/ipv4/ip_forward
          ip addr add 10.55.0.1/24 dev net1
          ip link set lo up
          sysctl -w kernel.hostname=pwned
      securityContext: {{privileged: true}}
---
apiVersion: v1
kind: Pod
metadata:
  name: hs-b
  labels: {{l2sm: "true"}}
  annotations: {{l2sm/networks: hs-net}}
spec:
  containers:
    - name: c
      image: alpine
      command: [sh, -c, "ip addr add 10.55.0.2/24 dev net1 && sysctl -w net.ipv4.ip_forward=1"]
"#,
            canary = canary.display()
        ),
    )
    .unwrap();
    let out = apply(&lab, &[&dir.path().display().to_string()]);
    assert!(!canary.exists(), "a manifest's command ran on the host");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").unwrap(),
        host_v6
    );
    // hs-a (privileged): every network effect applied in its own namespace.
    assert_eq!(
        exec_out(&lab, "hs-a", &["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    assert_eq!(
        exec_out(
            &lab,
            "hs-a",
            &["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]
        )
        .trim(),
        "1"
    );
    assert!(
        exec_out(&lab, "hs-a", &["ip", "-o", "addr", "show", "dev", "net1"])
            .contains("10.55.0.1/24")
    );
    // What is not a network effect is listed, never run.
    assert!(
        out.contains(&format!("`touch {}`", canary.display())),
        "{out}"
    );
    assert!(out.contains("`sysctl -w kernel.hostname=pwned`"), "{out}");
    // hs-b (no NET_ADMIN, not privileged): its commands would fail in a cluster: not applied.
    assert!(out.contains("pod hs-b: not emulated: `ip addr add 10.55.0.2/24 dev net1`: it would fail in a cluster"), "{out}");
    assert!(
        !exec_out(&lab, "hs-b", &["ip", "-o", "addr", "show", "dev", "net1"]).contains("10.55.0.2")
    );
    assert_eq!(
        exec_out(&lab, "hs-b", &["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "0"
    );
    delete(&lab, &[&dir.path().display().to_string()]);
    assert!(lab.state()["pods"].as_object().unwrap().is_empty());
}
