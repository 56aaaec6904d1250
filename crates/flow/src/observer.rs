//! Metrics hooks: one call per HTTP request the client makes, with bounded labels only.
//!
//! The metrics module implements [`FlowObserver`] to export counters and latency histograms; the client
//! itself knows nothing of Prometheus. Labels are an [`Operation`] and a status class, never an object
//! name, id or credential, so their cardinality stays fixed.

use std::fmt;
use std::time::Duration;

/// What the client was doing, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Creating a connection (`POST /connections`).
    Create,
    /// Reading one connection by id.
    Get,
    /// Listing connections (the lookup by name).
    List,
    /// Changing a connection's name or description (`PATCH` with `If-Match`).
    Update,
    /// Deleting a connection.
    Delete,
    /// Minting an access token from IMS.
    Token,
}

impl Operation {
    /// Every operation, for observers that pre-register their label sets.
    pub const ALL: [Operation; 6] = [
        Self::Create,
        Self::Get,
        Self::List,
        Self::Update,
        Self::Delete,
        Self::Token,
    ];

    /// The metric label: `create`, `get`, `list`, `update`, `delete` or `token`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Get => "get",
            Self::List => "list",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Token => "token",
        }
    }

    /// True for operations that change nothing on the server, which the client may retry by itself.
    pub const fn is_read(self) -> bool {
        matches!(self, Self::Get | Self::List)
    }

    /// True for operations that change Flow Service state, whose failure may leave the change applied.
    pub(crate) const fn is_write(self) -> bool {
        matches!(self, Self::Create | Self::Update | Self::Delete)
    }

    /// Words for error messages.
    const fn describe(self) -> &'static str {
        match self {
            Self::Create => "create connection",
            Self::Get => "get connection",
            Self::List => "list connections",
            Self::Update => "update connection",
            Self::Delete => "delete connection",
            Self::Token => "mint IMS access token",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Outcome label of a request that got a 2xx response.
pub(crate) const OUTCOME_2XX: &str = "2xx";
/// Outcome label of a request that got a 4xx response.
pub(crate) const OUTCOME_4XX: &str = "4xx";
/// Outcome label of a request that got a 5xx response.
pub(crate) const OUTCOME_5XX: &str = "5xx";
/// Outcome label of a request that got no usable response (connect error, timeout, reset) or an
/// unexpected 1xx/3xx status.
pub(crate) const OUTCOME_ERROR: &str = "error";

/// The outcome label for an HTTP status.
pub(crate) fn outcome_for_status(status: u16) -> &'static str {
    match status {
        200..=299 => OUTCOME_2XX,
        400..=499 => OUTCOME_4XX,
        500..=599 => OUTCOME_5XX,
        _ => OUTCOME_ERROR,
    }
}

/// Receives one call per HTTP request (each retry and each token request counts).
pub trait FlowObserver: Send + Sync {
    /// `outcome` is one of `2xx`, `4xx`, `5xx` (the status class) or `error` (no response);
    /// `elapsed` covers sending the request and reading the response body, not queueing for the rate
    /// limit or concurrency cap.
    fn on_request(&self, operation: Operation, outcome: &'static str, elapsed: Duration) {
        let _ = (operation, outcome, elapsed);
    }
}

/// The observer used when none is configured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoopObserver;

impl FlowObserver for NoopObserver {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_are_bounded() {
        assert_eq!(outcome_for_status(201), "2xx");
        assert_eq!(outcome_for_status(404), "4xx");
        assert_eq!(outcome_for_status(503), "5xx");
        assert_eq!(outcome_for_status(302), "error");
        assert_eq!(outcome_for_status(101), "error");
    }

    #[test]
    fn operation_labels_are_lowercase_words() {
        let labels: Vec<_> = Operation::ALL.iter().map(|op| op.as_str()).collect();
        assert_eq!(
            labels,
            ["create", "get", "list", "update", "delete", "token"]
        );
        assert!(Operation::Get.is_read() && Operation::List.is_read());
        assert!(!Operation::Create.is_read() && !Operation::Token.is_read());
    }
}
