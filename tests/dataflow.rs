//! Reconciler tests of the StreamingDataflow kind: the real reconcile functions against a fake
//! Kubernetes API server (which records every call) and the emulator (whose request log records every
//! Flow Service call and whose state counts the objects). Crash safety is tested by stopping the
//! reconcile between each POST and the status write that records it, then counting what exists.

use std::sync::Arc;
use std::time::Duration;

use aep_emulator::{DEMO_CLIENT_SECRET, EmulatorConfig};
use aep_streaming_operator::api::{
    DataType, DataflowPart, DeletionPolicy, FieldMapping, FlowState, StreamingConnection,
    StreamingDataflow,
};
use aep_streaming_operator::controller::{self, Context, dataflow};
use aep_streaming_operator::metrics::Metrics;
use aep_testkit::admin::{IMS_TOKEN_ROUTE, rule};
use aep_testkit::fake_apiserver::FakeApiServer;
use aep_testkit::fixtures::{
    DEMO_DATASET_ID, NAMESPACE, credentials_secret, requeue_after, settings, streaming_connection,
    streaming_dataflow,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};

const SDF_PATH: &str =
    "/apis/streaming.aep-operator.dev/v1alpha1/namespaces/marketing/streamingdataflows";
const FLOWS: &str = "/data/foundation/flowservice/flows";
const SOURCE_CONNECTIONS: &str = "/data/foundation/flowservice/sourceConnections";
const TARGET_CONNECTIONS: &str = "/data/foundation/flowservice/targetConnections";

struct Harness {
    kube: FakeApiServer,
    platform: aep_testkit::emulator::Harness,
    ctx: Arc<Context>,
    connections: Writer<StreamingConnection>,
    dataflows: Writer<StreamingDataflow>,
}

impl Harness {
    async fn new() -> Self {
        let platform = aep_testkit::emulator::Harness::with(EmulatorConfig::default()).await;
        let flow = platform.flow_client();
        let kube = FakeApiServer::default();
        kube.insert(&credentials_secret("aep-credentials", DEMO_CLIENT_SECRET));
        let (connection_reader, connections) = reflector::store();
        let (dataflow_reader, dataflows) = reflector::store();
        let settings = settings(Duration::ZERO);
        let ctx = Arc::new(
            Context::new(
                kube.client(),
                flow,
                connection_reader,
                settings,
                Arc::new(Metrics::default()),
            )
            .with_dataflows(dataflow_reader),
        );
        Self {
            kube,
            platform,
            ctx,
            connections,
            dataflows,
        }
    }

    /// A Ready XDM StreamingDataflow `lake` on a Ready StreamingConnection `web`.
    async fn with_ready_dataflow() -> Self {
        let mut h = Self::new().await;
        h.ready_connection(DataType::Xdm).await;
        h.apply(streaming_dataflow("lake", "web"));
        h.converge("lake").await;
        h
    }

    /// A new operator process on the same cluster and platform: nothing remembered, the caches
    /// filled from what is stored.
    fn restart(&mut self) {
        self.restart_with(Duration::ZERO);
    }

    /// [`Self::restart`] with this resync interval.
    fn restart_with(&mut self, resync_interval: Duration) {
        let (connection_reader, connections) = reflector::store();
        let (dataflow_reader, dataflows) = reflector::store();
        self.ctx = Arc::new(
            Context::new(
                self.kube.client(),
                self.platform.flow_client(),
                connection_reader,
                settings(resync_interval),
                Arc::new(Metrics::default()),
            )
            .with_dataflows(dataflow_reader),
        );
        self.connections = connections;
        self.dataflows = dataflows;
        let connection = self.connection("web");
        self.connections
            .apply_watcher_event(&watcher::Event::Apply(connection));
    }

    /// A Ready StreamingConnection `web` (xdm unless `raw`), reconciled by the real reconciler.
    async fn ready_connection(&mut self, data_type: DataType) {
        let mut object = streaming_connection("web");
        object.spec.data_type = data_type;
        self.kube.insert(&object);
        for _ in 0..3 {
            let object = self.connection("web");
            self.connections
                .apply_watcher_event(&watcher::Event::Apply(object.clone()));
            controller::reconcile(Arc::new(object), self.ctx.clone())
                .await
                .unwrap();
        }
        let object = self.connection("web");
        self.connections
            .apply_watcher_event(&watcher::Event::Apply(object.clone()));
        assert!(
            controller::status::is_ready(object.status.as_ref(), object.metadata.generation),
            "the connection is Ready"
        );
        self.clear_calls().await;
    }

    fn connection(&self, name: &str) -> StreamingConnection {
        serde_json::from_value(
            self.kube
                .get(NAMESPACE, &format!("streamingconnections/{name}"))
                .unwrap(),
        )
        .unwrap()
    }

    fn apply(&mut self, object: StreamingDataflow) {
        self.kube.insert(&object);
        let stored = self.object(object.metadata.name.as_deref().unwrap());
        self.dataflows
            .apply_watcher_event(&watcher::Event::Apply(stored));
    }

    fn object(&self, name: &str) -> StreamingDataflow {
        serde_json::from_value(
            self.kube
                .get(NAMESPACE, &format!("streamingdataflows/{name}"))
                .unwrap(),
        )
        .unwrap()
    }

    /// Changes the stored object as `kubectl apply` would (a new generation).
    fn edit(&mut self, name: &str, change: impl FnOnce(&mut StreamingDataflow)) {
        let mut object = self.object(name);
        change(&mut object);
        object.metadata.generation = object.metadata.generation.map(|g| g + 1);
        self.kube.insert(&object);
    }

    async fn reconcile(&mut self, name: &str) -> Result<Action, controller::Error> {
        let object = self.object(name);
        self.dataflows
            .apply_watcher_event(&watcher::Event::Apply(object.clone()));
        let result = dataflow::reconcile(Arc::new(object), self.ctx.clone()).await;
        self.dataflows
            .apply_watcher_event(&watcher::Event::Apply(self.object(name)));
        result
    }

    /// The finalizer, then full passes until Ready (or `passes` run out).
    async fn converge(&mut self, name: &str) {
        for _ in 0..8 {
            // Waits (a 404 being confirmed, a flow changing state) come due.
            self.ctx.advance_clock(Duration::from_secs(5));
            let _ = self.reconcile(name).await;
            if self.ready(name) {
                return;
            }
        }
        panic!(
            "not Ready: {:?}",
            self.object(name).status.map(|s| s.conditions)
        );
    }

    fn ready(&self, name: &str) -> bool {
        let object = self.object(name);
        object.status.is_some_and(|status| {
            status.conditions.iter().any(|c| {
                c.type_ == "Ready"
                    && c.status == "True"
                    && c.observed_generation == object.metadata.generation
            })
        })
    }

    fn condition(&self, name: &str, type_: &str) -> (String, String, String) {
        let condition = self
            .object(name)
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"));
        (condition.status, condition.reason, condition.message)
    }

    async fn flow_calls(&self) -> Vec<String> {
        self.platform
            .admin
            .requests()
            .await
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

    /// The emulator's state: how many of each dataflow object exist.
    async fn counts(&self) -> (usize, usize, usize, usize) {
        let state: Value = self.platform.admin_wire("/_emulator/state").await;
        let count = |key: &str| state[key].as_array().map_or(0, Vec::len);
        (
            count("sourceConnections"),
            count("targetConnections"),
            count("mappingSets"),
            count("flows"),
        )
    }

    async fn emulator_flows(&self) -> Vec<Value> {
        let state: Value = self.platform.admin_wire("/_emulator/state").await;
        state["flows"].as_array().cloned().unwrap_or_default()
    }

    /// As `kubectl delete` leaves an object with a finalizer: a deletion timestamp.
    fn mark_deleting(&self, kind_path: &str) {
        let mut object = self.kube.get(NAMESPACE, kind_path).unwrap();
        object["metadata"]["deletionTimestamp"] = json!("2026-11-30T00:00:00Z");
        self.kube.insert(&object);
    }

    fn events(&self) -> Vec<String> {
        self.kube
            .events()
            .into_iter()
            .map(|(type_, reason)| format!("{type_} {reason}"))
            .collect()
    }
}

fn mapping(source: &str, destination: &str) -> FieldMapping {
    FieldMapping {
        source: source.to_string(),
        destination: destination.to_string(),
        ..FieldMapping::default()
    }
}

#[tokio::test]
async fn an_xdm_dataflow_is_built_in_adobes_order_under_one_marker_in_four_writes_and_published() {
    let mut h = Harness::new().await;
    h.ready_connection(DataType::Xdm).await;
    h.apply(streaming_dataflow("lake", "web"));

    h.reconcile("lake").await.unwrap();
    assert_eq!(
        h.kube.writes(),
        vec![format!("PATCH {SDF_PATH}/lake")],
        "the finalizer; the first conditions come with the first marker"
    );
    h.clear_calls().await;

    h.reconcile("lake").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET /data/foundation/catalog/dataSets/{{id}} 200"),
            format!("POST {SOURCE_CONNECTIONS} 201"),
            format!("POST {TARGET_CONNECTIONS} 201"),
            format!("POST {FLOWS} 201"),
            format!("GET {FLOWS}/{{id}} 200"),
            format!("GET /data/foundation/flowservice/runs 200"),
        ]
    );
    assert_eq!(
        h.kube.writes(),
        vec![
            // The first conditions and one marker covering the three parts, before the first POST.
            format!("PATCH {SDF_PATH}/lake/status"),
            "PATCH /api/v1/namespaces/marketing/configmaps/lake-dataflow".to_string(),
            // The three ids and Ready; the marker goes.
            format!("PATCH {SDF_PATH}/lake/status"),
        ],
        "with the finalizer above: 4 writes per created dataflow"
    );
    assert!(h.ready("lake"));
    let status = h.object("lake").status.unwrap();
    assert_eq!(status.state.as_deref(), Some("enabled"));
    assert!(status.pending_create.is_none());
    assert!(status.mapping_set_id.is_none(), "no mapping set for XDM");
    assert_eq!(
        status.schema_ref.as_ref().map(|s| s.id.as_str()),
        Some("https://ns.adobe.com/demotenant/schemas/7f682c29f887512a897791e7161b90a1")
    );
    assert_eq!(h.counts().await, (1, 1, 0, 1));

    let config_map: ConfigMap = serde_json::from_value(
        h.kube
            .get(NAMESPACE, "configmaps/lake-dataflow")
            .expect("the ConfigMap is published"),
    )
    .unwrap();
    let data = config_map.data.unwrap();
    assert_eq!(data["FLOW_ID"], status.flow_id.clone().unwrap());
    assert_eq!(data["DATASET_ID"], DEMO_DATASET_ID);
    assert_eq!(data["DATA_TYPE"], "xdm");
    assert_eq!(
        data["INLET_URL"],
        h.connection("web").status.unwrap().inlet_url.unwrap()
    );

    // A resync: reads only, no write.
    h.clear_calls().await;
    h.reconcile("lake").await.unwrap();
    assert_eq!(h.kube.writes(), Vec::<String>::new());
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET /data/foundation/catalog/dataSets/{{id}} 200"),
            format!("GET {FLOWS}/{{id}} 200"),
            format!("GET /data/foundation/flowservice/runs 200"),
        ]
    );
}

#[tokio::test]
async fn a_dataflow_waits_for_its_connection_with_a_clear_reason() {
    let mut h = Harness::new().await;
    h.apply(streaming_dataflow("lake", "web"));
    h.reconcile("lake").await.unwrap();
    h.reconcile("lake").await.unwrap();
    let (status, reason, message) = h.condition("lake", "Reconciling");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "WaitingForConnection")
    );
    assert!(
        message.contains("StreamingConnection `web` does not exist"),
        "{message}"
    );
    assert_eq!(h.flow_calls().await, Vec::<String>::new());

    h.ready_connection(DataType::Xdm).await;
    h.converge("lake").await;
    assert_eq!(h.counts().await, (1, 1, 0, 1));
}

#[tokio::test]
async fn a_missing_dataset_stalls_naming_the_id_and_creates_nothing() {
    let mut h = Harness::new().await;
    h.ready_connection(DataType::Xdm).await;
    let mut object = streaming_dataflow("lake", "web");
    object.spec.dataset_id = "0123456789abcdef01234567".to_string();
    h.apply(object);
    h.reconcile("lake").await.unwrap();
    assert!(h.reconcile("lake").await.is_err());
    let (status, reason, message) = h.condition("lake", "Stalled");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "DatasetNotFound")
    );
    assert!(message.contains("0123456789abcdef01234567"), "{message}");
    assert_eq!(h.counts().await, (0, 0, 0, 0));
}

#[tokio::test]
async fn a_raw_dataflow_needs_a_mapping_and_a_mapping_change_makes_a_new_version() {
    let mut h = Harness::new().await;
    h.ready_connection(DataType::Raw).await;
    h.apply(streaming_dataflow("lake", "web"));
    h.reconcile("lake").await.unwrap();
    assert!(h.reconcile("lake").await.is_err());
    let (_, reason, message) = h.condition("lake", "Stalled");
    assert_eq!(reason, "InvalidSpec");
    assert!(message.contains("set spec.mapping"), "{message}");

    h.edit("lake", |o| {
        o.spec.mapping = vec![mapping("page.url", "web.webPageDetails.URL")]
    });
    h.converge("lake").await;
    assert_eq!(h.counts().await, (1, 1, 1, 1));
    let status = h.object("lake").status.unwrap();
    assert_eq!(status.mapping_set_version, Some(0));
    let mapping_set_id = status.mapping_set_id.clone().unwrap();

    h.edit("lake", |o| {
        o.spec
            .mapping
            .push(mapping("page.name", "web.webPageDetails.name"))
    });
    h.converge("lake").await;
    let status = h.object("lake").status.unwrap();
    assert_eq!(
        status.mapping_set_id.as_deref(),
        Some(mapping_set_id.as_str())
    );
    assert_eq!(status.mapping_set_version, Some(1));
    let flows = h.emulator_flows().await;
    assert_eq!(flows.len(), 1);
    assert_eq!(
        flows[0]["transformations"][0]["params"]["mappingVersion"]
            .as_u64()
            .or_else(
                || flows[0]["transformations"][0]["params"]["mappingVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
            ),
        Some(1),
        "the flow points at the new version: {}",
        flows[0]
    );
    assert_eq!(h.counts().await, (1, 1, 1, 1));
}

#[tokio::test]
async fn name_description_and_state_follow_the_spec_and_drift_is_undone() {
    let mut h = Harness::with_ready_dataflow().await;

    h.edit("lake", |o| {
        o.spec.flow_name = Some("Web events to the lake".into());
        o.spec.description = Some("Page views".into());
        o.spec.state = FlowState::Disabled;
    });
    h.converge("lake").await;
    let flows = h.emulator_flows().await;
    assert_eq!(flows[0]["name"], "Web events to the lake");
    assert_eq!(flows[0]["description"], "Page views");
    assert_eq!(flows[0]["state"], "disabled");
    assert_eq!(
        h.object("lake").status.unwrap().state.as_deref(),
        Some("disabled")
    );

    // Enabled outside Kubernetes: disabled again on the next resync.
    let flow_id = h.object("lake").status.unwrap().flow_id.unwrap();
    h.platform
        .flow(
            reqwest::Method::POST,
            &format!("{FLOWS}/{flow_id}/action?op=enable"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(h.emulator_flows().await[0]["state"], "enabled");
    h.converge("lake").await;
    assert_eq!(h.emulator_flows().await[0]["state"], "disabled");
    assert_eq!(h.counts().await, (1, 1, 0, 1));
}

#[tokio::test]
async fn a_flow_deleted_outside_is_recreated_with_a_warning_after_confirmation() {
    let mut h = Harness::with_ready_dataflow().await;
    let old = h.object("lake").status.unwrap().flow_id.unwrap();
    h.platform
        .flow(reqwest::Method::DELETE, &format!("{FLOWS}/{old}"))
        .send()
        .await
        .unwrap();
    h.clear_calls().await;
    h.converge("lake").await;
    let new = h.object("lake").status.unwrap().flow_id.unwrap();
    assert_ne!(old, new);
    assert!(
        h.events().contains(&"Warning Recreated".to_string()),
        "{:?}",
        h.events()
    );
    assert_eq!(h.counts().await, (1, 1, 0, 1), "the connections are reused");
}

/// Stops a reconcile right after each POST (the answer is lost: a 502 after the commit), then lets
/// the next reconciles resume: every part exists exactly once.
#[tokio::test]
async fn a_create_interrupted_after_any_post_resumes_without_a_duplicate() {
    for (route, part) in [
        (SOURCE_CONNECTIONS, DataflowPart::SourceConnection),
        (TARGET_CONNECTIONS, DataflowPart::TargetConnection),
        (FLOWS, DataflowPart::Flow),
    ] {
        let mut h = Harness::new().await;
        h.ready_connection(DataType::Xdm).await;
        h.apply(streaming_dataflow("lake", "web"));
        h.reconcile("lake").await.unwrap();
        h.platform
            .admin
            .add_fault(rule(json!({
                "method": "POST", "route": route, "action": "commitThenFail", "status": 502, "times": 1
            })))
            .await;
        assert!(
            h.reconcile("lake").await.is_err(),
            "{route}: the lost answer fails the reconcile"
        );
        let marker = h.object("lake").status.unwrap().pending_create;
        assert_eq!(
            marker.map(|m| m.kind),
            Some(part),
            "{route}: the marker for the part whose answer was lost stays"
        );
        h.converge("lake").await;
        assert_eq!(h.counts().await, (1, 1, 0, 1), "{route}: nothing twice");
        assert!(
            h.events().contains(&"Normal CreateResumed".to_string()),
            "{route}: {:?}",
            h.events()
        );
    }
}

/// What a crash right after the flow's POST leaves (the process gone before any status write): the
/// one marker, naming the source connection, and no id. It covers the three parts.
fn crashed_after_the_last_post(h: &mut Harness) {
    let mut object = h.object("lake");
    let status = object.status.as_mut().unwrap();
    let marker = status.pending_create.as_mut().expect("a marker");
    marker.kind = DataflowPart::SourceConnection;
    marker.name = "marketing/lake (source)".to_string();
    status.source_connection_id = None;
    status.target_connection_id = None;
    status.flow_id = None;
    h.apply(object);
    h.restart();
}

/// The three POSTs of a create go out under one marker: when the process dies after the last one,
/// the next process looks up every part the marker covers and creates nothing twice; a delete from
/// the same state finds and deletes all three.
#[tokio::test]
async fn a_crash_after_the_last_post_resumes_every_part_the_one_marker_covers() {
    for deleting in [false, true] {
        let mut h = Harness::new().await;
        h.ready_connection(DataType::Xdm).await;
        h.apply(streaming_dataflow("lake", "web"));
        h.reconcile("lake").await.unwrap();
        // The flow commits and its answer is lost; the state is then set back to what a crash
        // before the failure's write leaves.
        h.platform
            .admin
            .add_fault(rule(json!({
                "method": "POST", "route": FLOWS, "action": "commitThenFail", "status": 502, "times": 1
            })))
            .await;
        assert!(h.reconcile("lake").await.is_err());
        assert_eq!(h.counts().await, (1, 1, 0, 1));
        crashed_after_the_last_post(&mut h);
        h.clear_calls().await;

        if deleting {
            h.mark_deleting("streamingdataflows/lake");
            h.reconcile("lake").await.unwrap();
            assert_eq!(
                h.counts().await,
                (0, 0, 0, 0),
                "all three found and deleted"
            );
            continue;
        }
        h.converge("lake").await;
        assert!(h.ready("lake"));
        assert_eq!(h.counts().await, (1, 1, 0, 1), "nothing twice");
        let calls = h.flow_calls().await;
        assert!(
            !calls.iter().any(|call| call.starts_with("POST")),
            "every part was looked up, none created again: {calls:?}"
        );
        let resumed = h
            .events()
            .iter()
            .filter(|event| *event == "Normal CreateResumed")
            .count();
        assert_eq!(resumed, 3, "{:?}", h.events());
        let status = h.object("lake").status.unwrap();
        assert!(status.pending_create.is_none());
        assert!(status.source_connection_id.is_some() && status.target_connection_id.is_some());
    }
}

#[tokio::test]
async fn delete_removes_the_flow_then_its_connections_and_orphan_keeps_them() {
    let mut h = Harness::with_ready_dataflow().await;
    h.clear_calls().await;
    h.mark_deleting("streamingdataflows/lake");
    h.reconcile("lake").await.unwrap();
    let calls = h.flow_calls().await;
    let deletes: Vec<&String> = calls.iter().filter(|c| c.starts_with("DELETE")).collect();
    assert_eq!(
        deletes,
        vec![
            &format!("DELETE {FLOWS}/{{id}} 204"),
            &format!("DELETE {SOURCE_CONNECTIONS}/{{id}} 204"),
            &format!("DELETE {TARGET_CONNECTIONS}/{{id}} 204"),
        ],
        "Adobe's order: {calls:?}"
    );
    assert_eq!(h.counts().await.0, 0);
    assert_eq!(h.counts().await.3, 0);

    let mut h = Harness::new().await;
    h.ready_connection(DataType::Xdm).await;
    let mut object = streaming_dataflow("kept", "web");
    object.spec.deletion_policy = DeletionPolicy::Orphan;
    h.apply(object);
    h.converge("kept").await;
    h.mark_deleting("streamingdataflows/kept");
    h.reconcile("kept").await.unwrap();
    assert_eq!(h.counts().await, (1, 1, 0, 1));
}

#[tokio::test]
async fn deleting_the_crd_orphans_the_flow_and_its_connections_with_a_warning() {
    let mut h = Harness::with_ready_dataflow().await;
    let before = h.counts().await;
    h.kube.insert(&json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "streamingdataflows.streaming.aep-operator.dev",
            "deletionTimestamp": "2026-12-01T00:00:00Z",
        },
    }));
    h.clear_calls().await;
    h.mark_deleting("streamingdataflows/lake");
    h.reconcile("lake").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        Vec::<String>::new(),
        "nothing is deleted in Adobe"
    );
    assert_eq!(h.counts().await, before);
    assert!(
        h.kube
            .events()
            .contains(&("Warning".into(), "Orphaned".into())),
        "{:?}",
        h.kube.events()
    );
}

#[tokio::test]
async fn a_connection_being_deleted_waits_for_its_dataflows_and_names_them() {
    let mut h = Harness::with_ready_dataflow().await;
    h.mark_deleting("streamingconnections/web");
    let object = h.connection("web");
    h.connections
        .apply_watcher_event(&watcher::Event::Apply(object.clone()));
    let error = controller::reconcile(Arc::new(object), h.ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "WaitingForDataflows");
    let connection = h.connection("web");
    let condition = connection
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Reconciling")
        .unwrap();
    assert_eq!(condition.reason, "WaitingForDataflows");
    assert!(
        condition.message.contains("marketing/lake"),
        "{}",
        condition.message
    );
    assert!(
        h.kube
            .events()
            .contains(&("Normal".into(), "WaitingForDataflows".into()))
    );
    let state: Value = h.platform.admin_wire("/_emulator/state").await;
    assert_eq!(
        state["connections"].as_array().map(Vec::len),
        Some(1),
        "not deleted"
    );
}

/// Data Prep cannot look a mapping set up: a create whose answer was lost makes a second set, the
/// first stays unused, and the flow is still made once.
#[tokio::test]
async fn a_lost_mapping_set_answer_costs_an_unused_set_never_a_second_flow() {
    let mut h = Harness::new().await;
    h.ready_connection(DataType::Raw).await;
    let mut object = streaming_dataflow("lake", "web");
    object.spec.mapping = vec![mapping("page.url", "web.webPageDetails.URL")];
    h.apply(object);
    h.reconcile("lake").await.unwrap();
    h.platform
        .admin
        .add_fault(rule(json!({
            "method": "POST", "route": "/data/foundation/conversion/mappingSets",
            "action": "commitThenFail", "status": 502, "times": 1
        })))
        .await;
    assert!(h.reconcile("lake").await.is_err());
    assert_eq!(
        h.object("lake")
            .status
            .unwrap()
            .pending_create
            .map(|m| m.kind),
        Some(DataflowPart::MappingSet)
    );
    h.converge("lake").await;
    assert_eq!(h.counts().await, (1, 1, 2, 1));
    let status = h.object("lake").status.unwrap();
    let flows = h.emulator_flows().await;
    assert_eq!(
        flows[0]["transformations"][0]["params"]["mappingId"],
        status.mapping_set_id.unwrap().as_str(),
        "the flow uses the set the status records"
    );
}

/// Flows made outside Kubernetes keep Flow Service from deleting the base connection
/// (`FLOW-1418-400`): the connection says so, names them and says how to proceed.
#[tokio::test]
async fn an_outside_flow_on_the_connection_is_a_clear_reason_on_delete() {
    let mut h = Harness::with_ready_dataflow().await;
    // The dataflow goes in Kubernetes (its finalizer removed by hand), its flow stays in Adobe.
    let flow_id = h.object("lake").status.unwrap().flow_id.unwrap();
    h.dataflows
        .apply_watcher_event(&watcher::Event::Delete(h.object("lake")));
    h.mark_deleting("streamingconnections/web");
    let object = h.connection("web");
    h.connections
        .apply_watcher_event(&watcher::Event::Apply(object.clone()));
    let error = controller::reconcile(Arc::new(object), h.ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "ConnectionInUse");
    let message = error.to_string();
    assert!(message.contains("deletionPolicy to Orphan"), "{message}");
    let stalled = h
        .connection("web")
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "ConnectionInUse")
    );
    let state: Value = h.platform.admin_wire("/_emulator/state").await;
    assert_eq!(state["connections"].as_array().map(Vec::len), Some(1));
    assert!(
        message.contains(&flow_id),
        "the flow Adobe named: {message}"
    );
}

#[tokio::test]
async fn after_a_restart_a_ready_dataflow_is_read_at_its_phase_and_its_config_map_repaired_now() {
    let interval = Duration::from_secs(600);
    let mut h = Harness::with_ready_dataflow().await;
    let published = h.kube.get(NAMESPACE, "configmaps/lake-dataflow").unwrap();
    h.kube
        .edit(NAMESPACE, "configmaps/lake-dataflow", |config_map| {
            config_map["data"]["FLOW_ID"] = json!("edited-while-the-operator-was-down");
        });
    let before = h.object("lake").status;
    h.restart_with(interval);
    h.clear_calls().await;

    // The first look of the new process: no read of the chain, the ConfigMap put back, no status write.
    let action = h.reconcile("lake").await.unwrap();
    assert_eq!(h.flow_calls().await, Vec::<String>::new());
    assert_eq!(
        h.kube.writes(),
        vec!["PATCH /api/v1/namespaces/marketing/configmaps/lake-dataflow".to_string()]
    );
    assert_eq!(
        h.kube.get(NAMESPACE, "configmaps/lake-dataflow").unwrap()["data"],
        published["data"]
    );
    assert_eq!(h.object("lake").status, before);
    let due = requeue_after(&action);
    assert!(due < interval, "{due:?}");

    // Other triggers before then read nothing.
    h.ctx
        .advance_clock(due.saturating_sub(Duration::from_secs(1)));
    h.clear_calls().await;
    h.reconcile("lake").await.unwrap();
    assert_eq!(h.flow_calls().await, Vec::<String>::new());
    assert_eq!(h.kube.writes(), Vec::<String>::new());

    // At its phase the chain is read, as in any resync; then once per interval.
    h.ctx.advance_clock(Duration::from_secs(2));
    let action = h.reconcile("lake").await.unwrap();
    assert_eq!(
        h.flow_calls().await,
        vec![
            format!("GET /data/foundation/catalog/dataSets/{{id}} 200"),
            format!("GET {FLOWS}/{{id}} 200"),
            format!("GET /data/foundation/flowservice/runs 200"),
        ]
    );
    assert_eq!(h.kube.writes(), Vec::<String>::new());
    assert!(requeue_after(&action) >= interval.mul_f64(0.6));
}

#[tokio::test]
async fn after_a_restart_a_dataflow_whose_spec_changed_meanwhile_is_read_at_once() {
    let mut h = Harness::with_ready_dataflow().await;
    h.edit("lake", |object| {
        object.spec.description = Some("changed while the operator was down".into());
    });
    h.restart_with(Duration::from_secs(600));
    h.clear_calls().await;

    h.reconcile("lake").await.unwrap();
    let calls = h.flow_calls().await;
    assert_eq!(
        calls.first().map(String::as_str),
        Some("GET /data/foundation/catalog/dataSets/{id} 200"),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|call| call.starts_with(&format!("PATCH {FLOWS}/"))),
        "{calls:?}"
    );
}
