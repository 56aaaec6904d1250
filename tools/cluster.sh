#!/usr/bin/env bash
# A real local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) as plain processes.
#
#   tools/cluster.sh up     [DIR]   build binaries if needed (tools/build-control-plane.sh), wipe DIR, start, wait
#   tools/cluster.sh down   [DIR]   stop everything started in DIR (SIGTERM, then SIGKILL after ~10s)
#   tools/cluster.sh status [DIR]   show processes and readiness; exit 0 only if running and ready
#   tools/cluster.sh restart [DIR] [COMPONENT] [--downtime SECONDS]
#                                   stop one component (SIGTERM, SIGKILL after ~10s), wait SECONDS (default 0),
#                                   start it again with the command line recorded by `up` (same flags, ports,
#                                   certificates, data) and wait until it is healthy again. COMPONENT: etcd,
#                                   kube-apiserver (default) or kube-controller-manager; a lone argument that is
#                                   a component name is the COMPONENT (write ./etcd for a folder named etcd).
#
# DIR defaults to <repo>/target/cluster. After `up`:
#   DIR/kubeconfig  admin kubeconfig (system:masters, certificates embedded)
#   DIR/env         `source` it: exports KUBECONFIG and puts the built kubectl first on PATH
#   DIR/cmd/<component>.args  exact command line of each component, one argument per line (used by restart)
#   DIR/logs/*.log, DIR/pids/*.pid, DIR/certs/, DIR/etcd/ (data), DIR/cluster.info (ports, urls)
# Environment: AEP_CLUSTER_TIMEOUT (seconds per readiness wait, default 60), plus those of build-control-plane.sh.
set -euo pipefail

TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$TOOLS_DIR")
TIMEOUT=${AEP_CLUSTER_TIMEOUT:-60}
PROCS=(etcd kube-apiserver kube-controller-manager)   # start order; stopped in reverse
MARKER=.aep-streaming-operator-cluster

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { # the comment block at the top of this file
  awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
  exit 2
}

resolve() { # absolute path of $1 (need not exist)
  if [[ -d $1 ]]; then (cd "$1" && pwd -P); else case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; fi
}

# ---------------------------------------------------------------- process helpers
alive() { # pid: running and not a zombie
  local s
  s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $s && $s != Z* ]]
}
ours() { # pid: its command line mentions DIR/ (guards against a recycled pid)
  ps -ww -o args= -p "$1" 2>/dev/null | grep -qF -- "$DIR/"
}
pid_of() { # name -> pid from the pid file, if that process is still ours
  local f=$DIR/pids/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && ours "$pid" && echo "$pid"
}
stray_pids() { # [name]: processes of ours whose pid file is gone: our binaries (or only NAME) with DIR/ in their arguments
  local only=${1:-}
  ps -ww -e -o pid=,args= 2>/dev/null | while read -r pid exe rest; do
    case ${exe##*/} in etcd|kube-apiserver|kube-controller-manager) ;; *) continue ;; esac
    [[ -z $only || ${exe##*/} == "$only" ]] || continue
    [[ " $rest " == *"$DIR/"* ]] && echo "$pid"
  done
}
stop_pid() { # pid name
  local pid=$1 name=$2 i
  alive "$pid" || return 0
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do alive "$pid" || return 0; sleep 0.1; done
  log "$name (pid $pid) did not stop after 10s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do alive "$pid" || return 0; sleep 0.1; done
  log "WARNING: $name (pid $pid) is still alive"
  return 1
}
stop_all() {
  local i name pid rc=0
  [[ -d $DIR ]] || return 0
  for ((i = ${#PROCS[@]} - 1; i >= 0; i--)); do
    name=${PROCS[i]}
    if pid=$(pid_of "$name"); then stop_pid "$pid" "$name" || rc=1; fi
    rm -f "$DIR/pids/$name.pid"
  done
  for pid in $(stray_pids); do stop_pid "$pid" "stray process" || rc=1; done
  return $rc
}

# The command line of each component is recorded once, by `up`, in DIR/cmd/NAME.args (one argument per line) and
# every start -- `up` and `restart` alike -- runs exactly what that file says: the flag lists exist only in cmd_up.
record_cmd() { # name cmd args...
  local name=$1 a; shift
  for a; do [[ $a != *$'\n'* ]] || die "an argument of $name contains a newline; cannot record it: $a"; done
  mkdir -p "$DIR/cmd"
  { printf '%s\n' "$@" >"$DIR/cmd/$name.args.tmp" && mv -f "$DIR/cmd/$name.args.tmp" "$DIR/cmd/$name.args"; } \
    || die "cannot write $DIR/cmd/$name.args"
}
# Start the recorded command of NAME detached from this shell (own session: survives the terminal/`make` closing),
# log appended to logs/NAME.log. The pid file is written by the process itself just before exec, so it is exact.
launch() { # name
  local name=$1 f=$DIR/cmd/$1.args i cmd=()
  [[ -s $f ]] || die "$f is missing: no recorded command line for $name"
  mapfile -t cmd <"$f"
  rm -f "$DIR/pids/$name.pid"
  log "starting $name"
  # shellcheck disable=SC2016 # expanded by the inner sh
  setsid sh -c 'echo $$ >"$0"; exec "$@"' "$DIR/pids/$name.pid" "${cmd[@]}" \
    </dev/null >>"$DIR/logs/$name.log" 2>&1 &
  for ((i = 0; i < 50; i++)); do [[ -s $DIR/pids/$name.pid ]] && return 0; sleep 0.1; done
  die "$name did not start (no pid file)"
}
start_proc() { # name cmd args...
  record_cmd "$@"
  launch "$1"
}

fail_with_log() { # name message
  log "ERROR: $2"
  if [[ -f $DIR/logs/$1.log ]]; then
    log "---- last 30 lines of $DIR/logs/$1.log ----"
    tail -n 30 "$DIR/logs/$1.log" >&2 || true
    log "----"
  fi
  exit 1
}
wait_for() { # name description cmd... : poll cmd until it succeeds, the process dies, or TIMEOUT
  local name=$1 what=$2 deadline=$((SECONDS + TIMEOUT)); shift 2
  until "$@" >/dev/null 2>&1; do
    pid_of "$name" >/dev/null || fail_with_log "$name" "$name exited while waiting for $what"
    ((SECONDS < deadline)) || fail_with_log "$name" "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}

curl_admin() { # url: GET as the admin user (certificates in DIR/certs)
  curl -sf --max-time 5 --cacert "$DIR/certs/ca.crt" --cert "$DIR/certs/admin.crt" --key "$DIR/certs/admin.key" "$1"
}
etcd_healthy() { curl -sf --max-time 2 "$ETCD_URL/health" | grep -q '"health":"true"'; }
log_has_since() { # name byte-offset pattern: PATTERN occurs in logs/NAME.log after OFFSET
  tail -c "+$(($2 + 1))" "$DIR/logs/$1.log" 2>/dev/null | grep -qF -- "$3"
}
# Bounded wait (AEP_CLUSTER_TIMEOUT per check) until component NAME works; uses ETCD_URL / API_URL.
# With a log offset (restart), kube-controller-manager must also log "Caches are synced" after that offset
# (it has no health endpoint with --secure-port=0; the ServiceAccount check below already passes before a
# restart) and still be alive 2 s later.
wait_healthy() { # name [log offset]
  case $1 in
    etcd) wait_for etcd "etcd $ETCD_URL/health" etcd_healthy ;;
    kube-apiserver)
      wait_for kube-apiserver "kube-apiserver $API_URL/readyz" curl_admin "$API_URL/readyz"
      wait_for kube-apiserver "namespace default" curl_admin "$API_URL/api/v1/namespaces/default"
      ;;
    kube-controller-manager)
      # The serviceaccount controller creating default/default proves the controller manager is working.
      wait_for kube-controller-manager "service account default/default (kube-controller-manager)" \
        curl_admin "$API_URL/api/v1/namespaces/default/serviceaccounts/default"
      if [[ -n ${2:-} ]]; then
        wait_for kube-controller-manager "kube-controller-manager to log \"Caches are synced\"" \
          log_has_since kube-controller-manager "$2" "Caches are synced"
        sleep 2
        pid_of kube-controller-manager >/dev/null || fail_with_log kube-controller-manager "kube-controller-manager exited after starting"
      fi
      ;;
  esac
}

free_ports() { # n -> n distinct free loopback ports
  if command -v python3 >/dev/null; then
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
  else
    local out=() p
    while ((${#out[@]} < $1)); do
      p=$((20000 + RANDOM % 30000))
      [[ " ${out[*]} " == *" $p "* ]] && continue
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue   # something listens there
      out+=("$p")
    done
    echo "${out[*]}"
  fi
}

# ---------------------------------------------------------------- certificates
gen_certs() {
  local c=$DIR/certs
  mkdir -p "$c"
  (
    cd "$c"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=aep-local-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -keyout ca.key -out ca.crt 2>/dev/null
    leaf() { # name subject extensions
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
        -days 365 -sha256 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    leaf apiserver "/CN=kube-apiserver" \
      "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    leaf admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
    # kube-controller-manager runs with --use-service-account-credentials=false, i.e. every controller uses this
    # identity; the bootstrap role system:kube-controller-manager alone does not allow the garbage collector /
    # namespace controller to delete arbitrary objects, hence the system:masters group as well.
    leaf kube-controller-manager "/O=system:masters/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
    # Service-account token signing key pair (RSA).
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 644 ./*.crt sa.pub
  ) || die "certificate generation with openssl failed"
}

b64() { openssl base64 -A <"$1"; }
write_kubeconfig() { # file user server
  local c=$DIR/certs
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: aep-local
  cluster:
    server: $3
    certificate-authority-data: $(b64 "$c/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$c/$2.crt")
    client-key-data: $(b64 "$c/$2.key")
contexts:
- name: aep-local
  context:
    cluster: aep-local
    user: $2
current-context: aep-local
EOF
  chmod 600 "$1"
}

# ---------------------------------------------------------------- subcommands
cmd_up() {
  local t0=$SECONDS out BIN
  # Refuse to wipe a folder this script did not create.
  if [[ -d $DIR && -n $(ls -A "$DIR") && ! -e $DIR/$MARKER ]]; then
    die "$DIR exists, is not empty and was not created by tools/cluster.sh; refusing to wipe it"
  fi
  case $DIR in /|"$HOME"|"$REPO_DIR"|"$TOOLS_DIR") die "refusing to use $DIR as cluster folder" ;; esac

  out=$("$TOOLS_DIR/build-control-plane.sh") || die "building the control plane binaries failed"
  BIN=${out##*$'\n'}
  local n
  for n in etcd kube-apiserver kube-controller-manager kubectl; do
    [[ -x $BIN/$n ]] || die "$BIN/$n missing after build-control-plane.sh"
  done

  # Fresh folder: stop a previous cluster in DIR, then wipe it.
  stop_all || die "could not stop the previous cluster in $DIR"
  rm -rf "$DIR"
  mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/etcd"
  chmod 700 "$DIR/etcd"
  touch "$DIR/$MARKER"

  UP_DONE=
  trap 'if [[ -z $UP_DONE ]]; then log "up failed; stopping what was started"; stop_all || true; fi' EXIT
  trap 'exit 130' INT TERM HUP

  gen_certs
  local c=$DIR/certs etcd_port peer_port api_port
  read -r etcd_port peer_port api_port < <(free_ports 3) || true
  [[ -n ${api_port:-} ]] || die "could not find free loopback ports"
  local etcd_url=http://127.0.0.1:$etcd_port peer_url=http://127.0.0.1:$peer_port api_url=https://127.0.0.1:$api_port
  ETCD_URL=$etcd_url API_URL=$api_url

  # ---- etcd
  local etcd_args=(--data-dir="$DIR/etcd" --name=default
    --listen-client-urls="$etcd_url" --advertise-client-urls="$etcd_url"
    --listen-peer-urls="$peer_url" --initial-advertise-peer-urls="$peer_url" --initial-cluster="default=$peer_url")
  if "$BIN/etcd" --help 2>&1 | grep -q -- '--unsafe-no-fsync'; then etcd_args+=(--unsafe-no-fsync=true); fi
  start_proc etcd "$BIN/etcd" "${etcd_args[@]}"
  wait_healthy etcd

  # ---- kube-apiserver
  # --endpoint-reconciler-type=none: since 1.37 the apiserver refuses a loopback --advertise-address with the
  # default (lease) endpoint reconciler; `none` leaves the `kubernetes` Service without endpoints (no pods here).
  # --shutdown-watch-termination-grace-period=2s: on SIGTERM the apiserver closes open watches (kube-controller-manager,
  # the operator) after 2 s and exits in ~1 s; without it, it waits for them and `restart` has to SIGKILL it after 10 s.
  start_proc kube-apiserver "$BIN/kube-apiserver" \
    --cert-dir="$c/apiserver-generated" \
    --etcd-servers="$etcd_url" \
    --bind-address=127.0.0.1 --secure-port="$api_port" --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$c/apiserver.crt" --tls-private-key-file="$c/apiserver.key" \
    --client-ca-file="$c/ca.crt" \
    --authorization-mode=RBAC \
    --service-account-issuer="$api_url" \
    --service-account-key-file="$c/sa.pub" --service-account-signing-key-file="$c/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true \
    --profiling=false \
    --shutdown-watch-termination-grace-period=2s
  wait_healthy kube-apiserver

  # ---- kube-controller-manager
  write_kubeconfig "$DIR/kube-controller-manager.kubeconfig" kube-controller-manager "$api_url"
  start_proc kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
    --controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller \
    --leader-elect=false \
    --secure-port=0 \
    --use-service-account-credentials=false \
    --service-account-private-key-file="$c/sa.key" \
    --root-ca-file="$c/ca.crt"
  wait_healthy kube-controller-manager

  # ---- outputs
  write_kubeconfig "$DIR/kubeconfig" admin "$api_url"
  cat >"$DIR/env" <<EOF
export KUBECONFIG=$DIR/kubeconfig
export PATH=$BIN:\$PATH
EOF
  cat >"$DIR/cluster.info" <<EOF
KUBE_VERSION=$("$BIN/kube-apiserver" --version | awk '{print $2}')
APISERVER_URL=$api_url
ETCD_URL=$etcd_url
BIN_DIR=$BIN
KUBECONFIG=$DIR/kubeconfig
EOF
  UP_DONE=1
  trap - EXIT INT TERM HUP

  local down="make cluster-down" K8S
  K8S=$(sed -n 's/^KUBE_VERSION=//p' "$DIR/cluster.info")
  [[ $DIR == "$REPO_DIR/target/cluster" ]] || down="tools/cluster.sh down $DIR"
  cat <<EOF
Local Kubernetes control plane is up in $((SECONDS - t0))s: $api_url (etcd $etcd_url)
  export KUBECONFIG=$DIR/kubeconfig
  # or: source $DIR/env   (also puts $BIN, with kubectl $K8S, first on PATH)
  kubectl get ns
Logs: $DIR/logs/   Stop: $down
EOF
}

cmd_down() {
  if [[ ! -d $DIR ]]; then log "nothing to stop ($DIR does not exist)"; return 0; fi
  stop_all || die "some processes could not be stopped"
  log "stopped (data kept in $DIR until the next up)"
}

cmd_status() {
  local name pid ok=0 url=
  [[ -f $DIR/cluster.info ]] && url=$(sed -n 's/^APISERVER_URL=//p' "$DIR/cluster.info")
  for name in "${PROCS[@]}"; do
    if pid=$(pid_of "$name"); then printf '%-24s running (pid %s)\n' "$name" "$pid"
    else printf '%-24s not running\n' "$name"; ok=1; fi
  done
  if [[ -n $url ]] && pid_of kube-apiserver >/dev/null; then
    local c=$DIR/certs
    if curl -sf --max-time 5 --cacert "$c/ca.crt" --cert "$c/admin.crt" --key "$c/admin.key" "$url/readyz" >/dev/null 2>&1; then
      printf '%-24s %s/readyz ok\n' apiserver "$url"
    else
      printf '%-24s %s/readyz NOT ready\n' apiserver "$url"; ok=1
    fi
    echo "export KUBECONFIG=$DIR/kubeconfig"
  fi
  return $ok
}

now_us() { local t=${EPOCHREALTIME:-}; if [[ -n $t ]]; then echo "${t//[.,]/}"; else date +%s%6N; fi; }
secs_since() { # start (from now_us) -> elapsed seconds with one decimal
  local d=$(($(now_us) - $1))
  printf '%d.%d' $((d / 1000000)) $((d % 1000000 / 100000))
}

cmd_restart() {
  local name=$COMPONENT pid old=none new t0 t_stopped t_started off log_file=$DIR/logs/$COMPONENT.log
  [[ -d $DIR && -e $DIR/$MARKER ]] || die "no cluster in $DIR (run: tools/cluster.sh up $DIR)"
  [[ -f $DIR/cluster.info ]] || die "$DIR/cluster.info is missing: the last \`up\` in $DIR did not finish; run up again"
  [[ -s $DIR/cmd/$name.args ]] \
    || die "$DIR/cmd/$name.args is missing (cluster started by an older tools/cluster.sh?); run: tools/cluster.sh up $DIR"
  ETCD_URL=$(sed -n 's/^ETCD_URL=//p' "$DIR/cluster.info")
  API_URL=$(sed -n 's/^APISERVER_URL=//p' "$DIR/cluster.info")
  [[ -n $ETCD_URL && -n $API_URL ]] || die "$DIR/cluster.info lacks ETCD_URL / APISERVER_URL"

  RESTART_DONE=
  trap 'if [[ -z $RESTART_DONE ]]; then log "restart of $COMPONENT did not complete; see: tools/cluster.sh status $DIR"; fi' EXIT
  trap 'exit 130' INT TERM HUP

  t0=$(now_us)
  if old=$(pid_of "$name"); then
    stop_pid "$old" "$name" || die "could not stop $name (pid $old)"
  else
    old=none
    log "WARNING: $name was not running; starting it"
  fi
  # A copy whose pid file was lost would still hold the ports / the data folder.
  for pid in $(stray_pids "$name"); do stop_pid "$pid" "stray $name" || die "could not stop stray $name (pid $pid)"; done
  rm -f "$DIR/pids/$name.pid"
  t_stopped=$(secs_since "$t0")

  if [[ $DOWNTIME != 0 ]]; then log "$name down; waiting ${DOWNTIME}s"; sleep "$DOWNTIME"; fi

  printf '==== %s tools/cluster.sh restart: starting %s again (previous pid %s) ====\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$old" >>"$log_file"
  off=$(wc -c <"$log_file")
  t_started=$(now_us)
  launch "$name"
  new=$(<"$DIR/pids/$name.pid")
  wait_healthy "$name" "$off"
  log "$name healthy again after $(secs_since "$t_started")s"
  # The apiserver's /readyz includes etcd: after an etcd restart, wait until the apiserver has reconnected.
  if [[ $name == etcd ]] && pid_of kube-apiserver >/dev/null; then
    wait_healthy kube-apiserver
    log "kube-apiserver ready again after $(secs_since "$t_started")s"
  fi
  RESTART_DONE=1
  trap - EXIT INT TERM HUP
  echo "Restarted $name in $(secs_since "$t0")s (pid $old -> $new): stop ${t_stopped}s, downtime ${DOWNTIME}s, start until healthy $(secs_since "$t_started")s"
}

is_component() { [[ " ${PROCS[*]} " == *" $1 "* ]]; }

CMD=${1:-}
(($# == 0)) || shift
COMPONENT=kube-apiserver DOWNTIME=0
case $CMD in
  up|down|status) DIR=${1:-} ;;
  restart)
    pos=()
    while (($#)); do
      case $1 in
        --downtime) (($# >= 2)) || die "--downtime needs a value"; DOWNTIME=$2; shift 2 ;;
        --downtime=*) DOWNTIME=${1#*=}; shift ;;
        -h|--help) usage ;;
        --) shift; pos+=("$@"); break ;;
        -*) die "unknown option $1 (see: tools/cluster.sh --help)" ;;
        *) pos+=("$1"); shift ;;
      esac
    done
    [[ $DOWNTIME =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--downtime wants a number of seconds, not '$DOWNTIME'"
    case ${#pos[@]} in
      0) DIR='' ;;
      1) if is_component "${pos[0]}"; then DIR='' COMPONENT=${pos[0]}; else DIR=${pos[0]}; fi ;;
      2) DIR=${pos[0]} COMPONENT=${pos[1]} ;;
      *) usage ;;
    esac
    is_component "$COMPONENT" || die "unknown component '$COMPONENT' (one of: ${PROCS[*]})"
    ;;
  *) usage ;;
esac
DIR=${DIR:-$REPO_DIR/target/cluster}
[[ $CMD != up ]] || mkdir -p "$DIR" || die "cannot create $DIR"
DIR=$(resolve "$DIR")
"cmd_$CMD"
