//! The test kit of aep-streaming-operator (a dev-dependency only): everything the tests, the demo and the
//! benchmark share, written once.
//!
//! - [`fixtures`]: StreamingConnections, Secrets and Flow Service connections that read like sentences.
//! - [`fake_apiserver`]: an in-memory Kubernetes API server that records every call, for reconciler tests.
//! - [`emulator`]: an in-process emulator with a token in hand, and request helpers.
//! - [`admin`]: the one typed client of the emulator's admin API (`/_emulator/…`).
//! - [`contract`]: Adobe's published contract (the OpenAPI facts) as a test oracle, and a recording proxy.
//! - [`cluster`]: the end-to-end harness on a real control plane: install, the operator as its own service
//!   account (its kubeconfig from a TokenRequest), the Ready predicate, scenarios, faults of the platform.
//!
//! The `aep-testkit` binary (src/bin/aep-testkit) puts the same code behind the scripts: `tools/demo.sh` and
//! `tools/bench.sh` call it for the operator's kubeconfig and free ports, and it is the benchmark.

pub mod admin;
pub mod cluster;
pub mod contract;
pub mod emulator;
pub mod fake_apiserver;
pub mod fixtures;
