//! The benchmark's printed table, from its JSON result.

use serde_json::Value;

/// `a: 1, b: 2`, or `none`.
fn counts(value: &Value) -> String {
    match value.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", plain(v)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".to_owned(),
    }
}

/// A JSON value as text, strings without their quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

/// `operator 1.2 s, kube-apiserver 3.4 s, etcd 0.5 s (0.8 / 1.1 / 0.2 cores)`.
fn cpu(value: &Value) -> String {
    format!(
        "operator {} s, kube-apiserver {} s, etcd {} s over {} s ({} / {} / {} cores)",
        value["operator_s"],
        value["kube_apiserver_s"],
        value["etcd_s"],
        value["seconds"],
        value["operator_cores"],
        value["kube_apiserver_cores"],
        value["etcd_cores"]
    )
}

/// The per-second Flow call rate of a window in one line, and the series in tens of seconds.
fn rate(value: &Value) -> String {
    format!(
        "{} calls: peak {}/s, median {}/s, mean {}/s; {} of them in the first 10 % of the window; half by {} s, 90 % by {} s",
        value["flow_calls"],
        value["peak_per_s"],
        value["median_per_s"],
        value["mean_per_s"],
        value["share_in_first_tenth"],
        plain(&value["half_done_after_s"]),
        plain(&value["ninety_percent_done_after_s"])
    )
}

/// The per-second series summed per 10 s, e.g. `[120 80 0 3 …]`.
fn rate_series(value: &Value) -> String {
    let series: Vec<f64> = value["per_second"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let sums: Vec<String> = series
        .chunks(10)
        .map(|chunk| format!("{:.0}", chunk.iter().sum::<f64>()))
        .collect();
    format!("[{}]", sums.join(" "))
}

/// The summary table of one size.
pub fn text(r: &Value) -> String {
    let (c, s, rs, d, b, bl, fp, cfg, m) = (
        &r["create"],
        &r["steady"],
        &r["restart"],
        &r["delete"],
        &r["bounds"],
        &r["baseline"],
        &r["footprint"],
        &r["config"],
        &r["machine"],
    );
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |name: &str, value: String| rows.push((name.to_owned(), value));
    row(
        "machine",
        format!(
            "{} cores ({}), {} GiB RAM, kernel {}",
            m["cpus"],
            plain(&m["cpu_model"]),
            m["mem_total_gib"],
            plain(&m["kernel"])
        ),
    );
    row(
        "load at start / end (1-min loadavg)",
        format!(
            "{} / {} (other cargo/rustc/go processes: {} / {})",
            r["load"]["start"]["loadavg"],
            r["load"]["end"]["loadavg"],
            r["load"]["start"]["compiler_processes"],
            r["load"]["end"]["compiler_processes"]
        ),
    );
    row(
        "objects",
        format!(
            "{} StreamingConnections in {} namespaces, {} Secrets; the bench's client keeps {} requests in flight",
            cfg["objects"], cfg["namespaces"], cfg["secrets"], cfg["client_concurrency"]
        ),
    );
    row(
        "operator",
        format!(
            "release build of {}, flags: {} (qps {}, {} concurrent reconciles, Flow client {} in flight)",
            plain(&cfg["revision"]),
            plain(&cfg["operator_flags"]),
            cfg["flow_service_qps"],
            cfg["max_concurrent_reconciles"],
            cfg["flow_client_max_concurrency"]
        ),
    );
    if cfg["emulator_flags"]
        .as_str()
        .is_some_and(|f| !f.is_empty())
    {
        row("emulator flags", plain(&cfg["emulator_flags"]));
    }

    row("", String::new());
    row("-- create (apply N -> all Ready)", String::new());
    row("server-side apply", format!("{} s", c["apply_s"]));
    row(
        "apply start -> all Ready",
        format!(
            "{} s ({} s after the apply returned)",
            c["all_ready_s"], c["ready_after_apply_returned_s"]
        ),
    );
    row(
        "Flow lower bound max(N*k*L/C, N*k/Q)",
        format!(
            "{} s (k = {}, L = {} s, C = {}, Q = {}/s)  -> all Ready / bound = {}",
            b["flow_lower_bound_s"],
            b["k_flow_calls_per_create"],
            b["l_mean_flow_latency_s"],
            b["c_concurrency"],
            b["q_qps"],
            plain(&b["ratio_to_flow_lower_bound"])
        ),
    );
    row(
        "API-server baseline (no operator)",
        format!(
            "{} s for {} writes ({} writes/s)  -> all Ready / baseline = {}",
            bl["seconds"],
            bl["writes_planned"],
            bl["writes_per_s"],
            plain(&b["ratio_to_api_baseline"])
        ),
    );
    row(
        "throughput",
        format!("{} objects/s", c["throughput_objects_per_s"]),
    );
    let t = &c["time_to_ready_watch_s"];
    row(
        "time-to-Ready p50 / p95 / max (watch)",
        format!(
            "{} / {} / {} s  (object's first watch event -> Ready)",
            t["p50"], t["p95"], t["max"]
        ),
    );
    let t = &c["time_to_ready_s"];
    row(
        "time-to-Ready p50 / p95 / max (API)",
        format!(
            "{} / {} / {} s  ({})",
            t["p50"],
            t["p95"],
            t["max"],
            plain(&t["source"])
        ),
    );
    row(
        "Flow Service requests until all Ready",
        format!(
            "{} = {} per object",
            c["flow_requests_total"], c["flow_requests_per_object"]
        ),
    );
    if let Some(flow) = c["flow_requests"].as_object() {
        for (k, v) in flow {
            row(
                &format!("  {k}"),
                format!(
                    "{v} ({} per object)",
                    c["flow_requests_per_object_by_route"][k]
                ),
            );
        }
    }
    row("Flow calls per second", rate(&c["flow_calls_per_second"]));
    row(
        "IMS token requests",
        format!(
            "{} (for {} Secrets)",
            c["ims_token_requests"], cfg["secrets"]
        ),
    );
    row(
        "operator reconciles_total",
        counts(&c["operator"]["reconciles_total"]),
    );
    row(
        "mean reconcile / Flow request duration",
        format!(
            "{} s / {} s",
            plain(&c["operator"]["reconcile_mean_s"]),
            plain(&c["operator"]["flow_request_mean_s"])
        ),
    );
    row(
        "Kubernetes writes by the operator",
        format!("{} per object", c["operator_k8s_writes_per_object"]),
    );
    if let Some(writes) = c["operator_k8s_writes"].as_object() {
        for (k, v) in writes {
            row(
                &format!("  {k}"),
                format!(
                    "{v} ({} per object)",
                    c["operator_k8s_writes_per_object_by_kind"][k]
                ),
            );
        }
    }
    row(
        "kube-apiserver writes (all clients)",
        counts(&c["apiserver_writes"]),
    );
    row("CPU", cpu(&c["cpu"]));
    row(
        "operator CPU per object",
        format!("{} ms", c["operator_cpu_ms_per_object"]),
    );
    row(
        "after all Ready: Flow requests until quiet",
        format!(
            "{} (quiet after {} s)",
            counts(&c["flow_requests_after_all_ready"]),
            c["settle_after_ready_s"]
        ),
    );

    row("", String::new());
    row(
        &format!(
            "-- steady state ({} s window = {} resync intervals of {} s)",
            s["window_s"], s["resync_intervals_in_window"], cfg["resync_interval_s"]
        ),
        String::new(),
    );
    row("Flow Service requests", counts(&s["flow_requests"]));
    row(
        "Flow GETs per object",
        format!(
            "{} in the window = {} per resync interval",
            s["flow_gets_per_object"], s["flow_gets_per_object_per_resync"]
        ),
    );
    row(
        "Flow writes (POST/PATCH/DELETE)",
        s["flow_writes"].to_string(),
    );
    row("Flow calls per second", rate(&s["flow_calls_per_second"]));
    row("  per 10 s", rate_series(&s["flow_calls_per_second"]));
    row("IMS token requests", s["ims_token_requests"].to_string());
    let rv = &s["k8s_resource_version_changes"];
    let changes: Vec<String> = ["streamingconnections", "configmaps", "events"]
        .iter()
        .map(|k| {
            let v = &rv[k];
            format!(
                "{k}: {} (+{} / -{} of {})",
                v["changed"], v["created"], v["deleted"], v["objects"]
            )
        })
        .collect();
    row("resourceVersion changes", changes.join(", "));
    row(
        "kube-apiserver writes to sconn/cm/events/secrets",
        format!(
            "{} = {} per object per resync  (0 expected)",
            counts(&s["apiserver_writes_to_operator_resources"]),
            s["k8s_writes_per_object_per_resync"]
        ),
    );
    row(
        "operator reconciles_total",
        counts(&s["operator"]["reconciles_total"]),
    );
    row("CPU", cpu(&s["cpu"]));

    row("", String::new());
    row(
        &format!(
            "-- operator restart (SIGTERM, start again, {} s window from the start)",
            rs["window_s"]
        ),
        String::new(),
    );
    row(
        "stop / start until /readyz",
        format!("{} s / {} s", rs["stop_s"], rs["start_until_ready_s"]),
    );
    row("Flow Service requests", counts(&rs["flow_requests"]));
    row(
        "Flow GETs per object",
        format!("{}", rs["flow_gets_per_object"]),
    );
    row("Flow calls per second", rate(&rs["flow_calls_per_second"]));
    row("  per 10 s", rate_series(&rs["flow_calls_per_second"]));
    row("IMS token requests", rs["ims_token_requests"].to_string());
    row(
        "kube-apiserver writes to sconn/cm/events/secrets",
        counts(&rs["apiserver_writes_to_operator_resources"]),
    );
    row(
        "objects not Ready at the end / Ready lost",
        format!("{} / {}", rs["objects_not_ready_at_end"], rs["ready_lost"]),
    );
    row("CPU", cpu(&rs["cpu"]));

    row("", String::new());
    row(
        "-- delete (delete every object -> no object, 0 connections in the emulator)",
        String::new(),
    );
    row(
        "delete -> all gone",
        format!(
            "{} s ({} objects/s; deletes sent in {} s)",
            d["all_gone_s"], d["throughput_objects_per_s"], d["deletes_sent_s"]
        ),
    );
    row(
        "Flow Service requests",
        format!(
            "{} ({} per object)",
            counts(&d["flow_requests"]),
            d["flow_requests_per_object"]
        ),
    );
    row(
        "operator reconciles_total",
        counts(&d["operator"]["reconciles_total"]),
    );
    row(
        "kube-apiserver writes (all clients)",
        counts(&d["apiserver_writes"]),
    );
    row("CPU", cpu(&d["cpu"]));

    row("", String::new());
    row(
        "-- API-server baseline (the create phase's operator writes, no operator running)",
        String::new(),
    );
    row(
        "writes",
        format!(
            "{} ({}; skipped: {}), {} objects in flight",
            bl["writes_planned"],
            counts(&bl["repeated"]),
            counts(&bl["skipped"]),
            bl["workers"]
        ),
    );
    row(
        "time",
        format!("{} s = {} writes/s", bl["seconds"], bl["writes_per_s"]),
    );
    row("CPU", cpu(&bl["cpu"]));

    row("", String::new());
    row(
        "-- footprint (RSS = VmRSS, peak = VmHWM, CPU = utime+stime since start)",
        String::new(),
    );
    row(
        "operator peak RSS (all its processes)",
        format!("{} MiB", r["operator_peak_rss_mib"]),
    );
    for label in [
        "idle_before_create",
        "after_create",
        "after_steady",
        "after_restart",
        "after_delete",
    ] {
        let (o, e, a) = (
            &fp[label]["operator"],
            &fp[label]["emulator"],
            &fp[label]["kube_apiserver"],
        );
        if o.is_null() {
            continue;
        }
        row(
            &label.replace('_', " "),
            format!(
                "operator RSS {} MiB, peak {} MiB, CPU {} s | emulator RSS {} MiB | kube-apiserver RSS {} MiB",
                o["rss_mib"], o["hwm_mib"], o["cpu_s"], e["rss_mib"], a["rss_mib"]
            ),
        );
    }

    let width = rows
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0)
        + 2;
    let mut lines = vec![
        format!(
            "aep-streaming-operator benchmark ({}, N={})",
            plain(&r["when"]),
            cfg["objects"]
        ),
        "=".repeat(100),
    ];
    for (k, v) in rows {
        lines.push(if v.is_empty() {
            k
        } else {
            format!("{k:<width$}{v}")
        });
    }
    lines.join("\n")
}

/// One figure of every size's result, `-` when missing.
fn cells(results: &[Value], pick: impl Fn(&Value) -> String) -> Vec<String> {
    results.iter().map(pick).collect()
}

/// The table over sizes, as Markdown (it reads as text too): one column per size.
pub fn table(results: &[Value]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, pick: &dyn Fn(&Value) -> String| {
        rows.push((name.to_owned(), cells(results, pick)));
    };
    let num = |v: &Value| plain(v);
    row("objects (N)", &|r| num(&r["config"]["objects"]));
    row("apply of the N objects (the bench's client)", &|r| {
        format!(
            "{} s ({} in flight)",
            num(&r["create"]["apply_s"]),
            num(&r["config"]["client_concurrency"])
        )
    });
    row("**apply start -> all Ready**", &|r| {
        format!("**{} s**", num(&r["create"]["all_ready_s"]))
    });
    row("Flow lower bound max(N·k·L/C, N·k/Q)", &|r| {
        format!("{} s", num(&r["bounds"]["flow_lower_bound_s"]))
    });
    row("**ratio to the Flow lower bound**", &|r| {
        format!("**{}**", num(&r["bounds"]["ratio_to_flow_lower_bound"]))
    });
    row("API-server baseline (same writes, no operator)", &|r| {
        format!(
            "{} s ({} writes)",
            num(&r["baseline"]["seconds"]),
            num(&r["baseline"]["writes_planned"])
        )
    });
    row("**ratio to the API-server baseline**", &|r| {
        format!("**{}**", num(&r["bounds"]["ratio_to_api_baseline"]))
    });
    row("time-to-Ready per object p50 / p95 (watch)", &|r| {
        let t = &r["create"]["time_to_ready_watch_s"];
        format!("{} / {} s", num(&t["p50"]), num(&t["p95"]))
    });
    row("Flow calls per create", &|r| {
        let c = &r["create"];
        let by_route: Vec<String> = c["flow_requests_per_object_by_route"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} ×{v}")).collect())
            .unwrap_or_default();
        format!(
            "{} ({})",
            num(&c["flow_requests_per_object"]),
            by_route.join(", ")
        )
    });
    row("Kubernetes writes per create (operator)", &|r| {
        let c = &r["create"];
        let by_kind: Vec<String> = c["operator_k8s_writes_per_object_by_kind"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} ×{v}")).collect())
            .unwrap_or_default();
        let events = c["operator_k8s_writes_per_object_by_kind"]["POST events"]
            .as_f64()
            .unwrap_or(0.0);
        let all = c["operator_k8s_writes_per_object"].as_f64().unwrap_or(0.0);
        format!(
            "{} + {events} event ({})",
            crate::metrics::round(all - events, 2),
            by_kind.join(", ")
        )
    });
    row("steady: Flow reads per object in the window", &|r| {
        format!(
            "{} in {} resync intervals ({} per interval)",
            num(&r["steady"]["flow_gets_per_object"]),
            num(&r["steady"]["resync_intervals_in_window"]),
            num(&r["steady"]["flow_gets_per_object_per_resync"])
        )
    });
    row(
        "steady: Flow writes; Kubernetes writes per object per resync",
        &|r| {
            format!(
                "{}; {}",
                num(&r["steady"]["flow_writes"]),
                num(&r["steady"]["k8s_writes_per_object_per_resync"])
            )
        },
    );
    row(
        "steady: Flow calls/s peak / median; share in first 10 %",
        &|r| {
            let s = &r["steady"]["flow_calls_per_second"];
            format!(
                "{} / {}; {}",
                num(&s["peak_per_s"]),
                num(&s["median_per_s"]),
                num(&s["share_in_first_tenth"])
            )
        },
    );
    row("restart: Flow GETs per object in the window", &|r| {
        num(&r["restart"]["flow_gets_per_object"])
    });
    row(
        "restart: Flow calls/s peak; share of the window's calls in its first 10 %",
        &|r| {
            let s = &r["restart"]["flow_calls_per_second"];
            format!(
                "{} / s; {} (window {} s)",
                num(&s["peak_per_s"]),
                num(&s["share_in_first_tenth"]),
                num(&s["window_s"])
            )
        },
    );
    row("restart: Flow calls per 10 s", &|r| {
        rate_series(&r["restart"]["flow_calls_per_second"])
    });
    row("steady: Flow calls per 10 s", &|r| {
        rate_series(&r["steady"]["flow_calls_per_second"])
    });
    row("restart: Kubernetes writes", &|r| {
        counts(&r["restart"]["apiserver_writes_to_operator_resources"])
    });
    row("**operator peak RSS**", &|r| {
        format!("**{} MiB**", num(&r["operator_peak_rss_mib"]))
    });
    row("CPU create: operator / kube-apiserver / etcd", &|r| {
        let c = &r["create"]["cpu"];
        format!(
            "{} / {} / {} s",
            num(&c["operator_s"]),
            num(&c["kube_apiserver_s"]),
            num(&c["etcd_s"])
        )
    });
    row("CPU steady: operator / kube-apiserver / etcd", &|r| {
        let c = &r["steady"]["cpu"];
        format!(
            "{} / {} / {} s",
            num(&c["operator_s"]),
            num(&c["kube_apiserver_s"]),
            num(&c["etcd_s"])
        )
    });
    row("CPU baseline: kube-apiserver / etcd", &|r| {
        let c = &r["baseline"]["cpu"];
        format!("{} / {} s", num(&c["kube_apiserver_s"]), num(&c["etcd_s"]))
    });
    row("delete -> all gone", &|r| {
        format!("{} s", num(&r["delete"]["all_gone_s"]))
    });
    row("load average start / end", &|r| {
        format!(
            "{} / {}",
            num(&r["load"]["start"]["loadavg"]),
            num(&r["load"]["end"]["loadavg"])
        )
    });

    let first = results.first().cloned().unwrap_or(Value::Null);
    // The resync interval differs per size (tools/bench.sh), so it is listed per size, not with the flags.
    let flags = plain(&first["config"]["operator_flags"]);
    let flags = match flags.split_once("--resync-interval") {
        Some((before, after)) => format!(
            "{}{}",
            before,
            after
                .trim_start()
                .split_once(' ')
                .map_or("", |(_, rest)| rest)
        ),
        None => flags,
    };
    let resyncs: Vec<String> = results
        .iter()
        .map(|r| format!("{} s", plain(&r["config"]["resync_interval_s"])))
        .collect();
    let mut lines = vec![
        format!(
            "operator {} (release), flags: {}; resync interval per size: {}",
            plain(&first["config"]["revision"]),
            if flags.trim().is_empty() {
                "the operator's defaults"
            } else {
                flags.trim()
            },
            resyncs.join(", ")
        ),
        String::new(),
    ];
    let header: Vec<String> = results
        .iter()
        .map(|r| format!("N = {}", plain(&r["config"]["objects"])))
        .collect();
    lines.push(format!("| | {} |", header.join(" | ")));
    lines.push(format!("| --- |{}", " --- |".repeat(results.len())));
    for (name, values) in rows {
        lines.push(format!("| {name} | {} |", values.join(" | ")));
    }
    lines.join("\n")
}
