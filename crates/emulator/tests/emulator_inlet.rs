//! The emulator's streaming inlet over HTTP: single and batch messages, sync validation, the 1 MB limit,
//! unknown inlets, authenticated inlets, provisioning delay, and delivery records in the admin state.

use std::time::{Duration, Instant};

use aep_emulator::EmulatorConfig;
use aep_testkit::emulator::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `(connection id, inlet URL)` of a new connection created from `body`.
async fn inlet_of(harness: &Harness, body: Value) -> (String, String) {
    let (id, _) = harness.create_in("prod", body).await;
    let connection = harness.connection(&id).await;
    (
        id,
        connection["auth"]["params"]["inletUrl"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

fn batch_url(inlet_url: &str) -> String {
    inlet_url.replace("/collection/", "/collection/batch/")
}

#[tokio::test]
async fn single_message_is_accepted_with_async_validation_skipped() {
    let harness = Harness::start().await;
    let (_, inlet_url) = inlet_of(&harness, streaming_connection("web")).await;
    let inlet_id = inlet_url.rsplit('/').next().unwrap().to_owned();
    let before = chrono::Utc::now().timestamp_millis();
    let response = harness
        .http
        .post(&inlet_url)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["inletId"], inlet_id.as_str());
    assert!(
        body["xactionId"].as_str().unwrap().split(':').count() >= 3,
        "{body}"
    );
    assert!(body["receivedTimeMs"].as_i64().unwrap() >= before - 1_000);
    assert_eq!(body["syncValidation"], json!({"skipped": true}));
}

#[tokio::test]
async fn sync_validation_passes_a_valid_xdm_message_and_rejects_one_without_header() {
    let harness = Harness::start().await;
    let (_, inlet_url) = inlet_of(&harness, streaming_connection("web")).await;
    let url = format!("{inlet_url}?syncValidation=true");
    let response = harness
        .http
        .post(&url)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["syncValidation"], json!({"status": "pass"}));

    let response = harness
        .http
        .post(&url)
        .json(&json!({"body": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["title"], "Invalid XDM Message Format");
    assert_eq!(body["status"], 400);
}

#[tokio::test]
async fn batch_answers_207_with_a_400_entry_for_an_xdm_message_lacking_header_or_body() {
    let harness = Harness::start().await;
    let (_, inlet_url) = inlet_of(&harness, streaming_connection("web")).await;
    let messages =
        json!({"messages": [xdm_message(), {"body": {}}, xdm_message(), {"header": {}}]});
    let response = harness
        .http
        .post(batch_url(&inlet_url))
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MULTI_STATUS);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["batchId"].is_string() && body["receivedTimeMs"].is_i64(),
        "{body}"
    );
    let responses = body["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 4);
    assert!(responses[0]["xactionId"].is_string());
    assert_eq!(responses[1]["statusCode"], 400);
    assert!(
        responses[1]["message"]
            .as_str()
            .unwrap()
            .contains("unknown xdm format")
    );
    assert!(responses[2]["xactionId"].is_string());
    assert_eq!(responses[3]["statusCode"], 400);

    let state = harness.admin_wire("/_emulator/state").await;
    let inlet_id = inlet_url.rsplit('/').next().unwrap();
    assert_eq!(state["inlets"][inlet_id]["messages"], 2);
    assert_eq!(state["inlets"][inlet_id]["rejected"], 2);
}

#[tokio::test]
async fn raw_inlets_accept_any_json_in_batches() {
    let harness = Harness::start().await;
    let mut body = streaming_connection("raw");
    body["auth"]["params"]["dataType"] = json!("raw");
    let (_, inlet_url) = inlet_of(&harness, body).await;
    let messages = json!({"messages": [{"any": "thing"}, [1, 2], "text"]});
    let response = harness
        .http
        .post(batch_url(&inlet_url))
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MULTI_STATUS);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["responses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["xactionId"].is_string())
    );
}

#[tokio::test]
async fn payloads_above_1_mb_are_refused_with_413() {
    let harness = Harness::start().await;
    let (_, inlet_url) = inlet_of(&harness, streaming_connection("web")).await;
    let mut message = xdm_message();
    message["body"]["xdmEntity"]["padding"] = json!("x".repeat(1_100_000));
    let response = harness
        .http
        .post(&inlet_url)
        .json(&message)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let batch = json!({"messages": [message]});
    let response = harness
        .http
        .post(batch_url(&inlet_url))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let mut fits = xdm_message();
    fits["body"]["xdmEntity"]["padding"] = json!("x".repeat(900_000));
    let response = harness
        .http
        .post(&inlet_url)
        .json(&fits)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_inlets_are_404_and_invalid_json_is_400() {
    let harness = Harness::start().await;
    let unknown = harness.url(&format!("/collection/{}", "ab".repeat(32)));
    let response = harness
        .http
        .post(&unknown)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = harness
        .http
        .post(batch_url(&unknown))
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let (_, inlet_url) = inlet_of(&harness, streaming_connection("web")).await;
    let response = harness
        .http
        .post(&inlet_url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = harness
        .http
        .post(batch_url(&inlet_url))
        .json(&json!({"no": "messages"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn deleted_connections_have_no_inlet() {
    let harness = Harness::start().await;
    let (id, inlet_url) = inlet_of(&harness, streaming_connection("web")).await;
    let response = harness
        .flow(Method::DELETE, &format!("{CONNECTIONS}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = harness
        .http
        .post(&inlet_url)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// The exact 401 body of the seed document (reference §3.3): note the string status.
fn seed_401() -> Value {
    json!({
        "type": "https://ns.adobe.com/adobecloud/problem/data-collection-service-authorization",
        "status": "401",
        "title": "Authorization",
        "report": { "message": "[id] Ims service token is empty" }
    })
}

#[tokio::test]
async fn authenticated_inlets_answer_the_seed_401_without_a_valid_token_and_200_with_one() {
    let harness = Harness::start().await;
    let (_, inlet_url) = inlet_of(&harness, authenticated_connection("secure")).await;
    let without = harness
        .http
        .post(&inlet_url)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    let forged = harness
        .http
        .post(&inlet_url)
        .bearer_auth("forged")
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    let batch = harness
        .http
        .post(batch_url(&inlet_url))
        .json(&json!({"messages": [xdm_message()]}))
        .send()
        .await
        .unwrap();
    for response in [without, forged, batch] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.json::<Value>().await.unwrap(), seed_401());
    }
    let response = harness
        .http
        .post(&inlet_url)
        .bearer_auth(&harness.token)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = harness
        .http
        .post(batch_url(&inlet_url))
        .bearer_auth(&harness.token)
        .json(&json!({"messages": [xdm_message()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MULTI_STATUS);
}

#[tokio::test]
async fn authenticated_inlets_refuse_expired_tokens() {
    let harness = Harness::with(EmulatorConfig {
        token_ttl: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let (_, inlet_url) = inlet_of(&harness, authenticated_connection("secure")).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let response = harness
        .http
        .post(&inlet_url)
        .bearer_auth(&harness.token)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.json::<Value>().await.unwrap(), seed_401());
}

#[tokio::test]
async fn unauthenticated_inlets_ignore_tokens() {
    let harness = Harness::start().await;
    let (_, inlet_url) = inlet_of(&harness, streaming_connection("open")).await;
    let response = harness
        .http
        .post(&inlet_url)
        .bearer_auth("anything")
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_new_inlet_appears_in_get_and_accepts_data_only_after_the_inlet_delay() {
    const DELAY: Duration = Duration::from_millis(1_500);
    let harness = Harness::with(EmulatorConfig {
        inlet_delay: DELAY,
        ..Default::default()
    })
    .await;
    let created_at = Instant::now();
    let (id, _) = harness.create("provisioning").await;
    let inlet_id = harness.admin.state().await.connections[0]
        .inlet_id()
        .to_owned();
    let inlet_url = harness.url(&format!("/collection/{inlet_id}"));

    let connection = harness.connection(&id).await;
    // Only meaningful while the delay has certainly not passed; a very slow machine skips this half.
    if created_at.elapsed() < DELAY / 2 {
        let params = &connection["auth"]["params"];
        assert!(
            params.get("inletUrl").is_none() && params.get("inletId").is_none(),
            "{params}"
        );
        let response = harness
            .http
            .post(&inlet_url)
            .json(&xdm_message())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "inlet not provisioned yet"
        );
        let state = harness.admin_wire("/_emulator/state").await;
        assert_eq!(state["connections"][0]["inletReady"], false);
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let inlet_url_seen = loop {
        let connection = harness.connection(&id).await;
        if let Some(url) = connection["auth"]["params"]["inletUrl"].as_str() {
            break url.to_owned();
        }
        assert!(Instant::now() < deadline, "inletUrl never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        created_at.elapsed() >= DELAY,
        "inletUrl appeared before the delay"
    );
    assert_eq!(inlet_url_seen, inlet_url);
    let response = harness
        .http
        .post(&inlet_url)
        .json(&xdm_message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_state_counts_messages_per_inlet_and_keeps_recent_ones() {
    let harness = Harness::start().await;
    let (id, inlet_url) = inlet_of(&harness, streaming_connection("counted")).await;
    let (_, quiet_url) = inlet_of(&harness, streaming_connection("quiet")).await;
    let inlet_id = inlet_url.rsplit('/').next().unwrap();
    let quiet_id = quiet_url.rsplit('/').next().unwrap();
    for _ in 0..3 {
        let response = harness
            .http
            .post(&inlet_url)
            .json(&xdm_message())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let batch = json!({"messages": [xdm_message(), xdm_message()]});
    let response = harness
        .http
        .post(batch_url(&inlet_url))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MULTI_STATUS);

    let state = harness.admin_wire("/_emulator/state").await;
    let record = &state["inlets"][inlet_id];
    assert_eq!(record["messages"], 5);
    assert_eq!(record["requests"], 4);
    assert_eq!(record["connectionId"], id.as_str());
    assert_eq!(state["inlets"][quiet_id]["messages"], 0);

    let detail = harness.admin.inlet(inlet_id).await;
    assert_eq!(detail.recent_messages.len(), 5);
    assert_eq!(detail.recent_messages[0], xdm_message());
}
