#!/usr/bin/env bash
# The install paths, tested with real helm and kubectl against a real control plane (tools/run-tests.sh runs it
# in tier 4, after the end-to-end tests, on the same cluster):
#
#   1. the chart's crds/ are byte-identical to crds/, and the chart's RBAC rules equal deploy/operator/rbac.yaml's;
#   2. helm lint, and helm template | kubectl apply --dry-run=server (default values, and ci/all-options-values.yaml
#      exercising every option) in a namespace that enforces the restricted Pod Security level, plus a Pod made
#      from each Deployment's template (enforcement applies to Pods only);
#   3. helm install; the operator (no kubelet here: it runs as a local process) as the CHART's ServiceAccount,
#      the emulator as Adobe; a StreamingConnection becomes Ready; the aggregated view/edit roles grant what they
#      should; helm upgrade to namespaced mode (watchNamespaces) takes effect on the Deployment and the operator
#      still works under the namespaced Roles; helm uninstall: the CRDs, the StreamingConnections and the
#      connections in the emulator are all still there;
#   4. kubectl apply -k deploy/crds && kubectl apply -k deploy/, then kubectl delete -k deploy/: the CRDs and the
#      objects stay; deploy/overlays/release renders the image by digest.
#
# Everything it creates is removed on exit (trap), also on failure; what the cluster had before is put back.
#
# Cluster: AEP_E2E_KUBECONFIG (as run-tests.sh exports it); without it, a cluster of its own is started in
# target/cluster-install and stopped at the end. A plain KUBECONFIG is never used: this test deletes and
# recreates the operator's CRDs, which must not happen on a cluster you care about.
# Binaries: ${CARGO_TARGET_DIR:-target}/debug/{aep-streaming-operator,aep-emulator,aep-testkit} (cargo build
# --workspace --bins). Logs: target/e2e-logs/install/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
chart=$repo/charts/aep-streaming-operator
debug=$(cd "${CARGO_TARGET_DIR:-$repo/target}/debug" && pwd)
logs=$repo/target/e2e-logs/install

# Names used only by this test, so that it touches nothing of the end-to-end tests (which install deploy/ under
# the name aep-streaming-operator).
release=aep-install
release_ns=aep-install-system
tenant_ns=aep-install-tenant
priority_class=aep-install-test
fullname=$release-aep-streaming-operator
crd_names=(streamingconnections.streaming.aep-operator.dev streamingdataflows.streaming.aep-operator.dev)
monitoring_crds=(servicemonitors podmonitors prometheusrules)
# The real prometheus-operator CRDs (from its Go module, through the Go module proxy), so that the
# ServiceMonitor, PodMonitor and PrometheusRule are validated against their actual schemas.
prometheus_operator_version=v0.85.0

say() { printf '\n== test-install: %s\n' "$*"; }
fail() { printf 'test-install: FAILED: %s\n' "$*" >&2; exit 1; }

for binary in aep-streaming-operator aep-emulator aep-testkit; do
  [[ -x $debug/$binary ]] || fail "$debug/$binary is missing: run cargo build --locked --workspace --bins"
done
# kubectl of the pinned version, from the control-plane cache (0.2 s when built), and helm (built once).
control_plane_bin=$(tools/build-control-plane.sh | tail -n 1)
export PATH=$control_plane_bin:$PATH
helm=$(tools/helm.sh | tail -n 1)

rm -rf "$logs"
mkdir -p "$logs"
work=$(mktemp -d)
chmod 700 "$work"
# Helm keeps its cache and config out of $HOME, so the test leaves nothing behind.
export HELM_CACHE_HOME=$work/helm/cache HELM_CONFIG_HOME=$work/helm/config HELM_DATA_HOME=$work/helm/data

# What the cleanup must undo or put back; "unknown" until the cluster has been looked at.
cluster_dir=
crds_existed=unknown
deploy_ns_existed=unknown
monitoring_added=()
kustomize_applied=false
operator_pid=
emulator_pid=

exists() { kubectl get "$@" >/dev/null 2>&1; }

stop_process() { # pid
  [[ -n $1 ]] || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$1" 2>/dev/null || true
}

cleanup() {
  local status=$?
  set +e
  stop_process "$operator_pid"
  stop_process "$emulator_pid"
  if [[ $crds_existed != unknown ]]; then
    # Objects of this test whose operator is gone keep their finalizer: removed by hand, as docs/install.md
    # describes for an operator that is no longer running.
    for kind in streamingconnections streamingdataflows; do
      for object in $(kubectl get "$kind" -n "$tenant_ns" -o name 2>/dev/null); do
        kubectl patch "$object" -n "$tenant_ns" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null
      done
    done
    "$helm" uninstall "$release" -n "$release_ns" >/dev/null 2>&1
    if [[ $kustomize_applied == true ]]; then kubectl delete -k deploy/ --ignore-not-found >/dev/null 2>&1; fi
    kubectl delete namespace "$tenant_ns" "$release_ns" --ignore-not-found --timeout=120s >/dev/null 2>&1
    kubectl delete priorityclass "$priority_class" --ignore-not-found >/dev/null 2>&1
    kubectl delete clusterrolebinding "$release-editor" "$release-viewer" "$fullname" --ignore-not-found >/dev/null 2>&1
    # In case helm uninstall could not run (a failed install): the release's cluster-scoped objects.
    kubectl delete clusterrole "$fullname" "$fullname-view" "$fullname-edit" --ignore-not-found >/dev/null 2>&1
    for crd in "${monitoring_added[@]}"; do kubectl delete crd "$crd" --ignore-not-found >/dev/null 2>&1; done
    # The operator's CRDs as they were: absent, or installed from crds/ as the end-to-end tests do (without the
    # annotations of deploy/crds). Never while objects of another test still exist.
    if [[ -z $(kubectl get streamingconnections,streamingdataflows -A -o name 2>/dev/null) ]]; then
      kubectl delete crd "${crd_names[@]}" --ignore-not-found >/dev/null 2>&1
      if [[ $crds_existed == true ]]; then
        kubectl apply --server-side -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml >/dev/null
      fi
    fi
    if [[ $deploy_ns_existed == true ]]; then
      # kubectl delete -k deploy/ removed the end-to-end tests' namespace, service account and RBAC: back they go.
      kubectl apply --server-side --force-conflicts -f deploy/operator/namespace.yaml -f deploy/operator/serviceaccount.yaml \
        -f deploy/operator/rbac.yaml >/dev/null
    fi
  fi
  rm -rf "$work"
  if [[ -n $cluster_dir ]]; then tools/cluster.sh down "$cluster_dir" >/dev/null 2>&1; fi
  if ((status != 0)); then echo "test-install: logs in $logs" >&2; fi
  exit "$status"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------- the cluster
if [[ -n ${AEP_E2E_KUBECONFIG:-} ]]; then
  export KUBECONFIG=$AEP_E2E_KUBECONFIG
else
  cluster_dir=$repo/target/cluster-install
  tools/cluster.sh up "$cluster_dir" >"$logs/cluster-up.log" 2>&1 || { cat "$logs/cluster-up.log" >&2; exit 1; }
  export KUBECONFIG=$cluster_dir/kubeconfig
fi
kubectl get namespace default >/dev/null || fail "the cluster of $KUBECONFIG does not answer"
crds_existed=false
if exists crd "${crd_names[0]}" && exists crd "${crd_names[1]}"; then crds_existed=true; fi
deploy_ns_existed=false
if exists namespace aep-streaming-operator; then deploy_ns_existed=true; fi

# A YAML stream as one JSON List (kubectl parses the YAML, so no PyYAML is needed; it prints one JSON document
# per object, which python gathers).
to_json() {
  kubectl create --dry-run=client -o json -f - | python3 -c '
import json, sys
text, decoder, items, position = sys.stdin.read(), json.JSONDecoder(), [], 0
while text[position:].strip():
    position += len(text[position:]) - len(text[position:].lstrip())
    item, position = decoder.raw_decode(text, position)
    items.extend(item["items"] if item.get("kind") == "List" else [item])
print(json.dumps({"kind": "List", "items": items}))
'
}

# ------------------------------------------------------------------------------ 1. files that must not drift
say "the chart's crds/ are byte-identical to crds/ (make crd copies them)"
generated=()
for file in crds/*.yaml; do
  [[ $file == */kustomization.yaml ]] || generated+=("${file#crds/}")
done
copied=()
for file in "$chart"/crds/*; do copied+=("${file##*/}"); done
[[ ${generated[*]} == "${copied[*]}" ]] || fail "charts/aep-streaming-operator/crds has ${copied[*]}, crds/ has ${generated[*]}"
for file in "${generated[@]}"; do
  cmp "crds/$file" "$chart/crds/$file" || fail "$chart/crds/$file differs from crds/$file: run make crd"
done
echo "   ${#generated[@]} CRDs identical"

say "the chart's RBAC rules equal deploy/operator/rbac.yaml's ClusterRole (cluster-wide and namespaced mode)"
to_json <deploy/operator/rbac.yaml >"$work/deploy-rbac.json"
"$helm" template "$release" "$chart" -n "$release_ns" --show-only templates/rbac.yaml | to_json >"$work/chart-rbac.json"
"$helm" template "$release" "$chart" -n "$release_ns" --show-only templates/rbac.yaml \
  --set "watchNamespaces={$tenant_ns}" | to_json >"$work/chart-rbac-namespaced.json"
python3 - "$work" "$fullname" "$tenant_ns" <<'PYTHON'
import json, sys
work, fullname, tenant = sys.argv[1:]
def items(name):
    document = json.load(open(f"{work}/{name}.json"))
    return document["items"] if document.get("kind") == "List" else [document]
def rules(objects, kind, name=None, namespace=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
             and (namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]["rules"]
truth = rules(items("deploy-rbac"), "ClusterRole")
chart = rules(items("chart-rbac"), "ClusterRole", fullname)
assert chart == truth, f"cluster-wide mode differs from deploy/operator/rbac.yaml:\n{json.dumps(chart)}\n{json.dumps(truth)}"
namespaced = items("chart-rbac-namespaced")
role = rules(namespaced, "Role", fullname, tenant)
cluster_role = rules(namespaced, "ClusterRole", fullname)
cluster_scoped = [r for r in truth if r["apiGroups"] == ["apiextensions.k8s.io"]]
assert cluster_role == cluster_scoped, f"namespaced mode's ClusterRole: {json.dumps(cluster_role)}"
assert role == [r for r in truth if r not in cluster_scoped], f"namespaced mode's Role: {json.dumps(role)}"
assert not any(r["resources"] == ["secrets"] for r in cluster_role), "namespaced mode reads Secrets cluster-wide"
print(f"   {len(truth)} rules: ClusterRole identical; namespaced: Role {len(role)} + ClusterRole {len(cluster_role)}")
PYTHON

# ------------------------------------------------------------------------------------ 2. lint and dry runs
say "helm lint --strict (default values, all options)"
"$helm" lint --strict "$chart"
"$helm" lint --strict "$chart" -f "$chart/ci/all-options-values.yaml"

say "the chart refuses what the operator cannot do"
expect_refusal() { # message-fragment helm-template-args...
  local fragment=$1 output
  shift
  if output=$("$helm" template "$release" "$chart" -n "$release_ns" "$@" 2>&1); then
    fail "helm template $* rendered; expected a refusal containing: $fragment"
  fi
  [[ $output == *"$fragment"* ]] || fail "helm template $*: expected '$fragment' in: $output"
  echo "   refused: $*"
}
expect_refusal "the operator watches one namespace or all of them" --set 'watchNamespaces={a,b}'
expect_refusal "needs leaderElection.enabled" --set leaderElection.enabled=false
expect_refusal "networkPolicy.apiServer.cidrs is required" --set networkPolicy.enabled=true
expect_refusal "image.digest must look like sha256" --set image.digest=latest
# values.schema.json: a misspelt value is an error, not silently ignored.
expect_refusal "additional properties 'watchNamespace' not allowed" --set watchNamespace=marketing

say "namespaces for the dry runs and the install (restricted Pod Security enforced)"
for namespace in "$release_ns" "$tenant_ns"; do
  kubectl create namespace "$namespace"
  kubectl label namespace "$namespace" pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/warn=restricted
  # The Pod dry runs use the namespace's `default` service account, which the controller manager adds.
  for _ in $(seq 1 100); do exists serviceaccount default -n "$namespace" && break; sleep 0.2; done
done
# The all-options values name a PriorityClass; the Pod dry run needs it to exist.
kubectl create priorityclass "$priority_class" --value=1000 --description="tools/test-install.sh"

say "monitoring.coreos.com CRDs (prometheus-operator $prometheus_operator_version, from the Go module proxy)"
prometheus_operator_dir=$(cd /tmp && go mod download -json \
  "github.com/prometheus-operator/prometheus-operator@$prometheus_operator_version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $prometheus_operator_dir ]] || fail "could not download prometheus-operator $prometheus_operator_version"
for plural in "${monitoring_crds[@]}"; do
  if ! exists crd "$plural.monitoring.coreos.com"; then
    monitoring_added+=("$plural.monitoring.coreos.com")
    kubectl apply --server-side -f "$prometheus_operator_dir/example/prometheus-operator-crd/monitoring.coreos.com_$plural.yaml" >/dev/null
  fi
done
kubectl wait --for=condition=Established crd "${monitoring_crds[@]/%/.monitoring.coreos.com}" --timeout=60s

# Renders VALUES (a file, or "" for the defaults), then: a server dry run of everything (CRDs included) with no
# Pod Security warning, and a server dry run of a Pod made from the Deployment's template.
dry_run() { # label values-file
  local label=$1 values=() rendered=$work/$1.yaml
  [[ -n $2 ]] && values=(-f "$2")
  "$helm" template "$release" "$chart" -n "$release_ns" --include-crds "${values[@]}" >"$rendered"
  kubectl apply --server-side --force-conflicts --field-manager=test-install --dry-run=server -f "$rendered" \
    >"$logs/dry-run-$label.out" 2>"$logs/dry-run-$label.err" || { cat "$logs/dry-run-$label.err" >&2; fail "dry run ($label)"; }
  if grep -qi 'podsecurity\|violate' "$logs/dry-run-$label.err"; then
    cat "$logs/dry-run-$label.err" >&2
    fail "the $label Deployment would violate the restricted Pod Security level"
  fi
  echo "   $label: $(wc -l <"$logs/dry-run-$label.out") objects accepted by the API server:"
  sed 's/^/     /' "$logs/dry-run-$label.out"
  # A Pod from the Deployment's template (the service account swapped for `default`, which exists).
  to_json <"$rendered" >"$work/$label.json"
  python3 - "$work/$label.json" "$release_ns" <<'PYTHON' >"$work/$label-pod.json"
import json, sys
rendered, namespace = sys.argv[1:]
items = json.load(open(rendered))["items"]
deployment = next(o for o in items if o.get("kind") == "Deployment")
spec = deployment["spec"]["template"]["spec"]
spec["serviceAccountName"] = "default"
print(json.dumps({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "pod-security-check", "namespace": namespace,
                               "labels": deployment["spec"]["template"]["metadata"]["labels"]},
                  "spec": spec}))
PYTHON
  kubectl apply --dry-run=server -f "$work/$label-pod.json" >/dev/null 2>"$logs/pod-$label.err" || {
    cat "$logs/pod-$label.err" >&2
    fail "a Pod of the $label Deployment is refused (restricted Pod Security enforced on $release_ns)"
  }
  echo "   $label: a Pod of the Deployment is admitted under pod-security.kubernetes.io/enforce=restricted"
}
say "helm template | kubectl apply --dry-run=server: default values"
dry_run default ""
say "helm template | kubectl apply --dry-run=server: every option (ci/all-options-values.yaml)"
dry_run all-options "$chart/ci/all-options-values.yaml"
grep -q 'servicemonitor.monitoring.coreos.com' "$logs/dry-run-all-options.out" || fail "no ServiceMonitor rendered"
grep -q 'podmonitor.monitoring.coreos.com' "$logs/dry-run-all-options.out" || fail "no PodMonitor rendered"
grep -q 'networkpolicy' "$logs/dry-run-all-options.out" || fail "no NetworkPolicy rendered"
grep -q 'poddisruptionbudget' "$logs/dry-run-all-options.out" || fail "no PodDisruptionBudget rendered"
grep -q "^role.rbac.authorization.k8s.io/$fullname " "$logs/dry-run-all-options.out" || fail "no namespaced Role rendered"
if [[ -f $chart/files/prometheus-rules.yaml ]]; then
  grep -q 'prometheusrule.monitoring.coreos.com' "$logs/dry-run-all-options.out" || fail "no PrometheusRule rendered"
else
  echo "   (no files/prometheus-rules.yaml yet: no PrometheusRule to render)"
fi

# ------------------------------------------------------------------------- 3. install, run, upgrade, uninstall
say "helm install: the chart's CRDs are installed by helm"
if [[ $crds_existed == true ]]; then
  # Installed by the end-to-end tests. Removed first (only when no object of the kinds exists anywhere), so
  # that this install really creates them from the chart's crds/ folder; the cleanup puts them back as they were.
  if [[ -z $(kubectl get streamingconnections,streamingdataflows -A -o name) ]]; then
    kubectl delete crd "${crd_names[@]}" --wait=true
  else
    echo "   StreamingConnections or StreamingDataflows exist: the existing CRDs stay (helm skips them)"
  fi
fi
"$helm" install "$release" "$chart" -n "$release_ns" | tee "$logs/helm-install.log"
kubectl wait --for=condition=Established crd "${crd_names[@]}" --timeout=60s
kubectl get deployment "$fullname" -n "$release_ns"

say "the operator as the chart's service account (a local process: no kubelet runs pods here)"
read -r emulator_port metrics_port < <("$debug/aep-testkit" free-ports 2)
emulator=http://127.0.0.1:$emulator_port
setsid "$debug/aep-emulator" --listen "127.0.0.1:$emulator_port" >"$logs/emulator.log" 2>&1 &
emulator_pid=$!
for _ in $(seq 1 100); do curl -sf "$emulator/_emulator/health" >/dev/null && break; sleep 0.2; done
curl -sf "$emulator/_emulator/health" >/dev/null || fail "the emulator did not start"

# A kubeconfig with a token of the chart's ServiceAccount (TokenRequest): the operator gets exactly the chart's
# RBAC. Mode 0600; the token is never printed.
write_operator_kubeconfig() {
  local server ca token
  # --flatten embeds a CA given as a file path.
  server=$(kubectl config view --minify --raw --flatten -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kubectl config view --minify --raw --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  token=$(kubectl create token "$fullname" -n "$release_ns" --duration=1h)
  (
    umask 077
    cat >"$work/operator-kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: cluster
    cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
  - name: $fullname
    user: {token: "$token"}
contexts:
  - name: operator
    context: {cluster: cluster, user: $fullname}
current-context: operator
KUBECONFIG
  )
}

# Starts the operator with the env of the installed Deployment (as its pods would get it), with the URLs,
# metrics address and pod identity of this machine.
start_operator() { # log-name
  local -a environment
  mapfile -t environment < <(kubectl get deployment "$fullname" -n "$release_ns" -o json | python3 -c '
import json, sys
container = json.load(sys.stdin)["spec"]["template"]["spec"]["containers"][0]
local = {"AEP_PLATFORM_URL", "AEP_IMS_URL", "AEP_METRICS_ADDR", "AEP_CA_FILE", "POD_NAME", "POD_NAMESPACE"}
for variable in container.get("env", []):
    if "value" in variable and variable["name"] not in local:
        print(variable["name"] + "=" + variable["value"])
')
  write_operator_kubeconfig
  # No proxy variables: kube-rs would route a kubeconfig's API server through HTTPS_PROXY.
  env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy "${environment[@]}" \
    KUBECONFIG="$work/operator-kubeconfig" POD_NAME="$release-local-0" POD_NAMESPACE="$release_ns" \
    AEP_PLATFORM_URL="$emulator" AEP_IMS_URL="$emulator" AEP_METRICS_ADDR="127.0.0.1:$metrics_port" \
    setsid "$debug/aep-streaming-operator" run >"$logs/$1.log" 2>&1 &
  operator_pid=$!
  for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$metrics_port/readyz" >/dev/null && break
    kill -0 "$operator_pid" 2>/dev/null || { tail -n 30 "$logs/$1.log" >&2; fail "the operator exited"; }
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$metrics_port/readyz" >/dev/null || { tail -n 30 "$logs/$1.log" >&2; fail "the operator is not ready"; }
  echo "   operator ready (pid $operator_pid, env of Deployment $fullname: ${environment[*]})"
}
start_operator operator

wait_ready() { # name
  kubectl wait --for=condition=Ready "streamingconnection/$1" -n "$tenant_ns" --timeout=120s || {
    kubectl describe "streamingconnection/$1" -n "$tenant_ns" >&2
    fail "$1 did not become Ready"
  }
}
say "a credentials Secret and a StreamingConnection (examples/) become Ready"
kubectl apply -n "$tenant_ns" -f examples/credentials-secret.yaml -f examples/streamingconnection.yaml
wait_ready web-events
kubectl get sconn -n "$tenant_ns" -o wide

say "the aggregated roles: edit manages the objects, view reads them, neither writes status"
kubectl create clusterrolebinding "$release-editor" --clusterrole="$fullname-edit" --user=aep-install-editor
kubectl create clusterrolebinding "$release-viewer" --clusterrole="$fullname-view" --user=aep-install-viewer
can() { # expected user verb resource [--subresource=status]
  local expected=$1 user=$2 answer
  shift 2
  answer=$(kubectl auth can-i "$@" -n "$tenant_ns" --as "$user" 2>/dev/null || true)
  [[ $answer == "$expected" ]] || fail "$user $*: expected $expected, got $answer"
  echo "   $user $*: $answer"
}
can yes aep-install-editor create streamingconnections.streaming.aep-operator.dev
can yes aep-install-editor delete streamingdataflows.streaming.aep-operator.dev
can no aep-install-editor patch streamingconnections.streaming.aep-operator.dev --subresource=status
can yes aep-install-viewer list streamingdataflows.streaming.aep-operator.dev
can no aep-install-viewer delete streamingconnections.streaming.aep-operator.dev
label() { kubectl get clusterrole "$1" -o "jsonpath={.metadata.labels.rbac\.authorization\.k8s\.io/$2}"; }
[[ $(label "$fullname-view" aggregate-to-view) == true && $(label "$fullname-edit" aggregate-to-edit) == true &&
  $(label "$fullname-edit" aggregate-to-admin) == true ]] || fail "the aggregated roles lack their aggregate-to-* labels"
# The local control plane runs no ClusterRole aggregation controller, so the built-in roles are not checked.
echo "   labels: $fullname-view aggregate-to-view, $fullname-edit aggregate-to-edit and aggregate-to-admin"

say "helm upgrade to namespaced mode (watchNamespaces) takes effect"
stop_process "$operator_pid"
operator_pid=
"$helm" upgrade "$release" "$chart" -n "$release_ns" --reuse-values --set "watchNamespaces={$tenant_ns}" \
  | tee "$logs/helm-upgrade.log"
watched=$(kubectl get deployment "$fullname" -n "$release_ns" \
  -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="AEP_NAMESPACE")].value}')
[[ $watched == "$tenant_ns" ]] || fail "the Deployment has AEP_NAMESPACE='$watched' after the upgrade"
echo "   Deployment: AEP_NAMESPACE=$watched"
kubectl get role "$fullname" -n "$tenant_ns" >/dev/null || fail "no Role in $tenant_ns after the upgrade"
[[ $(kubectl auth can-i list secrets -A --as "system:serviceaccount:$release_ns:$fullname") == no ]] ||
  fail "namespaced mode still reads Secrets in every namespace"
[[ $(kubectl auth can-i list secrets -n "$tenant_ns" --as "system:serviceaccount:$release_ns:$fullname") == yes ]] ||
  fail "namespaced mode cannot read Secrets in $tenant_ns"
echo "   the service account reads Secrets in $tenant_ns only"
start_operator operator-namespaced
kubectl apply -n "$tenant_ns" -f - <<'OBJECT'
apiVersion: streaming.aep-operator.dev/v1alpha1
kind: StreamingConnection
metadata:
  name: namespaced-mode
spec:
  sandbox: prod
  credentialsRef:
    name: aep-credentials
OBJECT
wait_ready namespaced-mode
wait_ready web-events

say "helm uninstall: the CRDs, the StreamingConnections and the connections in Adobe stay"
# The operator's pods go with the Deployment; here the local process stops the same way (SIGTERM).
stop_process "$operator_pid"
operator_pid=
"$helm" uninstall "$release" -n "$release_ns" --wait | tee "$logs/helm-uninstall.log"
exists deployment "$fullname" -n "$release_ns" && fail "the Deployment is still there"
exists clusterrole "$fullname" && fail "the ClusterRole is still there"
check_kept() { # what
  local crd
  for crd in "${crd_names[@]}"; do exists crd "$crd" || fail "$1: CRD $crd is gone"; done
  kubectl get sconn -n "$tenant_ns" -o json >"$work/connections.json"
  curl -sf "$emulator/_emulator/state" >"$work/emulator-state.json"
  python3 - "$work" "$1" <<'PYTHON'
import json, sys
work, what = sys.argv[1:]
objects = json.load(open(f"{work}/connections.json"))["items"]
names = sorted(o["metadata"]["name"] for o in objects)
assert names == ["namespaced-mode", "web-events"], f"{what}: StreamingConnections left: {names}"
in_adobe = {c["id"] for c in json.load(open(f"{work}/emulator-state.json"))["connections"]}
for o in objects:
    connection = o["status"]["connectionId"]
    assert connection in in_adobe, f"{what}: {o['metadata']['name']}'s connection {connection} is gone"
    assert "streaming.aep-operator.dev/cleanup" in o["metadata"].get("finalizers", []), \
        f"{what}: {o['metadata']['name']} lost its finalizer"
print(f"   {what}: 2 CRDs, StreamingConnections {names}, their {len(objects)} connections in the emulator")
PYTHON
}
check_kept "after helm uninstall"

# ------------------------------------------------------------------------------------------------ 4. kustomize
say "kustomize: kubectl apply -k deploy/crds && kubectl apply -k deploy/, then kubectl delete -k deploy/"
kubectl apply --server-side --force-conflicts -k deploy/crds
for crd in "${crd_names[@]}"; do
  annotations=$(kubectl get crd "$crd" -o jsonpath='{.metadata.annotations}')
  [[ $annotations == *'"argocd.argoproj.io/sync-options":"Prune=false,Delete=false"'* &&
    $annotations == *'"helm.sh/resource-policy":"keep"'* ]] || fail "CRD $crd lacks the keep annotations: $annotations"
done
echo "   the CRDs carry argocd.argoproj.io/sync-options: Prune=false,Delete=false and helm.sh/resource-policy: keep"
kubectl kustomize deploy/ >"$work/deploy.yaml"
grep -q 'kind: CustomResourceDefinition' "$work/deploy.yaml" && fail "deploy/ still renders a CRD"
kustomize_applied=true
kubectl apply -k deploy/
# While its namespace exists (a server dry run does not create one).
say "deploy/overlays/release pins the image by digest"
kubectl kustomize deploy/overlays/release >"$work/release.yaml"
image=$(sed -n 's/^[[:space:]]*image: //p' "$work/release.yaml")
[[ $image =~ ^[^@:]+(:[^@]+)?@sha256:[0-9a-f]{64}$ ]] || fail "the release overlay's image is not by digest: $image"
kubectl apply --dry-run=server -f "$work/release.yaml" >/dev/null
echo "   image: $image (accepted by a server dry run)"

kubectl delete -k deploy/ --wait=true --timeout=120s
check_kept "after kubectl delete -k deploy/"

say "passed"
