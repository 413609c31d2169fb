//! Edge mode without root: upstream's NED files parsed and validated, upstream's tunnel
//! names, port name parsing and id allocation.

use l2sm_agent::edge::config::{self, edge_tunnel_name};
use l2sm_agent::edge::{desired_tunnels, next_port_id, parse_port_name, RESERVED_PROBE_ID};
use l2sm_pipeline::ids;
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn upstream_config_json_is_read_as_the_operator_writes_it() {
    // The upstream operator's NED config.json (providerName empty, switchName computed).
    let bridge = ids::switch_name("gw-node", "idco");
    let text = format!(
        r#"{{"controllerIp":["172.18.0.2"],"controllerPort":"30663","providerName":"",
            "nodeName":"gw-node","switchName":"{bridge}","interfacesNumber":10,"extra":true}}"#
    );
    let c = config::parse_settings(text.as_bytes()).unwrap();
    assert_eq!(c.node_name, "gw-node");
    assert_eq!(c.switch_name, bridge);
    assert_eq!(c.controller_port, 30663);
    assert_eq!(c.controllers, ["172.18.0.2"]);
    // Without switchName: upstream's derivation from node and provider.
    let c = config::parse_settings(
        br#"{"controllerIp":["ctl.example"],"controllerPort":"6633","providerName":"l2sm-controller","nodeName":"l2sm-worker"}"#,
    )
    .unwrap();
    assert_eq!(
        c.switch_name, "br-d4b2a3b4",
        "upstream's documented example"
    );
    for (bad, why) in [
        (
            r#"{"controllerIp":["1.2.3.4"],"controllerPort":"6633"}"#,
            "nodeName is empty",
        ),
        (
            r#"{"controllerIp":[],"controllerPort":"6633","nodeName":"n"}"#,
            "controllerIp is empty",
        ),
        (
            r#"{"controllerIp":["1.2.3.4"],"controllerPort":"x","nodeName":"n"}"#,
            "not a port number",
        ),
        (
            r#"{"controllerIp":["1.2.3.4"],"controllerPort":"0","nodeName":"n"}"#,
            "not a port number",
        ),
        (
            r#"{"controllerIp":["a b"],"controllerPort":"1","nodeName":"n"}"#,
            "neither an address",
        ),
        (
            r#"{"controllerIp":["1.2.3.4"],"controllerPort":"1","nodeName":"n","switchName":"br-with-a-very-long-name"}"#,
            "not a valid interface name",
        ),
        (r#"{"controllerIp":"1.2.3.4"}"#, "config.json"),
        ("not json", "config.json"),
    ] {
        let e = format!("{:#}", config::parse_settings(bad.as_bytes()).unwrap_err());
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn upstream_neighbors_json_is_validated() {
    let n = config::parse_neighbors(
        br#"{"name":"gw-node","nodeIP":"172.18.0.3","neighborNodes":["172.18.0.4","172.18.0.5","172.18.0.4"]}"#,
    )
    .unwrap();
    assert_eq!(n.local, ip("172.18.0.3"));
    assert_eq!(
        n.remotes,
        [ip("172.18.0.4"), ip("172.18.0.5")],
        "duplicates dropped"
    );
    // neighborNodes omitted when empty (the operator's omitempty).
    let n = config::parse_neighbors(br#"{"name":"a","nodeIP":"fd00::1"}"#).unwrap();
    assert!(n.remotes.is_empty());
    for (bad, why) in [
        (
            r#"{"nodeIP":"gw.example","neighborNodes":[]}"#,
            "nodeIP \"gw.example\" is not an IP",
        ),
        (
            r#"{"nodeIP":"10.0.0.1","neighborNodes":["edge-b.example"]}"#,
            "\"edge-b.example\" is not an IP",
        ),
        (
            r#"{"nodeIP":"10.0.0.1","neighborNodes":["10.0.0.1"]}"#,
            "own address",
        ),
        (
            r#"{"nodeIP":"10.0.0.1","neighborNodes":["fd00::2"]}"#,
            "different address families",
        ),
        (
            r#"{"nodeIP":"10.0.0.1","neighborNodes":["224.0.0.1"]}"#,
            "not a unicast",
        ),
        (r#"{"neighborNodes":["10.0.0.2"]}"#, "neighbors.json"),
    ] {
        let e = format!("{:#}", config::parse_neighbors(bad.as_bytes()).unwrap_err());
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn tunnel_names_are_upstreams() {
    // Reference: NED VXLAN port = vxlan- + sha256(localIP + neighbourIP)[:5].
    assert_eq!(
        edge_tunnel_name(ip("10.0.0.1"), ip("10.0.0.2")),
        "vxlan-ba17f"
    );
    let set =
        config::parse_neighbors(br#"{"nodeIP":"10.0.0.1","neighborNodes":["10.0.0.2"]}"#).unwrap();
    let t = desired_tunnels(&set, &[ip("10.0.0.2"), ip("10.0.0.7")]);
    assert_eq!(
        t.len(),
        2,
        "an address both in the file and added over gRPC is one tunnel"
    );
    assert_eq!(t[0].name, "vxlan-ba17f");
    assert_eq!(t[0].local_ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(t[1].remote_ip, "10.0.0.7");
}

#[test]
fn port_names_and_ids_follow_upstream_without_the_3998_hack() {
    let dpid = ids::datapath_id("br-d4b2a3b4");
    let token = &ids::dpid_hex(dpid)[..5];
    assert_eq!(parse_port_name(dpid, &format!("ls{token}1")), Some(1));
    assert_eq!(parse_port_name(dpid, &format!("ls{token}42")), Some(42));
    for other in [
        format!("ls{token}p1999"),
        format!("ls{token}"),
        format!("ls{token}01"),
        format!("ls{token}1x"),
        "ls000001".to_string(),
        "lspeer1".to_string(),
        "vxlan-ba17f".to_string(),
    ] {
        assert_eq!(parse_port_name(dpid, &other), None, "{other}");
    }
    assert_eq!(next_port_id([]), Some(1));
    assert_eq!(
        next_port_id([1, 2, 5]),
        Some(6),
        "one above the highest, as upstream"
    );
    assert_eq!(
        next_port_id([RESERVED_PROBE_ID - 1]),
        Some(RESERVED_PROBE_ID + 1)
    );
    assert_eq!(next_port_id([ids::FIRST_TRUNK_PORT - 1]), None);
}
