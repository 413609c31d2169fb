//! The node agent's local API: one JSON object per line over a unix socket, one request per
//! connection. Used by the lab CLI now and by the CNI plugin; small enough to call from a
//! synchronous process.

#![warn(clippy::unwrap_used)] // input paths answer with errors; tests may unwrap

use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A request to the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AgentRequest {
    /// Plumb an interface into a pod and join it to a network.
    Attach(AttachRequest),
    /// Undo an attach. Unknown ids succeed (idempotent).
    Detach {
        /// The attachment to remove.
        attachment_id: String,
    },
    /// All attachments on this node.
    List,
    /// Node, bridge and link summary.
    Status,
}

/// Parameters of an attach.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachRequest {
    /// Caller-chosen id; a repeated attach with the same id returns the same port.
    pub attachment_id: String,
    /// Path of the pod's network namespace.
    pub netns: PathBuf,
    /// Interface name inside the pod.
    pub ifname: String,
    /// Network to join.
    pub network: String,
    /// MAC address for the pod interface (default: kernel-chosen).
    #[serde(default)]
    pub mac: Option<String>,
    /// Addresses with prefix length.
    #[serde(default)]
    pub ips: Vec<ipnet::IpNet>,
    /// Routes to add in the pod through this interface.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// MTU (default: the agent's).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Pod name, recorded for humans.
    #[serde(default)]
    pub pod: Option<String>,
    /// Port security of this interface, overriding its network's (absent: the network's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// Attach as `network`'s mirror port (an IDS): the interface receives a copy of every
    /// frame of the network and is never a member, so nothing it sends enters the network.
    /// No addresses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror: bool,
}

/// A route in the pod (CNI's `routes` entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination prefix.
    pub dst: ipnet::IpNet,
    /// Next hop; on-link when absent.
    #[serde(default)]
    pub gw: Option<std::net::IpAddr>,
}

/// A pod interface joined to a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    /// Caller-chosen id.
    pub attachment_id: String,
    /// Network name.
    pub network: String,
    /// Interface name inside the pod.
    pub ifname: String,
    /// Node-side interface name (the OVS port).
    pub host_ifname: String,
    /// Switch port as the controller knows it: `of:<dpid>/<n>`.
    pub port: String,
    /// OpenFlow port number.
    pub ofport: u32,
    /// MAC of the pod interface.
    pub mac: String,
    /// Addresses of the pod interface.
    pub ips: Vec<ipnet::IpNet>,
    /// Pod name, if given.
    #[serde(default)]
    pub pod: Option<String>,
    /// Port security asked for this interface (absent: its network's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// The interface is `network`'s mirror port, not a member.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror: bool,
}

/// Agent status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Node name.
    pub node: String,
    /// Bridge name.
    pub bridge: String,
    /// Datapath id, `of:<16 hex>`.
    pub dpid: String,
    /// Tunnel ports: name -> remote IP.
    pub tunnels: Vec<(String, String)>,
    /// Number of attachments.
    pub attachments: usize,
}

/// The reply envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Error message when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Result when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// Why a call to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The agent could not be reached (not running, socket missing, timeout).
    #[error("node agent at {path} is unreachable: {source}")]
    Unreachable {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The agent answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The agent's answer made no sense.
    #[error("bad answer from the node agent: {0}")]
    Protocol(String),
}

/// Sends one request and waits for the answer (blocking).
pub fn call(
    socket: &Path,
    req: &AgentRequest,
    timeout: Duration,
) -> Result<serde_json::Value, CallError> {
    let unreachable = |source| CallError::Unreachable {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(unreachable)?;
    let mut line = serde_json::to_string(req).map_err(|e| CallError::Protocol(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(unreachable)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(unreachable)?;
    let reply: Reply = serde_json::from_str(&answer)
        .map_err(|e| CallError::Protocol(format!("{e} in {answer:?}")))?;
    if reply.ok {
        Ok(reply.result.unwrap_or(serde_json::Value::Null))
    } else {
        Err(CallError::Refused(
            reply.error.unwrap_or_else(|| "unknown error".into()),
        ))
    }
}

/// Addresses as `a/p,b/q` (empty when there are none).
pub fn join_ips(ips: &[ipnet::IpNet]) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
