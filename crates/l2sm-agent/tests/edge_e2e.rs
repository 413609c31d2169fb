//! `l2sm edge` against a real `ovsdb-server` + `ovs-vswitchd` (userspace datapath) in a
//! network namespace of its own: the bridge's upstream name and datapath id, one tunnel per
//! neighbour with upstream's names, `neighbors.json` changes reconciled (other tunnels
//! untouched, a bad file ignored), `AttachInterface` over gRPC (veth, port number, peer in the
//! Linux bridge, idempotent per bridge, bad input changes nothing), `CreateVxlan`, and a
//! restart on an empty bridge re-discovering the ports with the same numbers.

use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use l2sm_ned::grpc::{self as ned_grpc, Code};
use l2sm_ned::{
    AttachInterfaceRequest, AttachInterfaceResponse, CreateVxlanRequest, CreateVxlanResponse,
    Message,
};
use l2sm_netns::Netns;
use l2sm_pipeline::ids;
use l2sm_test_support::ovs::NetnsOvs;
use l2sm_test_support::{bin, wait_until};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::Duration;

const NODE: &str = "edge-node-a";
const PROVIDER: &str = "idco";
const GRPC_PORT: u16 = 50051;

/// A namespace with its own OVS and (when started) an edge; everything removed on drop.
struct Fixture {
    ovs: NetnsOvs,
    edge: Option<Child>,
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
            ovs: NetnsOvs::start("edgetest", "edge end-to-end tests"),
            edge: None,
        }
    }

    fn write(&self, name: &str, text: &str) {
        // Atomic, as a ConfigMap update is (a half-written file is a bad file, not a change).
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.join(name)).unwrap();
    }

    fn start_edge(&mut self) {
        let log = std::fs::File::create(self.dir.join("edge.log")).unwrap();
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
            .args(["--datapath-type", "netdev", "--neighbors-poll-ms", "100"])
            .args(["--attach-bridge-prefix", "brtest"])
            .args(["--ned-grpc-insecure", "--ned-grpc-listen"])
            .arg(format!("127.0.0.1:{GRPC_PORT}"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.edge = Some(child);
        let ns = Netns::open(format!("/run/netns/{}", self.ns)).unwrap();
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

    /// Interfaces of the bridge: name -> (ofport, options, external_ids, uuid).
    fn interfaces(&self, bridge: &str) -> BTreeMap<String, Iface> {
        let ports = self.vsctl(&["list-ports", bridge]);
        ports
            .lines()
            .map(|p| {
                let get = |col: &str| {
                    self.vsctl(&["--if-exists", "get", "Interface", p, col])
                        .trim()
                        .to_string()
                };
                (
                    p.to_string(),
                    Iface {
                        ofport: get("ofport"),
                        ofport_request: get("ofport_request"),
                        options: get("options"),
                        external_ids: get("external_ids"),
                        uuid: get("_uuid"),
                    },
                )
            })
            // A port removed between the two reads.
            .filter(|(_, i): &(String, Iface)| !i.uuid.is_empty())
            .collect()
    }

    /// Links of the namespace (names), sorted.
    fn links(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect();
        v.sort();
        v
    }

    fn netns(&self) -> Netns {
        Netns::open(format!("/run/netns/{}", self.ns)).unwrap()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Iface {
    ofport: String,
    ofport_request: String,
    options: String,
    external_ids: String,
    uuid: String,
}

struct Once(Option<Bytes>);

impl Body for Once {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
}

/// One unary call from inside the namespace: (grpc-status, grpc-message, response message).
fn grpc_call(ns: &Netns, path: &'static str, message: Vec<u8>) -> (Code, String, Vec<u8>) {
    l2sm_netns::run_in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", GRPC_PORT))
                .await
                .unwrap();
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = Request::builder()
                .method("POST")
                .uri(format!("http://edge{path}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(Once(Some(Bytes::from(ned_grpc::frame(&message)))))
                .unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(60), send.send_request(req))
                .await
                .expect("answer in time")
                .unwrap();
            let (parts, mut body): (_, Incoming) = resp.into_parts();
            let (mut data, mut trailers) = (Vec::new(), None);
            while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                match f.unwrap().into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => trailers = f.into_trailers().ok(),
                }
            }
            let h = trailers.unwrap_or(parts.headers);
            let code = Code::from_value(h["grpc-status"].to_str().unwrap());
            let msg = h
                .get("grpc-message")
                .map(|v| ned_grpc::percent_decode(v.to_str().unwrap()))
                .unwrap_or_default();
            (code, msg, data.get(5..).unwrap_or_default().to_vec())
        })
    })
    .unwrap()
}

fn attach(ns: &Netns, bridge: &str) -> Result<AttachInterfaceResponse, (Code, String)> {
    let (code, msg, body) = grpc_call(
        ns,
        ned_grpc::ATTACH_INTERFACE_PATH,
        AttachInterfaceRequest {
            interface_name: bridge.into(),
        }
        .encode(),
    );
    if code == Code::Ok {
        Ok(AttachInterfaceResponse::decode(&body).unwrap())
    } else {
        Err((code, msg))
    }
}

fn create_vxlan(ns: &Netns, ip: &str) -> CreateVxlanResponse {
    let (code, msg, body) = grpc_call(
        ns,
        ned_grpc::CREATE_VXLAN_PATH,
        CreateVxlanRequest {
            ip_address: ip.into(),
        }
        .encode(),
    );
    assert_eq!(code, Code::Ok, "{msg}");
    CreateVxlanResponse::decode(&body).unwrap()
}

fn neighbors(local: &str, remotes: &[&str]) -> String {
    serde_json::json!({"name": NODE, "nodeIP": local, "neighborNodes": remotes}).to_string()
}

fn tunnels(ifaces: &BTreeMap<String, Iface>) -> BTreeMap<String, Iface> {
    ifaces
        .iter()
        .filter(|(n, _)| n.starts_with("vxlan-"))
        .map(|(n, i)| (n.clone(), i.clone()))
        .collect()
}

fn wait_tunnels(f: &Fixture, bridge: &str, want: &[&str]) -> BTreeMap<String, Iface> {
    let mut last = BTreeMap::new();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    wait_until(
        &format!("tunnels {want:?}"),
        Duration::from_secs(20),
        || {
            last = tunnels(&f.interfaces(bridge));
            last.keys().cloned().collect::<Vec<_>>() == want
        },
    );
    last
}

#[test]
fn edge_switch_from_upstream_files_with_grpc_attach_vxlan_and_restart() {
    let mut f = Fixture::new();
    let bridge = ids::switch_name(NODE, PROVIDER);
    let dpid = ids::datapath_id(&bridge);
    let token = &ids::dpid_hex(dpid)[..5];
    // What upstream's operator writes into the NED ConfigMap.
    f.write(
        "config.json",
        &serde_json::json!({"controllerIp": ["127.0.0.1"], "controllerPort": "6633",
            "providerName": "", "nodeName": NODE, "switchName": bridge})
        .to_string(),
    );
    f.write(
        "neighbors.json",
        &neighbors("10.0.0.1", &["10.0.0.2", "10.0.0.3"]),
    );
    f.ip(&["link", "add", "brtest1", "type", "bridge"]);
    f.ip(&["link", "add", "brtest2", "type", "bridge"]);
    f.start_edge();

    // The bridge: upstream's name and datapath id, OpenFlow 1.3 to the provider, secure.
    assert_eq!(f.vsctl(&["list-br"]).trim(), bridge);
    assert_eq!(
        f.vsctl(&["get", "Bridge", &bridge, "other_config:datapath-id"])
            .trim()
            .trim_matches('"'),
        ids::dpid_hex(dpid)
    );
    assert_eq!(
        f.vsctl(&["get-controller", &bridge]).trim(),
        "tcp:127.0.0.1:6633"
    );
    assert_eq!(
        f.vsctl(&["get", "Bridge", &bridge, "fail_mode"]).trim(),
        "secure"
    );

    // Tunnels: upstream's names (reference: 10.0.0.1 + 10.0.0.2 -> vxlan-ba17f).
    let t2 = "vxlan-ba17f";
    let t3 = &ids::vxlan_port_name("10.0.0.110.0.0.3");
    let first = wait_tunnels(&f, &bridge, &[t2, t3]);
    let opts = &first[t2].options;
    for kv in [
        "remote_ip=\"10.0.0.2\"",
        "local_ip=\"10.0.0.1\"",
        "key=flow",
        "dst_port=\"7000\"",
    ] {
        assert!(opts.contains(kv), "{t2} options {opts} lack {kv}");
    }

    // neighbors.json changes: .3 leaves, .4 joins; .2's tunnel is the same row.
    f.write(
        "neighbors.json",
        &neighbors("10.0.0.1", &["10.0.0.2", "10.0.0.4"]),
    );
    let t4 = &ids::vxlan_port_name("10.0.0.110.0.0.4");
    let second = wait_tunnels(&f, &bridge, &[t2, t4]);
    assert_eq!(
        second[t2].uuid, first[t2].uuid,
        "an unchanged tunnel is not recreated"
    );
    // A bad file is ignored: nothing changes.
    f.write(
        "neighbors.json",
        "{\"nodeIP\": \"10.0.0.1\", \"neighborNodes\": [\"edge-b.example\"]}",
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(tunnels(&f.interfaces(&bridge)), second);
    assert!(
        f.log().contains("neighbors.json change ignored"),
        "{}",
        f.log()
    );
    f.write(
        "neighbors.json",
        &neighbors("10.0.0.1", &["10.0.0.2", "10.0.0.4"]),
    );

    // AttachInterface: veth ls<token>1 <-> lspeer1, peer in brtest1, OpenFlow port 1.
    let ns = f.netns();
    let t = std::time::Instant::now();
    let a1 = attach(&ns, "brtest1").unwrap();
    eprintln!(
        "AttachInterface (new port, h2c connection included): {:?}",
        t.elapsed()
    );
    assert_eq!(
        a1,
        AttachInterfaceResponse {
            interface_num: 1,
            node_name: NODE.into()
        }
    );
    let p1 = format!("ls{token}1");
    let ifaces = f.interfaces(&bridge);
    assert_eq!(ifaces[&p1].ofport, "1");
    assert_eq!(ifaces[&p1].ofport_request, "1");
    assert!(f
        .ip(&["-o", "link", "show", "lspeer1"])
        .contains("master brtest1"));
    assert!(
        f.ip(&["-o", "link", "show", &p1]).contains("state UP")
            || f.ip(&["-o", "link", "show", &p1]).contains(",UP")
    );
    // The same Linux bridge again: the same port, nothing new.
    let links = f.links();
    let t = std::time::Instant::now();
    assert_eq!(attach(&ns, "brtest1").unwrap(), a1);
    eprintln!("AttachInterface (existing port): {:?}", t.elapsed());
    assert_eq!(f.links(), links);
    let a2 = attach(&ns, "brtest2").unwrap();
    assert_eq!(a2.interface_num, 2);
    assert!(f
        .ip(&["-o", "link", "show", "lspeer2"])
        .contains("master brtest2"));

    // Bad input changes nothing.
    let (links, ports) = (f.links(), f.interfaces(&bridge));
    let bad = [
        ("nope", Code::NotFound),
        ("lo", Code::FailedPrecondition),
        ("a/b", Code::InvalidArgument),
        ("", Code::InvalidArgument),
        ("x23456789012345678", Code::InvalidArgument),
    ];
    for (name, code) in bad {
        let e = attach(&ns, name).unwrap_err();
        assert_eq!(e.0, code, "{name:?}: {e:?}");
    }
    // A Linux bridge of the node that is not one of the numbered NAD bridges.
    f.ip(&["link", "add", "hostbr0", "type", "bridge"]);
    let e = attach(&ns, "hostbr0").unwrap_err();
    assert_eq!(e.0, Code::PermissionDenied, "{e:?}");
    f.ip(&["link", "del", "hostbr0"]);
    // An lspeer3 that someone else made: refused before anything is created.
    f.ip(&["link", "add", "lspeer3", "type", "bridge"]);
    let e = attach(&ns, "brtest1x").unwrap_err();
    assert_eq!(e.0, Code::NotFound);
    f.ip(&["link", "add", "brtest3", "type", "bridge"]);
    let e = attach(&ns, "brtest3").unwrap_err();
    assert_eq!(e.0, Code::FailedPrecondition, "{e:?}");
    assert!(e.1.contains("lspeer3"), "{e:?}");
    f.ip(&["link", "del", "lspeer3"]);
    f.ip(&["link", "del", "brtest3"]);
    assert_eq!(f.links(), links);
    assert_eq!(f.interfaces(&bridge), ports);

    // CreateVxlan: a real tunnel, the others kept; bad addresses refused with a reason.
    let t = std::time::Instant::now();
    let r = create_vxlan(&ns, "10.0.0.9");
    eprintln!("CreateVxlan (new tunnel): {:?}", t.elapsed());
    assert!(r.success, "{r:?}");
    assert_eq!(r.message, "VxLAN with IP 10.0.0.9 created successfully");
    let t9 = &ids::vxlan_port_name("10.0.0.110.0.0.9");
    let third = wait_tunnels(&f, &bridge, &[t2, t4, t9]);
    assert_eq!(third[t2].uuid, first[t2].uuid);
    for (ip, why) in [
        ("not-an-ip", "invalid IP address"),
        ("10.0.0.1", "own address"),
        ("fd00::1", "different address families"),
        ("", "invalid IP address"),
    ] {
        let r = create_vxlan(&ns, ip);
        assert!(!r.success && r.message.contains(why), "{ip:?}: {r:?}");
    }
    assert_eq!(tunnels(&f.interfaces(&bridge)), third);
    // A tunnel added over gRPC survives a neighbors.json change.
    f.write("neighbors.json", &neighbors("10.0.0.1", &["10.0.0.2"]));
    wait_tunnels(&f, &bridge, &[t2, t9]);

    // Restart on an empty bridge (upstream's edge starts with an empty OVS database): the
    // veths are found again and get their old OpenFlow numbers and Linux bridges.
    f.stop_edge();
    f.vsctl(&["del-br", &bridge]);
    f.start_edge();
    let p2 = format!("ls{token}2");
    wait_until("ports re-discovered", Duration::from_secs(10), || {
        let i = f.interfaces(&bridge);
        i.get(&p1).is_some_and(|r| r.ofport == "1") && i.get(&p2).is_some_and(|r| r.ofport == "2")
    });
    wait_tunnels(&f, &bridge, &[t2]);
    assert_eq!(
        attach(&ns, "brtest2").unwrap().interface_num,
        2,
        "recorded bridge recovered"
    );
    assert!(
        f.log().contains("re-attached existing edge port"),
        "{}",
        f.log()
    );
    let e3 = attach(&ns, "brtest1").unwrap();
    assert_eq!(e3.interface_num, 1);
}
