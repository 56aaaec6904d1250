//! The StreamingDataflow kind: one reconcile of one object, in the order [`Reconciliation::apply`] runs
//! the steps, one file per step, on the controller's shared steps (credentials, ConfigMap, events,
//! memory, status conditions):
//!
//! 1. here: wait for the StreamingConnection to be Ready, check the mapping against its data type,
//!    read the credentials (the connection's Secret, in the same namespace) and the dataset;
//! 2. `parts`: the crash-safe create of the source connection, the target connection, the mapping
//!    set (raw data) and the flow, under one pending marker stored before the first POST;
//! 3. `flow`: the flow confirmed (a 404 confirmed before it is recreated), brought in line with the
//!    spec (name, description, mapping version with `If-Match`; enabled or disabled), its runs read;
//! 4. `record`: the ConfigMap published and the status written, only when it changes;
//! 5. `cleanup`: on delete, the flow, then its source and target connections (Adobe's order).

pub mod desired;

/// The value of a `Step::Done`, or return the wait from the enclosing `Result<Step<_>>` function.
macro_rules! done {
    ($step:expr) => {
        match $step {
            Step::Done(value) => value,
            Step::Wait {
                reason,
                message,
                retry_in,
            } => {
                return Ok(Step::Wait {
                    reason,
                    message,
                    retry_in,
                });
            }
        }
    };
}

mod cleanup;
mod flow;
mod parts;
mod record;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::context::Context;
use super::error::{Error, Result};
use super::memory::Inputs;
use super::reason::Reason;
use super::status::{self, Progress};
use super::{Managed, policy_action, reconcile_object, retry_delay};
use super::{config_map, credentials};
use crate::api::{StreamingConnection, StreamingDataflow, StreamingDataflowStatus};
use aep_flow::{Credentials, FlowErrorKind, Scope};

/// The `Ready=True` message of a StreamingDataflow.
const READY_MESSAGE: &str = "The dataflow exists, matches the spec and its ConfigMap is published";
/// How soon to look again while a flow changes state or another wait should clear by itself.
const SHORT_WAIT: Duration = Duration::from_secs(2);

impl Managed for StreamingDataflow {
    const KIND: &'static str = "StreamingDataflow";

    fn inputs(&self, ctx: &Context) -> Inputs {
        ctx.dataflow_inputs(self)
    }

    async fn apply(&self, ctx: &Context) -> Result<Action> {
        Reconciliation::new(self, ctx)?.apply().await
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        Reconciliation::new(self, ctx)?.cleanup().await
    }
}

/// Reconciles one StreamingDataflow: the failure gate, the finalizer, then apply or cleanup.
pub async fn reconcile(object: Arc<StreamingDataflow>, ctx: Arc<Context>) -> Result<Action> {
    reconcile_object(object, ctx).await
}

/// After a failed reconcile: as for StreamingConnections, permanent errors wait for a change (of the
/// object, its StreamingConnection or the Secret), transient ones back off.
pub fn error_policy(object: Arc<StreamingDataflow>, error: &Error, ctx: Arc<Context>) -> Action {
    policy_action(retry_delay(object.as_ref(), error, &ctx))
}

/// A step's outcome: done with a value, or not decidable yet (the reason goes into the conditions,
/// the object is looked at again after `retry_in`, or on a change of what it waits on).
pub(crate) enum Step<T> {
    Done(T),
    Wait {
        reason: Reason,
        message: String,
        retry_in: Duration,
    },
}

/// The work on one StreamingDataflow, with what every step needs.
pub(crate) struct Reconciliation<'a> {
    object: &'a StreamingDataflow,
    ctx: &'a Context,
    namespace: String,
    api: Api<StreamingDataflow>,
    /// The status as last stored (what this process wrote, unless the cache caught up).
    stored: StreamingDataflowStatus,
    /// The resourceVersion that goes with `stored`: every write is conditional on it.
    resource_version: Option<String>,
    /// The status being built: ids learned since the last write are kept here and written with the
    /// next write (the final status, or the failure), never later than that.
    status: StreamingDataflowStatus,
    /// When this reconcile stored the create-pending marker now in `status`: the parts after it were
    /// never tried under it, so they need no lookup (see `parts`).
    marker_stored_at: Option<std::time::Instant>,
}

/// What the dataflow is built on: its StreamingConnection, as the cache holds it.
pub(crate) struct Base {
    connection: Arc<StreamingConnection>,
    /// The Flow Service base connection id.
    connection_id: String,
    inlet_url: String,
}

impl<'a> Reconciliation<'a> {
    pub(crate) fn new(object: &'a StreamingDataflow, ctx: &'a Context) -> Result<Self> {
        let namespace = object
            .namespace()
            .ok_or_else(|| Error::InvalidObject("a StreamingDataflow must be namespaced".into()))?;
        let api = Api::namespaced(ctx.client.clone(), &namespace);
        let cached = || {
            (
                object.status.clone().unwrap_or_default(),
                object.metadata.resource_version.clone(),
            )
        };
        let written = object.uid().and_then(|uid| {
            ctx.memory
                .read(&uid, |m| m.written_dataflow.clone())
                .flatten()
        });
        let (stored, resource_version) = match written {
            Some((written, _)) if object.status.as_ref() == Some(&written) => cached(),
            Some(written) => written,
            None => cached(),
        };
        Ok(Self {
            object,
            ctx,
            namespace,
            api,
            status: stored.clone(),
            stored,
            resource_version,
            marker_stored_at: None,
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

    async fn converge(&mut self) -> Result<Action> {
        let base = match self.base() {
            Step::Done(base) => base,
            Step::Wait {
                reason,
                message,
                retry_in,
            } => return self.wait(reason, message, retry_in).await,
        };
        if let Some(problem) = desired::mapping_problem(self.object, base.connection.spec.data_type)
        {
            return Err(Error::InvalidObject(problem));
        }
        let credentials = self.credentials(&base.connection).await?;
        let scope = Scope {
            credentials: &credentials,
            sandbox: &base.connection.spec.sandbox,
        };

        // The first look after a start at a Ready dataflow (its status records the flow and the
        // schema): its chain is read at its phase of the resync interval; the ConfigMap is repaired
        // now if it needs to be.
        if let Some(due) = self.read_due(&base, &credentials)
            && let (Some(flow_id), Some(schema)) =
                (self.status.flow_id.clone(), self.status.schema_ref.clone())
        {
            self.publish_config_map(&base, &flow_id, &schema, &credentials)
                .await?;
            self.write(&Progress::Ready).await?;
            return Ok(Action::requeue(
                due.saturating_duration_since(self.ctx.memory.now()),
            ));
        }

        let dataset = match self
            .ctx
            .flow
            .get_dataset(&scope, &self.object.spec.dataset_id)
            .await
        {
            Ok(dataset) => dataset,
            Err(error) if error.kind() == FlowErrorKind::NotFound => {
                return Err(Error::DatasetNotFound {
                    id: self.object.spec.dataset_id.clone(),
                    sandbox: base.connection.spec.sandbox.clone(),
                });
            }
            Err(error) => return Err(Error::flow("reading the dataset")(error)),
        };
        let schema = crate::api::SchemaReference {
            id: dataset.schema_ref.id.clone(),
            content_type: dataset.schema_ref.content_type.clone(),
        };
        self.status.schema_ref = Some(schema.clone());

        let flow = match self.build(&scope, &base, &dataset).await? {
            Step::Done(flow) => flow,
            Step::Wait {
                reason,
                message,
                retry_in,
            } => return self.wait(reason, message, retry_in).await,
        };
        let flow = match self.converge_flow(&scope, flow).await? {
            Step::Done(flow) => flow,
            Step::Wait {
                reason,
                message,
                retry_in,
            } => return self.wait(reason, message, retry_in).await,
        };
        self.observe_runs(&scope, &flow).await;

        self.publish_config_map(&base, &flow.id, &schema, &credentials)
            .await?;
        self.status.flow_id = Some(flow.id.clone());
        self.status.etag = Some(flow.etag.clone());
        self.status.state = Some(flow.state.clone());
        self.status.pending_create = None;
        self.write(&Progress::Ready).await?;
        Ok(Action::requeue(
            self.ctx
                .settings
                .resync_delay(&self.object.uid().unwrap_or_default()),
        ))
    }

    /// When the dataflow's chain is next due to be read, while the status the object carried when
    /// this process first saw it stands for a read (see `Context::dataflow_read_due`).
    fn read_due(&self, base: &Base, credentials: &Credentials) -> Option<tokio::time::Instant> {
        let basis = format!(
            "{}/{}/{}",
            credentials.cache_key(),
            base.connection_id,
            base.inlet_url
        );
        self.ctx.dataflow_read_due(self.object, &self.stored, basis)
    }

    /// Publishes the ConfigMap with what applications need to send to the dataflow.
    async fn publish_config_map(
        &mut self,
        base: &Base,
        flow_id: &str,
        schema: &crate::api::SchemaReference,
        credentials: &Credentials,
    ) -> Result<()> {
        let published = desired::Published {
            inlet_url: &base.inlet_url,
            flow_id,
            schema,
            ims_org_id: credentials.org_id(),
            sandbox: &base.connection.spec.sandbox,
            data_type: base.connection.spec.data_type,
            authentication_required: base.connection.spec.authentication_required,
        };
        let config_map = desired::config_map(self.object, &published);
        let previous = self.stored.config_map_name.clone();
        let name = config_map::publish(
            &self.ctx.client,
            &self.namespace,
            self.object.uid().as_deref(),
            &config_map,
            previous.as_deref(),
        )
        .await?;
        self.status.config_map_name = Some(name);
        Ok(())
    }

    /// The StreamingConnection the dataflow is built on, once it can be: it exists, and it is Ready
    /// (or, for a dataflow that exists already, it still records its connection and inlet).
    fn base(&self) -> Step<Base> {
        let name = &self.object.spec.connection_ref.name;
        let wait = |message: String| Step::Wait {
            reason: Reason::WaitingForConnection,
            message,
            // The connection watch wakes the object when the connection changes.
            retry_in: self.ctx.settings.resync_interval,
        };
        let Some(connection) = self.ctx.connection_of(self.object) else {
            return wait(format!(
                "StreamingConnection `{name}` does not exist in namespace `{}`; waiting for it",
                self.namespace
            ));
        };
        let status = connection.status.clone().unwrap_or_default();
        let ready = status::is_ready(connection.status.as_ref(), connection.metadata.generation);
        let built = self.status.flow_id.is_some();
        match (status.connection_id, status.inlet_url) {
            (Some(connection_id), Some(inlet_url)) if ready || built => Step::Done(Base {
                connection,
                connection_id,
                inlet_url,
            }),
            _ if connection.metadata.deletion_timestamp.is_some() => wait(format!(
                "StreamingConnection `{name}` is being deleted; waiting for it"
            )),
            _ => {
                let why = status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == status::READY)
                    .filter(|c| !c.message.is_empty())
                    .map(|c| format!(" ({}: {})", c.reason, c.message))
                    .unwrap_or_default();
                wait(format!(
                    "StreamingConnection `{name}` is not Ready yet{why}; waiting for it"
                ))
            }
        }
    }

    /// The connection's credentials, from its Secret in this namespace; remembered (with the
    /// sandbox) for a cleanup after the StreamingConnection is gone.
    async fn credentials(&self, connection: &StreamingConnection) -> Result<Credentials> {
        let secret = &connection.spec.credentials_ref.name;
        let credentials = credentials::read(&self.ctx.client, &self.namespace, secret).await?;
        self.ctx
            .remember_credentials(&self.namespace, secret, &credentials);
        let scope = (secret.clone(), connection.spec.sandbox.clone());
        self.ctx
            .memory
            .with(&self.uid(), |m| m.dataflow_scope = Some(scope));
        Ok(credentials)
    }

    /// Records why the object waits, and when to look again (sooner on a change of what it waits on).
    async fn wait(
        &mut self,
        reason: Reason,
        message: String,
        retry_in: Duration,
    ) -> Result<Action> {
        self.write(&Progress::Reconciling { reason, message })
            .await?;
        self.ctx
            .memory
            .defer(&self.uid(), self.ctx.dataflow_inputs(self.object), retry_in);
        Ok(Action::requeue(retry_in))
    }

    /// Fencing: no Flow Service write unless this replica may write.
    fn ensure_leading(&self) -> Result<()> {
        self.ctx.ensure_leading()
    }

    fn uid(&self) -> String {
        self.object.uid().unwrap_or_default()
    }

    async fn publish(&self, type_: EventType, reason: Reason, note: String) {
        self.ctx
            .publish_event(self.object, type_, reason, note)
            .await;
    }
}
