//! Bounds-checked big-endian cursor and writer shared by every structure codec.
//!
//! The reader is the only place that touches raw offsets of untrusted input, so the
//! no-panic promise of [`decode`](crate::decode) rests on it: every accessor checks the
//! remaining length first and returns [`DecodeError::Truncated`] instead of indexing.

use crate::error::{DecodeError, DecodeResult, EncodeError, EncodeResult};

/// Read cursor over one structure; `ctx` names the enclosing message for error reports.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    ctx: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], ctx: &'static str) -> Self {
        Reader { buf, ctx }
    }

    pub(crate) fn ctx(&self) -> &'static str {
        self.ctx
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, item: &'static str) -> DecodeResult<&'a [u8]> {
        match (self.buf.get(..n), self.buf.get(n..)) {
            (Some(head), Some(tail)) => {
                self.buf = tail;
                Ok(head)
            }
            _ => Err(self.truncated(item, n)),
        }
    }

    /// Takes the next `n` bytes as a nested reader with the same context.
    pub(crate) fn sub(&mut self, n: usize, item: &'static str) -> DecodeResult<Reader<'a>> {
        let ctx = self.ctx;
        self.take(n, item).map(|b| Reader::new(b, ctx))
    }

    /// Takes everything that is left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn skip(&mut self, n: usize, item: &'static str) -> DecodeResult<()> {
        self.take(n, item).map(|_| ())
    }

    pub(crate) fn array<const N: usize>(&mut self, item: &'static str) -> DecodeResult<[u8; N]> {
        let bytes = self.take(N, item)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, item: &'static str) -> DecodeResult<u8> {
        self.array::<1>(item).map(|[b]| b)
    }

    pub(crate) fn u16(&mut self, item: &'static str) -> DecodeResult<u16> {
        self.array(item).map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self, item: &'static str) -> DecodeResult<u32> {
        self.array(item).map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self, item: &'static str) -> DecodeResult<u64> {
        self.array(item).map(u64::from_be_bytes)
    }

    /// Reads a big-endian `u16` at `offset` without consuming anything.
    pub(crate) fn peek_u16(&self, offset: usize, item: &'static str) -> DecodeResult<u16> {
        match self.buf.get(offset..offset.saturating_add(2)) {
            Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
            _ => Err(self.truncated(item, offset.saturating_add(2))),
        }
    }

    /// Fails unless the structure has been consumed completely.
    pub(crate) fn finish(&self, item: &'static str) -> DecodeResult<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                context: self.ctx,
                item,
                count: self.buf.len(),
            })
        }
    }

    pub(crate) fn truncated(&self, item: &'static str, needed: usize) -> DecodeError {
        DecodeError::Truncated {
            context: self.ctx,
            item,
            needed,
            available: self.buf.len(),
        }
    }

    /// Splits off the next 8-byte-aligned TLV whose 16-bit length sits at `len_offset`
    /// (OpenFlow's instruction/action/bucket/stats layout), checking alignment, the
    /// minimum size and the remaining bytes, in that order.
    pub(crate) fn tlv(
        &mut self,
        len_offset: usize,
        min: usize,
        item: &'static str,
    ) -> DecodeResult<Reader<'a>> {
        let len = usize::from(self.peek_u16(len_offset, item)?);
        if len % 8 != 0 {
            return Err(DecodeError::Misaligned {
                context: self.ctx,
                item,
                len,
            });
        }
        if len < min {
            return Err(DecodeError::TooShort {
                context: self.ctx,
                item,
                len,
                min,
            });
        }
        self.sub(len, item)
    }
}

/// Growable big-endian writer with length back-patching.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Writer::default()
    }

    /// A writer appending to `buf` (positions and lengths count from its start).
    pub(crate) fn from_vec(buf: Vec<u8>) -> Self {
        Writer { buf }
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    pub(crate) fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// Zero-pads so that the bytes written since `start` are a multiple of 8.
    pub(crate) fn pad8_from(&mut self, start: usize) {
        let written = self.buf.len().saturating_sub(start);
        self.zeros(pad8(written));
    }

    /// Writes a `u16` placeholder and returns its position for [`Writer::patch_len16`].
    pub(crate) fn placeholder16(&mut self) -> usize {
        let at = self.buf.len();
        self.u16(0);
        at
    }

    /// Stores `self.len() - start` into the placeholder at `at`.
    pub(crate) fn patch_len16(
        &mut self,
        at: usize,
        start: usize,
        ctx: &'static str,
        item: &'static str,
    ) -> EncodeResult<()> {
        let len = self.buf.len().saturating_sub(start);
        let v = u16::try_from(len).map_err(|_| EncodeError::TooLong {
            context: ctx,
            item,
            len,
            max: usize::from(u16::MAX),
        })?;
        self.patch16(at, v);
        Ok(())
    }

    /// Overwrites two bytes at `at` (a position obtained from [`Writer::placeholder16`]).
    pub(crate) fn patch16(&mut self, at: usize, v: u16) {
        if let Some(slot) = self.buf.get_mut(at..at + 2) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// Bytes needed to pad `len` up to a multiple of 8.
pub(crate) const fn pad8(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// Decodes a fixed-width, NUL-padded string field (`ofp_port.name`, `ofp_desc`).
///
/// Everything from the first NUL on is padding; invalid UTF-8 is replaced rather than
/// rejected because these strings are informational only.
pub(crate) fn decode_cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(bytes.get(..end).unwrap_or(bytes)).into_owned()
}

/// Encodes `s` into a `width`-byte NUL-terminated field.
pub(crate) fn encode_cstr(
    w: &mut Writer,
    s: &str,
    width: usize,
    ctx: &'static str,
    item: &'static str,
) -> EncodeResult<()> {
    let max = width - 1;
    if s.len() > max {
        return Err(EncodeError::TooLong {
            context: ctx,
            item,
            len: s.len(),
            max,
        });
    }
    if s.bytes().any(|b| b == 0) {
        return Err(EncodeError::Unrepresentable {
            context: ctx,
            detail: format!("{item} {s:?} contains a nul byte"),
        });
    }
    w.bytes(s.as_bytes());
    w.zeros(width - s.len());
    Ok(())
}

/// A fixed-size TLV whose declared length must be exactly `expected`.
pub(crate) fn expect_len(
    context: &'static str,
    item: &'static str,
    len: usize,
    expected: usize,
) -> Result<(), crate::DecodeError> {
    if len == expected {
        Ok(())
    } else {
        Err(crate::DecodeError::WrongLength {
            context,
            item,
            len,
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_instead_of_panicking() {
        let mut r = Reader::new(&[1, 2, 3], "test");
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(
            r.u32("b"),
            Err(DecodeError::Truncated {
                context: "test",
                item: "b",
                needed: 4,
                available: 1
            })
        );
        assert_eq!(r.peek_u16(usize::MAX, "c").unwrap_err().to_string(), {
            "test: c truncated: need 18446744073709551615 bytes, 1 available"
        });
    }

    #[test]
    fn tlv_checks_alignment_before_minimum() {
        let mut r = Reader::new(&[0, 1, 0, 3, 0, 0, 0, 0], "flow_mod");
        assert_eq!(
            r.tlv(2, 8, "instruction").unwrap_err().to_string(),
            "flow_mod: instruction length 3 is not a multiple of 8"
        );
        let mut r = Reader::new(&[0, 1, 0, 0], "flow_mod");
        assert_eq!(
            r.tlv(2, 8, "instruction").unwrap_err().to_string(),
            "flow_mod: instruction length 0 is shorter than the 8-byte minimum"
        );
    }

    #[test]
    fn cstr_round_trip_and_limits() {
        let mut w = Writer::new();
        encode_cstr(&mut w, "br0", 16, "port", "name").unwrap();
        let v = w.into_vec();
        assert_eq!(v.len(), 16);
        assert_eq!(decode_cstr(&v), "br0");
        let mut w = Writer::new();
        assert!(encode_cstr(&mut w, "0123456789abcdef", 16, "port", "name").is_err());
        assert!(encode_cstr(&mut w, "a\0b", 16, "port", "name").is_err());
        assert_eq!(decode_cstr(b"0123456789abcdef"), "0123456789abcdef");
    }
}
