//! Leader election against an API server that hangs: a leader whose renewal never answers
//! steps down at the renew deadline, before its lease can expire and another replica takes
//! over (issue #13, defect 8). Each lease API call also has its own timeout.

use http::{Request, Response};
use kube::client::Body;
use l2sm_operator::leader::{LeaderElector, LeaderError, Timings};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

const NAME: &str = "ec71f4b7.l2sm.k8s.local";
const PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/l2sm-system/leases/ec71f4b7.l2sm.k8s.local";

fn lease(holder: &str) -> Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": NAME, "namespace": "l2sm-system", "resourceVersion": "7"},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 3,
                    "acquireTime": now, "renewTime": now, "leaseTransitions": 0}})
}

fn reply(send: Responder, body: &Value) {
    send.send_response(
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

async fn next(h: &mut Handle, method: &str) -> Responder {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), h.next_request())
        .await
        .expect("a lease request")
        .expect("client alive");
    assert_eq!(req.method().as_str(), method);
    assert_eq!(req.uri().path(), PATH);
    send
}

fn elector(timings: Timings) -> (Arc<LeaderElector>, Handle) {
    let (svc, h) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let me = LeaderElector::new(client, "l2sm-system", NAME, "op-a", timings);
    (Arc::new(me), h)
}

const TIMINGS: Timings = Timings {
    lease_duration: Duration::from_secs(3),
    renew_deadline: Duration::from_secs(1),
    retry_period: Duration::from_millis(100),
};

#[tokio::test]
async fn a_leader_whose_renewal_hangs_steps_down_before_its_lease_expires() {
    let (me, mut h) = elector(TIMINGS);
    let mut leading = me.clone().keep_renewing();
    // One renewal that works: the lease is renewed now and valid for 3 s.
    reply(next(&mut h, "GET").await, &lease("op-a"));
    reply(next(&mut h, "PUT").await, &lease("op-a"));
    let renewed = Instant::now();
    // The next renewal hangs: the request is taken and never answered (the responder is kept
    // alive, so the client waits as on a stuck connection).
    let hung = next(&mut h, "GET").await;
    let stepped_down = tokio::time::timeout(TIMINGS.lease_duration, leading.wait_for(|l| !l)).await;
    let after = renewed.elapsed();
    assert!(
        stepped_down.is_ok(),
        "still leading {after:?} after the last renewal although the lease (3 s) has expired"
    );
    assert!(
        after < TIMINGS.lease_duration,
        "stepped down {after:?} after the last renewal, not before the lease expired"
    );
    assert!(
        after + Duration::from_millis(50) >= TIMINGS.renew_deadline,
        "stepped down after {after:?}, before the renew deadline"
    );
    drop(hung);
}

#[tokio::test]
async fn every_lease_call_times_out() {
    let (me, mut h) = elector(TIMINGS);
    // acquire/renew: a GET that never answers is an error after the call timeout.
    let t = {
        let me = me.clone();
        tokio::spawn(async move { me.try_acquire_or_renew().await })
    };
    let hung = next(&mut h, "GET").await;
    let out = tokio::time::timeout(Duration::from_secs(3), t)
        .await
        .expect("the attempt gave up")
        .unwrap();
    assert!(
        matches!(out, Err(LeaderError::Timeout { op: "get", .. })),
        "{out:?}"
    );
    drop(hung);
    // release: the update that never answers is an error too (shutdown is not held up).
    let t = {
        let me = me.clone();
        tokio::spawn(async move { me.release().await })
    };
    reply(next(&mut h, "GET").await, &lease("op-a"));
    let hung = next(&mut h, "PUT").await;
    let out = tokio::time::timeout(Duration::from_secs(3), t)
        .await
        .expect("the release gave up")
        .unwrap();
    assert!(
        matches!(out, Err(LeaderError::Timeout { op: "update", .. })),
        "{out:?}"
    );
    drop(hung);
}
