//! certificates.k8s.io/v1 CertificateSigningRequests as kube-apiserver treats them:
//! - create: `spec.username`, `uid`, `groups` and `extra` come from the caller's identity
//!   (whatever the body says); `spec.request` must be a PEM `CERTIFICATE REQUEST`,
//!   `signerName` a qualified name, `usages` non-empty, `expirationSeconds` ≥ 600;
//! - updates of the main resource keep `spec` (immutable: silently kept, as the real
//!   server's strategy does) and `status`;
//! - `/approval` writes only `status.conditions`; the caller needs the `approve` verb on
//!   `signers` named by the signer (`certificates.k8s.io`); `Approved` and `Denied` exclude
//!   each other and, once set, cannot be removed;
//! - `/status` writes `status.certificate` and the other conditions, never `Approved` or
//!   `Denied`; setting the certificate needs the `sign` verb on the signer, an `Approved`
//!   request that is neither `Denied` nor `Failed`, PEM `CERTIFICATE` blocks only, and it
//!   cannot change once set.

use crate::server::{err, ApiErr};
use crate::Identity;
use base64::Engine as _;
use serde_json::{json, Value};

/// Whether `(group, plural)` is the CSR resource.
pub(crate) fn is_csr(group: &str, plural: &str) -> bool {
    group == "certificates.k8s.io" && plural == "certificatesigningrequests"
}

fn invalid(name: &str, msg: impl std::fmt::Display) -> ApiErr {
    err(
        422,
        "Invalid",
        format!("CertificateSigningRequest.certificates.k8s.io \"{name}\" is invalid: {msg}"),
    )
}

fn name_of(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The PEM labels of `text`'s blocks, and whether each decodes as base64.
fn pem_labels(text: &str) -> Option<Vec<String>> {
    let mut labels = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if current.is_some() {
                return None;
            }
            current = Some((label.to_string(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            let (begun, body) = current.take()?;
            if begun != label {
                return None;
            }
            base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .ok()
                .filter(|d| !d.is_empty())?;
            labels.push(label.to_string());
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
        }
    }
    current.is_none().then_some(labels)
}

/// The decoded bytes of a base64 field (`spec.request`, `status.certificate`).
fn bytes_field(v: Option<&Value>) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v?.as_str()?)
        .ok()
}

/// Checks a new request and fills in who made it.
pub(crate) fn admit(v: &mut Value, who: &Identity) -> Result<(), ApiErr> {
    let name = name_of(v);
    let spec = v
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| invalid(&name, "spec: Required value"))?;
    let request = bytes_field(spec.get("request"))
        .ok_or_else(|| invalid(&name, "spec.request: Invalid value: not base64 data"))?;
    match pem_labels(&String::from_utf8_lossy(&request)).as_deref() {
        Some([one]) if one == "CERTIFICATE REQUEST" => {}
        _ => {
            return Err(invalid(
                &name,
                "spec.request: Invalid value: \"\": PEM block type must be CERTIFICATE REQUEST",
            ))
        }
    }
    let signer = spec.get("signerName").and_then(Value::as_str).unwrap_or("");
    let qualified = signer
        .split_once('/')
        .is_some_and(|(d, p)| d.contains('.') && !p.is_empty() && !p.contains('/'));
    if !qualified {
        return Err(invalid(
            &name,
            format!("spec.signerName: Invalid value: {signer:?}: must be a fully qualified domain and path of the form 'example.com/signer-name'"),
        ));
    }
    if spec
        .get("usages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return Err(invalid(&name, "spec.usages: Required value"));
    }
    if let Some(e) = spec.get("expirationSeconds").filter(|e| !e.is_null()) {
        if e.as_i64().is_none_or(|s| s < 600) {
            return Err(invalid(
                &name,
                format!("spec.expirationSeconds: Invalid value: {e}: may not specify a duration less than 600 seconds (10 minutes)"),
            ));
        }
    }
    spec.insert("username".into(), json!(who.username));
    spec.insert("uid".into(), json!(who.uid));
    spec.insert("groups".into(), json!(who.groups));
    if who.extra.is_empty() {
        spec.remove("extra");
    } else {
        spec.insert("extra".into(), json!(who.extra));
    }
    Ok(())
}

fn conditions(v: &Value) -> Vec<Value> {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn has(conds: &[Value], ty: &str) -> bool {
    conds
        .iter()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

fn of_types(conds: &[Value], types: &[&str]) -> Vec<Value> {
    conds
        .iter()
        .filter(|c| c["type"].as_str().is_some_and(|t| types.contains(&t)))
        .cloned()
        .collect()
}

/// The signer named by the stored request.
pub(crate) fn signer(old: &Value) -> String {
    old.pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// What a write through `sub` makes of `old`, and which signer verb it needs
/// (`approve`/`sign`), if any. `restricted` is what the generic rules made of the candidate
/// for the main resource.
pub(crate) fn restrict(
    old: &Value,
    candidate: &Value,
    sub: Option<&str>,
    restricted_main: Option<Value>,
) -> Result<(Value, Option<&'static str>), ApiErr> {
    let name = name_of(old);
    let old_conds = conditions(old);
    match sub {
        None => {
            // Spec and status are the server's: only metadata changes.
            let mut new = restricted_main.unwrap_or_else(|| old.clone());
            if let (Some(o), Some(spec)) = (new.as_object_mut(), old.get("spec")) {
                o.insert("spec".into(), spec.clone());
            }
            Ok((new, None))
        }
        Some("approval") => {
            let new_conds = conditions(candidate);
            if has(&new_conds, "Approved") && has(&new_conds, "Denied") {
                return Err(invalid(
                    &name,
                    "status.conditions: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
                ));
            }
            for ty in ["Approved", "Denied"] {
                if has(&old_conds, ty) && !has(&new_conds, ty) {
                    return Err(invalid(
                        &name,
                        format!("status.conditions: Forbidden: updates may not remove a condition of type {ty:?}"),
                    ));
                }
            }
            let mut new = old.clone();
            new["status"] = json!({});
            if let Some(s) = old.get("status").filter(|s| s.is_object()) {
                new["status"] = s.clone();
            }
            new["status"]["conditions"] = Value::Array(new_conds.clone());
            let changed = of_types(&new_conds, &["Approved", "Denied"])
                != of_types(&old_conds, &["Approved", "Denied"]);
            Ok((new, changed.then_some("approve")))
        }
        Some("status") => {
            let new_conds = conditions(candidate);
            if of_types(&new_conds, &["Approved", "Denied"])
                != of_types(&old_conds, &["Approved", "Denied"])
            {
                return Err(invalid(
                    &name,
                    "status.conditions: Forbidden: Approved and Denied conditions are set through the approval subresource",
                ));
            }
            let old_cert = old.pointer("/status/certificate").filter(|c| !c.is_null());
            let new_cert = candidate
                .pointer("/status/certificate")
                .filter(|c| !c.is_null());
            let mut verb = None;
            if new_cert != old_cert {
                if old_cert.is_some_and(|c| c.as_str() != Some("")) {
                    return Err(invalid(
                        &name,
                        "status.certificate: Forbidden: updates may not modify existing certificate content",
                    ));
                }
                if !has(&old_conds, "Approved")
                    || has(&new_conds, "Denied")
                    || has(&new_conds, "Failed")
                {
                    return Err(invalid(
                        &name,
                        "status.certificate: Forbidden: certificate can only be set if an Approved condition is present and Denied and Failed conditions are not",
                    ));
                }
                let pem = bytes_field(new_cert).ok_or_else(|| {
                    invalid(&name, "status.certificate: Invalid value: not base64 data")
                })?;
                match pem_labels(&String::from_utf8_lossy(&pem)) {
                    Some(l) if !l.is_empty() && l.iter().all(|x| x == "CERTIFICATE") => {}
                    _ => {
                        return Err(invalid(
                            &name,
                            "status.certificate: Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block and nothing else",
                        ))
                    }
                }
                verb = Some("sign");
            }
            let mut new = old.clone();
            let mut status = candidate
                .get("status")
                .filter(|s| s.is_object())
                .cloned()
                .unwrap_or_else(|| json!({}));
            status["conditions"] = Value::Array(new_conds);
            new["status"] = status;
            Ok((new, verb))
        }
        Some(other) => Err(err(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({other})"),
        )),
    }
}
