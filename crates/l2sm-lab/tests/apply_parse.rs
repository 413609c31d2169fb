//! `lab apply`'s readers without a lab: the command/args effects it recognises (and what it
//! refuses to guess), and how manifests are read from files and directories.

use l2sm_lab::apply::effects::{parse_container, split_script, Effect};
use l2sm_lab::apply::manifests;
use std::path::PathBuf;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn shell_scripts_split_on_operators_quotes_and_newlines() {
    let st = split_script("ip addr add 10.0.0.1/24 dev net1 && echo 'a && b'; sleep 1\nfoo || bar | baz & qux # c\nlast");
    let joined: Vec<String> = st.iter().map(|w| w.join(" ")).collect();
    assert_eq!(
        joined,
        vec![
            "ip addr add 10.0.0.1/24 dev net1",
            "echo a && b",
            "sleep 1",
            "foo",
            "bar",
            "baz",
            "qux",
            "last"
        ]
    );
    let st = split_script("echo 1 >/proc/sys/net/ipv4/ip_forward");
    assert_eq!(
        st[0],
        s(&["echo", "1", ">", "/proc/sys/net/ipv4/ip_forward"])
    );
}

#[test]
fn network_effects_are_recognised_in_every_documented_form() {
    let script = parse_container(
        &s(&["/bin/sh", "-c"]),
        &s(&[
            "ip addr add 10.0.1.2/24 dev net1 && ip a add dev net2 fd00::1/64; \
              ip route add 10.0.2.0/24 via 10.0.1.1 dev net1\n\
              ip -6 route add default via fd00::ff\n\
              ip r add 10.9.0.0/16 dev net2\n\
              ip link set dev net1 up && ip link set net2 up\n\
              sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1\n\
              echo 1 > /proc/sys/net/ipv4/ip_forward\n\
              sleep infinity",
        ]),
    );
    let got: Vec<Effect> = script.effects.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(
        got,
        vec![
            Effect::AddAddress {
                dev: "net1".into(),
                addr: "10.0.1.2/24".parse().unwrap()
            },
            Effect::AddAddress {
                dev: "net2".into(),
                addr: "fd00::1/64".parse().unwrap()
            },
            Effect::AddRoute {
                dst: "10.0.2.0/24".parse().unwrap(),
                via: Some("10.0.1.1".parse().unwrap()),
                dev: Some("net1".into())
            },
            Effect::AddRoute {
                dst: "::/0".parse().unwrap(),
                via: Some("fd00::ff".parse().unwrap()),
                dev: None
            },
            Effect::AddRoute {
                dst: "10.9.0.0/16".parse().unwrap(),
                via: None,
                dev: Some("net2".into())
            },
            Effect::LinkUp { dev: "net1".into() },
            Effect::LinkUp { dev: "net2".into() },
            Effect::Sysctl {
                key: "ipv4/ip_forward".into(),
                value: "1".into()
            },
            Effect::Sysctl {
                key: "ipv6/conf/all/forwarding".into(),
                value: "1".into()
            },
            Effect::Sysctl {
                key: "ipv4/ip_forward".into(),
                value: "1".into()
            },
        ]
    );
    assert_eq!(script.other, vec!["sleep infinity".to_string()]);
}

#[test]
fn anything_not_fully_understood_is_left_out_and_listed() {
    let script = parse_container(
        &s(&["sh", "-c", "ip addr add 10.0.0.1/24 dev net1 label x; ip route add 10.0.0.0/8 via 10.0.0.1 metric 5; \
             sysctl -w kernel.hostname=evil; echo 1 > /etc/passwd; echo 1 > /proc/sys/net/../../kernel/x; \
             sysctl -w net.ipv4.conf.../../x.forwarding=1; ip link set net1 down; ip addr add 10.0.0.300/24 dev net1; \
             cat /etc/shadow; ip route add 10.0.0.0/8 via fd00::1"]),
        &[],
    );
    assert!(script.effects.is_empty(), "{:?}", script.effects);
    assert_eq!(script.other.len(), 10, "{:?}", script.other);
    // A plain command (no shell) is one statement.
    let plain = parse_container(
        &s(&["ip", "route", "add", "default", "via", "10.0.0.1"]),
        &[],
    );
    assert_eq!(
        plain.effects[0].0,
        Effect::AddRoute {
            dst: "0.0.0.0/0".parse().unwrap(),
            via: Some("10.0.0.1".parse().unwrap()),
            dev: None
        }
    );
    // Shell loops: the commands inside are listed, not the grammar around them.
    let looped = parse_container(
        &s(&[
            "/bin/sh",
            "-c",
            "while true; do wget -q http://10.0.0.1/; sleep 5; done",
        ]),
        &[],
    );
    assert_eq!(
        looped.other,
        ["while true", "wget -q http://10.0.0.1/", "sleep 5"]
    );
    let sleep = parse_container(&s(&["sleep", "infinity"]), &[]);
    assert!(sleep.effects.is_empty());
    assert_eq!(sleep.other, vec!["sleep infinity".to_string()]);
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn manifests_are_read_like_kubectl_multi_documents_lists_and_extensions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.yaml"), "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b1}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b2}\n").unwrap();
    std::fs::write(dir.path().join("a.json"), r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a1"}},{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a2"}}]}"#).unwrap();
    std::fs::write(
        dir.path().join("c.yml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "kind: ConfigMap").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/d.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n",
    )
    .unwrap();
    let names = |recursive| -> Vec<String> {
        manifests::read(&[dir.path().to_path_buf()], recursive)
            .unwrap()
            .iter()
            .map(|d| d.value["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(false), ["a1", "a2", "b1", "b2", "c"]);
    assert_eq!(names(true), ["a1", "a2", "b1", "b2", "c", "d"]);
    std::fs::write(dir.path().join("e.yaml"), "a: [unclosed\n").unwrap();
    let errs = manifests::read(
        &[dir.path().to_path_buf(), dir.path().join("missing.yaml")],
        false,
    )
    .unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("e.yaml")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("missing.yaml")), "{errs:?}");
}

#[test]
fn every_example_reads() {
    let docs = manifests::read(&[root().join("examples/k8s")], true).unwrap();
    let kinds: std::collections::BTreeSet<String> = docs
        .iter()
        .map(|d| d.value["kind"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "L2Network",
        "Overlay",
        "Pod",
        "Deployment",
        "QuarantinePodRequest",
        "ConfigMap",
    ] {
        assert!(kinds.contains(k), "no {k} in examples/k8s: {kinds:?}");
    }
}
