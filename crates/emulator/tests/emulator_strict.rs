//! The emulator held to Adobe's published contract (issue 14), and its `lenient` switch: the catalogue's codes
//! for unknown query parameters (`1451`), the unimplemented `~` operator (`1440`), a `limit` above the maximum
//! (`1453`), PATCH not enabled for the organization (`1445`), a malformed body (`1000`, not `1400`, which the
//! catalogue gives a 500), the inlet's `Content-Type` (JSON or Smile) and its `syncValidation` limit.

use aep_emulator::{DEMO_ORG_ID, EmulatorConfig};
use aep_testkit::emulator::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn lenient() -> EmulatorConfig {
    EmulatorConfig {
        lenient: true,
        ..EmulatorConfig::default()
    }
}

async fn inlet_url(harness: &Harness, name: &str) -> String {
    let (id, _) = harness.create(name).await;
    harness.connection(&id).await["auth"]["params"]["inletUrl"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_unknown_query_parameter_is_1451_unless_lenient() {
    let strict = Harness::start().await;
    for collection in [
        CONNECTIONS,
        "/data/foundation/flowservice/flows",
        "/data/foundation/flowservice/runs",
        "/data/foundation/flowservice/sourceConnections",
        "/data/foundation/flowservice/targetConnections",
    ] {
        let response = strict
            .flow(Method::GET, &format!("{collection}?start=0"))
            .send()
            .await
            .unwrap();
        let body = assert_flow_error(response, 400, "1451-400").await;
        assert_eq!(
            body["errorMessage"],
            "Invalid params start provided in query params."
        );
    }
    let lenient = Harness::with(lenient()).await;
    let response = lenient
        .flow(Method::GET, &format!("{CONNECTIONS}?start=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_tilde_operator_is_1440_not_implemented_unless_lenient() {
    let strict = Harness::start().await;
    strict.create("web events").await;
    let response = strict
        .flow(Method::GET, &format!("{CONNECTIONS}?property=name~web"))
        .send()
        .await
        .unwrap();
    let body = assert_flow_error(response, 400, "1440-400").await;
    assert_eq!(body["errorMessage"], "Operator '~' not implemented.");
    let lenient = Harness::with(lenient()).await;
    lenient.create("web events").await;
    let body: Value = lenient
        .flow(Method::GET, &format!("{CONNECTIONS}?property=name~web"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_name_filter_is_exact_equality_without_trimming() {
    let harness = Harness::start().await;
    harness.create("web events").await;
    let count = |query: &'static str| {
        let request = harness.flow(Method::GET, &format!("{CONNECTIONS}?{query}"));
        async move {
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            body["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("property=name==web%20events").await, 1);
    assert_eq!(count("property=name==web%20events%20").await, 0);
    assert_eq!(count("property=name==%20web%20events").await, 0);
}

#[tokio::test]
async fn a_limit_above_the_maximum_is_1453_and_the_maximum_is_configurable() {
    let harness = Harness::with(EmulatorConfig {
        max_page_size: 50,
        ..EmulatorConfig::default()
    })
    .await;
    let response = harness
        .flow(Method::GET, &format!("{CONNECTIONS}?limit=51"))
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 400, "1453-400").await;
    let response = harness
        .flow(Method::GET, &format!("{CONNECTIONS}?limit=50"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_body_is_the_generic_1000_not_the_internal_error_1400() {
    let harness = Harness::start().await;
    let response = harness
        .flow(Method::POST, CONNECTIONS)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 400, "1000-400").await;
}

#[tokio::test]
async fn an_injected_429_has_no_code_of_another_meaning() {
    let harness = Harness::start().await;
    harness
        .admin
        .add_fault(
            serde_json::from_value(
                json!({"route": CONNECTIONS, "method": "GET", "status": 429, "times": 1}),
            )
            .unwrap(),
        )
        .await;
    let response = harness.flow(Method::GET, CONNECTIONS).send().await.unwrap();
    assert_flow_error(response, 429, "0000-429").await;
}

#[tokio::test]
async fn patch_of_connections_is_1445_for_an_organization_that_has_not_enabled_it() {
    let harness = Harness::with(EmulatorConfig {
        patch_disabled_orgs: vec![DEMO_ORG_ID.to_owned()],
        ..EmulatorConfig::default()
    })
    .await;
    let (id, etag) = harness.create("web events").await;
    let response = harness
        .flow(Method::PATCH, &format!("{CONNECTIONS}/{id}"))
        .header("if-match", etag)
        .json(&json!([{"op": "replace", "path": "/name", "value": "renamed"}]))
        .send()
        .await
        .unwrap();
    let body = assert_flow_error(response, 400, "1445-400").await;
    assert_eq!(
        body["errorMessage"],
        "PATCH Connection Feature not enabled."
    );
    assert_eq!(harness.connection(&id).await["name"], "web events");
}

#[tokio::test]
async fn the_inlet_takes_json_or_smile_and_refuses_other_content_types_unless_lenient() {
    let harness = Harness::start().await;
    let inlet = inlet_url(&harness, "web events").await;
    let message = serde_json::to_vec(&xdm_message()).unwrap();
    let post = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = harness.http.post(&inlet).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    for content_type in [None, Some("text/plain")] {
        let response = post(content_type, message.clone()).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{content_type:?}"
        );
    }
    let response = post(Some("application/json; charset=utf-8"), message.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A Smile document: the `:)\n` header, then (here) an empty object.
    let smile = b":)\n\x00\xfa\xfb".to_vec();
    let response = post(Some("application/x-jackson-smile"), smile)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["syncValidation"], json!({"skipped": true}));

    let lenient = Harness::with(lenient()).await;
    let inlet = inlet_url(&lenient, "web events").await;
    let response = lenient
        .http
        .post(&inlet)
        .header("content-type", "text/plain")
        .body(message)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn sync_validation_is_limited_to_60_requests_a_minute_per_inlet_unless_lenient() {
    for (config, limited) in [(EmulatorConfig::default(), true), (lenient(), false)] {
        let harness = Harness::with(config).await;
        let inlet = inlet_url(&harness, "web events").await;
        let mut statuses = Vec::new();
        for _ in 0..61 {
            let response = harness
                .http
                .post(format!("{inlet}?syncValidation=true"))
                .json(&xdm_message())
                .send()
                .await
                .unwrap();
            statuses.push(response.status().as_u16());
        }
        assert!(
            statuses[..60].iter().all(|status| *status == 200),
            "{statuses:?}"
        );
        assert_eq!(statuses[60], if limited { 429 } else { 200 });
        // Without syncValidation the inlet still takes messages.
        let response = harness
            .http
            .post(&inlet)
            .json(&xdm_message())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_connection_in_a_transitional_state_refuses_patch_and_delete_with_1416() {
    let harness = Harness::start().await;
    let (id, etag) = harness.create("web events").await;
    let patch = json!([{"op": "replace", "path": "/name", "value": "renamed"}]);
    for state in [
        "updating",
        "disabling",
        "enabled-finalizing",
        "delete-finalizing",
    ] {
        harness.admin.set_connection_state(&id, state).await;
        assert_eq!(harness.connection(&id).await["state"], state);
        let response = harness
            .flow(Method::PATCH, &format!("{CONNECTIONS}/{id}"))
            .header("If-Match", &etag)
            .json(&patch)
            .send()
            .await
            .unwrap();
        let body = assert_flow_error(response, 400, "1416-400").await;
        assert_eq!(
            body["errorMessage"],
            "Delete or Update can only be applied on connection with enabled, disabled or initializing state."
        );
        let response = harness
            .flow(Method::DELETE, &format!("{CONNECTIONS}/{id}"))
            .send()
            .await
            .unwrap();
        assert_flow_error(response, 400, "1416-400").await;
    }
    // A stale etag does not matter before the state does; an unknown id is still 404 first.
    let response = harness
        .flow(Method::PATCH, &format!("{CONNECTIONS}/{id}"))
        .header("If-Match", "\"stale\"")
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 400, "1416-400").await;
    // enabled, disabled and initializing allow both.
    for state in ["disabled", "initializing", "enabled"] {
        harness.admin.set_connection_state(&id, state).await;
        let response = harness
            .flow(Method::PATCH, &format!("{CONNECTIONS}/{id}"))
            .header("If-Match", "*")
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{state}");
    }
    harness
        .admin
        .set_connection_state(&id, "initializing")
        .await;
    let response = harness
        .flow(Method::DELETE, &format!("{CONNECTIONS}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_admin_state_route_refuses_unknown_states_and_connections() {
    let harness = Harness::start().await;
    let (id, _) = harness.create("web events").await;
    for (path, body, status) in [
        (
            format!("/_emulator/connections/{id}/state"),
            json!({"state": "draft"}),
            400,
        ),
        (format!("/_emulator/connections/{id}/state"), json!({}), 400),
        (
            "/_emulator/connections/nope/state".to_owned(),
            json!({"state": "updating"}),
            404,
        ),
    ] {
        let response = harness
            .http
            .put(harness.url(&path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path} {body}");
    }
    assert_eq!(harness.connection(&id).await["state"], "enabled");
}

#[tokio::test]
async fn mapping_set_reads_refuse_undeclared_query_parameters_with_1451_unless_lenient() {
    const MAPPING_SETS: &str = "/data/foundation/conversion/mappingSets";
    let body = json!({
        "outputSchema": {"schemaRef": {"id": aep_emulator::DEMO_SCHEMA_ID,
                                       "contentType": aep_emulator::XDM_CONTENT_TYPE}},
        "mappings": [{"sourceType": "ATTRIBUTE", "source": "a", "destination": "b"}]
    });
    for (config, strict) in [(EmulatorConfig::default(), true), (lenient(), false)] {
        let harness = Harness::with(config).await;
        let created: Value = harness
            .flow(Method::POST, MAPPING_SETS)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap();
        for path in [
            format!("{MAPPING_SETS}?start=0&limit=10&property=name==x"),
            format!("{MAPPING_SETS}/{id}?continuationToken=abc"),
        ] {
            let response = harness.flow(Method::GET, &path).send().await.unwrap();
            if strict {
                assert_flow_error(response, 400, "1451-400").await;
            } else {
                assert_eq!(response.status(), StatusCode::OK, "{path}");
            }
        }
        for path in [
            format!("{MAPPING_SETS}?start=0&limit=10&name=x&orderBy=name&expandSchema=false"),
            format!("{MAPPING_SETS}/{id}?version=0&expandSchema=true"),
        ] {
            let response = harness.flow(Method::GET, &path).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }
}
