//! `decode(encode(x)) == x` for generated messages of every variant.

use crate::strategies::{action, config, instruction, ofp_message, oxm};
use l2sm_ofp::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn every_message_round_trips(msg in ofp_message()) {
        let bytes = encode(&msg).expect("generated messages are encodable");
        prop_assert_eq!(usize::from(peek_header(&bytes).expect("header").length), bytes.len());
        prop_assert_eq!(message_len(&bytes), Ok(Some(bytes.len())));
        prop_assert_eq!(decode(&bytes).expect("own encoding decodes"), msg);
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Matches, instructions and actions in isolation, inside a FLOW_MOD, so that a failure
    /// shrinks to the smallest offending element.
    #[test]
    fn flow_mod_elements_round_trip(
        fields in proptest::collection::vec(oxm(), 0..3),
        insts in proptest::collection::vec(instruction(), 0..2),
        acts in proptest::collection::vec(action(), 0..3),
    ) {
        let mut instructions = insts;
        instructions.push(Instruction::ApplyActions(acts));
        let msg = OfpMessage::new(1, Message::FlowMod(FlowMod::add(0, 1, Match { fields }, instructions)));
        let bytes = encode(&msg).expect("encodable");
        prop_assert_eq!(bytes.len() % 8, 0, "flow_mod with aligned match and instructions is 8-aligned");
        prop_assert_eq!(decode(&bytes).expect("decodes"), msg);
    }
}
