//! Named network namespaces (`/run/netns/NAME`, compatible with `ip netns`) and the
//! dedicated-thread helpers that enter them.

use std::any::Any;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::sys::statfs::NSFS_MAGIC;

use crate::{Error, Netlink, Result};

/// Where named namespaces live; the same directory `ip netns` uses.
pub const NETNS_DIR: &str = "/run/netns";

/// Longest file name Linux accepts (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// An open network namespace.
///
/// Holding the fd keeps the namespace alive even if its `/run/netns` entry is deleted, and lets
/// links be moved into it (`IFLA_NET_NS_FD`) without a path lookup. Clones share one fd.
#[derive(Clone, Debug)]
pub struct Netns {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Name used in error messages: NAME for `/run/netns/NAME`, else the path.
    label: String,
    fd: OwnedFd,
}

impl Netns {
    /// Opens a namespace file such as `/run/netns/NAME` or `/proc/PID/ns/net`.
    ///
    /// Fails with [`Error::NotANetns`] when the file is not an nsfs file, which catches a
    /// `/run/netns` entry whose bind mount is gone.
    pub fn open(path: impl AsRef<Path>) -> Result<Netns> {
        let path = path.as_ref().to_path_buf();
        let label = label_for(&path);
        let fd = nix::fcntl::open(&path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::from_errno(e, &label, format!("namespace file {path:?}")))?;
        let fs = nix::sys::statfs::fstatfs(&fd)
            .map_err(|e| Error::from_errno(e, &label, format!("statfs {path:?}")))?;
        if fs.filesystem_type() != NSFS_MAGIC {
            return Err(Error::NotANetns { path });
        }
        Ok(Netns {
            inner: Arc::new(Inner { path, label, fd }),
        })
    }

    /// Opens `/run/netns/NAME`.
    pub fn open_named(name: &str) -> Result<Netns> {
        validate_ns_name(name)?;
        Netns::open(named_path(name))
    }

    /// The path this namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The namespace fd, for `setns(2)` or `IFLA_NET_NS_FD`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }

    /// Short name for messages: NAME for `/run/netns/NAME`, the path otherwise.
    pub(crate) fn label(&self) -> &str {
        &self.inner.label
    }

    /// Inode of the namespace (what `/proc/PID/ns/net` of its processes resolves to).
    pub fn inode(&self) -> Result<u64> {
        let st = nix::sys::stat::fstat(self.fd())
            .map_err(|e| Error::from_errno(e, self.label(), "fstat namespace fd"))?;
        Ok(st.st_ino)
    }

    /// Joins this namespace on the calling thread. Only ever called on threads this crate spawned.
    fn enter(&self) -> Result<()> {
        nix::sched::setns(self.fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::from_errno(e, self.label(), "setns(CLONE_NEWNET)"))
    }
}

fn named_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn label_for(path: &Path) -> String {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) if dir == Path::new(NETNS_DIR) => name.to_owned(),
        _ => path.display().to_string(),
    }
}

/// Rejects names that would escape `/run/netns` or that no filesystem accepts.
fn validate_ns_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > NAME_MAX {
        "longer than 255 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.contains(['/', '\0']) {
        "contains '/' or NUL"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        kind: "netns",
        name: name.to_owned(),
        reason,
    })
}

/// Serialises the `/run/netns` mount setup between threads of this process (iproute2 has the same
/// check-then-bind sequence; two concurrent binds would stack two mounts).
static NETNS_DIR_LOCK: Mutex<()> = Mutex::new(());

/// Makes `/run/netns` exist and be a shared mount, as `ip netns add` does, so namespace mounts
/// made here propagate to other mount namespaces (and `ip netns exec` sees them).
fn prepare_netns_dir() -> Result<()> {
    let _guard = NETNS_DIR_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_DIR)
        .map_err(|e| Error::from_io(e, NETNS_DIR, "create directory"))?;
    let make_shared = || {
        nix::mount::mount(
            None::<&str>,
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => Ok(()),
        // EINVAL: not a mount point yet. Bind it onto itself, then retry once.
        Err(Errno::EINVAL) => {
            nix::mount::mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::from_errno(e, NETNS_DIR, "bind-mount onto itself"))?;
            make_shared().map_err(|e| Error::from_errno(e, NETNS_DIR, "make mount shared"))
        }
        Err(e) => Err(Error::from_errno(e, NETNS_DIR, "make mount shared")),
    }
}

/// Creates the named namespace `/run/netns/NAME`, like `ip netns add NAME`, with `lo` up.
///
/// The new namespace is made by `unshare(CLONE_NEWNET)` on a short-lived thread and pinned by
/// bind-mounting `/proc/thread-self/ns/net` (not `/proc/self/...`, which is the main thread's)
/// onto the file. Fails with [`Error::AlreadyExists`] if the name is taken; on any failure
/// nothing is left behind.
pub fn create_named(name: &str) -> Result<Netns> {
    validate_ns_name(name)?;
    prepare_netns_dir()?;
    let path = named_path(name);
    let file = nix::fcntl::open(
        &path,
        OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::from_errno(e, name, format!("namespace file {path:?}")))?;
    drop(file);

    let label = name.to_owned();
    let target = path.clone();
    let made = on_helper_thread(name, move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::from_errno(e, &label, "unshare(CLONE_NEWNET)"))?;
        Netlink::on_current_thread(&label)?.set_up("lo")?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::from_errno(e, &label, format!("bind-mount onto {target:?}")))
    });
    if let Err(e) = made {
        // The mount is the last step, so only the empty file can be left.
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Netns::open(&path).inspect_err(|_| {
        let _ = delete_named(name);
    })
}

/// Deletes `/run/netns/NAME`, like `ip netns del NAME`: lazy unmount, then unlink.
///
/// Returns `Ok(false)` if there was no such entry. The namespace itself lives on while processes
/// or open [`Netns`] handles still use it.
pub fn delete_named(name: &str) -> Result<bool> {
    validate_ns_name(name)?;
    let path = named_path(name);
    match fs::symlink_metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::from_io(e, name, format!("stat {path:?}"))),
    }
    match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a leftover file); still remove it.
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(Error::from_errno(e, name, format!("umount {path:?}"))),
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::from_io(e, name, format!("remove {path:?}"))),
    }
}

/// Names of the entries under `/run/netns`, sorted. Empty if the directory does not exist.
pub fn list_named() -> Result<Vec<String>> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(it) => it,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::from_io(e, NETNS_DIR, "read directory")),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::from_io(e, NETNS_DIR, "read directory"))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Inode of a namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`), to compare namespaces.
///
/// Fails with [`Error::NotANetns`] for a file that is not on nsfs: a `/run/netns` entry without
/// its mount would otherwise report the inode of the empty tmpfs file.
pub fn netns_inode(path: &Path) -> Result<u64> {
    let label = label_for(path);
    let fs = nix::sys::statfs::statfs(path)
        .map_err(|e| Error::from_errno(e, &label, format!("statfs {path:?}")))?;
    if fs.filesystem_type() != NSFS_MAGIC {
        return Err(Error::NotANetns {
            path: path.to_path_buf(),
        });
    }
    let md = fs::metadata(path).map_err(|e| Error::from_io(e, &label, format!("stat {path:?}")))?;
    Ok(md.ino())
}

/// Pids of the processes whose network namespace is `ns`, sorted.
///
/// Scans `/proc/*/ns/net` (thread-group leaders only, so a single thread that joined `ns`, such
/// as this crate's helpers, is not reported). Processes that exit during the scan or cannot be
/// inspected are skipped.
pub fn pids_in_netns(ns: &Netns) -> Result<Vec<i32>> {
    let st = nix::sys::stat::fstat(ns.fd())
        .map_err(|e| Error::from_errno(e, ns.label(), "fstat namespace fd"))?;
    let (dev, ino) = (st.st_dev, st.st_ino);
    let entries = fs::read_dir("/proc").map_err(|e| Error::from_io(e, ns.label(), "read /proc"))?;
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let mut p = entry.path();
        p.push("ns/net");
        if let Ok(md) = fs::metadata(&p) {
            if md.dev() == dev && md.ino() == ino {
                pids.push(pid);
            }
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Runs `f` on a new OS thread that has joined `ns`; the thread ends when `f` returns.
///
/// `setns(2)` changes only the calling thread, so doing it on a caller's thread (maybe a tokio
/// worker) would leak the namespace into unrelated work, and a restore step could be skipped by
/// a panic or early return. A throwaway thread has neither problem. Sockets opened inside `f`
/// stay bound to `ns` and may be returned. From async code, call this inside `spawn_blocking`.
pub fn run_in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    run_in_netns_with(ns, move || Ok(f()))
}

/// [`run_in_netns`] for closures that return this crate's `Result`.
pub(crate) fn run_in_netns_with<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = ns.clone();
    let label = ns.label().to_owned();
    on_helper_thread(&label, move || {
        ns.enter()?;
        f()
    })
}

/// Spawns the short-lived helper thread and turns a panic into [`Error::Panicked`].
fn on_helper_thread<T: Send + 'static>(
    label: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let handle = std::thread::Builder::new()
        .name("l2sm-netns".into())
        .spawn(f)
        .map_err(|e| Error::from_io(e, label, "spawn helper thread"))?;
    handle.join().unwrap_or_else(|payload| {
        Err(Error::Panicked {
            ns: label.to_owned(),
            message: panic_message(payload.as_ref()),
        })
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Resolves a sysctl key to its `/proc/sys` path, refusing anything outside `/proc/sys/net`.
///
/// Both `"net/ipv4/ip_forward"` (relative to `/proc/sys`) and `"ipv4/ip_forward"` (relative to
/// `/proc/sys/net`) are accepted; there is no `/proc/sys/net/net`, so the two never clash. The
/// dotted `sysctl(8)` form is not accepted, because interface names may contain dots.
fn sysctl_path(key: &str) -> Result<String> {
    let rel = key.strip_prefix("net/").unwrap_or(key);
    let bad = rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || rel.contains('\0');
    if bad {
        return Err(Error::InvalidName {
            kind: "sysctl",
            name: key.to_owned(),
            reason: "must be a relative path under /proc/sys/net without empty, '.' or '..' parts",
        });
    }
    Ok(format!("/proc/sys/net/{rel}"))
}

/// Writes a sysctl under `/proc/sys/net` as seen from `ns`, e.g.
/// `set_sysctl(&ns, "net/ipv4/conf/eth0/arp_ignore", "8")`.
///
/// `/proc/sys/net` shows the namespace of the thread that opens the file, so the write happens
/// on a helper thread inside `ns`. A key that does not exist there is [`Error::NotFound`].
pub fn set_sysctl(ns: &Netns, key: &str, value: &str) -> Result<()> {
    let path = sysctl_path(key)?;
    let value = value.to_owned();
    let label = ns.label().to_owned();
    run_in_netns_with(ns, move || {
        fs::write(&path, value.as_bytes())
            .map_err(|e| Error::from_io(e, &label, format!("sysctl {path:?}")))
    })
}

/// Reads a sysctl under `/proc/sys/net` as seen from `ns` (same keys as [`set_sysctl`]),
/// without the trailing newline.
pub fn get_sysctl(ns: &Netns, key: &str) -> Result<String> {
    let path = sysctl_path(key)?;
    let label = ns.label().to_owned();
    run_in_netns_with(ns, move || {
        fs::read_to_string(&path)
            .map(|s| s.trim_end_matches('\n').to_owned())
            .map_err(|e| Error::from_io(e, &label, format!("sysctl {path:?}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_names_are_checked() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(
                matches!(validate_ns_name(bad), Err(Error::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(validate_ns_name(&"x".repeat(256)).is_err());
        validate_ns_name("l2s-t1-node1").unwrap();
    }

    #[test]
    fn sysctl_keys_are_checked() {
        for bad in [
            "",
            "net/",
            "/ipv4/ip_forward",
            "ipv4//x",
            "../kernel/x",
            "net/../kernel/x",
            "ipv4/./x",
            "ipv4/",
        ] {
            assert!(sysctl_path(bad).is_err(), "{bad:?} accepted");
        }
        let want = "/proc/sys/net/ipv4/conf/eth0.100/arp_ignore";
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/arp_ignore").unwrap(),
            want
        );
        assert_eq!(sysctl_path("ipv4/conf/eth0.100/arp_ignore").unwrap(), want);
    }

    #[test]
    fn labels() {
        assert_eq!(label_for(Path::new("/run/netns/abc")), "abc");
        assert_eq!(label_for(Path::new("/proc/1/ns/net")), "/proc/1/ns/net");
    }

    #[test]
    fn error_messages_name_the_object() {
        let e = Error::from_errno(Errno::EEXIST, "l2s-x-n1", "link \"net1\"");
        assert_eq!(
            e.to_string(),
            "netns \"l2s-x-n1\": link \"net1\" already exists"
        );
        assert!(e.is_already_exists());
        let e = Error::from_errno(Errno::ENODEV, "n", "link \"x\"");
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "netns \"n\": link \"x\" not found");
    }

    #[test]
    fn panics_become_errors() {
        let r: Result<()> = on_helper_thread("p", || panic!("boom {}", 1));
        match r {
            Err(Error::Panicked { message, .. }) => assert_eq!(message, "boom 1"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
