//! The one vocabulary of reasons: every condition reason, event reason and reconcile-failure metric
//! label the operator writes is a [`Reason`], and nothing else names one.
//!
//! The strings are a public contract (users, alerts, the README, the Argo CD health check and the
//! end-to-end tests read them): each is its variant's name, written once by the macro below, and
//! never changes.

use std::fmt;
use std::str::FromStr;

/// Defines [`Reason`], [`Reason::ALL`] and [`Reason::as_str`] from one list, so that a variant cannot
/// be missing from `ALL` or spelled differently on the wire than in the code.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $variant:ident,)+) => {
        /// Why an object is where it is: the `reason` of its conditions, of the events about it, and
        /// the `result` label of a failed reconcile in `aep_operator_reconciles_total`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            /// The reason as written to conditions, events and metric labels: the variant's name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => stringify!($variant),)+
                }
            }
        }
    };
}

reasons! {
    // Progress: the conditions of an object that is fine or on its way.
    /// The connection exists and its inlet URL is published.
    Ready,
    /// The conditions are being rebuilt without a step to name (a retry that keeps the last report).
    Reconciling,
    /// The operator has seen a new object and is starting on it. Written by earlier versions (a
    /// status of its own right after the finalizer); kept so that what they wrote still reads.
    Initializing,
    /// The connection is being created.
    Creating,
    /// The connection exists; its inlet is being provisioned or published.
    InletProvisioning,
    /// Another object of this process is creating a connection of the same name.
    WaitingForSameName,
    /// The recorded connection answers 404: confirming that it is gone before creating another.
    ConfirmingDeletion,
    /// A create request got no answer: waiting until it has settled before looking it up by name.
    ConfirmingCreate,
    /// A StreamingDataflow waits for its StreamingConnection to exist and be Ready.
    WaitingForConnection,
    /// A StreamingConnection being deleted waits for the StreamingDataflows that use it to go first.
    WaitingForDataflows,
    /// The connection is Ready and its inlet published, but a change of `spec.connectionName` or
    /// `spec.description` is not applied: Flow Service does not allow updating connections in the
    /// organization (`FLOW-1445-400`). Not retried until the object changes (a new spec, or the
    /// reconcile-requested-at annotation once Adobe has enabled the feature).
    UpdateNotAllowed,
    /// The flow is changing state (`enabling`, `disabling`, or another state Flow Service is moving
    /// it out of): looking again shortly.
    FlowTransitioning,

    // Events: what the operator did.
    /// Event: the operator created the connection.
    Created,
    /// Event: the operator found the connection of an interrupted create and uses it.
    CreateResumed,
    /// Event: the operator took over the connection named by `spec.connectionId`.
    Adopted,
    /// Event: the operator updated the connection to match the spec.
    Updated,
    /// Event: the connection was deleted outside the operator and is created again.
    Recreated,
    /// Event: a create committed late left connections that nothing references.
    DuplicateFound,
    /// Event: the operator deleted the connection.
    Deleted,
    /// Event: the object went away and its connection was left in place.
    Orphaned,

    // Failures: the reason of each error (see `Error::reason`).
    /// The credentials Secret does not exist in the object's namespace.
    CredentialsNotFound,
    /// The credentials Secret cannot be used, or Adobe rejected the credentials.
    CredentialsInvalid,
    /// The credentials lack a permission, product profile or sandbox access.
    PermissionDenied,
    /// The spec (or the object) is one that Flow Service or the operator refuses.
    InvalidSpec,
    /// The operator's own configuration is wrong (a URL, the CA file).
    OperatorMisconfigured,
    /// The connection does not exist: for `spec.connectionId`, or one that vanished mid-reconcile.
    ConnectionNotFound,
    /// The connection cannot be managed by this object.
    ConnectionConflict,
    /// A ConfigMap of the same name belongs to someone else.
    ConfigMapConflict,
    /// The dataset of a StreamingDataflow does not exist in the connection's sandbox. `Stalled`,
    /// and looked up again on the slow backoff, since creating the dataset changes nothing in
    /// Kubernetes.
    DatasetNotFound,
    /// Flow Service refuses to delete the connection because flows made outside Kubernetes still
    /// use it (`FLOW-1418-400`). `Stalled`, and tried again on the slow backoff: deleting those
    /// flows in Adobe changes nothing in Kubernetes.
    ConnectionInUse,
    /// A create may have been committed and several connections could be the one it made:
    /// retried with the backoff, since another object may claim one of them meanwhile.
    AmbiguousCreate,
    /// The connection changed between its read and its update (a stale etag).
    ConcurrentUpdate,
    /// Adobe asked the operator to slow down.
    RateLimited,
    /// Adobe is unavailable or unreachable, or answered in a way the client cannot use.
    FlowServiceUnavailable,
    /// A Kubernetes API call failed.
    KubernetesApiError,
    /// This replica does not hold the leader-election Lease.
    NotLeader,
    /// Another writer of the object got there first.
    ClaimConflict,
}

impl Reason {
    /// True for the reasons of failures that retrying cannot fix, which wait for a change of the
    /// object or its Secret (`Stalled=True`): the Argo CD health check's `permanent_reasons` table.
    ///
    /// `ConnectionNotFound` counts: it is permanent for a `spec.connectionId` that names no
    /// connection, though a connection that vanished mid-reconcile is retried under the same reason
    /// (see `Error::is_permanent`; the `Stalled` condition tells the two apart).
    pub const fn is_permanent(self) -> bool {
        matches!(
            self,
            Reason::CredentialsNotFound
                | Reason::CredentialsInvalid
                | Reason::PermissionDenied
                | Reason::InvalidSpec
                | Reason::OperatorMisconfigured
                | Reason::ConnectionNotFound
                | Reason::ConnectionConflict
                | Reason::ConfigMapConflict
                | Reason::DatasetNotFound
                | Reason::ConnectionInUse
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`Reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a reason of the operator")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .iter()
            .copied()
            .find(|reason| reason.as_str() == text)
            .ok_or_else(|| UnknownReason(text.to_string()))
    }
}

// Tests and callers compare a reason with the string a user sees.
impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_reason_has_its_own_string_and_reads_back() {
        let strings: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(strings.len(), Reason::ALL.len());
        for &reason in Reason::ALL {
            assert_eq!(reason.as_str(), format!("{reason:?}"));
            assert_eq!(reason.to_string(), reason.as_str());
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
        }
        assert!("NoSuchReason".parse::<Reason>().is_err());
    }

    #[test]
    fn reasons_are_compared_with_what_users_read() {
        assert_eq!(Reason::ConfigMapConflict, "ConfigMapConflict");
        assert_ne!(Reason::RateLimited, "FlowServiceUnavailable");
    }

    /// The Argo CD health check keeps its own table of permanent reasons (Lua cannot call this
    /// code): it must name exactly the permanent ones, no more, no less.
    #[test]
    fn the_argo_cd_health_check_knows_exactly_the_permanent_reasons() {
        let lua = include_str!("../../deploy/gitops/argocd-health.lua");
        let table = lua
            .split("local permanent_reasons = {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("argocd-health.lua has a permanent_reasons table");
        let mut in_lua = BTreeSet::new();
        for line in table.lines() {
            if let Some((name, _)) = line.trim().split_once(" = true") {
                let reason: Reason = name.trim().parse().expect("a reason of the operator");
                assert!(
                    reason.is_permanent(),
                    "{reason} is in the table but not permanent"
                );
                in_lua.insert(reason);
            }
        }
        let permanent: BTreeSet<Reason> = Reason::ALL
            .iter()
            .copied()
            .filter(|reason| reason.is_permanent())
            .collect();
        assert_eq!(in_lua, permanent);
    }
}
