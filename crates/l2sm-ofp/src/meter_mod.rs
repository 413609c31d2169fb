//! Meters: `struct ofp_meter_mod` and the meter bands (OpenFlow 1.3.5 §7.3.4.4), shared
//! with the METER_CONFIG multipart reply.
//!
//! ```text
//! ofp_meter_mod: | command (16) | flags (16) | meter_id (32) | bands ...            |
//! band header:   | type (16) | len (16) | rate (32) | burst_size (32) | type body... |
//!   drop:        | pad[4] |                                          (16 bytes)
//!   dscp_remark: | prec_level (8) | pad[3] |                         (16 bytes)
//!   experimenter:| experimenter (32) | data ... |                    (16 + data)
//! ```

use crate::action::check_aligned;
use crate::error::{DecodeError, DecodeResult, EncodeResult};
use crate::types::{MeterBand, MeterMod, MeterModCommand};
use crate::wire::{Reader, Writer};

/// Meter flag: rate in kb/s (`OFPMF_KBPS`).
pub const OFPMF_KBPS: u16 = 1 << 0;
/// Meter flag: rate in packets/s (`OFPMF_PKTPS`).
pub const OFPMF_PKTPS: u16 = 1 << 1;
/// Meter flag: use the bands' burst sizes (`OFPMF_BURST`).
pub const OFPMF_BURST: u16 = 1 << 2;
/// Meter flag: collect statistics (`OFPMF_STATS`).
pub const OFPMF_STATS: u16 = 1 << 3;

const OFPMBT_DROP: u16 = 1;
const OFPMBT_DSCP_REMARK: u16 = 2;
const OFPMBT_EXPERIMENTER: u16 = 0xffff;
/// Size of `struct ofp_meter_band_drop` and `ofp_meter_band_dscp_remark`, and the
/// smallest band this codec accepts.
pub(crate) const BAND_LEN: usize = 16;

impl MeterMod {
    /// Adds meter `meter_id` dropping what exceeds `rate_kbps` (no burst, with stats).
    pub fn add_drop(meter_id: u32, rate_kbps: u32) -> Self {
        MeterMod {
            command: MeterModCommand::Add,
            flags: OFPMF_KBPS | OFPMF_STATS,
            meter_id,
            bands: vec![MeterBand::Drop {
                rate: rate_kbps,
                burst_size: 0,
            }],
        }
    }
    /// Deletes meter `meter_id` ([`meter::ALL`](crate::meter::ALL) for every meter).
    pub fn delete(meter_id: u32) -> Self {
        MeterMod {
            command: MeterModCommand::Delete,
            flags: 0,
            meter_id,
            bands: Vec::new(),
        }
    }
}

pub(crate) fn encode_meter_mod(
    w: &mut Writer,
    m: &MeterMod,
    ctx: &'static str,
) -> EncodeResult<()> {
    w.u16(m.command as u16);
    w.u16(m.flags);
    w.u32(m.meter_id);
    encode_bands(w, &m.bands, ctx)
}

pub(crate) fn decode_meter_mod(r: &mut Reader<'_>) -> DecodeResult<MeterMod> {
    let ctx = r.ctx();
    let command = match r.u16("meter_mod command")? {
        0 => MeterModCommand::Add,
        1 => MeterModCommand::Modify,
        2 => MeterModCommand::Delete,
        v => {
            return Err(DecodeError::BadValue {
                context: ctx,
                item: "meter_mod command",
                value: v.into(),
            })
        }
    };
    let flags = r.u16("meter_mod flags")?;
    let meter_id = r.u32("meter_mod meter_id")?;
    let bands = decode_bands(r)?;
    Ok(MeterMod {
        command,
        flags,
        meter_id,
        bands,
    })
}

pub(crate) fn encode_bands(
    w: &mut Writer,
    bands: &[MeterBand],
    ctx: &'static str,
) -> EncodeResult<()> {
    bands.iter().try_for_each(|b| encode_band(w, b, ctx))
}

fn encode_band(w: &mut Writer, b: &MeterBand, ctx: &'static str) -> EncodeResult<()> {
    let start = w.len();
    match b {
        MeterBand::Drop { rate, burst_size } => {
            w.u16(OFPMBT_DROP);
            w.u16(BAND_LEN as u16);
            w.u32(*rate);
            w.u32(*burst_size);
            w.zeros(4);
        }
        MeterBand::DscpRemark {
            rate,
            burst_size,
            prec_level,
        } => {
            w.u16(OFPMBT_DSCP_REMARK);
            w.u16(BAND_LEN as u16);
            w.u32(*rate);
            w.u32(*burst_size);
            w.u8(*prec_level);
            w.zeros(3);
        }
        MeterBand::Experimenter {
            rate,
            burst_size,
            experimenter,
            data,
        } => {
            check_aligned(BAND_LEN + data.len(), ctx, "experimenter meter band")?;
            w.u16(OFPMBT_EXPERIMENTER);
            let len_at = w.placeholder16();
            w.u32(*rate);
            w.u32(*burst_size);
            w.u32(*experimenter);
            w.bytes(data);
            w.patch_len16(len_at, start, ctx, "experimenter meter band")?;
        }
        MeterBand::Other {
            band_type,
            rate,
            burst_size,
            data,
        } => {
            let len = 12 + data.len();
            check_aligned(len, ctx, "meter band")?;
            if len < BAND_LEN {
                return Err(crate::error::EncodeError::Unrepresentable {
                    context: ctx,
                    detail: format!("meter band of {len} bytes is shorter than 16"),
                });
            }
            w.u16(*band_type);
            let len_at = w.placeholder16();
            w.u32(*rate);
            w.u32(*burst_size);
            w.bytes(data);
            w.patch_len16(len_at, start, ctx, "meter band")?;
        }
    }
    Ok(())
}

/// Decodes a band list that fills `r` completely.
pub(crate) fn decode_bands(r: &mut Reader<'_>) -> DecodeResult<Vec<MeterBand>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let mut b = r.tlv(2, BAND_LEN, "meter band")?;
        out.push(decode_band(&mut b)?);
    }
    Ok(out)
}

fn decode_band(b: &mut Reader<'_>) -> DecodeResult<MeterBand> {
    let ctx = b.ctx();
    let band_type = b.u16("meter band type")?;
    let len = usize::from(b.u16("meter band length")?);
    let rate = b.u32("meter band rate")?;
    let burst_size = b.u32("meter band burst_size")?;
    let fixed = |item: &'static str| {
        if len == BAND_LEN {
            Ok(())
        } else {
            Err(DecodeError::WrongLength {
                context: ctx,
                item,
                len,
                expected: BAND_LEN,
            })
        }
    };
    Ok(match band_type {
        OFPMBT_DROP => {
            fixed("drop meter band")?;
            MeterBand::Drop { rate, burst_size }
        }
        OFPMBT_DSCP_REMARK => {
            fixed("dscp_remark meter band")?;
            MeterBand::DscpRemark {
                rate,
                burst_size,
                prec_level: b.u8("dscp_remark prec_level")?,
            }
        }
        OFPMBT_EXPERIMENTER => MeterBand::Experimenter {
            rate,
            burst_size,
            experimenter: b.u32("meter band experimenter")?,
            data: b.rest().to_vec(),
        },
        _ => MeterBand::Other {
            band_type,
            rate,
            burst_size,
            data: b.rest().to_vec(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_have_their_wire_layout() {
        let mut w = Writer::new();
        let bands = [
            MeterBand::Drop {
                rate: 1000,
                burst_size: 10,
            },
            MeterBand::DscpRemark {
                rate: 5,
                burst_size: 0,
                prec_level: 2,
            },
        ];
        encode_bands(&mut w, &bands, "t").unwrap();
        let v = w.into_vec();
        assert_eq!(
            v,
            [
                0, 1, 0, 16, 0, 0, 0x03, 0xe8, 0, 0, 0, 10, 0, 0, 0, 0, //
                0, 2, 0, 16, 0, 0, 0, 5, 0, 0, 0, 0, 2, 0, 0, 0
            ]
        );
        assert_eq!(decode_bands(&mut Reader::new(&v, "t")).unwrap(), bands);
    }

    #[test]
    fn short_or_misaligned_bands_are_rejected() {
        let mut drop8 = vec![0, 1, 0, 8, 0, 0, 0, 1];
        assert_eq!(
            decode_bands(&mut Reader::new(&drop8, "meter_mod"))
                .unwrap_err()
                .to_string(),
            "meter_mod: meter band length 8 is shorter than the 16-byte minimum"
        );
        drop8.extend([0; 16]);
        drop8[3] = 24;
        assert_eq!(
            decode_bands(&mut Reader::new(&drop8, "meter_mod"))
                .unwrap_err()
                .to_string(),
            "meter_mod: drop meter band length 24 differs from the expected 16"
        );
        let odd = MeterBand::Other {
            band_type: 7,
            rate: 0,
            burst_size: 0,
            data: vec![0; 3],
        };
        assert!(encode_bands(&mut Writer::new(), &[odd], "t").is_err());
    }
}
