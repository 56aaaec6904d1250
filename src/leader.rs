//! Leader election on a `coordination.k8s.io/v1` Lease, so that several replicas can run for
//! availability while only one reconciles. The others wait, and take over when the leader's lease
//! expires (a crash) or is released (a graceful stop).
//!
//! The protocol is client-go's, including how expiry is judged. A replica never compares the
//! holder's `renewTime` with its own wall clock: the two clocks may disagree by more than a lease
//! duration, and a standby with a fast clock would take a lease that is still being renewed. Instead
//! each replica remembers the Lease record it last saw and the instant, on its own monotonic clock,
//! at which that record last changed; the lease has expired only when `leaseDurationSeconds` has
//! passed locally without any change. `renewTime` is still written, for people reading the Lease.
//! Every write carries the `resourceVersion` it read, so two replicas can never both win a round.
//!
//! Holding the Lease is not enough to write to Flow Service: a leader whose renewals stall (a
//! partition, a hung API server, a paused process) keeps running until it notices. The [`Fence`]
//! closes that gap: it is valid only until the last successful renewal could have expired for the
//! other replicas, minus a margin, so a write checked against it cannot overlap a new leader's.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// The Lease every replica competes for.
pub const LEASE_NAME: &str = "aep-streaming-operator";

/// Timing of the election, client-go's ratios: renew every third of the lease duration, and give up
/// leadership (and invalidate the [`Fence`]) when no renewal has succeeded for two thirds of it. The
/// remaining third is the margin within which a Flow Service write that passed the fence must land
/// before another replica can take over.
#[derive(Debug, Clone)]
pub struct LeaseTiming {
    /// How long the Lease lasts without renewal, as written into `leaseDurationSeconds`.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_interval: Duration,
    /// How long after the start of its last successful renewal the leader may still write.
    pub renew_deadline: Duration,
    /// How often a standby tries to acquire, and a leader retries a failed renewal.
    pub retry_interval: Duration,
}

impl LeaseTiming {
    pub fn new(lease_duration: Duration) -> Self {
        let renew_interval = lease_duration / 3;
        Self {
            lease_duration,
            renew_interval,
            renew_deadline: lease_duration - renew_interval,
            retry_interval: lease_duration / 5,
        }
    }
}

/// Whether this replica may write to Flow Service. Cheap to clone and to check: the controller
/// checks it right before every Flow Service write.
#[derive(Debug, Clone)]
pub struct Fence {
    state: Arc<Mutex<FenceState>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FenceState {
    /// No leader election: valid until revoked.
    Unfenced,
    /// Leader election: valid until this instant (local monotonic clock).
    Until(Instant),
    /// Not leading, or leadership lost.
    Revoked,
}

impl Fence {
    /// No leader election: always valid (unless [`Fence::revoke`]d).
    pub fn unfenced() -> Self {
        Self::with_state(FenceState::Unfenced)
    }

    /// A fence that is not valid until the election grants it.
    pub fn revoked() -> Self {
        Self::with_state(FenceState::Revoked)
    }

    fn with_state(state: FenceState) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// True while this replica may write: it holds the Lease AND its last successful renewal is
    /// recent enough that the Lease cannot have expired for the others (renewed within the lease
    /// duration minus a safety margin, measured on the local monotonic clock).
    pub fn is_valid(&self) -> bool {
        self.is_valid_at(Instant::now())
    }

    fn is_valid_at(&self, now: Instant) -> bool {
        match *self.lock() {
            FenceState::Unfenced => true,
            FenceState::Until(deadline) => now < deadline,
            FenceState::Revoked => false,
        }
    }

    /// Invalidates the fence at once, for every clone.
    pub fn revoke(&self) {
        *self.lock() = FenceState::Revoked;
    }

    /// Makes the fence valid until `deadline` (after an acquisition or renewal).
    pub(crate) fn grant_until(&self, deadline: Instant) {
        *self.lock() = FenceState::Until(deadline);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FenceState> {
        // The state is a plain value, consistent even if a holder of the lock panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One version of the Lease as a competitor sees it. Any change in it means the holder (or a new
/// one) is alive; it does not matter which field changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    pub renew_time: Option<Timestamp>,
    pub acquire_time: Option<Timestamp>,
    pub transitions: Option<i32>,
    /// The holder's `leaseDurationSeconds`, if positive.
    pub lease_duration: Option<Duration>,
    pub resource_version: Option<String>,
}

impl LeaseRecord {
    pub fn from_lease(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.filter(|holder| !holder.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            transitions: spec.lease_transitions,
            lease_duration: spec
                .lease_duration_seconds
                .and_then(|seconds| u64::try_from(seconds).ok())
                .filter(|seconds| *seconds > 0)
                .map(Duration::from_secs),
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

/// The record last seen, and when (locally) it last changed.
#[derive(Debug, Clone)]
struct Observation {
    record: LeaseRecord,
    changed_at: Instant,
}

impl Observation {
    /// Remembers `record` seen at `now`; the instant only moves when the record differs.
    fn update(previous: Option<Self>, record: LeaseRecord, now: Instant) -> Self {
        match previous {
            Some(previous) if previous.record == record => previous,
            _ => Self {
                record,
                changed_at: now,
            },
        }
    }

    /// True when a whole lease duration (the holder's, else `fallback`) has passed on the local
    /// clock since the record last changed.
    fn expired(&self, now: Instant, fallback: Duration) -> bool {
        let duration = self.record.lease_duration.unwrap_or(fallback);
        now.saturating_duration_since(self.changed_at) >= duration
    }
}

/// What to do with the Lease in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// It is ours: write a new `renewTime`.
    Renew,
    /// Nobody holds it, or the holder stopped renewing it: take it.
    TakeOver,
    /// Someone else holds it and renews it.
    Wait,
}

fn next_step(identity: &str, observation: &Observation, now: Instant, fallback: Duration) -> Step {
    match observation.record.holder.as_deref() {
        Some(holder) if holder == identity => Step::Renew,
        None => Step::TakeOver,
        Some(_) if observation.expired(now, fallback) => Step::TakeOver,
        Some(_) => Step::Wait,
    }
}

/// One replica's view of the election.
pub struct LeaderElection {
    leases: Api<Lease>,
    identity: String,
    timing: LeaseTiming,
    observed: Mutex<Option<Observation>>,
    fence: Fence,
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
            observed: Mutex::new(None),
            fence: Fence::revoked(),
        }
    }

    /// The fence this election grants while it leads and revokes when it stops leading.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Waits until this replica holds the lease; the fence is valid when this returns. Errors of
    /// single rounds are logged and retried.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            let started = Instant::now();
            // A hung request must not stall the standby forever; the next round simply retries.
            let round =
                tokio::time::timeout(self.timing.renew_interval, self.try_acquire_or_renew()).await;
            match round {
                Ok(Ok(Round::Leading)) => {
                    self.fence.grant_until(started + self.timing.renew_deadline);
                    info!(identity = %self.identity, "became the leader");
                    return;
                }
                Ok(Ok(Round::Following)) if !announced => {
                    info!(identity = %self.identity, "another replica leads; waiting for the lease");
                    announced = true;
                }
                Ok(Ok(Round::Following)) => {}
                Ok(Err(error)) => warn!(%error, "leader election round failed"),
                Err(_) => warn!("leader election round timed out"),
            }
            tokio::time::sleep(self.timing.retry_interval).await;
        }
    }

    /// Renews the lease until it is lost, then revokes the fence and returns (the caller must stop
    /// reconciling). It is lost when another replica took it, or when no renewal succeeded within
    /// the renew deadline; each attempt is cut off at that deadline, so a hung request cannot keep
    /// this replica leading. The fence expires by itself at the same deadline, so even if this
    /// task stalls, writes stop in time.
    pub async fn keep_renewing(&self) {
        // `acquire` granted the fence until the deadline of the acquisition.
        let mut deadline = Instant::now() + self.timing.renew_deadline;
        if let FenceState::Until(granted) = *self.fence.lock() {
            deadline = granted;
        }
        let mut pause = self.timing.renew_interval;
        loop {
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
            if Instant::now() >= deadline {
                warn!(identity = %self.identity, "could not renew the lease in time");
                break;
            }
            let started = Instant::now();
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Round::Leading)) => {
                    deadline = started + self.timing.renew_deadline;
                    self.fence.grant_until(deadline);
                    pause = self.timing.renew_interval;
                }
                Ok(Ok(Round::Following)) => {
                    warn!(identity = %self.identity, "another replica took the lease");
                    break;
                }
                Ok(Err(error)) => {
                    warn!(%error, "renewing the lease failed");
                    pause = self.timing.retry_interval;
                }
                Err(_) => {
                    warn!(identity = %self.identity, "renewing the lease did not finish in time");
                    break;
                }
            }
        }
        self.fence.revoke();
    }

    /// Gives the lease up (on a graceful stop) so that a waiting replica takes over at once. The
    /// fence is revoked first: nothing may be written once another replica can lead.
    pub async fn release(&self) {
        self.fence.revoke();
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

    /// One round: create the lease, renew ours, take over a released or expired one, or find it
    /// held. Does not touch the fence: the callers know when the round started.
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
                Ok(created) => {
                    self.observe(&created);
                    Ok(Round::Leading)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Following),
                Err(error) => Err(error),
            };
        };
        let observation = self.observe(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let step = next_step(
            &self.identity,
            &observation,
            Instant::now(),
            self.timing.lease_duration,
        );
        let next = match step {
            Step::Renew => {
                let acquired = spec.acquire_time.map_or(now, |t| t.0);
                self.held_spec(acquired, now, transitions)
            }
            Step::TakeOver => {
                debug!(previous = ?observation.record.holder, "taking over the lease");
                self.held_spec(now, now, transitions + 1)
            }
            Step::Wait => return Ok(Round::Following),
        };
        lease.spec = Some(next);
        // `replace` sends the resourceVersion we read: a concurrent winner makes this a 409.
        match self
            .leases
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(&written);
                Ok(Round::Leading)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Round::Following),
            Err(error) => Err(error),
        }
    }

    fn observe(&self, lease: &Lease) -> Observation {
        let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
        let observation = Observation::update(
            observed.take(),
            LeaseRecord::from_lease(lease),
            Instant::now(),
        );
        *observed = Some(observation.clone());
        observation
    }

    fn held_spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.timing.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// Whether a replica with leader election is running, judged from the Lease records seen at the
/// start and at the end of an observation window (start-up check without `--leader-election`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseActivity {
    /// No Lease, a released one, or one whose record did not change: nobody is renewing it.
    Idle,
    /// The Lease is held and changed while we watched: its holder is alive and reconciling.
    Renewed { holder: String },
}

/// The pure decision of the start-up check: `first` is the record seen when the window opened,
/// `latest` the one seen last (`None`: no Lease).
pub fn lease_activity(first: Option<&LeaseRecord>, latest: Option<&LeaseRecord>) -> LeaseActivity {
    let Some(latest) = latest else {
        return LeaseActivity::Idle;
    };
    match &latest.holder {
        Some(holder) if first != Some(latest) => LeaseActivity::Renewed {
            holder: holder.clone(),
        },
        _ => LeaseActivity::Idle,
    }
}

/// Watches the Lease for `window` (the holder's lease duration if it states one), reading it every
/// `poll`; returns as soon as it sees it renewed. A live holder renews at least once per lease
/// duration, so a window of one duration cannot miss it.
pub async fn watch_lease_activity(
    leases: &Api<Lease>,
    window: Duration,
    poll: Duration,
) -> Result<LeaseActivity, kube::Error> {
    let read = || async {
        Ok::<_, kube::Error>(
            leases
                .get_opt(LEASE_NAME)
                .await?
                .map(|lease| LeaseRecord::from_lease(&lease)),
        )
    };
    let first = read().await?;
    let window = first
        .as_ref()
        .and_then(|record| record.lease_duration)
        .unwrap_or(window);
    let deadline = Instant::now() + window;
    loop {
        tokio::time::sleep_until((Instant::now() + poll).min(deadline)).await;
        let latest = read().await?;
        let activity = lease_activity(first.as_ref(), latest.as_ref());
        if activity != LeaseActivity::Idle || Instant::now() >= deadline {
            return Ok(activity);
        }
    }
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

    const SECOND: Duration = Duration::from_secs(1);

    fn record(holder: &str, version: &str) -> LeaseRecord {
        LeaseRecord {
            holder: Some(holder.into()).filter(|h: &String| !h.is_empty()),
            renew_time: None,
            acquire_time: None,
            transitions: Some(0),
            lease_duration: Some(15 * SECOND),
            resource_version: Some(version.into()),
        }
    }

    fn seen(record: LeaseRecord, at: Instant) -> Observation {
        Observation::update(None, record, at)
    }

    #[test]
    fn a_lease_seen_changing_within_its_duration_is_not_expired() {
        let start = Instant::now();
        let observation = seen(record("other", "1"), start);
        assert!(!observation.expired(start + 14 * SECOND, 15 * SECOND));
        assert_eq!(
            next_step("me", &observation, start + 14 * SECOND, 15 * SECOND),
            Step::Wait
        );
    }

    #[test]
    fn a_lease_unchanged_for_its_whole_duration_has_expired() {
        let start = Instant::now();
        let observation = seen(record("other", "1"), start);
        assert!(observation.expired(start + 15 * SECOND, 15 * SECOND));
        assert_eq!(
            next_step("me", &observation, start + 15 * SECOND, 15 * SECOND),
            Step::TakeOver
        );
    }

    #[test]
    fn expiry_ignores_the_holders_wall_clock() {
        // The holder's renewTime says the lease ran out an hour ago (its clock is behind); what
        // counts is that we saw the record only now.
        let start = Instant::now();
        let mut stale_looking = record("other", "1");
        stale_looking.renew_time =
            Some(Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(1));
        let observation = seen(stale_looking, start);
        assert_eq!(
            next_step("me", &observation, start + SECOND, 15 * SECOND),
            Step::Wait
        );
    }

    #[test]
    fn a_renewal_restarts_the_observed_duration() {
        let start = Instant::now();
        let first = seen(record("other", "1"), start);
        let same = Observation::update(
            Some(first.clone()),
            record("other", "1"),
            start + 10 * SECOND,
        );
        assert_eq!(
            same.changed_at, start,
            "an unchanged record keeps its instant"
        );
        let renewed = Observation::update(Some(same), record("other", "2"), start + 10 * SECOND);
        assert!(!renewed.expired(start + 20 * SECOND, 15 * SECOND));
        assert!(renewed.expired(start + 25 * SECOND, 15 * SECOND));
    }

    #[test]
    fn the_holders_lease_duration_wins_over_ours() {
        let start = Instant::now();
        let mut long = record("other", "1");
        long.lease_duration = Some(60 * SECOND);
        let observation = seen(long, start);
        assert!(!observation.expired(start + 30 * SECOND, 15 * SECOND));
        let mut unstated = record("other", "1");
        unstated.lease_duration = None;
        assert!(seen(unstated, start).expired(start + 15 * SECOND, 15 * SECOND));
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_our_own_is_renewed() {
        let now = Instant::now();
        assert_eq!(
            next_step("me", &seen(record("", "1"), now), now, 15 * SECOND),
            Step::TakeOver
        );
        assert_eq!(
            next_step("me", &seen(record("me", "1"), now), now, 15 * SECOND),
            Step::Renew
        );
    }

    #[test]
    fn records_are_read_from_the_lease() {
        let lease = Lease {
            metadata: ObjectMeta {
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                lease_duration_seconds: Some(0),
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
        };
        let record = LeaseRecord::from_lease(&lease);
        assert_eq!(record.holder, None, "an empty holder is no holder");
        assert_eq!(
            record.lease_duration, None,
            "a zero duration is no duration"
        );
        assert_eq!(record.transitions, Some(3));
        assert_eq!(record.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn renewal_leaves_room_for_two_failed_attempts() {
        let timing = LeaseTiming::new(15 * SECOND);
        assert_eq!(timing.renew_interval, 5 * SECOND);
        assert_eq!(timing.renew_deadline, 10 * SECOND);
        assert!(timing.retry_interval < timing.renew_interval);
    }

    #[test]
    fn an_unfenced_fence_is_valid_until_revoked() {
        let fence = Fence::unfenced();
        assert!(fence.is_valid_at(Instant::now() + 3600 * SECOND));
        let clone = fence.clone();
        clone.revoke();
        assert!(!fence.is_valid(), "revoking a clone revokes every clone");
    }

    #[test]
    fn a_granted_fence_expires_at_its_deadline_without_any_renewal_loop() {
        let fence = Fence::revoked();
        assert!(!fence.is_valid());
        let start = Instant::now();
        let timing = LeaseTiming::new(15 * SECOND);
        fence.grant_until(start + timing.renew_deadline);
        assert!(fence.is_valid_at(start));
        assert!(fence.is_valid_at(start + 9 * SECOND));
        assert!(!fence.is_valid_at(start + 10 * SECOND));
        fence.grant_until(start + 15 * SECOND);
        fence.revoke();
        assert!(
            !fence.is_valid_at(start + SECOND),
            "a revoked fence is invalid at once"
        );
    }

    #[test]
    fn the_fence_closes_before_any_other_replica_can_take_over() {
        // The leader's renewal starts at `sent`; the server applies it later, and another replica
        // sees the new record later still, so its takeover clock starts no earlier than `sent`.
        let timing = LeaseTiming::new(15 * SECOND);
        let sent = Instant::now();
        let fence = Fence::revoked();
        fence.grant_until(sent + timing.renew_deadline);
        let standby_saw_it = seen(record("leader", "2"), sent);
        let mut now = sent;
        while !standby_saw_it.expired(now, timing.lease_duration) {
            now += Duration::from_millis(100);
        }
        assert!(!fence.is_valid_at(now));
        assert!(
            !fence.is_valid_at(now - (timing.lease_duration - timing.renew_deadline)),
            "a write that passed the fence has a third of the lease duration to land"
        );
    }

    #[test]
    fn start_up_check_refuses_only_when_the_lease_is_held_and_renewed() {
        let held = record("operator-a", "1");
        let renewed = record("operator-a", "2");
        let released = record("", "3");
        let active = LeaseActivity::Renewed {
            holder: "operator-a".into(),
        };
        assert_eq!(lease_activity(None, None), LeaseActivity::Idle, "no Lease");
        assert_eq!(
            lease_activity(Some(&held), Some(&held)),
            LeaseActivity::Idle,
            "held but never renewed: a crashed leader"
        );
        assert_eq!(lease_activity(Some(&held), Some(&renewed)), active);
        assert_eq!(
            lease_activity(None, Some(&held)),
            active,
            "created while we watched"
        );
        assert_eq!(
            lease_activity(Some(&held), Some(&released)),
            LeaseActivity::Idle,
            "released while we watched"
        );
        assert_eq!(
            lease_activity(Some(&held), None),
            LeaseActivity::Idle,
            "deleted while we watched"
        );
    }
}
