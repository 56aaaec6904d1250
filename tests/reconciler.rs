//! Reconciler tests: the real reconcile function against a fake Kubernetes API server (which
//! records every call) and the emulator (whose request log records every Flow Service call). Each
//! test asserts the exact sequence of calls on both sides.

use std::sync::Arc;
use std::time::Duration;

use aep_emulator::{DEMO_CLIENT_SECRET, EmulatorConfig};
use aep_streaming_operator::api::{DeletionPolicy, StreamingConnection};
use aep_streaming_operator::controller::{self, Context};
use aep_streaming_operator::metrics::Metrics;
use aep_testkit::admin::{EmulatorConnection, IMS_TOKEN_ROUTE, rule};
use aep_testkit::emulator::{CONNECTION_ROUTE as CONNECTION, CONNECTIONS};
use aep_testkit::fake_apiserver::FakeApiServer;
use aep_testkit::fixtures::{
    NAMESPACE, StreamingConnectionExt, credentials_secret, requeue_after, settings,
    streaming_connection,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::json;

const SC_PATH: &str =
    "/apis/streaming.aep-operator.dev/v1alpha1/namespaces/marketing/streamingconnections";

struct Harness {
    kube: FakeApiServer,
    /// The platform, with its admin API at `platform.admin`.
    platform: aep_testkit::emulator::Harness,
    ctx: Arc<Context>,
    store: Writer<StreamingConnection>,
}

impl Harness {
    /// Every reconcile counts as a periodic resync (resync interval zero), so each one reads the
    /// connection from Flow Service: the call sequences below are those of a due resync.
    async fn new() -> Self {
        Self::with_resync(Duration::ZERO).await
    }

    async fn with_resync(resync_interval: Duration) -> Self {
        Self::with(resync_interval, EmulatorConfig::default()).await
    }

    async fn with(resync_interval: Duration, platform: EmulatorConfig) -> Self {
        let platform = aep_testkit::emulator::Harness::with(platform).await;
        let flow = platform.flow_client();
        let kube = FakeApiServer::default();
        kube.insert(&credentials_secret("aep-credentials", DEMO_CLIENT_SECRET));
        let (reader, store) = reflector::store();
        let settings = settings(resync_interval);
        let ctx = Arc::new(Context::new(
            kube.client(),
            flow,
            reader,
            settings,
            Arc::new(Metrics::default()),
        ));
        Self {
            kube,
            platform,
            ctx,
            store,
        }
    }

    /// A new operator process (a restart, or another replica taking the lead): the same API server
    /// and platform, a fresh controller memory and a cache filled from the API server.
    fn restart(&mut self) {
        let (reader, mut store) = reflector::store();
        for name in self.object_names() {
            store.apply_watcher_event(&watcher::Event::Apply(self.object(&name)));
        }
        self.ctx = Arc::new(Context::new(
            self.kube.client(),
            self.platform.flow_client(),
            reader,
            self.ctx.settings.clone(),
            Arc::new(Metrics::default()),
        ));
        self.store = store;
    }

    fn object_names(&self) -> Vec<String> {
        self.store
            .as_reader()
            .state()
            .iter()
            .filter_map(|object| object.metadata.name.clone())
            .collect()
    }

    /// Stores the object in the fake API server and in the controller's cache.
    fn apply(&mut self, object: StreamingConnection) {
        self.kube.insert(&object);
        self.store.apply_watcher_event(&watcher::Event::Apply(
            self.object(object.metadata.name.as_deref().unwrap()),
        ));
    }

    fn object(&self, name: &str) -> StreamingConnection {
        serde_json::from_value(
            self.kube
                .get(NAMESPACE, &format!("streamingconnections/{name}"))
                .unwrap(),
        )
        .unwrap()
    }

    async fn reconcile(&mut self, name: &str) -> Result<Action, controller::Error> {
        let object = self.object(name);
        self.store
            .apply_watcher_event(&watcher::Event::Apply(object.clone()));
        let result = controller::reconcile(Arc::new(object), self.ctx.clone()).await;
        // As the watch would, the cache sees what the reconcile wrote.
        self.store
            .apply_watcher_event(&watcher::Event::Apply(self.object(name)));
        result
    }

    /// Reconciles until the finalizer is in place and one full pass has run.
    async fn converge(&mut self, name: &str) -> Result<Action, controller::Error> {
        self.reconcile(name).await.unwrap();
        self.reconcile(name).await
    }

    /// The Flow Service calls since the last clear, as `METHOD route status` (token requests left out).
    async fn flow_calls(&self) -> Vec<String> {
        let requests = self.platform.admin.requests().await;
        requests
            .log
            .iter()
            .filter(|entry| entry.route != IMS_TOKEN_ROUTE)
            .map(|entry| entry.summary())
            .collect()
    }

    async fn clear_calls(&self) {
        self.platform.admin.clear_requests().await;
        self.kube.clear_calls();
    }

    async fn emulator_connections(&self) -> Vec<EmulatorConnection> {
        self.platform.admin.connections().await
    }

    /// Creates a connection directly in the emulator, as another tool would (no description).
    async fn create_in_emulator(&self, name: &str) -> String {
        let mut body = aep_testkit::emulator::streaming_connection(name);
        body.as_object_mut().unwrap().remove("description");
        self.platform.create_in("prod", body).await.0
    }

    fn condition(&self, name: &str, type_: &str) -> (String, String) {
        let object = self.object(name);
        let condition = object
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"));
        (condition.status, condition.reason)
    }
}

fn k8s(verb: &str, path: &str) -> String {
    format!("{verb} {path}")
}

#[tokio::test]
async fn first_create_adds_the_finalizer_then_creates_publishes_and_becomes_ready() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.kube.calls(),
        vec![k8s("PATCH", &format!("{SC_PATH}/web"))],
        "the finalizer, nothing else: the first conditions come with the next write"
    );
    assert_eq!(h.object("web").status, None);
    assert_eq!(h.flow_calls().await, Vec::<String>::new());
    h.clear_calls().await;

    let action = h.reconcile("web").await.unwrap();
    assert_eq!(
        h.kube.writes(),
        vec![
            // the first conditions (Reconciling: Creating) with the create-pending marker
            k8s("PATCH", &format!("{SC_PATH}/web/status")),
            k8s("PATCH", "/api/v1/namespaces/marketing/configmaps/web-inlet"),
            k8s("PATCH", &format!("{SC_PATH}/web/status")), // the id, the inlet, Ready
        ],
        "with the finalizer, four writes per created object"
    );
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("POST {CONNECTIONS} 201"),
            format!("GET {CONNECTION} 200")
        ]
    );
    assert_eq!(h.kube.events(), vec![("Normal".into(), "Created".into())]);
    assert!(
        action != Action::await_change(),
        "a Ready object is resynced periodically"
    );

    let object = h.object("web");
    let status = object.status.unwrap();
    assert_eq!(h.condition("web", "Ready"), ("True".into(), "Ready".into()));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.pending_create, None);
    assert_eq!(status.inlet_id.as_ref().unwrap().len(), 64);
    assert_eq!(status.state.as_deref(), Some("enabled"));
    let config_map: ConfigMap =
        serde_json::from_value(h.kube.get(NAMESPACE, "configmaps/web-inlet").unwrap()).unwrap();
    let data = config_map.data.unwrap();
    assert_eq!(data["INLET_URL"], status.inlet_url.unwrap());
    assert_eq!(data["CONNECTION_ID"], status.connection_id.unwrap());
    let connections = h.emulator_connections().await;
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0].name, "marketing/web");
}

#[tokio::test]
async fn an_unchanged_resync_reads_but_writes_nothing() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.kube.writes(),
        Vec::<String>::new(),
        "no status patch, no ConfigMap apply"
    );
    assert_eq!(h.kube.events(), vec![]);
    assert_eq!(
        h.flow_calls().await,
        vec![format!("GET {CONNECTION} 200")],
        "no PATCH to Flow Service"
    );
}

#[tokio::test]
async fn adopting_by_id_reads_the_connection_and_creates_nothing() {
    let mut h = Harness::new().await;
    let id = h.create_in_emulator("existing").await;
    let mut object = streaming_connection("web").finalized();
    object.spec.connection_id = Some(id.clone());
    object.spec.connection_name = Some("existing".into());
    h.apply(object);
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, vec![format!("GET {CONNECTION} 200")]);
    assert_eq!(
        h.kube.writes(),
        vec![
            k8s("PATCH", "/api/v1/namespaces/marketing/configmaps/web-inlet"),
            k8s("PATCH", &format!("{SC_PATH}/web/status")),
        ]
    );
    assert_eq!(h.kube.events(), vec![("Normal".into(), "Adopted".into())]);
    assert_eq!(h.object("web").status.unwrap().connection_id, Some(id));
    assert_eq!(h.emulator_connections().await.len(), 1);
}

#[tokio::test]
async fn a_connection_managed_by_another_object_is_not_adopted() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("first"));
    h.converge("first").await.unwrap();
    let id = h.object("first").status.unwrap().connection_id.unwrap();
    let mut second = streaming_connection("second").finalized();
    second.spec.connection_id = Some(id);
    h.apply(second);

    let error = h.reconcile("second").await.unwrap_err();
    assert_eq!(error.reason(), "ConnectionConflict");
    assert!(error.to_string().contains("marketing/first"), "{error}");
    assert_eq!(
        h.condition("second", "Stalled"),
        ("True".into(), "ConnectionConflict".into())
    );
}

#[tokio::test]
async fn an_interrupted_create_that_was_committed_is_adopted_not_repeated() {
    let mut h = Harness::new().await;
    let object = streaming_connection("web")
        .finalized()
        .with_pending_create(Timestamp::now() - Duration::from_secs(30));
    h.apply(object);
    // The POST of the interrupted attempt reached Flow Service.
    let id = h.create_in_emulator("marketing/web").await;
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![format!("GET {CONNECTIONS} 200")],
        "a lookup by name, no POST"
    );
    assert_eq!(
        h.kube.writes(),
        vec![
            k8s("PATCH", "/api/v1/namespaces/marketing/configmaps/web-inlet"),
            k8s("PATCH", &format!("{SC_PATH}/web/status")), // the id (marker cleared), Ready
        ]
    );
    assert_eq!(
        h.kube.events(),
        vec![("Normal".into(), "CreateResumed".into())]
    );
    assert_eq!(h.object("web").status.unwrap().connection_id, Some(id));
    assert_eq!(h.emulator_connections().await.len(), 1);
}

#[tokio::test]
async fn an_interrupted_create_that_never_arrived_is_created_again() {
    let mut h = Harness::new().await;
    let object = streaming_connection("web")
        .finalized()
        .with_pending_create(Timestamp::now());
    h.apply(object);
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET {CONNECTIONS} 200"),
            format!("POST {CONNECTIONS} 201"),
            format!("GET {CONNECTION} 200")
        ]
    );
    assert_eq!(h.emulator_connections().await.len(), 1);
    assert_eq!(h.condition("web", "Ready").0, "True");

    // The unanswered request commits after all, later than anyone could wait for it: the next
    // resync finds the unreferenced connection and reports it (it cannot prove it is ours).
    let late = h.create_in_emulator("marketing/web").await;
    h.clear_calls().await;
    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET {CONNECTION} 200"),
            format!("GET {CONNECTIONS} 200")
        ]
    );
    assert!(
        h.kube
            .events()
            .contains(&("Warning".into(), "DuplicateFound".into())),
        "{:?}",
        h.kube.events()
    );
    assert_ne!(h.object("web").status.unwrap().connection_id.unwrap(), late);
    // Reported once: the following resyncs only read the connection.
    h.clear_calls().await;
    h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, vec![format!("GET {CONNECTION} 200")]);
}

#[tokio::test]
async fn an_ambiguous_interrupted_create_creates_nothing_and_is_looked_at_again_later() {
    let mut h = Harness::new().await;
    let object = streaming_connection("web")
        .finalized()
        .with_pending_create(Timestamp::now());
    h.apply(object);
    h.create_in_emulator("marketing/web").await;
    h.create_in_emulator("marketing/web").await;
    h.clear_calls().await;

    let error = h.reconcile("web").await.unwrap_err();
    assert_eq!(error.reason(), "AmbiguousCreate");
    assert!(
        error.to_string().contains("spec.connectionId"),
        "the message says how to resolve it: {error}"
    );
    assert_eq!(h.flow_calls().await, vec![format!("GET {CONNECTIONS} 200")]);
    // Another object may claim one of the candidates later, which resolves it: retried with the
    // backoff rather than given up.
    assert_eq!(
        h.condition("web", "Reconciling"),
        ("True".into(), "AmbiguousCreate".into())
    );
    assert_eq!(
        h.kube.events(),
        vec![("Warning".into(), "AmbiguousCreate".into())]
    );
    assert_ne!(
        controller::error_policy(Arc::new(h.object("web")), &error, h.ctx.clone()),
        Action::await_change()
    );
    assert_eq!(h.emulator_connections().await.len(), 2, "nothing created");
}

#[tokio::test]
async fn a_create_committed_then_failed_is_recovered_without_a_duplicate() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web").finalized());
    h.platform.admin.add_fault(rule(json!({"method": "POST", "route": CONNECTIONS, "action": "commitThenFail", "status": 500, "times": 1})))
        .await;

    let error = h.reconcile("web").await.unwrap_err();
    assert_eq!(error.reason(), "FlowServiceUnavailable");
    assert!(
        h.object("web").status.unwrap().pending_create.is_some(),
        "the marker survives the failure"
    );
    assert_eq!(
        h.condition("web", "Reconciling"),
        ("True".into(), "FlowServiceUnavailable".into())
    );

    h.reconcile("web").await.unwrap();
    assert_eq!(h.emulator_connections().await.len(), 1);
    assert_eq!(h.condition("web", "Ready").0, "True");
}

#[tokio::test]
async fn a_description_change_is_patched_with_if_match() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    let before = h.object("web").status.unwrap().etag.unwrap();
    let mut object = h.object("web");
    object.spec.description = Some("Clickstream".into());
    object.metadata.generation = Some(2);
    h.apply(object);
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET {CONNECTION} 200"),
            format!("PATCH {CONNECTION} 200")
        ]
    );
    assert_eq!(
        h.kube.writes(),
        vec![k8s("PATCH", &format!("{SC_PATH}/web/status"))],
        "new etag and generation"
    );
    let status = h.object("web").status.unwrap();
    assert_ne!(status.etag.unwrap(), before);
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(
        h.emulator_connections().await[0].description.as_deref(),
        Some("Clickstream")
    );
    assert_eq!(h.kube.events(), vec![("Normal".into(), "Updated".into())]);
}

/// `FLOW-1445-400` ("PATCH Connection Feature not enabled", the catalogue's code for an organization
/// that may not update connections), in Flow Service's problem envelope.
fn update_not_enabled() -> serde_json::Value {
    json!({
        "method": "PATCH", "route": CONNECTION, "status": 400,
        "body": {
            "type": "https://ns.adobe.com/aep/errors/FLOW-1445-400",
            "title": "Bad Request", "status": 400,
            "report": {"detailed-message": "PATCH Connection Feature not enabled"}
        }
    })
}

#[tokio::test]
async fn an_update_the_organization_does_not_allow_is_tried_once_and_reported_while_ready() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    h.platform.admin.add_fault(rule(update_not_enabled())).await;
    let mut object = h.object("web");
    object.spec.description = Some("Clickstream".into());
    object.metadata.generation = Some(2);
    h.apply(object);
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET {CONNECTION} 200"),
            format!("PATCH {CONNECTION} 400")
        ],
        "one attempt"
    );
    assert_eq!(
        h.kube.events(),
        vec![("Warning".into(), "UpdateNotAllowed".into())]
    );
    // Still Ready (the inlet works and stays published), with a reason that says what is not applied.
    assert_eq!(
        h.condition("web", "Ready"),
        ("True".into(), "UpdateNotAllowed".into())
    );
    assert_eq!(h.condition("web", "Stalled").0, "False");
    assert_eq!(h.condition("web", "Reconciling").0, "False");
    let object = h.object("web");
    let status = object.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, Some(2));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(
        ready.message.contains("spec.description") && ready.message.contains("FLOW-1445-400"),
        "{}",
        ready.message
    );
    assert!(h.kube.get(NAMESPACE, "configmaps/web-inlet").is_some());
    assert_eq!(h.emulator_connections().await[0].description, None);

    // A simulated hour of resyncs (every reconcile is a due resync here): reads, never a PATCH,
    // no status write, no event.
    h.clear_calls().await;
    for _ in 0..12 {
        h.ctx.advance_clock(Duration::from_secs(300));
        h.reconcile("web").await.unwrap();
    }
    let calls = h.flow_calls().await;
    assert!(
        calls.iter().all(|call| !call.starts_with("PATCH")),
        "{calls:?}"
    );
    assert!(h.kube.writes().is_empty(), "{:?}", h.kube.writes());
    assert!(h.kube.events().is_empty());
    assert_eq!(
        h.condition("web", "Ready"),
        ("True".into(), "UpdateNotAllowed".into())
    );

    // A new spec is tried again (once); once Adobe allows it, it goes through and the reason clears.
    h.platform.admin.clear_faults().await;
    let mut object = h.object("web");
    object.spec.description = Some("Clickstream, v2".into());
    object.metadata.generation = Some(3);
    h.apply(object);
    h.clear_calls().await;
    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET {CONNECTION} 200"),
            format!("PATCH {CONNECTION} 200")
        ]
    );
    assert_eq!(h.condition("web", "Ready"), ("True".into(), "Ready".into()));
    assert_eq!(
        h.emulator_connections().await[0].description.as_deref(),
        Some("Clickstream, v2")
    );
}

#[tokio::test]
async fn a_rename_in_an_organization_without_patch_is_reported_not_retried() {
    // The emulator's organization-level switch answers every PATCH of the demo organization with the
    // catalogue's `FLOW-1445-400`.
    let mut h = Harness::with(
        Duration::ZERO,
        EmulatorConfig {
            patch_disabled_orgs: vec![aep_emulator::DEMO_ORG_ID.to_owned()],
            ..EmulatorConfig::default()
        },
    )
    .await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    let mut object = h.object("web");
    object.spec.connection_name = Some("Web events, renamed".into());
    object.metadata.generation = Some(2);
    h.apply(object);
    h.clear_calls().await;

    for _ in 0..5 {
        h.reconcile("web").await.unwrap();
        h.ctx.advance_clock(Duration::from_secs(600));
    }
    let patches = h
        .flow_calls()
        .await
        .into_iter()
        .filter(|call| call.starts_with("PATCH"))
        .collect::<Vec<_>>();
    assert_eq!(patches, vec![format!("PATCH {CONNECTION} 400")]);
    assert_eq!(
        h.condition("web", "Ready"),
        ("True".into(), "UpdateNotAllowed".into())
    );
    let object = h.object("web");
    let ready = object
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .clone();
    assert!(ready.contains("spec.connectionName"), "{ready}");
    assert!(!ready.contains("spec.description"), "{ready}");
}

#[tokio::test]
async fn a_cleared_description_is_patched_once_and_stays_cleared() {
    let mut h = Harness::new().await;
    let mut object = streaming_connection("web");
    object.spec.description = Some("Clickstream".into());
    h.apply(object);
    h.converge("web").await.unwrap();
    let mut object = h.object("web");
    object.spec.description = None;
    object.metadata.generation = Some(2);
    h.apply(object);
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET {CONNECTION} 200"),
            format!("PATCH {CONNECTION} 200"),
            format!("GET {CONNECTION} 200")
        ],
        "one PATCH, then the cleared description reads back as none"
    );
    assert!(
        h.emulator_connections().await[0]
            .description
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(h.condition("web", "Ready"), ("True".into(), "Ready".into()));
}

#[tokio::test]
async fn a_connection_deleted_out_of_band_is_recreated_with_an_event() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    let old_id = h.object("web").status.unwrap().connection_id.unwrap();
    h.platform.admin.reset().await;
    h.clear_calls().await;

    // One 404 is not proof (Flow Service is eventually consistent): the operator reads again,
    // and looks the name up, over a window before it concludes the connection is gone.
    for _ in 0..2 {
        h.reconcile("web").await.unwrap();
        assert_eq!(
            h.flow_calls().await,
            vec![
                format!("GET {CONNECTION} 404"),
                format!("GET {CONNECTIONS} 200")
            ]
        );
        assert_eq!(
            h.condition("web", "Reconciling"),
            ("True".into(), "ConfirmingDeletion".into())
        );
        h.clear_calls().await;
        h.ctx.advance_clock(Duration::from_secs(60));
    }
    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET {CONNECTION} 404"),
            format!("GET {CONNECTIONS} 200"),
            format!("POST {CONNECTIONS} 201"),
            format!("GET {CONNECTION} 200")
        ]
    );
    assert!(
        h.kube
            .events()
            .contains(&("Warning".into(), "Recreated".into()))
    );
    let new_id = h.object("web").status.unwrap().connection_id.unwrap();
    assert_ne!(new_id, old_id);
    let config_map = h.kube.get(NAMESPACE, "configmaps/web-inlet").unwrap();
    assert_eq!(config_map["data"]["CONNECTION_ID"], new_id.as_str());
}

#[tokio::test]
async fn deleting_with_the_delete_policy_deletes_the_connection_then_the_finalizer() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    let mut object = h.object("web");
    object.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    h.apply(object);
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![format!("DELETE {CONNECTION} 204")]
    );
    assert_eq!(
        h.kube.writes(),
        vec![k8s("PATCH", &format!("{SC_PATH}/web"))],
        "only the finalizer removal"
    );
    assert!(
        h.object("web")
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(h.emulator_connections().await.len(), 0);
    assert_eq!(h.kube.events(), vec![("Normal".into(), "Deleted".into())]);
}

#[tokio::test]
async fn deleting_a_connection_already_gone_still_removes_the_finalizer() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    h.platform.admin.reset().await;
    let mut object = h.object("web");
    object.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    h.apply(object);
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![format!("DELETE {CONNECTION} 404")]
    );
    assert!(
        h.object("web")
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn deleting_with_the_orphan_policy_leaves_the_connection() {
    let mut h = Harness::new().await;
    let mut object = streaming_connection("web");
    object.spec.deletion_policy = DeletionPolicy::Orphan;
    h.apply(object);
    h.converge("web").await.unwrap();
    let mut object = h.object("web");
    object.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    h.apply(object);
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, Vec::<String>::new());
    assert_eq!(
        h.kube.writes(),
        vec![k8s("PATCH", &format!("{SC_PATH}/web"))]
    );
    assert_eq!(h.emulator_connections().await.len(), 1);
    assert_eq!(h.kube.events(), vec![("Normal".into(), "Orphaned".into())]);
}

/// The StreamingConnection CRD as the API server shows it while `kubectl delete crd` runs.
fn definition_being_deleted() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "streamingconnections.streaming.aep-operator.dev",
            "deletionTimestamp": "2026-12-01T00:00:00Z",
            "finalizers": ["customresourcecleanup.apiextensions.k8s.io"],
        },
    })
}

#[tokio::test]
async fn deleting_the_crd_orphans_the_connection_with_a_warning_whatever_the_policy() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    let id = h.object("web").status.unwrap().connection_id.unwrap();
    h.kube.insert(&definition_being_deleted());
    let mut object = h.object("web");
    object.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    h.apply(object);
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        Vec::<String>::new(),
        "nothing is deleted in Adobe"
    );
    assert_eq!(h.emulator_connections().await.len(), 1);
    assert_eq!(
        h.kube.writes(),
        vec![k8s("PATCH", &format!("{SC_PATH}/web"))],
        "only the finalizer removal"
    );
    assert!(
        h.object("web")
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(h.kube.events(), vec![("Warning".into(), "Orphaned".into())]);
    assert_eq!(h.emulator_connections().await[0].id, id);
}

#[tokio::test]
async fn deleting_when_the_secret_is_gone_orphans_with_a_warning_instead_of_hanging() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    h.kube
        .insert(&credentials_secret("other", DEMO_CLIENT_SECRET));
    let mut object = h.object("web");
    object.spec.credentials_ref.name = "deleted-secret".into();
    object.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    h.apply(object);
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert!(
        h.object("web")
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(h.kube.events(), vec![("Warning".into(), "Orphaned".into())]);
    assert_eq!(h.emulator_connections().await.len(), 1);
}

#[tokio::test]
async fn a_missing_secret_stalls_and_waits_for_a_change() {
    let mut h = Harness::new().await;
    let mut object = streaming_connection("web").finalized();
    object.spec.credentials_ref.name = "not-there".into();
    h.apply(object);
    h.clear_calls().await;

    let error = h.reconcile("web").await.unwrap_err();
    assert_eq!(error.reason(), "CredentialsNotFound");
    assert_eq!(
        h.kube.calls(),
        vec![
            k8s("GET", "/api/v1/namespaces/marketing/secrets/not-there"),
            k8s("PATCH", &format!("{SC_PATH}/web/status")),
            k8s("POST", "/apis/events.k8s.io/v1/namespaces/marketing/events"),
        ]
    );
    assert_eq!(h.flow_calls().await, Vec::<String>::new());
    assert_eq!(
        h.condition("web", "Ready"),
        ("False".into(), "CredentialsNotFound".into())
    );
    assert_eq!(
        h.condition("web", "Stalled"),
        ("True".into(), "CredentialsNotFound".into())
    );
    assert_eq!(
        controller::error_policy(Arc::new(h.object("web")), &error, h.ctx.clone()),
        Action::await_change()
    );

    // Whatever triggers it (its own status write, say), nothing is tried again until the object
    // or its Secret changes: no read, no write.
    h.clear_calls().await;
    assert_eq!(h.reconcile("web").await.unwrap(), Action::await_change());
    assert_eq!(h.kube.calls(), Vec::<String>::new());

    // An on-demand check is a change: tried again, the same failure writes no new status.
    let mut changed = h.object("web");
    changed.metadata.annotations = Some(
        [(
            "streaming.aep-operator.dev/reconcile-requested-at".to_string(),
            "now".to_string(),
        )]
        .into(),
    );
    h.apply(changed);
    h.clear_calls().await;
    h.reconcile("web").await.unwrap_err();
    assert!(!h.kube.writes().iter().any(|w| w.ends_with("/status")));
}

#[tokio::test]
async fn rejected_credentials_stall_as_credentials_invalid_and_never_leak() {
    let mut h = Harness::new().await;
    h.kube
        .insert(&credentials_secret("wrong", "not-the-secret-42"));
    let mut object = streaming_connection("web").finalized();
    object.spec.credentials_ref.name = "wrong".into();
    h.apply(object);

    let error = h.reconcile("web").await.unwrap_err();
    assert_eq!(error.reason(), "CredentialsInvalid");
    assert_eq!(
        h.condition("web", "Stalled"),
        ("True".into(), "CredentialsInvalid".into())
    );
    assert_eq!(
        controller::error_policy(Arc::new(h.object("web")), &error, h.ctx.clone()),
        Action::await_change()
    );
    let status = serde_json::to_string(&h.object("web").status).unwrap();
    assert!(
        !status.contains("not-the-secret-42") && !error.to_string().contains("not-the-secret-42")
    );
    assert_eq!(
        h.flow_calls().await,
        Vec::<String>::new(),
        "no Flow Service call without a token"
    );
}

#[tokio::test]
async fn a_rate_limited_create_retries_no_sooner_than_retry_after() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web").finalized());
    h.platform
        .admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS, "status": 429, "retryAfter": 2, "times": 1}),
        ))
        .await;

    let error = h.reconcile("web").await.unwrap_err();
    assert_eq!(error.reason(), "RateLimited");
    assert_eq!(
        h.condition("web", "Reconciling"),
        ("True".into(), "RateLimited".into())
    );
    assert_eq!(h.condition("web", "Stalled").0, "False");
    let delay = controller::retry_delay(&h.object("web"), &error, &h.ctx)
        .expect("a transient error is retried");
    assert!(
        delay >= Duration::from_secs(2),
        "Retry-After is honoured: {delay:?}"
    );
    assert!(
        delay <= Duration::from_secs(3),
        "and not exceeded by much on a first failure: {delay:?}"
    );

    // Triggered before its time (by its own status write, say), the object does nothing.
    h.clear_calls().await;
    let action = h.reconcile("web").await.unwrap();
    assert_ne!(action, Action::await_change());
    assert_eq!(h.flow_calls().await, Vec::<String>::new());
    assert_eq!(h.kube.calls(), Vec::<String>::new());

    tokio::time::sleep(delay).await;
    h.reconcile("web").await.unwrap();
    assert_eq!(h.emulator_connections().await.len(), 1);
}

#[tokio::test]
async fn a_config_map_owned_by_someone_else_is_not_taken_over() {
    let mut h = Harness::new().await;
    let mut foreign = ConfigMap::default();
    foreign.metadata.name = Some("web-inlet".into());
    foreign.metadata.namespace = Some(NAMESPACE.into());
    foreign.data = Some([("owner".to_string(), "someone else".to_string())].into());
    h.kube.insert(&foreign);
    h.apply(streaming_connection("web").finalized());

    let error = h.reconcile("web").await.unwrap_err();
    assert_eq!(error.reason(), "ConfigMapConflict");
    assert_eq!(
        h.condition("web", "Stalled"),
        ("True".into(), "ConfigMapConflict".into())
    );
    assert_eq!(
        h.kube.get(NAMESPACE, "configmaps/web-inlet").unwrap()["data"]["owner"],
        "someone else"
    );
}

#[tokio::test]
async fn deleting_an_object_whose_adoption_conflicted_leaves_the_other_objects_connection() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("first"));
    h.converge("first").await.unwrap();
    let id = h.object("first").status.unwrap().connection_id.unwrap();
    let mut second = streaming_connection("second").finalized();
    second.spec.connection_id = Some(id.clone());
    h.apply(second);
    h.reconcile("second").await.unwrap_err();
    let mut deleting = h.object("second");
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    h.apply(deleting);
    h.clear_calls().await;

    h.reconcile("second").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        Vec::<String>::new(),
        "no DELETE of a connection it never owned"
    );
    assert!(
        h.object("second")
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(h.emulator_connections().await.len(), 1);
}

#[tokio::test]
async fn deleting_during_an_ambiguous_create_orphans_instead_of_hanging() {
    let mut h = Harness::new().await;
    let mut object = streaming_connection("web")
        .finalized()
        .with_pending_create(Timestamp::now());
    object.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    h.apply(object);
    h.create_in_emulator("marketing/web").await;
    h.create_in_emulator("marketing/web").await;
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![format!("GET {CONNECTIONS} 200")],
        "a lookup, no DELETE"
    );
    assert_eq!(h.kube.events(), vec![("Warning".into(), "Orphaned".into())]);
    assert!(
        h.object("web")
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(h.emulator_connections().await.len(), 2);
}

#[tokio::test]
async fn deleting_during_a_create_that_committed_deletes_what_it_created() {
    let mut h = Harness::new().await;
    let mut object = streaming_connection("web")
        .finalized()
        .with_pending_create(Timestamp::now());
    object.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    h.apply(object);
    h.create_in_emulator("marketing/web").await;
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET {CONNECTIONS} 200"),
            format!("DELETE {CONNECTION} 204")
        ]
    );
    assert_eq!(h.emulator_connections().await.len(), 0);
}

#[tokio::test]
async fn a_cache_that_lags_behind_the_operators_own_writes_does_not_hide_a_needed_write() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    let ready = h.object("web");

    // A failure is written while the watch is broken (an API server restart), so the cache keeps
    // showing the Ready object.
    h.platform
        .admin
        .add_fault(rule(
            json!({"method": "GET", "route": CONNECTION, "status": 503, "times": 4}),
        ))
        .await;
    controller::reconcile(Arc::new(ready.clone()), h.ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(
        h.condition("web", "Ready"),
        ("False".into(), "FlowServiceUnavailable".into())
    );

    // The platform is back; the reconcile still sees the stale Ready object from the cache.
    h.clear_calls().await;
    controller::reconcile(Arc::new(ready), h.ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        h.kube.writes(),
        vec![k8s("PATCH", &format!("{SC_PATH}/web/status"))]
    );
    assert_eq!(h.condition("web", "Ready"), ("True".into(), "Ready".into()));
}

#[tokio::test]
async fn reconciles_triggered_by_the_operators_own_writes_do_not_ask_flow_service_again() {
    let mut h = Harness::with_resync(Duration::from_secs(600)).await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    h.clear_calls().await;

    // The watch delivers the object as the status write left it; long before the next resync.
    h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, Vec::<String>::new());
    assert_eq!(h.kube.writes(), Vec::<String>::new());

    // A spec change or an on-demand check reads it again.
    let mut object = h.object("web");
    object.metadata.annotations = Some(
        [(
            "streaming.aep-operator.dev/reconcile-requested-at".to_string(),
            "now".to_string(),
        )]
        .into(),
    );
    h.apply(object);
    h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, vec![format!("GET {CONNECTION} 200")]);

    // So does the first reconcile after the Secret changed: do the new credentials work?
    h.clear_calls().await;
    h.kube
        .insert(&credentials_secret("aep-credentials", DEMO_CLIENT_SECRET));
    h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, vec![format!("GET {CONNECTION} 200")]);
}

#[tokio::test]
async fn a_new_connection_whose_inlet_is_not_provisioned_yet_is_polled_until_it_is() {
    let platform = EmulatorConfig {
        inlet_delay: Duration::from_millis(1500),
        ..EmulatorConfig::default()
    };
    let mut h = Harness::with(Duration::ZERO, platform).await;
    h.apply(streaming_connection("web").finalized());

    let action = h.reconcile("web").await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(2)),
        "look again soon, not at the next resync"
    );
    assert_eq!(
        h.condition("web", "Reconciling"),
        ("True".into(), "InletProvisioning".into())
    );
    let status = h.object("web").status.unwrap();
    assert!(status.connection_id.is_some() && status.inlet_url.is_none());
    assert!(
        h.kube.get(NAMESPACE, "configmaps/web-inlet").is_none(),
        "nothing published without an inlet"
    );

    // Its own status write triggers a reconcile at once: it waits for the poll interval.
    h.clear_calls().await;
    h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, Vec::<String>::new());

    tokio::time::sleep(Duration::from_millis(1600)).await;
    h.ctx.advance_clock(Duration::from_secs(2));
    h.reconcile("web").await.unwrap();
    assert_eq!(h.condition("web", "Ready").0, "True");
    assert!(h.object("web").status.unwrap().inlet_url.is_some());
    assert_eq!(h.emulator_connections().await.len(), 1);
}

/// Ten minutes of simulated time in which the object is reconciled every second, as if something
/// (its own status writes, a noisy watch) triggered it without pause, the error policy running
/// after each failure as the controller runs it. Returns (IMS requests, Flow requests, Kubernetes
/// writes, events).
async fn ten_simulated_minutes(h: &mut Harness, name: &str) -> (usize, usize, usize, usize) {
    for _ in 0..600 {
        let object = Arc::new(h.object(name));
        if let Err(error) = h.reconcile(name).await {
            controller::error_policy(object, &error, h.ctx.clone());
        }
        h.ctx.advance_clock(Duration::from_secs(1));
    }
    let entries = h.platform.admin.requests().await.log;
    let ims = entries
        .iter()
        .filter(|entry| entry.route == IMS_TOKEN_ROUTE)
        .count();
    (
        ims,
        entries.len() - ims,
        h.kube.writes().len(),
        h.kube.events().len(),
    )
}

#[tokio::test]
async fn ten_minutes_with_a_wrong_client_secret_cost_one_token_request_and_a_few_writes() {
    let mut h = Harness::new().await;
    h.kube
        .insert(&credentials_secret("wrong", "not-the-secret-42"));
    let mut object = streaming_connection("web");
    object.spec.credentials_ref.name = "wrong".into();
    h.apply(object);
    h.clear_calls().await;

    let (ims, flow, writes, events) = ten_simulated_minutes(&mut h, "web").await;
    eprintln!(
        "wrong client secret, 10 simulated minutes: {ims} IMS, {flow} Flow, {writes} writes, {events} events"
    );
    assert_eq!((ims, flow), (1, 0), "one mint, remembered as failed");
    assert!(writes <= 2, "finalizer, Stalled: {:?}", h.kube.writes());
    assert_eq!(events, 1);
    assert_eq!(
        h.condition("web", "Stalled"),
        ("True".into(), "CredentialsInvalid".into())
    );
}

#[tokio::test]
async fn ten_minutes_in_an_unknown_sandbox_cost_one_flow_request_and_a_few_writes() {
    let mut h = Harness::new().await;
    let mut object = streaming_connection("web");
    object.spec.sandbox = "no-such-sandbox".into();
    h.apply(object);
    h.clear_calls().await;

    let (ims, flow, writes, events) = ten_simulated_minutes(&mut h, "web").await;
    eprintln!(
        "unknown sandbox, 10 simulated minutes: {ims} IMS, {flow} Flow, {writes} writes, {events} events"
    );
    assert_eq!((ims, flow), (1, 1), "one token, one refused create");
    assert!(
        writes <= 3,
        "finalizer, marker (with the first conditions), Stalled: {:?}",
        h.kube.writes()
    );
    assert_eq!(events, 1);
    let status = h.object("web").status.unwrap();
    assert!(
        status.pending_create.is_none(),
        "a create refused for sure leaves no marker"
    );
    assert_eq!(
        h.condition("web", "Stalled"),
        ("True".into(), "InvalidSpec".into())
    );
}

#[tokio::test]
async fn ten_minutes_of_5xx_back_off_to_a_handful_of_attempts() {
    let mut h = Harness::new().await;
    h.apply(streaming_connection("web"));
    h.platform
        .admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS, "status": 503}),
        ))
        .await;
    h.clear_calls().await;

    let (_, flow, writes, _) = ten_simulated_minutes(&mut h, "web").await;
    eprintln!(
        "Flow Service answering 503 to creates, 10 simulated minutes: {flow} Flow requests, {writes} writes"
    );
    // 1 s doubling with jitter, capped at 5 min: about ten attempts in ten minutes (at most
    // twelve), each a lookup by name (the last POST may have been committed) and a POST; the
    // status changes once per attempt (the marker's time), the conditions once.
    assert!(flow <= 26, "{flow} Flow requests");
    assert!(writes <= 16, "{:?}", h.kube.writes());
}

#[tokio::test]
async fn after_a_restart_a_ready_object_is_read_at_its_phase_not_all_at_once() {
    let interval = Duration::from_secs(600);
    let mut h = Harness::with_resync(interval).await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    let before = h.object("web");
    h.restart();
    h.clear_calls().await;

    // The first look of the new process trusts the Ready status: the Secret and the ConfigMap are
    // read (Kubernetes), Flow Service is not, nothing is written.
    let action = h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, Vec::<String>::new());
    assert_eq!(h.kube.writes(), Vec::<String>::new());
    assert_eq!(
        h.kube.calls(),
        vec![
            k8s(
                "GET",
                "/api/v1/namespaces/marketing/secrets/aep-credentials"
            ),
            k8s("GET", "/api/v1/namespaces/marketing/configmaps/web-inlet"),
        ]
    );
    assert_eq!(h.object("web").status, before.status);
    // Its read is due at the object's phase of the interval: within one interval, at the same
    // moment the process before would have read it.
    let due = requeue_after(&action);
    assert!(due < interval, "{due:?}");

    // Other triggers before then (a ConfigMap event, the watch's initial list) read nothing.
    h.ctx
        .advance_clock(due.saturating_sub(Duration::from_secs(1)));
    h.clear_calls().await;
    h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, Vec::<String>::new());

    // At its phase it is read, and from then on once per interval, as before the restart.
    h.ctx.advance_clock(Duration::from_secs(2));
    let action = h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, vec![format!("GET {CONNECTION} 200")]);
    assert_eq!(h.kube.writes(), Vec::<String>::new());
    assert!(requeue_after(&action) >= interval.mul_f64(0.6));
    h.clear_calls().await;
    h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, Vec::<String>::new());
}

#[tokio::test]
async fn after_a_restart_a_config_map_changed_meanwhile_is_repaired_without_reading_flow_service() {
    let mut h = Harness::with_resync(Duration::from_secs(600)).await;
    h.apply(streaming_connection("web"));
    h.converge("web").await.unwrap();
    let published = h.kube.get(NAMESPACE, "configmaps/web-inlet").unwrap();
    h.kube
        .edit(NAMESPACE, "configmaps/web-inlet", |config_map| {
            config_map["data"]["INLET_URL"] = json!("https://example.invalid/edited-while-down");
        });
    h.restart();
    h.clear_calls().await;

    h.reconcile("web").await.unwrap();
    assert_eq!(h.flow_calls().await, Vec::<String>::new());
    assert_eq!(
        h.kube.writes(),
        vec![k8s(
            "PATCH",
            "/api/v1/namespaces/marketing/configmaps/web-inlet"
        )]
    );
    let repaired = h.kube.get(NAMESPACE, "configmaps/web-inlet").unwrap();
    assert_eq!(repaired["data"], published["data"]);
}

#[tokio::test]
async fn after_a_restart_an_object_not_plainly_ready_or_asked_to_check_is_read_at_once() {
    let ready_for_an_older_generation = |object: &mut StreamingConnection| {
        object.metadata.generation = Some(2);
    };
    let check_requested = |object: &mut StreamingConnection| {
        object.metadata.annotations = Some(
            [(
                "streaming.aep-operator.dev/reconcile-requested-at".to_string(),
                "2026-12-01T08:00:00Z".to_string(),
            )]
            .into(),
        );
    };
    let update_not_applied = |object: &mut StreamingConnection| {
        let status = object.status.as_mut().unwrap();
        let ready = status
            .conditions
            .iter_mut()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        ready.reason = "UpdateNotAllowed".into();
    };
    type Change<'a> = &'a dyn Fn(&mut StreamingConnection);
    let cases: [(&str, Change); 3] = [
        (
            "Ready for an older generation",
            &ready_for_an_older_generation,
        ),
        ("reconcile-requested-at set", &check_requested),
        ("Ready except an update", &update_not_applied),
    ];
    for (case, change) in cases {
        let mut h = Harness::with_resync(Duration::from_secs(600)).await;
        h.apply(streaming_connection("web"));
        h.converge("web").await.unwrap();
        let mut object = h.object("web");
        change(&mut object);
        h.kube.insert(&object);
        h.restart();
        h.clear_calls().await;

        h.reconcile("web").await.unwrap();
        assert_eq!(
            h.flow_calls().await,
            vec![format!("GET {CONNECTION} 200")],
            "{case}"
        );
    }
}
