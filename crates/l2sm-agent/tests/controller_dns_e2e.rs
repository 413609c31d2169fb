//! The controller given by a Kubernetes-style Service name that only resolves through the
//! resolv.conf search list (issue #13, defect 2). A real `dnsmasq` in a lab node's network
//! namespace answers like cluster DNS (NXDOMAIN for everything but
//! `l2sm-controller-service.l2sm-system.svc.cluster.local`); the node's agent runs with its
//! own `/etc/resolv.conf` (private mount namespace) pointing there, with the search list of a
//! pod in `l2sm-system`. The switch must connect, pods must ping, and a changed DNS record must
//! move the switch to the new address.

use l2sm_test_support::{bin, prereq, random_suffix, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SHORT_NAME: &str = "l2sm-controller-service.l2sm-system.svc";
const FQDN: &str = "l2sm-controller-service.l2sm-system.svc.cluster.local";
/// The lab controller listens on every address of the underlay namespace: its underlay
/// address and its management address are two addresses of the same controller.
const FIRST_IP: &str = "10.250.0.254";
const SECOND_IP: &str = "10.251.0.254";
const OPENFLOW_PORT: u16 = 6653;
const API_PORT: u16 = 8181;
/// The node's own addresses on those two subnets: the peer the controller sees.
const NODE_FIRST_IP: &str = "10.250.0.1";
const NODE_SECOND_IP: &str = "10.251.0.1";

/// A `dnsmasq` we started, killed by pid when dropped.
struct Dnsmasq {
    pid: i32,
    pidfile: PathBuf,
}

impl Dnsmasq {
    /// Serves `FQDN -> ip` on `listen:53` inside netns `ns`, authoritative (NXDOMAIN) for
    /// `cluster.local` and `svc`, with no upstream and no /etc/hosts.
    fn start(ns: &str, listen: &str, ip: &str, dir: &Path, generation: u32) -> Dnsmasq {
        let pidfile = dir.join(format!("dnsmasq-{generation}.pid"));
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "dnsmasq", "--port=53"])
            .arg(format!("--listen-address={listen}"))
            .args([
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--local=/cluster.local/",
                "--local=/svc/",
                "--log-queries",
            ])
            .arg(format!("--host-record={FQDN},{ip}"))
            .arg(format!("--pid-file={}", pidfile.display()))
            .arg(format!(
                "--log-facility={}",
                dir.join(format!("dnsmasq-{generation}.log")).display()
            ))
            .stdin(Stdio::null())
            .output()
            .expect("cannot run dnsmasq");
        assert!(
            out.status.success(),
            "dnsmasq did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pid = None;
        wait_until("the dnsmasq pid file", Duration::from_secs(5), || {
            pid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            pid.is_some()
        });
        Dnsmasq {
            pid: pid.unwrap(),
            pidfile,
        }
    }

    fn alive(&self) -> bool {
        // Guards against pid reuse: the command line names our pid file.
        std::fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|c| String::from_utf8_lossy(&c).contains(&*self.pidfile.to_string_lossy()))
            .unwrap_or(false)
    }

    fn stop(&mut self) {
        if self.alive() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            wait_until("dnsmasq to stop", Duration::from_secs(5), || !self.alive());
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if self.alive() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// An agent process we started, killed when dropped.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vsctl(db: &str, args: &[&str]) -> String {
    let out = Command::new("ovs-vsctl")
        .arg(format!("--db=unix:{db}"))
        .args(["--timeout=10"])
        .args(args)
        .output()
        .expect("ovs-vsctl");
    assert!(
        out.status.success(),
        "ovs-vsctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The switches connected to the lab controller (its REST API, dialled from the underlay
/// namespace): `(dpid, peer address)`.
fn switches(rt: &tokio::runtime::Runtime, state: &serde_json::Value) -> Vec<(String, String)> {
    let underlay = format!("/run/netns/l2sm-{}-ul", state["name"].as_str().unwrap());
    let api = l2sm_api::ControllerClient::in_netns(
        &format!("http://{FIRST_IP}:{API_PORT}"),
        Some((
            state["api_user"].as_str().unwrap().to_string(),
            state["api_password"].as_str().unwrap().to_string(),
        )),
        l2sm_api::RetryPolicy::once(),
        underlay.into(),
    )
    .unwrap();
    rt.block_on(api.switches())
        .map(|v| v.into_iter().map(|s| (s.id, s.peer)).collect())
        .unwrap_or_else(|e| panic!("GET switches: {e}"))
}

fn connected_from(
    rt: &tokio::runtime::Runtime,
    state: &serde_json::Value,
    dpid: &str,
    peer_ip: &str,
) -> bool {
    switches(rt, state)
        .iter()
        .any(|(id, peer)| id == dpid && peer.starts_with(&format!("{peer_ip}:")))
}

/// Waits until the controller has a session with `dpid` from `peer_ip`; explains a timeout.
fn wait_connected(
    rt: &tokio::runtime::Runtime,
    state: &serde_json::Value,
    db: &str,
    dpid: &str,
    peer_ip: &str,
) {
    let start = std::time::Instant::now();
    while !connected_from(rt, state, dpid, peer_ip) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{dpid} did not connect from {peer_ip}: controller sees {:?}; OVS: {}",
            switches(rt, state),
            vsctl(db, &["list", "Controller"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agent_resolves_the_controller_through_the_search_list_and_follows_a_changed_record() {
    prereq::require_tools(&["dnsmasq", "unshare", "mount"]);
    let lab = l2sm_test_support::lab::TestLab::up("dn", 2);
    lab.ok(&["network", "create", "blue"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = lab.state();
    let node_dir = format!("/run/l2sm/lab/{}/n1", lab.name);
    let db = format!("{node_dir}/db.sock");
    let ns = format!("l2sm-{}-n1", lab.name);
    let bridge = l2sm_pipeline::ids::switch_name("n1", l2sm_pipeline::ids::OVERLAY_PROVIDER);
    let dpid = format!(
        "of:{}",
        l2sm_pipeline::ids::dpid_hex(l2sm_pipeline::ids::datapath_id(&bridge))
    );
    let tmp = tempfile::tempdir().unwrap();

    // The lab's own agent of n1 (an IP target) makes way for one given the Service name.
    let lab_agent = state["nodes"][0]["agent_pid"].as_i64().unwrap() as i32;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lab_agent),
        nix::sys::signal::Signal::SIGTERM,
    );
    wait_until(
        "the lab's agent of n1 to stop",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(format!("/proc/{lab_agent}/stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true)
        },
    );

    // What the agent on main wrote: the name, verbatim. ovs-vswitchd resolves it itself
    // without the search list, so the secure-mode bridge never gets a controller.
    let verbatim = format!("ssl:{SHORT_NAME}:{OPENFLOW_PORT}");
    vsctl(&db, &["set-controller", &bridge, &verbatim]);
    wait_until(
        "the switch to drop its old controller session",
        Duration::from_secs(10),
        || !switches(&rt, &state).iter().any(|(id, _)| *id == dpid),
    );

    // Cluster DNS on a random loopback address of the node, and the pod-style resolv.conf.
    let r = random_suffix();
    let listen = format!(
        "127.{}.{}.{}",
        u8::from_str_radix(&r[0..2], 16).unwrap(),
        u8::from_str_radix(&r[2..4], 16).unwrap(),
        u8::from_str_radix(&r[4..6], 16).unwrap().max(1)
    );
    let mut dns = Dnsmasq::start(&ns, &listen, FIRST_IP, tmp.path(), 1);
    let resolv = tmp.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!(
            "nameserver {listen}\n\
             search l2sm-system.svc.cluster.local svc.cluster.local cluster.local\n\
             options ndots:5 timeout:1 attempts:1\n"
        ),
    )
    .unwrap();

    // Held while the verbatim target was in place (several reconnect rounds: backoff 1 s).
    std::thread::sleep(Duration::from_secs(3));
    let verbatim_connected = vsctl(&db, &["--columns=is_connected", "list", "Controller"]);
    assert!(
        !verbatim_connected.contains("true")
            && !switches(&rt, &state).iter().any(|(id, _)| *id == dpid),
        "OVS connected with the verbatim Service name ({verbatim_connected}): the test \
         would not show the defect"
    );

    // The node's agent, in the node namespace, with its own /etc/resolv.conf only: a mount
    // namespace that receives the host's mounts (pod namespaces appear under /run/netns, like
    // a Kubernetes HostToContainer volume) but sends none back (the resolv.conf bind mount
    // stays the agent's).
    let log_path = tmp.path().join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let socket = format!("{node_dir}/agent.sock");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(["unshare", "--mount", "--propagation", "slave"])
        .args([
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
        ])
        .arg(&resolv)
        .arg(bin::l2sm())
        .args(["agent", "--node", "n1", "--ovsdb", &format!("unix:{db}")])
        .args(["--datapath-type", "netdev", "--controller", &verbatim])
        .args([
            "--controller-api",
            &format!("http://{SECOND_IP}:{API_PORT}"),
        ])
        .args(["--listen", &socket, "--mtu", "1450", "--disable-tx-offload"])
        .args(["--max-backoff-ms", "1000"])
        .args(["--controller-resolve-interval-ms", "300"])
        // The lab's switch certificate of n1 (the lab runs OpenFlow over TLS).
        .args(["--ssl-private-key", &format!("{node_dir}/switch.key")])
        .args(["--ssl-certificate", &format!("{node_dir}/switch.pem")])
        .args([
            "--ssl-ca-cert",
            &format!("/run/l2sm/lab/{}/pki/ca.pem", lab.name),
        ])
        .arg("--topology")
        .arg(format!("/run/l2sm/lab/{}/topology.json", lab.name))
        .env("L2SM_API_USER", state["api_user"].as_str().unwrap())
        .env("L2SM_API_PASSWORD", state["api_password"].as_str().unwrap())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot start the agent");
    let mut agent = AgentProcess(child);
    let agent_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let target = || vsctl(&db, &["get-controller", &bridge]);

    let first = format!("ssl:{FIRST_IP}:{OPENFLOW_PORT}");
    wait_until(
        "OVS to get the resolved target",
        Duration::from_secs(20),
        || {
            assert!(
                agent.0.try_wait().unwrap().is_none(),
                "the agent exited: {}",
                agent_log()
            );
            target() == first
        },
    );
    wait_connected(&rt, &state, &db, &dpid, NODE_FIRST_IP);
    // OVS's own view (its status columns are refreshed every few seconds).
    let ovs_connected = || vsctl(&db, &["get", "Controller", &bridge, "is_connected"]) == "true";
    wait_until(
        "OVS to report the controller connected",
        Duration::from_secs(10),
        ovs_connected,
    );
    // The resolved target is not rewritten on every pass: the Controller row stays the same.
    let row = vsctl(&db, &["get", "Bridge", &bridge, "controller"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        vsctl(&db, &["get", "Bridge", &bridge, "controller"]),
        row,
        "the controller row was rewritten although the address did not change"
    );

    // Pods on the node ping pods on the other node through the switch.
    lab.attach("n1", "p1", "blue", "10.10.0.1/24");
    lab.attach("n2", "p2", "blue", "10.10.0.2/24");
    assert!(lab.pings("p1", "10.10.0.2"), "{}", agent_log());
    assert!(lab.pings("p2", "10.10.0.1"));

    // DNS goes away: the agent logs it, keeps the last address, stays up, the switch stays.
    dns.stop();
    wait_until(
        "the agent to log the failed resolution",
        Duration::from_secs(20),
        || agent_log().contains("keeping the last controller address"),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(agent.0.try_wait().unwrap().is_none(), "{}", agent_log());
    assert_eq!(target(), first);
    assert!(connected_from(&rt, &state, &dpid, NODE_FIRST_IP));
    assert!(lab.pings("p1", "10.10.0.2"));

    // The Service is recreated with another address: the agent follows, the switch reconnects.
    let _dns2 = Dnsmasq::start(&ns, &listen, SECOND_IP, tmp.path(), 2);
    let second = format!("ssl:{SECOND_IP}:{OPENFLOW_PORT}");
    wait_until(
        "OVS to get the new address",
        Duration::from_secs(20),
        || target() == second,
    );
    wait_connected(&rt, &state, &db, &dpid, NODE_SECOND_IP);
    wait_until(
        "OVS to report the new controller connected",
        Duration::from_secs(10),
        ovs_connected,
    );
    assert!(agent_log().contains("controller address changed"));
    assert!(lab.pings("p1", "10.10.0.2"), "{}", agent_log());
    assert!(lab.pings("p2", "10.10.0.1"));
    drop(agent);
}

#[test]
fn an_invalid_controller_target_is_refused_before_anything_changes() {
    for (target, reason) in [
        ("tcp:fd00::1:6653", "needs brackets"),
        ("tcp:ctl:notaport", "is not a port number"),
        ("http://ctl:6653", "unknown scheme"),
    ] {
        // The OVSDB socket does not exist: the target must be refused before it is tried.
        let out = Command::new(bin::l2sm())
            .args([
                "agent",
                "--node",
                "n1",
                "--ovsdb",
                "unix:/nonexistent/db.sock",
            ])
            .args(["--controller", target])
            .args(["--controller-api", "http://127.0.0.1:1"])
            .args(["--listen", "/nonexistent/agent.sock"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{target}");
        assert!(
            stderr.contains(reason) && stderr.contains(target),
            "{target}: {stderr}"
        );
    }
}
