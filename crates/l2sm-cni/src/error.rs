//! CNI errors: the spec's well-known codes and the JSON printed on stdout.

use serde_json::{json, Value};

/// Incompatible CNI version.
pub(crate) const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration (the message names key and value).
pub(crate) const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or does not exist: the runtime need not clean up.
pub(crate) const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variables (the message names them).
pub(crate) const INVALID_ENV: u32 = 4;
/// I/O failure.
pub(crate) const IO_FAILURE: u32 = 5;
/// Failed to decode content (configuration, prevResult).
pub(crate) const DECODE_FAILURE: u32 = 6;
/// Invalid network configuration.
pub(crate) const INVALID_CONFIG: u32 = 7;
/// Transient: the runtime should retry later.
pub(crate) const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin cannot serve ADD now.
pub(crate) const NOT_AVAILABLE: u32 = 50;
/// STATUS: not available, and existing containers may have limited connectivity.
pub(crate) const LIMITED_CONNECTIVITY: u32 = 51;
/// Anything else (the code libcni and the reference plugins use for internal errors).
pub(crate) const INTERNAL: u32 = 999;

/// A CNI error: printed as JSON on stdout, with a non-zero exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: Option<String>,
}

impl CniError {
    pub(crate) fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: None,
        }
    }

    pub(crate) fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = Some(details.into());
        self
    }

    pub(crate) fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({"cniVersion": cni_version, "code": self.code, "msg": self.msg});
        if let Some(d) = &self.details {
            v["details"] = json!(d);
        }
        v
    }
}

/// Shorthand constructors.
pub(crate) fn config(msg: impl Into<String>) -> CniError {
    CniError::new(INVALID_CONFIG, msg)
}

pub(crate) fn env(msg: impl Into<String>) -> CniError {
    CniError::new(INVALID_ENV, msg)
}

pub(crate) fn internal(msg: impl Into<String>) -> CniError {
    CniError::new(INTERNAL, msg)
}
