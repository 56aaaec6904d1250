//! The benchmark's measuring half, for one size N: start the operator, create N StreamingConnections and time
//! them to Ready with a watch, count the Flow Service and Kubernetes requests of each phase, watch a steady
//! resync window and the second-by-second Flow call rate, restart the operator and watch that window too,
//! delete everything, stop the operator, then time the API-server baseline (the same Kubernetes writes with no
//! operator). Memory and CPU of the operator, kube-apiserver and etcd are sampled per phase. It prints figures
//! and never asserts on timing: it fails only when something does not happen at all within its bound.
//! `tools/bench.sh` starts the control plane and the emulator, and runs this once per size.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aep_streaming_operator::api::StreamingConnection;
use aep_streaming_operator::cli::{Cli, Command, parse_duration};
use aep_testkit::admin::EmulatorAdmin;
use aep_testkit::cluster::{is_ready, put_secret};
use anyhow::{Context as _, bail};
use clap::Parser as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::baseline;
use crate::metrics::{self, ProcessSample, Sample, round};
use crate::operator::{OperatorCommand, OperatorProcess};
use crate::rate::Sampler;
use crate::report;

const FIELD_MANAGER: &str = "aep-bench";

/// `aep-testkit bench`: what to create, what to run and what to measure.
#[derive(clap::Args)]
pub struct Options {
    /// Number of StreamingConnections.
    #[arg(long)]
    objects: usize,
    /// Spread round-robin over `bench-0` … `bench-<n-1>`, with one credentials Secret each.
    #[arg(long, default_value_t = 4)]
    namespaces: usize,
    /// Requests the benchmark's own client keeps in flight when it applies and deletes the objects. One
    /// client applying one object after the other writes about 30 objects/s here, which at N=3000 would make
    /// the apply, not the operator, the thing measured.
    #[arg(long, default_value_t = 8)]
    client_concurrency: usize,
    /// The emulator's base URL.
    #[arg(long)]
    emulator_url: String,
    /// The operator's metrics URL (`http://127.0.0.1:<port>/metrics`, the port of its `--metrics-addr`).
    #[arg(long)]
    metrics_url: String,
    #[arg(long)]
    emulator_pid: u32,
    /// kube-apiserver's pid (`<cluster>/pids/kube-apiserver.pid`), for its CPU per phase.
    #[arg(long)]
    apiserver_pid: u32,
    /// etcd's pid, for its CPU per phase.
    #[arg(long)]
    etcd_pid: u32,
    /// The operator binary.
    #[arg(long)]
    operator_bin: PathBuf,
    /// The operator's kubeconfig (its service account).
    #[arg(long)]
    operator_kubeconfig: PathBuf,
    /// The operator's log (appended to: a restart keeps the first process's lines).
    #[arg(long)]
    operator_log: PathBuf,
    /// Where the operator's pid is kept while it runs.
    #[arg(long)]
    operator_pid_file: PathBuf,
    /// The commit measured, as reported.
    #[arg(long, default_value = "")]
    revision: String,
    /// Extra emulator flags, as reported.
    #[arg(long, default_value = "")]
    emulator_flags: String,
    /// The steady-state window; default the resync interval + 20 %.
    #[arg(long, value_parser = parse_duration)]
    steady: Option<Duration>,
    /// The window watched after the operator restarts; default one resync interval.
    #[arg(long, value_parser = parse_duration)]
    restart_window: Option<Duration>,
    /// Settle: no emulator request for this long after all are Ready.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    quiet: Duration,
    /// At most this long to settle.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    quiet_bound: Duration,
    #[arg(long, default_value = "900s", value_parser = parse_duration)]
    ready_timeout: Duration,
    #[arg(long, default_value = "900s", value_parser = parse_duration)]
    delete_timeout: Duration,
    /// Where the logs are, for error messages.
    #[arg(long)]
    workdir: PathBuf,
    /// The JSON result.
    #[arg(long)]
    out: PathBuf,
    /// The operator's command line after the binary (`run --platform-url … --resync-interval 30s`).
    #[arg(last = true, required = true)]
    operator_args: Vec<String>,
}

pub fn log(message: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    eprintln!(
        "[bench {:02}:{:02}:{:02}] {message}",
        now / 3600 % 24,
        now / 60 % 60,
        now % 60
    );
}

/// What the watch saw of each bench object, in seconds after the watch started.
#[derive(Default)]
struct Seen {
    first: HashMap<String, f64>,
    ready: HashMap<String, f64>,
    /// The latest version of every object that exists.
    current: HashMap<String, StreamingConnection>,
    /// Times an object that had been Ready was seen not Ready (a restart should cause none).
    lost_ready: usize,
}

fn key(object: &StreamingConnection) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Watches every StreamingConnection and stamps each event on arrival (ms resolution, where the API's own
/// timestamps have whole seconds). One watch for the whole run, never a relist in a loop. Resolves once the
/// initial list is in.
async fn watch(client: Client, namespaces: Vec<String>, t0: Instant) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (listed, initialized) = tokio::sync::oneshot::channel();
    let shared = seen.clone();
    tokio::spawn(async move {
        let api: Api<StreamingConnection> = Api::all(client);
        let mut listed = Some(listed);
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let now = t0.elapsed().as_secs_f64();
            let mut seen = shared.lock().unwrap();
            match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object))
                    if namespaces.contains(&object.namespace().unwrap_or_default()) =>
                {
                    let key = key(&object);
                    seen.first.entry(key.clone()).or_insert(now);
                    let was_ready = seen.current.get(&key).is_some_and(is_ready);
                    if is_ready(&object) {
                        seen.ready.entry(key.clone()).or_insert(now);
                    } else if was_ready && object.metadata.deletion_timestamp.is_none() {
                        seen.lost_ready += 1;
                    }
                    seen.current.insert(key, object);
                }
                Ok(watcher::Event::Delete(object)) => {
                    seen.current.remove(&key(&object));
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(listed) = listed.take() {
                        let _ = listed.send(());
                    }
                }
                Ok(_) => {}
                Err(error) => log(&format!("watch: {error} (retrying)")),
            }
        }
    });
    let _ = initialized.await;
    seen
}

/// CPU seconds (utime + stime) of the three processes that do the work.
#[derive(Clone, Copy)]
struct Cpu {
    operator: f64,
    apiserver: f64,
    etcd: f64,
}

/// The counters at the start of a phase.
struct Phase {
    operator: Sample,
    apiserver: Sample,
    cpu: Cpu,
    started: Instant,
}

/// What moved over a phase.
struct PhaseDelta {
    operator: Value,
    /// The operator's raw counters, for the Flow latency.
    operator_raw: Sample,
    apiserver_writes: BTreeMap<String, u64>,
    cpu: Value,
}

struct Bench {
    options: Options,
    client: Client,
    emulator: EmulatorAdmin,
    http: reqwest::Client,
    namespaces: Vec<String>,
}

impl Bench {
    fn sample(&self, pid: u32, name: &str) -> anyhow::Result<ProcessSample> {
        metrics::process(pid).with_context(|| {
            format!(
                "the {name} (pid {pid}) is gone; see the logs in {}",
                self.options.workdir.display()
            )
        })
    }

    fn check_alive(&self, operator: &OperatorProcess) -> anyhow::Result<()> {
        operator.sample()?;
        self.sample(self.options.emulator_pid, "emulator")?;
        self.sample(self.options.apiserver_pid, "kube-apiserver")?;
        Ok(())
    }

    fn cpu(&self, operator: &OperatorProcess) -> anyhow::Result<Cpu> {
        Ok(Cpu {
            operator: operator.sample()?.cpu_s,
            apiserver: self
                .sample(self.options.apiserver_pid, "kube-apiserver")?
                .cpu_s,
            etcd: self.sample(self.options.etcd_pid, "etcd")?.cpu_s,
        })
    }

    fn footprint(&self, operator: Option<&OperatorProcess>) -> anyhow::Result<Value> {
        let sample = |s: ProcessSample| json!({"rss_mib": s.rss_mib, "hwm_mib": s.hwm_mib, "cpu_s": s.cpu_s});
        let operator = match operator {
            Some(operator) => sample(operator.sample()?),
            None => Value::Null,
        };
        Ok(json!({
            "operator": operator,
            "emulator": sample(self.sample(self.options.emulator_pid, "emulator")?),
            "kube_apiserver": sample(self.sample(self.options.apiserver_pid, "kube-apiserver")?),
            "etcd": sample(self.sample(self.options.etcd_pid, "etcd")?),
        }))
    }

    async fn operator_metrics(&self) -> anyhow::Result<Sample> {
        let text = self
            .http
            .get(&self.options.metrics_url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(metrics::parse(&text, &metrics::OPERATOR_METRICS))
    }

    async fn apiserver_metrics(&self) -> anyhow::Result<Sample> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = self.client.request_text(request).await?;
        Ok(metrics::parse(&text, &metrics::APISERVER_REQUESTS))
    }

    /// The start of a phase: the emulator's request log cleared, the counters and CPU sampled.
    async fn start_phase(&self, operator: &OperatorProcess) -> anyhow::Result<Phase> {
        self.emulator.clear_requests().await;
        Ok(Phase {
            operator: self.operator_metrics().await?,
            apiserver: self.apiserver_metrics().await?,
            cpu: self.cpu(operator)?,
            started: Instant::now(),
        })
    }

    /// What moved since `start`. `operator_cpu_before` is CPU an earlier operator process spent in the phase
    /// (a restart), added to the running one's.
    async fn end_phase(
        &self,
        start: &Phase,
        operator: &OperatorProcess,
        operator_cpu_before: Option<f64>,
    ) -> anyhow::Result<PhaseDelta> {
        let operator_raw = metrics::delta(&start.operator, &self.operator_metrics().await?);
        let apiserver = metrics::delta(&start.apiserver, &self.apiserver_metrics().await?);
        let now = self.cpu(operator)?;
        let operator_cpu = match operator_cpu_before {
            Some(before) => before + now.operator,
            None => now.operator - start.cpu.operator,
        };
        let seconds = start.started.elapsed().as_secs_f64();
        Ok(PhaseDelta {
            operator: operator_json(&operator_raw),
            operator_raw,
            apiserver_writes: metrics::apiserver_writes(&apiserver),
            cpu: cpu_json(
                operator_cpu,
                now.apiserver - start.cpu.apiserver,
                now.etcd - start.cpu.etcd,
                seconds,
            ),
        })
    }

    /// Waits until the emulator's request counts stop moving for `quiet` (at most `bound`); returns the wait.
    async fn wait_quiet(&self, quiet: Duration, bound: Duration) -> f64 {
        let start = Instant::now();
        let mut last = self.emulator.requests().await.counts;
        let mut last_change = Instant::now();
        while start.elapsed() < bound {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.emulator.requests().await.counts;
            if now != last {
                last = now;
                last_change = Instant::now();
            } else if last_change.elapsed() >= quiet {
                break;
            }
        }
        start.elapsed().as_secs_f64()
    }

    /// `resourceVersion` of every object of kind `K` in the bench namespaces (one list per namespace, twice a
    /// window: before and after).
    async fn resource_versions<K>(&self) -> anyhow::Result<BTreeMap<String, String>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let mut versions = BTreeMap::new();
        for namespace in &self.namespaces {
            let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
            for object in api.list(&ListParams::default()).await? {
                versions.insert(
                    format!("{namespace}/{}", object.name_any()),
                    object.resource_version().unwrap_or_default(),
                );
            }
        }
        Ok(versions)
    }

    async fn all_resource_versions(&self) -> anyhow::Result<[BTreeMap<String, String>; 3]> {
        Ok([
            self.resource_versions::<StreamingConnection>().await?,
            self.resource_versions::<ConfigMap>().await?,
            self.resource_versions::<Event>().await?,
        ])
    }

    /// Applies the namespaces and one Secret in each, then the objects, `concurrency` server-side applies
    /// in flight.
    async fn apply_all(
        client: Client,
        namespaces: Vec<String>,
        objects: usize,
        concurrency: usize,
    ) -> anyhow::Result<()> {
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        let api: Api<Namespace> = Api::all(client.clone());
        for namespace in &namespaces {
            let object =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
            api.patch(namespace, &apply, &Patch::Apply(&object)).await?;
            put_secret(
                &client,
                namespace,
                "aep-credentials",
                aep_emulator::DEMO_CLIENT_SECRET,
            )
            .await;
        }
        futures::stream::iter(0..objects)
            .map(|index| {
                let namespace = &namespaces[index % namespaces.len()];
                let name = format!("conn-{index:05}");
                // Only what a user writes: the defaults and the status belong to others.
                let object = json!({
                    "apiVersion": StreamingConnection::api_version(&()),
                    "kind": StreamingConnection::kind(&()),
                    "metadata": {"name": name, "namespace": namespace, "labels": {"bench": "aep"}},
                    "spec": {"sandbox": "prod", "credentialsRef": {"name": "aep-credentials"}},
                });
                let api: Api<StreamingConnection> = Api::namespaced(client.clone(), namespace);
                let apply = apply.clone();
                async move {
                    api.patch(&name, &apply, &Patch::Apply(&object)).await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect::<()>()
            .await
    }
}

/// The operator's Flow Service settings, read from its own command line with its own parser (so that a
/// default that changes in the operator changes here too).
struct FlowSettings {
    qps: f64,
    reconciles: u16,
    /// Requests in flight at once in the Flow client (not a flag: the client's default).
    client_concurrency: usize,
    resync: Duration,
}

fn flow_settings(operator_args: &[String]) -> anyhow::Result<FlowSettings> {
    let cli = Cli::try_parse_from(
        std::iter::once("aep-streaming-operator").chain(operator_args.iter().map(String::as_str)),
    )
    .context("the operator's arguments do not parse")?;
    let Command::Run(args) = cli.into_command() else {
        bail!("the operator's arguments must run the operator");
    };
    Ok(FlowSettings {
        qps: args.flow_service_qps,
        reconciles: args.max_concurrent_reconciles,
        client_concurrency: aep_flow::FlowClientConfig::default().max_concurrency,
        resync: args.resync_interval,
    })
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("the admin kubeconfig (KUBECONFIG)")?;
    let namespaces: Vec<String> = (0..options.namespaces)
        .map(|i| format!("bench-{i}"))
        .collect();
    let bench = Bench {
        emulator: EmulatorAdmin::new(&options.emulator_url),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        client,
        namespaces,
        options,
    };
    let result = measure(&bench).await?;
    let text = report::text(&result);
    let mut result = result;
    result["summary_text"] = json!(text);
    std::fs::write(
        &bench.options.out,
        serde_json::to_string_pretty(&result)? + "\n",
    )
    .with_context(|| format!("writing {}", bench.options.out.display()))?;
    println!("{text}");
    println!("\n(JSON: {})", bench.options.out.display());
    Ok(())
}

fn load() -> Value {
    json!({"loadavg": metrics::loadavg(), "compiler_processes": metrics::busy_compilers()})
}

fn distribution(values: &[f64], digits: i32) -> Value {
    if values.is_empty() {
        return json!({"p50": null, "p95": null, "max": null, "mean": null});
    }
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    json!({
        "p50": round(metrics::percentile(values, 50), digits),
        "p95": round(metrics::percentile(values, 95), digits),
        "max": round(max, digits),
        "mean": round(mean, digits),
    })
}

fn per_object(count: u64, n: usize) -> f64 {
    round(count as f64 / n as f64, 2)
}

fn per_object_map(counts: &BTreeMap<String, u64>, n: usize) -> BTreeMap<String, f64> {
    counts
        .iter()
        .map(|(k, v)| (k.clone(), per_object(*v, n)))
        .collect()
}

fn rv_changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Value {
    json!({
        "changed": before.iter().filter(|(k, v)| after.get(*k).is_some_and(|a| a != *v)).count(),
        "created": after.keys().filter(|k| !before.contains_key(*k)).count(),
        "deleted": before.keys().filter(|k| !after.contains_key(*k)).count(),
        "objects": after.len(),
    })
}

fn operator_json(delta: &Sample) -> Value {
    let summary = metrics::summarize_operator(delta);
    json!({
        "reconciles_total": summary.reconciles,
        "flow_requests_total": summary.flow_requests,
        "reconcile_mean_s": summary.reconcile_mean_s,
        "flow_request_mean_s": summary.flow_request_mean_s,
    })
}

/// CPU seconds per process over a phase, and the share of one core each used.
fn cpu_json(operator: f64, apiserver: f64, etcd: f64, seconds: f64) -> Value {
    let cores = |cpu: f64| round(cpu / seconds.max(0.001), 2);
    json!({
        "seconds": round(seconds, 1),
        "operator_s": round(operator, 2), "kube_apiserver_s": round(apiserver, 2), "etcd_s": round(etcd, 2),
        "operator_cores": cores(operator), "kube_apiserver_cores": cores(apiserver), "etcd_cores": cores(etcd),
    })
}

/// `False/Creating: 3`-style counts of why objects are not Ready.
fn not_ready_reasons(seen: &Seen) -> BTreeMap<String, usize> {
    let mut reasons = BTreeMap::new();
    for object in seen.current.values().filter(|o| !is_ready(o)) {
        let ready = object
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        let reason = ready.map_or("no Ready condition".to_owned(), |c| {
            format!("{}/{}", c.status, c.reason)
        });
        *reasons.entry(reason).or_default() += 1;
    }
    reasons
}

/// Flow Service requests (from the emulator's counts) whose method is one of `verbs`.
fn flow_count(flow: &BTreeMap<String, u64>, verbs: &[&str]) -> u64 {
    flow.iter()
        .filter(|(k, _)| verbs.contains(&k.split(' ').next().unwrap_or("")))
        .map(|(_, v)| v)
        .sum()
}

/// Writes to the resources the operator writes (a quiet window has none).
fn writes_to_operator_resources(writes: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    writes
        .iter()
        .filter(|(k, _)| {
            let resource = k
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            matches!(
                resource,
                "streamingconnections" | "configmaps" | "events" | "secrets"
            )
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

async fn measure(bench: &Bench) -> anyhow::Result<Value> {
    let options = &bench.options;
    let n = options.objects;
    let flow = flow_settings(&options.operator_args)?;
    let steady = options.steady.unwrap_or(flow.resync.mul_f64(1.2));
    let restart_window = options.restart_window.unwrap_or(flow.resync);
    let (cpus, model, mem, kernel) = metrics::machine();
    let apiserver = bench
        .client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .ok();
    let command = OperatorCommand {
        binary: options.operator_bin.clone(),
        args: options.operator_args.clone(),
        kubeconfig: options.operator_kubeconfig.clone(),
        log: options.operator_log.clone(),
        pid_file: options.operator_pid_file.clone(),
        readyz_url: options.metrics_url.trim_end_matches("/metrics").to_owned() + "/readyz",
    };
    // The flags that matter, without the URLs and ports of this run.
    let shown_flags: Vec<&str> = {
        let mut shown = Vec::new();
        let mut args = options.operator_args.iter().skip(1).peekable();
        while let Some(arg) = args.next() {
            let value = args.next_if(|v| !v.starts_with("--"));
            if matches!(
                arg.as_str(),
                "--platform-url" | "--ims-url" | "--metrics-addr"
            ) {
                continue;
            }
            shown.push(arg.as_str());
            shown.extend(value.map(String::as_str));
        }
        shown
    };
    let mut result = json!({
        "when": k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second)?.to_string(),
        "machine": {"cpus": cpus, "cpu_model": model, "mem_total_gib": mem, "kernel": kernel,
                    "kube_apiserver": apiserver},
        "config": {
            "objects": n, "namespaces": options.namespaces, "secrets": options.namespaces,
            "client_concurrency": options.client_concurrency,
            "resync_interval_s": flow.resync.as_secs_f64(), "steady_window_s": steady.as_secs_f64(),
            "restart_window_s": restart_window.as_secs_f64(),
            "operator_flags": shown_flags.join(" "),
            "flow_service_qps": flow.qps, "max_concurrent_reconciles": flow.reconciles,
            "flow_client_max_concurrency": flow.client_concurrency,
            "build": "release", "revision": options.revision,
            "emulator_flags": options.emulator_flags,
        },
        "load": {"start": load()},
    });

    log(&format!(
        "starting the operator: {}",
        options.operator_args.join(" ")
    ));
    let (mut operator, start_s) = command.start(&bench.http, Duration::from_secs(60)).await?;
    result["operator_start_s"] = json!(round(start_s, 2));
    result["footprint"] = json!({"idle_before_create": bench.footprint(Some(&operator))?});
    let mut peak_rss_mib: f64 = 0.0;

    // ------------------------------------------------------------------------------------------- create
    let phase = bench.start_phase(&operator).await?;
    log(&format!(
        "create: applying {n} StreamingConnections in {} namespaces ({} server-side applies in flight)",
        options.namespaces, options.client_concurrency
    ));
    let t0 = Instant::now();
    let seen = watch(bench.client.clone(), bench.namespaces.clone(), t0).await;
    let t0_offset = t0.elapsed().as_secs_f64();
    let sampler = Sampler::start(bench.http.clone(), options.metrics_url.clone(), false);
    let apply = tokio::spawn(Bench::apply_all(
        bench.client.clone(),
        bench.namespaces.clone(),
        n,
        options.client_concurrency,
    ));
    let mut apply = Some(apply);
    let mut apply_s = None;
    let mut last_report = 0.0;
    let all_ready_s = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let elapsed = t0.elapsed().as_secs_f64() - t0_offset;
        if apply.as_ref().is_some_and(|a| a.is_finished()) {
            apply.take().unwrap().await?.context("the apply failed")?;
            apply_s = Some(elapsed);
        }
        bench.check_alive(&operator)?;
        let (created, ready, last_ready) = {
            let seen = seen.lock().unwrap();
            let last = seen.ready.values().copied().fold(0.0, f64::max);
            (seen.current.len(), seen.ready.len(), last)
        };
        if ready == n {
            break last_ready - t0_offset;
        }
        if elapsed > options.ready_timeout.as_secs_f64() {
            bail!(
                "only {ready}/{n} Ready after {:.0}s ({created} created, apply {}); not Ready: {:?}; see {}",
                options.ready_timeout.as_secs_f64(),
                if apply_s.is_none() { "running" } else { "done" },
                not_ready_reasons(&seen.lock().unwrap()),
                options.operator_log.display()
            );
        }
        if elapsed - last_report >= 10.0 {
            log(&format!(
                "create: {created} created, {ready} Ready after {elapsed:.1}s"
            ));
            last_report = elapsed;
        }
    };
    let apply_s = match (apply_s, apply) {
        (Some(s), _) => s,
        (None, Some(apply)) => {
            // Every object is Ready, so the apply is about to return.
            apply.await?.context("the apply failed")?;
            t0.elapsed().as_secs_f64() - t0_offset
        }
        (None, None) => unreachable!("the apply either finished or is still running"),
    };
    log(&format!(
        "create: all {n} Ready after {all_ready_s:.1}s (apply took {apply_s:.1}s)"
    ));
    result["footprint"]["after_create"] = bench.footprint(Some(&operator))?;
    let (watched, seen_ready, api_ttr, fractional) = {
        let seen = seen.lock().unwrap();
        let watched: Vec<f64> = seen
            .ready
            .iter()
            .filter_map(|(k, r)| Some(r - seen.first.get(k)?))
            .collect();
        let seen_ready: Vec<f64> = seen.ready.values().map(|r| r - t0_offset).collect();
        let mut fractional = false;
        let mut api_ttr = Vec::new();
        for object in seen.current.values() {
            let created = object.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let ready = object
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.last_transition_time.0);
            if let (Some(created), Some(ready)) = (created, ready) {
                fractional |= created.subsec_nanosecond() != 0 || ready.subsec_nanosecond() != 0;
                api_ttr.push(ready.duration_since(created).as_secs_f64());
            }
        }
        (watched, seen_ready, api_ttr, fractional)
    };

    // The Flow calls of the create are those made until all are Ready: later ones may already be the first
    // objects' resync reads (at the defaults, 10 qps, the create takes about as long as a short resync).
    let counts = metrics::emulator_counts(&bench.emulator.requests().await);
    let flow_total: u64 = counts.flow.values().sum();
    // Trailing reconciles (triggered by the operator's own status and ConfigMap writes) are charged to
    // the create phase's Kubernetes writes, so that the steady window starts quiet; the wait is bounded by a
    // quarter of the resync interval, as resync reads may come after that.
    let settle_s = bench
        .wait_quiet(options.quiet, options.quiet_bound.min(flow.resync / 4))
        .await;
    let create_rate = sampler.finish();
    let delta = bench.end_phase(&phase, &operator, None).await?;
    let trailing = metrics::emulator_counts(&bench.emulator.requests().await);
    let trailing_flow: BTreeMap<String, u64> = trailing
        .flow
        .iter()
        .map(|(k, v)| (k.clone(), v - counts.flow.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let operator_writes = metrics::operator_writes(&delta.apiserver_writes);
    let mut ttr = distribution(&api_ttr, 2);
    ttr["source"] = json!(format!(
        "creationTimestamp -> Ready.lastTransitionTime{}",
        if fractional {
            ""
        } else {
            " (whole-second timestamps)"
        }
    ));
    let mut ttr_watch = distribution(&watched, 3);
    ttr_watch["source"] =
        json!("watch: first event of the object -> first event with Ready=True (ms resolution)");
    ttr_watch["objects"] = json!(watched.len());
    let mut seen_after_apply = distribution(&seen_ready, 2);
    seen_after_apply["source"] =
        json!("watch: first event with Ready=True, from the start of the apply");
    let flow_latency_s = metrics::summarize_operator(&delta.operator_raw).flow_request_mean_s;
    result["create"] = json!({
        "apply_s": round(apply_s, 2),
        "all_ready_s": round(all_ready_s, 2),
        "throughput_objects_per_s": round(n as f64 / all_ready_s, 2),
        "time_to_ready_s": ttr,
        "time_to_ready_watch_s": ttr_watch,
        "ready_after_apply_returned_s": round(all_ready_s - apply_s, 2),
        "seen_ready_after_apply_s": seen_after_apply,
        "settle_after_ready_s": round(settle_s, 1),
        "flow_requests_after_all_ready": trailing_flow,
        "flow_requests": counts.flow,
        "flow_requests_total": flow_total,
        "flow_requests_per_object": per_object(flow_total, n),
        "flow_requests_per_object_by_route": per_object_map(&counts.flow, n),
        "flow_calls_per_second": create_rate,
        "ims_token_requests": counts.ims_token_requests,
        "operator": delta.operator,
        "apiserver_writes": delta.apiserver_writes,
        "operator_k8s_writes": operator_writes,
        "operator_k8s_writes_per_object": per_object(operator_writes.values().sum(), n),
        "operator_k8s_writes_per_object_by_kind": per_object_map(&operator_writes, n),
        "cpu": delta.cpu,
        "operator_cpu_ms_per_object": round(delta.cpu["operator_s"].as_f64().unwrap_or(0.0) * 1000.0 / n as f64, 1),
    });
    result["load"]["create"] = load();

    // ------------------------------------------------------------------------------------------- steady
    let rv_before = bench.all_resource_versions().await?;
    let phase = bench.start_phase(&operator).await?;
    log(&format!(
        "steady: watching for {:.0}s (resync interval {:.0}s)",
        steady.as_secs_f64(),
        flow.resync.as_secs_f64()
    ));
    let sampler = Sampler::start(bench.http.clone(), options.metrics_url.clone(), false);
    let t_steady = Instant::now();
    tokio::time::sleep(steady).await;
    let window = t_steady.elapsed().as_secs_f64();
    let steady_rate = sampler.finish();
    let counts = metrics::emulator_counts(&bench.emulator.requests().await);
    let delta = bench.end_phase(&phase, &operator, None).await?;
    let rv_after = bench.all_resource_versions().await?;
    result["footprint"]["after_steady"] = bench.footprint(Some(&operator))?;
    let resyncs = window / flow.resync.as_secs_f64();
    let gets = flow_count(&counts.flow, &["GET"]);
    let to_operator_resources = writes_to_operator_resources(&delta.apiserver_writes);
    let operator_resource_writes: u64 = to_operator_resources.values().sum();
    result["steady"] = json!({
        "window_s": round(window, 1),
        "resync_intervals_in_window": round(resyncs, 2),
        "flow_requests": counts.flow,
        "flow_gets": gets,
        "flow_writes": flow_count(&counts.flow, &["POST", "PATCH", "PUT", "DELETE"]),
        "flow_gets_per_object": per_object(gets, n),
        "flow_gets_per_object_per_resync": round(gets as f64 / n as f64 / resyncs, 2),
        "flow_calls_per_second": steady_rate,
        "ims_token_requests": counts.ims_token_requests,
        "k8s_resource_version_changes": {
            "streamingconnections": rv_changes(&rv_before[0], &rv_after[0]),
            "configmaps": rv_changes(&rv_before[1], &rv_after[1]),
            "events": rv_changes(&rv_before[2], &rv_after[2]),
        },
        "apiserver_writes": delta.apiserver_writes,
        "apiserver_writes_to_operator_resources": to_operator_resources,
        "k8s_writes_per_object_per_resync": round(operator_resource_writes as f64 / n as f64 / resyncs, 3),
        "operator": delta.operator,
        "cpu": delta.cpu,
    });
    result["load"]["steady"] = load();

    // ------------------------------------------------------------------------------------------- restart
    let rv_before = bench.all_resource_versions().await?;
    let phase = bench.start_phase(&operator).await?;
    let lost_before = seen.lock().unwrap().lost_ready;
    log(&format!(
        "restart: SIGTERM to the operator, start it again, watch {:.0}s",
        restart_window.as_secs_f64()
    ));
    let (last, stop_s) = operator.stop().await?;
    peak_rss_mib = peak_rss_mib.max(last.hwm_mib);
    let cpu_of_first = last.cpu_s - phase.cpu.operator;
    // The new process's counters start at 0: its whole count belongs to this phase.
    let sampler = Sampler::start(bench.http.clone(), options.metrics_url.clone(), true);
    let t_restart = Instant::now();
    let (restarted, start_s) = command.start(&bench.http, Duration::from_secs(60)).await?;
    operator = restarted;
    let phase = Phase {
        operator: Sample::new(),
        ..phase
    };
    tokio::time::sleep(restart_window.saturating_sub(t_restart.elapsed())).await;
    let restart_rate = sampler.finish();
    let counts = metrics::emulator_counts(&bench.emulator.requests().await);
    let delta = bench
        .end_phase(&phase, &operator, Some(cpu_of_first))
        .await?;
    let rv_after = bench.all_resource_versions().await?;
    let gets = flow_count(&counts.flow, &["GET"]);
    let to_operator_resources = writes_to_operator_resources(&delta.apiserver_writes);
    let (not_ready, lost) = {
        let seen = seen.lock().unwrap();
        (
            seen.current.values().filter(|o| !is_ready(o)).count(),
            seen.lost_ready - lost_before,
        )
    };
    result["restart"] = json!({
        "stop_s": round(stop_s, 2),
        "start_until_ready_s": round(start_s, 2),
        "window_s": round(t_restart.elapsed().as_secs_f64(), 1),
        "flow_requests": counts.flow,
        "flow_gets": gets,
        "flow_gets_per_object": per_object(gets, n),
        "flow_writes": flow_count(&counts.flow, &["POST", "PATCH", "PUT", "DELETE"]),
        "flow_calls_per_second": restart_rate,
        "ims_token_requests": counts.ims_token_requests,
        "k8s_resource_version_changes": {
            "streamingconnections": rv_changes(&rv_before[0], &rv_after[0]),
            "configmaps": rv_changes(&rv_before[1], &rv_after[1]),
            "events": rv_changes(&rv_before[2], &rv_after[2]),
        },
        "apiserver_writes": delta.apiserver_writes,
        "apiserver_writes_to_operator_resources": to_operator_resources,
        "objects_not_ready_at_end": not_ready,
        "ready_lost": lost,
        "operator": delta.operator,
        "cpu": delta.cpu,
    });
    result["footprint"]["after_restart"] = bench.footprint(Some(&operator))?;
    result["load"]["restart"] = load();

    // ------------------------------------------------------------------------------------------- delete
    let phase = bench.start_phase(&operator).await?;
    log(&format!("delete: deleting all {n} StreamingConnections"));
    let t0 = Instant::now();
    let names: Vec<String> = seen.lock().unwrap().current.keys().cloned().collect();
    futures::stream::iter(names)
        .map(|key| async move {
            let (namespace, name) = key.split_once('/').unwrap_or_default();
            let api: Api<StreamingConnection> = Api::namespaced(bench.client.clone(), namespace);
            api.delete(name, &DeleteParams::default()).await?;
            anyhow::Ok(())
        })
        .buffer_unordered(options.client_concurrency.max(1))
        .try_collect::<()>()
        .await?;
    let deletes_sent_s = t0.elapsed().as_secs_f64();
    let mut last_check = Instant::now() - Duration::from_secs(1);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        bench.check_alive(&operator)?;
        let left = seen.lock().unwrap().current.len();
        if left == 0 && last_check.elapsed() >= Duration::from_millis(250) {
            last_check = Instant::now();
            let emulator_left = bench.emulator.connections().await.len();
            if emulator_left == 0 {
                break;
            }
            if t0.elapsed() > options.delete_timeout {
                bail!(
                    "after {:.0}s the emulator still holds {emulator_left} connections; see {}",
                    options.delete_timeout.as_secs_f64(),
                    options.operator_log.display()
                );
            }
        } else if t0.elapsed() > options.delete_timeout {
            bail!(
                "after {:.0}s {left} StreamingConnections remain; see {}",
                options.delete_timeout.as_secs_f64(),
                options.operator_log.display()
            );
        }
    }
    let delete_s = t0.elapsed().as_secs_f64();
    log(&format!("delete: all gone after {delete_s:.1}s"));
    bench
        .wait_quiet(Duration::from_secs(2), Duration::from_secs(15))
        .await;
    let counts = metrics::emulator_counts(&bench.emulator.requests().await);
    let delta = bench.end_phase(&phase, &operator, None).await?;
    result["delete"] = json!({
        "deletes_sent_s": round(deletes_sent_s, 2),
        "all_gone_s": round(delete_s, 2),
        "throughput_objects_per_s": round(n as f64 / delete_s, 2),
        "flow_requests": counts.flow,
        "flow_requests_per_object": per_object(counts.flow.values().sum(), n),
        "ims_token_requests": counts.ims_token_requests,
        "operator": delta.operator,
        "apiserver_writes": delta.apiserver_writes,
        "cpu": delta.cpu,
        "emulator_connections_left": 0,
    });
    result["footprint"]["after_delete"] = bench.footprint(Some(&operator))?;
    let (last, _) = operator.stop().await?;
    std::fs::remove_file(&options.operator_pid_file).ok();
    peak_rss_mib = peak_rss_mib.max(last.hwm_mib);
    result["operator_peak_rss_mib"] = json!(peak_rss_mib);
    result["load"]["delete"] = load();

    // ------------------------------------------------------------------------------------------- baseline
    let plan = baseline::Plan::new(&operator_writes, n);
    log(&format!(
        "baseline: no operator; creating {n} objects in {} (untimed), then {} writes, {} objects in flight",
        baseline::NAMESPACE,
        plan.total(),
        flow.reconciles
    ));
    baseline::prepare(&bench.client, n, options.client_concurrency).await?;
    let apiserver_before = bench.apiserver_metrics().await?;
    let cpu_before = (
        bench.sample(options.apiserver_pid, "kube-apiserver")?.cpu_s,
        bench.sample(options.etcd_pid, "etcd")?.cpu_s,
    );
    let baseline_s = baseline::run(&bench.client, &plan, usize::from(flow.reconciles)).await?;
    let cpu_after = (
        bench.sample(options.apiserver_pid, "kube-apiserver")?.cpu_s,
        bench.sample(options.etcd_pid, "etcd")?.cpu_s,
    );
    let writes = metrics::apiserver_writes(&metrics::delta(
        &apiserver_before,
        &bench.apiserver_metrics().await?,
    ));
    log(&format!(
        "baseline: {} writes in {baseline_s:.1}s",
        plan.total()
    ));
    result["baseline"] = json!({
        "what": "the create phase's operator writes (2xx), as many of each, on N StreamingConnections made beforehand; \
                 no operator running; unthrottled client, --max-concurrent-reconciles objects in flight, each object's writes in order",
        "writes_planned": plan.total(),
        "repeated": plan.repeated,
        "skipped": plan.skipped,
        "workers": flow.reconciles,
        "seconds": round(baseline_s, 2),
        "writes_per_s": round(plan.total() as f64 / baseline_s.max(0.001), 1),
        "apiserver_writes": writes,
        "cpu": cpu_json(0.0, cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1, baseline_s),
    });

    // ------------------------------------------------------------------------------------------- ratios
    // The Flow lower bound: k calls per create, each taking L, at most C at once and Q per second.
    let k = flow_total as f64 / n as f64;
    let latency = flow_latency_s.unwrap_or(0.0);
    let concurrency = f64::from(flow.reconciles).min(flow.client_concurrency as f64);
    let by_latency = n as f64 * k * latency / concurrency.max(1.0);
    let by_qps = if flow.qps > 0.0 {
        n as f64 * k / flow.qps
    } else {
        0.0
    };
    let lower_bound = by_latency.max(by_qps);
    result["bounds"] = json!({
        "formula": "max(N*k*L/C, N*k/Q)",
        "k_flow_calls_per_create": round(k, 2),
        "l_mean_flow_latency_s": round(latency, 4),
        "c_concurrency": concurrency,
        "q_qps": flow.qps,
        "flow_lower_bound_s": round(lower_bound, 2),
        "api_baseline_s": round(baseline_s, 2),
        "all_ready_s": round(all_ready_s, 2),
        "ratio_to_flow_lower_bound": (lower_bound > 0.0).then(|| round(all_ready_s / lower_bound, 2)),
        "ratio_to_api_baseline": (baseline_s > 0.0).then(|| round(all_ready_s / baseline_s, 2)),
    });
    result["load"]["end"] = load();
    Ok(result)
}
