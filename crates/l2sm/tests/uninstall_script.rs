//! scripts/uninstall.sh against a fake `kubectl` (tests/fake-kubectl/kubectl: a small cluster
//! in a JSON file with finalizer, JSON-patch and CRD-deletion semantics; it fails on any call
//! it does not know). No API server can run here; this checks the order of operations, that
//! nothing is left stuck, that the wait is bounded, idempotency and --dry-run.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const GROUP: &str = "l2sm.l2sm.k8s.local";
const FINALIZER: &str = "l2sm.operator.io/finalizer";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn crd(kind: &str) -> String {
    format!("{kind}.{GROUP}")
}

fn obj(resource: &str, ns: &str, name: &str, finalizers: &[&str], stuck: bool) -> Value {
    json!({"resource": resource, "namespace": ns, "name": name, "finalizers": finalizers,
           "deleting": false, "stuck": stuck})
}

/// A cluster with L2S-M installed: custom resources of every kind, one whose cleanup keeps
/// failing (controller unreachable), a pod that lost its `l2sm` label but kept the finalizer
/// (second in its list, after another controller's), and a pod without it.
fn installed_cluster() -> Value {
    let mut crds = [
        "quarantinepodrequests",
        "l2networks",
        "overlays",
        "networkedgedevices",
    ]
    .map(crd)
    .to_vec();
    crds.push(NAD.to_string()); // Multus's
    json!({
        "installed": true,
        "crds": crds,
        "webhooks": ["mutatingwebhookconfiguration/l2sm-mutating-webhook-configuration"],
        "objects": [
            obj(&crd("quarantinepodrequests"), "default", "q1", &[FINALIZER], false),
            obj(&crd("l2networks"), "default", "blue", &[FINALIZER], false),
            obj(&crd("l2networks"), "team-b", "red", &[FINALIZER], true),
            obj(&crd("overlays"), "default", "overlay-sample", &[FINALIZER], false),
            obj(&crd("networkedgedevices"), "", "ned-1", &[], false),
            obj("pods", "app", "unlabelled", &["example.com/keep", FINALIZER], false),
            obj("pods", "app", "plain", &["example.com/keep"], false),
            nad("team-b", "l2sm-red", true),
            nad("app", "macvlan", false),
        ],
    })
}

const NAD: &str = "network-attachment-definitions.k8s.cni.cncf.io";

/// A NetworkAttachmentDefinition, made by the operator or not.
fn nad(ns: &str, name: &str, ours: bool) -> Value {
    let mut o = obj(NAD, ns, name, &[], false);
    if ours {
        o["labels"] = json!({"app.kubernetes.io/managed-by": "l2sm-operator"});
    }
    o
}

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new(state: &Value) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), state.to_string()).unwrap();
        std::fs::write(dir.path().join("log"), "").unwrap();
        Fake { dir }
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("state.json")).unwrap()).unwrap()
    }

    /// Calls since the last `take_log`: (operator installed at the time, argv).
    fn take_log(&self) -> Vec<(bool, String)> {
        let path = self.dir.path().join("log");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        text.lines()
            .map(|l| {
                let (on, call) = l.split_once(' ').unwrap();
                (on == "1", call.to_string())
            })
            .collect()
    }

    fn uninstall(&self, args: &[&str]) -> Output {
        let fake_bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-kubectl");
        let path = format!(
            "{}:{}",
            fake_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .arg(root().join("scripts/uninstall.sh"))
            .args(args)
            .env("PATH", path)
            .env_remove("KUBECTL")
            .env("FAKE_KUBE_STATE", self.dir.path().join("state.json"))
            .env("FAKE_KUBE_LOG", self.dir.path().join("log"))
            .env("FAKE_KUBE_CONTEXT", "kind-test")
            .stdin(Stdio::null())
            .output()
            .expect("cannot run bash");
        // A call the fake does not know (it exits 99) must not pass unseen, even where the
        // script tolerates a failure.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("fake kubectl: unexpected") && !err.contains("fake kubectl: unsupported"),
            "{err}"
        );
        out
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Index of the first call containing `needle` (panics when there is none).
fn first(log: &[(bool, String)], needle: &str) -> usize {
    log.iter()
        .position(|(_, c)| c.contains(needle))
        .unwrap_or_else(|| panic!("no call with {needle:?} in {log:#?}"))
}

fn last(log: &[(bool, String)], needle: &str) -> usize {
    log.iter()
        .rposition(|(_, c)| c.contains(needle))
        .unwrap_or_else(|| panic!("no call with {needle:?} in {log:#?}"))
}

#[test]
fn uninstall_releases_everything_in_order_and_runs_again_cleanly() {
    let fake = Fake::new(&installed_cluster());
    let out = fake.uninstall(&["--context", "kind-test", "--timeout", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = fake.take_log();

    // Custom resources are deleted first, dependents first, while the operator still runs.
    let kinds = [
        "quarantinepodrequests",
        "l2networks",
        "overlays",
        "networkedgedevices",
    ];
    let deletes: Vec<usize> = kinds
        .iter()
        .map(|k| first(&log, &format!("delete {} --all", crd(k))))
        .collect();
    assert!(deletes.windows(2).all(|w| w[0] < w[1]), "{log:#?}");
    for &d in &deletes {
        assert!(
            log[d].0,
            "deleted after the operator was gone: {}",
            log[d].1
        );
        assert!(log[d].1.starts_with("--context kind-test "), "{}", log[d].1);
    }
    // Then the leftover finalizers (the stuck network, the unlabelled pod), then deploy/,
    // then the webhook configurations.
    let patches: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| c.contains(" patch "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(patches.len(), 2, "{log:#?}");
    let deploy = first(&log, "delete -k ");
    assert_eq!(
        deploy,
        last(&log, "delete -k "),
        "deploy/ deleted twice: {log:#?}"
    );
    let webhook = first(&log, "delete mutatingwebhookconfiguration/");
    let nads = first(&log, &format!("delete {NAD} --all-namespaces -l "));
    assert!(deletes[3] < patches[0] && patches[1] < nads && nads < deploy && deploy < webhook);
    // The pod's patch tests the entry it removes (index 1, after another's finalizer).
    let pod_patch = &log[first(&log, "patch pods unlabelled -n app")].1;
    assert!(
        pod_patch.contains(
            r#"{"op":"test","path":"/metadata/finalizers/1","value":"l2sm.operator.io/finalizer"}"#
        ) && pod_patch.contains(r#"{"op":"remove","path":"/metadata/finalizers/1"}"#),
        "{pod_patch}"
    );

    // Nothing L2S-M is left; other controllers' finalizers are untouched.
    let state = fake.state();
    assert_eq!(state["installed"], false);
    assert_eq!(state["crds"], json!([NAD]), "{state:#}");
    assert_eq!(state["webhooks"], json!([]), "{state:#}");
    assert_eq!(
        state["objects"],
        json!([
            obj("pods", "app", "unlabelled", &["example.com/keep"], false),
            obj("pods", "app", "plain", &["example.com/keep"], false),
            nad("app", "macvlan", false),
        ]),
        "{state:#}"
    );
    assert!(
        text(&out).contains("still there after 2s"),
        "{}",
        text(&out)
    );

    // Idempotent: a second run changes nothing, patches nothing, and succeeds.
    let out = fake.uninstall(&["--context", "kind-test", "--timeout", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let again = fake.take_log();
    assert!(
        !again
            .iter()
            .any(|(_, c)| c.contains(" patch ") || c.contains(&format!("{GROUP} --all"))),
        "{again:#?}"
    );
    assert_eq!(fake.state(), state);
}

#[test]
fn the_wait_for_stuck_resources_is_bounded() {
    let fake = Fake::new(&installed_cluster());
    let started = std::time::Instant::now();
    let out = fake.uninstall(&["--context", "kind-test", "--timeout", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(3) && took < std::time::Duration::from_secs(20),
        "took {took:?}"
    );
    assert!(text(&out).contains("l2networks"), "{}", text(&out));
}

#[test]
fn a_resource_created_during_the_uninstall_does_not_leave_a_crd_stuck() {
    // A network appears after the finalizer sweep (a GitOps tool re-creating it): deleting
    // deploy/ then times out on its CRD; the script releases it and deletes deploy/ again.
    let mut cluster = installed_cluster();
    cluster["late"] = json!([obj(
        &crd("l2networks"),
        "default",
        "again",
        &[FINALIZER],
        false
    )]);
    let fake = Fake::new(&cluster);
    let out = fake.uninstall(&["--context", "kind-test", "--timeout", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = fake.take_log();
    let (first_k, last_k) = (first(&log, "delete -k "), last(&log, "delete -k "));
    assert!(first_k < last_k, "deploy/ deleted once only: {log:#?}");
    let release = first(
        &log,
        "patch l2networks.l2sm.l2sm.k8s.local again -n default",
    );
    assert!(first_k < release && release < last_k, "{log:#?}");
    let state = fake.state();
    assert_eq!(state["crds"], json!([NAD]), "{state:#}");
    assert!(
        !state["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["finalizers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == FINALIZER)),
        "{state:#}"
    );
}

#[test]
fn dry_run_changes_nothing_and_says_what_it_would_do() {
    let cluster = installed_cluster();
    let fake = Fake::new(&cluster);
    let out = fake.uninstall(&["--dry-run", "--context", "kind-test"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fake.state(), cluster);
    let log = fake.take_log();
    assert!(
        log.iter()
            .all(|(_, c)| c.starts_with("--context kind-test get ")),
        "{log:#?}"
    );
    let said = text(&out);
    for needle in [
        format!("would run: kubectl delete {} --all", crd("l2networks")),
        "would run: kubectl patch pods unlabelled -n app --type=json".into(),
        "would run: kubectl delete -k ".into(),
        "would run: kubectl delete mutatingwebhookconfiguration/".into(),
    ] {
        assert!(said.contains(&needle), "{needle} missing from:\n{said}");
    }
}

#[test]
fn bad_arguments_are_refused_before_any_call() {
    let fake = Fake::new(&installed_cluster());
    for args in [
        &["--timeout", "soon"][..],
        &["--frobnicate"],
        &["--context"],
    ] {
        let out = fake.uninstall(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
    assert!(fake.take_log().is_empty());
}

const COREFILE: &str = ".:53 {\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       fallthrough in-addr.arpa ip6.arpa\n    }\n    template IN TXT x.org {\n       answer \"x.org 60 IN TXT \\\"a\\\\b\tc\\\"\"\n    }\n    forward . /etc/resolv.conf\n}\n";

fn stanza() -> String {
    "# BEGIN l2sm-operator\n# Names on L2S-M networks.\nl2sm:53 {\n    forward . 10.96.0.20:53\n}\n# END l2sm-operator\n".into()
}

/// The operator's CoreDNS stanza goes after the operator (nothing writes it back), byte for
/// byte the rest stays, a concurrent write is not overwritten (409 on the version read, read
/// again), a second run finds nothing to do, --dry-run writes nothing, and broken markers
/// leave the Corefile as it is.
#[test]
fn the_coredns_stanza_is_removed_and_nothing_else() {
    let theirs = "example.org {\n    whoami\n}\n";
    let mut cluster = installed_cluster();
    cluster["coredns"] = json!({"rv": 7, "Corefile": format!("{COREFILE}{}", stanza())});
    // Someone adds a block just before our write lands.
    cluster["coredns_writer"] = json!(format!("{COREFILE}{}{theirs}", stanza()));

    let dry = Fake::new(&cluster);
    let out = dry.uninstall(&["--dry-run", "--context", "kind-test"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dry.state(), cluster);
    assert!(
        text(&out)
            .contains("would run: kubectl patch configmap coredns -n kube-system --type=merge"),
        "{}",
        text(&out)
    );

    let fake = Fake::new(&cluster);
    let out = fake.uninstall(&["--context", "kind-test", "--timeout", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = fake.take_log();
    let patches: Vec<&(bool, String)> = log
        .iter()
        .filter(|(_, c)| c.contains("patch configmap coredns"))
        .collect();
    assert_eq!(patches.len(), 2, "a conflict, then the write: {log:#?}");
    assert!(
        patches.iter().all(|(on, _)| !on),
        "after the operator is gone"
    );
    assert!(
        patches[0].1.contains(r#""resourceVersion":"7""#),
        "{}",
        patches[0].1
    );
    assert!(
        patches[1].1.contains(r#""resourceVersion":"8""#),
        "{}",
        patches[1].1
    );
    let state = fake.state();
    assert_eq!(state["coredns"]["Corefile"], format!("{COREFILE}{theirs}"));
    assert_eq!(state["coredns"]["rv"], 9);

    // Again: nothing to remove, nothing written.
    let out = fake.uninstall(&["--context", "kind-test", "--timeout", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no l2sm-operator stanza"),
        "{}",
        text(&out)
    );
    assert!(!fake
        .take_log()
        .iter()
        .any(|(_, c)| c.contains("patch configmap")));

    // Two BEGIN markers: left untouched, with a warning.
    let mut broken = installed_cluster();
    let text_broken = format!("{COREFILE}{}{}", stanza(), stanza());
    broken["coredns"] = json!({"rv": 3, "Corefile": text_broken});
    let fake = Fake::new(&broken);
    let out = fake.uninstall(&["--context", "kind-test", "--timeout", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("left untouched"), "{}", text(&out));
    assert_eq!(fake.state()["coredns"], broken["coredns"]);
}
