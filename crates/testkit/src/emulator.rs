//! The in-process emulator harness: an emulator on a random port with a token in hand, request builders that
//! carry the headers a well-behaved client sends, and the request bodies and answer checks the emulator's tests
//! share. Its admin API is reached through [`EmulatorAdmin`].

use std::time::Duration;

use aep_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_ORG_ID, EmulatorConfig, RunningEmulator,
    STREAMING_CONNECTION_SPEC_ID, start,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

use crate::admin::{EmulatorAdmin, IMS_TOKEN_ROUTE};

/// The Flow Service connections collection.
pub const CONNECTIONS: &str = "/data/foundation/flowservice/connections";
/// The route template of one connection, as the request log names it.
pub const CONNECTION_ROUTE: &str = "/data/foundation/flowservice/connections/{id}";
/// The IMS token path.
pub const TOKEN_PATH: &str = IMS_TOKEN_ROUTE;

/// A running emulator, an HTTP client and a valid token of the demo client.
pub struct Harness {
    /// The emulator, stopped when the harness is dropped.
    pub emulator: RunningEmulator,
    /// A client for direct requests.
    pub http: reqwest::Client,
    /// The emulator's base URL.
    pub base: String,
    /// A valid token of the demo client.
    pub token: String,
    /// The emulator's admin API.
    pub admin: EmulatorAdmin,
}

/// An HTTP client whose timeout turns a hang into a failure.
pub fn http_client() -> reqwest::Client {
    // Generous: no test should come near it, it only turns a hang into a failure.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl Harness {
    /// An emulator with the default configuration.
    pub async fn start() -> Self {
        Self::with(EmulatorConfig::default()).await
    }

    /// An emulator with `config`.
    pub async fn with(config: EmulatorConfig) -> Self {
        let emulator = start(config).await.expect("emulator starts");
        let base = emulator.url();
        let http = http_client();
        let token = fetch_token(&http, &base, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
        Self {
            emulator,
            http,
            admin: EmulatorAdmin::new(&base),
            base,
            token,
        }
    }

    /// The operator's Flow Service and IMS client, pointed at this emulator, without a rate limit
    /// (the reconciler tests count calls, not time).
    pub fn flow_client(&self) -> aep_flow::FlowClient {
        let url: reqwest::Url = self.base.parse().expect("the emulator's URL");
        aep_flow::FlowClient::new(aep_flow::FlowClientConfig {
            platform_url: url.clone(),
            ims_url: url,
            qps: 0.0,
            ..aep_flow::FlowClientConfig::default()
        })
        .expect("a client for the emulator")
    }

    /// The full URL of `path` on the emulator.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A Flow Service request in sandbox `prod` with every required header.
    pub fn flow(&self, method: Method, path: &str) -> RequestBuilder {
        self.flow_in("prod", method, path)
    }

    /// A Flow Service request in `sandbox` with every required header.
    pub fn flow_in(&self, sandbox: &str, method: Method, path: &str) -> RequestBuilder {
        flow_request(&self.http, method, &self.url(path), &self.token, sandbox)
    }

    /// Create a streaming connection in `prod`; returns `(id, etag)`.
    pub async fn create(&self, name: &str) -> (String, String) {
        self.create_in("prod", streaming_connection(name)).await
    }

    /// Create a connection from `body` in `sandbox`; returns `(id, etag)`.
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

    /// A raw admin request, for the emulator's own tests of the admin API's wire format (everything else
    /// uses [`EmulatorAdmin`]).
    pub async fn admin_request(&self, method: Method, path: &str) -> Response {
        self.http
            .request(method, self.url(path))
            .send()
            .await
            .unwrap()
    }

    /// The raw JSON of an admin route, for the emulator's own tests of the admin API's wire format.
    pub async fn admin_wire(&self, path: &str) -> Value {
        let response = self.admin_request(Method::GET, path).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

/// A request to `url` with every header Flow Service requires, as the demo client in `sandbox`.
pub fn flow_request(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: &str,
    sandbox: &str,
) -> RequestBuilder {
    http.request(method, url)
        .bearer_auth(token)
        .header("x-api-key", DEMO_CLIENT_ID)
        .header("x-gw-ims-org-id", DEMO_ORG_ID)
        .header("x-sandbox-name", sandbox)
}

/// A token from the emulator's IMS for `client_id`.
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
