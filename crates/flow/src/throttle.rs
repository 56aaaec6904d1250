//! How hard the client may push Adobe: one rate limit and one concurrency cap for every request the
//! process sends (Flow Service and IMS alike), and per-integration 429 windows during which nothing
//! at all is sent with that integration's credentials.
//!
//! Adobe throttles per integration (the OAuth client, whose id is also the `x-api-key`), so a 429
//! on one call says every other call with the same credentials would get one too. Sending them
//! anyway only prolongs the throttling; failing them fast with the remaining wait lets the caller
//! requeue instead.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::credentials::Credentials;
use super::error::{ErrorDetails, FlowError, FlowErrorKind};
use super::observer::Operation;

/// The window after a 429 without `Retry-After`: 1 s, doubled for every further 429 in a row.
const DEFAULT_WINDOW: Duration = Duration::from_secs(1);
/// The longest window a 429 without `Retry-After` opens.
const MAX_DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The longest `Retry-After` honoured: a larger value is more likely a bug than a plan, and an
/// unbounded one would overflow the clock (the parser saturates at `u64::MAX` seconds).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// What the error of a request refused inside a window says.
pub(crate) const NOT_SENT: &str = "not sent: still inside the Retry-After window of a previous 429";

/// The unit Adobe throttles: the OAuth client and the API key it calls with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Integration {
    client_id: String,
    api_key: String,
}

impl Integration {
    pub(crate) fn of(credentials: &Credentials) -> Self {
        Self {
            client_id: credentials.client_id().to_owned(),
            api_key: credentials.api_key().to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    /// Nothing is sent before this instant.
    until: Instant,
    /// 429s in a row, without another response in between; doubles the default window.
    consecutive: u32,
}

/// The rate limit, concurrency cap and 429 windows shared by every clone of a client.
pub(crate) struct Throttle {
    rate_limit: Option<DefaultDirectRateLimiter>,
    concurrency: Option<Semaphore>,
    windows: Mutex<HashMap<Integration, Window>>,
}

impl Throttle {
    /// `qps <= 0` (or not finite) and `max_concurrency == 0` mean unlimited.
    pub(crate) fn new(qps: f64, max_concurrency: usize) -> Self {
        Self {
            rate_limit: rate_limiter(qps),
            concurrency: (max_concurrency > 0)
                .then(|| Semaphore::new(max_concurrency.min(Semaphore::MAX_PERMITS))),
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Integration, Window>> {
        // Plain data updated in single assignments: a poisoned lock is safe to keep using.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How much of the integration's 429 window is left, if it is inside one.
    pub(crate) fn remaining(&self, integration: &Integration) -> Option<Duration> {
        let now = Instant::now();
        let mut windows = self.lock();
        let window = windows.get(integration)?;
        if now < window.until {
            return Some(window.until - now);
        }
        if window.consecutive == 0 {
            windows.remove(integration);
        }
        None
    }

    /// Fails fast, without sending anything, while the integration is inside a 429 window.
    pub(crate) fn check(
        &self,
        operation: Operation,
        integration: &Integration,
    ) -> Result<(), FlowError> {
        match self.remaining(integration) {
            None => Ok(()),
            Some(remaining) => Err(FlowError::new(
                FlowErrorKind::RateLimited,
                operation,
                ErrorDetails::transport(NOT_SENT),
            )
            .with_retry_after(remaining)),
        }
    }

    /// Waits for the rate limit and a concurrency slot, checking the 429 window before and after the
    /// wait (a 429 may arrive while this request queues). Hold the permit until the response is read.
    pub(crate) async fn admit(
        &self,
        operation: Operation,
        integration: &Integration,
    ) -> Result<Option<SemaphorePermit<'_>>, FlowError> {
        self.check(operation, integration)?;
        if let Some(limit) = &self.rate_limit {
            limit.until_ready().await;
        }
        let permit = match &self.concurrency {
            Some(semaphore) => Some(
                semaphore
                    .acquire()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        self.check(operation, integration)?;
        Ok(permit)
    }

    /// Records the status of a response sent with the integration's credentials. A 429 opens (or
    /// extends) its window, for `retry_after` or else the doubling default, and the window's length
    /// is returned; any other status ends the run of 429s.
    pub(crate) fn record(
        &self,
        integration: &Integration,
        status: u16,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let now = Instant::now();
        let mut windows = self.lock();
        if status != 429 {
            if let Some(window) = windows.get_mut(integration) {
                window.consecutive = 0;
                if now >= window.until {
                    windows.remove(integration);
                }
            }
            return None;
        }
        let window = windows.entry(integration.clone()).or_insert(Window {
            until: now,
            consecutive: 0,
        });
        window.consecutive = window.consecutive.saturating_add(1);
        let length = match retry_after {
            Some(asked) => asked.min(MAX_RETRY_AFTER),
            None => default_window(window.consecutive),
        };
        window.until = window.until.max(now + length);
        Some(length)
    }
}

/// 1 s for the first 429 without `Retry-After`, doubling with each one in a row, at most 5 minutes.
pub(crate) fn default_window(consecutive: u32) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(16);
    (DEFAULT_WINDOW * 2u32.pow(doublings)).min(MAX_DEFAULT_WINDOW)
}

/// `None` (unlimited) unless `qps` is a positive finite number. The burst is one second's worth, so
/// that a resync of many objects starts promptly but the average stays at `qps`.
pub(crate) fn rate_limiter(qps: f64) -> Option<DefaultDirectRateLimiter> {
    if !(qps.is_finite() && qps > 0.0) {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / qps);
    let burst = NonZeroU32::new(qps.floor().clamp(1.0, f64::from(u32::MAX)) as u32)
        .unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map(|quota| RateLimiter::direct(quota.allow_burst(burst)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration(client_id: &str) -> Integration {
        Integration {
            client_id: client_id.to_owned(),
            api_key: client_id.to_owned(),
        }
    }

    #[test]
    fn rate_limits_are_optional() {
        assert!(rate_limiter(0.0).is_none());
        assert!(rate_limiter(-1.0).is_none());
        assert!(rate_limiter(f64::NAN).is_none());
        assert!(rate_limiter(f64::INFINITY).is_none());
        assert!(rate_limiter(0.5).is_some());
        assert!(rate_limiter(10.0).is_some());
    }

    #[test]
    fn the_default_window_doubles_up_to_five_minutes() {
        assert_eq!(default_window(1), Duration::from_secs(1));
        assert_eq!(default_window(2), Duration::from_secs(2));
        assert_eq!(default_window(5), Duration::from_secs(16));
        assert_eq!(default_window(9), Duration::from_secs(256));
        assert_eq!(default_window(10), Duration::from_secs(300));
        assert_eq!(default_window(u32::MAX), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn a_429_blocks_its_integration_until_retry_after() {
        let throttle = Throttle::new(0.0, 0);
        let (ours, theirs) = (integration("ours"), integration("theirs"));
        assert_eq!(
            throttle.record(&ours, 429, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        let error = throttle.check(Operation::Get, &ours).unwrap_err();
        assert_eq!(error.kind(), FlowErrorKind::RateLimited);
        let wait = error.retry_after().unwrap();
        assert!(
            wait > Duration::from_secs(6) && wait <= Duration::from_secs(7),
            "{wait:?}"
        );
        assert!(error.to_string().contains(NOT_SENT), "{error}");
        throttle.check(Operation::Get, &theirs).unwrap();

        throttle.record(&theirs, 429, Some(Duration::from_millis(50)));
        assert!(throttle.check(Operation::Get, &theirs).is_err());
        tokio::time::sleep(Duration::from_millis(60)).await;
        throttle.check(Operation::Get, &theirs).unwrap();
        assert!(throttle.check(Operation::Get, &ours).is_err());
    }

    #[test]
    fn consecutive_429s_without_retry_after_double_the_window() {
        let throttle = Throttle::new(0.0, 0);
        let ours = integration("ours");
        for expected in [1, 2, 4, 8] {
            assert_eq!(
                throttle.record(&ours, 429, None),
                Some(Duration::from_secs(expected))
            );
        }
        assert_eq!(throttle.record(&ours, 200, None), None);
        assert_eq!(
            throttle.record(&ours, 429, None),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_shorter_retry_after_never_shortens_an_open_window() {
        let throttle = Throttle::new(0.0, 0);
        let ours = integration("ours");
        throttle.record(&ours, 429, Some(Duration::from_secs(30)));
        throttle.record(&ours, 429, Some(Duration::from_secs(1)));
        throttle.record(&ours, 200, None);
        let remaining = throttle.remaining(&ours).unwrap();
        assert!(remaining > Duration::from_secs(29), "{remaining:?}");
    }

    #[test]
    fn an_absurd_retry_after_is_capped() {
        let throttle = Throttle::new(0.0, 0);
        let ours = integration("ours");
        assert_eq!(
            throttle.record(&ours, 429, Some(Duration::from_secs(u64::MAX))),
            Some(MAX_RETRY_AFTER)
        );
    }
}
