//! `Session::feed` on arbitrary byte streams cut into arbitrary reads, with clock ticks in
//! between: the session must never panic, must end in `Closed` when told the peer hung
//! up, and must only ever write well-framed messages.
#![no_main]

use l2sm_ofp::session::{Session, SessionConfig, SessionEvent};
use l2sm_ofp::{encode, message_len, FeaturesReply, Message, OfpMessage};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&control, mut rest)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    // Odd control byte: complete the handshake first, to fuzz the connected state.
    if control & 1 == 1 {
        let hello = encode(&OfpMessage::new(1, Message::hello_v13())).expect("hello");
        let features = FeaturesReply {
            datapath_id: 1,
            n_buffers: 0,
            n_tables: 254,
            auxiliary_id: 0,
            capabilities: 0,
        };
        let reply = encode(&OfpMessage::new(2, Message::FeaturesReply(features))).expect("reply");
        s.feed(&hello);
        s.feed(&reply);
    }
    // The other bits pick the read sizes and the pace of the clock.
    let mut step = usize::from(control >> 1) + 1;
    let mut now = t0;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(step.min(rest.len()));
        s.feed(chunk);
        now += Duration::from_millis(u64::from(chunk[0]) * 40);
        s.tick(now);
        rest = tail;
        step = step * 7 % 61 + 1;
    }
    s.peer_closed();
    let out = s.take_output();
    let mut tail = out.as_slice();
    while let Some(len) = message_len(tail).expect("the session frames its output") {
        tail = &tail[len..];
    }
    assert!(tail.is_empty(), "partial message in the session's output");
    let last = s.take_events().pop();
    assert!(matches!(last, Some(SessionEvent::Closed { .. })));
});
