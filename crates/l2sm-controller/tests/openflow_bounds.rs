//! Bounded OpenFlow sessions, against a real controller process and a scripted switch: a
//! switch that never answers the flow-table read while it streams PACKET_INs is dropped after
//! the deadline without the controller growing, and descriptor exhaustion on the OpenFlow
//! listener does not end the controller.

use l2sm_ofp::{Message, MultipartRequestBody};
use l2sm_test_support::controller::ControllerProcess;
use l2sm_test_support::ofswitch::{packet_in, port, FakeSwitch};
use std::time::{Duration, Instant};

/// The value of one metric line (`name{labels}` exactly) in `/metrics`.
fn metric(c: &ControllerProcess, series: &str) -> Option<f64> {
    let (code, text) = c.req("GET", "/metrics", None);
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_switch_that_never_answers_the_flow_read_and_streams_packet_ins_is_dropped() {
    let c = ControllerProcess::start_args(&["--openflow-timeout-ms", "3000"]);
    let before = c.rss_kib();
    let mut sw = FakeSwitch::connect(c.openflow, 0x00ab_0000_0000_0001).unwrap();
    let read = sw.handshake(&[port(1, "p1")]).unwrap();
    assert!(
        matches!(&read.body, Message::MultipartRequest(r) if matches!(r.body, MultipartRequestBody::Flow(_))),
        "{read:?}"
    );
    // Never answer it; stream PACKET_INs (1 KiB frames, 64 per write) as fast as the
    // controller reads them, until it closes the connection.
    let batch: Vec<(u32, Message)> = (0..64)
        .map(|i| (i, packet_in(1, vec![0x5a; 1024])))
        .collect();
    let start = Instant::now();
    let (mut peak, mut sent) = (before, 0u64);
    let mut last_sample = Instant::now();
    let closed_after = loop {
        if sw.send_all(&batch).is_err() {
            break Some(start.elapsed());
        }
        sent += 64;
        if last_sample.elapsed() > Duration::from_millis(100) {
            peak = peak.max(c.rss_kib());
            last_sample = Instant::now();
        }
        if start.elapsed() > Duration::from_secs(20) {
            break None;
        }
    };
    peak = peak.max(c.rss_kib());
    let closed_after = closed_after.unwrap_or_else(|| {
        panic!("the controller still reads from the switch after 20 s ({sent} PACKET_INs)")
    });
    eprintln!("RSS {before} -> {peak} KiB; {sent} PACKET_INs; closed after {closed_after:?}");
    assert!(
        closed_after < Duration::from_secs(10),
        "closed only after {closed_after:?}"
    );
    assert!(sent > 1000, "only {sent} PACKET_INs went out");
    let growth_mib = (peak.saturating_sub(before)) as f64 / 1024.0;
    assert!(
        growth_mib < 20.0,
        "controller RSS grew by {growth_mib:.1} MiB ({before} KiB -> {peak} KiB) for {sent} PACKET_INs"
    );
    let dropped = metric(
        &c,
        r#"l2sm_switch_packet_ins_dropped_total{reason="syncing"}"#,
    );
    assert!(dropped.is_some_and(|d| d > 0.0), "{dropped:?}");
    let timeouts = metric(
        &c,
        r#"l2sm_switch_session_timeouts_total{exchange="reply"}"#,
    );
    assert_eq!(timeouts, Some(1.0));
    // The controller still serves switches.
    let mut ok = FakeSwitch::connect(c.openflow, 0x00ab_0000_0000_0002).unwrap();
    let read = ok.handshake(&[port(1, "p1")]).unwrap();
    ok.answer(&read, &[]).unwrap();
}

#[test]
fn descriptor_exhaustion_does_not_end_the_controller() {
    let mut c = ControllerProcess::start();
    c.limit_open_files(64);
    let conns: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", c.openflow)).ok())
        .collect();
    assert!(conns.len() > 64, "only {} connections", conns.len());
    // Long enough for the controller to accept until EMFILE and retry a few times.
    std::thread::sleep(Duration::from_secs(2));
    assert!(c.is_running(), "the controller exited on EMFILE");
    drop(conns);
    // Descriptors free up as the sessions see the connections close.
    let start = Instant::now();
    let status = loop {
        let answer = c.try_request("GET", "/api/v1/switches", None, true);
        if let Some((200, _)) = answer {
            break answer;
        }
        assert!(
            c.is_running() && start.elapsed() < Duration::from_secs(15),
            "the controller does not answer REST after descriptors freed up: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.is_some());
    // And accepts a switch again: handshake, reads, then it lists it.
    let mut sw = FakeSwitch::connect(c.openflow, 0x00ab_0000_0000_0003).unwrap();
    let ports = [port(1, "p1")];
    let read = sw.handshake(&ports).unwrap();
    sw.answer(&read, &ports).unwrap();
    sw.set_read_timeout(Duration::from_millis(100));
    l2sm_test_support::wait_until("the switch is listed", Duration::from_secs(10), || {
        while let Ok(Some(m)) = sw.recv() {
            sw.answer(&m, &ports).unwrap();
        }
        c.req("GET", "/api/v1/switches", None)
            .1
            .contains("of:00ab000000000003")
    });
    assert!(c.is_running());
    let errors = metric(&c, "l2sm_openflow_accept_errors_total");
    assert!(errors.is_some_and(|e| e > 0.0), "{errors:?}");
}

#[test]
fn a_switch_that_never_answers_a_barrier_is_dropped_after_the_deadline() {
    let c = ControllerProcess::start_args(&["--openflow-timeout-ms", "2000"]);
    let mut sw = FakeSwitch::connect(c.openflow, 0x00ab_0000_0000_0004).unwrap();
    let ports = [port(1, "p1")];
    let read = sw.handshake(&ports).unwrap();
    sw.answer(&read, &ports).unwrap();
    // Answer everything (echoes too: the session stays alive) but barriers.
    sw.set_read_timeout(Duration::from_millis(200));
    let start = Instant::now();
    let mut barriers = 0;
    let closed_after = loop {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still connected after 20 s ({barriers} barriers unanswered)"
        );
        match sw.recv() {
            Ok(Some(m)) if matches!(m.body, Message::BarrierRequest) => barriers += 1,
            Ok(Some(m)) => {
                sw.answer(&m, &ports).unwrap();
            }
            Ok(None) => break start.elapsed(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break start.elapsed(),
        }
    };
    assert!(barriers > 0, "the controller sent no batch");
    assert!(
        closed_after >= Duration::from_millis(1500),
        "closed after {closed_after:?}"
    );
    let timeouts = metric(
        &c,
        r#"l2sm_switch_session_timeouts_total{exchange="barrier"}"#,
    );
    assert_eq!(timeouts, Some(1.0));
}
