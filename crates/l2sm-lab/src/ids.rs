//! `l2sm lab ids`: an IDS pod on a network's mirror port. The rules (a Suricata subset,
//! `l2sm-ids`) become one Wireshark display filter for `tshark`, which captures on the pod's
//! interface and hands back the raw frames it let through (`-T ek -x`); `l2sm-ids` tells which
//! rules each frame matches, alerts are written as Suricata EVE JSON, and with a quarantine
//! network the offending pod's port (the member whose reported MAC is the frame's source MAC;
//! by source address only among members whose MAC is unknown) is moved there once.

use crate::state::{IdsState, Lab, QuarantineRecord};
use crate::{attach, detach, procs, which, AttachOptions};
use anyhow::{anyhow, bail, Context as _};
use l2sm_ids::{parse_ek_line, parse_frame, parse_rules, Engine, EveAlert, Vars};
use l2sm_netns::Netns;
use l2sm_pipeline::ids::PortId;
use std::collections::HashSet;
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long tshark may take to start capturing.
const TSHARK_START: Duration = Duration::from_secs(30);

/// Options of `l2sm lab ids`.
#[derive(Debug, Clone, Default)]
pub struct IdsOptions {
    /// Network watched.
    pub network: String,
    /// Rules file (Suricata subset).
    pub rules: PathBuf,
    /// Network offending pods are moved to.
    pub quarantine_to: Option<String>,
    /// EVE JSON output (appended); standard output when absent.
    pub eve: Option<PathBuf>,
    /// Node of the IDS pod (default: the first node).
    pub node: Option<String>,
    /// Stop after this many alerts.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Rule variables `NAME=VALUE` (`HOME_NET` and `EXTERNAL_NET` default to `any`); a value
    /// that is a port group (`$…_PORTS` names) goes to the port variables.
    pub vars: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct IdsSummary {
    /// Alerts raised.
    pub alerts: u64,
    /// Pods moved.
    pub quarantined: Vec<QuarantineRecord>,
}

/// The IDS pod's name for a network.
pub fn ids_pod_name(network: &str) -> String {
    let mut name = format!("ids-{network}");
    name.truncate(40);
    name.trim_end_matches('-').to_string()
}

fn vars_from(args: &[String]) -> anyhow::Result<Vars> {
    let mut vars = Vars::lab_defaults();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| anyhow!("--var {a:?}: expected NAME=VALUE"))?;
        let k = k.trim().trim_start_matches('$');
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--var {a:?}: the name must be letters, digits and '_'");
        }
        if k.ends_with("_PORTS") {
            vars.ports.insert(k.to_string(), v.trim().to_string());
        } else {
            vars.addresses.insert(k.to_string(), v.trim().to_string());
        }
    }
    Ok(vars)
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i128::try_from(d.as_nanos()).unwrap_or(0))
        .unwrap_or(0)
}

/// `l2sm lab ids`: runs in the foreground until Ctrl-C/SIGTERM, `count` alerts or `duration`;
/// removes its pod and the mirror on the way out, also after a failure.
pub async fn run(lab: &Lab, opts: IdsOptions) -> anyhow::Result<IdsSummary> {
    crate::check_prerequisites()?;
    if which("tshark").is_none() {
        bail!("tshark not found: install it (apt-get install tshark, scripts/deps.sh)");
    }
    // Everything that can be refused is checked before anything is created.
    let text = std::fs::read_to_string(&opts.rules)
        .with_context(|| format!("cannot read rules file {}", opts.rules.display()))?;
    let vars = vars_from(&opts.vars)?;
    let rules = parse_rules(&text, &vars).map_err(|e| anyhow!("{}: {e}", opts.rules.display()))?;
    let engine = Engine::new(rules);
    let state = lab.load_ready()?;
    if state.is_multi() {
        bail!("lab ids runs in a one-cluster lab");
    }
    let mut state = state;
    // What an IDS killed without its clean-up (SIGKILL, a crash) left: its pod, the mirror.
    if let Some(stale) = state.ids.get(&opts.network).cloned() {
        if !procs::alive(stale.pid, "l2sm") {
            eprintln!(
                "ids: removing what a stopped IDS left on {} (pod {})",
                opts.network, stale.pod
            );
            cleanup(lab, &opts.network, &stale.pod).await?;
            state = lab.load_ready()?;
        }
    }
    let api = lab.controller_api(&state)?;
    let Some(net) = api.get_network(&opts.network).await? else {
        bail!("unknown network {:?}", opts.network);
    };
    if let Some(m) = &net.mirror_port {
        bail!(
            "network {:?} is already mirrored to {m} (an IDS is running, or `l2sm network mirror {} --clear`)",
            opts.network,
            opts.network
        );
    }
    if let Some(q) = &opts.quarantine_to {
        if q == &opts.network {
            bail!("--quarantine-to must name another network than {q:?}");
        }
        if api.get_network(q).await?.is_none() {
            bail!("unknown quarantine network {q:?}");
        }
    }
    if let Some(existing) = state.ids.get(&opts.network) {
        if procs::alive(existing.pid, "l2sm") {
            bail!(
                "an IDS already watches {:?} (pid {})",
                opts.network,
                existing.pid
            );
        }
    }
    let pod = ids_pod_name(&opts.network);
    if state.pods.contains_key(&pod) {
        bail!("a pod named {pod:?} exists already (left by an IDS? `l2sm detach --pod {pod}`)");
    }
    let node = match &opts.node {
        Some(n) => n.clone(),
        None => state
            .nodes
            .first()
            .map(|n| n.name.clone())
            .ok_or_else(|| anyhow!("the lab has no nodes"))?,
    };
    // The IDS pod: an interface on the network, then made its mirror.
    let att = attach(
        lab,
        AttachOptions {
            node: node.clone(),
            pod: pod.clone(),
            network: opts.network.clone(),
            ips: vec![],
            ifname: Some("net1".into()),
            mac: None,
            mtu: None,
            port_security: None,
            cluster: None,
        },
    )
    .await
    .context("cannot create the IDS pod")?;
    {
        let _lock = lab.lock()?;
        let mut st = lab.load_ready()?;
        st.ids.insert(
            opts.network.clone(),
            IdsState {
                pod: pod.clone(),
                node: node.clone(),
                port: att.port.clone(),
                pid: i32::try_from(std::process::id()).unwrap_or(0),
                quarantine_to: opts.quarantine_to.clone(),
                rules: engine.rules().len(),
            },
        );
        lab.save(&st)?;
    }
    let result = watch(lab, &opts, &engine, &pod, &att.port).await;
    let cleanup = cleanup(lab, &opts.network, &pod).await;
    match (result, cleanup) {
        (Ok(s), Ok(())) => Ok(s),
        (Err(e), Ok(())) => Err(e),
        (Ok(_), Err(e)) => Err(e.context("cleaning up the IDS")),
        (Err(e), Err(c)) => Err(e.context(format!("and cleaning up failed too: {c:#}"))),
    }
}

/// Clears the mirror, removes the IDS pod and its record. Each step runs even if another fails.
async fn cleanup(lab: &Lab, network: &str, pod: &str) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    let state = lab.load_ready()?;
    let api = lab.controller_api(&state)?;
    if let Ok(Some(net)) = api.get_network(network).await {
        let ours = state.ids.get(network).map(|i| i.port.clone());
        if net.mirror_port.is_some() && net.mirror_port == ours {
            if let Err(e) = api.clear_mirror_port(network).await {
                errors.push(format!("clearing the mirror of {network}: {e}"));
            }
        }
    }
    if state.pods.contains_key(pod) {
        // Whatever still runs in the pod (a capture left by a killed IDS) goes first.
        if let Ok(ns) = Netns::open_named(&lab.pod_ns(pod)) {
            for pid in l2sm_netns::pids_in_netns(&ns).unwrap_or_default() {
                procs::stop(pid, "", Duration::from_millis(500));
            }
        }
        if let Err(e) = detach(lab, pod, None).await {
            errors.push(format!("removing pod {pod}: {e:#}"));
        }
    }
    {
        let _lock = lab.lock()?;
        let mut st = lab.load_ready()?;
        st.ids.remove(network);
        lab.save(&st)?;
    }
    if errors.is_empty() {
        eprintln!("ids: removed pod {pod} and the mirror of {network}");
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

/// How long a source that matched no member is not looked up again.
const MISS_HOLD: Duration = Duration::from_secs(5);
/// Sources remembered as misses at most (then the memory starts over).
const MAX_MISSES: usize = 4096;

/// What the quarantine remembers during a run.
#[derive(Default)]
struct Memo {
    /// Ports moved and their MACs: once per pod.
    moved: HashSet<String>,
    /// `"<mac> <ip>"` sources that matched no member, and when.
    misses: std::collections::HashMap<String, Instant>,
}

enum Event {
    Line(String),
    Closed,
}

async fn watch(
    lab: &Lab,
    opts: &IdsOptions,
    engine: &Engine,
    pod: &str,
    port: &str,
) -> anyhow::Result<IdsSummary> {
    let state = lab.load_ready()?;
    let api = lab.controller_api(&state)?;
    // The port leaves the network (attach made it a member) and becomes its mirror.
    api.remove_port(&opts.network, port)
        .await
        .map_err(|e| anyhow!("cannot take {port} out of {:?}: {e}", opts.network))?;
    api.set_mirror_port(&opts.network, port)
        .await
        .map_err(|e| {
            anyhow!(
                "controller refused {port} as mirror of {:?}: {e}",
                opts.network
            )
        })?;
    api.settle(10_000)
        .await
        .map_err(|e| anyhow!("the switches did not confirm the mirror: {e}"))?;
    // Frame 1 is the canary the relay puts first (tshark's "ready"); the rules' filter
    // decides for every other frame.
    let filter = format!("frame.number == 1 || {}", engine.combined_filter());
    tracing::debug!(%filter, "tshark display filter");
    let ns = Netns::open_named(&lab.pod_ns(pod))?;
    // tshark matches, reading a pcap stream; tcpdump captures in immediate mode, each frame
    // written as it comes (tshark's own capture path hands frames over 250-700 ms late).
    // -M: tshark keeps state for every packet it dissected; a session reset every 10,000
    // packets bounds its memory (the rules need no state across packets).
    let mut tshark_cmd = Command::new("tshark");
    tshark_cmd
        .args([
            "-r", "-", "-n", "-l", "-M", "10000", "-T", "ek", "-x", "-Y", &filter,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let snaplen = l2sm_ids::pcap::SNAPLEN.to_string();
    let mut tcpdump_cmd = Command::new("tcpdump");
    tcpdump_cmd
        .args([
            "-i",
            "net1",
            "-n",
            "--immediate-mode",
            "-U",
            "-s",
            &snaplen,
            "-w",
            "-",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut tshark = procs::spawn_in(&ns, tshark_cmd)?;
    let mut tcpdump = match procs::spawn_in(&ns, tcpdump_cmd) {
        Ok(c) => c,
        Err(e) => {
            let _ = tshark.kill();
            let _ = tshark.wait();
            return Err(e);
        }
    };
    let result = watch_pipeline(opts, engine, lab, &mut tcpdump, &mut tshark, &filter).await;
    for child in [&mut tcpdump, &mut tshark] {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// Lines of a child's stderr, without tshark's root warning, into the log; the first `keep`
/// kept for an error message; `ready` told when a line contains `marker`.
fn stderr_thread(
    name: &'static str,
    stderr: std::process::ChildStderr,
    marker: Option<&'static str>,
    ready: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
) {
    std::thread::spawn(move || {
        let mut ready = ready;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if marker.is_some_and(|m| line.contains(m)) {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
            } else if !line.contains("Running as user") && !line.trim().is_empty() {
                tracing::info!("{name}: {line}");
                if seen.len() < 10 {
                    seen.push(line);
                }
            }
        }
        if let Some(r) = ready.take() {
            let _ = r.send(Err(seen.join("; ")));
        }
    });
}

async fn watch_pipeline(
    opts: &IdsOptions,
    engine: &Engine,
    lab: &Lab,
    tcpdump: &mut std::process::Child,
    tshark: &mut std::process::Child,
    filter: &str,
) -> anyhow::Result<IdsSummary> {
    let missing = |what: &str| anyhow!("{what} has no pipe");
    let mut captured = tcpdump.stdout.take().ok_or_else(|| missing("tcpdump"))?;
    let mut to_tshark = tshark.stdin.take().ok_or_else(|| missing("tshark"))?;
    let from_tshark = tshark.stdout.take().ok_or_else(|| missing("tshark"))?;
    let (listening_tx, listening_rx) = tokio::sync::oneshot::channel();
    stderr_thread(
        "tcpdump",
        tcpdump.stderr.take().ok_or_else(|| missing("tcpdump"))?,
        Some("listening on"),
        Some(listening_tx),
    );
    stderr_thread(
        "tshark",
        tshark.stderr.take().ok_or_else(|| missing("tshark"))?,
        None,
        None,
    );
    // The relay: our header and the canary at once (tcpdump writes its header only with its
    // first frame), then tcpdump's frames after its own header.
    let canary = l2sm_ids::pcap::canary();
    std::thread::spawn(move || -> std::io::Result<()> {
        let mut start = l2sm_ids::pcap::header();
        start.extend_from_slice(&l2sm_ids::pcap::record(
            now_nanos(),
            &l2sm_ids::pcap::canary(),
        ));
        to_tshark.write_all(&start)?;
        to_tshark.flush()?;
        let mut theirs = [0u8; 24];
        std::io::Read::read_exact(&mut captured, &mut theirs)?;
        if !l2sm_ids::pcap::compatible_header(&theirs) {
            tracing::error!("tcpdump writes another pcap format: {theirs:02x?}");
            return Ok(());
        }
        std::io::copy(&mut captured, &mut to_tshark)?;
        Ok(())
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(from_tshark).lines() {
            match line {
                Ok(l) => {
                    if tx.send(Event::Line(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Event::Closed);
    });
    let started = async {
        match listening_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => bail!("tcpdump did not start: {msg}"),
            Err(_) => bail!("tcpdump did not start"),
        }
        loop {
            match rx.recv().await {
                Some(Event::Line(l)) => {
                    if parse_ek_line(&l).is_some_and(|p| p.frame == canary) {
                        return Ok(());
                    }
                }
                Some(Event::Closed) | None => {
                    bail!("tshark exited before reading the capture (filter: {filter})")
                }
            }
        }
    };
    match tokio::time::timeout(TSHARK_START, started).await {
        Ok(r) => r?,
        Err(_) => bail!("the capture did not start within {TSHARK_START:?}"),
    }
    let mut eve: Box<dyn std::io::Write + Send> = match &opts.eve {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    eprintln!(
        "ids: watching network {} ({} rules){}; ready",
        opts.network,
        engine.rules().len(),
        opts.quarantine_to
            .as_ref()
            .map(|q| format!(", quarantine to {q}"))
            .unwrap_or_default()
    );
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let mut summary = IdsSummary::default();
    let mut memo = Memo::default();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            e = rx.recv() => e.unwrap_or(Event::Closed),
            _ = tokio::signal::ctrl_c() => { eprintln!("ids: interrupted"); break; }
            _ = sigterm.recv() => { eprintln!("ids: terminated"); break; }
            _ = sleep => { eprintln!("ids: duration reached"); break; }
        };
        let line = match event {
            Event::Line(l) => l,
            Event::Closed => bail!("tshark exited"),
        };
        let Some(pkt) = parse_ek_line(&line) else {
            continue;
        };
        let Some(packet) = parse_frame(&pkt.frame) else {
            continue;
        };
        let matched = engine.matches(&pkt.frame);
        if matched.is_empty() {
            tracing::debug!("tshark passed a frame no rule matches exactly");
            continue;
        }
        for rule in matched {
            let alert = EveAlert::new(rule, &packet, pkt.epoch_nanos, "net1");
            writeln!(eve, "{}", alert.to_line())?;
            eve.flush()?;
            summary.alerts += 1;
            eprintln!(
                "ids: alert sid {} {:?} from {} ({})",
                rule.sid, rule.msg, alert.src_ip, alert.ether.src_mac
            );
            if let Some(q) = &opts.quarantine_to {
                match quarantine(lab, &opts.network, q, &alert, pkt.epoch_nanos, &mut memo).await {
                    Ok(Some(rec)) => summary.quarantined.push(rec),
                    Ok(None) => {}
                    Err(e) => eprintln!("ids: quarantine failed: {e:#}"),
                }
            }
            if opts.count.is_some_and(|c| summary.alerts >= c) {
                eprintln!("ids: {} alerts", summary.alerts);
                return Ok(summary);
            }
        }
    }
    Ok(summary)
}

/// Moves the alert's source pod to `to`, once per port: found by its MAC among `from`'s
/// members (else by its address); the lab's record of the pod follows, and the move is
/// recorded with the alert. A flood of matching frames costs the controller no more than one
/// lookup per source per [`MISS_HOLD`] (none after the source was moved).
async fn quarantine(
    lab: &Lab,
    from: &str,
    to: &str,
    alert: &EveAlert,
    packet_nanos: i128,
    memo: &mut Memo,
) -> anyhow::Result<Option<QuarantineRecord>> {
    let mac = alert.ether.src_mac.to_ascii_lowercase();
    let source = format!("{mac} {}", alert.src_ip);
    if memo.moved.contains(&mac) {
        return Ok(None);
    }
    if memo
        .misses
        .get(&source)
        .is_some_and(|t| t.elapsed() < MISS_HOLD)
    {
        return Ok(None);
    }
    let state = lab.load_ready()?;
    let api = lab.controller_api(&state)?;
    let members = api.attachments().await?;
    let on_net = members.iter().filter(|a| a.network == from);
    let by_mac = on_net
        .clone()
        .find(|a| a.mac.as_deref().map(str::to_ascii_lowercase) == Some(mac.clone()));
    // By address only a member whose MAC nobody reported: a member with a known MAC other
    // than the frame's did not send it (someone may have forged its address).
    let by_ip = || {
        on_net.clone().find(|a| {
            a.mac.is_none() && a.ips.iter().any(|ip| ip.addr().to_string() == alert.src_ip)
        })
    };
    let Some(member) = by_mac.or_else(by_ip) else {
        eprintln!(
            "ids: no member of {from} has MAC {mac} or address {}: nothing to quarantine",
            alert.src_ip
        );
        if memo.misses.len() >= MAX_MISSES {
            memo.misses.clear();
        }
        memo.misses.insert(source, Instant::now());
        return Ok(None);
    };
    if !memo.moved.insert(member.port.clone()) {
        return Ok(None);
    }
    memo.moved.insert(mac.clone());
    let port: PortId = member
        .port
        .parse()
        .map_err(|e| anyhow!("bad port {}: {e}", member.port))?;
    let move_start = now_nanos();
    let result = api
        .move_port(port, from, to)
        .await
        .map_err(|e| anyhow!("moving {} from {from} to {to}: {e}", member.port))?;
    let done = now_nanos();
    let ms = |n: i128| u64::try_from(n.max(0) / 1_000_000).unwrap_or(0);
    let latency_ms = ms(done - packet_nanos);
    let move_ms = ms(done - move_start);
    let _lock = lab.lock()?;
    let mut st = lab.load_ready()?;
    let pod = st
        .pods
        .iter_mut()
        .find(|(_, p)| p.attachments.iter().any(|a| a.port == member.port))
        .map(|(name, p)| {
            for a in p.attachments.iter_mut().filter(|a| a.port == member.port) {
                a.network = to.to_string();
            }
            name.clone()
        })
        .or_else(|| member.pod.clone())
        .unwrap_or_else(|| member.port.clone());
    let rec = QuarantineRecord {
        pod: pod.clone(),
        port: member.port.clone(),
        from: from.to_string(),
        to: to.to_string(),
        sid: alert.alert.signature_id,
        msg: alert.alert.signature.clone(),
        alert_time: alert.timestamp.clone(),
        latency_ms,
    };
    st.quarantined.push(rec.clone());
    lab.save(&st)?;
    eprintln!(
        "ids: quarantined pod {pod} (port {}) from {from} to {to}{}: alert sid {} {:?}; {latency_ms} ms from the packet to the move (the move {move_ms} ms, before it {} ms: tshark and the lookup)",
        member.port,
        if result.moved { "" } else { " (it was there already)" },
        rec.sid,
        rec.msg,
        latency_ms.saturating_sub(move_ms)
    );
    Ok(Some(rec))
}
