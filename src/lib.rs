//! aep-streaming-operator: manages Adobe Experience Platform streaming connections as Kubernetes objects.
//!
//! The data path reads in this order: [`api`] (the spec a user writes) → [`controller`] (desired
//! state, then calls to Flow Service through [`flow`], then status and the published ConfigMap).
//!
//! - [`api`]: the `StreamingConnection` custom resource, as users write it.
//! - [`cli`]: the command line and its `AEP_*` environment variables.
//! - [`operator`]: `run`, wiring clients, controller, HTTP endpoints and shutdown together.
//! - [`controller`]: reconcile, finalizer, status, ConfigMap and error policy.
//! - [`flow`]: the Flow Service and IMS client (knows nothing of Kubernetes).
//! - [`emulator`]: `aep-emulator`, a local stand-in for IMS, Flow Service and the streaming inlet
//!   (knows nothing of Kubernetes or of the client).
//! - [`leader`]: leader election on a Lease, for several replicas.
//! - [`metrics`], [`http`], [`telemetry`]: what operators of the operator look at.

pub mod api;
pub mod cli;
pub mod controller;
pub mod emulator;
pub mod flow;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod telemetry;
