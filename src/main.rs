//! The `aep-streaming-operator` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use aep_streaming_operator::api::StreamingConnection;
use aep_streaming_operator::cli::{Cli, Command};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().into_command() {
        Command::Crd => {
            print!("{}", StreamingConnection::definition_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(_args) => {
            eprintln!("aep-streaming-operator: `run` is not available in this build yet");
            ExitCode::FAILURE
        }
    }
}
