//! The operator's own HTTP endpoints: `/metrics` (the Prometheus text format, or OpenMetrics for a
//! client that asks for it in `Accept`), `/healthz` (the process is alive) and `/readyz` (this
//! replica reconciles: it leads, and the controller's watches work).
//!
//! A standby is alive but not ready, and so is a leader whose watches fail (for example because the
//! CRD was deleted): `/readyz` answers what an alert or a Service should know, "is this replica doing
//! the work", while `/healthz` stays 200 so that the kubelet does not restart a healthy standby.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::{Format, Metrics};

/// What the endpoints report on. Cheap to clone; every clone shares the same state.
#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    leading: Arc<AtomicBool>,
    watches_healthy: Arc<AtomicBool>,
}

impl Health {
    /// Not ready (not leading yet); watches are assumed healthy until the controller says otherwise.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            leading: Arc::new(AtomicBool::new(false)),
            // Until the controller reports, "unknown" must not read as "broken": otherwise a
            // controller that never reports would keep every replica unready forever.
            watches_healthy: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether this replica reconciles: it holds the Lease, or runs without leader election.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
    }

    /// Reported by the controller: false while any of its watches fails (a list or watch error),
    /// true again once they all deliver events.
    pub fn set_watches_healthy(&self, healthy: bool) {
        self.watches_healthy.store(healthy, Ordering::Relaxed);
    }

    /// What `/readyz` answers.
    pub fn is_ready(&self) -> bool {
        self.leading.load(Ordering::Relaxed) && self.watches_healthy.load(Ordering::Relaxed)
    }
}

/// The router, separate from the listener so tests can call it directly.
pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// Serves the endpoints on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The metrics in the format the `Accept` header prefers (see [`Format::negotiate`]). `Vary: Accept`
/// tells a cache between the scraper and the operator that the answer depends on that header.
async fn metrics(State(health): State<Health>, headers: HeaderMap) -> impl IntoResponse {
    // Several Accept headers mean their lists joined (RFC 9110); one that is not text counts as none.
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let format = Format::negotiate(Some(accept.as_str()).filter(|accept| !accept.is_empty()));
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept"),
        ],
        health.metrics.encode_as(format),
    )
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if health.is_ready() {
        (StatusCode::OK, "ready")
    } else if !health.leading.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: not the leader")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: watches failing",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn status(health: &Health, path: &str) -> StatusCode {
        router(health.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    async fn scrape(health: &Health, accept: Option<&str>) -> (String, String) {
        let mut request = Request::get("/metrics");
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let response = router(health.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::VARY], "Accept");
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (content_type, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn metrics_are_text_unless_openmetrics_is_asked_for() {
        let health = Health::new(Arc::new(Metrics::default()));
        health.metrics.leader.set(1);
        for accept in [
            None,
            Some("text/plain"),
            Some("*/*"),
            Some("text/plain;version=0.0.4"),
        ] {
            let (content_type, body) = scrape(&health, accept).await;
            assert_eq!(
                content_type, "text/plain; version=0.0.4; charset=utf-8",
                "Accept: {accept:?}"
            );
            assert!(body.contains("\naep_operator_leader 1\n"), "{body}");
            assert!(!body.contains("# EOF"), "{body}");
        }
        let (content_type, body) = scrape(
            &health,
            Some("application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3"),
        )
        .await;
        assert_eq!(
            content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[tokio::test]
    async fn a_standby_is_alive_but_not_ready() {
        let health = Health::new(Arc::new(Metrics::default()));
        assert_eq!(status(&health, "/healthz").await, StatusCode::OK);
        assert_eq!(
            status(&health, "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.set_leading(true);
        assert_eq!(status(&health, "/readyz").await, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_leader_with_failing_watches_is_not_ready() {
        let health = Health::new(Arc::new(Metrics::default()));
        health.set_leading(true);
        let reported_by_the_controller = health.clone();
        reported_by_the_controller.set_watches_healthy(false);
        assert_eq!(
            status(&health, "/readyz").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&health, "/healthz").await, StatusCode::OK);
        reported_by_the_controller.set_watches_healthy(true);
        assert_eq!(status(&health, "/readyz").await, StatusCode::OK);
    }
}
