//! Multi-cluster labs (`l2sm lab up --clusters N --nodes M`): clusters `c1`…`cN`, each with
//! its nodes (`c<i>-n<k>`), its own underlay subnet and controller, and its edge (`l2sm edge`)
//! on its first node; one router namespace that routes between the clusters' underlays and
//! runs the provider controller. A provider network joins the clusters through the edges:
//! each edge connects its bridge to its node's cluster switch with an OVS patch port pair
//! (`ConnectNetwork`), the cluster controller gets the pair's cluster end as a member, the
//! provider the edge end.
//!
//! ```text
//!  netns l2sm-<lab>-rt     router (ip_forward) + provider controller on 10.252.0.254
//!                          (OpenFlow :6633 plain TCP, REST :30808); veth c<i> into each
//!                          cluster's ul0 with 10.250.<i>.253 and 10.251.<i>.253
//!  netns l2sm-<lab>-c<i>-ul  Linux bridge ul0: 10.250.<i>.0/24 underlay, 10.251.<i>.0/24
//!                          management; cluster controller .254
//!  netns l2sm-<lab>-c<i>-n<k>  as a node of a one-cluster lab (OVS, agent); routes to the
//!                          other underlays via .253 (br-phy) and to the provider (mgmt);
//!                          on k = 1 also the edge: its bridge, VXLAN to the other edges
//!                          across the router, gRPC on 10.251.<i>.1:50051
//! ```

use super::*;
use l2sm_api::v1::CreateNetwork;
use l2sm_ned::client::EdgeClient;
use l2sm_pipeline::ids::{self, PortId};
use state::{
    cluster_index, ClusterState, Hop, DNS_PORT, EDGE_GRPC_PORT, PROVIDER_API_PORT,
    PROVIDER_DNS_GRPC_PORT, PROVIDER_IP, PROVIDER_OPENFLOW_PORT, ROUTER_HOST,
};
use std::collections::BTreeMap;

/// How long an edge call may take.
const EDGE_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster names of a lab with `n` clusters.
fn cluster_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("c{i}")).collect()
}

/// The switch name and datapath id of a node's agent bridge.
fn cluster_switch(node: &str) -> (String, u64) {
    let name = ids::switch_name(node, ids::OVERLAY_PROVIDER);
    let dpid = ids::datapath_id(&name);
    (name, dpid)
}

/// The edge bridge's name and datapath id on `node` (config.json: providerName "",
/// switchName "": upstream's derivation from the node name).
pub fn edge_switch(node: &str) -> (String, u64) {
    let name = ids::switch_name(node, LAB_PROVIDER);
    let dpid = ids::datapath_id(&name);
    (name, dpid)
}

/// The provider name of the lab's edges (their switch names derive from it, and the provider
/// controller lets each node's certificate claim its node's edge switch for it).
pub const LAB_PROVIDER: &str = "l2sm-provider";

/// The edge's directory (its NED files and log).
fn edge_dir(lab: &Lab, cluster: &str) -> PathBuf {
    lab.dir().join(cluster).join("edge")
}

/// The edge's gRPC address (its node's management address).
fn edge_addr(cluster: &str) -> anyhow::Result<std::net::SocketAddr> {
    let i = cluster_index(cluster)?;
    Ok(std::net::SocketAddr::from((
        [10, 251, i, 1],
        EDGE_GRPC_PORT,
    )))
}

/// `l2sm lab up --clusters N --nodes M`.
pub async fn up(
    lab: &Lab,
    clusters: usize,
    nodes: usize,
    insecure_openflow: bool,
) -> anyhow::Result<()> {
    check_prerequisites()?;
    if !(2..=9).contains(&clusters) {
        bail!("--clusters must be between 2 and 9, not {clusters}");
    }
    if !(1..=50).contains(&nodes) {
        bail!("--nodes must be between 1 and 50, not {nodes}");
    }
    let _lock = claim_for_up(lab)?;
    let started = Instant::now();
    eprintln!(
        "bringing up lab {:?}: {clusters} clusters of {nodes} nodes, a provider controller",
        lab.name
    );
    let mut state = LabState {
        name: lab.name.clone(),
        api_user: "l2sm".into(),
        api_password: random_token()?,
        insecure_openflow,
        ..LabState::default()
    };
    if insecure_openflow {
        eprintln!("warning: --insecure-openflow: switches talk to their controllers over plain TCP, unauthenticated");
    }
    lab.save(&state)?;
    if let Err(e) = build(lab, &mut state, clusters, nodes).await {
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
        "lab {:?} is up: {clusters} clusters, {} nodes, edges connected to the provider, in {} ms",
        lab.name,
        state.nodes.len(),
        started.elapsed().as_millis()
    );
    Ok(())
}

async fn build(
    lab: &Lab,
    state: &mut LabState,
    clusters: usize,
    nodes: usize,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(lab.dir())?;
    let t = step("router");
    let rt = l2sm_netns::create_named(&lab.router_ns())?;
    let provider: ipnet::IpNet = format!("{PROVIDER_IP}/32").parse()?;
    l2sm_netns::with_netlink(&rt, move |nl| {
        nl.set_up("lo")?;
        nl.add_address("lo", provider)
    })?;
    l2sm_netns::set_sysctl(&rt, "net/ipv4/ip_forward", "1")?;
    done(t);

    let names = cluster_names(clusters);
    let mut sites = Vec::new();
    for c in &names {
        let site = lab.site(Some(c))?;
        let t = step(&format!("cluster {c}: underlay"));
        std::fs::create_dir_all(&site.dir)?;
        state.clusters.push(ClusterState {
            name: c.clone(),
            edge_node: format!("{c}-n1"),
            ..Default::default()
        });
        lab.save(state)?;
        let ul = l2sm_netns::create_named(&site.ul_ns)?;
        let ul_addr: ipnet::IpNet = format!("{}/24", site.controller_ip()).parse()?;
        let mgmt_addr: ipnet::IpNet = format!("{}/24", site.controller_mgmt_ip()).parse()?;
        l2sm_netns::with_netlink(&ul, move |nl| {
            nl.set_up("lo")?;
            nl.create_bridge("ul0")?;
            nl.add_address("ul0", ul_addr)?;
            nl.add_address("ul0", mgmt_addr)?;
            nl.set_up("ul0")
        })?;
        // The router's leg into this cluster: its .253 on both subnets.
        let (leg, ul2) = (c.clone(), ul.clone());
        let rt_ul: ipnet::IpNet = format!("{}.{ROUTER_HOST}/24", site.ul_prefix).parse()?;
        let rt_mgmt: ipnet::IpNet = format!("{}.{ROUTER_HOST}/24", site.mgmt_prefix).parse()?;
        l2sm_netns::with_netlink(&rt, move |nl| {
            nl.create_veth(&leg, "rt", Some(&ul2), Some(1500))?;
            nl.add_address(&leg, rt_ul)?;
            nl.add_address(&leg, rt_mgmt)?;
            nl.set_tx_checksum(&leg, false)?;
            nl.set_up(&leg)
        })?;
        // The cluster controller reaches the provider (its DNS update API) through the
        // router's management leg.
        let via_mgmt: std::net::IpAddr = format!("{}.{ROUTER_HOST}", site.mgmt_prefix).parse()?;
        let provider_net: ipnet::IpNet = "10.252.0.0/24".parse()?;
        l2sm_netns::with_netlink(&ul, move |nl| {
            nl.set_master("rt", "ul0")?;
            nl.set_tx_checksum("rt", false)?;
            nl.set_up("rt")?;
            nl.add_route(provider_net, Some(via_mgmt), Some("ul0"))
        })?;
        done(t);
        for k in 1..=nodes {
            let name = format!("{c}-n{k}");
            let t = step(&format!("node {name}"));
            state.nodes.push(NodeState {
                name: name.clone(),
                cluster: Some(c.clone()),
                ip: format!("{}.{k}", site.ul_prefix),
                ..Default::default()
            });
            let idx = state.nodes.len() - 1;
            build_node(lab, state, idx, &ul, &site)
                .await
                .with_context(|| format!("node {name}"))?;
            route_node(lab, &site, &name)?;
            lab.save(state)?;
            done(t);
        }
        let members: Vec<NodeState> = cluster_nodes(state, c).cloned().collect();
        write_topology_at(&site.topology_path(), &members, "mesh")?;
        sites.push(site);
    }

    if !state.insecure_openflow {
        let t = step("switch certificates");
        let all: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
        pki::create_for_sites(lab, &all, &sites, Some(PROVIDER_IP))?;
        done(t);
    }
    let t = step("controllers");
    for (ci, site) in sites.iter().enumerate() {
        let ul = Netns::open_named(&site.ul_ns)?;
        let members: Vec<String> = cluster_nodes(state, site.label())
            .map(|n| n.name.clone())
            .collect();
        state.clusters[ci].controller_pid =
            Some(start_site_controller(lab, state, site, &ul, &members)?);
        lab.save(state)?;
    }
    state.provider_pid = Some(start_provider(lab, state, &rt)?);
    lab.save(state)?;
    for site in &sites {
        let api = lab.site_api(state, site)?;
        wait_async(
            &format!("the controller API of {}", site.label()),
            Duration::from_secs(10),
            || async { Ok(api.health().await.is_ok()) },
        )
        .await
        .with_context(|| log_tail(&site.dir.join("controller.log")))?;
    }
    let provider = lab.provider_api(state)?;
    wait_async(
        "the provider controller API",
        Duration::from_secs(10),
        || async { Ok(provider.health().await.is_ok()) },
    )
    .await
    .with_context(|| log_tail(&lab.dir().join("provider.log")))?;
    done(t);

    let t = step("agents");
    for idx in 0..state.nodes.len() {
        start_agent(lab, state, idx)?;
    }
    lab.save(state)?;
    for node in &state.nodes {
        wait_agent(lab, node).await?;
    }
    done(t);

    let t = step("edges");
    for ci in 0..state.clusters.len() {
        let pid = start_edge(lab, state, ci)?;
        state.clusters[ci].edge_pid = Some(pid);
        lab.save(state)?;
    }
    for c in &state.clusters {
        wait_edge(lab, c).await?;
    }
    done(t);

    let t = step("switches and links");
    for site in &sites {
        let api = lab.site_api(state, site)?;
        let members: Vec<NodeState> = cluster_nodes(state, site.label()).cloned().collect();
        wait_async(
            &format!("every switch of {} to connect", site.label()),
            Duration::from_secs(20),
            || async { Ok(connected_switches(&api).await?.len() >= members.len()) },
        )
        .await?;
        let expected = expected_tunnels(&site.topology_path(), &members)?;
        wait_async(
            &format!(
                "{expected} tunnels of {} to carry LLDP probes both ways",
                site.label()
            ),
            Duration::from_secs(20),
            || async { Ok(usable_tunnels(&api.links().await?) >= expected) },
        )
        .await?;
        api.settle(l2sm_api::v1::MAX_WAIT_MS)
            .await
            .with_context(|| {
                format!(
                    "the switches of {} did not confirm their flows",
                    site.label()
                )
            })?;
    }
    let edges = state.clusters.len();
    wait_async(
        "every edge to connect to the provider",
        Duration::from_secs(20),
        || async { Ok(connected_switches(&provider).await?.len() >= edges) },
    )
    .await?;
    // The provider has no topology file (the edges are all it knows, as upstream's): it
    // treats the edges' tunnels as a full mesh and lists no links; its probes cross the
    // tunnels all the same, which resolves the router's address in the edges' tunnels.
    provider
        .settle(l2sm_api::v1::MAX_WAIT_MS)
        .await
        .context("the edges did not confirm their flows")?;
    done(t);
    Ok(())
}

fn cluster_nodes<'a>(state: &'a LabState, cluster: &'a str) -> impl Iterator<Item = &'a NodeState> {
    state
        .nodes
        .iter()
        .filter(move |n| n.cluster.as_deref() == Some(cluster))
}

/// A node's routes beyond its cluster: the other clusters' underlays through the router
/// (on `br-phy`, where OVS's userspace tunnels look them up), the provider through the
/// management interface (the kernel path, as control traffic takes in every lab).
fn route_node(lab: &Lab, site: &Site, node: &str) -> anyhow::Result<()> {
    let ns = Netns::open_named(&lab.node_ns(node))?;
    let via_ul: std::net::IpAddr = format!("{}.{ROUTER_HOST}", site.ul_prefix).parse()?;
    let via_mgmt: std::net::IpAddr = format!("{}.{ROUTER_HOST}", site.mgmt_prefix).parse()?;
    let underlays: ipnet::IpNet = "10.250.0.0/16".parse()?;
    let provider: ipnet::IpNet = "10.252.0.0/24".parse()?;
    l2sm_netns::with_netlink(&ns, move |nl| {
        nl.add_route(underlays, Some(via_ul), Some("br-phy"))?;
        nl.add_route(provider, Some(via_mgmt), Some("mgmt"))
    })?;
    Ok(())
}

async fn wait_agent(lab: &Lab, node: &NodeState) -> anyhow::Result<()> {
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
                Ok(
                    agent_proto::call_async(socket, AgentRequest::Status, Duration::from_secs(2))
                        .await
                        .is_ok(),
                )
            }
        },
    )
    .await
    .with_context(|| log_tail(&lab.node_dir(&node.name).join("agent.log")))
}

/// The provider controller in the router namespace: OpenFlow over TLS on 6633 (each edge
/// shows its node's switch certificate, which may claim that node's edge switch; plain TCP
/// with `--insecure-openflow`), REST on 30808 (upstream's `sdnPort`).
fn start_provider(lab: &Lab, state: &LabState, rt: &Netns) -> anyhow::Result<i32> {
    let exe = std::env::current_exe()?;
    let dir = lab.dir().join("provider");
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(lab.dir().join("provider.log"))?;
    let mut cmd = Command::new(&exe);
    cmd.args(["controller", "--state-dir"])
        .arg(&dir)
        .args(provider_openflow_args(lab, state))
        .args([
            "--openflow-listen",
            &format!("{PROVIDER_IP}:{PROVIDER_OPENFLOW_PORT}"),
        ])
        .args([
            "--api-listen",
            &format!("{PROVIDER_IP}:{PROVIDER_API_PORT}"),
        ])
        // `<name>.<network>.inter.l2sm`: the clusters' controllers send their names to the
        // update API (cleartext: the lab's router namespace is reachable only from the lab).
        .args(["--dns-listen", &format!("{PROVIDER_IP}:{DNS_PORT}")])
        .args([
            "--dns-grpc-listen",
            &format!("{PROVIDER_IP}:{PROVIDER_DNS_GRPC_PORT}"),
            "--dns-grpc-insecure",
        ])
        .envs(daemon_env(state))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = procs::spawn_in(rt, cmd)?;
    Ok(i32::try_from(child.id())?)
}

/// The provider controller's OpenFlow TLS flags (or `--insecure-openflow`).
fn provider_openflow_args(lab: &Lab, state: &LabState) -> Vec<std::ffi::OsString> {
    if state.insecure_openflow {
        return vec!["--insecure-openflow".into()];
    }
    let (cert, key) = pki::provider_files(lab);
    vec![
        "--openflow-tls-cert".into(),
        cert.into(),
        "--openflow-tls-key".into(),
        key.into(),
        "--openflow-tls-ca".into(),
        pki::paths(lab).ca_cert.into(),
        "--openflow-edge-provider".into(),
        LAB_PROVIDER.into(),
    ]
}

/// The edge's switch certificate flags: its node's (the edge shares the node's Open vSwitch,
/// whose SSL settings are one per `ovs-vswitchd`), or none with `--insecure-openflow`.
fn edge_openflow_args(lab: &Lab, state: &LabState, node: &str) -> Vec<std::ffi::OsString> {
    if state.insecure_openflow {
        return Vec::new();
    }
    let files = pki::node_paths(lab, node);
    vec![
        "--ssl-private-key".into(),
        files.key.into(),
        "--ssl-certificate".into(),
        files.cert.into(),
        "--ssl-ca-cert".into(),
        pki::paths(lab).ca_cert.into(),
    ]
}

/// Writes the edge's NED files (as upstream's operator would) and starts `l2sm edge` on the
/// cluster's first node, with that node's Open vSwitch.
fn start_edge(lab: &Lab, state: &LabState, ci: usize) -> anyhow::Result<i32> {
    let c = &state.clusters[ci];
    let node = state
        .nodes
        .iter()
        .find(|n| n.name == c.edge_node)
        .ok_or_else(|| anyhow!("cluster {} has no node {}", c.name, c.edge_node))?;
    let dir = edge_dir(lab, &c.name);
    std::fs::create_dir_all(&dir)?;
    let config = serde_json::json!({
        "controllerIp": [PROVIDER_IP],
        "controllerPort": PROVIDER_OPENFLOW_PORT.to_string(),
        "providerName": LAB_PROVIDER,
        "nodeName": node.name,
        "switchName": "",
    });
    let neighbors: Vec<String> = state
        .clusters
        .iter()
        .filter(|o| o.name != c.name)
        .filter_map(|o| state.nodes.iter().find(|n| n.name == o.edge_node))
        .map(|n| n.ip.clone())
        .collect();
    let neighbors = serde_json::json!({
        "name": node.name, "nodeIP": node.ip, "neighborNodes": neighbors,
    });
    for (file, doc) in [("config.json", config), ("neighbors.json", neighbors)] {
        let tmp = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)?;
        std::fs::rename(&tmp, dir.join(file))?;
    }
    let addr = edge_addr(&c.name)?;
    let router: ipnet::IpNet =
        format!("10.251.{}.{ROUTER_HOST}/32", cluster_index(&c.name)?).parse()?;
    let exe = std::env::current_exe()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("edge.log"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("edge")
        .arg("--config-dir")
        .arg(&dir)
        .arg("--ovsdb")
        .arg(format!(
            "unix:{}",
            lab.node_dir(&node.name).join("db.sock").display()
        ))
        .args(["--datapath-type", "netdev"])
        .args(edge_openflow_args(lab, state, &node.name))
        // The lab's CLI plays the operator: it dials from the router namespace.
        .args([
            "--ned-grpc-insecure",
            "--ned-grpc-listen",
            &addr.to_string(),
        ])
        .args(["--ned-grpc-allow", &router.to_string()])
        .args(["--max-backoff-ms", "1000"])
        .envs(daemon_env(state))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let ns = Netns::open_named(&lab.node_ns(&node.name))?;
    let child = procs::spawn_in(&ns, cmd)?;
    Ok(i32::try_from(child.id())?)
}

async fn wait_edge(lab: &Lab, c: &ClusterState) -> anyhow::Result<()> {
    let pid = c.edge_pid;
    wait_async(
        &format!("the edge of {}", c.name),
        AGENT_TIMEOUT,
        || async move {
            if let Some(pid) = pid {
                if !procs::alive(pid, "edge") {
                    bail!("the edge exited; see its log");
                }
            }
            Ok(edge_client(lab, &c.name).await.is_ok())
        },
    )
    .await
    .with_context(|| log_tail(&edge_dir(lab, &c.name).join("edge.log")))
}

/// A gRPC connection to a cluster's edge, dialled from the router namespace (where the
/// lab's CLI plays upstream's operator).
async fn edge_client(lab: &Lab, cluster: &str) -> anyhow::Result<EdgeClient> {
    let addr = edge_addr(cluster)?;
    let rt = Netns::open_named(&lab.router_ns())?;
    let tcp = tokio::task::spawn_blocking(move || {
        l2sm_netns::run_in_netns(&rt, move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        })
    })
    .await??
    .with_context(|| format!("cannot reach the edge of {cluster} at {addr}"))?;
    tcp.set_nonblocking(true)?;
    let _ = tcp.set_nodelay(true);
    let tcp = tokio::net::TcpStream::from_std(tcp)?;
    Ok(EdgeClient::handshake(tcp, &addr.to_string(), EDGE_CALL_TIMEOUT).await?)
}

/// The clusters a cluster-local network command acts on.
fn selected_clusters(state: &LabState, cluster: Option<&str>) -> anyhow::Result<Vec<String>> {
    match cluster {
        None => Ok(state.clusters.iter().map(|c| c.name.clone()).collect()),
        Some(c) => {
            if state.clusters.iter().any(|x| x.name == c) {
                Ok(vec![c.to_string()])
            } else {
                let names: Vec<&str> = state.clusters.iter().map(|c| c.name.as_str()).collect();
                bail!("unknown cluster {c:?} (lab clusters: {})", names.join(", "))
            }
        }
    }
}

fn status_err(what: &str, e: l2sm_api::ClientError) -> anyhow::Error {
    if e.status().is_some() {
        anyhow!("{what}: {}", e.message())
    } else {
        anyhow::Error::from(e).context(what.to_string())
    }
}

/// `l2sm network create NAME [--provider | --cluster C]` in a multi-cluster lab. `request`
/// carries address settings (cluster-local networks only). Returns what was done, one line
/// each.
pub async fn network_create(
    lab: &Lab,
    name: &str,
    provider: bool,
    cluster: Option<&str>,
    request: Option<CreateNetwork>,
) -> anyhow::Result<Vec<String>> {
    ids::validate_network_name(name)?;
    let _lock = lab.lock()?;
    let mut state = lab.load_ready()?;
    if provider {
        if cluster.is_some() {
            bail!("--provider creates the network in every cluster: leave out --cluster");
        }
        if request.is_some() {
            bail!("a provider network has no addresses here (each cluster's IPAM is its own): leave out --cidr, --pod-range, --exclude and --port-security");
        }
        return create_provider_network(lab, &mut state, name).await;
    }
    if state.provider_networks.contains_key(name) {
        bail!("{name:?} is a provider network (it already exists in every cluster)");
    }
    let clusters = selected_clusters(&state, cluster)?;
    let mut out = Vec::new();
    for c in &clusters {
        let api = lab.site_api(&state, &lab.site(Some(c))?)?;
        let existed = api.network_exists(name).await?;
        match &request {
            Some(req) => {
                api.create_network(req).await.map_err(|e| {
                    status_err(&format!("{c} refused to create network {name:?}"), e)
                })?;
            }
            None => api
                .create_vnet(name)
                .await
                .map_err(|e| status_err(&format!("{c} refused to create network {name:?}"), e))?,
        }
        out.push(if existed {
            format!("network {name} already exists in {c}")
        } else {
            format!("network {name} created in {c}")
        });
    }
    Ok(out)
}

async fn create_provider_network(
    lab: &Lab,
    state: &mut LabState,
    name: &str,
) -> anyhow::Result<Vec<String>> {
    if state.provider_networks.contains_key(name) {
        return Ok(vec![format!("provider network {name} already exists")]);
    }
    // Nothing is made when a cluster already has a local network of that name.
    for c in &state.clusters {
        let api = lab.site_api(state, &lab.site(Some(&c.name))?)?;
        if api.network_exists(name).await? {
            bail!(
                "cluster {} already has a network {name:?} of its own: delete it first (a provider network has the same name in every cluster)",
                c.name
            );
        }
    }
    let provider = lab.provider_api(state)?;
    if provider.network_exists(name).await? {
        bail!("the provider already has a network {name:?}");
    }
    let mut hops: BTreeMap<String, Hop> = BTreeMap::new();
    let made = connect_everywhere(lab, state, name, &provider, &mut hops).await;
    if let Err(e) = made {
        // Undo whatever was made: a refused command changes nothing.
        let _ = undo_provider_network(lab, state, name).await;
        return Err(e);
    }
    let mut out = vec![format!(
        "provider network {name} created at the provider and in {}",
        state
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )];
    for (c, hop) in &hops {
        out.push(format!(
            "  {c}: edge port {} <-> cluster port {}",
            hop.edge_port, hop.cluster_port
        ));
    }
    state.provider_networks.insert(name.to_string(), hops);
    lab.save(state)?;
    Ok(out)
}

async fn connect_everywhere(
    lab: &Lab,
    state: &LabState,
    name: &str,
    provider: &l2sm_api::ControllerClient,
    hops: &mut BTreeMap<String, Hop>,
) -> anyhow::Result<()> {
    provider
        .create_vnet(name)
        .await
        .map_err(|e| status_err(&format!("the provider refused network {name:?}"), e))?;
    for c in &state.clusters {
        let api = lab.site_api(state, &lab.site(Some(&c.name))?)?;
        api.create_vnet(name)
            .await
            .map_err(|e| status_err(&format!("{} refused network {name:?}", c.name), e))?;
        let (bridge, cluster_dpid) = cluster_switch(&c.edge_node);
        let (_, edge_dpid) = edge_switch(&c.edge_node);
        let mut edge = edge_client(lab, &c.name).await?;
        let r = edge
            .connect_network(name, &bridge)
            .await
            .with_context(|| format!("ConnectNetwork on the edge of {}", c.name))?;
        let port = |dpid: u64, n: i64| -> anyhow::Result<String> {
            Ok(PortId {
                dpid,
                port: u32::try_from(n).map_err(|_| anyhow!("the edge answered port {n}"))?,
            }
            .to_string())
        };
        let hop = Hop {
            edge_port: port(edge_dpid, r.edge_port)?,
            cluster_port: port(cluster_dpid, r.cluster_port)?,
        };
        api.add_port(name, &hop.cluster_port).await.map_err(|e| {
            status_err(
                &format!("{} refused member {}", c.name, hop.cluster_port),
                e,
            )
        })?;
        provider.add_port(name, &hop.edge_port).await.map_err(|e| {
            status_err(&format!("the provider refused member {}", hop.edge_port), e)
        })?;
        hops.insert(c.name.clone(), hop);
    }
    Ok(())
}

/// Removes a provider network everywhere: each edge's hop (DisconnectNetwork), the network
/// in each cluster and at the provider. Every step is tried; the first error is answered.
async fn undo_provider_network(lab: &Lab, state: &LabState, name: &str) -> anyhow::Result<()> {
    let mut first: Option<anyhow::Error> = None;
    let mut keep = |r: anyhow::Result<()>| {
        if let Err(e) = r {
            tracing::warn!("removing provider network {name}: {e:#}");
            first.get_or_insert(e);
        }
    };
    for c in &state.clusters {
        let r = async {
            let mut edge = edge_client(lab, &c.name).await?;
            edge.disconnect_network(name)
                .await
                .with_context(|| format!("DisconnectNetwork on the edge of {}", c.name))
        }
        .await;
        keep(r);
        let r = async {
            let api = lab.site_api(state, &lab.site(Some(&c.name))?)?;
            delete_if_there(&api, name)
                .await
                .with_context(|| format!("network {name} in {}", c.name))
        }
        .await;
        keep(r);
    }
    let r = async {
        let provider = lab.provider_api(state)?;
        delete_if_there(&provider, name)
            .await
            .with_context(|| format!("network {name} at the provider"))
    }
    .await;
    keep(r);
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn delete_if_there(api: &l2sm_api::ControllerClient, name: &str) -> anyhow::Result<()> {
    if !api.network_exists(name).await? {
        return Ok(());
    }
    api.delete_network(name)
        .await
        .map_err(|e| status_err("delete refused", e))
}

/// `l2sm network delete NAME [--cluster C]` in a multi-cluster lab: a provider network is
/// removed everywhere (hops, clusters, provider); a cluster-local one in each cluster that
/// has it (or in C).
pub async fn network_delete(
    lab: &Lab,
    name: &str,
    cluster: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    ids::validate_network_name(name)?;
    let _lock = lab.lock()?;
    let mut state = lab.load_ready()?;
    if state.provider_networks.contains_key(name) {
        if cluster.is_some() {
            bail!("{name:?} is a provider network: it is deleted everywhere at once (leave out --cluster)");
        }
        undo_provider_network(lab, &state, name).await?;
        state.provider_networks.remove(name);
        lab.save(&state)?;
        return Ok(vec![format!(
            "provider network {name} deleted (edge hops, every cluster, the provider)"
        )]);
    }
    let clusters = selected_clusters(&state, cluster)?;
    let mut out = Vec::new();
    for c in &clusters {
        let api = lab.site_api(&state, &lab.site(Some(c))?)?;
        if api.network_exists(name).await? {
            api.delete_network(name)
                .await
                .map_err(|e| status_err(&format!("{c} refused to delete {name:?}"), e))?;
            out.push(format!("network {name} deleted in {c}"));
        }
    }
    if out.is_empty() {
        bail!("unknown network {name:?}");
    }
    Ok(out)
}

/// `l2sm network list` in a multi-cluster lab: every cluster's networks and the provider's.
pub async fn network_list(lab: &Lab) -> anyhow::Result<()> {
    let state = lab.load_ready()?;
    println!(
        "{:<10} {:<20} {:<8} {:<9} PORTS",
        "WHERE", "NETWORK", "VNI", "KIND"
    );
    let mut places: Vec<(String, l2sm_api::ControllerClient)> = Vec::new();
    for c in &state.clusters {
        places.push((
            c.name.clone(),
            lab.site_api(&state, &lab.site(Some(&c.name))?)?,
        ));
    }
    places.push(("provider".into(), lab.provider_api(&state)?));
    for (place, api) in places {
        for n in api.networks().await? {
            let kind = if state.provider_networks.contains_key(&n.name) {
                "provider"
            } else {
                "local"
            };
            println!(
                "{:<10} {:<20} {:<8} {:<9} {}",
                place,
                n.name,
                n.vni,
                kind,
                n.endpoints.join(" ")
            );
        }
    }
    Ok(())
}

/// The cluster a node belongs to in a multi-cluster lab, resolving `--cluster C --node nK`
/// to `C-nK`.
pub fn resolve_node(
    state: &LabState,
    node: &str,
    cluster: Option<&str>,
) -> anyhow::Result<(String, Option<String>)> {
    if !state.is_multi() {
        if let Some(c) = cluster {
            bail!(
                "lab {:?} has one cluster: leave out --cluster {c}",
                state.name
            );
        }
        return Ok((node.to_string(), None));
    }
    let full = match cluster {
        Some(c) if !node.starts_with(&format!("{c}-")) => format!("{c}-{node}"),
        _ => node.to_string(),
    };
    let Some(n) = state.nodes.iter().find(|n| n.name == full) else {
        let names: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
        bail!("unknown node {full:?} (lab nodes: {})", names.join(", "));
    };
    if let Some(c) = cluster {
        if n.cluster.as_deref() != Some(c) {
            bail!("node {full:?} is not in cluster {c}");
        }
    }
    Ok((full, n.cluster.clone()))
}

/// The API client of the controller a node's agent uses.
pub fn node_api(
    lab: &Lab,
    state: &LabState,
    node: &str,
) -> anyhow::Result<l2sm_api::ControllerClient> {
    let cluster = state
        .nodes
        .iter()
        .find(|n| n.name == node)
        .and_then(|n| n.cluster.clone());
    match cluster {
        Some(c) => lab.site_api(state, &lab.site(Some(&c))?),
        None => lab.controller_api(state),
    }
}

/// Namespace of an `exec` target particular to multi-cluster labs: `router` (or
/// `provider`), or a cluster name (its underlay namespace, where its controller runs).
pub fn exec_namespace(lab: &Lab, state: &LabState, target: &str) -> Option<String> {
    if target == "router" || target == "provider" {
        return Some(lab.router_ns());
    }
    state
        .clusters
        .iter()
        .find(|c| c.name == target)
        .and_then(|c| lab.site(Some(&c.name)).ok())
        .map(|s| s.ul_ns)
}

/// `l2sm lab restart provider | C/controller | C/edge` (node targets are the one-cluster
/// lab's). `Ok(false)`: not a multi-cluster target.
pub async fn restart(lab: &Lab, state: &mut LabState, target: &str) -> anyhow::Result<bool> {
    let grace = Duration::from_secs(3);
    if target == "provider" {
        if let Some(pid) = state.provider_pid {
            procs::stop(pid, "controller", grace);
        }
        let rt = Netns::open_named(&lab.router_ns())?;
        state.provider_pid = Some(start_provider(lab, state, &rt)?);
        lab.save(state)?;
        let api = lab.provider_api(state)?;
        wait_async("the provider API", Duration::from_secs(10), || async {
            Ok(api.health().await.is_ok())
        })
        .await?;
        eprintln!("provider controller restarted");
        return Ok(true);
    }
    let Some((cluster, what)) = target.split_once('/') else {
        return Ok(false);
    };
    let Some(ci) = state.clusters.iter().position(|c| c.name == cluster) else {
        return Ok(false);
    };
    match what {
        "controller" => {
            if let Some(pid) = state.clusters[ci].controller_pid {
                procs::stop(pid, "controller", grace);
            }
            let site = lab.site(Some(cluster))?;
            let ul = Netns::open_named(&site.ul_ns)?;
            let members: Vec<String> = cluster_nodes(state, cluster)
                .map(|n| n.name.clone())
                .collect();
            state.clusters[ci].controller_pid =
                Some(start_site_controller(lab, state, &site, &ul, &members)?);
            lab.save(state)?;
            let api = lab.site_api(state, &site)?;
            wait_async("the controller API", Duration::from_secs(10), || async {
                Ok(api.health().await.is_ok())
            })
            .await?;
            eprintln!("controller of {cluster} restarted");
        }
        "edge" => {
            if let Some(pid) = state.clusters[ci].edge_pid {
                procs::stop(pid, "edge", grace);
            }
            state.clusters[ci].edge_pid = Some(start_edge(lab, state, ci)?);
            lab.save(state)?;
            wait_edge(lab, &state.clusters[ci]).await?;
            eprintln!("edge of {cluster} restarted");
        }
        other => {
            bail!("cannot restart {cluster}/{other}: use {cluster}/controller or {cluster}/edge")
        }
    }
    Ok(true)
}

/// Pids of a multi-cluster lab's own processes beyond the nodes' (controllers, edges,
/// provider), with the word their command line holds.
pub fn extra_processes(state: &LabState) -> Vec<(i32, &'static str)> {
    let mut v = Vec::new();
    for c in &state.clusters {
        if let Some(p) = c.edge_pid {
            v.push((p, "edge"));
        }
        if let Some(p) = c.controller_pid {
            v.push((p, "controller"));
        }
    }
    if let Some(p) = state.provider_pid {
        v.push((p, "controller"));
    }
    v
}

fn alive_word(pid: Option<i32>, word: &str) -> &'static str {
    if pid.is_some_and(|p| procs::alive(p, word)) {
        "running"
    } else {
        "DOWN"
    }
}

/// `l2sm lab status` of a multi-cluster lab.
pub async fn status(lab: &Lab, state: &LabState) -> anyhow::Result<()> {
    println!(
        "lab {}: {} clusters, {} nodes; provider controller {} at {PROVIDER_IP} (REST :{PROVIDER_API_PORT}, OpenFlow :{PROVIDER_OPENFLOW_PORT})",
        state.name,
        state.clusters.len(),
        state.nodes.len(),
        alive_word(state.provider_pid, "controller"),
    );
    let provider = lab.provider_api(state)?;
    let edges_connected = connected_switches(&provider).await.unwrap_or_default();
    println!("\nCLUSTERS");
    println!(
        "  {:<8} {:<12} {:<10} {:<14} {:<8} {:<21} {:<10}",
        "CLUSTER", "CONTROLLER", "STATE", "EDGE NODE", "EDGE", "EDGE DPID", "PROVIDER"
    );
    for c in &state.clusters {
        let site = lab.site(Some(&c.name))?;
        let (_, dpid) = edge_switch(&c.edge_node);
        let id = format!("of:{}", ids::dpid_hex(dpid));
        println!(
            "  {:<8} {:<12} {:<10} {:<14} {:<8} {:<21} {:<10}",
            c.name,
            site.controller_ip(),
            alive_word(c.controller_pid, "controller"),
            c.edge_node,
            alive_word(c.edge_pid, "edge"),
            id,
            if edges_connected.iter().any(|s| s.id == id) {
                "connected"
            } else {
                "no"
            }
        );
    }
    println!("\nNODES");
    println!(
        "  {:<8} {:<8} {:<12} {:<12} {:<21} {:<10} {:<8} {:>5}",
        "NODE", "CLUSTER", "UNDERLAY", "SWITCH", "DPID", "CONNECTED", "AGENT", "FLOWS"
    );
    for c in &state.clusters {
        let api = lab.site_api(state, &lab.site(Some(&c.name))?)?;
        let switches = connected_switches(&api).await.unwrap_or_default();
        for node in cluster_nodes(state, &c.name) {
            let (bridge, dpid) = cluster_switch(&node.name);
            let id = format!("of:{}", ids::dpid_hex(dpid));
            let sw = switches.iter().find(|s| s.id == id);
            println!(
                "  {:<8} {:<8} {:<12} {:<12} {:<21} {:<10} {:<8} {:>5}",
                node.name,
                c.name,
                node.ip,
                bridge,
                id,
                if sw.is_some() { "yes" } else { "no" },
                alive_word(node.agent_pid, "agent"),
                sw.map(|s| s.flows.to_string())
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    println!("\nINTER-CLUSTER LINKS (edge VXLAN tunnels across the router)");
    for (i, a) in state.clusters.iter().enumerate() {
        for b in state.clusters.iter().skip(i + 1) {
            let ip = |c: &ClusterState| {
                state
                    .nodes
                    .iter()
                    .find(|n| n.name == c.edge_node)
                    .and_then(|n| n.ip.parse::<std::net::IpAddr>().ok())
            };
            let (Some(ia), Some(ib)) = (ip(a), ip(b)) else {
                continue;
            };
            let end = |c: &ClusterState, local, remote| {
                let name = l2sm_agent::edge::config::edge_tunnel_name(local, remote);
                let id = format!("of:{}", ids::dpid_hex(edge_switch(&c.edge_node).1));
                let port = edges_connected
                    .iter()
                    .find(|s| s.id == id)
                    .and_then(|s| s.ports.iter().find(|p| p.name == name));
                match port {
                    Some(p) => format!(
                        "{} {name}/{}{}",
                        c.name,
                        p.number,
                        if p.live { "" } else { " (down)" }
                    ),
                    None => format!("{} {name} (not at the provider)", c.name),
                }
            };
            println!("  {ia} <-> {ib}: {} <-> {}", end(a, ia, ib), end(b, ib, ia));
        }
    }
    println!("\nPROVIDER NETWORKS");
    if state.provider_networks.is_empty() {
        println!("  (none)");
    }
    let pnets = provider.networks().await.unwrap_or_default();
    for (name, hops) in &state.provider_networks {
        let vni = pnets
            .iter()
            .find(|n| &n.name == name)
            .map(|n| n.vni.to_string())
            .unwrap_or_else(|| "MISSING".into());
        println!("  {name:<16} provider vni {vni}");
        for (c, hop) in hops {
            println!(
                "    {c}: edge {} <-> cluster {}",
                hop.edge_port, hop.cluster_port
            );
        }
    }
    println!("\nNETWORKS (per cluster)");
    for c in &state.clusters {
        let api = lab.site_api(state, &lab.site(Some(&c.name))?)?;
        for n in api.networks().await.unwrap_or_default() {
            let kind = if state.provider_networks.contains_key(&n.name) {
                "provider"
            } else {
                "local"
            };
            println!(
                "  {:<4} {:<16} {:<9} vni {:<6} {} ports",
                c.name,
                n.name,
                kind,
                n.vni,
                n.endpoints.len()
            );
        }
    }
    println!("\nPODS");
    if state.pods.is_empty() {
        println!("  (none)");
    }
    for (pod, p) in &state.pods {
        for a in &p.attachments {
            let ips = agent_proto::join_ips(&a.ips);
            println!(
                "  {pod:<12} {:<8} {:<6} {:<16} {:<18} {}",
                p.node, a.ifname, a.network, ips, a.port
            );
        }
    }
    Ok(())
}

/// Every controller of a multi-cluster lab, labelled (clusters, then the provider), for
/// `l2sm topology`.
pub fn controllers(
    lab: &Lab,
    state: &LabState,
) -> anyhow::Result<Vec<(String, l2sm_api::ControllerClient)>> {
    let mut v = Vec::new();
    for c in &state.clusters {
        v.push((
            format!("cluster {}", c.name),
            lab.site_api(state, &lab.site(Some(&c.name))?)?,
        ));
    }
    v.push(("provider".to_string(), lab.provider_api(state)?));
    Ok(v)
}

/// The edge hops of the provider networks, one line each, for `l2sm topology`.
pub fn hop_lines(state: &LabState) -> Vec<String> {
    let mut out = Vec::new();
    for (name, hops) in &state.provider_networks {
        for (c, hop) in hops {
            out.push(format!(
                "{name}: {c} cluster switch {} <-> patch <-> edge {}",
                hop.cluster_port, hop.edge_port
            ));
        }
    }
    out
}
