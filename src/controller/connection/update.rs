//! Bringing an existing connection in line with the spec: PATCH with `If-Match`, once more on a stale
//! etag; a PATCH the organization does not allow (`FLOW-1445-400`) is reported, not retried.

use kube::runtime::events::EventType;

use super::Reconciliation;
use crate::controller::desired;
use crate::controller::error::{Error, Result};
use crate::controller::reason::Reason;
use aep_flow::{Connection, ConnectionUpdate, FlowError, FlowErrorKind, Scope};

/// What became of a change the spec asks for.
pub(super) enum Updated {
    /// The connection matches the spec (updated, or found already matching on a re-read).
    Applied(Connection),
    /// Flow Service does not allow updating connections in the organization (`FLOW-1445-400`):
    /// the connection as it is, and the condition message that says what is not applied.
    NotAllowed {
        connection: Connection,
        message: String,
    },
}

impl Reconciliation<'_> {
    /// PATCHes name/description with `If-Match`; on a stale etag reads again and retries once.
    ///
    /// A `FLOW-1445-400` (PATCH of connections not enabled for the organization) is remembered for
    /// the object's current inputs (see `Memory::refuse_update`): the change is reported as not
    /// applied with one Warning event, the connection stays in use, and no PATCH is sent again until
    /// the spec, the Secret or the reconcile-requested-at annotation changes.
    pub(super) async fn update_connection(
        &self,
        scope: &Scope<'_>,
        connection: Connection,
        update: ConnectionUpdate,
    ) -> Result<Updated> {
        if self.ctx.update_refused(self.object) {
            let message = not_allowed_message(&update, None);
            return Ok(Updated::NotAllowed {
                connection,
                message,
            });
        }
        match self.patch(scope, connection, update).await {
            Err(Patch::NotAllowed {
                error,
                connection,
                update,
            }) => {
                self.ctx.refuse_update(self.object);
                let message = not_allowed_message(&update, Some(&error));
                self.publish(
                    EventType::Warning,
                    Reason::UpdateNotAllowed,
                    message.clone(),
                )
                .await;
                Ok(Updated::NotAllowed {
                    connection,
                    message,
                })
            }
            Err(Patch::Failed(error)) => Err(error),
            Ok(updated) => Ok(Updated::Applied(updated)),
        }
    }

    async fn patch(
        &self,
        scope: &Scope<'_>,
        mut connection: Connection,
        mut update: ConnectionUpdate,
    ) -> std::result::Result<Connection, Patch> {
        let flow = &self.ctx.flow;
        self.ensure_leading().map_err(Patch::Failed)?;
        let first = flow
            .update_connection(scope, &connection.id, &connection.etag, &update)
            .await;
        let updated = match first {
            Ok(updated) => updated,
            Err(error) if error.kind() == FlowErrorKind::PreconditionFailed => {
                connection = flow
                    .get_connection(scope, &connection.id)
                    .await
                    .map_err(Error::flow("re-reading the connection after a stale etag"))
                    .map_err(Patch::Failed)?;
                let Some(again) = desired::connection_update(self.object, &connection) else {
                    return Ok(connection);
                };
                update = again;
                self.ensure_leading().map_err(Patch::Failed)?;
                match flow
                    .update_connection(scope, &connection.id, &connection.etag, &update)
                    .await
                {
                    Ok(updated) => updated,
                    Err(error) => return Err(Patch::of(error, connection, update)),
                }
            }
            Err(error) => return Err(Patch::of(error, connection, update)),
        };
        if let Some(name) = update.name {
            connection.name = name;
        }
        if let Some(description) = update.description {
            connection.description = description;
        }
        connection.etag = updated.etag;
        self.publish(
            EventType::Normal,
            Reason::Updated,
            format!("Updated connection {} to match the spec", connection.id),
        )
        .await;
        Ok(connection)
    }
}

/// Why a PATCH did not go through. Short-lived (one per failed PATCH), so the size difference
/// between its variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Patch {
    NotAllowed {
        error: FlowError,
        connection: Connection,
        update: ConnectionUpdate,
    },
    Failed(Error),
}

impl Patch {
    fn of(error: FlowError, connection: Connection, update: ConnectionUpdate) -> Self {
        if error.is_update_not_enabled() {
            Patch::NotAllowed {
                error,
                connection,
                update,
            }
        } else {
            Patch::Failed(Error::flow("updating the connection")(error))
        }
    }
}

/// The condition (and event) text for a change Flow Service does not allow: which fields, why, and
/// what makes the operator try again.
fn not_allowed_message(update: &ConnectionUpdate, error: Option<&FlowError>) -> String {
    let mut fields = Vec::new();
    if update.name.is_some() {
        fields.push("spec.connectionName");
    }
    if update.description.is_some() {
        fields.push("spec.description");
    }
    let code = error
        .and_then(FlowError::error_code)
        .unwrap_or("FLOW-1445-400");
    format!(
        "The change of {} is not applied: Flow Service does not allow updating connections in this \
         organization ({code}, PATCH Connection Feature not enabled). The connection and its inlet \
         are in use as they are; the change is tried again when the object changes (or with the \
         reconcile-requested-at annotation once Adobe has enabled the feature).",
        fields.join(" and ")
    )
}
