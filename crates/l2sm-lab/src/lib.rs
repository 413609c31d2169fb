//! `l2sm lab`: a whole L2S-M cluster on one Linux host. Network namespaces play the nodes and
//! the pods; every node runs its own `ovsdb-server` + `ovs-vswitchd` (userspace datapath) and a
//! real `l2sm agent`; one real `l2sm controller` sits on the underlay.
//!
//! ```text
//!  netns l2sm-<lab>-ul : Linux bridge ul0 10.250.0.254/24, l2sm controller (:6653, :8181)
//!        | veth n<k> <-> eth0
//!  netns l2sm-<lab>-n<k>: br-phy (OVS, standalone) holds eth0 and 10.250.0.k/24
//!                         br-<hash> (OVS, secure, OpenFlow 1.3) with vxlan-* tunnels + pod ports
//!  netns l2sm-<lab>-p-<pod>: net1, net2, … (veth peers of the pod ports)
//! ```
//! Nothing is created in the host's own namespace except files under `/run/l2sm/lab`.

#![warn(clippy::unwrap_used)] // input paths answer with errors; tests may unwrap

pub mod api_users;
pub mod apply;
pub mod ids;
pub mod multi;
pub mod pki;
pub mod procs;
pub mod state;

use anyhow::{anyhow, bail, Context as _};
use l2sm_agent::ovs::Ovs;
use l2sm_agent::proto::{self as agent_proto, AgentRequest, AgentStatus, Attachment};
use l2sm_api::topology::{LinkEntry, NodeEntry, TopologyFile};
use l2sm_api::v1::{NetworkView, SwitchStatus};
use l2sm_api::ControllerClient;
use l2sm_netns::Netns;
use state::{
    Lab, LabState, NodeState, PodAttachment, PodState, Site, CONTROLLER_IP, CONTROLLER_MGMT_IP,
    UNDERLAY_PREFIX,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Pod interface MTU in the lab: the underlay is 1500 and VXLAN costs 50 bytes.
pub const LAB_POD_MTU: u32 = 1450;
const OVS_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

fn ns_path(name: &str) -> PathBuf {
    Path::new(l2sm_netns::NETNS_DIR).join(name)
}

fn step(label: &str) -> Instant {
    eprint!("  {label} … ");
    Instant::now()
}

fn done(t: Instant) {
    eprintln!("done ({} ms)", t.elapsed().as_millis());
}

/// Takes the lab's lock for `lab up`: refuses a lab that is up, and removes what an earlier
/// lab of that name left behind.
fn claim_for_up(lab: &Lab) -> anyhow::Result<state::LabLock> {
    let lock = lab.lock()?;
    if let Some(existing) = lab.load()? {
        if lab_alive(&existing) {
            bail!(
                "lab {:?} is already up (run `l2sm lab down` first)",
                lab.name
            );
        }
    }
    if lab_leftovers(lab)? {
        eprintln!("removing what is left of an earlier lab {:?}", lab.name);
        teardown(lab, false)?;
    }
    Ok(lock)
}

/// Fails unless we are root and the OVS programs are installed.
pub fn check_prerequisites() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab needs root (network namespaces, Open vSwitch)");
    }
    for tool in ["ovsdb-server", "ovs-vswitchd", "ovsdb-tool"] {
        if which(tool).is_none() {
            bail!("{tool} not found: install Open vSwitch (apt-get install openvswitch-switch)");
        }
    }
    if !Path::new(OVS_SCHEMA).exists() {
        bail!("{OVS_SCHEMA} not found: install Open vSwitch (apt-get install openvswitch-common)");
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `l2sm lab up`. OpenFlow runs over mutually authenticated TLS (a lab CA, a certificate per
/// node) unless `insecure_openflow`, which keeps plain TCP (with a warning).
pub async fn up(
    lab: &Lab,
    nodes: usize,
    topology: &str,
    insecure_openflow: bool,
) -> anyhow::Result<()> {
    check_prerequisites()?;
    if !(1..=50).contains(&nodes) {
        bail!("--nodes must be between 1 and 50, not {nodes}");
    }
    let _lock = claim_for_up(lab)?;
    let started = Instant::now();
    eprintln!("bringing up lab {:?} with {nodes} nodes", lab.name);
    let mut state = LabState {
        name: lab.name.clone(),
        api_user: "l2sm".into(),
        api_password: random_token()?,
        insecure_openflow,
        ..LabState::default()
    };
    if insecure_openflow {
        eprintln!("warning: --insecure-openflow: switches talk to the controller over plain TCP, unauthenticated");
    }
    lab.save(&state)?;
    let result = build(lab, &mut state, nodes, topology).await;
    if let Err(e) = result {
        let _ = lab.save(&state);
        if std::env::var_os("L2SM_LAB_KEEP_ON_FAILURE").is_some() {
            eprintln!(
                "failed; keeping the half-built lab for inspection (L2SM_LAB_KEEP_ON_FAILURE)"
            );
        } else {
            eprintln!("failed; removing the half-built lab");
            let _ = teardown(lab, true);
        }
        return Err(e);
    }
    state.ready = true;
    lab.save(&state)?;
    eprintln!(
        "lab {:?} is up: {nodes} nodes, all switches connected, in {} ms",
        lab.name,
        started.elapsed().as_millis()
    );
    Ok(())
}

async fn build(
    lab: &Lab,
    state: &mut LabState,
    nodes: usize,
    topology: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(lab.dir())?;
    let site = lab.site(None)?;
    let t = step("underlay");
    let ul = l2sm_netns::create_named(&lab.underlay_ns())?;
    let ul_addr: ipnet::IpNet = format!("{CONTROLLER_IP}/24").parse()?;
    let mgmt_addr: ipnet::IpNet = format!("{CONTROLLER_MGMT_IP}/24").parse()?;
    l2sm_netns::with_netlink(&ul, move |nl| {
        nl.create_bridge("ul0")?;
        nl.add_address("ul0", ul_addr)?;
        nl.add_address("ul0", mgmt_addr)?;
        nl.set_up("ul0")
    })?;
    done(t);

    for k in 1..=nodes {
        let name = format!("n{k}");
        let t = step(&format!("node {name}"));
        state.nodes.push(NodeState {
            name: name.clone(),
            ip: format!("{UNDERLAY_PREFIX}.{k}"),
            ..Default::default()
        });
        build_node(lab, state, k - 1, &ul, &site)
            .await
            .with_context(|| format!("node {name}"))?;
        lab.save(state)?;
        done(t);
    }

    write_topology(lab, state, topology)?;
    if !state.insecure_openflow {
        let t = step("switch certificates");
        let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
        pki::create(lab, &names)?;
        done(t);
    }
    let t = step("controller");
    start_controller(lab, state, &ul)?;
    lab.save(state)?;
    let api = lab.controller_api(state)?;
    wait_async("the controller API", Duration::from_secs(10), || async {
        Ok(api.health().await.is_ok())
    })
    .await?;
    done(t);

    let t = step("agents");
    for idx in 0..nodes {
        start_agent(lab, state, idx)?;
    }
    lab.save(state)?;
    for node in &state.nodes {
        let socket = lab.agent_socket(&node.name);
        let pid = node.agent_pid;
        wait_async(
            &format!("the agent of {}", node.name),
            AGENT_TIMEOUT,
            || {
                let socket = socket.clone();
                async move {
                    if let Some(pid) = pid {
                        if !procs::alive(pid, "agent") {
                            bail!("the agent exited; see its log");
                        }
                    }
                    Ok(agent_proto::call_async(
                        socket,
                        AgentRequest::Status,
                        Duration::from_secs(2),
                    )
                    .await
                    .is_ok())
                }
            },
        )
        .await
        .with_context(|| log_tail(&lab.node_dir(&node.name).join("agent.log")))?;
    }
    done(t);

    let t = step("switches connecting to the controller");
    wait_async(
        "every switch to connect",
        Duration::from_secs(20),
        || async { Ok(connected_switches(&api).await?.len() >= nodes) },
    )
    .await?;
    done(t);

    // Ready means a first frame gets through: every tunnel between lab nodes exists at both
    // ends and has carried the controller's LLDP probes both ways, and every switch has
    // confirmed the flows and groups that use them. The controller uses a link as soon as
    // both ports exist, but a userspace VXLAN port drops the first frame it sends to a remote
    // end it has not resolved by ARP yet: a probe that went through proves that is done.
    let t = step("links between the switches");
    let expected = expected_tunnels(&site.topology_path(), &state.nodes)?;
    wait_async(
        &format!("{expected} tunnels to carry LLDP probes both ways"),
        Duration::from_secs(20),
        || async { Ok(usable_tunnels(&api.links().await?) >= expected) },
    )
    .await?;
    api.settle(l2sm_api::v1::MAX_WAIT_MS)
        .await
        .context("the switches did not confirm their flows")?;
    done(t);
    Ok(())
}

/// Tunnels of a topology file between two of `nodes` (a file may name other switches).
fn expected_tunnels(path: &Path, nodes: &[NodeState]) -> anyhow::Result<usize> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc = TopologyFile::from_json(&text).with_context(|| format!("{}", path.display()))?;
    let ours = |n: &str| nodes.iter().any(|node| node.name == n);
    Ok(match doc.links {
        None => nodes.len() * nodes.len().saturating_sub(1) / 2,
        Some(links) => links
            .iter()
            .filter(|l| l.kind.as_deref().is_none_or(|k| k == "tunnel"))
            .filter(|l| ours(&l.endpoint_a) && ours(&l.endpoint_b))
            .count(),
    })
}

/// Tunnels the controller reports with both ports known, the link usable and probes heard
/// both ways.
pub fn usable_tunnels(links: &[l2sm_api::v1::LinkView]) -> usize {
    links
        .iter()
        .filter(|l| l.live && l.probed && l.kind == "tunnel" && l.a_port != 0 && l.b_port != 0)
        .count()
}

/// The last meaningful line of a log, to explain a failure before the lab is torn down.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines
        .iter()
        .rev()
        .find(|l| l.contains("panicked") || l.contains("error") || l.contains("ERROR"))
        .or(lines.last())
        .copied()
        .unwrap_or("(empty log)");
    format!("{}: {}", path.display(), last.trim())
}

/// An OVS daemon that keeps all its files (pidfile, control socket, log) in `dir`.
fn ovs_daemon(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    let file = |ext: &str| dir.join(format!("{program}.{ext}")).display().to_string();
    cmd.env("OVS_RUNDIR", dir)
        .env("OVS_DBDIR", dir)
        .env("OVS_LOGDIR", dir)
        .arg(format!("--pidfile={}", file("pid")))
        .arg(format!("--unixctl={}", file("ctl")))
        .arg(format!("--log-file={}", file("log")))
        .args(["--detach", "--no-chdir"]);
    cmd
}

fn start_ovsdb_server(ns: &Netns, dir: &Path) -> anyhow::Result<i32> {
    let mut cmd = ovs_daemon("ovsdb-server", dir);
    cmd.arg(dir.join("conf.db"))
        .arg(format!("--remote=punix:{}", dir.join("db.sock").display()));
    procs::start_ovs_daemon(ns, cmd, &dir.join("ovsdb-server.pid"))
}

fn start_vswitchd(ns: &Netns, dir: &Path) -> anyhow::Result<i32> {
    let mut cmd = ovs_daemon("ovs-vswitchd", dir);
    cmd.arg(format!("unix:{}", dir.join("db.sock").display()));
    procs::start_ovs_daemon(ns, cmd, &dir.join("ovs-vswitchd.pid"))
}

async fn build_node(
    lab: &Lab,
    state: &mut LabState,
    idx: usize,
    ul: &Netns,
    site: &Site,
) -> anyhow::Result<()> {
    let node = state.nodes[idx].clone();
    let ns = l2sm_netns::create_named(&lab.node_ns(&node.name))?;
    let peer = node.name.clone();
    let ul_ns = ul.clone();
    l2sm_netns::with_netlink(&ns, move |nl| {
        nl.create_veth("eth0", &peer, Some(&ul_ns), Some(1500))?;
        nl.set_up("eth0")
    })?;
    let peer = node.name.clone();
    // OVS userspace forwards what it reads from a socket as is: frames must carry complete
    // checksums, so checksum offload is off on every device that feeds OVS on the underlay.
    l2sm_netns::with_netlink(ul, move |nl| {
        nl.set_master(&peer, "ul0")?;
        nl.set_tx_checksum(&peer, false)?;
        nl.set_up(&peer)
    })?;
    // Management interface: the node's own kernel path to the controller.
    let (mgmt_peer, ul_ns2) = (format!("m{}", node.name), ul.clone());
    let host = node
        .ip
        .rsplit('.')
        .next()
        .ok_or_else(|| anyhow!("bad node address {}", node.ip))?;
    let mgmt_ip: ipnet::IpNet = format!("{}.{host}/24", site.mgmt_prefix).parse()?;
    let peer2 = mgmt_peer.clone();
    l2sm_netns::with_netlink(&ns, move |nl| {
        nl.create_veth("mgmt", &peer2, Some(&ul_ns2), Some(1500))?;
        nl.add_address("mgmt", mgmt_ip)?;
        nl.set_up("mgmt")
    })?;
    l2sm_netns::with_netlink(ul, move |nl| {
        nl.set_master(&mgmt_peer, "ul0")?;
        nl.set_up(&mgmt_peer)
    })?;
    // The underlay veth must not answer ARP for the node address: OVS owns it (on br-phy).
    l2sm_netns::set_sysctl(&ns, "net/ipv4/conf/eth0/arp_ignore", "8")?;

    let dir = lab.node_dir(&node.name);
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("conf.db");
    let out = Command::new("ovsdb-tool")
        .arg("create")
        .arg(&db)
        .arg(OVS_SCHEMA)
        .output()?;
    if !out.status.success() {
        bail!(
            "ovsdb-tool create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    state.nodes[idx].ovsdb_pid = Some(start_ovsdb_server(&ns, &dir)?);
    lab.save(state)?;
    let db_sock = dir.join("db.sock");
    let ovs = Ovs::connect(&db_sock.display().to_string(), Duration::from_secs(5)).await?;
    ovs.init().await?;
    state.nodes[idx].vswitchd_pid = Some(start_vswitchd(&ns, &dir)?);
    lab.save(state)?;

    // Emulate the node's NIC: userspace tunnels need the underlay address on an OVS bridge.
    ovs.ensure_plain_bridge("br-phy", "netdev", "eth0").await?;
    let addr: ipnet::IpNet = format!("{}/24", node.ip).parse()?;
    let ns2 = ns.clone();
    wait_async("br-phy to appear", Duration::from_secs(5), || {
        let ns2 = ns2.clone();
        async move {
            Ok(l2sm_netns::with_netlink(&ns2, |nl| {
                nl.link_exists("br-phy")
            })?)
        }
    })
    .await?;
    l2sm_netns::with_netlink(&ns, move |nl| {
        nl.add_address("br-phy", addr)?;
        nl.set_tx_checksum("br-phy", false)?;
        nl.set_up("br-phy")
    })?;
    Ok(())
}

/// The overlay topology every agent reads: all nodes with their addresses; no `links`, which
/// means a full mesh.
/// The overlay topology the agents and the controller read: the lab's nodes with their
/// addresses, and the links of the chosen shape (`mesh`: no `links`, i.e. a full mesh).
fn write_topology(lab: &Lab, state: &LabState, shape: &str) -> anyhow::Result<()> {
    write_topology_at(&lab.dir().join("topology.json"), &state.nodes, shape)
}

/// [`write_topology`] for `nodes`, into `path`.
fn write_topology_at(path: &Path, node_list: &[NodeState], shape: &str) -> anyhow::Result<()> {
    let names: Vec<&str> = node_list.iter().map(|n| n.name.as_str()).collect();
    let mut doc = match shape {
        "mesh" => TopologyFile::default(),
        "line" | "ring" => {
            let mut links: Vec<_> = names
                .windows(2)
                .map(|w| LinkEntry::tunnel(w[0], w[1]))
                .collect();
            if shape == "ring" && names.len() > 2 {
                links.push(LinkEntry::tunnel(names[names.len() - 1], names[0]));
            }
            TopologyFile {
                links: Some(links),
                ..Default::default()
            }
        }
        "star" => TopologyFile {
            links: Some(
                names
                    .iter()
                    .skip(1)
                    .map(|n| LinkEntry::tunnel(names[0], n))
                    .collect(),
            ),
            ..Default::default()
        },
        file => {
            let text = std::fs::read_to_string(file).with_context(|| {
                format!("--topology {file:?}: not mesh, line, ring, star or a readable file")
            })?;
            TopologyFile::from_json(&text).with_context(|| format!("topology {file}"))?
        }
    };
    // The lab's nodes get their underlay addresses; other nodes of a file (switches the
    // agents do not manage) stay as written.
    let mut nodes: Vec<NodeEntry> = node_list
        .iter()
        .map(|n| NodeEntry::Full {
            name: n.name.clone(),
            node_ip: Some(n.ip.to_string()),
            dpid: None,
        })
        .collect();
    for n in std::mem::take(&mut doc.nodes) {
        let name = match &n {
            NodeEntry::Name(name) | NodeEntry::Full { name, .. } => name.as_str(),
        };
        if !names.contains(&name) {
            nodes.push(n);
        }
    }
    doc.nodes = nodes;
    let text = serde_json::to_string_pretty(&doc)?;
    l2sm_api::topology::parse(&text).with_context(|| format!("--topology {shape}"))?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Environment of the lab's own daemons: API credentials and the log filter.
fn daemon_env(state: &LabState) -> [(&'static str, String); 3] {
    [
        ("L2SM_API_USER", state.api_user.clone()),
        ("L2SM_API_PASSWORD", state.api_password.clone()),
        (
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ),
    ]
}

fn start_agent(lab: &Lab, state: &mut LabState, idx: usize) -> anyhow::Result<()> {
    let node = state.nodes[idx].clone();
    let site = lab.site(node.cluster.as_deref())?;
    let dir = lab.node_dir(&node.name);
    let exe = std::env::current_exe()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["agent", "--node", &node.name])
        .arg("--ovsdb")
        .arg(format!("unix:{}", dir.join("db.sock").display()))
        .args(["--datapath-type", "netdev"])
        .args(agent_openflow_args(lab, state, &site, &node.name))
        .args([
            "--controller-api",
            &format!("http://{}:{}", site.controller_mgmt_ip(), state::API_PORT),
        ])
        .arg("--listen")
        .arg(lab.agent_socket(&node.name))
        .args(["--mtu", &LAB_POD_MTU.to_string()])
        .args(["--disable-tx-offload", "--max-backoff-ms", "1000"])
        .envs(daemon_env(state))
        .envs(api_users::agent_env(lab, &node.name)?)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    cmd.arg("--topology").arg(site.topology_path());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let ns = Netns::open_named(&lab.node_ns(&node.name))?;
    let child = procs::spawn_in(&ns, cmd)?;
    state.nodes[idx].agent_pid = Some(i32::try_from(child.id())?);
    Ok(())
}

async fn wait_async<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    let mut last_err = None;
    while start.elapsed() < timeout {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    match last_err {
        Some(e) => Err(e.context(format!("timed out waiting for {what}"))),
        None => bail!("timed out waiting for {what}"),
    }
}

/// Switches the controller has a session with.
pub async fn connected_switches(api: &ControllerClient) -> anyhow::Result<Vec<SwitchStatus>> {
    Ok(api.switches().await?)
}

fn lab_alive(state: &LabState) -> bool {
    multi::extra_processes(state)
        .into_iter()
        .any(|(p, word)| procs::alive(p, word))
        || state
            .controller_pid
            .is_some_and(|p| procs::alive(p, "controller"))
        || state.nodes.iter().any(|n| {
            n.agent_pid.is_some_and(|p| procs::alive(p, "agent"))
                || n.vswitchd_pid
                    .is_some_and(|p| procs::alive(p, "ovs-vswitchd"))
        })
}

fn lab_namespaces(lab: &Lab) -> anyhow::Result<Vec<String>> {
    let prefix = lab.ns_prefix();
    Ok(l2sm_netns::list_named()?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect())
}

fn lab_leftovers(lab: &Lab) -> anyhow::Result<bool> {
    Ok(lab.dir().exists() || !lab_namespaces(lab)?.is_empty())
}

/// Removes everything of a lab: processes (by recorded pid, then any process living in one of
/// the lab's namespaces), namespaces, files. Safe to run on a half-built or crashed lab.
pub fn teardown(lab: &Lab, verbose: bool) -> anyhow::Result<usize> {
    let mut removed = 0;
    let grace = Duration::from_secs(3);
    if let Ok(Some(state)) = lab.load() {
        // IDS runs first: they would otherwise try to clean up what is being removed.
        for ids in state.ids.values() {
            procs::stop(ids.pid, "l2sm", grace);
        }
        for node in &state.nodes {
            if let Some(p) = node.agent_pid {
                procs::stop(p, "agent", grace);
            }
        }
        if let Some(p) = state.controller_pid {
            procs::stop(p, "controller", grace);
        }
        for (p, word) in multi::extra_processes(&state) {
            procs::stop(p, word, grace);
        }
        for node in &state.nodes {
            if let Some(p) = node.vswitchd_pid {
                procs::stop(p, "ovs-vswitchd", grace);
            }
            if let Some(p) = node.ovsdb_pid {
                procs::stop(p, "ovsdb-server", grace);
            }
        }
    }
    let mut errors = Vec::new();
    for name in lab_namespaces(lab)? {
        if let Ok(ns) = Netns::open_named(&name) {
            for pid in l2sm_netns::pids_in_netns(&ns).unwrap_or_default() {
                procs::stop(pid, "", Duration::from_millis(500));
            }
        }
        match l2sm_netns::delete_named(&name) {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(e) => errors.push(format!("namespace {name}: {e}")),
        }
    }
    // The pods' /etc/netns directories (resolv.conf), whether or not their namespaces are
    // still there.
    let prefix = lab.ns_prefix();
    if let Ok(entries) = std::fs::read_dir(state::NETNS_ETC) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                match remove_pod_etc(&entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
        }
    }
    if lab.dir().exists() {
        std::fs::remove_dir_all(lab.dir())
            .with_context(|| format!("cannot remove {}", lab.dir().display()))?;
        removed += 1;
    }
    let _ = std::fs::remove_file(Path::new(state::LAB_ROOT).join(format!("{}.lock", lab.name)));
    let _ = std::fs::remove_dir(state::LAB_ROOT);
    let _ = std::fs::remove_dir("/run/l2sm");
    if verbose {
        eprintln!(
            "removed {removed} namespaces/directories of lab {:?}",
            lab.name
        );
    }
    if !errors.is_empty() {
        bail!("could not remove everything: {}", errors.join("; "));
    }
    Ok(removed)
}

/// `l2sm lab down`.
pub fn down(lab: &Lab) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab needs root");
    }
    let lock = lab.lock()?;
    let removed = teardown(lab, false)?;
    drop(lock);
    let _ = std::fs::remove_file(Path::new(state::LAB_ROOT).join(format!("{}.lock", lab.name)));
    let _ = std::fs::remove_dir(state::LAB_ROOT);
    let _ = std::fs::remove_dir("/run/l2sm");
    if removed == 0 {
        eprintln!("lab {:?} was not up; nothing to remove", lab.name);
    } else {
        eprintln!("lab {:?} is down", lab.name);
    }
    Ok(())
}

/// `l2sm lab restart controller|NODE`: stops (if running) and starts the controller or a
/// node's agent again, keeping their state.
pub async fn restart(lab: &Lab, target: &str) -> anyhow::Result<()> {
    let _lock = lab.lock()?;
    let mut state = lab.load_ready()?;
    let grace = Duration::from_secs(3);
    if state.is_multi() {
        if target == "controller" {
            bail!("lab {:?} has several controllers: restart provider, C/controller or C/edge (C a cluster)", lab.name);
        }
        if multi::restart(lab, &mut state, target).await? {
            return Ok(());
        }
    }
    if target == "controller" {
        if let Some(pid) = state.controller_pid {
            procs::stop(pid, "controller", grace);
        }
        let ul = Netns::open_named(&lab.underlay_ns())?;
        start_controller(lab, &mut state, &ul)?;
        lab.save(&state)?;
        let api = lab.controller_api(&state)?;
        wait_async("the controller API", Duration::from_secs(10), || async {
            Ok(api.health().await.is_ok())
        })
        .await?;
        eprintln!("controller restarted");
        return Ok(());
    }
    let (node, daemon) = target.split_once('/').unwrap_or((target, "agent"));
    let Some(idx) = state.nodes.iter().position(|n| n.name == node) else {
        bail!("nothing named {target:?} to restart: use `controller`, NODE, NODE/ovs-vswitchd or NODE/ovsdb-server");
    };
    let ns = Netns::open_named(&lab.node_ns(node))?;
    let dir = lab.node_dir(node);
    match daemon {
        "agent" => {}
        "ovs-vswitchd" => {
            if let Some(pid) = state.nodes[idx].vswitchd_pid {
                procs::stop(pid, "ovs-vswitchd", grace);
            }
            state.nodes[idx].vswitchd_pid = Some(start_vswitchd(&ns, &dir)?);
            lab.save(&state)?;
            eprintln!("ovs-vswitchd of {node} restarted");
            return Ok(());
        }
        "ovsdb-server" => {
            if let Some(pid) = state.nodes[idx].ovsdb_pid {
                procs::stop(pid, "ovsdb-server", grace);
            }
            state.nodes[idx].ovsdb_pid = Some(start_ovsdb_server(&ns, &dir)?);
            lab.save(&state)?;
            eprintln!("ovsdb-server of {node} restarted");
            return Ok(());
        }
        other => bail!("cannot restart {other:?}: use agent, ovs-vswitchd or ovsdb-server"),
    }
    if let Some(pid) = state.nodes[idx].agent_pid {
        procs::stop(pid, "agent", grace);
    }
    start_agent(lab, &mut state, idx)?;
    lab.save(&state)?;
    let socket = lab.agent_socket(node);
    wait_async(&format!("the agent of {node}"), AGENT_TIMEOUT, || {
        let socket = socket.clone();
        async move {
            Ok(
                agent_proto::call_async(socket, AgentRequest::Status, Duration::from_secs(2))
                    .await
                    .is_ok(),
            )
        }
    })
    .await?;
    eprintln!("agent of {node} restarted");
    Ok(())
}

/// The controller's OpenFlow TLS flags (or `--insecure-openflow`).
fn controller_openflow_args(lab: &Lab, state: &LabState, site: &Site) -> Vec<std::ffi::OsString> {
    if state.insecure_openflow {
        return vec!["--insecure-openflow".into()];
    }
    let (cert, key) = pki::controller_files(lab, site);
    vec![
        "--openflow-tls-cert".into(),
        cert.into(),
        "--openflow-tls-key".into(),
        key.into(),
        "--openflow-tls-ca".into(),
        pki::paths(lab).ca_cert.into(),
    ]
}

/// An agent's controller target and switch certificate flags: `ssl:` with the node's own
/// key and certificate, or `tcp:` with `--insecure-openflow`.
fn agent_openflow_args(
    lab: &Lab,
    state: &LabState,
    site: &Site,
    node: &str,
) -> Vec<std::ffi::OsString> {
    let scheme = if state.insecure_openflow {
        "tcp"
    } else {
        "ssl"
    };
    let mut args: Vec<std::ffi::OsString> = vec![
        "--controller".into(),
        format!(
            "{scheme}:{}:{}",
            site.controller_mgmt_ip(),
            state::OPENFLOW_PORT
        )
        .into(),
    ];
    if !state.insecure_openflow {
        let files = pki::node_paths(lab, node);
        args.extend([
            "--ssl-private-key".into(),
            files.key.into(),
            "--ssl-certificate".into(),
            files.cert.into(),
            "--ssl-ca-cert".into(),
            pki::paths(lab).ca_cert.into(),
        ]);
    }
    args
}

fn start_controller(lab: &Lab, state: &mut LabState, ul: &Netns) -> anyhow::Result<()> {
    let nodes: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    state.controller_pid = Some(start_site_controller(
        lab,
        state,
        &lab.site(None)?,
        ul,
        &nodes,
    )?);
    Ok(())
}

/// Starts a site's controller (its state, log and topology in the site's directory, the
/// users file naming `nodes`' agents) in `ul`; returns its pid.
fn start_site_controller(
    lab: &Lab,
    state: &LabState,
    site: &Site,
    ul: &Netns,
    nodes: &[String],
) -> anyhow::Result<i32> {
    let exe = std::env::current_exe()?;
    let ctl_dir = site.dir.join("controller");
    std::fs::create_dir_all(&ctl_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(site.dir.join("controller.log"))?;
    let users = match &site.cluster {
        None => api_users::write_users_file(lab, nodes.iter().map(String::as_str))?,
        Some(c) => api_users::write_users_file_named(
            lab,
            &format!("users-{c}"),
            nodes.iter().map(String::as_str),
        )?,
    };
    let mut cmd = Command::new(&exe);
    cmd.args(["controller", "--state-dir"])
        .arg(&ctl_dir)
        .arg("--topology")
        .arg(site.topology_path())
        .args([
            "--openflow-listen",
            &format!("0.0.0.0:{}", state::OPENFLOW_PORT),
        ])
        .args(controller_openflow_args(lab, state, site))
        .args(["--api-listen", &format!("0.0.0.0:{}", state::API_PORT)])
        .args(["--dns-listen", &format!("0.0.0.0:{}", state::DNS_PORT)])
        .arg("--api-users")
        .arg(users);
    if let Some(c) = &site.cluster {
        // A cluster of a multi-cluster lab: its pods on provider networks become
        // `<name>.<network>.inter.l2sm` on the provider.
        cmd.args([
            "--provider-dns",
            &format!("{}:{}", state::PROVIDER_IP, state::PROVIDER_DNS_GRPC_PORT),
            "--provider-dns-cluster",
            c,
            "--provider-dns-insecure",
        ]);
    }
    cmd.envs(daemon_env(state))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = procs::spawn_in(ul, cmd)?;
    Ok(i32::try_from(child.id())?)
}

/// `l2sm lab exec TARGET -- CMD…`: runs CMD in a pod's (or node's) namespace, returns its exit code.
pub fn exec(lab: &Lab, target: &str, argv: &[String]) -> anyhow::Result<i32> {
    let state = lab.load_ready()?;
    let by_k8s = state
        .pods
        .iter()
        .find(|(_, p)| p.k8s.as_deref() == Some(target))
        .map(|(k, _)| k.clone());
    let ns_name = if state.pods.contains_key(target) {
        lab.pod_ns(target)
    } else if let Some(key) = by_k8s {
        lab.pod_ns(&key)
    } else if state.nodes.iter().any(|n| n.name == target) {
        lab.node_ns(target)
    } else if let Some(ns) = multi::exec_namespace(lab, &state, target) {
        ns
    } else if (target == "underlay" || target == "controller") && !state.is_multi() {
        lab.underlay_ns()
    } else {
        bail!("no pod or node named {target:?} in lab {:?}", lab.name);
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| anyhow!("no command given after --"))?;
    let ns = Netns::open_named(&ns_name)?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    // As `ip netns exec` does: the namespace's own /etc files (a pod's resolv.conf) over the
    // host's, in a mount namespace of the command's own.
    let etc = Path::new(state::NETNS_ETC).join(&ns_name);
    let mut child = if etc.is_dir() {
        procs::spawn_in_with_etc(&ns, cmd, etc)?
    } else {
        procs::spawn_in(&ns, cmd)?
    };
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// `l2sm lab status`.
pub async fn status(lab: &Lab) -> anyhow::Result<()> {
    let state = lab.load_ready()?;
    if state.is_multi() {
        return multi::status(lab, &state).await;
    }
    let api = lab.controller_api(&state)?;
    let ctl = if state
        .controller_pid
        .is_some_and(|p| procs::alive(p, "controller"))
    {
        "running"
    } else {
        "DOWN"
    };
    println!(
        "lab {}: {} nodes, controller {} at {CONTROLLER_IP}",
        state.name,
        state.nodes.len(),
        ctl
    );
    let switches = connected_switches(&api).await.unwrap_or_default();
    println!("\nNODES");
    println!(
        "  {:<5} {:<12} {:<12} {:<21} {:<10} {:<8} {:>5}",
        "NODE", "UNDERLAY", "SWITCH", "DPID", "CONNECTED", "AGENT", "FLOWS"
    );
    for node in &state.nodes {
        let st: Option<AgentStatus> = agent_proto::call_async(
            lab.agent_socket(&node.name),
            AgentRequest::Status,
            Duration::from_secs(2),
        )
        .await
        .ok()
        .and_then(|v| serde_json::from_value(v).ok());
        let agent = if node.agent_pid.is_some_and(|p| procs::alive(p, "agent")) {
            "running"
        } else {
            "DOWN"
        };
        let (bridge, dpid) = st
            .as_ref()
            .map(|s| (s.bridge.clone(), s.dpid.clone()))
            .unwrap_or_default();
        let sw = switches.iter().find(|s| s.id == dpid);
        println!(
            "  {:<5} {:<12} {:<12} {:<21} {:<10} {:<8} {:>5}",
            node.name,
            node.ip,
            bridge,
            dpid,
            if sw.is_some() { "yes" } else { "no" },
            agent,
            sw.map(|s| s.flows.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    let managed: Vec<String> = state
        .nodes
        .iter()
        .map(|n| {
            let bridge =
                l2sm_pipeline::ids::switch_name(&n.name, l2sm_pipeline::ids::OVERLAY_PROVIDER);
            format!(
                "of:{}",
                l2sm_pipeline::ids::dpid_hex(l2sm_pipeline::ids::datapath_id(&bridge))
            )
        })
        .collect();
    let others: Vec<_> = switches
        .iter()
        .filter(|s| !managed.contains(&s.id))
        .collect();
    if !others.is_empty() {
        println!("\nOTHER SWITCHES (not managed by an agent)");
        for s in others {
            let trunks = s.ports.iter().filter(|p| p.kind == "trunk").count();
            println!(
                "  {:<21} {:<18} {} ports, {} trunks, {} flows",
                s.id,
                s.peer,
                s.ports.len(),
                trunks,
                s.flows
            );
        }
    }
    println!("\nNETWORKS");
    let nets: Vec<NetworkView> = api.networks().await.unwrap_or_default();
    if nets.is_empty() {
        println!("  (none)");
    }
    for n in &nets {
        println!(
            "  {:<16} vni {:<6} {} ports",
            n.name,
            n.vni,
            n.endpoints.len()
        );
    }
    if !state.ids.is_empty() {
        println!("\nIDS");
        for (net, i) in &state.ids {
            let run = if procs::alive(i.pid, "l2sm") {
                "running"
            } else {
                "DOWN"
            };
            println!(
                "  {net:<16} pod {:<14} {:<5} mirror {:<22} {} rules, {run}{}",
                i.pod,
                i.node,
                i.port,
                i.rules,
                i.quarantine_to
                    .as_ref()
                    .map(|q| format!(", quarantine to {q}"))
                    .unwrap_or_default()
            );
        }
    }
    if !state.quarantined.is_empty() {
        println!("\nQUARANTINED");
        for q in &state.quarantined {
            println!(
                "  {:<12} {:<22} {} -> {}  sid {} {:?} at {} ({} ms from the packet)",
                q.pod, q.port, q.from, q.to, q.sid, q.msg, q.alert_time, q.latency_ms
            );
        }
    }
    println!("\nPODS");
    if state.pods.is_empty() {
        println!("  (none)");
    }
    // Pods of `lab apply` by their Kubernetes namespace/name.
    let name = |key: &str| -> String {
        state.pods[key]
            .k8s
            .clone()
            .unwrap_or_else(|| key.to_string())
    };
    let w = state
        .pods
        .keys()
        .map(|k| name(k).len())
        .max()
        .unwrap_or(0)
        .max(12);
    let nw = state
        .pods
        .values()
        .flat_map(|p| p.attachments.iter().map(|a| a.network.len()))
        .max()
        .unwrap_or(0)
        .max(16);
    for (key, p) in &state.pods {
        let pod = name(key);
        if p.attachments.is_empty() {
            println!("  {pod:<w$} {:<5} (no interfaces)", p.node);
        }
        for a in &p.attachments {
            let ips = agent_proto::join_ips(&a.ips);
            println!(
                "  {pod:<w$} {:<5} {:<6} {:<nw$} {:<18} {}",
                p.node, a.ifname, a.network, ips, a.port
            );
        }
    }
    Ok(())
}

/// Options of `l2sm attach`.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Node.
    pub node: String,
    /// Pod.
    pub pod: String,
    /// Network.
    pub network: String,
    /// Addresses.
    pub ips: Vec<String>,
    /// Interface name (default: next free `netN`).
    pub ifname: Option<String>,
    /// MAC address.
    pub mac: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Port security of the interface, overriding its network's.
    pub port_security: Option<bool>,
    /// Cluster of a multi-cluster lab (`--node nK` then means `C-nK`).
    pub cluster: Option<String>,
}

pub(crate) fn valid_pod_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// `l2sm attach` in a lab: create the pod if new, then let the node's agent plumb it.
pub async fn attach(lab: &Lab, opts: AttachOptions) -> anyhow::Result<Attachment> {
    let _lock = lab.lock()?;
    let mut state = lab.load_ready()?;
    attach_in(lab, &mut state, opts, None).await
}

/// [`attach`] with the lab locked and its state loaded by the caller (saved here on
/// success). `nad`: the NetworkAttachmentDefinition's CNI configuration to hand the plugin
/// (`lab apply`), instead of the one `l2sm attach` builds.
pub(crate) async fn attach_in(
    lab: &Lab,
    state: &mut LabState,
    mut opts: AttachOptions,
    nad: Option<NadAttach>,
) -> anyhow::Result<Attachment> {
    let (node, cluster) = multi::resolve_node(state, &opts.node, opts.cluster.as_deref())?;
    opts.node = node;
    if !valid_pod_name(&opts.pod) {
        bail!(
            "invalid pod name {:?}: use 1-40 lowercase letters, digits and '-'",
            opts.pod
        );
    }
    if !state.nodes.iter().any(|n| n.name == opts.node) {
        let names: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
        bail!(
            "unknown node {:?} (lab nodes: {})",
            opts.node,
            names.join(", ")
        );
    }
    l2sm_pipeline::ids::validate_network_name(&opts.network)?;
    let mut ips = Vec::new();
    for ip in &opts.ips {
        let net: ipnet::IpNet = ip.parse().map_err(|_| {
            anyhow!("invalid IP/CIDR {ip:?}: expected ADDRESS/PREFIX such as 10.10.0.1/24")
        })?;
        if net.addr() == net.network() && net.prefix_len() < net.max_prefix_len() {
            bail!("invalid IP/CIDR {ip:?}: that is the network address of the subnet");
        }
        if let ipnet::IpNet::V4(v4) = net {
            if v4.addr() == v4.broadcast() && v4.prefix_len() < 31 {
                bail!("invalid IP/CIDR {ip:?}: that is the broadcast address of the subnet");
            }
        }
        ips.push(net);
    }
    if let Some(existing) = state.pods.get(&opts.pod) {
        if existing.node != opts.node {
            bail!(
                "pod {:?} already exists on node {} (a pod lives on one node)",
                opts.pod,
                existing.node
            );
        }
        if existing
            .attachments
            .iter()
            .any(|a| a.network == opts.network)
        {
            bail!(
                "pod {:?} is already attached to network {:?}",
                opts.pod,
                opts.network
            );
        }
    }
    // The network must exist before anything is created.
    let api = multi::node_api(lab, state, &opts.node)?;
    let Some(network) = api.get_network(&opts.network).await? else {
        bail!(
            "unknown network {:?} (create it with `l2sm network create {}`)",
            opts.network,
            opts.network
        );
    };
    // Without IPAM in the controller (L2-only network), the lab checks duplicates itself.
    if network.ipam.is_none() {
        // In a multi-cluster lab a local network is one LAN per cluster; a provider
        // network one LAN across them.
        let same_lan = |p: &PodState| {
            state.provider_networks.contains_key(&opts.network)
                || cluster.is_none()
                || state
                    .nodes
                    .iter()
                    .any(|n| n.name == p.node && n.cluster == cluster)
        };
        for (other, p) in state.pods.iter().filter(|(_, p)| same_lan(p)) {
            for a in p.attachments.iter().filter(|a| a.network == opts.network) {
                if let Some(dup) = a
                    .ips
                    .iter()
                    .find(|x| ips.iter().any(|i| i.addr() == x.addr()))
                {
                    bail!(
                        "IP {} is already used by pod {other:?} on network {:?}",
                        dup.addr(),
                        opts.network
                    );
                }
            }
        }
    }
    let used: Vec<&str> = state
        .pods
        .get(&opts.pod)
        .map(|p| p.attachments.iter().map(|a| a.ifname.as_str()).collect())
        .unwrap_or_default();
    let ifname = match opts.ifname.clone() {
        Some(i) => {
            if used.contains(&i.as_str()) {
                bail!("pod {:?} already has an interface {i:?}", opts.pod);
            }
            i
        }
        None => (1..)
            .map(|n| format!("net{n}"))
            .find(|n| !used.contains(&n.as_str()))
            .unwrap_or_default(),
    };
    let new_pod = !state.pods.contains_key(&opts.pod);
    let pod_ns_name = lab.pod_ns(&opts.pod);
    if new_pod {
        l2sm_netns::create_named(&pod_ns_name)
            .with_context(|| format!("cannot create pod {:?}", opts.pod))?;
    }
    // Attach exactly as a Kubernetes node would: the CNI plugin, run in the node's namespace.
    let container_id = format!("{}-{}", lab.name, opts.pod);
    let identity = match &nad {
        Some(n) => n.pod.clone(),
        None => PodIdentity::lab(lab, &opts.pod),
    };
    let config = match nad {
        Some(nad) => multus_config(lab, &opts.node, nad.config, &ips, opts.mac.as_deref()),
        None => cni_config(
            lab,
            &opts.node,
            &opts.network,
            opts.mtu,
            &ips,
            opts.mac.as_deref(),
            opts.port_security,
        ),
    };
    let added = run_cni(
        lab,
        &opts.node,
        "ADD",
        &container_id,
        &identity,
        &ifname,
        &pod_ns_name,
        &config,
    )
    .await;
    let attachment_id = format!("cni/{container_id}/{ifname}");
    let att = match added {
        Ok(_) => find_attachment(lab, &opts.node, &attachment_id).await,
        Err(e) => Err(e),
    };
    let att = match att {
        Ok(a) => a,
        Err(e) => {
            if new_pod {
                let _ = l2sm_netns::delete_named(&pod_ns_name);
            }
            return Err(e);
        }
    };
    let ips = att.ips.clone();
    let pod = state
        .pods
        .entry(opts.pod.clone())
        .or_insert_with(|| PodState {
            node: opts.node.clone(),
            attachments: vec![],
            ..Default::default()
        });
    pod.attachments.push(PodAttachment {
        network: opts.network.clone(),
        ifname,
        ips,
        port: att.port.clone(),
        attachment_id,
        dns: network.dns.as_ref().and_then(|d| d.address),
        dns6: network.dns.as_ref().and_then(|d| d.address6),
    });
    lab.save(state)?;
    if let Some(pod) = state.pods.get(&opts.pod) {
        write_resolv_conf(lab, &opts.pod, pod)?;
    }
    Ok(att)
}

/// The `resolv.conf` of a pod: the DNS addresses (IPv4 first) of its first network that has
/// one (in the order it was attached), searching that network's names; `None` when none has
/// one.
pub fn resolv_conf(pod: &PodState) -> Option<String> {
    let a = pod
        .attachments
        .iter()
        .find(|a| a.dns.is_some() || a.dns6.is_some())?;
    let network = &a.network;
    let servers: String = a
        .dns
        .map(std::net::IpAddr::V4)
        .into_iter()
        .chain(a.dns6.map(std::net::IpAddr::V6))
        .map(|ip| format!("nameserver {ip}\n"))
        .collect();
    Some(format!(
        "# Written by l2sm lab: network {network}'s DNS address (docs/dns.md).\n\
         {servers}\
         search {network}.l2sm\n\
         options timeout:1 attempts:2 edns0\n"
    ))
}

/// Writes (or removes) `/etc/netns/<pod namespace>/resolv.conf` as [`resolv_conf`] says: what
/// `ip netns exec` and `l2sm lab exec` show the pod as `/etc/resolv.conf`.
fn write_resolv_conf(lab: &Lab, name: &str, pod: &PodState) -> anyhow::Result<()> {
    let dir = lab.pod_etc(name);
    match resolv_conf(pod) {
        Some(text) => {
            let path = dir.join("resolv.conf");
            // Another lab removing an empty /etc/netns between our mkdir and write: again.
            let mut attempts = 0;
            loop {
                let written =
                    std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &text));
                match written {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 3 => {
                        attempts += 1
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot write {}", path.display()))
                    }
                }
            }
        }
        None => remove_pod_etc(&dir)?,
    }
    Ok(())
}

/// Removes a pod's `/etc/netns` directory (and `/etc/netns` itself when that leaves it
/// empty: the lab created it).
fn remove_pod_etc(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
    let _ = std::fs::remove_dir(state::NETNS_ETC);
    Ok(())
}

/// The pod a CNI call is for, as the runtime names it in `CNI_ARGS`.
#[derive(Debug, Clone)]
pub(crate) struct PodIdentity {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl PodIdentity {
    /// A pod of `l2sm attach`: namespace `lab-<lab>`, the lab's pod name.
    fn lab(lab: &Lab, pod: &str) -> Self {
        PodIdentity {
            namespace: format!("lab-{}", lab.name),
            name: pod.to_string(),
        }
    }

    /// A pod of `lab apply`, from its `namespace/name`.
    pub(crate) fn parse(k8s: &str) -> Option<Self> {
        let (namespace, name) = k8s.split_once('/')?;
        Some(PodIdentity {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

/// An attachment as Multus makes it (`lab apply`): the NAD's CNI configuration and the pod's
/// Kubernetes identity.
pub(crate) struct NadAttach {
    pub(crate) config: serde_json::Value,
    pub(crate) pod: PodIdentity,
}

/// What Multus hands a CNI plugin for a NAD: its configuration as written, plus the
/// capability arguments it declares (`ips`, `mac`) in `runtimeConfig`. The lab adds the
/// node's agent socket (every lab node has its own; on a real node the default path is used).
fn multus_config(
    lab: &Lab,
    node: &str,
    mut config: serde_json::Value,
    ips: &[ipnet::IpNet],
    mac: Option<&str>,
) -> serde_json::Value {
    let caps = config["capabilities"].clone();
    if let Some(obj) = config.as_object_mut() {
        obj.remove("capabilities");
        obj.insert(
            "agentSocket".into(),
            lab.agent_socket(node).display().to_string().into(),
        );
        obj.insert("runtimeConfig".into(), serde_json::json!({}));
    }
    if caps["ips"].as_bool() == Some(true) && !ips.is_empty() {
        config["runtimeConfig"]["ips"] = serde_json::json!(ips);
    }
    if let Some(mac) = mac.filter(|_| caps["mac"].as_bool() == Some(true)) {
        config["runtimeConfig"]["mac"] = mac.into();
    }
    config
}

/// The network configuration a NetworkAttachmentDefinition would carry for `network`, with the
/// pod's requested addresses and MAC as Multus passes them (`runtimeConfig`).
fn cni_config(
    lab: &Lab,
    node: &str,
    network: &str,
    mtu: Option<u32>,
    ips: &[ipnet::IpNet],
    mac: Option<&str>,
    port_security: Option<bool>,
) -> serde_json::Value {
    let mut config = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("l2sm-{network}"),
        "type": "l2sm",
        "network": network,
        "agentSocket": lab.agent_socket(node),
        "runtimeConfig": {},
    });
    if let Some(mtu) = mtu {
        config["mtu"] = mtu.into();
    }
    if !ips.is_empty() {
        config["runtimeConfig"]["ips"] = serde_json::json!(ips);
    }
    if let Some(mac) = mac {
        config["runtimeConfig"]["mac"] = mac.into();
    }
    if let Some(on) = port_security {
        config["args"] = serde_json::json!({"cni": {"portSecurity": on}});
    }
    config
}

/// Runs the CNI plugin (installed next to this binary) in the node's namespace, as a runtime
/// does: parameters in the environment, the configuration on stdin, the result on stdout.
#[allow(clippy::too_many_arguments)]
async fn run_cni(
    lab: &Lab,
    node: &str,
    command: &str,
    container_id: &str,
    pod: &PodIdentity,
    ifname: &str,
    pod_ns: &str,
    config: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("cannot locate the l2sm binary's directory"))?;
    let plugin = dir.join("l2sm-cni");
    if !plugin.is_file() {
        bail!(
            "{} not found: build it next to l2sm (cargo build --bin l2sm-cni)",
            plugin.display()
        );
    }
    let mut cmd = Command::new(&plugin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", ns_path(pod_ns))
        .env("CNI_IFNAME", ifname)
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
                pod.namespace, pod.name
            ),
        )
        .env("CNI_PATH", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let ns = Netns::open_named(&lab.node_ns(node))?;
    let input = config.to_string();
    let out = tokio::task::spawn_blocking(move || -> anyhow::Result<std::process::Output> {
        use std::io::Write as _;
        let mut child = procs::spawn_in(&ns, cmd)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    })
    .await??;
    let reply: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    if !out.status.success() {
        let msg = reply["msg"].as_str().unwrap_or("CNI plugin failed");
        let details = reply["details"].as_str().unwrap_or("");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let extra = if !details.is_empty() {
            details.to_string()
        } else {
            stderr.trim().to_string()
        };
        if extra.is_empty() {
            bail!("{msg}");
        }
        bail!("{msg}: {extra}");
    }
    Ok(reply)
}

/// The agent's record of an attachment.
async fn find_attachment(lab: &Lab, node: &str, attachment_id: &str) -> anyhow::Result<Attachment> {
    let list =
        agent_proto::call_async(lab.agent_socket(node), AgentRequest::List, AGENT_TIMEOUT).await?;
    let list: Vec<Attachment> = serde_json::from_value(list)?;
    list.into_iter()
        .find(|a| a.attachment_id == attachment_id)
        .ok_or_else(|| {
            anyhow!("the agent has no attachment {attachment_id} after a successful ADD")
        })
}

/// `l2sm detach`: one network of a pod, or the whole pod.
pub async fn detach(
    lab: &Lab,
    pod: &str,
    network: Option<&str>,
) -> anyhow::Result<Vec<PodAttachment>> {
    let _lock = lab.lock()?;
    let mut state = lab.load_ready()?;
    detach_in(lab, &mut state, pod, network).await
}

/// [`detach`] with the lab locked and its state loaded by the caller (saved here).
pub(crate) async fn detach_in(
    lab: &Lab,
    state: &mut LabState,
    pod: &str,
    network: Option<&str>,
) -> anyhow::Result<Vec<PodAttachment>> {
    let Some(p) = state.pods.get(pod).cloned() else {
        bail!("no pod named {pod:?} in lab {:?}", lab.name);
    };
    let targets: Vec<PodAttachment> = match network {
        Some(net) => {
            let t: Vec<_> = p
                .attachments
                .iter()
                .filter(|a| a.network == net)
                .cloned()
                .collect();
            if t.is_empty() {
                bail!("pod {pod:?} is not attached to network {net:?}");
            }
            t
        }
        None => p.attachments.clone(),
    };
    for a in &targets {
        match a
            .attachment_id
            .strip_prefix("cni/")
            .and_then(|rest| rest.rsplit_once('/'))
        {
            Some((container_id, ifname)) => {
                let config = cni_config(lab, &p.node, &a.network, None, &[], None, None);
                run_cni(
                    lab,
                    &p.node,
                    "DEL",
                    container_id,
                    &p.k8s
                        .as_deref()
                        .and_then(PodIdentity::parse)
                        .unwrap_or_else(|| PodIdentity::lab(lab, pod)),
                    ifname,
                    &lab.pod_ns(pod),
                    &config,
                )
                .await?;
            }
            None => {
                agent_proto::call_async(
                    lab.agent_socket(&p.node),
                    AgentRequest::Detach {
                        attachment_id: a.attachment_id.clone(),
                    },
                    AGENT_TIMEOUT,
                )
                .await?;
            }
        }
        if let Some(entry) = state.pods.get_mut(pod) {
            entry
                .attachments
                .retain(|x| x.attachment_id != a.attachment_id);
            write_resolv_conf(lab, pod, entry)?;
        }
        lab.save(state)?;
    }
    if network.is_none() {
        l2sm_netns::delete_named(&lab.pod_ns(pod))?;
        remove_pod_etc(&lab.pod_etc(pod))?;
        state.pods.remove(pod);
        lab.save(state)?;
    }
    Ok(targets)
}
