//! Randomized checks (a seeded xorshift generator; the seed is printed on failure):
//! merge patches against an independent RFC 7386 implementation, and garbage request bodies,
//! selectors and paths that must be answered 400/404 without a panic or a change.

use http::Request;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::client::Body;
use kube::Api;
use l2sm_kube_fake::FakeApi;
use serde_json::{json, Map, Value};

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KEYS: &[&str] = &["a", "b", "c", "d", "e"];

/// A random JSON value; `nulls` lets objects hold nulls (patches do, documents do not).
fn value(r: &mut Rng, depth: u32, nulls: bool) -> Value {
    let pick = if depth == 0 { r.below(4) } else { r.below(7) };
    match pick {
        0 => json!(r.below(100)),
        1 => json!(format!("s{}", r.below(10))),
        2 => json!(r.below(2) == 0),
        3 if nulls => Value::Null,
        3 => json!("x"),
        4 => Value::Array(
            (0..r.below(3))
                .map(|_| value(r, depth - 1, nulls))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..r.below(4) {
                let k = KEYS[r.below(KEYS.len() as u64) as usize];
                m.insert(k.to_string(), value(r, depth - 1, nulls));
            }
            Value::Object(m)
        }
    }
}

/// RFC 7386 section 2, written from the pseudo-code of the RFC.
fn merge_reference(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut t = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (name, v) in p {
        if v.is_null() {
            t.remove(name);
        } else {
            let cur = t.get(name).cloned().unwrap_or(Value::Null);
            t.insert(name.clone(), merge_reference(&cur, v));
        }
    }
    Value::Object(t)
}

fn widgets(fake: &FakeApi) -> Api<DynamicObject> {
    fake.register_kind("example.com", "v1", "widgets", "Widget", true, false);
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(fake.client(), "ns1", &ar)
}

#[tokio::test]
async fn merge_patches_follow_rfc_7386() {
    let seed = std::env::var("FAKE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    let mut r = Rng(seed);
    let fake = FakeApi::new();
    let api = widgets(&fake);
    for i in 0..400 {
        let doc = value(&mut r, 3, false);
        let patch = value(&mut r, 3, true);
        fake.seed_value(
            "example.com",
            "widgets",
            json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w", "namespace": "ns1"},
                "spec": doc,
            }),
        )
        .unwrap();
        api.patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": patch})),
        )
        .await
        .unwrap_or_else(|e| panic!("seed {seed:#x} case {i}: {e}"));
        let stored = fake
            .get_value("example.com", "widgets", Some("ns1"), "w")
            .unwrap();
        let expected = merge_reference(&json!({"spec": doc}), &json!({"spec": patch}));
        assert_eq!(
            stored.get("spec"),
            expected.get("spec"),
            "seed {seed:#x} case {i}: doc {doc} patch {patch}"
        );
        assert_eq!(stored["metadata"]["name"], "w");
    }
}

fn garbage(r: &mut Rng) -> Vec<u8> {
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        "null",
        "1",
        "\"metadata\"",
        "\"op\"",
        "\\",
        "\u{0}",
        "\u{ff}",
        " ",
        "true",
        "{\"a\":",
        "]]",
        "\"spec\"",
        "-",
    ];
    let mut out = Vec::new();
    for _ in 0..r.below(12) {
        if r.below(5) == 0 {
            out.push(r.below(256) as u8);
        } else {
            out.extend_from_slice(PIECES[r.below(PIECES.len() as u64) as usize].as_bytes());
        }
    }
    out
}

#[tokio::test]
async fn garbage_requests_are_refused_without_change() {
    let mut r = Rng(0xbad_5eed);
    let fake = FakeApi::new();
    fake.register_kind("example.com", "v1", "widgets", "Widget", true, false);
    fake.seed_value(
        "example.com",
        "widgets",
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
               "metadata": {"name": "w", "namespace": "ns1", "finalizers": ["x/y"]}, "spec": {}}),
    )
    .unwrap();
    let requests: &[(&str, &str, &str)] = &[
        (
            "POST",
            "/apis/example.com/v1/namespaces/ns1/widgets",
            "application/json",
        ),
        (
            "PUT",
            "/apis/example.com/v1/namespaces/ns1/widgets/w",
            "application/json",
        ),
        (
            "PATCH",
            "/apis/example.com/v1/namespaces/ns1/widgets/w",
            "application/merge-patch+json",
        ),
        (
            "PATCH",
            "/apis/example.com/v1/namespaces/ns1/widgets/w",
            "application/json-patch+json",
        ),
        (
            "PATCH",
            "/apis/example.com/v1/namespaces/ns1/widgets/w?fieldManager=m",
            "application/apply-patch+yaml",
        ),
        (
            "DELETE",
            "/apis/example.com/v1/namespaces/ns1/widgets/w",
            "application/json",
        ),
    ];
    let mut refused = 0;
    for i in 0..3000 {
        let rv = fake.resource_version();
        let body = garbage(&mut r);
        let (method, uri, ct) = requests[r.below(requests.len() as u64) as usize];
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", ct)
            .body(Body::from(body.clone()))
            .unwrap();
        let resp = fake.handle(req).await;
        let code = resp.status().as_u16();
        match serde_json::from_slice::<Value>(&body) {
            Err(_) if !body.is_empty() => {
                assert_eq!(code, 400, "case {i}: {method} {uri} {body:?}");
                refused += 1;
            }
            // JSON that is not an object (a JSON patch may be an array): refused.
            Ok(v)
                if !(v.is_object()
                    || method == "PATCH" && ct.contains("json-patch") && v.is_array()) =>
            {
                assert_eq!(code, 400, "case {i}: {method} {uri} {v}");
                refused += 1;
            }
            _ => {
                assert!(code < 500, "case {i}: {method} {uri} {body:?} -> {code}");
            }
        }
        if code >= 400 {
            assert_eq!(
                fake.resource_version(),
                rv,
                "case {i}: a refused request changed the store"
            );
        }
    }
    assert!(
        refused > 1000,
        "the generator must mostly produce garbage ({refused})"
    );
}

#[tokio::test]
async fn garbage_selectors_and_paths_never_panic() {
    let mut r = Rng(0x5e1ec7);
    let fake = FakeApi::new();
    const PIECES: &[&str] = &[
        "a",
        "=",
        "==",
        "!=",
        "!",
        ",",
        " in ",
        " notin ",
        "(",
        ")",
        "b",
        "metadata.name",
        "%",
        "%2",
        "%zz",
        "+",
        "/",
        "x.y/z",
        "",
    ];
    for i in 0..2000 {
        let s: String = (0..r.below(8))
            .map(|_| PIECES[r.below(PIECES.len() as u64) as usize])
            .collect();
        let param = if r.below(2) == 0 {
            "labelSelector"
        } else {
            "fieldSelector"
        };
        let path = match r.below(4) {
            0 => format!("/api/v1/namespaces/ns1/pods?{param}={s}"),
            1 => format!("/api/v1/pods?{param}={s}&watch=true&timeoutSeconds=0"),
            2 => format!("/api/v1/{s}"),
            _ => format!("/apis/{s}/v1/{s}/x"),
        };
        let Ok(req) = Request::builder().uri(&path).body(Body::empty()) else {
            continue;
        };
        let code = fake.handle(req).await.status().as_u16();
        assert!(
            matches!(code, 200 | 400 | 404),
            "case {i}: GET {path} -> {code}"
        );
    }
}

/// A random apply configuration with a fixed shape: maps `m1`, `m2` of scalar fields
/// `x`, `y`, `z` (so that a path is always a map or always a leaf).
fn config(r: &mut Rng) -> Map<String, Value> {
    let mut spec = Map::new();
    for m in ["m1", "m2"] {
        if r.below(3) == 0 {
            continue;
        }
        let mut inner = Map::new();
        for f in ["x", "y", "z"] {
            if r.below(2) == 0 {
                inner.insert(f.to_string(), json!(r.below(3)));
            }
        }
        spec.insert(m.to_string(), Value::Object(inner));
    }
    spec
}

/// The leaves `(map, field) -> value` of a configuration.
fn leaves(c: &Map<String, Value>) -> Vec<((String, String), Value)> {
    let mut out = Vec::new();
    for (m, inner) in c {
        for (f, v) in inner.as_object().unwrap() {
            out.push(((m.clone(), f.clone()), v.clone()));
        }
    }
    out
}

#[tokio::test]
async fn server_side_apply_keeps_what_others_apply_and_drops_what_nobody_does() {
    let mut r = Rng(0x55a_5eed);
    let fake = FakeApi::new();
    let api = widgets(&fake);
    let body = |spec: &Map<String, Value>| {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
               "metadata": {"name": "w"}, "spec": spec})
    };
    for i in 0..300 {
        fake.remove("example.com", "widgets", Some("ns1"), "w");
        let (c1, d, c2) = (config(&mut r), config(&mut r), config(&mut r));
        for (manager, c) in [("a", &c1), ("b", &d), ("a", &c2)] {
            api.patch(
                "w",
                &PatchParams::apply(manager).force(),
                &Patch::Apply(body(c)),
            )
            .await
            .unwrap_or_else(|e| panic!("case {i}: {manager} applies {c:?}: {e}"));
        }
        let stored = fake
            .get_value("example.com", "widgets", Some("ns1"), "w")
            .unwrap();
        let get = |(m, f): &(String, String)| stored.pointer(&format!("/spec/{m}/{f}")).cloned();
        let in_c2 = leaves(&c2);
        let in_d = leaves(&d);
        let ctx = || {
            format!(
                "case {i}: c1 {c1:?} d {d:?} c2 {c2:?} -> {}",
                stored["spec"]
            )
        };
        // The last apply wins its fields.
        for (p, v) in &in_c2 {
            assert_eq!(get(p).as_ref(), Some(v), "{}", ctx());
        }
        // Fields only the other manager applies stay, with its value.
        for (p, v) in &in_d {
            if !in_c2.iter().any(|(q, _)| q == p) {
                assert_eq!(get(p).as_ref(), Some(v), "{}", ctx());
            }
        }
        // Fields `a` stopped applying that `b` does not apply are gone.
        for (p, _) in leaves(&c1) {
            if !in_c2.iter().chain(&in_d).any(|(q, _)| *q == p) {
                assert_eq!(get(&p), None, "{}", ctx());
            }
        }
        // Maps nobody applies any more are gone.
        for m in ["m1", "m2"] {
            if !c2.contains_key(m) && !d.contains_key(m) {
                assert!(stored.pointer(&format!("/spec/{m}")).is_none(), "{}", ctx());
            }
        }
    }
}
