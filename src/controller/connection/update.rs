//! Bringing an existing connection in line with the spec: PATCH with `If-Match`, once more on a stale etag.

use kube::runtime::events::EventType;

use super::Reconciliation;
use crate::controller::desired;
use crate::controller::error::{Error, Result};
use crate::controller::reason::Reason;
use aep_flow::{Connection, FlowErrorKind, Scope};

impl Reconciliation<'_> {
    /// PATCHes name/description with `If-Match`; on a stale etag reads again and retries once.
    pub(super) async fn update_connection(
        &self,
        scope: &Scope<'_>,
        mut connection: Connection,
        update: aep_flow::ConnectionUpdate,
    ) -> Result<Connection> {
        let flow = &self.ctx.flow;
        self.ensure_leading()?;
        let updated = match flow
            .update_connection(scope, &connection.id, &connection.etag, &update)
            .await
        {
            Ok(updated) => updated,
            Err(error) if error.kind() == FlowErrorKind::PreconditionFailed => {
                connection = flow
                    .get_connection(scope, &connection.id)
                    .await
                    .map_err(Error::flow("re-reading the connection after a stale etag"))?;
                let Some(update) = desired::connection_update(self.object, &connection) else {
                    return Ok(connection);
                };
                self.ensure_leading()?;
                flow.update_connection(scope, &connection.id, &connection.etag, &update)
                    .await
                    .map_err(Error::flow("updating the connection"))?
            }
            Err(error) => return Err(Error::flow("updating the connection")(error)),
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
