//! The store and the request handling.

use crate::body::FakeBody;
use crate::selector::{FieldSelector, LabelSelector};
use crate::ssa::{self, Managers};
use crate::Call;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;

/// How many write events are kept for watches resuming from a resourceVersion.
const HISTORY: usize = 10_000;
/// Capacity of one watcher's queue; a watcher that falls this far behind is closed (as the
/// real server closes slow watchers) and re-lists.
const WATCH_QUEUE: usize = 4096;
/// Default watch length without `timeoutSeconds`.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// Largest request body accepted (the real server's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// A known resource.
#[derive(Debug, Clone)]
pub(crate) struct ResourceType {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) plural: String,
    pub(crate) kind: String,
    pub(crate) namespaced: bool,
    pub(crate) status: bool,
}

/// Whether a group is served by kube-apiserver itself (the others are custom resources).
fn builtin_group(group: &str) -> bool {
    group.is_empty() || !group.contains('.') || group.ends_with(".k8s.io")
}

impl ResourceType {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// The kinds every store knows: (group, version, plural, kind, namespaced, status).
const BUILTIN: &[(&str, &str, &str, &str, bool, bool)] = &[
    ("", "v1", "pods", "Pod", true, true),
    ("", "v1", "nodes", "Node", false, true),
    ("", "v1", "namespaces", "Namespace", false, true),
    ("", "v1", "services", "Service", true, true),
    ("", "v1", "endpoints", "Endpoints", true, false),
    ("", "v1", "secrets", "Secret", true, false),
    ("", "v1", "configmaps", "ConfigMap", true, false),
    ("", "v1", "serviceaccounts", "ServiceAccount", true, false),
    ("", "v1", "events", "Event", true, false),
    ("apps", "v1", "deployments", "Deployment", true, true),
    ("apps", "v1", "daemonsets", "DaemonSet", true, true),
    ("apps", "v1", "statefulsets", "StatefulSet", true, true),
    ("apps", "v1", "replicasets", "ReplicaSet", true, true),
    ("coordination.k8s.io", "v1", "leases", "Lease", true, false),
    ("events.k8s.io", "v1", "events", "Event", true, false),
    (
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        false,
        true,
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
    ),
    (
        "k8s.cni.cncf.io",
        "v1",
        "network-attachment-definitions",
        "NetworkAttachmentDefinition",
        true,
        false,
    ),
    (
        "l2sm.l2sm.k8s.local",
        "v1",
        "l2networks",
        "L2Network",
        true,
        true,
    ),
    (
        "l2sm.l2sm.k8s.local",
        "v1",
        "overlays",
        "Overlay",
        true,
        true,
    ),
    (
        "l2sm.l2sm.k8s.local",
        "v1",
        "networkedgedevices",
        "NetworkEdgeDevice",
        true,
        true,
    ),
    (
        "l2sm.l2sm.k8s.local",
        "v1",
        "quarantinepodrequests",
        "QuarantinePodRequest",
        true,
        true,
    ),
];

struct Stored {
    obj: Value,
    managers: Managers,
}

#[derive(Clone, Copy, PartialEq)]
enum EvType {
    Added,
    Modified,
    Deleted,
}

struct Event {
    rv: u64,
    group: String,
    plural: String,
    ns: String,
    ty: EvType,
    old: Option<Value>,
    new: Value,
}

struct Watcher {
    group: String,
    plural: String,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    metadata_only: bool,
    tx: mpsc::Sender<Bytes>,
}

impl Watcher {
    fn matches(&self, v: &Value) -> bool {
        self.labels.matches(v) && self.fields.matches(v)
    }

    /// What this watcher sees of an event, as the API server's cacher decides: an object
    /// that starts matching is ADDED, one that stops matching is DELETED.
    fn line(&self, ev: &Event) -> Option<Bytes> {
        if ev.group != self.group || ev.plural != self.plural {
            return None;
        }
        if self.ns.as_ref().is_some_and(|n| *n != ev.ns) {
            return None;
        }
        let now = self.matches(&ev.new);
        let ty = match ev.ty {
            EvType::Added => now.then_some("ADDED"),
            EvType::Deleted => now.then_some("DELETED"),
            EvType::Modified => {
                let before = ev.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }?;
        Some(self.line_of(ty, &ev.new))
    }

    fn line_of(&self, ty: &str, obj: &Value) -> Bytes {
        if self.metadata_only {
            watch_line(ty, &partial(obj))
        } else {
            watch_line(ty, obj)
        }
    }
}

/// The PartialObjectMetadata form of an object (what `Accept: …;as=PartialObjectMetadata`
/// asks for).
fn partial(obj: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn watch_line(ty: &str, obj: &Value) -> Bytes {
    let mut s = json!({"type": ty, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// An error answer: code, reason, message.
pub(crate) struct ApiErr {
    code: u16,
    reason: &'static str,
    msg: String,
}

pub(crate) fn err(code: u16, reason: &'static str, msg: impl Into<String>) -> ApiErr {
    ApiErr {
        code,
        reason,
        msg: msg.into(),
    }
}

fn reason_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

fn status_body(code: u16, reason: &str, msg: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": msg,
        "reason": reason,
        "code": code,
    })
}

/// A complete JSON answer.
fn respond(code: u16, body: &Value) -> http::Response<FakeBody> {
    let mut r = http::Response::new(FakeBody::full(body.to_string()));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// An error answer with a metav1.Status body.
pub(crate) fn error_response(code: u16, reason: &str, msg: &str) -> http::Response<FakeBody> {
    respond(code, &status_body(code, reason, msg))
}

/// Decodes `%XX` and `+` of a query component.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request, parsed from the URL and headers.
pub(crate) struct Parsed {
    method: http::Method,
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
    query: BTreeMap<String, String>,
    query_str: String,
    content_type: Option<String>,
    user_agent: String,
    metadata_only: bool,
    body: Option<Result<Value, String>>,
    user: String,
}

impl Parsed {
    /// Parses the URL; an error is the answer.
    pub(crate) fn new(
        parts: &http::request::Parts,
        bytes: &[u8],
        user: &str,
    ) -> Result<Self, ApiErr> {
        let path = parts.uri.path();
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        let not_found = || {
            err(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        };
        let (group, version, rest) = match segs.first().map(String::as_str) {
            Some("api") if segs.len() >= 2 => (String::new(), segs[1].clone(), &segs[2..]),
            Some("apis") if segs.len() >= 3 => (segs[1].clone(), segs[2].clone(), &segs[3..]),
            _ => return Err(not_found()),
        };
        let (namespace, rest) = match rest {
            [ns, n, ..] if rest[0] == "namespaces" && rest.len() >= 3 => {
                if rest.len() == 3 && (rest[2] == "status" || rest[2] == "finalize") {
                    (None, rest)
                } else {
                    let _ = ns;
                    (Some(n.clone()), &rest[2..])
                }
            }
            _ => (None, rest),
        };
        let (plural, name, sub) = match rest {
            [p] => (p.clone(), None, None),
            [p, n] => (p.clone(), Some(n.clone()), None),
            [p, n, s] => (p.clone(), Some(n.clone()), Some(s.clone())),
            _ => return Err(not_found()),
        };
        let raw_query = parts.uri.query().unwrap_or("");
        let mut query = BTreeMap::new();
        for kv in raw_query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            query.insert(decode(k), decode(v));
        }
        let query_str = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let header = |h: http::header::HeaderName| {
            parts
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(http::header::CONTENT_TYPE)
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string());
        let user_agent = header(http::header::USER_AGENT)
            .map(|u| u.split('/').next().unwrap_or("").to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let metadata_only =
            header(http::header::ACCEPT).is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        let body = if bytes.is_empty() {
            None
        } else if bytes.len() > MAX_BODY {
            Some(Err("request entity too large".to_string()))
        } else {
            Some(serde_json::from_slice::<Value>(bytes).map_err(|e| e.to_string()))
        };
        Ok(Self {
            method: parts.method.clone(),
            group,
            version,
            namespace,
            plural,
            name,
            sub,
            query,
            query_str,
            content_type,
            user_agent,
            metadata_only,
            body,
            user: user.to_string(),
        })
    }

    fn verb(&self) -> &'static str {
        use http::Method;
        match (&self.method, self.name.is_some()) {
            (&Method::GET, true) => "get",
            (&Method::GET, false) => {
                if matches!(self.q("watch"), Some("true") | Some("1")) {
                    "watch"
                } else {
                    "list"
                }
            }
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, true) => "delete",
            (&Method::DELETE, false) => "deletecollection",
            _ => "unknown",
        }
    }

    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    /// The call record of this request.
    pub(crate) fn call(&self, code: u16) -> Call {
        Call {
            verb: self.verb().to_string(),
            group: self.group.clone(),
            version: self.version.clone(),
            resource: self.plural.clone(),
            subresource: self.sub.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            patch_type: (self.method == http::Method::PATCH)
                .then(|| self.content_type.clone())
                .flatten(),
            field_manager: self.q("fieldManager").map(str::to_string),
            query: self.query_str.clone(),
            body: self.body.as_ref().and_then(|b| b.as_ref().ok()).cloned(),
            code,
            user: self.user.clone(),
        }
    }

    fn manager(&self) -> String {
        self.q("fieldManager")
            .map(str::to_string)
            .unwrap_or_else(|| self.user_agent.clone())
    }

    fn json_body(&self) -> Result<Value, ApiErr> {
        match &self.body {
            None => Err(err(400, "BadRequest", "the request body is empty")),
            Some(Err(e)) => Err(err(
                400,
                "BadRequest",
                format!("the body of the request was in an unknown format: {e}"),
            )),
            Some(Ok(v)) => Ok(v.clone()),
        }
    }
}

/// The whole server state.
pub(crate) struct State {
    types: Vec<ResourceType>,
    objects: BTreeMap<(String, String), BTreeMap<(String, String), Stored>>,
    pub(crate) rv: u64,
    history: VecDeque<Event>,
    /// Events at or below this resourceVersion are forgotten.
    forgotten: u64,
    watchers: Vec<Watcher>,
    pub(crate) calls: Vec<Call>,
    pub(crate) failures: Vec<(String, String, u16)>,
    /// RBAC stand-in: a call it refuses is answered 403 Forbidden.
    pub(crate) authorizer: Option<Authorizer>,
    /// The request being served comes from an admin client (not subject to `authorizer`).
    pub(crate) serving_admin: bool,
    /// Who the request being served comes from.
    pub(crate) serving_identity: crate::Identity,
    uid: u64,
}

/// Decides whether a call is allowed (see [`crate::FakeApi::authorize`]).
pub(crate) type Authorizer = std::sync::Arc<dyn Fn(&Call) -> bool + Send + Sync>;

type Key = (String, String);

fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    // Stored objects are always JSON objects; anything else becomes one (never a panic).
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(o) = v else {
        unreachable!("made an object above")
    };
    let m = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    match m {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The object without metadata and status (what generation tracks).
fn spec_part(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
        o.remove("apiVersion");
        o.remove("kind");
    }
    c
}

/// The object without resourceVersion and managedFields (what a no-op write compares).
fn comparable(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(Value::Object(m)) = c.get_mut("metadata") {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    c
}

/// RFC 3339 UTC time of now.
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A DNS-1123 subdomain (object names).
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Applies an RFC 6902 patch as kube-apiserver does (evanphx/json-patch): a `test` of
/// `null` passes on a missing path (kube-rs's finalizer helper relies on it).
fn apply_json_patch(
    doc: &mut Value,
    ops: &json_patch::Patch,
) -> Result<(), json_patch::PatchError> {
    for op in &ops.0 {
        if let json_patch::PatchOperation::Test(t) = op {
            if t.value.is_null() && doc.pointer(t.path.as_str()).is_none() {
                continue;
            }
        }
        json_patch::patch(doc, std::slice::from_ref(op))?;
    }
    Ok(())
}

/// The answer of a handler: code and body, or a watch stream.
enum Answer {
    Json(u16, Value),
    Stream(FakeBody),
}

impl State {
    pub(crate) fn new() -> Self {
        let mut s = Self {
            types: Vec::new(),
            objects: BTreeMap::new(),
            rv: 1000,
            history: VecDeque::new(),
            forgotten: 0,
            watchers: Vec::new(),
            calls: Vec::new(),
            failures: Vec::new(),
            authorizer: None,
            serving_admin: false,
            serving_identity: crate::Identity::default(),
            uid: 0,
        };
        for (g, v, p, k, ns, st) in BUILTIN {
            s.register(ResourceType {
                group: (*g).into(),
                version: (*v).into(),
                plural: (*p).into(),
                kind: (*k).into(),
                namespaced: *ns,
                status: *st,
            });
        }
        s.forgotten = s.rv;
        s
    }

    pub(crate) fn register(&mut self, rt: ResourceType) {
        self.types
            .retain(|t| !(t.group == rt.group && t.plural == rt.plural));
        self.types.push(rt);
    }

    pub(crate) fn find(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.plural == plural)
    }

    fn new_uid(&mut self) -> String {
        self.uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid)
    }

    fn render(stored: &Stored, rt: &ResourceType) -> Value {
        let mut v = stored.obj.clone();
        if !stored.managers.is_empty() && v.is_object() {
            let mf = ssa::managed_fields(&stored.managers, &now(), &rt.api_version());
            meta_mut(&mut v).insert("managedFields".into(), mf);
        }
        v
    }

    fn emit(&mut self, rt: &ResourceType, ns: &str, ty: EvType, old: Option<Value>, new: Value) {
        let ev = Event {
            rv: self.rv,
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            ns: ns.to_string(),
            ty,
            old,
            new,
        };
        self.watchers.retain(|w| match w.line(&ev) {
            Some(line) => w.tx.try_send(line).is_ok(),
            None => !w.tx.is_closed(),
        });
        self.history.push_back(ev);
        while self.history.len() > HISTORY {
            if let Some(e) = self.history.pop_front() {
                self.forgotten = e.rv;
            }
        }
    }

    // ------------------------------------------------------------- test-side access

    pub(crate) fn seed(
        &mut self,
        group: &str,
        plural: &str,
        v: &mut Value,
    ) -> Result<Value, String> {
        let rt = self
            .find(group, plural)
            .cloned()
            .ok_or_else(|| format!("unknown resource {plural}.{group}"))?;
        if !v.is_object() {
            return Err("not an object".into());
        }
        let name = meta_str(v, "name").ok_or("no metadata.name")?.to_string();
        let ns = if rt.namespaced {
            meta_str(v, "namespace")
                .ok_or("no metadata.namespace")?
                .to_string()
        } else {
            String::new()
        };
        let old = self
            .objects
            .get(&(group.to_string(), plural.to_string()))
            .and_then(|m| m.get(&(ns.clone(), name.clone())))
            .map(|s| Self::render(s, &rt));
        self.rv += 1;
        let uid = self.new_uid();
        let o = v.as_object_mut().ok_or("not an object")?;
        o.insert("apiVersion".into(), Value::String(rt.api_version()));
        o.insert("kind".into(), Value::String(rt.kind.clone()));
        let m = meta_mut(v);
        m.entry("uid").or_insert(Value::String(uid));
        m.entry("creationTimestamp").or_insert(Value::String(now()));
        m.entry("generation").or_insert(json!(1));
        m.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        m.remove("managedFields");
        let mut managers = Managers::new();
        ssa::record_update(&mut managers, "fake-seed", "", &json!({}), v);
        let stored = Stored {
            obj: v.clone(),
            managers,
        };
        let rendered = Self::render(&stored, &rt);
        self.objects
            .entry((group.to_string(), plural.to_string()))
            .or_default()
            .insert((ns.clone(), name), stored);
        let ty = if old.is_some() {
            EvType::Modified
        } else {
            EvType::Added
        };
        self.emit(&rt, &ns, ty, old, rendered.clone());
        Ok(rendered)
    }

    pub(crate) fn get(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let rt = self.find(group, plural)?;
        let ns = if rt.namespaced { ns } else { "" };
        self.objects
            .get(&(group.to_string(), plural.to_string()))?
            .get(&(ns.to_string(), name.to_string()))
            .map(|s| Self::render(s, rt))
    }

    pub(crate) fn list_all(&self, group: &str, plural: &str, ns: Option<&str>) -> Vec<Value> {
        let Some(rt) = self.find(group, plural) else {
            return Vec::new();
        };
        self.objects
            .get(&(group.to_string(), plural.to_string()))
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|x| x == n))
                    .map(|(_, s)| Self::render(s, rt))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn force_remove(&mut self, group: &str, plural: &str, ns: &str, name: &str) {
        let Some(rt) = self.find(group, plural).cloned() else {
            return;
        };
        let ns = if rt.namespaced { ns } else { "" };
        let removed = self
            .objects
            .get_mut(&(group.to_string(), plural.to_string()))
            .and_then(|m| m.remove(&(ns.to_string(), name.to_string())));
        if let Some(s) = removed {
            self.rv += 1;
            let mut v = Self::render(&s, &rt);
            meta_mut(&mut v).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
            self.emit(&rt, ns, EvType::Deleted, None, v);
        }
    }

    // ------------------------------------------------------------- serving

    /// Serves one parsed request, recording it.
    pub(crate) fn serve(
        &mut self,
        parsed: Result<Parsed, ApiErr>,
        _bytes: &[u8],
    ) -> http::Response<FakeBody> {
        let p = match parsed {
            Ok(p) => p,
            Err(e) => return error_response(e.code, e.reason, &e.msg),
        };
        let mut call = p.call(0);
        let answer = self.dispatch(&p, &call);
        let resp = match answer {
            Ok(Answer::Json(code, body)) => {
                call.code = code;
                if p.metadata_only {
                    respond(code, &Self::as_metadata(body))
                } else {
                    respond(code, &body)
                }
            }
            Ok(Answer::Stream(body)) => {
                call.code = 200;
                let mut r = http::Response::new(body);
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => {
                call.code = e.code;
                error_response(e.code, e.reason, &e.msg)
            }
        };
        self.calls.push(call);
        resp
    }

    /// An answer in PartialObjectMetadata(List) form.
    fn as_metadata(body: Value) -> Value {
        match body.get("items").and_then(Value::as_array) {
            Some(items) => json!({
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadataList",
                "metadata": body.get("metadata").cloned().unwrap_or_else(|| json!({})),
                "items": items.iter().map(partial).collect::<Vec<_>>(),
            }),
            None => partial(&body),
        }
    }

    /// 403 unless the authorizer (if any) allows `call`, worded as kube-apiserver's RBAC.
    fn authorize(&self, call: &Call) -> Result<(), ApiErr> {
        match &self.authorizer {
            Some(allow) if !self.serving_admin && !allow(call) => {
                let scope = match &call.namespace {
                    Some(ns) => format!(" in the namespace \"{ns}\""),
                    None => " at the cluster scope".to_string(),
                };
                Err(err(
                    403,
                    "Forbidden",
                    format!(
                        "{} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\"{scope}",
                        call.resource_path(),
                        call.user,
                        call.verb,
                        call.resource_path(),
                        call.group
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    fn dispatch(&mut self, p: &Parsed, call: &Call) -> Result<Answer, ApiErr> {
        // Authorization comes first, as in the real server (before any lookup).
        self.authorize(call)?;
        let rt = self
            .find(&p.group, &p.plural)
            .filter(|t| t.version == p.version)
            .cloned()
            .ok_or_else(|| {
                err(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            })?;
        if p.namespace.is_some() && !rt.namespaced {
            return Err(err(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        if let Some(s) = &p.sub {
            if !(s == "status" && rt.status
                || s == "approval" && crate::csr::is_csr(&rt.group, &rt.plural))
            {
                return Err(err(
                    404,
                    "NotFound",
                    format!(
                        "the server could not find the requested resource ({s} of {})",
                        rt.qualified()
                    ),
                ));
            }
        }
        // Injected failure.
        let rp = call.resource_path();
        if let Some(i) = self
            .failures
            .iter()
            .position(|(v, r, _)| *v == call.verb && *r == rp)
        {
            let (_, _, code) = self.failures.remove(i);
            return Err(err(
                code,
                reason_of(code),
                format!("injected failure ({} {rp})", call.verb),
            ));
        }
        // An item of a namespaced kind needs its namespace.
        if rt.namespaced && p.name.is_some() && p.namespace.is_none() {
            return Err(err(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        if rt.namespaced && p.verb() == "create" && p.namespace.is_none() {
            return Err(err(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        match p.verb() {
            "get" => self.do_get(p, &rt),
            "list" => self.do_list(p, &rt),
            "watch" => self.do_watch(p, &rt),
            "create" => {
                if p.name.is_some() {
                    return Err(err(
                        405,
                        "MethodNotAllowed",
                        "the server does not allow this method on the requested resource",
                    ));
                }
                self.do_create(p, &rt)
            }
            "update" | "patch" if p.name.is_none() => Err(err(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )),
            "update" => self.do_update(p, &rt),
            "patch" => self.do_patch(p, &rt),
            "delete" => self.do_delete(p, &rt),
            "deletecollection" => self.do_delete_collection(p, &rt),
            _ => Err(err(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )),
        }
    }

    fn key(p: &Parsed, rt: &ResourceType) -> Key {
        let ns = if rt.namespaced {
            p.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        };
        (ns, p.name.clone().unwrap_or_default())
    }

    fn not_found(rt: &ResourceType, name: &str) -> ApiErr {
        err(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        )
    }

    fn coll(&mut self, rt: &ResourceType) -> &mut BTreeMap<Key, Stored> {
        self.objects
            .entry((rt.group.clone(), rt.plural.clone()))
            .or_default()
    }

    fn do_get(&mut self, p: &Parsed, rt: &ResourceType) -> Result<Answer, ApiErr> {
        let key = Self::key(p, rt);
        let s = self
            .coll(rt)
            .get(&key)
            .ok_or_else(|| Self::not_found(rt, &key.1))?;
        Ok(Answer::Json(200, Self::render(s, rt)))
    }

    fn selectors(p: &Parsed) -> Result<(LabelSelector, FieldSelector), ApiErr> {
        let l = LabelSelector::parse(p.q("labelSelector").unwrap_or("")).map_err(|e| {
            err(
                400,
                "BadRequest",
                format!("unable to parse requirement: {e}"),
            )
        })?;
        let f = FieldSelector::parse(p.q("fieldSelector").unwrap_or(""))
            .map_err(|e| err(400, "BadRequest", e))?;
        Ok((l, f))
    }

    fn matching(&mut self, p: &Parsed, rt: &ResourceType) -> Result<Vec<(Key, Value)>, ApiErr> {
        let (l, f) = Self::selectors(p)?;
        let ns = p.namespace.clone();
        let rt2 = rt.clone();
        Ok(self
            .coll(rt)
            .iter()
            .filter(|((n, _), _)| ns.as_ref().is_none_or(|x| x == n))
            .map(|(k, s)| (k.clone(), Self::render(s, &rt2)))
            .filter(|(_, v)| l.matches(v) && f.matches(v))
            .collect())
    }

    fn do_list(&mut self, p: &Parsed, rt: &ResourceType) -> Result<Answer, ApiErr> {
        let mut items = self.matching(p, rt)?;
        let mut list_rv = self.rv;
        if let Some(c) = p.q("continue").filter(|c| !c.is_empty()) {
            let bad = || {
                err(410, "Expired", "the provided continue parameter is too old to display a consistent list result")
            };
            let mut parts = c.splitn(3, ':');
            let rv: u64 = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
            let ns = parts.next().ok_or_else(bad)?.to_string();
            let name = parts.next().ok_or_else(bad)?.to_string();
            items.retain(|(k, _)| *k > (ns.clone(), name.clone()));
            list_rv = rv;
        }
        let mut cont = None;
        if let Some(limit) = p
            .q("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
        {
            if items.len() > limit {
                items.truncate(limit);
                if let Some(((ns, name), _)) = items.last() {
                    cont = Some(format!("{list_rv}:{ns}:{name}"));
                }
            }
        }
        let mut meta = json!({"resourceVersion": list_rv.to_string()});
        if let Some(c) = cont {
            meta["continue"] = Value::String(c);
        }
        Ok(Answer::Json(
            200,
            json!({
                "apiVersion": rt.api_version(),
                "kind": format!("{}List", rt.kind),
                "metadata": meta,
                "items": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
            }),
        ))
    }

    fn do_watch(&mut self, p: &Parsed, rt: &ResourceType) -> Result<Answer, ApiErr> {
        let (labels, fields) = Self::selectors(p)?;
        let timeout = p
            .q("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_WATCH_TIMEOUT);
        let bookmarks = p.q("allowWatchBookmarks") == Some("true");
        let rv = p.q("resourceVersion").unwrap_or("");
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let w = Watcher {
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            ns: p.namespace.clone(),
            labels,
            fields,
            metadata_only: p.metadata_only,
            tx,
        };
        let mut first = Vec::new();
        let initial = rv.is_empty() || rv == "0" || p.q("sendInitialEvents") == Some("true");
        if initial {
            let items = self.matching(p, rt)?;
            for (_, v) in items {
                first.extend_from_slice(&w.line_of("ADDED", &v));
            }
            if p.q("sendInitialEvents") == Some("true") && bookmarks {
                let bm = json!({
                    "apiVersion": rt.api_version(),
                    "kind": rt.kind,
                    "metadata": {
                        "resourceVersion": self.rv.to_string(),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                });
                first.extend_from_slice(&watch_line("BOOKMARK", &bm));
            }
        } else {
            let from: u64 = rv.parse().map_err(|_| {
                err(
                    400,
                    "BadRequest",
                    format!("invalid resource version: {rv:?}"),
                )
            })?;
            if from < self.forgotten {
                let st = status_body(
                    410,
                    "Expired",
                    &format!("too old resource version: {from} ({})", self.forgotten + 1),
                );
                let body = FakeBody::full(watch_line("ERROR", &st));
                return Ok(Answer::Stream(body));
            }
            for ev in self.history.iter().filter(|e| e.rv > from) {
                if let Some(line) = w.line(ev) {
                    first.extend_from_slice(&line);
                }
            }
        }
        self.watchers.push(w);
        Ok(Answer::Stream(FakeBody::stream(
            Bytes::from(first),
            rx,
            timeout,
        )))
    }

    fn dry_run(p: &Parsed) -> bool {
        p.q("dryRun") == Some("All")
    }

    /// Sets the server-owned metadata of a new object.
    fn admit_new(
        &mut self,
        rt: &ResourceType,
        v: &mut Value,
        ns: &str,
    ) -> Result<(String, String), ApiErr> {
        let Some(o) = v.as_object_mut() else {
            return Err(err(400, "BadRequest", "the body is not an object"));
        };
        o.insert("apiVersion".into(), Value::String(rt.api_version()));
        o.insert("kind".into(), Value::String(rt.kind.clone()));
        let uid = self.new_uid();
        let m = meta_mut(v);
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let gen = m.get("generateName").and_then(Value::as_str).unwrap_or("");
            if gen.is_empty() {
                return Err(err(422, "Invalid", format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", rt.kind)));
            }
            // Five characters derived from the uid counter (unique within this store).
            let n = self.uid;
            let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
            let suffix: String = (0..5)
                .map(|i| alphabet[((n / 27u64.pow(i)) % 27) as usize] as char)
                .collect();
            name = format!("{gen}{suffix}");
        }
        if !valid_name(&name) {
            return Err(err(422, "Invalid", format!("{} \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'", rt.kind)));
        }
        let m = meta_mut(v);
        if rt.namespaced {
            if let Some(bns) = m.get("namespace").and_then(Value::as_str) {
                if !bns.is_empty() && bns != ns {
                    return Err(err(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"));
                }
            }
            m.insert("namespace".into(), Value::String(ns.to_string()));
        } else {
            m.remove("namespace");
        }
        m.insert("name".into(), Value::String(name.clone()));
        m.insert("uid".into(), Value::String(uid));
        m.insert("creationTimestamp".into(), Value::String(now()));
        m.insert("generation".into(), json!(1));
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "resourceVersion",
            "selfLink",
        ] {
            m.remove(f);
        }
        if rt.status {
            let o = v
                .as_object_mut()
                .ok_or_else(|| err(400, "BadRequest", "not an object"))?;
            if rt.group.is_empty() && rt.plural == "pods" {
                o.insert("status".into(), json!({"phase": "Pending"}));
            } else {
                o.remove("status");
            }
        }
        Ok((ns.to_string(), name))
    }

    fn do_create(&mut self, p: &Parsed, rt: &ResourceType) -> Result<Answer, ApiErr> {
        let mut v = p.json_body()?;
        let ns = p.namespace.clone().unwrap_or_default();
        let key = self.admit_new(rt, &mut v, &ns)?;
        if crate::csr::is_csr(&rt.group, &rt.plural) {
            crate::csr::admit(&mut v, &self.serving_identity)?;
        }
        if self.coll(rt).contains_key(&key) {
            return Err(err(
                409,
                "AlreadyExists",
                format!("{} \"{}\" already exists", rt.qualified(), key.1),
            ));
        }
        let mut managers = Managers::new();
        ssa::record_update(&mut managers, &p.manager(), "", &json!({}), &v);
        if Self::dry_run(p) {
            return Ok(Answer::Json(201, v));
        }
        self.rv += 1;
        meta_mut(&mut v).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        let stored = Stored { obj: v, managers };
        let out = Self::render(&stored, rt);
        self.coll(rt).insert(key.clone(), stored);
        self.emit(rt, &key.0, EvType::Added, None, out.clone());
        Ok(Answer::Json(201, out))
    }

    /// Checks preconditions carried by `candidate` against `old`.
    fn preconditions(
        rt: &ResourceType,
        old: &Value,
        candidate: &Value,
        name: &str,
    ) -> Result<(), ApiErr> {
        if let Some(rv) = meta_str(candidate, "resourceVersion").filter(|r| !r.is_empty()) {
            if Some(rv) != meta_str(old, "resourceVersion") {
                return Err(err(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", rt.qualified())));
            }
        }
        if let Some(uid) = meta_str(candidate, "uid").filter(|r| !r.is_empty()) {
            if Some(uid) != meta_str(old, "uid") {
                return Err(err(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(old, "uid").unwrap_or("")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The object a write of `candidate` to `sub` makes of `old`: only `.status` through
    /// `/status`; everything but `.status` (for kinds with the subresource) and the server's
    /// metadata otherwise.
    fn restrict(
        rt: &ResourceType,
        old: &Value,
        candidate: Value,
        sub: Option<&str>,
    ) -> Result<Value, ApiErr> {
        if !candidate.is_object() {
            return Err(err(400, "BadRequest", "the body is not an object"));
        }
        if sub == Some("status") {
            let mut new = old.clone();
            let o = new
                .as_object_mut()
                .ok_or_else(|| err(500, "InternalError", "stored object is not an object"))?;
            match candidate.get("status") {
                Some(s) if !s.is_null() => {
                    o.insert("status".into(), s.clone());
                }
                _ => {
                    o.remove("status");
                }
            }
            return Ok(new);
        }
        let mut new = candidate;
        let o = new
            .as_object_mut()
            .ok_or_else(|| err(400, "BadRequest", "the body is not an object"))?;
        o.insert("apiVersion".into(), Value::String(rt.api_version()));
        o.insert("kind".into(), Value::String(rt.kind.clone()));
        if rt.status {
            match old.get("status") {
                Some(s) => {
                    o.insert("status".into(), s.clone());
                }
                None => {
                    o.remove("status");
                }
            }
        }
        let m = meta_mut(&mut new);
        m.remove("managedFields");
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
            "name",
            "namespace",
        ] {
            match old.get("metadata").and_then(|om| om.get(f)) {
                Some(v) => {
                    m.insert(f.into(), v.clone());
                }
                None => {
                    m.remove(f);
                }
            }
        }
        Ok(new)
    }

    /// Stores `new` in place of `old` (finalizer rules, no-op writes, generation,
    /// resourceVersion, events).
    fn commit(
        &mut self,
        p: &Parsed,
        rt: &ResourceType,
        key: &Key,
        old: &Value,
        mut new: Value,
        managers: Managers,
    ) -> Result<Answer, ApiErr> {
        let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
        if deleting {
            let of = finalizers(old);
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !of.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(err(422, "Invalid", format!("{} \"{}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}", rt.kind, key.1)));
            }
        }
        if comparable(&new) == comparable(old) {
            // A no-op write: nothing stored, no new resourceVersion.
            if let Some(s) = self.coll(rt).get_mut(key) {
                s.managers = managers;
                return Ok(Answer::Json(200, Self::render(s, rt)));
            }
            return Ok(Answer::Json(200, old.clone()));
        }
        if spec_part(&new) != spec_part(old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if Self::dry_run(p) {
            return Ok(Answer::Json(200, new));
        }
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        let stored = Stored { obj: new, managers };
        let out = Self::render(&stored, rt);
        let old_rendered = self.coll(rt).get(key).map(|s| Self::render(s, rt));
        if deleting && finalizers(&stored.obj).is_empty() {
            self.coll(rt).remove(key);
            self.emit(rt, &key.0, EvType::Deleted, old_rendered, out.clone());
        } else {
            self.coll(rt).insert(key.clone(), stored);
            self.emit(rt, &key.0, EvType::Modified, old_rendered, out.clone());
        }
        Ok(Answer::Json(200, out))
    }

    fn stored(&mut self, rt: &ResourceType, key: &Key) -> Result<(Value, Managers), ApiErr> {
        let s = self
            .coll(rt)
            .get(key)
            .ok_or_else(|| Self::not_found(rt, &key.1))?;
        Ok((s.obj.clone(), s.managers.clone()))
    }

    fn check_name(rt: &ResourceType, candidate: &Value, key: &Key) -> Result<(), ApiErr> {
        if let Some(n) = meta_str(candidate, "name").filter(|n| !n.is_empty()) {
            if n != key.1 {
                return Err(err(
                    400,
                    "BadRequest",
                    format!(
                        "the name of the object ({n}) does not match the name on the URL ({})",
                        key.1
                    ),
                ));
            }
        }
        if rt.namespaced {
            if let Some(n) = meta_str(candidate, "namespace").filter(|n| !n.is_empty()) {
                if n != key.0 {
                    return Err(err(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"));
                }
            }
        }
        Ok(())
    }

    fn do_update(&mut self, p: &Parsed, rt: &ResourceType) -> Result<Answer, ApiErr> {
        let candidate = p.json_body()?;
        if !candidate.is_object() {
            return Err(err(400, "BadRequest", "the body is not an object"));
        }
        // Custom resources refuse unconditional updates (built-in kinds allow them).
        if !builtin_group(&rt.group)
            && meta_str(&candidate, "resourceVersion").is_none_or(str::is_empty)
        {
            return Err(err(422, "Invalid", format!("{} \"{}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update", rt.kind, p.name.clone().unwrap_or_default())));
        }
        let key = Self::key(p, rt);
        Self::check_name(rt, &candidate, &key)?;
        let (old, mut managers) = self.stored(rt, &key)?;
        Self::preconditions(rt, &old, &candidate, &key.1)?;
        let sub = p.sub.as_deref();
        let new = self.restrict_write(p, rt, &old, candidate, sub)?;
        ssa::record_update(&mut managers, &p.manager(), sub.unwrap_or(""), &old, &new);
        self.commit(p, rt, &key, &old, new, managers)
    }

    fn do_patch(&mut self, p: &Parsed, rt: &ResourceType) -> Result<Answer, ApiErr> {
        let key = Self::key(p, rt);
        let sub = p.sub.as_deref();
        let ct = p.content_type.clone().unwrap_or_default();
        match ct.as_str() {
            "application/merge-patch+json" | "application/json-patch+json" => {
                let patch = p.json_body()?;
                let (old, mut managers) = self.stored(rt, &key)?;
                let mut candidate = old.clone();
                if ct == "application/merge-patch+json" {
                    if !patch.is_object() {
                        return Err(err(400, "BadRequest", "a merge patch must be a JSON object"));
                    }
                    json_patch::merge(&mut candidate, &patch);
                } else {
                    let ops: json_patch::Patch = serde_json::from_value(patch).map_err(|e| {
                        err(400, "BadRequest", format!("the body of the request was in an unknown format: {e}"))
                    })?;
                    apply_json_patch(&mut candidate, &ops).map_err(|e| match e.kind {
                        json_patch::PatchErrorKind::TestFailed => err(422, "Invalid", format!("the server rejected our request due to an error in our request: testing value failed: {e}")),
                        _ => err(422, "Invalid", format!("the server rejected our request due to an error in our request: {e}")),
                    })?;
                }
                Self::check_name(rt, &candidate, &key)?;
                Self::preconditions(rt, &old, &candidate, &key.1)?;
                let new = self.restrict_write(p, rt, &old, candidate, sub)?;
                ssa::record_update(&mut managers, &p.manager(), sub.unwrap_or(""), &old, &new);
                self.commit(p, rt, &key, &old, new, managers)
            }
            "application/apply-patch+yaml" | "application/apply-patch+json" => self.do_apply(p, rt, &key),
            "application/strategic-merge-patch+json" => Err(err(415, "UnsupportedMediaType", "strategic merge patch is not implemented by the fake API server")),
            other => Err(err(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"))),
        }
    }

    /// [`Self::restrict`], with the rules of CertificateSigningRequests (and the signer
    /// verbs they need, checked as the real server's admission does).
    fn restrict_write(
        &self,
        p: &Parsed,
        rt: &ResourceType,
        old: &Value,
        candidate: Value,
        sub: Option<&str>,
    ) -> Result<Value, ApiErr> {
        if !crate::csr::is_csr(&rt.group, &rt.plural) {
            return Self::restrict(rt, old, candidate, sub);
        }
        let main = match sub {
            None => Some(Self::restrict(rt, old, candidate.clone(), None)?),
            Some(_) => None,
        };
        let (new, verb) = crate::csr::restrict(old, &candidate, sub, main)?;
        if let Some(verb) = verb {
            let mut call = p.call(0);
            call.verb = verb.to_string();
            call.resource = "signers".into();
            call.subresource = None;
            call.namespace = None;
            call.name = Some(crate::csr::signer(old));
            call.body = None;
            self.authorize(&call)?;
        }
        Ok(new)
    }

    fn do_apply(&mut self, p: &Parsed, rt: &ResourceType, key: &Key) -> Result<Answer, ApiErr> {
        if crate::csr::is_csr(&rt.group, &rt.plural) {
            return Err(err(
                415,
                "UnsupportedMediaType",
                "server-side apply of CertificateSigningRequests is not modelled by the fake API server",
            ));
        }
        let manager = p
            .q("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                err(
                    400,
                    "BadRequest",
                    "PATCH requests with apply must have a fieldManager",
                )
            })?
            .to_string();
        let force = p.q("force") == Some("true");
        let mut applied = p.json_body()?;
        if !applied.is_object() {
            return Err(err(
                400,
                "BadRequest",
                "an apply configuration must be an object",
            ));
        }
        if applied.get("apiVersion").and_then(Value::as_str) != Some(rt.api_version().as_str())
            || applied.get("kind").and_then(Value::as_str) != Some(rt.kind.as_str())
        {
            return Err(err(
                400,
                "BadRequest",
                format!(
                    "the apply configuration must have apiVersion {} and kind {}",
                    rt.api_version(),
                    rt.kind
                ),
            ));
        }
        Self::check_name(rt, &applied, key)?;
        if applied
            .pointer("/metadata/managedFields")
            .is_some_and(|m| !m.is_null())
        {
            return Err(err(400, "BadRequest", "metadata.managedFields must be nil"));
        }
        let sub = p.sub.as_deref();
        let existing = self
            .coll(rt)
            .get(key)
            .map(|s| (s.obj.clone(), s.managers.clone()));
        let (old, mut managers, creating) = match existing {
            Some((o, m)) => (o, m, false),
            None => {
                if sub.is_some() {
                    return Err(Self::not_found(rt, &key.1));
                }
                // An apply that creates is also authorized as a create.
                let mut as_create = p.call(0);
                as_create.verb = "create".into();
                self.authorize(&as_create)?;
                let mut v = json!({"metadata": {"name": key.1}});
                self.admit_new(rt, &mut v, &key.0)?;
                (v, Managers::new(), true)
            }
        };
        if !creating {
            Self::preconditions(rt, &old, &applied, &key.1)?;
        }
        // What this endpoint may change.
        {
            let o = applied
                .as_object_mut()
                .ok_or_else(|| err(400, "BadRequest", "not an object"))?;
            if sub == Some("status") {
                o.retain(|k, _| k == "status" || k == "apiVersion" || k == "kind");
            } else if rt.status {
                o.remove("status");
            }
        }
        if let Some(Value::Object(m)) = applied.get_mut("metadata") {
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
                "managedFields",
                "name",
                "namespace",
                "selfLink",
            ] {
                m.remove(f);
            }
        }
        let mut new = old.clone();
        ssa::apply(
            &mut new,
            &mut managers,
            &applied,
            &manager,
            sub.unwrap_or(""),
            force,
        )
        .map_err(|cs| {
            let list = cs
                .iter()
                .map(|c| format!("conflict with \"{}\": {}", c.manager, ssa::render(&c.path)))
                .collect::<Vec<_>>()
                .join("\n- ");
            err(
                409,
                "Conflict",
                format!(
                    "Apply failed with {} conflict{}: {list}",
                    cs.len(),
                    if cs.len() == 1 { "" } else { "s" }
                ),
            )
        })?;
        if creating {
            if Self::dry_run(p) {
                return Ok(Answer::Json(201, new));
            }
            self.rv += 1;
            meta_mut(&mut new).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
            let stored = Stored { obj: new, managers };
            let out = Self::render(&stored, rt);
            self.coll(rt).insert(key.clone(), stored);
            self.emit(rt, &key.0, EvType::Added, None, out.clone());
            return Ok(Answer::Json(201, out));
        }
        self.commit(p, rt, key, &old, new, managers)
    }

    fn delete_one(
        &mut self,
        p: &Parsed,
        rt: &ResourceType,
        key: &Key,
        opts: &Value,
    ) -> Result<(u16, Value), ApiErr> {
        let (old, managers) = self.stored(rt, key)?;
        if let Some(pre) = opts.get("preconditions") {
            let mut cand = json!({"metadata": {}});
            if let Some(rv) = pre.get("resourceVersion") {
                cand["metadata"]["resourceVersion"] = rv.clone();
            }
            if let Some(uid) = pre.get("uid") {
                cand["metadata"]["uid"] = uid.clone();
            }
            Self::preconditions(rt, &old, &cand, &key.1)?;
        }
        let rendered_old = Self::render(
            &Stored {
                obj: old.clone(),
                managers: managers.clone(),
            },
            rt,
        );
        if Self::dry_run(p) {
            return Ok((200, rendered_old));
        }
        if !finalizers(&old).is_empty() {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok((202, rendered_old));
            }
            let mut new = old.clone();
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), Value::String(now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            self.rv += 1;
            meta_mut(&mut new).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
            let stored = Stored { obj: new, managers };
            let out = Self::render(&stored, rt);
            self.coll(rt).insert(key.clone(), stored);
            self.emit(
                rt,
                &key.0,
                EvType::Modified,
                Some(rendered_old),
                out.clone(),
            );
            return Ok((202, out));
        }
        self.coll(rt).remove(key);
        self.rv += 1;
        let mut out = rendered_old;
        meta_mut(&mut out).insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        self.emit(rt, &key.0, EvType::Deleted, None, out.clone());
        Ok((200, out))
    }

    /// DeleteOptions of a DELETE (an object, or no body).
    fn delete_options(p: &Parsed) -> Result<Value, ApiErr> {
        match &p.body {
            None => Ok(json!({})),
            Some(_) => {
                let v = p.json_body()?;
                if !v.is_object() {
                    return Err(err(400, "BadRequest", "DeleteOptions must be an object"));
                }
                Ok(v)
            }
        }
    }

    fn do_delete(&mut self, p: &Parsed, rt: &ResourceType) -> Result<Answer, ApiErr> {
        let opts = Self::delete_options(p)?;
        let key = Self::key(p, rt);
        let (code, v) = self.delete_one(p, rt, &key, &opts)?;
        Ok(Answer::Json(code, v))
    }

    fn do_delete_collection(&mut self, p: &Parsed, rt: &ResourceType) -> Result<Answer, ApiErr> {
        let opts = Self::delete_options(p)?;
        let keys: Vec<Key> = self.matching(p, rt)?.into_iter().map(|(k, _)| k).collect();
        let mut items = Vec::new();
        for k in keys {
            let (_, v) = self.delete_one(p, rt, &k, &opts)?;
            items.push(v);
        }
        Ok(Answer::Json(
            200,
            json!({
                "apiVersion": rt.api_version(),
                "kind": format!("{}List", rt.kind),
                "metadata": {"resourceVersion": self.rv.to_string()},
                "items": items,
            }),
        ))
    }
}
