//! The test kit of aep-streaming-operator (a dev-dependency only): everything the tests, the demo and the
//! benchmark share, written once.
//!
//! - [`fixtures`]: StreamingConnections and Flow Service connections that read like sentences.
//! - [`fake_apiserver`]: an in-memory Kubernetes API server that records every call, for reconciler tests.
//! - [`emulator`]: an in-process emulator with a token in hand, and a typed client of its admin API.
//! - [`cluster`]: the end-to-end harness on a real control plane: install, the operator as its own service
//!   account, scenarios, faults of the platform.

pub mod cluster;
pub mod emulator;
pub mod fake_apiserver;
pub mod fixtures;
