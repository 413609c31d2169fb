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
//! Next to it, our own service for the cluster-to-edge hop (docs/edge.md), served by the same
//! listener:
//!
//! ```proto
//! syntax = "proto3";
//! package l2sm.edge.v1;
//! service EdgeService {
//!   rpc ConnectNetwork(ConnectNetworkRequest) returns (ConnectNetworkResponse);
//!   rpc DisconnectNetwork(DisconnectNetworkRequest) returns (DisconnectNetworkResponse);
//! }
//! message ConnectNetworkRequest     { string network = 1; string cluster_bridge = 2; }
//! message ConnectNetworkResponse    { int64 edge_port = 1; int64 cluster_port = 2; string node_name = 3; }
//! message DisconnectNetworkRequest  { string network = 1; }
//! message DisconnectNetworkResponse { }
//! ```
//!
//! No I/O here by default: [`wire`] holds the protobuf encoding rules (hand-written: four messages do
//! not justify a code generator), [`messages`] the four messages, [`grpc`] the gRPC message
//! framing, status codes, `grpc-message` percent-encoding and the method paths. The server
//! is in `l2sm-agent` (edge mode). With the cargo feature `client`, [`client`] is a small
//! async gRPC client (hyper HTTP/2, h2c or TLS, timeouts) for both services.

#![warn(clippy::unwrap_used)] // decoders answer with errors; tests may unwrap

pub mod grpc;
pub mod messages;
pub mod wire;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod server;

pub use messages::{
    AttachInterfaceRequest, AttachInterfaceResponse, ConnectNetworkRequest, ConnectNetworkResponse,
    CreateVxlanRequest, CreateVxlanResponse, DisconnectNetworkRequest, DisconnectNetworkResponse,
    Message,
};
pub use wire::DecodeError;
