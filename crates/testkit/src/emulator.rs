//! Test fixtures for the emulator tests: an in-process emulator on a random port with a token in hand, and
//! request builders that carry the headers a well-behaved client sends.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::time::Duration;

use aep_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_ORG_ID, EmulatorConfig, RunningEmulator,
    STREAMING_CONNECTION_SPEC_ID, start,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

pub const CONNECTIONS: &str = "/data/foundation/flowservice/connections";
pub const CONNECTION_ROUTE: &str = "/data/foundation/flowservice/connections/{id}";
pub const TOKEN_PATH: &str = "/ims/token/v3";

/// A running emulator, an HTTP client and a valid token of the demo client.
pub struct Harness {
    pub emulator: RunningEmulator,
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

pub fn http_client() -> reqwest::Client {
    // Generous: no test should come near it, it only turns a hang into a failure.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(EmulatorConfig::default()).await
    }

    pub async fn with(config: EmulatorConfig) -> Self {
        let emulator = start(config).await.expect("emulator starts");
        let base = emulator.url();
        let http = http_client();
        let token = fetch_token(&http, &base, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
        Self {
            emulator,
            http,
            base,
            token,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A Flow Service request in sandbox `prod` with every required header.
    pub fn flow(&self, method: Method, path: &str) -> RequestBuilder {
        self.flow_in("prod", method, path)
    }

    pub fn flow_in(&self, sandbox: &str, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .header("x-api-key", DEMO_CLIENT_ID)
            .header("x-gw-ims-org-id", DEMO_ORG_ID)
            .header("x-sandbox-name", sandbox)
    }

    /// Create a streaming connection in `prod`; returns `(id, etag)`.
    pub async fn create(&self, name: &str) -> (String, String) {
        self.create_in("prod", streaming_connection(name)).await
    }

    pub async fn create_in(&self, sandbox: &str, body: Value) -> (String, String) {
        let response = self
            .flow_in(sandbox, Method::POST, CONNECTIONS)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "create failed: {}",
            response.text().await.unwrap()
        );
        let created: Value = response.json().await.unwrap();
        (
            created["id"].as_str().unwrap().to_owned(),
            created["etag"].as_str().unwrap().to_owned(),
        )
    }

    /// `items[0]` of `GET /connections/{id}` in `prod`.
    pub async fn connection(&self, id: &str) -> Value {
        let response = self
            .flow(Method::GET, &format!("{CONNECTIONS}/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body: Value = response.json().await.unwrap();
        body["items"][0].take()
    }

    pub async fn admin(&self, method: Method, path: &str) -> Response {
        self.http
            .request(method, self.url(path))
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_json(&self, path: &str) -> Value {
        let response = self.admin(Method::GET, path).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn add_fault(&self, rule: Value) -> Value {
        let response = self
            .http
            .post(self.url("/_emulator/faults"))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        response.json().await.unwrap()
    }

    /// The inlet id of a connection as the admin state shows it (also before it is provisioned).
    pub async fn inlet_id(&self, connection_id: &str) -> String {
        let state = self.admin_json("/_emulator/state").await;
        let connection = state["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == connection_id)
            .expect("connection in state")
            .clone();
        connection["auth"]["params"]["inletId"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

pub async fn fetch_token(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    secret: &str,
) -> String {
    let response = http
        .post(format!("{base}{TOKEN_PATH}"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "openid,AdobeID,read_organizations"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The current ("HTTP API") create body for a streaming connection.
pub fn streaming_connection(name: &str) -> Value {
    json!({
        "name": name,
        "description": format!("{name} description"),
        "connectionSpec": { "id": STREAMING_CONNECTION_SPEC_ID, "version": "1.0" },
        "auth": { "specName": "Streaming Connection", "params": { "dataType": "xdm" } }
    })
}

/// A connection requiring bearer tokens on its inlet.
pub fn authenticated_connection(name: &str) -> Value {
    let mut body = streaming_connection(name);
    body["auth"]["params"]["authenticationRequired"] = json!(true);
    body
}

/// A minimal XDM envelope.
pub fn xdm_message() -> Value {
    json!({
        "header": {
            "schemaRef": { "id": "https://ns.adobe.com/tenant/schemas/abc",
                           "contentType": "application/vnd.adobe.xed-full+json;version=1" },
            "imsOrgId": DEMO_ORG_ID,
            "datasetId": "dataset",
            "source": { "name": "test" }
        },
        "body": {
            "xdmMeta": { "schemaRef": { "id": "https://ns.adobe.com/tenant/schemas/abc",
                                        "contentType": "application/vnd.adobe.xed-full+json;version=1" } },
            "xdmEntity": { "person": { "name": "Ada" } }
        }
    })
}

/// Assert a Flow problem body of `FLOW-<code>`, whose `report.request-id` matches the `x-request-id` header.
pub async fn assert_flow_error(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("https://ns.adobe.com/aep/errors/FLOW-{code}"),
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(body["report"]["detailed-message"].is_string(), "{body}");
    assert_eq!(body["report"]["request-id"], request_id.as_str(), "{body}");
    assert!(
        body["errorMessage"].is_string() && body["errorDetails"].is_string(),
        "{body}"
    );
    body
}

/// Assert an adobe.io gateway error `{"error_code", "message"}`.
pub async fn assert_gateway_error(response: Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
}
