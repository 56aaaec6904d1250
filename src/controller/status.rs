//! The pure status computation: conditions in the kstatus shape (`Ready`, `Reconciling`, `Stalled`,
//! each with `observedGeneration`) and the decision whether a status write is needed at all.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::error::Error;
use super::reason::Reason;
use crate::api::StreamingConnectionStatus;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Where the object stands after a reconcile step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The connection exists, its inlet is published: nothing left to do.
    Ready,
    /// Ready, with a reason and message that say what of the spec is not applied (and will not be
    /// until the object changes): nothing is under way and nothing is stalled.
    ReadyExcept { reason: Reason, message: String },
    /// Work is under way (creating, waiting for the inlet, retrying a transient failure).
    Reconciling { reason: Reason, message: String },
    /// Nothing will change until the object or its Secret changes.
    Stalled { reason: Reason, message: String },
    /// The conditions stay as they are (a retry of a step whose failure they already report);
    /// only other status fields change.
    Unchanged,
}

impl Progress {
    /// Where a failed step leaves the object: `Stalled` when it waits for someone to act (see
    /// [`Error::stalls`]), else `Reconciling` (it is retried). `message` is the condition's text.
    pub fn failed(error: &Error, message: String) -> Progress {
        let reason = error.reason();
        if error.stalls() {
            Progress::Stalled { reason, message }
        } else {
            Progress::Reconciling { reason, message }
        }
    }
}

/// The three conditions for `progress`, keeping `lastTransitionTime` of any condition whose status
/// did not change (so that a steady state produces an identical status and therefore no write).
pub fn conditions(
    previous: &[Condition],
    progress: &Progress,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    conditions_for(
        previous,
        progress,
        generation,
        now,
        "The connection exists and its inlet URL is published",
    )
}

/// [`conditions`] for a kind whose `Ready=True` condition says `ready_message`.
pub fn conditions_for(
    previous: &[Condition],
    progress: &Progress,
    generation: Option<i64>,
    now: &Time,
    ready_message: &str,
) -> Vec<Condition> {
    if *progress == Progress::Unchanged && !previous.is_empty() {
        return previous
            .iter()
            .cloned()
            .map(|mut condition| {
                condition.observed_generation = generation;
                condition
            })
            .collect();
    }
    let (ready, reconciling, stalled) = match progress {
        Progress::Ready => (
            ("True", Reason::Ready, ready_message.to_string()),
            ("False", Reason::Ready, String::new()),
            ("False", Reason::Ready, String::new()),
        ),
        Progress::ReadyExcept { reason, message } => (
            ("True", *reason, message.clone()),
            ("False", *reason, String::new()),
            ("False", *reason, String::new()),
        ),
        Progress::Reconciling { reason, message } => (
            ("False", *reason, message.clone()),
            ("True", *reason, message.clone()),
            ("False", *reason, String::new()),
        ),
        Progress::Stalled { reason, message } => (
            ("False", *reason, message.clone()),
            ("False", *reason, String::new()),
            ("True", *reason, message.clone()),
        ),
        Progress::Unchanged => (
            ("False", Reason::Reconciling, String::new()),
            ("True", Reason::Reconciling, String::new()),
            ("False", Reason::Reconciling, String::new()),
        ),
    };
    [
        (READY, ready),
        (RECONCILING, reconciling),
        (STALLED, stalled),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.as_str().to_string(),
            message,
            observed_generation: generation,
            last_transition_time,
        }
    })
    .collect()
}

/// True when writing `next` would change what is stored, ignoring `lastSyncedAt` (which alone
/// never justifies a write: an unchanged resync writes nothing).
pub fn needs_write(
    current: Option<&StreamingConnectionStatus>,
    next: &StreamingConnectionStatus,
) -> bool {
    let Some(current) = current else { return true };
    let mut comparable = next.clone();
    comparable.last_synced_at = current.last_synced_at.clone();
    &comparable != current
}

/// True when `conditions` say `Ready=True` with the plain `Ready` reason (nothing of the spec left
/// unapplied) for the object's current `generation`.
pub fn plainly_ready(conditions: &[Condition], generation: Option<i64>) -> bool {
    conditions.iter().any(|c| {
        c.type_ == READY
            && c.status == "True"
            && c.reason == Reason::Ready.as_str()
            && c.observed_generation == generation
    })
}

/// True when the object's `Ready` condition is `True` for its current generation.
pub fn is_ready(status: Option<&StreamingConnectionStatus>, generation: Option<i64>) -> bool {
    status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == READY && c.status == "True" && c.observed_generation == generation)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn find<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn ready_means_not_reconciling_and_not_stalled() {
        let conditions = conditions(&[], &Progress::Ready, Some(3), &at(100));
        assert_eq!(conditions.len(), 3);
        assert_eq!(find(&conditions, READY).status, "True");
        assert_eq!(find(&conditions, RECONCILING).status, "False");
        assert_eq!(find(&conditions, STALLED).status, "False");
        assert!(conditions.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn a_permanent_failure_stalls_with_its_reason() {
        let progress = Progress::Stalled {
            reason: Reason::CredentialsNotFound,
            message: "no Secret".into(),
        };
        let conditions = conditions(&[], &progress, Some(1), &at(100));
        assert_eq!(find(&conditions, READY).status, "False");
        assert_eq!(find(&conditions, READY).reason, "CredentialsNotFound");
        assert_eq!(find(&conditions, STALLED).status, "True");
        assert_eq!(find(&conditions, STALLED).message, "no Secret");
        assert_eq!(find(&conditions, RECONCILING).status, "False");
    }

    #[test]
    fn a_transient_failure_keeps_reconciling() {
        let progress = Progress::Reconciling {
            reason: Reason::RateLimited,
            message: "429".into(),
        };
        let conditions = conditions(&[], &progress, Some(1), &at(100));
        assert_eq!(find(&conditions, RECONCILING).status, "True");
        assert_eq!(find(&conditions, RECONCILING).reason, "RateLimited");
        assert_eq!(find(&conditions, STALLED).status, "False");
    }

    #[test]
    fn transition_times_move_only_when_the_status_changes() {
        let first = conditions(&[], &Progress::Ready, Some(1), &at(100));
        let again = conditions(&first, &Progress::Ready, Some(1), &at(200));
        assert_eq!(first, again);
        let failing = Progress::Reconciling {
            reason: Reason::FlowServiceUnavailable,
            message: "503".into(),
        };
        let changed = conditions(&first, &failing, Some(1), &at(300));
        assert_eq!(find(&changed, READY).last_transition_time, at(300));
        // Stalled stays False, so its transition time is kept.
        assert_eq!(find(&changed, STALLED).last_transition_time, at(100));
    }

    #[test]
    fn an_unchanged_status_is_not_written_even_if_time_passed() {
        let current = StreamingConnectionStatus {
            connection_id: Some("id".into()),
            last_synced_at: Some(at(100)),
            conditions: conditions(&[], &Progress::Ready, Some(1), &at(100)),
            ..Default::default()
        };
        let mut next = current.clone();
        next.last_synced_at = Some(at(900));
        assert!(!needs_write(Some(&current), &next));
        next.etag = Some("\"new\"".into());
        assert!(needs_write(Some(&current), &next));
        assert!(needs_write(None, &next));
    }

    #[test]
    fn readiness_is_for_the_current_generation_only() {
        let status = StreamingConnectionStatus {
            conditions: conditions(&[], &Progress::Ready, Some(1), &at(100)),
            ..Default::default()
        };
        assert!(is_ready(Some(&status), Some(1)));
        assert!(!is_ready(Some(&status), Some(2)));
        assert!(!is_ready(None, Some(1)));
    }
}
