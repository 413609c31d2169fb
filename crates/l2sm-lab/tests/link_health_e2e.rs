//! Link health on a real 3-node lab: every link reports latency and loss both ways from the
//! controller's own LLDP probes; 20 ms of delay, then 50 % loss, injected on one direction of
//! one link (VXLAN frames from n1 to n2, UDP port 7000, on the underlay between the bridge and n2, so no
//! control channel and no other link is touched) move that direction's latency by the delay
//! and show the loss, and nothing else; the pictures render with every switch.
//!
//! The kernel of the test machines has no `sch_netem` (nor `sch_prio`, `act_gact`): the
//! injection is a small L2 relay (`support/delay_relay.py`, AF_PACKET sockets) put between
//! the underlay bridge and n2's veth, doing what `tc netem delay 20ms` / `loss 50%` with a
//! filter would.

use l2sm_test_support::lab::{api_call, metrics, TestLab};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// The direction `from` → `to` of the link between two nodes (`n1--n2` or `n2--n1`).
fn direction(links: &Value, from: &str, to: &str) -> Value {
    let links = links.as_array().expect("links array");
    for l in links {
        let id = l["id"].as_str().unwrap_or_default();
        if id == format!("{from}--{to}") {
            return l["ab"].clone();
        }
        if id == format!("{to}--{from}") {
            return l["ba"].clone();
        }
    }
    panic!("no link between {from} and {to} in {links:?}")
}

fn links(lab: &TestLab) -> Value {
    let (code, body) = api_call(lab, "GET", "/api/v1/links");
    assert_eq!(code, 200, "{body}");
    body
}

const PAIRS: [(&str, &str); 6] = [
    ("n1", "n2"),
    ("n2", "n1"),
    ("n1", "n3"),
    ("n3", "n1"),
    ("n2", "n3"),
    ("n3", "n2"),
];

fn latency(d: &Value) -> f64 {
    d["latencyMs"]
        .as_f64()
        .unwrap_or_else(|| panic!("no latency in {d}"))
}

/// `ip ARGS` in the lab's underlay namespace (test setup only).
fn ul_ip(lab: &TestLab, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("l2sm-{}-ul", lab.name), "ip"])
        .args(args)
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The delay/loss relay between the underlay bridge and node `node`, for VXLAN frames from
/// `src`; killed when dropped.
struct Relay(
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
);

impl Relay {
    fn start(lab: &TestLab, node: &str, src: &str) -> Relay {
        // The bridge's port towards the node becomes `<node>x`, relayed to the node's veth.
        let (near, far) = (format!("{node}r"), format!("{node}x"));
        ul_ip(lab, &["link", "set", node, "nomaster"]);
        ul_ip(
            lab,
            &["link", "add", &near, "type", "veth", "peer", "name", &far],
        );
        ul_ip(lab, &["link", "set", &far, "master", "ul0", "up"]);
        ul_ip(lab, &["link", "set", &near, "up", "promisc", "on"]);
        ul_ip(lab, &["link", "set", node, "promisc", "on"]);
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("l2sm-{}-ul", lab.name),
                "python3",
                "-u",
                "-c",
            ])
            .arg(include_str!("support/delay_relay.py"))
            .args([node, near.as_str(), src])
            .arg(l2sm_agent::ovs::VXLAN_DST_PORT.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 relay");
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut relay = Relay(child, stdout);
        assert_eq!(relay.line(), "relay up");
        relay
    }

    /// The next line the relay prints.
    fn line(&mut self) -> String {
        use std::io::BufRead as _;
        let mut line = String::new();
        self.1.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_ip(lab: &TestLab, node: &str) -> String {
    let state = lab.state();
    state["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == node)
        .and_then(|n| n["ip"].as_str())
        .unwrap_or_else(|| panic!("no node {node} in {state}"))
        .to_string()
}

/// Polls the links until `ok` holds for them, at most `secs`.
fn wait_links(lab: &TestLab, secs: u64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let l = links(lab);
        if ok(&l) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within {secs} s: {l:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn latency_and_loss_are_measured_per_direction_and_follow_injected_delay_and_loss() {
    let lab = TestLab::up("lh", 3);
    // The relay is in place from the start: the baseline includes its own (sub-millisecond)
    // cost on every frame towards n2.
    let mut relay = Relay::start(&lab, "n2", &node_ip(&lab, "n1"));
    // Every direction of every link: probes judged and latency samples (the echo round trips
    // come first, so the first probes may carry no latency).
    let base = wait_links(&lab, 40, "latency on every direction", |l| {
        PAIRS.iter().all(|(a, b)| {
            let d = direction(l, a, b);
            d["samples"].as_u64().unwrap_or(0) >= 8 && d["judged"].as_u64().unwrap_or(0) >= 8
        })
    });
    for (a, b) in PAIRS {
        let d = direction(&base, a, b);
        let l = latency(&d);
        assert!((0.0..10.0).contains(&l), "{a}->{b}: {l} ms on an idle lab");
        assert!(d["loss"].as_f64().is_some(), "{a}->{b}: {d}");
    }
    let base_latency: Vec<f64> = PAIRS
        .iter()
        .map(|(a, b)| latency(&direction(&base, a, b)))
        .collect();
    // Metrics carry the same, by link and direction.
    let text = metrics(&lab);
    for (link, dir) in [
        ("n1--n2", "a_to_b"),
        ("n1--n2", "b_to_a"),
        ("n2--n3", "a_to_b"),
    ] {
        for name in ["l2sm_link_latency_seconds", "l2sm_link_loss_ratio"] {
            let series = format!("{name}{{link=\"{link}\",direction=\"{dir}\"}} ");
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
    }
    assert!(text.contains("l2sm_link_up{link=\"n1--n3\"} 1"), "{text}");

    // 20 ms on VXLAN frames from n1 to n2 only.
    relay.signal("-USR1");
    // The latency window (16 samples at 1 s) fills with delayed probes.
    std::thread::sleep(Duration::from_secs(20));
    let delayed = links(&lab);
    let moved: Vec<f64> = PAIRS
        .iter()
        .zip(&base_latency)
        .map(|((a, b), before)| latency(&direction(&delayed, a, b)) - before)
        .collect();
    eprintln!("latency change per direction with 20 ms injected on n1->n2: {PAIRS:?} {moved:?}");
    // Roughly 20 ms here; exactly (±2 ms) what the relay held the frames for, below.
    assert!(
        (moved[0] - 20.0).abs() <= 5.0,
        "n1->n2 moved by {} ms, not ~20",
        moved[0]
    );
    for (i, m) in moved.iter().enumerate().skip(1) {
        assert!(m.abs() <= 3.0, "{:?} moved by {m} ms", PAIRS[i]);
    }

    // Now 50% loss instead of the delay.
    let lost_before: Vec<u64> = PAIRS
        .iter()
        .map(|(a, b)| direction(&delayed, a, b)["lost"].as_u64().unwrap_or(0))
        .collect();
    relay.signal("-USR2");
    // What the relay really held the delayed frames for (20 ms plus its own scheduling).
    let held = relay.line();
    let held_ms: f64 = held
        .strip_prefix("held ")
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("relay said {held:?}"));
    eprintln!(
        "relay: {held} (frames held, mean ms); reported change {}",
        moved[0]
    );
    assert!(
        (moved[0] - held_ms).abs() <= 2.0,
        "n1->n2 moved by {} ms, the relay held its frames {held_ms} ms",
        moved[0]
    );
    std::thread::sleep(Duration::from_secs(20));
    let lossy = links(&lab);
    let lost: Vec<u64> = PAIRS
        .iter()
        .map(|(a, b)| direction(&lossy, a, b)["lost"].as_u64().unwrap_or(0))
        .collect();
    let loss = direction(&lossy, "n1", "n2")["loss"]
        .as_f64()
        .unwrap_or(0.0);
    eprintln!(
        "lost probes before/after 20 s of 50% loss on n1->n2: {lost_before:?} {lost:?}, loss {loss}"
    );
    // Every second frame dropped for 20 s: about 10 probes.
    assert!(lost[0] >= lost_before[0] + 8, "{lost_before:?} -> {lost:?}");
    assert!(loss > 0.05, "n1->n2 loss {loss}");
    for i in 1..PAIRS.len() {
        assert!(
            lost[i] <= lost_before[i] + 1,
            "{:?} lost probes: {} -> {}",
            PAIRS[i],
            lost_before[i],
            lost[i]
        );
    }
    // The lossy link is drawn degraded, with its loss in the label.
    let dot = lab.ok(&["topology", "--format", "dot"]);
    assert!(dot.contains("#ef6c00"), "degraded colour missing:\n{dot}");

    // Pictures: SVG (valid XML, every switch present) and PNG, through Graphviz.
    let dir = tempdir();
    let svg = dir.join("topo.svg");
    lab.ok(&["topology", "--format", "svg", "-o", svg.to_str().unwrap()]);
    assert_valid_xml(&svg);
    let text = std::fs::read_to_string(&svg).unwrap();
    let switches: Vec<String> = api_call(&lab, "GET", "/api/v1/switches")
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(switches.len(), 3);
    for s in &switches {
        assert!(text.contains(s.as_str()), "{s} missing from the SVG");
    }
    let png = dir.join("topo.png");
    lab.ok(&["topology", "--format", "png", "-o", png.to_str().unwrap()]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // The controller's own SVG, as a reader.
    let served = dir.join("served.svg");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("l2sm-{}-ul", lab.name),
            "curl",
            "-sf",
            "-o",
        ])
        .arg(&served)
        .args(["-u", &reader_creds(&lab)])
        .arg("http://127.0.0.1:8181/api/v1/topology.svg")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_valid_xml(&served);
    let text = std::fs::read_to_string(&served).unwrap();
    for s in &switches {
        assert!(
            text.contains(&format!("class=\"switch\" id=\"{s}\"")),
            "{s} missing from the served SVG"
        );
    }
    assert_eq!(text.matches("class=\"link ").count(), 3, "{text}");
    let _ = std::fs::remove_dir_all(&dir);

    // Throughput: 20 Mbit/s of iperf3 (UDP, 1200-byte datagrams: 1242-byte frames on the
    // link) from n1 to n3 shows on n1->n3 within 10 %.
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n3", "c", "blue", "10.10.0.3/24");
    assert!(lab.exec_ok("c", &["iperf3", "-s", "-D"]));
    std::thread::sleep(Duration::from_millis(500));
    let name = lab.name.clone();
    let client = std::thread::spawn(move || {
        Command::new(l2sm_test_support::bin::l2sm())
            .args(["--lab", &name, "lab", "exec", "a", "--"])
            .args([
                "iperf3",
                "-c",
                "10.10.0.3",
                "-u",
                "-b",
                "20M",
                "-l",
                "1200",
                "-t",
                "14",
            ])
            .output()
            .expect("iperf3")
    });
    // Two port-statistics reads (5 s apart) inside the run.
    std::thread::sleep(Duration::from_secs(12));
    let during = links(&lab);
    let out = client.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = 20e6 * 1242.0 / 1200.0;
    let rate = direction(&during, "n1", "n3")["bitsPerSecond"]
        .as_f64()
        .unwrap_or(0.0);
    eprintln!("n1->n3 rate with 20 Mbit/s of iperf3: {rate} bit/s (frames: {expected})");
    assert!(
        (rate / expected - 1.0).abs() < 0.10,
        "n1->n3 {rate} bit/s, expected {expected}"
    );
    let back = direction(&during, "n3", "n1")["bitsPerSecond"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(back < 1e6, "n3->n1 {back} bit/s");

    // A cut: nothing reaches n2 on the underlay any more (its control channel is on another
    // network, its switch stays connected). Its two links are down within the dead interval
    // (3.5 probes) plus a check, the third stays up.
    drop(relay);
    std::thread::sleep(Duration::from_secs(5));
    let cut = links(&lab);
    let live = |a: &str, b: &str| {
        cut.as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == format!("{a}--{b}"))
            .map(|l| l["live"] == true)
            .unwrap_or_else(|| panic!("no link {a}--{b}: {cut}"))
    };
    assert!(
        !live("n1", "n2") && !live("n2", "n3") && live("n1", "n3"),
        "{cut:#}"
    );
    let text = metrics(&lab);
    assert!(text.contains("l2sm_link_up{link=\"n1--n2\"} 0"), "{text}");
    assert!(text.contains("l2sm_link_up{link=\"n1--n3\"} 1"), "{text}");
    let dot = lab.ok(&["topology", "--format", "dot"]);
    assert_eq!(
        dot.matches("style=dotted, color=\"#c62828\"").count(),
        2,
        "{dot}"
    );
}

fn reader_creds(lab: &TestLab) -> String {
    let token = std::fs::read_to_string(format!("/run/l2sm/lab/{}/api/reader.token", lab.name))
        .expect("the lab's reader token");
    format!("reader:{}", token.trim())
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("l2sm-lh-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Parses `path` as XML (Python's standard parser: an observation tool, not product code).
fn assert_valid_xml(path: &std::path::Path) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{} is not valid XML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
