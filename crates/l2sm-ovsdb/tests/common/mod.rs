//! A throw-away `ovsdb-server` per test: own temp dir, own database file, killed (by pid,
//! via `Child::kill`) when the guard drops, also when the test panics.
//!
//! Missing Open vSwitch tools make the tests fail loudly: a passing run must mean the
//! client was exercised against a real server.

#![allow(dead_code)] // not every test binary uses every helper

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use l2sm_ovsdb::Client;

pub(crate) const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Finds an Open vSwitch binary in PATH or the sbin directories PATH may lack.
pub(crate) fn find_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found (PATH and sbin dirs searched): these tests need Open vSwitch \
                 (Debian: apt-get install openvswitch-switch)"
            )
        })
}

pub(crate) struct OvsdbServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub db: PathBuf,
    pub sock: PathBuf,
}

impl OvsdbServer {
    /// Creates a fresh database from the vswitch schema; the server is not started yet.
    pub(crate) fn new() -> Self {
        assert!(
            Path::new(SCHEMA).is_file(),
            "{SCHEMA} missing: these tests need Open vSwitch's schema"
        );
        let dir = tempfile::Builder::new()
            .prefix("ovsdb")
            .tempdir()
            .expect("create temp dir");
        let db = dir.path().join("conf.db");
        let out = Command::new(find_tool("ovsdb-tool"))
            .arg("create")
            .arg(&db)
            .arg(SCHEMA)
            .output()
            .expect("run ovsdb-tool create");
        assert!(out.status.success(), "ovsdb-tool create failed: {out:?}");
        let sock = dir.path().join("db.sock");
        OvsdbServer {
            dir,
            child: None,
            db,
            sock,
        }
    }

    /// `new()` then `start(&[])`.
    pub(crate) fn started() -> Self {
        let mut s = Self::new();
        s.start(&[]);
        s
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Applies a transaction to the database file before the server runs.
    pub(crate) fn offline_transact(&self, txn: &serde_json::Value) {
        let out = Command::new(find_tool("ovsdb-tool"))
            .arg("transact")
            .arg(&self.db)
            .arg(txn.to_string())
            .output()
            .expect("run ovsdb-tool transact");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.contains("\"error\""),
            "ovsdb-tool transact failed: {out:?}"
        );
    }

    /// Starts `ovsdb-server` in the foreground (no --detach, so we own the pid) and waits
    /// until its socket accepts connections.
    pub(crate) fn start(&mut self, extra_args: &[&str]) {
        let d = self.dir.path();
        let child = Command::new(find_tool("ovsdb-server"))
            .arg(&self.db)
            .arg(format!("--remote=punix:{}", self.sock.display()))
            .arg(format!("--pidfile={}", d.join("pid").display()))
            .arg(format!("--unixctl={}", d.join("ctl").display()))
            .arg(format!("--log-file={}", d.join("log").display()))
            .arg("--no-chdir")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ovsdb-server");
        self.child = Some(child);
        self.wait_for_socket(&self.sock.clone());
    }

    /// Waits for a unix socket the server listens on.
    pub(crate) fn wait_for_socket(&mut self, sock: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::os::unix::net::UnixStream::connect(sock).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("ovsdb-server exited ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "ovsdb-server socket {} did not appear; log:\n{}",
                sock.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Kills the server (SIGKILL to its pid) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) async fn client(&self) -> Client {
        Client::connect_unix(&self.sock)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.sock.display()))
    }
}

impl Drop for OvsdbServer {
    fn drop(&mut self) {
        self.kill();
    }
}
