//! The classic pcap stream format (what `tcpdump -w -` writes, what `tshark -r -` reads):
//! the global header and one record, microsecond timestamps, host byte order, Ethernet.

/// Link type Ethernet.
const LINKTYPE_ETHERNET: u32 = 1;
/// Snapshot length declared in the header.
pub const SNAPLEN: u32 = 262_144;

/// The 24-byte global header tcpdump writes on this host (magic `0xa1b2c3d4` in host byte
/// order: microseconds; version 2.4; Ethernet).
pub fn header() -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
    h.extend_from_slice(&2u16.to_ne_bytes());
    h.extend_from_slice(&4u16.to_ne_bytes());
    h.extend_from_slice(&0i32.to_ne_bytes());
    h.extend_from_slice(&0u32.to_ne_bytes());
    h.extend_from_slice(&SNAPLEN.to_ne_bytes());
    h.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    h
}

/// Whether a 24-byte global header has the same magic (byte order, precision) and link type
/// as [`header`]: records after it can follow ours unchanged.
pub fn compatible_header(h: &[u8]) -> bool {
    let ours = header();
    h.len() == 24 && h[0..4] == ours[0..4] && h[20..24] == ours[20..24]
}

/// One record: capture time (nanoseconds since the epoch, written as microseconds) and frame.
pub fn record(epoch_nanos: i128, frame: &[u8]) -> Vec<u8> {
    let micros = epoch_nanos.max(0) / 1000;
    let secs = u32::try_from(micros / 1_000_000).unwrap_or(u32::MAX);
    let frac = u32::try_from(micros % 1_000_000).unwrap_or(0);
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let mut r = Vec::with_capacity(16 + frame.len());
    r.extend_from_slice(&secs.to_ne_bytes());
    r.extend_from_slice(&frac.to_ne_bytes());
    r.extend_from_slice(&len.to_ne_bytes());
    r.extend_from_slice(&len.to_ne_bytes());
    r.extend_from_slice(frame);
    r
}

/// The frame the IDS puts first into tshark's input to know tshark is ready: 60 bytes,
/// ethertype 0x88b5 (local experimental), no IP: no rule can match it.
pub fn canary() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[6..12].copy_from_slice(&[0x02, 0x4c, 0x32, 0x49, 0x44, 0x53]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..29].copy_from_slice(b"l2sm-ids canary");
    f
}
