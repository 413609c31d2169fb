//! A cluster controller's side of `<name>.<network>.inter.l2sm` (docs/dns.md): the names of
//! its pods on networks that reach a provider network (a member port in the edge hop range,
//! 0xD000-0xDFFF) go to the provider controller's DNS update API as one `ReplaceCluster`
//! call: after every model change (debounced by [`DEBOUNCE`]) when the set changed, and every
//! [`REFRESH`] whatever happened (a restarted provider, which keeps them in memory only,
//! refills within one period). A detach leaves the set, so the name goes with the next call.

use crate::dns::grpc::{DnsEntry, Method, ReplaceCluster};
use crate::dns::{valid_label, INTER_SCOPE, MAX_CLUSTER_ENTRIES};
use crate::model::Model;
use crate::Shared;
use l2sm_ned::client::EdgeClient;
use l2sm_pipeline::ids::{FIRST_EDGE_HOP_PORT, MAX_EDGE_HOP_ID};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Quiet time after a model change before the set is sent (an attach is two changes).
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// The set is sent at least this often.
pub const REFRESH: Duration = Duration::from_secs(5);
/// Bound of one call (connecting included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to reach the provider's DNS update API.
#[derive(Clone)]
pub struct Target {
    /// The update API's address.
    pub addr: SocketAddr,
    /// This cluster's name (a DNS label).
    pub cluster: String,
    /// TLS client configuration (`None`: cleartext HTTP/2, the lab's `--dns-grpc-insecure`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Whether `port` is a cluster-to-edge hop port.
fn is_edge_hop(port: u32) -> bool {
    (FIRST_EDGE_HOP_PORT..=FIRST_EDGE_HOP_PORT + MAX_EDGE_HOP_ID).contains(&port)
}

/// The `inter` names of `model`: for every network with an edge hop member, each pod member's
/// name (the pod name after the slash, lowercase, as for `.l2sm`) with each of its addresses
/// (reported and IPAM-allocated). Names that are not DNS labels are left out; at most
/// [`MAX_CLUSTER_ENTRIES`] (the rest is left out, with a warning from the caller).
pub fn entries(model: &Model) -> Vec<DnsEntry> {
    let mut set: BTreeSet<(String, String, IpAddr)> = BTreeSet::new();
    for (net_name, net) in &model.networks {
        if !net.endpoints.iter().any(|p| is_edge_hop(p.port)) {
            continue;
        }
        let network = net_name.to_ascii_lowercase();
        if !valid_label(&network) {
            continue;
        }
        let mut allocated: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
        if let Some(ipam) = &net.ipam {
            for (addr, owner) in &ipam.allocations {
                allocated.entry(owner.as_str()).or_default().push(*addr);
            }
        }
        for port in &net.endpoints {
            let Some(owner) = model.port_owners.get(port) else {
                continue;
            };
            let Some(pod) = owner.pod.as_deref() else {
                continue;
            };
            let name = pod.rsplit('/').next().unwrap_or(pod).to_ascii_lowercase();
            if !valid_label(&name) {
                continue;
            }
            let ipam_owner = net.ipam.as_ref().and_then(|i| {
                i.ports
                    .iter()
                    .find(|(_, p)| *p == port)
                    .map(|(o, _)| o.as_str())
            });
            let addrs = owner.ips.iter().chain(
                ipam_owner
                    .and_then(|o| allocated.get(o))
                    .into_iter()
                    .flatten(),
            );
            for ip in addrs {
                set.insert((name.clone(), network.clone(), *ip));
            }
        }
    }
    set.into_iter()
        .take(MAX_CLUSTER_ENTRIES)
        .map(|(pod_name, network, ip)| DnsEntry {
            pod_name,
            ip_address: ip.to_string(),
            network,
            scope: INTER_SCOPE.into(),
        })
        .collect()
}

async fn send(target: &Target, entries: &[DnsEntry]) -> Result<(), l2sm_ned::client::ClientError> {
    let mut client = match &target.tls {
        None => EdgeClient::connect_h2c(target.addr, CALL_TIMEOUT).await?,
        Some(tls) => {
            EdgeClient::connect_tls(
                target.addr,
                &target.addr.ip().to_string(),
                tls.clone(),
                CALL_TIMEOUT,
            )
            .await?
        }
    };
    let request = ReplaceCluster {
        cluster: target.cluster.clone(),
        entries: entries.to_vec(),
    };
    client
        .unary_raw(Method::ReplaceCluster.path(), request.encode())
        .await
        .map(|_| ())
}

/// Runs forever: sends the set after changes and every [`REFRESH`].
pub async fn run(shared: Arc<Shared>, target: Target) {
    let mut changes = shared.subscribe();
    let mut sent: Option<Vec<DnsEntry>> = None;
    let mut last_send = tokio::time::Instant::now();
    loop {
        let set = shared.with_model(entries);
        let due = last_send.elapsed() >= REFRESH;
        if sent.as_ref() != Some(&set) || due {
            last_send = tokio::time::Instant::now();
            match send(&target, &set).await {
                Ok(()) => {
                    if sent.as_ref() != Some(&set) {
                        tracing::info!(
                            provider = %target.addr,
                            entries = set.len(),
                            "inter.l2sm names sent to the provider"
                        );
                    }
                    sent = Some(set);
                }
                Err(e) => {
                    tracing::warn!(provider = %target.addr, "cannot send inter.l2sm names: {e}");
                    // Retry soon, not at the next change only.
                    sent = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let wait = REFRESH.saturating_sub(last_send.elapsed());
        match tokio::time::timeout(wait, changes.changed()).await {
            Ok(Ok(())) => {
                // Debounce: changes that follow within DEBOUNCE go into the same call.
                tokio::time::sleep(DEBOUNCE).await;
                changes.borrow_and_update();
            }
            // The model's sender is gone (shutting down): refresh only.
            Ok(Err(_)) => tokio::time::sleep(wait).await,
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{self, Name};
    use crate::dns::Zones;
    use crate::model::PortOwner;
    use crate::store::Store;
    use l2sm_ned::grpc::Code;
    use l2sm_pipeline::ids::PortId;

    fn port(dpid: u64, port: u32) -> PortId {
        PortId { dpid, port }
    }

    fn owner(pod: &str, ips: &[&str]) -> PortOwner {
        PortOwner {
            pod: Some(pod.into()),
            attachment: format!("cni/{pod}/net1"),
            interface: "net1".into(),
            mac: None,
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            port_security: None,
        }
    }

    fn shared() -> (Arc<Shared>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (Shared::new(store, Duration::from_secs(1)).unwrap(), dir)
    }

    /// The addresses `name` has in `zones` (A and AAAA), empty when none or NXDOMAIN.
    fn resolve(zones: &Zones, name: &str) -> Vec<String> {
        let q = wire::parse_query(&wire::build_query(
            1,
            &Name::parse(name).unwrap(),
            wire::TYPE_ANY,
            false,
        ))
        .unwrap();
        zones
            .current()
            .answer(&q)
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                wire::RData::Addr(ip) => Some(ip.to_string()),
                _ => None,
            })
            .collect()
    }

    fn entry(pod: &str, ip: &str, network: &str) -> DnsEntry {
        DnsEntry {
            pod_name: pod.into(),
            ip_address: ip.into(),
            network: network.into(),
            scope: "inter".into(),
        }
    }

    /// Only networks with an edge hop member give names; pods only (not the hop port, not a
    /// port without an owner), lowercase pod name after the namespace.
    #[test]
    fn entries_are_the_pods_of_networks_with_an_edge_hop() {
        let mut m = Model::default();
        m.create_network("shared", None).unwrap();
        m.create_network("blue", None).unwrap();
        m.add_ports("shared", &[port(1, 1), port(1, 0xd001), port(2, 3)])
            .unwrap();
        m.add_ports("blue", &[port(1, 2)]).unwrap();
        m.set_owner(port(1, 1), owner("ns/B", &["10.30.0.2", "fd00::2"]))
            .unwrap();
        m.set_owner(port(1, 2), owner("ns/c", &["10.40.0.3"]))
            .unwrap();
        let got: Vec<(String, String, String)> = entries(&m)
            .into_iter()
            .map(|e| {
                assert_eq!(e.scope, "inter");
                (e.pod_name, e.network, e.ip_address)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("b".into(), "shared".into(), "10.30.0.2".into()),
                ("b".into(), "shared".into(), "fd00::2".into()),
            ]
        );
    }

    async fn provider() -> (Arc<Shared>, Arc<Zones>, SocketAddr, tempfile::TempDir) {
        let (shared, dir) = shared();
        shared
            .update(|m| m.create_network("shared", None).map(|_| ()))
            .unwrap();
        let zones = Arc::new(Zones::new(shared.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::dns::grpc::serve(
            listener,
            None,
            zones.clone(),
            crate::dns::grpc::Limits::default(),
        ));
        (shared, zones, addr, dir)
    }

    async fn replace(addr: SocketAddr, cluster: &str, entries: Vec<DnsEntry>) -> Result<(), Code> {
        let mut c = EdgeClient::connect_h2c(addr, CALL_TIMEOUT).await.unwrap();
        let r = ReplaceCluster {
            cluster: cluster.into(),
            entries,
        };
        match c.unary_raw(Method::ReplaceCluster.path(), r.encode()).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.code().unwrap_or_else(|| panic!("not a status: {e}"))),
        }
    }

    /// A cluster controller pushes its pods on a network with an edge hop to the provider:
    /// the name resolves there within 1 s of the attach, is gone within 1 s of the detach.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_names_reach_the_provider_and_leave_on_detach() {
        let (_p, zones, addr, _pd) = provider().await;
        let (cluster, _cd) = shared();
        cluster
            .update(|m| {
                m.create_network("shared", None)?;
                m.add_ports("shared", &[port(1, 0xd000)]).map(|_| ())
            })
            .unwrap();
        tokio::spawn(run(
            cluster.clone(),
            Target {
                addr,
                cluster: "c2".into(),
                tls: None,
            },
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let name = "b.shared.inter.l2sm";
        assert!(resolve(&zones, name).is_empty());
        let t = std::time::Instant::now();
        cluster
            .update(|m| {
                m.add_ports("shared", &[port(1, 5)])?;
                m.set_owner(port(1, 5), owner("default/b", &["10.30.0.2"]))
                    .map(|_| ())
            })
            .unwrap();
        while resolve(&zones, name).is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{name} not served within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("attach -> resolvable: {:?}", t.elapsed());
        assert_eq!(resolve(&zones, name), vec!["10.30.0.2"]);
        // And the address has a PTR back to the name.
        let q = wire::parse_query(&wire::build_query(
            2,
            &Name::parse("2.0.30.10.in-addr.arpa").unwrap(),
            wire::TYPE_PTR,
            false,
        ))
        .unwrap();
        let ptrs: Vec<String> = zones
            .current()
            .answer(&q)
            .answers
            .iter()
            .map(|r| format!("{:?}", r.data))
            .collect();
        assert_eq!(ptrs.len(), 1, "{ptrs:?}");
        assert!(
            ptrs[0].contains("\"b\", \"shared\", \"inter\", \"l2sm\""),
            "{ptrs:?}"
        );
        let t = std::time::Instant::now();
        cluster
            .update(|m| m.remove_ports("shared", &[port(1, 5)]))
            .unwrap();
        while !resolve(&zones, name).is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{name} still served after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("detach -> gone: {:?}", t.elapsed());
    }

    /// Bad `ReplaceCluster` calls are refused with a status and change nothing: another
    /// cluster's name, too many entries, an invalid address, a name too long, a scope other
    /// than `inter`, a bad cluster name. A network the provider does not hold is not served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_replace_calls_are_refused_and_change_nothing() {
        let (_p, zones, addr, _pd) = provider().await;
        replace(addr, "c1", vec![entry("a", "10.30.0.1", "shared")])
            .await
            .unwrap();
        replace(addr, "c2", vec![entry("b", "10.30.0.2", "shared")])
            .await
            .unwrap();
        let before = (zones.cluster_names("c1"), zones.cluster_names("c2"));
        let good = entry("b2", "10.30.0.3", "shared");
        let long = "x".repeat(64);
        let cases: Vec<(&str, Vec<DnsEntry>, Code)> = vec![
            // c1 claims c2's name (with one of its own): refused whole.
            (
                "c1",
                vec![good.clone(), entry("b", "10.30.0.9", "shared")],
                Code::FailedPrecondition,
            ),
            (
                "c2",
                (0..=crate::dns::MAX_CLUSTER_ENTRIES)
                    .map(|i| entry(&format!("p{i}"), "10.30.0.5", "shared"))
                    .collect(),
                Code::InvalidArgument,
            ),
            (
                "c2",
                vec![good.clone(), entry("b", "10.30.0.256", "shared")],
                Code::InvalidArgument,
            ),
            (
                "c2",
                vec![good.clone(), entry(&long, "10.30.0.4", "shared")],
                Code::InvalidArgument,
            ),
            (
                "c2",
                vec![good.clone(), entry("b", "10.30.0.4", &long)],
                Code::InvalidArgument,
            ),
            (
                "c2",
                vec![DnsEntry {
                    scope: "other".into(),
                    ..good.clone()
                }],
                Code::InvalidArgument,
            ),
            ("C2", vec![good.clone()], Code::InvalidArgument),
            ("", vec![good.clone()], Code::InvalidArgument),
        ];
        for (cluster, entries, code) in cases {
            let n = entries.len();
            assert_eq!(
                replace(addr, cluster, entries).await,
                Err(code),
                "cluster {cluster:?}, {n} entries"
            );
            assert_eq!(
                (zones.cluster_names("c1"), zones.cluster_names("c2")),
                before
            );
            assert!(resolve(&zones, "b2.shared.inter.l2sm").is_empty());
        }
        assert_eq!(resolve(&zones, "a.shared.inter.l2sm"), vec!["10.30.0.1"]);
        assert_eq!(resolve(&zones, "b.shared.inter.l2sm"), vec!["10.30.0.2"]);
        // A cluster replaces only its own set: c2's empty set leaves c1's names.
        replace(addr, "c2", vec![]).await.unwrap();
        assert!(resolve(&zones, "b.shared.inter.l2sm").is_empty());
        assert_eq!(resolve(&zones, "a.shared.inter.l2sm"), vec!["10.30.0.1"]);
        // Now that c2 gave it up, c1 may take b.
        replace(addr, "c1", vec![entry("b", "10.30.0.7", "shared")])
            .await
            .unwrap();
        assert_eq!(resolve(&zones, "b.shared.inter.l2sm"), vec!["10.30.0.7"]);
        assert!(resolve(&zones, "a.shared.inter.l2sm").is_empty());
        // A network the provider does not hold: accepted, never served.
        replace(addr, "c2", vec![entry("z", "10.30.0.8", "elsewhere")])
            .await
            .unwrap();
        assert!(resolve(&zones, "z.elsewhere.inter.l2sm").is_empty());
    }

    /// Over TLS, a cluster's names may be replaced only by a certificate naming that cluster
    /// (`urn:l2sm:cluster:<name>`): another cluster's certificate, or one naming none, is
    /// refused and changes nothing; cleartext (`--dns-grpc-insecure`) is not checked.
    #[test]
    fn only_the_certificate_of_a_cluster_replaces_its_names() {
        use crate::dns::grpc::{call_as, Caller};
        let (shared, _d) = shared();
        shared
            .update(|m| m.create_network("shared", None).map(|_| ()))
            .unwrap();
        let zones = Zones::new(shared.clone());
        let request = |cluster: &str, ip: &str| {
            ReplaceCluster {
                cluster: cluster.into(),
                entries: vec![entry("b", ip, "shared")],
            }
            .encode()
        };
        let c1 = Caller::Certificate {
            cluster: Some("c1".into()),
        };
        call_as(
            &zones,
            &c1,
            Method::ReplaceCluster,
            &request("c1", "10.30.0.2"),
        )
        .unwrap();
        let before = zones.cluster_names("c1");
        assert!(!before.is_empty());
        for caller in [
            Caller::Certificate {
                cluster: Some("c2".into()),
            },
            Caller::Certificate { cluster: None },
        ] {
            let e = call_as(
                &zones,
                &caller,
                Method::ReplaceCluster,
                &request("c1", "10.30.0.66"),
            )
            .unwrap_err();
            assert_eq!(e.code, Code::PermissionDenied, "{caller:?}: {e:?}");
            assert_eq!(
                zones.cluster_names("c1"),
                before,
                "{caller:?} changed c1's names"
            );
        }
        call_as(
            &zones,
            &Caller::Cleartext,
            Method::ReplaceCluster,
            &request("c1", "10.30.0.3"),
        )
        .unwrap();
        assert_ne!(
            zones.cluster_names("c1"),
            before,
            "cleartext is not checked"
        );
    }
}
