//! The pure core of a StreamingDataflow: from the object (and what its StreamingConnection, Catalog and Flow
//! Service reported) to names, checks and the published ConfigMap. No I/O.

use std::collections::BTreeMap;

use crate::api::{
    DataType, FieldMapping, MappingSourceType, RunSummary, SchemaReference, StreamingDataflow,
};
use crate::controller::desired::{config_map_name_or, namespaced_name, owned_config_map};
use aep_flow::{
    Dataset, Flow, FlowKind, FlowUpdate, Mapping, MappingRef, MappingSet, NewFlow, NewMappingSet,
    NewSourceConnection, NewTargetConnection, Run, SchemaRef, SourceType,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Keys of the dataflow's ConfigMap: everything an application needs to send a message that lands in the
/// dataset. They work both as environment variable names (`envFrom`) and as file names when mounted.
pub mod configmap_keys {
    /// The inlet URL of the StreamingConnection.
    pub const INLET_URL: &str = "INLET_URL";
    /// The flow id: `header.flowId` of an XDM message, `x-adobe-flow-id` of a raw one.
    pub const FLOW_ID: &str = "FLOW_ID";
    /// The dataset the data lands in: `header.datasetId` of an XDM message.
    pub const DATASET_ID: &str = "DATASET_ID";
    /// The dataset's schema `$id`: `header.schemaRef.id` and `body.xdmMeta.schemaRef.id`.
    pub const SCHEMA_ID: &str = "SCHEMA_ID";
    /// The schema's content type: `schemaRef.contentType`.
    pub const SCHEMA_CONTENT_TYPE: &str = "SCHEMA_CONTENT_TYPE";
    /// The IMS organization: `header.imsOrgId`.
    pub const IMS_ORG_ID: &str = "IMS_ORG_ID";
    /// The sandbox of the connection and the dataset.
    pub const SANDBOX: &str = "SANDBOX";
    /// `xdm` (send the XDM envelope) or `raw` (send your JSON with `x-adobe-flow-id`).
    pub const DATA_TYPE: &str = "DATA_TYPE";
    /// `true` when the inlet needs an IMS bearer token.
    pub const AUTHENTICATION_REQUIRED: &str = "AUTHENTICATION_REQUIRED";
}

/// Names the StreamingDataflow a published ConfigMap belongs to.
pub const STREAMING_DATAFLOW_LABEL: &str = "streaming.aep-operator.dev/streaming-dataflow";

/// The Flow Service flow name: `spec.flowName`, or `<namespace>/<name>`.
pub fn flow_name(object: &StreamingDataflow) -> String {
    object
        .spec
        .flow_name
        .clone()
        .unwrap_or_else(|| namespaced_name(object))
}

/// The source connection's name. Fixed at creation from `<namespace>/<name>` (not from `spec.flowName`,
/// which may change): Adobe treats source and target connections as immutable, and a lookup by name after
/// an interrupted create must find what the first attempt sent.
pub fn source_connection_name(object: &StreamingDataflow) -> String {
    format!("{} (source)", namespaced_name(object))
}

/// The target connection's name; see [`source_connection_name`].
pub fn target_connection_name(object: &StreamingDataflow) -> String {
    format!("{} (target)", namespaced_name(object))
}

/// The name of the published ConfigMap: `spec.configMap.name`, or `<name>-dataflow`.
pub fn config_map_name(object: &StreamingDataflow) -> String {
    config_map_name_or(object, object.spec.config_map.as_ref(), "dataflow")
}

/// Why the spec's mapping does not fit the connection's data type, if it does not: raw data needs a
/// mapping to become XDM, XDM messages must not have one.
pub fn mapping_problem(object: &StreamingDataflow, data_type: DataType) -> Option<String> {
    match (data_type, object.spec.mapping.is_empty()) {
        (DataType::Raw, true) => Some(format!(
            "StreamingConnection {} has dataType raw: set spec.mapping to say how the posted JSON maps onto \
             the dataset's XDM schema",
            object.spec.connection_ref.name
        )),
        (DataType::Xdm, false) => Some(format!(
            "StreamingConnection {} has dataType xdm: its messages are already XDM, remove spec.mapping (or \
             use a raw StreamingConnection)",
            object.spec.connection_ref.name
        )),
        _ => None,
    }
}

/// The description the operator gives the source and target connections it creates.
fn part_description(object: &StreamingDataflow) -> Option<String> {
    Some(format!(
        "Part of StreamingDataflow {}; managed by aep-streaming-operator",
        namespaced_name(object)
    ))
}

/// The source connection to create on the StreamingConnection's base connection.
pub fn new_source_connection(
    object: &StreamingDataflow,
    base_connection_id: &str,
) -> NewSourceConnection {
    NewSourceConnection {
        name: source_connection_name(object),
        description: part_description(object),
        base_connection_id: base_connection_id.to_string(),
    }
}

/// The target connection to create for the dataset (with the dataset's own schema reference).
pub fn new_target_connection(object: &StreamingDataflow, dataset: &Dataset) -> NewTargetConnection {
    NewTargetConnection::for_dataset(
        target_connection_name(object),
        part_description(object),
        dataset,
    )
}

/// The spec's mapping in Data Prep's terms.
pub fn mappings(object: &StreamingDataflow) -> Vec<Mapping> {
    object
        .spec
        .mapping
        .iter()
        .map(
            |FieldMapping {
                 source,
                 destination,
                 source_type,
             }| Mapping {
                source_type: match source_type {
                    MappingSourceType::Attribute => SourceType::Attribute,
                    MappingSourceType::Expression => SourceType::Expression,
                    MappingSourceType::Static => SourceType::Static,
                },
                source: source.clone(),
                destination: destination.clone(),
            },
        )
        .collect()
}

/// The mapping set (raw connections) for the dataset's schema.
pub fn new_mapping_set(object: &StreamingDataflow, schema: &SchemaRef) -> NewMappingSet {
    NewMappingSet {
        schema: schema.clone(),
        mappings: mappings(object),
    }
}

/// True when the stored mapping set says the same as the spec: the same mappings, in any order,
/// to the same schema.
pub fn mapping_is_current(
    object: &StreamingDataflow,
    set: &MappingSet,
    schema: &SchemaRef,
) -> bool {
    let key = |m: &Mapping| {
        (
            m.destination.clone(),
            m.source.clone(),
            m.source_type.as_str(),
        )
    };
    let mut wanted: Vec<_> = mappings(object).iter().map(key).collect();
    let mut stored: Vec<_> = set.mappings.iter().map(key).collect();
    wanted.sort();
    stored.sort();
    wanted == stored && set.schema_id.as_deref().is_none_or(|id| id == schema.id)
}

/// The flow to create from the parts.
pub fn new_flow(
    object: &StreamingDataflow,
    source_connection_id: &str,
    target_connection_id: &str,
    mapping: Option<MappingRef>,
) -> NewFlow {
    NewFlow {
        name: flow_name(object),
        description: object.spec.description.clone(),
        source_connection_id: source_connection_id.to_string(),
        target_connection_id: target_connection_id.to_string(),
        kind: mapping.map_or(FlowKind::Xdm, FlowKind::Raw),
    }
}

/// What to change on the flow so that its name and description match the spec (empty when they do).
pub fn flow_update(object: &StreamingDataflow, flow: &Flow) -> FlowUpdate {
    let name = flow_name(object);
    let description = object.spec.description.clone().filter(|d| !d.is_empty());
    FlowUpdate {
        name: (flow.name != name).then_some(name),
        description: (flow.description.clone().filter(|d| !d.is_empty()) != description)
            .then_some(description),
        mapping: None,
    }
}

/// The status summary of a run.
pub fn run_summary(run: &Run) -> RunSummary {
    let time = |ms: Option<i64>| {
        ms.and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .map(Time)
    };
    let count = |n: Option<u64>| n.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX));
    RunSummary {
        id: run.id.clone(),
        status: run.status.clone(),
        started_at: time(run.started_at),
        completed_at: time(run.completed_at),
        input_record_count: count(run.input_record_count),
        output_record_count: count(run.output_record_count),
        failed_record_count: count(run.failed_record_count),
    }
}

/// What the dataflow's ConfigMap publishes, gathered from the connection, Catalog and Flow Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Published<'a> {
    /// The StreamingConnection's inlet URL.
    pub inlet_url: &'a str,
    /// The flow id.
    pub flow_id: &'a str,
    /// The dataset's schema.
    pub schema: &'a SchemaReference,
    /// The IMS organization of the credentials.
    pub ims_org_id: &'a str,
    /// The connection's sandbox.
    pub sandbox: &'a str,
    /// The connection's data type.
    pub data_type: DataType,
    /// Whether the inlet needs a bearer token.
    pub authentication_required: bool,
}

/// The ConfigMap that publishes the dataflow, owned by the StreamingDataflow so that it is
/// garbage-collected with it.
pub fn config_map(object: &StreamingDataflow, published: &Published<'_>) -> ConfigMap {
    use configmap_keys::*;
    let data = BTreeMap::from([
        (INLET_URL.to_string(), published.inlet_url.to_string()),
        (FLOW_ID.to_string(), published.flow_id.to_string()),
        (DATASET_ID.to_string(), object.spec.dataset_id.clone()),
        (SCHEMA_ID.to_string(), published.schema.id.clone()),
        (
            SCHEMA_CONTENT_TYPE.to_string(),
            published.schema.content_type.clone(),
        ),
        (IMS_ORG_ID.to_string(), published.ims_org_id.to_string()),
        (SANDBOX.to_string(), published.sandbox.to_string()),
        (
            DATA_TYPE.to_string(),
            published.data_type.as_str().to_string(),
        ),
        (
            AUTHENTICATION_REQUIRED.to_string(),
            published.authentication_required.to_string(),
        ),
    ]);
    owned_config_map(
        object,
        config_map_name(object),
        object.spec.config_map.clone().unwrap_or_default(),
        STREAMING_DATAFLOW_LABEL,
        data,
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::api::{ConnectionReference, FieldMapping, StreamingDataflowSpec};

    fn dataflow(name: &str) -> StreamingDataflow {
        StreamingDataflow {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some("marketing".to_string()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: StreamingDataflowSpec {
                connection_ref: ConnectionReference {
                    name: "web-events".to_string(),
                },
                dataset_id: "5c8c3c555033b814b69f947f".to_string(),
                ..StreamingDataflowSpec::default()
            },
            status: None,
        }
    }

    #[test]
    fn names_default_to_the_objects_namespace_and_name() {
        let object = dataflow("web-to-lake");
        assert_eq!(flow_name(&object), "marketing/web-to-lake");
        assert_eq!(
            source_connection_name(&object),
            "marketing/web-to-lake (source)"
        );
        assert_eq!(
            target_connection_name(&object),
            "marketing/web-to-lake (target)"
        );
        assert_eq!(config_map_name(&object), "web-to-lake-dataflow");
    }

    #[test]
    fn a_flow_name_renames_the_flow_but_not_its_connections() {
        let mut object = dataflow("web-to-lake");
        object.spec.flow_name = Some("Web events to the lake".to_string());
        assert_eq!(flow_name(&object), "Web events to the lake");
        assert_eq!(
            source_connection_name(&object),
            "marketing/web-to-lake (source)"
        );
    }

    #[test]
    fn raw_connections_need_a_mapping_and_xdm_connections_refuse_one() {
        let mut object = dataflow("web-to-lake");
        assert_eq!(mapping_problem(&object, DataType::Xdm), None);
        assert!(
            mapping_problem(&object, DataType::Raw)
                .unwrap()
                .contains("set spec.mapping")
        );
        object.spec.mapping = vec![FieldMapping {
            source: "page.url".to_string(),
            destination: "web.webPageDetails.URL".to_string(),
            ..FieldMapping::default()
        }];
        assert_eq!(mapping_problem(&object, DataType::Raw), None);
        assert!(
            mapping_problem(&object, DataType::Xdm)
                .unwrap()
                .contains("remove spec.mapping")
        );
    }

    #[test]
    fn the_config_map_carries_everything_an_app_needs_to_send_a_message_that_lands() {
        let object = dataflow("web-to-lake");
        let schema = SchemaReference {
            id: "https://ns.adobe.com/acme/schemas/0123".to_string(),
            content_type: "application/vnd.adobe.xed-full+json;version=1".to_string(),
        };
        let config_map = config_map(
            &object,
            &Published {
                inlet_url: "https://dcs.adobedc.net/collection/abc",
                flow_id: "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2",
                schema: &schema,
                ims_org_id: "ACME@AdobeOrg",
                sandbox: "prod",
                data_type: DataType::Xdm,
                authentication_required: false,
            },
        );
        let data = config_map.data.unwrap();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "AUTHENTICATION_REQUIRED",
                "DATASET_ID",
                "DATA_TYPE",
                "FLOW_ID",
                "IMS_ORG_ID",
                "INLET_URL",
                "SANDBOX",
                "SCHEMA_CONTENT_TYPE",
                "SCHEMA_ID"
            ]
        );
        assert_eq!(data["DATASET_ID"], "5c8c3c555033b814b69f947f");
        assert_eq!(data["SCHEMA_ID"], schema.id);
        let labels = config_map.metadata.labels.unwrap();
        assert_eq!(labels[STREAMING_DATAFLOW_LABEL], "web-to-lake");
        assert_eq!(
            config_map.metadata.name.as_deref(),
            Some("web-to-lake-dataflow")
        );
    }

    fn schema_ref() -> SchemaRef {
        SchemaRef {
            id: "https://ns.adobe.com/acme/schemas/0123".to_string(),
            content_type: "application/vnd.adobe.xed-full+json;version=1".to_string(),
        }
    }

    fn field(source: &str, destination: &str) -> FieldMapping {
        FieldMapping {
            source: source.to_string(),
            destination: destination.to_string(),
            ..FieldMapping::default()
        }
    }

    fn flow(name: &str, description: Option<&str>) -> Flow {
        Flow {
            id: "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2".to_string(),
            name: name.to_string(),
            description: description.map(str::to_string),
            flow_spec_id: aep_flow::XDM_FLOW_SPEC_ID.to_string(),
            state: "enabled".to_string(),
            etag: "\"1\"".to_string(),
            source_connection_ids: vec![],
            target_connection_ids: vec![],
            base_connection_ids: vec![],
            transformations: vec![],
            last_operation: None,
            last_run: None,
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn the_parts_are_named_after_the_object_and_say_who_manages_them() {
        let object = dataflow("web-to-lake");
        let source = new_source_connection(&object, "c0ffee");
        assert_eq!(source.name, "marketing/web-to-lake (source)");
        assert_eq!(source.base_connection_id, "c0ffee");
        assert!(
            source
                .description
                .unwrap()
                .contains("aep-streaming-operator")
        );
        let dataset = Dataset {
            id: "5c8c3c555033b814b69f947f".to_string(),
            name: "lake".to_string(),
            description: None,
            schema_ref: schema_ref(),
            profile_enabled: false,
            identity_enabled: false,
            version: None,
            created_at: None,
            updated_at: None,
        };
        let target = new_target_connection(&object, &dataset);
        assert_eq!(target.name, "marketing/web-to-lake (target)");
        assert_eq!(target.dataset_id, dataset.id);
        assert_eq!(target.schema, schema_ref(), "the dataset's own schema");
        let xdm = new_flow(&object, "s", "t", None);
        assert_eq!(
            (xdm.name.as_str(), xdm.kind),
            ("marketing/web-to-lake", FlowKind::Xdm)
        );
        let mapping = MappingRef {
            mapping_id: "0123456789abcdef0123456789abcdef".to_string(),
            mapping_version: 2,
        };
        assert_eq!(
            new_flow(&object, "s", "t", Some(mapping.clone())).kind,
            FlowKind::Raw(mapping)
        );
    }

    #[test]
    fn a_mapping_set_is_current_whatever_the_order_but_not_after_any_change() {
        let mut object = dataflow("web-to-lake");
        object.spec.mapping = vec![
            field("page.url", "web.webPageDetails.URL"),
            field("page.name", "web.webPageDetails.name"),
        ];
        let mut stored = MappingSet {
            id: "0123456789abcdef0123456789abcdef".to_string(),
            version: 0,
            schema_id: Some(schema_ref().id),
            schema_content_type: None,
            mappings: mappings(&object).into_iter().rev().collect(),
            created_at: None,
            updated_at: None,
        };
        assert!(mapping_is_current(&object, &stored, &schema_ref()));
        object.spec.mapping[1].source_type = MappingSourceType::Expression;
        assert!(
            !mapping_is_current(&object, &stored, &schema_ref()),
            "a source type"
        );
        object.spec.mapping[1].source_type = MappingSourceType::Attribute;
        object.spec.mapping.pop();
        assert!(
            !mapping_is_current(&object, &stored, &schema_ref()),
            "a removed field"
        );
        stored.mappings = mappings(&object);
        let other_schema = SchemaRef {
            id: "https://ns.adobe.com/acme/schemas/4567".to_string(),
            ..schema_ref()
        };
        assert!(
            !mapping_is_current(&object, &stored, &other_schema),
            "another schema"
        );
    }

    #[test]
    fn the_flow_update_changes_only_what_differs() {
        let mut object = dataflow("web-to-lake");
        assert!(flow_update(&object, &flow("marketing/web-to-lake", None)).is_empty());
        assert!(
            flow_update(&object, &flow("marketing/web-to-lake", Some(""))).is_empty(),
            "an empty description is none"
        );
        object.spec.flow_name = Some("Web events".to_string());
        object.spec.description = Some("Page views".to_string());
        let update = flow_update(&object, &flow("marketing/web-to-lake", None));
        assert_eq!(update.name.as_deref(), Some("Web events"));
        assert_eq!(update.description, Some(Some("Page views".to_string())));
        assert_eq!(update.mapping, None);
        object.spec.description = None;
        let removal = flow_update(&object, &flow("Web events", Some("Page views")));
        assert_eq!((removal.name, removal.description), (None, Some(None)));
    }

    #[test]
    fn a_run_becomes_its_status_summary() {
        let run = Run {
            id: "run-1".to_string(),
            flow_id: Some("f".to_string()),
            status: Some("success".to_string()),
            started_at: Some(1_764_504_000_000),
            completed_at: None,
            input_record_count: Some(3),
            output_record_count: Some(2),
            failed_record_count: Some(1),
            error_codes: vec![],
            created_at: None,
        };
        let summary = run_summary(&run);
        assert_eq!(summary.id, "run-1");
        assert_eq!(summary.status.as_deref(), Some("success"));
        assert_eq!(
            summary.started_at.map(|t| t.0.as_millisecond()),
            Some(1_764_504_000_000)
        );
        assert_eq!(summary.completed_at, None);
        assert_eq!(
            (
                summary.input_record_count,
                summary.output_record_count,
                summary.failed_record_count
            ),
            (3, 2, 1)
        );
    }
}
