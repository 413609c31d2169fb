//! The L2S-M pipeline compiler: a pure function from "what this switch carries" to the exact
//! OpenFlow flows and groups it must hold, plus the diff between two such states.
//!
//! ```text
//!  table 0 CLASSIFY   in_port=<member of n>            -> tunnel_id:=VNI(n), goto 1
//!                     in_port=<tunnel>, tunnel_id=VNI  -> reg0:=1 (came from a tunnel), goto 1
//!                     anything else                    -> drop
//!  table 1 LEARN      multicast source                 -> drop
//!                     learn (tun_id, eth_dst:=eth_src) -> output:in_port into table 2, goto 2
//!  table 2 UNICAST    learned entries; miss            -> goto 3
//!  table 3 FLOOD      tunnel_id=VNI, reg0=0            -> group "from local"  (members + tunnels)
//!                     tunnel_id=VNI, reg0=1            -> group "from tunnel" (members only)
//! ```
//!
//! Split horizon: a frame that arrived from a tunnel is never sent into another tunnel, neither
//! by flooding (the "from tunnel" group has no tunnel buckets) nor by a learned entry (entries
//! learned from a tunnel also match `reg0=0`, so only frames from local ports use them). On a
//! full mesh this is loop-free. Isolation: a frame only enters table 1 with the VNI of the
//! network its port belongs to, and every later lookup is keyed by that VNI.

pub mod ids;

use l2sm_ofp::{
    Action, Bucket, FlowMod, FlowModCommand, GroupMod, GroupModCommand, GroupType, Instruction,
    LearnSpec, Match, Message, NxLearn, NxmFieldRef, OxmField,
};
use std::collections::{BTreeMap, BTreeSet};

/// Table numbers of the pipeline.
pub mod table {
    /// Port/tunnel classification into a network.
    pub const CLASSIFY: u8 = 0;
    /// MAC learning.
    pub const LEARN: u8 = 1;
    /// Learned unicast entries.
    pub const UNICAST: u8 = 2;
    /// Broadcast, multicast and unknown unicast replication.
    pub const FLOOD: u8 = 3;
}

/// Cookies: the top bits say who owns a flow, so foreign or learned state can be told apart.
pub mod cookie {
    /// Network-independent flows (table-miss rules, learn rules).
    pub const STATIC: u64 = 0x4c32_0000_0000_0000;
    /// Flows that belong to one network: `NETWORK | vni`.
    pub const NETWORK: u64 = 0x4c32_0001_0000_0000;
    /// Entries created by `learn` in the unicast table.
    pub const LEARNED: u64 = 0x4c32_0002_0000_0000;
}

/// Seconds a learned MAC stays without traffic.
pub const LEARN_IDLE_TIMEOUT: u16 = 300;
/// Priority of entries learned from local ports (wins over a stale tunnel entry after a move).
pub const LEARNED_LOCAL_PRIORITY: u16 = 110;
/// Priority of entries learned from tunnels.
pub const LEARNED_TUNNEL_PRIORITY: u16 = 100;

/// Group id of the flood group used for frames from local ports of network `vni`.
pub fn flood_local_group(vni: u32) -> u32 {
    vni << 1
}

/// Group id of the flood group used for frames that arrived from a tunnel.
pub fn flood_remote_group(vni: u32) -> u32 {
    (vni << 1) | 1
}

/// Largest VNI: 24 bits (VXLAN), which also keeps group ids below `OFPG_MAX`.
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// What the compiler needs to know about one switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchView {
    /// OpenFlow ports that are tunnels to the other switches of the (full-mesh) overlay.
    pub tunnel_ports: BTreeSet<u32>,
    /// For every network with at least one member on this switch: VNI -> local member ports.
    pub networks: BTreeMap<u32, BTreeSet<u32>>,
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
    /// Output ports, one bucket each.
    pub outputs: Vec<u32>,
}

impl GroupEntry {
    fn message(&self, command: GroupModCommand) -> GroupMod {
        let buckets = if command == GroupModCommand::Delete {
            Vec::new()
        } else {
            self.outputs
                .iter()
                .map(|&p| Bucket::all(vec![output(p)]))
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
}

impl SwitchPipeline {
    fn add_flow(&mut self, flow: FlowEntry) {
        self.flows.insert(flow.key(), flow);
    }
}

fn output(port: u32) -> Action {
    Action::Output { port, max_len: 0 }
}

fn reg0(value: u32) -> OxmField {
    OxmField::NxReg {
        idx: 0,
        value,
        mask: Some(1),
    }
}

fn field(header: u32) -> NxmFieldRef {
    NxmFieldRef { header, ofs: 0 }
}

/// The learn action: remember "frames to this source MAC, in this network, leave through the
/// port this frame came in on". For frames from tunnels the learned entry also requires
/// `reg0=0`, which keeps split horizon for known unicast.
fn learn_action(from_tunnel: bool) -> Action {
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
    if from_tunnel {
        specs.push(LearnSpec::MatchImmediate {
            value: vec![0, 0],
            dst: field(nxm::reg(0)),
            n_bits: 1,
        });
    }
    specs.push(LearnSpec::Output {
        src: field(nxm::IN_PORT),
        n_bits: 16,
    });
    Action::NxLearn(NxLearn {
        idle_timeout: LEARN_IDLE_TIMEOUT,
        hard_timeout: 0,
        priority: if from_tunnel {
            LEARNED_TUNNEL_PRIORITY
        } else {
            LEARNED_LOCAL_PRIORITY
        },
        cookie: cookie::LEARNED,
        flags: 0,
        table_id: table::UNICAST,
        fin_idle_timeout: 0,
        fin_hard_timeout: 0,
        specs,
    })
}

/// Compiles the flows and groups one switch must hold.
pub fn compile(view: &SwitchView) -> SwitchPipeline {
    let mut p = SwitchPipeline::default();
    let goto = Instruction::GotoTable;
    let drop_all = |table| FlowEntry {
        table,
        priority: 0,
        cookie: cookie::STATIC,
        r#match: Match::any(),
        instructions: Vec::new(),
    };

    // Network-independent part.
    p.add_flow(drop_all(table::CLASSIFY));
    p.add_flow(FlowEntry {
        table: table::LEARN,
        priority: 20,
        cookie: cookie::STATIC,
        r#match: Match::any().with(OxmField::EthSrc {
            value: [1, 0, 0, 0, 0, 0],
            mask: Some([1, 0, 0, 0, 0, 0]),
        }),
        instructions: Vec::new(),
    });
    p.add_flow(FlowEntry {
        table: table::LEARN,
        priority: 10,
        cookie: cookie::STATIC,
        r#match: Match::any().with(reg0(1)),
        instructions: vec![
            Instruction::ApplyActions(vec![learn_action(true)]),
            goto(table::UNICAST),
        ],
    });
    p.add_flow(FlowEntry {
        table: table::LEARN,
        priority: 5,
        cookie: cookie::STATIC,
        r#match: Match::any(),
        instructions: vec![
            Instruction::ApplyActions(vec![learn_action(false)]),
            goto(table::UNICAST),
        ],
    });
    p.add_flow(FlowEntry {
        table: table::UNICAST,
        priority: 0,
        cookie: cookie::STATIC,
        r#match: Match::any(),
        instructions: vec![goto(table::FLOOD)],
    });
    p.add_flow(drop_all(table::FLOOD));

    // One block per network this switch carries.
    for (&vni, members) in &view.networks {
        let net_cookie = cookie::NETWORK | u64::from(vni);
        let tunnel_id = OxmField::TunnelId {
            value: u64::from(vni),
            mask: None,
        };
        for &port in members {
            p.add_flow(FlowEntry {
                table: table::CLASSIFY,
                priority: 100,
                cookie: net_cookie,
                r#match: Match::any().with(OxmField::InPort(port)),
                instructions: vec![
                    Instruction::ApplyActions(vec![Action::SetField(tunnel_id.clone())]),
                    goto(table::LEARN),
                ],
            });
        }
        for &tunnel in &view.tunnel_ports {
            p.add_flow(FlowEntry {
                table: table::CLASSIFY,
                priority: 100,
                cookie: net_cookie,
                r#match: Match::any()
                    .with(OxmField::InPort(tunnel))
                    .with(tunnel_id.clone()),
                instructions: vec![
                    Instruction::ApplyActions(vec![Action::SetField(OxmField::NxReg {
                        idx: 0,
                        value: 1,
                        mask: None,
                    })]),
                    goto(table::LEARN),
                ],
            });
        }
        for (from_tunnel, group_id) in [
            (false, flood_local_group(vni)),
            (true, flood_remote_group(vni)),
        ] {
            p.add_flow(FlowEntry {
                table: table::FLOOD,
                priority: 100,
                cookie: net_cookie,
                r#match: Match::any()
                    .with(tunnel_id.clone())
                    .with(reg0(u32::from(from_tunnel))),
                instructions: vec![Instruction::ApplyActions(vec![Action::Group(group_id)])],
            });
            let mut outputs: Vec<u32> = members.iter().copied().collect();
            if !from_tunnel {
                outputs.extend(view.tunnel_ports.iter().copied());
            }
            p.groups.insert(group_id, GroupEntry { group_id, outputs });
        }
    }
    p
}

/// Messages that turn a switch holding `old` into one holding `new`, in a safe order: groups
/// are created before the flows that use them, and deleted after them.
pub fn diff(old: &SwitchPipeline, new: &SwitchPipeline) -> Vec<Message> {
    let mut out = Vec::new();
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
        if old.flows.get(key) != Some(flow) {
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
    out
}

/// Removes the MAC entries learned behind `port` (a member that left), so no frame of its old
/// network is still steered to it.
pub fn flush_learned(port: u32) -> Message {
    Message::FlowMod(FlowMod {
        out_port: port,
        ..FlowMod::delete(table::UNICAST, Match::any())
    })
}

#[cfg(test)]
mod tests;
