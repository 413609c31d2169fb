//! QuarantinePodRequest: the selected pods' ports move from their network (the one
//! `l2NetworkSelector` picks) to `targetL2Network`, live, through the controller: the pod keeps
//! its interface, MAC, address and switch port; only the port's membership changes, so the
//! pod is not restarted. The port of a pod is the one the controller says the pod owns (its
//! node's agent reported it); `l2sm/status` is only the fallback for ports without an owner
//! (agents of earlier versions). Reasons and messages are upstream's (§6.5); unlike upstream, pods
//! already moved keep counting, so a second pass does not reset the counters.

use super::pod::{
    edit_attachments, owned_port, pod_attachments, pod_key, requested_networks, Attachment,
};
use super::{now, patch_status, selected_pods, tracked, Context, Error, Result};
use crate::crd::{
    condition, set_condition, L2Network, QuarantinePodRequest, QuarantinePodRequestStatus,
    CONDITION_AVAILABLE, CONDITION_READY,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::api::ListParams;
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use l2sm_api::ClientError;
use l2sm_pipeline::ids::PortId;
use std::sync::Arc;
use std::time::Duration;

/// Retry delay while something the request names does not exist yet.
const WAIT_RETRY: Duration = Duration::from_secs(30);
/// Retry delay while a pod's port is not known yet.
const PORT_RETRY: Duration = Duration::from_secs(5);

/// A failed step: the condition reason and message (upstream's wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Condition reason.
    pub reason: &'static str,
    /// Condition message.
    pub message: String,
}

fn fail(reason: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        reason,
        message: message.into(),
    }
}

/// A label selector as a query string.
pub fn selector(ls: &LabelSelector, invalid: &'static str, what: &str) -> Result<String, Failure> {
    Selector::try_from(ls.clone())
        .map(|s| s.to_string())
        .map_err(|e| fail(invalid, format!("invalid {what} selector: {e}")))
}

/// The one source network the selector matched.
pub fn pick_source(matched: &[L2Network]) -> Result<String, Failure> {
    match matched {
        [] => Err(fail(
            "SourceL2NetworkNotFound",
            "L2Network selector did not match any source L2Network",
        )),
        [one] => Ok(one.name_any()),
        many => Err(fail(
            "MultipleSourceL2Networks",
            format!(
                "L2Network selector matched {} source L2Networks; expected exactly one",
                many.len()
            ),
        )),
    }
}

/// What to do with one selected pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodAction {
    /// Not on the source network: not counted.
    Skip,
    /// Moved by an earlier pass.
    AlreadyMoved,
    /// Move attachment `index` (port `port`).
    Move {
        /// Index in `l2sm/status`.
        index: usize,
        /// The port.
        port: String,
    },
    /// On the source network, but its port is not known yet.
    PortUnknown,
}

/// Decides for one pod from its requested networks, its attachment status and `owned`, the
/// port the controller says the pod owns on the source network (which wins over the status).
pub fn pod_action(
    requested: &[String],
    atts: &[Attachment],
    source: &str,
    target: &str,
    owned: Option<&str>,
) -> PodAction {
    if let Some((index, a)) = atts.iter().enumerate().find(|(_, a)| a.network == source) {
        return match owned.map(str::to_string).or_else(|| a.port.clone()) {
            Some(port) => PodAction::Move { index, port },
            None => PodAction::PortUnknown,
        };
    }
    if atts
        .iter()
        .any(|a| a.network == target && a.quarantined_from.as_deref() == Some(source))
    {
        return PodAction::AlreadyMoved;
    }
    if atts.is_empty() && requested.iter().any(|n| n == source) {
        return PodAction::PortUnknown;
    }
    PodAction::Skip
}

/// The pod's `l2sm/status`; for a pod not reconciled yet (none), one bare attachment per
/// requested network, to start the status with.
fn attachments_or_requested(pod: &Pod) -> Vec<Attachment> {
    let atts = pod_attachments(pod);
    if !atts.is_empty() {
        return atts;
    }
    requested_networks(pod)
        .into_iter()
        .map(|network| Attachment {
            network,
            ..Default::default()
        })
        .collect()
}

/// Records in `atts` that the port `port` moved from `source` to `target` (the attachment on
/// `source`, the one with that port first); `false` when there is none (moved already, or the
/// pod no longer asks for `source`), so nothing is to be written.
pub fn moved_attachment(atts: &mut [Attachment], source: &str, target: &str, port: &str) -> bool {
    let on_source = |a: &Attachment| a.network == source;
    let index = atts
        .iter()
        .position(|a| on_source(a) && a.port.as_deref() == Some(port))
        .or_else(|| atts.iter().position(on_source));
    let Some(i) = index else {
        return false;
    };
    atts[i].network = target.to_string();
    atts[i].port = Some(port.to_string());
    atts[i].quarantined_from = Some(source.to_string());
    true
}

/// The status after a pass. `outcome` is the counts (matched, moved) or the failure.
pub fn compute_status(
    old: Option<&QuarantinePodRequestStatus>,
    generation: Option<i64>,
    source: Option<&str>,
    target: &str,
    outcome: &Result<(i32, i32), Failure>,
    now: Time,
) -> QuarantinePodRequestStatus {
    let mut st = old.cloned().unwrap_or_default();
    st.observed_generation = generation;
    st.source_l2_network_name = source.map(Into::into);
    st.target_l2_network_name = Some(target.to_string());
    let (ok, reason, message) = match outcome {
        Ok((matched, moved)) => {
            st.matched_pod_count = Some(*matched);
            st.moved_pod_count = Some(*moved);
            (
                true,
                "PodsMoved",
                format!(
                    "moved {moved} pod(s) from {:?} to {target:?}",
                    source.unwrap_or_default()
                ),
            )
        }
        Err(f) => (false, f.reason, f.message.clone()),
    };
    for type_ in [CONDITION_AVAILABLE, CONDITION_READY] {
        set_condition(
            &mut st.conditions,
            condition(
                type_,
                super::bool_status(ok),
                reason,
                message.clone(),
                generation,
                now.clone(),
            ),
        );
    }
    st
}

/// Reconciles one QuarantinePodRequest.
pub async fn reconcile(req: Arc<QuarantinePodRequest>, ctx: Arc<Context>) -> Result<Action> {
    tracked(&*req, &ctx, run(&req, &ctx)).await
}

/// The steps of upstream's table; `Err` carries the failure and how soon to look again
/// (`None`: a controller error, retried with backoff).
async fn pass(
    req: &QuarantinePodRequest,
    ctx: &Context,
    source: &mut Option<String>,
) -> Result<Result<(i32, i32), (Failure, Option<Duration>, Option<Error>)>> {
    let ns = req.namespace().unwrap_or_default();
    let target = req.spec.target_l2_network.clone();
    let net_sel = match selector(
        &req.spec.selector.l2_network_selector,
        "InvalidL2NetworkSelector",
        "L2Network",
    ) {
        Ok(s) => s,
        Err(f) => return Ok(Err((f, None, None))),
    };
    let nets: Api<L2Network> = Api::namespaced(ctx.kube.clone(), &ns);
    let matched = nets.list(&ListParams::default().labels(&net_sel)).await?;
    let src = match pick_source(&matched.items) {
        Ok(s) => s,
        Err(f) => return Ok(Err((f, Some(WAIT_RETRY), None))),
    };
    *source = Some(src.clone());
    if nets.get_opt(&target).await?.is_none() {
        let f = fail(
            "TargetL2NetworkNotFound",
            format!("target L2Network {target:?} does not exist"),
        );
        return Ok(Err((f, Some(WAIT_RETRY), None)));
    }
    if src == target {
        let f = fail("InvalidRequest", "source and target L2Network are the same");
        return Ok(Err((f, None, None)));
    }
    match ctx.controller.get_network(&target).await {
        Err(e) => {
            let f = fail(
                "TargetL2NetworkCheckFailed",
                format!("could not check target L2Network in SDN controller: {e}"),
            );
            return Ok(Err((f, None, Some(e.into()))));
        }
        Ok(None) => {
            let f = fail(
                "TargetL2NetworkUnavailable",
                format!("target L2Network {target:?} does not exist in the SDN controller"),
            );
            return Ok(Err((f, Some(WAIT_RETRY), None)));
        }
        Ok(Some(_)) => {}
    }
    let pod_sel = match Selector::try_from(req.spec.selector.pod_label_selector.clone()) {
        Ok(s) => s,
        Err(e) => {
            let f = fail("InvalidPodSelector", format!("invalid pod selector: {e}"));
            return Ok(Err((f, None, None)));
        }
    };
    let pods: Api<Pod> = Api::namespaced(ctx.kube.clone(), &ns);
    let list = selected_pods(ctx, &ns, &pod_sel).await?;
    let owners = match ctx.controller.attachments().await {
        Ok(o) => o,
        Err(e) => {
            let f = fail(
                "PodMoveFailed",
                format!("could not read port owners from the SDN controller: {e}"),
            );
            let retry = (!e.is_transient()).then_some(WAIT_RETRY);
            let err = e.is_transient().then(|| Error::from(e));
            return Ok(Err((f, retry, err)));
        }
    };
    let (mut matched, mut moved) = (0, 0);
    for pod in list
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let requested = requested_networks(pod);
        let atts = pod_attachments(pod);
        let interface = atts
            .iter()
            .find(|a| a.network == src)
            .and_then(|a| a.interface.clone());
        let owned = owned_port(
            &owners,
            &pod_key(pod),
            &src,
            interface.as_deref(),
            &Default::default(),
        );
        let atts = if owned.is_some() {
            attachments_or_requested(pod)
        } else {
            atts
        };
        match pod_action(&requested, &atts, &src, &target, owned.as_deref()) {
            PodAction::Skip => {}
            PodAction::AlreadyMoved => {
                matched += 1;
                moved += 1;
            }
            PodAction::PortUnknown => {
                let f = fail(
                    "PodMoveFailed",
                    format!(
                        "the switch port of pod {} on {src:?} is not known yet",
                        pod.name_any()
                    ),
                );
                return Ok(Err((f, Some(PORT_RETRY), None)));
            }
            PodAction::Move { port, .. } => {
                matched += 1;
                if let Err(e) = move_port(ctx, &port, &src, &target).await {
                    let f = fail("PodMoveFailed", format!("pod {}: {e}", pod.name_any()));
                    let retry = (!e.is_transient()).then_some(WAIT_RETRY);
                    let err = e.is_transient().then(|| Error::from(e));
                    return Ok(Err((f, retry, err)));
                }
                // Written against the pod as read (409 when the Pod reconciler wrote
                // meanwhile: read again and redo the edit, keeping what it wrote).
                edit_attachments(&pods, pod, |current| {
                    let mut atts = attachments_or_requested(current);
                    moved_attachment(&mut atts, &src, &target, &port).then_some(atts)
                })
                .await?;
                tracing::info!(pod = %pod.name_any(), %port, from = %src, to = %target, "pod quarantined");
                moved += 1;
            }
        }
    }
    Ok(Ok((matched, moved)))
}

/// Moves the port `of:<dpid>/<n>` from `from` to `to`. A port that does not parse (a
/// hand-edited `l2sm/status`) is a request the controller would refuse: not transient.
async fn move_port(
    ctx: &Context,
    port: &str,
    from: &str,
    to: &str,
) -> std::result::Result<(), ClientError> {
    let id: PortId = port
        .parse()
        .map_err(|e| ClientError::InvalidRequest(format!("port {port:?}: {e}")))?;
    ctx.controller.move_port(id, from, to).await.map(drop)
}

async fn run(req: &QuarantinePodRequest, ctx: &Context) -> Result<Action> {
    let mut source = None;
    let outcome = pass(req, ctx, &mut source).await?;
    let target = req.spec.target_l2_network.clone();
    let generation = req.metadata.generation;
    match outcome {
        Ok(counts) => {
            let st = compute_status(
                req.status.as_ref(),
                generation,
                source.as_deref(),
                &target,
                &Ok(counts),
                now(),
            );
            patch_status(req, req.status.as_ref(), st, ctx).await?;
            Ok(Action::requeue(ctx.settings.resync))
        }
        Err((failure, retry, err)) => {
            let st = compute_status(
                req.status.as_ref(),
                generation,
                source.as_deref(),
                &target,
                &Err(failure),
                now(),
            );
            patch_status(req, req.status.as_ref(), st, ctx).await?;
            match (err, retry) {
                (Some(e), _) => Err(e),
                (None, Some(d)) => Ok(Action::requeue(d)),
                (None, None) => Ok(Action::await_change()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::find_condition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::collections::BTreeMap;

    fn att(net: &str, port: Option<&str>, from: Option<&str>) -> Attachment {
        Attachment {
            network: net.into(),
            port: port.map(Into::into),
            quarantined_from: from.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn pod_actions() {
        let src = "blue";
        let dst = "jail";
        assert_eq!(
            pod_action(
                &["blue".into()],
                &[att("blue", Some("of:1/3"), None)],
                src,
                dst,
                None
            ),
            PodAction::Move {
                index: 0,
                port: "of:1/3".into()
            }
        );
        assert_eq!(
            pod_action(
                &["red".into(), "blue".into()],
                &[
                    att("red", Some("of:1/2"), None),
                    att("blue", Some("of:1/3"), None)
                ],
                src,
                dst,
                None
            ),
            PodAction::Move {
                index: 1,
                port: "of:1/3".into()
            }
        );
        assert_eq!(
            pod_action(
                &["blue".into()],
                &[att("jail", Some("of:1/3"), Some("blue"))],
                src,
                dst,
                None
            ),
            PodAction::AlreadyMoved
        );
        assert_eq!(
            pod_action(&["blue".into()], &[att("blue", None, None)], src, dst, None),
            PodAction::PortUnknown
        );
        assert_eq!(
            pod_action(&["blue".into()], &[], src, dst, None),
            PodAction::PortUnknown
        );
        assert_eq!(
            pod_action(
                &["red".into()],
                &[att("red", Some("of:1/2"), None)],
                src,
                dst,
                None
            ),
            PodAction::Skip
        );
        assert_eq!(pod_action(&[], &[], src, dst, None), PodAction::Skip);
        // The controller's owner wins over a (guessed) port in the status.
        assert_eq!(
            pod_action(
                &["blue".into()],
                &[att("blue", Some("of:1/3"), None)],
                src,
                dst,
                Some("of:1/4")
            ),
            PodAction::Move {
                index: 0,
                port: "of:1/4".into()
            }
        );
        assert_eq!(
            pod_action(
                &["blue".into()],
                &[att("blue", None, None)],
                src,
                dst,
                Some("of:1/4")
            ),
            PodAction::Move {
                index: 0,
                port: "of:1/4".into()
            }
        );
    }

    #[test]
    fn the_move_is_recorded_on_the_freshest_attachments() {
        // What the Pod reconciler wrote meanwhile (interface, address) is kept.
        let mut atts = vec![
            att("red", Some("of:1/2"), None),
            Attachment {
                interface: Some("net2".into()),
                ips: vec!["10.0.0.9".into()],
                ..att("blue", Some("of:1/3"), None)
            },
        ];
        assert!(moved_attachment(&mut atts, "blue", "jail", "of:1/3"));
        assert_eq!(atts[0], att("red", Some("of:1/2"), None));
        assert_eq!(
            (
                atts[1].network.as_str(),
                atts[1].port.as_deref(),
                atts[1].quarantined_from.as_deref(),
                atts[1].interface.as_deref(),
            ),
            ("jail", Some("of:1/3"), Some("blue"), Some("net2"))
        );
        // Moved already: nothing to write.
        assert!(!moved_attachment(&mut atts, "blue", "jail", "of:1/3"));
    }

    #[test]
    fn source_selection_reasons() {
        assert_eq!(
            pick_source(&[]).unwrap_err().reason,
            "SourceL2NetworkNotFound"
        );
        let n = |name: &str| {
            let mut n = L2Network::new(
                name,
                serde_json::from_value(serde_json::json!({"type": "vnet"})).unwrap(),
            );
            n.metadata.namespace = Some("default".into());
            n
        };
        assert_eq!(pick_source(&[n("a")]).unwrap(), "a");
        let e = pick_source(&[n("a"), n("b")]).unwrap_err();
        assert_eq!(e.reason, "MultipleSourceL2Networks");
        assert!(e.message.contains("matched 2"));
    }

    #[test]
    fn selectors_become_queries_or_named_failures() {
        let ls = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..Default::default()
        };
        assert_eq!(
            selector(&ls, "InvalidPodSelector", "pod").unwrap(),
            "app=web"
        );
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "Sometimes".into(),
                values: None,
            }]),
            ..Default::default()
        };
        let f = selector(&bad, "InvalidPodSelector", "pod").unwrap_err();
        assert_eq!(f.reason, "InvalidPodSelector");
        assert!(f.message.starts_with("invalid pod selector"));
    }

    #[test]
    fn status_counts_and_conditions() {
        let st = compute_status(None, Some(2), Some("blue"), "jail", &Ok((1, 1)), now());
        assert_eq!(
            (st.matched_pod_count, st.moved_pod_count),
            (Some(1), Some(1))
        );
        assert_eq!(st.observed_generation, Some(2));
        for t in [CONDITION_AVAILABLE, CONDITION_READY] {
            let c = find_condition(&st.conditions, t).unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("True", "PodsMoved")
            );
            assert_eq!(c.message, "moved 1 pod(s) from \"blue\" to \"jail\"");
        }
        let st = compute_status(
            Some(&st),
            Some(3),
            Some("blue"),
            "jail",
            &Err(fail("TargetL2NetworkUnavailable", "x")),
            now(),
        );
        let c = find_condition(&st.conditions, CONDITION_AVAILABLE).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "TargetL2NetworkUnavailable")
        );
        // Counts from the last successful pass are kept.
        assert_eq!(st.moved_pod_count, Some(1));
    }
}
