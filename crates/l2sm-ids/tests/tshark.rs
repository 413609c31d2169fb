//! The compiled display filters against the real tshark: over a capture of varied frames, each
//! rule's filter lets through every frame the exact matcher matches (tshark is the lab IDS's
//! packet matcher; the exact match only narrows what it passes). Needs `tshark` (Debian
//! package, scripts/deps.sh): fails, not skips, without it.

use l2sm_ids::{parse_ek_line, parse_rules, pcap, Engine, Vars};
use std::collections::BTreeSet;
use std::process::Command;

fn frame(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa, 0x08, 0x00];
    let mut l4 = Vec::new();
    match proto {
        17 => {
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        6 => {
            l4.extend_from_slice(&sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0x20, 0, 0, 0, 0, 0]);
        }
        _ => l4.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]),
    }
    l4.extend_from_slice(payload);
    let total = u16::try_from(20 + l4.len()).unwrap();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&l4);
    f
}

/// A pcap stream as the lab IDS feeds tshark: the canary first, then the frames (frame
/// numbers in tshark are 1 for the canary, i + 2 for `frames[i]`).
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = pcap::header();
    out.extend_from_slice(&pcap::record(1_000_000_000, &pcap::canary()));
    for (i, f) in frames.iter().enumerate() {
        let t = 2_000_000_000 + i128::try_from(i).unwrap() * 1000;
        out.extend_from_slice(&pcap::record(t, f));
    }
    out
}

#[test]
fn each_rules_display_filter_admits_what_the_rule_matches_in_tshark() {
    let status = Command::new("tshark").arg("--version").output();
    assert!(
        status.is_ok_and(|o| o.status.success()),
        "tshark is missing: apt-get install tshark (scripts/deps.sh)"
    );
    let rules = parse_rules(
        concat!(
            "alert udp any any -> any 4444 (msg:\"a\"; content:\"attack\"; sid:1;)\n",
            "alert udp 10.0.0.1 any <> 10.0.0.2 5000:5010 (msg:\"b\"; sid:2;)\n",
            "alert udp any any -> any any (msg:\"c\"; content:\"EVIL\"; nocase; content:!\"fine\"; sid:3;)\n",
            "alert icmp 10.0.0.0/30 any -> any any (msg:\"d\"; content:\"ping\"; sid:4;)\n",
            "alert tcp [10.0.0.0/24,!10.0.0.3] any -> any [80,8000:8080,!8001] (msg:\"e\"; content:\"|00 ff|x\"; sid:5;)\n",
            "alert ip any any -> 10.0.0.2 any (msg:\"f\"; content:\"q\\\"\\\\\"; sid:6;)\n",
            "alert tcp any any -> any any (msg:\"g\"; content:!\"GET\"; sid:7;)\n",
        ),
        &Vars::lab_defaults(),
    )
    .unwrap();
    let payloads: [&[u8]; 9] = [
        b"",
        b"attack",
        b"an AtTaCk",
        b"eViL",
        b"evil but fine",
        b"ping",
        b"\x00\xffx",
        b"q\"\\",
        b"GET /",
    ];
    let addrs = [
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        [10, 0, 0, 3],
        [192, 168, 1, 1],
    ];
    let ports = [80u16, 4444, 5005, 8001, 8080, 1000];
    let mut frames = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        for (j, src) in addrs.iter().enumerate() {
            for (k, port) in ports.iter().enumerate() {
                let dst = addrs[(i + j + k) % addrs.len()];
                let proto = [17u8, 6, 1][(i + j + k) % 3];
                let sport = ports[(i + k) % ports.len()];
                frames.push(frame(*src, dst, proto, sport, *port, payload));
            }
        }
    }
    // And random frames (the seed is printed to replay a failure).
    let seed = std::env::var("L2SM_IDS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("random frames with L2SM_IDS_SEED={seed}");
    let mut state = seed | 1;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % n as u64).unwrap()
    };
    let pieces: [&[u8]; 8] = [
        b"attack",
        b"AtTaCk",
        b"fine",
        b"evil",
        b"ping",
        b"GET",
        b"\x00\xffx",
        b"q\"\\",
    ];
    for _ in 0..400 {
        let mut payload = Vec::new();
        for _ in 0..next(4) {
            if next(3) == 0 {
                payload.push(u8::try_from(next(256)).unwrap());
            } else {
                payload.extend_from_slice(pieces[next(pieces.len())]);
            }
        }
        let addr = |k: usize| -> [u8; 4] {
            if k < addrs.len() {
                addrs[k]
            } else {
                [10, 0, 0, u8::try_from(k).unwrap()]
            }
        };
        let src = addr(next(addrs.len() + 3));
        let dst = addr(next(addrs.len() + 3));
        let port = |k: usize| -> u16 {
            if k < ports.len() {
                ports[k]
            } else {
                u16::try_from(4990 + k).unwrap()
            }
        };
        let (sport, dport) = (port(next(ports.len() + 20)), port(next(ports.len() + 20)));
        frames.push(frame(
            src,
            dst,
            [17u8, 6, 1][next(3)],
            sport,
            dport,
            &payload,
        ));
    }
    let dir = std::env::temp_dir().join(format!("l2sm-ids-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frames.pcap");
    std::fs::write(&file, pcap(&frames)).unwrap();
    let engine = Engine::new(rules.clone());
    let mut matched_somewhere = 0;
    for rule in &rules {
        let filter = rule.display_filter();
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&file)
            .args(["-Y", &filter, "-T", "fields", "-e", "frame.number"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tshark refused the filter of sid {}: {filter}: {}",
            rule.sid,
            String::from_utf8_lossy(&out.stderr)
        );
        let passed: BTreeSet<usize> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse::<usize>().ok())
            .filter(|n| *n >= 2)
            .map(|n| n - 2)
            .collect();
        let exact: BTreeSet<usize> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| engine.matches(f).iter().any(|r| r.sid == rule.sid))
            .map(|(i, _)| i)
            .collect();
        assert!(!exact.is_empty(), "sid {} matches no test frame", rule.sid);
        matched_somewhere += exact.len();
        let missed: Vec<_> = exact.difference(&passed).collect();
        assert!(
            missed.is_empty(),
            "sid {}: tshark's filter {filter} dropped frames the rule matches: {missed:?}",
            rule.sid
        );
        // For these rules the filter is exact (no header-only hits): the same frames.
        if rule.sid != 6 {
            assert_eq!(passed, exact, "sid {}: {filter}", rule.sid);
        }
        println!("sid {}: {} frames, filter {filter}", rule.sid, exact.len());
    }
    // The lab's whole filter (canary term first) over the same stream, as `-T ek -x` lines:
    // the canary comes back first, then exactly the frames some rule may match, raw.
    let combined = format!("frame.number == 1 || {}", engine.combined_filter());
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file)
        .args(["-l", "-T", "ek", "-x", "-Y", &combined])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse_ek_line)
        .collect();
    assert_eq!(packets[0].frame, pcap::canary());
    assert!(
        engine.matches(&packets[0].frame).is_empty(),
        "a rule matches the canary"
    );
    let exact_any = frames
        .iter()
        .filter(|f| !engine.matches(f).is_empty())
        .count();
    let back: Vec<_> = packets[1..]
        .iter()
        .filter(|p| !engine.matches(&p.frame).is_empty())
        .collect();
    assert_eq!(
        back.len(),
        exact_any,
        "frames some rule matches, as tshark handed them back"
    );
    assert!(back.iter().all(|p| frames.contains(&p.frame)));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matched_somewhere > 0);
}
