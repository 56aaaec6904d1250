//! The emulator's IMS and Flow Service surface, over HTTP, against an in-process emulator on a random port:
//! tokens, the header checks in the reference's order, create/get/list/patch/delete, scoping, pagination and
//! concurrency.

use std::collections::HashSet;
use std::time::Duration;

use aep_emulator::{
    ClientCredential, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_ORG_ID, EmulatorConfig,
    STREAMING_CONNECTION_SPEC_ID,
};
use aep_testkit::emulator::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------------------- IMS

#[tokio::test]
async fn ims_issues_a_bearer_token_for_known_client_credentials() {
    let harness = Harness::start().await;
    let response = harness
        .http
        .post(harness.url(TOKEN_PATH))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            (
                "scope",
                "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 86_399);
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() >= 32);
    assert_ne!(token, harness.token, "every token is new");
}

#[tokio::test]
async fn ims_accepts_credentials_as_query_parameters() {
    let harness = Harness::start().await;
    let response = harness
        .http
        .post(harness.url(&format!(
            "{TOKEN_PATH}?grant_type=client_credentials&client_id={DEMO_CLIENT_ID}&client_secret={DEMO_CLIENT_SECRET}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn ims_rejects_unknown_clients_wrong_secrets_and_other_grants_with_oauth_errors() {
    let harness = Harness::start().await;
    let token_request = |grant: &'static str, id: &'static str, secret: &'static str| {
        harness
            .http
            .post(harness.url(TOKEN_PATH))
            .form(&[
                ("grant_type", grant),
                ("client_id", id),
                ("client_secret", secret),
            ])
            .send()
    };
    let cases = [
        (
            token_request("client_credentials", "nobody", DEMO_CLIENT_SECRET)
                .await
                .unwrap(),
            400,
            "invalid_client",
        ),
        (
            token_request("client_credentials", DEMO_CLIENT_ID, "wrong")
                .await
                .unwrap(),
            401,
            "invalid_client",
        ),
        (
            token_request("password", DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
                .await
                .unwrap(),
            400,
            "unsupported_grant_type",
        ),
    ];
    for (response, status, error) in cases {
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], error, "{body}");
        assert!(body["error_description"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn ims_tokens_expire_after_the_configured_ttl() {
    let harness = Harness::with(EmulatorConfig {
        token_ttl: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let response = harness.flow(Method::GET, CONNECTIONS).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "fresh token works");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let response = harness.flow(Method::GET, CONNECTIONS).send().await.unwrap();
    assert_gateway_error(response, 401, "401013").await;
}

// ------------------------------------------------------------------------------------------------ header checks

#[tokio::test]
async fn header_checks_answer_in_the_reference_order() {
    let other = ClientCredential::from_str_checked(
        "other-client:other-secret:OTHER000000000000000000@AdobeOrg",
    );
    let harness = Harness::with(EmulatorConfig {
        clients: vec![ClientCredential::demo(), other.clone()],
        ..Default::default()
    })
    .await;
    let url = harness.url(CONNECTIONS);
    let token = harness.token.clone();
    let other_token = fetch_token(
        &harness.http,
        &harness.base,
        &other.client_id,
        &other.client_secret,
    )
    .await;
    let send = |headers: &[(&str, &str)]| {
        let mut request = harness.http.get(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let bearer = format!("Bearer {token}");
    let bearer = bearer.as_str();

    // Missing both token and api key: the token check comes first.
    assert_gateway_error(send(&[]).await.unwrap(), 403, "403010").await;
    assert_gateway_error(send(&[("authorization", "")]).await.unwrap(), 403, "403010").await;
    assert_gateway_error(
        send(&[("x-api-key", DEMO_CLIENT_ID)]).await.unwrap(),
        403,
        "403010",
    )
    .await;
    assert_gateway_error(
        send(&[("authorization", "Bearer forged")]).await.unwrap(),
        401,
        "401013",
    )
    .await;
    assert_gateway_error(
        send(&[("authorization", "Basic abc")]).await.unwrap(),
        401,
        "401013",
    )
    .await;
    assert_gateway_error(
        send(&[("authorization", bearer)]).await.unwrap(),
        403,
        "403000",
    )
    .await;
    assert_gateway_error(
        send(&[("authorization", bearer), ("x-api-key", "unknown")])
            .await
            .unwrap(),
        403,
        "403003",
    )
    .await;
    // A known client id that is not the one the token was issued to.
    assert_gateway_error(
        send(&[("authorization", bearer), ("x-api-key", &other.client_id)])
            .await
            .unwrap(),
        403,
        "403003",
    )
    .await;
    let with_key = [("authorization", bearer), ("x-api-key", DEMO_CLIENT_ID)];
    assert_gateway_error(send(&with_key).await.unwrap(), 400, "400003").await;
    let wrong_org = [
        with_key[0],
        with_key[1],
        ("x-gw-ims-org-id", other.org_id.as_str()),
    ];
    assert_gateway_error(send(&wrong_org).await.unwrap(), 403, "403025").await;
    let with_org = [with_key[0], with_key[1], ("x-gw-ims-org-id", DEMO_ORG_ID)];
    assert_flow_error(send(&with_org).await.unwrap(), 400, "2105-400").await;
    let unknown_sandbox = [
        with_org[0],
        with_org[1],
        with_org[2],
        ("x-sandbox-name", "staging"),
    ];
    let body = assert_flow_error(send(&unknown_sandbox).await.unwrap(), 404, "2100-404").await;
    assert!(
        body["report"]["detailed-message"]
            .as_str()
            .unwrap()
            .contains("staging")
    );
    let complete = [
        with_org[0],
        with_org[1],
        with_org[2],
        ("x-sandbox-name", "prod"),
    ];
    assert_eq!(send(&complete).await.unwrap().status(), StatusCode::OK);

    // The other client reaches its own org.
    let response = harness
        .http
        .get(&url)
        .bearer_auth(&other_token)
        .header("x-api-key", &other.client_id)
        .header("x-gw-ims-org-id", &other.org_id)
        .header("x-sandbox-name", "prod")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// `FromStr` with a panic message fit for tests.
trait ParseChecked {
    fn from_str_checked(text: &str) -> Self;
}

impl ParseChecked for ClientCredential {
    fn from_str_checked(text: &str) -> Self {
        text.parse().expect("valid credential")
    }
}

#[tokio::test]
async fn post_and_patch_need_a_json_content_type_and_answer_the_gateway_bad_request_body() {
    let harness = Harness::start().await;
    let body = serde_json::to_string(&streaming_connection("x")).unwrap();
    let without = harness
        .flow(Method::POST, CONNECTIONS)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let text_plain = harness
        .flow(Method::POST, CONNECTIONS)
        .header("content-type", "text/plain")
        .body(body.clone())
        .send();
    for response in [without, text_plain.await.unwrap()] {
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem,
            json!({"type": "/placeholder/type/uri", "status": 400, "title": "BadRequestError",
                   "detail": "A valid content-type must be specified"})
        );
    }
    let with_charset = harness
        .flow(Method::POST, CONNECTIONS)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(with_charset.status(), StatusCode::CREATED);

    let (id, etag) = harness.create("patched").await;
    let response = harness
        .flow(Method::PATCH, &format!("{CONNECTIONS}/{id}"))
        .header("if-match", etag)
        .body(r#"[{"op":"replace","path":"/name","value":"n"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["title"], "BadRequestError");
}

// ------------------------------------------------------------------------------------------- create and read

#[tokio::test]
async fn create_answers_201_with_id_etag_and_location_and_get_shows_the_full_connection() {
    let harness = Harness::start().await;
    let started = chrono::Utc::now().timestamp_millis();
    // The legacy form, with providerId and explicit params.
    let body = json!({
        "name": "Sample streaming connection",
        "providerId": "521eee4d-8cbe-4906-bb48-fb6bd4450033",
        "description": "Sample description",
        "connectionSpec": { "id": STREAMING_CONNECTION_SPEC_ID, "version": "1.0" },
        "auth": { "specName": "Streaming Connection",
                  "params": { "sourceId": "Sample connection", "dataType": "xdm", "name": "Sample connection" } }
    });
    let response = harness
        .flow(Method::POST, CONNECTIONS)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let etag = created["etag"].as_str().unwrap();
    assert_eq!(
        created.as_object().unwrap().len(),
        2,
        "only id and etag: {created}"
    );
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "etag keeps its quotes: {etag}"
    );
    assert_eq!(location, harness.url(&format!("{CONNECTIONS}/{id}")));

    let response = harness
        .flow(Method::GET, &format!("{CONNECTIONS}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let connection = &body["items"][0];
    assert_eq!(connection["id"], id);
    assert_eq!(connection["name"], "Sample streaming connection");
    assert_eq!(connection["description"], "Sample description");
    assert_eq!(connection["state"], "enabled");
    assert_eq!(connection["etag"], etag);
    assert_eq!(connection["version"], etag);
    assert_eq!(connection["createdBy"], DEMO_CLIENT_ID);
    assert_eq!(connection["createdClient"], DEMO_CLIENT_ID);
    assert_eq!(connection["updatedClient"], DEMO_CLIENT_ID);
    assert_eq!(connection["sandboxName"], "prod");
    assert_eq!(connection["imsOrgId"], DEMO_ORG_ID);
    assert_eq!(
        connection["connectionSpec"],
        json!({ "id": STREAMING_CONNECTION_SPEC_ID, "version": "1.0" })
    );
    let created_at = connection["createdAt"].as_i64().unwrap();
    assert!(
        created_at >= started - 1_000 && created_at < started + 600_000,
        "createdAt is epoch ms"
    );
    assert_eq!(connection["updatedAt"], connection["createdAt"]);
    let auth = &connection["auth"];
    assert_eq!(auth["specName"], "Streaming Connection");
    let params = &auth["params"];
    let inlet_id = params["inletId"].as_str().unwrap();
    assert_eq!(inlet_id.len(), 64);
    assert!(
        inlet_id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(
        params["inletUrl"],
        harness.url(&format!("/collection/{inlet_id}"))
    );
    assert_eq!(params["sourceId"], "Sample connection");
    assert_eq!(params["name"], "Sample connection");
    assert_eq!(params["dataType"], "xdm");
    assert_eq!(params["authenticationRequired"], false);
}

#[tokio::test]
async fn create_fills_source_id_name_authentication_and_data_type_defaults() {
    let harness = Harness::start().await;
    let body = json!({
        "name": "Minimal",
        "connectionSpec": { "id": STREAMING_CONNECTION_SPEC_ID },
        "auth": { "specName": "Streaming Connection", "params": {} }
    });
    let (id, _) = harness.create_in("prod", body).await;
    let connection = harness.connection(&id).await;
    let params = &connection["auth"]["params"];
    assert_eq!(params["sourceId"], "Minimal");
    assert_eq!(params["name"], "Minimal");
    assert_eq!(params["dataType"], "xdm");
    assert_eq!(params["authenticationRequired"], false);
    assert_eq!(connection["connectionSpec"]["version"], "1.0");
}

#[tokio::test]
async fn public_url_is_the_base_of_inlet_urls_and_locations() {
    let harness = Harness::with(EmulatorConfig {
        public_url: Some("https://dcs.example.test/".to_owned()),
        ..Default::default()
    })
    .await;
    let (id, _) = harness.create("public").await;
    let connection = harness.connection(&id).await;
    let inlet_id = connection["auth"]["params"]["inletId"].as_str().unwrap();
    assert_eq!(
        connection["auth"]["params"]["inletUrl"],
        format!("https://dcs.example.test/collection/{inlet_id}")
    );
}

/// An edit that makes a valid create body invalid.
type BodyChange = fn(&mut Value);

#[tokio::test]
async fn create_validation_errors_are_flow_problem_bodies() {
    let harness = Harness::start().await;
    let post = |body: String| {
        harness
            .flow(Method::POST, CONNECTIONS)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_flow_error(post(String::new()).await.unwrap(), 400, "1405-400").await;
    assert_flow_error(
        post("{\"name\": ".to_owned()).await.unwrap(),
        400,
        "1000-400",
    )
    .await;

    let mutate = |change: fn(&mut Value)| {
        let mut body = streaming_connection("valid");
        change(&mut body);
        body.to_string()
    };
    let cases: [(BodyChange, &str); 7] = [
        (
            |b| drop(b.as_object_mut().unwrap().remove("name")),
            "1000-400",
        ),
        (|b| b["name"] = json!(""), "1000-400"),
        (
            |b| drop(b.as_object_mut().unwrap().remove("connectionSpec")),
            "1413-400",
        ),
        (
            |b| b["connectionSpec"]["id"] = json!("00000000-0000-0000-0000-000000000000"),
            "1413-400",
        ),
        (
            |b| drop(b["auth"].as_object_mut().unwrap().remove("specName")),
            "1415-400",
        ),
        (
            |b| b["auth"]["params"]["dataType"] = json!("csv"),
            "1000-400",
        ),
        (
            |b| b["auth"]["params"]["authenticationRequired"] = json!("yes"),
            "1000-400",
        ),
    ];
    for (change, code) in cases {
        assert_flow_error(post(mutate(change)).await.unwrap(), 400, code).await;
    }
    let state = harness.admin_wire("/_emulator/state").await;
    assert_eq!(state["connections"], json!([]), "nothing was created");
}

#[tokio::test]
async fn raw_data_type_is_accepted() {
    let harness = Harness::start().await;
    let mut body = streaming_connection("raw");
    body["auth"]["params"]["dataType"] = json!("raw");
    let (id, _) = harness.create_in("prod", body).await;
    assert_eq!(
        harness.connection(&id).await["auth"]["params"]["dataType"],
        "raw"
    );
}

#[tokio::test]
async fn names_are_not_unique() {
    let harness = Harness::start().await;
    let (first, _) = harness.create("same name").await;
    let (second, _) = harness.create("same name").await;
    assert_ne!(first, second);
    let response = harness
        .flow(
            Method::GET,
            &format!("{CONNECTIONS}?property=name==same%20name"),
        )
        .send()
        .await;
    let body: Value = response.unwrap().json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unknown_connection_id_is_flow_1101_404_with_the_request_id() {
    let harness = Harness::start().await;
    let response = harness
        .flow(
            Method::GET,
            &format!("{CONNECTIONS}/4b6d1f4c-0000-4000-8000-000000000000"),
        )
        .header("x-request-id", "my-trace-123")
        .send()
        .await
        .unwrap();
    let body = assert_flow_error(response, 404, "1101-404").await;
    assert_eq!(body["title"], "Resource not found");
    assert_eq!(
        body["report"]["request-id"], "my-trace-123",
        "a client-sent request id is echoed"
    );
}

#[tokio::test]
async fn connections_are_scoped_per_sandbox_and_org() {
    let other = ClientCredential::from_str_checked(
        "other-client:other-secret:OTHER000000000000000000@AdobeOrg",
    );
    let harness = Harness::with(EmulatorConfig {
        clients: vec![ClientCredential::demo(), other.clone()],
        ..Default::default()
    })
    .await;
    let (in_dev, _) = harness
        .create_in("dev", streaming_connection("dev only"))
        .await;
    let path = format!("{CONNECTIONS}/{in_dev}");
    assert_flow_error(
        harness.flow(Method::GET, &path).send().await.unwrap(),
        404,
        "1101-404",
    )
    .await;
    assert_eq!(
        harness
            .flow_in("dev", Method::GET, &path)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let list: Value = harness
        .flow(Method::GET, CONNECTIONS)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]));
    assert_flow_error(
        harness.flow(Method::DELETE, &path).send().await.unwrap(),
        404,
        "1101-404",
    )
    .await;

    let other_token = fetch_token(
        &harness.http,
        &harness.base,
        &other.client_id,
        &other.client_secret,
    )
    .await;
    let response = harness
        .http
        .get(harness.url(&path))
        .bearer_auth(other_token)
        .header("x-api-key", &other.client_id)
        .header("x-gw-ims-org-id", &other.org_id)
        .header("x-sandbox-name", "dev")
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 404, "1101-404").await;
}

// -------------------------------------------------------------------------------------------- patch and delete

#[tokio::test]
async fn patch_with_unquoted_or_quoted_if_match_updates_and_issues_a_new_etag() {
    let harness = Harness::start().await;
    let (id, etag) = harness.create("before").await;
    let path = format!("{CONNECTIONS}/{id}");
    let created = harness.connection(&id).await;

    let unquoted = etag.trim_matches('"').to_owned();
    let response = harness
        .flow(Method::PATCH, &path)
        .header("if-match", unquoted)
        .json(&json!([
            {"op": "replace", "path": "/name", "value": "after"},
            {"op": "add", "path": "/description", "value": "new description"}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["id"], id.as_str());
    let second_etag = patched["etag"].as_str().unwrap().to_owned();
    assert_ne!(second_etag, etag);

    let connection = harness.connection(&id).await;
    assert_eq!(connection["name"], "after");
    assert_eq!(connection["description"], "new description");
    assert_eq!(connection["etag"], second_etag.as_str());
    assert_eq!(connection["version"], second_etag.as_str());
    assert_eq!(
        connection["auth"]["params"]["inletId"], created["auth"]["params"]["inletId"],
        "inlet is kept"
    );
    assert!(connection["updatedAt"].as_i64() >= created["updatedAt"].as_i64());

    // With the quotes, as the flows examples send it.
    let response = harness
        .flow(Method::PATCH, &path)
        .header("if-match", second_etag.as_str())
        .json(&json!([{"op": "remove", "path": "/description"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(harness.connection(&id).await.get("description").is_none());
}

#[tokio::test]
async fn patch_without_if_match_is_1403_and_with_a_stale_etag_is_1404_412() {
    let harness = Harness::start().await;
    let (id, etag) = harness.create("versioned").await;
    let path = format!("{CONNECTIONS}/{id}");
    let operations = json!([{"op": "replace", "path": "/name", "value": "v2"}]);
    let response = harness
        .flow(Method::PATCH, &path)
        .json(&operations)
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 400, "1403-400").await;

    let response = harness
        .flow(Method::PATCH, &path)
        .header("if-match", etag.as_str())
        .json(&operations)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stale = harness
        .flow(Method::PATCH, &path)
        .header("if-match", etag.as_str())
        .json(&operations)
        .send();
    let body = assert_flow_error(stale.await.unwrap(), 412, "1404-412").await;
    assert_eq!(body["title"], "Version not matching");
    assert_eq!(harness.connection(&id).await["name"], "v2");
}

#[tokio::test]
async fn patch_accepts_upper_case_ops_and_auth_params_sub_paths_but_not_the_connection_spec() {
    let harness = Harness::start().await;
    let (id, mut etag) = harness.create("ops").await;
    let path = format!("{CONNECTIONS}/{id}");
    let patch = |operations: Value, etag: String| {
        harness
            .flow(Method::PATCH, &path)
            .header("if-match", etag)
            .json(&operations)
            .send()
    };
    let response = patch(
        json!([{"op": "REPLACE", "path": "/auth/params/sourceId", "value": "storefront"}]),
        etag.clone(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    etag = response.json::<Value>().await.unwrap()["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        harness.connection(&id).await["auth"]["params"]["sourceId"],
        "storefront"
    );

    let response = patch(
        json!([{"op": "replace", "path": "/auth/params", "value": {"dataType": "raw", "sourceId": "s"}}]),
        etag.clone(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    etag = response.json::<Value>().await.unwrap()["etag"]
        .as_str()
        .unwrap()
        .to_owned();
    let params = harness.connection(&id).await["auth"]["params"].clone();
    assert_eq!(params["dataType"], "raw");
    assert_eq!(
        params["inletId"].as_str().unwrap().len(),
        64,
        "the inlet is server-owned and survives"
    );

    let spec = json!([{"op": "replace", "path": "/connectionSpec/id", "value": "x"}]);
    assert_flow_error(patch(spec, etag.clone()).await.unwrap(), 400, "1414-400").await;
    let state = json!([{"op": "replace", "path": "/state", "value": "disabled"}]);
    assert_flow_error(patch(state, etag.clone()).await.unwrap(), 400, "1455-400").await;
    let bad_type = json!([{"op": "replace", "path": "/auth/params/dataType", "value": "csv"}]);
    assert_flow_error(
        patch(bad_type, etag.clone()).await.unwrap(),
        400,
        "1455-400",
    )
    .await;
    let empty = harness
        .flow(Method::PATCH, &format!("{CONNECTIONS}/{id}"))
        .header("if-match", etag)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_flow_error(empty, 400, "1405-400").await;
}

#[tokio::test]
async fn patch_of_an_unknown_id_is_404() {
    let harness = Harness::start().await;
    let response = harness
        .flow(
            Method::PATCH,
            &format!("{CONNECTIONS}/4b6d1f4c-0000-4000-8000-000000000000"),
        )
        .header("if-match", "\"x\"")
        .json(&json!([{"op": "replace", "path": "/name", "value": "n"}]))
        .send()
        .await
        .unwrap();
    assert_flow_error(response, 404, "1101-404").await;
}

#[tokio::test]
async fn delete_answers_204_then_404_and_accepts_a_trailing_slash() {
    let harness = Harness::start().await;
    let (id, _) = harness.create("doomed").await;
    let path = format!("{CONNECTIONS}/{id}");
    let response = harness.flow(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_flow_error(
        harness.flow(Method::GET, &path).send().await.unwrap(),
        404,
        "1101-404",
    )
    .await;
    assert_flow_error(
        harness.flow(Method::DELETE, &path).send().await.unwrap(),
        404,
        "1101-404",
    )
    .await;

    let (id, _) = harness.create("doomed too").await;
    let response = harness
        .flow(Method::DELETE, &format!("{CONNECTIONS}/{id}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = harness
        .flow(Method::GET, &format!("{CONNECTIONS}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

// --------------------------------------------------------------------------------------------------------- list

async fn list_names(harness: &Harness, query: &str) -> Vec<String> {
    let response = harness
        .flow(Method::GET, &format!("{CONNECTIONS}?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["_links"], json!({}), "single page");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_filters_with_and_or_dotted_paths_and_url_decoded_values() {
    let harness = Harness::start().await;
    let (web, _) = harness.create("Web events").await;
    harness.create("Mobile events").await;
    let mut raw = streaming_connection("Raw feed");
    raw["auth"]["params"]["dataType"] = json!("raw");
    harness.create_in("prod", raw).await;
    let inlet_id = harness.connection(&web).await["auth"]["params"]["inletId"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(
        list_names(&harness, "property=name==Web%20events").await,
        ["Web events"]
    );
    assert_eq!(
        list_names(&harness, "property=name==Web+events").await,
        ["Web events"]
    );
    assert_eq!(
        list_names(&harness, "property=name==Web%20events,Raw%20feed").await,
        ["Web events", "Raw feed"]
    );
    assert_eq!(
        list_names(
            &harness,
            &format!("property=connectionSpec.id=={STREAMING_CONNECTION_SPEC_ID}")
        )
        .await
        .len(),
        3
    );
    assert_eq!(
        list_names(
            &harness,
            "property=state==enabled&property=auth.params.dataType==raw"
        )
        .await,
        ["Raw feed"]
    );
    assert_eq!(
        list_names(
            &harness,
            &format!("property=auth.params.inletId=={inlet_id}")
        )
        .await,
        ["Web events"]
    );
    assert!(
        list_names(&harness, "property=state==disabled")
            .await
            .is_empty()
    );
    assert!(
        list_names(&harness, "property=name==web%20events")
            .await
            .is_empty(),
        "values are case-sensitive"
    );
}

#[tokio::test]
async fn list_name_equality_is_exact_so_trailing_spaces_make_distinct_names() {
    let harness = Harness::start().await;
    harness.create("web").await;
    harness.create("web ").await;
    harness.create(" web").await;
    assert_eq!(list_names(&harness, "property=name==web").await, ["web"]);
    assert_eq!(
        list_names(&harness, "property=name==web%20").await,
        ["web "]
    );
    assert_eq!(list_names(&harness, "property=name==web+").await, ["web "]);
    assert_eq!(
        list_names(&harness, "property=name==%20web").await,
        [" web"]
    );
    assert_eq!(
        list_names(&harness, "property=name!=web%20").await,
        ["web", " web"]
    );
    for (query, expected) in [
        ("count=true&property=name==web", 1),
        ("count=true&property=name==web%20", 1),
        ("count=true&property=name==web,web%20", 2),
        ("count=true&property=name==web%20%20", 0),
    ] {
        let body: Value = harness
            .flow(Method::GET, &format!("{CONNECTIONS}?{query}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({"count": expected}), "{query}");
    }
}

#[tokio::test]
async fn list_orders_by_name_either_way_and_by_creation_time() {
    let harness = Harness::start().await;
    for name in ["bravo", "alpha", "charlie"] {
        harness.create(name).await;
    }
    assert_eq!(
        list_names(&harness, "").await,
        ["bravo", "alpha", "charlie"],
        "default: creation order"
    );
    assert_eq!(
        list_names(&harness, "orderby=name").await,
        ["alpha", "bravo", "charlie"]
    );
    assert_eq!(
        list_names(&harness, "orderby=%2Bname").await,
        ["alpha", "bravo", "charlie"]
    );
    assert_eq!(
        list_names(&harness, "orderby=+name").await,
        ["alpha", "bravo", "charlie"]
    );
    assert_eq!(
        list_names(&harness, "orderby=-name").await,
        ["charlie", "bravo", "alpha"]
    );
    assert_eq!(
        list_names(&harness, "orderby=-createdAt").await,
        ["charlie", "alpha", "bravo"]
    );
}

#[tokio::test]
async fn list_count_answers_only_the_count_and_refuses_a_limit() {
    let harness = Harness::start().await;
    for name in ["a", "b", "a"] {
        harness.create(name).await;
    }
    let count = |query: &'static str| {
        harness
            .flow(Method::GET, &format!("{CONNECTIONS}?{query}"))
            .send()
    };
    let body: Value = count("count=true").await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"count": 3}));
    let body: Value = count("count=true&property=name==a")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"count": 2}));
    assert_flow_error(count("count=true&limit=10").await.unwrap(), 400, "1401-400").await;
    assert_flow_error(count("limit=5000").await.unwrap(), 400, "1453-400").await;
}

/// Follow `_links.next.href` from `first_query` to the end; returns the ids seen, in order, and the page count.
async fn walk_pages(harness: &Harness, first_query: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut url = harness.url(&format!("{CONNECTIONS}?{first_query}"));
    let flow_base = harness.url("/data/foundation/flowservice");
    loop {
        let response = harness
            .http
            .get(&url)
            .bearer_auth(&harness.token)
            .header("x-api-key", DEMO_CLIENT_ID)
            .header("x-gw-ims-org-id", DEMO_ORG_ID)
            .header("x-sandbox-name", "prod")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        pages += 1;
        ids.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        match body["_links"]["next"]["href"].as_str() {
            // The href is relative to the Flow Service base, as aepp joins it.
            Some(href) => {
                assert!(
                    href.starts_with("/connections?continuationToken="),
                    "{href}"
                );
                url = format!("{flow_base}{href}");
            }
            None => {
                assert_eq!(body["_links"], json!({}));
                return (ids, pages);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_visits_every_connection_exactly_once_with_large_and_small_limits_and_filters() {
    let harness = Harness::start().await;
    const TOTAL: usize = 2_500;
    let names: Vec<String> = (0..TOTAL)
        .map(|i| {
            if i % 2 == 0 {
                "even".into()
            } else {
                format!("odd {i}")
            }
        })
        .collect();
    let created: Vec<String> = futures::stream::iter(names.iter())
        .map(|name| harness.create(name))
        .buffer_unordered(32)
        .map(|(id, _)| id)
        .collect()
        .await;
    let all: HashSet<String> = created.iter().cloned().collect();
    assert_eq!(all.len(), TOTAL);

    let (ids, pages) = walk_pages(&harness, "limit=1000").await;
    assert_eq!(pages, 3);
    assert_eq!(ids.len(), TOTAL);
    assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), all);

    let (ids, pages) = walk_pages(&harness, "limit=97&orderby=-name").await;
    assert_eq!(pages, TOTAL.div_ceil(97));
    assert_eq!(ids.len(), TOTAL);
    assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), all);

    let (ids, _) = walk_pages(&harness, "limit=7&property=name==even").await;
    assert_eq!(ids.len(), TOTAL / 2);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        TOTAL / 2,
        "no repeats"
    );

    // Without a limit, pages have the default size and still cover everything.
    let (ids, pages) = walk_pages(&harness, "").await;
    assert!(pages > 1);
    assert_eq!(ids.len(), TOTAL);
}

#[tokio::test]
async fn a_continuation_token_alone_carries_the_filters_and_limit() {
    let harness = Harness::start().await;
    for i in 0..5 {
        harness.create(if i < 4 { "wanted" } else { "other" }).await;
    }
    let first: Value = harness
        .flow(
            Method::GET,
            &format!("{CONNECTIONS}?limit=3&property=name==wanted"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let href = first["_links"]["next"]["href"].as_str().unwrap();
    // As aepp does: cut the token out of the href and send it as the only parameter.
    let token = href.split('=').nth(1).unwrap();
    let second: Value = harness
        .flow(
            Method::GET,
            &format!("{CONNECTIONS}?continuationToken={token}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = second["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["wanted"]);
    assert_eq!(second["_links"], json!({}));
}

// -------------------------------------------------------------------------------------------------- concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_creates_give_two_hundred_distinct_connections() {
    let harness = Harness::start().await;
    let results = futures::future::join_all(
        (0..200).map(|i| harness.create_in("prod", streaming_connection(&format!("c{i}")))),
    )
    .await;
    let ids: HashSet<&String> = results.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 200);
    let state = harness.admin_wire("/_emulator/state").await;
    let connections = state["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 200);
    let inlets: HashSet<&str> = connections
        .iter()
        .map(|c| c["auth"]["params"]["inletId"].as_str().unwrap())
        .collect();
    assert_eq!(inlets.len(), 200);
    let body: Value = harness
        .flow(Method::GET, &format!("{CONNECTIONS}?count=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["count"], 200);
}
