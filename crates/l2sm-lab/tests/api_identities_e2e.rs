//! The lab gives each node's agent its own API identity: an agent runs with `agent-<node>`
//! credentials (never the lab's admin), attaches pods with them, and those credentials cannot
//! touch another node's ports or create networks. Needs root; fails (never skips) without it.

use l2sm_test_support::lab::TestLab;

/// `KEY=value` pairs of a process's environment.
fn environ(pid: i64) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .expect("agent environment")
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// One request to the lab controller's API from the underlay namespace, as `user`.
fn call(lab: &TestLab, user: &str, password: &str, method: &str, path: &str, body: &str) -> u16 {
    let ns = format!("l2sm-{}-ul", lab.name);
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-u", &format!("{user}:{password}"), "-X", method])
        .args(["-H", "Content-Type: application/json", "--data", body])
        .arg(format!("http://10.250.0.254:8181{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn each_agent_has_its_own_restricted_identity() {
    let lab = TestLab::up("ids", 2);
    lab.ok(&["network", "create", "blue"]);
    // Agents attach pods with their own credentials.
    lab.attach("n1", "a", "blue", "10.30.0.1/24");
    lab.attach("n2", "b", "blue", "10.30.0.2/24");
    assert!(
        lab.pings("a", "10.30.0.2"),
        "pods of agents with node identities cannot ping"
    );

    let state = lab.state();
    let admin = state["api_user"].as_str().unwrap().to_string();
    for node in state["nodes"].as_array().unwrap() {
        let name = node["name"].as_str().unwrap();
        let env = environ(node["agent_pid"].as_i64().unwrap());
        assert!(
            env.contains(&format!("L2SM_API_USER=agent-{name}")),
            "agent of {name} does not run as agent-{name}"
        );
        assert!(
            !env.contains(&format!("L2SM_API_USER={admin}")),
            "agent of {name} has the admin credentials"
        );
    }
    let token = std::fs::read_to_string(format!("/run/l2sm/lab/{}/api/agent-n1.token", lab.name))
        .expect("agent-n1 token");
    let token = token.trim();
    let n2_dpid = l2sm_controller::api::auth::node_dpid("n2");
    let other = format!(r#"{{"networkId":"blue","networkEndpoints":["of:{n2_dpid:016x}/7"]}}"#);
    assert_eq!(
        call(
            &lab,
            "agent-n1",
            token,
            "POST",
            "/onos/vnets/api/port",
            &other
        ),
        403
    );
    assert_eq!(
        call(
            &lab,
            "agent-n1",
            token,
            "POST",
            "/api/v1/networks",
            r#"{"name":"red"}"#
        ),
        403
    );
    assert_eq!(
        call(&lab, "agent-n1", token, "GET", "/api/v1/networks", ""),
        200
    );
    // The reader scrapes metrics.
    let metrics = l2sm_test_support::lab::metrics(&lab);
    assert!(
        metrics.starts_with("HTTP/1.0 200") || metrics.starts_with("HTTP/1.1 200"),
        "{metrics}"
    );
}
