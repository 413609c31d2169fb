//! Named namespaces: create, list, delete, open, inodes, pids, helper threads, sysctls.
//! Needs root; fails (never skips) without it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{require_root, unique_prefix, wait_until, ChildGuard, TestNs};
use l2sm_netns::{
    create_named, delete_named, get_sysctl, list_named, netns_inode, pids_in_netns, run_in_netns,
    set_sysctl, with_netlink, Error, Netns, NETNS_DIR,
};

fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let want = path.to_str().expect("utf-8 path");
    // Field 5 of each mountinfo line is the mount point.
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|mp| mp == want))
}

fn thread_netns_inode() -> u64 {
    netns_inode(Path::new("/proc/thread-self/ns/net")).expect("own netns inode")
}

#[test]
fn create_list_delete_named() {
    require_root();
    let prefix = unique_prefix();
    let name = format!("{prefix}-life");
    let path = Path::new(NETNS_DIR).join(&name);

    let ns = {
        let t = TestNs::new(&prefix, "life");
        assert!(path.exists(), "{path:?} missing after create");
        assert!(
            is_mounted(&path),
            "{path:?} is not a mount point after create"
        );
        assert!(
            list_named().unwrap().contains(&name),
            "list_named lacks {name}"
        );
        // `ip` sees it too, and lo is up inside.
        let ip_list = common::run("ip", &["netns", "list"]);
        assert!(String::from_utf8_lossy(&ip_list.stdout).contains(&name));
        let lo = common::ip_n(&name, &["-o", "link", "show", "lo"]);
        assert!(lo.contains("UP"), "lo not up: {lo}");

        // A second create of the same name is AlreadyExists and leaves the first intact.
        match create_named(&name) {
            Err(Error::AlreadyExists { ns, .. }) => assert_eq!(ns, name),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert!(is_mounted(&path), "second create damaged the first");
        let ns = t.ns.clone();
        assert!(delete_named(&name).unwrap(), "first delete");
        ns
    };
    assert!(!path.exists(), "{path:?} left behind");
    assert!(!is_mounted(&path), "mount of {path:?} left behind");
    assert!(!list_named().unwrap().contains(&name));
    assert!(!delete_named(&name).unwrap(), "second delete");

    // An open handle keeps the namespace usable after its name is gone.
    let names = with_netlink(&ns, |nl| nl.link_names()).unwrap();
    assert_eq!(names, vec!["lo".to_owned()]);
}

#[test]
fn bad_names_and_files_are_rejected() {
    require_root();
    for bad in ["", ".", "..", "a/b"] {
        assert!(
            matches!(create_named(bad), Err(Error::InvalidName { .. })),
            "create_named({bad:?}) accepted"
        );
        assert!(matches!(delete_named(bad), Err(Error::InvalidName { .. })));
    }
    let prefix = unique_prefix();
    match Netns::open_named(&format!("{prefix}-absent")) {
        Err(e) => assert!(e.is_not_found(), "expected NotFound, got {e:?}"),
        Ok(_) => panic!("opened a namespace that does not exist"),
    }
    // A plain file (like a /run/netns entry whose mount is gone) is not a namespace.
    let plain = std::env::temp_dir().join(format!("{prefix}-plain"));
    std::fs::write(&plain, b"").unwrap();
    let opened = Netns::open(&plain);
    let inode = netns_inode(&plain);
    std::fs::remove_file(&plain).unwrap();
    assert!(matches!(opened, Err(Error::NotANetns { .. })), "{opened:?}");
    assert!(matches!(inode, Err(Error::NotANetns { .. })), "{inode:?}");
}

#[test]
fn run_in_netns_uses_a_separate_thread() {
    let prefix = unique_prefix();
    let t = TestNs::new(&prefix, "thr");
    let before = thread_netns_inode();
    let want = netns_inode(t.ns.path()).unwrap();
    assert_eq!(t.ns.inode().unwrap(), want);
    assert_ne!(before, want);

    let inside = run_in_netns(&t.ns, thread_netns_inode).unwrap();
    assert_eq!(inside, want, "helper thread is not in the namespace");
    assert_eq!(
        thread_netns_inode(),
        before,
        "caller thread changed namespace"
    );

    // A socket opened inside stays bound to the namespace after the thread ends.
    let listener = run_in_netns(&t.ns, || std::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = common::netns_exec(&t.name, &["ss", "-Hltn", &format!("sport = :{port}")]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&port.to_string()),
        "listener not visible inside the namespace"
    );

    // Panics inside become errors, and the caller keeps running.
    let r = run_in_netns(&t.ns, || panic!("deliberate"));
    assert!(matches!(r, Err(Error::Panicked { .. })), "{r:?}");
}

#[test]
fn pids_in_netns_finds_processes() {
    let prefix = unique_prefix();
    let t = TestNs::new(&prefix, "pids");
    assert_eq!(pids_in_netns(&t.ns).unwrap(), Vec::<i32>::new());
    // `ip netns exec` setns()es and then execs, so the child's pid is the sleep's pid.
    let child = ChildGuard(
        Command::new("ip")
            .args(["netns", "exec", &t.name, "sleep", "5"])
            .spawn()
            .expect("spawn ip netns exec sleep"),
    );
    let pid = child.0.id() as i32;
    let found = wait_until(Duration::from_secs(3), || {
        pids_in_netns(&t.ns).unwrap().contains(&pid)
    });
    assert!(found, "pid {pid} not found in {}", t.name);
    let by_proc = Netns::open(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(by_proc.inode().unwrap(), t.ns.inode().unwrap());
    assert!(!pids_in_netns(&t.ns)
        .unwrap()
        .contains(&(std::process::id() as i32)));
}

#[test]
fn sysctls_are_per_namespace() {
    let prefix = unique_prefix();
    let t = TestNs::new(&prefix, "sysctl");
    let root_before = std::fs::read_to_string("/proc/sys/net/ipv4/conf/lo/arp_ignore").unwrap();
    set_sysctl(&t.ns, "net/ipv4/conf/lo/arp_ignore", "8").unwrap();
    assert_eq!(
        get_sysctl(&t.ns, "net/ipv4/conf/lo/arp_ignore").unwrap(),
        "8"
    );
    assert_eq!(get_sysctl(&t.ns, "ipv4/conf/lo/arp_ignore").unwrap(), "8");
    let seen = common::netns_exec(&t.name, &["cat", "/proc/sys/net/ipv4/conf/lo/arp_ignore"]);
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "8");
    let root_after = std::fs::read_to_string("/proc/sys/net/ipv4/conf/lo/arp_ignore").unwrap();
    assert_eq!(root_before, root_after, "root namespace sysctl changed");

    let missing = set_sysctl(&t.ns, "net/ipv4/conf/nosuch0/arp_ignore", "1");
    assert!(
        missing.as_ref().is_err_and(Error::is_not_found),
        "{missing:?}"
    );
    assert!(matches!(
        set_sysctl(&t.ns, "net/../kernel/hostname", "x"),
        Err(Error::InvalidName { .. })
    ));
}

/// Callers are tokio tasks: the helpers must work from `spawn_blocking` on a multi-thread
/// runtime (no nested-runtime panic) and leave the worker threads in the root namespace.
#[test]
fn works_from_a_tokio_runtime() {
    let prefix = unique_prefix();
    let t = TestNs::new(&prefix, "tokio");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ns = t.ns.clone();
    let root = thread_netns_inode();
    let (links, worker_inode) = rt.block_on(async move {
        let links = tokio::task::spawn_blocking(move || with_netlink(&ns, |nl| nl.link_names()))
            .await
            .unwrap()
            .unwrap();
        let worker = tokio::spawn(async { thread_netns_inode() }).await.unwrap();
        (links, worker)
    });
    assert_eq!(links, vec!["lo".to_owned()]);
    assert_eq!(worker_inode, root, "a tokio worker changed namespace");
}
