//! A lab built with the `l2sm` command for one test. Every test builds its own lab with a
//! unique name, so tests run in parallel, and tears it down in `Drop`, also when the test
//! fails.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A lab named `t<tag><random>`, taken down when dropped.
pub struct TestLab {
    /// Lab name (`--lab`).
    pub name: String,
    down_on_drop: bool,
}

impl TestLab {
    /// A lab named `t<tag><random>` (not yet up).
    pub fn new(tag: &str) -> TestLab {
        crate::prereq::require_lab();
        let name = format!("t{tag}{}", crate::random_suffix());
        assert!(name.len() <= 12, "lab name {name} too long");
        TestLab {
            name,
            down_on_drop: true,
        }
    }

    /// A lab that is up with `nodes` nodes.
    pub fn up(tag: &str, nodes: usize) -> TestLab {
        let lab = TestLab::new(tag);
        lab.ok(&["lab", "up", "--nodes", &nodes.to_string()]);
        lab
    }

    /// Runs `l2sm --lab <name> ARGS` (stdin closed) and returns its output, whatever the exit
    /// status.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(crate::bin::l2sm())
            .arg("--lab")
            .arg(&self.name)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run l2sm")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "l2sm {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, asserts failure with exactly one line on stderr; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "l2sm {args:?} unexpectedly succeeded: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "l2sm {args:?}: expected a one-line error, got {stderr:?}"
        );
        lines[0].to_string()
    }

    /// `attach --node NODE --pod POD --network NETWORK --ip IP`, asserting success; returns
    /// stdout.
    pub fn attach(&self, node: &str, pod: &str, network: &str, ip: &str) -> String {
        self.ok(&[
            "attach",
            "--node",
            node,
            "--pod",
            pod,
            "--network",
            network,
            "--ip",
            ip,
        ])
    }

    /// `lab exec POD -- CMD`, returning whether it exited 0.
    pub fn exec_ok(&self, pod: &str, cmd: &[&str]) -> bool {
        let mut args = vec!["lab", "exec", pod, "--"];
        args.extend_from_slice(cmd);
        self.run(&args).status.success()
    }

    /// Ping that allows for first-packet ARP and tunnel ARP resolution.
    pub fn pings(&self, from: &str, ip: &str) -> bool {
        self.exec_ok(from, &["ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", ip])
            && self.exec_ok(from, &["ping", "-c", "1", "-W", "1", "-q", ip])
    }

    /// A pod that must NOT reach `ip`: two probes, each with a 1 s timeout.
    pub fn blocked(&self, from: &str, ip: &str) -> bool {
        !self.exec_ok(from, &["ping", "-c", "2", "-i", "0.2", "-W", "1", "-q", ip])
    }

    /// The lab's state file, `/run/l2sm/lab/<name>/lab.json`, parsed (panics if missing or not
    /// JSON).
    pub fn state(&self) -> serde_json::Value {
        let path = PathBuf::from("/run/l2sm/lab")
            .join(&self.name)
            .join("lab.json");
        serde_json::from_slice(&std::fs::read(&path).expect("lab.json")).expect("lab.json is JSON")
    }

    /// Sorted names of this lab's network namespaces (`/run/netns/l2sm-<name>-*`).
    pub fn namespaces(&self) -> Vec<String> {
        let prefix = format!("l2sm-{}-", self.name);
        let mut v: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Pids of processes whose command line mentions this lab's directory or namespaces.
    pub fn processes(&self) -> Vec<i32> {
        let needle = format!("/run/l2sm/lab/{}/", self.name);
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&cmd).contains(&needle) {
                pids.push(pid);
            }
        }
        pids
    }

    /// VXLAN ports of a node's Open vSwitch.
    pub fn vxlan_ports(&self, node: &str) -> usize {
        vxlan_ports_at(&format!("/run/l2sm/lab/{}/{node}/db.sock", self.name))
    }

    /// Leaves the lab up when this value is dropped (no `lab down`).
    pub fn keep(&mut self) {
        self.down_on_drop = false;
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if self.down_on_drop {
            let _ = self.run(&["lab", "down"]);
        }
    }
}

/// Captures the frames `filter` selects on `ifname` of `pod` for `secs` seconds, in the background.
pub struct Capture {
    child: std::process::Child,
}

impl Capture {
    /// Starts `tcpdump -n -l -e` with `filter` on `ifname` inside `pod` (via `lab exec`), stopped
    /// by `timeout` after `secs` seconds.
    pub fn start(lab: &TestLab, pod: &str, ifname: &str, secs: u32, filter: &str) -> Capture {
        let child = Command::new(crate::bin::l2sm())
            .args(["--lab", &lab.name, "lab", "exec", pod, "--"])
            .args([
                "timeout",
                &secs.to_string(),
                "tcpdump",
                "-i",
                ifname,
                "-n",
                "-l",
                "-e",
            ])
            .args(filter.split_whitespace())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump");
        Capture { child }
    }

    /// Waits for the capture to end and returns tcpdump's stdout, one packet per line.
    pub fn output(self) -> String {
        let out = self.child.wait_with_output().expect("tcpdump output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `method` on `path` of the lab's controller, as its admin API user, with curl run in the
/// controller's namespace; (status, JSON body, `null` when empty).
pub fn api_call(lab: &TestLab, method: &str, path: &str) -> (u16, serde_json::Value) {
    api_call_with(lab, method, path, None)
}

/// [`api_call`] with a JSON request body.
pub fn api_call_with(
    lab: &TestLab,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let state = lab.state();
    let creds = format!(
        "{}:{}",
        state["api_user"].as_str().unwrap(),
        state["api_password"].as_str().unwrap()
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("l2sm-{}-ul", lab.name)])
        .args([
            "curl",
            "-s",
            "-X",
            method,
            "-u",
            &creds,
            "-w",
            "\n%{http_code}",
        ])
        .args(match body {
            Some(b) => vec!["-H", "Content-Type: application/json", "--data-binary", b],
            None => vec![],
        })
        .arg(format!("http://127.0.0.1:8181{path}"))
        .output()
        .expect("curl in the controller namespace");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    let code = code.trim().parse().unwrap_or(0);
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| panic!("{method} {path}: {text}"))
    };
    (code, body)
}

/// `GET /metrics` from the lab controller, from a thread that enters the underlay namespace,
/// as the lab's read-only API user.
pub fn metrics(lab: &TestLab) -> String {
    let ns = format!("/run/netns/l2sm-{}-ul", lab.name);
    let token_file = format!("/run/l2sm/lab/{}/api/reader.token", lab.name);
    let password = std::fs::read_to_string(&token_file).expect("the lab's reader token");
    let token = crate::controller::base64_encode(format!("reader:{}", password.trim()).as_bytes());
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let f = std::fs::File::open(&ns).expect("underlay namespace");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let mut s = std::net::TcpStream::connect("10.250.0.254:8181").expect("controller API");
        s.write_all(
            format!("GET /metrics HTTP/1.0\r\nHost: c\r\nAuthorization: Basic {token}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .join()
    .expect("metrics thread")
}

/// The value of an unlabelled metric.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// VXLAN ports in the OVSDB whose unix socket is `db` (observed with `ovs-vsctl`).
pub fn vxlan_ports_at(db: &str) -> usize {
    let out = Command::new("ovs-vsctl")
        .arg(format!("--db=unix:{db}"))
        .args([
            "--bare",
            "--columns=name",
            "find",
            "Interface",
            "type=vxlan",
        ])
        .output()
        .expect("ovs-vsctl");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .count()
}
