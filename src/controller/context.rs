//! What the controller knows between reconciles: its settings, the clients, and the per-object memory
//! (what was written, what was verified, the failure gate's inputs, claims, the last credentials).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::core::PartialObjectMeta;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use super::desired::namespaced_name;
use super::error::Error;
use super::events::EventPublisher;
use super::memory::{Inputs, Memory, Verified};
use super::reason::Reason;
use crate::api::{
    RECONCILE_REQUESTED_AT_ANNOTATION, ServedKind, StreamingConnection, StreamingConnectionStatus,
    StreamingDataflow, StreamingDataflowStatus,
};
use crate::leader::Fence;
use crate::metrics::Metrics;
use aep_flow::{Connection, Credentials, FlowClient};

/// Tunables of the controller, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often a Ready object is checked against Flow Service (±10% jitter).
    pub resync_interval: Duration,
    /// How many objects are reconciled at once.
    pub max_concurrent_reconciles: u16,
    /// Watch this namespace only.
    pub namespace: Option<String>,
    /// How long after a create request whose answer never came the platform may still commit it
    /// (the client's request timeout plus a settle delay): the lookup by name waits that long
    /// before it concludes that nothing was created.
    pub create_settle: Duration,
    /// How long a recorded connection must keep answering 404 (and stay unlisted by name) before
    /// it is taken for deleted outside the operator and created again.
    pub missing_confirm_window: Duration,
}

/// The settle delay added to the request timeout for [`Settings::create_settle`].
pub const CREATE_SETTLE_DELAY: Duration = Duration::from_secs(30);

impl Settings {
    /// How long until the object with `uid` is next checked against Flow Service. Every object has its
    /// own phase in the resync interval (from its uid), and is checked when the wall clock reaches it,
    /// at least 0.6 of an interval after now: objects created together, or found together when the
    /// operator starts, are spread evenly over the interval within one round, instead of resyncing
    /// together for ever (a jitter around the interval would only widen the crowd a little each time).
    /// The phase is the same in every process, so a restart keeps the spread.
    pub fn resync_delay(&self, uid: &str) -> Duration {
        resync_delay_at(self.resync_interval, uid, wall_clock())
    }

    /// How long until the object with `uid` reaches its phase of the resync interval next, from now
    /// (less than one interval): when a new process (a restart, a new leader) takes over an object
    /// the previous one checked at that phase, it checks it at the same moment the previous one would
    /// have, so the reads stay spread over the interval instead of all coming at the start.
    pub fn next_phase_delay(&self, uid: &str) -> Duration {
        phase_delay_at(self.resync_interval, uid, wall_clock(), Duration::ZERO)
    }
}

fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// [`Settings::resync_delay`] at wall-clock time `now` (since the epoch).
fn resync_delay_at(interval: Duration, uid: &str, now: Duration) -> Duration {
    phase_delay_at(interval, uid, now, interval.mul_f64(0.6))
}

/// The time from `now` (since the epoch) to the first instant at least `at_least` later at which
/// the wall clock reaches the phase of `uid` in `interval`.
fn phase_delay_at(interval: Duration, uid: &str, now: Duration, at_least: Duration) -> Duration {
    let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    if interval_ms == 0 {
        return Duration::ZERO;
    }
    let phase = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        uid.hash(&mut hasher);
        hasher.finish() % interval_ms
    };
    let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
    let earliest = now_ms.saturating_add(u64::try_from(at_least.as_millis()).unwrap_or(u64::MAX));
    // The first instant at or after `earliest` whose offset in the interval is the phase.
    let offset = earliest % interval_ms;
    let wait = (phase + interval_ms - offset) % interval_ms;
    Duration::from_millis(earliest - now_ms + wait)
}

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client (the operator's own service account).
    pub client: Client,
    /// The Flow Service and IMS client, with its token cache and rate limit.
    pub flow: FlowClient,
    /// Publishes Kubernetes events.
    pub(super) events: EventPublisher,
    /// Every watched StreamingConnection: who owns which connection id.
    pub connections: Store<StreamingConnection>,
    /// Every watched StreamingDataflow: which ones still use a connection being deleted.
    pub dataflows: Store<StreamingDataflow>,
    pub settings: Settings,
    /// Reconcile counters and timings.
    pub metrics: Arc<Metrics>,
    /// Valid while this replica may write to Flow Service (it leads, or runs without election).
    pub(super) fence: Fence,
    /// What is remembered per object between reconciles.
    pub(super) memory: Memory,
    /// The credentials last read per Secret (namespace/name): to drop a token when the Secret
    /// changes, and to delete a connection when the namespace's teardown removed the Secret first.
    credentials_by_secret: Mutex<HashMap<SecretKey, Credentials>>,
    /// The resourceVersion of every Secret as the Secret watch last reported it (namespace/name).
    secret_versions: Mutex<HashMap<SecretKey, String>>,
}

impl Context {
    pub fn new(
        client: Client,
        flow: FlowClient,
        connections: Store<StreamingConnection>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            events: EventPublisher::new(client.clone()),
            client,
            flow,
            connections,
            dataflows: kube::runtime::reflector::store().0,
            settings,
            metrics,
            fence: Fence::unfenced(),
            memory: Memory::default(),
            credentials_by_secret: Mutex::default(),
            secret_versions: Mutex::default(),
        }
    }

    /// True when the kind's own CustomResourceDefinition is being deleted. The API server then deletes
    /// every object of the kind: the user removed the operator's API (an uninstall, a GitOps prune), not
    /// the objects, so nothing may be deleted in Adobe. An unreadable answer is an error (retried), never
    /// taken for "no": a wrong "no" would delete data. A definition that is not there at all cannot have
    /// objects being deleted by it (the API server removes the objects before the definition).
    pub(crate) async fn definition_is_being_deleted(
        &self,
        kind: ServedKind,
    ) -> Result<bool, Error> {
        let definitions: kube::Api<CustomResourceDefinition> = kube::Api::all(self.client.clone());
        let definition = definitions
            .get_metadata_opt(kind.crd_name())
            .await
            .map_err(|source| Error::Kubernetes {
                context: "reading whether the CustomResourceDefinition is being deleted",
                source,
            })?;
        Ok(definition.is_some_and(|definition| definition.metadata.deletion_timestamp.is_some()))
    }

    /// Moves the controller's clock forward, as if `by` had passed: retries and waits come due
    /// sooner. For tests that measure what an object costs over a simulated time window.
    #[doc(hidden)]
    pub fn advance_clock(&self, by: Duration) {
        self.memory.advance_clock(by);
    }

    /// Reads the StreamingDataflows from `dataflows` (the dataflow controller's cache).
    pub fn with_dataflows(mut self, dataflows: Store<StreamingDataflow>) -> Self {
        self.dataflows = dataflows;
        self
    }

    /// `namespace/name` of every StreamingDataflow that uses StreamingConnection `object`, sorted.
    pub fn dataflows_of(&self, object: &StreamingConnection) -> Vec<String> {
        let namespace = object.namespace();
        let name = object.name_any();
        let mut names: Vec<String> = self
            .dataflows
            .state()
            .iter()
            .filter(|dataflow| {
                dataflow.namespace() == namespace && dataflow.spec.connection_ref.name == name
            })
            .map(|dataflow| namespaced_name(dataflow.as_ref()))
            .collect();
        names.sort();
        names
    }

    /// The StreamingConnection a StreamingDataflow refers to, from the cache.
    pub fn connection_of(&self, dataflow: &StreamingDataflow) -> Option<Arc<StreamingConnection>> {
        let namespace = dataflow.namespace();
        self.connections.find(|connection| {
            connection.namespace() == namespace
                && connection.name_any() == dataflow.spec.connection_ref.name
        })
    }

    /// Only writes to Flow Service while `fence` is valid.
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// The StreamingConnection (other than `object`) that manages connection `id`, as `namespace/name`:
    /// one whose status records it (a completed claim), or one that claimed it in this process a
    /// moment ago. A `spec.connectionId` alone is no claim: an object whose credentials cannot even
    /// read the connection must not keep its real owner from deleting it.
    pub fn owner_of(&self, id: &str, object: &StreamingConnection) -> Option<String> {
        let own_uid = object.uid();
        if let Some(found) = self.connections.find(|other| {
            other.uid() != own_uid
                && other.metadata.deletion_timestamp.is_none()
                && other
                    .status
                    .as_ref()
                    .and_then(|s| s.connection_id.as_deref())
                    == Some(id)
        }) {
            return Some(namespaced_name(found.as_ref()));
        }
        let claimant = self.memory.claimant_of(id)?;
        if Some(&claimant) == own_uid.as_ref() {
            return None;
        }
        self.name_of_uid(&claimant)
    }

    /// `namespace/name` of the watched StreamingConnection with this uid.
    pub(super) fn name_of_uid(&self, uid: &str) -> Option<String> {
        self.connections
            .find(|other| other.uid().as_deref() == Some(uid))
            .map(|other| namespaced_name(other.as_ref()))
    }

    /// The status this process last wrote for `object` and the resourceVersion it got back.
    pub(super) fn written_status(
        &self,
        object: &StreamingConnection,
    ) -> Option<(StreamingConnectionStatus, Option<String>)> {
        let uid = object.uid()?;
        self.memory.read(&uid, |m| m.written.clone()).flatten()
    }

    pub(super) fn remember_status(
        &self,
        object: &StreamingConnection,
        status: &StreamingConnectionStatus,
        resource_version: Option<String>,
    ) {
        if let Some(uid) = object.uid() {
            self.memory.with(&uid, |m| {
                m.written = Some((status.clone(), resource_version))
            });
        }
    }

    /// Forgets what this process wrote for `object` (another writer got in between).
    pub(super) fn forget_written_status(&self, object: &StreamingConnection) {
        if let Some(uid) = object.uid() {
            self.memory.with(&uid, |m| m.written = None);
        }
    }

    /// True while Flow Service's refusal to update `object`'s connection (`FLOW-1445-400`) holds:
    /// none of the object's inputs changed since.
    pub(super) fn update_refused(&self, object: &StreamingConnection) -> bool {
        object
            .uid()
            .is_some_and(|uid| self.memory.update_refused(&uid, &self.inputs(object)))
    }

    /// Remembers that Flow Service refused to update `object`'s connection (`FLOW-1445-400`).
    pub(super) fn refuse_update(&self, object: &StreamingConnection) {
        if let Some(uid) = object.uid() {
            self.memory.refuse_update(&uid, self.inputs(object));
        }
    }

    /// The connection this process confirmed for `object` less than half a resync interval ago,
    /// if neither the spec, the credentials nor the reconcile-requested-at annotation changed since.
    /// Periodic resyncs (at least 0.9 of the interval apart) and on-demand checks always read it
    /// again; so does the first reconcile after a Secret changed, to find out whether it works.
    /// A connection taken from the status at start (see [`Self::trust_recorded_status`]) stands
    /// for a read until its `read_due` instead.
    pub(super) fn recently_verified(
        &self,
        object: &StreamingConnection,
        id: &str,
        credentials: &Credentials,
    ) -> Option<Verified> {
        let uid = object.uid()?;
        let half_resync = self.settings.resync_interval / 2;
        let now = self.memory.now();
        self.memory
            .read(&uid, |m| {
                let entry = m.verified.as_ref()?;
                let fresh_until = entry.read_due.unwrap_or(entry.at + half_resync);
                let fresh = entry.connection.id == id
                    && entry.credentials == credentials.cache_key()
                    && entry.generation == object.metadata.generation
                    && entry.requested_at.as_deref() == reconcile_requested_at(object)
                    && now < fresh_until;
                fresh.then(|| entry.clone())
            })
            .flatten()
    }

    /// The first look at `object` in this process (after a start, or when this replica became the
    /// leader): when its status says it was Ready for this generation, with nothing pending
    /// ([`desired::recorded_connection`]), the connection it records is taken as read, and the read
    /// itself is due at the object's phase of the resync interval ([`Settings::next_phase_delay`]),
    /// when the previous process would have made it. So a restart does not read every connection at
    /// once: the reads stay spread over the interval, one per object, and no object is left unread
    /// longer than in steady state. Everything else of the reconcile still runs (the Secret is
    /// read, the ConfigMap repaired). Not when the reconcile-requested-at annotation is set (the
    /// status does not say whether it was handled: the object is read now), nor a second time.
    pub(super) fn trust_recorded_status(
        &self,
        object: &StreamingConnection,
        status: &StreamingConnectionStatus,
        credentials: &Credentials,
    ) -> Option<Verified> {
        let uid = object.uid()?;
        if self.settings.resync_interval.is_zero() || reconcile_requested_at(object).is_some() {
            return None;
        }
        let now = self.memory.now();
        self.memory.with(&uid, |m| {
            // Verified once, in this process: from then on every read is a real one.
            if m.verified.is_some() {
                return None;
            }
            let entry = Verified {
                connection: super::desired::recorded_connection(object, status)?,
                credentials: credentials.cache_key().to_string(),
                generation: object.metadata.generation,
                requested_at: None,
                at: now,
                read_due: Some(now + self.settings.next_phase_delay(&uid)),
            };
            m.verified = Some(entry.clone());
            Some(entry)
        })
    }

    /// For StreamingDataflow `object`: as [`Self::trust_recorded_status`] for a StreamingConnection,
    /// the first look after a start takes a status that says `Ready` for this generation, with the
    /// flow and its schema recorded and nothing pending, for a read of the chain (dataset, flow,
    /// runs), due at the object's phase of the resync interval. Until then, reconciles with the same
    /// `basis` (credentials, connection, inlet) and generation read nothing from Flow Service.
    pub(super) fn dataflow_read_due(
        &self,
        object: &StreamingDataflow,
        status: &StreamingDataflowStatus,
        basis: String,
    ) -> Option<Instant> {
        let uid = object.uid()?;
        let generation = object.metadata.generation;
        let trusted = !self.settings.resync_interval.is_zero()
            && !object
                .annotations()
                .contains_key(RECONCILE_REQUESTED_AT_ANNOTATION)
            && super::status::plainly_ready(&status.conditions, generation)
            && status.observed_generation == generation
            && status.flow_id.is_some()
            && status.schema_ref.is_some()
            && status.pending_create.is_none();
        let basis = format!("{generation:?}/{basis}");
        let now = self.memory.now();
        self.memory.with(&uid, |m| match &mut m.dataflow_read_due {
            Some((trusted_basis, due)) if trusted && *trusted_basis == basis && now < *due => {
                Some(*due)
            }
            // Once taken, the entry stays (expired from the first mismatch on): the status stands
            // for a read only once per process.
            Some((_, due)) => {
                *due = (*due).min(now);
                None
            }
            None if trusted => {
                let due = now + self.settings.next_phase_delay(&uid);
                m.dataflow_read_due = Some((basis, due));
                Some(due)
            }
            None => None,
        })
    }

    pub(super) fn remember_verified(
        &self,
        object: &StreamingConnection,
        connection: Connection,
        credentials: &Credentials,
    ) {
        if let Some(uid) = object.uid() {
            let entry = Verified {
                connection,
                credentials: credentials.cache_key().to_string(),
                generation: object.metadata.generation,
                requested_at: reconcile_requested_at(object).map(str::to_string),
                at: self.memory.now(),
                read_due: None,
            };
            self.memory.with(&uid, |m| m.verified = Some(entry));
        }
    }

    /// Fencing: no Flow Service write unless this replica may write (it leads, or runs without
    /// election).
    pub(super) fn ensure_leading(&self) -> Result<(), Error> {
        if self.fence.is_valid() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }

    /// Publishes an event about `object`; a failure to publish is logged, never fatal.
    pub(super) async fn publish_event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: Reason,
        note: String,
    ) {
        if let Err(error) = self
            .events
            .publish(&object.object_ref(&()), type_, reason, note)
            .await
        {
            warn!(%error, reason = reason.as_str(), "could not publish an event");
        }
    }

    /// How long a create request of object `uid`, sent at `sent`, may still be committed by Flow
    /// Service: `None` when it got an answer (nothing can commit later) or has settled. Until then a
    /// lookup by name could miss it and lead to a second create.
    pub(super) fn unsettled_for(&self, uid: &str, sent: &Time) -> Option<Duration> {
        let answered = self
            .memory
            .read(uid, |memory| memory.create_answered)
            .unwrap_or(false);
        if answered {
            return None;
        }
        let settled_at = sent.0.as_millisecond()
            + i64::try_from(self.settings.create_settle.as_millis()).unwrap_or(i64::MAX);
        let left = settled_at - Timestamp::now().as_millisecond();
        (left > 0).then(|| Duration::from_millis(u64::try_from(left).unwrap_or(0)))
    }

    /// Forgets everything remembered about the object with this uid (it is gone).
    pub(super) fn forget_uid(&self, uid: &str) {
        self.memory.forget(uid);
        self.events.forget(uid);
    }

    /// What the next reconcile of `object` depends on, for the failure gate.
    pub(super) fn inputs(&self, object: &StreamingConnection) -> Inputs {
        let secret = secret_key(
            &object.namespace().unwrap_or_default(),
            &object.spec.credentials_ref.name,
        );
        let deleting = object.metadata.deletion_timestamp.is_some();
        Inputs {
            generation: object.metadata.generation,
            requested_at: reconcile_requested_at(object).map(str::to_string),
            deleting,
            secret_version: self.secret_version(&secret),
            // A deletion waits for the dataflows that use the connection: one going away opens
            // the gate.
            dependency: deleting.then(|| self.dataflows_of(object).join(",")),
        }
    }

    /// What the next reconcile of StreamingDataflow `object` depends on, for the failure gate: its
    /// own generation and annotation, and its StreamingConnection's state and Secret.
    pub(super) fn dataflow_inputs(&self, object: &StreamingDataflow) -> Inputs {
        let connection = self.connection_of(object);
        let secret_version = connection.as_ref().and_then(|connection| {
            self.secret_version(&secret_key(
                &connection.namespace().unwrap_or_default(),
                &connection.spec.credentials_ref.name,
            ))
        });
        let dependency = connection.map_or_else(
            || "absent".to_string(),
            |connection| {
                let status = connection.status.clone().unwrap_or_default();
                format!(
                    "{}/{:?}/{}/{:?}/{:?}",
                    connection.uid().unwrap_or_default(),
                    connection.metadata.generation,
                    super::status::is_ready(
                        connection.status.as_ref(),
                        connection.metadata.generation
                    ),
                    status.connection_id,
                    status.inlet_url,
                )
            },
        );
        Inputs {
            generation: object.metadata.generation,
            requested_at: object
                .annotations()
                .get(RECONCILE_REQUESTED_AT_ANNOTATION)
                .cloned(),
            deleting: object.metadata.deletion_timestamp.is_some(),
            secret_version,
            dependency: Some(dependency),
        }
    }

    fn secret_version(&self, secret: &SecretKey) -> Option<String> {
        self.secret_versions
            .lock()
            .expect("secret versions lock")
            .get(secret)
            .cloned()
    }

    /// Notes a Secret's version as the watch reports it.
    pub(super) fn secret_seen(&self, secret: &PartialObjectMeta<Secret>) {
        let key = secret_key(&secret.namespace().unwrap_or_default(), &secret.name_any());
        if let Some(version) = secret.metadata.resource_version.clone() {
            self.secret_versions
                .lock()
                .expect("secret versions lock")
                .insert(key, version);
        }
    }

    /// Notes the credentials in use for their Secret; when the Secret changed, the token minted
    /// for its previous version is dropped.
    pub(super) fn remember_credentials(
        &self,
        namespace: &str,
        secret_name: &str,
        credentials: &Credentials,
    ) {
        let previous = self
            .credentials_by_secret
            .lock()
            .expect("credentials lock")
            .insert(secret_key(namespace, secret_name), credentials.clone());
        if let Some(previous) = previous
            && previous.cache_key() != credentials.cache_key()
        {
            self.flow.forget_token(&previous);
        }
    }

    /// The credentials last read from a Secret that may be gone now.
    pub(super) fn last_credentials(
        &self,
        namespace: &str,
        secret_name: &str,
    ) -> Option<Credentials> {
        self.credentials_by_secret
            .lock()
            .expect("credentials lock")
            .get(&secret_key(namespace, secret_name))
            .cloned()
    }
}

/// A Secret by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SecretKey {
    namespace: String,
    name: String,
}

pub(super) fn secret_key(namespace: &str, name: &str) -> SecretKey {
    SecretKey {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// The value of the on-demand drift-check annotation.
pub(super) fn reconcile_requested_at(object: &StreamingConnection) -> Option<&str> {
    object
        .annotations()
        .get(RECONCILE_REQUESTED_AT_ANNOTATION)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resyncs_are_spread_evenly_over_the_interval_at_a_phase_that_survives_a_restart() {
        let interval = Duration::from_secs(600);
        let now = Duration::from_secs(1_800_000_000);
        let uids: Vec<String> = (0..3000).map(|i| format!("uid-{i:04}")).collect();
        let mut per_minute = [0usize; 10];
        for uid in &uids {
            let delay = resync_delay_at(interval, uid, now);
            assert!(
                delay >= interval.mul_f64(0.6) && delay < interval.mul_f64(1.6),
                "{delay:?}"
            );
            let due = now + delay;
            per_minute[usize::try_from((due.as_secs() % 600) / 60).unwrap()] += 1;
            // The same phase from another moment (a restart, a later round): due at the same offset.
            let later = now + Duration::from_secs(7777);
            let again = later + resync_delay_at(interval, uid, later);
            assert_eq!(again.as_millis() % 600_000, due.as_millis() % 600_000);
            // A new process's first read of an object it trusts the status of: the same phase,
            // within one interval from now.
            let first = phase_delay_at(interval, uid, now, Duration::ZERO);
            assert!(first < interval, "{first:?}");
            assert_eq!(
                (now + first).as_millis() % 600_000,
                due.as_millis() % 600_000
            );
        }
        // 3,000 objects due at the same moment would all land in one minute; spread, each minute of
        // the interval gets about a tenth.
        for count in per_minute {
            assert!((240..=360).contains(&count), "{per_minute:?}");
        }
    }

    #[test]
    fn without_a_resync_interval_there_is_no_delay() {
        assert_eq!(
            resync_delay_at(Duration::ZERO, "uid", Duration::from_secs(5)),
            Duration::ZERO
        );
    }
}
