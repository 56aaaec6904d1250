//! Command-line interface: every flag also reads an `AEP_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};

use crate::api::ServedKind;

/// Manages Adobe Experience Platform streaming connections as Kubernetes objects.
#[derive(Debug, Parser)]
#[command(name = "aep-streaming-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    // `run` is the default command, so its flags are accepted without naming it.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator (the default command).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    ///
    /// Without KIND, every kind's CRD as one stream, `---` between them (`... crd | kubectl apply -f -`).
    /// With KIND, that kind's CRD alone: exactly its file in crds/.
    Crd {
        /// Print only this kind's CRD.
        kind: Option<ServedKind>,
    },
}

// The names are the CRDs' singular names, which are also the file names in crds/: `crd streamingdataflow >
// crds/streamingdataflow.yaml`.
impl ValueEnum for ServedKind {
    fn value_variants<'a>() -> &'a [Self] {
        &ServedKind::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.singular()))
    }
}

impl Cli {
    /// The command to execute: `run` unless another one was named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Run(Box::new(self.run)))
    }
}

/// How the operator connects, what it watches and how hard it may push on Flow Service.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Base URL of the Adobe Experience Platform APIs (Flow Service).
    #[arg(
        long,
        env = "AEP_PLATFORM_URL",
        default_value = "https://platform.adobe.io"
    )]
    pub platform_url: url::Url,

    /// Base URL of Adobe IMS, where access tokens are requested.
    #[arg(
        long,
        env = "AEP_IMS_URL",
        default_value = "https://ims-na1.adobelogin.com"
    )]
    pub ims_url: url::Url,

    /// Watch StreamingConnections in this namespace only (default: all namespaces).
    #[arg(long, env = "AEP_NAMESPACE")]
    pub namespace: Option<String>,

    /// How often every object is checked against Flow Service for drift (each at its own phase of the interval), e.g. `10m`, `90s`.
    #[arg(long, env = "AEP_RESYNC_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub resync_interval: Duration,

    /// How many StreamingConnections are reconciled at the same time.
    #[arg(long, env = "AEP_MAX_CONCURRENT_RECONCILES", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,

    /// Process-wide limit on Flow Service requests per second (0 disables the limit).
    #[arg(long, env = "AEP_FLOW_SERVICE_QPS", default_value_t = 10.0)]
    pub flow_service_qps: f64,

    /// Time allowed for one Flow Service or IMS request, answer included, e.g. `30s`. A create
    /// whose answer did not come in time is looked up by name only after this plus 30 s.
    #[arg(long, env = "AEP_FLOW_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub flow_request_timeout: Duration,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "AEP_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Only one replica reconciles at a time; the others wait on a Lease (for HA deployments).
    #[arg(long, env = "AEP_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease (default: the operator's own namespace). Without
    /// --leader-election the operator still reads this Lease, and refuses to run next to a replica
    /// that holds and renews it.
    #[arg(long, env = "AEP_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// How long a leader's Lease lasts without renewal; a standby takes over after it has seen the
    /// Lease unchanged for that long on its own clock (e.g. `15s`). The leader stops writing to Flow
    /// Service when it has not renewed for two thirds of it.
    #[arg(long, env = "AEP_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// Log format.
    #[arg(long, env = "AEP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// A PEM file with extra CA certificates to trust for the platform and IMS URLs.
    #[arg(long, env = "AEP_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Parses `500ms`, `90s`, `10m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration: use a number with ms, s, m or h, e.g. 10m")
    })?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}`: use ms, s, m or h"
            ));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("`{text}` must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_command() {
        let cli =
            Cli::try_parse_from(["aep-streaming-operator", "--namespace", "marketing"]).unwrap();
        match cli.into_command() {
            Command::Run(args) => assert_eq!(args.namespace.as_deref(), Some("marketing")),
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[test]
    fn crd_prints_every_kind_unless_one_is_named() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["aep-streaming-operator", "crd"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).map(Cli::into_command)
        };
        assert!(matches!(parse(&[]), Ok(Command::Crd { kind: None })));
        for kind in ServedKind::ALL {
            assert!(
                matches!(parse(&[kind.singular()]), Ok(Command::Crd { kind: Some(k) }) if k == kind),
                "{kind:?}"
            );
        }
        assert!(parse(&["streamingconnections"]).is_err());
    }

    #[test]
    fn every_flag_has_an_aep_environment_variable() {
        let command = Cli::command();
        for arg in command.get_arguments().filter(|a| a.get_long().is_some()) {
            let long = arg.get_long().unwrap();
            if long == "help" || long == "version" {
                continue;
            }
            let env = arg
                .get_env()
                .unwrap_or_else(|| panic!("--{long} has no env var"));
            let expected = format!("AEP_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(env.to_str(), Some(expected.as_str()), "--{long}");
            assert!(arg.get_help().is_some(), "--{long} has no help line");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
