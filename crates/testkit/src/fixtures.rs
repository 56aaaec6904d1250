//! Test fixtures that read like sentences: `streaming_connection("web").with_description("…").finalized()`.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use aep_emulator::{DEMO_CLIENT_ID, DEMO_ORG_ID};
use aep_flow::{Connection, STREAMING_CONNECTION_SPEC_ID};
use aep_streaming_operator::api::{
    ConfigMapTemplate, ConnectionReference, FINALIZER, PendingCreate, SecretReference,
    StreamingConnection, StreamingConnectionSpec, StreamingConnectionStatus, StreamingDataflow,
    StreamingDataflowSpec,
};
use aep_streaming_operator::controller::desired;

/// The namespace every fixture lives in.
pub const NAMESPACE: &str = "marketing";

/// A StreamingConnection `name` in namespace `marketing`, sandbox `prod`, with Secret `aep-credentials`.
pub fn streaming_connection(name: &str) -> StreamingConnection {
    StreamingConnection {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: StreamingConnectionSpec {
            sandbox: "prod".to_string(),
            credentials_ref: SecretReference {
                name: "aep-credentials".to_string(),
            },
            ..StreamingConnectionSpec::default()
        },
        status: None,
    }
}

/// Builders on a StreamingConnection fixture.
pub trait StreamingConnectionExt: Sized {
    /// Names the Flow Service connection explicitly (`spec.connectionName`).
    fn with_connection_name(self, name: &str) -> Self;
    /// Sets `spec.description`.
    fn with_description(self, description: &str) -> Self;
    /// Adds a label to the published ConfigMap's template.
    fn with_config_map_label(self, key: &str, value: &str) -> Self;
    /// With the operator's finalizer in place, as after its first reconcile.
    fn finalized(self) -> Self;
    /// As an interrupted create leaves it: a create-pending marker from `started_at` and no connection id.
    fn with_pending_create(self, started_at: Timestamp) -> Self;
}

impl StreamingConnectionExt for StreamingConnection {
    fn with_connection_name(mut self, name: &str) -> Self {
        self.spec.connection_name = Some(name.to_string());
        self
    }

    fn with_description(mut self, description: &str) -> Self {
        self.spec.description = Some(description.to_string());
        self
    }

    fn with_config_map_label(mut self, key: &str, value: &str) -> Self {
        let template = self
            .spec
            .config_map
            .get_or_insert_with(ConfigMapTemplate::default);
        template.labels.insert(key.to_string(), value.to_string());
        self
    }

    fn finalized(mut self) -> Self {
        self.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
        self
    }

    fn with_pending_create(mut self, started_at: Timestamp) -> Self {
        self.status = Some(StreamingConnectionStatus {
            pending_create: Some(PendingCreate {
                connection_name: desired::connection_name(&self),
                started_at: Time(started_at),
                attempted_at: None,
            }),
            ..StreamingConnectionStatus::default()
        });
        self
    }
}

/// A credentials Secret `name` in namespace `marketing` for the emulator's demo client, with `client_secret`.
pub fn credentials_secret(name: &str, client_secret: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            uid: Some(format!("uid-secret-{name}")),
            ..ObjectMeta::default()
        },
        data: Some(
            [
                ("clientId", DEMO_CLIENT_ID),
                ("clientSecret", client_secret),
                ("orgId", DEMO_ORG_ID),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
            .collect(),
        ),
        ..Secret::default()
    }
}

/// The Flow Service connection that matches `object` exactly, with its inlet provisioned.
pub fn connection_for(object: &StreamingConnection) -> Connection {
    let inlet_id = "a868e1ce".repeat(8);
    Connection {
        id: "77a05521-91d6-451c-a055-2191d6851c34".to_string(),
        name: desired::connection_name(object),
        description: object.spec.description.clone(),
        etag: "\"a500e689-0000-0200-0000-5e31df730000\"".to_string(),
        state: "enabled".to_string(),
        connection_spec_id: STREAMING_CONNECTION_SPEC_ID.to_string(),
        sandbox_name: Some(object.spec.sandbox.clone()),
        inlet_url: Some(format!("https://dcs.adobedc.net/collection/{inlet_id}")),
        inlet_id: Some(inlet_id),
        source_id: object.spec.source_id.clone(),
        data_type: Some(object.spec.data_type.as_str().to_string()),
        authentication_required: object.spec.authentication_required,
        created_at: Some(1_669_238_699_119),
        updated_at: Some(1_669_238_699_119),
    }
}

/// The emulator's demo dataset (in the default org's `prod` sandbox).
pub const DEMO_DATASET_ID: &str = "5c8c3c555033b814b69f947f";

/// A StreamingDataflow `name` in namespace `marketing` from StreamingConnection `connection` to the
/// emulator's demo dataset.
pub fn streaming_dataflow(name: &str, connection: &str) -> StreamingDataflow {
    StreamingDataflow {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: StreamingDataflowSpec {
            connection_ref: ConnectionReference {
                name: connection.to_string(),
            },
            dataset_id: DEMO_DATASET_ID.to_string(),
            ..StreamingDataflowSpec::default()
        },
        status: None,
    }
}

/// The controller's settings in the reconciler tests: resyncs every `resync_interval` (zero: every
/// reconcile is a due resync), one reconcile at a time, and no waiting for creates to settle or 404s
/// to be confirmed (the tests decide those with faults and markers, not with the clock).
pub fn settings(
    resync_interval: std::time::Duration,
) -> aep_streaming_operator::controller::Settings {
    aep_streaming_operator::controller::Settings {
        resync_interval,
        max_concurrent_reconciles: 1,
        namespace: None,
        create_settle: std::time::Duration::ZERO,
        missing_confirm_window: std::time::Duration::ZERO,
    }
}

/// When `action` asks to be run again (kube-runtime shows it only in its `Debug` form).
pub fn requeue_after(action: &kube::runtime::controller::Action) -> std::time::Duration {
    let debug = format!("{action:?}");
    let value = debug
        .split("Some(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no requeue in {debug}"));
    let number = |suffix: &str| value.strip_suffix(suffix)?.parse::<f64>().ok();
    if let Some(ms) = number("ms") {
        std::time::Duration::from_secs_f64(ms / 1e3)
    } else if let Some(us) = number("µs") {
        std::time::Duration::from_secs_f64(us / 1e6)
    } else if let Some(ns) = number("ns") {
        std::time::Duration::from_secs_f64(ns / 1e9)
    } else {
        std::time::Duration::from_secs_f64(number("s").unwrap_or_else(|| panic!("{debug}")))
    }
}
