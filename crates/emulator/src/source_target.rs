//! Flow Service source and target connections (reference `flow-service-dataflow.md` §5, §6): create, read,
//! list, patch with `If-Match`, delete, with the base connections' header checks and sandbox scoping.
//!
//! A source connection sits on a streaming base connection (spec `bc7b00d6…`); a target connection binds the
//! Data Lake spec (`c604ff05…`) to a dataset of the caller's sandbox and its schema. Both are immutable apart
//! from `name` and `description` (§12.3), and neither can be deleted while a flow uses it (`FLOW-1447-400`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::app::AppState;
use super::collections::{self, Collection, Scoped};
use super::connections::{
    Caller, STREAMING_CONNECTION_SPEC_ID, optional_description, required_name,
};
use super::dataflows::{Problem, Refusal, created, required_text, spec_reference};
use super::state::Store;

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
    /// The collection of this side's objects.
    fn collection(self) -> Collection {
        match self {
            Self::Source => Collection::SourceConnections,
            Self::Target => Collection::TargetConnections,
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
}

/// A side as a type, so that one generic handler serves the routes of both sides.
pub(crate) trait Which {
    /// The side the handler serves.
    const SIDE: Side;
}

/// The source connection routes.
pub(crate) struct Sources;

impl Which for Sources {
    const SIDE: Side = Side::Source;
}

/// The target connection routes.
pub(crate) struct Targets;

impl Which for Targets {
    const SIDE: Side = Side::Target;
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
    store: &Store,
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
    store: &Store,
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
        .filter(|d| d.in_scope(caller))
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

/// `POST /sourceConnections` or `/targetConnections` → 201 `{id, etag}`.
pub(crate) async fn create<W: Which>(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let side = W::SIDE;
    let object = side
        .collection()
        .create(&app, &headers, &body, |request, store, caller| match side {
            Side::Source => source_fields(request, store, caller),
            Side::Target => target_fields(request, store, caller),
        })
        .await?;
    tracing::debug!(id = %object.id, kind = side.collection().kind(), "created");
    Ok(created(&app.public_url, side.collection_route(), &object))
}

/// `GET /sourceConnections/{id}` or `/targetConnections/{id}` → 200 `{items: [connection]}`.
pub(crate) async fn get_one<W: Which>(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let collection = W::SIDE.collection();
    let kind = collection.kind();
    collections::get_one(
        &app,
        &id,
        &headers,
        kind,
        |store| collection.objects(store),
        |_, object| object.render(),
    )
}

/// `GET /sourceConnections` or `/targetConnections` with the base connections' query parameters.
pub(crate) async fn list<W: Which>(
    State(app): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let collection = W::SIDE.collection();
    collections::list(
        &app,
        query.as_deref(),
        &headers,
        &format!("/{}", collection.kind()),
        |store| collection.objects(store),
        |_, object, _| object.render(),
    )
}

/// `PATCH /sourceConnections/{id}` or `/targetConnections/{id}` with `If-Match` → 200 `{id, etag}`; only
/// `name` and `description` change.
pub(crate) async fn patch<W: Which>(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let side = W::SIDE;
    let patchable = |path: &str| matches!(path, "/name" | "/description");
    side.collection()
        .patch(&app, &id, &headers, &body, patchable, |_, _, _, fields| {
            let name = fields.get("name");
            if side == Side::Source || name.is_some() {
                required_name(name).map_err(|e| Problem::invalid_patch(e.message))?;
            }
            optional_description(fields.get("description"))
                .map_err(|e| Problem::invalid_patch(e.message))?;
            Ok(fields)
        })
        .await
}

/// `DELETE /sourceConnections/{id}` or `/targetConnections/{id}` → 204, or `FLOW-1447-400` while a flow uses it.
pub(crate) async fn delete<W: Which>(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let side = W::SIDE;
    let collection = side.collection();
    let in_use = |store: &Store| {
        // The reference guesses 1447 ("found active flows containing id …") for this case (§13 [?]).
        let flows = store.dataflow.flows_referencing(side.flow_field(), &id);
        if flows.is_empty() {
            return Ok(());
        }
        Err(Problem::bad_request(
            "1447",
            format!(
                "Found active flows containing id {id}: [{}]. Delete the flows first.",
                flows.join(", ")
            ),
        )
        .into())
    };
    collections::delete(
        &app,
        &id,
        &headers,
        collection.kind(),
        |store| collection.objects_mut(store),
        in_use,
    )
    .await
}
