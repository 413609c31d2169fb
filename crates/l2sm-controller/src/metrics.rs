//! Prometheus text for what the switch sessions measure: flow-programming batches, flows and
//! groups per switch, LLDP probes and live links. The API's `/metrics` appends it.

use super::Shared;
use l2sm_api::v1::SwitchStatus;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fixed-bucket histogram that can be observed from any task without locking.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative count per bucket, the last one for +Inf.
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum of observations in millionths.
    sum_micros: AtomicU64,
}

/// Buckets for batch sizes (messages).
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];
/// Buckets for latencies (seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Histogram {
    /// A histogram with upper bounds `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
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
        self.sum_micros
            .fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", self.count());
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}

fn gauge(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The session-side metrics in Prometheus text format.
pub fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let mut out = String::new();
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
    let switches = shared.switch_list();
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
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for s in &switches {
            let _ = writeln!(out, "{name}{{dpid=\"{}\"}} {}", s.id, get(s));
        }
    }
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    gauge(
        &mut out,
        "l2sm_lldp_probes_sent_total",
        "counter",
        "LLDP probes sent on link ports.",
        load(&m.lldp_sent),
    );
    gauge(
        &mut out,
        "l2sm_lldp_probes_received_total",
        "counter",
        "LLDP probes received back from switches.",
        load(&m.lldp_received),
    );
    gauge(
        &mut out,
        "l2sm_lldp_frames_ignored_total",
        "counter",
        "LLDP frames that were not our probes or arrived on a port that is no link.",
        load(&m.lldp_ignored),
    );
    let links = shared.link_report();
    gauge(
        &mut out,
        "l2sm_links_live",
        "gauge",
        "Configured inter-switch links that are up (ports up, probes in both directions).",
        links.iter().filter(|l| l.live).count() as u64,
    );
    gauge(
        &mut out,
        "l2sm_links_configured",
        "gauge",
        "Inter-switch links of the configured topology.",
        links.len() as u64,
    );
    out
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
}
