//! `decode` returns (Ok or a typed error) on any input, and rejects what it must.

use crate::builders::learn_flow_mod;
use crate::strategies::{config, ofp_message};
use l2sm_ofp::*;
use proptest::prelude::*;

/// Decoding must not panic; whatever decodes must re-encode to something that decodes to
/// the same value (the decoder only produces values the encoder can represent, up to
/// over-long strings it accepts leniently).
fn decode_is_total(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(msg) = decode(bytes) {
        if let Ok(again) = encode(&msg) {
            prop_assert_eq!(decode(&again).expect("re-encoding decodes"), msg);
        }
    }
    Ok(())
}

/// A header with a correct length field in front of `body`, so the body parsers are reached.
fn framed(version: u8, msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len() + 8).expect("small body");
    let mut v = vec![version, msg_type];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1]);
    v.extend_from_slice(body);
    v
}

fn fix_length(bytes: &mut [u8]) {
    if bytes.len() >= 4 {
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes();
        bytes[2..4].copy_from_slice(&len);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    FlipByte(usize, u8),
    SetU16(usize, u16),
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::FlipByte(i, x)),
        // Corrupting 16-bit words hits every nested length field (match, instruction,
        // action, bucket, stats entry, learn spec header...).
        (
            any::<usize>(),
            prop_oneof![Just(0u16), 1u16..16, any::<u16>()]
        )
            .prop_map(|(i, v)| Mutation::SetU16(i, v)),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
        Mutation::FlipByte(i, x) => {
            let n = bytes.len();
            bytes[i % n] ^= x;
        }
        Mutation::SetU16(i, v) => {
            let at = i % (bytes.len() - 1);
            bytes[at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
        Mutation::Extend(tail) => bytes.extend_from_slice(tail),
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_is_total(&bytes)?;
        let _ = message_len(&bytes);
        let _ = peek_header(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        version in prop_oneof![Just(4u8), any::<u8>()],
        msg_type in prop_oneof![0u8..=29, any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        decode_is_total(&framed(version, msg_type, &body))?;
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        msg in ofp_message(),
        mutations in proptest::collection::vec(mutation(), 1..4),
        keep_length_consistent in any::<bool>(),
    ) {
        let mut bytes = encode(&msg).expect("encodable");
        for m in &mutations {
            if bytes.len() < 2 {
                break;
            }
            apply(&mut bytes, m);
        }
        if keep_length_consistent {
            fix_length(&mut bytes);
        }
        decode_is_total(&bytes)?;
    }
}

#[test]
fn truncated_header() {
    for n in 0..8 {
        let err = decode(&[4, 0, 0, 8, 0, 0, 0][..n]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                context: "ofp_header",
                item: "header",
                needed: 8,
                available: n
            }
        );
    }
    assert_eq!(message_len(&[4, 0, 0]), Ok(None));
    assert_eq!(peek_header(&[4, 0, 0]), None);
}

#[test]
fn declared_length_must_match_the_buffer() {
    let ok = framed(4, 2, b"abc");
    assert!(decode(&ok).is_ok());
    assert_eq!(
        decode(&ok[..10]),
        Err(DecodeError::LengthMismatch {
            declared: 11,
            actual: 10
        })
    );
    let mut long = ok.clone();
    long.push(0);
    assert_eq!(
        decode(&long).unwrap_err().to_string(),
        "ofp_header: declared length 11 does not match buffer length 12"
    );
    assert_eq!(
        decode(&[4, 2, 0, 4, 0, 0, 0, 0]),
        Err(DecodeError::LengthBelowHeader(4))
    );
    assert_eq!(
        message_len(&[4, 2, 0, 4, 0, 0, 0, 0]),
        Err(DecodeError::LengthBelowHeader(4))
    );
}

#[test]
fn a_mebibyte_cannot_be_one_message() {
    // The length field is 16 bits, so 1 MiB never matches it, whatever it declares.
    let mut big = vec![0u8; 1 << 20];
    big[..8].copy_from_slice(&[4, 2, 0xff, 0xff, 0, 0, 0, 1]);
    assert_eq!(
        decode(&big),
        Err(DecodeError::LengthMismatch {
            declared: 0xffff,
            actual: 1 << 20
        })
    );
    assert_eq!(message_len(&big), Ok(Some(0xffff)));
    // And the encoder refuses to produce one.
    let err = encode(&OfpMessage::new(1, Message::EchoRequest(vec![0; 1 << 20]))).unwrap_err();
    assert_eq!(
        err,
        EncodeError::TooLong {
            context: "echo_request",
            item: "message",
            len: 8 + (1 << 20),
            max: 65535
        }
    );
    // The largest legal message still works.
    let max = encode(&OfpMessage::new(
        1,
        Message::EchoRequest(vec![7; 65535 - 8]),
    ))
    .unwrap();
    assert_eq!(max.len(), 65535);
    assert!(decode(&max).is_ok());
}

#[test]
fn unknown_types_decode_to_other() {
    // OpenFlow 1.3 defines types 0 to 29; the rest stays raw.
    for t in [30u8, 31, 99, 200, 255] {
        let msg = decode(&framed(4, t, &[1, 2, 3])).unwrap();
        assert_eq!(
            msg,
            OfpMessage::new(
                1,
                Message::Other {
                    msg_type: t,
                    body: vec![1, 2, 3]
                }
            )
        );
    }
}

#[test]
fn only_hello_is_accepted_in_other_versions() {
    assert_eq!(
        decode(&framed(1, 5, &[])),
        Err(DecodeError::UnsupportedVersion(1))
    );
    assert_eq!(
        decode(&framed(6, 14, &[])).unwrap_err().to_string(),
        "unsupported openflow version 0x06 (only hello is accepted in other versions)"
    );
    // An OpenFlow 1.0 HELLO (body ignored, as 1.0 requires).
    assert_eq!(
        decode(&framed(1, 0, &[9, 9])).unwrap().body,
        Message::Hello {
            version_bitmap: None
        }
    );
    // An OpenFlow 1.5 HELLO offering 1.0, 1.3 and 1.5.
    let bitmap = (1u32 << 1) | (1 << 4) | (1 << 6);
    let mut body = vec![0, 1, 0, 8];
    body.extend_from_slice(&bitmap.to_be_bytes());
    assert_eq!(
        decode(&framed(6, 0, &body)).unwrap().body,
        Message::Hello {
            version_bitmap: Some(vec![bitmap])
        }
    );
    let h = peek_header(&framed(6, 0, &body)).unwrap();
    assert_eq!((h.version, h.msg_type, h.xid), (6, 0, 1));
}

#[test]
fn hello_elements() {
    // Unknown element type 7 is skipped (with its padding), the bitmap after it is read.
    let body = [0, 7, 0, 5, 0xaa, 0, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0x10];
    assert_eq!(
        decode(&framed(4, 0, &body)).unwrap().body,
        Message::hello_v13()
    );
    // A bitmap element without its trailing padding is tolerated.
    let body = [0, 1, 0, 8, 0, 0, 0, 0x10];
    assert_eq!(
        decode(&framed(4, 0, &body)).unwrap().body,
        Message::hello_v13()
    );
    assert_eq!(
        decode(&framed(4, 0, &[0, 1, 0, 2]))
            .unwrap_err()
            .to_string(),
        "hello: hello element length 2 is shorter than the 4-byte minimum"
    );
    assert!(decode(&framed(4, 0, &[0, 1, 0, 7, 0, 0, 0])).is_err());
}

#[test]
fn fixed_size_bodies_reject_extra_bytes() {
    assert_eq!(
        decode(&framed(4, 20, &[0])).unwrap_err().to_string(),
        "barrier_request: 1 unexpected bytes after body"
    );
    assert!(decode(&framed(4, 9, &[0, 0, 0xff, 0xff, 0])).is_err());
    assert!(decode(&framed(4, 9, &[0, 0, 0xff])).is_err());
}

/// Decodes `learn_flow_mod()` after `edit` changed its bytes (header length kept in sync).
fn corrupted_flow_mod(edit: impl FnOnce(&mut Vec<u8>)) -> DecodeError {
    let mut bytes = encode(&OfpMessage::new(1, Message::FlowMod(learn_flow_mod()))).unwrap();
    edit(&mut bytes);
    fix_length(&mut bytes);
    decode(&bytes).unwrap_err()
}

// Offsets inside learn_flow_mod(): 48-byte fixed part, 8-byte empty match, then the
// apply_actions instruction at 56 (its length at 58), the learn action at 64 (length at
// 66), the learn specs from 96.
#[test]
fn corrupted_flow_mod_errors_name_the_structure() {
    let e = corrupted_flow_mod(|b| b[25] = 9);
    assert_eq!(
        e.to_string(),
        "flow_mod: flow_mod command value 0x9 is not valid"
    );
    let e = corrupted_flow_mod(|b| b[58..60].copy_from_slice(&3u16.to_be_bytes()));
    assert_eq!(
        e.to_string(),
        "flow_mod: instruction length 3 is not a multiple of 8"
    );
    let e = corrupted_flow_mod(|b| b[58..60].copy_from_slice(&0x200u16.to_be_bytes()));
    assert!(
        e.to_string()
            .starts_with("flow_mod: instruction truncated: need 512 bytes"),
        "{e}"
    );
    let e = corrupted_flow_mod(|b| b[66..68].copy_from_slice(&4u16.to_be_bytes()));
    assert_eq!(
        e.to_string(),
        "flow_mod: action length 4 is not a multiple of 8"
    );
    let e = corrupted_flow_mod(|b| b[48..50].copy_from_slice(&0u16.to_be_bytes()));
    assert_eq!(e.to_string(), "flow_mod: match type value 0x0 is not valid");
    let e = corrupted_flow_mod(|b| b[50..52].copy_from_slice(&2u16.to_be_bytes()));
    assert_eq!(
        e.to_string(),
        "flow_mod: match length 2 is shorter than the 4-byte minimum"
    );
    // First learn spec header: set the reserved top bit, then the reserved destination.
    let e = corrupted_flow_mod(|b| b[96] |= 0x80);
    assert_eq!(
        e.to_string(),
        "flow_mod: nx_learn spec header value 0x8040 is not valid"
    );
    let e = corrupted_flow_mod(|b| b[96] |= 0x18);
    assert_eq!(
        e.to_string(),
        "flow_mod: nx_learn spec destination value 0x1800 is not valid"
    );
    // The last two padding bytes read as one more (truncated) spec header, as in OVS.
    let e = corrupted_flow_mod(|b| b[143] = 1);
    assert_eq!(
        e.to_string(),
        "flow_mod: nx_learn field header truncated: need 4 bytes, 0 available"
    );
}

#[test]
fn learn_padding_after_the_terminator_must_be_zero() {
    // 32-byte learn header + one 10-byte immediate spec = 42, so 6 bytes of padding; the
    // first two read as the all-zero terminator and the rest must stay zero.
    let spec = LearnSpec::match_value(7, NxmFieldRef::whole(nxm::reg(1)), 16);
    let learn = Action::learn(NxLearn::new(2, vec![spec]));
    let msg = OfpMessage::new(
        1,
        Message::FlowMod(FlowMod::add(
            1,
            1,
            Match::any(),
            vec![Instruction::apply_actions(vec![learn])],
        )),
    );
    let mut bytes = encode(&msg).unwrap();
    assert_eq!(bytes.len(), 64 + 48);
    assert_eq!(bytes[64 + 42..], [0; 6]);
    assert_eq!(decode(&bytes).unwrap(), msg);
    *bytes.last_mut().unwrap() = 1;
    assert_eq!(
        decode(&bytes).unwrap_err().to_string(),
        "flow_mod: nx_learn has non-zero bytes after its last spec"
    );
}

#[test]
fn encode_refuses_what_openflow_13_cannot_carry() {
    let fm = |actions| {
        OfpMessage::new(
            1,
            Message::FlowMod(FlowMod::add(
                0,
                1,
                Match::any(),
                vec![Instruction::ApplyActions(actions)],
            )),
        )
    };
    let err = |m: &OfpMessage| encode(m).unwrap_err().to_string();
    assert_eq!(
        err(&fm(vec![Action::set_field(OxmField::tunnel_id_masked(1, 1))])),
        "flow_mod: set_field action with masked TunnelId { value: 1, mask: Some(1) } needs openflow 1.5"
    );
    assert_eq!(
        err(&fm(vec![Action::set_field(OxmField::reg(16, 1))])),
        "flow_mod: oxm nx register index 16 is outside 0..=15"
    );
    let big_oxm = OxmField::Other {
        class: 0xffff,
        field: 1,
        has_mask: false,
        value: vec![0; 256],
    };
    assert_eq!(
        err(&fm(vec![Action::set_field(big_oxm)])),
        "flow_mod: oxm payload length 256 exceeds the maximum 255"
    );
    assert_eq!(
        err(&fm(vec![Action::Experimenter {
            experimenter: 1,
            data: vec![0; 3]
        }])),
        "flow_mod: experimenter action length 11 is not a multiple of 8"
    );
    let spec = |n_bits| LearnSpec::Output {
        src: NxmFieldRef::whole(nxm::IN_PORT),
        n_bits,
    };
    assert_eq!(
        err(&fm(vec![Action::learn(NxLearn::new(2, vec![spec(2048)]))])),
        "flow_mod: nx_learn spec n_bits 2048 is outside 1..=2047"
    );
    let imm = LearnSpec::MatchImmediate {
        value: vec![0; 3],
        dst: NxmFieldRef::whole(nxm::reg(0)),
        n_bits: 16,
    };
    assert_eq!(
        err(&fm(vec![Action::learn(NxLearn::new(2, vec![imm]))])),
        "flow_mod: nx_learn immediate length 3 exceeds the maximum 2"
    );
    let port = PortDesc {
        port_no: 1,
        hw_addr: [0; 6],
        name: "a-very-long-port-name".into(),
        config: 0,
        state: 0,
        curr: 0,
        advertised: 0,
        supported: 0,
        peer: 0,
        curr_speed: 0,
        max_speed: 0,
    };
    assert_eq!(
        err(&OfpMessage::new(
            1,
            Message::PortStatus(PortStatus {
                reason: 0,
                desc: port
            })
        )),
        "port_status: port name length 21 exceeds the maximum 15"
    );
}

#[test]
fn framing_a_stream_of_messages() {
    let msgs = [
        OfpMessage::new(1, Message::hello_v13()),
        OfpMessage::new(2, Message::FlowMod(learn_flow_mod())),
        OfpMessage::new(3, Message::BarrierRequest),
    ];
    let mut stream: Vec<u8> = msgs.iter().flat_map(|m| encode(m).unwrap()).collect();
    let mut got = Vec::new();
    // Feed the bytes one at a time, as a socket might.
    let mut buf = Vec::new();
    for b in stream.drain(..) {
        buf.push(b);
        while let Some(len) = message_len(&buf).unwrap() {
            if buf.len() < len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..len).collect();
            got.push(decode(&frame).unwrap());
        }
    }
    assert!(buf.is_empty());
    assert_eq!(got, msgs);
}
