//! Shared step: the Adobe credentials of an object, from a Secret in the object's own namespace.
//!
//! Every kind the operator manages authenticates this way; nothing here knows which kind asks.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use super::error::{Error, Result};
use aep_flow::Credentials;

/// Reads Secret `name` in `namespace` (the asking object's own namespace, never another one) and
/// builds the credentials from its data. Tokens are cached per Secret version: a new
/// resourceVersion means new credentials.
pub(crate) async fn read(client: &Client, namespace: &str, name: &str) -> Result<Credentials> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(Error::kube("reading the credentials Secret"))?
        .ok_or_else(|| Error::CredentialsNotFound {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect();
    let version = format!(
        "{}/{}",
        secret.metadata.uid.unwrap_or_default(),
        secret.metadata.resource_version.unwrap_or_default()
    );
    Credentials::from_secret_data(&data, version).map_err(|source| Error::CredentialsUnusable {
        name: name.to_string(),
        source,
    })
}
