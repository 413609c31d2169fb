//! A real single-member `etcd` (Debian's `etcd-server`) on loopback with its own ports and
//! data directory, killed (by pid) and removed when dropped. No etcd binary → the test fails
//! loudly (scripts/deps.sh installs it).

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running etcd member.
pub struct EtcdProcess {
    child: Child,
    /// Client port on 127.0.0.1.
    pub client_port: u16,
    _dir: tempfile::TempDir,
}

impl EtcdProcess {
    /// Starts etcd on two free loopback ports and waits until it answers `/health`.
    pub fn start() -> EtcdProcess {
        let binary = which_etcd();
        for _ in 0..4 {
            let dir = tempfile::tempdir().expect("tempdir for etcd");
            let (client, peer) = (crate::free_port(), crate::free_port());
            let stderr_path = dir.path().join("etcd.log");
            let stderr = std::fs::File::create(&stderr_path).expect("etcd log file");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let client_url = format!("http://127.0.0.1:{client}");
            let mut child = Command::new(&binary)
                .args(["--name", "test"])
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("test={peer_url}")])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let start = Instant::now();
            loop {
                if healthy(client) {
                    return EtcdProcess {
                        child,
                        client_port: client,
                        _dir: dir,
                    };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    if log.contains("address already in use") {
                        break; // another test took a port: new ports
                    }
                    panic!("etcd exited before it was healthy ({status}): {log}");
                }
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    panic!("etcd not healthy within 20 s on port {client}: {log}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("etcd did not start: its ports were taken four times in a row");
    }

    /// `etcd://127.0.0.1:<client>` plus `prefix` (e.g. `/test/`), for `--store`.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://127.0.0.1:{}{prefix}", self.client_port)
    }

    /// The pid, for tests that must stop it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The etcd binary, or a loud failure naming the package.
fn which_etcd() -> std::path::PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = std::path::Path::new(dir).join("etcd");
        if p.is_file() {
            return p;
        }
    }
    panic!("etcd not found in PATH: install Debian's etcd-server (scripts/deps.sh); this test needs a real etcd");
}

/// `GET /health` answers `"health":"true"`.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}
