//! A real `l2sm controller` process on loopback, killed (by pid) when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running controller with its API and OpenFlow ports and its state directory.
pub struct ControllerProcess {
    child: Child,
    /// API port on 127.0.0.1.
    pub api: u16,
    /// OpenFlow port on 127.0.0.1.
    pub openflow: u16,
    /// API user.
    pub user: String,
    /// API password.
    pub password: String,
    dir: tempfile::TempDir,
}

impl ControllerProcess {
    /// Starts a controller with a fresh state directory and credentials `test`/`secret`.
    pub fn start() -> ControllerProcess {
        Self::start_with(tempfile::tempdir().expect("tempdir"), "test", "secret")
    }

    /// Starts a controller on `dir` with these credentials, on free ports.
    pub fn start_with(dir: tempfile::TempDir, user: &str, password: &str) -> ControllerProcess {
        Self::start_on_free_ports(dir, user, password, &[])
    }

    /// Starts a controller on `dir` on the given ports; waits until its API answers.
    pub fn start_on(
        dir: tempfile::TempDir,
        user: &str,
        password: &str,
        api: u16,
        openflow: u16,
    ) -> ControllerProcess {
        Self::start_on_with(dir, user, password, api, openflow, &[])
    }

    /// Starts a controller with a fresh state directory, credentials `test`/`secret`, free
    /// ports and `extra` command-line arguments.
    pub fn start_args(extra: &[&str]) -> ControllerProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_on_free_ports(dir, "test", "secret", extra)
    }

    /// Starts a controller with credentials `user`/`password` and these extra arguments
    /// (`--api-users FILE`, limits…), on free ports and a fresh state directory.
    pub fn start_with_args(user: &str, password: &str, extra: &[String]) -> ControllerProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Self::start_on_free_ports(dir, user, password, &extra)
    }

    /// Starts on two free ports; a port another test took between the probe and the
    /// controller's bind (the probe's port is an ephemeral one, clients get those too) means
    /// new ports, a few times.
    fn start_on_free_ports(
        mut dir: tempfile::TempDir,
        user: &str,
        password: &str,
        extra: &[&str],
    ) -> ControllerProcess {
        for _ in 0..4 {
            let (api, openflow) = (crate::free_port(), crate::free_port());
            match Self::try_start(dir, user, password, api, openflow, extra) {
                Ok(c) => return c,
                Err(Exited {
                    dir: back, stderr, ..
                }) if stderr.contains("in use") => dir = back,
                Err(e) => e.fail(),
            }
        }
        panic!("controller did not start: its ports were taken four times in a row");
    }

    /// Like [`ControllerProcess::start_on`], with `extra` command-line arguments.
    pub fn start_on_with(
        dir: tempfile::TempDir,
        user: &str,
        password: &str,
        api: u16,
        openflow: u16,
        extra: &[&str],
    ) -> ControllerProcess {
        Self::try_start(dir, user, password, api, openflow, extra).unwrap_or_else(|e| e.fail())
    }

    /// Starts a controller and waits until its API answers; gives the state directory back
    /// when the process exits first.
    fn try_start(
        dir: tempfile::TempDir,
        user: &str,
        password: &str,
        api: u16,
        openflow: u16,
        extra: &[&str],
    ) -> Result<ControllerProcess, Exited> {
        let stderr = tempfile::tempfile().expect("a file for the controller's stderr");
        let child = Command::new(crate::bin::l2sm())
            .args(["controller", "--api-listen", &format!("127.0.0.1:{api}")])
            .args(extra)
            .args(["--openflow-listen", &format!("127.0.0.1:{openflow}")])
            // These tests are about the API: OpenFlow over plain TCP, on purpose (unless
            // `extra` sets up TLS).
            .args(
                (!extra.contains(&"--openflow-tls-cert"))
                    .then_some("--insecure-openflow")
                    .as_slice(),
            )
            .arg("--state-dir")
            .arg(dir.path())
            .env("L2SM_API_USER", user)
            .env("L2SM_API_PASSWORD", password)
            .stdout(Stdio::null())
            .stderr(stderr.try_clone().expect("clone of the stderr file"))
            .spawn()
            .expect("cannot start l2sm controller");
        let mut c = ControllerProcess {
            child,
            api,
            openflow,
            user: user.to_string(),
            password: password.to_string(),
            dir,
        };
        let start = Instant::now();
        // Over TLS, a plain request gets no HTTP answer: an accepted connection is enough.
        let tls = extra.contains(&"--api-tls-cert");
        let up = || {
            if tls {
                std::net::TcpStream::connect(("127.0.0.1", api)).is_ok()
            } else {
                crate::http::request(api, "GET", "/onos/vnets/api/status", None, None).is_some()
            }
        };
        while !up() {
            if let Ok(Some(status)) = c.child.try_wait() {
                let stderr = read_all(stderr);
                let dir = c.stop();
                return Err(Exited {
                    dir,
                    status,
                    stderr,
                });
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "controller did not start within 10 s (still running, API port {api})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(c)
    }

    /// `http://127.0.0.1:<api>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api)
    }

    /// The Basic authorization token of its credentials.
    pub fn token(&self) -> String {
        base64_encode(format!("{}:{}", self.user, self.password).as_bytes())
    }

    /// One request to its API, with its credentials or without; `None` when nothing answers
    /// (it stopped, or is restarting).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        authenticated: bool,
    ) -> Option<(u16, String)> {
        let token = authenticated.then(|| self.token());
        crate::http::request(self.api, method, path, body, token.as_deref())
    }

    /// One request with its credentials: the status and the body. Panics when nothing answers.
    pub fn req(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.try_request(method, path, body, true)
            .unwrap_or_else(|| panic!("controller did not answer {method} {path}"))
    }

    /// Its state directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident set size (`VmRSS` of `/proc/<pid>/status`) in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("cannot read the controller's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("no VmRSS in the controller's /proc status")
    }

    /// Whether the process is still running (not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sets its open-file limit (soft and hard) with `prlimit`; panics when `prlimit` is
    /// missing or fails.
    pub fn limit_open_files(&self, limit: u64) {
        let status = Command::new("prlimit")
            .arg(format!("--pid={}", self.pid()))
            .arg(format!("--nofile={limit}:{limit}"))
            .status()
            .expect("prlimit (util-linux) is required by this test");
        assert!(status.success(), "prlimit failed: {status}");
    }

    /// Kills it (SIGKILL) and hands back its state directory, for a restart on the same state.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let replacement = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, replacement)
    }
}

/// A controller that exited before its API answered.
struct Exited {
    dir: tempfile::TempDir,
    status: std::process::ExitStatus,
    stderr: String,
}

impl Exited {
    fn fail(self) -> ! {
        panic!(
            "controller exited before its API answered ({}): {}",
            self.status, self.stderr
        )
    }
}

fn read_all(mut f: std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut out = String::new();
    let _ = f.rewind();
    let _ = f.read_to_string(&mut out);
    out
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_known_tokens() {
        assert_eq!(super::base64_encode(b"test:secret"), "dGVzdDpzZWNyZXQ=");
        assert_eq!(super::base64_encode(b"op:secret"), "b3A6c2VjcmV0");
    }
}
