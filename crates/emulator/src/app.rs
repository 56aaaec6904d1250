//! The shared state of a running emulator and the router that puts every route behind the front door (request
//! ids, latency, faults, the request log), except the admin API, which is never delayed, faulted or logged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use super::config::ClientCredential;
use super::errors::FlowServiceProblem;
use super::faults::FaultBook;
use super::frontdoor::{self, RequestLog};
use super::ims::{self, TokenBook};
use super::source_target::{Sources, Targets};
use super::state::{Persister, Store};
use super::{admin, catalog, connections, flows, inlet, mapping, runs, source_target};

/// Everything the handlers share. Each `Mutex` is held only for in-memory work, never across an `.await`.
#[derive(Debug)]
pub(crate) struct AppState {
    /// Base of `inletUrl` and `Location`, without a trailing `/`.
    pub(crate) public_url: String,
    /// The OAuth clients IMS accepts.
    pub(crate) clients: Vec<ClientCredential>,
    /// The sandbox names `x-sandbox-name` may carry; any other is Flow Service's sandbox-not-found.
    pub(crate) sandboxes: Vec<String>,
    /// The `expires_in` of every token IMS mints.
    pub(crate) token_ttl: Duration,
    /// Added by the front door before every non-admin request (`--latency-ms`).
    pub(crate) latency: Duration,
    /// How long after a create its inlet starts to exist (`--inlet-delay-ms`).
    pub(crate) inlet_delay: Duration,
    /// `--lenient`: accept what the contract does not (see [`crate::EmulatorConfig::lenient`]).
    pub(crate) lenient: bool,
    /// `--max-page-size`: the largest `limit` of a Flow Service list.
    pub(crate) max_page_size: usize,
    /// `--patch-disabled-org`: organizations whose connection PATCH answers `FLOW-1445-400`.
    pub(crate) patch_disabled_orgs: Vec<String>,
    /// When each inlet last took a `syncValidation=true` request, for the 60-per-minute limit.
    pub(crate) sync_validation_calls:
        Mutex<std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>>,
    /// The connections and what their inlets received.
    pub(crate) store: Mutex<Store>,
    /// The tokens IMS has minted, until they expire or the emulator forgets them.
    pub(crate) tokens: Mutex<TokenBook>,
    /// The fault rules posted to the admin API.
    pub(crate) faults: Mutex<FaultBook>,
    /// Every served request, for `GET /_emulator/requests`.
    pub(crate) requests: Mutex<RequestLog>,
    /// Writes the store to `--state-file`; absent when the emulator keeps everything in memory.
    pub(crate) persister: Option<Persister>,
}

impl AppState {
    /// Write the store to the state file (if any) up to at least `generation`. A failure becomes a 500, because
    /// the caller was about to be told its change is durable.
    pub(crate) async fn persist(&self, generation: u64) -> Result<(), FlowServiceProblem> {
        let Some(persister) = &self.persister else {
            return Ok(());
        };
        persister
            .persist(&self.store, generation)
            .await
            .map_err(|error| {
                tracing::error!(%error, "could not persist emulator state");
                FlowServiceProblem::internal("the emulator could not write its state file")
            })
    }
}

/// Milliseconds since the epoch, the unit of `createdAt`, `updatedAt` and `receivedTimeMs`.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The whole HTTP surface.
pub(crate) fn router(app: Arc<AppState>) -> Router {
    let adobe = Router::new()
        .route(ims::TOKEN_ROUTE, post(ims::issue_token))
        .route(
            connections::CONNECTIONS_ROUTE,
            get(connections::list).post(connections::create),
        )
        .route(
            connections::CONNECTION_ROUTE,
            get(connections::get_one)
                .patch(connections::patch)
                .delete(connections::delete),
        )
        // The OpenAPI spec writes the item path with a trailing slash, the tutorials without: accept both.
        .route(
            connections::CONNECTION_ROUTE_TRAILING_SLASH,
            get(connections::get_one)
                .patch(connections::patch)
                .delete(connections::delete),
        )
        .route(catalog::DATASET_ROUTE, get(catalog::get_one))
        .route(
            source_target::SOURCE_CONNECTIONS_ROUTE,
            get(source_target::list::<Sources>).post(source_target::create::<Sources>),
        )
        .route(
            source_target::SOURCE_CONNECTION_ROUTE,
            get(source_target::get_one::<Sources>)
                .patch(source_target::patch::<Sources>)
                .delete(source_target::delete::<Sources>),
        )
        .route(
            source_target::TARGET_CONNECTIONS_ROUTE,
            get(source_target::list::<Targets>).post(source_target::create::<Targets>),
        )
        .route(
            source_target::TARGET_CONNECTION_ROUTE,
            get(source_target::get_one::<Targets>)
                .patch(source_target::patch::<Targets>)
                .delete(source_target::delete::<Targets>),
        )
        .route(
            mapping::MAPPING_SETS_ROUTE,
            get(mapping::list).post(mapping::create),
        )
        .route(
            mapping::MAPPING_SET_ROUTE,
            get(mapping::get_one)
                .put(mapping::update)
                .delete(mapping::delete),
        )
        .route(flows::FLOWS_ROUTE, get(flows::list).post(flows::create))
        .route(
            flows::FLOW_ROUTE,
            get(flows::get_one)
                .patch(flows::patch)
                .delete(flows::delete),
        )
        .route(flows::FLOW_ACTION_ROUTE, post(flows::action))
        .route(runs::RUNS_ROUTE, get(runs::list))
        .route(runs::RUN_ROUTE, get(runs::get_one))
        .route(inlet::SINGLE_ROUTE, post(inlet::single))
        .route(inlet::BATCH_ROUTE, post(inlet::batch))
        .fallback(frontdoor::no_route)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            frontdoor::front_door,
        ));
    admin::router().merge(adobe).with_state(app)
}
