//! The controller: watches StreamingConnections (and the Secrets and ConfigMaps they use) and
//! converges each one through [`reconcile`]. The steps of one reconcile live in `reconciler`; the
//! pure computations in `desired` and `status`.

pub mod desired;
pub mod error;
mod events;
mod memory;
pub mod reason;
mod reconciler;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{self, Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rand::Rng;
use tracing::{Instrument, debug, info_span, warn};

pub use self::error::{Error, Result};
use self::events::EventPublisher;
pub use self::memory::{INITIAL_RETRY_DELAY, MAX_RETRY_DELAY};
use self::memory::{Inputs, Memory, Verified};
pub use self::reason::Reason;
pub use self::reconciler::MISSING_CONFIRM_WINDOW;
use self::reconciler::Reconciliation;
use crate::api::{
    FIELD_MANAGER, FINALIZER, RECONCILE_REQUESTED_AT_ANNOTATION, StreamingConnection,
    StreamingConnectionStatus,
};
use crate::http::Health;
use crate::leader::Fence;
use crate::metrics::{Metrics, ReconcileResult};
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
    /// The resync interval with ±10% jitter, so that objects created together do not resync together.
    pub fn jittered_resync(&self) -> Duration {
        self.resync_interval
            .mul_f64(rand::rng().random_range(0.9..1.1))
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client (the operator's own service account).
    pub client: Client,
    /// The Flow Service and IMS client, with its token cache and rate limit.
    pub flow: FlowClient,
    /// Publishes Kubernetes events.
    events: EventPublisher,
    /// Every watched StreamingConnection: who owns which connection id.
    pub connections: Store<StreamingConnection>,
    pub settings: Settings,
    /// Reconcile counters and timings.
    pub metrics: Arc<Metrics>,
    /// Valid while this replica may write to Flow Service (it leads, or runs without election).
    fence: Fence,
    /// What is remembered per object between reconciles.
    memory: Memory,
    /// The credentials last read per Secret (namespace/name): to drop a token when the Secret
    /// changes, and to delete a connection when the namespace's teardown removed the Secret first.
    credentials_by_secret: Mutex<HashMap<String, Credentials>>,
    /// The resourceVersion of every Secret as the Secret watch last reported it (namespace/name).
    secret_versions: Mutex<HashMap<String, String>>,
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
            settings,
            metrics,
            fence: Fence::unfenced(),
            memory: Memory::default(),
            credentials_by_secret: Mutex::default(),
            secret_versions: Mutex::default(),
        }
    }

    /// Moves the controller's clock forward, as if `by` had passed: retries and waits come due
    /// sooner. For tests that measure what an object costs over a simulated time window.
    #[doc(hidden)]
    pub fn advance_clock(&self, by: Duration) {
        self.memory.advance_clock(by);
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
            return Some(namespaced_name(&found));
        }
        let claimant = self.memory.claimant_of(id)?;
        if Some(&claimant) == own_uid.as_ref() {
            return None;
        }
        self.name_of_uid(&claimant)
    }

    /// `namespace/name` of the watched StreamingConnection with this uid.
    fn name_of_uid(&self, uid: &str) -> Option<String> {
        self.connections
            .find(|other| other.uid().as_deref() == Some(uid))
            .map(|other| namespaced_name(&other))
    }

    /// The status this process last wrote for `object` and the resourceVersion it got back.
    fn written_status(
        &self,
        object: &StreamingConnection,
    ) -> Option<(StreamingConnectionStatus, Option<String>)> {
        let uid = object.uid()?;
        self.memory.read(&uid, |m| m.written.clone()).flatten()
    }

    fn remember_status(
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
    fn forget_written_status(&self, object: &StreamingConnection) {
        if let Some(uid) = object.uid() {
            self.memory.with(&uid, |m| m.written = None);
        }
    }

    /// The connection this process confirmed for `object` less than half a resync interval ago,
    /// if neither the spec, the credentials nor the reconcile-requested-at annotation changed since.
    /// Periodic resyncs (at least 0.9 of the interval apart) and on-demand checks always read it
    /// again; so does the first reconcile after a Secret changed, to find out whether it works.
    fn recently_verified(
        &self,
        object: &StreamingConnection,
        id: &str,
        credentials: &Credentials,
    ) -> Option<Connection> {
        let uid = object.uid()?;
        let half_resync = self.settings.resync_interval / 2;
        self.memory
            .read(&uid, |m| {
                let entry = m.verified.as_ref()?;
                let fresh = entry.connection.id == id
                    && entry.credentials == credentials.cache_key()
                    && entry.generation == object.metadata.generation
                    && entry.requested_at.as_deref() == reconcile_requested_at(object)
                    && self.memory.now().saturating_duration_since(entry.at) < half_resync;
                fresh.then(|| entry.connection.clone())
            })
            .flatten()
    }

    fn remember_verified(
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
            };
            self.memory.with(&uid, |m| m.verified = Some(entry));
        }
    }

    fn forget_object(&self, object: &StreamingConnection) {
        if let Some(uid) = object.uid() {
            self.memory.forget(&uid);
            self.events.forget(&uid);
        }
    }

    /// What the next reconcile of `object` depends on, for the failure gate.
    fn inputs(&self, object: &StreamingConnection) -> Inputs {
        let secret = secret_key(
            &object.namespace().unwrap_or_default(),
            &object.spec.credentials_ref.name,
        );
        Inputs {
            generation: object.metadata.generation,
            requested_at: reconcile_requested_at(object).map(str::to_string),
            deleting: object.metadata.deletion_timestamp.is_some(),
            secret_version: self
                .secret_versions
                .lock()
                .expect("secret versions lock")
                .get(&secret)
                .cloned(),
        }
    }

    /// Notes a Secret's version as the watch reports it.
    fn secret_seen(&self, secret: &PartialObjectMeta<Secret>) {
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
    fn remember_credentials(&self, namespace: &str, secret_name: &str, credentials: &Credentials) {
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
    fn last_credentials(&self, namespace: &str, secret_name: &str) -> Option<Credentials> {
        self.credentials_by_secret
            .lock()
            .expect("credentials lock")
            .get(&secret_key(namespace, secret_name))
            .cloned()
    }
}

fn namespaced_name(object: &StreamingConnection) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

fn secret_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The value of the on-demand drift-check annotation.
fn reconcile_requested_at(object: &StreamingConnection) -> Option<&str> {
    object
        .annotations()
        .get(RECONCILE_REQUESTED_AT_ANNOTATION)
        .map(String::as_str)
}

/// Reconciles one StreamingConnection: the failure gate, the finalizer, then apply or cleanup.
pub async fn reconcile(object: Arc<StreamingConnection>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!(
        "reconcile",
        namespace = object.namespace().unwrap_or_default(),
        name = object.name_any(),
        generation = object.metadata.generation
    );
    let started = std::time::Instant::now();
    let uid = object.uid().unwrap_or_default();
    // After a failure nothing is tried again before its time, whatever triggered this reconcile
    // (the operator's own status write, an owned ConfigMap, a relist): a broken object stays quiet.
    if let Some(wait) = ctx.memory.gate(&uid, &ctx.inputs(&object)) {
        debug!(parent: &span, retry_in = ?wait, "the last failure still holds; nothing to do yet");
        ctx.metrics
            .reconciled(ReconcileResult::Deferred, started.elapsed());
        return Ok(wait.map_or_else(Action::await_change, Action::requeue));
    }
    ctx.memory.start_attempt(&uid);
    let result = async {
        let namespace = object.namespace().ok_or_else(|| {
            Error::InvalidObject("a StreamingConnection must be namespaced".into())
        })?;
        let api: Api<StreamingConnection> = Api::namespaced(ctx.client.clone(), &namespace);
        let first_sight = object.status.is_none()
            && object.metadata.deletion_timestamp.is_none()
            && !object.finalizers().iter().any(|f| f == FINALIZER);
        let outcome = finalizer(&api, FINALIZER, object.clone(), |event| async {
            match event {
                Finalizer::Apply(object) => Reconciliation::new(&object, &ctx)?.apply().await,
                Finalizer::Cleanup(object) => {
                    let action = Reconciliation::new(&object, &ctx)?.cleanup().await?;
                    ctx.forget_object(&object);
                    Ok(action)
                }
            }
        })
        .await;
        let action = match outcome {
            Ok(action) => action,
            Err(finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error)) => {
                return Err(error);
            }
            // The cached object was older than the stored one (our own status write raced the
            // watch): the JSON patch's `test` fails with 422 (or 409). The newer version is on its
            // way through the watch and triggers the next reconcile; this is no failure.
            Err(finalizer::Error::AddFinalizer(kube::Error::Api(status)))
                if status.code == 422 || status.code == 409 =>
            {
                debug!("the finalizer was already added by an earlier reconcile");
                Action::await_change()
            }
            Err(
                finalizer::Error::AddFinalizer(source) | finalizer::Error::RemoveFinalizer(source),
            ) => {
                return Err(Error::Kubernetes {
                    context: "updating the finalizer",
                    source,
                });
            }
            Err(other) => return Err(Error::InvalidObject(other.to_string())),
        };
        if first_sight {
            // kstatus: the conditions are there from the first reconcile. They are written after
            // the finalizer (which the helper has just added, returning at once), so that the next
            // reconcile, triggered by the finalizer, never runs on a copy that lacks it.
            Reconciliation::new(&object, &ctx)?.acknowledge().await?;
        }
        ctx.memory.record_success(&uid);
        Ok(action)
    }
    .instrument(span)
    .await;
    let outcome = match &result {
        Ok(_) => ReconcileResult::Success,
        Err(error) => ReconcileResult::Failed(error.reason()),
    };
    ctx.metrics.reconciled(outcome, started.elapsed());
    result
}

/// After a failed reconcile: permanent errors wait for a change of the object or its Secret;
/// transient ones retry with per-object exponential backoff, never sooner than `Retry-After`.
pub fn error_policy(object: Arc<StreamingConnection>, error: &Error, ctx: Arc<Context>) -> Action {
    match retry_delay(&object, error, &ctx) {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    }
}

/// How long to wait before retrying after `error`, or `None` to wait for a change instead.
/// Counts the failure in the object's backoff and closes its gate until then.
pub fn retry_delay(object: &StreamingConnection, error: &Error, ctx: &Context) -> Option<Duration> {
    ctx.memory.record_failure(
        &object.uid().unwrap_or_default(),
        ctx.inputs(object),
        error.is_permanent(),
        error.retry_after(),
    )
}

/// Backoff of the watches after an error: client-go's shape, capped at 5 s instead of 30 s and reset
/// after 30 s of calm. kube-runtime gives all of a controller's watches ONE backoff, so an API
/// server restart (connection refused, then a 410 Gone from each watch) would otherwise keep the
/// cache stale, and new objects unseen, for a minute or more.
fn watch_backoff() -> impl Backoff {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(
        watcher::ExponentialBackoff::from(exponential),
        Duration::from_secs(30),
    )
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    flow: FlowClient,
    settings: Settings,
    metrics: Arc<Metrics>,
    fence: Fence,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (connections, secrets, config_maps): (
        Api<StreamingConnection>,
        Api<PartialObjectMeta<Secret>>,
        Api<ConfigMap>,
    ) = match &settings.namespace {
        Some(namespace) => (
            Api::namespaced(client.clone(), namespace),
            Api::namespaced(client.clone(), namespace),
            Api::namespaced(client.clone(), namespace),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // Lists are consistent reads (not `any_semantic`): right after an API server restart, a list
    // served from the fresh watch cache can be older than the cache's start, and every watch from
    // it fails with 410 Gone while the backoff grows; the cache stays stale for a minute or more.
    let controller = Controller::new(connections, watcher::Config::default());
    let store = controller.store();
    let ctx = Arc::new(
        Context::new(client, flow, store.clone(), settings.clone(), metrics).with_fence(fence),
    );

    // Only the metadata of Secrets is watched: enough to know which one changed, and no secret
    // value is ever held in a cache. The data is read when a reconcile needs it.
    // The version each event carries opens the failure gate of the objects that use the Secret.
    let secret_ctx = ctx.clone();
    let users_of_secret = move |secret: PartialObjectMeta<Secret>| {
        secret_ctx.secret_seen(&secret);
        let namespace = secret.namespace();
        let name = secret.name_any();
        store
            .state()
            .into_iter()
            .filter(|object| {
                object.namespace() == namespace && object.spec.credentials_ref.name == name
            })
            .map(|object| ObjectRef::from_obj(object.as_ref()))
            .collect::<Vec<_>>()
    };

    // Readiness follows the watches: a watch that keeps failing (the CRD deleted, RBAC revoked)
    // errors at least every few seconds (its backoff is capped at 5 s); thirty seconds without an
    // error means they are all flowing again.
    let last_watch_error: Arc<Mutex<Option<std::time::Instant>>> = Arc::default();
    let watch_health = {
        let last_watch_error = last_watch_error.clone();
        tokio::spawn(async move {
            loop {
                let failing = last_watch_error
                    .lock()
                    .expect("watch error lock")
                    .is_some_and(|at| at.elapsed() < WATCH_RECOVERY);
                health.set_watches_healthy(!failing);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    controller
        .watches(secrets, watcher::Config::default(), users_of_secret)
        // A published ConfigMap that is edited or deleted is put back.
        .owns(
            config_maps,
            watcher::Config::default().labels(&format!(
                "{}={}",
                desired::MANAGED_BY_LABEL,
                FIELD_MANAGER
            )),
        )
        .trigger_backoff(watch_backoff())
        .with_config(controller::Config::default().concurrency(settings.max_concurrent_reconciles))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            let last_watch_error = last_watch_error.clone();
            async move {
                match result {
                    Ok((object, _)) => debug!(
                        namespace = object.namespace,
                        name = object.name,
                        "reconciled"
                    ),
                    Err(controller::Error::ReconcilerFailed(error, object)) => {
                        debug!(
                            namespace = object.namespace,
                            name = object.name,
                            reason = error.reason().as_str(),
                            "reconcile failed"
                        )
                    }
                    // A reconcile scheduled for an object deleted meanwhile: nothing to do.
                    Err(controller::Error::ObjectNotFound(object)) => debug!(
                        namespace = object.namespace,
                        name = object.name,
                        "the object is gone"
                    ),
                    Err(controller::Error::QueueError(error)) => {
                        *last_watch_error.lock().expect("watch error lock") =
                            Some(std::time::Instant::now());
                        warn!(%error, "a watch failed");
                    }
                    Err(error) => warn!(%error, "controller error"),
                }
            }
        })
        .await;
    watch_health.abort();
}

/// How long without a watch error before the watches count as healthy again.
const WATCH_RECOVERY: Duration = Duration::from_secs(30);
