//! Starting and stopping the lab's processes. A child spawned from a thread that joined a
//! namespace is born in it, so no `unsafe` pre-exec hook is needed.

use anyhow::{anyhow, bail, Context as _};
use l2sm_netns::Netns;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Spawns `cmd` inside `ns`.
pub fn spawn_in(ns: &Netns, mut cmd: Command) -> anyhow::Result<Child> {
    let program = format!("{:?}", cmd.get_program());
    l2sm_netns::run_in_netns(ns, move || cmd.spawn())?
        .with_context(|| format!("cannot start {program}"))
}

/// Runs an OVS daemon with `--detach` inside `ns` and returns the daemon's pid (from its pidfile).
pub fn start_ovs_daemon(ns: &Netns, mut cmd: Command, pidfile: &Path) -> anyhow::Result<i32> {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let program = format!("{:?}", cmd.get_program());
    let child = spawn_in(ns, cmd)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} failed to start: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    read_pidfile(pidfile)
}

/// Reads a pidfile.
pub fn read_pidfile(path: &Path) -> anyhow::Result<i32> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| anyhow!("bad pidfile {}", path.display()))
}

/// Whether `pid` is alive and its command line mentions `expect` (guards against pid reuse).
pub fn alive(pid: i32, expect: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let text = String::from_utf8_lossy(&cmdline);
            !text.is_empty() && text.contains(expect) && !is_zombie(pid)
        }
        Err(_) => false,
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Stops a process we started: SIGTERM, then SIGKILL after `grace`.
pub fn stop(pid: i32, expect: &str, grace: Duration) {
    if !alive(pid, expect) {
        return;
    }
    let pid_t = Pid::from_raw(pid);
    let _ = kill(pid_t, Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < grace {
        if !alive(pid, expect) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(pid_t, Signal::SIGKILL);
    let start = Instant::now();
    while alive(pid, expect) && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
}
