//! `status.linkMetrics` of Overlays and NetworkEdgeDevices (upstream's field, which upstream
//! never writes), from the link health the controller measures anyway (`GET /api/v1/links`:
//! LLDP probes, echo round trips, port counters; docs/monitoring.md) — no sidecars, no
//! monitoring network.
//!
//! Written only when the object has `spec.monitor`, at its interval: the shortest
//! `spec.monitor.metrics[].interval` (minutes, as upstream documents them), never more often
//! than [`MIN_INTERVAL`]; 60 s when no metric names one. The write is the reconciler's status
//! write (server-side apply on `/status`), so it triggers a watch event; the refresh is gated
//! per object by the time of its last refresh, so that event does not make a loop: a pass
//! sooner than the interval keeps the stored entries. A controller that cannot be asked keeps
//! the stored entries too (the reconcile does not fail for it).
//!
//! One entry per link and direction: `sourceNode`, `targetNode` (node names from the link's
//! topology id), `status` `Up`/`Down`/`Degraded` (down: not live or a switch at one end
//! without a session; degraded: probes have not crossed both ways yet, or 1 % or more of the
//! direction's probes lost), metrics (values as strings, upstream's shape):
//! `latencyMs`, `jitterMs`, `lossRatio`, `throughputBps`, `bytes`, `errors`, `dropped`, each
//! present once measured.

use super::Context;
use crate::crd::{LinkStatus, MetricValue, MonitorSpec};
use l2sm_api::v1::{LinkHealthView, LinkView};
use std::time::{Duration, Instant};

/// Shortest time between two refreshes of one object's `linkMetrics`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Interval when no metric of `spec.monitor` names one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Loss from which a live direction is `Degraded`.
pub const DEGRADED_LOSS: f64 = 0.01;

/// The refresh interval `spec.monitor` asks for (bounded below by [`MIN_INTERVAL`]).
pub fn interval(monitor: &MonitorSpec) -> Duration {
    monitor
        .metrics
        .iter()
        .filter_map(|m| m.interval)
        .map(|min| Duration::from_secs(u64::try_from(min).unwrap_or(0).saturating_mul(60)))
        .min()
        .unwrap_or(DEFAULT_INTERVAL)
        .max(MIN_INTERVAL)
}

/// The node at each end of a link, from its topology id (`n1--n2`, `n1:eth1--n2:eth2`).
pub fn nodes_of(id: &str) -> Option<(String, String)> {
    let (a, b) = id.split_once("--")?;
    let node = |s: &str| s.split(':').next().unwrap_or_default().to_string();
    let (a, b) = (node(a), node(b));
    (!a.is_empty() && !b.is_empty()).then_some((a, b))
}

fn fmt(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// How a link is doing, for `status`: down when it carries nothing (not live, or a switch at
/// one end has no session with the controller), degraded while probes have not crossed it
/// both ways yet or the direction loses [`DEGRADED_LOSS`] or more, else up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrying {
    Down,
    Unproven,
    Live,
}

fn carrying(l: &LinkView) -> Carrying {
    if !l.live || l.a_port == 0 || l.b_port == 0 {
        Carrying::Down
    } else if !l.probed {
        Carrying::Unproven
    } else {
        Carrying::Live
    }
}

fn direction(src: &str, dst: &str, link: Carrying, h: &LinkHealthView) -> LinkStatus {
    let mut metrics = Vec::new();
    let mut put = |name: &str, v: Option<String>| {
        if let Some(value) = v {
            metrics.push(MetricValue {
                name: name.into(),
                value,
            });
        }
    };
    put("latencyMs", h.latency_ms.map(fmt));
    put("jitterMs", h.jitter_ms.map(fmt));
    put("lossRatio", h.loss.map(fmt));
    put("throughputBps", h.bits_per_second.map(|b| fmt(b.round())));
    put("bytes", h.bytes.map(|b| b.to_string()));
    put("errors", h.errors.map(|b| b.to_string()));
    put("dropped", h.dropped.map(|b| b.to_string()));
    let status = if link == Carrying::Down {
        "Down"
    } else if link == Carrying::Unproven || h.loss.is_some_and(|l| l >= DEGRADED_LOSS) {
        "Degraded"
    } else {
        "Up"
    };
    LinkStatus {
        source_node: src.into(),
        target_node: dst.into(),
        status: status.into(),
        metrics: (!metrics.is_empty()).then_some(metrics),
    }
}

/// The entries for the links whose two ends satisfy `keep` (node names), sorted by source
/// and target.
pub fn link_statuses(links: &[LinkView], keep: impl Fn(&str, &str) -> bool) -> Vec<LinkStatus> {
    let mut out = Vec::new();
    for l in links {
        let Some((a, b)) = nodes_of(&l.id) else {
            continue;
        };
        if !keep(&a, &b) {
            continue;
        }
        let c = carrying(l);
        out.push(direction(&a, &b, c, &l.ab));
        out.push(direction(&b, &a, c, &l.ba));
    }
    out.sort_by(|x, y| (&x.source_node, &x.target_node).cmp(&(&y.source_node, &y.target_node)));
    out
}

/// Whether `key`'s metrics are due (never refreshed, or `every` has passed); marks them
/// refreshed now when they are.
pub(crate) fn due(ctx: &Context, key: &str, every: Duration) -> bool {
    let mut map = ctx
        .link_metrics_at
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match map.get(key) {
        Some(t) if now.saturating_duration_since(*t) < every => false,
        _ => {
            map.insert(key.to_string(), now);
            true
        }
    }
}

/// Forgets `key` (deleted object).
pub(crate) fn forget(ctx: &Context, key: &str) {
    ctx.link_metrics_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
}

/// The `linkMetrics` to write: None without `spec.monitor`; the stored ones when not due or
/// when `fetch` fails; else fresh ones.
pub(crate) async fn refresh<F, Fut, E>(
    ctx: &Context,
    key: &str,
    monitor: Option<&MonitorSpec>,
    stored: Option<&Vec<LinkStatus>>,
    keep: impl Fn(&str, &str) -> bool,
    fetch: F,
) -> Option<Vec<LinkStatus>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<LinkView>, E>>,
    E: std::fmt::Display,
{
    let Some(m) = monitor else {
        forget(ctx, key);
        return None;
    };
    if !due(ctx, key, interval(m)) {
        return stored.cloned();
    }
    match fetch().await {
        Ok(links) => Some(link_statuses(&links, keep)),
        Err(e) => {
            tracing::warn!(object = %key, "link health not read, linkMetrics kept: {e}");
            stored.cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MetricSpec;

    fn monitor(intervals: &[Option<i64>]) -> MonitorSpec {
        MonitorSpec {
            metrics: intervals
                .iter()
                .map(|i| MetricSpec {
                    name: "rtt".into(),
                    interval: *i,
                    script_source: None,
                })
                .collect(),
            spread_factor: "0.2".into(),
            export_metric: None,
            network_cidr: None,
            ip_cidr: None,
        }
    }

    #[test]
    fn intervals_are_minutes_bounded_below() {
        assert_eq!(
            interval(&monitor(&[Some(10), Some(5)])),
            Duration::from_secs(300)
        );
        assert_eq!(interval(&monitor(&[None])), DEFAULT_INTERVAL);
        assert_eq!(interval(&monitor(&[Some(0)])), MIN_INTERVAL);
        assert_eq!(interval(&monitor(&[Some(-3)])), MIN_INTERVAL);
    }

    #[test]
    fn directions_become_entries() {
        assert_eq!(
            nodes_of("n1:eth1--n2:eth2"),
            Some(("n1".into(), "n2".into()))
        );
        assert_eq!(nodes_of("garbage"), None);
        let l = LinkView {
            id: "n1--n2".into(),
            live: true,
            probed: true,
            a_port: 2,
            b_port: 2,
            ab: LinkHealthView {
                latency_ms: Some(20.25),
                loss: Some(0.05),
                ..Default::default()
            },
            ba: LinkHealthView {
                loss: Some(0.0),
                bits_per_second: Some(1840.4),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = link_statuses(std::slice::from_ref(&l), |_, _| true);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].source_node.as_str(), s[0].status.as_str()),
            ("n1", "Degraded")
        );
        let m = s[0].metrics.as_ref().unwrap();
        assert_eq!(m[0].name, "latencyMs");
        assert_eq!(m[0].value, "20.25");
        assert_eq!(s[1].status, "Up");
        assert!(s[1]
            .metrics
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.name == "throughputBps" && m.value == "1840"));
        let down = LinkView {
            live: false,
            ..l.clone()
        };
        assert!(link_statuses(&[down], |_, _| true)
            .iter()
            .all(|e| e.status == "Down"));
        let no_session = LinkView {
            b_port: 0,
            ..l.clone()
        };
        assert!(link_statuses(&[no_session], |_, _| true)
            .iter()
            .all(|e| e.status == "Down"));
        let unproven = LinkView {
            probed: false,
            ..l.clone()
        };
        assert_eq!(
            link_statuses(&[unproven], |_, _| true)[1].status,
            "Degraded"
        );
        assert!(link_statuses(&[l], |a, _| a == "n9").is_empty());
    }
}
