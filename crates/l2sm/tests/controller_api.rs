//! The controller on its own: the upstream vnets REST contract (paths, bodies, status codes),
//! Basic auth, persistence across a restart, and garbage on the OpenFlow socket.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_l2sm");
const AUTH: &str = "dGVzdDpzZWNyZXQ="; // test:secret

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Controller {
    child: Child,
    api: u16,
    of: u16,
    dir: tempfile::TempDir,
}

impl Controller {
    fn start_in(dir: tempfile::TempDir) -> Controller {
        Controller::start_on(dir, free_port(), free_port())
    }

    fn start_on(dir: tempfile::TempDir, api: u16, of: u16) -> Controller {
        let child = Command::new(BIN)
            .args(["controller", "--api-listen", &format!("127.0.0.1:{api}")])
            .args(["--openflow-listen", &format!("127.0.0.1:{of}")])
            .arg("--state-dir")
            .arg(dir.path())
            .env("L2SM_API_USER", "test")
            .env("L2SM_API_PASSWORD", "secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let c = Controller {
            child,
            api,
            of,
            dir,
        };
        let start = Instant::now();
        while c
            .try_request("GET", "/onos/vnets/api/status", None, true)
            .is_none()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "controller did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    fn start() -> Controller {
        Controller::start_in(tempfile::tempdir().unwrap())
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        auth: bool,
    ) -> Option<(u16, String)> {
        http(self.api, method, path, body, auth)
    }

    fn req(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.try_request(method, path, body, true)
            .expect("controller answered")
    }

    fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request to the API on `port`; `None` when nothing answers.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    auth: bool,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if auth {
        req.push_str(&format!("Authorization: Basic {AUTH}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

const P1: &str = "of:a30b6e801ab54336/3";
const P2: &str = "of:fa97dd6bd2e32553/1";

#[test]
fn upstream_vnets_contract() {
    let c = Controller::start();
    // Health and readiness.
    assert_eq!(c.req("GET", "/onos/vnets/api/status", None).0, 200);
    assert_eq!(
        c.try_request("GET", "/onos/ui", None, false).unwrap().0,
        200
    );
    // Auth.
    assert_eq!(
        c.try_request("GET", "/onos/vnets/api/status", None, false)
            .unwrap()
            .0,
        401
    );
    // Create (idempotent), read, unknown.
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"blue"}"#))
            .0,
        204
    );
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"blue"}"#))
            .0,
        204
    );
    let (code, body) = c.req("GET", "/onos/vnets/api/blue", None);
    assert_eq!(code, 200);
    assert!(body.starts_with("Id: blue\nEndpoints: \n"), "{body:?}");
    assert!(body.contains("Mirror Port: null"), "{body:?}");
    assert_eq!(c.req("GET", "/onos/vnets/api/nope", None).0, 404);
    // Ports.
    let add =
        |net: &str, ep: &str| format!(r#"{{"networkId":"{net}","networkEndpoints":["{ep}"]}}"#);
    assert_eq!(
        c.req("POST", "/onos/vnets/api/port", Some(&add("blue", P1)))
            .0,
        204
    );
    assert_eq!(
        c.req("POST", "/onos/vnets/api/port", Some(&add("blue", P1)))
            .0,
        204,
        "re-adding is a no-op"
    );
    assert_eq!(
        c.req("POST", "/onos/vnets/api/port", Some(&add("nope", P1)))
            .0,
        409
    );
    assert_eq!(
        c.req(
            "POST",
            "/onos/vnets/api/port",
            Some(&add("blue", "of:xyz/1"))
        )
        .0,
        500
    );
    assert_eq!(
        c.req(
            "POST",
            "/onos/vnets/api/port",
            Some(r#"{"networkId":"blue"}"#)
        )
        .0,
        500
    );
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"red"}"#))
            .0,
        204
    );
    let (code, body) = c.req("POST", "/onos/vnets/api/port", Some(&add("red", P1)));
    assert_eq!(code, 409, "a port belongs to one network");
    assert!(body.contains("blue"), "{body}");
    assert!(c.req("GET", "/onos/vnets/api/blue", None).1.contains(P1));
    // Mirror port.
    assert_eq!(
        c.req(
            "POST",
            "/onos/vnets/api/mirror-port",
            Some(r#"{"networkId":"blue"}"#)
        )
        .0,
        400
    );
    let mirror = format!(r#"{{"networkId":"blue","mirrorPort":"{P2}"}}"#);
    assert_eq!(
        c.req("POST", "/onos/vnets/api/mirror-port", Some(&mirror))
            .0,
        204
    );
    assert!(c
        .req("GET", "/onos/vnets/api/blue", None)
        .1
        .contains(&format!("Mirror Port: {P2}")));
    assert_eq!(
        c.req("POST", "/onos/vnets/api/port", Some(&add("blue", P2)))
            .0,
        409,
        "mirror cannot be a member"
    );
    // Remove ports: 200, unknown network 409, non-member 500.
    assert_eq!(
        c.req("DELETE", "/onos/vnets/api/port", Some(&add("blue", P1)))
            .0,
        200
    );
    assert_eq!(
        c.req("DELETE", "/onos/vnets/api/port", Some(&add("blue", P1)))
            .0,
        500
    );
    assert_eq!(
        c.req("DELETE", "/onos/vnets/api/port", Some(&add("nope", P1)))
            .0,
        409
    );
    // Bad bodies.
    assert_eq!(c.req("POST", "/onos/vnets/api", Some("{not json")).0, 400);
    assert_eq!(
        c.req(
            "POST",
            "/onos/vnets/api",
            Some(r#"{"networkId":"x","bogus":1}"#)
        )
        .0,
        400
    );
    let (code, body) = c.req(
        "POST",
        "/onos/vnets/api",
        Some(&format!(r#"{{"networkId":"{}"}}"#, "a".repeat(300))),
    );
    assert_eq!(code, 400);
    assert!(body.contains("longer than 253"), "{body}");
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"a b"}"#))
            .0,
        400
    );
    // Delete (also when unknown).
    assert_eq!(c.req("DELETE", "/onos/vnets/api/blue", None).0, 204);
    assert_eq!(c.req("DELETE", "/onos/vnets/api/blue", None).0, 204);
    assert_eq!(c.req("GET", "/onos/vnets/api/blue", None).0, 404);
    assert_eq!(c.req("GET", "/nowhere", None).0, 404);
}

#[test]
fn state_survives_a_restart() {
    let c = Controller::start();
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"a"}"#))
            .0,
        204
    );
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"b"}"#))
            .0,
        204
    );
    let body = format!(r#"{{"networkId":"b","networkEndpoints":["{P1}"]}}"#);
    assert_eq!(c.req("POST", "/onos/vnets/api/port", Some(&body)).0, 204);
    let before = c.req("GET", "/api/v1/networks", None).1;
    let dir = c.stop();
    let c = Controller::start_in(dir);
    assert_eq!(c.req("GET", "/api/v1/networks", None).1, before);
    assert!(
        before.contains(P1) && before.contains("\"vni\":2"),
        "{before}"
    );
}

#[test]
fn refuses_to_start_without_credentials() {
    let out = Command::new(BIN)
        .args([
            "controller",
            "--api-listen",
            "127.0.0.1:0",
            "--openflow-listen",
            "127.0.0.1:0",
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
    let c = Controller::start();
    let garbage: [&[u8]; 4] = [
        b"\x04\x00\x00",                      // truncated header
        b"\x04\x00\x00\x04\x00\x00\x00\x01",  // length below the header size
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", // not OpenFlow at all
        b"\x04\x00\xff\xff\x00\x00\x00\x01",  // HELLO claiming 64 KiB, then silence
    ];
    for bytes in garbage {
        let mut s = TcpStream::connect(("127.0.0.1", c.of)).unwrap();
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
    let mut s = TcpStream::connect(("127.0.0.1", c.of)).unwrap();
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

fn allocation(c: &Controller, net: &str, owner: &str, ips: &str) -> (u16, serde_json::Value) {
    let body = format!(r#"{{"owner":"{owner}","ips":{ips}}}"#);
    let (code, text) = c.req(
        "POST",
        &format!("/api/v1/networks/{net}/allocations"),
        Some(&body),
    );
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn ipam_validates_settings_and_static_requests() {
    let c = Controller::start();
    let create = r#"{"name":"web","cidrs":["10.1.0.0/24","fd00:1::/64"],"podRanges":["10.1.0.128/25"],"exclude":["10.1.0.130"]}"#;
    assert_eq!(c.req("POST", "/api/v1/networks", Some(create)).0, 201);
    assert_eq!(
        c.req("POST", "/api/v1/networks", Some(create)).0,
        200,
        "same settings: no-op"
    );
    let other = r#"{"name":"web","cidrs":["10.2.0.0/24"]}"#;
    assert_eq!(c.req("POST", "/api/v1/networks", Some(other)).0, 409);
    for bad in [
        r#"{"name":"x","cidrs":["10.0.0.0/24","10.1.0.0/24"]}"#,
        r#"{"name":"x","cidrs":["10.0.0.0/24"],"podRanges":["10.9.0.0/25"]}"#,
        r#"{"name":"x","cidrs":["10.0.0.0/33"]}"#,
        r#"{"name":"x","podRanges":["10.0.0.0/25"]}"#,
    ] {
        assert_eq!(c.req("POST", "/api/v1/networks", Some(bad)).0, 400, "{bad}");
    }
    let (code, v) = allocation(&c, "web", "pod-a/net1", "[]");
    assert_eq!(code, 200);
    assert_eq!(
        v["ips"],
        serde_json::json!(["10.1.0.129/24", "fd00:1::1/64"]),
        "pod range first, both families"
    );
    let (_, again) = allocation(&c, "web", "pod-a/net1", "[]");
    assert_eq!(again, v, "same owner, same addresses");
    let (_, v) = allocation(&c, "web", "pod-b/net1", "[]");
    assert_eq!(
        v["ips"][0], "10.1.0.131/24",
        "the excluded address is skipped"
    );
    for (ips, needle) in [
        (r#"["10.9.0.5/24"]"#, "outside"),
        (r#"["10.1.0.0/24"]"#, "reserved"),
        (r#"["10.1.0.255/24"]"#, "reserved"),
        (r#"["10.1.0.130/24"]"#, "reserved"),
        (r#"["10.1.0.129/24"]"#, "already allocated to pod-a/net1"),
    ] {
        let (code, v) = allocation(&c, "web", "pod-c/net1", ips);
        assert_eq!(code, 409, "{ips}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(needle),
            "{ips}: {v}"
        );
    }
    assert_eq!(allocation(&c, "nope", "x", "[]").0, 404);
    // L2 only: nothing invented, static addresses pass through.
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"l2"}"#))
            .0,
        204
    );
    assert_eq!(
        allocation(&c, "l2", "x", "[]").1["ips"],
        serde_json::json!([])
    );
    assert_eq!(
        allocation(&c, "l2", "x", r#"["192.168.7.1/24"]"#).1["ips"],
        serde_json::json!(["192.168.7.1/24"])
    );
    // Release and GC.
    let rel = |owner: &str| {
        c.req(
            "POST",
            "/api/v1/networks/web/release",
            Some(&format!(r#"{{"owner":"{owner}"}}"#)),
        )
    };
    assert_eq!(rel("pod-a/net1").1, r#"{"released":2}"#);
    assert_eq!(rel("pod-a/net1").1, r#"{"released":0}"#, "idempotent");
    allocation(&c, "web", "cni/c1/net1", "[]");
    allocation(&c, "web", "cni/c2/net1", "[]");
    let gc = r#"{"ownerPrefix":"cni/","validOwners":["cni/c1/net1"]}"#;
    assert_eq!(
        c.req("POST", "/api/v1/ipam/gc", Some(gc)).1,
        r#"{"released":2}"#
    );
    let net = c.req("GET", "/api/v1/networks/web", None).1;
    assert!(
        net.contains("cni/c1/net1") && !net.contains("cni/c2/net1") && net.contains("pod-b/net1"),
        "{net}"
    );
}

#[test]
fn five_hundred_concurrent_allocations_are_distinct_and_survive_a_restart() {
    let c = Controller::start();
    let create = r#"{"name":"big","cidrs":["10.8.0.0/22"]}"#;
    assert_eq!(c.req("POST", "/api/v1/networks", Some(create)).0, 201);
    let (api, of) = (c.api, c.of);
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
                            let answer = http(
                                api,
                                "POST",
                                "/api/v1/networks/big/allocations",
                                Some(&body),
                                true,
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
        *c.lock().unwrap() = Some(Controller::start_on(dir, api, of));
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
    let mut c = Controller::start();
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
    let dir = std::mem::replace(&mut c, Controller::start()).stop();
    let c = Controller::start_in(dir);
    assert_eq!(
        c.req("GET", "/api/v1/networks", None).1,
        before,
        "state changed across a restart"
    );
}
