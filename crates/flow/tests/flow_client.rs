//! The Flow Service client against `aep-emulator`, started in-process on a random port: every operation,
//! every error class (injected with the emulator's fault API), token caching, expiry, refresh and re-mint,
//! `Retry-After`, pagination, and that no secret or token ever shows in an error or `Debug` output.

#[path = "support/recording_observer.rs"]
mod recording_observer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aep_emulator::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_ORG_ID, EmulatorConfig, RunningEmulator, start,
};
use aep_flow::{
    ConnectionUpdate, Credentials, DataType, FlowClient, FlowClientConfig, FlowError,
    FlowErrorKind, NewConnection, Operation, STREAMING_CONNECTION_SPEC_ID, Scope,
};
use aep_testkit::admin::{EmulatorAdmin, rule, rules};
use futures::StreamExt;
use serde_json::json;

use recording_observer::RecordingObserver;

const TOKEN_ROUTE: &str = "/ims/token/v3";
const CONNECTIONS_ROUTE: &str = "/data/foundation/flowservice/connections";
const CONNECTION_ROUTE: &str = "/data/foundation/flowservice/connections/{id}";

/// An emulator, a client pointed at it, and the demo credentials.
struct Env {
    emulator: RunningEmulator,
    client: FlowClient,
    credentials: Credentials,
    observer: Arc<RecordingObserver>,
    admin: EmulatorAdmin,
}

async fn env() -> Env {
    env_with(EmulatorConfig::default(), |_| {}).await
}

async fn env_with(emulator: EmulatorConfig, tweak: impl FnOnce(&mut FlowClientConfig)) -> Env {
    let emulator = start(emulator).await.expect("the emulator starts");
    let observer = Arc::new(RecordingObserver::default());
    let mut config = FlowClientConfig {
        platform_url: emulator.url().parse().unwrap(),
        ims_url: emulator.url().parse().unwrap(),
        // Unlimited, so the tests are not slowed down; the limiter has its own test.
        qps: 0.0,
        max_concurrency: 16,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        extra_ca_pem: None,
        observer: Some(observer.clone()),
    };
    tweak(&mut config);
    Env {
        client: FlowClient::new(config).expect("the client builds"),
        credentials: demo_credentials("secret-uid/1"),
        observer,
        admin: EmulatorAdmin::new(emulator.url()),
        emulator,
    }
}

fn secret_data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.as_bytes().to_vec()))
        .collect()
}

fn demo_credentials(cache_key: &str) -> Credentials {
    Credentials::from_secret_data(
        &secret_data(&[
            ("clientId", DEMO_CLIENT_ID),
            ("clientSecret", DEMO_CLIENT_SECRET),
            ("orgId", DEMO_ORG_ID),
        ]),
        cache_key,
    )
    .unwrap()
}

fn new_connection(name: &str) -> NewConnection {
    NewConnection {
        name: name.to_owned(),
        description: Some("Clickstream from the storefront".to_owned()),
        source_id: None,
        data_type: DataType::Xdm,
        authentication_required: true,
    }
}

impl Env {
    fn scope(&self) -> Scope<'_> {
        self.scope_in("prod")
    }

    fn scope_in<'a>(&'a self, sandbox: &'a str) -> Scope<'a> {
        Scope {
            credentials: &self.credentials,
            sandbox,
        }
    }

    /// How many requests the emulator served for this method and route, optionally with one status.
    async fn served(&self, method: &str, route: &str, status: Option<u16>) -> u64 {
        self.admin.requests().await.served(method, route, status)
    }

    async fn tokens_minted(&self) -> u64 {
        self.served("POST", TOKEN_ROUTE, None).await
    }

    /// An access token straight from the emulator's IMS, for the static-token mode.
    async fn mint_token_by_hand(&self) -> String {
        aep_testkit::emulator::fetch_token(
            &reqwest::Client::new(),
            &self.emulator.url(),
            DEMO_CLIENT_ID,
            DEMO_CLIENT_SECRET,
        )
        .await
    }
}

/// The call failed with an error of this kind.
fn assert_reason(
    result: Result<impl std::fmt::Debug, FlowError>,
    kind: FlowErrorKind,
) -> FlowError {
    let error = result.expect_err("the call should fail");
    assert_eq!(error.kind(), kind, "{error}");
    error
}

// ----- operations ---------------------------------------------------------------------------------

#[tokio::test]
async fn create_get_update_and_delete_a_connection() {
    let env = env().await;
    let scope = env.scope();

    let created = env
        .client
        .create_connection(&scope, &new_connection("Web events"))
        .await
        .unwrap();
    assert!(!created.id.is_empty());
    assert!(
        created.etag.starts_with('"'),
        "etags keep their quotes: {}",
        created.etag
    );

    let connection = env
        .client
        .get_connection(&scope, &created.id)
        .await
        .unwrap();
    assert_eq!(connection.id, created.id);
    assert_eq!(connection.name, "Web events");
    assert_eq!(
        connection.description.as_deref(),
        Some("Clickstream from the storefront")
    );
    assert_eq!(connection.etag, created.etag);
    assert_eq!(connection.state, "enabled");
    assert_eq!(connection.connection_spec_id, STREAMING_CONNECTION_SPEC_ID);
    assert_eq!(connection.sandbox_name.as_deref(), Some("prod"));
    assert_eq!(connection.source_id.as_deref(), Some("Web events"));
    assert_eq!(connection.data_type.as_deref(), Some("xdm"));
    assert!(connection.authentication_required);
    assert!(connection.created_at.is_some() && connection.updated_at.is_some());
    let inlet_id = connection
        .inlet_id
        .clone()
        .expect("the inlet is provisioned");
    assert_eq!(inlet_id.len(), 64);
    assert!(inlet_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(
        connection
            .inlet_url
            .as_deref()
            .unwrap()
            .ends_with(&format!("/collection/{inlet_id}"))
    );

    let update = ConnectionUpdate {
        name: Some("Web events v2".into()),
        description: Some(Some("Renamed".into())),
    };
    let updated = env
        .client
        .update_connection(&scope, &created.id, &created.etag, &update)
        .await
        .unwrap();
    assert_eq!(updated.id, created.id);
    assert_ne!(updated.etag, created.etag, "every update changes the etag");
    let connection = env
        .client
        .get_connection(&scope, &created.id)
        .await
        .unwrap();
    assert_eq!(connection.name, "Web events v2");
    assert_eq!(connection.description.as_deref(), Some("Renamed"));
    assert_eq!(connection.etag, updated.etag);

    let removal = ConnectionUpdate {
        name: None,
        description: Some(None),
    };
    let removed = env
        .client
        .update_connection(&scope, &created.id, &updated.etag, &removal)
        .await
        .unwrap();
    let connection = env
        .client
        .get_connection(&scope, &created.id)
        .await
        .unwrap();
    assert_eq!(connection.description, None);
    assert_eq!(connection.etag, removed.etag);

    env.client
        .delete_connection(&scope, &created.id)
        .await
        .unwrap();
    assert_reason(
        env.client.get_connection(&scope, &created.id).await,
        FlowErrorKind::NotFound,
    );
    // Deleting again is success: the connection is gone either way.
    env.client
        .delete_connection(&scope, &created.id)
        .await
        .unwrap();
    assert_eq!(env.served("DELETE", CONNECTION_ROUTE, Some(404)).await, 1);
}

#[tokio::test]
async fn raw_connections_without_description_or_authentication() {
    let env = env().await;
    let scope = env.scope();
    let request = NewConnection {
        name: "Raw feed".into(),
        description: None,
        source_id: Some("warehouse".into()),
        data_type: DataType::Raw,
        authentication_required: false,
    };
    let created = env
        .client
        .create_connection(&scope, &request)
        .await
        .unwrap();
    let connection = env
        .client
        .get_connection(&scope, &created.id)
        .await
        .unwrap();
    assert_eq!(connection.description, None);
    assert_eq!(connection.source_id.as_deref(), Some("warehouse"));
    assert_eq!(connection.data_type.as_deref(), Some("raw"));
    assert!(!connection.authentication_required);
}

#[tokio::test]
async fn the_inlet_is_absent_until_provisioned() {
    let emulator = EmulatorConfig {
        inlet_delay: Duration::from_secs(60),
        ..EmulatorConfig::default()
    };
    let env = env_with(emulator, |_| {}).await;
    let created = env
        .client
        .create_connection(&env.scope(), &new_connection("Provisioning"))
        .await
        .unwrap();
    let connection = env
        .client
        .get_connection(&env.scope(), &created.id)
        .await
        .unwrap();
    assert_eq!(connection.inlet_id, None);
    assert_eq!(connection.inlet_url, None);
    assert_eq!(connection.name, "Provisioning");
}

#[tokio::test]
async fn the_sandbox_is_chosen_per_call() {
    let env = env().await;
    let created = env
        .client
        .create_connection(&env.scope_in("dev"), &new_connection("Dev events"))
        .await
        .unwrap();
    let connection = env
        .client
        .get_connection(&env.scope_in("dev"), &created.id)
        .await
        .unwrap();
    assert_eq!(connection.sandbox_name.as_deref(), Some("dev"));
    assert_reason(
        env.client
            .get_connection(&env.scope_in("prod"), &created.id)
            .await,
        FlowErrorKind::NotFound,
    );
    let in_prod = env
        .client
        .find_connections_by_name(&env.scope_in("prod"), "Dev events")
        .await
        .unwrap();
    assert!(in_prod.is_empty());
}

#[tokio::test]
async fn an_unknown_sandbox_is_an_invalid_spec_not_a_missing_connection() {
    let env = env().await;
    let error = assert_reason(
        env.client
            .get_connection(&env.scope_in("no-such-sandbox"), "some-id")
            .await,
        FlowErrorKind::Invalid,
    );
    assert!(error.is_permanent());
    assert_eq!(error.error_code(), Some("FLOW-2100-404"));
}

#[tokio::test]
async fn a_missing_connection_is_not_found_with_code_and_request_id() {
    let env = env().await;
    let error = assert_reason(
        env.client
            .get_connection(&env.scope(), "4f1c1d9e-0000-4000-8000-000000000000")
            .await,
        FlowErrorKind::NotFound,
    );
    assert_eq!(error.status(), Some(404));
    assert_eq!(error.error_code(), Some("FLOW-1101-404"));
    assert!(
        error.request_id().is_some_and(|id| !id.is_empty()),
        "{error:?}"
    );
    assert!(!error.is_permanent());
    // Not retried: a 404 is an answer.
    assert_eq!(env.served("GET", CONNECTION_ROUTE, None).await, 1);
    let text = error.to_string();
    assert!(
        text.contains("get connection") && text.contains("404"),
        "{text}"
    );

    let update = ConnectionUpdate {
        name: Some("x".into()),
        description: None,
    };
    assert_reason(
        env.client
            .update_connection(
                &env.scope(),
                "4f1c1d9e-0000-4000-8000-000000000000",
                "\"e\"",
                &update,
            )
            .await,
        FlowErrorKind::NotFound,
    );
}

#[tokio::test]
async fn ids_are_path_segments_not_paths() {
    let env = env().await;
    assert_reason(
        env.client.get_connection(&env.scope(), " ").await,
        FlowErrorKind::Invalid,
    );
    assert_reason(
        env.client.delete_connection(&env.scope(), "").await,
        FlowErrorKind::Invalid,
    );
    assert_reason(
        env.client
            .get_connection(&env.scope(), "../connections")
            .await,
        FlowErrorKind::NotFound,
    );
}

#[tokio::test]
async fn an_empty_update_is_refused_without_a_request() {
    let env = env().await;
    assert_reason(
        env.client
            .update_connection(&env.scope(), "id", "\"e\"", &ConnectionUpdate::default())
            .await,
        FlowErrorKind::Invalid,
    );
    assert_eq!(env.tokens_minted().await, 0);
}

#[tokio::test]
async fn a_stale_etag_is_a_precondition_failure() {
    let env = env().await;
    let scope = env.scope();
    let created = env
        .client
        .create_connection(&scope, &new_connection("Etags"))
        .await
        .unwrap();
    let rename = |name: &str| ConnectionUpdate {
        name: Some(name.to_owned()),
        description: None,
    };
    let first = env
        .client
        .update_connection(&scope, &created.id, &created.etag, &rename("one"))
        .await
        .unwrap();
    let error = assert_reason(
        env.client
            .update_connection(&scope, &created.id, &created.etag, &rename("two"))
            .await,
        FlowErrorKind::PreconditionFailed,
    );
    assert_eq!(error.status(), Some(412));
    assert_eq!(error.error_code(), Some("FLOW-1404-412"));
    assert!(!error.is_permanent() && !error.maybe_committed());
    // The documented cure: read again, retry with the fresh etag.
    let fresh = env
        .client
        .get_connection(&scope, &created.id)
        .await
        .unwrap();
    assert_eq!(fresh.etag, first.etag);
    env.client
        .update_connection(&scope, &created.id, &fresh.etag, &rename("two"))
        .await
        .unwrap();
}

// ----- lookup by name and pagination --------------------------------------------------------------

#[tokio::test]
async fn lookup_by_name_follows_every_page_of_2500_connections() {
    let env = env().await;
    let scope = env.scope();
    let bulk = new_connection("Bulk");
    let created: Vec<String> = futures::stream::iter(0..2500)
        .map(|_| env.client.create_connection(&scope, &bulk))
        .buffer_unordered(16)
        .map(|result| result.unwrap().id)
        .collect()
        .await;
    for name in ["Bulk 2", "bulk", "Other"] {
        env.client
            .create_connection(&scope, &new_connection(name))
            .await
            .unwrap();
    }

    let found = env
        .client
        .find_connections_by_name(&scope, "Bulk")
        .await
        .unwrap();
    assert_eq!(found.len(), 2500);
    let mut found_ids: Vec<String> = found.iter().map(|c| c.id.clone()).collect();
    found_ids.sort();
    found_ids.dedup();
    let mut created_ids = created;
    created_ids.sort();
    assert_eq!(found_ids, created_ids, "every page, no item twice");
    assert!(found.iter().all(|c| c.name == "Bulk"));
    // A modest page (100), not the 1000 Adobe does not document as a maximum: 25 pages.
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, Some(200)).await, 25);
}

#[tokio::test]
async fn a_refused_page_size_is_retried_smaller_once_and_remembered() {
    // An emulator whose maximum page is 50: `limit=100` is refused with the catalogue's
    // `FLOW-1453-400` ("Invalid query value … provided in query param").
    let env = env_with(
        EmulatorConfig {
            max_page_size: 50,
            ..EmulatorConfig::default()
        },
        |_| {},
    )
    .await;
    let scope = env.scope();
    let bulk = new_connection("Paged");
    futures::stream::iter(0..250)
        .map(|_| env.client.create_connection(&scope, &bulk))
        .buffer_unordered(16)
        .for_each(|result| async move {
            result.unwrap();
        })
        .await;

    let found = env
        .client
        .find_connections_by_name(&scope, "Paged")
        .await
        .unwrap();
    assert_eq!(found.len(), 250);
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, Some(400)).await, 1);
    // Retried at 10 a page: 25 pages.
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, Some(200)).await, 25);

    // Remembered: the next lookup (and a clone's) asks for 10 at once.
    env.admin.clear_requests().await;
    let clone = env.client.clone();
    assert_eq!(
        clone
            .find_connections_by_name(&scope, "Paged")
            .await
            .unwrap()
            .len(),
        250
    );
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, Some(400)).await, 0);
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, Some(200)).await, 25);
}

#[tokio::test]
async fn a_page_size_refused_twice_fails_after_one_retry() {
    let env = env().await;
    let scope = env.scope();
    env.admin
        .add_fault(rule(json!({
            "method": "GET", "route": CONNECTIONS_ROUTE, "status": 400,
            "body": {"type": "https://ns.adobe.com/aep/errors/FLOW-1453-400", "status": 400}
        })))
        .await;
    let error = assert_reason(
        env.client.find_connections_by_name(&scope, "Any").await,
        FlowErrorKind::Invalid,
    );
    assert!(error.is_invalid_query_value());
    // The first page at 100, once more at 10, then no more.
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, Some(400)).await, 2);
}

#[tokio::test]
async fn lookup_by_name_matches_exactly_even_with_commas_and_symbols() {
    let env = env().await;
    let scope = env.scope();
    let tricky = "Web events, α & β = 1 + 2%";
    for name in [tricky, tricky, "Web events", "web events, α & β = 1 + 2%"] {
        env.client
            .create_connection(&scope, &new_connection(name))
            .await
            .unwrap();
    }
    let found = env
        .client
        .find_connections_by_name(&scope, tricky)
        .await
        .unwrap();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().all(|c| c.name == tricky));
    assert!(
        env.client
            .find_connections_by_name(&scope, "Nobody")
            .await
            .unwrap()
            .is_empty()
    );
}

// ----- tokens -------------------------------------------------------------------------------------

#[tokio::test]
async fn a_token_is_reused_rather_than_minted_per_call() {
    let env = env().await;
    for _ in 0..10 {
        assert_reason(
            env.client.get_connection(&env.scope(), "missing").await,
            FlowErrorKind::NotFound,
        );
    }
    assert_eq!(env.tokens_minted().await, 1);
    assert_eq!(env.observer.count(Operation::Token, "2xx"), 1);
}

#[tokio::test]
async fn a_hundred_concurrent_callers_cause_one_token_request() {
    let env = env_with(EmulatorConfig::default(), |config| {
        config.max_concurrency = 100
    })
    .await;
    let scope = env.scope();
    let results = futures::future::join_all(
        (0..100).map(|_| env.client.find_connections_by_name(&scope, "nothing")),
    )
    .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(env.tokens_minted().await, 1);
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, Some(200)).await, 100);
}

#[tokio::test]
async fn concurrent_callers_share_one_failed_token_request() {
    let env = env().await;
    let wrong = Credentials::from_secret_data(
        &secret_data(&[
            ("clientId", DEMO_CLIENT_ID),
            ("clientSecret", "not-the-secret"),
            ("orgId", DEMO_ORG_ID),
        ]),
        "wrong/1",
    )
    .unwrap();
    let scope = Scope {
        credentials: &wrong,
        sandbox: "prod",
    };
    let results =
        futures::future::join_all((0..50).map(|_| env.client.get_connection(&scope, "x"))).await;
    for result in results {
        assert_reason(result, FlowErrorKind::Unauthorized);
    }
    assert_eq!(env.tokens_minted().await, 1);
}

#[tokio::test]
async fn an_expired_token_is_replaced_before_it_is_rejected() {
    let emulator = EmulatorConfig {
        token_ttl: Duration::from_secs(2),
        ..EmulatorConfig::default()
    };
    let env = env_with(emulator, |_| {}).await;
    let scope = env.scope();
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(4500) {
        env.client
            .find_connections_by_name(&scope, "n")
            .await
            .unwrap();
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let minted = env.tokens_minted().await;
    // Refreshed a tenth of the lifetime before each 2 s expiry (about every 1.8 s), never per call.
    assert!(
        (3..=4).contains(&minted),
        "{minted} tokens for {calls} calls"
    );
    assert_eq!(
        env.served("GET", CONNECTIONS_ROUTE, Some(401)).await,
        0,
        "no call ever went out with an expired token"
    );
}

#[tokio::test]
async fn a_token_is_minted_again_after_its_lifetime() {
    let emulator = EmulatorConfig {
        token_ttl: Duration::from_secs(2),
        ..EmulatorConfig::default()
    };
    let env = env_with(emulator, |_| {}).await;
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    assert_eq!(env.tokens_minted().await, 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    assert_eq!(env.tokens_minted().await, 2);
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, Some(401)).await, 0);
}

#[tokio::test]
async fn a_401_drops_the_token_and_mints_once() {
    let env = env().await;
    let scope = env.scope();
    let created = env
        .client
        .create_connection(&scope, &new_connection("Remint"))
        .await
        .unwrap();
    assert_eq!(env.tokens_minted().await, 1);

    // The token is revoked early once: one new token, the read succeeds.
    env.admin.add_fault(rule(json!({"method": "GET", "route": CONNECTION_ROUTE, "status": 401,
                     "body": {"error_code": "401013", "message": "Oauth token is not valid"}, "times": 1})))
        .await;
    env.client
        .get_connection(&scope, &created.id)
        .await
        .unwrap();
    assert_eq!(env.tokens_minted().await, 2);
    assert_eq!(env.served("GET", CONNECTION_ROUTE, Some(401)).await, 1);

    // A write is resent after a 401 too: the 401 proves it was not processed.
    env.admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS_ROUTE, "status": 401, "times": 1}),
        ))
        .await;
    env.client
        .create_connection(&scope, &new_connection("Remint 2"))
        .await
        .unwrap();
    assert_eq!(env.tokens_minted().await, 3);
    assert_eq!(env.served("POST", CONNECTIONS_ROUTE, Some(201)).await, 2);

    // Still 401 with a brand-new token: the credentials are wrong; only one re-mint per call.
    env.admin
        .add_fault(rule(
            json!({"method": "GET", "route": CONNECTION_ROUTE, "status": 401,
                     "body": {"error_code": "401013", "message": "Oauth token is not valid"}}),
        ))
        .await;
    let error = assert_reason(
        env.client.get_connection(&scope, &created.id).await,
        FlowErrorKind::Unauthorized,
    );
    assert!(error.is_permanent());
    assert_eq!(error.error_code(), Some("401013"));
    assert_eq!(env.tokens_minted().await, 4);
    assert_eq!(env.served("GET", CONNECTION_ROUTE, Some(401)).await, 3);
}

#[tokio::test]
async fn forgetting_a_token_or_changing_the_secret_mints_a_new_one() {
    let env = env().await;
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    env.client.forget_token(&env.credentials);
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    assert_eq!(env.tokens_minted().await, 2);

    let next_version = demo_credentials("secret-uid/2");
    let scope = Scope {
        credentials: &next_version,
        sandbox: "prod",
    };
    env.client
        .find_connections_by_name(&scope, "n")
        .await
        .unwrap();
    assert_eq!(env.tokens_minted().await, 3);
}

#[tokio::test]
async fn a_static_access_token_is_used_as_is() {
    let env = env().await;
    let token = env.mint_token_by_hand().await;
    let credentials = Credentials::from_secret_data(
        &secret_data(&[
            ("clientId", DEMO_CLIENT_ID),
            ("orgId", DEMO_ORG_ID),
            ("accessToken", &token),
        ]),
        "static/1",
    )
    .unwrap();
    let scope = Scope {
        credentials: &credentials,
        sandbox: "prod",
    };
    let created = env
        .client
        .create_connection(&scope, &new_connection("Static"))
        .await
        .unwrap();
    env.client
        .get_connection(&scope, &created.id)
        .await
        .unwrap();
    assert_eq!(env.tokens_minted().await, 1, "only the hand-minted token");

    // A static token cannot be re-minted: a 401 is final at once.
    let revoked = Credentials::from_secret_data(
        &secret_data(&[
            ("clientId", DEMO_CLIENT_ID),
            ("orgId", DEMO_ORG_ID),
            ("accessToken", "static-token-that-IMS-never-issued"),
        ]),
        "static/2",
    )
    .unwrap();
    let scope = Scope {
        credentials: &revoked,
        sandbox: "prod",
    };
    let error = assert_reason(
        env.client.get_connection(&scope, &created.id).await,
        FlowErrorKind::Unauthorized,
    );
    assert!(
        !error
            .to_string()
            .contains("static-token-that-IMS-never-issued")
    );
    assert_eq!(env.served("GET", CONNECTION_ROUTE, Some(401)).await, 1);
    assert_eq!(env.tokens_minted().await, 1);
}

// ----- error classes ------------------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_client_secret_is_unauthorized_and_permanent() {
    let env = env().await;
    let wrong = Credentials::from_secret_data(
        &secret_data(&[
            ("clientId", DEMO_CLIENT_ID),
            ("clientSecret", "wrong-secret-value"),
            ("orgId", DEMO_ORG_ID),
        ]),
        "wrong/1",
    )
    .unwrap();
    let scope = Scope {
        credentials: &wrong,
        sandbox: "prod",
    };
    let error = assert_reason(
        env.client
            .create_connection(&scope, &new_connection("x"))
            .await,
        FlowErrorKind::Unauthorized,
    );
    assert!(error.is_permanent() && !error.maybe_committed());
    assert_eq!(error.operation(), Some(Operation::Token));
    assert_eq!(error.error_code(), Some("invalid_client"));
    assert_eq!(env.observer.count(Operation::Token, "4xx"), 1);
    assert_eq!(env.served("POST", CONNECTIONS_ROUTE, None).await, 0);

    let unknown = Credentials::from_secret_data(
        &secret_data(&[
            ("clientId", "nobody"),
            ("clientSecret", "x-secret"),
            ("orgId", DEMO_ORG_ID),
        ]),
        "unknown/1",
    )
    .unwrap();
    let scope = Scope {
        credentials: &unknown,
        sandbox: "prod",
    };
    assert_reason(
        env.client.get_connection(&scope, "x").await,
        FlowErrorKind::Unauthorized,
    );
}

#[tokio::test]
async fn forbidden_is_its_own_class() {
    let env = env().await;
    // A valid token with an API key that is not its client: the gateway answers 403003.
    let other_key = Credentials::from_secret_data(
        &secret_data(&[
            ("clientId", DEMO_CLIENT_ID),
            ("clientSecret", DEMO_CLIENT_SECRET),
            ("orgId", DEMO_ORG_ID),
            ("apiKey", "some-other-api-key"),
        ]),
        "key/1",
    )
    .unwrap();
    let scope = Scope {
        credentials: &other_key,
        sandbox: "prod",
    };
    let error = assert_reason(
        env.client.get_connection(&scope, "x").await,
        FlowErrorKind::Forbidden,
    );
    assert_eq!(error.error_code(), Some("403003"));
    assert!(error.is_permanent());

    env.admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS_ROUTE, "status": 403, "times": 1}),
        ))
        .await;
    let error = assert_reason(
        env.client
            .create_connection(&env.scope(), &new_connection("x"))
            .await,
        FlowErrorKind::Forbidden,
    );
    assert!(!error.maybe_committed());
}

#[tokio::test]
async fn a_400_is_an_invalid_spec() {
    let env = env().await;
    env.admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS_ROUTE, "status": 400, "times": 1}),
        ))
        .await;
    let error = assert_reason(
        env.client
            .create_connection(&env.scope(), &new_connection("x"))
            .await,
        FlowErrorKind::Invalid,
    );
    assert!(error.is_permanent() && !error.maybe_committed());
    assert_eq!(error.status(), Some(400));
    assert_eq!(
        env.served("POST", CONNECTIONS_ROUTE, None).await,
        1,
        "writes are not retried"
    );
}

#[tokio::test]
async fn a_429_on_a_write_carries_retry_after_in_seconds() {
    let env = env().await;
    env.admin.add_fault(rule(json!({"method": "POST", "route": CONNECTIONS_ROUTE, "status": 429, "retryAfter": 7, "times": 1})))
        .await;
    let error = assert_reason(
        env.client
            .create_connection(&env.scope(), &new_connection("x"))
            .await,
        FlowErrorKind::RateLimited,
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert!(!error.is_permanent() && !error.maybe_committed());
    assert_eq!(env.served("POST", CONNECTIONS_ROUTE, None).await, 1);
}

#[tokio::test]
async fn a_429_on_a_write_carries_retry_after_as_an_http_date() {
    let env = env().await;
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    env.admin.add_fault(rule(json!({"method": "PATCH", "route": CONNECTION_ROUTE, "status": 429, "retryAfter": at, "times": 1})))
        .await;
    let update = ConnectionUpdate {
        name: Some("x".into()),
        description: None,
    };
    let error = assert_reason(
        env.client
            .update_connection(&env.scope(), "id", "\"e\"", &update)
            .await,
        FlowErrorKind::RateLimited,
    );
    let wait = error
        .retry_after()
        .expect("an HTTP-date Retry-After is parsed");
    assert!(
        (Duration::from_secs(28)..=Duration::from_secs(30)).contains(&wait),
        "{wait:?}"
    );
}

#[tokio::test]
async fn reads_wait_out_a_short_retry_after() {
    let env = env().await;
    env.admin.add_fault(rule(json!({"method": "GET", "route": CONNECTIONS_ROUTE, "status": 429, "retryAfter": 1, "times": 1})))
        .await;
    let started = Instant::now();
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, None).await, 2);
    assert_eq!(env.observer.count(Operation::List, "4xx"), 1);
    assert_eq!(env.observer.count(Operation::List, "2xx"), 1);
}

#[tokio::test]
async fn reads_hand_a_long_retry_after_to_the_caller() {
    let env = env().await;
    env.admin
        .add_fault(rule(
            json!({"method": "GET", "route": CONNECTION_ROUTE, "status": 429, "retryAfter": 120}),
        ))
        .await;
    let started = Instant::now();
    let error = assert_reason(
        env.client.get_connection(&env.scope(), "x").await,
        FlowErrorKind::RateLimited,
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(env.served("GET", CONNECTION_ROUTE, None).await, 1);
}

#[tokio::test]
async fn reads_are_retried_through_transient_5xx() {
    let env = env().await;
    env.admin
        .add_fault(rule(
            json!({"method": "GET", "route": CONNECTION_ROUTE, "status": 503, "times": 2}),
        ))
        .await;
    assert_reason(
        env.client.get_connection(&env.scope(), "missing").await,
        FlowErrorKind::NotFound,
    );
    assert_eq!(env.served("GET", CONNECTION_ROUTE, Some(503)).await, 2);
    assert_eq!(env.served("GET", CONNECTION_ROUTE, Some(404)).await, 1);
    assert_eq!(env.observer.count(Operation::Get, "5xx"), 2);
}

#[tokio::test]
async fn reads_give_up_after_a_few_attempts() {
    let env = env().await;
    env.admin
        .add_fault(rule(
            json!({"method": "GET", "route": CONNECTION_ROUTE, "status": 502}),
        ))
        .await;
    let error = assert_reason(
        env.client.get_connection(&env.scope(), "x").await,
        FlowErrorKind::Unavailable,
    );
    assert!(!error.is_permanent() && !error.maybe_committed());
    assert_eq!(error.status(), Some(502));
    assert_eq!(env.served("GET", CONNECTION_ROUTE, None).await, 4);
}

#[tokio::test]
async fn a_5xx_on_create_may_have_committed_and_is_not_retried() {
    let env = env().await;
    env.admin.add_fault(rule(json!({"method": "POST", "route": CONNECTIONS_ROUTE, "status": 503, "retryAfter": 3, "times": 1})))
        .await;
    let error = assert_reason(
        env.client
            .create_connection(&env.scope(), &new_connection("x"))
            .await,
        FlowErrorKind::Unavailable,
    );
    assert!(error.maybe_committed() && !error.is_permanent());
    assert_eq!(env.served("POST", CONNECTIONS_ROUTE, None).await, 1);
}

#[tokio::test]
async fn commit_then_fail_is_reported_as_maybe_committed_and_the_lookup_finds_it() {
    let env = env().await;
    env.admin.add_fault(rule(json!({"method": "POST", "route": CONNECTIONS_ROUTE, "action": "commitThenFail", "status": 500, "times": 1})))
        .await;
    let error = assert_reason(
        env.client
            .create_connection(&env.scope(), &new_connection("Ambiguous"))
            .await,
        FlowErrorKind::Unavailable,
    );
    assert!(error.maybe_committed());
    let found = env
        .client
        .find_connections_by_name(&env.scope(), "Ambiguous")
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "the create did happen");
}

#[tokio::test]
async fn a_connection_dropped_after_sending_may_have_committed() {
    let env = env().await;
    for action in ["drop", "commitThenDrop"] {
        env.admin
            .add_fault(rule(
                json!({"method": "POST", "route": CONNECTIONS_ROUTE, "action": action, "times": 1}),
            ))
            .await;
        let error = assert_reason(
            env.client
                .create_connection(&env.scope(), &new_connection(action))
                .await,
            FlowErrorKind::Unavailable,
        );
        assert!(error.maybe_committed(), "{action}: {error}");
        assert_eq!(error.status(), None);
    }
    assert!(env.observer.count(Operation::Create, "error") >= 2);
    let committed = env
        .client
        .find_connections_by_name(&env.scope(), "commitThenDrop")
        .await
        .unwrap();
    assert_eq!(committed.len(), 1);
}

#[tokio::test]
async fn a_read_survives_a_dropped_connection() {
    let env = env().await;
    env.admin
        .add_fault(rule(
            json!({"method": "GET", "route": CONNECTIONS_ROUTE, "action": "drop", "times": 1}),
        ))
        .await;
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, None).await, 2);
}

#[tokio::test]
async fn a_timeout_after_sending_a_create_may_have_committed() {
    let env = env_with(EmulatorConfig::default(), |config| {
        config.request_timeout = Duration::from_millis(500);
    })
    .await;
    // Mint the token first, so that the timeout hits the create itself.
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    env.admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS_ROUTE, "latencyMs": 1500, "times": 1}),
        ))
        .await;
    let error = assert_reason(
        env.client
            .create_connection(&env.scope(), &new_connection("Slow"))
            .await,
        FlowErrorKind::Unavailable,
    );
    assert!(error.maybe_committed(), "{error}");
    assert!(error.to_string().contains("timed out"), "{error}");
    // No response, yet the request can be traced by the id the client sent.
    assert!(error.request_id().is_some(), "{error:?}");
}

#[tokio::test]
async fn a_refused_connection_certainly_did_not_commit() {
    let env = env().await;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = FlowClient::new(FlowClientConfig {
        platform_url: format!("http://127.0.0.1:{closed_port}").parse().unwrap(),
        ims_url: env.emulator.url().parse().unwrap(),
        ..FlowClientConfig::default()
    })
    .unwrap();
    let error = assert_reason(
        client
            .create_connection(&env.scope(), &new_connection("x"))
            .await,
        FlowErrorKind::Unavailable,
    );
    assert_eq!(error.operation(), Some(Operation::Create));
    assert!(!error.maybe_committed(), "{error}");
}

#[tokio::test]
async fn ims_outages_are_transient() {
    let env = env().await;
    env.admin
        .add_fault(rule(
            json!({"method": "POST", "route": TOKEN_ROUTE, "status": 503, "times": 1}),
        ))
        .await;
    let error = assert_reason(
        env.client
            .create_connection(&env.scope(), &new_connection("x"))
            .await,
        FlowErrorKind::Unavailable,
    );
    assert_eq!(error.operation(), Some(Operation::Token));
    assert!(!error.maybe_committed(), "no create was sent");
    assert!(!error.is_permanent());
    let hold = error
        .retry_after()
        .expect("the client says how long it holds IMS back");
    assert_eq!(hold, Duration::from_secs(1));
    // Held for a short while: the next call gets the same failure without asking IMS again...
    let again = assert_reason(
        env.client.get_connection(&env.scope(), "x").await,
        FlowErrorKind::Unavailable,
    );
    assert_eq!(again.stable_message(), error.stable_message());
    assert!(again.retry_after().is_some_and(|left| left <= hold));
    assert_eq!(env.tokens_minted().await, 1);
    // ...and once the hold has passed, the next call mints.
    tokio::time::sleep(hold).await;
    env.client
        .create_connection(&env.scope(), &new_connection("x"))
        .await
        .unwrap();
    assert_eq!(env.tokens_minted().await, 2);
}

// ----- broken objects stay quiet ------------------------------------------------------------------

fn wrong_secret_credentials(cache_key: &str) -> Credentials {
    Credentials::from_secret_data(
        &secret_data(&[
            ("clientId", DEMO_CLIENT_ID),
            ("clientSecret", "not-the-secret"),
            ("orgId", DEMO_ORG_ID),
        ]),
        cache_key,
    )
    .unwrap()
}

#[tokio::test]
async fn fifty_calls_with_a_wrong_client_secret_make_one_ims_request() {
    let env = env().await;
    let wrong = wrong_secret_credentials("wrong/1");
    let scope = Scope {
        credentials: &wrong,
        sandbox: "prod",
    };
    let mut messages = std::collections::BTreeSet::new();
    for call in 0..50 {
        let result = match call % 4 {
            0 => env.client.get_connection(&scope, "x").await.map(drop),
            1 => env
                .client
                .find_connections_by_name(&scope, "n")
                .await
                .map(drop),
            2 => env
                .client
                .create_connection(&scope, &new_connection("x"))
                .await
                .map(drop),
            _ => env.client.delete_connection(&scope, "x").await,
        };
        let error = assert_reason(result, FlowErrorKind::Unauthorized);
        assert!(error.is_permanent());
        assert_eq!(error.operation(), Some(Operation::Token));
        messages.insert(error.stable_message());
    }
    assert_eq!(env.tokens_minted().await, 1);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(env.observer.count(Operation::Token, "4xx"), 1);

    // Forgetting the credentials (their Secret changed) lets one new attempt through.
    env.client.forget_token(&wrong);
    for _ in 0..5 {
        assert_reason(
            env.client.get_connection(&scope, "x").await,
            FlowErrorKind::Unauthorized,
        );
    }
    assert_eq!(env.tokens_minted().await, 2);

    // So does a new Secret version, which is a new cache slot; the old version stays quiet.
    let next = wrong_secret_credentials("wrong/2");
    let next_scope = Scope {
        credentials: &next,
        sandbox: "prod",
    };
    for _ in 0..5 {
        assert_reason(
            env.client.get_connection(&next_scope, "x").await,
            FlowErrorKind::Unauthorized,
        );
        assert_reason(
            env.client.get_connection(&scope, "x").await,
            FlowErrorKind::Unauthorized,
        );
    }
    assert_eq!(env.tokens_minted().await, 3);
    // Valid credentials of the same client are unaffected.
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    assert_eq!(env.tokens_minted().await, 4);
}

#[tokio::test]
async fn an_ims_429_holds_every_token_request_until_its_retry_after() {
    let env = env().await;
    env.admin.add_fault(rule(
        json!({"method": "POST", "route": TOKEN_ROUTE, "status": 429, "retryAfter": 7, "times": 1}),
    ))
    .await;
    let error = assert_reason(
        env.client.get_connection(&env.scope(), "x").await,
        FlowErrorKind::RateLimited,
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    for _ in 0..20 {
        let error = assert_reason(
            env.client.get_connection(&env.scope(), "x").await,
            FlowErrorKind::RateLimited,
        );
        let left = error.retry_after().expect("the remaining wait");
        assert!(
            left > Duration::ZERO && left <= Duration::from_secs(7),
            "{left:?}"
        );
    }
    // New credentials of the same client are held back too: Adobe throttles the integration.
    let next = demo_credentials("secret-uid/2");
    let scope = Scope {
        credentials: &next,
        sandbox: "prod",
    };
    assert_reason(
        env.client.find_connections_by_name(&scope, "n").await,
        FlowErrorKind::RateLimited,
    );
    assert_eq!(env.tokens_minted().await, 1);
    assert_eq!(env.served("GET", CONNECTION_ROUTE, None).await, 0);
}

#[tokio::test]
async fn a_429_stops_every_call_of_the_integration_until_its_retry_after() {
    let env = env().await;
    let scope = env.scope();
    let created = env
        .client
        .create_connection(&scope, &new_connection("Throttled"))
        .await
        .unwrap();
    env.admin.add_fault(rule(json!({"method": "POST", "route": CONNECTIONS_ROUTE, "status": 429, "retryAfter": 7, "times": 1})))
        .await;
    let first = assert_reason(
        env.client
            .create_connection(&scope, &new_connection("x"))
            .await,
        FlowErrorKind::RateLimited,
    );
    assert_eq!(first.retry_after(), Some(Duration::from_secs(7)));
    let requests_so_far = env.admin.requests().await.total();

    let started = Instant::now();
    let update = ConnectionUpdate {
        name: Some("y".into()),
        description: None,
    };
    let errors = vec![
        env.client
            .create_connection(&scope, &new_connection("x"))
            .await
            .unwrap_err(),
        env.client
            .get_connection(&scope, &created.id)
            .await
            .unwrap_err(),
        env.client
            .find_connections_by_name(&scope, "Throttled")
            .await
            .unwrap_err(),
        env.client
            .update_connection(&scope, &created.id, &created.etag, &update)
            .await
            .unwrap_err(),
        env.client
            .delete_connection(&scope, &created.id)
            .await
            .unwrap_err(),
    ];
    assert!(started.elapsed() < Duration::from_secs(1), "fails fast");
    for error in &errors {
        assert_eq!(error.kind(), FlowErrorKind::RateLimited, "{error}");
        let left = error.retry_after().expect("the remaining wait");
        assert!(
            left > Duration::ZERO && left <= Duration::from_secs(7),
            "{left:?}"
        );
        assert!(
            error.to_string().contains("not sent"),
            "says it was not sent: {error}"
        );
        assert!(!error.maybe_committed());
    }
    assert_eq!(
        env.admin.requests().await.total(),
        requests_so_far,
        "nothing was sent inside the window"
    );
}

#[tokio::test]
async fn a_429_without_retry_after_holds_the_integration_for_a_second() {
    let env = env().await;
    let scope = env.scope();
    env.client
        .find_connections_by_name(&scope, "n")
        .await
        .unwrap();
    env.admin
        .add_fault(rule(
            json!({"method": "DELETE", "route": CONNECTION_ROUTE, "status": 429, "times": 1}),
        ))
        .await;
    let error = assert_reason(
        env.client.delete_connection(&scope, "x").await,
        FlowErrorKind::RateLimited,
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
    let held = assert_reason(
        env.client.find_connections_by_name(&scope, "n").await,
        FlowErrorKind::RateLimited,
    );
    assert!(
        held.retry_after()
            .is_some_and(|left| left <= Duration::from_secs(1))
    );
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, None).await, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.client
        .find_connections_by_name(&scope, "n")
        .await
        .unwrap();
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, None).await, 2);
}

#[tokio::test]
async fn a_read_retry_never_goes_out_before_the_retry_after() {
    let env = env().await;
    let scope = env.scope();
    env.client
        .find_connections_by_name(&scope, "n")
        .await
        .unwrap();
    // The list is throttled for 2 s; its own retry must wait until then, and so must other calls.
    env.admin.add_fault(rule(json!({"method": "GET", "route": CONNECTIONS_ROUTE, "status": 429, "retryAfter": 2, "times": 1})))
        .await;
    let started = Instant::now();
    let (list, get) = tokio::join!(env.client.find_connections_by_name(&scope, "n"), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        env.client.get_connection(&scope, "x").await
    });
    list.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1950),
        "{:?}",
        started.elapsed()
    );
    assert_reason(get, FlowErrorKind::RateLimited);
    assert_eq!(env.served("GET", CONNECTION_ROUTE, None).await, 0);
    assert_eq!(env.served("GET", CONNECTIONS_ROUTE, None).await, 3);
}

#[tokio::test]
async fn ims_requests_count_against_the_rate_limit_and_the_concurrency_cap() {
    // One request a second: the token request and the call it serves are two.
    let env = env_with(EmulatorConfig::default(), |config| config.qps = 1.0).await;
    let started = Instant::now();
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // One request at a time: two token requests of 400 ms each cannot overlap.
    let env = env_with(EmulatorConfig::default(), |config| {
        config.max_concurrency = 1
    })
    .await;
    env.admin
        .add_fault(rule(
            json!({"method": "POST", "route": TOKEN_ROUTE, "latencyMs": 400}),
        ))
        .await;
    let (first, second) = (demo_credentials("a/1"), demo_credentials("b/1"));
    let (first, second) = (
        Scope {
            credentials: &first,
            sandbox: "prod",
        },
        Scope {
            credentials: &second,
            sandbox: "prod",
        },
    );
    let started = Instant::now();
    let (one, two) = tokio::join!(
        env.client.find_connections_by_name(&first, "n"),
        env.client.find_connections_by_name(&second, "n"),
    );
    one.unwrap();
    two.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(780),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(env.tokens_minted().await, 2);
}

#[tokio::test]
async fn a_created_id_that_is_not_a_uuid_may_have_committed() {
    let env = env().await;
    for body in [
        json!({"id": "not-a-uuid", "etag": "\"e1\""}),
        json!({"id": "../../flows", "etag": "\"e1\""}),
        json!({"etag": "\"e1\""}),
        json!({"id": 42, "etag": "\"e1\""}),
    ] {
        env.admin.add_fault(rule(json!({"method": "POST", "route": CONNECTIONS_ROUTE, "status": 201, "body": body, "times": 1})))
            .await;
        let error = assert_reason(
            env.client
                .create_connection(&env.scope(), &new_connection("x"))
                .await,
            FlowErrorKind::UnexpectedResponse,
        );
        assert!(error.maybe_committed(), "look it up by name: {error}");
        assert!(!error.is_permanent());
        assert_eq!(error.status(), Some(201));
    }
}

#[tokio::test]
async fn a_connection_read_back_with_an_id_that_is_not_a_uuid_is_unexpected() {
    let env = env().await;
    let created = env
        .client
        .create_connection(&env.scope(), &new_connection("Odd"))
        .await
        .unwrap();
    env.admin.add_fault(rule(json!({"method": "GET", "route": CONNECTION_ROUTE, "status": 200,
                     "body": {"items": [{"id": "12345", "name": "Odd", "etag": "\"e\""}]}, "times": 1})))
        .await;
    let error = assert_reason(
        env.client.get_connection(&env.scope(), &created.id).await,
        FlowErrorKind::UnexpectedResponse,
    );
    assert!(!error.maybe_committed());
    assert!(error.to_string().contains("not a UUID"), "{error}");
    // Another connection than the one asked for is not trusted either.
    env.admin.add_fault(rule(json!({"method": "GET", "route": CONNECTION_ROUTE, "status": 200,
                     "body": {"items": [{"id": "a59d368a-1152-4673-a46e-bd52e8cdb9a9", "name": "Odd"}]},
                     "times": 1})))
        .await;
    assert_reason(
        env.client.get_connection(&env.scope(), &created.id).await,
        FlowErrorKind::UnexpectedResponse,
    );

    // In a lookup, only a match with an odd id is a problem; strangers are ignored.
    env.admin
        .add_fault(rule(
            json!({"method": "GET", "route": CONNECTIONS_ROUTE, "status": 200,
                     "body": {"items": [
                         {"id": "stranger-id", "name": "Someone else"},
                         {"id": created.id, "name": "Odd"},
                     ], "_links": {}}, "times": 1}),
        ))
        .await;
    let found = env
        .client
        .find_connections_by_name(&env.scope(), "Odd")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    env.admin.add_fault(rule(json!({"method": "GET", "route": CONNECTIONS_ROUTE, "status": 200,
                     "body": {"items": [{"id": "odd-id", "name": "Odd"}], "_links": {}}, "times": 1})))
        .await;
    assert_reason(
        env.client
            .find_connections_by_name(&env.scope(), "Odd")
            .await,
        FlowErrorKind::UnexpectedResponse,
    );
}

#[tokio::test]
async fn a_proxy_html_page_becomes_its_title() {
    let env = env().await;
    let page = "<!DOCTYPE html><html><head><title>503 Service Temporarily Unavailable</title>\
                <style>body{font:x}</style></head><body><h1>503 Service Temporarily Unavailable</h1>\
                <hr><center>nginx</center></body></html>";
    env.admin.add_fault(rule(json!({"method": "POST", "route": CONNECTIONS_ROUTE, "status": 503, "body": page, "times": 1})))
        .await;
    let error = assert_reason(
        env.client
            .create_connection(&env.scope(), &new_connection("x"))
            .await,
        FlowErrorKind::Unavailable,
    );
    let text = error.to_string();
    assert!(
        text.contains(": 503 Service Temporarily Unavailable)"),
        "{text}"
    );
    assert!(!text.contains('<') && !text.contains("nginx"), "{text}");
}

#[tokio::test]
async fn encoded_echoes_of_the_client_secret_are_redacted() {
    let env = env().await;
    // "demo-secret" as base64 (standard and URL-safe are the same here), with and without padding,
    // percent-encoded with either case of escapes, and upper-cased.
    let echoes = [
        "ZGVtby1zZWNyZXQ=",
        "ZGVtby1zZWNyZXQ",
        "demo%2Dsecret",
        "demo%2dsecret",
        "DEMO-SECRET",
    ];
    for echo in echoes {
        env.admin
            .add_fault(rule(
                json!({"method": "POST", "route": CONNECTIONS_ROUTE, "status": 400,
                         "body": {"message": format!("credential {echo} rejected")}, "times": 1}),
            ))
            .await;
        let error = assert_reason(
            env.client
                .create_connection(&env.scope(), &new_connection("x"))
                .await,
            FlowErrorKind::Invalid,
        );
        let text = format!("{error} {error:?}");
        assert!(text.contains("credential <redacted> rejected"), "{text}");
        assert!(!text.contains(echo), "{echo} leaked into {text}");
    }
}

// ----- limits and observer ------------------------------------------------------------------------

#[tokio::test]
async fn the_rate_limit_spaces_requests() {
    let env = env_with(EmulatorConfig::default(), |config| config.qps = 5.0).await;
    let started = Instant::now();
    // A burst of 5 passes at once, the next 5 at 5 per second.
    for _ in 0..10 {
        env.client
            .find_connections_by_name(&env.scope(), "n")
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn the_concurrency_cap_bounds_requests_in_flight() {
    let env = env_with(EmulatorConfig::default(), |config| {
        config.max_concurrency = 2
    })
    .await;
    env.client
        .find_connections_by_name(&env.scope(), "n")
        .await
        .unwrap();
    env.admin
        .add_fault(rule(
            json!({"method": "GET", "route": CONNECTIONS_ROUTE, "latencyMs": 300}),
        ))
        .await;
    let started = Instant::now();
    let scope = env.scope();
    let results =
        futures::future::join_all((0..6).map(|_| env.client.find_connections_by_name(&scope, "n")))
            .await;
    assert!(results.iter().all(Result::is_ok));
    // Six 300 ms requests two at a time take three rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(850),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_observer_sees_each_request_by_operation_and_status_class() {
    let env = env().await;
    let scope = env.scope();
    let created = env
        .client
        .create_connection(&scope, &new_connection("Observed"))
        .await
        .unwrap();
    env.client
        .get_connection(&scope, &created.id)
        .await
        .unwrap();
    env.client
        .find_connections_by_name(&scope, "Observed")
        .await
        .unwrap();
    let updated = env
        .client
        .update_connection(
            &scope,
            &created.id,
            &created.etag,
            &ConnectionUpdate {
                name: Some("Observed 2".into()),
                description: None,
            },
        )
        .await
        .unwrap();
    assert!(!updated.etag.is_empty());
    env.client
        .delete_connection(&scope, &created.id)
        .await
        .unwrap();
    assert_reason(
        env.client.get_connection(&scope, &created.id).await,
        FlowErrorKind::NotFound,
    );

    for (operation, outcome, expected) in [
        (Operation::Token, "2xx", 1),
        (Operation::Create, "2xx", 1),
        (Operation::Get, "2xx", 1),
        (Operation::Get, "4xx", 1),
        (Operation::List, "2xx", 1),
        (Operation::Update, "2xx", 1),
        (Operation::Delete, "2xx", 1),
    ] {
        assert_eq!(
            env.observer.count(operation, outcome),
            expected,
            "{operation:?} {outcome}"
        );
    }
}

// ----- secrets ------------------------------------------------------------------------------------

#[tokio::test]
async fn no_secret_or_token_appears_in_errors_or_debug_output() {
    let env = env().await;
    let hand_token = env.mint_token_by_hand().await;
    let static_credentials = Credentials::from_secret_data(
        &secret_data(&[
            ("clientId", DEMO_CLIENT_ID),
            ("orgId", DEMO_ORG_ID),
            ("accessToken", &hand_token),
        ]),
        "static/1",
    )
    .unwrap();
    let static_scope = Scope {
        credentials: &static_credentials,
        sandbox: "prod",
    };
    let mut errors: Vec<FlowError> = Vec::new();

    // Servers that echo the credentials of the request back: the client scrubs them. First the OAuth
    // caller's client secret, then the static caller's token.
    let echo_secret = format!("client secret {DEMO_CLIENT_SECRET} was rejected");
    let echo_token = format!("token {hand_token} was rejected");
    env.admin
        .add_faults(rules(json!({"rules": [
            {"method": "GET", "route": CONNECTION_ROUTE, "status": 400,
             "body": {"message": echo_secret}, "times": 1},
            {"method": "GET", "route": CONNECTION_ROUTE, "status": 400,
             "body": {"message": echo_token, "error_code": hand_token}, "times": 1},
        ]})))
        .await;
    errors.push(
        env.client
            .get_connection(&env.scope(), "x")
            .await
            .unwrap_err(),
    );
    errors.push(
        env.client
            .get_connection(&static_scope, "x")
            .await
            .unwrap_err(),
    );
    env.admin.add_fault(rule(
        json!({"method": "POST", "route": TOKEN_ROUTE, "status": 401,
                     "body": {"error": "invalid_client", "error_description": echo_secret}, "times": 1}),
    ))
    .await;
    env.client.forget_token(&env.credentials);
    errors.push(
        env.client
            .get_connection(&env.scope(), "x")
            .await
            .unwrap_err(),
    );
    env.admin.clear_faults().await;

    // Ordinary failures of every kind.
    let wrong = Credentials::from_secret_data(
        &secret_data(&[
            ("clientId", DEMO_CLIENT_ID),
            ("clientSecret", "wrong-secret-value-123"),
            ("orgId", DEMO_ORG_ID),
        ]),
        "wrong/1",
    )
    .unwrap();
    errors.push(
        env.client
            .get_connection(
                &Scope {
                    credentials: &wrong,
                    sandbox: "prod",
                },
                "x",
            )
            .await
            .unwrap_err(),
    );
    errors.push(
        env.client
            .get_connection(&env.scope(), "missing")
            .await
            .unwrap_err(),
    );
    env.admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS_ROUTE, "status": 503, "times": 1}),
        ))
        .await;
    errors.push(
        env.client
            .create_connection(&static_scope, &new_connection("x"))
            .await
            .unwrap_err(),
    );
    env.admin
        .add_fault(rule(
            json!({"method": "POST", "route": CONNECTIONS_ROUTE, "action": "drop", "times": 1}),
        ))
        .await;
    errors.push(
        env.client
            .create_connection(&env.scope(), &new_connection("x"))
            .await
            .unwrap_err(),
    );

    for echoed in &errors[..3] {
        assert!(echoed.to_string().contains("<redacted>"), "{echoed}");
    }
    for error in &errors {
        for text in [
            error.to_string(),
            format!("{error:?}"),
            format!("{error:#?}"),
        ] {
            for secret in [
                DEMO_CLIENT_SECRET,
                hand_token.as_str(),
                "wrong-secret-value-123",
            ] {
                assert!(!text.contains(secret), "{secret} leaked into {text}");
            }
            assert!(!text.to_ascii_lowercase().contains("bearer "), "{text}");
        }
    }
    for text in [
        format!("{:?}", env.credentials),
        format!("{static_credentials:?}"),
        static_credentials.to_string(),
        format!("{:?}", env.client),
        format!("{:?}", env.scope()),
    ] {
        assert!(!text.contains(DEMO_CLIENT_SECRET), "{text}");
        assert!(!text.contains(hand_token.as_str()), "{text}");
    }
}
