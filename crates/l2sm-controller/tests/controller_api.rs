//! The controller as a process: what only a real process shows. Persistence across a restart
//! and a kill -9, startup errors, concurrent clients on the socket, and garbage on the
//! OpenFlow socket. The REST contract itself is tested in-process, beside its handlers
//! (`src/api/`).

use l2sm_test_support::controller::ControllerProcess;
use l2sm_test_support::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// A controller with credentials `test`/`secret` on `dir`, on free ports.
fn start_in(dir: tempfile::TempDir) -> ControllerProcess {
    ControllerProcess::start_with(dir, "test", "secret")
}

/// A controller with credentials `test`/`secret` on `dir`, on the given ports (a restart
/// that clients must find where the first one was).
fn start_on(dir: tempfile::TempDir, api: u16, openflow: u16) -> ControllerProcess {
    ControllerProcess::start_on(dir, "test", "secret", api, openflow)
}

/// One authenticated request to the API on `port`; `None` when nothing answers.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    l2sm_test_support::http::request(port, method, path, body, Some(TOKEN))
}

/// Basic token of `test:secret`.
const TOKEN: &str = "dGVzdDpzZWNyZXQ=";

const P1: &str = "of:a30b6e801ab54336/3";

#[test]
fn state_survives_a_restart() {
    let c = ControllerProcess::start();
    for (path, body) in [
        ("/onos/vnets/api", r#"{"networkId":"a"}"#.to_string()),
        ("/onos/vnets/api", r#"{"networkId":"b"}"#.to_string()),
        (
            "/onos/vnets/api/port",
            format!(r#"{{"networkId":"b","networkEndpoints":["{P1}"]}}"#),
        ),
    ] {
        assert_eq!(c.req("POST", path, Some(&body)).0, 204, "{path} {body}");
    }
    let before = c.req("GET", "/api/v1/networks", None).1;
    let dir = c.stop();
    let c = start_in(dir);
    assert_eq!(c.req("GET", "/api/v1/networks", None).1, before);
    assert!(
        before.contains(P1) && before.contains("\"vni\":2"),
        "{before}"
    );
}

/// Port owners (what the agent reports) and atomic moves: bad input is refused and changes
/// nothing, owners live with the membership, follow a move and survive a restart.
#[test]
fn port_owners_follow_moves_and_survive_a_restart() {
    let c = ControllerProcess::start();
    for n in ["a", "q"] {
        let body = format!(r#"{{"networkId":"{n}"}}"#);
        assert_eq!(c.req("POST", "/onos/vnets/api", Some(&body)).0, 204);
    }
    let (dpid, n) = P1.split_once('/').unwrap();
    let owner = format!("/api/v1/switches/{dpid}/ports/{n}/owner");
    let moves = format!("/api/v1/switches/{dpid}/ports/{n}/move");
    let body = r#"{"pod":"ns/p1","attachment":"cni/c1/net1","interface":"net1"}"#;
    // Not a member yet.
    let (code, text) = c.req("PUT", &owner, Some(body));
    assert_eq!(code, 409, "{text}");
    let ports = format!(r#"{{"networkId":"a","networkEndpoints":["{P1}"]}}"#);
    assert_eq!(c.req("POST", "/onos/vnets/api/port", Some(&ports)).0, 204);
    for (path, bad) in [
        (owner.as_str(), r#"{"pod":"ns/p1"}"#),
        (owner.as_str(), r#"{"attachment":""}"#),
        (owner.as_str(), r#"{"attachment":"x","extra":1}"#),
        (owner.as_str(), "{\"attachment\":\"a\\nb\"}"),
        ("/api/v1/switches/of:zz/ports/1/owner", body),
        (&format!("/api/v1/switches/{dpid}/ports/0/owner"), body),
        (&format!("/api/v1/switches/{dpid}/ports/x/owner"), body),
    ] {
        let (code, text) = c.req("PUT", path, Some(bad));
        assert_eq!(code, 400, "{path} {bad}: {text}");
        assert!(text.contains("\"error\""), "{text}");
    }
    let atts = c.req("GET", "/api/v1/attachments", None).1;
    assert!(atts.contains(r#""pod":null"#), "{atts}");
    assert_eq!(c.req("PUT", &owner, Some(body)).0, 204);
    let atts = c.req("GET", "/api/v1/attachments", None).1;
    assert!(
        atts.contains(r#""pod":"ns/p1","attachment":"cni/c1/net1","interface":"net1""#),
        "{atts}"
    );
    // Moves: unknown target, wrong source, then the move, then a repeat.
    let (code, _) = c.req("POST", &moves, Some(r#"{"from":"a","to":"zz"}"#));
    assert_eq!(code, 404);
    let (code, text) = c.req("POST", &moves, Some(r#"{"from":"q","to":"a"}"#));
    // No switch is connected: recorded, but pending (202) until the switch confirms it.
    assert_eq!((code, text.contains("moved")), (202, true), "{text}");
    assert!(text.contains(r#""moved":false"#), "{text}");
    let (code, text) = c.req(
        "POST",
        &format!("/api/v1/switches/{dpid}/ports/77/move"),
        Some(r#"{"from":"a","to":"q"}"#),
    );
    assert_eq!(code, 409, "{text}");
    let (code, text) = c.req("POST", &moves, Some(r#"{"from":"a","to":"q"}"#));
    assert_eq!(code, 202, "{text}");
    assert!(text.contains(r#""moved":true"#), "{text}");
    let atts = c.req("GET", "/api/v1/attachments", None).1;
    assert!(
        atts.contains(r#""network":"q""#) && atts.contains(r#""pod":"ns/p1""#),
        "{atts}"
    );
    let dir = c.stop();
    let c = start_in(dir);
    assert_eq!(c.req("GET", "/api/v1/attachments", None).1, atts);
    // Leaving the network drops the owner; clearing is idempotent.
    let ports = format!(r#"{{"networkId":"q","networkEndpoints":["{P1}"]}}"#);
    assert_eq!(c.req("DELETE", "/onos/vnets/api/port", Some(&ports)).0, 200);
    assert_eq!(c.req("POST", "/onos/vnets/api/port", Some(&ports)).0, 204);
    let atts = c.req("GET", "/api/v1/attachments", None).1;
    assert!(atts.contains(r#""pod":null"#), "{atts}");
    assert_eq!(c.req("DELETE", &owner, None).0, 204);
    assert_eq!(c.req("DELETE", &owner, None).0, 204);
}

#[test]
fn refuses_to_start_without_credentials() {
    let out = Command::new(l2sm_test_support::bin::l2sm())
        .args([
            "controller",
            "--api-listen",
            "127.0.0.1:0",
            "--openflow-listen",
            "127.0.0.1:0",
            "--insecure-openflow",
        ])
        .arg("--state-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .env_remove("L2SM_API_USER")
        .env_remove("L2SM_API_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API credentials"));
}

#[test]
fn garbage_on_the_openflow_socket_closes_only_that_connection() {
    let c = ControllerProcess::start();
    let garbage: [&[u8]; 4] = [
        b"\x04\x00\x00",                      // truncated header
        b"\x04\x00\x00\x04\x00\x00\x00\x01",  // length below the header size
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", // not OpenFlow at all
        b"\x04\x00\xff\xff\x00\x00\x00\x01",  // HELLO claiming 64 KiB, then silence
    ];
    for bytes in garbage {
        let mut s = TcpStream::connect(("127.0.0.1", c.openflow)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(12))).unwrap();
        s.write_all(bytes).unwrap();
        if bytes.len() < 8 {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut buf = Vec::new();
        // The controller sends its HELLO, then closes the connection.
        let _ = s.read_to_end(&mut buf);
        assert!(
            buf.len() >= 8 && buf[0] == 4 && buf[1] == 0,
            "expected our HELLO first: {buf:?}"
        );
        assert_eq!(
            c.req("GET", "/onos/vnets/api/status", None).0,
            200,
            "controller stopped serving"
        );
    }
    // A peer that only speaks OpenFlow 1.0 gets HELLO_FAILED.
    let mut s = TcpStream::connect(("127.0.0.1", c.openflow)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"\x01\x00\x00\x08\x00\x00\x00\x07").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let hello_len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let err = &buf[hello_len..];
    assert!(
        err.len() >= 12 && err[1] == 1,
        "expected an ERROR after our HELLO: {buf:?}"
    );
    assert_eq!(u16::from_be_bytes([err[8], err[9]]), 0, "type HELLO_FAILED");
    assert_eq!(
        u16::from_be_bytes([err[10], err[11]]),
        0,
        "code INCOMPATIBLE"
    );
}

#[test]
fn five_hundred_concurrent_allocations_are_distinct_and_survive_a_restart() {
    let c = ControllerProcess::start();
    let create = r#"{"name":"big","cidrs":["10.8.0.0/22"]}"#;
    assert_eq!(c.req("POST", "/api/v1/networks", Some(create)).0, 201);
    let (api, of) = (c.api, c.openflow);
    let c = std::sync::Mutex::new(Some(c));
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(String, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..10)
            .map(|w| {
                let done = &done;
                s.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..50 {
                        let owner = format!("cni/{w}-{i}/net1");
                        let body = format!(r#"{{"owner":"{owner}"}}"#);
                        let start = Instant::now();
                        loop {
                            // The lock is not held during the request: they run concurrently.
                            let answer =
                                http(api, "POST", "/api/v1/networks/big/allocations", Some(&body));
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
                                "allocation never succeeded"
                            );
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    got
                })
            })
            .collect();
        // Restart the controller in the middle of it.
        while done.load(std::sync::atomic::Ordering::SeqCst) < 250 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let old = c.lock().unwrap().take().unwrap();
        let dir = old.stop();
        *c.lock().unwrap() = Some(start_on(dir, api, of));
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
    // Nothing was lost across the restart: every owner still holds its address.
    let net: serde_json::Value =
        serde_json::from_str(&c.req("GET", "/api/v1/networks/big", None).1).unwrap();
    let allocations = net["ipam"]["allocations"].as_object().unwrap();
    assert_eq!(allocations.len(), 500);
    for (owner, ip) in &results {
        let addr = ip.split('/').next().unwrap();
        assert_eq!(allocations[addr], serde_json::json!(owner));
    }
    for (owner, _) in &results {
        let body = format!(r#"{{"owner":"{owner}"}}"#);
        assert_eq!(
            c.req("POST", "/api/v1/networks/big/release", Some(&body)).1,
            r#"{"released":1}"#
        );
    }
    let net: serde_json::Value =
        serde_json::from_str(&c.req("GET", "/api/v1/networks/big", None).1).unwrap();
    assert_eq!(net["ipam"]["allocations"], serde_json::json!({}));
}

/// A small deterministic generator, so a failing sequence can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn random_requests_never_crash_the_controller_or_corrupt_its_state() {
    let mut c = ControllerProcess::start();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let names = ["a", "b", "c", "Bad Name", "", "x".repeat(300).leak()];
    let ports = [
        "of:0000000000000001/1",
        "of:0000000000000001/2",
        "of:0000000000000002/1",
        "of:zz/1",
        "1/1",
        "",
    ];
    let fields = [
        "networkId",
        "networkEndpoints",
        "mirrorPort",
        "tunnelList",
        "bogus",
    ];
    for round in 0..600 {
        let (method, path) = match rng.next() % 9 {
            0 => ("POST", "/onos/vnets/api".to_string()),
            1 => ("GET", format!("/onos/vnets/api/{}", rng.pick(&names))),
            2 => ("DELETE", format!("/onos/vnets/api/{}", rng.pick(&names))),
            3 => ("POST", "/onos/vnets/api/port".to_string()),
            4 => ("DELETE", "/onos/vnets/api/port".to_string()),
            5 => ("POST", "/onos/vnets/api/mirror-port".to_string()),
            6 => (
                "POST",
                format!("/api/v1/networks/{}/allocations", rng.pick(&names)),
            ),
            7 => ("POST", "/api/v1/networks".to_string()),
            _ => (
                rng.pick(&["GET", "PUT", "PATCH"]),
                rng.pick(&["/api/v1/networks", "/onos/vnets/api/port", "/x"])
                    .to_string(),
            ),
        };
        let body = match rng.next() % 4 {
            0 => String::new(),
            1 => "{not json".to_string(),
            2 => {
                let f = rng.pick(&fields);
                let value = match f {
                    "networkEndpoints" => format!(r#"["{}"]"#, rng.pick(&ports)),
                    "tunnelList" => "[1,2]".to_string(),
                    _ => format!(r#""{}""#, rng.pick(&ports)),
                };
                format!(r#"{{"networkId":"{}","{f}":{value}}}"#, rng.pick(&names))
            }
            _ => format!(
                r#"{{"networkId":"{}","networkEndpoints":["{}","{}"],"name":"{}","owner":"o{}","cidrs":["10.{}.0.0/24"]}}"#,
                rng.pick(&names),
                rng.pick(&ports),
                rng.pick(&ports),
                rng.pick(&names),
                rng.next() % 5,
                rng.next() % 3
            ),
        };
        let (code, _) = c
            .try_request(method, &path, Some(&body), true)
            .unwrap_or_else(|| {
                panic!("round {round}: the controller stopped answering ({method} {path} {body})")
            });
        assert!(
            [200, 201, 204, 400, 404, 405, 409, 500].contains(&code),
            "round {round}: unexpected status {code} for {method} {path} {body}"
        );
    }
    // The state is consistent: every port is in at most one network, and it survives a restart.
    let before = c.req("GET", "/api/v1/networks", None).1;
    let nets: serde_json::Value = serde_json::from_str(&before).expect("networks as JSON");
    let mut seen = std::collections::BTreeSet::new();
    for n in nets.as_array().unwrap() {
        for ep in n["endpoints"].as_array().unwrap() {
            assert!(
                seen.insert(ep.as_str().unwrap().to_string()),
                "port {ep} in two networks: {before}"
            );
        }
    }
    let dir = std::mem::replace(&mut c, ControllerProcess::start()).stop();
    let c = start_in(dir);
    assert_eq!(
        c.req("GET", "/api/v1/networks", None).1,
        before,
        "state changed across a restart"
    );
}

/// Sends requests `op(thread, i)` for i in `0..per_thread` from `threads` threads, until `stop`
/// is set or the controller stops answering; returns what each acknowledged request was.
fn burst<T: Send>(
    api: u16,
    threads: usize,
    per_thread: usize,
    stop: &std::sync::atomic::AtomicBool,
    acked: &std::sync::atomic::AtomicUsize,
    op: impl Fn(usize, usize) -> (&'static str, String, String, u16, T) + Sync,
) -> Vec<T> {
    use std::sync::atomic::Ordering::SeqCst;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let op = &op;
                s.spawn(move || {
                    let mut done = Vec::new();
                    for i in 0..per_thread {
                        if stop.load(SeqCst) {
                            break;
                        }
                        let (method, path, body, ok, what) = op(w, i);
                        match http(api, method, &path, Some(&body)) {
                            Some((code, _)) if code == ok => {
                                done.push(what);
                                acked.fetch_add(1, SeqCst);
                            }
                            Some((code, text)) => panic!("{method} {path}: {code} {text}"),
                            None => break,
                        }
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

/// One acknowledged write of the kill -9 test.
#[derive(Debug)]
enum Acked {
    Network(String),
    Member(String, String),
    Address(String),
}

#[test]
fn kill_9_during_a_burst_of_writes_keeps_every_acknowledged_write() {
    use std::sync::atomic::Ordering::SeqCst;
    let c = ControllerProcess::start();
    let create = r#"{"name":"burst","cidrs":["10.9.0.0/20"]}"#;
    assert_eq!(c.req("POST", "/api/v1/networks", Some(create)).0, 201);
    let (api, of) = (c.api, c.openflow);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked = std::sync::atomic::AtomicUsize::new(0);
    let c = std::sync::Mutex::new(Some(c));
    let writes: Vec<Acked> = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            burst(api, 8, usize::MAX, &stop, &acked, |w, i| {
                let name = format!("k{w}-{}", i / 3);
                match i % 3 {
                    0 => (
                        "POST",
                        "/onos/vnets/api".to_string(),
                        format!(r#"{{"networkId":"{name}"}}"#),
                        204,
                        Acked::Network(name),
                    ),
                    1 => {
                        let port = format!("of:{:016x}/{}", w + 1, i / 3 + 1);
                        (
                            "POST",
                            "/onos/vnets/api/port".to_string(),
                            format!(r#"{{"networkId":"{name}","networkEndpoints":["{port}"]}}"#),
                            204,
                            Acked::Member(name, port),
                        )
                    }
                    _ => (
                        "POST",
                        "/api/v1/networks/burst/allocations".to_string(),
                        format!(r#"{{"owner":"{name}"}}"#),
                        200,
                        Acked::Address(name),
                    ),
                }
            })
        });
        while acked.load(SeqCst) < 300 {
            std::thread::sleep(Duration::from_millis(2));
        }
        // SIGKILL in the middle of the burst: no chance to flush anything.
        let dir = c.lock().unwrap().take().unwrap().stop();
        stop.store(true, SeqCst);
        let writes = writer.join().unwrap();
        *c.lock().unwrap() = Some(start_on(dir, api, of));
        writes
    });
    let c = c.into_inner().unwrap().unwrap();
    assert!(writes.len() >= 300, "{} writes acknowledged", writes.len());
    let nets: serde_json::Value =
        serde_json::from_str(&c.req("GET", "/api/v1/networks", None).1).unwrap();
    let by_name: std::collections::BTreeMap<&str, &serde_json::Value> = nets
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n))
        .collect();
    let allocations = &by_name["burst"]["ipam"]["allocations"];
    let owners: std::collections::BTreeSet<&str> = allocations
        .as_object()
        .unwrap()
        .values()
        .map(|o| o.as_str().unwrap())
        .collect();
    for w in &writes {
        match w {
            Acked::Network(n) => assert!(by_name.contains_key(n.as_str()), "lost network {n}"),
            Acked::Member(n, p) => assert!(
                by_name[n.as_str()]["endpoints"]
                    .as_array()
                    .unwrap()
                    .contains(&serde_json::json!(p)),
                "lost member {p} of {n}"
            ),
            Acked::Address(owner) => {
                assert!(owners.contains(owner.as_str()), "lost address of {owner}")
            }
        }
    }
}

#[test]
fn concurrent_mutations_are_all_persisted() {
    let c = ControllerProcess::start();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked = std::sync::atomic::AtomicUsize::new(0);
    // Each thread creates 20 networks, gives each a port, and deletes every fourth one.
    let done = burst(c.api, 6, 60, &stop, &acked, |w, i| {
        let name = format!("c{w}-{}", i / 3);
        let (method, path, body, ok) = match i % 3 {
            0 => (
                "POST",
                "/onos/vnets/api".to_string(),
                format!(r#"{{"networkId":"{name}"}}"#),
                204,
            ),
            1 => (
                "POST",
                "/onos/vnets/api/port".to_string(),
                format!(
                    r#"{{"networkId":"{name}","networkEndpoints":["of:{:016x}/{}"]}}"#,
                    w + 1,
                    i / 3 + 1
                ),
                204,
            ),
            _ if (i / 3) % 4 == 0 => (
                "DELETE",
                format!("/onos/vnets/api/{name}"),
                String::new(),
                204,
            ),
            _ => ("GET", format!("/onos/vnets/api/{name}"), String::new(), 200),
        };
        (method, path, body, ok, ())
    });
    assert_eq!(done.len(), 6 * 60);
    let before = c.req("GET", "/api/v1/networks", None).1;
    let nets: serde_json::Value = serde_json::from_str(&before).unwrap();
    let nets = nets.as_array().unwrap();
    assert_eq!(nets.len(), 6 * 15, "{before}");
    let vnis: std::collections::BTreeSet<u64> =
        nets.iter().map(|n| n["vni"].as_u64().unwrap()).collect();
    assert_eq!(vnis.len(), nets.len(), "VNIs are unique");
    assert!(nets
        .iter()
        .all(|n| n["endpoints"].as_array().unwrap().len() == 1));
    let dir = c.stop();
    let c = start_in(dir);
    assert_eq!(c.req("GET", "/api/v1/networks", None).1, before);
}

#[test]
fn legacy_state_json_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    // The file format of earlier versions (no VLAN ids yet).
    let legacy = r#"{"networks":{
        "old":{"vni":7,"endpoints":["of:0000000000000001/1","of:0000000000000001/2"],"mirror_port":"of:0000000000000001/9"},
        "ipn":{"vni":8,"endpoints":[],"ipam":{"cidrs":["10.1.0.0/24"],"allocations":{"10.1.0.1":"pod-x/net1"}}}
    },"next_vni":9}"#;
    std::fs::write(dir.path().join("state.json"), legacy).unwrap();
    let c = start_in(dir);
    assert!(!c.dir().join("state.json").exists());
    assert!(c.dir().join("state.json.imported").exists());
    let old: serde_json::Value =
        serde_json::from_str(&c.req("GET", "/api/v1/networks/old", None).1).unwrap();
    assert_eq!(old["vni"], 7);
    assert_eq!(
        old["endpoints"],
        serde_json::json!(["of:0000000000000001/1", "of:0000000000000001/2"])
    );
    assert_eq!(old["mirrorPort"], "of:0000000000000001/9");
    assert!(old["vlan"].as_u64().is_some(), "a VLAN id was assigned");
    let ipn: serde_json::Value =
        serde_json::from_str(&c.req("GET", "/api/v1/networks/ipn", None).1).unwrap();
    assert_eq!(ipn["ipam"]["allocations"]["10.1.0.1"], "pod-x/net1");
    // Counters came along too: the next network gets VNI 9.
    assert_eq!(
        c.req("POST", "/api/v1/networks", Some(r#"{"name":"new"}"#))
            .0,
        201
    );
    let new: serde_json::Value =
        serde_json::from_str(&c.req("GET", "/api/v1/networks/new", None).1).unwrap();
    assert_eq!(new["vni"], 9);
    let before = c.req("GET", "/api/v1/networks", None).1;
    let c = start_in(c.stop());
    assert_eq!(c.req("GET", "/api/v1/networks", None).1, before);
}

/// Runs a controller on `dir` that is expected to refuse to start; returns its error line.
fn startup_error(dir: &std::path::Path) -> String {
    let out = Command::new(l2sm_test_support::bin::l2sm())
        .args([
            "controller",
            "--api-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--openflow-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--insecure-openflow")
        .arg("--state-dir")
        .arg(dir)
        .env("L2SM_API_USER", "test")
        .env("L2SM_API_PASSWORD", "secret")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    lines[0].to_string()
}

#[test]
fn a_locked_or_corrupt_store_is_a_one_line_startup_error() {
    let c = ControllerProcess::start();
    let line = startup_error(c.dir());
    assert!(line.contains("in use by another controller"), "{line}");
    // The running controller is unaffected.
    assert_eq!(c.req("GET", "/onos/vnets/api/status", None).0, 200);
    let dir = c.stop();
    std::fs::write(dir.path().join("state.redb"), vec![0x42u8; 10_000]).unwrap();
    let line = startup_error(dir.path());
    assert!(line.contains("cannot open controller state"), "{line}");
}
