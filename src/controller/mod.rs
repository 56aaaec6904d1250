//! The controller: watches StreamingConnections (and the Secrets and ConfigMaps they use) and
//! converges each one through [`reconcile`]. The steps of one reconcile live in `connection` (one file
//! per step); the steps every kind shares in `credentials`, `config_map`, `events` and `memory`; the
//! pure computations in `desired` and `status`.

mod config_map;
mod connection;
mod context;
mod credentials;
pub mod dataflow;
pub mod desired;
pub mod error;
mod events;
mod memory;
pub mod reason;
pub mod status;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{self, Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{Instrument, debug, info_span, warn};

pub use self::connection::MISSING_CONFIRM_WINDOW;
use self::connection::Reconciliation;
pub use self::context::{CREATE_SETTLE_DELAY, Context, Settings};
pub use self::error::{Error, Result};
pub use self::memory::{INITIAL_RETRY_DELAY, MAX_RETRY_DELAY};
pub use self::reason::Reason;
use crate::api::{FIELD_MANAGER, FINALIZER, StreamingConnection, StreamingDataflow};
use crate::http::Health;
use crate::leader::Fence;
use crate::metrics::{Metrics, ObjectState, ReconcileResult};
use aep_flow::FlowClient;

/// What the shared reconcile skeleton ([`reconcile_object`]) needs of a kind the operator manages:
/// its failure-gate inputs, whether it has a status yet, and its steps.
pub(crate) trait Managed:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind's name, for logs.
    const KIND: &'static str;
    /// What the next reconcile depends on besides Flow Service (see [`memory::Inputs`]).
    fn inputs(&self, ctx: &Context) -> memory::Inputs;
    /// Converges the object (the finalizer is in place).
    fn apply(&self, ctx: &Context) -> impl Future<Output = Result<Action>> + Send;
    /// Deletes or orphans what the object made in Adobe, before the finalizer goes.
    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Action>> + Send;
}

impl Managed for StreamingConnection {
    const KIND: &'static str = "StreamingConnection";

    fn inputs(&self, ctx: &Context) -> memory::Inputs {
        ctx.inputs(self)
    }

    async fn apply(&self, ctx: &Context) -> Result<Action> {
        Reconciliation::new(self, ctx)?.apply().await
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        Reconciliation::new(self, ctx)?.cleanup().await
    }
}

/// Reconciles one StreamingConnection: the failure gate, the finalizer, then apply or cleanup.
pub async fn reconcile(object: Arc<StreamingConnection>, ctx: Arc<Context>) -> Result<Action> {
    reconcile_object(object, ctx).await
}

/// The reconcile of every kind: the failure gate, the finalizer, then apply or cleanup.
///
/// A new object gets no status of its own when its finalizer is added: its first conditions are
/// written with the first step that has something to say (the create-pending marker, a wait, a
/// failure), one watch round trip later, which saves a write per object.
pub(crate) async fn reconcile_object<K: Managed>(
    object: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let span = info_span!(
        "reconcile",
        kind = K::KIND,
        namespace = object.namespace().unwrap_or_default(),
        name = object.name_any(),
        generation = object.meta().generation
    );
    let started = std::time::Instant::now();
    let uid = object.uid().unwrap_or_default();
    // After a failure nothing is tried again before its time, whatever triggered this reconcile
    // (the operator's own status write, an owned ConfigMap, a relist): a broken object stays quiet.
    let inputs = object.inputs(&ctx);
    if let Some(wait) = ctx.memory.gate(&uid, &inputs) {
        debug!(parent: &span, retry_in = ?wait, "the last failure still holds; nothing to do yet");
        ctx.metrics
            .reconciled(ReconcileResult::Deferred, started.elapsed());
        return Ok(wait.map_or_else(Action::await_change, Action::requeue));
    }
    ctx.memory.start_attempt(&uid, inputs);
    let result = async {
        let namespace = object
            .namespace()
            .ok_or_else(|| Error::InvalidObject(format!("a {} must be namespaced", K::KIND)))?;
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
        if object.meta().deletion_timestamp.is_some()
            && !still_finalized_by_us(&api, &object).await?
        {
            debug!("the object was already let go; the cache has not seen it yet");
            return Ok(Action::await_change());
        }
        let outcome = finalizer(&api, FINALIZER, object.clone(), |event| async {
            match event {
                Finalizer::Apply(object) => object.apply(&ctx).await,
                Finalizer::Cleanup(object) => {
                    let action = object.cleanup(&ctx).await?;
                    ctx.forget_uid(&object.uid().unwrap_or_default());
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

/// Whether the stored object (not the cached one) still carries the operator's finalizer. A deleting
/// object can be reconciled again from a cache that has not yet seen its finalizer go (a change of a
/// related object maps to it): its cleanup must not run twice, nor say twice what it did.
async fn still_finalized_by_us<K: Managed>(api: &Api<K>, object: &K) -> Result<bool> {
    let stored = api
        .get_metadata_opt(&object.name_any())
        .await
        .map_err(|source| Error::Kubernetes {
            context: "reading the object being deleted",
            source,
        })?;
    Ok(stored.is_some_and(|stored| {
        stored.metadata.uid == object.meta().uid
            && stored
                .metadata
                .finalizers
                .is_some_and(|finalizers| finalizers.iter().any(|f| f == FINALIZER))
    }))
}

/// After a failed reconcile: permanent errors wait for a change of the object or its Secret;
/// transient ones retry with per-object exponential backoff, never sooner than `Retry-After`.
pub fn error_policy(object: Arc<StreamingConnection>, error: &Error, ctx: Arc<Context>) -> Action {
    policy_action(retry_delay(object.as_ref(), error, &ctx))
}

/// The action for a retry after `delay`, or for waiting for a change when there is none.
pub(crate) fn policy_action(delay: Option<Duration>) -> Action {
    match delay {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    }
}

/// How long to wait before retrying after `error`, or `None` to wait for a change instead.
/// Counts the failure in the object's backoff and closes its gate until then.
#[allow(private_bounds)]
pub fn retry_delay<K: Managed>(object: &K, error: &Error, ctx: &Context) -> Option<Duration> {
    ctx.memory.record_failure(
        &object.uid().unwrap_or_default(),
        object.inputs(ctx),
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
    let namespace = settings.namespace.as_deref();
    let connections: Api<StreamingConnection> = scoped(&client, namespace);
    // An API of `PartialObjectMeta` lists and watches metadata only: the data never reaches the operator.
    let secrets: Api<PartialObjectMeta<Secret>> = scoped(&client, namespace);
    let config_maps: Api<PartialObjectMeta<ConfigMap>> = scoped(&client, namespace);
    let dataflows: Api<StreamingDataflow> = scoped(&client, namespace);
    // Only which StreamingConnection changed matters to the dataflows (they read it from the cache).
    let dataflow_connections: Api<PartialObjectMeta<StreamingConnection>> =
        scoped(&client, namespace);
    let dataflow_config_maps: Api<PartialObjectMeta<ConfigMap>> = scoped(&client, namespace);
    // Lists are consistent reads (not `any_semantic`): right after an API server restart, a list
    // served from the fresh watch cache can be older than the cache's start, and every watch from
    // it fails with 410 Gone while the backoff grows; the cache stays stale for a minute or more.
    // Each kind's cache keeps the objects slimmed ([`slim`]); the watches are those `Controller::new`
    // would make, and `trigger_backoff` below still applies to all of them.
    let (store, connection_writer) = reflector::store();
    let controller = Controller::for_stream(
        reflector::reflector(
            connection_writer,
            watcher::watcher(connections, watch_config()).modify(slim),
        )
        .applied_objects(),
        store.clone(),
    );
    let (dataflow_store, dataflow_writer) = reflector::store();
    let dataflow_controller = Controller::for_stream(
        reflector::reflector(
            dataflow_writer,
            watcher::watcher(dataflows.clone(), watch_config()).modify(slim),
        )
        .applied_objects(),
        dataflow_store.clone(),
    );
    // `aep_operator_objects`: each scrape counts the objects in these caches by their Ready condition.
    metrics.count_objects(
        StreamingConnection::KIND,
        object_states(store.clone(), |o| {
            o.status.as_ref().map(|s| &s.conditions[..])
        }),
    );
    metrics.count_objects(
        StreamingDataflow::KIND,
        object_states(dataflow_store.clone(), |o| {
            o.status.as_ref().map(|s| &s.conditions[..])
        }),
    );
    let ctx = Arc::new(
        Context::new(client, flow, store.clone(), settings.clone(), metrics)
            .with_fence(fence)
            .with_dataflows(dataflow_store.clone()),
    );
    let shutdown = shutdown.shared();

    // Only the metadata of Secrets is watched: enough to know which one changed, and no secret
    // value is ever held in a cache. The data is read when a reconcile needs it.
    // The version each event carries opens the failure gate of the objects that use the Secret.
    let secret_ctx = ctx.clone();
    let connection_store = store.clone();
    let users_of_secret = move |secret: PartialObjectMeta<Secret>| {
        secret_ctx.secret_seen(&secret);
        let namespace = secret.namespace();
        let name = secret.name_any();
        connection_store
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

    // A StreamingConnection being deleted waits for its dataflows: each one that changes (or goes)
    // wakes it. Dataflows of a connection that is not being deleted do not concern it.
    let deleting_connection_of = {
        let store = store.clone();
        move |dataflow: StreamingDataflow| {
            let namespace = dataflow.namespace();
            store
                .find(|connection| {
                    connection.namespace() == namespace
                        && connection.name_any() == dataflow.spec.connection_ref.name
                        && connection.metadata.deletion_timestamp.is_some()
                })
                .map(|connection| ObjectRef::from_obj(connection.as_ref()))
        }
    };
    // A StreamingDataflow waits for its StreamingConnection: each change of it wakes its dataflows.
    let dataflows_of_connection = {
        let dataflow_store = dataflow_store.clone();
        move |connection: PartialObjectMeta<StreamingConnection>| {
            let namespace = connection.namespace();
            let name = connection.name_any();
            dataflow_store
                .state()
                .into_iter()
                .filter(|dataflow| {
                    dataflow.namespace() == namespace && dataflow.spec.connection_ref.name == name
                })
                .map(|dataflow| ObjectRef::from_obj(dataflow.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    // The operator's own ConfigMaps, as metadata: a change or a deletion is all that triggers a
    // reconcile, and publishing reads the ConfigMap itself, so their data is never transferred here.
    let owned_config_maps =
        watch_config().labels(&format!("{}={}", desired::MANAGED_BY_LABEL, FIELD_MANAGER));

    let dataflow_loop = dataflow_controller
        .watches(
            dataflow_connections,
            watch_config(),
            dataflows_of_connection,
        )
        .owns(dataflow_config_maps, owned_config_maps.clone())
        .trigger_backoff(watch_backoff())
        .with_config(controller::Config::default().concurrency(settings.max_concurrent_reconciles))
        .graceful_shutdown_on(shutdown.clone())
        .run(dataflow::reconcile, dataflow::error_policy, ctx.clone())
        .for_each(|result| {
            let last_watch_error = last_watch_error.clone();
            async move { log_result("StreamingDataflow", result, &last_watch_error) }
        });

    let connection_loop = controller
        .watches(secrets, watch_config(), users_of_secret)
        .watches(dataflows, watch_config(), deleting_connection_of)
        // A published ConfigMap that is edited or deleted is put back.
        .owns(config_maps, owned_config_maps)
        .trigger_backoff(watch_backoff())
        .with_config(controller::Config::default().concurrency(settings.max_concurrent_reconciles))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            let last_watch_error = last_watch_error.clone();
            async move { log_result("StreamingConnection", result, &last_watch_error) }
        });
    futures::join!(connection_loop, dataflow_loop);
    watch_health.abort();
}

/// How many objects one page of a watch's initial list holds. kube-runtime's default is 500: at the
/// start of a process beside thousands of objects, each page of 500 whole objects (managed fields
/// included, before [`slim`] drops them) is held at once, and the heap keeps the high-water mark
/// after the page is dropped. Pages of 100 cost a few more list requests at a start (30 for 3,000
/// objects) and keep the peak of a restarted process near that of one that saw the objects created.
const LIST_PAGE_SIZE: u32 = 100;

/// The watch configuration of every watch of the operator: consistent lists, [`LIST_PAGE_SIZE`].
fn watch_config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE_SIZE)
}

/// The Ready state of every object in `cache`, for `aep_operator_objects`: one closure per kind, called
/// at each scrape.
fn object_states<K: Resource + Clone + Send + Sync + 'static>(
    cache: kube::runtime::reflector::Store<K>,
    conditions: fn(&K) -> Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
) -> impl Fn() -> Vec<ObjectState> + Send + Sync + 'static
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    move || {
        cache
            .state()
            .iter()
            .map(|o| ObjectState::of(conditions(o).unwrap_or(&[]), o.meta().generation))
            .collect()
    }
}

/// Drops from a cached object what the reconciler never reads: the managed fields (often larger than
/// the rest of the object) and kubectl's copy of the last applied manifest. Everything else stays, so
/// the finalizer's JSON patch and the status comparison see the object as stored.
fn slim<K: Resource>(object: &mut K) {
    let metadata = object.meta_mut();
    metadata.managed_fields = None;
    if let Some(annotations) = metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// Where `kubectl apply` (client-side) keeps a copy of the whole manifest.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// An API for `K` in the watched namespace, or in all of them.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Logs what one reconcile (or watch) of `kind` came to; a failed watch marks the watches unhealthy.
fn log_result<K: kube::Resource, R>(
    kind: &'static str,
    result: std::result::Result<(ObjectRef<K>, R), controller::Error<Error, watcher::Error>>,
    last_watch_error: &Mutex<Option<std::time::Instant>>,
) {
    match result {
        Ok((object, _)) => debug!(
            kind,
            namespace = object.namespace,
            name = object.name,
            "reconciled"
        ),
        Err(controller::Error::ReconcilerFailed(error, object)) => debug!(
            kind,
            namespace = object.namespace,
            name = object.name,
            reason = error.reason().as_str(),
            "reconcile failed"
        ),
        // A reconcile scheduled for an object deleted meanwhile: nothing to do.
        Err(controller::Error::ObjectNotFound(object)) => debug!(
            kind,
            namespace = object.namespace,
            name = object.name,
            "the object is gone"
        ),
        Err(controller::Error::QueueError(error)) => {
            *last_watch_error.lock().expect("watch error lock") = Some(std::time::Instant::now());
            warn!(kind, %error, "a watch failed");
        }
        Err(error) => warn!(kind, %error, "controller error"),
    }
}

/// How long without a watch error before the watches count as healthy again.
const WATCH_RECOVERY: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::api::ObjectMeta;

    #[test]
    fn a_slimmed_object_keeps_everything_the_reconciler_reads_and_drops_the_managed_fields() {
        let mut object = StreamingConnection::new(
            "web",
            serde_json::from_value(serde_json::json!({
                "sandbox": "prod", "credentialsRef": {"name": "aep-credentials"}
            }))
            .unwrap(),
        );
        object.metadata = ObjectMeta {
            name: Some("web".into()),
            namespace: Some("marketing".into()),
            finalizers: Some(vec![FINALIZER.into()]),
            annotations: Some(
                [
                    (
                        LAST_APPLIED_ANNOTATION.to_string(),
                        "{\"spec\":{}}".to_string(),
                    ),
                    (
                        crate::api::RECONCILE_REQUESTED_AT_ANNOTATION.to_string(),
                        "now".to_string(),
                    ),
                ]
                .into(),
            ),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                ..ManagedFieldsEntry::default()
            }]),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        };
        let before = object.clone();
        slim(&mut object);
        assert_eq!(object.metadata.managed_fields, None);
        assert_eq!(
            object
                .metadata
                .annotations
                .as_ref()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            vec![crate::api::RECONCILE_REQUESTED_AT_ANNOTATION]
        );
        assert_eq!(object.metadata.finalizers, before.metadata.finalizers);
        assert_eq!(
            object.metadata.resource_version,
            before.metadata.resource_version
        );
        assert_eq!(object.spec, before.spec);
    }
}
