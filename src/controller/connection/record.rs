//! The status: what is stored, conditional writes (a conflict means another writer got there first), and
//! the failure report.

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;
use tracing::{info, warn};

use super::{Reconciliation, now};
use crate::api::{
    API_GROUP, API_VERSION, FIELD_MANAGER, StreamingConnection, StreamingConnectionStatus,
};
use crate::controller::error::{Error, Result};
use crate::controller::status::{self, Progress};
use aep_flow::Connection;

impl Reconciliation<'_> {
    /// Takes what a status write returned as the stored status (`fallback` when the answer had
    /// none) and its resourceVersion as the one the next write is conditional on.
    pub(super) fn stored_as(
        &mut self,
        written: StreamingConnection,
        fallback: StreamingConnectionStatus,
    ) {
        let resource_version = written.metadata.resource_version;
        let stored = written.status.unwrap_or(fallback);
        self.ctx
            .remember_status(self.object, &stored, resource_version.clone());
        self.stored = stored;
        self.resource_version = resource_version;
    }

    /// The status as last stored, with the connection created in this reconcile when its id is not
    /// stored yet (see [`Reconciliation::created`]).
    pub(super) fn status(&self) -> StreamingConnectionStatus {
        let mut status = self.stored.clone();
        if let Some((id, etag)) = &self.created {
            status.connection_id = Some(id.clone());
            status.etag = Some(etag.clone());
            status.pending_create = None;
        }
        status
    }

    /// The status that describes `connection`, keeping what else the current status holds.
    pub(super) fn observed_status(
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

    /// Writes `next` with the conditions for `progress`, unless that changes nothing. Like every
    /// status write, only if nobody wrote the object since it was read (see [`Self::write_claim`]):
    /// an apply replaces every field of the field manager, so a write from a stale view would
    /// remove what another writer under the same manager (a second process) stored meanwhile.
    pub(super) async fn write_status(
        &mut self,
        next: StreamingConnectionStatus,
        progress: &Progress,
    ) -> Result<()> {
        self.write_claim(next, progress, "the status").await
    }

    /// Writes the status only if nobody wrote the object since it was read: the write carries
    /// that resourceVersion, and a conflict means another writer got there first.
    pub(super) async fn write_claim(
        &mut self,
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

    pub(super) async fn patch_status(
        &mut self,
        mut next: StreamingConnectionStatus,
        progress: &Progress,
        what: &'static str,
    ) -> Result<()> {
        let current = self.stored.clone();
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
        let resource_version = self.resource_version.clone();
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
    pub(super) async fn report_failure(&mut self, error: &Error) {
        let message = error.to_string();
        if error.gives_way() {
            // Another writer holds the object: this replica must not write over it.
            info!(reason = error.reason().as_str(), error = %message, "gave way to another writer");
            return;
        }
        warn!(reason = error.reason().as_str(), error = %message, "reconcile failed");
        let progress = Progress::failed(error, error.condition_message());
        if let Err(status_error) = self.write_status(self.status(), &progress).await {
            warn!(error = %status_error, "could not record the failure in the status");
        }
        self.publish(EventType::Warning, error.reason(), message)
            .await;
    }
}
