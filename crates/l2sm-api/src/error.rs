//! The error body every controller endpoint answers with.

use serde::{Deserialize, Serialize};

/// `{"error": "...", "code": N, "message": "..."}`: `error` for native clients, `code` and
/// `message` in the shape ONOS uses for upstream's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One line for a person (the same text as `message`).
    #[serde(default)]
    pub error: String,
    /// The HTTP status code.
    #[serde(default)]
    pub code: u16,
    /// One line for a person.
    pub message: String,
}

impl ErrorBody {
    /// The body of an error answer with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        let message = message.into();
        ErrorBody {
            error: message.clone(),
            code: status,
            message,
        }
    }

    /// The message of an error answer's body, or its text when it is not an [`ErrorBody`].
    pub fn message_of(body: &[u8]) -> String {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => e.message,
            Err(_) => String::from_utf8_lossy(body).trim().to_string(),
        }
    }
}
