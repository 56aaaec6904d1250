//! The emulator checked against Adobe's published contract (issue 14, part B): every operation the project
//! uses is driven through the test kit's `RecordingProxy`, for every status code the emulator can give it
//! (its own answers, and 429/5xx through fault rules), and every exchange is checked with
//! `validate_request` (the test builds the requests, so a deliberately bad one must be flagged as such) and
//! `validate_response`. The operations × status codes matrix it exercised must be the one in
//! docs/emulator.md ("Contract matrix"); when it differs, the test prints the table to paste.

use std::collections::{BTreeMap, BTreeSet};

use aep_emulator::{
    DATA_LAKE_CONNECTION_SPEC_ID, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_DATASET_ID, DEMO_ORG_ID,
    DEMO_SCHEMA_ID, EmulatorConfig, RAW_FLOW_SPEC_ID, STREAMING_CONNECTION_SPEC_ID,
    XDM_CONTENT_TYPE, XDM_FLOW_SPEC_ID,
};
use aep_testkit::admin::rule;
use aep_testkit::contract::{RecordingProxy, validate_request, validate_response};
use aep_testkit::emulator::{Harness, authenticated_connection, streaming_connection, xdm_message};
use reqwest::Method;
use serde_json::{Value, json};

const FS: &str = "/data/foundation/flowservice";
const MAPPING_SETS: &str = "/data/foundation/conversion/mappingSets";
const DATASETS: &str = "/data/foundation/catalog/dataSets";
const IMS: &str = "/ims/token/v3";
const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/emulator.md");
const BEGIN: &str = "<!-- contract-matrix:begin -->";
const END: &str = "<!-- contract-matrix:end -->";

/// What the contract check must say about the request the test built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Req {
    /// The contract allows it.
    Valid,
    /// The contract refuses it (a missing required header, an undeclared parameter, a bad body, …).
    Invalid,
}
use Req::{Invalid, Valid};

/// How a status code was reached.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Via {
    /// The emulator's own answer.
    Emulator,
    /// Only through a fault rule.
    Fault,
    /// Only through a fault rule, and the contract does not allow it (Adobe documents no 429 for Flow
    /// Service): the contract check flags it, as it should.
    FaultOutsideContract,
}

/// Which headers a request carries, changed one at a time to reach the gateway's and Flow Service's checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Headers {
    All,
    NoToken,
    BadToken,
    NoApiKey,
    WrongApiKey,
    NoOrg,
    OtherOrg,
    TextPlain,
    NoSandbox,
    UnknownSandbox,
}

#[derive(Clone, Debug)]
enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

#[derive(Clone, Debug)]
struct Call {
    method: Method,
    path: String,
    body: Body,
    if_match: Option<String>,
}

fn call(method: Method, path: impl Into<String>) -> Call {
    Call {
        method,
        path: path.into(),
        body: Body::None,
        if_match: None,
    }
}

impl Call {
    fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }
    fn raw(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Raw(content_type, body.into());
        self
    }
    fn if_match(mut self, etag: &str) -> Self {
        self.if_match = Some(etag.to_owned());
        self
    }
}

struct Run {
    harness: Harness,
    proxy: RecordingProxy,
    matrix: BTreeMap<String, BTreeMap<u16, Via>>,
    /// The catalogue codes (or IMS `error`s) the emulator gave, by operation and status.
    codes: BTreeMap<(String, u16), BTreeSet<String>>,
    checked: usize,
}

impl Run {
    async fn start(config: EmulatorConfig) -> Self {
        let harness = Harness::with(config).await;
        let proxy = RecordingProxy::start(&harness.base).await;
        Self {
            harness,
            proxy,
            matrix: BTreeMap::new(),
            codes: BTreeMap::new(),
            checked: 0,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.proxy.url())
        }
    }

    /// Sends `call` with `headers` through the proxy and checks the exchange: the status, the request check
    /// (`req`) and the response check; records the cell of the matrix. Returns the answer's JSON (or null).
    async fn send(&mut self, call: &Call, headers: Headers, status: u16, req: Req) -> Value {
        self.send_via(call, headers, status, req, Via::Emulator)
            .await
    }

    async fn send_via(
        &mut self,
        call: &Call,
        headers: Headers,
        status: u16,
        req: Req,
        via: Via,
    ) -> Value {
        let http = &self.harness.http;
        let mut builder = http.request(call.method.clone(), self.url(&call.path));
        let flow = !call.path.starts_with("/collection/") && !call.path.contains("/collection/");
        if flow && call.path != IMS {
            match headers {
                Headers::NoToken => {}
                Headers::BadToken => builder = builder.bearer_auth("not-a-token"),
                _ => builder = builder.bearer_auth(&self.harness.token),
            }
            match headers {
                Headers::NoApiKey => {}
                Headers::WrongApiKey => builder = builder.header("x-api-key", "someone-else"),
                _ => builder = builder.header("x-api-key", DEMO_CLIENT_ID),
            }
            match headers {
                Headers::NoOrg => {}
                Headers::OtherOrg => {
                    builder = builder.header("x-gw-ims-org-id", "OTHER000000000000000000@AdobeOrg")
                }
                _ => builder = builder.header("x-gw-ims-org-id", DEMO_ORG_ID),
            }
            match headers {
                Headers::NoSandbox => {}
                Headers::UnknownSandbox => builder = builder.header("x-sandbox-name", "nowhere"),
                _ => builder = builder.header("x-sandbox-name", "prod"),
            }
        }
        if let Some(etag) = &call.if_match {
            builder = builder.header("If-Match", etag);
        }
        builder = match (&call.body, headers) {
            (Body::None, _) => builder,
            (Body::Json(body), Headers::TextPlain) => builder
                .header("Content-Type", "text/plain")
                .body(body.to_string()),
            (Body::Json(body), _) => builder
                .header("Content-Type", "application/json")
                .body(body.to_string()),
            (Body::Raw(content_type, bytes), _) => builder
                .header("Content-Type", *content_type)
                .body(bytes.clone()),
        };
        let before = self.proxy.exchanges().len();
        let response = builder.send().await.unwrap();
        let answered = response.status().as_u16();
        let text = response.text().await.unwrap();
        let exchanges = self.proxy.exchanges();
        assert_eq!(exchanges.len(), before + 1, "one exchange per request");
        let exchange = exchanges.last().unwrap();
        let what = format!("{} ({headers:?})", exchange.describe());
        assert_eq!(answered, status, "{what}: {text}");
        assert_eq!(
            exchange.status, status,
            "{what}: the proxy saw another status"
        );
        let request_violations = validate_request(exchange);
        match req {
            Valid => assert!(
                request_violations.is_empty(),
                "{what}: the test's request breaks the contract: {request_violations:?}"
            ),
            Invalid => assert!(
                !request_violations.is_empty(),
                "{what}: a request built to be invalid passes the contract check"
            ),
        }
        let response_violations = validate_response(exchange);
        let key = match exchange.operation() {
            Some(operation) => operation.key.clone(),
            None => format!("{} {}", exchange.method, exchange.path),
        };
        if via == Via::FaultOutsideContract {
            assert_eq!(
                response_violations.len(),
                1,
                "{what}: an undocumented status must be flagged: {response_violations:?}"
            );
        } else {
            assert!(
                response_violations.is_empty(),
                "{what}: the emulator's answer breaks the contract: {response_violations:?}\n{text}"
            );
        }
        if via == Via::Emulator
            && let Some(code) = code_of(&text)
        {
            self.codes
                .entry((key.clone(), status))
                .or_default()
                .insert(code);
        }
        let cell = self
            .matrix
            .entry(key)
            .or_default()
            .entry(status)
            .or_insert(via);
        *cell = (*cell).min(via);
        self.checked += 1;
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// `call` once under a fault rule answering `status` (the rule fires once).
    async fn fault(&mut self, call: &Call, status: u16, via: Via) {
        self.harness
            .admin
            .add_fault(rule(json!({
                "method": call.method.as_str(),
                "path": call.path.split('?').next().unwrap(),
                "status": status,
                "times": 1,
            })))
            .await;
        self.send_via(call, Headers::All, status, Valid, via).await;
        self.harness.admin.clear_faults().await;
    }

    /// The gateway's and Flow Service's header checks on `call`, then the faults every Adobe API call can
    /// meet: 500/503/504 (the catalogue's `1102`, `1103`, `1104`) and an undocumented 429.
    async fn sweep_flow(&mut self, call: &Call) {
        self.sweep_headers(call).await;
        for status in [500, 503, 504] {
            self.fault(call, status, Via::Fault).await;
        }
        self.fault(call, 429, Via::FaultOutsideContract).await;
    }

    async fn sweep_headers(&mut self, call: &Call) {
        self.send(call, Headers::NoToken, 403, Invalid).await;
        self.send(call, Headers::BadToken, 401, Valid).await;
        self.send(call, Headers::NoApiKey, 403, Invalid).await;
        self.send(call, Headers::WrongApiKey, 403, Valid).await;
        self.send(call, Headers::NoOrg, 400, Invalid).await;
        self.send(call, Headers::OtherOrg, 403, Valid).await;
        if !matches!(call.body, Body::None) {
            self.send(call, Headers::TextPlain, 400, Valid).await;
        }
        self.send(call, Headers::NoSandbox, 400, Invalid).await;
        self.send(call, Headers::UnknownSandbox, 404, Valid).await;
    }

    /// A created object's `(id, etag)` from a 201 `{id, etag}`.
    async fn create(&mut self, call: &Call) -> (String, String) {
        let created = self.send(call, Headers::All, 201, Valid).await;
        (
            created["id"].as_str().unwrap().to_owned(),
            created["etag"].as_str().unwrap().to_owned(),
        )
    }

    fn merge(&mut self, other: Run) {
        for (key, cells) in other.matrix {
            let row = self.matrix.entry(key).or_default();
            for (status, via) in cells {
                let cell = row.entry(status).or_insert(via);
                *cell = (*cell).min(via);
            }
        }
        for (cell, codes) in other.codes {
            self.codes.entry(cell).or_default().extend(codes);
        }
        self.checked += other.checked;
    }
}

fn source_body(base_id: &str) -> Value {
    // `data` is required by the spec, optional in the newest tutorial (flow-service-dataflow.md §5 [C]): sent.
    json!({"name": "web source", "baseConnectionId": base_id, "data": {"format": "json"},
           "connectionSpec": {"id": STREAMING_CONNECTION_SPEC_ID, "version": "1.0"}})
}

fn target_body(schema: &str) -> Value {
    json!({"name": "web target",
           "data": {"schema": {"id": schema, "version": "application/vnd.adobe.xed-full+json;version=1.0"}},
           "params": {"dataSetId": DEMO_DATASET_ID},
           "connectionSpec": {"id": DATA_LAKE_CONNECTION_SPEC_ID, "version": "1.0"}})
}

fn mapping_body() -> Value {
    json!({"outputSchema": {"schemaRef": {"id": DEMO_SCHEMA_ID, "contentType": XDM_CONTENT_TYPE}},
           "mappings": [{"sourceType": "ATTRIBUTE", "source": "page.url", "destination": "web.url"}]})
}

fn flow_body(source: &str, target: &str) -> Value {
    json!({"name": "web to lake", "flowSpec": {"id": XDM_FLOW_SPEC_ID, "version": "1.0"},
           "sourceConnectionIds": [source], "targetConnectionIds": [target]})
}

fn rename(name: &str) -> Value {
    json!([{"op": "replace", "path": "/name", "value": name}])
}

/// The lists' query errors, each an Invalid request (an undeclared parameter or value) or a Valid one that
/// Flow Service refuses all the same.
async fn list_errors(run: &mut Run, collection: &str) {
    for (query, req) in [
        ("start=0", Invalid),                  // 1451
        ("property=name~web", Valid),          // 1440
        ("limit=1001", Valid),                 // 1453
        ("limit=5&count=true", Valid),         // 1401
        ("orderby=%2B%2Bname", Valid),         // 1432
        ("property=na%24me==x", Valid),        // 1449
        ("property=name=x", Valid),            // 1450
        ("continuationToken=not-ours", Valid), // 1453
    ] {
        run.send(
            &call(Method::GET, format!("{FS}/{collection}?{query}")),
            Headers::All,
            400,
            req,
        )
        .await;
    }
}

async fn exercise_flow_service(run: &mut Run) {
    // --- base connections
    let create_connection =
        call(Method::POST, format!("{FS}/connections")).json(streaming_connection("web events"));
    let (base_id, base_etag) = run.create(&create_connection).await;
    run.send(
        &call(Method::POST, format!("{FS}/connections")).raw("application/json", ""),
        Headers::All,
        400,
        Valid,
    )
    .await; // 1405
    run.send(
        &call(Method::POST, format!("{FS}/connections")).raw("application/json", "{"),
        Headers::All,
        400,
        Invalid,
    )
    .await; // 1000
    let mut bad_spec = streaming_connection("x");
    bad_spec["connectionSpec"]["id"] = json!("00000000-0000-0000-0000-000000000000");
    run.send(
        &call(Method::POST, format!("{FS}/connections")).json(bad_spec),
        Headers::All,
        400,
        Valid,
    )
    .await; // 1413
    let mut bad_auth = streaming_connection("x");
    bad_auth["auth"]["specName"] = json!("Basic Authentication");
    run.send(
        &call(Method::POST, format!("{FS}/connections")).json(bad_auth),
        Headers::All,
        400,
        Valid,
    )
    .await; // 1415
    run.sweep_flow(&create_connection).await;

    let get_connection = call(Method::GET, format!("{FS}/connections/{base_id}"));
    run.send(&get_connection, Headers::All, 200, Valid).await;
    run.send(
        &call(Method::GET, format!("{FS}/connections/nope")),
        Headers::All,
        404,
        Valid,
    )
    .await;
    run.sweep_flow(&get_connection).await;

    let list = call(
        Method::GET,
        format!("{FS}/connections?property=name%3D%3Dweb%20events&limit=10"),
    );
    run.send(&list, Headers::All, 200, Valid).await;
    run.send(
        &call(Method::GET, format!("{FS}/connections?count=true")),
        Headers::All,
        200,
        Valid,
    )
    .await;
    // A page link leads back through the proxy and is itself a valid request.
    run.create(&create_connection).await;
    let page = run
        .send(
            &call(Method::GET, format!("{FS}/connections?limit=1")),
            Headers::All,
            200,
            Valid,
        )
        .await;
    let next = page["_links"]["next"]["href"].as_str().unwrap().to_owned();
    run.send(
        &call(Method::GET, format!("{FS}{next}")),
        Headers::All,
        200,
        Valid,
    )
    .await;
    list_errors(run, "connections").await;
    run.sweep_flow(&list).await;

    let patch = call(Method::PATCH, format!("{FS}/connections/{base_id}"));
    let base_etag = {
        let answer = run
            .send(
                &patch.clone().json(rename("renamed")).if_match(&base_etag),
                Headers::All,
                200,
                Valid,
            )
            .await;
        answer["etag"].as_str().unwrap().to_owned()
    };
    for (call, req) in [
        (patch.clone().json(rename("x")), Invalid), // 1403: If-Match is required
        (
            patch
                .clone()
                .raw("application/json", "")
                .if_match(&base_etag),
            Valid,
        ), // 1405
        (
            patch
                .clone()
                .raw("application/json", "[")
                .if_match(&base_etag),
            Invalid,
        ), // 1000
        (
            patch
                .clone()
                .json(json!([{"op": "replace", "path": "/connectionSpec/id", "value": "x"}]))
                .if_match(&base_etag),
            Valid,
        ), // 1414
        (
            patch
                .clone()
                .json(json!([{"op": "move", "path": "/name", "value": "x"}]))
                .if_match(&base_etag),
            Invalid,
        ), // 1455
    ] {
        run.send(&call, Headers::All, 400, req).await;
    }
    run.send(
        &call(Method::PATCH, format!("{FS}/connections/nope"))
            .json(rename("x"))
            .if_match(&base_etag),
        Headers::All,
        404,
        Valid,
    )
    .await;
    run.send(
        &patch.clone().json(rename("x")).if_match("\"stale\""),
        Headers::All,
        412,
        Valid,
    )
    .await;
    // 1416: a connection in a transitional state.
    let (busy_id, busy_etag) = run.create(&create_connection).await;
    run.harness
        .admin
        .set_connection_state(&busy_id, "updating")
        .await;
    run.send(
        &call(Method::PATCH, format!("{FS}/connections/{busy_id}"))
            .json(rename("x"))
            .if_match(&busy_etag),
        Headers::All,
        400,
        Valid,
    )
    .await;
    run.send(
        &call(Method::DELETE, format!("{FS}/connections/{busy_id}")),
        Headers::All,
        400,
        Valid,
    )
    .await;
    run.sweep_flow(&patch.clone().json(rename("y")).if_match("*"))
        .await;

    // --- source and target connections
    let create_source =
        call(Method::POST, format!("{FS}/sourceConnections")).json(source_body(&base_id));
    let (source_id, _) = run.create(&create_source).await;
    run.send(
        &call(Method::POST, format!("{FS}/sourceConnections")).raw("application/json", ""),
        Headers::All,
        400,
        Valid,
    )
    .await;
    run.send(
        &call(Method::POST, format!("{FS}/sourceConnections")).json(source_body("nope")),
        Headers::All,
        400,
        Valid,
    )
    .await;
    run.sweep_flow(&create_source).await;
    let create_target =
        call(Method::POST, format!("{FS}/targetConnections")).json(target_body(DEMO_SCHEMA_ID));
    let (target_id, _) = run.create(&create_target).await;
    run.send(
        &call(Method::POST, format!("{FS}/targetConnections"))
            .json(target_body("https://ns.adobe.com/x/schemas/other")),
        Headers::All,
        400,
        Valid,
    )
    .await;
    for collection in ["sourceConnections", "targetConnections"] {
        let mut body = if collection == "sourceConnections" {
            source_body(&base_id)
        } else {
            target_body(DEMO_SCHEMA_ID)
        };
        body["connectionSpec"]["id"] = json!("00000000-0000-0000-0000-000000000000");
        run.send(
            &call(Method::POST, format!("{FS}/{collection}")).json(body),
            Headers::All,
            400,
            Valid,
        )
        .await; // 1413
    }
    run.sweep_flow(&create_target).await;
    for (collection, id) in [
        ("sourceConnections", &source_id),
        ("targetConnections", &target_id),
    ] {
        let get = call(Method::GET, format!("{FS}/{collection}/{id}"));
        run.send(&get, Headers::All, 200, Valid).await;
        run.send(
            &call(Method::GET, format!("{FS}/{collection}/nope")),
            Headers::All,
            404,
            Valid,
        )
        .await;
        run.sweep_flow(&get).await;
        let list = call(Method::GET, format!("{FS}/{collection}?limit=10"));
        run.send(&list, Headers::All, 200, Valid).await;
        list_errors(run, collection).await;
        run.sweep_flow(&list).await;
        // PATCH of /name and /description only (the reference: treat them as immutable otherwise, §12.3).
        let etag = run.send(&get, Headers::All, 200, Valid).await["items"][0]["etag"]
            .as_str()
            .unwrap()
            .to_owned();
        let patch = call(Method::PATCH, format!("{FS}/{collection}/{id}"));
        run.send(
            &patch.clone().json(rename("renamed")).if_match(&etag),
            Headers::All,
            200,
            Valid,
        )
        .await;
        run.send(&patch.clone().json(rename("x")), Headers::All, 400, Invalid)
            .await; // 1403
        run.send(
            &patch
                .clone()
                .json(json!([{"op": "replace", "path": "/params", "value": {}}]))
                .if_match("*"),
            Headers::All,
            400,
            Valid,
        )
        .await; // 1455
        run.send(
            &call(Method::PATCH, format!("{FS}/{collection}/nope"))
                .json(rename("x"))
                .if_match("*"),
            Headers::All,
            404,
            Valid,
        )
        .await;
        run.send(
            &patch.clone().json(rename("x")).if_match("\"stale\""),
            Headers::All,
            412,
            Valid,
        )
        .await;
        run.sweep_flow(&patch.clone().json(rename("y")).if_match("*"))
            .await;
    }

    // --- mapping sets (Data Prep)
    let create_mapping = call(Method::POST, MAPPING_SETS).json(mapping_body());
    let mapping = run.send(&create_mapping, Headers::All, 200, Valid).await;
    let mapping_id = mapping["id"].as_str().unwrap().to_owned();
    run.send(
        &call(Method::POST, MAPPING_SETS).json(json!({"mappings": []})),
        Headers::All,
        400,
        // The spec requires no field; the emulator needs the output schema a flow is checked against.
        Valid,
    )
    .await;
    run.send(
        &call(Method::POST, MAPPING_SETS).raw("application/json", "{"),
        Headers::All,
        400,
        Invalid,
    )
    .await;
    let get_mapping = call(Method::GET, format!("{MAPPING_SETS}/{mapping_id}"));
    let put_mapping =
        call(Method::PUT, format!("{MAPPING_SETS}/{mapping_id}")).json(mapping_body());
    run.send(&put_mapping, Headers::All, 200, Valid).await;
    run.send(&get_mapping, Headers::All, 200, Valid).await;
    run.send(
        &call(
            Method::GET,
            format!("{MAPPING_SETS}/{mapping_id}?version=7"),
        ),
        Headers::All,
        400,
        Valid,
    )
    .await; // 1412
    run.send(
        &call(Method::GET, format!("{MAPPING_SETS}/{mapping_id}?start=0")),
        Headers::All,
        400,
        Invalid,
    )
    .await; // 1451
    run.send(
        &call(Method::GET, format!("{MAPPING_SETS}/nope")),
        Headers::All,
        404,
        Valid,
    )
    .await;
    run.send(
        &call(Method::PUT, format!("{MAPPING_SETS}/nope")).json(mapping_body()),
        Headers::All,
        404,
        Valid,
    )
    .await;
    run.send(
        &call(Method::PUT, format!("{MAPPING_SETS}/{mapping_id}")).json(json!({"mappings": 1})),
        Headers::All,
        400,
        Invalid,
    )
    .await;
    let list_mappings = call(Method::GET, format!("{MAPPING_SETS}?start=0&limit=10"));
    run.send(&list_mappings, Headers::All, 200, Valid).await;
    run.send(
        &call(
            Method::GET,
            format!("{MAPPING_SETS}?start=0&limit=10&property=x"),
        ),
        Headers::All,
        400,
        Invalid,
    )
    .await;
    for data_prep in [&create_mapping, &get_mapping, &put_mapping, &list_mappings] {
        run.sweep_headers(data_prep).await;
        // The Data Prep spec declares 500 and 503 (no 504).
        for status in [500, 503] {
            run.fault(data_prep, status, Via::Fault).await;
        }
    }

    // --- Catalog
    let dataset = call(Method::GET, format!("{DATASETS}/{DEMO_DATASET_ID}"));
    run.send(&dataset, Headers::All, 200, Valid).await;
    run.send(
        &call(
            Method::GET,
            format!("{DATASETS}/{DEMO_DATASET_ID}?properties=name,schemaRef"),
        ),
        Headers::All,
        200,
        Valid,
    )
    .await;
    run.send(
        &call(Method::GET, format!("{DATASETS}/0123456789abcdef01234567")),
        Headers::All,
        404,
        Valid,
    )
    .await;
    run.sweep_headers(&dataset).await;
    for status in [500, 503] {
        run.fault(&dataset, status, Via::Fault).await;
    }

    // --- flows
    let create_flow =
        call(Method::POST, format!("{FS}/flows")).json(flow_body(&source_id, &target_id));
    let (flow_id, flow_etag) = run.create(&create_flow).await;
    let mut with_state = flow_body(&source_id, &target_id);
    with_state["state"] = json!("enabled");
    let mut bad_flow_spec = flow_body(&source_id, &target_id);
    bad_flow_spec["flowSpec"]["id"] = json!("00000000-0000-0000-0000-000000000000");
    let mut other_schema = mapping_body();
    other_schema["outputSchema"]["schemaRef"]["id"] = json!("https://ns.adobe.com/x/schemas/other");
    let other_mapping_id = run
        .send(
            &call(Method::POST, MAPPING_SETS).json(other_schema),
            Headers::All,
            200,
            Valid,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mapped = |mapping: &str, version: Value| {
        let mut body = flow_body(&source_id, &target_id);
        body["flowSpec"]["id"] = json!(RAW_FLOW_SPEC_ID);
        body["transformations"] = json!([{"name": "Mapping", "params": {"mappingId": mapping, "mappingVersion": version}}]);
        body
    };
    for (body, req) in [
        (Body::Raw("application/json", Vec::new()), Valid), // 1405
        (Body::Raw("application/json", b"{".to_vec()), Invalid), // 1000
        (Body::Json(with_state), Valid),                    // 1410
        (Body::Json(bad_flow_spec), Valid),                 // 1413
        (Body::Json(flow_body("nope", &target_id)), Valid), // 1000
        (
            Body::Json(mapped("0123456789abcdef0123456789abcdef", json!("0"))),
            Valid,
        ), // 1419
        (Body::Json(mapped(&mapping_id, json!("9"))), Valid), // 1412
        (Body::Json(mapped(&other_mapping_id, json!("0"))), Valid), // 1425
    ] {
        let mut create = call(Method::POST, format!("{FS}/flows"));
        create.body = body;
        run.send(&create, Headers::All, 400, req).await;
    }
    run.sweep_flow(&create_flow).await;
    let get_flow = call(Method::GET, format!("{FS}/flows/{flow_id}"));
    run.send(&get_flow, Headers::All, 200, Valid).await;
    run.send(
        &call(Method::GET, format!("{FS}/flows/nope")),
        Headers::All,
        404,
        Valid,
    )
    .await;
    run.sweep_flow(&get_flow).await;
    let list_flows = call(
        Method::GET,
        format!("{FS}/flows?property=sourceConnectionIds%5B%5D%3D%3D{source_id}"),
    );
    run.send(&list_flows, Headers::All, 200, Valid).await;
    list_errors(run, "flows").await;
    run.sweep_flow(&list_flows).await;
    let patch_flow = call(Method::PATCH, format!("{FS}/flows/{flow_id}"));
    let flow_etag = {
        let answer = run
            .send(
                &patch_flow
                    .clone()
                    .json(rename("renamed"))
                    .if_match(&flow_etag),
                Headers::All,
                200,
                Valid,
            )
            .await;
        answer["etag"].as_str().unwrap().to_owned()
    };
    run.send(
        &patch_flow.clone().json(rename("x")),
        Headers::All,
        400,
        Invalid,
    )
    .await; // 1403
    run.send(
        &patch_flow
            .clone()
            .json(json!([{"op": "replace", "path": "/state", "value": "disabled"}]))
            .if_match(&flow_etag),
        Headers::All,
        400,
        Valid,
    )
    .await; // 1455
    run.send(
        &call(Method::PATCH, format!("{FS}/flows/nope"))
            .json(rename("x"))
            .if_match(&flow_etag),
        Headers::All,
        404,
        Valid,
    )
    .await;
    run.send(
        &patch_flow.clone().json(rename("x")).if_match("\"stale\""),
        Headers::All,
        412,
        Valid,
    )
    .await;
    run.sweep_flow(&patch_flow.clone().json(rename("y")).if_match("*"))
        .await;
    let action = |op: &str| call(Method::POST, format!("{FS}/flows/{flow_id}/action?op={op}"));
    run.send(&action("disable"), Headers::All, 200, Valid).await;
    run.send(&action("enable"), Headers::All, 200, Valid).await;
    run.send(&action("explode"), Headers::All, 400, Invalid)
        .await; // 1456
    run.send(
        &call(Method::POST, format!("{FS}/flows/nope/action?op=enable")),
        Headers::All,
        404,
        Valid,
    )
    .await;
    run.send(
        &action("disable").if_match("\"stale\""),
        Headers::All,
        412,
        Valid,
    )
    .await;
    run.sweep_flow(&action("enable")).await;

    // --- inlet (through the proxy: inletUrl points back at it), runs
    let connection = run.send(&get_connection, Headers::All, 200, Valid).await;
    let inlet_url = connection["items"][0]["auth"]["params"]["inletUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(inlet_url.starts_with(&run.proxy.url()), "{inlet_url}");
    let inlet_path = inlet_url.trim_start_matches(&run.proxy.url()).to_owned();
    let batch_path = inlet_path.replacen("/collection/", "/collection/batch/", 1);
    let mut message = xdm_message();
    message["header"]["flowId"] = json!(flow_id);
    message["header"]["datasetId"] = json!(DEMO_DATASET_ID);
    message["header"]["schemaRef"]["id"] = json!(DEMO_SCHEMA_ID);
    // streaming-ingestion.yaml's example entity types `person.name` as an object.
    message["body"]["xdmEntity"] = json!({"person": {"name": {"firstName": "Ada"}}});
    let single = call(Method::POST, inlet_path.clone()).json(message.clone());
    let batch = call(Method::POST, batch_path.clone()).json(json!({"messages": [message.clone()]}));
    run.send(&single, Headers::All, 200, Valid).await;
    run.send(&batch, Headers::All, 207, Valid).await;
    for path in [&inlet_path, &batch_path] {
        run.send(
            &call(Method::POST, path.clone()).raw("application/json", "{"),
            Headers::All,
            400,
            Invalid,
        )
        .await;
        run.send(
            &call(Method::POST, path.clone()).raw("text/plain", message.to_string()),
            Headers::All,
            400,
            Invalid,
        )
        .await;
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(1_000_001));
        run.send(
            &call(Method::POST, path.clone()).raw("application/json", big),
            Headers::All,
            413,
            // Any JSON is a raw inlet's message: only the size is wrong, which the contract does not state.
            Valid,
        )
        .await;
        let unknown = path.replace(&inlet_path["/collection/".len()..], &"0".repeat(64));
        run.send(
            &call(Method::POST, unknown).json(message.clone()),
            Headers::All,
            404,
            Valid,
        )
        .await;
    }
    // syncValidation: an envelope of another org is 400; past 60 a minute, 429.
    let mut foreign = message.clone();
    foreign["header"]["imsOrgId"] = json!("OTHER000000000000000000@AdobeOrg");
    run.send(
        &call(Method::POST, format!("{inlet_path}?syncValidation=true")).json(foreign),
        Headers::All,
        400,
        Valid,
    )
    .await;
    for _ in 1..60 {
        run.send(
            &call(Method::POST, format!("{inlet_path}?syncValidation=true")).json(message.clone()),
            Headers::All,
            200,
            Valid,
        )
        .await;
    }
    run.send(
        &call(Method::POST, format!("{inlet_path}?syncValidation=true")).json(message.clone()),
        Headers::All,
        429,
        Valid,
    )
    .await;
    // An inlet that requires a token.
    let (secured_id, _) = run
        .create(
            &call(Method::POST, format!("{FS}/connections")).json(authenticated_connection("s")),
        )
        .await;
    let secured = run
        .send(
            &call(Method::GET, format!("{FS}/connections/{secured_id}")),
            Headers::All,
            200,
            Valid,
        )
        .await;
    let secured_path = secured["items"][0]["auth"]["params"]["inletUrl"]
        .as_str()
        .unwrap()
        .trim_start_matches(&run.proxy.url())
        .to_owned();
    for path in [
        secured_path.clone(),
        secured_path.replacen("/collection/", "/collection/batch/", 1),
    ] {
        let body = if path.contains("/batch/") {
            json!({"messages": [message.clone()]})
        } else {
            message.clone()
        };
        run.send(
            &call(Method::POST, path).json(body),
            Headers::All,
            401,
            Valid,
        )
        .await;
    }
    for inlet in [&single, &batch] {
        for status in [429, 500, 503] {
            run.fault(inlet, status, Via::Fault).await;
        }
    }

    let runs = call(
        Method::GET,
        format!("{FS}/runs?property=flowId%3D%3D{flow_id}"),
    );
    let listed = run.send(&runs, Headers::All, 200, Valid).await;
    list_errors(run, "runs").await;
    run.sweep_flow(&runs).await;
    let run_id = listed["items"][0]["id"].as_str().unwrap().to_owned();
    let get_run = call(Method::GET, format!("{FS}/runs/{run_id}"));
    run.send(&get_run, Headers::All, 200, Valid).await;
    run.send(
        &call(Method::GET, format!("{FS}/runs/nope")),
        Headers::All,
        404,
        Valid,
    )
    .await;
    run.sweep_flow(&get_run).await;

    // --- deletes, in the documented order, with the refusals on the way.
    run.send(
        &call(Method::DELETE, format!("{FS}/connections/{base_id}")),
        Headers::All,
        400,
        Valid,
    )
    .await; // 1418
    for collection in ["sourceConnections", "targetConnections"] {
        let id = if collection == "sourceConnections" {
            &source_id
        } else {
            &target_id
        };
        run.send(
            &call(Method::DELETE, format!("{FS}/{collection}/{id}")),
            Headers::All,
            400,
            Valid,
        )
        .await; // 1447
    }
    let delete_flow = call(Method::DELETE, format!("{FS}/flows/{flow_id}"));
    run.sweep_flow(&delete_flow).await;
    run.send(&delete_flow, Headers::All, 204, Valid).await;
    run.send(&delete_flow, Headers::All, 404, Valid).await;
    for (collection, id) in [
        ("sourceConnections", &source_id),
        ("targetConnections", &target_id),
        ("connections", &base_id),
    ] {
        let delete = call(Method::DELETE, format!("{FS}/{collection}/{id}"));
        run.sweep_flow(&delete).await;
        run.send(&delete, Headers::All, 204, Valid).await;
        run.send(&delete, Headers::All, 404, Valid).await;
    }
}

async fn exercise_ims(run: &mut Run) {
    let token = |id: &str, secret: &str, grant: &str| {
        call(Method::POST, IMS).raw(
            "application/x-www-form-urlencoded",
            format!("grant_type={grant}&client_id={id}&client_secret={secret}&scope=openid"),
        )
    };
    let good = token(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, "client_credentials");
    run.send(&good, Headers::All, 200, Valid).await;
    run.send(
        &token(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, "password"),
        Headers::All,
        400,
        Valid,
    )
    .await;
    run.send(
        &token("nobody", DEMO_CLIENT_SECRET, "client_credentials"),
        Headers::All,
        400,
        Valid,
    )
    .await;
    run.send(
        &token(DEMO_CLIENT_ID, "wrong", "client_credentials"),
        Headers::All,
        401,
        Valid,
    )
    .await;
    for status in [429, 500, 503] {
        run.fault(&good, status, Via::Fault).await;
    }
}

/// `1445-400`: an organization for which PATCH of connections is not enabled.
async fn exercise_patch_disabled(run: &mut Run) {
    let (id, etag) = run
        .create(&call(Method::POST, format!("{FS}/connections")).json(streaming_connection("w")))
        .await;
    run.send(
        &call(Method::PATCH, format!("{FS}/connections/{id}"))
            .json(rename("x"))
            .if_match(&etag),
        Headers::All,
        400,
        Valid,
    )
    .await;
}

/// The operation-specific code of an error answer: a Flow problem's `nnnn` (`FLOW-nnnn-sss`) other than the
/// sandbox checks every Flow Service call shares (`2100`, `2105`), or an IMS `error`. Gateway answers
/// (`{"error_code"}`) are the same on every row and left out.
fn code_of(text: &str) -> Option<String> {
    let body: Value = serde_json::from_str(text).ok()?;
    if let Some(kind) = body["type"].as_str()
        && let Some((_, code)) = kind.rsplit_once("/FLOW-")
    {
        let number = code.split('-').next()?;
        return (!matches!(number, "2100" | "2105")).then(|| number.to_owned());
    }
    body["error"]
        .as_str()
        .filter(|_| body.get("error_description").is_some())
        .map(str::to_owned)
}

/// The short name of an operation key: its method and path template.
fn row_name(key: &str) -> String {
    format!("`{key}`")
}

fn render(
    matrix: &BTreeMap<String, BTreeMap<u16, Via>>,
    codes: &BTreeMap<(String, u16), BTreeSet<String>>,
) -> String {
    let mut out = String::from(
        "| Operation | The emulator answers | Only by fault rule |\n| --- | --- | --- |\n",
    );
    for (key, cells) in matrix {
        let list = |wanted: &[Via]| {
            cells
                .iter()
                .filter(|(_, via)| wanted.contains(via))
                .map(|(status, via)| match via {
                    Via::FaultOutsideContract => format!("{status}‡"),
                    Via::Fault => status.to_string(),
                    Via::Emulator => match codes.get(&(key.clone(), *status)) {
                        Some(codes) => format!(
                            "{status} ({})",
                            codes.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                        None => status.to_string(),
                    },
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            row_name(key),
            list(&[Via::Emulator]),
            list(&[Via::Fault, Via::FaultOutsideContract]),
        ));
    }
    out
}

#[tokio::test]
async fn every_operation_and_status_the_emulator_gives_is_in_the_contract_and_the_documented_matrix()
 {
    let mut run = Run::start(EmulatorConfig::default()).await;
    exercise_ims(&mut run).await;
    exercise_flow_service(&mut run).await;
    let mut disabled = Run::start(EmulatorConfig {
        patch_disabled_orgs: vec![DEMO_ORG_ID.to_owned()],
        ..EmulatorConfig::default()
    })
    .await;
    exercise_patch_disabled(&mut disabled).await;
    run.merge(disabled);

    // Every operation of the contract is a row, but the Catalog dataset list, which the emulator does not
    // serve (the project reads one dataset by id).
    let used: BTreeSet<&str> = run.matrix.keys().map(String::as_str).collect();
    for operation in aep_testkit::contract::contract().operations() {
        if operation.key != "GET /data/foundation/catalog/dataSets" {
            assert!(
                used.contains(operation.key.as_str()),
                "{} is not exercised",
                operation.key
            );
        }
    }
    assert!(used.contains("POST /ims/token/v3"));

    let table = render(&run.matrix, &run.codes);
    let doc = std::fs::read_to_string(DOC).unwrap();
    let documented = doc
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(table, _)| table.trim().to_owned());
    assert!(
        documented.as_deref() == Some(table.trim()),
        "docs/emulator.md's contract matrix (between {BEGIN} and {END}) is not the exercised one \
         ({} exchanges checked); paste this:\n\n{table}",
        run.checked
    );
}

#[tokio::test]
async fn the_recording_proxy_forwards_rewrites_the_emulators_urls_redacts_tokens_and_records_drops()
{
    let harness = Harness::start().await;
    let proxy = RecordingProxy::start(&harness.base).await;
    let url = |path: &str| format!("{}{path}", proxy.url());
    let response = harness
        .http
        .post(url(&format!("{FS}/connections")))
        .bearer_auth(&harness.token)
        .header("x-api-key", DEMO_CLIENT_ID)
        .header("x-gw-ims-org-id", DEMO_ORG_ID)
        .header("x-sandbox-name", "prod")
        .json(&streaming_connection("through the proxy"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(location, url(&format!("{FS}/connections/{id}")));
    let connection = harness.connection(&id).await;
    let direct = connection["auth"]["params"]["inletUrl"].as_str().unwrap();
    let read: Value = harness
        .http
        .get(&location)
        .bearer_auth(&harness.token)
        .header("x-api-key", DEMO_CLIENT_ID)
        .header("x-gw-ims-org-id", DEMO_ORG_ID)
        .header("x-sandbox-name", "prod")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let proxied = read["items"][0]["auth"]["params"]["inletUrl"]
        .as_str()
        .unwrap();
    assert_eq!(proxied, direct.replace(&harness.base, &proxy.url()));

    let exchanges = proxy.exchanges();
    assert_eq!(exchanges.len(), 2);
    assert_eq!(
        exchanges[0].request_header("authorization"),
        Some("<redacted>")
    );
    assert_eq!(exchanges[0].status, 201);
    assert_eq!(
        serde_json::from_slice::<Value>(&exchanges[0].request_body).unwrap()["name"],
        "through the proxy"
    );
    assert_eq!(exchanges[1].response_header("location"), None);
    assert!(proxy.violations().is_empty(), "{:?}", proxy.violations());

    // A connection the emulator drops is a 502 from the proxy and an exchange with status 0.
    harness
        .admin
        .add_fault(rule(json!({"path": "/collection/*", "action": "drop"})))
        .await;
    let response = harness
        .http
        .post(proxied)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(proxy.exchanges().last().unwrap().status, 0);
    proxy.clear();
    assert!(proxy.exchanges().is_empty());
}
