//! One task per switch connection: handshake, initial programming, then keep the switch in
//! line with the model by sending only differences. Anything malformed closes just that
//! connection, with the reason logged.

use super::{PortStatusView, Shared, SwitchStatus};
use anyhow::{anyhow, bail, Context as _};
use l2sm_ofp::{
    FeaturesReply, FlowStatsRequest, Message, MultipartReplyBody, MultipartRequest,
    MultipartRequestBody, OfpMessage, PortDesc,
};
use l2sm_pipeline::{
    compile, diff, ids, FlowEntry, GroupEntry, LinkKind, SwitchPipeline, SwitchView,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Send an echo request after this much silence from the switch.
const ECHO_INTERVAL: Duration = Duration::from_secs(5);
/// Drop the connection after this much silence.
const DEAD_AFTER: Duration = Duration::from_secs(15);
/// Handshake must finish within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bitmap bit for OpenFlow 1.3 in HELLO version bitmaps.
const OF13_BIT: u32 = 1 << 4;

/// Accepts switch connections forever.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await.context("accept failed")?;
        shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut session = Session::new(stream, peer, shared.clone());
            let result = session.run().await;
            session.unregister();
            match result {
                Ok(()) => tracing::info!(%peer, dpid = session.dpid_str(), "switch disconnected"),
                Err(e) => {
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

struct Session {
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    buf: Vec<u8>,
    next_xid: u32,
    last_heard: Instant,
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
}

impl Session {
    fn new(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Session {
        let session_id = shared.new_session_id();
        Session {
            stream,
            peer,
            shared,
            buf: Vec::with_capacity(4096),
            next_xid: 1,
            last_heard: Instant::now(),
            dpid: None,
            session_id,
            ports: BTreeMap::new(),
            read_state: None,
            counts: (0, 0),
            installed_view: None,
        }
    }

    fn dpid_str(&self) -> String {
        self.dpid
            .map(|d| format!("of:{d:016x}"))
            .unwrap_or_else(|| "-".into())
    }

    fn xid(&mut self) -> u32 {
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        self.next_xid
    }

    /// Encodes one message onto `out`, counting what the metrics count.
    fn encode_into(&self, out: &mut Vec<u8>, xid: u32, body: Message) -> anyhow::Result<()> {
        let metrics = &self.shared.metrics;
        match &body {
            Message::FlowMod(_) => metrics.flow_mods.fetch_add(1, Ordering::Relaxed),
            Message::GroupMod(_) => metrics.group_mods.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let name = body.name();
        let bytes = l2sm_ofp::encode(&OfpMessage { xid, body })
            .map_err(|e| anyhow!("cannot encode {name}: {e}"))?;
        out.extend_from_slice(&bytes);
        Ok(())
    }

    async fn send(&mut self, xid: u32, body: Message) -> anyhow::Result<()> {
        let mut out = Vec::new();
        self.encode_into(&mut out, xid, body)?;
        self.stream
            .write_all(&out)
            .await
            .context("write to switch failed")
    }

    /// Sends `msgs` in one write, closed by a barrier so the switch applies them in order.
    async fn send_batch(&mut self, msgs: Vec<Message>) -> anyhow::Result<()> {
        let mut out = Vec::new();
        for body in msgs.into_iter().chain([Message::BarrierRequest]) {
            let xid = self.xid();
            self.encode_into(&mut out, xid, body)?;
        }
        self.stream
            .write_all(&out)
            .await
            .context("write to switch failed")
    }

    /// Reads more bytes into the buffer; `Ok(false)` on end of stream.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .context("read from switch failed")?;
        Ok(n > 0)
    }

    /// Next complete message; `Ok(None)` on a clean close.
    async fn recv(&mut self) -> anyhow::Result<Option<OfpMessage>> {
        loop {
            if let Some(len) = l2sm_ofp::message_len(&self.buf)
                .map_err(|e| anyhow!("bad OpenFlow framing: {e}"))?
            {
                if self.buf.len() >= len {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    let msg = l2sm_ofp::decode(&frame)
                        .map_err(|e| anyhow!("undecodable message: {e}"))?;
                    self.last_heard = Instant::now();
                    return Ok(Some(msg));
                }
            }
            if !self.fill().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!("connection closed in the middle of a message");
            }
        }
    }

    /// Waits for a message satisfying `pick`, answering echo requests meanwhile.
    async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&OfpMessage) -> Option<T>,
    ) -> anyhow::Result<T> {
        loop {
            let msg = self
                .recv()
                .await?
                .ok_or_else(|| anyhow!("connection closed while waiting for {what}"))?;
            if let Some(v) = pick(&msg) {
                return Ok(v);
            }
            self.handle_background(msg).await?;
        }
    }

    /// Handles a message that needs no state change beyond liveness and ports.
    async fn handle_background(&mut self, msg: OfpMessage) -> anyhow::Result<bool> {
        match msg.body {
            Message::EchoRequest(data) => self.send(msg.xid, Message::EchoReply(data)).await?,
            Message::Error(e) => tracing::warn!(
                dpid = self.dpid_str(),
                err_type = e.err_type,
                code = e.code,
                xid = msg.xid,
                "switch reported an error"
            ),
            Message::PortStatus(ps) => {
                if ps.reason == 1 {
                    self.ports.remove(&ps.desc.port_no);
                } else {
                    self.ports.insert(ps.desc.port_no, ps.desc);
                }
                return Ok(true);
            }
            _ => {}
        }
        Ok(false)
    }

    async fn handshake(&mut self) -> anyhow::Result<()> {
        self.send(
            0,
            Message::Hello {
                version_bitmap: Some(vec![OF13_BIT]),
            },
        )
        .await?;
        let peer_hello = loop {
            let Some(len) =
                l2sm_ofp::message_len(&self.buf).map_err(|e| anyhow!("bad framing: {e}"))?
            else {
                self.read_more().await?;
                continue;
            };
            let header = l2sm_ofp::peek_header(&self.buf).ok_or_else(|| anyhow!("short header"))?;
            // Refuse early: a peer that does not open with HELLO is not an OpenFlow switch.
            if header.msg_type != 0 {
                bail!("expected HELLO, got message type {}", header.msg_type);
            }
            if self.buf.len() < len {
                self.read_more().await?;
                continue;
            }
            let frame: Vec<u8> = self.buf.drain(..len).collect();
            let msg = l2sm_ofp::decode(&frame).map_err(|e| anyhow!("undecodable HELLO: {e}"))?;
            break (header.version, msg);
        };
        let (version, msg) = peer_hello;
        let bitmap = match msg.body {
            Message::Hello { version_bitmap } => version_bitmap,
            _ => None,
        };
        let supports_13 = match bitmap {
            Some(words) => words.first().is_some_and(|w| w & OF13_BIT != 0),
            None => version >= l2sm_ofp::OFP_VERSION,
        };
        if !supports_13 {
            let text = b"only OpenFlow 1.3 (wire version 0x04) is supported".to_vec();
            let err = l2sm_ofp::ErrorMsg {
                err_type: 0,
                code: 0,
                data: text,
            };
            let _ = self.send(msg.xid, Message::Error(err)).await;
            bail!("peer does not speak OpenFlow 1.3 (hello version {version})");
        }
        let xid = self.xid();
        self.send(xid, Message::FeaturesRequest).await?;
        let features: FeaturesReply = self
            .expect("FEATURES_REPLY", |m| match &m.body {
                Message::FeaturesReply(f) => Some(f.clone()),
                _ => None,
            })
            .await?;
        self.dpid = Some(features.datapath_id);
        for reply in self.multipart(MultipartRequestBody::PortDesc).await? {
            if let MultipartReplyBody::PortDesc(ports) = reply {
                for p in ports {
                    self.ports.insert(p.port_no, p);
                }
            }
        }
        Ok(())
    }

    /// Sends a multipart request and collects every part of its reply.
    async fn multipart(
        &mut self,
        body: MultipartRequestBody,
    ) -> anyhow::Result<Vec<MultipartReplyBody>> {
        let xid = self.xid();
        let what = format!("{body:?} reply");
        self.send(
            xid,
            Message::MultipartRequest(MultipartRequest { flags: 0, body }),
        )
        .await?;
        let mut parts = Vec::new();
        loop {
            let (more, part) = self
                .expect(&what, |m| match &m.body {
                    Message::MultipartReply(r) if m.xid == xid => Some((
                        r.flags & l2sm_ofp::MULTIPART_REPLY_MORE != 0,
                        r.body.clone(),
                    )),
                    _ => None,
                })
                .await?;
            parts.push(part);
            if !more {
                return Ok(parts);
            }
        }
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
        Ok(current)
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        if !self.fill().await? {
            bail!("connection closed during handshake");
        }
        self.last_heard = Instant::now();
        Ok(())
    }

    /// Inter-switch links of this switch: VXLAN ports by name, trunks by number.
    fn links(&self) -> BTreeMap<u32, LinkKind> {
        self.ports
            .values()
            .filter_map(|p| {
                if ids::is_tunnel_port_name(&p.name) {
                    Some((p.port_no, LinkKind::Tunnel))
                } else if ids::is_trunk_port(p.port_no) {
                    Some((p.port_no, LinkKind::Trunk))
                } else {
                    None
                }
            })
            .collect()
    }

    /// Brings the switch in line with the model, sending only what changed.
    async fn sync(&mut self) -> anyhow::Result<()> {
        let Some(dpid) = self.dpid else { return Ok(()) };
        let Some(view) = self.shared.view_of(dpid, self.links()) else {
            return Ok(());
        };
        if self.installed_view.as_ref() == Some(&view) {
            return Ok(());
        }
        let desired = compile(&view);
        let current = match self.read_state.take() {
            Some(state) => state,
            None => self
                .installed_view
                .as_deref()
                .map(compile)
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
        for m in &msgs {
            tracing::trace!(dpid = self.dpid_str(), message = ?m, "switch change");
        }
        let count = msgs.len();
        if count > 0 {
            self.send_batch(msgs).await?;
        }
        tracing::debug!(dpid = self.dpid_str(), messages = count, "switch synced");
        self.counts = (desired.flows.len(), desired.groups.len());
        self.installed_view = Some(view);
        self.publish();
        Ok(())
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
                    live: p.state & l2sm_ofp::OFPPS_LINK_DOWN == 0
                        && p.config & l2sm_ofp::OFPPC_PORT_DOWN == 0,
                })
                .collect(),
            flows: self.counts.0,
            groups: self.counts.1,
            session: self.session_id,
        };
        self.shared.switches().insert(dpid, status);
    }

    fn unregister(&self) {
        if let Some(dpid) = self.dpid {
            let mut switches = self.shared.switches();
            if switches
                .get(&dpid)
                .is_some_and(|s| s.session == self.session_id)
            {
                switches.remove(&dpid);
                drop(switches);
                self.shared.switch_gone(dpid);
            }
        }
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake())
            .await
            .map_err(|_| anyhow!("handshake timed out"))??;
        tracing::info!(peer = %self.peer, dpid = self.dpid_str(), ports = self.ports.len(), "switch connected");
        // A reconnecting switch still holds what it had: read it and change only what differs,
        // so established traffic and learned MACs survive a controller restart.
        let state = self.read_switch_state().await?;
        self.counts = (state.flows.len(), state.groups.len());
        self.read_state = Some(state);
        // The reads may have grown the buffer to the largest reply: give that back.
        self.buf.shrink_to(4096);
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
        let mut echo_timer = tokio::time::interval(ECHO_INTERVAL);
        echo_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = self.recv() => {
                    let Some(msg) = msg? else { return Ok(()) };
                    if self.handle_background(msg).await? {
                        // Ports changed: other switches' trees may depend on this one's links.
                        self.publish();
                        self.shared.bump();
                        self.sync().await?;
                    }
                }
                changed = generation.changed() => {
                    if changed.is_err() { return Ok(()) }
                    generation.borrow_and_update();
                    self.sync().await?;
                }
                _ = echo_timer.tick() => {
                    let silent = self.last_heard.elapsed();
                    if silent > DEAD_AFTER {
                        bail!("no message from the switch for {}s", silent.as_secs());
                    }
                    if silent >= ECHO_INTERVAL {
                        let xid = self.xid();
                        self.send(xid, Message::EchoRequest(Vec::new())).await?;
                    }
                }
            }
        }
    }
}
