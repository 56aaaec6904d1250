//! The controller: watches StreamingConnections (and the Secrets and ConfigMaps they use) and
//! converges each one through [`reconcile`]. The steps of one reconcile live in `reconciler`; the
//! pure computations in `desired` and `status`.

mod backoff;
pub mod desired;
pub mod error;
mod reconciler;
pub mod status;

#[cfg(test)]
pub(crate) mod fixtures;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rand::Rng;
use tracing::{Instrument, debug, info_span, warn};

pub use self::backoff::ReconcileBackoff;
pub use self::error::{Error, Result};
use self::reconciler::Reconciliation;
use crate::api::{
    FIELD_MANAGER, FINALIZER, RECONCILE_REQUESTED_AT_ANNOTATION, StreamingConnection,
    StreamingConnectionStatus,
};
use crate::flow::{Connection, Credentials, FlowClient};
use crate::metrics::Metrics;

/// Tunables of the controller, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often a Ready object is checked against Flow Service (±10% jitter).
    pub resync_interval: Duration,
    /// How many objects are reconciled at once.
    pub max_concurrent_reconciles: u16,
    /// Watch this namespace only.
    pub namespace: Option<String>,
}

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
    pub recorder: Recorder,
    /// Every watched StreamingConnection: who owns which connection id.
    pub connections: Store<StreamingConnection>,
    pub settings: Settings,
    /// Per-object retry delays for transient failures.
    pub backoff: ReconcileBackoff,
    /// Reconcile counters and timings.
    pub metrics: Arc<Metrics>,
    /// The credentials last used per Secret uid, to drop a token when its Secret changes.
    credentials_by_secret: Mutex<HashMap<String, Credentials>>,
    /// The status this process last wrote, per object uid. This process is the only writer of
    /// status while it runs (leader election makes that true with several replicas), so what it
    /// wrote is at least as new as any cache.
    written_status: Mutex<HashMap<String, StreamingConnectionStatus>>,
    /// The connection each object converged to, and when: the reconciles triggered by the
    /// operator's own writes (status, finalizer, ConfigMap) reuse it instead of reading it again.
    verified: Mutex<HashMap<String, Verified>>,
}

/// A connection as Flow Service last confirmed it for one object.
struct Verified {
    connection: Connection,
    /// The credentials (Secret uid and version) it was confirmed with.
    credentials: String,
    generation: Option<i64>,
    requested_at: Option<String>,
    at: Instant,
}

impl Context {
    pub fn new(
        client: Client,
        flow: FlowClient,
        connections: Store<StreamingConnection>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            flow,
            connections,
            settings,
            backoff: ReconcileBackoff::default(),
            metrics,
            credentials_by_secret: Mutex::default(),
            written_status: Mutex::default(),
            verified: Mutex::default(),
        }
    }

    /// The StreamingConnection (other than `object`) that manages connection `id`, as `namespace/name`.
    pub fn owner_of(&self, id: &str, object: &StreamingConnection) -> Option<String> {
        let own_uid = object.uid();
        self.connections
            .find(|other| {
                other.uid() != own_uid
                    && (other.spec.connection_id.as_deref() == Some(id)
                        || other
                            .status
                            .as_ref()
                            .and_then(|s| s.connection_id.as_deref())
                            == Some(id))
            })
            .map(|other| {
                format!(
                    "{}/{}",
                    other.namespace().unwrap_or_default(),
                    other.name_any()
                )
            })
    }

    /// The status this process last wrote for `object`, if it wrote one.
    fn written_status(&self, object: &StreamingConnection) -> Option<StreamingConnectionStatus> {
        let uid = object.uid()?;
        self.written_status
            .lock()
            .expect("status lock")
            .get(&uid)
            .cloned()
    }

    fn remember_status(&self, object: &StreamingConnection, status: &StreamingConnectionStatus) {
        if let Some(uid) = object.uid() {
            self.written_status
                .lock()
                .expect("status lock")
                .insert(uid, status.clone());
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
        let verified = self.verified.lock().expect("verified lock");
        let entry = verified.get(&uid)?;
        let fresh = entry.connection.id == id
            && entry.credentials == credentials.cache_key()
            && entry.generation == object.metadata.generation
            && entry.requested_at.as_deref() == reconcile_requested_at(object)
            && entry.at.elapsed() < self.settings.resync_interval / 2;
        fresh.then(|| entry.connection.clone())
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
                at: Instant::now(),
            };
            self.verified
                .lock()
                .expect("verified lock")
                .insert(uid, entry);
        }
    }

    fn forget_object(&self, object: &StreamingConnection) {
        if let Some(uid) = object.uid() {
            self.written_status
                .lock()
                .expect("status lock")
                .remove(&uid);
            self.verified.lock().expect("verified lock").remove(&uid);
        }
        self.backoff.reset(&ObjectRef::from_obj(object));
    }

    /// Notes the credentials in use for their Secret; when the Secret changed, the token minted
    /// for its previous version is dropped.
    fn remember_credentials(&self, credentials: &Credentials) {
        let secret_uid = credentials
            .cache_key()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let previous = self
            .credentials_by_secret
            .lock()
            .expect("credentials lock")
            .insert(secret_uid, credentials.clone());
        if let Some(previous) = previous
            && previous.cache_key() != credentials.cache_key()
        {
            self.flow.forget_token(&previous);
        }
    }
}

/// The value of the on-demand drift-check annotation.
fn reconcile_requested_at(object: &StreamingConnection) -> Option<&str> {
    object
        .annotations()
        .get(RECONCILE_REQUESTED_AT_ANNOTATION)
        .map(String::as_str)
}

/// Reconciles one StreamingConnection: the finalizer first, then apply or cleanup.
pub async fn reconcile(object: Arc<StreamingConnection>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!(
        "reconcile",
        namespace = object.namespace().unwrap_or_default(),
        name = object.name_any(),
        generation = object.metadata.generation
    );
    let started = std::time::Instant::now();
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
        ctx.backoff.reset(&ObjectRef::from_obj(object.as_ref()));
        Ok(action)
    }
    .instrument(span)
    .await;
    let label = result.as_ref().map_or_else(Error::reason, |_| "success");
    ctx.metrics.reconciled(label, started.elapsed());
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
/// Counts the failure in the object's backoff.
pub fn retry_delay(object: &StreamingConnection, error: &Error, ctx: &Context) -> Option<Duration> {
    if error.is_permanent() {
        return None;
    }
    let delay = ctx.backoff.next_delay(&ObjectRef::from_obj(object));
    Some(error.retry_after().map_or(delay, |asked| asked.max(delay)))
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
    let ctx = Arc::new(Context::new(
        client,
        flow,
        store.clone(),
        settings.clone(),
        metrics,
    ));

    // Only the metadata of Secrets is watched: enough to know which one changed, and no secret
    // value is ever held in a cache. The data is read when a reconcile needs it.
    let users_of_secret = move |secret: PartialObjectMeta<Secret>| {
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
        .for_each(|result| async move {
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
                        reason = error.reason(),
                        "reconcile failed"
                    )
                }
                Err(error) => warn!(%error, "controller error"),
            }
        })
        .await;
}
