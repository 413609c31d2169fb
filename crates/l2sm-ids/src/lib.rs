//! The lab's IDS engine, pure (no I/O): rules in a subset of Suricata's syntax, compiled to
//! Wireshark display filters (what `tshark` runs on the mirror port), matched again on the raw
//! frames tshark hands back (which rule, hence which `sid`), and alerts written as Suricata's
//! EVE JSON (`eve.json`, `event_type: alert`).
//!
//! ```
//! use l2sm_ids::{parse_rules, Vars};
//! let rules = parse_rules(
//!     r#"alert udp any any -> 10.0.0.0/24 4444 (msg:"attack on 4444"; content:"attack"; sid:1000001; rev:1;)"#,
//!     &Vars::default(),
//! ).unwrap();
//! assert_eq!(
//!     rules[0].display_filter(),
//!     r#"udp && ip.dst==10.0.0.0/24 && udp.dstport==4444 && udp.payload contains "attack""#
//! );
//! ```
//!
//! The subset (docs/ids.md): action `alert`; protocols `ip`, `tcp`, `udp`, `icmp`; addresses
//! (`any`, IPv4/IPv6 addresses and CIDRs, `!`, lists `[..]`, `$VARIABLES`), ports (`any`,
//! numbers, ranges `a:b`, `a:`, `:b`, `!`, lists, `$VARIABLES`), directions `->` and `<>`;
//! options `msg`, `sid`, `rev`, `gid`, `content` (with `|hex|` bytes, `!` negation) and its
//! modifier `nocase`, `classtype` (the alert's category), `priority` (its severity);
//! `metadata` and `reference` are accepted and ignored (they only annotate). Anything else is
//! refused with the rule's line and the keyword.

#![warn(clippy::unwrap_used)]

mod eve;
mod filter;
mod packet;
mod parse;
pub mod pcap;
mod rule;

pub use eve::{format_timestamp, parse_ek_line, EkPacket, EveAlert, EveAlertInfo, EveEther};
pub use packet::{parse_frame, Packet};
pub use parse::{parse_rule, parse_rules, RuleError, Vars, ACCEPTED_IGNORED, SUPPORTED_OPTIONS};
pub use rule::{AddrSpec, Cidr, Content, PortSpec, Proto, Rule};

/// A rule set ready to run: the rules, one display filter for tshark (the OR of each rule's),
/// and the exact per-rule match on frames.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Vec<Rule>,
}

impl Engine {
    /// An engine over `rules` (at least one; `parse_rules` guarantees distinct sids).
    pub fn new(rules: Vec<Rule>) -> Engine {
        Engine { rules }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The display filter that lets through every frame some rule may match: the OR of the
    /// rules' filters (each admits at least what its rule matches).
    pub fn combined_filter(&self) -> String {
        self.rules
            .iter()
            .map(|r| format!("({})", r.display_filter()))
            .collect::<Vec<_>>()
            .join(" || ")
    }

    /// The rules a raw Ethernet frame matches, in rule-file order.
    pub fn matches(&self, frame: &[u8]) -> Vec<&Rule> {
        match parse_frame(frame) {
            Some(p) => self.rules.iter().filter(|r| r.matches(&p)).collect(),
            None => Vec::new(),
        }
    }
}
