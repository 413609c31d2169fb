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

/// `l2sm.edge.v1.ConnectNetworkRequest { string network = 1; string cluster_bridge = 2; }`:
/// join the edge's bridge to the cluster switch `cluster_bridge` (on the same Open vSwitch)
/// for the provider network `network`, with one patch port pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectNetworkRequest {
    /// The provider network's name (the same at the provider and in every cluster).
    pub network: String,
    /// The node agent's bridge on the edge's node (`br-<hash(node + "l2sm-controller")>`).
    pub cluster_bridge: String,
}

/// `l2sm.edge.v1.ConnectNetworkResponse { int64 edge_port = 1; int64 cluster_port = 2;
/// string node_name = 3; }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectNetworkResponse {
    /// OpenFlow number of the pair's end on the edge bridge (member at the provider).
    pub edge_port: i64,
    /// OpenFlow number of the pair's end on the cluster bridge (`0xD000 + id`; member at the
    /// cluster's controller).
    pub cluster_port: i64,
    /// The edge's node name.
    pub node_name: String,
}

/// `l2sm.edge.v1.DisconnectNetworkRequest { string network = 1; }`: remove the pair of
/// `network` (an unknown network is fine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectNetworkRequest {
    /// The provider network's name.
    pub network: String,
}

/// `l2sm.edge.v1.DisconnectNetworkResponse {}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectNetworkResponse {}

impl Message for ConnectNetworkRequest {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(4 + self.network.len() + self.cluster_bridge.len());
        wire::put_string(&mut b, 1, &self.network);
        wire::put_string(&mut b, 2, &self.cluster_bridge);
        b
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for f in Fields::new(buf) {
            match f? {
                (1, v) => m.network = wire::as_string(1, "network", v)?,
                (2, v) => m.cluster_bridge = wire::as_string(2, "cluster_bridge", v)?,
                _ => {}
            }
        }
        Ok(m)
    }
}

impl Message for ConnectNetworkResponse {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24 + self.node_name.len());
        wire::put_int64(&mut b, 1, self.edge_port);
        wire::put_int64(&mut b, 2, self.cluster_port);
        wire::put_string(&mut b, 3, &self.node_name);
        b
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for f in Fields::new(buf) {
            match f? {
                (1, v) => m.edge_port = wire::as_int64(1, "edge_port", v)?,
                (2, v) => m.cluster_port = wire::as_int64(2, "cluster_port", v)?,
                (3, v) => m.node_name = wire::as_string(3, "node_name", v)?,
                _ => {}
            }
        }
        Ok(m)
    }
}

impl Message for DisconnectNetworkRequest {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(2 + self.network.len());
        wire::put_string(&mut b, 1, &self.network);
        b
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for f in Fields::new(buf) {
            if let (1, v) = f? {
                m.network = wire::as_string(1, "network", v)?;
            }
        }
        Ok(m)
    }
}

impl Message for DisconnectNetworkResponse {
    fn encode(&self) -> Vec<u8> {
        Vec::new()
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        // No fields: every field is unknown, but the bytes must still be a valid message.
        for f in Fields::new(buf) {
            f?;
        }
        Ok(Self {})
    }
}
