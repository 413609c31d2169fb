//! Pod port numbers stay below 0xD000: 0xD000-0xDFFF belong to the edge's cluster-to-edge
//! hops (`lsedge<id>` = 0xD000 + id), 0xE000 up to trunks and tunnels.

use l2sm_agent::next_pod_port;
use std::collections::BTreeSet;

#[test]
fn pod_ports_are_allocated_below_the_edge_hop_range() {
    let none = BTreeSet::new();
    assert_eq!(next_pod_port(&[], &none), Some(1));
    // Lowest free number, skipping used and reserved ones.
    let reserved: BTreeSet<u32> = [2].into();
    assert_eq!(next_pod_port(&[1, 3], &reserved), Some(4));
    // Hop ports on the bridge (0xD000 + id) do not push pods into the range.
    assert_eq!(next_pod_port(&[0xD001, 0xD002, 0xF000], &none), Some(1));
    // Every number below 0xD000 taken: no port, although 0xD000..0xE000 is free.
    let all: Vec<u32> = (1..0xD000).collect();
    assert_eq!(next_pod_port(&all, &none), None);
    let mut almost = all.clone();
    almost.retain(|n| *n != 0xCFFF);
    assert_eq!(next_pod_port(&almost, &none), Some(0xCFFF));
    let reserved: BTreeSet<u32> = [0xCFFF].into();
    assert_eq!(next_pod_port(&almost, &reserved), None);
    assert_eq!(l2sm_pipeline::ids::FIRST_EDGE_HOP_PORT, 0xD000);
}
