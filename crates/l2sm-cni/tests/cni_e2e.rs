//! The CNI plugin `l2sm-cni` against real lab nodes, called exactly as Multus calls a delegate:
//! `CNI_*` variables, the NetworkAttachmentDefinition's configuration on stdin, run in the
//! node's network namespace. Results are checked with a validator of the spec's result format,
//! which also has to accept Debian's reference `bridge` plugin and reject broken results.
//! Needs root; fails (never skips) without it.

mod cni;

use cni::validate::{validate_error, validate_result};
use cni::{
    agent_ids, exec_plugin, l2sm_cni, links, nad, node_ns, node_view, pings, run_ok, with_prev,
    Attach, Env, VERSIONS,
};
use l2sm_test_support::lab::TestLab;
use serde_json::{json, Value};

fn ids(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The pod interface entry of a result: (index, entry).
fn pod_interface<'a>(result: &'a Value, att: &Attach) -> (usize, &'a Value) {
    result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .find(|(_, i)| i["name"] == att.ifname.as_str() && i["sandbox"] == att.netns.as_str())
        .unwrap_or_else(|| panic!("no pod interface in {result}"))
}

fn link_line(att: &Attach) -> String {
    run_ok(
        "ip",
        &[
            "-n",
            att.netns_name(),
            "-o",
            "addr",
            "show",
            "dev",
            &att.ifname,
        ],
    ) + &run_ok(
        "ip",
        &[
            "-n",
            att.netns_name(),
            "-o",
            "link",
            "show",
            "dev",
            &att.ifname,
        ],
    )
}

#[test]
fn every_version_adds_checks_and_deletes_and_pods_ping_across_nodes() {
    let lab = TestLab::up("cv", 2);
    lab.ok(&["network", "create", "blue"]);
    let baseline = (node_view(&lab, "n1"), node_view(&lab, "n2"));
    for (i, version) in VERSIONS.iter().enumerate() {
        // VERSION: the runtime probes first.
        let probe = exec_plugin(
            &cni::plugin(),
            &node_ns(&lab, "n1"),
            &[("CNI_COMMAND", "VERSION".into())],
            &json!({ "cniVersion": version }).to_string(),
        )
        .result();
        assert_eq!(probe["cniVersion"], *version);
        assert_eq!(probe["supportedVersions"], json!(VERSIONS));

        // Pod a on n1: address and MAC from the pod's request (runtimeConfig, as Multus passes).
        let a = Attach::new_pod(&lab, &format!("a{i}"));
        let mac_a = format!("02:00:00:00:0{i}:01");
        let conf_a = nad(
            version,
            &lab,
            "n1",
            "blue",
            json!({"runtimeConfig": {"ips": [format!("10.40.{i}.1/24")], "mac": mac_a}}),
        );
        let res_a = l2sm_cni(&lab, "n1", &a.env("ADD"), &conf_a).result();
        validate_result(&res_a, version).unwrap_or_else(|e| panic!("{version}: {e}\n{res_a}"));
        let (idx, itf) = pod_interface(&res_a, &a);
        assert_eq!(itf["mac"], mac_a.as_str());
        assert_eq!(res_a["ips"][0]["address"], format!("10.40.{i}.1/24"));
        assert_eq!(res_a["ips"][0]["interface"], idx);
        let host = res_a["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i.get("sandbox").is_none())
            .expect("host-side interface");
        assert!(
            links(&node_ns(&lab, "n1")).contains(&host["name"].as_str().unwrap().to_string()),
            "host interface {host} not in the node"
        );
        assert!(
            host["mac"].is_string(),
            "host interface without MAC: {host}"
        );
        let seen = link_line(&a);
        assert!(
            seen.contains(&format!("10.40.{i}.1/24"))
                && seen.contains(&mac_a)
                && seen.contains("mtu 1450"),
            "{seen}"
        );

        // Pod b on n2: static IPAM in the NAD, with a gateway, a route and DNS; MTU set.
        let b = Attach::new_pod(&lab, &format!("b{i}"));
        let conf_b = nad(
            version,
            &lab,
            "n2",
            "blue",
            json!({"mtu": 1400, "ipam": {"type": "static",
                "addresses": [{"address": format!("10.40.{i}.2/24"), "gateway": format!("10.40.{i}.1")}],
                "routes": [{"dst": "10.41.0.0/16", "gw": format!("10.40.{i}.1")}],
                "dns": {"nameservers": ["10.40.0.53"], "search": ["blue.example"]}}}),
        );
        let res_b = l2sm_cni(&lab, "n2", &b.env("ADD"), &conf_b).result();
        validate_result(&res_b, version).unwrap_or_else(|e| panic!("{version}: {e}\n{res_b}"));
        assert_eq!(res_b["ips"][0]["gateway"], format!("10.40.{i}.1"));
        assert_eq!(res_b["routes"][0]["dst"], "10.41.0.0/16");
        assert_eq!(res_b["dns"]["nameservers"], json!(["10.40.0.53"]));
        let (_, itf_b) = pod_interface(&res_b, &b);
        if *version == "1.1.0" {
            assert_eq!(itf_b["mtu"], 1400);
        }
        assert!(link_line(&b).contains("mtu 1400"));
        let routes = run_ok("ip", &["-n", b.netns_name(), "route"]);
        assert!(
            routes.contains(&format!("10.41.0.0/16 via 10.40.{i}.1")),
            "{routes}"
        );

        // CHECK with the ADD results, as the runtime does (CHECK exists since 0.4.0).
        if version.starts_with("0.3") {
            l2sm_cni(&lab, "n1", &a.env("CHECK"), &with_prev(&conf_a, &res_a))
                .fails_with(1, "0.4.0");
        } else {
            l2sm_cni(&lab, "n1", &a.env("CHECK"), &with_prev(&conf_a, &res_a)).silent();
            l2sm_cni(&lab, "n2", &b.env("CHECK"), &with_prev(&conf_b, &res_b)).silent();
        }

        assert!(
            pings(a.netns_name(), &format!("10.40.{i}.2")),
            "{version}: pod a{i} (n1) cannot ping b{i} (n2)"
        );

        if *version == "1.1.0" {
            l2sm_cni(&lab, "n1", &a.env("STATUS"), &conf_a).silent();
            let mut gc = conf_a.clone();
            gc["cni.dev/valid-attachments"] =
                json!([{"containerID": a.container_id, "ifname": "net1"}]);
            l2sm_cni(
                &lab,
                "n1",
                &[
                    ("CNI_COMMAND", "GC".into()),
                    ("CNI_PATH", "/usr/lib/cni".into()),
                ],
                &gc,
            )
            .silent();
            assert_eq!(
                agent_ids(&lab, "n1"),
                ids(&[&format!("cni/{}/net1", a.container_id)])
            );
        } else {
            l2sm_cni(&lab, "n1", &a.env("STATUS"), &conf_a).fails_with(1, "1.1.0");
            l2sm_cni(&lab, "n1", &a.env("GC"), &conf_a).fails_with(1, "1.1.0");
        }

        // DEL with prevResult (libcni passes the cached result), then once more.
        l2sm_cni(&lab, "n1", &a.env("DEL"), &with_prev(&conf_a, &res_a)).silent();
        l2sm_cni(&lab, "n2", &b.env("DEL"), &with_prev(&conf_b, &res_b)).silent();
        l2sm_cni(&lab, "n1", &a.env("DEL"), &conf_a).silent();
        assert_eq!(links(a.netns_name()), ["lo"]);
        assert_eq!(links(b.netns_name()), ["lo"]);
        assert_eq!(
            (node_view(&lab, "n1"), node_view(&lab, "n2")),
            baseline,
            "{version}: DEL left something"
        );
    }
}

#[test]
fn the_validator_accepts_debian_bridge_plugin_results() {
    cni::require_reference_plugins();
    // Not brought up: the lab only lends its name, so its `lab down` removes our namespaces.
    let lab = TestLab::new("br");
    let host_ns = format!("l2sm-{}-bh", lab.name);
    run_ok("ip", &["netns", "add", &host_ns]);
    let data = tempfile::tempdir().unwrap();
    let bridge = format!("{}br", lab.name);
    let mut checked = 0;
    for (i, version) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"].iter().enumerate() {
        let pod = Attach::new_pod(&lab, &format!("r{i}"));
        let conf = json!({
            "cniVersion": version, "name": "l2sm-test-bridge", "type": "bridge",
            "bridge": bridge, "isGateway": true,
            "ipam": {"type": "host-local", "subnet": "10.42.0.0/24",
                     "dataDir": data.path().to_str().unwrap(),
                     "routes": [{"dst": "10.43.0.0/16"}]},
        });
        let mut env = pod.env("ADD");
        env.retain(|(k, _)| *k != "CNI_PATH");
        env.push(("CNI_PATH", cni::REFERENCE_PLUGINS.into()));
        let res = exec_plugin(
            &format!("{}/bridge", cni::REFERENCE_PLUGINS),
            &host_ns,
            &env,
            &conf.to_string(),
        )
        .result();
        validate_result(&res, version).unwrap_or_else(|e| panic!("bridge {version}: {e}\n{res}"));
        assert!(
            res["ips"][0]["interface"].is_u64() && res["interfaces"].as_array().unwrap().len() == 3,
            "{res}"
        );
        checked += 1;
    }
    assert_eq!(checked, 4);
    // Its errors validate too (it does not speak 1.1.0), with or without cniVersion.
    let pod = Attach::new_pod(&lab, "rx");
    let out = exec_plugin(
        &format!("{}/bridge", cni::REFERENCE_PLUGINS),
        &host_ns,
        &pod.env("ADD"),
        &json!({"cniVersion": "1.1.0", "name": "x", "type": "bridge", "bridge": bridge})
            .to_string(),
    );
    assert_eq!(out.error().0, 1);
    // The bridge was made in our namespace, never in the host's.
    assert!(links(&host_ns).contains(&bridge));
    assert!(!run_ok("ip", &["-br", "link"]).contains(&bridge));
}

#[test]
fn the_validator_rejects_broken_results() {
    let good = |version: &str| {
        let mut ips = json!([{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 1},
                             {"address": "fd00::2/64", "interface": 1}]);
        if version.starts_with("0.") {
            ips[0]["version"] = json!("4");
            ips[1]["version"] = json!("6");
        }
        json!({"cniVersion": version,
               "interfaces": [{"name": "ls1234501", "mac": "aa:bb:cc:00:11:22"},
                              {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/x"}],
               "ips": ips,
               "routes": [{"dst": "10.1.0.0/16", "gw": "10.0.0.1"}, {"dst": "0.0.0.0/0"}],
               "dns": {"nameservers": ["10.0.0.53"], "domain": "x", "search": ["a"], "options": ["ndots:2"]}})
    };
    for v in VERSIONS {
        validate_result(&good(v), v).unwrap();
    }
    let mut v11 = good("1.1.0");
    v11["interfaces"][1]["mtu"] = json!(1450);
    v11["routes"][0]["priority"] = json!(10);
    validate_result(&v11, "1.1.0").unwrap();

    type Edit = fn(&mut Value);
    let broken: [(&str, &str, Edit); 17] = [
        ("1.0.0", "cniVersion", |r| {
            r.as_object_mut().unwrap().remove("cniVersion");
        }),
        ("1.0.0", "expected", |r| r["cniVersion"] = json!("0.4.0")),
        ("1.0.0", "unexpected key", |r| {
            r["ips"][0]["version"] = json!("4")
        }),
        ("0.4.0", "version is required", |r| {
            r["ips"][0].as_object_mut().unwrap().remove("version");
        }),
        ("0.3.1", "IPv6", |r| r["ips"][1]["version"] = json!("4")),
        ("1.0.0", "CIDR", |r| {
            r["ips"][0]["address"] = json!("10.0.0.2")
        }),
        ("1.0.0", "points past", |r| {
            r["ips"][0]["interface"] = json!(2)
        }),
        ("1.0.0", "non-negative", |r| {
            r["ips"][0]["interface"] = json!(-1)
        }),
        ("1.0.0", "family", |r| {
            r["ips"][0]["gateway"] = json!("fd00::1")
        }),
        ("1.0.0", "MAC", |r| {
            r["interfaces"][0]["mac"] = json!("aa:bb:cc:00:11")
        }),
        ("1.0.0", "interface name", |r| {
            r["interfaces"][1]["name"] = json!("a-name-that-is-too-long")
        }),
        ("1.0.0", "unexpected key", |r| {
            r["interfaces"][1]["mtu"] = json!(1450)
        }),
        ("1.0.0", "unexpected key", |r| r["extra"] = json!(1)),
        ("1.0.0", "array", |r| {
            r["interfaces"] = json!({"name": "net1"})
        }),
        ("1.0.0", "IP address", |r| {
            r["dns"]["nameservers"] = json!(["ns.example"])
        }),
        ("1.0.0", "dst", |r| r["routes"][0]["dst"] = json!("default")),
        ("1.0.0", "unexpected key", |r| {
            r["routes"][0]["table"] = json!(5)
        }),
    ];
    for (version, needle, edit) in broken {
        let mut r = good(version);
        edit(&mut r);
        let e = validate_result(&r, version).expect_err(&format!("accepted {r}"));
        assert!(e.contains(needle), "{r}: error {e:?} lacks {needle:?}");
    }
    validate_error(&json!({"cniVersion": "1.0.0", "code": 7, "msg": "bad"})).unwrap();
    for bad in [
        json!({"code": 7}),
        json!({"code": 0, "msg": "x"}),
        json!({"code": "7", "msg": "x"}),
        json!({"code": 7, "msg": ""}),
        json!({"code": 7, "msg": "x", "extra": 1}),
    ] {
        assert!(validate_error(&bad).is_err(), "accepted {bad}");
    }
}

#[test]
fn bad_input_is_refused_clearly_and_leaves_nothing_behind() {
    let lab = TestLab::up("bad", 1);
    lab.ok(&["network", "create", "blue"]);
    let pod = Attach::new_pod(&lab, "x");
    // An interface already named net1 in the pod (a veth: the kernel has no dummy module here).
    run_ok(
        "ip",
        &[
            "-n",
            pod.netns_name(),
            "link",
            "add",
            "net1",
            "type",
            "veth",
            "peer",
            "name",
            "peer1",
        ],
    );
    let busy = pod.clone();
    let mut free = pod.clone();
    free.ifname = "net2".into();
    let before = (node_view(&lab, "n1"), links(pod.netns_name()));
    let conf = |extra: Value| nad("1.0.0", &lab, "n1", "blue", extra);
    let env_without = |att: &Attach, cmd: &str, var: &str| {
        let mut e = att.env(cmd);
        e.retain(|(k, _)| *k != var);
        e
    };
    let with_env = |att: &Attach, cmd: &str, var: &'static str, value: &str| {
        let mut e = env_without(att, cmd, var);
        e.push((var, value.to_string()));
        e
    };
    let gone_socket = format!("/run/l2sm/lab/{}/n1/missing.sock", lab.name);
    let cases: Vec<(&str, Env, String, u64, &str)> = vec![
        ("unknown network", free.env("ADD"), conf(json!({"network": "nope"})).to_string(), 7, "\"nope\" does not exist"),
        ("bad network name", free.env("ADD"), conf(json!({"network": "No_Such"})).to_string(), 7, "network"),
        ("unparseable static IP", free.env("ADD"),
            conf(json!({"ipam": {"type": "static", "addresses": [{"address": "10.0.0.300/24"}]}})).to_string(), 7, "ipam.addresses[0].address"),
        ("address without prefix", free.env("ADD"),
            conf(json!({"runtimeConfig": {"ips": ["10.1.1.11"]}})).to_string(), 7, "no prefix length"),
        ("multicast MAC", free.env("ADD"),
            conf(json!({"runtimeConfig": {"mac": "01:00:5e:00:00:01"}})).to_string(), 7, "multicast"),
        ("other IPAM", free.env("ADD"),
            conf(json!({"ipam": {"type": "host-local", "subnet": "10.0.0.0/24"}})).to_string(), 2, "ipam.type"),
        ("malformed JSON", free.env("ADD"), "{\"cniVersion\": \"1.0.0\", \"network\": ".to_string(), 6, "decode"),
        ("empty stdin", free.env("ADD"), String::new(), 6, "stdin"),
        ("old version", free.env("ADD"), conf(json!({"cniVersion": "0.2.0"})).to_string(), 1, "0.2.0"),
        ("no CNI_NETNS", env_without(&free, "ADD", "CNI_NETNS"), conf(json!({})).to_string(), 4, "CNI_NETNS"),
        ("namespace gone", with_env(&free, "ADD", "CNI_NETNS", "/run/netns/l2sm-nope"), conf(json!({})).to_string(), 3, "l2sm-nope"),
        ("no CNI_CONTAINERID", env_without(&free, "ADD", "CNI_CONTAINERID"), conf(json!({})).to_string(), 4, "CNI_CONTAINERID"),
        ("bad CNI_IFNAME", with_env(&free, "ADD", "CNI_IFNAME", "net/1"), conf(json!({})).to_string(), 4, "CNI_IFNAME"),
        ("unknown CNI_ARGS", with_env(&free, "ADD", "CNI_ARGS", "FOO=1"), conf(json!({})).to_string(), 4, "FOO"),
        ("no CNI_COMMAND", env_without(&free, "ADD", "CNI_COMMAND"), conf(json!({})).to_string(), 4, "CNI_COMMAND"),
        ("ifname in use", busy.env("ADD"), conf(json!({})).to_string(), 999, "already exists"),
        // The kernel refuses a route via an unreachable gateway after the veth exists: the agent
        // must undo everything.
        ("unreachable route gateway", free.env("ADD"),
            conf(json!({"ipam": {"type": "static", "addresses": [{"address": "10.44.0.1/24"}],
                                  "routes": [{"dst": "10.45.0.0/16", "gw": "10.99.0.1"}]}})).to_string(), 999, "attach"),
        ("agent unreachable (ADD)", free.env("ADD"), conf(json!({"agentSocket": gone_socket})).to_string(), 11, "not reachable"),
        ("agent unreachable (DEL)", free.env("DEL"), conf(json!({"agentSocket": gone_socket})).to_string(), 11, "not reachable"),
        ("CHECK without prevResult", free.env("CHECK"), conf(json!({})).to_string(), 7, "prevResult"),
        ("CHECK of nothing", free.env("CHECK"),
            conf(json!({"prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "net2", "sandbox": free.netns}]}})).to_string(),
            999, "no attachment"),
        ("STATUS, agent down", free.env("STATUS"),
            nad("1.1.0", &lab, "n1", "blue", json!({"agentSocket": gone_socket})).to_string(), 50, "not reachable"),
        ("GC without the list", free.env("GC"), nad("1.1.0", &lab, "n1", "blue", json!({})).to_string(), 7, "valid-attachments"),
        ("GC, agent down", free.env("GC"),
            nad("1.1.0", &lab, "n1", "blue", json!({"agentSocket": gone_socket, "cni.dev/valid-attachments": []})).to_string(), 11, "not reachable"),
    ];
    for (what, env, stdin, code, needle) in cases {
        let out = exec_plugin(&cni::plugin(), &node_ns(&lab, "n1"), &env, &stdin);
        let (c, text) = out.error();
        assert_eq!(c, code, "{what}: wrong code in {}", out.stdout);
        assert!(
            text.contains(needle),
            "{what}: {text:?} does not mention {needle:?}"
        );
        assert_eq!(
            (node_view(&lab, "n1"), links(pod.netns_name())),
            before,
            "{what} left something behind"
        );
    }
}

#[test]
fn del_is_idempotent_and_works_after_the_namespace_is_gone() {
    let lab = TestLab::up("del", 1);
    lab.ok(&["network", "create", "blue"]);
    let baseline = node_view(&lab, "n1");
    let p = Attach::new_pod(&lab, "p");
    let conf = nad(
        "0.4.0",
        &lab,
        "n1",
        "blue",
        json!({"runtimeConfig": {"ips": ["10.46.0.1/24"]}}),
    );
    let first = l2sm_cni(&lab, "n1", &p.env("ADD"), &conf).result();
    // A retried ADD (e.g. after a timeout) finds the same attachment.
    let again = l2sm_cni(&lab, "n1", &p.env("ADD"), &conf).result();
    assert_eq!(first["interfaces"], again["interfaces"]);
    l2sm_cni(&lab, "n1", &p.env("DEL"), &with_prev(&conf, &first)).silent();
    l2sm_cni(&lab, "n1", &p.env("DEL"), &with_prev(&conf, &first)).silent();
    assert_eq!(node_view(&lab, "n1"), baseline);

    // CHECK notices drift: a wrong MAC in prevResult, a missing address, a missing interface.
    let res = l2sm_cni(&lab, "n1", &p.env("ADD"), &conf).result();
    let checked = |prev: &Value| l2sm_cni(&lab, "n1", &p.env("CHECK"), &with_prev(&conf, prev));
    checked(&res).silent();
    let (idx, _) = pod_interface(&res, &p);
    let mut wrong_mac = res.clone();
    wrong_mac["interfaces"][idx]["mac"] = json!("02:99:99:99:99:99");
    checked(&wrong_mac).fails_with(999, "MAC");
    run_ok(
        "ip",
        &[
            "-n",
            p.netns_name(),
            "addr",
            "del",
            "10.46.0.1/24",
            "dev",
            "net1",
        ],
    );
    checked(&res).fails_with(999, "lacks address 10.46.0.1/24");

    // The pod's namespace disappears before DEL (the runtime removed it first).
    run_ok("ip", &["netns", "del", p.netns_name()]);
    checked(&res).fails_with(3, p.netns_name());
    l2sm_cni(&lab, "n1", &p.env("DEL"), &with_prev(&conf, &res)).silent();
    assert_eq!(
        node_view(&lab, "n1"),
        baseline,
        "DEL after the namespace vanished left something"
    );
    // DEL without CNI_NETNS at all, as the spec allows.
    let mut env = p.env("DEL");
    env.retain(|(k, _)| *k != "CNI_NETNS");
    l2sm_cni(&lab, "n1", &env, &conf).silent();
    let mut env = p.env("DEL");
    env.iter_mut().for_each(|(k, v)| {
        if *k == "CNI_NETNS" {
            v.clear()
        }
    });
    l2sm_cni(&lab, "n1", &env, &conf).silent();
}

#[test]
fn gc_removes_only_stale_cni_attachments_of_its_network() {
    let lab = TestLab::up("gc", 1);
    lab.ok(&["network", "create", "blue"]);
    lab.ok(&["network", "create", "red"]);
    let blue = nad("1.1.0", &lab, "n1", "blue", json!({}));
    let red = nad("1.1.0", &lab, "n1", "red", json!({}));
    let keep = Attach::new_pod(&lab, "keep");
    let stale = Attach::new_pod(&lab, "stale");
    let other = Attach::new_pod(&lab, "other");
    let stale_res = l2sm_cni(&lab, "n1", &stale.env("ADD"), &blue).result();
    l2sm_cni(&lab, "n1", &keep.env("ADD"), &blue).result();
    l2sm_cni(&lab, "n1", &other.env("ADD"), &red).result();
    // An attachment that is not the plugin's (made straight through the agent's socket), on
    // the same network.
    let manual = Attach::new_pod(&lab, "manual");
    let req = json!({"op": "attach", "attachment_id": "manual/net1", "netns": format!("/run/netns/{}", manual.netns_name()),
        "ifname": "net1", "network": "blue", "ips": ["10.47.0.9/24"]});
    let path = format!("/run/l2sm/lab/{}/n1/agent.sock", lab.name);
    let mut sock = std::os::unix::net::UnixStream::connect(&path).unwrap();
    std::io::Write::write_all(&mut sock, format!("{req}\n").as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(sock), &mut line).unwrap();
    assert!(line.contains("\"ok\":true"), "{line}");
    let before = agent_ids(&lab, "n1");
    assert_eq!(before.len(), 4, "{before:?}");
    let stale_host = stale_res["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(links(&node_ns(&lab, "n1")).contains(&stale_host));

    let mut gc = blue.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": keep.container_id, "ifname": "net1"}]);
    let env = [
        ("CNI_COMMAND", "GC".to_string()),
        ("CNI_PATH", "/opt/cni/bin".to_string()),
    ];
    l2sm_cni(&lab, "n1", &env, &gc).silent();
    let after = agent_ids(&lab, "n1");
    let stale_id = format!("cni/{}/net1", stale.container_id);
    let expected: Vec<String> = before.iter().filter(|i| **i != stale_id).cloned().collect();
    assert_eq!(after, expected, "GC removed the wrong attachments");
    assert!(
        !links(&node_ns(&lab, "n1")).contains(&stale_host),
        "stale port's link still there"
    );
    assert_eq!(links(stale.netns_name()), ["lo"]);
    // Idempotent, and libcni's older key name works too.
    let mut gc2 = blue.clone();
    gc2["cni.dev/attachments"] = gc["cni.dev/valid-attachments"].clone();
    l2sm_cni(&lab, "n1", &env, &gc2).silent();
    assert_eq!(agent_ids(&lab, "n1"), expected);
    l2sm_cni(&lab, "n1", &[("CNI_COMMAND", "STATUS".to_string())], &red).silent();
}

#[test]
fn a_controller_outage_means_try_again_later_and_the_retry_works() {
    let lab = TestLab::up("ctl", 1);
    lab.ok(&["network", "create", "blue"]);
    let baseline = node_view(&lab, "n1");
    let old = Attach::new_pod(&lab, "old");
    let new = Attach::new_pod(&lab, "new");
    let conf = nad("1.0.0", &lab, "n1", "blue", json!({}));
    l2sm_cni(&lab, "n1", &old.env("ADD"), &conf).result();
    let with_old = node_view(&lab, "n1");
    let pid = lab.state()["controller_pid"]
        .as_i64()
        .expect("controller pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the lab's controller");
    l2sm_test_support::wait_until(
        "the controller to die",
        std::time::Duration::from_secs(5),
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z")),
    );
    // The agent cannot record memberships: the runtime is told to retry, nothing changes.
    l2sm_cni(&lab, "n1", &new.env("ADD"), &conf).fails_with(11, "controller");
    l2sm_cni(&lab, "n1", &old.env("DEL"), &conf).fails_with(11, "controller");
    assert_eq!(node_view(&lab, "n1"), with_old);
    assert_eq!(links(new.netns_name()), ["lo"]);
    lab.ok(&["lab", "restart", "controller"]);
    l2sm_cni(&lab, "n1", &new.env("ADD"), &conf).result();
    l2sm_cni(&lab, "n1", &old.env("DEL"), &conf).silent();
    l2sm_cni(&lab, "n1", &new.env("DEL"), &conf).silent();
    assert_eq!(node_view(&lab, "n1"), baseline);
}

/// An IDS mirror attachment (the operator's `l2sm.mirror.<net>` NAD, `mirrorOf`): only pods of
/// the namespace the NAD names may take it; the port sees the network's frames, is never a
/// member (nothing it sends reaches anyone), gets no address, and DEL gives the mirror back.
#[test]
fn a_mirror_attachment_sees_the_network_never_joins_it_and_is_namespace_bound() {
    let lab = TestLab::up("mir", 2);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.51.0.1/24");
    lab.attach("n2", "b", "blue", "10.51.0.2/24");
    let m = Attach::new_pod(&lab, "m");
    let conf = nad(
        "1.0.0",
        &lab,
        "n1",
        "blue",
        json!({"network": null, "mirrorOf": "blue", "mirrorNamespace": "l2sm-system"}),
    );
    let before = node_view(&lab, "n1");
    // A pod of another namespace (the env's K8S_POD_NAMESPACE is `default`) is refused.
    let refused = l2sm_cni(&lab, "n1", &m.env("ADD"), &conf);
    let (code, text) = refused.error();
    assert_eq!(code, 7, "{text}");
    assert!(
        text.contains("only pods of namespace \"l2sm-system\""),
        "{text}"
    );
    assert_eq!(
        node_view(&lab, "n1"),
        before,
        "a refused mirror left something"
    );
    // Addresses are refused too.
    let in_ns = |cmd: &str| -> Env {
        let mut e = m.env(cmd);
        for (k, v) in e.iter_mut() {
            if *k == "CNI_ARGS" {
                *v = v.replace("K8S_POD_NAMESPACE=default", "K8S_POD_NAMESPACE=l2sm-system");
            }
        }
        e
    };
    let mut with_ip = conf.clone();
    with_ip["runtimeConfig"] = json!({"ips": ["10.51.0.9/24"]});
    let (code, text) = l2sm_cni(&lab, "n1", &in_ns("ADD"), &with_ip).error();
    assert_eq!(code, 7, "{text}");
    assert!(text.contains("no addresses"), "{text}");
    assert_eq!(
        node_view(&lab, "n1"),
        before,
        "a refused mirror left something"
    );

    let result = l2sm_cni(&lab, "n1", &in_ns("ADD"), &conf).result();
    validate_result(&result, "1.0.0").unwrap_or_else(|e| panic!("{e}\n{result}"));
    assert!(
        result["ips"].as_array().is_none_or(|a| a.is_empty()),
        "{result}"
    );
    let (code, net) = l2sm_test_support::lab::api_call(&lab, "GET", "/api/v1/networks/blue");
    assert_eq!(code, 200, "{net}");
    let mirror = net["mirrorPort"]
        .as_str()
        .expect("blue has a mirror")
        .to_string();
    assert!(
        !net["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == mirror.as_str()),
        "the mirror became a member: {net}"
    );
    // The mirror sees a's and b's frames.
    let capture = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            m.netns_name(),
            "timeout",
            "4",
            "tcpdump",
            "-i",
            "net1",
            "-n",
            "-l",
            "icmp",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(lab.pings("a", "10.51.0.2"), "a and b must still talk");
    let seen = String::from_utf8_lossy(&capture.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        seen.contains("10.51.0.1 > 10.51.0.2") && seen.contains("10.51.0.2 > 10.51.0.1"),
        "the mirror did not see a <-> b: {seen}"
    );
    // Nothing the mirror sends enters the network.
    run_ok(
        "ip",
        &[
            "-n",
            m.netns_name(),
            "addr",
            "add",
            "10.51.0.9/24",
            "dev",
            "net1",
        ],
    );
    assert!(!pings(m.netns_name(), "10.51.0.2"), "the mirror reached b");
    // DEL gives the mirror back and removes the port.
    l2sm_cni(&lab, "n1", &in_ns("DEL"), &conf).silent();
    let (_, net) = l2sm_test_support::lab::api_call(&lab, "GET", "/api/v1/networks/blue");
    assert!(net["mirrorPort"].is_null(), "DEL left the mirror: {net}");
    assert_eq!(
        node_view(&lab, "n1"),
        before,
        "DEL left something on the node"
    );
}
