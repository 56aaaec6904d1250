//! Catalog datasets (reference `flow-service-dataflow.md` §3): `GET /data/foundation/catalog/dataSets/{id}` in
//! Adobe's shape (an object keyed by the dataset id), and the admin route that seeds datasets, since the operator
//! reads datasets but never creates them. The emulator starts with one demo dataset (see [`demo_dataset`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::app::{AppState, now_ms};
use super::collections::{Scoped, query_values};
use super::config::DEMO_ORG_ID;
use super::connections::authorize;
use super::dataflows::Refusal;
use super::errors::current_request_id;

/// `GET` one dataset.
pub(crate) const DATASET_ROUTE: &str = "/data/foundation/catalog/dataSets/{id}";
/// `POST` seeds a dataset (admin API).
pub(crate) const ADMIN_DATASETS_ROUTE: &str = "/_emulator/datasets";
/// The content type of an XDM schema reference (reference §3.1, §7).
pub const XDM_CONTENT_TYPE: &str = "application/vnd.adobe.xed-full+json;version=1";
/// The demo dataset: the id of the design's `StreamingDataflow` example, so that it works as written.
pub const DEMO_DATASET_ID: &str = "5c8c3c555033b814b69f947f";
/// Name of the demo dataset.
pub const DEMO_DATASET_NAME: &str = "Demo web events";
/// `$id` of the demo dataset's (made-up) XDM schema.
pub const DEMO_SCHEMA_ID: &str =
    "https://ns.adobe.com/demotenant/schemas/7f682c29f887512a897791e7161b90a1";
/// Sandbox of the demo dataset.
pub(crate) const DEMO_SANDBOX: &str = "prod";
/// `created`/`updated` of the demo dataset (2026-01-01T00:00:00Z): fixed, so that its GET never changes.
const DEMO_CREATED_MS: i64 = 1_767_225_600_000;

/// A dataset as the emulator stores it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredDataset {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) org_id: String,
    pub(crate) sandbox_name: String,
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    /// `{id, contentType}`.
    pub(crate) schema_ref: Value,
    /// Catalog tags, e.g. `{"unifiedProfile": ["enabled:true"]}`.
    #[serde(default)]
    pub(crate) tags: Map<String, Value>,
    pub(crate) created: i64,
    pub(crate) updated: i64,
    /// Records that reached the dataset through a flow: a delivery record, not persisted.
    #[serde(skip)]
    pub(crate) records: u64,
}

impl StoredDataset {
    /// The `$id` of the dataset's schema.
    pub(crate) fn schema_id(&self) -> &str {
        self.schema_ref
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The object Catalog shows under the dataset's id.
    pub(crate) fn render(&self) -> Value {
        let mut object = json!({
            "name": self.name,
            "imsOrg": self.org_id,
            "sandboxId": super::state::sandbox_id(&self.org_id, &self.sandbox_name),
            "tags": self.tags,
            "version": "1.0.0",
            "created": self.created,
            "updated": self.updated,
            "viewId": self.id,
            "files": format!("@/dataSetFiles?dataSetId={}", self.id),
            "schemaRef": self.schema_ref,
        });
        if let Some(description) = &self.description {
            object["description"] = json!(description);
        }
        object
    }

    /// The admin view: the Catalog object plus `id`, `imsOrgId`, `sandboxName` and `records`.
    pub(crate) fn render_admin(&self) -> Value {
        let mut object = self.render();
        object["id"] = json!(self.id);
        object["imsOrgId"] = json!(self.org_id);
        object["sandboxName"] = json!(self.sandbox_name);
        object["records"] = json!(self.records);
        object
    }
}

/// The dataset every emulator starts with unless told not to, in the demo org's `prod` sandbox.
pub(crate) fn demo_dataset() -> StoredDataset {
    StoredDataset {
        id: DEMO_DATASET_ID.to_owned(),
        seq: 0,
        org_id: DEMO_ORG_ID.to_owned(),
        sandbox_name: DEMO_SANDBOX.to_owned(),
        name: DEMO_DATASET_NAME.to_owned(),
        description: Some("Seeded by aep-emulator for trying StreamingDataflow".to_owned()),
        schema_ref: json!({ "id": DEMO_SCHEMA_ID, "contentType": XDM_CONTENT_TYPE }),
        tags: Map::new(),
        created: DEMO_CREATED_MS,
        updated: DEMO_CREATED_MS,
        records: 0,
    }
}

/// Catalog's 404. The reference documents the status only, so the body is the emulator's choice: a problem
/// body in the Flow envelope's spirit, with its own `type`.
pub(crate) fn not_found(id: &str) -> Response {
    let message = format!("Dataset {id} was not found.");
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "type": "https://ns.adobe.com/aep/errors/CAT-404",
            "title": "Not Found",
            "status": 404,
            "detail": message,
            "report": { "detailed-message": message, "request-id": current_request_id(), "id": id },
        })),
    )
        .into_response()
}

/// `GET /catalog/dataSets/{id}[?properties=a,b]` → 200 `{"<id>": {…}}`, with only the listed properties when
/// `properties` is given.
pub(crate) async fn get_one(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let caller = authorize(&app, &headers, false)?;
    let store = app.store.lock().expect("store lock");
    let Some(dataset) = store
        .dataflow
        .datasets
        .get(&id)
        .filter(|d| d.in_scope(&caller))
    else {
        return Ok(not_found(&id));
    };
    let mut object = dataset.render();
    let properties: Vec<String> = query_values(query.as_deref(), "properties")
        .into_iter()
        .flat_map(|value| {
            value
                .split(',')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    if !properties.is_empty()
        && let Value::Object(map) = &mut object
    {
        map.retain(|key, _| properties.iter().any(|p| p == key));
    }
    Ok(Json(json!({ id: object })).into_response())
}

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Ids the admin API accepts: what fits in a URL path segment unescaped.
fn valid_dataset_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `POST /_emulator/datasets` with `{"id"?, "name", "schemaRef": {"id", "contentType"?}, "sandbox"?,
/// "imsOrgId"?, "description"?, "tags"?}` → 201 with the stored dataset (admin view). The id defaults to 24 random
/// hex digits like Adobe's, the org to the first configured client's, the sandbox to the first configured one.
pub(crate) async fn seed(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
    let request: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return admin_error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
        Err(error) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                format!("body is not JSON: {error}"),
            );
        }
    };
    let text = |field: &str| {
        request
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let Some(name) = text("name").filter(|n| !n.trim().is_empty()) else {
        return admin_error(StatusCode::BAD_REQUEST, "'name' is required");
    };
    let schema_ref = request.get("schemaRef");
    let Some(schema_id) = schema_ref
        .and_then(|s| s.get("id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return admin_error(StatusCode::BAD_REQUEST, "'schemaRef.id' is required");
    };
    let content_type = schema_ref
        .and_then(|s| s.get("contentType"))
        .and_then(Value::as_str)
        .unwrap_or(XDM_CONTENT_TYPE);
    let id = text("id").unwrap_or_else(|| hex::encode(rand::random::<[u8; 12]>()));
    if !valid_dataset_id(&id) {
        return admin_error(
            StatusCode::BAD_REQUEST,
            format!("dataset id {id:?} must be 1-64 letters, digits, '-' or '_'"),
        );
    }
    let sandbox = text("sandbox").unwrap_or_else(|| app.sandboxes[0].clone());
    if !app.sandboxes.contains(&sandbox) {
        return admin_error(
            StatusCode::BAD_REQUEST,
            format!("sandbox {sandbox:?} is not configured"),
        );
    }
    let org_id = text("imsOrgId").unwrap_or_else(|| app.clients[0].org_id.clone());
    if !org_id.contains('@') {
        return admin_error(
            StatusCode::BAD_REQUEST,
            format!("imsOrgId {org_id:?} is not an IMS org id"),
        );
    }
    let tags = match request.get("tags") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(tags)) => tags.clone(),
        Some(_) => return admin_error(StatusCode::BAD_REQUEST, "'tags' must be an object"),
    };
    let now = now_ms();
    let (stored, generation) = {
        let mut store = app.store.lock().expect("store lock");
        if store.dataflow.datasets.contains_key(&id) {
            return admin_error(StatusCode::CONFLICT, format!("dataset {id} already exists"));
        }
        let dataset = StoredDataset {
            id: id.clone(),
            seq: store.take_seq(),
            org_id,
            sandbox_name: sandbox,
            name,
            description: text("description"),
            schema_ref: json!({ "id": schema_id, "contentType": content_type }),
            tags,
            created: now,
            updated: now,
            records: 0,
        };
        let stored = dataset.render_admin();
        store.dataflow.datasets.insert(id, dataset);
        store.generation += 1;
        (stored, store.generation)
    };
    if let Err(error) = app.persist(generation).await {
        return admin_error(StatusCode::INTERNAL_SERVER_ERROR, error.message);
    }
    (StatusCode::CREATED, Json(stored)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_dataset_has_adobe_shapes() {
        let demo = demo_dataset();
        assert_eq!(demo.id.len(), 24);
        assert!(demo.id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(demo.schema_id().starts_with("https://ns.adobe.com/"));
        assert_eq!(demo.render()["schemaRef"]["contentType"], XDM_CONTENT_TYPE);
        assert!(demo.render().get("id").is_none(), "Catalog keys by id");
    }

    #[test]
    fn dataset_ids_must_fit_a_path_segment() {
        assert!(valid_dataset_id(DEMO_DATASET_ID));
        assert!(!valid_dataset_id("a/b"));
        assert!(!valid_dataset_id(""));
    }
}
