//! ADD, DEL, CHECK, VERSION, STATUS and GC, each one or two calls to the node agent.

use crate::config::{NetConf, Version};
use crate::env::{attachment_id, CniEnv, Command};
use crate::error::{
    config, internal, CniError, INCOMPATIBLE_VERSION, INTERNAL, INVALID_CONFIG,
    LIMITED_CONNECTIVITY, NOT_AVAILABLE, TRY_AGAIN_LATER, UNKNOWN_CONTAINER,
};
use crate::netif;
use crate::result::{interface, CniResult, IpConfig};
use l2sm_agent_api::{call, AgentRequest, AttachRequest, Attachment, CallError};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Attach and detach wait for OVS and the controller; the runtime's own timeout is longer.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one command; `Some` is the JSON to print on success.
pub(crate) fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(version_answer(stdin)));
    }
    let conf = NetConf::parse(stdin, &env.args)?;
    // Commands newer than the configuration's version do not exist for it (as libcni's skel).
    let since = match env.command {
        Command::Check => Some(("CHECK", Version::V040)),
        Command::Status => Some(("STATUS", Version::V110)),
        Command::Gc => Some(("GC", Version::V110)),
        _ => None,
    };
    if let Some((name, since)) = since.filter(|(_, since)| conf.version < *since) {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "{name} needs cniVersion {} or later; the configuration says {}",
                since.as_str(),
                conf.version.as_str()
            ),
        ));
    }
    match env.command {
        Command::Add => add(env, &conf).map(Some),
        Command::Del => del(env, &conf).map(|()| None),
        Command::Check => check(env, &conf).map(|()| None),
        Command::Status => status(&conf).map(|()| None),
        Command::Gc => gc(&conf).map(|()| None),
        Command::Version => Ok(Some(version_answer(stdin))),
    }
}

/// VERSION: the versions this plugin speaks, written in the caller's version when known.
fn version_answer(stdin: &[u8]) -> Value {
    let v = crate::config::peek_version(stdin).unwrap_or(Version::LATEST);
    json!({
        "cniVersion": v.as_str(),
        "supportedVersions": Version::ALL.map(Version::as_str),
    })
}

fn agent_unreachable(socket: &Path, source: &std::io::Error) -> CniError {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    let msg = if matches!(source.kind(), WouldBlock | TimedOut) {
        format!(
            "the L2S-M node agent at {} did not answer in time",
            socket.display()
        )
    } else {
        format!(
            "the L2S-M node agent at {} is not reachable; is `l2sm agent` running on this node?",
            socket.display()
        )
    };
    CniError::new(TRY_AGAIN_LATER, msg).with_details(source.to_string())
}

/// Calls the agent; unreachable means "try again later", a bad answer is internal, and a
/// refusal goes to `refused` to be explained.
fn agent_call(
    conf: &NetConf,
    req: &AgentRequest,
    timeout: Duration,
    refused: impl FnOnce(String) -> CniError,
) -> Result<Value, CniError> {
    call(&conf.agent_socket, req, timeout).map_err(|e| match e {
        CallError::Unreachable { path, source } => agent_unreachable(&path, &source),
        CallError::Protocol(m) => internal(format!("the L2S-M node agent gave a bad answer: {m}")),
        CallError::Refused(m) => refused(m),
    })
}

/// Failures that go away on their own: the controller is unreachable, the node's switch is
/// slow to apply a change, or another request for the same attachment is still running.
fn is_controller_outage(msg: &str) -> bool {
    msg.contains("controller API at")
        || msg.contains("connecting to the controller")
        || msg.contains("connect to the controller")
        || msg.contains("did not apply the change")
        || msg.contains("; retry")
}

/// Turns the agent's refusal of an attach into the closest CNI error.
fn attach_refused(msg: String, conf: &NetConf, ifname: &str, netns: &str) -> CniError {
    let (code, text) = if msg.contains("unknown network") {
        (
            INVALID_CONFIG,
            format!(
                "network {:?} does not exist in L2S-M (create it before attaching pods)",
                conf.network
            ),
        )
    } else if msg.contains("already exists on network") {
        (
            INTERNAL,
            format!("this container's {ifname} is already attached to another network"),
        )
    } else if msg.contains(&format!("link {ifname:?} already exists")) {
        (
            INTERNAL,
            format!("cannot create interface {ifname}: an interface with that name already exists in the container ({netns})"),
        )
    } else if msg.contains("pod network namespace") {
        (
            UNKNOWN_CONTAINER,
            format!("the container's network namespace {netns} is gone"),
        )
    } else if is_controller_outage(&msg) {
        (
            TRY_AGAIN_LATER,
            "the node agent cannot reach the L2S-M controller right now".to_string(),
        )
    } else {
        (
            INTERNAL,
            format!("the L2S-M node agent could not attach {ifname}"),
        )
    };
    CniError::new(code, text).with_details(msg)
}

fn add(env: &CniEnv, conf: &NetConf) -> Result<Value, CniError> {
    let id = env.attachment_id()?;
    let ifname = env.ifname()?;
    let netns = env.netns()?;
    netif::open_netns(Path::new(netns)).map_err(|e| {
        CniError::new(
            UNKNOWN_CONTAINER,
            format!("the container's network namespace is unusable: {e}"),
        )
    })?;
    let prev = conf
        .prev_result
        .as_ref()
        .map(CniResult::from_prev)
        .transpose()?;
    if let Some(allowed) = &conf.mirror_namespace {
        if env.args.pod_namespace.as_deref() != Some(allowed.as_str()) {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!(
                    "only pods of namespace {allowed:?} may mirror network {:?}; this pod's namespace is {:?}",
                    conf.network,
                    env.args.pod_namespace.as_deref().unwrap_or("unknown")
                ),
            ));
        }
        if !conf.addresses.is_empty() {
            return Err(CniError::new(
                INVALID_CONFIG,
                "a mirror port gets no addresses: it only receives copies of the network's frames",
            ));
        }
    }
    let req = AgentRequest::Attach(AttachRequest {
        attachment_id: id,
        netns: PathBuf::from(netns),
        ifname: ifname.to_string(),
        network: conf.network.clone(),
        mac: conf.mac.clone(),
        ips: conf.addresses.iter().map(|a| a.net).collect(),
        routes: conf.routes.clone(),
        mtu: conf.mtu,
        pod: env.args.pod(),
        port_security: conf.port_security,
        mirror: conf.mirror_namespace.is_some(),
    });
    let answer = agent_call(conf, &req, CHANGE_TIMEOUT, |m| {
        attach_refused(m, conf, ifname, netns)
    })?;
    let att: Attachment = serde_json::from_value(answer).map_err(|e| {
        internal(format!(
            "the L2S-M node agent's attach answer is malformed: {e}"
        ))
    })?;

    // The node-side MAC, when this process runs where the agent plumbs (the node's namespace).
    let host_mac = netif::links_here()
        .ok()
        .and_then(|mut l| l.remove(&att.host_ifname))
        .and_then(|l| l.mac);
    let ours = CniResult {
        interfaces: vec![
            interface(&att.host_ifname, host_mac.as_deref(), None, None),
            interface(&att.ifname, Some(&att.mac), Some(netns), conf.mtu),
        ],
        ips: att
            .ips
            .iter()
            .map(|net| IpConfig {
                address: *net,
                gateway: conf
                    .addresses
                    .iter()
                    .find(|a| a.net == *net)
                    .and_then(|a| a.gateway),
                interface: Some(1),
            })
            .collect(),
        routes: conf
            .routes
            .iter()
            .map(|r| match r.gw {
                Some(gw) => json!({"dst": r.dst.to_string(), "gw": gw.to_string()}),
                None => json!({"dst": r.dst.to_string()}),
            })
            .collect(),
        dns: conf.dns.clone(),
    };
    Ok(prev.unwrap_or_default().append(ours).to_json(conf.version))
}

fn del(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    // CNI_NETNS may be missing or already gone: the agent cleans the node side regardless.
    let id = env.attachment_id()?;
    agent_call(
        conf,
        &AgentRequest::Detach {
            attachment_id: id.clone(),
        },
        CHANGE_TIMEOUT,
        |m| {
            if is_controller_outage(&m) {
                CniError::new(
                    TRY_AGAIN_LATER,
                    "the node agent cannot reach the L2S-M controller right now",
                )
                .with_details(m)
            } else {
                internal(format!("the L2S-M node agent could not detach {id}")).with_details(m)
            }
        },
    )?;
    Ok(())
}

fn list(conf: &NetConf) -> Result<Vec<Attachment>, CniError> {
    let answer = agent_call(conf, &AgentRequest::List, QUERY_TIMEOUT, |m| {
        internal("the L2S-M node agent could not list its attachments").with_details(m)
    })?;
    serde_json::from_value(answer)
        .map_err(|e| internal(format!("the L2S-M node agent's list is malformed: {e}")))
}

fn same_mac(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn check(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    let id = env.attachment_id()?;
    let ifname = env.ifname()?;
    let netns = env.netns()?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        config("CHECK needs \"prevResult\" (the result of the ADD) in the configuration")
    })?;
    let prev = CniResult::from_prev(prev)?;
    let mismatch = |msg: String| CniError::new(INTERNAL, msg);
    let index = prev
        .interfaces
        .iter()
        .position(|i| {
            i.get("name").and_then(Value::as_str) == Some(ifname) && i.contains_key("sandbox")
        })
        .ok_or_else(|| {
            mismatch(format!(
                "prevResult lists no container interface named {ifname}"
            ))
        })?;
    let expected = &prev.interfaces[index];
    if let Some(sb) = expected.get("sandbox").and_then(Value::as_str) {
        if sb != netns {
            return Err(mismatch(format!(
                "prevResult puts {ifname} in {sb}, not in CNI_NETNS {netns}"
            )));
        }
    }
    netif::open_netns(Path::new(netns)).map_err(|e| {
        CniError::new(
            UNKNOWN_CONTAINER,
            format!("the container's network namespace is unusable: {e}"),
        )
    })?;

    let att = list(conf)?
        .into_iter()
        .find(|a| a.attachment_id == id)
        .ok_or_else(|| {
            mismatch(format!(
                "the L2S-M node agent has no attachment {id}: {ifname} was removed or never added"
            ))
        })?;
    if att.network != conf.network {
        return Err(mismatch(format!(
            "{ifname} is attached to network {:?}, not {:?}",
            att.network, conf.network
        )));
    }
    if let Some(mac) = expected.get("mac").and_then(Value::as_str) {
        if !same_mac(mac, &att.mac) {
            return Err(mismatch(format!(
                "{ifname} has MAC {} in the agent's records, prevResult says {mac}",
                att.mac
            )));
        }
    }
    let expected_ips: Vec<_> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .map(|ip| ip.address)
        .collect();
    for ip in &expected_ips {
        if !att.ips.contains(ip) {
            return Err(mismatch(format!(
                "{ifname} was not attached with address {ip} listed in prevResult"
            )));
        }
    }

    let links = netif::links_in(Path::new(netns)).map_err(|e| {
        CniError::new(
            UNKNOWN_CONTAINER,
            format!("cannot look into the container: {e}"),
        )
    })?;
    let link = links.get(ifname).ok_or_else(|| {
        mismatch(format!(
            "interface {ifname} is missing from the container ({netns})"
        ))
    })?;
    if !link.mac.as_deref().is_some_and(|m| same_mac(m, &att.mac)) {
        return Err(mismatch(format!(
            "interface {ifname} in the container has MAC {}, expected {}",
            link.mac.as_deref().unwrap_or("none"),
            att.mac
        )));
    }
    if !link.up {
        return Err(mismatch(format!(
            "interface {ifname} in the container is down"
        )));
    }
    for ip in &expected_ips {
        if !link.addresses.contains(ip) {
            return Err(mismatch(format!(
                "interface {ifname} in the container lacks address {ip}"
            )));
        }
    }
    Ok(())
}

fn status(conf: &NetConf) -> Result<(), CniError> {
    match call(&conf.agent_socket, &AgentRequest::Status, STATUS_TIMEOUT) {
        Ok(_) => Ok(()),
        Err(CallError::Unreachable { path, source }) => Err(CniError::new(
            NOT_AVAILABLE,
            format!("the L2S-M node agent at {} is not reachable; is `l2sm agent` running on this node?", path.display()),
        )
        .with_details(source.to_string())),
        Err(CallError::Refused(m)) => Err(CniError::new(
            LIMITED_CONNECTIVITY,
            "the L2S-M node agent is running but unhealthy (existing pods may have lost connectivity)",
        )
        .with_details(m)),
        Err(CallError::Protocol(m)) => Err(CniError::new(
            NOT_AVAILABLE,
            "the L2S-M node agent gave a bad answer to a status request",
        )
        .with_details(m)),
    }
}

fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.as_ref().ok_or_else(|| {
        config("GC needs \"cni.dev/valid-attachments\" (the attachments still in use) in the configuration")
    })?;
    let valid: HashSet<String> = valid.iter().map(|(c, i)| attachment_id(c, i)).collect();
    // Only attachments this plugin made (cni/…) on this configuration's network.
    let stale: Vec<Attachment> = list(conf)?
        .into_iter()
        .filter(|a| {
            a.attachment_id.starts_with("cni/")
                && a.network == conf.network
                && !valid.contains(&a.attachment_id)
        })
        .collect();
    let mut failures = Vec::new();
    let mut retry = false;
    for a in &stale {
        let req = AgentRequest::Detach {
            attachment_id: a.attachment_id.clone(),
        };
        match call(&conf.agent_socket, &req, CHANGE_TIMEOUT) {
            Ok(_) => {}
            Err(e) => {
                retry |= matches!(e, CallError::Unreachable { .. });
                failures.push(format!("{}: {e}", a.attachment_id));
            }
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(CniError::new(
        if retry { TRY_AGAIN_LATER } else { INTERNAL },
        format!(
            "GC could not remove {} of {} stale attachments",
            failures.len(),
            stale.len()
        ),
    )
    .with_details(failures.join("; ")))
}
