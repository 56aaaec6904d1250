//! IMS access tokens: minted with OAuth server-to-server `client_credentials`, cached per credential
//! identity, refreshed before they expire, minted once for any number of concurrent callers.
//!
//! Adobe throttles integrations that mint too many tokens, so a token is reused until shortly before
//! it expires ([`refresh_margin`]), and each cache slot has a mint lock: the first caller that finds
//! no usable token mints one; callers that queued behind it take its result, success or failure,
//! rather than minting again. While a still-valid token is being refreshed, other callers keep using it.
//!
//! Failed mints are remembered in the slot too, so that a broken Secret costs one IMS request, not
//! one per reconcile: a permanent failure (IMS rejected the client, the secret or the scopes) is
//! handed to every later caller until the credentials change (a new Secret version is a new slot) or
//! [`TokenProvider::forget`] drops the slot; a transient one (5xx, timeout, 429) until a short
//! deadline ([`transient_hold`]), with `retry_after` set to what is left of it. IMS requests go
//! through the client's rate limit, concurrency cap and 429 windows like every other request.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use super::credentials::{Auth, Credentials, SecretString};
use super::error::{ErrorDetails, FlowError, FlowErrorKind};
use super::http::{Response, execute};
use super::observer::{FlowObserver, Operation, outcome_for_status};
use super::throttle::{Integration, Throttle};

/// The most a token is cached, whatever IMS says: tokens "usually expire in 24 hours", and a larger
/// value is more likely a unit mistake (the JWT exchange answered in milliseconds) than a real lifetime.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Refresh at most this long before expiry.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long a transient mint failure is held after the first one in a row; doubled for each further one.
const TRANSIENT_HOLD: Duration = Duration::from_secs(1);
/// The longest a transient mint failure is held.
const MAX_TRANSIENT_HOLD: Duration = Duration::from_secs(5 * 60);
/// How long an unused slot that remembers a permanent failure outlives a change of other
/// credentials. The controller forgets the slot when the Secret changes; this only bounds the memory
/// should it not, at the cost of one IMS request a day for such a Secret.
const MAX_PERMANENT_FAILURE_AGE: Duration = MAX_TOKEN_TTL;

/// How long IMS is left alone after `consecutive` transient mint failures in a row, when it did not
/// say (`Retry-After`): 1 s, doubling, at most 5 minutes.
pub(crate) fn transient_hold(consecutive: u32) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(16);
    (TRANSIENT_HOLD * 2u32.pow(doublings)).min(MAX_TRANSIENT_HOLD)
}

/// How long before expiry a token is replaced: 5 minutes, or a tenth of its lifetime when that is
/// shorter, so that short-lived tokens are still used for most of their life.
pub(crate) fn refresh_margin(ttl: Duration) -> Duration {
    (ttl / 10).min(MAX_REFRESH_MARGIN)
}

/// The lifetime to trust from an `expires_in` (seconds): never negative, never beyond
/// [`MAX_TOKEN_TTL`]. Zero means "use it for the calls already waiting, then mint again".
pub(crate) fn trusted_ttl(expires_in: Option<f64>) -> Duration {
    match expires_in {
        Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
            Duration::from_secs_f64(seconds.min(MAX_TOKEN_TTL.as_secs_f64()))
        }
        _ => Duration::ZERO,
    }
}

/// A bearer token; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AccessToken(SecretString);

impl AccessToken {
    pub(crate) fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Tokens are per Secret version and client: a changed Secret (new resourceVersion) never reuses a
/// token minted from the old one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    cache_key: String,
    client_id: String,
}

impl TokenKey {
    fn of(credentials: &Credentials) -> Self {
        Self {
            cache_key: credentials.cache_key().to_owned(),
            client_id: credentials.client_id().to_owned(),
        }
    }
}

#[derive(Clone)]
struct CachedToken {
    token: AccessToken,
    refresh_at: Instant,
    expires_at: Instant,
}

/// The last mint failure of a slot, handed out instead of asking IMS again.
#[derive(Clone)]
struct Failure {
    error: FlowError,
    /// When it happened.
    at: Instant,
    /// `None` for a permanent failure: held until the slot is dropped. Otherwise the end of the hold.
    until: Option<Instant>,
}

impl Failure {
    /// The error a caller gets at `now`, or `None` once a transient failure's hold has passed.
    fn error_at(&self, now: Instant) -> Option<FlowError> {
        match self.until {
            None => Some(self.error.clone()),
            Some(until) if now < until => Some(self.error.clone().with_retry_after(until - now)),
            Some(_) => None,
        }
    }
}

#[derive(Default)]
struct SlotState {
    current: Option<CachedToken>,
    /// Incremented by every mint attempt, so that a caller that waited for the mint lock can tell
    /// whether someone minted meanwhile and take that result.
    mints: u64,
    last_failure: Option<Failure>,
    /// Transient mint failures in a row; lengthens the hold.
    consecutive_failures: u32,
}

impl SlotState {
    /// What a caller gets without minting: a token not yet due for refresh, or the remembered
    /// failure while it holds (unless the old token is still valid). `None`: mint.
    fn settled(&self, now: Instant) -> Option<Result<AccessToken, FlowError>> {
        if let Some(cached) = &self.current
            && now < cached.refresh_at
        {
            return Some(Ok(cached.token.clone()));
        }
        let failure = self.last_failure.as_ref()?.error_at(now)?;
        // A refresh failed, but the old token has not expired yet: keep using it meanwhile.
        if let Some(cached) = &self.current
            && now < cached.expires_at
        {
            return Some(Ok(cached.token.clone()));
        }
        Some(Err(failure))
    }

    /// True while this slot must be kept although nobody uses it: its token is valid, or it
    /// remembers a failure that still holds.
    fn worth_keeping(&self, now: Instant) -> bool {
        let token_valid = self
            .current
            .as_ref()
            .is_some_and(|cached| now < cached.expires_at);
        let failure_holds = self
            .last_failure
            .as_ref()
            .is_some_and(|failure| match failure.until {
                None => now.duration_since(failure.at) < MAX_PERMANENT_FAILURE_AGE,
                Some(until) => now < until,
            });
        token_valid || failure_holds
    }
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    mint_lock: tokio::sync::Mutex<()>,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // The state is plain data updated in single assignments; a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Mints and caches IMS access tokens.
pub(crate) struct TokenProvider {
    http: reqwest::Client,
    token_url: Url,
    observer: Arc<dyn FlowObserver>,
    throttle: Arc<Throttle>,
    slots: Mutex<HashMap<TokenKey, Arc<Slot>>>,
}

/// The `POST /ims/token/v3` success body; `expires_in` is in seconds.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// A number in the documented form; a numeric string is accepted too.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl TokenProvider {
    pub(crate) fn new(
        http: reqwest::Client,
        token_url: Url,
        observer: Arc<dyn FlowObserver>,
        throttle: Arc<Throttle>,
    ) -> Self {
        Self {
            http,
            token_url,
            observer,
            throttle,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A token for these credentials: the static one, the cached one, or a freshly minted one.
    pub(crate) async fn token(&self, credentials: &Credentials) -> Result<AccessToken, FlowError> {
        let (client_secret, scopes) = match credentials.auth() {
            Auth::StaticToken(token) => return Ok(AccessToken(token.clone())),
            Auth::ClientCredentials {
                client_secret,
                scopes,
            } => (client_secret, scopes),
        };
        let slot = self.slot(credentials);
        let mints_seen = {
            let state = slot.state();
            if let Some(settled) = state.settled(Instant::now()) {
                return settled;
            }
            state.mints
        };

        let _minting = match slot.mint_lock.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Someone is minting. A token that is due for refresh but not yet expired is still good.
                if let Some(cached) = &slot.state().current
                    && Instant::now() < cached.expires_at
                {
                    return Ok(cached.token.clone());
                }
                slot.mint_lock.lock().await
            }
        };
        {
            let state = slot.state();
            if state.mints != mints_seen {
                // Minted while this caller waited: share that outcome instead of minting again.
                if let Some(failure) = &state.last_failure {
                    let now = Instant::now();
                    return Err(failure
                        .error_at(now)
                        .unwrap_or_else(|| failure.error.clone()));
                }
                if let Some(cached) = &state.current {
                    return Ok(cached.token.clone());
                }
            } else if let Some(settled) = state.settled(Instant::now()) {
                return settled;
            }
        }

        let result = self.mint(credentials, client_secret, scopes).await;
        let mut state = slot.state();
        state.mints += 1;
        let now = Instant::now();
        match result {
            Ok((token, ttl)) => {
                state.current = Some(CachedToken {
                    token: token.clone(),
                    refresh_at: now + ttl - refresh_margin(ttl),
                    expires_at: now + ttl,
                });
                state.last_failure = None;
                state.consecutive_failures = 0;
                Ok(token)
            }
            Err(error) if error.is_permanent() => {
                tracing::debug!(
                    client_id = credentials.client_id(),
                    kind = ?error.kind(),
                    "IMS refused the credentials; no more token requests until they change"
                );
                state.last_failure = Some(Failure {
                    error: error.clone(),
                    at: now,
                    until: None,
                });
                Err(error)
            }
            Err(error) => {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                let hold = error
                    .retry_after()
                    .unwrap_or_else(|| transient_hold(state.consecutive_failures))
                    .min(MAX_TRANSIENT_HOLD);
                let error = error.with_retry_after(hold);
                state.last_failure = Some(Failure {
                    error: error.clone(),
                    at: now,
                    until: Some(now + hold),
                });
                Err(error)
            }
        }
    }

    /// Drops the cached token after Flow Service rejected it, unless another caller already replaced
    /// it (so that many concurrent 401s lead to one new token, not many).
    pub(crate) fn invalidate(&self, credentials: &Credentials, rejected: &AccessToken) {
        let slot = self.slot(credentials);
        let mut state = slot.state();
        if state
            .current
            .as_ref()
            .is_some_and(|cached| &cached.token == rejected)
        {
            state.current = None;
        }
    }

    /// Forgets everything cached for these credentials (the Secret changed or was deleted).
    pub(crate) fn forget(&self, credentials: &Credentials) {
        self.lock_slots().remove(&TokenKey::of(credentials));
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, credentials: &Credentials) -> Arc<Slot> {
        let key = TokenKey::of(credentials);
        let mut slots = self.lock_slots();
        if let Some(slot) = slots.get(&key) {
            return Arc::clone(slot);
        }
        // A new Secret version usually replaces an old one: drop slots that nobody is using and that
        // hold neither a valid token nor a failure still to be handed out, so the cache does not
        // grow with every Secret update.
        let now = Instant::now();
        slots.retain(|_, slot| Arc::strong_count(slot) > 1 || slot.state().worth_keeping(now));
        Arc::clone(slots.entry(key).or_default())
    }

    async fn mint(
        &self,
        credentials: &Credentials,
        client_secret: &SecretString,
        scopes: &str,
    ) -> Result<(AccessToken, Duration), FlowError> {
        let operation = Operation::Token;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", credentials.client_id()),
            ("client_secret", client_secret.expose()),
            ("scope", scopes),
        ];
        let request = self
            .http
            .post(self.token_url.clone())
            .header(http::header::ACCEPT, "application/json")
            .form(&form);
        let integration = Integration::of(credentials);
        let _permit = self.throttle.admit(operation, &integration).await?;
        let started = std::time::Instant::now();
        let result = execute(operation, request).await;
        let outcome = match &result {
            Ok(response) => outcome_for_status(response.status),
            Err(_) => super::observer::OUTCOME_ERROR,
        };
        self.observer
            .on_request(operation, outcome, started.elapsed());
        let response = result?;
        let window = self
            .throttle
            .record(&integration, response.status, response.retry_after());
        tracing::debug!(
            operation = operation.as_str(),
            status = response.status,
            client_id = credentials.client_id(),
            "IMS token request"
        );
        if !response.is_success() {
            let error = response.into_error(operation, credentials.secret_values());
            return Err(match (window, error.retry_after()) {
                (Some(window), None) => error.with_retry_after(window),
                _ => error,
            });
        }
        parse_token(&response).ok_or_else(|| {
            FlowError::new(
                FlowErrorKind::UnexpectedResponse,
                operation,
                ErrorDetails {
                    status: Some(response.status),
                    ..ErrorDetails::transport("the IMS token response has no access_token")
                },
            )
        })
    }
}

fn parse_token(response: &Response) -> Option<(AccessToken, Duration)> {
    let body: TokenResponse = serde_json::from_slice(&response.body).ok()?;
    let token = body.access_token.trim();
    if token.is_empty() || http::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        return None;
    }
    let expires_in = match body.expires_in {
        Some(serde_json::Value::Number(number)) => number.as_f64(),
        Some(serde_json::Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    };
    let ttl = trusted_ttl(expires_in);
    Some((AccessToken(SecretString::new(token)), ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin_is_five_minutes_or_a_tenth_of_the_lifetime() {
        assert_eq!(
            refresh_margin(Duration::from_secs(86_399)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn expires_in_is_never_trusted_beyond_reason() {
        assert_eq!(trusted_ttl(Some(86_399.0)), Duration::from_secs(86_399));
        assert_eq!(trusted_ttl(Some(-5.0)), Duration::ZERO);
        assert_eq!(trusted_ttl(Some(0.0)), Duration::ZERO);
        assert_eq!(trusted_ttl(None), Duration::ZERO);
        assert_eq!(trusted_ttl(Some(f64::NAN)), Duration::ZERO);
        assert_eq!(trusted_ttl(Some(86_399_992.0)), MAX_TOKEN_TTL);
    }

    #[test]
    fn transient_failures_are_held_one_second_doubling_up_to_five_minutes() {
        assert_eq!(transient_hold(1), Duration::from_secs(1));
        assert_eq!(transient_hold(2), Duration::from_secs(2));
        assert_eq!(transient_hold(3), Duration::from_secs(4));
        assert_eq!(transient_hold(9), Duration::from_secs(256));
        assert_eq!(transient_hold(10), MAX_TRANSIENT_HOLD);
        assert_eq!(transient_hold(u32::MAX), MAX_TRANSIENT_HOLD);
    }

    #[test]
    fn access_tokens_do_not_debug_their_value() {
        let token = AccessToken(SecretString::new("eyJ-secret-token"));
        assert_eq!(format!("{token:?}"), "AccessToken(<redacted>)");
    }
}
