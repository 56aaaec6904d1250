//! The `StreamingConnection` kind: a Flow Service streaming connection and its inlet.
//!
//! Every `///` comment on a spec or status field becomes the text `kubectl explain` shows, so it is
//! written for the person applying the manifest. Developer notes stay in `//` comments.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ConfigMapTemplate, DeletionPolicy, NO_CONTROL_CHARACTERS,
    NO_CONTROL_CHARACTERS_EXCEPT_WHITESPACE, SANDBOX_PATTERN, SecretReference,
    document_root_fields,
};

// Messages shown by the API server when an admission rule fails. They say what to do instead.
const SANDBOX_IMMUTABLE: &str = "sandbox is immutable: create a new StreamingConnection for the other sandbox \
     (and delete this one) instead of editing it";
const DATA_TYPE_IMMUTABLE: &str = "dataType is immutable: Flow Service cannot change it on an existing connection; \
     create a new StreamingConnection instead";
const AUTHENTICATION_IMMUTABLE: &str = "authenticationRequired is immutable: Flow Service cannot change it on an \
     existing connection; create a new StreamingConnection instead";
const CONNECTION_ID_FORMAT: &str = "connectionId must be a Flow Service connection id, a lowercase UUID such as 77a05521-91d6-451c-a055-2191d6851c34";
const CONNECTION_ID_IMMUTABLE: &str = "connectionId cannot be changed or removed once set: the object is bound to \
     that connection; create a new StreamingConnection to manage another one";
const NAME_TOO_LONG_FOR_DEFAULT_CONFIGMAP: &str = "metadata.name is too long for the default ConfigMap name \
     \"<name>-inlet\" (253 characters at most): set spec.configMap.name";

/// Flow Service connection ids are UUIDs.
pub const CONNECTION_ID_PATTERN: &str =
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
/// Inlet ids are 64 lowercase hex characters.
pub const INLET_ID_PATTERN: &str = r"^[0-9a-f]{64}$";

/// The desired streaming connection: which sandbox it lives in, what it is called, what its inlet
/// accepts, which credentials to use and where to publish its inlet URL.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "streaming.aep-operator.dev",
    version = "v1alpha1",
    kind = "StreamingConnection",
    plural = "streamingconnections",
    shortname = "sconn",
    category = "aep",
    namespaced,
    status = "StreamingConnectionStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A StreamingConnection declares an Adobe Experience Platform streaming connection (Flow Service \
           HTTP API connection) and publishes its inlet URL in a ConfigMap.",
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the connection exists and its inlet URL is published"),
    printcolumn(name = "Sandbox", type_ = "string", json_path = ".spec.sandbox",
        description = "The AEP sandbox of the connection"),
    printcolumn(name = "Connection ID", type_ = "string", json_path = ".status.connectionId",
        description = "The Flow Service connection id"),
    printcolumn(name = "Inlet URL", type_ = "string", json_path = ".status.inletUrl", priority = "1",
        description = "The streaming inlet URL that applications post events to"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 247 || (has(self.spec.configMap) && has(self.spec.configMap.name))")
        .message(NAME_TOO_LONG_FOR_DEFAULT_CONFIGMAP),
)]
#[x_kube(validation = Rule::new("!has(oldSelf.connectionId) || (has(self.connectionId) && self.connectionId == oldSelf.connectionId)")
    .message(CONNECTION_ID_IMMUTABLE))]
#[serde(rename_all = "camelCase")]
pub struct StreamingConnectionSpec {
    /// The AEP sandbox that holds the connection (sent as `x-sandbox-name`), for example `prod`.
    /// Immutable: to move a connection to another sandbox, create a new StreamingConnection.
    #[x_kube(validation = Rule::new("self == oldSelf").message(SANDBOX_IMMUTABLE))]
    #[schemars(length(min = 1, max = 256), regex(pattern = SANDBOX_PATTERN))]
    pub sandbox: String,

    /// The Flow Service connection `name`. Defaults to `<namespace>/<name>` of this object.
    /// Changing it renames the connection in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new(r"!self.matches('[\\x00-\\x1f\\x7f-\\x9f]')").message(NO_CONTROL_CHARACTERS))]
    pub connection_name: Option<String>,

    /// A human-readable description of the connection. Changing it updates the connection in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new(r"!self.matches('[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]')")
        .message(NO_CONTROL_CHARACTERS_EXCEPT_WHITESPACE))]
    pub description: Option<String>,

    /// The source id reported with every event (`auth.params.sourceId`). Flow Service defaults it
    /// to the connection name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new(r"!self.matches('[\\x00-\\x1f\\x7f-\\x9f]')").message(NO_CONTROL_CHARACTERS))]
    pub source_id: Option<String>,

    /// What the inlet accepts: `xdm` (messages in the XDM envelope) or `raw` (any JSON, mapped by
    /// Data Prep). Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message(DATA_TYPE_IMMUTABLE))]
    pub data_type: DataType,

    /// When true, the inlet only accepts requests that carry an IMS bearer token
    /// (an authenticated streaming connection). Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message(AUTHENTICATION_IMMUTABLE))]
    pub authentication_required: bool,

    /// The Secret, in this object's namespace, that holds the Adobe credentials: keys `clientId`,
    /// `clientSecret` and `orgId` (OAuth server-to-server), optional `scopes`, `apiKey`, or
    /// `accessToken` instead of `clientSecret`.
    pub credentials_ref: SecretReference,

    /// What happens to the Flow Service connection when this object is deleted: `Delete` removes
    /// it, `Orphan` leaves it in place.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Adopt this existing Flow Service connection instead of creating one. It must be a streaming
    /// connection in the same sandbox that no other StreamingConnection manages.
    /// Cannot be changed or removed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')")
        .message(CONNECTION_ID_FORMAT))]
    pub connection_id: Option<String>,

    /// Where the inlet URL is published. Defaults to a ConfigMap named `<name>-inlet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapTemplate>,
}

/// The format of the events the inlet accepts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// Events in the XDM envelope (header + body).
    #[default]
    Xdm,
    /// Any JSON; a Data Prep mapping turns it into XDM.
    Raw,
}

impl DataType {
    /// The value Flow Service uses in `auth.params.dataType`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Xdm => "xdm",
            DataType::Raw => "raw",
        }
    }
}

/// What the operator observed. Written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamingConnectionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Flow Service connection id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The connection's version (etag) as last seen; it changes on every update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The streaming inlet id (64 hex characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = INLET_ID_PATTERN))]
    pub inlet_id: Option<String>,
    /// The URL applications post events to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inlet_url: Option<String>,
    /// The connection's state as Flow Service reports it, for example `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The ConfigMap that publishes the inlet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// When the operator last confirmed the connection with Flow Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<Time>,
    /// Set while a create request may be in flight, before its id is known. If the operator stops
    /// in that window it looks the connection up by name instead of creating a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_create: Option<PendingCreate>,
    /// The latest observations: `Ready`, `Reconciling` and `Stalled` (kstatus conventions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// A create request that may have reached Flow Service before its answer was recorded.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingCreate {
    /// The connection name sent in the request.
    pub connection_name: String,
    /// When the operator started the request; connections created before it are not candidates.
    pub started_at: Time,
    /// When the latest create request was sent: a request whose answer never came may still be
    /// committed by Flow Service for a while, so the lookup by name waits until it has settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted_at: Option<Time>,
}

impl StreamingConnection {
    /// The CustomResourceDefinition, exactly as committed in `crds/streamingconnection.yaml`.
    pub fn definition() -> CustomResourceDefinition {
        let mut crd = Self::crd();
        document_root_fields(
            &mut crd,
            "StreamingConnection",
            "The desired streaming connection.",
        );
        crd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{API_GROUP, API_VERSION, DNS_SUBDOMAIN_PATTERN};
    use serde_json::{Value, json};

    fn schema() -> Value {
        let crd = StreamingConnection::definition();
        serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap()
    }

    fn rules_of(property: &Value) -> Vec<(String, String)> {
        property["x-kubernetes-validations"]
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .map(|r| {
                        (
                            r["rule"].as_str().unwrap().to_string(),
                            r["message"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_full_object_survives_a_serde_round_trip() {
        let manifest = json!({
            "apiVersion": "streaming.aep-operator.dev/v1alpha1",
            "kind": "StreamingConnection",
            "metadata": {"name": "web-events", "namespace": "marketing", "generation": 3},
            "spec": {
                "sandbox": "prod",
                "connectionName": "Web events",
                "description": "Clickstream from the storefront",
                "sourceId": "storefront",
                "dataType": "raw",
                "authenticationRequired": true,
                "credentialsRef": {"name": "aep-credentials"},
                "deletionPolicy": "Orphan",
                "connectionId": "77a05521-91d6-451c-a055-2191d6851c34",
                "configMap": {"name": "web-events-inlet", "labels": {"team": "web"}, "annotations": {"a": "b"}}
            },
            "status": {
                "observedGeneration": 3,
                "connectionId": "77a05521-91d6-451c-a055-2191d6851c34",
                "etag": "\"a500e689-0000-0200-0000-5e31df730000\"",
                "inletId": "a".repeat(64),
                "inletUrl": format!("https://dcs.adobedc.net/collection/{}", "a".repeat(64)),
                "state": "enabled",
                "configMapName": "web-events-inlet",
                "lastSyncedAt": "2026-11-28T20:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                                "lastTransitionTime": "2026-11-28T20:00:00Z", "observedGeneration": 3}]
            }
        });
        let object: StreamingConnection = serde_json::from_value(manifest.clone()).unwrap();
        assert_eq!(object.spec.data_type, DataType::Raw);
        assert_eq!(object.spec.deletion_policy, DeletionPolicy::Orphan);
        assert_eq!(
            object.spec.config_map.as_ref().unwrap().labels["team"],
            "web"
        );
        assert_eq!(serde_json::to_value(&object).unwrap(), manifest);
    }

    #[test]
    fn omitted_fields_take_their_documented_defaults() {
        let object: StreamingConnection = serde_json::from_value(json!({
            "apiVersion": "streaming.aep-operator.dev/v1alpha1",
            "kind": "StreamingConnection",
            "metadata": {"name": "web-events"},
            "spec": {"sandbox": "prod", "credentialsRef": {"name": "aep-credentials"}}
        }))
        .unwrap();
        assert_eq!(object.spec.data_type, DataType::Xdm);
        assert_eq!(object.spec.deletion_policy, DeletionPolicy::Delete);
        assert!(!object.spec.authentication_required);
        assert_eq!(object.spec.connection_name, None);
        assert_eq!(object.status, None);

        // The API server applies the same defaults from the schema.
        let spec = &schema()["properties"]["spec"]["properties"];
        assert_eq!(spec["dataType"]["default"], "xdm");
        assert_eq!(spec["deletionPolicy"]["default"], "Delete");
        assert_eq!(spec["authenticationRequired"]["default"], false);
    }

    #[test]
    fn enums_admit_only_the_documented_values() {
        let spec = &schema()["properties"]["spec"]["properties"];
        assert_eq!(spec["dataType"]["enum"], json!(["xdm", "raw"]));
        assert_eq!(spec["deletionPolicy"]["enum"], json!(["Delete", "Orphan"]));
        assert!(serde_json::from_value::<DataType>(json!("XDM")).is_err());
    }

    #[test]
    fn the_crd_has_the_fixed_names() {
        let crd = StreamingConnection::definition();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("streamingconnections.streaming.aep-operator.dev")
        );
        assert_eq!(crd.spec.group, API_GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["sconn".to_string()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["aep".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, API_VERSION);
        assert!(version.subresources.as_ref().unwrap().status.is_some());
    }

    #[test]
    fn printer_columns_show_ready_sandbox_connection_inlet_and_age() {
        let crd = StreamingConnection::definition();
        let columns = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap();
        let summary: Vec<(&str, &str, i32)> = columns
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.json_path.as_str(),
                    c.priority.unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "Ready",
                    r#".status.conditions[?(@.type=="Ready")].status"#,
                    0
                ),
                ("Sandbox", ".spec.sandbox", 0),
                ("Connection ID", ".status.connectionId", 0),
                ("Inlet URL", ".status.inletUrl", 1),
                ("Age", ".metadata.creationTimestamp", 0),
            ]
        );
    }

    #[test]
    fn immutable_fields_carry_transition_rules_with_guidance() {
        let spec = &schema()["properties"]["spec"]["properties"];
        for field in ["sandbox", "dataType", "authenticationRequired"] {
            let rules = rules_of(&spec[field]);
            assert_eq!(rules.len(), 1, "{field}");
            assert_eq!(rules[0].0, "self == oldSelf", "{field}");
            assert!(
                rules[0].1.starts_with(&format!("{field} is immutable")),
                "{field}: {}",
                rules[0].1
            );
            assert!(
                rules[0].1.contains("create a new StreamingConnection"),
                "{field}"
            );
        }
    }

    #[test]
    fn ids_and_names_are_validated_at_admission() {
        let root = schema();
        let spec = &root["properties"]["spec"]["properties"];
        let connection_id = rules_of(&spec["connectionId"]);
        assert!(
            connection_id[0]
                .0
                .contains(&CONNECTION_ID_PATTERN[1..CONNECTION_ID_PATTERN.len() - 1])
        );
        assert!(connection_id[0].1.contains("UUID"));
        assert_eq!(spec["connectionName"]["minLength"], 1);
        assert_eq!(spec["connectionName"]["maxLength"], 256);
        assert_eq!(
            spec["credentialsRef"]["properties"]["name"]["pattern"],
            DNS_SUBDOMAIN_PATTERN
        );
        assert_eq!(
            spec["configMap"]["properties"]["name"]["pattern"],
            DNS_SUBDOMAIN_PATTERN
        );
        assert_eq!(
            root["properties"]["status"]["properties"]["inletId"]["pattern"],
            INLET_ID_PATTERN
        );
        assert!(
            rules_of(&root)[0]
                .0
                .contains("size(self.metadata.name) <= 247")
        );
        assert!(
            rules_of(&root["properties"]["spec"])[0]
                .0
                .contains("oldSelf.connectionId")
        );
    }

    #[test]
    fn conditions_are_a_list_map_keyed_by_type() {
        let conditions = &schema()["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    }

    #[test]
    fn every_schema_property_has_a_description() {
        fn walk(path: &str, node: &Value, missing: &mut Vec<String>) {
            if let Some(properties) = node.get("properties").and_then(Value::as_object) {
                for (name, child) in properties {
                    let child_path = format!("{path}.{name}");
                    if child
                        .get("description")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        missing.push(child_path.clone());
                    }
                    walk(&child_path, child, missing);
                }
            }
            if let Some(items) = node.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
        }
        let mut missing = Vec::new();
        walk("", &schema(), &mut missing);
        assert!(missing.is_empty(), "undocumented properties: {missing:?}");
    }
}
