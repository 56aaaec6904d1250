//! The front door every non-admin request passes: it assigns the request id (`x-request-id`, repeated in Flow
//! problem bodies), adds `--latency-ms`, applies fault rules, and records the request in the ordered log that
//! tests read from `/_emulator/requests`.
//!
//! Dropping a connection: the front door records the request and then unwinds the handler future with
//! [`std::panic::resume_unwind`]. The unwind ends the per-connection task that `axum::serve` spawned, so the
//! socket is closed without a response and the client sees a connection error (an incomplete message or reset).
//! `resume_unwind` does not run the panic hook, so nothing is printed, and only that one connection's task ends.
//!
//! Committing late (`commitAfterDelay`): the body is read at once, then a detached task waits, runs the handler
//! and records the request itself, so that the operation and its log entry happen even after axum dropped this
//! request's future because the client disconnected. A client still waiting gets the task's answer.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use axum::RequestExt;
use axum::body::Body;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::app::AppState;
use super::errors::{REQUEST_ID, REQUEST_ID_HEADER};
use super::faults::{self, FaultAction, FaultDecision};

/// Admin routes live under this prefix; the front door lets them through untouched.
pub(crate) const ADMIN_PREFIX: &str = "/_emulator";
/// Route recorded for requests that matched no route.
pub(crate) const UNMATCHED_ROUTE: &str = "*";
/// Status recorded for a request whose connection was dropped without an answer.
pub(crate) const DROPPED_STATUS: u16 = 0;
/// The log keeps the most recent entries only, so that a benchmark cannot grow it without bound.
pub(crate) const MAX_LOG_ENTRIES: usize = 10_000;
/// The most a `commitAfterDelay` request body may hold: it is read into memory before the client may leave.
/// Above every limit the routes themselves enforce (the inlet drains up to 32 MiB before its 413).
const DETACHED_BODY_LIMIT_BYTES: usize = 64 * 1024 * 1024;
/// A client-supplied request id longer than this is replaced: it ends up in bodies and logs.
const MAX_CLIENT_REQUEST_ID_LENGTH: usize = 128;

/// The payload of the unwind that drops a connection.
#[derive(Debug)]
struct ConnectionDropped;

/// One served request, in arrival order of completion.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogEntry {
    /// Position in the log, from 1; it keeps counting across evictions.
    pub(crate) seq: u64,
    /// The HTTP method.
    pub(crate) method: String,
    /// The route template, e.g. `/data/foundation/flowservice/connections/{id}`.
    pub(crate) route: String,
    /// The actual path, without the query.
    pub(crate) path: String,
    /// The query string, without `?`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) query: Option<String>,
    /// The status answered, or [`DROPPED_STATUS`] for a connection closed without an answer.
    pub(crate) status: u16,
    /// Id of the fault rule that fired, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fault: Option<String>,
    /// The `x-request-id` answered, which Flow problem bodies repeat.
    pub(crate) request_id: String,
}

/// Counts by (route, method, status) and the ordered log.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    next_seq: u64,
    counts: BTreeMap<(String, String, u16), u64>,
    entries: VecDeque<LogEntry>,
    /// Entries pushed out of the log by [`MAX_LOG_ENTRIES`].
    evicted: u64,
}

impl RequestLog {
    fn record(&mut self, mut entry: LogEntry) {
        self.next_seq += 1;
        entry.seq = self.next_seq;
        *self
            .counts
            .entry((entry.route.clone(), entry.method.clone(), entry.status))
            .or_default() += 1;
        if self.entries.len() == MAX_LOG_ENTRIES {
            self.entries.pop_front();
            self.evicted += 1;
        }
        self.entries.push_back(entry);
    }

    /// Forget every entry and count, and start numbering from 1 again.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// The log as `GET /_emulator/requests` answers it: counts per route, method and status, the entries, and
    /// how many entries were evicted.
    pub(crate) fn to_json(&self) -> Value {
        let counts: Vec<Value> = self
            .counts
            .iter()
            .map(|((route, method, status), count)| {
                json!({ "method": method, "route": route, "status": status, "count": count })
            })
            .collect();
        json!({ "counts": counts, "log": self.entries, "evicted": self.evicted })
    }
}

/// Route templates are logged without a trailing `/`, so `…/{id}/` and `…/{id}` count together.
fn normalize_route(template: &str) -> String {
    match template.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => template.to_owned(),
    }
}

/// Echo a sane client-supplied `x-request-id` (as the adobe.io gateway does), else a new UUID.
fn request_id_for(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= MAX_CLIENT_REQUEST_ID_LENGTH)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

enum Outcome {
    Respond(Response, Option<String>),
    Drop(String),
    /// The answer of a detached commit, which recorded the request in the log itself.
    Logged(Response),
}

/// The decoded `{id}` or `{inletId}` of an item route, for fault answers that must look like the real ones.
async fn resource_id(request: &mut Request) -> Option<String> {
    let params = request.extract_parts::<RawPathParams>().await.ok()?;
    params
        .iter()
        .find(|(name, _)| matches!(*name, "id" | "inletId"))
        .map(|(_, value)| value.to_owned())
}

async fn serve(app: &Arc<AppState>, entry: &LogEntry, mut request: Request, next: Next) -> Outcome {
    if !app.latency.is_zero() {
        tokio::time::sleep(app.latency).await;
    }
    let route = entry.route.as_str();
    let decision = app.faults.lock().expect("fault lock").decide(
        request.method().as_str(),
        route,
        &entry.path,
    );
    let Some(fault) = decision else {
        return Outcome::Respond(next.run(request).await, None);
    };
    let resource_id = resource_id(&mut request).await;
    if fault.action == FaultAction::CommitAfterDelay {
        return commit_after_delay(app, entry, fault, request, next, resource_id).await;
    }
    if !fault.latency.is_zero() {
        tokio::time::sleep(fault.latency).await;
    }
    if fault.commits() {
        // Perform the operation for real; its answer is what the client never gets.
        let committed = next.run(request).await;
        tracing::debug!(rule = %fault.rule_id, status = %committed.status(), "fault: committed, answer replaced");
        return match fault.action {
            FaultAction::CommitThenDrop => Outcome::Drop(fault.rule_id),
            _ => Outcome::Respond(
                fault.response(route, resource_id.as_deref()),
                Some(fault.rule_id),
            ),
        };
    }
    match fault.action {
        FaultAction::Delay => Outcome::Respond(next.run(request).await, Some(fault.rule_id)),
        FaultAction::CorruptId => {
            let answer = faults::corrupt_id(next.run(request).await).await;
            Outcome::Respond(answer, Some(fault.rule_id))
        }
        FaultAction::Drop => Outcome::Drop(fault.rule_id),
        _ => Outcome::Respond(
            fault.response(route, resource_id.as_deref()),
            Some(fault.rule_id),
        ),
    }
}

/// `commitAfterDelay`: the operation runs in a detached task after the rule's latency, so that it happens even
/// if the client disconnects meanwhile (axum then drops this future, but not the task). The task records the
/// request in the log, because this future may no longer exist to do it.
async fn commit_after_delay(
    app: &Arc<AppState>,
    entry: &LogEntry,
    fault: FaultDecision,
    request: Request,
    next: Next,
    resource_id: Option<String>,
) -> Outcome {
    // Read the body now: once the client is gone, hyper can no longer deliver what it has not read yet.
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, DETACHED_BODY_LIMIT_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let status = if error.is::<LengthLimitError>() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            let detail = format!(
                "fault {}: the request body could not be read: {error}",
                fault.rule_id
            );
            return Outcome::Respond((status, detail).into_response(), Some(fault.rule_id));
        }
    };
    let request = Request::from_parts(parts, Body::from(bytes));
    let (answer, answered) = oneshot::channel::<Response>();
    let task_app = Arc::clone(app);
    let mut task_entry = entry.clone();
    let rule_id = fault.rule_id.clone();
    tokio::spawn(REQUEST_ID.scope(entry.request_id.clone(), async move {
        tokio::time::sleep(fault.latency).await;
        let committed = next.run(request).await;
        let response = if fault.replaces_answer() {
            fault.response(&task_entry.route, resource_id.as_deref())
        } else {
            committed
        };
        task_entry.status = response.status().as_u16();
        task_entry.fault = Some(fault.rule_id.clone());
        tracing::debug!(
            rule = %fault.rule_id,
            path = %task_entry.path,
            status = task_entry.status,
            "fault: committed after delay"
        );
        task_app
            .requests
            .lock()
            .expect("request log lock")
            .record(task_entry);
        // The client may have gone: then nobody receives the answer, and that is the point.
        let _ = answer.send(response);
    }));
    match answered.await {
        Ok(response) => Outcome::Logged(response),
        Err(_) => {
            tracing::error!(rule = %rule_id, "the detached commit ended without an answer");
            Outcome::Respond(
                StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                Some(rule_id),
            )
        }
    }
}

/// The middleware in front of every IMS, Flow Service and inlet route.
pub(crate) async fn front_door(
    State(app): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if path == ADMIN_PREFIX || path.starts_with("/_emulator/") {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| normalize_route(matched.as_str()))
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let method: Method = request.method().clone();
    let request_id = request_id_for(&request);
    let mut entry = LogEntry {
        seq: 0,
        method: method.to_string(),
        route,
        path,
        query: request.uri().query().map(str::to_owned),
        status: DROPPED_STATUS,
        fault: None,
        request_id: request_id.clone(),
    };
    let outcome = REQUEST_ID
        .scope(request_id.clone(), serve(&app, &entry, request, next))
        .await;
    let (response, logged) = match outcome {
        Outcome::Logged(response) => (Some(response), true),
        Outcome::Respond(response, fault) => {
            entry.status = response.status().as_u16();
            entry.fault = fault;
            (Some(response), false)
        }
        Outcome::Drop(fault) => {
            entry.status = DROPPED_STATUS;
            entry.fault = Some(fault);
            (None, false)
        }
    };
    if !logged {
        tracing::debug!(%method, path = %entry.path, status = entry.status, fault = entry.fault.as_deref(), "served");
        app.requests.lock().expect("request log lock").record(entry);
    }
    let Some(mut response) = response else {
        std::panic::resume_unwind(Box::new(ConnectionDropped));
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Paths that are no route of the emulator.
pub(crate) async fn no_route(request: Request) -> Response {
    let detail = format!("no route for {} {}", request.method(), request.uri().path());
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "status": 404, "title": "Not Found", "detail": detail })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(route: &str, status: u16) -> LogEntry {
        LogEntry {
            seq: 0,
            method: "GET".into(),
            route: route.into(),
            path: route.into(),
            query: None,
            status,
            fault: None,
            request_id: "r".into(),
        }
    }

    #[test]
    fn log_is_ordered_counted_and_capped() {
        let mut log = RequestLog::default();
        for _ in 0..MAX_LOG_ENTRIES + 5 {
            log.record(entry("/a", 200));
        }
        log.record(entry("/b", 404));
        let json = log.to_json();
        assert_eq!(json["log"].as_array().unwrap().len(), MAX_LOG_ENTRIES);
        assert_eq!(
            json["log"][MAX_LOG_ENTRIES - 1]["seq"],
            MAX_LOG_ENTRIES as u64 + 6
        );
        assert_eq!(json["evicted"], 6);
        assert_eq!(
            json["counts"][0],
            json!({"method": "GET", "route": "/a", "status": 200, "count": 10_005})
        );
    }

    #[test]
    fn trailing_slash_routes_count_with_the_plain_route() {
        assert_eq!(normalize_route("/x/{id}/"), "/x/{id}");
        assert_eq!(normalize_route("/"), "/");
    }
}
