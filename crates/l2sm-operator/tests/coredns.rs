//! The CoreDNS stanza against the scripted API server (`l2sm-kube-fake`: resourceVersion
//! preconditions on merge patches, a write that changes nothing is no write): added once
//! and not written again, moved when the Service's address changes, removed when disabled,
//! a concurrent writer's change kept (409, read again, edit again), an unreadable Corefile
//! left untouched with a Warning Event on the ConfigMap, other keys never sent, and every
//! call one `deploy/rbac.yaml` grants.

use k8s_openapi::api::core::v1::ConfigMap;
use l2sm_kube_fake::FakeApi;
use l2sm_operator::api_calls;
use l2sm_operator::coredns::{self, Config, Outcome, SyncError, Targets, BEGIN, END};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const COREFILE: &str = ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n";

/// A fake API server holding CoreDNS's ConfigMap (with a second key, as k3s has) and the
/// controller's Service, answering only calls the RBAC table grants.
fn cluster(corefile: &str) -> FakeApi {
    let fake = FakeApi::new();
    fake.seed_value(
        "",
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "coredns", "namespace": "kube-system"},
               "data": {"Corefile": corefile, "NodeHosts": "10.0.0.1 n1\n"}}),
    )
    .unwrap();
    service(&fake, "10.96.0.20");
    fake.authorize(|c| {
        api_calls::allows(
            &c.group,
            &c.resource,
            c.subresource.as_deref(),
            &c.verb,
            c.namespace.as_deref(),
            c.name.as_deref(),
            "l2sm-system",
        )
    });
    fake
}

fn service(fake: &FakeApi, ip: &str) {
    fake.seed_value(
        "",
        "services",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "l2sm-controller-service", "namespace": "l2sm-system"},
               "spec": {"clusterIP": ip, "ports": [
                   {"name": "http-port", "port": 8181, "protocol": "TCP"},
                   {"name": "dns", "port": 53, "protocol": "UDP"},
                   {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}),
    )
    .unwrap();
}

fn config(enabled: bool) -> Config {
    Config {
        configmap: ("kube-system".into(), "coredns".into()),
        service: ("l2sm-system".into(), "l2sm-controller-service".into()),
        inter: None,
        enabled,
        interval: Duration::from_millis(50),
    }
}

fn corefile(fake: &FakeApi) -> String {
    let cm = fake
        .get_value("", "configmaps", Some("kube-system"), "coredns")
        .unwrap();
    assert_eq!(cm["data"]["NodeHosts"], "10.0.0.1 n1\n", "other keys kept");
    cm["data"]["Corefile"].as_str().unwrap().to_string()
}

/// Writes of the ConfigMap so far (patches that reached it, any outcome).
fn writes(fake: &FakeApi) -> Vec<l2sm_kube_fake::Call> {
    fake.calls()
        .into_iter()
        .filter(|c| c.resource == "configmaps" && c.verb != "get")
        .collect()
}

#[tokio::test]
async fn stanza_is_added_once_moved_and_removed_leaving_the_rest() {
    let fake = cluster(COREFILE);
    let client = fake.client();
    let rv0 = fake
        .get_value("", "configmaps", Some("kube-system"), "coredns")
        .unwrap()["metadata"]["resourceVersion"]
        .clone();

    let out = coredns::sync_once(&client, &config(true)).await.unwrap();
    assert!(matches!(out, Outcome::Written(_)), "{out:?}");
    let want = coredns::stanza(&Targets {
        l2sm: "10.96.0.20:53".into(),
        inter: None,
    });
    assert_eq!(corefile(&fake), format!("{COREFILE}{want}"));
    // One merge patch of data.Corefile, guarded by the version read, nothing else sent.
    let w = writes(&fake);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].verb, "patch");
    assert_eq!(
        w[0].patch_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(w[0].code, 200);
    let body = w[0].body.as_ref().unwrap();
    assert_eq!(body["metadata"]["resourceVersion"], rv0);
    assert_eq!(
        body["data"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["Corefile"]
    );

    // Idempotent: nothing written, the version stays.
    let rv1 = fake.resource_version();
    fake.clear_calls();
    for _ in 0..3 {
        assert_eq!(
            coredns::sync_once(&client, &config(true)).await.unwrap(),
            Outcome::Unchanged
        );
    }
    assert!(writes(&fake).is_empty());
    assert_eq!(fake.resource_version(), rv1);

    // The Service's address changes, and inter.l2sm goes to a provider: our lines follow.
    service(&fake, "10.96.0.99");
    let mut cfg = config(true);
    cfg.inter = Some("192.0.2.7:30053".into());
    coredns::sync_once(&client, &cfg).await.unwrap();
    let text = corefile(&fake);
    assert!(text.starts_with(COREFILE), "{text}");
    assert!(
        text.contains("l2sm:53 {\n    forward . 10.96.0.99:53\n}"),
        "{text}"
    );
    assert!(
        text.contains("inter.l2sm:53 {\n    forward . 192.0.2.7:30053\n}"),
        "{text}"
    );
    assert_eq!(text.matches(BEGIN).count(), 1);

    // Disabled: removed, the Corefile is the original byte for byte; again: no write.
    let out = coredns::sync_once(&client, &config(false)).await.unwrap();
    assert!(matches!(out, Outcome::Written(_)));
    assert_eq!(corefile(&fake), COREFILE);
    fake.clear_calls();
    assert_eq!(
        coredns::sync_once(&client, &config(false)).await.unwrap(),
        Outcome::Unchanged
    );
    assert!(writes(&fake).is_empty());
    // Every call was one the RBAC table grants (the fake answers others 403).
    assert!(fake.calls().iter().all(|c| c.code != 403));
}

#[tokio::test]
async fn a_concurrent_write_is_kept_and_the_edit_redone() {
    let fake = cluster(COREFILE);
    let client = fake.client();
    let theirs = "example.org {\n    whoami\n}\n";
    let once = Arc::new(AtomicBool::new(false));
    {
        let fake2 = fake.clone();
        let once = once.clone();
        // Right before our first write is served, someone else writes the Corefile.
        fake.on_request(move |c| {
            if c.verb == "patch" && c.resource == "configmaps" && !once.swap(true, Ordering::SeqCst)
            {
                let mut cm = fake2
                    .get_value("", "configmaps", Some("kube-system"), "coredns")
                    .unwrap();
                cm["data"]["Corefile"] = json!(format!("{COREFILE}{theirs}"));
                fake2.seed_value("", "configmaps", cm).unwrap();
            }
        });
    }
    let out = coredns::sync_once(&client, &config(true)).await.unwrap();
    assert!(matches!(out, Outcome::Written(_)));
    assert!(once.load(Ordering::SeqCst));
    let codes: Vec<u16> = writes(&fake).iter().map(|c| c.code).collect();
    assert_eq!(codes, vec![409, 200], "stale version refused, then written");
    let want = coredns::stanza(&Targets {
        l2sm: "10.96.0.20:53".into(),
        inter: None,
    });
    assert_eq!(corefile(&fake), format!("{COREFILE}{theirs}{want}"));
}

#[tokio::test]
async fn an_unreadable_corefile_is_left_untouched_and_reported_once() {
    // One brace too many (a hand edit gone wrong).
    let broken = COREFILE.replacen("    ready\n", "    ready {\n", 1);
    let fake = cluster(&broken);
    let client = fake.client();
    let rv = fake.resource_version();
    let e = coredns::sync_once(&client, &config(true))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SyncError::Corefile(w, _) if w == "kube-system/coredns"),
        "{e}"
    );
    assert!(e.to_string().contains("unbalanced braces (line 1)"), "{e}");
    assert!(writes(&fake).is_empty());
    assert_eq!(corefile(&fake), broken);

    // The task reports it as a Warning Event on the ConfigMap, once for several passes.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "l2sm-operator".into(),
            instance: None,
        },
    );
    let task = tokio::spawn(coredns::run(
        client.clone(),
        recorder,
        config(true),
        async {
            let _ = rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = tx.send(());
    task.await.unwrap();
    let events = fake.list_values("events.k8s.io", "events", Some("kube-system"));
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["reason"], coredns::EVENT_REASON);
    assert_eq!(ev["regarding"]["kind"], "ConfigMap");
    assert_eq!(ev["regarding"]["name"], "coredns");
    assert!(
        ev["note"].as_str().unwrap().contains("unbalanced braces"),
        "{ev}"
    );
    assert!(
        ev.get("series").is_none(),
        "one event, not one per pass: {ev}"
    );
    // Nothing but reads reached the ConfigMap; its version is what it was (events aside).
    assert!(writes(&fake).is_empty());
    let cm: ConfigMap = fake.get(Some("kube-system"), "coredns").unwrap();
    assert!(
        cm.metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            <= rv
    );

    // Fixed by hand: the next pass adds the stanza.
    let mut cm = fake
        .get_value("", "configmaps", Some("kube-system"), "coredns")
        .unwrap();
    cm["data"]["Corefile"] = json!(COREFILE);
    fake.seed_value("", "configmaps", cm).unwrap();
    assert!(matches!(
        coredns::sync_once(&client, &config(true)).await.unwrap(),
        Outcome::Written(_)
    ));
    assert!(corefile(&fake).ends_with(&format!("{END}\n")));
}

#[tokio::test]
async fn missing_configmap_or_service_changes_nothing() {
    let fake = cluster(COREFILE);
    let client = fake.client();
    // No Service: an error naming it, nothing written.
    fake.remove(
        "",
        "services",
        Some("l2sm-system"),
        "l2sm-controller-service",
    );
    let e = coredns::sync_once(&client, &config(true))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("l2sm-system/l2sm-controller-service"),
        "{e}"
    );
    assert!(writes(&fake).is_empty());
    // Removal needs no Service.
    assert_eq!(
        coredns::sync_once(&client, &config(false)).await.unwrap(),
        Outcome::Unchanged
    );
    // A headless Service has no address to forward to.
    fake.seed_value(
        "",
        "services",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "l2sm-controller-service", "namespace": "l2sm-system"},
               "spec": {"clusterIP": "None", "ports": [{"name": "dns", "port": 53}]}}),
    )
    .unwrap();
    let e = coredns::sync_once(&client, &config(true))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no cluster IP"), "{e}");
    // No ConfigMap (a cluster without CoreDNS): nothing to do.
    service(&fake, "10.96.0.20");
    fake.remove("", "configmaps", Some("kube-system"), "coredns");
    assert_eq!(
        coredns::sync_once(&client, &config(true)).await.unwrap(),
        Outcome::NoConfigMap
    );
    assert!(writes(&fake).iter().all(|c| c.verb == "get"));
}
