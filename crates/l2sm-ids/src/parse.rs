//! The rule parser: one rule per line (`\` at the end of a line continues it), `#` comments,
//! blank lines; every refusal names the line and what was refused.

use crate::rule::{AddrSpec, Cidr, Content, PortSpec, Proto, Rule};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

/// Options the subset implements.
pub const SUPPORTED_OPTIONS: &[&str] = &[
    "msg",
    "sid",
    "rev",
    "gid",
    "content",
    "nocase",
    "classtype",
    "priority",
];

/// Options accepted and ignored: they annotate a rule and change nothing it matches.
pub const ACCEPTED_IGNORED: &[&str] = &["metadata", "reference"];

/// Longest rule text accepted (after joining continued lines).
const MAX_RULE_LEN: usize = 64 * 1024;
/// Deepest nesting of lists and variables.
const MAX_DEPTH: usize = 8;

/// A refused rule file: the 1-based line of the rule and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule line {line}: {message}")]
pub struct RuleError {
    /// Line of the rule (its first line when continued).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Address and port variables (`$HOME_NET`, `$HTTP_PORTS`), as Suricata's `vars` section:
/// names without `$`, values in rule syntax (they may use other variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    /// Address groups.
    pub addresses: BTreeMap<String, String>,
    /// Port groups.
    pub ports: BTreeMap<String, String>,
}

impl Vars {
    /// Suricata's usual defaults for a lab: `HOME_NET` and `EXTERNAL_NET` both `any`.
    pub fn lab_defaults() -> Vars {
        let mut v = Vars::default();
        v.addresses.insert("HOME_NET".into(), "any".into());
        v.addresses.insert("EXTERNAL_NET".into(), "any".into());
        v
    }
}

/// Parses a rules file. Refuses the whole file at the first bad rule, or when two rules share
/// a `sid` (and `gid`).
pub fn parse_rules(text: &str, vars: &Vars) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    let mut seen = HashSet::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let line = raw.trim();
        let (start, mut joined) = match pending.take() {
            Some((s, acc)) => (s, acc),
            None => {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                (number, String::new())
            }
        };
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            if joined.len() > MAX_RULE_LEN {
                return Err(err(start, "rule too long"));
            }
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(line);
        let rule = parse_rule(&joined, vars).map_err(|message| RuleError {
            line: start,
            message,
        })?;
        if !seen.insert((rule.gid, rule.sid)) {
            return Err(err(
                start,
                &format!("sid {} is used by an earlier rule", rule.sid),
            ));
        }
        rules.push(rule);
    }
    if let Some((start, _)) = pending {
        return Err(err(start, "the rule's last line ends with '\\'"));
    }
    if rules.is_empty() {
        return Err(err(0, "no rules in the file"));
    }
    Ok(rules)
}

fn err(line: usize, message: &str) -> RuleError {
    RuleError {
        line,
        message: message.to_string(),
    }
}

/// Splits the header into its 7 fields, keeping `[..]` lists (which may hold spaces) whole.
fn header_fields(header: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for ch in header.chars() {
        match ch {
            '[' => {
                depth += 1;
                cur.push(ch);
            }
            ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "unbalanced ']' in the rule header".to_string())?;
                cur.push(ch);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    fields.push(std::mem::take(&mut cur));
                }
            }
            c if c.is_whitespace() => {}
            c => cur.push(c),
        }
    }
    if depth != 0 {
        return Err("unbalanced '[' in the rule header".into());
    }
    if !cur.is_empty() {
        fields.push(cur);
    }
    Ok(fields)
}

/// Parses one rule (one logical line).
pub fn parse_rule(text: &str, vars: &Vars) -> Result<Rule, String> {
    let text = text.trim();
    if text.len() > MAX_RULE_LEN {
        return Err("rule too long".into());
    }
    let open = text
        .find('(')
        .ok_or_else(|| "no options: a rule ends with (msg:\"…\"; sid:N;)".to_string())?;
    let (header, rest) = text.split_at(open);
    let body = rest
        .strip_prefix('(')
        .and_then(|r| r.trim_end().strip_suffix(')'))
        .ok_or_else(|| "the options must end with ')'".to_string())?;
    let f = header_fields(header)?;
    let action = f.first().map(String::as_str).unwrap_or("");
    if action != "alert" {
        return Err(format!(
            "action {action:?} is not supported (the IDS only alerts: use `alert`)"
        ));
    }
    if f.len() != 7 {
        return Err(format!(
            "the header needs 7 fields (action proto src sport dir dst dport), found {}",
            f.len()
        ));
    }
    let proto = match f[1].as_str() {
        "ip" => Proto::Ip,
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        other => {
            return Err(format!(
                "protocol {other:?} is not supported (use ip, tcp, udp or icmp; application-layer protocols need Suricata itself)"
            ))
        }
    };
    let src = addr_spec(&f[2], vars)?;
    let src_ports = port_spec(&f[3], vars)?;
    let bidirectional = match f[4].as_str() {
        "->" => false,
        "<>" => true,
        other => {
            return Err(format!(
                "direction {other:?} is not supported (use -> or <>)"
            ))
        }
    };
    let dst = addr_spec(&f[5], vars)?;
    let dst_ports = port_spec(&f[6], vars)?;
    let ports_given = !(src_ports.is_any() && dst_ports.is_any());
    if !proto.has_ports() && ports_given {
        return Err(format!(
            "protocol {} has no ports: use `any` for both ports",
            proto.keyword()
        ));
    }
    let mut rule = Rule {
        proto,
        src,
        src_ports,
        bidirectional,
        dst,
        dst_ports,
        msg: String::new(),
        sid: 0,
        rev: 1,
        gid: 1,
        classtype: None,
        priority: None,
        contents: Vec::new(),
    };
    let mut have_msg = false;
    let mut have_sid = false;
    let mut once = HashSet::new();
    for opt in split_options(body)? {
        let (key, value) = match opt.split_once(':') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (opt.trim(), None),
        };
        if key.is_empty() {
            continue;
        }
        if ACCEPTED_IGNORED.contains(&key) {
            continue;
        }
        if !SUPPORTED_OPTIONS.contains(&key) {
            return Err(format!(
                "keyword {key:?} is not supported (supported: {}; accepted and ignored: {})",
                SUPPORTED_OPTIONS.join(", "),
                ACCEPTED_IGNORED.join(", ")
            ));
        }
        if key != "content" && key != "nocase" && !once.insert(key.to_string()) {
            return Err(format!("option {key:?} is given twice"));
        }
        let need = |v: Option<&str>| -> Result<String, String> {
            v.filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("option {key:?} needs a value"))
        };
        match key {
            "msg" => {
                rule.msg = unquote(&need(value)?)?;
                have_msg = true;
            }
            "sid" => {
                rule.sid = number(key, &need(value)?)?;
                if rule.sid == 0 {
                    return Err("sid must be at least 1".into());
                }
                have_sid = true;
            }
            "rev" => rule.rev = number(key, &need(value)?)?,
            "gid" => rule.gid = number(key, &need(value)?)?,
            "priority" => {
                let p: u32 = number(key, &need(value)?)?;
                if !(1..=255).contains(&p) {
                    return Err(format!("priority {p} is outside 1-255"));
                }
                rule.priority = u8::try_from(p).ok();
            }
            "classtype" => {
                let v = need(value)?;
                if !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(format!("classtype {v:?} is not a class name"));
                }
                rule.classtype = Some(v);
            }
            "content" => {
                let v = need(value)?;
                let (negated, v) = match v.strip_prefix('!') {
                    Some(r) => (true, r.trim_start().to_string()),
                    None => (false, v),
                };
                let bytes = content_bytes(&unquote(&v)?)?;
                if bytes.is_empty() {
                    return Err("content must not be empty".into());
                }
                rule.contents.push(Content {
                    bytes,
                    nocase: false,
                    negated,
                });
            }
            "nocase" => {
                if value.is_some() {
                    return Err("nocase takes no value".into());
                }
                let last = rule
                    .contents
                    .last_mut()
                    .ok_or_else(|| "nocase must follow a content".to_string())?;
                if !last.bytes.is_ascii() {
                    return Err("nocase on a content with non-ASCII bytes is not supported".into());
                }
                last.nocase = true;
            }
            _ => {}
        }
    }
    if !have_msg {
        return Err("missing msg".into());
    }
    if !have_sid {
        return Err("missing sid".into());
    }
    Ok(rule)
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{key} {v:?} is not a valid number"))
}

/// Splits `key:value; key; …` at `;` outside quotes (`\;` and `\"` are escapes).
fn split_options(body: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = body.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                cur.push(ch);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            ';' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted string in the options".into());
    }
    if !cur.trim().is_empty() {
        return Err(format!(
            "option {:?} must end with ';'",
            cur.trim().chars().take(40).collect::<String>()
        ));
    }
    Ok(out)
}

/// A quoted option value with Suricata's escapes (`\"`, `\;`, `\\`).
fn unquote(v: &str) -> Result<String, String> {
    let inner = v
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .filter(|_| v.len() >= 2)
        .ok_or_else(|| format!("value {v:?} must be in double quotes"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some(c @ ('"' | ';' | '\\' | ':')) => out.push(c),
                Some(c) => return Err(format!("unknown escape \\{c} in {v:?}")),
                None => return Err(format!("value {v:?} ends with '\\'")),
            },
            '"' => return Err(format!("unescaped '\"' inside {v:?}")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A content string: text with `|41 42|` hex sections.
fn content_bytes(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut parts = s.split('|');
    let mut hex = false;
    let count = s.matches('|').count();
    if count % 2 == 1 {
        return Err(format!("unbalanced '|' in content {s:?}"));
    }
    for part in parts.by_ref() {
        if hex {
            let digits: String = part.chars().filter(|c| !c.is_whitespace()).collect();
            if digits.len() % 2 == 1 || digits.is_empty() {
                return Err(format!("bad hex bytes |{part}| in content"));
            }
            for i in (0..digits.len()).step_by(2) {
                let byte = digits
                    .get(i..i + 2)
                    .and_then(|d| u8::from_str_radix(d, 16).ok())
                    .ok_or_else(|| format!("bad hex bytes |{part}| in content"))?;
                out.push(byte);
            }
        } else {
            out.extend_from_slice(part.as_bytes());
        }
        hex = !hex;
    }
    Ok(out)
}

/// Top-level comma split of a list body.
fn list_items(body: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, ch) in body.char_indices() {
        match ch {
            '[' => depth += 1,
            ']' => depth = depth.checked_sub(1).ok_or("unbalanced ']'")?,
            ',' if depth == 0 => {
                items.push(body[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(body[start..].trim());
    if items.iter().any(|i| i.is_empty()) {
        return Err(format!("empty element in list [{body}]"));
    }
    Ok(items)
}

struct AddrAcc {
    any: bool,
    include: Vec<Cidr>,
    exclude: Vec<Cidr>,
}

fn addr_spec(text: &str, vars: &Vars) -> Result<AddrSpec, String> {
    let mut acc = AddrAcc {
        any: false,
        include: Vec::new(),
        exclude: Vec::new(),
    };
    addr_into(text, vars, false, 0, &mut acc)?;
    if acc.any {
        acc.include.clear();
    }
    if !acc.any && acc.include.is_empty() && acc.exclude.is_empty() {
        return Err(format!("address {text:?} is empty"));
    }
    Ok(AddrSpec {
        include: acc.include,
        exclude: acc.exclude,
    })
}

fn addr_into(
    text: &str,
    vars: &Vars,
    negated: bool,
    depth: usize,
    acc: &mut AddrAcc,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("address {text:?} nests too deep"));
    }
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('!') {
        return addr_into(rest, vars, !negated, depth + 1, acc);
    }
    if let Some(body) = text.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        for item in list_items(body)? {
            addr_into(item, vars, negated, depth + 1, acc)?;
        }
        return Ok(());
    }
    if let Some(name) = text.strip_prefix('$') {
        let value = vars
            .addresses
            .get(name)
            .ok_or_else(|| format!("unknown address variable ${name}"))?;
        return addr_into(value, vars, negated, depth + 1, acc);
    }
    if text == "any" {
        if negated {
            return Err("!any matches no address".into());
        }
        acc.any = true;
        return Ok(());
    }
    let cidr = parse_cidr(text)?;
    if negated {
        acc.exclude.push(cidr);
    } else {
        acc.include.push(cidr);
    }
    Ok(())
}

fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let bad = || format!("address {text:?} is not an IP address, CIDR, list, variable or any");
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let full = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.parse::<u8>().map_err(|_| bad())?,
        None => full,
    };
    Cidr::new(addr, prefix).ok_or_else(bad)
}

fn port_spec(text: &str, vars: &Vars) -> Result<PortSpec, String> {
    let mut any = false;
    let mut spec = PortSpec::default();
    port_into(text, vars, false, 0, &mut any, &mut spec)?;
    if any {
        spec.include.clear();
    }
    if !any && spec.is_any() {
        return Err(format!("port {text:?} is empty"));
    }
    Ok(spec)
}

fn port_into(
    text: &str,
    vars: &Vars,
    negated: bool,
    depth: usize,
    any: &mut bool,
    spec: &mut PortSpec,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("port {text:?} nests too deep"));
    }
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('!') {
        return port_into(rest, vars, !negated, depth + 1, any, spec);
    }
    if let Some(body) = text.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        for item in list_items(body)? {
            port_into(item, vars, negated, depth + 1, any, spec)?;
        }
        return Ok(());
    }
    if let Some(name) = text.strip_prefix('$') {
        let value = vars
            .ports
            .get(name)
            .ok_or_else(|| format!("unknown port variable ${name}"))?;
        return port_into(value, vars, negated, depth + 1, any, spec);
    }
    if text == "any" {
        if negated {
            return Err("!any matches no port".into());
        }
        *any = true;
        return Ok(());
    }
    let bad = || format!("port {text:?} is not a port, range a:b, list, variable or any");
    let num = |s: &str, dflt: u16| -> Result<u16, String> {
        if s.is_empty() {
            Ok(dflt)
        } else {
            s.parse().map_err(|_| bad())
        }
    };
    let range = match text.split_once(':') {
        Some((a, b)) => {
            if a.is_empty() && b.is_empty() {
                return Err(bad());
            }
            (num(a, 0)?, num(b, u16::MAX)?)
        }
        None => {
            let p = num(text, 0)?;
            if text.is_empty() {
                return Err(bad());
            }
            (p, p)
        }
    };
    if range.0 > range.1 {
        return Err(format!("port range {text:?} is backwards"));
    }
    if negated {
        spec.exclude.push(range);
    } else {
        spec.include.push(range);
    }
    Ok(())
}
