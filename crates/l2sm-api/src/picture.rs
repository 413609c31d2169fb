//! A picture of the topology: switches, links coloured by health and labelled with latency and
//! loss, networks and the switches their ports are on. [`dot`] writes Graphviz DOT (what
//! `l2sm topology --dot` prints and `--format svg|png` lays out with `dot`); [`svg`] draws the
//! same elements directly (switches on a circle, networks on an outer circle), for the
//! controller, which does not run Graphviz.

use crate::v1::{LinkHealthView, LinkView, NetworkView, SwitchStatus};
use std::fmt::Write as _;

/// Loss at or above which a live link is drawn as degraded.
pub const DEGRADED_LOSS: f64 = 0.01;

/// How a link is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkHealth {
    /// Live, nothing lost in either direction.
    Good,
    /// Live, but a direction loses at least [`DEGRADED_LOSS`] of its probes.
    Degraded,
    /// Not live: a port is down or probes stopped.
    Down,
    /// Live, nothing measured yet.
    Unknown,
}

impl LinkHealth {
    /// Of a link as the API reports it.
    pub fn of(l: &LinkView) -> LinkHealth {
        if !l.live {
            return LinkHealth::Down;
        }
        let losses: Vec<f64> = [&l.ab, &l.ba].iter().filter_map(|d| d.loss).collect();
        if losses.is_empty() {
            LinkHealth::Unknown
        } else if losses.iter().any(|x| *x >= DEGRADED_LOSS) {
            LinkHealth::Degraded
        } else {
            LinkHealth::Good
        }
    }

    /// Line colour.
    pub fn color(self) -> &'static str {
        match self {
            LinkHealth::Good => "#2e7d32",
            LinkHealth::Degraded => "#ef6c00",
            LinkHealth::Down => "#c62828",
            LinkHealth::Unknown => "#757575",
        }
    }

    /// One word.
    pub fn word(self) -> &'static str {
        match self {
            LinkHealth::Good => "good",
            LinkHealth::Degraded => "degraded",
            LinkHealth::Down => "down",
            LinkHealth::Unknown => "unmeasured",
        }
    }
}

/// `20.1 ms 0%` for one direction (`-` for what is not measured).
pub fn direction_text(d: &LinkHealthView) -> String {
    let latency = d
        .latency_ms
        .map(|l| format!("{l:.1} ms"))
        .unwrap_or_else(|| "- ms".into());
    let loss = d
        .loss
        .map(|l| format!("{:.0}%", l * 100.0))
        .unwrap_or_else(|| "-%".into());
    format!("{latency} {loss}")
}

/// The names of a link's ends from its id (`n1--n2`, `n1:eth1--n2:eth2`: the nodes), or
/// `a` and `b`.
pub fn end_names(l: &LinkView) -> (String, String) {
    let node = |s: &str| s.split(':').next().unwrap_or(s).to_string();
    match l.id.split_once("--") {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => (node(a), node(b)),
        _ => ("a".into(), "b".into()),
    }
}

/// The two lines of a link's label: `n1>n2 20.1 ms 0%` and `n2>n1 ...`, or `down`.
pub fn link_label(l: &LinkView) -> Vec<String> {
    if !l.live {
        return vec![format!("{} down", l.kind)];
    }
    let (a, b) = end_names(l);
    vec![
        format!("{a}>{b} {}", direction_text(&l.ab)),
        format!("{b}>{a} {}", direction_text(&l.ba)),
    ]
}

/// The switch a port id (`of:<16 hex>/<n>`) is on.
fn switch_of(port: &str) -> &str {
    port.rsplit_once('/').map(|(s, _)| s).unwrap_or(port)
}

/// The switches a network has ports on, sorted, once each.
fn network_switches(n: &NetworkView) -> Vec<&str> {
    let mut on: Vec<&str> = n.endpoints.iter().map(|e| switch_of(e)).collect();
    on.sort_unstable();
    on.dedup();
    on
}

/// A DOT string literal.
fn dot_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz DOT of the topology (an undirected graph named `l2sm`).
pub fn dot(switches: &[SwitchStatus], links: &[LinkView], networks: &[NetworkView]) -> String {
    let mut out = String::from("graph l2sm {\n  node [shape=box, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n");
    for s in switches {
        let _ = writeln!(
            out,
            "  {} [label={}];",
            dot_str(&s.id),
            dot_str(&format!("{}\\n{} flows", s.id, s.flows)).replace("\\\\n", "\\n")
        );
    }
    for l in links {
        let health = LinkHealth::of(l);
        let style = if !l.live {
            "dotted"
        } else if l.kind == "trunk" {
            "dashed"
        } else {
            "solid"
        };
        let label = format!("{} {}\\n{}", l.kind, l.id, link_label(l).join("\\n"));
        let _ = writeln!(
            out,
            "  {} -- {} [label={}, style={style}, color=\"{}\", penwidth=2, tooltip={}];",
            dot_str(&l.a),
            dot_str(&l.b),
            dot_str(&label).replace("\\\\n", "\\n"),
            health.color(),
            dot_str(health.word()),
        );
    }
    for n in networks {
        let node = format!("net:{}", n.name);
        let _ = writeln!(
            out,
            "  {} [shape=ellipse, label={}];",
            dot_str(&node),
            dot_str(&format!("{} (vni {})", n.name, n.vni))
        );
        for sw in network_switches(n) {
            let _ = writeln!(
                out,
                "  {} -- {} [style=dotted];",
                dot_str(&node),
                dot_str(sw)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Text for XML character data and attribute values.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An SVG picture of the topology, laid out without Graphviz: switches evenly on a circle
/// (every switch named by a link or a network is drawn, connected or not), links as straight
/// lines coloured by [`LinkHealth`] with their label at the middle, networks on an outer
/// circle joined to their switches by dotted lines.
pub fn svg(switches: &[SwitchStatus], links: &[LinkView], networks: &[NetworkView]) -> String {
    let mut ids: Vec<&str> = switches.iter().map(|s| s.id.as_str()).collect();
    ids.extend(links.iter().flat_map(|l| [l.a.as_str(), l.b.as_str()]));
    ids.extend(networks.iter().flat_map(network_switches));
    ids.sort_unstable();
    ids.dedup();
    let n = ids.len().max(1) as f64;
    let radius = (80.0 * n / std::f64::consts::PI).max(140.0);
    let outer = radius + 120.0;
    let margin = 190.0;
    let size = 2.0 * (outer + margin);
    let center = size / 2.0;
    let at = |i: usize, count: f64, r: f64| {
        let angle = std::f64::consts::TAU * i as f64 / count - std::f64::consts::FRAC_PI_2;
        (center + r * angle.cos(), center + r * angle.sin())
    };
    let pos = |id: &str| ids.binary_search(&id).ok().map(|i| at(i, n, radius));
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{size:.0}" height="{size:.0}" viewBox="0 0 {size:.0} {size:.0}" font-family="sans-serif" font-size="11">
<title>L2S-M topology</title>
<rect width="100%" height="100%" fill="white"/>"#
    );
    // Networks first, so links and switches are drawn over their dotted lines.
    let nets = networks.len().max(1) as f64;
    for (k, net) in networks.iter().enumerate() {
        let (nx, ny) = at(k, nets, outer);
        for sw in network_switches(net) {
            if let Some((x, y)) = pos(sw) {
                let _ = writeln!(
                    out,
                    r##"<line x1="{nx:.1}" y1="{ny:.1}" x2="{x:.1}" y2="{y:.1}" stroke="#90a4ae" stroke-dasharray="2,3"/>"##
                );
            }
        }
        let _ = writeln!(
            out,
            r##"<g class="network" id="{}"><ellipse cx="{nx:.1}" cy="{ny:.1}" rx="70" ry="18" fill="#e3f2fd" stroke="#1565c0"/><text x="{nx:.1}" y="{:.1}" text-anchor="middle">{} (vni {})</text></g>"##,
            xml(&format!("net:{}", net.name)),
            ny + 4.0,
            xml(&net.name),
            net.vni
        );
    }
    for l in links {
        let (Some((x1, y1)), Some((x2, y2))) = (pos(&l.a), pos(&l.b)) else {
            continue;
        };
        let health = LinkHealth::of(l);
        let dash = if !l.live {
            r#" stroke-dasharray="3,4""#
        } else if l.kind == "trunk" {
            r#" stroke-dasharray="8,4""#
        } else {
            ""
        };
        let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        let _ = writeln!(
            out,
            r#"<g class="link {}" id="{}"><title>{} {} {}/{} - {}/{}: {}</title><line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{}" stroke-width="3"{dash}/>"#,
            health.word(),
            xml(&format!("link:{}", l.id)),
            xml(&l.kind),
            xml(&l.id),
            xml(&l.a),
            l.a_port,
            xml(&l.b),
            l.b_port,
            health.word(),
            health.color(),
        );
        for (i, line) in link_label(l).iter().enumerate() {
            let _ = writeln!(
                out,
                r#"<text x="{mx:.1}" y="{:.1}" text-anchor="middle" fill="{}">{}</text>"#,
                my - 4.0 + 13.0 * i as f64,
                health.color(),
                xml(line)
            );
        }
        out.push_str("</g>\n");
    }
    for (i, id) in ids.iter().enumerate() {
        let (x, y) = at(i, n, radius);
        let sw = switches.iter().find(|s| s.id == *id);
        let (fill, sub) = match sw {
            Some(s) => ("#fafafa", format!("{} flows", s.flows)),
            None => ("#eeeeee", "not connected".to_string()),
        };
        let _ = writeln!(
            out,
            r##"<g class="switch" id="{}"><rect x="{:.1}" y="{:.1}" width="150" height="36" rx="4" fill="{fill}" stroke="#212121"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#616161">{}</text></g>"##,
            xml(id),
            x - 75.0,
            y - 18.0,
            y - 3.0,
            xml(id),
            y + 12.0,
            xml(&sub)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(a: &str, b: &str, live: bool, loss: Option<f64>) -> LinkView {
        let d = LinkHealthView {
            latency_ms: Some(20.25),
            loss,
            ..Default::default()
        };
        LinkView {
            a: a.into(),
            a_port: 1,
            b: b.into(),
            b_port: 2,
            kind: "tunnel".into(),
            live,
            id: format!("{a}--{b}"),
            ab: d.clone(),
            ba: d,
            ..Default::default()
        }
    }

    fn switch(id: &str) -> SwitchStatus {
        SwitchStatus {
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn links_are_classified_by_liveness_and_loss() {
        assert_eq!(
            LinkHealth::of(&link("a", "b", true, Some(0.0))),
            LinkHealth::Good
        );
        assert_eq!(
            LinkHealth::of(&link("a", "b", true, Some(0.05))),
            LinkHealth::Degraded
        );
        assert_eq!(
            LinkHealth::of(&link("a", "b", false, Some(0.0))),
            LinkHealth::Down
        );
        assert_eq!(
            LinkHealth::of(&link("a", "b", true, None)),
            LinkHealth::Unknown
        );
        assert_eq!(
            link_label(&link("n1", "n2", true, Some(0.5))),
            ["n1>n2 20.2 ms 50%", "n2>n1 20.2 ms 50%"]
        );
    }

    #[test]
    fn dot_colours_and_labels_links() {
        let mut l = link("of:1", "of:2", true, Some(0.5));
        l.id = "n1--n2".into();
        let d = dot(&[switch("of:1"), switch("of:2")], &[l], &[]);
        assert!(
            d.starts_with("graph l2sm {") && d.trim_end().ends_with('}'),
            "{d}"
        );
        assert!(d.contains("color=\"#ef6c00\""), "{d}");
        assert!(d.contains("n1>n2 20.2 ms 50%"), "{d}");
        assert!(d.contains("style=solid"), "{d}");
    }

    #[test]
    fn svg_draws_every_switch_link_and_network_and_escapes_names() {
        let net = NetworkView {
            name: "b<l>ue".into(),
            vni: 7,
            endpoints: vec!["of:3/4".into()],
            ..Default::default()
        };
        let s = svg(
            &[switch("of:1"), switch("of:2")],
            &[link("of:1", "of:2", false, None)],
            &[net],
        );
        assert!(
            s.starts_with("<?xml") && s.trim_end().ends_with("</svg>"),
            "{s}"
        );
        for id in ["of:1", "of:2", "of:3"] {
            assert!(
                s.contains(&format!("class=\"switch\" id=\"{id}\"")),
                "{id}: {s}"
            );
        }
        assert!(s.contains("class=\"link down\""), "{s}");
        assert!(s.contains("b&lt;l&gt;ue (vni 7)"), "{s}");
        assert!(!s.contains("b<l>ue"), "{s}");
        // Balanced groups.
        assert_eq!(s.matches("<g ").count(), s.matches("</g>").count());
    }
}
