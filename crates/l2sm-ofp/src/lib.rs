//! OpenFlow 1.3 for L2S-M, without I/O: the codec (message types, `encode`, `decode`) and
//! the [`session`] state machine of one controller connection.
//!
//! ```text
//!   OfpMessage { xid, body: Message }  --encode-->  bytes (ofp_header + body, version 0x04)
//!   bytes (exactly one message)        --decode-->  OfpMessage
//!   stream buffer  --message_len / peek_header-->  where the next message ends
//!   socket bytes + clock  --session::Session-->  events + bytes to send
//! ```
//!
//! Scope: every message of the OpenFlow Switch Specification 1.3.5 (OFPT_HELLO to
//! OFPT_METER_MOD, every multipart type; TABLE_FEATURES bodies stay opaque), every
//! OpenFlow-basic OXM field plus the Nicira registers, the instructions of §7.2.4, the
//! actions the pipeline uses plus the Nicira `resubmit` and `learn` extensions in OVS's
//! exact wire format, and the typed error codes of §7.4.4 ([`ErrorCode`]). Whatever else
//! arrives is kept as raw bytes (`Other`/`Experimenter` variants) and re-encodes byte for
//! byte, so a switch speaking a little more than we model never breaks a session.
//!
//! Panic contract: [`decode`] never panics, whatever the input; every malformed input is
//! a [`DecodeError`] that names the structure at fault. [`encode`] never panics either;
//! values OpenFlow 1.3 cannot carry are an [`EncodeError`]. All offsets into untrusted
//! bytes go through one bounds-checked reader (`wire.rs`). The same holds for
//! [`session::Session::feed`]: malformed input closes the session with a typed reason.

#![warn(clippy::unwrap_used)] // input paths answer with errors; tests may unwrap

mod action;
mod error;
mod group_mod;
mod header;
mod instruction;
mod message;
mod meter_mod;
mod multipart;
mod nicira;
mod ofp_error;
mod oxm;
mod port_desc;
mod queue_config;
pub mod session;
mod types;
mod wire;

pub use action::OFPCML_NO_BUFFER;
pub use error::{DecodeError, EncodeError};
pub use header::{message_len, peek_header, Header, HEADER_LEN};
pub use message::{decode, encode, encode_into};
pub use meter_mod::{OFPMF_BURST, OFPMF_KBPS, OFPMF_PKTPS, OFPMF_STATS};
pub use nicira::{
    immediate_bytes, nxm_field_bits, NX_LEARN_F_DELETE_LEARNED, NX_LEARN_F_SEND_FLOW_REM,
    NX_LEARN_F_WRITE_RESULT, NX_RESUBMIT_IN_PORT, NX_VENDOR_ID,
};
pub use ofp_error::{
    BadActionCode, BadInstructionCode, BadMatchCode, BadRequestCode, ErrorCode, ErrorType,
    FlowModFailedCode, GroupModFailedCode, HelloFailedCode, MeterModFailedCode, PortModFailedCode,
    QueueOpFailedCode, RoleRequestFailedCode, SwitchConfigFailedCode, TableFeaturesFailedCode,
    TableModFailedCode,
};
pub use oxm::{OFPVID_PRESENT, OXM_CLASS_NXM_1, OXM_CLASS_OPENFLOW_BASIC};
pub use port_desc::{OFPPC_PORT_DOWN, OFPPS_LINK_DOWN, OFPPS_LIVE};
pub use types::*;
