//! `--ca-file`: the client trusts an extra CA (PEM) on top of the built-in roots, and only then.

#[path = "support/flow_tls.rs"]
mod flow_tls;

use std::collections::BTreeMap;
use std::time::Duration;

use aep_flow::{Credentials, FlowClient, FlowClientConfig, FlowErrorKind, Scope};

fn credentials() -> Credentials {
    let data: BTreeMap<String, Vec<u8>> = [
        ("clientId", "tls-client"),
        ("clientSecret", "tls-secret-value"),
        ("orgId", "TLS@AdobeOrg"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.as_bytes().to_vec()))
    .collect();
    Credentials::from_secret_data(&data, "tls/1").unwrap()
}

fn config(base: &str, extra_ca_pem: Option<Vec<u8>>) -> FlowClientConfig {
    FlowClientConfig {
        platform_url: base.parse().unwrap(),
        ims_url: base.parse().unwrap(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        extra_ca_pem,
        ..FlowClientConfig::default()
    }
}

#[tokio::test]
async fn a_server_signed_by_the_extra_ca_is_trusted() {
    let base = flow_tls::start_tls_server().await;
    let client = FlowClient::new(config(
        &base,
        Some(flow_tls::TEST_CA_PEM.as_bytes().to_vec()),
    ))
    .unwrap();
    let credentials = credentials();
    let scope = Scope {
        credentials: &credentials,
        sandbox: "prod",
    };
    let connection = client.get_connection(&scope, "tls-1").await.unwrap();
    assert_eq!(connection.name, "over TLS");
}

#[tokio::test]
async fn without_the_extra_ca_the_handshake_fails_before_anything_is_sent() {
    let base = flow_tls::start_tls_server().await;
    let client = FlowClient::new(config(&base, None)).unwrap();
    let credentials = credentials();
    let scope = Scope {
        credentials: &credentials,
        sandbox: "prod",
    };
    let new = aep_flow::NewConnection {
        name: "n".into(),
        description: None,
        source_id: None,
        data_type: aep_flow::DataType::Xdm,
        authentication_required: false,
    };
    // The token request is the first to fail; the connection was certainly not created.
    let error = client.create_connection(&scope, &new).await.unwrap_err();
    assert_eq!(error.kind(), FlowErrorKind::Unavailable, "{error}");
    assert!(!error.maybe_committed(), "{error}");
    let text = error.to_string();
    assert!(text.contains("could not connect"), "{text}");
    assert!(!text.contains("tls-secret-value"), "{text}");
}
