//! The node agent's local API against a real lab node: idempotent attach, rollback of every
//! failed step, detach of an unknown id or of a pod whose namespace vanished.

use l2sm_test_support::lab::TestLab;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::Command;

fn agent(lab: &TestLab, node: &str, req: Value) -> Value {
    let path = format!("/run/l2sm/lab/{}/{node}/agent.sock", lab.name);
    let mut s = std::os::unix::net::UnixStream::connect(&path).expect("agent socket");
    s.write_all(format!("{req}\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).expect("agent reply is JSON")
}

/// Node-side view: OVS ports of the node's bridges and links in the node namespace.
fn node_view(lab: &TestLab, node: &str) -> (String, String) {
    let dir = format!("/run/l2sm/lab/{}/{node}", lab.name);
    let ports = Command::new("ovs-vsctl")
        .arg(format!("--db=unix:{dir}/db.sock"))
        .args(["--format=csv", "--columns=name,ofport", "list", "Interface"])
        .output()
        .unwrap();
    let links = Command::new("ip")
        .args(["-n", &format!("l2sm-{}-{node}", lab.name), "-br", "link"])
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&links.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    names.sort();
    let mut rows: Vec<String> = String::from_utf8_lossy(&ports.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    rows.sort();
    (rows.join("\n"), names.join(" "))
}

fn make_ns(name: &str) -> String {
    assert!(Command::new("ip")
        .args(["netns", "add", name])
        .status()
        .unwrap()
        .success());
    format!("/run/netns/{name}")
}

#[test]
fn attach_is_idempotent_and_failures_leave_nothing_behind() {
    let lab = TestLab::up("ag", 2);
    lab.ok(&["network", "create", "blue"]);
    // A namespace the lab does not know about, named with the lab's prefix so `lab down` removes it.
    let ns = make_ns(&format!("l2sm-{}-p-x", lab.name));
    let attach = |id: &str, ifname: &str, network: &str, ips: Value| {
        json!({"op": "attach", "attachment_id": id, "netns": ns, "ifname": ifname,
               "network": network, "ips": ips})
    };
    let first = agent(
        &lab,
        "n1",
        attach("x/net1", "net1", "blue", json!(["10.10.0.7/24"])),
    );
    assert_eq!(first["ok"], true, "{first}");
    let again = agent(
        &lab,
        "n1",
        attach("x/net1", "net1", "blue", json!(["10.10.0.7/24"])),
    );
    assert_eq!(
        again["result"], first["result"],
        "a repeated attach returns the same port"
    );
    let moved = agent(&lab, "n1", attach("x/net1", "net1", "red", json!([])));
    assert_eq!(moved["ok"], false);

    let before = node_view(&lab, "n1");
    let failures = [
        (attach("x/dup", "net1", "blue", json!([])), "already exists"),
        (
            attach("x/net2", "net2", "nope", json!([])),
            "unknown network",
        ),
        (
            attach("x/bad", "a/b", "blue", json!([])),
            "invalid interface name",
        ),
        (
            attach("x/mac", "net3", "blue", json!([]))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("mac".into(), json!("01:00:00:00:00:01"));
                    Value::Object(o)
                })
                .unwrap(),
            "multicast",
        ),
        (
            json!({"op": "attach", "attachment_id": "y/net1", "netns": "/run/netns/does-not-exist",
                "ifname": "net1", "network": "blue"}),
            "does-not-exist",
        ),
        // The same address twice on one interface: the kernel refuses the second one, after
        // the veth already exists, so this exercises the rollback.
        (
            attach(
                "x/ip",
                "net4",
                "blue",
                json!(["10.10.9.1/24", "10.10.9.1/24"]),
            ),
            "net4",
        ),
        (json!({"op": "bogus"}), "malformed request"),
    ];
    for (req, expect) in failures {
        let reply = agent(&lab, "n1", req.clone());
        assert_eq!(reply["ok"], false, "{req} succeeded");
        let err = reply["error"].as_str().unwrap_or_default();
        assert!(
            err.contains(expect),
            "{req}: error {err:?} lacks {expect:?}"
        );
        assert_eq!(node_view(&lab, "n1"), before, "{req} left something behind");
    }
    let pod_links = Command::new("ip")
        .args(["-n", ns.trim_start_matches("/run/netns/"), "-br", "link"])
        .output()
        .unwrap();
    let pod_links = String::from_utf8_lossy(&pod_links.stdout);
    assert!(
        !pod_links.contains("net2") && !pod_links.contains("net3") && !pod_links.contains("net4"),
        "{pod_links}"
    );
}

#[test]
fn detach_is_idempotent_and_works_when_the_pod_namespace_is_gone() {
    let lab = TestLab::up("gn", 2);
    lab.ok(&["network", "create", "blue"]);
    let ns_name = format!("l2sm-{}-p-z", lab.name);
    let ns = make_ns(&ns_name);
    let before = node_view(&lab, "n1");
    let reply = agent(
        &lab,
        "n1",
        json!({"op": "attach", "attachment_id": "z/net1", "netns": ns,
        "ifname": "net1", "network": "blue", "ips": ["10.10.0.8/24"]}),
    );
    assert_eq!(reply["ok"], true, "{reply}");
    let port = reply["result"]["port"].as_str().unwrap().to_string();
    assert!(lab.ok(&["network", "list"]).contains(&port));
    // The pod disappears under the agent.
    assert!(Command::new("ip")
        .args(["netns", "del", &ns_name])
        .status()
        .unwrap()
        .success());
    let reply = agent(
        &lab,
        "n1",
        json!({"op": "detach", "attachment_id": "z/net1"}),
    );
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["detached"], true);
    assert_eq!(
        node_view(&lab, "n1"),
        before,
        "detach left something behind"
    );
    assert!(
        !lab.ok(&["network", "list"]).contains(&port),
        "controller still has the membership"
    );
    let reply = agent(
        &lab,
        "n1",
        json!({"op": "detach", "attachment_id": "z/net1"}),
    );
    assert_eq!(
        (reply["ok"].clone(), reply["result"]["detached"].clone()),
        (json!(true), json!(false))
    );
    let list = agent(&lab, "n1", json!({"op": "list"}));
    assert_eq!(list["result"], json!([]));
}
