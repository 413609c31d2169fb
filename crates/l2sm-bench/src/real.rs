//! Benchmarks against real Open vSwitch.
//!
//! - `ovs`: one ovs-vswitchd hosting N bridges (a node's switch each: pod ports and VXLAN
//!   tunnels on a partial mesh), each connected to the controller. Convergence: controller
//!   spawn -> every bridge holds its expected number of flows and groups.
//! - `flow-rate`: one bridge, K flows. Our controller programming them (connection, state
//!   read, FLOW_MODs, barrier) next to `ovs-ofctl add-groups` + `add-flows` loading the very
//!   same flows and groups (dumped from the bridge) from files, in the same run.

use crate::ovs::{Observer, Ovs};
use crate::scenario::{Cluster, ClusterSpec};
use crate::util::{ms, ControllerSpec, ScratchDir, Usage};
use anyhow::{bail, Context as _};
use l2sm_pipeline::ids;
use std::path::Path;
use std::time::{Duration, Instant};

/// Result of the many-bridges benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BridgesReport {
    /// Cluster parameters.
    pub cluster: ClusterSpec,
    /// Tunnels between bridges.
    pub links: usize,
    /// Flows all bridges must hold in all.
    pub expected_flows: usize,
    /// Groups all bridges must hold in all.
    pub expected_groups: usize,
    /// Controller spawn -> API and OpenFlow serving, ms.
    pub serving_ms: f64,
    /// Controller spawn -> every bridge holds its flows and groups, ms (includes pointing the
    /// bridges at the controller once it serves: one ovs-vsctl transaction).
    pub convergence_ms: f64,
    /// Bridges that reached their expected counts.
    pub converged_bridges: usize,
    /// Controller memory and CPU after convergence.
    pub controller: Usage,
    /// ovs-vswitchd memory and CPU after convergence (whole run).
    pub vswitchd: Usage,
}

async fn wait_counts(
    observers: &mut [Observer],
    expected: &[(usize, usize)],
    timeout: Duration,
) -> anyhow::Result<(Option<Instant>, usize)> {
    let deadline = Instant::now() + timeout;
    let mut done = vec![false; observers.len()];
    loop {
        for (i, o) in observers.iter_mut().enumerate() {
            if !done[i] {
                done[i] = o.counts().await? == expected[i];
            }
        }
        let n = done.iter().filter(|d| **d).count();
        if n == observers.len() {
            return Ok((Some(Instant::now()), n));
        }
        if Instant::now() > deadline {
            return Ok((None, n));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the many-bridges benchmark.
pub async fn bridges(
    l2sm: &Path,
    spec: &ClusterSpec,
    timeout: Duration,
) -> anyhow::Result<BridgesReport> {
    let cluster = Cluster::generate(spec)?;
    let dir = ScratchDir::new("ovs")?;
    let topo = dir.0.join("topology.json");
    std::fs::write(&topo, cluster.topology_file().to_json())?;
    let cspec = ControllerSpec::new(l2sm, &dir.0, Some(topo))?;
    let nets = {
        let mut c = cspec.spawn()?;
        c.wait_serving(Duration::from_secs(10)).await?;
        let nets = cluster.feed(c.api()?, 1, 8).await?;
        c.stop();
        nets
    };
    let expected: Vec<(usize, usize)> = cluster
        .expected(&nets)
        .iter()
        .map(|p| (p.flows.len(), p.groups.len()))
        .collect();

    let ovs = Ovs::start("ovs")?;
    for sw in &cluster.switches {
        let mut args: Vec<String> = vec![
            "add-br".into(),
            sw.bridge.clone(),
            "--".into(),
            "set".into(),
            "bridge".into(),
            sw.bridge.clone(),
            "datapath_type=netdev".into(),
            "fail_mode=secure".into(),
            "protocols=OpenFlow13".into(),
            format!("other-config:datapath-id={}", ids::dpid_hex(sw.dpid)),
        ];
        for p in &sw.ports {
            args.extend([
                "--".into(),
                "add-port".into(),
                sw.bridge.clone(),
                p.name.clone(),
            ]);
            args.extend([
                "--".into(),
                "set".into(),
                "interface".into(),
                p.name.clone(),
            ]);
            match (sw.tunnels.get(&p.port_no), sw.trunks.get(&p.port_no)) {
                (Some(ip), _) => args.extend([
                    "type=vxlan".into(),
                    format!("options:remote_ip={ip}"),
                    "options:key=flow".into(),
                ]),
                // Bridges of one ovs-vswitchd are cabled with patch ports.
                (None, Some((_, peer))) => {
                    args.extend(["type=patch".into(), format!("options:peer={peer}")])
                }
                (None, None) => args.push("type=internal".into()),
            }
            args.push(format!("ofport_request={}", p.port_no));
        }
        ovs.vsctl(&args)
            .with_context(|| format!("creating bridge {}", sw.bridge))?;
    }
    let mut observers = Vec::new();
    for sw in &cluster.switches {
        observers.push(Observer::connect(&ovs.mgmt(&sw.bridge)).await?);
    }

    let t0 = Instant::now();
    let mut controller = cspec.spawn()?;
    let serving = controller.wait_serving(Duration::from_secs(10)).await?;
    let mut set: Vec<String> = Vec::new();
    for sw in &cluster.switches {
        set.extend([
            "--".into(),
            "set-controller".into(),
            sw.bridge.clone(),
            format!("tcp:{}", cspec.openflow),
        ]);
    }
    ovs.vsctl(&set[1..])?;
    let (done, n) = wait_counts(&mut observers, &expected, timeout).await?;
    let report = BridgesReport {
        cluster: spec.clone(),
        links: cluster.links.len(),
        expected_flows: expected.iter().map(|e| e.0).sum(),
        expected_groups: expected.iter().map(|e| e.1).sum(),
        serving_ms: ms(serving.duration_since(t0)),
        convergence_ms: done.map(|t| ms(t.duration_since(t0))).unwrap_or(f64::NAN),
        converged_bridges: n,
        controller: controller.usage()?,
        vswitchd: Usage::of(ovs.vswitchd_pid())?,
    };
    controller.stop();
    Ok(report)
}

/// Result of the flow programming rate benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RateReport {
    /// Flows programmed.
    pub flows: usize,
    /// Groups programmed.
    pub groups: usize,
    /// Member ports (3 flows each) and networks (2 flows, 2 groups each) behind them.
    pub memberships: usize,
    /// Networks.
    pub networks: usize,
    /// Our controller: bridge pointed at the controller -> bridge holds every flow, ms.
    pub controller_ms: f64,
    /// `ovs-ofctl add-groups` + `add-flows` from files into the emptied bridge, ms.
    pub ofctl_ms: f64,
    /// controller_ms / ofctl_ms (goal: at most 1.5).
    pub ratio: f64,
    /// Flows per second, controller.
    pub controller_flows_per_s: f64,
    /// Flows per second, ovs-ofctl.
    pub ofctl_flows_per_s: f64,
}

/// Runs the flow programming rate benchmark with about `flows` flows.
pub async fn flow_rate(l2sm: &Path, flows: usize) -> anyhow::Result<RateReport> {
    // Per network of 100 ports: 300 member flows, 2 flood flows, 2 groups; plus the static flows.
    // Per member: classifier, learn rule, known unicast, and the default limits' flows
    // (excess drop, metered flood).
    let per_member =
        3 + l2sm_pipeline::limits::port_flows(1, 1, &l2sm_pipeline::limits::Limits::default(), 0)
            .len();
    let per_net = 100u32;
    let networks = (flows / (per_net as usize * per_member + 2)).max(1);
    let dir = ScratchDir::new("rate")?;
    let cspec = ControllerSpec::new(l2sm, &dir.0, None)?;
    let mut controller = cspec.spawn()?;
    controller.wait_serving(Duration::from_secs(10)).await?;
    let api = controller.api()?;
    let bridge = "br-l2smrate";
    let dpid = ids::datapath_id(bridge);
    for k in 0..networks {
        let name = format!("rate-{k}");
        api.create_vnet(&name).await?;
        let eps: Vec<String> = (0..per_net)
            .map(|j| format!("of:{}/{}", ids::dpid_hex(dpid), k as u32 * per_net + j + 1))
            .collect();
        api.add_ports(&name, &eps).await?;
    }
    let memberships = networks * per_net as usize;
    // The network-independent flows (defaults, the link-probe punt) are what an empty view
    // compiles to.
    let fixed = l2sm_pipeline::compile(&Default::default()).flows.len();
    // Per member: classifier, learn rule, known unicast, and the default limits' flows
    // (excess drop, metered flood).
    let per_member =
        3 + l2sm_pipeline::limits::port_flows(1, 1, &l2sm_pipeline::limits::Limits::default(), 0)
            .len();
    let expected = (
        per_member * memberships + 2 * networks + fixed,
        2 * networks,
    );

    let ovs = Ovs::start("rate")?;
    ovs.vsctl(&[
        "add-br",
        bridge,
        "--",
        "set",
        "bridge",
        bridge,
        "datapath_type=netdev",
        "fail_mode=secure",
        "protocols=OpenFlow13",
        &format!("other-config:datapath-id={}", ids::dpid_hex(dpid)),
    ])?;
    let mut obs = vec![Observer::connect(&ovs.mgmt(bridge)).await?];

    // Ours.
    let t0 = Instant::now();
    ovs.vsctl(&["set-controller", bridge, &format!("tcp:{}", cspec.openflow)])?;
    let (done, _) = wait_counts(&mut obs, &[expected], Duration::from_secs(120)).await?;
    let Some(done) = done else {
        bail!(
            "the controller did not program {} flows within 120 s",
            expected.0
        );
    };
    let controller_ms = ms(done.duration_since(t0));

    // The same flows and groups, from files. The controller goes away but stays configured:
    // OVS flushes a bridge's flows when its last controller is removed from the configuration,
    // while a secure-mode bridge that loses its controller keeps them.
    controller.stop();
    let strip = |text: String| -> String {
        text.lines()
            .filter(|l| !l.contains("reply (OF1.3)"))
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let flows_file = dir.0.join("flows.txt");
    let groups_file = dir.0.join("groups.txt");
    std::fs::write(
        &flows_file,
        strip(ovs.ofctl(&["dump-flows", "--no-stats", bridge])?),
    )?;
    std::fs::write(&groups_file, strip(ovs.ofctl(&["dump-groups", bridge])?))?;
    // Meters stay (del-flows leaves them): the flows name them, and the baseline is the
    // flows and groups.
    ovs.ofctl(&["del-flows", bridge])?;
    ovs.ofctl(&["del-groups", bridge])?;
    if obs[0].counts().await? != (0, 0) {
        bail!("the bridge still holds flows after del-flows");
    }
    let t0 = Instant::now();
    ovs.ofctl(&["add-groups", bridge, &groups_file.display().to_string()])?;
    ovs.ofctl(&["add-flows", bridge, &flows_file.display().to_string()])?;
    let ofctl_ms = ms(t0.elapsed());
    let held = obs[0].counts().await?;
    if held != expected {
        bail!(
            "ovs-ofctl loaded {held:?} flows and groups, expected {expected:?} (files: {} and {} lines)",
            std::fs::read_to_string(&flows_file)?.lines().count(),
            std::fs::read_to_string(&groups_file)?.lines().count()
        );
    }
    Ok(RateReport {
        flows: expected.0,
        groups: expected.1,
        memberships,
        networks,
        controller_ms,
        ofctl_ms,
        ratio: controller_ms / ofctl_ms,
        controller_flows_per_s: expected.0 as f64 / (controller_ms / 1000.0),
        ofctl_flows_per_s: expected.0 as f64 / (ofctl_ms / 1000.0),
    })
}
