//! Shared helpers for the privileged integration tests.
//!
//! Every namespace is named `l2s-t<random>-<tag>` and removed by a Drop guard, also when the
//! test panics. Links are only created inside those namespaces, never in the root namespace.
//! `ip` is used only to observe.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use l2sm_netns::{create_named, delete_named, Netns};

/// These tests need root. They fail, never skip, when it is missing.
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "l2sm-netns integration tests must run as root (they create network namespaces); \
         refusing to skip silently"
    );
}

/// A name prefix unique to this test process and call.
pub(crate) fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("l2s-t{:08x}", h.finish() as u32)
}

/// A named namespace deleted on drop.
pub(crate) struct TestNs {
    pub name: String,
    pub ns: Netns,
}

impl TestNs {
    pub(crate) fn new(prefix: &str, tag: &str) -> TestNs {
        require_root();
        let name = format!("{prefix}-{tag}");
        let ns = create_named(&name).unwrap_or_else(|e| panic!("create_named({name}): {e}"));
        TestNs { name, ns }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = delete_named(&self.name) {
            eprintln!("cleanup: delete_named({}) failed: {e}", self.name);
        }
    }
}

/// A child process killed and reaped on drop.
pub(crate) struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command for observation and returns its output.
pub(crate) fn run(prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawn {prog} {args:?}: {e}"))
}

/// `ip -n NS ARGS...`, which must succeed; returns stdout.
pub(crate) fn ip_n(ns: &str, args: &[&str]) -> String {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    let out = run("ip", &full);
    assert!(
        out.status.success(),
        "ip {full:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip netns exec NS ARGS...`; returns the raw output.
pub(crate) fn netns_exec(ns: &str, args: &[&str]) -> Output {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Pings `dst` from `ns` (one packet, 1 s timeout), retrying a few times while neighbours
/// resolve. Panics with ping's output if none succeeds.
pub(crate) fn ping(ns: &str, dst: &str) {
    let mut last = None;
    for _ in 0..3 {
        let out = netns_exec(ns, &["ping", "-c1", "-W1", dst]);
        if out.status.success() {
            return;
        }
        last = Some(out);
    }
    let out = last.expect("at least one attempt");
    panic!(
        "ping {dst} from {ns} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
