//! Names in the lab: the real controller's DNS server (`--dns-listen 0.0.0.0:53` in the
//! underlay namespace) knows a pod by name the moment its attach returned, and forgets it the
//! moment its detach returned. Needs root; fails (never skips) without it. Pods asking through
//! their own network: dns_network_e2e.

use l2sm_test_support::lab::TestLab;
use std::process::Output;

fn lookup(lab: &TestLab, args: &[&str]) -> Output {
    let mut all = vec!["dns", "lookup"];
    all.extend_from_slice(args);
    lab.run(&all)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn pods_are_found_by_name_right_after_attach_and_not_after_detach() {
    let lab = TestLab::up("dns", 2);
    lab.ok(&["network", "create", "blue"]);
    lab.ok(&["network", "create", "red"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    // No wait between the attach returning and the query.
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    let o = lookup(&lab, &["b.blue.l2sm"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "b.blue.l2sm. 5 A 10.10.0.2"
    );
    let o = lookup(&lab, &["--type", "PTR", "10.10.0.1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("PTR a.blue.l2sm."), "{}", text(&o));
    // b is not on red; nothing outside the zone.
    let o = lookup(&lab, &["b.red.l2sm"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("NXDOMAIN"), "{}", text(&o));
    let o = lookup(&lab, &["example.com"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // glibc's stub resolver reads our answers (A and AAAA queries in parallel, PTR): getent
    // in the controller's namespace, with a resolv.conf naming it (private mount namespace).
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("resolv.conf");
    std::fs::write(
        &conf,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    let script = format!(
        "mount --bind {} /etc/resolv.conf && getent hosts b.blue.l2sm && getent hosts 10.10.0.1",
        conf.display()
    );
    let out = lab.run(&[
        "lab", "exec", "underlay", "--", "unshare", "-m", "sh", "-c", &script,
    ]);
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        got.contains("10.10.0.2") && got.contains("b.blue.l2sm"),
        "{got}"
    );
    assert!(
        got.contains("10.10.0.1") && got.contains("a.blue.l2sm"),
        "{got}"
    );

    lab.ok(&["detach", "--pod", "b"]);
    let o = lookup(&lab, &["b.blue.l2sm"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("NXDOMAIN"), "{}", text(&o));
    assert!(lookup(&lab, &["a.blue.l2sm"]).status.success());
    // blue has no CIDR, so no DNS address: its pods get no resolv.conf and resolve nothing
    // (dns_network_e2e covers networks with one).
    assert!(!std::path::Path::new(&format!("/etc/netns/l2sm-{}-p-a", lab.name)).exists());
    assert!(!lab.exec_ok("a", &["getent", "hosts", "a.blue.l2sm"]));
}
