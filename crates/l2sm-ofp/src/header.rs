//! The common header (OpenFlow 1.3.5 §7.1, `struct ofp_header`) and stream framing.
//!
//! ```text
//! 0        8        16                32
//! +--------+--------+-----------------+
//! |version |  type  |     length      |
//! +--------+--------+-----------------+
//! |               xid                 |
//! +-----------------------------------+
//! ```
//!
//! `length` covers the whole message, header included, so a byte stream is framed by
//! reading it from the first 8 bytes; [`message_len`] does exactly that.

use crate::error::DecodeError;

/// Size of `struct ofp_header`.
pub const HEADER_LEN: usize = 8;

/// The raw fields of `struct ofp_header`, readable before the body has arrived.
///
/// A session needs the `version` of a peer's HELLO to negotiate, and
/// [`OfpMessage`](crate::OfpMessage) does not carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Protocol version (0x04 for OpenFlow 1.3).
    pub version: u8,
    /// Message type (`enum ofp_type`).
    pub msg_type: u8,
    /// Length of the whole message, header included.
    pub length: u16,
    /// Transaction id.
    pub xid: u32,
}

/// Reads the header at the start of `buf`; `None` if fewer than 8 bytes are available.
pub fn peek_header(buf: &[u8]) -> Option<Header> {
    match *buf.get(..HEADER_LEN)? {
        [version, msg_type, l0, l1, x0, x1, x2, x3] => Some(Header {
            version,
            msg_type,
            length: u16::from_be_bytes([l0, l1]),
            xid: u32::from_be_bytes([x0, x1, x2, x3]),
        }),
        _ => None,
    }
}

/// Length of the message at the start of a stream buffer.
///
/// Returns `Ok(None)` while fewer than 8 bytes are buffered and `Ok(Some(len))` once the
/// header is complete (the caller then waits until `len` bytes are available).
///
/// # Errors
///
/// [`DecodeError::LengthBelowHeader`] when the declared length is below 8: the stream is
/// corrupt and must be closed, since no later byte can be trusted as a message start.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    match peek_header(buf) {
        None => Ok(None),
        Some(h) if usize::from(h.length) < HEADER_LEN => {
            Err(DecodeError::LengthBelowHeader(h.length))
        }
        Some(h) => Ok(Some(usize::from(h.length))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_needs_eight_bytes() {
        assert_eq!(peek_header(&[4, 0, 0, 8, 0, 0, 0]), None);
        assert_eq!(
            peek_header(&[4, 0, 0, 8, 0, 0, 0, 42, 99]),
            Some(Header {
                version: 4,
                msg_type: 0,
                length: 8,
                xid: 42
            })
        );
    }

    #[test]
    fn framing() {
        assert_eq!(message_len(&[]), Ok(None));
        assert_eq!(message_len(&[4, 2, 0]), Ok(None));
        assert_eq!(message_len(&[4, 2, 0, 12, 0, 0, 0, 1]), Ok(Some(12)));
        assert_eq!(
            message_len(&[4, 2, 0xff, 0xff, 0, 0, 0, 1]),
            Ok(Some(65535))
        );
        assert_eq!(
            message_len(&[4, 2, 0, 7, 0, 0, 0, 1]),
            Err(DecodeError::LengthBelowHeader(7))
        );
        assert_eq!(
            message_len(&[4, 2, 0, 0, 0, 0, 0, 1])
                .unwrap_err()
                .to_string(),
            "ofp_header: declared length 0 is shorter than the 8-byte header"
        );
    }
}
