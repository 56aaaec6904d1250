//! End-to-end tests of the StreamingDataflow kind against a REAL control plane (see `tests/e2e.rs`),
//! with the operator as a separate process under the RBAC of `deploy/` and the emulator as Adobe
//! Experience Platform: the event an application builds from the dataflow's ConfigMap lands in the
//! dataset; state, mapping and drift follow the spec; deletes go in Adobe's order; a connection waits
//! for its dataflows; a flow made outside Kubernetes blocks a delete with a reason that says so; deleting
//! the CRDs (an uninstall) orphans every object and deletes nothing in Adobe.

use std::time::Duration;

use aep_streaming_operator::api::ServedKind;
use aep_testkit::cluster::{Scenario, install, tail, wait_for};
use aep_testkit::fixtures::DEMO_DATASET_ID;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

const FLOWS: &str = "/data/foundation/flowservice/flows";

fn connection_spec(extra: Value) -> Value {
    let mut spec = json!({"sandbox": "prod", "credentialsRef": {"name": "aep-credentials"}});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    spec
}

fn dataflow_spec(connection: &str, extra: Value) -> Value {
    let mut spec = json!({"connectionRef": {"name": connection}, "datasetId": DEMO_DATASET_ID});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    spec
}

/// The emulator's whole state, raw.
async fn state(scenario: &Scenario) -> Value {
    scenario
        .http
        .get(format!("{}/_emulator/state", scenario.emulator_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn count(scenario: &Scenario, collection: &str) -> usize {
    state(scenario).await[collection]
        .as_array()
        .map_or(0, Vec::len)
}

/// The records counted in dataset `id`.
async fn records(scenario: &Scenario, id: &str) -> u64 {
    scenario
        .emulator
        .dataset(id)
        .await
        .unwrap_or_else(|| panic!("dataset {id} is in the emulator"))
        .records
}

/// The XDM envelope an application builds from the dataflow's ConfigMap.
fn envelope(data: &std::collections::BTreeMap<String, String>) -> Value {
    let schema = json!({"id": data["SCHEMA_ID"], "contentType": data["SCHEMA_CONTENT_TYPE"]});
    json!({
        "header": {
            "schemaRef": schema,
            "imsOrgId": data["IMS_ORG_ID"],
            "datasetId": data["DATASET_ID"],
            "flowId": data["FLOW_ID"],
            "source": {"name": "e2e"}
        },
        "body": {
            "xdmMeta": {"schemaRef": schema},
            "xdmEntity": {"_id": "event-1", "timestamp": "2026-11-30T12:00:00Z",
                          "eventType": "web.webpagedetails.pageViews"}
        }
    })
}

/// Events about `name` in `namespace` with `reason`.
async fn events(scenario: &Scenario, namespace: &str, name: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(scenario.admin.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|event| {
            event.involved_object.name.as_deref() == Some(name)
                && event.reason.as_deref() == Some(reason)
        })
        .filter_map(|event| event.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn an_event_built_from_the_dataflow_config_map_lands_in_the_dataset() {
    let scenario = Scenario::start(&["dataflow"]).await;
    let ns = scenario.namespace().to_string();
    // The dataflow first: it waits for its connection with a clear reason.
    scenario
        .create_dataflow(&ns, "lake", dataflow_spec("web", json!({})))
        .await;
    let waiting = scenario
        .wait_dataflow_condition(
            &ns,
            "lake",
            "Reconciling",
            "True",
            Some("WaitingForConnection"),
        )
        .await;
    assert_eq!(waiting.status.unwrap().flow_id, None);
    scenario
        .create(&ns, "web", connection_spec(json!({})))
        .await;
    scenario.wait_ready(&ns, "web").await;
    let object = scenario.wait_dataflow_ready(&ns, "lake").await;
    let status = object.status.unwrap();
    let flow_id = status.flow_id.clone().unwrap();
    assert!(status.source_connection_id.is_some() && status.target_connection_id.is_some());
    assert_eq!(status.state.as_deref(), Some("enabled"));
    assert_eq!(status.config_map_name.as_deref(), Some("lake-dataflow"));
    assert_eq!(
        (
            count(&scenario, "sourceConnections").await,
            count(&scenario, "targetConnections").await,
            count(&scenario, "flows").await
        ),
        (1, 1, 1)
    );

    let config_maps: Api<ConfigMap> = Api::namespaced(scenario.admin.clone(), &ns);
    let data = config_maps
        .get("lake-dataflow")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(data["FLOW_ID"], flow_id);
    assert_eq!(data["DATASET_ID"], DEMO_DATASET_ID);
    assert_eq!(data["SCHEMA_ID"], status.schema_ref.clone().unwrap().id);
    assert_eq!(data["SANDBOX"], "prod");
    assert_eq!(data["DATA_TYPE"], "xdm");
    assert_eq!(data["AUTHENTICATION_REQUIRED"], "false");
    let before = records(&scenario, DEMO_DATASET_ID).await;
    let response = scenario
        .http
        .post(&data["INLET_URL"])
        .json(&envelope(&data))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        records(&scenario, DEMO_DATASET_ID).await,
        before + 1,
        "the event landed"
    );

    // The run is read into the status on a resync (every 3 s here).
    let with_run = scenario
        .wait_for_object(
            scenario.dataflows(&ns),
            "lake",
            "lastRun with 1 record",
            |o| {
                o.status
                    .as_ref()
                    .and_then(|s| s.last_run.as_ref())
                    .is_some_and(|run| run.input_record_count == 1)
            },
        )
        .await;
    assert_eq!(
        with_run
            .status
            .unwrap()
            .last_run
            .unwrap()
            .output_record_count,
        1
    );

    // Disabled through the spec: the flow is disabled, the next event does not land; enabled again.
    let api = scenario.dataflows(&ns);
    api.patch(
        "lake",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"state": "disabled"}})),
    )
    .await
    .unwrap();
    let disabled = scenario.wait_dataflow_ready(&ns, "lake").await;
    assert_eq!(disabled.status.unwrap().state.as_deref(), Some("disabled"));
    let landed = records(&scenario, DEMO_DATASET_ID).await;
    scenario
        .http
        .post(&data["INLET_URL"])
        .json(&envelope(&data))
        .send()
        .await
        .unwrap();
    assert_eq!(
        records(&scenario, DEMO_DATASET_ID).await,
        landed,
        "a disabled flow ingests nothing"
    );
    api.patch(
        "lake",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"state": "enabled", "description": "Page views"}})),
    )
    .await
    .unwrap();
    let enabled = scenario.wait_dataflow_ready(&ns, "lake").await;
    assert_eq!(enabled.status.unwrap().state.as_deref(), Some("enabled"));
    let flow: Value = state(&scenario).await["flows"][0].clone();
    assert_eq!(flow["description"], "Page views");

    // Delete: the flow, then its source and target connections; the dataset stays.
    scenario.emulator.clear_requests().await;
    scenario.delete_dataflow_and_wait(&ns, "lake").await;
    let log = scenario.emulator.requests().await.log;
    let deletes: Vec<String> = log
        .iter()
        .filter(|entry| entry.method == "DELETE")
        .map(|entry| entry.route.clone())
        .collect();
    assert_eq!(
        deletes,
        vec![
            format!("{FLOWS}/{{id}}"),
            "/data/foundation/flowservice/sourceConnections/{id}".to_string(),
            "/data/foundation/flowservice/targetConnections/{id}".to_string(),
        ]
    );
    assert_eq!(count(&scenario, "flows").await, 0);
    assert_eq!(count(&scenario, "sourceConnections").await, 0);
    assert_eq!(count(&scenario, "targetConnections").await, 0);
    assert!(
        records(&scenario, DEMO_DATASET_ID).await >= 1,
        "the dataset is never touched"
    );
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn a_raw_dataflow_maps_posted_json_and_a_mapping_change_makes_a_new_version() {
    let scenario = Scenario::start(&["dataflow-raw"]).await;
    let ns = scenario.namespace().to_string();
    scenario
        .create(&ns, "raw", connection_spec(json!({"dataType": "raw"})))
        .await;
    scenario.wait_ready(&ns, "raw").await;
    // No mapping for raw data: the API server cannot tell (the data type is on another object), the
    // operator stalls with a message that says what to add.
    scenario
        .create_dataflow(&ns, "lake", dataflow_spec("raw", json!({})))
        .await;
    let stalled = scenario
        .wait_dataflow_condition(&ns, "lake", "Stalled", "True", Some("InvalidSpec"))
        .await;
    let message = stalled.status.unwrap().conditions[0].message.clone();
    assert!(message.contains("spec.mapping"), "{message}");
    assert_eq!(count(&scenario, "flows").await, 0);

    let api = scenario.dataflows(&ns);
    api.patch(
        "lake",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"mapping": [
            {"source": "page.url", "destination": "web.webPageDetails.URL"}
        ]}})),
    )
    .await
    .unwrap();
    let ready = scenario
        .wait_dataflow_ready(&ns, "lake")
        .await
        .status
        .unwrap();
    assert_eq!(ready.mapping_set_version, Some(0));
    let mapping_set_id = ready.mapping_set_id.clone().unwrap();
    let data = Api::<ConfigMap>::namespaced(scenario.admin.clone(), &ns)
        .get("lake-dataflow")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(data["DATA_TYPE"], "raw");
    let before = records(&scenario, DEMO_DATASET_ID).await;
    let response = scenario
        .http
        .post(&data["INLET_URL"])
        .header("x-adobe-flow-id", &data["FLOW_ID"])
        .json(&json!({"page": {"url": "https://example.com/"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(records(&scenario, DEMO_DATASET_ID).await, before + 1);

    api.patch(
        "lake",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"mapping": [
            {"source": "page.url", "destination": "web.webPageDetails.URL"},
            {"source": "page.name", "destination": "web.webPageDetails.name"}
        ]}})),
    )
    .await
    .unwrap();
    let updated = scenario
        .wait_dataflow_ready(&ns, "lake")
        .await
        .status
        .unwrap();
    assert_eq!(
        updated.mapping_set_id.as_deref(),
        Some(mapping_set_id.as_str())
    );
    assert_eq!(updated.mapping_set_version, Some(1));
    assert_eq!(
        count(&scenario, "flows").await,
        1,
        "the flow is updated in place"
    );
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn drift_a_disabled_flow_is_enabled_and_a_deleted_one_recreated() {
    let scenario = Scenario::start(&["dataflow-drift"]).await;
    let ns = scenario.namespace().to_string();
    scenario
        .create(&ns, "web", connection_spec(json!({})))
        .await;
    scenario.wait_ready(&ns, "web").await;
    // A dataset that does not exist: Stalled, naming it.
    scenario
        .create_dataflow(
            &ns,
            "nowhere",
            json!({"connectionRef": {"name": "web"}, "datasetId": "0123456789abcdef01234567"}),
        )
        .await;
    let stalled = scenario
        .wait_dataflow_condition(&ns, "nowhere", "Stalled", "True", Some("DatasetNotFound"))
        .await;
    let message = stalled.status.unwrap().conditions[0].message.clone();
    assert!(message.contains("0123456789abcdef01234567"), "{message}");
    scenario.delete_dataflow_and_wait(&ns, "nowhere").await;

    scenario
        .create_dataflow(&ns, "lake", dataflow_spec("web", json!({})))
        .await;
    let flow_id = scenario
        .wait_dataflow_ready(&ns, "lake")
        .await
        .status
        .unwrap()
        .flow_id
        .unwrap();

    // Disabled outside Kubernetes: enabled again on a resync.
    let response = scenario
        .flow_request(
            reqwest::Method::POST,
            &format!("/flows/{flow_id}/action?op=disable"),
        )
        .await
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let enabled_again = wait_for(
        "the flow to be enabled again",
        Duration::from_secs(60),
        || async { state(&scenario).await["flows"][0]["state"] == "enabled" },
    )
    .await;
    assert!(enabled_again, "{}", tail(&scenario.operator.log_text(), 40));

    // Deleted outside Kubernetes: confirmed gone, then recreated on the same connections.
    let response = scenario
        .flow_request(reqwest::Method::DELETE, &format!("/flows/{flow_id}"))
        .await
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let recreated = scenario
        .wait_for_object(scenario.dataflows(&ns), "lake", "a new flow id", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.flow_id.as_deref())
                .is_some_and(|id| id != flow_id)
        })
        .await;
    assert!(recreated.status.is_some());
    assert_eq!(count(&scenario, "flows").await, 1);
    assert_eq!(count(&scenario, "sourceConnections").await, 1);
    let warnings = events(&scenario, &ns, "lake", "Recreated").await;
    assert!(
        warnings.iter().any(|m| m.contains(&flow_id)),
        "a Recreated event names the deleted flow: {warnings:?}"
    );
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn a_connection_waits_for_its_dataflows_and_an_outside_flow_is_a_clear_reason() {
    let scenario = Scenario::start(&["dataflow-delete"]).await;
    let ns = scenario.namespace().to_string();
    scenario
        .create(&ns, "web", connection_spec(json!({})))
        .await;
    let connection_id = scenario
        .wait_ready(&ns, "web")
        .await
        .status
        .unwrap()
        .connection_id
        .unwrap();
    scenario
        .create_dataflow(&ns, "lake", dataflow_spec("web", json!({})))
        .await;
    scenario.wait_dataflow_ready(&ns, "lake").await;

    // Deleting the connection waits for its dataflow, saying which.
    let connections = scenario.connections(&ns);
    connections
        .delete("web", &Default::default())
        .await
        .unwrap();
    let waiting = scenario
        .wait_condition(
            &ns,
            "web",
            "Reconciling",
            "True",
            Some("WaitingForDataflows"),
        )
        .await;
    let message = waiting.status.unwrap().conditions[0].message.clone();
    assert!(message.contains(&format!("{ns}/lake")), "{message}");
    assert!(
        !events(&scenario, &ns, "web", "WaitingForDataflows")
            .await
            .is_empty()
    );
    assert_eq!(count(&scenario, "connections").await, 1);

    // A flow made outside Kubernetes on the same base connection, with the bodies Adobe documents.
    let created = |response: reqwest::Response| async move {
        let body: Value = response.json().await.unwrap();
        body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("not created: {body}"))
            .to_string()
    };
    let source = created(
        scenario
            .flow_request(reqwest::Method::POST, "/sourceConnections")
            .await
            .json(&aep_flow::source_connection_body(
                &aep_flow::NewSourceConnection {
                    name: "made by hand".into(),
                    description: None,
                    base_connection_id: connection_id.clone(),
                },
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let dataset = aep_flow::Dataset {
        id: DEMO_DATASET_ID.into(),
        name: "demo".into(),
        description: None,
        schema_ref: aep_flow::SchemaRef {
            id: "https://ns.adobe.com/demotenant/schemas/7f682c29f887512a897791e7161b90a1".into(),
            content_type: "application/vnd.adobe.xed-full+json;version=1".into(),
        },
        profile_enabled: false,
        identity_enabled: false,
        version: None,
        created_at: None,
        updated_at: None,
    };
    let target = created(
        scenario
            .flow_request(reqwest::Method::POST, "/targetConnections")
            .await
            .json(&aep_flow::target_connection_body(
                &aep_flow::NewTargetConnection::for_dataset(
                    "made by hand (target)".into(),
                    None,
                    &dataset,
                ),
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let outside_id = created(
        scenario
            .flow_request(reqwest::Method::POST, "/flows")
            .await
            .json(&aep_flow::flow_body(&aep_flow::NewFlow {
                name: "made by hand".into(),
                description: None,
                source_connection_id: source,
                target_connection_id: target,
                kind: aep_flow::FlowKind::Xdm,
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;

    // The dataflow goes (its own flow first), then the connection's delete meets the outside flow.
    scenario.delete_dataflow_and_wait(&ns, "lake").await;
    let in_use = scenario
        .wait_condition(&ns, "web", "Stalled", "True", Some("ConnectionInUse"))
        .await;
    let message = in_use
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap()
        .message;
    assert!(message.contains("deletionPolicy"), "{message}");
    assert_eq!(count(&scenario, "connections").await, 1);

    // Once the outside flow is gone, the delete goes through on the backoff.
    scenario
        .flow_request(reqwest::Method::DELETE, &format!("/flows/{outside_id}"))
        .await
        .send()
        .await
        .unwrap();
    let gone = wait_for(
        "the connection to be deleted",
        Duration::from_secs(90),
        || async { connections.get_opt("web").await.unwrap().is_none() },
    )
    .await;
    assert!(gone, "{}", tail(&scenario.operator.log_text(), 40));
    assert_eq!(count(&scenario, "connections").await, 0);
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn deleting_the_crds_orphans_every_object_with_an_event_and_keeps_everything_in_adobe() {
    let scenario = Scenario::start(&["uninstall"]).await;
    let ns = scenario.namespace().to_string();
    for name in ["web", "app", "shop"] {
        scenario.create(&ns, name, connection_spec(json!({}))).await;
    }
    scenario
        .create_dataflow(&ns, "lake", dataflow_spec("web", json!({})))
        .await;
    for name in ["web", "app", "shop"] {
        scenario.wait_ready(&ns, name).await;
    }
    scenario.wait_dataflow_ready(&ns, "lake").await;
    let before = state(&scenario).await;
    let in_adobe = |state: &Value| {
        [
            "connections",
            "sourceConnections",
            "targetConnections",
            "flows",
        ]
        .map(|collection| state[collection].as_array().map_or(0, Vec::len))
    };
    assert_eq!(in_adobe(&before), [3, 1, 1, 1]);

    // As `kubectl delete -f crds/` (or a prune of the CRD base) would: the API server then deletes every
    // object of both kinds, and the CRDs go once the operator has let every object go.
    let definitions: Api<CustomResourceDefinition> = Api::all(scenario.admin.clone());
    for kind in ServedKind::ALL {
        definitions
            .delete(kind.crd_name(), &DeleteParams::default())
            .await
            .unwrap();
    }
    let gone = wait_for(
        "both CRDs to be deleted",
        Duration::from_secs(90),
        || async {
            let mut remaining = 0;
            for kind in ServedKind::ALL {
                remaining += usize::from(
                    definitions
                        .get_opt(kind.crd_name())
                        .await
                        .unwrap()
                        .is_some(),
                );
            }
            remaining == 0
        },
    )
    .await;
    assert!(
        gone,
        "the CRDs are still there: a finalizer hangs\n{}",
        tail(&scenario.operator.log_text(), 40)
    );

    let after = state(&scenario).await;
    assert_eq!(
        in_adobe(&after),
        [3, 1, 1, 1],
        "nothing was deleted in Adobe"
    );
    assert_eq!(after["connections"], before["connections"]);
    for name in ["web", "app", "shop", "lake"] {
        let orphaned = events(&scenario, &ns, name, "Orphaned").await;
        assert_eq!(
            orphaned.len(),
            1,
            "one Orphaned event about {name}: {orphaned:?}"
        );
        assert!(
            orphaned[0].contains("CustomResourceDefinition is being deleted"),
            "{}",
            orphaned[0]
        );
    }

    // The next tests need the API back.
    install(&scenario.admin).await;
    scenario.finish().await;
}
