//! gRPC over HTTP/2 as grpc-go speaks it, for unary calls: method paths, the 5-byte message
//! prefix, status codes and the `grpc-message` percent-encoding (gRPC's PROTOCOL-HTTP2.md).

use std::fmt;

/// Service name.
pub const SERVICE: &str = "nedpb.NedService";
/// Path of `CreateVxlan`.
pub const CREATE_VXLAN_PATH: &str = "/nedpb.NedService/CreateVxlan";
/// Path of `AttachInterface`.
pub const ATTACH_INTERFACE_PATH: &str = "/nedpb.NedService/AttachInterface";
/// Our own service next to upstream's (upstream's contract untouched): the cluster-to-edge
/// hop.
pub const EDGE_SERVICE: &str = "l2sm.edge.v1.EdgeService";
/// Path of `ConnectNetwork`.
pub const CONNECT_NETWORK_PATH: &str = "/l2sm.edge.v1.EdgeService/ConnectNetwork";
/// Path of `DisconnectNetwork`.
pub const DISCONNECT_NETWORK_PATH: &str = "/l2sm.edge.v1.EdgeService/DisconnectNetwork";
/// Content type of every gRPC request and answer.
pub const CONTENT_TYPE: &str = "application/grpc";
/// Largest request message accepted (the four messages are a few dozen bytes; grpc-go's
/// default would be 4 MiB).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Length of the message prefix: compressed flag (1 byte), length (4 bytes, big endian).
pub const PREFIX_LEN: usize = 5;

/// The methods this service serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `/nedpb.NedService/CreateVxlan`.
    CreateVxlan,
    /// `/nedpb.NedService/AttachInterface`.
    AttachInterface,
    /// `/l2sm.edge.v1.EdgeService/ConnectNetwork`.
    ConnectNetwork,
    /// `/l2sm.edge.v1.EdgeService/DisconnectNetwork`.
    DisconnectNetwork,
}

impl Method {
    /// Every method, for closed metric label sets.
    pub const ALL: [Method; 4] = [
        Method::CreateVxlan,
        Method::AttachInterface,
        Method::ConnectNetwork,
        Method::DisconnectNetwork,
    ];

    /// The method's name (metric label).
    pub fn name(self) -> &'static str {
        match self {
            Method::CreateVxlan => "CreateVxlan",
            Method::AttachInterface => "AttachInterface",
            Method::ConnectNetwork => "ConnectNetwork",
            Method::DisconnectNetwork => "DisconnectNetwork",
        }
    }

    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Method::CreateVxlan => CREATE_VXLAN_PATH,
            Method::AttachInterface => ATTACH_INTERFACE_PATH,
            Method::ConnectNetwork => CONNECT_NETWORK_PATH,
            Method::DisconnectNetwork => DISCONNECT_NETWORK_PATH,
        }
    }

    /// The method a request path names, or the status grpc-go answers for that path:
    /// UNIMPLEMENTED with grpc-go's wording (an unknown service, an unknown method such as
    /// `GetNodeName`, which upstream's `ned.proto` declares but its generated code lacks, or a
    /// path that is not `/service/method`).
    pub fn from_path(path: &str) -> Result<Method, Status> {
        match path {
            CREATE_VXLAN_PATH => return Ok(Method::CreateVxlan),
            ATTACH_INTERFACE_PATH => return Ok(Method::AttachInterface),
            CONNECT_NETWORK_PATH => return Ok(Method::ConnectNetwork),
            DISCONNECT_NETWORK_PATH => return Ok(Method::DisconnectNetwork),
            _ => {}
        }
        let malformed = || {
            Status::new(
                Code::Unimplemented,
                format!("malformed method name: {path:?}"),
            )
        };
        let rest = path.strip_prefix('/').ok_or_else(malformed)?;
        let (service, method) = rest.rsplit_once('/').ok_or_else(malformed)?;
        if service == SERVICE || service == EDGE_SERVICE {
            Err(Status::new(
                Code::Unimplemented,
                format!("unknown method {method} for service {service}"),
            ))
        } else {
            Err(Status::new(
                Code::Unimplemented,
                format!("unknown service {service}"),
            ))
        }
    }
}

/// gRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)] // the names are gRPC's
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// Every code, for closed metric label sets.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code of a `grpc-status` value; anything else is UNKNOWN (as gRPC clients read it).
    pub fn from_value(v: &str) -> Code {
        v.parse::<u8>()
            .ok()
            .and_then(|n| Code::ALL.get(usize::from(n)).copied())
            .unwrap_or(Code::Unknown)
    }

    /// The `grpc-status` number.
    pub fn value(self) -> u8 {
        self as u8
    }

    /// The name in upper snake case (metric label, logs).
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// A gRPC status: the code and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The code (`grpc-status`).
    pub code: Code,
    /// The message (`grpc-message`, percent-encoded on the wire).
    pub message: String,
}

impl Status {
    /// A status.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for Status {}

/// Percent-encodes a status message for `grpc-message`: bytes outside printable ASCII
/// (0x20..=0x7e) and `%` itself become `%XX` (upper-case hex), on the UTF-8 bytes.
pub fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a `grpc-message` value; malformed escapes are kept as they are and invalid UTF-8
/// is replaced (a client must not fail on a bad message).
pub fn percent_decode(value: &str) -> String {
    let b = value.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One message with its gRPC prefix (uncompressed).
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + message.len());
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Checks a request body's prefix as soon as its first 5 bytes are known, so a server can
/// stop reading an oversized or compressed message early. `Ok(None)`: fewer than 5 bytes yet.
/// Statuses as grpc-go's: a set compressed flag without `grpc-encoding` is INTERNAL, another
/// flag value INTERNAL, a length above `max` RESOURCE_EXHAUSTED.
pub fn check_prefix(body: &[u8], max: usize) -> Result<Option<usize>, Status> {
    let Some(prefix) = body.get(..PREFIX_LEN) else {
        return Ok(None);
    };
    match prefix[0] {
        0 => {}
        1 => {
            return Err(Status::new(
                Code::Internal,
                "grpc: compressed flag set with identity or empty encoding",
            ))
        }
        other => {
            return Err(Status::new(
                Code::Internal,
                format!("grpc: received unexpected payload format {other}"),
            ))
        }
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > max {
        return Err(Status::new(
            Code::ResourceExhausted,
            format!("grpc: received message larger than max ({len} vs. {max})"),
        ));
    }
    Ok(Some(len))
}

/// The single message of a unary request body (all of it): exactly one uncompressed
/// message of at most `max` bytes.
pub fn unary_message(body: &[u8], max: usize) -> Result<&[u8], Status> {
    let len = check_prefix(body, max)?.ok_or_else(|| {
        Status::new(
            Code::Internal,
            if body.is_empty() {
                "grpc: no request message for unary RPC"
            } else {
                "grpc: request ends inside the message prefix"
            },
        )
    })?;
    let rest = &body[PREFIX_LEN..];
    if rest.len() < len {
        return Err(Status::new(
            Code::Internal,
            format!(
                "grpc: request ends inside the message ({} of {len} bytes)",
                rest.len()
            ),
        ));
    }
    if rest.len() > len {
        return Err(Status::new(
            Code::Internal,
            "grpc: server received more than one request message for unary RPC",
        ));
    }
    Ok(rest)
}

/// The status grpc-go answers for a request whose `grpc-encoding` it has no decompressor
/// for (`None`: identity or absent, fine).
pub fn check_encoding(grpc_encoding: Option<&str>) -> Result<(), Status> {
    match grpc_encoding {
        None | Some("identity") | Some("") => Ok(()),
        Some(other) => Err(Status::new(
            Code::Unimplemented,
            format!("grpc: Decompressor is not installed for grpc-encoding {other:?}"),
        )),
    }
}
