//! Flow runs (`GET /runs?property=flowId==…`): the summary fields the operator puts in a dataflow's
//! status, and the choice of the latest run.
//!
//! Streaming runs are hourly windows; a fresh flow has none until data arrives and its window closes.
//! Status values vary in casing and wording across sources (`success`, `failed`, `partialSuccess`,
//! `Failed`, `FAILED`), so they are kept as Adobe wrote them and compared ignoring case.

use serde_json::Value;

use super::listing::text_at;

/// One run of a flow, reduced to its summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The run id.
    pub id: String,
    /// The flow it belongs to.
    pub flow_id: Option<String>,
    /// `metrics.statusSummary.status`, as written (`success`, `failed`, `partialSuccess`, …).
    pub status: Option<String>,
    /// `metrics.durationSummary.startedAtUTC`, epoch milliseconds.
    pub started_at: Option<i64>,
    /// `metrics.durationSummary.completedAtUTC`, epoch milliseconds.
    pub completed_at: Option<i64>,
    /// `metrics.recordSummary.inputRecordCount`.
    pub input_record_count: Option<u64>,
    /// `metrics.recordSummary.outputRecordCount`.
    pub output_record_count: Option<u64>,
    /// `metrics.recordSummary.failedRecordCount`.
    pub failed_record_count: Option<u64>,
    /// The `code`s of `metrics.statusSummary.errors[]` (e.g. `CONNECTOR-2001-500`).
    pub error_codes: Vec<String>,
    /// `createdAt`, epoch milliseconds: orders runs that have not started.
    pub created_at: Option<i64>,
}

impl Run {
    /// True when the status says the run failed (`failed`, any case). A `partialSuccess` or a
    /// `success` with failed records is degraded, not failed: see [`Run::failed_record_count`].
    pub fn is_failed(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|status| status.eq_ignore_ascii_case("failed"))
    }
}

/// One run item (of a list page or of `GET /runs/{id}`).
pub(crate) fn parse_run(item: &Value) -> Option<Run> {
    let metric = |pointer: &str| item.pointer(&format!("/metrics/{pointer}"));
    let count = |name: &str| metric(&format!("recordSummary/{name}")).and_then(Value::as_u64);
    Some(Run {
        id: text_at(item, "/id").filter(|id| !id.is_empty())?,
        flow_id: text_at(item, "/flowId"),
        status: metric("statusSummary/status")
            .and_then(Value::as_str)
            .map(str::to_owned),
        started_at: metric("durationSummary/startedAtUTC").and_then(Value::as_i64),
        completed_at: metric("durationSummary/completedAtUTC").and_then(Value::as_i64),
        input_record_count: count("inputRecordCount"),
        output_record_count: count("outputRecordCount"),
        failed_record_count: count("failedRecordCount"),
        error_codes: metric("statusSummary/errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|error| text_at(error, "/code"))
            .collect(),
        created_at: item.get("createdAt").and_then(Value::as_i64),
    })
}

/// The latest run: the one that started last, runs without a start time counting by `createdAt`
/// (a run that started is later than one that never did at the same instant). Ties keep the first.
pub fn latest_run(runs: &[Run]) -> Option<&Run> {
    runs.iter().reduce(|latest, run| {
        let key = |run: &Run| (run.started_at.or(run.created_at), run.started_at.is_some());
        if key(run) > key(latest) { run } else { latest }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    /// The run item of the reference (§14).
    fn documented() -> Value {
        json!({
            "id": "9830305a-985f-47d0-b030-5a5bd5a1ea6e", "flowId": "c9cef9cb-c934-4467-8ef9-cef9cbc93446",
            "etag": "\"1100c53e\"", "createdAt": 1596656079576_i64, "updatedAt": 1596656113526_i64,
            "sandboxName": "prod",
            "metrics": {
                "durationSummary": { "startedAtUTC": 1596656058198_i64, "completedAtUTC": 1596656113306_i64 },
                "sizeSummary": { "inputBytes": 24012, "outputBytes": 17128 },
                "recordSummary": { "inputRecordCount": 100, "outputRecordCount": 99, "failedRecordCount": 1 },
                "fileSummary": { "inputFileCount": 1, "outputFileCount": 1 },
                "statusSummary": { "status": "success",
                    "errors": [ { "code": "CONNECTOR-2001-500", "message": "Error occurred at promotion activity." } ] }
            },
            "activities": []
        })
    }

    #[test]
    fn the_documented_run_is_summarised() {
        assert_eq!(
            parse_run(&documented()).unwrap(),
            Run {
                id: "9830305a-985f-47d0-b030-5a5bd5a1ea6e".into(),
                flow_id: Some("c9cef9cb-c934-4467-8ef9-cef9cbc93446".into()),
                status: Some("success".into()),
                started_at: Some(1596656058198),
                completed_at: Some(1596656113306),
                input_record_count: Some(100),
                output_record_count: Some(99),
                failed_record_count: Some(1),
                error_codes: vec!["CONNECTOR-2001-500".into()],
                created_at: Some(1596656079576),
            }
        );
    }

    #[test]
    fn a_run_without_metrics_still_parses_and_failure_ignores_case() {
        let run = parse_run(&json!({ "id": "r" })).unwrap();
        assert_eq!(run.status, None);
        assert!(!run.is_failed());
        let failed = parse_run(&json!({ "id": "r",
            "metrics": { "statusSummary": { "status": "Failed" } } }))
        .unwrap();
        assert!(failed.is_failed());
        assert_eq!(parse_run(&json!({ "flowId": "f" })), None);
    }

    #[test]
    fn the_latest_run_is_the_last_started() {
        let run = |id: &str, started: Option<i64>, created: Option<i64>| Run {
            started_at: started,
            created_at: created,
            ..parse_run(&json!({ "id": id })).unwrap()
        };
        let runs = [
            run("old", Some(10), Some(5)),
            run("new", Some(30), Some(1)),
            run("queued", None, Some(20)),
        ];
        assert_eq!(latest_run(&runs).unwrap().id, "new");
        assert_eq!(latest_run(&runs[2..]).unwrap().id, "queued");
        assert_eq!(latest_run(&[]), None);
        let tie = [
            run("started", Some(20), None),
            run("queued", None, Some(20)),
        ];
        assert_eq!(latest_run(&tie).unwrap().id, "started");
    }
}
