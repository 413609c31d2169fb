//! Rules → Wireshark display filters (tshark `-Y`). A rule's filter admits every frame the rule
//! matches (`Rule::matches`); it may admit a few more (a `content` of an `ip` rule is looked
//! for in the whole frame, addresses inside an ICMP error's quoted header count), which the
//! exact match on the frame then drops.

use crate::rule::{AddrSpec, Cidr, Content, PortSpec, Proto, Rule};
use std::net::IpAddr;

fn addr_term(c: &Cidr, side: &str) -> String {
    let field = match c.addr {
        IpAddr::V4(_) => "ip",
        IpAddr::V6(_) => "ipv6",
    };
    format!("{field}.{side}=={c}")
}

fn or_group(terms: Vec<String>) -> Option<String> {
    match terms.len() {
        0 => None,
        1 => terms.into_iter().next(),
        _ => Some(format!("({})", terms.join(" || "))),
    }
}

fn addr_filter(spec: &AddrSpec, side: &str, out: &mut Vec<String>) {
    if let Some(inc) = or_group(spec.include.iter().map(|c| addr_term(c, side)).collect()) {
        out.push(inc);
    }
    for c in &spec.exclude {
        out.push(format!("!({})", addr_term(c, side)));
    }
}

fn port_term(field: &str, (a, b): (u16, u16)) -> String {
    if a == b {
        format!("{field}=={a}")
    } else {
        format!("({field}>={a} && {field}<={b})")
    }
}

fn port_filter(spec: &PortSpec, field: &str, out: &mut Vec<String>) {
    if let Some(inc) = or_group(spec.include.iter().map(|r| port_term(field, *r)).collect()) {
        out.push(inc);
    }
    for r in &spec.exclude {
        out.push(format!("!{}", wrap(port_term(field, *r))));
    }
}

fn wrap(s: String) -> String {
    if s.starts_with('(') {
        s
    } else {
        format!("({s})")
    }
}

/// A display-filter string literal: printable ASCII as is, `"` and `\` escaped, other bytes
/// as `\xhh`.
fn literal(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    s
}

/// A case-insensitive regular expression for ASCII bytes: letters and digits as is, every
/// other byte as `\x{hh}` (the backslash doubled for the string literal).
fn nocase_regex(bytes: &[u8]) -> String {
    let mut s = String::from("\"(?i)");
    for &b in bytes {
        if b.is_ascii_alphanumeric() {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\\\x{{{b:02x}}}"));
        }
    }
    s.push('"');
    s
}

fn content_filter(proto: Proto, c: &Content) -> String {
    let test = |field: &str| {
        if c.nocase {
            format!("{field} matches {}", nocase_regex(&c.bytes))
        } else {
            format!("{field} contains {}", literal(&c.bytes))
        }
    };
    let positive = match proto {
        Proto::Tcp => test("tcp.payload"),
        Proto::Udp => test("udp.payload"),
        Proto::Icmp => format!("({} || {})", test("icmp"), test("icmpv6")),
        Proto::Ip => test("frame"),
    };
    if c.negated {
        // A negated content holds when the bytes are absent from the payload. TCP and UDP
        // payload fields are exactly that payload; for ICMP and IP the filter looks at headers
        // too, where the bytes may occur although the payload lacks them: there the filter
        // admits every frame and the exact match decides.
        return match proto {
            Proto::Tcp | Proto::Udp => format!("!({positive})"),
            Proto::Icmp | Proto::Ip => String::new(),
        };
    }
    positive
}

fn one_way(rule: &Rule, swap: bool) -> Vec<String> {
    let (s, d) = if swap { ("dst", "src") } else { ("src", "dst") };
    let mut parts = Vec::new();
    addr_filter(&rule.src, s, &mut parts);
    addr_filter(&rule.dst, d, &mut parts);
    let l4 = match rule.proto {
        Proto::Tcp => Some("tcp"),
        Proto::Udp => Some("udp"),
        _ => None,
    };
    if let Some(l4) = l4 {
        port_filter(&rule.src_ports, &format!("{l4}.{s}port"), &mut parts);
        port_filter(&rule.dst_ports, &format!("{l4}.{d}port"), &mut parts);
    }
    parts
}

impl Rule {
    /// The rule as a Wireshark display filter, e.g.
    /// `udp && ip.src==10.0.0.2 && udp.dstport==53 && udp.payload contains "evil"`.
    pub fn display_filter(&self) -> String {
        let mut parts = vec![match self.proto {
            Proto::Ip => "(ip || ipv6)".to_string(),
            Proto::Tcp => "tcp".to_string(),
            Proto::Udp => "udp".to_string(),
            Proto::Icmp => "(icmp || icmpv6)".to_string(),
        }];
        let fwd = one_way(self, false);
        if self.bidirectional {
            let rev = one_way(self, true);
            if !fwd.is_empty() {
                parts.push(format!(
                    "(({}) || ({}))",
                    fwd.join(" && "),
                    rev.join(" && ")
                ));
            }
        } else {
            parts.extend(fwd);
        }
        for c in &self.contents {
            let f = content_filter(self.proto, c);
            if !f.is_empty() {
                parts.push(f);
            }
        }
        parts.join(" && ")
    }
}
