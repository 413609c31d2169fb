//! The L2S-M pipeline compiler: a pure function from "what this switch carries" to the exact
//! OpenFlow flows and groups it must hold, plus the diff between two such states.
//!
//! ```text
//!  table 0 CLASSIFY  eth_type=LLDP                        -> controller meter, controller (link probes)
//!                    in_port=<member of n>                -> [mirror copy,] tunnel_id:=VNI(n), goto 1
//!                      (with port security: only from its MAC/addresses, see [`port_security`])
//!                    in_port=<tunnel>, tunnel_id=MIRROR(n) -> mirror port, or on toward it
//!                    in_port=<tunnel>, tunnel_id=VNI(n)    -> reg0:=1 (from a link), goto 1
//!                    in_port=<trunk>, vlan=VLAN(n)         -> pop vlan, tunnel_id:=VNI(n), reg0:=1, goto 1
//!                    anything else                        -> drop
//!  table 1 LEARN     DNS of a network, from its local pods -> DNS meter, controller (see [`dns`])
//!                    multicast source -> drop
//!                    per ingress port: learn "(tun_id, eth_dst=this eth_src) -> reg1:=in_port"
//!                    into table 2 (cookie names the port), resubmit(,2), goto 3;
//!                    pod ports: at most mac_limit entries, reg2[0]:=learned? (learn2)
//!  table 2 UNICAST   learned entries (they only load reg1)
//!  table 3 FORWARD   in_port=<pod port>, reg2[0]=0        -> drop, counted (source over the cap)
//!                    reg1=<port>                         -> output there (trunks: push the VLAN)
//!                    tunnel_id=VNI, in_port=<pod port>   -> meter of the port, flood group
//!                    tunnel_id=VNI (unknown destination) -> flood group of the network
//! ```
//!
//! Abuse limits (MAC cap, flood meters, controller meter, meter ids) are described in
//! [`limits`].
//!
//! Isolation: a frame only enters table 1 with the VNI of the network its port (or its link
//! and tag) belongs to, and every later lookup is keyed by that VNI.
//!
//! Flooding per network comes in two modes. **Mesh** (the switches carrying the network are
//! all directly linked): a frame from a link is delivered to local members only (split
//! horizon); entries learned from a link also require `reg0=0`, so known unicast obeys split
//! horizon too. **Tree** (partial mesh): the controller hands over only the links of one
//! spanning tree of the network; frames go on along the tree, which has no loop, and OVS never
//! sends a frame back out of its ingress port.
//!
//! Mirroring: a frame entering from a member port of a mirrored network is copied once, right
//! there in table 0, either straight to the mirror port (same switch) or into the link towards
//! the mirror's switch with the network's mirror VNI (`VNI | MIRROR_VNI_BIT`). Copies travel
//! on their own VNI, so no learning or flooding ever sees them; tree transit switches pass them
//! on towards the mirror, the mirror's switch delivers them to the mirror port. The mirror port
//! itself is no member: frames it sends hit the table-miss drop.
//!
//! Egress goes through a register (reg1) rather than straight from the learned entry, so
//! leaving through a trunk can push the network's VLAN tag, and learned entries of one port
//! can be flushed by cookie.

#![warn(clippy::unwrap_used)] // input paths answer with errors; tests may unwrap

pub mod dns;
pub mod ids;
pub mod limits;
pub mod lldp;
pub mod plan;
pub mod port_security;

pub use port_security::PortBinding;

use l2sm_ofp::{
    Action, Bucket, FlowMod, FlowModCommand, GroupMod, GroupModCommand, GroupType, Instruction,
    LearnSpec, Match, Message, MeterModCommand, NxLearn, NxmFieldRef, OxmField,
};
use std::collections::{BTreeMap, BTreeSet};

/// Table numbers of the pipeline.
pub mod table {
    /// Port/link classification into a network.
    pub const CLASSIFY: u8 = 0;
    /// MAC learning.
    pub const LEARN: u8 = 1;
    /// Learned unicast entries.
    pub const UNICAST: u8 = 2;
    /// Egress: known unicast, or flooding.
    pub const FORWARD: u8 = 3;
}

/// Cookies: the top bits say who owns a flow, so foreign or learned state can be told apart.
pub mod cookie {
    /// Network-independent flows (table-miss rules, learn rules of members).
    pub const STATIC: u64 = 0x4c32_0000_0000_0000;
    /// Flows that belong to one network: `NETWORK | vni`.
    pub const NETWORK: u64 = 0x4c32_0001_0000_0000;
    /// Entries created by `learn` in the unicast table: `LEARNED | ingress port`.
    pub const LEARNED: u64 = 0x4c32_0002_0000_0000;
    /// Drop flows of a port with port security: `PORT_SECURITY | port` (their statistics
    /// count the port's dropped frames).
    pub const PORT_SECURITY: u64 = 0x4c32_0050_0000_0000;
    /// Drop flows counting a pod port's frames whose source MAC is over the learn cap:
    /// `EXCESS | port` (see [`crate::limits`]).
    pub const EXCESS: u64 = 0x4c32_0003_0000_0000;
    /// Mask selecting the owner bits of a cookie.
    pub const OWNER_MASK: u64 = 0xffff_ffff_0000_0000;
}

/// Seconds a learned MAC stays without traffic.
pub const LEARN_IDLE_TIMEOUT: u16 = 300;
/// Priority of entries learned from local ports (wins over a stale link entry after a move).
pub const LEARNED_LOCAL_PRIORITY: u16 = 110;
/// Priority of entries learned from links.
pub const LEARNED_LINK_PRIORITY: u16 = 100;
/// Ethertype of 802.1Q tags pushed on trunks.
pub const ETH_TYPE_VLAN: u16 = 0x8100;
/// The "tag present" bit of OXM_OF_VLAN_VID.
const VID_PRESENT: u16 = 0x1000;
/// `vlan_vid` of a frame without an 802.1Q header.
const VID_NONE: u16 = 0x0000;

/// Group id of the flood group used for frames from local ports of network `vni` (and for
/// every frame in tree mode).
pub fn flood_local_group(vni: u32) -> u32 {
    vni << 1
}

/// Group id of the flood group used for frames that arrived from a link (mesh mode).
pub fn flood_remote_group(vni: u32) -> u32 {
    (vni << 1) | 1
}

/// Largest network VNI: 23 bits, so the mirror VNI (`vni | MIRROR_VNI_BIT`) still fits the 24
/// bits of VXLAN; it also keeps group ids below `OFPG_MAX`.
pub const MAX_VNI: u32 = (1 << 23) - 1;

/// Set in the VNI of mirror copies.
pub const MIRROR_VNI_BIT: u32 = 1 << 23;

/// The VNI mirror copies of network `vni` travel with (`None` for VNIs above [`MAX_VNI`],
/// which the controller never allocates).
pub fn mirror_vni(vni: u32) -> Option<u32> {
    (vni <= MAX_VNI).then_some(vni | MIRROR_VNI_BIT)
}

/// Ethertype of LLDP, the link probes the controller sends and receives.
pub const ETH_TYPE_LLDP: u16 = 0x88cc;

/// Priority of the LLDP punt flow: above every other table-0 flow.
pub const LLDP_PRIORITY: u16 = 1000;

/// What kind of inter-switch link a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkKind {
    /// VXLAN tunnel: the network rides in `tunnel_id`.
    Tunnel,
    /// Plain port: the network rides as an 802.1Q tag.
    Trunk,
}

/// How a network floods on a switch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FloodMode {
    /// Every carrying switch is linked to every other: split horizon.
    #[default]
    Mesh,
    /// Only the links of one spanning tree are used; frames go on along the tree.
    Tree,
}

/// One network as seen by one switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkView {
    /// Local member ports.
    pub members: BTreeSet<u32>,
    /// Link ports this network's frames may use on this switch.
    pub link_ports: BTreeSet<u32>,
    /// Flooding mode.
    pub mode: FloodMode,
    /// 802.1Q id used on trunk links (1..=4094), if the network may cross trunks.
    pub vlan: Option<u16>,
    /// Where copies for the network's mirror port go from this switch, if it has one.
    pub mirror: Option<MirrorView>,
    /// Local members with port security, and what each may send (`None`: not known yet, the
    /// port forwards nothing). Members not listed are not checked.
    pub secured: BTreeMap<u32, Option<PortBinding>>,
    /// MAC cap and flood meter of the network's pod ports.
    pub limits: limits::Limits,
    /// The network's DNS address: its local pods' ARP requests for it and UDP queries to
    /// port 53 of it go to the controller (see [`dns`]).
    pub dns: Option<std::net::Ipv4Addr>,
    /// The network's IPv6 DNS address: neighbour solicitations for it and UDP queries to
    /// port 53 of it go to the controller.
    pub dns6: Option<std::net::Ipv6Addr>,
}

/// The mirror port of a network, as seen by one switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorView {
    /// The mirror port, when it is on this switch.
    pub port: Option<u32>,
    /// Tunnel ports leading towards the mirror's switch: copies of frames entering here go
    /// out there (one per port; a full mesh without a known topology uses every tunnel and
    /// only the mirror's switch accepts the copies). Trunks carry no copies.
    pub toward: BTreeSet<u32>,
}

/// What the compiler needs to know about one switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchView {
    /// Inter-switch link ports and their kind.
    pub links: BTreeMap<u32, LinkKind>,
    /// Networks this switch carries (members here, or a tree passing through), by VNI.
    pub networks: BTreeMap<u32, NetworkView>,
}

/// Why the compiler leaves a member or mirror port of a [`SwitchView`] out. Callers (the
/// controller's model) refuse such ports already; the compiler enforces it again so that
/// member, mirror and link ports are disjoint in every pipeline it emits, whatever it is given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewViolation {
    /// A member or mirror port outside the pod port range (trunk, tunnel or reserved numbers).
    #[error(
        "port {port} of network {vni} is not a pod port (1..{})",
        ids::FIRST_TRUNK_PORT
    )]
    NotPodPort {
        /// The network claiming the port.
        vni: u32,
        /// The port.
        port: u32,
    },
    /// A member or mirror port that is an inter-switch link of this switch.
    #[error("port {port} of network {vni} is an inter-switch link")]
    LinkPort {
        /// The network claiming the port.
        vni: u32,
        /// The port.
        port: u32,
    },
    /// A port claimed more than once: a member of several networks, or a member and a mirror.
    #[error("port {port} is claimed by networks {vnis:?}")]
    SharedPort {
        /// The port.
        port: u32,
        /// Every network claiming it, once per claim.
        vnis: Vec<u32>,
    },
}

impl SwitchView {
    /// Every member or mirror port the compiler leaves out, and why (empty for a sound view).
    pub fn violations(&self) -> Vec<ViewViolation> {
        let mut claims: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (&vni, net) in &self.networks {
            for &port in &net.members {
                claims.entry(port).or_default().push(vni);
            }
            if let Some(port) = net.mirror.as_ref().and_then(|m| m.port) {
                claims.entry(port).or_default().push(vni);
            }
        }
        let mut out = Vec::new();
        for (port, vnis) in claims {
            if !ids::is_pod_port(port) {
                out.extend(
                    vnis.iter()
                        .map(|&vni| ViewViolation::NotPodPort { vni, port }),
                );
            } else if self.links.contains_key(&port) {
                out.extend(
                    vnis.iter()
                        .map(|&vni| ViewViolation::LinkPort { vni, port }),
                );
            } else if vnis.len() > 1 {
                out.push(ViewViolation::SharedPort { port, vnis });
            }
        }
        out
    }

    /// The view without the ports of [`SwitchView::violations`]: a refused member is in no
    /// network, a network whose local mirror port is refused gets no copies on this switch.
    pub fn sanitized(&self) -> std::borrow::Cow<'_, SwitchView> {
        let bad: BTreeSet<u32> = self
            .violations()
            .iter()
            .map(|v| match v {
                ViewViolation::NotPodPort { port, .. }
                | ViewViolation::LinkPort { port, .. }
                | ViewViolation::SharedPort { port, .. } => *port,
            })
            .collect();
        if bad.is_empty() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut view = self.clone();
        for net in view.networks.values_mut() {
            net.members.retain(|p| !bad.contains(p));
            if net
                .mirror
                .as_ref()
                .and_then(|m| m.port)
                .is_some_and(|p| bad.contains(&p))
            {
                net.mirror = None;
            }
        }
        std::borrow::Cow::Owned(view)
    }
}

/// One flow the switch must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEntry {
    /// Table id.
    pub table: u8,
    /// Priority.
    pub priority: u16,
    /// Cookie (see [`cookie`]).
    pub cookie: u64,
    /// Match.
    pub r#match: Match,
    /// Instructions; empty means drop.
    pub instructions: Vec<Instruction>,
}

/// Flows are identified by table, priority and match, as OpenFlow does for strict operations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    table: u8,
    priority: u16,
    match_repr: String,
}

impl FlowEntry {
    /// Identity of this flow on the switch. The order of match fields does not matter (a
    /// switch may report them in another order than they were sent).
    pub fn key(&self) -> FlowKey {
        let mut fields: Vec<String> = self
            .r#match
            .fields
            .iter()
            .map(|f| format!("{f:?}"))
            .collect();
        fields.sort();
        FlowKey {
            table: self.table,
            priority: self.priority,
            match_repr: fields.join(","),
        }
    }

    /// The FLOW_MOD that installs (or replaces) this flow.
    pub fn add_message(&self) -> FlowMod {
        FlowMod {
            cookie: self.cookie,
            ..FlowMod::add(
                self.table,
                self.priority,
                self.r#match.clone(),
                self.instructions.clone(),
            )
        }
    }

    /// The FLOW_MOD that removes exactly this flow.
    pub fn delete_message(&self) -> FlowMod {
        FlowMod {
            command: FlowModCommand::DeleteStrict,
            priority: self.priority,
            ..FlowMod::delete(self.table, self.r#match.clone())
        }
    }
}

/// One ALL-type group the switch must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group id.
    pub group_id: u32,
    /// One action list per bucket.
    pub buckets: Vec<Vec<Action>>,
}

impl GroupEntry {
    fn message(&self, command: GroupModCommand) -> GroupMod {
        let buckets = if command == GroupModCommand::Delete {
            Vec::new()
        } else {
            self.buckets
                .iter()
                .map(|a| Bucket::all(a.clone()))
                .collect()
        };
        GroupMod {
            command,
            group_type: GroupType::All,
            group_id: self.group_id,
            buckets,
        }
    }
}

/// Everything a switch must hold, as computed by [`compile`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchPipeline {
    /// Flows, keyed by [`FlowEntry::key`].
    pub flows: BTreeMap<FlowKey, FlowEntry>,
    /// Groups, keyed by id.
    pub groups: BTreeMap<u32, GroupEntry>,
    /// Meters, keyed by id.
    pub meters: BTreeMap<u32, limits::MeterEntry>,
}

impl SwitchPipeline {
    fn add_flow(&mut self, flow: FlowEntry) {
        self.flows.insert(flow.key(), flow);
    }
}

fn output(port: u32) -> Action {
    Action::Output { port, max_len: 0 }
}

fn reg(idx: u8, value: u32, mask: Option<u32>) -> OxmField {
    OxmField::NxReg { idx, value, mask }
}

fn field(header: u32) -> NxmFieldRef {
    NxmFieldRef { header, ofs: 0 }
}

fn tunnel_id(vni: u32) -> OxmField {
    OxmField::TunnelId {
        value: u64::from(vni),
        mask: None,
    }
}

/// Actions that send a frame of network (`vni`, `vlan`) out of `port`.
fn egress(view: &SwitchView, port: u32, vlan: Option<u16>) -> Option<Vec<Action>> {
    match view.links.get(&port) {
        Some(LinkKind::Trunk) => {
            let vid = vlan?;
            Some(vec![
                Action::PushVlan(ETH_TYPE_VLAN),
                Action::SetField(OxmField::VlanVid {
                    value: VID_PRESENT | vid,
                    mask: None,
                }),
                output(port),
            ])
        }
        _ => Some(vec![output(port)]),
    }
}

/// The learn action: remember "frames to this source MAC, in this network, leave through the
/// port this frame came in on" as an entry that loads that port into reg1. `split_horizon`
/// adds `reg0=0` to the entry, so only frames from local ports use it.
fn learn_action(port: u32, split_horizon: bool) -> NxLearn {
    use l2sm_ofp::nxm;
    let mut specs = vec![
        LearnSpec::MatchField {
            src: field(nxm::TUN_ID),
            dst: field(nxm::TUN_ID),
            n_bits: 64,
        },
        LearnSpec::MatchField {
            src: field(nxm::ETH_SRC),
            dst: field(nxm::ETH_DST),
            n_bits: 48,
        },
    ];
    if split_horizon {
        specs.push(LearnSpec::MatchImmediate {
            value: vec![0, 0],
            dst: field(nxm::reg(0)),
            n_bits: 1,
        });
    }
    specs.push(LearnSpec::LoadField {
        src: field(nxm::IN_PORT),
        dst: field(nxm::reg(1)),
        n_bits: 16,
    });
    NxLearn {
        idle_timeout: LEARN_IDLE_TIMEOUT,
        hard_timeout: 0,
        priority: if split_horizon {
            LEARNED_LINK_PRIORITY
        } else {
            LEARNED_LOCAL_PRIORITY
        },
        cookie: cookie::LEARNED | u64::from(port),
        flags: 0,
        table_id: table::UNICAST,
        fin_idle_timeout: 0,
        fin_hard_timeout: 0,
        specs,
    }
}

/// Actions that send one copy of a frame that entered on `in_port` towards the mirror port:
/// straight out of it when it is local, otherwise into each tunnel towards it with the mirror
/// VNI (the caller sets the network's VNI afterwards).
fn mirror_copy(view: &SwitchView, m: &MirrorView, mvni: u32, in_port: u32) -> Vec<Action> {
    if let Some(local) = m.port {
        return if local == in_port {
            Vec::new()
        } else {
            vec![output(local)]
        };
    }
    let mut actions = Vec::new();
    for &port in &m.toward {
        if port != in_port && view.links.get(&port) == Some(&LinkKind::Tunnel) {
            if actions.is_empty() {
                actions.push(Action::SetField(tunnel_id(mvni)));
            }
            actions.push(output(port));
        }
    }
    actions
}

/// Learn (capped by `limits` on pod ports), look the destination up, go on to forwarding.
fn learn_then_lookup(port: u32, split_horizon: bool, limits: &limits::Limits) -> Vec<Instruction> {
    vec![
        Instruction::ApplyActions(vec![
            limits::capped_learn(learn_action(port, split_horizon), limits),
            Action::NxResubmit {
                in_port: 0xfff8,
                table: table::UNICAST,
            },
        ]),
        Instruction::GotoTable(table::FORWARD),
    ]
}

/// Compiles the flows and groups one switch must hold. Member and mirror ports that break the
/// view's rules ([`SwitchView::violations`]) are left out: they match nothing and receive
/// nothing.
pub fn compile(view: &SwitchView) -> SwitchPipeline {
    let view = view.sanitized();
    let view: &SwitchView = &view;
    let mut p = SwitchPipeline::default();
    let flow = |table, priority, cookie, r#match, instructions| FlowEntry {
        table,
        priority,
        cookie,
        r#match,
        instructions,
    };
    let apply_goto = |actions: Vec<Action>, table: u8| {
        vec![
            Instruction::ApplyActions(actions),
            Instruction::GotoTable(table),
        ]
    };

    // Network-independent part.
    p.add_flow(flow(
        table::CLASSIFY,
        0,
        cookie::STATIC,
        Match::any(),
        vec![],
    ));
    // Link probes go back to the controller, before any classification, and only probes: they
    // arrive on link ports without a network (tunnel id 0, while network frames always carry
    // their VNI; untagged on trunks, where network frames are tagged). A pod's own LLDP frames
    // stay in its network like any other multicast and never cause a packet-in.
    for (&port, kind) in &view.links {
        let probe = Match::any()
            .with(OxmField::InPort(port))
            .with(OxmField::EthType(ETH_TYPE_LLDP));
        let probe = match kind {
            LinkKind::Tunnel => probe.with(tunnel_id(0)),
            LinkKind::Trunk => probe.with(OxmField::VlanVid {
                value: VID_NONE,
                mask: None,
            }),
        };
        p.add_flow(flow(
            table::CLASSIFY,
            LLDP_PRIORITY,
            cookie::STATIC,
            probe,
            limits::to_controller(),
        ));
    }
    let controller_meter = limits::controller_meter();
    p.meters.insert(controller_meter.meter_id, controller_meter);
    p.add_flow(flow(
        table::LEARN,
        20,
        cookie::STATIC,
        Match::any().with(OxmField::EthSrc {
            value: [1, 0, 0, 0, 0, 0],
            mask: Some([1, 0, 0, 0, 0, 0]),
        }),
        vec![],
    ));
    // Explicit no-op miss: a lookup that finds nothing leaves reg1 at 0 ("unknown").
    p.add_flow(flow(
        table::UNICAST,
        0,
        cookie::STATIC,
        Match::any(),
        vec![],
    ));
    p.add_flow(flow(
        table::FORWARD,
        0,
        cookie::STATIC,
        Match::any(),
        vec![],
    ));

    let mut learned_members = BTreeMap::new();
    let mut mesh_links = BTreeSet::new();
    for (&vni, net) in &view.networks {
        let net_cookie = cookie::NETWORK | u64::from(vni);
        if !net.members.is_empty() && (net.dns.is_some() || net.dns6.is_some()) {
            for f in net.dns.map(|a| dns::flows(vni, a)).into_iter().flatten() {
                p.add_flow(f);
            }
            for f in net.dns6.map(|a| dns::flows6(vni, a)).into_iter().flatten() {
                p.add_flow(f);
            }
            let m = dns::meter();
            p.meters.insert(m.meter_id, m);
        }
        let mirror = net.mirror.as_ref().zip(mirror_vni(vni));
        for &port in &net.members {
            let mut actions = match mirror {
                Some((m, mvni)) => mirror_copy(view, m, mvni, port),
                None => Vec::new(),
            };
            actions.push(Action::SetField(tunnel_id(vni)));
            let admit = apply_goto(actions, table::LEARN);
            match net.secured.get(&port) {
                None => p.add_flow(flow(
                    table::CLASSIFY,
                    100,
                    net_cookie,
                    Match::any().with(OxmField::InPort(port)),
                    admit,
                )),
                Some(binding) => {
                    for f in
                        port_security::classify_flows(port, net_cookie, binding.as_ref(), &admit)
                    {
                        p.add_flow(f);
                    }
                }
            }
            learned_members.insert(port, net.limits);
        }
        // Copies arriving from links: deliver to the mirror port, or pass them on along the
        // tree (never in a mesh, where every switch sends its copies straight to the mirror's).
        if let Some((m, mvni)) = mirror {
            for &port in &net.link_ports {
                if view.links.get(&port) != Some(&LinkKind::Tunnel) {
                    continue;
                }
                let actions = match (m.port, net.mode) {
                    (Some(local), _) => vec![output(local)],
                    (None, FloodMode::Tree) if !m.toward.contains(&port) => {
                        mirror_copy(view, m, mvni, port)
                    }
                    _ => continue,
                };
                if actions.is_empty() {
                    continue;
                }
                p.add_flow(flow(
                    table::CLASSIFY,
                    100,
                    net_cookie,
                    Match::any()
                        .with(OxmField::InPort(port))
                        .with(tunnel_id(mvni)),
                    vec![Instruction::ApplyActions(actions)],
                ));
            }
        }
        for &port in &net.link_ports {
            let from_link = Action::SetField(reg(0, 1, None));
            match view.links.get(&port) {
                Some(LinkKind::Tunnel) => p.add_flow(flow(
                    table::CLASSIFY,
                    100,
                    net_cookie,
                    Match::any()
                        .with(OxmField::InPort(port))
                        .with(tunnel_id(vni)),
                    apply_goto(vec![from_link], table::LEARN),
                )),
                Some(LinkKind::Trunk) => {
                    let Some(vid) = net.vlan else { continue };
                    p.add_flow(flow(
                        table::CLASSIFY,
                        100,
                        net_cookie,
                        Match::any()
                            .with(OxmField::InPort(port))
                            .with(OxmField::VlanVid {
                                value: VID_PRESENT | vid,
                                mask: None,
                            }),
                        apply_goto(
                            vec![Action::PopVlan, Action::SetField(tunnel_id(vni)), from_link],
                            table::LEARN,
                        ),
                    ))
                }
                None => continue,
            }
            match net.mode {
                FloodMode::Mesh => {
                    mesh_links.insert(port);
                }
                // Tree links keep no split-horizon restriction on what they teach.
                FloodMode::Tree => p.add_flow(flow(
                    table::LEARN,
                    15,
                    net_cookie,
                    Match::any()
                        .with(OxmField::InPort(port))
                        .with(tunnel_id(vni)),
                    learn_then_lookup(port, false, &limits::Limits::OFF),
                )),
            }
        }

        // Known unicast: reg1 holds the port the destination was learned on.
        for &port in net.members.iter().chain(&net.link_ports) {
            let Some(actions) = egress(view, port, net.vlan) else {
                continue;
            };
            p.add_flow(flow(
                table::FORWARD,
                200,
                net_cookie,
                Match::any().with(tunnel_id(vni)).with(reg(1, port, None)),
                vec![Instruction::ApplyActions(actions)],
            ));
        }

        // Unknown destination: flood.
        let buckets = |ports: &mut dyn Iterator<Item = &u32>| -> Vec<Vec<Action>> {
            ports
                .filter_map(|&port| egress(view, port, net.vlan))
                .collect()
        };
        let everywhere = buckets(&mut net.members.iter().chain(&net.link_ports));
        let local = flood_local_group(vni);
        p.groups.insert(
            local,
            GroupEntry {
                group_id: local,
                buckets: everywhere,
            },
        );
        // Pod ports: excess drop and metered flood (crate::limits).
        for &port in &net.members {
            for f in limits::port_flows(vni, port, &net.limits, local) {
                p.add_flow(f);
            }
            if let Some(m) = limits::port_meter_entry(port, &net.limits) {
                p.meters.insert(m.meter_id, m);
            }
        }
        match net.mode {
            FloodMode::Tree => p.add_flow(flow(
                table::FORWARD,
                100,
                net_cookie,
                Match::any().with(tunnel_id(vni)),
                vec![Instruction::ApplyActions(vec![Action::Group(local)])],
            )),
            FloodMode::Mesh => {
                let remote = flood_remote_group(vni);
                let members_only = buckets(&mut net.members.iter());
                p.groups.insert(
                    remote,
                    GroupEntry {
                        group_id: remote,
                        buckets: members_only,
                    },
                );
                for (from_link, group) in [(0, local), (1, remote)] {
                    p.add_flow(flow(
                        table::FORWARD,
                        100,
                        net_cookie,
                        Match::any()
                            .with(tunnel_id(vni))
                            .with(reg(0, from_link, Some(1))),
                        vec![Instruction::ApplyActions(vec![Action::Group(group)])],
                    ));
                }
            }
        }
    }
    // One learn rule per ingress port: its cookie lets the controller flush what it taught.
    for (&port, port_limits) in &learned_members {
        p.add_flow(flow(
            table::LEARN,
            10,
            cookie::STATIC,
            Match::any().with(OxmField::InPort(port)),
            learn_then_lookup(port, false, port_limits),
        ));
    }
    for &port in &mesh_links {
        p.add_flow(flow(
            table::LEARN,
            10,
            cookie::STATIC,
            Match::any().with(OxmField::InPort(port)),
            learn_then_lookup(port, true, &limits::Limits::OFF),
        ));
    }
    p
}

/// Messages that turn a switch holding `old` into one holding `new`, in a safe order: groups
/// and meters are created before the flows that use them, and deleted after them.
pub fn diff(old: &SwitchPipeline, new: &SwitchPipeline) -> Vec<Message> {
    let mut out = Vec::new();
    for (id, meter) in &new.meters {
        match old.meters.get(id) {
            None => out.push(Message::MeterMod(meter.message(MeterModCommand::Add))),
            Some(prev) if prev != meter => {
                out.push(Message::MeterMod(meter.message(MeterModCommand::Modify)))
            }
            Some(_) => {}
        }
    }
    for (id, group) in &new.groups {
        match old.groups.get(id) {
            None => out.push(Message::GroupMod(group.message(GroupModCommand::Add))),
            Some(prev) if prev != group => {
                out.push(Message::GroupMod(group.message(GroupModCommand::Modify)))
            }
            Some(_) => {}
        }
    }
    for (key, flow) in &new.flows {
        // Equal keys mean the same table, priority and match fields in any order (a switch
        // reports them in its own order): only cookie and instructions can still differ.
        let same = old.flows.get(key).is_some_and(|prev| {
            prev.cookie == flow.cookie && prev.instructions == flow.instructions
        });
        if !same {
            out.push(Message::FlowMod(flow.add_message()));
        }
    }
    for (key, flow) in &old.flows {
        if !new.flows.contains_key(key) {
            out.push(Message::FlowMod(flow.delete_message()));
        }
    }
    for (id, group) in &old.groups {
        if !new.groups.contains_key(id) {
            out.push(Message::GroupMod(group.message(GroupModCommand::Delete)));
        }
    }
    for (id, meter) in &old.meters {
        if !new.meters.contains_key(id) {
            out.push(Message::MeterMod(meter.message(MeterModCommand::Delete)));
        }
    }
    out
}

/// Removes the MAC entries learned behind `port` (a member that left or moved, a link that
/// left a tree), so no frame is still steered there.
pub fn flush_learned(port: u32) -> Message {
    Message::FlowMod(FlowMod {
        cookie: cookie::LEARNED | u64::from(port),
        cookie_mask: u64::MAX,
        ..FlowMod::delete(table::UNICAST, Match::any())
    })
}

/// Removes every MAC entry learned in network `vni`: after its tree changed, entries may point
/// the wrong way round; they are relearned from the next frames.
pub fn flush_network_learned(vni: u32) -> Message {
    Message::FlowMod(FlowMod::delete(
        table::UNICAST,
        Match::any().with(tunnel_id(vni)),
    ))
}

#[cfg(test)]
mod tests;
