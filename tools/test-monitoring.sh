#!/usr/bin/env bash
# Tests the monitoring assets and the example apps (run by tools/run-tests.sh in tier 4, so by `make test`):
#
#  1. `promtool check rules` and `promtool test rules` on charts/aep-streaming-operator/files/;
#  2. a live /metrics: starts aep-emulator and the operator (as its own service account, watching a namespace
#     of its own), creates a StreamingConnection and a StreamingDataflow there and waits until both are Ready;
#     then `promtool check metrics` on the answer to `Accept: text/plain` (the text format 0.0.4, linted), and
#     checks the answer to `Accept: application/openmetrics-text` (OpenMetrics, `# EOF`);
#  3. every metric named by an alert or by the Grafana dashboard (expressions and template variables) exists in
#     that live /metrics, with the labels the expressions select and group by;
#  4. examples/app-deployment.yaml and examples/app-dataflow.yaml, and a Pod of each one's template, are accepted
#     by the API server (server-side dry run) in a namespace that enforces the `restricted` Pod Security level,
#     with no warning.
#
# Needs a running cluster: KUBECONFIG (admin) and kubectl on PATH, as tools/run-tests.sh sets them up, and the
# debug binaries in ${CARGO_TARGET_DIR:-target}/debug (aep-streaming-operator, aep-emulator, aep-testkit).
# Everything it creates (namespaces, processes, and the operator's namespace/ServiceAccount/RBAC if they were
# missing) is removed on exit, pass or fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[test-monitoring] %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
ok() { log "ok: $*"; }

echo "== monitoring: alert rules (promtool), a live /metrics, the dashboard's and alerts' metrics, the example apps"
files=charts/aep-streaming-operator/files
promtool=$(tools/promtool.sh | tail -n1)
debug=${CARGO_TARGET_DIR:-target}/debug

# ---------------------------------------------------------------- 1. the alert rules
"$promtool" check rules "$files/prometheus-rules.yaml" >&2 || fail "promtool check rules"
# Run from the file's folder: its rule_files path is relative, as promtool resolves it.
(cd "$files" && "$promtool" test rules prometheus-rules.test.yaml) >&2 || fail "promtool test rules"
ok "promtool check rules and test rules"

# ---------------------------------------------------------------- a cluster, the emulator, the operator
# tools/run-tests.sh sets KUBECONFIG and PATH when it starts the cluster itself; with a cluster of the caller's
# (AEP_E2E_KUBECONFIG, AEP_E2E_KUBECTL) those are what the end-to-end tests used.
export KUBECONFIG=${KUBECONFIG:-${AEP_E2E_KUBECONFIG:-}}
[[ -n $KUBECONFIG ]] || fail "neither KUBECONFIG nor AEP_E2E_KUBECONFIG is set: run this from tools/run-tests.sh, or after tools/cluster.sh up"
if ! command -v kubectl >/dev/null && [[ -n ${AEP_E2E_KUBECTL:-} ]]; then
  PATH=$(dirname "$AEP_E2E_KUBECTL"):$PATH
fi
command -v kubectl >/dev/null || fail "kubectl is not on PATH"
for binary in aep-streaming-operator aep-emulator aep-testkit; do
  [[ -x $debug/$binary ]] || fail "$debug/$binary is missing: cargo build --locked --workspace --bins"
done
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  log "installing PyYAML"
  python3 -m pip install --quiet pyyaml >&2 || python3 -m pip install --quiet --break-system-packages pyyaml >&2 \
    || fail "PyYAML is needed to read the rules file"
fi

work=$(mktemp -d)
namespace=aep-monitoring-test
restricted=aep-restricted-test
pids=()
created_operator_namespace=
# Objects in the test namespaces lose their finalizers (the operator that would remove them is stopped or
# gone), then the namespaces go, and this waits until they are gone: a namespace still terminating would make
# the next run (or the next test) fail to create or use it.
remove_test_namespaces() {
  local kind object
  for kind in streamingdataflows streamingconnections; do
    for object in $(kubectl get "$kind" -n "$namespace" -o name 2>/dev/null); do
      kubectl patch -n "$namespace" "$object" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
  done
  kubectl delete namespace "$namespace" "$restricted" --ignore-not-found --timeout=120s >/dev/null 2>&1 || true
}
cleanup() {
  local status=$? pid
  if ((status != 0)); then
    log "operator log (last 40 lines):"; tail -n 40 "$work/operator.log" >&2 2>/dev/null || true
  fi
  # The objects first, while the operator still runs: it deletes their Adobe side (in the emulator) and
  # removes their finalizers. Whatever is left after that (the operator was the failure) loses its finalizers
  # by hand, so that the namespaces can go.
  kubectl delete streamingdataflows,streamingconnections --all -n "$namespace" --timeout=60s >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  remove_test_namespaces
  if [[ -n $created_operator_namespace ]]; then
    kubectl delete -f deploy/operator/rbac.yaml -f deploy/operator/serviceaccount.yaml -f deploy/operator/namespace.yaml --ignore-not-found \
      --timeout=120s >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# What an interrupted earlier run may have left.
remove_test_namespaces
if [[ $(kubectl get -f deploy/operator/namespace.yaml -o jsonpath='{.status.phase}' 2>/dev/null) == Terminating ]]; then
  kubectl wait --for=delete -f deploy/operator/namespace.yaml --timeout=120s >/dev/null
fi
kubectl apply --server-side -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml >/dev/null
kubectl wait --for=condition=Established -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml --timeout=60s >/dev/null
# The operator's own namespace, account and RBAC, as deploy/ has them: another test may have removed them.
if ! kubectl get -f deploy/operator/namespace.yaml >/dev/null 2>&1; then created_operator_namespace=yes; fi
kubectl apply --server-side -f deploy/operator/namespace.yaml -f deploy/operator/serviceaccount.yaml -f deploy/operator/rbac.yaml >/dev/null
kubectl create namespace "$namespace" >/dev/null

read -r emulator_port metrics_port < <("$debug/aep-testkit" free-ports 2)
emulator=http://127.0.0.1:$emulator_port
metrics=http://127.0.0.1:$metrics_port
"$debug/aep-emulator" --listen "127.0.0.1:$emulator_port" >"$work/emulator.log" 2>&1 &
pids+=($!)
"$debug/aep-testkit" operator-kubeconfig --out "$work/operator-kubeconfig" --lifetime 1h
KUBECONFIG=$work/operator-kubeconfig "$debug/aep-streaming-operator" run --namespace "$namespace" \
  --platform-url "$emulator" --ims-url "$emulator" --metrics-addr "127.0.0.1:$metrics_port" \
  >"$work/operator.log" 2>&1 &
pids+=($!)
wait_http() { # url what
  local _
  for _ in $(seq 1 150); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "$2 did not answer $1"
}
wait_http "$emulator/_emulator/health" "the emulator"
wait_http "$metrics/readyz" "the operator"

# One object of each kind, so that every gauge and histogram family has series. The connection first, then the
# dataflow once the connection is Ready, as tools/demo.sh does: applied together, the dataflow can miss the
# connection's change to Ready and wait a whole resync interval (the dataflow records the inputs it waited on
# after its status write, when the connection may already be Ready).
wait_ready() { # object
  if ! kubectl wait -n "$namespace" --for=condition=Ready "$1" --timeout=120s >/dev/null; then
    kubectl get streamingconnections,streamingdataflows -n "$namespace" \
      -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}: {range .status.conditions[*]}{.type}={.status} {.reason} {.message}; {end}{"\n"}{end}' >&2 || true
    fail "$1 did not become Ready"
  fi
}
kubectl apply -n "$namespace" -f examples/credentials-secret.yaml -f examples/streamingconnection.yaml >/dev/null
wait_ready streamingconnection/web-events
kubectl apply -n "$namespace" -f examples/streamingdataflow.yaml >/dev/null
wait_ready streamingdataflow/web-to-lake
ok "operator running against the emulator; a StreamingConnection and a StreamingDataflow are Ready"

# ---------------------------------------------------------------- 2. the live /metrics, both formats
scrape() { # accept file -> the Content-Type header
  curl -sS -f -H "Accept: $1" -o "$2" -w '%{content_type}' "$metrics/metrics"
}
text_type=$(scrape 'text/plain' "$work/metrics.txt")
[[ $text_type == 'text/plain; version=0.0.4; charset=utf-8' ]] || fail "Accept: text/plain got Content-Type '$text_type'"
# Also the linter (the default --lint=all): a lint problem fails it.
"$promtool" check metrics <"$work/metrics.txt" >&2 || fail "promtool check metrics on the live text format"
grep -q '^aep_operator_objects{kind="StreamingConnection",ready="True",reason="Ready"} 1$' "$work/metrics.txt" \
  || fail "aep_operator_objects does not count the Ready StreamingConnection: $(grep aep_operator_objects "$work/metrics.txt")"
grep -q '^aep_operator_objects{kind="StreamingDataflow",ready="True",reason="Ready"} 1$' "$work/metrics.txt" \
  || fail "aep_operator_objects does not count the Ready StreamingDataflow"
ok "promtool check metrics passes on the live /metrics (Accept: text/plain, $(grep -vc '^#' "$work/metrics.txt") samples)"

openmetrics_type=$(scrape 'application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3' "$work/metrics.om")
[[ $openmetrics_type == 'application/openmetrics-text; version=1.0.0; charset=utf-8' ]] \
  || fail "Accept: application/openmetrics-text got Content-Type '$openmetrics_type'"
[[ $(tail -n1 "$work/metrics.om") == '# EOF' ]] || fail "the OpenMetrics answer does not end with # EOF"
grep -q '^# TYPE aep_operator_reconciles counter$' "$work/metrics.om" || fail "OpenMetrics names the counter family without _total"
ok "Accept: application/openmetrics-text gets OpenMetrics 1.0.0 (# EOF, counter families without _total)"

# ---------------------------------------------------------------- 3. names in alerts and dashboard exist
python3 - "$work/metrics.txt" "$files/prometheus-rules.yaml" "$files/grafana-dashboard.json" <<'PY'
"""Every metric an alert or the dashboard names must exist in the live /metrics, with the labels it selects on
and groups by. PromQL is not parsed in full: string literals and range brackets are dropped, selectors
(`name{...}`) and grouping clauses (`by (...)`) are read, and the remaining identifiers that are not functions,
keywords or numbers are metric names. That covers what these files use; an expression it cannot read fails
loudly (a name that exists nowhere), never silently."""
import json, re, sys

metrics_path, rules_path, dashboard_path = sys.argv[1:4]
import yaml

# Labels that Prometheus adds at scrape time (target labels), not the operator: allowed everywhere.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
# Series that Prometheus makes itself for every scrape.
SCRAPE_SERIES = {"up"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end", "by", "without", "on",
            "ignoring", "group_left", "group_right"}

live = {}
for line in open(metrics_path):
    if not line.strip() or line.startswith("#"):
        continue
    name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
    labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', line[len(name):].split("}")[0]))
    live.setdefault(name, set()).update(labels)

def read(expr):
    """(selectors: [(metric or None, {label names})], grouping labels, bare metric names)"""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    selectors = []
    def selector(match):
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(2)))
        selectors.append((match.group(1), labels))
        return " " + (match.group(1) or "") + " "
    e = re.sub(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}", selector, e)
    grouping = set()
    def group(match):
        grouping.update(l.strip() for l in match.group(2).split(",") if l.strip())
        return " "
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", group, e)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", e):
        if match.group(1).lower() not in KEYWORDS:
            names.add(match.group(1))
    names.update(name for name, _ in selectors if name)
    return selectors, grouping, names

expressions = []  # (where, expr)
for group in yaml.safe_load(open(rules_path))["groups"]:
    for rule in group["rules"]:
        expressions.append((f"alert {rule.get('alert') or rule.get('record')}", rule["expr"]))
dashboard = json.load(open(dashboard_path))
def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))
for panel in panels(dashboard["panels"]):
    for target in panel.get("targets", []):
        expressions.append((f"panel {panel['title']!r}", target["expr"]))
variable_metrics = []
for variable in dashboard["templating"]["list"]:
    if variable["type"] == "query":
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)", query)
        if not match:
            sys.exit(f"variable {variable['name']}: cannot read {query!r}")
        variable_metrics.append((f"variable ${variable['name']}", match.group(1), match.group(2)))

problems, checked = [], set()
for where, expr in expressions:
    selectors, grouping, names = read(expr)
    if not names:
        problems.append(f"{where}: no metric name found in {expr!r}")
    known = set(TARGET_LABELS)
    for name in names:
        checked.add(name)
        if name in SCRAPE_SERIES:
            continue
        if name not in live:
            problems.append(f"{where}: {name} is not in the live /metrics")
            continue
        known |= live[name]
    for name, labels in selectors:
        available = live.get(name, set()) | TARGET_LABELS if name else known
        for label in sorted(labels - available - {"__name__"}):
            problems.append(f"{where}: {name or 'a selector'} has no label {label!r}")
    for label in sorted(grouping - known):
        problems.append(f"{where}: groups by {label!r}, which none of {sorted(names)} has")
for where, name, label in variable_metrics:
    checked.add(name)
    if name not in live:
        problems.append(f"{where}: {name} is not in the live /metrics")
    elif label not in live[name] | TARGET_LABELS:
        problems.append(f"{where}: {name} has no label {label!r}")
if problems:
    sys.exit("\n".join(problems))
print(f"{len(expressions)} expressions and {len(variable_metrics)} variable(s) name {len(checked)} metrics, "
      f"all in the live /metrics: {', '.join(sorted(checked))}")
PY
ok "every metric of the alerts and the dashboard is in the live /metrics"

# ---------------------------------------------------------------- 4. the example apps, restricted Pod Security
kubectl create namespace "$restricted" >/dev/null
# enforce refuses Pods that break the level; warn makes the API server say so for Deployments too (enforce
# alone is silent about workload templates).
kubectl label namespace "$restricted" pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/enforce-version=latest pod-security.kubernetes.io/warn=restricted \
  pod-security.kubernetes.io/warn-version=latest >/dev/null
for app in examples/app-deployment.yaml examples/app-dataflow.yaml; do
  if ! kubectl apply --dry-run=server -n "$restricted" -f "$app" >"$work/apply.out" 2>"$work/apply.err"; then
    fail "$app refused: $(cat "$work/apply.err")"
  fi
  [[ ! -s $work/apply.err ]] || fail "$app: the API server warned: $(cat "$work/apply.err")"
  # The Deployment's pod template as a bare Pod: enforce judges Pods, so this is the real admission check.
  python3 - "$app" >"$work/pod.json" <<'PY'
import json, sys, yaml
deployment = yaml.safe_load(open(sys.argv[1]))
template = deployment["spec"]["template"]
print(json.dumps({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": deployment["metadata"]["name"], "labels": template["metadata"].get("labels", {})},
                  "spec": template["spec"]}))
PY
  if ! kubectl apply --dry-run=server -n "$restricted" -f "$work/pod.json" >"$work/apply.out" 2>"$work/apply.err"; then
    fail "a Pod of $app refused under restricted: $(cat "$work/apply.err")"
  fi
  [[ ! -s $work/apply.err ]] || fail "a Pod of $app: the API server warned: $(cat "$work/apply.err")"
  ok "$app (Deployment and its Pod) accepted under Pod Security 'restricted', no warning"
done
log "all monitoring checks passed"
