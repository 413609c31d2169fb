//! Who may call the API: identities (admin, one agent per node, reader), the users file they
//! come from, and the authorization of each request by role.
//!
//! Users file (`--api-users FILE`): one user per line, fields separated by blanks, `#` starts
//! a comment:
//!
//! ```text
//! # name      role           salt (hex)  sha256(salt ‖ password) (hex)
//! operator    admin          5a1f…       9c0e…
//! node-a      agent:node-a   77b2…       41d9…
//! prometheus  reader         0c33…       e8a0…
//! ```
//!
//! Passwords are random tokens (the lab makes 32 random bytes per user), so one salted SHA-256
//! is enough to keep them off the disk; hashes are compared in constant time.

use super::{error, ApiError};
use axum::http::{Method, StatusCode};
use l2sm_pipeline::ids;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use subtle::ConstantTimeEq as _;

/// What an authenticated caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything (operator, CLI, upstream's operator over Basic auth).
    Admin,
    /// A node's agent: ports of that node's switch, addresses, waits, reads.
    Agent(String),
    /// Reads only (`GET`, `HEAD`), `/metrics` included.
    Reader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::Agent(node) => write!(f, "agent:{node}"),
            Role::Reader => f.write_str("reader"),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "reader" => Ok(Role::Reader),
            _ => match s.strip_prefix("agent:") {
                Some(node) if valid_node(node) => Ok(Role::Agent(node.to_string())),
                Some(node) => Err(format!("invalid node name {node:?}")),
                None => Err(format!(
                    "unknown role {s:?} (expected admin, reader or agent:<node>)"
                )),
            },
        }
    }
}

/// Node names as Kubernetes spells them (DNS subdomain characters), at most 253 bytes.
fn valid_node(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 253
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name (or `cert:<node>` for a client certificate).
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Identity {
    /// The datapath id of the switch an agent identity may change; `None` for other roles.
    pub fn own_dpid(&self) -> Option<u64> {
        match &self.role {
            Role::Agent(node) => Some(node_dpid(node)),
            _ => None,
        }
    }
}

/// Datapath id of `node`'s overlay switch (as the agent and the operator derive it).
pub fn node_dpid(node: &str) -> u64 {
    ids::datapath_id(&ids::switch_name(node, ids::OVERLAY_PROVIDER))
}

/// The node a client certificate names (SAN URI `urn:l2sm:node:<name>`), parsed as the
/// OpenFlow listener does, if it is a valid node name.
pub(super) fn node_of_certificate(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<String> {
    crate::identity::node_of_certificate(cert).filter(|node| valid_node(node))
}

/// One user of the users file.
#[derive(Clone)]
struct User {
    role: Role,
    salt: Vec<u8>,
    hash: [u8; 32],
}

/// A users file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// It cannot be read.
    #[error("cannot read users file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("users file line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

/// Every identity the API accepts over HTTP Basic authentication.
#[derive(Clone, Default)]
pub struct Users {
    by_name: BTreeMap<String, User>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `sha256(salt ‖ password)`.
fn digest(salt: &[u8], password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password);
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// The users-file line of `name` with `role` and `password`, hashed with `salt`.
pub fn users_file_line(name: &str, role: &Role, password: &str, salt: &[u8]) -> String {
    format!(
        "{name} {role} {} {}",
        hex(salt),
        hex(&digest(salt, password.as_bytes()))
    )
}

impl Users {
    /// Parses a users file (format in the module documentation).
    pub fn parse(text: &str) -> Result<Users, UsersError> {
        let mut users = Users::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: String| UsersError::Line { line: i + 1, why };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, salt, hash] = fields[..] else {
                return Err(bad(format!(
                    "expected 4 fields (name role salt hash), found {}",
                    fields.len()
                )));
            };
            if name.contains(':') {
                return Err(bad(format!("user name {name:?} contains ':'")));
            }
            let role: Role = role.parse().map_err(bad)?;
            let salt = unhex(salt).ok_or_else(|| bad("salt is not hex".into()))?;
            let hash: [u8; 32] = unhex(hash)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| bad("hash is not 64 hex digits".into()))?;
            if users.by_name.contains_key(name) {
                return Err(bad(format!("user {name:?} appears twice")));
            }
            users
                .by_name
                .insert(name.to_string(), User { role, salt, hash });
        }
        Ok(users)
    }

    /// Reads and parses the users file at `path`.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Users::parse(&text)
    }

    /// Adds (or replaces) a user with a clear-text password (the `--api-user` admin).
    pub fn insert(&mut self, name: &str, password: &str, role: Role) {
        let salt = name.as_bytes().to_vec();
        let hash = digest(&salt, password.as_bytes());
        self.by_name
            .insert(name.to_string(), User { role, salt, hash });
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there is no user at all.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The identity of `name` when `password` is its password. Unknown names cost one hash
    /// too, and hashes are compared in constant time.
    pub fn authenticate(&self, name: &str, password: &[u8]) -> Option<Identity> {
        match self.by_name.get(name) {
            Some(user) => {
                let given = digest(&user.salt, password);
                bool::from(given.ct_eq(&user.hash)).then(|| Identity {
                    name: name.to_string(),
                    role: user.role.clone(),
                })
            }
            None => {
                let _ = digest(name.as_bytes(), password);
                None
            }
        }
    }
}

/// What an agent's request touches, for [`authorize`].
pub(super) enum Touches {
    /// Nothing beyond what the route names.
    Nothing,
    /// These switches (datapath ids) of ports in the path or body.
    Switches(Vec<u64>),
}

/// Whether `identity` may call `method` on `route` (the route template) touching `touches`;
/// a 403 saying why otherwise.
pub(super) fn authorize(
    identity: &Identity,
    method: &Method,
    route: &str,
    touches: &Touches,
) -> Result<(), ApiError> {
    let read = method == Method::GET || method == Method::HEAD;
    match &identity.role {
        Role::Admin => Ok(()),
        Role::Reader if read => Ok(()),
        Role::Reader => Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "user {:?} is read-only: {method} {route} is refused",
                identity.name
            ),
        )),
        Role::Agent(node) => {
            if read || AGENT_WRITES.contains(&(method.as_str(), route)) {
                let own = node_dpid(node);
                if let Touches::Switches(dpids) = touches {
                    if let Some(other) = dpids.iter().find(|d| **d != own) {
                        return Err(error(
                            StatusCode::FORBIDDEN,
                            format!(
                                "the agent of node {node:?} may only change ports of its own switch of:{} (not of:{})",
                                ids::dpid_hex(own),
                                ids::dpid_hex(*other)
                            ),
                        ));
                    }
                }
                return Ok(());
            }
            Err(error(
                StatusCode::FORBIDDEN,
                format!("the agent of node {node:?} may not call {method} {route}"),
            ))
        }
    }
}

/// The writes an agent identity may make (ports only of its own switch).
const AGENT_WRITES: &[(&str, &str)] = &[
    ("POST", "/onos/vnets/api/port"),
    ("DELETE", "/onos/vnets/api/port"),
    ("POST", "/api/v1/networks/{network_id}/allocations"),
    ("POST", "/api/v1/networks/{network_id}/release"),
    ("PUT", "/api/v1/switches/{dpid}/ports/{port}/owner"),
    ("DELETE", "/api/v1/switches/{dpid}/ports/{port}/owner"),
    ("POST", "/api/v1/switches/{dpid}/ports/{port}/move"),
    ("POST", "/api/v1/switches/{dpid}/ports/{port}/wait"),
    // An IDS pod's port on its own switch; never taking another port's mirror.
    ("PUT", "/api/v1/switches/{dpid}/ports/{port}/mirror"),
    ("DELETE", "/api/v1/switches/{dpid}/ports/{port}/mirror"),
    ("POST", "/api/v1/settle"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_round_trip_and_errors() {
        let text = format!(
            "# users\n{}\n\n{}  # comment\n{}\n",
            users_file_line("op", &Role::Admin, "pw1", b"s1"),
            users_file_line("node-a", &Role::Agent("node-a".into()), "pw2", b"s2"),
            users_file_line("prom", &Role::Reader, "pw3", b"s3"),
        );
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(users.authenticate("op", b"pw1").unwrap().role, Role::Admin);
        assert_eq!(
            users.authenticate("node-a", b"pw2").unwrap().role,
            Role::Agent("node-a".into())
        );
        assert_eq!(
            users.authenticate("prom", b"pw3").unwrap().role,
            Role::Reader
        );
        assert!(users.authenticate("op", b"pw2").is_none());
        assert!(users.authenticate("nobody", b"pw1").is_none());
        for bad in [
            "a admin 00",
            "a boss 00 0000000000000000000000000000000000000000000000000000000000000000",
            "a admin zz 0000000000000000000000000000000000000000000000000000000000000000",
            "a admin 00 0000",
            "a agent: 00 0000000000000000000000000000000000000000000000000000000000000000",
            "a:b admin 00 0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(
                matches!(Users::parse(bad), Err(UsersError::Line { line: 1, .. })),
                "{bad}"
            );
        }
    }
}
