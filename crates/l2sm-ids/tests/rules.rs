//! The rule subset: goldens (rules in the style of upstream's ids/quarantine examples, written
//! here), refusals naming line and keyword, randomized parse/print round trips and a parser that
//! never panics, the exact matcher on built frames, EVE JSON.

use l2sm_ids::{
    format_timestamp, parse_ek_line, parse_frame, parse_rules, Engine, EveAlert, Proto, Rule, Vars,
};
use proptest::prelude::*;

fn one(text: &str) -> Rule {
    let rules = parse_rules(text, &Vars::lab_defaults()).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(rules.len(), 1);
    rules.into_iter().next().unwrap()
}

fn refused(text: &str) -> String {
    match parse_rules(text, &Vars::lab_defaults()) {
        Ok(r) => panic!("accepted {text:?}: {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn goldens_compile_to_these_display_filters() {
    let cases = [
        (
            // The shape of upstream's `ids` example: any ICMP.
            r#"alert icmp 0.0.0.0/0 any -> 0.0.0.0/0 any (msg:"ICMP seen on the network"; sid:1000002; rev:2;)"#,
            "(icmp || icmpv6) && ip.src==0.0.0.0/0 && ip.dst==0.0.0.0/0",
        ),
        (
            r#"alert udp any any -> any 4444 (msg:"attack to 4444"; content:"attack"; sid:7001;)"#,
            r#"udp && udp.dstport==4444 && udp.payload contains "attack""#,
        ),
        (
            r#"alert udp 10.0.0.2 any -> any 53 (msg:"evil lookup"; content:"evil"; nocase; sid:7002;)"#,
            r#"udp && ip.src==10.0.0.2 && udp.dstport==53 && udp.payload matches "(?i)evil""#,
        ),
        (
            r#"alert tcp $HOME_NET any -> [10.20.0.10,10.20.0.11] [80,8000:8080,!8001] (msg:"web"; sid:7003; rev:4; classtype:web-application-attack; priority:1;)"#,
            "tcp && (ip.dst==10.20.0.10 || ip.dst==10.20.0.11) && (tcp.dstport==80 || (tcp.dstport>=8000 && tcp.dstport<=8080)) && !(tcp.dstport==8001)",
        ),
        (
            r#"alert ip [10.20.0.0/24,!10.20.0.10] any <> fd00::/64 any (msg:"both ways"; sid:7004;)"#,
            "(ip || ipv6) && ((ip.src==10.20.0.0/24 && !(ip.src==10.20.0.10) && ipv6.dst==fd00::/64) || (ip.dst==10.20.0.0/24 && !(ip.dst==10.20.0.10) && ipv6.src==fd00::/64))",
        ),
        (
            r#"alert tcp any any -> any any (msg:"bytes"; content:"|de ad|BE|EF|"; content:!"ok"; metadata:created 2026; reference:url,example.org; sid:7005;)"#,
            r#"tcp && tcp.payload contains "\xde\xadBE\xef" && !(tcp.payload contains "ok")"#,
        ),
    ];
    for (text, filter) in cases {
        assert_eq!(one(text).display_filter(), filter, "{text}");
    }
}

#[test]
fn variables_resolve_from_the_given_map() {
    let mut vars = Vars::default();
    vars.addresses
        .insert("HOME_NET".into(), "[10.20.0.0/24,10.30.0.0/24]".into());
    vars.addresses
        .insert("EXTERNAL_NET".into(), "!$HOME_NET".into());
    vars.ports.insert("WEB".into(), "[80,443]".into());
    let r = &parse_rules(
        r#"alert tcp $EXTERNAL_NET any -> $HOME_NET $WEB (msg:"in"; sid:1;)"#,
        &vars,
    )
    .unwrap()[0];
    assert_eq!(
        r.to_string(),
        r#"alert tcp [!10.20.0.0/24,!10.30.0.0/24] any -> [10.20.0.0/24,10.30.0.0/24] [80,443] (msg:"in"; sid:1; rev:1;)"#
    );
    let e = parse_rules(r#"alert tcp $NOPE any -> any any (msg:"x"; sid:1;)"#, &vars).unwrap_err();
    assert!(
        e.to_string().contains("unknown address variable $NOPE"),
        "{e}"
    );
    // A variable naming itself is cut off by the depth limit, not a stack overflow.
    vars.addresses.insert("LOOP".into(), "$LOOP".into());
    let e = parse_rules(r#"alert ip $LOOP any -> any any (msg:"x"; sid:1;)"#, &vars).unwrap_err();
    assert!(e.to_string().contains("nests too deep"), "{e}");
}

#[test]
fn unsupported_rules_are_refused_naming_the_line_and_keyword() {
    let file = "# comment\n\nalert udp any any -> any 4444 (msg:\"ok\"; sid:1;)\nalert tcp any any -> any 80 (msg:\"scan\"; flags:S; detection_filter:track by_src, count 12, seconds 20; sid:2;)\n";
    let e = parse_rules(file, &Vars::lab_defaults()).unwrap_err();
    assert_eq!(e.line, 4);
    assert!(
        e.to_string()
            .starts_with("rule line 4: keyword \"flags\" is not supported"),
        "{e}"
    );
    for (text, expect) in [
        (r#"drop tcp any any -> any any (msg:"x"; sid:1;)"#, "action \"drop\" is not supported"),
        (r#"alert http any any -> any any (msg:"x"; sid:1;)"#, "protocol \"http\" is not supported"),
        (r#"alert tcp any any <- any any (msg:"x"; sid:1;)"#, "direction \"<-\" is not supported"),
        (r#"alert tcp any any -> any any (msg:"x"; pcre:"/a/"; sid:1;)"#, "keyword \"pcre\""),
        (r#"alert tcp any any -> any any (msg:"x"; content:"a"; depth:4; sid:1;)"#, "keyword \"depth\""),
        (r#"alert tcp any any -> any any (msg:"x"; flow:established; sid:1;)"#, "keyword \"flow\""),
        (r#"alert tcp any any -> any any (msg:"x";)"#, "missing sid"),
        (r#"alert tcp any any -> any any (sid:1;)"#, "missing msg"),
        (r#"alert icmp any 8 -> any any (msg:"x"; sid:1;)"#, "has no ports"),
        (r#"alert tcp 10.0.0.300 any -> any any (msg:"x"; sid:1;)"#, "is not an IP address"),
        (r#"alert tcp any 70000 -> any any (msg:"x"; sid:1;)"#, "is not a port"),
        (r#"alert tcp any 90:80 -> any any (msg:"x"; sid:1;)"#, "backwards"),
        (r#"alert tcp !any any -> any any (msg:"x"; sid:1;)"#, "!any"),
        (r#"alert tcp any any -> any any (msg:"x"; nocase; sid:1;)"#, "nocase must follow a content"),
        (r#"alert tcp any any -> any any (msg:"x"; content:"|4|"; sid:1;)"#, "bad hex"),
        (r#"alert tcp any any -> any any (msg:"x"; sid:1)"#, "must end with ';'"),
        (r#"alert tcp any any -> any any msg:"x"; sid:1;"#, "no options"),
        ("alert tcp any any -> any any (msg:\"x\"; sid:1;)\nalert udp any any -> any any (msg:\"y\"; sid:1;)", "sid 1 is used by an earlier rule"),
        ("# only comments\n", "no rules"),
    ] {
        let e = refused(text);
        assert!(e.contains(expect), "{text}: {e}");
    }
}

#[test]
fn continued_lines_form_one_rule() {
    let rules = parse_rules(
        "alert udp any any -> any 4444 \\\n   (msg:\"two lines\"; \\\n sid:9;)\n",
        &Vars::lab_defaults(),
    )
    .unwrap();
    assert_eq!(rules[0].sid, 9);
    assert_eq!(rules[0].msg, "two lines");
}

/// An Ethernet/IPv4/UDP frame.
fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa, 0x08, 0x00];
    let total = u16::try_from(20 + 8 + payload.len()).unwrap();
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn the_matcher_picks_the_rule_by_addresses_ports_direction_and_content() {
    let rules = parse_rules(
        concat!(
            "alert udp any any -> any 4444 (msg:\"attack\"; content:\"attack\"; sid:1;)\n",
            "alert udp 10.0.0.1 any <> 10.0.0.2 5000:5010 (msg:\"pair\"; sid:2;)\n",
            "alert udp any any -> any any (msg:\"shout\"; content:\"EVIL\"; nocase; content:!\"fine\"; sid:3;)\n",
            "alert icmp any any -> any any (msg:\"icmp\"; sid:4;)\n",
        ),
        &Vars::lab_defaults(),
    )
    .unwrap();
    let engine = Engine::new(rules);
    let sids = |f: &[u8]| engine.matches(f).iter().map(|r| r.sid).collect::<Vec<_>>();
    let a = [10, 0, 0, 1];
    let b = [10, 0, 0, 2];
    assert_eq!(sids(&udp_frame(a, b, 1000, 4444, b"an attack")), vec![1]);
    assert_eq!(
        sids(&udp_frame(a, b, 1000, 4444, b"an attac")),
        Vec::<u32>::new()
    );
    assert_eq!(
        sids(&udp_frame(a, b, 1000, 4445, b"an attack")),
        Vec::<u32>::new()
    );
    assert_eq!(sids(&udp_frame(a, b, 1000, 5005, b"x")), vec![2]);
    assert_eq!(
        sids(&udp_frame(b, a, 5005, 1000, b"x")),
        vec![2],
        "<> matches the reply"
    );
    assert_eq!(sids(&udp_frame(b, a, 1000, 5005, b"x")), Vec::<u32>::new());
    assert_eq!(sids(&udp_frame(a, b, 1, 2, b"so eViL")), vec![3]);
    assert_eq!(
        sids(&udp_frame(a, b, 1, 2, b"evil but fine")),
        Vec::<u32>::new()
    );
    // Headers are not payload: "attack" in no payload, port 4444 → no match of sid 1.
    assert_eq!(sids(&udp_frame(a, b, 1, 4444, b"")), Vec::<u32>::new());
    // ICMP echo request.
    let mut icmp = udp_frame(a, b, 0, 0, b"");
    icmp[23] = 1;
    icmp.truncate(34);
    icmp.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1, b'p']);
    assert_eq!(sids(&icmp), vec![4]);
    // ARP and garbage match nothing.
    let mut arp = udp_frame(a, b, 0, 0, b"");
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert!(engine.matches(&arp).is_empty());
    assert!(engine.matches(&[1, 2, 3]).is_empty());
}

#[test]
fn eve_alerts_have_suricatas_shape() {
    let rule = one(
        r#"alert udp any any -> any 4444 (msg:"attack to 4444"; content:"attack"; classtype:trojan-activity; sid:7001; rev:3;)"#,
    );
    let frame = udp_frame([10, 10, 0, 1], [10, 10, 0, 2], 40000, 4444, b"attack");
    let p = parse_frame(&frame).unwrap();
    // 2026-12-05T09:12:01.123456789Z
    let alert = EveAlert::new(&rule, &p, 1_796_461_921_123_456_789, "net1");
    let v: serde_json::Value = serde_json::from_str(&alert.to_line()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "timestamp": "2026-12-05T09:12:01.123456+0000",
            "in_iface": "net1",
            "event_type": "alert",
            "src_ip": "10.10.0.1", "src_port": 40000,
            "dest_ip": "10.10.0.2", "dest_port": 4444,
            "proto": "UDP",
            "ether": {"src_mac": "02:00:00:00:00:aa", "dest_mac": "02:00:00:00:00:bb"},
            "alert": {"action": "allowed", "gid": 1, "signature_id": 7001, "rev": 3,
                      "signature": "attack to 4444", "category": "trojan-activity", "severity": 3}
        })
    );
    assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000+0000");
    assert_eq!(
        format_timestamp(951_782_400_000_000_000),
        "2000-02-29T00:00:00.000000+0000"
    );
}

#[test]
fn tshark_ek_lines_give_the_raw_frame_and_time() {
    let line = r#"{"timestamp":"1796460850146","layers":{"frame_raw":"0a0b","frame":{"frame_frame_time_epoch":"1796460850.146223228"}}}"#;
    let p = parse_ek_line(line).unwrap();
    assert_eq!(p.frame, vec![0x0a, 0x0b]);
    assert_eq!(p.epoch_nanos, 1_796_460_850_146_223_228);
    assert!(parse_ek_line(r#"{"index":{"_index":"packets-2026-12-05","_type":"doc"}}"#).is_none());
    assert!(parse_ek_line(
        r#"{"layers":{"frame_raw":"0g","frame":{"frame_frame_time_epoch":"1"}}}"#
    )
    .is_none());
    assert!(parse_ek_line("not json").is_none());
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, p)| format!("{}.{}.{}.{}/{p}", a[0], a[1], a[2], a[3])),
        any::<[u8; 4]>().prop_map(|a| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv6Addr::from(a))),
    ]
}

fn addr() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("any".to_string()),
        cidr(),
        cidr().prop_map(|c| format!("!{c}")),
        proptest::collection::vec((cidr(), any::<bool>()), 1..4).prop_map(|v| format!(
            "[{}]",
            v.iter()
                .map(|(c, n)| format!("{}{c}", if *n { "!" } else { "" }))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    ]
}

fn port() -> impl Strategy<Value = String> {
    let one = prop_oneof![
        any::<u16>().prop_map(|p| p.to_string()),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| format!("{}:{}", a.min(b), a.max(b))),
        any::<u16>().prop_map(|p| format!("{p}:")),
    ];
    prop_oneof![
        Just("any".to_string()),
        one.clone(),
        proptest::collection::vec((one, any::<bool>()), 1..4).prop_map(|v| format!(
            "[{}]",
            v.iter()
                .map(|(c, n)| format!("{}{c}", if *n { "!" } else { "" }))
                .collect::<Vec<_>>()
                .join(",")
        )),
    ]
}

fn rule_text() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("ip"), Just("tcp"), Just("udp"), Just("icmp")],
        addr(),
        port(),
        any::<bool>(),
        addr(),
        port(),
        "[ -~]{0,20}",
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 1..8),
                any::<bool>(),
                any::<bool>(),
            ),
            0..3,
        ),
        1u32..,
        proptest::option::of(1u8..=255),
    )
        .prop_map(|(proto, sa, sp, bidi, da, dp, msg, contents, sid, prio)| {
            let (sp, dp) = if proto == "tcp" || proto == "udp" {
                (sp, dp)
            } else {
                ("any".to_string(), "any".to_string())
            };
            let msg = msg
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace(';', "\\;");
            let mut opts = format!("msg:\"{msg}\";");
            for (bytes, nocase, neg) in contents {
                let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
                opts.push_str(&format!(
                    " content:{}\"|{}|\";",
                    if neg { "!" } else { "" },
                    hex.join(" ")
                ));
                if nocase && bytes.is_ascii() {
                    opts.push_str(" nocase;");
                }
            }
            if let Some(p) = prio {
                opts.push_str(&format!(" priority:{p};"));
            }
            opts.push_str(&format!(" sid:{sid};"));
            format!(
                "alert {proto} {sa} {sp} {} {da} {dp} ({opts})",
                if bidi { "<>" } else { "->" }
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_parser_never_panics(text in "\\PC{0,200}") {
        let _ = parse_rules(&text, &Vars::lab_defaults());
    }

    #[test]
    fn the_parser_never_panics_on_near_rules(
        head in prop_oneof![Just("alert tcp any any -> any any ("), Just("alert ip [1.2.3.4,"), Just("alert udp $HOME_NET 1:")],
        tail in "[ -~]{0,80}",
    ) {
        let _ = parse_rules(&format!("{head}{tail}"), &Vars::lab_defaults());
    }

    #[test]
    fn frames_of_any_bytes_parse_and_match_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        ethertype in prop_oneof![Just([0x08u8, 0x00]), Just([0x86, 0xdd]), Just([0x81, 0x00])],
        version in prop_oneof![Just(0x45u8), Just(0x60), any::<u8>()],
    ) {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype);
        f.push(version);
        f.extend_from_slice(&bytes);
        let engine = Engine::new(parse_rules(
            "alert ip any any <> any any (msg:\"any\"; content:\"a\"; nocase; sid:1;)\nalert udp any 1:100 -> any any (msg:\"u\"; sid:2;)\n",
            &Vars::lab_defaults(),
        ).unwrap());
        let _ = engine.matches(&f);
        if let Some(p) = parse_frame(&f) {
            let _ = EveAlert::new(&engine.rules()[0], &p, 0, "net1").to_line();
        }
    }

    #[test]
    fn printed_rules_parse_back_to_the_same_rule(text in rule_text()) {
        // Every generated rule is in the subset.
        let rules = parse_rules(&text, &Vars::lab_defaults()).unwrap_or_else(|e| panic!("{text}: {e}"));
        {
            let printed = rules[0].to_string();
            let again = parse_rules(&printed, &Vars::lab_defaults())
                .unwrap_or_else(|e| panic!("{printed}: {e}"));
            prop_assert_eq!(&again[0], &rules[0]);
            prop_assert_eq!(again[0].to_string(), printed);
            prop_assert!(matches!(rules[0].proto, Proto::Ip | Proto::Tcp | Proto::Udp | Proto::Icmp));
        }
    }
}

#[test]
fn ipv6_with_extension_headers_reaches_the_udp_header() {
    let rules = parse_rules(
        "alert udp fd00::/64 any -> any 4444 (msg:\"v6\"; content:\"attack\"; sid:1;)\n",
        &Vars::lab_defaults(),
    )
    .unwrap();
    let engine = Engine::new(rules);
    let v6 = |next: u8, ext: &[u8], l4: &[u8]| {
        let mut f = vec![0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&u16::try_from(ext.len() + l4.len()).unwrap().to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        f.extend_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(ext);
        f.extend_from_slice(l4);
        f
    };
    let mut udp = vec![0x03, 0xe8, 0x11, 0x5c, 0, 14, 0, 0];
    udp.extend_from_slice(b"attack");
    // Straight UDP, then behind hop-by-hop options (PadN).
    assert_eq!(engine.matches(&v6(17, &[], &udp)).len(), 1);
    let hbh = [17, 0, 1, 4, 0, 0, 0, 0];
    assert_eq!(engine.matches(&v6(0, &hbh, &udp)).len(), 1);
    let framed = v6(0, &hbh, &udp);
    let p = parse_frame(&framed).unwrap();
    assert_eq!((p.proto, p.dst_port), (17, Some(4444)));
    // A later fragment carries no UDP header: no ports, no match.
    let frag = [17, 0, 0x00, 0x08, 0, 0, 0, 1];
    assert!(engine.matches(&v6(44, &frag, &udp)).is_empty());
    // Truncated extension headers are no panic and no match.
    assert!(engine.matches(&v6(0, &[17, 9], &[])).is_empty());
}
