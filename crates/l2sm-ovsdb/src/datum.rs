//! Helpers for the RFC 7047 §5.1 value notation.
//!
//! OVSDB wraps sets, maps and UUIDs in two-element arrays tagged with a string
//! (`["set", [...]]`, `["map", [[k, v], ...]]`, `["uuid", "..."]`), and lets a set with
//! exactly one element be written as the bare element. Readers therefore must accept
//! both shapes; these functions do, so callers never match on the raw notation.

use std::collections::BTreeMap;

use serde_json::Value;

/// `["set", [items...]]`. Always the tagged form, so a one-element set of a type that is
/// itself an array (a UUID) stays unambiguous.
pub fn set(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Array(vec![
        Value::from("set"),
        Value::Array(items.into_iter().collect()),
    ])
}

/// `["map", [[key, value], ...]]`.
pub fn map<K: Into<String>, V: Into<Value>>(pairs: impl IntoIterator<Item = (K, V)>) -> Value {
    let pairs = pairs
        .into_iter()
        .map(|(k, v)| Value::Array(vec![Value::String(k.into()), v.into()]))
        .collect();
    Value::Array(vec![Value::from("map"), Value::Array(pairs)])
}

/// `["named-uuid", name]`: refers to a row inserted earlier in the same transaction
/// under `"uuid-name": name` (RFC 7047 §5.1, §5.2.1).
pub fn named_uuid(name: &str) -> Value {
    tagged("named-uuid", name)
}

/// `["uuid", u]`: refers to an existing row.
pub fn uuid(u: &str) -> Value {
    tagged("uuid", u)
}

fn tagged(tag: &str, s: &str) -> Value {
    Value::Array(vec![Value::from(tag), Value::from(s)])
}

/// Splits a tagged value `[tag, payload]` into its parts.
fn untag(v: &Value) -> Option<(&str, &Value)> {
    match v.as_array().map(Vec::as_slice) {
        Some([Value::String(tag), payload]) => Some((tag.as_str(), payload)),
        _ => None,
    }
}

/// The elements of a set column. A bare atom (the one-element shorthand) yields one
/// element; `["set", [...]]` yields its elements; a malformed `["set", x]` yields none.
pub fn as_set(v: &Value) -> Vec<Value> {
    match untag(v) {
        Some(("set", payload)) => payload.as_array().cloned().unwrap_or_default(),
        _ => vec![v.clone()],
    }
}

/// The pairs of a `["map", [[k, v], ...]]` column, keyed by the key atom rendered as a
/// string: strings as themselves, UUIDs as their bare text, numbers and booleans in
/// JSON notation. Values are returned as the raw atoms. Anything else yields an empty map.
pub fn as_map(v: &Value) -> BTreeMap<String, Value> {
    let Some(("map", Value::Array(pairs))) = untag(v) else {
        return BTreeMap::new();
    };
    pairs
        .iter()
        .filter_map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([k, v]) => Some((key_text(k), v.clone())),
            _ => None,
        })
        .collect()
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => as_uuid(other).unwrap_or_else(|| other.to_string()),
    }
}

/// Collapses an optional column (a set of at most one element) to its single element.
fn single(v: &Value) -> Option<&Value> {
    match untag(v) {
        Some(("set", Value::Array(items))) if items.len() == 1 => items.first(),
        Some(("set", _)) => None,
        _ => Some(v),
    }
}

/// The text of `["uuid", s]`, also when it sits in a one-element set (an optional
/// reference column).
pub fn as_uuid(v: &Value) -> Option<String> {
    match single(v).and_then(untag) {
        Some(("uuid", Value::String(s))) => Some(s.clone()),
        _ => None,
    }
}

/// An integer column, or an optional integer column (`min: 0, max: 1`), which the server
/// sends as the bare integer or as `["set", []]` when empty.
pub fn as_opt_i64(v: &Value) -> Option<i64> {
    single(v).and_then(Value::as_i64)
}

/// A string column, or an optional string column (bare string or `["set", []]`).
pub fn as_opt_str(v: &Value) -> Option<String> {
    single(v).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builders_produce_rfc_notation() {
        assert_eq!(set([json!(1), json!(2)]), json!(["set", [1, 2]]));
        assert_eq!(set([]), json!(["set", []]));
        assert_eq!(
            set([named_uuid("p")]),
            json!(["set", [["named-uuid", "p"]]])
        );
        assert_eq!(
            map([("a", "x"), ("b", "y")]),
            json!(["map", [["a", "x"], ["b", "y"]]])
        );
        assert_eq!(map([("n", 3)]), json!(["map", [["n", 3]]]));
        assert_eq!(map(Vec::<(String, Value)>::new()), json!(["map", []]));
        assert_eq!(uuid("u-1"), json!(["uuid", "u-1"]));
        assert_eq!(named_uuid("row"), json!(["named-uuid", "row"]));
    }

    #[test]
    fn as_set_accepts_both_shapes() {
        assert_eq!(as_set(&json!(["set", []])), Vec::<Value>::new());
        assert_eq!(as_set(&json!(["set", [1, 2]])), vec![json!(1), json!(2)]);
        assert_eq!(as_set(&json!("OpenFlow13")), vec![json!("OpenFlow13")]);
        assert_eq!(
            as_set(&json!(["uuid", "abc"])),
            vec![json!(["uuid", "abc"])]
        );
        assert_eq!(as_set(&json!(["set", 5])), Vec::<Value>::new());
    }

    #[test]
    fn as_map_reads_pairs() {
        let m = as_map(&json!([
            "map",
            [["remote_ip", "10.0.0.2"], ["key", "flow"]]
        ]));
        assert_eq!(m.len(), 2);
        assert_eq!(m["remote_ip"], json!("10.0.0.2"));
        assert_eq!(m["key"], json!("flow"));
        let m = as_map(&json!(["map", [[1, "one"], [["uuid", "u"], 2]]]));
        assert_eq!(m["1"], json!("one"));
        assert_eq!(m["u"], json!(2));
        assert!(as_map(&json!(["map", []])).is_empty());
        assert!(as_map(&json!("not a map")).is_empty());
        assert!(as_map(&json!(["set", [["a", "b"]]])).is_empty());
    }

    #[test]
    fn optional_columns() {
        assert_eq!(as_uuid(&json!(["uuid", "u1"])), Some("u1".into()));
        assert_eq!(
            as_uuid(&json!(["set", [["uuid", "u1"]]])),
            Some("u1".into())
        );
        assert_eq!(as_uuid(&json!(["set", []])), None);
        assert_eq!(as_uuid(&json!(["named-uuid", "x"])), None);
        assert_eq!(as_uuid(&json!("u1")), None);

        assert_eq!(as_opt_i64(&json!(7)), Some(7));
        assert_eq!(as_opt_i64(&json!(-1)), Some(-1));
        assert_eq!(as_opt_i64(&json!(["set", []])), None);
        assert_eq!(as_opt_i64(&json!(["set", [1500]])), Some(1500));
        assert_eq!(as_opt_i64(&json!(["set", [1, 2]])), None);
        assert_eq!(as_opt_i64(&json!("7")), None);

        assert_eq!(as_opt_str(&json!("secure")), Some("secure".into()));
        assert_eq!(as_opt_str(&json!(["set", []])), None);
        assert_eq!(as_opt_str(&json!(["set", ["x"]])), Some("x".into()));
        assert_eq!(as_opt_str(&json!(1)), None);
    }
}
