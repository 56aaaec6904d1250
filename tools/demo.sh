#!/usr/bin/env bash
# The local demo: a real control plane, the emulator as Adobe Experience Platform, the operator under
# its own least-privilege service account, and the examples/ applied. Used by `make demo` / `make demo-down`.
#
#   tools/demo.sh up     build what is missing, start everything, apply examples/ (the connection, then the
#                        dataflow), wait for Ready, show it, and send one event that lands in the demo dataset
#   tools/demo.sh down   stop the operator, the emulator and the control plane
#
# Environment: AEP_DEMO_EMULATOR_PORT (default 18080), AEP_DEMO_METRICS_PORT (default 18081), CARGO_TARGET_DIR
# (where cargo builds, default target/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
DEMO=$REPO/target/demo
CLUSTER=$DEMO/cluster
NS=demo
EMULATOR_PORT=${AEP_DEMO_EMULATOR_PORT:-18080}
METRICS_PORT=${AEP_DEMO_METRICS_PORT:-18081}
EMULATOR_URL=http://127.0.0.1:$EMULATOR_PORT
DEBUG=${CARGO_TARGET_DIR:-$REPO/target}/debug

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_pid() { # name
  local file=$DEMO/$1.pid
  [[ -f $file ]] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  stop_pid operator
  stop_pid emulator
  tools/cluster.sh down "$CLUSTER" || true
  echo "demo stopped"
}

wait_http() { # url what
  for _ in $(seq 1 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "$2 did not come up; see $DEMO/*.log" >&2; return 1
}

wait_ready() { # kind/name: wait for Ready, or show why not
  kubectl wait -n "$NS" --for=condition=Ready "$1" --timeout=120s && return 0
  kubectl describe -n "$NS" "$1" >&2 || true
  echo "$1 did not become Ready; see $DEMO/operator.log" >&2; return 1
}

dataflow_value() { # key -> its value in the ConfigMap of the example StreamingDataflow
  kubectl get configmap web-to-lake-dataflow -n "$NS" -o "jsonpath={.data.$1}"
}

dataset_records() { # dataset id -> how many records the emulator has written into it
  "$DEBUG/aep-testkit" dataset-records --emulator-url "$EMULATOR_URL" "$1"
}

up() {
  down >/dev/null 2>&1 || true
  mkdir -p "$DEMO"
  say "building the operator and the emulator"
  cargo build --locked --workspace --bins
  say "starting the control plane (kube-apiserver, etcd, kube-controller-manager)"
  tools/cluster.sh up "$CLUSTER"
  # shellcheck disable=SC1091
  source "$CLUSTER/env"

  say "starting aep-emulator on $EMULATOR_URL"
  setsid nohup "$DEBUG/aep-emulator" --listen "127.0.0.1:$EMULATOR_PORT" \
    --state-file "$DEMO/emulator-state.json" >"$DEMO/emulator.log" 2>&1 &
  echo $! >"$DEMO/emulator.pid"
  wait_http "$EMULATOR_URL/_emulator/health" "the emulator"

  say "installing the CRDs and the operator's RBAC"
  # Every kind's CRD: the operator refuses to start without all of them.
  kubectl apply --server-side -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml
  kubectl wait --for=condition=Established -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml --timeout=60s
  kubectl apply --server-side -f deploy/operator/namespace.yaml -f deploy/operator/serviceaccount.yaml -f deploy/operator/rbac.yaml

  say "starting the operator as service account aep-streaming-operator (not admin)"
  "$DEBUG/aep-testkit" operator-kubeconfig --out "$DEMO/operator-kubeconfig" --lifetime 24h
  KUBECONFIG=$DEMO/operator-kubeconfig setsid nohup "$DEBUG/aep-streaming-operator" run \
    --platform-url "$EMULATOR_URL" --ims-url "$EMULATOR_URL" \
    --metrics-addr "127.0.0.1:$METRICS_PORT" --resync-interval 1m >"$DEMO/operator.log" 2>&1 &
  echo $! >"$DEMO/operator.pid"
  wait_http "http://127.0.0.1:$METRICS_PORT/readyz" "the operator"

  say "applying examples/ in namespace $NS: the credentials, the connection and its app"
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
  kubectl apply -n "$NS" -f examples/credentials-secret.yaml -f examples/streamingconnection.yaml \
    -f examples/app-deployment.yaml
  wait_ready streamingconnection/web-events

  say "kubectl get sconn -A -o wide"
  kubectl get sconn -A -o wide
  say "the published ConfigMap"
  kubectl get configmap web-events-inlet -n "$NS" -o yaml | sed -n '/^data:/,/^kind:/p'

  say "applying the dataflow to the demo dataset, and its app"
  kubectl apply -n "$NS" -f examples/streamingdataflow.yaml -f examples/app-dataflow.yaml
  wait_ready streamingdataflow/web-to-lake

  say "kubectl get sdf -A -o wide"
  kubectl get sdf -A -o wide
  say "the dataflow's ConfigMap"
  kubectl get configmap web-to-lake-dataflow -n "$NS" -o yaml | sed -n '/^data:/,/^kind:/p'

  # The event is built from the dataflow's ConfigMap alone, as an application does (examples/app-dataflow.yaml).
  local inlet schema_id content_type org_id dataset flow_id before after event
  inlet=$(dataflow_value INLET_URL)
  schema_id=$(dataflow_value SCHEMA_ID)
  content_type=$(dataflow_value SCHEMA_CONTENT_TYPE)
  org_id=$(dataflow_value IMS_ORG_ID)
  dataset=$(dataflow_value DATASET_ID)
  flow_id=$(dataflow_value FLOW_ID)
  before=$(dataset_records "$dataset")
  say "records in dataset $dataset (the emulator's state): $before"

  say "posting one XDM event built from the ConfigMap web-to-lake-dataflow"
  event=$(cat <<EVENT
{
  "header": {
    "schemaRef": {"id": "$schema_id", "contentType": "$content_type"},
    "imsOrgId": "$org_id",
    "datasetId": "$dataset",
    "flowId": "$flow_id",
    "source": {"name": "demo"}
  },
  "body": {
    "xdmMeta": {"schemaRef": {"id": "$schema_id", "contentType": "$content_type"}},
    "xdmEntity": {
      "_id": "demo-$(date +%s)",
      "timestamp": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
      "eventType": "web.webpagedetails.pageViews",
      "web": {"webPageDetails": {"name": "Home", "URL": "https://shop.example.com/"}}
    }
  }
}
EVENT
)
  echo "POST $inlet?syncValidation=true"
  echo "$event"
  # syncValidation=true: a message the flow refuses gets a 400 that says why, instead of a 200 and a silent drop.
  curl -sS --fail-with-body -X POST "$inlet?syncValidation=true" -H 'Content-Type: application/json' \
    --data-binary "$event"
  echo

  after=$(dataset_records "$dataset")
  say "records in dataset $dataset (the emulator's state): $before -> $after"
  if ((after <= before)); then
    echo "the event did not land in dataset $dataset; see $DEMO/emulator.log and $DEMO/operator.log" >&2
    return 1
  fi

  cat <<DONE

The demo is running:
  export KUBECONFIG=$CLUSTER/kubeconfig PATH=$(dirname "$(command -v kubectl)"):\$PATH
  kubectl describe sconn web-events -n $NS         # status, conditions, events
  kubectl describe sdf web-to-lake -n $NS          # the dataflow; status.lastRun counts the records of the hour
  curl -s $EMULATOR_URL/_emulator/state             # what "Adobe" now holds
  curl -s http://127.0.0.1:$METRICS_PORT/metrics    # the operator's metrics
  logs: $DEMO/operator.log $DEMO/emulator.log
Stop it with: make demo-down
DONE
}

case ${1:-up} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
