//! The operator's API (`streaming.aep-operator.dev/v1alpha1`): the kinds users write in YAML, one file per
//! kind, and what they share.
//!
//! Every `///` comment on a spec or status field becomes the text `kubectl explain` shows, so it is
//! written for the person applying the manifest. Developer notes stay in `//` comments.

mod streaming_connection;
mod streaming_dataflow;

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use self::streaming_connection::*;
pub use self::streaming_dataflow::*;

/// The API group of every kind this operator serves.
pub const API_GROUP: &str = "streaming.aep-operator.dev";
/// The only API version served so far.
pub const API_VERSION: &str = "v1alpha1";
/// Added to every StreamingConnection so the operator can delete (or orphan) the connection first.
pub const FINALIZER: &str = "streaming.aep-operator.dev/cleanup";
/// The server-side-apply field manager for everything the operator writes.
pub const FIELD_MANAGER: &str = "aep-streaming-operator";
/// Setting (or changing) this annotation asks for an immediate drift check.
pub const RECONCILE_REQUESTED_AT_ANNOTATION: &str =
    "streaming.aep-operator.dev/reconcile-requested-at";

// Messages shown by the API server when an admission rule fails. They say what to do instead.
const NO_CONTROL_CHARACTERS: &str = "must not contain control characters (U+0000-U+001F, U+007F-U+009F): \
     Kubernetes cannot store them in the object's status";
const NO_CONTROL_CHARACTERS_EXCEPT_WHITESPACE: &str = "must not contain control characters other than tab, \
     line feed and carriage return (U+0000-U+001F, U+007F-U+009F): Kubernetes cannot store them";

/// A DNS-1123 subdomain, the shape of Secret and ConfigMap names.
const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// AEP sandbox names: lowercase letters, digits and hyphens.
const SANDBOX_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// What happens in Adobe Experience Platform when the object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete what the object created in Flow Service.
    #[default]
    Delete,
    /// Leave it in place.
    Orphan,
}

/// A reference to a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// The name of the Secret. It must be in the object's own namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// The ConfigMap the operator publishes for applications.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapTemplate {
    /// The ConfigMap's name. Defaults to `<name>-inlet` for a StreamingConnection, `<name>-dataflow` for a
    /// StreamingDataflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: Option<String>,
    /// Extra labels for the ConfigMap.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations for the ConfigMap.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Documents the root fields of a derived CRD, which the derive leaves bare: `kubectl explain` should
/// explain them too.
fn document_root_fields(crd: &mut CustomResourceDefinition, kind: &str, spec: &str) {
    let Some(properties) = crd.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .and_then(|schema| schema.properties.as_mut())
    else {
        return;
    };
    let api_version = format!("The versioned schema of this object: {API_GROUP}/{API_VERSION}.");
    let kind = format!("{kind}.");
    for (field, text) in [
        ("apiVersion", api_version.as_str()),
        ("kind", kind.as_str()),
        ("metadata", "Standard object metadata."),
        ("spec", spec),
        (
            "status",
            "What the operator observed. Written only by the operator.",
        ),
    ] {
        if let Some(property) = properties.get_mut(field)
            && property.description.is_none()
        {
            property.description = Some(text.to_string());
        }
    }
}
