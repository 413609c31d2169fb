//! The typed client against scripted servers on loopback: what it makes of plain, chunked,
//! error, garbage, oversized and missing answers, and dialing from another network namespace.

use l2sm_api::{ClientError, ControllerClient, RetryPolicy};
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

/// A server that answers each of `answers` to one connection, in order, after reading the
/// request head; returns its URL.
fn scripted(answers: Vec<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for answer in answers {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(&answer);
        }
    });
    url
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        attempts: 1,
        initial: Duration::from_millis(10),
        max: Duration::from_millis(10),
        timeout: Duration::from_secs(2),
    }
}

fn client(url: &str) -> ControllerClient {
    ControllerClient::new(url, Some(("u".into(), "p".into())), quick()).unwrap()
}

#[tokio::test]
async fn plain_and_chunked_answers_decode() {
    let url = scripted(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n4\r\n[{\"n\r\n1e\r\name\":\"blue\",\"vni\":7,\"vlan\":2}]\r\n0\r\n\r\n".to_vec(),
    ]);
    let c = client(&url);
    c.health().await.unwrap();
    let nets = c.networks().await.unwrap();
    assert_eq!(nets.len(), 1);
    assert_eq!(
        (nets[0].name.as_str(), nets[0].vni, nets[0].vlan),
        ("blue", 7, Some(2))
    );
}

#[tokio::test]
async fn error_answers_carry_the_controllers_message() {
    let body = br#"{"error":"hello","code":409,"message":"hello"}"#;
    let mut answer = format!(
        "HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(body);
    answer.extend_from_slice(b"\r\n0\r\n\r\n");
    let url = scripted(vec![
        answer,
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\nconnection: close\r\n\r\noops\n".to_vec(),
    ]);
    let c = client(&url);
    let err = c
        .add_port("blue", "of:0000000000000001/1")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert_eq!(err.message(), "hello");
    assert!(!err.is_transient());
    let err = c.create_vnet("blue").await.unwrap_err();
    assert_eq!((err.status(), err.message().as_str()), (Some(500), "oops"));
}

#[tokio::test]
async fn garbage_oversized_and_silent_servers_are_errors_not_panics() {
    // Not HTTP at all.
    let url = scripted(vec![b"garbage\r\n\r\n".to_vec()]);
    let err = client(&url).health().await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");

    // A body larger than the client reads (8 MiB).
    let mut big =
        b"HTTP/1.1 200 OK\r\ncontent-length: 9437184\r\nconnection: close\r\n\r\n".to_vec();
    big.resize(big.len() + 9 * 1024 * 1024, b'[');
    let url = scripted(vec![big]);
    let err = client(&url).networks().await.unwrap_err();
    assert!(format!("{err}").contains("reading the answer"), "{err}");

    // Accepts and never answers: the deadline holds.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let started = std::time::Instant::now();
    let err = client(&url).health().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(listener);

    // Nothing listens; the error names the URL and the attempts.
    let port = l2sm_test_support::free_port();
    let retry = RetryPolicy {
        attempts: 3,
        ..quick()
    };
    let c = ControllerClient::new(&format!("http://127.0.0.1:{port}"), None, retry).unwrap();
    let err = c.health().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("unreachable after 3 attempt(s)") && text.contains(&port.to_string()),
        "{text}"
    );
    assert_eq!(err.reason(), "ControllerUnreachable");
}

/// The lab's CLI reaches a controller that only exists inside the underlay namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dials_from_inside_a_network_namespace() {
    l2sm_test_support::prereq::require_root("network namespace tests");
    let name = format!("l2sm-apit-{}", l2sm_test_support::random_suffix());
    let ns = l2sm_netns::create_named(&name).unwrap();
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = l2sm_netns::delete_named(&self.0);
        }
    }
    let _cleanup = Cleanup(name.clone());
    l2sm_netns::with_netlink(&ns, |nl| nl.set_up("lo")).unwrap();
    // A one-answer server bound inside the namespace, on a port free in the host's.
    let port = l2sm_test_support::free_port();
    let listener = l2sm_netns::run_in_netns(&ns, move || TcpListener::bind(("127.0.0.1", port)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let from_host = client(&url).health().await;
    assert!(from_host.is_err(), "the host namespace must not reach it");
    let inside = ControllerClient::in_netns(&url, None, quick(), ns.path().to_path_buf()).unwrap();
    inside.health().await.unwrap();
}

/// A kept-alive connection idle for longer than [`l2sm_api::POOL_IDLE_TIMEOUT`] is not reused:
/// the controller closes idle connections after 10 s, and a request sent on one it is closing
/// fails with a reset that the agent would not retry. The server here answers one request per
/// connection and then closes the connection on the next, unanswered.
#[tokio::test]
async fn idle_connections_are_not_reused_past_the_pool_idle_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || loop {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut served = 0;
            loop {
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                if served == 1 {
                    // Closed with the request unanswered: the client sees the connection
                    // end before an answer, as when a server's idle close races a request.
                    return;
                }
                served += 1;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
    });
    let c = client(&url);
    c.health().await.unwrap();
    tokio::time::sleep(l2sm_api::POOL_IDLE_TIMEOUT + Duration::from_millis(500)).await;
    c.health().await.unwrap();
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}
