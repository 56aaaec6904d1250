//! Prometheus metrics: reconciles by outcome, their duration, and Flow Service requests by
//! operation and status class. Labels are bounded: never an object name, id or secret.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use aep_flow::{FlowObserver, Operation};

use crate::controller::Reason;

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

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Histogram,
    flow_requests: Family<FlowLabels, Counter>,
    flow_request_duration: Family<FlowLabels, Histogram>,
    /// 1 while this replica holds the leader-election Lease (or runs without leader election).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("aep_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of StreamingConnections by result",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile took",
            prometheus_client::registry::Unit::Seconds,
            reconcile_duration.clone(),
        );
        let flow_requests = Family::<FlowLabels, Counter>::default();
        registry.register(
            "flow_requests",
            "HTTP requests to Flow Service and IMS by operation and status class",
            flow_requests.clone(),
        );
        let flow_request_duration = Family::<FlowLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register_with_unit(
            "flow_request_duration",
            "Latency of HTTP requests to Flow Service and IMS",
            prometheus_client::registry::Unit::Seconds,
            flow_request_duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the active reconciler",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            flow_requests,
            flow_request_duration,
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

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
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

    #[test]
    fn metrics_are_exported_with_bounded_labels() {
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
        let text = metrics.encode();
        assert!(
            text.contains(r#"aep_operator_reconciles_total{result="success"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"aep_operator_reconciles_total{result="deferred"} 1"#));
        assert!(text.contains(r#"aep_operator_reconciles_total{result="RateLimited"} 1"#));
        assert!(
            text.contains(
                r#"aep_operator_flow_requests_total{operation="create",outcome="2xx"} 1"#
            )
        );
        assert!(text.contains("aep_operator_reconcile_duration_seconds_bucket"));
        assert!(text.contains("aep_operator_flow_request_duration_seconds_count"));
    }
}
