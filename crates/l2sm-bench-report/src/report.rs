//! The layout of `BENCHMARKS.md`: which samples make which rows, the goals of issue #8 and the
//! published figures of other systems (a separate column, each with its source).

use crate::stats::{median, num, percentile, ratio};
use crate::{Inputs, Plot, Series};
use serde_json::Value;
use std::fmt::Write;

/// Published figures of other systems, from `../shared/reference/peers.md` (its source ids).
mod peers {
    pub(super) const DATAPLANE: &str =
        "Kube-OVN overlay vs host, iperf3: 8.5 vs 9.4 Gbit/s = 0.90× host [K12]; \
        public cloud 2.42 vs 2.52 Gbit/s = 0.96× [K12]";
    pub(super) const RTT: &str =
        "Kube-OVN overlay vs host, 1-byte TCP latency (default tuning): 25.7 vs 13.1 µs [K4]";
    pub(super) const ATTACH: &str =
        "OVN-Kubernetes CI pod-ready latency: avg 1,227.5 ms, max 2,000 ms at 400 pods [O6]; \
        NSM establish ≈ 15 s [N4]; upstream L2S-M: none published";
    pub(super) const FLOW_RATE: &str =
        "ONOS single-instance cbench ≈ 72.5k responses/s (low confidence) [X4]; \
        OVS-DOCA target 4,000 flow-mods ≤ 1 s [P9]";
    pub(super) const CONVERGE: &str =
        "Faucet: programs a switch and learns hosts \"within a few seconds\" [F1]";
    pub(super) const RSS: &str = "ONOS (upstream L2S-M's controller): -Xmx2g default heap [X1]; Multus daemon 10–30 MiB [M3]";
    pub(super) const COLD: &str = "upstream L2S-M controller (ONOS): readiness probe first check at 30 s, 1–5 min to ready [L6,L7]";
    pub(super) const SOURCES: &[(&str, &str)] = &[
        ("K4", "kubeovn/docs docs/advance/performance-tuning.en.md"),
        (
            "K12",
            "github.com/kubeovn/kube-ovn/wiki (Packet and Aliyun test reports)",
        ),
        (
            "O6",
            "ovn-kubernetes/ovn-kubernetes PR #6348 (CI performance report)",
        ),
        ("N4", "networkservicemesh/deployments-k8s#1015"),
        (
            "X1",
            "opennetworkinglab/onos tools/package/bin/onos-service",
        ),
        (
            "X4",
            "CapstoneProjectTeam14/Capstone_Project_Team14 testing.md (community cbench run)",
        ),
        (
            "P9",
            "Mellanox/ovs-tests test-ovs-openflow-rules-insertion.sh",
        ),
        ("F1", "faucetsdn/faucet docs/intro.rst"),
        ("M3", "k8snetworkplumbingwg/multus-cni issues #1346, #1416"),
        (
            "L6",
            "Networks-it-uc3m/L2S-M config/sdncontroller/manifests.yaml",
        ),
        (
            "L7",
            "Networks-it-uc3m/L2S-M additional-info/implementation.md",
        ),
    ];
}

/// Issue #16's: one API write (a membership) at 5,000 switches (20,000 memberships) costs at
/// most this many times what it costs at 1,000 (4,000 memberships).
const WRITE_SCALE_GOAL: f64 = 1.5;

/// API write latency while the synthetic clusters were fed (one membership per request), from
/// the documents that have it, with a plot and issue #16's goal.
fn write_latency(synth: &[&Value], md: &mut String, goals: &mut Vec<Goal>, plots: &mut Vec<Plot>) {
    let f = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_f64);
    let rows: Vec<(f64, f64, f64, f64)> = synth
        .iter()
        .filter(|v| f(v, "/feed_batch") == Some(1.0))
        .filter_map(|v| {
            Some((
                f(v, "/cluster/switches")?,
                f(v, "/memberships")?,
                f(v, "/feed_p50_ms")?,
                f(v, "/feed_p99_ms")?,
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "### API write latency against the state's size

         One membership per request (`add ports`, as agents report them), 8 in flight, while the          clusters above were fed; latency over the last tenth of the requests (the controller          then holds nearly the whole state). Each write is committed durably (fsync) before the          answer.

| Switches | memberships | p50 ms | p99 ms | p99 ÷ smallest |
|---|---|---|---|---|"
    );
    let base = rows.first().map(|r| r.3);
    let mut series = Series {
        name: "API write p99".into(),
        points: vec![],
    };
    for &(n, m, p50, p99) in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            num(n),
            num(m),
            num(p50),
            num(p99),
            ratio(Some(p99), base)
        );
        series.points.push((n, p99));
    }
    let _ = writeln!(
        md,
        "
![API write latency against switches](docs/bench/api-write.png)
"
    );
    plots.push(Plot {
        file: "api-write.png".into(),
        title: "API write p99 against switches (4 memberships each)".into(),
        x_label: "switches".into(),
        y_label: "ms".into(),
        series: vec![series],
        goal: None,
    });
    let at = |n: f64| rows.iter().find(|r| r.0 == n).map(|r| r.3);
    let (measured, verdict) = match (at(1000.0), at(5000.0)) {
        (Some(small), Some(big)) if small > 0.0 => {
            let x = big / small;
            let measured = format!("{x:.2}× ({} ms ÷ {} ms)", num(big), num(small));
            if x <= WRITE_SCALE_GOAL {
                (measured, "met".into())
            } else {
                (
                    measured,
                    format!("**missed** ({x:.2}× > {WRITE_SCALE_GOAL}×)"),
                )
            }
        }
        _ => (
            "not measured at both 1,000 and 5,000 switches in this run".into(),
            "—".into(),
        ),
    };
    goals.push(Goal {
        what: "API write p99, 20,000 memberships ÷ 4,000 (issue #16)",
        target: format!("≤ {WRITE_SCALE_GOAL}×"),
        measured,
        verdict,
    });
}

/// Issue #8's goals.
const TPUT_GOAL: f64 = 0.9;
const ATTACH_P99_GOAL_MS: f64 = 200.0;
const CONVERGE_GOAL_MS: f64 = 5000.0;
const RSS_GOAL_MIB: f64 = 64.0;
const COLD_GOAL_MS: f64 = 100.0;
/// Issue #5's: programming a bridge within 1.5× the time `ovs-ofctl add-flows` takes.
const FLOW_RATE_GOAL: f64 = 1.5;

struct Goal {
    what: &'static str,
    target: String,
    measured: String,
    verdict: String,
}

fn machine_str(inputs: &Inputs, key: &str) -> String {
    match inputs.machine.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "?".into(),
    }
}

fn not_measured(inputs: &Inputs, section: &str) -> String {
    match inputs.skipped.get(section) {
        Some(r) if !r.is_empty() => format!("not measured: {r}"),
        _ => "not measured: no samples in this run".into(),
    }
}

/// `median (min–max)` of a key, or `—`.
fn spread(inputs: &Inputs, key: &str) -> String {
    match inputs.get(key) {
        Some(v) if v.len() > 1 => format!(
            "{} ({}–{})",
            num(median(v).unwrap_or(0.0)),
            num(percentile(v, 0.0).unwrap_or(0.0)),
            num(percentile(v, 100.0).unwrap_or(0.0))
        ),
        Some(v) => num(v[0]),
        None => "—".into(),
    }
}

fn med(inputs: &Inputs, key: &str) -> Option<f64> {
    inputs.get(key).and_then(median)
}

fn pct(inputs: &Inputs, key: &str, p: f64) -> Option<f64> {
    inputs.get(key).and_then(|v| percentile(v, p))
}

fn opt(x: Option<f64>) -> String {
    x.map_or("—".into(), num)
}

/// Renders the report and the plots it links to.
pub fn render(inputs: &Inputs) -> (String, Vec<Plot>) {
    let mut md = String::new();
    let mut plots = Vec::new();
    let mut goals = Vec::new();
    header(inputs, &mut md);
    let mut body = String::new();
    dataplane(inputs, &mut body, &mut goals);
    attach(inputs, &mut body, &mut goals, &mut plots);
    controller(inputs, &mut body, &mut goals, &mut plots);
    control_plane_tls(inputs, &mut body, &mut goals);
    agent(inputs, &mut body);
    codec(inputs, &mut body);

    let _ = writeln!(md, "## Goals (issues #8 and #14)\n");
    let _ = writeln!(
        md,
        "| Goal | Target | Measured | Verdict |\n|---|---|---|---|"
    );
    for g in &goals {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            g.what, g.target, g.measured, g.verdict
        );
    }
    md.push('\n');
    md.push_str(&body);
    let _ = writeln!(md, "## Sources of the published figures\n");
    let _ = writeln!(
        md,
        "Collected in `../shared/reference/peers.md` (not measured here; other hardware, other setups: \
         compare ratios, not absolute numbers).\n"
    );
    for (id, src) in peers::SOURCES {
        let _ = writeln!(md, "- [{id}] {src}");
    }
    (md, plots)
}

fn header(inputs: &Inputs, md: &mut String) {
    let m = |k| machine_str(inputs, k);
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench.sh` ({} mode) on {}, commit `{}`. Do not edit by hand: rerun \
         the script. How to run it and how to read this page: [docs/benchmarks.md](docs/benchmarks.md).\n",
        m("mode"),
        m("date"),
        m("commit")
    );
    let _ = writeln!(
        md,
        "**Machine:** {} cores ({}), {} MiB, kernel {}, Open vSwitch {} (userspace datapath). \
         Load average {} at the start and {} at the end (1, 5, 15 min); {} build, OVS, lab or \
         iperf3 processes were running when it started: the machine is shared, so absolute \
         numbers move from run to run. **Read the ratios:** every figure sits next to a baseline \
         measured in the same run, and is the median of repeated runs (their count and min–max \
         are given).\n",
        m("nproc"),
        m("cpu"),
        m("mem_mib"),
        m("kernel"),
        m("ovs"),
        m("load_start"),
        m("load_end"),
        m("others"),
    );
}

fn dataplane(inputs: &Inputs, md: &mut String, goals: &mut Vec<Goal>) {
    let _ = writeln!(md, "## Data plane\n");
    let _ = writeln!(
        md,
        "Two emulated nodes (`l2sm lab`, namespaces, userspace OVS, VXLAN over `br-phy`), pods a and \
         b on node 1, pod c on node 2, MTU 1450, one iperf3 TCP stream. Three systems with the same \
         shape, their runs interleaved: **L2S-M** (our controller's pipeline), **plain OVS `NORMAL`** \
         (the same lab with the controller removed and every flow replaced by one `NORMAL` flow; two \
         nodes, one tunnel, no loop) and **Linux bridge + kernel VXLAN** (no OVS; the kernel \
         baseline, offloads as the kernel sets them).\n"
    );
    if inputs.get("dp.tput.same.l2sm").is_none() {
        let _ = writeln!(md, "{}\n", not_measured(inputs, "dataplane"));
        goals.push(Goal {
            what: "Pipeline throughput vs plain OVS `NORMAL`",
            target: format!("≥ {TPUT_GOAL}×"),
            measured: not_measured(inputs, "dataplane"),
            verdict: "—".into(),
        });
        return;
    }
    let runs = inputs.get("dp.tput.same.l2sm").map_or(0, <[f64]>::len);
    let _ = writeln!(
        md,
        "| Path | Metric | L2S-M | plain OVS `NORMAL` | L2S-M ÷ NORMAL | Linux bridge + kernel VXLAN | L2S-M ÷ kernel | Published (other systems) |\n|---|---|---|---|---|---|---|---|"
    );
    let mut tput_ratios = Vec::new();
    for (path, label) in [("same", "same node"), ("cross", "across nodes")] {
        let k = |s: &str| format!("dp.tput.{path}.{s}");
        let (o, n, kr) = (
            med(inputs, &k("l2sm")),
            med(inputs, &k("ovs")),
            med(inputs, &k("kernel")),
        );
        if let (Some(o), Some(n)) = (o, n) {
            tput_ratios.push((label, path, o / n));
        }
        let _ = writeln!(
            md,
            "| {label} | TCP Mbit/s, median of {runs} (min–max) | {} | {} | **{}** | {} | {} | {} |",
            spread(inputs, &k("l2sm")),
            spread(inputs, &k("ovs")),
            ratio(o, n),
            spread(inputs, &k("kernel")),
            ratio(o, kr),
            if path == "cross" { peers::DATAPLANE } else { "—" }
        );
    }
    for (path, label) in [("same", "same node"), ("cross", "across nodes")] {
        let k = |s: &str| format!("dp.rtt.{path}.{s}");
        let n = inputs.get(&k("l2sm")).map_or(0, <[f64]>::len);
        let (o, b, kr) = (
            med(inputs, &k("l2sm")),
            med(inputs, &k("ovs")),
            med(inputs, &k("kernel")),
        );
        let _ = writeln!(
            md,
            "| {label} | ping RTT ms, median of {n} (p99) | {} ({}) | {} ({}) | {} | {} ({}) | {} | {} |",
            opt(o),
            opt(pct(inputs, &k("l2sm"), 99.0)),
            opt(b),
            opt(pct(inputs, &k("ovs"), 99.0)),
            ratio(o, b),
            opt(kr),
            opt(pct(inputs, &k("kernel"), 99.0)),
            ratio(o, kr),
            if path == "cross" { peers::RTT } else { "—" }
        );
    }
    let up = med(inputs, "lab.up.l2sm");
    let kup = med(inputs, "lab.up.kernel");
    let _ = writeln!(
        md,
        "| lab | build 2 nodes, ms | {} (`l2sm lab up`) | — | — | {} (namespaces, bridges, VXLAN by `ip`) | {} | — |\n",
        spread(inputs, "lab.up.l2sm"),
        opt(kup),
        ratio(up, kup)
    );

    // What the datapath did per packet: equal numbers mean the pipeline costs OVS no extra work.
    let d = |f: &str, s: &str| med(inputs, &format!("dp.diag.{f}.{s}"));
    let emc = |s: &str| match (d("emc_hits", s), d("packets", s)) {
        (Some(e), Some(p)) if p > 0.0 => Some(100.0 * e / (p * d("passes", s).unwrap_or(1.0))),
        _ => None,
    };
    let _ = writeln!(
        md,
        "Why the two OVS configurations compare as they do: `ovs-appctl dpif-netdev/pmd-stats-show` \
         and `dpctl/dump-flows` on node 1 over all the runs above.\n"
    );
    let _ = writeln!(
        md,
        "| Datapath counter (node 1) | L2S-M | plain OVS `NORMAL` |\n|---|---|---|"
    );
    for (label, v) in [
        (
            "passes per packet (> 1: recirculation)",
            [d("passes", "l2sm"), d("passes", "ovs")],
        ),
        (
            "datapath flows (megaflows) at the end",
            [d("dpflows", "l2sm"), d("dpflows", "ovs")],
        ),
        (
            "upcalls (slow path)",
            [d("upcalls", "l2sm"), d("upcalls", "ovs")],
        ),
        (
            "exact-match cache hits, % of passes",
            [emc("l2sm"), emc("ovs")],
        ),
    ] {
        let _ = writeln!(md, "| {label} | {} | {} |", opt(v[0]), opt(v[1]));
    }
    md.push('\n');

    let worst = tput_ratios
        .iter()
        .copied()
        .min_by(|a, b| a.2.total_cmp(&b.2));
    let measured = tput_ratios
        .iter()
        .map(|(l, _, r)| format!("{l} {r:.2}×"))
        .collect::<Vec<_>>()
        .join(", ");
    let verdict = match worst {
        Some((_, _, r)) if r >= TPUT_GOAL => "met".to_string(),
        Some((label, path, r)) => {
            // Do the runs' ranges overlap? If so the gap is within this run's noise.
            let range = |s: &str| {
                let v = inputs.get(&format!("dp.tput.{path}.{s}"))?;
                Some((percentile(v, 0.0)?, percentile(v, 100.0)?))
            };
            let overlap = range("l2sm")
                .zip(range("ovs"))
                .is_some_and(|((lo1, hi1), (lo2, hi2))| lo1 <= hi2 && lo2 <= hi1);
            let same_work = d("passes", "l2sm")
                .zip(d("passes", "ovs"))
                .is_some_and(|(a, b)| a <= b * 1.05)
                && d("upcalls", "l2sm")
                    .zip(d("upcalls", "ovs"))
                    .is_some_and(|(a, b)| a <= b * 2.0 + 10.0);
            format!(
                "**missed** {label} by {:.0}% of the goal ({r:.2}× vs {TPUT_GOAL}×); {}",
                (TPUT_GOAL - r) / TPUT_GOAL * 100.0,
                match (same_work, overlap) {
                    (true, true) => "the datapath counters show the same work per packet (no extra recirculation or upcalls) and the two min–max ranges overlap: the gap is within this run's noise",
                    (true, false) => "the datapath counters show the same work per packet (no extra recirculation or upcalls), yet the min–max ranges do not overlap in this run: the cause is not in these counters (shared machine); rerun to tell noise from a real cost",
                    _ if d("passes", "l2sm").is_none() || d("passes", "ovs").is_none() => {
                        "no datapath counters in this run to explain it"
                    }
                    _ => "the datapath counters differ: see the counter table under Data plane",
                }
            )
        }
        None => "—".into(),
    };
    goals.push(Goal {
        what: "Pipeline throughput vs plain OVS `NORMAL`",
        target: format!("≥ {TPUT_GOAL}×"),
        measured,
        verdict,
    });
    let _ = writeln!(
        md,
        "Both OVS columns run the userspace (`netdev`) datapath with checksum offload off on the \
         devices that feed it and no TSO (the host has no OVS kernel module; see \
         [docs/lab.md](docs/lab.md)): every segment is a 1450-byte frame copied through a socket \
         by one thread. That, not the flows, is why both sit far below the kernel column.\n"
    );
}

fn levels(inputs: &Inputs, prefix: &str) -> Vec<u32> {
    let mut v: Vec<u32> = inputs
        .samples
        .keys()
        .filter_map(|k| k.strip_prefix(prefix)?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// Longest logged `ovs-vswitchd` stall during the rounds at `n` pods, as a table cell.
/// Cell: `longest / total` (total summed over the rounds' logged stalls).
fn stall(inputs: &Inputs, sys: &str, n: u32) -> String {
    let max = pct(inputs, &format!("attach_stall.{sys}.c{n}"), 100.0);
    let sum: Option<f64> = inputs
        .get(&format!("attach_stall_sum.{sys}.c{n}"))
        .map(|v| v.iter().sum());
    let cpu = pct(inputs, &format!("attach_vswitchd_cpu.{sys}.c{n}"), 100.0)
        .map_or(String::new(), |c| format!(" (CPU {c:.0}% of a core)"));
    match max {
        Some(ms) if ms >= 1000.0 => format!("{} / {}{cpu}", num(ms), opt(sum)),
        Some(_) => format!("<1,000{cpu}"),
        None => "—".into(),
    }
}

fn attach(inputs: &Inputs, md: &mut String, goals: &mut Vec<Goal>, plots: &mut Vec<Plot>) {
    let _ = writeln!(md, "## Attach: CNI ADD to first ping\n");
    let _ = writeln!(
        md,
        "N pods started at once on node 1 of a 2-node lab: for each, one shell runs the CNI ADD \
         (`l2sm-cni` → node agent → OVS port → controller) and then pings a pod on node 2 every \
         2 ms until the first reply; the time is from ADD's start to that reply. Baselines in the \
         same run: the same through the **plain OVS `NORMAL`** lab (same plugin, agent and \
         userspace OVS, one `NORMAL` flow instead of our pipeline: what the port plumbing alone \
         costs), and Debian's reference `bridge` plugin with `host-local` IPAM on one node (its \
         first ping goes to a pod on the same bridge; a Linux bridge has nothing to program). \
         Teardown (DEL) is not timed.\n"
    );
    let lv = levels(inputs, "attach.l2sm.c");
    if lv.is_empty() {
        let _ = writeln!(md, "{}\n", not_measured(inputs, "attach"));
        goals.push(Goal {
            what: "Attach p99 at 100 concurrent pods",
            target: format!("< {ATTACH_P99_GOAL_MS} ms"),
            measured: not_measured(inputs, "attach"),
            verdict: "—".into(),
        });
        return;
    }
    let _ = writeln!(
        md,
        "| Pods at once | samples | L2S-M p50 / p99 ms | plain OVS `NORMAL` p50 / p99 | bridge + host-local p50 / p99 | L2S-M ÷ NORMAL, p99 | L2S-M ÷ bridge, p99 | ADD alone p50 / p99: L2S-M · NORMAL · bridge | node 1 `ovs-vswitchd`, L2S-M: stalls longest / total ms (CPU) | same, NORMAL | Published (other systems) |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut series: Vec<Series> = [
        "L2S-M p50",
        "L2S-M p99",
        "plain OVS NORMAL p99",
        "bridge p99",
    ]
    .iter()
    .map(|n| Series {
        name: n.to_string(),
        points: vec![],
    })
    .collect();
    for (i, &n) in lv.iter().enumerate() {
        let k = |s: &str| format!("attach.{s}.c{n}");
        let a = |s: &str| format!("attach_add.{s}.c{n}");
        let p = |s: &str, q: f64| pct(inputs, &k(s), q);
        let pair = |key: String| {
            format!(
                "{} / {}",
                opt(pct(inputs, &key, 50.0)),
                opt(pct(inputs, &key, 99.0))
            )
        };
        for (s, v) in series.iter_mut().zip([
            p("l2sm", 50.0),
            p("l2sm", 99.0),
            p("ovs", 99.0),
            p("bridge", 99.0),
        ]) {
            if let Some(v) = v {
                s.points.push((f64::from(n), v));
            }
        }
        let _ = writeln!(
            md,
            "| {n} | {} | {} | {} | {} | {} | {} | {} · {} · {} | {} | {} | {} |",
            inputs.get(&k("l2sm")).map_or(0, <[f64]>::len),
            pair(k("l2sm")),
            pair(k("ovs")),
            pair(k("bridge")),
            ratio(p("l2sm", 99.0), p("ovs", 99.0)),
            ratio(p("l2sm", 99.0), p("bridge", 99.0)),
            pair(a("l2sm")),
            pair(a("ovs")),
            pair(a("bridge")),
            stall(inputs, "l2sm", n),
            stall(inputs, "ovs", n),
            if i + 1 == lv.len() {
                peers::ATTACH
            } else {
                "—"
            }
        );
    }
    // A first ping one ARP retransmit (1 s) after a fast ADD: the pod's first ARP request went
    // out before the switch held the new port's flows.
    if let (Some(p), Some(a)) = (
        pct(inputs, "attach.l2sm.c1", 50.0),
        pct(inputs, "attach_add.l2sm.c1", 50.0),
    ) {
        if p - a > 900.0 && p - a < 1500.0 {
            let _ = writeln!(
                md,
                "\n**One pod alone waits ≈ 1 s for its first ping** ({} ms after an ADD of {} ms): \
                 that is the kernel's ARP retransmit time, so the pod's first ARP request was lost: \
                 ADD returned before the switch held the new port's flows.",
                num(p - a),
                num(a)
            );
        }
    }
    let _ = writeln!(
        md,
        "\nThe stall column: the main-loop intervals node 1's `ovs-vswitchd` logged during the \
         rounds (it logs those over 1 s, rate-limited, so the total is a lower bound; `<1,000` \
         means none), and its CPU over the round, busiest round. In the userspace \
         datapath that thread both applies port and flow changes and forwards packets, so while \
         it is busy no first ping gets through.\n\n\
         ![attach latency against pods at once](docs/bench/attach.png)\n"
    );
    series.retain(|s| !s.points.is_empty());
    plots.push(Plot {
        file: "attach.png".into(),
        title: "CNI ADD to first ping, against pods started at once".into(),
        x_label: "pods started at once".into(),
        y_label: "ms".into(),
        series,
        goal: Some(("goal: p99 < 200 ms at 100".into(), ATTACH_P99_GOAL_MS)),
    });
    let (measured, verdict) = match pct(inputs, "attach.l2sm.c100", 99.0) {
        Some(p99) if p99 < ATTACH_P99_GOAL_MS => (format!("p99 {} ms", num(p99)), "met".into()),
        Some(p99) => {
            let b99 = pct(inputs, "attach.bridge.c100", 99.0);
            let n99 = pct(inputs, "attach.ovs.c100", 99.0);
            (
                format!("p99 {} ms", num(p99)),
                format!(
                    "**missed** by {} ms ({:.1}× the goal). At the same concurrency, the same \
                     agent and OVS with one `NORMAL` flow instead of our pipeline: p99 {} ms ({} \
                     ours ÷ NORMAL); the reference bridge plugin: p99 {} ms ({} ours ÷ bridge). Our CNI ADD itself returns at p99 \
                     {} ms (bridge's ADD: {} ms): 100 plugin processes start at once on {} cores. \
                     The rest is the data path: node 1's `ovs-vswitchd` main loop, which in the \
                     userspace datapath also forwards every packet, logged stalls (longest / total \
                     ms) of {} while the 100 ports and their flows went in",
                    num(p99 - ATTACH_P99_GOAL_MS),
                    p99 / ATTACH_P99_GOAL_MS,
                    opt(n99),
                    ratio(Some(p99), n99),
                    opt(b99),
                    ratio(Some(p99), b99),
                    opt(pct(inputs, "attach_add.l2sm.c100", 99.0)),
                    opt(pct(inputs, "attach_add.bridge.c100", 99.0)),
                    machine_str(inputs, "nproc"),
                    stall(inputs, "l2sm", 100)
                ),
            )
        }
        None => (
            format!(
                "not measured at 100 (levels in this run: {})",
                lv.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ),
            "—".into(),
        ),
    };
    goals.push(Goal {
        what: "Attach p99 at 100 concurrent pods",
        target: format!("< {ATTACH_P99_GOAL_MS} ms"),
        measured,
        verdict,
    });
}

fn controller(inputs: &Inputs, md: &mut String, goals: &mut Vec<Goal>, plots: &mut Vec<Plot>) {
    let _ = writeln!(md, "## Controller\n");
    let why = not_measured(inputs, "controller");
    let f = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_f64);
    let docs = |key: &str| {
        // `tls-*` and `api-*` documents are the TLS section's (repeated runs).
        let mut v: Vec<&Value> = inputs
            .controller
            .iter()
            .filter(|(stem, _)| !stem.starts_with("tls-") && !stem.starts_with("api-"))
            .filter_map(|(_, d)| d.get(key))
            .collect();
        v.sort_by(|a, b| {
            f(a, "/cluster/switches")
                .unwrap_or(0.0)
                .total_cmp(&f(b, "/cluster/switches").unwrap_or(0.0))
        });
        v
    };
    let synth = docs("controller");
    let real = docs("ovs");
    let cold = inputs.controller.values().find_map(|d| d.get("cold_start"));
    let flow_rate = inputs.controller.values().find_map(|d| d.get("flow_rate"));
    if !inputs.controller.is_empty() {
        let _ = writeln!(
            md,
            "Measured by `l2sm-bench` (crate `l2sm-bench`; what each mode does and every JSON field: \
             [docs/benchmarks-controller.md](docs/benchmarks-controller.md)). The controller always \
             runs as its own process; memory and CPU are its own.\n"
        );
    }

    let _ = writeln!(md, "### Flow programming rate\n");
    let rate_goal = match flow_rate {
        Some(v) => {
            let (ours, ofctl) = (f(v, "/controller_ms"), f(v, "/ofctl_ms"));
            let _ = writeln!(
                md,
                "One Open vSwitch bridge, {} flows and {} groups ({} member ports in {} networks): \
                 our controller programs them (connect, read state, FLOW_MODs, barrier); baseline \
                 in the same run: `ovs-ofctl add-groups` + `add-flows` loading the same dump into \
                 the emptied bridge.\n",
                opt(f(v, "/flows")),
                opt(f(v, "/groups")),
                opt(f(v, "/memberships")),
                opt(f(v, "/networks"))
            );
            let _ = writeln!(
                md,
                "| | time ms | flows/s | Published (other systems) |\n|---|---|---|---|\n\
                 | L2S-M controller | {} | {} | {} |\n| `ovs-ofctl add-flows` | {} | {} | — |\n\
                 | **L2S-M ÷ ovs-ofctl (time; lower is faster)** | **{}** | | |\n",
                opt(ours),
                opt(f(v, "/controller_flows_per_s")),
                peers::FLOW_RATE,
                opt(ofctl),
                opt(f(v, "/ofctl_flows_per_s")),
                ratio(ours, ofctl)
            );
            match (ours, ofctl) {
                (Some(a), Some(b)) if b > 0.0 && a / b <= FLOW_RATE_GOAL => (
                    format!("{:.2}× the time of ovs-ofctl", a / b),
                    "met".to_string(),
                ),
                (Some(a), Some(b)) if b > 0.0 => (
                    format!("{:.2}× the time of ovs-ofctl", a / b),
                    format!(
                        "**missed** by {:.0}%",
                        (a / b / FLOW_RATE_GOAL - 1.0) * 100.0
                    ),
                ),
                _ => ("no times in the document".into(), "—".into()),
            }
        }
        None => {
            let w = if inputs.controller.is_empty() {
                why.clone()
            } else {
                "not measured: no flow-rate document in this run".into()
            };
            let _ = writeln!(md, "{w}. Published: {}.\n", peers::FLOW_RATE);
            (w, "—".into())
        }
    };
    goals.push(Goal {
        what: "Flow programming time vs `ovs-ofctl add-flows` (issue #5)",
        target: format!("≤ {FLOW_RATE_GOAL}×"),
        measured: rate_goal.0,
        verdict: rate_goal.1,
    });

    let _ = writeln!(
        md,
        "### Convergence and memory against the number of switches\n"
    );
    let mut converge_goal = (why.clone(), "—".to_string());
    let mut rss_goal = (why.clone(), "—".to_string());
    if synth.is_empty() && real.is_empty() {
        let _ = writeln!(
            md,
            "{why}. Published: {}; {}.\n",
            peers::CONVERGE,
            peers::RSS
        );
    } else {
        let _ = writeln!(
            md,
            "**Synthetic switches**: N OpenFlow 1.3 switches emulated in one process (each its own \
             connection and flow and group tables), networks and member ports fed through the API \
             beforehand; time from the controller's spawn until every switch holds exactly the \
             flows and groups the planner says it should. **Real OVS bridges**: one \
             `ovs-vswitchd` (userspace datapath) with N bridges, same measure. Baseline in the same \
             run: the smallest cluster of the same kind, per switch (1.00× is linear scaling).\n"
        );
        let _ = writeln!(
            md,
            "| Switches | kind | tunnels | flows + groups | serving ms | half converged ms | all converged ms | ms per switch ÷ smallest | FLOW_MODs + GROUP_MODs | after convergence | controller RSS MiB (peak) | controller CPU s |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let mut conv_s = Series {
            name: "synthetic switches".into(),
            points: vec![],
        };
        let mut conv_r = Series {
            name: "real OVS bridges".into(),
            points: vec![],
        };
        let mut rss_s = Series {
            name: "synthetic switches: peak RSS".into(),
            points: vec![],
        };
        let mut rss_r = Series {
            name: "real OVS bridges: peak RSS".into(),
            points: vec![],
        };
        for (kind, list, start) in [("synthetic", &synth, "/start"), ("real OVS", &real, "")] {
            let g = |v: &Value, p: &str| f(v, &format!("{start}{p}"));
            let per_switch =
                |v: &Value| Some(g(v, "/convergence_ms")? / f(v, "/cluster/switches")?);
            let base = list.first().and_then(|v| per_switch(v));
            for v in list.iter() {
                let n = f(v, "/cluster/switches").unwrap_or(0.0);
                let converged = if kind == "synthetic" {
                    v.pointer("/start/converged").and_then(Value::as_bool) == Some(true)
                } else {
                    f(v, "/converged_bridges") == Some(n)
                };
                let c_ms = g(v, "/convergence_ms").filter(|_| converged);
                let r = g(v, "/controller/rss_kib").map(|k| k / 1024.0);
                let pk = g(v, "/controller/peak_rss_kib").map(|k| k / 1024.0);
                let (cs, rs) = if kind == "synthetic" {
                    (&mut conv_s, &mut rss_s)
                } else {
                    (&mut conv_r, &mut rss_r)
                };
                if n > 0.0 {
                    if let Some(y) = c_ms {
                        cs.points.push((n, y));
                    }
                    if let Some(y) = pk.or(r) {
                        rs.points.push((n, y));
                    }
                }
                let mods = g(v, "/flow_mods")
                    .zip(g(v, "/group_mods"))
                    .map(|(a, b)| a + b);
                let _ = writeln!(
                    md,
                    "| {} | {kind} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} |",
                    num(n),
                    opt(f(v, "/links")),
                    opt(f(v, "/expected_flows")
                        .zip(f(v, "/expected_groups"))
                        .map(|(a, b)| a + b)),
                    opt(g(v, "/serving_ms")),
                    opt(g(v, "/p50_switch_ms")),
                    if converged {
                        opt(c_ms)
                    } else {
                        format!(
                            "**not converged** ({} of {})",
                            opt(f(v, "/start/converged_switches").or(f(v, "/converged_bridges"))),
                            num(n)
                        )
                    },
                    ratio(per_switch(v).filter(|_| converged), base),
                    opt(mods),
                    opt(g(v, "/mods_after_convergence")),
                    opt(r),
                    opt(pk),
                    opt(g(v, "/controller/cpu_ms").map(|x| x / 1000.0)),
                );
                if kind == "synthetic" && n == 1000.0 {
                    converge_goal = match c_ms {
                        Some(ms) if ms < CONVERGE_GOAL_MS => {
                            (format!("{} ms", num(ms)), "met".into())
                        }
                        Some(ms) => (
                            format!("{} ms", num(ms)),
                            format!(
                                "**missed** by {} ms ({:.1}× the goal){}",
                                num(ms - CONVERGE_GOAL_MS),
                                ms / CONVERGE_GOAL_MS,
                                redundancy(v)
                            ),
                        ),
                        None => ("did not converge".into(), "**missed**".into()),
                    };
                    rss_goal = match pk.or(r) {
                        Some(m) if m < RSS_GOAL_MIB => {
                            (format!("peak {} MiB", num(m)), "met".into())
                        }
                        Some(m) => (
                            format!("peak {} MiB", num(m)),
                            format!(
                                "**missed** by {} MiB ({:.1}× the goal)",
                                num(m - RSS_GOAL_MIB),
                                m / RSS_GOAL_MIB
                            ),
                        ),
                        None => ("no RSS in the document".into(), "—".into()),
                    };
                }
            }
        }
        if !synth
            .iter()
            .any(|v| f(v, "/cluster/switches") == Some(1000.0))
        {
            converge_goal.0 = "not measured at 1,000 switches in this run".into();
            rss_goal.0 = converge_goal.0.clone();
        }
        if let Some(v) = real.last() {
            let _ = writeln!(
                md,
                "\n`ovs-vswitchd` hosting the {} real bridges: RSS {} MiB, CPU {} s.",
                opt(f(v, "/cluster/switches")),
                opt(f(v, "/vswitchd/rss_kib").map(|k| k / 1024.0)),
                opt(f(v, "/vswitchd/cpu_ms").map(|x| x / 1000.0))
            );
        }
        let _ = writeln!(md, "\nPublished: {}; {}.\n", peers::CONVERGE, peers::RSS);
        let _ = writeln!(
            md,
            "![convergence against switches](docs/bench/convergence.png) \
             ![controller memory against switches](docs/bench/rss.png)\n"
        );
        plots.push(Plot {
            file: "convergence.png".into(),
            title: "Controller start to every switch programmed".into(),
            x_label: "switches".into(),
            y_label: "ms".into(),
            series: [conv_s, conv_r]
                .into_iter()
                .filter(|s| !s.points.is_empty())
                .collect(),
            goal: Some(("goal: 1,000 switches < 5 s".into(), CONVERGE_GOAL_MS)),
        });
        plots.push(Plot {
            file: "rss.png".into(),
            title: "Controller memory against switches".into(),
            x_label: "switches".into(),
            y_label: "MiB".into(),
            series: [rss_s, rss_r]
                .into_iter()
                .filter(|s| !s.points.is_empty())
                .collect(),
            goal: Some(("goal: < 64 MiB at 1,000".into(), RSS_GOAL_MIB)),
        });
        plots.retain(|p| !p.series.is_empty());
        write_latency(&synth, md, goals, plots);
    }
    goals.push(Goal {
        what: "1,000 switches converge",
        target: "< 5 s".into(),
        measured: converge_goal.0,
        verdict: converge_goal.1,
    });
    goals.push(Goal {
        what: "Controller RSS at 1,000 switches",
        target: "< 64 MiB".into(),
        measured: rss_goal.0,
        verdict: rss_goal.1,
    });

    let _ = writeln!(md, "### Cold start\n");
    let cold_goal = match cold {
        None => {
            let _ = writeln!(md, "{why}. Published: {}.\n", peers::COLD);
            (why.clone(), "—".to_string())
        }
        Some(c) => {
            let runs = f(c, "/runs").unwrap_or(0.0);
            let e = f(c, "/empty_p50_ms");
            let l = f(c, "/loaded_p50_ms");
            let _ = writeln!(
                md,
                "`l2sm-bench cold-start`: controller spawn until both its API and its OpenFlow port \
                 serve, median of {} runs. Baseline: the same start with empty state.\n",
                num(runs)
            );
            let _ = writeln!(
                md,
                "| State | p50 ms | ÷ empty | Published (other systems) |\n|---|---|---|---|\n\
                 | empty | {} | 1.00× | {} |\n| {} memberships | {} | {} | — |\n",
                opt(e),
                peers::COLD,
                opt(f(c, "/loaded_memberships")),
                opt(l),
                ratio(l, e)
            );
            match e {
                Some(ms) if ms < COLD_GOAL_MS => {
                    (format!("{} ms (empty state)", num(ms)), "met".into())
                }
                Some(ms) => (
                    format!("{} ms (empty state)", num(ms)),
                    format!("**missed** by {} ms", num(ms - COLD_GOAL_MS)),
                ),
                None => ("no figure in the document".into(), "—".into()),
            }
        }
    };
    goals.push(Goal {
        what: "Cold start to serving",
        target: "< 100 ms".into(),
        measured: cold_goal.0,
        verdict: cold_goal.1,
    });

    let known = [
        "controller",
        "cold_start",
        "flow_rate",
        "ovs",
        "schema",
        "host",
    ];
    for (name, d) in &inputs.controller {
        if d.as_object()
            .is_some_and(|o| o.keys().all(|k| !known.contains(&k.as_str())))
        {
            let _ = writeln!(
                md,
                "Other controller measurement `{name}` (shown as measured):\n\n```json\n{d}\n```\n"
            );
        }
    }
}

/// `median (min–max)` of values, `—` when there are none.
fn spread_of(v: &[f64]) -> String {
    match v {
        [] => "—".into(),
        [x] => num(*x),
        _ => format!(
            "{} ({}–{})",
            num(median(v).unwrap_or(0.0)),
            num(percentile(v, 0.0).unwrap_or(0.0)),
            num(percentile(v, 100.0).unwrap_or(0.0))
        ),
    }
}

/// Control plane over TLS (issue #14): `controller/tls-<N>-<run>.json` (`l2sm-bench controller
/// --switches N --openflow both`: TCP then TLS on the same cluster) and `controller/api-<run>.json`
/// (`l2sm-bench api`: REST plain vs TLS), each repeated; medians and ranges over the runs.
fn control_plane_tls(inputs: &Inputs, md: &mut String, goals: &mut Vec<Goal>) {
    let _ = writeln!(md, "## Control plane over TLS (issue #14)\n");
    let f = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_f64);
    let runs: Vec<&Value> = inputs
        .controller
        .iter()
        .filter(|(stem, _)| stem.starts_with("tls-"))
        .map(|(_, d)| d)
        .collect();
    let api: Vec<&Value> = inputs
        .controller
        .iter()
        .filter(|(stem, _)| stem.starts_with("api-"))
        .filter_map(|(_, d)| d.get("api"))
        .collect();
    if runs.is_empty() && api.is_empty() {
        let _ = writeln!(md, "{}\n", not_measured(inputs, "controller"));
        return;
    }
    let mut sizes: Vec<f64> = runs
        .iter()
        .filter_map(|d| f(d, "/controller_tls/cluster/switches"))
        .collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    if !sizes.is_empty() {
        let _ = writeln!(
            md,
            "`l2sm-bench controller --switches N --batch 50 --openflow both`: the same cluster over \
             plain TCP, then over TLS (a certificate per synthetic switch naming its node; the \
             controller requires and checks it), in the same run; runs repeated, median (min–max). \
             Rate = FLOW_MODs + GROUP_MODs received up to convergence per second; the synthetic \
             switches run on the same cores as the controller, so their own CPU is shown.\n"
        );
        let _ = writeln!(
            md,
            "| Switches | OpenFlow | runs | converged ms | controller RSS MiB | controller CPU s | \
             synthetic switches' CPU s | FLOW_MODs + GROUP_MODs | rate TLS ÷ TCP |\n\
             |---|---|---|---|---|---|---|---|---|"
        );
    }
    for &n in &sizes {
        let of_n: Vec<&Value> = runs
            .iter()
            .copied()
            .filter(|d| f(d, "/controller_tls/cluster/switches") == Some(n))
            .collect();
        let rate = |d: &Value, key: &str| {
            let s = d.get(key)?.get("start")?;
            let mods = f(s, "/flow_mods")? + f(s, "/group_mods")?;
            let ms = f(s, "/convergence_ms")?;
            (ms > 0.0).then(|| mods / (ms / 1000.0))
        };
        let ratios: Vec<f64> = of_n
            .iter()
            .filter_map(|d| Some(rate(d, "controller_tls")? / rate(d, "controller")?))
            .collect();
        let values = |key: &str, p: &str, scale: f64| -> Vec<f64> {
            of_n.iter()
                .filter_map(|d| d.get(key).and_then(|v| f(v, p)).map(|x| x / scale))
                .collect()
        };
        let mut tls_conv = Vec::new();
        let mut tls_rss = Vec::new();
        for (key, name) in [("controller", "TCP"), ("controller_tls", "TLS")] {
            let conv = values(key, "/start/convergence_ms", 1.0);
            let rss = values(key, "/start/controller/rss_kib", 1024.0);
            let mods: Vec<f64> = of_n
                .iter()
                .filter_map(|d| {
                    let s = d.get(key)?.get("start")?;
                    Some(f(s, "/flow_mods")? + f(s, "/group_mods")?)
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {name} | {} | {} | {} | {} | {} | {} | {} |",
                num(n),
                of_n.len(),
                spread_of(&conv),
                spread_of(&rss),
                spread_of(&values(key, "/start/controller/cpu_ms", 1000.0)),
                spread_of(&values(key, "/start/switches_cpu_ms", 1000.0)),
                spread_of(&mods),
                if name == "TLS" {
                    format!("**{}×**", spread_of(&ratios))
                } else {
                    String::new()
                }
            );
            if name == "TLS" {
                tls_conv = conv;
                tls_rss = rss;
            }
        }
        let verdict = |ok: bool| if ok { "met" } else { "**missed**" }.to_string();
        if let Some(r) = median(&ratios) {
            goals.push(Goal {
                what: "OpenFlow programming rate TLS ÷ TCP, same run (issue #14)",
                target: "≥ 0.8×".into(),
                measured: format!("{} switches: {}×", num(n), spread_of(&ratios)),
                verdict: verdict(r >= 0.8),
            });
        }
        let limit_s = match n as u64 {
            1000 => Some(5.0),
            5000 => Some(15.0),
            _ => None,
        };
        if let (Some(limit), Some(conv)) = (limit_s, median(&tls_conv)) {
            goals.push(Goal {
                what: "Switches over TLS converge (issue #14)",
                target: format!("{} switches < {} s", num(n), num(limit)),
                measured: format!("{} ms", spread_of(&tls_conv)),
                verdict: verdict(conv < limit * 1000.0),
            });
        }
        if let (5000, Some(rss)) = (n as u64, median(&tls_rss)) {
            goals.push(Goal {
                what: "Controller RSS, 5,000 switches over TLS (issue #14)",
                target: "< 128 MiB".into(),
                measured: format!("{} MiB", spread_of(&tls_rss)),
                verdict: verdict(rss < 128.0),
            });
        }
    }
    if !sizes.is_empty() {
        md.push('\n');
    }
    if api.is_empty() {
        return;
    }
    let first = api[0];
    let _ = writeln!(
        md,
        "`l2sm-bench api`: REST latency, a plain and a TLS controller serving copies of the same \
         state ({} networks, {} member ports), {} clients, rounds alternating between them; {} \
         runs, median (min–max) of each run's figure. Read: `GET /api/v1/networks` ({} bytes); \
         write: attach or detach one port, persisted before the answer. `keepalive` is the \
         representative case (pooled clients; the server keeps idle connections 10 s); `new` \
         opens a connection per request (TLS sessions resumed), `new-full` without resumption.\n",
        opt(f(first, "/networks")),
        opt(f(first, "/memberships")),
        opt(f(first, "/concurrency")),
        api.len(),
        opt(f(first, "/read_bytes")),
    );
    let _ = writeln!(
        md,
        "| connection | op | plain p50 ms | plain p99 ms | TLS p50 ms | TLS p99 ms | TLS ÷ plain \
         p50 | TLS ÷ plain p99 | controller CPU µs per request, plain / TLS |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    let results = |c: &str, o: &str, t: &str, q: &str| -> Vec<f64> {
        api.iter()
            .filter_map(|a| a.get("results")?.as_array())
            .flatten()
            .filter(|x| {
                x.get("connection").and_then(Value::as_str) == Some(c)
                    && x.get("op").and_then(Value::as_str) == Some(o)
                    && x.get("transport").and_then(Value::as_str) == Some(t)
            })
            .filter_map(|x| f(x, &format!("/{q}")))
            .collect()
    };
    let ratios = |c: &str, o: &str, q: &str| -> Vec<f64> {
        api.iter()
            .filter_map(|a| a.get("ratios")?.as_array())
            .flatten()
            .filter(|x| {
                x.get("connection").and_then(Value::as_str) == Some(c)
                    && x.get("op").and_then(Value::as_str) == Some(o)
            })
            .filter_map(|x| f(x, &format!("/{q}")))
            .collect()
    };
    for c in ["keepalive", "new", "new-full"] {
        for o in ["read", "write"] {
            let _ = writeln!(
                md,
                "| {c} | {o} | {} | {} | {} | {} | {}× | {}× | {} / {} |",
                spread_of(&results(c, o, "plain", "p50_ms")),
                spread_of(&results(c, o, "plain", "p99_ms")),
                spread_of(&results(c, o, "tls", "p50_ms")),
                spread_of(&results(c, o, "tls", "p99_ms")),
                spread_of(&ratios(c, o, "p50")),
                spread_of(&ratios(c, o, "p99")),
                opt(median(&results(c, o, "plain", "server_cpu_us"))),
                opt(median(&results(c, o, "tls", "server_cpu_us"))),
            );
        }
    }
    md.push('\n');
    let p99: Vec<f64> = ["read", "write"]
        .iter()
        .flat_map(|o| ratios("keepalive", o, "p99"))
        .collect();
    if let Some(worst) = ["read", "write"]
        .iter()
        .filter_map(|o| median(&ratios("keepalive", o, "p99")))
        .reduce(f64::max)
    {
        goals.push(Goal {
            what: "REST p99 TLS ÷ plain, kept-alive connections (issue #14)",
            target: "≤ 1.3×".into(),
            measured: format!(
                "read {}×, write {}× (all runs: {})",
                spread_of(&ratios("keepalive", "read", "p99")),
                spread_of(&ratios("keepalive", "write", "p99")),
                spread_of(&p99)
            ),
            verdict: if worst <= 1.3 { "met" } else { "**missed**" }.into(),
        });
    }
}

fn agent(inputs: &Inputs, md: &mut String) {
    let _ = writeln!(md, "## Node agent: attach primitives\n");
    let _ = writeln!(
        md,
        "`cargo bench -p l2sm --bench agent_attach`: 100 pod interfaces on one node through the \
         agent's local API (veth, addresses, OVS port, report to the controller; no CNI exec, no \
         ping), one after the other and all at once. Baseline: the same plumbing with `ip` and \
         `ovs-vsctl` (one port per call).\n"
    );
    if inputs.get("agent.l2sm.seq.p50").is_none() {
        let _ = writeln!(md, "{}\n", not_measured(inputs, "agent"));
        return;
    }
    let _ = writeln!(
        md,
        "| 100 pods | L2S-M agent p50 / p99 ms | total ms | `ip` + `ovs-vsctl` p50 / p99 ms | total ms | L2S-M ÷ shell, total |\n|---|---|---|---|---|---|"
    );
    for (key, label) in [("seq", "one after the other"), ("c100", "all at once")] {
        let g = |s: &str, f: &str| med(inputs, &format!("agent.{s}.{key}.{f}"));
        let _ = writeln!(
            md,
            "| {label} | {} / {} | {} | {} / {} | {} | {} |",
            opt(g("l2sm", "p50")),
            opt(g("l2sm", "p99")),
            opt(g("l2sm", "total")),
            opt(g("shell", "p50")),
            opt(g("shell", "p99")),
            opt(g("shell", "total")),
            ratio(g("l2sm", "total"), g("shell", "total"))
        );
    }
    if let Some(t) = med(inputs, "agent.topo50") {
        let _ = writeln!(
            md,
            "\n50 VXLAN links reconciled from scratch by a restarted agent: {} ms (no baseline).",
            num(t)
        );
    }
    md.push('\n');
}

/// Why convergence took long, from the document itself: how many more FLOW_MODs and
/// GROUP_MODs the switches received than they end up holding, and the CPU the controller used.
fn redundancy(v: &Value) -> String {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64);
    let sent = f("/start/flow_mods").unwrap_or(0.0) + f("/start/group_mods").unwrap_or(0.0);
    let needed = f("/expected_flows").unwrap_or(0.0) + f("/expected_groups").unwrap_or(0.0);
    let mut why = String::new();
    if needed > 0.0 && sent > needed * 1.1 {
        let _ = write!(
            why,
            "; the switches received {:.1}× the FLOW_MODs and GROUP_MODs they end up holding \
             ({} for {}): the controller re-sends tables while memberships and the tree still change",
            sent / needed,
            num(sent),
            num(needed)
        );
    }
    if let (Some(cpu), Some(ms)) = (f("/start/controller/cpu_ms"), f("/start/convergence_ms")) {
        if ms > 0.0 {
            let _ = write!(
                why,
                "; controller CPU {} s over {} s (≈ {:.0}% of one core)",
                num(cpu / 1000.0),
                num(ms / 1000.0),
                100.0 * cpu / ms
            );
        }
    }
    why
}

fn codec(inputs: &Inputs, md: &mut String) {
    let _ = writeln!(md, "## OpenFlow codec\n");
    let _ = writeln!(
        md,
        "Criterion benchmark `cargo bench -p l2sm-ofp --bench codec` (median time per message). \
         Baseline in the same run: copying the encoded bytes into a new buffer, the least any \
         encoder or decoder must do.\n"
    );
    if inputs.codec_ns.is_empty() {
        let _ = writeln!(md, "{}\n", not_measured(inputs, "codec"));
        return;
    }
    let _ = writeln!(
        md,
        "| Message | Operation | ns per message | messages/s | ÷ copy of its bytes |\n|---|---|---|---|---|"
    );
    for (name, ns) in &inputs.codec_ns {
        let Some((group, function)) = name.split_once('/') else {
            continue;
        };
        if function == "copy_bytes_baseline" {
            continue;
        }
        let base = inputs
            .codec_ns
            .get(&format!("{group}/copy_bytes_baseline"))
            .copied();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            group.replace('_', " "),
            function.replace('_', " "),
            num(*ns),
            num(1e9 / ns),
            ratio(Some(*ns), base)
        );
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        let mut i = Inputs::default();
        i.machine.insert("nproc".into(), Value::from(2));
        let mut put = |k: &str, v: &[f64]| {
            i.samples.insert(k.into(), v.to_vec());
        };
        for (s, t) in [("l2sm", 480.0), ("ovs", 500.0), ("kernel", 12000.0)] {
            put(&format!("dp.tput.same.{s}"), &[t, t + 10.0, t - 10.0]);
            put(&format!("dp.tput.cross.{s}"), &[t * 0.8, t * 0.8]);
            put(&format!("dp.rtt.same.{s}"), &[0.3, 0.2, 0.4]);
        }
        for n in [1u32, 10, 100] {
            let f = f64::from(n);
            put(&format!("attach.l2sm.c{n}"), &[10.0 * f, 12.0 * f]);
            put(&format!("attach.bridge.c{n}"), &[9.0 * f, 11.0 * f]);
            put(&format!("attach.ovs.c{n}"), &[8.0 * f, 10.0 * f]);
        }
        put("attach_vswitchd_cpu.l2sm.c100", &[107.0]);
        put("attach_add.l2sm.c100", &[400.0, 500.0]);
        put("attach_stall.l2sm.c100", &[10326.0]);
        put("attach_stall_sum.l2sm.c100", &[20000.0]);
        put("attach_stall.l2sm.c10", &[0.0]);
        i
    }

    #[test]
    fn ratios_goals_and_plots() {
        let (md, plots) = render(&inputs());
        assert!(md.contains("| same node | TCP Mbit/s, median of 3 (min–max) | 480 (470–490) | 500 (490–510) | **0.96×** |"), "{md}");
        assert!(md.contains("| Pipeline throughput vs plain OVS `NORMAL` | ≥ 0.9× | same node 0.96×, across nodes 0.96× | met |"), "{md}");
        assert!(
            md.contains("| 100 | 2 | 1,000 / 1,200 | 800 / 1,000 | 900 / 1,100 | 1.20× | 1.09× | 400 / 500 · — / — · — / — | 10,326 / 20,000 (CPU 107% of a core) | — |"),
            "{md}"
        );
        assert!(
            md.contains("| 10 | 2 | 100 / 120 | 80 / 100 | 90 / 110 | 1.20× | 1.09× |"),
            "{md}"
        );
        assert!(
            md.contains("**missed** by 1,000 ms (6.0× the goal). At the same concurrency, the same agent and OVS with one `NORMAL` flow instead of our pipeline: p99 1,000 ms (1.20× ours ÷ NORMAL)"),
            "{md}"
        );
        assert!(
            md.contains(
                "logged stalls (longest / total ms) of 10,326 / 20,000 (CPU 107% of a core) while"
            ),
            "{md}"
        );
        assert!(md.contains("not measured: no samples in this run"), "{md}");
        assert_eq!(plots.len(), 1);
        assert_eq!(plots[0].series.len(), 4);
        assert_eq!(
            plots[0].series[1].points,
            vec![(1.0, 12.0), (10.0, 120.0), (100.0, 1200.0)]
        );
        assert_eq!(plots[0].series[2].name, "plain OVS NORMAL p99");
    }

    #[test]
    fn a_missed_throughput_goal_says_by_how_much() {
        let mut i = inputs();
        i.samples.insert("dp.tput.cross.l2sm".into(), vec![300.0]);
        let (md, _) = render(&i);
        assert!(
            md.contains("**missed** across nodes by 17% of the goal (0.75× vs 0.9×); no datapath counters in this run to explain it"),
            "{md}"
        );
    }

    #[test]
    fn a_missed_throughput_goal_with_equal_counters_says_whether_it_is_noise() {
        let mut i = inputs();
        for s in ["l2sm", "ovs"] {
            i.samples.insert(format!("dp.diag.passes.{s}"), vec![1.1]);
            i.samples.insert(format!("dp.diag.upcalls.{s}"), vec![40.0]);
        }
        i.samples
            .insert("dp.tput.cross.l2sm".into(), vec![300.0, 380.0, 420.0]);
        i.samples
            .insert("dp.tput.cross.ovs".into(), vec![400.0, 500.0, 510.0]);
        let (md, _) = render(&i);
        assert!(md.contains("and the two min–max ranges overlap"), "{md}");
        i.samples
            .insert("dp.tput.cross.l2sm".into(), vec![300.0, 310.0, 320.0]);
        let (md, _) = render(&i);
        assert!(md.contains("yet the min–max ranges do not overlap"), "{md}");
    }

    #[test]
    fn a_first_ping_one_arp_retransmit_late_is_flagged() {
        let mut i = inputs();
        i.samples
            .insert("attach.l2sm.c1".into(), vec![1040.0, 1041.0]);
        i.samples
            .insert("attach_add.l2sm.c1".into(), vec![13.0, 14.0]);
        let (md, _) = render(&i);
        assert!(
            md.contains(
                "**One pod alone waits ≈ 1 s for its first ping** (1,027 ms after an ADD of 13 ms)"
            ),
            "{md}"
        );
        i.samples.insert("attach.l2sm.c1".into(), vec![20.0]);
        let (md, _) = render(&i);
        assert!(!md.contains("One pod alone"), "{md}");
    }

    #[test]
    fn skipped_sections_give_their_reason() {
        let mut i = Inputs::default();
        i.skipped
            .insert("controller".into(), "no such command".into());
        i.skipped
            .insert("dataplane".into(), "iperf3 gave no result".into());
        let (md, plots) = render(&i);
        assert!(
            md.contains("| 1,000 switches converge | < 5 s | not measured: no such command | — |"),
            "{md}"
        );
        assert!(md.contains("| Pipeline throughput vs plain OVS `NORMAL` | ≥ 0.9× | not measured: iperf3 gave no result | — |"), "{md}");
        assert!(plots.is_empty());
    }
}
