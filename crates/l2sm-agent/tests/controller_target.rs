//! Parsing and formatting of `--controller` targets, the choice among resolved addresses and
//! what a failed resolution keeps (no root, no network).

use l2sm_agent::target::{
    choose, format_target, ControllerTarget, ControllerTargets, Refresh, TargetError,
    DEFAULT_OPENFLOW_PORT,
};
use std::net::IpAddr;
use std::time::Duration;

fn parse(s: &str) -> Result<ControllerTarget, TargetError> {
    s.parse()
}

fn named(scheme: &str, host: &str, port: u16) -> ControllerTarget {
    ControllerTarget::Named {
        scheme: scheme.into(),
        host: host.into(),
        port,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn ip_literals_and_local_forms_go_to_ovs_unchanged() {
    for t in [
        "tcp:10.0.0.1:6653",
        "tcp:10.0.0.1",
        "ssl:192.168.1.2:6654",
        "tcp:[fd00::1]:6653",
        "tcp:[::1]",
        "ssl:[2001:db8::2]:6633",
        "unix:/var/run/ctl.sock",
        "punix:/var/run/br.mgmt",
        "ptcp:6653",
        "ptcp:6653:127.0.0.1",
        "pssl:6653",
    ] {
        assert_eq!(parse(t).unwrap(), ControllerTarget::Fixed(t.into()), "{t}");
    }
}

#[test]
fn host_names_are_resolved_with_the_port_or_the_openflow_default() {
    assert_eq!(
        parse("tcp:l2sm-controller-service.l2sm-system.svc:6633").unwrap(),
        named("tcp", "l2sm-controller-service.l2sm-system.svc", 6633)
    );
    assert_eq!(
        parse("ssl:ctl.example.org.:6653").unwrap(),
        named("ssl", "ctl.example.org.", 6653)
    );
    assert_eq!(
        parse("tcp:controller").unwrap(),
        named("tcp", "controller", DEFAULT_OPENFLOW_PORT)
    );
    assert_eq!(DEFAULT_OPENFLOW_PORT, 6653);
    assert_eq!(
        parse("tcp:my_ctl-1:1").unwrap(),
        named("tcp", "my_ctl-1", 1)
    );
}

#[test]
fn garbage_targets_are_refused_with_a_clear_reason() {
    for (t, reason) in [
        ("", "expected SCHEME:ADDRESS"),
        ("10.0.0.1:6653", "unknown scheme \"10.0.0.1\""),
        ("controller", "expected SCHEME:ADDRESS"),
        ("http://ctl:8181", "unknown scheme \"http\""),
        ("TCP:10.0.0.1:6653", "unknown scheme \"TCP\""),
        ("tcp:", "missing host"),
        ("tcp::6653", "missing host"),
        ("tcp:ctl:", "\"\" is not a port number"),
        ("tcp:ctl:0", "\"0\" is not a port number"),
        ("tcp:ctl:65536", "\"65536\" is not a port number"),
        ("tcp:ctl:66x", "\"66x\" is not a port number"),
        ("tcp:ctl:6653:1", "\"6653:1\" is not a port number"),
        ("tcp:fd00::1", "needs brackets"),
        ("tcp:::1", "needs brackets"),
        ("tcp:[fd00::1", "unbalanced"),
        ("tcp:[fd00::zz]:6653", "is not an IPv6 address"),
        ("tcp:[10.0.0.1]:6653", "is not an IPv6 address"),
        ("tcp:[fd00::1]6653", "unexpected \"6653\""),
        ("tcp:10.0.0.256:6653", "not a valid IPv4 address"),
        ("tcp:ctl..svc:6653", "neither an IP address nor a host name"),
        ("tcp:-ctl:6653", "neither an IP address nor a host name"),
        ("tcp:ctl/x:6653", "neither an IP address nor a host name"),
        ("tcp:c tl:6653", "neither an IP address nor a host name"),
        ("unix:", "missing socket path"),
    ] {
        let err = parse(t).expect_err(t).to_string();
        assert!(
            err.contains(reason) && err.contains(&format!("{t:?}")),
            "{t:?}: error {err:?} lacks {reason:?} or the value"
        );
    }
    let long = format!("tcp:{}:6653", vec!["a".repeat(63); 5].join("."));
    assert!(parse(&long)
        .unwrap_err()
        .to_string()
        .contains("longer than 253"));
    let label = format!("tcp:{}.svc:6653", "a".repeat(64));
    assert!(parse(&label).is_err());
}

#[test]
fn resolved_targets_are_spelled_the_way_ovs_reads_them() {
    assert_eq!(
        format_target("tcp", ip("10.96.0.15"), 6633),
        "tcp:10.96.0.15:6633"
    );
    assert_eq!(
        format_target("ssl", ip("fd00:10:96::f"), 6653),
        "ssl:[fd00:10:96::f]:6653"
    );
    // What is written parses back as a literal: a resolved target is never resolved again.
    for t in ["tcp:10.96.0.15:6633", "ssl:[fd00:10:96::f]:6653"] {
        assert_eq!(parse(t).unwrap(), ControllerTarget::Fixed(t.into()));
    }
}

#[test]
fn the_previous_address_is_kept_while_the_name_still_has_it() {
    let a = ip("10.0.0.1");
    let b = ip("10.0.0.2");
    assert_eq!(choose(&[a, b], None), Some(a));
    assert_eq!(
        choose(&[a, b], Some(b)),
        Some(b),
        "no reconnect for a reorder"
    );
    assert_eq!(choose(&[a], Some(b)), Some(a), "moved");
    assert_eq!(choose(&[], Some(b)), None);
}

#[test]
fn a_failed_resolution_keeps_the_last_address_and_a_change_replaces_it() {
    let mut t = ControllerTargets::parse(&[
        "tcp:10.0.0.9:6653".to_string(),
        "tcp:l2sm-controller-service.l2sm-system.svc:6633".to_string(),
    ])
    .unwrap();
    assert!(t.has_names());
    assert_eq!(
        t.current(),
        None,
        "no controller list before the name resolved"
    );

    let fail = || TargetError::NoAddress { host: "x".into() };
    let mut r = Refresh::default();
    t.record(1, Err(fail()), &mut r);
    assert_eq!(t.current(), None);
    assert_eq!(r.failed.len(), 1);

    let mut r = Refresh::default();
    t.record(1, Ok(vec![ip("10.96.0.15")]), &mut r);
    let first = vec![
        "tcp:10.0.0.9:6653".to_string(),
        "tcp:10.96.0.15:6633".to_string(),
    ];
    assert_eq!(t.current(), Some(first.clone()));
    assert_eq!(
        r.changed,
        vec![(
            "l2sm-controller-service.l2sm-system.svc".to_string(),
            None,
            "tcp:10.96.0.15:6633".to_string()
        )]
    );

    // Same answer: nothing changed, so nothing is written.
    let mut r = Refresh::default();
    t.record(1, Ok(vec![ip("10.96.0.15")]), &mut r);
    assert!(r.changed.is_empty() && r.failed.is_empty());

    // The resolver fails: the last good address stays.
    let mut r = Refresh::default();
    t.record(1, Err(fail()), &mut r);
    assert_eq!(t.current(), Some(first));
    assert!(r.changed.is_empty());
    assert_eq!(r.failed.len(), 1);

    // The Service was recreated with another address (IPv6 this time).
    let mut r = Refresh::default();
    t.record(1, Ok(vec![ip("fd00::15")]), &mut r);
    assert_eq!(
        t.current(),
        Some(vec![
            "tcp:10.0.0.9:6653".to_string(),
            "tcp:[fd00::15]:6633".to_string()
        ])
    );
    assert_eq!(
        r.changed[0].1.as_deref(),
        Some("tcp:10.96.0.15:6633"),
        "the old target is reported"
    );
}

#[test]
fn targets_without_names_need_no_resolution() {
    let t = ControllerTargets::parse(&["tcp:10.0.0.9:6653".into(), "punix:/run/x".into()]).unwrap();
    assert!(!t.has_names());
    assert_eq!(
        t.current(),
        Some(vec!["tcp:10.0.0.9:6653".into(), "punix:/run/x".into()])
    );
    let err = ControllerTargets::parse(&["tcp:10.0.0.9:6653".into(), "tcp:a b".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"tcp:a b\""), "{err}");
}

#[tokio::test]
async fn names_resolve_through_the_system_resolver() {
    // /etc/hosts is part of the system resolver: `localhost` needs no DNS server.
    let mut t = ControllerTargets::parse(&["tcp:localhost:6653".into()]).unwrap();
    let r = t.refresh(Duration::from_secs(5)).await;
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let current = t.current().unwrap();
    assert!(
        current == ["tcp:127.0.0.1:6653"] || current == ["tcp:[::1]:6653"],
        "{current:?}"
    );
}
