//! Everything a reconcile can fail with, each variant named for what failed and carrying a fixed
//! [`Reason`] used for the condition, the event and the metric label.

use std::time::Duration;

use aep_flow::{CredentialsError, FlowError, FlowErrorKind};

use super::reason::Reason;

/// A failed reconcile. The error policy branches on [`Error::is_permanent`] and [`Error::retry_after`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The referenced Secret does not exist in the object's namespace.
    #[error("the credentials Secret `{name}` was not found in namespace `{namespace}`")]
    CredentialsNotFound { namespace: String, name: String },

    /// The Secret exists but cannot be used (a key is missing or malformed).
    #[error("the credentials Secret `{name}` cannot be used: {source}")]
    CredentialsUnusable {
        name: String,
        #[source]
        source: CredentialsError,
    },

    /// A Flow Service or IMS call failed; the inner error says whether to retry.
    #[error("{context}: {source}")]
    FlowService {
        context: &'static str,
        #[source]
        source: FlowError,
    },

    /// `spec.connectionId` names a connection that does not exist in the sandbox.
    #[error("connection {id} (spec.connectionId) does not exist in sandbox `{sandbox}`")]
    AdoptedConnectionNotFound { id: String, sandbox: String },

    /// `spec.connectionId` names a connection this operator must not manage.
    #[error("connection {id} cannot be adopted: {why}")]
    ConnectionConflict { id: String, why: String },

    /// A ConfigMap of the same name exists and belongs to someone else.
    #[error(
        "ConfigMap `{name}` already exists and is not owned by this StreamingConnection; \
         delete it or set spec.configMap.name to another name"
    )]
    ConfigMapConflict { name: String },

    /// A create may have been committed and the lookup by name cannot tell which connection is ours.
    #[error(
        "a create request for `{connection_name}` may have succeeded and {candidates} connections with that name \
         were created since; set spec.connectionId to the right one (connection ids: {ids}) and delete the others"
    )]
    AmbiguousCreate {
        connection_name: String,
        candidates: usize,
        ids: String,
    },

    /// The dataset of a StreamingDataflow does not exist in the connection's sandbox.
    #[error(
        "dataset {id} (spec.datasetId) does not exist in sandbox `{sandbox}`; create it (the operator \
         never creates datasets), or replace this StreamingDataflow with one for an existing dataset \
         (spec.datasetId is immutable)"
    )]
    DatasetNotFound { id: String, sandbox: String },

    /// Flow Service refuses to delete the connection: flows made outside Kubernetes still use it.
    #[error(
        "connection {id} is still used by flows that no StreamingDataflow manages ({flows}); delete those \
         flows in Adobe Experience Platform (they are retried on the backoff), or set \
         spec.deletionPolicy to Orphan to keep the connection"
    )]
    ConnectionInUse { id: String, flows: String },

    /// A StreamingConnection being deleted still has StreamingDataflows in Kubernetes that use it.
    #[error(
        "waiting for the StreamingDataflows that use this connection to be deleted first: {names}"
    )]
    DataflowsExist { names: String },

    /// A Kubernetes API call failed.
    #[error("{context}: {source}")]
    Kubernetes {
        context: &'static str,
        #[source]
        source: kube::Error,
    },

    /// The object cannot be reconciled as it is (for example it has no namespace).
    #[error("{0}")]
    InvalidObject(String),

    /// This replica lost the leader-election Lease (or cannot prove it still holds it): it makes no
    /// Flow Service write, the new leader carries on.
    #[error("this replica does not hold the leader-election Lease; the leader takes over")]
    NotLeader,

    /// A claim written with the resourceVersion that was read lost to another writer (another
    /// operator process, or a change of the object): nothing was sent to Flow Service, the next
    /// reconcile starts from the newer object.
    #[error(
        "{what} lost a race with another writer of the object; retrying from its latest version"
    )]
    ClaimConflict { what: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The condition reason, event reason and metric label for this error: fixed and bounded.
    /// Flow Service failures are named here, by what they mean to the object; the client only
    /// classifies them.
    pub fn reason(&self) -> Reason {
        match self {
            Error::CredentialsNotFound { .. } => Reason::CredentialsNotFound,
            Error::CredentialsUnusable { .. } => Reason::CredentialsInvalid,
            Error::FlowService { source, .. } => match source.kind() {
                FlowErrorKind::NotFound => Reason::ConnectionNotFound,
                FlowErrorKind::PreconditionFailed => Reason::ConcurrentUpdate,
                FlowErrorKind::Unauthorized | FlowErrorKind::Credentials => {
                    Reason::CredentialsInvalid
                }
                FlowErrorKind::Forbidden => Reason::PermissionDenied,
                FlowErrorKind::Invalid => Reason::InvalidSpec,
                FlowErrorKind::RateLimited => Reason::RateLimited,
                FlowErrorKind::Configuration => Reason::OperatorMisconfigured,
                FlowErrorKind::Unavailable | FlowErrorKind::UnexpectedResponse => {
                    Reason::FlowServiceUnavailable
                }
            },
            Error::AdoptedConnectionNotFound { .. } => Reason::ConnectionNotFound,
            Error::ConnectionConflict { .. } => Reason::ConnectionConflict,
            Error::ConfigMapConflict { .. } => Reason::ConfigMapConflict,
            Error::AmbiguousCreate { .. } => Reason::AmbiguousCreate,
            Error::DatasetNotFound { .. } => Reason::DatasetNotFound,
            Error::ConnectionInUse { .. } => Reason::ConnectionInUse,
            Error::DataflowsExist { .. } => Reason::WaitingForDataflows,
            Error::Kubernetes { .. } => Reason::KubernetesApiError,
            Error::InvalidObject(_) => Reason::InvalidSpec,
            Error::NotLeader => Reason::NotLeader,
            Error::ClaimConflict { .. } => Reason::ClaimConflict,
        }
    }

    /// True when retrying cannot help until the object or its Secret changes: the object is
    /// `Stalled` and waits for that change instead of retrying on a timer. Follows
    /// [`Reason::is_permanent`], but for a connection that vanished mid-reconcile: it shares
    /// `ConnectionNotFound` with a `spec.connectionId` that names none, and is retried (Flow Service
    /// is eventually consistent; the reconciler confirms the absence before creating again).
    ///
    /// A missing dataset and a connection still used by outside flows are `Stalled` (see
    /// [`Error::stalls`]) yet retried on the backoff: what fixes them (creating the dataset,
    /// deleting the flows in Adobe) changes nothing in Kubernetes that could wake the object.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::FlowService { source, .. } if source.kind() == FlowErrorKind::NotFound => false,
            Error::DatasetNotFound { .. } | Error::ConnectionInUse { .. } => false,
            other => other.reason().is_permanent(),
        }
    }

    /// True when another writer holds the object (another process, or this replica lost the
    /// Lease): nothing about it may be written, not even the failure.
    pub fn gives_way(&self) -> bool {
        matches!(self, Error::NotLeader | Error::ClaimConflict { .. })
    }

    /// True when the object is `Stalled`: it needs someone to act. Every permanent error, and the
    /// two that are retried on the backoff although they wait for a person.
    pub fn stalls(&self) -> bool {
        self.is_permanent()
            || matches!(
                self,
                Error::DatasetNotFound { .. } | Error::ConnectionInUse { .. }
            )
    }

    /// The text for the object's conditions: the same for every attempt that fails the same way
    /// (no request id, no timestamp), so that a failing object does not rewrite its status on each
    /// retry. Events and logs carry the full [`Display`](std::fmt::Display) text instead.
    pub fn condition_message(&self) -> String {
        match self {
            Error::FlowService { context, source } => {
                format!("{context}: {}", source.stable_message())
            }
            Error::CredentialsUnusable { name, source } => {
                format!("the credentials Secret `{name}` cannot be used: {source}")
            }
            other => other.to_string(),
        }
    }

    /// How long the server asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::FlowService { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// Wraps a Flow Service error with what the operator was doing.
    pub fn flow(context: &'static str) -> impl FnOnce(FlowError) -> Error {
        move |source| Error::FlowService { context, source }
    }

    /// Wraps a Kubernetes API error with what the operator was doing.
    pub fn kube(context: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kubernetes { context, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aep_flow::{ErrorDetails, Operation};

    fn flow(source: FlowError) -> Error {
        Error::FlowService {
            context: "test",
            source,
        }
    }

    /// One Flow Service error of every kind, as the client returns them.
    fn flow_errors() -> Vec<FlowError> {
        use FlowErrorKind::*;
        let request = [
            NotFound,
            PreconditionFailed,
            Unauthorized,
            Forbidden,
            Invalid,
            RateLimited,
            Unavailable,
            UnexpectedResponse,
        ]
        .map(|kind| FlowError::new(kind, Operation::Get, ErrorDetails::default()));
        request
            .into_iter()
            .chain([
                FlowError::from(CredentialsError::MissingKey { key: "clientId" }),
                FlowError::configuration("bad URL"),
            ])
            .collect()
    }

    /// One error of every other kind the reconciler can return.
    fn operator_errors() -> Vec<Error> {
        vec![
            Error::CredentialsNotFound {
                namespace: "ns".into(),
                name: "creds".into(),
            },
            Error::CredentialsUnusable {
                name: "creds".into(),
                source: CredentialsError::MissingKey { key: "orgId" },
            },
            Error::AdoptedConnectionNotFound {
                id: "id".into(),
                sandbox: "prod".into(),
            },
            Error::ConnectionConflict {
                id: "id".into(),
                why: "why".into(),
            },
            Error::ConfigMapConflict { name: "cm".into() },
            Error::AmbiguousCreate {
                connection_name: "web".into(),
                candidates: 2,
                ids: "a, b".into(),
            },
            Error::InvalidObject("no namespace".into()),
            Error::NotLeader,
            Error::ClaimConflict { what: "the status" },
            Error::DatasetNotFound {
                id: "5c8c3c555033b814b69f947f".into(),
                sandbox: "prod".into(),
            },
            Error::ConnectionInUse {
                id: "id".into(),
                flows: "f1".into(),
            },
            Error::DataflowsExist {
                names: "ns/a".into(),
            },
        ]
    }

    #[test]
    fn flow_service_failures_are_named_by_what_they_mean_to_the_object() {
        let reasons: Vec<Reason> = flow_errors()
            .into_iter()
            .map(|source| flow(source).reason())
            .collect();
        assert_eq!(
            reasons,
            [
                Reason::ConnectionNotFound,
                Reason::ConcurrentUpdate,
                Reason::CredentialsInvalid,
                Reason::PermissionDenied,
                Reason::InvalidSpec,
                Reason::RateLimited,
                Reason::FlowServiceUnavailable,
                Reason::FlowServiceUnavailable,
                Reason::CredentialsInvalid,
                Reason::OperatorMisconfigured,
            ]
        );
    }

    /// A Flow Service failure stalls the object exactly when the client says that retrying cannot
    /// help, and every error is permanent only under a permanent reason.
    #[test]
    fn permanence_follows_the_reason_and_the_client() {
        for source in flow_errors() {
            let permanent = source.is_permanent();
            let error = flow(source);
            assert_eq!(error.is_permanent(), permanent, "{error}");
        }
        let errors = operator_errors()
            .into_iter()
            .chain(flow_errors().into_iter().map(flow));
        for error in errors {
            assert!(
                !error.is_permanent() || error.reason().is_permanent(),
                "{error}"
            );
        }
        // The one reason that is both: a spec.connectionId that names nothing stalls, a connection
        // that vanished mid-reconcile is retried.
        let adopted = &operator_errors()[2];
        assert!(adopted.is_permanent());
        let vanished = flow(flow_errors().remove(0));
        assert_eq!(adopted.reason(), vanished.reason());
        assert!(!vanished.is_permanent());
    }

    #[test]
    fn every_reason_of_a_permanent_error_is_permanent_for_the_health_check() {
        let permanent: std::collections::BTreeSet<Reason> = operator_errors()
            .into_iter()
            .chain(flow_errors().into_iter().map(flow))
            .filter(Error::stalls)
            .map(|error| error.reason())
            .collect();
        let expected: std::collections::BTreeSet<Reason> = Reason::ALL
            .iter()
            .copied()
            .filter(|reason| reason.is_permanent())
            .collect();
        assert_eq!(permanent, expected);
    }

    #[test]
    fn what_waits_for_a_person_outside_kubernetes_stalls_but_is_retried() {
        for error in [
            Error::DatasetNotFound {
                id: "5c8c3c555033b814b69f947f".into(),
                sandbox: "prod".into(),
            },
            Error::ConnectionInUse {
                id: "id".into(),
                flows: "f1".into(),
            },
        ] {
            assert!(error.stalls(), "{error}");
            assert!(!error.is_permanent(), "{error}");
        }
        let waiting = Error::DataflowsExist {
            names: "ns/a".into(),
        };
        assert!(!waiting.stalls() && !waiting.is_permanent());
        assert_eq!(waiting.reason(), "WaitingForDataflows");
    }

    #[test]
    fn configuration_problems_of_the_object_are_permanent() {
        let missing = Error::CredentialsNotFound {
            namespace: "ns".into(),
            name: "creds".into(),
        };
        assert!(missing.is_permanent());
        assert_eq!(missing.reason(), "CredentialsNotFound");
        let conflict = Error::ConfigMapConflict { name: "cm".into() };
        assert!(conflict.is_permanent());
        assert_eq!(conflict.reason(), "ConfigMapConflict");
        assert!(conflict.to_string().contains("spec.configMap.name"));
    }
}
