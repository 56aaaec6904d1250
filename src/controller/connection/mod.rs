//! One reconcile of one StreamingConnection, in the order [`Reconciliation::apply`] runs the steps, one
//! file per step:
//!
//! 1. `publish`: the credentials from the object's Secret (through the shared `credentials` step);
//! 2. `find`: the connection verified moments ago (or, at a process's first look, as its `Ready` status
//!    recorded it, read later at its phase), adopted, recorded (a 404 confirmed first), or else
//! 3. `create`: the crash-safe create (marker before the POST, id right after it, lookup by name after
//!    a crash, never a second connection);
//! 4. `update`: name/description brought in line with `If-Match`;
//! 5. `publish`: the ConfigMap with the inlet (through the shared `config_map` step);
//! 6. `record`: the status, written only when it changes and only over what was read;
//! 7. `cleanup`: on delete, the connection deleted or orphaned before the finalizer goes.

use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

mod cleanup;
mod create;
mod find;
mod publish;
mod record;
mod update;

pub use self::find::MISSING_CONFIRM_WINDOW;

use super::Context;
use super::desired;
use super::error::{Error, Result};
use super::reason::Reason;
use super::status::Progress;
use crate::api::{StreamingConnection, StreamingConnectionStatus};
use aep_flow::{Connection, Scope};

/// How soon to look again while Flow Service provisions a new connection's inlet.
const INLET_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The work on one object, with what every step needs.
pub(crate) struct Reconciliation<'a> {
    object: &'a StreamingConnection,
    ctx: &'a Context,
    namespace: String,
    connections: Api<StreamingConnection>,
    /// The status as last stored: what this process last wrote for the object, else what the
    /// cache holds. Every write compares against it, and a failure report builds on it, so that a
    /// marker written earlier in the same reconcile is never dropped, and a cache that lags behind
    /// our own writes (a watch broken by an API server restart) never hides a needed write.
    stored: StreamingConnectionStatus,
    /// The object's resourceVersion that goes with `stored`: claims are written with it as a
    /// precondition, so that two writers can never both claim.
    resource_version: Option<String>,
    /// The id and etag of a connection this reconcile created (or found after an interrupted
    /// create) and has not stored yet. Every status written from then on carries it in place of the
    /// marker; until one is written, the stored marker still leads a crashed operator to look the
    /// connection up by name. Saves the write of the id on its own.
    created: Option<(String, String)>,
    /// When the connection in hand was taken from the status at start instead of read: the
    /// instant its read is due (see `Context::trust_recorded_status`).
    read_due: Option<Instant>,
}

/// What a lookup found for the object, before anything is published.
struct Found {
    connection: Connection,
    /// Set when the connection was just created (the create-pending marker was resolved).
    created: bool,
}

/// The outcome of looking for the object's connection. Short-lived (one per reconcile), so the
/// size difference between its variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Lookup {
    Found(Found),
    /// Not decidable yet (a 404 being confirmed, a create settling, a same-name create in flight):
    /// record why in the conditions and look again after `retry_in`.
    Wait {
        reason: Reason,
        message: String,
        retry_in: Duration,
    },
}

impl<'a> Reconciliation<'a> {
    pub(crate) fn new(object: &'a StreamingConnection, ctx: &'a Context) -> Result<Self> {
        let namespace = object.namespace().ok_or_else(|| {
            Error::InvalidObject("a StreamingConnection must be namespaced".into())
        })?;
        let connections = Api::namespaced(ctx.client.clone(), &namespace);
        let cached = || {
            (
                object.status.clone().unwrap_or_default(),
                object.metadata.resource_version.clone(),
            )
        };
        // What this process wrote, unless the cache has caught up with it: then the cache's
        // resourceVersion is at least as new (other fields of the object may have changed since).
        let (stored, resource_version) = match ctx.written_status(object) {
            Some((written, _)) if object.status.as_ref() == Some(&written) => cached(),
            Some(written) => written,
            None => cached(),
        };
        Ok(Self {
            object,
            ctx,
            namespace,
            connections,
            stored,
            resource_version,
            created: None,
            read_due: None,
        })
    }

    /// Converges the object; on failure records the reason in the status and an event.
    pub(crate) async fn apply(&mut self) -> Result<Action> {
        match self.converge().await {
            Ok(action) => Ok(action),
            Err(error) => {
                self.report_failure(&error).await;
                Err(error)
            }
        }
    }

    pub(super) async fn converge(&mut self) -> Result<Action> {
        let credentials = self.credentials().await?;
        let scope = Scope {
            credentials: &credentials,
            sandbox: &self.object.spec.sandbox,
        };

        let found = match self.find_or_create(&scope).await? {
            Lookup::Found(found) => found,
            Lookup::Wait {
                reason,
                message,
                retry_in,
            } => {
                self.write_status(self.status(), &Progress::Reconciling { reason, message })
                    .await?;
                return Ok(self.defer(retry_in));
            }
        };
        let mut connection = found.connection;
        if found.created {
            self.publish(
                EventType::Normal,
                Reason::Created,
                format!("Created connection {}", connection.id),
            )
            .await;
        }

        if connection.inlet_url.is_none() {
            // A new connection's inlet takes a moment to provision; record the id now, look again soon.
            self.write_status(
                self.observed_status(&connection, None),
                &Progress::Reconciling {
                    reason: Reason::InletProvisioning,
                    message: format!(
                        "Waiting for Flow Service to provision the inlet of connection {}",
                        connection.id
                    ),
                },
            )
            .await?;
            return Ok(self.defer(INLET_POLL_INTERVAL));
        }

        let mut progress = Progress::Ready;
        if let Some(update) = desired::connection_update(self.object, &connection) {
            connection = match self.update_connection(&scope, connection, update).await? {
                update::Updated::Applied(connection) => connection,
                // Everything else goes on: the inlet is published and the object is Ready, with a
                // condition that says which change is not applied.
                update::Updated::NotAllowed {
                    connection,
                    message,
                } => {
                    progress = Progress::ReadyExcept {
                        reason: Reason::UpdateNotAllowed,
                        message,
                    };
                    connection
                }
            };
        }

        let config_map_name = self.publish_config_map(&connection).await?;
        self.write_status(
            self.observed_status(&connection, Some(config_map_name)),
            &progress,
        )
        .await?;
        if let Some(due) = self.read_due {
            // Not read yet: read at its phase, as the process before this one would have.
            return Ok(Action::requeue(
                due.saturating_duration_since(self.ctx.memory.now()),
            ));
        }
        self.ctx
            .remember_verified(self.object, connection, &credentials);
        Ok(Action::requeue(self.ctx.settings.resync_delay(&self.uid())))
    }

    /// Fencing: no Flow Service write unless this replica may write.
    pub(super) fn ensure_leading(&self) -> Result<()> {
        self.ctx.ensure_leading()
    }

    pub(super) fn uid(&self) -> String {
        self.object.uid().unwrap_or_default()
    }

    /// Nothing more to do before `delay`, unless the object or its Secret changes meanwhile.
    pub(super) fn defer(&self, delay: Duration) -> Action {
        self.ctx
            .memory
            .defer(&self.uid(), self.ctx.inputs(self.object), delay);
        Action::requeue(delay)
    }

    pub(super) async fn publish(&self, type_: EventType, reason: Reason, note: String) {
        self.ctx
            .publish_event(self.object, type_, reason, note)
            .await;
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}
