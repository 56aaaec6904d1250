//! aep-emulator: a local stand-in for Adobe IMS, Flow Service connections and the streaming inlet.
//!
//! Thin: parse flags, start the emulator, print where it listens, stop on SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aep_emulator::{ClientCredential, DEFAULT_SANDBOXES, EmulatorConfig};
use clap::Parser;

/// Serve Adobe IMS, Flow Service connections and the streaming inlet locally, for tests and for trying the
/// operator without an AEP account.
#[derive(Debug, Parser)]
#[command(name = "aep-emulator", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "AEP_EMULATOR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Base URL clients use to reach the emulator, used in inletUrl and Location [default: http://<listen>].
    #[arg(long, env = "AEP_EMULATOR_PUBLIC_URL")]
    public_url: Option<String>,

    /// OAuth client as ID:SECRET:ORG; repeat the flag, or separate with commas in the env var
    /// [default: demo-client:demo-secret:DEMO0000000000000000000@AdobeOrg].
    #[arg(
        long = "client",
        env = "AEP_EMULATOR_CLIENT",
        value_delimiter = ',',
        value_name = "ID:SECRET:ORG"
    )]
    clients: Vec<ClientCredential>,

    /// Sandbox name accepted in x-sandbox-name; repeat the flag, or separate with commas [default: prod, dev].
    #[arg(
        long = "sandbox",
        env = "AEP_EMULATOR_SANDBOX",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    sandboxes: Vec<String>,

    /// Lifetime of issued access tokens, in seconds.
    #[arg(
        long,
        env = "AEP_EMULATOR_TOKEN_TTL",
        default_value_t = 86_399,
        value_name = "SECS"
    )]
    token_ttl: u64,

    /// Latency added to every non-admin request, in milliseconds.
    #[arg(
        long,
        env = "AEP_EMULATOR_LATENCY_MS",
        default_value_t = 0,
        value_name = "N"
    )]
    latency_ms: u64,

    /// Delay after creation before a connection's inletId/inletUrl appear and its inlet accepts data, in ms.
    #[arg(
        long,
        env = "AEP_EMULATOR_INLET_DELAY_MS",
        default_value_t = 0,
        value_name = "N"
    )]
    inlet_delay_ms: u64,

    /// File that keeps connections across restarts (written atomically after each change).
    #[arg(long, env = "AEP_EMULATOR_STATE_FILE", value_name = "PATH")]
    state_file: Option<PathBuf>,

    /// Start without the demo dataset (5c8c3c555033b814b69f947f in the demo org's prod sandbox).
    #[arg(long, env = "AEP_EMULATOR_NO_DEMO_DATASET")]
    no_demo_dataset: bool,

    /// Accept what real clients send where Adobe's tutorials and spec disagree (unknown query parameters, the
    /// `~` filter, any inlet Content-Type, no syncValidation rate limit). Off: held to the published contract.
    #[arg(long, env = "AEP_EMULATOR_LENIENT")]
    lenient: bool,

    /// The largest `limit` a Flow Service list accepts (larger: FLOW-1453-400).
    #[arg(long, env = "AEP_EMULATOR_MAX_PAGE_SIZE", default_value_t = aep_emulator::DEFAULT_MAX_PAGE_SIZE, value_name = "N")]
    max_page_size: usize,

    /// An organization whose connection PATCH answers FLOW-1445-400 "PATCH Connection Feature not enabled"
    /// (repeatable).
    #[arg(
        long = "patch-disabled-org",
        env = "AEP_EMULATOR_PATCH_DISABLED_ORG",
        value_delimiter = ',',
        value_name = "ORG"
    )]
    patch_disabled_orgs: Vec<String>,
}

impl Cli {
    fn into_config(self) -> EmulatorConfig {
        let defaults = EmulatorConfig::default();
        EmulatorConfig {
            listen: self.listen,
            public_url: self.public_url,
            clients: if self.clients.is_empty() {
                defaults.clients
            } else {
                self.clients
            },
            sandboxes: if self.sandboxes.is_empty() {
                DEFAULT_SANDBOXES.iter().map(|s| (*s).to_owned()).collect()
            } else {
                self.sandboxes
            },
            token_ttl: Duration::from_secs(self.token_ttl),
            latency: Duration::from_millis(self.latency_ms),
            inlet_delay: Duration::from_millis(self.inlet_delay_ms),
            state_file: self.state_file,
            demo_dataset: !self.no_demo_dataset,
            lenient: self.lenient,
            max_page_size: self.max_page_size,
            patch_disabled_orgs: self.patch_disabled_orgs,
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let running = match aep_emulator::start(cli.into_config()).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("aep-emulator: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("aep-emulator listening on {}", running.url());
    // Scripts wait for this line on a pipe; make sure it leaves the buffer now.
    let _ = std::io::stdout().flush();
    termination().await;
    running.shutdown().await;
    ExitCode::SUCCESS
}
