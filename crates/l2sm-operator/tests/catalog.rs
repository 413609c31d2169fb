//! `KubeCatalog` against a scripted API server: the request it makes, how it picks among
//! namespaces, and API errors.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use l2sm_operator::webhook::{KubeCatalog, NetworkCatalog, NetworkRef};
use serde_json::{json, Value};

/// A client whose API server answers every request with `status` and `body`, recording URIs.
fn client(status: u16, body: Value) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let svc = tower::service_fn(move |req: hyper::Request<kube::client::Body>| {
        log.lock().unwrap().push(req.uri().to_string());
        let resp = hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        async move { Ok::<_, Infallible>(resp) }
    });
    (kube::Client::new(svc, "default"), seen)
}

fn meta_list(items: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "1"},
        "items": items.iter().map(|(ns, n)| json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": n, "namespace": ns}
        })).collect::<Vec<_>>()
    })
}

fn net(ns: &str, name: &str) -> Option<NetworkRef> {
    Some(NetworkRef {
        namespace: ns.into(),
        name: name.into(),
        ..NetworkRef::default()
    })
}

#[tokio::test]
async fn finds_by_name_preferring_the_pods_namespace() {
    let (c, seen) = client(200, meta_list(&[("zeta", "blue"), ("apps", "blue")]));
    let cat = KubeCatalog::new(c);
    assert_eq!(cat.find("blue", "apps").await.unwrap(), net("apps", "blue"));
    assert_eq!(cat.find("blue", "zeta").await.unwrap(), net("zeta", "blue"));
    // Elsewhere: the first namespace in order, deterministically.
    assert_eq!(
        cat.find("blue", "other").await.unwrap(),
        net("apps", "blue")
    );
    let uri = seen.lock().unwrap()[0].clone();
    assert!(
        uri.starts_with("/apis/l2sm.l2sm.k8s.local/v1/l2networks?"),
        "{uri}"
    );
    assert!(uri.contains("fieldSelector=metadata.name%3Dblue"), "{uri}");
}

#[tokio::test]
async fn unknown_network_is_none() {
    let (c, _) = client(200, meta_list(&[]));
    assert_eq!(
        KubeCatalog::new(c).find("blue", "apps").await.unwrap(),
        None
    );
    // A server ignoring the field selector does not make another name match.
    let (c, _) = client(200, meta_list(&[("apps", "red")]));
    assert_eq!(
        KubeCatalog::new(c).find("blue", "apps").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn api_errors_are_reported() {
    let status = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": "l2networks is forbidden", "reason": "Forbidden", "code": 403});
    let (c, _) = client(403, status);
    let err = KubeCatalog::new(c).find("blue", "apps").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("listing L2Networks") && msg.contains("forbidden"),
        "{msg}"
    );
}

/// `--network-scope namespace`: the allowed namespaces come from the L2Network's annotation in
/// the metadata-only list; a pod of an unlisted namespace finds the network but may not use it.
#[tokio::test]
async fn scoped_lookup_reads_the_allowed_namespaces_annotation() {
    use l2sm_operator::scope::{NetworkScope, ALLOWED_NAMESPACES_ANNOTATION};
    let body = json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "1"},
        "items": [{
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "blue", "namespace": "team-a",
                "annotations": {ALLOWED_NAMESPACES_ANNOTATION: "team-b, team-c"}}
        }]
    });
    let (c, _) = client(200, body);
    let cat = KubeCatalog::new(c);
    let scoped = |ns: &'static str| cat.find_usable("blue", ns, NetworkScope::Namespace);
    let found = scoped("team-c").await.unwrap().unwrap().unwrap();
    assert_eq!(found.namespace, "team-a");
    assert_eq!(found.allowed_namespaces, ["team-b", "team-c"]);
    assert_eq!(scoped("team-x").await.unwrap(), Some(Err("team-a".into())));
    assert!(cat
        .find_usable("blue", "team-x", NetworkScope::Global)
        .await
        .unwrap()
        .unwrap()
        .is_ok());
}
