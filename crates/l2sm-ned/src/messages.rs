//! The four messages of `nedpb.NedService`, as upstream's generated Go code defines them.
//!
//! Encoding writes fields in field-number order and leaves proto3 defaults out, as
//! protobuf-go does; decoding keeps the last value of a repeated scalar field and skips
//! unknown fields. One deliberate difference: a *known* field arriving with another wire type
//! is an error here, where protobuf-go would keep it as an unknown field and leave the
//! declared field at its default (no well-formed client sends that).

use crate::wire::{self, DecodeError, Fields};

/// A protobuf message of this service.
pub trait Message: Sized {
    /// The protobuf encoding.
    fn encode(&self) -> Vec<u8>;
    /// Parses the protobuf encoding.
    fn decode(buf: &[u8]) -> Result<Self, DecodeError>;
}

/// `CreateVxlanRequest { string ip_address = 1; }`: add a tunnel to a neighbour edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateVxlanRequest {
    /// The neighbour edge's address.
    pub ip_address: String,
}

/// `CreateVxlanResponse { bool success = 1; string message = 2; }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateVxlanResponse {
    /// Whether the tunnel exists now.
    pub success: bool,
    /// Human-readable outcome.
    pub message: String,
}

/// `AttachInterfaceRequest { string interface_name = 1; }`: connect a new edge port to the
/// host Linux bridge of that name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachInterfaceRequest {
    /// The host Linux bridge the port's veth peer joins.
    pub interface_name: String,
}

/// `AttachInterfaceResponse { int64 interface_num = 1; string node_name = 2; }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachInterfaceResponse {
    /// The new port's OpenFlow number.
    pub interface_num: i64,
    /// The edge's node name (from its `config.json`).
    pub node_name: String,
}

impl Message for CreateVxlanRequest {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(2 + self.ip_address.len());
        wire::put_string(&mut b, 1, &self.ip_address);
        b
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for f in Fields::new(buf) {
            if let (1, v) = f? {
                m.ip_address = wire::as_string(1, "ip_address", v)?;
            }
        }
        Ok(m)
    }
}

impl Message for CreateVxlanResponse {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(4 + self.message.len());
        wire::put_bool(&mut b, 1, self.success);
        wire::put_string(&mut b, 2, &self.message);
        b
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for f in Fields::new(buf) {
            match f? {
                (1, v) => m.success = wire::as_bool(1, "success", v)?,
                (2, v) => m.message = wire::as_string(2, "message", v)?,
                _ => {}
            }
        }
        Ok(m)
    }
}

impl Message for AttachInterfaceRequest {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(2 + self.interface_name.len());
        wire::put_string(&mut b, 1, &self.interface_name);
        b
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for f in Fields::new(buf) {
            if let (1, v) = f? {
                m.interface_name = wire::as_string(1, "interface_name", v)?;
            }
        }
        Ok(m)
    }
}

impl Message for AttachInterfaceResponse {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(13 + self.node_name.len());
        wire::put_int64(&mut b, 1, self.interface_num);
        wire::put_string(&mut b, 2, &self.node_name);
        b
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for f in Fields::new(buf) {
            match f? {
                (1, v) => m.interface_num = wire::as_int64(1, "interface_num", v)?,
                (2, v) => m.node_name = wire::as_string(2, "node_name", v)?,
                _ => {}
            }
        }
        Ok(m)
    }
}
