//! The operator's stanza in the cluster's CoreDNS configuration: server blocks forwarding the
//! zones `l2sm` (and `inter.l2sm`) to the controller's DNS Service, so pods resolve
//! `<name>.<network>.l2sm` through their main interface.
//!
//! Only the lines between [`BEGIN`] and [`END`] are ever written; the rest of the Corefile is
//! kept byte for byte. A Corefile we cannot read safely (unbalanced braces or quotes, markers
//! that are not one well-placed pair, a server block of its own for one of our zones) is left
//! untouched and reported ([`CorefileError`]; the operator records a Warning Event on the
//! ConfigMap). Writes are merge patches of `data.Corefile` carrying the resourceVersion that
//! was read: a concurrent writer makes the API server answer 409 and the edit is done again
//! on what it wrote; nothing is written when the stanza is already right.

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Patch, PatchParams};
use kube::Api;
use std::time::Duration;

/// First line of the operator's stanza.
pub const BEGIN: &str = "# BEGIN l2sm-operator";
/// Last line of the operator's stanza.
pub const END: &str = "# END l2sm-operator";
/// The Corefile's key in the ConfigMap.
pub const COREFILE_KEY: &str = "Corefile";
/// Default ConfigMap (namespace, name): what kubeadm, k3s and most distributions use.
pub const DEFAULT_CONFIGMAP: (&str, &str) = ("kube-system", "coredns");
/// Reason of the Warning Event recorded on the ConfigMap when it is left untouched.
pub const EVENT_REASON: &str = "CorefileNotEdited";

/// Why the Corefile was left as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorefileError {
    /// `{`/`}` do not pair up (line of the first excess `}` or of the last unclosed `{`).
    #[error("unbalanced braces (line {0})")]
    Unbalanced(usize),
    /// A quoted string is not closed.
    #[error("unterminated quote (line {0})")]
    Unterminated(usize),
    /// The markers are not exactly one BEGIN followed by one END, outside every block.
    #[error("the l2sm-operator markers are not one BEGIN/END pair outside every block: {0}")]
    Markers(String),
    /// Another server block (outside our markers) already serves one of our zones: CoreDNS
    /// refuses a zone defined twice.
    #[error("line {line}: server block {key:?} outside the l2sm-operator markers already serves zone {zone}")]
    Conflict {
        /// Line of the block.
        line: usize,
        /// The block's key as written.
        key: String,
        /// Our zone it serves.
        zone: String,
    },
}

/// Where the stanza sends queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// The controller's DNS address (`ip:port`) for `l2sm`.
    pub l2sm: String,
    /// Where `inter.l2sm` goes (the provider controller's DNS); None: the same as `l2sm`.
    pub inter: Option<String>,
}

/// The stanza for `targets`, markers included, ending with a newline.
pub fn stanza(targets: &Targets) -> String {
    let mut s = format!(
        "{BEGIN}\n# Names on L2S-M networks (docs/dns.md). Written by the l2sm operator: edits between these markers are overwritten.\nl2sm:53 {{\n    forward . {}\n}}\n",
        targets.l2sm
    );
    if let Some(inter) = &targets.inter {
        s.push_str(&format!("inter.l2sm:53 {{\n    forward . {inter}\n}}\n"));
    }
    s.push_str(END);
    s.push('\n');
    s
}

/// One top-level server block key (as written) and its line.
struct Block {
    line: usize,
    key: String,
}

/// Checks braces and quotes of the Caddyfile syntax CoreDNS reads (`#` starts a comment at
/// the start of a token; `"…"` quotes with `\` escapes) and returns the top-level blocks'
/// keys with their lines (1-based).
fn scan(text: &str) -> Result<Vec<Block>, CorefileError> {
    let mut depth = 0usize;
    let mut line = 1usize;
    let mut opened_at: Vec<usize> = Vec::new();
    let mut blocks = Vec::new();
    let mut key = String::new();
    let mut key_line = 0usize;
    let mut chars = text.chars().peekable();
    let mut token_start = true;
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                line += 1;
                token_start = true;
                if depth == 0 {
                    key.push(' ');
                }
                continue;
            }
            '#' if token_start => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
                if depth == 0 {
                    key.push(' ');
                }
                token_start = true;
                continue;
            }
            '"' => {
                let start = line;
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' if chars.next() == Some('\n') => line += 1,
                        '\\' => {}
                        '\n' => line += 1,
                        '"' => {
                            closed = true;
                            break;
                        }
                        _ => {}
                    }
                }
                if !closed {
                    return Err(CorefileError::Unterminated(start));
                }
                token_start = false;
                continue;
            }
            '{' => {
                if depth == 0 {
                    blocks.push(Block {
                        line: key_line.max(1),
                        key: key.trim().to_string(),
                    });
                    key.clear();
                }
                depth += 1;
                opened_at.push(line);
            }
            '}' => {
                if depth == 0 {
                    return Err(CorefileError::Unbalanced(line));
                }
                depth -= 1;
                opened_at.pop();
            }
            c if depth == 0 => {
                if key.trim().is_empty() && !c.is_whitespace() {
                    key_line = line;
                }
                key.push(c);
            }
            _ => {}
        }
        token_start = c.is_whitespace();
    }
    if let Some(l) = opened_at.last() {
        return Err(CorefileError::Unbalanced(*l));
    }
    Ok(blocks)
}

/// The zone a server block key names (`dns://l2sm.:53` → `l2sm`), if it is on port 53 (or
/// no port).
fn zone_of(key: &str) -> Option<String> {
    let k = key.trim().to_ascii_lowercase();
    let k = k.strip_prefix("dns://").unwrap_or(&k);
    let (zone, port) = match k.rsplit_once(':') {
        Some((z, p)) => (z, p),
        None => (k, "53"),
    };
    (port == "53").then(|| zone.trim_end_matches('.').to_string())
}

/// The Corefile with our stanza set to `want` (None: removed); `Ok(None)` when it already is.
/// Errors leave it untouched.
pub fn edit(corefile: &str, want: Option<&str>) -> Result<Option<String>, CorefileError> {
    scan(corefile)?;
    // Line starts of every line, to cut whole lines.
    let lines: Vec<(usize, &str)> = corefile
        .split_inclusive('\n')
        .scan(0usize, |at, l| {
            let start = *at;
            *at += l.len();
            Some((start, l))
        })
        .collect();
    let begins: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].1.trim() == BEGIN)
        .collect();
    let ends: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].1.trim() == END)
        .collect();
    let region = match (begins.as_slice(), ends.as_slice()) {
        ([], []) => None,
        ([b], [e]) if b < e => {
            let start = lines[*b].0;
            let end = lines[*e].0 + lines[*e].1.len();
            // The markers must be outside every block: what precedes BEGIN is balanced.
            if scan(&corefile[..start]).is_err() {
                return Err(CorefileError::Markers(format!(
                    "BEGIN on line {} is inside a block",
                    b + 1
                )));
            }
            Some((start, end))
        }
        _ => {
            return Err(CorefileError::Markers(format!(
                "{} BEGIN and {} END lines",
                begins.len(),
                ends.len()
            )))
        }
    };
    let (before, current, after) = match region {
        Some((s, e)) => (&corefile[..s], &corefile[s..e], &corefile[e..]),
        None => (corefile, "", ""),
    };
    // The rest must not serve our zones itself.
    let rest = format!("{before}{after}");
    for block in scan(&rest)? {
        for key in block.key.split([' ', ',', '\t']).filter(|k| !k.is_empty()) {
            if let Some(zone) = zone_of(key).filter(|z| z == "l2sm" || z == "inter.l2sm") {
                return Err(CorefileError::Conflict {
                    line: block.line,
                    key: key.to_string(),
                    zone,
                });
            }
        }
    }
    let next = match (region, want) {
        (Some(_), Some(w)) if current == w => return Ok(None),
        (None, None) => return Ok(None),
        (Some(_), Some(w)) => format!("{before}{w}{after}"),
        (Some(_), None) => format!("{before}{after}"),
        (None, Some(w)) => {
            let sep = if before.is_empty() || before.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            format!("{before}{sep}{w}")
        }
    };
    Ok(Some(next))
}

/// What the operator's CoreDNS task maintains.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespace and name of CoreDNS's ConfigMap.
    pub configmap: (String, String),
    /// Namespace and name of the controller's Service (its cluster IP and DNS port).
    pub service: (String, String),
    /// Where `inter.l2sm` goes (`ip:port`, the provider controller's DNS); None: the
    /// controller's Service.
    pub inter: Option<String>,
    /// Keep the stanza (true) or remove it (false).
    pub enabled: bool,
    /// Time between two checks.
    pub interval: Duration,
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The stanza was already as wanted: nothing written.
    Unchanged,
    /// The Corefile was written (resourceVersion of the write).
    Written(String),
    /// No such ConfigMap (or no Corefile key): nothing to do.
    NoConfigMap,
}

/// Why a pass did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The Corefile is left untouched.
    #[error("Corefile of {0} left untouched: {1}")]
    Corefile(String, CorefileError),
    /// The controller's Service has no usable address.
    #[error("Service {0}: {1}")]
    Service(String, String),
    /// The API server refused or failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// Still conflicting after several tries.
    #[error("ConfigMap {0} kept changing under us (409 Conflict {1} times)")]
    Conflicts(String, u32),
}

/// The controller's DNS address from its Service: the cluster IP and the port named `dns`
/// (or the UDP port 53).
pub async fn service_target(
    client: &kube::Client,
    (ns, name): (&str, &str),
) -> Result<String, SyncError> {
    let what = format!("{ns}/{name}");
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .ok_or_else(|| SyncError::Service(what.clone(), "not found".into()))?;
    let spec = svc.spec.unwrap_or_default();
    let ip = spec
        .cluster_ip
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| SyncError::Service(what.clone(), "no cluster IP".into()))?;
    let ip: std::net::IpAddr = ip.parse().map_err(|_| {
        SyncError::Service(what.clone(), format!("cluster IP {ip:?} is no address"))
    })?;
    let ports = spec.ports.unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| {
            p.name
                .as_deref()
                .is_some_and(|n| n == "dns" || n == "dns-udp")
        })
        .or_else(|| {
            ports
                .iter()
                .find(|p| p.port == 53 && p.protocol.as_deref().unwrap_or("TCP") == "UDP")
        })
        .map(|p| p.port)
        .ok_or_else(|| SyncError::Service(what, "no port named dns (nor UDP 53)".into()))?;
    Ok(std::net::SocketAddr::new(ip, u16::try_from(port).unwrap_or(53)).to_string())
}

/// Tries a write guarded by the resourceVersion read this many times when it conflicts.
const CONFLICT_TRIES: u32 = 5;

/// One pass: reads the ConfigMap and writes the Corefile only when our stanza differs from
/// what `cfg` wants.
pub async fn sync_once(client: &kube::Client, cfg: &Config) -> Result<Outcome, SyncError> {
    let want = if cfg.enabled {
        let l2sm = service_target(client, (&cfg.service.0, &cfg.service.1)).await?;
        Some(stanza(&Targets {
            inter: cfg.inter.clone(),
            l2sm,
        }))
    } else {
        None
    };
    let (ns, name) = (&cfg.configmap.0, &cfg.configmap.1);
    let what = format!("{ns}/{name}");
    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    for _ in 0..CONFLICT_TRIES {
        let Some(cm) = api.get_opt(name).await? else {
            return Ok(Outcome::NoConfigMap);
        };
        let Some(corefile) = cm.data.as_ref().and_then(|d| d.get(COREFILE_KEY)) else {
            return Ok(Outcome::NoConfigMap);
        };
        let next = match edit(corefile, want.as_deref()) {
            Ok(None) => return Ok(Outcome::Unchanged),
            Ok(Some(next)) => next,
            Err(e) => return Err(SyncError::Corefile(what, e)),
        };
        // A merge patch of the one key, guarded by the version read: the API server answers
        // 409 if anyone wrote since, and other keys are never sent.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": cm.metadata.resource_version},
            "data": {COREFILE_KEY: next},
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(written) => {
                return Ok(Outcome::Written(
                    written.metadata.resource_version.unwrap_or_default(),
                ))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SyncError::Conflicts(what, CONFLICT_TRIES))
}

/// Keeps the stanza as `cfg` wants until `stop` resolves: one pass at once and every
/// `cfg.interval`. A Corefile left untouched gets one Warning Event [`EVENT_REASON`] on its
/// ConfigMap per distinct reason (not one per pass).
pub async fn run(
    client: kube::Client,
    recorder: kube::runtime::events::Recorder,
    cfg: Config,
    stop: impl std::future::Future<Output = ()>,
) {
    use kube::runtime::events::{Event, EventType};
    let mut reported: Option<String> = None;
    let work = async {
        loop {
            match sync_once(&client, &cfg).await {
                Ok(Outcome::Written(rv)) => {
                    reported = None;
                    tracing::info!(configmap = ?cfg.configmap, resource_version = %rv, enabled = cfg.enabled, "CoreDNS stanza written");
                }
                Ok(Outcome::Unchanged) => reported = None,
                Ok(Outcome::NoConfigMap) => {
                    tracing::debug!(configmap = ?cfg.configmap, "no CoreDNS ConfigMap with a Corefile: nothing to edit")
                }
                Err(SyncError::Corefile(what, e)) => {
                    let note = format!("Corefile left untouched: {e}");
                    tracing::warn!(configmap = %what, "{note}");
                    if reported.as_deref() != Some(note.as_str()) {
                        let reference = k8s_openapi::api::core::v1::ObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("ConfigMap".into()),
                            namespace: Some(cfg.configmap.0.clone()),
                            name: Some(cfg.configmap.1.clone()),
                            ..Default::default()
                        };
                        let event = Event {
                            type_: EventType::Warning,
                            reason: EVENT_REASON.into(),
                            note: Some(note.clone()),
                            action: "EditCorefile".into(),
                            secondary: None,
                        };
                        match recorder.publish(&event, &reference).await {
                            Ok(()) => reported = Some(note),
                            Err(e) => tracing::warn!("cannot record the {EVENT_REASON} event: {e}"),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(configmap = ?cfg.configmap, "CoreDNS stanza not synced: {e}")
                }
            }
            tokio::time::sleep(cfg.interval).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM: &str = ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n";

    fn targets() -> Targets {
        Targets {
            l2sm: "10.96.0.20:53".into(),
            inter: None,
        }
    }

    #[test]
    fn adds_replaces_and_removes_only_the_stanza() {
        let ours = stanza(&targets());
        let added = edit(KUBEADM, Some(&ours)).unwrap().unwrap();
        assert_eq!(added, format!("{KUBEADM}{ours}"));
        // Idempotent.
        assert_eq!(edit(&added, Some(&ours)).unwrap(), None);
        // Another address: only our lines change.
        let other = stanza(&Targets {
            l2sm: "10.96.0.21:53".into(),
            inter: Some("192.0.2.7:30053".into()),
        });
        let moved = edit(&added, Some(&other)).unwrap().unwrap();
        assert_eq!(moved, format!("{KUBEADM}{other}"));
        assert!(moved.contains("inter.l2sm:53 {\n    forward . 192.0.2.7:30053\n}"));
        // Removal gives the original back, byte for byte; removing again changes nothing.
        let removed = edit(&moved, None).unwrap().unwrap();
        assert_eq!(removed, KUBEADM);
        assert_eq!(edit(&removed, None).unwrap(), None);
        // A stanza in the middle (a user added blocks after it) is replaced in place.
        let middle = format!("{KUBEADM}{ours}example.org {{\n    whoami\n}}\n");
        let edited = edit(&middle, Some(&other)).unwrap().unwrap();
        assert_eq!(
            edited,
            format!("{KUBEADM}{other}example.org {{\n    whoami\n}}\n")
        );
        // No newline at the end of the user's Corefile.
        let bare = KUBEADM.trim_end();
        assert_eq!(
            edit(bare, Some(&ours)).unwrap().unwrap(),
            format!("{bare}\n{ours}")
        );
    }

    #[test]
    fn unreadable_corefiles_are_refused() {
        let ours = stanza(&targets());
        let cases: Vec<(String, &str)> = vec![
            (KUBEADM.replacen("}\n", "", 1), "Unbalanced"),
            (format!("{KUBEADM}}}\n"), "Unbalanced"),
            (format!("{KUBEADM}x \"open\n"), "Unterminated"),
            (format!("{KUBEADM}{BEGIN}\n"), "Markers"),
            (format!("{KUBEADM}{END}\n{BEGIN}\n"), "Markers"),
            (format!("{KUBEADM}{ours}{ours}"), "Markers"),
            (KUBEADM.replacen("    errors\n", &ours, 1), "Markers"),
            (format!("{KUBEADM}l2sm {{\n  file x\n}}\n"), "Conflict"),
            (
                format!("{KUBEADM}dns://inter.l2sm.:53 {{\n}}\n"),
                "Conflict",
            ),
            (format!("{KUBEADM}a.org, L2SM. {{\n}}\n"), "Conflict"),
        ];
        for (text, kind) in cases {
            for want in [Some(ours.as_str()), None] {
                let e = edit(&text, want).expect_err(&text);
                assert!(
                    format!("{e:?}").starts_with(kind),
                    "{kind}: {e:?} for {text}"
                );
            }
        }
        // Braces in comments and quotes do not count; another port of our zone is no
        // conflict; neither is a zone below ours.
        let fine = format!(
            "{KUBEADM}# a comment with {{ brace\nx.org {{\n    template IN A {{\n        answer \"{{{{ .Name }}}} 60 IN A 1.2.3.4\"\n    }}\n}}\nl2sm:5353 {{\n}}\nfoo.l2sm {{\n}}\n"
        );
        assert!(edit(&fine, Some(&ours)).unwrap().is_some());
    }

    #[test]
    fn random_corefiles_never_panic() {
        // Deterministic xorshift: mutations of a Corefile with our stanza.
        let base = format!("{KUBEADM}{}", stanza(&targets()));
        let alphabet = ['{', '}', '"', '#', '\n', '\\', ' ', 'a', ':'];
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..3000 {
            let mut text: Vec<char> = base.chars().collect();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % (text.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                if next() % 2 == 0 && at < text.len() {
                    text.remove(at);
                } else {
                    text.insert(at, c);
                }
            }
            let text: String = text.into_iter().collect();
            if let Ok(Some(out)) = edit(&text, None) {
                // Whatever was removed was exactly our region: the result is still readable
                // and has no markers.
                assert!(scan(&out).is_ok(), "{out}");
                assert!(!out.contains(BEGIN) && !out.contains(END));
            }
            let _ = edit(&text, Some(&stanza(&targets())));
        }
    }
}
