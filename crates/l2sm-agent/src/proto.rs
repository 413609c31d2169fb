//! Async helpers around the agent API client.

use anyhow::anyhow;
pub use l2sm_agent_api::*;
use std::path::PathBuf;
use std::time::Duration;

/// Like [`call`] on a blocking thread, for async callers.
pub async fn call_async(
    socket: PathBuf,
    req: AgentRequest,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    tokio::task::spawn_blocking(move || call(&socket, &req, timeout))
        .await
        .map_err(|e| anyhow!("agent call task failed: {e}"))?
        .map_err(anyhow::Error::from)
}
