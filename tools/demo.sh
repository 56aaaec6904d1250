#!/usr/bin/env bash
# The local demo: a real control plane, the emulator as Adobe Experience Platform, the operator under
# its own least-privilege service account, and the examples/ applied. Used by `make demo` / `make demo-down`.
#
#   tools/demo.sh up     build what is missing, start everything, apply examples/, wait for Ready, show it
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
  # Every kind's CRD, even one the run does not use: the operator refuses to start without all of them.
  kubectl apply --server-side -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml
  kubectl wait --for=condition=Established -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml --timeout=60s
  kubectl apply --server-side -f deploy/namespace.yaml -f deploy/serviceaccount.yaml -f deploy/rbac.yaml

  say "starting the operator as service account aep-streaming-operator (not admin)"
  "$DEBUG/aep-testkit" operator-kubeconfig --out "$DEMO/operator-kubeconfig" --lifetime 24h
  KUBECONFIG=$DEMO/operator-kubeconfig setsid nohup "$DEBUG/aep-streaming-operator" run \
    --platform-url "$EMULATOR_URL" --ims-url "$EMULATOR_URL" \
    --metrics-addr "127.0.0.1:$METRICS_PORT" --resync-interval 1m >"$DEMO/operator.log" 2>&1 &
  echo $! >"$DEMO/operator.pid"
  wait_http "http://127.0.0.1:$METRICS_PORT/readyz" "the operator"

  say "applying examples/ in namespace $NS"
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
  kubectl apply -n "$NS" -f examples/
  kubectl wait -n "$NS" --for=condition=Ready streamingconnection/web-events --timeout=120s

  say "kubectl get sconn -A -o wide"
  kubectl get sconn -A -o wide
  say "the published ConfigMap"
  kubectl get configmap web-events-inlet -n "$NS" -o yaml | sed -n '/^data:/,/^kind:/p'

  say "posting a sample XDM event to the inlet"
  local inlet
  inlet=$(kubectl get configmap web-events-inlet -n "$NS" -o jsonpath='{.data.INLET_URL}')
  echo "POST $inlet"
  curl -sS -X POST "$inlet" -H 'Content-Type: application/json' -d '{
    "header": {"schemaRef": {"id": "https://ns.adobe.com/demo/schemas/web", "contentType": "application/vnd.adobe.xed-full+json;version=1"},
               "imsOrgId": "DEMO0000000000000000000@AdobeOrg", "source": {"name": "demo"}},
    "body": {"xdmMeta": {"schemaRef": {"id": "https://ns.adobe.com/demo/schemas/web", "contentType": "application/vnd.adobe.xed-full+json;version=1"}},
             "xdmEntity": {"_id": "demo-1", "eventType": "web.webpagedetails.pageViews"}}}'
  echo

  cat <<DONE

The demo is running:
  export KUBECONFIG=$CLUSTER/kubeconfig PATH=$(dirname "$(command -v kubectl)"):\$PATH
  kubectl describe sconn web-events -n $NS         # status, conditions, events
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
