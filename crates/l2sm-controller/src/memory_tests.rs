//! What the controller keeps per switch and per membership, in bytes of heap, counted by the
//! allocator on this thread while a cluster like `l2sm-bench controller`'s is built (N
//! switches on a ring with chords, 4 member ports each, 10 networks): the table in
//! docs/benchmarks.md comes from here, and the bounds keep it small.

use crate::model::{Model, PortOwner};
use crate::topo::{Graph, Planner, ResolvedLink, ResolvedTopology};
use crate::ConnectedSwitch;
use l2sm_api::v1::{PortStatusView, SwitchStatus};
use l2sm_pipeline::ids::PortId;
use l2sm_pipeline::LinkKind;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

/// The system allocator, counting live bytes per thread (other tests run on other threads).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + n));
}

#[allow(unsafe_code)] // a counting allocator, test builds only: forwards to `System`
                      // SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
                      // thread-local `Cell` with a const initializer, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: as the caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        // SAFETY: as the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        // SAFETY: as the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// Live heap bytes `build` leaves behind (what it returns).
fn bytes<T>(build: impl FnOnce() -> T) -> (T, isize) {
    let before = live();
    let t = build();
    (t, live() - before)
}

const NETWORKS: usize = 10;
const PORTS: u32 = 4;

fn dpid(i: usize) -> u64 {
    0x1000 + i as u64
}

/// Ring plus chords i -> i+sqrt(n), as the bench; link k has trunk port 57344+k at both ends.
fn links(n: usize) -> Vec<(usize, usize)> {
    let chord = ((n as f64).sqrt() as usize).max(2);
    let mut set = BTreeSet::new();
    for i in 0..n {
        for j in [(i + 1) % n, (i + chord) % n] {
            if i != j {
                set.insert((i.min(j), i.max(j)));
            }
        }
    }
    set.into_iter().collect()
}

struct Sizes {
    model_per_membership: f64,
    owner_per_membership: f64,
    switch_status_per_switch: f64,
    plan_per_switch: f64,
    planner_per_switch: f64,
}

fn measure(n: usize) -> Sizes {
    let memberships = n * PORTS as usize;
    let (mut model, model_bytes) = bytes(|| {
        let mut m = Model {
            next_vni: 1,
            ..Model::default()
        };
        for k in 0..NETWORKS {
            m.create_network(&format!("bench-net-{k}"), None).unwrap();
        }
        for i in 0..n {
            for p in 0..PORTS as usize {
                let net = format!("bench-net-{}", (i * PORTS as usize + p) % NETWORKS);
                let port = PortId {
                    dpid: dpid(i),
                    port: p as u32 + 1,
                };
                m.add_ports(&net, &[port]).unwrap();
            }
        }
        m
    });
    // What an agent reports for a pod interface (container ids are 64 hex digits).
    let ((), owner_bytes) = bytes(|| {
        let ports: Vec<PortId> = model
            .networks
            .values()
            .flat_map(|n| n.endpoints.clone())
            .collect();
        for (i, port) in ports.into_iter().enumerate() {
            let owner = PortOwner {
                pod: Some(format!("default/app-{i:06}")),
                attachment: format!("cni/{:064x}/net1", i),
                interface: "net1".into(),
                mac: Some("02:00:00:00:00:01".into()),
                ips: vec!["10.0.0.1".parse().unwrap()],
                port_security: None,
            };
            model.set_owner(port, owner).unwrap();
        }
    });
    let links = links(n);
    let topo = ResolvedTopology::for_tests(
        links
            .iter()
            .enumerate()
            .map(|(k, &(a, b))| ResolvedLink {
                id: format!("tr{k}").into(),
                a: (dpid(a), format!("tr{k}a")),
                b: (dpid(b), format!("tr{k}b")),
                kind: LinkKind::Trunk,
            })
            .collect(),
    );
    let (switches, status_bytes) = bytes(|| {
        let mut ports: BTreeMap<usize, Vec<PortStatusView>> = BTreeMap::new();
        for i in 0..n {
            let pod = (1..=PORTS).map(|p| PortStatusView {
                number: p,
                name: format!("l2sm{:08x}p{p}", dpid(i)),
                kind: "port".into(),
                live: true,
            });
            ports.entry(i).or_default().extend(pod);
        }
        for (k, &(a, b)) in links.iter().enumerate() {
            for (i, side) in [(a, "a"), (b, "b")] {
                ports.entry(i).or_default().push(PortStatusView {
                    number: 57344 + k as u32,
                    name: format!("tr{k}{side}"),
                    kind: "trunk".into(),
                    live: true,
                });
            }
        }
        ports
            .into_iter()
            .map(|(i, ports)| {
                let d = dpid(i);
                let status = SwitchStatus {
                    id: format!("of:{d:016x}"),
                    peer: "10.0.0.1:40000".into(),
                    ports,
                    flows: 0,
                    groups: 0,
                };
                let sw = ConnectedSwitch {
                    status,
                    session: i as u64,
                    probing_since: None,
                };
                (d, sw)
            })
            .collect::<BTreeMap<u64, ConnectedSwitch>>()
    });
    let dead = BTreeSet::new();
    let graph = Graph::of(&topo, &switches, &|_| true, &dead);
    // The planner and its plan (its graph, adjacency, per-network keys and carriers, and every
    // switch's view, which sessions and the "applied" map share by `Arc`).
    let ((planner, plan), total) = bytes(|| {
        let mut p = Planner::default();
        let plan = p.plan(graph.clone(), || &model);
        (p, plan)
    });
    assert_eq!(plan.len(), n);
    let (copies, views) = bytes(|| {
        plan.values()
            .map(|v| (**v).clone())
            .collect::<Vec<l2sm_pipeline::SwitchView>>()
    });
    drop((copies, planner));
    let views = views - (n * std::mem::size_of::<l2sm_pipeline::SwitchView>()) as isize;
    Sizes {
        model_per_membership: model_bytes as f64 / memberships as f64,
        owner_per_membership: owner_bytes as f64 / memberships as f64,
        switch_status_per_switch: status_bytes as f64 / n as f64,
        plan_per_switch: views as f64 / n as f64,
        planner_per_switch: (total - views) as f64 / n as f64,
    }
}

/// Bytes per switch and per membership stay flat from 1,000 to 5,000 switches and within
/// bounds (about 1.5× what was measured when the table in docs/benchmarks.md was written).
#[test]
fn memory_per_switch_and_per_membership_is_small_and_flat() {
    let small = measure(1000);
    let big = measure(5000);
    for (what, s, b, bound) in [
        (
            "model per membership",
            small.model_per_membership,
            big.model_per_membership,
            32.0,
        ),
        (
            "owner per membership",
            small.owner_per_membership,
            big.owner_per_membership,
            512.0,
        ),
        (
            "switch status per switch",
            small.switch_status_per_switch,
            big.switch_status_per_switch,
            1152.0,
        ),
        (
            "plan (views) per switch",
            small.plan_per_switch,
            big.plan_per_switch,
            3200.0,
        ),
        (
            "planner per switch",
            small.planner_per_switch,
            big.planner_per_switch,
            896.0,
        ),
    ] {
        println!("{what}: {s:.0} B at 1,000 switches, {b:.0} B at 5,000");
        assert!(b <= bound, "{what}: {b:.0} B > {bound} B");
        assert!(
            b <= s * 1.5 + 16.0,
            "{what} grows with the state: {s:.0} B -> {b:.0} B"
        );
    }
}
