//! `l2sm-bench cold-start`: controller spawn -> serving (the API answers and the OpenFlow
//! port accepts), several runs, with an empty state and with a loaded one.

use crate::scenario::{Cluster, ClusterSpec, Shape};
use crate::util::{median, ms, ControllerSpec, ScratchDir};
use std::path::Path;
use std::time::{Duration, Instant};

/// Result of the cold-start benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColdReport {
    /// Runs per state.
    pub runs: usize,
    /// Empty state: median spawn -> serving, ms.
    pub empty_p50_ms: f64,
    /// Empty state: every run, ms.
    pub empty_ms: Vec<f64>,
    /// Memberships in the loaded state.
    pub loaded_memberships: usize,
    /// Loaded state (networks and memberships): median spawn -> serving, ms.
    pub loaded_p50_ms: f64,
    /// Loaded state: every run, ms.
    pub loaded_ms: Vec<f64>,
}

async fn runs(spec: &ControllerSpec, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        let mut c = spec.spawn()?;
        let at = c.wait_serving(Duration::from_secs(10)).await?;
        out.push(ms(at.duration_since(t0)));
        c.stop();
    }
    Ok(out)
}

/// Runs the benchmark; the loaded state has `networks` networks and 4 ports on each of
/// `switches` switches.
pub async fn run(
    l2sm: &Path,
    n: usize,
    switches: usize,
    networks: usize,
) -> anyhow::Result<ColdReport> {
    let dir = ScratchDir::new("cold")?;
    let empty = ControllerSpec::new(l2sm, &dir.0.join("empty"), None)?;
    std::fs::create_dir_all(dir.0.join("empty"))?;
    let empty_ms = runs(&empty, n).await?;

    let cluster = Cluster::generate(&ClusterSpec {
        switches,
        networks,
        ports_per_switch: 4,
        shape: Shape::Sparse,
        trunks: false,
    })?;
    std::fs::create_dir_all(dir.0.join("loaded"))?;
    let topo = dir.0.join("loaded/topology.json");
    std::fs::write(&topo, cluster.topology_file().to_json())?;
    let loaded = ControllerSpec::new(l2sm, &dir.0.join("loaded"), Some(topo))?;
    {
        let mut c = loaded.spawn()?;
        c.wait_serving(Duration::from_secs(10)).await?;
        cluster.feed(c.api()?, 1000, 4).await?;
        c.stop();
    }
    let loaded_ms = runs(&loaded, n).await?;
    Ok(ColdReport {
        runs: n,
        empty_p50_ms: median(&empty_ms),
        empty_ms,
        loaded_memberships: cluster.membership_count(),
        loaded_p50_ms: median(&loaded_ms),
        loaded_ms,
    })
}
