//! The StreamingDataflow's status: the first conditions, conditional writes (with the resourceVersion
//! that was read: a conflict means another writer got there first), and the failure report.

use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;
use tracing::{info, warn};

use super::{READY_MESSAGE, Reconciliation};
use crate::api::{
    API_GROUP, API_VERSION, FIELD_MANAGER, StreamingDataflow, StreamingDataflowStatus,
};
use crate::controller::error::{Error, Result};
use crate::controller::status::{self, Progress};

impl Reconciliation<'_> {
    fn stored_as(&mut self, written: StreamingDataflow, fallback: StreamingDataflowStatus) {
        let resource_version = written.metadata.resource_version;
        let stored = written.status.unwrap_or(fallback);
        if let Some(uid) = self.object.uid() {
            let remembered = (stored.clone(), resource_version.clone());
            self.ctx
                .memory
                .with(&uid, |m| m.written_dataflow = Some(remembered));
        }
        self.stored = stored;
        self.resource_version = resource_version;
    }

    /// Writes the status being built with the conditions for `progress`, unless that changes
    /// nothing (`lastSyncedAt` alone never justifies a write).
    pub(super) async fn write(&mut self, progress: &Progress) -> Result<()> {
        self.write_claim(progress, "the status").await
    }

    /// Writes the status being built only if nobody wrote the object since it was read.
    pub(super) async fn write_claim(
        &mut self,
        progress: &Progress,
        what: &'static str,
    ) -> Result<()> {
        match self.patch_status(progress, what).await {
            Err(Error::Kubernetes {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 409 => {
                if let Some(uid) = self.object.uid() {
                    self.ctx.memory.with(&uid, |m| m.written_dataflow = None);
                }
                Err(Error::ClaimConflict { what })
            }
            other => other,
        }
    }

    async fn patch_status(&mut self, progress: &Progress, what: &'static str) -> Result<()> {
        let generation = self.object.metadata.generation;
        let timestamp = now();
        let mut next = self.status.clone();
        next.observed_generation = generation;
        next.conditions = status::conditions_for(
            &self.stored.conditions,
            progress,
            generation,
            &timestamp,
            READY_MESSAGE,
        );
        next.last_synced_at = self.stored.last_synced_at.clone();
        if next == self.stored {
            self.status = next;
            return Ok(());
        }
        next.last_synced_at = Some(timestamp);
        let mut patch = json!({
            "apiVersion": format!("{API_GROUP}/{API_VERSION}"),
            "kind": "StreamingDataflow",
            "status": next,
        });
        if let Some(resource_version) = self.resource_version.clone() {
            patch["metadata"] = json!({ "resourceVersion": resource_version });
        }
        let written = self
            .api
            .patch_status(
                &self.object.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(Error::kube(what))?;
        self.status = next.clone();
        self.stored_as(written, next);
        Ok(())
    }

    /// Records a failed reconcile: the conditions get the error's stable text, the Warning event
    /// and the log the full text.
    pub(super) async fn report_failure(&mut self, error: &Error) {
        let message = error.to_string();
        if error.gives_way() {
            info!(reason = error.reason().as_str(), error = %message, "gave way to another writer");
            return;
        }
        warn!(reason = error.reason().as_str(), error = %message, "reconcile failed");
        let progress = Progress::failed(error, error.condition_message());
        if let Err(status_error) = self.write(&progress).await {
            warn!(error = %status_error, "could not record the failure in the status");
        }
        self.publish(EventType::Warning, error.reason(), message)
            .await;
    }
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}
