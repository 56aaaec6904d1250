//! End-to-end tests against a REAL kube-apiserver + etcd + kube-controller-manager (started by
//! `make test` through `tools/cluster.sh`), with the operator as a separate process under the RBAC
//! of `deploy/` and the emulator as Adobe Experience Platform.
//!
//! They share one cluster and some watch every namespace, so `make test` runs them one at a time.
//! Run them alone with: `make cluster`, then
//! `AEP_E2E_KUBECONFIG=target/cluster/kubeconfig cargo test --test e2e -- --ignored --test-threads=1`.

use std::time::Duration;

use aep_streaming_operator::api::StreamingConnection;
use aep_testkit::admin::EmulatorConnection;
use aep_testkit::cluster::{
    LEADER_ELECTION, Scenario, admin_client, client_for, install, put_secret, tail, wait_for,
};
use aep_testkit::emulator::xdm_message;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

fn spec(extra: Value) -> Value {
    let mut spec = json!({"sandbox": "prod", "credentialsRef": {"name": "aep-credentials"}});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    spec
}

/// Expects the API server to reject `result` with a message containing `expected`.
fn assert_rejected<T: std::fmt::Debug>(result: Result<T, kube::Error>, expected: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains(expected),
                "expected `{expected}` in: {}",
                status.message
            );
        }
        other => panic!("expected a 422 mentioning `{expected}`, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn admission_rejects_invalid_manifests_with_the_crds_messages() {
    let admin = admin_client().await;
    install(&admin).await;
    let api: Api<StreamingConnection> = Api::namespaced(admin.clone(), "default");
    // Untyped, so that manifests the Rust types would refuse still reach the API server.
    let raw: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        "default",
        &ApiResource::erase::<StreamingConnection>(&()),
    );
    let create = |name: &str, spec: Value| {
        let object = json!({
            "apiVersion": "streaming.aep-operator.dev/v1alpha1", "kind": "StreamingConnection",
            "metadata": {"name": name}, "spec": spec,
        });
        let raw = raw.clone();
        async move {
            raw.create(
                &Default::default(),
                &serde_json::from_value::<DynamicObject>(object).unwrap(),
            )
            .await
        }
    };
    // Invalid on creation.
    assert_rejected(
        create("bad-type", spec(json!({"dataType": "json"}))).await,
        "Unsupported value: \"json\"",
    );
    assert_rejected(
        create("bad-policy", spec(json!({"deletionPolicy": "Keep"}))).await,
        "Unsupported value",
    );
    assert_rejected(
        create("bad-id", spec(json!({"connectionId": "not-a-uuid"}))).await,
        "connectionId must be a Flow Service connection id",
    );
    assert_rejected(
        create("empty-name", spec(json!({"connectionName": ""}))).await,
        "spec.connectionName",
    );
    assert_rejected(
        create(
            "bad-secret",
            json!({"sandbox": "prod", "credentialsRef": {"name": "Not_A_Secret"}}),
        )
        .await,
        "spec.credentialsRef.name",
    );
    assert_rejected(
        create("no-sandbox", json!({"credentialsRef": {"name": "x"}})).await,
        "spec.sandbox",
    );
    // Defaults are applied by the API server.
    let created = create("valid", spec(json!({}))).await.unwrap();
    assert_eq!(created.data["spec"]["dataType"], "xdm");
    assert_eq!(created.data["spec"]["deletionPolicy"], "Delete");
    assert_eq!(created.data["spec"]["authenticationRequired"], false);

    // Immutable once set, with a message that says what to do instead.
    for (field, value, message) in [
        ("sandbox", json!("dev"), "sandbox is immutable"),
        ("dataType", json!("raw"), "dataType is immutable"),
        (
            "authenticationRequired",
            json!(true),
            "authenticationRequired is immutable",
        ),
    ] {
        let patch = json!({"spec": {field: value}});
        assert_rejected(
            api.patch("valid", &PatchParams::default(), &Patch::Merge(&patch))
                .await,
            message,
        );
    }
    // Mutable fields stay mutable.
    let patch = json!({"spec": {"description": "new text", "deletionPolicy": "Orphan"}});
    api.patch("valid", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    // No operator runs in this test, so nothing holds a finalizer on the object.
    api.delete("valid", &Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn lifecycle_create_publish_ingest_delete() {
    let scenario = Scenario::start(&["lifecycle"]).await;
    let ns = scenario.namespace().to_string();
    scenario
        .create(
            &ns,
            "web-events",
            spec(json!({"description": "Clickstream"})),
        )
        .await;

    let object = scenario.wait_ready(&ns, "web-events").await;
    let status = object.status.clone().unwrap();
    let id = status.connection_id.clone().unwrap();
    assert_eq!(status.inlet_id.as_ref().unwrap().len(), 64);
    assert_eq!(status.state.as_deref(), Some("enabled"));
    assert_eq!(status.config_map_name.as_deref(), Some("web-events-inlet"));
    assert!(status.last_synced_at.is_some());
    assert!(status.etag.is_some());
    assert_eq!(
        object.metadata.finalizers,
        Some(vec!["streaming.aep-operator.dev/cleanup".to_string()])
    );

    // An application reads the ConfigMap and posts an XDM message to the inlet.
    let config_maps: Api<ConfigMap> = Api::namespaced(scenario.admin.clone(), &ns);
    let config_map = config_maps.get("web-events-inlet").await.unwrap();
    let data = config_map.data.clone().unwrap();
    assert_eq!(data["CONNECTION_ID"], id);
    assert_eq!(data["INLET_URL"], status.inlet_url.clone().unwrap());
    assert_eq!(data["SANDBOX"], "prod");
    assert_eq!(data["DATA_TYPE"], "xdm");
    assert_eq!(data["AUTHENTICATION_REQUIRED"], "false");
    let owner = &config_map.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("StreamingConnection", Some(true))
    );
    let response = scenario
        .http
        .post(&data["INLET_URL"])
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["xactionId"].is_string(), "{body}");
    assert_eq!(scenario.emulator.connections().await.len(), 1);

    // Delete: the connection goes away in the emulator, the ConfigMap is garbage-collected.
    scenario.delete_and_wait(&ns, "web-events").await;
    assert_eq!(scenario.emulator.connections().await.len(), 0);
    let collected = wait_for(
        "the ConfigMap to be garbage-collected",
        Duration::from_secs(60),
        || async {
            config_maps
                .get_opt("web-events-inlet")
                .await
                .unwrap()
                .is_none()
        },
    )
    .await;
    assert!(collected, "the ConfigMap outlived its StreamingConnection");
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn a_namespaced_install_reconciles_its_namespace_under_a_role_and_cannot_read_a_secret_elsewhere()
 {
    let scenario = Scenario::start_namespaced(&["tenant", "elsewhere"]).await;
    let (tenant, elsewhere) = (
        scenario.namespaces[0].clone(),
        scenario.namespaces[1].clone(),
    );
    scenario.create(&tenant, "web", spec(json!({}))).await;
    scenario.create(&elsewhere, "web", spec(json!({}))).await;
    scenario.wait_ready(&tenant, "web").await;

    // The operator's own identity: the Secret of its namespace, nothing else.
    let operator = client_for(&scenario.operator_kubeconfig()).await;
    let own: Api<Secret> = Api::namespaced(operator.clone(), &tenant);
    own.get_metadata("aep-credentials").await.unwrap();
    let forbidden = |result: Result<_, kube::Error>| matches!(result, Err(kube::Error::Api(status)) if status.code == 403);
    let other: Api<Secret> = Api::namespaced(operator.clone(), &elsewhere);
    assert!(forbidden(other.get("aep-credentials").await.map(|_| ())));
    assert!(forbidden(other.list(&Default::default()).await.map(|_| ())));
    let everywhere: Api<Secret> = Api::all(operator.clone());
    assert!(forbidden(
        everywhere.list(&Default::default()).await.map(|_| ())
    ));
    let other_objects: Api<StreamingConnection> = Api::namespaced(operator, &elsewhere);
    assert!(forbidden(
        other_objects.list(&Default::default()).await.map(|_| ())
    ));

    // The object outside its namespace is not touched: no finalizer, no status, no connection.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let untouched = scenario.connections(&elsewhere).get("web").await.unwrap();
    assert_eq!(untouched.metadata.finalizers, None);
    assert!(untouched.status.is_none());
    assert_eq!(scenario.emulator.connections().await.len(), 1);
    let log = scenario.operator.log_text();
    assert!(
        !log.contains("forbidden"),
        "the operator needed a right it lacks:\n{}",
        tail(&log, 40)
    );

    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn orphan_policy_adoption_and_authenticated_inlet() {
    let scenario = Scenario::start(&["policies"]).await;
    let ns = scenario.namespace().to_string();

    // Orphan: deleting the object leaves the connection.
    scenario
        .create(&ns, "kept", spec(json!({"deletionPolicy": "Orphan"})))
        .await;
    let kept = scenario
        .wait_ready(&ns, "kept")
        .await
        .status
        .unwrap()
        .connection_id
        .unwrap();
    scenario.delete_and_wait(&ns, "kept").await;
    let remaining: Vec<String> = scenario
        .emulator
        .connections()
        .await
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(remaining, vec![kept.clone()]);

    // Adoption: a new object takes over the orphaned connection by id, creating nothing.
    scenario
        .create(
            &ns,
            "adopter",
            spec(json!({"connectionId": kept, "connectionName": format!("{ns}/kept")})),
        )
        .await;
    let adopted = scenario.wait_ready(&ns, "adopter").await;
    assert_eq!(
        adopted.status.unwrap().connection_id.as_deref(),
        Some(kept.as_str())
    );
    assert_eq!(scenario.emulator.connections().await.len(), 1);

    // An authenticated inlet refuses anonymous events and takes them with an IMS token.
    scenario
        .create(&ns, "secure", spec(json!({"authenticationRequired": true})))
        .await;
    let inlet = scenario
        .wait_ready(&ns, "secure")
        .await
        .status
        .unwrap()
        .inlet_url
        .unwrap();
    let anonymous = scenario
        .http
        .post(&inlet)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let problem: Value = anonymous.json().await.unwrap();
    assert_eq!(problem["status"], "401");
    let token = scenario.ims_token().await;
    let authorized = scenario
        .http
        .post(&inlet)
        .bearer_auth(token)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 200);
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn secret_rotation_recovers_without_a_restart() {
    let scenario = Scenario::start(&["rotation"]).await;
    let ns = scenario.namespace().to_string();
    put_secret(
        &scenario.admin,
        &ns,
        "aep-credentials",
        "wrong-secret-value",
    )
    .await;
    scenario.create(&ns, "web", spec(json!({}))).await;
    let stalled = scenario
        .wait_condition(&ns, "web", "Ready", "False", Some("CredentialsInvalid"))
        .await;
    let stalled_status = serde_json::to_string(&stalled.status).unwrap();
    assert!(
        !stalled_status.contains("wrong-secret-value"),
        "the status leaks the secret"
    );
    assert_eq!(scenario.emulator.connections().await.len(), 0);

    put_secret(
        &scenario.admin,
        &ns,
        "aep-credentials",
        aep_emulator::DEMO_CLIENT_SECRET,
    )
    .await;
    scenario.wait_ready(&ns, "web").await;
    assert_eq!(scenario.emulator.connections().await.len(), 1);
    let log = scenario.operator.log_text();
    assert!(
        !log.contains("wrong-secret-value"),
        "the operator log leaks the secret"
    );
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn drift_is_repaired_recreate_and_patch() {
    let scenario = Scenario::start(&["drift"]).await;
    let ns = scenario.namespace().to_string();
    scenario
        .create(&ns, "web", spec(json!({"description": "first"})))
        .await;
    let first_id = scenario
        .wait_ready(&ns, "web")
        .await
        .status
        .unwrap()
        .connection_id
        .unwrap();

    // Deleted out of band: recreated at the next resync (or at once with the annotation).
    let deleted = scenario
        .flow_request(reqwest::Method::DELETE, &format!("/connections/{first_id}"))
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let annotation = json!({"metadata": {"annotations": {"streaming.aep-operator.dev/reconcile-requested-at": "now"}}});
    scenario
        .connections(&ns)
        .patch("web", &PatchParams::default(), &Patch::Merge(&annotation))
        .await
        .unwrap();
    let api = scenario.connections(&ns);
    // One 404 is not proof: the operator confirms the absence over 30 s before it recreates.
    let recreated = wait_for("a new connection id", Duration::from_secs(90), || async {
        let status = api.get("web").await.unwrap().status.unwrap_or_default();
        status.connection_id.is_some_and(|id| id != first_id)
    })
    .await;
    assert!(
        recreated,
        "not recreated\n{}",
        tail(&scenario.operator.log_text(), 40)
    );
    let object = scenario.wait_ready(&ns, "web").await;
    let second_id = object.status.unwrap().connection_id.unwrap();
    let connections = scenario.emulator.connections().await;
    assert_eq!(connections.len(), 1);
    // A new fact is a new event, not a repeat of the first one's note.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(scenario.admin.clone(), &ns);
    let notes: Vec<String> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|event| event.note)
        .collect();
    for id in [&first_id, &second_id] {
        assert!(
            notes.contains(&format!("Created connection {id}")),
            "{notes:?}"
        );
    }
    assert!(
        notes.iter().any(|note| note.starts_with(&format!(
            "Connection {first_id} was deleted outside the operator"
        ))),
        "the Recreated event gives the evidence: {notes:?}"
    );
    assert_eq!(connections[0].id, second_id);
    let config_maps: Api<ConfigMap> = Api::namespaced(scenario.admin.clone(), &ns);
    let republished = wait_for(
        "the ConfigMap to name the new connection",
        Duration::from_secs(30),
        || async {
            config_maps.get("web-inlet").await.unwrap().data.unwrap()["CONNECTION_ID"] == second_id
        },
    )
    .await;
    assert!(republished);

    // A description change in the spec is PATCHed in place (same id, new etag).
    let patch = json!({"spec": {"description": "second"}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let updated = scenario.wait_ready(&ns, "web").await;
    assert_eq!(
        updated.status.unwrap().connection_id.as_deref(),
        Some(second_id.as_str())
    );
    let connections = scenario.emulator.connections().await;
    assert_eq!(connections[0].description.as_deref(), Some("second"));
    let requests = scenario.emulator.requests().await;
    let patches = requests.count(|c| c.method == "PATCH" && c.status == 200);
    assert_eq!(patches, 1, "{requests:?}");
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn gitops_server_side_apply_twice_has_no_conflict_and_the_operator_owns_only_status() {
    let scenario = Scenario::start(&["gitops"]).await;
    let ns = scenario.namespace().to_string();
    // The GitOps tool owns the Secret too: replace the one the scenario made.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(scenario.admin.clone(), &ns);
    secrets
        .delete("aep-credentials", &Default::default())
        .await
        .unwrap();
    let manifests = scenario.directory.join("manifests.yaml");
    std::fs::write(
        &manifests,
        format!(
            "{}\n---\n{}",
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/credentials-secret.yaml"
            ))
            .unwrap(),
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/streamingconnection.yaml"
            ))
            .unwrap()
        ),
    )
    .unwrap();
    let kubectl = std::env::var("AEP_E2E_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let kubeconfig = std::env::var("AEP_E2E_KUBECONFIG").unwrap();
    let apply = || {
        std::process::Command::new(&kubectl)
            .args([
                "--kubeconfig",
                &kubeconfig,
                "apply",
                "--server-side",
                "--field-manager",
                "argocd-controller",
            ])
            .args(["-n", &ns, "-f"])
            .arg(&manifests)
            .output()
            .expect("kubectl runs")
    };
    let first = apply();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let object = scenario.wait_ready(&ns, "web-events").await;
    let second = apply();
    assert!(
        second.status.success(),
        "second apply conflicted: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    let after = scenario.connections(&ns).get("web-events").await.unwrap();
    assert_eq!(
        after.metadata.generation, object.metadata.generation,
        "re-applying changed nothing"
    );

    for entry in after.metadata.managed_fields.clone().unwrap() {
        let fields = serde_json::to_string(&entry.fields_v1).unwrap();
        let manager = entry.manager.clone().unwrap_or_default();
        if manager == "argocd-controller" {
            assert!(
                !fields.contains("f:status"),
                "the GitOps tool owns status: {fields}"
            );
            continue;
        }
        assert!(
            manager.starts_with("aep-streaming-operator"),
            "unexpected manager {manager}: {fields}"
        );
        assert!(
            !fields.contains("f:spec"),
            "the operator owns spec fields: {fields}"
        );
        if entry.subresource.as_deref() != Some("status") {
            let value: Value = serde_json::to_value(&entry.fields_v1).unwrap();
            assert_eq!(
                value,
                json!({"f:metadata": {"f:finalizers": {".": {}, "v:\"streaming.aep-operator.dev/cleanup\"": {}}}}),
            );
        }
    }
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn fifty_objects_in_three_namespaces_all_become_ready_with_exactly_fifty_connections() {
    let scenario = Scenario::start(&["many-a", "many-b", "many-c"]).await;
    let namespaces = scenario.namespaces.clone();
    for index in 0..50 {
        let ns = &namespaces[index % 3];
        scenario
            .create(ns, &format!("conn-{index:02}"), spec(json!({})))
            .await;
    }
    for index in 0..50 {
        scenario
            .wait_ready(&namespaces[index % 3], &format!("conn-{index:02}"))
            .await;
    }
    let ours: Vec<EmulatorConnection> = scenario
        .emulator
        .connections()
        .await
        .into_iter()
        .filter(|c| {
            namespaces
                .iter()
                .any(|ns| c.name.starts_with(&format!("{ns}/")))
        })
        .collect();
    assert_eq!(ours.len(), 50);
    let mut names: Vec<&str> = ours.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 50, "one connection per object, no duplicates");
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn a_config_map_of_someone_else_is_never_taken_over() {
    let scenario = Scenario::start(&["conflict"]).await;
    let ns = scenario.namespace().to_string();
    let config_maps: Api<ConfigMap> = Api::namespaced(scenario.admin.clone(), &ns);
    let foreign: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "web-inlet", "namespace": ns}, "data": {"owner": "another team"}
    }))
    .unwrap();
    config_maps
        .create(&Default::default(), &foreign)
        .await
        .unwrap();
    scenario.create(&ns, "web", spec(json!({}))).await;
    scenario
        .wait_condition(&ns, "web", "Stalled", "True", Some("ConfigMapConflict"))
        .await;
    assert_eq!(
        config_maps.get("web-inlet").await.unwrap().data.unwrap()["owner"],
        "another team"
    );
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn leader_election_one_replica_reconciles_and_a_standby_takes_over() {
    let election = LEADER_ELECTION;
    let mut scenario = Scenario::start_with(&["leader"], &election).await;
    let ns = scenario.namespace().to_string();
    let kubeconfig = scenario.operator_kubeconfig();
    let leases: Api<Lease> = Api::namespaced(scenario.admin.clone(), "aep-streaming-operator");
    let leads = |identity: &'static str| {
        let leases = leases.clone();
        move || {
            let leases = leases.clone();
            async move {
                let lease = leases.get_opt("aep-streaming-operator").await.unwrap();
                lease
                    .and_then(|l| l.spec)
                    .and_then(|s| s.holder_identity)
                    .as_deref()
                    == Some(identity)
            }
        }
    };
    assert!(
        wait_for(
            "operator-a to lead",
            Duration::from_secs(30),
            leads("operator-a")
        )
        .await
    );
    let mut standby = scenario.start_operator(&kubeconfig, &election, "operator-b");
    scenario.create(&ns, "first", spec(json!({}))).await;
    scenario.wait_ready(&ns, "first").await;
    // The standby's first election round may end after the leader's first create.
    let waiting = wait_for(
        "operator-b to say it waits",
        Duration::from_secs(15),
        || async { standby.log_text().contains("another replica leads") },
    )
    .await;
    assert!(waiting, "{}", standby.log_text());
    assert!(
        !standby
            .log_text()
            .contains("starting the StreamingConnection controller")
    );

    // A graceful stop releases the Lease: the standby takes over at once.
    scenario.operator.stop();
    assert!(
        wait_for(
            "operator-b to lead",
            Duration::from_secs(15),
            leads("operator-b")
        )
        .await
    );
    scenario.create(&ns, "second", spec(json!({}))).await;
    scenario.wait_ready(&ns, "second").await;

    // A crash leaves the Lease held: a new standby takes over once it expires.
    scenario.operator = scenario.start_operator(&kubeconfig, &election, "operator-a");
    tokio::time::sleep(Duration::from_secs(1)).await;
    standby.kill();
    assert!(
        wait_for(
            "operator-a to lead again",
            Duration::from_secs(30),
            leads("operator-a")
        )
        .await
    );
    scenario.create(&ns, "third", spec(json!({}))).await;
    scenario.wait_ready(&ns, "third").await;
    assert_eq!(
        scenario.emulator.connections().await.len(),
        3,
        "one connection per object across three leaders"
    );
    scenario.finish().await;
}

/// Runs the kubectl of the control plane's release against the test cluster.
fn kubectl(args: &[&str]) -> String {
    let kubectl = std::env::var("AEP_E2E_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let kubeconfig = std::env::var("AEP_E2E_KUBECONFIG").unwrap();
    let output = std::process::Command::new(&kubectl)
        .args(["--kubeconfig", &kubeconfig])
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn kubectl_shows_the_columns_explains_the_fields_and_lists_the_events() {
    let scenario = Scenario::start(&["kubectl"]).await;
    let ns = scenario.namespace().to_string();
    scenario.create(&ns, "web", spec(json!({}))).await;
    let object = scenario.wait_ready(&ns, "web").await;
    let status = object.status.unwrap();

    let table = kubectl(&["get", "sconn", "-n", &ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "SANDBOX", "CONNECTION", "ID", "AGE"],
        "{table}"
    );
    assert!(
        table.contains("True") && table.contains(status.connection_id.as_deref().unwrap()),
        "{table}"
    );
    let wide = kubectl(&["get", "streamingconnections", "-n", &ns, "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("INLET URL"), "{wide}");
    assert!(
        wide.contains(status.inlet_url.as_deref().unwrap()),
        "{wide}"
    );
    // The short name and the category work too.
    assert!(kubectl(&["get", "aep", "-n", &ns]).contains("web"));

    let explained = kubectl(&["explain", "streamingconnection.spec.sandbox"]);
    assert!(explained.contains("x-sandbox-name"), "{explained}");
    let explained = kubectl(&["explain", "sconn.status.conditions"]);
    assert!(explained.contains("Reconciling"), "{explained}");

    let events = kubectl(&["get", "events.events.k8s.io", "-n", &ns, "-o", "json"]);
    let events: Value = serde_json::from_str(&events).unwrap();
    let created = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "Created" && e["regarding"]["name"] == "web")
        .unwrap_or_else(|| panic!("no Created event: {events}"));
    assert_eq!(created["reportingController"], "aep-streaming-operator");
    assert_eq!(created["type"], "Normal");
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a control plane: run `make test` (or `make cluster` and set AEP_E2E_KUBECONFIG)"]
async fn the_deploy_kustomizations_are_accepted_by_the_api_server_and_meet_the_restricted_pod_security_level()
 {
    install(&admin_client().await).await;
    let kubectl = std::env::var("AEP_E2E_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let kubeconfig = std::env::var("AEP_E2E_KUBECONFIG").unwrap();
    // What `kubectl apply --server-side -k <dir>` would create, checked by the API server (dry run).
    let dry_run = |directory: &str| {
        let output = std::process::Command::new(&kubectl)
            .args([
                "--kubeconfig",
                &kubeconfig,
                "apply",
                "--server-side",
                "--dry-run=server",
                "-k",
            ])
            .arg(format!("{}/{directory}", env!("CARGO_MANIFEST_DIR")))
            .output()
            .expect("kubectl runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{directory}: {stderr}");
        assert!(
            !stderr.contains("PodSecurity"),
            "{directory}: the Deployment would violate the namespace's Pod Security level: {stderr}"
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let crds = dry_run("deploy/crds");
    assert_eq!(
        crds.matches("customresourcedefinition").count(),
        2,
        "both CRDs, nothing else: {crds}"
    );
    // The operator's part holds no CRD, so that deleting or pruning it never deletes one.
    for directory in ["deploy", "deploy/overlays/release"] {
        let applied = dry_run(directory);
        assert!(
            !applied.contains("customresourcedefinition"),
            "{directory} must not hold a CRD: {applied}"
        );
        for kind in [
            "namespace",
            "serviceaccount",
            "clusterrole",
            "clusterrolebinding",
            "deployment",
        ] {
            assert!(
                applied.contains(kind),
                "{directory}: {kind} missing from: {applied}"
            );
        }
    }
}
