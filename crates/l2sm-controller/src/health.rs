//! Link health from what already flows: the LLDP probes the controller sends over every link
//! each interval (latency, jitter, loss), the OpenFlow echo round trips that measure each
//! switch's control channel, and OFPMP_PORT_STATS on link ports (throughput, errors, drops).
//! No extra pods, ports or networks.
//!
//! One-way latency of a direction: the time from sending a probe (PACKET_OUT to the sending
//! switch) to receiving it back (PACKET_IN from the receiving switch), minus half the echo
//! round trip of each switch's control channel (the probe crosses one channel out and the
//! other back). Jitter is the mean absolute difference of consecutive latency samples (RFC
//! 3550's interarrival jitter, unsmoothed). Loss is the share of the last [`WINDOW`] probes
//! sent that never came back (the one in flight is not counted yet).
//!
//! Memory is bounded: per link end a sequence counter and the send times of the last
//! [`SENT_TIMES`] probes; per direction a 64-bit map of received sequence numbers and the
//! last [`SAMPLES`] latency samples (microseconds, `u32`); per switch [`RTT_SAMPLES`] echo
//! round trips; per link port two counter readings.

use crate::Direction;
use l2sm_pipeline::plan::End;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Probes over which loss is computed (at 1 s intervals: the last minute).
pub const WINDOW: u64 = 60;
/// Latency samples kept per direction (mean latency and jitter are over these).
pub const SAMPLES: usize = 16;
/// Send times kept per link end: a probe older than this many intervals gives no latency.
pub const SENT_TIMES: usize = 4;
/// Echo round trips kept per switch (their median is the control-channel delay).
pub const RTT_SAMPLES: usize = 9;

/// One-way latency of a probe sent at `sent` and received at `received`, when the sending
/// switch's control channel has round trip `rtt_from` and the receiving one's `rtt_to`: the
/// elapsed time minus half of each round trip (never below zero).
pub fn one_way(sent: Instant, received: Instant, rtt_from: Duration, rtt_to: Duration) -> Duration {
    received
        .saturating_duration_since(sent)
        .saturating_sub((rtt_from + rtt_to) / 2)
}

/// The sending side of one link end: sequence numbers and when the last few were sent.
#[derive(Debug, Clone)]
pub struct Sender {
    /// First sequence number sent from this end.
    first: u64,
    /// Next sequence number.
    next: u64,
    /// Send times of the last [`SENT_TIMES`] probes, by `seq % SENT_TIMES`.
    times: [Option<(u64, Instant)>; SENT_TIMES],
}

impl Sender {
    /// A sender whose first probe gets `first`.
    pub fn new(first: u64) -> Sender {
        Sender {
            first,
            next: first,
            times: [None; SENT_TIMES],
        }
    }

    /// Sequence number of a probe sent at `at`.
    pub fn send(&mut self, at: Instant) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.times[(seq % SENT_TIMES as u64) as usize] = Some((seq, at));
        seq
    }

    /// When probe `seq` was sent, if it is one of the last few.
    pub fn sent_at(&self, seq: u64) -> Option<Instant> {
        match self.times[(seq % SENT_TIMES as u64) as usize] {
            Some((s, at)) if s == seq => Some(at),
            _ => None,
        }
    }

    /// The range of sequence numbers whose loss can be judged at `now`: the last [`WINDOW`]
    /// sent, without the latest while it was sent less than `grace` ago (still in flight).
    pub fn judged(&self, now: Instant, grace: Duration) -> Option<(u64, u64)> {
        let last = self.next.checked_sub(1).filter(|l| *l >= self.first)?;
        let in_flight = self
            .sent_at(last)
            .is_some_and(|t| now.saturating_duration_since(t) < grace);
        let upto = if in_flight {
            last.checked_sub(1).filter(|u| *u >= self.first)?
        } else {
            last
        };
        let lo = self.first.max((upto + 1).saturating_sub(WINDOW));
        Some((lo, upto))
    }
}

/// What arrived on one direction: which recent sequence numbers, and latency samples.
#[derive(Debug, Clone, Default)]
pub struct Arrivals {
    /// Highest sequence number received.
    top: Option<u64>,
    /// Bit `i`: sequence number `top - i` was received.
    bits: u64,
    /// One-way latencies in microseconds, in arrival order.
    samples: VecDeque<u32>,
    /// When the last probe arrived.
    last: Option<Instant>,
    /// The first sequence number that ever arrived: probes before it are not judged (a new
    /// tunnel drops the first frame while it resolves its remote end; that is no link loss).
    first: Option<u64>,
}

impl Arrivals {
    /// Records probe `seq`, received at `at`, with its one-way latency when known.
    pub fn record(&mut self, seq: u64, at: Instant, latency: Option<Duration>) {
        self.first = Some(self.first.map_or(seq, |f| f.min(seq)));
        match self.top {
            Some(top) if seq > top => {
                let shift = seq - top;
                self.bits = if shift >= 64 { 0 } else { self.bits << shift };
                self.bits |= 1;
                self.top = Some(seq);
            }
            Some(top) => {
                let back = top - seq;
                if back < 64 {
                    self.bits |= 1 << back;
                }
            }
            None => {
                self.top = Some(seq);
                self.bits = 1;
            }
        }
        if let Some(l) = latency {
            if self.samples.len() == SAMPLES {
                self.samples.pop_front();
            }
            self.samples
                .push_back(u32::try_from(l.as_micros()).unwrap_or(u32::MAX));
        }
        self.last = Some(at);
    }

    /// Whether probe `seq` arrived (only the last 64 below the highest are remembered).
    pub fn received(&self, seq: u64) -> bool {
        self.top
            .is_some_and(|top| seq <= top && top - seq < 64 && (self.bits >> (top - seq)) & 1 == 1)
    }

    /// Probes lost and probes judged among sequence numbers `lo..=upto`, from the first that
    /// ever arrived on.
    pub fn lost(&self, (lo, upto): (u64, u64)) -> (u64, u64) {
        let lo = self.first.map_or(lo, |f| lo.max(f));
        let judged = (upto + 1).saturating_sub(lo);
        let got = (lo..=upto).filter(|s| self.received(*s)).count() as u64;
        if judged == 0 {
            return (0, 0);
        }
        (judged - got, judged)
    }

    /// Mean latency and jitter (mean absolute difference of consecutive samples).
    pub fn latency_jitter(&self) -> (Option<Duration>, Option<Duration>) {
        let n = self.samples.len() as u64;
        if n == 0 {
            return (None, None);
        }
        let sum: u64 = self.samples.iter().map(|s| u64::from(*s)).sum();
        let mean = Duration::from_micros(sum / n);
        if n < 2 {
            return (Some(mean), None);
        }
        let diffs: u64 = self
            .samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        (Some(mean), Some(Duration::from_micros(diffs / (n - 1))))
    }
}

/// The median of `samples` (the upper one of an even count).
pub fn median(samples: &VecDeque<Duration>) -> Option<Duration> {
    let mut v: Vec<Duration> = samples.iter().copied().collect();
    v.sort();
    v.get(v.len() / 2).copied()
}

/// Counters of one port, as OFPMP_PORT_STATS gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortCounters {
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
}

/// Two readings of a port: the latest, and the one before (for rates).
#[derive(Debug, Clone, Copy)]
struct Readings {
    latest: (PortCounters, Instant),
    previous: Option<(PortCounters, Instant)>,
}

impl Readings {
    /// Bits per second counted by `bytes` since the previous reading (0 when the counter
    /// went back: the port was recreated; `None` for a counter the switch does not keep).
    fn bps(&self, bytes: fn(&PortCounters) -> u64) -> Option<f64> {
        let (prev, t0) = self.previous?;
        let (now, t1) = self.latest;
        let (a, b) = (bytes(&prev), bytes(&now));
        if a == u64::MAX || b == u64::MAX {
            return None;
        }
        let secs = t1.saturating_duration_since(t0).as_secs_f64();
        (secs > 0.0).then(|| b.saturating_sub(a) as f64 * 8.0 / secs)
    }
}

/// The health of one direction of a link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DirectionHealth {
    /// Mean one-way latency over the last samples.
    pub latency: Option<Duration>,
    /// Mean absolute difference of consecutive latency samples.
    pub jitter: Option<Duration>,
    /// Probes lost among those judged (the last [`WINDOW`]).
    pub lost: u64,
    /// Probes judged.
    pub judged: u64,
    /// Latency samples behind `latency` and `jitter`.
    pub samples: usize,
    /// Bits per second that crossed the link, between the last two readings of the receiving
    /// port (of the sending port while the receiver's are missing). OVS's userspace tunnel
    /// ports count each transmitted frame twice, their receive counters are right.
    pub bits_per_second: Option<f64>,
    /// Bytes that crossed the link: the receiving port's counter (the sending port's while
    /// the receiver's is missing).
    pub bytes: Option<u64>,
    /// Transmit errors at the sending port plus receive errors at the receiving one.
    pub errors: Option<u64>,
    /// Transmit drops at the sending port plus receive drops at the receiving one.
    pub dropped: Option<u64>,
}

impl DirectionHealth {
    /// Share of the judged probes that were lost, `None` before any could be judged.
    pub fn loss(&self) -> Option<f64> {
        (self.judged > 0).then(|| self.lost as f64 / self.judged as f64)
    }

    /// As the API reports it.
    pub fn view(&self) -> l2sm_api::v1::LinkHealthView {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        l2sm_api::v1::LinkHealthView {
            latency_ms: self.latency.map(ms),
            jitter_ms: self.jitter.map(ms),
            loss: self.loss(),
            lost: self.lost,
            judged: self.judged,
            samples: self.samples as u64,
            bits_per_second: self.bits_per_second,
            bytes: self.bytes,
            errors: self.errors,
            dropped: self.dropped,
        }
    }
}

/// The last [`RTT_SAMPLES`] echo round trips of one switch and their median, computed when a
/// sample arrives rather than for every probe that needs it.
#[derive(Debug, Default)]
struct Rtts {
    samples: VecDeque<Duration>,
    median: Option<Duration>,
}

#[derive(Debug, Default)]
struct Inner {
    senders: BTreeMap<End, Sender>,
    arrivals: BTreeMap<Direction, Arrivals>,
    rtts: BTreeMap<u64, Rtts>,
    ports: BTreeMap<End, Readings>,
}

/// Link health of every link: shared by the switch sessions (which feed it) and the API and
/// metrics (which read it).
#[derive(Debug)]
pub struct Health {
    interval: Duration,
    /// First sequence number of a new link end: derived from the wall clock, so a probe of a
    /// previous controller process is not mistaken for one of ours.
    seq_base: u64,
    inner: Mutex<Inner>,
}

impl Health {
    /// Health of links probed every `interval`.
    pub fn new(interval: Duration) -> Health {
        let seq_base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
            << 8;
        Health {
            interval,
            seq_base,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A probe is being sent from `from` at `at`: its sequence number.
    pub fn sending(&self, from: End, at: Instant) -> u64 {
        let mut seq = 0;
        self.sending_all(from.dpid, &[from.port], at, |_, s| seq = s);
        seq
    }

    /// Probes are being sent at `at` from `ports` of switch `dpid`, under one lock: `each`
    /// gets each port and its probe's sequence number, in the order of `ports`.
    pub fn sending_all(
        &self,
        dpid: u64,
        ports: &[u32],
        at: Instant,
        mut each: impl FnMut(u32, u64),
    ) {
        let base = self.seq_base;
        let mut inner = self.inner();
        for &port in ports {
            let seq = inner
                .senders
                .entry(End { dpid, port })
                .or_insert_with(|| Sender::new(base))
                .send(at);
            each(port, seq);
        }
    }

    /// Probe `seq` sent from `from` arrived at `to` at `at`.
    pub fn received(&self, from: End, to: End, seq: u64, at: Instant) {
        let mut inner = self.inner();
        let sent = inner.senders.get(&from).and_then(|s| s.sent_at(seq));
        let rtt = |dpid: u64| inner.rtts.get(&dpid).and_then(|r| r.median);
        let latency = match (sent, rtt(from.dpid), rtt(to.dpid)) {
            (Some(sent), Some(a), Some(b)) => Some(one_way(sent, at, a, b)),
            _ => None,
        };
        inner
            .arrivals
            .entry((from, to))
            .or_default()
            .record(seq, at, latency);
    }

    /// An echo round trip of switch `dpid`'s control channel.
    pub fn echo_rtt(&self, dpid: u64, rtt: Duration) {
        let mut inner = self.inner();
        let rtts = inner.rtts.entry(dpid).or_default();
        if rtts.samples.len() == RTT_SAMPLES {
            rtts.samples.pop_front();
        }
        rtts.samples.push_back(rtt);
        rtts.median = median(&rtts.samples);
    }

    /// The control-channel delay estimate of switch `dpid` (median echo round trip).
    pub fn control_rtt(&self, dpid: u64) -> Option<Duration> {
        self.inner().rtts.get(&dpid).and_then(|r| r.median)
    }

    /// Counters of switch `dpid`'s link ports read at `at`.
    pub fn port_stats(&self, dpid: u64, ports: &[(u32, PortCounters)], at: Instant) {
        let mut inner = self.inner();
        for (port, counters) in ports {
            let end = End { dpid, port: *port };
            let readings = match inner.ports.get(&end) {
                Some(r) => Readings {
                    latest: (*counters, at),
                    previous: Some(r.latest),
                },
                None => Readings {
                    latest: (*counters, at),
                    previous: None,
                },
            };
            inner.ports.insert(end, readings);
        }
    }

    /// Forgets what depends on switch `dpid`'s session (its control-channel delay and port
    /// counters); called when the session ends.
    pub fn forget_switch(&self, dpid: u64) {
        let mut inner = self.inner();
        inner.rtts.remove(&dpid);
        inner.ports.retain(|e, _| e.dpid != dpid);
    }

    /// Forgets link ends and directions not in `directions` (links that left the topology).
    pub fn retain(&self, directions: &[Direction]) {
        let keep: std::collections::BTreeSet<&Direction> = directions.iter().collect();
        let ends: std::collections::BTreeSet<End> =
            directions.iter().flat_map(|(a, b)| [*a, *b]).collect();
        let mut inner = self.inner();
        inner.arrivals.retain(|d, _| keep.contains(d));
        inner.senders.retain(|e, _| ends.contains(e));
        inner.ports.retain(|e, _| ends.contains(e));
    }

    /// The health of direction `from` → `to` at `now`.
    pub fn direction(&self, from: End, to: End, now: Instant) -> DirectionHealth {
        let inner = self.inner();
        let grace = self
            .interval
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        let arrivals = inner.arrivals.get(&(from, to));
        let (lost, judged) = match inner.senders.get(&from).and_then(|s| s.judged(now, grace)) {
            Some(range) => arrivals
                .map(|a| a.lost(range))
                .unwrap_or_else(|| (range.1 + 1 - range.0, range.1 + 1 - range.0)),
            None => (0, 0),
        };
        let (latency, jitter) = arrivals.map(|a| a.latency_jitter()).unwrap_or((None, None));
        let (tx, rx) = (inner.ports.get(&from), inner.ports.get(&to));
        // OpenFlow: a counter the switch does not keep reads all ones.
        let known = |v: u64| (v != u64::MAX).then_some(v);
        let sum = |f: fn(&PortCounters) -> u64, g: fn(&PortCounters) -> u64| {
            let (a, b) = (
                tx.and_then(|t| known(f(&t.latest.0))),
                rx.and_then(|r| known(g(&r.latest.0))),
            );
            match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
            }
        };
        DirectionHealth {
            latency,
            jitter,
            lost,
            judged,
            samples: arrivals.map(|a| a.samples.len()).unwrap_or(0),
            bits_per_second: rx
                .and_then(|r| r.bps(|c| c.rx_bytes))
                .or_else(|| tx.and_then(|t| t.bps(|c| c.tx_bytes))),
            bytes: rx
                .and_then(|r| known(r.latest.0.rx_bytes))
                .or_else(|| tx.and_then(|t| known(t.latest.0.tx_bytes))),
            errors: sum(|c| c.tx_errors, |c| c.rx_errors),
            dropped: sum(|c| c.tx_dropped, |c| c.rx_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn end(dpid: u64, port: u32) -> End {
        End { dpid, port }
    }

    #[test]
    fn latency_subtracts_half_of_each_control_round_trip() {
        let t0 = Instant::now();
        // 2 ms + 20 ms link + 3 ms = 25 ms; round trips 4 ms and 6 ms.
        assert_eq!(one_way(t0, t0 + 25 * MS, 4 * MS, 6 * MS), 20 * MS);
        // Never negative (a control channel slower than its echo said).
        assert_eq!(one_way(t0, t0 + MS, 4 * MS, 6 * MS), Duration::ZERO);
        // A receive time before the send time (clock confusion) is zero too.
        assert_eq!(
            one_way(t0 + MS, t0, Duration::ZERO, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn the_control_delay_follows_the_last_echo_round_trips() {
        let h = Health::new(Duration::from_secs(1));
        assert_eq!(h.control_rtt(1), None);
        for _ in 0..RTT_SAMPLES {
            h.echo_rtt(1, 2 * MS);
        }
        assert_eq!(h.control_rtt(1), Some(2 * MS));
        // Slower round trips push the old ones out one by one: the median moves once they
        // are the majority of the window, and the latency of a probe with it.
        for i in 1..=RTT_SAMPLES {
            h.echo_rtt(1, 8 * MS);
            let want = if i > RTT_SAMPLES / 2 { 8 * MS } else { 2 * MS };
            assert_eq!(h.control_rtt(1), Some(want), "after {i} slow samples");
        }
        h.echo_rtt(2, Duration::ZERO);
        let (a, b) = (end(1, 10), end(2, 20));
        let t0 = Instant::now();
        let seq = h.sending(a, t0);
        h.received(a, b, seq, t0 + 14 * MS);
        assert_eq!(h.direction(a, b, t0).latency, Some(10 * MS));
        h.forget_switch(1);
        assert_eq!(h.control_rtt(1), None);
    }

    #[test]
    fn probes_sent_together_are_numbered_as_one_by_one() {
        let (together, alone) = (
            Health::new(Duration::from_secs(1)),
            Health::new(Duration::from_secs(1)),
        );
        let t0 = Instant::now();
        for round in 0..3u32 {
            let at = t0 + Duration::from_secs(u64::from(round));
            let mut got = Vec::new();
            together.sending_all(7, &[3, 1, 2], at, |port, seq| {
                got.push((port, seq - together.seq_base))
            });
            let want: Vec<(u32, u64)> = [3, 1, 2]
                .into_iter()
                .map(|port| (port, alone.sending(end(7, port), at) - alone.seq_base))
                .collect();
            assert_eq!(got, want, "round {round}");
            // Each port numbers its own probes.
            assert_eq!(got[0].1, u64::from(round));
        }
        let inner = together.inner();
        assert_eq!(inner.senders.len(), 3);
        assert_eq!(
            inner.senders[&end(7, 1)].sent_at(together.seq_base + 2),
            Some(t0 + Duration::from_secs(2))
        );
    }

    #[test]
    fn health_reports_link_latency_from_probes_and_echo_medians() {
        let h = Health::new(Duration::from_secs(1));
        let (a, b) = (end(1, 10), end(2, 20));
        let t0 = Instant::now();
        // Switch 1's channel: 2 ms round trips (one outlier); switch 2's: 4 ms.
        for rtt in [2, 2, 50, 2, 2] {
            h.echo_rtt(1, MS * rtt);
        }
        for _ in 0..5 {
            h.echo_rtt(2, 4 * MS);
        }
        assert_eq!(h.control_rtt(1), Some(2 * MS), "median ignores the outlier");
        for i in 0..10u32 {
            let sent = t0 + Duration::from_secs(u64::from(i));
            let seq = h.sending(a, sent);
            // 1 ms out + 20 ms link + 2 ms back = 23 ms; minus (2 + 4) / 2.
            h.received(a, b, seq, sent + 23 * MS);
        }
        let d = h.direction(a, b, t0 + Duration::from_secs(10));
        assert_eq!(d.latency, Some(20 * MS));
        assert_eq!(d.jitter, Some(Duration::ZERO));
        assert_eq!((d.lost, d.judged), (0, 10));
        assert_eq!(d.loss(), Some(0.0));
        // The other direction has sent nothing: nothing to judge, no latency.
        let back = h.direction(b, a, t0 + Duration::from_secs(10));
        assert_eq!((back.latency, back.judged, back.loss()), (None, 0, None));
    }

    #[test]
    fn jitter_is_the_mean_difference_of_consecutive_samples() {
        let mut a = Arrivals::default();
        let t = Instant::now();
        for (seq, ms) in [(1, 20), (2, 24), (3, 20), (4, 24)] {
            a.record(seq, t, Some(ms * MS));
        }
        let (lat, jit) = a.latency_jitter();
        assert_eq!(lat, Some(22 * MS));
        assert_eq!(jit, Some(4 * MS));
        // Samples without a latency (no echo measured yet) count for loss only.
        let mut b = Arrivals::default();
        b.record(1, t, None);
        assert_eq!(b.latency_jitter(), (None, None));
        assert!(b.received(1));
    }

    #[test]
    fn loss_counts_missing_probes_but_not_the_one_in_flight() {
        let h = Health::new(Duration::from_secs(1));
        let (a, b) = (end(1, 10), end(2, 20));
        let t0 = Instant::now();
        for i in 0..20u64 {
            let sent = t0 + Duration::from_secs(i);
            let seq = h.sending(a, sent);
            // Every fourth probe is lost; the last one is still in flight.
            if i % 4 != 3 && i != 19 {
                h.received(a, b, seq, sent + 5 * MS);
            }
        }
        // 100 ms after the last send: 19 judged, 5 lost (i = 3, 7, 11, 15 and... not 19).
        let d = h.direction(a, b, t0 + Duration::from_secs(19) + 100 * MS);
        assert_eq!((d.lost, d.judged), (4, 19));
        // Once the grace has passed, the missing last probe counts.
        let d = h.direction(a, b, t0 + Duration::from_secs(21));
        assert_eq!((d.lost, d.judged), (5, 20));
    }

    #[test]
    fn probes_before_the_first_arrival_are_not_judged() {
        let h = Health::new(Duration::from_secs(1));
        let (a, b) = (end(1, 10), end(2, 20));
        let t0 = Instant::now();
        for i in 0..10u64 {
            let sent = t0 + Duration::from_secs(i);
            let seq = h.sending(a, sent);
            // The first two are lost while the tunnel resolves its remote end; one later.
            if i >= 2 && i != 6 {
                h.received(a, b, seq, sent + MS);
            }
        }
        let d = h.direction(a, b, t0 + Duration::from_secs(12));
        assert_eq!((d.lost, d.judged), (1, 8));
    }

    #[test]
    fn loss_is_over_the_last_window_only() {
        let h = Health::new(Duration::from_secs(1));
        let (a, b) = (end(1, 10), end(2, 20));
        let t0 = Instant::now();
        let total = WINDOW + 30;
        for i in 0..total {
            let sent = t0 + Duration::from_secs(i);
            let seq = h.sending(a, sent);
            // The first 30 are all lost (a cut), then everything arrives.
            if i >= 30 {
                h.received(a, b, seq, sent + MS);
            }
        }
        let d = h.direction(a, b, t0 + Duration::from_secs(total + 2));
        assert_eq!((d.lost, d.judged), (0, WINDOW));
    }

    #[test]
    fn a_direction_that_hears_nothing_loses_everything() {
        let h = Health::new(Duration::from_secs(1));
        let (a, b) = (end(1, 10), end(2, 20));
        let t0 = Instant::now();
        for i in 0..5 {
            h.sending(a, t0 + Duration::from_secs(i));
        }
        let d = h.direction(a, b, t0 + Duration::from_secs(10));
        assert_eq!((d.lost, d.judged, d.loss()), (5, 5, Some(1.0)));
    }

    #[test]
    fn port_counters_give_throughput_errors_and_drops_per_direction() {
        let h = Health::new(Duration::from_secs(1));
        let (a, b) = (end(1, 10), end(2, 20));
        let t0 = Instant::now();
        let c = |tx_bytes, rx_bytes, tx_errors, rx_dropped| PortCounters {
            tx_bytes,
            rx_bytes,
            tx_errors,
            rx_dropped,
            ..Default::default()
        };
        let t5 = t0 + Duration::from_secs(5);
        // Only the sender read so far: its transmit counter.
        h.port_stats(1, &[(10, c(1_000, 0, 1, 0))], t0);
        assert_eq!(h.direction(a, b, t0).bits_per_second, None, "one reading");
        h.port_stats(1, &[(10, c(1_000 + 125_000 * 5, 0, 1, 0))], t5);
        let d = h.direction(a, b, t5);
        assert_eq!(
            (d.bits_per_second, d.bytes),
            (Some(1_000_000.0), Some(626_000))
        );
        // The receiver's counter wins once it has two readings (OVS userspace tunnel ports
        // count transmitted frames twice).
        h.port_stats(2, &[(20, c(0, 500, 0, 3))], t0);
        h.port_stats(2, &[(20, c(0, 500 + 250_000 * 5, 0, 3))], t5);
        let d = h.direction(a, b, t5);
        assert_eq!(d.bits_per_second, Some(2_000_000.0));
        assert_eq!(
            (d.bytes, d.errors, d.dropped),
            (Some(1_250_500), Some(1), Some(3))
        );
        h.forget_switch(1);
        h.forget_switch(2);
        let d = h.direction(a, b, t5);
        assert_eq!((d.bits_per_second, d.bytes, d.errors), (None, None, None));
        // Counters the switch does not keep read all ones.
        h.port_stats(1, &[(10, c(u64::MAX, 0, u64::MAX, 0))], t0);
        h.port_stats(2, &[(20, c(0, u64::MAX, 0, u64::MAX))], t0);
        let d = h.direction(a, b, t0);
        assert_eq!((d.bytes, d.errors, d.dropped), (None, Some(0), Some(0)));
        h.port_stats(
            2,
            &[(
                20,
                PortCounters {
                    rx_errors: u64::MAX,
                    rx_dropped: u64::MAX,
                    ..c(0, 0, 0, 0)
                },
            )],
            t0,
        );
        let d = h.direction(a, b, t0);
        assert_eq!((d.errors, d.dropped), (None, Some(0)));
    }

    #[test]
    fn retain_forgets_links_that_left() {
        let h = Health::new(Duration::from_secs(1));
        let (a, b, c) = (end(1, 10), end(2, 20), end(3, 30));
        let t0 = Instant::now();
        let s = h.sending(a, t0);
        h.received(a, b, s, t0 + MS);
        let s = h.sending(c, t0);
        h.received(c, b, s, t0 + MS);
        h.retain(&[(a, b), (b, a)]);
        let inner = h.inner();
        assert!(inner.senders.contains_key(&a) && !inner.senders.contains_key(&c));
        assert_eq!(inner.arrivals.len(), 1);
    }

    proptest! {
        /// Whatever subset of the last window arrives, in whatever order, loss counts exactly
        /// the missing ones (from the first that ever arrived).
        #[test]
        fn loss_counts_exactly_the_missing(
            arrived in prop::collection::vec(any::<bool>(), 1..100),
            reorder in any::<bool>(),
        ) {
            let h = Health::new(Duration::from_secs(1));
            let (a, b) = (end(1, 10), end(2, 20));
            let t0 = Instant::now();
            let mut seqs = Vec::new();
            for (i, ok) in arrived.iter().enumerate() {
                let seq = h.sending(a, t0 + Duration::from_secs(i as u64));
                if *ok { seqs.push((seq, i)); }
            }
            if reorder { seqs.reverse(); }
            for (seq, i) in seqs {
                h.received(a, b, seq, t0 + Duration::from_secs(i as u64) + MS);
            }
            let n = arrived.len();
            let d = h.direction(a, b, t0 + Duration::from_secs(n as u64 + 5));
            // The last WINDOW, from the first probe that ever arrived (all when none did).
            let first = arrived.iter().position(|ok| *ok).unwrap_or(0);
            let window = &arrived[n.saturating_sub(WINDOW as usize).max(first)..];
            let expected_lost = window.iter().filter(|ok| !**ok).count() as u64;
            prop_assert_eq!(d.judged, window.len() as u64);
            // Reversed arrival: the highest came first, so the 64-bit map still covers the window.
            prop_assert_eq!(d.lost, expected_lost);
        }

        /// Latency is the mean of what the recent probes measured, whatever the control delays.
        #[test]
        fn latency_is_recovered_from_synthetic_timestamps(
            link_ms in prop::collection::vec(1u64..200, 1..40),
            rtt_a in 0u64..20, rtt_b in 0u64..20,
        ) {
            let h = Health::new(Duration::from_secs(1));
            let (a, b) = (end(1, 10), end(2, 20));
            h.echo_rtt(1, MS * rtt_a as u32);
            h.echo_rtt(2, MS * rtt_b as u32);
            let t0 = Instant::now();
            for (i, l) in link_ms.iter().enumerate() {
                let sent = t0 + Duration::from_secs(i as u64);
                let seq = h.sending(a, sent);
                // Half a round trip out, the link, half a round trip back (in microseconds,
                // so odd round trips halve exactly).
                let total = Duration::from_micros(rtt_a * 500 + l * 1000 + rtt_b * 500);
                h.received(a, b, seq, sent + total);
            }
            let d = h.direction(a, b, t0 + Duration::from_secs(60));
            // Over the last SAMPLES probes.
            let tail = &link_ms[link_ms.len().saturating_sub(SAMPLES)..];
            let mean = tail.iter().sum::<u64>() * 1000 / tail.len() as u64;
            prop_assert_eq!(d.latency, Some(Duration::from_micros(mean)));
            prop_assert_eq!(d.samples, tail.len());
        }
    }
}
