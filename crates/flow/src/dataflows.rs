//! Source connections, target connections and flows: the types, and the pure functions that turn them
//! into request bodies and back.
//!
//! Bodies follow the HTTP API streaming chain of the dataflow reference: a source connection on the
//! streaming spec [`STREAMING_CONNECTION_SPEC_ID`], a Data Lake target connection
//! ([`DATA_LAKE_CONNECTION_SPEC_ID`]) bound to a dataset, and a flow between them, either XDM without
//! transformations ([`XDM_FLOW_SPEC_ID`]) or raw JSON through a Data Prep mapping
//! ([`RAW_FLOW_SPEC_ID`]). Parsing is tolerant, as for connections: unknown fields are ignored and
//! missing optional ones become `None`.

use serde_json::{Value, json};

use super::catalog::{Dataset, SchemaRef};
use super::connections::{
    self, ConnectionUpdate, STREAMING_CONNECTION_SPEC_ID, STREAMING_CONNECTION_SPEC_VERSION,
};
use super::listing::{number_or_numeric_text, text_at, texts_at};

/// The Data Lake target connection spec: the target of every streaming dataflow.
pub const DATA_LAKE_CONNECTION_SPEC_ID: &str = "c604ff05-7f1a-43c0-8e18-33bf874cb11c";
/// The version of the Data Lake connection spec the operator creates.
pub const DATA_LAKE_CONNECTION_SPEC_VERSION: &str = "1.0";
/// The flow spec of an HTTP API flow without transformations: the inlet receives XDM envelopes.
pub const XDM_FLOW_SPEC_ID: &str = "d8a6f005-7eaf-4153-983e-e8574508b877";
/// The flow spec of an HTTP API flow with a `Mapping` transformation: the inlet receives raw JSON.
pub const RAW_FLOW_SPEC_ID: &str = "c1a19761-d2c7-4702-b9fa-fe91f0613e81";
/// The version of both flow specs the operator creates.
pub const FLOW_SPEC_VERSION: &str = "1.0";
/// The only transformation name the raw flow spec accepts.
pub const MAPPING_TRANSFORMATION_NAME: &str = "Mapping";

/// A source connection to create: the streaming base connection it reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSourceConnection {
    /// The display name; the operator looks the connection up by it after an ambiguous failure.
    pub name: String,
    /// An optional description.
    pub description: Option<String>,
    /// The streaming base connection (`POST /connections`) whose inlet feeds this source.
    pub base_connection_id: String,
}

/// A source connection as Flow Service returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConnection {
    /// The source connection id (a UUID).
    pub id: String,
    /// The display name.
    pub name: String,
    /// The description, when it has one.
    pub description: Option<String>,
    /// The base connection it reads from (`baseConnectionId`, else
    /// `inheritedAttributes.baseConnection.id`).
    pub base_connection_id: Option<String>,
    /// `enabled`, `disabled` or a transitional state (`inProgress`, `updating`, …).
    pub state: String,
    /// The opaque version, inner double quotes included.
    pub etag: String,
    /// The connection spec (the streaming spec for the operator's own).
    pub connection_spec_id: String,
    /// Epoch milliseconds.
    pub created_at: Option<i64>,
    /// Epoch milliseconds.
    pub updated_at: Option<i64>,
}

/// A Data Lake target connection to create: the dataset the data lands in, and its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTargetConnection {
    /// The display name; the operator looks the connection up by it after an ambiguous failure.
    pub name: String,
    /// An optional description.
    pub description: Option<String>,
    /// `params.dataSetId`: the dataset the data lands in.
    pub dataset_id: String,
    /// `data.schema`: the dataset's schema (`id` is the `$id` URI; the content type is sent as
    /// `data.schema.version`).
    pub schema: SchemaRef,
}

impl NewTargetConnection {
    /// The target connection of `dataset`, with the dataset's own schema reference, so that the
    /// target, the mapping and the dataset cannot disagree on the schema.
    pub fn for_dataset(name: String, description: Option<String>, dataset: &Dataset) -> Self {
        Self {
            name,
            description,
            dataset_id: dataset.id.clone(),
            schema: dataset.schema_ref.clone(),
        }
    }
}

/// A target connection as Flow Service returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConnection {
    /// The target connection id (a UUID).
    pub id: String,
    /// The display name.
    pub name: String,
    /// The description, when it has one.
    pub description: Option<String>,
    /// `enabled`, `disabled` or a transitional state.
    pub state: String,
    /// The opaque version, inner double quotes included.
    pub etag: String,
    /// The connection spec (the Data Lake spec for the operator's own).
    pub connection_spec_id: String,
    /// `params.dataSetId`.
    pub dataset_id: Option<String>,
    /// `data.schema.id`.
    pub schema_id: Option<String>,
    /// `data.schema.version` (a content type string).
    pub schema_version: Option<String>,
    /// Epoch milliseconds.
    pub created_at: Option<i64>,
    /// Epoch milliseconds.
    pub updated_at: Option<i64>,
}

/// A Data Prep mapping set version, as a raw flow's `Mapping` transformation names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingRef {
    /// The mapping set id (32 hex characters in the reference).
    pub mapping_id: String,
    /// The mapping set version; 0 for a new set, one more after every `PUT`.
    pub mapping_version: u64,
}

/// What a new flow carries: XDM payloads as they are, or raw JSON through a mapping set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowKind {
    /// Flow spec [`XDM_FLOW_SPEC_ID`], no `transformations`.
    Xdm,
    /// Flow spec [`RAW_FLOW_SPEC_ID`] with one `Mapping` transformation.
    Raw(MappingRef),
}

/// A flow to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFlow {
    /// The display name; the operator looks the flow up by it after an ambiguous failure.
    pub name: String,
    /// An optional description.
    pub description: Option<String>,
    /// The source connection (one, as in every documented example).
    pub source_connection_id: String,
    /// The target connection (one, as in every documented example).
    pub target_connection_id: String,
    /// XDM or raw with a mapping.
    pub kind: FlowKind,
}

/// One transformation of a flow, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transformation {
    /// `Mapping` for the raw flow spec.
    pub name: String,
    /// `params.mappingId`, when present.
    pub mapping_id: Option<String>,
    /// `params.mappingVersion`, read whether Adobe wrote it as a number or a string.
    pub mapping_version: Option<u64>,
}

/// `lastRunDetails` of a flow: its latest run, once it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRunDetails {
    /// The run id.
    pub id: Option<String>,
    /// `success` or `failed`.
    pub state: Option<String>,
    /// Epoch milliseconds.
    pub started_at: Option<i64>,
    /// Epoch milliseconds.
    pub completed_at: Option<i64>,
}

/// `lastOperation` of a flow: the latest asynchronous change and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastOperation {
    /// `create` or `update`.
    pub operation: Option<String>,
    /// `status.value`, e.g. `completed`.
    pub status: Option<String>,
}

/// A flow as Flow Service returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The flow id (a UUID).
    pub id: String,
    /// The display name.
    pub name: String,
    /// The description, when it has one.
    pub description: Option<String>,
    /// [`XDM_FLOW_SPEC_ID`], [`RAW_FLOW_SPEC_ID`] or another spec.
    pub flow_spec_id: String,
    /// `enabled`, `disabled` or a transitional state (server-managed; never sent).
    pub state: String,
    /// The opaque version for `If-Match`, inner double quotes included.
    pub etag: String,
    /// `sourceConnectionIds`.
    pub source_connection_ids: Vec<String>,
    /// `targetConnectionIds`.
    pub target_connection_ids: Vec<String>,
    /// `inheritedAttributes.sourceConnections[].baseConnection.id`: the base connections the flow
    /// reads from (how aepp finds a flow's base connection).
    pub base_connection_ids: Vec<String>,
    /// `transformations`, empty for an XDM flow.
    pub transformations: Vec<Transformation>,
    /// `lastOperation`, when present.
    pub last_operation: Option<LastOperation>,
    /// `lastRunDetails`, absent until the first hourly run closes.
    pub last_run: Option<LastRunDetails>,
    /// Epoch milliseconds.
    pub created_at: Option<i64>,
    /// Epoch milliseconds.
    pub updated_at: Option<i64>,
}

impl Flow {
    /// The mapping of the flow's `Mapping` transformation, when it has one with both id and version.
    pub fn mapping(&self) -> Option<MappingRef> {
        self.transformations
            .iter()
            .find(|transformation| transformation.name == MAPPING_TRANSFORMATION_NAME)
            .and_then(|transformation| {
                Some(MappingRef {
                    mapping_id: transformation.mapping_id.clone()?,
                    mapping_version: transformation.mapping_version?,
                })
            })
    }
}

/// The fields of a flow the operator changes in place with `PATCH /flows/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowUpdate {
    /// `Some` replaces the name.
    pub name: Option<String>,
    /// `Some(Some(text))` sets the description, `Some(None)` removes it, `None` leaves it.
    pub description: Option<Option<String>>,
    /// `Some` replaces `/transformations/0` with this mapping version (after a mapping set `PUT`).
    pub mapping: Option<MappingRef>,
}

impl FlowUpdate {
    /// True when the update changes nothing (and must not be sent).
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.description.is_none() && self.mapping.is_none()
    }
}

/// The `POST /sourceConnections` body.
///
/// `data.format` is not sent: the newest HTTP API tutorial omits it and documents a 201, while the
/// sources that send it disagree on its value (`json`, `parquet_xdm`, `delimited`) and nothing says
/// it matters for an HTTP API source (reference §5 and open question 5). Omitting it avoids picking
/// one of several unverified values.
pub fn source_connection_body(request: &NewSourceConnection) -> Value {
    let mut body = json!({
        "name": request.name,
        "baseConnectionId": request.base_connection_id,
        "connectionSpec": {
            "id": STREAMING_CONNECTION_SPEC_ID,
            "version": STREAMING_CONNECTION_SPEC_VERSION,
        },
    });
    add_description(&mut body, request.description.as_deref());
    body
}

/// The `POST /targetConnections` body.
///
/// `data.format` is not sent, which the reference (§6) gives as one of its two recommendations: the
/// newest tutorial omits it, and the other sources disagree (`parquet_xdm`, `json`). The schema
/// version is the dataset's content type as Catalog returns it, so the target cannot disagree with
/// the dataset (the reference notes both `…;version=1` and `…;version=1.0` in use).
pub fn target_connection_body(request: &NewTargetConnection) -> Value {
    let mut body = json!({
        "name": request.name,
        "data": {
            "schema": {
                "id": request.schema.id,
                "version": request.schema.content_type,
            },
        },
        "params": { "dataSetId": request.dataset_id },
        "connectionSpec": {
            "id": DATA_LAKE_CONNECTION_SPEC_ID,
            "version": DATA_LAKE_CONNECTION_SPEC_VERSION,
        },
    });
    add_description(&mut body, request.description.as_deref());
    body
}

/// The `POST /flows` body. Never carries `state` (Flow Service answers `FLOW-1410-400`) nor
/// `scheduleParams` (streaming examples omit it).
pub fn flow_body(request: &NewFlow) -> Value {
    let flow_spec_id = match request.kind {
        FlowKind::Xdm => XDM_FLOW_SPEC_ID,
        FlowKind::Raw(_) => RAW_FLOW_SPEC_ID,
    };
    let mut body = json!({
        "name": request.name,
        "flowSpec": { "id": flow_spec_id, "version": FLOW_SPEC_VERSION },
        "sourceConnectionIds": [request.source_connection_id],
        "targetConnectionIds": [request.target_connection_id],
    });
    add_description(&mut body, request.description.as_deref());
    if let FlowKind::Raw(mapping) = &request.kind {
        body["transformations"] = json!([mapping_transformation(mapping)]);
    }
    body
}

/// The JSON Patch array of a `PATCH /flows/{id}`: name and description as for a connection, then
/// `replace /transformations/0` with the new mapping version.
pub fn flow_patch_operations(update: &FlowUpdate) -> Value {
    let mut operations = connections::patch_operations(&ConnectionUpdate {
        name: update.name.clone(),
        description: update.description.clone(),
    });
    if let (Some(mapping), Value::Array(operations)) = (&update.mapping, &mut operations) {
        operations.push(json!({
            "op": "replace",
            "path": "/transformations/0",
            "value": mapping_transformation(mapping),
        }));
    }
    operations
}

/// `{"name": "Mapping", "params": {"mappingId", "mappingVersion"}}`, the version as a number as in
/// every documented request.
fn mapping_transformation(mapping: &MappingRef) -> Value {
    json!({
        "name": MAPPING_TRANSFORMATION_NAME,
        "params": {
            "mappingId": mapping.mapping_id,
            "mappingVersion": mapping.mapping_version,
        },
    })
}

fn add_description(body: &mut Value, description: Option<&str>) {
    if let Some(description) = description {
        body["description"] = Value::String(description.to_owned());
    }
}

/// The common head of every Flow Service object: `id` (required), `name`, `description`, `state`,
/// `etag` (`version` stands in), and the timestamps.
struct Head {
    id: String,
    name: String,
    description: Option<String>,
    state: String,
    etag: String,
    created_at: Option<i64>,
    updated_at: Option<i64>,
}

/// `$kind { $field: $value, … }` with the [`Head`] fields taken from `$head`, so that the copy of the
/// common head into each object is written once.
macro_rules! with_head {
    ($head:expr, $kind:ident { $($field:ident $(: $value:expr)?),* $(,)? }) => {{
        let head: Head = $head;
        $kind {
            $($field $(: $value)?,)*
            id: head.id,
            name: head.name,
            description: head.description,
            state: head.state,
            etag: head.etag,
            created_at: head.created_at,
            updated_at: head.updated_at,
        }
    }};
}

fn head(item: &Value) -> Option<Head> {
    let text = |pointer: &str| text_at(item, pointer);
    Some(Head {
        id: text("/id").filter(|id| !id.is_empty())?,
        name: text("/name").unwrap_or_default(),
        // An empty description is how a cleared one comes back (see `connections::patch_operations`).
        description: text("/description").filter(|description| !description.is_empty()),
        state: text("/state").unwrap_or_default(),
        etag: text("/etag")
            .or_else(|| text("/version"))
            .unwrap_or_default(),
        created_at: item.get("createdAt").and_then(Value::as_i64),
        updated_at: item.get("updatedAt").and_then(Value::as_i64),
    })
}

/// One source connection item (of a GET-by-id's `items` or of a list page).
pub(crate) fn parse_source_connection(item: &Value) -> Option<SourceConnection> {
    Some(with_head!(
        head(item)?,
        SourceConnection {
            base_connection_id: text_at(item, "/baseConnectionId")
                .or_else(|| text_at(item, "/inheritedAttributes/baseConnection/id"))
                .filter(|id| !id.is_empty()),
            connection_spec_id: text_at(item, "/connectionSpec/id").unwrap_or_default(),
        }
    ))
}

/// One target connection item.
pub(crate) fn parse_target_connection(item: &Value) -> Option<TargetConnection> {
    Some(with_head!(
        head(item)?,
        TargetConnection {
            connection_spec_id: text_at(item, "/connectionSpec/id").unwrap_or_default(),
            dataset_id: text_at(item, "/params/dataSetId"),
            schema_id: text_at(item, "/data/schema/id"),
            schema_version: text_at(item, "/data/schema/version"),
        }
    ))
}

/// One flow item.
pub(crate) fn parse_flow(item: &Value) -> Option<Flow> {
    let head = head(item)?;
    let base_connection_ids = item
        .pointer("/inheritedAttributes/sourceConnections")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|source| text_at(source, "/baseConnection/id"))
        .filter(|id| !id.is_empty())
        .collect();
    let transformations = item
        .get("transformations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|transformation| Transformation {
            name: text_at(transformation, "/name").unwrap_or_default(),
            mapping_id: text_at(transformation, "/params/mappingId"),
            mapping_version: number_or_numeric_text(
                transformation.pointer("/params/mappingVersion"),
            ),
        })
        .collect();
    let last_operation = item.get("lastOperation").map(|operation| LastOperation {
        operation: text_at(operation, "/operation"),
        status: text_at(operation, "/status/value"),
    });
    let last_run = item.get("lastRunDetails").map(|run| LastRunDetails {
        id: text_at(run, "/id"),
        state: text_at(run, "/state"),
        started_at: run.get("startedAtUTC").and_then(Value::as_i64),
        completed_at: run.get("completedAtUTC").and_then(Value::as_i64),
    });
    Some(with_head!(
        head,
        Flow {
            flow_spec_id: text_at(item, "/flowSpec/id").unwrap_or_default(),
            source_connection_ids: texts_at(item, "/sourceConnectionIds"),
            target_connection_ids: texts_at(item, "/targetConnectionIds"),
            base_connection_ids,
            transformations,
            last_operation,
            last_run,
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const SCHEMA: &str =
        "https://ns.adobe.com/acme/schemas/7f682c29f887512a897791e7161b90a1ae7ed3dd07a177b1";

    #[test]
    fn source_connection_body_is_the_tutorial_body() {
        let body = source_connection_body(&NewSourceConnection {
            name: "ACME Streaming Source Connection for Customer Data".into(),
            description: Some("optional".into()),
            base_connection_id: "a59d368a-1152-4673-a46e-bd52e8cdb9a9".into(),
        });
        assert_eq!(
            body,
            json!({
                "name": "ACME Streaming Source Connection for Customer Data",
                "description": "optional",
                "baseConnectionId": "a59d368a-1152-4673-a46e-bd52e8cdb9a9",
                "connectionSpec": { "id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0" }
            })
        );
    }

    #[test]
    fn target_connection_body_is_the_tutorial_body_with_the_dataset_schema() {
        let dataset = Dataset {
            id: "637eb7fadc8a211b6312b65b".into(),
            name: "Customers".into(),
            description: None,
            schema_ref: SchemaRef {
                id: SCHEMA.into(),
                content_type: "application/vnd.adobe.xed-full+json;version=1.0".into(),
            },
            profile_enabled: false,
            identity_enabled: false,
            version: None,
            created_at: None,
            updated_at: None,
        };
        let body = target_connection_body(&NewTargetConnection::for_dataset(
            "ACME Streaming Target Connection".into(),
            None,
            &dataset,
        ));
        assert_eq!(
            body,
            json!({
                "name": "ACME Streaming Target Connection",
                "data": { "schema": {
                    "id": SCHEMA,
                    "version": "application/vnd.adobe.xed-full+json;version=1.0"
                } },
                "params": { "dataSetId": "637eb7fadc8a211b6312b65b" },
                "connectionSpec": { "id": "c604ff05-7f1a-43c0-8e18-33bf874cb11c", "version": "1.0" }
            })
        );
    }

    fn new_flow(kind: FlowKind) -> NewFlow {
        NewFlow {
            name: "ACME Streaming Dataflow".into(),
            description: None,
            source_connection_id: "34ece231-294d-416c-ad2a-5a5dfb2bc69f".into(),
            target_connection_id: "07f2f6ff-1da5-4704-916a-c615b873cba9".into(),
            kind,
        }
    }

    #[test]
    fn an_xdm_flow_has_no_transformations_and_never_a_state() {
        assert_eq!(
            flow_body(&new_flow(FlowKind::Xdm)),
            json!({
                "name": "ACME Streaming Dataflow",
                "flowSpec": { "id": "d8a6f005-7eaf-4153-983e-e8574508b877", "version": "1.0" },
                "sourceConnectionIds": ["34ece231-294d-416c-ad2a-5a5dfb2bc69f"],
                "targetConnectionIds": ["07f2f6ff-1da5-4704-916a-c615b873cba9"]
            })
        );
    }

    #[test]
    fn a_raw_flow_names_its_mapping() {
        let body = flow_body(&new_flow(FlowKind::Raw(MappingRef {
            mapping_id: "79a623960d3f4969835c9e00dc90c8df".into(),
            mapping_version: 0,
        })));
        assert_eq!(body["flowSpec"]["id"], RAW_FLOW_SPEC_ID);
        assert_eq!(
            body["transformations"],
            json!([{ "name": "Mapping", "params": {
                "mappingId": "79a623960d3f4969835c9e00dc90c8df", "mappingVersion": 0 } }])
        );
        assert_eq!(body.get("state"), None);
    }

    #[test]
    fn flow_patches_are_the_documented_operations() {
        let update = FlowUpdate {
            name: Some("new name".into()),
            description: Some(Some("…".into())),
            mapping: Some(MappingRef {
                mapping_id: "c5f22f04e09f44498e528901546a83b1".into(),
                mapping_version: 2,
            }),
        };
        assert_eq!(
            flow_patch_operations(&update),
            json!([
                { "op": "replace", "path": "/name", "value": "new name" },
                { "op": "add", "path": "/description", "value": "…" },
                { "op": "replace", "path": "/transformations/0",
                  "value": { "name": "Mapping", "params": {
                      "mappingId": "c5f22f04e09f44498e528901546a83b1", "mappingVersion": 2 } } }
            ])
        );
        assert!(FlowUpdate::default().is_empty());
        assert_eq!(flow_patch_operations(&FlowUpdate::default()), json!([]));
    }

    /// `items[0]` of the reference's `GET /flows/{id}` (§8.1).
    fn documented_flow() -> Value {
        json!({
            "id": "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2",
            "createdAt": 1670284443204_i64, "updatedAt": 1670284532205_i64,
            "sandboxName": "prod", "imsOrgId": "ORG@AdobeOrg",
            "name": "ACME Streaming Dataflow", "description": "d",
            "flowSpec": { "id": "c1a19761-d2c7-4702-b9fa-fe91f0613e81", "version": "1.0" },
            "state": "enabled",
            "version": "\"dc0459ae\"", "etag": "\"dc0459ae\"",
            "sourceConnectionIds": ["34ece231-294d-416c-ad2a-5a5dfb2bc69f"],
            "targetConnectionIds": ["07f2f6ff-1da5-4704-916a-c615b873cba9"],
            "inheritedAttributes": {
                "sourceConnections": [ { "id": "34ece231-294d-416c-ad2a-5a5dfb2bc69f",
                    "connectionSpec": { "id": STREAMING_CONNECTION_SPEC_ID, "version": "1.0" },
                    "baseConnection": { "id": "a59d368a-1152-4673-a46e-bd52e8cdb9a9",
                        "connectionSpec": { "id": STREAMING_CONNECTION_SPEC_ID, "version": "1.0" } } } ],
                "targetConnections": [ { "id": "07f2f6ff-1da5-4704-916a-c615b873cba9",
                    "connectionSpec": { "id": DATA_LAKE_CONNECTION_SPEC_ID, "version": "1.0" } } ]
            },
            "transformations": [ { "name": "Mapping", "params": {
                "mappingId": "79a623960d3f4969835c9e00dc90c8df", "mappingVersion": "0" } } ],
            "runs": "/runs?property=flowId==f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2",
            "lastOperation": { "started": 1670284443413_i64, "updated": 0, "operation": "create",
                "percentCompleted": 100.0, "status": { "value": "completed", "errors": [] } },
            "lastRunDetails": { "id": "9830305a", "state": "success",
                "startedAtUTC": 1670284458833_i64, "completedAtUTC": 1670284518048_i64 }
        })
    }

    #[test]
    fn the_documented_flow_is_read() {
        let flow = parse_flow(&documented_flow()).unwrap();
        assert_eq!(
            flow,
            Flow {
                id: "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2".into(),
                name: "ACME Streaming Dataflow".into(),
                description: Some("d".into()),
                flow_spec_id: RAW_FLOW_SPEC_ID.into(),
                state: "enabled".into(),
                etag: "\"dc0459ae\"".into(),
                source_connection_ids: vec!["34ece231-294d-416c-ad2a-5a5dfb2bc69f".into()],
                target_connection_ids: vec!["07f2f6ff-1da5-4704-916a-c615b873cba9".into()],
                base_connection_ids: vec!["a59d368a-1152-4673-a46e-bd52e8cdb9a9".into()],
                transformations: vec![Transformation {
                    name: "Mapping".into(),
                    mapping_id: Some("79a623960d3f4969835c9e00dc90c8df".into()),
                    mapping_version: Some(0),
                }],
                last_operation: Some(LastOperation {
                    operation: Some("create".into()),
                    status: Some("completed".into()),
                }),
                last_run: Some(LastRunDetails {
                    id: Some("9830305a".into()),
                    state: Some("success".into()),
                    started_at: Some(1670284458833),
                    completed_at: Some(1670284518048),
                }),
                created_at: Some(1670284443204),
                updated_at: Some(1670284532205),
            }
        );
        assert_eq!(
            flow.mapping(),
            Some(MappingRef {
                mapping_id: "79a623960d3f4969835c9e00dc90c8df".into(),
                mapping_version: 0,
            })
        );
    }

    #[test]
    fn a_young_xdm_flow_has_no_runs_mapping_or_transformations() {
        let flow = parse_flow(&json!({
            "id": "f", "version": "\"v\"", "transformations": [],
            "flowSpec": { "id": XDM_FLOW_SPEC_ID }
        }))
        .unwrap();
        assert_eq!(flow.etag, "\"v\"");
        assert_eq!(flow.mapping(), None);
        assert_eq!(flow.last_run, None);
        assert!(flow.base_connection_ids.is_empty());
        let int_version = parse_flow(&json!({ "id": "f", "transformations": [
            { "name": "Mapping", "params": { "mappingId": "m", "mappingVersion": 3 } } ] }))
        .unwrap();
        assert_eq!(int_version.mapping().unwrap().mapping_version, 3);
        assert_eq!(parse_flow(&json!({ "name": "no id" })), None);
    }

    #[test]
    fn the_documented_source_and_target_connections_are_read() {
        let source = parse_source_connection(&json!({
            "id": "34ece231-294d-416c-ad2a-5a5dfb2bc69f", "createdAt": 1670276871555_i64,
            "name": "src", "baseConnectionId": "a59d368a-1152-4673-a46e-bd52e8cdb9a9",
            "state": "enabled", "data": { "format": "json" },
            "connectionSpec": { "id": STREAMING_CONNECTION_SPEC_ID, "version": "1.0" },
            "params": {}, "version": "\"d505\"", "etag": "\"d505\"",
            "inheritedAttributes": { "baseConnection": { "id": "ignored-when-the-field-is-set" } }
        }))
        .unwrap();
        assert_eq!(
            source.base_connection_id.as_deref(),
            Some("a59d368a-1152-4673-a46e-bd52e8cdb9a9")
        );
        assert_eq!(source.connection_spec_id, STREAMING_CONNECTION_SPEC_ID);
        assert_eq!(source.etag, "\"d505\"");
        let inherited = parse_source_connection(&json!({ "id": "s",
            "inheritedAttributes": { "baseConnection": { "id": "b" } } }))
        .unwrap();
        assert_eq!(inherited.base_connection_id.as_deref(), Some("b"));

        let target = parse_target_connection(&json!({
            "id": "07f2f6ff-1da5-4704-916a-c615b873cba9", "name": "tgt", "state": "enabled",
            "data": { "schema": { "id": SCHEMA, "version": "application/vnd.adobe.xed-full+json;version=1.0" } },
            "connectionSpec": { "id": DATA_LAKE_CONNECTION_SPEC_ID, "version": "1.0" },
            "params": { "dataSetId": "637eb7fadc8a211b6312b65b" }, "etag": "\"340680f7\""
        }))
        .unwrap();
        assert_eq!(
            target.dataset_id.as_deref(),
            Some("637eb7fadc8a211b6312b65b")
        );
        assert_eq!(target.schema_id.as_deref(), Some(SCHEMA));
        assert_eq!(
            target.schema_version.as_deref(),
            Some("application/vnd.adobe.xed-full+json;version=1.0")
        );
    }
}
