//! On delete: the flow, then its source and target connections, in Adobe's order (a connection a flow
//! still uses cannot be deleted), before the finalizer goes; or nothing, with `deletionPolicy: Orphan`.
//! The mapping set stays (Data Prep has no delete), and the dataset is never touched.

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::{Reconciliation, desired};
use crate::api::{DataflowPart, DeletionPolicy, ServedKind};
use crate::controller::credentials;
use crate::controller::error::{Error, Result};
use crate::controller::reason::Reason;
use crate::controller::status::Progress;
use aep_flow::{Credentials, Scope};

impl Reconciliation<'_> {
    /// Deletes (or orphans) the dataflow's parts. Idempotent (a 404 is success). A failure is
    /// recorded in the conditions and an event that say how to let the object go anyway.
    pub(crate) async fn cleanup(&mut self) -> Result<Action> {
        let result = self.delete_or_orphan().await;
        if let Err(error) = &result {
            let hint = " (to delete the object without deleting the flow, set spec.deletionPolicy to Orphan)";
            warn!(reason = error.reason().as_str(), %error, "cleanup failed");
            let progress = Progress::Reconciling {
                reason: error.reason(),
                message: format!(
                    "Cannot delete the dataflow: {}{hint}",
                    error.condition_message()
                ),
            };
            if let Err(status_error) = self.write(&progress).await {
                warn!(error = %status_error, "could not record the failure in the status");
            }
            self.publish(
                EventType::Warning,
                error.reason(),
                format!("Cannot delete the dataflow: {error}{hint}"),
            )
            .await;
        }
        result
    }

    async fn delete_or_orphan(&mut self) -> Result<Action> {
        let status = self.status.clone();
        let recorded: Vec<String> = [
            status.flow_id.as_ref().map(|id| format!("flow {id}")),
            status
                .source_connection_id
                .as_ref()
                .map(|id| format!("source connection {id}")),
            status
                .target_connection_id
                .as_ref()
                .map(|id| format!("target connection {id}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        // Deleting the CRD deletes every object of the kind: an uninstall, not a decision about the
        // data, so nothing is deleted in Adobe.
        if self
            .ctx
            .definition_is_being_deleted(ServedKind::StreamingDataflow)
            .await?
        {
            if recorded.is_empty() && status.pending_create.is_none() {
                return Ok(Action::await_change());
            }
            let note = format!(
                "Left {} in Adobe Experience Platform: the StreamingDataflow CustomResourceDefinition is \
                 being deleted, and deleting it never deletes data in Adobe",
                if recorded.is_empty() {
                    "the dataflow being created".to_string()
                } else {
                    recorded.join(", ")
                }
            );
            warn!(note = %note, "left a dataflow in Adobe Experience Platform");
            self.publish(EventType::Warning, Reason::Orphaned, note)
                .await;
            return Ok(Action::await_change());
        }
        if self.object.spec.deletion_policy == DeletionPolicy::Orphan {
            if !recorded.is_empty() {
                self.publish(
                    EventType::Normal,
                    Reason::Orphaned,
                    format!(
                        "Left {} in place (deletionPolicy Orphan)",
                        recorded.join(", ")
                    ),
                )
                .await;
            }
            return Ok(Action::await_change());
        }
        if recorded.is_empty() && status.pending_create.is_none() {
            return Ok(Action::await_change());
        }
        let Some((credentials, sandbox)) = self.cleanup_scope().await? else {
            let note = format!(
                "Left {} in Adobe Experience Platform: StreamingConnection `{}` and its credentials are gone, \
                 so nothing can be deleted",
                if recorded.is_empty() {
                    "the dataflow being created".to_string()
                } else {
                    recorded.join(", ")
                },
                self.object.spec.connection_ref.name
            );
            warn!(note = %note, "left a dataflow in Adobe Experience Platform");
            self.publish(EventType::Warning, Reason::Orphaned, note)
                .await;
            return Ok(Action::await_change());
        };
        let scope = Scope {
            credentials: &credentials,
            sandbox: &sandbox,
        };

        // A create that was interrupted may have made a part the status does not record yet.
        let mut source_ids: Vec<String> = status.source_connection_id.iter().cloned().collect();
        let mut target_ids: Vec<String> = status.target_connection_id.iter().cloned().collect();
        let mut flow_ids: Vec<String> = status.flow_id.iter().cloned().collect();
        // The marker covers its part and every later one (see `parts`): each of those that the status
        // does not record is looked up, the flow by every source connection it could read from.
        if let Some(marker) = &status.pending_create {
            if marker.kind.covers(DataflowPart::SourceConnection) && source_ids.is_empty() {
                let name = desired::source_connection_name(self.object);
                source_ids.extend(
                    self.ctx
                        .flow
                        .find_source_connections_by_name(&scope, &name)
                        .await
                        .map_err(Error::flow("looking up an interrupted create"))?
                        .into_iter()
                        .filter(|c| c.name == name)
                        .map(|c| c.id),
                );
            }
            if marker.kind.covers(DataflowPart::TargetConnection) && target_ids.is_empty() {
                let name = desired::target_connection_name(self.object);
                target_ids.extend(
                    self.ctx
                        .flow
                        .find_target_connections_by_name(&scope, &name)
                        .await
                        .map_err(Error::flow("looking up an interrupted create"))?
                        .into_iter()
                        .filter(|c| c.name == name)
                        .map(|c| c.id),
                );
            }
            if marker.kind.covers(DataflowPart::Flow) && flow_ids.is_empty() {
                for source in &source_ids {
                    flow_ids.extend(
                        self.ctx
                            .flow
                            .find_flows_by_source_connection(&scope, source)
                            .await
                            .map_err(Error::flow("looking up an interrupted create"))?
                            .into_iter()
                            .map(|f| f.id),
                    );
                }
            }
        }
        for ids in [&mut flow_ids, &mut source_ids, &mut target_ids] {
            ids.sort();
            ids.dedup();
        }

        self.ensure_leading()?;
        for id in &flow_ids {
            self.ctx
                .flow
                .delete_flow(&scope, id)
                .await
                .map_err(Error::flow("deleting the flow"))?;
            info!(flow_id = %id, "deleted flow");
        }
        for id in &source_ids {
            self.ctx
                .flow
                .delete_source_connection(&scope, id)
                .await
                .map_err(Error::flow("deleting the source connection"))?;
            info!(source_connection_id = %id, "deleted source connection");
        }
        for id in &target_ids {
            self.ctx
                .flow
                .delete_target_connection(&scope, id)
                .await
                .map_err(Error::flow("deleting the target connection"))?;
            info!(target_connection_id = %id, "deleted target connection");
        }
        let deleted: Vec<String> = flow_ids
            .iter()
            .map(|id| format!("flow {id}"))
            .chain(
                source_ids
                    .iter()
                    .map(|id| format!("source connection {id}")),
            )
            .chain(
                target_ids
                    .iter()
                    .map(|id| format!("target connection {id}")),
            )
            .collect();
        if !deleted.is_empty() {
            self.publish(
                EventType::Normal,
                Reason::Deleted,
                format!("Deleted {}", deleted.join(", ")),
            )
            .await;
        }
        Ok(Action::await_change())
    }

    /// The credentials and sandbox to delete with: the StreamingConnection's, else (it is gone)
    /// the ones last used, else (its Secret is gone too) the credentials last read from that
    /// Secret. `None` when nothing is known.
    async fn cleanup_scope(&self) -> Result<Option<(Credentials, String)>> {
        let (secret, sandbox) = match self.ctx.connection_of(self.object) {
            Some(connection) => (
                connection.spec.credentials_ref.name.clone(),
                connection.spec.sandbox.clone(),
            ),
            None => match self
                .ctx
                .memory
                .read(&self.uid(), |m| m.dataflow_scope.clone())
                .flatten()
            {
                Some(scope) => scope,
                None => return Ok(None),
            },
        };
        match credentials::read(&self.ctx.client, &self.namespace, &secret).await {
            Ok(credentials) => Ok(Some((credentials, sandbox))),
            Err(Error::CredentialsNotFound { .. } | Error::CredentialsUnusable { .. }) => Ok(self
                .ctx
                .last_credentials(&self.namespace, &secret)
                .map(|credentials| (credentials, sandbox))),
            Err(error) => Err(error),
        }
    }
}
