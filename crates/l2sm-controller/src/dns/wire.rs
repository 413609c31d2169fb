//! The DNS message subset the controller's authoritative server speaks (RFC 1035, RFC 6891):
//! parsing one-question queries (with an optional EDNS0 OPT record), building answers with
//! A, AAAA, PTR and SOA records, and parsing answers (for `l2sm dns lookup` and tests).
//!
//! Every parser is bounded: names at most 255 octets and 63 per label, compression pointers
//! only backwards and at most [`MAX_POINTERS`] per name, record counts checked against the
//! bytes that are actually there. Malformed input is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record types used here.
pub const TYPE_A: u16 = 1;
/// Name server (only answered with NODATA).
pub const TYPE_NS: u16 = 2;
/// Start of authority.
pub const TYPE_SOA: u16 = 6;
/// Reverse pointer.
pub const TYPE_PTR: u16 = 12;
/// IPv6 address.
pub const TYPE_AAAA: u16 = 28;
/// EDNS0 pseudo-record.
pub const TYPE_OPT: u16 = 41;
/// Any type (answered with what the name has).
pub const TYPE_ANY: u16 = 255;
/// The Internet class.
pub const CLASS_IN: u16 = 1;

/// Response codes.
pub const RCODE_NOERROR: u8 = 0;
/// The query could not be parsed.
pub const RCODE_FORMERR: u8 = 1;
/// The name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;
/// Opcode not implemented.
pub const RCODE_NOTIMP: u8 = 4;
/// Not our zone (we are no resolver).
pub const RCODE_REFUSED: u8 = 5;
/// Extended RCODE 16 (BADVERS): EDNS version above 0.
pub const RCODE_BADVERS: u16 = 16;

/// Longest name on the wire, in octets.
pub const MAX_NAME: usize = 255;
/// Longest label.
pub const MAX_LABEL: usize = 63;
/// Compression pointers followed in one name, at most.
pub const MAX_POINTERS: usize = 16;
/// Largest answer on UDP without EDNS.
pub const PLAIN_UDP_SIZE: usize = 512;
/// The UDP payload size we advertise and use at most (the DNS flag day 2020 value).
pub const EDNS_UDP_SIZE: u16 = 1232;

/// Why a message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the structure needs.
    #[error("message truncated")]
    Truncated,
    /// A label or name too long, a bad label type or a forward/looping pointer.
    #[error("malformed name")]
    BadName,
    /// A response where a query was expected (or the reverse).
    #[error("wrong direction (QR bit)")]
    Direction,
    /// Not exactly one question, or records where a query has none.
    #[error("unsupported section counts")]
    Counts,
    /// An OPT record that is not well formed (or more than one).
    #[error("malformed OPT record")]
    BadOpt,
}

/// A name as lowercase labels (no trailing empty label).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Name(pub Vec<String>);

impl Name {
    /// Parses dotted text (`a.b.l2sm` or `a.b.l2sm.`); labels are lowercased. `None` when a
    /// label is empty, longer than 63 octets, or the name longer than 255.
    pub fn parse(text: &str) -> Option<Name> {
        let text = text.strip_suffix('.').unwrap_or(text);
        if text.is_empty() {
            return Some(Name::default());
        }
        let labels: Vec<String> = text.split('.').map(|l| l.to_ascii_lowercase()).collect();
        let name = Name(labels);
        name.valid().then_some(name)
    }

    fn valid(&self) -> bool {
        self.0.iter().all(|l| !l.is_empty() && l.len() <= MAX_LABEL) && self.wire_len() <= MAX_NAME
    }

    /// Octets on the wire, uncompressed.
    pub fn wire_len(&self) -> usize {
        self.0.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }

    /// Whether the last labels are `suffix`'s.
    pub fn ends_with(&self, suffix: &[&str]) -> bool {
        self.0.len() >= suffix.len()
            && self.0[self.0.len() - suffix.len()..]
                .iter()
                .zip(suffix)
                .all(|(a, b)| a == b)
    }

    /// The reverse-lookup name of `ip` (`d.c.b.a.in-addr.arpa`, nibbles for IPv6).
    pub fn reverse(ip: IpAddr) -> Name {
        let mut labels: Vec<String> = match ip {
            IpAddr::V4(a) => a.octets().iter().rev().map(|o| o.to_string()).collect(),
            IpAddr::V6(a) => a
                .octets()
                .iter()
                .rev()
                .flat_map(|o| [o & 0xf, o >> 4])
                .map(|n| format!("{n:x}"))
                .collect(),
        };
        match ip {
            IpAddr::V4(_) => labels.extend(["in-addr".into(), "arpa".into()]),
            IpAddr::V6(_) => labels.extend(["ip6".into(), "arpa".into()]),
        }
        Name(labels)
    }

    /// The address a reverse-lookup name stands for, if it is a complete one.
    pub fn reverse_address(&self) -> Option<IpAddr> {
        let l = &self.0;
        if l.len() == 6 && self.ends_with(&["in-addr", "arpa"]) {
            let mut o = [0u8; 4];
            for (i, label) in l[..4].iter().rev().enumerate() {
                if label.len() > 1 && label.starts_with('0') {
                    return None;
                }
                o[i] = label.parse().ok()?;
            }
            return Some(IpAddr::V4(Ipv4Addr::from(o)));
        }
        if l.len() == 34 && self.ends_with(&["ip6", "arpa"]) {
            let mut o = [0u8; 16];
            for (i, label) in l[..32].iter().rev().enumerate() {
                if label.len() != 1 {
                    return None;
                }
                let n = u8::from_str_radix(label, 16).ok()?;
                o[i / 2] |= if i % 2 == 0 { n << 4 } else { n };
            }
            return Some(IpAddr::V6(Ipv6Addr::from(o)));
        }
        None
    }

    fn write(&self, out: &mut Vec<u8>) {
        for l in &self.0 {
            // Labels are at most 63 octets (checked where names are made).
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for l in &self.0 {
            write!(f, "{l}.")?;
        }
        Ok(())
    }
}

/// Reads a (possibly compressed) name at `pos`; returns it and the position after it.
/// Labels are lowercased; octets outside printable ASCII are kept as `\DDD` escapes.
pub fn read_name(msg: &[u8], pos: usize) -> Result<(Name, usize), WireError> {
    read_name_raw(msg, pos, &mut Vec::new())
}

/// [`read_name`], also writing the name uncompressed, as it came (case kept), to `raw`.
fn read_name_raw(
    msg: &[u8],
    mut pos: usize,
    raw: &mut Vec<u8>,
) -> Result<(Name, usize), WireError> {
    let mut labels = Vec::new();
    let mut len = 1usize;
    let mut end = None;
    let mut pointers = 0;
    loop {
        let b = *msg.get(pos).ok_or(WireError::Truncated)?;
        match b & 0xc0 {
            0x00 => {
                let n = usize::from(b);
                if n == 0 {
                    raw.push(0);
                    return Ok((Name(labels), end.unwrap_or(pos + 1)));
                }
                let label = msg.get(pos + 1..pos + 1 + n).ok_or(WireError::Truncated)?;
                len += n + 1;
                if len > MAX_NAME {
                    return Err(WireError::BadName);
                }
                labels.push(label_text(label));
                raw.push(b);
                raw.extend_from_slice(label);
                pos += n + 1;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(WireError::Truncated)?;
                let target = usize::from(u16::from_be_bytes([b & 0x3f, lo]));
                pointers += 1;
                // Only backwards: no loops, and a bounded number of hops anyway.
                if target >= pos || pointers > MAX_POINTERS {
                    return Err(WireError::BadName);
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(WireError::BadName),
        }
    }
}

fn label_text(label: &[u8]) -> String {
    let mut s = String::with_capacity(label.len());
    for &c in label {
        match c {
            b'.' | b'\\' => s.push_str(&format!("\\{c:03}")),
            0x21..=0x7e => s.push(char::from(c.to_ascii_lowercase())),
            _ => s.push_str(&format!("\\{c:03}")),
        }
    }
    s
}

fn u16_at(msg: &[u8], pos: usize) -> Result<u16, WireError> {
    let b = msg.get(pos..pos + 2).ok_or(WireError::Truncated)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(msg: &[u8], pos: usize) -> Result<u32, WireError> {
    let b = msg.get(pos..pos + 4).ok_or(WireError::Truncated)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// EDNS0 of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// UDP payload size the client accepts.
    pub udp_size: u16,
    /// EDNS version.
    pub version: u8,
    /// DNSSEC OK bit (echoed, nothing is signed).
    pub dnssec_ok: bool,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Message id.
    pub id: u16,
    /// Opcode (0: standard query).
    pub opcode: u8,
    /// Recursion desired (echoed).
    pub rd: bool,
    /// Checking disabled (echoed).
    pub cd: bool,
    /// The question's name (lowercase, for lookups).
    pub name: Name,
    /// The question's name as it came, uncompressed (echoed in the answer).
    pub wire_name: Vec<u8>,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// EDNS0, when the query carried an OPT record.
    pub edns: Option<Edns>,
}

/// The header fields a FORMERR answer needs, when at least a header is there.
pub fn header_id(msg: &[u8]) -> Option<(u16, u16)> {
    Some((u16_at(msg, 0).ok()?, u16_at(msg, 2).ok()?))
}

/// Parses a query: exactly one question, no answer or authority records, at most one
/// additional record (an OPT).
pub fn parse_query(msg: &[u8]) -> Result<Query, WireError> {
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    let (qd, an, ns, ar) = (
        u16_at(msg, 4)?,
        u16_at(msg, 6)?,
        u16_at(msg, 8)?,
        u16_at(msg, 10)?,
    );
    if flags & 0x8000 != 0 {
        return Err(WireError::Direction);
    }
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return Err(WireError::Counts);
    }
    let mut wire_name = Vec::new();
    let (name, pos) = read_name_raw(msg, 12, &mut wire_name)?;
    let qtype = u16_at(msg, pos)?;
    let qclass = u16_at(msg, pos + 2)?;
    let mut pos = pos + 4;
    let mut edns = None;
    if ar == 1 {
        let (owner, p) = read_name(msg, pos)?;
        let rtype = u16_at(msg, p)?;
        if rtype != TYPE_OPT || !owner.0.is_empty() {
            return Err(WireError::BadOpt);
        }
        let udp_size = u16_at(msg, p + 2)?;
        let ttl = u32_at(msg, p + 4)?;
        let rdlen = usize::from(u16_at(msg, p + 8)?);
        msg.get(p + 10..p + 10 + rdlen)
            .ok_or(WireError::Truncated)?;
        pos = p + 10 + rdlen;
        edns = Some(Edns {
            udp_size,
            version: ((ttl >> 16) & 0xff) as u8,
            dnssec_ok: ttl & 0x8000 != 0,
        });
    }
    if pos != msg.len() {
        // Trailing garbage.
        return Err(WireError::Truncated);
    }
    Ok(Query {
        id,
        opcode: ((flags >> 11) & 0xf) as u8,
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        name,
        wire_name,
        qtype,
        qclass,
        edns,
    })
}

/// Record data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// IPv4 or IPv6 address (A or AAAA).
    Addr(IpAddr),
    /// Reverse pointer target.
    Ptr(Name),
    /// Start of authority.
    Soa(Soa),
    /// Anything else, raw.
    Other(u16, Vec<u8>),
}

impl RData {
    /// The record type.
    pub fn rtype(&self) -> u16 {
        match self {
            RData::Addr(IpAddr::V4(_)) => TYPE_A,
            RData::Addr(IpAddr::V6(_)) => TYPE_AAAA,
            RData::Ptr(_) => TYPE_PTR,
            RData::Soa(_) => TYPE_SOA,
            RData::Other(t, _) => *t,
        }
    }
}

/// An SOA record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// Primary name server.
    pub mname: Name,
    /// Responsible mailbox.
    pub rname: Name,
    /// Serial.
    pub serial: u32,
    /// Refresh, retry, expire, minimum (negative TTL), seconds.
    pub times: [u32; 4],
}

/// A resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name.
    pub name: Name,
    /// Time to live, seconds.
    pub ttl: u32,
    /// Data.
    pub data: RData,
}

/// An answer to build.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// Response code (extended codes above 15 go into the OPT record).
    pub rcode: u16,
    /// Authoritative answer.
    pub aa: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of negative answers).
    pub authority: Vec<Record>,
}

/// Encodes `answer` to `query`, at most `limit` octets: when the records do not fit, the
/// answer carries none and has the TC bit set (the client retries over TCP).
pub fn encode_answer(query: &Query, answer: &Answer, limit: usize) -> Vec<u8> {
    let full = encode(query, answer, false);
    if full.len() <= limit {
        return full;
    }
    encode(
        query,
        &Answer {
            answers: vec![],
            authority: vec![],
            ..answer.clone()
        },
        true,
    )
}

fn encode(query: &Query, answer: &Answer, tc: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&query.id.to_be_bytes());
    let mut flags: u16 = 0x8000 | (u16::from(query.opcode & 0xf) << 11);
    if answer.aa {
        flags |= 0x0400;
    }
    if tc {
        flags |= 0x0200;
    }
    if query.rd {
        flags |= 0x0100;
    }
    if query.cd {
        flags |= 0x0010;
    }
    flags |= answer.rcode & 0xf;
    out.extend_from_slice(&flags.to_be_bytes());
    let ar = u16::from(query.edns.is_some());
    for n in [
        1u16,
        count(answer.answers.len()),
        count(answer.authority.len()),
        ar,
    ] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(&query.wire_name);
    out.extend_from_slice(&query.qtype.to_be_bytes());
    out.extend_from_slice(&query.qclass.to_be_bytes());
    for r in answer.answers.iter().chain(&answer.authority) {
        if r.name == query.name {
            out.extend_from_slice(&0xc00cu16.to_be_bytes());
        } else {
            r.name.write(&mut out);
        }
        out.extend_from_slice(&r.data.rtype().to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&r.ttl.to_be_bytes());
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        match &r.data {
            RData::Addr(IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
            RData::Addr(IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
            RData::Ptr(n) => n.write(&mut out),
            RData::Soa(s) => {
                s.mname.write(&mut out);
                s.rname.write(&mut out);
                out.extend_from_slice(&s.serial.to_be_bytes());
                for t in s.times {
                    out.extend_from_slice(&t.to_be_bytes());
                }
            }
            RData::Other(_, d) => out.extend_from_slice(d),
        }
        let len = count(out.len() - at - 2);
        out[at..at + 2].copy_from_slice(&len.to_be_bytes());
    }
    if let Some(edns) = query.edns {
        out.push(0); // root owner
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
        let ext = u32::from((answer.rcode >> 4) as u8) << 24;
        let dnssec_ok = if edns.dnssec_ok { 0x8000 } else { 0 };
        out.extend_from_slice(&(ext | dnssec_ok).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out
}

fn count(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// A FORMERR (or other header-only) answer to a message that could not be parsed as a query:
/// the id and opcode echoed, no question. `None` when there is not even a header, or the
/// message is itself a response (never answer those: no reflection loops).
pub fn header_only_answer(msg: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if msg.len() < 12 {
        return None;
    }
    let (id, flags) = header_id(msg)?;
    if flags & 0x8000 != 0 {
        return None;
    }
    let flags = 0x8000 | (flags & 0x7900) | u16::from(rcode & 0xf);
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

/// Builds a query for `name`/`qtype` with an EDNS0 OPT advertising [`EDNS_UDP_SIZE`].
pub fn build_query(id: u16, name: &Name, qtype: u16, edns: bool) -> Vec<u8> {
    let mut wire_name = Vec::new();
    name.write(&mut wire_name);
    let q = Query {
        id,
        opcode: 0,
        rd: true,
        cd: false,
        name: name.clone(),
        wire_name,
        qtype,
        qclass: CLASS_IN,
        edns: edns.then_some(Edns {
            udp_size: EDNS_UDP_SIZE,
            version: 0,
            dnssec_ok: false,
        }),
    };
    let mut msg = encode(&q, &Answer::default(), false);
    // A query, not an answer: clear QR, AA, RCODE.
    msg[2] &= 0x7f;
    msg
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Message id.
    pub id: u16,
    /// Response code, extended with the OPT record's bits.
    pub rcode: u16,
    /// Authoritative answer.
    pub aa: bool,
    /// Truncated.
    pub tc: bool,
    /// Recursion available.
    pub ra: bool,
    /// Question (when there was one).
    pub question: Option<(Name, u16)>,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authority: Vec<Record>,
    /// The OPT record's UDP size, when there was one.
    pub edns_udp_size: Option<u16>,
}

/// Parses a response (any number of records; each checked against the bytes present).
pub fn parse_response(msg: &[u8]) -> Result<Response, WireError> {
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 == 0 {
        return Err(WireError::Direction);
    }
    let counts = [
        u16_at(msg, 4)?,
        u16_at(msg, 6)?,
        u16_at(msg, 8)?,
        u16_at(msg, 10)?,
    ];
    if counts[0] > 1 {
        return Err(WireError::Counts);
    }
    let mut pos = 12;
    let mut question = None;
    if counts[0] == 1 {
        let (name, p) = read_name(msg, pos)?;
        question = Some((name, u16_at(msg, p)?));
        u16_at(msg, p + 2)?;
        pos = p + 4;
    }
    let mut rcode = flags & 0xf;
    let mut sections: [Vec<Record>; 2] = [vec![], vec![]];
    let mut edns_udp_size = None;
    for (i, &n) in counts[1..].iter().enumerate() {
        for _ in 0..n {
            // Each record takes at least 11 octets: huge counts end at the message's end.
            let (name, p) = read_name(msg, pos)?;
            let rtype = u16_at(msg, p)?;
            let class = u16_at(msg, p + 2)?;
            let ttl = u32_at(msg, p + 4)?;
            let rdlen = usize::from(u16_at(msg, p + 8)?);
            let start = p + 10;
            let rdata = msg.get(start..start + rdlen).ok_or(WireError::Truncated)?;
            pos = start + rdlen;
            if i == 2 {
                if rtype == TYPE_OPT {
                    edns_udp_size = Some(class);
                    rcode |= u16::from((ttl >> 24) as u8) << 4;
                }
                continue;
            }
            let data = match rtype {
                TYPE_A if rdlen == 4 => RData::Addr(IpAddr::V4(Ipv4Addr::new(
                    rdata[0], rdata[1], rdata[2], rdata[3],
                ))),
                TYPE_AAAA if rdlen == 16 => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(rdata);
                    RData::Addr(IpAddr::V6(Ipv6Addr::from(o)))
                }
                TYPE_PTR => RData::Ptr(read_name(msg, start)?.0),
                TYPE_SOA => {
                    let (mname, q) = read_name(msg, start)?;
                    let (rname, q) = read_name(msg, q)?;
                    let mut times = [0u32; 4];
                    for (k, t) in times.iter_mut().enumerate() {
                        *t = u32_at(msg, q + 4 + 4 * k)?;
                    }
                    RData::Soa(Soa {
                        mname,
                        rname,
                        serial: u32_at(msg, q)?,
                        times,
                    })
                }
                _ => RData::Other(rtype, rdata.to_vec()),
            };
            sections[i].push(Record { name, ttl, data });
        }
    }
    let [answers, authority] = sections;
    Ok(Response {
        id,
        rcode,
        aa: flags & 0x0400 != 0,
        tc: flags & 0x0200 != 0,
        ra: flags & 0x0080 != 0,
        question,
        answers,
        authority,
        edns_udp_size,
    })
}
