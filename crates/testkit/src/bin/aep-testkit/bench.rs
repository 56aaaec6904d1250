//! The benchmark's measuring half: create N StreamingConnections in one apply and time them to Ready with a
//! watch, count the Flow Service and Kubernetes requests of each phase, watch a steady resync window, delete
//! everything, and sample memory and CPU. It prints figures and never asserts on timing: it fails only when
//! something does not happen at all within its bound. `tools/bench.sh` starts (and stops) what it measures.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aep_streaming_operator::api::StreamingConnection;
use aep_streaming_operator::cli::parse_duration;
use aep_testkit::admin::EmulatorAdmin;
use aep_testkit::cluster::{is_ready, put_secret};
use anyhow::{Context as _, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::metrics::{self, ProcessSample, Sample, round};
use crate::report;

const FIELD_MANAGER: &str = "aep-bench";

/// `aep-testkit bench`: what to create and what to measure.
#[derive(clap::Args)]
pub struct Options {
    /// Number of StreamingConnections.
    #[arg(long)]
    objects: usize,
    /// Spread round-robin over `bench-0` … `bench-<n-1>`, with one credentials Secret each.
    #[arg(long, default_value_t = 4)]
    namespaces: usize,
    /// The emulator's base URL.
    #[arg(long)]
    emulator_url: String,
    /// The operator's metrics URL.
    #[arg(long)]
    metrics_url: String,
    #[arg(long)]
    operator_pid: u32,
    #[arg(long)]
    emulator_pid: u32,
    /// The operator's flags, as reported.
    #[arg(long, default_value = "")]
    operator_flags: String,
    /// The commit measured, as reported.
    #[arg(long, default_value = "")]
    revision: String,
    /// Extra emulator flags, as reported.
    #[arg(long, default_value = "")]
    emulator_flags: String,
    /// The operator's resync interval (`30s`, `2m`).
    #[arg(long, value_parser = parse_duration)]
    resync: Duration,
    /// The steady-state window; default the resync interval + 20 %.
    #[arg(long, value_parser = parse_duration)]
    steady: Option<Duration>,
    /// Settle: no emulator request for this long after all are Ready.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    quiet: Duration,
    /// At most this long to settle.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    quiet_bound: Duration,
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    ready_timeout: Duration,
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    delete_timeout: Duration,
    /// Where the logs are, for error messages.
    #[arg(long)]
    workdir: PathBuf,
    /// The JSON result.
    #[arg(long)]
    out: PathBuf,
}

fn log(message: &str) {
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

/// What the watch saw of each bench object, in seconds after the apply started.
#[derive(Default)]
struct Seen {
    first: HashMap<String, f64>,
    ready: HashMap<String, f64>,
    /// The latest version of every object that exists.
    current: HashMap<String, StreamingConnection>,
}

fn key(object: &StreamingConnection) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Watches every StreamingConnection and stamps each event on arrival (ms resolution, where the API's own
/// timestamps have whole seconds). Resolves once the initial list is in.
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
                    if is_ready(&object) {
                        seen.ready.entry(key.clone()).or_insert(now);
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

/// The counters at the start of a phase.
struct Phase {
    operator: Sample,
    apiserver: Sample,
    cpu_s: f64,
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
                "the {name} (pid {pid}) is gone; see {}/{name}.log",
                self.options.workdir.display()
            )
        })
    }

    fn check_alive(&self) -> anyhow::Result<()> {
        self.sample(self.options.operator_pid, "operator")?;
        self.sample(self.options.emulator_pid, "emulator")?;
        Ok(())
    }

    fn cpu(&self) -> anyhow::Result<f64> {
        Ok(self.sample(self.options.operator_pid, "operator")?.cpu_s)
    }

    fn footprint(&self) -> anyhow::Result<Value> {
        let sample = |s: ProcessSample| json!({"rss_mib": s.rss_mib, "hwm_mib": s.hwm_mib, "cpu_s": s.cpu_s});
        Ok(json!({
            "operator": sample(self.sample(self.options.operator_pid, "operator")?),
            "emulator": sample(self.sample(self.options.emulator_pid, "emulator")?),
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

    /// The start of a phase: the emulator's request log cleared, the counters and the operator's CPU sampled.
    async fn start_phase(&self) -> anyhow::Result<Phase> {
        self.emulator.clear_requests().await;
        Ok(Phase {
            operator: self.operator_metrics().await?,
            apiserver: self.apiserver_metrics().await?,
            cpu_s: self.cpu()?,
        })
    }

    /// What moved since `start`: the operator's counters, kube-apiserver's writes, the operator's CPU.
    async fn end_phase(
        &self,
        start: &Phase,
    ) -> anyhow::Result<(Value, BTreeMap<String, u64>, f64)> {
        let operator = metrics::delta(&start.operator, &self.operator_metrics().await?);
        let apiserver = metrics::delta(&start.apiserver, &self.apiserver_metrics().await?);
        Ok((
            operator_json(&operator),
            metrics::apiserver_writes(&apiserver),
            self.cpu()? - start.cpu_s,
        ))
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

    /// `resourceVersion` of every object of kind `K` in the bench namespaces.
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

    /// Applies the namespaces, one Secret in each, then the objects, one server-side apply after the other
    /// (as `kubectl apply --server-side -f` does).
    async fn apply_all(
        client: Client,
        namespaces: Vec<String>,
        objects: usize,
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
        for index in 0..objects {
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
            api.patch(&name, &apply, &Patch::Apply(&object)).await?;
        }
        Ok(())
    }
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

async fn measure(bench: &Bench) -> anyhow::Result<Value> {
    let options = &bench.options;
    let n = options.objects;
    let steady = options.steady.unwrap_or(options.resync.mul_f64(1.2));
    let (cpus, model, mem, kernel) = metrics::machine();
    let apiserver = bench
        .client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .ok();
    let mut result = json!({
        "when": k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second)?.to_string(),
        "machine": {"cpus": cpus, "cpu_model": model, "mem_total_gib": mem, "kernel": kernel,
                    "kube_apiserver": apiserver},
        "config": {
            "objects": n, "namespaces": options.namespaces, "secrets": options.namespaces,
            "resync_interval_s": options.resync.as_secs_f64(), "steady_window_s": steady.as_secs_f64(),
            "operator_flags": options.operator_flags, "build": "release", "revision": options.revision,
            "emulator_flags": options.emulator_flags,
        },
        "load": {"start": load()},
        "footprint": {"idle_before_create": bench.footprint()?},
    });

    // ------------------------------------------------------------------------------------------- create
    let phase = bench.start_phase().await?;
    log(&format!(
        "create: applying {n} StreamingConnections in {} namespaces (server-side, one after the other)",
        options.namespaces
    ));
    let t0 = Instant::now();
    let seen = watch(bench.client.clone(), bench.namespaces.clone(), t0).await;
    let t0_offset = t0.elapsed().as_secs_f64();
    let apply = tokio::spawn(Bench::apply_all(
        bench.client.clone(),
        bench.namespaces.clone(),
        n,
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
        bench.check_alive()?;
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
                "only {ready}/{n} Ready after {:.0}s ({created} created, apply {}); not Ready: {:?}; see {}/operator.log",
                options.ready_timeout.as_secs_f64(),
                if apply_s.is_none() { "running" } else { "done" },
                not_ready_reasons(&seen.lock().unwrap()),
                options.workdir.display()
            );
        }
        if elapsed - last_report >= 5.0 {
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
    result["footprint"]["after_create"] = bench.footprint()?;
    let cpu_create = bench.cpu()? - phase.cpu_s;
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

    // Trailing reconciles (triggered by the operator's own status and ConfigMap writes) are charged to
    // the create phase, so that the steady window starts quiet.
    let settle_s = bench.wait_quiet(options.quiet, options.quiet_bound).await;
    let (operator, writes, _) = bench.end_phase(&phase).await?;
    let counts = metrics::emulator_counts(&bench.emulator.requests().await);
    let flow_total: u64 = counts.flow.values().sum();
    let operator_writes = metrics::operator_writes(&writes);
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
    result["create"] = json!({
        "apply_s": round(apply_s, 2),
        "all_ready_s": round(all_ready_s, 2),
        "throughput_objects_per_s": round(n as f64 / all_ready_s, 2),
        "time_to_ready_s": ttr,
        "time_to_ready_watch_s": ttr_watch,
        "ready_after_apply_returned_s": round(all_ready_s - apply_s, 2),
        "seen_ready_after_apply_s": seen_after_apply,
        "settle_after_ready_s": round(settle_s, 1),
        "flow_requests": counts.flow,
        "flow_requests_total": flow_total,
        "flow_requests_per_object": per_object(flow_total, n),
        "flow_requests_per_object_by_route":
            counts.flow.iter().map(|(k, v)| (k.clone(), per_object(*v, n))).collect::<BTreeMap<_, _>>(),
        "ims_token_requests": counts.ims_token_requests,
        "operator": operator,
        "apiserver_writes": writes,
        "operator_k8s_writes": operator_writes,
        "operator_k8s_writes_per_object": per_object(operator_writes.values().sum(), n),
        "operator_cpu_s": round(cpu_create, 2),
        "operator_cpu_ms_per_object": round(cpu_create * 1000.0 / n as f64, 1),
    });
    result["load"]["create"] = load();

    // ------------------------------------------------------------------------------------------- steady
    let rv_before = bench.all_resource_versions().await?;
    let phase = bench.start_phase().await?;
    log(&format!(
        "steady: watching for {:.0}s (resync interval {:.0}s)",
        steady.as_secs_f64(),
        options.resync.as_secs_f64()
    ));
    let t_steady = Instant::now();
    tokio::time::sleep(steady).await;
    let window = t_steady.elapsed().as_secs_f64();
    let counts = metrics::emulator_counts(&bench.emulator.requests().await);
    let (operator, writes, cpu_s) = bench.end_phase(&phase).await?;
    let rv_after = bench.all_resource_versions().await?;
    result["footprint"]["after_steady"] = bench.footprint()?;
    let resyncs = window / options.resync.as_secs_f64();
    let flow_count = |verbs: &[&str]| -> u64 {
        counts
            .flow
            .iter()
            .filter(|(k, _)| verbs.contains(&k.split(' ').next().unwrap_or("")))
            .map(|(_, v)| v)
            .sum()
    };
    let gets = flow_count(&["GET"]);
    let to_operator_resources: BTreeMap<_, _> = writes
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
        .collect();
    result["steady"] = json!({
        "window_s": round(window, 1),
        "resync_intervals_in_window": round(resyncs, 2),
        "flow_requests": counts.flow,
        "flow_gets": gets,
        "flow_writes": flow_count(&["POST", "PATCH", "PUT", "DELETE"]),
        "flow_gets_per_object": per_object(gets, n),
        "flow_gets_per_object_per_resync": round(gets as f64 / n as f64 / resyncs, 2),
        "ims_token_requests": counts.ims_token_requests,
        "k8s_resource_version_changes": {
            "streamingconnections": rv_changes(&rv_before[0], &rv_after[0]),
            "configmaps": rv_changes(&rv_before[1], &rv_after[1]),
            "events": rv_changes(&rv_before[2], &rv_after[2]),
        },
        "apiserver_writes": writes,
        "apiserver_writes_to_operator_resources": to_operator_resources,
        "operator": operator,
        "operator_cpu_s": round(cpu_s, 2),
    });
    result["load"]["steady"] = load();

    // ------------------------------------------------------------------------------------------- delete
    let phase = bench.start_phase().await?;
    log(&format!("delete: deleting all {n} StreamingConnections"));
    let t0 = Instant::now();
    let names: Vec<String> = seen.lock().unwrap().current.keys().cloned().collect();
    for key in names {
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        let api: Api<StreamingConnection> = Api::namespaced(bench.client.clone(), namespace);
        api.delete(name, &DeleteParams::default()).await?;
    }
    let mut last_check = Instant::now() - Duration::from_secs(1);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        bench.check_alive()?;
        let left = seen.lock().unwrap().current.len();
        if left == 0 && last_check.elapsed() >= Duration::from_millis(250) {
            last_check = Instant::now();
            let emulator_left = bench.emulator.connections().await.len();
            if emulator_left == 0 {
                break;
            }
            if t0.elapsed() > options.delete_timeout {
                bail!(
                    "after {:.0}s the emulator still holds {emulator_left} connections; see {}/operator.log",
                    options.delete_timeout.as_secs_f64(),
                    options.workdir.display()
                );
            }
        } else if t0.elapsed() > options.delete_timeout {
            bail!(
                "after {:.0}s {left} StreamingConnections remain; see {}/operator.log",
                options.delete_timeout.as_secs_f64(),
                options.workdir.display()
            );
        }
    }
    let delete_s = t0.elapsed().as_secs_f64();
    log(&format!("delete: all gone after {delete_s:.1}s"));
    bench
        .wait_quiet(Duration::from_secs(2), Duration::from_secs(15))
        .await;
    let counts = metrics::emulator_counts(&bench.emulator.requests().await);
    let (operator, writes, cpu_s) = bench.end_phase(&phase).await?;
    result["delete"] = json!({
        "all_gone_s": round(delete_s, 2),
        "throughput_objects_per_s": round(n as f64 / delete_s, 2),
        "flow_requests": counts.flow,
        "flow_requests_per_object": per_object(counts.flow.values().sum(), n),
        "ims_token_requests": counts.ims_token_requests,
        "operator": operator,
        "apiserver_writes": writes,
        "operator_cpu_s": round(cpu_s, 2),
        "emulator_connections_left": 0,
    });
    result["footprint"]["after_delete"] = bench.footprint()?;
    result["load"]["end"] = load();
    Ok(result)
}
