//! The emulator's admin API and operations: fault injection (status, Retry-After, times, probability, latency,
//! commit-then-fail, dropped connections, late commits, corrupted ids, not-found lookalikes), the request log,
//! reset, `--latency-ms`, the state file across restarts, and the `aep-emulator` binary itself.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aep_emulator::{DEMO_CLIENT_ID, DEMO_ORG_ID, EmulatorConfig, start};
use aep_testkit::admin::{rule, rules};
use aep_testkit::emulator::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn count_connections(harness: &Harness) -> usize {
    harness.admin.connections().await.len()
}

// ------------------------------------------------------------------------------------------------------ faults

#[tokio::test]
async fn a_fault_answers_its_status_with_retry_after_and_a_flow_body_until_cleared() {
    let harness = Harness::start().await;
    let stored = harness
        .admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS, "status": 503, "retryAfter": 7}),
        ))
        .await;
    assert_eq!(stored.rule.id.as_deref(), Some("fault-1"));
    let response = harness
        .flow(Method::POST, CONNECTIONS)
        .json(&streaming_connection("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "7");
    assert_flow_error(response, 503, "1103-503").await;
    assert_eq!(
        count_connections(&harness).await,
        0,
        "a plain fault does not perform the operation"
    );
    // Other methods on the route are unaffected.
    assert_eq!(
        harness
            .flow(Method::GET, CONNECTIONS)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    assert_eq!(harness.admin.faults().await[0].fired, 1);
    assert_eq!(
        harness
            .admin_request(Method::DELETE, "/_emulator/faults")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        harness.admin_wire("/_emulator/faults").await["rules"],
        json!([])
    );
    harness.create("after the outage").await;
}

#[tokio::test]
async fn a_fault_can_carry_its_own_body_and_be_removed_by_id() {
    let harness = Harness::start().await;
    harness
        .admin.add_fault(rule(json!({"id": "throttle", "path": "/ims/*", "status": 429, "body": {"error": "throttled"}})))
        .await;
    let response = harness
        .http
        .post(harness.url(TOKEN_PATH))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error": "throttled"})
    );
    assert_eq!(
        harness
            .admin_request(Method::DELETE, "/_emulator/faults/throttle")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        harness
            .admin_request(Method::DELETE, "/_emulator/faults/throttle")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_fault_with_times_fails_only_the_first_n_matching_requests() {
    let harness = Harness::start().await;
    let (id, _) = harness.create("flaky").await;
    harness
        .admin
        .add_fault(rule(
            json!({"method": "GET", "route": CONNECTION_ROUTE, "status": 500, "times": 2}),
        ))
        .await;
    let path = format!("{CONNECTIONS}/{id}");
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(
                harness
                    .flow(Method::GET, &path)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        statuses
    };
    assert_eq!(statuses, [500, 500, 200, 200]);
    let listed = harness.admin_wire("/_emulator/faults").await;
    assert_eq!(listed["rules"][0]["remaining"], 0);
}

#[tokio::test]
async fn a_fault_with_probability_one_always_fires_and_a_path_glob_matches_inlets() {
    let harness = Harness::start().await;
    let (id, _) = harness.create("inlet").await;
    let inlet_url = harness.connection(&id).await["auth"]["params"]["inletUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    harness
        .admin
        .add_fault(rule(
            json!({"path": "/collection/*", "status": 503, "probability": 1.0}),
        ))
        .await;
    for _ in 0..5 {
        let response = harness
            .http
            .post(&inlet_url)
            .json(&xdm_message())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], 503, "inlet-shaped body: {body}");
    }
}

#[tokio::test]
async fn a_latency_fault_delays_the_request_and_then_serves_it() {
    let harness = Harness::start().await;
    harness
        .admin
        .add_fault(rule(
            json!({"route": CONNECTIONS, "method": "GET", "latencyMs": 400}),
        ))
        .await;
    let started = Instant::now();
    let response = harness.flow(Method::GET, CONNECTIONS).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn commit_then_fail_creates_the_connection_though_the_client_sees_500() {
    let harness = Harness::start().await;
    harness
        .admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS, "action": "commitThenFail", "times": 1}),
        ))
        .await;
    let response = harness
        .flow(Method::POST, CONNECTIONS)
        .json(&streaming_connection("ambiguous"))
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 500, "1102-500").await;
    let found: Value = harness
        .flow(
            Method::GET,
            &format!("{CONNECTIONS}?property=name==ambiguous"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        found["items"].as_array().unwrap().len(),
        1,
        "the connection exists"
    );
}

#[tokio::test]
async fn drop_closes_the_connection_without_an_answer_and_without_creating() {
    let harness = Harness::start().await;
    harness
        .admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS, "action": "drop", "times": 1}),
        ))
        .await;
    let result = harness
        .flow(Method::POST, CONNECTIONS)
        .json(&streaming_connection("dropped"))
        .send()
        .await;
    let error = result.expect_err("the client sees a connection error, not a response");
    assert!(!error.is_status() && !error.is_timeout(), "{error:?}");
    assert_eq!(count_connections(&harness).await, 0);
    // The server is fine afterwards.
    harness.create("next").await;
}

#[tokio::test]
async fn commit_then_drop_creates_the_connection_though_the_client_sees_a_connection_error() {
    let harness = Harness::start().await;
    harness
        .admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS, "action": "commitThenDrop", "times": 1}),
        ))
        .await;
    let result = harness
        .flow(Method::POST, CONNECTIONS)
        .json(&streaming_connection("committed"))
        .send()
        .await;
    assert!(result.is_err(), "the client sees a connection error");
    let state = harness.admin_wire("/_emulator/state").await;
    assert_eq!(state["connections"][0]["name"], "committed");
    let log = harness.admin_wire("/_emulator/requests").await;
    let last = log["log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["status"], 0,
        "dropped requests are logged with status 0"
    );
    assert_eq!(last["fault"], "fault-1");
}

/// `count=true` of connections named `name` in `prod`, as a client would ask.
async fn listed_count(harness: &Harness, name: &str) -> u64 {
    let body: Value = harness
        .flow(
            Method::GET,
            &format!("{CONNECTIONS}?count=true&property=name=={name}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["count"].as_u64().unwrap()
}

/// A client that gives up after `timeout`, as the operator's does.
fn impatient_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

async fn post_impatiently(harness: &Harness, timeout: Duration, name: &str) -> reqwest::Error {
    impatient_client(timeout)
        .post(harness.url(CONNECTIONS))
        .bearer_auth(&harness.token)
        .header("x-api-key", DEMO_CLIENT_ID)
        .header("x-gw-ims-org-id", DEMO_ORG_ID)
        .header("x-sandbox-name", "prod")
        .json(&streaming_connection(name))
        .send()
        .await
        .expect_err("the client gives up before the answer")
}

async fn sleep_until(started: Instant, after: Duration) {
    tokio::time::sleep_until((started + after).into()).await;
}

#[tokio::test]
async fn commit_after_delay_creates_the_connection_after_the_client_gave_up() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let harness = Harness::with(EmulatorConfig {
        state_file: Some(state_file.clone()),
        ..Default::default()
    })
    .await;
    harness
        .admin
        .add_fault(rule(
            json!({"id": "late", "method": "POST", "route": CONNECTIONS,
                          "action": "commitAfterDelay", "latencyMs": 2000, "times": 1}),
        ))
        .await;
    let started = Instant::now();
    let error = post_impatiently(&harness, Duration::from_secs(1), "late-commit").await;
    assert!(error.is_timeout(), "{error:?}");

    sleep_until(started, Duration::from_millis(1_500)).await;
    assert_eq!(count_connections(&harness).await, 0, "not committed yet");
    assert_eq!(listed_count(&harness, "late-commit").await, 0);

    sleep_until(started, Duration::from_secs(3)).await;
    assert_eq!(
        count_connections(&harness).await,
        1,
        "committed although the client had gone"
    );
    assert_eq!(listed_count(&harness, "late-commit").await, 1);
    let state = harness.admin_wire("/_emulator/state").await;
    let id = state["connections"][0]["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    let log = harness.admin_wire("/_emulator/requests").await;
    let creates: Vec<&Value> = log["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["method"] == "POST" && e["route"] == CONNECTIONS)
        .collect();
    assert_eq!(creates.len(), 1, "logged once: {log}");
    assert_eq!(creates[0]["status"], 201);
    assert_eq!(creates[0]["fault"], "late");

    let persisted = std::fs::read_to_string(&state_file).unwrap();
    assert!(
        persisted.contains(&id) && persisted.contains("late-commit"),
        "the late commit is in the state file"
    );
}

#[tokio::test]
async fn a_delay_fault_is_lost_when_the_client_gives_up_unlike_commit_after_delay() {
    // The contrast that makes commitAfterDelay necessary: with `delay`, the client's disconnect cancels the
    // operation, because the delay runs inside the request.
    let harness = Harness::start().await;
    harness
        .admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS, "latencyMs": 1000, "times": 1}),
        ))
        .await;
    let started = Instant::now();
    let error = post_impatiently(&harness, Duration::from_millis(300), "lost").await;
    assert!(error.is_timeout(), "{error:?}");
    sleep_until(started, Duration::from_millis(1_800)).await;
    assert_eq!(count_connections(&harness).await, 0);
}

#[tokio::test]
async fn commit_after_delay_answers_a_waiting_client_late_with_the_real_answer_or_the_rule_status()
{
    let harness = Harness::start().await;
    harness
        .admin.add_faults(rules(json!([
            {"method": "POST", "route": CONNECTIONS, "action": "commitAfterDelay", "latencyMs": 300, "times": 1},
            {"method": "POST", "route": CONNECTIONS, "action": "commitAfterDelay", "latencyMs": 300,
             "status": 504, "retryAfter": 3, "times": 1}
        ])))
        .await;
    let started = Instant::now();
    let response = harness
        .flow(Method::POST, CONNECTIONS)
        .json(&streaming_connection("patient"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().contains_key("location"));
    assert!(response.headers().contains_key("x-request-id"));
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        harness.connection(created["id"].as_str().unwrap()).await["name"],
        "patient"
    );

    let started = Instant::now();
    let response = harness
        .flow(Method::POST, CONNECTIONS)
        .json(&streaming_connection("late failure"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(response.headers()["retry-after"], "3");
    assert_flow_error(response, 504, "1104-504").await;
    assert_eq!(listed_count(&harness, "late%20failure").await, 1);

    let log = harness.admin_wire("/_emulator/requests").await;
    let statuses: Vec<&Value> = log["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["method"] == "POST" && e["route"] == CONNECTIONS)
        .map(|e| &e["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!(201), &json!(504)],
        "each request logged once: {log}"
    );
}

#[tokio::test]
async fn an_injected_404_reads_exactly_like_a_missing_connection_then_the_connection_appears() {
    let harness = Harness::start().await;
    let missing = uuid::Uuid::new_v4().to_string();
    let genuine = harness
        .flow(Method::GET, &format!("{CONNECTIONS}/{missing}"))
        .send()
        .await
        .unwrap();
    let genuine_type = genuine.headers()["content-type"].clone();
    let genuine = assert_flow_error(genuine, 404, "1101-404").await;

    let (id, _) = harness.create("eventually consistent").await;
    harness
        .admin
        .add_fault(rule(
            json!({"method": "GET", "route": CONNECTION_ROUTE, "status": 404, "times": 2}),
        ))
        .await;
    for _ in 0..2 {
        let injected = harness
            .flow(Method::GET, &format!("{CONNECTIONS}/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(injected.headers()["content-type"], genuine_type);
        assert!(!injected.headers().contains_key("retry-after"));
        let injected = assert_flow_error(injected, 404, "1101-404").await;
        // Same body but for the id and the request id.
        let mut expected = serde_json::to_string(&genuine)
            .unwrap()
            .replace(&missing, &id);
        expected = expected.replace(
            genuine["report"]["request-id"].as_str().unwrap(),
            injected["report"]["request-id"].as_str().unwrap(),
        );
        assert_eq!(injected, serde_json::from_str::<Value>(&expected).unwrap());
        assert_eq!(injected["report"]["id"], id.as_str());
    }
    assert_eq!(
        harness.connection(&id).await["name"],
        "eventually consistent"
    );
}

#[tokio::test]
async fn corrupt_id_commits_the_connection_but_answers_201_with_a_non_uuid_id() {
    let harness = Harness::start().await;
    harness
        .admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS, "action": "corruptId", "times": 1}),
        ))
        .await;
    let response = harness
        .flow(Method::POST, CONNECTIONS)
        .json(&streaming_connection("garbled"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.ends_with(&format!("{CONNECTIONS}/not-a-uuid")),
        "{location}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "not-a-uuid");
    assert!(body["etag"].as_str().unwrap().starts_with('"'));

    let state = harness.admin_wire("/_emulator/state").await;
    let real_id = state["connections"][0]["id"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(real_id).is_ok(),
        "stored with a real id"
    );
    assert_eq!(state["connections"][0]["etag"], body["etag"]);
    assert_eq!(listed_count(&harness, "garbled").await, 1);
    let response = harness
        .flow(Method::GET, &format!("{CONNECTIONS}/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 404, "1101-404").await;
    // The rule fired once: the next create answers normally.
    let (next, _) = harness.create("plain").await;
    assert!(uuid::Uuid::parse_str(&next).is_ok());
}

#[tokio::test]
async fn invalid_fault_rules_are_refused_with_400() {
    let harness = Harness::start().await;
    for rule in [
        json!({"route": CONNECTIONS}),
        json!({"status": 503, "probability": 1.5}),
        json!({"status": 503, "unknownField": true}),
        json!({"action": "explode"}),
        json!({"action": "commitAfterDelay"}),
        json!({"action": "corruptId", "status": 201}),
    ] {
        let response = harness
            .http
            .post(harness.url("/_emulator/faults"))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{rule}");
        assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    }
}

#[tokio::test]
async fn admin_routes_are_never_faulted_delayed_or_logged() {
    let harness = Harness::with(EmulatorConfig {
        latency: Duration::from_millis(1_500),
        ..Default::default()
    })
    .await;
    harness
        .admin
        .add_fault(rule(json!({"path": "/*", "status": 500})))
        .await;
    let started = Instant::now();
    let state = harness.admin_request(Method::GET, "/_emulator/state").await;
    assert_eq!(state.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "admin requests skip --latency-ms"
    );
    let response = harness.flow(Method::GET, CONNECTIONS).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let log = harness.admin_wire("/_emulator/requests").await;
    let routes: Vec<&str> = log["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["route"].as_str().unwrap())
        .collect();
    assert_eq!(
        routes,
        [TOKEN_PATH, CONNECTIONS],
        "only non-admin requests are logged"
    );
}

#[tokio::test]
async fn latency_flag_delays_every_non_admin_request() {
    let harness = Harness::with(EmulatorConfig {
        latency: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let response = harness.flow(Method::GET, CONNECTIONS).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

// ------------------------------------------------------------------------------------------------- request log

#[tokio::test]
async fn requests_counts_by_method_route_and_status_and_keeps_an_ordered_log() {
    let harness = Harness::start().await;
    assert_eq!(
        harness
            .admin_request(Method::DELETE, "/_emulator/requests")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (id, etag) = harness.create("logged").await;
    harness.create("logged too").await;
    let item = format!("{CONNECTIONS}/{id}");
    harness.flow(Method::GET, &item).send().await.unwrap();
    harness
        .flow(Method::PATCH, &item)
        .header("if-match", etag)
        .json(&json!([{"op": "replace", "path": "/name", "value": "renamed"}]))
        .send()
        .await
        .unwrap();
    harness
        .flow(Method::DELETE, &format!("{item}/"))
        .send()
        .await
        .unwrap();
    harness.flow(Method::GET, &item).send().await.unwrap();
    harness
        .flow(Method::GET, &format!("{CONNECTIONS}?property=name==x"))
        .send()
        .await
        .unwrap();

    let requests = harness.admin_wire("/_emulator/requests").await;
    let log: Vec<(u64, String, String, String, u64)> = requests["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["method"].as_str().unwrap().to_owned(),
                e["route"].as_str().unwrap().to_owned(),
                e["path"].as_str().unwrap().to_owned(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = vec![
        (1, "POST", CONNECTIONS, CONNECTIONS.to_owned(), 201),
        (2, "POST", CONNECTIONS, CONNECTIONS.to_owned(), 201),
        (3, "GET", CONNECTION_ROUTE, item.clone(), 200),
        (4, "PATCH", CONNECTION_ROUTE, item.clone(), 200),
        (5, "DELETE", CONNECTION_ROUTE, format!("{item}/"), 204),
        (6, "GET", CONNECTION_ROUTE, item.clone(), 404),
        (7, "GET", CONNECTIONS, CONNECTIONS.to_owned(), 200),
    ];
    let expected: Vec<(u64, String, String, String, u64)> = expected
        .into_iter()
        .map(|(seq, method, route, path, status)| {
            (seq, method.to_owned(), route.to_owned(), path, status)
        })
        .collect();
    assert_eq!(log, expected);
    assert_eq!(requests["log"][6]["query"], "property=name==x");
    assert!(requests["log"][0]["requestId"].is_string());

    let counts = requests["counts"].as_array().unwrap();
    let count_of = |method: &str, route: &str, status: u64| {
        counts
            .iter()
            .find(|c| c["method"] == method && c["route"] == route && c["status"] == status)
            .map(|c| c["count"].as_u64().unwrap())
    };
    assert_eq!(count_of("POST", CONNECTIONS, 201), Some(2));
    assert_eq!(count_of("GET", CONNECTION_ROUTE, 200), Some(1));
    assert_eq!(count_of("GET", CONNECTION_ROUTE, 404), Some(1));
    assert_eq!(count_of("DELETE", CONNECTION_ROUTE, 204), Some(1));

    assert_eq!(
        harness
            .admin_request(Method::DELETE, "/_emulator/requests")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let cleared = harness.admin_wire("/_emulator/requests").await;
    assert_eq!(cleared["log"], json!([]));
    assert_eq!(cleared["counts"], json!([]));
}

#[tokio::test]
async fn reset_clears_connections_faults_and_counters_but_keeps_tokens() {
    let harness = Harness::start().await;
    harness.create("gone").await;
    harness
        .admin
        .add_fault(rule(json!({"route": "/nowhere", "status": 500})))
        .await;
    let response = harness
        .admin_request(Method::POST, "/_emulator/reset")
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let state = harness.admin_wire("/_emulator/state").await;
    assert_eq!(state["connections"], json!([]));
    assert_eq!(state["inlets"], json!({}));
    assert_eq!(
        harness.admin_wire("/_emulator/faults").await["rules"],
        json!([])
    );
    assert_eq!(
        harness.admin_wire("/_emulator/requests").await["log"],
        json!([])
    );
    let list = harness.flow(Method::GET, CONNECTIONS).send().await.unwrap();
    assert_eq!(list.status(), StatusCode::OK, "the token still works");
}

// ----------------------------------------------------------------------------------------------- state file

#[tokio::test]
async fn a_restart_with_a_state_file_keeps_every_connection_and_etag() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("emulator-state.json");
    let config = || EmulatorConfig {
        state_file: Some(state_file.clone()),
        ..Default::default()
    };

    let harness = Harness::with(config()).await;
    let mut kept = Vec::new();
    for i in 0..5 {
        kept.push(harness.create(&format!("kept {i}")).await.0);
    }
    let (in_dev, _) = harness
        .create_in("dev", streaming_connection("dev one"))
        .await;
    let (deleted, _) = harness.create("deleted").await;
    harness
        .flow(Method::DELETE, &format!("{CONNECTIONS}/{deleted}"))
        .send()
        .await
        .unwrap();
    let etag = harness.connection(&kept[0]).await["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = harness
        .flow(Method::PATCH, &format!("{CONNECTIONS}/{}", kept[0]))
        .header("if-match", etag)
        .json(&json!([{"op": "replace", "path": "/name", "value": "renamed"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut before = Vec::new();
    for id in &kept {
        before.push(harness.connection(id).await);
    }
    harness.emulator.shutdown().await;

    // Tokens are not kept: the restarted emulator issues new ones.
    let restarted = Harness::with(config()).await;
    for (id, old) in kept.iter().zip(&before) {
        let now = restarted.connection(id).await;
        assert_eq!(now["etag"], old["etag"]);
        assert_eq!(now["name"], old["name"]);
        assert_eq!(
            now["auth"]["params"]["inletId"],
            old["auth"]["params"]["inletId"]
        );
        assert_eq!(now["createdAt"], old["createdAt"]);
    }
    assert_eq!(restarted.connection(&kept[0]).await["name"], "renamed");
    let dev = restarted
        .flow_in("dev", Method::GET, &format!("{CONNECTIONS}/{in_dev}"))
        .send()
        .await
        .unwrap();
    assert_eq!(dev.status(), StatusCode::OK, "sandbox is kept");
    let gone = restarted
        .flow(Method::GET, &format!("{CONNECTIONS}/{deleted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    // Creation order survives too.
    let names: Value = restarted
        .flow(Method::GET, CONNECTIONS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = names["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["renamed", "kept 1", "kept 2", "kept 3", "kept 4"]);
    // The inlet still works after the restart.
    let inlet_url = before[1]["auth"]["params"]["inletUrl"]
        .as_str()
        .unwrap()
        .replace(&harness.base, &restarted.base);
    let response = restarted
        .http
        .post(&inlet_url)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary files left behind: {leftovers:?}"
    );
}

#[tokio::test]
async fn a_corrupt_state_file_is_a_start_up_error_naming_the_path_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    std::fs::write(&state_file, "{\"connections\": [tru").unwrap();
    let error = start(EmulatorConfig {
        state_file: Some(state_file.clone()),
        ..Default::default()
    })
    .await
    .expect_err("a corrupt file must not start");
    let message = error.to_string();
    assert!(
        message.contains(&state_file.display().to_string()),
        "{message}"
    );
    assert!(message.contains("corrupt"), "{message}");
    assert_eq!(
        std::fs::read_to_string(&state_file).unwrap(),
        "{\"connections\": [tru",
        "never discarded"
    );
}

#[tokio::test]
async fn a_missing_state_file_starts_empty_and_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("fresh.json");
    let harness = Harness::with(EmulatorConfig {
        state_file: Some(state_file.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(count_connections(&harness).await, 0);
    harness.create("first").await;
    let saved: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(saved["connections"][0]["name"], "first");
}

// ---------------------------------------------------------------------------------------------------- binary

#[test]
fn the_binary_prints_where_it_listens_reads_env_flags_and_exits_cleanly_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aep-emulator"))
        .args(["--listen", "127.0.0.1:0"])
        .env("AEP_EMULATOR_SANDBOX", "qa,uat")
        .env(
            "AEP_EMULATOR_CLIENT",
            "cli-client:cli-secret:CLI0000000000000000000@AdobeOrg",
        )
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("aep-emulator listening on ")
        .expect("one line saying where")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = http_client();
        let token = fetch_token(&http, &url, "cli-client", "cli-secret").await;
        let response = http
            .get(format!("{url}{CONNECTIONS}"))
            .bearer_auth(token)
            .header("x-api-key", "cli-client")
            .header("x-gw-ims-org-id", "CLI0000000000000000000@AdobeOrg")
            .header("x-sandbox-name", "uat")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "sandbox and client come from the env vars"
        );
    });

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the emulator did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn the_binary_reports_a_corrupt_state_file_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    std::fs::write(&state_file, "garbage").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_aep-emulator"))
        .args(["--listen", "127.0.0.1:0", "--state-file"])
        .arg(&state_file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&state_file.display().to_string()),
        "{stderr}"
    );
}
