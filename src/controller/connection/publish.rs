//! What the connection step reads and publishes in Kubernetes, through the shared steps: the
//! credentials Secret and the ConfigMap with the inlet.

use kube::ResourceExt;

use super::Reconciliation;
use crate::controller::error::Result;
use crate::controller::{config_map, credentials, desired};
use aep_flow::{Connection, Credentials};

impl Reconciliation<'_> {
    /// Applies the ConfigMap unless it is already current; refuses to take over one it does not own.
    pub(super) async fn publish_config_map(&self, connection: &Connection) -> Result<String> {
        let desired = desired::config_map(self.object, connection);
        let previous = self.status().config_map_name;
        config_map::publish(
            &self.ctx.client,
            &self.namespace,
            self.object.uid().as_deref(),
            &desired,
            previous.as_deref(),
        )
        .await
    }

    /// Reads the credentials Secret from the object's own namespace (never another one), and
    /// remembers them for a cleanup after the Secret is gone.
    pub(super) async fn credentials(&self) -> Result<Credentials> {
        let name = &self.object.spec.credentials_ref.name;
        let credentials = credentials::read(&self.ctx.client, &self.namespace, name).await?;
        self.ctx
            .remember_credentials(&self.namespace, name, &credentials);
        Ok(credentials)
    }
}
