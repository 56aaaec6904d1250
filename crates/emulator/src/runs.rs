//! Dataflow runs (reference `flow-service-dataflow.md` §14) and how the inlet routes a message through a flow
//! to a dataset (§10, §17).
//!
//! Routing: a message reaches a dataset only through an enabled flow whose source connection sits on the
//! inlet's base connection. XDM messages name the flow in `header.flowId` (else the `x-adobe-flow-id` header or
//! query parameter, as older tutorials and the Kafka connector send it); raw messages by `x-adobe-flow-id` only.
//! An XDM `header.datasetId` or `header.schemaRef.id`, when present, must be the flow's dataset and its schema.
//!
//! Runs: one per flow and hour window (streaming runs are hourly, §14), created by the first record of the
//! window, `inProgress` until the hour is over, then `success`, `partialSuccess` or `failed`. Runs and record
//! counts are delivery records: in memory only, like the inlet records.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::app::{AppState, now_ms};
use super::collections::{self, query_values};
use super::connections::new_etag;
use super::dataflows::{Refusal, STATE_ENABLED};
use super::errors::{ApiError, INLET_PROBLEM_TYPE};
use super::state::{Store, sandbox_id};

/// Runs.
pub(crate) const RUNS_ROUTE: &str = "/data/foundation/flowservice/runs";
/// One run.
pub(crate) const RUN_ROUTE: &str = "/data/foundation/flowservice/runs/{id}";
/// The header (or query parameter) naming the flow of a message.
pub(crate) const FLOW_ID_HEADER: &str = "x-adobe-flow-id";
/// Streaming runs cover one hour each.
pub(crate) const RUN_WINDOW_MS: i64 = 3_600_000;

/// One hour window of one flow.
#[derive(Debug, Clone)]
pub(crate) struct StoredRun {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) flow_id: String,
    pub(crate) org_id: String,
    pub(crate) sandbox_name: String,
    pub(crate) window_start: i64,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) etag: String,
    pub(crate) input_records: u64,
    pub(crate) output_records: u64,
    pub(crate) failed_records: u64,
    pub(crate) input_bytes: u64,
    pub(crate) output_bytes: u64,
}

impl StoredRun {
    fn window_end(&self) -> i64 {
        self.window_start + RUN_WINDOW_MS
    }

    /// `inProgress` while the window is open, then by outcome.
    pub(crate) fn status(&self, now: i64) -> &'static str {
        if now < self.window_end() {
            "inProgress"
        } else if self.failed_records == 0 {
            "success"
        } else if self.output_records == 0 {
            "failed"
        } else {
            "partialSuccess"
        }
    }

    /// The run as `GET /runs/{id}` shows it.
    pub(crate) fn render(&self, now: i64) -> Value {
        let closed = now >= self.window_end();
        let errors: Vec<Value> = if self.failed_records > 0 {
            vec![json!({
                "code": "INGEST-1212-400",
                "recordCount": self.failed_records,
                "message": "Records did not match the dataflow's dataset or schema.",
            })]
        } else {
            Vec::new()
        };
        let mut duration = json!({ "startedAtUTC": self.window_start });
        if closed {
            duration["completedAtUTC"] = json!(self.window_end());
        }
        json!({
            "id": self.id,
            "flowId": self.flow_id,
            "etag": self.etag,
            "version": self.etag,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "sandboxId": sandbox_id(&self.org_id, &self.sandbox_name),
            "sandboxName": self.sandbox_name,
            "imsOrgId": self.org_id,
            "metrics": {
                "durationSummary": duration,
                "sizeSummary": { "inputBytes": self.input_bytes, "outputBytes": self.output_bytes },
                "recordSummary": {
                    "inputRecordCount": self.input_records,
                    "outputRecordCount": self.output_records,
                    "failedRecordCount": self.failed_records,
                },
                "statusSummary": { "status": self.status(now), "errors": errors },
            },
        })
    }

    /// The flow's `lastRunDetails`: `state` is the run's status.
    pub(crate) fn details(&self, now: i64) -> Value {
        let mut details = json!({
            "id": self.id,
            "state": self.status(now),
            "startedAtUTC": self.window_start,
        });
        if now >= self.window_end() {
            details["completedAtUTC"] = json!(self.window_end());
        }
        details
    }
}

/// The newest run of a flow.
pub(crate) fn latest_run<'a>(store: &'a Store, flow_id: &str) -> Option<&'a StoredRun> {
    store
        .dataflow
        .runs
        .values()
        .filter(|run| run.flow_id == flow_id)
        .max_by_key(|run| run.seq)
}

/// `GET /runs` with the list parameters of every Flow Service collection, e.g. `property=flowId==<id>`.
pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    collections::list(
        &app,
        query.as_deref(),
        &headers,
        "/runs",
        |store| &store.runs,
        |_, run, now| run.render(now),
    )
}

/// `GET /runs/{id}` → 200 `{items: [run]}`.
pub(crate) async fn get_one(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    collections::get_one(
        &app,
        &id,
        &headers,
        "runs",
        |store| &store.runs,
        |_, run| run.render(now_ms()),
    )
}

/// Where one accepted message goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Routing {
    /// No flow named: received, but it reaches no dataset.
    Unrouted,
    /// Through this flow into this dataset.
    Routed {
        flow_id: String,
        dataset_id: String,
        bytes: u64,
    },
    /// Refused, in DCS's words. `failed_flow`: the enabled flow of this inlet whose run counts it as failed when
    /// the inlet received it asynchronously.
    Rejected {
        reason: String,
        failed_flow: Option<String>,
    },
}

impl Routing {
    /// The rejection message, if the message cannot be routed.
    pub(crate) fn rejection(&self) -> Option<&str> {
        match self {
            Self::Rejected { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// The flow id an HTTP request names for its messages: the `x-adobe-flow-id` header, else the query parameter.
pub(crate) fn requested_flow_id(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    super::connections::header_text(headers, FLOW_ID_HEADER)
        .map(str::to_owned)
        .or_else(|| {
            query_values(query, FLOW_ID_HEADER)
                .into_iter()
                .find(|value| !value.trim().is_empty())
                .map(|value| value.trim().to_owned())
        })
}

/// Decide where a message goes (see the module docs).
pub(crate) fn resolve(
    app: &AppState,
    inlet: (&str, &str, &str),
    xdm: bool,
    message: &Value,
    requested_flow: Option<&str>,
) -> Routing {
    let (inlet_id, connection_id, org_id) = inlet;
    let header = message.get("header").filter(|_| xdm);
    let flow_id = header
        .and_then(|h| h.get("flowId"))
        .and_then(Value::as_str)
        .or(requested_flow);
    let Some(flow_id) = flow_id else {
        return Routing::Unrouted;
    };
    let prefix = format!("inletId: [{inlet_id}] imsOrgId: [{org_id}]");
    let rejected = |reason: String, failed_flow: Option<String>| Routing::Rejected {
        reason: format!("{prefix} {reason}"),
        failed_flow,
    };
    let store = app.store.lock().expect("store lock");
    let Some(flow) = store
        .dataflow
        .flows
        .get(flow_id)
        .filter(|flow| super::flows::base_connection_of(flow) == Some(connection_id))
    else {
        return rejected(
            format!("The dataflow [{flow_id}] does not exist for this inlet."),
            None,
        );
    };
    if flow.state != STATE_ENABLED {
        return rejected(format!("The dataflow [{flow_id}] is not enabled."), None);
    }
    let dataset = flow
        .first_id("targetConnectionIds")
        .and_then(|t| store.dataflow.target_connections.get(t))
        .and_then(|t| t.pointer("/params/dataSetId"))
        .and_then(Value::as_str)
        .and_then(|d| store.dataflow.datasets.get(d));
    let Some(dataset) = dataset else {
        return rejected(
            format!("The target dataset of dataflow [{flow_id}] does not exist."),
            Some(flow_id.to_owned()),
        );
    };
    if let Some(named) = header
        .and_then(|h| h.get("datasetId"))
        .and_then(Value::as_str)
        .filter(|named| *named != dataset.id)
    {
        return rejected(
            format!(
                "The datasetId [{named}] is not the target dataset [{}] of dataflow [{flow_id}].",
                dataset.id
            ),
            Some(flow_id.to_owned()),
        );
    }
    if let Some(schema) = header
        .and_then(|h| h.pointer("/schemaRef/id"))
        .and_then(Value::as_str)
        .filter(|schema| *schema != dataset.schema_id())
    {
        return rejected(
            format!(
                "The schemaRef [{schema}] does not match the schema [{}] of dataset [{}].",
                dataset.schema_id(),
                dataset.id
            ),
            Some(flow_id.to_owned()),
        );
    }
    Routing::Routed {
        flow_id: flow_id.to_owned(),
        dataset_id: dataset.id.clone(),
        bytes: serde_json::to_vec(message).map_or(0, |b| b.len() as u64),
    }
}

/// The 400 of a single message with `syncValidation=true` that cannot be routed (the documented sync-validation
/// shape).
pub(crate) fn sync_rejection(reason: &str) -> ApiError {
    ApiError::Inlet {
        status: StatusCode::BAD_REQUEST,
        body: json!({
            "type": INLET_PROBLEM_TYPE,
            "status": 400,
            "title": "Invalid Message",
            "report": {
                "message": reason,
                "cause": { "_streamingValidation": [{
                    "schemaLocation": "#",
                    "pointerToViolation": "#",
                    "causingExceptions": [],
                    "message": reason,
                }]}
            }
        }),
    }
}

/// Count messages the inlet answered 200/207 for: routed ones in their dataset and their flow's run of the
/// current hour, rejected ones of an enabled flow as failed in that run, the rest as unrouted on the inlet.
pub(crate) fn deliver(app: &AppState, inlet_id: &str, routings: Vec<Routing>) {
    if routings.is_empty() {
        return;
    }
    let now = now_ms();
    let mut store = app.store.lock().expect("store lock");
    for routing in routings {
        match routing {
            Routing::Routed {
                flow_id,
                dataset_id,
                bytes,
            } => {
                if let Some(dataset) = store.dataflow.datasets.get_mut(&dataset_id) {
                    dataset.records += 1;
                }
                let run = current_run(&mut store, &flow_id, now);
                run.input_records += 1;
                run.output_records += 1;
                run.input_bytes += bytes;
                run.output_bytes += bytes;
            }
            Routing::Rejected {
                failed_flow: Some(flow_id),
                ..
            } => {
                let run = current_run(&mut store, &flow_id, now);
                run.input_records += 1;
                run.failed_records += 1;
            }
            Routing::Unrouted | Routing::Rejected { .. } => {
                *store
                    .dataflow
                    .unrouted
                    .entry(inlet_id.to_owned())
                    .or_default() += 1;
            }
        }
    }
}

/// The run of `flow_id` for the hour window holding `now`, created on first use.
fn current_run<'a>(store: &'a mut Store, flow_id: &str, now: i64) -> &'a mut StoredRun {
    let window_start = now - now.rem_euclid(RUN_WINDOW_MS);
    let existing = store
        .dataflow
        .runs
        .values()
        .find(|run| run.flow_id == flow_id && run.window_start == window_start)
        .map(|run| run.id.clone());
    let id = match existing {
        Some(id) => id,
        None => {
            let (org_id, sandbox_name) = store
                .dataflow
                .flows
                .get(flow_id)
                .map(|f| (f.org_id.clone(), f.sandbox_name.clone()))
                .unwrap_or_default();
            let run = StoredRun {
                id: uuid::Uuid::new_v4().to_string(),
                seq: store.take_seq(),
                flow_id: flow_id.to_owned(),
                org_id,
                sandbox_name,
                window_start,
                created_at: now,
                updated_at: now,
                etag: new_etag(now, None),
                input_records: 0,
                output_records: 0,
                failed_records: 0,
                input_bytes: 0,
                output_bytes: 0,
            };
            let id = run.id.clone();
            store.dataflow.runs.insert(id.clone(), run);
            id
        }
    };
    let run = store
        .dataflow
        .runs
        .get_mut(&id)
        .expect("just found or made");
    run.updated_at = now;
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(output: u64, failed: u64) -> StoredRun {
        StoredRun {
            id: "r".into(),
            seq: 1,
            flow_id: "f".into(),
            org_id: "O@AdobeOrg".into(),
            sandbox_name: "prod".into(),
            window_start: 0,
            created_at: 0,
            updated_at: 0,
            etag: "\"e\"".into(),
            input_records: output + failed,
            output_records: output,
            failed_records: failed,
            input_bytes: 0,
            output_bytes: 0,
        }
    }

    #[test]
    fn a_run_is_in_progress_during_its_hour_then_reports_its_outcome() {
        assert_eq!(run(1, 0).status(RUN_WINDOW_MS - 1), "inProgress");
        assert_eq!(run(1, 0).status(RUN_WINDOW_MS), "success");
        assert_eq!(run(1, 1).status(RUN_WINDOW_MS), "partialSuccess");
        assert_eq!(run(0, 1).status(RUN_WINDOW_MS), "failed");
        let rendered = run(1, 0).render(RUN_WINDOW_MS);
        assert_eq!(
            rendered["metrics"]["durationSummary"]["completedAtUTC"],
            RUN_WINDOW_MS
        );
    }

    #[test]
    fn the_flow_id_comes_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            requested_flow_id(&headers, Some("x-adobe-flow-id=q")),
            Some("q".into())
        );
        headers.insert(FLOW_ID_HEADER, "h".parse().unwrap());
        assert_eq!(
            requested_flow_id(&headers, Some("x-adobe-flow-id=q")),
            Some("h".into())
        );
    }
}
