//! Leader election on a `coordination.k8s.io/v1` Lease, so that several replicas can run for
//! availability while only one reconciles. The others wait, and take over when the leader's lease
//! expires (a crash) or is released (a graceful stop).
//!
//! The protocol is client-go's: the holder renews `renewTime` well within `leaseDurationSeconds`;
//! anyone may take a lease whose `renewTime + leaseDurationSeconds` has passed; every write carries
//! the `resourceVersion` it read, so two replicas can never both win the same round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{debug, info, warn};

/// The Lease every replica competes for.
pub const LEASE_NAME: &str = "aep-streaming-operator";

/// Timing of the election. Renewal happens every third of the lease duration, so two renewals can
/// fail before a leader loses the lease.
#[derive(Debug, Clone)]
pub struct LeaseTiming {
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    pub retry_interval: Duration,
}

impl LeaseTiming {
    pub fn new(lease_duration: Duration) -> Self {
        Self {
            lease_duration,
            renew_interval: lease_duration / 3,
            retry_interval: lease_duration / 5,
        }
    }
}

/// One replica's view of the election.
pub struct LeaderElection {
    leases: Api<Lease>,
    identity: String,
    timing: LeaseTiming,
}

/// What a round of the election found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// This replica holds the lease (acquired or renewed).
    Leading,
    /// Another replica holds a valid lease, or won the race for it.
    Following,
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, identity: String, timing: LeaseTiming) -> Self {
        Self {
            leases: Api::namespaced(client, namespace),
            identity,
            timing,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this replica holds the lease. Errors of single rounds are logged and retried.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Round::Leading) => {
                    info!(identity = %self.identity, "became the leader");
                    return;
                }
                Ok(Round::Following) if !announced => {
                    info!(identity = %self.identity, "another replica leads; waiting for the lease");
                    announced = true;
                }
                Ok(Round::Following) => {}
                Err(error) => warn!(%error, "leader election round failed"),
            }
            tokio::time::sleep(self.timing.retry_interval).await;
        }
    }

    /// Renews the lease until it cannot be renewed for longer than the lease lasts; returns then
    /// (leadership is lost and the caller must stop reconciling).
    pub async fn keep_renewing(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timing.renew_interval).await;
            match self.try_acquire_or_renew().await {
                Ok(Round::Leading) => last_renewal = tokio::time::Instant::now(),
                Ok(Round::Following) => {
                    warn!(identity = %self.identity, "another replica took the lease");
                    return;
                }
                Err(error) => warn!(%error, "renewing the lease failed"),
            }
            // Stop before the lease can expire, so two leaders never overlap.
            if last_renewal.elapsed() + self.timing.renew_interval >= self.timing.lease_duration {
                warn!(identity = %self.identity, "could not renew the lease in time");
                return;
            }
        }
    }

    /// Gives the lease up (on a graceful stop) so that a waiting replica takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(LEASE_NAME).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        match self
            .leases
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(identity = %self.identity, "released the lease"),
            Err(error) => warn!(%error, "releasing the lease failed; it expires by itself"),
        }
    }

    /// One round: create the lease, renew ours, take over an expired one, or find it held.
    pub async fn try_acquire_or_renew(&self) -> Result<Round, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.leases.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_string()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held_spec(now, now, 0)),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Round::Leading),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Following),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let next = if holder == Some(self.identity.as_str()) {
            let acquired = spec.acquire_time.map_or(now, |t| t.0);
            self.held_spec(acquired, now, spec.lease_transitions.unwrap_or(0))
        } else if holder.is_none() || expired(&spec, now) {
            debug!(previous = ?holder, "taking over the lease");
            self.held_spec(now, now, spec.lease_transitions.unwrap_or(0) + 1)
        } else {
            return Ok(Round::Following);
        };
        lease.spec = Some(next);
        // `replace` sends the resourceVersion we read: a concurrent winner makes this a 409.
        match self
            .leases
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Round::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Following),
            Err(error) => Err(error),
        }
    }

    fn held_spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// True when the holder's lease has run out.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed.0 + duration < now
}

/// This replica's identity: the pod name when running in a pod, otherwise host and process id.
pub fn default_identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// The namespace of the Lease: the flag, else the pod's namespace, else the service account's.
pub fn default_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE").ok().or_else(|| {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .map(|ns| ns.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renewed_seconds_ago: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some("other".into()),
            renew_time: Some(MicroTime(
                Timestamp::now() - SignedDuration::from_secs(renewed_seconds_ago),
            )),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_renewed_within_its_duration_is_valid() {
        assert!(!expired(&spec(5, 15), Timestamp::now()));
    }

    #[test]
    fn a_lease_not_renewed_in_time_has_expired() {
        assert!(expired(&spec(16, 15), Timestamp::now()));
        assert!(expired(&LeaseSpec::default(), Timestamp::now()));
    }

    #[test]
    fn renewal_leaves_room_for_two_failed_attempts() {
        let timing = LeaseTiming::new(Duration::from_secs(15));
        assert_eq!(timing.renew_interval, Duration::from_secs(5));
        assert!(timing.retry_interval < timing.renew_interval);
    }
}

/// Valid while this replica may write to Flow Service.
#[derive(Debug, Clone, Default)]
pub struct Fence;

impl Fence {
    /// No leader election: always valid.
    pub fn unfenced() -> Self {
        Self
    }

    pub fn is_valid(&self) -> bool {
        true
    }
}
