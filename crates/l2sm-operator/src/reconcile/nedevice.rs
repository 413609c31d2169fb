//! NetworkEdgeDevice: served and validated; inter-cluster edge devices are not implemented
//! yet, and the status says so instead of pretending (upstream never writes this status).

use super::{now, patch_status, tracked, Context, Result};
use crate::crd::{
    condition, set_condition, ConnectivityStatus, NetworkEdgeDevice, NetworkEdgeDeviceSpec,
    NetworkEdgeDeviceStatus, CONDITION_READY,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;

use std::sync::Arc;

/// Checks what the spec must hold for an edge device to work once implemented.
pub fn validate(spec: &NetworkEdgeDeviceSpec) -> Result<(), String> {
    if spec.provider.name.trim().is_empty() {
        return Err("spec.provider.name is empty".into());
    }
    if spec.provider.domain.iter().all(|d| d.trim().is_empty()) {
        return Err("spec.provider.domain names no controller address".into());
    }
    if let Some(nc) = &spec.node_config {
        if nc.node_name.trim().is_empty() {
            return Err("spec.nodeConfig.nodeName is empty".into());
        }
        if nc.ip_address.parse::<std::net::IpAddr>().is_err() {
            return Err(format!(
                "spec.nodeConfig.ipAddress {:?} is not an IP address",
                nc.ip_address
            ));
        }
    }
    for (i, n) in spec.neighbors.iter().flatten().enumerate() {
        if n.node.trim().is_empty() || n.domain.trim().is_empty() {
            return Err(format!("spec.neighbors[{i}] needs both node and domain"));
        }
    }
    if spec.monitor.is_some()
        && spec
            .monitor
            .as_ref()
            .and_then(|m| m.ip_cidr.as_ref())
            .is_none()
    {
        return Err("spec.monitor needs ipCIDR on a NetworkEdgeDevice".into());
    }
    Ok(())
}

/// The status: availability stays `Unavailable`; `Ready` is False, saying why.
pub fn compute_status(
    old: Option<&NetworkEdgeDeviceStatus>,
    generation: Option<i64>,
    validation: &Result<(), String>,
    now: Time,
) -> NetworkEdgeDeviceStatus {
    let mut status = old.cloned().unwrap_or_default();
    status.availability = ConnectivityStatus::Unavailable;
    let (reason, message) = match validation {
        Ok(()) => (
            "NotImplemented",
            "the spec is valid; network edge devices (inter-cluster links) are not implemented \
             yet, so nothing is deployed"
                .to_string(),
        ),
        Err(e) => ("InvalidSpec", e.clone()),
    };
    set_condition(
        &mut status.conditions,
        condition(CONDITION_READY, "False", reason, message, generation, now),
    );
    status
}

/// Reconciles one NetworkEdgeDevice (no finalizer: nothing is created).
pub async fn reconcile(ned: Arc<NetworkEdgeDevice>, ctx: Arc<Context>) -> Result<Action> {
    tracked(&*ned, &ctx, async {
        let st = compute_status(
            ned.status.as_ref(),
            ned.metadata.generation,
            &validate(&ned.spec),
            now(),
        );
        // Server-side apply, as every status write: keys it stopped reporting go.
        patch_status(&*ned, ned.status.as_ref(), st, &ctx).await?;
        Ok(Action::await_change())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{find_condition, NeighborSpec, NodeConfigSpec, ProviderSpec};

    fn spec() -> NetworkEdgeDeviceSpec {
        NetworkEdgeDeviceSpec {
            provider: ProviderSpec {
                name: "idco".into(),
                domain: vec!["10.0.0.1".into()],
                sdn_port: "30808".into(),
                dns_port: "30053".into(),
                dns_grpc_port: "30818".into(),
                of_port: "6633".into(),
            },
            node_config: Some(NodeConfigSpec {
                node_name: "n1".into(),
                ip_address: "10.0.0.5".into(),
            }),
            neighbors: Some(vec![NeighborSpec {
                node: "remote".into(),
                domain: "10.1.0.5".into(),
                lpm_ip: None,
            }]),
            switch_template: None,
            monitor: None,
        }
    }

    #[test]
    fn valid_spec_says_not_implemented() {
        let st = compute_status(None, Some(1), &validate(&spec()), now());
        let c = find_condition(&st.conditions, CONDITION_READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "NotImplemented")
        );
        assert_eq!(st.availability, ConnectivityStatus::Unavailable);
    }

    #[test]
    fn invalid_specs_are_named() {
        let mut s = spec();
        s.node_config.as_mut().unwrap().ip_address = "nope".into();
        assert!(validate(&s).unwrap_err().contains("ipAddress"));
        let mut s = spec();
        s.neighbors.as_mut().unwrap()[0].domain.clear();
        assert!(validate(&s).unwrap_err().contains("neighbors[0]"));
        let mut s = spec();
        s.provider.domain = vec![];
        let st = compute_status(None, Some(1), &validate(&s), now());
        assert_eq!(
            find_condition(&st.conditions, CONDITION_READY)
                .unwrap()
                .reason,
            "InvalidSpec"
        );
    }
}
