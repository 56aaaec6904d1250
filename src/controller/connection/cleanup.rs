//! On delete: the connection is deleted (or orphaned, with the reason said) before the finalizer goes.

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::Reconciliation;
use crate::api::{DeletionPolicy, ServedKind};
use crate::controller::error::{Error, Result};
use crate::controller::reason::Reason;
use crate::controller::status::Progress;
use aep_flow::Scope;

impl Reconciliation<'_> {
    /// Deletes (or orphans) the connection before the finalizer is removed. Idempotent. A failure
    /// is reported as an event that says how to let the object go anyway.
    pub(crate) async fn cleanup(&mut self) -> Result<Action> {
        let result = self.delete_or_orphan().await;
        if let Err(error @ Error::DataflowsExist { .. }) = &result {
            // Not a failure: the dataflows go first (Adobe refuses to delete a connection a flow
            // uses), and each one that goes wakes this object.
            let message = error.to_string();
            let progress = Progress::Reconciling {
                reason: error.reason(),
                message: message.clone(),
            };
            if let Err(status_error) = self.write_status(self.status(), &progress).await {
                warn!(error = %status_error, "could not record the wait in the status");
            }
            self.publish(EventType::Normal, error.reason(), message)
                .await;
            return result;
        }
        if let Err(error) = &result {
            let hint = if error.is_permanent() && !matches!(error, Error::ConnectionInUse { .. }) {
                "; to delete the object without deleting the connection, set spec.deletionPolicy to Orphan"
            } else {
                ""
            };
            warn!(reason = error.reason().as_str(), %error, "cleanup failed");
            // The conditions say why the finalizer stays, too (events age out).
            let progress = Progress::failed(
                error,
                format!(
                    "Cannot delete the connection: {}",
                    error.condition_message()
                ),
            );
            if !error.gives_way()
                && let Err(status_error) = self.write_status(self.status(), &progress).await
            {
                warn!(error = %status_error, "could not record the failure in the status");
            }
            self.publish(
                EventType::Warning,
                error.reason(),
                format!("Cannot delete the connection: {error}{hint}"),
            )
            .await;
        }
        result
    }

    pub(super) async fn delete_or_orphan(&self) -> Result<Action> {
        let status = self.status();
        // Only a connection this object recorded as its own is deleted: a spec.connectionId whose
        // adoption never completed (say, a ConnectionConflict) belongs to someone else.
        let known_id = status.connection_id.clone();
        // Deleting the CRD deletes every object of the kind: an uninstall, not a decision about the
        // data. Nothing is deleted in Adobe, and nothing waits for the dataflows (whose own objects
        // may outlive this kind's definition), so that the CRD's deletion never hangs.
        if self
            .ctx
            .definition_is_being_deleted(ServedKind::StreamingConnection)
            .await?
        {
            if known_id.is_none() && status.pending_create.is_none() {
                return Ok(Action::await_change());
            }
            return Ok(self
                .left_in_adobe(
                    known_id.as_deref(),
                    "the StreamingConnection CustomResourceDefinition is being deleted, and deleting it \
                     never deletes data in Adobe",
                )
                .await);
        }
        // The StreamingDataflows on this connection go first, whatever the policy: each needs the
        // connection's credentials and sandbox to delete its flow.
        let dataflows = self.ctx.dataflows_of(self.object);
        if !dataflows.is_empty() {
            return Err(Error::DataflowsExist {
                names: dataflows.join(", "),
            });
        }
        if self.object.spec.deletion_policy == DeletionPolicy::Orphan {
            if let Some(id) = &known_id {
                self.publish(
                    EventType::Normal,
                    Reason::Orphaned,
                    format!("Left connection {id} in place (deletionPolicy Orphan)"),
                )
                .await;
            }
            return Ok(Action::await_change());
        }
        if known_id.is_none() && status.pending_create.is_none() {
            return Ok(Action::await_change());
        }
        let secret_name = &self.object.spec.credentials_ref.name;
        let credentials = match self.credentials().await {
            Ok(credentials) => credentials,
            // `kubectl delete namespace` deletes the Secret before the finalizer runs: the
            // credentials last read from it (and the token they minted) still delete the connection.
            Err(Error::CredentialsNotFound { .. })
                if let Some(last) = self.ctx.last_credentials(&self.namespace, secret_name) =>
            {
                info!(
                    secret = %secret_name,
                    "the credentials Secret is gone; deleting with the credentials last read from it"
                );
                last
            }
            Err(
                error @ (Error::CredentialsNotFound { .. } | Error::CredentialsUnusable { .. }),
            ) => {
                // Without credentials nothing can be deleted; hanging forever would block the
                // namespace, so the connection is orphaned and the user told so.
                return Ok(self.left_in_adobe(known_id.as_deref(), error).await);
            }
            Err(error) => return Err(error),
        };
        let scope = Scope {
            credentials: &credentials,
            sandbox: &self.object.spec.sandbox,
        };
        let id = match (known_id, status.pending_create.as_ref()) {
            (Some(id), _) => id,
            (None, Some(marker)) => match self.resolve_pending_create(&scope, marker).await {
                Ok(Some(connection)) => connection.id,
                Ok(None) => return Ok(Action::await_change()),
                Err(error @ Error::AmbiguousCreate { .. }) => {
                    // Which one is ours cannot be told, so none is deleted rather than a wrong one.
                    return Ok(self
                        .orphaned(None, format!("Deleted nothing: {error}"))
                        .await);
                }
                Err(error) => return Err(error),
            },
            (None, None) => return Ok(Action::await_change()),
        };
        if let Some(owner) = self.ctx.owner_of(&id, self.object) {
            return Ok(self
                .orphaned(
                    Some(&id),
                    format!(
                        "Left connection {id} in place: StreamingConnection {owner} manages it now"
                    ),
                )
                .await);
        }
        self.ensure_leading()?;
        self.ctx
            .flow
            .delete_connection(&scope, &id)
            .await
            .map_err(|error| {
                if error.is_base_connection_in_use() {
                    let flows = error.flow_ids_named(&id);
                    Error::ConnectionInUse {
                        id: id.clone(),
                        flows: if flows.is_empty() {
                            "Flow Service did not name them".to_string()
                        } else {
                            flows.join(", ")
                        },
                    }
                } else {
                    Error::flow("deleting the connection")(error)
                }
            })?;
        info!(connection_id = %id, "deleted connection");
        self.publish(
            EventType::Normal,
            Reason::Deleted,
            format!("Deleted connection {id}"),
        )
        .await;
        Ok(Action::await_change())
    }

    /// [`Self::orphaned`], with the note "Left connection <id> (or the connection being created) in
    /// Adobe Experience Platform: <why>".
    async fn left_in_adobe(&self, id: Option<&str>, why: impl std::fmt::Display) -> Action {
        let what = id.map_or("the connection being created".to_string(), |id| {
            format!("connection {id}")
        });
        self.orphaned(
            id,
            format!("Left {what} in Adobe Experience Platform: {why}"),
        )
        .await
    }

    /// Lets the object go without deleting its connection, saying why in a Warning event and in
    /// the log (the event is refused while the namespace is being deleted; the log line remains).
    pub(super) async fn orphaned(&self, id: Option<&str>, note: String) -> Action {
        warn!(
            connection_id = id.unwrap_or("<unknown>"),
            sandbox = %self.object.spec.sandbox,
            note = %note,
            "left a connection in Adobe Experience Platform"
        );
        self.publish(EventType::Warning, Reason::Orphaned, note)
            .await;
        Action::await_change()
    }
}
