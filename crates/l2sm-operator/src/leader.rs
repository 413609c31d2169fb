//! Leader election on a `coordination.k8s.io/v1` Lease, the protocol client-go uses: the
//! holder renews `renewTime` every retry period; anyone may take a lease whose
//! `renewTime + leaseDurationSeconds` has passed; writes carry the `resourceVersion` read, so
//! of two candidates only one wins (the other gets 409). A leader that cannot renew within the
//! renew deadline steps down (the operator then exits and is restarted as a follower).
//!
//! Every lease API call has a timeout, and a renewal attempt never runs past the renew
//! deadline: a call that hangs (a stuck connection, an overloaded API server) cannot keep an
//! expired leader reconciling beside the new one. The renew deadline is shorter than the lease
//! duration, so the old leader has stopped before anyone may take the lease over.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The API server answered with an error (other than a lost race).
    #[error("lease: {0}")]
    Kube(#[from] kube::Error),
    /// The API call did not answer in time.
    #[error("lease {op} did not answer within {after:?}")]
    Timeout {
        /// What was being done (`get`, `create`, `update`).
        op: &'static str,
        /// The timeout.
        after: Duration,
    },
}

/// Upstream's lease name, so an upstream operator and this one never lead at the same time
/// during a migration.
pub const DEFAULT_LEASE_NAME: &str = "ec71f4b7.l2sm.k8s.local";

/// What to do with the lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No lease yet: create it, holding it.
    Create,
    /// Free or expired: take it over.
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Someone else holds it; it expires in the given time at the earliest.
    Follow {
        /// The holder.
        holder: String,
        /// Time until it could expire.
        expires_in: Duration,
    },
}

/// Decides from the lease (pure).
pub fn decide(lease: Option<&Lease>, me: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let renewed = spec
        .renew_time
        .or(spec.acquire_time)
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let expiry = renewed.checked_add(duration).unwrap_or(Timestamp::MAX);
    if expiry <= now {
        Decision::Acquire
    } else {
        let left = expiry.duration_since(now);
        Decision::Follow {
            holder,
            expires_in: Duration::try_from(left).unwrap_or_default(),
        }
    }
}

/// Timings of the election. `renew_deadline` must be shorter than `lease_duration` (a leader
/// stops before its lease can be taken over), and `retry_period` shorter than `renew_deadline`;
/// every single lease API call times out after `renew_deadline` at the latest.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down.
    pub renew_deadline: Duration,
    /// Time between attempts (and renewals).
    pub retry_period: Duration,
}

impl Default for Timings {
    /// client-go's defaults.
    fn default() -> Self {
        Timings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
}

impl LeaderElector {
    /// A candidate `identity` for lease `name` in `namespace`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: Timings,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Timeout of one lease API call: no call may outlive the renew deadline.
    fn call_timeout(&self) -> Duration {
        self.timings
            .renew_deadline
            .min(self.timings.lease_duration)
            .max(Duration::from_millis(1))
    }

    /// `call` with the per-call timeout.
    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LeaderError> {
        let after = self.call_timeout();
        match tokio::time::timeout(after, call).await {
            Ok(r) => r.map_err(LeaderError::Kube),
            Err(_) => Err(LeaderError::Timeout { op, after }),
        }
    }

    fn spec(&self, now: Timestamp, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timings.lease_duration.as_secs().max(1) as i32),
            acquire_time: acquire.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt: creates, takes over or renews the lease as [`decide`] says. `Ok(true)`
    /// when this candidate holds the lease afterwards; a lost race (409) is `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        let current = self.timed("get", self.api.get_opt(&self.name)).await?;
        let now = Timestamp::now();
        let pp = PostParams::default();
        let outcome = match decide(current.as_ref(), &self.identity, now) {
            Decision::Follow { .. } => return Ok(false),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
                };
                self.timed("create", self.api.create(&pp, &lease))
                    .await
                    .map(|_| ())
            }
            decision @ (Decision::Acquire | Decision::Renew) => {
                let mut lease = current.unwrap_or_default();
                let old = lease.spec.clone().unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0);
                lease.spec = Some(if decision == Decision::Renew {
                    self.spec(now, old.acquire_time, transitions)
                } else {
                    self.spec(now, None, transitions.saturating_add(1))
                });
                self.timed("update", self.api.replace(&self.name, &pp, &lease))
                    .await
                    .map(|_| ())
            }
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(LeaderError::Kube(kube::Error::Api(s))) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate leads.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(lease = %self.name, "leader election: {e}"),
            }
            tokio::time::sleep(self.timings.retry_period).await;
        }
    }

    /// Keeps renewing; the receiver turns `false` (and renewal stops) once a renewal has not
    /// succeeded within the renew deadline or another candidate took the lease. An attempt
    /// that has not answered when the deadline comes is abandoned: the deadline holds even
    /// when the API server hangs.
    pub fn keep_renewing(self: Arc<Self>) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(true);
        tokio::spawn(async move {
            let mut last_ok = Instant::now();
            loop {
                tokio::time::sleep(self.timings.retry_period).await;
                let deadline = last_ok + self.timings.renew_deadline;
                let attempt = tokio::time::timeout_at(deadline, self.try_acquire_or_renew());
                match attempt.await {
                    Ok(Ok(true)) => last_ok = Instant::now(),
                    Ok(Ok(false)) => {
                        tracing::error!(lease = %self.name, "leadership lost to another candidate");
                        let _ = tx.send(false);
                        return;
                    }
                    Ok(Err(e)) => tracing::warn!(lease = %self.name, "lease renewal failed: {e}"),
                    Err(_) => {
                        tracing::warn!(lease = %self.name, "lease renewal still unanswered at the renew deadline")
                    }
                }
                if last_ok + self.timings.renew_deadline <= Instant::now() {
                    tracing::error!(
                        lease = %self.name,
                        deadline = ?self.timings.renew_deadline,
                        "lease not renewed within the renew deadline; stepping down"
                    );
                    let _ = tx.send(false);
                    return;
                }
            }
        });
        rx
    }

    /// Gives the lease up (on shutdown), so a follower takes over at once instead of after
    /// the lease duration. Only a lease this candidate holds is touched.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) = self.timed("get", self.api.get_opt(&self.name)).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        lease.spec = Some(spec);
        let pp = PostParams::default();
        match self
            .timed("update", self.api.replace(&self.name, &pp, &lease))
            .await
        {
            Ok(_) => Ok(()),
            Err(LeaderError::Kube(kube::Error::Api(s))) if s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, duration: i32) -> Lease {
        let now = NOW.with(|n| *n);
        Lease {
            metadata: ObjectMeta {
                name: Some("l".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
                ..Default::default()
            }),
        }
    }

    thread_local! {
        static NOW: Timestamp = Timestamp::now();
    }

    #[test]
    fn decisions() {
        let now = NOW.with(|n| *n);
        assert_eq!(decide(None, "me", now), Decision::Create);
        assert_eq!(
            decide(Some(&lease(Some("me"), 100, 15)), "me", now),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease(None, 0, 15)), "me", now),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some(""), 0, 15)), "me", now),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some("other"), 20, 15)), "me", now),
            Decision::Acquire
        );
        match decide(Some(&lease(Some("other"), 5, 15)), "me", now) {
            Decision::Follow { holder, expires_in } => {
                assert_eq!(holder, "other");
                assert_eq!(expires_in, Duration::from_secs(10));
            }
            d => panic!("{d:?}"),
        }
        // A lease without times is expired.
        let mut l = lease(Some("other"), 0, 15);
        l.spec.as_mut().unwrap().renew_time = None;
        assert_eq!(decide(Some(&l), "me", now), Decision::Acquire);
    }
}
