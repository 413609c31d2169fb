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
        "dns",
        "ids-watch",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(verb)),
            "{verb} missing from:\n{help}"
        );
    }
}

/// `l2sm ids-watch` checks its arguments before it talks to anything: a quarantine network
/// that is the watched network is a one-line error (no Kubernetes client needed).
#[test]
fn ids_watch_refuses_bad_arguments_before_anything() {
    let out = run(&[
        "ids-watch",
        "--eve",
        "/nonexistent/eve.json",
        "--network",
        "blue",
        "--namespace",
        "team-a",
        "--quarantine-to",
        "blue",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another network"), "{stderr}");
    let out = run(&[
        "ids-watch",
        "--eve",
        "/x",
        "--network",
        "blue",
        "--namespace",
        "team-a",
        "--quarantine-to",
        "jail",
        "--burst",
        "0",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--burst"));
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

/// `l2sm dns lookup --server`: records one a line, exit codes 0 (records), 1 (NXDOMAIN or
/// NODATA), 2 (refused); an unreachable server and a bad name are one-line errors.
#[test]
fn dns_lookup_prints_records_and_says_what_kind_of_answer() {
    let port = l2sm_test_support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let c =
        l2sm_test_support::controller::ControllerProcess::start_args(&["--dns-listen", &listen]);
    assert_eq!(
        c.req("POST", "/onos/vnets/api", Some(r#"{"networkId":"blue"}"#))
            .0,
        204
    );
    let ports = r#"{"networkId":"blue","networkEndpoints":["of:00000000000000b1/1"]}"#;
    assert_eq!(c.req("POST", "/onos/vnets/api/port", Some(ports)).0, 204);
    let owner = r#"{"pod":"ns/a","attachment":"x","ips":["10.0.0.1","fd00::1"]}"#;
    let path = "/api/v1/switches/of:00000000000000b1/ports/1/owner";
    assert_eq!(c.req("PUT", path, Some(owner)).0, 204);
    let lookup = |args: &[&str]| {
        let mut all = vec!["dns", "lookup", "--server", &listen];
        all.extend_from_slice(args);
        let out = run(&all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        lookup(&["a.blue.l2sm"]),
        (Some(0), "a.blue.l2sm. 5 A 10.0.0.1\n".into(), String::new())
    );
    assert_eq!(
        lookup(&["--type", "aaaa", "A.Blue.L2sm."]).1,
        "a.blue.l2sm. 5 AAAA fd00::1\n"
    );
    assert_eq!(
        lookup(&["--type", "PTR", "10.0.0.1"]).1,
        "1.0.0.10.in-addr.arpa. 5 PTR a.blue.l2sm.\n"
    );
    let (code, out, err) = lookup(&["b.blue.l2sm"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("NXDOMAIN"), "{err}");
    let (code, _, err) = lookup(&["blue.l2sm"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("NODATA"), "{err}");
    let (code, _, err) = lookup(&["example.com"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("refused"), "{err}");
    let (code, _, err) = lookup(&["a..b"]);
    assert_ne!(code, Some(0));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    drop(c);
    // Nothing listens any more: a timeout, one line.
    let (code, _, err) = lookup(&["--timeout", "1", "a.blue.l2sm"]);
    assert_ne!(code, Some(0));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
