//! The Flow Service and IMS client: the operator's only door to Adobe. No Kubernetes types in here.
//!
//! - `credentials`: [`Credentials`] from a Secret's data, never shown in `Debug`.
//! - `token`: IMS tokens, cached per credential identity, refreshed early, minted once.
//! - `connections`: request and response types, the pure body builders and parsers.
//! - `client`: [`FlowClient`], which sends requests with the required headers, a process-wide rate
//!   limit and concurrency cap, and retries of reads.
//! - `throttle`: the rate limit and concurrency cap shared by Flow Service and
//!   IMS requests, and the per-integration windows after a 429 in which nothing is sent.
//! - `error`: [`FlowError`], whose [`FlowErrorKind`] says what the caller should do; `redact`
//!   scrubs credential values (also encoded) out of what servers send back.
//! - `observer`: metrics hooks ([`FlowObserver`]).
//!
//! It meets the emulator only on the wire: nothing here imports `crate::emulator`.

mod client;
mod connections;
mod credentials;
mod error;
mod http;
mod observer;
mod redact;
mod throttle;
mod token;

// The public surface: what the operator, the test kit and the tests use. Everything else is
// pub(crate), so that it can change without touching them.
pub use client::{FlowClient, FlowClientConfig, Scope};
pub use connections::{
    Connection, ConnectionUpdate, CreatedConnection, DataType, NewConnection,
    STREAMING_CONNECTION_SPEC_ID,
};
pub use credentials::{Credentials, CredentialsError};
pub use error::{ErrorDetails, FlowError, FlowErrorKind};
pub use observer::{FlowObserver, Operation};
