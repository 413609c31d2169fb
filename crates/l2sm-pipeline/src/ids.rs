//! Identifiers shared with upstream L2S-M: switch (bridge) names, datapath ids, port ids and
//! interface names. They must stay bit-exact: the upstream operator computes the same values to
//! address ports as `of:<dpid>/<port>`.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Provider name used for the intra-cluster overlay switches.
pub const OVERLAY_PROVIDER: &str = "l2sm-controller";

fn sha256_hex(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Bridge name of a node's switch: `br-` + the first 4 bytes of sha256(node + provider), in hex.
pub fn switch_name(node: &str, provider: &str) -> String {
    format!("br-{}", &sha256_hex(&format!("{node}{provider}"))[..8])
}

/// Datapath id of a switch: the first 8 bytes of sha256(bridge name).
pub fn datapath_id(switch_name: &str) -> u64 {
    let digest = Sha256::digest(switch_name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The datapath id as the 16 lowercase hex digits OVS `other_config:datapath-id` expects.
pub fn dpid_hex(dpid: u64) -> String {
    format!("{dpid:016x}")
}

/// Pod-facing interface name on the node side: `ls` + first 5 hex digits of the dpid + port.
pub fn port_interface_name(dpid: u64, port: u32) -> String {
    format!("ls{}{}", &dpid_hex(dpid)[..5], port)
}

/// VXLAN port name toward a peer: `vxlan-` + first 5 hex digits of sha256(remote IP).
pub fn vxlan_port_name(remote_ip: &str) -> String {
    format!("vxlan-{}", &sha256_hex(remote_ip)[..5])
}

/// First OpenFlow port number of cluster-to-edge hops: the cluster end of an edge's patch
/// port pair for provider network hop `id` is `FIRST_EDGE_HOP_PORT + id`
/// (0xD000-0xDFFF). Node agents never give pods a number at or above it; the controller
/// still accepts these ports as members (they are below [`FIRST_TRUNK_PORT`]).
pub const FIRST_EDGE_HOP_PORT: u32 = 0xd000;
/// Largest hop id ([`FIRST_EDGE_HOP_PORT`] + this is the last hop port, 0xDFFF).
pub const MAX_EDGE_HOP_ID: u32 = 0xfff;

/// First OpenFlow port number of trunk links (agents number trunk ports from here up to
/// [`FIRST_TUNNEL_PORT`]); pod ports stay below.
pub const FIRST_TRUNK_PORT: u32 = 0xe000;
/// First OpenFlow port number of tunnel ports.
pub const FIRST_TUNNEL_PORT: u32 = 0xf000;

/// Whether an OpenFlow port number is in the pod port range (1 up to the trunk range): the
/// only ports that may be network members or mirrors.
pub fn is_pod_port(port: u32) -> bool {
    (1..FIRST_TRUNK_PORT).contains(&port)
}

/// Whether an OpenFlow port number is in the trunk range.
pub fn is_trunk_port(port: u32) -> bool {
    (FIRST_TRUNK_PORT..FIRST_TUNNEL_PORT).contains(&port)
}

/// Whether an OpenFlow port name is one of our inter-switch tunnel ports.
pub fn is_tunnel_port_name(name: &str) -> bool {
    name.starts_with("vxlan-")
}

/// Errors from parsing or validating identifiers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A port id that is not `of:<16 hex digits>/<port number>`.
    #[error("malformed port id {0:?}: expected of:<16 hex digits>/<port number>")]
    MalformedPortId(String),
    /// A network name that breaks the naming rules.
    #[error("invalid network name {name:?}: {reason}")]
    InvalidNetworkName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

/// An OpenFlow port on a given switch, written `of:<dpid as 16 lowercase hex>/<port>` as ONOS does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId {
    /// Datapath id of the switch.
    pub dpid: u64,
    /// OpenFlow port number.
    pub port: u32,
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "of:{:016x}/{}", self.dpid, self.port)
    }
}

impl FromStr for PortId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdError::MalformedPortId(s.to_string());
        let rest = s.strip_prefix("of:").ok_or_else(bad)?;
        let (dpid, port) = rest.rsplit_once('/').ok_or_else(bad)?;
        if dpid.len() != 16 || !dpid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let dpid = u64::from_str_radix(dpid, 16).map_err(|_| bad())?;
        let port: u32 = port.parse().map_err(|_| bad())?;
        if port == 0 || port > l2sm_ofp::port::MAX {
            return Err(bad());
        }
        Ok(PortId { dpid, port })
    }
}

impl serde::Serialize for PortId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PortId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Longest network name accepted (a Kubernetes object name, DNS-1123 subdomain).
pub const MAX_NETWORK_NAME: usize = 253;

/// Network names follow Kubernetes object names (L2Network `metadata.name`): lowercase
/// alphanumerics, `-` and `.`, starting and ending with an alphanumeric, at most 253 bytes.
pub fn validate_network_name(name: &str) -> Result<(), IdError> {
    let err = |reason| IdError::InvalidNetworkName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(err("must not be empty"));
    }
    if name.len() > MAX_NETWORK_NAME {
        return Err(err("longer than 253 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(err(
            "only lowercase letters, digits, '-' and '.' are allowed",
        ));
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(err("must start and end with a letter or digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Worked examples from the upstream documentation of the naming scheme.
    #[test]
    fn upstream_switch_names_and_dpids() {
        for (node, bridge, dpid) in [
            ("l2sm-test-worker", "br-abb58826", "a30b6e801ab54336"),
            ("l2sm-test-control-plane", "br-ee9c483e", "fa97dd6bd2e32553"),
            ("l2sm-test-worker2", "br-7ff6e8cd", "1b449667fe979cb5"),
        ] {
            let name = switch_name(node, OVERLAY_PROVIDER);
            assert_eq!(name, bridge);
            assert_eq!(dpid_hex(datapath_id(&name)), dpid);
        }
    }

    #[test]
    fn upstream_interface_names() {
        let dpid = datapath_id("br-abb58826");
        assert_eq!(port_interface_name(dpid, 3), "lsa30b63");
        assert_eq!(vxlan_port_name("10.0.0.2"), "vxlan-cb5f3");
    }

    #[test]
    fn port_id_round_trip() {
        let p: PortId = "of:a30b6e801ab54336/3".parse().unwrap();
        assert_eq!(
            p,
            PortId {
                dpid: 0xa30b6e801ab54336,
                port: 3
            }
        );
        assert_eq!(p.to_string(), "of:a30b6e801ab54336/3");
    }

    #[test]
    fn malformed_port_ids_are_rejected() {
        for bad in [
            "",
            "of:",
            "a30b6e801ab54336/3",
            "of:a30b6e801ab54336",
            "of:a30b6e801ab5433/3",
            "of:a30b6e801ab54336/",
            "of:a30b6e801ab54336/x",
            "of:a30b6e801ab54336/0",
            "of:a30b6e801ab54336/-1",
            "of:zz0b6e801ab54336/1",
            "of:a30b6e801ab54336/99999999999",
        ] {
            assert!(bad.parse::<PortId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn network_names() {
        for ok in ["blue", "a", "net-1", "lpm-overlay.x", &"a".repeat(253)] {
            validate_network_name(ok).unwrap();
        }
        for bad in ["", "Blue", "-a", "a-", "a b", "a/b", "ä", &"a".repeat(254)] {
            assert!(validate_network_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
