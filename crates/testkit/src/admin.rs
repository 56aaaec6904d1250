//! The one client of the emulator's admin API (`/_emulator/…`): state, the request log, fault rules,
//! reset and inlets, each answer deserialized into a typed struct. Tests, the end-to-end harness and the
//! benchmark all go through it; only the emulator's own tests of the admin API's wire format read raw JSON.
//!
//! Fault rules are the emulator's own [`FaultRule`]; [`rule`] and [`rules`] turn the documented JSON form
//! (docs/emulator.md) into them, so a misspelt field fails in the test, before anything is sent.

use std::collections::BTreeMap;
use std::time::Duration;

pub use aep_emulator::FaultRule;
use aep_emulator::{
    CONNECTION_STATE_ROUTE, FAULTS_ROUTE, INLET_ROUTE, REQUESTS_ROUTE, RESET_ROUTE, STATE_ROUTE,
};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// The IMS token route, as the request log names it.
pub const IMS_TOKEN_ROUTE: &str = "/ims/token/v3";

/// A typed client of one emulator's admin API. Every call panics with the emulator's answer when the
/// emulator does not answer as documented: a test kit has no use for a recoverable error here.
#[derive(Debug, Clone)]
pub struct EmulatorAdmin {
    http: reqwest::Client,
    base: String,
}

impl EmulatorAdmin {
    /// A client of the emulator at `base_url` (`http://127.0.0.1:<port>`).
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            // Generous: no call should come near it, it only turns a hang into a failure.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            base: base_url.into().trim_end_matches('/').to_owned(),
        }
    }

    /// Every connection (as `GET /connections/{id}` shows it, with its inlet), inlet counts, live tokens.
    pub async fn state(&self) -> EmulatorState {
        self.get(STATE_ROUTE).await
    }

    /// The connections the emulator holds, in creation order.
    pub async fn connections(&self) -> Vec<EmulatorConnection> {
        self.state().await.connections
    }

    /// The Catalog dataset with this id (of any org and sandbox), with how many records reached it.
    pub async fn dataset(&self, id: &str) -> Option<EmulatorDataset> {
        self.state()
            .await
            .datasets
            .into_iter()
            .find(|dataset| dataset.id == id)
    }

    /// The request log: counts by method, route and status, and the most recent requests in order.
    pub async fn requests(&self) -> RequestLog {
        self.get(REQUESTS_ROUTE).await
    }

    /// Forgets the request log (counts included).
    pub async fn clear_requests(&self) {
        self.expect(Method::DELETE, REQUESTS_ROUTE, None, StatusCode::NO_CONTENT)
            .await;
    }

    /// Adds one fault rule; returns it as stored (with its id).
    pub async fn add_fault(&self, rule: FaultRule) -> StoredFault {
        self.add_faults(vec![rule]).await.remove(0)
    }

    /// Adds rules, all or none, in this order; returns them as stored.
    pub async fn add_faults(&self, rules: Vec<FaultRule>) -> Vec<StoredFault> {
        let body = json!({ "rules": rules });
        let response = self
            .expect(Method::POST, FAULTS_ROUTE, Some(body), StatusCode::CREATED)
            .await;
        decode::<FaultList>(response).await.rules
    }

    /// The rules in force, with how often each fired.
    pub async fn faults(&self) -> Vec<StoredFault> {
        self.get::<FaultList>(FAULTS_ROUTE).await.rules
    }

    /// Removes every fault rule.
    pub async fn clear_faults(&self) {
        self.expect(Method::DELETE, FAULTS_ROUTE, None, StatusCode::NO_CONTENT)
            .await;
    }

    /// Forgets connections, deliveries, faults and the request log (issued tokens stay valid).
    pub async fn reset(&self) {
        self.expect(Method::POST, RESET_ROUTE, None, StatusCode::NO_CONTENT)
            .await;
    }

    /// Puts a connection (of any org or sandbox) in `state`, one of [`aep_emulator::CONNECTION_STATES`]; outside
    /// `enabled`, `disabled` and `initializing` its PATCH and DELETE answer `FLOW-1416-400`.
    pub async fn set_connection_state(&self, id: &str, state: &str) {
        self.expect(
            Method::PUT,
            &CONNECTION_STATE_ROUTE.replace("{id}", id),
            Some(json!({ "state": state })),
            StatusCode::NO_CONTENT,
        )
        .await;
    }

    /// What one inlet received: counts and the most recent accepted messages.
    pub async fn inlet(&self, inlet_id: &str) -> Inlet {
        self.get(&INLET_ROUTE.replace("{inletId}", inlet_id)).await
    }

    async fn get<T: DeserializeOwned>(&self, route: &str) -> T {
        decode(self.expect(Method::GET, route, None, StatusCode::OK).await).await
    }

    async fn expect(
        &self,
        method: Method,
        route: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Response {
        let response = self
            .send(method.clone(), route, body)
            .await
            .unwrap_or_else(|error| panic!("{method} {route} on the emulator: {error}"));
        if response.status() != status {
            let actual = response.status();
            let text = response.text().await.unwrap_or_default();
            panic!("{method} {route} on the emulator answered {actual}, not {status}: {text}");
        }
        response
    }

    async fn send(
        &self,
        method: Method,
        route: &str,
        body: Option<Value>,
    ) -> reqwest::Result<Response> {
        let request = self.http.request(method, format!("{}{route}", self.base));
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
        .send()
        .await
    }
}

async fn decode<T: DeserializeOwned>(response: Response) -> T {
    let url = response.url().clone();
    let text = response.text().await.expect("the emulator's answer");
    serde_json::from_str(&text).unwrap_or_else(|error| {
        panic!("{url} answered what the test kit cannot read ({error}): {text}")
    })
}

/// One fault rule from its documented JSON form, e.g. `rule(json!({"method": "POST", "status": 503}))`.
pub fn rule(rule: Value) -> FaultRule {
    serde_json::from_value(rule.clone())
        .unwrap_or_else(|error| panic!("not a fault rule ({error}): {rule}"))
}

/// Fault rules from any form the admin API takes: one rule, an array of rules, or `{"rules": [...]}`.
pub fn rules(rules: Value) -> Vec<FaultRule> {
    let list = match rules {
        Value::Object(mut object) if object.contains_key("rules") => {
            object.remove("rules").unwrap_or_default()
        }
        Value::Object(object) => Value::Array(vec![Value::Object(object)]),
        other => other,
    };
    serde_json::from_value(list.clone())
        .unwrap_or_else(|error| panic!("not a list of fault rules ({error}): {list}"))
}

#[derive(Deserialize)]
struct FaultList {
    rules: Vec<StoredFault>,
}

/// A fault rule as the emulator stores it.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredFault {
    /// The rule, with its id and the fields the emulator derived (action, method case).
    #[serde(flatten)]
    pub rule: FaultRule,
    /// How often it fired.
    pub fired: u64,
    /// How often it may still fire, for a rule with `times`.
    #[serde(default)]
    pub remaining: Option<u64>,
}

/// `GET /_emulator/state`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmulatorState {
    /// Every connection, in creation order.
    pub connections: Vec<EmulatorConnection>,
    /// Delivery counts by inlet id (inlets of deleted connections included).
    pub inlets: BTreeMap<String, InletCounts>,
    /// Tokens issued and not yet expired.
    pub active_tokens: u64,
    /// Every Catalog dataset (the seeded ones), in creation order.
    #[serde(default)]
    pub datasets: Vec<EmulatorDataset>,
}

/// A dataset as the admin state shows it: the Catalog object plus where it lives and what reached it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmulatorDataset {
    /// The Catalog id.
    pub id: String,
    /// The org it belongs to.
    pub ims_org_id: String,
    /// The sandbox it lives in.
    pub sandbox_name: String,
    /// Messages the inlet routed into it through an enabled flow.
    pub records: u64,
}

/// A connection as the admin state shows it: as `GET /connections/{id}` would, always with its inlet.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmulatorConnection {
    /// The Flow Service id.
    pub id: String,
    /// The connection's name (the operator's `namespace/name` by default).
    pub name: String,
    /// The description, when it has one.
    #[serde(default)]
    pub description: Option<String>,
    /// `enabled` or `disabled`.
    pub state: String,
    /// With its inner quotes, as Flow Service sends it.
    pub etag: String,
    /// The sandbox it lives in.
    pub sandbox_name: String,
    /// The auth block, whose params carry the inlet.
    pub auth: ConnectionAuth,
    /// Whether the inlet has been provisioned yet.
    pub inlet_ready: bool,
}

impl EmulatorConnection {
    /// The inlet id (shown in the admin state also before the inlet is provisioned).
    pub fn inlet_id(&self) -> &str {
        &self.auth.params.inlet_id
    }
}

/// The `auth` block of a connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionAuth {
    /// `Streaming Connection`.
    pub spec_name: String,
    /// The params: the inlet and what the client sent.
    pub params: ConnectionParams,
}

/// The `auth.params` of a connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionParams {
    /// The inlet id, 64 hex digits.
    pub inlet_id: String,
    /// The inlet's URL.
    pub inlet_url: String,
    /// Everything else the client sent (`dataType`, `authenticationRequired`, `sourceId`).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// What one inlet has received.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InletCounts {
    /// The connection the inlet belongs (or belonged) to.
    pub connection_id: String,
    /// Messages accepted.
    pub messages: u64,
    /// Requests answered 200/207.
    pub requests: u64,
    /// Batch entries refused with a per-message 400.
    pub rejected: u64,
    /// Epoch milliseconds of the last accepted message.
    pub last_received_at: Option<i64>,
}

/// `GET /_emulator/inlets/{inletId}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inlet {
    /// The inlet id.
    pub inlet_id: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: InletCounts,
    /// The most recent accepted messages, oldest first.
    pub recent_messages: Vec<Value>,
}

/// `GET /_emulator/requests`.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestLog {
    /// Requests counted by method, route and status since the last clear.
    pub counts: Vec<RequestCount>,
    /// The most recent requests, in the order they completed.
    pub log: Vec<LoggedRequest>,
    /// Requests pushed out of `log` by its bound (still counted).
    pub evicted: u64,
}

impl RequestLog {
    /// How many requests `matches` selects, from the counts.
    pub fn count(&self, matches: impl Fn(&RequestCount) -> bool) -> u64 {
        self.counts
            .iter()
            .filter(|c| matches(c))
            .map(|c| c.count)
            .sum()
    }

    /// How many requests were served for this method and route, optionally with one status.
    pub fn served(&self, method: &str, route: &str, status: Option<u16>) -> u64 {
        self.count(|c| {
            c.method == method && c.route == route && status.is_none_or(|s| c.status == s)
        })
    }

    /// Every request counted, of any route.
    pub fn total(&self) -> u64 {
        self.count(|_| true)
    }
}

/// Requests of one method, route and status.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RequestCount {
    /// `GET`, `POST`, …
    pub method: String,
    /// The route template, e.g. `/data/foundation/flowservice/connections/{id}`.
    pub route: String,
    /// The status answered; 0 for a dropped connection.
    pub status: u16,
    /// How many.
    pub count: u64,
}

/// One served request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    /// Its place in the order of completion.
    pub seq: u64,
    /// `GET`, `POST`, …
    pub method: String,
    /// The route template.
    pub route: String,
    /// The actual path, without the query.
    pub path: String,
    /// The status answered; 0 for a dropped connection.
    pub status: u16,
    /// The id of the fault rule that fired, if any.
    #[serde(default)]
    pub fault: Option<String>,
}

impl LoggedRequest {
    /// `METHOD route status`, the form the reconciler tests compare call sequences in.
    pub fn summary(&self) -> String {
        format!("{} {} {}", self.method, self.route, self.status)
    }
}
