//! What the dataflow routes share (reference `flow-service-dataflow.md`): the store of datasets, source and
//! target connections, mapping sets, flows and runs; the Flow Service object that source connections, target
//! connections and flows all are (server metadata around the client's fields); their problem bodies; and JSON
//! Patch parsing with a per-kind list of patchable paths.
//!
//! Every object belongs to one organization and sandbox, like the base connections: it is invisible (404) from
//! anywhere else.

use std::collections::HashMap;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::catalog::{self, StoredDataset};
use super::connections::{Caller, bare_etag, header_text, new_etag, normalize_patch};
use super::errors::{ApiError, FlowServiceProblem, flow_problem_body};
use super::mapping::StoredMappingSet;
use super::runs::StoredRun;
use super::state::sandbox_id;

/// Flow Service objects are `enabled` unless a flow is disabled through its action endpoint.
pub(crate) const STATE_ENABLED: &str = "enabled";
/// The state of a flow after `POST /flows/{id}/action?op=disable`.
pub(crate) const STATE_DISABLED: &str = "disabled";

/// A source connection, target connection or flow: server metadata around the fields the client sent
/// (`name`, `description`, `connectionSpec`, `flowSpec`, `data`, `params`, …) and the ones the server derived at
/// creation (`inheritedAttributes`), which never change because the references they derive from cannot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FlowObject {
    pub(crate) id: String,
    /// Creation order, shared with every other stored object.
    pub(crate) seq: u64,
    pub(crate) org_id: String,
    pub(crate) sandbox_name: String,
    pub(crate) state: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) created_by: String,
    pub(crate) updated_by: String,
    pub(crate) created_client: String,
    pub(crate) updated_client: String,
    /// With its inner quotes, as Flow Service sends it.
    pub(crate) etag: String,
    /// `create` or `update`: the last change, shown in a flow's `lastOperation`.
    #[serde(default)]
    pub(crate) last_operation: String,
    pub(crate) fields: Map<String, Value>,
}

impl FlowObject {
    /// A new object of `caller`'s org and sandbox.
    pub(crate) fn new(caller: &Caller, seq: u64, now: i64, fields: Map<String, Value>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            seq,
            org_id: caller.org_id.clone(),
            sandbox_name: caller.sandbox.clone(),
            state: STATE_ENABLED.to_owned(),
            created_at: now,
            updated_at: now,
            created_by: caller.client_id.clone(),
            updated_by: caller.client_id.clone(),
            created_client: caller.client_id.clone(),
            updated_client: caller.client_id.clone(),
            etag: new_etag(now, None),
            last_operation: "create".to_owned(),
            fields,
        }
    }

    /// Record a successful change: who, when, and a new etag.
    pub(crate) fn touch(&mut self, caller: &Caller, now: i64) {
        self.updated_at = now;
        self.updated_by = caller.client_id.clone();
        self.updated_client = caller.client_id.clone();
        self.etag = new_etag(now, Some(&self.etag));
        self.last_operation = "update".to_owned();
    }

    /// The object as GET shows it: the stored fields plus the server's metadata (which wins on a clash).
    pub(crate) fn render(&self) -> Value {
        let mut object = self.fields.clone();
        let metadata = json!({
            "id": self.id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "createdBy": self.created_by,
            "updatedBy": self.updated_by,
            "createdClient": self.created_client,
            "updatedClient": self.updated_client,
            "sandboxId": sandbox_id(&self.org_id, &self.sandbox_name),
            "sandboxName": self.sandbox_name,
            "imsOrgId": self.org_id,
            "state": self.state,
            "version": self.etag,
            "etag": self.etag,
        });
        if let Value::Object(metadata) = metadata {
            object.extend(metadata);
        }
        Value::Object(object)
    }

    /// The value at a JSON pointer into the stored fields, e.g. `/params/dataSetId`.
    pub(crate) fn pointer(&self, pointer: &str) -> Option<&Value> {
        let rest = pointer.strip_prefix('/')?;
        let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let value = self.fields.get(head)?;
        if tail.is_empty() {
            Some(value)
        } else {
            value.pointer(&format!("/{tail}"))
        }
    }

    /// The first id of an id-array field (`sourceConnectionIds`, `targetConnectionIds`).
    pub(crate) fn first_id(&self, field: &str) -> Option<&str> {
        self.fields.get(field)?.get(0)?.as_str()
    }
}

/// Everything the dataflow routes store. Datasets, connections, mapping sets and flows go to the state file;
/// runs and record counts are delivery records, kept in memory only like the inlet records.
#[derive(Debug, Default)]
pub(crate) struct DataflowStore {
    pub(crate) datasets: HashMap<String, StoredDataset>,
    pub(crate) source_connections: HashMap<String, FlowObject>,
    pub(crate) target_connections: HashMap<String, FlowObject>,
    pub(crate) mapping_sets: HashMap<String, StoredMappingSet>,
    pub(crate) flows: HashMap<String, FlowObject>,
    pub(crate) runs: HashMap<String, StoredRun>,
    /// Per inlet: messages answered 200 that reached no dataset (no flow id, or a flow that cannot take them).
    pub(crate) unrouted: HashMap<String, u64>,
    /// Whether the demo dataset is (re)created at start-up and on reset.
    pub(crate) seed_demo_dataset: bool,
}

/// What the state file keeps of a [`DataflowStore`]; flattened into the file next to `connections`, each list
/// defaulting to empty so that files written before these objects existed still load.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PersistedDataflows {
    #[serde(default)]
    datasets: Vec<StoredDataset>,
    #[serde(default)]
    source_connections: Vec<FlowObject>,
    #[serde(default)]
    target_connections: Vec<FlowObject>,
    #[serde(default)]
    mapping_sets: Vec<StoredMappingSet>,
    #[serde(default)]
    flows: Vec<FlowObject>,
}

/// Values sorted by creation order.
pub(crate) fn in_creation_order<T>(map: &HashMap<String, T>, seq: impl Fn(&T) -> u64) -> Vec<&T> {
    let mut values: Vec<&T> = map.values().collect();
    values.sort_by_key(|value| seq(value));
    values
}

impl DataflowStore {
    /// Forget everything (admin reset), then seed the demo dataset again if it is enabled.
    pub(crate) fn clear(&mut self) {
        *self = Self {
            seed_demo_dataset: self.seed_demo_dataset,
            ..Self::default()
        };
        self.seed_demo();
    }

    /// Add the demo dataset unless it is disabled or already there.
    pub(crate) fn seed_demo(&mut self) {
        if self.seed_demo_dataset {
            let demo = catalog::demo_dataset();
            self.datasets.entry(demo.id.clone()).or_insert(demo);
        }
    }

    /// The highest creation sequence number in use, so that a loaded store continues after it.
    pub(crate) fn max_seq(&self) -> u64 {
        let objects = self
            .source_connections
            .values()
            .chain(self.target_connections.values())
            .chain(self.flows.values())
            .map(|o| o.seq);
        objects
            .chain(self.datasets.values().map(|d| d.seq))
            .chain(self.mapping_sets.values().map(|m| m.seq))
            .max()
            .unwrap_or(0)
    }

    /// The state file's part.
    pub(crate) fn persisted(&self) -> PersistedDataflows {
        let objects = |map: &HashMap<String, FlowObject>| {
            in_creation_order(map, |o| o.seq)
                .into_iter()
                .cloned()
                .collect()
        };
        PersistedDataflows {
            datasets: in_creation_order(&self.datasets, |d| d.seq)
                .into_iter()
                .cloned()
                .collect(),
            source_connections: objects(&self.source_connections),
            target_connections: objects(&self.target_connections),
            mapping_sets: in_creation_order(&self.mapping_sets, |m| m.seq)
                .into_iter()
                .cloned()
                .collect(),
            flows: objects(&self.flows),
        }
    }

    /// Rebuild from the state file's part.
    pub(crate) fn restore(&mut self, persisted: PersistedDataflows) {
        let by_id = |objects: Vec<FlowObject>| {
            objects
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect::<HashMap<_, _>>()
        };
        self.datasets = persisted
            .datasets
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        self.source_connections = by_id(persisted.source_connections);
        self.target_connections = by_id(persisted.target_connections);
        self.mapping_sets = persisted
            .mapping_sets
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        self.flows = by_id(persisted.flows);
    }

    /// Flows that reference `id` in `field` (`sourceConnectionIds`, `targetConnectionIds`), in creation order.
    pub(crate) fn flows_referencing(&self, field: &str, id: &str) -> Vec<String> {
        in_creation_order(&self.flows, |f| f.seq)
            .into_iter()
            .filter(|flow| {
                flow.fields
                    .get(field)
                    .and_then(Value::as_array)
                    .is_some_and(|ids| ids.iter().any(|v| v == id))
            })
            .map(|flow| flow.id.clone())
            .collect()
    }
}

/// A Flow Service problem for the dataflow routes. It has the envelope of every other Flow problem
/// (reference §2.5), plus what the shared one cannot say: `report.type` naming the resource kind of a not-found
/// id (`flows`, `sourceConnections`, …), as the documented `FLOW-1439-404` example does.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) title: &'static str,
    pub(crate) message: String,
    /// `(report.type, report.id)` of a not-found resource.
    pub(crate) resource: Option<(&'static str, String)>,
}

impl Problem {
    /// A `400` with this catalogue code.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            title: "Invalid request",
            message: message.into(),
            resource: None,
        }
    }

    /// A malformed or invalid body: `FLOW-1000-400`, the code the base connections already use for it.
    pub(crate) fn invalid_body(detail: impl std::fmt::Display) -> Self {
        Self::bad_request("1000", format!("The request body is invalid: {detail}"))
    }

    /// Not found in the caller's org and sandbox. Flows answer `1439-404` as the documented example shows,
    /// every other kind the generic `1101-404`.
    pub(crate) fn not_found(kind: &'static str, id: &str) -> Self {
        let code = if kind == "flows" { "1439" } else { "1101" };
        Self {
            status: StatusCode::NOT_FOUND,
            code,
            title: "Resource not found",
            message: format!(
                "The requested {kind} resource {id} is not found. Verify the resource ID before trying again."
            ),
            resource: Some((kind, id.to_owned())),
        }
    }

    /// `1404-412`: a stale `If-Match`.
    pub(crate) fn version_mismatch(supplied: &str, current: &str) -> Self {
        Self {
            status: StatusCode::PRECONDITION_FAILED,
            code: "1404",
            title: "Version not matching",
            message: format!(
                "The supplied version '{supplied}' does not match the current version on entity '{current}'. \
                 Make sure the supplied version matches the current version of the entity and try again."
            ),
            resource: None,
        }
    }

    /// `1455-400`: a PATCH document that is not a valid patch for this kind.
    pub(crate) fn invalid_patch(detail: impl std::fmt::Display) -> Self {
        Self::bad_request(
            "1455",
            format!("An error has occurred while validating patch instructions: {detail}"),
        )
    }

    /// The body, with `report.request-id` set to the current request's id.
    pub(crate) fn body(&self) -> Value {
        let resource = self
            .resource
            .as_ref()
            .map(|(kind, id)| (*kind, id.as_str()));
        flow_problem_body(self.status, self.code, self.title, &self.message, resource)
    }
}

impl From<Problem> for ApiError {
    /// For callers that answer with the shared error type (the base connection delete). `report.type` is lost,
    /// so this is only for problems without a resource.
    fn from(problem: Problem) -> Self {
        ApiError::Flow(FlowServiceProblem {
            status: problem.status,
            code: problem.code,
            title: problem.title,
            message: problem.message,
            resource_id: None,
        })
    }
}

/// Everything a dataflow route answers with instead of success.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The gateway's or the shared Flow checks (headers, query, body) refused the request.
    Api(ApiError),
    /// A dataflow-specific Flow problem.
    Flow(Problem),
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<FlowServiceProblem> for Refusal {
    fn from(error: FlowServiceProblem) -> Self {
        Self::Api(error.into())
    }
}

impl From<Problem> for Refusal {
    fn from(problem: Problem) -> Self {
        Self::Flow(problem)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Api(error) => error.into_response(),
            Self::Flow(problem) => (problem.status, Json(problem.body())).into_response(),
        }
    }
}

/// The genuine not-found answer of a dataflow item route, for injected 404 faults (`None`: not such a route).
pub(crate) fn genuine_not_found(route: &str, id: &str) -> Option<Response> {
    let kind = match route {
        super::source_target::SOURCE_CONNECTION_ROUTE => "sourceConnections",
        super::source_target::TARGET_CONNECTION_ROUTE => "targetConnections",
        super::flows::FLOW_ROUTE | super::flows::FLOW_ACTION_ROUTE => "flows",
        super::runs::RUN_ROUTE => "runs",
        super::mapping::MAPPING_SET_ROUTE => "mappingSets",
        super::catalog::DATASET_ROUTE => return Some(catalog::not_found(id).into_response()),
        _ => return None,
    };
    Some(Refusal::Flow(Problem::not_found(kind, id)).into_response())
}

/// Check `If-Match` against the stored etag: missing → `1403-400`, stale → `1404-412`; `*` matches any.
pub(crate) fn check_if_match(headers: &HeaderMap, etag: &str) -> Result<(), Refusal> {
    let if_match = header_text(headers, header::IF_MATCH.as_str())
        .ok_or_else(FlowServiceProblem::if_match_missing)?;
    if if_match != "*" && bare_etag(if_match) != bare_etag(etag) {
        return Err(Problem::version_mismatch(if_match, bare_etag(etag)).into());
    }
    Ok(())
}

/// A JSON Patch (RFC 6902) document as the Flow routes accept it: an array or a single operation, `op` in any
/// case, limited to add/replace/remove on the paths `patchable` allows; a path under `/connectionSpec` is
/// `1414-400`, any other `1455-400`.
pub(crate) fn parse_patch(
    document: Value,
    patchable: impl Fn(&str) -> bool,
) -> Result<json_patch::Patch, Problem> {
    normalize_patch(document, Problem::invalid_patch, |path| {
        if path == "/connectionSpec" || path.starts_with("/connectionSpec/") {
            return Err(Problem::bad_request(
                "1414",
                "The connection spec of a connection cannot be updated.",
            ));
        }
        if !patchable(path) {
            return Err(Problem::invalid_patch(format!(
                "path '{path}' cannot be updated"
            )));
        }
        Ok(())
    })
}

/// `201 {id, etag}` with `Location: <public-url><collection route>/<id>`.
pub(crate) fn created(public_url: &str, collection_route: &str, object: &FlowObject) -> Response {
    let mut response = (
        StatusCode::CREATED,
        Json(json!({ "id": object.id, "etag": object.etag })),
    )
        .into_response();
    let location = format!("{public_url}{collection_route}/{}", object.id);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The shared listing answers with `_links.next.href` relative to `/connections`; point it at this collection
/// (`/flows`, `/sourceConnections`, …) instead.
pub(crate) fn relink(mut page: Value, collection: &str) -> Value {
    if let Some(href) = page.pointer_mut("/_links/next/href")
        && let Some(text) = href.as_str()
        && let Some(rest) = text.strip_prefix("/connections?")
    {
        *href = json!(format!("{collection}?{rest}"));
    }
    page
}

/// A required non-empty string field of a create body.
pub(crate) fn required_text(body: &Map<String, Value>, field: &str) -> Result<String, Problem> {
    match body.get(field) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(Problem::invalid_body(format!("'{field}' is required")))
        }
        Some(_) => Err(Problem::invalid_body(format!("'{field}' must be a string"))),
    }
}

/// `connectionSpec`/`flowSpec` with the required id: missing or not `expected` → `1413-400`; version
/// defaults to `"1.0"`.
pub(crate) fn spec_reference(
    body: &Map<String, Value>,
    field: &str,
    expected: &[&str],
) -> Result<Value, Problem> {
    let spec = body.get(field);
    let Some(id) = spec.and_then(|s| s.get("id")).and_then(Value::as_str) else {
        return Err(Problem::bad_request(
            "1413",
            format!(
                "The provided spec id is invalid: {field}.id is missing. Provide a valid spec id and try again."
            ),
        ));
    };
    if !expected.contains(&id) {
        return Err(Problem::bad_request(
            "1413",
            format!(
                "The provided spec id is invalid: unknown {field} id '{id}'. Provide a valid spec id and try again."
            ),
        ));
    }
    let version = match spec.and_then(|s| s.get("version")) {
        None | Some(Value::Null) => "1.0".to_owned(),
        Some(Value::String(v)) => v.clone(),
        Some(_) => {
            return Err(Problem::invalid_body(format!(
                "'{field}.version' must be a string"
            )));
        }
    };
    Ok(json!({ "id": id, "version": version }))
}

/// The JSON object of a create body (`1405` empty, `1400` malformed or not an object).
pub(crate) fn object_body(body: &axum::body::Bytes) -> Result<Map<String, Value>, Refusal> {
    match super::connections::parse_body(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(Problem::invalid_body("the body must be a JSON object").into()),
    }
}

/// What `GET /_emulator/state` adds: every dataset (with `records`), source and target connection, mapping set
/// (newest version, with `versions`), flow and run of every org and sandbox in creation order, and per inlet the
/// messages answered 200/207 that reached no dataset (`unroutedMessages`).
pub(crate) fn admin_state(store: &super::state::Store, now: i64) -> Value {
    let dataflow = &store.dataflow;
    let objects = |map: &HashMap<String, FlowObject>| -> Vec<Value> {
        in_creation_order(map, |o| o.seq)
            .into_iter()
            .map(FlowObject::render)
            .collect()
    };
    let datasets: Vec<Value> = in_creation_order(&dataflow.datasets, |d| d.seq)
        .into_iter()
        .map(StoredDataset::render_admin)
        .collect();
    let mapping_sets: Vec<Value> = in_creation_order(&dataflow.mapping_sets, |m| m.seq)
        .into_iter()
        .map(|set| {
            let mut object = set.render(set.latest());
            object["imsOrgId"] = json!(set.org_id);
            object["sandboxName"] = json!(set.sandbox_name);
            object["versions"] = json!(set.versions.len());
            object
        })
        .collect();
    let flows: Vec<Value> = in_creation_order(&dataflow.flows, |f| f.seq)
        .into_iter()
        .map(|flow| super::flows::render(store, flow, now))
        .collect();
    let runs: Vec<Value> = in_creation_order(&dataflow.runs, |r| r.seq)
        .into_iter()
        .map(|run| run.render(now))
        .collect();
    json!({
        "datasets": datasets,
        "sourceConnections": objects(&dataflow.source_connections),
        "targetConnections": objects(&dataflow.target_connections),
        "mappingSets": mapping_sets,
        "flows": flows,
        "runs": runs,
        "unroutedMessages": dataflow.unrouted,
    })
}
