//! Kubernetes events about StreamingConnections, aggregated into series only while the note stays
//! the same.
//!
//! kube-runtime's `Recorder` keys its series by type, reason, action and object, not by note: a
//! "Created connection 6635…" after a recreate would only bump the count of the first
//! "Created connection 7a0d…" event. So each (object, reason) gets its own recorder, replaced by a
//! fresh one whenever the note changes: a repeat is a series, a new fact is a new event.
//!
//! What a recorder holds is only needed while a series can go on: a `Created` event is a fact that
//! happens once (a recreate says so with another note), so its recorder is not kept at all, and every
//! other one is dropped once it has been idle for as long as Kubernetes keeps a series open (6 minutes).
//! Without that, each object would hold a recorder and a copy of its last event for as long as it
//! exists: about 2 KiB per object, 6 MiB at 3,000 objects.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::reason::Reason;
use crate::api::FIELD_MANAGER;

pub(crate) struct EventPublisher {
    client: Client,
    reporter: Reporter,
    /// Per object uid and reason: the last note, the recorder holding its series, and when it was
    /// last used.
    recorders: Mutex<Recorders>,
}

#[derive(Default)]
struct Recorders {
    by_key: HashMap<(String, Reason), (String, Recorder, Instant)>,
    last_pruned: Option<Instant>,
}

/// How long a series stays open: kube-runtime's recorder (like client-go's) starts a new event
/// after this long, so a recorder idle for longer holds nothing worth keeping.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How often idle recorders are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl EventPublisher {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            reporter: Reporter {
                controller: FIELD_MANAGER.to_string(),
                instance: std::env::var("POD_NAME").ok(),
            },
            recorders: Mutex::default(),
        }
    }

    pub(crate) async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: Reason,
        note: String,
    ) -> Result<(), kube::Error> {
        let key = (regarding.uid.clone().unwrap_or_default(), reason);
        let recorder = if reason == Reason::Created {
            Recorder::new(self.client.clone(), self.reporter.clone())
        } else {
            let now = Instant::now();
            let mut recorders = self
                .recorders
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if recorders
                .last_pruned
                .is_none_or(|at| now.duration_since(at) >= PRUNE_EVERY)
            {
                recorders
                    .by_key
                    .retain(|_, (_, _, used)| now.duration_since(*used) < SERIES_WINDOW);
                recorders.last_pruned = Some(now);
            }
            match recorders.by_key.get_mut(&key) {
                Some((last_note, recorder, used)) if *last_note == note => {
                    *used = now;
                    recorder.clone()
                }
                _ => {
                    let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
                    recorders
                        .by_key
                        .insert(key, (note.clone(), recorder.clone(), now));
                    recorder
                }
            }
        };
        let event = Event {
            type_,
            reason: reason.as_str().to_string(),
            note: Some(note),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        recorder.publish(&event, regarding).await
    }

    /// Drops the series of an object that is gone.
    pub(crate) fn forget(&self, uid: &str) {
        self.recorders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .retain(|(object, _), _| object != uid);
    }
}
