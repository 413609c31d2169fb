//! The agent's local API server (the function `l2sm agent` serves its unix socket with) under
//! abuse: stalled connections are closed after the header timeout and do not keep a normal
//! request out, over-long requests are refused, and descriptor exhaustion does not end it.

use l2sm_agent::socket::{serve, SocketLimits, SocketStats};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts the server on a fresh socket with `limits` on its own runtime thread; the handler
/// echoes the request inside a JSON reply.
fn start(limits: SocketLimits) -> (tempfile::TempDir, std::path::PathBuf, Arc<SocketStats>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let stats = Arc::new(SocketStats::default());
    let (p, s) = (path.clone(), stats.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::UnixListener::bind(&p).unwrap();
            ready_tx.send(()).unwrap();
            serve(listener, limits, s, |line: String| async move {
                serde_json::json!({"ok": true, "result": line}).to_string()
            })
            .await;
        });
    });
    ready_rx.recv().unwrap();
    (dir, path, stats)
}

/// One request; the reply line.
fn call(path: &std::path::Path, line: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply)?;
    Ok(reply)
}

#[test]
fn stalled_connections_are_closed_and_a_normal_request_still_succeeds() {
    let limits = SocketLimits {
        max_connections: 32,
        header_timeout: Duration::from_millis(800),
        ..SocketLimits::default()
    };
    let (_dir, path, stats) = start(limits);
    // 100 connections that send half a request and stall, three times the cap.
    let mut stalled: Vec<UnixStream> = (0..100)
        .map(|_| {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(br#"{"op":"sta"#).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let reply = call(&path, r#"{"op":"status"}"#, Duration::from_secs(10)).unwrap();
    assert!(reply.contains(r#"\"op\":\"status\""#), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "answered only after {:?}",
        started.elapsed()
    );
    // Every stalled connection was closed by the server (EOF), not left open.
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let n = s.read_to_end(&mut buf);
        let closed = match &n {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(closed, "stalled connection not closed: {n:?}");
    }
    assert!(stats.refused.load(Ordering::Relaxed) >= 100);
    // A connection that trickles a byte at a time is closed at the header timeout too.
    let mut slow = UnixStream::connect(&path).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let t = Instant::now();
    let mut closed = false;
    while t.elapsed() < Duration::from_secs(5) {
        if slow.write_all(b" ").is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 1];
        if matches!(slow.read(&mut b), Ok(0)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling connection stayed open for 5 s");
}

#[test]
fn an_over_long_request_is_refused() {
    let limits = SocketLimits {
        max_request_bytes: 1024,
        ..SocketLimits::default()
    };
    let (_dir, path, _stats) = start(limits);
    let big = format!(r#"{{"op":"{}"}}"#, "x".repeat(4096));
    let reply = call(&path, &big, Duration::from_secs(5)).unwrap();
    assert!(reply.contains("longer than 1024 bytes"), "{reply}");
    let reply = call(&path, r#"{"op":"list"}"#, Duration::from_secs(5)).unwrap();
    assert!(reply.contains("list"), "{reply}");
}

#[test]
fn descriptor_exhaustion_does_not_end_the_server() {
    let (_dir, path, stats) = start(SocketLimits::default());
    // Lower this test process's open-file limit (nextest runs each test in its own process)
    // close to what is open, then connect until descriptors run out on both ends.
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let set = |soft: u64| {
        let status = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={soft}:20000"))
            .status()
            .expect("prlimit (util-linux) is required by this test");
        assert!(status.success());
    };
    set(open + 16);
    let conns: Vec<UnixStream> = (0..64)
        .filter_map(|_| UnixStream::connect(&path).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(conns);
    set(20000);
    let reply = call(&path, r#"{"op":"status"}"#, Duration::from_secs(10)).unwrap();
    assert!(reply.contains("status"), "{reply}");
    assert!(
        stats.accept_errors.load(Ordering::Relaxed) > 0,
        "the server never hit EMFILE: the test proves nothing"
    );
}

/// The same against a real agent of a lab node (default limits: 64 connections, 5 s to send
/// a request): 100 stalled connections are closed, and a status request still answers.
#[test]
fn a_real_agent_closes_stalled_connections_and_keeps_answering() {
    let lab = l2sm_test_support::lab::TestLab::up("sk", 1);
    let path = std::path::PathBuf::from(format!("/run/l2sm/lab/{}/n1/agent.sock", lab.name));
    let mut stalled: Vec<UnixStream> = (0..100)
        .map(|_| {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(br#"{"op":"sta"#).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let reply = call(&path, r#"{"op":"status"}"#, Duration::from_secs(15)).unwrap();
    assert!(reply.contains(r#""ok":true"#), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "answered only after {:?}",
        started.elapsed()
    );
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = Vec::new();
        let n = s.read_to_end(&mut buf);
        let closed = match &n {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(closed, "stalled connection not closed: {n:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stalled connections closed only after {:?}",
        started.elapsed()
    );
}
