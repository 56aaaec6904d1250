//! Flow Service flows (reference `flow-service-dataflow.md` §8, §12, §13): create with the checks of the §17
//! checklist, read, list, patch with `If-Match`, enable/disable through `POST /flows/{id}/action?op=…`, delete;
//! and the rule that a base connection cannot be deleted while a flow uses it (`FLOW-1418-400`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::app::{AppState, now_ms};
use super::collections::{self, Collection, Scoped, find_mut, id_and_etag, query_value};
use super::connections::{Caller, authorize, header_text, optional_description};
use super::dataflows::{
    FlowObject, Problem, Refusal, STATE_DISABLED, STATE_ENABLED, check_if_match, created,
    required_text, spec_reference,
};
use super::errors::ApiError;
use super::mapping::StoredMappingSet;
use super::state::Store;

/// Flows.
pub(crate) const FLOWS_ROUTE: &str = "/data/foundation/flowservice/flows";
/// One flow.
pub(crate) const FLOW_ROUTE: &str = "/data/foundation/flowservice/flows/{id}";
/// Enable or disable a flow.
pub(crate) const FLOW_ACTION_ROUTE: &str = "/data/foundation/flowservice/flows/{id}/action";
/// HTTP API flow spec without transformation (XDM payloads).
pub const XDM_FLOW_SPEC_ID: &str = "d8a6f005-7eaf-4153-983e-e8574508b877";
/// HTTP API flow spec with a Data Prep mapping (raw payloads).
pub const RAW_FLOW_SPEC_ID: &str = "c1a19761-d2c7-4702-b9fa-fe91f0613e81";
/// The only transformation name the mapping flow spec knows.
const MAPPING_TRANSFORMATION: &str = "Mapping";

/// The single id of `sourceConnectionIds`/`targetConnectionIds`: every documented HTTP API flow has exactly one.
fn single_id(body: &Map<String, Value>, field: &str) -> Result<String, Problem> {
    match body.get(field).and_then(Value::as_array).map(Vec::as_slice) {
        Some([Value::String(id)]) if !id.is_empty() => Ok(id.clone()),
        _ => Err(Problem::invalid_body(format!(
            "'{field}' must be an array holding one id"
        ))),
    }
}

/// A mapping version as a request gives it: `0` or `"0"`.
fn mapping_version(value: Option<&Value>) -> Result<Option<u64>, Problem> {
    let invalid = || Problem::bad_request("1412", "The mapping version is invalid.");
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(invalid),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

/// Check `transformations` against the flow spec and the target dataset's schema, and normalize them
/// (`mappingVersion` as the string GET examples show, defaulting to the set's newest version).
/// `None`: the flow has no transformations.
fn check_transformations(
    store: &Store,
    caller: &Caller,
    flow_spec_id: &str,
    transformations: Option<&Value>,
    dataset_schema: &str,
) -> Result<Option<Value>, Problem> {
    let list = match transformations {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err(Problem::invalid_body("'transformations' must be an array")),
    };
    let is_mapping =
        |t: &Value| t.get("name").and_then(Value::as_str) == Some(MAPPING_TRANSFORMATION);
    if flow_spec_id == RAW_FLOW_SPEC_ID && !list.first().is_some_and(is_mapping) {
        return Err(Problem::invalid_body(format!(
            "a flow of spec {RAW_FLOW_SPEC_ID} needs transformations[0] named \"Mapping\" with params.mappingId"
        )));
    }
    let mut normalized = Vec::with_capacity(list.len());
    for mut transformation in list {
        if is_mapping(&transformation) {
            let Some(mapping_id) = transformation
                .pointer("/params/mappingId")
                .and_then(Value::as_str)
            else {
                return Err(Problem::invalid_body(
                    "the Mapping transformation needs params.mappingId",
                ));
            };
            let Some(set) = store
                .dataflow
                .mapping_sets
                .get(mapping_id)
                .filter(|s| s.in_scope(caller))
            else {
                return Err(Problem::bad_request(
                    "1419",
                    format!("The mapping {mapping_id} failed validation: it does not exist."),
                ));
            };
            let version = match mapping_version(transformation.pointer("/params/mappingVersion"))? {
                None => set.latest(),
                Some(number) => set.version(number).ok_or_else(|| {
                    Problem::bad_request(
                        "1412",
                        format!("The mapping version {number} of mapping {mapping_id} is invalid."),
                    )
                })?,
            };
            let mapping_schema = StoredMappingSet::schema_id(version);
            if mapping_schema != dataset_schema {
                return Err(Problem::bad_request(
                    "1425",
                    format!(
                        "The schema in the target dataset ({dataset_schema}) does not match the schema in the \
                         mapping ({mapping_schema}). They need the same id and version."
                    ),
                ));
            }
            transformation["params"]["mappingVersion"] = json!(version.version.to_string());
        }
        normalized.push(transformation);
    }
    Ok((!normalized.is_empty()).then_some(Value::Array(normalized)))
}

/// The schema of the dataset a target connection lands in.
fn target_schema(store: &Store, target: &FlowObject) -> String {
    target
        .pointer("/params/dataSetId")
        .and_then(Value::as_str)
        .and_then(|id| store.dataflow.datasets.get(id))
        .map(|d| d.schema_id().to_owned())
        .unwrap_or_default()
}

/// The fields of a valid create request (reference §17 checklist).
fn flow_fields(
    body: &Map<String, Value>,
    store: &Store,
    caller: &Caller,
) -> Result<Map<String, Value>, Problem> {
    if body.contains_key("state") {
        return Err(Problem::bad_request(
            "1410",
            "The state property is not allowed in a create flow request.",
        ));
    }
    let flow_spec = spec_reference(body, "flowSpec", &[XDM_FLOW_SPEC_ID, RAW_FLOW_SPEC_ID])?;
    let flow_spec_id = flow_spec["id"].as_str().unwrap_or_default().to_owned();
    let name = required_text(body, "name")?;
    let description = optional_description(body.get("description"))
        .map_err(|e| Problem::invalid_body(e.message))?;
    let source_id = single_id(body, "sourceConnectionIds")?;
    let target_id = single_id(body, "targetConnectionIds")?;
    let source = store
        .dataflow
        .source_connections
        .get(&source_id)
        .filter(|o| o.in_scope(caller))
        .ok_or_else(|| {
            Problem::invalid_body(format!("source connection {source_id} does not exist"))
        })?;
    let target = store
        .dataflow
        .target_connections
        .get(&target_id)
        .filter(|o| o.in_scope(caller))
        .ok_or_else(|| {
            Problem::invalid_body(format!("target connection {target_id} does not exist"))
        })?;
    let transformations = check_transformations(
        store,
        caller,
        &flow_spec_id,
        body.get("transformations"),
        &target_schema(store, target),
    )?;
    let mut fields = Map::new();
    fields.insert("name".to_owned(), json!(name));
    if let Some(description) = description {
        fields.insert("description".to_owned(), json!(description));
    }
    fields.insert("flowSpec".to_owned(), flow_spec);
    fields.insert("sourceConnectionIds".to_owned(), json!([source_id]));
    fields.insert("targetConnectionIds".to_owned(), json!([target_id]));
    if let Some(transformations) = transformations {
        fields.insert("transformations".to_owned(), transformations);
    }
    // aepp always sends scheduleParams; streaming ignores them, the emulator keeps them as sent.
    if let Some(schedule) = body.get("scheduleParams").filter(|s| s.is_object()) {
        fields.insert("scheduleParams".to_owned(), schedule.clone());
    }
    fields.insert(
        "inheritedAttributes".to_owned(),
        json!({
            "sourceConnections": [{
                "id": source.id,
                "connectionSpec": source.fields.get("connectionSpec"),
                "baseConnection": source.pointer("/inheritedAttributes/baseConnection"),
            }],
            "targetConnections": [{
                "id": target.id,
                "connectionSpec": target.fields.get("connectionSpec"),
                "params": target.fields.get("params"),
            }],
            "properties": { "isSourceFlow": true, "isDestinationFlow": false },
        }),
    );
    Ok(fields)
}

/// The base connection a flow reads from (`inheritedAttributes.sourceConnections[0].baseConnection.id`).
pub(crate) fn base_connection_of(flow: &FlowObject) -> Option<&str> {
    flow.pointer("/inheritedAttributes/sourceConnections/0/baseConnection/id")
        .and_then(Value::as_str)
}

/// `FLOW-1418-400` naming the flows that still use base connection `id`, or `None` when none does.
pub(crate) fn base_connection_in_use(store: &Store, id: &str) -> Option<ApiError> {
    let mut flows: Vec<&FlowObject> = store
        .dataflow
        .flows
        .values()
        .filter(|flow| base_connection_of(flow) == Some(id))
        .collect();
    if flows.is_empty() {
        return None;
    }
    flows.sort_by_key(|flow| flow.seq);
    let ids: Vec<&str> = flows.iter().map(|flow| flow.id.as_str()).collect();
    Some(
        Problem::bad_request(
            "1418",
            format!(
                "The base connection {id} cannot be deleted because it is used in one or more flows: [{}]. \
                 Delete the flows first.",
                ids.join(", ")
            ),
        )
        .into(),
    )
}

/// A flow as GET shows it: the stored object, its `runs` link, `lastOperation`, and `lastRunDetails` once it
/// has a run.
pub(crate) fn render(store: &Store, flow: &FlowObject, now: i64) -> Value {
    let mut object = flow.render();
    object["runs"] = json!(format!("/runs?property=flowId=={}", flow.id));
    object["lastOperation"] = json!({
        "started": flow.updated_at,
        "updated": flow.updated_at,
        "operation": flow.last_operation,
        "percentCompleted": 100.0,
        "status": { "value": "completed", "errors": [] },
    });
    if let Some(run) = super::runs::latest_run(store, &flow.id) {
        object["lastRunDetails"] = run.details(now);
    }
    object
}

/// `POST /flows` → 201 `{id, etag}` with `Location`; the flow starts `enabled`.
pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let flow = Collection::Flows
        .create(&app, &headers, &body, flow_fields)
        .await?;
    tracing::debug!(flow_id = %flow.id, "created flow");
    Ok(created(&app.public_url, FLOWS_ROUTE, &flow))
}

/// `GET /flows/{id}` → 200 `{items: [flow]}`; unknown → `FLOW-1439-404`.
pub(crate) async fn get_one(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    collections::get_one(
        &app,
        &id,
        &headers,
        "flows",
        |store| &store.flows,
        |store, flow| render(store, flow, now_ms()),
    )
}

/// `GET /flows` with `property`, `orderby`, `limit`, `continuationToken`, `count`.
pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    collections::list(
        &app,
        query.as_deref(),
        &headers,
        "/flows",
        |store| &store.flows,
        render,
    )
}

/// What a flow PATCH may touch: name, description, transformations (a new mapping version, §12.4) and labels.
fn patchable(path: &str) -> bool {
    matches!(
        path,
        "/name" | "/description" | "/transformations" | "/labels"
    ) || path.starts_with("/transformations/")
        || path.starts_with("/labels/")
}

/// `PATCH /flows/{id}` with `If-Match` → 200 `{id, etag}`.
pub(crate) async fn patch(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    Collection::Flows
        .patch(
            &app,
            &id,
            &headers,
            &body,
            patchable,
            |store, caller, flow, mut fields| {
                required_text(&fields, "name").map_err(|e| Problem::invalid_patch(e.message))?;
                optional_description(fields.get("description"))
                    .map_err(|e| Problem::invalid_patch(e.message))?;
                let flow_spec_id = flow
                    .pointer("/flowSpec/id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let dataset_schema = flow
                    .first_id("targetConnectionIds")
                    .and_then(|t| store.dataflow.target_connections.get(t))
                    .map(|t| target_schema(store, t))
                    .unwrap_or_default();
                match check_transformations(
                    store,
                    caller,
                    &flow_spec_id,
                    fields.get("transformations"),
                    &dataset_schema,
                )? {
                    Some(transformations) => {
                        fields.insert("transformations".to_owned(), transformations);
                    }
                    None => {
                        fields.remove("transformations");
                    }
                }
                Ok(fields)
            },
        )
        .await
}

/// `POST /flows/{id}/action?op=enable|disable` (any case, no body, `If-Match` optional) → 200 `{id, etag}`.
/// Enabling an enabled flow (or disabling a disabled one) changes nothing and keeps the etag.
pub(crate) async fn action(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    // aepp sends this POST without a body or Content-Type, so the content-type check does not apply.
    let caller = authorize(&app, &headers, false)?;
    let op = query_value(query.as_deref(), "op")
        .map(|value| value.to_ascii_lowercase())
        .unwrap_or_default();
    let wanted = match op.as_str() {
        "enable" => STATE_ENABLED,
        "disable" => STATE_DISABLED,
        _ => {
            return Err(Problem::bad_request(
                "1456",
                format!(
                    "Invalid operation '{op}'. The emulator supports op=enable and op=disable."
                ),
            )
            .into());
        }
    };
    let now = now_ms();
    let (etag, generation) = {
        let mut store = app.store.lock().expect("store lock");
        let flow = find_mut(&mut store.dataflow.flows, &id, &caller, "flows")?;
        if header_text(&headers, "if-match").is_some() {
            check_if_match(&headers, &flow.etag)?;
        }
        if flow.state == wanted {
            (flow.etag.clone(), None)
        } else {
            flow.state = wanted.to_owned();
            flow.touch(&caller, now);
            let etag = flow.etag.clone();
            store.generation += 1;
            (etag, Some(store.generation))
        }
    };
    if let Some(generation) = generation {
        app.persist(generation).await?;
    }
    Ok(id_and_etag(&id, &etag))
}

/// `DELETE /flows/{id}` → 204. The flow's source and target connections stay (reference §13).
pub(crate) async fn delete(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let response = collections::delete(
        &app,
        &id,
        &headers,
        "flows",
        |store| &mut store.flows,
        |_| Ok(()),
    )
    .await?;
    tracing::debug!(flow_id = %id, "deleted flow");
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_versions_are_read_as_numbers_or_strings() {
        assert_eq!(mapping_version(Some(&json!(2))).unwrap(), Some(2));
        assert_eq!(mapping_version(Some(&json!("3"))).unwrap(), Some(3));
        assert_eq!(mapping_version(None).unwrap(), None);
        assert_eq!(mapping_version(Some(&json!("x"))).unwrap_err().code, "1412");
    }

    #[test]
    fn only_documented_paths_are_patchable() {
        assert!(patchable("/transformations/0"));
        assert!(patchable("/name"));
        assert!(!patchable("/state"));
        assert!(!patchable("/sourceConnectionIds"));
    }
}
