//! The session state machine driven by scripted byte streams: what a switch would send,
//! what the session must answer, and which events it reports.

use crate::builders::learn_flow_mod;
use crate::strategies::{config, ofp_message};
use l2sm_ofp::session::*;
use l2sm_ofp::*;
use proptest::prelude::*;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

/// What the switch puts on the wire.
fn sw(xid: u32, body: Message) -> Vec<u8> {
    encode(&OfpMessage::new(xid, body)).expect("switch message encodes")
}

/// Splits a byte stream into decoded messages (and their header versions).
fn frames(mut bytes: &[u8]) -> Vec<(u8, OfpMessage)> {
    let mut out = Vec::new();
    while let Some(len) = message_len(bytes).expect("valid framing") {
        let version = peek_header(bytes).expect("header").version;
        let (frame, rest) = bytes.split_at(len);
        // Only HELLO_FAILED goes out in another version; its layout is the same in all.
        let mut frame = frame.to_vec();
        frame[0] = OFP_VERSION;
        out.push((version, decode(&frame).expect("session output decodes")));
        bytes = rest;
    }
    assert!(bytes.is_empty(), "trailing partial message in output");
    out
}

/// Everything the session wants to send, decoded.
fn sent(s: &mut Session) -> Vec<OfpMessage> {
    frames(&s.take_output())
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

fn features() -> FeaturesReply {
    FeaturesReply {
        datapath_id: 0xa1,
        n_buffers: 0,
        n_tables: 254,
        auxiliary_id: 0,
        capabilities: 0x4f,
    }
}

fn port_desc_part(flags: u16, port_no: u32) -> Message {
    Message::MultipartReply(MultipartReply {
        flags,
        body: MultipartReplyBody::PortDesc(vec![PortDesc {
            port_no,
            hw_addr: [2, 0, 0, 0, 0, 1],
            name: format!("p{port_no}"),
            config: 0,
            state: OFPPS_LIVE,
            curr: 0,
            advertised: 0,
            supported: 0,
            peer: 0,
            curr_speed: 0,
            max_speed: 0,
        }]),
    })
}

/// A session that completed the handshake at `t0`, with its output drained.
fn connected() -> (Session, Instant) {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    assert_eq!(
        sent(&mut s),
        [OfpMessage::new(1, Message::hello_v13())],
        "a session opens with HELLO offering 1.3"
    );
    s.feed(&sw(77, Message::hello_v13()));
    assert_eq!(sent(&mut s), [OfpMessage::new(2, Message::FeaturesRequest)]);
    s.feed(&sw(2, Message::FeaturesReply(features())));
    s.tick(t0);
    assert_eq!(
        s.take_events(),
        [SessionEvent::Connected {
            features: features()
        }]
    );
    assert!(s.is_connected());
    assert_eq!(s.features(), Some(&features()));
    assert_eq!(s.peer_version(), Some(4));
    (s, t0)
}

#[test]
fn handshake() {
    connected();
}

#[test]
fn handshake_fed_one_byte_at_a_time() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    let _hello = s.take_output();
    let mut stream = sw(1, Message::hello_v13());
    stream.extend(sw(2, Message::FeaturesReply(features())));
    for b in stream {
        s.feed(&[b]);
    }
    assert!(s.is_connected());
    assert_eq!(sent(&mut s), [OfpMessage::new(2, Message::FeaturesRequest)]);
}

#[test]
fn peer_without_13_gets_hello_failed_in_its_own_version() {
    // An OpenFlow 1.0 switch: version 0x01 HELLO without elements.
    let mut s = Session::new(SessionConfig::default(), Instant::now());
    s.take_output();
    let mut hello10 = sw(
        5,
        Message::Hello {
            version_bitmap: None,
        },
    );
    hello10[0] = 0x01;
    s.feed(&hello10);
    let out = frames(&s.take_output());
    let [(version, reply)] = out.as_slice() else {
        panic!("expected exactly one error, got {out:?}")
    };
    assert_eq!(*version, 0x01, "the error must be readable by a 1.0 peer");
    assert_eq!(reply.xid, 5, "the error answers the peer's HELLO");
    let Message::Error(e) = &reply.body else {
        panic!("expected an error, got {reply:?}")
    };
    assert_eq!(
        e.error_code(),
        ErrorCode::HelloFailed(HelloFailedCode::Incompatible)
    );
    assert_eq!(
        String::from_utf8_lossy(&e.data),
        "We support OpenFlow 1.3 (0x04) only; you offered OpenFlow wire version 0x01."
    );
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::Incompatible {
                peer_version: 1,
                peer_bitmap: None
            }
        }]
    );
    assert!(s.is_closed());
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn peer_whose_bitmap_lacks_13_is_refused() {
    let mut s = Session::new(SessionConfig::default(), Instant::now());
    s.take_output();
    let bitmap = (1 << 1) | (1 << 5) | (1 << 6);
    let mut hello = sw(
        9,
        Message::Hello {
            version_bitmap: Some(vec![bitmap]),
        },
    );
    hello[0] = 0x06;
    s.feed(&hello);
    let out = frames(&s.take_output());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 0x04, "min(peer 0x06, ours 0x04)");
    let Message::Error(e) = &out[0].1.body else {
        panic!("expected an error")
    };
    assert_eq!(
        String::from_utf8_lossy(&e.data),
        "We support OpenFlow 1.3 (0x04) only; you offered wire versions 0x01, 0x05, 0x06."
    );
    assert!(matches!(
        s.poll_event(),
        Some(SessionEvent::Closed {
            reason: CloseReason::Incompatible {
                peer_version: 6,
                ..
            }
        })
    ));
}

#[test]
fn newer_peers_that_offer_13_are_accepted() {
    // A 1.5 HELLO whose bitmap includes 1.3, and a 1.4 HELLO without a bitmap (the
    // common version is then min(0x05, 0x04) = 1.3).
    let offers_13 = Message::Hello {
        version_bitmap: Some(vec![(1 << 4) | (1 << 6)]),
    };
    for (version, hello) in [
        (0x06, offers_13),
        (
            0x05,
            Message::Hello {
                version_bitmap: None,
            },
        ),
    ] {
        let mut s = Session::new(SessionConfig::default(), Instant::now());
        s.take_output();
        let mut bytes = sw(1, hello);
        bytes[0] = version;
        s.feed(&bytes);
        assert_eq!(sent(&mut s), [OfpMessage::new(2, Message::FeaturesRequest)]);
        assert_eq!(s.peer_version(), Some(version));
    }
}

#[test]
fn first_message_must_be_hello() {
    let mut s = Session::new(SessionConfig::default(), Instant::now());
    s.feed(&sw(1, Message::FeaturesReply(features())));
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::ExpectedHello { msg_type: 6 }
        }]
    );
    // A peer refusing us straight away is reported as such.
    let mut s = Session::new(SessionConfig::default(), Instant::now());
    let refusal = ErrorMsg::hello_failed(HelloFailedCode::Eperm, "go away");
    s.feed(&sw(1, Message::Error(refusal.clone())));
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::PeerRejected(refusal)
        }]
    );
    // A first message in another version that is not a HELLO cannot even be decoded.
    let mut s = Session::new(SessionConfig::default(), Instant::now());
    let mut v1 = sw(1, Message::FeaturesRequest);
    v1[0] = 1;
    s.feed(&v1);
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::ExpectedHello { msg_type: 5 }
        }]
    );
}

#[test]
fn hello_failed_after_our_hello_closes() {
    let mut s = Session::new(SessionConfig::default(), Instant::now());
    s.feed(&sw(1, Message::hello_v13()));
    let err = ErrorMsg::hello_failed(HelloFailedCode::Incompatible, "no");
    s.feed(&sw(1, Message::Error(err.clone())));
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::PeerRejected(err)
        }]
    );
}

#[test]
fn features_error_closes() {
    let mut s = Session::new(SessionConfig::default(), Instant::now());
    s.feed(&sw(1, Message::hello_v13()));
    let err = ErrorMsg::new(ErrorCode::BadRequest(BadRequestCode::Eperm), Vec::new());
    s.feed(&sw(2, Message::Error(err.clone())));
    let events = s.take_events();
    assert_eq!(
        events,
        [SessionEvent::Closed {
            reason: CloseReason::FeaturesFailed(err)
        }]
    );
    let SessionEvent::Closed { reason } = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        reason.to_string(),
        "features request failed: OFPET_BAD_REQUEST/OFPBRC_EPERM (permissions error), 0 bytes of data"
    );
}

#[test]
fn messages_queued_before_negotiation_wait_for_it() {
    let mut s = Session::new(SessionConfig::default(), Instant::now());
    let xid = s
        .request(Message::MultipartRequest(MultipartRequest::new(
            MultipartRequestBody::Desc,
        )))
        .expect("queued");
    assert_eq!(xid, 2);
    assert_eq!(
        sent(&mut s),
        [OfpMessage::new(1, Message::hello_v13())],
        "only the HELLO goes out before the peer's HELLO"
    );
    s.feed(&sw(1, Message::hello_v13()));
    let out = sent(&mut s);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], OfpMessage::new(3, Message::FeaturesRequest));
    assert_eq!(out[1].xid, 2);
}

#[test]
fn handshake_timeout() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default(), t0);
    assert_eq!(s.next_deadline(), Some(t0 + 10 * SECOND));
    s.tick(t0 + 9 * SECOND);
    assert!(s.take_events().is_empty());
    s.feed(&sw(1, Message::hello_v13()));
    s.tick(t0 + 10 * SECOND);
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::HandshakeTimeout
        }]
    );
}

#[test]
fn echo_requests_are_answered() {
    let (mut s, _) = connected();
    s.feed(&sw(40, Message::EchoRequest(b"ping".to_vec())));
    assert_eq!(
        sent(&mut s),
        [OfpMessage::new(40, Message::EchoReply(b"ping".to_vec()))]
    );
    assert!(s.take_events().is_empty(), "echo is handled, not reported");
}

#[test]
fn keepalive_and_echo_timeout() {
    let (mut s, t0) = connected();
    assert_eq!(s.next_deadline(), Some(t0 + 5 * SECOND));
    s.tick(t0 + 4 * SECOND);
    assert!(!s.has_output());
    // Idle for the echo interval: probe.
    s.tick(t0 + 5 * SECOND);
    let probe = sent(&mut s);
    assert_eq!(probe.len(), 1);
    assert!(matches!(probe[0].body, Message::EchoRequest(_)));
    assert_eq!(s.next_deadline(), Some(t0 + 15 * SECOND));
    // The reply proves liveness; it is not reported.
    s.feed(&sw(probe[0].xid, Message::EchoReply(Vec::new())));
    s.tick(t0 + 6 * SECOND);
    assert!(s.take_events().is_empty());
    assert_eq!(s.next_deadline(), Some(t0 + 11 * SECOND));
    // Silence again: probe, then give up after the echo timeout.
    s.tick(t0 + 11 * SECOND);
    assert_eq!(sent(&mut s).len(), 1);
    s.tick(t0 + 20 * SECOND);
    assert!(s.take_events().is_empty());
    s.tick(t0 + 21 * SECOND);
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::EchoTimeout
        }]
    );
}

#[test]
fn any_traffic_postpones_the_probe() {
    let (mut s, t0) = connected();
    for i in 1..10 {
        s.feed(&sw(0, Message::BarrierReply));
        s.tick(t0 + i * 3 * SECOND);
    }
    assert!(!s.has_output(), "never idle for 5 s, so no probe");
}

#[test]
fn multipart_sequence_is_assembled() {
    let (mut s, _) = connected();
    let xid = s
        .request(Message::MultipartRequest(MultipartRequest::new(
            MultipartRequestBody::PortDesc,
        )))
        .expect("sent");
    assert_eq!(sent(&mut s).len(), 1);
    assert_eq!(s.in_flight(), 1);
    let part1 = port_desc_part(MULTIPART_REPLY_MORE, 1);
    let part2 = port_desc_part(0, 2);
    let packet_in = Message::PortStatus(PortStatus {
        reason: 0,
        desc: match &part1 {
            Message::MultipartReply(MultipartReply {
                body: MultipartReplyBody::PortDesc(p),
                ..
            }) => p[0].clone(),
            _ => unreachable!(),
        },
    });
    s.feed(&sw(xid, part1.clone()));
    assert!(s.take_events().is_empty(), "more parts to come");
    // An asynchronous message in between is reported at once, in order.
    s.feed(&sw(0, packet_in.clone()));
    s.feed(&sw(xid, part2.clone()));
    assert_eq!(
        s.take_events(),
        [
            SessionEvent::Message(OfpMessage::new(0, packet_in)),
            SessionEvent::Reply {
                request_xid: xid,
                messages: vec![OfpMessage::new(xid, part1), OfpMessage::new(xid, part2)]
            }
        ]
    );
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn concurrent_requests_are_told_apart() {
    let (mut s, _) = connected();
    let a = s.request(Message::GetConfigRequest).expect("sent");
    let b = s
        .request(Message::RoleRequest(RoleMsg {
            role: ControllerRole::NoChange,
            generation_id: 0,
        }))
        .expect("sent");
    assert_ne!(a, b);
    let role = Message::RoleReply(RoleMsg {
        role: ControllerRole::Equal,
        generation_id: 0,
    });
    let config = Message::GetConfigReply(SwitchConfig {
        flags: 0,
        miss_send_len: 128,
    });
    let mut stream = sw(b, role.clone());
    stream.extend(sw(a, config.clone()));
    s.feed(&stream);
    assert_eq!(
        s.take_events(),
        [
            SessionEvent::Reply {
                request_xid: b,
                messages: vec![OfpMessage::new(b, role)]
            },
            SessionEvent::Reply {
                request_xid: a,
                messages: vec![OfpMessage::new(a, config)]
            }
        ]
    );
}

#[test]
fn an_error_ends_a_request() {
    let (mut s, _) = connected();
    let xid = s
        .request(Message::MultipartRequest(MultipartRequest::new(
            MultipartRequestBody::MeterFeatures,
        )))
        .expect("sent");
    let err = ErrorMsg::new(
        ErrorCode::BadRequest(BadRequestCode::BadMultipart),
        Vec::new(),
    );
    s.feed(&sw(xid, Message::Error(err.clone())));
    assert_eq!(
        s.take_events(),
        [SessionEvent::Error {
            xid,
            error: err.clone(),
            origin: ErrorOrigin::Request
        }]
    );
    assert_eq!(s.in_flight(), 0);
    // An error for an xid we never used.
    s.feed(&sw(999, Message::Error(err.clone())));
    assert_eq!(
        s.take_events(),
        [SessionEvent::Error {
            xid: 999,
            error: err,
            origin: ErrorOrigin::Untracked
        }]
    );
}

#[test]
fn send_is_fire_and_forget() {
    let (mut s, _) = connected();
    let xid = s.send(Message::GetConfigRequest).expect("sent");
    let reply = Message::GetConfigReply(SwitchConfig {
        flags: 0,
        miss_send_len: 0,
    });
    s.feed(&sw(xid, reply.clone()));
    assert_eq!(
        s.take_events(),
        [SessionEvent::Message(OfpMessage::new(xid, reply))]
    );
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn batch_with_an_error_then_barrier() {
    let (mut s, _) = connected();
    let msgs = vec![
        Message::FlowMod(FlowMod::delete(TABLE_ALL, Match::any())),
        Message::FlowMod(learn_flow_mod()),
        Message::GroupMod(GroupMod::delete(group::ALL)),
    ];
    let barrier = s.send_batch(msgs.clone()).expect("queued");
    let out = sent(&mut s);
    assert_eq!(out.len(), 4);
    assert_eq!(out[3], OfpMessage::new(barrier, Message::BarrierRequest));
    for (m, want) in out.iter().zip(&msgs) {
        assert_eq!(&m.body, want);
    }
    let failed = out[1].xid;
    let err = ErrorMsg::new(
        ErrorCode::FlowModFailed(FlowModFailedCode::TableFull),
        encode(&out[1]).expect("encodes")[..64].to_vec(),
    );
    let mut stream = sw(failed, Message::Error(err.clone()));
    stream.extend(sw(barrier, Message::BarrierReply));
    s.feed(&stream);
    assert_eq!(
        s.take_events(),
        [
            SessionEvent::Error {
                xid: failed,
                error: err,
                origin: ErrorOrigin::Batch {
                    barrier_xid: barrier,
                    index: 1
                }
            },
            SessionEvent::BarrierDone(barrier)
        ]
    );
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn batch_replies_are_collected_too() {
    let (mut s, _) = connected();
    let barrier = s
        .send_batch(vec![Message::MultipartRequest(MultipartRequest::new(
            MultipartRequestBody::PortDesc,
        ))])
        .expect("queued");
    let out = sent(&mut s);
    let req = out[0].xid;
    s.feed(&sw(req, port_desc_part(0, 1)));
    s.feed(&sw(barrier, Message::BarrierReply));
    let events = s.take_events();
    assert!(matches!(&events[0], SessionEvent::Reply { request_xid, .. } if *request_xid == req));
    assert_eq!(events[1], SessionEvent::BarrierDone(barrier));
}

#[test]
fn an_unencodable_batch_queues_nothing() {
    let (mut s, _) = connected();
    let bad = Message::FlowMod(FlowMod::add(
        0,
        1,
        Match::any(),
        vec![Instruction::apply_actions(vec![Action::set_field(
            OxmField::reg(16, 1),
        )])],
    ));
    let err = s
        .send_batch(vec![Message::BarrierRequest, bad])
        .unwrap_err();
    assert!(matches!(err, SendError::Encode(_)), "{err}");
    assert!(!s.has_output());
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn explicit_barrier_request_gets_a_reply_event() {
    let (mut s, _) = connected();
    let xid = s.request(Message::BarrierRequest).expect("sent");
    s.feed(&sw(xid, Message::BarrierReply));
    assert_eq!(
        s.take_events(),
        [SessionEvent::Reply {
            request_xid: xid,
            messages: vec![OfpMessage::new(xid, Message::BarrierReply)]
        }]
    );
}

#[test]
fn asynchronous_messages_are_reported() {
    let (mut s, _) = connected();
    let removed = Message::FlowRemoved(FlowRemoved {
        cookie: 1,
        priority: 2,
        reason: 0,
        table_id: 0,
        duration_sec: 1,
        duration_nsec: 0,
        idle_timeout: 1,
        hard_timeout: 0,
        packet_count: 0,
        byte_count: 0,
        r#match: Match::any(),
    });
    let exp = Message::Experimenter {
        experimenter: 0x00ab_cdef,
        exp_type: 7,
        data: vec![1, 2, 3],
    };
    let mut stream = sw(0, removed.clone());
    stream.extend(sw(0, exp.clone()));
    s.feed(&stream);
    assert_eq!(
        s.take_events(),
        [
            SessionEvent::Message(OfpMessage::new(0, removed)),
            SessionEvent::Message(OfpMessage::new(0, exp)),
        ]
    );
}

#[test]
fn framing_and_decode_errors_close_with_a_reason() {
    let (mut s, _) = connected();
    s.feed(&[4, 2, 0, 3, 0, 0, 0, 1]);
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::Framing(DecodeError::LengthBelowHeader(3))
        }]
    );
    assert_eq!(s.send(Message::BarrierRequest), Err(SendError::Closed));
    s.feed(&sw(1, Message::EchoRequest(vec![])));
    assert!(!s.has_output(), "a closed session answers nothing");

    let (mut s, _) = connected();
    // A FLOW_MOD whose command is 9.
    let mut bad = sw(5, Message::FlowMod(learn_flow_mod()));
    bad[25] = 9;
    s.feed(&bad);
    let events = s.take_events();
    assert_eq!(
        events,
        [SessionEvent::Closed {
            reason: CloseReason::Decode {
                xid: 5,
                msg_type: 14,
                error: DecodeError::BadValue {
                    context: "flow_mod",
                    item: "flow_mod command",
                    value: 9
                }
            }
        }]
    );
}

#[test]
fn end_of_stream() {
    let (mut s, _) = connected();
    s.peer_closed();
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::PeerClosed
        }]
    );
    let (mut s, _) = connected();
    s.feed(&sw(1, Message::BarrierReply)[..5]);
    s.peer_closed();
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::PeerClosedMidMessage { buffered: 5 }
        }]
    );
    s.peer_closed();
    assert!(s.take_events().is_empty(), "closed is reported once");
}

#[test]
fn oversized_replies_close_the_session() {
    let t0 = Instant::now();
    let cfg = SessionConfig {
        max_reply_bytes: 200,
        ..SessionConfig::default()
    };
    let mut s = Session::new(cfg, t0);
    s.feed(&sw(1, Message::hello_v13()));
    s.feed(&sw(2, Message::FeaturesReply(features())));
    s.take_events();
    let xid = s
        .request(Message::MultipartRequest(MultipartRequest::new(
            MultipartRequestBody::PortDesc,
        )))
        .expect("sent");
    for i in 0..3 {
        s.feed(&sw(xid, port_desc_part(MULTIPART_REPLY_MORE, i)));
    }
    assert_eq!(
        s.take_events(),
        [SessionEvent::Closed {
            reason: CloseReason::ReplyTooLarge {
                request_xid: xid,
                limit: 200
            }
        }]
    );
}

#[test]
fn xids_are_unique_among_requests_in_flight() {
    let (mut s, _) = connected();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let xid = s.request(Message::GetConfigRequest).expect("sent");
        assert_ne!(xid, 0);
        assert!(seen.insert(xid), "xid {xid} reused while in flight");
    }
    assert_eq!(s.in_flight(), 1000);
}

proptest! {
    #![proptest_config(config(300))]

    /// However a stream of messages is cut into reads, the session reports the same.
    #[test]
    fn chunking_does_not_change_events(
        msgs in proptest::collection::vec(ofp_message(), 0..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut stream = sw(1, Message::hello_v13());
        stream.extend(sw(2, Message::FeaturesReply(features())));
        for m in &msgs {
            stream.extend(encode(m).expect("encodable"));
        }
        let run = |chunks: &[&[u8]]| {
            let mut s = Session::new(SessionConfig::default(), Instant::now());
            for c in chunks {
                s.feed(c);
            }
            (s.take_events(), s.take_output())
        };
        let whole = run(&[&stream]);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for a in at.into_iter().chain([stream.len()]) {
            chunks.push(&stream[prev..a]);
            prev = a;
        }
        prop_assert_eq!(run(&chunks), whole);
    }

    /// Arbitrary input never panics the session, before or after the handshake, and
    /// every session output is well-formed OpenFlow.
    #[test]
    fn arbitrary_input_never_panics_the_session(
        handshake in any::<bool>(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..6),
        ticks in proptest::collection::vec(0u64..40, 0..4),
    ) {
        let t0 = Instant::now();
        let mut s = Session::new(SessionConfig::default(), t0);
        if handshake {
            s.feed(&sw(1, Message::hello_v13()));
            s.feed(&sw(2, Message::FeaturesReply(features())));
        }
        for (i, c) in chunks.iter().enumerate() {
            s.feed(c);
            if let Some(t) = ticks.get(i) {
                s.tick(t0 + Duration::from_secs(*t));
            }
        }
        s.peer_closed();
        let out = s.take_output();
        let mut rest = out.as_slice();
        while let Some(len) = message_len(rest).expect("own framing") {
            let (frame, tail) = rest.split_at(len);
            let mut frame = frame.to_vec();
            // HELLO_FAILED may carry the peer's version; normalise to decode it.
            frame[0] = 4;
            prop_assert!(decode(&frame).is_ok());
            rest = tail;
        }
        prop_assert!(rest.is_empty());
        let closed = matches!(s.take_events().last(), Some(SessionEvent::Closed { .. }));
        prop_assert!(closed, "the last event is Closed");
    }
}
