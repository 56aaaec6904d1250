//! The operator's API (`streaming.aep-operator.dev/v1alpha1`): the kinds users write in YAML, one file per
//! kind, and what they share.
//!
//! Every `///` comment on a spec or status field becomes the text `kubectl explain` shows, so it is
//! written for the person applying the manifest. Developer notes stay in `//` comments.

mod streaming_connection;
mod streaming_dataflow;

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::ApiResource;
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

/// A kind this operator serves. Everything that must cover every kind (the CRDs committed in `crds/`, what
/// `aep-streaming-operator crd` prints, the start-up check that the CRDs are installed) goes through
/// [`ServedKind::ALL`], so a new kind is added in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServedKind {
    /// `StreamingConnection`.
    StreamingConnection,
    /// `StreamingDataflow`.
    StreamingDataflow,
}

impl ServedKind {
    /// Every served kind, in the order their CRDs are printed: a dataflow refers to a connection.
    pub const ALL: [ServedKind; 2] = [
        ServedKind::StreamingConnection,
        ServedKind::StreamingDataflow,
    ];

    /// The kind, as in `kind:` of a manifest.
    pub fn kind(self) -> &'static str {
        match self {
            ServedKind::StreamingConnection => "StreamingConnection",
            ServedKind::StreamingDataflow => "StreamingDataflow",
        }
    }

    /// The CRD's singular name (the kind in lowercase): the name `aep-streaming-operator crd` takes and the
    /// stem of the committed file.
    pub fn singular(self) -> &'static str {
        match self {
            ServedKind::StreamingConnection => "streamingconnection",
            ServedKind::StreamingDataflow => "streamingdataflow",
        }
    }

    /// The committed CRD, relative to the repository root: what a user applies to install the kind.
    pub fn crd_file(self) -> String {
        format!("crds/{}.yaml", self.singular())
    }

    /// The CustomResourceDefinition, generated from the Rust types.
    pub fn definition(self) -> CustomResourceDefinition {
        match self {
            ServedKind::StreamingConnection => StreamingConnection::definition(),
            ServedKind::StreamingDataflow => StreamingDataflow::definition(),
        }
    }

    /// The CRD as YAML, byte for byte as committed in [`ServedKind::crd_file`].
    pub fn definition_yaml(self) -> String {
        // A long one-line description or message stays on one line rather than folded at 80 columns.
        let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
        serde_saphyr::to_string_with_options(&self.definition(), options)
            .expect("a CRD always serializes")
    }

    /// The CustomResourceDefinition's name, `<plural>.<group>`.
    pub fn crd_name(self) -> &'static str {
        match self {
            ServedKind::StreamingConnection => "streamingconnections.streaming.aep-operator.dev",
            ServedKind::StreamingDataflow => "streamingdataflows.streaming.aep-operator.dev",
        }
    }

    /// Group, version and plural of the kind, for an untyped client that must reach every kind alike.
    pub fn api_resource(self) -> ApiResource {
        match self {
            ServedKind::StreamingConnection => ApiResource::erase::<StreamingConnection>(&()),
            ServedKind::StreamingDataflow => ApiResource::erase::<StreamingDataflow>(&()),
        }
    }
}

/// The CRDs of `kinds` as one YAML stream, `---` between documents, as `kubectl apply -f -` takes it. For a
/// single kind it is exactly that kind's committed file.
pub fn definitions_yaml(kinds: &[ServedKind]) -> String {
    kinds
        .iter()
        .map(|kind| kind.definition_yaml())
        .collect::<Vec<_>>()
        .join("---\n")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_served_kinds_names_are_those_of_its_generated_crd() {
        for kind in ServedKind::ALL {
            let crd = kind.definition();
            let resource = kind.api_resource();
            assert_eq!(crd.spec.names.kind, kind.kind());
            assert_eq!(crd.spec.names.singular.as_deref(), Some(kind.singular()));
            assert_eq!(crd.spec.group, API_GROUP);
            assert_eq!(
                crd.metadata.name.as_deref(),
                Some(format!("{}.{API_GROUP}", resource.plural).as_str())
            );
            assert_eq!(resource.kind, kind.kind());
            assert_eq!(resource.api_version, format!("{API_GROUP}/{API_VERSION}"));
        }
    }

    #[test]
    fn the_stream_of_every_crd_parses_back_into_one_document_per_kind() {
        let stream = definitions_yaml(&ServedKind::ALL);
        let documents: Vec<CustomResourceDefinition> =
            serde_saphyr::from_multiple(&stream).unwrap();
        let kinds: Vec<&str> = documents
            .iter()
            .map(|crd| crd.spec.names.kind.as_str())
            .collect();
        assert_eq!(kinds, ["StreamingConnection", "StreamingDataflow"]);
        assert_eq!(documents[1], ServedKind::StreamingDataflow.definition());
    }

    #[test]
    fn the_stream_of_one_kind_is_that_kinds_file() {
        for kind in ServedKind::ALL {
            let yaml = kind.definition_yaml();
            assert_eq!(definitions_yaml(&[kind]), yaml);
            // The stream joins documents after their last line.
            assert!(yaml.ends_with('\n'), "{kind:?}");
            assert!(!yaml.starts_with("---"), "{kind:?}");
        }
    }
}
