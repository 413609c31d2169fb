//! Protobuf (proto3) binary encoding: varints, tags, length-delimited fields, and a field
//! iterator that skips unknown fields the way protobuf-go does.
//!
//! Rules kept (protobuf encoding guide, protobuf-go `protowire`):
//! - a varint is at most 10 bytes; the 10th byte may only be 0 or 1 (else overflow);
//! - a tag is a varint `number << 3 | wire_type`; field numbers are 1..=2^29-1;
//! - wire types 0 (varint), 1 (64-bit), 2 (length-delimited), 5 (32-bit) and groups (3 … 4,
//!   nested, skipped as unknown); 6 and 7 do not exist;
//! - a length-delimited value must fit in what is left of the buffer;
//! - proto3 scalars with their default value (0, false, "") are not written at all;
//! - a scalar field seen several times keeps the last value;
//! - `int64` is written as the two's-complement `u64` varint: a negative number takes 10 bytes.

/// Largest valid field number.
pub const MAX_FIELD_NUMBER: u32 = (1 << 29) - 1;
/// Deepest nesting of (unknown, skipped) groups accepted.
const MAX_GROUP_DEPTH: usize = 64;

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends inside a tag or a value.
    #[error("unexpected end of message")]
    Truncated,
    /// A varint longer than 10 bytes or above 2^64-1.
    #[error("variable length integer overflow")]
    VarintOverflow,
    /// A field number of 0 or above 2^29-1.
    #[error("invalid field number {0}")]
    FieldNumber(u64),
    /// Wire type 6 or 7, or an end-group without a start.
    #[error("invalid wire type {0}")]
    WireType(u8),
    /// A known field with another wire type than its declared type's.
    #[error("field {field} ({name}): wire type {got}, expected {want}")]
    WrongWireType {
        /// Field number.
        field: u32,
        /// Field name.
        name: &'static str,
        /// Wire type found.
        got: u8,
        /// Wire type of the declared type.
        want: u8,
    },
    /// A `string` field that is not UTF-8 (proto3 requires it; protobuf-go refuses it).
    #[error("field {field} ({name}) contains invalid UTF-8")]
    InvalidUtf8 {
        /// Field number.
        field: u32,
        /// Field name.
        name: &'static str,
    },
    /// Groups nested deeper than the decoder accepts, or unbalanced.
    #[error("malformed group")]
    Group,
}

/// Wire type of varint fields (`int64`, `bool`, …).
pub const VARINT: u8 = 0;
/// Wire type of 64-bit fixed fields.
pub const I64: u8 = 1;
/// Wire type of length-delimited fields (`string`, `bytes`, messages).
pub const LEN: u8 = 2;
/// Wire type of a group start (deprecated).
pub const SGROUP: u8 = 3;
/// Wire type of a group end (deprecated).
pub const EGROUP: u8 = 4;
/// Wire type of 32-bit fixed fields.
pub const I32: u8 = 5;

/// Appends `v` as a varint.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Reads a varint at the start of `buf`: the value and the bytes it took.
pub fn get_varint(buf: &[u8]) -> Result<(u64, usize), DecodeError> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        if i == 9 {
            // Only one bit left (bit 63): protobuf-go refuses anything else.
            if b > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            return Ok((v | (u64::from(b) << 63), 10));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok((v, i + 1));
        }
    }
    Err(DecodeError::Truncated)
}

/// Appends a tag.
pub fn put_tag(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Appends a proto3 `string` field (nothing when empty).
pub fn put_string(buf: &mut Vec<u8>, field: u32, s: &str) {
    if s.is_empty() {
        return;
    }
    put_tag(buf, field, LEN);
    put_varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Appends a proto3 `bool` field (nothing when false).
pub fn put_bool(buf: &mut Vec<u8>, field: u32, b: bool) {
    if b {
        put_tag(buf, field, VARINT);
        buf.push(1);
    }
}

/// Appends a proto3 `int64` field (nothing when 0; negative numbers take 10 bytes).
pub fn put_int64(buf: &mut Vec<u8>, field: u32, v: i64) {
    if v != 0 {
        put_tag(buf, field, VARINT);
        put_varint(buf, v as u64);
    }
}

/// The value of one field as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
    /// Wire types 3..4: a whole group, skipped (only unknown fields can be groups here).
    Group,
}

impl Value<'_> {
    /// The wire type this value came with.
    pub fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => VARINT,
            Value::Fixed64(_) => I64,
            Value::Bytes(_) => LEN,
            Value::Fixed32(_) => I32,
            Value::Group => SGROUP,
        }
    }
}

/// Iterates over the fields of a message, in wire order; stops at the first error.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    /// The fields of `buf`.
    pub fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf, failed: false }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let (v, n) = get_varint(self.buf)?;
        self.buf = &self.buf[n..];
        Ok(v)
    }

    fn tag(&mut self) -> Result<(u32, u8), DecodeError> {
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > u64::from(MAX_FIELD_NUMBER) {
            return Err(DecodeError::FieldNumber(number));
        }
        Ok((number as u32, (tag & 7) as u8))
    }

    fn value(
        &mut self,
        number: u32,
        wire_type: u8,
        depth: usize,
    ) -> Result<Value<'a>, DecodeError> {
        Ok(match wire_type {
            VARINT => Value::Varint(self.varint()?),
            I64 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Fixed64(u64::from_le_bytes(a))
            }
            LEN => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
                Value::Bytes(self.take(len)?)
            }
            I32 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Value::Fixed32(u32::from_le_bytes(a))
            }
            SGROUP => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(DecodeError::Group);
                }
                loop {
                    if self.buf.is_empty() {
                        return Err(DecodeError::Truncated);
                    }
                    let (n, wt) = self.tag()?;
                    if wt == EGROUP {
                        if n != number {
                            return Err(DecodeError::Group);
                        }
                        break;
                    }
                    self.value(n, wt, depth + 1)?;
                }
                Value::Group
            }
            other => return Err(DecodeError::WireType(other)),
        })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let r = self
            .tag()
            .and_then(|(number, wt)| Ok((number, self.value(number, wt, 0)?)));
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// A declared field's value as a proto3 `string`.
pub fn as_string(field: u32, name: &'static str, v: Value<'_>) -> Result<String, DecodeError> {
    match v {
        Value::Bytes(b) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8 { field, name }),
        other => Err(wrong(field, name, other, LEN)),
    }
}

/// A declared field's value as a proto3 `bool` (any non-zero varint is true).
pub fn as_bool(field: u32, name: &'static str, v: Value<'_>) -> Result<bool, DecodeError> {
    match v {
        Value::Varint(x) => Ok(x != 0),
        other => Err(wrong(field, name, other, VARINT)),
    }
}

/// A declared field's value as a proto3 `int64`.
pub fn as_int64(field: u32, name: &'static str, v: Value<'_>) -> Result<i64, DecodeError> {
    match v {
        Value::Varint(x) => Ok(x as i64),
        other => Err(wrong(field, name, other, VARINT)),
    }
}

fn wrong(field: u32, name: &'static str, v: Value<'_>, want: u8) -> DecodeError {
    DecodeError::WrongWireType {
        field,
        name,
        got: v.wire_type(),
        want,
    }
}
