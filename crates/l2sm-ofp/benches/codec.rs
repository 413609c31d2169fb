//! Codec throughput: a FLOW_MOD with 3 OXM fields and 2 instructions, and a FLOW stats
//! reply carrying 20 flows, each encoded and decoded. Throughput is one element per
//! message, so Criterion's `thrpt` line reads in messages per second.
//!
//! ```text
//! cargo bench -p l2sm-ofp --bench codec
//! ```

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use l2sm_ofp::*;
use std::time::Duration;

/// Table 0 of a tunnel ingress: 3 match fields, apply(set_field + output) and goto_table.
fn flow_mod() -> OfpMessage {
    let fm = FlowMod {
        cookie: 0x0001_0000_0000_0005,
        ..FlowMod::add(
            0,
            100,
            Match::any()
                .with(OxmField::in_port(2))
                .with(OxmField::eth_dst([0x02, 0, 0, 0, 0, 1]))
                .with(OxmField::tunnel_id(5)),
            vec![
                Instruction::apply_actions(vec![
                    Action::set_field(OxmField::reg(0, 1)),
                    Action::output(3),
                ]),
                Instruction::goto_table(1),
            ],
        )
    };
    OfpMessage::new(42, Message::FlowMod(fm))
}

/// A FLOW stats reply with 20 learned-MAC flows (2 match fields, one output each).
fn flow_stats_reply() -> OfpMessage {
    let flows = (0..20u8)
        .map(|i| FlowStats {
            table_id: 2,
            duration_sec: 30 + u32::from(i),
            duration_nsec: 1_000 * u32::from(i),
            priority: 100,
            idle_timeout: 300,
            hard_timeout: 0,
            flags: 0,
            cookie: 0,
            packet_count: 1_000 + u64::from(i),
            byte_count: 64_000 + u64::from(i),
            r#match: Match::any()
                .with(OxmField::tunnel_id(5))
                .with(OxmField::eth_dst([0x02, 0, 0, 0, 0, i])),
            instructions: vec![Instruction::apply_actions(vec![Action::output(
                u32::from(i) + 1,
            )])],
        })
        .collect();
    OfpMessage::new(
        43,
        Message::MultipartReply(MultipartReply {
            flags: 0,
            body: MultipartReplyBody::Flow(flows),
        }),
    )
}

fn bench(c: &mut Criterion, name: &str, msg: &OfpMessage) {
    let bytes = encode(msg).expect("benchmark message encodes");
    assert_eq!(&decode(&bytes).expect("and decodes"), msg);
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| b.iter(|| encode(black_box(msg))));
    let mut buf = Vec::with_capacity(bytes.len());
    g.bench_function("encode_into_reused_buffer", |b| {
        b.iter(|| {
            buf.clear();
            encode_into(black_box(msg), &mut buf)
        })
    });
    g.bench_function("decode", |b| b.iter(|| decode(black_box(&bytes))));
    // The floor for both directions: copying the message's bytes into a new buffer
    // (BENCHMARKS.md reports encode and decode as multiples of it).
    g.bench_function("copy_bytes_baseline", |b| {
        b.iter(|| black_box(&bytes).to_vec())
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    bench(c, "flow_mod_3_oxm_2_instructions", &flow_mod());
    bench(c, "flow_stats_reply_20_flows", &flow_stats_reply());
}

// `criterion_group!` generates a `pub fn benches` that cannot carry a doc comment; in a
// private module it is not exported, so the workspace's `missing_docs` lint leaves it be.
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        targets = codec
    }
}
criterion_main!(group::benches);
