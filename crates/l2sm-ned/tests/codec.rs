//! The NED contract's codec: bytes as Google's protobuf runtime makes them (goldens generated
//! by `tests/golden/gen.py` from `tests/golden/ned.proto` and `tests/golden/edge.proto`), decoding rules, randomized
//! decoding and round trips, gRPC framing, status and `grpc-message` encoding.

use l2sm_ned::grpc::{self, Code, Method, Status};
use l2sm_ned::wire::{self, DecodeError};
use l2sm_ned::{
    AttachInterfaceRequest, AttachInterfaceResponse, ConnectNetworkRequest, ConnectNetworkResponse,
    CreateVxlanRequest, CreateVxlanResponse, DisconnectNetworkRequest, DisconnectNetworkResponse,
    Message,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A message built from the golden's JSON fields, encoded.
fn encode_from_json(name: &str, f: &Value) -> Vec<u8> {
    let s = |k: &str| f[k].as_str().unwrap().to_string();
    match name {
        "CreateVxlanRequest" => CreateVxlanRequest {
            ip_address: s("ip_address"),
        }
        .encode(),
        "CreateVxlanResponse" => CreateVxlanResponse {
            success: f["success"].as_bool().unwrap(),
            message: s("message"),
        }
        .encode(),
        "AttachInterfaceRequest" => AttachInterfaceRequest {
            interface_name: s("interface_name"),
        }
        .encode(),
        "AttachInterfaceResponse" => AttachInterfaceResponse {
            interface_num: f["interface_num"].as_i64().unwrap(),
            node_name: s("node_name"),
        }
        .encode(),
        "ConnectNetworkRequest" => ConnectNetworkRequest {
            network: s("network"),
            cluster_bridge: s("cluster_bridge"),
        }
        .encode(),
        "ConnectNetworkResponse" => ConnectNetworkResponse {
            edge_port: f["edge_port"].as_i64().unwrap(),
            cluster_port: f["cluster_port"].as_i64().unwrap(),
            node_name: s("node_name"),
        }
        .encode(),
        "DisconnectNetworkRequest" => DisconnectNetworkRequest {
            network: s("network"),
        }
        .encode(),
        "DisconnectNetworkResponse" => DisconnectNetworkResponse {}.encode(),
        other => panic!("unknown message {other}"),
    }
}

/// Decodes as `name`, answering the fields as JSON (the goldens' form).
fn decode_to_json(name: &str, b: &[u8]) -> Result<Value, DecodeError> {
    Ok(match name {
        "CreateVxlanRequest" => {
            let m = CreateVxlanRequest::decode(b)?;
            json!({"ip_address": m.ip_address})
        }
        "CreateVxlanResponse" => {
            let m = CreateVxlanResponse::decode(b)?;
            json!({"success": m.success, "message": m.message})
        }
        "AttachInterfaceRequest" => {
            let m = AttachInterfaceRequest::decode(b)?;
            json!({"interface_name": m.interface_name})
        }
        "AttachInterfaceResponse" => {
            let m = AttachInterfaceResponse::decode(b)?;
            json!({"interface_num": m.interface_num, "node_name": m.node_name})
        }
        "ConnectNetworkRequest" => {
            let m = ConnectNetworkRequest::decode(b)?;
            json!({"network": m.network, "cluster_bridge": m.cluster_bridge})
        }
        "ConnectNetworkResponse" => {
            let m = ConnectNetworkResponse::decode(b)?;
            json!({"edge_port": m.edge_port, "cluster_port": m.cluster_port, "node_name": m.node_name})
        }
        "DisconnectNetworkRequest" => {
            let m = DisconnectNetworkRequest::decode(b)?;
            json!({"network": m.network})
        }
        "DisconnectNetworkResponse" => {
            DisconnectNetworkResponse::decode(b)?;
            json!({})
        }
        other => panic!("unknown message {other}"),
    })
}

const GOLDENS: &str = include_str!("golden/goldens.txt");

#[test]
fn encoding_matches_googles_protobuf_bytes() {
    let mut n = 0;
    for line in GOLDENS.lines().filter(|l| l.starts_with("encode\t")) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, fields, want) = (cols[1], cols[2], cols[3]);
        let fields: Value = serde_json::from_str(fields).unwrap();
        let got = encode_from_json(name, &fields);
        assert_eq!(got, hex(want), "{name} {fields}");
        // And the golden bytes decode back to the same fields.
        assert_eq!(decode_to_json(name, &hex(want)).unwrap(), fields, "{name}");
        n += 1;
    }
    assert_eq!(n, 24, "every encode golden ran");
}

#[test]
fn decoding_agrees_with_googles_protobuf_on_odd_and_broken_input() {
    let mut n = 0;
    for line in GOLDENS.lines().filter(|l| l.starts_with("decode\t")) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, input, want) = (cols[1], cols[2], cols[3]);
        let got = decode_to_json(name, &hex(input));
        if want == "ERROR" {
            assert!(got.is_err(), "{name} {input}: accepted as {got:?}");
        } else {
            let want: Value = serde_json::from_str(want).unwrap();
            assert_eq!(got.unwrap(), want, "{name} {input}");
        }
        n += 1;
    }
    assert_eq!(n, 24, "every decode golden ran");
}

#[test]
fn the_golden_request_of_upstreams_operator_is_exact() {
    // What upstream's operator sends for AttachInterface{interface_name: "br1"}, framed.
    let framed = grpc::frame(
        &AttachInterfaceRequest {
            interface_name: "br1".into(),
        }
        .encode(),
    );
    assert_eq!(framed, hex("00000000050a03627231"));
    let msg = grpc::unary_message(&framed, grpc::MAX_MESSAGE).unwrap();
    assert_eq!(
        AttachInterfaceRequest::decode(msg).unwrap().interface_name,
        "br1"
    );
}

#[test]
fn decode_errors_name_what_is_wrong() {
    assert_eq!(
        CreateVxlanRequest::decode(&hex("0a05616263")),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        AttachInterfaceResponse::decode(&hex("08ffffffffffffffffff02")),
        Err(DecodeError::VarintOverflow),
        "a 10th varint byte above 1 overflows 64 bits"
    );
    assert_eq!(
        CreateVxlanRequest::decode(&hex("0201")),
        Err(DecodeError::FieldNumber(0))
    );
    assert_eq!(
        CreateVxlanRequest::decode(&hex("808080801001")),
        Err(DecodeError::FieldNumber(1 << 29)),
        "field numbers stop at 2^29-1"
    );
    assert_eq!(
        CreateVxlanRequest::decode(&hex("f8ffffff0f01")),
        Ok(CreateVxlanRequest::default()),
        "field 2^29-1 is a valid unknown field"
    );
    assert_eq!(
        CreateVxlanRequest::decode(&hex("0e")),
        Err(DecodeError::WireType(6))
    );
    assert_eq!(
        CreateVxlanRequest::decode(&hex("0a02c328")),
        Err(DecodeError::InvalidUtf8 {
            field: 1,
            name: "ip_address"
        })
    );
    // A known field with the wrong wire type is refused (protobuf-go would skip it).
    assert_eq!(
        CreateVxlanRequest::decode(&hex("0801")),
        Err(DecodeError::WrongWireType {
            field: 1,
            name: "ip_address",
            got: 0,
            want: 2
        })
    );
    assert!(matches!(
        AttachInterfaceResponse::decode(&hex("0a0101")),
        Err(DecodeError::WrongWireType { field: 1, .. })
    ));
    assert!(matches!(
        CreateVxlanResponse::decode(&hex("0d01020304")),
        Err(DecodeError::WrongWireType { field: 1, .. })
    ));
    // Deeply nested unknown groups are refused, not recursed into without bound.
    let deep: Vec<u8> = std::iter::repeat_n(0x1b, 100)
        .chain(std::iter::repeat_n(0x1c, 100))
        .collect();
    assert_eq!(CreateVxlanRequest::decode(&deep), Err(DecodeError::Group));
    let ok: Vec<u8> = std::iter::repeat_n(0x1b, 10)
        .chain(std::iter::repeat_n(0x1c, 10))
        .collect();
    assert_eq!(
        CreateVxlanRequest::decode(&ok),
        Ok(CreateVxlanRequest::default())
    );
}

#[test]
fn varints_of_every_length_round_trip() {
    for shift in 0..64 {
        for v in [1u64 << shift, (1u64 << shift) - 1, u64::MAX >> shift] {
            let mut b = Vec::new();
            wire::put_varint(&mut b, v);
            assert!(b.len() <= 10);
            assert_eq!(wire::get_varint(&b), Ok((v, b.len())), "{v}");
            assert_eq!(
                wire::get_varint(&b[..b.len() - 1]),
                Err(DecodeError::Truncated)
            );
        }
    }
}

#[test]
fn framing_refuses_what_grpc_go_refuses() {
    let max = grpc::MAX_MESSAGE;
    let status = |r: Result<&[u8], Status>| r.unwrap_err();
    assert_eq!(grpc::unary_message(&hex("0000000000"), max), Ok(&[][..]));
    let empty = status(grpc::unary_message(&[], max));
    assert_eq!(empty.code, Code::Internal);
    assert_eq!(
        status(grpc::unary_message(&hex("0000"), max)).code,
        Code::Internal
    );
    let compressed = status(grpc::unary_message(&hex("0100000001aa"), max));
    assert_eq!(compressed.code, Code::Internal);
    assert!(compressed.message.contains("compressed flag"));
    let format = status(grpc::unary_message(&hex("0200000000"), max));
    assert_eq!(format.message, "grpc: received unexpected payload format 2");
    let big = status(grpc::unary_message(&hex("0000004001"), max));
    assert_eq!(big.code, Code::ResourceExhausted);
    assert_eq!(
        big.message,
        format!("grpc: received message larger than max (16385 vs. {max})")
    );
    // The size check works from the prefix alone: a server stops reading there.
    assert_eq!(
        grpc::check_prefix(&hex("00ffffffff"), max)
            .unwrap_err()
            .code,
        Code::ResourceExhausted
    );
    assert_eq!(grpc::check_prefix(&hex("00000000"), max), Ok(None));
    let short = status(grpc::unary_message(&hex("0000000005aabb"), max));
    assert!(short.message.contains("2 of 5"), "{short}");
    let two = status(grpc::unary_message(&hex("00000000010a0000000000"), max));
    assert!(two.message.contains("more than one request message"));
    assert_eq!(grpc::check_encoding(None), Ok(()));
    assert_eq!(grpc::check_encoding(Some("identity")), Ok(()));
    let gzip = grpc::check_encoding(Some("gzip")).unwrap_err();
    assert_eq!(gzip.code, Code::Unimplemented);
    assert_eq!(
        gzip.message,
        "grpc: Decompressor is not installed for grpc-encoding \"gzip\""
    );
}

#[test]
fn method_paths_and_unknown_methods_as_grpc_go_names_them() {
    assert_eq!(
        Method::from_path("/nedpb.NedService/CreateVxlan"),
        Ok(Method::CreateVxlan)
    );
    assert_eq!(
        Method::from_path("/nedpb.NedService/AttachInterface"),
        Ok(Method::AttachInterface)
    );
    assert_eq!(
        Method::from_path("/l2sm.edge.v1.EdgeService/ConnectNetwork"),
        Ok(Method::ConnectNetwork)
    );
    assert_eq!(
        Method::from_path("/l2sm.edge.v1.EdgeService/DisconnectNetwork"),
        Ok(Method::DisconnectNetwork)
    );
    for m in Method::ALL {
        assert_eq!(Method::from_path(m.path()), Ok(m));
    }
    for (path, msg) in [
        (
            "/l2sm.edge.v1.EdgeService/ConnectNetworks",
            "unknown method ConnectNetworks for service l2sm.edge.v1.EdgeService",
        ),
        (
            // Upstream's service does not serve ours, nor the reverse.
            "/l2sm.edge.v1.EdgeService/AttachInterface",
            "unknown method AttachInterface for service l2sm.edge.v1.EdgeService",
        ),
        (
            "/nedpb.NedService/GetNodeName",
            "unknown method GetNodeName for service nedpb.NedService",
        ),
        (
            "/other.Service/CreateVxlan",
            "unknown service other.Service",
        ),
        (
            "/nedpb.NedService",
            "malformed method name: \"/nedpb.NedService\"",
        ),
        ("nedpb.NedService/CreateVxlan", "malformed method name"),
    ] {
        let s = Method::from_path(path).unwrap_err();
        assert_eq!(s.code, Code::Unimplemented, "{path}");
        assert!(s.message.contains(msg), "{path}: {}", s.message);
    }
}

#[test]
fn status_codes_and_grpc_message_encoding() {
    for (i, c) in Code::ALL.iter().enumerate() {
        assert_eq!(usize::from(c.value()), i);
        assert_eq!(Code::from_value(&i.to_string()), *c);
    }
    assert_eq!(Code::from_value("17"), Code::Unknown);
    assert_eq!(Code::from_value("x"), Code::Unknown);
    assert_eq!(Code::Unimplemented.value(), 12);
    assert_eq!(Code::Internal.value(), 13);
    assert_eq!(Code::ResourceExhausted.value(), 8);
    assert_eq!(
        grpc::percent_encode("bridge \"br1\" 100% gone\n"),
        "bridge \"br1\" 100%25 gone%0A"
    );
    assert_eq!(grpc::percent_encode("nöde"), "n%C3%B6de");
    assert_eq!(grpc::percent_decode("n%C3%B6de 100%25"), "nöde 100%");
    assert_eq!(grpc::percent_decode("bad %zz %4"), "bad %zz %4");
}

fn any_message_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        // Mostly valid tags with random values: reaches deeper into the decoder.
        proptest::collection::vec(
            (
                1u8..4,
                0u8..8,
                proptest::collection::vec(any::<u8>(), 0..12)
            ),
            0..8
        )
        .prop_map(|fields| {
            let mut b = Vec::new();
            for (n, wt, v) in fields {
                b.push((n << 3) | wt);
                if wt == 2 {
                    b.push(v.len() as u8);
                }
                b.extend(v);
            }
            b
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_never_panics(b in any_message_bytes()) {
        let _ = CreateVxlanRequest::decode(&b);
        let _ = CreateVxlanResponse::decode(&b);
        let _ = AttachInterfaceRequest::decode(&b);
        let _ = AttachInterfaceResponse::decode(&b);
        let _ = ConnectNetworkRequest::decode(&b);
        let _ = ConnectNetworkResponse::decode(&b);
        let _ = DisconnectNetworkRequest::decode(&b);
        let _ = DisconnectNetworkResponse::decode(&b);
        let _ = grpc::unary_message(&b, grpc::MAX_MESSAGE);
        let _ = grpc::percent_decode(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn encode_then_decode_is_identity(
        ip in ".{0,40}", ok in any::<bool>(), msg in ".{0,80}",
        num in any::<i64>(), node in ".{0,40}",
    ) {
        let a = CreateVxlanRequest { ip_address: ip.clone() };
        prop_assert_eq!(CreateVxlanRequest::decode(&a.encode()).unwrap(), a);
        let b = CreateVxlanResponse { success: ok, message: msg.clone() };
        prop_assert_eq!(CreateVxlanResponse::decode(&b.encode()).unwrap(), b);
        let c = AttachInterfaceRequest { interface_name: ip };
        prop_assert_eq!(AttachInterfaceRequest::decode(&c.encode()).unwrap(), c.clone());
        let d = AttachInterfaceResponse { interface_num: num, node_name: node };
        let framed = grpc::frame(&d.encode());
        let inner = grpc::unary_message(&framed, grpc::MAX_MESSAGE).unwrap();
        prop_assert_eq!(AttachInterfaceResponse::decode(inner).unwrap(), d);
        prop_assert_eq!(grpc::percent_decode(&grpc::percent_encode(&msg)), msg);
    }

    #[test]
    fn edge_messages_encode_then_decode_is_identity(
        network in ".{0,40}", bridge in ".{0,20}", node in ".{0,40}",
        edge_port in any::<i64>(), cluster_port in any::<i64>(),
    ) {
        let a = ConnectNetworkRequest { network: network.clone(), cluster_bridge: bridge };
        prop_assert_eq!(ConnectNetworkRequest::decode(&a.encode()).unwrap(), a);
        let b = ConnectNetworkResponse { edge_port, cluster_port, node_name: node };
        let framed = grpc::frame(&b.encode());
        let inner = grpc::unary_message(&framed, grpc::MAX_MESSAGE).unwrap();
        prop_assert_eq!(ConnectNetworkResponse::decode(inner).unwrap(), b);
        let c = DisconnectNetworkRequest { network };
        prop_assert_eq!(DisconnectNetworkRequest::decode(&c.encode()).unwrap(), c);
        prop_assert_eq!(DisconnectNetworkResponse::default().encode(), Vec::<u8>::new());
    }
}
