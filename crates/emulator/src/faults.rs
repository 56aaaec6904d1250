//! Fault injection: rules posted to `/_emulator/faults` that make matching requests fail, slow down, commit and
//! then fail, commit late (after the client gave up), or answer a corrupted id: the ambiguous outcomes a client
//! must survive without creating duplicates.
//!
//! A rule matches on method, route template and/or a path glob; the first rule (in the order they were added)
//! that matches, still has `times` left and wins its `probability` roll decides the request. The JSON format is
//! documented in docs/emulator.md; this module is its single source of truth.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::connections::CONNECTION_ROUTE;
use super::errors::{ApiError, FlowServiceProblem};

/// What a firing rule does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultAction {
    /// Answer `status` without performing the operation.
    Fail,
    /// Perform the operation, then answer `status` (default 500) instead of its real answer.
    CommitThenFail,
    /// Close the connection without an answer, without performing the operation.
    Drop,
    /// Perform the operation, then close the connection without an answer.
    CommitThenDrop,
    /// Only add `latencyMs`, then serve normally.
    Delay,
    /// After `latencyMs`, perform the operation in a detached task, so that it commits even when the client has
    /// gone (a proxy forwarding a request the client already gave up on). A client still waiting gets the real
    /// answer, or `status` when the rule has one.
    CommitAfterDelay,
    /// Perform the operation; a successful JSON answer carrying an `id` gets [`CORRUPT_ID`] instead (in
    /// `Location` too).
    CorruptId,
}

impl FaultAction {
    fn commits(self) -> bool {
        matches!(self, Self::CommitThenFail | Self::CommitThenDrop)
    }
}

/// The id a `corruptId` rule puts in the answer: not a UUID, as no Flow Service id is.
pub(crate) const CORRUPT_ID: &str = "not-a-uuid";

/// `Retry-After` as seconds or as literal header text (an HTTP date, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RetryAfter {
    /// A delay in seconds, e.g. `7`.
    Seconds(u64),
    /// Sent verbatim, e.g. an HTTP date.
    Text(String),
}

/// A rule as posted. Every field is optional; see [`FaultRule::validated`] for the rules between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    /// Names the rule for `DELETE /_emulator/faults/{id}`; `fault-<n>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// HTTP method, any case; absent or `*` matches every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Route template, exactly as listed in the docs, e.g. `/data/foundation/flowservice/connections/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Glob over the actual path: `*` matches any run of characters including `/`, `?` one character.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What the rule does; absent: `fail` when a status is given, else `delay` when a latency is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<FaultAction>,
    /// The status to answer with (`fail`, `commitThenFail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// A `Retry-After` header to add to the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<RetryAfter>,
    /// Response body; a JSON string is sent as plain text, anything else as JSON. Absent: an Adobe-shaped body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Extra delay before the request is served, on top of `--latency-ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Fire only this many times, then stay inert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// Chance in [0, 1] that a matching request fires the rule; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

/// Statuses a `commitThenFail` rule answers with when it names none.
const DEFAULT_COMMIT_THEN_FAIL_STATUS: u16 = 500;

impl FaultRule {
    /// Check the rule and fill the derived fields (`action`, `method` case, `status` of commitThenFail).
    fn validated(mut self) -> Result<Self, String> {
        let action = match (self.action, self.status, self.latency_ms) {
            (Some(action), _, _) => action,
            (None, Some(_), _) => FaultAction::Fail,
            (None, None, Some(_)) => FaultAction::Delay,
            (None, None, None) => {
                return Err("a rule needs an action, a status or latencyMs".to_owned());
            }
        };
        match action {
            FaultAction::Fail if self.status.is_none() => {
                return Err("action fail needs a status".to_owned());
            }
            FaultAction::CommitThenFail if self.status.is_none() => {
                self.status = Some(DEFAULT_COMMIT_THEN_FAIL_STATUS);
            }
            FaultAction::Drop
            | FaultAction::CommitThenDrop
            | FaultAction::Delay
            | FaultAction::CorruptId
                if self.status.is_some() =>
            {
                return Err(
                    "status is only meaningful with action fail, commitThenFail or commitAfterDelay"
                        .to_owned(),
                );
            }
            FaultAction::Delay if self.latency_ms.is_none() => {
                return Err("action delay needs latencyMs".to_owned());
            }
            FaultAction::CommitAfterDelay if self.latency_ms.is_none() => {
                return Err("action commitAfterDelay needs latencyMs".to_owned());
            }
            _ => {}
        }
        self.action = Some(action);
        if let Some(status) = self.status
            && !(100..=599).contains(&status)
        {
            return Err(format!("status {status} is not an HTTP status"));
        }
        if let Some(p) = self.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(format!("probability {p} is not between 0 and 1"));
        }
        if self.times == Some(0) {
            return Err("times must be at least 1 (delete the rule to disable it)".to_owned());
        }
        self.method = match self.method.take() {
            Some(method) if method == "*" => None,
            Some(method)
                if !method.is_empty() && method.chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                Some(method.to_ascii_uppercase())
            }
            Some(method) => return Err(format!("method {method:?} is not an HTTP method")),
            None => None,
        };
        for (field, value) in [("route", &self.route), ("path", &self.path)] {
            if value.as_ref().is_some_and(|v| !v.starts_with('/')) {
                return Err(format!("{field} must start with '/'"));
            }
        }
        if let Some(RetryAfter::Text(text)) = &self.retry_after
            && HeaderValue::from_str(text).is_err()
        {
            return Err("retryAfter is not valid header text".to_owned());
        }
        Ok(self)
    }

    fn matches(&self, method: &str, route: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.route.as_deref().is_none_or(|r| r == route)
            && self
                .path
                .as_deref()
                .is_none_or(|glob| glob_matches(glob.as_bytes(), path.as_bytes()))
    }
}

/// `*` matches any run of bytes (including `/`), `?` exactly one, everything else itself.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear in practice, no recursion blow-up on many stars.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A stored rule and how often it fired.
#[derive(Debug, Clone)]
struct ActiveRule {
    rule: FaultRule,
    fired: u64,
}

impl ActiveRule {
    fn exhausted(&self) -> bool {
        self.rule.times.is_some_and(|times| self.fired >= times)
    }

    fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(&self.rule).expect("rule serializes");
        value["fired"] = json!(self.fired);
        if let Some(times) = self.rule.times {
            value["remaining"] = json!(times.saturating_sub(self.fired));
        }
        value
    }
}

/// The decision for one request, taken from the rule that fired.
#[derive(Debug, Clone)]
pub(crate) struct FaultDecision {
    /// The rule that fired, recorded in the request log.
    pub(crate) rule_id: String,
    /// What to do to this request.
    pub(crate) action: FaultAction,
    /// How long to wait first.
    pub(crate) latency: Duration,
    status: Option<u16>,
    retry_after: Option<RetryAfter>,
    body: Option<Value>,
}

impl FaultDecision {
    /// Whether the real handler runs before the fault is applied.
    pub(crate) fn commits(&self) -> bool {
        self.action.commits()
    }

    /// Whether the rule names a status that replaces the real answer (always for `fail`/`commitThenFail`,
    /// optionally for `commitAfterDelay`).
    pub(crate) fn replaces_answer(&self) -> bool {
        self.status.is_some()
    }

    /// The answer of a `fail`/`commitThenFail`/`commitAfterDelay` rule. Without a body, the shape of the
    /// component the route belongs to (IMS, inlet or Flow Service), so that clients parse it as they would a
    /// real failure. A 404 on an item route (`resource_id` is its decoded `{id}` or `{inletId}`) is exactly the
    /// genuine not-found answer, so that a client cannot tell an injected 404 from a missing resource.
    pub(crate) fn response(&self, route: &str, resource_id: Option<&str>) -> Response {
        let status = StatusCode::from_u16(self.status.unwrap_or(DEFAULT_COMMIT_THEN_FAIL_STATUS))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match &self.body {
            Some(Value::String(text)) => (status, text.clone()).into_response(),
            Some(body) => (status, Json(body.clone())).into_response(),
            None if route.starts_with("/ims/") => ApiError::Ims {
                status,
                error: "server_error",
                description: format!("injected fault {}", self.rule_id),
            }
            .into_response(),
            None if route.starts_with("/collection/") => match resource_id {
                Some(inlet_id) if status == StatusCode::NOT_FOUND => {
                    ApiError::inlet_not_found(inlet_id).into_response()
                }
                _ => ApiError::inlet_problem(
                    status,
                    "Injected fault",
                    format!("injected fault {}", self.rule_id),
                )
                .into_response(),
            },
            None => match resource_id {
                Some(id) if status == StatusCode::NOT_FOUND && route == CONNECTION_ROUTE => {
                    ApiError::Flow(FlowServiceProblem::not_found(id)).into_response()
                }
                // The dataflow item routes (flows, source/target connections, runs, mapping sets, datasets).
                Some(id) if status == StatusCode::NOT_FOUND => {
                    crate::dataflows::genuine_not_found(route, id).unwrap_or_else(|| {
                        ApiError::Flow(FlowServiceProblem::for_status(status)).into_response()
                    })
                }
                _ => ApiError::Flow(FlowServiceProblem::for_status(status)).into_response(),
            },
        };
        // ApiError bodies carry their own status; the rule's status wins.
        *response.status_mut() = status;
        if let Some(retry_after) = &self.retry_after {
            let value = match retry_after {
                RetryAfter::Seconds(seconds) => HeaderValue::from(*seconds),
                RetryAfter::Text(text) => {
                    HeaderValue::from_str(text).expect("validated header text")
                }
            };
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// The answer of a `corruptId` rule: a successful JSON object's string `id` becomes [`CORRUPT_ID`], and the same
/// id at the end of `Location` too, so that the client has no other way to learn the real one. Anything else
/// (an error, a body without an id) passes unchanged.
pub(crate) async fn corrupt_id(response: Response) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "corruptId: could not read the answer");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut document = match serde_json::from_slice::<Value>(&bytes) {
        Ok(document @ Value::Object(_)) => document,
        _ => return Response::from_parts(parts, Body::from(bytes)),
    };
    let Some(real_id) = document["id"].as_str().map(str::to_owned) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    document["id"] = json!(CORRUPT_ID);
    let location = parts
        .headers
        .get(header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|location| location.strip_suffix(real_id.as_str()))
        .and_then(|prefix| HeaderValue::from_str(&format!("{prefix}{CORRUPT_ID}")).ok());
    if let Some(location) = location {
        parts.headers.insert(header::LOCATION, location);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&document).expect("JSON serializes");
    Response::from_parts(parts, Body::from(body))
}

/// The installed rules.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    rules: Vec<ActiveRule>,
    next_id: u64,
}

impl FaultBook {
    /// Validate and add rules (all or none). Returns the stored rules, ids filled in.
    pub(crate) fn add(&mut self, rules: Vec<FaultRule>) -> Result<Vec<Value>, String> {
        let mut validated = Vec::with_capacity(rules.len());
        for (index, rule) in rules.into_iter().enumerate() {
            let mut rule = rule.validated().map_err(|e| format!("rule {index}: {e}"))?;
            let id = match rule.id.take() {
                Some(id) => id,
                None => {
                    self.next_id += 1;
                    format!("fault-{}", self.next_id)
                }
            };
            let taken = self
                .rules
                .iter()
                .any(|r| r.rule.id.as_deref() == Some(id.as_str()))
                || validated
                    .iter()
                    .any(|r: &ActiveRule| r.rule.id.as_deref() == Some(id.as_str()));
            if taken {
                return Err(format!("rule {index}: id {id:?} is already in use"));
            }
            rule.id = Some(id);
            validated.push(ActiveRule { rule, fired: 0 });
        }
        let stored = validated.iter().map(ActiveRule::to_json).collect();
        self.rules.extend(validated);
        Ok(stored)
    }

    /// The active rules as the admin API shows them, with how often each fired.
    pub(crate) fn list(&self) -> Vec<Value> {
        self.rules.iter().map(ActiveRule::to_json).collect()
    }

    /// Remove every rule.
    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// Remove one rule; false if there is none with that id.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.rule.id.as_deref() != Some(id));
        self.rules.len() != before
    }

    /// The fault for this request, if a rule fires (and count the firing).
    pub(crate) fn decide(
        &mut self,
        method: &str,
        route: &str,
        path: &str,
    ) -> Option<FaultDecision> {
        let rule = self.rules.iter_mut().find(|active| {
            !active.exhausted()
                && active.rule.matches(method, route, path)
                && active
                    .rule
                    .probability
                    .is_none_or(|p| rand::random::<f64>() < p)
        })?;
        rule.fired += 1;
        let rule = &rule.rule;
        Some(FaultDecision {
            rule_id: rule.id.clone().unwrap_or_default(),
            action: rule.action.unwrap_or(FaultAction::Fail),
            latency: Duration::from_millis(rule.latency_ms.unwrap_or(0)),
            status: rule.status,
            retry_after: rule.retry_after.clone(),
            body: rule.body.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::CONNECTIONS_ROUTE;

    fn rule(value: Value) -> FaultRule {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn globs_match_prefixes_and_single_characters() {
        assert!(glob_matches(b"/collection/*", b"/collection/batch/abc"));
        assert!(glob_matches(b"/a/?/c", b"/a/b/c"));
        assert!(!glob_matches(b"/a/?/c", b"/a/bb/c"));
        assert!(glob_matches(
            b"*/connections*",
            b"/data/foundation/flowservice/connections/x"
        ));
        assert!(!glob_matches(b"/collection", b"/collection/x"));
    }

    #[test]
    fn times_limits_firings_and_first_matching_rule_wins() {
        let mut book = FaultBook::default();
        book.add(vec![
            rule(json!({"method": "post", "route": "/r", "status": 503, "times": 2})),
            rule(json!({"route": "/r", "latencyMs": 5})),
        ])
        .unwrap();
        let first = book.decide("POST", "/r", "/r").unwrap();
        assert_eq!(
            (first.action, first.rule_id.as_str()),
            (FaultAction::Fail, "fault-1")
        );
        assert_eq!(
            book.decide("POST", "/r", "/r").unwrap().action,
            FaultAction::Fail
        );
        assert_eq!(
            book.decide("POST", "/r", "/r").unwrap().action,
            FaultAction::Delay
        );
        assert_eq!(
            book.decide("GET", "/r", "/r").unwrap().action,
            FaultAction::Delay
        );
        assert!(book.decide("GET", "/other", "/other").is_none());
        assert_eq!(book.list()[0]["remaining"], 0);
    }

    #[test]
    fn invalid_rules_are_refused_whole() {
        let mut book = FaultBook::default();
        assert!(book.add(vec![rule(json!({"route": "/r"}))]).is_err());
        assert!(
            book.add(vec![rule(json!({"status": 503, "probability": 2.0}))])
                .is_err()
        );
        assert!(
            book.add(vec![rule(json!({"action": "drop", "status": 500}))])
                .is_err()
        );
        assert!(
            book.add(vec![
                rule(json!({"status": 503})),
                rule(json!({"status": 42}))
            ])
            .is_err()
        );
        assert!(book.list().is_empty());
        assert!(serde_json::from_value::<FaultRule>(json!({"statuss": 500})).is_err());
    }

    #[test]
    fn commit_after_delay_needs_latency_and_takes_an_optional_status() {
        let mut book = FaultBook::default();
        assert!(
            book.add(vec![rule(json!({"action": "commitAfterDelay"}))])
                .unwrap_err()
                .contains("latencyMs")
        );
        assert!(
            book.add(vec![rule(json!({"action": "corruptId", "status": 201}))])
                .is_err()
        );
        book.add(vec![
            rule(json!({"route": "/a", "action": "commitAfterDelay", "latencyMs": 10})),
            rule(json!({"route": "/b", "action": "commitAfterDelay", "latencyMs": 10, "status": 504})),
            rule(json!({"route": "/c", "action": "corruptId"})),
        ])
        .unwrap();
        let plain = book.decide("POST", "/a", "/a").unwrap();
        assert_eq!(plain.action, FaultAction::CommitAfterDelay);
        assert!(!plain.replaces_answer() && !plain.commits());
        assert!(book.decide("POST", "/b", "/b").unwrap().replaces_answer());
        assert_eq!(
            book.decide("POST", "/c", "/c").unwrap().action,
            FaultAction::CorruptId
        );
    }

    #[tokio::test]
    async fn corrupt_id_replaces_the_id_in_the_body_and_location_only_on_success() {
        let id = "a59d368a-1152-4673-a46e-bd52e8cdb9a9";
        let mut created = (
            StatusCode::CREATED,
            Json(json!({"id": id, "etag": "\"e\""})),
        )
            .into_response();
        created.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&format!("http://h{CONNECTIONS_ROUTE}/{id}")).unwrap(),
        );
        let corrupted = corrupt_id(created).await;
        assert_eq!(corrupted.status(), StatusCode::CREATED);
        assert!(
            corrupted.headers()[header::LOCATION]
                .to_str()
                .unwrap()
                .ends_with("/connections/not-a-uuid")
        );
        let body = axum::body::to_bytes(corrupted.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"id": CORRUPT_ID, "etag": "\"e\""})
        );
        let failed = (StatusCode::NOT_FOUND, Json(json!({"id": id}))).into_response();
        let passed = corrupt_id(failed).await;
        let body = axum::body::to_bytes(passed.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["id"], id);
    }

    #[test]
    fn probability_zero_never_fires() {
        let mut book = FaultBook::default();
        book.add(vec![rule(json!({"status": 500, "probability": 0.0}))])
            .unwrap();
        assert!((0..100).all(|_| book.decide("GET", "/r", "/r").is_none()));
    }
}
