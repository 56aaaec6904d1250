//! Shared step: publishing what applications need in a ConfigMap the object owns.
//!
//! The rules are the same for every kind: server-side apply under the operator's field manager, only
//! when something changed, never taking over a ConfigMap someone else owns, and removing the previous
//! one when the object's ConfigMap was renamed.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use super::desired;
use super::error::{Error, Result};
use crate::api::FIELD_MANAGER;

/// Applies `desired` in `namespace` unless it is already current, for the object with `owner_uid`;
/// deletes the `previous` ConfigMap of that object when the name changed. Returns the name published.
pub(crate) async fn publish(
    client: &Client,
    namespace: &str,
    owner_uid: Option<&str>,
    desired: &ConfigMap,
    previous: Option<&str>,
) -> Result<String> {
    let name = desired.metadata.name.clone().unwrap_or_default();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match config_maps
        .get_opt(&name)
        .await
        .map_err(Error::kube("reading the ConfigMap"))?
    {
        Some(existing) if !desired::owned_by(&existing, owner_uid) => {
            return Err(Error::ConfigMapConflict { name });
        }
        Some(existing) if desired::config_map_is_current(&existing, desired) => {}
        _ => {
            config_maps
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(desired),
                )
                .await
                .map_err(Error::kube("applying the ConfigMap"))?;
        }
    }
    // The object's ConfigMap was renamed: the old one is ours and now stale.
    if let Some(previous) = previous.filter(|previous| *previous != name)
        && let Some(old) = config_maps
            .get_opt(previous)
            .await
            .map_err(Error::kube("reading the old ConfigMap"))?
        && desired::owned_by(&old, owner_uid)
    {
        config_maps
            .delete(previous, &DeleteParams::default())
            .await
            .map_err(Error::kube("deleting the old ConfigMap"))?;
    }
    Ok(name)
}
