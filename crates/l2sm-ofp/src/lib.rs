//! OpenFlow 1.3 codec for L2S-M: message types, `encode` and `decode`, no I/O.

mod types;
pub use types::*;
