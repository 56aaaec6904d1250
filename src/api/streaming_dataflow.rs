//! The `StreamingDataflow` kind: the chain that makes data posted to a StreamingConnection's inlet land in a
//! dataset (a source connection on the base connection, a target connection to the dataset, a Data Prep
//! mapping set for raw data, and the flow).
//!
//! Every `///` comment on a spec or status field becomes the text `kubectl explain` shows, so it is
//! written for the person applying the manifest. Developer notes stay in `//` comments.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ConfigMapTemplate, DNS_SUBDOMAIN_PATTERN, DeletionPolicy, NO_CONTROL_CHARACTERS,
    NO_CONTROL_CHARACTERS_EXCEPT_WHITESPACE, document_root_fields,
};

// Messages shown by the API server when an admission rule fails. They say what to do instead.
const CONNECTION_REF_IMMUTABLE: &str = "connectionRef is immutable: a dataflow is bound to its base connection's \
     source connection; create a new StreamingDataflow for the other connection (and delete this one)";
const DATASET_ID_IMMUTABLE: &str = "datasetId is immutable: the target connection of a dataflow cannot be moved to \
     another dataset; create a new StreamingDataflow for the other dataset (and delete this one)";
const DATASET_ID_FORMAT: &str = "datasetId must be a Catalog dataset id: 24 lowercase hexadecimal characters, such as 5c8c3c555033b814b69f947f";
const NAME_TOO_LONG_FOR_DEFAULT_CONFIGMAP: &str = "metadata.name is too long for the default ConfigMap name \
     \"<name>-dataflow\" (253 characters at most): set spec.configMap.name";

/// Catalog dataset ids: 24 lowercase hexadecimal characters.
pub const DATASET_ID_PATTERN: &str = r"^[0-9a-f]{24}$";
/// Data Prep mapping set ids: 32 lowercase hexadecimal characters, no dashes.
pub const MAPPING_SET_ID_PATTERN: &str = r"^[0-9a-f]{32}$";

/// The desired dataflow: which StreamingConnection's inlet feeds which dataset, and for raw data how the
/// JSON fields map onto the dataset's XDM schema.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "streaming.aep-operator.dev",
    version = "v1alpha1",
    kind = "StreamingDataflow",
    plural = "streamingdataflows",
    shortname = "sdf",
    category = "aep",
    namespaced,
    status = "StreamingDataflowStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A StreamingDataflow declares an Adobe Experience Platform dataflow from a StreamingConnection's inlet \
           to a dataset (Flow Service source connection, target connection, mapping set for raw data, and \
           flow) and publishes what applications need to send data that lands in a ConfigMap.",
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the dataflow exists, matches the spec and is published"),
    printcolumn(name = "Connection", type_ = "string", json_path = ".spec.connectionRef.name",
        description = "The StreamingConnection whose inlet feeds the dataflow"),
    printcolumn(name = "Dataset", type_ = "string", json_path = ".spec.datasetId",
        description = "The dataset the data lands in"),
    printcolumn(name = "Flow ID", type_ = "string", json_path = ".status.flowId",
        description = "The Flow Service flow id"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state",
        description = "The flow's state as Flow Service reports it"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 244 || (has(self.spec.configMap) && has(self.spec.configMap.name))")
        .message(NAME_TOO_LONG_FOR_DEFAULT_CONFIGMAP),
)]
#[serde(rename_all = "camelCase")]
pub struct StreamingDataflowSpec {
    /// The StreamingConnection, in this object's namespace, whose inlet feeds the dataflow. The sandbox, the
    /// data type (`xdm` or `raw`) and the credentials come from it. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message(CONNECTION_REF_IMMUTABLE))]
    pub connection_ref: ConnectionReference,

    /// The Catalog id of the dataset the data lands in (24 hexadecimal characters). The dataset must exist
    /// in the connection's sandbox; its XDM schema is read from it. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message(DATASET_ID_IMMUTABLE))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{24}$')").message(DATASET_ID_FORMAT))]
    #[schemars(length(min = 24, max = 24))]
    pub dataset_id: String,

    /// The Flow Service flow `name`. Defaults to `<namespace>/<name>` of this object. Changing it renames the
    /// flow in place. The source and target connections are named after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    #[x_kube(validation = Rule::new(r"!self.matches('[\\x00-\\x1f\\x7f-\\x9f]')").message(NO_CONTROL_CHARACTERS))]
    pub flow_name: Option<String>,

    /// A human-readable description of the flow. Changing it updates the flow in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new(r"!self.matches('[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]')")
        .message(NO_CONTROL_CHARACTERS_EXCEPT_WHITESPACE))]
    pub description: Option<String>,

    /// `enabled` (the default) lets data flow into the dataset; `disabled` stops it without deleting anything.
    /// A flow disabled or enabled outside Kubernetes is brought back to this state.
    #[serde(default)]
    pub state: FlowState,

    /// What happens in Adobe Experience Platform when this object is deleted: `Delete` removes the flow, then
    /// its source and target connections (Adobe's order); `Orphan` leaves all of them in place. The dataset
    /// is never deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// For a `raw` connection (required there): how fields of the posted JSON map onto the dataset's XDM
    /// schema. The operator turns the list into a Data Prep mapping set; a change creates a new version of
    /// the mapping set and points the flow at it. Not allowed for an `xdm` connection, whose messages are
    /// already XDM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    // A list map keyed by destination: the API server refuses two sources for one XDM field, and
    // server-side apply merges the list entry by entry.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["destination".into()]))]
    pub mapping: Vec<FieldMapping>,

    /// Where the dataflow's settings are published for applications. Defaults to a ConfigMap named
    /// `<name>-dataflow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapTemplate>,
}

/// A reference to a StreamingConnection in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionReference {
    /// The name of the StreamingConnection. It must be in the StreamingDataflow's own namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// Whether data flows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlowState {
    /// The flow accepts data and writes it to the dataset.
    #[default]
    Enabled,
    /// The flow exists but data sent to it is not ingested.
    Disabled,
}

impl FlowState {
    /// The value Flow Service reports in a flow's `state`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::Enabled => "enabled",
            FlowState::Disabled => "disabled",
        }
    }
}

/// One field of the posted JSON and where it goes in the dataset's XDM schema.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldMapping {
    /// Where the value comes from: a path in the posted JSON (`page.url`), an expression, or a constant,
    /// depending on `sourceType`.
    #[schemars(length(min = 1, max = 4096))]
    pub source: String,
    /// The XDM path the value is written to, for example `web.webPageDetails.URL`.
    #[schemars(length(min = 1, max = 1024))]
    pub destination: String,
    /// How `source` is read: `ATTRIBUTE` (a path in the posted JSON, the default), `EXPRESSION` (a Data Prep
    /// expression) or `STATIC` (a constant).
    #[serde(default)]
    pub source_type: MappingSourceType,
}

/// How a mapping's `source` is read, as Data Prep names it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MappingSourceType {
    /// A path in the posted JSON.
    #[default]
    Attribute,
    /// A Data Prep expression.
    Expression,
    /// A constant value.
    Static,
}

impl MappingSourceType {
    /// The value Data Prep uses in `mappings[].sourceType`.
    pub fn as_str(self) -> &'static str {
        match self {
            MappingSourceType::Attribute => "ATTRIBUTE",
            MappingSourceType::Expression => "EXPRESSION",
            MappingSourceType::Static => "STATIC",
        }
    }
}

/// What the operator observed. Written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamingDataflowStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The dataset's XDM schema, as Catalog reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_ref: Option<SchemaReference>,
    /// The Flow Service source connection on the StreamingConnection's base connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_connection_id: Option<String>,
    /// The Flow Service target connection to the dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_connection_id: Option<String>,
    /// The Data Prep mapping set (raw connections only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = MAPPING_SET_ID_PATTERN))]
    pub mapping_set_id: Option<String>,
    /// The mapping set version the flow uses (raw connections only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_set_version: Option<i64>,
    /// The Flow Service flow id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    /// The flow's version (etag) as last seen; it changes on every update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The flow's state as Flow Service reports it, for example `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The latest run of the flow: Flow Service groups streamed records into hourly runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// The ConfigMap that publishes the dataflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// When the operator last confirmed the dataflow with Flow Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<Time>,
    /// Set while a create request may be in flight, before its id is known. If the operator stops in that
    /// window it looks the object up by name instead of creating a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_create: Option<PendingDataflowCreate>,
    /// The latest observations: `Ready`, `Reconciling` and `Stalled` (kstatus conventions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// An XDM schema reference, as Catalog and the XDM message header write it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchemaReference {
    /// The schema's `$id` URI, for example `https://ns.adobe.com/<tenant>/schemas/<id>`.
    pub id: String,
    /// The schema's content type, for example `application/vnd.adobe.xed-full+json;version=1`.
    pub content_type: String,
}

/// The summary of one run of the flow.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// The run's status as Flow Service reports it, for example `success` or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When the run's window started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the run completed, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Records received in the run.
    #[serde(default)]
    pub input_record_count: i64,
    /// Records written to the dataset.
    #[serde(default)]
    pub output_record_count: i64,
    /// Records that failed.
    #[serde(default)]
    pub failed_record_count: i64,
}

/// A create request that may have reached Flow Service before its answer was recorded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingDataflowCreate {
    /// What is being created.
    pub kind: DataflowPart,
    /// The name sent in the request.
    pub name: String,
    /// When the operator started the request; objects created before it are not candidates.
    pub started_at: Time,
    /// When the latest create request was sent: a request whose answer never came may still be
    /// committed by Flow Service for a while, so the lookup by name waits until it has settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted_at: Option<Time>,
}

/// The Flow Service objects a StreamingDataflow creates, in the order it creates them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DataflowPart {
    /// The source connection on the base connection.
    SourceConnection,
    /// The target connection to the dataset.
    TargetConnection,
    /// The Data Prep mapping set (raw data).
    MappingSet,
    /// The flow.
    Flow,
}

impl StreamingDataflow {
    /// The CustomResourceDefinition, exactly as committed in `crds/streamingdataflow.yaml`.
    pub fn definition() -> CustomResourceDefinition {
        let mut crd = Self::crd();
        document_root_fields(&mut crd, "StreamingDataflow", "The desired dataflow.");
        crd
    }
}
