//! The benchmark harness (`l2sm-bench`) at small scale, as correctness checks without timing
//! assertions: synthetic switches receive exactly the flows and groups the pipeline compiler
//! gives for their view, with no churn, and a controller restart sends nothing to switches that
//! already hold their state; real OVS bridges converge and `ovs-ofctl` reloads the very flows
//! the controller programmed.

use l2sm_bench::scenario::{ClusterSpec, Shape};
use l2sm_bench::{convergence, real};
use std::path::PathBuf;
use std::time::Duration;

fn l2sm() -> PathBuf {
    l2sm_test_support::bin::l2sm()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn synthetic_switches_get_exactly_their_pipeline_and_a_restart_sends_nothing() {
    // The synthetic switches over plain TCP and over TLS (a certificate per switch).
    for (shape, tls) in [
        (Shape::Sparse, false),
        (Shape::Mesh, false),
        (Shape::Sparse, true),
    ] {
        let opts = convergence::SynthOptions {
            cluster: ClusterSpec {
                switches: 20,
                networks: 2,
                ports_per_switch: 3,
                shape,
                trunks: false,
            },
            l2sm: l2sm(),
            batch: 1,
            concurrency: 4,
            timeout: Duration::from_secs(60),
            settle: Duration::from_millis(500),
            restart: true,
            tls,
        };
        let r = rt().block_on(convergence::run(&opts)).unwrap();
        assert!(
            r.start.converged,
            "{shape:?} tls {tls}: {} of 20 switches converged",
            r.start.converged_switches
        );
        assert!(r.expected_flows > 20 * 10, "{shape:?}: {r:?}");
        assert_eq!(
            (r.start.flow_mods, r.start.group_mods),
            (r.expected_flows as u64, r.expected_groups as u64),
            "{shape:?}: every switch gets each flow and group once"
        );
        // Flushes of learned MACs come only from trees changing while switches joined: at
        // most one per network and switch each time, never in a mesh.
        assert!(
            r.start.learned_flushes <= 20 * 2 * 20,
            "{shape:?}: {} flushes",
            r.start.learned_flushes
        );
        let restart = r.restart.expect("restart measured");
        assert!(restart.converged, "{shape:?}: switches reconnected");
        assert_eq!(
            restart.mods_after_convergence, 0,
            "{shape:?}: nothing re-sent, nothing flushed"
        );
    }
}

#[test]
fn ovs_bridges_converge_and_ofctl_reloads_the_same_flows() {
    let spec = ClusterSpec {
        switches: 6,
        networks: 2,
        ports_per_switch: 2,
        shape: Shape::Ring,
        trunks: true,
    };
    let r = rt()
        .block_on(real::bridges(&l2sm(), &spec, Duration::from_secs(60)))
        .unwrap();
    assert_eq!(r.converged_bridges, 6, "{r:?}");
    // flow_rate checks itself that ovs-ofctl loaded exactly the controller's flows and groups.
    let r = rt().block_on(real::flow_rate(&l2sm(), 1000)).unwrap();
    let fixed = l2sm_pipeline::compile(&Default::default()).flows.len();
    // Classifier, learn rule, known unicast, excess drop and metered flood per member.
    assert_eq!(r.flows, 5 * r.memberships + 2 * r.networks + fixed, "{r:?}");
}

/// The REST latency benchmark: every request of every case answers 2xx (a failed request fails
/// the run), both transports are measured in each case with their ratio, TLS connections after
/// the first resume their session unless resumption is off, and writes leave the state as it
/// was (attach/detach pairs).
#[test]
fn api_benchmark_measures_plain_and_tls_in_every_case() {
    let opts = l2sm_bench::api::ApiOptions {
        l2sm: l2sm(),
        requests: 40,
        concurrency: 2,
        rounds: 2,
        cluster: ClusterSpec {
            switches: 10,
            networks: 3,
            ports_per_switch: 2,
            shape: Shape::Sparse,
            trunks: false,
        },
        plain: true,
        tls: true,
    };
    let r = rt().block_on(l2sm_bench::api::run(&opts)).unwrap();
    assert_eq!(r.memberships, 20);
    // The read lists every member port.
    assert!(
        r.read_bytes > 20 * 20,
        "read answer of {} bytes",
        r.read_bytes
    );
    assert_eq!(r.results.len(), 3 * 2 * 2, "{:?}", r.results);
    assert_eq!(r.ratios.len(), 3 * 2, "{:?}", r.ratios);
    for x in &r.results {
        assert!(x.requests >= 40, "{x:?}");
        assert!(
            x.p50_ms > 0.0 && x.p50_ms <= x.p99_ms && x.p99_ms <= x.max_ms,
            "{x:?}"
        );
        match (x.connection, x.transport) {
            ("keepalive", _) => assert!(x.connections <= 2 * 2, "{x:?}"),
            (_, _) => assert_eq!(x.connections, x.requests, "{x:?}"),
        }
        match (x.connection, x.transport) {
            (_, "plain") | ("new-full", _) => assert_eq!(x.resumed, 0, "{x:?}"),
            ("new", "tls") => assert!(x.resumed >= x.requests - 2, "{x:?}"),
            _ => {}
        }
    }
    assert!(r
        .ratios
        .iter()
        .all(|x| x.p50.is_finite() && x.p99.is_finite()));
}

/// The store benchmark runs both backends against a real etcd and takes every sample (a
/// failed write fails the run), with sane numbers.
#[test]
fn store_benchmark_measures_redb_and_etcd() {
    let opts = l2sm_bench::store::StoreOptions {
        l2sm: l2sm(),
        etcd: "etcd".into(),
        requests: 40,
        rounds: 2,
    };
    let r = rt().block_on(l2sm_bench::store::run(&opts)).unwrap();
    for l in [&r.redb, &r.etcd] {
        assert_eq!(l.samples, 40, "{r:?}");
        assert!(
            l.p50_ms > 0.0 && l.p50_ms <= l.p99_ms && l.p99_ms <= l.max_ms,
            "{r:?}"
        );
    }
    assert!(r.ratio_p50.is_finite() && r.ratio_p50 > 0.0, "{r:?}");
    assert!(r.etcd_version.contains("etcd"), "{r:?}");
}
