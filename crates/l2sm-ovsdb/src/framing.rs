//! Splitting the byte stream into JSON-RPC messages.
//!
//! OVSDB's JSON-RPC (RFC 7047 §4) sends bare JSON values back to back, with no length
//! prefix and no newline, and a read can end anywhere inside a value. A cheap byte
//! scanner tracks bracket depth (outside strings) to find where the buffered complete
//! values end, and only that prefix goes to serde_json's `StreamDeserializer`. Retrying
//! a full parse after each read would cost time quadratic in the message size, and a
//! large monitor dump arrives in many reads.

use serde_json::Value;

use crate::Error;

/// Incremental splitter: [`Framer::push`] bytes in, take complete values out.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned.
    scanned: usize,
    /// End of the last complete top-level value in `buf`.
    complete: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Framer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends `data` and returns every value it completed, in order. An error means the
    /// stream is not JSON-RPC and cannot be resynchronised; the connection must go.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<Vec<Value>, Error> {
        self.buf.extend_from_slice(data);
        self.scan()?;
        if self.complete == 0 {
            return Ok(Vec::new());
        }
        let values = serde_json::Deserializer::from_slice(&self.buf[..self.complete])
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()?;
        self.buf.drain(..self.complete);
        self.scanned -= self.complete;
        self.complete = 0;
        Ok(values)
    }

    /// Bytes held back waiting for the rest of a value.
    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.buf.len()
    }

    fn scan(&mut self) -> Result<(), Error> {
        for (i, &b) in self.buf.iter().enumerate().skip(self.scanned) {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' if self.depth > 0 => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        self.complete = i + 1;
                    }
                }
                // Whitespace between messages is consumed with them.
                b' ' | b'\t' | b'\r' | b'\n' if self.depth == 0 => self.complete = i + 1,
                _ if self.depth == 0 => {
                    // JSON-RPC messages are objects; anything else at top level means we
                    // lost sync (or the peer is not an OVSDB server).
                    let end = (i + 32).min(self.buf.len());
                    return Err(Error::Protocol(format!(
                        "unexpected data between JSON-RPC messages: {:?}",
                        String::from_utf8_lossy(&self.buf[i..end])
                    )));
                }
                _ => {}
            }
        }
        self.scanned = self.buf.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect_ok(r: Result<Vec<Value>, Error>) -> Vec<Value> {
        match r {
            Ok(v) => v,
            Err(e) => panic!("framing failed: {e}"),
        }
    }

    #[test]
    fn concatenated_values() {
        let mut f = Framer::new();
        let vals = expect_ok(f.push(br#"{"id":1,"result":[]}{"id":2,"result":{}}  [1]"#));
        assert_eq!(
            vals,
            vec![
                json!({"id": 1, "result": []}),
                json!({"id": 2, "result": {}}),
                json!([1])
            ]
        );
        assert_eq!(f.pending_len(), 0);
    }

    #[test]
    fn split_at_every_byte() {
        let msgs = [
            json!({"id": "echo", "method": "echo", "params": []}),
            json!({"s": "brackets } ] { [ and \"quotes\" and \\", "n": [1, [2, {"x": null}]]}),
            json!({"utf8": "ünïcödé ✓", "e": "\u{0001}"}),
        ];
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend(serde_json::to_vec(m).unwrap_or_default());
            stream.extend(b"\n");
        }
        for cut in 0..=stream.len() {
            let mut f = Framer::new();
            let mut got = expect_ok(f.push(&stream[..cut]));
            got.extend(expect_ok(f.push(&stream[cut..])));
            assert_eq!(got, msgs, "cut at {cut}");
            assert_eq!(f.pending_len(), 0);
        }
        // One byte at a time.
        let mut f = Framer::new();
        let mut got = Vec::new();
        for b in &stream {
            got.extend(expect_ok(f.push(std::slice::from_ref(b))));
        }
        assert_eq!(got, msgs);
    }

    #[test]
    fn partial_value_is_kept() {
        let mut f = Framer::new();
        assert!(expect_ok(f.push(br#"{"id":1,"res"#)).is_empty());
        assert_eq!(f.pending_len(), 12);
        assert_eq!(
            expect_ok(f.push(br#"ult":7}"#)),
            vec![json!({"id": 1, "result": 7})]
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            Framer::new().push(b"HTTP/1.1 400"),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            Framer::new().push(b"{\"a\":1}x"),
            Err(Error::Protocol(_))
        ));
        // Balanced brackets but invalid JSON inside.
        assert!(matches!(
            Framer::new().push(b"{\"a\" 1}"),
            Err(Error::Json(_))
        ));
    }
}
