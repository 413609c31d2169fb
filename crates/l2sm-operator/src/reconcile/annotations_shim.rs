//! Stand-in for op-api's `annotations` module until it is merged (same function names).
use kube::api::DynamicObject;

/// One requested network.
pub struct Requested {
    /// Network name.
    pub name: String,
}

/// `l2sm/networks` parser stand-in: JSON list of objects with `name`, else comma list.
pub fn parse_networks(v: &str) -> Result<Vec<Requested>, String> {
    #[derive(serde::Deserialize)]
    struct E {
        name: String,
    }
    if let Ok(list) = serde_json::from_str::<Vec<E>>(v) {
        return Ok(list.into_iter().map(|e| Requested { name: e.name }).collect());
    }
    Ok(v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Requested { name: s.to_string() })
        .collect())
}

/// NAD name of a network.
pub fn nad_name(network: &str) -> String {
    format!("l2sm-{network}")
}

/// The NAD of a network in a namespace.
pub fn nad_for_network(network: &str, namespace: &str) -> DynamicObject {
    let mut obj = DynamicObject::new(&nad_name(network), &crate::reconcile::l2network::nad_resource())
        .within(namespace);
    let config = serde_json::json!({
        "cniVersion": "1.0.0", "name": nad_name(network), "type": "l2sm", "network": network,
        "capabilities": {"ips": true, "mac": true}
    });
    obj.data = serde_json::json!({"spec": {"config": config.to_string()}});
    obj
}
