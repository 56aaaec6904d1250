//! The crash-safe create: the create-pending marker is stored before the POST and the id right after it, so
//! that whatever stops the operator in between, the next reconcile looks the connection up by name instead of
//! creating a second one. And the watch for a create that commits after its answer was lost.

use std::time::Duration;

use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::{Found, INLET_POLL_INTERVAL, Lookup, Reconciliation, now};
use crate::api::PendingCreate;
use crate::controller::desired;
use crate::controller::error::{Error, Result};
use crate::controller::memory::LateCommitWatch;
use crate::controller::reason::Reason;
use crate::controller::status::Progress;
use aep_flow::{Connection, FlowError, FlowErrorKind, Scope};

/// Connections created up to this long before the marker's timestamp still count as candidates
/// when a pending create is resolved: the operator's and Adobe's clocks are not synchronised.
const CLOCK_SKEW_ALLOWANCE_MS: i64 = 5 * 60 * 1000;
/// How long after a create that followed an unanswered one the resyncs look for a late commit.
const LATE_COMMIT_WATCH: Duration = Duration::from_secs(60 * 60);

impl Reconciliation<'_> {
    /// Creates the connection: marker first, then the POST, then the id, each durably stored.
    pub(super) async fn create(&mut self, scope: &Scope<'_>) -> Result<Lookup> {
        let request = desired::new_connection(self.object);
        let mut marked = self.status();
        // A marker left by an earlier attempt keeps its (earlier) start: the lookup window only grows.
        let retrying = marked.pending_create.is_some();
        let started_at = marked
            .pending_create
            .as_ref()
            .map(|m| m.started_at.clone())
            .unwrap_or_else(now);
        marked.pending_create = Some(PendingCreate {
            connection_name: request.name.clone(),
            started_at,
            attempted_at: Some(now()),
        });
        self.ensure_leading()?;
        // Credentials that IMS rejects stop here, before the marker is written (a write, and a
        // lookup by name on the next attempt, for a create that could never have been sent).
        self.ctx
            .flow
            .authenticate(scope.credentials)
            .await
            .map_err(Error::flow("authenticating with IMS"))?;
        // The marker is the claim to create: written with the resourceVersion that was read, so
        // that of two writers (two processes, a lost leader) only one goes on to the POST.
        // A retry keeps the conditions that report the last failure: only the marker's time changes.
        let progress = if retrying {
            Progress::Unchanged
        } else {
            Progress::Reconciling {
                reason: Reason::Creating,
                message: format!(
                    "Creating connection `{}` in sandbox `{}`",
                    request.name, scope.sandbox
                ),
            }
        };
        self.write_claim(marked, &progress, "the create-pending marker")
            .await?;

        self.ensure_leading()?;
        let result = self.ctx.flow.create_connection(scope, &request).await;
        // Answered (or certainly not sent): nothing can commit later, a lookup need not wait.
        let answered = result
            .as_ref()
            .map_or_else(FlowError::was_answered, |_| true);
        self.ctx
            .memory
            .with(&self.uid(), |memory| memory.create_answered = answered);
        let created = match result {
            Ok(created) => created,
            Err(error) => {
                if error.is_permanent() {
                    // Refused for good: the marker claims nothing, and the object waits for a
                    // change. A transient refusal (a 429, say) keeps it: the retry then costs a
                    // lookup by name but no marker write, and a throttled lookup writes nothing.
                    self.stored.pending_create = None;
                }
                return Err(Error::flow("creating the connection")(error));
            }
        };
        info!(connection_id = %created.id, "created connection");
        self.claim_connection(&created.id)?;
        // The id is written with the next status (the inlet, Ready, or a failure): the marker
        // stays stored until then, so a crash in between costs a lookup by name, never a duplicate.
        self.created = Some((created.id.clone(), created.etag.clone()));

        match self.ctx.flow.get_connection(scope, &created.id).await {
            Ok(connection) => Ok(Lookup::Found(Found {
                connection,
                created: true,
            })),
            // Eventual consistency right after a 201: the id is recorded, the next reconciles
            // confirm it (and only after a confirmed absence create again).
            Err(error) if error.kind() == FlowErrorKind::NotFound => {
                self.record_created(&created.id, &created.etag).await?;
                self.publish(
                    EventType::Normal,
                    Reason::Created,
                    format!("Created connection {}", created.id),
                )
                .await;
                Ok(Lookup::Wait {
                    reason: Reason::InletProvisioning,
                    message: format!(
                        "Created connection {}; waiting for Flow Service to show it",
                        created.id
                    ),
                    retry_in: INLET_POLL_INTERVAL,
                })
            }
            Err(error) => Err(Error::flow("reading the new connection")(error)),
        }
    }

    /// Stores the id of a connection that is now this object's and clears the marker.
    pub(super) async fn record_created(&mut self, id: &str, etag: &str) -> Result<()> {
        let mut next = self.status();
        next.connection_id = Some(id.to_string());
        next.etag = Some(etag.to_string());
        next.pending_create = None;
        self.write_status(
            next,
            &Progress::Reconciling {
                reason: Reason::InletProvisioning,
                message: format!("Connection {id} exists; publishing its inlet"),
            },
        )
        .await
    }

    /// While a create whose answer never came may still be committed by Flow Service, a lookup
    /// by name could miss it and lead to a second create: wait until it has settled.
    pub(super) fn create_settling(&self, marker: &PendingCreate) -> Option<Lookup> {
        let sent = marker.attempted_at.as_ref().unwrap_or(&marker.started_at);
        let retry_in = self.ctx.unsettled_for(&self.uid(), sent)?;
        Some(Lookup::Wait {
            reason: Reason::ConfirmingCreate,
            message: format!(
                "A create request for `{}` got no answer and may still be committed; \
                 looking it up by name once it has settled",
                marker.connection_name
            ),
            retry_in,
        })
    }

    /// After an interrupted create: the connection this object created, if the POST was committed.
    pub(super) async fn resolve_pending_create(
        &self,
        scope: &Scope<'_>,
        marker: &PendingCreate,
    ) -> Result<Option<Connection>> {
        let candidates = self.created_since(scope, marker).await?;
        match candidates.len() {
            0 => Ok(None),
            1 => Ok(candidates.into_iter().next()),
            count => Err(Error::AmbiguousCreate {
                connection_name: marker.connection_name.clone(),
                candidates: count,
                ids: candidates
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Connections named exactly like the marker, created since it, matching the spec, owned by
    /// no one else. The name is compared here too: the server-side filter's equality (trailing
    /// spaces, case, Unicode forms) is not something the lookup may depend on.
    pub(super) async fn created_since(
        &self,
        scope: &Scope<'_>,
        marker: &PendingCreate,
    ) -> Result<Vec<Connection>> {
        let since = marker.started_at.0.as_millisecond() - CLOCK_SKEW_ALLOWANCE_MS;
        let found = self
            .ctx
            .flow
            .find_connections_by_name(scope, &marker.connection_name)
            .await
            .map_err(Error::flow(
                "checking by name whether an earlier create request went through",
            ))?;
        Ok(self.unclaimed_matches(found, &marker.connection_name, since))
    }

    /// Of the connections `found` by name: those named exactly `name` (the server-side filter's
    /// equality is not something to depend on), created since `since_ms`, matching the spec, and
    /// managed by no other object.
    fn unclaimed_matches(
        &self,
        found: Vec<Connection>,
        name: &str,
        since_ms: i64,
    ) -> Vec<Connection> {
        found
            .into_iter()
            .filter(|c| c.name == name)
            .filter(|c| c.created_at.is_none_or(|created| created >= since_ms))
            .filter(|c| desired::adoption_mismatch(self.object, c).is_none())
            .filter(|c| self.ctx.owner_of(&c.id, self.object).is_none())
            .collect()
    }

    /// Whether the latest create request of this object got an answer (or was certainly not sent):
    /// then nothing can commit later.
    fn create_answered(&self) -> bool {
        self.ctx
            .memory
            .read(&self.uid(), |memory| memory.create_answered)
            .unwrap_or(false)
    }

    /// A create whose answer never came may commit after the lookup by name found nothing and a
    /// second create went ahead: watch for it on the next resyncs.
    pub(super) fn watch_for_late_commit(&self, marker: &PendingCreate) {
        if self.create_answered() {
            return;
        }
        let watch = LateCommitWatch {
            connection_name: marker.connection_name.clone(),
            since_ms: marker.started_at.0.as_millisecond() - CLOCK_SKEW_ALLOWANCE_MS,
            until: self.ctx.memory.now() + LATE_COMMIT_WATCH,
        };
        self.ctx
            .memory
            .with(&self.uid(), |memory| memory.late_commit_watch = Some(watch));
    }

    /// Reports connections that a late commit left behind: named like this object's unanswered
    /// create, created since it, matching the spec, referenced by nobody. They cannot be proven
    /// to be ours (another tool could have made one), so they are reported, not deleted.
    pub(super) async fn report_late_commits(&self, scope: &Scope<'_>, own_id: &str) {
        let now = self.ctx.memory.now();
        let Some(watch) = self
            .ctx
            .memory
            .read(&self.uid(), |memory| memory.late_commit_watch.clone())
            .flatten()
        else {
            return;
        };
        if now >= watch.until {
            self.ctx
                .memory
                .with(&self.uid(), |memory| memory.late_commit_watch = None);
            return;
        }
        let Ok(found) = self
            .ctx
            .flow
            .find_connections_by_name(scope, &watch.connection_name)
            .await
        else {
            return;
        };
        let extra: Vec<String> = self
            .unclaimed_matches(found, &watch.connection_name, watch.since_ms)
            .into_iter()
            .map(|c| c.id)
            .filter(|id| id != own_id)
            .collect();
        if extra.is_empty() {
            return;
        }
        let ids = extra.join(", ");
        warn!(connection_ids = %ids, "a create committed late left unreferenced connections");
        self.publish(
            EventType::Warning,
            Reason::DuplicateFound,
            format!(
                "Connection(s) {ids} named `{}` appeared after a create request of this object got no \
                 answer; this object uses {own_id} and nothing references them: delete them in Adobe \
                 Experience Platform if nothing else uses them",
                watch.connection_name
            ),
        )
        .await;
        self.ctx
            .memory
            .with(&self.uid(), |memory| memory.late_commit_watch = None);
    }
}
