#!/usr/bin/env python3
"""Measuring half of tools/bench.sh (standard library only).

tools/bench.sh builds, starts the control plane, the emulator and the operator, and always stops them; this
helper drives the phases and prints the figures. It never asserts on timing: every number is reported, and it
fails only when something does not happen at all within its bound (objects never Ready, never deleted).

    bench.py freeports N          N distinct free loopback ports on one line
    bench.py run [options]        phases 2-7 of the benchmark (see docs/benchmark.md)

`run` uses the admin KUBECONFIG from the environment and the `kubectl` on PATH.
"""

import argparse
import codecs
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone

GROUP = "streaming.aep-operator.dev"
FLOW_PREFIX = "/data/foundation/flowservice"
IMS_ROUTE = "/ims/token/v3"
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ helpers
def kubectl(*args, timeout=60, check=True):
    try:
        proc = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"kubectl {' '.join(args)} did not answer within {timeout}s")
    if check and proc.returncode != 0:
        raise BenchError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def kubectl_json(*args, timeout=60):
    return json.loads(kubectl(*args, "-o", "json", timeout=timeout))


def http(method, url, timeout=30):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except OSError as error:
        raise BenchError(f"{method} {url}: {error}")
    return body.decode()


def http_json(method, url):
    return json.loads(http(method, url))


def parse_time(text):
    # metav1.Time is RFC 3339, normally whole seconds ("2026-01-01T10:00:00Z"); tolerate fractions.
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(rank) - 1]


def rnd(x, digits=3):
    return None if x is None else round(x, digits)


# --------------------------------------------------------------------------------------- process sampling
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid):
    """VmRSS / VmHWM (MiB) and CPU seconds (utime+stime) of a live process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "State" and value.split()[0] in ("Z", "X"):
            return None  # exited, not yet reaped
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024.0  # kB -> MiB
    # Fields after the ")" that closes comm: state is field 3, utime 14, stime 15 (1-based).
    rest = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(rest[11]), int(rest[12])
    return {
        "rss_mib": rnd(fields.get("VmRSS"), 1),
        "hwm_mib": rnd(fields.get("VmHWM"), 1),
        "cpu_s": rnd((utime + stime) / CLK_TCK, 2),
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def busy_compilers():
    """How many rustc / cargo / go / compile processes other than ours run right now (others may be building)."""
    names = {"rustc", "cargo", "go", "compile", "link", "cc1", "cc1plus", "ld", "ld.lld", "mold"}
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() in names:
                    count += 1
        except OSError:
            pass
    return count


def machine():
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_total_gib": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kubectl": kubectl_version(),
    }


def kubectl_version():
    try:
        return json.loads(kubectl("version", "--client", "-o", "json", timeout=20))["clientVersion"]["gitVersion"]
    except (BenchError, ValueError, KeyError):
        return None


# ------------------------------------------------------------------------------------------------ metrics
METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def prom_parse(text, wanted):
    """{(name, frozenset(labels)): value} for the metric names in `wanted`."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        if not m or m.group(1) not in wanted:
            continue
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return out


def prom_delta(before, after):
    keys = set(before) | set(after)
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys if after.get(k, 0.0) - before.get(k, 0.0)}


OPERATOR_METRICS = {
    "aep_operator_reconciles_total",
    "aep_operator_flow_requests_total",
    "aep_operator_reconcile_duration_seconds_sum",
    "aep_operator_reconcile_duration_seconds_count",
}


def operator_metrics(url):
    return prom_parse(http("GET", url), OPERATOR_METRICS)


def apiserver_metrics():
    return prom_parse(kubectl("get", "--raw", "/metrics", timeout=60), {"apiserver_request_total"})


def summarize_operator(delta):
    reconciles, flow = {}, {}
    duration_sum = duration_count = 0.0
    for (name, labels), value in delta.items():
        lab = dict(labels)
        if name == "aep_operator_reconciles_total":
            reconciles[lab.get("result", "?")] = int(value)
        elif name == "aep_operator_flow_requests_total":
            flow[f"{lab.get('operation', '?')} {lab.get('outcome', '?')}"] = int(value)
        elif name == "aep_operator_reconcile_duration_seconds_sum":
            duration_sum += value
        elif name == "aep_operator_reconcile_duration_seconds_count":
            duration_count += value
    return {
        "reconciles_total": dict(sorted(reconciles.items())),
        "flow_requests_total": dict(sorted(flow.items())),
        "reconcile_mean_s": rnd(duration_sum / duration_count, 4) if duration_count else None,
    }


def operator_writes(writes):
    """The writes only the operator makes: finalizer PATCHes of StreamingConnections, status applies,
    ConfigMap applies, Events (the benchmark's own apply is `APPLY streamingconnections` without subresource,
    namespaces and secrets; the control plane writes serviceaccounts and leases)."""
    out = {}
    for k, v in writes.items():
        verb, resource = k.split()[:2]
        if resource in ("streamingconnections/status", "configmaps", "events") or (
            resource == "streamingconnections" and verb != "APPLY"
        ):
            out[k] = v
    return out


def summarize_apiserver_writes(delta):
    """Write requests seen by kube-apiserver, keyed "VERB resource[/subresource]" (any client)."""
    writes = {}
    for (_, labels), value in delta.items():
        lab = dict(labels)
        if lab.get("verb") not in WRITE_VERBS:
            continue
        resource = lab.get("resource", "?") + ("/" + lab["subresource"] if lab.get("subresource") else "")
        code = lab.get("code", "")
        key = f"{lab['verb']} {resource}" + ("" if code.startswith("2") else f" ({code})")
        writes[key] = writes.get(key, 0) + int(value)
    return dict(sorted(writes.items()))


# ---------------------------------------------------------------------------------------------- emulator
def emulator_counts(base):
    data = http_json("GET", base + "/_emulator/requests")
    flow, ims, other = {}, 0, {}
    for c in data.get("counts", []):
        key = f"{c['method']} {c['route'].removeprefix(FLOW_PREFIX)} {c['status']}"
        if c["route"] == IMS_ROUTE:
            ims += c["count"]
        elif c["route"].startswith(FLOW_PREFIX):
            flow[key] = flow.get(key, 0) + c["count"]
        else:
            other[key] = other.get(key, 0) + c["count"]
    return {"flow": dict(sorted(flow.items())), "ims_token_requests": ims, "other": other}


def emulator_reset_counts(base):
    http("DELETE", base + "/_emulator/requests")


def emulator_connections(base):
    return len(http_json("GET", base + "/_emulator/state").get("connections", []))


def flow_total(counts):
    return sum(counts["flow"].values())


def wait_quiet(base, quiet_s, bound_s):
    """Wait until the emulator's request counts stop moving for quiet_s (at most bound_s). Returns seconds waited."""
    start = time.monotonic()
    last = json.dumps(emulator_counts(base), sort_keys=True)
    last_change = time.monotonic()
    while time.monotonic() - start < bound_s:
        time.sleep(0.5)
        now = json.dumps(emulator_counts(base), sort_keys=True)
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change >= quiet_s:
            break
    return time.monotonic() - start


# ------------------------------------------------------------------------------------------------ objects
def namespaces(n_ns):
    return [f"bench-{i}" for i in range(n_ns)]


def generate_yaml(n, n_ns):
    docs = []
    for ns in namespaces(n_ns):
        docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")
        docs.append(
            "apiVersion: v1\nkind: Secret\nmetadata:\n"
            f"  name: aep-credentials\n  namespace: {ns}\ntype: Opaque\nstringData:\n"
            "  clientId: demo-client\n  clientSecret: demo-secret\n"
            "  orgId: DEMO0000000000000000000@AdobeOrg\n"
        )
    for i in range(n):
        ns = namespaces(n_ns)[i % n_ns]
        docs.append(
            f"apiVersion: {GROUP}/v1alpha1\nkind: StreamingConnection\nmetadata:\n"
            f"  name: conn-{i:05d}\n  namespace: {ns}\n  labels: {{bench: aep}}\nspec:\n"
            "  sandbox: prod\n  credentialsRef: {name: aep-credentials}\n"
        )
    return "---\n".join(docs)


def is_ready(obj):
    gen = obj["metadata"].get("generation")
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True" and cond.get("observedGeneration") == gen, cond
    return False, None


def key(obj):
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def ours(obj, bench_ns):
    return obj["metadata"].get("namespace") in bench_ns


def resource_versions(kind, bench_ns):
    items = kubectl_json("get", kind, "-A")["items"]
    return {key(o): o["metadata"]["resourceVersion"] for o in items if ours(o, bench_ns)}


def rv_changes(before, after):
    changed = sum(1 for k in before if k in after and before[k] != after[k])
    return {
        "changed": changed,
        "created": sum(1 for k in after if k not in before),
        "deleted": sum(1 for k in before if k not in after),
        "objects": len(after),
    }


def not_ready_reasons(items):
    reasons = {}
    for o in items:
        ready, cond = is_ready(o)
        if not ready:
            r = f"{cond.get('status')}/{cond.get('reason')}" if cond else "no Ready condition"
            reasons[r] = reasons.get(r, 0) + 1
    return reasons


class Watcher:
    """`kubectl get sconn -A --watch -o json`, each object stamped on arrival: per-object time-to-Ready with
    millisecond resolution (the API's own timestamps have whole seconds)."""

    def __init__(self, bench_ns):
        self.bench_ns = bench_ns
        self.first, self.ready = {}, {}
        self.proc = self.thread = None
        self.error = None

    def start(self, t0):
        self.t0 = t0
        self.proc = subprocess.Popen(
            ["kubectl", "get", "sconn", "-A", "--watch", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _handle(self, obj, now):
        if obj.get("kind", "").endswith("List"):
            for item in obj.get("items") or []:
                self._handle(item, now)
            return
        if not ours(obj, self.bench_ns):
            return
        k = key(obj)
        self.first.setdefault(k, now)
        if is_ready(obj)[0]:
            self.ready.setdefault(k, now)

    def _read(self):
        decoder, text = json.JSONDecoder(), codecs.getincrementaldecoder("utf-8")()
        buf, fd = "", self.proc.stdout.fileno()
        try:
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                now = time.monotonic() - self.t0
                buf += text.decode(chunk)
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        obj, end = decoder.raw_decode(buf)
                    except ValueError:
                        break  # incomplete: wait for more
                    buf = buf[end:]
                    self._handle(obj, now)
        except Exception as error:  # reported, never fatal: the poll is the primary measurement
            self.error = repr(error)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.thread:
            self.thread.join(timeout=5)
        if self.proc and self.error is None and len(self.ready) == 0:
            err = self.proc.stderr.read().decode(errors="replace").strip()
            if err:
                self.error = err[-500:]


# ------------------------------------------------------------------------------------------------- phases
def run(args):
    bench_ns = set(namespaces(args.namespaces))
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "objects": args.objects,
            "namespaces": args.namespaces,
            "secrets": args.namespaces,
            "resync_interval_s": args.resync,
            "steady_window_s": args.steady,
            "poll_interval_s": args.poll,
            "operator_flags": args.operator_flags,
            "build": "release",
            "revision": args.revision,
            "emulator_flags": args.emulator_flags,
        },
        "load": {"start": {"loadavg": loadavg(), "compiler_processes": busy_compilers()}},
        "footprint": {},
    }
    op_pid, emu_pid, emu = args.operator_pid, args.emulator_pid, args.emulator_url

    def check_alive():
        for pid, name in ((op_pid, "operator"), (emu_pid, "emulator")):
            if proc_sample(pid) is None:
                raise BenchError(f"the {name} (pid {pid}) is gone; see {args.workdir}/{name}.log")

    def cpu():
        sample = proc_sample(op_pid)
        if sample is None:
            raise BenchError(f"the operator (pid {op_pid}) is gone; see {args.workdir}/operator.log")
        return sample["cpu_s"]

    def footprint(label):
        op, em = proc_sample(op_pid), proc_sample(emu_pid)
        if op is None:
            raise BenchError(f"the operator (pid {op_pid}) is gone; see {args.workdir}/operator.log")
        if em is None:
            raise BenchError(f"the emulator (pid {emu_pid}) is gone; see {args.workdir}/emulator.log")
        result["footprint"][label] = {"operator": op, "emulator": em}
        return op, em

    footprint("idle_before_create")

    # ---------------------------------------------------------------- phase 2: create
    yaml_path = os.path.join(args.workdir, "objects.yaml")
    with open(yaml_path, "w") as f:
        f.write(generate_yaml(args.objects, args.namespaces))
    emulator_reset_counts(emu)
    op_before, api_before = operator_metrics(args.metrics_url), apiserver_metrics()
    cpu_before = cpu()
    log(f"create: applying {args.objects} StreamingConnections in {args.namespaces} namespaces (one kubectl apply)")
    watcher = Watcher(bench_ns)
    t0 = time.monotonic()
    watcher.start(t0)
    apply = subprocess.Popen(
        ["kubectl", "apply", "--server-side", "-f", yaml_path],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    apply_s = None
    seen_ready = {}  # key -> seconds after t0 when a poll first saw it Ready
    polls, poll_time, last_report = 0, 0.0, 0.0
    items = []
    try:
        while True:
            tick = time.monotonic()
            if apply_s is None and apply.poll() is not None:
                apply_s = time.monotonic() - t0
                if apply.returncode != 0:
                    raise BenchError(f"kubectl apply failed ({apply.returncode}): {apply.stderr.read().strip()[-2000:]}")
            check_alive()
            items = [o for o in kubectl_json("get", "sconn", "-A")["items"] if ours(o, bench_ns)]
            polls += 1
            poll_time += time.monotonic() - tick
            elapsed = time.monotonic() - t0
            for o in items:
                if key(o) not in seen_ready and is_ready(o)[0]:
                    seen_ready[key(o)] = elapsed
            ready_now = sum(1 for o in items if is_ready(o)[0])
            if ready_now == args.objects and len(items) == args.objects:
                break
            if elapsed > args.ready_timeout:
                raise BenchError(
                    f"only {ready_now}/{args.objects} Ready after {args.ready_timeout:.0f}s ({len(items)} created, apply "
                    f"{'running' if apply_s is None else 'done'}); not Ready: {not_ready_reasons(items)}; "
                    f"see {args.workdir}/operator.log"
                )
            if elapsed - last_report >= 5:
                log(f"create: {len(items)} created, {ready_now} Ready after {elapsed:.1f}s")
                last_report = elapsed
            time.sleep(max(0.0, args.poll - (time.monotonic() - tick)))
        all_ready_s = time.monotonic() - t0
        if apply_s is None:  # all objects exist, so the apply is about to return
            apply.wait(timeout=60)
            apply_s = time.monotonic() - t0
            if apply.returncode != 0:
                raise BenchError(f"kubectl apply failed ({apply.returncode}): {apply.stderr.read().strip()[-2000:]}")
        # The watch may trail the poll by a few milliseconds.
        deadline = time.monotonic() + 10
        while len(watcher.ready) < args.objects and time.monotonic() < deadline and watcher.proc.poll() is None:
            time.sleep(0.1)
    finally:
        watcher.stop()
        if apply.poll() is None:
            apply.kill()
            apply.wait()
    log(f"create: all {args.objects} Ready after {all_ready_s:.1f}s ({polls} polls; apply took {apply_s:.1f}s)")
    footprint("after_create")
    cpu_create = cpu() - cpu_before
    watched = [watcher.ready[k] - watcher.first[k] for k in watcher.ready if k in watcher.first]

    # Per object, from the API's own timestamps (metav1.Time: whole seconds).
    ttr, fractional = [], False
    for o in items:
        _, cond = is_ready(o)
        created, ready_at = o["metadata"]["creationTimestamp"], cond["lastTransitionTime"]
        fractional |= "." in created or "." in ready_at
        ttr.append(parse_time(ready_at) - parse_time(created))
    seen = list(seen_ready.values())

    # Let trailing reconciles (triggered by the operator's own status and ConfigMap writes) finish, so that
    # the create phase is charged with all of them and the steady window starts quiet.
    settle_s = wait_quiet(emu, args.quiet, args.quiet_bound)
    op_after, api_after = operator_metrics(args.metrics_url), apiserver_metrics()
    counts = emulator_counts(emu)
    n = args.objects
    create_writes = summarize_apiserver_writes(prom_delta(api_before, api_after))
    result["create"] = {
        "apply_s": rnd(apply_s, 2),
        "all_ready_s": rnd(all_ready_s, 2),
        "throughput_objects_per_s": rnd(n / all_ready_s, 2),
        "time_to_ready_s": {
            "source": "creationTimestamp -> Ready.lastTransitionTime"
            + ("" if fractional else " (whole-second timestamps)"),
            "p50": rnd(percentile(ttr, 50), 2),
            "p95": rnd(percentile(ttr, 95), 2),
            "max": rnd(max(ttr), 2),
            "mean": rnd(statistics.fmean(ttr), 2),
        },
        "time_to_ready_watch_s": {
            "source": "watch: first event of the object -> first event with Ready=True (ms resolution)",
            "objects": len(watched),
            "error": watcher.error,
            "p50": rnd(percentile(watched, 50), 3) if watched else None,
            "p95": rnd(percentile(watched, 95), 3) if watched else None,
            "max": rnd(max(watched), 3) if watched else None,
            "mean": rnd(statistics.fmean(watched), 3) if watched else None,
        },
        "ready_after_apply_returned_s": rnd(all_ready_s - apply_s, 2),
        "seen_ready_after_apply_s": {
            "source": f"first poll that saw Ready (poll every {args.poll}s), from the start of kubectl apply",
            "p50": rnd(percentile(seen, 50), 2),
            "p95": rnd(percentile(seen, 95), 2),
            "max": rnd(max(seen), 2),
        },
        "polls": polls,
        "poll_mean_s": rnd(poll_time / polls, 3),
        "settle_after_ready_s": rnd(settle_s, 1),
        "flow_requests": counts["flow"],
        "flow_requests_total": flow_total(counts),
        "flow_requests_per_object": rnd(flow_total(counts) / n, 2),
        "flow_requests_per_object_by_route": {k: rnd(v / n, 2) for k, v in counts["flow"].items()},
        "ims_token_requests": counts["ims_token_requests"],
        "operator": summarize_operator(prom_delta(op_before, op_after)),
        "apiserver_writes": create_writes,
        "operator_k8s_writes": operator_writes(create_writes),
        "operator_k8s_writes_per_object": rnd(sum(operator_writes(create_writes).values()) / n, 2),
        "operator_cpu_s": rnd(cpu_create, 2),
        "operator_cpu_ms_per_object": rnd(cpu_create * 1000 / n, 1),
    }
    result["load"]["create"] = {"loadavg": loadavg(), "compiler_processes": busy_compilers()}

    # ---------------------------------------------------------------- phase 4: steady state
    emulator_reset_counts(emu)
    rv_before = {k: resource_versions(k, bench_ns) for k in ("sconn", "configmaps", "events.events.k8s.io")}
    op_before, api_before = operator_metrics(args.metrics_url), apiserver_metrics()
    cpu_before = cpu()
    log(f"steady: watching for {args.steady:.0f}s (resync interval {args.resync:.0f}s)")
    t_steady = time.monotonic()
    time.sleep(args.steady)
    window = time.monotonic() - t_steady
    counts = emulator_counts(emu)
    op_after, api_after = operator_metrics(args.metrics_url), apiserver_metrics()
    rv_after = {k: resource_versions(k, bench_ns) for k in rv_before}
    cpu_steady = cpu() - cpu_before
    footprint("after_steady")
    resyncs = window / args.resync
    gets = sum(v for k, v in counts["flow"].items() if k.startswith("GET "))
    writes = sum(v for k, v in counts["flow"].items() if k.split()[0] in ("POST", "PATCH", "PUT", "DELETE"))
    api_writes = summarize_apiserver_writes(prom_delta(api_before, api_after))
    result["steady"] = {
        "window_s": rnd(window, 1),
        "resync_intervals_in_window": rnd(resyncs, 2),
        "flow_requests": counts["flow"],
        "flow_gets": gets,
        "flow_writes": writes,
        "flow_gets_per_object": rnd(gets / n, 2),
        "flow_gets_per_object_per_resync": rnd(gets / n / resyncs, 2),
        "ims_token_requests": counts["ims_token_requests"],
        "k8s_resource_version_changes": {
            "streamingconnections": rv_changes(rv_before["sconn"], rv_after["sconn"]),
            "configmaps": rv_changes(rv_before["configmaps"], rv_after["configmaps"]),
            "events": rv_changes(rv_before["events.events.k8s.io"], rv_after["events.events.k8s.io"]),
        },
        "apiserver_writes": api_writes,
        "apiserver_writes_to_operator_resources": {
            k: v for k, v in api_writes.items()
            if k.split()[1].split("/")[0] in ("streamingconnections", "configmaps", "events", "secrets")
        },
        "operator": summarize_operator(prom_delta(op_before, op_after)),
        "operator_cpu_s": rnd(cpu_steady, 2),
    }
    result["load"]["steady"] = {"loadavg": loadavg(), "compiler_processes": busy_compilers()}

    # ---------------------------------------------------------------- phase 6: delete
    emulator_reset_counts(emu)
    op_before, api_before = operator_metrics(args.metrics_url), apiserver_metrics()
    cpu_before = cpu()
    log(f"delete: deleting all {n} StreamingConnections")
    t0 = time.monotonic()
    kubectl("delete", "sconn", "--all", "--all-namespaces", "--wait=false", timeout=max(120, n))
    left = emu_left = None
    while True:
        tick = time.monotonic()
        check_alive()
        left = sum(1 for o in kubectl_json("get", "sconn", "-A")["items"] if ours(o, bench_ns))
        emu_left = emulator_connections(emu)
        elapsed = time.monotonic() - t0
        if left == 0 and emu_left == 0:
            break
        if elapsed > args.delete_timeout:
            raise BenchError(
                f"after {args.delete_timeout:.0f}s {left} StreamingConnections remain and the emulator holds "
                f"{emu_left} connections; see {args.workdir}/operator.log"
            )
        time.sleep(max(0.0, args.poll - (time.monotonic() - tick)))
    delete_s = time.monotonic() - t0
    log(f"delete: all gone after {delete_s:.1f}s")
    settle_s = wait_quiet(emu, 2.0, 15)
    counts = emulator_counts(emu)
    result["delete"] = {
        "all_gone_s": rnd(delete_s, 2),
        "throughput_objects_per_s": rnd(n / delete_s, 2),
        "flow_requests": counts["flow"],
        "flow_requests_per_object": rnd(flow_total(counts) / n, 2),
        "ims_token_requests": counts["ims_token_requests"],
        "operator": summarize_operator(prom_delta(op_before, operator_metrics(args.metrics_url))),
        "apiserver_writes": summarize_apiserver_writes(prom_delta(api_before, apiserver_metrics())),
        "operator_cpu_s": rnd(cpu() - cpu_before, 2),
        "emulator_connections_left": emu_left,
    }
    footprint("after_delete")
    result["load"]["end"] = {"loadavg": loadavg(), "compiler_processes": busy_compilers()}
    return result


# ------------------------------------------------------------------------------------------------ report
def fmt_counts(d):
    return ", ".join(f"{k}: {v}" for k, v in d.items()) if d else "none"


def report(r):
    c, s, d, fp, cfg = r["create"], r["steady"], r["delete"], r["footprint"], r["config"]
    n = cfg["objects"]
    m = r["machine"]
    rows = []

    def section(title):
        rows.append(("", ""))
        rows.append((f"-- {title}", ""))

    def row(name, value):
        rows.append((name, str(value)))

    rows.append(("machine", f"{m['cpus']} cores ({m['cpu_model']}), {m['mem_total_gib']} GiB RAM, kernel {m['kernel']}"))
    row("load at start / end (1-min loadavg)",
        f"{r['load']['start']['loadavg'][0]} / {r['load']['end']['loadavg'][0]}"
        f" (other cargo/rustc/go processes: {r['load']['start']['compiler_processes']} / "
        f"{r['load']['end']['compiler_processes']})")
    row("objects", f"{n} StreamingConnections in {cfg['namespaces']} namespaces, {cfg['secrets']} Secrets")
    row("operator", f"release build of {cfg['revision'] or '?'}, flags {cfg['operator_flags']}")
    if cfg.get("emulator_flags"):
        row("emulator flags", cfg["emulator_flags"])

    section("create (one kubectl apply -> all Ready)")
    row("kubectl apply (server-side)", f"{c['apply_s']} s")
    row("apply -> all Ready", f"{c['all_ready_s']} s ({c['ready_after_apply_returned_s']} s after the apply returned)")
    row("throughput", f"{c['throughput_objects_per_s']} objects/s")
    t = c["time_to_ready_s"]
    row("time-to-Ready p50 / p95 / max", f"{t['p50']} / {t['p95']} / {t['max']} s  ({t['source']})")
    t = c["time_to_ready_watch_s"]
    row("time-to-Ready p50 / p95 / max (watch)", f"{t['p50']} / {t['p95']} / {t['max']} s  (object's first watch event -> Ready)")
    t = c["seen_ready_after_apply_s"]
    row("seen Ready after apply p50 / p95", f"{t['p50']} / {t['p95']} s  ({c['polls']} polls every "
        f"{cfg['poll_interval_s']} s, each kubectl get took {c['poll_mean_s']} s on average)")
    row("Flow Service requests", f"{c['flow_requests_total']} = {c['flow_requests_per_object']} per object")
    for k, v in c["flow_requests"].items():
        row(f"  {k}", f"{v} ({c['flow_requests_per_object_by_route'][k]} per object)")
    row("IMS token requests", f"{c['ims_token_requests']} (for {cfg['secrets']} Secrets)")
    row("operator reconciles_total", fmt_counts(c["operator"]["reconciles_total"]))
    row("operator flow_requests_total", fmt_counts(c["operator"]["flow_requests_total"]))
    row("mean reconcile duration", f"{c['operator']['reconcile_mean_s']} s")
    row("kube-apiserver writes (all clients)", fmt_counts(c["apiserver_writes"]))
    row("  of which by the operator", f"{sum(c['operator_k8s_writes'].values())} = "
        f"{c['operator_k8s_writes_per_object']} per object")
    row("operator CPU", f"{c['operator_cpu_s']} s = {c['operator_cpu_ms_per_object']} ms per object")
    row("trailing requests settled after", f"{c['settle_after_ready_s']} s")

    section(f"steady state ({s['window_s']} s window = {s['resync_intervals_in_window']} resync intervals)")
    row("Flow Service requests", fmt_counts(s["flow_requests"]))
    row("Flow GETs per object", f"{s['flow_gets_per_object']} in the window = "
        f"{s['flow_gets_per_object_per_resync']} per resync interval")
    row("Flow writes (POST/PATCH/DELETE)", s["flow_writes"])
    row("IMS token requests", s["ims_token_requests"])
    rv = s["k8s_resource_version_changes"]
    row("resourceVersion changes", ", ".join(
        f"{k}: {v['changed']} (+{v['created']} / -{v['deleted']} of {v['objects']})" for k, v in rv.items()))
    row("kube-apiserver writes to sconn/cm/events/secrets", fmt_counts(s["apiserver_writes_to_operator_resources"]) + "  (0 expected)")
    row("kube-apiserver writes (all clients)", fmt_counts(s["apiserver_writes"]))
    row("operator reconciles_total", fmt_counts(s["operator"]["reconciles_total"]))
    row("operator CPU in window", f"{s['operator_cpu_s']} s")

    section("delete (kubectl delete --all -> no object, 0 connections in the emulator)")
    row("delete -> all gone", f"{d['all_gone_s']} s ({d['throughput_objects_per_s']} objects/s)")
    row("Flow Service requests", fmt_counts(d["flow_requests"]) + f" ({d['flow_requests_per_object']} per object)")
    row("operator reconciles_total", fmt_counts(d["operator"]["reconciles_total"]))
    row("kube-apiserver writes (all clients)", fmt_counts(d["apiserver_writes"]))
    row("operator CPU", f"{d['operator_cpu_s']} s")

    section("footprint (RSS = VmRSS, peak = VmHWM, CPU = utime+stime since start)")
    for label in ("idle_before_create", "after_create", "after_steady", "after_delete"):
        if label in fp:
            o, e = fp[label]["operator"], fp[label]["emulator"]
            row(f"{label.replace('_', ' ')}",
                f"operator RSS {o['rss_mib']} MiB, peak {o['hwm_mib']} MiB, CPU {o['cpu_s']} s | "
                f"emulator RSS {e['rss_mib']} MiB")

    width = max(len(k) for k, v in rows if v) + 2
    lines = [f"aep-streaming-operator benchmark ({r['when']}, N={n})", "=" * 100]
    for k, v in rows:
        lines.append(f"{k:<{width}}{v}" if v else k)
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- main
def interrupted(signum, frame):
    raise KeyboardInterrupt
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    fp = sub.add_parser("freeports")
    fp.add_argument("n", type=int)
    rp = sub.add_parser("run")
    rp.add_argument("--objects", type=int, required=True)
    rp.add_argument("--namespaces", type=int, default=4)
    rp.add_argument("--emulator-url", required=True)
    rp.add_argument("--metrics-url", required=True)
    rp.add_argument("--operator-pid", type=int, required=True)
    rp.add_argument("--emulator-pid", type=int, required=True)
    rp.add_argument("--operator-flags", default="")
    rp.add_argument("--revision", default="")
    rp.add_argument("--emulator-flags", default="")
    rp.add_argument("--resync", type=float, required=True, help="resync interval, seconds")
    rp.add_argument("--steady", type=float, required=True, help="steady-state window, seconds")
    rp.add_argument("--poll", type=float, default=0.5)
    rp.add_argument("--quiet", type=float, default=3.0, help="settle: no Flow request for this long")
    rp.add_argument("--quiet-bound", type=float, default=30.0)
    rp.add_argument("--ready-timeout", type=float, default=300.0)
    rp.add_argument("--delete-timeout", type=float, default=300.0)
    rp.add_argument("--workdir", required=True)
    rp.add_argument("--out", required=True)
    args = parser.parse_args()

    if args.cmd == "freeports":
        socks = [socket.socket() for _ in range(args.n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        print(" ".join(str(s.getsockname()[1]) for s in socks))
        return 0

    # SIGTERM/SIGHUP (from bench.sh's cleanup) unwind like Ctrl-C, so that the kubectl children are stopped too.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        result = run(args)
    except BenchError as error:
        log(f"ERROR: {error}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    text = report(result)
    result["summary_text"] = text
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(text)
    print(f"\n(JSON: {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
