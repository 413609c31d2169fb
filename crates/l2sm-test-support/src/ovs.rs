//! A network namespace with an Open vSwitch of its own (`ovsdb-server` and `ovs-vswitchd`
//! started there, files in a directory of their own); on drop the daemons are stopped by pid
//! and the namespace and directory removed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The namespace, its OVS and its directory (`db.sock`, logs, pid files).
pub struct NetnsOvs {
    /// Namespace name (`ip netns`).
    pub ns: String,
    /// Directory of the OVS files; the test may put its own files there.
    pub dir: PathBuf,
    pids: Vec<i32>,
}

/// Runs `cmd`, panicking with its stderr when it fails; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl NetnsOvs {
    /// Namespace `l2sm-<prefix>-<random>` with OVS started in it; fails loudly without root
    /// or the OVS tools (`what` names the tests in the message).
    pub fn start(prefix: &str, what: &str) -> NetnsOvs {
        crate::prereq::require_root(what);
        crate::prereq::require_tools(&[
            "ovsdb-server",
            "ovs-vswitchd",
            "ovsdb-tool",
            "ovs-vsctl",
            "ip",
        ]);
        let sfx = crate::random_suffix();
        let ns = format!("l2sm-{prefix}-{sfx}");
        let dir = PathBuf::from(format!("/run/l2sm-{prefix}-{sfx}"));
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("ip").args(["netns", "add", &ns]));
        let mut o = NetnsOvs {
            ns,
            dir,
            pids: Vec::new(),
        };
        o.ip(&["link", "set", "lo", "up"]);
        run(Command::new("ovsdb-tool")
            .arg("create")
            .arg(o.dir.join("conf.db"))
            .arg("/usr/share/openvswitch/vswitch.ovsschema"));
        for (prog, extra) in [
            (
                "ovsdb-server",
                vec![
                    o.dir.join("conf.db").display().to_string(),
                    format!("--remote=punix:{}", o.dir.join("db.sock").display()),
                ],
            ),
            (
                "ovs-vswitchd",
                vec![format!("unix:{}", o.dir.join("db.sock").display())],
            ),
        ] {
            let file = |ext: &str| o.dir.join(format!("{prog}.{ext}")).display().to_string();
            run(Command::new("ip")
                .args(["netns", "exec", &o.ns, prog])
                .env("OVS_RUNDIR", &o.dir)
                .env("OVS_DBDIR", &o.dir)
                .env("OVS_LOGDIR", &o.dir)
                .arg(format!("--pidfile={}", file("pid")))
                .arg(format!("--unixctl={}", file("ctl")))
                .arg(format!("--log-file={}", file("log")))
                .args(["--detach", "--no-chdir"])
                .args(&extra));
            let pid: i32 = std::fs::read_to_string(file("pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            o.pids.push(pid);
        }
        o
    }

    /// `ip -n <ns> ARGS…`.
    pub fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").arg("-n").arg(&self.ns).args(args))
    }

    /// `ovs-vsctl` against this OVS.
    pub fn vsctl(&self, args: &[&str]) -> String {
        run(Command::new("ovs-vsctl")
            .arg(format!("--db=unix:{}", self.dir.join("db.sock").display()))
            .args(args))
    }
}

impl Drop for NetnsOvs {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
