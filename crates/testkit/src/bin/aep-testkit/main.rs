//! `aep-testkit`: the test kit's code behind the scripts, so that a script only starts and stops processes.
//!
//! - `operator-kubeconfig`: the operator's kubeconfig from a TokenRequest ([`cluster::write_operator_kubeconfig`],
//!   the same code the end-to-end tests use), for `tools/demo.sh` and `tools/bench.sh`.
//! - `free-ports N`: N distinct free loopback ports on one line, for `tools/bench.sh`.
//! - `dataset-records`: how many records reached a dataset of the emulator ([`EmulatorAdmin::dataset`]), for
//!   `tools/demo.sh`.
//! - `bench`: the benchmark's measuring half for one size (docs/benchmark.md); `tools/bench.sh` starts the
//!   control plane and the emulator, this starts, restarts and stops the operator.
//! - `bench-table`: the table over every size of a run, from the result files `bench` wrote.

mod baseline;
mod bench;
mod metrics;
mod operator;
mod rate;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use aep_streaming_operator::cli::parse_duration;
use aep_testkit::admin::EmulatorAdmin;
use aep_testkit::cluster;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aep-testkit",
    about = "The test kit behind tools/demo.sh and tools/bench.sh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a kubeconfig for the operator's service account (RBAC of deploy/) from a TokenRequest token.
    OperatorKubeconfig {
        /// The admin kubeconfig: the API server to point at, and the identity that requests the token.
        #[arg(long, env = "KUBECONFIG")]
        admin_kubeconfig: PathBuf,
        /// Where to write it (mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// How long the token is valid (`90s`, `10m`, `24h`).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        lifetime: Duration,
    },
    /// Print N distinct free loopback ports on one line.
    FreePorts {
        /// How many.
        count: usize,
    },
    /// Print how many records the emulator has written into a dataset (`records` in `/_emulator/state`).
    DatasetRecords {
        /// The emulator's base URL.
        #[arg(long)]
        emulator_url: String,
        /// The Catalog dataset id.
        dataset_id: String,
    },
    /// Measure a running operator: create, steady state, delete (see docs/benchmark.md).
    Bench(Box<bench::Options>),
    /// Print the table over several sizes (text and Markdown) from `bench`'s result files.
    BenchTable {
        /// The result files, smallest size first.
        #[arg(required = true)]
        results: Vec<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::OperatorKubeconfig {
            admin_kubeconfig,
            out,
            lifetime,
        } => {
            let admin = cluster::client_for(&admin_kubeconfig).await;
            cluster::write_operator_kubeconfig(&admin, &admin_kubeconfig, &out, lifetime).await;
            Ok(())
        }
        Command::FreePorts { count } => {
            // Held open together, so that the ports are distinct.
            let listeners = (0..count)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
                .collect::<std::io::Result<Vec<_>>>()?;
            let ports: Vec<String> = listeners
                .iter()
                .map(|l| l.local_addr().map(|a| a.port().to_string()))
                .collect::<std::io::Result<_>>()?;
            println!("{}", ports.join(" "));
            Ok(())
        }
        Command::DatasetRecords {
            emulator_url,
            dataset_id,
        } => {
            let dataset = EmulatorAdmin::new(emulator_url)
                .dataset(&dataset_id)
                .await
                .ok_or_else(|| anyhow::anyhow!("the emulator has no dataset {dataset_id}"))?;
            println!("{}", dataset.records);
            Ok(())
        }
        Command::Bench(options) => bench::run(*options).await,
        Command::BenchTable { results } => {
            let results = results
                .iter()
                .map(|path| {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                    Ok(serde_json::from_str(&text)?)
                })
                .collect::<anyhow::Result<Vec<serde_json::Value>>>()?;
            println!("{}", report::table(&results));
            Ok(())
        }
    }
}
