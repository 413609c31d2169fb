//! `struct ofp_port` (OpenFlow 1.3.5 §7.2.1), shared by PORT_STATUS and the PORT_DESC
//! multipart reply.
//!
//! ```text
//! | port_no | pad[4] | hw_addr[6] | pad[2] | name[16] | config | state | curr |
//! | advertised | supported | peer | curr_speed | max_speed |          (64 bytes)
//! ```

use crate::error::{DecodeResult, EncodeResult};
use crate::types::PortDesc;
use crate::wire::{decode_cstr, encode_cstr, Reader, Writer};

/// Size of `struct ofp_port`.
pub(crate) const PORT_LEN: usize = 64;
/// `OFP_MAX_PORT_NAME_LEN`, the NUL included.
const PORT_NAME_LEN: usize = 16;

/// `config` bit: the port is administratively down (`OFPPC_PORT_DOWN`).
pub const OFPPC_PORT_DOWN: u32 = 1 << 0;
/// `state` bit: no physical link present (`OFPPS_LINK_DOWN`).
pub const OFPPS_LINK_DOWN: u32 = 1 << 0;
/// `state` bit: the port is live for fast-failover groups (`OFPPS_LIVE`).
pub const OFPPS_LIVE: u32 = 1 << 2;

impl PortDesc {
    /// Whether the port can carry traffic: neither administratively nor physically down.
    pub fn is_up(&self) -> bool {
        self.config & OFPPC_PORT_DOWN == 0 && self.state & OFPPS_LINK_DOWN == 0
    }
}

pub(crate) fn encode_port(w: &mut Writer, p: &PortDesc, ctx: &'static str) -> EncodeResult<()> {
    w.u32(p.port_no);
    w.zeros(4);
    w.bytes(&p.hw_addr);
    w.zeros(2);
    encode_cstr(w, &p.name, PORT_NAME_LEN, ctx, "port name")?;
    for v in [
        p.config,
        p.state,
        p.curr,
        p.advertised,
        p.supported,
        p.peer,
        p.curr_speed,
        p.max_speed,
    ] {
        w.u32(v);
    }
    Ok(())
}

/// Reads one 64-byte `ofp_port`.
pub(crate) fn decode_port(r: &mut Reader<'_>) -> DecodeResult<PortDesc> {
    let mut p = r.sub(PORT_LEN, "ofp_port")?;
    let port_no = p.u32("port port_no")?;
    p.skip(4, "port pad")?;
    let hw_addr = p.array("port hw_addr")?;
    p.skip(2, "port pad2")?;
    let name = decode_cstr(p.take(PORT_NAME_LEN, "port name")?);
    Ok(PortDesc {
        port_no,
        hw_addr,
        name,
        config: p.u32("port config")?,
        state: p.u32("port state")?,
        curr: p.u32("port curr")?,
        advertised: p.u32("port advertised")?,
        supported: p.u32("port supported")?,
        peer: p.u32("port peer")?,
        curr_speed: p.u32("port curr_speed")?,
        max_speed: p.u32("port max_speed")?,
    })
}
