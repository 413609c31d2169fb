//! Destructive or asynchronous API calls, against a real controller process: a collection
//! with an empty selector frees nothing, and a port move answers only once the port's switch
//! confirmed it by barrier (or says it is pending).

use l2sm_ofp::Message;
use l2sm_test_support::controller::ControllerProcess;
use l2sm_test_support::ofswitch::{port, FakeSwitch};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn ipam_gc_with_an_empty_owner_prefix_is_refused_and_frees_nothing() {
    let c = ControllerProcess::start();
    let create = r#"{"name":"web","cidrs":["10.1.0.0/24"]}"#;
    assert_eq!(c.req("POST", "/api/v1/networks", Some(create)).0, 201);
    for owner in ["cni/c1/net1", "pod-a/net1"] {
        let body = format!(r#"{{"owner":"{owner}","ips":[]}}"#);
        let (code, text) = c.req("POST", "/api/v1/networks/web/allocations", Some(&body));
        assert_eq!(code, 200, "{text}");
    }
    let before = c.req("GET", "/api/v1/networks/web", None).1;
    assert!(
        before.contains("cni/c1/net1") && before.contains("pod-a/net1"),
        "{before}"
    );
    for prefix in ["", " ", "\\t"] {
        let gc = format!(r#"{{"ownerPrefix":"{prefix}","validOwners":[]}}"#);
        let (code, text) = c.req("POST", "/api/v1/ipam/gc", Some(&gc));
        assert_eq!(code, 400, "prefix {prefix:?}: {text}");
        assert!(text.contains("ownerPrefix"), "{text}");
    }
    assert_eq!(c.req("GET", "/api/v1/networks/web", None).1, before);
    // A real prefix still collects.
    let gc = r#"{"ownerPrefix":"cni/","validOwners":[]}"#;
    let (code, text) = c.req("POST", "/api/v1/ipam/gc", Some(gc));
    assert_eq!((code, text.as_str()), (200, r#"{"released":1}"#));
    let after = c.req("GET", "/api/v1/networks/web", None).1;
    assert!(
        !after.contains("cni/c1/net1") && after.contains("pod-a/net1"),
        "{after}"
    );
}

/// How the scripted switch answers barriers.
const ANSWER: u8 = 0;
const DELAY: u8 = 1;
const NEVER: u8 = 2;
/// How long a delayed barrier reply waits.
const BARRIER_DELAY: Duration = Duration::from_millis(1500);

/// A switch that answers everything, with barriers answered at once, late or never
/// (`mode`); it logs when it sent each barrier reply.
fn scripted_switch(
    openflow: u16,
    dpid: u64,
    mode: Arc<AtomicU8>,
    replies: Arc<Mutex<Vec<Instant>>>,
) -> std::thread::JoinHandle<()> {
    let ports = [port(3, "p3"), port(4, "p4")];
    let mut sw = FakeSwitch::connect(openflow, dpid).unwrap();
    let read = sw.handshake(&ports).unwrap();
    sw.answer(&read, &ports).unwrap();
    sw.set_read_timeout(Duration::from_millis(20));
    std::thread::spawn(move || {
        let mut due: Vec<(u32, Instant)> = Vec::new();
        loop {
            match sw.recv() {
                Ok(Some(m)) if matches!(m.body, Message::BarrierRequest) => {
                    match mode.load(Ordering::SeqCst) {
                        ANSWER => due.push((m.xid, Instant::now())),
                        DELAY => due.push((m.xid, Instant::now() + BARRIER_DELAY)),
                        _ => {}
                    }
                }
                Ok(Some(m)) => {
                    sw.answer(&m, &ports).unwrap();
                }
                Ok(None) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
            let now = Instant::now();
            let (ready, later): (Vec<_>, Vec<_>) = due.into_iter().partition(|(_, t)| *t <= now);
            due = later;
            for (xid, _) in ready {
                // Noted before sending: once sent, the controller may answer the HTTP call
                // before this thread runs again.
                replies.lock().unwrap().push(Instant::now());
                if sw.send(xid, Message::BarrierReply).is_err() {
                    return;
                }
            }
        }
    })
}

#[test]
fn a_port_move_answers_after_the_switch_confirmed_it_or_says_pending() {
    let c = ControllerProcess::start();
    let dpid = 0x00ab_0000_0000_0010u64;
    let p3 = format!("of:{dpid:016x}/3");
    for n in ["a", "q"] {
        let body = format!(r#"{{"networkId":"{n}"}}"#);
        assert_eq!(c.req("POST", "/onos/vnets/api", Some(&body)).0, 204);
    }
    let body = format!(r#"{{"networkId":"a","networkEndpoints":["{p3}"]}}"#);
    assert_eq!(c.req("POST", "/onos/vnets/api/port", Some(&body)).0, 204);
    let mode = Arc::new(AtomicU8::new(ANSWER));
    let replies = Arc::new(Mutex::new(Vec::new()));
    let _switch = scripted_switch(c.openflow, dpid, mode.clone(), replies.clone());
    l2sm_test_support::wait_until("the switch is connected", Duration::from_secs(10), || {
        c.req("GET", "/api/v1/switches", None)
            .1
            .contains(&format!("of:{dpid:016x}"))
    });
    let wait = format!("/api/v1/switches/of:{dpid:016x}/ports/3/wait");
    let (code, text) = c.req("POST", &wait, Some(r#"{"network":"a","timeoutMs":5000}"#));
    assert_eq!(code, 200, "{text}");

    // Barriers answered late: the move answers only after the reply.
    mode.store(DELAY, Ordering::SeqCst);
    let moves = format!("/api/v1/switches/of:{dpid:016x}/ports/3/move");
    let sent = Instant::now();
    let (code, text) = c.req("POST", &moves, Some(r#"{"from":"a","to":"q"}"#));
    let answered = Instant::now();
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(r#""moved":true"#), "{text}");
    let confirmed = replies
        .lock()
        .unwrap()
        .iter()
        .any(|t| *t > sent && *t <= answered);
    assert!(
        confirmed,
        "the move was answered after {:?}, before the switch's barrier reply",
        answered - sent
    );
    assert!(answered - sent >= BARRIER_DELAY - Duration::from_millis(100));

    // Barriers never answered: the move is recorded and reported as pending.
    mode.store(NEVER, Ordering::SeqCst);
    let sent = Instant::now();
    let (code, text) = c.req("POST", &moves, Some(r#"{"from":"q","to":"a"}"#));
    assert_eq!(code, 202, "{text}");
    assert!(text.contains(r#""moved":true"#), "{text}");
    assert!(
        sent.elapsed() >= Duration::from_secs(4),
        "{:?}",
        sent.elapsed()
    );
    let nets = c.req("GET", "/api/v1/attachments", None).1;
    assert!(
        nets.contains(&format!(r#""network":"a","port":"{p3}""#)),
        "{nets}"
    );
}

/// Trunk and tunnel port numbers belong to inter-switch links: as a member or mirror they would
/// give a link's flows a rival of equal priority. Every way in answers 400 and changes nothing.
#[test]
fn link_port_numbers_are_refused_as_members_and_mirrors() {
    let c = ControllerProcess::start();
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"n1"}"#))
            .0,
        204
    );
    let dpid = "of:00000000000000a1";
    let ok = format!(r#"{{"networkId":"n1","networkEndpoints":["{dpid}/3"]}}"#);
    assert_eq!(c.req("POST", "/onos/vnets/api/port", Some(&ok)).0, 204);
    let before = c.req("GET", "/api/v1/networks", None).1;
    for port in [57344u32, 57400, 61440, 65279] {
        let calls = [
            (
                "/onos/vnets/api/port",
                format!(r#"{{"networkId":"n1","networkEndpoints":["{dpid}/4","{dpid}/{port}"]}}"#),
            ),
            (
                "/onos/vnets/api/mirror-port",
                format!(r#"{{"networkId":"n1","mirrorPort":"{dpid}/{port}"}}"#),
            ),
            (
                "/onos/vnets/api",
                format!(r#"{{"networkId":"n2","mirrorPort":"{dpid}/{port}"}}"#),
            ),
            (
                &*format!("/api/v1/switches/{}/ports/{port}/move", &dpid[3..]),
                r#"{"from":"n1","to":"n1"}"#.to_string(),
            ),
        ];
        for (path, body) in calls {
            let (code, text) = c.req("POST", path, Some(&body));
            assert_eq!(code, 400, "{path} {body}: {text}");
            assert!(text.contains("pod port"), "{path}: {text}");
        }
    }
    assert_eq!(c.req("GET", "/api/v1/networks", None).1, before);
}
