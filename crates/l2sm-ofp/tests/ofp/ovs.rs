//! Helpers around the `ovs-ofctl` oracle and the hex fixtures.

use std::process::Command;

/// Parses hex, ignoring whitespace and `#` comment lines (the fixture file format).
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.bytes())
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).expect("hex digit"))
        .collect()
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `ovs-ofctl -O OpenFlow13 ofp-print <hex>` and returns its stdout.
///
/// Fails (never skips) when `ovs-ofctl` is missing, and when it prints anything on
/// stderr, which is where OVS reports messages it had to fix up or could not parse.
pub(crate) fn ofp_print(bytes: &[u8]) -> String {
    let out = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow13", "ofp-print", &to_hex(bytes)])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the golden tests need `ovs-ofctl` (Debian package openvswitch-common) on PATH, \
                 and running it failed: {e}"
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ovs-ofctl ofp-print exited with {}: {stderr}",
        out.status
    );
    assert!(
        stderr.is_empty(),
        "ovs-ofctl ofp-print complained: {stderr}"
    );
    String::from_utf8(out.stdout).expect("ovs-ofctl prints utf-8")
}
