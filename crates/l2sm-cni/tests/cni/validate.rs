//! A validator for CNI results and errors (spec 0.3.0 to 1.1.0), written from the spec's
//! result and error sections; strict about what the spec defines, and about unknown keys.

use serde_json::{Map, Value};
use std::net::IpAddr;

type Obj = Map<String, Value>;

fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Obj, String> {
    v.as_object()
        .ok_or_else(|| format!("{path} must be an object, is {v}"))
}

fn only_keys(o: &Obj, allowed: &[&str], path: &str) -> Result<(), String> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{path}: unexpected key {k:?} (allowed: {allowed:?})"
        )),
        None => Ok(()),
    }
}

fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| format!("{path} must be a string, is {v}"))
}

fn cidr(v: &Value, path: &str) -> Result<ipnet::IpNet, String> {
    let s = string(v, path)?;
    s.parse()
        .map_err(|_| format!("{path}: {s:?} is not an address in CIDR notation"))
}

fn ip(v: &Value, path: &str) -> Result<IpAddr, String> {
    let s = string(v, path)?;
    s.parse()
        .map_err(|_| format!("{path}: {s:?} is not an IP address"))
}

fn uint(v: &Value, path: &str) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| format!("{path} must be a non-negative integer, is {v}"))
}

fn mac(v: &Value, path: &str) -> Result<(), String> {
    let s = string(v, path)?;
    let parts: Vec<&str> = s.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!("{path}: {s:?} is not a MAC address"))
    }
}

fn array<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("{path} must be an array, is {v}"))
}

fn string_array(v: &Value, path: &str) -> Result<Vec<String>, String> {
    array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, s)| string(s, &format!("{path}[{i}]")).map(str::to_string))
        .collect()
}

const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Checks an ADD result against the spec of `version`.
pub(crate) fn validate_result(v: &Value, version: &str) -> Result<(), String> {
    if !VERSIONS.contains(&version) {
        return Err(format!("validator does not know version {version}"));
    }
    let pre_1 = version.starts_with("0.");
    let v11 = version == "1.1.0";
    let top = obj(v, "result")?;
    only_keys(
        top,
        &["cniVersion", "interfaces", "ips", "routes", "dns"],
        "result",
    )?;
    let got = string(
        top.get("cniVersion").ok_or("cniVersion is missing")?,
        "cniVersion",
    )?;
    if got != version {
        return Err(format!("cniVersion is {got:?}, expected {version:?}"));
    }

    let mut n_interfaces = 0;
    if let Some(list) = top.get("interfaces") {
        let list = array(list, "interfaces")?;
        n_interfaces = list.len();
        for (i, itf) in list.iter().enumerate() {
            let path = format!("interfaces[{i}]");
            let o = obj(itf, &path)?;
            let mut allowed = vec!["name", "mac", "sandbox"];
            if v11 {
                allowed.extend(["mtu", "socketPath", "pciID"]);
            }
            only_keys(o, &allowed, &path)?;
            let name = string(
                o.get("name").ok_or(format!("{path}.name is missing"))?,
                &format!("{path}.name"),
            )?;
            let bad_name = name.is_empty()
                || name.len() > 15
                || name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace());
            if bad_name {
                return Err(format!("{path}.name {name:?} is not an interface name"));
            }
            if let Some(m) = o.get("mac") {
                mac(m, &format!("{path}.mac"))?;
            }
            if let Some(s) = o.get("sandbox") {
                string(s, &format!("{path}.sandbox"))?;
            }
            if let Some(m) = o.get("mtu") {
                if uint(m, &format!("{path}.mtu"))? == 0 {
                    return Err(format!("{path}.mtu must be positive"));
                }
            }
            for k in ["socketPath", "pciID"] {
                if let Some(s) = o.get(k) {
                    string(s, &format!("{path}.{k}"))?;
                }
            }
        }
    }

    if let Some(list) = top.get("ips") {
        for (i, entry) in array(list, "ips")?.iter().enumerate() {
            let path = format!("ips[{i}]");
            let o = obj(entry, &path)?;
            let mut allowed = vec!["address", "gateway", "interface"];
            if pre_1 {
                allowed.push("version");
            }
            only_keys(o, &allowed, &path)?;
            let addr = cidr(
                o.get("address")
                    .ok_or(format!("{path}.address is missing"))?,
                &format!("{path}.address"),
            )?;
            if pre_1 {
                let ver = string(
                    o.get("version")
                        .ok_or(format!("{path}.version is required before 1.0.0"))?,
                    &format!("{path}.version"),
                )?;
                let want = if addr.addr().is_ipv4() { "4" } else { "6" };
                if ver != want {
                    return Err(format!("{path}.version is {ver:?} but {addr} is IPv{want}"));
                }
            }
            if let Some(g) = o.get("gateway") {
                let g = ip(g, &format!("{path}.gateway"))?;
                if g.is_ipv4() != addr.addr().is_ipv4() {
                    return Err(format!("{path}: gateway {g} is not of {addr}'s family"));
                }
            }
            if let Some(idx) = o.get("interface") {
                let idx = uint(idx, &format!("{path}.interface"))?;
                if idx as usize >= n_interfaces {
                    return Err(format!(
                        "{path}.interface {idx} points past the {n_interfaces} interfaces"
                    ));
                }
            }
        }
    }

    if let Some(list) = top.get("routes") {
        for (i, r) in array(list, "routes")?.iter().enumerate() {
            let path = format!("routes[{i}]");
            let o = obj(r, &path)?;
            let mut allowed = vec!["dst", "gw"];
            if v11 {
                allowed.extend(["mtu", "advmss", "priority", "table", "scope"]);
            }
            only_keys(o, &allowed, &path)?;
            let dst = cidr(
                o.get("dst").ok_or(format!("{path}.dst is missing"))?,
                &format!("{path}.dst"),
            )?;
            if let Some(gw) = o.get("gw") {
                let gw = ip(gw, &format!("{path}.gw"))?;
                if gw.is_ipv4() != dst.addr().is_ipv4() {
                    return Err(format!("{path}: gw {gw} is not of {dst}'s family"));
                }
            }
            for k in ["mtu", "advmss", "priority", "table", "scope"] {
                if let Some(n) = o.get(k) {
                    uint(n, &format!("{path}.{k}"))?;
                }
            }
        }
    }

    if let Some(dns) = top.get("dns") {
        let o = obj(dns, "dns")?;
        only_keys(o, &["nameservers", "domain", "search", "options"], "dns")?;
        if let Some(ns) = o.get("nameservers") {
            for (i, s) in string_array(ns, "dns.nameservers")?.iter().enumerate() {
                ip(&Value::from(s.as_str()), &format!("dns.nameservers[{i}]"))?;
            }
        }
        if let Some(d) = o.get("domain") {
            string(d, "dns.domain")?;
        }
        for k in ["search", "options"] {
            if let Some(l) = o.get(k) {
                string_array(l, &format!("dns.{k}"))?;
            }
        }
    }
    Ok(())
}

/// Checks a CNI error object; returns its code.
pub(crate) fn validate_error(v: &Value) -> Result<u64, String> {
    let o = obj(v, "error")?;
    only_keys(o, &["cniVersion", "code", "msg", "details"], "error")?;
    if let Some(ver) = o.get("cniVersion") {
        let ver = string(ver, "cniVersion")?;
        if !VERSIONS.contains(&ver) {
            return Err(format!("error cniVersion {ver:?} is not a spec version"));
        }
    }
    let code = uint(o.get("code").ok_or("code is missing")?, "code")?;
    if code == 0 {
        return Err("code 0 is not an error".into());
    }
    let msg = string(o.get("msg").ok_or("msg is missing")?, "msg")?;
    if msg.trim().is_empty() {
        return Err("msg is empty".into());
    }
    if let Some(d) = o.get("details") {
        string(d, "details")?;
    }
    Ok(code)
}
