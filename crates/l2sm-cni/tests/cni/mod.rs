//! Helpers for the CNI plugin tests: calling a plugin the way Multus does, a validator for the
//! CNI result format, and views of a lab node to prove failures leave nothing behind.
#![allow(dead_code)]

pub(crate) mod validate;

use l2sm_test_support::lab::TestLab;
use serde_json::{json, Value};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The plugin under test: the static build when `L2SM_CNI_PLUGIN` names it (scripts/test.sh
/// sets it to the output of scripts/build-cni-static.sh, the binary that ships), else cargo's
/// build of this crate.
pub(crate) fn plugin() -> String {
    match std::env::var("L2SM_CNI_PLUGIN") {
        Ok(p) if !p.is_empty() => {
            assert!(
                std::path::Path::new(&p).is_file(),
                "L2SM_CNI_PLUGIN={p} is not a file"
            );
            p
        }
        _ => env!("CARGO_BIN_EXE_l2sm-cni").to_string(),
    }
}
pub(crate) const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
pub(crate) const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Fails loudly when Debian's reference plugins are missing.
pub(crate) fn require_reference_plugins() {
    for p in ["bridge", "host-local"] {
        let path = format!("{REFERENCE_PLUGINS}/{p}");
        assert!(
            std::path::Path::new(&path).exists(),
            "{path} is missing (apt-get install containernetworking-plugins; scripts/deps.sh does it); refusing to skip"
        );
    }
}

/// `CNI_*` variables for one call.
pub(crate) type Env = Vec<(&'static str, String)>;

/// What a plugin printed and how it exited.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The ADD result (or VERSION answer): success and one JSON object.
    pub(crate) fn result(&self) -> Value {
        assert!(
            self.success,
            "plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("plugin output is not JSON ({e}): {:?}", self.stdout))
    }

    /// A success that prints nothing (DEL, CHECK, STATUS, GC).
    pub(crate) fn silent(&self) {
        assert!(
            self.success && self.stdout.trim().is_empty(),
            "expected a silent success, got {:?} (exit ok: {}), stderr {:?}",
            self.stdout,
            self.success,
            self.stderr
        );
    }

    /// A failure with a CNI error on stdout; returns (code, msg + details).
    pub(crate) fn error(&self) -> (u64, String) {
        assert!(
            !self.success,
            "plugin unexpectedly succeeded: {}",
            self.stdout
        );
        let v: Value = serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "error output is not JSON ({e}): {:?}, stderr {:?}",
                self.stdout, self.stderr
            )
        });
        let code =
            validate::validate_error(&v).unwrap_or_else(|e| panic!("bad error JSON {v}: {e}"));
        let text = format!(
            "{} {}",
            v["msg"].as_str().unwrap_or_default(),
            v["details"].as_str().unwrap_or_default()
        );
        (code, text)
    }

    /// Asserts a CNI error with `code` whose message mentions `needle`.
    pub(crate) fn fails_with(&self, code: u64, needle: &str) {
        let (c, text) = self.error();
        assert_eq!(c, code, "wrong code for {:?}", self.stdout);
        assert!(
            text.contains(needle),
            "error {text:?} does not mention {needle:?}"
        );
    }
}

/// Runs `plugin` inside the network namespace `run_in` (a node's, as the runtime would run on
/// the node) with exactly the given environment and `stdin`.
pub(crate) fn exec_plugin(
    plugin: &str,
    run_in: &str,
    env: &[(&str, String)],
    stdin: &str,
) -> Outcome {
    let mut child = Command::new("ip")
        .args(["netns", "exec", run_in, plugin])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ip netns exec");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Outcome {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One container attachment as Multus describes it to a delegate plugin.
#[derive(Debug, Clone)]
pub(crate) struct Attach {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub pod: String,
}

impl Attach {
    /// Pod `name` in namespace `l2sm-<lab>-p-<name>` (created here), interface net1.
    pub(crate) fn new_pod(lab: &TestLab, name: &str) -> Attach {
        let ns = pod_ns(lab, name);
        run_ok("ip", &["netns", "add", &ns]);
        Attach {
            container_id: format!("{:0>16}", format!("c0ffee{name}")),
            netns: format!("/run/netns/{ns}"),
            ifname: "net1".into(),
            pod: name.into(),
        }
    }

    /// The environment Multus gives a delegate (kubelet's CNI_ARGS, CNI_PATH of the node).
    pub(crate) fn env(&self, command: &str) -> Env {
        vec![
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_IFNAME", self.ifname.clone()),
            (
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=6f1a3c2e-0000-4000-8000-{:0>12}",
                    self.pod, self.container_id, self.pod
                ),
            ),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni".to_string()),
        ]
    }

    pub(crate) fn netns_name(&self) -> &str {
        self.netns.trim_start_matches("/run/netns/")
    }
}

pub(crate) fn pod_ns(lab: &TestLab, name: &str) -> String {
    format!("l2sm-{}-p-{name}", lab.name)
}

pub(crate) fn node_ns(lab: &TestLab, node: &str) -> String {
    format!("l2sm-{}-{node}", lab.name)
}

pub(crate) fn agent_socket(lab: &TestLab, node: &str) -> String {
    format!("/run/l2sm/lab/{}/{node}/agent.sock", lab.name)
}

/// The configuration Multus hands the plugin for a NetworkAttachmentDefinition of network
/// `network` (name and cniVersion filled in, `runtimeConfig` added by libcni from the pod's
/// request when the NAD declares the capabilities), plus `extra` fields.
pub(crate) fn nad(version: &str, lab: &TestLab, node: &str, network: &str, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": version,
        "name": format!("l2sm-{network}"),
        "type": "l2sm",
        "network": network,
        "agentSocket": agent_socket(lab, node),
        "capabilities": {"ips": true, "mac": true},
    });
    for (k, v) in extra.as_object().expect("extra must be an object") {
        c[k] = v.clone();
    }
    c
}

/// The plugin on node `node` of `lab`.
pub(crate) fn l2sm_cni(lab: &TestLab, node: &str, env: &[(&str, String)], conf: &Value) -> Outcome {
    exec_plugin(&plugin(), &node_ns(lab, node), env, &conf.to_string())
}

/// `conf` with `prevResult` set.
pub(crate) fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

pub(crate) fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Attachment ids the node's agent knows.
pub(crate) fn agent_ids(lab: &TestLab, node: &str) -> Vec<String> {
    let v = l2sm_agent_api::call(
        std::path::Path::new(&agent_socket(lab, node)),
        &l2sm_agent_api::AgentRequest::List,
        Duration::from_secs(10),
    )
    .expect("agent list");
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attachment_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Link names in a namespace.
pub(crate) fn links(ns: &str) -> Vec<String> {
    let mut v: Vec<String> = run_ok("ip", &["-n", ns, "-br", "link"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    v.sort();
    v
}

/// Everything on a node that an attach touches: the agent's records, the L2S-M bridge's OVS
/// ports and the links of the node namespace.
pub(crate) fn node_view(lab: &TestLab, node: &str) -> String {
    let status = l2sm_agent_api::call(
        std::path::Path::new(&agent_socket(lab, node)),
        &l2sm_agent_api::AgentRequest::Status,
        Duration::from_secs(10),
    )
    .expect("agent status");
    let bridge = status["bridge"].as_str().unwrap().to_string();
    let ports = run_ok(
        "ovs-vsctl",
        &[
            &format!("--db=unix:/run/l2sm/lab/{}/{node}/db.sock", lab.name),
            "list-ports",
            &bridge,
        ],
    );
    format!(
        "agent: {:?}\nports of {bridge}: {:?}\nlinks: {:?}",
        agent_ids(lab, node),
        ports.split_whitespace().collect::<Vec<_>>(),
        links(&node_ns(lab, node))
    )
}

/// Ping across the emulated network, allowing for ARP on the first packets.
pub(crate) fn pings(from_ns: &str, ip: &str) -> bool {
    let ping = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", from_ns, "ping"])
            .args(args)
            .arg(ip)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    ping(&["-c", "3", "-i", "0.2", "-W", "1", "-q"]) && ping(&["-c", "1", "-W", "1", "-q"])
}
