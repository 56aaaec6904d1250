//! What the controller remembers about each object between reconciles, in one map behind one lock:
//! the status it last wrote, the connection it last confirmed, the last failure (which gates the
//! next attempt), a connection that answered 404, and the claims on connection ids and names.
//!
//! The failure gate is what keeps a broken object quiet: after a failed reconcile, nothing is
//! attempted again until the retry time (transient errors, exponential backoff with jitter, never
//! sooner than `Retry-After`) or, for a permanent error, until one of the object's inputs changes
//! (its generation, the reconcile-requested-at annotation, a deletion, or its Secret's version).
//! The reconciles that the operator's own status writes trigger find the gate closed and do nothing.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::api::{StreamingConnectionStatus, StreamingDataflowStatus};
use aep_flow::Connection;

/// The first retry waits about this long; each further failure doubles it.
pub const INITIAL_RETRY_DELAY: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// A retry scheduled this close to its time is let through (timers fire a little early or late).
const GATE_TOLERANCE: Duration = Duration::from_millis(50);

/// `1s · 2^(failures-1)`, capped at five minutes, with "equal jitter" (between half and all of it)
/// so that objects failing together spread out.
pub fn backoff_delay(failures: u32) -> Duration {
    let ceiling = INITIAL_RETRY_DELAY
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_RETRY_DELAY);
    ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// What a reconcile of an object depends on besides Flow Service: when none of it changed, a
/// permanent failure will fail again the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub generation: Option<i64>,
    pub requested_at: Option<String>,
    pub deleting: bool,
    /// The referenced Secret's resourceVersion as the Secret watch last reported it.
    pub secret_version: Option<String>,
    /// What else the object waits on, summarised: for a StreamingDataflow its StreamingConnection
    /// (exists, Ready, which connection and inlet); for a StreamingConnection being deleted the
    /// StreamingDataflows that still use it.
    pub dependency: Option<String>,
}

/// The last failed reconcile of an object.
#[derive(Debug, Clone)]
pub struct Failure {
    pub inputs: Inputs,
    /// Consecutive failures, for the backoff.
    pub count: u32,
    /// When to try again; `None` for a permanent error (wait for a change of the inputs).
    pub retry_at: Option<Instant>,
}

/// A connection the object recorded that Flow Service answered 404 for.
#[derive(Debug, Clone)]
pub struct Missing {
    pub id: String,
    pub since: Instant,
    pub reads: u32,
}

/// A connection as Flow Service last confirmed it for one object.
#[derive(Debug, Clone)]
pub struct Verified {
    pub connection: Connection,
    /// The credentials (Secret uid and version) it was confirmed with.
    pub credentials: String,
    pub generation: Option<i64>,
    pub requested_at: Option<String>,
    pub at: Instant,
    /// Set when the connection was not read but taken from the status the object carried when this
    /// process first saw it (see `Context::trust_recorded_status`): it stands for a read until this
    /// instant, the object's next read at its phase of the resync interval.
    pub read_due: Option<Instant>,
}

/// See [`ObjectMemory::late_commit_watch`].
#[derive(Debug, Clone)]
pub struct LateCommitWatch {
    pub connection_name: String,
    /// Milliseconds since the epoch (the marker's start, less the clock-skew allowance).
    pub since_ms: i64,
    pub until: Instant,
}

/// Everything remembered about one object (keyed by its uid).
#[derive(Debug, Default)]
pub struct ObjectMemory {
    /// The status this process last wrote and the resourceVersion the write returned. This process
    /// is the only writer of status while it leads, so what it wrote is at least as new as any cache.
    pub written: Option<(StreamingConnectionStatus, Option<String>)>,
    /// The same for a StreamingDataflow.
    pub written_dataflow: Option<(StreamingDataflowStatus, Option<String>)>,
    /// For a StreamingDataflow: the credentials Secret and sandbox of its StreamingConnection as last
    /// used, so that its cleanup can still delete the flow when the StreamingConnection is gone.
    pub dataflow_scope: Option<(String, String)>,
    pub verified: Option<Verified>,
    /// For a StreamingDataflow whose status was taken for a read after a start: what that holds for
    /// (its credentials, connection and inlet) and when its chain is due to be read. It stays once
    /// expired: the status stands for a read only once per process.
    pub dataflow_read_due: Option<(String, Instant)>,
    pub failure: Option<Failure>,
    pub missing: Option<Missing>,
    /// A successful reconcile that asked to look again later (an inlet being provisioned, a 404
    /// being confirmed, a create settling): until then, with the same inputs, nothing is done.
    pub waiting: Option<(Inputs, Instant)>,
    /// The inputs as the running (or last) reconcile found them when it started. A wait or a failure
    /// is recorded against these, not against the inputs when it ends: a change that arrives while
    /// the reconcile runs (the StreamingConnection of a dataflow turning Ready, a Secret rotated)
    /// must open the gate, not count as seen.
    pub attempt_inputs: Option<Inputs>,
    /// The last create request got an answer (even an error): nothing can commit later, so an
    /// unresolved marker may be looked up by name at once instead of after the settle delay.
    pub create_answered: bool,
    /// Set when a create went ahead after an earlier request whose answer never came and found
    /// nothing by name: that request may still commit later. The next resyncs look for such a late
    /// connection (the marker's name, created since its start) until this time, and report it.
    pub late_commit_watch: Option<LateCommitWatch>,
    /// Flow Service refused to update the connection because the organization does not allow it
    /// (`FLOW-1445-400`), for these inputs: until one of them changes (a new spec, the
    /// reconcile-requested-at annotation, the Secret), the change is reported as not applied and
    /// not sent again. The gate for a change that cannot be applied, on an object that is otherwise
    /// fine (so not a [`Failure`], which would hold back everything else too).
    pub update_not_allowed: Option<Inputs>,
}

/// A name something is being created under in Flow Service: names are only unique enough to look up
/// within one organization and sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CreationName {
    /// The IMS organization of the credentials.
    pub org_id: String,
    /// The sandbox.
    pub sandbox: String,
    /// The name sent in the create request.
    pub name: String,
}

/// The per-object memory of the whole controller.
#[derive(Debug, Default)]
pub struct Memory {
    objects: Mutex<HashMap<String, ObjectMemory>>,
    /// Connection ids claimed in this process, with the uid of the claiming object: the cache of
    /// objects lags behind a claim by the time a watch event takes, so two reconciles running at
    /// once consult this too. Entries go with the object.
    claimed_ids: Mutex<HashMap<String, String>>,
    /// Connection names (scoped by org, sandbox and name) with a create in flight or unresolved,
    /// with the uid of the creating object: one create per name at a time, so that a lookup by name
    /// can tell whose connection it found.
    creating_names: Mutex<HashMap<CreationName, String>>,
    /// Added to the monotonic clock: lets a test simulate the passing of time (see
    /// [`Memory::advance_clock`]); always zero in the operator.
    clock_offset: Mutex<Duration>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data updated in single assignments: a panic elsewhere cannot leave it half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Memory {
    /// The controller's notion of now: the monotonic clock, plus what a test advanced it by.
    pub fn now(&self) -> Instant {
        Instant::now() + *lock(&self.clock_offset)
    }

    /// Moves the controller's clock forward (tests only: simulated time for retries and waits).
    pub fn advance_clock(&self, by: Duration) {
        *lock(&self.clock_offset) += by;
    }

    /// Runs `f` on the object's memory, creating it when absent.
    pub fn with<R>(&self, uid: &str, f: impl FnOnce(&mut ObjectMemory) -> R) -> R {
        f(lock(&self.objects).entry(uid.to_string()).or_default())
    }

    /// Reads the object's memory without creating it.
    pub fn read<R>(&self, uid: &str, f: impl FnOnce(&ObjectMemory) -> R) -> Option<R> {
        lock(&self.objects).get(uid).map(f)
    }

    /// Forgets an object that is gone, with its claims.
    pub fn forget(&self, uid: &str) {
        lock(&self.objects).remove(uid);
        lock(&self.claimed_ids).retain(|_, owner| owner != uid);
        lock(&self.creating_names).retain(|_, owner| owner != uid);
    }

    /// `Some(action)` when the last failure still holds for these inputs: the delay left until
    /// the retry, or `None` inside for "wait for a change".
    pub fn gate(&self, uid: &str, inputs: &Inputs) -> Option<Option<Duration>> {
        let now = self.now();
        let objects = lock(&self.objects);
        let memory = objects.get(uid)?;
        let until = |at: Instant| (at > now + GATE_TOLERANCE).then(|| Some(at - now));
        if let Some(failure) = memory.failure.as_ref().filter(|f| &f.inputs == inputs) {
            return match failure.retry_at {
                None => Some(None),
                Some(at) => until(at),
            };
        }
        match &memory.waiting {
            Some((waiting_for, at)) if waiting_for == inputs => until(*at),
            _ => None,
        }
    }

    /// Remembers that Flow Service refused to update the object's connection (`FLOW-1445-400`) for
    /// these inputs.
    pub fn refuse_update(&self, uid: &str, inputs: Inputs) {
        self.with(uid, |m| m.update_not_allowed = Some(inputs));
    }

    /// True while an update refused with `FLOW-1445-400` holds: the inputs are those it was refused
    /// for. A change of the inputs forgets it, so that the next update is tried (once) again.
    pub fn update_refused(&self, uid: &str, inputs: &Inputs) -> bool {
        self.with(uid, |m| match &m.update_not_allowed {
            Some(refused) if refused == inputs => true,
            Some(_) => {
                m.update_not_allowed = None;
                false
            }
            None => false,
        })
    }

    /// Nothing to do for `object` before `delay` has passed unless its inputs change.
    pub fn defer(&self, uid: &str, inputs: Inputs, delay: Duration) {
        let at = self.now() + delay;
        self.with(uid, |m| {
            let inputs = m.attempt_inputs.clone().unwrap_or(inputs);
            m.waiting = Some((inputs, at));
        });
    }

    /// Counts a failure and returns the delay before the next attempt (`None`: permanent).
    pub fn record_failure(
        &self,
        uid: &str,
        inputs: Inputs,
        permanent: bool,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let now = self.now();
        self.with(uid, |memory| {
            let inputs = memory.attempt_inputs.clone().unwrap_or(inputs);
            // The backoff starts over when the inputs changed since the last failure (a new spec, a
            // rotated Secret, a delete): that is a new attempt, not the next of the old series. Left
            // growing, a delete after a long outage would wait minutes for its first retry.
            let count = memory
                .failure
                .as_ref()
                .filter(|failure| failure.inputs == inputs)
                .map_or(0, |failure| failure.count)
                .saturating_add(1);
            let delay = (!permanent).then(|| {
                retry_after.map_or(backoff_delay(count), |asked| {
                    asked.max(backoff_delay(count))
                })
            });
            memory.failure = Some(Failure {
                inputs,
                count,
                retry_at: delay.map(|delay| now + delay),
            });
            delay
        })
    }

    /// A successful reconcile: the backoff starts over.
    pub fn record_success(&self, uid: &str) {
        if let Some(memory) = lock(&self.objects).get_mut(uid) {
            memory.failure = None;
        }
    }

    /// A reconcile runs with `inputs`: whatever it was waiting for is decided anew, and what it ends
    /// up waiting for is recorded against these inputs.
    pub fn start_attempt(&self, uid: &str, inputs: Inputs) {
        self.with(uid, |memory| {
            memory.waiting = None;
            memory.attempt_inputs = Some(inputs);
        });
    }

    /// Counts one more 404 for `id`, recorded by object `uid` (a new id starts over), and decides:
    /// `Ok((reads, elapsed))` once `reads` reads over at least `window` all answered 404, else
    /// `Err(retry_in)`, when to read again. The caller clears the count once it acts on it.
    pub fn note_missing(
        &self,
        uid: &str,
        id: &str,
        reads_needed: u32,
        window: Duration,
    ) -> Result<(u32, Duration), Duration> {
        let now = self.now();
        let missing = self.with(uid, |memory| {
            let missing = match memory.missing.take() {
                Some(missing) if missing.id == id => Missing {
                    reads: missing.reads + 1,
                    ..missing
                },
                _ => Missing {
                    id: id.to_string(),
                    since: now,
                    reads: 1,
                },
            };
            memory.missing = Some(missing.clone());
            missing
        });
        let elapsed = now.saturating_duration_since(missing.since);
        if missing.reads >= reads_needed && elapsed >= window {
            return Ok((missing.reads, elapsed));
        }
        Err(backoff_delay(missing.reads)
            .max(Duration::from_secs(1))
            .min(window.saturating_sub(elapsed).max(Duration::from_secs(1))))
    }

    /// Forgets the 404s counted for the object (what answered 404 was found, or acted on).
    pub fn clear_missing(&self, uid: &str) {
        self.with(uid, |memory| memory.missing = None);
    }

    /// Claims connection `id` for `uid` unless another object claimed it in this process; returns
    /// the other claimant's uid otherwise.
    pub fn claim_id(&self, id: &str, uid: &str) -> Result<(), String> {
        let mut claims = lock(&self.claimed_ids);
        match claims.get(id) {
            Some(owner) if owner != uid => Err(owner.clone()),
            _ => {
                claims.retain(|_, owner| owner != uid);
                claims.insert(id.to_string(), uid.to_string());
                Ok(())
            }
        }
    }

    /// The uid that claimed `id` in this process, if any.
    pub fn claimant_of(&self, id: &str) -> Option<String> {
        lock(&self.claimed_ids).get(id).cloned()
    }

    /// Takes the right to create (or resolve a create of) `name` for `uid`; `Err(holder uid)` when
    /// another object holds it.
    pub fn claim_name(&self, name: &CreationName, uid: &str) -> Result<(), String> {
        let mut names = lock(&self.creating_names);
        match names.get(name) {
            Some(holder) if holder != uid => Err(holder.clone()),
            _ => {
                names.insert(name.clone(), uid.to_string());
                Ok(())
            }
        }
    }

    /// Gives the name back once the create is resolved.
    pub fn release_name(&self, name: &CreationName, uid: &str) {
        let mut names = lock(&self.creating_names);
        if names.get(name).is_some_and(|holder| holder == uid) {
            names.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(generation: i64) -> Inputs {
        Inputs {
            generation: Some(generation),
            requested_at: None,
            deleting: false,
            secret_version: Some("7".into()),
            dependency: None,
        }
    }

    #[test]
    fn a_refused_update_holds_until_the_inputs_change() {
        let memory = Memory::default();
        assert!(!memory.update_refused("u", &inputs(2)));
        memory.refuse_update("u", inputs(2));
        assert!(memory.update_refused("u", &inputs(2)));
        assert!(memory.update_refused("u", &inputs(2)), "still held");
        assert!(
            !memory.update_refused("u", &inputs(3)),
            "a new spec tries again"
        );
        assert!(
            !memory.update_refused("u", &inputs(2)),
            "and the refusal is forgotten"
        );
    }

    #[test]
    fn a_change_that_arrives_while_a_reconcile_runs_opens_the_gate() {
        let memory = Memory::default();
        // Started with the dependency not Ready; it turned Ready before the wait was recorded.
        let started = Inputs {
            dependency: Some("not ready".into()),
            ..inputs(1)
        };
        let changed = Inputs {
            dependency: Some("ready".into()),
            ..inputs(1)
        };
        memory.start_attempt("u", started.clone());
        memory.defer("u", changed.clone(), Duration::from_secs(600));
        assert_eq!(memory.gate("u", &changed), None, "the change is news");
        assert!(
            memory.gate("u", &started).is_some(),
            "no news holds the wait"
        );

        memory.start_attempt("u", started.clone());
        memory.record_failure("u", changed.clone(), true, None);
        assert_eq!(
            memory.gate("u", &changed),
            None,
            "the change is news to a failure too"
        );
    }

    #[test]
    fn a_change_of_the_inputs_starts_the_backoff_over() {
        let memory = Memory::default();
        let mut last = Duration::ZERO;
        for _ in 0..8 {
            last = memory.record_failure("u", inputs(1), false, None).unwrap();
        }
        assert!(last >= Duration::from_secs(30), "{last:?}");
        let deleting = Inputs {
            deleting: true,
            ..inputs(1)
        };
        let first = memory.record_failure("u", deleting, false, None).unwrap();
        assert!(first <= Duration::from_secs(1), "{first:?}");
    }

    #[test]
    fn delays_grow_exponentially_up_to_a_cap() {
        let delays: Vec<Duration> = (1..=12).map(backoff_delay).collect();
        assert!(delays[0] >= Duration::from_millis(500) && delays[0] <= Duration::from_secs(1));
        assert!(delays[3] >= Duration::from_secs(4) && delays[3] <= Duration::from_secs(8));
        assert!(delays.iter().all(|d| *d <= MAX_RETRY_DELAY));
        assert!(delays[11] >= MAX_RETRY_DELAY / 2);
        assert!(backoff_delay(u32::MAX) <= MAX_RETRY_DELAY);
    }

    #[tokio::test]
    async fn a_permanent_failure_holds_until_an_input_changes() {
        let memory = Memory::default();
        assert_eq!(memory.record_failure("a", inputs(1), true, None), None);
        assert_eq!(memory.gate("a", &inputs(1)), Some(None));
        assert_eq!(
            memory.gate("a", &inputs(2)),
            None,
            "a new generation opens it"
        );
        let mut secret_changed = inputs(1);
        secret_changed.secret_version = Some("8".into());
        assert_eq!(
            memory.gate("a", &secret_changed),
            None,
            "a new Secret version opens it"
        );
        assert_eq!(
            memory.gate("b", &inputs(1)),
            None,
            "other objects are not gated"
        );
    }

    #[tokio::test]
    async fn a_transient_failure_holds_until_its_retry_time_never_before_retry_after() {
        let memory = Memory::default();
        let delay = memory
            .record_failure("a", inputs(1), false, Some(Duration::from_secs(7)))
            .unwrap();
        assert!(delay >= Duration::from_secs(7));
        let left = memory.gate("a", &inputs(1)).unwrap().unwrap();
        assert!(left > Duration::from_secs(6) && left <= delay);
        memory.record_success("a");
        assert_eq!(memory.gate("a", &inputs(1)), None);
    }

    #[tokio::test]
    async fn consecutive_failures_back_off_and_success_starts_over() {
        let memory = Memory::default();
        let delays: Vec<Duration> = (0..5)
            .map(|_| memory.record_failure("a", inputs(1), false, None).unwrap())
            .collect();
        assert!(delays[4] >= Duration::from_secs(8));
        memory.record_success("a");
        assert!(memory.record_failure("a", inputs(1), false, None).unwrap() <= INITIAL_RETRY_DELAY);
    }

    #[test]
    fn an_id_or_a_name_is_claimed_by_one_object_at_a_time() {
        let memory = Memory::default();
        assert_eq!(memory.claim_id("c1", "a"), Ok(()));
        assert_eq!(memory.claim_id("c1", "b"), Err("a".into()));
        assert_eq!(memory.claim_id("c1", "a"), Ok(()));
        let web = CreationName {
            org_id: "ACME@AdobeOrg".into(),
            sandbox: "prod".into(),
            name: "web".into(),
        };
        assert_eq!(memory.claim_name(&web, "a"), Ok(()));
        assert_eq!(memory.claim_name(&web, "b"), Err("a".into()));
        memory.release_name(&web, "b");
        assert_eq!(memory.claim_name(&web, "b"), Err("a".into()));
        memory.forget("a");
        assert_eq!(memory.claim_id("c1", "b"), Ok(()));
        assert_eq!(memory.claim_name(&web, "b"), Ok(()));
    }
}
