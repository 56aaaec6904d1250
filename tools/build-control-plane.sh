#!/usr/bin/env bash
# Builds (once) the binaries of a local Kubernetes control plane from Go modules:
#   kube-apiserver, kube-controller-manager, kubectl  <- tools/k8s-bin  (k8s.io/kubernetes)
#   etcd                                              <- tools/etcd-bin (go.etcd.io/etcd/server/v3)
# into a cache folder OUTSIDE the repository, keyed by the Kubernetes version:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/aep-streaming-operator/k8s-<version>/
#
# The LAST line of stdout is the folder holding the four binaries:
#   BIN=$(tools/build-control-plane.sh | tail -1)
# Everything else (progress, go output) goes to stderr.
#
# Environment:
#   KUBEBUILDER_ASSETS   if it holds kube-apiserver and etcd, those are used and nothing is built for them;
#                        missing kube-controller-manager / kubectl are built into the cache and the script
#                        prints a folder of symlinks combining both.
#   AEP_CONTROL_PLANE_BIN_DIR  override the cache folder (default above).
#   AEP_CONTROL_PLANE_FORCE=1  rebuild everything in the cache folder.
# Only the Go toolchain (>= the `go` line of the two go.mod files) and the Go module proxy are needed.
set -euo pipefail

TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_MOD_DIR=$TOOLS_DIR/k8s-bin
ETCD_MOD_DIR=$TOOLS_DIR/etcd-bin

log() { printf '[build-control-plane] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Versions come from the committed go.mod files (the `require` entries, not the replace block).
modver() { sed -n "s#^[[:space:]]*\(require[[:space:]]\+\)\?$2[[:space:]]\+\(v[^[:space:]]*\).*#\2#p" "$1/go.mod" | head -n1; }
K8S_VERSION=$(modver "$K8S_MOD_DIR" 'k8s\.io/kubernetes')
ETCD_VERSION=$(modver "$ETCD_MOD_DIR" 'go\.etcd\.io/etcd/server/v3')
[[ $K8S_VERSION =~ ^v1\.([0-9]+)\.[0-9]+$ ]] || die "cannot read k8s.io/kubernetes version from $K8S_MOD_DIR/go.mod (got '$K8S_VERSION')"
K8S_MINOR=${BASH_REMATCH[1]}
[[ $ETCD_VERSION =~ ^v3\.[0-9]+\.[0-9]+$ ]] || die "cannot read go.etcd.io/etcd/server/v3 version from $ETCD_MOD_DIR/go.mod (got '$ETCD_VERSION')"

CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/aep-streaming-operator
BIN_DIR=${AEP_CONTROL_PLANE_BIN_DIR:-$CACHE_ROOT/k8s-$K8S_VERSION}

ALL=(kube-apiserver kube-controller-manager kubectl etcd)

# Does "$1/$2" exist and report the pinned version? (cheap: each --version takes well under a second)
is_current() {
  local f=$1/$2 out
  [[ -x $f ]] || return 1
  case $2 in
    kube-apiserver|kube-controller-manager) out=$("$f" --version 2>/dev/null) || return 1; [[ $out == "Kubernetes $K8S_VERSION" ]] ;;
    kubectl) out=$("$f" version --client 2>/dev/null) || return 1; [[ $out == *"Client Version: $K8S_VERSION"* ]] ;;
    etcd) out=$("$f" --version 2>/dev/null) || return 1; [[ $out == *"etcd Version: ${ETCD_VERSION#v}"* ]] ;;
  esac
}

missing_in() { # dir names... -> prints the names not current in dir
  local d=$1 n; shift
  for n in "$@"; do is_current "$d" "$n" || echo "$n"; done
}

# ---------------------------------------------------------------- KUBEBUILDER_ASSETS
USE_ASSETS=
NEED=()
if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
  if [[ -x $KUBEBUILDER_ASSETS/kube-apiserver && -x $KUBEBUILDER_ASSETS/etcd ]]; then
    USE_ASSETS=$(cd "$KUBEBUILDER_ASSETS" && pwd)
    log "using kube-apiserver and etcd from KUBEBUILDER_ASSETS=$USE_ASSETS"
    for n in kube-controller-manager kubectl; do
      [[ -x $USE_ASSETS/$n ]] || NEED+=("$n")
    done
    if ((${#NEED[@]} == 0)); then
      log "KUBEBUILDER_ASSETS holds all binaries; nothing to build"
      echo "$USE_ASSETS"
      exit 0
    fi
  else
    log "WARNING: KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver or etcd; ignoring it"
  fi
fi
((${#NEED[@]})) || NEED=("${ALL[@]}")

# ---------------------------------------------------------------- build (under a lock)
build() {
  local force=${AEP_CONTROL_PLANE_FORCE:-}
  local todo
  if [[ -n $force ]]; then todo=("${NEED[@]}"); else mapfile -t todo < <(missing_in "$BIN_DIR" "${NEED[@]}"); fi
  ((${#todo[@]})) || return 0

  command -v go >/dev/null || die "go is not on PATH (need Go >= 1.26.0 to build the control plane)"
  mkdir -p "$CACHE_ROOT" "$BIN_DIR"
  local lock=$BIN_DIR.lock
  exec 9>"$lock"
  if ! flock -n 9; then
    log "another build holds $lock; waiting for it"
    flock 9
  fi
  # Re-check now that we own the lock: a concurrent caller may have built them.
  if [[ -z $force ]]; then mapfile -t todo < <(missing_in "$BIN_DIR" "${NEED[@]}"); fi
  ((${#todo[@]})) || { flock -u 9; return 0; }

  # Module mode from go.mod/go.sum only (works from a fresh clone / empty module cache; never vendor, never
  # a surrounding go.work). CGO off, as upstream builds these components.
  export GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false" GOWORK=off CGO_ENABLED=0
  local tmp
  tmp=$(mktemp -d "$BIN_DIR/.build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT

  local k8s_pkgs=() want_etcd='' n
  for n in "${todo[@]}"; do
    case $n in
      etcd) want_etcd=1 ;;
      *) k8s_pkgs+=("k8s.io/kubernetes/cmd/$n") ;;
    esac
  done

  local t0=$SECONDS
  if ((${#k8s_pkgs[@]})); then
    local date ldf p
    # Build date = release time of the module (reproducible), as recorded by the module proxy.
    date=$(cd "$K8S_MOD_DIR" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null) || date=''

    ldf="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldf+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR -X $p.gitTreeState=clean"
      [[ -n $date ]] && ldf+=" -X $p.buildDate=$date"
    done
    log "building ${k8s_pkgs[*]##*/} $K8S_VERSION into $BIN_DIR (empty Go caches: ~10 min on 2 cores; warm Go build cache: ~20 s)"
    (cd "$K8S_MOD_DIR" && go build -trimpath -pgo=off -tags selinux,notest -ldflags "$ldf" -o "$tmp/" "${k8s_pkgs[@]}") >&2 \
      || die "go build of ${k8s_pkgs[*]} failed"
  fi
  if [[ -n $want_etcd ]]; then
    log "building etcd $ETCD_VERSION into $BIN_DIR"
    (cd "$ETCD_MOD_DIR" && go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
      -o "$tmp/etcd" go.etcd.io/etcd/server/v3) >&2 || die "go build of etcd failed"
  fi
  for n in "${todo[@]}"; do
    is_current "$tmp" "$n" || die "freshly built $n does not report the expected version"
    mv -f "$tmp/$n" "$BIN_DIR/$n"   # atomic rename within the same folder
  done
  rm -rf "$tmp"; trap - EXIT
  flock -u 9
  log "built ${todo[*]} in $((SECONDS - t0))s"
}
build

if [[ -n $USE_ASSETS ]]; then
  # One folder with everything: symlinks to the user's binaries plus the ones we built.
  key=$(printf '%s' "$USE_ASSETS" | cksum | cut -d' ' -f1)
  mix=$CACHE_ROOT/assets-$key
  mkdir -p "$mix"
  for n in "${ALL[@]}"; do
    if [[ -x $USE_ASSETS/$n ]]; then src=$USE_ASSETS/$n; else src=$BIN_DIR/$n; fi
    ln -sfn "$src" "$mix/$n"
  done
  log "binaries: $mix (kube-apiserver, etcd from $USE_ASSETS)"
  echo "$mix"
else
  log "binaries: $BIN_DIR"
  echo "$BIN_DIR"
fi
