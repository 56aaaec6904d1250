//! The admin API under `/_emulator/` for tests, benchmarks and curious humans: the whole state, the request log,
//! fault rules, reset. Never delayed, faulted, authenticated or logged.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::app::{AppState, now_ms};
use super::faults::FaultRule;

// The admin API's routes, for tests, benchmarks and scripts (README "Admin API"); never delayed, faulted or logged.
/// Every connection and inlet record, across organizations and sandboxes.
pub const STATE_ROUTE: &str = "/_emulator/state";
/// The request log (GET) and clearing it (DELETE).
pub const REQUESTS_ROUTE: &str = "/_emulator/requests";
/// The fault rules: list, add, clear all.
pub const FAULTS_ROUTE: &str = "/_emulator/faults";
/// One fault rule, to remove it.
pub const FAULT_ROUTE: &str = "/_emulator/faults/{id}";
/// Forget every connection and inlet record, every fault rule and the request log at once.
pub const RESET_ROUTE: &str = "/_emulator/reset";
/// What one inlet received.
pub const INLET_ROUTE: &str = "/_emulator/inlets/{inletId}";
/// One connection's `state` (PUT `{"state": …}`), to put it where the catalogue's `1416-400` applies.
pub const CONNECTION_STATE_ROUTE: &str = "/_emulator/connections/{id}/state";
/// Readiness of the emulator itself.
pub const HEALTH_ROUTE: &str = "/_emulator/health";

/// The `/_emulator/…` routes.
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(HEALTH_ROUTE, get(health))
        .route(STATE_ROUTE, get(state))
        .route(REQUESTS_ROUTE, get(requests).delete(clear_requests))
        .route(
            FAULTS_ROUTE,
            get(faults).post(add_faults).delete(clear_faults),
        )
        .route(FAULT_ROUTE, delete(remove_fault))
        .route(RESET_ROUTE, post(reset))
        .route(INLET_ROUTE, get(inlet))
        .route(
            CONNECTION_STATE_ROUTE,
            axum::routing::put(set_connection_state),
        )
        .route(
            super::catalog::ADMIN_DATASETS_ROUTE,
            post(super::catalog::seed),
        )
}

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /_emulator/state`: every connection as GET shows it, always with its inlet and `inletReady`, plus
/// per-inlet delivery counts (inlets of deleted connections included) and the number of live tokens.
async fn state(State(app): State<Arc<AppState>>) -> Json<Value> {
    let now = now_ms();
    let store = app.store.lock().expect("store lock");
    let mut inlets = Map::new();
    let connections: Vec<Value> = store
        .all()
        .into_iter()
        .map(|connection| {
            inlets.insert(
                connection.inlet_id.clone(),
                json!({ "connectionId": connection.id, "messages": 0, "requests": 0, "rejected": 0,
                        "lastReceivedAt": null }),
            );
            let mut object = connection.render(&app.public_url, true);
            object["inletReady"] = json!(connection.inlet_ready(now));
            object
        })
        .collect();
    for (inlet_id, record) in &store.inlets {
        inlets.insert(inlet_id.clone(), record.summary());
    }
    let active_tokens = app.tokens.lock().expect("token lock").active();
    let mut body =
        json!({ "connections": connections, "inlets": inlets, "activeTokens": active_tokens });
    if let (Value::Object(body), Value::Object(dataflows)) =
        (&mut body, super::dataflows::admin_state(&store, now))
    {
        body.extend(dataflows);
    }
    Json(body)
}

/// `GET /_emulator/inlets/{inletId}`: counts and the most recent accepted messages of one inlet.
async fn inlet(State(app): State<Arc<AppState>>, Path(inlet_id): Path<String>) -> Response {
    let store = app.store.lock().expect("store lock");
    let known = store.by_inlet(&inlet_id).map(|c| c.id.clone());
    match (store.inlets.get(&inlet_id), known) {
        (Some(record), _) => {
            let mut body = record.summary();
            body["inletId"] = json!(inlet_id);
            body["recentMessages"] = json!(record.recent);
            Json(body).into_response()
        }
        (None, Some(connection_id)) => Json(json!({
            "inletId": inlet_id, "connectionId": connection_id, "messages": 0, "requests": 0, "rejected": 0,
            "lastReceivedAt": null, "recentMessages": []
        }))
        .into_response(),
        (None, None) => admin_error(StatusCode::NOT_FOUND, format!("no inlet {inlet_id}")),
    }
}

async fn requests(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(app.requests.lock().expect("request log lock").to_json())
}

async fn clear_requests(State(app): State<Arc<AppState>>) -> StatusCode {
    app.requests.lock().expect("request log lock").clear();
    StatusCode::NO_CONTENT
}

async fn faults(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "rules": app.faults.lock().expect("fault lock").list() }))
}

/// `POST /_emulator/faults` with one rule, an array of rules, or `{"rules": [...]}`; all or none are added.
async fn add_faults(State(app): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let document: Value = match serde_json::from_slice(&body) {
        Ok(document) => document,
        Err(error) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                format!("body is not JSON: {error}"),
            );
        }
    };
    let rules = match document {
        Value::Object(mut object) if object.contains_key("rules") => {
            object.remove("rules").unwrap_or_default()
        }
        Value::Object(object) => Value::Array(vec![Value::Object(object)]),
        other => other,
    };
    let rules: Vec<FaultRule> = match serde_json::from_value(rules) {
        Ok(rules) => rules,
        Err(error) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                format!("not a fault rule: {error}"),
            );
        }
    };
    match app.faults.lock().expect("fault lock").add(rules) {
        Ok(stored) => (StatusCode::CREATED, Json(json!({ "rules": stored }))).into_response(),
        Err(error) => admin_error(StatusCode::BAD_REQUEST, error),
    }
}

async fn clear_faults(State(app): State<Arc<AppState>>) -> StatusCode {
    app.faults.lock().expect("fault lock").clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    if app.faults.lock().expect("fault lock").remove(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        admin_error(StatusCode::NOT_FOUND, format!("no fault rule {id}"))
    }
}

/// `PUT /_emulator/connections/{id}/state` with `{"state": "<one of CONNECTION_STATES>"}`: sets the state of a
/// connection of any org or sandbox, as GET shows it. In a state other than `enabled`, `disabled` or
/// `initializing`, its PATCH and DELETE answer `FLOW-1416-400`. Persisted; answers 204.
async fn set_connection_state(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let wanted = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|body| body.get("state").and_then(Value::as_str).map(str::to_owned));
    let Some(wanted) =
        wanted.filter(|state| super::connections::CONNECTION_STATES.contains(&state.as_str()))
    else {
        return admin_error(
            StatusCode::BAD_REQUEST,
            format!(
                "the body must be {{\"state\": one of {:?}}}",
                super::connections::CONNECTION_STATES
            ),
        );
    };
    let generation = {
        let mut store = app.store.lock().expect("store lock");
        let Some(connection) = store.get_any_mut(&id) else {
            return admin_error(StatusCode::NOT_FOUND, format!("no connection {id}"));
        };
        connection.state = wanted;
        store.generation += 1;
        store.generation
    };
    match app.persist(generation).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => admin_error(StatusCode::INTERNAL_SERVER_ERROR, error.message),
    }
}

/// `POST /_emulator/reset`: forget connections, delivery records, faults and the request log. Issued tokens
/// stay valid, so a test can reset between cases without fetching a new one.
async fn reset(State(app): State<Arc<AppState>>) -> Response {
    let generation = {
        let mut store = app.store.lock().expect("store lock");
        store.clear();
        store.generation += 1;
        store.generation
    };
    app.faults.lock().expect("fault lock").clear();
    app.requests.lock().expect("request log lock").clear();
    match app.persist(generation).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => admin_error(StatusCode::INTERNAL_SERVER_ERROR, error.message),
    }
}
