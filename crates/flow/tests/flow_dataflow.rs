//! The dataflow calls of the Flow Service client (Catalog datasets, source and target connections,
//! Data Prep mapping sets, flows, runs) against a local HTTP stub that answers the dataflow
//! reference's documented bodies, statuses and error envelopes and records every request: the request
//! shapes, the parsing of the answers, the error classes, redaction, and that reads are retried while
//! writes are not.
//!
//! The emulator does not serve these routes yet; once it does, these calls belong in its tests too.

#[path = "support/recording_observer.rs"]
mod recording_observer;

use std::collections::{BTreeMap, VecDeque};
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aep_flow::{
    Credentials, Dataset, FlowClient, FlowClientConfig, FlowError, FlowErrorKind, FlowKind,
    FlowUpdate, Mapping, MappingRef, NewFlow, NewMappingSet, NewSourceConnection,
    NewTargetConnection, Operation, Scope, SourceType, latest_run,
};
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use recording_observer::RecordingObserver;

const CLIENT_SECRET: &str = "p8e-stub-CLIENT-SECRET-0123456789";
const ACCESS_TOKEN: &str = "stub-access-token-0123456789";
const FLOW: &str = "/data/foundation/flowservice";
const BASE_ID: &str = "a59d368a-1152-4673-a46e-bd52e8cdb9a9";
const SOURCE_ID: &str = "34ece231-294d-416c-ad2a-5a5dfb2bc69f";
const TARGET_ID: &str = "07f2f6ff-1da5-4704-916a-c615b873cba9";
const FLOW_ID: &str = "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2";
const DATASET_ID: &str = "5b020a27e7040801dedbf46e";
const MAPPING_ID: &str = "e7c80e4c0d8f4a98a7d400b4e178b635";
const SCHEMA: &str = "https://ns.adobe.com/acme/schemas/274f17bc5807ff307a046bab1489fb18";
const CONTENT_TYPE: &str = "application/vnd.adobe.xed-full+json;version=1";

/// A request the stub received.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: Option<String>,
    headers: BTreeMap<String, String>,
    body: Option<Value>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One scripted answer: a status and a JSON (or empty) body, plus headers.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        body: Some(body),
        headers: Vec::new(),
    }
}

fn no_content() -> Reply {
    Reply {
        status: 204,
        body: None,
        headers: Vec::new(),
    }
}

/// The Flow Service error envelope of the reference (§2.5).
fn flow_error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        json!({
            "type": format!("https://ns.adobe.com/aep/errors/FLOW-{code}-{status}"),
            "title": "error",
            "status": status,
            "report": { "detailed-message": message, "request-id": "stub-request" },
            "errorMessage": message,
            "errorDetails": message,
        }),
    )
}

/// Answers for one method and path, in order; the last one repeats.
struct Route {
    method: &'static str,
    path: String,
    replies: VecDeque<Reply>,
}

#[derive(Default)]
struct StubState {
    requests: Mutex<Vec<Recorded>>,
    routes: Mutex<Vec<Route>>,
}

async fn answer(State(state): State<Arc<StubState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
            .collect(),
        // The token request is a form, not JSON: kept as text.
        body: (!bytes.is_empty()).then(|| {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        }),
    };
    let reply = if recorded.path == "/ims/token/v3" {
        reply(
            200,
            json!({"access_token": ACCESS_TOKEN, "token_type": "bearer", "expires_in": 86399}),
        )
    } else {
        let mut routes = state.routes.lock().unwrap();
        let route = routes
            .iter_mut()
            .find(|route| route.method == recorded.method && route.path == recorded.path);
        match route {
            Some(route) if route.replies.len() > 1 => route.replies.pop_front().unwrap(),
            Some(route) => route.replies[0].clone(),
            None => reply(418, json!({"message": "the stub has no such route"})),
        }
    };
    if recorded.path != "/ims/token/v3" {
        state.requests.lock().unwrap().push(recorded);
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(*name, value);
    }
    match reply.body {
        Some(body) => response
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => response.body(Body::empty()),
    }
    .unwrap()
}

/// The stub, a client pointed at it (platform and IMS), and credentials with a client secret.
struct Env {
    state: Arc<StubState>,
    client: FlowClient,
    credentials: Credentials,
    observer: Arc<RecordingObserver>,
}

async fn env() -> Env {
    let state = Arc::new(StubState::default());
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    let observer = Arc::new(RecordingObserver::default());
    let client = FlowClient::new(FlowClientConfig {
        platform_url: url.parse().unwrap(),
        ims_url: url.parse().unwrap(),
        qps: 0.0,
        max_concurrency: 16,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        extra_ca_pem: None,
        observer: Some(observer.clone()),
    })
    .unwrap();
    let data: BTreeMap<String, Vec<u8>> = [
        ("clientId", "stub-client-id"),
        ("clientSecret", CLIENT_SECRET),
        ("orgId", "ACME@AdobeOrg"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.as_bytes().to_vec()))
    .collect();
    Env {
        state,
        client,
        credentials: Credentials::from_secret_data(&data, "stub/1").unwrap(),
        observer,
    }
}

impl Env {
    fn scope(&self) -> Scope<'_> {
        Scope {
            credentials: &self.credentials,
            sandbox: "prod",
        }
    }

    fn route(&self, method: &'static str, path: impl Into<String>, replies: Vec<Reply>) {
        self.state.routes.lock().unwrap().push(Route {
            method,
            path: path.into(),
            replies: replies.into(),
        });
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The only request the stub received (token requests aside).
    fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        requests.into_iter().next().unwrap()
    }
}

/// Every Platform request carries the token, the integration's headers and the sandbox.
fn assert_platform_headers(request: &Recorded) {
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );
    assert_eq!(request.header("x-api-key"), Some("stub-client-id"));
    assert_eq!(request.header("x-gw-ims-org-id"), Some("ACME@AdobeOrg"));
    assert_eq!(request.header("x-sandbox-name"), Some("prod"));
    // Not in the published contract: the client sends no request id of its own.
    assert!(request.header("x-request-id").is_none());
}

fn assert_kind<T: std::fmt::Debug>(result: Result<T, FlowError>, kind: FlowErrorKind) -> FlowError {
    let error = result.unwrap_err();
    assert_eq!(error.kind(), kind, "{error}");
    error
}

fn created(id: &str) -> Reply {
    reply(
        201,
        json!({"id": id, "etag": "\"f50185ed-0000-0200-0000-637e8fad0000\""}),
    )
}

fn dataset() -> Value {
    json!({ DATASET_ID: {
        "name": "Loyalty events", "imsOrg": "ACME@AdobeOrg",
        "tags": { "unifiedProfile": ["enabled:true"] },
        "version": "1.0.1", "created": 1536536917382_i64, "updated": 1539793978215_i64,
        "schemaRef": { "id": SCHEMA, "contentType": CONTENT_TYPE }
    }})
}

fn source_item(id: &str, name: &str) -> Value {
    json!({
        "id": id, "name": name, "baseConnectionId": BASE_ID, "state": "enabled",
        "connectionSpec": { "id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0" },
        "etag": "\"d505125b\"", "version": "\"d505125b\""
    })
}

fn target_item(id: &str, name: &str) -> Value {
    json!({
        "id": id, "name": name, "state": "enabled",
        "data": { "schema": { "id": SCHEMA, "version": CONTENT_TYPE } },
        "params": { "dataSetId": DATASET_ID },
        "connectionSpec": { "id": "c604ff05-7f1a-43c0-8e18-33bf874cb11c", "version": "1.0" },
        "etag": "\"340680f7\""
    })
}

fn flow_item(id: &str, name: &str, source: &str) -> Value {
    json!({
        "id": id, "name": name, "state": "enabled",
        "flowSpec": { "id": "c1a19761-d2c7-4702-b9fa-fe91f0613e81", "version": "1.0" },
        "etag": "\"dc0459ae\"", "version": "\"dc0459ae\"",
        "sourceConnectionIds": [source], "targetConnectionIds": [TARGET_ID],
        "inheritedAttributes": { "sourceConnections": [ { "id": source,
            "baseConnection": { "id": BASE_ID } } ] },
        "transformations": [ { "name": "Mapping",
            "params": { "mappingId": MAPPING_ID, "mappingVersion": "1" } } ]
    })
}

#[tokio::test]
async fn a_dataset_is_read_from_catalog_and_a_missing_one_is_not_found() {
    let env = env().await;
    env.route(
        "GET",
        format!("/data/foundation/catalog/dataSets/{DATASET_ID}"),
        vec![reply(200, dataset())],
    );
    let found: Dataset = env
        .client
        .get_dataset(&env.scope(), DATASET_ID)
        .await
        .unwrap();
    assert_eq!(found.schema_ref.id, SCHEMA);
    assert_eq!(found.schema_ref.content_type, CONTENT_TYPE);
    assert!(found.profile_enabled);
    let request = env.only_request();
    assert_eq!(request.method, "GET");
    assert_eq!(request.query, None);
    assert_platform_headers(&request);

    env.route(
        "GET",
        "/data/foundation/catalog/dataSets/000000000000000000000000",
        vec![reply(404, json!({"title": "Not Found", "status": 404}))],
    );
    let error = assert_kind(
        env.client
            .get_dataset(&env.scope(), "000000000000000000000000")
            .await,
        FlowErrorKind::NotFound,
    );
    assert_eq!(error.status(), Some(404));
    // An empty object is the same answer as a 404.
    env.route(
        "GET",
        "/data/foundation/catalog/dataSets/111111111111111111111111",
        vec![reply(200, json!({}))],
    );
    assert_kind(
        env.client
            .get_dataset(&env.scope(), "111111111111111111111111")
            .await,
        FlowErrorKind::NotFound,
    );
}

#[tokio::test]
async fn source_connections_are_created_read_found_by_name_and_deleted() {
    let env = env().await;
    let scope = env.scope();
    env.route(
        "POST",
        format!("{FLOW}/sourceConnections"),
        vec![created(SOURCE_ID)],
    );
    let new = NewSourceConnection {
        name: "orders source".into(),
        description: None,
        base_connection_id: BASE_ID.into(),
    };
    let created = env
        .client
        .create_source_connection(&scope, &new)
        .await
        .unwrap();
    assert_eq!(created.id, SOURCE_ID);
    assert_eq!(created.etag, "\"f50185ed-0000-0200-0000-637e8fad0000\"");
    let request = env.only_request();
    assert_platform_headers(&request);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.body,
        Some(json!({
            "name": "orders source",
            "baseConnectionId": BASE_ID,
            "connectionSpec": { "id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0" }
        }))
    );

    env.route(
        "GET",
        format!("{FLOW}/sourceConnections/{SOURCE_ID}"),
        vec![reply(
            200,
            json!({"items": [source_item(SOURCE_ID, "orders source")]}),
        )],
    );
    let source = env
        .client
        .get_source_connection(&scope, SOURCE_ID)
        .await
        .unwrap();
    assert_eq!(source.base_connection_id.as_deref(), Some(BASE_ID));
    assert_eq!(source.etag, "\"d505125b\"");

    // Two pages; only the exact name is kept.
    let other = "9d2b2a1e-0000-4000-8000-000000000001";
    env.route(
        "GET",
        format!("{FLOW}/sourceConnections"),
        vec![
            reply(
                200,
                json!({"items": [source_item(other, "orders source (old)")],
                       "_links": {"next": {"href": "/sourceConnections?continuationToken=page2"}}}),
            ),
            reply(
                200,
                json!({"items": [source_item(SOURCE_ID, "orders source")], "_links": {}}),
            ),
        ],
    );
    let found = env
        .client
        .find_source_connections_by_name(&scope, "orders source")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, SOURCE_ID);
    let requests = env.requests();
    let pages: Vec<_> = requests[requests.len() - 2..]
        .iter()
        .map(|request| request.query.clone().unwrap())
        .collect();
    assert_eq!(
        pages,
        [
            "property=name==orders%20source\
             &property=connectionSpec.id==bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb&limit=100",
            "property=name==orders%20source\
             &property=connectionSpec.id==bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb&limit=100\
             &continuationToken=page2",
        ]
    );

    env.route(
        "DELETE",
        format!("{FLOW}/sourceConnections/{SOURCE_ID}"),
        vec![no_content(), flow_error(404, "1101", "Resource not found")],
    );
    env.client
        .delete_source_connection(&scope, SOURCE_ID)
        .await
        .unwrap();
    // Already gone: success too.
    env.client
        .delete_source_connection(&scope, SOURCE_ID)
        .await
        .unwrap();
    let last = env.requests().pop().unwrap();
    assert_eq!((last.method.as_str(), last.body), ("DELETE", None));
}

#[tokio::test]
async fn target_connections_bind_the_dataset_and_its_schema() {
    let env = env().await;
    let scope = env.scope();
    env.route(
        "GET",
        format!("/data/foundation/catalog/dataSets/{DATASET_ID}"),
        vec![reply(200, dataset())],
    );
    env.route(
        "POST",
        format!("{FLOW}/targetConnections"),
        vec![created(TARGET_ID)],
    );
    env.route(
        "GET",
        format!("{FLOW}/targetConnections/{TARGET_ID}"),
        vec![reply(
            200,
            json!({"items": [target_item(TARGET_ID, "orders target")]}),
        )],
    );
    env.route(
        "GET",
        format!("{FLOW}/targetConnections"),
        vec![reply(
            200,
            json!({"items": [target_item(TARGET_ID, "orders target")]}),
        )],
    );
    env.route(
        "DELETE",
        format!("{FLOW}/targetConnections/{TARGET_ID}"),
        vec![no_content()],
    );

    let dataset = env.client.get_dataset(&scope, DATASET_ID).await.unwrap();
    let new = NewTargetConnection::for_dataset(
        "orders target".into(),
        Some("lands in loyalty".into()),
        &dataset,
    );
    let created = env
        .client
        .create_target_connection(&scope, &new)
        .await
        .unwrap();
    assert_eq!(created.id, TARGET_ID);
    assert_eq!(
        env.requests()[1].body,
        Some(json!({
            "name": "orders target",
            "description": "lands in loyalty",
            "data": { "schema": { "id": SCHEMA, "version": CONTENT_TYPE } },
            "params": { "dataSetId": DATASET_ID },
            "connectionSpec": { "id": "c604ff05-7f1a-43c0-8e18-33bf874cb11c", "version": "1.0" }
        }))
    );
    let target = env
        .client
        .get_target_connection(&scope, TARGET_ID)
        .await
        .unwrap();
    assert_eq!(target.dataset_id.as_deref(), Some(DATASET_ID));
    assert_eq!(target.schema_id.as_deref(), Some(SCHEMA));
    let found = env
        .client
        .find_target_connections_by_name(&scope, "orders target")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        env.requests()[3].query.as_deref(),
        Some(
            "property=name==orders%20target\
             &property=connectionSpec.id==c604ff05-7f1a-43c0-8e18-33bf874cb11c&limit=100"
        )
    );
    env.client
        .delete_target_connection(&scope, TARGET_ID)
        .await
        .unwrap();
}

fn mapping_request() -> NewMappingSet {
    NewMappingSet {
        schema: aep_flow::SchemaRef {
            id: SCHEMA.into(),
            content_type: CONTENT_TYPE.into(),
        },
        mappings: vec![Mapping {
            source_type: SourceType::Attribute,
            source: "firstName".into(),
            destination: "person.name.firstName".into(),
        }],
    }
}

#[tokio::test]
async fn mapping_sets_are_created_read_by_version_and_updated_to_a_new_version() {
    let env = env().await;
    let scope = env.scope();
    let sets = "/data/foundation/conversion/mappingSets";
    env.route(
        "POST",
        sets,
        vec![reply(
            200,
            json!({"id": MAPPING_ID, "version": 0, "createdDate": 1614901254724_i64,
                   "modifiedDate": 1614901254724_i64, "createdBy": "x", "modifiedBy": "x"}),
        )],
    );
    env.route(
        "GET",
        format!("{sets}/{MAPPING_ID}"),
        vec![reply(
            200,
            json!({"id": MAPPING_ID, "version": 0,
                   "outputSchema": {"schemaRef": {"id": SCHEMA, "contentType": CONTENT_TYPE}},
                   "mappings": [{"sourceType": "ATTRIBUTE", "source": "firstName",
                                 "destination": "person.name.firstName",
                                 "sourceAttribute": "firstName",
                                 "destinationXdmPath": "person.name.firstName"}]}),
        )],
    );
    env.route(
        "PUT",
        format!("{sets}/{MAPPING_ID}"),
        vec![reply(200, json!({"id": MAPPING_ID, "version": 1}))],
    );

    let created = env
        .client
        .create_mapping_set(&scope, &mapping_request())
        .await
        .unwrap();
    assert_eq!(
        created,
        MappingRef {
            mapping_id: MAPPING_ID.into(),
            mapping_version: 0
        }
    );
    let set = env
        .client
        .get_mapping_set(&scope, MAPPING_ID, Some(0))
        .await
        .unwrap();
    assert_eq!(set.mappings, mapping_request().mappings);
    assert_eq!(set.schema_id.as_deref(), Some(SCHEMA));
    // Asking for a version the answer is not about is refused.
    assert_kind(
        env.client
            .get_mapping_set(&scope, MAPPING_ID, Some(3))
            .await,
        FlowErrorKind::UnexpectedResponse,
    );
    let updated = env
        .client
        .update_mapping_set(&scope, MAPPING_ID, &mapping_request())
        .await
        .unwrap();
    assert_eq!(updated.mapping_version, 1);

    let requests = env.requests();
    assert_eq!(requests[0].method, "POST");
    assert_platform_headers(&requests[0]);
    assert_eq!(
        requests[0].body,
        Some(json!({
            "outputSchema": {"schemaRef": {"id": SCHEMA, "contentType": CONTENT_TYPE}},
            "mappings": [{"sourceType": "ATTRIBUTE", "source": "firstName",
                          "destination": "person.name.firstName"}]
        }))
    );
    assert_eq!(requests[1].query.as_deref(), Some("version=0"));
    assert_eq!(requests[3].method, "PUT");
    assert_eq!(requests[3].body, requests[0].body);
    assert_eq!(requests[3].header("if-match"), None);
}

#[tokio::test]
async fn flows_are_created_without_state_and_read_with_their_mapping() {
    let env = env().await;
    let scope = env.scope();
    env.route("POST", format!("{FLOW}/flows"), vec![created(FLOW_ID)]);
    env.route(
        "GET",
        format!("{FLOW}/flows/{FLOW_ID}"),
        vec![reply(
            200,
            json!({"items": [flow_item(FLOW_ID, "orders flow", SOURCE_ID)]}),
        )],
    );
    let raw = NewFlow {
        name: "orders flow".into(),
        description: None,
        source_connection_id: SOURCE_ID.into(),
        target_connection_id: TARGET_ID.into(),
        kind: FlowKind::Raw(MappingRef {
            mapping_id: MAPPING_ID.into(),
            mapping_version: 0,
        }),
    };
    env.client.create_flow(&scope, &raw).await.unwrap();
    let xdm = NewFlow {
        kind: FlowKind::Xdm,
        ..raw.clone()
    };
    env.client.create_flow(&scope, &xdm).await.unwrap();
    let requests = env.requests();
    assert_eq!(
        requests[0].body,
        Some(json!({
            "name": "orders flow",
            "flowSpec": { "id": "c1a19761-d2c7-4702-b9fa-fe91f0613e81", "version": "1.0" },
            "sourceConnectionIds": [SOURCE_ID],
            "targetConnectionIds": [TARGET_ID],
            "transformations": [ { "name": "Mapping",
                "params": { "mappingId": MAPPING_ID, "mappingVersion": 0 } } ]
        }))
    );
    let xdm_body = requests[1].body.clone().unwrap();
    assert_eq!(
        xdm_body["flowSpec"]["id"],
        "d8a6f005-7eaf-4153-983e-e8574508b877"
    );
    assert_eq!(xdm_body.get("transformations"), None);
    assert!(requests.iter().all(|request| {
        request
            .body
            .as_ref()
            .is_some_and(|body| body.get("state").is_none())
    }));

    let flow = env.client.get_flow(&scope, FLOW_ID).await.unwrap();
    assert_eq!(flow.state, "enabled");
    assert_eq!(flow.etag, "\"dc0459ae\"");
    assert_eq!(flow.base_connection_ids, [BASE_ID]);
    assert_eq!(
        flow.mapping(),
        Some(MappingRef {
            mapping_id: MAPPING_ID.into(),
            mapping_version: 1
        })
    );
    assert_eq!(flow.last_run, None);
}

#[tokio::test]
async fn flows_are_found_by_name_by_source_connection_and_by_base_connection() {
    let env = env().await;
    let scope = env.scope();
    let second_source = "5c0a0b6e-0000-4000-8000-000000000002";
    let second_flow = "6d1b1c7f-0000-4000-8000-000000000003";
    // The stub ignores queries, so one route answers every flow lookup: the client keeps only what
    // matches what it asked for.
    env.route(
        "GET",
        format!("{FLOW}/flows"),
        vec![reply(
            200,
            json!({"items": [
                flow_item(FLOW_ID, "orders flow", SOURCE_ID),
                flow_item(second_flow, "orders flow, v2", second_source),
            ]}),
        )],
    );
    env.route(
        "GET",
        format!("{FLOW}/sourceConnections"),
        vec![reply(
            200,
            json!({"items": [source_item(SOURCE_ID, "a"), source_item(second_source, "b")]}),
        )],
    );

    let by_name = env
        .client
        .find_flows_by_name(&scope, "orders flow")
        .await
        .unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(
        env.requests()[0].query.as_deref(),
        Some("property=name==orders%20flow&limit=100")
    );
    // A comma cannot be sent in a filter value: the name is compared here only.
    let with_comma = env
        .client
        .find_flows_by_name(&scope, "orders flow, v2")
        .await
        .unwrap();
    assert_eq!(with_comma[0].id, second_flow);
    assert_eq!(env.requests()[1].query.as_deref(), Some("limit=100"));

    let by_source = env
        .client
        .find_flows_by_source_connection(&scope, SOURCE_ID)
        .await
        .unwrap();
    assert_eq!(by_source.len(), 1);
    assert_eq!(by_source[0].id, FLOW_ID);
    assert_eq!(
        env.requests()[2].query.as_deref(),
        Some(format!("property=sourceConnectionIds[]=={SOURCE_ID}&limit=100").as_str())
    );

    let before = env.requests().len();
    let by_base = env
        .client
        .find_flows_by_base_connection(&scope, BASE_ID)
        .await
        .unwrap();
    let ids: Vec<_> = by_base.iter().map(|flow| flow.id.as_str()).collect();
    assert_eq!(ids, [FLOW_ID, second_flow]);
    let queries: Vec<_> = env.requests()[before..]
        .iter()
        .map(|request| (request.path.clone(), request.query.clone().unwrap()))
        .collect();
    assert_eq!(
        queries,
        [
            (
                format!("{FLOW}/sourceConnections"),
                format!("property=baseConnectionId=={BASE_ID}&limit=100")
            ),
            (
                format!("{FLOW}/flows"),
                format!("property=sourceConnectionIds[]=={SOURCE_ID}&limit=100")
            ),
            (
                format!("{FLOW}/flows"),
                format!("property=sourceConnectionIds[]=={second_source}&limit=100")
            ),
        ]
    );
}

#[tokio::test]
async fn a_flow_patch_sends_if_match_and_a_stale_etag_is_a_precondition_failure() {
    let env = env().await;
    let scope = env.scope();
    env.route(
        "PATCH",
        format!("{FLOW}/flows/{FLOW_ID}"),
        vec![
            reply(200, json!({"id": FLOW_ID, "etag": "\"new-etag\""})),
            flow_error(
                412,
                "1404",
                "The supplied version 'v1' does not match the current version",
            ),
        ],
    );
    let update = FlowUpdate {
        name: Some("renamed".into()),
        description: None,
        mapping: Some(MappingRef {
            mapping_id: MAPPING_ID.into(),
            mapping_version: 2,
        }),
    };
    let updated = env
        .client
        .update_flow(&scope, FLOW_ID, "\"dc0459ae\"", &update)
        .await
        .unwrap();
    assert_eq!(updated.etag, "\"new-etag\"");
    let request = env.only_request();
    assert_eq!(request.header("if-match"), Some("\"dc0459ae\""));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.body,
        Some(json!([
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "replace", "path": "/transformations/0", "value": {"name": "Mapping",
                "params": {"mappingId": MAPPING_ID, "mappingVersion": 2}}}
        ]))
    );

    let error = assert_kind(
        env.client
            .update_flow(&scope, FLOW_ID, "\"stale\"", &update)
            .await,
        FlowErrorKind::PreconditionFailed,
    );
    assert_eq!(error.error_code(), Some("FLOW-1404-412"));
    assert_eq!(env.requests().len(), 2, "a write is not retried");

    // Nothing to change: refused without a request.
    assert_kind(
        env.client
            .update_flow(&scope, FLOW_ID, "\"e\"", &FlowUpdate::default())
            .await,
        FlowErrorKind::Invalid,
    );
    assert_eq!(env.requests().len(), 2);
}

#[tokio::test]
async fn enable_and_disable_post_an_action_without_a_body_and_delete_treats_404_as_gone() {
    let env = env().await;
    let scope = env.scope();
    env.route(
        "POST",
        format!("{FLOW}/flows/{FLOW_ID}/action"),
        vec![reply(200, json!({"id": FLOW_ID, "etag": "\"e2\""}))],
    );
    env.route(
        "DELETE",
        format!("{FLOW}/flows/{FLOW_ID}"),
        vec![no_content(), flow_error(404, "1439", "flow not found")],
    );
    env.client.disable_flow(&scope, FLOW_ID).await.unwrap();
    env.client.enable_flow(&scope, FLOW_ID).await.unwrap();
    env.client.delete_flow(&scope, FLOW_ID).await.unwrap();
    env.client.delete_flow(&scope, FLOW_ID).await.unwrap();
    let requests = env.requests();
    assert_eq!(requests[0].query.as_deref(), Some("op=disable"));
    assert_eq!(requests[1].query.as_deref(), Some("op=enable"));
    for request in &requests[..2] {
        assert_eq!(request.method, "POST");
        assert_eq!(request.body, None);
        assert_eq!(request.header("content-type"), None);
        assert_platform_headers(request);
    }
    assert_eq!(requests[2].method, "DELETE");
    assert_eq!(requests.len(), 4);
}

#[tokio::test]
async fn runs_are_listed_by_flow_and_the_latest_is_picked() {
    let env = env().await;
    let scope = env.scope();
    let run = |id: &str, started: i64, status: &str, failed: u64| {
        json!({"id": id, "flowId": FLOW_ID, "createdAt": started + 20,
               "metrics": {
                   "durationSummary": {"startedAtUTC": started, "completedAtUTC": started + 3_600_000},
                   "recordSummary": {"inputRecordCount": 100, "outputRecordCount": 100 - failed,
                                     "failedRecordCount": failed},
                   "statusSummary": {"status": status}}})
    };
    env.route(
        "GET",
        format!("{FLOW}/runs"),
        vec![reply(
            200,
            json!({"items": [
                run("9830305a-985f-47d0-b030-5a5bd5a1ea6e", 1_596_656_058_198, "success", 0),
                run("9830305a-985f-47d0-b030-5a5bd5a1ea6f", 1_596_659_658_198, "failed", 7),
            ]}),
        )],
    );
    let runs = env
        .client
        .list_runs(&scope, FLOW_ID, Some(1_596_000_000_000))
        .await
        .unwrap();
    assert_eq!(runs.len(), 2);
    let latest = latest_run(&runs).unwrap();
    assert_eq!(latest.id, "9830305a-985f-47d0-b030-5a5bd5a1ea6f");
    assert!(latest.is_failed());
    assert_eq!(latest.failed_record_count, Some(7));
    assert_eq!(latest.output_record_count, Some(93));
    assert_eq!(latest.completed_at, Some(1_596_663_258_198));
    // The URL layer escapes `>` in a query (`%3E`); the server decodes it back.
    let query = env.only_request().query.unwrap().replace("%3E", ">");
    assert_eq!(
        query,
        format!(
            "property=flowId=={FLOW_ID}\
             &property=metrics.durationSummary.startedAtUTC>1596000000000&limit=100"
        )
    );
}

#[tokio::test]
async fn reads_are_retried_through_5xx_and_429_but_writes_are_not() {
    let env = env().await;
    let scope = env.scope();
    env.route(
        "GET",
        format!("{FLOW}/flows/{FLOW_ID}"),
        vec![
            flow_error(503, "1103", "service unavailable"),
            Reply {
                headers: vec![("retry-after", "0".into())],
                ..reply(429, json!({"message": "slow down"}))
            },
            reply(200, json!({"items": [flow_item(FLOW_ID, "f", SOURCE_ID)]})),
        ],
    );
    let flow = env.client.get_flow(&scope, FLOW_ID).await.unwrap();
    assert_eq!(flow.id, FLOW_ID);
    assert_eq!(env.requests().len(), 3, "two retries of the read");
    assert_eq!(env.observer.outcomes(Operation::Get), ["5xx", "4xx", "2xx"]);

    env.route(
        "POST",
        format!("{FLOW}/flows"),
        vec![flow_error(502, "1102", "bad gateway")],
    );
    let new = NewFlow {
        name: "f".into(),
        description: None,
        source_connection_id: SOURCE_ID.into(),
        target_connection_id: TARGET_ID.into(),
        kind: FlowKind::Xdm,
    };
    let error = assert_kind(
        env.client.create_flow(&scope, &new).await,
        FlowErrorKind::Unavailable,
    );
    assert!(
        error.maybe_committed(),
        "a 5xx on a create may have committed"
    );
    assert_eq!(env.requests().len(), 4, "a write is sent once");

    env.route(
        "POST",
        format!("{FLOW}/targetConnections"),
        vec![Reply {
            headers: vec![("retry-after", "30".into())],
            ..reply(429, json!({"message": "too many requests"}))
        }],
    );
    let target = NewTargetConnection {
        name: "t".into(),
        description: None,
        dataset_id: DATASET_ID.into(),
        schema: aep_flow::SchemaRef {
            id: SCHEMA.into(),
            content_type: CONTENT_TYPE.into(),
        },
    };
    let error = assert_kind(
        env.client.create_target_connection(&scope, &target).await,
        FlowErrorKind::RateLimited,
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    assert!(!error.maybe_committed());
    assert_eq!(env.requests().len(), 5);
    // Inside the 429 window nothing more is sent with these credentials.
    assert_kind(
        env.client.get_source_connection(&scope, SOURCE_ID).await,
        FlowErrorKind::RateLimited,
    );
    assert_eq!(env.requests().len(), 5);
}

#[tokio::test]
async fn a_base_connection_used_by_flows_names_them_and_stays() {
    let env = env().await;
    env.route(
        "DELETE",
        format!("{FLOW}/connections/{BASE_ID}"),
        vec![flow_error(
            400,
            "1418",
            &format!(
                "The base connection {BASE_ID} cannot be deleted because it is used in one or more \
                 flows: {FLOW_ID}. Delete the flows first."
            ),
        )],
    );
    let error = assert_kind(
        env.client.delete_connection(&env.scope(), BASE_ID).await,
        FlowErrorKind::Invalid,
    );
    assert!(error.is_base_connection_in_use());
    assert_eq!(error.error_code(), Some("FLOW-1418-400"));
    assert_eq!(error.flow_ids_named(BASE_ID), [FLOW_ID]);
    assert_eq!(env.requests().len(), 1);
}

#[tokio::test]
async fn a_transitional_state_400_is_retryable_not_invalid() {
    let env = env().await;
    env.route(
        "DELETE",
        format!("{FLOW}/flows/{FLOW_ID}"),
        vec![flow_error(
            400,
            "1421",
            "The flow is in updating state and cannot be updated",
        )],
    );
    env.route(
        "PATCH",
        format!("{FLOW}/flows/{FLOW_ID}"),
        vec![flow_error(
            400,
            "1455",
            "An error has occurred while validating patch instructions",
        )],
    );
    let error = env
        .client
        .delete_flow(&env.scope(), FLOW_ID)
        .await
        .unwrap_err();
    assert!(error.is_transitional_state(), "{error}");
    assert!(!error.is_permanent(), "{error}");
    assert!(!error.maybe_committed(), "{error}");
    assert_eq!(error.error_code(), Some("FLOW-1421-400"));
    assert_eq!(env.requests().len(), 1, "the client does not retry a write");

    // Any other 400 stays permanent.
    let update = FlowUpdate {
        name: Some("x".into()),
        ..FlowUpdate::default()
    };
    let error = assert_kind(
        env.client
            .update_flow(&env.scope(), FLOW_ID, "\"e\"", &update)
            .await,
        FlowErrorKind::Invalid,
    );
    assert!(error.is_permanent());
    assert!(!error.is_transitional_state());
}

#[tokio::test]
async fn a_client_secret_echoed_in_an_error_body_is_redacted() {
    let env = env().await;
    env.route(
        "POST",
        "/data/foundation/conversion/mappingSets",
        vec![flow_error(
            400,
            "2250",
            &format!(
                "validation failed for client_secret={CLIENT_SECRET} and token {ACCESS_TOKEN}"
            ),
        )],
    );
    let error = assert_kind(
        env.client
            .create_mapping_set(&env.scope(), &mapping_request())
            .await,
        FlowErrorKind::Invalid,
    );
    for text in [
        error.to_string(),
        format!("{error:?}"),
        error.stable_message(),
    ] {
        assert!(!text.contains(CLIENT_SECRET), "{text}");
        assert!(!text.contains(ACCESS_TOKEN), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}

#[tokio::test]
async fn an_answer_about_another_object_is_not_trusted() {
    let env = env().await;
    let scope = env.scope();
    env.route(
        "GET",
        format!("{FLOW}/targetConnections/{TARGET_ID}"),
        vec![reply(
            200,
            json!({"items": [target_item(SOURCE_ID, "someone else")]}),
        )],
    );
    env.route(
        "GET",
        format!("{FLOW}/flows/{FLOW_ID}"),
        vec![reply(200, json!({"items": []}))],
    );
    env.route(
        "POST",
        format!("{FLOW}/sourceConnections"),
        vec![reply(201, json!({"id": "../flows", "etag": "\"e\""}))],
    );
    assert_kind(
        env.client.get_target_connection(&scope, TARGET_ID).await,
        FlowErrorKind::UnexpectedResponse,
    );
    assert_kind(
        env.client.get_flow(&scope, FLOW_ID).await,
        FlowErrorKind::NotFound,
    );
    let new = NewSourceConnection {
        name: "s".into(),
        description: None,
        base_connection_id: BASE_ID.into(),
    };
    let error = assert_kind(
        env.client.create_source_connection(&scope, &new).await,
        FlowErrorKind::UnexpectedResponse,
    );
    assert!(error.maybe_committed(), "the create did happen");
}
