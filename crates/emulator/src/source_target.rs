//! Flow Service source and target connections (reference `flow-service-dataflow.md` §5, §6): create, read,
//! list, patch with `If-Match`, delete, with the base connections' header checks and sandbox scoping.
//!
//! A source connection sits on a streaming base connection (spec `bc7b00d6…`); a target connection binds the
//! Data Lake spec (`c604ff05…`) to a dataset of the caller's sandbox and its schema. Both are immutable apart
//! from `name` and `description` (§12.3), and neither can be deleted while a flow uses it (`FLOW-1447-400`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::app::{AppState, now_ms};
use super::connections::{
    Caller, STREAMING_CONNECTION_SPEC_ID, authorize, optional_description, parse_body,
    required_name,
};
use super::dataflows::{
    DataflowStore, FlowObject, Problem, Refusal, check_if_match, created, object_body, parse_patch,
    relink, required_text, spec_reference,
};
use super::listing::ListRequest;

/// Source connections.
pub(crate) const SOURCE_CONNECTIONS_ROUTE: &str = "/data/foundation/flowservice/sourceConnections";
/// One source connection.
pub(crate) const SOURCE_CONNECTION_ROUTE: &str =
    "/data/foundation/flowservice/sourceConnections/{id}";
/// Target connections.
pub(crate) const TARGET_CONNECTIONS_ROUTE: &str = "/data/foundation/flowservice/targetConnections";
/// One target connection.
pub(crate) const TARGET_CONNECTION_ROUTE: &str =
    "/data/foundation/flowservice/targetConnections/{id}";
/// The Data Lake target connection spec (reference §1).
pub const DATA_LAKE_CONNECTION_SPEC_ID: &str = "c604ff05-7f1a-43c0-8e18-33bf874cb11c";

/// Which of the two collections a handler serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Target,
}

impl Side {
    /// The collection's name in paths, `report.type` and flow fields.
    fn kind(self) -> &'static str {
        match self {
            Self::Source => "sourceConnections",
            Self::Target => "targetConnections",
        }
    }

    /// The flow field that references objects of this side.
    fn flow_field(self) -> &'static str {
        match self {
            Self::Source => "sourceConnectionIds",
            Self::Target => "targetConnectionIds",
        }
    }

    fn collection_route(self) -> &'static str {
        match self {
            Self::Source => SOURCE_CONNECTIONS_ROUTE,
            Self::Target => TARGET_CONNECTIONS_ROUTE,
        }
    }

    pub(crate) fn objects(self, store: &DataflowStore) -> &HashMap<String, FlowObject> {
        match self {
            Self::Source => &store.source_connections,
            Self::Target => &store.target_connections,
        }
    }

    fn objects_mut(self, store: &mut DataflowStore) -> &mut HashMap<String, FlowObject> {
        match self {
            Self::Source => &mut store.source_connections,
            Self::Target => &mut store.target_connections,
        }
    }
}

/// An optional object field of a create body.
fn optional_object(body: &Map<String, Value>, field: &str) -> Result<Option<Value>, Problem> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(object @ Value::Object(_)) => Ok(Some(object.clone())),
        Some(_) => Err(Problem::invalid_body(format!(
            "'{field}' must be an object"
        ))),
    }
}

/// The fields of a valid source connection create request.
fn source_fields(
    body: &Map<String, Value>,
    store: &super::state::Store,
    caller: &Caller,
) -> Result<Map<String, Value>, Problem> {
    let connection_spec = spec_reference(body, "connectionSpec", &[STREAMING_CONNECTION_SPEC_ID])?;
    let name = required_text(body, "name")?;
    let description = optional_description(body.get("description"))
        .map_err(|e| Problem::invalid_body(e.message))?;
    let base_id = required_text(body, "baseConnectionId")?;
    let Some(base) = store.get_scoped(&base_id, &caller.org_id, &caller.sandbox) else {
        return Err(Problem::invalid_body(format!(
            "base connection {base_id} does not exist in sandbox {}",
            caller.sandbox
        )));
    };
    let mut fields = Map::new();
    fields.insert("name".to_owned(), json!(name));
    if let Some(description) = description {
        fields.insert("description".to_owned(), json!(description));
    }
    fields.insert("baseConnectionId".to_owned(), json!(base_id));
    fields.insert("connectionSpec".to_owned(), connection_spec);
    // `data` is optional for HTTP API sources (reference §5 [C]); `providerId` is legacy and kept as sent.
    fields.insert(
        "data".to_owned(),
        optional_object(body, "data")?.unwrap_or_else(|| json!({})),
    );
    fields.insert(
        "params".to_owned(),
        optional_object(body, "params")?.unwrap_or_else(|| json!({})),
    );
    if let Some(provider) = body.get("providerId").filter(|p| p.is_string()) {
        fields.insert("providerId".to_owned(), provider.clone());
    }
    fields.insert(
        "inheritedAttributes".to_owned(),
        json!({ "baseConnection": { "id": base.id, "connectionSpec": base.connection_spec } }),
    );
    Ok(fields)
}

/// The fields of a valid target connection create request: the dataset must exist in the caller's sandbox and
/// `data.schema.id` must be its schema.
fn target_fields(
    body: &Map<String, Value>,
    store: &super::state::Store,
    caller: &Caller,
) -> Result<Map<String, Value>, Problem> {
    let connection_spec = spec_reference(body, "connectionSpec", &[DATA_LAKE_CONNECTION_SPEC_ID])?;
    let mut fields = Map::new();
    match body.get("name") {
        None | Some(Value::Null) => {}
        Some(_) => {
            fields.insert("name".to_owned(), json!(required_text(body, "name")?));
        }
    }
    if let Some(description) = optional_description(body.get("description"))
        .map_err(|e| Problem::invalid_body(e.message))?
    {
        fields.insert("description".to_owned(), json!(description));
    }
    let Some(data) = optional_object(body, "data")? else {
        return Err(Problem::invalid_body("'data' is required"));
    };
    let Some(schema_id) = data.pointer("/schema/id").and_then(Value::as_str) else {
        return Err(Problem::invalid_body("'data.schema.id' is required"));
    };
    let params = optional_object(body, "params")?.unwrap_or_else(|| json!({}));
    let Some(dataset_id) = params.get("dataSetId").and_then(Value::as_str) else {
        return Err(Problem::invalid_body("'params.dataSetId' is required"));
    };
    let Some(dataset) = store
        .dataflow
        .datasets
        .get(dataset_id)
        .filter(|d| d.org_id == caller.org_id && d.sandbox_name == caller.sandbox)
    else {
        return Err(Problem::invalid_body(format!(
            "dataset {dataset_id} does not exist in sandbox {}",
            caller.sandbox
        )));
    };
    if dataset.schema_id() != schema_id {
        return Err(Problem::invalid_body(format!(
            "'data.schema.id' {schema_id} is not the schema of dataset {dataset_id} ({})",
            dataset.schema_id()
        )));
    }
    fields.insert("data".to_owned(), data);
    fields.insert("params".to_owned(), params);
    fields.insert("connectionSpec".to_owned(), connection_spec);
    Ok(fields)
}

async fn create(
    side: Side,
    app: Arc<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let caller = authorize(&app, &headers, true)?;
    let request = object_body(&body)?;
    let now = now_ms();
    let (object, generation) = {
        let mut store = app.store.lock().expect("store lock");
        let fields = match side {
            Side::Source => source_fields(&request, &store, &caller)?,
            Side::Target => target_fields(&request, &store, &caller)?,
        };
        let seq = store.take_seq();
        let object = FlowObject::new(&caller, seq, now, fields);
        side.objects_mut(&mut store.dataflow)
            .insert(object.id.clone(), object.clone());
        store.generation += 1;
        (object, store.generation)
    };
    app.persist(generation).await?;
    tracing::debug!(id = %object.id, kind = side.kind(), "created");
    Ok(created(&app.public_url, side.collection_route(), &object))
}

async fn get_one(
    side: Side,
    app: Arc<AppState>,
    id: String,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let caller = authorize(&app, &headers, false)?;
    let store = app.store.lock().expect("store lock");
    let object = side
        .objects(&store.dataflow)
        .get(&id)
        .filter(|o| o.in_scope(&caller.org_id, &caller.sandbox))
        .ok_or_else(|| Problem::not_found(side.kind(), &id))?;
    Ok(Json(json!({ "items": [object.render()] })).into_response())
}

async fn list(
    side: Side,
    app: Arc<AppState>,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let caller = authorize(&app, &headers, false)?;
    let request = ListRequest::parse(query.as_deref())?;
    let rendered: Vec<(u64, Value)> = {
        let store = app.store.lock().expect("store lock");
        let mut objects: Vec<&FlowObject> = side
            .objects(&store.dataflow)
            .values()
            .filter(|o| o.in_scope(&caller.org_id, &caller.sandbox))
            .collect();
        objects.sort_by_key(|o| o.seq);
        objects.into_iter().map(|o| (o.seq, o.render())).collect()
    };
    let page = relink(request.respond(rendered), &format!("/{}", side.kind()));
    Ok(Json(page).into_response())
}

async fn patch(
    side: Side,
    app: Arc<AppState>,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let caller = authorize(&app, &headers, true)?;
    check_if_match_present(&headers)?;
    let patch = parse_patch(parse_body(&body)?, |path| {
        matches!(path, "/name" | "/description")
    })?;
    let now = now_ms();
    let (etag, generation) = {
        let mut store = app.store.lock().expect("store lock");
        let object = side
            .objects_mut(&mut store.dataflow)
            .get_mut(&id)
            .filter(|o| o.in_scope(&caller.org_id, &caller.sandbox))
            .ok_or_else(|| Problem::not_found(side.kind(), &id))?;
        check_if_match(&headers, &object.etag)?;
        let mut document = Value::Object(object.fields.clone());
        json_patch::patch(&mut document, &patch).map_err(Problem::invalid_patch)?;
        let name = document.get("name");
        if side == Side::Source || name.is_some() {
            required_name(name).map_err(|e| Problem::invalid_patch(e.message))?;
        }
        optional_description(document.get("description"))
            .map_err(|e| Problem::invalid_patch(e.message))?;
        let Value::Object(fields) = document else {
            return Err(Problem::invalid_patch("the patch must leave an object").into());
        };
        object.fields = fields;
        object.touch(&caller, now);
        let etag = object.etag.clone();
        store.generation += 1;
        (etag, store.generation)
    };
    app.persist(generation).await?;
    Ok(Json(json!({ "id": id, "etag": etag })).into_response())
}

/// `If-Match` is checked before the body, as for base connections (`1403-400`).
fn check_if_match_present(headers: &HeaderMap) -> Result<(), Refusal> {
    if super::connections::header_text(headers, "if-match").is_none() {
        return Err(super::errors::FlowServiceProblem::if_match_missing().into());
    }
    Ok(())
}

async fn delete(
    side: Side,
    app: Arc<AppState>,
    id: String,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let caller = authorize(&app, &headers, false)?;
    let generation = {
        let mut store = app.store.lock().expect("store lock");
        if !side
            .objects(&store.dataflow)
            .get(&id)
            .is_some_and(|o| o.in_scope(&caller.org_id, &caller.sandbox))
        {
            return Err(Problem::not_found(side.kind(), &id).into());
        }
        // The reference guesses 1447 ("found active flows containing id …") for this case (§13 [?]).
        let flows = store.dataflow.flows_referencing(side.flow_field(), &id);
        if !flows.is_empty() {
            return Err(Problem::bad_request(
                "1447",
                format!(
                    "Found active flows containing id {id}: [{}]. Delete the flows first.",
                    flows.join(", ")
                ),
            )
            .into());
        }
        side.objects_mut(&mut store.dataflow).remove(&id);
        store.generation += 1;
        store.generation
    };
    app.persist(generation).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /sourceConnections` → 201 `{id, etag}`.
pub(crate) async fn create_source(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    create(Side::Source, app, headers, body).await
}

/// `POST /targetConnections` → 201 `{id, etag}`.
pub(crate) async fn create_target(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    create(Side::Target, app, headers, body).await
}

/// `GET /sourceConnections/{id}` → 200 `{items: [connection]}`.
pub(crate) async fn get_source(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    get_one(Side::Source, app, id, headers).await
}

/// `GET /targetConnections/{id}` → 200 `{items: [connection]}`.
pub(crate) async fn get_target(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    get_one(Side::Target, app, id, headers).await
}

/// `GET /sourceConnections` with the base connections' query parameters.
pub(crate) async fn list_sources(
    State(app): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    list(Side::Source, app, query, headers).await
}

/// `GET /targetConnections` with the base connections' query parameters.
pub(crate) async fn list_targets(
    State(app): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    list(Side::Target, app, query, headers).await
}

/// `PATCH /sourceConnections/{id}` with `If-Match` → 200 `{id, etag}`.
pub(crate) async fn patch_source(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    patch(Side::Source, app, id, headers, body).await
}

/// `PATCH /targetConnections/{id}` with `If-Match` → 200 `{id, etag}`.
pub(crate) async fn patch_target(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    patch(Side::Target, app, id, headers, body).await
}

/// `DELETE /sourceConnections/{id}` → 204, or `FLOW-1447-400` while a flow uses it.
pub(crate) async fn delete_source(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    delete(Side::Source, app, id, headers).await
}

/// `DELETE /targetConnections/{id}` → 204, or `FLOW-1447-400` while a flow uses it.
pub(crate) async fn delete_target(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    delete(Side::Target, app, id, headers).await
}
