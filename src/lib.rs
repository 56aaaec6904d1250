//! aep-streaming-operator: manages Adobe Experience Platform streaming connections as Kubernetes objects.
//!
//! The data path reads in this order: [`api`] (the spec a user writes) → [`controller`] (desired
//! state, then calls to Flow Service through `aep_flow`, then status and the published ConfigMap).
//!
//! - [`api`]: the custom resources (`StreamingConnection`; `StreamingDataflow`, coming), as users write them.
//! - [`cli`]: the command line and its `AEP_*` environment variables.
//! - [`operator`]: `run`, wiring clients, controller, HTTP endpoints and shutdown together.
//! - [`controller`]: reconcile, finalizer, status, ConfigMap and error policy.
//! - `aep_flow` (crates/flow): the Flow Service and IMS client (knows nothing of Kubernetes).
//! - `aep_emulator` (crates/emulator, a dev-dependency only): a local stand-in for IMS, Flow Service and the
//!   streaming inlet (knows nothing of Kubernetes or of the client).
//! - `leader` (private): leader election on a Lease, for several replicas.
//! - [`metrics`], `http` (private), [`telemetry`]: what operators of the operator look at.

pub mod api;
pub mod cli;
pub mod controller;
mod http;
mod leader;
pub mod metrics;
pub mod operator;
pub mod telemetry;
