//! The native API under `/api/v1`: what each endpoint takes and answers. The controller
//! serialises these types and the client deserialises them, so the two cannot drift.

use l2sm_pipeline::ids::PortId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Address management of a network, as the controller keeps and shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IpamView {
    /// Subnets, at most one IPv4 and one IPv6.
    pub cidrs: Vec<ipnet::IpNet>,
    /// Ranges dynamic addresses come from (upstream `podAddressRange`); each inside a CIDR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_ranges: Vec<ipnet::IpNet>,
    /// Addresses never handed out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<IpAddr>,
    /// Address -> owner.
    #[serde(default)]
    pub allocations: BTreeMap<IpAddr, String>,
    /// Owner -> the switch port it is attached to, when the requester said so (the agent
    /// does): lets the API show each membership with its addresses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, PortId>,
}

/// One network (`GET /api/v1/networks`, `GET /api/v1/networks/{name}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkView {
    /// Name.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// 802.1Q id on trunk links.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// Member ports, `of:<16 hex>/<n>`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Mirror port, if any.
    #[serde(default)]
    pub mirror_port: Option<String>,
    /// Address management, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamView>,
    /// Port security on the network's member ports (a port's owner may override it).
    #[serde(default)]
    pub port_security: bool,
    /// Abuse limits of its pod ports, as in effect (the defaults unless set).
    #[serde(default)]
    pub limits: NetworkLimits,
    /// The network's own DNS server, reachable from its pods (networks with a CIDR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<NetworkDnsView>,
}

/// Where a network's pods reach its names (`dns` of a network): a reserved address of its
/// IPv4 CIDR that the switches hand to the controller, answering ARP with `mac`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkDnsView {
    /// The reserved IPv4 address (UDP port 53), with an IPv4 CIDR: never allocated to a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::Ipv4Addr>,
    /// The reserved IPv6 address (UDP port 53), with an IPv6 CIDR: never allocated to a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<std::net::Ipv6Addr>,
    /// The MAC it answers ARP with (locally administered, derived from the VNI).
    pub mac: String,
}

/// Abuse limits of a network's pod ports (`limits` of a network, body of
/// `PUT /api/v1/networks/{name}/limits`); a field left out takes its default, 0 turns a limit
/// off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkLimits {
    /// MAC addresses learned behind each pod port, at most (0: no cap). Frames from further
    /// source MACs are dropped and counted.
    pub mac_limit: u32,
    /// Broadcast, multicast and unknown-unicast frames each pod port may flood, packets/s
    /// (0: no meter).
    pub flood_pps: u32,
    /// Burst of the flood meter, packets.
    pub flood_burst: u32,
}

impl NetworkLimits {
    /// Largest `macLimit`.
    pub const MAX_MAC_LIMIT: u32 = 1 << 20;
    /// Largest `floodPps` and `floodBurst`.
    pub const MAX_FLOOD: u32 = 100_000_000;

    /// Why these limits are refused, if they are.
    pub fn check(&self) -> Result<(), String> {
        if self.mac_limit > Self::MAX_MAC_LIMIT {
            return Err(format!(
                "macLimit {} is above {}",
                self.mac_limit,
                Self::MAX_MAC_LIMIT
            ));
        }
        for (name, v) in [
            ("floodPps", self.flood_pps),
            ("floodBurst", self.flood_burst),
        ] {
            if v > Self::MAX_FLOOD {
                return Err(format!("{name} {v} is above {}", Self::MAX_FLOOD));
            }
        }
        Ok(())
    }
}

impl Default for NetworkLimits {
    /// The pipeline's defaults (`l2sm_pipeline::limits`).
    fn default() -> Self {
        let d = l2sm_pipeline::limits::Limits::default();
        NetworkLimits {
            mac_limit: d.mac_limit,
            flood_pps: d.flood_pps,
            flood_burst: d.flood_burst,
        }
    }
}

impl From<NetworkLimits> for l2sm_pipeline::limits::Limits {
    fn from(l: NetworkLimits) -> Self {
        l2sm_pipeline::limits::Limits {
            mac_limit: l.mac_limit,
            flood_pps: l.flood_pps,
            flood_burst: l.flood_burst,
        }
    }
}

/// Body of `POST /api/v1/networks`: a name, and address management when `cidrs` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateNetwork {
    /// Network name.
    pub name: String,
    /// Subnets (one IPv4, one IPv6 at most).
    #[serde(default)]
    pub cidrs: Vec<ipnet::IpNet>,
    /// Ranges inside them for dynamic addresses.
    #[serde(default)]
    pub pod_ranges: Vec<ipnet::IpNet>,
    /// Addresses never handed out.
    #[serde(default)]
    pub exclude: Vec<IpAddr>,
    /// Port security on the member ports: each sends only from its reported MAC and
    /// addresses (see `PortOwnerRequest`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub port_security: bool,
    /// Abuse limits of its pod ports (the defaults when left out; `null` is refused, as the
    /// document says: an object or nothing).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub limits: Option<NetworkLimits>,
}

/// Body of `POST /api/v1/networks/{name}/allocations` and `…/release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllocationRequest {
    /// Who holds the addresses (`cni/<container id>/<ifname>` for CNI).
    pub owner: String,
    /// Static addresses asked for; none means one dynamic address per CIDR.
    #[serde(default)]
    pub ips: Vec<ipnet::IpNet>,
    /// Switch port the owner is (being) attached to, `of:<16 hex>/<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// Answer to an allocation: the owner's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocated {
    /// Addresses with their prefix length.
    pub ips: Vec<ipnet::IpNet>,
}

/// Answer to a release or a garbage collection: how many addresses were freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// Addresses freed.
    pub released: usize,
}

/// Body of `POST /api/v1/ipam/gc`: free what owners with this prefix hold unless listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GcRequest {
    /// Owners this collection is about (e.g. `cni/`).
    pub owner_prefix: String,
    /// Owners that are still in use.
    pub valid_owners: Vec<String>,
}

/// Body of `PUT /api/v1/switches/{dpid}/ports/{port}/owner`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortOwnerRequest {
    /// Pod (`namespace/name`) the port belongs to, when known.
    #[serde(default)]
    pub pod: Option<String>,
    /// Attachment id (`cni/<container id>/<ifname>`).
    pub attachment: String,
    /// Interface name inside the pod.
    #[serde(default)]
    pub interface: String,
    /// MAC of the pod interface (`xx:xx:xx:xx:xx:xx`, unicast): with port security the only
    /// source MAC the port may use. A port with port security and no MAC forwards nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Addresses of the pod interface (with or without prefix length): with port security the
    /// port may use these and its IPAM allocations as source addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Port security of this port, overriding its network's (`null`/absent: the network's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
}

/// Body of `POST /api/v1/switches/{dpid}/ports/{port}/wait`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WaitRequest {
    /// Network the port must be programmed in.
    pub network: String,
    /// Longest wait (the controller caps it at [`MAX_WAIT_MS`]).
    #[serde(default = "default_wait_ms")]
    pub timeout_ms: u64,
}

/// Wait of a [`WaitRequest`] that names none.
pub const DEFAULT_WAIT_MS: u64 = 2000;

/// Longest wait a [`WaitRequest`] may ask for.
pub const MAX_WAIT_MS: u64 = 10_000;

fn default_wait_ms() -> u64 {
    DEFAULT_WAIT_MS
}

/// Answer to a successful wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Programmed {
    /// Always true (a wait that times out answers 504).
    pub programmed: bool,
    /// Other switches that had not confirmed the network's state when the wait ended
    /// (`of:<dpid>`); empty when every connected switch had.
    #[serde(default)]
    pub pending_switches: Vec<String>,
}

/// An optional field that, when present, must hold a value (not `null`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Body of `POST /api/v1/settle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SettleRequest {
    /// Longest wait (the controller caps it at [`MAX_WAIT_MS`]).
    #[serde(default = "default_wait_ms")]
    pub timeout_ms: u64,
}

/// Answer of `POST /api/v1/settle`: every connected switch holds every change made before the
/// request (model and links), confirmed by barrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    /// Always true (a wait that times out answers 504).
    pub settled: bool,
    /// Connected switches waited for.
    pub switches: usize,
}

/// Body of `POST /api/v1/switches/{dpid}/ports/{port}/move`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// Network the port leaves.
    pub from: String,
    /// Network the port joins.
    pub to: String,
}

/// Body of `PUT /api/v1/switches/{dpid}/ports/{port}/mirror`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorRequest {
    /// Network whose frames the port receives a copy of.
    pub network: String,
}

/// Answer to a move.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// False when the port was in the target already (a repeated request).
    pub moved: bool,
    /// The network the port is in now.
    pub network: String,
}

/// A connected switch (`GET /api/v1/switches`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchStatus {
    /// Datapath id as `of:<16 hex>`.
    pub id: String,
    /// Remote address of the connection.
    #[serde(default)]
    pub peer: String,
    /// Ports as reported by the switch.
    #[serde(default)]
    pub ports: Vec<PortStatusView>,
    /// Flows the controller installed (learned entries excluded).
    #[serde(default)]
    pub flows: usize,
    /// Groups the controller installed.
    #[serde(default)]
    pub groups: usize,
}

/// One switch port in [`SwitchStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatusView {
    /// OpenFlow port number.
    pub number: u32,
    /// Interface name.
    #[serde(default)]
    pub name: String,
    /// `tunnel`, `trunk` or `port`.
    #[serde(default)]
    pub kind: String,
    /// Link up and port not administratively down.
    #[serde(default)]
    pub live: bool,
}

/// One configured link with its liveness and health (`GET /api/v1/links`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    /// Switch at one end.
    pub a: String,
    /// Its port (0 while that switch has no session).
    pub a_port: u32,
    /// Switch at the other end.
    pub b: String,
    /// Its port.
    pub b_port: u32,
    /// `tunnel` or `trunk`.
    pub kind: String,
    /// Carries traffic: ports up and LLDP probes arriving both ways.
    #[serde(default = "yes")]
    pub live: bool,
    /// `up`, `port down` or `no probes`.
    #[serde(default)]
    pub state: String,
    /// LLDP probes arrived both ways lately: the link has carried frames (a link is used as
    /// soon as both ports exist, before any probe).
    #[serde(default)]
    pub probed: bool,
    /// Name of the link in the topology: `n1--n2` (tunnel), `n1:if1--n2:if2` (trunk); the
    /// `link` label of the link metrics.
    #[serde(default)]
    pub id: String,
    /// Health of the direction from `a` to `b`.
    #[serde(default)]
    pub ab: LinkHealthView,
    /// Health of the direction from `b` to `a`.
    #[serde(default)]
    pub ba: LinkHealthView,
}

/// The health of one direction of a link, measured by the controller's LLDP probes (latency,
/// jitter, loss) and the port counters of the link ports (throughput, errors, drops). `None`
/// where nothing was measured yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkHealthView {
    /// Mean one-way latency of the recent probes, milliseconds.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Mean difference between consecutive probes' latencies, milliseconds.
    #[serde(default)]
    pub jitter_ms: Option<f64>,
    /// Share (0 to 1) of the last probes sent that never arrived.
    #[serde(default)]
    pub loss: Option<f64>,
    /// Probes lost among `judged`.
    #[serde(default)]
    pub lost: u64,
    /// Probes judged for loss (the last 60 sent, the one in flight excepted).
    #[serde(default)]
    pub judged: u64,
    /// Latency samples behind `latencyMs` and `jitterMs`.
    #[serde(default)]
    pub samples: u64,
    /// Bits per second that crossed the link, between the last two readings of the receiving
    /// port's counters (the sending port's while the receiver's are missing).
    #[serde(default)]
    pub bits_per_second: Option<f64>,
    /// Bytes that crossed the link (the receiving port's counter, or the sending port's).
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Transmit errors at the sending port plus receive errors at the receiving one.
    #[serde(default)]
    pub errors: Option<u64>,
    /// Transmit drops at the sending port plus receive drops at the receiving one.
    #[serde(default)]
    pub dropped: Option<u64>,
}

fn yes() -> bool {
    true
}

/// One port of a connected switch (`GET /api/v1/ports`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortView {
    /// `of:<16 hex>/<n>`.
    pub id: String,
    /// Datapath id, `of:<16 hex>`.
    pub switch: String,
    /// OpenFlow port number.
    pub port: u32,
    /// Interface name.
    pub name: String,
    /// `port`, `tunnel` or `trunk`.
    pub kind: String,
    /// Link up and not administratively down.
    pub up: bool,
    /// Network the port is a member of.
    pub network: Option<String>,
    /// Whether the port is a network's mirror port.
    pub mirror: bool,
    /// Network it mirrors.
    pub mirror_of: Option<String>,
    /// Pod (`namespace/name`) the member port belongs to, when its agent reported it.
    pub pod: Option<String>,
    /// Attachment id of the member port's owner.
    pub attachment: Option<String>,
    /// Interface name inside the pod.
    pub interface: Option<String>,
}

/// One network membership (`GET /api/v1/attachments`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentView {
    /// Network name.
    pub network: String,
    /// Member port, `of:<16 hex>/<n>`.
    pub port: String,
    /// The network's VNI.
    #[serde(default)]
    pub vni: u32,
    /// The network's 802.1Q id on trunks.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// Whether the port's switch is connected.
    #[serde(default)]
    pub connected: bool,
    /// Interface name, when the switch is connected and reports the port.
    #[serde(default)]
    pub name: Option<String>,
    /// IPAM owner attached to this port (CNI attachment id), when known.
    #[serde(default)]
    pub owner: Option<String>,
    /// Addresses the owner holds.
    #[serde(default)]
    pub ips: Vec<ipnet::IpNet>,
    /// Pod (`namespace/name`) the port belongs to, when its agent reported it.
    #[serde(default)]
    pub pod: Option<String>,
    /// Attachment id the agent reported for the port (`cni/<container>/<ifname>`).
    #[serde(default)]
    pub attachment: Option<String>,
    /// Interface name inside the pod.
    #[serde(default)]
    pub interface: Option<String>,
    /// Whether the port has port security (its network's setting or its own override).
    #[serde(default)]
    pub port_security: bool,
    /// MAC its agent reported.
    #[serde(default)]
    pub mac: Option<String>,
    /// What port security admits from the port: its MAC and the source addresses it may use
    /// (absent without port security; `mac` null while the MAC is unknown: nothing admitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<PortBindingView>,
}

/// What a port with port security may send (`AttachmentView::binding`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBindingView {
    /// The only source MAC admitted; `None` while unknown (the port forwards nothing).
    pub mac: Option<String>,
    /// Source addresses admitted (the IPv6 link-local address derived from the MAC included);
    /// empty: only the MAC is checked.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}
