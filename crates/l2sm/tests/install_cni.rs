//! `l2sm install-cni`: installs the plugin atomically as DIR/l2sm, also over a copy that is
//! running, and leaves nothing behind when it fails.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_l2sm");

fn install_cni(l2sm: &Path, args: &[&Path]) -> Output {
    let mut cmd = Command::new(l2sm);
    cmd.arg("install-cni");
    for (i, a) in args.iter().enumerate() {
        cmd.arg(if i == 0 { "--dir" } else { "--from" }).arg(a);
    }
    cmd.stdin(Stdio::null()).output().expect("cannot run l2sm")
}

/// A scratch directory on the target directory's file system (hard links to binaries work).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("l2sm-install-cni-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// The real plugin (cargo's build of it; the workspace build makes it).
fn plugin() -> PathBuf {
    l2sm_test_support::bin::path("l2sm-cni")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs an installed plugin's VERSION command.
fn version(plugin: &Path) -> serde_json::Value {
    let out = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn installs_the_plugin_beside_l2sm_into_a_new_directory() {
    let tmp = scratch();
    // An image's layout: l2sm and l2sm-cni side by side.
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::hard_link(BIN, bin.join("l2sm")).unwrap();
    std::fs::copy(plugin(), bin.join("l2sm-cni")).unwrap();
    let dir = tmp.path().join("host/opt/cni/bin");
    let out = install_cni(&bin.join("l2sm"), &[&dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    let installed = dir.join("l2sm");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(plugin()).unwrap()
    );
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755, "mode {mode:o}");
    assert_eq!(entries(&dir), ["l2sm"]);
    assert_eq!(version(&installed)["cniVersion"], "1.1.0");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&installed.display().to_string()));
}

#[test]
fn reinstalls_over_a_copy_that_is_running() {
    let tmp = scratch();
    let dir = tmp.path().join("cni");
    let out = install_cni(Path::new(BIN), &[&dir, &plugin()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let installed = dir.join("l2sm");
    // The old plugin is being executed (it waits for its configuration on stdin) ...
    let mut running = Command::new(&installed)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // ... while a new one, different bytes, is installed (writing into the running file
    // would fail with ETXTBSY).
    let newer = tmp.path().join("l2sm-cni-v2");
    let mut bytes = std::fs::read(plugin()).unwrap();
    bytes.extend_from_slice(b"\0v2");
    std::fs::write(&newer, &bytes).unwrap();
    let out = install_cni(Path::new(BIN), &[&dir, &newer]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&installed).unwrap(), bytes);
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(entries(&dir), ["l2sm"]);
    // The running copy finishes its call undisturbed; the new one runs too.
    running
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"1.0.0"}"#)
        .unwrap();
    let old = running.wait_with_output().unwrap();
    assert!(old.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&old.stdout).unwrap();
    assert_eq!(answer["cniVersion"], "1.0.0");
    assert_eq!(version(&installed)["cniVersion"], "1.1.0");
}

#[test]
fn a_missing_or_bad_source_is_refused_and_creates_nothing() {
    let tmp = scratch();
    let dir = tmp.path().join("new/cni");
    let missing = tmp.path().join("no-such-plugin");
    let out = install_cni(Path::new(BIN), &[&dir, &missing]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.contains("no-such-plugin"),
        "{err}"
    );
    assert!(!tmp.path().join("new").exists(), "a directory was created");

    let text = tmp.path().join("not-a-binary");
    std::fs::write(&text, "#!/bin/sh\necho hi\n").unwrap();
    let out = install_cni(Path::new(BIN), &[&dir, &text]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not an executable"),
        "{}",
        stderr(&out)
    );
    let out = install_cni(Path::new(BIN), &[&dir, tmp.path()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(entries(tmp.path()), ["not-a-binary"]);
}

#[test]
fn a_failed_install_leaves_no_temporary_file_and_the_old_plugin_in_place() {
    let tmp = scratch();
    // The target name is taken by a non-empty directory: the final rename fails after the
    // temporary file is written.
    let dir = tmp.path().join("cni");
    std::fs::create_dir_all(dir.join("l2sm/keep")).unwrap();
    let out = install_cni(Path::new(BIN), &[&dir, &plugin()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot install") && err.contains("rename"),
        "{err}"
    );
    assert_eq!(entries(&dir), ["l2sm"], "left behind in {}", dir.display());
    assert_eq!(entries(&dir.join("l2sm")), ["keep"]);

    // A directory path through a regular file cannot be created: clear error, nothing made.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = install_cni(Path::new(BIN), &[&file.join("cni"), &plugin()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot create the CNI directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn the_directory_is_required() {
    let out = Command::new(BIN)
        .args(["install-cni"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--dir"), "{}", stderr(&out));
}
