//! aep-emulator: a local stand-in for Adobe IMS, Flow Service connections and the streaming inlet.
//!
//! It follows the wire contract in the project's reference (paths, status codes, header check order, bodies),
//! so that the operator's client and anyone trying the operator can run without an AEP account. It shares no
//! code with the client (`crate::flow`): the two meet only on the wire, so a shared misunderstanding cannot hide.
//!
//! The library's surface is what its users need: [`start`] with an [`EmulatorConfig`], the demo credentials
//! and the spec id a client must send. The modules are private: `config` (what it starts with), `app`
//! (shared state, router), `frontdoor` (request ids, latency, faults, request log), `ims`, `connections` +
//! `listing` (Flow Service), `inlet`, `faults`, `admin` (`/_emulator/…`), `state` (store, persistence),
//! `errors` (Adobe error bodies).
//!
//! ```no_run
//! # async fn demo() -> Result<(), aep_emulator::EmulatorError> {
//! use aep_emulator::{EmulatorConfig, start};
//! let emulator = start(EmulatorConfig::default()).await?;
//! println!("IMS, Flow Service and inlets at {}", emulator.url());
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
mod app;
mod config;
mod connections;
mod errors;
mod faults;
mod frontdoor;
mod ims;
mod inlet;
mod listing;
mod state;

// The StreamingDataflow objects: Catalog datasets, source/target connections, mapping sets, flows and runs.
pub(crate) mod catalog;
pub(crate) mod collections;
pub(crate) mod dataflows;
pub(crate) mod flows;
pub(crate) mod mapping;
pub(crate) mod runs;
pub(crate) mod source_target;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// The admin API's routes and fault rules, for the test kit's typed client of the admin API.
pub use admin::{
    CONNECTION_STATE_ROUTE, FAULT_ROUTE, FAULTS_ROUTE, HEALTH_ROUTE, INLET_ROUTE, REQUESTS_ROUTE,
    RESET_ROUTE, STATE_ROUTE,
};
pub use catalog::{DEMO_DATASET_ID, DEMO_DATASET_NAME, DEMO_SCHEMA_ID, XDM_CONTENT_TYPE};
pub use config::{
    ClientCredential, ClientCredentialParseError, DEFAULT_MAX_PAGE_SIZE, DEFAULT_SANDBOXES,
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_ORG_ID, EmulatorConfig,
};
pub use connections::{CONNECTION_STATES, STREAMING_CONNECTION_SPEC_ID};
pub use faults::{FaultAction, FaultRule, RetryAfter};
pub use flows::{RAW_FLOW_SPEC_ID, XDM_FLOW_SPEC_ID};
pub use source_target::DATA_LAKE_CONNECTION_SPEC_ID;
pub use state::StateFileError;

/// Why an emulator could not start. Nothing is left running when [`start`] returns one.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The [`EmulatorConfig`] cannot work: no client, a client id twice, no or an empty sandbox name, or
    /// a public URL that is not `http(s)://`. The text says which.
    #[error("invalid emulator configuration: {0}")]
    InvalidConfig(String),
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured listen address.
        address: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The state file could not be loaded, or not written once at start-up.
    #[error(transparent)]
    StateFile(#[from] StateFileError),
}

/// A started emulator. Dropping it also stops the server (gracefully, in the background); [`shutdown`]
/// additionally waits until it has stopped.
///
/// [`shutdown`]: RunningEmulator::shutdown
#[derive(Debug)]
pub struct RunningEmulator {
    local_addr: SocketAddr,
    url: String,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl RunningEmulator {
    /// `http://127.0.0.1:<port>`: the base URL for IMS, Flow Service and the inlet alike.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting connections, let in-flight requests finish, and wait for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "emulator server ended with an error"),
            Err(error) => tracing::warn!(%error, "emulator server task failed"),
        }
    }
}

/// A URL for an address that a client can connect to: an unspecified bind address (`0.0.0.0`) becomes loopback.
fn connectable_url(address: SocketAddr) -> String {
    let ip = match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, address.port()))
}

fn validate(config: &EmulatorConfig) -> Result<(), EmulatorError> {
    let invalid = |message: String| Err(EmulatorError::InvalidConfig(message));
    if config.clients.is_empty() {
        return invalid("at least one client is needed".to_owned());
    }
    for (index, client) in config.clients.iter().enumerate() {
        if config.clients[..index]
            .iter()
            .any(|c| c.client_id == client.client_id)
        {
            return invalid(format!(
                "client id {} is configured twice",
                client.client_id
            ));
        }
    }
    if config.sandboxes.is_empty() || config.sandboxes.iter().any(|s| s.trim().is_empty()) {
        return invalid(
            "at least one sandbox is needed, and sandbox names cannot be empty".to_owned(),
        );
    }
    if let Some(url) = &config.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return invalid(format!(
            "public URL {url:?} must start with http:// or https://"
        ));
    }
    Ok(())
}

/// Bind, load the state file (if any), and serve on the current tokio runtime. Returns once listening.
pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
    validate(&config)?;
    let mut store = match &config.state_file {
        Some(path) => state::Store::load(path)?,
        None => state::Store::default(),
    };
    store.dataflow.seed_demo_dataset = config.demo_dataset;
    store.dataflow.seed_demo();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| EmulatorError::Bind {
            address: config.listen,
            source,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind {
            address: config.listen,
            source,
        })?;
    let url = connectable_url(local_addr);
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| url.clone())
        .trim_end_matches('/')
        .to_owned();
    let persister = match &config.state_file {
        Some(path) => {
            // Write once now, so that an unwritable location fails at start-up rather than on the first create.
            state::write_atomically(path, &store.snapshot())?;
            Some(state::Persister::new(path.clone(), store.generation))
        }
        None => None,
    };
    let app = Arc::new(app::AppState {
        public_url,
        clients: config.clients,
        sandboxes: config.sandboxes,
        token_ttl: config.token_ttl,
        latency: config.latency,
        inlet_delay: config.inlet_delay,
        lenient: config.lenient,
        max_page_size: config.max_page_size,
        patch_disabled_orgs: config.patch_disabled_orgs,
        sync_validation_calls: Mutex::default(),
        store: Mutex::new(store),
        tokens: Mutex::default(),
        faults: Mutex::default(),
        requests: Mutex::default(),
        persister,
    });
    let router = app::router(app);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // A dropped sender (the RunningEmulator was dropped) stops the server too.
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%url, "aep-emulator started");
    Ok(RunningEmulator {
        local_addr,
        url,
        stop,
        server,
    })
}
