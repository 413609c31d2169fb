//! The controller as a process on `--store etcd://…`, against a real etcd: it serves the API,
//! keeps every network, member, owner and allocation across a restart (on a fresh state
//! directory: the state is in etcd, not on the node), hands out distinct addresses under
//! concurrency, and two controllers on one state never both win a write.

use l2sm_test_support::controller::ControllerProcess;
use l2sm_test_support::etcd::EtcdProcess;
use std::time::{Duration, Instant};

const P1: &str = "of:a30b6e801ab54336/3";
const P2: &str = "of:a30b6e801ab54336/4";

/// A controller on `etcd` under `prefix`, with a fresh state directory.
fn start(etcd: &EtcdProcess, prefix: &str) -> ControllerProcess {
    ControllerProcess::start_args(&["--store", &etcd.url(prefix)])
}

/// The same, on the given ports (a restart clients find where the first one was).
fn start_on(etcd: &EtcdProcess, prefix: &str, api: u16, openflow: u16) -> ControllerProcess {
    let url = etcd.url(prefix);
    ControllerProcess::start_on_with(
        tempfile::tempdir().expect("tempdir"),
        "test",
        "secret",
        api,
        openflow,
        &["--store", &url],
    )
}

#[test]
fn controller_on_etcd_keeps_its_state_across_a_restart_on_a_fresh_node() {
    let etcd = EtcdProcess::start();
    let c = start(&etcd, "/restart/");
    for (path, body) in [
        ("/onos/vnets/api", r#"{"networkId":"a"}"#.to_string()),
        ("/onos/vnets/api", r#"{"networkId":"b"}"#.to_string()),
        (
            "/onos/vnets/api/port",
            format!(r#"{{"networkId":"b","networkEndpoints":["{P1}","{P2}"]}}"#),
        ),
    ] {
        assert_eq!(c.req("POST", path, Some(&body)).0, 204, "{path} {body}");
    }
    let create = r#"{"name":"ip","cidrs":["10.9.0.0/24"]}"#;
    assert_eq!(c.req("POST", "/api/v1/networks", Some(create)).0, 201);
    for o in ["cni/x/net1", "cni/y/net1"] {
        let body = format!(r#"{{"owner":"{o}"}}"#);
        let (code, text) = c.req("POST", "/api/v1/networks/ip/allocations", Some(&body));
        assert_eq!(code, 200, "{text}");
    }
    let (dpid, n) = P1.split_once('/').unwrap();
    let owner = format!("/api/v1/switches/{dpid}/ports/{n}/owner");
    let body = r#"{"pod":"ns/p1","attachment":"cni/c1/net1","interface":"net1"}"#;
    assert_eq!(c.req("PUT", &owner, Some(body)).0, 204);
    let networks = c.req("GET", "/api/v1/networks", None).1;
    let attachments = c.req("GET", "/api/v1/attachments", None).1;
    assert!(
        networks.contains(P2) && networks.contains("10.9.0.") && networks.contains("cni/y/net1"),
        "{networks}"
    );
    assert!(attachments.contains("ns/p1"), "{attachments}");
    let dir = c.stop();
    assert!(
        !dir.path().join("state.redb").exists(),
        "on etcd, nothing is kept in the state directory"
    );
    // A new controller on another, empty state directory: everything comes from etcd.
    let c = start(&etcd, "/restart/");
    assert_eq!(c.req("GET", "/api/v1/networks", None).1, networks);
    assert_eq!(c.req("GET", "/api/v1/attachments", None).1, attachments);
    // And it goes on from there: the next VNI, the next address.
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"c"}"#))
            .0,
        204
    );
    let c_net = c.req("GET", "/api/v1/networks/c", None).1;
    assert!(c_net.contains("\"vni\":4"), "{c_net}");
    let (_, text) = c.req(
        "POST",
        "/api/v1/networks/ip/allocations",
        Some(r#"{"owner":"cni/z/net1"}"#),
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ip = v["ips"][0].as_str().unwrap().to_string();
    assert!(
        !networks.contains(&format!("\"{}\"", ip.split('/').next().unwrap())),
        "{ip} was already allocated: {networks}"
    );
    // Another prefix is another state.
    let other = start(&etcd, "/other/");
    assert_eq!(other.req("GET", "/api/v1/networks", None).1, "[]");
}

/// Two controllers on the same state: a write through the second after the first changed the
/// state is refused with a retryable 503 and changes nothing; the second reloaded, so the
/// retry succeeds and the state holds both writes.
#[test]
fn two_controllers_on_one_state_never_both_win() {
    let etcd = EtcdProcess::start();
    let a = start(&etcd, "/two/");
    let b = start(&etcd, "/two/");
    assert_eq!(
        a.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"from-a"}"#))
            .0,
        204
    );
    let (code, text) = b.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"from-b"}"#));
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("another writer"), "{text}");
    // b reloaded: it sees a's network, and not its own refused one.
    let seen = b.req("GET", "/api/v1/networks", None).1;
    assert!(
        seen.contains("from-a") && !seen.contains("from-b"),
        "{seen}"
    );
    let (code, text) = b.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"from-b"}"#));
    assert_eq!(code, 204, "{text}");
    // A third controller reads both, with distinct VNIs.
    let c = start(&etcd, "/two/");
    let all: serde_json::Value =
        serde_json::from_str(&c.req("GET", "/api/v1/networks", None).1).unwrap();
    let vnis: std::collections::BTreeSet<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["vni"].as_u64().unwrap())
        .collect();
    assert_eq!(vnis.len(), 2, "{all}");
}

#[test]
fn five_hundred_concurrent_allocations_on_etcd_are_distinct_and_survive_a_restart() {
    let etcd = EtcdProcess::start();
    let c = start(&etcd, "/ipam/");
    let create = r#"{"name":"big","cidrs":["10.8.0.0/22"]}"#;
    assert_eq!(c.req("POST", "/api/v1/networks", Some(create)).0, 201);
    let (api, of) = (c.api, c.openflow);
    let token = c.token();
    let c = std::sync::Mutex::new(Some(c));
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(String, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..10)
            .map(|w| {
                let (done, token) = (&done, &token);
                s.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..50 {
                        let owner = format!("cni/{w}-{i}/net1");
                        let body = format!(r#"{{"owner":"{owner}"}}"#);
                        let start = Instant::now();
                        loop {
                            let answer = l2sm_test_support::http::request(
                                api,
                                "POST",
                                "/api/v1/networks/big/allocations",
                                Some(&body),
                                Some(token),
                            );
                            if let Some((200, text)) = answer {
                                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                                got.push((
                                    owner.clone(),
                                    v["ips"][0].as_str().unwrap().to_string(),
                                ));
                                break;
                            }
                            assert!(
                                start.elapsed() < Duration::from_secs(30),
                                "allocation never succeeded: {answer:?}"
                            );
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    got
                })
            })
            .collect();
        // Restart the controller (on a fresh state directory) in the middle of it.
        while done.load(std::sync::atomic::Ordering::SeqCst) < 250 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let old = c.lock().unwrap().take().unwrap();
        drop(old.stop());
        *c.lock().unwrap() = Some(start_on(&etcd, "/ipam/", api, of));
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let c = c.into_inner().unwrap().unwrap();
    let distinct: std::collections::BTreeSet<&String> = results.iter().map(|(_, ip)| ip).collect();
    assert_eq!(
        (results.len(), distinct.len()),
        (500, 500),
        "duplicate addresses handed out"
    );
    let net: serde_json::Value =
        serde_json::from_str(&c.req("GET", "/api/v1/networks/big", None).1).unwrap();
    let allocations = net["ipam"]["allocations"].as_object().unwrap();
    assert_eq!(allocations.len(), 500);
    for (owner, ip) in &results {
        let addr = ip.split('/').next().unwrap();
        assert_eq!(allocations[addr], serde_json::json!(owner));
    }
}

/// Bad `--store` values and an etcd that does not answer stop the controller with one clear
/// line, before it serves anything.
#[test]
fn bad_store_arguments_stop_the_controller_with_one_line() {
    let port = l2sm_test_support::free_port();
    for (arg, want) in [
        ("etcd://nohost".to_string(), "invalid --store"),
        ("mysql://x:1".to_string(), "invalid --store"),
        (format!("etcd://127.0.0.1:{port}"), "etcd store at"),
    ] {
        let out = std::process::Command::new(l2sm_test_support::bin::l2sm())
            .args(["controller", "--store", &arg, "--insecure-openflow"])
            .args([
                "--api-listen",
                "127.0.0.1:0",
                "--openflow-listen",
                "127.0.0.1:0",
            ])
            .env("L2SM_API_USER", "u")
            .env("L2SM_API_PASSWORD", "p")
            .output()
            .expect("run l2sm controller");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{arg}: {stderr}");
        assert!(stderr.contains(want), "{arg}: {stderr}");
    }
}

/// Writes `network` through `c` until it is accepted (204), or `secs` pass; returns how long.
fn write_until_accepted(c: &ControllerProcess, network: &str, secs: u64) -> Duration {
    let body = format!(r#"{{"networkId":"{network}"}}"#);
    let start = Instant::now();
    loop {
        let answer = c.try_request("POST", "/onos/vnets/api", Some(&body), true);
        if matches!(answer, Some((204, _))) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{network} never accepted: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two replicas: one leads and writes, the other refuses writes with a retryable 503 naming
/// it; when the leader is killed (-9), the other takes over within the lease TTL (5 s) plus
/// 2 s, with every change the dead leader acknowledged.
#[test]
fn replicas_elect_one_leader_and_a_follower_takes_over_when_it_dies() {
    let etcd = EtcdProcess::start();
    let url = etcd.url("/ha/");
    let a = ControllerProcess::start_args(&["--store", &url, "--replica", "replica-a"]);
    write_until_accepted(&a, "from-a", 10);
    let b = ControllerProcess::start_args(&["--store", &url, "--replica", "replica-b"]);
    // b refuses every write; once its first campaign ran, the refusal names the leader.
    let start = Instant::now();
    loop {
        let (code, text) = b.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"from-b"}"#));
        assert_eq!(code, 503, "{text}");
        if text.contains("leader: replica-a") {
            break;
        }
        assert!(text.contains("leader: unknown"), "{text}");
        assert!(start.elapsed() < Duration::from_secs(5), "{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        a.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"second"}"#))
            .0,
        204
    );
    // The follower's copy follows the leader's writes without being written to.
    let start = Instant::now();
    while !b
        .req("GET", "/api/v1/networks", None)
        .1
        .contains("\"second\"")
    {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the follower never saw the leader's write"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(a.stop());
    let took = write_until_accepted(&b, "from-b", 12);
    eprintln!("failover: first write accepted by the follower {took:?} after the leader's kill -9");
    assert!(took < Duration::from_secs(7), "failover took {took:?}");
    let all = b.req("GET", "/api/v1/networks", None).1;
    for n in ["from-a", "second", "from-b"] {
        assert!(all.contains(&format!("\"{n}\"")), "{n} missing: {all}");
    }
}

/// `--replica` without etcd is refused.
#[test]
fn replica_without_etcd_is_refused() {
    let out = std::process::Command::new(l2sm_test_support::bin::l2sm())
        .args(["controller", "--replica", "a", "--insecure-openflow"])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--openflow-listen",
            "127.0.0.1:0",
        ])
        .env("L2SM_API_USER", "u")
        .env("L2SM_API_PASSWORD", "p")
        .output()
        .expect("run l2sm controller");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--replica needs an etcd store"), "{stderr}");
}

/// A leader that stops cleanly (SIGTERM) hands over at once: it revokes its lease, and the
/// follower accepts writes well before the lease's TTL (5 s) would have passed.
#[test]
fn a_leader_stopped_with_sigterm_hands_over_at_once() {
    let etcd = EtcdProcess::start();
    let url = etcd.url("/term/");
    let mut a = ControllerProcess::start_args(&["--store", &url, "--replica", "replica-a"]);
    write_until_accepted(&a, "from-a", 10);
    let b = ControllerProcess::start_args(&["--store", &url, "--replica", "replica-b"]);
    let start = Instant::now();
    loop {
        let (code, text) = b.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"x"}"#));
        assert_eq!(code, 503, "{text}");
        if text.contains("leader: replica-a") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let took = write_until_accepted(&b, "from-b", 12);
    eprintln!("handover after SIGTERM: {took:?}");
    assert!(took < Duration::from_secs(2), "handover took {took:?}");
    l2sm_test_support::wait_until("a to exit", Duration::from_secs(10), || !a.is_running());
    let all = b.req("GET", "/api/v1/networks", None).1;
    assert!(
        all.contains("\"from-a\"") && all.contains("\"from-b\""),
        "{all}"
    );
}
