//! Prometheus metrics: reconciles by outcome, their duration, Flow Service requests by operation and
//! status class, how many objects are in which state, and the usual process metrics. Labels are
//! bounded: never an object name, namespace, id or secret (a label per object would make a series
//! per object, which no Prometheus wants).
//!
//! Two encodings of the same registry, both written by `prometheus-client` itself rather than by hand:
//! OpenMetrics 1.0 (`text::encode`) and the Prometheus text format 0.0.4 (`prometheus_text::encode`,
//! new in 0.26, which names counters with `_total`, writes no `# UNIT`, `_created` or `# EOF` lines,
//! and so is what `promtool check metrics` and older scrapers parse). `http` picks one per request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use aep_flow::{FlowObserver, Operation};

use crate::controller::Reason;
use crate::controller::status::READY;

/// How a reconcile ended: the `result` label of `aep_operator_reconciles_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileResult {
    /// The reconcile did its work (`success`).
    Success,
    /// The last failure's retry time had not come: nothing was tried (`deferred`).
    Deferred,
    /// The reconcile failed: labelled with the error's reason.
    Failed(Reason),
}

impl ReconcileResult {
    /// The label value: `success`, `deferred` or the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::Deferred => "deferred",
            ReconcileResult::Failed(reason) => reason.as_str(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    /// `success`, `deferred` or the error's reason.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    operation: &'static str,
    outcome: &'static str,
}

/// The exposition format of one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 (`application/openmetrics-text`), what Prometheus asks for first.
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain`), for `promtool`, `curl` and older scrapers.
    PrometheusText,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format for a request's `Accept` header: OpenMetrics when the client asks for
    /// `application/openmetrics-text` at least as much (by `q`) as for anything else, otherwise
    /// the text format, which is also the answer to no header, `*/*` or a type neither of them is.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let mut openmetrics: f32 = 0.0;
        let mut other: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media_type = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            // RFC 9110: a missing or malformed q counts as 1; q=0 means "not acceptable".
            let quality = parts
                .filter_map(|parameter| parameter.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, value)| value.trim().parse::<f32>().ok())
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            match media_type.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
                "" => {}
                _ => other = other.max(quality),
            }
        }
        if openmetrics > 0.0 && openmetrics >= other {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// The `ready` label of `aep_operator_objects`: the status of the object's `Ready` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadyStatus {
    True,
    False,
    /// No `Ready` condition yet, or one written for an older generation of the object (the change
    /// is being reconciled): what kstatus also calls "in progress".
    Unknown,
}

impl ReadyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyStatus::True => "True",
            ReadyStatus::False => "False",
            ReadyStatus::Unknown => "Unknown",
        }
    }
}

/// Where one object stands, as `aep_operator_objects` counts it: its `Ready` status and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectState {
    pub ready: ReadyStatus,
    /// `None` for a reason that this version does not know (written by another version of the
    /// operator, or by hand): exported as `Other`, so that the label stays a closed set.
    pub reason: Option<Reason>,
}

/// The `reason` label of an object whose reason this version does not know.
pub const OTHER_REASON: &str = "Other";

impl ObjectState {
    /// The state of an object with these status conditions and this `metadata.generation`.
    ///
    /// No `Ready` condition: `Unknown` with reason `Initializing` (the operator has not written a
    /// status yet). A `Ready` condition of an older generation: `Unknown` with reason `Reconciling`,
    /// as `controller::status::is_ready` also refuses to call it ready.
    pub fn of(conditions: &[Condition], generation: Option<i64>) -> ObjectState {
        match conditions.iter().find(|condition| condition.type_ == READY) {
            None => ObjectState {
                ready: ReadyStatus::Unknown,
                reason: Some(Reason::Initializing),
            },
            Some(condition) if condition.observed_generation != generation => ObjectState {
                ready: ReadyStatus::Unknown,
                reason: Some(Reason::Reconciling),
            },
            Some(condition) => ObjectState {
                ready: match condition.status.as_str() {
                    "True" => ReadyStatus::True,
                    "False" => ReadyStatus::False,
                    _ => ReadyStatus::Unknown,
                },
                reason: condition.reason.parse().ok(),
            },
        }
    }

    fn reason_label(self) -> &'static str {
        self.reason.map_or(OTHER_REASON, Reason::as_str)
    }
}

/// Reads the states of every object of one kind at scrape time (the controller's cache).
type StateSource = Box<dyn Fn() -> Vec<ObjectState> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ObjectLabels {
    kind: &'static str,
    ready: &'static str,
    reason: &'static str,
}

/// `aep_operator_objects`: computed on each scrape from the sources the controller registers, so
/// it can never drift from the cache (no gauge to increment and decrement on every event).
#[derive(Clone, Default)]
struct ObjectCounts {
    sources: Arc<RwLock<Vec<(&'static str, StateSource)>>>,
}

impl fmt::Debug for ObjectCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectCounts").finish_non_exhaustive()
    }
}

impl ObjectCounts {
    fn counts(&self) -> BTreeMap<ObjectLabels, i64> {
        let mut counts = BTreeMap::new();
        let sources = self.sources.read().expect("object sources lock");
        for (kind, source) in sources.iter() {
            for state in source() {
                let labels = ObjectLabels {
                    kind,
                    ready: state.ready.as_str(),
                    reason: state.reason_label(),
                };
                *counts.entry(labels).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl Collector for ObjectCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let counts = self.counts();
        // Like the registry's own metrics: no family without a series (a standby caches nothing).
        if counts.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "objects",
            "Objects managed by the operator, by kind and by the status and reason of their Ready condition",
            None,
            MetricType::Gauge,
        )?;
        for (labels, count) in counts {
            ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Histogram,
    flow_requests: Family<FlowLabels, Counter>,
    flow_request_duration: Family<FlowLabels, Histogram>,
    objects: ObjectCounts,
    /// 1 while this replica holds the leader-election Lease (or runs without leader election).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        // The process metrics keep their conventional unprefixed names (`process_*`), which every
        // dashboard and alert for any exporter already uses; the operator's own carry the prefix.
        registry.register_collector(Box::new(ProcessCollector));
        let operator = registry.sub_registry_with_prefix("aep_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        operator.register(
            "reconciles",
            "Reconciles of StreamingConnections and StreamingDataflows by result",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        operator.register_with_unit(
            "reconcile_duration",
            "Time one reconcile took",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let flow_requests = Family::<FlowLabels, Counter>::default();
        operator.register(
            "flow_requests",
            "HTTP requests to Flow Service and IMS by operation and status class",
            flow_requests.clone(),
        );
        let flow_request_duration = Family::<FlowLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        operator.register_with_unit(
            "flow_request_duration",
            "Latency of HTTP requests to Flow Service and IMS",
            Unit::Seconds,
            flow_request_duration.clone(),
        );
        let leader = Gauge::default();
        operator.register(
            "leader",
            "1 while this replica is the active reconciler",
            leader.clone(),
        );
        let objects = ObjectCounts::default();
        operator.register_collector(Box::new(objects.clone()));
        Self {
            registry,
            reconciles,
            reconcile_duration,
            flow_requests,
            flow_request_duration,
            objects,
            leader,
        }
    }
}

impl Metrics {
    /// Counts a finished reconcile.
    pub fn reconciled(&self, result: ReconcileResult, elapsed: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                result: result.as_str(),
            })
            .inc();
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    /// Makes `aep_operator_objects{kind}` count the states that `states` returns, on every scrape.
    /// The controller registers one source per kind, reading its cache; registering a kind again
    /// replaces its source (a controller started anew after a restart of `run`).
    pub fn count_objects(
        &self,
        kind: &'static str,
        states: impl Fn() -> Vec<ObjectState> + Send + Sync + 'static,
    ) {
        let mut sources = self.objects.sources.write().expect("object sources lock");
        sources.retain(|(registered, _)| *registered != kind);
        sources.push((kind, Box::new(states)));
    }

    /// Every metric in `format`.
    pub fn encode_as(&self, format: Format) -> String {
        let mut text = String::new();
        let written = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &self.registry)
            }
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            }
        };
        written.expect("writing to a String cannot fail");
        text
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        self.encode_as(Format::OpenMetrics)
    }
}

/// The process metrics of the Prometheus client libraries (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
/// `process_max_fds`, `process_start_time_seconds`), read from Linux's `/proc` on every scrape.
///
/// Written here rather than taken from a crate: `prometheus-client` has no process collector, and the
/// crates that do either belong to another metrics library (`prometheus`, `metrics-process`) or
/// pull in a whole `/proc` parser (`procfs`) for six numbers. It reads what Go's `procfs` reads, the
/// way it does. A value that cannot be read (not Linux, `/proc` not mounted) is left out, never
/// reported as 0, and never fails the scrape.
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of the times in `/proc/<pid>/stat`. The kernel reports them in USER_HZ,
/// which is 100 on every architecture Kubernetes runs on; Go's `procfs` (behind the official
/// client's process collector) takes the same constant, as reading `sysconf` would need `unsafe`.
const USER_HZ: f64 = 100.0;

/// The numbers of one reading of `/proc`.
#[derive(Debug, Default, Clone, PartialEq)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_memory_bytes: Option<i64>,
    virtual_memory_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
    start_time_seconds: Option<f64>,
}

impl ProcessStats {
    fn read() -> ProcessStats {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let mut stats = ProcessStats::default();
        if let Some(stat) = read("/proc/self/stat") {
            let boot_time = read("/proc/stat").as_deref().and_then(boot_time_seconds);
            stats.apply_stat(&stat, boot_time);
        }
        stats.resident_memory_bytes = read("/proc/self/status")
            .as_deref()
            .and_then(resident_memory_bytes);
        stats.max_fds = read("/proc/self/limits")
            .as_deref()
            .and_then(max_open_files);
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| i64::try_from(entries.count()).unwrap_or(i64::MAX));
        stats
    }

    /// The fields of `/proc/self/stat` (see proc_pid_stat(5)): user and system time, the start time
    /// in ticks after boot, and the virtual memory size in bytes.
    fn apply_stat(&mut self, stat: &str, boot_time: Option<f64>) {
        // The command name (field 2) is in parentheses and may itself hold spaces and ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return;
        };
        // `rest` starts at field 3 (state): field N is rest[N - 3].
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |number: usize| fields.get(number - 3).and_then(|v| v.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (field(14), field(15)) {
            self.cpu_seconds = Some((user + system) as f64 / USER_HZ);
        }
        if let (Some(start_ticks), Some(boot_time)) = (field(22), boot_time) {
            self.start_time_seconds = Some(boot_time + start_ticks as f64 / USER_HZ);
        }
        self.virtual_memory_bytes = field(23).and_then(|bytes| i64::try_from(bytes).ok());
    }
}

/// `btime` of `/proc/stat`: when the system booted, in seconds since the epoch.
fn boot_time_seconds(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// `VmRSS` of `/proc/self/status` (in kB there), in bytes.
fn resident_memory_bytes(status: &str) -> Option<i64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kilobytes: i64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
    kilobytes.checked_mul(1024)
}

/// The soft limit of "Max open files" in `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let stats = ProcessStats::read();
        if let Some(seconds) = stats.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size in bytes",
                Some(Unit::Bytes),
                stats.resident_memory_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes",
                Some(Unit::Bytes),
                stats.virtual_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                None,
                stats.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                stats.max_fds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    unit.as_ref(),
                    gauge.metric_type(),
                )?)?;
            }
        }
        if let Some(seconds) = stats.start_time_seconds {
            let gauge = ConstGauge::new(seconds);
            gauge.encode(encoder.encode_descriptor(
                "process_start_time",
                "Start time of the process since unix epoch in seconds",
                Some(&Unit::Seconds),
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// The Flow Service client reports each request here.
#[derive(Clone)]
pub struct FlowMetrics(pub Arc<Metrics>);

impl FlowObserver for FlowMetrics {
    fn on_request(&self, operation: Operation, outcome: &'static str, elapsed: Duration) {
        let labels = FlowLabels {
            operation: operation.as_str(),
            outcome,
        };
        self.0.flow_requests.get_or_create(&labels).inc();
        self.0
            .flow_request_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use crate::controller::status::{self, Progress};

    fn exercised() -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::default());
        metrics.reconciled(ReconcileResult::Success, Duration::from_millis(20));
        metrics.reconciled(ReconcileResult::Deferred, Duration::from_millis(1));
        metrics.reconciled(
            ReconcileResult::Failed(Reason::RateLimited),
            Duration::from_millis(5),
        );
        FlowMetrics(metrics.clone()).on_request(
            Operation::Create,
            "2xx",
            Duration::from_millis(30),
        );
        metrics
    }

    #[test]
    fn metrics_are_exported_with_bounded_labels() {
        for format in [Format::OpenMetrics, Format::PrometheusText] {
            let text = exercised().encode_as(format);
            assert!(
                text.contains(r#"aep_operator_reconciles_total{result="success"} 1"#),
                "{text}"
            );
            assert!(text.contains(r#"aep_operator_reconciles_total{result="deferred"} 1"#));
            assert!(text.contains(r#"aep_operator_reconciles_total{result="RateLimited"} 1"#));
            assert!(text.contains(
                r#"aep_operator_flow_requests_total{operation="create",outcome="2xx"} 1"#
            ));
            assert!(text.contains("aep_operator_reconcile_duration_seconds_bucket"));
            assert!(text.contains("aep_operator_flow_request_duration_seconds_count"));
        }
    }

    /// The text format names a counter's family after its samples (`_total`) and has none of the
    /// OpenMetrics-only lines, which a text-format parser would read as a different metric or
    /// reject; OpenMetrics keeps them.
    #[test]
    fn the_text_format_is_not_openmetrics() {
        let metrics = exercised();
        let text = metrics.encode_as(Format::PrometheusText);
        assert!(
            text.contains("# TYPE aep_operator_reconciles_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE aep_operator_reconcile_duration_seconds histogram\n"));
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{text}"
        );
        for openmetrics_only in ["# EOF", "# UNIT", "_created"] {
            assert!(
                !text.contains(openmetrics_only),
                "{openmetrics_only} in\n{text}"
            );
        }
        let openmetrics = metrics.encode_as(Format::OpenMetrics);
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
        assert!(openmetrics.contains("# TYPE aep_operator_reconciles counter\n"));
        assert!(openmetrics.contains("# UNIT aep_operator_reconcile_duration_seconds seconds\n"));
    }

    #[test]
    fn the_accept_header_chooses_the_format() {
        let cases = [
            (None, Format::PrometheusText),
            (Some("text/plain"), Format::PrometheusText),
            (Some("*/*"), Format::PrometheusText),
            (Some("application/json"), Format::PrometheusText),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                Format::OpenMetrics,
            ),
            // What Prometheus 3 sends by default: OpenMetrics first.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
                     application/openmetrics-text;version=0.0.1;q=0.5,\
                     text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
                     text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                ),
                Format::OpenMetrics,
            ),
            // What Prometheus sends with `scrape_protocols: [PrometheusText0.0.4]`.
            (
                Some("text/plain;version=0.0.4;q=0.9,*/*;q=0.1"),
                Format::PrometheusText,
            ),
            (
                Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
                Format::PrometheusText,
            ),
            (
                Some("Application/OpenMetrics-Text;Q=0.8, */*;q=0.1"),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0"),
                Format::PrometheusText,
            ),
            (
                Some("application/openmetrics-text, */*"),
                Format::OpenMetrics,
            ),
        ];
        for (accept, expected) in cases {
            assert_eq!(Format::negotiate(accept), expected, "Accept: {accept:?}");
        }
    }

    fn ready_conditions(progress: &Progress, generation: i64) -> Vec<Condition> {
        let now = Time(Timestamp::from_second(1_800_000_000).unwrap());
        status::conditions(&[], progress, Some(generation), &now)
    }

    #[test]
    fn an_object_state_is_its_ready_condition_for_the_current_generation() {
        let ready = ready_conditions(&Progress::Ready, 2);
        assert_eq!(
            ObjectState::of(&ready, Some(2)),
            ObjectState {
                ready: ReadyStatus::True,
                reason: Some(Reason::Ready)
            }
        );
        let stalled = ready_conditions(
            &Progress::Stalled {
                reason: Reason::CredentialsNotFound,
                message: "no Secret".into(),
            },
            2,
        );
        assert_eq!(
            ObjectState::of(&stalled, Some(2)),
            ObjectState {
                ready: ReadyStatus::False,
                reason: Some(Reason::CredentialsNotFound)
            }
        );
        // The spec changed since the status was written: not ready yet, as `is_ready` says too.
        assert_eq!(
            ObjectState::of(&ready, Some(3)),
            ObjectState {
                ready: ReadyStatus::Unknown,
                reason: Some(Reason::Reconciling)
            }
        );
        assert!(!status::is_ready(
            Some(&crate::api::StreamingConnectionStatus {
                conditions: ready.clone(),
                ..Default::default()
            }),
            Some(3)
        ));
        assert_eq!(
            ObjectState::of(&[], Some(1)),
            ObjectState {
                ready: ReadyStatus::Unknown,
                reason: Some(Reason::Initializing)
            }
        );
        let mut foreign = ready.clone();
        foreign[0].reason = "SomethingNew".into();
        assert_eq!(
            ObjectState::of(&foreign, Some(2)).reason_label(),
            OTHER_REASON
        );
    }

    #[test]
    fn objects_are_counted_by_kind_ready_and_reason_at_scrape_time() {
        let metrics = Metrics::default();
        let text = metrics.encode_as(Format::PrometheusText);
        assert!(
            !text.contains("aep_operator_objects"),
            "no source, no family:\n{text}"
        );

        let connections = Arc::new(RwLock::new(vec![
            ObjectState::of(&ready_conditions(&Progress::Ready, 1), Some(1)),
            ObjectState::of(&ready_conditions(&Progress::Ready, 4), Some(4)),
            ObjectState::of(&[], Some(1)),
        ]));
        let source = connections.clone();
        metrics.count_objects("StreamingConnection", move || {
            source.read().unwrap().clone()
        });
        metrics.count_objects("StreamingDataflow", || {
            vec![ObjectState::of(
                &ready_conditions(
                    &Progress::Reconciling {
                        reason: Reason::WaitingForConnection,
                        message: "waiting".into(),
                    },
                    1,
                ),
                Some(1),
            )]
        });
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let text = metrics.encode_as(format);
            assert!(
                text.contains("# TYPE aep_operator_objects gauge\n"),
                "{text}"
            );
            assert!(text.contains(
                r#"aep_operator_objects{kind="StreamingConnection",ready="True",reason="Ready"} 2"#
            ), "{text}");
            assert!(text.contains(
                r#"aep_operator_objects{kind="StreamingConnection",ready="Unknown",reason="Initializing"} 1"#
            ));
            assert!(text.contains(
                r#"aep_operator_objects{kind="StreamingDataflow",ready="False",reason="WaitingForConnection"} 1"#
            ));
        }

        // Read anew on every scrape: an object that went away is no longer counted.
        connections.write().unwrap().pop();
        let text = metrics.encode_as(Format::PrometheusText);
        assert!(!text.contains(r#"reason="Initializing""#), "{text}");
        // Registering a kind again replaces its source.
        metrics.count_objects("StreamingConnection", Vec::new);
        let text = metrics.encode_as(Format::PrometheusText);
        assert!(!text.contains(r#"kind="StreamingConnection""#), "{text}");
    }

    #[test]
    fn process_metrics_are_read_from_proc() {
        let stats = ProcessStats::read();
        if !std::path::Path::new("/proc/self/stat").exists() {
            assert_eq!(stats, ProcessStats::default());
            return;
        }
        assert!(stats.cpu_seconds.is_some_and(|cpu| cpu >= 0.0), "{stats:?}");
        assert!(
            stats
                .resident_memory_bytes
                .is_some_and(|rss| rss > 1024 * 1024),
            "{stats:?}"
        );
        assert!(
            stats.virtual_memory_bytes >= stats.resident_memory_bytes,
            "{stats:?}"
        );
        assert!(stats.open_fds.is_some_and(|fds| fds >= 3), "{stats:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started before now (and after 2020), to the tick's precision and a clock step.
        assert!(
            stats
                .start_time_seconds
                .is_some_and(|start| start > 1.58e9 && start <= now + 1.0),
            "{stats:?}"
        );
        let text = Metrics::default().encode_as(Format::PrometheusText);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
    }

    #[test]
    fn proc_files_are_parsed_like_procfs_does() {
        // A command name with a space and a parenthesis, as `comm` may hold.
        let stat = "4242 (aep op) x) S 1 4242 4242 0 -1 4194560 2300 0 0 0 150 50 0 0 20 0 9 0 \
                    12345 73400320 5000 18446744073709551615";
        let mut stats = ProcessStats::default();
        stats.apply_stat(stat, Some(1_700_000_000.0));
        assert_eq!(stats.cpu_seconds, Some(2.0));
        assert_eq!(stats.start_time_seconds, Some(1_700_000_123.45));
        assert_eq!(stats.virtual_memory_bytes, Some(73_400_320));
        assert_eq!(
            boot_time_seconds("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            resident_memory_bytes("Name:\tx\nVmRSS:\t   13520 kB\nVmSwap:\t0 kB\n"),
            Some(13_520 * 1024)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1048576              1048576              files     \n";
        assert_eq!(max_open_files(limits), Some(1_048_576));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
    }
}
