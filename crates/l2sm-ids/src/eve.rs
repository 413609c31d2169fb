//! Suricata EVE JSON alerts (one JSON object per line of `eve.json`), and the tshark `-T ek -x`
//! lines they are made from.

use crate::packet::{mac_text, Packet};
use crate::rule::Rule;
use serde::{Deserialize, Serialize};

/// `ether` of an EVE event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EveEther {
    /// Source MAC, `aa:bb:cc:dd:ee:ff`.
    pub src_mac: String,
    /// Destination MAC.
    pub dest_mac: String,
}

/// `alert` of an EVE event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EveAlertInfo {
    /// `allowed` (the IDS watches a copy; it blocks nothing itself).
    pub action: String,
    /// `gid`.
    pub gid: u32,
    /// `sid`.
    pub signature_id: u32,
    /// `rev`.
    pub rev: u32,
    /// `msg`.
    pub signature: String,
    /// `classtype` (Suricata writes the class's description; we have no classification file
    /// and write its name), empty without one.
    pub category: String,
    /// `priority`, 3 without one.
    pub severity: u8,
}

/// One EVE `alert` event, fields in Suricata's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EveAlert {
    /// `2026-12-05T09:12:01.123456+0000` (UTC).
    pub timestamp: String,
    /// Capture interface.
    pub in_iface: String,
    /// Always `alert`.
    pub event_type: String,
    /// Source address.
    pub src_ip: String,
    /// Source port (TCP/UDP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// Destination address.
    pub dest_ip: String,
    /// Destination port (TCP/UDP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    /// `TCP`, `UDP`, `ICMP`, `IPv6-ICMP` or the protocol number.
    pub proto: String,
    /// ICMP type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// Ethernet addresses.
    pub ether: EveEther,
    /// The rule.
    pub alert: EveAlertInfo,
}

impl EveAlert {
    /// The alert `rule` raises for `packet`, captured at `epoch_nanos` on `iface`.
    pub fn new(rule: &Rule, packet: &Packet<'_>, epoch_nanos: i128, iface: &str) -> EveAlert {
        let (icmp_type, icmp_code) = match packet.icmp {
            Some((t, c)) => (Some(t), Some(c)),
            None => (None, None),
        };
        EveAlert {
            timestamp: format_timestamp(epoch_nanos),
            in_iface: iface.to_string(),
            event_type: "alert".into(),
            src_ip: packet.src_ip.to_string(),
            src_port: packet.src_port,
            dest_ip: packet.dst_ip.to_string(),
            dest_port: packet.dst_port,
            proto: match packet.proto {
                6 => "TCP".into(),
                17 => "UDP".into(),
                1 => "ICMP".into(),
                58 => "IPv6-ICMP".into(),
                n => n.to_string(),
            },
            icmp_type,
            icmp_code,
            ether: EveEther {
                src_mac: mac_text(&packet.src_mac),
                dest_mac: mac_text(&packet.dst_mac),
            },
            alert: EveAlertInfo {
                action: "allowed".into(),
                gid: rule.gid,
                signature_id: rule.sid,
                rev: rule.rev,
                signature: rule.msg.clone(),
                category: rule.classtype.clone().unwrap_or_default(),
                severity: rule.severity(),
            },
        }
    }

    /// One line of `eve.json` (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Suricata's timestamp: `YYYY-MM-DDTHH:MM:SS.uuuuuu+0000`, UTC, microseconds.
pub fn format_timestamp(epoch_nanos: i128) -> String {
    let micros = epoch_nanos.div_euclid(1000);
    let secs = i64::try_from(micros.div_euclid(1_000_000)).unwrap_or(0);
    let frac = micros.rem_euclid(1_000_000);
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}+0000",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// A frame from a tshark `-T ek -x` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkPacket {
    /// Capture time, nanoseconds since the epoch.
    pub epoch_nanos: i128,
    /// The raw frame.
    pub frame: Vec<u8>,
}

fn epoch_nanos(text: &str) -> Option<i128> {
    let (s, f) = text.split_once('.').unwrap_or((text, "0"));
    let secs: i128 = s.parse().ok()?;
    let mut frac = f.chars().take(9).collect::<String>();
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while frac.len() < 9 {
        frac.push('0');
    }
    Some(secs * 1_000_000_000 + frac.parse::<i128>().ok()?)
}

/// Parses one line of `tshark -T ek -x`: `None` for the index lines between packets and for
/// lines that are no packet; a packet needs `layers.frame_raw` (hex) and the frame's
/// `frame_frame_time_epoch`.
pub fn parse_ek_line(line: &str) -> Option<EkPacket> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let layers = v.get("layers")?;
    let raw = match layers.get("frame_raw")? {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.first()?.as_str()?.to_string(),
        _ => return None,
    };
    if raw.len() % 2 != 0 {
        return None;
    }
    let frame = (0..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(raw.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let time = layers
        .get("frame")
        .and_then(|f| f.get("frame_frame_time_epoch"))
        .and_then(|t| match t {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(a) => a.first()?.as_str().map(str::to_string),
            _ => None,
        })?;
    Some(EkPacket {
        epoch_nanos: epoch_nanos(&time)?,
        frame,
    })
}
