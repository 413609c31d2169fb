//! Synthetic OpenFlow 1.3 switches: each is one TCP connection to the controller that
//! behaves like Open vSwitch does for what the controller uses (HELLO, FEATURES, port
//! description, flow and group-description statistics, barriers, echo, role and config
//! requests), keeps a flow and group table applying every FLOW_MOD and GROUP_MOD it receives,
//! and notes the moment its table first holds everything it should (checked at each barrier:
//! the controller closes every batch with one). A PACKET_OUT to a tunnel port comes out as a
//! PACKET_IN at the other end of the tunnel, so link probes work as on real switches.

use anyhow::{anyhow, bail, Context as _};
use l2sm_ofp::{
    AggregateStats, DescStats, FeaturesReply, FlowMod, FlowModCommand, FlowStats, GroupDescStats,
    GroupModCommand, GroupType, Message, MultipartReply, MultipartReplyBody, MultipartRequestBody,
    OfpMessage, PortDesc,
};
use l2sm_pipeline::{FlowEntry, FlowKey, GroupEntry, SwitchPipeline};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Flow stats and group descriptions per reply part (OVS splits replies too).
const PER_PART: usize = 100;

/// Counters shared by every synthetic switch.
#[derive(Debug, Default)]
pub struct Counters {
    /// FLOW_MOD messages received.
    pub flow_mods: AtomicU64,
    /// GROUP_MOD messages received.
    pub group_mods: AtomicU64,
    /// METER_MOD messages received.
    pub meter_mods: AtomicU64,
    /// FLOW_MODs that delete learned MAC entries (table 2, non-strict delete): sent when a
    /// network's tree changes, e.g. while switches join one by one; not part of the pipeline,
    /// so not in `flow_mods`.
    pub learned_flushes: AtomicU64,
    /// Other controller-to-switch messages (requests, barriers, echo, packet-outs).
    pub other: AtomicU64,
    /// Errors the switches had to send back (unknown requests, bad mods).
    pub errors_sent: AtomicU64,
    /// Connections made (reconnections included).
    pub connections: AtomicU64,
    /// Switches whose table holds everything expected.
    pub converged: AtomicU64,
    /// OpenFlow bytes received from the controller.
    pub bytes_from_controller: AtomicU64,
    /// OpenFlow bytes sent to the controller.
    pub bytes_to_controller: AtomicU64,
}

/// Frames a switch must emit as PACKET_IN: (in_port, data).
type PacketIn = (u32, Vec<u8>);

/// Wiring between synthetic switches: (switch, port) -> (switch, port).
#[derive(Debug, Default)]
pub struct Wiring {
    peers: HashMap<(usize, u32), (usize, u32)>,
    inboxes: Mutex<Vec<Option<mpsc::UnboundedSender<PacketIn>>>>,
}

impl Wiring {
    /// Wiring for `links` (switch index, port, switch index, port) among `n` switches.
    pub fn new(n: usize, links: &[(usize, u32, usize, u32)]) -> Wiring {
        let mut peers = HashMap::new();
        for &(a, pa, b, pb) in links {
            peers.insert((a, pa), (b, pb));
            peers.insert((b, pb), (a, pa));
        }
        Wiring {
            peers,
            inboxes: Mutex::new(vec![None; n]),
        }
    }

    fn deliver(&self, from: (usize, u32), data: Vec<u8>) {
        let Some(&(to, port)) = self.peers.get(&from) else {
            return;
        };
        let inboxes = self.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(tx)) = inboxes.get(to) {
            let _ = tx.send((port, data));
        }
    }
}

/// What one synthetic switch is.
#[derive(Debug, Clone)]
pub struct SimSwitch {
    /// Index in the cluster.
    pub index: usize,
    /// Datapath id.
    pub dpid: u64,
    /// Ports it reports.
    pub ports: Vec<PortDesc>,
    /// What it must end up holding.
    pub expected: Arc<SwitchPipeline>,
}

/// Table of one switch, kept across reconnections (like OVS keeps its flows).
#[derive(Debug, Default)]
struct Table {
    flows: BTreeMap<FlowKey, FlowEntry>,
    groups: BTreeMap<u32, GroupEntry>,
    meters: BTreeMap<u32, l2sm_ofp::MeterMod>,
}

impl Table {
    fn holds(&self, expected: &SwitchPipeline) -> bool {
        expected.groups.len() <= self.groups.len()
            && expected.flows.len() <= self.flows.len()
            && expected
                .groups
                .iter()
                .all(|(id, g)| self.groups.get(id) == Some(g))
            && expected
                .flows
                .iter()
                .all(|(k, f)| self.flows.get(k) == Some(f))
    }

    fn apply_flow_mod(&mut self, fm: FlowMod) {
        let entry = FlowEntry {
            table: fm.table_id,
            priority: fm.priority,
            cookie: fm.cookie,
            r#match: fm.r#match,
            instructions: fm.instructions,
        };
        match fm.command {
            FlowModCommand::Add | FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                self.flows.insert(entry.key(), entry);
            }
            FlowModCommand::DeleteStrict => {
                self.flows.remove(&entry.key());
            }
            FlowModCommand::Delete => {
                // Non-strict delete: every flow of the table (or all tables) whose cookie
                // matches under the mask and whose match contains the given fields.
                self.flows.retain(|_, f| {
                    let table_hit = fm.table_id == l2sm_ofp::TABLE_ALL || f.table == fm.table_id;
                    let cookie_hit = f.cookie & fm.cookie_mask == fm.cookie & fm.cookie_mask;
                    let match_hit = entry
                        .r#match
                        .fields
                        .iter()
                        .all(|x| f.r#match.fields.contains(x));
                    !(table_hit && cookie_hit && match_hit)
                });
            }
        }
    }

    fn apply_group_mod(&mut self, gm: l2sm_ofp::GroupMod) {
        match gm.command {
            GroupModCommand::Delete => {
                if gm.group_id == l2sm_ofp::group::ALL {
                    self.groups.clear();
                } else {
                    self.groups.remove(&gm.group_id);
                }
            }
            _ => {
                self.groups.insert(
                    gm.group_id,
                    GroupEntry {
                        group_id: gm.group_id,
                        buckets: gm.buckets.into_iter().map(|b| b.actions).collect(),
                    },
                );
            }
        }
    }
}

/// Runs one synthetic switch until `stop` is set: connects (retrying until the controller
/// accepts), serves the connection, reconnects when it drops. Returns when it first held its
/// expected state, if it did.
pub async fn run_switch(
    sw: SimSwitch,
    controller: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    counters: Arc<Counters>,
    wiring: Arc<Wiring>,
    stop: Arc<AtomicBool>,
    converged_at: Arc<Mutex<Vec<Option<Instant>>>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    if let Some(slot) = wiring
        .inboxes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(sw.index)
    {
        *slot = Some(tx);
    }
    let mut table = Table::default();
    let mut done = false;
    while !stop.load(Ordering::Relaxed) {
        let Ok(tcp) = tokio::net::TcpStream::connect(controller).await else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn SwitchStream> = match &tls {
            None => Box::new(tcp),
            Some(config) => {
                let server = controller.ip().to_string();
                match l2sm_controller::switch_tls::connect(config.clone(), &server, tcp).await {
                    Ok(s) => Box::new(s),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    }
                }
            }
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let mut conn = Conn {
            sw: &sw,
            stream,
            table: &mut table,
            counters: &counters,
            wiring: &wiring,
            done: &mut done,
            converged_at: &converged_at,
        };
        // A dropped connection is what a controller restart looks like: reconnect.
        let _ = conn.serve(&mut rx, &stop).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A switch's connection: plain TCP or TLS.
trait SwitchStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> SwitchStream for T {}

struct Conn<'a> {
    sw: &'a SimSwitch,
    stream: Box<dyn SwitchStream>,
    table: &'a mut Table,
    counters: &'a Counters,
    wiring: &'a Wiring,
    done: &'a mut bool,
    converged_at: &'a Mutex<Vec<Option<Instant>>>,
}

impl Conn<'_> {
    async fn serve(
        &mut self,
        inbox: &mut mpsc::UnboundedReceiver<PacketIn>,
        stop: &AtomicBool,
    ) -> anyhow::Result<()> {
        let mut out = Vec::new();
        push(
            &mut out,
            0,
            Message::Hello {
                version_bitmap: Some(vec![1 << l2sm_ofp::OFP_VERSION]),
            },
        )?;
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                    n = self.stream.read_buf(&mut buf) => {
                        let n = n.context("read failed")?;
                        if n == 0 {
                            return Ok(());
                        }
                        self.counters.bytes_from_controller.fetch_add(n as u64, Ordering::Relaxed);
                        let mut out = Vec::new();
                        let mut start = 0;
                        while let Some(len) = l2sm_ofp::message_len(&buf[start..])
                            .map_err(|e| anyhow!("bad framing from the controller: {e}"))?
                        {
                            if buf.len() - start < len {
                                break;
                            }
                            let msg = l2sm_ofp::decode(&buf[start..start + len])
                                .map_err(|e| anyhow!("undecodable message from the controller: {e}"))?;
                            start += len;
                            self.handle(msg, &mut out)?;
                        }
                        buf.drain(..start);
                        if !out.is_empty() {
                            self.counters.bytes_to_controller.fetch_add(out.len() as u64, Ordering::Relaxed);
                            self.stream.write_all(&out).await?;
            self.stream.flush().await?;
                        }
                    }
                    Some((port, data)) = inbox.recv() => {
                        let mut out = Vec::new();
                        push(&mut out, 0, packet_in(port, data))?;
                        self.counters.bytes_to_controller.fetch_add(out.len() as u64, Ordering::Relaxed);
                        self.stream.write_all(&out).await?;
            self.stream.flush().await?;
                    }
                    _ = tick.tick() => {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                    }
                }
        }
    }

    fn handle(&mut self, msg: OfpMessage, out: &mut Vec<u8>) -> anyhow::Result<()> {
        let xid = msg.xid;
        let c = self.counters;
        match msg.body {
            Message::FlowMod(fm) => {
                let flush = fm.command == FlowModCommand::Delete
                    && fm.table_id == l2sm_pipeline::table::UNICAST;
                if flush {
                    c.learned_flushes.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.flow_mods.fetch_add(1, Ordering::Relaxed);
                }
                self.table.apply_flow_mod(fm);
                return Ok(());
            }
            Message::GroupMod(gm) => {
                c.group_mods.fetch_add(1, Ordering::Relaxed);
                self.table.apply_group_mod(gm);
                return Ok(());
            }
            Message::MeterMod(mm) => {
                c.meter_mods.fetch_add(1, Ordering::Relaxed);
                if mm.command == l2sm_ofp::MeterModCommand::Delete {
                    self.table.meters.remove(&mm.meter_id);
                } else {
                    self.table.meters.insert(mm.meter_id, mm);
                }
                return Ok(());
            }
            _ => {
                c.other.fetch_add(1, Ordering::Relaxed);
            }
        }
        match msg.body {
            Message::Hello { .. } | Message::EchoReply(_) | Message::SetConfig(_) => {}
            Message::Error(e) => bail!("controller sent an error: {}", e.describe()),
            Message::EchoRequest(data) => push(out, xid, Message::EchoReply(data))?,
            Message::FeaturesRequest => push(
                out,
                xid,
                Message::FeaturesReply(FeaturesReply {
                    datapath_id: self.sw.dpid,
                    n_buffers: 0,
                    n_tables: 254,
                    auxiliary_id: 0,
                    capabilities: 0x4f,
                }),
            )?,
            Message::GetConfigRequest => push(
                out,
                xid,
                Message::GetConfigReply(l2sm_ofp::SwitchConfig {
                    flags: 0,
                    miss_send_len: 128,
                }),
            )?,
            Message::RoleRequest(r) => push(out, xid, Message::RoleReply(r))?,
            Message::BarrierRequest => {
                push(out, xid, Message::BarrierReply)?;
                if !*self.done && self.table.holds(&self.sw.expected) {
                    *self.done = true;
                    let mut at = self.converged_at.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(slot) = at.get_mut(self.sw.index) {
                        *slot = Some(Instant::now());
                    }
                    c.converged.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::PacketOut(po) => {
                for a in &po.actions {
                    if let l2sm_ofp::Action::Output { port, .. } = a {
                        self.wiring.deliver((self.sw.index, *port), po.data.clone());
                    }
                }
            }
            Message::MultipartRequest(req) => {
                let parts = self.multipart(req.body);
                let last = parts.len().saturating_sub(1);
                for (i, body) in parts.into_iter().enumerate() {
                    let flags = if i < last {
                        l2sm_ofp::MULTIPART_REPLY_MORE
                    } else {
                        0
                    };
                    push(
                        out,
                        xid,
                        Message::MultipartReply(MultipartReply { flags, body }),
                    )?;
                }
            }
            _ => {
                c.errors_sent.fetch_add(1, Ordering::Relaxed);
                // OFPET_BAD_REQUEST / OFPBRC_BAD_TYPE, as OVS answers what it does not know.
                push(
                    out,
                    xid,
                    Message::Error(l2sm_ofp::ErrorMsg {
                        err_type: 1,
                        code: 1,
                        data: Vec::new(),
                    }),
                )?;
            }
        }
        Ok(())
    }

    fn multipart(&self, body: MultipartRequestBody) -> Vec<MultipartReplyBody> {
        match body {
            MultipartRequestBody::Desc => vec![MultipartReplyBody::Desc(DescStats {
                mfr_desc: "L2S-M bench".into(),
                hw_desc: "synthetic switch".into(),
                sw_desc: "l2sm-bench".into(),
                serial_num: "None".into(),
                dp_desc: format!("switch {}", self.sw.index),
            })],
            MultipartRequestBody::PortDesc => {
                vec![MultipartReplyBody::PortDesc(self.sw.ports.clone())]
            }
            MultipartRequestBody::Flow(req) => {
                let stats: Vec<FlowStats> = self
                    .table
                    .flows
                    .values()
                    .filter(|f| req.table_id == l2sm_ofp::TABLE_ALL || f.table == req.table_id)
                    .map(|f| FlowStats {
                        table_id: f.table,
                        duration_sec: 1,
                        duration_nsec: 0,
                        priority: f.priority,
                        idle_timeout: 0,
                        hard_timeout: 0,
                        flags: 0,
                        cookie: f.cookie,
                        packet_count: 0,
                        byte_count: 0,
                        r#match: f.r#match.clone(),
                        instructions: f.instructions.clone(),
                    })
                    .collect();
                chunks(stats, MultipartReplyBody::Flow)
            }
            MultipartRequestBody::MeterFeatures => {
                vec![MultipartReplyBody::MeterFeatures(l2sm_ofp::MeterFeatures {
                    max_meter: 1 << 18,
                    band_types: 1 << 1,
                    capabilities: u32::from(
                        l2sm_ofp::OFPMF_PKTPS | l2sm_ofp::OFPMF_BURST | l2sm_ofp::OFPMF_STATS,
                    ),
                    max_bands: 1,
                    max_color: 0,
                })]
            }
            MultipartRequestBody::MeterConfig { .. } => {
                let meters: Vec<l2sm_ofp::MeterConfig> = self
                    .table
                    .meters
                    .values()
                    .map(|m| l2sm_ofp::MeterConfig {
                        flags: m.flags,
                        meter_id: m.meter_id,
                        bands: m.bands.clone(),
                    })
                    .collect();
                chunks(meters, MultipartReplyBody::MeterConfig)
            }
            MultipartRequestBody::Aggregate(_) => {
                vec![MultipartReplyBody::Aggregate(AggregateStats {
                    packet_count: 0,
                    byte_count: 0,
                    flow_count: self.table.flows.len() as u32,
                })]
            }
            MultipartRequestBody::GroupDesc => {
                let groups: Vec<GroupDescStats> = self
                    .table
                    .groups
                    .values()
                    .map(|g| GroupDescStats {
                        group_type: GroupType::All,
                        group_id: g.group_id,
                        buckets: g
                            .buckets
                            .iter()
                            .map(|a| l2sm_ofp::Bucket::all(a.clone()))
                            .collect(),
                    })
                    .collect();
                chunks(groups, MultipartReplyBody::GroupDesc)
            }
            // Link health (docs/monitoring.md): the controller reads every port's counters.
            MultipartRequestBody::PortStats { port_no } => {
                let stats: Vec<l2sm_ofp::PortStats> = self
                    .sw
                    .ports
                    .iter()
                    .filter(|p| port_no == l2sm_ofp::port::ANY || p.port_no == port_no)
                    .map(|p| l2sm_ofp::PortStats {
                        port_no: p.port_no,
                        rx_packets: 0,
                        tx_packets: 0,
                        rx_bytes: 0,
                        tx_bytes: 0,
                        rx_dropped: 0,
                        tx_dropped: 0,
                        rx_errors: 0,
                        tx_errors: 0,
                        rx_frame_err: 0,
                        rx_over_err: 0,
                        rx_crc_err: 0,
                        collisions: 0,
                        duration_sec: 1,
                        duration_nsec: 0,
                    })
                    .collect();
                chunks(stats, MultipartReplyBody::PortStats)
            }
            _ => vec![MultipartReplyBody::Other {
                mp_type: 0xfffe,
                body: Vec::new(),
            }],
        }
    }
}

fn chunks<T: Clone>(
    items: Vec<T>,
    wrap: fn(Vec<T>) -> MultipartReplyBody,
) -> Vec<MultipartReplyBody> {
    if items.is_empty() {
        return vec![wrap(Vec::new())];
    }
    items.chunks(PER_PART).map(|c| wrap(c.to_vec())).collect()
}

fn packet_in(port: u32, data: Vec<u8>) -> Message {
    Message::PacketIn(l2sm_ofp::PacketIn {
        buffer_id: l2sm_ofp::NO_BUFFER,
        total_len: data.len().min(usize::from(u16::MAX)) as u16,
        reason: 1, // OFPR_ACTION
        table_id: 0,
        cookie: u64::MAX,
        r#match: l2sm_ofp::Match::any().with(l2sm_ofp::OxmField::InPort(port)),
        data,
    })
}

fn push(out: &mut Vec<u8>, xid: u32, body: Message) -> anyhow::Result<()> {
    l2sm_ofp::encode_into(&OfpMessage { xid, body }, out)
        .map_err(|e| anyhow!("cannot encode a switch message: {e}"))
}
