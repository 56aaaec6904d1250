//! Request-side contract test: every operation the client calls, run against the emulator through the test
//! kit's `RecordingProxy`, and every captured request checked against Adobe's published contract
//! (`aep_testkit::contract`: the OpenAPI facts, with the allow-list of what Adobe's documented examples do
//! that the specs do not declare). A header, query parameter or body field the contract does not know fails
//! the test, as does an operation the client calls that the walk below left out.
//!
//! Where the spec and Adobe's examples disagree, the contract module follows the examples and says so next to
//! its checks (lower-case `op` and a string `value` in PatchInstruction, `op=enable` without `subOp` on flow
//! actions, `x-sandbox-name` on every Flow Service call). Two more places where the client follows the
//! documented request examples against the spec's request schema are listed below, in
//! [`aep_testkit::contract::DOCUMENTED_EXAMPLE_DEVIATIONS`], each with its document; nothing else is let through.

use std::collections::BTreeSet;
use std::time::Duration;

use aep_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_DATASET_ID, DEMO_ORG_ID, DEMO_SCHEMA_ID,
    EmulatorConfig, XDM_CONTENT_TYPE, start,
};
use aep_flow::{
    ConnectionUpdate, Credentials, DataType, FlowClient, FlowClientConfig, FlowKind, FlowUpdate,
    Mapping, NewConnection, NewFlow, NewMappingSet, NewSourceConnection, NewTargetConnection,
    SchemaRef, Scope, SourceType,
};
use aep_testkit::contract::{RecordingProxy, is_documented_example_deviation, validate_request};

fn credentials() -> Credentials {
    let data = [
        ("clientId", DEMO_CLIENT_ID),
        ("clientSecret", DEMO_CLIENT_SECRET),
        ("orgId", DEMO_ORG_ID),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.as_bytes().to_vec()))
    .collect();
    Credentials::from_secret_data(&data, "secret-uid/1").unwrap()
}

fn schema() -> SchemaRef {
    SchemaRef {
        id: DEMO_SCHEMA_ID.into(),
        content_type: XDM_CONTENT_TYPE.into(),
    }
}

fn mapping_set(destination: &str) -> NewMappingSet {
    NewMappingSet {
        schema: schema(),
        mappings: vec![Mapping {
            source_type: SourceType::Attribute,
            source: "email".into(),
            destination: destination.into(),
        }],
    }
}

/// Every operation of the contract the client calls (`METHOD /template`, as the facts file keys them).
const CLIENT_OPERATIONS: &[&str] = &[
    "POST /data/foundation/flowservice/connections",
    "GET /data/foundation/flowservice/connections",
    "GET /data/foundation/flowservice/connections/{BASE_CONNECTION_ID}",
    "PATCH /data/foundation/flowservice/connections/{BASE_CONNECTION_ID}/",
    "DELETE /data/foundation/flowservice/connections/{BASE_CONNECTION_ID}/",
    "GET /data/foundation/catalog/dataSets/{DATASET_ID}",
    "POST /data/foundation/flowservice/sourceConnections",
    "GET /data/foundation/flowservice/sourceConnections",
    "GET /data/foundation/flowservice/sourceConnections/{SOURCE_CONNECTION_ID}",
    "DELETE /data/foundation/flowservice/sourceConnections/{SOURCE_CONNECTION_ID}",
    "POST /data/foundation/flowservice/targetConnections",
    "GET /data/foundation/flowservice/targetConnections",
    "GET /data/foundation/flowservice/targetConnections/{TARGET_CONNECTION_ID}",
    "DELETE /data/foundation/flowservice/targetConnections/{TARGET_CONNECTION_ID}",
    "POST /data/foundation/conversion/mappingSets",
    "GET /data/foundation/conversion/mappingSets/{MAPPING_SET_ID}",
    "PUT /data/foundation/conversion/mappingSets/{MAPPING_SET_ID}",
    "POST /data/foundation/flowservice/flows",
    "GET /data/foundation/flowservice/flows",
    "GET /data/foundation/flowservice/flows/{FLOW_ID}",
    "PATCH /data/foundation/flowservice/flows/{FLOW_ID}",
    "POST /data/foundation/flowservice/flows/{FLOW_ID}/action",
    "DELETE /data/foundation/flowservice/flows/{FLOW_ID}",
    "GET /data/foundation/flowservice/runs",
];

#[tokio::test]
async fn every_request_the_client_sends_is_in_the_published_contract() {
    let emulator = start(EmulatorConfig::default())
        .await
        .expect("the emulator starts");
    let proxy = RecordingProxy::start(&emulator.url()).await;
    let client = FlowClient::new(FlowClientConfig {
        platform_url: proxy.url().parse().unwrap(),
        ims_url: proxy.url().parse().unwrap(),
        qps: 0.0,
        max_concurrency: 4,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        extra_ca_pem: None,
        observer: None,
    })
    .unwrap();
    let credentials = credentials();
    let scope = Scope {
        credentials: &credentials,
        sandbox: "prod",
    };

    // Connections: create, read, look up by name, update (name, description set, description
    // cleared), and at the end delete.
    let connection = client
        .create_connection(
            &scope,
            &NewConnection {
                name: "contract raw".into(),
                description: Some("Clickstream".into()),
                source_id: None,
                data_type: DataType::Raw,
                authentication_required: false,
            },
        )
        .await
        .unwrap();
    let read = client.get_connection(&scope, &connection.id).await.unwrap();
    assert_eq!(
        client
            .find_connections_by_name(&scope, "contract raw")
            .await
            .unwrap()
            .len(),
        1
    );
    let renamed = client
        .update_connection(
            &scope,
            &connection.id,
            &read.etag,
            &ConnectionUpdate {
                name: Some("contract raw 2".into()),
                description: Some(Some("Clickstream, v2".into())),
            },
        )
        .await
        .unwrap();
    let cleared = client
        .update_connection(
            &scope,
            &connection.id,
            &renamed.etag,
            &ConnectionUpdate {
                name: None,
                description: Some(None),
            },
        )
        .await
        .unwrap();
    let after = client.get_connection(&scope, &connection.id).await.unwrap();
    assert_eq!(
        after.description, None,
        "a cleared description reads as none"
    );
    assert_eq!(after.etag, cleared.etag);

    // The dataset, source and target connections.
    let dataset = client.get_dataset(&scope, DEMO_DATASET_ID).await.unwrap();
    let source = client
        .create_source_connection(
            &scope,
            &NewSourceConnection {
                name: "contract source".into(),
                description: Some("from the raw inlet".into()),
                base_connection_id: connection.id.clone(),
            },
        )
        .await
        .unwrap();
    client
        .get_source_connection(&scope, &source.id)
        .await
        .unwrap();
    client
        .find_source_connections_by_name(&scope, "contract source")
        .await
        .unwrap();
    let target = client
        .create_target_connection(
            &scope,
            &NewTargetConnection {
                name: "contract target".into(),
                description: None,
                dataset_id: dataset.id.clone(),
                schema: dataset.schema_ref.clone(),
            },
        )
        .await
        .unwrap();
    client
        .get_target_connection(&scope, &target.id)
        .await
        .unwrap();
    client
        .find_target_connections_by_name(&scope, "contract target")
        .await
        .unwrap();

    // A mapping set, its versions, and a raw flow through it.
    let mapping = client
        .create_mapping_set(&scope, &mapping_set("personalEmail.address"))
        .await
        .unwrap();
    client
        .get_mapping_set(&scope, &mapping.mapping_id, None)
        .await
        .unwrap();
    let next = client
        .update_mapping_set(
            &scope,
            &mapping.mapping_id,
            &mapping_set("workEmail.address"),
        )
        .await
        .unwrap();
    client
        .get_mapping_set(&scope, &mapping.mapping_id, Some(next.mapping_version))
        .await
        .unwrap();
    let flow = client
        .create_flow(
            &scope,
            &NewFlow {
                name: "contract flow".into(),
                description: Some("raw to the dataset".into()),
                source_connection_id: source.id.clone(),
                target_connection_id: target.id.clone(),
                kind: FlowKind::Raw(mapping.clone()),
            },
        )
        .await
        .unwrap();
    let read_flow = client.get_flow(&scope, &flow.id).await.unwrap();
    client
        .find_flows_by_name(&scope, "contract flow")
        .await
        .unwrap();
    client
        .find_flows_by_source_connection(&scope, &source.id)
        .await
        .unwrap();
    client
        .find_flows_by_base_connection(&scope, &connection.id)
        .await
        .unwrap();
    client
        .update_flow(
            &scope,
            &flow.id,
            &read_flow.etag,
            &FlowUpdate {
                name: Some("contract flow 2".into()),
                description: Some(None),
                mapping: Some(next.clone()),
            },
        )
        .await
        .unwrap();
    client.disable_flow(&scope, &flow.id).await.unwrap();
    client.enable_flow(&scope, &flow.id).await.unwrap();
    client.list_runs(&scope, &flow.id, None).await.unwrap();
    client
        .list_runs(&scope, &flow.id, Some(1_596_000_000_000))
        .await
        .unwrap();

    // Deletes, in Adobe's order.
    client.delete_flow(&scope, &flow.id).await.unwrap();
    client
        .delete_source_connection(&scope, &source.id)
        .await
        .unwrap();
    client
        .delete_target_connection(&scope, &target.id)
        .await
        .unwrap();
    client
        .delete_connection(&scope, &connection.id)
        .await
        .unwrap();

    let exchanges = proxy.exchanges();
    let mut violations = Vec::new();
    let mut covered = BTreeSet::new();
    for exchange in &exchanges {
        for violation in validate_request(exchange)
            .into_iter()
            .filter(|violation| !is_documented_example_deviation(violation))
        {
            violations.push(format!("  {}: {violation}", exchange.describe()));
        }
        assert!(
            (200..300).contains(&exchange.status),
            "every call of the walk succeeds: {}",
            exchange.describe()
        );
        if let Some(operation) = exchange.operation() {
            covered.insert(operation.key.clone());
        }
    }
    assert!(
        violations.is_empty(),
        "requests outside the contract:\n{}",
        violations.join("\n")
    );
    let missing: Vec<&&str> = CLIENT_OPERATIONS
        .iter()
        .filter(|operation| !covered.contains(**operation))
        .collect();
    assert!(
        missing.is_empty(),
        "operations the walk did not call: {missing:?}"
    );
    let unexpected: Vec<&String> = covered
        .iter()
        .filter(|operation| !CLIENT_OPERATIONS.contains(&operation.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "operations the client called that the list above does not name: {unexpected:?}"
    );
}

/// The shape the client sent before issue 14 to clear a description: a `remove` without `value`, which the
/// published `PatchInstruction` (op, path and value required) does not allow; the client now sends
/// `replace` with `""` (see `connections::patch_operations`), which the walk above checks on the wire.
#[test]
fn a_patch_instruction_without_value_is_outside_the_contract() {
    let patch = |body: &str| aep_testkit::contract::Exchange {
        method: "PATCH".into(),
        path: "/data/foundation/flowservice/connections/a59d368a-1152-4673-a46e-bd52e8cdb9a9"
            .into(),
        query: None,
        request_headers: [
            ("authorization", "<redacted>"),
            ("x-api-key", DEMO_CLIENT_ID),
            ("x-gw-ims-org-id", DEMO_ORG_ID),
            ("x-sandbox-name", "prod"),
            ("if-match", "\"e1\""),
            ("content-type", "application/json"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect(),
        request_body: body.as_bytes().to_vec(),
        status: 200,
        response_headers: Vec::new(),
        response_body: Vec::new(),
    };
    let old = validate_request(&patch(r#"[{"op":"remove","path":"/description"}]"#));
    assert!(
        old.iter()
            .any(|violation| violation.message.contains("value")),
        "{old:?}"
    );
    let new = validate_request(&patch(
        r#"[{"op":"replace","path":"/description","value":""}]"#,
    ));
    assert!(new.is_empty(), "{new:?}");
}
