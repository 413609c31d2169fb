//! The cluster-to-edge hop against a real `ovsdb-server` + `ovs-vswitchd` (userspace
//! datapath): `ConnectNetwork` makes one patch port pair between the edge's bridge and the
//! cluster bridge (`ls<token><id>` = OpenFlow `id`, `lsedge<id>` = `0xD000 + id`), is
//! idempotent, repairs a half-removed pair, refuses bad input without making anything;
//! `DisconnectNetwork` removes both ends (unknown network: OK); a restarted edge finds its
//! pairs again (same rows, same answer). Calls go through `l2sm_ned::client`.

use l2sm_ned::client::{ClientError, EdgeClient};
use l2sm_ned::grpc::Code;
use l2sm_ned::ConnectNetworkResponse;
use l2sm_netns::Netns;
use l2sm_pipeline::ids;
use l2sm_test_support::ovs::NetnsOvs;
use l2sm_test_support::{bin, wait_until};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NODE: &str = "hop-node";
const GRPC_PORT: u16 = 50051;
const CLUSTER_BRIDGE: &str = "br-cluster";

struct Fixture {
    ovs: NetnsOvs,
    edge: Option<Child>,
    rt: tokio::runtime::Runtime,
}

impl std::ops::Deref for Fixture {
    type Target = NetnsOvs;
    fn deref(&self) -> &NetnsOvs {
        &self.ovs
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The edge first; the namespace and its OVS go with `ovs`.
        self.stop_edge();
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            ovs: NetnsOvs::start("hoptest", "edge hop end-to-end tests"),
            edge: None,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn start_edge(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("edge.log"))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin::l2sm())
            .arg("edge")
            .arg("--config-dir")
            .arg(&self.dir)
            .arg(format!(
                "--ovsdb=unix:{}",
                self.dir.join("db.sock").display()
            ))
            .args(["--datapath-type", "netdev"])
            .args(["--cluster-bridge", CLUSTER_BRIDGE])
            .args(["--ned-grpc-insecure", "--ned-grpc-listen"])
            .arg(format!("127.0.0.1:{GRPC_PORT}"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.edge = Some(child);
        let ns = self.netns();
        wait_until("the edge's gRPC listener", Duration::from_secs(20), || {
            if let Some(Ok(Some(st))) = self.edge.as_mut().map(Child::try_wait) {
                panic!("edge exited ({st}): {}", self.log());
            }
            l2sm_netns::run_in_netns(&ns, || {
                std::net::TcpStream::connect(("127.0.0.1", GRPC_PORT)).is_ok()
            })
            .unwrap()
        });
    }

    fn stop_edge(&mut self) {
        if let Some(mut c) = self.edge.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("edge.log")).unwrap_or_default()
    }

    fn netns(&self) -> Netns {
        Netns::open(format!("/run/netns/{}", self.ns)).unwrap()
    }

    /// A fresh client connection from inside the namespace.
    fn client(&self) -> EdgeClient {
        let ns = self.netns();
        let tcp = l2sm_netns::run_in_netns(&ns, || {
            std::net::TcpStream::connect(("127.0.0.1", GRPC_PORT))
        })
        .unwrap()
        .unwrap();
        tcp.set_nonblocking(true).unwrap();
        self.rt.block_on(async {
            let tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
            EdgeClient::handshake(tcp, "edge", Duration::from_secs(30))
                .await
                .unwrap()
        })
    }

    fn connect(&self, network: &str, bridge: &str) -> Result<ConnectNetworkResponse, ClientError> {
        let mut c = self.client();
        self.rt.block_on(c.connect_network(network, bridge))
    }

    fn disconnect(&self, network: &str) -> Result<(), ClientError> {
        let mut c = self.client();
        self.rt.block_on(c.disconnect_network(network))
    }

    /// `name type ofport peer network uuid` of every port of `bridge`, sorted by name.
    fn ports(&self, bridge: &str) -> Vec<(String, String, String, String, String, String)> {
        let mut out: Vec<_> = self
            .vsctl(&["list-ports", bridge])
            .lines()
            .map(|p| {
                let get = |col: &str| {
                    self.vsctl(&["--if-exists", "get", "Interface", p, col])
                        .trim()
                        .trim_matches('"')
                        .to_string()
                };
                (
                    p.to_string(),
                    get("type"),
                    get("ofport"),
                    get("options:peer"),
                    get("external_ids:l2sm-edge-network"),
                    get("_uuid"),
                )
            })
            .collect();
        out.sort();
        out
    }
}

#[test]
fn connect_network_makes_one_patch_pair_idempotent_repairable_and_found_after_restart() {
    let mut f = Fixture::new();
    let bridge = ids::switch_name(NODE, "");
    let dpid = ids::datapath_id(&bridge);
    std::fs::write(
        f.dir.join("config.json"),
        serde_json::json!({"controllerIp": ["127.0.0.1"], "controllerPort": "6633",
            "providerName": "", "nodeName": NODE, "switchName": ""})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        f.dir.join("neighbors.json"),
        serde_json::json!({"name": NODE, "nodeIP": "10.0.0.1", "neighborNodes": ["10.0.0.2"]})
            .to_string(),
    )
    .unwrap();
    // The node agent's bridge, as far as the edge is concerned: same OVS, same datapath type.
    f.vsctl(&[
        "add-br",
        CLUSTER_BRIDGE,
        "--",
        "set",
        "bridge",
        CLUSTER_BRIDGE,
        "datapath_type=netdev",
        "fail_mode=secure",
    ]);
    f.vsctl(&["add-br", "br-kernel"]); // another datapath type
                                       // A bridge of the right type that is not the cluster switch (the underlay's, say).
    f.vsctl(&[
        "add-br",
        "br-underlay",
        "--",
        "set",
        "bridge",
        "br-underlay",
        "datapath_type=netdev",
    ]);
    f.start_edge();
    assert_eq!(
        f.ports(CLUSTER_BRIDGE),
        vec![],
        "nothing on the cluster bridge yet"
    );

    // Bad input: clear errors, nothing made.
    let before = (
        f.ports(&bridge),
        f.ports(CLUSTER_BRIDGE),
        f.ports("br-underlay"),
    );
    for (network, target, code) in [
        ("inter", "br-nosuch", Code::NotFound),
        ("inter", bridge.as_str(), Code::InvalidArgument),
        ("inter", "br-kernel", Code::FailedPrecondition),
        ("inter", "br-underlay", Code::PermissionDenied),
        ("", CLUSTER_BRIDGE, Code::InvalidArgument),
        ("in/ter", CLUSTER_BRIDGE, Code::InvalidArgument),
        ("inter", "a-name-longer-than-15", Code::InvalidArgument),
    ] {
        let e = f.connect(network, target).unwrap_err();
        assert_eq!(e.code(), Some(code), "{network} {target}: {e}");
    }
    assert_eq!(
        (
            f.ports(&bridge),
            f.ports(CLUSTER_BRIDGE),
            f.ports("br-underlay")
        ),
        before
    );

    // Connect: one pair, the numbers of the shared design.
    let a = f.connect("inter", CLUSTER_BRIDGE).unwrap();
    assert_eq!(a.node_name, NODE);
    assert!(a.edge_port >= 1 && a.edge_port <= 0xfff, "{a:?}");
    assert_eq!(a.cluster_port, 0xD000 + a.edge_port);
    let edge_name = ids::port_interface_name(dpid, a.edge_port as u32);
    let cluster_name = format!("lsedge{}", a.edge_port);
    let on_edge = f.ports(&bridge);
    let on_cluster = f.ports(CLUSTER_BRIDGE);
    let hop_on_edge: Vec<_> = on_edge.iter().filter(|p| p.1 == "patch").collect();
    assert_eq!(hop_on_edge.len(), 1, "{on_edge:?}");
    assert_eq!(on_cluster.len(), 1, "{on_cluster:?}");
    let (e, c) = (hop_on_edge[0], &on_cluster[0]);
    assert_eq!(
        (e.0.as_str(), e.2.as_str(), e.3.as_str(), e.4.as_str()),
        (
            edge_name.as_str(),
            a.edge_port.to_string().as_str(),
            cluster_name.as_str(),
            "inter"
        )
    );
    assert_eq!(
        (
            c.0.as_str(),
            c.1.as_str(),
            c.2.as_str(),
            c.3.as_str(),
            c.4.as_str()
        ),
        (
            cluster_name.as_str(),
            "patch",
            a.cluster_port.to_string().as_str(),
            edge_name.as_str(),
            "inter"
        )
    );

    // Idempotent: the same answer, the same rows.
    let snapshot = (f.ports(&bridge), f.ports(CLUSTER_BRIDGE));
    assert_eq!(f.connect("inter", CLUSTER_BRIDGE).unwrap(), a);
    assert_eq!((f.ports(&bridge), f.ports(CLUSTER_BRIDGE)), snapshot);

    // A second network: its own pair, another id.
    let b = f.connect("second", CLUSTER_BRIDGE).unwrap();
    assert_ne!(b.edge_port, a.edge_port);
    assert_eq!(b.cluster_port, 0xD000 + b.edge_port);
    assert_eq!(f.ports(CLUSTER_BRIDGE).len(), 2);

    // Half removed behind the edge's back: connecting again makes the pair again, same id.
    f.vsctl(&["del-port", CLUSTER_BRIDGE, &cluster_name]);
    assert_eq!(f.connect("inter", CLUSTER_BRIDGE).unwrap(), a);
    let again = f.ports(CLUSTER_BRIDGE);
    assert!(
        again
            .iter()
            .any(|p| p.0 == cluster_name && p.2 == a.cluster_port.to_string() && p.3 == edge_name),
        "{again:?}"
    );
    assert_eq!(
        f.ports(&bridge).iter().filter(|p| p.1 == "patch").count(),
        2,
        "no duplicate edge end"
    );

    // Restart: the pairs are found again (same rows, same answers).
    let snapshot = (f.ports(&bridge), f.ports(CLUSTER_BRIDGE));
    f.stop_edge();
    f.start_edge();
    assert_eq!(f.connect("inter", CLUSTER_BRIDGE).unwrap(), a);
    assert_eq!(f.connect("second", CLUSTER_BRIDGE).unwrap(), b);
    assert_eq!((f.ports(&bridge), f.ports(CLUSTER_BRIDGE)), snapshot);

    // Disconnect: both ends go, the other network stays; unknown and repeated are fine.
    f.disconnect("inter").unwrap();
    let left = f.ports(CLUSTER_BRIDGE);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].4, "second");
    assert_eq!(
        f.ports(&bridge).iter().filter(|p| p.1 == "patch").count(),
        1
    );
    f.disconnect("inter").unwrap();
    f.disconnect("never-connected").unwrap();
    let e = f.disconnect("in/ter").unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument));
    f.disconnect("second").unwrap();
    assert_eq!(f.ports(CLUSTER_BRIDGE), vec![]);
    assert_eq!(
        f.ports(&bridge).iter().filter(|p| p.1 == "patch").count(),
        0
    );
    // Nothing of a hop is left anywhere in the database.
    let rows = f.vsctl(&[
        "--columns=name",
        "find",
        "Port",
        "external_ids:l2sm-edge-network!=\"\"",
    ]);
    assert!(rows.trim().is_empty(), "{rows}");
}
