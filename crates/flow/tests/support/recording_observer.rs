//! An observer that records every call, to check the client's metrics hooks. Each test file uses a
//! part of it.
#![allow(dead_code)]

use std::sync::Mutex;
use std::time::Duration;

use aep_flow::{FlowObserver, Operation};

/// Records every observer call, to check the metrics hooks.
#[derive(Default)]
pub struct RecordingObserver {
    pub calls: Mutex<Vec<(Operation, &'static str)>>,
}

impl FlowObserver for RecordingObserver {
    fn on_request(&self, operation: Operation, outcome: &'static str, _elapsed: Duration) {
        self.calls.lock().unwrap().push((operation, outcome));
    }
}

impl RecordingObserver {
    /// How many requests of `operation` ended with `outcome`.
    pub fn count(&self, operation: Operation, outcome: &str) -> usize {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(op, out)| *op == operation && *out == outcome)
            .count()
    }

    /// The outcomes of the requests of `operation`, in order.
    pub fn outcomes(&self, operation: Operation) -> Vec<&'static str> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(op, _)| *op == operation)
            .map(|(_, outcome)| *outcome)
            .collect()
    }
}
