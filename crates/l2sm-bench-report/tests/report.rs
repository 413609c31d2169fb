//! The generator end to end on a results directory like the one `scripts/bench.sh` writes:
//! parsing, tables, plot files. Fast (no lab, no root).

use std::path::Path;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn results(dir: &Path) {
    let mut s = String::new();
    for n in [1, 10, 100] {
        for (sys, base) in [("l2sm", 15.0), ("bridge", 20.0)] {
            for j in 0..n.min(20) {
                let v = base * f64::from(n).sqrt() + f64::from(j);
                s += &format!("{{\"key\":\"attach.{sys}.c{n}\",\"v\":{v}}}\n");
            }
        }
    }
    for (sys, v) in [("l2sm", 470.5), ("ovs", 480.0), ("kernel", 12000.0)] {
        s += &format!("{{\"key\":\"dp.tput.same.{sys}\",\"v\":{v}}}\n");
        s += &format!("{{\"key\":\"dp.tput.cross.{sys}\",\"v\":{v}}}\n");
    }
    for (k, v) in [
        ("l2sm.seq", 10.0),
        ("l2sm.c100", 300.0),
        ("shell.seq", 40.0),
        ("shell.c100", 900.0),
    ] {
        for (f, x) in [("p50", v), ("p99", v * 2.0), ("total", v * 100.0)] {
            s += &format!("{{\"key\":\"agent.{k}.{f}\",\"v\":{x}}}\n");
        }
    }
    write(dir, "samples.jsonl", &s);
    write(
        dir,
        "machine.json",
        r#"{"nproc":2,"mode":"quick","load_start":"1.0 2.0 3.0"}"#,
    );
    write(dir, "controller/synth-10.json", &synth(10, 4.0, 8192, 500));
    write(
        dir,
        "controller/synth-1000.json",
        &synth(1000, 8000.0, 32768, 150000),
    );
    write(
        dir,
        "controller/ovs-100.json",
        r#"{"ovs":{"cluster":{"switches":100,"networks":10,"ports_per_switch":4,"shape":"sparse"},"links":200,
           "expected_flows":6398,"expected_groups":694,"serving_ms":5.0,"convergence_ms":800.0,"converged_bridges":100,
           "controller":{"rss_kib":10240,"peak_rss_kib":10240,"cpu_ms":300},"vswitchd":{"rss_kib":204800,"peak_rss_kib":204800,"cpu_ms":4000}}}"#,
    );
    write(
        dir,
        "controller/flow-rate.json",
        r#"{"flow_rate":{"flows":29902,"groups":198,"memberships":9900,"networks":99,"controller_ms":373.0,
           "ofctl_ms":4000.0,"ratio":0.09325,"controller_flows_per_s":80166.0,"ofctl_flows_per_s":7475.5}}"#,
    );
    write(
        dir,
        "controller/cold-start.json",
        r#"{"cold_start":{"runs":3,"empty_p50_ms":4.25,"empty_ms":[4,4.25,5],"loaded_memberships":400,"loaded_p50_ms":8.5,"loaded_ms":[8,8.5,9]}}"#,
    );
    write(
        dir,
        "codec/flow_mod/encode/estimates.json",
        r#"{"median":{"point_estimate":250.0}}"#,
    );
    write(
        dir,
        "codec/flow_mod/copy_bytes_baseline/estimates.json",
        r#"{"median":{"point_estimate":25.0}}"#,
    );
}

/// A synthetic-switch document: `n` switches, convergence `conv` ms, peak RSS KiB, FLOW_MODs;
/// API write p99 2 ms + 0.5 ms per 1,000 switches.
fn synth(n: u32, conv: f64, peak: u32, mods: u32) -> String {
    format!(
        r#"{{"controller":{{"cluster":{{"networks":10,"ports_per_switch":4,"shape":"sparse","switches":{n}}},
        "expected_flows":{},"expected_groups":0,"links":{},"memberships":{},"restart":null,
        "feed_batch":1,"feed_p50_ms":1.5,"feed_p99_ms":{},
        "start":{{"controller":{{"cpu_ms":2000,"peak_rss_kib":{peak},"rss_kib":{peak}}},"converged":true,
        "converged_switches":{n},"convergence_ms":{conv},"flow_mods":{mods},"group_mods":0,
        "mods_after_convergence":0,"p50_switch_ms":{},"serving_ms":4.5}}}}}}"#,
        n * 50,
        n * 2,
        n * 4,
        2.0 + f64::from(n) / 2000.0,
        conv / 2.0
    )
}

#[test]
fn writes_markdown_and_one_png_per_curve() {
    let dir = tempfile::tempdir().unwrap();
    results(dir.path());
    write(
        dir.path(),
        "controller/synth-5000.json",
        &synth(5000, 30000.0, 98304, 600000),
    );
    l2sm_bench_report::register_font(Path::new(FONT)).expect("fonts-dejavu-core is installed");
    let inputs = l2sm_bench_report::load(dir.path()).unwrap();
    let out = dir.path().join("out");
    let files = l2sm_bench_report::write_report(&inputs, &out).unwrap();
    let md = std::fs::read_to_string(out.join("BENCHMARKS.md")).unwrap();
    assert!(
        md.contains("| same node | TCP Mbit/s, median of 1 (min–max) | 470 | 480 | **0.98×** |"),
        "{md}"
    );
    assert!(md.contains("| 1,000 | synthetic | 2,000 | 50,000 | 4.50 | 4,000 | 8,000 | 20.00× | 150,000 | 0 | 32 (32) | 2 |"), "{md}");
    assert!(md.contains("| 1,000 switches converge | < 5 s | 8,000 ms | **missed** by 3,000 ms (1.6× the goal); the switches received 3.0× the FLOW_MODs"), "{md}");
    assert!(
        md.contains(
            "| 100 | real OVS | 200 | 7,092 | 5 | — | 800 | 1.00× | — | — | 10 (10) | 0.300 |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| **L2S-M ÷ ovs-ofctl (time; lower is faster)** | **0.09×** |"),
        "{md}"
    );
    assert!(md.contains("| Flow programming time vs `ovs-ofctl add-flows` (issue #5) | ≤ 1.5× | 0.09× the time of ovs-ofctl | met |"), "{md}");
    assert!(
        md.contains("| Controller RSS at 1,000 switches | < 64 MiB | peak 32 MiB | met |"),
        "{md}"
    );
    assert!(
        md.contains("| 400 memberships | 8.50 | 2.00× | — |"),
        "{md}"
    );
    assert!(
        md.contains("| Cold start to serving | < 100 ms | 4.25 ms (empty state) | met |"),
        "{md}"
    );
    assert!(
        md.contains("| flow mod | encode | 250 | 4,000,000 | 10.00× |"),
        "{md}"
    );
    assert!(md.contains("](docs/bench/attach.png)"), "{md}");
    assert!(
        md.contains("| all at once | 300 / 600 | 30,000 | 900 / 1,800 | 90,000 | 0.33× |"),
        "{md}"
    );
    // API write latency against size, and issue #16's goal: 4.5 ms at 5,000 over 2.5 ms at
    // 1,000 is 1.8×.
    assert!(
        md.contains("| 5,000 | 20,000 | 1.50 | 4.50 | 2.24× |"),
        "{md}"
    );
    assert!(
        md.contains("| API write p99, 20,000 memberships ÷ 4,000 (issue #16) | ≤ 1.5× | 1.80× (4.50 ms ÷ 2.50 ms) | **missed** (1.80× > 1.5×) |"),
        "{md}"
    );
    for name in ["attach.png", "convergence.png", "rss.png", "api-write.png"] {
        let png = out.join("docs/bench").join(name);
        assert!(files.contains(&png), "{name}");
        assert!(md.contains(&format!("](docs/bench/{name})")), "{name}");
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            bytes.len() > 5_000,
            "a plot with text and lines, not an empty image"
        );
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    results(dir.path());
    write(
        dir.path(),
        "samples.jsonl",
        "{\"key\":\"a\",\"v\":1}\n{\"key\":\"a\",\"v\":\"x\"}\n",
    );
    let e = l2sm_bench_report::load(dir.path()).unwrap_err().to_string();
    assert!(
        e.ends_with("samples.jsonl:2: \"v\" must be a finite number"),
        "{e}"
    );
    write(dir.path(), "samples.jsonl", "not json\n");
    let e = l2sm_bench_report::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("samples.jsonl:1: "), "{e}");
    std::fs::remove_file(dir.path().join("machine.json")).unwrap();
    write(dir.path(), "samples.jsonl", "");
    let e = l2sm_bench_report::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("machine.json"), "{e}");
}

/// The TLS section (issue #14) from repeated `tls-<N>-<run>` and `api-<run>` documents:
/// medians and ranges over the runs, the TLS ÷ TCP rate ratio of each run, goals with
/// verdicts; those documents stay out of the scaling table.
#[test]
fn tls_section_from_repeated_runs() {
    let dir = tempfile::tempdir().unwrap();
    results(dir.path());
    let start = |conv: u32, rss_mib: u32| {
        format!(
            r#"{{"converged":true,"convergence_ms":{conv},"flow_mods":900,"group_mods":100,
               "controller":{{"rss_kib":{},"peak_rss_kib":0,"cpu_ms":2000}},"switches_cpu_ms":1500}}"#,
            rss_mib * 1024
        )
    };
    for (run, tcp, tls, rss) in [
        (1, 2000, 6000, 140),
        (2, 3000, 7000, 150),
        (3, 4000, 8000, 160),
    ] {
        let cluster = r#"{"switches":5000,"networks":10,"ports_per_switch":4,"shape":"sparse"}"#;
        write(
            dir.path(),
            &format!("controller/tls-5000-{run}.json"),
            &format!(
                r#"{{"controller":{{"openflow":"tcp","cluster":{cluster},"start":{}}},
                    "controller_tls":{{"openflow":"tls","cluster":{cluster},"start":{}}}}}"#,
                start(tcp, 100),
                start(tls, rss)
            ),
        );
    }
    let result = |c: &str, o: &str, t: &str, p99: f64| {
        format!(
            r#"{{"connection":"{c}","op":"{o}","transport":"{t}","p50_ms":0.5,"p99_ms":{p99},"server_cpu_us":80}}"#
        )
    };
    write(
        dir.path(),
        "controller/api-1.json",
        &format!(
            r#"{{"api":{{"networks":10,"memberships":400,"concurrency":4,"read_bytes":10323,
                "results":[{},{},{},{}],
                "ratios":[{{"connection":"keepalive","op":"read","p50":1.0,"p99":1.2}},
                          {{"connection":"keepalive","op":"write","p50":1.0,"p99":1.4}}]}}}}"#,
            result("keepalive", "read", "plain", 1.0),
            result("keepalive", "read", "tls", 1.2),
            result("keepalive", "write", "plain", 2.0),
            result("keepalive", "write", "tls", 2.8),
        ),
    );
    let inputs = l2sm_bench_report::load(dir.path()).unwrap();
    let (md, _) = l2sm_bench_report::render(&inputs);
    let tls = md
        .split("## Control plane over TLS (issue #14)")
        .nth(1)
        .expect("TLS section");
    assert!(
        tls.contains("| 5,000 | TCP | 3 | 3,000 (2,000–4,000) | 100 (100–100) |"),
        "{tls}"
    );
    assert!(
        tls.contains("| 5,000 | TLS | 3 | 7,000 (6,000–8,000) | 150 (140–160) |"),
        "{tls}"
    );
    // Per run: TLS rate ÷ TCP rate = TCP time ÷ TLS time: 0.333, 0.429, 0.5.
    assert!(tls.contains("**0.429 (0.333–0.500)×**"), "{tls}");
    assert!(
        tls.contains("| keepalive | read | 0.500 | 1 | 0.500 | 1.20 | 1× | 1.20× | 80 / 80 |"),
        "{tls}"
    );
    assert!(md.contains("| Switches over TLS converge (issue #14) | 5,000 switches < 15 s | 7,000 (6,000–8,000) ms | met |"), "{md}");
    assert!(md.contains("| Controller RSS, 5,000 switches over TLS (issue #14) | < 128 MiB | 150 (140–160) MiB | **missed** |"), "{md}");
    assert!(
        md.contains("| OpenFlow programming rate TLS ÷ TCP, same run (issue #14) | ≥ 0.8× |"),
        "{md}"
    );
    assert!(md.contains("| REST p99 TLS ÷ plain, kept-alive connections (issue #14) | ≤ 1.3× | read 1.20×, write 1.40× (all runs: 1.30 (1.20–1.40)) | **missed** |"), "{md}");
    // The repeated runs stay out of the scaling table.
    let scaling = md
        .split("### Convergence and memory")
        .nth(1)
        .and_then(|s| s.split("###").next())
        .unwrap();
    assert!(!scaling.contains("| 5,000 |"), "{scaling}");
}
