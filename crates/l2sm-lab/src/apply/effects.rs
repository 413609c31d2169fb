//! What a container's `command`/`args` would do to its pod's own network, recognised and never
//! executed: `ip addr add`, `ip route add`, `ip link set … up`, IP forwarding through `sysctl -w`
//! or `echo 1 > /proc/sys/net/…`. Shell scripts (`sh -c "…"`) are split on `&&`, `||`, `;`,
//! `|`, `&` and newlines; every other statement is reported as not emulated. Nothing here
//! runs a process or touches a file: the effects are applied by the caller through netlink
//! and the pod namespace's own `/proc/sys/net`.

use ipnet::IpNet;
use std::net::IpAddr;

/// One network effect on the pod's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `ip addr add ADDR dev DEV`.
    AddAddress {
        /// Interface.
        dev: String,
        /// Address with prefix length (`/32` or `/128` when none was written, as `ip` does).
        addr: IpNet,
    },
    /// `ip route add DST [via GW] [dev DEV]`.
    AddRoute {
        /// Destination (`default` is `0.0.0.0/0` or `::/0`).
        dst: IpNet,
        /// Gateway.
        via: Option<IpAddr>,
        /// Output interface.
        dev: Option<String>,
    },
    /// `ip link set [dev] DEV up`.
    LinkUp {
        /// Interface.
        dev: String,
    },
    /// A `net.*` sysctl of the pod's namespace, as a path under `/proc/sys/net`
    /// (`ipv4/ip_forward`).
    Sysctl {
        /// Key under `/proc/sys/net`.
        key: String,
        /// Value written.
        value: String,
    },
}

impl Effect {
    /// Whether a container needs `NET_ADMIN` (ip commands) or to be privileged (a writable
    /// `/proc/sys`) for this effect in a cluster.
    pub fn needs_privileged(&self) -> bool {
        matches!(self, Effect::Sysctl { .. })
    }
}

/// A container's statements: the recognised effects (with their text) and the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// Recognised effects, in order, each with the statement it came from.
    pub effects: Vec<(Effect, String)>,
    /// Statements with no recognised network effect (reported as not emulated).
    pub other: Vec<String>,
}

/// Reads a container's `command` followed by its `args`.
pub fn parse_container(command: &[String], args: &[String]) -> Script {
    let argv: Vec<String> = command.iter().chain(args).cloned().collect();
    let mut script = Script::default();
    if argv.is_empty() {
        return script;
    }
    let shell = matches!(
        basename(&argv[0]),
        "sh" | "bash" | "ash" | "dash" | "zsh" | "busybox"
    );
    let statements: Vec<Vec<String>> = if shell {
        // `sh [-e…] -c SCRIPT [NAME ARGS…]` (busybox: `busybox sh -c`).
        match argv.iter().position(|a| a == "-c") {
            Some(i) => match argv.get(i + 1) {
                Some(text) => split_script(text),
                None => vec![argv.clone()],
            },
            None => vec![argv.clone()],
        }
    } else {
        vec![argv.clone()]
    };
    for mut words in statements {
        // Shell grammar around commands: `while …; do CMD; done` lists CMD, not `do CMD`.
        while words
            .first()
            .is_some_and(|w| matches!(w.as_str(), "do" | "then" | "else" | "{" | "("))
        {
            words.remove(0);
        }
        if words.is_empty()
            || (words.len() == 1 && matches!(words[0].as_str(), "done" | "fi" | "}" | ")" | "esac"))
        {
            continue;
        }
        let text = words.join(" ");
        match recognise(&words) {
            Some(effects) => {
                for e in effects {
                    script.effects.push((e, text.clone()));
                }
            }
            None => script.other.push(text),
        }
    }
    script
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// Splits a shell script into statements of words: quotes group, `\` escapes, `#` starts a
/// comment, and `&&`, `||`, `;`, `|`, `&` and newlines end a statement. `>` is its own word.
pub fn split_script(text: &str) -> Vec<Vec<String>> {
    let mut statements = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, words: &mut Vec<String>| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                match chars.next() {
                    // A line continuation.
                    Some('\n') => {}
                    Some(n) => {
                        in_word = true;
                        word.push(n);
                    }
                    None => {}
                }
            }
            '#' if !in_word => {
                for q in chars.by_ref() {
                    if q == '\n' {
                        break;
                    }
                }
                end_word(&mut word, &mut in_word, &mut words);
                if !words.is_empty() {
                    statements.push(std::mem::take(&mut words));
                }
            }
            ';' | '\n' | '&' | '|' => {
                end_word(&mut word, &mut in_word, &mut words);
                if matches!(c, '&' | '|') && chars.peek() == Some(&c) {
                    chars.next();
                }
                if !words.is_empty() {
                    statements.push(std::mem::take(&mut words));
                }
            }
            '>' => {
                end_word(&mut word, &mut in_word, &mut words);
                words.push(">".into());
            }
            c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut words),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut words);
    if !words.is_empty() {
        statements.push(words);
    }
    statements
}

/// The effects of one statement; `None` when it is not one we recognise in full.
fn recognise(words: &[String]) -> Option<Vec<Effect>> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match basename(w[0]) {
        "ip" => recognise_ip(&w[1..]).map(|e| vec![e]),
        "sysctl" => recognise_sysctl(&w[1..]),
        "echo" => recognise_echo(&w[1..]).map(|e| vec![e]),
        _ => None,
    }
}

fn is_prefix_of(word: &str, full: &str) -> bool {
    !word.is_empty() && full.starts_with(word)
}

fn recognise_ip(w: &[&str]) -> Option<Effect> {
    let mut w = w;
    let mut family: Option<u8> = None;
    while let Some(opt) = w.first().filter(|o| o.starts_with('-')) {
        match *opt {
            "-4" => family = Some(4),
            "-6" => family = Some(6),
            _ => return None,
        }
        w = &w[1..];
    }
    let (object, rest) = w.split_first()?;
    let (verb, rest) = rest.split_first()?;
    if is_prefix_of(object, "address") {
        if *verb != "add" && *verb != "a" {
            return None;
        }
        let mut dev = None;
        let mut addr = None;
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                "dev" => {
                    dev = Some(rest.get(i + 1)?.to_string());
                    i += 2;
                }
                "local" => {
                    addr = Some(parse_addr(rest.get(i + 1)?)?);
                    i += 2;
                }
                a if addr.is_none() => {
                    addr = Some(parse_addr(a)?);
                    i += 1;
                }
                _ => return None,
            }
        }
        let addr = addr?;
        if family.is_some_and(|f| (f == 4) != addr.addr().is_ipv4()) {
            return None;
        }
        return Some(Effect::AddAddress { dev: dev?, addr });
    }
    if is_prefix_of(object, "route") {
        if *verb != "add" && *verb != "a" {
            return None;
        }
        let mut dst: Option<&str> = None;
        let mut via = None;
        let mut dev = None;
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                "via" => {
                    via = Some(rest.get(i + 1)?.parse::<IpAddr>().ok()?);
                    i += 2;
                }
                "dev" => {
                    dev = Some(rest.get(i + 1)?.to_string());
                    i += 2;
                }
                "to" => {
                    dst = Some(rest.get(i + 1)?);
                    i += 2;
                }
                d if dst.is_none() => {
                    dst = Some(d);
                    i += 1;
                }
                _ => return None,
            }
        }
        let v6 = match (via, family) {
            (Some(gw), _) => gw.is_ipv6(),
            (None, Some(f)) => f == 6,
            (None, None) => false,
        };
        let dst = match dst? {
            "default" | "all" | "any" if v6 => "::/0".parse().ok()?,
            "default" | "all" | "any" => "0.0.0.0/0".parse().ok()?,
            d => parse_addr(d)?.trunc(),
        };
        if via.is_none() && dev.is_none() {
            return None;
        }
        if via.is_some_and(|gw| gw.is_ipv4() != dst.addr().is_ipv4()) {
            return None;
        }
        return Some(Effect::AddRoute { dst, via, dev });
    }
    if is_prefix_of(object, "link") {
        if *verb != "set" {
            return None;
        }
        let rest = match rest.first() {
            Some(&"dev") => &rest[1..],
            _ => rest,
        };
        return match rest {
            [dev, "up"] => Some(Effect::LinkUp {
                dev: dev.to_string(),
            }),
            _ => None,
        };
    }
    None
}

/// `a.b.c.d[/len]`, as `ip` reads it (no length: a host address).
fn parse_addr(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        return s.parse().ok();
    }
    let a: IpAddr = s.parse().ok()?;
    Some(IpNet::from(a))
}

/// The namespaced forwarding sysctls, as paths under `/proc/sys/net`; `None` for any other.
pub fn forwarding_key(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    let ok = match parts.as_slice() {
        ["ipv4", "ip_forward"] => true,
        ["ipv4" | "ipv6", "conf", dev, "forwarding"] => valid_dev(dev),
        _ => false,
    };
    ok.then(|| path.to_string())
}

fn valid_dev(dev: &str) -> bool {
    !dev.is_empty()
        && dev.len() <= 15
        && dev != "."
        && dev != ".."
        && dev
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `net.ipv4.ip_forward` → `ipv4/ip_forward` when it is a forwarding key.
pub fn sysctl_key(dotted: &str) -> Option<String> {
    let rest = dotted.strip_prefix("net.")?;
    forwarding_key(&rest.replace('.', "/"))
}

fn bool_value(v: &str) -> Option<String> {
    matches!(v, "0" | "1").then(|| v.to_string())
}

fn recognise_sysctl(w: &[&str]) -> Option<Vec<Effect>> {
    let mut out = Vec::new();
    for a in w {
        match *a {
            "-w" | "-q" => {}
            kv => {
                let (k, v) = kv.split_once('=')?;
                out.push(Effect::Sysctl {
                    key: sysctl_key(k.trim())?,
                    value: bool_value(v.trim())?,
                });
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

fn recognise_echo(w: &[&str]) -> Option<Effect> {
    match w {
        [v, ">", path] => Some(Effect::Sysctl {
            key: forwarding_key(path.strip_prefix("/proc/sys/net/")?)?,
            value: bool_value(v)?,
        }),
        _ => None,
    }
}
