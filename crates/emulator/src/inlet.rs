//! The streaming inlet (DCS, reference §3): `POST /collection/{inletId}` and `POST /collection/batch/{inletId}`,
//! with the bearer check of authenticated inlets, the 1 MB limit, and a per-inlet record of what arrived so that
//! tests can assert delivery through the admin API.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};

use super::app::{AppState, now_ms};
use super::errors::ApiError;
use super::ims::bearer_token;
use super::runs;
use super::state::{InletRecord, KEPT_MESSAGES_PER_INLET};

/// One message per request.
pub(crate) const SINGLE_ROUTE: &str = "/collection/{inletId}";
/// A batch of messages, each answered on its own (207 when some are rejected).
pub(crate) const BATCH_ROUTE: &str = "/collection/batch/{inletId}";
/// "413 when the payload exceeds 1 MB" (reference §3.3), counted in decimal bytes.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 1_000_000;
/// How much of an oversized body is still read before answering 413. Answering before the client finished
/// sending makes many clients see a reset instead of the 413, so bodies up to this size are drained first.
const DRAIN_LIMIT_BYTES: usize = 32 * 1024 * 1024;

/// Makes transaction ids unique within one emulator run, like the counter in DCS's `ms:counter:partition` ids.
static TRANSACTION_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `<ms>:<counter>:<partition>`, the shape of DCS's `xactionId` and `batchId`.
fn transaction_id(received_ms: i64) -> String {
    let counter = TRANSACTION_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{received_ms}:{counter}:{}", rand::random_range(0..256u16))
}

/// What the handlers need to know about the inlet's connection.
struct Inlet {
    connection_id: String,
    org_id: String,
    xdm: bool,
}

/// Find the provisioned inlet (404 otherwise, also before `--inlet-delay-ms` has passed) and check the bearer
/// token when the connection requires authentication (the seed document's 401 otherwise).
fn open_inlet(app: &AppState, inlet_id: &str, headers: &HeaderMap) -> Result<Inlet, ApiError> {
    let (inlet, authentication_required) = {
        let store = app.store.lock().expect("store lock");
        let connection = store
            .by_inlet(inlet_id)
            .filter(|c| c.inlet_ready(now_ms()))
            .ok_or_else(|| ApiError::inlet_not_found(inlet_id))?;
        (
            Inlet {
                connection_id: connection.id.clone(),
                org_id: connection.org_id.clone(),
                xdm: connection.expects_xdm(),
            },
            connection.authentication_required(),
        )
    };
    if authentication_required {
        let tokens = app.tokens.lock().expect("token lock");
        let valid = headers
            .get(header::AUTHORIZATION)
            .and_then(bearer_token)
            .and_then(|token| tokens.validate(token))
            .is_some();
        if !valid {
            return Err(ApiError::inlet_unauthorized());
        }
    }
    Ok(inlet)
}

/// The media types the inlet takes (streaming-ingestion.yaml: `Content-Type` is required, `application/json` or
/// `application/x-jackson-smile`).
const JSON: &str = "application/json";
const SMILE: &str = "application/x-jackson-smile";
/// Every Smile document starts with `:)\n` (the format's header).
const SMILE_HEADER: &[u8] = b":)\n";
/// `syncValidation=true` requests an inlet takes per minute (streaming overview and streaming-ingestion.yaml).
pub(crate) const SYNC_VALIDATION_PER_MINUTE: usize = 60;

/// How the body is encoded, from `Content-Type`: a strict emulator refuses anything but JSON and Smile with
/// the gateway's 400 "A valid content-type must be specified"; a lenient one reads anything else as JSON.
fn body_encoding(app: &AppState, headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match media_type.as_deref() {
        Some(JSON) => Ok(Encoding::Json),
        Some(SMILE) => Ok(Encoding::Smile),
        _ if app.lenient => Ok(Encoding::Json),
        _ => Err(ApiError::ContentType),
    }
}

/// The two encodings of an inlet body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Smile,
}

/// The body as a message: JSON is parsed; a Smile document (checked by its header only: the emulator has no
/// Smile decoder) is recorded as `{"smile": {"bytes": N}}`, accepted without validation and routed nowhere.
async fn read_message(body: Body, inlet_id: &str, encoding: Encoding) -> Result<Value, ApiError> {
    match encoding {
        Encoding::Json => read_json(body, inlet_id).await,
        Encoding::Smile => {
            let bytes = read_bytes(body, inlet_id).await?;
            if !bytes.starts_with(SMILE_HEADER) {
                return Err(ApiError::inlet_problem(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    format!("inletId: [{inlet_id}] The payload is not a Smile document."),
                ));
            }
            Ok(json!({ "smile": { "bytes": bytes.len() } }))
        }
    }
}

/// The 60-per-minute limit of `syncValidation=true` on one inlet: 429 past it, unless lenient.
fn count_sync_validation(app: &AppState, inlet_id: &str) -> Result<(), ApiError> {
    if app.lenient {
        return Ok(());
    }
    let now = std::time::Instant::now();
    let mut calls = app
        .sync_validation_calls
        .lock()
        .expect("sync validation lock");
    let recent = calls.entry(inlet_id.to_owned()).or_default();
    while recent
        .front()
        .is_some_and(|first| now.duration_since(*first) >= std::time::Duration::from_secs(60))
    {
        recent.pop_front();
    }
    if recent.len() >= SYNC_VALIDATION_PER_MINUTE {
        return Err(ApiError::inlet_problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            format!(
                "inletId: [{inlet_id}] syncValidation is limited to {SYNC_VALIDATION_PER_MINUTE} requests per minute."
            ),
        ));
    }
    recent.push_back(now);
    Ok(())
}

/// The body as JSON: 413 above [`MAX_PAYLOAD_BYTES`], 400 when it is not JSON.
async fn read_json(body: Body, inlet_id: &str) -> Result<Value, ApiError> {
    let bytes = read_bytes(body, inlet_id).await?;
    serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::inlet_problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("inletId: [{inlet_id}] The payload is not valid JSON: {error}"),
        )
    })
}

/// The body's bytes: 413 above [`MAX_PAYLOAD_BYTES`].
async fn read_bytes(body: Body, inlet_id: &str) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::inlet_problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            format!(
                "inletId: [{inlet_id}] The payload exceeds the maximum size of {MAX_PAYLOAD_BYTES} bytes."
            ),
        )
    };
    let bytes = match Limited::new(body, DRAIN_LIMIT_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return Err(too_large()),
        Err(error) => {
            return Err(ApiError::inlet_problem(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("inletId: [{inlet_id}] The request body could not be read: {error}"),
            ));
        }
    };
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Why an XDM message would be refused, in DCS's words (reference §3.3), or `None` if it is acceptable.
fn xdm_problem(message: &Value, inlet_id: &str, org_id: &str) -> Option<String> {
    let prefix = format!("inletId: [{inlet_id}] imsOrgId: [{org_id}]");
    let header = message.get("header").filter(|h| h.is_object());
    if header.is_none() || !message.get("body").is_some_and(Value::is_object) {
        return Some(format!("{prefix} Message has unknown xdm format"));
    }
    // DCCS fills in an absent org, but a different one is refused.
    match header.and_then(|h| h.get("imsOrgId")) {
        None | Some(Value::Null) => None,
        Some(Value::String(org)) if org == org_id => None,
        Some(_) => Some(format!(
            "{prefix} Message has an absent or wrong ims org in the header"
        )),
    }
}

fn record_delivery(
    app: &AppState,
    inlet_id: &str,
    connection_id: &str,
    accepted: Vec<Value>,
    rejected: u64,
) {
    let mut store = app.store.lock().expect("store lock");
    let record = store
        .inlets
        .entry(inlet_id.to_owned())
        .or_insert_with(|| InletRecord {
            connection_id: connection_id.to_owned(),
            ..InletRecord::default()
        });
    record.requests += 1;
    record.messages += accepted.len() as u64;
    record.rejected += rejected;
    record.last_received_at = Some(now_ms());
    for message in accepted {
        if record.recent.len() == KEPT_MESSAGES_PER_INLET {
            record.recent.pop_front();
        }
        record.recent.push_back(message);
    }
}

fn sync_validation_requested(query: Option<&str>) -> bool {
    super::collections::query_values(query, "syncValidation")
        .iter()
        .any(|value| value.eq_ignore_ascii_case("true"))
}

/// `POST /collection/{inletId}[?syncValidation=true]` → 200 with `xactionId`.
pub(crate) async fn single(
    State(app): State<Arc<AppState>>,
    Path(inlet_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let inlet = open_inlet(&app, &inlet_id, &headers)?;
    let encoding = body_encoding(&app, &headers)?;
    let message = read_message(body, &inlet_id, encoding).await?;
    let received = now_ms();
    let sync_validation = sync_validation_requested(query.as_deref());
    if sync_validation {
        count_sync_validation(&app, &inlet_id)?;
    }
    let requested_flow = runs::requested_flow_id(&headers, query.as_deref());
    if encoding == Encoding::Smile {
        record_delivery(&app, &inlet_id, &inlet.connection_id, vec![message], 0);
        return Ok(Json(json!({
            "inletId": inlet_id,
            "xactionId": transaction_id(received),
            "receivedTimeMs": received,
            "syncValidation": { "skipped": true },
        }))
        .into_response());
    }
    if sync_validation
        && inlet.xdm
        && let Some(problem) = xdm_problem(&message, &inlet_id, &inlet.org_id)
    {
        return Err(ApiError::Inlet {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "type": super::errors::INLET_PROBLEM_TYPE,
                "status": 400,
                "title": "Invalid XDM Message Format",
                "report": {
                    "message": problem,
                    "cause": { "_streamingValidation": [{
                        "schemaLocation": "#",
                        "pointerToViolation": "#",
                        "causingExceptions": [],
                        "message": "the message needs a 'header' and a 'body' object"
                    }]}
                }
            }),
        });
    }
    let routing = runs::resolve(
        &app,
        (&inlet_id, &inlet.connection_id, &inlet.org_id),
        inlet.xdm,
        &message,
        requested_flow.as_deref(),
    );
    if sync_validation && let Some(reason) = routing.rejection() {
        return Err(runs::sync_rejection(reason));
    }
    record_delivery(&app, &inlet_id, &inlet.connection_id, vec![message], 0);
    runs::deliver(&app, &inlet_id, vec![routing]);
    let validation = if sync_validation {
        json!({ "status": "pass" })
    } else {
        json!({ "skipped": true })
    };
    Ok(Json(json!({
        "inletId": inlet_id,
        "xactionId": transaction_id(received),
        "receivedTimeMs": received,
        "syncValidation": validation,
    }))
    .into_response())
}

/// `POST /collection/batch/{inletId}` with `{"messages": [...]}` → 207 with one entry per message, in order.
pub(crate) async fn batch(
    State(app): State<Arc<AppState>>,
    Path(inlet_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let inlet = open_inlet(&app, &inlet_id, &headers)?;
    let requested_flow = runs::requested_flow_id(&headers, query.as_deref());
    let mut routings = Vec::new();
    if body_encoding(&app, &headers)? == Encoding::Smile {
        // A Smile batch cannot be split into messages without a decoder: refused rather than guessed at.
        return Err(ApiError::inlet_problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!(
                "inletId: [{inlet_id}] The emulator takes Smile on the single-message endpoint only."
            ),
        ));
    }
    let payload = read_json(body, &inlet_id).await?;
    let Some(messages) = payload.get("messages").and_then(Value::as_array) else {
        return Err(ApiError::inlet_problem(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("inletId: [{inlet_id}] A batch must be an object with a 'messages' array."),
        ));
    };
    let received = now_ms();
    let batch_id = transaction_id(received);
    let mut accepted = Vec::new();
    let mut responses = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let mut problem = if inlet.xdm {
            xdm_problem(message, &inlet_id, &inlet.org_id)
        } else {
            None
        };
        if problem.is_none() {
            let routing = runs::resolve(
                &app,
                (&inlet_id, &inlet.connection_id, &inlet.org_id),
                inlet.xdm,
                message,
                requested_flow.as_deref(),
            );
            match routing.rejection() {
                Some(reason) => problem = Some(reason.to_owned()),
                None => routings.push(routing),
            }
        }
        match problem {
            Some(problem) => responses.push(json!({ "statusCode": 400, "message": problem })),
            None => {
                responses.push(json!({ "xactionId": format!("{batch_id}:{index}") }));
                accepted.push(message.clone());
            }
        }
    }
    let rejected = (messages.len() - accepted.len()) as u64;
    record_delivery(&app, &inlet_id, &inlet.connection_id, accepted, rejected);
    runs::deliver(&app, &inlet_id, routings);
    // 207 for full success, partial success and failure alike (reference §3.3).
    Ok((
        StatusCode::MULTI_STATUS,
        Json(json!({
            "inletId": inlet_id,
            "batchId": batch_id,
            "receivedTimeMs": received,
            "responses": responses,
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdm_messages_need_header_and_body_and_the_right_org() {
        let ok = json!({"header": {"imsOrgId": "O@AdobeOrg"}, "body": {}});
        assert_eq!(xdm_problem(&ok, "i", "O@AdobeOrg"), None);
        assert!(
            xdm_problem(&json!({"body": {}}), "i", "O@AdobeOrg")
                .unwrap()
                .contains("unknown xdm format")
        );
        assert!(
            xdm_problem(&ok, "i", "X@AdobeOrg")
                .unwrap()
                .contains("wrong ims org")
        );
    }

    #[test]
    fn sync_validation_is_opt_in() {
        assert!(sync_validation_requested(Some("syncValidation=true")));
        assert!(!sync_validation_requested(Some("syncValidation=false")));
        assert!(!sync_validation_requested(None));
    }
}
