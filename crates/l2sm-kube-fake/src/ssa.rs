//! Server-side apply: field sets, ownership per manager, conflicts, removal of fields a manager
//! stopped applying, and the merge of an applied configuration into the live object.
//!
//! A field path is a list of segments `f:<field>` (a map key) or `k:<json>` (an item of a
//! list-map, identified by its key fields as a JSON object). Leaves are scalars and atomic
//! lists; a map and an item of a list-map are themselves members of the set (as `.` is in
//! `managedFields`), so that a map or an item nobody applies any more is removed as a whole.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One field path.
pub(crate) type Path = Vec<String>;

/// Who manages what: (manager, subresource ("" for the main resource), operation is apply)
/// → the fields it owns.
pub(crate) type Managers = BTreeMap<(String, String, bool), BTreeSet<Path>>;

/// The key fields of the list at field `name`, when it is a list-map (as the built-in and our
/// CRD schemas declare: conditions by `type`; containers, init and ephemeral containers, env
/// and volumes by `name`; volume mounts by `mountPath`). Every other list is atomic, and so
/// is a list whose items lack a key field.
fn list_map_keys(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "conditions" => Some(&["type"]),
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" => {
            Some(&["name"])
        }
        "volumeMounts" => Some(&["mountPath"]),
        _ => None,
    }
}

/// The key of a list-map item as a segment, or None when the item lacks a key field.
fn item_key(item: &Value, keys: &[&str]) -> Option<String> {
    let obj = item.as_object()?;
    let mut k = Map::new();
    for key in keys {
        k.insert((*key).to_string(), obj.get(*key)?.clone());
    }
    Some(format!("k:{}", Value::Object(k)))
}

/// Whether `list` (the value of field `name`) is merged per item.
fn is_list_map(name: &str, list: &[Value]) -> Option<&'static [&'static str]> {
    let keys = list_map_keys(name)?;
    list.iter()
        .all(|i| item_key(i, keys).is_some())
        .then_some(keys)
}

/// Metadata fields that are the server's, never owned by a manager.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The field set of an object (without apiVersion, kind and the server's metadata).
pub(crate) fn field_set(obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            if k == "metadata" {
                if let Some(m) = v.as_object() {
                    for (mk, mv) in m {
                        if SERVER_METADATA.contains(&mk.as_str()) {
                            continue;
                        }
                        walk(mv, mk, vec!["f:metadata".into()], &mut out);
                    }
                }
                continue;
            }
            walk(v, k, Vec::new(), &mut out);
        }
    }
    out
}

fn walk(v: &Value, name: &str, prefix: Path, out: &mut BTreeSet<Path>) {
    let mut p = prefix;
    p.push(format!("f:{name}"));
    match v {
        Value::Object(m) => {
            // The map itself (`.` in managedFields): whoever applies it keeps it existing.
            out.insert(p.clone());
            for (k, c) in m {
                walk(c, k, p.clone(), out);
            }
        }
        Value::Array(items) => match is_list_map(name, items) {
            Some(keys) if !items.is_empty() => {
                for item in items {
                    let Some(seg) = item_key(item, keys) else {
                        continue;
                    };
                    let mut ip = p.clone();
                    ip.push(seg);
                    out.insert(ip.clone());
                    if let Some(m) = item.as_object() {
                        for (k, c) in m {
                            walk(c, k, ip.clone(), out);
                        }
                    }
                }
            }
            _ => {
                out.insert(p);
            }
        },
        _ => {
            out.insert(p);
        }
    }
}

/// The value at `path`, if present.
pub(crate) fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    let mut parent_field = "";
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.as_object()?.get(f)?;
            parent_field = f;
        } else if let Some(k) = seg.strip_prefix("k:") {
            let keys = list_map_keys(parent_field)?;
            let items = cur.as_array()?;
            cur = items
                .iter()
                .find(|i| item_key(i, keys).is_some_and(|s| s[2..] == *k))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Removes the value at `path` (a map entry or a list-map item); absent paths are ignored.
pub(crate) fn remove(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent_field = parents
        .iter()
        .rev()
        .find_map(|s| s.strip_prefix("f:"))
        .unwrap_or("")
        .to_string();
    let Some(parent) = get_mut(obj, parents) else {
        return;
    };
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = parent.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        let Some(keys) = list_map_keys(&parent_field) else {
            return;
        };
        if let Some(items) = parent.as_array_mut() {
            items.retain(|i| item_key(i, keys).is_none_or(|s| s[2..] != *k));
        }
    }
}

fn get_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = obj;
    let mut parent_field = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.as_object_mut()?.get_mut(f)?;
            parent_field = f.to_string();
        } else if let Some(k) = seg.strip_prefix("k:") {
            let keys = list_map_keys(&parent_field)?;
            let items = cur.as_array_mut()?;
            cur = items
                .iter_mut()
                .find(|i| item_key(i, keys).is_some_and(|s| s[2..] == *k))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Merges an applied configuration into the live object: maps per key, list-maps per item,
/// everything else replaced.
pub(crate) fn merge(live: &mut Value, applied: &Value, field: &str) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                match l.get_mut(k) {
                    Some(lv) => merge(lv, av, k),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => {
            let keys = match (is_list_map(field, l), is_list_map(field, a)) {
                (Some(k), Some(_)) => k,
                _ => {
                    *l = a.clone();
                    return;
                }
            };
            for ai in a {
                let ak = item_key(ai, keys);
                match l.iter_mut().find(|li| item_key(li, keys) == ak) {
                    Some(li) => merge(li, ai, ""),
                    None => l.push(ai.clone()),
                }
            }
        }
        (l, a) => *l = a.clone(),
    }
}

/// Whether `path` is a key field of a list-map item (`…/k:{"name":"a"}/f:name`).
fn is_item_key_field(path: &[String]) -> bool {
    let [.., parent, last] = path else {
        return false;
    };
    let (Some(k), Some(f)) = (parent.strip_prefix("k:"), last.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(k).is_ok_and(|m| m.contains_key(f))
}

/// Whether `a` is `b` or one of its ancestors.
fn is_prefix(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Renders a path as the API server does in conflict messages (`.spec.x[type="Ready"]`).
pub(crate) fn render(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let inner = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            s.push('[');
            s.push_str(&inner);
            s.push(']');
        }
    }
    s
}

/// The leaf paths whose value differs between `old` and `new` (added or changed), and the
/// paths of `old` absent from `new`.
pub(crate) fn changed(old: &Value, new: &Value) -> (BTreeSet<Path>, BTreeSet<Path>) {
    let os = field_set(old);
    let ns = field_set(new);
    let changed = ns
        .iter()
        .filter(|p| !os.contains(*p) || get(old, p) != get(new, p))
        .cloned()
        .collect();
    let removed = os.difference(&ns).cloned().collect();
    (changed, removed)
}

/// Records a non-apply write by `manager`: it takes the fields it changed from every other
/// manager; removed fields leave every set.
pub(crate) fn record_update(
    managers: &mut Managers,
    manager: &str,
    subresource: &str,
    old: &Value,
    new: &Value,
) {
    let (changed, removed) = changed(old, new);
    for set in managers.values_mut() {
        set.retain(|p| !changed.contains(p) && !removed.iter().any(|r| is_prefix(r, p)));
    }
    if !changed.is_empty() {
        managers
            .entry((manager.to_string(), subresource.to_string(), false))
            .or_default()
            .extend(changed);
    }
    managers.retain(|_, s| !s.is_empty());
}

/// A conflict: the field and the manager owning it.
pub(crate) struct Conflict {
    pub(crate) manager: String,
    pub(crate) path: Path,
}

/// Applies `applied` for `manager` onto `live` (already restricted to what the endpoint may
/// change). Returns the conflicts (nothing changed) unless `force`.
pub(crate) fn apply(
    live: &mut Value,
    managers: &mut Managers,
    applied: &Value,
    manager: &str,
    subresource: &str,
    force: bool,
) -> Result<(), Vec<Conflict>> {
    let me = (manager.to_string(), subresource.to_string(), true);
    let new_set = field_set(applied);
    // Conflicts: a field this config sets to another value than the live one, owned by
    // another manager.
    let mut conflicts = Vec::new();
    for p in &new_set {
        let av = get(applied, p);
        let lv = get(live, p);
        if lv.is_none() || lv == av {
            continue;
        }
        // A map or a list-map item is not a value of its own: its fields conflict.
        if av.is_some_and(Value::is_object) {
            continue;
        }
        for (who, set) in managers.iter() {
            if who.0 == manager {
                continue;
            }
            // Another manager owns this field, something inside it, or an atomic value
            // containing it (owning a map or a list item, `.`, is not owning its fields).
            let owns = |q: &&Path| {
                *q == p
                    || is_prefix(p, q)
                    || (is_prefix(q, p) && !get(live, q).is_some_and(Value::is_object))
            };
            if let Some(q) = set.iter().find(owns) {
                conflicts.push(Conflict {
                    manager: who.0.clone(),
                    path: q.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    if force {
        for c in &conflicts {
            for (who, set) in managers.iter_mut() {
                if who.0 == c.manager {
                    set.remove(&c.path);
                }
            }
        }
    }
    // Fields this manager applied before and no longer applies: removed unless another
    // manager owns them (or something inside them).
    let old_set = managers.get(&me).cloned().unwrap_or_default();
    let mut gone: Vec<&Path> = old_set.difference(&new_set).collect();
    // Outermost first: a map or an item nobody else holds goes as a whole.
    gone.sort_by_key(|p| p.len());
    for p in gone {
        if is_item_key_field(p) {
            // The key of an item that stays (another manager holds part of it) stays.
            continue;
        }
        let kept = managers
            .iter()
            .any(|(who, set)| *who != me && set.iter().any(|q| is_prefix(p, q)));
        // Something inside it still applied by this manager (a list item whose entry we
        // dropped while keeping a field of it cannot happen: entries come with their fields).
        let still_mine = new_set.iter().any(|q| is_prefix(p, q));
        if !kept && !still_mine {
            remove(live, p);
        }
    }
    merge(live, applied, "");
    managers.insert(me, new_set);
    managers.retain(|_, s| !s.is_empty());
    Ok(())
}

/// Renders the ownership as `metadata.managedFields` (fieldsV1).
pub(crate) fn managed_fields(managers: &Managers, time: &str, api_version: &str) -> Value {
    let mut out = Vec::new();
    for ((manager, sub, is_apply), set) in managers {
        let mut tree = Map::new();
        for p in set {
            // A map or an item with fields of its own in the set is shown with `.`.
            let container = set
                .range(p.clone()..)
                .nth(1)
                .is_some_and(|q| is_prefix(p, q));
            insert_path(&mut tree, p, container);
        }
        let mut entry = serde_json::json!({
            "manager": manager,
            "operation": if *is_apply { "Apply" } else { "Update" },
            "apiVersion": api_version,
            "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": Value::Object(tree),
        });
        if !sub.is_empty() {
            entry["subresource"] = Value::String(sub.clone());
        }
        out.push(entry);
    }
    Value::Array(out)
}

fn insert_path(tree: &mut Map<String, Value>, path: &[String], item: bool) {
    let Some((first, rest)) = path.split_first() else {
        if item {
            tree.insert(".".into(), Value::Object(Map::new()));
        }
        return;
    };
    let next = tree
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = next {
        insert_path(m, rest, item);
    }
}
