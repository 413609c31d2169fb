//! Starting and stopping the lab's processes. A child spawned from a thread that joined a
//! namespace (network, or mount for [`spawn_in_with_etc`]) is born in it, so no `unsafe`
//! pre-exec hook is needed.

use anyhow::{anyhow, bail, Context as _};
use l2sm_netns::Netns;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Spawns `cmd` inside `ns`.
pub fn spawn_in(ns: &Netns, mut cmd: Command) -> anyhow::Result<Child> {
    let program = format!("{:?}", cmd.get_program());
    l2sm_netns::run_in_netns(ns, move || cmd.spawn())?
        .with_context(|| format!("cannot start {program}"))
}

/// Spawns `cmd` inside `ns` with the files of `etc` (a `/etc/netns/<name>` directory) mounted
/// over their namespaces in `/etc`, as `ip netns exec` does: the helper thread gets a mount
/// namespace of its own (mounts propagate no further: `/` becomes a slave first), binds each
/// file, and the child is born there.
pub fn spawn_in_with_etc(ns: &Netns, mut cmd: Command, etc: PathBuf) -> anyhow::Result<Child> {
    use nix::mount::{mount, MsFlags};
    let program = format!("{:?}", cmd.get_program());
    l2sm_netns::run_in_netns(ns, move || -> anyhow::Result<Child> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .context("cannot get a mount namespace")?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .context("cannot make / a slave mount")?;
        for entry in
            std::fs::read_dir(&etc).with_context(|| format!("cannot read {}", etc.display()))?
        {
            let entry = entry?;
            let target = Path::new("/etc").join(entry.file_name());
            if !target.exists() {
                continue;
            }
            mount(
                Some(&entry.path()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| {
                format!(
                    "cannot bind {} over {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        }
        Ok(cmd.spawn()?)
    })?
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
