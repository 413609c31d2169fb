//! One task per switch connection: handshake, initial programming, then keep the switch in
//! line with the model by sending only differences. Anything malformed closes just that
//! connection, with the reason logged.

use super::{PortStatusView, Shared, SwitchStatus};
use anyhow::{anyhow, bail, Context as _};
use l2sm_ofp::{
    FeaturesReply, Message, MultipartReplyBody, MultipartRequest, MultipartRequestBody, OfpMessage,
    PortDesc,
};
use l2sm_pipeline::{compile, diff, ids, SwitchPipeline, SwitchView};
use std::collections::{BTreeMap, BTreeSet};
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
    installed: SwitchPipeline,
    installed_view: SwitchView,
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
            installed: SwitchPipeline::default(),
            installed_view: SwitchView::default(),
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
        let xid = self.xid();
        self.send(
            xid,
            Message::MultipartRequest(MultipartRequest {
                flags: 0,
                body: MultipartRequestBody::PortDesc,
            }),
        )
        .await?;
        loop {
            let (more, ports) = self
                .expect("PORT_DESC reply", |m| match &m.body {
                    Message::MultipartReply(r) if m.xid == xid => match &r.body {
                        MultipartReplyBody::PortDesc(p) => {
                            Some((r.flags & l2sm_ofp::MULTIPART_REPLY_MORE != 0, p.clone()))
                        }
                        _ => None,
                    },
                    _ => None,
                })
                .await?;
            for p in ports {
                self.ports.insert(p.port_no, p);
            }
            if !more {
                break;
            }
        }
        Ok(())
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        if !self.fill().await? {
            bail!("connection closed during handshake");
        }
        self.last_heard = Instant::now();
        Ok(())
    }

    fn tunnel_ports(&self) -> BTreeSet<u32> {
        self.ports
            .values()
            .filter(|p| ids::is_tunnel_port_name(&p.name))
            .map(|p| p.port_no)
            .collect()
    }

    /// Brings the switch in line with the model, sending only what changed.
    async fn sync(&mut self) -> anyhow::Result<()> {
        let Some(dpid) = self.dpid else { return Ok(()) };
        let view = self.shared.model().switch_view(dpid, self.tunnel_ports());
        if view == self.installed_view && !self.installed.flows.is_empty() {
            return Ok(());
        }
        let desired = compile(&view);
        let mut msgs = diff(&self.installed, &desired);
        // A port that left its network (or moved to another one) must not keep MAC entries
        // that steer its old network's frames to it.
        let vni_of = |v: &SwitchView| -> BTreeMap<u32, u32> {
            v.networks
                .iter()
                .flat_map(|(vni, ports)| ports.iter().map(move |p| (*p, *vni)))
                .collect()
        };
        let (old, new) = (vni_of(&self.installed_view), vni_of(&view));
        for (port, vni) in &old {
            if new.get(port) != Some(vni) {
                msgs.push(l2sm_pipeline::flush_learned(*port));
            }
        }
        let count = msgs.len();
        if count > 0 {
            self.send_batch(msgs).await?;
        }
        tracing::debug!(dpid = self.dpid_str(), messages = count, "switch synced");
        self.installed = desired;
        self.installed_view = view;
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
                    } else {
                        "port"
                    }
                    .into(),
                })
                .collect(),
            flows: self.installed.flows.len(),
            groups: self.installed.groups.len(),
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
            }
        }
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake())
            .await
            .map_err(|_| anyhow!("handshake timed out"))??;
        tracing::info!(peer = %self.peer, dpid = self.dpid_str(), ports = self.ports.len(), "switch connected");
        // We do not know what a (re)connecting switch holds: start from a clean slate.
        self.send_batch(l2sm_pipeline::clear_all()).await?;
        let mut generation = self.shared.subscribe();
        generation.borrow_and_update();
        self.sync().await?;
        let mut echo_timer = tokio::time::interval(ECHO_INTERVAL);
        echo_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = self.recv() => {
                    let Some(msg) = msg? else { return Ok(()) };
                    if self.handle_background(msg).await? {
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
