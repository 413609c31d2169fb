//! CNI + controller IPAM through the whole stack under concurrency: concurrent ADDs on one
//! network (two nodes) get distinct addresses, a controller restart in the middle loses no
//! allocation (the runtime retries what failed with "try again later"), and the DELs release
//! them all.

mod cni;

use cni::{l2sm_cni, nad, Attach};
use l2sm_test_support::lab::TestLab;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// 100 pods through the whole stack keep this test within a CI budget; the controller's IPAM
/// alone is held to 500 concurrent allocations across a restart in controller_api.rs.
const PODS: usize = 500;
/// Pods are spread over the nodes: the lab's userspace ovs-vswitchd slows down sharply past a
/// couple of hundred ports per bridge.
const NODES: usize = 5;

fn add_until_done(lab: &TestLab, node: &str, pod: &Attach, conf: &serde_json::Value) -> String {
    let start = Instant::now();
    loop {
        let out = l2sm_cni(lab, node, &pod.env("ADD"), conf);
        if out.success {
            let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("result JSON");
            return v["ips"][0]["address"]
                .as_str()
                .expect("an address")
                .to_string();
        }
        // While the controller restarts the plugin answers "try again later" (code 11), and
        // the runtime retries, as kubelet does.
        let err: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        assert_eq!(
            err["code"], 11,
            "ADD of {} failed for another reason: {}",
            pod.pod, out.stdout
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "ADD of {} never succeeded",
            pod.pod
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn concurrent_adds_get_distinct_addresses_across_a_controller_restart() {
    let lab = TestLab::up("cs", NODES);
    lab.ok(&["network", "create", "big", "--cidr", "10.40.0.0/22"]);
    let pods: Vec<Attach> = (0..PODS)
        .map(|i| Attach::new_pod(&lab, &format!("s{i}")))
        .collect();
    let names: Vec<String> = (1..=NODES).map(|k| format!("n{k}")).collect();
    let node_of = |i: usize| names[i % NODES].as_str();
    let confs: Vec<serde_json::Value> = names
        .iter()
        .map(|n| nad("1.0.0", &lab, n, "big", json!({})))
        .collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let addrs: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..20)
            .map(|w| {
                let (pods, confs, lab, done) = (&pods, &confs, &lab, &done);
                s.spawn(move || {
                    (w..PODS)
                        .step_by(20)
                        .map(|i| {
                            let a = add_until_done(lab, node_of(i), &pods[i], &confs[i % NODES]);
                            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            a
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let waiting = Instant::now();
        while done.load(std::sync::atomic::Ordering::SeqCst) < PODS / 2 {
            // Workers that failed stop counting; their panic surfaces at join.
            if waiting.elapsed() > Duration::from_secs(180)
                || workers.iter().all(|w| w.is_finished())
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        lab.ok(&["lab", "restart", "controller"]);
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let distinct: BTreeSet<&String> = addrs.iter().collect();
    assert_eq!(
        (addrs.len(), distinct.len()),
        (PODS, PODS),
        "duplicate addresses handed out"
    );
    let list = lab.ok(&["network", "list"]);
    assert_eq!(list.matches("of:").count(), PODS, "every pod is a member");
    // Pods on both nodes reach each other with their allocated addresses.
    let peer = addrs[1].split('/').next().unwrap().to_string();
    let ns = pods[0].netns_name().to_string();
    l2sm_test_support::wait_until(
        &format!("pod s0 to reach {peer}"),
        Duration::from_secs(30),
        || {
            std::process::Command::new("ip")
                .args([
                    "netns", "exec", &ns, "ping", "-c", "1", "-W", "1", "-q", &peer,
                ])
                .status()
                .is_ok_and(|s| s.success())
        },
    );
    // 500 DELs release everything.
    std::thread::scope(|s| {
        for w in 0..20 {
            let (pods, confs, lab) = (&pods, &confs, &lab);
            s.spawn(move || {
                for i in (w..PODS).step_by(20) {
                    l2sm_cni(lab, node_of(i), &pods[i].env("DEL"), &confs[i % NODES]).silent();
                }
            });
        }
    });
    let list = lab.ok(&["network", "list"]);
    assert_eq!(list.matches("of:").count(), 0, "memberships left after DEL");
    // The controller's allocations are empty again: a new ADD gets the first address.
    let again = add_until_done(&lab, "n1", &pods[0], &confs[0]);
    assert_eq!(again, "10.40.0.1/22");
}
