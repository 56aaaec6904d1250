//! Per-object exponential backoff with jitter for transient failures, reset by a success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use rand::Rng;

use crate::api::StreamingConnection;

/// The first retry waits about this long; each further failure doubles it.
const INITIAL_DELAY: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// Failure counts per object. Entries disappear on success, so the map holds only failing objects.
#[derive(Debug, Default)]
pub struct ReconcileBackoff {
    failures: Mutex<HashMap<ObjectRef<StreamingConnection>, u32>>,
}

impl ReconcileBackoff {
    /// Counts a failure and returns how long to wait before the next attempt: `1s · 2^(n-1)`,
    /// capped at five minutes, with "equal jitter" (between half and all of it) so that objects
    /// failing together spread out.
    pub fn next_delay(&self, object: &ObjectRef<StreamingConnection>) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let count = failures.entry(object.clone()).or_insert(0);
        *count = count.saturating_add(1);
        let ceiling = INITIAL_DELAY
            .saturating_mul(2u32.saturating_pow(*count - 1))
            .min(MAX_DELAY);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Forgets the failures of an object that reconciled successfully.
    pub fn reset(&self, object: &ObjectRef<StreamingConnection>) {
        self.failures.lock().expect("backoff lock").remove(object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectRef<StreamingConnection> {
        ObjectRef::new(name).within("marketing")
    }

    #[test]
    fn delays_grow_exponentially_up_to_a_cap() {
        let backoff = ReconcileBackoff::default();
        let web = object("web");
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay(&web)).collect();
        assert!(delays[0] >= Duration::from_millis(500) && delays[0] <= Duration::from_secs(1));
        assert!(delays[3] >= Duration::from_secs(4) && delays[3] <= Duration::from_secs(8));
        assert!(delays.iter().all(|d| *d <= MAX_DELAY));
        assert!(delays[11] >= MAX_DELAY / 2);
    }

    #[test]
    fn success_resets_only_that_object() {
        let backoff = ReconcileBackoff::default();
        let (web, app) = (object("web"), object("app"));
        for _ in 0..5 {
            backoff.next_delay(&web);
            backoff.next_delay(&app);
        }
        backoff.reset(&web);
        assert!(backoff.next_delay(&web) <= Duration::from_secs(1));
        assert!(backoff.next_delay(&app) >= Duration::from_secs(8));
    }
}
