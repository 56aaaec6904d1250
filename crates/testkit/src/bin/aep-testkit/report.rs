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

/// The summary table.
pub fn text(r: &Value) -> String {
    let (c, s, d, fp, cfg, m) = (
        &r["create"],
        &r["steady"],
        &r["delete"],
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
            "{} StreamingConnections in {} namespaces, {} Secrets",
            cfg["objects"], cfg["namespaces"], cfg["secrets"]
        ),
    );
    row(
        "operator",
        format!(
            "release build of {}, flags {}",
            plain(&cfg["revision"]),
            plain(&cfg["operator_flags"])
        ),
    );
    if cfg["emulator_flags"]
        .as_str()
        .is_some_and(|f| !f.is_empty())
    {
        row("emulator flags", plain(&cfg["emulator_flags"]));
    }

    row("", String::new());
    row("-- create (one apply -> all Ready)", String::new());
    row(
        "server-side apply (one client)",
        format!("{} s", c["apply_s"]),
    );
    row(
        "apply -> all Ready",
        format!(
            "{} s ({} s after the apply returned)",
            c["all_ready_s"], c["ready_after_apply_returned_s"]
        ),
    );
    row(
        "throughput",
        format!("{} objects/s", c["throughput_objects_per_s"]),
    );
    let t = &c["time_to_ready_s"];
    row(
        "time-to-Ready p50 / p95 / max",
        format!(
            "{} / {} / {} s  ({})",
            t["p50"],
            t["p95"],
            t["max"],
            plain(&t["source"])
        ),
    );
    let t = &c["time_to_ready_watch_s"];
    row(
        "time-to-Ready p50 / p95 / max (watch)",
        format!(
            "{} / {} / {} s  (object's first watch event -> Ready)",
            t["p50"], t["p95"], t["max"]
        ),
    );
    let t = &c["seen_ready_after_apply_s"];
    row(
        "seen Ready after apply p50 / p95",
        format!(
            "{} / {} s  (watch event, from the start of the apply)",
            t["p50"], t["p95"]
        ),
    );
    row(
        "Flow Service requests",
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
        "operator flow_requests_total",
        counts(&c["operator"]["flow_requests_total"]),
    );
    row(
        "mean reconcile duration",
        format!("{} s", plain(&c["operator"]["reconcile_mean_s"])),
    );
    row(
        "kube-apiserver writes (all clients)",
        counts(&c["apiserver_writes"]),
    );
    let operator_writes: u64 = c["operator_k8s_writes"]
        .as_object()
        .map_or(0, |w| w.values().filter_map(Value::as_u64).sum());
    row(
        "  of which by the operator",
        format!(
            "{operator_writes} = {} per object",
            c["operator_k8s_writes_per_object"]
        ),
    );
    row(
        "operator CPU",
        format!(
            "{} s = {} ms per object",
            c["operator_cpu_s"], c["operator_cpu_ms_per_object"]
        ),
    );
    row(
        "trailing requests settled after",
        format!("{} s", c["settle_after_ready_s"]),
    );

    row("", String::new());
    row(
        &format!(
            "-- steady state ({} s window = {} resync intervals)",
            s["window_s"], s["resync_intervals_in_window"]
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
            "{}  (0 expected)",
            counts(&s["apiserver_writes_to_operator_resources"])
        ),
    );
    row(
        "kube-apiserver writes (all clients)",
        counts(&s["apiserver_writes"]),
    );
    row(
        "operator reconciles_total",
        counts(&s["operator"]["reconciles_total"]),
    );
    row(
        "operator CPU in window",
        format!("{} s", s["operator_cpu_s"]),
    );

    row("", String::new());
    row(
        "-- delete (delete every object -> no object, 0 connections in the emulator)",
        String::new(),
    );
    row(
        "delete -> all gone",
        format!(
            "{} s ({} objects/s)",
            d["all_gone_s"], d["throughput_objects_per_s"]
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
    row("operator CPU", format!("{} s", d["operator_cpu_s"]));

    row("", String::new());
    row(
        "-- footprint (RSS = VmRSS, peak = VmHWM, CPU = utime+stime since start)",
        String::new(),
    );
    for label in [
        "idle_before_create",
        "after_create",
        "after_steady",
        "after_delete",
    ] {
        let (o, e) = (&fp[label]["operator"], &fp[label]["emulator"]);
        if o.is_null() {
            continue;
        }
        row(
            &label.replace('_', " "),
            format!(
                "operator RSS {} MiB, peak {} MiB, CPU {} s | emulator RSS {} MiB",
                o["rss_mib"], o["hwm_mib"], o["cpu_s"], e["rss_mib"]
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
