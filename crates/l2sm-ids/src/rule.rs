//! Parsed rules and their canonical Suricata text (`Display`), which parses back to the same rule.

use crate::packet::Packet;
use std::fmt;
use std::net::IpAddr;

/// The protocol keyword of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Any IPv4 or IPv6 packet.
    Ip,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (and ICMPv6).
    Icmp,
}

impl Proto {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Proto::Ip => "ip",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }

    /// Whether the protocol has ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

/// An address with a prefix length (a single address has the full length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Address with the host bits cleared.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Builds a CIDR, clearing host bits; `None` if the prefix is too long for the family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        match addr {
            IpAddr::V4(a) if prefix <= 32 => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(prefix))
                };
                Some(Cidr {
                    addr: IpAddr::V4((u32::from(a) & mask).into()),
                    prefix,
                })
            }
            IpAddr::V6(a) if prefix <= 128 => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(prefix))
                };
                Some(Cidr {
                    addr: IpAddr::V6((u128::from(a) & mask).into()),
                    prefix,
                })
            }
            _ => None,
        }
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Cidr::new(ip, self.prefix).is_some_and(|c| c.addr == self.addr)
    }

    fn full(&self) -> bool {
        match self.addr {
            IpAddr::V4(_) => self.prefix == 32,
            IpAddr::V6(_) => self.prefix == 128,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.full() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// A set of addresses: any of `include` (all addresses when empty) and none of `exclude`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrSpec {
    /// Addresses admitted; empty means any.
    pub include: Vec<Cidr>,
    /// Addresses refused.
    pub exclude: Vec<Cidr>,
}

impl AddrSpec {
    /// Whether `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        (self.include.is_empty() || self.include.iter().any(|c| c.contains(ip)))
            && !self.exclude.iter().any(|c| c.contains(ip))
    }

    /// Whether the set is `any`.
    pub fn is_any(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

impl fmt::Display for AddrSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .include
            .iter()
            .map(|c| c.to_string())
            .chain(self.exclude.iter().map(|c| format!("!{c}")))
            .collect();
        match items.len() {
            0 => f.write_str("any"),
            1 if self.exclude.is_empty() => f.write_str(&items[0]),
            _ => write!(f, "[{}]", items.join(",")),
        }
    }
}

/// A set of ports: in any range of `include` (all ports when empty), in none of `exclude`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSpec {
    /// Inclusive ranges admitted; empty means any.
    pub include: Vec<(u16, u16)>,
    /// Inclusive ranges refused.
    pub exclude: Vec<(u16, u16)>,
}

impl PortSpec {
    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        (self.include.is_empty() || self.include.iter().any(|&(a, b)| a <= port && port <= b))
            && !self.exclude.iter().any(|&(a, b)| a <= port && port <= b)
    }

    /// Whether the set is `any`.
    pub fn is_any(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

fn range_text((a, b): (u16, u16)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}:{b}")
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .include
            .iter()
            .map(|r| range_text(*r))
            .chain(self.exclude.iter().map(|r| format!("!{}", range_text(*r))))
            .collect();
        match items.len() {
            0 => f.write_str("any"),
            1 if self.exclude.is_empty() => f.write_str(&items[0]),
            _ => write!(f, "[{}]", items.join(",")),
        }
    }
}

/// One `content` match on the packet's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Bytes looked for.
    pub bytes: Vec<u8>,
    /// ASCII letters match in either case.
    pub nocase: bool,
    /// The payload must not contain the bytes (`content:!"…"`).
    pub negated: bool,
}

impl Content {
    /// Whether `payload` satisfies this content match.
    pub fn matches(&self, payload: &[u8]) -> bool {
        let found = if self.bytes.is_empty() {
            true
        } else {
            payload.windows(self.bytes.len()).any(|w| {
                if self.nocase {
                    w.eq_ignore_ascii_case(&self.bytes)
                } else {
                    w == self.bytes.as_slice()
                }
            })
        };
        found != self.negated
    }
}

/// One rule of the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Protocol.
    pub proto: Proto,
    /// Source addresses.
    pub src: AddrSpec,
    /// Source ports.
    pub src_ports: PortSpec,
    /// `<>`: either way round.
    pub bidirectional: bool,
    /// Destination addresses.
    pub dst: AddrSpec,
    /// Destination ports.
    pub dst_ports: PortSpec,
    /// `msg`: the signature's text.
    pub msg: String,
    /// `sid`.
    pub sid: u32,
    /// `rev` (1 when absent).
    pub rev: u32,
    /// `gid` (1 when absent).
    pub gid: u32,
    /// `classtype`, the alert's category.
    pub classtype: Option<String>,
    /// `priority`, the alert's severity (3 when absent, as Suricata without a classification).
    pub priority: Option<u8>,
    /// `content` matches, all required.
    pub contents: Vec<Content>,
}

impl Rule {
    /// The alert's severity.
    pub fn severity(&self) -> u8 {
        self.priority.unwrap_or(3)
    }

    fn one_way(&self, p: &Packet<'_>, swap: bool) -> bool {
        let (sip, dip, sp, dp) = if swap {
            (p.dst_ip, p.src_ip, p.dst_port, p.src_port)
        } else {
            (p.src_ip, p.dst_ip, p.src_port, p.dst_port)
        };
        if !self.src.contains(sip) || !self.dst.contains(dip) {
            return false;
        }
        if self.proto.has_ports() {
            let (Some(sp), Some(dp)) = (sp, dp) else {
                return false;
            };
            self.src_ports.contains(sp) && self.dst_ports.contains(dp)
        } else {
            true
        }
    }

    /// Whether the rule matches a parsed packet.
    pub fn matches(&self, p: &Packet<'_>) -> bool {
        let proto_ok = match self.proto {
            Proto::Ip => true,
            Proto::Tcp => p.proto == 6,
            Proto::Udp => p.proto == 17,
            Proto::Icmp => p.proto == 1 || p.proto == 58,
        };
        proto_ok
            && (self.one_way(p, false) || (self.bidirectional && self.one_way(p, true)))
            && self.contents.iter().all(|c| c.matches(p.payload))
    }
}

/// Suricata's quoting inside an option value: `"`, `;`, `\` escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        if matches!(ch, '"' | ';' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// A content value: printable ASCII as is, other bytes (and `|`, `"`, `;`, `\`) in `|hex|`.
fn content_text(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut in_hex = false;
    for &b in bytes {
        let plain = (0x20..0x7f).contains(&b) && !matches!(b, b'|' | b'"' | b';' | b'\\');
        if plain {
            if in_hex {
                out.push('|');
                in_hex = false;
            }
            out.push(char::from(b));
        } else {
            if in_hex {
                out.push(' ');
            } else {
                out.push('|');
                in_hex = true;
            }
            out.push_str(&format!("{b:02X}"));
        }
    }
    if in_hex {
        out.push('|');
    }
    out.push('"');
    out
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "alert {} {} {} {} {} {} (msg:{};",
            self.proto.keyword(),
            self.src,
            self.src_ports,
            if self.bidirectional { "<>" } else { "->" },
            self.dst,
            self.dst_ports,
            quote(&self.msg)
        )?;
        for c in &self.contents {
            write!(
                f,
                " content:{}{};",
                if c.negated { "!" } else { "" },
                content_text(&c.bytes)
            )?;
            if c.nocase {
                f.write_str(" nocase;")?;
            }
        }
        if let Some(ct) = &self.classtype {
            write!(f, " classtype:{ct};")?;
        }
        if let Some(p) = self.priority {
            write!(f, " priority:{p};")?;
        }
        if self.gid != 1 {
            write!(f, " gid:{};", self.gid)?;
        }
        write!(f, " sid:{}; rev:{};)", self.sid, self.rev)
    }
}
