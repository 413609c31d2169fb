//! Network namespaces and netlink link setup for L2S-M's emulated nodes and pods.
//!
//! Each emulated node and pod is a named network namespace under [`NETNS_DIR`], compatible with
//! `ip netns`, so operators can inspect them with the usual tools. This crate creates and
//! deletes those namespaces and configures links in them (veth pairs, addresses, routes,
//! bridges, MTU, MAC, TX checksum offload) through netlink and syscalls only; it never runs `ip`.
//!
//! # Threads
//!
//! `setns(2)` changes the namespace of the calling *thread* only. Callers are often tokio workers
//! shared with unrelated tasks, so this crate never calls `setns` on a caller's thread: every
//! namespace-bound operation runs on a short-lived thread it spawns ([`run_in_netns`],
//! [`with_netlink`], [`set_sysctl`]), which exits afterwards, so nothing has to be restored.
//! Sockets opened there stay in that namespace after the thread exits. From async code, call
//! these functions inside `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! # fn main() -> l2sm_netns::Result<()> {
//! let node = l2sm_netns::create_named("l2s-demo-n1")?;
//! let pod = l2sm_netns::create_named("l2s-demo-p1")?;
//! let pod2 = pod.clone();
//! l2sm_netns::with_netlink(&node, move |nl| {
//!     nl.create_veth("vpod1", "net1", Some(&pod2), Some(1450))?;
//!     nl.set_up("vpod1")
//! })?;
//! l2sm_netns::with_netlink(&pod, |nl| {
//!     nl.add_address("net1", "10.200.0.11/24".parse().expect("valid"))?;
//!     nl.set_up("net1")
//! })?;
//! # Ok(()) }
//! ```

#![warn(clippy::unwrap_used)] // input paths answer with errors; tests may unwrap

mod error;
mod ethtool;
mod netlink;
mod ns;

pub use error::{Error, Result};
pub use netlink::{with_netlink, Netlink};
pub use ns::{
    create_named, delete_named, get_sysctl, list_named, netns_inode, pids_in_netns, run_in_netns,
    set_sysctl, Netns, NETNS_DIR,
};
