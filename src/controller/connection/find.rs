//! Finding the object's connection: the one verified moments ago, the adopted one (`spec.connectionId`), the
//! recorded one (with a 404 confirmed before it is taken for deleted), or else a create.

use std::time::Duration;

use kube::runtime::events::EventType;
use tracing::{debug, info, warn};

use super::{Found, Lookup, Reconciliation};
use crate::controller::desired;
use crate::controller::error::{Error, Result};
use crate::controller::memory::CreationName;
use crate::controller::reason::Reason;
use aep_flow::{Connection, FlowErrorKind, Scope};

/// A connection that answered 404 is only taken for deleted after this many reads...
const MISSING_CONFIRM_READS: u32 = 3;
/// ...spread over at least this long (Flow Service is eventually consistent: a connection can
/// answer 404 for a moment right after its create returned 201).
pub const MISSING_CONFIRM_WINDOW: Duration = Duration::from_secs(30);
/// How soon to look again while another object of this process creates a connection of the same name.
const SAME_NAME_POLL_INTERVAL: Duration = Duration::from_secs(2);

impl Reconciliation<'_> {
    /// Finds the connection this object manages, adopting or creating it when needed.
    pub(super) async fn find_or_create(&mut self, scope: &Scope<'_>) -> Result<Lookup> {
        let existing = |connection| {
            Ok(Lookup::Found(Found {
                connection,
                created: false,
            }))
        };
        let status = self.status();
        // The reconciles that our own writes trigger need not ask Flow Service again, nor does the
        // first look after a start at an object that was Ready: its read comes at its phase.
        if let Some(id) = status.connection_id.as_deref()
            && let Some(verified) = self
                .ctx
                .recently_verified(self.object, id, scope.credentials)
                .or_else(|| {
                    self.ctx
                        .trust_recorded_status(self.object, &status, scope.credentials)
                })
        {
            self.read_due = verified.read_due;
            return existing(verified.connection);
        }
        if let Some(id) = &self.object.spec.connection_id {
            let adopting = status.connection_id.as_deref() != Some(id.as_str());
            // Read with this object's own credentials first: a connection is only ever claimed
            // by an object that can read it.
            let connection = match self.ctx.flow.get_connection(scope, id).await {
                Ok(connection) => connection,
                Err(error) if error.kind() == FlowErrorKind::NotFound => {
                    return Err(Error::AdoptedConnectionNotFound {
                        id: id.clone(),
                        sandbox: self.object.spec.sandbox.clone(),
                    });
                }
                Err(error) => return Err(Error::flow("reading the connection to adopt")(error)),
            };
            if adopting {
                self.check_adoptable(&connection)?;
                // Claimed in this process now; durably by the status write that follows.
                self.claim_connection(&connection.id)?;
                self.publish(
                    EventType::Normal,
                    Reason::Adopted,
                    format!("Adopted existing connection {id}"),
                )
                .await;
            }
            return existing(connection);
        }

        if let Some(id) = status.connection_id.clone() {
            match self.ctx.flow.get_connection(scope, &id).await {
                Ok(connection) => {
                    self.clear_missing();
                    self.report_late_commits(scope, &id).await;
                    return existing(connection);
                }
                Err(error) if error.kind() == FlowErrorKind::NotFound => {
                    if let Some(wait) = self.confirm_missing(scope, &id).await? {
                        return Ok(wait);
                    }
                }
                Err(error) => return Err(Error::flow("reading the connection")(error)),
            }
        }

        let name = desired::new_connection(self.object).name;
        let name_key = CreationName {
            org_id: scope.credentials.org_id().to_string(),
            sandbox: scope.sandbox.to_string(),
            name: name.clone(),
        };
        // One create per connection name at a time in this process: a lookup by name after an
        // unanswered create can then tell whose connection it found.
        if let Err(holder) = self.ctx.memory.claim_name(&name_key, &self.uid()) {
            let holder = self
                .ctx
                .name_of_uid(&holder)
                .unwrap_or_else(|| "another StreamingConnection".to_string());
            return Ok(Lookup::Wait {
                reason: Reason::WaitingForSameName,
                message: format!(
                    "StreamingConnection {holder} is creating a connection named `{name}`; \
                     waiting for it to finish before creating this one"
                ),
                retry_in: SAME_NAME_POLL_INTERVAL,
            });
        }

        if let Some(marker) = status.pending_create.clone() {
            if let Some(wait) = self.create_settling(&marker) {
                return Ok(wait);
            }
            match self.resolve_pending_create(scope, &marker).await? {
                Some(connection) => {
                    info!(connection_id = %connection.id, "resumed an interrupted create");
                    self.claim_connection(&connection.id)?;
                    // Written with the next status, as after a create.
                    self.created = Some((connection.id.clone(), connection.etag.clone()));
                    self.ctx.memory.release_name(&name_key, &self.uid());
                    self.publish(
                        EventType::Normal,
                        Reason::CreateResumed,
                        format!(
                            "Found connection {} from an interrupted create; using it",
                            connection.id
                        ),
                    )
                    .await;
                    return existing(connection);
                }
                None => {
                    info!("an interrupted create never reached Flow Service; creating again");
                    self.watch_for_late_commit(&marker);
                }
            }
        }

        let created = self.create(scope).await;
        let resolved = match &created {
            Ok(_) => true,
            // Certainly not applied: nothing to resolve later.
            Err(Error::FlowService { source, .. }) => !source.maybe_committed(),
            Err(_) => false,
        };
        if resolved {
            self.ctx.memory.release_name(&name_key, &self.uid());
        }
        created
    }

    pub(super) fn check_adoptable(&self, connection: &Connection) -> Result<()> {
        if let Some(why) = desired::adoption_mismatch(self.object, connection) {
            return Err(Error::ConnectionConflict {
                id: connection.id.clone(),
                why,
            });
        }
        if let Some(owner) = self.ctx.owner_of(&connection.id, self.object) {
            return Err(Error::ConnectionConflict {
                id: connection.id.clone(),
                why: format!("StreamingConnection {owner} already manages it"),
            });
        }
        Ok(())
    }

    /// Claims connection `id` for this object in this process; the loser learns who won.
    pub(super) fn claim_connection(&self, id: &str) -> Result<()> {
        self.ctx
            .memory
            .claim_id(id, &self.uid())
            .map_err(|_| Error::ConnectionConflict {
                id: id.to_string(),
                why: format!(
                    "StreamingConnection {} already manages it",
                    self.ctx
                        .owner_of(id, self.object)
                        .unwrap_or_else(|| "another StreamingConnection".into())
                ),
            })
    }

    /// Flow Service answered 404 for the recorded connection. Eventual consistency can do that
    /// for a moment (right after a create, say), so it is only taken for deleted once a lookup by
    /// name does not list it either, after several reads over [`MISSING_CONFIRM_WINDOW`]. Returns
    /// `None` when it is confirmed gone (the status forgets it), else what to wait for.
    pub(super) async fn confirm_missing(
        &mut self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<Option<Lookup>> {
        let name = desired::new_connection(self.object).name;
        let listed = self
            .ctx
            .flow
            .find_connections_by_name(scope, &name)
            .await
            .map_err(Error::flow("confirming that the connection is gone"))?;
        if let Some(connection) = listed.into_iter().find(|c| c.id == id) {
            // Listed, so it exists: the read was stale. Use what the list returned.
            debug!(connection_id = %id, "a read answered 404 but the connection is listed");
            return Ok(Some(Lookup::Found(Found {
                connection,
                created: false,
            })));
        }
        let window = self.ctx.settings.missing_confirm_window;
        let (reads, elapsed) = match self.ctx.memory.note_missing(
            &self.uid(),
            id,
            MISSING_CONFIRM_READS,
            window,
        ) {
            Ok(confirmed) => confirmed,
            Err(retry_in) => {
                return Ok(Some(Lookup::Wait {
                    reason: Reason::ConfirmingDeletion,
                    message: format!(
                        "Flow Service answers 404 for connection {id} and does not list it under the name \
                         `{name}`; confirming that it is gone before creating a new one"
                    ),
                    retry_in,
                }));
            }
        };
        self.publish(
            EventType::Warning,
            Reason::Recreated,
            format!(
                "Connection {id} was deleted outside the operator: {} reads over {}s answered 404 and \
                 no connection with that id is listed under the name `{name}`; creating a new one",
                reads,
                elapsed.as_secs()
            ),
        )
        .await;
        warn!(connection_id = %id, reads, "connection deleted outside the operator; recreating");
        self.clear_missing();
        self.forget_connection();
        Ok(None)
    }

    pub(super) fn clear_missing(&self) {
        self.ctx.memory.clear_missing(&self.uid());
    }

    /// The connection was deleted out of band: what the status says about it is no longer true.
    pub(super) fn forget_connection(&mut self) {
        let stored = &mut self.stored;
        stored.connection_id = None;
        stored.etag = None;
        stored.inlet_id = None;
        stored.inlet_url = None;
        stored.state = None;
    }
}
