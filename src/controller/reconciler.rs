//! One reconcile of one StreamingConnection: read the Secret, find or create the connection, bring
//! it in line with the spec, publish the ConfigMap, write the status. And the cleanup on delete.
//!
//! The order of writes is what makes a create crash-safe: the create-pending marker is stored in the
//! status before the POST, and the connection id right after it. Whatever stops the operator in
//! between, the next reconcile finds the marker and looks the connection up by name instead of
//! creating a second one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::Context;
use super::desired;
use super::error::{Error, Result};
use super::memory::{LateCommitWatch, Missing, backoff_delay};
use super::reason::Reason;
use super::status::{self, Progress};
use crate::api::{
    API_GROUP, API_VERSION, DeletionPolicy, FIELD_MANAGER, PendingCreate, StreamingConnection,
    StreamingConnectionStatus,
};
use aep_flow::{Connection, Credentials, FlowErrorKind, Scope};

/// Connections created up to this long before the marker's timestamp still count as candidates
/// when a pending create is resolved: the operator's and Adobe's clocks are not synchronised.
const CLOCK_SKEW_ALLOWANCE_MS: i64 = 5 * 60 * 1000;
/// How soon to look again while Flow Service provisions a new connection's inlet.
const INLET_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// A connection that answered 404 is only taken for deleted after this many reads...
const MISSING_CONFIRM_READS: u32 = 3;
/// ...spread over at least this long (Flow Service is eventually consistent: a connection can
/// answer 404 for a moment right after its create returned 201).
pub const MISSING_CONFIRM_WINDOW: Duration = Duration::from_secs(30);
/// How long after a create that followed an unanswered one the resyncs look for a late commit.
const LATE_COMMIT_WATCH: Duration = Duration::from_secs(60 * 60);
/// How soon to look again while another object of this process creates a connection of the same name.
const SAME_NAME_POLL_INTERVAL: Duration = Duration::from_secs(2);

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
    stored: Mutex<StreamingConnectionStatus>,
    /// The object's resourceVersion that goes with `stored`: claims are written with it as a
    /// precondition, so that two writers can never both claim.
    resource_version: Mutex<Option<String>>,
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
            stored: Mutex::new(stored),
            resource_version: Mutex::new(resource_version),
        })
    }

    /// Writes the first status of a new object: `Reconciling`, not yet `Ready`, not `Stalled`.
    ///
    /// A JSON merge patch, not an apply: it runs right after the finalizer patch, whose new
    /// resourceVersion it does not know, and it must not remove what another writer (a second
    /// operator process) may have stored meanwhile, such as a create-pending marker.
    pub(crate) async fn acknowledge(&self) -> Result<()> {
        let progress = Progress::Reconciling {
            reason: Reason::Initializing,
            message: "The operator has seen the object and is starting to reconcile it".to_string(),
        };
        let generation = self.object.metadata.generation;
        let conditions = status::conditions(&[], &progress, generation, &now());
        let patch = json!({"status": {"observedGeneration": generation, "conditions": conditions}});
        let written = self
            .connections
            .patch_status(
                &self.object.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(Error::kube("writing the first status"))?;
        self.stored_as(written, StreamingConnectionStatus::default());
        Ok(())
    }

    /// Takes what a status write returned as the stored status (`fallback` when the answer had
    /// none) and its resourceVersion as the one the next write is conditional on.
    fn stored_as(&self, written: StreamingConnection, fallback: StreamingConnectionStatus) {
        let resource_version = written.metadata.resource_version;
        let stored = written.status.unwrap_or(fallback);
        self.ctx
            .remember_status(self.object, &stored, resource_version.clone());
        *self.stored.lock().expect("status lock") = stored;
        *self.resource_version.lock().expect("version lock") = resource_version;
    }

    /// Converges the object; on failure records the reason in the status and an event.
    pub(crate) async fn apply(&self) -> Result<Action> {
        match self.converge().await {
            Ok(action) => Ok(action),
            Err(error) => {
                self.report_failure(&error).await;
                Err(error)
            }
        }
    }

    async fn converge(&self) -> Result<Action> {
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

        if let Some(update) = desired::connection_update(self.object, &connection) {
            connection = self.update_connection(&scope, connection, update).await?;
        }

        let config_map_name = self.publish_config_map(&connection).await?;
        self.write_status(
            self.observed_status(&connection, Some(config_map_name)),
            &Progress::Ready,
        )
        .await?;
        self.ctx
            .remember_verified(self.object, connection, &credentials);
        Ok(Action::requeue(self.ctx.settings.jittered_resync()))
    }

    /// Reads the credentials Secret from the object's own namespace (never another one).
    async fn credentials(&self) -> Result<Credentials> {
        let name = &self.object.spec.credentials_ref.name;
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(Error::kube("reading the credentials Secret"))?
            .ok_or_else(|| Error::CredentialsNotFound {
                namespace: self.namespace.clone(),
                name: name.clone(),
            })?;
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect();
        // A new resourceVersion means new credentials: tokens are cached per version.
        let cache_key = format!(
            "{}/{}",
            secret.metadata.uid.unwrap_or_default(),
            secret.metadata.resource_version.unwrap_or_default()
        );
        let credentials = Credentials::from_secret_data(&data, cache_key).map_err(|source| {
            Error::CredentialsUnusable {
                name: name.clone(),
                source,
            }
        })?;
        self.ctx
            .remember_credentials(&self.namespace, name, &credentials);
        Ok(credentials)
    }

    /// Finds the connection this object manages, adopting or creating it when needed.
    async fn find_or_create(&self, scope: &Scope<'_>) -> Result<Lookup> {
        let existing = |connection| {
            Ok(Lookup::Found(Found {
                connection,
                created: false,
            }))
        };
        let status = self.status();
        // The reconciles that our own writes trigger need not ask Flow Service again.
        if let Some(id) = status.connection_id.as_deref()
            && let Some(connection) = self
                .ctx
                .recently_verified(self.object, id, scope.credentials)
        {
            return existing(connection);
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
        let name_key = format!("{}/{}/{}", scope.credentials.org_id(), scope.sandbox, name);
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
                    self.record_created(&connection.id, &connection.etag)
                        .await?;
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

    /// Flow Service answered 404 for the recorded connection. Eventual consistency can do that
    /// for a moment (right after a create, say), so it is only taken for deleted once a lookup by
    /// name does not list it either, after several reads over [`MISSING_CONFIRM_WINDOW`]. Returns
    /// `None` when it is confirmed gone (the status forgets it), else what to wait for.
    async fn confirm_missing(&self, scope: &Scope<'_>, id: &str) -> Result<Option<Lookup>> {
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
        let now = self.ctx.memory.now();
        let missing = self.ctx.memory.with(&self.uid(), |memory| {
            let missing = match memory.missing.take() {
                Some(missing) if missing.id == id => Missing {
                    reads: missing.reads + 1,
                    ..missing
                },
                _ => Missing {
                    id: id.to_string(),
                    since: now,
                    reads: 1,
                },
            };
            memory.missing = Some(missing.clone());
            missing
        });
        let window = self.ctx.settings.missing_confirm_window;
        let elapsed = now.saturating_duration_since(missing.since);
        if missing.reads < MISSING_CONFIRM_READS || elapsed < window {
            let retry_in = backoff_delay(missing.reads)
                .max(Duration::from_secs(1))
                .min(window.saturating_sub(elapsed).max(Duration::from_secs(1)));
            return Ok(Some(Lookup::Wait {
                reason: Reason::ConfirmingDeletion,
                message: format!(
                    "Flow Service answers 404 for connection {id} and does not list it under the name \
                     `{name}`; confirming that it is gone before creating a new one"
                ),
                retry_in,
            }));
        }
        self.publish(
            EventType::Warning,
            Reason::Recreated,
            format!(
                "Connection {id} was deleted outside the operator: {} reads over {}s answered 404 and \
                 no connection with that id is listed under the name `{name}`; creating a new one",
                missing.reads,
                elapsed.as_secs()
            ),
        )
        .await;
        warn!(connection_id = %id, reads = missing.reads, "connection deleted outside the operator; recreating");
        self.clear_missing();
        self.forget_connection();
        Ok(None)
    }

    /// A create whose answer never came may commit after the lookup by name found nothing and a
    /// second create went ahead: watch for it on the next resyncs.
    fn watch_for_late_commit(&self, marker: &PendingCreate) {
        let answered = self
            .ctx
            .memory
            .read(&self.uid(), |memory| memory.create_answered)
            .unwrap_or(false);
        if answered {
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
    async fn report_late_commits(&self, scope: &Scope<'_>, own_id: &str) {
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
        let extra: Vec<String> = found
            .into_iter()
            .filter(|c| c.id != own_id && c.name == watch.connection_name)
            .filter(|c| c.created_at.is_none_or(|created| created >= watch.since_ms))
            .filter(|c| desired::adoption_mismatch(self.object, c).is_none())
            .filter(|c| self.ctx.owner_of(&c.id, self.object).is_none())
            .map(|c| c.id)
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

    fn clear_missing(&self) {
        self.ctx
            .memory
            .with(&self.uid(), |memory| memory.missing = None);
    }

    /// While a create whose answer never came may still be committed by Flow Service, a lookup
    /// by name could miss it and lead to a second create: wait until it has settled.
    fn create_settling(&self, marker: &PendingCreate) -> Option<Lookup> {
        let answered = self
            .ctx
            .memory
            .read(&self.uid(), |memory| memory.create_answered)
            .unwrap_or(false);
        if answered {
            return None;
        }
        let sent = marker.attempted_at.as_ref().unwrap_or(&marker.started_at);
        let settled_at = sent.0.as_millisecond()
            + i64::try_from(self.ctx.settings.create_settle.as_millis()).unwrap_or(i64::MAX);
        let left = settled_at - Timestamp::now().as_millisecond();
        (left > 0).then(|| Lookup::Wait {
            reason: Reason::ConfirmingCreate,
            message: format!(
                "A create request for `{}` got no answer and may still be committed; \
                 looking it up by name once it has settled",
                marker.connection_name
            ),
            retry_in: Duration::from_millis(u64::try_from(left).unwrap_or(0)),
        })
    }

    /// Creates the connection: marker first, then the POST, then the id, each durably stored.
    async fn create(&self, scope: &Scope<'_>) -> Result<Lookup> {
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
        let answered = match &result {
            Ok(_) => true,
            Err(error) => {
                !error.maybe_committed() || error.details().is_some_and(|d| d.status.is_some())
            }
        };
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
                    self.stored.lock().expect("status lock").pending_create = None;
                }
                return Err(Error::flow("creating the connection")(error));
            }
        };
        info!(connection_id = %created.id, "created connection");
        self.claim_connection(&created.id)?;
        self.record_created(&created.id, &created.etag).await?;

        match self.ctx.flow.get_connection(scope, &created.id).await {
            Ok(connection) => Ok(Lookup::Found(Found {
                connection,
                created: true,
            })),
            // Eventual consistency right after a 201: the id is recorded, the next reconciles
            // confirm it (and only after a confirmed absence create again).
            Err(error) if error.kind() == FlowErrorKind::NotFound => {
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
    async fn record_created(&self, id: &str, etag: &str) -> Result<()> {
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

    /// After an interrupted create: the connection this object created, if the POST was committed.
    async fn resolve_pending_create(
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
    async fn created_since(
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
        Ok(found
            .into_iter()
            .filter(|c| c.name == marker.connection_name)
            .filter(|c| c.created_at.is_none_or(|created| created >= since))
            .filter(|c| desired::adoption_mismatch(self.object, c).is_none())
            .filter(|c| self.ctx.owner_of(&c.id, self.object).is_none())
            .collect())
    }

    fn check_adoptable(&self, connection: &Connection) -> Result<()> {
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
    fn claim_connection(&self, id: &str) -> Result<()> {
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

    /// Fencing: no Flow Service write unless this replica may write.
    fn ensure_leading(&self) -> Result<()> {
        if self.ctx.fence.is_valid() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    fn uid(&self) -> String {
        self.object.uid().unwrap_or_default()
    }

    /// Nothing more to do before `delay`, unless the object or its Secret changes meanwhile.
    fn defer(&self, delay: Duration) -> Action {
        self.ctx
            .memory
            .defer(&self.uid(), self.ctx.inputs(self.object), delay);
        Action::requeue(delay)
    }

    /// PATCHes name/description with `If-Match`; on a stale etag reads again and retries once.
    async fn update_connection(
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

    /// Applies the ConfigMap unless it is already current; refuses to take over one it does not own.
    async fn publish_config_map(&self, connection: &Connection) -> Result<String> {
        let desired = desired::config_map(self.object, connection);
        let name = desired.metadata.name.clone().unwrap_or_default();
        let config_maps: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let uid = self.object.uid();
        match config_maps
            .get_opt(&name)
            .await
            .map_err(Error::kube("reading the ConfigMap"))?
        {
            Some(existing) if !desired::owned_by(&existing, uid.as_deref()) => {
                return Err(Error::ConfigMapConflict { name });
            }
            Some(existing) if desired::config_map_is_current(&existing, &desired) => {}
            _ => {
                config_maps
                    .patch(
                        &name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&desired),
                    )
                    .await
                    .map_err(Error::kube("applying the ConfigMap"))?;
            }
        }
        // spec.configMap.name changed: the old ConfigMap is ours and now stale.
        let previous = self.status().config_map_name;
        if let Some(previous) = previous.as_deref().filter(|previous| *previous != name)
            && let Some(old) = config_maps
                .get_opt(previous)
                .await
                .map_err(Error::kube("reading the old ConfigMap"))?
            && desired::owned_by(&old, uid.as_deref())
        {
            config_maps
                .delete(previous, &DeleteParams::default())
                .await
                .map_err(Error::kube("deleting the old ConfigMap"))?;
        }
        Ok(name)
    }

    /// The status that describes `connection`, keeping what else the current status holds.
    fn observed_status(
        &self,
        connection: &Connection,
        config_map_name: Option<String>,
    ) -> StreamingConnectionStatus {
        let current = self.status();
        StreamingConnectionStatus {
            connection_id: Some(connection.id.clone()),
            etag: Some(connection.etag.clone()),
            inlet_id: connection.inlet_id.clone(),
            inlet_url: connection.inlet_url.clone(),
            state: Some(connection.state.clone()),
            config_map_name: config_map_name.or_else(|| current.config_map_name.clone()),
            pending_create: None,
            ..current
        }
    }

    /// The status as last stored.
    fn status(&self) -> StreamingConnectionStatus {
        self.stored.lock().expect("status lock").clone()
    }

    /// The connection was deleted out of band: what the status says about it is no longer true.
    fn forget_connection(&self) {
        let mut stored = self.stored.lock().expect("status lock");
        stored.connection_id = None;
        stored.etag = None;
        stored.inlet_id = None;
        stored.inlet_url = None;
        stored.state = None;
    }

    /// Writes `next` with the conditions for `progress`, unless that changes nothing. Like every
    /// status write, only if nobody wrote the object since it was read (see [`Self::write_claim`]):
    /// an apply replaces every field of the field manager, so a write from a stale view would
    /// remove what another writer under the same manager (a second process) stored meanwhile.
    async fn write_status(
        &self,
        next: StreamingConnectionStatus,
        progress: &Progress,
    ) -> Result<()> {
        self.write_claim(next, progress, "the status").await
    }

    /// Writes the status only if nobody wrote the object since it was read: the write carries
    /// that resourceVersion, and a conflict means another writer got there first.
    async fn write_claim(
        &self,
        next: StreamingConnectionStatus,
        progress: &Progress,
        what: &'static str,
    ) -> Result<()> {
        match self.patch_status(next, progress, what).await {
            Err(Error::Kubernetes {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 409 => {
                // What this process remembers writing is not the latest: read afresh next time.
                self.ctx.forget_written_status(self.object);
                Err(Error::ClaimConflict { what })
            }
            other => other,
        }
    }

    async fn patch_status(
        &self,
        mut next: StreamingConnectionStatus,
        progress: &Progress,
        what: &'static str,
    ) -> Result<()> {
        let current = self.status();
        let generation = self.object.metadata.generation;
        let timestamp = now();
        next.observed_generation = generation;
        next.conditions = status::conditions(&current.conditions, progress, generation, &timestamp);
        if !status::needs_write(Some(&current), &next) {
            return Ok(());
        }
        next.last_synced_at = Some(timestamp);
        let mut patch = json!({
            "apiVersion": format!("{API_GROUP}/{API_VERSION}"),
            "kind": "StreamingConnection",
            "status": next,
        });
        let resource_version = self.resource_version.lock().expect("version lock").clone();
        if let Some(resource_version) = resource_version {
            patch["metadata"] = json!({ "resourceVersion": resource_version });
        }
        let written = self
            .connections
            .patch_status(
                &self.object.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(Error::kube(what))?;
        self.stored_as(written, next);
        Ok(())
    }

    /// Records a failed reconcile: the conditions get the error's stable text (the same for every
    /// attempt that fails the same way, so a failing object writes its status once), the Warning
    /// event and the log the full text with the request id.
    async fn report_failure(&self, error: &Error) {
        let message = error.to_string();
        if matches!(error, Error::NotLeader | Error::ClaimConflict { .. }) {
            // Another writer holds the object: this replica must not write over it.
            info!(reason = error.reason().as_str(), error = %message, "gave way to another writer");
            return;
        }
        warn!(reason = error.reason().as_str(), error = %message, "reconcile failed");
        let condition = error.condition_message();
        let progress = if error.is_permanent() {
            Progress::Stalled {
                reason: error.reason(),
                message: condition,
            }
        } else {
            Progress::Reconciling {
                reason: error.reason(),
                message: condition,
            }
        };
        if let Err(status_error) = self.write_status(self.status(), &progress).await {
            warn!(error = %status_error, "could not record the failure in the status");
        }
        self.publish(EventType::Warning, error.reason(), message)
            .await;
    }

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

    async fn delete_or_orphan(&self) -> Result<Action> {
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
    async fn orphaned(&self, id: Option<&str>, note: String) -> Action {
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

    async fn publish(&self, type_: EventType, reason: Reason, note: String) {
        if let Err(error) = self
            .ctx
            .events
            .publish(&self.object.object_ref(&()), type_, reason, note)
            .await
        {
            warn!(%error, reason = reason.as_str(), "could not publish an event");
        }
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}
