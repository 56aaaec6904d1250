//! Flow Service base connections under `/data/foundation/flowservice` (reference §1): create, read, list, patch
//! with `If-Match`, delete, each behind the gateway's header checks in the reference's order.
//!
//! Connections are scoped by organization (from the token) and sandbox (`x-sandbox-name`): one in `dev` does not
//! exist for a caller in `prod`. Names are not unique, as in the real service.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::app::{AppState, now_ms};
use super::errors::{ApiError, FlowServiceProblem, GatewayError};
use super::ims::bearer_token;
use super::listing::ListRequest;
use super::state::{
    DATA_TYPE_RAW, DATA_TYPE_XDM, PARAM_AUTHENTICATION_REQUIRED, PARAM_DATA_TYPE, PARAM_INLET_ID,
    PARAM_INLET_URL, PARAM_NAME, PARAM_SOURCE_ID, StoredConnection,
};

/// List and create.
pub(crate) const CONNECTIONS_ROUTE: &str = "/data/foundation/flowservice/connections";
/// Get, patch and delete one connection.
pub(crate) const CONNECTION_ROUTE: &str = "/data/foundation/flowservice/connections/{id}";
/// The same with a trailing `/`, as the OpenAPI spec writes it (the tutorials write it without).
pub(crate) const CONNECTION_ROUTE_TRAILING_SLASH: &str =
    "/data/foundation/flowservice/connections/{id}/";
/// The streaming ("HTTP API") connection spec, the only one this emulator knows.
pub const STREAMING_CONNECTION_SPEC_ID: &str = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb";
/// The auth spec of the streaming connection spec.
pub(crate) const STREAMING_AUTH_SPEC_NAME: &str = "Streaming Connection";
/// "Omitting [connectionSpec.version] will default to the most recent version."
const DEFAULT_SPEC_VERSION: &str = "1.0";
const STATE_ENABLED: &str = "enabled";

/// The states in which a connection may be updated or deleted; any other is `1416-400` (catalogue [S8]).
pub(crate) const CHANGEABLE_STATES: [&str; 3] = ["enabled", "disabled", "initializing"];

/// The states the catalogue names for a connection ([S8]; flow-service-api.md §1.3), which the admin API can
/// put a connection in.
pub const CONNECTION_STATES: [&str; 7] = [
    "enabled",
    "disabled",
    "initializing",
    "updating",
    "disabling",
    "enabled-finalizing",
    "delete-finalizing",
];

/// `1416-400` unless the connection's state allows a change.
fn check_changeable(connection: &StoredConnection) -> Result<(), FlowServiceProblem> {
    if CHANGEABLE_STATES.contains(&connection.state.as_str()) {
        Ok(())
    } else {
        Err(FlowServiceProblem::state_forbids_change())
    }
}

/// The client id, checked by the gateway against the token's client.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";
/// The IMS organization, checked by the gateway against the token's organization.
pub(crate) const ORG_HEADER: &str = "x-gw-ims-org-id";
/// The sandbox every Flow Service call is scoped to.
pub(crate) const SANDBOX_HEADER: &str = "x-sandbox-name";

/// Server-owned inlet parameters: never taken from a request body, added on read once provisioned.
const SERVER_OWNED_PARAMS: [&str; 2] = [PARAM_INLET_ID, PARAM_INLET_URL];

/// Who is calling, once the headers passed.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's client, recorded as `createdBy`/`updatedBy`.
    pub(crate) client_id: String,
    /// The token's organization: connections of other organizations are invisible.
    pub(crate) org_id: String,
    /// From `x-sandbox-name`: connections of other sandboxes are invisible.
    pub(crate) sandbox: String,
}

pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The gateway's checks (reference §2.A, §7): token, api key, org, then for bodies the content type, then Flow
/// Service's sandbox checks. The first failing check answers.
pub(crate) fn authorize(
    app: &AppState,
    headers: &HeaderMap,
    has_body: bool,
) -> Result<Caller, ApiError> {
    // An empty header is no token at all, as for the gateway.
    let authorization = headers
        .get(header::AUTHORIZATION)
        .filter(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace))
        .ok_or(GatewayError::TOKEN_MISSING)?;
    let holder = bearer_token(authorization)
        .and_then(|token| app.tokens.lock().expect("token lock").validate(token))
        .ok_or(GatewayError::TOKEN_INVALID)?;
    let api_key = header_text(headers, API_KEY_HEADER).ok_or(GatewayError::API_KEY_MISSING)?;
    // The key must be a registered client id and the one the token was issued to.
    let known_key = app.clients.iter().any(|c| c.client_id == api_key);
    if !known_key || api_key != holder.client_id {
        return Err(GatewayError::API_KEY_INVALID.into());
    }
    let org_id = header_text(headers, ORG_HEADER).ok_or(GatewayError::ORG_MISSING)?;
    if org_id != holder.org_id {
        return Err(GatewayError::ORG_NOT_ENTITLED.into());
    }
    if has_body && !is_json_content_type(headers) {
        return Err(ApiError::ContentType);
    }
    let sandbox =
        header_text(headers, SANDBOX_HEADER).ok_or_else(FlowServiceProblem::sandbox_missing)?;
    if !app.sandboxes.iter().any(|s| s == sandbox) {
        return Err(FlowServiceProblem::sandbox_not_found(sandbox).into());
    }
    Ok(Caller {
        client_id: holder.client_id,
        org_id: holder.org_id,
        sandbox: sandbox.to_owned(),
    })
}

/// `application/json`, with parameters or a `+json` suffix (e.g. `application/json-patch+json`).
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = header_text(headers, header::CONTENT_TYPE.as_str()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Body → JSON, with Flow's codes for an empty body (1405) and malformed JSON.
pub(crate) fn parse_body(body: &Bytes) -> Result<Value, FlowServiceProblem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FlowServiceProblem::empty_body());
    }
    serde_json::from_slice(body)
        .map_err(|e| FlowServiceProblem::invalid_body(format!("malformed JSON ({e})")))
}

/// A new etag in Flow Service's (Cosmos DB) shape, `"xxxxxxxx-0000-0200-0000-<epoch secs hex>0000"`, quotes
/// included.
pub(crate) fn new_etag(now_ms: i64, previous: Option<&str>) -> String {
    loop {
        let etag = format!(
            "\"{:08x}-0000-0200-0000-{:08x}0000\"",
            rand::random::<u32>(),
            (now_ms / 1000) as u32
        );
        if previous != Some(etag.as_str()) {
            return etag;
        }
    }
}

/// `If-Match` and etags compare without quotes or a weak prefix: the docs send both `"…"` and bare forms.
pub(crate) fn bare_etag(value: &str) -> &str {
    let value = value.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    value.trim_matches('"')
}

/// Validate `auth.params` and fill the documented defaults. `name` is the connection's top-level name.
fn normalize_params(
    params: Option<&Value>,
    name: &str,
) -> Result<Map<String, Value>, FlowServiceProblem> {
    let mut params = match params {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            return Err(FlowServiceProblem::invalid_body(
                "'auth.params' must be an object",
            ));
        }
    };
    for owned in SERVER_OWNED_PARAMS {
        params.remove(owned);
    }
    for text_param in [PARAM_SOURCE_ID, PARAM_NAME] {
        match params.get(text_param) {
            None | Some(Value::Null) => {
                params.insert(text_param.to_owned(), json!(name));
            }
            Some(Value::String(_)) => {}
            Some(_) => {
                return Err(FlowServiceProblem::invalid_body(format!(
                    "'auth.params.{text_param}' must be a string"
                )));
            }
        }
    }
    match params.get(PARAM_DATA_TYPE) {
        None | Some(Value::Null) => {
            params.insert(PARAM_DATA_TYPE.to_owned(), json!(DATA_TYPE_XDM));
        }
        Some(Value::String(t)) if t == DATA_TYPE_XDM || t == DATA_TYPE_RAW => {}
        Some(other) => {
            return Err(FlowServiceProblem::invalid_body(format!(
                "'auth.params.dataType' must be '{DATA_TYPE_XDM}' or '{DATA_TYPE_RAW}', got {other}"
            )));
        }
    }
    match params.get(PARAM_AUTHENTICATION_REQUIRED) {
        None | Some(Value::Null) => {
            params.insert(PARAM_AUTHENTICATION_REQUIRED.to_owned(), json!(false));
        }
        Some(Value::Bool(_)) => {}
        Some(_) => {
            return Err(FlowServiceProblem::invalid_body(
                "'auth.params.authenticationRequired' must be a boolean",
            ));
        }
    }
    Ok(params)
}

pub(crate) fn required_name(value: Option<&Value>) -> Result<String, FlowServiceProblem> {
    match value {
        Some(Value::String(name)) if !name.trim().is_empty() => Ok(name.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(FlowServiceProblem::invalid_body("'name' is required"))
        }
        Some(_) => Err(FlowServiceProblem::invalid_body("'name' must be a string")),
    }
}

pub(crate) fn optional_description(
    value: Option<&Value>,
) -> Result<Option<String>, FlowServiceProblem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(FlowServiceProblem::invalid_body(
            "'description' must be a string",
        )),
    }
}

/// The fields of a valid create request.
struct ValidCreateRequest {
    name: String,
    description: Option<String>,
    connection_spec: Value,
    params: Map<String, Value>,
}

fn validate_create(request: &Value) -> Result<ValidCreateRequest, FlowServiceProblem> {
    let Value::Object(request) = request else {
        return Err(FlowServiceProblem::invalid_body(
            "the body must be a JSON object",
        ));
    };
    let spec_id = match request.get("connectionSpec").and_then(|s| s.get("id")) {
        Some(Value::String(id)) => id.as_str(),
        _ => {
            return Err(FlowServiceProblem::invalid_spec_id(
                "connectionSpec.id is missing",
            ));
        }
    };
    if spec_id != STREAMING_CONNECTION_SPEC_ID {
        return Err(FlowServiceProblem::invalid_spec_id(&format!(
            "unknown connection spec id '{spec_id}'"
        )));
    }
    let version = match request["connectionSpec"].get("version") {
        None | Some(Value::Null) => DEFAULT_SPEC_VERSION.to_owned(),
        Some(Value::String(v)) => v.clone(),
        Some(_) => {
            return Err(FlowServiceProblem::invalid_body(
                "'connectionSpec.version' must be a string",
            ));
        }
    };
    let name = required_name(request.get("name"))?;
    let description = optional_description(request.get("description"))?;
    let auth = request.get("auth");
    let spec_name = auth.and_then(|a| a.get("specName")).and_then(Value::as_str);
    if spec_name != Some(STREAMING_AUTH_SPEC_NAME) {
        return Err(FlowServiceProblem::auth_spec_not_found(spec_name, spec_id));
    }
    // `providerId` (legacy form) is accepted and ignored, as the current service does.
    let params = normalize_params(auth.and_then(|a| a.get("params")), &name)?;
    Ok(ValidCreateRequest {
        name,
        description,
        connection_spec: json!({ "id": spec_id, "version": version }),
        params,
    })
}

/// `POST /connections` → 201 `{id, etag}` with `Location`.
pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authorize(&app, &headers, true)?;
    let new = validate_create(&parse_body(&body)?)?;
    let now = now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let etag = new_etag(now, None);
    let generation = {
        let mut store = app.store.lock().expect("store lock");
        let seq = store.take_seq();
        store.insert(StoredConnection {
            id: id.clone(),
            seq,
            org_id: caller.org_id.clone(),
            sandbox_name: caller.sandbox.clone(),
            name: new.name,
            description: new.description,
            connection_spec: new.connection_spec,
            spec_name: STREAMING_AUTH_SPEC_NAME.to_owned(),
            params: new.params,
            state: STATE_ENABLED.to_owned(),
            created_at: now,
            updated_at: now,
            // For service tokens, createdBy equals createdClient (reference §1.3).
            created_by: caller.client_id.clone(),
            updated_by: caller.client_id.clone(),
            created_client: caller.client_id.clone(),
            updated_client: caller.client_id.clone(),
            etag: etag.clone(),
            inlet_id: hex::encode(rand::random::<[u8; 32]>()),
            inlet_ready_at: now
                .saturating_add(i64::try_from(app.inlet_delay.as_millis()).unwrap_or(i64::MAX)),
        });
        store.generation += 1;
        store.generation
    };
    app.persist(generation).await?;
    tracing::debug!(connection_id = %id, sandbox = %caller.sandbox, "created connection");
    let location = format!("{}{CONNECTIONS_ROUTE}/{id}", app.public_url);
    let mut response =
        (StatusCode::CREATED, Json(json!({ "id": id, "etag": etag }))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /connections/{id}` → 200 `{items: [connection]}`.
pub(crate) async fn get_one(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = authorize(&app, &headers, false)?;
    let store = app.store.lock().expect("store lock");
    let connection = store
        .get_scoped(&id, &caller.org_id, &caller.sandbox)
        .ok_or_else(|| FlowServiceProblem::not_found(&id))?;
    let item = connection.render(&app.public_url, connection.inlet_ready(now_ms()));
    Ok(Json(json!({ "items": [item] })).into_response())
}

/// `GET /connections` with `property`, `orderby`, `limit`, `continuationToken`, `count`.
pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = authorize(&app, &headers, false)?;
    let request = ListRequest::parse(query.as_deref(), super::listing::ListRules::of(&app))?;
    let now = now_ms();
    let rendered: Vec<(u64, Value)> = {
        let store = app.store.lock().expect("store lock");
        store
            .scoped(&caller.org_id, &caller.sandbox)
            .into_iter()
            .map(|c| (c.seq, c.render(&app.public_url, c.inlet_ready(now))))
            .collect()
    };
    Ok(Json(request.respond(rendered)).into_response())
}

/// `DELETE /connections/{id}` → 204; later reads are 404.
pub(crate) async fn delete(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = authorize(&app, &headers, false)?;
    let generation = {
        let mut store = app.store.lock().expect("store lock");
        let Some(connection) = store.get_scoped(&id, &caller.org_id, &caller.sandbox) else {
            return Err(FlowServiceProblem::not_found(&id).into());
        };
        // Only in `enabled`, `disabled` or `initializing` (catalogue `1416-400`).
        check_changeable(connection)?;
        // A base connection that a flow still uses cannot go (reference §13): `FLOW-1418-400`.
        if let Some(in_use) = super::flows::base_connection_in_use(&store, &id) {
            return Err(in_use);
        }
        store.remove(&id);
        store.generation += 1;
        store.generation
    };
    app.persist(generation).await?;
    tracing::debug!(connection_id = %id, "deleted connection");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Which part of a connection a patch path touches.
fn check_patch_path(path: &str) -> Result<(), FlowServiceProblem> {
    let patchable = path == "/name"
        || path == "/description"
        || path == "/auth/params"
        || path.starts_with("/auth/params/");
    if patchable {
        Ok(())
    } else if path == "/connectionSpec" || path.starts_with("/connectionSpec/") {
        Err(FlowServiceProblem::spec_not_updatable())
    } else {
        Err(FlowServiceProblem::invalid_patch(format!(
            "path '{path}' cannot be updated; only /name, /description and /auth/params can"
        )))
    }
}

/// The patch document of a base connection: [`normalize_patch`] on the paths of [`check_patch_path`].
fn parse_patch(document: Value) -> Result<json_patch::Patch, FlowServiceProblem> {
    normalize_patch(
        document,
        FlowServiceProblem::invalid_patch,
        check_patch_path,
    )
}

/// The patch document as RFC 6902 operations: an array (the tutorials) or a single object (the spec), with
/// `op` in any case (the spec's enum is upper-case), limited to add/replace/remove on the paths `check_path`
/// lets through; `invalid` makes the kind's `1455-400`. The base connections and the dataflow routes share it.
pub(crate) fn normalize_patch<E>(
    document: Value,
    invalid: impl Fn(String) -> E,
    check_path: impl Fn(&str) -> Result<(), E>,
) -> Result<json_patch::Patch, E> {
    let operations = match document {
        Value::Array(operations) => operations,
        single @ Value::Object(_) => vec![single],
        _ => {
            return Err(invalid("the body must be a JSON Patch array".to_owned()));
        }
    };
    if operations.is_empty() {
        return Err(invalid("the patch has no operations".to_owned()));
    }
    let mut normalized = Vec::with_capacity(operations.len());
    for mut operation in operations {
        let Some(fields) = operation.as_object_mut() else {
            return Err(invalid("each operation must be an object".to_owned()));
        };
        let op = match fields.get("op").and_then(Value::as_str) {
            Some(op) => op.to_ascii_lowercase(),
            None => return Err(invalid("Missing field 'op'".to_owned())),
        };
        if !matches!(op.as_str(), "add" | "replace" | "remove") {
            return Err(invalid(format!(
                "unsupported op '{op}'; use add, replace or remove"
            )));
        }
        let Some(path) = fields.get("path").and_then(Value::as_str) else {
            return Err(invalid("Missing field 'path'".to_owned()));
        };
        check_path(path)?;
        if op != "remove" && !fields.contains_key("value") {
            return Err(invalid("Missing field 'value'".to_owned()));
        }
        fields.insert("op".to_owned(), json!(op));
        normalized.push(operation);
    }
    serde_json::from_value(Value::Array(normalized)).map_err(|error| invalid(error.to_string()))
}

/// `PATCH /connections/{id}` with `If-Match` → 200 `{id, etag}` with a new etag.
pub(crate) async fn patch(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = authorize(&app, &headers, true)?;
    if app.patch_disabled_orgs.contains(&caller.org_id) {
        // An organization-level switch (`--patch-disabled-org`): the catalogue's `1445-400`.
        return Err(FlowServiceProblem::patch_not_enabled().into());
    }
    let if_match = header_text(&headers, header::IF_MATCH.as_str())
        .ok_or_else(FlowServiceProblem::if_match_missing)?;
    let patch = parse_patch(parse_body(&body)?)?;
    let now = now_ms();
    let (etag, generation) = {
        let mut store = app.store.lock().expect("store lock");
        let connection = store
            .get_scoped_mut(&id, &caller.org_id, &caller.sandbox)
            .ok_or_else(|| FlowServiceProblem::not_found(&id))?;
        // Only in `enabled`, `disabled` or `initializing` (catalogue `1416-400`), before the version check.
        check_changeable(connection)?;
        if if_match != "*" && bare_etag(if_match) != bare_etag(&connection.etag) {
            return Err(FlowServiceProblem::version_mismatch(
                if_match,
                bare_etag(&connection.etag),
            )
            .into());
        }
        // Patch the object as the client sees it, so that paths under /auth/params resolve as in a GET.
        let mut document = connection.render(&app.public_url, connection.inlet_ready(now));
        json_patch::patch(&mut document, &patch).map_err(FlowServiceProblem::invalid_patch)?;
        let name = required_name(document.get("name"))
            .map_err(|e| FlowServiceProblem::invalid_patch(e.message))?;
        let description = optional_description(document.get("description"))
            .map_err(|e| FlowServiceProblem::invalid_patch(e.message))?;
        let params = normalize_params(document.pointer("/auth/params"), &name)
            .map_err(|e| FlowServiceProblem::invalid_patch(e.message))?;
        connection.name = name;
        connection.description = description;
        connection.params = params;
        connection.updated_at = now;
        connection.updated_by = caller.client_id.clone();
        connection.updated_client = caller.client_id.clone();
        connection.etag = new_etag(now, Some(&connection.etag));
        let etag = connection.etag.clone();
        store.generation += 1;
        (etag, store.generation)
    };
    app.persist(generation).await?;
    tracing::debug!(connection_id = %id, "patched connection");
    Ok(Json(json!({ "id": id, "etag": etag })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_have_flow_service_shape_and_compare_without_quotes() {
        let etag = new_etag(1_669_238_701_000, None);
        assert!(
            etag.starts_with('"') && etag.ends_with("637e8fad0000\""),
            "{etag}"
        );
        assert_eq!(bare_etag(&etag), etag.trim_matches('"'));
        assert_eq!(bare_etag("W/\"abc\""), "abc");
    }

    #[test]
    fn params_get_the_documented_defaults() {
        let params = normalize_params(Some(&json!({"inletId": "forged"})), "My conn").unwrap();
        assert_eq!(
            Value::Object(params),
            json!({"sourceId": "My conn", "name": "My conn", "dataType": "xdm", "authenticationRequired": false})
        );
        assert!(normalize_params(Some(&json!({"dataType": "csv"})), "n").is_err());
    }

    #[test]
    fn patch_accepts_upper_case_ops_and_single_objects_but_not_other_paths() {
        assert!(parse_patch(json!({"op": "REPLACE", "path": "/name", "value": "x"})).is_ok());
        assert_eq!(
            parse_patch(json!([{"op": "replace", "path": "/connectionSpec/id", "value": "x"}]))
                .unwrap_err()
                .code,
            "1414"
        );
        assert_eq!(
            parse_patch(json!([{"op": "replace", "path": "/state", "value": "x"}]))
                .unwrap_err()
                .code,
            "1455"
        );
        assert_eq!(
            parse_patch(json!([{"op": "move", "from": "/name", "path": "/description"}]))
                .unwrap_err()
                .code,
            "1455"
        );
    }
}
