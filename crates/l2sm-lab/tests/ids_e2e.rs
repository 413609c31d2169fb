//! `l2sm lab ids`: an IDS pod on a network's mirror port (tshark fed with Suricata-subset
//! rules), EVE JSON alerts, and the alert → quarantine loop. Real OVS, real tshark; needs
//! root, Open vSwitch and tshark (fails, not skips, without them).

use l2sm_test_support::lab::{api_call, Capture, TestLab};
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RULES: &str = "\
# the attack rule and one that nothing in these tests matches
alert udp any any -> any 4444 (msg:\"attack on 4444\"; content:\"attack\"; classtype:trojan-activity; sid:1000001; rev:2;)
alert tcp any any -> any 23 (msg:\"telnet\"; sid:1000002;)
";

/// A running `l2sm lab ids` with its stderr lines, each with the instant it arrived.
struct Ids {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Ids {
    fn start(lab: &TestLab, args: &[&str]) -> Ids {
        assert!(
            Command::new("tshark").arg("--version").output().is_ok(),
            "tshark is missing: apt-get install tshark (scripts/deps.sh)"
        );
        let mut child = Command::new(l2sm_test_support::bin::l2sm())
            .args(["--lab", &lab.name, "lab", "ids"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("l2sm lab ids");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[ids] {line}");
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let ids = Ids { child, lines };
        ids.wait_for("; ready", Duration::from_secs(60));
        ids
    }

    /// The first line containing `needle` and when it arrived, waiting up to `limit`.
    fn wait_for(&self, needle: &str, limit: Duration) -> (Instant, String) {
        let start = Instant::now();
        loop {
            if let Some(found) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(_, l)| l.contains(needle))
            {
                return found.clone();
            }
            assert!(
                start.elapsed() < limit,
                "no {needle:?} from lab ids within {limit:?}: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn text(&self) -> String {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_exit(mut self, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                assert!(status.success(), "lab ids failed: {}", self.text());
                return self.text();
            }
            assert!(
                start.elapsed() < limit,
                "lab ids still running: {}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn interrupt(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    }
}

/// tcpdump in a pod for `secs` seconds, keeping its statistics (frames the kernel dropped).
struct Tcpdump(Child);

impl Tcpdump {
    fn start(lab: &TestLab, pod: &str, secs: u32, filter: &str) -> Tcpdump {
        let child = Command::new(l2sm_test_support::bin::l2sm())
            .args(["--lab", &lab.name, "lab", "exec", pod, "--"])
            .args([
                "timeout",
                &secs.to_string(),
                "tcpdump",
                "-i",
                "net1",
                "-n",
                "-l",
            ])
            .args(filter.split_whitespace())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        Tcpdump(child)
    }

    /// (one line per frame, tcpdump's closing statistics).
    fn output(self) -> (String, String) {
        let out = self.0.wait_with_output().expect("tcpdump output");
        let stats = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("packets"))
            .collect::<Vec<_>>()
            .join(", ");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stats)
    }
}

fn attachments(lab: &TestLab) -> Vec<serde_json::Value> {
    let (code, body) = api_call(lab, "GET", "/api/v1/attachments");
    assert_eq!(code, 200, "{body}");
    body.as_array().unwrap().clone()
}

fn member(lab: &TestLab, pod: &str) -> serde_json::Value {
    attachments(lab)
        .into_iter()
        .find(|a| {
            a["pod"]
                .as_str()
                .is_some_and(|p| p == pod || p.ends_with(&format!("/{pod}")))
        })
        .unwrap_or_else(|| panic!("no attachment of {pod}"))
}

fn mirror_of(lab: &TestLab, network: &str) -> serde_json::Value {
    let (code, body) = api_call(lab, "GET", "/api/v1/networks");
    assert_eq!(code, 200);
    body.as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == network)
        .unwrap_or_else(|| panic!("no network {network}"))["mirrorPort"]
        .clone()
}

fn rules_file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("suricata.rules");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn three_pods(tag: &str) -> TestLab {
    let lab = TestLab::up(tag, 3);
    lab.ok(&["network", "create", "blue"]);
    lab.ok(&["network", "create", "quarantine"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    lab.attach("n3", "c", "blue", "10.10.0.3/24");
    lab.attach("n3", "h", "quarantine", "10.10.0.9/24");
    lab
}

#[test]
fn an_alert_moves_the_offending_pod_to_quarantine_within_3_s() {
    let lab = three_pods("iq");
    // Three more pods that attack after a, for more latency samples.
    for (k, node) in ["n1", "n2", "n3"].iter().enumerate() {
        lab.attach(
            node,
            &format!("x{k}"),
            "blue",
            &format!("10.10.0.{}/24", 11 + k),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, RULES);
    let eve = dir.path().join("eve.json");
    let eve_s = eve.to_string_lossy().into_owned();
    assert!(lab.pings("a", "10.10.0.2") && lab.pings("b", "10.10.0.3"));
    let a_mac = member(&lab, "a")["mac"].as_str().unwrap().to_string();
    let a_port = member(&lab, "a")["port"].as_str().unwrap().to_string();
    let ids = Ids::start(
        &lab,
        &[
            "--network",
            "blue",
            "--rules",
            &rules,
            "--quarantine-to",
            "quarantine",
            "--eve",
            &eve_s,
            "--count",
            "4",
            "--node",
            "n2",
        ],
    );
    let port = lab.state()["ids"]["blue"]["port"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(mirror_of(&lab, "blue"), port.as_str());
    // Traffic no rule matches raises nothing: the port 4444 without the content, another port
    // with it, pings.
    assert!(lab.exec_ok(
        "a",
        &[
            "bash",
            "-c",
            "echo harmless > /dev/udp/10.10.0.2/4444; echo attack > /dev/udp/10.10.0.2/4445"
        ]
    ));
    assert!(lab.pings("a", "10.10.0.3"));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!ids.text().contains("alert sid"), "{}", ids.text());
    assert_eq!(member(&lab, "a")["network"], "blue");
    // The attack.
    let sent = Instant::now();
    assert!(lab.exec_ok(
        "a",
        &["bash", "-c", "echo 'an attack' > /dev/udp/10.10.0.2/4444"]
    ));
    let (moved_at, line) = ids.wait_for("quarantined pod a ", Duration::from_secs(20));
    let latency = moved_at.duration_since(sent);
    println!("packet sent -> move confirmed (seen by the test): {latency:?}; ids: {line}");
    assert!(
        latency <= Duration::from_secs(3),
        "the move took {latency:?} from the packet (goal 3 s)"
    );
    let mut latencies = vec![latency];
    for k in 0..3 {
        let pod = format!("x{k}");
        let sent = Instant::now();
        assert!(lab.exec_ok(
            &pod,
            &["bash", "-c", "echo 'an attack' > /dev/udp/10.10.0.2/4444"]
        ));
        let (at, _) = ids.wait_for(&format!("quarantined pod {pod} "), Duration::from_secs(20));
        latencies.push(at.duration_since(sent));
    }
    println!("packet -> move, 4 pods: {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l <= Duration::from_secs(3)),
        "{latencies:?} (goal 3 s)"
    );
    let out = ids.wait_exit(Duration::from_secs(30));
    assert!(out.contains("removed pod ids-blue"), "{out}");
    // The controller moved a's port; b and c stay.
    assert_eq!(member(&lab, "a")["network"], "quarantine");
    assert_eq!(member(&lab, "a")["port"], a_port.as_str());
    assert_eq!(member(&lab, "b")["network"], "blue");
    assert_eq!(member(&lab, "c")["network"], "blue");
    // The EVE alert.
    let text = std::fs::read_to_string(&eve).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let alert: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(alert["event_type"], "alert");
    assert_eq!(alert["src_ip"], "10.10.0.1");
    assert_eq!(alert["dest_ip"], "10.10.0.2");
    assert_eq!(alert["dest_port"], 4444);
    assert_eq!(alert["proto"], "UDP");
    assert_eq!(alert["ether"]["src_mac"], a_mac.as_str());
    assert_eq!(alert["alert"]["signature_id"], 1000001);
    assert_eq!(alert["alert"]["rev"], 2);
    assert_eq!(alert["alert"]["signature"], "attack on 4444");
    assert_eq!(alert["alert"]["category"], "trojan-activity");
    // The audit: lab state and status name the alert.
    let state = lab.state();
    assert_eq!(state["quarantined"][0]["pod"], "a");
    assert_eq!(state["quarantined"][0]["sid"], 1000001);
    assert_eq!(state["quarantined"][0]["to"], "quarantine");
    let reported: Vec<_> = state["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["latency_ms"].as_u64().unwrap())
        .collect();
    println!("ids-reported capture -> move, ms: {reported:?}");
    assert_eq!(reported.len(), 4);
    let status = lab.ok(&["lab", "status"]);
    assert!(
        status.contains("QUARANTINED")
            && status.contains("sid 1000001")
            && status.contains("\"attack on 4444\""),
        "{status}"
    );
    // Nothing of the IDS is left: no pod, no mirror, no record.
    assert!(!lab.namespaces().iter().any(|n| n.ends_with("-p-ids-blue")));
    assert!(mirror_of(&lab, "blue").is_null());
    assert!(state["ids"].as_object().unwrap().is_empty());
    // a reaches the quarantine network and nothing on blue; nothing it sends reaches b.
    let on_b = Capture::start(&lab, "b", "net1", 5, &format!("ether src {a_mac}"));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(lab.blocked("a", "10.10.0.2"));
    assert!(lab.blocked("a", "10.10.0.3"));
    lab.exec_ok(
        "a",
        &["bash", "-c", "echo 'an attack' > /dev/udp/10.10.0.2/4444"],
    );
    let seen = on_b.output();
    assert!(seen.trim().is_empty(), "b still gets a's frames:\n{seen}");
    assert!(lab.pings("a", "10.10.0.9"));
    // b and c, who did nothing, still reach each other.
    assert!(lab.pings("b", "10.10.0.3") && lab.pings("c", "10.10.0.2"));
}

#[test]
fn the_ids_sees_each_frame_of_the_network_exactly_once() {
    const N: usize = 300;
    let lab = TestLab::up("if", 3);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    lab.attach("n3", "c", "blue", "10.10.0.3/24");
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, RULES);
    // The IDS on the third node: a's copies cross a tunnel, c's are taken on the IDS's switch.
    let ids = Ids::start(
        &lab,
        &[
            "--network",
            "blue",
            "--rules",
            &rules,
            "--node",
            "n3",
            "--duration",
            "120",
        ],
    );
    // Both senders know b's MAC: no datagram waits for (or is dropped while) ARP resolves.
    assert!(lab.pings("a", "10.10.0.2") && lab.pings("c", "10.10.0.2"));
    let filter = format!("udp and dst portrange 5001-{}", 5000 + N);
    let at_ids = Tcpdump::start(&lab, "ids-blue", 20, &filter);
    let at_a = Tcpdump::start(&lab, "a", 20, &filter);
    let at_c = Tcpdump::start(&lab, "c", 20, &filter);
    let at_b = Tcpdump::start(&lab, "b", 20, &filter);
    std::thread::sleep(Duration::from_secs(2));
    // N distinct datagrams from each sender: datagram i goes to port 5000 + i.
    // Paced (a datagram every few ms): the lab's userspace switches and underlay drop frames
    // of an unpaced burst when other work starves them of CPU, on the mirror's tunnel as on
    // any other; this test is about the mirror, so b's capture is the control.
    let script = format!(
        "for i in $(seq 1 {N}); do echo \"frame $i\" > /dev/udp/10.10.0.2/$((5000 + i)); sleep 0.005; done"
    );
    let sender_c = {
        let lab_name = lab.name.clone();
        let script = script.clone();
        std::thread::spawn(move || {
            Command::new(l2sm_test_support::bin::l2sm())
                .args([
                    "--lab", &lab_name, "lab", "exec", "c", "--", "bash", "-c", &script,
                ])
                .status()
                .unwrap()
                .success()
        })
    };
    assert!(lab.exec_ok("a", &["bash", "-c", &script]));
    assert!(sender_c.join().unwrap());
    let (ids_seen, ids_stats) = at_ids.output();
    let (b_seen, _) = at_b.output();
    // What OVS counted on the IDS's port (node n3): a drop there is the mirror's.
    let ovs_stats = Command::new("ovs-vsctl")
        .arg(format!("--db=unix:/run/l2sm/lab/{}/n3/db.sock", lab.name))
        .args(["--columns=name,statistics", "list", "interface"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // "… 10.10.0.1.SPORT > 10.10.0.2.DPORT: UDP, length N": sender and destination port.
    let frames = |text: &str, from: &str| -> Vec<u16> {
        let mut v: Vec<u16> = text
            .lines()
            .filter(|l| l.contains(&format!(" {from}.")))
            .filter_map(|l| l.split(" > 10.10.0.2.").nth(1))
            .filter_map(|rest| rest.split(':').next()?.parse().ok())
            .collect();
        v.sort_unstable();
        v
    };
    let expected: Vec<u16> = (5001..=5000 + u16::try_from(N).unwrap()).collect();
    for (pod, ip, capture) in [("a", "10.10.0.1", at_a), ("c", "10.10.0.3", at_c)] {
        let (sender_seen, sender_stats) = capture.output();
        let (i, s) = (frames(&ids_seen, ip), frames(&sender_seen, ip));
        let at_b = frames(&b_seen, ip).len();
        println!(
            "frames from {pod}: sender capture {}, IDS capture {}, at b {at_b}",
            s.len(),
            i.len()
        );
        assert_eq!(
            s, expected,
            "{pod}'s capture ({sender_stats}):\n{sender_seen}"
        );
        assert_eq!(
            i.len(),
            s.len(),
            "the IDS did not see each frame of {pod} once (b got {at_b}); its tcpdump: {ids_stats}; OVS of n3:\n{ovs_stats}"
        );
        assert_eq!(i, s, "the IDS saw other frames of {pod} than were sent");
    }
    // The IDS only listens: what its pod sends (here broadcasts) reaches no one.
    let at_b = Tcpdump::start(&lab, "b", 5, "ether proto 0x88b5");
    let at_a = Tcpdump::start(&lab, "a", 5, "ether proto 0x88b5");
    std::thread::sleep(Duration::from_secs(2));
    {
        use l2sm_test_support::frames::{frame, FrameSender, SendSpec};
        let sent = FrameSender::start(
            SendSpec {
                netns: format!("/run/netns/l2sm-{}-p-ids-blue", lab.name),
                ifname: "net1".into(),
                count: Some(20),
                nice: 0,
                cpu: None,
            },
            |_| frame([0xff; 6], [0x02, 0x1d, 0x5, 0, 0, 1]),
        )
        .join();
        assert_eq!(sent, 20);
    }
    for (pod, capture) in [("a", at_a), ("b", at_b)] {
        let (seen, _) = capture.output();
        assert!(
            seen.trim().is_empty(),
            "the IDS pod's frames reached {pod}:\n{seen}"
        );
    }
    // Ctrl-C: it stops and removes its pod and the mirror.
    ids.interrupt();
    let out = ids.wait_exit(Duration::from_secs(30));
    assert!(
        out.contains("interrupted") && out.contains("removed pod ids-blue"),
        "{out}"
    );
    assert!(mirror_of(&lab, "blue").is_null());
    assert!(!lab.namespaces().iter().any(|n| n.ends_with("-p-ids-blue")));
}

#[test]
fn unsupported_rules_and_bad_options_are_refused_and_nothing_is_created() {
    let lab = TestLab::up("ir", 2);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    let dir = tempfile::tempdir().unwrap();
    let before = lab.namespaces();
    let state_before = lab.state();
    let bad = rules_file(
        &dir,
        "alert udp any any -> any 4444 (msg:\"ok\"; sid:1;)\nalert tcp any any -> any 80 (msg:\"syn scan\"; flags:S; sid:2;)\n",
    );
    let err = lab.fails(&["lab", "ids", "--network", "blue", "--rules", &bad]);
    assert!(
        err.contains("rule line 2") && err.contains("keyword \"flags\" is not supported"),
        "{err}"
    );
    let good = dir.path().join("good.rules");
    std::fs::write(&good, RULES).unwrap();
    let good = good.to_string_lossy().into_owned();
    let err = lab.fails(&["lab", "ids", "--network", "nope", "--rules", &good]);
    assert!(err.contains("unknown network \"nope\""), "{err}");
    let err = lab.fails(&[
        "lab",
        "ids",
        "--network",
        "blue",
        "--rules",
        &good,
        "--quarantine-to",
        "nowhere",
    ]);
    assert!(
        err.contains("unknown quarantine network \"nowhere\""),
        "{err}"
    );
    let err = lab.fails(&["lab", "ids", "--network", "blue", "--rules", "/nonexistent"]);
    assert!(err.contains("cannot read rules file"), "{err}");
    // Nothing was created: namespaces, mirror, pods and records as before.
    assert_eq!(lab.namespaces(), before);
    assert!(mirror_of(&lab, "blue").is_null());
    let state = lab.state();
    assert_eq!(state["pods"], state_before["pods"]);
    assert!(state["ids"].as_object().is_none_or(|m| m.is_empty()));
    assert_eq!(attachments(&lab).len(), 1);
}

#[test]
fn lab_down_removes_a_running_ids() {
    let lab = TestLab::up("id", 2);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, RULES);
    let mut ids = Ids::start(&lab, &["--network", "blue", "--rules", &rules]);
    let status = lab.ok(&["lab", "status"]);
    assert!(
        status.contains("IDS") && status.contains("ids-blue"),
        "{status}"
    );
    lab.ok(&["lab", "down"]);
    let start = Instant::now();
    while ids.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "lab ids still runs after lab down"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lab.namespaces().is_empty(), "{:?}", lab.namespaces());
    assert!(lab.processes().is_empty(), "{:?}", lab.processes());
}

/// An Ethernet/IPv4/UDP frame (checksums zero: neither OVS nor tshark checks them).
fn udp_frame(dst: [u8; 6], src: [u8; 6], sip: [u8; 4], dip: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = u16::try_from(20 + 8 + payload.len()).unwrap();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&sip);
    f.extend_from_slice(&dip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&4444u16.to_be_bytes());
    f.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn mac_bytes(text: &str) -> [u8; 6] {
    let v: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn send_frames(lab: &TestLab, pod: &str, frame: Vec<u8>) {
    use l2sm_test_support::frames::{FrameSender, SendSpec};
    let sent = FrameSender::start(
        SendSpec {
            netns: format!("/run/netns/l2sm-{}-p-{pod}", lab.name),
            ifname: "net1".into(),
            count: Some(3),
            nice: 0,
            cpu: None,
        },
        move |_| frame.clone(),
    )
    .join();
    assert_eq!(sent, 3);
}

/// Quarantine blames the port a frame came from, never a pod whose MAC or address was forged:
/// on a network with port security a pod's forged frames are dropped at its port before any
/// copy is taken; without it, a frame from an unknown MAC with a neighbour's address raises
/// the alert but blames nobody (the neighbour's MAC is known and is not the frame's).
#[test]
fn a_forged_source_gets_no_other_pod_quarantined() {
    let lab = TestLab::up("ip", 3);
    lab.ok(&["network", "create", "blue", "--port-security"]);
    lab.ok(&["network", "create", "green"]);
    lab.ok(&["network", "create", "quarantine"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    lab.attach("n2", "b", "blue", "10.10.0.2/24");
    lab.attach("n3", "c", "blue", "10.10.0.3/24");
    lab.attach("n1", "d", "green", "10.20.0.1/24");
    lab.attach("n2", "e", "green", "10.20.0.2/24");
    lab.attach("n3", "f", "green", "10.20.0.3/24");
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, RULES);
    let start = |net: &str| {
        Ids::start(
            &lab,
            &[
                "--network",
                net,
                "--rules",
                &rules,
                "--quarantine-to",
                "quarantine",
                "--node",
                "n1",
                "--duration",
                "120",
            ],
        )
    };
    let blue = start("blue");
    let green = start("green");
    let mac = |p: &str| mac_bytes(member(&lab, p)["mac"].as_str().unwrap());
    let stranger = [0x02, 0x66, 0, 0, 0, 1];
    // c poses as b (b's MAC and address), then as an unknown MAC with b's address: port
    // security drops both at c's port.
    send_frames(
        &lab,
        "c",
        udp_frame(
            mac("a"),
            mac("b"),
            [10, 10, 0, 2],
            [10, 10, 0, 1],
            b"attack",
        ),
    );
    send_frames(
        &lab,
        "c",
        udp_frame(
            mac("a"),
            stranger,
            [10, 10, 0, 2],
            [10, 10, 0, 1],
            b"attack",
        ),
    );
    // f, without port security, sends from an unknown MAC with e's address.
    send_frames(
        &lab,
        "f",
        udp_frame(
            mac("d"),
            stranger,
            [10, 20, 0, 2],
            [10, 20, 0, 1],
            b"attack",
        ),
    );
    green.wait_for(
        "no member of green has MAC 02:66:00:00:00:01",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(2));
    for pod in ["a", "b", "c"] {
        assert_eq!(member(&lab, pod)["network"], "blue", "{}", blue.text());
    }
    for pod in ["d", "e", "f"] {
        assert_eq!(member(&lab, pod)["network"], "green", "{}", green.text());
    }
    assert!(!blue.text().contains("alert sid"), "{}", blue.text());
    assert!(
        !green.text().contains("quarantined pod"),
        "{}",
        green.text()
    );
    // The senders' own attacks are seen and they are moved: the IDS were watching all along.
    send_frames(
        &lab,
        "c",
        udp_frame(
            mac("a"),
            mac("c"),
            [10, 10, 0, 3],
            [10, 10, 0, 1],
            b"attack",
        ),
    );
    send_frames(
        &lab,
        "f",
        udp_frame(
            mac("d"),
            mac("f"),
            [10, 20, 0, 3],
            [10, 20, 0, 1],
            b"attack",
        ),
    );
    blue.wait_for("quarantined pod c ", Duration::from_secs(20));
    green.wait_for("quarantined pod f ", Duration::from_secs(20));
    assert_eq!(member(&lab, "c")["network"], "quarantine");
    assert_eq!(member(&lab, "f")["network"], "quarantine");
    for pod in ["a", "b"] {
        assert_eq!(member(&lab, pod)["network"], "blue");
    }
    for pod in ["d", "e"] {
        assert_eq!(member(&lab, pod)["network"], "green");
    }
    blue.interrupt();
    green.interrupt();
    blue.wait_exit(Duration::from_secs(30));
    green.wait_exit(Duration::from_secs(30));
    assert_eq!(lab.state()["quarantined"].as_array().unwrap().len(), 2);
}

/// When the matcher dies under it, `lab ids` fails with a clear error and still removes its
/// pod and the mirror.
#[test]
fn a_failing_ids_still_removes_its_pod_and_the_mirror() {
    let lab = TestLab::up("ix", 2);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, RULES);
    let ids = Ids::start(&lab, &["--network", "blue", "--rules", &rules]);
    assert!(!mirror_of(&lab, "blue").is_null());
    let ns = l2sm_netns::Netns::open_named(&format!("l2sm-{}-p-ids-blue", lab.name)).unwrap();
    let tshark: Vec<i32> = l2sm_netns::pids_in_netns(&ns)
        .unwrap()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with(b"tshark\0"))
        })
        .collect();
    assert_eq!(tshark.len(), 1, "tshark in the IDS pod: {tshark:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tshark[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut child = ids.child;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "lab ids still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(200));
    let text = ids
        .lines
        .lock()
        .unwrap()
        .iter()
        .map(|(_, l)| l.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!status.success(), "{text}");
    assert!(text.contains("tshark exited"), "{text}");
    assert!(text.contains("removed pod ids-blue"), "{text}");
    assert!(mirror_of(&lab, "blue").is_null());
    assert!(!lab.namespaces().iter().any(|n| n.ends_with("-p-ids-blue")));
    assert!(lab.state()["ids"].as_object().unwrap().is_empty());
}

/// An IDS killed outright (no clean-up) leaves its pod and the mirror; the next `lab ids` on
/// that network removes them and runs.
#[test]
fn the_next_ids_removes_what_a_killed_one_left() {
    let lab = TestLab::up("ik", 2);
    lab.ok(&["network", "create", "blue"]);
    lab.attach("n1", "a", "blue", "10.10.0.1/24");
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&dir, RULES);
    let mut ids = Ids::start(&lab, &["--network", "blue", "--rules", &rules]);
    ids.child.kill().unwrap();
    ids.child.wait().unwrap();
    assert!(!mirror_of(&lab, "blue").is_null());
    assert!(lab.namespaces().iter().any(|n| n.ends_with("-p-ids-blue")));
    let again = Ids::start(
        &lab,
        &["--network", "blue", "--rules", &rules, "--duration", "1"],
    );
    let out = again.wait_exit(Duration::from_secs(60));
    assert!(
        out.contains("removing what a stopped IDS left on blue"),
        "{out}"
    );
    assert!(mirror_of(&lab, "blue").is_null());
    assert!(!lab.namespaces().iter().any(|n| n.ends_with("-p-ids-blue")));
    assert!(lab.state()["ids"].as_object().unwrap().is_empty());
    assert!(!lab.state()["pods"]
        .as_object()
        .unwrap()
        .contains_key("ids-blue"));
}
