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
//! - `catalog`, `dataflows`, `mapping_sets`, `runs`: the types, body builders and parsers of the dataflow
//!   calls (Catalog datasets, source and target connections, flows, Data Prep mapping sets, flow runs);
//!   `listing` holds the list plumbing they share with connections.
//!
//! It meets the emulator only on the wire: nothing here imports `crate::emulator`.

mod catalog;
mod client;
mod connections;
mod credentials;
mod dataflows;
mod error;
mod flow_codes;
mod http;
mod listing;
mod mapping_sets;
mod observer;
mod redact;
mod runs;
mod throttle;
mod token;

// The public surface: what the operator, the test kit and the tests use. Everything else is
// pub(crate), so that it can change without touching them.
pub use catalog::{Dataset, SchemaRef};
pub use client::{FlowClient, FlowClientConfig, Scope};
pub use connections::{
    Connection, ConnectionUpdate, CreatedConnection, DataType, NewConnection,
    STREAMING_CONNECTION_SPEC_ID,
};
pub use credentials::{Credentials, CredentialsError};
pub use dataflows::{
    DATA_LAKE_CONNECTION_SPEC_ID, DATA_LAKE_CONNECTION_SPEC_VERSION, FLOW_SPEC_VERSION, Flow,
    FlowKind, FlowUpdate, LastOperation, LastRunDetails, MAPPING_TRANSFORMATION_NAME, MappingRef,
    NewFlow, NewSourceConnection, NewTargetConnection, RAW_FLOW_SPEC_ID, SourceConnection,
    TargetConnection, Transformation, XDM_FLOW_SPEC_ID, flow_body, flow_patch_operations,
    source_connection_body, target_connection_body,
};
pub use error::{ErrorDetails, FlowError, FlowErrorKind};
pub use mapping_sets::{Mapping, MappingSet, NewMappingSet, SourceType, mapping_set_body};
pub use observer::{FlowObserver, Operation};
pub use runs::{Run, latest_run};
