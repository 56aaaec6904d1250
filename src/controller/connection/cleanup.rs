//! On delete: the connection is deleted (or orphaned, with the reason said) before the finalizer goes.

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::Reconciliation;
use crate::api::DeletionPolicy;
use crate::controller::error::{Error, Result};
use crate::controller::reason::Reason;
use aep_flow::Scope;

impl Reconciliation<'_> {
    /// Deletes (or orphans) the connection before the finalizer is removed. Idempotent. A failure
    /// is reported as an event that says how to let the object go anyway.
    pub(crate) async fn cleanup(&self) -> Result<Action> {
        let result = self.delete_or_orphan().await;
        if let Err(error) = &result {
            let hint = if error.is_permanent() {
                "; to delete the object without deleting the connection, set spec.deletionPolicy to Orphan"
            } else {
                ""
            };
            warn!(reason = error.reason().as_str(), %error, "cleanup failed");
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
                let what = known_id
                    .as_deref()
                    .map_or("the connection being created".to_string(), |id| {
                        format!("connection {id}")
                    });
                return Ok(self
                    .orphaned(
                        known_id.as_deref(),
                        format!("Left {what} in Adobe Experience Platform: {error}"),
                    )
                    .await);
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
            .map_err(Error::flow("deleting the connection"))?;
        info!(connection_id = %id, "deleted connection");
        self.publish(
            EventType::Normal,
            Reason::Deleted,
            format!("Deleted connection {id}"),
        )
        .await;
        Ok(Action::await_change())
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
