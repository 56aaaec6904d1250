#!/usr/bin/env bash
# Performance and footprint benchmark at several sizes in one run: for each size N, a fresh control plane, a
# fresh aep-emulator as the platform and the release-built operator under its own service account. N
# StreamingConnections are created, left alone for a resync window, the operator is restarted and watched for
# another window, everything is deleted, and then the API-server baseline (the operator's writes with no
# operator) is timed. It PRINTS figures (a table per size, then one over the sizes) and writes JSON to
# target/bench/; it never asserts on timing and fails only when something does not happen at all within its
# bound. See docs/benchmark.md.
#
#   tools/bench.sh                                   # N = 200, 1000, 3000 at --flow-service-qps 200 --max-concurrent-reconciles 8
#   BENCH_SIZES=200 BENCH_OPERATOR_FLAGS= tools/bench.sh   # N = 200 at the operator's defaults (10 qps, 4 reconciles)
#
# This script only builds, starts and stops the control plane and the emulator; `aep-testkit bench`
# (crates/testkit) starts, restarts and stops the operator, and measures.
#
# Environment:
#   BENCH_SIZES           the sizes, each measured on its own fresh control plane (default "200 1000 3000")
#   BENCH_OBJECTS         one size (used when BENCH_SIZES is not set; kept for old command lines)
#   BENCH_OPERATOR_FLAGS  the operator's Flow flags (default "--flow-service-qps 200 --max-concurrent-reconciles 8";
#                         set it empty for the operator's own defaults)
#   BENCH_NAMESPACES      spread over this many namespaces, one credentials Secret each (default 4)
#   BENCH_RESYNC          the operator's --resync-interval (default per size: max(60 s, 4·N/qps, N/15 s), see resync_for)
#   BENCH_STEADY_SECONDS  steady-state window in seconds (default: the resync interval + 20%)
#   BENCH_RESTART_SECONDS window watched after the operator restarts (default: one resync interval)
#   BENCH_CLIENT_CONCURRENCY  requests the benchmark's own client keeps in flight to apply/delete (default 8)
#   BENCH_EMULATOR_FLAGS  extra aep-emulator flags, e.g. "--latency-ms 150" for a Flow Service-like latency
#   BENCH_READY_TIMEOUT   seconds to wait for all objects Ready (default 900)
#   BENCH_DELETE_TIMEOUT  seconds to wait for all objects and connections gone (default 900)
#   CARGO_TARGET_DIR      where cargo builds (default target/)
# Everything it starts (control plane in target/bench/cluster, emulator, operator) is stopped on every exit path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
BENCH=$REPO/target/bench
CLUSTER=$BENCH/cluster
SIZES=${BENCH_SIZES:-${BENCH_OBJECTS:-200 1000 3000}}
# Unset means the faster setting; set but empty means the operator's defaults.
OPERATOR_FLAGS=${BENCH_OPERATOR_FLAGS---flow-service-qps 200 --max-concurrent-reconciles 8}
NAMESPACES=${BENCH_NAMESPACES:-4}
CLIENT_CONCURRENCY=${BENCH_CLIENT_CONCURRENCY:-8}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-900}
DELETE_TIMEOUT=${BENCH_DELETE_TIMEOUT:-900}
RELEASE=${CARGO_TARGET_DIR:-$REPO/target}/release
OPERATOR=$RELEASE/aep-streaming-operator
EMULATOR=$RELEASE/aep-emulator
TESTKIT=$RELEASE/aep-testkit

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# Numbers are checked here; durations (BENCH_RESYNC) by the operator's own parser, in `aep-testkit bench`.
read -r -a sizes <<<"$SIZES"
((${#sizes[@]} > 0)) || die "BENCH_SIZES is empty"
for n in "${sizes[@]}"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "every size must be a positive integer (got '$n')"
done
for v in "$NAMESPACES" "$CLIENT_CONCURRENCY" "$READY_TIMEOUT" "$DELETE_TIMEOUT"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || die "BENCH_NAMESPACES, BENCH_CLIENT_CONCURRENCY and the timeouts are positive integers (got '$v')"
done
windows=()
for pair in "steady:${BENCH_STEADY_SECONDS:-}" "restart-window:${BENCH_RESTART_SECONDS:-}"; do
  [[ -n ${pair#*:} ]] || continue
  [[ ${pair#*:} =~ ^[1-9][0-9]*$ ]] || die "BENCH_STEADY_SECONDS/BENCH_RESTART_SECONDS are whole positive seconds"
  windows+=("--${pair%%:*}" "${pair#*:}s")
done
read -r -a operator_flags <<<"$OPERATOR_FLAGS"

# The qps the operator will run at (its default, 10, unless the flags say otherwise), for the default resync.
qps=10
for ((i = 0; i < ${#operator_flags[@]}; i++)); do
  case ${operator_flags[i]} in
  --flow-service-qps) qps=${operator_flags[i + 1]:-10} ;;
  --flow-service-qps=*) qps=${operator_flags[i]#*=} ;;
  esac
done
[[ $qps =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--flow-service-qps must be a number (got '$qps')"
# N -> the resync interval: BENCH_RESYNC, or max(60 s, 4N/qps, N/15 s) (qps 0 = unlimited). No object's first
# resync read (after 90 % of the interval at the earliest, the jitter) may fall into the create phase, or it would
# be counted as a create call: with 2 Flow calls per create, 4N/qps is twice the create's Flow lower bound, and
# N/15 s covers a create that runs at 15 objects/s or faster (at --flow-service-qps 200 on 2 shared cores,
# N=3000 took 205 s, 14.6 objects/s: just over the edge; set BENCH_RESYNC on a slower machine). One interval then
# holds every object's resync read at a quarter of the qps limit.
resync_for() {
  if [[ -n ${BENCH_RESYNC:-} ]]; then
    echo "$BENCH_RESYNC"
  else
    awk -v n="$1" -v q="$qps" 'BEGIN {
      s = (q > 0) ? 4 * n / q : 0
      if (n / 15 > s) s = n / 15
      if (60 > s) s = 60
      printf "%ds\n", int(s + 0.999)
    }'
  fi
}

# ------------------------------------------------------------------------- cleanup on every exit path
emulator_pid="" helper_pid="" cluster_started=""

stop() { # pid name: SIGTERM, SIGKILL after 15 s
  local pid=$1 name=$2 i
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    # a zombie that is not our child (the operator is the test kit's child): do not spin on it
    [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && return 0
    sleep 0.1
  done
  printf '[bench] %s (pid %s) did not stop after 15s; SIGKILL\n' "$name" "$pid" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# The pid in BENCH/<name>.pid, if that process still runs our binary (a recycled pid is left alone).
pid_from_file() {
  local f=$BENCH/$1.pid pid
  [[ -s $f ]] || return 0
  pid=$(<"$f")
  if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$RELEASE/aep-"; then
    echo "$pid"
  fi
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  if [[ -n $emulator_pid$cluster_started ]]; then
    say "stopping the operator, the emulator and the control plane"
  fi
  stop "$helper_pid" "aep-testkit bench"
  # The test kit stops the operator itself; this catches one it left when it was killed.
  stop "$(pid_from_file operator)" "aep-streaming-operator"
  rm -f "$BENCH/operator.pid"
  stop "$emulator_pid" "aep-emulator"
  if [[ -n $emulator_pid ]]; then rm -f "$BENCH/emulator.pid"; fi
  if [[ -n $cluster_started ]]; then tools/cluster.sh down "$CLUSTER" >&2; fi
  if ((rc != 0)); then
    printf '[bench] FAILED (exit %s); logs: %s/{operator,emulator}-N.log, %s/logs/\n' "$rc" "$BENCH" "$CLUSTER" >&2
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

# A previous run killed with SIGKILL may have left its operator or emulator behind.
for name in operator emulator; do
  pid=$(pid_from_file "$name")
  if [[ -n $pid ]]; then
    printf '[bench] stopping %s left over from an earlier run (pid %s)\n' "$name" "$pid" >&2
    kill -TERM "$pid" 2>/dev/null || true
    sleep 1
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$BENCH/$name.pid"
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

# ------------------------------------------------------------------------- build
say "building the operator, the emulator and the test kit (release)"
# What is measured: the commit, and whether the operator's sources differed from it when built.
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- src crates/flow Cargo.toml Cargo.lock build.rs 2>/dev/null) ]]; then
  revision+=" + uncommitted changes"
fi
cargo build --release --locked --workspace --bins
rm -f "$BENCH"/result-*.json "$BENCH"/summary.md

# ------------------------------------------------------------------------- one size
# A fresh control plane per size (about 10 s): etcd, kube-apiserver's caches and its memory start empty, so
# that a size's figures, the baseline's included, carry nothing of the size before it.
bench_size() {
  local n=$1 resync emulator_port metrics_port
  resync=$(resync_for "$n")
  say "N = $n: a fresh control plane in $CLUSTER"
  cluster_started=1
  tools/cluster.sh up "$CLUSTER" >&2 9>&-
  # shellcheck disable=SC1091
  source "$CLUSTER/env" # KUBECONFIG (admin) and kubectl v1.37 first on PATH

  read -r emulator_port metrics_port < <("$TESTKIT" free-ports 2)
  [[ -n ${metrics_port:-} ]] || die "could not find two free loopback ports"
  local emulator_url=http://127.0.0.1:$emulator_port

  say "N = $n: aep-emulator on $emulator_url"
  read -r -a emulator_extra <<<"${BENCH_EMULATOR_FLAGS:-}"
  rm -f "$BENCH/emulator-state.json"
  "$EMULATOR" --listen "127.0.0.1:$emulator_port" --state-file "$BENCH/emulator-state.json" "${emulator_extra[@]}" \
    </dev/null >"$BENCH/emulator-$n.log" 2>&1 9>&- &
  emulator_pid=$!
  echo "$emulator_pid" >"$BENCH/emulator.pid"
  wait_http "$emulator_url/_emulator/health" "aep-emulator" "$emulator_pid"

  say "N = $n: CRDs, the operator's RBAC and its kubeconfig"
  # Every kind's CRD, even one the run does not use: the operator refuses to start without all of them.
  kubectl apply --server-side -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml >&2
  kubectl wait --for=condition=Established -f crds/streamingconnection.yaml -f crds/streamingdataflow.yaml --timeout=60s >&2
  kubectl apply --server-side -f deploy/operator/namespace.yaml -f deploy/operator/serviceaccount.yaml -f deploy/operator/rbac.yaml >&2
  "$TESTKIT" operator-kubeconfig --out "$BENCH/operator-kubeconfig" --lifetime 24h

  say "N = $n: benchmark (operator flags: ${OPERATOR_FLAGS:-the defaults}; resync $resync)"
  rm -f "$BENCH/operator-$n.log"
  "$TESTKIT" bench \
    --objects "$n" --namespaces "$NAMESPACES" --client-concurrency "$CLIENT_CONCURRENCY" \
    --emulator-url "$emulator_url" --metrics-url "http://127.0.0.1:$metrics_port/metrics" \
    --emulator-pid "$emulator_pid" \
    --apiserver-pid "$(<"$CLUSTER/pids/kube-apiserver.pid")" --etcd-pid "$(<"$CLUSTER/pids/etcd.pid")" \
    --operator-bin "$OPERATOR" --operator-kubeconfig "$BENCH/operator-kubeconfig" \
    --operator-log "$BENCH/operator-$n.log" --operator-pid-file "$BENCH/operator.pid" \
    --revision "$revision" --emulator-flags="${BENCH_EMULATOR_FLAGS:-}" \
    "${windows[@]}" --ready-timeout "${READY_TIMEOUT}s" --delete-timeout "${DELETE_TIMEOUT}s" \
    --workdir "$BENCH" --out "$BENCH/result-$n.json" \
    -- run --platform-url "$emulator_url" --ims-url "$emulator_url" --metrics-addr "127.0.0.1:$metrics_port" \
    "${operator_flags[@]}" --resync-interval "$resync" 9>&- &
  helper_pid=$!
  wait "$helper_pid" # interruptible: a signal runs the trap at once
  helper_pid=""

  stop "$emulator_pid" "aep-emulator"
  emulator_pid=""
  rm -f "$BENCH/emulator.pid"
  tools/cluster.sh down "$CLUSTER" >&2
  cluster_started=""
}

results=()
for n in "${sizes[@]}"; do
  bench_size "$n"
  results+=("$BENCH/result-$n.json")
done

say "all sizes (also in $BENCH/summary.md)"
"$TESTKIT" bench-table "${results[@]}" | tee "$BENCH/summary.md"
