//! One task per switch connection: handshake, initial programming, then keep the switch in
//! line with the model by sending only differences. The protocol (handshake, xids, multipart
//! reassembly, barriers, keepalive) is [`l2sm_ofp::session`]'s; this module does the I/O and
//! the controller's part. Anything malformed closes just that connection, with the reason
//! logged.
//!
//! Every session is bounded ([`SessionLimits`]): each request/reply exchange (port, flow and
//! group reads) and each batch's barrier has a deadline, every write has a timeout, and the
//! events read while the session waits for a reply are kept in a bounded queue (PACKET_INs
//! are dropped and counted then, anything else beyond the bound closes the session). An
//! `accept()` error (descriptors exhausted, ...) is logged and retried with a backoff; it
//! never ends the server.

use super::{ConnectedSwitch, Shared};
use crate::identity::Refusal;
use anyhow::{anyhow, bail, Context as _};
use l2sm_api::v1::{PortStatusView, SwitchStatus};
use l2sm_ofp::session::{CloseReason, Session as OfpSession, SessionConfig, SessionEvent};
use l2sm_ofp::{
    FeaturesReply, FlowStatsRequest, Message, MultipartReplyBody, MultipartRequest,
    MultipartRequestBody, PortDesc,
};
use l2sm_pipeline::limits::MeterEntry;
use l2sm_pipeline::plan::End;
use l2sm_pipeline::{
    compile, diff, ids, lldp, FlowEntry, GroupEntry, LinkKind, SwitchPipeline, SwitchView,
};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// The byte stream of a switch connection: TLS, or plain TCP with `--insecure-openflow`.
trait SwitchStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> SwitchStream for T {}
/// Bounds of one switch session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Longest wait for the reply to one request (port description, flow and group reads).
    pub reply_timeout: Duration,
    /// Longest wait for the BARRIER_REPLY that closes a batch.
    pub barrier_timeout: Duration,
    /// Longest time one write to the switch may block.
    pub write_timeout: Duration,
    /// Events (other than PACKET_IN) kept while the session waits for a reply; one more
    /// closes the session.
    pub max_backlog: usize,
}

impl Default for SessionLimits {
    /// 15 s for replies, barriers and writes; 4096 queued events.
    fn default() -> Self {
        SessionLimits::with_timeout(Duration::from_secs(15))
    }
}

impl SessionLimits {
    /// The same `timeout` for replies, barriers and writes; 4096 queued events.
    pub fn with_timeout(timeout: Duration) -> SessionLimits {
        SessionLimits {
            reply_timeout: timeout,
            barrier_timeout: timeout,
            write_timeout: timeout,
            max_backlog: 4096,
        }
    }
}

/// How often a switch with secured ports is asked for its port-security drop counts.
pub const PORT_SECURITY_STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Bytes read from a switch at once (the session's own buffer reassembles messages).
const READ_BUFFER: usize = 16 * 1024;

/// First wait after a failed `accept()`; doubled on each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait after a failed `accept()`.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Timers of the OpenFlow session: echo after 5 s of silence, drop 10 s later, 10 s for the
/// handshake.
fn session_config() -> SessionConfig {
    SessionConfig::default()
}

/// A port that is up: link up and not administratively down.
fn port_up(p: &PortDesc) -> bool {
    p.state & l2sm_ofp::OFPPS_LINK_DOWN == 0 && p.config & l2sm_ofp::OFPPC_PORT_DOWN == 0
}

/// The kind of link `p` is: VXLAN ports by name, trunks by number; `None` for other ports.
fn link_kind(p: &PortDesc) -> Option<LinkKind> {
    if ids::is_tunnel_port_name(&p.name) {
        Some(LinkKind::Tunnel)
    } else if ids::is_trunk_port(p.port_no) {
        Some(LinkKind::Trunk)
    } else {
        None
    }
}

/// Accepts switch connections forever over plain TCP, with the default [`SessionLimits`].
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) -> anyhow::Result<()> {
    serve_with(listener, shared, SessionLimits::default(), None).await
}

/// Accepts switch connections forever. A failed `accept()` (e.g. EMFILE: descriptors
/// exhausted) is logged, counted and retried after a backoff growing from 10 ms to 1 s; it
/// never ends the server. With `tls`, each connection first completes a TLS handshake with a
/// client certificate (in its own task), and its session is bound to the node the
/// certificate names; without, any peer may claim any datapath id.
pub async fn serve_with(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: SessionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            Err(e) => {
                shared.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot accept a switch connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Some((stream, node)) = secure(stream, peer, tls.as_ref(), &shared).await else {
                return;
            };
            let mut session = Session::new(stream, peer, shared.clone(), limits, node);
            let result = session.run().await;
            session.unregister();
            shared.heap.freed();
            // A switch that stopped reading must not hold the task: the write is bounded too.
            let _ = session.flush().await;
            match result {
                Ok(()) => tracing::info!(%peer, dpid = session.dpid_str(), "switch disconnected"),
                Err(e) if e.is::<PeerClosed>() => {
                    tracing::info!(%peer, dpid = session.dpid_str(), "switch disconnected")
                }
                Err(e) => {
                    if let Some(t) = e.downcast_ref::<TimedOut>() {
                        shared.metrics.session_timeouts.count(t.0);
                    }
                    shared
                        .metrics
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, dpid = session.dpid_str(), "closing switch connection: {e:#}")
                }
            }
        });
    }
}

/// The TLS handshake of one connection (or none with `--insecure-openflow`): the stream and
/// the node of the peer's certificate; `None` (connection dropped, refusal counted) when the
/// handshake fails or the certificate names no node.
async fn secure(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    shared: &Shared,
) -> Option<(Box<dyn SwitchStream>, Option<String>)> {
    let Some(acceptor) = tls else {
        return Some((Box::new(tcp), None));
    };
    let refusals = &shared.metrics.switch_refusals;
    match crate::switch_tls::accept(acceptor, tcp).await {
        Ok((stream, Some(node))) => Some((Box::new(stream), Some(node))),
        Ok((_, None)) => {
            refusals.count(Refusal::NoNode);
            tracing::warn!(%peer, "switch refused: its certificate names no node (SAN URI urn:l2sm:node:NAME)");
            None
        }
        Err(e) => {
            refusals.count(Refusal::Tls);
            tracing::warn!(%peer, "switch refused: TLS handshake failed: {e}");
            None
        }
    }
}

/// A view and the generation of the model and graph it was derived from.
type StampedView = (Arc<SwitchView>, u64);

struct Session<S> {
    stream: S,
    /// The node named by the peer's certificate; `None` without TLS.
    node: Option<String>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    limits: SessionLimits,
    /// The protocol state machine.
    ofp: OfpSession,
    /// Events not handled yet (read while waiting for something else).
    backlog: VecDeque<SessionEvent>,
    dpid: Option<u64>,
    session_id: u64,
    ports: BTreeMap<u32, PortDesc>,
    /// What the switch holds when that is not simply `compile(installed_view)`: the state
    /// read at connection, until the first sync. Not keeping compiled pipelines around saves
    /// most of the controller's memory with a thousand switches.
    read_state: Option<SwitchPipeline>,
    /// Flows and groups the switch holds (as last programmed or read).
    counts: (usize, usize),
    /// The view last compiled for this switch; `None` until the first sync.
    installed_view: Option<Arc<SwitchView>>,
    /// Barriers of batches in flight: xid, when the batch was written, and the view the
    /// switch holds once it answers, with the generation it was derived from.
    pending_barriers: VecDeque<(u32, std::time::Instant, Option<StampedView>)>,
    /// When this session started probing its links.
    probing_since: Option<std::time::Instant>,
    /// Whether the switch has OpenFlow meters (METER_FEATURES with meters): without, its
    /// pipeline has no meters and no meter instructions.
    meters: bool,
    /// The echo request in flight that measures the control channel: xid and send time.
    echo: Option<(u32, std::time::Instant)>,
    /// Per-port bound of the in-network DNS path's answers.
    dns_buckets: crate::netdns::PortBuckets,
}

/// What one event asks of the session loop.
enum Outcome {
    /// Nothing more.
    Done,
    /// The switch's ports changed: re-publish and re-plan.
    PortsChanged,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn new(
        stream: S,
        peer: SocketAddr,
        shared: Arc<Shared>,
        limits: SessionLimits,
        node: Option<String>,
    ) -> Session<S> {
        let session_id = shared.new_session_id();
        Session {
            stream,
            node,
            peer,
            shared,
            limits,
            ofp: OfpSession::new(session_config(), std::time::Instant::now()),
            backlog: VecDeque::new(),
            dpid: None,
            session_id,
            ports: BTreeMap::new(),
            read_state: None,
            counts: (0, 0),
            installed_view: None,
            pending_barriers: VecDeque::new(),
            probing_since: None,
            meters: false,
            echo: None,
            dns_buckets: crate::netdns::PortBuckets::default(),
        }
    }

    /// What the switch must hold for `view`: the compiled pipeline, without meters on a
    /// switch that has none.
    fn compiled(&self, view: &SwitchView) -> SwitchPipeline {
        let p = compile(view);
        if self.meters {
            p
        } else {
            l2sm_pipeline::limits::without_meters(p)
        }
    }

    fn dpid_str(&self) -> String {
        self.dpid
            .map(|d| format!("of:{d:016x}"))
            .unwrap_or_else(|| "-".into())
    }

    /// Counts what the metrics count.
    fn count(&self, body: &Message) {
        let metrics = &self.shared.metrics;
        match body {
            Message::FlowMod(_) => metrics.flow_mods.fetch_add(1, Ordering::Relaxed),
            Message::GroupMod(_) => metrics.group_mods.fetch_add(1, Ordering::Relaxed),
            Message::MeterMod(_) => metrics.meter_mods.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Writes whatever the session has queued, within the write timeout.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.ofp.has_output() {
            let out = self.ofp.take_output();
            let len = out.len();
            let timeout = self.limits.write_timeout;
            // With TLS the flush pushes the records out now, not at the next write.
            let stream = &mut self.stream;
            let write = async move {
                stream.write_all(&out).await?;
                stream.flush().await
            };
            tokio::time::timeout(timeout, write)
                .await
                .map_err(|_| {
                    TimedOut(
                        Exchange::Write,
                        format!("progress writing {len} bytes to the switch"),
                        timeout,
                    )
                })?
                .context("write to switch failed")?;
        }
        Ok(())
    }

    /// Queues `msgs` closed by a barrier (the switch applies them in order; the barrier's
    /// reply gives the batch latency) and writes them.
    async fn send_batch(
        &mut self,
        msgs: Vec<Message>,
        view: Option<StampedView>,
    ) -> anyhow::Result<()> {
        self.shared.metrics.batch_size.observe(msgs.len() as f64);
        msgs.iter().for_each(|m| self.count(m));
        let barrier = self
            .ofp
            .send_batch(msgs)
            .map_err(|e| anyhow!("cannot send a batch: {e}"))?;
        // A switch that never answers barriers must not make this grow without bound.
        if self.pending_barriers.len() >= 64 {
            self.pending_barriers.pop_front();
        }
        self.pending_barriers
            .push_back((barrier, std::time::Instant::now(), view));
        self.flush().await
    }

    /// Sends one LLDP probe out of every inter-switch link port that is up.
    async fn send_probes(&mut self) -> anyhow::Result<()> {
        let Some(dpid) = self.dpid else { return Ok(()) };
        let ttl =
            u16::try_from(self.shared.probes.dead_after().as_secs().max(1)).unwrap_or(u16::MAX);
        let ports: Vec<u32> = self
            .ports
            .values()
            .filter(|p| link_kind(p).is_some() && port_up(p))
            .map(|p| p.port_no)
            .collect();
        if ports.is_empty() {
            return Ok(());
        }
        self.send_echo()?;
        // One lock of the link health for all of this switch's probes.
        let mut seqs = Vec::with_capacity(ports.len());
        self.shared
            .health
            .sending_all(dpid, &ports, std::time::Instant::now(), |port, seq| {
                seqs.push((port, seq))
            });
        for (port, seq) in seqs {
            let probe = Message::PacketOut(l2sm_ofp::PacketOut {
                buffer_id: l2sm_ofp::NO_BUFFER,
                in_port: l2sm_ofp::port::CONTROLLER,
                actions: vec![l2sm_ofp::Action::output(port)],
                data: lldp::encode_seq(lldp::Probe { dpid, port }, ttl, seq),
            });
            self.ofp
                .send(probe)
                .map_err(|e| anyhow!("cannot send an LLDP probe: {e}"))?;
        }
        self.shared
            .metrics
            .lldp_sent
            .fetch_add(ports.len() as u64, Ordering::Relaxed);
        self.flush().await
    }

    /// Sends an echo request that measures the control channel's round trip (link latency
    /// subtracts half of it), unless one is still in flight.
    fn send_echo(&mut self) -> anyhow::Result<()> {
        let now = std::time::Instant::now();
        if self
            .echo
            .is_some_and(|(_, sent)| now.duration_since(sent) < self.shared.probes.dead_after())
        {
            return Ok(());
        }
        let xid = self
            .ofp
            .request(Message::EchoRequest(Vec::new()))
            .map_err(|e| anyhow!("cannot send an echo request: {e}"))?;
        self.echo = Some((xid, now));
        Ok(())
    }

    /// Records the round trip when `ev` answers the echo request in flight; true when it did.
    fn echo_answered(&mut self, ev: &SessionEvent) -> bool {
        let (SessionEvent::Reply { request_xid, .. }, Some((xid, sent)), Some(dpid)) =
            (ev, self.echo, self.dpid)
        else {
            return false;
        };
        if *request_xid != xid {
            return false;
        }
        self.echo = None;
        self.shared.health.echo_rtt(dpid, sent.elapsed());
        true
    }

    /// A PACKET_IN: a network's DNS punt (its flow's cookie names the network), or an LLDP
    /// probe. A probe that arrived on one of this switch's link ports confirms that direction
    /// of the link.
    fn handle_packet_in(&mut self, p: &l2sm_ofp::PacketIn) {
        let metrics = &self.shared.metrics;
        let in_port = p.r#match.fields.iter().find_map(|f| match f {
            l2sm_ofp::OxmField::InPort(port) => Some(*port),
            _ => None,
        });
        if let Some(vni) = l2sm_pipeline::dns::cookie_vni(p.cookie) {
            self.handle_dns_punt(vni, in_port, p);
            return;
        }
        let (Some(dpid), Some(in_port)) = (self.dpid, in_port) else {
            metrics.lldp_ignored.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !self.is_link_port(in_port) {
            metrics.lldp_ignored.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match lldp::decode_seq(&p.data) {
            Ok((probe, seq)) => {
                let at = std::time::Instant::now();
                metrics.lldp_received.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(dpid = self.dpid_str(), in_port, from = ?probe, seq, "LLDP probe");
                let (from, to) = (
                    End {
                        dpid: probe.dpid,
                        port: probe.port,
                    },
                    End {
                        dpid,
                        port: in_port,
                    },
                );
                self.shared.probes.heard((from, to));
                if let Some(seq) = seq {
                    self.shared.health.received(from, to, seq, at);
                }
            }
            Err(e) => {
                metrics.lldp_ignored.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(dpid = self.dpid_str(), in_port, "ignored packet-in: {e}");
            }
        }
    }

    /// A frame a network's DNS punt flow sent ([`crate::netdns`]): answered with PACKET_OUT
    /// out of the port it came in on when that port is a member of the network on this
    /// switch (as programmed), within the port's rate, and the frame passes every check;
    /// otherwise dropped and counted.
    fn handle_dns_punt(&mut self, vni: u32, in_port: Option<u32>, p: &l2sm_ofp::PacketIn) {
        use crate::netdns::{DropReason, Reply};
        let shared = self.shared.clone();
        let counters = &shared.metrics.network_dns;
        let addrs = self
            .installed_view
            .as_ref()
            .and_then(|v| v.networks.get(&vni))
            .filter(|n| in_port.is_some_and(|port| n.members.contains(&port)))
            .map(|n| (n.dns, n.dns6))
            .filter(|(a, a6)| a.is_some() || a6.is_some());
        let (Some(in_port), Some((addr, addr6))) = (in_port, addrs) else {
            counters.dropped(DropReason::WrongTarget);
            return;
        };
        if usize::from(p.total_len) > p.data.len() {
            counters.dropped(DropReason::Truncated);
            return;
        }
        if !self.dns_buckets.allow(in_port, std::time::Instant::now()) {
            counters.dropped(DropReason::RateLimited);
            return;
        }
        let endpoint = crate::netdns::Endpoint {
            addr,
            addr6,
            mac: l2sm_pipeline::dns::mac(vni),
        };
        let reply = crate::netdns::answer(&p.data, endpoint, |msg| {
            let network = shared.with_model(|m| {
                m.networks
                    .iter()
                    .find(|(_, n)| n.vni == vni)
                    .map(|(name, _)| name.clone())
            })?;
            let zone = shared.network_dns_zone()?;
            crate::netdns::respond(&zone, &network, msg)
        });
        let data = match reply {
            Ok(Reply::Arp(frame)) => {
                counters.arp_answers.fetch_add(1, Ordering::Relaxed);
                frame
            }
            Ok(Reply::Nd(frame)) => {
                counters.nd_answers.fetch_add(1, Ordering::Relaxed);
                frame
            }
            Ok(Reply::Dns(frame)) => {
                counters.dns_answers.fetch_add(1, Ordering::Relaxed);
                frame
            }
            Err(reason) => {
                counters.dropped(reason);
                tracing::trace!(
                    dpid = self.dpid_str(),
                    in_port,
                    vni,
                    reason = reason.label(),
                    "DNS punt dropped"
                );
                return;
            }
        };
        let out = Message::PacketOut(l2sm_ofp::PacketOut {
            buffer_id: l2sm_ofp::NO_BUFFER,
            in_port: l2sm_ofp::port::CONTROLLER,
            actions: vec![l2sm_ofp::Action::output(in_port)],
            data,
        });
        if let Err(e) = self.ofp.send(out) {
            tracing::debug!(dpid = self.dpid_str(), in_port, "DNS answer not sent: {e}");
        }
    }

    /// Writes pending output, then waits for bytes from the switch or the session's next
    /// deadline, and feeds the session. New events land in the session's queue.
    async fn io_step(&mut self) -> anyhow::Result<()> {
        self.flush().await?;
        let sleep = until(self.ofp.next_deadline());
        tokio::select! {
            read = read_into(&mut self.stream, &mut self.ofp) => {
                read.context("read from switch failed")?;
            }
            _ = sleep => {}
        }
        self.ofp.tick(std::time::Instant::now());
        // Whatever the session queued (echo replies, HELLO_FAILED) goes out now.
        self.flush().await
    }

    /// Waits for an event satisfying `pick`, at most the reply timeout; other events are kept
    /// for the main loop in a bounded queue (PACKET_INs are dropped and counted: nothing is
    /// programmed yet that they could confirm), except that the end of the session ends the
    /// wait with its reason.
    async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&SessionEvent) -> Option<T>,
    ) -> anyhow::Result<T> {
        let timeout = self.limits.reply_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(ev) = self.ofp.poll_event() {
                if let Some(v) = pick(&ev) {
                    return Ok(v);
                }
                // Timing events are handled as they arrive, not after the wait.
                if self.echo_answered(&ev) {
                    continue;
                }
                match &ev {
                    SessionEvent::Closed { reason } => bail!("{reason} (waiting for {what})"),
                    SessionEvent::Message(m) if matches!(m.body, Message::PacketIn(_)) => {
                        // Once probing, a probe that arrives during a statistics read still
                        // counts (dropping it would show as loss on the link).
                        match &m.body {
                            Message::PacketIn(p) if self.probing_since.is_some() => {
                                self.handle_packet_in(p)
                            }
                            _ => {
                                self.shared
                                    .metrics
                                    .packet_ins_dropped_syncing
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        continue;
                    }
                    _ => {}
                }
                if self.backlog.len() >= self.limits.max_backlog {
                    bail!(
                        "more than {} events queued while waiting for {what}",
                        self.limits.max_backlog
                    );
                }
                self.backlog.push_back(ev);
            }
            // Checked here too: a switch whose bytes are always ready completes every step at
            // once, and a timer raced against such a step may never get its turn.
            if tokio::time::Instant::now() >= deadline {
                return Err(TimedOut(Exchange::Reply, what.to_string(), timeout).into());
            }
            tokio::time::timeout_at(deadline, self.io_step())
                .await
                .map_err(|_| TimedOut(Exchange::Reply, what.to_string(), timeout))??;
        }
    }

    /// Handles one event of the running session.
    fn handle_event(&mut self, ev: SessionEvent) -> anyhow::Result<Outcome> {
        if self.echo_answered(&ev) {
            return Ok(Outcome::Done);
        }
        match ev {
            SessionEvent::Message(msg) => match msg.body {
                Message::PacketIn(p) => self.handle_packet_in(&p),
                Message::PortStatus(ps) => {
                    if ps.reason == 1 {
                        self.ports.remove(&ps.desc.port_no);
                    } else {
                        self.ports.insert(ps.desc.port_no, ps.desc);
                    }
                    return Ok(Outcome::PortsChanged);
                }
                _ => {}
            },
            SessionEvent::BarrierDone(xid) => {
                if let Some(i) = self.pending_barriers.iter().position(|(x, _, _)| *x == xid) {
                    // Earlier barriers without a reply are answered by this one too.
                    let sent = self.pending_barriers[i].1;
                    let applied = self
                        .pending_barriers
                        .drain(..=i)
                        .filter_map(|(_, _, view)| view)
                        .next_back();
                    if let (Some((view, generation)), Some(dpid)) = (applied, self.dpid) {
                        self.shared.view_applied(dpid, view, generation);
                    }
                    self.shared
                        .metrics
                        .batch_latency
                        .observe(sent.elapsed().as_secs_f64());
                }
            }
            SessionEvent::Error { xid, error, origin } => tracing::warn!(
                dpid = self.dpid_str(),
                err_type = error.err_type,
                code = error.code,
                xid,
                ?origin,
                "switch reported an error"
            ),
            SessionEvent::Closed { reason } => match reason {
                CloseReason::PeerClosed => return Err(PeerClosed.into()),
                other => bail!("{other}"),
            },
            _ => {}
        }
        Ok(Outcome::Done)
    }

    /// Handles every pending event; true when the switch's ports changed.
    fn handle_events(&mut self) -> anyhow::Result<bool> {
        let mut ports_changed = false;
        while let Some(ev) = self.backlog.pop_front().or_else(|| self.ofp.poll_event()) {
            if let Outcome::PortsChanged = self.handle_event(ev)? {
                ports_changed = true;
            }
        }
        Ok(ports_changed)
    }

    async fn handshake(&mut self) -> anyhow::Result<()> {
        let features: FeaturesReply = self
            .expect("FEATURES_REPLY", |ev| match ev {
                SessionEvent::Connected { features } => Some(features.clone()),
                _ => None,
            })
            .await?;
        self.bind_dpid(features.datapath_id)?;
        for reply in self.multipart(MultipartRequestBody::PortDesc).await? {
            if let MultipartReplyBody::PortDesc(ports) = reply {
                for p in ports {
                    self.ports.insert(p.port_no, p);
                }
            }
        }
        // Meters: a switch that refuses the request or has none gets a pipeline without.
        self.meters = match self.multipart(MultipartRequestBody::MeterFeatures).await {
            Ok(parts) => parts.iter().any(|p| {
                matches!(p, MultipartReplyBody::MeterFeatures(f)
                    if f.max_meter > 0 && f.band_types & (1 << 1) != 0)
            }),
            Err(e) => {
                tracing::debug!(dpid = self.dpid_str(), "no meter features: {e:#}");
                false
            }
        };
        if !self.meters {
            tracing::warn!(
                dpid = self.dpid_str(),
                "switch has no OpenFlow meters: flood and controller meters are left out"
            );
        }
        Ok(())
    }

    /// Accepts the datapath id the switch claims when its certificate's node owns it and no
    /// other session holds it; the session then holds it until it ends.
    fn bind_dpid(&mut self, dpid: u64) -> anyhow::Result<()> {
        let refusals = &self.shared.metrics.switch_refusals;
        if let Some(node) = &self.node {
            let own = self.shared.node_dpid(node);
            // A provider controller also accepts the node's edge switch (same Open vSwitch,
            // same certificate).
            let edge = self.shared.edge_dpid(node);
            if dpid != own && Some(dpid) != edge {
                refusals.count(Refusal::WrongDpid);
                bail!(
                    "switch refused: node {node:?} (certificate) claims datapath id of:{dpid:016x}, its own is of:{own:016x}{}",
                    edge.map(|e| format!(" (its edge's of:{e:016x})")).unwrap_or_default()
                );
            }
        }
        if !self.shared.dpid_claims.claim(dpid) {
            refusals.count(Refusal::Duplicate);
            bail!("switch refused: of:{dpid:016x} already has a session (the connected one stays)");
        }
        self.dpid = Some(dpid);
        Ok(())
    }

    /// Sends a multipart request and collects every part of its reply.
    async fn multipart(
        &mut self,
        body: MultipartRequestBody,
    ) -> anyhow::Result<Vec<MultipartReplyBody>> {
        let what = format!("{body:?} reply");
        let xid = self
            .ofp
            .request(Message::MultipartRequest(MultipartRequest {
                flags: 0,
                body,
            }))
            .map_err(|e| anyhow!("cannot send {what}: {e}"))?;
        let messages = self
            .expect(&what, |ev| match ev {
                SessionEvent::Reply {
                    request_xid,
                    messages,
                } if *request_xid == xid => Some(Ok(messages.clone())),
                SessionEvent::Error { xid: e, error, .. } if *e == xid => Some(Err(anyhow!(
                    "switch refused the request (type {}, code {})",
                    error.err_type,
                    error.code
                ))),
                _ => None,
            })
            .await??;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m.body {
                Message::MultipartReply(r) => Some(r.body),
                _ => None,
            })
            .collect())
    }

    /// What the switch holds now, in the compiler's terms. Entries created by `learn` are left
    /// out: they are the switch's own state and survive a reconnection. Groups that are not
    /// plain ALL groups of output buckets get an impossible output list, so the diff rewrites
    /// them.
    async fn read_switch_state(&mut self) -> anyhow::Result<SwitchPipeline> {
        let mut current = SwitchPipeline::default();
        let all_flows = MultipartRequestBody::Flow(FlowStatsRequest {
            table_id: l2sm_ofp::TABLE_ALL,
            out_port: l2sm_ofp::port::ANY,
            out_group: l2sm_ofp::group::ANY,
            cookie: 0,
            cookie_mask: 0,
            r#match: l2sm_ofp::Match::any(),
        });
        for part in self.multipart(all_flows).await? {
            let MultipartReplyBody::Flow(flows) = part else {
                continue;
            };
            for f in flows {
                if f.table_id == l2sm_pipeline::table::UNICAST
                    && f.cookie & l2sm_pipeline::cookie::OWNER_MASK
                        == l2sm_pipeline::cookie::LEARNED
                {
                    continue;
                }
                let entry = FlowEntry {
                    table: f.table_id,
                    priority: f.priority,
                    cookie: f.cookie,
                    r#match: f.r#match,
                    instructions: f.instructions,
                };
                tracing::trace!(dpid = self.dpid_str(), flow = ?entry, "read flow");
                current.flows.insert(entry.key(), entry);
            }
        }
        for part in self.multipart(MultipartRequestBody::GroupDesc).await? {
            let MultipartReplyBody::GroupDesc(groups) = part else {
                continue;
            };
            for g in groups {
                // Anything but a plain ALL group gets a bucket list we never compile, so the
                // diff rewrites it.
                let buckets = if g.group_type == l2sm_ofp::GroupType::All {
                    g.buckets.into_iter().map(|b| b.actions).collect()
                } else {
                    vec![vec![l2sm_ofp::Action::Output {
                        port: l2sm_ofp::port::ANY,
                        max_len: 0,
                    }]]
                };
                current.groups.insert(
                    g.group_id,
                    GroupEntry {
                        group_id: g.group_id,
                        buckets,
                    },
                );
            }
        }
        if self.meters {
            let configs = MultipartRequestBody::MeterConfig {
                meter_id: l2sm_ofp::meter::ALL,
            };
            for part in self.multipart(configs).await? {
                let MultipartReplyBody::MeterConfig(meters) = part else {
                    continue;
                };
                for m in meters {
                    // A meter of another shape gets a rate we never compile, so the diff
                    // rewrites or deletes it.
                    let entry = MeterEntry::from_config(m.flags, m.meter_id, &m.bands).unwrap_or(
                        MeterEntry {
                            meter_id: m.meter_id,
                            rate: 0,
                            burst: u32::MAX,
                        },
                    );
                    current.meters.insert(m.meter_id, entry);
                }
            }
        }
        Ok(current)
    }

    /// Reads the statistics of the port-security drop flows (only on a switch that has
    /// secured ports) into the `l2sm_port_security_drops_total` counters.
    async fn read_port_security_drops(&mut self) -> anyhow::Result<()> {
        let Some(dpid) = self.dpid else { return Ok(()) };
        let secured = self
            .installed_view
            .as_ref()
            .is_some_and(|v| v.networks.values().any(|n| !n.secured.is_empty()));
        let shared = self.shared.clone();
        let drops = &shared.metrics.port_security_drops;
        if !secured {
            drops.forget_switch(dpid);
            return Ok(());
        }
        let request = MultipartRequestBody::Flow(FlowStatsRequest {
            table_id: l2sm_pipeline::table::CLASSIFY,
            out_port: l2sm_ofp::port::ANY,
            out_group: l2sm_ofp::group::ANY,
            cookie: l2sm_pipeline::cookie::PORT_SECURITY,
            cookie_mask: l2sm_pipeline::cookie::OWNER_MASK,
            r#match: l2sm_ofp::Match::any(),
        });
        let mut packets: BTreeMap<u32, u64> = BTreeMap::new();
        for part in self.multipart(request).await? {
            let MultipartReplyBody::Flow(flows) = part else {
                continue;
            };
            for f in flows {
                if let Some(port) = l2sm_pipeline::port_security::drop_cookie_port(f.cookie) {
                    *packets.entry(port).or_default() += f.packet_count;
                }
            }
        }
        drops.record(dpid, &packets);
        Ok(())
    }

    /// Reads the counters of the abuse limits (flood meter drops, learn-cap excess, controller
    /// meter drops) and hands them to the metrics.
    async fn read_limit_stats(&mut self) -> anyhow::Result<()> {
        let Some(dpid) = self.dpid else { return Ok(()) };
        let mut stats = crate::metrics::SwitchLimitStats::default();
        if self.meters {
            let all = MultipartRequestBody::Meter {
                meter_id: l2sm_ofp::meter::ALL,
            };
            for part in self.multipart(all).await? {
                let MultipartReplyBody::Meter(meters) = part else {
                    continue;
                };
                for m in meters {
                    let dropped: u64 = m.band_stats.iter().map(|b| b.packet_band_count).sum();
                    if m.meter_id == l2sm_pipeline::limits::CONTROLLER_METER {
                        stats.controller_dropped = dropped;
                    } else if let Some(port) = l2sm_pipeline::limits::meter_port(m.meter_id) {
                        stats.flood_dropped.insert(port, dropped);
                    }
                }
            }
        }
        let excess = MultipartRequestBody::Flow(FlowStatsRequest {
            table_id: l2sm_pipeline::table::FORWARD,
            out_port: l2sm_ofp::port::ANY,
            out_group: l2sm_ofp::group::ANY,
            cookie: l2sm_pipeline::cookie::EXCESS,
            cookie_mask: l2sm_pipeline::cookie::OWNER_MASK,
            r#match: l2sm_ofp::Match::any(),
        });
        for part in self.multipart(excess).await? {
            let MultipartReplyBody::Flow(flows) = part else {
                continue;
            };
            for f in flows {
                if f.cookie & l2sm_pipeline::cookie::OWNER_MASK == l2sm_pipeline::cookie::EXCESS {
                    let port = (f.cookie & !l2sm_pipeline::cookie::OWNER_MASK) as u32;
                    stats.excess.insert(port, f.packet_count);
                }
            }
        }
        self.shared.limit_stats.record(dpid, self.session_id, stats);
        Ok(())
    }

    /// Reads the counters of this switch's link ports (one OFPMP_PORT_STATS request for all
    /// ports) into the link health.
    async fn read_link_port_stats(&mut self) -> anyhow::Result<()> {
        let Some(dpid) = self.dpid else { return Ok(()) };
        let links = self.links();
        if links.is_empty() {
            return Ok(());
        }
        let request = MultipartRequestBody::PortStats {
            port_no: l2sm_ofp::port::ANY,
        };
        let mut counters = Vec::with_capacity(links.len());
        for part in self.multipart(request).await? {
            let MultipartReplyBody::PortStats(ports) = part else {
                continue;
            };
            for p in ports.iter().filter(|p| links.contains_key(&p.port_no)) {
                counters.push((
                    p.port_no,
                    crate::health::PortCounters {
                        tx_bytes: p.tx_bytes,
                        rx_bytes: p.rx_bytes,
                        tx_packets: p.tx_packets,
                        rx_packets: p.rx_packets,
                        tx_errors: p.tx_errors,
                        rx_errors: p.rx_errors,
                        tx_dropped: p.tx_dropped,
                        rx_dropped: p.rx_dropped,
                    },
                ));
            }
        }
        self.shared
            .health
            .port_stats(dpid, &counters, std::time::Instant::now());
        Ok(())
    }

    /// Whether `port` is one of [`Session::links`] (without building the map: this runs for
    /// every PACKET_IN).
    fn is_link_port(&self, port: u32) -> bool {
        self.ports
            .get(&port)
            .is_some_and(|p| link_kind(p).is_some())
    }

    /// Inter-switch links of this switch: VXLAN ports by name, trunks by number.
    fn links(&self) -> BTreeMap<u32, LinkKind> {
        self.ports
            .values()
            .filter_map(|p| Some((p.port_no, link_kind(p)?)))
            .collect()
    }

    /// Brings the switch in line with the model, sending only what changed.
    async fn sync(&mut self) -> anyhow::Result<()> {
        let Some(dpid) = self.dpid else { return Ok(()) };
        let Some((view, generation)) = self.shared.view_of(dpid, self.links()) else {
            return Ok(());
        };
        if self.installed_view.as_ref() == Some(&view) {
            // Nothing to send for this generation: the switch holds it once what is in
            // flight is confirmed (waits for "every switch has generation N" count on it).
            self.confirm_when_done(dpid, view, generation);
            return Ok(());
        }
        for v in view.violations() {
            // The model refuses these; state written by an older build may still hold them.
            tracing::warn!(dpid = %ids::dpid_hex(dpid), "left out of the switch's pipeline: {v}");
        }
        let desired = self.compiled(&view);
        let current = match self.read_state.take() {
            Some(state) => state,
            None => self
                .installed_view
                .as_deref()
                .map(|v| self.compiled(v))
                .unwrap_or_default(),
        };
        let mut msgs = diff(&current, &desired);
        // A port whose networks changed (a member that left or moved, a link that left a
        // tree) must not keep MAC entries that steer frames to it.
        let vnis_by_port = |v: &SwitchView| -> BTreeMap<u32, Vec<u32>> {
            let mut m: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for (vni, net) in &v.networks {
                for p in net.members.iter().chain(&net.link_ports) {
                    m.entry(*p).or_default().push(*vni);
                }
            }
            m
        };
        let old = self
            .installed_view
            .as_ref()
            .map(|v| vnis_by_port(v))
            .unwrap_or_default();
        let new = vnis_by_port(&view);
        for (port, vnis) in &old {
            if new.get(port) != Some(vnis) {
                msgs.push(l2sm_pipeline::flush_learned(*port));
            }
        }
        // A network whose links on this switch changed (a tree recomputed after a link came
        // or went): MACs learned here may point the old way round, and frames sent that way
        // would be black-holed until the MAC's owner spoke again. After the new flows, in the
        // same batch. (A switch whose own tree ports stayed may still hold such entries when
        // paths moved elsewhere: not covered yet.)
        if let Some(installed) = &self.installed_view {
            for (vni, net) in &view.networks {
                if installed
                    .networks
                    .get(vni)
                    .is_some_and(|old| old.link_ports != net.link_ports || old.mode != net.mode)
                {
                    msgs.push(l2sm_pipeline::flush_network_learned(*vni));
                }
            }
        }
        for m in &msgs {
            tracing::trace!(dpid = self.dpid_str(), message = ?m, "switch change");
        }
        let count = msgs.len();
        if count > 0 {
            self.send_batch(msgs, Some((view.clone(), generation)))
                .await?;
        } else {
            self.confirm_when_done(dpid, view.clone(), generation);
        }
        tracing::debug!(dpid = self.dpid_str(), messages = count, "switch synced");
        if count > 0 {
            self.shared.heap.freed();
        }
        self.counts = (desired.flows.len(), desired.groups.len());
        self.dns_buckets.retain(|port| {
            view.networks
                .values()
                .any(|n| (n.dns.is_some() || n.dns6.is_some()) && n.members.contains(&port))
        });
        self.installed_view = Some(view);
        self.publish();
        Ok(())
    }

    /// Records that the switch holds `view` (from `generation`) once the batch in flight, if
    /// any, is confirmed; at once without one.
    fn confirm_when_done(&mut self, dpid: u64, view: Arc<SwitchView>, generation: u64) {
        match self.pending_barriers.back_mut() {
            Some(last) => last.2 = Some((view, generation)),
            None => self.shared.view_applied(dpid, view, generation),
        }
    }

    fn publish(&self) {
        let Some(dpid) = self.dpid else { return };
        let status = SwitchStatus {
            id: format!("of:{dpid:016x}"),
            peer: self.peer.to_string(),
            ports: self
                .ports
                .values()
                .filter(|p| p.port_no <= l2sm_ofp::port::MAX)
                .map(|p| PortStatusView {
                    number: p.port_no,
                    name: p.name.clone(),
                    kind: if ids::is_tunnel_port_name(&p.name) {
                        "tunnel"
                    } else if ids::is_trunk_port(p.port_no) {
                        "trunk"
                    } else {
                        "port"
                    }
                    .into(),
                    live: port_up(p),
                })
                .collect(),
            flows: self.counts.0,
            groups: self.counts.1,
        };
        let switch = ConnectedSwitch {
            status,
            session: self.session_id,
            probing_since: self.probing_since,
        };
        self.shared.switches().insert(dpid, switch);
    }

    fn unregister(&self) {
        if let Some(dpid) = self.dpid {
            self.shared.metrics.port_security_drops.forget_switch(dpid);
            self.shared.dpid_claims.release(dpid);
            self.shared.limit_stats.forget(dpid, self.session_id);
            let mut switches = self.shared.switches();
            if switches
                .get(&dpid)
                .is_some_and(|s| s.session == self.session_id)
            {
                switches.remove(&dpid);
                drop(switches);
                self.shared.health.forget_switch(dpid);
                self.shared.switch_gone(dpid);
            }
        }
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let handshake_timeout = session_config().handshake_timeout;
        tokio::time::timeout(handshake_timeout + Duration::from_secs(1), self.handshake())
            .await
            .map_err(|_| anyhow!("handshake timed out"))??;
        tracing::info!(peer = %self.peer, dpid = self.dpid_str(), node = self.node.as_deref().unwrap_or("-"), ports = self.ports.len(), "switch connected");
        // A reconnecting switch still holds what it had: read it and change only what differs,
        // so established traffic and learned MACs survive a controller restart.
        let state = self.read_switch_state().await?;
        self.counts = (state.flows.len(), state.groups.len());
        self.read_state = Some(state);
        // The reads may have grown the buffer to the largest reply: give that back.
        self.ofp.shrink_buffers(4096);
        tracing::info!(
            dpid = self.dpid_str(),
            flows = self.counts.0,
            groups = self.counts.1,
            "read switch state"
        );
        let mut generation = self.shared.subscribe();
        self.publish();
        self.shared.bump();
        generation.borrow_and_update();
        self.sync().await?;
        let mut probe_timer = tokio::time::interval(self.shared.probes.interval);
        probe_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drops_timer = tokio::time::interval(PORT_SECURITY_STATS_INTERVAL);
        drops_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stats_every = self.shared.limit_stats.interval();
        let mut stats_timer =
            tokio::time::interval_at(tokio::time::Instant::now() + stats_every, stats_every);
        stats_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.probing_since = Some(std::time::Instant::now());
        self.publish();
        loop {
            if self.handle_events()? {
                // Ports changed: other switches' trees may depend on this one's links.
                self.publish();
                self.shared.bump();
                self.sync().await?;
            }
            self.flush().await?;
            let barrier_due = self
                .pending_barriers
                .front()
                .and_then(|(_, sent, _)| sent.checked_add(self.limits.barrier_timeout));
            if barrier_due.is_some_and(|due| due <= std::time::Instant::now()) {
                return Err(TimedOut(
                    Exchange::Barrier,
                    "BARRIER_REPLY".into(),
                    self.limits.barrier_timeout,
                )
                .into());
            }
            let next = match (self.ofp.next_deadline(), barrier_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = until(next);
            tokio::select! {
                read = read_into(&mut self.stream, &mut self.ofp) => {
                    read.context("read from switch failed")?;
                    self.ofp.tick(std::time::Instant::now());
                }
                _ = sleep => self.ofp.tick(std::time::Instant::now()),
                changed = generation.changed() => {
                    if changed.is_err() { return Ok(()) }
                    generation.borrow_and_update();
                    self.sync().await?;
                }
                _ = probe_timer.tick() => self.send_probes().await?,
                _ = drops_timer.tick() => self.read_port_security_drops().await?,
                _ = stats_timer.tick() => {
                    self.read_limit_stats().await?;
                    self.read_link_port_stats().await?;
                }
            }
        }
    }
}

thread_local! {
    /// Where reads land before the session parses them: one per runtime thread rather than one
    /// per session, so an idle session holds no read buffer at all (a 2 KiB buffer each was
    /// 10 MiB with 5,000 switches).
    static READ_SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; READ_BUFFER].into_boxed_slice());
}

/// Reads what the peer has sent and feeds it to `ofp` (0 bytes: the peer closed). Polls the
/// stream with the thread's scratch buffer: a pending read has consumed nothing, so no bytes
/// are ever left in a buffer between polls.
fn read_into<'a, S: AsyncRead + Unpin>(
    stream: &'a mut S,
    ofp: &'a mut OfpSession,
) -> impl std::future::Future<Output = std::io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        READ_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = tokio::io::ReadBuf::new(&mut scratch[..]);
            match std::pin::Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                std::task::Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    match n {
                        0 => ofp.peer_closed(),
                        _ => ofp.feed(buf.filled()),
                    }
                    std::task::Poll::Ready(Ok(n))
                }
                std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })
    })
}

/// Sleeps until the session's next deadline, or forever without one.
async fn until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Which exchange with a switch ran out of time (the label of
/// `l2sm_switch_session_timeouts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// A request's reply (port, flow or group read).
    Reply,
    /// A batch's BARRIER_REPLY.
    Barrier,
    /// A write to the switch.
    Write,
}

impl Exchange {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Exchange::Reply => "reply",
            Exchange::Barrier => "barrier",
            Exchange::Write => "write",
        }
    }
}

/// An exchange with the switch did not complete in time: the session closes.
#[derive(Debug, thiserror::Error)]
#[error("no {1} within {2:?}: closing the session")]
struct TimedOut(Exchange, String, Duration);

/// The switch closed the connection (a normal end).
#[derive(Debug, thiserror::Error)]
#[error("switch closed the connection")]
struct PeerClosed;
