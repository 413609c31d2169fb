//! Messages the L2S-M pipeline emits, built the way its crate builds them.

use l2sm_ofp::*;

pub(crate) const VNI: u64 = 5;

/// Table 1 of the proactive pipeline (reference design §5.2): learn (tunnel id, source MAC)
/// -> in_port into table 2, then continue. The immediate `reg0[0]=1` is the "came from a
/// tunnel" split-horizon bit.
pub(crate) fn learn_action() -> Action {
    Action::learn(NxLearn {
        idle_timeout: 300,
        priority: 100,
        ..NxLearn::new(
            2,
            vec![
                LearnSpec::match_same(nxm::TUN_ID),
                LearnSpec::match_fields(nxm::ETH_SRC, nxm::ETH_DST),
                LearnSpec::match_value(1, NxmFieldRef::whole(nxm::reg(0)), 1),
                LearnSpec::output_field(nxm::IN_PORT),
            ],
        )
    })
}

/// Exactly what `ovs-ofctl add-flow 'table=1,priority=10,actions=learn(...),
/// set_field:5->tun_id,set_field:0x7->reg0,goto_table:2'` sends.
pub(crate) fn learn_flow_mod() -> FlowMod {
    FlowMod::add(
        1,
        10,
        Match::any(),
        vec![
            Instruction::apply_actions(vec![
                learn_action(),
                Action::set_field(OxmField::tunnel_id(VNI)),
                Action::set_field(OxmField::reg(0, 7)),
            ]),
            Instruction::goto_table(2),
        ],
    )
}

/// Flush what was learned on port 3 (a member left): `del-flows table=2,out_port=3`.
pub(crate) fn delete_learned_on_port(port: u32) -> FlowMod {
    FlowMod {
        out_port: port,
        ..FlowMod::delete(2, Match::any())
    }
}

/// Flood group of a network: one output bucket per member port.
pub(crate) fn flood_group(group_id: u32, ports: &[u32]) -> GroupMod {
    GroupMod::add_all(
        group_id,
        ports
            .iter()
            .map(|&p| Bucket::all(vec![Action::output(p)]))
            .collect(),
    )
}

/// A broadcast ARP request from 00:00:00:00:00:01 (42 bytes).
pub(crate) fn arp_request() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    f
}
