//! Benchmarks of the L2S-M controller (see docs/benchmarks-controller.md): synthetic OpenFlow
//! switches at scale, real Open vSwitch bridges, flow programming rate next to
//! `ovs-ofctl add-flows`, and cold start. The controller always runs as its own process, so
//! its memory and CPU time are its own.

pub mod api;
pub mod cold;
pub mod convergence;
pub mod monitoring;
pub mod ovs;
pub mod real;
pub mod scenario;
pub mod store;
pub mod synth;
pub mod tls;
pub mod util;
