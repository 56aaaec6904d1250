//! The `aep-streaming-operator` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use aep_streaming_operator::api::{self, ServedKind};
use aep_streaming_operator::cli::{Cli, Command};
use aep_streaming_operator::{operator, telemetry};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().into_command() {
        Command::Crd { kind } => {
            let kinds = match kind {
                Some(kind) => vec![kind],
                None => ServedKind::ALL.to_vec(),
            };
            print!("{}", api::definitions_yaml(&kinds));
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            telemetry::init(args.log_format);
            match operator::run(*args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "the operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
