//! The one error type of the crate.

use serde_json::Value;

/// Everything that can go wrong talking to an OVSDB server.
///
/// The variants separate *where* a failure happened, because callers react differently:
/// [`Error::Closed`] means "reconnect", [`Error::Transaction`] means "the server refused
/// this change" (RFC 7047 §4.1.3), [`Error::Rpc`] means the request itself was rejected
/// (RFC 7047 §4.1, the JSON-RPC `error` member).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting, reading or writing the socket failed. The message names the socket
    /// path when it is known.
    #[error("OVSDB I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The connection is gone (server closed it, a read/write failed, or the peer sent
    /// something that is not JSON). Calls in flight fail with this too.
    #[error("OVSDB connection closed")]
    Closed,
    /// A value could not be encoded or decoded as JSON.
    #[error("OVSDB JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// The server answered with a non-null JSON-RPC `error` member (e.g. unknown database,
    /// duplicate monitor id, unknown method). ovsdb-server sends either a string or an
    /// `{"error", "details"}` object here.
    #[error("OVSDB JSON-RPC error: {error}")]
    Rpc {
        /// The `error` member as sent by the server.
        error: Value,
    },
    /// One operation of a `transact` failed (RFC 7047 §4.1.3). `index` is the position of
    /// the failing operation in the request; `index == ops.len()` means every operation
    /// succeeded but the commit failed (e.g. a "constraint violation" or "referential
    /// integrity violation").
    #[error("OVSDB transaction failed at operation {index}: {error}: {details}")]
    Transaction {
        /// Index of the failing operation (or `ops.len()` for a commit failure).
        index: usize,
        /// The short RFC 7047 §3.1 error tag, e.g. "constraint violation".
        error: String,
        /// The server's human-readable explanation (empty when absent).
        details: String,
    },
    /// The server sent something that does not follow RFC 7047.
    #[error("OVSDB protocol error: {0}")]
    Protocol(String),
    /// The database schema lacks something we rely on, or is malformed.
    #[error("OVSDB schema error: {0}")]
    Schema(String),
    /// No answer arrived in time.
    #[error("OVSDB request timed out")]
    Timeout,
}
