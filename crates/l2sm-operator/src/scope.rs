//! Network scoping (`--network-scope`): which namespaces may use an L2Network.
//!
//! `global` (the default) is upstream's behaviour: network names are global, and a pod of any
//! namespace may join any L2Network by name. `namespace` limits an L2Network to pods of its
//! own namespace and of the namespaces its [`ALLOWED_NAMESPACES_ANNOTATION`] lists (`*`: every
//! namespace). The webhook refuses other pods, and the L2Network reconciler writes the
//! network's NetworkAttachmentDefinition only into namespaces that may use it (so a pod that
//! bypassed the webhook finds no NAD for it).

use std::collections::BTreeMap;

/// Annotation on an L2Network listing the other namespaces whose pods may use it with
/// `--network-scope namespace`: comma-separated namespace names, or `*` for every namespace.
pub const ALLOWED_NAMESPACES_ANNOTATION: &str = "l2sm.l2sm.k8s.local/allowed-namespaces";

/// Which namespaces may use an L2Network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetworkScope {
    /// Every namespace (upstream's behaviour).
    #[default]
    Global,
    /// The network's own namespace and those listed in [`ALLOWED_NAMESPACES_ANNOTATION`].
    Namespace,
}

impl std::str::FromStr for NetworkScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "global" => Ok(NetworkScope::Global),
            "namespace" => Ok(NetworkScope::Namespace),
            other => Err(format!(
                "network scope {other:?} is neither `global` nor `namespace`"
            )),
        }
    }
}

/// The namespaces listed in an L2Network's annotations (trimmed, empty entries dropped).
pub fn allowed_namespaces(annotations: Option<&BTreeMap<String, String>>) -> Vec<String> {
    annotations
        .and_then(|a| a.get(ALLOWED_NAMESPACES_ANNOTATION))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether pods of `pod_namespace` may use the L2Network of `network_namespace` that lists
/// `allowed` (pure).
pub fn may_use(
    scope: NetworkScope,
    network_namespace: &str,
    allowed: &[String],
    pod_namespace: &str,
) -> bool {
    match scope {
        NetworkScope::Global => true,
        NetworkScope::Namespace => {
            network_namespace == pod_namespace
                || allowed.iter().any(|a| a == "*" || a == pod_namespace)
        }
    }
}

/// Why a pod of `pod_namespace` may not use network `name` of `network_namespace`.
pub fn refusal(name: &str, network_namespace: &str, pod_namespace: &str) -> String {
    format!(
        "L2Network {name:?} of namespace {network_namespace:?} may not be used from namespace \
         {pod_namespace:?} (network scope `namespace`: list {pod_namespace:?} in its \
         annotation {ALLOWED_NAMESPACES_ANNOTATION} to allow it)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_rules() {
        let ann = BTreeMap::from([(
            ALLOWED_NAMESPACES_ANNOTATION.to_string(),
            " b, ,c ".to_string(),
        )]);
        let allowed = allowed_namespaces(Some(&ann));
        assert_eq!(allowed, ["b", "c"]);
        use NetworkScope::*;
        assert!(may_use(Global, "a", &[], "z"));
        assert!(may_use(Namespace, "a", &[], "a"));
        assert!(!may_use(Namespace, "a", &[], "z"));
        assert!(may_use(Namespace, "a", &allowed, "c"));
        assert!(!may_use(Namespace, "a", &allowed, "bc"));
        assert!(may_use(Namespace, "a", &["*".into()], "z"));
        assert_eq!("namespace".parse(), Ok(Namespace));
        assert!("Namespace".parse::<NetworkScope>().is_err());
        assert!(refusal("blue", "a", "z").contains(ALLOWED_NAMESPACES_ANNOTATION));
    }
}
