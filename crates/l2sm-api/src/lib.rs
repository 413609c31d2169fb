//! The L2S-M controller's REST contract as types, and one typed client for it.
//!
//! - [`vnets`]: upstream's ONOS "vnets" contract (`/onos/vnets/api`), kept as upstream has it.
//! - [`v1`]: the native API (`/api/v1`): networks with address management, switches, links,
//!   ports, attachments, port owners, moves and programming waits.
//! - [`error`]: the error body every endpoint answers with.
//! - [`picture`]: the topology as Graphviz DOT or SVG, links coloured by health.
//! - [`topology`]: the topology file agents and the controller read, and the lab and the
//!   operator write.
//! - [`client`]: [`ControllerClient`], the one way the agent, the lab, the CLI, the operator
//!   and the benchmarks talk to the controller.
//!
//! The controller serialises these same types, so client and server cannot drift apart.
//!
//! ```no_run
//! use l2sm_api::v1::CreateNetwork;
//! use l2sm_api::{ControllerClient, RetryPolicy};
//!
//! # async fn example() -> Result<(), l2sm_api::ClientError> {
//! let api = ControllerClient::new(
//!     "http://10.0.0.1:8181",
//!     Some(("admin".into(), "secret".into())),
//!     RetryPolicy::default(),
//! )?;
//! let blue = CreateNetwork {
//!     name: "blue".into(),
//!     cidrs: vec!["10.10.0.0/24".parse().expect("a CIDR")],
//!     ..Default::default()
//! };
//! let (created, _view) = api.create_network(&blue).await?;
//! api.add_port("blue", "of:a30b6e801ab54336/3").await?;
//! for network in api.networks().await? {
//!     println!("{} vni {} ports {:?} (created now: {created})", network.name, network.vni, network.endpoints);
//! }
//! # Ok(())
//! # }
//! ```

#![warn(clippy::unwrap_used)] // input paths answer with errors; tests may unwrap

pub mod client;
pub mod error;
pub mod picture;
pub mod topology;
pub mod v1;
pub mod vnets;

pub use client::{
    ClientError, ControllerClient, CreateOutcome, RetryPolicy, TlsOptions, POOL_IDLE_TIMEOUT,
};
pub use error::ErrorBody;
