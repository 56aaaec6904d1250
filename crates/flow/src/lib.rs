//! The Flow Service and IMS client: the operator's only door to Adobe. No Kubernetes types in here.
//!
//! - [`credentials`]: Adobe credentials from a Secret's data, never shown in `Debug`.
//! - [`token`](self::token): IMS tokens, cached per credential identity, refreshed early, minted once.
//! - [`connections`]: request and response types, the pure body builders and parsers.
//! - [`client`]: [`FlowClient`], which sends requests with the required headers, a process-wide rate
//!   limit and concurrency cap, and retries of reads.
//! - `throttle`: the rate limit and concurrency cap shared by Flow Service and
//!   IMS requests, and the per-integration windows after a 429 in which nothing is sent.
//! - [`error`]: [`FlowError`], one variant per thing the caller should do; `redact`
//!   scrubs credential values (also encoded) out of what servers send back.
//! - [`observer`]: metrics hooks.
//! - [`catalog`], [`dataflows`], [`mapping_sets`], [`runs`]: the types, body builders and parsers of
//!   the dataflow calls (Catalog datasets, source and target connections, flows, Data Prep mapping
//!   sets, flow runs); `listing` holds the list plumbing they share with connections.
//!
//! It meets the emulator only on the wire: nothing here imports `crate::emulator`.

pub mod catalog;
pub mod client;
pub mod connections;
pub mod credentials;
pub mod dataflows;
pub mod error;
mod flow_codes;
mod http;
mod listing;
pub mod mapping_sets;
pub mod observer;
mod redact;
pub mod runs;
mod throttle;
mod token;

pub use catalog::{Dataset, SchemaRef};
pub use client::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IMS_URL, DEFAULT_MAX_CONCURRENCY, DEFAULT_PLATFORM_URL,
    DEFAULT_QPS, DEFAULT_REQUEST_TIMEOUT, FlowClient, FlowClientConfig, Scope,
};
pub use connections::{
    Connection, ConnectionUpdate, CreatedConnection, DataType, NewConnection,
    STREAMING_AUTH_SPEC_NAME, STREAMING_CONNECTION_SPEC_ID, STREAMING_CONNECTION_SPEC_VERSION,
    create_body, patch_operations,
};
pub use credentials::{Credentials, CredentialsError, DEFAULT_SCOPES};
pub use dataflows::{
    DATA_LAKE_CONNECTION_SPEC_ID, DATA_LAKE_CONNECTION_SPEC_VERSION, FLOW_SPEC_VERSION, Flow,
    FlowKind, FlowUpdate, LastOperation, LastRunDetails, MAPPING_TRANSFORMATION_NAME, MappingRef,
    NewFlow, NewSourceConnection, NewTargetConnection, RAW_FLOW_SPEC_ID, SourceConnection,
    TargetConnection, Transformation, XDM_FLOW_SPEC_ID, flow_body, flow_patch_operations,
    source_connection_body, target_connection_body,
};
pub use error::{ErrorDetails, FlowError};
pub use http::parse_retry_after;
pub use mapping_sets::{Mapping, MappingSet, NewMappingSet, SourceType, mapping_set_body};
pub use observer::{FlowObserver, NoopObserver, Operation};
pub use runs::{Run, latest_run};
