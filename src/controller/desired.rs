//! The pure core: from a StreamingConnection (and what Flow Service reported) to the requests and
//! objects the operator wants. Nothing in here performs I/O, so it is tested with plain tests
//! (`tests/desired.rs`, which uses the test kit's fixtures).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::{
    ConfigMapTemplate, DataType, FIELD_MANAGER, StreamingConnection, StreamingConnectionStatus,
};
use aep_flow::{Connection, ConnectionUpdate, NewConnection, STREAMING_CONNECTION_SPEC_ID};

/// Keys of the published ConfigMap. They work both as environment variable names (`envFrom`) and
/// as file names when the ConfigMap is mounted.
pub mod configmap_keys {
    pub const INLET_URL: &str = "INLET_URL";
    pub const INLET_ID: &str = "INLET_ID";
    pub const CONNECTION_ID: &str = "CONNECTION_ID";
    pub const AUTHENTICATION_REQUIRED: &str = "AUTHENTICATION_REQUIRED";
    pub const DATA_TYPE: &str = "DATA_TYPE";
    pub const SANDBOX: &str = "SANDBOX";
}

/// Labels the operator puts on every ConfigMap it publishes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Names the StreamingConnection a published ConfigMap belongs to.
pub const STREAMING_CONNECTION_LABEL: &str = "streaming.aep-operator.dev/streaming-connection";

/// The Flow Service connection name: `spec.connectionName`, or `<namespace>/<name>`.
pub fn connection_name(object: &StreamingConnection) -> String {
    object
        .spec
        .connection_name
        .clone()
        .unwrap_or_else(|| namespaced_name(object))
}

/// `<namespace>/<name>`: the default name of what an object creates in Adobe Experience Platform.
pub fn namespaced_name(object: &impl ResourceExt) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// The name of the published ConfigMap: `spec.configMap.name`, or `<name>-inlet`.
pub fn config_map_name(object: &StreamingConnection) -> String {
    config_map_name_or(object, object.spec.config_map.as_ref(), "inlet")
}

/// The name of an object's published ConfigMap: the template's name, or `<name>-<suffix>`.
pub fn config_map_name_or(
    object: &impl ResourceExt,
    template: Option<&ConfigMapTemplate>,
    suffix: &str,
) -> String {
    template
        .and_then(|c| c.name.clone())
        .unwrap_or_else(|| format!("{}-{suffix}", object.name_any()))
}

/// The create request for this object's connection.
pub fn new_connection(object: &StreamingConnection) -> NewConnection {
    NewConnection {
        name: connection_name(object),
        description: object.spec.description.clone(),
        source_id: object.spec.source_id.clone(),
        data_type: match object.spec.data_type {
            DataType::Xdm => aep_flow::DataType::Xdm,
            DataType::Raw => aep_flow::DataType::Raw,
        },
        authentication_required: object.spec.authentication_required,
    }
}

/// The in-place update that brings `observed` in line with the spec, or `None` when it already is.
/// Only the name and description can change in place; the immutable fields are guarded by admission.
pub fn connection_update(
    object: &StreamingConnection,
    observed: &Connection,
) -> Option<ConnectionUpdate> {
    let name = connection_name(object);
    let name_change = (observed.name != name).then_some(name);
    // An absent and an empty description mean the same to a user.
    let wanted = object.spec.description.clone().filter(|d| !d.is_empty());
    let current = observed.description.clone().filter(|d| !d.is_empty());
    let description_change = (wanted != current).then_some(wanted);
    if name_change.is_none() && description_change.is_none() {
        return None;
    }
    Some(ConnectionUpdate {
        name: name_change,
        description: description_change,
    })
}

/// The connection as the object's status recorded it, when that status can stand in for a read: `Ready`
/// (plainly, not `ReadyExcept`) for the current generation, with the id, etag, state and inlet, no
/// create pending, and no adoption of another id asked for. Built so that nothing in it differs from
/// the spec ([`connection_update`] finds nothing to do): whatever Flow Service holds is only known
/// after the next read.
pub fn recorded_connection(
    object: &StreamingConnection,
    status: &StreamingConnectionStatus,
) -> Option<Connection> {
    let ready = super::status::plainly_ready(&status.conditions, object.metadata.generation);
    let adopting_another = object
        .spec
        .connection_id
        .as_ref()
        .is_some_and(|id| status.connection_id.as_ref() != Some(id));
    if !ready
        || adopting_another
        || status.pending_create.is_some()
        || status.observed_generation != object.metadata.generation
    {
        return None;
    }
    Some(Connection {
        id: status.connection_id.clone()?,
        name: connection_name(object),
        description: object.spec.description.clone(),
        etag: status.etag.clone()?,
        state: status.state.clone()?,
        connection_spec_id: STREAMING_CONNECTION_SPEC_ID.to_string(),
        sandbox_name: Some(object.spec.sandbox.clone()),
        inlet_id: status.inlet_id.clone(),
        inlet_url: Some(status.inlet_url.clone()?),
        source_id: object.spec.source_id.clone(),
        data_type: Some(object.spec.data_type.as_str().to_string()),
        authentication_required: object.spec.authentication_required,
        created_at: None,
        updated_at: None,
    })
}

/// Why an existing connection cannot be managed by this object, if it cannot.
pub fn adoption_mismatch(object: &StreamingConnection, observed: &Connection) -> Option<String> {
    if observed.connection_spec_id != STREAMING_CONNECTION_SPEC_ID {
        return Some(format!(
            "it is not a streaming connection (connection spec {}, expected {STREAMING_CONNECTION_SPEC_ID})",
            observed.connection_spec_id
        ));
    }
    if let Some(data_type) = &observed.data_type
        && data_type != object.spec.data_type.as_str()
    {
        return Some(format!(
            "its dataType is {data_type}, but spec.dataType is {}",
            object.spec.data_type.as_str()
        ));
    }
    if observed.authentication_required != object.spec.authentication_required {
        return Some(format!(
            "its authenticationRequired is {}, but spec.authenticationRequired is {}",
            observed.authentication_required, object.spec.authentication_required
        ));
    }
    None
}

/// The ConfigMap that publishes the inlet, owned by the StreamingConnection so that it is
/// garbage-collected with it. Applied with server-side apply, so only these fields are claimed.
pub fn config_map(object: &StreamingConnection, connection: &Connection) -> ConfigMap {
    use configmap_keys::*;
    let data = BTreeMap::from([
        (
            INLET_URL.to_string(),
            connection.inlet_url.clone().unwrap_or_default(),
        ),
        (
            INLET_ID.to_string(),
            connection.inlet_id.clone().unwrap_or_default(),
        ),
        (CONNECTION_ID.to_string(), connection.id.clone()),
        (
            AUTHENTICATION_REQUIRED.to_string(),
            object.spec.authentication_required.to_string(),
        ),
        (
            DATA_TYPE.to_string(),
            object.spec.data_type.as_str().to_string(),
        ),
        (SANDBOX.to_string(), object.spec.sandbox.clone()),
    ]);
    owned_config_map(
        object,
        config_map_name(object),
        object.spec.config_map.clone().unwrap_or_default(),
        STREAMING_CONNECTION_LABEL,
        data,
    )
}

/// A ConfigMap named `name` holding `data`, controlled by `owner` (garbage-collected with it), with the
/// template's labels and annotations plus the operator's own labels: managed-by, and `owner_label` naming
/// the owner.
pub fn owned_config_map<K: Resource<DynamicType = ()>>(
    owner: &K,
    name: String,
    template: ConfigMapTemplate,
    owner_label: &str,
    data: BTreeMap<String, String>,
) -> ConfigMap {
    let mut labels = template.labels;
    labels.insert(MANAGED_BY_LABEL.to_string(), FIELD_MANAGER.to_string());
    labels.insert(owner_label.to_string(), label_value(&owner.name_any()));
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: owner.namespace(),
            labels: Some(labels),
            annotations: (!template.annotations.is_empty()).then_some(template.annotations),
            owner_references: owner.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// True when `existing` already carries everything `desired` asks for, so no apply is needed.
/// Extra labels or annotations added by others are not our business.
pub fn config_map_is_current(existing: &ConfigMap, desired: &ConfigMap) -> bool {
    let contains = |have: &Option<BTreeMap<String, String>>,
                    want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    existing.data == desired.data
        && contains(&existing.metadata.labels, &desired.metadata.labels)
        && contains(
            &existing.metadata.annotations,
            &desired.metadata.annotations,
        )
        && owned_by(
            existing,
            desired
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.uid.as_str())
                .next(),
        )
}

/// True when `config_map` is controlled by the object with `owner_uid`.
pub fn owned_by(config_map: &ConfigMap, owner_uid: Option<&str>) -> bool {
    let Some(owner_uid) = owner_uid else {
        return false;
    };
    config_map
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == owner_uid && o.controller == Some(true))
}

/// Label values are limited to 63 characters; long object names are cut (the label is informative,
/// ownership is tracked by the ownerReference).
fn label_value(name: &str) -> String {
    let mut value: String = name.chars().take(63).collect();
    while value.ends_with(['-', '.', '_']) {
        value.pop();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_make_valid_label_values() {
        let value = label_value(&format!("{}-x", "a".repeat(62)));
        assert_eq!(value.len(), 62);
        assert!(!value.ends_with('-'));
    }
}
