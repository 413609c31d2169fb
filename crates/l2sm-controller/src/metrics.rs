//! Everything `/metrics` exports, in Prometheus text format: the counters and histograms the
//! API and the switch sessions update, the gauges read from the model and the sessions, and
//! the HTTP handler that serves them. One histogram type serves every histogram.

use super::Shared;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse as _, Response};
use l2sm_api::v1::SwitchStatus;
use l2sm_pipeline::ids::PortId;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Buckets for batch sizes (messages).
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];
/// Buckets for batch latencies (seconds): up to 10 s, as a thousand switches' batches can take.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Buckets for API latencies (seconds). No 10 s bucket: the exported series has never had one,
/// and dashboards key on its `le` values.
pub const API_LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket histogram that can be observed from any task without locking.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative count per bucket, the last one for +Inf.
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum of observations, as the bits of an `f64`.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with upper bounds `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one value.
    pub fn observe(&self, value: f64) {
        let idx = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(idx) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Sizes and durations are never negative; a NaN must not poison the sum.
        let add = value.max(0.0);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + add).to_bits())
            });
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }

    /// The histogram as a whole metric without labels: HELP, TYPE and one series.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        self.render_series(out, name, "");
    }

    /// One series: cumulative buckets, sum and count. `labels` (`k="v",...`) come before
    /// `le` on buckets and alone on sum and count.
    fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        let (open, sep) = if labels.is_empty() {
            ("", "")
        } else {
            (labels, ",")
        };
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "{name}_bucket{{{open}{sep}le=\"{le}\"}} {cumulative}");
        }
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum());
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count());
    }
}

/// API latency by method and route template. Both labels are `'static`: the method from a
/// fixed list, the route from the route table (never the raw path, where names would make
/// the label set unbounded), so the set of series is closed.
#[derive(Debug, Default)]
pub struct RouteLatency(Mutex<BTreeMap<(&'static str, &'static str), Histogram>>);

impl RouteLatency {
    /// Name of the exported histogram.
    const NAME: &'static str = "l2sm_api_request_duration_seconds";

    /// Records one request's latency.
    pub fn observe(&self, method: &'static str, route: &'static str, seconds: f64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((method, route))
            .or_insert_with(|| Histogram::new(API_LATENCY_BUCKETS))
            .observe(seconds);
    }

    fn render(&self, out: &mut String) {
        header(
            out,
            Self::NAME,
            "histogram",
            "API request latency by method and route.",
        );
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for ((method, route), h) in map.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            h.render_series(out, Self::NAME, &labels);
        }
    }
}

/// Switch sessions closed because an exchange ran out of time, by exchange (a closed set:
/// `reply`, `barrier`, `write`).
#[derive(Debug, Default)]
pub struct SessionTimeouts {
    reply: AtomicU64,
    barrier: AtomicU64,
    write: AtomicU64,
}

impl SessionTimeouts {
    /// Name of the exported counter.
    const NAME: &'static str = "l2sm_switch_session_timeouts_total";

    /// Counts one session closed because `exchange` timed out.
    pub fn count(&self, exchange: crate::openflow::Exchange) {
        self.get(exchange).fetch_add(1, Ordering::Relaxed);
    }

    /// Sessions closed so far because `exchange` timed out.
    pub fn get(&self, exchange: crate::openflow::Exchange) -> &AtomicU64 {
        use crate::openflow::Exchange;
        match exchange {
            Exchange::Reply => &self.reply,
            Exchange::Barrier => &self.barrier,
            Exchange::Write => &self.write,
        }
    }

    fn render(&self, out: &mut String) {
        use crate::openflow::Exchange;
        header(
            out,
            Self::NAME,
            "counter",
            "Switch sessions closed because a reply, a barrier or a write timed out.",
        );
        for e in [Exchange::Reply, Exchange::Barrier, Exchange::Write] {
            let value = self.get(e).load(Ordering::Relaxed);
            let _ = writeln!(out, "{}{{exchange=\"{}\"}} {value}", Self::NAME, e.label());
        }
    }
}

/// The counters of the abuse limits one switch reported (read every
/// [`LimitStats::interval`]): packets dropped by each pod port's flood meter and by the
/// controller meter, and frames dropped because their source was over the port's MAC cap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchLimitStats {
    /// Pod port -> packets its flood meter dropped.
    pub flood_dropped: BTreeMap<u32, u64>,
    /// Pod port -> frames dropped because their source MAC was over the port's cap.
    pub excess: BTreeMap<u32, u64>,
    /// Packets the controller meter dropped.
    pub controller_dropped: u64,
}

/// Most series of one limit metric; the rest are summed into
/// `l2sm_limit_series_omitted` (so a huge cluster cannot blow up the scrape).
pub const MAX_LIMIT_SERIES: usize = 4096;

/// The last limit counters of every connected switch.
#[derive(Debug)]
pub struct LimitStats {
    interval_ms: AtomicU64,
    by_switch: Mutex<BTreeMap<u64, (u64, SwitchLimitStats)>>,
}

impl Default for LimitStats {
    /// Read every 5 s.
    fn default() -> Self {
        LimitStats {
            interval_ms: AtomicU64::new(5000),
            by_switch: Mutex::new(BTreeMap::new()),
        }
    }
}

impl LimitStats {
    /// How often sessions read the counters.
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.interval_ms.load(Ordering::Relaxed).max(100))
    }

    /// Sets how often sessions read the counters (sessions started later use it).
    pub fn set_interval(&self, d: std::time::Duration) {
        self.interval_ms.store(
            d.as_millis().try_into().unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// What session `session` of switch `dpid` read.
    pub fn record(&self, dpid: u64, session: u64, stats: SwitchLimitStats) {
        self.lock().insert(dpid, (session, stats));
    }

    /// Drops what session `session` of `dpid` reported (its switch is gone).
    pub fn forget(&self, dpid: u64, session: u64) {
        let mut map = self.lock();
        if map.get(&dpid).is_some_and(|(s, _)| *s == session) {
            map.remove(&dpid);
        }
    }

    /// The counters of switch `dpid`, if it reported any.
    pub fn of(&self, dpid: u64) -> Option<SwitchLimitStats> {
        self.lock().get(&dpid).map(|(_, s)| s.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (u64, SwitchLimitStats)>> {
        self.by_switch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The limit metrics. Labels come from closed sets only: networks of the model, switches
    /// that reported, and ports that are members of those networks there (counters of ports
    /// the model does not know are left out); at most [`MAX_LIMIT_SERIES`] series each.
    fn render(&self, out: &mut String, model: &crate::model::Model) {
        let mut network_of: BTreeMap<(u64, u32), &str> = BTreeMap::new();
        for (name, net) in &model.networks {
            for ep in &net.endpoints {
                network_of.insert((ep.dpid, ep.port), name.as_str());
            }
        }
        let map = self.lock();
        let mut omitted = 0u64;
        for (name, help, get) in [
            (
                "l2sm_flood_meter_dropped_packets_total",
                "Broadcast, multicast and unknown-unicast packets a pod port's flood meter dropped.",
                (|s: &SwitchLimitStats| &s.flood_dropped) as fn(&SwitchLimitStats) -> &BTreeMap<u32, u64>,
            ),
            (
                "l2sm_mac_limit_dropped_frames_total",
                "Frames from a pod port dropped because their source MAC was over the port's learned-MAC cap.",
                |s: &SwitchLimitStats| &s.excess,
            ),
        ] {
            header(out, name, "counter", help);
            let mut n = 0usize;
            for (dpid, (_, stats)) in map.iter() {
                for (port, value) in get(stats) {
                    let Some(network) = network_of.get(&(*dpid, *port)) else {
                        continue;
                    };
                    if n >= MAX_LIMIT_SERIES {
                        omitted += 1;
                        continue;
                    }
                    n += 1;
                    let _ = writeln!(
                        out,
                        "{name}{{network=\"{network}\",switch=\"of:{dpid:016x}\",port=\"{port}\"}} {value}"
                    );
                }
            }
        }
        header(
            out,
            "l2sm_controller_meter_dropped_packets_total",
            "counter",
            "Packets to the controller (LLDP punts) a switch's controller meter dropped.",
        );
        for (dpid, (_, stats)) in map.iter() {
            let _ = writeln!(
                out,
                "l2sm_controller_meter_dropped_packets_total{{switch=\"of:{dpid:016x}\"}} {}",
                stats.controller_dropped
            );
        }
        single(
            out,
            "l2sm_limit_series_omitted",
            "gauge",
            "Limit series left out of this scrape beyond the per-metric bound.",
            omitted,
        );
    }
}

/// Counters and histograms the API and the switch sessions update.
#[derive(Debug)]
pub struct Metrics {
    /// Messages (FLOW_MOD, GROUP_MOD) per batch sent to a switch.
    pub batch_size: Histogram,
    /// Seconds from writing a batch to its BARRIER_REPLY.
    pub batch_latency: Histogram,
    /// API latency per method and route.
    pub api_latency: RouteLatency,
    /// LLDP probes sent.
    pub lldp_sent: AtomicU64,
    /// LLDP probes received and decoded.
    pub lldp_received: AtomicU64,
    /// LLDP frames that were not our probes, or came in on a port that is not a link.
    pub lldp_ignored: AtomicU64,
    /// FLOW_MOD messages sent.
    pub flow_mods: AtomicU64,
    /// GROUP_MOD messages sent.
    pub group_mods: AtomicU64,
    /// METER_MOD messages sent.
    pub meter_mods: AtomicU64,
    /// Switch connections accepted.
    pub connections: AtomicU64,
    /// Connections closed because of protocol errors.
    pub protocol_errors: AtomicU64,
    /// API requests served.
    pub api_requests: AtomicU64,
    /// API connections closed at once because the connection cap was reached.
    pub api_connections_refused: AtomicU64,
    /// Switch connections refused a session, by reason.
    pub switch_refusals: crate::identity::Refusals,
    /// Failed `accept()` calls of the OpenFlow listener (retried after a backoff).
    pub accept_errors: AtomicU64,
    /// PACKET_INs dropped because they arrived while the session waited for a reply.
    pub packet_ins_dropped_syncing: AtomicU64,
    /// Sessions closed on a timeout, by exchange.
    pub session_timeouts: SessionTimeouts,
    /// Frames dropped by port security, per port.
    pub port_security_drops: PortSecurityDrops,
    /// The in-network DNS path: answers and drops.
    pub network_dns: crate::netdns::Counters,
}

/// Frames dropped by port security, per member port, as read from the switches' flow
/// statistics (the drop flows of [`l2sm_pipeline::port_security`]). Kept monotonic across
/// counter resets (a drop flow rewritten by the controller starts again from 0).
#[derive(Debug, Default)]
pub struct PortSecurityDrops(Mutex<BTreeMap<PortId, DropCount>>);

#[derive(Debug, Default, Clone, Copy)]
struct DropCount {
    /// What earlier flows counted before a reset.
    base: u64,
    /// The last value read.
    last: u64,
}

impl PortSecurityDrops {
    const NAME: &'static str = "l2sm_port_security_drops_total";

    /// Records what switch `dpid`'s drop flows counted (`packets`: port -> packets over the
    /// port's drop flows). Ports of that switch without a value (no longer secured) are
    /// forgotten.
    pub fn record(&self, dpid: u64, packets: &BTreeMap<u32, u64>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|p, _| p.dpid != dpid || packets.contains_key(&p.port));
        for (&port, &value) in packets {
            let c = map.entry(PortId { dpid, port }).or_default();
            if value < c.last {
                c.base += c.last;
            }
            c.last = value;
        }
    }

    /// Forgets every port of switch `dpid`.
    pub fn forget_switch(&self, dpid: u64) {
        self.record(dpid, &BTreeMap::new());
    }

    /// Frames dropped at `port` so far, if it is counted.
    pub fn get(&self, port: &PortId) -> Option<u64> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(port).map(|c| c.base + c.last)
    }

    /// One series per counted port that is a member of a network (labels: the network's
    /// name and the port, both from the model).
    fn render(&self, out: &mut String, model: &crate::model::Model) {
        header(
            out,
            Self::NAME,
            "counter",
            "Frames a port with port security sent from a MAC or address it may not use, dropped.",
        );
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (name, net) in &model.networks {
            for ep in &net.endpoints {
                if let Some(c) = map.get(ep) {
                    let _ = writeln!(
                        out,
                        "{}{{network=\"{name}\",port=\"{ep}\"}} {}",
                        Self::NAME,
                        c.base + c.last
                    );
                }
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            batch_size: Histogram::new(SIZE_BUCKETS),
            batch_latency: Histogram::new(LATENCY_BUCKETS),
            api_latency: RouteLatency::default(),
            lldp_sent: AtomicU64::new(0),
            lldp_received: AtomicU64::new(0),
            lldp_ignored: AtomicU64::new(0),
            flow_mods: AtomicU64::new(0),
            group_mods: AtomicU64::new(0),
            meter_mods: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            api_requests: AtomicU64::new(0),
            api_connections_refused: AtomicU64::new(0),
            switch_refusals: Default::default(),
            accept_errors: AtomicU64::new(0),
            packet_ins_dropped_syncing: AtomicU64::new(0),
            session_timeouts: SessionTimeouts::default(),
            port_security_drops: PortSecurityDrops::default(),
            network_dns: crate::netdns::Counters::default(),
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric with one unlabelled value.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// `GET /metrics`.
pub(crate) async fn handler(State(shared): State<Arc<Shared>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&shared),
    )
        .into_response()
}

/// Every metric in Prometheus text format.
pub fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let model = shared.model();
    let switches = shared.switch_list();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let memberships: usize = model.networks.values().map(|n| n.endpoints.len()).sum();
    let flows: usize = switches.iter().map(|s| s.flows).sum();
    let mut out = String::new();
    for (name, kind, help, value) in [
        (
            "l2sm_switches_connected",
            "gauge",
            "Switches connected.",
            switches.len() as u64,
        ),
        (
            "l2sm_networks",
            "gauge",
            "Networks defined.",
            model.networks.len() as u64,
        ),
        (
            "l2sm_memberships",
            "gauge",
            "Member ports over all networks.",
            memberships as u64,
        ),
        (
            "l2sm_flows_installed",
            "gauge",
            "Flows installed by the controller.",
            flows as u64,
        ),
        (
            "l2sm_flow_mods_total",
            "counter",
            "FLOW_MOD messages sent.",
            load(&m.flow_mods),
        ),
        (
            "l2sm_group_mods_total",
            "counter",
            "GROUP_MOD messages sent.",
            load(&m.group_mods),
        ),
        (
            "l2sm_meter_mods_total",
            "counter",
            "METER_MOD messages sent.",
            load(&m.meter_mods),
        ),
        (
            "l2sm_switch_connections_total",
            "counter",
            "Switch connections.",
            load(&m.connections),
        ),
        (
            "l2sm_switch_protocol_errors_total",
            "counter",
            "Switch connections closed on a protocol error.",
            load(&m.protocol_errors),
        ),
        (
            "l2sm_api_requests_total",
            "counter",
            "API requests served.",
            load(&m.api_requests),
        ),
        (
            "l2sm_api_connections_refused_total",
            "counter",
            "API connections closed at once because the connection cap was reached.",
            load(&m.api_connections_refused),
        ),
    ] {
        single(&mut out, name, kind, help, value);
    }
    m.api_latency.render(&mut out);
    m.switch_refusals.render(&mut out);
    m.batch_size.render(
        &mut out,
        "l2sm_flow_mod_batch_size",
        "FLOW_MOD and GROUP_MOD messages per batch sent to a switch.",
    );
    m.batch_latency.render(
        &mut out,
        "l2sm_flow_mod_batch_latency_seconds",
        "Time from the first message of a batch to the switch's BARRIER_REPLY.",
    );
    for (name, help, get) in [
        (
            "l2sm_switch_flows",
            "Flows the controller installed on a switch.",
            (|s: &SwitchStatus| s.flows) as fn(&SwitchStatus) -> usize,
        ),
        (
            "l2sm_switch_groups",
            "Groups the controller installed on a switch.",
            |s: &SwitchStatus| s.groups,
        ),
    ] {
        header(&mut out, name, "gauge", help);
        for s in &switches {
            let _ = writeln!(out, "{name}{{dpid=\"{}\"}} {}", s.id, get(s));
        }
    }
    for (name, kind, help, value) in [
        (
            "l2sm_lldp_probes_sent_total",
            "counter",
            "LLDP probes sent on link ports.",
            load(&m.lldp_sent),
        ),
        (
            "l2sm_lldp_probes_received_total",
            "counter",
            "LLDP probes received back from switches.",
            load(&m.lldp_received),
        ),
        (
            "l2sm_lldp_frames_ignored_total",
            "counter",
            "LLDP frames that were not our probes or arrived on a port that is no link.",
            load(&m.lldp_ignored),
        ),
    ] {
        single(&mut out, name, kind, help, value);
    }
    single(
        &mut out,
        "l2sm_openflow_accept_errors_total",
        "counter",
        "Failed accept() calls of the OpenFlow listener (retried after a backoff).",
        load(&m.accept_errors),
    );
    header(
        &mut out,
        "l2sm_switch_packet_ins_dropped_total",
        "counter",
        "PACKET_INs dropped by the controller, by reason (syncing: the session was waiting for a reply).",
    );
    let _ = writeln!(
        out,
        "l2sm_switch_packet_ins_dropped_total{{reason=\"syncing\"}} {}",
        load(&m.packet_ins_dropped_syncing)
    );
    m.session_timeouts.render(&mut out);
    m.port_security_drops.render(&mut out, &model);
    header(
        &mut out,
        "l2sm_network_dns_answers_total",
        "counter",
        "Frames the in-network DNS path answered (ARP or neighbour solicitations for a network's DNS address, DNS queries to it), by kind.",
    );
    for (kind, c) in [
        ("arp", &m.network_dns.arp_answers),
        ("nd", &m.network_dns.nd_answers),
        ("dns", &m.network_dns.dns_answers),
    ] {
        let _ = writeln!(
            out,
            "l2sm_network_dns_answers_total{{kind=\"{kind}\"}} {}",
            load(c)
        );
    }
    header(
        &mut out,
        "l2sm_network_dns_drops_total",
        "counter",
        "Frames punted to the in-network DNS path and not answered, by reason.",
    );
    for r in crate::netdns::DropReason::ALL {
        let _ = writeln!(
            out,
            "l2sm_network_dns_drops_total{{reason=\"{}\"}} {}",
            r.label(),
            m.network_dns.drops(r)
        );
    }
    let links = shared.link_report();
    single(
        &mut out,
        "l2sm_links_live",
        "gauge",
        "Configured inter-switch links that are up (ports up, probes in both directions).",
        links.iter().filter(|l| l.live).count() as u64,
    );
    single(
        &mut out,
        "l2sm_links_configured",
        "gauge",
        "Inter-switch links of the configured topology.",
        links.len() as u64,
    );
    render_link_health(&mut out, shared, &links);
    shared.limit_stats.render(&mut out, &model);
    out
}

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Per link (`link`: its name in the topology) and direction (`a_to_b`, `b_to_a`): up, one-way
/// latency, jitter, loss of the LLDP probes, and the sending port's bytes, errors and drops.
/// Only links whose switches both have a session are measured.
fn render_link_health(out: &mut String, shared: &Shared, links: &[crate::topo::LinkReport]) {
    let now = std::time::Instant::now();
    let measured: Vec<(
        &crate::topo::LinkReport,
        [crate::health::DirectionHealth; 2],
    )> = links
        .iter()
        .filter(|r| r.link.a.port != 0 && r.link.b.port != 0)
        .map(|r| {
            let (a, b) = (r.link.a, r.link.b);
            (
                r,
                [
                    shared.health.direction(a, b, now),
                    shared.health.direction(b, a, now),
                ],
            )
        })
        .collect();
    header(
        out,
        "l2sm_link_up",
        "gauge",
        "1 while a configured link is live (ports up, LLDP probes both ways), else 0.",
    );
    for r in links {
        let _ = writeln!(
            out,
            "l2sm_link_up{{link=\"{}\"}} {}",
            label(&r.id),
            u8::from(r.live)
        );
    }
    type Field = fn(&crate::health::DirectionHealth) -> Option<f64>;
    let series: [(&str, &str, &str, Field); 8] = [
        ("l2sm_link_latency_seconds", "gauge", "Mean one-way latency of the recent LLDP probes (control-channel delays from echo round trips subtracted).", |d| d.latency.map(|l| l.as_secs_f64())),
        ("l2sm_link_jitter_seconds", "gauge", "Mean difference between consecutive probes' one-way latencies.", |d| d.jitter.map(|l| l.as_secs_f64())),
        ("l2sm_link_loss_ratio", "gauge", "Share of the last 60 LLDP probes sent that never arrived.", |d| d.loss()),
        ("l2sm_link_probes_lost", "gauge", "LLDP probes lost among the last 60 sent.", |d| (d.judged > 0).then_some(d.lost as f64)),
        ("l2sm_link_bits_per_second", "gauge", "Bits per second sent into the link by its sending port, between the last two port-statistics reads.", |d| d.bits_per_second),
        ("l2sm_link_bytes_total", "counter", "Bytes that crossed the link (the receiving port's counter; the sending port's while the receiver's is unknown).", |d| d.bytes.map(|b| b as f64)),
        ("l2sm_link_errors_total", "counter", "Transmit errors of the sending port plus receive errors of the receiving port.", |d| d.errors.map(|b| b as f64)),
        ("l2sm_link_dropped_total", "counter", "Transmit drops of the sending port plus receive drops of the receiving port.", |d| d.dropped.map(|b| b as f64)),
    ];
    for (name, kind, help, field) in series {
        header(out, name, kind, help);
        for (r, dirs) in &measured {
            for (direction, d) in ["a_to_b", "b_to_a"].iter().zip(dirs) {
                if let Some(v) = field(d) {
                    let _ = writeln!(
                        out,
                        "{name}{{link=\"{}\",direction=\"{direction}\"}} {v}",
                        label(&r.id)
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(SIZE_BUCKETS);
        for v in [1.0, 3.0, 3.0, 100_000.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"5\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"5000\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(
            out.contains("x_count 4\n") && out.contains("x_sum 100007\n"),
            "{out}"
        );
    }

    /// Per-route series put their labels before `le`, and alone on sum and count.
    #[test]
    fn route_latency_series_carry_method_and_route() {
        let l = RouteLatency::default();
        l.observe("GET", "/a/{id}", 0.0003);
        l.observe("GET", "/a/{id}", 3.0);
        let mut out = String::new();
        l.render(&mut out);
        let n = RouteLatency::NAME;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2 + API_LATENCY_BUCKETS.len() + 1 + 2, "{out}");
        assert_eq!(
            lines[2],
            format!("{n}_bucket{{method=\"GET\",route=\"/a/{{id}}\",le=\"0.0005\"}} 1")
        );
        assert_eq!(
            lines[2 + API_LATENCY_BUCKETS.len() - 1],
            format!("{n}_bucket{{method=\"GET\",route=\"/a/{{id}}\",le=\"2.5\"}} 1")
        );
        assert_eq!(
            lines[2 + API_LATENCY_BUCKETS.len()],
            format!("{n}_bucket{{method=\"GET\",route=\"/a/{{id}}\",le=\"+Inf\"}} 2")
        );
        assert_eq!(
            lines[lines.len() - 1],
            format!("{n}_count{{method=\"GET\",route=\"/a/{{id}}\"}} 2")
        );
        assert!(lines[lines.len() - 2].starts_with(&format!(
            "{n}_sum{{method=\"GET\",route=\"/a/{{id}}\"}} 3.000"
        )));
    }

    /// Limit series carry only networks and member ports the model knows, and stop at the
    /// bound; a newer session's counters replace an older one's, and only the owner forgets.
    #[test]
    fn limit_series_have_closed_labels_and_a_bound() {
        let mut model = crate::model::Model::default();
        model.create_network("blue", None).unwrap();
        let port = l2sm_pipeline::ids::PortId { dpid: 1, port: 3 };
        model.add_ports("blue", &[port]).unwrap();
        let stats = LimitStats::default();
        stats.record(
            1,
            7,
            SwitchLimitStats {
                flood_dropped: [(3, 40), (9, 5)].into(),
                excess: [(3, 12)].into(),
                controller_dropped: 2,
            },
        );
        let mut out = String::new();
        stats.render(&mut out, &model);
        let series: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            series,
            [
                r#"l2sm_flood_meter_dropped_packets_total{network="blue",switch="of:0000000000000001",port="3"} 40"#,
                r#"l2sm_mac_limit_dropped_frames_total{network="blue",switch="of:0000000000000001",port="3"} 12"#,
                r#"l2sm_controller_meter_dropped_packets_total{switch="of:0000000000000001"} 2"#,
                "l2sm_limit_series_omitted 0",
            ]
        );
        stats.forget(1, 6);
        assert!(
            stats.of(1).is_some(),
            "an older session must not forget a newer one's"
        );
        stats.forget(1, 7);
        assert!(stats.of(1).is_none());
        // The bound.
        let many: Vec<_> = (1..=(MAX_LIMIT_SERIES as u32 + 10))
            .map(|port| l2sm_pipeline::ids::PortId { dpid: 2, port })
            .collect();
        model.add_ports("blue", &many).unwrap();
        stats.record(
            2,
            1,
            SwitchLimitStats {
                excess: (1..=(MAX_LIMIT_SERIES as u32 + 10))
                    .map(|p| (p, 1))
                    .collect(),
                ..Default::default()
            },
        );
        let mut out = String::new();
        stats.render(&mut out, &model);
        let n = out
            .lines()
            .filter(|l| l.starts_with("l2sm_mac_limit_dropped_frames_total{"))
            .count();
        assert_eq!(n, MAX_LIMIT_SERIES);
        assert!(
            out.contains("l2sm_limit_series_omitted 10\n"),
            "{}",
            &out[out.len() - 200..]
        );
    }
}
