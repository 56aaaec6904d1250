//! Kubernetes events about StreamingConnections, aggregated into series only while the note stays
//! the same.
//!
//! kube-runtime's `Recorder` keys its series by type, reason, action and object, not by note: a
//! "Created connection 6635…" after a recreate would only bump the count of the first
//! "Created connection 7a0d…" event. So each (object, reason) gets its own recorder, replaced by a
//! fresh one whenever the note changes: a repeat is a series, a new fact is a new event.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::reason::Reason;
use crate::api::FIELD_MANAGER;

pub(crate) struct EventPublisher {
    client: Client,
    reporter: Reporter,
    /// Per object uid and reason: the last note and the recorder holding its series.
    recorders: Mutex<HashMap<(String, Reason), (String, Recorder)>>,
}

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
        let recorder = {
            let mut recorders = self
                .recorders
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match recorders.get(&key) {
                Some((last_note, recorder)) if *last_note == note => recorder.clone(),
                _ => {
                    let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
                    recorders.insert(key, (note.clone(), recorder.clone()));
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
            .retain(|(object, _), _| object != uid);
    }
}
