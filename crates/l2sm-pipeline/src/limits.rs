//! Abuse limits of the data plane: a cap on the MACs learned behind each pod port, a meter on
//! what each pod port floods, and a meter on what a switch sends to the controller.
//!
//! ```text
//!  table 0  LLDP punt (per link)        -> meter:CONTROLLER_METER, controller
//!  table 1  learn rule of a pod port P  -> learn(limit=mac_limit, result_dst=reg2[0], ...)
//!  table 3  in_port=P, reg2[0]=0        -> drop (counts P's frames from MACs over the cap)
//!           tunnel_id=VNI, in_port=P    -> meter:P, flood group   (above the plain flood flow)
//! ```
//!
//! **MAC cap.** OVS counts, for each learn action, the flows of the learned flow's cookie in
//! its table (`LEARNED | port`): at `mac_limit` it learns no more and writes 0 to `reg2[0]`
//! (1 when it learned or refreshed an entry, so MACs already learned keep working). A frame
//! whose source could not be learned is dropped in table 3 by a per-port flow whose packet
//! count is the excess counter. Dropping, rather than forwarding it unlearned, keeps the
//! flood from reaching other switches, whose link learn rules would learn the MAC there: the
//! cap then bounds every switch's tables, and only the offending pod loses frames (as a
//! hardware switch's port-security `restrict` mode does). Links are not capped: they carry
//! the MACs of many pods, each capped at its own switch.
//!
//! **Flood meter.** Broadcast, multicast and unknown-unicast frames from a pod port go
//! through that port's meter (packets/s, drop band) before the network's flood group; known
//! unicast is never metered, nor are frames from links (they carry other pods' traffic,
//! metered where it entered).
//!
//! **Meter ids** never collide: a pod port's meter id is its port number (1..0xDFFF, the pod
//! port range); the controller meter is [`CONTROLLER_METER`] (0xE000, the first trunk port
//! number, which no pod port can have).

use crate::{cookie, reg, table, tunnel_id, FlowEntry};
use l2sm_ofp::{
    Action, Instruction, Match, MeterBand, MeterMod, MeterModCommand, NxLearn2, NxmFieldRef,
    OxmField, OFPMF_BURST, OFPMF_PKTPS, OFPMF_STATS,
};

/// Default cap of learned MACs per pod port. A pod is normally one MAC; containers that bridge
/// or run VMs behind their interface need more, and 256 leaves room for a /24 of them while a
/// hostile pod can add at most 256 entries per switch (a few tens of KiB of flow table).
pub const DEFAULT_MAC_LIMIT: u32 = 256;
/// Default flood meter rate per pod port, packets/s. ARP, ND, DHCP and mDNS of a normal pod are
/// a few packets per second; 1000/s (about 12 Mbit/s of full-size frames, replicated to every
/// member) leaves ample room for scans and bursty discovery while bounding what one pod makes
/// every switch of its network replicate.
pub const DEFAULT_FLOOD_PPS: u32 = 1000;
/// Default burst of the flood meter, packets: one second at the default rate, so a pod that
/// was quiet can send a burst of broadcasts (an ARP sweep of a /24) without loss.
pub const DEFAULT_FLOOD_BURST: u32 = 1000;

/// Meter id of the controller meter: every flow that sends to the controller goes through it.
pub const CONTROLLER_METER: u32 = crate::ids::FIRST_TRUNK_PORT;
/// Rate of the controller meter, packets/s: LLDP probes are one per link port and probe
/// interval (1 s by default), so this allows 1000 links per switch, while a flood of probe-like
/// frames cannot load the controller with more.
pub const CONTROLLER_PPS: u32 = 1000;
/// Burst of the controller meter, packets.
pub const CONTROLLER_BURST: u32 = 1000;

/// The register bit the capped learn action writes: 1 learned (or refreshed), 0 over the cap.
pub const RESULT_REG: u8 = 2;

/// Priority of the per-port "source over the cap" drop flow in table 3 (above known unicast).
pub const EXCESS_PRIORITY: u16 = 300;
/// Priority of the per-port metered flood flow in table 3 (above the plain flood flows,
/// below known unicast).
pub const METERED_FLOOD_PRIORITY: u16 = 150;

/// Limits of one network's pod ports. `0` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Limits {
    /// Learned MACs per pod port (0: no cap).
    pub mac_limit: u32,
    /// Flood meter rate per pod port, packets/s (0: no meter).
    pub flood_pps: u32,
    /// Flood meter burst, packets.
    pub flood_burst: u32,
}

impl Default for Limits {
    /// The defaults: [`DEFAULT_MAC_LIMIT`], [`DEFAULT_FLOOD_PPS`], [`DEFAULT_FLOOD_BURST`].
    fn default() -> Self {
        Limits {
            mac_limit: DEFAULT_MAC_LIMIT,
            flood_pps: DEFAULT_FLOOD_PPS,
            flood_burst: DEFAULT_FLOOD_BURST,
        }
    }
}

impl Limits {
    /// No cap, no meter: the pipeline as it was before limits.
    pub const OFF: Limits = Limits {
        mac_limit: 0,
        flood_pps: 0,
        flood_burst: 0,
    };
}

/// Meter id of pod port `port`'s flood meter (the port number itself; see the module doc).
pub fn port_meter(port: u32) -> u32 {
    port
}

/// The pod port a meter id belongs to (`None` for the controller meter or ids we never use).
pub fn meter_port(meter_id: u32) -> Option<u32> {
    crate::ids::is_pod_port(meter_id).then_some(meter_id)
}

/// One meter the switch must hold: a single drop band in packets/s, with burst and stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEntry {
    /// Meter id.
    pub meter_id: u32,
    /// Packets/s above which packets are dropped.
    pub rate: u32,
    /// Burst, packets.
    pub burst: u32,
}

impl MeterEntry {
    /// `OFPMF_*` flags of every meter the pipeline installs.
    pub const FLAGS: u16 = OFPMF_PKTPS | OFPMF_BURST | OFPMF_STATS;

    /// The METER_MOD that adds (or modifies, or deletes) this meter.
    pub fn message(&self, command: MeterModCommand) -> MeterMod {
        if command == MeterModCommand::Delete {
            return MeterMod::delete(self.meter_id);
        }
        MeterMod {
            command,
            flags: Self::FLAGS,
            meter_id: self.meter_id,
            bands: vec![MeterBand::Drop {
                rate: self.rate,
                burst_size: self.burst,
            }],
        }
    }

    /// The entry a switch reports (METER_CONFIG): `None` when it is not one the pipeline
    /// would install (other flags or bands), so the diff rewrites it.
    pub fn from_config(flags: u16, meter_id: u32, bands: &[MeterBand]) -> Option<MeterEntry> {
        match bands {
            [MeterBand::Drop { rate, burst_size }] if flags == Self::FLAGS => Some(MeterEntry {
                meter_id,
                rate: *rate,
                burst: *burst_size,
            }),
            _ => None,
        }
    }
}

/// The controller meter.
pub fn controller_meter() -> MeterEntry {
    MeterEntry {
        meter_id: CONTROLLER_METER,
        rate: CONTROLLER_PPS,
        burst: CONTROLLER_BURST,
    }
}

/// Instructions of a flow that sends to the controller: through the controller meter first.
pub fn to_controller() -> Vec<Instruction> {
    vec![
        Instruction::Meter(CONTROLLER_METER),
        Instruction::ApplyActions(vec![Action::to_controller()]),
    ]
}

/// The learn action of pod port `port` under `limits`: capped at `mac_limit` with the result
/// in `reg2[0]`, or `learn` unchanged when there is no cap.
pub fn capped_learn(learn: l2sm_ofp::NxLearn, limits: &Limits) -> Action {
    if limits.mac_limit == 0 {
        return Action::NxLearn(learn);
    }
    Action::NxLearn2(NxLearn2::new(
        learn,
        limits.mac_limit,
        Some(NxmFieldRef::new(l2sm_ofp::nxm::reg(RESULT_REG), 0)),
    ))
}

/// Table-3 flows of pod port `port` of network `vni`: the excess drop (with a cap) and the
/// metered flood (with a meter, into `flood_group`).
pub fn port_flows(vni: u32, port: u32, limits: &Limits, flood_group: u32) -> Vec<FlowEntry> {
    let mut flows = Vec::new();
    if limits.mac_limit != 0 {
        flows.push(FlowEntry {
            table: table::FORWARD,
            priority: EXCESS_PRIORITY,
            cookie: cookie::EXCESS | u64::from(port),
            r#match: Match::any()
                .with(OxmField::InPort(port))
                .with(reg(RESULT_REG, 0, Some(1))),
            instructions: vec![],
        });
    }
    if limits.flood_pps != 0 {
        flows.push(FlowEntry {
            table: table::FORWARD,
            priority: METERED_FLOOD_PRIORITY,
            cookie: cookie::NETWORK | u64::from(vni),
            // In the order OVS reports the fields: flows read back compare equal.
            r#match: Match::any()
                .with(OxmField::InPort(port))
                .with(tunnel_id(vni)),
            instructions: vec![
                Instruction::Meter(port_meter(port)),
                Instruction::ApplyActions(vec![Action::Group(flood_group)]),
            ],
        });
    }
    flows
}

/// The flood meter of pod port `port` under `limits`, if it has one.
pub fn port_meter_entry(port: u32, limits: &Limits) -> Option<MeterEntry> {
    (limits.flood_pps != 0).then(|| MeterEntry {
        meter_id: port_meter(port),
        rate: limits.flood_pps,
        burst: limits.flood_burst,
    })
}

/// The pipeline for a switch without meters (OpenFlow meters unsupported by its datapath):
/// no meters, no meter instructions; everything else unchanged.
pub fn without_meters(mut p: crate::SwitchPipeline) -> crate::SwitchPipeline {
    p.meters.clear();
    for f in p.flows.values_mut() {
        f.instructions
            .retain(|i| !matches!(i, Instruction::Meter(_)));
    }
    p
}
