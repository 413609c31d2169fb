//! Errors of [`encode`](crate::encode) and [`decode`](crate::decode).
//!
//! Every variant names the structure it failed on (`context` is the message, such as
//! `flow_mod`; `item` is the part inside it, such as `instruction`), because a switch
//! session usually only logs the error and the log line must point at the culprit.

/// A byte buffer that is not a valid OpenFlow 1.3 message (or not one this codec knows).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The declared `ofp_header.length` is below the 8 bytes of the header itself, so a
    /// stream can never resynchronise on it.
    #[error("ofp_header: declared length {0} is shorter than the 8-byte header")]
    LengthBelowHeader(u16),
    /// `decode` takes exactly one message: the buffer must be as long as the header says.
    #[error("ofp_header: declared length {declared} does not match buffer length {actual}")]
    LengthMismatch {
        /// Length in `ofp_header.length`.
        declared: u16,
        /// Length of the buffer.
        actual: usize,
    },
    /// A version other than 0x04 on anything but a HELLO.
    #[error("unsupported openflow version {0:#04x} (only hello is accepted in other versions)")]
    UnsupportedVersion(u8),
    /// A structure ends before its fixed part or its declared length does.
    #[error("{context}: {item} truncated: need {needed} bytes, {available} available")]
    Truncated {
        /// Message or structure being decoded (e.g. `flow_mod`).
        context: &'static str,
        /// Part of it at fault (e.g. `instruction`).
        item: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// OpenFlow aligns instructions, actions, buckets and stats entries to 8 bytes.
    #[error("{context}: {item} length {len} is not a multiple of 8")]
    Misaligned {
        /// Message or structure being decoded (e.g. `flow_mod`).
        context: &'static str,
        /// Part of it at fault (e.g. `instruction`).
        item: &'static str,
        /// Its declared length.
        len: usize,
    },
    /// A TLV whose declared length is smaller than its own fixed part.
    #[error("{context}: {item} length {len} is shorter than the {min}-byte minimum")]
    TooShort {
        /// Message or structure being decoded (e.g. `flow_mod`).
        context: &'static str,
        /// Part of it at fault (e.g. `instruction`).
        item: &'static str,
        /// Its declared length.
        len: usize,
        /// Size of its fixed part.
        min: usize,
    },
    /// A fixed-size structure with a different declared or actual length.
    #[error("{context}: {item} length {len} differs from the expected {expected}")]
    WrongLength {
        /// Message or structure being decoded (e.g. `flow_mod`).
        context: &'static str,
        /// Part of it at fault (e.g. `instruction`).
        item: &'static str,
        /// Its declared or actual length.
        len: usize,
        /// The length its type requires.
        expected: usize,
    },
    /// An enumerated field holds a value outside its enumeration.
    #[error("{context}: {item} value {value:#x} is not valid")]
    BadValue {
        /// Message or structure being decoded (e.g. `flow_mod`).
        context: &'static str,
        /// Part of it at fault (e.g. `instruction`).
        item: &'static str,
        /// The value found.
        value: u64,
    },
    /// Bytes left over where the structure must end.
    #[error("{context}: {count} unexpected bytes after {item}")]
    TrailingBytes {
        /// Message or structure being decoded (e.g. `flow_mod`).
        context: &'static str,
        /// Part after which nothing should follow.
        item: &'static str,
        /// Number of bytes left over.
        count: usize,
    },
    /// Any other structural violation.
    #[error("{context}: {detail}")]
    Invalid {
        /// Message or structure being decoded (e.g. `flow_mod`).
        context: &'static str,
        /// What is wrong.
        detail: &'static str,
    },
}

/// A message that cannot be put on the wire as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A length does not fit its wire field (`u16` for messages and TLVs, `u8` for OXM
    /// payloads, 11 bits for learn `n_bits`, fixed-size strings).
    #[error("{context}: {item} length {len} exceeds the maximum {max}")]
    TooLong {
        /// Message or structure being encoded (e.g. `flow_mod`).
        context: &'static str,
        /// Part of it at fault (e.g. `instruction`).
        item: &'static str,
        /// Length it would need.
        len: usize,
        /// Largest length the wire field holds.
        max: usize,
    },
    /// A value OpenFlow 1.3 cannot express.
    #[error("{context}: {detail}")]
    Unrepresentable {
        /// Message or structure being encoded (e.g. `flow_mod`).
        context: &'static str,
        /// What cannot be expressed.
        detail: String,
    },
}

pub(crate) type DecodeResult<T> = Result<T, DecodeError>;
pub(crate) type EncodeResult<T> = Result<T, EncodeError>;
