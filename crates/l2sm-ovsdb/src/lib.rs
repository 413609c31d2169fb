//! OVSDB (RFC 7047) for L2S-M: the JSON-RPC protocol as plain data, plus a small async
//! client for the unix socket of `ovsdb-server`.
//!
//! Talking to the database directly instead of running `ovs-vsctl` saves a process per
//! change and lets one transaction do what needs several `ovs-vsctl` invocations, with a
//! typed error for the operation that failed.
//!
//! * [`Operation`], [`Condition`], [`Mutation`], [`OpResult`]: `transact` requests and
//!   results (RFC 7047 §5.2, §4.1.3), no I/O.
//! * [`datum`]: the tagged value notation of §5.1 (`["set", ...]`, `["uuid", ...]`).
//! * [`Schema`]: `get_schema` results (§3.2), to check columns exist before using them.
//! * [`Client`]: requests, monitors, and the `echo` keepalive (§4.1).
//! * [`vswitch`]: Open_vSwitch database helpers (`next_cfg`/`cur_cfg` handshake).

#![warn(clippy::unwrap_used)] // input paths answer with errors; tests may unwrap

pub mod client;
pub mod datum;
mod error;
mod framing;
pub mod ops;
pub mod schema;
pub mod vswitch;

pub use client::{Client, DEFAULT_TIMEOUT};
pub use error::Error;
pub use ops::{Condition, Mutation, OpResult, Operation, Row};
pub use schema::{Schema, TableSchema};
