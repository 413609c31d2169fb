//! Fixtures the L2S-M test suites share. Dev-only: no product crate depends on it.
//!
//! - [`prereq`]: checks that fail loudly (never skip) when the machine cannot run a test.
//! - [`bin`]: the workspace's binaries, for tests that cross a process boundary.
//! - [`controller`]: a real `l2sm controller` process on loopback with free ports.
//! - [`etcd`]: a real single-member etcd on loopback (the controller's `--store etcd://…`).
//! - [`lab`]: a lab built with the `l2sm` command, torn down on drop.
//! - [`http`]: one raw HTTP/1.1 request, for tests that must see exactly what goes on the wire.
//! - [`ofswitch`]: a scriptable OpenFlow 1.3 switch over plain TCP (blocking), for tests that
//!   need a switch to misbehave in a precise way.
//! - [`frames`]: raw Ethernet frames sent at full speed from inside a network namespace (a
//!   hostile pod).

pub mod bin;
pub mod controller;
pub mod etcd;
pub mod frames;
pub mod http;
pub mod lab;
pub mod ofswitch;
pub mod ovs;
pub mod prereq;

use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that nobody listened on a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a free port on 127.0.0.1")
}

/// Polls `f` every 100 ms until it holds; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Eight random hex digits, for unique names of parallel tests.
pub fn random_suffix() -> String {
    use std::io::Read as _;
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("cannot read /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}
