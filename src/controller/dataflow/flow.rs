//! The flow as Flow Service has it: confirmed (a 404 is confirmed over a window before the flow is
//! taken for deleted), brought in line with the spec (name, description and mapping version with
//! `If-Match`; the state through the enable/disable actions), and its runs read into the status.

use kube::runtime::events::EventType;
use tracing::{debug, warn};

use super::{Reconciliation, SHORT_WAIT, Step, desired};
use crate::api::FlowState;
use crate::controller::error::{Error, Result};
use crate::controller::reason::Reason;
use aep_flow::{Flow, FlowErrorKind, Scope, latest_run};

/// A flow that answered 404 is only taken for deleted after this many reads, over at least the
/// settings' `missing_confirm_window` (as for connections: Flow Service is eventually consistent).
const MISSING_CONFIRM_READS: u32 = 3;
/// Runs are read from this long before the latest known run's start (its counts keep growing while
/// it is open, and a later one may start meanwhile).
const RUN_LOOKBACK_MS: i64 = 1;

impl Reconciliation<'_> {
    /// The recorded flow, or `None` once it is confirmed gone (the status forgets it).
    pub(super) async fn read_flow(
        &mut self,
        scope: &Scope<'_>,
        id: &str,
        source_id: &str,
    ) -> Result<Step<Option<Flow>>> {
        match self.ctx.flow.get_flow(scope, id).await {
            Ok(flow) => {
                self.ctx.memory.clear_missing(&self.uid());
                return Ok(Step::Done(Some(flow)));
            }
            Err(error) if error.kind() == FlowErrorKind::NotFound => {}
            Err(error) => return Err(Error::flow("reading the flow")(error)),
        }
        let listed = self
            .ctx
            .flow
            .find_flows_by_source_connection(scope, source_id)
            .await
            .map_err(Error::flow("confirming that the flow is gone"))?;
        if let Some(flow) = listed.into_iter().find(|f| f.id == id) {
            debug!(flow_id = %id, "a read answered 404 but the flow is listed");
            return Ok(Step::Done(Some(flow)));
        }
        let (reads, elapsed) = match self.ctx.memory.note_missing(
            &self.uid(),
            id,
            MISSING_CONFIRM_READS,
            self.ctx.settings.missing_confirm_window,
        ) {
            Ok(confirmed) => confirmed,
            Err(retry_in) => {
                return Ok(Step::Wait {
                    reason: Reason::ConfirmingDeletion,
                    message: format!(
                        "Flow Service answers 404 for flow {id} and does not list it among the flows of \
                         source connection {source_id}; confirming that it is gone before creating a new one"
                    ),
                    retry_in,
                });
            }
        };
        warn!(flow_id = %id, reads, "flow deleted outside the operator; recreating");
        self.publish(
            EventType::Warning,
            Reason::Recreated,
            format!(
                "Flow {id} was deleted outside the operator: {} reads over {}s answered 404 and source \
                 connection {source_id} lists no such flow; creating a new one",
                reads,
                elapsed.as_secs()
            ),
        )
        .await;
        self.ctx.memory.clear_missing(&self.uid());
        self.status.flow_id = None;
        self.status.etag = None;
        self.status.state = None;
        self.status.last_run = None;
        Ok(Step::Done(None))
    }

    /// Brings the flow in line with the spec: name, description and mapping version in one `PATCH`
    /// with `If-Match`, then the state. Returns the flow as last read.
    pub(super) async fn converge_flow(
        &mut self,
        scope: &Scope<'_>,
        mut flow: Flow,
    ) -> Result<Step<Flow>> {
        let mut update = desired::flow_update(self.object, &flow);
        if let (Some(id), Some(version)) = (
            self.status.mapping_set_id.clone(),
            self.status.mapping_set_version,
        ) {
            let wanted = aep_flow::MappingRef {
                mapping_id: id,
                mapping_version: u64::try_from(version).unwrap_or(0),
            };
            if flow.mapping().as_ref() != Some(&wanted) {
                update.mapping = Some(wanted);
            }
        }
        if !update.is_empty() {
            self.ensure_leading()?;
            let changed = describe_update(&update);
            self.ctx
                .flow
                .update_flow(scope, &flow.id, &flow.etag, &update)
                .await
                .map_err(Error::flow("updating the flow"))?;
            self.publish(
                EventType::Normal,
                Reason::Updated,
                format!("Updated flow {}: {changed}", flow.id),
            )
            .await;
            flow = self
                .ctx
                .flow
                .get_flow(scope, &flow.id)
                .await
                .map_err(Error::flow("reading the updated flow"))?;
        }

        let wanted = self.object.spec.state;
        if flow.state == wanted.as_str() {
            return Ok(Step::Done(flow));
        }
        if flow.state != FlowState::Enabled.as_str() && flow.state != FlowState::Disabled.as_str() {
            return Ok(self.transitioning(&flow));
        }
        self.ensure_leading()?;
        let result = match wanted {
            FlowState::Enabled => self.ctx.flow.enable_flow(scope, &flow.id).await,
            FlowState::Disabled => self.ctx.flow.disable_flow(scope, &flow.id).await,
        };
        match result {
            Ok(()) => {}
            Err(error) if error.is_transitional_state() => return Ok(self.transitioning(&flow)),
            Err(error) => {
                return Err(Error::flow(match wanted {
                    FlowState::Enabled => "enabling the flow",
                    FlowState::Disabled => "disabling the flow",
                })(error));
            }
        }
        // Why: a new flow (Flow Service starts them enabled), a changed spec, or drift (a change
        // made outside Kubernetes, worth a warning).
        let (type_, why) = if self.stored.flow_id.as_deref() != Some(flow.id.as_str()) {
            (
                EventType::Normal,
                format!("a new flow starts {}", flow.state),
            )
        } else if self.stored.observed_generation != self.object.metadata.generation {
            (EventType::Normal, "spec.state changed".to_string())
        } else {
            (
                EventType::Warning,
                format!("it was {} outside Kubernetes", flow.state),
            )
        };
        self.publish(
            type_,
            Reason::Updated,
            format!(
                "{} flow {} ({why})",
                match wanted {
                    FlowState::Enabled => "Enabled",
                    FlowState::Disabled => "Disabled",
                },
                flow.id
            ),
        )
        .await;
        let flow = self
            .ctx
            .flow
            .get_flow(scope, &flow.id)
            .await
            .map_err(Error::flow("reading the flow after changing its state"))?;
        if flow.state == wanted.as_str() {
            Ok(Step::Done(flow))
        } else {
            Ok(self.transitioning(&flow))
        }
    }

    fn transitioning(&mut self, flow: &Flow) -> Step<Flow> {
        self.status.state = Some(flow.state.clone());
        self.status.etag = Some(flow.etag.clone());
        Step::Wait {
            reason: Reason::FlowTransitioning,
            message: format!(
                "Flow {} is `{}`; waiting for it to become `{}`",
                flow.id,
                flow.state,
                self.object.spec.state.as_str()
            ),
            retry_in: SHORT_WAIT,
        }
    }

    /// Reads the flow's runs (those since the latest known one) into `status.lastRun`. A failure
    /// to read them keeps what the status says: the runs inform, they decide nothing.
    pub(super) async fn observe_runs(&mut self, scope: &Scope<'_>, flow: &Flow) {
        let since = self
            .status
            .last_run
            .as_ref()
            .and_then(|run| run.started_at.as_ref())
            .map(|at| at.0.as_millisecond() - RUN_LOOKBACK_MS);
        match self.ctx.flow.list_runs(scope, &flow.id, since).await {
            Ok(runs) => {
                if let Some(run) = latest_run(&runs) {
                    self.status.last_run = Some(desired::run_summary(run));
                }
            }
            Err(error) => {
                debug!(%error, flow_id = %flow.id, "could not read the flow's runs; keeping the last summary");
            }
        }
    }
}

/// What an update changes, for the event.
fn describe_update(update: &aep_flow::FlowUpdate) -> String {
    let mut changed = Vec::new();
    if let Some(name) = &update.name {
        changed.push(format!("name `{name}`"));
    }
    if let Some(description) = &update.description {
        changed.push(match description {
            Some(_) => "description".to_string(),
            None => "description removed".to_string(),
        });
    }
    if let Some(mapping) = &update.mapping {
        changed.push(format!(
            "mapping set {} version {}",
            mapping.mapping_id, mapping.mapping_version
        ));
    }
    changed.join(", ")
}
