//! Data Prep mapping sets under `/data/foundation/conversion/mappingSets` (reference `flow-service-dataflow.md`
//! §7, §12.4): create (200, version 0), read (a version with `?version=N`), list, update with `PUT` (a new
//! version each time; the old ones stay readable) and delete (aepp's, unverified against Adobe).
//!
//! Both body dialects are accepted: the API reference's (`outputSchema.schemaRef` with `source`/`destination`)
//! and the tutorial's legacy one (`xdmSchema` with `sourceAttribute`/`destinationXdmPath`). Reads carry both
//! naming sets, as Adobe's do.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::app::{AppState, now_ms};
use super::catalog::XDM_CONTENT_TYPE;
use super::collections::{self, commit, find, find_mut, query_value, visible};
use super::connections::authorize;
use super::dataflows::{Problem, Refusal, object_body};

/// Mapping sets.
pub(crate) const MAPPING_SETS_ROUTE: &str = "/data/foundation/conversion/mappingSets";
/// One mapping set.
pub(crate) const MAPPING_SET_ROUTE: &str = "/data/foundation/conversion/mappingSets/{id}";
/// `sourceType` values (the spec's enum).
const SOURCE_TYPES: [&str; 3] = ["ATTRIBUTE", "EXPRESSION", "STATIC"];
/// Page size of `GET /mappingSets` without `limit`.
const DEFAULT_LIMIT: usize = 100;

/// One version of a mapping set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MappingVersion {
    pub(crate) version: u64,
    pub(crate) modified_date: i64,
    pub(crate) modified_by: String,
    /// `{schemaRef: {id, contentType}}`.
    pub(crate) output_schema: Value,
    pub(crate) mappings: Vec<Value>,
}

/// A mapping set with every version it has had, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredMappingSet {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) org_id: String,
    pub(crate) sandbox_name: String,
    pub(crate) created_date: i64,
    pub(crate) created_by: String,
    pub(crate) versions: Vec<MappingVersion>,
}

impl StoredMappingSet {
    /// The newest version.
    pub(crate) fn latest(&self) -> &MappingVersion {
        self.versions.last().expect("a mapping set has a version")
    }

    /// Version `version`, if it exists.
    pub(crate) fn version(&self, version: u64) -> Option<&MappingVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The schema `$id` a version maps to.
    pub(crate) fn schema_id(version: &MappingVersion) -> &str {
        version
            .output_schema
            .pointer("/schemaRef/id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A version as `GET /mappingSets/{id}` shows it.
    pub(crate) fn render(&self, version: &MappingVersion) -> Value {
        json!({
            "id": self.id,
            "version": version.version,
            "createdDate": self.created_date,
            "modifiedDate": version.modified_date,
            "createdBy": self.created_by,
            "modifiedBy": version.modified_by,
            "outputSchema": version.output_schema,
            "xdmSchema": Self::schema_id(version),
            "mappings": version.mappings,
        })
    }

    /// The create/update answer: the set's metadata only.
    fn summary(&self) -> Value {
        let latest = self.latest();
        json!({
            "id": self.id,
            "version": latest.version,
            "createdDate": self.created_date,
            "modifiedDate": latest.modified_date,
            "createdBy": self.created_by,
            "modifiedBy": latest.modified_by,
        })
    }
}

/// A text field of a mapping under either of its names.
fn either<'a>(mapping: &'a Map<String, Value>, names: [&str; 2]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| mapping.get(*name).and_then(Value::as_str))
        .filter(|text| !text.is_empty())
}

/// Validate a create/update body in either dialect: `(outputSchema, mappings)` with both naming sets filled.
fn validate(body: &Map<String, Value>) -> Result<(Value, Vec<Value>), Problem> {
    let schema_id = body
        .get("outputSchema")
        .and_then(|o| o.pointer("/schemaRef/id"))
        .or_else(|| body.get("xdmSchema"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Problem::invalid_body("'outputSchema.schemaRef.id' (or legacy 'xdmSchema') is required")
        })?;
    let content_type = body
        .get("outputSchema")
        .and_then(|o| o.pointer("/schemaRef/contentType"))
        .and_then(Value::as_str)
        .unwrap_or(XDM_CONTENT_TYPE);
    let Some(mappings) = body.get("mappings").and_then(Value::as_array) else {
        return Err(Problem::invalid_body("'mappings' must be an array"));
    };
    let mut normalized = Vec::with_capacity(mappings.len());
    for (index, mapping) in mappings.iter().enumerate() {
        let Some(fields) = mapping.as_object() else {
            return Err(Problem::invalid_body(format!(
                "mappings[{index}] must be an object"
            )));
        };
        let source = either(fields, ["source", "sourceAttribute"]);
        let destination = either(fields, ["destination", "destinationXdmPath"]);
        let (Some(source), Some(destination)) = (source, destination) else {
            return Err(Problem::invalid_body(format!(
                "mappings[{index}] needs a source and a destination"
            )));
        };
        let source_type = fields
            .get("sourceType")
            .and_then(Value::as_str)
            .unwrap_or("ATTRIBUTE")
            .to_ascii_uppercase();
        if !SOURCE_TYPES.contains(&source_type.as_str()) {
            return Err(Problem::invalid_body(format!(
                "mappings[{index}].sourceType must be one of {SOURCE_TYPES:?}"
            )));
        }
        let mut stored = fields.clone();
        stored.insert("sourceType".to_owned(), json!(source_type));
        for (name, value) in [
            ("source", source),
            ("sourceAttribute", source),
            ("destination", destination),
            ("destinationXdmPath", destination),
        ] {
            stored.insert(name.to_owned(), json!(value));
        }
        stored
            .entry("id")
            .or_insert_with(|| json!(uuid::Uuid::new_v4().simple().to_string()));
        normalized.push(Value::Object(stored));
    }
    let output_schema = json!({ "schemaRef": { "id": schema_id, "contentType": content_type } });
    Ok((output_schema, normalized))
}

/// The collection's name in `report.type`.
const KIND: &str = "mappingSets";

/// `POST /mappingSets` → **200** (not 201) `{id, version: 0, createdDate, modifiedDate, createdBy, modifiedBy}`;
/// the id is 32 hex digits without dashes, as Adobe's.
pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let caller = authorize(&app, &headers, true)?;
    let (output_schema, mappings) = validate(&object_body(&body)?)?;
    let now = now_ms();
    let summary = commit(&app, |store| {
        let set = StoredMappingSet {
            id: uuid::Uuid::new_v4().simple().to_string(),
            seq: store.take_seq(),
            org_id: caller.org_id.clone(),
            sandbox_name: caller.sandbox.clone(),
            created_date: now,
            created_by: caller.client_id.clone(),
            versions: vec![MappingVersion {
                version: 0,
                modified_date: now,
                modified_by: caller.client_id.clone(),
                output_schema,
                mappings,
            }],
        };
        let summary = set.summary();
        store.dataflow.mapping_sets.insert(set.id.clone(), set);
        Ok(summary)
    })
    .await?;
    Ok(Json(summary).into_response())
}

/// A query parameter the Data Prep spec does not declare: the Flow Service catalogue's `1451-400` ("Invalid
/// params … provided in query params"), as the Flow Service lists answer, unless `--lenient`.
fn check_known(app: &AppState, name: &str) -> Result<(), Problem> {
    if app.lenient {
        return Ok(());
    }
    Err(Problem::bad_request(
        "1451",
        format!("Invalid params {name} provided in query params."),
    ))
}

/// `GET /mappingSets/{id}[?version=N]` → 200 with that version (the newest by default).
pub(crate) async fn get_one(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let caller = authorize(&app, &headers, false)?;
    for (name, _) in url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()) {
        if !matches!(name.as_ref(), "version" | "expandSchema") {
            check_known(&app, &name)?;
        }
    }
    let wanted = query_value(query.as_deref(), "version").map(|value| value.parse::<u64>().ok());
    let store = app.store.lock().expect("store lock");
    let set = find(&store.dataflow.mapping_sets, &id, &caller, KIND)?;
    let version = match wanted {
        None => Some(set.latest()),
        Some(Some(number)) => set.version(number),
        Some(None) => None,
    }
    .ok_or_else(|| {
        Problem::bad_request("1412", format!("Mapping set {id} has no such version."))
    })?;
    Ok(Json(set.render(version)).into_response())
}

/// `GET /mappingSets?start=&limit=&name=` → `{data, _page: {count, limit}, _links}`. The spec marks `start` and
/// `limit` required; the emulator defaults them (0 and 100).
pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let caller = authorize(&app, &headers, false)?;
    let mut start = 0usize;
    let mut limit = DEFAULT_LIMIT;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let number = || {
            value.trim().parse::<usize>().map_err(|_| {
                Problem::invalid_body(format!("query parameter '{name}' must be a number"))
            })
        };
        match name.as_ref() {
            "start" => start = number()?,
            "limit" => limit = number()?.max(1),
            // Declared by the Data Prep spec; not modelled (a mapping set has no name here, one order).
            "name" | "orderBy" | "expandSchema" => {}
            other => check_known(&app, other)?,
        }
    }
    let store = app.store.lock().expect("store lock");
    let data: Vec<Value> = visible(&store.dataflow.mapping_sets, &caller)
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|s| s.render(s.latest()))
        .collect();
    Ok(Json(json!({
        "data": data,
        "_page": { "count": data.len(), "limit": limit },
        "_links": {},
    }))
    .into_response())
}

/// `PUT /mappingSets/{id}` with a full body → 200 with the new version (the previous number plus one).
pub(crate) async fn update(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let caller = authorize(&app, &headers, true)?;
    let (output_schema, mappings) = validate(&object_body(&body)?)?;
    let now = now_ms();
    let rendered = commit(&app, |store| {
        let set = find_mut(&mut store.dataflow.mapping_sets, &id, &caller, KIND)?;
        let version = MappingVersion {
            version: set.latest().version + 1,
            modified_date: now,
            modified_by: caller.client_id.clone(),
            output_schema,
            mappings,
        };
        set.versions.push(version);
        Ok(set.render(set.latest()))
    })
    .await?;
    Ok(Json(rendered).into_response())
}

/// `DELETE /mappingSets/{id}` → 204 (aepp's call; not in Adobe's spec). Flows that use the set keep their
/// reference.
pub(crate) async fn delete(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    collections::delete(
        &app,
        &id,
        &headers,
        KIND,
        |store| &mut store.mapping_sets,
        |_| Ok(()),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_are_read_and_carry_both_naming_sets() {
        let current = json!({
            "outputSchema": {"schemaRef": {"id": "https://ns.adobe.com/t/schemas/s"}},
            "mappings": [{"sourceType": "attribute", "source": "id", "destination": "_id"}]
        });
        let (schema, mappings) = validate(current.as_object().unwrap()).unwrap();
        assert_eq!(schema["schemaRef"]["contentType"], XDM_CONTENT_TYPE);
        assert_eq!(mappings[0]["destinationXdmPath"], "_id");
        assert_eq!(mappings[0]["sourceType"], "ATTRIBUTE");
        let legacy = json!({
            "xdmSchema": "https://ns.adobe.com/t/schemas/s", "xdmVersion": "1.0",
            "mappings": [{"sourceAttribute": "firstName", "destinationXdmPath": "person.name.firstName"}]
        });
        let (schema, mappings) = validate(legacy.as_object().unwrap()).unwrap();
        assert_eq!(
            schema["schemaRef"]["id"],
            "https://ns.adobe.com/t/schemas/s"
        );
        assert_eq!(mappings[0]["source"], "firstName");
        assert!(validate(json!({"mappings": []}).as_object().unwrap()).is_err());
    }
}
