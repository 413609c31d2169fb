//! The `l2sm` command itself: its verbs, its version, and one-line errors for what it cannot
//! do. (Each component's behaviour is tested in its own crate; the lab's end-to-end tests in
//! `l2sm-lab` drive this same binary.)

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_l2sm");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("L2SM_CONTROLLER_URL")
        .env_remove("L2SM_LAB")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run l2sm")
}

#[test]
fn version_and_verbs() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with(&format!("l2sm {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let help = String::from_utf8_lossy(&run(&["--help"]).stdout).into_owned();
    for verb in [
        "controller",
        "agent",
        "lab",
        "network",
        "attach",
        "detach",
        "operator",
        "topology",
        "install-cni",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(verb)),
            "{verb} missing from:\n{help}"
        );
    }
}

#[test]
fn an_unknown_verb_is_refused() {
    let out = run(&["frobnicate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

#[test]
fn an_unreachable_controller_is_a_one_line_error() {
    let port = l2sm_test_support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = run(&["--controller-url", &url, "network", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("unreachable"),
        "{stderr}"
    );
}

#[test]
fn a_controller_url_with_a_path_is_refused() {
    let out = run(&[
        "--controller-url",
        "http://127.0.0.1:1/api",
        "network",
        "list",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without a path"), "{stderr}");
}
