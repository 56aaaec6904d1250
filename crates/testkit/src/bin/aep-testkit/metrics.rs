//! What the benchmark reads besides the API: Prometheus text (the operator's `/metrics`, kube-apiserver's
//! `apiserver_request_total`), the emulator's request counts, and `/proc` (memory, CPU, load, the machine).

use std::collections::BTreeMap;

use aep_testkit::admin::{IMS_TOKEN_ROUTE, RequestLog};

/// A sample of Prometheus counters: (metric name, sorted labels) → value.
pub type Sample = BTreeMap<(String, Vec<(String, String)>), f64>;

/// The samples of the metrics named in `wanted`, from Prometheus text format.
pub fn parse(text: &str, wanted: &[&str]) -> Sample {
    let mut sample = Sample::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !wanted.contains(&name) {
            continue;
        }
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(after) => match after.find("} ").or_else(|| after.rfind('}')) {
                Some(close) => (parse_labels(&after[..close]), &after[close + 1..]),
                None => continue,
            },
            None => (Vec::new(), &line[name_end..]),
        };
        if let Some(Ok(value)) = rest.split_whitespace().next().map(str::parse::<f64>) {
            sample.insert((name.to_owned(), labels), value);
        }
    }
    sample
}

/// `a="1",b="x\"y"` → sorted pairs.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let key = key.trim_start_matches([',', ' ']).to_owned();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key, value));
    }
    labels.sort();
    labels
}

/// `after - before`, without the counters that did not move.
pub fn delta(before: &Sample, after: &Sample) -> Sample {
    after
        .iter()
        .map(|(key, value)| (key.clone(), value - before.get(key).copied().unwrap_or(0.0)))
        .filter(|(_, value)| *value != 0.0)
        .collect()
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// The operator's metrics the benchmark reads.
pub const OPERATOR_METRICS: [&str; 6] = [
    "aep_operator_reconciles_total",
    "aep_operator_flow_requests_total",
    "aep_operator_reconcile_duration_seconds_sum",
    "aep_operator_reconcile_duration_seconds_count",
    "aep_operator_flow_request_duration_seconds_sum",
    "aep_operator_flow_request_duration_seconds_count",
];

/// kube-apiserver's request counter.
pub const APISERVER_REQUESTS: [&str; 1] = ["apiserver_request_total"];

/// The operator's counters over a phase.
pub struct OperatorDelta {
    pub reconciles: BTreeMap<String, u64>,
    pub flow_requests: BTreeMap<String, u64>,
    pub reconcile_mean_s: Option<f64>,
    /// The mean Flow Service (and IMS) request duration as the operator's client measured it, answer
    /// included: the L of the Flow lower bound.
    pub flow_request_mean_s: Option<f64>,
}

/// Reconciles by result, Flow requests by operation and outcome, and the mean reconcile duration.
pub fn summarize_operator(delta: &Sample) -> OperatorDelta {
    let mut summary = OperatorDelta {
        reconciles: BTreeMap::new(),
        flow_requests: BTreeMap::new(),
        reconcile_mean_s: None,
        flow_request_mean_s: None,
    };
    let (mut sum, mut count) = (0.0, 0.0);
    let (mut flow_sum, mut flow_count) = (0.0, 0.0);
    for ((name, labels), value) in delta {
        match name.as_str() {
            "aep_operator_reconciles_total" => {
                *summary
                    .reconciles
                    .entry(label(labels, "result").to_owned())
                    .or_default() += *value as u64;
            }
            "aep_operator_flow_requests_total" => {
                let key = format!(
                    "{} {}",
                    label(labels, "operation"),
                    label(labels, "outcome")
                );
                *summary.flow_requests.entry(key).or_default() += *value as u64;
            }
            "aep_operator_reconcile_duration_seconds_sum" => sum += value,
            "aep_operator_reconcile_duration_seconds_count" => count += value,
            "aep_operator_flow_request_duration_seconds_sum" => flow_sum += value,
            "aep_operator_flow_request_duration_seconds_count" => flow_count += value,
            _ => {}
        }
    }
    if count > 0.0 {
        summary.reconcile_mean_s = Some(round(sum / count, 4));
    }
    if flow_count > 0.0 {
        summary.flow_request_mean_s = Some(round(flow_sum / flow_count, 5));
    }
    summary
}

const WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// Write requests seen by kube-apiserver (any client), keyed `VERB resource[/subresource]`, with the code
/// appended when it is not 2xx.
pub fn apiserver_writes(delta: &Sample) -> BTreeMap<String, u64> {
    let mut writes = BTreeMap::new();
    for ((_, labels), value) in delta {
        let verb = label(labels, "verb");
        if !WRITE_VERBS.contains(&verb) {
            continue;
        }
        let mut key = format!("{verb} {}", label(labels, "resource"));
        let subresource = label(labels, "subresource");
        if !subresource.is_empty() {
            key = format!("{key}/{subresource}");
        }
        let code = label(labels, "code");
        if !code.starts_with('2') {
            key = format!("{key} ({code})");
        }
        *writes.entry(key).or_default() += *value as u64;
    }
    writes
}

/// The writes only the operator makes: finalizer PATCHes of StreamingConnections, status applies, ConfigMap
/// applies, Events. The benchmark's own apply is `APPLY streamingconnections` without subresource, namespaces
/// and secrets; the control plane writes serviceaccounts and leases.
pub fn operator_writes(writes: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    writes
        .iter()
        .filter(|(key, _)| {
            let mut words = key.split_whitespace();
            let (verb, resource) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            matches!(
                resource,
                "streamingconnections/status" | "configmaps" | "events"
            ) || (resource == "streamingconnections" && verb != "APPLY")
        })
        .map(|(key, value)| (key.clone(), *value))
        .collect()
}

/// The emulator's request counts of a phase: Flow Service by `METHOD route status` (route without the Flow
/// prefix), IMS token requests, and anything else.
pub struct EmulatorCounts {
    pub flow: BTreeMap<String, u64>,
    pub ims_token_requests: u64,
}

const FLOW_PREFIX: &str = "/data/foundation/flowservice";

/// Splits the request log's counts into Flow Service and IMS.
pub fn emulator_counts(log: &RequestLog) -> EmulatorCounts {
    let mut counts = EmulatorCounts {
        flow: BTreeMap::new(),
        ims_token_requests: 0,
    };
    for count in &log.counts {
        if count.route == IMS_TOKEN_ROUTE {
            counts.ims_token_requests += count.count;
        } else if let Some(route) = count.route.strip_prefix(FLOW_PREFIX) {
            let key = format!("{} {route} {}", count.method, count.status);
            *counts.flow.entry(key).or_default() += count.count;
        }
    }
    counts
}

/// `VmRSS` and `VmHWM` in MiB and CPU seconds (utime + stime) of a live process; `None` once it is gone.
#[derive(Clone, Copy)]
pub struct ProcessSample {
    pub rss_mib: f64,
    pub hwm_mib: f64,
    pub cpu_s: f64,
}

/// Samples `/proc/<pid>`; `None` for a process that exited (a zombie included).
pub fn process(pid: u32) -> Option<ProcessSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rss = 0.0;
    let mut hwm = 0.0;
    for line in status.lines() {
        let (key, value) = line.split_once(':')?;
        let first = value.split_whitespace().next().unwrap_or("");
        match key {
            "State" if matches!(first, "Z" | "X") => return None,
            "VmRSS" => rss = first.parse::<f64>().ok()? / 1024.0,
            "VmHWM" => hwm = first.parse::<f64>().ok()? / 1024.0,
            _ => {}
        }
    }
    // The fields after the ")" that closes comm: state is field 3, utime 14, stime 15 (1-based).
    let rest: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: f64 = rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
    Some(ProcessSample {
        rss_mib: round(rss, 1),
        hwm_mib: round(hwm, 1),
        cpu_s: round(ticks / clock_ticks(), 2),
    })
}

/// USER_HZ: 100 on every Linux architecture the project runs on (`getconf CLK_TCK`), asked without libc.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// How many compiler processes run right now (others may be building on the same cores).
pub fn busy_compilers() -> usize {
    const NAMES: [&str; 10] = [
        "rustc", "cargo", "go", "compile", "link", "cc1", "cc1plus", "ld", "ld.lld", "mold",
    ];
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .filter(|comm| NAMES.contains(&comm.trim()))
                .count()
        })
        .unwrap_or(0)
}

/// Cores, CPU model, memory and kernel.
pub fn machine() -> (usize, String, f64, String) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    (
        std::thread::available_parallelism().map_or(0, usize::from),
        model,
        round(mem_kib / 1024.0 / 1024.0, 1),
        kernel.trim().to_owned(),
    )
}

/// `value` rounded to `digits` decimals.
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Nearest-rank percentile (`p` in 0..=100) of a non-empty list.
pub fn percentile(values: &[f64], p: usize) -> f64 {
    let mut ordered = values.to_vec();
    ordered.sort_by(f64::total_cmp);
    let rank = (ordered.len() * p).div_ceil(100).max(1);
    ordered[rank - 1]
}
