//! Everything a reconcile can fail with, each variant named for what failed and carrying a fixed
//! reason used for the condition, the event and the metric label.

use std::time::Duration;

use aep_flow::{CredentialsError, FlowError};

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
    pub fn reason(&self) -> &'static str {
        match self {
            Error::CredentialsNotFound { .. } => "CredentialsNotFound",
            Error::CredentialsUnusable { .. } => "CredentialsInvalid",
            Error::FlowService { source, .. } => match source {
                FlowError::NotFound { .. } => "ConnectionNotFound",
                FlowError::PreconditionFailed { .. } => "ConcurrentUpdate",
                FlowError::Unauthorized { .. } | FlowError::Credentials(_) => "CredentialsInvalid",
                FlowError::Forbidden { .. } => "PermissionDenied",
                FlowError::Invalid { .. } => "InvalidSpec",
                FlowError::RateLimited { .. } => "RateLimited",
                FlowError::Configuration { .. } => "OperatorMisconfigured",
                _ => "FlowServiceUnavailable",
            },
            Error::AdoptedConnectionNotFound { .. } => "ConnectionNotFound",
            Error::ConnectionConflict { .. } => "ConnectionConflict",
            Error::ConfigMapConflict { .. } => "ConfigMapConflict",
            Error::AmbiguousCreate { .. } => "AmbiguousCreate",
            Error::Kubernetes { .. } => "KubernetesApiError",
            Error::InvalidObject(_) => "InvalidSpec",
            Error::NotLeader => "NotLeader",
            Error::ClaimConflict { .. } => "ClaimConflict",
        }
    }

    /// True when retrying cannot help until the object or its Secret changes: the object is
    /// `Stalled` and waits for that change instead of retrying on a timer.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::CredentialsNotFound { .. }
            | Error::CredentialsUnusable { .. }
            | Error::AdoptedConnectionNotFound { .. }
            | Error::ConnectionConflict { .. }
            | Error::ConfigMapConflict { .. }
            | Error::InvalidObject(_) => true,
            Error::FlowService { source, .. } => source.is_permanent(),
            // Another object may claim one of the candidates meanwhile, which resolves it: retried
            // with the backoff (up to five minutes apart), not given up.
            Error::AmbiguousCreate { .. } => false,
            Error::Kubernetes { .. } | Error::NotLeader | Error::ClaimConflict { .. } => false,
        }
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

    /// One error of every permanent kind the reconciler can return.
    fn permanent_errors() -> Vec<Error> {
        let flow = |source: FlowError| Error::FlowService {
            context: "test",
            source,
        };
        let details = ErrorDetails::default;
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
            Error::InvalidObject("no namespace".into()),
            flow(FlowError::Unauthorized {
                operation: Operation::Get,
                details: details(),
            }),
            flow(FlowError::Forbidden {
                operation: Operation::Get,
                details: details(),
            }),
            flow(FlowError::Invalid {
                operation: Operation::Create,
                details: details(),
            }),
            flow(FlowError::Credentials(CredentialsError::MissingKey {
                key: "clientId",
            })),
            flow(FlowError::Configuration("bad URL".into())),
        ]
    }

    /// The Argo CD health check keeps its own table of permanent reasons (Lua cannot call this
    /// code): it must name exactly the reasons of the permanent errors.
    #[test]
    fn the_argo_cd_health_check_knows_every_permanent_reason() {
        let lua = include_str!("../../deploy/gitops/argocd-health.lua");
        let table = lua
            .split("local permanent_reasons = {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("argocd-health.lua has a permanent_reasons table");
        let in_lua: std::collections::BTreeSet<&str> = table
            .lines()
            .filter_map(|line| {
                line.trim()
                    .split_once(" = true")
                    .map(|(name, _)| name.trim())
            })
            .collect();
        let errors = permanent_errors();
        assert!(errors.iter().all(Error::is_permanent));
        let in_code: std::collections::BTreeSet<&str> = errors.iter().map(Error::reason).collect();
        assert_eq!(in_lua, in_code);
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
