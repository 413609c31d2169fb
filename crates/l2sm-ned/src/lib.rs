//! The wire contract of upstream L2S-M's edge switch ("NED", `talpa ned`): the gRPC service
//! `nedpb.NedService` exactly as upstream's *generated* Go code serves it (which differs from
//! upstream's `ned.proto`: `AttachInterfaceResponse.node_name = 2` exists, `GetNodeName` does
//! not).
//!
//! ```proto
//! syntax = "proto3";
//! package nedpb;
//! service NedService {
//!   rpc CreateVxlan(CreateVxlanRequest) returns (CreateVxlanResponse);
//!   rpc AttachInterface(AttachInterfaceRequest) returns (AttachInterfaceResponse);
//! }
//! message CreateVxlanRequest      { string ip_address = 1; }
//! message CreateVxlanResponse     { bool success = 1; string message = 2; }
//! message AttachInterfaceRequest  { string interface_name = 1; }
//! message AttachInterfaceResponse { int64 interface_num = 1; string node_name = 2; }
//! ```
//!
//! No I/O here: [`wire`] holds the protobuf encoding rules (hand-written: four messages do
//! not justify a code generator), [`messages`] the four messages, [`grpc`] the gRPC message
//! framing, status codes, `grpc-message` percent-encoding and the method paths. The server
//! is in `l2sm-agent` (edge mode).

#![warn(clippy::unwrap_used)] // decoders answer with errors; tests may unwrap

pub mod grpc;
pub mod messages;
pub mod wire;

pub use messages::{
    AttachInterfaceRequest, AttachInterfaceResponse, CreateVxlanRequest, CreateVxlanResponse,
    Message,
};
pub use wire::DecodeError;
