//! The emulator's dataflow objects over HTTP: Catalog datasets (seeded through the admin API), source and target
//! connections, mapping sets, flows and runs, how the inlet routes messages through flows into datasets, the
//! delete order, fault rules on the new routes and the state file.

use aep_emulator::{
    DEMO_CLIENT_ID, DEMO_DATASET_ID, DEMO_ORG_ID, DEMO_SCHEMA_ID, EmulatorConfig, RAW_FLOW_SPEC_ID,
    STREAMING_CONNECTION_SPEC_ID, XDM_FLOW_SPEC_ID,
};
use aep_testkit::admin::rules;
use aep_testkit::emulator::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const FLOW_SERVICE: &str = "/data/foundation/flowservice";
const DATASETS: &str = "/data/foundation/catalog/dataSets";
const MAPPING_SETS: &str = "/data/foundation/conversion/mappingSets";
const DATA_LAKE_SPEC: &str = "c604ff05-7f1a-43c0-8e18-33bf874cb11c";
const SCHEMA: &str = "https://ns.adobe.com/acme/schemas/0123456789abcdef0123456789abcdef";
const CONTENT_TYPE: &str = "application/vnd.adobe.xed-full+json;version=1";

fn path(collection: &str) -> String {
    format!("{FLOW_SERVICE}/{collection}")
}

/// Seed a dataset in `prod` through the admin API; returns its id.
async fn seed_dataset(harness: &Harness, body: Value) -> String {
    let response = harness
        .http
        .post(harness.url("/_emulator/datasets"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored: Value = response.json().await.unwrap();
    stored["id"].as_str().unwrap().to_owned()
}

/// POST a Flow Service body; assert 201 and return `(id, etag)`.
async fn create(harness: &Harness, collection: &str, body: Value) -> (String, String) {
    let response = harness
        .flow(Method::POST, &path(collection))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .contains(collection)
    );
    let created: Value = response.json().await.unwrap();
    let etag = created["etag"].as_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    (created["id"].as_str().unwrap().to_owned(), etag)
}

/// `items[0]` of a GET by id.
async fn get_item(harness: &Harness, collection: &str, id: &str) -> Value {
    let response = harness
        .flow(Method::GET, &format!("{}/{id}", path(collection)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body: Value = response.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    body["items"][0].take()
}

/// Everything between a base connection and a dataset.
struct Chain {
    base_id: String,
    inlet_url: String,
    dataset_id: String,
    source_id: String,
    target_id: String,
    mapping_id: Option<String>,
    flow_id: String,
    flow_etag: String,
}

fn source_body(base_id: &str) -> Value {
    json!({
        "name": "web source", "baseConnectionId": base_id,
        "connectionSpec": {"id": STREAMING_CONNECTION_SPEC_ID, "version": "1.0"}
    })
}

fn target_body(dataset_id: &str, schema: &str) -> Value {
    json!({
        "name": "web target",
        "data": {"schema": {"id": schema, "version": "application/vnd.adobe.xed-full+json;version=1.0"}},
        "params": {"dataSetId": dataset_id},
        "connectionSpec": {"id": DATA_LAKE_SPEC, "version": "1.0"}
    })
}

fn mapping_body(schema: &str) -> Value {
    json!({
        "outputSchema": {"schemaRef": {"id": schema, "contentType": CONTENT_TYPE}},
        "mappings": [{"sourceType": "ATTRIBUTE", "source": "page.url", "destination": "web.webPageDetails.URL"}]
    })
}

/// Build base connection → source → target → (mapping) → flow for a new dataset of schema [`SCHEMA`].
async fn chain(harness: &Harness, data_type: &str) -> Chain {
    let dataset_id = seed_dataset(
        harness,
        json!({"name": "web", "schemaRef": {"id": SCHEMA, "contentType": CONTENT_TYPE}}),
    )
    .await;
    let mut connection = streaming_connection("web");
    connection["auth"]["params"]["dataType"] = json!(data_type);
    let (base_id, _) = harness.create_in("prod", connection).await;
    let inlet_url = harness.connection(&base_id).await["auth"]["params"]["inletUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let (source_id, _) = create(harness, "sourceConnections", source_body(&base_id)).await;
    let (target_id, _) = create(
        harness,
        "targetConnections",
        target_body(&dataset_id, SCHEMA),
    )
    .await;
    let mut flow = json!({
        "name": "web to lake",
        "flowSpec": {"id": XDM_FLOW_SPEC_ID, "version": "1.0"},
        "sourceConnectionIds": [source_id], "targetConnectionIds": [target_id]
    });
    let mut mapping_id = None;
    if data_type == "raw" {
        let response = harness
            .flow(Method::POST, MAPPING_SETS)
            .json(&mapping_body(SCHEMA))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "mapping sets answer 200");
        let created: Value = response.json().await.unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        flow["flowSpec"]["id"] = json!(RAW_FLOW_SPEC_ID);
        flow["transformations"] =
            json!([{"name": "Mapping", "params": {"mappingId": id, "mappingVersion": 0}}]);
        mapping_id = Some(id);
    }
    let (flow_id, flow_etag) = create(harness, "flows", flow).await;
    Chain {
        base_id,
        inlet_url,
        dataset_id,
        source_id,
        target_id,
        mapping_id,
        flow_id,
        flow_etag,
    }
}

fn envelope(flow_id: &str, dataset_id: &str, schema: &str) -> Value {
    let mut message = xdm_message();
    message["header"]["flowId"] = json!(flow_id);
    message["header"]["datasetId"] = json!(dataset_id);
    message["header"]["schemaRef"]["id"] = json!(schema);
    message["body"]["xdmMeta"]["schemaRef"]["id"] = json!(schema);
    message
}

async fn records(harness: &Harness, dataset_id: &str) -> u64 {
    let state = harness.admin_wire("/_emulator/state").await;
    state["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == dataset_id)
        .expect("dataset in state")["records"]
        .as_u64()
        .unwrap()
}

async fn runs_of(harness: &Harness, flow_id: &str) -> Vec<Value> {
    let response = harness
        .flow(
            Method::GET,
            &format!("{}?property=flowId=={flow_id}", path("runs")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

async fn post_message(harness: &Harness, url: &str, message: &Value) -> reqwest::Response {
    harness.http.post(url).json(message).send().await.unwrap()
}

// ------------------------------------------------------------------------------------------------- datasets

#[tokio::test]
async fn the_demo_dataset_is_served_by_catalog_keyed_by_its_id_in_prod_only() {
    let harness = Harness::start().await;
    let response = harness
        .flow(Method::GET, &format!("{DATASETS}/{DEMO_DATASET_ID}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let dataset = &body[DEMO_DATASET_ID];
    assert_eq!(dataset["schemaRef"]["id"], DEMO_SCHEMA_ID);
    assert_eq!(dataset["schemaRef"]["contentType"], CONTENT_TYPE);
    assert_eq!(dataset["imsOrg"], DEMO_ORG_ID);
    assert!(dataset["name"].is_string());

    let only: Value = harness
        .flow(
            Method::GET,
            &format!("{DATASETS}/{DEMO_DATASET_ID}?properties=name,schemaRef"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut keys: Vec<&String> = only[DEMO_DATASET_ID].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["name", "schemaRef"]);

    for (sandbox, id) in [
        ("dev", DEMO_DATASET_ID),
        ("prod", "000000000000000000000000"),
    ] {
        let response = harness
            .flow_in(sandbox, Method::GET, &format!("{DATASETS}/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{sandbox} {id}");
    }
    let response = harness
        .http
        .get(harness.url(&format!("{DATASETS}/{DEMO_DATASET_ID}")))
        .send()
        .await
        .unwrap();
    assert_gateway_error(response, 403, "403010").await;
}

#[tokio::test]
async fn datasets_are_seeded_through_the_admin_api_and_the_demo_can_be_left_out() {
    let harness = Harness::with(EmulatorConfig {
        demo_dataset: false,
        ..Default::default()
    })
    .await;
    let state = harness.admin_wire("/_emulator/state").await;
    assert_eq!(state["datasets"], json!([]));

    let response = harness
        .http
        .post(harness.url("/_emulator/datasets"))
        .json(
            &json!({"name": "orders", "schemaRef": {"id": SCHEMA, "contentType": CONTENT_TYPE},
                       "sandbox": "dev"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored: Value = response.json().await.unwrap();
    let id = stored["id"].as_str().unwrap();
    assert_eq!(id.len(), 24, "Adobe-shaped id: {id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(stored["sandboxName"], "dev");
    assert_eq!(stored["imsOrgId"], DEMO_ORG_ID);
    assert_eq!(stored["records"], 0);
    let response = harness
        .flow_in("dev", Method::GET, &format!("{DATASETS}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let fixed = json!({"id": "5f00000000000000000000aa", "name": "fixed",
                       "schemaRef": {"id": SCHEMA, "contentType": CONTENT_TYPE}});
    assert_eq!(
        seed_dataset(&harness, fixed.clone()).await,
        "5f00000000000000000000aa"
    );
    for (body, status) in [
        (fixed, StatusCode::CONFLICT),
        (json!({"name": "no schema"}), StatusCode::BAD_REQUEST),
        (
            json!({"name": "x", "schemaRef": {"id": SCHEMA}, "sandbox": "nowhere"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = harness
            .http
            .post(harness.url("/_emulator/datasets"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
    }
}

// --------------------------------------------------------------------------------------- the XDM conversation

#[tokio::test]
async fn an_xdm_flow_is_created_read_listed_and_routes_envelopes_into_its_dataset() {
    let harness = Harness::start().await;
    let chain = chain(&harness, "xdm").await;

    let source = get_item(&harness, "sourceConnections", &chain.source_id).await;
    assert_eq!(source["state"], "enabled");
    assert_eq!(source["baseConnectionId"], chain.base_id.as_str());
    assert_eq!(
        source["inheritedAttributes"]["baseConnection"]["id"],
        chain.base_id.as_str()
    );
    assert_eq!(source["version"], source["etag"]);
    let target = get_item(&harness, "targetConnections", &chain.target_id).await;
    assert_eq!(target["params"]["dataSetId"], chain.dataset_id.as_str());
    assert_eq!(target["connectionSpec"]["id"], DATA_LAKE_SPEC);

    let flow = get_item(&harness, "flows", &chain.flow_id).await;
    assert!(uuid_shaped(&chain.flow_id), "{}", chain.flow_id);
    assert_eq!(flow["state"], "enabled");
    assert_eq!(flow["etag"], chain.flow_etag.as_str());
    assert_eq!(flow["flowSpec"]["id"], XDM_FLOW_SPEC_ID);
    assert_eq!(flow["sourceConnectionIds"], json!([chain.source_id]));
    assert_eq!(
        flow["inheritedAttributes"]["sourceConnections"][0]["baseConnection"]["id"],
        chain.base_id.as_str()
    );
    assert_eq!(
        flow["inheritedAttributes"]["targetConnections"][0]["id"],
        chain.target_id.as_str()
    );
    assert_eq!(
        flow["runs"],
        format!("/runs?property=flowId=={}", chain.flow_id)
    );
    assert!(flow.get("lastRunDetails").is_none(), "no runs yet");

    for query in [
        format!("property=sourceConnectionIds[]=={}", chain.source_id),
        format!("property=flowSpec.id=={XDM_FLOW_SPEC_ID}"),
    ] {
        let listed: Value = harness
            .flow(Method::GET, &format!("{}?{query}", path("flows")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["items"][0]["id"], chain.flow_id.as_str(), "{query}");
    }
    let count: Value = harness
        .flow(
            Method::GET,
            &format!(
                "{}?property=baseConnectionId=={}&count=true",
                path("sourceConnections"),
                chain.base_id
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count, json!({"count": 1}));
    let response = harness
        .flow_in(
            "dev",
            Method::GET,
            &format!("{}/{}", path("flows"), chain.flow_id),
        )
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 404, "1439-404").await;

    let message = envelope(&chain.flow_id, &chain.dataset_id, SCHEMA);
    for _ in 0..2 {
        let response = post_message(&harness, &chain.inlet_url, &message).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let batch = harness
        .http
        .post(
            chain
                .inlet_url
                .replace("/collection/", "/collection/batch/"),
        )
        .json(&json!({"messages": [message]}))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), StatusCode::MULTI_STATUS);
    assert_eq!(records(&harness, &chain.dataset_id).await, 3);

    let runs = runs_of(&harness, &chain.flow_id).await;
    assert_eq!(runs.len(), 1, "one hour window");
    let run = &runs[0];
    assert_eq!(run["flowId"], chain.flow_id.as_str());
    assert_eq!(run["metrics"]["recordSummary"]["inputRecordCount"], 3);
    assert_eq!(run["metrics"]["recordSummary"]["outputRecordCount"], 3);
    assert_eq!(run["metrics"]["recordSummary"]["failedRecordCount"], 0);
    assert_eq!(run["metrics"]["statusSummary"]["status"], "inProgress");
    let by_id = get_item(&harness, "runs", run["id"].as_str().unwrap()).await;
    assert_eq!(by_id["id"], run["id"]);
    let flow = get_item(&harness, "flows", &chain.flow_id).await;
    assert_eq!(flow["lastRunDetails"]["id"], run["id"]);
}

fn uuid_shaped(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
}

// --------------------------------------------------------------------------------------- the raw conversation

#[tokio::test]
async fn a_raw_flow_needs_a_mapping_of_the_dataset_schema_and_takes_the_flow_id_from_header_or_query()
 {
    let harness = Harness::start().await;
    let chain = chain(&harness, "raw").await;
    let mapping_id = chain.mapping_id.clone().unwrap();
    assert_eq!(mapping_id.len(), 32, "{mapping_id}");

    let flow = get_item(&harness, "flows", &chain.flow_id).await;
    assert_eq!(flow["transformations"][0]["name"], "Mapping");
    assert_eq!(flow["transformations"][0]["params"]["mappingVersion"], "0");

    let raw = json!({"page": {"url": "https://shop.example/"}});
    let with_header = harness
        .http
        .post(&chain.inlet_url)
        .header("x-adobe-flow-id", &chain.flow_id)
        .json(&raw)
        .send()
        .await
        .unwrap();
    assert_eq!(with_header.status(), StatusCode::OK);
    let with_query = harness
        .http
        .post(format!(
            "{}?x-adobe-flow-id={}",
            chain.inlet_url, chain.flow_id
        ))
        .json(&raw)
        .send()
        .await
        .unwrap();
    assert_eq!(with_query.status(), StatusCode::OK);
    let without = post_message(&harness, &chain.inlet_url, &raw).await;
    assert_eq!(
        without.status(),
        StatusCode::OK,
        "received, but lands nowhere"
    );
    assert_eq!(records(&harness, &chain.dataset_id).await, 2);
    let state = harness.admin_wire("/_emulator/state").await;
    let inlet_id = chain.inlet_url.rsplit('/').next().unwrap();
    assert_eq!(state["unroutedMessages"][inlet_id], 1);

    // A new mapping version, then the flow moves to it.
    let response = harness
        .flow(Method::PUT, &format!("{MAPPING_SETS}/{mapping_id}"))
        .json(&mapping_body(SCHEMA))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["version"], 1);
    let old: Value = harness
        .flow(
            Method::GET,
            &format!("{MAPPING_SETS}/{mapping_id}?version=0"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(old["version"], 0);
    assert_eq!(
        old["mappings"][0]["destinationXdmPath"],
        "web.webPageDetails.URL"
    );
    let patch = |version: u64, etag: &str| {
        harness
            .flow(Method::PATCH, &format!("{}/{}", path("flows"), chain.flow_id))
            .header("if-match", etag)
            .json(&json!([{"op": "replace", "path": "/transformations/0",
                "value": {"name": "Mapping", "params": {"mappingId": mapping_id, "mappingVersion": version}}}]))
            .send()
    };
    assert_flow_error(patch(7, &chain.flow_etag).await.unwrap(), 400, "1412-400").await;
    let response = patch(1, &chain.flow_etag).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let flow = get_item(&harness, "flows", &chain.flow_id).await;
    assert_eq!(flow["transformations"][0]["params"]["mappingVersion"], "1");
    assert_eq!(flow["lastOperation"]["operation"], "update");
}

#[tokio::test]
async fn flow_creation_is_checked_as_the_reference_lists() {
    let harness = Harness::start().await;
    let chain = chain(&harness, "raw").await;
    let other_schema = "https://ns.adobe.com/acme/schemas/other";
    let response = harness
        .flow(Method::POST, MAPPING_SETS)
        .json(&mapping_body(other_schema))
        .send()
        .await
        .unwrap();
    let foreign_mapping: Value = response.json().await.unwrap();
    let base = json!({
        "name": "checked",
        "flowSpec": {"id": RAW_FLOW_SPEC_ID, "version": "1.0"},
        "sourceConnectionIds": [chain.source_id], "targetConnectionIds": [chain.target_id],
        "transformations": [{"name": "Mapping", "params": {"mappingId": chain.mapping_id, "mappingVersion": 0}}]
    });
    let with = |pointer: &str, value: Value| {
        let mut body = base.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let mut with_state = base.clone();
    with_state["state"] = json!("enabled");
    let mut without_mapping = base.clone();
    without_mapping
        .as_object_mut()
        .unwrap()
        .remove("transformations");
    let cases = [
        (with_state, "1410-400"),
        (
            with(
                "/flowSpec/id",
                json!("d69717ba-71b4-4313-b654-49f9cf126d7a"),
            ),
            "1413-400",
        ),
        (without_mapping, "1000-400"),
        (with("/sourceConnectionIds", json!(["nope"])), "1000-400"),
        (
            with("/targetConnectionIds", json!([chain.source_id])),
            "1000-400",
        ),
        (
            with(
                "/transformations/0/params/mappingId",
                foreign_mapping["id"].clone(),
            ),
            "1425-400",
        ),
        (
            with("/transformations/0/params/mappingVersion", json!(5)),
            "1412-400",
        ),
    ];
    for (body, code) in cases {
        let response = harness
            .flow(Method::POST, &path("flows"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_flow_error(response, 400, code).await;
    }
    let response = harness
        .flow(Method::POST, &path("targetConnections"))
        .json(&target_body(&chain.dataset_id, other_schema))
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 400, "1000-400").await;
    let response = harness
        .flow(Method::POST, &path("targetConnections"))
        .json(&target_body("000000000000000000000000", SCHEMA))
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 400, "1000-400").await;
    let response = harness
        .flow(Method::POST, &path("sourceConnections"))
        .json(&source_body("not-a-connection"))
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 400, "1000-400").await;
    let response = harness
        .flow(Method::POST, &path("sourceConnections"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "the gateway's content-type check"
    );
}

// ------------------------------------------------------------------------------------- updates and states

#[tokio::test]
async fn a_flow_patch_needs_the_current_etag_and_a_disabled_flow_takes_no_data() {
    let harness = Harness::start().await;
    let chain = chain(&harness, "xdm").await;
    let flow_path = format!("{}/{}", path("flows"), chain.flow_id);
    let rename = json!([{"op": "replace", "path": "/name", "value": "renamed"}]);

    let response = harness
        .flow(Method::PATCH, &flow_path)
        .json(&rename)
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 400, "1403-400").await;
    let response = harness
        .flow(Method::PATCH, &flow_path)
        .header("if-match", &chain.flow_etag)
        .json(&json!([{"op": "replace", "path": "/state", "value": "disabled"}]))
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 400, "1455-400").await;
    let response = harness
        .flow(Method::PATCH, &flow_path)
        .header("if-match", &chain.flow_etag)
        .json(&rename)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let patched: Value = response.json().await.unwrap();
    assert_ne!(patched["etag"], chain.flow_etag.as_str());
    let response = harness
        .flow(Method::PATCH, &flow_path)
        .header("if-match", &chain.flow_etag)
        .json(&rename)
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 412, "1404-412").await;
    assert_eq!(
        get_item(&harness, "flows", &chain.flow_id).await["name"],
        "renamed"
    );

    // Source connections patch the same way.
    let source_etag = get_item(&harness, "sourceConnections", &chain.source_id).await["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let source_path = format!("{}/{}", path("sourceConnections"), chain.source_id);
    let response = harness
        .flow(Method::PATCH, &source_path)
        .header("if-match", "\"stale\"")
        .json(&rename)
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 412, "1404-412").await;
    let response = harness
        .flow(Method::PATCH, &source_path)
        .header("if-match", &source_etag)
        .json(&json!([{"op": "replace", "path": "/baseConnectionId", "value": "x"}]))
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 400, "1455-400").await;

    // Disable: the inlet no longer routes through the flow.
    let action = |op: &str| {
        harness
            .http
            .post(harness.url(&format!("{flow_path}/action?op={op}")))
            .bearer_auth(&harness.token)
            .header("x-api-key", DEMO_CLIENT_ID)
            .header("x-gw-ims-org-id", DEMO_ORG_ID)
            .header("x-sandbox-name", "prod")
            .send()
    };
    let response = action("disable").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        get_item(&harness, "flows", &chain.flow_id).await["state"],
        "disabled"
    );
    let message = envelope(&chain.flow_id, &chain.dataset_id, SCHEMA);
    let response = post_message(&harness, &chain.inlet_url, &message).await;
    assert_eq!(response.status(), StatusCode::OK, "received asynchronously");
    let response = post_message(
        &harness,
        &format!("{}?syncValidation=true", chain.inlet_url),
        &message,
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["report"]["message"]
            .as_str()
            .unwrap()
            .contains("not enabled"),
        "{body}"
    );
    assert_eq!(records(&harness, &chain.dataset_id).await, 0);
    assert_flow_error(action("explode").await.unwrap(), 400, "1456-400").await;

    let response = action("ENABLE").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = post_message(&harness, &chain.inlet_url, &message).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(records(&harness, &chain.dataset_id).await, 1);
}

#[tokio::test]
async fn the_inlet_refuses_flows_of_other_inlets_and_messages_for_another_dataset() {
    let harness = Harness::start().await;
    let chain = chain(&harness, "xdm").await;
    let (other_base, _) = harness.create("other").await;
    let other_inlet = harness.connection(&other_base).await["auth"]["params"]["inletUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let batch_url = |inlet: &str| inlet.replace("/collection/", "/collection/batch/");

    let good = envelope(&chain.flow_id, &chain.dataset_id, SCHEMA);
    let wrong_dataset = envelope(&chain.flow_id, DEMO_DATASET_ID, SCHEMA);
    let wrong_schema = envelope(&chain.flow_id, &chain.dataset_id, DEMO_SCHEMA_ID);
    let unknown_flow = envelope(
        "00000000-0000-0000-0000-000000000000",
        &chain.dataset_id,
        SCHEMA,
    );
    let no_flow = xdm_message();
    let response = harness
        .http
        .post(batch_url(&chain.inlet_url))
        .json(&json!({"messages": [good, wrong_dataset, wrong_schema, unknown_flow, no_flow]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MULTI_STATUS);
    let body: Value = response.json().await.unwrap();
    let statuses: Vec<Value> = body["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["statusCode"].clone())
        .collect();
    assert_eq!(
        statuses,
        [Value::Null, json!(400), json!(400), json!(400), Value::Null],
        "{body}"
    );
    assert!(
        body["responses"][3]["message"]
            .as_str()
            .unwrap()
            .starts_with("inletId: ["),
        "{body}"
    );
    // The flow belongs to another inlet.
    let response = harness
        .http
        .post(batch_url(&other_inlet))
        .json(&json!({"messages": [good]}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["responses"][0]["statusCode"], 400, "{body}");
    assert_eq!(records(&harness, &chain.dataset_id).await, 1);

    // Asynchronously received, a message for the flow's inlet but the wrong dataset fails in the run.
    let response = post_message(
        &harness,
        &chain.inlet_url,
        &envelope(&chain.flow_id, DEMO_DATASET_ID, SCHEMA),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let runs = runs_of(&harness, &chain.flow_id).await;
    assert_eq!(runs[0]["metrics"]["recordSummary"]["inputRecordCount"], 2);
    assert_eq!(runs[0]["metrics"]["recordSummary"]["failedRecordCount"], 1);
    let state = harness.admin_wire("/_emulator/state").await;
    assert_eq!(
        state["inlets"][chain.inlet_url.rsplit('/').next().unwrap()]["rejected"],
        3
    );
}

// ------------------------------------------------------------------------------------------------ delete order

#[tokio::test]
async fn deletes_go_flow_first_then_source_and_target_then_the_base_connection() {
    let harness = Harness::start().await;
    let chain = chain(&harness, "raw").await;
    let delete = |collection: &str, id: &str| {
        harness
            .flow(Method::DELETE, &format!("{}/{id}", path(collection)))
            .send()
    };
    let body = assert_flow_error(
        delete("connections", &chain.base_id).await.unwrap(),
        400,
        "1418-400",
    )
    .await;
    assert!(
        body["report"]["detailed-message"]
            .as_str()
            .unwrap()
            .contains(&chain.flow_id),
        "names the flow: {body}"
    );
    for (collection, id) in [
        ("sourceConnections", &chain.source_id),
        ("targetConnections", &chain.target_id),
    ] {
        let body = assert_flow_error(delete(collection, id).await.unwrap(), 400, "1447-400").await;
        assert!(
            body["errorMessage"]
                .as_str()
                .unwrap()
                .contains(&chain.flow_id)
        );
    }

    let response = delete("flows", &chain.flow_id).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = harness
        .flow(Method::GET, &format!("{}/{}", path("flows"), chain.flow_id))
        .send()
        .await
        .unwrap();
    let body = assert_flow_error(response, 404, "1439-404").await;
    assert_eq!(body["report"]["type"], "flows");
    assert_eq!(body["report"]["id"], chain.flow_id.as_str());
    assert_eq!(
        get_item(&harness, "sourceConnections", &chain.source_id).await["id"],
        chain.source_id.as_str(),
        "deleting a flow leaves its connections"
    );
    for (collection, id) in [
        ("sourceConnections", &chain.source_id),
        ("targetConnections", &chain.target_id),
        ("connections", &chain.base_id),
    ] {
        let response = delete(collection, id).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{collection}");
    }
    let response = delete("sourceConnections", &chain.source_id).await.unwrap();
    let body = assert_flow_error(response, 404, "1101-404").await;
    assert_eq!(body["report"]["type"], "sourceConnections");
    let mapping = chain.mapping_id.unwrap();
    let response = harness
        .flow(Method::DELETE, &format!("{MAPPING_SETS}/{mapping}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

// ------------------------------------------------------------------------------------ faults, reset, restarts

#[tokio::test]
async fn fault_rules_apply_to_the_new_routes() {
    let harness = Harness::start().await;
    let chain = chain(&harness, "xdm").await;
    harness
        .admin
        .add_faults(rules(json!([
            {"method": "GET", "route": "/data/foundation/flowservice/flows/{id}", "status": 404, "times": 1},
            {"method": "POST", "route": "/data/foundation/flowservice/flows", "status": 503,
             "retryAfter": 2, "times": 1},
            {"route": "/data/foundation/catalog/dataSets/{id}", "status": 404, "times": 1}
        ])))
        .await;
    let response = harness
        .flow(Method::GET, &format!("{}/{}", path("flows"), chain.flow_id))
        .send()
        .await
        .unwrap();
    let body = assert_flow_error(response, 404, "1439-404").await;
    assert_eq!(
        body["report"]["id"],
        chain.flow_id.as_str(),
        "the genuine 404"
    );
    assert_eq!(
        get_item(&harness, "flows", &chain.flow_id).await["id"],
        chain.flow_id.as_str()
    );

    let response = harness
        .flow(Method::POST, &path("flows"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "2");
    assert_flow_error(response, 503, "1103-503").await;
    let response = harness
        .flow(Method::GET, &format!("{DATASETS}/{}", chain.dataset_id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let log = harness.admin.requests().await;
    let faulted: Vec<&str> = log
        .log
        .iter()
        .filter(|e| e.fault.is_some())
        .map(|e| e.route.as_str())
        .collect();
    assert_eq!(
        faulted,
        [
            "/data/foundation/flowservice/flows/{id}",
            "/data/foundation/flowservice/flows",
            "/data/foundation/catalog/dataSets/{id}"
        ]
    );
}

#[tokio::test]
async fn reset_forgets_the_dataflow_objects_and_seeds_the_demo_dataset_again() {
    let harness = Harness::start().await;
    chain(&harness, "raw").await;
    let state = harness.admin_wire("/_emulator/state").await;
    for key in [
        "sourceConnections",
        "targetConnections",
        "mappingSets",
        "flows",
    ] {
        assert_eq!(state[key].as_array().unwrap().len(), 1, "{key}");
    }
    assert_eq!(state["datasets"].as_array().unwrap().len(), 2);
    let response = harness
        .admin_request(Method::POST, "/_emulator/reset")
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let state = harness.admin_wire("/_emulator/state").await;
    for key in [
        "sourceConnections",
        "targetConnections",
        "mappingSets",
        "flows",
        "runs",
    ] {
        assert_eq!(state[key], json!([]), "{key}");
    }
    assert_eq!(state["datasets"].as_array().unwrap().len(), 1);
    assert_eq!(state["datasets"][0]["id"], DEMO_DATASET_ID);
}

#[tokio::test]
async fn a_restart_with_a_state_file_keeps_datasets_connections_mapping_sets_and_flows() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let config = || EmulatorConfig {
        state_file: Some(state_file.clone()),
        ..Default::default()
    };
    let harness = Harness::with(config()).await;
    let chain = chain(&harness, "raw").await;
    let mapping_id = chain.mapping_id.clone().unwrap();
    let response = harness
        .flow(Method::PUT, &format!("{MAPPING_SETS}/{mapping_id}"))
        .json(&mapping_body(SCHEMA))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let before_flow = get_item(&harness, "flows", &chain.flow_id).await;
    let before_source = get_item(&harness, "sourceConnections", &chain.source_id).await;
    let before_target = get_item(&harness, "targetConnections", &chain.target_id).await;
    harness.emulator.shutdown().await;

    let restarted = Harness::with(config()).await;
    let flow = get_item(&restarted, "flows", &chain.flow_id).await;
    assert_eq!(flow["etag"], before_flow["etag"]);
    assert_eq!(flow["transformations"], before_flow["transformations"]);
    assert_eq!(
        flow["inheritedAttributes"],
        before_flow["inheritedAttributes"]
    );
    assert_eq!(
        get_item(&restarted, "sourceConnections", &chain.source_id).await,
        before_source
    );
    assert_eq!(
        get_item(&restarted, "targetConnections", &chain.target_id).await,
        before_target
    );
    let mapping: Value = restarted
        .flow(
            Method::GET,
            &format!("{MAPPING_SETS}/{mapping_id}?version=0"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mapping["id"], mapping_id.as_str());
    let response = restarted
        .flow(Method::GET, &format!("{DATASETS}/{}", chain.dataset_id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Routing works after the restart; the new objects continue the creation order.
    let inlet = chain.inlet_url.replace(&harness.base, &restarted.base);
    let response = restarted
        .http
        .post(&inlet)
        .header("x-adobe-flow-id", &chain.flow_id)
        .json(&json!({"page": {"url": "u"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(records(&restarted, &chain.dataset_id).await, 1);
    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    for key in [
        "datasets",
        "sourceConnections",
        "targetConnections",
        "mappingSets",
        "flows",
    ] {
        assert!(
            !saved[key].as_array().unwrap().is_empty(),
            "{key} in the file"
        );
    }
}
