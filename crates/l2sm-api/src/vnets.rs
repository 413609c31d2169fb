//! Upstream's ONOS "vnets" contract under `/onos/vnets/api`: the `NetworkDTO` body its
//! operator sends. Paths, bodies and status codes stay as upstream has them.

use serde::{Deserialize, Serialize};

/// Upstream `NetworkDTO`. Unknown fields are refused (upstream parses with
/// FAIL_ON_UNKNOWN_PROPERTIES); absent fields are left out when sending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkDto {
    /// Network name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    /// Ports, `of:<16 hex>/<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_endpoints: Option<Vec<String>>,
    /// Upstream's per-endpoint tunnel ids; accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_list: Option<Vec<i64>>,
    /// Port receiving a copy of every frame of the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_port: Option<String>,
}

impl NetworkDto {
    /// `{"networkId": network}`.
    pub fn network(network: &str) -> Self {
        NetworkDto {
            network_id: Some(network.to_string()),
            ..Default::default()
        }
    }

    /// `{"networkId": network, "networkEndpoints": ports}`.
    pub fn ports(network: &str, ports: &[String]) -> Self {
        NetworkDto {
            network_id: Some(network.to_string()),
            network_endpoints: Some(ports.to_vec()),
            ..Default::default()
        }
    }

    /// `{"networkId": network, "mirrorPort": port}`.
    pub fn mirror(network: &str, port: &str) -> Self {
        NetworkDto {
            network_id: Some(network.to_string()),
            mirror_port: Some(port.to_string()),
            ..Default::default()
        }
    }
}
