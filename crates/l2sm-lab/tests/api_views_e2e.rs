//! The native API's views on a real lab: ports, attachments with their addresses, and the
//! flows and groups the controller programs, checked against what the switch holds.

use l2sm_test_support::lab::{api_call as call, TestLab};
use std::process::Command;
use std::time::Duration;

/// GET `path` on the lab's controller (from inside its namespace); (status, JSON body).
fn api(lab: &TestLab, path: &str) -> (u16, serde_json::Value) {
    call(lab, "GET", path)
}

/// `ovs-ofctl dump-flows` / `dump-groups` line count of `node`'s bridge, learned entries
/// excluded (tests may use the OVS tools to observe).
fn ofctl_count(lab: &TestLab, node: &str, what: &str) -> usize {
    let dir = format!("/run/l2sm/lab/{}/{node}", lab.name);
    let mgmt = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|f| f.starts_with("br-") && f.ends_with(".mgmt") && !f.starts_with("br-phy"))
        .unwrap_or_else(|| panic!("no OVS management socket in {dir}"));
    let out = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow13", what])
        .arg(format!("unix:{dir}/{mgmt}"))
        .output()
        .expect("ovs-ofctl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .filter(|l| {
            (l.contains("cookie=") || l.contains("group_id="))
                && !l.trim_start().starts_with("cookie=0x4c32000200")
        })
        .count()
}

#[test]
fn ports_attachments_flows_and_groups_describe_the_switches() {
    let lab = TestLab::up("av", 2);
    lab.ok(&["network", "create", "blue", "--cidr", "10.21.0.0/24"]);
    lab.attach("n1", "a", "blue", "10.21.0.1/24");
    lab.attach("n2", "b", "blue", "10.21.0.2/24");
    assert!(lab.pings("a", "10.21.0.2"));

    let (code, ports) = api(&lab, "/api/v1/ports");
    assert_eq!(code, 200, "{ports}");
    let ports = ports.as_array().unwrap();
    let members: Vec<&serde_json::Value> =
        ports.iter().filter(|p| p["network"] == "blue").collect();
    assert_eq!(members.len(), 2, "{ports:?}");
    assert!(members
        .iter()
        .all(|p| p["up"] == true && p["mirror"] == false && p["kind"] == "port"));
    assert!(
        ports.iter().any(|p| p["kind"] == "tunnel"),
        "tunnel ports are listed: {ports:?}"
    );

    let (code, atts) = api(&lab, "/api/v1/attachments");
    assert_eq!(code, 200, "{atts}");
    let atts = atts.as_array().unwrap();
    assert_eq!(atts.len(), 2, "{atts:?}");
    let mut ips: Vec<&str> = atts
        .iter()
        .map(|a| {
            assert_eq!(a["network"], "blue");
            assert_eq!(a["connected"], true);
            assert!(a["owner"].as_str().is_some_and(|o| !o.is_empty()), "{a}");
            assert!(members.iter().any(|p| p["id"] == a["port"]), "{a}");
            a["ips"][0].as_str().unwrap()
        })
        .collect();
    ips.sort();
    assert_eq!(ips, ["10.21.0.1/24", "10.21.0.2/24"]);

    // Attachment ids (the IPAM owners) are the ones the agent reported to the lab.
    let state = lab.state();
    for pod in ["a", "b"] {
        let att = &state["pods"][pod]["attachments"][0];
        assert!(
            atts.iter()
                .any(|a| a["owner"] == att["attachment_id"] && a["port"] == att["port"]),
            "{att} not among {atts:?}"
        );
    }
    let (_, switches) = api(&lab, "/api/v1/switches");
    let switches = switches.as_array().unwrap();
    assert_eq!(switches.len(), 2, "{switches:?}");
    let state = lab.state();
    for sw in switches {
        let id = sw["id"].as_str().unwrap();
        // The node of this switch: the one whose pod is attached to it.
        let node = ["a", "b"]
            .iter()
            .find(|pod| {
                state["pods"][**pod]["attachments"][0]["port"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&format!("{id}/")))
            })
            .map(|pod| state["pods"][*pod]["node"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no pod on {id}: {state}"));
        let node = node.as_str();
        let member = members
            .iter()
            .find(|p| p["switch"] == id)
            .unwrap_or_else(|| panic!("no member on {id}"));
        // The session has converged: what the API shows is what the switch holds.
        l2sm_test_support::wait_until("flows converge", Duration::from_secs(10), || {
            let (_, flows) = api(&lab, &format!("/api/v1/switches/{id}/flows"));
            flows["flows"].as_array().map(|f| f.len()) == sw["flows"].as_u64().map(|n| n as usize)
        });
        let (code, flows) = api(&lab, &format!("/api/v1/switches/{id}/flows"));
        assert_eq!(code, 200);
        assert_eq!(
            flows["flows"].as_array().unwrap().len(),
            ofctl_count(&lab, node, "dump-flows"),
            "the API shows the flows {node}'s switch holds"
        );
        assert_eq!(flows["switch"], id);
        let flows = flows["flows"].as_array().unwrap();
        let port = member["port"].as_u64().unwrap();
        assert!(
            flows.iter().any(|f| f["table"] == 0
                && f["match"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m == &serde_json::json!(format!("InPort({port})")))
                && f["instructions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["type"] == "goto_table")),
            "no classifier flow for port {port}: {flows:?}"
        );
        let (code, groups) = api(&lab, &format!("/api/v1/switches/{id}/groups"));
        assert_eq!(code, 200);
        let groups = groups["groups"].as_array().unwrap();
        assert_eq!(groups.len() as u64, sw["groups"].as_u64().unwrap());
        assert_eq!(groups.len(), ofctl_count(&lab, node, "dump-groups"));
        assert!(
            groups.iter().any(|g| g["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|b| b.as_array().unwrap())
                .any(|a| a["type"] == "output" && a["port"] == port)),
            "no group floods to port {port}: {groups:?}"
        );
    }
    let (code, err) = api(&lab, "/api/v1/switches/of:00000000000000ff/flows");
    assert_eq!(code, 404);
    assert!(err["error"].as_str().unwrap().contains("not connected"));
}

/// The pod identity the CNI plugin gets (K8S_POD_NAMESPACE/K8S_POD_NAME) reaches the
/// controller as the owner of the pod's port, survives agent and controller restarts, and
/// goes with CNI DEL.
#[test]
fn attachments_name_their_pod_across_restarts_until_del() {
    let lab = TestLab::up("ao", 1);
    lab.ok(&["network", "create", "blue"]);
    // Two pods of one network on one node: exactly what guessing could not tell apart.
    lab.attach("n1", "a", "blue", "10.22.0.1/24");
    lab.attach("n1", "b", "blue", "10.22.0.2/24");
    let state = lab.state();
    let att = |pod: &str| state["pods"][pod]["attachments"][0].clone();
    let (a, b) = (att("a"), att("b"));
    assert_ne!(a["port"], b["port"]);
    let owned = |pod: &str, att: &serde_json::Value| {
        let (code, atts) = api(&lab, "/api/v1/attachments");
        assert_eq!(code, 200, "{atts}");
        let (_, ports) = api(&lab, "/api/v1/ports");
        let want = format!("lab-{}/{pod}", lab.name);
        let in_atts = atts.as_array().unwrap().iter().any(|x| {
            x["port"] == att["port"]
                && x["network"] == "blue"
                && x["pod"] == want.as_str()
                && x["attachment"] == att["attachment_id"]
                && x["interface"] == "net1"
        });
        let in_ports = ports
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == att["port"] && x["pod"] == want.as_str());
        in_atts && in_ports
    };
    assert!(
        owned("a", &a) && owned("b", &b),
        "{state} {}",
        api(&lab, "/api/v1/attachments").1
    );

    // The controller forgets a's owner; the restarted agent reports it again.
    let (dpid, n) = a["port"].as_str().unwrap().split_once('/').unwrap();
    let path = format!("/api/v1/switches/{dpid}/ports/{n}/owner");
    let (code, body) = call(&lab, "DELETE", &path);
    assert_eq!(code, 204, "{body}");
    assert!(!owned("a", &a));
    lab.ok(&["lab", "restart", "n1"]);
    l2sm_test_support::wait_until("owner re-reported", Duration::from_secs(10), || {
        owned("a", &a)
    });
    assert!(owned("b", &b));

    // A controller restart keeps owners (they are in its store).
    lab.ok(&["lab", "restart", "controller"]);
    l2sm_test_support::wait_until("controller API back", Duration::from_secs(10), || {
        Command::new("ip")
            .args(["netns", "exec", &format!("l2sm-{}-ul", lab.name)])
            .args([
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "http://127.0.0.1:8181/onos/ui",
            ])
            .status()
            .is_ok_and(|s| s.success())
    });
    // Attachments come from the store right away; ports once the switch reconnected.
    let (_, atts) = api(&lab, "/api/v1/attachments");
    for (pod, att) in [("a", &a), ("b", &b)] {
        let want = format!("lab-{}/{pod}", lab.name);
        assert!(
            atts.as_array()
                .unwrap()
                .iter()
                .any(|x| x["port"] == att["port"] && x["pod"] == want.as_str()),
            "{atts}"
        );
    }
    l2sm_test_support::wait_until("switch reconnected", Duration::from_secs(10), || {
        owned("a", &a) && owned("b", &b)
    });

    // CNI DEL: a's membership and owner are gone, b's stay.
    lab.ok(&["detach", "--pod", "a"]);
    let (_, atts) = api(&lab, "/api/v1/attachments");
    assert!(
        atts.as_array()
            .unwrap()
            .iter()
            .all(|x| x["port"] != a["port"] && x["pod"] != format!("lab-{}/a", lab.name).as_str()),
        "{atts}"
    );
    let (_, ports) = api(&lab, "/api/v1/ports");
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["pod"] != format!("lab-{}/a", lab.name).as_str()),
        "{ports}"
    );
    assert!(owned("b", &b));
    // Bad input: a malformed port is refused clearly.
    let (code, err) = call(&lab, "DELETE", "/api/v1/switches/of:xyz/ports/1/owner");
    assert_eq!(code, 400, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("malformed"),
        "{err}"
    );
}
