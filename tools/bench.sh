#!/usr/bin/env bash
# Performance and footprint benchmark: a real control plane, aep-emulator as the platform and the release-built
# operator under its own service account; N StreamingConnections are created in one apply, left alone for a
# resync interval, then deleted. It PRINTS figures (and writes target/bench/result.json); it never asserts on
# timing. It fails only when something does not happen at all within its bound. See docs/benchmark.md.
#
#   tools/bench.sh
#
# This script only builds, starts and stops processes; `aep-testkit bench` (crates/testkit) measures.
#
# Environment:
#   BENCH_OBJECTS         number of StreamingConnections (default 200)
#   BENCH_NAMESPACES      spread over this many namespaces, one credentials Secret each (default 4)
#   BENCH_RESYNC          the operator's --resync-interval, e.g. 30s, 2m (default 30s)
#   BENCH_STEADY_SECONDS  steady-state window in seconds (default: the resync interval + 20%)
#   BENCH_EMULATOR_FLAGS  extra aep-emulator flags, e.g. "--latency-ms 150" for a Flow Service-like latency
#   BENCH_READY_TIMEOUT   seconds to wait for all objects Ready (default 300)
#   BENCH_DELETE_TIMEOUT  seconds to wait for all objects and connections gone (default 300)
#   CARGO_TARGET_DIR      where cargo builds (default target/)
# Everything it starts (control plane in target/bench/cluster, emulator, operator) is stopped on every exit path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
BENCH=$REPO/target/bench
CLUSTER=$BENCH/cluster
OBJECTS=${BENCH_OBJECTS:-200}
NAMESPACES=${BENCH_NAMESPACES:-4}
RESYNC=${BENCH_RESYNC:-30s}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-300}
DELETE_TIMEOUT=${BENCH_DELETE_TIMEOUT:-300}
RELEASE=${CARGO_TARGET_DIR:-$REPO/target}/release
OPERATOR=$RELEASE/aep-streaming-operator
EMULATOR=$RELEASE/aep-emulator
TESTKIT=$RELEASE/aep-testkit

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# Numbers are checked here; durations (BENCH_RESYNC) by the operator's own parser, in `aep-testkit bench`.
[[ $OBJECTS =~ ^[1-9][0-9]*$ ]] || die "BENCH_OBJECTS must be a positive integer (got '$OBJECTS')"
[[ $NAMESPACES =~ ^[1-9][0-9]*$ ]] || die "BENCH_NAMESPACES must be a positive integer (got '$NAMESPACES')"
[[ $READY_TIMEOUT =~ ^[1-9][0-9]*$ && $DELETE_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "timeouts are whole positive seconds"
steady=()
if [[ -n ${BENCH_STEADY_SECONDS:-} ]]; then
  [[ $BENCH_STEADY_SECONDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_STEADY_SECONDS must be a positive integer (got '$BENCH_STEADY_SECONDS')"
  steady=(--steady "${BENCH_STEADY_SECONDS}s")
fi

# ------------------------------------------------------------------------- cleanup on every exit path
operator_pid="" emulator_pid="" helper_pid="" cluster_started=""

stop() { # pid name: SIGTERM, SIGKILL after 15 s
  local pid=$1 name=$2 i
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    # a zombie that is not our child (cannot happen here, but do not spin on it)
    [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && return 0
    sleep 0.1
  done
  printf '[bench] %s (pid %s) did not stop after 15s; SIGKILL\n' "$name" "$pid" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  if [[ -n $operator_pid$emulator_pid$cluster_started ]]; then
    say "stopping the operator, the emulator and the control plane"
  fi
  stop "$helper_pid" "aep-testkit bench"
  stop "$operator_pid" "aep-streaming-operator"
  stop "$emulator_pid" "aep-emulator"
  if [[ -n $operator_pid ]]; then rm -f "$BENCH/operator.pid"; fi
  if [[ -n $emulator_pid ]]; then rm -f "$BENCH/emulator.pid"; fi
  if [[ -n $cluster_started ]]; then tools/cluster.sh down "$CLUSTER" >&2; fi
  if ((rc != 0)); then
    printf '[bench] FAILED (exit %s); logs: %s/{operator,emulator}.log, %s/logs/\n' "$rc" "$BENCH" "$CLUSTER" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# One benchmark at a time per checkout (they share target/bench). fd 9 is closed for the long-lived children.
mkdir -p "$BENCH"
exec 9>"$BENCH/.lock"
flock -n 9 || { printf '[bench] ERROR: another tools/bench.sh is running (it holds %s/.lock)\n' "$BENCH" >&2; exit 1; }

# A previous run killed with SIGKILL may have left its operator or emulator behind: stop them by pid file,
# after checking that the pid still runs our binary.
for name in operator emulator; do
  f=$BENCH/$name.pid
  [[ -s $f ]] || continue
  pid=$(<"$f")
  if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$RELEASE/aep-"; then
    printf '[bench] stopping %s left over from an earlier run (pid %s)\n' "$name" "$pid" >&2
    kill -TERM "$pid" 2>/dev/null || true
    sleep 1
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
done

wait_http() { # url what pid: up to 30 s, failing fast if the process died
  local i
  for ((i = 0; i < 150; i++)); do
    curl -sf -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || die "$2 exited during start-up; see its log in $BENCH"
    sleep 0.2
  done
  die "$2 did not answer $1 within 30s; see its log in $BENCH"
}

# ------------------------------------------------------------------------- 1. build and start
rm -f "$BENCH"/{emulator-state.json,emulator.log,operator.log,operator-kubeconfig,result.json}

say "building the operator and the emulator (release)"
# What is measured: the commit, and whether the operator's sources differed from it when built.
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- src Cargo.toml Cargo.lock build.rs 2>/dev/null) ]]; then
  revision+=" + uncommitted changes in src/"
fi
cargo build --release --locked --workspace --bins

say "starting a fresh control plane in $CLUSTER"
cluster_started=1
tools/cluster.sh up "$CLUSTER" >&2 9>&-
# shellcheck disable=SC1091
source "$CLUSTER/env"   # KUBECONFIG (admin) and kubectl v1.37 first on PATH

read -r emulator_port metrics_port < <("$TESTKIT" free-ports 2)
[[ -n ${metrics_port:-} ]] || die "could not find two free loopback ports"
EMULATOR_URL=http://127.0.0.1:$emulator_port
METRICS_URL=http://127.0.0.1:$metrics_port

say "starting aep-emulator on $EMULATOR_URL"
read -r -a emulator_extra <<<"${BENCH_EMULATOR_FLAGS:-}"
"$EMULATOR" --listen "127.0.0.1:$emulator_port" --state-file "$BENCH/emulator-state.json" "${emulator_extra[@]}" \
  </dev/null >"$BENCH/emulator.log" 2>&1 9>&- &
emulator_pid=$!
echo "$emulator_pid" >"$BENCH/emulator.pid"
wait_http "$EMULATOR_URL/_emulator/health" "aep-emulator" "$emulator_pid"

say "installing the CRDs and the operator's RBAC"
# Every kind's CRD, even one the run does not use: the operator refuses to start without all of them.
kubectl apply --server-side -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml >&2
kubectl wait --for=condition=Established -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml --timeout=60s >&2
kubectl apply --server-side -f deploy/operator/namespace.yaml -f deploy/operator/serviceaccount.yaml -f deploy/operator/rbac.yaml >&2

say "starting the operator (release) as service account aep-streaming-operator"
"$TESTKIT" operator-kubeconfig --out "$BENCH/operator-kubeconfig" --lifetime 24h
operator_flags=(--platform-url "$EMULATOR_URL" --ims-url "$EMULATOR_URL" --metrics-addr "127.0.0.1:$metrics_port"
  --flow-service-qps 200 --max-concurrent-reconciles 8 --resync-interval "$RESYNC")
KUBECONFIG=$BENCH/operator-kubeconfig "$OPERATOR" run "${operator_flags[@]}" \
  </dev/null >"$BENCH/operator.log" 2>&1 9>&- &
operator_pid=$!
echo "$operator_pid" >"$BENCH/operator.pid"
wait_http "$METRICS_URL/readyz" "aep-streaming-operator" "$operator_pid"

# ------------------------------------------------------------------------- 2.-7. measure (aep-testkit bench)
say "benchmark: $OBJECTS objects in $NAMESPACES namespaces, resync $RESYNC"
"$TESTKIT" bench \
  --objects "$OBJECTS" --namespaces "$NAMESPACES" \
  --emulator-url "$EMULATOR_URL" --metrics-url "$METRICS_URL/metrics" \
  --operator-pid "$operator_pid" --emulator-pid "$emulator_pid" \
  --operator-flags="${operator_flags[*]:6}" \
  --revision "$revision" --emulator-flags="${BENCH_EMULATOR_FLAGS:-}" \
  --resync "$RESYNC" "${steady[@]}" \
  --ready-timeout "${READY_TIMEOUT}s" --delete-timeout "${DELETE_TIMEOUT}s" \
  --workdir "$BENCH" --out "$BENCH/result.json" &
helper_pid=$!
wait "$helper_pid"   # interruptible: a signal runs the trap at once
helper_pid=""
