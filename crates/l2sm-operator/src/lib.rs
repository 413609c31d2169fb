//! Kubernetes API surface of L2S-M.
pub mod controller_client;
